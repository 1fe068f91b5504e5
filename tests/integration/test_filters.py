#!/usr/bin/env python3
"""Proc filters over the smtpd-filters protocol (issue 6): the test filter
(examples/filter-stdio.py) sees every event and phase in order and passes
a message byte-exact; its decisions reach the client; Debian's
filter-senderscore and filter-dkimsign work unchanged; a filter that dies,
writes garbage or hangs costs the sessions it serves a 4xx, never the
daemon, and is restarted."""

import base64
import json
import os
import re
import shutil
import signal
import subprocess
import sys

sys.path.insert(0, os.path.dirname(os.path.abspath(__file__)))
import harness as h  # noqa: E402

FILTER = os.path.join(h.ROOT, "examples", "filter-stdio.py")
LIBEXEC = "/usr/libexec/opensmtpd"
# The filter runs as the daemon's unprivileged user: the system python,
# not one under a private home directory.
PYTHON = "/usr/bin/python3" if os.access("/usr/bin/python3", os.X_OK) else sys.executable

BASE = """\
listen on @HOST@ port @PORT@ hostname @HOSTNAME@ filter "@FILTER@"
action "local" maildir "@MAILDIR@"@USER_OPT@
match from any for domain "example.org" action "local"
match from local for local action "local"
"""


class Stdio:
    """The test filter in a daemon's directory, with its log and rules,
    both writable by the unprivileged user it runs as."""

    def __init__(self, d, name="stdio", opts=""):
        self.script = os.path.join(d.tmp, "filter-stdio.py")
        shutil.copy(FILTER, self.script)
        os.chmod(self.script, 0o755)
        self.log = os.path.join(d.tmp, "%s.log" % name)
        self.rules = os.path.join(d.tmp, "%s.rules" % name)
        for p in (self.log, self.rules):
            with open(p, "w") as f:
                f.write("[]" if p == self.rules else "")
            os.chmod(p, 0o666)
        self.line = 'filter "%s" proc-exec "%s %s -l %s -r %s"%s\n' % (
            name, PYTHON, self.script, self.log, self.rules, opts)

    def set_rules(self, rules):
        tmp = self.rules + ".new"
        with open(tmp, "w") as f:
            json.dump(rules, f)
        os.chmod(tmp, 0o666)
        os.rename(tmp, self.rules)

    def lines(self):
        with open(self.log, "rb") as f:
            return f.read().decode(errors="replace").splitlines()

    def session(self, sid):
        """(kind, name, fields after the session id) of one session."""
        out = []
        for l in self.lines():
            f = l.split("|")
            if f[0] == "report" and len(f) >= 6 and f[5] == sid:
                out.append(("report", f[4], f[6:]))
            elif f[0] == "filter" and len(f) >= 8 and f[5] == sid:
                out.append(("filter", f[4], ["|".join(f[7:])]))
        return out


def daemon(name, flt_opts="", extra="", filters=None, chain="stdio"):
    d = h.Daemon(name, "")
    f = Stdio(d, opts=flt_opts)
    text = extra + f.line + (filters or "") + BASE.replace("@FILTER@", chain)
    d.write_config(text)
    return d, f


def sid_of(f, n=-1):
    sids = []
    for l in f.lines():
        x = l.split("|")
        if x[0] == "report" and len(x) > 5 and x[4] == "link-connect":
            sids.append(x[5])
    return sids[n]


def filter_pids(d, needle):
    return [p for p in h.descendants(d.pid)
            if needle.encode() in h._read("/proc/%d/cmdline" % p)]


