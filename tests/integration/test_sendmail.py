#!/usr/bin/env python3
"""sendmail(8) against the real daemon: submission over <spool>/submit.sock,
the headers it adds, -t/-f/-i, rejected recipients, -bs, mailq/newaliases,
and the offline queue that keeps mail while the daemon is down."""

import os
import pwd
import re
import socket
import subprocess
import sys
import tempfile

sys.path.insert(0, os.path.dirname(os.path.abspath(__file__)))
import harness as h  # noqa: E402

SENDMAIL = os.path.join(h.BUILDDIR, "sendmail")
HOST = socket.gethostname()
DATE = re.compile(r"^\w{3}, \d{2} \w{3} \d{4} \d\d:\d\d:\d\d [+-]\d{4}$")


def sendmail(d, args, data, env=None, argv0=None, spool=None):
    """Runs sendmail with MODSMTPD_SPOOL set to the daemon's spool;
    returns the CompletedProcess (stdout/stderr as text)."""
    e = {k: v for k, v in os.environ.items() if not k.startswith("MODSMTPD_")}
    e["MODSMTPD_SPOOL"] = spool or d.spool
    e.update(env or {})
    if not os.path.exists(SENDMAIL):
        raise AssertionError("no sendmail binary at %s (build it first)" % SENDMAIL)
    return subprocess.run([argv0 or SENDMAIL] + list(args), input=data, env=e,
                          executable=SENDMAIL, stdout=subprocess.PIPE,
                          stderr=subprocess.PIPE, timeout=60 * h.SCALE)


def ok(p, what):
    assert p.returncode == 0, "%s: sendmail exit %d, stderr: %s" % (
        what, p.returncode, p.stderr.decode(errors="replace"))


def delivered(d, count):
    """The delivered messages with the daemon's Received header removed."""
    d.wait_delivered(count)
    d.wait_queue_empty()
    msgs = [h.split_received(m)[1] for m in d.read_messages()]
    assert len(msgs) == count, "expected %d delivered, have %d" % (count, len(msgs))
    return msgs


def offline_files(d):
    path = os.path.join(d.spool, "offline")
    return sorted(f for f in os.listdir(path) if not f.startswith("."))


# ------------------------------------------------------------------ checks

def test_added_headers():
    """echo body | sendmail rcpt: delivered with From, Date and Message-ID added on top"""
    d = h.Daemon("sm-plain").start()
    p = sendmail(d, ["user@example.org"], b"body\n")
    ok(p, "plain")
    assert p.stdout == b"" and p.stderr == b"", "sendmail printed %r %r" % (p.stdout, p.stderr)
    msg = delivered(d, 1)[0]
    head, body = msg.split(b"\n\n", 1)
    names = [l.split(b":")[0] for l in head.split(b"\n")]
    assert names == [b"From", b"Date", b"Message-ID"], "header fields: %r" % names
    login = pwd.getpwuid(os.getuid()).pw_name
    frm = h.header_value(msg, "From")
    assert frm.endswith("<%s@%s>" % (login, HOST)), "From: %s" % frm
    assert DATE.match(h.header_value(msg, "Date")), "Date: %s" % h.header_value(msg, "Date")
    assert re.match(r"^<[0-9a-f]+\.\d+@%s>$" % re.escape(HOST), h.header_value(msg, "Message-ID")), \
        "Message-ID: %s" % h.header_value(msg, "Message-ID")
    assert body == b"body\n", "body %r" % body
    d.wait_log(r"from=<%s@%s> to=<user@example.org>" % (re.escape(login), re.escape(HOST)))


def test_message_kept():
    """an existing header is kept (nothing added), CRLF input becomes LF, a 20000-byte line and leading dots survive"""
    d = h.Daemon("sm-keep").start()
    long_line = b"y" * 20000
    msg_in = h.make_message("kept", body=b"one\n.dot\n..two\n" + long_line + b"\nlast")
    p = sendmail(d, ["-i", "user@example.org"], msg_in.replace(b"\n", b"\r\n"))
    ok(p, "kept")
    got = delivered(d, 1)[0]
    assert got == msg_in + b"\n", "delivered %r..., expected %r..." % (got[:300], msg_in[:300])


