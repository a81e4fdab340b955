#!/usr/bin/env bash
# Replay benchmark: podtap replay against tcpdump -r and tshark -r on the same captures,
# measured in the same run. Writes perf/RESULTS.md.
#
#   perf/replay_bench.sh            # full run (a few minutes)
#   QUICK=1 perf/replay_bench.sh    # smaller captures
#
# Captures are generated here: a synthetic 64-byte-payload TCP/UDP capture with many
# flows (`podtap synth`), and a real HTTP/1.1 capture of nginx serving hey and curl in two
# network namespaces joined by a veth pair (nothing leaves the namespaces;
# perf/http_capture.sh).
set -euo pipefail
. "$(dirname "$0")/lib.sh"
# (A C locale: `$EPOCHREALTIME` and awk then agree on the decimal point.)
export LC_ALL=C
cd "$(dirname "$0")/.."
export PATH="$HOME/.cargo/bin:$PATH"
OUT=perf/out
mkdir -p "$OUT"
QUICK=${QUICK:-0}
RUNS=${RUNS:-5}
# Back-to-back podtap/tshark pairs for the HTTP ratio: podtap's run is a tenth of a second
# and the machine's speed wanders, so its ratio needs more readings than the other figures.
PAIRS=${PAIRS:-9}
# tcpdump and tshark are far slower than podtap: they run on the first PREFIX packets.
PREFIX=${PREFIX:-300000}

need() { command -v "$1" >/dev/null || { echo "missing $1: make deps-test (or apt-get install $2)" >&2; exit 1; }; }
need tcpdump tcpdump; need tshark tshark; need editcap tshark; need nginx nginx-light; need hey hey; need /usr/bin/time time; need valgrind valgrind

PODTAP=$(pgo/build.sh)

# --- captures ---------------------------------------------------------------------------
SMALL=$OUT/small64.pcap
if [ "$QUICK" = 1 ]; then FLOWS=5000; REQS=10; HEY_N=20000; BIG_N=200; else FLOWS=20000; REQS=25; HEY_N=150000; BIG_N=1500; fi
"$PODTAP" synth "$SMALL" --tcp-flows "$FLOWS" --udp-flows "$FLOWS" --requests "$REQS" --payload 64 2>/dev/null

HTTP=$OUT/http.pcap
TMP=$(mktemp -d)
trap 'rm -rf "$TMP"' EXIT
perf/http_capture.sh "$HTTP" "$HEY_N" "$BIG_N"

# --- measurements ------------------------------------------------------------------------
# Every timed run reads its capture, its program and the program's shared libraries from
# the page cache: this machine pages out file cache that is not mapped (a DAMON pageout
# scheme), so between two runs a program's own pages go too, and a tenth-of-a-second podtap
# run that waits for the disk measures the disk. Every tool gets the same treatment: its
# executable, the libraries `ldd` lists, and for tshark its plugin and data folders
# (listed once here, read before each run by `warm`).
declare -A PROG_FILES
for prog in "$PODTAP" tcpdump tshark; do
  exe=$(command -v "$prog")
  dirs=""; [ "$prog" = tshark ] && dirs=$(tshark -G folders 2>/dev/null | awk -F'\t' '/^Global (Plugins|configuration):/ {print $2}')
  PROG_FILES[$exe]=$( { echo "$exe"; ldd "$exe" 2>/dev/null | awk '$3 ~ /^\// {print $3}'; for d in $dirs; do find "$d" -type f; done; } | tr '\n' ' ')
