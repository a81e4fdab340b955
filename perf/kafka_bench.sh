#!/usr/bin/env bash
# Kafka replay benchmark: podtap's Kafka requests per second (and Kafka payload per second)
# against tshark's kafka dissector on the same capture. Replaces its own section of
# perf/RESULTS.md and leaves the others alone.
#
#   perf/kafka_bench.sh             # 20000 Produce requests of 10 records, then the consumer
#   QUICK=1 perf/kafka_bench.sh     # 2000
#
# The capture: a real Kafka-compatible broker (tansu, memory storage) and its clients in
# two network namespaces joined by a veth pair (nothing leaves them): kafka-python's
# producer sending BATCHES Produce requests of BATCH records of RECORD bytes (acks=1,
# alternating between 2 partitions), then its consumer in a group reading both partitions
# back with small fetches (FETCH bytes a partition). (`tansu perf produce` sends acks=0
# and panics on the answer tansu gives it.) Segmentation offloads off, so tcpdump sees the MTU-sized segments a
# physical link carries.
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
PREFIX=${PREFIX:-200000}
BATCH=${BATCH:-10}
RECORD=${RECORD:-100}
FETCH=${FETCH:-16384}
if [ "$QUICK" = 1 ]; then BATCHES=${BATCHES:-2000}; else BATCHES=${BATCHES:-20000}; fi

need() { command -v "$1" >/dev/null || { echo "missing $1: make deps-test (or apt-get install $2)" >&2; exit 1; }; }
need tcpdump tcpdump; need tshark tshark; need editcap tshark; need valgrind valgrind
need tansu "cargo install --locked tansu --features dynostore"; need capinfos tshark
python3 -c 'import kafka.net.connection' 2>/dev/null || { echo "missing kafka-python 3: make deps-test" >&2; exit 1; }

PODTAP=$(pgo/build.sh)

# --- capture ----------------------------------------------------------------------------
CAP=$OUT/kafka.pcap
NS_S=ptkb-srv-$$; NS_C=ptkb-cli-$$; TMP=$(mktemp -d)
cleanup() {
  [ -n "${TCPDUMP_PID:-}" ] && kill "$TCPDUMP_PID" 2>/dev/null || true
  [ -n "${BROKER_PID:-}" ] && kill "$BROKER_PID" 2>/dev/null && sleep 0.5 || true
  ip netns del "$NS_S" 2>/dev/null || true
  ip netns del "$NS_C" 2>/dev/null || true
  rm -rf "$TMP"
}
trap cleanup EXIT
ip netns add "$NS_S"; ip netns add "$NS_C"
ip link add pkb-s$$ netns "$NS_S" type veth peer name pkb-c$$ netns "$NS_C"
ip -n "$NS_S" addr add 10.78.0.1/24 dev pkb-s$$; ip -n "$NS_C" addr add 10.78.0.2/24 dev pkb-c$$
for ns in "$NS_S:pkb-s$$" "$NS_C:pkb-c$$"; do
  ip -n "${ns%%:*}" link set "${ns#*:}" up; ip -n "${ns%%:*}" link set lo up
  ip netns exec "${ns%%:*}" ethtool -K "${ns#*:}" tso off gso off gro off >/dev/null
done
URL=tcp://10.78.0.1:9092
ip netns exec "$NS_S" tansu broker --listener-url "$URL" --advertised-listener-url "$URL" \
  --storage-engine memory://tansu/ >"$TMP/broker.log" 2>&1 &
BROKER_PID=$!
for _ in $(seq 100); do
  ip netns exec "$NS_C" python3 -c "import socket; socket.create_connection(('10.78.0.1', 9092), 1)" \
    2>/dev/null && break
  sleep 0.1
