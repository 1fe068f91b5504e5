# scripts/lib.sh - shared by scripts/check, scripts/run and bench/throughput.sh.
# Source it; it defines functions and variables only.
#
# Debian 12 is the reference system.  Packages are installed with apt-get only
# when `dpkg -s` says one is missing, so repeated runs do not touch the network.

MSD_ROOT=$(cd "$(dirname "${BASH_SOURCE[0]}")/.." && pwd)

MSD_BUILD_DEPS=(build-essential autoconf automake libtool libltdl-dev pkg-config
	libevent-dev libtls-dev libjansson-dev libsqlite3-dev libssl-dev libdb-dev
	libcrypt-dev libc-ares-dev libpam0g-dev zlib1g-dev)
# postfix is only here for smtp-source (bench/ and the load tests); it is
# installed with debconf "No configuration" and never started.  The
# opensmtpd-filter-* packages and rspamd are the third-party filters of
# tests/integration/test_filters.py (they pull in no MTA); rspamd's own
# service is kept from starting by the policy-rc.d below, the test runs
# its own instance on loopback.
MSD_TEST_DEPS=(python3 swaks postfix iproute2 util-linux procps git dovecot-lmtpd
	opensmtpd-filter-dkimsign opensmtpd-filter-senderscore
	opensmtpd-filter-rspamd rspamd python3-dkim openssl dnsmasq-base)

msd_log() { printf '==> %s\n' "$*" >&2; }
msd_die() { printf 'error: %s\n' "$*" >&2; exit 1; }

msd_is_root() { [ "$(id -u)" = 0 ]; }

# msd_missing_pkgs PKG... : prints the packages that are not installed.
msd_missing_pkgs() {
	local p
	for p in "$@"; do
		dpkg-query -W -f='${Status}\n' "$p" 2>/dev/null |
			grep -q '^install ok installed$' || printf '%s\n' "$p"
	done
}

# msd_install_pkgs PKG... : installs what is missing (root), or names it.
msd_install_pkgs() {
	local missing created_policy=0 had_postfix=1
	command -v dpkg-query >/dev/null || msd_die "not a Debian system (no dpkg-query)"
	mapfile -t missing < <(msd_missing_pkgs "$@")
	[ "${#missing[@]}" -eq 0 ] && return 0
	if ! msd_is_root; then
		msd_die "missing packages: ${missing[*]}
  install them as root: apt-get install --no-install-recommends ${missing[*]}"
	fi
	msd_log "installing: ${missing[*]}"
	printf '%s\n' "${missing[@]}" | grep -qx postfix && had_postfix=0
	# Installed daemons must not start: a policy-rc.d that denies every start,
	# only for the duration of this apt run (unless one is already there).
	if [ ! -e /usr/sbin/policy-rc.d ]; then
		printf '#!/bin/sh\nexit 101\n' >/usr/sbin/policy-rc.d
		chmod 0755 /usr/sbin/policy-rc.d
		created_policy=1
	fi
	# Postfix with "No configuration" writes no main.cf and listens nowhere.
	echo "postfix postfix/main_mailer_type select No configuration" |
		debconf-set-selections 2>/dev/null || true
	local rc=0
	export DEBIAN_FRONTEND=noninteractive
	# A failing third-party source must not stop us: try the install anyway.
	apt-get update -q || msd_log "apt-get update failed (exit $?); installing anyway"
	apt-get install -y -q --no-install-recommends "${missing[@]}" || rc=$?
	[ "$created_policy" = 1 ] && rm -f /usr/sbin/policy-rc.d
	[ "$rc" = 0 ] || msd_die "apt-get failed (exit $rc)"
	# If the package started postfix anyway (no policy-rc.d honoured), stop it:
	# nothing of ours uses port 25 and nothing should listen there.
	if [ "$had_postfix" = 0 ] && command -v postfix >/dev/null &&
	    postfix status >/dev/null 2>&1; then
		msd_log "stopping the postfix instance the package started"
		postfix stop >/dev/null 2>&1 || true
	fi
	mapfile -t missing < <(msd_missing_pkgs "$@")
	[ "${#missing[@]}" -eq 0 ] || msd_die "still missing after apt-get: ${missing[*]}"
}