done
warm() {
  local a exe; exe=$(command -v "$1" 2>/dev/null) || exe=""
  # shellcheck disable=SC2086 # a list of paths without spaces
  [ -n "$exe" ] && [ -n "${PROG_FILES[$exe]:-}" ] && cat ${PROG_FILES[$exe]} >/dev/null 2>&1
  for a in "$@"; do case "$a" in *.pcap|*.pcapng) cat "$a" >/dev/null ;; esac; done
}
# Seconds between two `$EPOCHREALTIME` readings, to four decimals (a millisecond is over
# 1% of a podtap run). The readings are taken in the caller: a `$(...)` around the clock
# would count the start of a subshell.
secs() { awk -v a="$1" -v b="$2" 'BEGIN { printf "%.4f", b - a }'; }
frames() { capinfos -c -M "$1" 2>/dev/null | awk -F: '/Number of packets/ {gsub(/ /,"",$2); print $2}'; }
# median wall seconds of RUNS runs of a command; $TMP/time keeps the last run's peak RSS
# (wall time from bash's microsecond clock: /usr/bin/time's 10 ms steps are several percent
# of a 0.2 s run, and `$(date +%s%N)` would count the start of a `date` process, about
# 1.4 ms here, into every reading)
measure() {
  local times=() t0 t1
  for _ in $(seq $RUNS); do
    warm "$@"
    t0=$EPOCHREALTIME
    /usr/bin/time -f "%e %M" -o "$TMP/time" "$@" >/dev/null 2>&1 || true
    t1=$EPOCHREALTIME
    times+=("$(secs "$t0" "$t1")")
  done
  printf '%s\n' "${times[@]}" | sort -g | sed -n "$(( (RUNS + 1) / 2 ))p"
}
rate() { awk -v n="$1" -v t="$2" 'BEGIN { if (t < 0.001) t = 0.001; printf "%.0f", n / t }'; }

row() { # name file packets seconds key
  local pps; pps=$(rate "$3" "$4")
  local rss; rss=$(cut -d' ' -f2 "$TMP/time")  # peak RSS of the last measured run
  echo "| $1 | $(basename "$2") | $3 | $4 | $pps | $(awk -v r="$rss" 'BEGIN{printf "%.0f", r/1024}') |" >> "$TMP/rows"
  eval "PPS_$5=$pps"
}
: > "$TMP/rows"
for f in "$SMALL" "$HTTP"; do
  n=$(frames "$f"); key=$( [ "$f" = "$SMALL" ] && echo S || echo H )
  bytes=$(stat -c %s "$f")
  editcap -r "$f" "$TMP/prefix.pcap" 1-"$PREFIX" 2>/dev/null
  np=$(frames "$TMP/prefix.pcap")
  t=$(measure "$PODTAP" replay "$f" --output table --workers 1); row "podtap replay --workers 1" "$f" "$n" "$t" "${key}_podtap"
  eval "GBPS_$key=$(awk -v b="$bytes" -v t="$t" 'BEGIN{printf "%.2f", b*8/t/1e9}')"
  "$PODTAP" replay "$f" --output table --workers 1 2>/dev/null | awk '/^event/,/^$/' > "$OUT/events-$key.txt" || true
  t=$(measure "$PODTAP" replay "$TMP/prefix.pcap" --output table --workers 1); row "podtap replay (prefix)" "$f" "$np" "$t" "${key}_podtap_prefix"
  t=$(measure tcpdump -nn -r "$TMP/prefix.pcap"); row "tcpdump -nn -r (prefix)" "$f" "$np" "$t" "${key}_tcpdump"
  t=$(measure tcpdump -nn -S -r "$TMP/prefix.pcap"); row "tcpdump -nn -S -r (prefix)" "$f" "$np" "$t" "${key}_tcpdumpS"
  t=$(measure tshark -n -r "$TMP/prefix.pcap"); row "tshark -n -r (prefix)" "$f" "$np" "$t" "${key}_tshark"
