#!/usr/bin/env python3
"""RFC 3461 delivery status notifications, end to end: EHLO offers DSN
(not on a no-dsn listener), MAIL's RET/ENVID and RCPT's NOTIFY/ORCPT are
checked exactly and reach every envelope of the recipient, and the
notices the sender gets in its (local) Maildir honour them: failures
with Original-Envelope-Id, Original-Recipient and only the headers for
RET=HDRS, none for NOTIFY=NEVER, success notices for NOTIFY=SUCCESS
(also when the daemon stopped between the delivery and the notice), one
"delayed" notice per `bounce warn-interval` that a restart does not
repeat, and ttl expiry into a bounce with the last error.

Deliveries that fail are mda commands: exit 67 is permanent, exit 75
(EX_TEMPFAIL) temporary.  The "slow" action takes two seconds before its
temporary failure so that an envelope is older than a one-second
warn-interval (or ttl) when its first attempt fails, without waiting for
the scheduler's first retry."""

import email
import email.policy
import json
import os
import subprocess
import sys

sys.path.insert(0, os.path.dirname(os.path.abspath(__file__)))
import harness as h  # noqa: E402

SENDER = "snd@example.org"          # delivered to the daemon's Maildir

CONFIG = """\
listen on @HOST@ port @PORT@ hostname @HOSTNAME@
listen on @HOST@ port @PORT2@ hostname @HOSTNAME@ no-dsn
bounce warn-interval 1s, 2d
queue ttl 3d
table aliases { "team" = "one@later.test, two@later.test" }
action "local" maildir "@MAILDIR@"@USER_OPT@
action "fail" mda "/bin/sh -c 'echo no such mailbox >&2; exit 67'"@USER_OPT@
action "later" mda "/bin/sh -c 'echo mailbox busy >&2; exit 75'"@USER_OPT@ alias <aliases> ttl 2h
action "slow" mda "/bin/sh -c 'sleep 2; echo still busy >&2; exit 75'"@USER_OPT@
action "short" mda "/bin/sh -c 'sleep 2; echo gone away >&2; exit 75'"@USER_OPT@ ttl 1s
match from any for domain "fail.test" action "fail"
match from any for domain "later.test" action "later"
match from any for domain "slow.test" action "slow"
match from any for domain "short.test" action "short"
match from any for domain "example.org" action "local"
match from local for local action "local"
"""


def daemon(name):
    port2 = h.free_port()
    d = h.Daemon(name, config=CONFIG.replace("@PORT2@", str(port2)))
    d.port2 = port2
    return d


def send(d, subject, rcpt_opts="", mail_opts="", rcpts=None, body="body line\n",
         sender=SENDER):
    """One message with DSN parameters; returns its msgid."""
    c = h.SMTP(d.host, d.port)
    try:
        c.greet()
        c.expect(("MAIL FROM:<%s> %s" % (sender, mail_opts)).rstrip(), 250)
        for r in rcpts:
            c.expect(("RCPT TO:<%s> %s" % (r, rcpt_opts)).rstrip(), 250)
        c.expect("DATA", 354)
        c.send(h.to_wire(h.make_message(subject, body=body)))
        rep = c.reply()
        assert rep.code == 250, "end of DATA -> %s" % rep
        c.line("QUIT")
        return rep.text.split()[1]
    finally:
        c.close()


def notices(d):
    """The delivery status notifications in the Maildir, parsed."""
    out = []
    for p in d.messages():
        with open(p, "rb") as f:
            m = email.message_from_binary_file(f, policy=email.policy.compat32)
        if m.get("From", "").startswith("Mail Delivery System <MAILER-DAEMON@"):
            out.append(m)
    return out


def about(m, subject):
    """1 if the notice m reports on the message with that Subject."""
    return ("Subject: %s\n" % subject) in m.as_string()


