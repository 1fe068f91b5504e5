#!/usr/bin/env python3
"""Authenticated submission: AUTH PLAIN and LOGIN on a tls-require
listener with `auth <creds>` (bcrypt from `smtpctl encrypt`, SHA-512
from crypt(3)); AUTH only offered inside TLS; a wrong password gets 535
5.7.8 and no transaction, no AUTH gets 530; the session closes after
`smtp limit max-auth-failures`; `from auth <t>` rules; passwords never
reach the log; `senders <t> masquerade` rewrites From:.  As root:
Debian's opensmtpd-extras table-passwd serves the credentials (a proc
table), and `auth` without a table checks the system's users (through
a PAM service the test writes, when the build has PAM)."""

import base64
import os
import re
import smtplib
import subprocess
import sys
import warnings

sys.path.insert(0, os.path.dirname(os.path.abspath(__file__)))
import harness as h  # noqa: E402
import test_tls as t  # noqa: E402

with warnings.catch_warnings():
    warnings.simplefilter("ignore", DeprecationWarning)
    import crypt  # noqa: E402  (3.11: Debian 12's python)

SMTPCTL = os.path.join(h.BUILDDIR, "smtpctl")

CONFIG = """\
pki "mx" cert "@CERTS@/mx.crt"
pki "mx" key "@CERTS@/mx.key"
table creds file:@TMP@/creds
table staff { "alice" }
listen on @HOST@ port @PORT@ hostname @HOSTNAME@ tls-require pki "mx" auth <creds>
smtp limit max-auth-failures 2
action "local" maildir "@MAILDIR@"@USER_OPT@
match from auth <staff> for domain "staff.example" action "local"
match from auth for domain "example.org" action "local"
"""

PASSWORDS = {"alice": "correct horse", "bob": "battery staple"}


def hash_bcrypt(pw):
    p = subprocess.run([SMTPCTL, "encrypt", pw], stdout=subprocess.PIPE, check=True)
    out = p.stdout.decode().strip()
    assert out.startswith("$2b$10$") and crypt.crypt(pw, out) == out, out
    return out


def start(config=CONFIG, creds=None):
    d = h.Daemon("auth", config.replace("@CERTS@", t.certs()))
    with open(os.path.join(d.tmp, "creds"), "w") as f:
        for user, line in (creds or {
                "alice": hash_bcrypt(PASSWORDS["alice"]),
                "bob": crypt.crypt(PASSWORDS["bob"], crypt.mksalt(crypt.METHOD_SHA512)),
        }).items():
            f.write("%s %s\n" % (user, line))
    return d.start()


def auth(s, user, password, mech="PLAIN"):
    """(code, text) of an AUTH exchange, failures included."""
    s.user, s.password = user, password
    fn = s.auth_plain if mech == "PLAIN" else s.auth_login
    try:
        return s.auth(mech, fn, initial_response_ok=(mech == "PLAIN"))
    except smtplib.SMTPAuthenticationError as e:
        return e.smtp_code, e.smtp_error


def session(d):
    s = smtplib.SMTP(d.host, d.port, timeout=30)
    s.ehlo("client.test")
    s.starttls(context=t.client_ctx())
    s.ehlo("client.test")
    return s


def test_auth_offered_only_in_tls():
    """EHLO in clear: STARTTLS, no AUTH; AUTH refused before TLS; in TLS:
    AUTH PLAIN LOGIN"""
    d = start()
    try:
        with t.connect(d) as c:
            assert c.reply().code == 220
            r = c.cmd("EHLO client.test")
            kw = t.ehlo_keywords(r)
            assert "STARTTLS" in kw and "AUTH" not in kw, r
            plain = base64.b64encode(b"\0alice\0" + PASSWORDS["alice"].encode()).decode()
            c.expect("AUTH PLAIN " + plain, 503)
        s = session(d)
        assert s.esmtp_features.get("auth", "").split() == ["PLAIN", "LOGIN"], \
            s.esmtp_features
        s.quit()
    finally:
        d.stop()