done
# HTTP decoding: podtap's transactions per second against tshark's HTTP dissection.
t_pod=$(measure "$PODTAP" replay "$HTTP" --output table --workers 1)
TX=$("$PODTAP" replay "$HTTP" --output table --workers 1 2>/dev/null | awk '/^packets/ {print $8}')
# podtap against tshark -Y http on the same prefix, in pairs run back to back (podtap, then
# tshark): the machine's speed wanders over minutes, and a ratio of two medians taken
# minutes apart carries that wander. The ratio is the median of the pairs' ratios.
wall() { local t0 t1; warm "$@"; t0=$EPOCHREALTIME; "$@" >/dev/null 2>&1 || true; t1=$EPOCHREALTIME; secs "$t0" "$t1"; }
pair_r=(); pair_p=(); pair_t=()
for _ in $(seq $PAIRS); do
  tp=$(wall "$PODTAP" replay "$TMP/prefix.pcap" --output table --workers 1)
  tt=$(wall tshark -n -r "$TMP/prefix.pcap" -Y http)
  pair_p+=("$tp"); pair_t+=("$tt")
  pair_r+=("$(awk -v p="$tp" -v t="$tt" 'BEGIN { printf "%.2f", t / p }')")
done
t_tsh=$(med "${pair_t[@]}")
HTTP_PREFIX_PPS=$(rate "$np" "$t_tsh")
TXPS=$(rate "$TX" "$t_pod")
ratio() { awk -v a="$1" -v b="$2" 'BEGIN { printf "%.1f", a / b }'; }
# Small keep-alive requests alone: the prefix is the hey part of the capture (2 frames per
# request). Per core: podtap prints its worker thread's own CPU time, which leaves out
# start-up, the writer thread and time the virtual machine's host gave to others.
TX_P=$("$PODTAP" replay "$TMP/prefix.pcap" --output table --workers 1 2>/dev/null | awk '/^packets/ {print $8}')
t_pod_p=$(measure "$PODTAP" replay "$TMP/prefix.pcap" --output table --workers 1)
TXPS_P=$(rate "$TX_P" "$t_pod_p")
# Median (minimum, maximum) of 2 * RUNS + 1 readings of a per-core rate from the
# `worker cpu ... P packets/s, T transactions/s per core` line; $2 picks the field (from
# the end of the line: 5 packets, 3 transactions).
per_core() {
  local v=()
  for _ in $(seq $((RUNS * 2 + 1))); do
    warm "$1"
    v+=("$("$PODTAP" replay "$1" --output table --workers 1 2>/dev/null | awk -v k="$2" '/^worker cpu/ {print $(NF-k)}')")
  done
  echo "$(med "${v[@]}") ($(printf '%s\n' "${v[@]}" | sort -g | head -1), $(printf '%s\n' "${v[@]}" | sort -g | tail -1))"
}
TXPS_CORE=$(per_core "$TMP/prefix.pcap" 3)
PPS_S_CORE=$(per_core "$SMALL" 5)

# Pod attribution on vs off on the HTTP capture: a static map names both ends (by CIDR)
# and the observation point; runs alternate off/on so both see the same machine state.
cat > "$TMP/pods.toml" <<MAP
[[pod]]
name = "web-0"
namespace = "bench"
cidrs = ["10.77.0.1/32"]
obs = [0]
workload = { kind = "Deployment", name = "web" }
labels = { app = "web" }

[[pod]]
name = "hey-0"
namespace = "bench"
cidrs = ["10.77.0.2/32"]
workload = { kind = "Deployment", name = "hey" }
MAP
printf '[attribution]\nenabled = false\n' > "$TMP/attr-off.toml"
printf '[attribution]\nreplay = true\nnetns = false\nresync_secs = 0\nstatic_map = "%s"\n' "$TMP/pods.toml" > "$TMP/attr-on.toml"
ATTR_NAMED=$("$PODTAP" --config "$TMP/attr-on.toml" replay "$HTTP" --output jsonl --workers 1 2>/dev/null \
  | grep '"podtap.record":"transaction"' | grep -c '"server.k8s.pod.name":"web-0"' || true)
# The capture replays in a fraction of a second: ATTR_COPIES passes of it in one run (each
# a fresh flow table, so every flow is resolved again) make the difference measurable.
ATTR_COPIES=${ATTR_COPIES:-10}
ATTR_FILES=(); for _ in $(seq "$ATTR_COPIES"); do ATTR_FILES+=("$HTTP"); done
a_off=(); a_on=()
for _ in $(seq $((RUNS + 2))); do
  for m in off on; do
    warm "$HTTP"
    t0=$EPOCHREALTIME
    "$PODTAP" --config "$TMP/attr-$m.toml" replay "${ATTR_FILES[@]}" --output table --workers 1 >/dev/null 2>&1
    t1=$EPOCHREALTIME
    eval "a_$m+=($(secs "$t0" "$t1"))"
  done
