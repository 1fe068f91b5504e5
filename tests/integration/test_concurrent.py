#!/usr/bin/env python3
"""Acceptance: 100 messages over 10 concurrent sessions all arrive, each
exactly once, unchanged, and the queue is empty afterwards."""

import collections
import os
import smtplib
import sys
import threading

sys.path.insert(0, os.path.dirname(os.path.abspath(__file__)))
import harness as h  # noqa: E402

SESSIONS = 10
PER_SESSION = 10


def msg_for(s, i):
    mid = "<conc-%d-%d.%d@client.test>" % (s, i, os.getpid())
    body = "session %d message %d\n%s\n.dot line\n" % (s, i, ("payload-%d-%d " % (s, i)) * 40)
    return mid, h.make_message("concurrent %d/%d" % (s, i), mid, body=body)


def test_100_messages_10_sessions():
    """100 messages, 10 sessions in parallel: each delivered exactly once, byte-exact"""
    d = h.Daemon("conc").start()
    barrier = threading.Barrier(SESSIONS)
    accepted = {}          # Message-ID -> 8-hex id from the 250
    errors = []
    lock = threading.Lock()

    def worker(s):
        try:
            with smtplib.SMTP("127.0.0.1", d.port, local_hostname="client%d.test" % s,
                              timeout=60 * h.SCALE) as c:
                c.ehlo()
                barrier.wait(30 * h.SCALE)     # all 10 sessions open at once
                for i in range(PER_SESSION):
                    mid, data = msg_for(s, i)
                    code, text = c.mail("sender@client.test")
                    assert code == 250, "MAIL -> %d %r" % (code, text)
                    code, text = c.rcpt("rcpt@example.org")
                    assert code == 250, "RCPT -> %d %r" % (code, text)
                    # smtplib dot-stuffs bytes but leaves line endings alone
                    code, text = c.data(data.replace(b"\n", b"\r\n"))
                    m = h.MSGID_250.match(text.decode(errors="replace"))
                    assert code == 250 and m, "DATA -> %d %r" % (code, text)
                    with lock:
                        accepted[mid] = m.group(1)
        except Exception as e:  # noqa: BLE001
            with lock:
                errors.append("session %d: %s: %s" % (s, type(e).__name__, e))

    threads = [threading.Thread(target=worker, args=(s,)) for s in range(SESSIONS)]
    for t in threads:
        t.start()
    for t in threads:
        t.join(300 * h.SCALE)
    assert not errors, "client errors:\n  " + "\n  ".join(errors)
    total = SESSIONS * PER_SESSION
    assert len(accepted) == total, "only %d of %d accepted" % (len(accepted), total)
    ids = list(accepted.values())
    assert len(set(ids)) == total, "message ids in the 250 replies are not unique: %s" % (
        [i for i, n in collections.Counter(ids).items() if n > 1])

    d.wait_delivered(total, 120)
    d.wait_queue_empty(60)
    files = d.messages()
    seen = collections.Counter()
    problems = []
    expected = {}
    for s in range(SESSIONS):
        for i in range(PER_SESSION):
            mid, data = msg_for(s, i)
            expected[mid] = data
    for path in files:
        with open(path, "rb") as f:
            got = f.read()
        try:
            received, rest = h.split_received(got)
        except AssertionError as e:
            problems.append("%s: %s" % (os.path.basename(path), e))
            continue
        mid = h.header_value(rest, "Message-ID")
        seen[mid] += 1
        if mid not in expected:
            problems.append("%s: unexpected Message-ID %s" % (os.path.basename(path), mid))
        elif rest != expected[mid]:
            problems.append("%s: content of %s changed" % (os.path.basename(path), mid))
        elif (" id %s" % accepted[mid]).encode() not in received:
            problems.append("%s: Received id is not the 250's id %s" % (os.path.basename(path), accepted[mid]))
    dups = {m: n for m, n in seen.items() if n > 1}
    missing = sorted(set(expected) - set(seen))
    assert not dups, "delivered more than once: %s" % dups
    assert not missing, "never delivered: %s" % missing
    assert len(files) == total, "%d files in Maildir/new, expected %d" % (len(files), total)
    assert not problems, "\n  ".join(["bad deliveries:"] + problems[:20])
    assert d.stop() == 0, "smtpd exited non-zero on SIGTERM"


if __name__ == "__main__":
    h.run_checks([test_100_messages_10_sessions])