def test_plain_login_and_refusals():
    """right password (PLAIN, bcrypt): delivered, Received says ESMTPSA;
    LOGIN with a SHA-512 hash; wrong password: 535 5.7.8 and no MAIL; no
    AUTH: 530 5.7.0; passwords never in the log"""
    d = start()
    try:
        s = session(d)
        code, _ = s.mail("sender@client.test")
        assert code == 530, "MAIL before AUTH: %d" % code
        s.rset()
        code, text = auth(s, "alice", "wrong")
        assert (code, text) == (535, b"5.7.8 Authentication failed"), (code, text)
        code, _ = s.mail("sender@client.test")
        assert code == 530, "MAIL after a failed AUTH: %d" % code
        s.rset()
        code, text = auth(s, "alice", PASSWORDS["alice"])
        assert (code, text) == (235, b"2.0.0 Authentication succeeded"), (code, text)
        s.sendmail("alice@client.test", ["rcpt@example.org"],
                   h.make_message("authenticated"))
        s.quit()
        rec, _data = t.delivered_received(d)
        assert " with ESMTPSA id " in rec, rec
        s = session(d)
        code, text = auth(s, "bob", PASSWORDS["bob"], "LOGIN")
        assert code == 235, (code, text)
        s.quit()
        log = d.log_text()
        assert "smtp authentication user=alice result=permfail" in log
        assert "smtp authentication user=alice result=ok" in log
        assert "smtp authentication user=bob result=ok" in log
        for pw in list(PASSWORDS.values()) + ["wrong"]:
            assert pw not in log, "a password in the log"
    finally:
        d.stop()


def test_failures_close_the_session():
    """max-auth-failures 2: the second failure is a 421 and the end"""
    d = start()
    try:
        s = session(d)
        assert auth(s, "alice", "nope")[0] == 535
        try:
            code, text = auth(s, "alice", "nope")
        except smtplib.SMTPServerDisconnected:
            raise AssertionError("closed without a 421")
        assert code == 421 and b"Too many authentication failures" in text, (code, text)
        try:
            s.noop()
            raise AssertionError("the session stayed open")
        except smtplib.SMTPServerDisconnected:
            pass
        assert d.running()
    finally:
        d.stop()


def test_from_auth_table():
    """`from auth <staff>`: alice is staff, bob is not"""
    d = start()
    try:
        for user, code in (("alice", 250), ("bob", 550)):
            s = session(d)
            s.login(user, PASSWORDS[user])
            s.mail("%s@client.test" % user)
            got = s.rcpt("team@staff.example")[0]
            assert got == code, "%s -> %d, expected %d" % (user, got, code)
            s.quit()
    finally:
        d.stop()


def test_received_auth_mask_src():
    """received-auth names the user in Received; mask-src leaves the
    client's name and address out"""
    d = start(CONFIG.replace("auth <creds>", "auth <creds> received-auth mask-src"))
    try:
        s = session(d)
        s.login("alice", PASSWORDS["alice"])
        s.sendmail("alice@client.test", ["rcpt@example.org"], h.make_message("masked"))
        s.quit()
        rec, _data = t.delivered_received(d)
        flat = rec.replace("\n", " ").replace("\t", "")
        assert rec.startswith("Received: by "), rec
        assert "client.test" not in rec and "127.0.0.1" not in rec, rec
        assert re.search(r" with ESMTPSA id [0-9a-f]{8} \(TLSv1\.[23]:[^)]*:NO\)"
                         r" auth=yes user=alice", flat), rec
    finally:
        d.stop()