def wait_notice(d, subject, timeout=30):
    got = []

    def found():
        got[:] = [m for m in notices(d) if about(m, subject)]
        return got
    h.wait_for(found, timeout, what="a notice about %r in %s" % (subject, d.maildir))
    assert len(got) == 1, "%d notices about %r" % (len(got), subject)
    return got[0]


def parts(m):
    """(text part, delivery-status fields per block, third part)."""
    assert m.get_content_type() == "multipart/report", m.get_content_type()
    assert m.get_param("report-type") == "delivery-status"
    p = m.get_payload()
    assert len(p) == 3, "%d parts" % len(p)
    status = p[1]
    assert status.get_content_type() == "message/delivery-status"
    blocks = [dict(b.items()) for b in status.get_payload()]
    return p[0].get_payload(), blocks, p[2]


def envelope_of(d, msgid):
    out = []
    for p in d.envelopes():
        with open(p) as f:
            ev = json.load(f)
        if ev["msgid"] == msgid:
            out.append(ev)
    return out


def ehlo_keywords(c):
    c.line("EHLO client.test")
    r = c.reply()
    assert r.code == 250, "EHLO -> %s" % r
    return [l.split(" ")[0].upper() for l in r.lines[1:]]


def test_ehlo_and_parameters():
    """DSN offered and parsed exactly; a no-dsn listener treats the
    parameters as unknown (555); the values reach every envelope"""
    d = daemon("dsn-params").start()
    with d.connect() as c:
        c.reply()
        assert "DSN" in ehlo_keywords(c), "DSN not offered"
        bad_mail = [
            ("RET=BODY", "501 5.5.4 Invalid command arguments: RET must be FULL or HDRS"),
            ("RET=FULL RET=HDRS", "501 5.5.4 Invalid command arguments: RET given twice"),
            ("ENVID=a+ZZ", "501 5.5.4 Invalid command arguments: ENVID is not valid "
             "xtext of printable US-ASCII"),
            ("ENVID=" + "x" * 101, "501 5.5.4 Invalid command arguments: ENVID longer "
             "than 100 characters"),
            ("ENVID=a ENVID=b", "501 5.5.4 Invalid command arguments: ENVID given twice"),
            ("NOTIFY=NEVER", "555 5.5.4 Invalid command arguments: Unsupported option "
             "NOTIFY=NEVER"),
            ("FOO=BAR", "555 5.5.4 Invalid command arguments: Unsupported option FOO=BAR"),
        ]
        for opt, want in bad_mail:
            r = c.cmd("MAIL FROM:<%s> %s" % (SENDER, opt))
            assert str(r) == want, "MAIL %s -> %s (want %s)" % (opt, r, want)
        c.expect("MAIL FROM:<%s> RET=hdrs ENVID=QQ+2B314" % SENDER, 250)
        bad_rcpt = [
            ("NOTIFY=NEVER,SUCCESS", "501 5.5.4 Invalid command arguments: "
             "NOTIFY=NEVER cannot be combined with other values"),
            ("NOTIFY=SUCCESS,SUCCESS", "501 5.5.4 Invalid command arguments: "
             "NOTIFY value SUCCESS given twice"),
            ("NOTIFY=SOMETIMES", "501 5.5.4 Invalid command arguments: unknown NOTIFY "
             "value \"SOMETIMES\" (expected NEVER, or SUCCESS, FAILURE and DELAY)"),
            ("NOTIFY=", "501 5.5.4 Invalid command arguments: empty NOTIFY value"),
            ("NOTIFY=DELAY NOTIFY=FAILURE", "501 5.5.4 Invalid command arguments: "
             "NOTIFY given twice"),
            ("ORCPT=x@later.test", "501 5.5.4 Invalid command arguments: ORCPT must "
             "be addr-type;xtext"),
            ("ORCPT=rfc822;a+2", "501 5.5.4 Invalid command arguments: ORCPT address "
             "is not valid xtext of printable US-ASCII"),
            ("ORCPT=rfc822;a@b ORCPT=rfc822;c@d", "501 5.5.4 Invalid command "
             "arguments: ORCPT given twice"),
            ("RET=FULL", "555 5.5.4 Invalid command arguments: Unsupported option "
             "RET=FULL"),
        ]
        for opt, want in bad_rcpt:
            r = c.cmd("RCPT TO:<team@later.test> %s" % opt)
            assert str(r) == want, "RCPT %s -> %s (want %s)" % (opt, r, want)
        c.expect("RCPT TO:<team@later.test> notify=failure,DELAY "
                 "ORCPT=rfc822;Team+2Bx@Later.test", 250)
        c.expect("RCPT TO:<x@later.test>", 250)
        c.expect("DATA", 354)
        c.send(h.to_wire(h.make_message("params")))
        r = c.reply()
        assert r.code == 250, r
        msgid = r.text.split()[1]
    # every envelope of the aliased recipient carries its NOTIFY and ORCPT
    h.wait_for(lambda: len(envelope_of(d, msgid)) == 3 and all(
        e.get("retry") == 1 for e in envelope_of(d, msgid)), 20,
        what="three envelopes of %s retried once" % msgid)
    evs = sorted(envelope_of(d, msgid), key=lambda e: e["dest"])
    assert [e["dest"] for e in evs] == ["one@later.test", "two@later.test",
                                        "x@later.test"], evs
    for e in evs[:2]:
        assert e["dsn_notify"] == 6 and e["dsn_orcpt"] == "rfc822;Team+x@Later.test", e
    assert evs[2]["dsn_notify"] == 0 and evs[2]["dsn_orcpt"] == "", evs[2]
    for e in evs:
        assert e["dsn_ret"] == 2 and e["dsn_envid"] == "QQ+314", e
        # the action's ttl, not the default 4d nor `queue ttl`
        assert e["expire"] == 7200, e

    # HELO: no extensions, so no DSN parameters
    with d.connect() as c:
        c.reply()
        c.expect("HELO client.test", 250)
        r = c.cmd("MAIL FROM:<%s> RET=FULL" % SENDER)
        assert r.code == 555, "RET after HELO -> %s" % r
    # no-dsn listener: not offered, and the parameters are unknown
    with h.SMTP(d.host, d.port2) as c:
        c.reply()
        kw = ehlo_keywords(c)
        assert "DSN" not in kw and "PIPELINING" in kw, kw
        r = c.cmd("MAIL FROM:<%s> RET=FULL" % SENDER)
        assert str(r) == "555 5.5.4 Invalid command arguments: Unsupported option " \
            "RET=FULL", r
        r = c.cmd("MAIL FROM:<%s> ENVID=abc" % SENDER)
        assert r.code == 555, r
        c.expect("MAIL FROM:<%s>" % SENDER, 250)
        r = c.cmd("RCPT TO:<a@fail.test> NOTIFY=NEVER")
        assert str(r) == "555 5.5.4 Invalid command arguments: Unsupported option " \
            "NOTIFY=NEVER", r
        r = c.cmd("RCPT TO:<a@fail.test> ORCPT=rfc822;a@fail.test")
        assert r.code == 555, r
    assert d.stop() == 0


