#!/bin/bash
# bench/queue-crypt.sh - what `queue compression` and `queue encryption`
# cost: bench/throughput.sh (postfix's smtp-source, N messages over
# SESSIONS sessions into a Maildir) run four times in the same run: with
# neither, compression, encryption, and both.  Prints msgs/s accepted and
# delivered for each and the ratio to the run with neither.
#
#   bench/queue-crypt.sh                N=2000 SESSIONS=20 SIZE=2048
#   N= SESSIONS= SIZE= PORT= BUILDDIR=  parameters
set -euo pipefail

. "$(dirname "$0")/../scripts/lib.sh"

# A fixed test key: the bench measures the cipher, not key handling.
KEY=0123456789abcdef0123456789abcdef

plain=$(msd_bench_run "neither" QUEUE_CONF=)
zlib=$(msd_bench_run "compression" QUEUE_CONF="queue compression")
aes=$(msd_bench_run "encryption" QUEUE_CONF="queue encryption $KEY")
both=$(msd_bench_run "both" QUEUE_CONF="$(printf 'queue compression\nqueue encryption %s' "$KEY")")

python3 - "$plain" "$zlib" "$aes" "$both" <<'PY'
import json, sys
runs = [json.loads(a) for a in sys.argv[1:]]
names = ("neither", "compression", "encryption", "both")
a = runs[0]
print("messages: %d of %d bytes over %d sessions" % (a["n"], a["size"], a["sessions"]))
for k, what in (("accept_msgs_s", "accepted"), ("deliver_msgs_s", "delivered")):
    print("%s:" % what)
    for name, r in zip(names, runs):
        print("  %-12s %7.1f msgs/s   ratio %.2f" % (name, r[k], r[k] / a[k]))
print("json: " + json.dumps(dict(zip(names, runs))))
PY
