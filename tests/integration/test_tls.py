#!/usr/bin/env python3
"""TLS on inbound SMTP: STARTTLS (openssl s_client and smtplib), SMTPS,
certificates chosen by SNI, tls-require, client certificates with
tls-require verify, commands pipelined after STARTTLS, EHLO keywords, the
Received header, `match tls`, configuration errors, and (as root) that the
smtp role holds no privilege to read the key it serves with.

Certificates are made at run time with the openssl command: a CA, two
server certificates (mx.test.example, other.test.example), a client
certificate signed by the CA and a self-signed one."""

import atexit
import os
import pwd
import re
import shutil
import smtplib
import socket
import ssl
import subprocess
import sys
import tempfile

sys.path.insert(0, os.path.dirname(os.path.abspath(__file__)))
import harness as h  # noqa: E402

MX = "mx.test.example"
OTHER = "other.test.example"

CONFIG = """\
pki "mx" cert "@CERTS@/mx.crt"
pki "mx" key "@CERTS@/mx.key"
pki "other" cert "@CERTS@/other.crt"
pki "other" key "@CERTS@/other.key"
ca "testca" cert "@CERTS@/ca.crt"
listen on @HOST@ port @PORT@ hostname @HOSTNAME@ tls pki "mx" pki "other"
listen on @HOST@ port @SMTPS@ hostname @HOSTNAME@ smtps pki "mx"
listen on @HOST@ port @REQUIRE@ hostname @HOSTNAME@ tls-require pki "mx"
listen on @HOST@ port @VERIFY@ hostname @HOSTNAME@ tls-require verify pki "mx" ca "testca"
listen on @HOST@ port @PLAIN@ hostname @HOSTNAME@
action "local" maildir "@MAILDIR@"@USER_OPT@
match from any for domain "example.org" action "local"
match tls from any for domain "tls.example.org" action "local"
"""

RECEIVED_TLS = re.compile(
    r"with ESMTPS id ([0-9a-f]{8}) \((TLSv1\.[23]):([A-Za-z0-9_-]+):(\d+):(YES|NO)\)")

_certs = []


# ------------------------------------------------------------ certificates

def openssl(*args, cwd):
    p = subprocess.run(["openssl"] + list(args), cwd=cwd, stdout=subprocess.PIPE,
                       stderr=subprocess.STDOUT, timeout=60 * h.SCALE)
    if p.returncode != 0:
        raise AssertionError("openssl %s failed: %s" % (" ".join(args), p.stdout.decode()))


def make_key_and_csr(d, name, cn):
    openssl("req", "-new", "-newkey", "ec", "-pkeyopt", "ec_paramgen_curve:prime256v1",
            "-nodes", "-keyout", name + ".key", "-out", name + ".csr", "-subj", "/CN=" + cn,
            cwd=d)


def sign(d, name, ext):
    with open(os.path.join(d, name + ".ext"), "w") as f:
        f.write(ext + "\n")
    openssl("x509", "-req", "-in", name + ".csr", "-CA", "ca.crt", "-CAkey", "ca.key",
            "-CAcreateserial", "-days", "2", "-out", name + ".crt",
            "-extfile", name + ".ext", cwd=d)


def certs():
    """The directory of test certificates, made once per run.  Keys are
    0600 (root's, as root); the directory itself is world-searchable so
    only the key file's own mode keeps other users out."""
    if _certs:
        return _certs[0]
    d = tempfile.mkdtemp(prefix="msd-tls-certs-")
    os.chmod(d, 0o755)
    if os.environ.get("MSD_KEEP") != "1":
        atexit.register(shutil.rmtree, d, True)
    openssl("req", "-x509", "-newkey", "ec", "-pkeyopt", "ec_paramgen_curve:prime256v1",
            "-nodes", "-keyout", "ca.key", "-out", "ca.crt", "-days", "2",
            "-subj", "/CN=msd test CA", cwd=d)
    for name, cn in (("mx", MX), ("other", OTHER)):
        make_key_and_csr(d, name, cn)
        sign(d, name, "subjectAltName=DNS:%s\nextendedKeyUsage=serverAuth" % cn)
    make_key_and_csr(d, "client", "client.test")
    sign(d, "client", "extendedKeyUsage=clientAuth")
    openssl("req", "-x509", "-newkey", "ec", "-pkeyopt", "ec_paramgen_curve:prime256v1",
            "-nodes", "-keyout", "selfsigned.key", "-out", "selfsigned.crt", "-days", "2",
            "-subj", "/CN=client.test", "-addext", "extendedKeyUsage=clientAuth", cwd=d)
    for f in os.listdir(d):
        os.chmod(os.path.join(d, f), 0o600 if f.endswith(".key") else 0o644)
    _certs.append(d)
    return d