def test_body_only():
    """input without a header section: the added headers, an empty line, then the input"""
    d = h.Daemon("sm-body").start()
    p = sendmail(d, ["-F", "Jane Q. Doe", "user@example.org"], b"no header here: just text\n\nmore\n")
    ok(p, "body only")
    got = delivered(d, 1)[0]
    head, body = got.split(b"\n\n", 1)
    assert body == b"no header here: just text\n\nmore\n", "body %r" % body
    assert h.header_value(got, "From").startswith('"Jane Q. Doe" <'), "From: %s" % h.header_value(got, "From")


def test_t_flag():
    """-t: To, Cc and Bcc recipients all get it; the Bcc header is in none of the copies"""
    d = h.Daemon("sm-t").start()
    msg_in = (b"From: Sender <sender@example.org>\n"
              b"To: \"Doe, John\" <to@example.org>, group: other@example.org (Other);\n"
              b"Cc: cc@example.org\n"
              b"Bcc: hidden@example.org,\n"
              b"  hidden2@example.org\n"
              b"Subject: t flag\n\nbody\n")
    p = sendmail(d, ["-t", "-oi"], msg_in)
    ok(p, "-t")
    msgs = delivered(d, 5)
    for m in msgs:
        assert b"\nBcc:" not in m and not m.startswith(b"Bcc:") and b"hidden" not in m, \
            "Bcc left in a copy: %r" % m
        assert m.startswith(b"Date: ") and b"\nTo: \"Doe, John\" <to@example.org>" in m, "copy %r" % m
    log = d.log_text()
    for r in ("to", "other", "cc", "hidden", "hidden2"):
        assert "to=<%s@example.org>" % r in log, "no envelope for %s@example.org in the log" % r


def test_envelope_sender():
    """-f, -fFROM and -r set the envelope sender; a bare name is qualified with the host name"""
    d = h.Daemon("sm-f").start()
    for args, want in ((["-f", "one@client.test"], "one@client.test"),
                       (["-ftwo@client.test"], "two@client.test"),
                       (["-r", "<three@client.test>"], "three@client.test"),
                       (["-f", "bare"], "bare@" + HOST)):
        p = sendmail(d, args + ["user@example.org"], b"Subject: f\n\nbody\n")
        ok(p, " ".join(args))
        d.wait_log(r"from=<%s> to=<user@example.org>" % re.escape(want))
    msgs = delivered(d, 4)
    assert any(h.header_value(m, "From") == "<one@client.test>" for m in msgs), \
        "no generated 'From: <one@client.test>' (no gecos name with -f)"


def test_dot_line():
    """a lone '.' ends the input without -i; with -i (or -oi) it is message text"""
    d = h.Daemon("sm-dot").start()
    data = b"Subject: dot\n\nbefore\n.\nafter\n"
    ok(sendmail(d, ["user@example.org"], data), "no -i")
    msgs = delivered(d, 1)
    assert msgs[0].endswith(b"\n\nbefore\n"), "without -i: %r" % msgs[0]
    ok(sendmail(d, ["-i", "user@example.org"], data), "-i")
    ok(sendmail(d, ["-oi", "user@example.org"], data), "-oi")
    msgs = delivered(d, 3)
    assert sum(m.endswith(b"\n\nbefore\n.\nafter\n") for m in msgs) == 2, \
        "with -i/-oi the dot line and what follows must stay: %r" % msgs


def test_rejected_recipient():
    """a recipient no rule accepts: non-zero exit, the 5xx reply on stderr, nothing queued"""
    d = h.Daemon("sm-rej").start()
    p = sendmail(d, ["user@example.org", "nobody@nowhere.invalid"], b"Subject: x\n\nbody\n")
    err = p.stderr.decode(errors="replace")
    assert p.returncode == 67, "exit %d (expected 67, EX_NOUSER), stderr %r" % (p.returncode, err)
    assert re.search(r"^sendmail: RCPT TO:<nobody@nowhere.invalid>: 550 ", err, re.M), \
        "stderr lacks the 550 reply: %r" % err
    assert not d.messages() and not d.envelopes(), "something was queued"


