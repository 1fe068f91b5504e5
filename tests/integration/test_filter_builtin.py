#!/usr/bin/env python3
"""Builtin filters of smtpd.conf(5), `filter NAME phase P match CONDS
DECISION` (issue 6), run as instances of the in-process module
modules/filter/builtin: each decision reaches the client with its reply
code, junk adds X-Spam: Yes, rewrite changes the recipient, bypass skips
the rest of the chain, report emits a filter-report event; conditions on
src, helo, mail-from, rcpt-to (lists and regex tables, negated), rdns and
fcrdns as link-connect reports them; a table served by a worker process
makes the filter wait for its answer; a table that fails gives 451;
smtpd -n names file and line for bad builtin and module filters."""

import os
import re
import shutil
import subprocess
import sys

sys.path.insert(0, os.path.dirname(os.path.abspath(__file__)))
import harness as h  # noqa: E402

FILTER = os.path.join(h.ROOT, "examples", "filter-stdio.py")
PYTHON = "/usr/bin/python3" if os.access("/usr/bin/python3", os.X_OK) else sys.executable

TAIL = """\
listen on @HOST@ port @PORT@ hostname @HOSTNAME@ filter "all"
action "local" maildir "@MAILDIR@"@USER_OPT@
match from any for domain "example.org" action "local"
"""

DECISIONS = """\
table bad { "bad@example.org", "worse@example.org" }
table old { "old@example.org" }
table badhelo { "^evil\\\\." }
table spammers { "@spam.test" }
table reported { "^watched@" }
table commitrej { "late@client.test" }
table trusted { 127.0.0.2 }
table blocked { 127.0.0.3 }
filter "blocked" phase connect match src <blocked> disconnect "554 5.7.1 Go away"
filter "trusted" phase rcpt-to match src <trusted> bypass
filter "helo" phase ehlo match helo regex <badhelo> disconnect "554 5.7.1 Bad HELO"
filter "rej" phase rcpt-to match rcpt-to <bad> reject "550 5.7.1 Recipient refused by policy"
filter "notrusted" phase rcpt-to match !src <trusted> rcpt-to { "only-trusted@example.org" } \\
	reject "550 5.7.1 Only from trusted hosts"
filter "rw" phase rcpt-to match rcpt-to <old> rewrite "new@example.org"
filter "junk" phase mail-from match mail-from <spammers> junk
filter "rep" phase mail-from match mail-from regex <reported> report "watched sender"
filter "late" phase commit match mail-from <commitrej> reject "550 5.7.0 Refused at commit"
filter "all" chain { "blocked", "trusted", "helo", "rej", "notrusted", "rw", "junk", "rep", "late" }
"""


def started(name, text, tail=TAIL):
    d = h.Daemon(name, text + tail)
    d.start()
    return d


def delivered_with(d, subject):
    return [m for m in d.read_messages() if ("Subject: %s\n" % subject).encode() in m]


def test_decisions():
    """reject, disconnect, rewrite, junk, bypass, report and reject at commit"""
    d = started("fbdecide", DECISIONS)
    with d.connect() as c:
        c.greet()
        c.expect("MAIL FROM:<sender@client.test>", 250)
        r = c.cmd("RCPT TO:<bad@example.org>")
        assert str(r) == "550 5.7.1 Recipient refused by policy", r
        r = c.cmd("RCPT TO:<Worse@Example.ORG>")
        assert str(r) == "550 5.7.1 Recipient refused by policy", "tables are case-insensitive: %s" % r
        r = c.cmd("RCPT TO:<only-trusted@example.org>")
        assert str(r) == "550 5.7.1 Only from trusted hosts", r
        c.expect("RCPT TO:<old@example.org>", 250)
        c.expect("RCPT TO:<fine@example.org>", 250)
        c.expect("DATA", 354)
        c.send(h.to_wire(h.make_message("rewritten")))
        assert c.reply().code == 250
    d.wait_log(r"to=<new@example\.org>", 20)
    assert not re.search(r"to=<old@example\.org>", d.log_text()), "old@ was not rewritten"

    # from a trusted address the bypass comes first: bad@ is accepted
    with d.connect(source=("127.0.0.2", 0)) as c:
        c.greet()
        c.send_message(h.make_message("trusted"), rcpts=("bad@example.org",
                                                        "only-trusted@example.org"))
    # the junk filter marks the transaction; the report filter only reports
    with d.connect() as c:
        c.greet()
        c.send_message(h.make_message("junked"), mail_from="someone@spam.test")
        c.send_message(h.make_message("watched"), mail_from="watched@client.test")
    d.wait_delivered(6)
    junk = delivered_with(d, "junked")
    assert junk and junk[0].startswith(b"X-Spam: Yes\n"), junk
    for subject in ("watched", "trusted", "rewritten"):
        msgs = delivered_with(d, subject)
        assert msgs and not msgs[0].startswith(b"X-Spam"), (subject, msgs)
    d.wait_log(r"filter-report builtin rep: watched sender")

    # reject at commit: the message is refused, nothing is queued
    with d.connect() as c:
        c.greet()
        c.expect("MAIL FROM:<late@client.test>", 250)
        c.expect("RCPT TO:<fine@example.org>", 250)
        c.expect("DATA", 354)
        c.send(h.to_wire(h.make_message("late")))
        r = c.reply()
        assert str(r) == "550 5.7.0 Refused at commit", r
        # the session goes on
        c.send_message(h.make_message("after late"))
    d.wait_delivered(7)
    assert delivered_with(d, "after late")
    assert not delivered_with(d, "late"), "a message refused at commit was delivered"

    # a HELO name the regex table lists: disconnected
    with d.connect() as c:
        c.reply()
        r = c.cmd("EHLO evil.example")
        assert str(r) == "554 5.7.1 Bad HELO", r
        assert c.closed_by_peer(), "not disconnected after a disconnect decision"
    with d.connect() as c:
        c.greet(helo="notevil.example")
    # connect phase: the banner is the refusal
    with d.connect(source=("127.0.0.3", 0)) as c:
        r = c.reply()
        assert str(r) == "554 5.7.1 Go away", r
        assert c.closed_by_peer()
    assert d.stop() == 0