done
T_ATTR_OFF=$(med "${a_off[@]}"); T_ATTR_ON=$(med "${a_on[@]}")
N_H=$(( $(frames "$HTTP") * ATTR_COPIES ))
PPS_ATTR_OFF=$(rate "$N_H" "$T_ATTR_OFF"); PPS_ATTR_ON=$(rate "$N_H" "$T_ATTR_ON")
ATTR_LOSS=$(awk -v a="$PPS_ATTR_OFF" -v b="$PPS_ATTR_ON" 'BEGIN { printf "%.1f", 100 * (a - b) / a }')
# Wall time on a shared virtual machine wanders by several percent from run to run; the
# instructions executed do not. cachegrind counts them for one pass each way.
irefs() { valgrind --tool=cachegrind --cache-sim=no --cachegrind-out-file=/dev/null "$PODTAP" --config "$TMP/attr-$1.toml" \
  replay "$HTTP" --output table --workers 1 2>&1 >/dev/null | awk '/I *refs/ {gsub(/,/, "", $4); print $4}'; }
IR_OFF=$(irefs off); IR_ON=$(irefs on)
IR_DIFF=$(awk -v a="$IR_OFF" -v b="$IR_ON" 'BEGIN { printf "%+.2f", 100 * (b - a) / a }')

