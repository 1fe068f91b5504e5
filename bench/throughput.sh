#!/bin/bash
# bench/throughput.sh - accept and delivery rate of our smtpd with postfix's
# smtp-source: N messages (default 2000) of SIZE bytes (2048) over SESSIONS
# parallel sessions (20), one connection per message, into a Maildir.
# Prints msgs/s accepted (until smtp-source has every 250), msgs/s delivered
# (until the N-th file is in Maildir/new) and the peak RSS summed over every
# smtpd process (parent, roles, delivery children), sampled every 100 ms.
#
#   bench/throughput.sh                 the measurement
#   bench/throughput.sh --peers         the shared peer bench (postfix,
#                                       OpenSMTPD, ours) side by side, see README;
#                                       PEER_TESTS="accept relay" adds relaying
#                                       to smtp-sink, PEERS= picks the servers
#   N= SESSIONS= SIZE= PORT= BUILDDIR= KEEP=1   parameters
#   FILTER="command"    put a proc-exec filter running command on the
#                       listener (bench/filter.sh compares with and without)
#   QUEUE_CONF="lines"  extra smtpd.conf lines, e.g. "queue compression"
#                       (bench/queue-crypt.sh compares the queue options)
#
# As root it re-executes itself in a new network namespace holding only
# loopback, so no packet can leave 127.0.0.0/8.
set -euo pipefail

. "$(dirname "$0")/../scripts/lib.sh"
SELF=$MSD_ROOT/bench/throughput.sh
N=${N:-2000}
SESSIONS=${SESSIONS:-20}
SIZE=${SIZE:-2048}
PORT=${PORT:-10027}
BUILDDIR=$(cd "${BUILDDIR:-$MSD_ROOT}" && pwd)
BIN=$BUILDDIR/smtpd
SMTP_SOURCE=${SMTP_SOURCE:-/usr/sbin/smtp-source}
DELIVER_TIMEOUT=${DELIVER_TIMEOUT:-600}

[ -x "$BIN" ] || msd_die "no $BIN: build first (scripts/check or scripts/run), or set BUILDDIR"

# ------------------------------------------------------------ peer mode
if [ "${1:-}" = --peers ]; then
	msd_is_root || msd_die "the shared peer bench needs root"
	shared=$(cd "${BENCH_SHARED:-$MSD_ROOT/../shared/bench}" && pwd) ||
		msd_die "no shared bench; set BENCH_SHARED=/path/to/shared/bench"
	if ! id bench >/dev/null 2>&1 || [ ! -x /opt/opensmtpd/usr/sbin/smtpd ] ||
	    [ ! -f "$shared/listen_backlog.so" ]; then
		"$shared/setup.sh"
	fi
	msd_ensure_privsep
	work=$(mktemp -d /var/tmp/msd-peers.XXXXXX)
	chmod 0755 "$work"
	# Our configs for servers/custom.sh; tokens are filled in by the harness.
	cat >"$work/accept.conf" <<'EOF'
listen on 127.0.0.1 port @PORT@ hostname mail.@DOMAIN@
action "local" maildir "@MAILDIR@" user @USER@
match from any for domain "@DOMAIN@" action "local"
EOF
	cp "$work/accept.conf" "$work/idle.conf"
	cat >"$work/relay.conf" <<'EOF'
listen on 127.0.0.1 port @PORT@ hostname mail.@DOMAIN@
action "relay" relay host smtp://@RELAY_HOST@:@RELAY_PORT@ helo mail.@DOMAIN@
match from any for any action "relay"
EOF
	export SMTPD_BIN=$BIN SMTPD_NAME=modsmtpd
	export SMTPD_ARGS='-d -f @CONF@ -s @SPOOL@'
	export SMTPD_CONF_ACCEPT=$work/accept.conf SMTPD_CONF_IDLE=$work/idle.conf
	export SMTPD_CONF_RELAY=$work/relay.conf
	export MODSMTPD_MODULE_PATH=$(msd_module_dir "$BUILDDIR" "$work/modules")
	export RESULTS=${RESULTS:-$work/raw.jsonl}
	export TAG=${TAG:-msd-$(date +%Y%m%dT%H%M%S)} N
	for s in ${PEERS:-postfix opensmtpd-bl custom}; do
		for t in ${PEER_TESTS:-accept}; do
			"$shared/$t.sh" "$s" >/dev/null
		done
	done
	python3 "$shared/summarize.py" "$RESULTS" "$TAG"
	echo "raw results: $RESULTS"
	exit 0
