#!/usr/bin/env python3
"""filter-rspamd (Debian opensmtpd-filter-rspamd) unchanged, against a
real rspamd (Debian rspamd) that the test starts on loopback with a
configuration of its own (issue 6): a GTUBE message is rejected with
rspamd's reply; a message rspamd scores over its add_header threshold is
delivered with the headers rspamd's answer brings (X-Spam, X-Spam-Score,
X-Spam-Status with rspamd's symbols); a clean one is delivered unchanged;
with `-url http://127.0.0.1:1` (nothing listening) the commit gets 421
and nothing is queued.

A clean message gets no header in this pairing: rspamd 3.4 sends its
milter add_headers as objects ({"order": ..., "value": ...}) and
Debian's filter-rspamd 0.1.7 adds only string values, so it drops them
(checked against a fake rspamd answering strings, which it does add).
Headers for clean messages therefore come only with a newer filter.

rspamd runs from a temporary directory: its own normal and controller
workers on free loopback ports, no redis, its database and logs there.
It must not use the network: its resolver is pointed at 127.0.0.1:1
with a short timeout (every name it looks up, its map servers included,
fails at once), hyperscan is off and the list of TLDs is a short local
file, so it starts in about a second instead of compiling for ten."""

import os
import re
import shutil
import signal
import subprocess
import sys
import tempfile
import urllib.request

sys.path.insert(0, os.path.dirname(os.path.abspath(__file__)))
import harness as h  # noqa: E402

RSPAMD = shutil.which("rspamd") or "/usr/bin/rspamd"
FILTER = "/usr/libexec/opensmtpd/filter-rspamd"
GTUBE = "XJS*C4JDBQADN1.NSBN3*2IDNEN*GTUBE-STANDARD-ANTI-UBE-TEST-EMAIL*C.34X"

RSPAMD_CONF = """\
.include "$CONFDIR/common.conf"
options {
  pidfile = "%(dir)s/rspamd.pid";
  dbdir = "%(dir)s";
  local_addrs = [];
  disable_hyperscan = true;
  # the client is on loopback, which rspamd exempts from GTUBE otherwise
  gtube_patterns = "all";
  url_tld = "%(dir)s/tld.dat";
  dns {
    nameserver = ["127.0.0.1:1"];
    timeout = 0.2s;
    retransmits = 1;
  }
}
logging {
  type = "file";
  filename = "%(dir)s/rspamd.log";
  level = "info";
}
worker "normal" {
  bind_socket = "127.0.0.1:%(port)d";
  count = 1;
}
worker "controller" {
  bind_socket = "127.0.0.1:%(cport)d";
  count = 1;
}
"""

# "add header" from a score of 0.5: a message without a Date header
# (MISSING_DATE, 1.0) gets it, a complete one (0.0) does not.
ACTIONS = """\
reject = 15;
add_header = 0.5;
greylist = 14;
"""

CONFIG = """\
filter "rspamd" proc-exec "%s -url %%s"
listen on @HOST@ port @PORT@ hostname @HOSTNAME@ filter "rspamd"
action "local" maildir "@MAILDIR@"@USER_OPT@
match from any for domain "example.org" action "local"
""" % FILTER


class Rspamd:
    """An rspamd of the test's own, on loopback."""

    def __init__(self):
        self.dir = tempfile.mkdtemp(prefix="msd-rspamd-")
        os.chmod(self.dir, 0o777)
        self.port = h.free_port()
        cport = h.free_port()
        with open(os.path.join(self.dir, "tld.dat"), "w") as f:
            f.write("com\norg\nnet\ntest\nexample\n")
        # Our own local.d/override.d: nothing of the system's local
        # configuration, and thresholds the test controls.
        os.makedirs(os.path.join(self.dir, "override.d"))
        with open(os.path.join(self.dir, "override.d", "actions.conf"), "w") as f:
            f.write(ACTIONS)
        self.conf = os.path.join(self.dir, "rspamd.conf")
        with open(self.conf, "w") as f:
            f.write(RSPAMD_CONF % {"dir": self.dir, "port": self.port, "cport": cport})
        cmd = [RSPAMD, "-f", "-c", self.conf, "--var=LOCAL_CONFDIR=" + self.dir]
        if h.IS_ROOT:
            cmd += ["-u", "_rspamd", "-g", "_rspamd"]
        self.out = open(os.path.join(self.dir, "stdout.log"), "wb")
        # its own process group: the workers go with the main process
        self.proc = subprocess.Popen(cmd, stdin=subprocess.DEVNULL, stdout=self.out,
                                     stderr=subprocess.STDOUT, start_new_session=True)
        self.url = "http://127.0.0.1:%d" % self.port
        try:
            h.wait_for(self.ping, 60, interval=0.1, what="rspamd answering /ping")
        except AssertionError:
            raise AssertionError("rspamd did not start:\n%s" % self.log_tail())

    def ping(self):
        if self.proc.poll() is not None:
            raise AssertionError("rspamd exited with %s:\n%s" % (self.proc.returncode,
                                                                 self.log_tail()))
        try:
            with urllib.request.urlopen(self.url + "/ping", timeout=1) as r:
                return r.read().strip() == b"pong"
        except OSError:
            return False

    def log_tail(self, n=30):
        out = []
        for name in ("stdout.log", "rspamd.log"):
            p = os.path.join(self.dir, name)
            if os.path.exists(p):
                with open(p, errors="replace") as f:
                    out += ["%s| %s" % (name, l.rstrip()) for l in f.readlines()[-n:]]
        return "\n".join(out)

    def stop(self, keep=False):
        if self.proc.poll() is None:
            os.killpg(self.proc.pid, signal.SIGTERM)
            try:
                self.proc.wait(20)
            except subprocess.TimeoutExpired:
                os.killpg(self.proc.pid, signal.SIGKILL)
                self.proc.wait()
        self.out.close()
        if not keep:
            shutil.rmtree(self.dir, ignore_errors=True)


