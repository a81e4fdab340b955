#!/usr/bin/env bash
# JSON lines cost: how many bytes of JSON lines one core writes per second. The same
# capture is replayed with `--output table` (decode, flows, transactions, summary) and
# with `--output jsonl` to /dev/null (the same, plus the writer thread turning every record
# into a line); the difference in the process's CPU time is what the JSON lines cost.
# Replaces its own section of perf/RESULTS.md and leaves the others alone.
#
#   perf/jsonl_bench.sh                       # ~100k keep-alive transactions, 11 pairs
#   PAIRS=5 COPIES=1 perf/jsonl_bench.sh
#   BASELINE=/tmp/podtap-old BASELINE_NAME="abc1234 (before)" perf/jsonl_bench.sh
#                                             # also measure another build in the same run
#
# CPU time is user + system time of the podtap process and all its threads (wait4's
# rusage), not wall time: the machine is shared with other builds, and time spent waiting
# for a core is not the program's cost. Runs go in back-to-back pairs (table, then jsonl)
# so that both see the same machine; the rate is the median of the pairs' rates.
# Instruction counts (cachegrind, one run of each) do not wander and are given too.
#
# Input: a real HTTP/1.1 capture (perf/http_capture.sh: nginx serving hey's small
# keep-alive requests, then curl's 100 KiB bodies, in network namespaces), made once and
# kept in perf/out (FRESH=1 makes it again).
set -euo pipefail
. "$(dirname "$0")/lib.sh"
export LC_ALL=C
cd "$(dirname "$0")/.."
export PATH="$HOME/.cargo/bin:$PATH"
OUT=perf/out
mkdir -p "$OUT"
PAIRS=${PAIRS:-11}
COPIES=${COPIES:-3}
HEY_N=${HEY_N:-100000}
BIG_N=${BIG_N:-200}
FRESH=${FRESH:-0}
BASELINE=${BASELINE:-}
BASELINE_NAME=${BASELINE_NAME:-$(basename "${BASELINE:-none}")}

command -v valgrind >/dev/null || { echo "missing valgrind: apt-get install valgrind" >&2; exit 1; }
if [ -z "${PODTAP:-}" ]; then
  PODTAP=$(pgo/build.sh)
fi
PCAP=$OUT/http-jsonl.pcap
if [ "$FRESH" = 1 ] || [ ! -s "$PCAP" ]; then
  perf/http_capture.sh "$PCAP" "$HEY_N" "$BIG_N"
fi

TMP=$(mktemp -d)
trap 'rm -rf "$TMP"' EXIT
# user + system seconds and peak RSS (KiB) of one run, its stdout to /dev/null.
cat > "$TMP/cpu.py" <<'PY'
import os, sys
pid = os.fork()
if pid == 0:
    null = os.open("/dev/null", os.O_WRONLY)
    os.dup2(null, 1)
    os.dup2(null, 2)
    os.execvp(sys.argv[1], sys.argv[1:])
_, status, ru = os.wait4(pid, 0)
if status != 0:
    sys.exit(f"{sys.argv[1:]} failed: status {status}")
print(f"{ru.ru_utime + ru.ru_stime:.6f} {ru.ru_maxrss}")
PY
FILES=(); for _ in $(seq "$COPIES"); do FILES+=("$PCAP"); done
replay() { "$1" replay "${FILES[@]}" --workers 1 --output "$2"; }
# The capture and the program read from the page cache, not the disk (see replay_bench.sh).
warm() { cat "$1" "$PCAP" >/dev/null; }
lo() { printf '%s\n' "$@" | sort -g | head -1; }
hi() { printf '%s\n' "$@" | sort -g | tail -1; }
irefs() {
  valgrind --tool=cachegrind --cache-sim=no --cachegrind-out-file=/dev/null "$1" replay "$PCAP" --workers 1 --output "$2" 2>&1 >/dev/null \
    | awk '/I *refs/ {gsub(/,/, "", $4); print $4}'
}