def test_senders():
    """`senders <t>`: alice may send as the addresses listed for her, a
    forged MAIL FROM gets 550; bob, not in the table, may send as no one"""
    config = CONFIG.replace("auth <creds>", "auth <creds> senders <mailfrom>").replace(
        "table staff", "table mailfrom file:@TMP@/senders\ntable staff")
    d = h.Daemon("auth-senders", config.replace("@CERTS@", t.certs()))
    with open(os.path.join(d.tmp, "senders"), "w") as f:
        f.write("alice alice@example.org, @alice.example\n")
    with open(os.path.join(d.tmp, "creds"), "w") as f:
        for user, pw in PASSWORDS.items():
            f.write("%s %s\n" % (user, hash_bcrypt(pw)))
    d.start()
    try:
        s = session(d)
        s.login("alice", PASSWORDS["alice"])
        for sender, want in (("alice@example.org", 250), ("bob@example.org", 550),
                             ("anyone@alice.example", 250), ("alice@example.net", 550)):
            code, text = s.mail(sender)
            assert code == want, "alice as <%s>: %d %s" % (sender, code, text)
            if want == 550:
                assert b"Sender rejected" in text, text
            s.rset()
        s.quit()
        s = session(d)
        s.login("bob", PASSWORDS["bob"])
        assert s.mail("bob@example.org")[0] == 550
        s.quit()
        assert "smtp sender <bob@example.org> refused for user alice" in d.log_text()
    finally:
        d.stop()


MASQ_HEAD = (b'Subject: masquerade\nX-From: <x@forged.example>\n'
             b'Date: Sun, 22 Nov 2026 10:00:00 +0000\nMessage-ID: <masq.%d@client.test>\n')
MASQ_BODY = b"\nFrom: <body@forged.example> stays\n.leading dot\nlast line\n"
MASQ_CASES = [
    # (From: header as sent, as delivered)
    (b'From: "Alice Example" (work) <someone@forged.example>',
     b'From: "Alice Example" (work) <alice@alice.example>'),
    (b"From: =?utf-8?q?Alice_Example?=\n\t<folded@forged.example> (folded)",
     b"From: =?utf-8?q?Alice_Example?=\n\t<alice@alice.example> (folded)"),
    (b"from:bare@forged.example (Bare)", b"from:alice@alice.example (Bare)"),
    (b'FROM: "a, b" <x@forged.example>,\n c@forged.example',
     b'FROM: "a, b" <alice@alice.example>,\n alice@alice.example'),
    # a group is not rewritten (nothing to guess at)
    (b"From: friends: x@forged.example;", b"From: friends: x@forged.example;"),
]


def test_senders_masquerade():
    """`senders <t> masquerade`: the From: header (folded, with comments, several
    addresses) names the MAIL FROM sender; everything else arrives byte for byte"""
    config = CONFIG.replace("auth <creds>", "auth <creds> senders <mailfrom> masquerade").replace(
        "table staff", "table mailfrom file:@TMP@/senders\ntable staff")
    d = h.Daemon("auth-masq", config.replace("@CERTS@", t.certs()))
    with open(os.path.join(d.tmp, "senders"), "w") as f:
        f.write("alice @alice.example\n")
    with open(os.path.join(d.tmp, "creds"), "w") as f:
        f.write("alice %s\n" % hash_bcrypt(PASSWORDS["alice"]))
    d.start()
    try:
        s = session(d)
        s.login("alice", PASSWORDS["alice"])
        sent = []
        for i, (hdr, want) in enumerate(MASQ_CASES):
            head = MASQ_HEAD % i
            data = head[:20] + hdr + b"\n" + head[20:] + MASQ_BODY
            s.sendmail("alice@alice.example", ["rcpt@example.org"],
                       data.replace(b"\n", b"\r\n"))
            sent.append((data, data.replace(hdr, want, 1)))
        s.quit()
        d.wait_delivered(len(sent))
        got = {}
        for m in d.read_messages():
            rest = h.split_received(m)[1]
            got[re.search(rb"Message-ID: <masq\.(\d+)@", rest).group(1)] = rest
        for i, (data, want) in enumerate(sent):
            assert got[str(i).encode()] == want, "case %d:\nsent      %r\nexpected  %r\ndelivered %r" % (
                i, data, want, got[str(i).encode()])
    finally:
        d.stop()