def test_failure_notices():
    """failures bounce with ENVID, ORCPT and RET=HDRS honoured; NOTIFY=NEVER
    and NOTIFY without FAILURE bounce nothing; default returns it all"""
    d = daemon("dsn-fail").start()
    send(d, "hdrs only", mail_opts="RET=HDRS ENVID=env+2B42",
         rcpt_opts="NOTIFY=FAILURE ORCPT=rfc822;Orig+2Buser@Fail.test",
         rcpts=("who@fail.test",), body="secret body line\n")
    m = wait_notice(d, "hdrs only")
    assert m["Subject"] == "Delivery status notification: error", m["Subject"]
    text, blocks, orig = parts(m)
    assert blocks[0].get("Original-Envelope-Id") == "env+2B42", blocks[0]
    assert blocks[0].get("Reporting-MTA") == "dns; mx.test.example", blocks[0]
    b = blocks[1]
    assert b.get("Final-Recipient") == "rfc822; who@fail.test", b
    assert b.get("Original-Recipient") == "rfc822; Orig+user@Fail.test", b
    assert b.get("Action") == "failed" and b.get("Status") == "5.0.0", b
    assert "no such mailbox" in b.get("Diagnostic-Code", ""), b
    assert orig.get_content_type() == "text/rfc822-headers", orig.get_content_type()
    assert "Subject: hdrs only" in orig.get_payload()
    assert "secret body line" not in m.as_string(), "RET=HDRS returned the body"

    # NEVER, and SUCCESS without FAILURE: logged, no bounce
    send(d, "never", rcpt_opts="NOTIFY=NEVER", rcpts=("who@fail.test",))
    d.wait_log(r"queue failed envelope from <%s> to=<who@fail.test> .*not bounced, "
               r"NOTIFY without FAILURE" % SENDER)
    send(d, "success only", rcpt_opts="NOTIFY=SUCCESS", rcpts=("who@fail.test",))
    # default: the whole message comes back; the ones above did not bounce
    send(d, "full return", rcpts=("who@fail.test",), body="returned body line\n")
    m = wait_notice(d, "full return")
    text, blocks, orig = parts(m)
    assert orig.get_content_type() == "message/rfc822", orig.get_content_type()
    assert "returned body line" in m.as_string()
    assert "Original-Envelope-Id" not in blocks[0], blocks[0]
    assert "Original-Recipient" not in blocks[1], blocks[1]
    d.wait_queue_empty(30)
    d.wait_log(r"not bounced, NOTIFY without FAILURE(.|\n)*not bounced, NOTIFY "
               r"without FAILURE")
    subjects = [s for m in notices(d) for s in ("never", "success only")
                if about(m, s)]
    assert not subjects, "bounced although NOTIFY said no: %s" % subjects
    assert len(notices(d)) == 2, "%d notices" % len(notices(d))
    assert d.stop() == 0


