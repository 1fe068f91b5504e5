#!/usr/bin/env python3
"""bench/idle.py - memory held by idle sessions: starts the built smtpd on
a loopback port in a temporary directory, opens N sessions (default 10000)
that each read the banner and get an EHLO answered, then sums VmRSS and
PSS over every daemon process.  Prints one line per measure and a JSON
line.

    bench/idle.py [N]        BUILDDIR=... selects the build (default: the tree)
"""
import asyncio
import json
import os
import resource
import shutil
import socket
import subprocess
import sys
import tempfile
import time

ROOT = os.path.dirname(os.path.dirname(os.path.abspath(__file__)))
BUILD = os.path.abspath(os.environ.get("BUILDDIR") or ROOT)
N = int(sys.argv[1]) if len(sys.argv) > 1 else 10000


def free_port():
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return s.getsockname()[1]


def tree(pid):
    out, todo = [], [pid]
    while todo:
        p = todo.pop()
        out.append(p)
        kids = subprocess.run(["pgrep", "-P", str(p)], capture_output=True, text=True).stdout
        todo.extend(int(k) for k in kids.split())
    return out


def memory(pids):
    rss = pss = 0
    for p in pids:
        try:
            with open("/proc/%d/smaps_rollup" % p) as f:
                for line in f:
                    if line.startswith("Rss:"):
                        rss += int(line.split()[1])
                    elif line.startswith("Pss:"):
                        pss += int(line.split()[1])
        except OSError:
            pass
    return rss, pss


async def session(port, keep, i):
    r, w = await asyncio.open_connection("127.0.0.1", port)
    line = await r.readline()
    if not line.startswith(b"220"):
        raise RuntimeError("banner: %r" % line)
    w.write(b"EHLO idle%d.bench.test\r\n" % i)
    await w.drain()
    while (await r.readline())[3:4] != b" ":
        pass
    keep.append(w)


async def open_all(port):
    keep, sem = [], asyncio.Semaphore(500)

    async def limited(i):
        async with sem:
            await session(port, keep, i)
    await asyncio.gather(*(limited(i) for i in range(N)))
    return keep


def main():
    want = N + 256
    soft, hard = resource.getrlimit(resource.RLIMIT_NOFILE)
    resource.setrlimit(resource.RLIMIT_NOFILE, (min(max(soft, want), hard), hard))
    work = tempfile.mkdtemp(prefix="msd-idle-")
    os.chmod(work, 0o755)   # the roles drop privileges and must reach the spool
    port = free_port()
    conf = os.path.join(work, "smtpd.conf")
    with open(conf, "w") as f:
        f.write('listen on 127.0.0.1 port %d\n'
                'action "local" maildir "%s/Maildir"\n'
                'match from any for domain "bench.test" action "local"\n' % (port, work))
    env = dict(os.environ, MODSMTPD_MODULE_PATH=os.path.join(BUILD, "modules"))
    log = open(os.path.join(work, "smtpd.log"), "w")
    d = subprocess.Popen([os.path.join(BUILD, "smtpd"), "-d", "-f", conf, "-s",
                          os.path.join(work, "spool")], stdout=log, stderr=log, env=env)
    try:
        end = time.monotonic() + 30
        while True:
            try:
                socket.create_connection(("127.0.0.1", port), 1).close()
                break
            except OSError:
                if time.monotonic() > end or d.poll() is not None:
                    sys.exit("smtpd did not start; see %s" % log.name)
                time.sleep(0.05)
        base = memory(tree(d.pid))
        t0 = time.monotonic()
        loop = asyncio.new_event_loop()
        try:
            keep = loop.run_until_complete(open_all(port))
        except OSError as e:
            log.flush()
            with open(log.name) as f:
                sys.exit("sessions failed (%s); smtpd log:\n%s" % (e, f.read()[-3000:]))
        settled = time.monotonic() - t0
        pids = tree(d.pid)
        rss, pss = memory(pids)
        print("sessions:     %d idle after EHLO, settled in %.1f s" % (len(keep), settled))
        print("RSS:          %.1f MB summed over %d processes (%.1f MB before)"
              % (rss / 1024, len(pids), base[0] / 1024))
        print("PSS:          %.1f MB (%.1f MB before): %.2f KB per session"
              % (pss / 1024, base[1] / 1024, (pss - base[1]) / max(len(keep), 1)))
        print("json: " + json.dumps({"sessions": len(keep), "rss_kb": rss, "pss_kb": pss,
                                     "base_rss_kb": base[0], "base_pss_kb": base[1],
                                     "settle_s": round(settled, 2)}))
        for w in keep:
            w.close()
        loop.close()
    finally:
        d.terminate()
        d.wait(30)
        shutil.rmtree(work, ignore_errors=True)


if __name__ == "__main__":
    main()
