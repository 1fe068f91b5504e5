#!/usr/bin/env python3
"""Listener options that change who the server is and who the client is:
`hostnames <t>` (the server name depends on the local address the client
reached: 127.0.0.1 and 127.0.0.2), `tag` (a `match tag` rule applies only
to the tagged listener), and `proxy-v2` (HAProxy's PROXY v2 header, built
by hand here: IPv4, IPv6, LOCAL, TLVs, a header in pieces, SMTPS behind
it; the proxied address is the one in the Received header, the logs, the
`from src` rules and the filters' link-connect; a malformed or missing
header closes the connection with one log line)."""

import os
import re
import socket
import ssl
import struct
import sys

sys.path.insert(0, os.path.dirname(os.path.abspath(__file__)))
import harness as h  # noqa: E402
import test_filters as tf  # noqa: E402
import test_tls as t  # noqa: E402

# ------------------------------------------------------------- hostnames

HOSTNAMES = """\
table names file:@TMP@/names
listen on 127.0.0.1 port @PORT@ hostnames <names>
listen on 127.0.0.2 port @PORT@ hostnames <names>
listen on 127.0.0.3 port @PORT@ hostnames <names> hostname fallback.test.example
action "local" maildir "@MAILDIR@"@USER_OPT@
match from any for domain "example.org" action "local"
"""


def banner_and_ehlo(host, port):
    with h.SMTP(host, port, timeout=30) as c:
        banner = c.reply()
        assert banner.code == 220, banner
        r = c.expect("EHLO client.test", 250)
        c.expect("QUIT", 221)
        return banner.text.split()[0], r.lines[0].split()[0]


def test_hostnames():
    """hostnames <t>: 127.0.0.1 and 127.0.0.2 on one port get their own names in the
    banner, EHLO and Received; an address the table lacks gets the listener's hostname"""
    d = h.Daemon("hostnames", HOSTNAMES)
    with open(os.path.join(d.tmp, "names"), "w") as f:
        f.write("127.0.0.1 one.test.example\n127.0.0.2 two.test.example\n")
    d.start()
    try:
        for host, name in (("127.0.0.1", "one.test.example"),
                           ("127.0.0.2", "two.test.example")):
            got = banner_and_ehlo(host, d.port)
            assert got == (name, name), "connected to %s: banner/EHLO name %s, expected %s" % (
                host, got, name)
        # not in the table: the listener's hostname
        got = banner_and_ehlo("127.0.0.3", d.port)
        assert got == ("fallback.test.example",) * 2, got
        with h.SMTP("127.0.0.2", d.port) as c:
            c.greet()
            c.send_message(h.make_message("via two"))
            c.expect("QUIT", 221)
        d.wait_delivered(1)
        rec, _rest = h.split_received(d.read_messages()[0])
        assert b"\n\tby two.test.example (OpenSMTPD) with ESMTP id " in rec, rec
    finally:
        d.stop()


# -------------------------------------------------------------------- tag

TAGS = """\
listen on @HOST@ port @PORT@ hostname @HOSTNAME@
listen on @HOST@ port @MSA@ hostname @HOSTNAME@ tag "MSA"
action "local" maildir "@MAILDIR@"@USER_OPT@
match from any tag "MSA" for domain "tagged.example" action "local"
match from any for domain "example.org" action "local"
"""


def test_tag_only_on_its_listener():
    """`match tag MSA` accepts on the tagged listener only; the untagged one gets 550"""
    msa = h.free_port()
    d = h.Daemon("tags", TAGS.replace("@MSA@", str(msa))).start()
    try:
        for port, code in ((msa, 250), (d.port, 550)):
            with h.SMTP(d.host, port) as c:
                c.greet()
                c.expect("MAIL FROM:<sender@client.test>", 250)
                r = c.cmd("RCPT TO:<someone@tagged.example>")
                assert r.code == code, "port %d (%s): %s, expected %d" % (
                    port, "tagged" if port == msa else "untagged", r, code)
                c.expect("RCPT TO:<rcpt@example.org>", 250)
                c.expect("QUIT", 221)
    finally:
        d.stop()


# --------------------------------------------------------------- proxy-v2

SIG = b"\r\n\r\n\x00\r\nQUIT\n"


