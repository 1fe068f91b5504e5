#!/usr/bin/env python3
"""Acceptance: scripts/run starts a server on 127.0.0.1:2525, and a message
sent with swaks arrives in run/Maildir/new byte-exact plus exactly one
Received header in OpenSMTPD's shape."""

import os
import re
import shutil
import signal
import socket
import subprocess
import sys
import tempfile

sys.path.insert(0, os.path.dirname(os.path.abspath(__file__)))
import harness as h  # noqa: E402

RCPT = "you@example.org"
HELO = "client.test"

RECEIVED = re.compile(
    r"\AReceived: from (?P<helo>\S+) \((?:(?P<rdns>\S+) )?\[(?P<ip>[^\]]+)\]\)\n"
    r"\tby (?P<by>\S+) \(OpenSMTPD\) with ESMTP id (?P<id>[0-9a-f]{8})\n"
    r"\tfor <(?P<rcpt>[^>]+)>;\n"
    r"\t(?P<date>\w{3}, \d{1,2} \w{3} \d{4} \d\d:\d\d:\d\d [+-]\d{4}(?: \(\S+\))?)\n\Z")


def sample(tag):
    """Message bytes (LF) that exercise what byte-exact means: folded
    headers, trailing white space, tabs, leading dots, 8-bit text, a long
    line, empty lines.  No trailing newline: swaks adds the final CRLF
    itself (and an extra empty line when the data ends with one)."""
    lines = [
        'From: "Quick Start" <me@client.test>',
        "To: <%s>" % RCPT,
        "Subject: byte-exact check %s" % tag,
        "Date: Sun, 22 Nov 2026 10:00:00 +0000",
        "Message-ID: <%s.%d@client.test>" % (tag, os.getpid()),
        "MIME-Version: 1.0",
        "Content-Type: text/plain; charset=utf-8",
        "Content-Transfer-Encoding: 8bit",
        "X-Folded: first part",
        "\tcontinued after a tab",
        "   and after spaces",
        "",
        "Body line with trailing spaces   ",
        "\ttab-indented line\t",
        ".leading dot",
        "..two leading dots",
        ".",
        " .space then dot",
        "From the start of a line (an mbox would quote this)",
        "Gr\u00fc\u00dfe, \u00fcn\u00efc\u00f6d\u00e9 \u2013 8bit",
        "x" * 990,
        "",
        "",
        "last line",
    ]
    return "\n".join(lines).encode()


def swaks(port, data, to=RCPT):
    p = subprocess.run(
        ["swaks", "--server", "127.0.0.1:%d" % port, "--to", to, "--from", "me@client.test",
         "--helo", HELO, "--data", "-", "--timeout", "30"],
        input=data, stdout=subprocess.PIPE, stderr=subprocess.STDOUT, timeout=60 * h.SCALE)
    out = p.stdout.decode(errors="replace")
    assert p.returncode == 0, "swaks exit %d:\n%s" % (p.returncode, out)
    m = re.search(r"<-\s+250 2\.0\.0 ([0-9a-f]{8}) Message accepted for delivery", out)
    assert m, "no '250 2.0.0 <8 hex> Message accepted for delivery' after DATA in:\n" + out
    return m.group(1)


def check_delivered(path, data, msgid, by=None):
    with open(path, "rb") as f:
        got = f.read()
    received, rest = h.split_received(got)
    expected = data + b"\n"            # what swaks sent, CRLF -> LF
    if rest != expected:
        for i, (a, b) in enumerate(zip(rest, expected)):
            if a != b:
                break
        else:
            i = min(len(rest), len(expected))
        raise AssertionError(
            "delivered message (minus Received) differs from what swaks sent at byte %d: "
            "got %r, expected %r (lengths %d/%d)"
            % (i, rest[max(0, i - 40):i + 40], expected[max(0, i - 40):i + 40],
               len(rest), len(expected)))
    assert b"\nReceived:" not in rest.split(b"\n\n", 1)[0] and not rest.startswith(b"Received:"), \
        "more than one Received header"
    text = received.decode(errors="replace")
    m = re.search(r"\tby (\S+) \(OpenSMTPD\) with ESMTP id ([0-9a-f]{8})\n", text)
    assert m, "Received header lacks 'by <host> (OpenSMTPD) with ESMTP id <8 hex>':\n" + text
    if by:
        assert m.group(1) == by, "Received says by %s, expected %s" % (m.group(1), by)
    assert m.group(2) == msgid, "Received id %s differs from the 250's id %s" % (m.group(2), msgid)
    assert "\tfor <%s>;\n" % RCPT in text, "Received header lacks 'for <%s>;':\n%s" % (RCPT, text)
    full = RECEIVED.match(text)
    assert full, "Received header not in OpenSMTPD's shape (from HELO (rdns [ip]) / by / for / date):\n" + text
    assert full.group("helo") == HELO and full.group("ip") == "127.0.0.1", \
        "Received from-part wrong: helo=%s ip=%s" % (full.group("helo"), full.group("ip"))


