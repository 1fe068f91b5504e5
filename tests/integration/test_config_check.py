#!/usr/bin/env python3
"""Acceptance: `smtpd -n` prints `file:line: message` and exits 1 for a
config with a typo, and `configuration OK` with exit 0 for a good one."""

import os
import re
import shutil
import sys
import tempfile

sys.path.insert(0, os.path.dirname(os.path.abspath(__file__)))
import harness as h  # noqa: E402

_tmp = []


def write(name, text):
    if not _tmp:
        _tmp.append(tempfile.mkdtemp(prefix="msd-conf-"))
    path = os.path.join(_tmp[0], name)
    with open(path, "w") as f:
        f.write(text)
    return path


def expect_error(path, line, extra=()):
    rc, out = h.run_check(path, extra)
    assert rc == 1, "smtpd -n exit status %d (expected 1), output:\n%s" % (rc, out)
    assert "configuration OK" not in out, "bad config reported OK:\n" + out
    rx = re.compile(r"(?m)^%s:%d: \S" % (re.escape(path), line))
    assert rx.search(out), "no '%s:%d: <message>' line in the output:\n%s" % (path, line, out)
    return out


def expect_ok(path, extra=()):
    rc, out = h.run_check(path, extra)
    assert rc == 0 and out.strip() == "configuration OK", \
        "smtpd -n -> exit %d, output %r (expected exit 0 and 'configuration OK')" % (rc, out)


def test_typo_keyword():
    """a misspelt keyword: file:line and exit 1"""
    p = write("typo.conf", """\
# a typo on line 4
listen on 127.0.0.1 port 2525

acton "local" maildir "/tmp/msd-nowhere/Maildir"
match from any for domain "example.org" action "local"
""")
    expect_error(p, 4)


def test_typo_in_argument():
    """a misspelt argument in a match rule: file:line and exit 1"""
    p = write("typo2.conf", """\
listen on 127.0.0.1 port 2525
action "local" maildir "/tmp/msd-nowhere/Maildir"
match from anny for domain "example.org" action "local"
""")
    expect_error(p, 3)


def test_undefined_action():
    """a match naming an action that does not exist: file:line and exit 1"""
    p = write("undef.conf", """\
listen on 127.0.0.1 port 2525
action "local" maildir "/tmp/msd-nowhere/Maildir"

match from any for domain "example.org" action "lcoal"
""")
    expect_error(p, 4)


def test_error_in_included_file():
    """an error inside an included file names that file and its line"""
    inc = write("included.conf", """\
action "local" maildir "/tmp/msd-nowhere/Maildir"
match from any for domian "example.org" action "local"
""")
    main = write("main.conf", """\
listen on 127.0.0.1 port 2525
include "%s"
""" % inc)
    rc, out = h.run_check(main)
    assert rc == 1, "exit status %d (expected 1):\n%s" % (rc, out)
    assert re.search(r"(?m)^%s:2: \S" % re.escape(inc), out), \
        "no '%s:2: <message>' line:\n%s" % (inc, out)


def test_good_minimal():
    """the quick-start config: configuration OK, exit 0"""
    p = write("good.conf", """\
listen on 127.0.0.1 port 2525
action "local" maildir "/tmp/msd-nowhere/Maildir"
match from any for domain "example.org" action "local"
match from local for local action "local"
""")
    expect_ok(p)


def test_good_full_subset():
    """macros, -D, comments, quoting, continuation, include, tables, limits, reject: OK"""
    inc = write("rules.conf", """\
match from any for domain <blocked> reject   # trailing comment
match from src <trusted> for any action "local"
""")
    p = write("full.conf", """\
# every construct of the first config subset
name = "mx.test.example"
mdir = "/tmp/msd-nowhere/Maildir"

table blocked { "blocked.example", "spam.example" }
table trusted { "192.0.2.0/24" }
table aliases { postmaster = root, abuse = "root" }

listen on 127.0.0.1 port $port tag MAIN \\
	hostname $name
listen on localhost port 2526

smtp max-message-size 10M
smtp limit max-rcpt 50
smtp limit max-mails 20

action "local" maildir $mdir
action "quoted name with spaces" maildir "/tmp/msd-nowhere/#not a comment"

include "%s"
match from any for domain "example.org" action "local"
match from local for local action "quoted name with spaces"
match ! from local for domain "example.net" reject
match from any !for domain "example.com" reject
""" % inc)
    expect_ok(p, ["-D", "port=2525"])
    # without -D the macro $port is undefined: an error on line 9
    expect_error(p, 9)


def test_shipped_examples():
    """examples/smtpd.conf, which the README points newcomers to, is valid"""
    expect_ok(os.path.join(h.ROOT, "examples", "smtpd.conf"))


if __name__ == "__main__":
    try:
        h.run_checks([test_typo_keyword, test_typo_in_argument, test_undefined_action,
                      test_error_in_included_file, test_good_minimal, test_good_full_subset,
                      test_shipped_examples])
    finally:
        if _tmp and os.environ.get("MSD_KEEP") != "1":
            shutil.rmtree(_tmp[0], ignore_errors=True)