def cert(name):
    return os.path.join(certs(), name)


# ------------------------------------------------------------------ daemon

def daemon(name):
    ports = {k: h.free_port() for k in ("SMTPS", "REQUIRE", "VERIFY", "PLAIN")}
    text = CONFIG.replace("@CERTS@", certs())
    for k, v in ports.items():
        text = text.replace("@%s@" % k, str(v))
    d = h.Daemon(name, text)
    d.ports = ports
    return d.start()


def client_ctx(server_name_check=False, client=None):
    """A client context trusting the test CA; optionally presenting a
    certificate (a file base name in the certificate directory)."""
    ctx = ssl.create_default_context(cafile=cert("ca.crt"))
    ctx.check_hostname = server_name_check
    if client:
        ctx.load_cert_chain(cert(client + ".crt"), cert(client + ".key"))
    return ctx


def connect(d, port=None):
    return h.SMTP(d.host, port or d.port, timeout=30)


def starttls(c, ctx=None, server_hostname=None):
    """STARTTLS on the harness client; its socket becomes the TLS one."""
    r = c.cmd("STARTTLS")
    assert str(r) == "220 2.0.0 Ready to start TLS", "STARTTLS -> %s" % r
    assert c.buf == b"", "bytes after the 220: %r" % c.buf
    c.sock = (ctx or client_ctx()).wrap_socket(c.sock, server_hostname=server_hostname)
    return c.sock


def ehlo_keywords(r):
    return [l.split()[0].upper() for l in r.lines[1:]]


def delivered_received(d):
    """(the Received header, the whole file) of the one delivered message."""
    d.wait_delivered(1)
    data = d.read_messages()
    assert len(data) == 1, "%d messages delivered, expected 1" % len(data)
    rec, _rest = h.split_received(data[0])
    return rec.decode(), data[0]


def check_received(rec, version, cipher, verified="NO", helo="client.test"):
    m = RECEIVED_TLS.search(rec.replace("\n", " ").replace("\t", ""))
    assert m, "Received header does not name TLS as OpenSMTPD does " \
        "('with ESMTPS id X (version:cipher:bits:verified)'):\n%s" % rec
    assert m.group(2) == version and m.group(3) == cipher, \
        "Received names %s:%s, the client negotiated %s:%s" % (m.group(2), m.group(3), version, cipher)
    assert int(m.group(4)) >= 128, "cipher bits %s" % m.group(4)
    assert m.group(5) == verified, "verified=%s, expected %s: %s" % (m.group(5), verified, rec)
    assert rec.startswith("Received: from %s " % helo), rec


# ------------------------------------------------------------------ checks

def test_starttls_openssl_s_client():
    """openssl s_client -starttls smtp delivers; Received names the TLS version and cipher"""
    d = daemon("tls-sclient")
    script = ("EHLO client.test\nMAIL FROM:<sender@client.test>\nRCPT TO:<rcpt@example.org>\n"
              "DATA\nSubject: over s_client\n\nhello over TLS\n.\nQUIT\n")
    p = subprocess.run(["openssl", "s_client", "-starttls", "smtp", "-connect",
                        "127.0.0.1:%d" % d.port, "-CAfile", cert("ca.crt"),
                        "-verify_return_error", "-quiet", "-crlf"],
                       input=script.encode(), stdout=subprocess.PIPE, stderr=subprocess.PIPE,
                       timeout=60 * h.SCALE)
    out = p.stdout.decode(errors="replace")
    assert re.search(r"^250 2\.0\.0 [0-9a-f]{8} Message accepted for delivery\r?$", out, re.M), \
        "s_client session:\n%s\n%s" % (out, p.stderr.decode(errors="replace"))
    assert "221 2.0.0 Bye" in out, out
    assert "STARTTLS" not in out, "EHLO over TLS offers STARTTLS again:\n%s" % out
    rec, _ = delivered_received(d)
    m = RECEIVED_TLS.search(rec.replace("\n", " ").replace("\t", ""))
    assert m and m.group(5) == "NO", "no TLS in Received:\n%s" % rec
    d.wait_log(r"smtp tls ciphers=%s:%s:%s$" % (m.group(2), m.group(3), m.group(4)))


