#!/usr/bin/env bash
# MongoDB replay benchmark: podtap's MongoDB operations per second against tshark's mongo
# dissector on the same capture. Replaces its own section of perf/RESULTS.md and leaves the
# others alone.
#
#   perf/mongodb_bench.sh            # 4 clients x 40000 operations
#   QUICK=1 perf/mongodb_bench.sh    # 4 x 4000
#
# The capture: pymongo clients (real requests) against the hand-built server of
# tests/mongodb.rs (hand-built replies: a find returns its batchSize of documents, or 3;
# an insert its n), in two network namespaces joined by a veth pair (nothing leaves them),
# each client a loop of insert_one, insert_many of 5 (OP_MSG with a document sequence),
# find_one and a find of 5. SecantusDB, the real MongoDB-wire server of the end-to-end test,
# answers a few hundred operations a second here: too few for a benchmark capture.
# Segmentation offloads off, so tcpdump sees the MTU-sized segments a physical link carries.
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
PREFIX=${PREFIX:-300000}
CLIENTS=${CLIENTS:-4}
if [ "$QUICK" = 1 ]; then N=${N:-4000}; else N=${N:-40000}; fi

need() { command -v "$1" >/dev/null || { echo "missing $1: make deps-test (or apt-get install $2)" >&2; exit 1; }; }
need tcpdump tcpdump; need tshark tshark; need editcap tshark; need valgrind valgrind
python3 -c 'import pymongo, snappy; from backports import zstd' 2>/dev/null || { echo "missing pymongo: make deps-test" >&2; exit 1; }

PODTAP=$(pgo/build.sh)

# --- capture ----------------------------------------------------------------------------
CAP=$OUT/mongodb.pcap
NS_S=ptmb-srv-$$; NS_C=ptmb-cli-$$; TMP=$(mktemp -d)
cleanup() {
  [ -n "${TCPDUMP_PID:-}" ] && kill "$TCPDUMP_PID" 2>/dev/null || true
  ip netns pids "$NS_S" 2>/dev/null | xargs -r kill 2>/dev/null || true
  ip netns pids "$NS_C" 2>/dev/null | xargs -r kill 2>/dev/null || true
  sleep 0.5
  ip netns del "$NS_S" 2>/dev/null || true
  ip netns del "$NS_C" 2>/dev/null || true
  rm -rf "$TMP"
}
trap cleanup EXIT
# tshark reads the MongoDB port as MongoDB only when told (a decode-as entry of its own
# configuration directory: lib.sh's helpers take a display filter alone).
mkdir -p "$TMP/wireshark"
echo 'decode_as_entry: tcp.port,27017,(none),MONGO' > "$TMP/wireshark/decode_as_entries"
export WIRESHARK_CONFIG_DIR=$TMP/wireshark
# The hand-built server of tests/mongodb.rs (the same script, read from there).
sed -n '/^const HAND_SERVER: &str = r#"$/,/^"#;$/p' tests/mongodb.rs | sed '1d;$d' > "$TMP/server.py"
cat > "$TMP/load.py" <<'PY'
import sys
from multiprocessing import Process, Queue
from pymongo import MongoClient

