#!/usr/bin/env python3
"""Acceptance: kill -9 of any one process (smtp, lookup, queue, control or
the parent) right after a 250 takes the whole daemon down (logged, nothing
half-working left); after a restart on the same spool the message is
delivered exactly once.

Killing smtp, lookup or control leads to an orderly shutdown in which the
parent reports finished deliveries to the queue.  Killing the queue or the
parent can lose the record of a delivery that had already finished; the
maildir method then finds its earlier copy (named after the envelope)
instead of writing a second one."""

import os
import re
import signal
import sys

sys.path.insert(0, os.path.dirname(os.path.abspath(__file__)))
import harness as h  # noqa: E402

DEATH_WORDS = r"(?:died|dead|death|exited|exit|terminated|killed|lost|signal|crashed|gone)"


def death_logged(text, role, pid):
    """A log line that names the dead role (or its pid) and says it died."""
    for line in text.splitlines():
        if line.startswith("### harness"):
            continue
        names_it = (re.search(r"(?<![\w-])%s(?![\w-])" % re.escape(role), line)
                    or re.search(r"(?<!\d)%d(?!\d)" % pid, line))
        if names_it and re.search(r"(?i)\b" + DEATH_WORDS, line):
            return line
    return None


def kill_after_250(role, n):
    d = h.Daemon("k%d" % n).start()
    roles = d.role_pids()
    missing = [r for r in h.ROLES if r not in roles]
    assert not missing, ("cannot identify role(s) %s among the daemon's children by "
                         "/proc/PID/comm (expected comm = role name): %s"
                         % (missing, d.describe_children()))
    victim = d.pid if role == "parent" else roles[role]
    d.snapshot()
    mid = "<kill-%s.%d@client.test>" % (role, os.getpid())
    data = h.make_message("killed %s" % role, mid, body="kill -9 %s after the 250\n" % role)

    c = d.connect()
    c.greet()
    msgid = c.send_message(data)
    os.kill(victim, signal.SIGKILL)            # right after the 250, session still open
    c.close()

    d.wait_exit(30)                           # every process gone, nothing half-working
    if role != "parent":
        line = death_logged(d.log_text(), role, victim)
        assert line, ("the parent did not log the death of %s (pid %d); log:\n%s"
                      % (role, victim, d.log_tail(20)))

    d.start()                                 # same config, same spool
    d.wait_delivered(1, 60)
    d.wait_queue_empty(60)
    copies = []
    for got in d.read_messages():
        received, rest = h.split_received(got)
        if h.header_value(rest, "Message-ID") == mid:
            copies.append((received, rest))
    assert len(copies) == 1, "message delivered %d times after kill -9 %s" % (len(copies), role)
    received, rest = copies[0]
    assert rest == data, "delivered content differs from what was sent"
    assert (" id %s" % msgid).encode() in received, \
        "Received id differs from the 250's id %s: %r" % (msgid, received)
    assert len(d.messages()) == 1, "%d files delivered, expected 1" % len(d.messages())
    assert d.stop() == 0, "smtpd exited non-zero on SIGTERM after the restart"


def make_check(role, n):
    def check():
        kill_after_250(role, n)
    check.__name__ = "test_kill_%s" % role
    check.__doc__ = "kill -9 %s right after a 250: daemon exits, restart delivers exactly once" % role
    return check


def test_second_daemon_refused():
    """a second smtpd on the same spool refuses to start and names the first"""
    d = h.Daemon("lock").start()
    second = h.Daemon("lock2")
    second.spool = d.spool
    try:
        second.start(timeout=10)
    except AssertionError:
        pass
    else:
        raise AssertionError("a second smtpd started on spool %s" % d.spool)
    want = "smtpd: spool %s is in use by another smtpd (pid %d)" % (d.spool, d.pid)
    assert want in second.log_text(), "expected %r in:\n%s" % (want, second.log_tail(10))
    assert d.running(), "the first daemon did not survive the attempt"
    assert d.stop() == 0


def workers(d):
    return [p for p in h.children(d.pid) if h._read("/proc/%d/comm" % p).strip() == b"delivery"]


def test_dead_worker_is_not_a_dead_daemon():
    """kill -9 of a delivery worker: the daemon stays up, the next message is delivered"""
    d = h.Daemon("worker").start()
    for n, subject in enumerate(("first", "second"), 1):
        with d.connect() as c:
            c.greet()
            c.send_message(h.make_message(subject))
        d.wait_delivered(n)
        d.wait_queue_empty()
        if n == 1:
            victims = workers(d)
            assert victims, "no delivery worker among the daemon's children"
            for p in victims:
                os.kill(p, signal.SIGKILL)
            h.wait_for(lambda: not set(victims) & set(workers(d)), 10,
                       what="the killed workers to be reaped")
    assert d.running(), "the daemon died with its delivery worker"
    assert len(d.messages()) == 2
    assert d.stop() == 0


def test_sighup_keeps_running():
    """SIGHUP reads the tables again, says the rest needs a restart, and
    does not stop the daemon"""
    d = h.Daemon("hup").start()
    os.kill(d.pid, signal.SIGHUP)
    d.wait_log(r"SIGHUP: tables read again; a change to the rest of the"
               r" configuration needs a restart")
    with d.connect() as c:
        c.greet()
        c.send_message(h.make_message("after hup"))
    d.wait_delivered(1)
    assert d.running()
    assert d.stop() == 0


CHECKS = [make_check(r, n) for n, r in enumerate(h.ROLES + ("parent",))]
CHECKS.append(test_sighup_keeps_running)
CHECKS += [test_second_daemon_refused, test_dead_worker_is_not_a_dead_daemon]

if __name__ == "__main__":
    h.run_checks(CHECKS)