fi

# Outside the sandbox: apt needs the network.
msd_install_pkgs postfix python3 iproute2 util-linux
[ -x "$SMTP_SOURCE" ] || msd_die "no $SMTP_SOURCE (Debian package postfix)"

# ------------------------------------------------------------- sandbox
if msd_is_root && [ "${MSD_BENCH_NETNS:-0}" != 1 ] && [ "${MSD_NO_NETNS:-0}" != 1 ]; then
	export MSD_BENCH_NETNS=1
	exec unshare -n -- bash "$SELF" "$@"
fi
if [ "${MSD_BENCH_NETNS:-0}" = 1 ]; then
	ip link set lo up
fi

ulimit -n "$(ulimit -Hn)" 2>/dev/null || true

# The spool and Maildir live on the same disk the peers used (/var/tmp).
work=$(mktemp -d /var/tmp/msd-bench.XXXXXX)
chmod 0755 "$work"
mkdir -p "$work/mail"
user_opt=
if msd_is_root; then
	msd_ensure_privsep
	msd_ensure_user msdbench
	chown msdbench: "$work/mail"
	user_opt=" user msdbench"
fi
filter_opt=
if [ -n "${FILTER:-}" ]; then
	printf 'filter "bench" proc-exec "%s"\n' "$FILTER" >"$work/smtpd.conf"
	filter_opt=' filter "bench"'
fi
cat >>"$work/smtpd.conf" <<EOF
listen on 127.0.0.1 port $PORT hostname mail.bench.test$filter_opt
action "local" maildir "$work/mail/Maildir"$user_opt
match from any for domain "bench.test" action "local"
EOF
if [ -n "${QUEUE_CONF:-}" ]; then
	printf '%s\n' "$QUEUE_CONF" >>"$work/smtpd.conf"
fi

pid=
cleanup() {
	if [ -n "$pid" ] && kill -0 "$pid" 2>/dev/null; then
		kill -TERM "$pid" 2>/dev/null || true
		for _ in $(seq 100); do kill -0 "$pid" 2>/dev/null || break; sleep 0.1; done
		kill -KILL "$pid" 2>/dev/null || true
	fi
	if [ "${KEEP:-0}" = 1 ]; then
		echo "kept $work" >&2
	else
		rm -rf "$work"
	fi
}
trap cleanup EXIT

MODSMTPD_MODULE_PATH=$(msd_module_dir "$BUILDDIR" "$work/modules") "$BIN" -d -f "$work/smtpd.conf" -s "$work/spool" \
	>"$work/smtpd.log" 2>&1 &
pid=$!

SRC=("$SMTP_SOURCE" -4 -c -s "$SESSIONS" -m "$N" -l "$SIZE" -M client.bench.test
	-f sender@client.bench.test -t bench@bench.test "127.0.0.1:$PORT")

python3 - "$pid" "$PORT" "$work/mail/Maildir/new" "$N" "$DELIVER_TIMEOUT" "$work/smtpd.log" \
	"$SESSIONS" "$SIZE" "${SRC[@]}" <<'EOF'
import json, os, socket, subprocess, sys, time

pid, port, newdir, n, timeout, log = (int(sys.argv[1]), int(sys.argv[2]), sys.argv[3],
                                      int(sys.argv[4]), float(sys.argv[5]), sys.argv[6])
sessions, size, cmd = sys.argv[7], sys.argv[8], sys.argv[9:]
PAGE = os.sysconf("SC_PAGE_SIZE")