def link_connect(logfile):
    """rdns and fcrdns of the last link-connect the stdio filter saw."""
    with open(logfile) as f:
        lines = [l.rstrip("\n").split("|") for l in f if "|link-connect|" in l]
    f = lines[-1]
    return f[6], f[7]


def test_rdns_fcrdns():
    """rdns and fcrdns conditions decide on what link-connect reports"""
    d = h.Daemon("fbrdns", "")
    log = os.path.join(d.tmp, "stdio.log")
    with open(log, "w"):
        pass
    os.chmod(log, 0o666)
    script = os.path.join(d.tmp, "filter-stdio.py")
    shutil.copy(FILTER, script)
    os.chmod(script, 0o755)
    d.write_config("""\
filter "stdio" proc-exec "%s %s -l %s"
table nordns { "nordns@example.org" }
table anyname { "." }
filter "fc" phase mail-from match !fcrdns junk
filter "nr" phase rcpt-to match !rdns rcpt-to <nordns> reject "550 5.7.25 No reverse DNS"
filter "named" phase rcpt-to match rdns regex <anyname> rcpt-to <nordns> \\
	reject "550 5.7.1 Named hosts may not"
filter "all" chain { "stdio", "fc", "nr", "named" }
""" % (PYTHON, script, log) + TAIL)
    d.start()
    with d.connect() as c:
        c.greet()
        c.expect("MAIL FROM:<sender@client.test>", 250)
        r = c.cmd("RCPT TO:<nordns@example.org>")
        c.expect("RSET", 250)
        c.send_message(h.make_message("fcrdns"))
    rdns, fcrdns = link_connect(log)
    if rdns == "<unknown>":
        assert str(r) == "550 5.7.25 No reverse DNS", (rdns, r)
    else:
        assert str(r) == "550 5.7.1 Named hosts may not", (rdns, r)
    d.wait_delivered(1)
    msg = delivered_with(d, "fcrdns")[0]
    assert msg.startswith(b"X-Spam: Yes\n") == (fcrdns != "pass"), (fcrdns, msg[:80])
    assert d.stop() == 0


SLOWPROG = os.path.join(h.ROOT, "tests", "table-proc", "table-slow.py")


def test_worker_table():
    """a table served by a worker process: the filter waits for its answer"""
    d = h.Daemon("fbworker", """\
table slow proc:%s:0.5
filter "slow" phase rcpt-to match rcpt-to <slow> reject "550 5.7.1 Slowly refused"
filter "all" chain { "slow" }
""" % SLOWPROG + TAIL)
    d.start()
    with d.connect() as c:
        c.greet()
        c.expect("MAIL FROM:<sender@client.test>", 250)
        r = c.cmd("RCPT TO:<ok-slow@example.org>")
        assert str(r) == "550 5.7.1 Slowly refused", r
        c.expect("RCPT TO:<fast@example.org>", 250)
    assert d.stop() == 0


def check(d):
    p = subprocess.run([h.SMTPD, "-n", "-f", d.conf], stdin=subprocess.DEVNULL,
                       stdout=subprocess.PIPE, stderr=subprocess.STDOUT,
                       env=d.env(), timeout=30 * h.SCALE)
    return p.returncode, p.stdout.decode(errors="replace")


def test_config_errors():
    """smtpd -n names file and line: rewrite without an argument to
    rewrite, a missing module, module arguments the module refuses"""
    cases = [
        ('filter "f" phase connect match src { 10.0.0.1 } rewrite "x"\n',
         r'smtpd\.conf:1: filter "f": rewrite needs a phase with an argument'),
        ('filter "f" module nosuchmodule "x"\n',
         r'smtpd\.conf:1: filter "f": no usable filter module "nosuchmodule"'),
        ('table t { "a" }\nfilter "f" module builtin phase helo match src reject "550 no"\n',
         r'smtpd\.conf:2: filter "f": module "builtin": condition src needs a <table>'),
        ('filter "f" phase rcpt-to match rcpt-to { "a@b" } reject "250 fine"\n',
         r'smtpd\.conf:1: filter "f": message "250 fine" must start with a 4xx or 5xx code'),
    ]
    for text, want in cases:
        d = h.Daemon("fbconf", text)
        rc, out = check(d)
        assert rc != 0 and re.search(want, out), "%r -> exit %d:\n%s" % (text, rc, out)
    d = h.Daemon("fbconfok", 'filter "f" module builtin phase mail-from match mail-from '
                 'regex "<t>" report "seen"\ntable t { "^x" }\n')
    rc, out = check(d)
    assert rc == 0 and "configuration OK" in out, out


if __name__ == "__main__":
    h.run_checks([test_decisions, test_rdns_fcrdns, test_worker_table, test_config_errors])