def test_starttls_smtplib():
    """smtplib starttls(): EHLO offers STARTTLS before TLS, not after; delivery; Received"""
    d = daemon("tls-smtplib")
    s = smtplib.SMTP(d.host, d.port, timeout=30 * h.SCALE)
    try:
        code, _ = s.ehlo("client.test")
        assert code == 250 and s.has_extn("starttls"), "EHLO before TLS: %r" % s.esmtp_features
        code, text = s.starttls(context=client_ctx())
        assert (code, text) == (220, b"2.0.0 Ready to start TLS"), (code, text)
        version, cipher = s.sock.version(), s.sock.cipher()[0]
        code, _ = s.ehlo("client.test")
        assert code == 250 and not s.has_extn("starttls"), \
            "EHLO over TLS offers STARTTLS: %r" % s.esmtp_features
        s.sendmail("sender@client.test", ["rcpt@example.org"],
                   h.make_message("smtplib starttls").replace(b"\n", b"\r\n"))
        s.quit()
    finally:
        s.close()
    rec, _ = delivered_received(d)
    check_received(rec, version, cipher)


def test_smtps():
    """SMTPS (smtplib.SMTP_SSL) on a second port: banner over TLS, no STARTTLS, delivery"""
    d = daemon("tls-smtps")
    s = smtplib.SMTP_SSL(d.host, d.ports["SMTPS"], context=client_ctx(), timeout=30 * h.SCALE)
    try:
        version, cipher = s.sock.version(), s.sock.cipher()[0]
        code, _ = s.ehlo("client.test")
        assert code == 250 and not s.has_extn("starttls"), \
            "EHLO on smtps offers STARTTLS: %r" % s.esmtp_features
        code, msg = s.docmd("STARTTLS")
        assert code == 503, "STARTTLS on smtps -> %d %r" % (code, msg)
        s.sendmail("sender@client.test", ["rcpt@example.org"],
                   h.make_message("smtps").replace(b"\n", b"\r\n"))
        s.quit()
    finally:
        s.close()
    assert version in ("TLSv1.2", "TLSv1.3"), version
    rec, _ = delivered_received(d)
    check_received(rec, version, cipher)


def peer_names(sock):
    c = sock.getpeercert()
    return sorted(v for k, v in c.get("subjectAltName", ()) if k == "DNS")


def test_sni():
    """two pki on one listener: the certificate for the SNI name asked; the first without SNI"""
    d = daemon("tls-sni")
    for name in (OTHER, MX, OTHER):
        with connect(d) as c:
            c.greet()
            sock = starttls(c, client_ctx(server_name_check=True), server_hostname=name)
            assert peer_names(sock) == [name], \
                "asked for %s (SNI), got a certificate for %s" % (name, peer_names(sock))
            c.expect("EHLO client.test", 250)
            c.expect("QUIT", 221)
    with connect(d) as c:       # an address: no SNI, the default pki
        c.greet()
        sock = starttls(c, client_ctx())
        assert peer_names(sock) == [MX], "without SNI: %s" % peer_names(sock)
        c.expect("QUIT", 221)


def test_tls_require():
    """tls-require: MAIL before STARTTLS gets 530; after STARTTLS the message goes through"""
    d = daemon("tls-require")
    with connect(d, d.ports["REQUIRE"]) as c:
        r = c.greet()
        assert "STARTTLS" in ehlo_keywords(r), "tls-require listener does not offer STARTTLS: %s" % r
        r = c.cmd("MAIL FROM:<sender@client.test>")
        assert str(r) == "530 5.5.1 Invalid command: Must issue a STARTTLS command first", \
            "MAIL before STARTTLS -> %s" % r
        c.expect("RCPT TO:<rcpt@example.org>", 503)
        starttls(c)
        version, cipher = c.sock.version(), c.sock.cipher()[0]
        c.expect("EHLO client.test", 250)
        c.send_message(h.make_message("after STARTTLS"))
        c.expect("QUIT", 221)
    rec, _ = delivered_received(d)
    check_received(rec, version, cipher)