def test_table_passwd_credentials():
    """Debian's table-passwd (opensmtpd-extras, imsg protocol) serves the
    credentials of a submission listener"""
    import test_table_proc as tp
    why = os.environ.get(tp.SKIP_ENV) or tp.prepare()
    if why:
        print("skip: opensmtpd-extras not available (%s)" % why)
        return
    config = CONFIG.replace("table creds file:@TMP@/creds",
                            "table creds passwd:@TMP@/passwd")
    d = h.Daemon("auth-passwd", config.replace("@CERTS@", t.certs()))
    with open(os.path.join(d.tmp, "passwd"), "w") as f:
        f.write("alice:%s:1000:1000::/home/alice:/bin/sh\n" % hash_bcrypt(PASSWORDS["alice"]))
    os.chmod(os.path.join(d.tmp, "passwd"), 0o644)
    saved = dict(os.environ)
    os.environ["MODSMTPD_TABLE_DIR"] = tp.LIBEXEC
    try:
        d.start()
    finally:
        os.environ.clear()
        os.environ.update(saved)
    try:
        s = session(d)
        assert auth(s, "alice", "wrong")[0] == 535
        assert auth(s, "alice", PASSWORDS["alice"])[0] == 235
        s.sendmail("alice@client.test", ["rcpt@example.org"], h.make_message("via passwd"))
        s.quit()
        d.wait_delivered(1)
    finally:
        d.stop()


def built_with_pam():
    try:
        with open(os.path.join(h.BUILDDIR, "config.h")) as f:
            return re.search(r"^#define HAVE_PAM 1$", f.read(), re.M) is not None
    except OSError:
        return False


def set_system_password(password):
    user = h.ensure_test_user().pw_name
    subprocess.run(["chpasswd", "-c", "SHA512"], input=("%s:%s\n" % (user, password)).encode(),
                   check=True)
    return user


def test_system_users():
    """`auth` without a table: the system's users (PAM's default service when
    built with PAM, else /etc/shadow; root only)"""
    if not h.IS_ROOT:
        print("skip: checking system passwords needs root")
        return
    user = set_system_password("sys pw 1")
    d = start(CONFIG.replace("auth <creds>", "auth"))
    try:
        s = session(d)
        assert auth(s, user, "not it")[0] == 535
        assert auth(s, user, "sys pw 1")[0] == 235
        s.quit()
    finally:
        d.stop()


PAM_UNIX = "auth required pam_unix.so\naccount required pam_unix.so\n"
PAM_DENY = "auth required pam_deny.so\naccount required pam_unix.so\n"


def test_pam_service():
    """`smtp pam-service`: a PAM service of the test's own (pam_unix)
    authenticates a system user, a wrong password gets 535; the same
    password through a pam_deny service is refused, so PAM decides"""
    if not h.IS_ROOT:
        print("skip: PAM's pam_unix checks other users' passwords only as root")
        return
    if not built_with_pam():
        print("skip: this build has no PAM (configure did not find libpam0g-dev)")
        return
    user = set_system_password("pam pw 2")
    service = "msdtest-%d" % os.getpid()
    path = os.path.join("/etc/pam.d", service)
    try:
        with open(path, "w") as f:
            f.write(PAM_UNIX)
        d = start(CONFIG.replace("auth <creds>", "auth") +
                  'smtp pam-service "%s"\n' % service)
        s = session(d)
        code, text = auth(s, user, "wrong")
        assert (code, text) == (535, b"5.7.8 Authentication failed"), (code, text)
        assert auth(s, user, "pam pw 2")[0] == 235
        s.sendmail(user + "@client.test", ["rcpt@example.org"], h.make_message("via PAM"))
        s.quit()
        d.wait_delivered(1)
        d.stop()
        with open(path, "w") as f:
            f.write(PAM_DENY)
        d = start(CONFIG.replace("auth <creds>", "auth") +
                  'smtp pam-service "%s"\n' % service)
        s = session(d)
        code, _ = auth(s, user, "pam pw 2")
        assert code == 535, "pam_deny service: the right password got %d" % code
        s.quit()
        d.stop()
    finally:
        os.unlink(path)


if __name__ == "__main__":
    h.run_checks([test_auth_offered_only_in_tls, test_plain_login_and_refusals,
                  test_failures_close_the_session, test_from_auth_table, test_senders,
                  test_senders_masquerade,
                  test_received_auth_mask_src,
                  test_table_passwd_credentials, test_system_users, test_pam_service])
