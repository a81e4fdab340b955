#!/usr/bin/env bash
# Memcached replay benchmark: podtap's memcached commands per second against tshark's
# memcache dissector on the same capture. Replaces its own section of perf/RESULTS.md and
# leaves the others alone.
#
#   perf/memcached_bench.sh            # 2 x 1M commands (a few minutes)
#   QUICK=1 perf/memcached_bench.sh    # 2 x 200k commands
#   CAPTURE_ONLY=1 N=50000 perf/memcached_bench.sh   # just perf/out/memcached.pcap
#
# The capture: a real memcached and a load generator in two network namespaces joined by
# a veth pair (nothing leaves the namespaces). The load is the memcached counterpart of
# the Redis capture's `redis-benchmark -P 16 -t get,set`: N text-protocol sets, then N
# gets, of random keys (`key:000000012345`, 100000 of them) with 3-byte values, over 8
# connections, each sending its commands 16 at a time (one write) and reading the 16
# replies before the next 16. memcslap cannot do this (it pipelines neither gets nor, over
# TCP, sets), so the generator is a few lines of Python on a raw socket, bounded by N.
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
# tshark is far slower than podtap: both run on the first PREFIX frames for the ratio.
PREFIX=${PREFIX:-300000}
if [ "$QUICK" = 1 ]; then N=${N:-200000}; else N=${N:-1000000}; fi
CONNS=8
DEPTH=16

need() { command -v "$1" >/dev/null || { echo "missing $1: make deps-test (or apt-get install $2)" >&2; exit 1; }; }
need tcpdump tcpdump; need tshark tshark; need editcap tshark; need memcached memcached
need python3 python3; need valgrind valgrind

# --- capture ----------------------------------------------------------------------------
CAP=$OUT/memcached.pcap
NS_S=ptmb-srv-$$; NS_C=ptmb-cli-$$; TMP=$(mktemp -d)
cleanup() {
  [ -n "${TCPDUMP_PID:-}" ] && kill "$TCPDUMP_PID" 2>/dev/null || true
  [ -n "${MC_PID:-}" ] && kill "$MC_PID" 2>/dev/null || true
  ip netns del "$NS_S" 2>/dev/null || true
  ip netns del "$NS_C" 2>/dev/null || true
  rm -rf "$TMP"
}
trap cleanup EXIT

# The load: N sets, then N gets, DEPTH commands per write on each of CONNS connections
# (the connections take turns, so their segments interleave as a real client pool's do).
# Prints the replies it read: STORED for each set, and the gets' hits and misses.
cat > "$TMP/load.py" <<'PY'
import random, socket, sys
ip, n, conns, depth = sys.argv[1], int(sys.argv[2]), int(sys.argv[3]), int(sys.argv[4])
rnd = random.Random(1)
socks = [socket.create_connection((ip, 11211), 5) for _ in range(conns)]
for s in socks:
    s.setsockopt(socket.IPPROTO_TCP, socket.TCP_NODELAY, 1)
    s.settimeout(10)

def key():
    return b"key:%012d" % rnd.randrange(100000)

def phase(make, done, total):
    # done(buf): how many replies buf holds so far. Bounded: `total` commands in all.
    sent = 0
    seen = {"STORED": 0, "hits": 0, "misses": 0}
    while sent < total:
        batch = []
        for s in socks:
            k = min(depth, total - sent)
            if k == 0:
                break
            s.sendall(b"".join(make() for _ in range(k)))
            batch.append((s, k))
            sent += k
        for s, k in batch:
            buf = b""
            while done(buf) < k:
                d = s.recv(65536)
                if not d:
                    sys.exit("memcached closed the connection")
                buf += d
            seen["STORED"] += buf.count(b"STORED\r\n")
            seen["hits"] += buf.count(b"VALUE ")
            seen["misses"] += buf.count(b"END\r\n") - buf.count(b"VALUE ")
    return seen

sets = phase(lambda: b"set " + key() + b" 0 0 3\r\nxxx\r\n", lambda b: b.count(b"STORED\r\n"), n)
gets = phase(lambda: b"get " + key() + b"\r\n", lambda b: b.count(b"END\r\n"), n)
for s in socks:
    s.close()