def client(ip, n, k, q):
    c = MongoClient(ip, 27017, directConnection=True, retryWrites=False, retryReads=False)
    col = c.bench["items%d" % k]
    ops = 0
    for i in range(n // 4):
        col.insert_one({"_id": i, "k": k, "v": "x" * 40})
        col.insert_many([{"_id": "%d-%d" % (i, j), "v": j} for j in range(5)])
        col.find_one({"_id": i})
        list(col.find({"k": k, "_id": {"$gte": i}}, batch_size=5))
        ops += 4
    c.close()
    q.put(ops)

ip, n, clients = sys.argv[1], int(sys.argv[2]), int(sys.argv[3])
q = Queue()
ps = [Process(target=client, args=(ip, n, k, q)) for k in range(clients)]
for p in ps: p.start()
total = sum(q.get() for _ in ps)
for p in ps: p.join()
print("operations %d (insert_one, insert_many, find_one, find: %d each)" % (total, total // 4))
PY
ip netns add "$NS_S"; ip netns add "$NS_C"
ip link add pgb-s$$ netns "$NS_S" type veth peer name pgb-c$$ netns "$NS_C"
ip -n "$NS_S" addr add 10.79.0.1/24 dev pgb-s$$; ip -n "$NS_C" addr add 10.79.0.2/24 dev pgb-c$$
for ns in "$NS_S:pgb-s$$" "$NS_C:pgb-c$$"; do
  ip -n "${ns%%:*}" link set "${ns#*:}" up; ip -n "${ns%%:*}" link set lo up
  ip netns exec "${ns%%:*}" ethtool -K "${ns#*:}" tso off gso off gro off >/dev/null
done
# The server runs until its standard input (this FIFO) closes.
mkfifo "$TMP/stdin"
ip netns exec "$NS_S" python3 "$TMP/server.py" 10.79.0.1 27017 <"$TMP/stdin" >"$TMP/server.log" 2>&1 &
exec 9>"$TMP/stdin"
for _ in $(seq 100); do grep -q ready "$TMP/server.log" 2>/dev/null && break; sleep 0.1; done
ip netns exec "$NS_S" tcpdump -i pgb-s$$ -s 0 -B 65536 -w "$CAP" 2>"$TMP/tcpdump.err" &
TCPDUMP_PID=$!
for _ in $(seq 50); do grep -q "listening on" "$TMP/tcpdump.err" 2>/dev/null && break; sleep 0.1; done
timeout 900 ip netns exec "$NS_C" python3 "$TMP/load.py" 10.79.0.1 "$N" "$CLIENTS" > "$TMP/load.txt"
sleep 2; kill -INT "$TCPDUMP_PID"; wait "$TCPDUMP_PID" 2>/dev/null || true; TCPDUMP_PID=
CAPTURE_DROPS=$(awk '/dropped by kernel/ {print $1}' "$TMP/tcpdump.err")
exec 9>&-

[ "${CAPTURE_ONLY:-0}" = 1 ] && { cat "$TMP/load.txt"; echo "$CAP"; exit 0; }

# --- measurements ------------------------------------------------------------------------

NF=$(frames "$CAP")
SUMMARY=$(replay "$CAP")
TX=$(awk '/^packets/ {print $8}' <<<"$SUMMARY")
EVENTS=$(awk '/^event/,/^$/' <<<"$SUMMARY")
OPS=$(awk '$1 == "mongodb"' <<<"$SUMMARY")
times=(); for _ in $(seq "$RUNS"); do times+=("$(wall "$PODTAP" replay --output table --workers 1 "$CAP")"); done
T_FULL=$(med "${times[@]}")
CORE=$(per_core "$CAP")

editcap -r "$CAP" "$TMP/prefix.pcap" 1-"$PREFIX" 2>/dev/null
NP=$(frames "$TMP/prefix.pcap")
TX_P=$(replay "$TMP/prefix.pcap" | awk '/^packets/ {print $8}')
# What tshark finds in the prefix: the requests it shows (OP_MSG with responseTo 0).
TSHARK_FRAMES=$(tshark -n -r "$TMP/prefix.pcap" -Y mongo 2>/dev/null | wc -l)
TSHARK_REQS=$(tshark -n -r "$TMP/prefix.pcap" -Y 'mongo.opcode == 2013 && mongo.response_to == 0' \
  -T fields -e frame.number 2>/dev/null | wc -l)
tshark_pairs "$TMP/prefix.pcap" mongo
# Instructions (cachegrind) on a 20 000-frame prefix, each program's start-up (a one-frame
# file) subtracted: tshark under cachegrind is too slow for the whole prefix.
editcap -r "$CAP" "$TMP/small.pcap" 1-20000 2>/dev/null
editcap -r "$CAP" "$TMP/one.pcap" 1 2>/dev/null
TX_S=$(replay "$TMP/small.pcap" | awk '/^packets/ {print $8}')
NS=$(frames "$TMP/small.pcap")
tshark_ir() {
  valgrind --tool=cachegrind --cache-sim=no --cachegrind-out-file=/dev/null \
    tshark -n -Y mongo -r "$1" 2>&1 >/dev/null | awk '/I *refs/ {gsub(/,/, "", $4); print $4}'
}
IR=$(( $(instructions "$TMP/small.pcap") - $(instructions "$TMP/one.pcap") ))
IR_TS=$(( $(tshark_ir "$TMP/small.pcap") - $(tshark_ir "$TMP/one.pcap") ))
IR_TX=$(awk -v i="$IR" -v t="$TX_S" 'BEGIN { printf "%.0f", i / t }')

SECTION=$(cat <<EOF
## MongoDB decoding (\`perf/mongodb_bench.sh\`)

Latest run: $(date -u +%Y-%m-%dT%H:%M:%SZ) on $(nproc) cores, load average before the measurements: $(cut -d' ' -f1-3 /proc/loadavg).
Binary: $(build_kind).
Capture: $CLIENTS pymongo $(python3 -c 'import pymongo; print(pymongo.version)') clients x $N operations (insert_one, insert_many of 5 in a document
sequence, find_one, find of 5) against the hand-built server of tests/mongodb.rs (hand-built
replies; SecantusDB, the real server of the end-to-end test, is too slow to fill a benchmark), tcpdump on the server's veth
(offloads off: MTU-sized segments), $NF frames, ${CAPTURE_DROPS:-0} dropped by the kernel while capturing.
Replay: \`podtap replay FILE --output table --workers 1\` (L2-L4, flows, TCP reassembly,
detection, MongoDB framing, the BSON walk, pairing, the summary's statistics).

| measure | value |
| --- | ---: |
| podtap transactions in the capture (the clients' operations, their handshakes, endSessions) | $TX |
| podtap seconds, whole file (wall clock, start-up included; median of $RUNS) | $T_FULL |
| podtap MongoDB operations/s, whole file, wall clock | $(rate "$TX" "$T_FULL") |
| podtap MongoDB operations/s per core (worker CPU time; median of $((RUNS * 2 + 1)), min, max) | $CORE |
| prefix: frames, podtap transactions, frames tshark -Y mongo shows, OP_MSG requests in them | $NP, $TX_P, $TSHARK_FRAMES, $TSHARK_REQS |
| tshark -n -Y mongo, frames/s (prefix, median of the pairs) | $(rate "$NP" "$(med "${pt[@]}")") |
| podtap frames/s (prefix, wall clock, median of the pairs) | $(rate "$NP" "$(med "${pp[@]}")") |
| podtap / tshark -Y mongo (prefix, wall clock; median of $PAIRS back-to-back pairs, min, max) | $(med "${pr[@]}")x ($(printf '%s\n' "${pr[@]}" | sort -g | head -1), $(printf '%s\n' "${pr[@]}" | sort -g | tail -1)) |
| instructions on the first $NS frames ($TX_S transactions), start-up subtracted: podtap, tshark -Y mongo (cachegrind) | $IR, $IR_TS |
| instructions per frame: podtap, tshark -Y mongo | $(awk -v i="$IR" -v n="$NS" 'BEGIN { printf "%.0f", i / n }'), $(awk -v i="$IR_TS" -v n="$NS" 'BEGIN { printf "%.0f", i / n }') |
| instructions per MongoDB operation, podtap | $IR_TX |
| tshark / podtap, instructions | $(awk -v a="$IR_TS" -v b="$IR" 'BEGIN { printf "%.1fx", a / b }') |

Targets (issue 24): >= 1 million MongoDB operations/s per core in replay with L2-L7 and
pairing; >= 50x \`tshark -Y mongo\` on the same prefix.

Where the tshark target stands: each operation is a round trip of two frames (the request,
the reply), so the ratio compares time per frame. Stop 38 (2026-12-07) read an OP_MSG body
that lies whole in the chunk in one pass (\`Walker::whole_msg\`: the nesting on the call
stack, no per-element state; the state machine reads split or damaged bodies); stop 39 told
rows and unread names apart before the name comparisons and shared a request's strings
through one \`Rc\` (perf/RESULTS.md, "Instructions per replay, stop 39"). By callgrind on the
20 000-frame prefix (plain release build, e26f24c): of podtap's ~5 240 instructions per
operation, ~2 960 are the MongoDB decoder (the walk ~1 710, that is ~860 a message; pairing
and building the record ~960; framing ~280), ~460 handing the record to the summary, and
~1 580 the per-frame work every decoder shares (pcap reading, L2-L4, flow table,
reassembly), ~790 a frame; the rest is start-up.

podtap's summary rows for MongoDB, and its drop and error counters:

\`\`\`
$OPS
$EVENTS
\`\`\`

The load generator reported:

\`\`\`
$(cat "$TMP/load.txt")
\`\`\`
EOF
)
results_section "## MongoDB decoding" "$SECTION"
echo "$SECTION"