def handshake_refused(d, client):
    """STARTTLS on the verify listener presenting `client` (None: no
    certificate): returns what the client saw.  Under TLS 1.3 the client
    finishes its side before the server has checked its certificate, so
    the refusal (an alert, then the close) may only show on the first
    read; no SMTP reply may ever come over that TLS session."""
    c = connect(d, d.ports["VERIFY"])
    try:
        c.greet()
        try:
            starttls(c, client_ctx(client=client))
            r = c.cmd("EHLO client.test")
        except (ssl.SSLError, EOFError, ConnectionError) as e:
            return "%s: %s" % (type(e).__name__, e)
        raise AssertionError("a client with %s got an SMTP reply over TLS: %s"
                             % (client or "no certificate", r))
    finally:
        c.close()


def test_tls_require_verify():
    """tls-require verify: no or a self-signed client certificate is refused at the handshake; one signed by the ca delivers"""
    d = daemon("tls-verify")
    with connect(d, d.ports["VERIFY"]) as c:
        c.greet()
        r = c.cmd("MAIL FROM:<sender@client.test>")
        assert r.code == 530, "MAIL before STARTTLS on a verify listener -> %s" % r
    since = d.log_size()
    seen = handshake_refused(d, None)
    assert re.search(r"certificate", seen, re.I), "no certificate: %s" % seen
    d.wait_log(r"smtp disconnected reason=tls-error address=127\.0\.0\.1 "
               r"error=\"handshake failed: [^\"]+\"$", since=since)
    since = d.log_size()
    handshake_refused(d, "selfsigned")
    d.wait_log(r"smtp disconnected reason=tls-error address=127\.0\.0\.1 "
               r"error=\"handshake failed: [^\"]+\"$", since=since)
    with connect(d, d.ports["VERIFY"]) as c:
        c.greet()
        starttls(c, client_ctx(client="client"))
        version, cipher = c.sock.version(), c.sock.cipher()[0]
        c.expect("EHLO client.test", 250)
        c.send_message(h.make_message("client certificate"))
        c.expect("QUIT", 221)
    rec, _ = delivered_received(d)
    check_received(rec, version, cipher, verified="YES")
    d.wait_log(r"smtp cert-check result=\"verified\" fingerprint=\"SHA256:[0-9a-f]{64}\"$")


def test_pipelined_after_starttls():
    """commands sent in clear in the same write as STARTTLS are dropped, never run over TLS"""
    d = daemon("tls-inject")
    with connect(d) as c:
        c.greet()
        since = d.log_size()
        c.send(b"STARTTLS\r\nEHLO injected.example\r\nMAIL FROM:<injected@evil.example>\r\n")
        r = c.reply()
        assert str(r) == "220 2.0.0 Ready to start TLS", "STARTTLS -> %s" % r
        assert c.buf == b"", "replies to the injected commands came in clear: %r" % c.buf
        c.sock = client_ctx().wrap_socket(c.sock)
        version, cipher = c.sock.version(), c.sock.cipher()[0]
        r = c.cmd("EHLO client.test")
        assert r.code == 250 and r.lines[0].startswith("%s Hello client.test " % d.hostname), \
            "first reply over TLS is not the answer to our EHLO (the injected EHLO ran?): %s" % r
        r = c.cmd("MAIL FROM:<sender@client.test>")
        assert str(r) == "250 2.0.0 Ok", "MAIL over TLS -> %s (the injected MAIL ran?)" % r
        c.expect("RCPT TO:<rcpt@example.org>", 250)
        c.expect("DATA", 354)
        c.send(h.to_wire(h.make_message("over TLS only")))
        r = c.reply()
        assert r.code == 250, "end of DATA -> %s" % r
        c.expect("QUIT", 221)
    rec, data = delivered_received(d)
    check_received(rec, version, cipher)
    assert b"injected" not in data and b"evil" not in data, \
        "injected text delivered: %r" % data[:400]
    d.wait_log(r"smtp starttls address=127\.0\.0\.1 discarded=%d " %
               len(b"EHLO injected.example\r\nMAIL FROM:<injected@evil.example>\r\n"), since=since)


