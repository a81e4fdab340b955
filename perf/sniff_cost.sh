#!/usr/bin/env bash
# What the sniff taps cost the workers when no sniff runs: whole-process instructions
# (cachegrind) of one replay, one worker, of the same captures by two release builds, the
# one before the taps and the one with them. Replaces its section of perf/RESULTS.md.
#
#   perf/sniff_cost.sh BEFORE_BINARY AFTER_BINARY
#
# BEFORE_BINARY: `cargo build --release` of the commit before the taps (f5078e6), copied
# aside; AFTER_BINARY: the same build of this tree. The captures are synthetic
# (`podtap synth`): a large one (620,000 frames: 20,000 HTTP/1.1 connections of 10
# requests, 5,000 UDP flows) and a tiny one (8 frames) that measures start-up alone, so
# the difference per frame is the large one's difference less the start-up's.
# Instruction counts do not depend on the machine's load.
set -euo pipefail
. "$(dirname "$0")/lib.sh"
export LC_ALL=C
cd "$(dirname "$0")/.."
BEFORE=$1
AFTER=$2
command -v valgrind >/dev/null || { echo "missing valgrind: make deps-test" >&2; exit 1; }
mkdir -p perf/out
BIG=perf/out/sniff-big.pcap
TINY=perf/out/sniff-tiny.pcap
[ -e "$BIG" ] || "$AFTER" synth "$BIG" --tcp-flows 20000 --requests 10 --udp-flows 5000 2>/dev/null
[ -e "$TINY" ] || "$AFTER" synth "$TINY" --tcp-flows 1 --requests 1 2>/dev/null
count() { PODTAP=$1 instructions "$2"; }
bb1=$(count "$BEFORE" "$BIG"); ab1=$(count "$AFTER" "$BIG")
bb2=$(count "$BEFORE" "$BIG"); ab2=$(count "$AFTER" "$BIG")
bt=$(count "$BEFORE" "$TINY"); at=$(count "$AFTER" "$TINY")
frames=620000
fmt() { echo "$1" | sed ':a;s/\B[0-9]\{3\}\>/,&/;ta'; }
pct=$(awk -v b="$bb1" -v a="$ab1" 'BEGIN { printf "%+.3f", (a - b) * 100 / b }')
per=$(awk -v b="$bb1" -v a="$ab1" -v bt="$bt" -v at="$at" -v n="$frames" \
  'BEGIN { printf "%+.2f", ((a - b) - (at - bt)) / n }')
results_section "## Sniff taps: the worker path with no sniff active (instruction counts)" "$(cat <<EOF
## Sniff taps: the worker path with no sniff active (instruction counts)

\`podtap sniff\` takes frames from the daemon's workers (\`src/control/tap.rs\`). With no
sniff running a worker pays one relaxed atomic load per batch of up to 256 frames, which
picks the batch loop without the tap; in that loop \`Worker::process\` is inlined as
before (\`#[inline(always)]\`: with a second call site, the loop with the tap, the
compiler had stopped inlining it, which cost about 3 instructions per frame in a first
measurement). Whole-process instructions of one replay, table output, one worker,
release builds (fat LTO) of the commit before the taps (f5078e6) and with them, counted
by cachegrind (\`perf/sniff_cost.sh\`):

| capture | f5078e6 (before) | with the taps |
| --- | ---: | ---: |
| 620,000 frames (two runs) | $(fmt "$bb1") / $(fmt "$bb2") | $(fmt "$ab1") / $(fmt "$ab2") |
| 8 frames (start-up) | $(fmt "$bt") | $(fmt "$at") |

${pct}% on the large capture; ${per} instructions per frame once the start-up
difference (the longer embedded config and the two new subcommands' definitions) is
taken out (start-up counts vary by about 200,000 from run to run with the threads'
polling: +-0.3 per frame). The ~2,400 atomic loads (one per batch) are lost in that; the
rest is the compiler laying the loop out differently. Nothing measurable. The
captures: \`podtap synth --tcp-flows 20000 --requests 10 --udp-flows 5000\` and
\`podtap synth --tcp-flows 1 --requests 1\`. The command, per build and capture:

    valgrind --tool=cachegrind --cache-sim=no --cachegrind-out-file=/dev/null \\
      podtap replay CAPTURE --output table --workers 1
EOF
)"
echo "large: before $bb1 / $bb2, after $ab1 / $ab2 ($pct%); start-up $bt -> $at; $per per frame"
