#!/usr/bin/env python3
"""Outbound relay: smarthosts (smtp://, smtp+tls:// with AUTH from a
table) and MX delivery through a DNS server the test starts on loopback
(dnsmasq), retries, bounces with the remote error, per-recipient results,
and connection reuse.  The next hops are second instances of the daemon
(real delivery into their Maildir) or, for scripted replies, a small SMTP
server in this file.  Everything runs in the test's own network namespace,
so port 25 on 127.0.0.2/127.0.0.3 is ours."""

import os
import re
import socket
import subprocess
import sys
import threading

sys.path.insert(0, os.path.dirname(os.path.abspath(__file__)))
import harness as h  # noqa: E402
import test_tls  # noqa: E402

SMTPCTL = os.path.join(h.BUILDDIR, "smtpctl")

RELAY_CONFIG = """\
listen on @HOST@ port @PORT@ hostname relay.test.example
action "local" maildir "@MAILDIR@"@USER_OPT@
match from any for domain "example.org" action "local"
"""

SINK_CONFIG = """\
listen on @HOST@ port @PORT@ hostname @HOSTNAME@
action "local" maildir "@MAILDIR@"@USER_OPT@
match from any for domain "example.org" action "local"
match from any for domain "example.test" action "local"
"""


# ------------------------------------------------------------------ peers

class DNS:
    """dnsmasq on 127.0.0.1, authoritative for .test; the daemons started
    after it resolve through it (MODSMTPD_RESOLVER)."""

    def __init__(self, *records):
        self.port = h.free_port()
        args = ["dnsmasq", "--no-daemon", "--conf-file=/dev/null", "--no-resolv",
                "--no-hosts", "--listen-address=127.0.0.1", "--bind-interfaces",
                "--port=%d" % self.port, "--user=root", "--pid-file=",
                "--local=/test/"] + list(records)
        self.proc = subprocess.Popen(args, stdout=subprocess.DEVNULL,
                                     stderr=subprocess.DEVNULL)
        os.environ["MODSMTPD_RESOLVER"] = "127.0.0.1:%d" % self.port
        h.wait_for(self.ready, 10, what="dnsmasq answering on port %d" % self.port)

    def ready(self):
        s = socket.socket(socket.AF_INET, socket.SOCK_DGRAM)
        s.settimeout(0.2)
        try:
            s.sendto(b"\x12\x34\x01\x00\x00\x01\x00\x00\x00\x00\x00\x00"
                     b"\x04test\x00\x00\x01\x00\x01", ("127.0.0.1", self.port))
            return s.recv(512)
        except OSError:
            return None
        finally:
            s.close()

    def stop(self):
        self.proc.kill()
        self.proc.wait()
        os.environ.pop("MODSMTPD_RESOLVER", None)


class ScriptedServer:
    """A plain SMTP server: RCPT answers come from replies[localpart]
    (default 250); counts connections, keeps what DATA received and each
    client's address with the name it gave in EHLO/HELO."""

    def __init__(self, replies=None, host="127.0.0.1", port=None, pipelining=True):
        self.replies = replies or {}
        self.pipelining = pipelining
        self.sock = socket.socket(socket.AF_INET6 if ":" in host else socket.AF_INET)
        self.sock.setsockopt(socket.SOL_SOCKET, socket.SO_REUSEADDR, 1)
        self.sock.bind((host, port or h.free_port(host)))
        self.port = self.sock.getsockname()[1]
        self.sock.listen(64)
        self.connections = 0
        self.messages = []          # (mail from, [rcpts], data)
        self.greetings = []         # (client address, EHLO/HELO name)
        self.lock = threading.Lock()
        threading.Thread(target=self.serve, daemon=True).start()

    def serve(self):
        while True:
            try:
                c, _ = self.sock.accept()
            except OSError:
                return
            with self.lock:
                self.connections += 1
            threading.Thread(target=self.session, args=(c,), daemon=True).start()

    def session(self, c):
        f = c.makefile("rb")
        out = lambda s: c.sendall(s.encode() + b"\r\n")  # noqa: E731
        out("220 scripted ESMTP")
        mail, rcpts = None, []
        try:
            for raw in f:
                line = raw.decode(errors="replace").rstrip("\r\n")
                cmd = line[:4].upper()
                if cmd in ("EHLO", "HELO"):
                    with self.lock:
                        self.greetings.append((c.getpeername()[0], line[5:].strip()))
                if cmd == "HELO":
                    out("250 scripted")
                elif cmd == "EHLO":
                    out("250-scripted" + ("\r\n250-PIPELINING" if self.pipelining else "")
                        + "\r\n250 8BITMIME")
                elif cmd == "MAIL":
                    mail, rcpts = line, []
                    out("250 2.0.0 sender ok")
                elif cmd == "RCPT":
                    local = re.search(r"<([^@>]*)@", line).group(1)
                    code = self.replies.get(local, "250 2.1.5 ok")
                    if code.startswith("250"):
                        rcpts.append(line)
                    out(code)
                elif cmd == "DATA":
                    if not rcpts:
                        out("554 5.5.1 no valid recipients")
                        continue
                    out("354 go ahead")
                    data = b""
                    for raw in f:
                        if raw == b".\r\n":
                            break
                        data += raw
                    with self.lock:
                        self.messages.append((mail, rcpts, data))
                    out("250 2.0.0 queued as scripted")
                elif cmd == "RSET":
                    mail, rcpts = None, []
                    out("250 2.0.0 ok")
                elif cmd == "QUIT":
                    out("221 2.0.0 bye")
                    break
                else:
                    out("502 5.5.2 unknown")
        except OSError:
            pass
        c.close()

    def close(self):
        # shutdown wakes the thread blocked in accept(); close alone
        # would leave the port bound until that call returns.
        try:
            self.sock.shutdown(socket.SHUT_RDWR)
        except OSError:
            pass
        self.sock.close()


