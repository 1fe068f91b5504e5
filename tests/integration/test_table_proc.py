#!/usr/bin/env python3
"""Acceptance (the proc table backend against a real old-style program):
Debian's opensmtpd-extras table-passwd, which speaks the imsg table
protocol (API version 2), answers userinfo and credentials lookups through
the module, survives a kill by being restarted in imsg mode, and exits on
CLOSE.

The package is fetched, never installed (it depends on another MTA):
`apt-get download opensmtpd-extras` into /var/cache/modsmtpd-test, then
`dpkg -x` into /var/cache/modsmtpd-test/opensmtpd-extras.  When it cannot
be downloaded the check prints a "skip:" line and passes; every other
problem fails it.  The lookups themselves are made by the unit-test
program (tests/unit/test-tableproc extras), which loads the module.
"""

import glob
import os
import shutil
import subprocess
import sys
import tempfile

sys.path.insert(0, os.path.dirname(os.path.abspath(__file__)))
import harness as h  # noqa: E402

CACHE = "/var/cache/modsmtpd-test"
EXTRACTED = os.path.join(CACHE, "opensmtpd-extras")
LIBEXEC = os.path.join(EXTRACTED, "usr", "libexec", "opensmtpd")
PROGRAM = os.path.join(LIBEXEC, "table-passwd")
UNIT = os.path.join(h.BUILDDIR, "tests", "unit", "test-tableproc")
SKIP_ENV = "MSD_TABLEPROC_SKIP"


def run(cmd, **kw):
    return subprocess.run(cmd, stdout=subprocess.PIPE, stderr=subprocess.STDOUT,
                          universal_newlines=True, timeout=300, **kw)


def download():
    """The .deb in CACHE, or None and why not."""
    debs = glob.glob(os.path.join(CACHE, "opensmtpd-extras_*.deb"))
    if debs:
        return sorted(debs)[-1], None
    if not shutil.which("apt-get"):
        return None, "no apt-get on this system"
    try:
        os.makedirs(CACHE, exist_ok=True)
    except OSError as e:
        return None, "cannot create %s: %s" % (CACHE, e)
    r = run(["apt-get", "download", "opensmtpd-extras"], cwd=CACHE)
    if r.returncode != 0 and h.IS_ROOT:
        # The package lists may be missing or stale: refresh them once.
        run(["apt-get", "update", "-q"])
        r = run(["apt-get", "download", "opensmtpd-extras"], cwd=CACHE)
    debs = glob.glob(os.path.join(CACHE, "opensmtpd-extras_*.deb"))
    if r.returncode != 0 or not debs:
        return None, "apt-get download opensmtpd-extras failed: %s" % \
            r.stdout.strip().splitlines()[-1:]
    return sorted(debs)[-1], None


def prepare():
    """Unpacks the package once; returns why the check must skip, or None."""
    if os.access(PROGRAM, os.X_OK):
        return None
    deb, why = download()
    if deb is None:
        return why
    tmp = tempfile.mkdtemp(prefix="opensmtpd-extras.", dir=CACHE)
    r = run(["dpkg", "-x", deb, tmp])
    if r.returncode != 0:
        shutil.rmtree(tmp, ignore_errors=True)
        raise AssertionError("dpkg -x %s: %s" % (deb, r.stdout))
    shutil.rmtree(EXTRACTED, ignore_errors=True)
    os.rename(tmp, EXTRACTED)
    return None


def test_table_passwd_imsg():
    """Debian's table-passwd (imsg protocol) through the proc module"""
    why = os.environ.get(SKIP_ENV)
    if why:
        print("skip: opensmtpd-extras cannot be downloaded (%s)" % why)
        return
    assert os.access(PROGRAM, os.X_OK), "%s missing after unpacking" % PROGRAM
    r = run(["ldd", PROGRAM])
    missing = [l.strip() for l in r.stdout.splitlines() if "not found" in l]
    assert not missing, "table-passwd needs libraries that are not installed: %s" % missing
    assert os.access(UNIT, os.X_OK), "%s not built (make check builds it)" % UNIT
    r = run([UNIT, "extras"], cwd=h.BUILDDIR,
            env=dict(os.environ, TABLEPROC_EXTRAS_DIR=LIBEXEC))
    print(r.stdout, end="")
    oks = [l for l in r.stdout.splitlines() if l.startswith("ok ")]
    assert r.returncode == 0 and "not ok" not in r.stdout, \
        "test-tableproc extras failed (exit %d)" % r.returncode
    assert not [l for l in oks if "# skip" in l], "the table-passwd part was skipped"
    assert len([l for l in oks if "table-passwd:" in l]) >= 10, \
        "too few table-passwd checks ran"


