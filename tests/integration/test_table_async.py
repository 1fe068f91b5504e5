#!/usr/bin/env python3
"""Acceptance: a table backend that is slow only delays the recipients
that need it.  A proc table program that takes 5 s per answer serves one
rule; while a session waits for it, another session whose recipient is
decided by a file table completes a whole transaction.  The slow table's
worker process killed: its lookups get 451, the daemon keeps running, a new
worker answers again."""

import os
import signal
import sys
import threading
import time

sys.path.insert(0, os.path.dirname(os.path.abspath(__file__)))
import harness as h  # noqa: E402

SLOW = 5.0
PROG = os.path.join(h.ROOT, "tests", "table-proc", "table-slow.py")

CONFIG = """\
listen on @HOST@ port @PORT@ hostname @HOSTNAME@
table fast file:@TMP@/fast
table slowusers proc:%s:%s
action "local" maildir "@MAILDIR@"@USER_OPT@
match from any for domain <fast> action "local"
match from any for domain "slow.example" rcpt-to <slowusers> action "local"
""" % (PROG, SLOW)


def start():
    d = h.Daemon("table-async", CONFIG)
    with open(os.path.join(d.tmp, "fast"), "w") as f:
        f.write("fast.example\n")
    d.start()
    return d


def worker_pid(d):
    """The slow table's worker: a child of the lookup role named after it."""
    lookup = d.role_pids().get("lookup")
    for pid in h.children(lookup) if lookup else ():
        if h._read("/proc/%d/comm" % pid).strip() == b"table slowusers":
            return pid
    return None


class SlowRcpt(threading.Thread):
    """A session that sends RCPT for a slow-table recipient and records
    when the reply came."""

    def __init__(self, d, rcpt):
        super().__init__(daemon=True)
        self.d, self.rcpt = d, rcpt
        self.code = self.took = None
        self.sent = threading.Event()

    def run(self):
        with self.d.connect() as c:
            c.greet()
            c.expect("MAIL FROM:<sender@client.test>", 250)
            t0 = time.monotonic()
            c.line("RCPT TO:<%s>" % self.rcpt)
            self.sent.set()
            self.code = c.reply().code
            self.took = time.monotonic() - t0


def test_slow_table_delays_only_its_recipients():
    """a 5 s backend: its recipient waits 5 s; a session that does not need
    it is served at once, whole transaction included"""
    d = start()
    try:
        slow = SlowRcpt(d, "ok-alice@slow.example")
        slow.start()
        slow.sent.wait(10)
        t0 = time.monotonic()
        with d.connect() as c:
            c.greet()
            c.expect("MAIL FROM:<sender@client.test>", 250)
            c.expect("RCPT TO:<bob@fast.example>", 250)
            rcpt_took = time.monotonic() - t0
            c.expect("DATA", 354)
            c.send(h.to_wire(h.make_message("fast one")))
            assert c.reply().code == 250
            c.expect("QUIT", 221)
        fast_took = time.monotonic() - t0
        assert slow.code is None, \
            "the slow lookup answered before the other session was done"
        assert rcpt_took < 2.0, "RCPT waited %.1fs behind the slow table" % rcpt_took
        assert fast_took < SLOW - 1, "the fast session took %.1fs" % fast_took
        h.wait_for(lambda: len(h.maildir_messages(d.maildir)) == 1,
                   what="the fast session's message delivered")
        slow.join(3 * SLOW)
        assert slow.code == 250, "slow recipient: %r" % slow.code
        assert slow.took >= SLOW - 0.5, "the backend was not slow (%.1fs)" % slow.took
        # the same table says no as slowly, and the answer is a 550
        late = SlowRcpt(d, "mallory@slow.example")
        late.run()
        assert late.code == 550 and late.took >= SLOW - 0.5, (late.code, late.took)
        assert worker_pid(d), "no worker process for the slow table"
        assert d.running()
    finally:
        d.stop()


def test_worker_killed():
    """the slow table's worker killed while a lookup waits: 451 for that
    recipient, the daemon runs on, a new worker answers"""
    d = start()
    try:
        old = h.wait_for(lambda: worker_pid(d), what="the table's worker")
        slow = SlowRcpt(d, "ok-carol@slow.example")
        slow.start()
        slow.sent.wait(10)
        since = d.log_size()
        os.kill(old, signal.SIGKILL)
        slow.join(10)
        assert slow.code == 451, "a lookup lost with its worker: %r" % slow.code
        assert slow.took < SLOW, "the failure took %.1fs" % slow.took
        d.wait_log(r"table slowusers: the worker process exited; its lookups"
                   r" fail until it is restarted in 1s", since=since)
        new = h.wait_for(lambda: (worker_pid(d) or old) != old and worker_pid(d),
                         what="a new worker")
        assert new != old
        again = SlowRcpt(d, "ok-carol@slow.example")
        again.run()
        assert again.code == 250, "after the restart: %r" % again.code
        # the fast table never depended on any of it
        with d.connect() as c:
            c.greet()
            c.expect("MAIL FROM:<sender@client.test>", 250)
            c.expect("RCPT TO:<dave@fast.example>", 250)
        assert d.running()
    finally:
        d.stop()


def test_sighup_reaches_worker():
    """SIGHUP: the worker's table is updated by the worker itself"""
    d = start()
    try:
        h.wait_for(lambda: worker_pid(d), what="the table's worker")
        since = d.log_size()
        os.kill(d.pid, signal.SIGHUP)
        d.wait_log(r"table slowusers: updated", since=since)
        d.wait_log(r"lookup: tables updated", since=since)
        assert d.running()
    finally:
        d.stop()


if __name__ == "__main__":
    h.run_checks([test_slow_table_delays_only_its_recipients, test_worker_killed,
                  test_sighup_reaches_worker])
