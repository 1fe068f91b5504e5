#!/usr/bin/env python3
"""Acceptance: rule matching per RCPT.  No matching rule or a reject rule
gives 550; relaying to an outside domain is refused, from a local and from a
non-local source (never an open relay)."""

import json
import os
import subprocess
import sys

sys.path.insert(0, os.path.dirname(os.path.abspath(__file__)))
import harness as h  # noqa: E402

CONFIG = """\
listen on @HOST@ port @PORT@ hostname @HOSTNAME@
table blocked { "blocked.example", "spam.example" }
action "local" maildir "@MAILDIR@"@USER_OPT@
match from any for domain <blocked> reject
match from any for domain "example.org" action "local"
match from local for local action "local"
"""


def invalid(addr):
    return "550 Invalid recipient: <%s>" % addr


def expect_exact(c, cmd, reply):
    r = c.cmd(cmd)
    assert str(r) == reply, "%s -> %s (expected %s)" % (cmd, r, reply)


def test_unmatched_and_reject():
    """unmatched recipient, reject rule (table), outside domain: 550; matched: 250"""
    d = h.Daemon("rules", CONFIG).start()
    with d.connect() as c:
        c.greet()
        c.expect("MAIL FROM:<sender@client.test>", 250)
        ok = c.cmd("RCPT TO:<rcpt@example.org>")
        assert str(ok) == "250 2.1.5 Destination address valid: Recipient ok", \
            "matched recipient -> %s" % ok
        expect_exact(c, "RCPT TO:<nobody@unmatched.test>", invalid("nobody@unmatched.test"))
        r = c.cmd("RCPT TO:<x@blocked.example>")
        assert r.code == 550, "reject rule (table <blocked>) -> %s" % r
        r = c.cmd("RCPT TO:<y@spam.example>")
        assert r.code == 550, "reject rule (second table entry) -> %s" % r
        # a relay attempt from this host to an outside domain: no rule says relay
        expect_exact(c, "RCPT TO:<someone@outside.example>", invalid("someone@outside.example"))
        c.expect("QUIT", 221)


def test_rejected_recipients_not_delivered():
    """a transaction with one good and two refused recipients delivers to the good one only"""
    d = h.Daemon("rules2", CONFIG).start()
    mid = "<mixed.%d@client.test>" % os.getpid()
    data = h.make_message("mixed recipients", mid)
    with d.connect() as c:
        c.greet()
        c.expect("MAIL FROM:<sender@client.test>", 250)
        c.expect("RCPT TO:<nobody@unmatched.test>", 550)
        c.expect("RCPT TO:<rcpt@example.org>", 250)
        c.expect("RCPT TO:<x@blocked.example>", 550)
        c.expect("DATA", 354)
        c.send(h.to_wire(data))
        r = c.reply()
        assert r.code == 250 and h.MSGID_250.match(r.text), "end of DATA -> %s" % r
        # every recipient refused: DATA has nobody to deliver to
        c.expect("MAIL FROM:<sender@client.test>", 250)
        c.expect("RCPT TO:<nobody@unmatched.test>", 550)
        r = c.cmd("DATA")
        assert r.code == 503, "DATA after only refused recipients -> %s (expected 503)" % r
        c.expect("QUIT", 221)
    d.wait_delivered(1)
    d.wait_queue_empty()
    got = d.read_messages()
    assert len(got) == 1, "%d deliveries, expected 1" % len(got)
    received, rest = h.split_received(got[0])
    assert rest == data, "content changed"
    assert b"\tfor <rcpt@example.org>;" in received, "Received lacks for <rcpt@example.org>: %r" % received


# ------------------------------------------------ a really non-local source

SERVER_IP, CLIENT_IP = "10.251.77.1", "10.251.77.2"

CLIENT = r"""
import json, sys
sys.path.insert(0, sys.argv[1])
import harness as h
port = int(sys.argv[2])
out = {}
c = h.SMTP(%r, port, 20, source=(%r, 0))
out["banner"] = str(c.reply())
out["ehlo"] = str(c.cmd("EHLO remote.test"))
out["mail"] = str(c.cmd("MAIL FROM:<someone@remote.test>"))
for r in sys.argv[3:]:
    out[r] = str(c.cmd("RCPT TO:<%%s>" %% r))
c.cmd("QUIT")
print(json.dumps(out))
""" % (SERVER_IP, CLIENT_IP)


def run(*cmd):
    p = subprocess.run(cmd, stdout=subprocess.PIPE, stderr=subprocess.STDOUT)
    if p.returncode != 0:
        raise AssertionError("%s failed: %s" % (" ".join(cmd), p.stdout.decode(errors="replace")))


def test_no_relay_for_remote_source():
    """from a non-local address (veth peer namespace): outside domain and local names get 550"""
    if not (h.IS_ROOT and h.in_netns()):
        print("  skipped: needs root and the test's own network namespace")
        return
    holder = subprocess.Popen(["unshare", "-n", "sleep", "600"])
    try:
        mine = os.readlink("/proc/self/ns/net")
        h.wait_for(lambda: os.path.exists("/proc/%d/ns/net" % holder.pid)
                   and os.readlink("/proc/%d/ns/net" % holder.pid) != mine, 10,
                   what="the peer network namespace")
        pid = str(holder.pid)
        run("ip", "link", "add", "msdv0", "type", "veth", "peer", "name", "msdv1", "netns", pid)
        run("ip", "addr", "add", SERVER_IP + "/30", "dev", "msdv0")
        run("ip", "link", "set", "msdv0", "up")
        run("nsenter", "-t", pid, "-n", "sh", "-ec",
            "ip link set lo up; ip addr add %s/30 dev msdv1; ip link set msdv1 up" % CLIENT_IP)
        d = h.Daemon("remote", CONFIG, host=SERVER_IP).start()
        rcpts = ["rcpt@example.org", "user@outside.example", "root@localhost",
                 "x@blocked.example"]
        p = subprocess.run(["nsenter", "-t", pid, "-n", sys.executable, "-c", CLIENT,
                            h.HERE, str(d.port)] + rcpts,
                           stdout=subprocess.PIPE, stderr=subprocess.STDOUT, timeout=60)
        out = p.stdout.decode(errors="replace")
        assert p.returncode == 0, "client in the peer namespace failed:\n" + out
        res = json.loads(out.strip().splitlines()[-1])
        assert res["banner"].startswith("220 "), "banner %s" % res["banner"]
        assert res["mail"].startswith("250"), "MAIL -> %s" % res["mail"]
        assert res["rcpt@example.org"].startswith("250 "), \
            "from a remote source, rcpt@example.org (from any rule) -> %s" % res["rcpt@example.org"]
        assert res["user@outside.example"] == invalid("user@outside.example"), \
            "OPEN RELAY? remote source to an outside domain -> %s" % res["user@outside.example"]
        assert res["root@localhost"] == invalid("root@localhost"), \
            "'from local' matched a remote source: root@localhost -> %s" % res["root@localhost"]
        assert res["x@blocked.example"].startswith("550 "), \
            "reject rule from a remote source -> %s" % res["x@blocked.example"]
        log = d.log_text()
        assert CLIENT_IP in log, "the session from %s is not in the log" % CLIENT_IP
    finally:
        holder.kill()
        holder.wait()
        subprocess.run(["ip", "link", "del", "msdv0"], stderr=subprocess.DEVNULL)


if __name__ == "__main__":
    h.run_checks([test_unmatched_and_reject, test_rejected_recipients_not_delivered,
                  test_no_relay_for_remote_source])