def test_ehlo_and_starttls_replies():
    """STARTTLS offered only on tls listeners and only before TLS; 501 with arguments, 503 out of place"""
    d = daemon("tls-ehlo")
    with connect(d, d.ports["PLAIN"]) as c:
        r = c.greet()
        assert "STARTTLS" not in ehlo_keywords(r), "plain listener offers STARTTLS: %s" % r
        r = c.cmd("STARTTLS")
        assert str(r) == "503 5.5.1 Invalid command: Command not supported", "plain STARTTLS -> %s" % r
    with connect(d) as c:
        c.expect(None, 220)
        r = c.cmd("STARTTLS")
        assert str(r) == "503 5.5.1 Invalid command: Command not allowed at this point.", \
            "STARTTLS before EHLO -> %s" % r
        r = c.cmd("EHLO client.test")
        kw = ehlo_keywords(r)
        assert kw[-1] == "HELP" and "STARTTLS" in kw, "tls listener EHLO: %s" % r
        r = c.cmd("STARTTLS now")
        assert str(r) == "501 5.5.4 Invalid command arguments: No parameters allowed", \
            "STARTTLS with an argument -> %s" % r
        c.expect("MAIL FROM:<sender@client.test>", 250)
        r = c.cmd("STARTTLS")
        assert r.code == 503, "STARTTLS inside a transaction -> %s" % r
        c.expect("RSET", 250)
        starttls(c)
        r = c.cmd("MAIL FROM:<sender@client.test>")
        assert r.code == 503, "MAIL over TLS without a new EHLO -> %s (RFC 3207: state reset)" % r
        r = c.cmd("EHLO client.test")
        assert r.code == 250 and "STARTTLS" not in ehlo_keywords(r), "EHLO over TLS: %s" % r
        r = c.cmd("STARTTLS")
        assert str(r) == "503 5.5.1 Invalid command: Channel already secured", \
            "STARTTLS over TLS -> %s" % r
        c.expect("QUIT", 221)