def pv2(cmd=1, fam=0x11, src=("192.0.2.7", 40000), dst=("198.51.100.25", 25), tlv=b"",
        version=2):
    """A PROXY protocol v2 header: cmd 1 PROXY / 0 LOCAL, fam 0x11 TCP4,
    0x21 TCP6, 0x00 UNSPEC, 0x12 UDP4."""
    if fam in (0x11, 0x12):
        addr = (socket.inet_aton(src[0]) + socket.inet_aton(dst[0]) +
                struct.pack("!HH", src[1], dst[1]))
    elif fam == 0x21:
        addr = (socket.inet_pton(socket.AF_INET6, src[0]) +
                socket.inet_pton(socket.AF_INET6, dst[0]) + struct.pack("!HH", src[1], dst[1]))
    else:
        addr = b""
    body = addr + tlv
    return SIG + bytes([version << 4 | cmd, fam]) + struct.pack("!H", len(body)) + body


# @PORT@ is a plain listener, for the harness's readiness probe (it sends
# no header and would wait out the header timeout); no rule serves it.
PROXY = """\
pki "mx" cert "@CERTS@/mx.crt"
pki "mx" key "@CERTS@/mx.key"
table names { 198.51.100.25 = proxied.test.example }
listen on @HOST@ port @PORT@ hostname @HOSTNAME@
listen on @HOST@ port @PROXY@ hostname @HOSTNAME@ proxy-v2 hostnames <names> filter "stdio"
listen on @HOST@ port @SMTPS@ hostname @HOSTNAME@ proxy-v2 smtps pki "mx"
action "local" maildir "@MAILDIR@"@USER_OPT@
match from src { 192.0.2.0/24, 2001:db8::/32 } for domain "example.org" action "local"
match from local for domain "local.example" action "local"
"""


def start_proxy_daemon():
    """The daemon; d.proxy and d.smtps are its proxy-v2 ports."""
    d = h.Daemon("proxy", "")
    f = tf.Stdio(d)
    d.filter = f
    d.proxy, d.smtps = h.free_port(), h.free_port()
    d.write_config(f.line + PROXY.replace("@CERTS@", t.certs()).replace(
        "@PROXY@", str(d.proxy)).replace("@SMTPS@", str(d.smtps)))
    return d.start()


def test_proxy_v2():
    """PROXY v2 over IPv4 and IPv6 (with a TLV, in pieces): the proxied client is in
    EHLO, Received, logs, `from src` and link-connect; LOCAL keeps the real address"""
    d = start_proxy_daemon()
    try:
        with h.SMTP(d.host, d.proxy) as c:
            hdr = pv2(tlv=b"\x04\x00\x03abc")      # PP2_TYPE_NOOP
            c.send(hdr[:9])                          # the header may come in pieces
            c.send(hdr[9:])
            banner = c.reply()
            assert banner.code == 220 and banner.text.startswith("proxied.test.example "), \
                "banner for destination 198.51.100.25: %s" % banner
            r = c.expect("EHLO client.test", 250)
            assert "client.test [192.0.2.7]" in r.lines[0], r
            c.send_message(h.make_message("through the proxy"))
            c.expect("QUIT", 221)
        d.wait_delivered(1)
        rec, _rest = h.split_received(d.read_messages()[0])
        assert rec.startswith(b"Received: from client.test (<unknown> [192.0.2.7])"), rec
        assert b"by proxied.test.example (OpenSMTPD)" in rec, rec
        log = d.log_text()
        assert re.search(r"smtp proxy-v2 address=127\.0\.0\.1 source=192\.0\.2\.7"
                         r" destination=198\.51\.100\.25$", log, re.M), log
        m = re.search(r"^.*?([0-9a-f]{16}) smtp connected address=192\.0\.2\.7 host=<unknown>$",
                      log, re.M)
        assert m, log
        sid = m.group(1)
        h.wait_for(lambda: any(n == "link-connect" for _, n, _ in d.filter.session(sid)), 10,
                   what="link-connect of %s" % sid)
        conn = [x for k, n, x in d.filter.session(sid) if n == "link-connect"][0]
        assert conn[2:] == ["192.0.2.7:40000", "198.51.100.25:25"], conn

        with h.SMTP(d.host, d.proxy) as c:
            c.send(pv2(fam=0x21, src=("2001:db8::7", 1234), dst=("2001:db8::25", 25)))
            c.expect(None, 220)
            r = c.expect("EHLO client.test", 250)
            assert "[2001:db8::7]" in r.lines[0], r
            c.expect("MAIL FROM:<sender@client.test>", 250)
            c.expect("RCPT TO:<rcpt@example.org>", 250)
            c.expect("QUIT", 221)

        with h.SMTP(d.host, d.proxy) as c:   # LOCAL: a health check, the real address
            c.send(pv2(cmd=0, fam=0x00))
            c.expect(None, 220)
            r = c.expect("EHLO client.test", 250)
            assert "[127.0.0.1]" in r.lines[0], r
            c.expect("MAIL FROM:<sender@client.test>", 250)
            r = c.cmd("RCPT TO:<rcpt@example.org>")
            assert r.code == 550, "from 127.0.0.1, not 192.0.2.0/24: %s" % r
            c.expect("RCPT TO:<someone@local.example>", 250)
            c.expect("QUIT", 221)
        assert re.search(r"smtp proxy-v2 address=127\.0\.0\.1 command=LOCAL$", d.log_text(), re.M)
    finally:
        d.stop()


