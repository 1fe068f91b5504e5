#!/bin/bash
# bench/filter.sh - what a proc-exec filter costs: bench/throughput.sh
# (postfix's smtp-source, N messages over SESSIONS sessions into a Maildir)
# run twice in the same run, without a filter and with a pass-through
# filter registered for every report event and every phase, data-line
# included (examples/filter-stdio.py: proceeds and echoes every line).
# Prints msgs/s accepted and delivered for both and the ratio.
#
#   bench/filter.sh                     N=2000 SESSIONS=20 SIZE=2048
#   N= SESSIONS= SIZE= PORT= BUILDDIR= FILTER_CMD="command"   parameters
#
# FILTER_CMD replaces the pass-through filter (any smtpd-filters program).
set -euo pipefail

. "$(dirname "$0")/../scripts/lib.sh"
# the system python: the filter user cannot reach one under a home directory
PYTHON=/usr/bin/python3
[ -x "$PYTHON" ] || PYTHON=$(command -v python3)

# The filter runs as the daemon's unprivileged user: a copy it can read.
dir=$(mktemp -d /var/tmp/msd-fbench.XXXXXX)
trap 'rm -rf "$dir"' EXIT
chmod 0755 "$dir"
install -m 0755 "$MSD_ROOT/examples/filter-stdio.py" "$dir/filter-stdio.py"
filter=${FILTER_CMD:-$PYTHON $dir/filter-stdio.py}

plain=$(msd_bench_run "no filter" FILTER=)
filtered=$(msd_bench_run "filter" FILTER="$filter")

python3 - "$plain" "$filtered" "$filter" <<'EOF'
import json, sys
a, b, cmd = json.loads(sys.argv[1]), json.loads(sys.argv[2]), sys.argv[3]
print("messages: %d of %d bytes over %d sessions" % (a["n"], a["size"], a["sessions"]))
print("filter:   %s (every event, every phase, data-line)" % cmd)
for k, what in (("accept_msgs_s", "accepted"), ("deliver_msgs_s", "delivered")):
    print("%-10s no filter %7.1f msgs/s   filter %7.1f msgs/s   ratio %.2f"
          % (what + ":", a[k], b[k], b[k] / a[k]))
print("json: " + json.dumps({"plain": a, "filter": b}))
EOF