def test_usage_and_modes():
    """no recipients / unknown option: 64; mailq and newaliases (argv[0] and -bp/-bi)"""
    d = h.Daemon("sm-modes").start()
    p = sendmail(d, [], b"x\n")
    assert p.returncode == 64 and b"sendmail: no recipients" in p.stderr, (p.returncode, p.stderr)
    p = sendmail(d, ["-t"], b"Subject: none\n\nx\n")
    assert p.returncode == 64 and b"sendmail: no recipients" in p.stderr, (p.returncode, p.stderr)
    p = sendmail(d, ["-Q", "user@example.org"], b"x\n")
    assert p.returncode == 64 and b"usage:" in p.stderr, (p.returncode, p.stderr)
    for args, argv0 in ((["-bp"], None), ([], "mailq")):
        p = sendmail(d, args, b"", argv0=argv0)
        assert p.returncode == 0 and p.stdout == b"Mail queue is empty\n", \
            (p.returncode, p.stdout, p.stderr)
    # -bi and newaliases run makemap as newaliases on $MODSMTPD_CONF,
    # which has no "aliases" table here (test_tables covers a rebuild).
    for args, argv0 in ((["-bi"], None), ([], "newaliases")):
        p = sendmail(d, args, b"", argv0=argv0, env={"MODSMTPD_CONF": d.conf})
        assert p.returncode == 1 and b'no table named "aliases"' in p.stderr, \
            (p.returncode, p.stdout, p.stderr)
    # Accepted (the DSN ones -N -R -V are sent on), with and without their
    # arguments; test_dsn checks what the DSN ones do.
    p = sendmail(d, ["-B", "8BITMIME", "-N", "never", "-R", "hdrs", "-V", "id1", "-U",
                     "-G", "-m", "-L", "tag", "-o", "x", "-oem", "-bm", "user@example.org"],
                 b"Subject: ignored options\n\nx\n")
    ok(p, "ignored options")
    delivered(d, 1)


def test_bs():
    """-bs relays an SMTP conversation on stdin/stdout to the daemon"""
    d = h.Daemon("sm-bs").start()
    conv = (b"EHLO client.test\r\nMAIL FROM:<bs@client.test>\r\nRCPT TO:<user@example.org>\r\n"
            b"DATA\r\n" + h.to_wire(h.make_message("bs")) + b"QUIT\r\n")
    p = sendmail(d, ["-bs"], conv)
    ok(p, "-bs")
    out = p.stdout.decode(errors="replace")
    assert out.startswith("220 ") and "\r\n354 " in out and "\r\n221 " in out, "dialogue %r" % out
    assert re.search(r"\r\n250 2\.0\.0 [0-9a-f]{8} Message accepted for delivery\r\n", out), \
        "no 250 after DATA: %r" % out
    delivered(d, 1)
    d.wait_log(r"from=<bs@client\.test> to=<user@example\.org>")