def test_events_and_passthrough():
    """every event and phase in order with its fields; the message passes byte-exact"""
    d, f = daemon("fevents")
    d.start()
    body = b"Line one\n.leading dot\n..two dots\n\nlast | pipe\n"
    data = h.make_message("through the filter", "<events@client.test>", body=body)
    with d.connect() as c:
        c.greet()
        msgid = c.send_message(data)
        h.wait_for(lambda: c.cmd("QUIT").code == 221, 5)
    d.wait_delivered(1)
    got = d.read_messages()[0]
    rcv, rest = h.split_received(got)
    assert rest == data, "message changed by the chain:\n%r\n%r" % (rest, data)
    assert ("id %s" % msgid).encode() in rcv, rcv
    sid = sid_of(f)
    h.wait_for(lambda: any(n == "link-disconnect" for _, n, _ in f.session(sid)), 10,
               what="link-disconnect")
    ev = f.session(sid)
    names = [("%s:%s" % (k, n)) for k, n, _ in ev if n not in ("protocol-server", "filter-response")]
    want = ["report:link-connect", "filter:connect", "report:link-greeting",
            "report:protocol-client", "filter:ehlo", "report:link-identify",
            "report:protocol-client", "filter:mail-from", "report:tx-begin", "report:tx-mail",
            "report:protocol-client", "filter:rcpt-to", "report:tx-rcpt",
            "report:protocol-client", "filter:data", "report:tx-data"]
    assert names[:len(want)] == want, "events:\n%s" % "\n".join(names)
    rest_names = names[len(want):]
    dl = [x for x in rest_names if x == "filter:data-line"]
    tail = [x for x in rest_names if x != "filter:data-line"]
    assert tail == ["report:protocol-client", "filter:commit", "report:tx-commit",
                    "report:tx-reset", "report:protocol-client", "filter:quit",
                    "report:link-disconnect"], "after DATA:\n%s" % "\n".join(rest_names)
    fields = {n: x for k, n, x in ev if k == "report"}
    # 127.0.0.1 is "localhost" in /etc/hosts, which resolves back to it.
    assert fields["link-connect"][:2] == ["localhost", "pass"] and \
        len(fields["link-connect"]) == 4, fields
    assert re.match(r"127\.0\.0\.1:\d+$", fields["link-connect"][2]), fields
    assert fields["link-connect"][3] == "127.0.0.1:%d" % d.port, fields
    assert fields["tx-begin"] == [msgid], fields
    assert fields["tx-mail"] == [msgid, "ok", "sender@client.test"], fields
    assert fields["tx-rcpt"] == [msgid, "ok", "rcpt@example.org"], fields
    assert fields["tx-commit"][0] == msgid and int(fields["tx-commit"][1]) == len(got), fields
    lines = [x[0] for k, n, x in ev if n == "data-line"]
    assert lines[0].startswith("Received: from client.test"), lines[:3]
    assert ".." + "leading dot" in lines and "..." + "two dots" in lines, lines
    assert lines[-1] == "." and len(dl) == len(lines)
    reqs = {n: x[0] for k, n, x in ev if k == "filter"}
    assert reqs["connect"] == "localhost|127.0.0.1" and reqs["ehlo"] == "client.test", reqs
    assert reqs["mail-from"] == "sender@client.test" and reqs["commit"] == "", reqs
    hello = f.lines()[:5]
    assert hello == ["config|smtpd-version|6.8.0p2", "config|smtp-session-timeout|300",
                     "config|subsystem|smtp-in", "config|admd|%s" % hello[3][12:],
                     "config|ready"], hello
    assert all(l.split("|")[1] == "0.6" for l in f.lines() if l.startswith(("report|", "filter|")))
    assert d.stop() == 0


def test_protocol_07():
    """protocol 0.7 per filter: config|protocol and 0.7 on every line"""
    d, f = daemon("f07", flt_opts=" protocol 0.7")
    d.start()
    with d.connect() as c:
        c.greet()
        c.send_message(h.make_message("v07"))
    d.wait_delivered(1)
    l = f.lines()
    assert "config|protocol|0.7" in l[:7], l[:7]
    assert all(x.split("|")[1] == "0.7" for x in l if x.startswith(("report|", "filter|")))