def test_scripts_run():
    """scripts/run serves 127.0.0.1:2525 and delivers a swaks message into run/Maildir/new byte-exact"""
    tmp = tempfile.mkdtemp(prefix="msd-quickstart-")
    os.chmod(tmp, 0o755)
    rundir = os.path.join(tmp, "run")
    # In the test's own network namespace (root) 2525 is free; elsewhere
    # take it when free, or any free port.
    port = 2525
    try:
        socket.create_connection(("127.0.0.1", port), timeout=1).close()
        port = h.free_port()
    except OSError:
        pass
    log = os.path.join(tmp, "run.log")
    env = dict(os.environ, MSD_RUN_DIR=rundir, MSD_PORT=str(port), BUILDDIR=h.BUILDDIR)
    with open(log, "wb") as lf:
        proc = subprocess.Popen(["bash", os.path.join(h.ROOT, "scripts", "run")], env=env,
                                stdin=subprocess.DEVNULL, stdout=lf, stderr=lf,
                                start_new_session=True)
    ok = False
    try:
        def ready():
            if proc.poll() is not None:
                raise AssertionError("scripts/run exited with %s:\n%s" % (proc.returncode, open(log).read()[-4000:]))
            try:
                with h.SMTP("127.0.0.1", port, timeout=5) as c:
                    return c.reply().code == 220
            except (OSError, EOFError):
                return False
        h.wait_for(ready, 120, 0.1, "scripts/run to serve 127.0.0.1:%d" % port)
        out = open(log, errors="replace").read()
        assert "swaks --server 127.0.0.1:%d --to you@example.org" % port in out, \
            "scripts/run does not print how to send a message:\n" + out
        if h.IS_ROOT:
            uids = {os.stat("/proc/%d" % p).st_uid for p in [proc.pid] + h.descendants(proc.pid)}
            if h.alive(proc.pid) and 0 in uids:
                raise AssertionError("scripts/run runs the daemon as root (uids %s)" % sorted(uids))
        data = sample("quickstart")
        msgid = swaks(port, data)
        maildir = os.path.join(rundir, "Maildir")
        files = h.wait_for(lambda: h.maildir_messages(maildir), 60,
                           what="the message in %s/new" % maildir)
        check_delivered(files[0], data, msgid)
        assert len(h.maildir_messages(maildir)) == 1, "more than one file delivered"
        reports = h.sanitizer_reports(open(log, errors="replace").read())
        assert not reports, "sanitizer reports in the log:\n  " + "\n  ".join(reports)
        ok = True
    finally:
        # SIGTERM the daemon (scripts/run exec'ed it), wait, then clean up.
        if proc.poll() is None:
            os.kill(proc.pid, signal.SIGTERM)
            try:
                proc.wait(20 * h.SCALE)
            except subprocess.TimeoutExpired:
                ok = False
                print("smtpd started by scripts/run did not stop on SIGTERM")
        if proc.poll() is None:
            for p in h.descendants(proc.pid):
                os.kill(p, signal.SIGKILL)
            os.killpg(proc.pid, signal.SIGKILL)
            proc.wait()
        if ok and os.environ.get("MSD_KEEP") != "1":
            shutil.rmtree(tmp, ignore_errors=True)
        else:
            print("  kept %s\n%s" % (tmp, "".join("    run| " + l for l in open(log, errors="replace").readlines()[-60:])))


def test_received_header():
    """a swaks message to the harness daemon: Received says by <hostname> (OpenSMTPD) with ESMTP id <id> for <rcpt>"""
    d = h.Daemon("quick").start()
    data = sample("received")
    msgid = swaks(d.port, data)
    files = d.wait_delivered(1)
    check_delivered(files[0], data, msgid, by=d.hostname)
    d.wait_queue_empty()
    assert len(d.messages()) == 1, "delivered %d times" % len(d.messages())
    assert d.stop() == 0, "smtpd exited non-zero on SIGTERM"


if __name__ == "__main__":
    h.run_checks([test_scripts_run, test_received_header])
