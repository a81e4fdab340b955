#!/usr/bin/env bash
# Redis replay benchmark: podtap's Redis commands per second against tshark's RESP
# dissector on the same capture, with the HTTP bench's ratio measured in the same rounds
# as a yardstick. Replaces its own section of perf/RESULTS.md and leaves the others alone.
#
#   perf/redis_bench.sh            # 2 x 1M commands (about ten minutes with the build)
#   QUICK=1 perf/redis_bench.sh    # 2 x 200k commands
#
# The capture: a real redis-server and redis-benchmark in two network namespaces joined
# by a veth pair (nothing leaves the namespaces), `redis-benchmark -P 16 -t get,set` with
# 3-byte values and random keys (`key:000000012345`), 8 connections; segmentation
# offloads off, so tcpdump sees the MTU-sized segments a physical link carries.
set -euo pipefail
. "$(dirname "$0")/lib.sh"
export LC_ALL=C
cd "$(dirname "$0")/.."
export PATH="$HOME/.cargo/bin:$PATH"
OUT=perf/out
mkdir -p "$OUT"
QUICK=${QUICK:-0}
RUNS=${RUNS:-5}
PAIRS=${PAIRS:-9}
# tshark is far slower than podtap: both run on the first PREFIX frames for the ratio.
PREFIX=${PREFIX:-300000}
if [ "$QUICK" = 1 ]; then N=${N:-200000}; else N=${N:-1000000}; fi

need() { command -v "$1" >/dev/null || { echo "missing $1: make deps-test (or apt-get install $2)" >&2; exit 1; }; }
need tcpdump tcpdump; need tshark tshark; need editcap tshark; need redis-server redis-server
need redis-benchmark redis-tools; need valgrind valgrind
need nginx nginx-light; need hey hey; need curl curl

PODTAP=$(pgo/build.sh)

# --- capture ----------------------------------------------------------------------------
CAP=$OUT/redis.pcap
NS_S=ptrb-srv-$$; NS_C=ptrb-cli-$$; TMP=$(mktemp -d)
cleanup() {
  [ -n "${TCPDUMP_PID:-}" ] && kill "$TCPDUMP_PID" 2>/dev/null || true
  [ -n "${REDIS_PID:-}" ] && kill "$REDIS_PID" 2>/dev/null || true
  ip netns del "$NS_S" 2>/dev/null || true
  ip netns del "$NS_C" 2>/dev/null || true
  rm -rf "$TMP"
}
trap cleanup EXIT
ip netns add "$NS_S"; ip netns add "$NS_C"
ip link add prb-s$$ netns "$NS_S" type veth peer name prb-c$$ netns "$NS_C"
ip -n "$NS_S" addr add 10.78.0.1/24 dev prb-s$$; ip -n "$NS_C" addr add 10.78.0.2/24 dev prb-c$$
for ns in "$NS_S:prb-s$$" "$NS_C:prb-c$$"; do
  ip -n "${ns%%:*}" link set "${ns#*:}" up; ip -n "${ns%%:*}" link set lo up
  ip netns exec "${ns%%:*}" ethtool -K "${ns#*:}" tso off gso off gro off >/dev/null
done
ip netns exec "$NS_S" redis-server --bind 10.78.0.1 --port 6379 --save '' --appendonly no \
  --protected-mode no >/dev/null &
REDIS_PID=$!
for _ in $(seq 100); do ip netns exec "$NS_C" redis-cli -h 10.78.0.1 PING 2>/dev/null | grep -q PONG && break; sleep 0.1; done
ip netns exec "$NS_S" tcpdump -i prb-s$$ -s 0 -B 65536 -w "$CAP" 2>"$TMP/tcpdump.err" &
TCPDUMP_PID=$!
for _ in $(seq 50); do grep -q "listening on" "$TMP/tcpdump.err" 2>/dev/null && break; sleep 0.1; done
ip netns exec "$NS_C" redis-benchmark -h 10.78.0.1 -n "$N" -P 16 -c 8 -r 100000 -d 3 -t get,set -q \
  > "$TMP/bench.txt" 2>&1
