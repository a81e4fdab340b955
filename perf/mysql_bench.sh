#!/usr/bin/env bash
# MySQL/MariaDB replay benchmark: podtap's statements per second against tshark's MySQL
# dissector on the same capture. Replaces its own section of perf/RESULTS.md and leaves
# the others alone.
#
#   perf/mysql_bench.sh            # mysqlslap, 400k statements (a few minutes)
#   QUICK=1 perf/mysql_bench.sh    # 80k statements
#
# The capture: a real mariadbd (fresh data directory from mariadb-install-db, in a temp
# dir) and mysqlslap in two network namespaces joined by a veth pair (nothing leaves the
# namespaces), `mysqlslap --auto-generate-sql --auto-generate-sql-load-type=key` (primary
# key lookups of one row: a mixed load's full scans return every row inserted so far),
# 8 connections; segmentation offloads off, so tcpdump sees the MTU-sized segments a
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
# tshark is far slower than podtap: both run on the first PREFIX frames for the ratio.
PREFIX=${PREFIX:-200000}
if [ "$QUICK" = 1 ]; then N=${N:-80000}; else N=${N:-400000}; fi

need() { command -v "$1" >/dev/null || { echo "missing $1: make deps-test (or apt-get install $2)" >&2; exit 1; }; }
need tcpdump tcpdump; need tshark tshark; need editcap tshark; need mariadb-install-db mariadb-server
need mysqlslap mariadb-client; need valgrind valgrind

PODTAP=$(pgo/build.sh)

# --- capture ----------------------------------------------------------------------------
CAP=$OUT/mysql.pcap
NS_S=ptmb-srv-$$; NS_C=ptmb-cli-$$; TMP=$(mktemp -d)
cleanup() {
  [ -n "${TCPDUMP_PID:-}" ] && kill "$TCPDUMP_PID" 2>/dev/null || true
  [ -n "${DB_PID:-}" ] && kill "$DB_PID" 2>/dev/null && wait "$DB_PID" 2>/dev/null || true
  # Whatever of ours still runs inside goes first; a namespace left behind is said.
  for ns in "$NS_S" "$NS_C"; do
    for p in $(ip netns pids "$ns" 2>/dev/null); do kill "$p" 2>/dev/null || true; done
    ip netns del "$ns" 2>/dev/null || ! ip netns list | grep -qw "$ns" \
      || echo "mysql_bench: could not delete network namespace $ns" >&2
  done
  rm -rf "$TMP"
}
trap cleanup EXIT
ip netns add "$NS_S"; ip netns add "$NS_C"
ip link add pmb-s$$ netns "$NS_S" type veth peer name pmb-c$$ netns "$NS_C"
ip -n "$NS_S" addr add 10.79.0.1/24 dev pmb-s$$; ip -n "$NS_C" addr add 10.79.0.2/24 dev pmb-c$$
for ns in "$NS_S:pmb-s$$" "$NS_C:pmb-c$$"; do
  ip -n "${ns%%:*}" link set "${ns#*:}" up; ip -n "${ns%%:*}" link set lo up
  ip netns exec "${ns%%:*}" ethtool -K "${ns#*:}" tso off gso off gro off >/dev/null
done
mariadb-install-db --no-defaults --datadir="$TMP/data" --user=root \
  --auth-root-authentication-method=normal --skip-test-db >/dev/null
ip netns exec "$NS_S" /usr/sbin/mariadbd --no-defaults --datadir="$TMP/data" --socket="$TMP/sock" \
  --pid-file="$TMP/pid" --bind-address=10.79.0.1 --port=3306 --user=root --skip-log-bin \
  --skip-name-resolve --innodb-buffer-pool-size=64M --innodb-flush-log-at-trx-commit=0 \
  >"$TMP/err.log" 2>&1 &
DB_PID=$!
for _ in $(seq 300); do mariadb --no-defaults --socket="$TMP/sock" -uroot -e 'SELECT 1' >/dev/null 2>&1 && break; sleep 0.1; done
mariadb --no-defaults --socket="$TMP/sock" -uroot -e \
  "CREATE USER 'bench'@'%' IDENTIFIED BY 'bench'; GRANT ALL ON *.* TO 'bench'@'%';"
ip netns exec "$NS_S" tcpdump -i pmb-s$$ -s 0 -U --immediate-mode -B 65536 -w "$CAP" 2>"$TMP/tcpdump.err" &
TCPDUMP_PID=$!
for _ in $(seq 50); do grep -q "listening on" "$TMP/tcpdump.err" 2>/dev/null && break; sleep 0.1; done
ip netns exec "$NS_C" mysqlslap --no-defaults -h 10.79.0.1 -u bench -pbench \
  --auto-generate-sql --auto-generate-sql-load-type=key --auto-generate-sql-add-autoincrement \
  --number-of-queries="$N" \
  --concurrency=8 --iterations=1 > "$TMP/bench.txt" 2>&1
sleep 0.5; kill -INT "$TCPDUMP_PID"; wait "$TCPDUMP_PID" 2>/dev/null || true; TCPDUMP_PID=
CAPTURE_DROPS=$(awk '/dropped by kernel/ {print $1}' "$TMP/tcpdump.err")
VERSION=$(/usr/sbin/mariadbd --version | awk '{print $3}')
kill "$DB_PID"; wait "$DB_PID" 2>/dev/null || true; DB_PID=

