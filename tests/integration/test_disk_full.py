#!/usr/bin/env python3
"""A full spool is a temporary failure, never a silent accept: with the
spool on a tiny file system, a message that does not fit gets a 4xx and is
not delivered, every message answered 250 is delivered, and once space is
free again mail is accepted again.  Needs root (it mounts a tmpfs); as
another user it says so and passes."""

import os
import subprocess
import sys

sys.path.insert(0, os.path.dirname(os.path.abspath(__file__)))
import harness as h  # noqa: E402

SPOOL_SIZE = 256 * 1024


def body(kib, tag):
    line = ("%s " % tag + "x" * 70 + "\n")
    return line * (kib * 1024 // len(line) + 1)


def send(d, subject, kib):
    """Returns the reply to the end of DATA (or the first refusal)."""
    with d.connect() as c:
        c.greet()
        c.expect("MAIL FROM:<sender@client.test>", 250)
        c.expect("RCPT TO:<rcpt@example.org>", 250)
        r = c.cmd("DATA")
        if r.code != 354:
            return r
        c.send(h.to_wire(h.make_message(subject, body=body(kib, subject))))
        return c.reply()


def test_full_spool():
    """a message that does not fit the spool gets 4xx; what got 250 is delivered"""
    d = h.Daemon("full")
    os.makedirs(d.spool, 0o700)
    subprocess.run(["mount", "-t", "tmpfs", "-o", "size=%d" % SPOOL_SIZE, "msdfull",
                    d.spool], check=True)
    try:
        d.start()
        ok = send(d, "small", 16)
        assert ok.code == 250, "16 KiB message -> %s (expected 250)" % ok
        big = send(d, "big", 1024)
        assert 400 <= big.code < 500, "1 MiB message into a 256 KiB spool -> %s " \
            "(expected a temporary failure)" % big
        d.wait_delivered(1)
        d.wait_queue_empty()
        again = send(d, "again", 16)
        assert again.code == 250, "after the failure, 16 KiB -> %s (expected 250)" % again
        d.wait_delivered(2)
        d.wait_queue_empty()
        subjects = sorted(h.header_value(h.split_received(m)[1], "Subject")
                          for m in d.read_messages())
        assert subjects == [b"again", b"small"] or subjects == ["again", "small"], \
            "delivered: %r (expected the two messages that got 250)" % subjects
        assert d.stop() == 0
    finally:
        d.kill()
        subprocess.run(["umount", "-l", d.spool])


if __name__ == "__main__":
    if not h.IS_ROOT:
        print("skipped: mounting a small spool needs root")
        sys.exit(0)
    h.run_checks([test_full_spool])
