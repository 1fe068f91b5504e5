#!/usr/bin/env python3
"""The Sender Rewriting Scheme (`srs key`, `srs key backup`, `srs ttl`,
relay action option `srs`): a message forwarded by an alias to a remote
address leaves with MAIL FROM:<SRS0=...@our domain> (SRS1 when its sender
was an SRS0 address already), the original sender stays in our log; a
bounce to that address comes back to the original sender; bounces to
tampered, expired or foreign SRS addresses are refused like any unknown
recipient, and a backup key keeps old addresses valid after a rotation.

The addresses are checked against, and forged with, an implementation of
OpenSMTPD's scheme written here from its description (SHA-1 of key and
address, URL-safe base64, day number modulo 1024 in base32), so the
daemon is held to what OpenSMTPD makes and reads.  The next hop is
test_relay's ScriptedServer."""

import base64
import hashlib
import os
import re
import signal
import subprocess
import sys
import tempfile
import time

sys.path.insert(0, os.path.dirname(os.path.abspath(__file__)))
import harness as h  # noqa: E402
from test_relay import ScriptedServer  # noqa: E402

KEY = "s3cret"
# OpenSMTPD 6.8 as bench/setup.sh unpacks it, for the interoperation check.
OSD = "/opt/opensmtpd/usr/sbin/smtpd"
B32 = "ABCDEFGHIJKLMNOPQRSTUVWXYZ234567"

# Our domain is example.org: alice and the alias addresses are local, the
# rest of the world is example.test (relayed with srs), plain.test (relayed
# without) and other.test (a forwarder before us).
CONFIG = """\
@SRS@
table aliases file:@TMP@/aliases
table known { "alice@example.org", "fwd@example.org", "plainfwd@example.org" }
listen on @HOST@ port @PORT@ hostname @HOSTNAME@
action "local" maildir "@MAILDIR@"@USER_OPT@ alias <aliases>
action "out" relay host "smtp://127.0.0.1:@SINK@" srs
action "out-plain" relay host "smtp://127.0.0.1:@SINK@"
match from any for rcpt-to <known> action "local"
match from any for domain "example.test" action "out"
match from any for domain "other.test" action "out"
match from any for domain "plain.test" action "out-plain"
"""

ALIASES = "fwd: bob@example.test\nplainfwd: bob@plain.test\n"


# ------------------------------------------------------- the scheme itself

def srs_hash(key, body):
    return base64.urlsafe_b64encode(hashlib.sha1((key + body).encode()).digest()).decode()[:4]


