#!/usr/bin/env python3
"""Acceptance: the rule engine through the real daemon.  Match options on
MAIL FROM (file table), HELO (regex), RCPT TO (file table), tag negation
and domain regex decide per recipient; a format-specifier path with
modifiers files a sub-addressed recipient under its user; a feature that
parses but cannot run stops the start with file:line; `smtpd -n -v` turns
an old-grammar file into a current one that loads to the same thing."""

import glob
import os
import pwd
import subprocess
import sys
import tempfile

sys.path.insert(0, os.path.dirname(os.path.abspath(__file__)))
import harness as h  # noqa: E402

CONFIG = """\
listen on @HOST@ port @PORT@ hostname @HOSTNAME@ tag "IN"
table badsenders file:@TMP@/senders
table rcpts file:@TMP@/rcpts
action "vdir" maildir "@TMP@/vmail/%{rcpt.domain}/%{rcpt.user:lowercase|strip}"@USER_OPT@
action "local" maildir "@MAILDIR@"@USER_OPT@
match from any mail-from <badsenders> for any reject
match from any helo regex "^bad\\." for any reject
match from any for any rcpt-to <rcpts> action "local"
match from any !tag "IN" for any reject
match from any for domain regex "^(example|sample)\\.org$" action "vdir"
"""


def daemon(name):
    d = h.Daemon(name, CONFIG)
    with open(os.path.join(d.tmp, "senders"), "w") as f:
        f.write("# refused senders\n@evil.example\nspammer@bad.example\n")
    with open(os.path.join(d.tmp, "rcpts"), "w") as f:
        f.write("postmaster@example.net\n")
    vmail = os.path.join(d.tmp, "vmail")
    os.mkdir(vmail, 0o755)
    if d.user:
        pw = pwd.getpwnam(d.user)
        os.chown(vmail, pw.pw_uid, pw.pw_gid)
    return d.start()


def rcpt_code(d, helo, sender, rcpt):
    with d.connect() as c:
        c.greet(helo)
        c.expect("MAIL FROM:<%s>" % sender, 250)
        r = c.cmd("RCPT TO:<%s>" % rcpt)
        c.expect("QUIT", 221)
        return r


def test_match_options():
    """mail-from, helo regex, rcpt-to, !tag and domain regex decide per recipient"""
    d = daemon("engine")
    cases = [
        ("client.test", "anyone@evil.example", "a@example.org", 550, "mail-from @domain entry"),
        ("client.test", "Spammer@BAD.example", "a@example.org", 550, "mail-from user@domain, any case"),
        ("bad.client.test", "ok@client.test", "a@example.org", 550, "helo regex"),
        ("client.test", "ok@client.test", "postmaster@example.net", 250, "rcpt-to file table"),
        ("client.test", "ok@client.test", "a@sample.org", 250, "domain regex"),
        ("client.test", "ok@client.test", "a@example.com", 550, "no rule"),
        ("good.bad.test", "ok@client.test", "a@example.org", 250, "regex is anchored"),
    ]
    for helo, sender, rcpt, code, what in cases:
        r = rcpt_code(d, helo, sender, rcpt)
        assert r.code == code, "%s: HELO %s MAIL %s RCPT %s -> %s (expected %d)" % (
            what, helo, sender, rcpt, r, code)


def test_format_path_strip():
    """Bob+Lists@example.org lands in vmail/example.org/bob via :lowercase|strip"""
    d = daemon("expand")
    data = h.make_message("sub-address", "<strip.%d@client.test>" % os.getpid())
    with d.connect() as c:
        c.greet()
        c.send_message(data, rcpts=("Bob+Lists@example.org",))
        c.expect("QUIT", 221)
    box = os.path.join(d.tmp, "vmail", "example.org", "bob", "new")
    h.wait_for(lambda: glob.glob(os.path.join(box, "*")), timeout=30,
               what="a message in %s" % box)
    got = open(glob.glob(os.path.join(box, "*"))[0], "rb").read()
    assert b"Subject: sub-address" in got, "delivered file lacks the message"


def smtpd(*args):
    env = dict(os.environ)
    env["MODSMTPD_MODULE_PATH"] = h.module_path()
    return subprocess.run([h.SMTPD] + list(args), stdout=subprocess.PIPE,
                          stderr=subprocess.PIPE, env=env, timeout=30)


LEGACY = """\
table aliases { root = admin }
listen on 127.0.0.1 port 2599
expire 2d
accept from any for domain "example.org" deliver to maildir "/var/vmail/%{rcpt.user}"
accept for local alias <aliases> deliver to maildir
reject from any for domain "spam.example"
"""


def test_legacy_translation():
    """-n -v prints the current grammar; that output loads and prints the same"""
    tmp = tempfile.mkdtemp(prefix="msd-engine-")
    old = os.path.join(tmp, "old.conf")
    with open(old, "w") as f:
        f.write(LEGACY)
    p = smtpd("-n", "-v", "-f", old)
    assert p.returncode == 0, p.stderr.decode()
    assert b"old.conf:3: warning: this file uses the smtpd.conf grammar of OpenSMTPD " \
        b"before 6.4" in p.stderr, p.stderr.decode()
    out = p.stdout.decode().replace("configuration OK\n", "")
    for line in ('queue ttl 2d', 'action "legacy-1" maildir "/var/vmail/%{rcpt.user}"',
                 'action "legacy-2" maildir alias <aliases>',
                 'match from any for domain "example.org" action "legacy-1"',
                 'match from local for local action "legacy-2"',
                 'match from any for domain "spam.example" reject'):
        assert line + "\n" in out, "missing %r in:\n%s" % (line, out)
    new = os.path.join(tmp, "new.conf")
    with open(new, "w") as f:
        f.write(out)
    p2 = smtpd("-n", "-v", "-f", new)
    assert p2.returncode == 0, p2.stderr.decode()
    assert b"warning" not in p2.stderr, "current grammar still warns: %r" % p2.stderr
    assert p2.stdout.decode().replace("configuration OK\n", "") == out, \
        "the translation does not print identically:\n%s" % p2.stdout.decode()


if __name__ == "__main__":
    h.run_checks([test_match_options, test_format_path_strip,
                  test_legacy_translation])
