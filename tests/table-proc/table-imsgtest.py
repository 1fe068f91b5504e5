#!/usr/bin/env python3
"""table-imsgtest.py - a table program speaking the old imsg table protocol
(API version 2, OpenSMTPD <= 7.5, as Debian's opensmtpd-extras binaries
do), for the tests of modsmtpd's `proc` table backend when those binaries
cannot be had.

It behaves as their shared table API does where it matters here: it reads
16-byte native-endian headers {u32 type, u16 len, u16 flags, u32 peerid,
u32 pid}, exits at once (writing nothing) on a length outside 16..16384 -
which is what the line protocol's handshake looks like to it - and answers
on fd 0, the socket it reads.

Data: userinfo alice -> 1000:1000:/home/alice; domain (list) example.org;
source (fetch) 192.0.2.1, 192.0.2.2.  argv[1] is a comma-separated list of
switches: sleep=KEY (10 s), exit=KEY (status 3), garbage=KEY (a reply
with a bad length), fail=KEY (a FAIL reply), log=PATH (one line per
message type received).
"""

import os
import struct
import sys
import time

HDR = struct.Struct("=IHHII")
OK, FAIL, OPEN, CLOSE, UPDATE, CHECK, LOOKUP, FETCH = range(8)
K_DOMAIN, K_USERINFO, K_SOURCE = 0x002, 0x010, 0x020
USERINFO = {"alice": "1000:1000:/home/alice"}
DOMAINS = ["example.org"]
SOURCES = ["192.0.2.1", "192.0.2.2"]
IMSG_MAX = 16384


def switches():
    sw = {}
    for item in (sys.argv[1] if len(sys.argv) > 1 else "").split(","):
        if "=" in item:
            k, v = item.split("=", 1)
            sw[k] = v
    return sw


def read_exact(n):
    buf = b""
    while len(buf) < n:
        chunk = os.read(0, n - len(buf))
        if not chunk:
            sys.exit(0)
        buf += chunk
    return buf


def reply(type_, payload=b""):
    os.write(0, HDR.pack(type_, HDR.size + len(payload), 0, 0, os.getpid()) + payload)


def main():
    sw = switches()
    log = open(sw["log"], "a") if "log" in sw else None
    next_source = 0
    while True:
        type_, length, _flags, _peer, _pid = HDR.unpack(read_exact(HDR.size))
        if length < HDR.size or length > IMSG_MAX:
            sys.stderr.write("table-imsgtest: imsg_get: Result too large\n")
            sys.exit(1)
        data = read_exact(length - HDR.size)
        if log:
            log.write("type %d len %d\n" % (type_, length))
            log.flush()
        if type_ == OPEN:
            (version,) = struct.unpack_from("=I", data)
            if version != 2 or len(data) != 4 + 2048:
                sys.exit(1)
            reply(OK)
        elif type_ == CLOSE:
            sys.exit(0)
        elif type_ == UPDATE:
            reply(OK, struct.pack("=i", 1))
        elif type_ in (CHECK, LOOKUP):
            service, nparams = struct.unpack_from("=iQ", data)
            key = data[12:]
            if nparams != 0 or not key.endswith(b"\0"):
                sys.exit(1)
            key = key[:-1].decode()
            if sw.get("sleep") == key:
                time.sleep(10)
            if sw.get("exit") == key:
                sys.exit(3)
            if sw.get("garbage") == key:
                os.write(0, b"\xff" * 20)
                continue
            if sw.get("fail") == key:
                reply(FAIL)
                continue
            if type_ == CHECK:
                found = service == K_DOMAIN and key in DOMAINS
                reply(OK, struct.pack("=i", 1 if found else 0))
            elif service == K_USERINFO and key in USERINFO:
                reply(OK, struct.pack("=i", 1) + USERINFO[key].encode() + b"\0")
            elif service == K_USERINFO:
                reply(OK, struct.pack("=i", 0))
            else:
                reply(OK, struct.pack("=i", -1))
        elif type_ == FETCH:
            (service,) = struct.unpack_from("=i", data)
            if service != K_SOURCE:
                reply(OK, struct.pack("=i", -1))
                continue
            value = SOURCES[next_source % len(SOURCES)]
            next_source += 1
            reply(OK, struct.pack("=i", 1) + value.encode() + b"\0")
        else:
            sys.exit(1)


if __name__ == "__main__":
    main()