def srs_day(t):
    d = int(t // 86400) % 1024
    return B32[d >> 5] + B32[d & 31]


def srs0(sender, domain, t=None, key=KEY):
    user, dom = sender.rsplit("@", 1)
    body = "%s=%s=%s@%s" % (srs_day(time.time() if t is None else t), dom, user, domain)
    return "SRS0=%s=%s" % (srs_hash(key, body), body)


def srs1(srs0_addr, domain, key=KEY):
    user, dom = srs0_addr[5:].rsplit("@", 1)
    body = "%s==%s@%s" % (dom, user, domain)
    return "SRS1=%s=%s" % (srs_hash(key, body), body)


# ---------------------------------------------------------------- helpers

def daemon(name, sink, srs='srs key "%s"' % KEY):
    d = h.Daemon(name, CONFIG.replace("@SRS@", srs).replace("@SINK@", str(sink.port)))
    with open(os.path.join(d.tmp, "aliases"), "w") as f:
        f.write(ALIASES)
    return d.start()


def send(d, sender, rcpt, subject="srs test"):
    msg = h.make_message(subject, frm=sender or "mailer-daemon@other.test", to=rcpt)
    with d.connect() as c:
        c.greet()
        c.send_message(msg, mail_from=sender, rcpts=(rcpt,))


def mail_from(sink, n):
    """The MAIL FROM address of the n-th message the next hop got."""
    h.wait_for(lambda: len(sink.messages) > n, 30,
               what="message %d at the next hop (have %d)" % (n + 1, len(sink.messages)))
    m = re.match(r"MAIL FROM:<([^>]*)>", sink.messages[n][0])
    assert m, "odd MAIL command %r" % sink.messages[n][0]
    return m.group(1)


def rcpt(d, sender, addr, code):
    """RCPT TO:<addr> after MAIL FROM:<sender>; the reply, checked for code."""
    with d.connect() as c:
        c.greet()
        c.expect("MAIL FROM:<%s>" % sender, 250)
        return c.expect("RCPT TO:<%s>" % addr, code)


# ----------------------------------------------------------------- checks

def test_forward_rewritten():
    """an alias forwarding to a remote address: the next hop sees the SRS0
    address in our domain, byte for byte as OpenSMTPD makes it, our log the
    real sender; an SRS0 sender becomes SRS1; a direct relay, an action
    without srs and a bounce keep their sender"""
    sink = ScriptedServer()
    try:
        d = daemon("srs-fwd", sink)
        send(d, "carol@remote.test", "fwd@example.org")
        got = mail_from(sink, 0)
        assert got == srs0("carol@remote.test", "example.org"), \
            "MAIL FROM:<%s>, expected %s" % (got, srs0("carol@remote.test", "example.org"))
        assert "RCPT TO:<bob@example.test>" in sink.messages[0][1][0], sink.messages[0][1]
        d.wait_log(r"mta delivery evpid=\w+ from=<carol@remote\.test> to=<bob@example\.test> "
                   r"rcpt=<fwd@example\.org> .*result=\"Ok\"")
        assert got not in d.log_text(), "the SRS address is in the log as the sender"

        # A forwarder's SRS0 sender: SRS1, the first forwarder kept.
        theirs = srs0("dave@remote.test", "other.test", key="their key")
        send(d, theirs, "fwd@example.org", subject="twice forwarded")
        assert mail_from(sink, 1) == srs1(theirs, "example.org"), mail_from(sink, 1)

        # Not a forward, an action without srs, a bounce: untouched.
        send(d, "carol@remote.test", "bob@example.test", subject="direct")
        assert mail_from(sink, 2) == "carol@remote.test", mail_from(sink, 2)
        send(d, "carol@remote.test", "plainfwd@example.org", subject="plain")
        assert mail_from(sink, 3) == "carol@remote.test", mail_from(sink, 3)
        send(d, "", "fwd@example.org", subject="bounce forwarded")
        assert mail_from(sink, 4) == "", mail_from(sink, 4)
        d.wait_queue_empty(30)
    finally:
        sink.close()


def test_bounce_comes_back():
    """the next hop bounces to the SRS0 address we sent: the bounce lands
    in the original (local) sender's Maildir; an SRS1 address goes back to
    the forwarder before us"""
    sink = ScriptedServer()
    try:
        d = daemon("srs-back", sink)
        send(d, "alice@example.org", "fwd@example.org")
        ours = mail_from(sink, 0)
        assert ours.startswith("SRS0=") and ours.endswith("=example.org=alice@example.org"), ours
        bounce = h.make_message("Undelivered Mail Returned to Sender",
                                frm="mailer-daemon@example.test", to=ours,
                                body="bob@example.test: no such user\n")
        with d.connect() as c:
            c.greet()
            # the prefix is case-insensitive, the rest is not
            c.send_message(bounce, mail_from="", rcpts=("srs0" + ours[4:],))
        data = h._read(d.wait_delivered(1)[0])
        assert b"bob@example.test: no such user" in data, data
        assert ours.encode() in data, "the bounce lost its To: header"
        d.wait_log(r"mda delivery evpid=\w+ from=<> to=<alice@example\.org> "
                   r"rcpt=<srs0=", 20)

        # SRS1: decoded to the SRS0 address at the first forwarder.
        inner = srs0("dave@remote.test", "other.test", key="their key")
        send(d, "", srs1(inner, "example.org"), subject="bounce of a re-forward")
        h.wait_for(lambda: len(sink.messages) >= 2, 30, what="the SRS1 bounce relayed")
        assert sink.messages[1][0].startswith("MAIL FROM:<>"), sink.messages[1][0]
        assert "RCPT TO:<%s>" % inner in sink.messages[1][1][0], sink.messages[1][1]
        d.wait_queue_empty(30)
    finally:
        sink.close()


def test_bad_addresses_refused():
    """a tampered hash, an expired day stamp, another key, a changed case:
    routed as written, so refused as unknown recipients with OpenSMTPD's
    550; a mail that is no bounce is never decoded; `srs ttl` sets how old
    an address may be"""
    sink = ScriptedServer()
    try:
        d = daemon("srs-bad", sink)
        good = srs0("alice@example.org", "example.org")
        rcpt(d, "", good, 250)
        tampered = "SRS0=%s%s" % ("A" if good[5] != "A" else "B", good[6:])
        old = srs0("alice@example.org", "example.org", time.time() - 5 * 86400)
        week = srs0("alice@example.org", "example.org", time.time() - 7 * 86400)
        # (the domain's case would not do: it is lowercased on arrival)
        changed_case = good.replace("=alice@", "=Alice@")
        for addr in (tampered, old, srs0("alice@example.org", "example.org", key="other"),
                     changed_case):
            r = rcpt(d, "", addr, 550)
            want = "Invalid recipient: <%s>" % addr
            assert r.text == want, "RCPT TO:<%s> -> %s, expected 550 %s" % (addr, r, want)
        assert rcpt(d, "", srs0("alice@example.org", "example.org", time.time() - 4 * 86400),
                    250), "4 days old is within the default ttl"
        assert re.search(r"srs: cannot decode <%s>: bad hash" % re.escape(tampered),
                         d.log_text()), "no log line for the bad hash"
        assert re.search(r"srs: cannot decode <%s>: expired" % re.escape(old),
                         d.log_text()), "no log line for the expired address"
        rcpt(d, "carol@remote.test", good, 550)
        d.stop()

        d2 = daemon("srs-ttl", sink, 'srs key "%s"\nsrs ttl 7d' % KEY)
        rcpt(d2, "", week, 250)
        rcpt(d2, "", srs0("alice@example.org", "example.org", time.time() - 8 * 86400), 550)
    finally:
        sink.close()


def test_key_rotation():
    """after `srs key` changes, addresses made with the old key are valid
    only while it is the `srs key backup`"""
    sink = ScriptedServer()
    try:
        made = srs0("alice@example.org", "example.org")
        d = daemon("srs-rotated", sink, 'srs key "new secret"')
        rcpt(d, "", made, 550)
        rcpt(d, "", srs0("alice@example.org", "example.org", key="new secret"), 250)
        d.stop()
        d = daemon("srs-backup", sink, 'srs key "new secret"\nsrs key backup "%s"' % KEY)
        rcpt(d, "", made, 250)
        send(d, "carol@remote.test", "fwd@example.org")
        assert mail_from(sink, 0) == srs0("carol@remote.test", "example.org", key="new secret"), \
            "a new address must be made with the current key: %s" % mail_from(sink, 0)
    finally:
        sink.close()


def opensmtpd(conf, log):
    """OpenSMTPD -d in a mount namespace of its own, with private tmpfs
    on /var/spool and /var/run: its spool and control socket paths are
    compiled in, and must not be the machine's (another OpenSMTPD, a
    benchmark's, may be using them)."""
    run = os.path.realpath("/var/run")
    return subprocess.Popen(
        ["unshare", "-m", "--propagation", "private", "sh", "-c",
         'mount -t tmpfs tmpfs /var/spool && mount -t tmpfs tmpfs "$2" && '
         'exec "$0" -d -f "$1"', OSD, conf, run],
        stdout=log, stderr=subprocess.STDOUT, stdin=subprocess.DEVNULL,
        start_new_session=True)


def test_opensmtpd_reads_ours():
    """OpenSMTPD itself (when installed in /opt/opensmtpd), given the same
    key, decodes the SRS0 and SRS1 addresses this daemon sends (the other
    way round is test-srs's vector captured from OpenSMTPD)"""
    if not (h.IS_ROOT and h.in_netns() and os.access(OSD, os.X_OK)) or \
            subprocess.run(["unshare", "-m", "true"], stderr=subprocess.DEVNULL).returncode:
        print("skipped: needs root, the test's network namespace, unshare -m and %s" % OSD)
        return
    sink, back = ScriptedServer(), ScriptedServer()
    tmp = tempfile.mkdtemp(prefix="msd-osd-")
    conf, port = os.path.join(tmp, "smtpd.conf"), h.free_port()
    with open(conf, "w") as f:
        f.write('srs key "%s"\nlisten on 127.0.0.1 port %d\n'
                'action "back" relay host smtp://127.0.0.1:%d\n'
                'match from any for any action "back"\n' % (KEY, port, back.port))
    if subprocess.run([OSD, "-n", "-f", conf], stdout=subprocess.DEVNULL,
                      stderr=subprocess.DEVNULL).returncode != 0:
        print("skipped: %s -n refuses the configuration here" % OSD)
        return
    logf = open(os.path.join(tmp, "opensmtpd.log"), "wb")
    osd = opensmtpd(conf, logf)
    try:
        d = daemon("srs-osd", sink)
        send(d, "carol@remote.test", "fwd@example.org")
        ours0 = mail_from(sink, 0)
        send(d, srs0("dave@remote.test", "other.test", key="their key"), "fwd@example.org",
             subject="twice")
        ours1 = mail_from(sink, 1)
        assert ours1.startswith("SRS1="), ours1

        def up():
            try:
                with h.SMTP("127.0.0.1", port, timeout=2) as c:
                    return c.reply().code == 220
            except (OSError, EOFError, AssertionError):
                return False
        h.wait_for(up, 30, what="OpenSMTPD listening on port %d" % port)
        with h.SMTP("127.0.0.1", port) as c:
            c.greet()
            c.send_message(h.make_message("bounce", frm="mailer-daemon@example.test",
                                          to=ours0),
                           mail_from="", rcpts=(ours0, ours1))
        h.wait_for(lambda: back.messages, 60, what="OpenSMTPD relaying the decoded bounce")
        rcpts = " ".join(back.messages[0][1])
        assert "RCPT TO:<carol@remote.test>" in rcpts, \
            "OpenSMTPD did not decode our SRS0 %s: %s" % (ours0, rcpts)
        inner = srs0("dave@remote.test", "other.test", key="their key")
        assert "RCPT TO:<%s>" % inner in rcpts, \
            "OpenSMTPD did not decode our SRS1 %s: %s" % (ours1, rcpts)
    finally:
        try:
            os.killpg(osd.pid, signal.SIGTERM)
            osd.wait(10)
        except (OSError, subprocess.TimeoutExpired):
            os.killpg(osd.pid, signal.SIGKILL)
            osd.wait()
        logf.close()
        sink.close()
        back.close()
    if os.environ.get("MSD_KEEP") != "1":
        h.shutil.rmtree(tmp, ignore_errors=True)


if __name__ == "__main__":
    h.run_checks([test_forward_rewritten, test_bounce_comes_back, test_bad_addresses_refused,
                  test_key_rotation, test_opensmtpd_reads_ours])