# --- measurements ------------------------------------------------------------------------
# Every run reads its capture and program warm from the page cache (see replay_bench.sh).

NF=$(frames "$CAP")
SUMMARY=$(replay "$CAP")
TX=$(awk '/^packets/ {print $8}' <<<"$SUMMARY")
EVENTS=$(awk '/^event/,/^$/' <<<"$SUMMARY")
OPS=$(awk '$1 == "mariadb" || $1 == "mysql"' <<<"$SUMMARY")
times=(); for _ in $(seq "$RUNS"); do times+=("$(wall "$PODTAP" replay --output table --workers 1 "$CAP")"); done
T_FULL=$(med "${times[@]}")
# Per core: the worker thread's own CPU time, as podtap prints it (`worker cpu ... T
# transactions/s per core`); median, minimum and maximum of 2 * RUNS + 1 readings.
CORE=$(per_core "$CAP")

editcap -r "$CAP" "$TMP/prefix.pcap" 1-"$PREFIX" 2>/dev/null
NP=$(frames "$TMP/prefix.pcap")
TX_P=$(replay "$TMP/prefix.pcap" | awk '/^packets/ {print $8}')
# What tshark's dissector finds in the prefix: the frames it shows.
TSHARK_FRAMES=$(tshark -n -r "$TMP/prefix.pcap" -Y mysql 2>/dev/null | wc -l)
# podtap and tshark -Y mysql on the same prefix, in back-to-back pairs: the machine's
# speed wanders over minutes; the ratio is the median of the pairs' ratios.
tshark_pairs "$TMP/prefix.pcap" mysql
# Instructions (cachegrind), whole process, on the prefix.
IR=$(instructions "$TMP/prefix.pcap")
IR_TX=$(awk -v i="$IR" -v t="$TX_P" 'BEGIN { printf "%.0f", i / t }')

SECTION=$(cat <<EOF
## MySQL decoding (\`perf/mysql_bench.sh\`)

Latest run: $(date -u +%Y-%m-%dT%H:%M:%SZ) on $(nproc) cores, load average before the measurements: $(cut -d' ' -f1-3 /proc/loadavg).
Binary: $(build_kind).
Capture: \`mysqlslap --auto-generate-sql --auto-generate-sql-load-type=key --auto-generate-sql-add-autoincrement --number-of-queries=$N --concurrency=8\`
against mariadbd $VERSION, tcpdump on the server's veth (offloads off: MTU-sized segments),
$NF frames, ${CAPTURE_DROPS:-0} dropped by the kernel while capturing. Replay: \`podtap replay FILE --output table --workers 1\`
(L2-L4, flows, TCP reassembly, detection, MySQL framing, SQL summaries, pairing, the summary's statistics).

| measure | value |
| --- | ---: |
| podtap transactions in the capture (mysqlslap's statements, its schema set-up and logins' queries) | $TX |
| podtap seconds, whole file (wall clock, start-up included; median of $RUNS) | $T_FULL |
| podtap MySQL statements/s, whole file, wall clock | $(rate "$TX" "$T_FULL") |
| podtap MySQL statements/s per core (worker CPU time; median of $((RUNS * 2 + 1)), min, max) | $CORE |
| prefix: frames, podtap transactions, frames tshark -Y mysql shows | $NP, $TX_P, $TSHARK_FRAMES |
| tshark -n -Y mysql, frames/s (prefix, median of the pairs) | $(rate "$NP" "$(med "${pt[@]}")") |
| podtap frames/s (prefix, wall clock, median of the pairs) | $(rate "$NP" "$(med "${pp[@]}")") |
| podtap / tshark -Y mysql (prefix, wall clock; median of $PAIRS back-to-back pairs, min, max) | $(med "${pr[@]}")x ($(printf '%s\n' "${pr[@]}" | sort -g | head -1), $(printf '%s\n' "${pr[@]}" | sort -g | tail -1)) |
| instructions, prefix, whole process (cachegrind) | $IR |
| instructions per MySQL statement (prefix) | $IR_TX |

Targets (issue 23): >= 1.5 million statements/s per core in replay with L2-L7 and
pairing; >= 50x \`tshark -Y mysql\` on the same prefix.

Each statement here is a primary-key SELECT answered by a one-row result set: a request
frame and a response frame of seven MySQL packets (column count, two definitions, EOF,
the row, EOF). Of the instructions per statement about a fifth are the shared SQL
tokenizer's (\`proto::sql\`: the operation and table of every statement, for
\`db.query.summary\`), about as much again the MySQL framing and pairing of the eight
packets, the rest the per-frame pipeline (capture file, L2-L4, flows, reassembly) and the
per-transaction summary (cachegrind, \`cg_annotate\`). The tshark ratio is wall clock of
two processes on a 200k-frame prefix: podtap's start-up is a noticeable part of its
tenth of a second, and the pairs spread widely when other jobs share the two cores (the
load average above).

podtap's summary rows for MySQL, and its drop and error counters:

\`\`\`
$OPS
$EVENTS
\`\`\`

mysqlslap reported:

\`\`\`
$(grep -v -e '^ *$' "$TMP/bench.txt" || true)
\`\`\`
EOF
)
results_section "## MySQL decoding" "$SECTION"
echo "$SECTION"
