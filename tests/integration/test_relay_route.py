#!/usr/bin/env python3
"""Outbound relay, the choice of hosts and of our own side: `src` source
addresses and `helo-src` names, MX hosts of equal preference shared out,
a host that just failed tried last, `mta max-deferred` (envelopes of a
route that was down leave at once when it delivers again) and a relay
`pki` presenting a client certificate.  Peers are the scripted SMTP
server and the loopback DNS of test_relay, and a second daemon; all in
the test's own network namespace."""

import json
import os
import re
import sys

sys.path.insert(0, os.path.dirname(os.path.abspath(__file__)))
import harness as h  # noqa: E402
import test_relay as tr  # noqa: E402
import test_tls  # noqa: E402

CONFIG = """\
listen on @HOST@ port @PORT@ hostname relay.test.example
action "local" maildir "@MAILDIR@"@USER_OPT@
match from any for domain "example.org" action "local"
"""


def relay(name, body):
    """A relay daemon: body declares actions; `match ... action` lines
    route each domain of the test to them."""
    return h.Daemon(name, CONFIG + body).start()


def wait_messages(srv, n, timeout=30):
    h.wait_for(lambda: len(srv.messages) >= n, timeout,
               what="%d message(s) at the scripted server" % n)


def envelope(path):
    return json.loads(h._read(path))


def wait_idle_quit(r, n):
    """The relay's session(s) said QUIT: the next message opens a new one."""
    h.wait_for(lambda: len(re.findall(r"mta disconnected", r.log_text())) >= n, 30,
               what="%d relay session(s) closed" % n)


# ----------------------------------------------------------------- checks

def test_src_and_helo_src():
    """src <t>: connections come from the table's addresses in turn, each
    greeting with its helo-src name; without src the kernel's address is
    looked up; an address with no name uses helo; no source of the host's
    family keeps the message queued with the reason"""
    srv = tr.ScriptedServer()
    srv6 = tr.ScriptedServer(host="::1")
    try:
        body = (
            'table srcs { 127.0.0.5, 127.0.0.6 }\n'
            'table helos { 127.0.0.5 = out5.example.org, 127.0.0.6 = out6.example.org, '
            '127.0.0.1 = loop.example.org }\n'
            'action "two" relay host "smtp://127.0.0.1:%(p)d" src <srcs> helo-src <helos>\n'
            'action "kernel" relay host "smtp://127.0.0.1:%(p)d" helo-src <helos>\n'
            'action "noname" relay host "smtp://127.0.0.1:%(p)d" src 127.0.0.7 '
            'helo-src <helos> helo "fallback.example.org"\n'
            'action "v6" relay host "smtp://[::1]:%(p6)d" src <srcs>\n'
            'match from any for domain "two.test" action "two"\n'
            'match from any for domain "kernel.test" action "kernel"\n'
            'match from any for domain "noname.test" action "noname"\n'
            'match from any for domain "v6.test" action "v6"\n'
            % {"p": srv.port, "p6": srv6.port})
        r = relay("relay-src", body)
        names = {"127.0.0.5": "out5.example.org", "127.0.0.6": "out6.example.org"}
        for i in range(2):
            tr.send(r, ["bob@two.test"], subject="src %d" % i)
            wait_messages(srv, i + 1)
            wait_idle_quit(r, i + 1)
        got = srv.greetings[:2]
        assert {peer for peer, _ in got} == set(names), \
            "two sessions should come from both src addresses: %r" % got
        for peer, name in got:
            assert name == names[peer], "%s greeted as %s, not %s" % (peer, name, names[peer])
        assert re.search(r'mta delivery .*to=<bob@two\.test> .*source="127\.0\.0\.[56]" ',
                         r.log_text()), "the delivery line does not name our source:\n" + r.log_tail()

        tr.send(r, ["bob@kernel.test"], subject="kernel")
        wait_messages(srv, 3)
        assert srv.greetings[2] == ("127.0.0.1", "loop.example.org"), \
            "without src, helo-src of the kernel's address: %r" % (srv.greetings[2],)

        tr.send(r, ["bob@noname.test"], subject="noname")
        wait_messages(srv, 4)
        assert srv.greetings[3] == ("127.0.0.7", "fallback.example.org"), \
            "an address helo-src does not name uses helo: %r" % (srv.greetings[3],)

        tr.send(r, ["bob@v6.test"], subject="v6")
        r.wait_log(r"mta error .*reason=\"no IPv6 source address in table srcs\"", 30)
        r.wait_log(r'to=<bob@v6\.test> .*result="TempFail"', 30)
        assert srv6.connections == 0 and r.envelopes(), \
            "a message left for an IPv6 host with only IPv4 sources"
    finally:
        srv.close()
        srv6.close()


def test_equal_preference_shared():
    """MX hosts of one preference are tried in a random order per route
    (RFC 5321 5.1): twenty domains behind the same two MX use both"""
    if not h.in_netns():
        print("skipped: needs the test's own network namespace (port 25)")
        return
    records = ["--host-record=mxa.test,127.0.0.2", "--host-record=mxb.test,127.0.0.3"]
    domains = ["d%d.test" % i for i in range(20)]
    for d in domains:
        records += ["--mx-host=%s,mxa.test,10" % d, "--mx-host=%s,mxb.test,10" % d]
    dns = tr.DNS(*records)
    a = tr.ScriptedServer(host="127.0.0.2", port=25)
    b = tr.ScriptedServer(host="127.0.0.3", port=25)
    try:
        r = relay("relay-shuffle", 'action "out" relay\n' + "".join(
            'match from any for domain "%s" action "out"\n' % d for d in domains))
        tr.send(r, ["bob@" + d for d in domains])
        h.wait_for(lambda: len(a.messages) + len(b.messages) >= 20, 60,
                   what="20 messages at the two MX")
        r.wait_queue_empty(30)
        assert a.messages and b.messages, \
            "every route chose the same MX: %d at mxa, %d at mxb" % (len(a.messages), len(b.messages))
        print("    mxa got %d, mxb %d" % (len(a.messages), len(b.messages)))
    finally:
        a.close()
        b.close()
        dns.stop()