DAEMON_CONFIG = """\
listen on @HOST@ port @PORT@ hostname @HOSTNAME@
table vusers sqlite:@TMP@/sqlite.conf
action "virtual" maildir "@MAILDIR@"@USER_OPT@ virtual <vusers>
match from any for domain "virt.example" action "virtual"
"""


def rcpt_code(d, addr):
    with d.connect() as c:
        c.greet()
        c.expect("MAIL FROM:<sender@client.test>", 250)
        return c.cmd("RCPT TO:<%s>" % addr).code


def program_pid(d, program):
    """The pid of the copy of program that serves the lookup role: a child
    of the table's worker process, itself a child of the lookup role."""
    lookup = d.role_pids().get("lookup")
    for worker in h.children(lookup) if lookup else ():
        for pid in h.children(worker):
            try:
                if os.readlink("/proc/%d/exe" % pid) == program:
                    return pid
            except OSError:
                pass
    return None


def test_extras_sqlite_through_daemon():
    """Debian's table-sqlite serves virtual users to the daemon (a type
    with no module of ours in the way: the module path holds none); killed
    mid-run, lookups get 4xx, then it is restarted and answers again"""
    why = os.environ.get(SKIP_ENV)
    if why:
        print("skip: opensmtpd-extras cannot be downloaded (%s)" % why)
        return
    import sqlite3
    program = os.path.join(LIBEXEC, "table-sqlite")
    d = h.Daemon("extras-sqlite", DAEMON_CONFIG)
    db = os.path.join(d.tmp, "virt.sqlite")
    con = sqlite3.connect(db)
    con.execute("CREATE TABLE virtuals (email TEXT, destination TEXT)")
    con.execute("INSERT INTO virtuals VALUES ('alice@virt.example', 'alice')")
    con.commit()
    con.close()
    os.chmod(db, 0o644)
    with open(os.path.join(d.tmp, "sqlite.conf"), "w") as f:
        f.write("dbpath %s\nquery_alias SELECT destination FROM virtuals"
                " WHERE email=?\n" % db)
    # Only the queue and mda modules: "sqlite" must resolve to the program.
    mods = tempfile.mkdtemp(prefix="msd-mods-")
    os.chmod(mods, 0o755)
    for kind, name in (("queue", "fs"), ("mda", "maildir"), ("table", "proc")):
        os.makedirs(os.path.join(mods, kind), exist_ok=True)
        shutil.copy(os.path.join(h.MODULE_PATH, kind, name, ".libs", name + ".so"),
                    os.path.join(mods, kind, name + ".so"))
    saved = dict(os.environ)
    os.environ["MODSMTPD_MODULE_PATH"] = mods
    os.environ["MODSMTPD_TABLE_DIR"] = LIBEXEC
    h._staged[:] = [mods]
    try:
        d.start()
    finally:
        os.environ.clear()
        os.environ.update(saved)
    try:
        assert rcpt_code(d, "alice@virt.example") == 250
        assert rcpt_code(d, "bob@virt.example") == 550
        pid = h.wait_for(lambda: program_pid(d, program),
                         what="table-sqlite under the lookup role")
        os.kill(pid, 9)
        assert rcpt_code(d, "alice@virt.example") == 451, \
            "a dead table program must give a temporary failure"
        h.wait_for(lambda: rcpt_code(d, "alice@virt.example") == 250, timeout=30,
                   what="table-sqlite restarted and answering")
        assert d.running(), "the daemon exited with its table program"
        d.wait_log(r"table vusers|vusers")
    finally:
        h._staged[:] = []
        d.stop()
        shutil.rmtree(mods, ignore_errors=True)


if __name__ == "__main__":
    # Before the harness moves us into a namespace without a network.
    if SKIP_ENV not in os.environ and not os.access(PROGRAM, os.X_OK):
        reason = "no network inside the test namespace" if h.in_netns() \
            else prepare()
        if reason:
            os.environ[SKIP_ENV] = reason
    h.run_checks([test_table_passwd_imsg, test_extras_sqlite_through_daemon])
