#!/usr/bin/env python3
"""The client's name: the reverse DNS of its address, kept only when it
resolves back to that address (fcrdns), looked up through a DNS server
the test starts on loopback (dnsmasq).  It shows in the Received header,
in the log, and decides `match from rdns` rules."""

import os
import sys

sys.path.insert(0, os.path.dirname(os.path.abspath(__file__)))
import harness as h  # noqa: E402
from test_relay import DNS  # noqa: E402

CONFIG = """\
listen on @HOST@ port @PORT@ hostname @HOSTNAME@
table names { "good.test" }
action "local" maildir "@MAILDIR@"@USER_OPT@
match from rdns <names> for domain "example.org" action "local"
match from rdns for domain "any-name.example.org" action "local"
"""


def session(d, source, rcpt):
    """(RCPT reply, the Received header of what got delivered or None)."""
    before = set(d.messages())
    with d.connect(source=(source, 0)) as c:
        c.greet()
        c.expect("MAIL FROM:<a@client.test>", 250)
        r = c.cmd("RCPT TO:<%s>" % rcpt)
        if r.code != 250:
            return r, None
        c.expect("DATA", 354)
        c.send(h.to_wire(h.make_message("rdns", to=rcpt)))
        c.reply()
    new = set(d.wait_delivered(len(before) + 1)) - before
    return r, h.split_received(h._read(new.pop()))[0].decode()


def test_rdns_rules_and_received():
    """a confirmed name matches `from rdns <t>` and is in Received; a PTR
    that does not resolve back, or none at all, counts as no name"""
    dns = DNS("--host-record=good.test,127.0.0.5",
              "--host-record=other.test,127.0.0.7",
              "--ptr-record=6.0.0.127.in-addr.arpa,liar.test")
    try:
        d = h.Daemon("rdns", CONFIG).start()
        r, rec = session(d, "127.0.0.5", "rcpt@example.org")
        assert r.code == 250, "good.test was refused: %s" % r
        assert "(good.test [127.0.0.5])" in rec, rec
        d.wait_log(r"smtp resolved address=127\.0\.0\.5 host=good\.test fcrdns=pass")
        r, _ = session(d, "127.0.0.7", "rcpt@example.org")
        assert r.code // 100 == 5, "other.test matched <names>: %s" % r
        r, rec = session(d, "127.0.0.7", "x@any-name.example.org")
        assert r.code == 250 and "(other.test [127.0.0.7])" in rec, (r, rec)
        r, _ = session(d, "127.0.0.6", "x@any-name.example.org")
        assert r.code // 100 == 5, "a PTR without its A record counted: %s" % r
        d.wait_log(r"smtp resolved address=127\.0\.0\.6 host=liar\.test fcrdns=fail")
        r, _ = session(d, "127.0.0.8", "x@any-name.example.org")
        assert r.code // 100 == 5, "a client without PTR matched from rdns: %s" % r
        d.wait_log(r"smtp resolved address=127\.0\.0\.8 host=<unknown> fcrdns=fail")
    finally:
        dns.stop()


if __name__ == "__main__":
    h.run_checks([test_rdns_rules_and_received])
