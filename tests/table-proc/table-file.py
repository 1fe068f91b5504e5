#!/usr/bin/env python3
"""table-file.py PATH - a table program (line protocol 0.1) serving a
table(5) text file: "key value" lines form a map, bare keys a list.  Exact
keys only (the lookup side lowercases them).  Used by
tests/integration/test_table_backends.py to serve the same fixture as the
file, db and sqlite backends."""

import sys

SERVICES = ("alias", "domain", "credentials", "netaddr", "userinfo", "source",
            "mailaddr", "addrname", "mailaddrmap", "relayhost", "string")


def load(path):
    entries = {}
    with open(path) as f:
        for line in f:
            line = line.strip()
            if not line or line.startswith("#"):
                continue
            key, _, value = line.partition(" ")
            entries[key.lower()] = value.strip() or None
    return entries


def main():
    path = sys.argv[1]
    entries = load(path)
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
            sys.exit("table-file: bad request %r" % line)
        op = f[4]
        if op == "update":
            entries = load(path)
            out.write("update-result|%s|ok\n" % f[5])
        elif op in ("check", "lookup"):
            rid, key = f[6], "|".join(f[7:])
            if key not in entries:
                out.write("%s-result|%s|not-found\n" % (op, rid))
            elif op == "check":
                out.write("check-result|%s|found\n" % rid)
            else:
                out.write("lookup-result|%s|found|%s\n" % (rid, entries[key] or key))
        else:
            out.write("%s-result|%s|error|unsupported\n" % (op, f[5]))
        out.flush()


if __name__ == "__main__":
    main()