LINES=$(replay "$PODTAP" jsonl 2>/dev/null | wc -l)
BYTES=$(replay "$PODTAP" jsonl 2>/dev/null | wc -c)
LINES1=$(( LINES / COPIES ))
# bench NAME BINARY: PAIRS pairs, then one cachegrind run of each mode; prints a table row.
bench() {
  local name=$1 bin=$2 t j rate rates=() ct=() cj=() rt=() rj=() bytes
  bytes=$(replay "$bin" jsonl 2>/dev/null | wc -c)
  [ "$bytes" = "$BYTES" ] || echo "note: $name writes $bytes bytes, $(basename "$PODTAP") $BYTES" >&2
  for _ in $(seq "$PAIRS"); do
    warm "$bin"; read -r t rss_t < <(python3 "$TMP/cpu.py" "$bin" replay "${FILES[@]}" --workers 1 --output table)
    warm "$bin"; read -r j rss_j < <(python3 "$TMP/cpu.py" "$bin" replay "${FILES[@]}" --workers 1 --output jsonl)
    ct+=("$t"); cj+=("$j"); rt+=("$rss_t"); rj+=("$rss_j")
    rate=$(awk -v b="$bytes" -v t="$t" -v j="$j" 'BEGIN { d = j - t; if (d < 0.0005) d = 0.0005; printf "%.0f", b / d / 1e6 }')
    rates+=("$rate")
    echo "$name pair: table $t s, jsonl $j s, $rate MB/s" >&2
  done
  local it ij
  it=$(irefs "$bin" table); ij=$(irefs "$bin" jsonl)
  echo "| $name | $(med "${ct[@]}") | $(med "${cj[@]}") | $(awk -v a="$(med "${cj[@]}")" -v b="$(med "${ct[@]}")" -v n="$LINES" 'BEGIN { printf "%.2f", (a - b) / n * 1e6 }') | **$(med "${rates[@]}")** ($(lo "${rates[@]}"), $(hi "${rates[@]}")) | $(( $(med "${rt[@]}") / 1024 )) | $(( $(med "${rj[@]}") / 1024 )) | $(( (ij - it) / LINES1 )) |"
  echo "$name: $(printf '%s ' "${rates[@]}")" >> "$TMP/rates"
}
: > "$TMP/rates"
ROWS=$(
  if [ -n "$BASELINE" ]; then bench "$BASELINE_NAME" "$BASELINE"; fi
  bench "this tree ($(git rev-parse --short HEAD)$(git diff --quiet HEAD -- src || echo '+changes'))" "$PODTAP"
)

SECTION=$(cat <<EOF
## JSON lines output (\`perf/jsonl_bench.sh\`)

Latest run: $(date -u +%Y-%m-%dT%H:%M:%SZ) on $(nproc) cores ($(grep -m1 'model name' /proc/cpuinfo | cut -d: -f2 | sed 's/^ //')), load average before the run: $(cut -d' ' -f1-3 /proc/loadavg).
Command: \`PAIRS=$PAIRS COPIES=$COPIES$( [ -n "$BASELINE" ] && echo " BASELINE=<build of $BASELINE_NAME>") perf/jsonl_bench.sh\`: \`podtap replay $(basename "$PCAP") x$COPIES --workers 1 --output table\`
then \`--output jsonl >/dev/null\`, back to back, $PAIRS pairs. The capture (\`perf/http_capture.sh $PCAP $HEY_N $BIG_N\`) is
hey's small keep-alive requests to nginx, then curl's 100 KiB bodies: $LINES1 JSON lines per pass (transactions and flows),
$(( BYTES / COPIES )) bytes, $(( BYTES / LINES )) bytes per line on average; $COPIES passes per run: $LINES lines, $BYTES bytes.

CPU time is user + system time of the whole process (every thread, from \`wait4\`), not wall time: the
machine is shared with other builds. JSON lines MB/s per core = bytes written / (CPU time with jsonl - CPU time
with table), per pair; the median of the pairs (minimum, maximum). Instructions: cachegrind, one pass each way.

| build | CPU s, table | CPU s, jsonl | extra CPU us per line | JSON lines MB/s per core (median of pairs; min, max) | peak RSS MiB, table | peak RSS MiB, jsonl | extra instructions per line |
| --- | ---: | ---: | ---: | ---: | ---: | ---: | ---: |
$ROWS

Target (issue 21, JSON cost): >= 1 GB/s of JSON lines per core.

Per-pair rates, MB/s:

\`\`\`
$(cat "$TMP/rates")
\`\`\`
EOF
)
results_section "## JSON lines output" "$SECTION"
echo "$SECTION"