def test_success_notices():
    """NOTIFY=SUCCESS: delivered, then a notice with Action delivered; an
    envelope marked delivered before a stop gets its notice at the next
    start and is not delivered again"""
    d = daemon("dsn-success").start()
    send(d, "good news", mail_opts="ENVID=ok1",
         rcpt_opts="NOTIFY=SUCCESS,FAILURE ORCPT=rfc822;Rcpt@Example.org",
         rcpts=("rcpt@example.org",), body="the body\n")
    m = wait_notice(d, "good news")
    assert m["Subject"] == "Delivery status notification: delivered", m["Subject"]
    text, blocks, orig = parts(m)
    assert "successfully delivered" in text, text
    assert blocks[0].get("Original-Envelope-Id") == "ok1", blocks[0]
    b = blocks[1]
    assert b.get("Action") == "delivered" and b.get("Status") == "2.0.0", b
    assert b.get("Final-Recipient") == "rfc822; rcpt@example.org", b
    assert b.get("Original-Recipient") == "rfc822; Rcpt@Example.org", b
    # no RET: a success notice returns the headers only
    assert orig.get_content_type() == "text/rfc822-headers", orig.get_content_type()
    d.wait_log(r"queue bounce evpid=\S+ for=\S+ to=<%s> dest=<%s> action=delivered"
               % (SENDER, SENDER))
    d.wait_queue_empty(30)
    # the message itself and the notice; nothing without SUCCESS
    send(d, "no news", rcpt_opts="NOTIFY=FAILURE", rcpts=("rcpt@example.org",))
    h.wait_for(lambda: len(d.messages()) == 3, 20, what="three messages")
    d.wait_queue_empty(30)
    assert len(notices(d)) == 1, "%d notices" % len(notices(d))

    # Stopped after the delivery, before the notice: the envelope on disk
    # says so (a tempfailing one, marked by hand while the daemon is down).
    msgid = send(d, "marked", rcpt_opts="NOTIFY=SUCCESS", rcpts=("m@later.test",))
    h.wait_for(lambda: [e for e in envelope_of(d, msgid) if e.get("retry") == 1],
               20, what="the envelope retried once")
    assert d.stop() == 0
    path = [p for p in d.envelopes() if json.load(open(p))["msgid"] == msgid][0]
    ev = json.load(open(path))
    ev["dsn_success"] = "delivered"
    ev["errorline"] = "delivered before the stop"
    with open(path, "w") as f:
        json.dump(ev, f)
    since = d.log_size()
    d.start()
    m = wait_notice(d, "marked")
    _, blocks, _ = parts(m)
    assert blocks[1].get("Action") == "delivered", blocks[1]
    assert "delivered before the stop" in blocks[1].get("Diagnostic-Code", ""), blocks[1]
    d.wait_queue_empty(30)
    after = d.log_text(since)
    assert not [l for l in after.splitlines()
                if "mda delivery" in l and "m@later.test" in l], after
    assert d.stop() == 0