def test_decisions():
    """reject, disconnect, rewrite, junk at rcpt-to/mail-from and reject at commit"""
    d, f = daemon("fdecide")
    f.set_rules([
        {"phase": "rcpt-to", "match": "bad@", "decision": "reject", "param": "550 5.7.1 Not you"},
        {"phase": "rcpt-to", "match": "old@", "decision": "rewrite", "param": "<new@example.org>"},
        {"phase": "mail-from", "match": "spammer@", "decision": "junk"},
        {"phase": "mail-from", "match": "evil@", "decision": "disconnect",
         "param": "554 5.7.1 Go away"},
        {"phase": "rcpt-to", "match": "tempo@", "decision": "reject", "param": "451 4.7.1 Later"},
    ])
    d.start()
    with d.connect() as c:
        c.greet()
        c.expect("MAIL FROM:<sender@client.test>", 250)
        r = c.cmd("RCPT TO:<bad@example.org>")
        assert str(r) == "550 5.7.1 Not you", r
        r = c.cmd("RCPT TO:<tempo@example.org>")
        assert str(r) == "451 4.7.1 Later", r
        c.expect("RCPT TO:<old@example.org>", 250)
        c.expect("DATA", 354)
        c.send(h.to_wire(h.make_message("rewritten")))
        assert c.reply().code == 250
        c.expect("MAIL FROM:<evil@client.test>", 554)
        assert c.closed_by_peer(), "not disconnected after a disconnect decision"
    d.wait_log(r"to=<new@example\.org>", 20)
    with d.connect() as c:
        c.greet()
        c.send_message(h.make_message("junk"), mail_from="spammer@client.test")
    msgs = d.wait_delivered(2)
    junk = [m for m in d.read_messages() if b"Subject: junk" in m]
    assert junk and junk[0].startswith(b"X-Spam: Yes\n"), junk
    f.set_rules([{"phase": "commit", "decision": "reject", "param": "550 5.7.0 Refused at commit"}])
    before = len(msgs)
    with d.connect() as c:
        c.greet()
        c.expect("MAIL FROM:<sender@client.test>", 250)
        c.expect("RCPT TO:<rcpt@example.org>", 250)
        c.expect("DATA", 354)
        c.send(h.to_wire(h.make_message("refused")))
        r = c.reply()
        assert str(r) == "550 5.7.0 Refused at commit", r
        c.expect("QUIT", 221)
    d.wait_queue_empty()
    assert len(d.messages()) == before and not any(b"refused" in m for m in d.read_messages())


def test_filter_killed():
    """a killed filter: its session gets 421 4.3.0, the daemon stays, the filter comes back"""
    d, f = daemon("fkill")
    d.start()
    c = d.connect()
    c.greet()
    pids = h.wait_for(lambda: filter_pids(d, "filter-stdio.py"), 10, what="the filter process")
    os.kill(pids[0], signal.SIGKILL)
    r = c.reply()
    assert r.code == 421 and r.text.startswith("4.3.0"), "after the kill: %s" % r
    assert c.closed_by_peer()
    c.close()
    assert d.running(), "the daemon exited with its filter"
    d.wait_log(r"filter stdio: killed by signal 9, restarting", 10)
    with d.connect() as c:
        c.greet()
        c.send_message(h.make_message("after restart"))
    d.wait_delivered(1)
    new = h.wait_for(lambda: filter_pids(d, "filter-stdio.py"), 10)
    assert new != pids


def test_filter_garbage():
    """a filter writing garbage: 421 4.3.0, logged once, restarted, next session fine"""
    d, f = daemon("fgarbage")
    f.set_rules([{"phase": "helo", "decision": "garbage"}])
    d.start()
    with d.connect() as c:
        c.expect(None, 220)
        r = c.cmd("HELO client.test")
        assert r.code == 421 and r.text.startswith("4.3.0"), r
    d.wait_log(r"filter stdio: malformed line \"this is not the protocol\"", 10)
    f.set_rules([])
    # killed by the parent, or gone by itself on the closed socket first
    d.wait_log(r"filter stdio: (killed by signal 9|exited with status \d+), restarting", 10)
    with d.connect() as c:
        c.greet()
        c.send_message(h.make_message("after garbage"))
    d.wait_delivered(1)
    assert d.log_text().count("malformed line") == 1


def test_filter_hangs():
    """a filter that stops answering: 451 after its timeout, the session goes on"""
    d, f = daemon("fhang", flt_opts=" timeout 2s")
    d.start()
    with d.connect() as c:
        c.expect(None, 220)
        f.set_rules({"hang": True})
        r = c.cmd("EHLO client.test")
        assert r.code == 451 and r.text.startswith("4.3.0"), r
        f.set_rules([])
        # The session is still there and the filter answers again.
        r = c.cmd("EHLO client.test")
        assert r.code == 250, r
        c.expect("QUIT", 221)
    assert d.running()


