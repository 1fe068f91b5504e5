#!/usr/bin/env python3
"""Acceptance: tables while the daemon runs.  SIGHUP reads every table
again: a domain added to a file table is accepted afterwards; a file broken
by an edit keeps the old contents (nothing half-loaded) and the log names
the file and line."""

import os
import signal
import sys

sys.path.insert(0, os.path.dirname(os.path.abspath(__file__)))
import harness as h  # noqa: E402

CONFIG = """\
listen on @HOST@ port @PORT@ hostname @HOSTNAME@
table domains file:@TMP@/domains
table users file:@TMP@/users
action "local" maildir "@MAILDIR@"@USER_OPT@
match from any for domain <domains> rcpt-to <users> action "local"
"""


def write(d, name, text):
    path = os.path.join(d.tmp, name)
    tmp = path + ".new"
    with open(tmp, "w") as f:
        f.write(text)
    os.rename(tmp, path)


def rcpt(d, addr):
    with d.connect() as c:
        c.greet()
        c.expect("MAIL FROM:<sender@client.test>", 250)
        return c.cmd("RCPT TO:<%s>" % addr).code


def test_sighup_reload():
    """SIGHUP: additions answer at once; a malformed file keeps the old
    contents, with file:line in the log"""
    d = h.Daemon("tables", CONFIG)
    write(d, "domains", "example.org\n")
    write(d, "users", "alice@example.org\nbob@example.net\n")
    d.start()
    assert rcpt(d, "alice@example.org") == 250
    assert rcpt(d, "bob@example.net") == 550, "example.net is not listed yet"
    write(d, "domains", "example.org\nexample.net\n")
    since = d.log_size()
    os.kill(d.pid, signal.SIGHUP)
    d.wait_log(r"lookup: tables updated", since=since)
    assert rcpt(d, "bob@example.net") == 250, "example.net after SIGHUP"
    # an unterminated [ on line 3: refused whole, the old list answers
    write(d, "users", "alice@example.org\nbob@example.net\n[carol@example.org\n")
    since = d.log_size()
    os.kill(d.pid, signal.SIGHUP)
    d.wait_log(r"table users: %s:3: .*; the old contents stay"
               % os.path.join(d.tmp, "users").replace(".", r"\."), since=since)
    assert rcpt(d, "bob@example.net") == 250, "half-loaded table answered"
    assert rcpt(d, "alice@example.org") == 250, "old contents lost"
    assert d.running(), "the daemon exited on a bad table"
    d.stop()


NEWALIASES = """\
listen on @HOST@ port @PORT@ hostname @HOSTNAME@
table aliases db:@TMP@/aliases.db
action "local" maildir "@MAILDIR@"@USER_OPT@ virtual <aliases>
match from any for domain "example.org" action "local"
"""


def test_newaliases():
    """newaliases rebuilds a db aliases table from its source and the
    running daemon answers from the new one"""
    d = h.Daemon("newaliases", NEWALIASES)
    write(d, "aliases", "info@example.org %s\n" % (d.user or "root"))
    newaliases = os.path.join(h.BUILDDIR, "sendmail")
    env = dict(os.environ, MODSMTPD_CONF=d.conf, MODSMTPD_SPOOL=d.spool)

    def run():
        import subprocess
        return subprocess.run([newaliases, "-bi"], env=env, stdout=subprocess.PIPE,
                              stderr=subprocess.PIPE, timeout=60)
    p = run()
    assert p.returncode == 0 and b"aliases.db rebuilt from" in p.stdout, p
    d.start()
    assert rcpt(d, "info@example.org") == 250
    assert rcpt(d, "sales@example.org") == 550
    who = d.user or "root"
    write(d, "aliases", "info@example.org %s\nsales@example.org %s\n" % (who, who))
    since = d.log_size()
    p = run()
    assert p.returncode == 0 and b"reads its tables again" in p.stdout, p
    d.wait_log(r"lookup: tables updated", since=since)
    assert rcpt(d, "sales@example.org") == 250, "sales after newaliases"
    write(d, "aliases", "info@example.org %s\ninfo@example.org again\n" % (d.user or "root"))
    p = run()
    assert p.returncode == 1 and b"aliases:2:" in p.stderr, p
    assert rcpt(d, "sales@example.org") == 250, "a failed rebuild lost the table"
    d.stop()


def test_smtpctl_update_table():
    """smtpctl update table NAME reads that table again; an unknown name
    and a broken file are refused with the reason, the old contents stay"""
    import subprocess
    d = h.Daemon("update-table", CONFIG)
    write(d, "domains", "example.org\n")
    write(d, "users", "alice@example.org\nbob@example.net\n")
    d.start()
    smtpctl = os.path.join(h.BUILDDIR, "smtpctl")
    env = dict(os.environ, MODSMTPD_SPOOL=d.spool)

    def ctl(*args):
        return subprocess.run([smtpctl] + list(args), env=env, stdout=subprocess.PIPE,
                              stderr=subprocess.PIPE, timeout=60)
    assert rcpt(d, "bob@example.net") == 550
    write(d, "domains", "example.org\nexample.net\n")
    since = d.log_size()
    p = ctl("update", "table", "domains")
    assert p.returncode == 0 and p.stderr == b"", p
    d.wait_log(r"lookup: table domains updated", since=since)
    assert rcpt(d, "bob@example.net") == 250, "example.net after the update"
    p = ctl("update", "table", "nosuch")
    assert p.returncode == 65 and b"no table nosuch" in p.stderr, p
    write(d, "domains", "example.org\n[broken\n")
    p = ctl("update", "table", "domains")
    assert p.returncode == 65 and b"table domains kept its old contents" in p.stderr, p
    assert rcpt(d, "bob@example.net") == 250, "a failed update lost the table"
    assert d.running()
    d.stop()


if __name__ == "__main__":
    h.run_checks([test_sighup_reload, test_newaliases, test_smtpctl_update_table])