# ---------------------------------------------------------------- helpers

def send(d, rcpts, subject="relay test", sender="alice@example.org", body="Hello.\n"):
    msg = h.make_message(subject, frm=sender, to=rcpts[0], body=body)
    with d.connect() as c:
        c.greet()
        c.send_message(msg, mail_from=sender, rcpts=rcpts)
    return msg


def body_of(data):
    return data.split(b"\n\n", 1)[1]


def relay(name, action, extra=""):
    text = RELAY_CONFIG + extra + action + \
        'match from any for domain "example.test" action "out"\n' \
        'match from any for domain "other.test" action "out"\n' \
        'match from any for domain "nullmx.test" action "out"\n' \
        'match from any for domain "backup.test" action "out"\n'
    return h.Daemon(name, text).start()


def connections(d):
    return len(re.findall(r" smtp connected address=", d.log_text()))


# ----------------------------------------------------------------- checks

def test_smarthost_plain():
    """smtp:// smarthost: delivered intact at the next hop, both recipients
    in one transaction, one connection; log lines in OpenSMTPD's shape"""
    sink = h.Daemon("sink", SINK_CONFIG, hostname="sink.test.example").start()
    r = relay("relay", 'action "out" relay host "smtp://127.0.0.1:%d"\n' % sink.port)
    body = "Line one.\n.leading dot\n..two dots\nlast line without newline"
    send(r, ["bob@example.test", "carol@example.test"], body=body)
    got = sink.wait_delivered(2)
    for p in got:
        data = h._read(p)
        assert body_of(data).rstrip(b"\n") == body.encode(), \
            "body changed on the way:\n%r" % body_of(data)
        assert b"by relay.test.example" in data, "no Received header of the relay"
    r.wait_queue_empty(30)
    assert connections(sink) == 1 + 1, \
        "expected one relay connection (plus the harness's start probe), saw %d" % connections(sink)
    log = r.log_text()
    assert re.search(r'mta delivery evpid=\w+ from=<alice@example.org> to=<bob@example.test> '
                     r'.*relay="127\.0\.0\.1 \[127\.0\.0\.1\]" .*result="Ok" stat="250 ', log), \
        "no mta delivery log line:\n" + r.log_tail()