def test_failed_host_tried_last():
    """a best MX that refused is tried after the others for a while: the
    next session goes straight to the second MX"""
    if not h.in_netns():
        print("skipped: needs the test's own network namespace (port 25)")
        return
    dns = tr.DNS(*tr.MX_RECORDS)
    mx2 = tr.ScriptedServer(host="127.0.0.3", port=25)
    try:
        r = relay("relay-down-host", 'action "out" relay\n'
                  'match from any for domain "example.test" action "out"\n')
        tr.send(r, ["bob@example.test"], subject="first")
        wait_messages(mx2, 1)
        wait_idle_quit(r, 1)
        tr.send(r, ["bob@example.test"], subject="second")
        wait_messages(mx2, 2)
        tries = re.findall(r"mta connecting address=smtp://127\.0\.0\.2:25", r.log_text())
        assert len(tries) == 1, \
            "the refused MX was tried %d times; once was enough" % len(tries)
        assert mx2.connections == 2, "expected two sessions at mx2, saw %d" % mx2.connections
    finally:
        mx2.close()
        dns.stop()


def test_max_deferred_release():
    """a message deferred while the next hop was down leaves as soon as
    another message gets through, not at its next retry"""
    port = h.free_port()
    srv = None
    try:
        r = relay("relay-deferred", 'mta max-deferred 10\n'
                  'action "out" relay host "smtp://127.0.0.1:%d"\n'
                  'match from any for domain "example.test" action "out"\n' % port)
        tr.send(r, ["bob@example.test"], subject="while down")
        r.wait_log(r'result="TempFail" stat="[^"]*Connection refused', 30)
        # OpenSMTPD's schedule: the first retry of a relayed envelope is
        # 400 s after the message arrived.
        h.wait_for(lambda: [e for e in map(envelope, r.envelopes()) if e["retry"] == 1],
                   10, what="the deferred envelope's first retry on disk")
        ev = envelope(r.envelopes()[0])
        assert ev["nexttry"] - ev["creation"] == 400, \
            "next try %d s after arrival, not 400" % (ev["nexttry"] - ev["creation"])
        srv = tr.ScriptedServer(port=port)
        tr.send(r, ["carol@example.test"], subject="back up")
        # The first retry of the deferred one is 400 s away: it must not
        # take that long.
        wait_messages(srv, 2, timeout=20)
        r.wait_log(r"queue: relay out delivers again: 1 deferred envelope released", 10)
        r.wait_queue_empty(30)
        subjects = sorted(re.search(rb"Subject: ([^\r\n]*)", m[2]).group(1).decode()
                          for m in srv.messages)
        assert subjects == ["back up", "while down"], subjects
    finally:
        if srv:
            srv.close()


def test_relay_client_certificate():
    """`pki` on a relay action: the relay presents that certificate, so a
    next hop with tls-require verify takes the message; without it the
    handshake is refused and the message stays queued"""
    dns = tr.DNS("--host-record=mx.test.example,127.0.0.1")
    try:
        certs = test_tls.certs()
        sink_cfg = tr.SINK_CONFIG.replace(
            "listen on @HOST@ port @PORT@ hostname @HOSTNAME@",
            'pki "mx" cert "%s/mx.crt"\npki "mx" key "%s/mx.key"\n'
            'ca "testca" cert "%s/ca.crt"\n'
            'listen on @HOST@ port @PORT@ hostname @HOSTNAME@ tls-require verify '
            'pki "mx" ca "testca"' % (certs, certs, certs))
        sink = h.Daemon("sink-verify", sink_cfg, hostname="mx.test.example").start()
        common = ('ca "testca" cert "%s/ca.crt"\n'
                  'pki "client" cert "%s/client.crt"\npki "client" key "%s/client.key"\n'
                  % (certs, certs, certs))
        url = "smtp+tls://mx.test.example:%d" % sink.port
        r = relay("relay-pki", common + 'action "out" relay host "%s" ca "testca" pki "client"\n'
                  'match from any for domain "example.test" action "out"\n' % url)
        tr.send(r, ["bob@example.test"])
        data = h._read(sink.wait_delivered(1)[0])
        rec = h.split_received(data)[0].decode()
        m = test_tls.RECEIVED_TLS.search(rec)
        assert m and m.group(5) == "YES", \
            "the next hop did not verify our client certificate:\n" + rec
        r.wait_queue_empty(30)
        r2 = relay("relay-nopki", common + 'action "out" relay host "%s" ca "testca"\n'
                   'match from any for domain "example.test" action "out"\n' % url)
        tr.send(r2, ["bob@example.test"], subject="no certificate")
        r2.wait_log(r'to=<bob@example\.test> .*result="TempFail"', 30)
        assert r2.envelopes() and len(sink.messages()) == 1, \
            "a message got through without a client certificate"
    finally:
        dns.stop()


if __name__ == "__main__":
    h.run_checks([test_src_and_helo_src, test_equal_preference_shared,
                  test_failed_host_tried_last, test_max_deferred_release,
                  test_relay_client_certificate])