def test_big_pipelined_message():
    """3 MB sent with MAIL, RCPT and DATA in one write over TLS: the input piles up while RCPT waits, then all of it arrives intact"""
    d = daemon("tls-big")
    line = b"0123456789abcdefghijklmnopqrstuvwxyz" * 2 + b"\n"
    body = b"".join(b"%07d " % i + line for i in range(3 * 1024 * 1024 // len(line)))
    data = h.make_message("big over TLS", body=body)
    with connect(d) as c:
        c.greet()
        starttls(c)
        c.expect("EHLO client.test", 250)
        c.send(b"MAIL FROM:<sender@client.test>\r\nRCPT TO:<rcpt@example.org>\r\nDATA\r\n"
               + h.to_wire(data))
        for code in (250, 250, 354):
            c.expect(None, code)
        r = c.reply()
        assert r.code == 250 and h.MSGID_250.match(r.text), "end of DATA -> %s" % r
        c.expect("QUIT", 221)
    d.wait_delivered(1)
    got = h.split_received(d.read_messages()[0])[1]
    assert got == data, "delivered %d bytes, sent %d; first difference at %d" % (
        len(got), len(data), next((i for i, (a, b) in enumerate(zip(got, data)) if a != b),
                                  min(len(got), len(data))))


def test_match_tls():
    """`match tls` sees the session's TLS: refused in clear, accepted after STARTTLS"""
    d = daemon("tls-match")
    with connect(d) as c:
        c.greet()
        c.expect("MAIL FROM:<sender@client.test>", 250)
        r = c.cmd("RCPT TO:<someone@tls.example.org>")
        assert r.code == 550, "`match tls` matched a clear-text session: %s" % r
        c.expect("RSET", 250)
        starttls(c)
        c.expect("EHLO client.test", 250)
        c.expect("MAIL FROM:<sender@client.test>", 250)
        c.expect("RCPT TO:<someone@tls.example.org>", 250)
        c.expect("QUIT", 221)


PARAMS_CONFIG = """\
smtp ciphers "ECDHE-ECDSA-AES256-GCM-SHA384"
pki "mx" cert "@CERTS@/mx.crt"
pki "mx" key "@CERTS@/mx.key"
listen on @HOST@ port @PORT@ hostname @HOSTNAME@ tls pki "mx"
listen on @HOST@ port @TLS12@ hostname @HOSTNAME@ tls pki "mx" protocols "tlsv1.2" ciphers "ECDHE-ECDSA-AES128-GCM-SHA256"
action "local" maildir "@MAILDIR@"@USER_OPT@
match from any for domain "example.org" action "local"
"""


def tls_session(d, port, ctx):
    """STARTTLS with ctx; (version, cipher) or the exception's text."""
    with connect(d, port) as c:
        c.greet()
        try:
            starttls(c, ctx)
            c.expect("EHLO client.test", 250)
        except (ssl.SSLError, EOFError, ConnectionError) as e:
            return "refused: %s" % e
        got = (c.sock.version(), c.sock.cipher()[0])
        c.expect("QUIT", 221)
        return got


def test_protocols_and_ciphers():
    """protocols and ciphers per listener, smtp ciphers as their default; TLSv1.1 refused by default"""
    tls12 = h.free_port()
    d = h.Daemon("tls-params", PARAMS_CONFIG.replace("@CERTS@", certs())
                 .replace("@TLS12@", str(tls12))).start()
    ctx12 = client_ctx()
    ctx12.maximum_version = ssl.TLSVersion.TLSv1_2
    got = tls_session(d, d.port, ctx12)
    assert got == ("TLSv1.2", "ECDHE-ECDSA-AES256-GCM-SHA384"), \
        "TLSv1.2 client on the default listener (smtp ciphers): %s" % (got,)
    got = tls_session(d, d.port, client_ctx())
    assert got[0] == "TLSv1.3", "default listener, default client: %s" % (got,)
    got = tls_session(d, tls12, client_ctx())
    assert got == ("TLSv1.2", "ECDHE-ECDSA-AES128-GCM-SHA256"), \
        "listener with protocols tlsv1.2 and its own ciphers: %s" % (got,)
    ctx13 = client_ctx()
    ctx13.minimum_version = ssl.TLSVersion.TLSv1_3
    since = d.log_size()
    got = tls_session(d, tls12, ctx13)
    assert isinstance(got, str) and got.startswith("refused"), \
        "TLSv1.3-only client on a tlsv1.2 listener: %s" % (got,)
    d.wait_log(r"reason=tls-error address=127\.0\.0\.1 error=\"handshake failed: "
               r"[^\"]*unsupported protocol\"$", since=since)
    since = d.log_size()
    p = subprocess.run(["openssl", "s_client", "-starttls", "smtp", "-connect",
                        "127.0.0.1:%d" % d.port, "-tls1_1", "-cipher", "DEFAULT:@SECLEVEL=0"],
                       input=b"QUIT\n", stdout=subprocess.PIPE, stderr=subprocess.STDOUT,
                       timeout=60 * h.SCALE)
    assert p.returncode != 0, "a TLSv1.1 handshake succeeded:\n%s" % p.stdout.decode()
    d.wait_log(r"reason=tls-error address=127\.0\.0\.1 error=\"handshake failed: "
               r"[^\"]*unsupported protocol\"$", since=since)


def start_fails(d, text):
    """smtpd -n and smtpd -d on text: both must fail; returns their output."""
    rc, out, path = d.check(text)
    assert rc != 0 and "configuration OK" not in out, "smtpd -n accepted:\n%s\n%s" % (text, out)
    p = subprocess.run([h.SMTPD, "-d", "-f", path, "-s", os.path.join(d.tmp, "spool-x")],
                       stdin=subprocess.DEVNULL, stdout=subprocess.PIPE,
                       stderr=subprocess.STDOUT, env=d.env(), timeout=30 * h.SCALE)
    assert p.returncode == 1, "smtpd -d started (or crashed: %d) on:\n%s\n%s" % (
        p.returncode, text, p.stdout.decode(errors="replace"))
    return path, out, p.stdout.decode(errors="replace")


def test_config_errors():
    """missing key file, pki without key, tls without pki, key others can read, wrong key: no start, file:line"""
    d = h.Daemon("tls-conf")       # never started: a home for the files
    base = 'pki "mx" cert "%s"\n' % cert("mx.crt")
    listen = "listen on 127.0.0.1 port %d tls pki \"mx\"\n" % h.free_port()
    loose = os.path.join(d.tmp, "loose.key")
    shutil.copy(cert("mx.key"), loose)
    os.chmod(loose, 0o644)
    cases = [
        (base + 'pki "mx" key "%s/nonexistent.key"\n' % certs() + listen, 1,
         r'pki "mx": cannot read the key file "%s/nonexistent\.key": No such file or directory'
         % re.escape(certs())),
        (base + listen, 1, r'pki "mx" has no key'),
        ("listen on 127.0.0.1 port %d tls\n" % h.free_port(), 1,
         r'listen on "127\.0\.0\.1": tls needs a certificate'),
        ("listen on 127.0.0.1 port %d smtps\n" % h.free_port(), 1,
         r'listen on "127\.0\.0\.1": smtps needs a certificate'),
        (base + 'pki "mx" key "%s"\n' % loose + listen, 1,
         r'pki "mx": cannot read the key file "%s": insecure owner or permissions'
         % re.escape(loose)),
        (base + 'pki "mx" key "%s"\n' % cert("other.key") + listen, 1,
         r'pki "mx": .*: does the key "%s" belong to the certificate "%s"\?'
         % (re.escape(cert("other.key")), re.escape(cert("mx.crt")))),
        (base + 'pki "mx" key "%s"\n' % cert("mx.key") +
         "listen on 127.0.0.1 port %d tls pki \"mx\" protocols \"tlsv9\"\n" % h.free_port(), 3,
         r'listen on "127\.0\.0\.1": invalid protocols "tlsv9"'),
    ]
    for text, line, rx in cases:
        path, check_out, start_out = start_fails(d, text)
        want = re.compile(r"%s:%d: %s" % (re.escape(path), line, rx))
        assert want.search(check_out), "smtpd -n: expected /%s/ in:\n%s" % (want.pattern, check_out)
        assert want.search(start_out), "smtpd -d: expected /%s/ in:\n%s" % (want.pattern, start_out)


def key_copy(d, name, mode, group=None):
    path = os.path.join(d.tmp, name)
    shutil.copy(cert("mx.key"), path)
    if group is not None:
        os.chown(path, -1, group)
    os.chmod(path, mode)
    return path


def test_key_modes():
    """a key file may be group-readable (0640, Debian's ssl-cert group setup); one
    others can read or the group can write is refused with file:line"""
    d = h.Daemon("tls-keymode")    # never started: a home for the files
    group = None
    if h.IS_ROOT:
        import grp
        try:
            group = grp.getgrnam("ssl-cert").gr_gid
        except KeyError:
            group = grp.getgrnam("nogroup").gr_gid
    base = 'pki "mx" cert "%s"\n' % cert("mx.crt")
    listen = "listen on 127.0.0.1 port %d tls pki \"mx\"\n" % h.free_port()
    shared = key_copy(d, "shared.key", 0o640, group)
    rc, out, _path = d.check(base + 'pki "mx" key "%s"\n' % shared + listen)
    assert rc == 0 and "configuration OK" in out, "0640 key refused:\n%s" % out
    for name, mode in (("world.key", 0o604), ("groupw.key", 0o660), ("all.key", 0o644)):
        key = key_copy(d, name, mode, group)
        path, check_out, start_out = start_fails(d, base + 'pki "mx" key "%s"\n' % key + listen)
        want = re.compile(r'%s:1: pki "mx": cannot read the key file "%s": insecure owner or'
                          r' permissions \(uid \d+, mode 0%o\)' % (re.escape(path), re.escape(key),
                                                                     mode))
        assert want.search(check_out), "mode %o: expected /%s/ in:\n%s" % (
            mode, want.pattern, check_out)
        assert want.search(start_out), "mode %o: smtpd -d:\n%s" % (mode, start_out)


def test_smtp_role_cannot_read_key():
    """as root: the smtp role serves TLS as a non-root user, chrooted, without the key file open, and cannot open it"""
    if not h.IS_ROOT:
        print("note: not root; the daemon runs as the invoking user, nothing to check")
        return
    d = daemon("tls-priv")
    key = cert("mx.key")
    st = os.stat(key)
    assert st.st_uid == 0 and (st.st_mode & 0o777) == 0o600, \
        "test key %s: uid %d mode %o (expected root, 0600)" % (key, st.st_uid, st.st_mode & 0o777)
    with connect(d) as c:     # a TLS session is being served right now
        c.greet()
        starttls(c)
        c.expect("EHLO client.test", 250)
        pid = h.wait_for(lambda: d.role_pids().get("smtp"), 10,
                         what="the smtp role (children: %s)" % d.describe_children())
        with open("/proc/%d/status" % pid) as f:
            status = f.read()
        uids = [int(x) for x in re.search(r"^Uid:\s+(.*)$", status, re.M).group(1).split()]
        gids = [int(x) for x in re.search(r"^Gid:\s+(.*)$", status, re.M).group(1).split()]
        assert all(u != 0 for u in uids) and all(g != 0 for g in gids), \
            "smtp role %d runs with uid/gid %s/%s" % (pid, uids, gids)
        root = os.readlink("/proc/%d/root" % pid)
        assert root != "/", "smtp role %d is not chrooted" % pid
        fds = []
        for fd in os.listdir("/proc/%d/fd" % pid):
            try:
                fds.append(os.readlink("/proc/%d/fd/%s" % (pid, fd)))
            except OSError:
                pass
        assert not [f for f in fds if f.endswith(".key") or certs() in f], \
            "smtp role holds certificate files open: %s" % fds
        user = pwd.getpwuid(uids[0]).pw_name
        p = subprocess.run(["setpriv", "--reuid=%d" % uids[0], "--regid=%d" % gids[0],
                            "--clear-groups", "cat", key], stdout=subprocess.PIPE,
                           stderr=subprocess.PIPE, timeout=30)
        assert p.returncode != 0 and not p.stdout, \
            "user %s (the smtp role's) can read %s" % (user, key)
        c.expect("QUIT", 221)


def test_handshake_garbage():
    """garbage instead of a ClientHello on smtps: one tls-error line; the daemon keeps serving"""
    d = daemon("tls-garbage")
    since = d.log_size()
    s = socket.create_connection((d.host, d.ports["SMTPS"]), timeout=30 * h.SCALE)
    try:
        s.sendall(b"EHLO this is not TLS\r\n")
        s.settimeout(10 * h.SCALE)
        try:
            while s.recv(4096):
                pass
        except (ConnectionError, socket.timeout):
            pass
    finally:
        s.close()
    d.wait_log(r"smtp disconnected reason=tls-error address=127\.0\.0\.1 "
               r"error=\"handshake failed: [^\"]+\"$", since=since)
    s = smtplib.SMTP_SSL(d.host, d.ports["SMTPS"], context=client_ctx(), timeout=30 * h.SCALE)
    try:
        assert s.noop()[0] == 250
        s.quit()
    finally:
        s.close()


def bio_tls(sock, ctx):
    """A TLS client over sock driven through memory BIOs, so the test
    decides which bytes go out in which write: (SSLObject, flush) where
    flush() returns the ciphertext produced so far."""
    inc, out = ssl.MemoryBIO(), ssl.MemoryBIO()
    obj = ctx.wrap_bio(inc, out)
    while True:
        try:
            obj.do_handshake()
            break
        except ssl.SSLWantReadError:
            sock.sendall(out.read())
            data = sock.recv(65536)
            if not data:
                raise AssertionError("connection closed during the handshake")
            inc.write(data)
    sock.sendall(out.read())
    return obj, out.read


def test_close_notify_then_bytes():
    """close_notify and more bytes in one write: the session ends, the smtp role keeps serving"""
    d = daemon("tls-notify")
    with connect(d) as c:
        c.greet()
        r = c.cmd("STARTTLS")
        assert r.code == 220, "STARTTLS -> %s" % r
        obj, flush = bio_tls(c.sock, client_ctx())
        obj.write(b"NOOP\r\n")
        try:
            obj.unwrap()            # our close_notify, without waiting for theirs
        except ssl.SSLWantReadError:
            pass
        c.sock.sendall(flush() + b"trailing bytes after close_notify\r\n" * 100)
        assert c.closed_by_peer(), "the server kept the session open after close_notify"
    # A spinning or dead smtp role would not answer this one.
    with connect(d) as c:
        c.greet()
        c.expect("QUIT", 221)
    d.wait_log(r"smtp disconnected reason=disconnected$")


if __name__ == "__main__":
    h.run_checks([
        test_starttls_openssl_s_client,
        test_starttls_smtplib,
        test_smtps,
        test_sni,
        test_tls_require,
        test_tls_require_verify,
        test_pipelined_after_starttls,
        test_ehlo_and_starttls_replies,
        test_big_pipelined_message,
        test_match_tls,
        test_protocols_and_ciphers,
        test_config_errors,
        test_key_modes,
        test_smtp_role_cannot_read_key,
        test_handshake_garbage,
        test_close_notify_then_bytes,
    ])