def test_proxy_v2_smtps():
    """SMTPS behind the proxy: the header, then the ClientHello in the same write"""
    d = start_proxy_daemon()
    try:
        sock = socket.create_connection((d.host, d.smtps), timeout=30 * h.SCALE)
        try:
            inc, out = ssl.MemoryBIO(), ssl.MemoryBIO()
            obj = t.client_ctx().wrap_bio(inc, out)
            try:
                obj.do_handshake()
            except ssl.SSLWantReadError:
                pass
            sock.sendall(pv2(src=("192.0.2.99", 5555)) + out.read())
            while True:
                data = sock.recv(65536)
                assert data, "closed during the handshake"
                inc.write(data)
                try:
                    obj.do_handshake()
                    break
                except ssl.SSLWantReadError:
                    sock.sendall(out.read())
            sock.sendall(out.read())
            buf = b""
            while b"\r\n" not in buf:
                try:
                    buf += obj.read(4096)
                except ssl.SSLWantReadError:
                    data = sock.recv(65536)
                    assert data, "closed before the banner"
                    inc.write(data)
            assert buf.startswith(b"220 "), buf
            obj.write(b"EHLO client.test\r\n")
            sock.sendall(out.read())
            buf = b""
            while not re.search(rb"^250 ", buf, re.M):
                try:
                    buf += obj.read(4096)
                except ssl.SSLWantReadError:
                    data = sock.recv(65536)
                    assert data, "closed before the EHLO reply"
                    inc.write(data)
            assert b"client.test [192.0.2.99]" in buf, buf
        finally:
            sock.close()
    finally:
        d.stop()


def test_proxy_v2_errors():
    """a malformed, unsupported or missing header: the connection closes without a
    banner, one log line each; the header timeout; the daemon keeps serving"""
    d = start_proxy_daemon()
    try:
        silent = h.SMTP(d.host, d.proxy)        # sends nothing: the timeout
        t0 = h.time.monotonic()
        cases = [
            (b"EHLO client.test\r\n", "not a PROXY protocol v2 header"),
            (b"PROXY TCP4 192.0.2.1 192.0.2.2 1 2\r\n", "not a PROXY protocol v2 header"),
            (pv2(version=1), "unsupported PROXY protocol version"),
            (pv2(cmd=5), "unknown PROXY command"),
            (pv2(fam=0x12), "unsupported address family"),
            (pv2(fam=0x00), "unsupported address family"),
            (SIG + b"\x21\x11\x00\x04" + b"\0" * 4, "address block too short"),
        ]
        for data, why in cases:
            since = d.log_size()
            with h.SMTP(d.host, d.proxy) as c:
                c.send(data)
                assert c.closed_by_peer(), "%r: still open" % data
                assert c.buf == b"", "%r: the server answered %r" % (data, c.buf)
            d.wait_log(r'smtp disconnected reason=proxy-error address=127\.0\.0\.1 '
                       r'error="%s' % re.escape(why), since=since)
        with h.SMTP(d.host, d.proxy) as c:       # still serving
            c.send(pv2())
            c.greet()
            c.expect("QUIT", 221)
        with silent:
            assert silent.closed_by_peer(20), "no header, still open after 20s"
            took = h.time.monotonic() - t0
            assert silent.buf == b"", silent.buf
        assert took >= 5, "closed after %.1fs: the header timeout is 10s" % took
        d.wait_log(r'smtp disconnected reason=proxy-error address=127\.0\.0\.1 '
                   r'error="no header in time"')
    finally:
        d.stop()


if __name__ == "__main__":
    h.run_checks([test_hostnames, test_tag_only_on_its_listener, test_proxy_v2,
                  test_proxy_v2_smtps, test_proxy_v2_errors])
