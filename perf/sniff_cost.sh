#!/usr/bin/env bash
# What the sniff taps cost the workers when no sniff runs: whole-process instructions
# (cachegrind) of one replay, one worker, of the same capture by two release builds, the
# one before the taps and the one with them. Replaces its section of perf/RESULTS.md.
#
#   perf/sniff_cost.sh BEFORE_BINARY AFTER_BINARY [CAPTURE]
#
# BEFORE_BINARY: `cargo build --release` of the commit before the taps (f5078e6), copied
# aside. AFTER_BINARY: the same build of this tree. CAPTURE: default a synthetic one,
# `podtap synth --tcp-flows 2000 --requests 10 --udp-flows 500` (62,000 frames, 20,000
# HTTP/1.1 transactions). Instruction counts do not depend on the machine's load.
set -euo pipefail
. "$(dirname "$0")/lib.sh"
export LC_ALL=C
cd "$(dirname "$0")/.."
BEFORE=$1
AFTER=$2
CAP=${3:-perf/out/sniff-synth.pcap}
command -v valgrind >/dev/null || { echo "missing valgrind: make deps-test" >&2; exit 1; }
if [ ! -e "$CAP" ]; then
  mkdir -p "$(dirname "$CAP")"
  "$AFTER" synth "$CAP" --tcp-flows 2000 --requests 10 --udp-flows 500 2>/dev/null
fi
count() { PODTAP=$1 instructions "$CAP"; }
b1=$(count "$BEFORE"); a1=$(count "$AFTER"); b2=$(count "$BEFORE"); a2=$(count "$AFTER")
frames=$(capinfos -c -M "$CAP" | awk -F: '/Number of packets/ {gsub(/ /,"",$2); print $2}')
pct=$(awk -v b="$b1" -v a="$a1" 'BEGIN { printf "%+.3f", (a - b) * 100 / b }')
per=$(awk -v b="$b1" -v a="$a1" -v n="$frames" 'BEGIN { printf "%+.2f", (a - b) / n }')
fmt() { echo "$1" | sed ':a;s/\B[0-9]\{3\}\>/,&/;ta'; }
results_section "## Sniff taps: the worker path with no sniff active (instruction counts)" "$(cat <<EOF
## Sniff taps: the worker path with no sniff active (instruction counts)

\`podtap sniff\` takes frames from the daemon's workers (\`src/control/tap.rs\`). With no
sniff running a worker pays one relaxed atomic load per batch of up to 256 frames, which
picks the batch loop without the tap; the per-frame path is the code it was before.
Whole-process instructions of one replay of the same capture, table output, one worker,
release builds (fat LTO) of the commit before the taps (f5078e6) and with them, counted
by cachegrind (\`perf/sniff_cost.sh\`; the count does not depend on the machine's load):

| build | instructions (two runs) |
| --- | ---: |
| f5078e6 (before) | $(fmt "$b1") / $(fmt "$b2") |
| with the taps | $(fmt "$a1") / $(fmt "$a2") |

${pct}% (${per} instructions per frame, over ${frames} frames). The capture:
\`podtap synth --tcp-flows 2000 --requests 10 --udp-flows 500\` (HTTP/1.1 transactions
and UDP flows). The command, per build:

    valgrind --tool=cachegrind --cache-sim=no --cachegrind-out-file=/dev/null \\
      podtap replay CAPTURE --output table --workers 1
EOF
)"
echo "before $b1 / $b2, after $a1 / $a2 ($pct%)"