# tcpdump reads the ring a block at a time, a block handed over when full or after its
# 1 s timeout: stopped any sooner, it loses the last frames.
sleep 2; kill -INT "$TCPDUMP_PID"; wait "$TCPDUMP_PID" 2>/dev/null || true; TCPDUMP_PID=
CAPTURE_DROPS=$(awk '/dropped by kernel/ {print $1}' "$TMP/tcpdump.err")
kill "$REDIS_PID"; wait "$REDIS_PID" 2>/dev/null || true; REDIS_PID=

# --- measurements ------------------------------------------------------------------------
# Every run reads its capture and program warm from the page cache (see replay_bench.sh).

NF=$(frames "$CAP")
SUMMARY=$(replay "$CAP")
TX=$(awk '/^packets/ {print $8}' <<<"$SUMMARY")
EVENTS=$(awk '/^event/,/^$/' <<<"$SUMMARY")
OPS=$(awk '$1 == "redis"' <<<"$SUMMARY")
times=(); for _ in $(seq "$RUNS"); do times+=("$(wall "$PODTAP" replay --output table --workers 1 "$CAP")"); done
T_FULL=$(med "${times[@]}")
# Per core: the worker thread's own CPU time, as podtap prints it (`worker cpu ... T
# transactions/s per core`); median, minimum and maximum of 2 * RUNS + 1 readings.
CORE=$(per_core "$CAP")

editcap -r "$CAP" "$TMP/prefix.pcap" 1-"$PREFIX" 2>/dev/null
NP=$(frames "$TMP/prefix.pcap")
TX_P=$(replay "$TMP/prefix.pcap" | awk '/^packets/ {print $8}')
# What tshark's dissector finds in the prefix: the frames it shows, the commands in them.
TSHARK_FRAMES=$(tshark -n -r "$TMP/prefix.pcap" -Y resp 2>/dev/null | wc -l)
# The yardstick: the HTTP bench's capture and prefix (perf/http_capture.sh with
# replay_bench.sh's counts), measured in the same rounds. A tshark ratio depends on the
# machine as well as on the two programs: the same binaries read 52x on HTTP where the
# HTTP bench was recorded and 87x on stop 43's machine, where tshark ran at less than
# half the speed. The HTTP ratio here says how this machine compares, and Redis's ratio
# over HTTP's in each round takes the machine out.
perf/http_capture.sh "$TMP/http.pcap" 150000 1500 >/dev/null 2>&1
editcap -r "$TMP/http.pcap" "$TMP/http-prefix.pcap" 1-"$PREFIX" 2>/dev/null
HTTP_RECORDED=$(awk -F'|' '/podtap \/ tshark -Y http \(prefix/ {gsub(/ /, "", $3); sub(/x.*/, "", $3); print $3; exit}' perf/RESULTS.md)
# podtap and tshark -Y resp on the same prefix, in back-to-back pairs, each followed by a
# pair on the HTTP prefix.
tshark_pairs "$TMP/prefix.pcap" resp "$TMP/http-prefix.pcap" http
# Instructions (cachegrind), whole process, on the prefix.
IR=$(instructions "$TMP/prefix.pcap")
IR_TX=$(awk -v i="$IR" -v t="$TX_P" 'BEGIN { printf "%.0f", i / t }')