def daemon(name, url):
    d = h.Daemon(name, CONFIG % url)
    d.start()
    return d


def test_rspamd():
    """GTUBE is rejected with rspamd's reply; a suspicious message is
    delivered with the headers rspamd's answer brings; a clean one unchanged"""
    assert os.access(FILTER, os.X_OK), "no %s (Debian opensmtpd-filter-rspamd)" % FILTER
    r = Rspamd()
    ok = False
    try:
        d = daemon("frspamd", r.url)
        clean = h.make_message("clean", body="A plain message.\n")
        # no Date: header, which rspamd scores 1.0
        suspicious = b"".join(l for l in h.make_message("suspicious").splitlines(True)
                              if not l.startswith(b"Date:"))
        with d.connect() as c:
            c.greet()
            c.expect("MAIL FROM:<sender@client.test>", 250)
            c.expect("RCPT TO:<rcpt@example.org>", 250)
            c.expect("DATA", 354)
            # not last: filter-rspamd posts the message without its final
            # newline, and rspamd finds no GTUBE in an unterminated line
            c.send(h.to_wire(h.make_message("gtube", body=GTUBE + "\nThat was a test.\n")))
            rep = c.reply()
            assert str(rep) == "550 Gtube pattern", "GTUBE -> %s" % rep
            c.send_message(clean)
            c.send_message(suspicious)
        d.wait_delivered(2)
        msgs = {m.split(b"Subject: ")[1].split(b"\n")[0]: m for m in d.read_messages()}
        assert sorted(msgs) == [b"clean", b"suspicious"], sorted(msgs)
        assert h.split_received(msgs[b"clean"])[1] == clean, msgs[b"clean"]
        added, rest = msgs[b"suspicious"].split(b"Received: ", 1)
        added = added.decode()
        assert added.startswith("X-Spam: yes\nX-Spam-Score: "), added
        m = re.search(r"^X-Spam-Score: (\d+(\.\d+)?) / 15$", added, re.M)
        assert m and 0.5 <= float(m.group(1)) < 15, added
        # rspamd's symbols, MISSING_DATE among them
        assert re.search(r"^X-Spam-Status: Yes, score=[\d.]+ required=15\.000\n"
                         r"\ttests=\[.*MISSING_DATE=1\.000", added, re.M | re.S), added
        assert h.split_received(b"Received: " + rest)[1] == suspicious, rest
        assert d.stop() == 0
        ok = True
    finally:
        if not ok:
            print(r.log_tail())
        r.stop(keep=not ok)


def test_rspamd_unreachable():
    """rspamd unreachable (-url http://127.0.0.1:1): the commit gets 421
    and nothing is queued; the daemon keeps running"""
    d = daemon("frspamdoff", "http://127.0.0.1:1")
    with d.connect() as c:
        c.greet()
        c.expect("MAIL FROM:<sender@client.test>", 250)
        c.expect("RCPT TO:<rcpt@example.org>", 250)
        c.expect("DATA", 354)
        c.send(h.to_wire(h.make_message("no rspamd")))
        rep = c.reply()
        assert rep.code == 421, "commit without rspamd -> %s" % rep
    d.wait_log(r"rspamd: .*failed to receive a response from daemon")
    assert d.envelopes() == [], "something was queued: %s" % d.envelopes()
    assert d.messages() == [], "something was delivered"
    assert d.running(), "the daemon exited"
    assert d.stop() == 0


if __name__ == "__main__":
    h.run_checks([test_rspamd, test_rspamd_unreachable])
