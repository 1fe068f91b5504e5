#!/usr/bin/env python3
"""table-test.py - a table program speaking the line protocol 0.1 of
OpenSMTPD 7.6+ (smtpd-tables), for the tests of modsmtpd's `proc` table
backend (tests/unit/test-tableproc.c).

It serves a fixed map and list:

  userinfo     alice -> 1000:1000:/home/alice, bob -> 1001:1001:/home/bob
  credentials  alice -> alice:<a SHA-512 crypt hash>
  alias        postmaster -> "alice, bob", root -> alice
  domain       (list) example.org, example.com
  source       (list, fetch) 192.0.2.1, 192.0.2.2, round robin

Its one argument (argv[1], the ARG of `proc:test:ARG`) is a comma-separated
list of switches that make it misbehave on purpose:

  sleep=KEY     sleep 10 s before answering a request for KEY
  exit=KEY      exit (status 3) on a request for KEY
  garbage=KEY   answer a request for KEY with a line out of protocol
  wrongid=KEY   answer a request for KEY with another request's id
  empty=KEY     answer "found|" with an empty value for KEY
  twice=KEY     answer a request for KEY with two lines, in one write
  error=KEY     answer "error|no database" for KEY (within the protocol)
  slowstart=S   sleep S seconds before the handshake
  log=PATH      append what it sees to PATH: one "start ..." line with its
                argument, environment and open descriptors, the handshake
                lines, then each request line
  only=A+B      register only the services A, B, ...

Replies go to stdout; stdin and stdout are the same socket.
"""

import os
import sys
import time

USERINFO = {"alice": "1000:1000:/home/alice", "bob": "1001:1001:/home/bob"}
CREDENTIALS = {"alice": "alice:$6$saltsalt$5ZbR9Hx0WbCPqJXz6xGUHxYqW4B4"
                        "JrLrb7Wk2aV1hBdxw1lV6sbJQOH8oQYy5ZVQ0KHPbbpVhr"
                        "X7h1Uz6m3Tb1"}
ALIAS = {"postmaster": "alice, bob", "root": "alice"}
MAPS = {"userinfo": USERINFO, "credentials": CREDENTIALS, "alias": ALIAS}
LISTS = {"domain": ["example.org", "example.com"],
         "source": ["192.0.2.1", "192.0.2.2"]}
SERVICES = ["userinfo", "credentials", "alias", "domain", "source"]


def parse_switches(arg):
    sw = {}
    for item in (arg or "").split(","):
        if "=" in item:
            k, v = item.split("=", 1)
            sw[k] = v
    return sw


def open_fds():
    """Descriptors open at start (the listing's own is gone by then)."""
    fds = []
    for name in os.listdir("/proc/self/fd"):
        try:
            os.fstat(int(name))
            fds.append(int(name))
        except OSError:
            pass
    return sorted(fds)


class Table:
    def __init__(self, sw):
        self.sw = sw
        self.log = None
        self.next_source = 0
        self.updates = 0

    def note(self, text):
        if self.log:
            self.log.write(text + "\n")
            self.log.flush()

    def send(self, line):
        sys.stdout.write(line + "\n")
        sys.stdout.flush()

    def misbehave(self, kind, rid, key):
        """True when a switch handled the request for key."""
        sw = self.sw
        if key is None:
            return False
        if sw.get("sleep") == key:
            time.sleep(10)
        if sw.get("exit") == key:
            sys.exit(3)
        if sw.get("garbage") == key:
            self.send("this is not the protocol")
            return True
        if sw.get("wrongid") == key:
            self.send("%s|%08x|not-found" % (kind, (int(rid, 16) + 1) & 0xffffffff))
            return True
        if sw.get("empty") == key:
            self.send("%s|%s|found|" % (kind, rid))
            return True
        if sw.get("twice") == key:
            # one write: both lines arrive together
            self.send("%s|%s|not-found\n%s|%s|not-found" % (kind, rid, kind, rid))
            return True
        if sw.get("error") == key:
            self.send("%s|%s|error|no database" % (kind, rid))
            return True
        return False

    def answer(self, op, service, rid, key):
        kind = op + "-result"
        if self.misbehave(kind, rid, key):
            return
        if op == "check":
            found = key in LISTS.get(service, []) or key in MAPS.get(service, {})
            self.send("%s|%s|%s" % (kind, rid, "found" if found else "not-found"))
        elif op == "lookup":
            value = MAPS.get(service, {}).get(key)
            if value is None and key in LISTS.get(service, []):
                value = key
            if value is None:
                self.send("%s|%s|not-found" % (kind, rid))
            else:
                self.send("%s|%s|found|%s" % (kind, rid, value))
        elif op == "fetch":
            items = LISTS.get(service, [])
            if not items:
                self.send("%s|%s|not-found" % (kind, rid))
                return
            value = items[self.next_source % len(items)]
            self.next_source += 1
            self.send("%s|%s|found|%s" % (kind, rid, value))
        else:
            self.send("%s|%s|error|unknown operation" % (kind, rid))

    def handshake(self):
        while True:
            line = sys.stdin.readline()
            if not line:
                sys.exit(1)
            line = line.rstrip("\n")
            self.note(line)
            if line == "config|ready":
                break
        only = self.sw.get("only")
        for s in (only.split("+") if only else SERVICES):
            self.send("register|" + s)
        self.send("register|ready")

    def serve(self):
        for line in sys.stdin:
            line = line.rstrip("\n")
            self.note(line)
            f = line.split("|")
            if len(f) < 6 or f[0] != "table" or f[1] != "0.1":
                sys.stderr.write("table-test: bad request %r\n" % line)
                sys.exit(2)
            op = f[4]
            if op == "update":
                self.updates += 1
                self.send("update-result|%s|ok" % f[5])
            elif op == "fetch" and len(f) == 7:
                self.answer(op, f[5], f[6], None)
            elif op in ("check", "lookup") and len(f) >= 8:
                # The key is the last field and may hold "|".
                self.answer(op, f[5], f[6], "|".join(f[7:]))
            else:
                sys.stderr.write("table-test: bad request %r\n" % line)
                sys.exit(2)


def main():
    sw = parse_switches(sys.argv[1] if len(sys.argv) > 1 else "")
    fds = open_fds()
    t = Table(sw)
    if "log" in sw:
        t.log = open(sw["log"], "a")
    t.note("start argc=%d arg=%s env=%s fds=%s" % (
        len(sys.argv), sys.argv[1] if len(sys.argv) > 1 else "-",
        ";".join(sorted("%s=%s" % kv for kv in os.environ.items())),
        ",".join(str(fd) for fd in fds)))
    if "slowstart" in sw:
        time.sleep(float(sw["slowstart"]))
    t.handshake()
    t.serve()


if __name__ == "__main__":
    main()