done
ip netns exec "$NS_S" tcpdump -i pkb-s$$ -s 0 -B 65536 -w "$CAP" 2>"$TMP/tcpdump.err" &
TCPDUMP_PID=$!
for _ in $(seq 50); do grep -q "listening on" "$TMP/tcpdump.err" 2>/dev/null && break; sleep 0.1; done
ip netns exec "$NS_C" python3 - "$BATCHES" "$BATCH" "$RECORD" >"$TMP/produce.txt" 2>&1 <<'PY'
import sys
from kafka import KafkaAdminClient, KafkaProducer
from kafka.admin import NewTopic
batches, batch, size = (int(a) for a in sys.argv[1:4])
KafkaAdminClient(bootstrap_servers="10.78.0.1:9092").create_topics([NewTopic("bench", 2, 1)])
p = KafkaProducer(bootstrap_servers="10.78.0.1:9092", acks=1, linger_ms=60000, batch_size=1 << 20)
value = b"v" * size
for b in range(batches):
    for i in range(batch):
        p.send("bench", value, partition=b % 2)
    p.flush()
p.close()
print("produced", batches * batch, "records in", batches, "Produce requests")
PY
ip netns exec "$NS_C" python3 - "$FETCH" >"$TMP/consume.txt" 2>&1 <<'PY'
import sys, time
from kafka import KafkaConsumer
c = KafkaConsumer("bench", bootstrap_servers="10.78.0.1:9092", group_id="bench",
                  auto_offset_reset="earliest", enable_auto_commit=False,
                  max_partition_fetch_bytes=int(sys.argv[1]), fetch_max_wait_ms=50)
n, idle = 0, 0
while idle < 10:
    got = sum(len(r) for r in c.poll(200).values())
    n += got
    idle = 0 if got else idle + 1
c.commit()
c.close()
print("consumed", n)
PY
sleep 0.5; kill -INT "$TCPDUMP_PID"; wait "$TCPDUMP_PID" 2>/dev/null || true; TCPDUMP_PID=
CAPTURE_DROPS=$(awk '/dropped by kernel/ {print $1}' "$TMP/tcpdump.err")
kill "$BROKER_PID"; wait "$BROKER_PID" 2>/dev/null || true; BROKER_PID=

# --- measurements ------------------------------------------------------------------------
# On a quiet machine only: wait (up to MAX_WAIT seconds) for the 1-minute load average to
# fall below MAX_LOAD.
MAX_LOAD=${MAX_LOAD:-3}; MAX_WAIT=${MAX_WAIT:-1800}
for _ in $(seq $((MAX_WAIT / 10))); do
  awk -v m="$MAX_LOAD" '{ exit !($1 < m) }' /proc/loadavg && break
  sleep 10
done

NF=$(frames "$CAP")
SUMMARY=$(replay "$CAP")
TX=$(awk '/^packets/ {print $8}' <<<"$SUMMARY")
EVENTS=$(awk '/^event/,/^$/' <<<"$SUMMARY")
OPS=$(awk '$1 == "kafka"' <<<"$SUMMARY")
# Kafka payload: the TCP payload bytes of the capture (every flow is Kafka).
PAYLOAD=$(tshark -n -r "$CAP" -T fields -e tcp.len 2>/dev/null | awk '{s += $1} END {print s}')
times=(); for _ in $(seq "$RUNS"); do times+=("$(wall "$PODTAP" replay --output table --workers 1 "$CAP")"); done
T_FULL=$(med "${times[@]}")
CORE=$(per_core "$CAP")
CORE_MED=${CORE%% *}
# Payload per core: the capture's payload at the per-core request rate.
GBITS=$(awk -v b="$PAYLOAD" -v tx="$TX" -v r="$CORE_MED" 'BEGIN { printf "%.2f", b * 8 / (tx / r) / 1e9 }')

editcap -r "$CAP" "$TMP/prefix.pcap" 1-"$PREFIX" 2>/dev/null
NP=$(frames "$TMP/prefix.pcap")
TX_P=$(replay "$TMP/prefix.pcap" | awk '/^packets/ {print $8}')
TSHARK_FRAMES=$(tshark -n -r "$TMP/prefix.pcap" -Y kafka 2>/dev/null | wc -l)
tshark_pairs "$TMP/prefix.pcap" kafka
IR=$(instructions "$TMP/prefix.pcap")
IR_TX=$(awk -v i="$IR" -v t="$TX_P" 'BEGIN { printf "%.0f", i / t }')