# The sections other scripts write (live capture, export) and the criterion section
# (recorded by hand from `cargo bench`) are carried over.
sed -n '/^## \(Live capture\|Export\|Criterion\|JSON lines\)/,$p' perf/RESULTS.md > "$TMP/criterion.md" 2>/dev/null || true
{
  echo "# Benchmark results"
  echo
  echo "Latest run: $(date -u +%Y-%m-%dT%H:%M:%SZ) on $(nproc) cores ($(grep -m1 'model name' /proc/cpuinfo | cut -d: -f2 | sed 's/^ //')), Linux $(uname -r)."
  echo "Command: \`perf/replay_bench.sh\`$( [ "$QUICK" = 1 ] && echo ' (QUICK=1)')."
  echo "Each figure is the median of $RUNS runs, single-threaded (\`--workers 1\`); peak RSS of podtap includes the mapped window of the capture file (32 MiB ahead of the reader, 1 MiB behind)."
  echo "tcpdump and tshark run on the first $PREFIX packets of each file (editcap) because they are much slower; rates are comparable per packet."
  echo "Every timed run, of every tool, reads its capture, program and libraries (tshark: plugins and data files too) warm from the page cache (read once just before)."
  echo
  echo "## Replay (L2-L4 decode, flow tracking, TCP reassembly, L7 detection and decoding)"
  echo
  echo "| tool | capture | packets | seconds | packets/s | peak RSS MiB |"
  echo "| --- | --- | ---: | ---: | ---: | ---: |"
  cat "$TMP/rows"
  echo
  echo "| ratio | small64 (synthetic, ${FLOWS} TCP + ${FLOWS} UDP flows) | http (nginx + hey + curl) |"
  echo "| --- | ---: | ---: |"
  echo "| podtap / tcpdump -nn -r | $(ratio "$PPS_S_podtap_prefix" "$PPS_S_tcpdump")x | $(ratio "$PPS_H_podtap_prefix" "$PPS_H_tcpdump")x |"
  echo "| podtap / tcpdump -nn -S -r | $(ratio "$PPS_S_podtap_prefix" "$PPS_S_tcpdumpS")x | $(ratio "$PPS_H_podtap_prefix" "$PPS_H_tcpdumpS")x |"
  echo "| podtap / tshark -n -r | $(ratio "$PPS_S_podtap_prefix" "$PPS_S_tshark")x | $(ratio "$PPS_H_podtap_prefix" "$PPS_H_tshark")x |"
  echo "| podtap full file, packets/s (wall clock, start-up included) | $PPS_S_podtap | $PPS_H_podtap |"
  echo "| podtap full file, packets/s per core (worker CPU time; median of $((RUNS * 2 + 1)), min, max) | $PPS_S_CORE | |"
  echo "| podtap full file, Gbit/s of capture | $GBPS_S | $GBPS_H |"
  echo
  echo "## HTTP/1.1 decoding"
  echo
  echo "| measure | value |"
  echo "| --- | ---: |"
  echo "| podtap transactions in http.pcap | $TX |"
  echo "| podtap transactions/s (one worker, whole file, wall clock) | $TXPS |"
  echo "| podtap transactions in the prefix (hey: small keep-alive requests) | $TX_P |"
  echo "| podtap transactions/s, prefix, wall clock (start-up included) | $TXPS_P |"
  echo "| podtap transactions/s per core, prefix (worker CPU time; median of $((RUNS * 2 + 1)), min, max) | $TXPS_CORE |"
  echo "| tshark -n -r -Y http, packets/s (prefix, median of the pairs) | $HTTP_PREFIX_PPS |"
  echo "| podtap packets/s (prefix, wall clock, median of the pairs) | $(rate "$np" "$(med "${pair_p[@]}")") |"
  echo "| podtap / tshark -Y http (prefix, wall clock; median of $PAIRS back-to-back pairs, min, max) | $(med "${pair_r[@]}")x ($(printf '%s\n' "${pair_r[@]}" | sort -g | head -1), $(printf '%s\n' "${pair_r[@]}" | sort -g | tail -1)) |"
  echo
  echo "## Pod attribution on vs off"
  echo
  echo "The HTTP capture replayed with \`attribution.enabled = false\` and with attribution from a static"
  echo "map naming both ends by CIDR and the observation point (\`replay = true\`), $((RUNS + 2)) alternating runs each, medians;"
  echo "each run replays the capture $ATTR_COPIES times (\`podtap replay http.pcap http.pcap ...\`), every pass with a fresh flow table."
  echo "Resolution is per flow (and again only when the metadata snapshot changes), not per packet."
  echo
  echo "| measure | attribution off | on (static map) |"
  echo "| --- | ---: | ---: |"
  echo "| seconds ($ATTR_COPIES passes) | $T_ATTR_OFF | $T_ATTR_ON |"
  echo "| packets/s | $PPS_ATTR_OFF | $PPS_ATTR_ON |"
  echo "| instructions, one pass (cachegrind) | $IR_OFF | $IR_ON ($IR_DIFF%) |"
  echo
  echo "Throughput loss with attribution on: **$ATTR_LOSS%** in wall time, **$IR_DIFF%** more instructions (target: within 5%). Transactions named \`server.k8s.pod.name=web-0\` in the on run: $ATTR_NAMED of $TX."
  echo
  echo "Targets (issue: application decoding I): >= 50x \`tshark -Y http\`; >= 1 million HTTP transactions/s per core on small keep-alive requests."
  echo
  echo "Targets (issue: foundation): >= 5 Mpps per core on the 64-byte capture; >= 4x \`tcpdump -r -nn\` on the HTTP capture."
  echo
  echo "Drop and error counters podtap reported (small64, then http):"
  echo
  echo '```'
  cat "$OUT/events-S.txt" "$OUT/events-H.txt"
  echo '```'
  echo
  echo "Notes: \`tcpdump -nn\` keeps a small fixed hash table of TCP connections to print relative"
  echo "sequence numbers, so it slows down sharply with many concurrent flows; \`-S\` (absolute"
  echo "sequence numbers) avoids that and is shown too."
  if [ -s "$TMP/criterion.md" ]; then echo; cat "$TMP/criterion.md"; fi
} > perf/RESULTS.md
cat perf/RESULTS.md