def test_smarthost_tls_auth():
    """smtp+tls://label@host with auth <t>: STARTTLS verified against the
    action's ca, AUTH with the table's credentials; a wrong password keeps
    the message queued with the server's answer"""
    dns = DNS("--host-record=mx.test.example,127.0.0.1")
    try:
        certs = test_tls.certs()
        sink_cfg = SINK_CONFIG.replace(
            "listen on @HOST@ port @PORT@ hostname @HOSTNAME@",
            'pki "mx" cert "%s/mx.crt"\npki "mx" key "%s/mx.key"\n'
            'table creds file:@TMP@/creds\n'
            'listen on @HOST@ port @PORT@ hostname @HOSTNAME@ tls-require pki "mx" '
            'auth <creds>' % (certs, certs))
        sink = h.Daemon("sink-auth", sink_cfg, hostname="mx.test.example")
        hashed = subprocess.run([SMTPCTL, "encrypt", "s3cret"], stdout=subprocess.PIPE,
                                check=True).stdout.decode().strip()
        with open(os.path.join(sink.tmp, "creds"), "w") as f:
            f.write("bob %s\n" % hashed)
        sink.start()
        secrets = os.path.join(h.tempfile.mkdtemp(prefix="msd-secrets-"), "secrets")
        with open(secrets, "w") as f:
            f.write("bob bob:s3cret\nmallory bob:wrong\n")
        os.chmod(os.path.dirname(secrets), 0o755)
        action = ('table secrets file:%s\nca "testca" cert "%s/ca.crt"\n'
                  'action "out" relay host "smtp+tls://bob@mx.test.example:%d" '
                  'auth <secrets> ca "testca"\n' % (secrets, certs, sink.port))
        r = relay("relay-auth", action)
        send(r, ["bob@example.test"])
        data = h._read(sink.wait_delivered(1)[0])
        rec = h.split_received(data)[0].decode()
        assert "ESMTPSA" in rec and "TLSv1." in rec, \
            "the next hop did not see TLS + AUTH:\n" + rec
        r.wait_queue_empty(30)
        r.stop()
        # The same relay with the wrong password: stays queued, 535 noted.
        r2 = relay("relay-badauth", action.replace("bob@mx", "mallory@mx"))
        send(r2, ["bob@example.test"], subject="bad password")
        r2.wait_log(r'mta error .*authentication failed: 535', 30)
        r2.wait_log(r'result="TempFail"', 30)
        assert r2.envelopes(), "the message left the queue after a failed AUTH"
        assert len(sink.messages()) == 1, "a message got through with a wrong password"
    finally:
        dns.stop()


MX_RECORDS = ("--mx-host=example.test,mx1.example.test,10",
              "--mx-host=example.test,mx2.example.test,20",
              "--host-record=mx1.example.test,127.0.0.2",
              "--host-record=mx2.example.test,127.0.0.3",
              "--mx-host=nullmx.test,.,0",
              "--mx-host=backup.test,mx1.example.test,10",
              "--mx-host=backup.test,mx2.example.test,20",
              "--mx-host=backup.test,mx3.example.test,30",
              "--host-record=mx3.example.test,127.0.0.4")


def test_mx_fallback():
    """MX by preference: the best MX refuses connections, the second one
    gets the message"""
    if not h.in_netns():
        print("skipped: needs the test's own network namespace (port 25)")
        return
    dns = DNS(*MX_RECORDS)
    try:
        sink = h.Daemon("mx2", SINK_CONFIG, host="127.0.0.3", port=25,
                        hostname="mx2.example.test").start()
        r = relay("relay-mx", 'action "out" relay\n')
        send(r, ["bob@example.test"])
        sink.wait_delivered(1)
        r.wait_queue_empty(30)
        log = r.log_text()
        first = log.find("mta connecting address=smtp://127.0.0.2:25 host=mx1.example.test")
        second = log.find("mta connecting address=smtp://127.0.0.3:25 host=mx2.example.test")
        assert 0 <= first < second, "expected mx1 tried before mx2:\n" + r.log_tail()
    finally:
        dns.stop()


def test_mx_down_bounce():
    """every MX down: retried until the ttl, then a bounce in the sender's
    Maildir naming the error; a null MX bounces at once"""
    if not h.in_netns():
        print("skipped: needs the test's own network namespace (port 25)")
        return
    dns = DNS(*MX_RECORDS)
    try:
        r = relay("relay-down", 'action "out" relay ttl 4s\n')
        send(r, ["bob@example.test"], subject="to nowhere")
        r.wait_log(r'result="TempFail"', 30)
        bounce = h._read(r.wait_delivered(1, 60)[0]).decode(errors="replace")
        flat = " ".join(bounce.split())
        assert "bob@example.test" in bounce and "Connection refused" in flat, \
            "bounce lacks the recipient or the remote error:\n" + bounce
        r.wait_queue_empty(30)
        tries = len(re.findall(r"mta connecting address=smtp://127.0.0.2:25", r.log_text()))
        assert tries >= 2, "expected a retry before the bounce, saw %d attempt(s)" % tries
        send(r, ["x@nullmx.test"], subject="null mx")
        r.wait_delivered(2, 30)
        text = " ".join("".join(h._read(p).decode(errors="replace")
                                for p in r.messages()).split())
        assert "5.1.10" in text and "null MX" in text, "no null MX bounce:\n" + text
    finally:
        dns.stop()


