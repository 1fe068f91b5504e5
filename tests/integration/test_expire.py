#!/usr/bin/env python3
"""Expiry: a message that still cannot be delivered when its envelope's
ttl has run out is given up (logged with the last error) and leaves the
queue, instead of being retried forever.  The envelope's age is what the
spool says, so it survives restarts: the test ages a queued envelope on
disk while the daemon is stopped."""

import json
import os
import sys

sys.path.insert(0, os.path.dirname(os.path.abspath(__file__)))
import harness as h  # noqa: E402


def test_expired_message_leaves_the_queue():
    """an envelope older than its ttl that fails again is expired and removed"""
    d = h.Daemon("expire").start()
    with open(d.maildir, "w") as f:       # every delivery fails temporarily
        f.write("not a maildir\n")
    with d.connect() as c:
        c.greet()
        msgid = c.send_message(h.make_message("too late"))
    d.wait_log(r"%s[0-9a-f]{8} mda delivery .* result=TempFail" % msgid, timeout=30)
    h.wait_for(lambda: d.envelopes() and
               json.load(open(d.envelopes()[0])).get("retry") == 1, 10,
               what="the envelope to record its first failure")
    assert d.stop() == 0

    # Queued five days ago, with the default ttl of four days.
    path = d.envelopes()[0]
    ev = json.load(open(path))
    ev["creation"] -= 5 * 24 * 3600
    with open(path, "w") as f:
        json.dump(ev, f)

    since = d.log_size()
    d.start()
    d.wait_log(r"queue expired evpid=%s[0-9a-f]{8} .*error=\"maildir " % msgid,
               timeout=30, since=since)
    d.wait_queue_empty(30)
    assert not os.listdir(os.path.join(d.spool, "message")), "the message file stayed"
    assert d.stop() == 0


if __name__ == "__main__":
    h.run_checks([test_expired_message_leaves_the_queue])
