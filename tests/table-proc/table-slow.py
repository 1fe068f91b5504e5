#!/usr/bin/env python3
"""table-slow.py SECONDS - a table program (line protocol 0.1) that takes
SECONDS to answer every check or lookup, then says "found" for keys that
start with "ok" and "not-found" for the others.  Used by
tests/integration/test_table_async.py: a backend slow enough that a
session waiting for it is easy to tell from one that is not."""

import sys
import time

SERVICES = ("alias", "domain", "credentials", "netaddr", "userinfo", "source",
            "mailaddr", "addrname", "mailaddrmap", "relayhost", "string")


def answer(op, rid, key):
    if not key.startswith("ok"):
        return "%s-result|%s|not-found\n" % (op, rid)
    if op == "check":
        return "check-result|%s|found\n" % rid
    return "lookup-result|%s|found|%s\n" % (rid, key)


def main():
    delay = float(sys.argv[1])
    out = sys.stdout
    for line in sys.stdin:
        f = line.rstrip("\n").split("|")
        if f[0] == "config":
            if f[1] == "ready":
                for s in SERVICES:
                    out.write("register|%s\n" % s)
                out.write("register|ready\n")
                out.flush()
            continue
        if f[0] != "table" or len(f) < 6:
            sys.exit("table-slow: bad request %r" % line)
        op = f[4]
        if op == "update":
            out.write("update-result|%s|ok\n" % f[5])
        elif op in ("check", "lookup"):
            time.sleep(delay)
            out.write(answer(op, f[6], "|".join(f[7:])))
        else:
            out.write("%s-result|%s|error|unsupported\n" % (op, f[5]))
        out.flush()


if __name__ == "__main__":
    main()