def test_sendmail_options():
    """sendmail -N, -R and -V become NOTIFY, RET and ENVID; bad values
    are usage errors"""
    d = daemon("dsn-sendmail").start()
    env = {k: v for k, v in os.environ.items() if not k.startswith("MODSMTPD_")}
    env["MODSMTPD_SPOOL"] = d.spool

    def sendmail(args, data=b""):
        return subprocess.run([os.path.join(h.BUILDDIR, "sendmail")] + args, input=data,
                              env=env, stdout=subprocess.PIPE, stderr=subprocess.PIPE,
                              timeout=60 * h.SCALE)
    p = sendmail(["-f", SENDER, "-N", "success,Failure", "-R", "full", "-V", "my id+1",
                  "rcpt@example.org"], b"Subject: via sendmail\n\nthe whole body\n")
    assert p.returncode == 0, (p.returncode, p.stderr)
    m = wait_notice(d, "via sendmail")
    _, blocks, orig = parts(m)
    assert blocks[0].get("Original-Envelope-Id") == "my+20id+2B1", blocks[0]
    assert blocks[1].get("Action") == "delivered", blocks[1]
    assert orig.get_content_type() == "message/rfc822" and \
        "the whole body" in m.as_string(), "RET=FULL did not return the body"
    for args, what in ((["-N", "never,success"], "-N never,success"),
                       (["-N", "sometimes"], "-N sometimes"),
                       (["-N", "delay,delay"], "-N delay,delay"),
                       (["-R", "body"], "-R body"),
                       (["-V", "two\nlines"], "-V:")):
        p = sendmail(args + ["rcpt@example.org"], b"Subject: x\n\nx\n")
        assert p.returncode == 64 and what.encode() in p.stderr, \
            (args, p.returncode, p.stderr)
    assert d.stop() == 0


def test_success_notice_survives_kill():
    """killed between a delivery and its success notice (the sender's
    address takes a slow table to expand): after the restart the notice
    comes and the message is not delivered a second time"""
    prog = os.path.join(h.ROOT, "tests", "table-proc", "table-slow.py")
    d = daemon("dsn-kill")
    d.write_config(CONFIG.replace("@PORT2@", str(d.port2)) +
                   "table slowsnd proc:%s:3\n" % prog +
                   'match from any for domain "slowsnd.test" rcpt-to <slowsnd> '
                   'action "local"\n')
    d.start()
    msgid = send(d, "crash", sender="ok@slowsnd.test", rcpt_opts="NOTIFY=SUCCESS",
                 rcpts=("rcpt@example.org",))
    h.wait_for(lambda: [e for e in envelope_of(d, msgid)
                        if e.get("dsn_success") == "delivered"], 20,
               what="the delivered envelope marked on disk")
    assert len(d.messages()) == 1, "delivered %d times" % len(d.messages())
    d.kill()
    d.start()
    m = wait_notice(d, "crash")
    assert parts(m)[1][1].get("Action") == "delivered"
    d.wait_queue_empty(30)
    assert len(d.messages()) == 2, "%d messages: the original delivered again?" \
        % len(d.messages())
    assert d.stop() == 0