def test_backup_mx():
    """`backup mx NAME`: only exchangers preferred to NAME are tried; with
    the best one down the message waits rather than going to a worse MX"""
    if not h.in_netns():
        print("skipped: needs the test's own network namespace (port 25)")
        return
    dns = DNS(*MX_RECORDS)
    try:
        worse = ScriptedServer(host="127.0.0.4", port=25)
        r = relay("relay-backup", 'action "out" relay backup mx "mx2.example.test"\n')
        send(r, ["bob@backup.test"], subject="backup")
        r.wait_log(r'to=<bob@backup.test> .*result="TempFail"', 30)
        log = r.log_text()
        assert "mta connecting address=smtp://127.0.0.2:25" in log, r.log_tail()
        assert "127.0.0.3:25" not in log and "127.0.0.4:25" not in log and \
            worse.connections == 0, "a backup MX relayed to an MX not better than itself"
        assert r.envelopes(), "the message left the queue"
        worse.close()
    finally:
        dns.stop()


def test_smarthost_ipv6():
    """a smarthost on [::1]: delivered over IPv6"""
    sink = h.Daemon("sink6", SINK_CONFIG.replace("listen on @HOST@", "listen on ::1"),
                    host="::1", port=h.free_port(), hostname="sink6.test.example").start()
    r = relay("relay6", 'action "out" relay host "smtp://[::1]:%d"\n' % sink.port)
    send(r, ["bob@example.test"])
    sink.wait_delivered(1)
    r.wait_log(r'relay="\[::1\] \[::1\]" .*result="Ok"', 10)


def test_partial_rcpt():
    """next hop refuses one recipient for good and one for now: the first
    bounces at once, the second stays queued, the third is delivered"""
    srv = ScriptedServer({"perm": "550 5.1.1 no such user here",
                          "temp": "451 4.3.0 try again later"})
    try:
        r = relay("relay-partial", 'action "out" relay host "smtp://127.0.0.1:%d"\n' % srv.port)
        send(r, ["ok@example.test", "perm@example.test", "temp@example.test"])
        bounce = h._read(r.wait_delivered(1, 30)[0]).decode(errors="replace")
        assert "perm@example.test" in bounce and "550 5.1.1 no such user here" in bounce, \
            "bounce lacks the refused recipient or its reply:\n" + bounce
        assert "ok@example.test" not in bounce.split("Content-Type: message/rfc822")[0] \
            and "temp@example.test" not in bounce.split("Content-Type: message/rfc822")[0], \
            "the bounce names recipients that did not fail:\n" + bounce
        h.wait_for(lambda: srv.messages, 10, what="the message at the next hop")
        _mail, rcpts, _data = srv.messages[0]
        assert len(rcpts) == 1 and "ok@example.test" in rcpts[0], rcpts
        r.wait_log(r'to=<temp@example.test> .*result="TempFail" stat="451 4.3.0', 10)
        # The delivered and the bounced envelopes leave the spool a moment
        # after their log lines.
        h.wait_for(lambda: len(r.envelopes()) == 1, 10, what="one envelope left")
        left = [h._read(p) for p in r.envelopes()]
        assert len(left) == 1 and b"temp@example.test" in left[0], \
            "expected only temp@ queued, have %d envelope(s)" % len(left)
    finally:
        srv.close()


def test_connection_reuse():
    """1,000 messages to one smarthost: all arrive exactly once, over a
    handful of connections"""
    srv = ScriptedServer()
    try:
        r = relay("relay-many", 'action "out" relay host "smtp://127.0.0.1:%d"\n' % srv.port)
        p = subprocess.run(["smtp-source", "-m", "1000", "-s", "20", "-l", "2048",
                            "-f", "alice@example.org", "-t", "bob@example.test",
                            "127.0.0.1:%d" % r.port], stdout=subprocess.PIPE,
                           stderr=subprocess.STDOUT, timeout=120)
        assert p.returncode == 0, "smtp-source failed: %s" % p.stdout.decode()
        h.wait_for(lambda: len(srv.messages) >= 1000, 120,
                   what="1000 messages at the next hop (have %d)" % len(srv.messages))
        r.wait_queue_empty(30)
        assert len(srv.messages) == 1000, "%d messages arrived" % len(srv.messages)
        assert srv.connections <= 50, \
            "1000 messages took %d connections: no reuse" % srv.connections
        print("    1000 messages over %d connections" % srv.connections)
    finally:
        srv.close()


if __name__ == "__main__":
    h.run_checks([test_smarthost_plain, test_smarthost_tls_auth, test_smarthost_ipv6,
                  test_mx_fallback, test_mx_down_bounce, test_backup_mx, test_partial_rcpt,
                  test_connection_reuse])
