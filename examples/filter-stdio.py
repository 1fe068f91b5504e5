#!/usr/bin/env python3
"""filter-stdio.py - a pass-through smtpd-filters(7) filter on stdio.

Registers every smtp-in report event and every filter phase (data-line
included), answers `proceed` and echoes data lines unchanged, so it is a
starting point for a filter of your own, and the filter the integration
tests drive (tests/integration/test_filters.py).

    filter "stdio" proc-exec "/usr/bin/python3 /path/filter-stdio.py [-l LOG] [-r RULES] [-H HEADER]"

-l LOG    append every line the server sends to LOG (flushed per line)
-r RULES  a JSON file read again for every request: a list of
          {"phase": "rcpt-to", "match": "bad@", "decision": "reject",
           "param": "550 5.7.1 No"}; the first rule whose phase is the
          request's and whose "match" (optional) is in its parameter
          decides; the file may also hold {"hang": true}: no more answers.
-H HEADER a header line ("X-Name: value") put in front of each message
"""

import json
import os
import sys

PHASES = ("connect", "helo", "ehlo", "starttls", "auth", "mail-from", "rcpt-to",
          "data", "data-line", "rset", "quit", "noop", "commit")


def rules(path):
    if not path:
        return []
    try:
        with open(path) as f:
            return json.load(f)
    except (OSError, ValueError):
        return []


def decide(path, phase, param):
    rs = rules(path)
    if isinstance(rs, dict):
        return None if rs.get("hang") else "proceed"
    for r in rs:
        if r.get("phase") == phase and r.get("match", "") in param:
            if r.get("decision") == "garbage":
                return "garbage"
            if r.get("decision") == "exit":
                sys.exit(3)
            if "param" in r:
                return "%s|%s" % (r["decision"], r["param"])
            return r["decision"]
    return "proceed"


def main():
    args = sys.argv[1:]
    log = rpath = header = None
    while args:
        opt = args.pop(0)
        if opt == "-l":
            log = open(args.pop(0), "ab", buffering=0)
        elif opt == "-r":
            rpath = args.pop(0)
        elif opt == "-H":
            header = args.pop(0).encode()
        else:
            sys.exit("usage: filter-stdio.py [-l LOG] [-r RULES] [-H HEADER]")
    started = set()                      # sessions inside a message
    out = sys.stdout.buffer
    inp = sys.stdin.buffer

    def send(line):
        out.write(line + b"\n")
        out.flush()

    for line in inp:                     # the config lines
        if log:
            log.write(line)
        if line.rstrip(b"\n") == b"config|ready":
            break
    send(b"register|report|smtp-in|*")
    for p in PHASES:
        send(b"register|filter|smtp-in|" + p.encode())
    send(b"register|ready")
    print("filter-stdio: registered", file=sys.stderr, flush=True)

    for line in inp:
        if log:
            log.write(line)
        line = line.rstrip(b"\n")
        f = line.split(b"|", 7)
        if f[0] != b"filter" or len(f) < 8:
            continue
        phase, sid, token, param = f[4].decode(), f[5], f[6], f[7]
        if phase == "data-line":
            if header and sid not in started:
                started.add(sid)
                send(b"filter-dataline|" + sid + b"|" + token + b"|" + header)
            if param == b".":
                started.discard(sid)
            send(b"filter-dataline|" + sid + b"|" + token + b"|" + param)
            continue
        d = decide(rpath, phase, param.decode(errors="replace"))
        if d is None:
            continue
        if d == "garbage":
            send(b"this is not the protocol")
            continue
        send(b"filter-result|" + sid + b"|" + token + b"|" + d.encode())


if __name__ == "__main__":
    try:
        main()
    except (BrokenPipeError, KeyboardInterrupt):
        pass