def test_delay_notices():
    """past a warn-interval the sender hears once that the message is
    delayed (Action delayed, 4.x.x, the last error); NOTIFY without DELAY
    hears nothing; a restart does not repeat the notice"""
    d = daemon("dsn-delay").start()
    msgid = send(d, "slow one", mail_opts="ENVID=slow1", rcpts=("s@slow.test",))
    quiet = send(d, "quiet one", rcpt_opts="NOTIFY=FAILURE", rcpts=("q@slow.test",))
    m = wait_notice(d, "slow one")
    assert m["Subject"] == "Delivery status notification: delay", m["Subject"]
    text, blocks, orig = parts(m)
    assert "has been waiting in the queue for" in text, text
    assert "Delivery will be tried until" in text, text
    assert blocks[0].get("Original-Envelope-Id") == "slow1", blocks[0]
    b = blocks[1]
    assert b.get("Action") == "delayed", b
    assert b.get("Status", "").startswith("4."), b
    assert "still busy" in b.get("Diagnostic-Code", ""), b
    assert b.get("Will-Retry-Until"), b
    assert orig.get_content_type() == "text/rfc822-headers", orig.get_content_type()
    # the count of notices is on disk with the envelope
    h.wait_for(lambda: [e for e in envelope_of(d, msgid) if e.get("dsn_warned") == 1],
               20, what="dsn_warned 1 on disk")
    h.wait_for(lambda: [e for e in envelope_of(d, quiet) if e.get("retry") == 1],
               20, what="the quiet envelope retried once")
    assert [e["dsn_warned"] for e in envelope_of(d, quiet)] == [0]
    assert d.stop() == 0

    # Restarted: both are tried again at once and fail again; no new notice.
    since = d.log_size()
    d.start()
    h.wait_for(lambda: [e for e in envelope_of(d, msgid) if e.get("retry") == 2] and
               [e for e in envelope_of(d, quiet) if e.get("retry") == 2], 30,
               what="both envelopes retried after the restart")
    # A barrier: a later message's notice comes after any the retries caused.
    send(d, "barrier", rcpt_opts="NOTIFY=SUCCESS", rcpts=("rcpt@example.org",))
    wait_notice(d, "barrier")
    log = d.log_text(since)
    assert "action=delayed" not in log, "a delay notice after the restart:\n" + log
    assert len([m for m in notices(d) if about(m, "slow one")]) == 1
    assert not [m for m in notices(d) if about(m, "quiet one")], \
        "a delay notice without NOTIFY=DELAY"
    assert d.stop() == 0


def test_ttl_expiry_bounce():
    """an envelope past its action's ttl bounces with the last error
    (Status 4.4.7); `queue ttl` applies to the others"""
    d = daemon("dsn-ttl").start()
    send(d, "too late", rcpts=("t@short.test",))
    m = wait_notice(d, "too late")
    _, blocks, _ = parts(m)
    b = blocks[1]
    assert b.get("Action") == "failed" and b.get("Status") == "4.4.7", b
    assert "delivery time expired; last error:" in b.get("Diagnostic-Code", "") and \
        "gone away" in b.get("Diagnostic-Code", ""), b
    d.wait_log(r"queue expired evpid=\S+ from=<%s> to=<t@short.test> "
               r"error=\".*gone away" % SENDER)
    msgid = send(d, "queue ttl", rcpts=("x@slow.test",))
    h.wait_for(lambda: envelope_of(d, msgid), 20, what="the envelope")
    assert envelope_of(d, msgid)[0]["expire"] == 3 * 86400, envelope_of(d, msgid)
    assert d.stop() == 0


if __name__ == "__main__":
    h.run_checks([test_ehlo_and_parameters, test_failure_notices, test_success_notices,
                  test_sendmail_options, test_success_notice_survives_kill,
                  test_delay_notices,
                  test_ttl_expiry_bounce])