def test_offline_queue():
    """daemon stopped: sendmail exits 0 and keeps the mail in <spool>/offline; the next start delivers it and removes the file"""
    d = h.Daemon("sm-off").start()
    assert d.stop() == 0, "smtpd did not stop cleanly"
    p = sendmail(d, ["-F", "100% Jo", "-L", "two\nlines", "-f", "off@client.test", "user@example.org"],
                 b"Subject: offline\n\nkept while down\n")
    ok(p, "offline")
    assert p.stdout == b"" and p.stderr == b"", "sendmail printed %r %r" % (p.stdout, p.stderr)
    files = offline_files(d)
    assert len(files) == 1, "offline files: %r" % files
    path = os.path.join(d.spool, "offline", files[0])
    st = os.stat(path)
    assert st.st_mode & 0o777 == 0o600 and st.st_uid == os.getuid(), "mode %o uid %d" % (st.st_mode, st.st_uid)
    with open(path, "rb") as f:
        text = f.read()
    assert text == (b"#modsmtpd-offline 1\narg -F\narg 100%25 Jo\narg -L\narg two%0Alines\n"
                    b"arg -f\narg off@client.test\n"
                    b"arg user@example.org\n\nSubject: offline\n\nkept while down\n"), "offline file %r" % text
    # Not ours: skipped and left alone.
    junk = os.path.join(d.spool, "offline", "0000.junk")
    with open(junk, "wb") as f:
        f.write(b"not an offline file\n")
    os.chmod(junk, 0o600)
    # MODSMTPD_NO_OFFLINE: the caller hears the failure instead.
    p = sendmail(d, ["user@example.org"], b"x\n", env={"MODSMTPD_NO_OFFLINE": "1"})
    assert p.returncode == 75 and b"submit.sock" in p.stderr, (p.returncode, p.stderr)
    assert len(offline_files(d)) == 2, "MODSMTPD_NO_OFFLINE still wrote a file"
    # Refused when re-submitted: kept, with the reason in the log.
    ok(sendmail(d, ["nobody@nowhere.invalid"], b"Subject: refused\n\nx\n"), "offline, refused later")
    refused = [f for f in offline_files(d) if f not in files and f != "0000.junk"]
    assert len(refused) == 1, "offline files: %r" % offline_files(d)

    d.start()
    msg = delivered(d, 1)[0]
    assert msg.endswith(b"Subject: offline\n\nkept while down\n"), "delivered %r" % msg
    assert h.header_value(msg, "From") == "100% Jo <off@client.test>", "From: %s" % h.header_value(msg, "From")
    d.wait_log(r"offline: re-submitted \S+/%s for user %s" % (re.escape(files[0]),
               re.escape(pwd.getpwuid(os.getuid()).pw_name)))
    d.wait_log(r"from=<off@client\.test> to=<user@example\.org>")
    d.wait_log(r"offline: \S+/0000\.junk: not a sendmail offline file, skipped")
    d.wait_log(r"offline: \S+/%s for user \S+ kept: sendmail exited with status 67: "
               r"sendmail: RCPT TO:<nobody@nowhere\.invalid>: 550 " % re.escape(refused[0]))
    h.wait_for(lambda: offline_files(d) == sorted(["0000.junk"] + refused), 10,
               what="only the delivered offline file to be removed (have %r)" % offline_files(d))
    assert d.stop() == 0


def test_offline_as_owner():
    """as root: a file another user left in <spool>/offline is re-submitted as that user"""
    if not h.IS_ROOT:
        print("note: not root; the owner switch needs root")
        return
    pw = h.ensure_test_user()
    if subprocess.run(["setpriv", "--reuid=%d" % pw.pw_uid, "--regid=%d" % pw.pw_gid,
                       "--clear-groups", "test", "-x", SENDMAIL]).returncode != 0:
        print("note: %s is out of reach of %s; skipped" % (SENDMAIL, pw.pw_name))
        return
    d = h.Daemon("sm-owner").start()
    assert d.stop() == 0
    e = {k: v for k, v in os.environ.items() if not k.startswith("MODSMTPD_")}
    e["MODSMTPD_SPOOL"] = d.spool
    p = subprocess.run(["setpriv", "--reuid=%d" % pw.pw_uid, "--regid=%d" % pw.pw_gid,
                        "--init-groups", SENDMAIL, "user@example.org"],
                       input=b"Subject: owner\n\nfrom another user\n", env=e,
                       stdout=subprocess.PIPE, stderr=subprocess.PIPE, timeout=60 * h.SCALE)
    ok(p, "offline as %s" % pw.pw_name)
    files = offline_files(d)
    assert len(files) == 1 and os.stat(os.path.join(d.spool, "offline", files[0])).st_uid == pw.pw_uid, \
        "offline files %r" % files
    d.start()
    delivered(d, 1)
    d.wait_log(r"from=<%s@%s> to=<user@example\.org>" % (pw.pw_name, re.escape(HOST)))
    d.wait_log(r"offline: re-submitted \S+ for user %s" % pw.pw_name)
    h.wait_for(lambda: not offline_files(d), 10, what="the offline file to be removed")


def test_no_daemon_no_offline_dir():
    """no daemon and no offline directory: exit 75 with the reason"""
    tmp = tempfile.mkdtemp(prefix="msd-sm-nodir-")
    try:
        p = sendmail(None, ["user@example.org"], b"x\n", spool=tmp)
        assert p.returncode == 75 and b"offline" in p.stderr, (p.returncode, p.stderr)
    finally:
        os.rmdir(tmp)


if __name__ == "__main__":
    h.run_checks([test_added_headers, test_message_kept, test_body_only, test_t_flag,
                  test_envelope_sender, test_dot_line, test_rejected_recipient,
                  test_usage_and_modes, test_bs, test_offline_queue, test_offline_as_owner,
                  test_no_daemon_no_offline_dir])