print("set: %d commands, %d STORED" % (n, sets["STORED"]))
print("get: %d commands, %d hits, %d misses" % (n, gets["hits"], gets["misses"]))
PY
# memcached's own counters (read outside the capture).
cat > "$TMP/stats.py" <<'PY'
import socket, sys
s = socket.create_connection((sys.argv[1], 11211), 5)
s.sendall(b"stats\r\n")
buf = b""
while not buf.endswith(b"END\r\n"):
    buf += s.recv(65536)
st = dict(l.split()[1:3] for l in buf.decode().splitlines() if l.startswith("STAT "))
print(st["cmd_get"], st["cmd_set"], st["get_hits"], st["get_misses"])
PY

ip netns add "$NS_S"; ip netns add "$NS_C"
ip link add pmb-s$$ netns "$NS_S" type veth peer name pmb-c$$ netns "$NS_C"
ip -n "$NS_S" addr add 10.79.0.1/24 dev pmb-s$$; ip -n "$NS_C" addr add 10.79.0.2/24 dev pmb-c$$
for ns in "$NS_S:pmb-s$$" "$NS_C:pmb-c$$"; do
  ip -n "${ns%%:*}" link set "${ns#*:}" up; ip -n "${ns%%:*}" link set lo up
  ip netns exec "${ns%%:*}" ethtool -K "${ns#*:}" tso off gso off gro off >/dev/null
done
ip netns exec "$NS_S" memcached -u nobody -l 10.79.0.1 -p 11211 -U 0 -m 256 -t 2 >/dev/null 2>&1 &
MC_PID=$!
for _ in $(seq 100); do
  ip netns exec "$NS_C" python3 "$TMP/stats.py" 10.79.0.1 >/dev/null 2>&1 && break; sleep 0.1
done
read -r G0 S0 H0 M0 < <(ip netns exec "$NS_C" python3 "$TMP/stats.py" 10.79.0.1)
ip netns exec "$NS_S" tcpdump -i pmb-s$$ -s 0 -B 65536 -w "$CAP" 2>"$TMP/tcpdump.err" &
TCPDUMP_PID=$!
for _ in $(seq 50); do grep -q "listening on" "$TMP/tcpdump.err" 2>/dev/null && break; sleep 0.1; done
timeout 600 ip netns exec "$NS_C" python3 "$TMP/load.py" 10.79.0.1 "$N" "$CONNS" "$DEPTH" > "$TMP/load.txt"
# tcpdump reads the ring a block at a time, a block handed over when full or after its
# 1 s timeout: stopped any sooner, it loses the last frames.
sleep 2; kill -INT "$TCPDUMP_PID"; wait "$TCPDUMP_PID" 2>/dev/null || true; TCPDUMP_PID=
CAPTURE_DROPS=$(awk '/dropped by kernel/ {print $1}' "$TMP/tcpdump.err")
read -r G1 S1 H1 M1 < <(ip netns exec "$NS_C" python3 "$TMP/stats.py" 10.79.0.1)
kill "$MC_PID"; wait "$MC_PID" 2>/dev/null || true; MC_PID=

[ "${CAPTURE_ONLY:-0}" = 1 ] && { cat "$TMP/load.txt"; echo "$CAP"; exit 0; }

# --- measurements ------------------------------------------------------------------------
PODTAP=$(pgo/build.sh)
# Every run reads its capture and program warm from the page cache (see replay_bench.sh).

NF=$(frames "$CAP")
SUMMARY=$(replay "$CAP")
TX=$(awk '/^packets/ {print $8}' <<<"$SUMMARY")
EVENTS=$(awk '/^event/,/^$/' <<<"$SUMMARY")
OPS=$(awk '$1 == "memcached"' <<<"$SUMMARY")
times=(); for _ in $(seq "$RUNS"); do times+=("$(wall "$PODTAP" replay --output table --workers 1 "$CAP")"); done
T_FULL=$(med "${times[@]}")
# Per core: the worker thread's own CPU time, as podtap prints it (`worker cpu ... T
# transactions/s per core`); median, minimum and maximum of 2 * RUNS + 1 readings.
CORE=$(per_core "$CAP")