def tree(root):
    kids = {}
    for d in os.listdir("/proc"):
        if d.isdigit():
            try:
                with open("/proc/%s/stat" % d) as f:
                    s = f.read()
            except OSError:
                continue
            kids.setdefault(int(s[s.rfind(")") + 2:].split()[1]), []).append(int(d))
    out, todo = [], [root]
    while todo:
        p = todo.pop()
        out.append(p)
        todo.extend(kids.get(p, []))
    return out


def rss(pids):
    total = 0
    for p in pids:
        try:
            with open("/proc/%d/statm" % p) as f:
                total += int(f.read().split()[1]) * PAGE
        except OSError:
            pass
    return total


def count():
    try:
        return sum(1 for _ in os.scandir(newdir))
    except FileNotFoundError:
        return 0


def alive():
    try:
        os.kill(pid, 0)
        return True
    except OSError:
        return False


end = time.monotonic() + 30
while True:
    if not alive():
        sys.exit("smtpd exited during startup:\n" + open(log).read()[-3000:])
    try:
        with socket.create_connection(("127.0.0.1", port), 1) as s:
            if s.recv(512).startswith(b"220"):
                s.sendall(b"QUIT\r\n")
                break
    except OSError:
        pass
    if time.monotonic() > end:
        sys.exit("smtpd not listening on 127.0.0.1:%d:\n%s" % (port, open(log).read()[-3000:]))
    time.sleep(0.05)

base_rss = rss(tree(pid))
t0 = time.monotonic()
src = subprocess.Popen(cmd, stdout=subprocess.PIPE, stderr=subprocess.STDOUT)
t_acc = t_del = None
peak, peak_n, i = base_rss, len(tree(pid)), 0
while t_acc is None or t_del is None:
    now = time.monotonic()
    if t_acc is None and src.poll() is not None:
        t_acc = now
    if t_del is None and count() >= n:
        t_del = now
    if i % 5 == 0:                      # RSS every 100 ms, the rest every 20 ms
        pids = tree(pid)
        r = rss(pids)
        if r > peak:
            peak, peak_n = r, len(pids)
    if now - t0 > timeout:
        break
    if not alive():
        break
    i += 1
    time.sleep(0.02)
src_out = src.communicate()[0].decode(errors="replace") if src.poll() is not None else "(still running)"
delivered = count()
mb = 1024 * 1024
print("smtp-source:  %s" % " ".join(cmd))
if src.returncode != 0:
    print("smtp-source exit %s: %s" % (src.returncode, src_out.strip()[-2000:]))
if t_acc is not None:
    print("accepted:     %d in %.2f s = %.1f msgs/s" % (n, t_acc - t0, n / (t_acc - t0)))
else:
    print("accepted:     not finished after %.0f s" % timeout)
if t_del is not None:
    print("delivered:    %d in %.2f s = %.1f msgs/s" % (n, t_del - t0, n / (t_del - t0)))
else:
    print("delivered:    only %d of %d after %.0f s%s" % (delivered, n, time.monotonic() - t0,
                                                           "" if alive() else " (smtpd died)"))
print("peak RSS:     %.1f MB summed over %d smtpd processes (idle before the run: %.1f MB)"
      % (peak / mb, peak_n, base_rss / mb))
print("json: " + json.dumps({
    "n": n, "sessions": int(sessions), "size": int(size),
    "accept_s": round(t_acc - t0, 3) if t_acc else None,
    "accept_msgs_s": round(n / (t_acc - t0), 1) if t_acc else None,
    "deliver_s": round(t_del - t0, 3) if t_del else None,
    "deliver_msgs_s": round(n / (t_del - t0), 1) if t_del else None,
    "delivered": delivered, "peak_rss_kb": peak // 1024, "peak_nproc": peak_n,
    "source_rc": src.returncode}))
sys.exit(0 if (t_acc and t_del and src.returncode == 0) else 1)
EOF