def test_senderscore():
    """Debian's filter-senderscore proceeds (no DNS in the test's network namespace)"""
    prog = os.path.join(LIBEXEC, "filter-senderscore")
    if not os.access(prog, os.X_OK):
        print("skip: %s is not installed (opensmtpd-filter-senderscore)" % prog)
        return
    d = h.Daemon("fscore", 'filter "score" proc-exec "filter-senderscore -blockBelow 10'
                 ' -junkBelow 50 -scoreHeader"\n' + BASE.replace("@FILTER@", "score"))
    d.start()
    with d.connect() as c:
        c.greet()
        c.send_message(h.make_message("scored"))
    got = d.wait_delivered(1)
    data = open(got[0], "rb").read()
    assert b"Subject: scored" in data


def test_dkimsign():
    """Debian's filter-dkimsign signs; python3-dkim verifies the delivered message"""
    prog = os.path.join(LIBEXEC, "filter-dkimsign")
    if not os.access(prog, os.X_OK) or subprocess.run(
            [PYTHON, "-c", "import dkim"], stderr=subprocess.DEVNULL).returncode:
        print("skip: filter-dkimsign or python3-dkim is not installed")
        return
    d = h.Daemon("fdkim", "")
    key = os.path.join(d.tmp, "dkim.key")
    subprocess.run(["openssl", "genrsa", "-out", key, "2048"], check=True,
                   stderr=subprocess.DEVNULL)
    os.chmod(key, 0o644)
    pub = subprocess.run(["openssl", "rsa", "-in", key, "-pubout", "-outform", "DER"],
                         check=True, stdout=subprocess.PIPE, stderr=subprocess.DEVNULL).stdout
    d.write_config('filter "dkim" proc-exec "filter-dkimsign -d example.org -s sel -k %s"\n'
                   % key + BASE.replace("@FILTER@", "dkim"))
    d.start()
    data = h.make_message("signed", frm="someone@example.org", body=b"Signed body.\n")
    with d.connect() as c:
        c.greet()
        c.send_message(data)
    got = open(d.wait_delivered(1)[0], "rb").read()
    assert got.startswith(b"DKIM-Signature:"), got[:200]
    txt = b"v=DKIM1; k=rsa; p=" + base64.b64encode(pub)
    assert dkim_verify(got, txt), "DKIM signature does not verify:\n%s" % got[:600]
    assert not dkim_verify(got.replace(b"Signed body.", b"Changed body."), txt), \
        "a changed body still verifies"


VERIFY = """
import sys, dkim
txt = sys.argv[1].encode()
def dnsfunc(name, timeout=5):
    return txt if name == b"sel._domainkey.example.org." else None
sys.exit(0 if dkim.verify(sys.stdin.buffer.read(), dnsfunc=dnsfunc) else 1)
"""


def dkim_verify(msg, txt):
    """python3-dkim's dkim.verify (Debian's, under the system python)."""
    return subprocess.run([PYTHON, "-c", VERIFY, txt.decode()], input=msg,
                          timeout=60).returncode == 0


def test_chain_and_proc():
    """a chain of a proc-exec filter and a shared proc: both see the message in order"""
    d = h.Daemon("fchain", "")
    a = Stdio(d, "one")
    b = Stdio(d, "two")
    b_line = b.line.replace('filter "two" proc-exec', 'proc "shared"')
    d.write_config(a.line + b_line + 'filter "two" proc "shared"\n'
                   'filter "both" chain { "one", "two" }\n' + BASE.replace("@FILTER@", "both"))
    b.set_rules([{"phase": "rcpt-to", "match": "x@", "decision": "reject", "param": "550 no x"}])
    d.start()
    with d.connect() as c:
        c.greet()
        c.expect("MAIL FROM:<sender@client.test>", 250)
        assert str(c.cmd("RCPT TO:<x@example.org>")) == "550 no x"
        c.expect("RCPT TO:<rcpt@example.org>", 250)
        c.expect("DATA", 354)
        c.send(h.to_wire(h.make_message("chained")))
        assert c.reply().code == 250
    d.wait_delivered(1)
    for f in (a, b):
        sid = sid_of(f)
        n = [x[0] for k, nm, x in f.session(sid) if nm == "data-line"]
        assert n and n[-1] == "." and any("Subject: chained" in l for l in n), n


if __name__ == "__main__":
    h.run_checks([test_events_and_passthrough, test_protocol_07, test_decisions,
                  test_filter_killed, test_filter_garbage, test_filter_hangs,
                  test_senderscore, test_dkimsign, test_chain_and_proc])
