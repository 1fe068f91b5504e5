#!/usr/bin/env python3
"""A transaction at the default recipient limit (1000) with long addresses
and a long HELO: its envelopes exceed what one IPC frame may carry, and
the message must still be accepted and delivered once per recipient."""

import os
import sys

sys.path.insert(0, os.path.dirname(os.path.abspath(__file__)))
import harness as h  # noqa: E402

N = 1000


def rcpt(i):
    return "%s.%04d@example.org" % ("r" * 230, i)


def test_thousand_long_recipients():
    """1000 RCPTs of 250 bytes, pipelined: 250 after DATA, 1000 deliveries"""
    d = h.Daemon("many").start()
    sender = "%s@client.test" % ("s" * 240)
    with d.connect(timeout=120) as c:
        c.expect(None, 220)
        c.expect("EHLO %s.client.test" % ("h" * 200), 250)
        c.expect("MAIL FROM:<%s>" % sender, 250)
        # Pipelined in batches, as a real list server would send them.
        for start in range(0, N, 100):
            c.send("".join("RCPT TO:<%s>\r\n" % rcpt(i)
                           for i in range(start, start + 100)).encode())
            for i in range(start, start + 100):
                r = c.reply()
                assert r.code == 250, "RCPT %d -> %s" % (i, r)
        c.expect("DATA", 354)
        c.send(h.to_wire(h.make_message("to a thousand", frm=sender)))
        r = c.reply()
        assert r.code == 250, "end of DATA with %d recipients -> %s" % (N, r)
    d.wait_delivered(N, timeout=240)
    d.wait_queue_empty(60)
    assert len(d.messages()) == N, "%d deliveries, expected %d" % (len(d.messages()), N)
    assert d.stop() == 0


if __name__ == "__main__":
    h.run_checks([test_thousand_long_recipients])