SECTION=$(cat <<EOF
## Redis decoding (\`perf/redis_bench.sh\`)

Latest run: $(date -u +%Y-%m-%dT%H:%M:%SZ) on $(nproc) cores, load average before the measurements: $(cut -d' ' -f1-3 /proc/loadavg).
Command: \`perf/redis_bench.sh\`$( [ "$QUICK" = 1 ] && echo " (QUICK=1)"), $(build_kind).
Capture: \`redis-benchmark -n $N -P 16 -c 8 -r 100000 -d 3 -t get,set\` against redis-server
$(redis-server --version | awk '{print $3}' | tr -d 'v='), tcpdump on the server's veth (offloads off: MTU-sized segments),
$NF frames, ${CAPTURE_DROPS:-0} dropped by the kernel while capturing. Replay: \`podtap replay FILE --output table --workers 1\`
(L2-L4, flows, TCP reassembly, detection, RESP parsing and pairing, the summary's statistics).

| measure | value |
| --- | ---: |
| podtap transactions in the capture (redis-benchmark's commands, and its CONFIG GETs) | $TX |
| podtap seconds, whole file (wall clock, start-up included; median of $RUNS) | $T_FULL |
| podtap Redis commands/s, whole file, wall clock | $(rate "$TX" "$T_FULL") |
| podtap Redis commands/s per core (worker CPU time; median of $((RUNS * 2 + 1)), min, max) | $CORE |
| prefix: frames, podtap transactions, frames tshark -Y resp shows | $NP, $TX_P, $TSHARK_FRAMES |
| tshark -n -Y resp, frames/s (prefix, median of the pairs) | $(rate "$NP" "$(med "${pt[@]}")") |
| podtap frames/s (prefix, wall clock, median of the pairs) | $(rate "$NP" "$(med "${pp[@]}")") |
| podtap / tshark -Y resp (prefix, wall clock; median of $PAIRS back-to-back pairs, min, max) | $(med "${pr[@]}")x ($(printf '%s\n' "${pr[@]}" | sort -g | head -1), $(printf '%s\n' "${pr[@]}" | sort -g | tail -1)) |
| yardstick: podtap / tshark -Y http on the HTTP bench's prefix, in the same rounds (median, min, max) | $(med "${hr[@]}")x ($(printf '%s\n' "${hr[@]}" | sort -g | head -1), $(printf '%s\n' "${hr[@]}" | sort -g | tail -1)) |
| Redis ratio / HTTP ratio, per round (median, min, max) | $(med "${rh[@]}") ($(printf '%s\n' "${rh[@]}" | sort -g | head -1), $(printf '%s\n' "${rh[@]}" | sort -g | tail -1)) |
| Redis ratio on the HTTP bench's machine (median of the rounds' Redis / HTTP, times the ${HTTP_RECORDED}x recorded there) | $(awk -v r="$(med "${rh[@]}")" -v h="$HTTP_RECORDED" 'BEGIN { printf "%.1f", r * h }')x |
| instructions, prefix, whole process (cachegrind) | $IR |
| instructions per Redis command (prefix) | $IR_TX |

Targets (issue 22): >= 3 million Redis commands/s per core in replay with L2-L7 and
pairing; >= 50x \`tshark -Y redis\` (the dissector is named \`resp\` in tshark 4.0) on
the same prefix. The yardstick rows read that ratio against the HTTP bench's: on the
machine that recorded ${HTTP_RECORDED}x for HTTP, 50x for Redis is a Redis / HTTP ratio of
$(awk -v h="$HTTP_RECORDED" 'BEGIN { printf "%.2f", 50 / h }') in the same rounds.

A frame of this capture carries $(awk -v t="$TX_P" -v n="$NP" 'BEGIN { printf "%.1f", t / n }') commands on average (16 per
pipelined round trip, each way, plus acknowledgements), where a frame of the HTTP capture
carries half a transaction: the tshark ratio compares time per frame, and here most of
podtap's time per frame is per command. The table wants no records, so a plainly answered
command is counted without one (\`proto::tally\`: its duration, in a run of its command
and key prefix, counted against the summary's row found once per run); errors, commands
that change the connection and anything cut short are records (see "Instructions per
replay, stop 44" below). The daemon's export still builds a record per command.

podtap's summary rows for Redis, and its drop and error counters:

\`\`\`
$OPS
$EVENTS
\`\`\`

redis-benchmark reported:

\`\`\`
$(tr '\r' '\n' < "$TMP/bench.txt" | grep -v -e '^ *$' -e 'rps=' || true)
\`\`\`
EOF
)
results_section "## Redis decoding" "$SECTION"
echo "$SECTION"
