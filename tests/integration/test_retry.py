#!/usr/bin/env python3
"""A temporary delivery failure keeps the message: the envelope stays in
the queue with its retry count and the error, and the next attempt, after
the backoff, delivers it once the cause is gone."""

import json
import os
import sys

sys.path.insert(0, os.path.dirname(os.path.abspath(__file__)))
import harness as h  # noqa: E402


def test_tempfail_then_retry():
    """maildir in the way -> TempFail, envelope kept; fixed -> delivered on retry"""
    d = h.Daemon("retry").start()
    # A file where the Maildir should be: every delivery fails temporarily.
    with open(d.maildir, "w") as f:
        f.write("not a maildir\n")
    with d.connect() as c:
        c.greet()
        msgid = c.send_message(h.make_message("retried"))
    d.wait_log(r"%s[0-9a-f]{8} mda delivery .* result=TempFail" % msgid, timeout=30)
    envs = d.envelopes()
    assert len(envs) == 1, "envelopes in the queue after a TempFail: %s" % envs
    h.wait_for(lambda: json.load(open(d.envelopes()[0])).get("retry") == 1, 10,
               what="the envelope on disk to record retry 1")
    ev = json.load(open(d.envelopes()[0]))
    assert ev.get("errorline"), "the envelope does not record the error: %s" % ev

    os.remove(d.maildir)
    # The first retry comes 30 s after the failure.
    d.wait_delivered(1, timeout=90)
    d.wait_queue_empty(30)
    got = d.read_messages()
    assert len(got) == 1, "%d copies delivered" % len(got)
    assert h.header_value(h.split_received(got[0])[1], "Subject") in ("retried", b"retried")
    assert d.stop() == 0


if __name__ == "__main__":
    h.run_checks([test_tempfail_then_retry])