SECTION=$(cat <<EOF
## Kafka decoding (\`perf/kafka_bench.sh\`)

Latest run: $(date -u +%Y-%m-%dT%H:%M:%SZ) on $(nproc) cores, load average before the measurements: $(cut -d' ' -f1-3 /proc/loadavg).
Binary: $(build_kind).
Capture: kafka-python's producer, $BATCHES Produce requests of $BATCH records of $RECORD bytes (acks=1), then
its consumer reading them back in $FETCH-byte fetches, against tansu $(tansu --version 2>/dev/null | awk '{print $NF}')
(memory storage), tcpdump on the broker's veth (offloads off: MTU-sized segments), $NF frames,
$PAYLOAD bytes of TCP payload, ${CAPTURE_DROPS:-0} dropped by the kernel while capturing. Replay:
\`podtap replay FILE --output table --workers 1\` (L2-L4, flows, TCP reassembly, detection,
Kafka framing, the Produce/Fetch field walk with record batch counting, pairing, the summary's statistics).

| measure | value |
| --- | ---: |
| podtap transactions in the capture (Kafka requests) | $TX |
| podtap seconds, whole file (wall clock, start-up included; median of $RUNS) | $T_FULL |
| podtap Kafka requests/s, whole file, wall clock | $(rate "$TX" "$T_FULL") |
| podtap Kafka requests/s per core (worker CPU time; median of $((RUNS * 2 + 1)), min, max) | $CORE |
| Kafka payload per core at that rate (Gbit/s) | $GBITS |
| prefix: frames, podtap transactions, frames tshark -Y kafka shows | $NP, $TX_P, $TSHARK_FRAMES |
| tshark -n -Y kafka, frames/s (prefix, median of the pairs) | $(rate "$NP" "$(med "${pt[@]}")") |
| podtap frames/s (prefix, wall clock, median of the pairs) | $(rate "$NP" "$(med "${pp[@]}")") |
| podtap / tshark -Y kafka (prefix, wall clock; median of $PAIRS back-to-back pairs, min, max) | $(med "${pr[@]}")x ($(printf '%s\n' "${pr[@]}" | sort -g | head -1), $(printf '%s\n' "${pr[@]}" | sort -g | tail -1)) |
| instructions, prefix, whole process (cachegrind) | $IR |
| instructions per Kafka request (prefix) | $IR_TX |

Targets (issue 24): >= 1 million Kafka requests/s per core, Gbit/s of Kafka payload per
core reported; >= 50x \`tshark -Y kafka\`.

Where the targets stand (callgrind on the 20 000-frame prefix, profile-guided build of
stop 40): ~4 020 instructions per Kafka request for the whole process (a request and its
response are a frame each here). About 2 040 of them are the Kafka decoder: framing, the
walk of both messages and the pairing, ~450 of those building the transaction record;
~1 800 are the per-packet work every decoder shares (pcap reading, L2-L4, flow table, TCP,
reassembly: ~750 a frame) and handing the record to the summary. A message whole in its
chunk (nearly all of them: a request or response of a few hundred bytes in its own
segment) is framed, walked straight from the slice into the decoder's message and paired
in one go (\`KafkaParser::whole\`, \`parser::walk_request\` and \`walk_response\`;
Produce by code written for it, the other APIs by their schemas); the field-by-field walk
reads the rest (messages split over segments, anything malformed). Stop 39's code took
~7 450 instructions a request (PGO) and reached 36x on a calm machine; the ratio is wall
clock, so a slow or noisy machine moves it by a third from run to run. Start-up (~3 ms of
page faults: relocations, the allocator's arena, the threads) is a fifth to an eighth of
podtap's time on this capture, by the machine's speed.

podtap's summary rows for Kafka, and its drop and error counters:

\`\`\`
$OPS
$EVENTS
\`\`\`

The clients reported:

\`\`\`
$(tail -5 "$TMP/produce.txt")
$(tail -1 "$TMP/consume.txt")
\`\`\`
EOF
)
results_section "## Kafka decoding" "$SECTION"
echo "$SECTION"
