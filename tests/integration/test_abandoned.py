#!/usr/bin/env python3
"""Transactions that end before DATA leave nothing in the queue: the
message file the queue creates when the first recipient is accepted is
removed on RSET, on a new MAIL after RSET, and when the client vanishes;
a transaction after a reset still gets its message delivered."""

import os
import sys

sys.path.insert(0, os.path.dirname(os.path.abspath(__file__)))
import harness as h  # noqa: E402


def spool_messages(d):
    path = os.path.join(d.spool, "message")
    return sorted(os.listdir(path)) if os.path.isdir(path) else []


def test_abandoned_transactions():
    """RSET, disconnect and reset-then-send leave no stray message files"""
    d = h.Daemon("abandon").start()
    # RCPT then RSET then QUIT.
    with d.connect() as c:
        c.greet()
        c.expect("MAIL FROM:<a@client.test>", 250)
        c.expect("RCPT TO:<rcpt@example.org>", 250)
        c.expect("RSET", 250)
        c.expect("QUIT", 221)
    # RCPT then the client vanishes.
    c = d.connect()
    c.greet()
    c.expect("MAIL FROM:<a@client.test>", 250)
    c.expect("RCPT TO:<rcpt@example.org>", 250)
    c.close()
    # Pipelined: a transaction, RSET, and a second one that is sent.
    data = h.make_message("after reset")
    with d.connect() as c:
        c.greet()
        c.send(b"MAIL FROM:<a@client.test>\r\nRCPT TO:<rcpt@example.org>\r\nRSET\r\n"
               b"MAIL FROM:<b@client.test>\r\nRCPT TO:<rcpt@example.org>\r\nDATA\r\n")
        for code in (250, 250, 250, 250, 250, 354):
            r = c.reply()
            assert r.code == code, "pipelined reply %s (expected %d)" % (r, code)
        c.send(h.to_wire(data))
        r = c.reply()
        assert r.code == 250, "end of DATA -> %s" % r
    d.wait_delivered(1)
    d.wait_queue_empty()
    h.wait_for(lambda: not spool_messages(d), 20,
               what="no message files left in the spool (have %s)" % spool_messages(d))
    got = d.read_messages()
    assert len(got) == 1 and h.split_received(got[0])[1] == data, \
        "expected exactly the message sent after the reset"
    assert d.stop() == 0


if __name__ == "__main__":
    h.run_checks([test_abandoned_transactions])