# msd_ensure_user NAME : a system user without a login shell (root only).
msd_ensure_user() {
	getent passwd "$1" >/dev/null && return 0
	msd_is_root || msd_die "user $1 is missing and only root can create it"
	useradd --system --user-group --no-create-home --home-dir /nonexistent \
		--shell /usr/sbin/nologin "$1"
}

# The users the roles drop to and the smtp role's chroot (as root only).
msd_ensure_privsep() {
	msd_is_root || return 0
	local u
	for u in _smtpd _smtpq; do
		getent passwd "$u" >/dev/null && continue
		useradd --system --user-group --no-create-home --home-dir /var/empty \
			--shell /usr/sbin/nologin "$u"
	done
	install -d -o root -g root -m 0755 /var/empty
}

# msd_build DIR [configure args...] : autogen + configure (once) + make.
msd_build() {
	local dir=$1; shift
	(
		cd "$dir" || exit 1
		if [ ! -x configure ] || [ configure.ac -nt configure ]; then
			msd_log "autogen in $dir"
			./autogen.sh || exit 1
		fi
		if [ ! -f Makefile ] || [ ! -f config.status ]; then
			msd_log "configure in $dir $*"
			./configure -q "$@" || exit 1
		fi
		msd_log "make in $dir"
		make -j"$(nproc)" all || exit 1
	)
}

# msd_check_targets DIR : the test programs and test modules of the Makefile.
msd_check_targets() {
	printf 'msd-print-check-targets:\n\t@echo $(check_PROGRAMS) $(check_LTLIBRARIES)\n' |
		make -s -C "$1" -f Makefile -f - msd-print-check-targets
}

# msd_build_checks DIR : builds (never runs) what `make check` would build.
msd_build_checks() {
	local targets
	targets=$(msd_check_targets "$1") || return 1
	[ -n "$targets" ] || return 0
	msd_log "building test programs in $1"
	# shellcheck disable=SC2086
	make -C "$1" -k -j"$(nproc)" $targets
}

# msd_needs_build DIR : true when the daemon or a module is missing.
msd_needs_build() {
	[ -x "$1/smtpd" ] || return 0
	[ -f "$1/modules/queue/fs/.libs/fs.so" ] || return 0
	[ -f "$1/modules/mda/maildir/.libs/maildir.so" ] || return 0
	[ -f "$1/Makefile" ] || return 0
	return 1
}

# msd_as USER SCRIPT ARGS... : true when USER can do what the sh SCRIPT does.
msd_as() {
	setpriv --reuid="$1" --regid="$1" --init-groups sh -c "$2" sh "${@:3}" 2>/dev/null
}

# msd_module_dir BUILDDIR STAGE : prints the module directory to use.  As
# root, when _smtpq cannot read BUILDDIR's modules (a checkout under /root:
# the roles open modules after dropping privileges), copies them to STAGE in
# the installed layout <kind>/<name>.so and prints STAGE.
msd_module_dir() {
	local builddir=$1 stage=$2 so kind probe=
	for so in "$builddir"/modules/*/*/.libs/*.so; do
		[ -f "$so" ] && probe=$so && break
	done
	if ! msd_is_root || [ -z "$probe" ] || msd_as _smtpq 'test -r "$1"' "$probe"; then
		echo "$builddir/modules"
		return
	fi
	rm -rf "$stage"
	for so in "$builddir"/modules/*/*/.libs/*.so; do
		[ -f "$so" ] || continue
		kind=$(basename "$(dirname "$(dirname "$(dirname "$so")")")")
		install -D -o root -g root -m 0755 "$so" "$stage/$kind/$(basename "$so")"
	done
	echo "$stage"
}

# bench: one throughput.sh run with VAR=value settings; its output goes to
# stderr prefixed with LABEL, its json: line to stdout.
msd_bench_run() { # LABEL VAR=value...
	local label=$1 out
	shift
	if ! out=$(env "$@" bash "$MSD_ROOT/bench/throughput.sh" 2>&1); then
		printf '%s\n' "$out" >&2
		msd_die "$label run failed"
	fi
	printf '%s\n' "$out" | sed "s/^/$label: /" >&2
	printf '%s\n' "$out" | sed -n 's/^json: //p'
}