editcap -r "$CAP" "$TMP/prefix.pcap" 1-"$PREFIX" 2>/dev/null
NP=$(frames "$TMP/prefix.pcap")
TX_P=$(replay "$TMP/prefix.pcap" | awk '/^packets/ {print $8}')
# What tshark's dissector finds in the prefix: the frames it shows, the commands in them.
TSHARK_FRAMES=$(tshark -n -r "$TMP/prefix.pcap" -Y memcache 2>/dev/null | wc -l)
TSHARK_CMDS=$(tshark -n -r "$TMP/prefix.pcap" -Y memcache.command -T fields -e memcache.command 2>/dev/null \
  | tr ',' '\n' | grep -c -x -e get -e set || true)
# podtap and tshark -Y memcache on the same prefix, in back-to-back pairs: the machine's
# speed wanders over minutes; the ratio is the median of the pairs' ratios.
tshark_pairs "$TMP/prefix.pcap" memcache
# Instructions (cachegrind), whole process, on the prefix.
IR=$(instructions "$TMP/prefix.pcap")
IR_TX=$(awk -v i="$IR" -v t="$TX_P" 'BEGIN { printf "%.0f", i / t }')

SECTION=$(cat <<EOF
## Memcached decoding (\`perf/memcached_bench.sh\`)

Latest run: $(date -u +%Y-%m-%dT%H:%M:%SZ) on $(nproc) cores, load average before the measurements: $(cut -d' ' -f1-3 /proc/loadavg).
Command: \`perf/memcached_bench.sh\`$( [ "$QUICK" = 1 ] && echo " (QUICK=1)"), $(build_kind).
Capture: $N text-protocol sets, then $N gets, of random keys (100000 of them, 3-byte values) from
$CONNS connections, $DEPTH commands per write (the \`redis-benchmark -P 16 -t get,set\` of the
Redis section, for memcached; a bounded raw-socket loop, \`load.py\` in the script) against
memcached $(memcached -V | awk '{print $2}'), tcpdump on the server's veth (offloads off: MTU-sized segments),
$NF frames, ${CAPTURE_DROPS:-0} dropped by the kernel while capturing. Replay: \`podtap replay FILE --output table --workers 1\`
(L2-L4, flows, TCP reassembly, detection, memcached parsing and pairing, the summary's statistics).

| measure | value |
| --- | ---: |
| memcached's own counters over the capture: cmd_set, cmd_get (get_hits, get_misses) | $((S1 - S0)), $((G1 - G0)) ($((H1 - H0)), $((M1 - M0))) |
| podtap transactions in the capture | $TX |
| podtap seconds, whole file (wall clock, start-up included; median of $RUNS) | $T_FULL |
| podtap memcached commands/s, whole file, wall clock | $(rate "$TX" "$T_FULL") |
| podtap memcached commands/s per core (worker CPU time; median of $((RUNS * 2 + 1)), min, max) | $CORE |
| prefix: frames, podtap transactions, frames tshark -Y memcache shows, get/set commands tshark finds | $NP, $TX_P, $TSHARK_FRAMES, $TSHARK_CMDS |
| tshark -n -Y memcache, frames/s (prefix, median of the pairs) | $(rate "$NP" "$(med "${pt[@]}")") |
| podtap frames/s (prefix, wall clock, median of the pairs) | $(rate "$NP" "$(med "${pp[@]}")") |
| podtap / tshark -Y memcache (prefix, wall clock; median of $PAIRS back-to-back pairs, min, max) | $(med "${pr[@]}")x ($(printf '%s\n' "${pr[@]}" | sort -g | head -1), $(printf '%s\n' "${pr[@]}" | sort -g | tail -1)) |
| instructions, prefix, whole process (cachegrind) | $IR |
| instructions per memcached command (prefix) | $IR_TX |

A frame of this capture carries $(awk -v t="$TX_P" -v n="$NP" 'BEGIN { printf "%.1f", t / n }') commands on average: the client writes 16 commands
at a time, and memcached answers 16 sets with one segment but sends each get's reply in a
segment of its own (as it does on this setup), so the gets' frames carry one reply each.
The tshark ratio compares time per frame.
tshark's get/set count is far below podtap's because its memcache dissector reports one
command per TCP segment: a client segment of 16 sets shows as one \`set\`.

podtap's summary rows for memcached, and its drop and error counters:

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
results_section "## Memcached decoding" "$SECTION"
echo "$SECTION"
