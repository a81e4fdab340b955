#!/usr/bin/env bash
# Export overhead benchmark: transactions/s through the whole pipeline (decode, flows,
# HTTP/1.1, statistics, span sampling, OTLP export) with export off and on, measured in
# one run on the same input, alternating off/on runs. Replaces its own section of
# perf/RESULTS.md and leaves the others alone.
#
#   perf/export_bench.sh                 # ~1M transactions, 5 runs each
#   TX_FLOWS=2000 RUNS=3 perf/export_bench.sh
#
# Input: `podtap synth` (keep-alive HTTP/1.1, TX_FLOWS connections x TX_REQS requests).
# Export on: 10% head sampling, every metric, OTLP/gRPC to a real rotel-agent on loopback
# (`--exporter blackhole`: it receives and decodes, then discards), cumulative metrics
# exported every second, Prometheus endpoint up. Export off: the same config without
# OTLP and Prometheus (no exporter thread at all).
#
# "pipeline seconds" ends when replay has processed every frame (the summary table is
# written); "total seconds" also includes the exporter's final flush (spans still
# buffered when the file ends are sent before exit, within a 5 s deadline).
set -euo pipefail
. "$(dirname "$0")/lib.sh"
cd "$(dirname "$0")/.."
export PATH="$HOME/.cargo/bin:$PATH"
OUT=perf/out
mkdir -p "$OUT"
RUNS=${RUNS:-5}
TX_FLOWS=${TX_FLOWS:-10000}
TX_REQS=${TX_REQS:-100}
RATIO=${RATIO:-0.1}

ROTEL=$(python3 -c 'import rotel, os; print(os.path.join(os.path.dirname(rotel.__file__), "rotel-agent"))' 2>/dev/null || true)
[ -x "$ROTEL" ] || { echo "rotel-agent missing: make deps-test (pip install rotel)" >&2; exit 1; }

PODTAP=$(pgo/build.sh)
PCAP=$OUT/export_synth.pcap
"$PODTAP" synth "$PCAP" --tcp-flows "$TX_FLOWS" --requests "$TX_REQS" 2>/dev/null

LOAD=$(cut -d' ' -f1-3 /proc/loadavg)
TMP=$(mktemp -d)
ROTEL_PID=
cleanup() {
  [ -n "$ROTEL_PID" ] && kill "$ROTEL_PID" 2>/dev/null && wait "$ROTEL_PID" 2>/dev/null || true
  rm -rf "$TMP"
}
trap cleanup EXIT
port() { python3 -c 'import socket; s=socket.socket(); s.bind(("127.0.0.1",0)); print(s.getsockname()[1])'; }
GRPC=$(port); HTTP=$(port); PROM=$(port)
"$ROTEL" start --otlp-grpc-endpoint "127.0.0.1:$GRPC" --otlp-http-endpoint "127.0.0.1:$HTTP" \
  --exporter blackhole --pid-file "$TMP/rotel.pid" --log-file "$TMP/rotel.log" >"$TMP/rotel.out" 2>&1 &
ROTEL_PID=$!
for _ in $(seq 100); do (echo >/dev/tcp/127.0.0.1/"$GRPC") 2>/dev/null && break; sleep 0.1; done

cat > "$TMP/on.toml" <<EOF
[export.otlp]
enabled = true
protocol = "grpc"
endpoint = "http://127.0.0.1:$GRPC"
traces = true
metrics = true
[export.metrics]
interval_ms = 1000
[export.spans]
sample_ratio = $RATIO
[export.prometheus]
listen = "127.0.0.1:$PROM"
EOF
grep -v -e '^enabled' -e '^listen' "$TMP/on.toml" > "$TMP/off.toml"

# Alternate off/on runs; print one line per run: mode transactions pipeline_s total_s cpu_s export-line
run_modes() { # runs pps > output
python3 - "$PODTAP" "$PCAP" "$TMP" "$1" "$2" <<'PY'
import resource, subprocess, sys, time
podtap, pcap, tmp, runs, pps = sys.argv[1], sys.argv[2], sys.argv[3], int(sys.argv[4]), sys.argv[5]
def cpu():
    r = resource.getrusage(resource.RUSAGE_CHILDREN)
    return r.ru_utime + r.ru_stime
for _ in range(runs):
    for mode in ("off", "on"):
        c0, t0 = cpu(), time.monotonic()
        p = subprocess.Popen([podtap, "--config", f"{tmp}/{mode}.toml", "replay", pcap,
                              "--workers", "1", "--output", "table", "--pps", pps],
                             stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True)
        first = p.stdout.readline()          # the summary: every frame is processed
        t1 = time.monotonic()
        rest = first + p.stdout.read()
        err = p.stderr.read()
        p.wait()
        t2 = time.monotonic()
        assert p.returncode == 0, err
        tx = int(next(l for l in rest.splitlines() if l.startswith("packets")).split("transactions")[1].split()[0])
        exp = next((l for l in err.splitlines() if l.startswith("export: ")), "-")
        print(mode, tx, f"{t1 - t0:.3f}", f"{t2 - t0:.3f}", f"{cpu() - c0:.3f}", exp, flush=True)
PY
}
# As fast as the pipeline goes (the worst case for export: every core busy).
run_modes "$RUNS" 0 > "$TMP/runs.txt"
cat "$TMP/runs.txt"
# At the target load: the frames offered at TX_RATE transactions/s (`replay --pps`).
FRAMES=$(capinfos -c -M "$PCAP" 2>/dev/null | awk -F: '/Number of packets/ {gsub(/ /,"",$2); print $2}')
TX_RATE=${TX_RATE:-100000}
PPS=$(awk -v f="$FRAMES" -v r="$TX_RATE" -v t="$((TX_FLOWS * TX_REQS))" 'BEGIN { printf "%.0f", f * r / t }')
run_modes "${PACED_RUNS:-3}" "$PPS" > "$TMP/paced.txt"
cat "$TMP/paced.txt"

median() { sort -g | awk '{a[NR]=$1} END {print a[int((NR+1)/2)]}'; }
col() { awk -v m="$1" -v c="$2" '$1==m {print $c}' "$TMP/runs.txt" | median; }
TX=$(awk '$1=="on" {print $2; exit}' "$TMP/runs.txt")
P_OFF=$(col off 3); P_ON=$(col on 3); T_OFF=$(col off 4); T_ON=$(col on 4); C_OFF=$(col off 5); C_ON=$(col on 5)
# The export line of the on run whose pipeline time is the median.
EXPORT=$(awk -v p="$P_ON" '$1=="on" && $3==p {sub(/^([^ ]+ ){5}/, ""); print; exit}' "$TMP/runs.txt")
rate() { awk -v n="$1" -v t="$2" 'BEGIN { printf "%.0f", n / t }'; }
R_OFF=$(rate "$TX" "$P_OFF"); R_ON=$(rate "$TX" "$P_ON")
RT_OFF=$(rate "$TX" "$T_OFF"); RT_ON=$(rate "$TX" "$T_ON")
LOSS=$(awk -v a="$R_OFF" -v b="$R_ON" 'BEGIN { printf "%.1f", 100 * (a - b) / a }')
SAMPLED=$(sed -n 's/.*spans sampled=\([0-9]*\).*/\1/p' <<<"$EXPORT")
EXPORTED=$(sed -n 's/.*spans sampled=[0-9]* exported=\([0-9]*\).*/\1/p' <<<"$EXPORT")
REJECTED=$(sed -n 's/.* rejected=\([0-9]*\).*/\1/p' <<<"$EXPORT")
DROPPED=$(sed -n 's/.* rejected=[0-9]* dropped=\([0-9]*\).*/\1/p' <<<"$EXPORT")
POINTS=$(sed -n 's/.*data points exported=\([0-9]*\).*/\1/p' <<<"$EXPORT")
pcol() { awk -v m="$1" -v c="$2" '$1==m {print $c}' "$TMP/paced.txt" | median; }
PT_OFF=$(pcol off 3); PT_ON=$(pcol on 3); PC_OFF=$(pcol off 5); PC_ON=$(pcol on 5)
PTX_OFF=$(pcol off 2); PTX_ON=$(pcol on 2)
PR_OFF=$(rate "$PTX_OFF" "$PT_OFF"); PR_ON=$(rate "$PTX_ON" "$PT_ON")
PLOSS=$(awk -v a="$PR_OFF" -v b="$PR_ON" 'BEGIN { printf "%.1f", 100 * (a - b) / a }')
PEXPORT=$(awk -v p="$PT_ON" '$1=="on" && $3==p {sub(/^([^ ]+ ){5}/, ""); print; exit}' "$TMP/paced.txt")
PDROPPED=$(sed -n 's/.* rejected=[0-9]* dropped=\([0-9]*\).*/\1/p' <<<"$PEXPORT")
PEXPORTED=$(sed -n 's/.*spans sampled=[0-9]* exported=\([0-9]*\).*/\1/p' <<<"$PEXPORT")
PSAMPLED=$(sed -n 's/.*spans sampled=\([0-9]*\).*/\1/p' <<<"$PEXPORT")
CPUS=$(nproc); MODEL=$(awk -F': ' '/model name/ {print $2; exit}' /proc/cpuinfo)

SECTION=$(cat <<EOF
## Export overhead (statistics, 10% span sampling, OTLP to a collector)

Latest run: $(date -u +%Y-%m-%dT%H:%M:%SZ) on $CPUS cores ($MODEL), load average before the run: $LOAD.
Command: \`RUNS=$RUNS TX_FLOWS=$TX_FLOWS TX_REQS=$TX_REQS perf/export_bench.sh\`: \`podtap synth --tcp-flows $TX_FLOWS --requests $TX_REQS\`
(keep-alive HTTP/1.1), then \`podtap --config {off,on}.toml replay <pcap> --workers 1 --output table\`,
off and on alternating, $RUNS runs each, medians. On: \`sample_ratio = $RATIO\`, OTLP/gRPC spans and
metrics (every metric, cumulative, exported every second) to \`rotel-agent --exporter blackhole\` on
loopback, Prometheus endpoint up. Off: no exporter. Pipeline = until every frame is processed;
total = until exit, including the final span flush.

### At the target load: $TX_RATE transactions/s offered

\`replay --pps $PPS\` ($FRAMES frames for $TX transactions), ${PACED_RUNS:-3} runs each, medians.
If the pipeline cannot keep up it falls behind the schedule and the rate drops.

| measure | export off | export on |
| --- | ---: | ---: |
| transactions reported | $PTX_OFF | $PTX_ON |
| seconds | $PT_OFF | $PT_ON |
| transactions/s | $PR_OFF | $PR_ON |
| process CPU seconds (all threads) | $PC_OFF | $PC_ON |

Loss with export on at $TX_RATE transactions/s: **$PLOSS%** (target: < 10%, 10% sampling, all
metrics on). Spans: sampled $PSAMPLED, exported $PEXPORTED, dropped $PDROPPED.

### Saturated: as fast as one worker goes

| measure | export off | export on |
| --- | ---: | ---: |
| transactions | $TX | $TX |
| pipeline seconds | $P_OFF | $P_ON |
| transactions/s (pipeline) | $R_OFF | $R_ON |
| total seconds (with final flush) | $T_OFF | $T_ON |
| transactions/s (total) | $RT_OFF | $RT_ON |
| process CPU seconds (all threads) | $C_OFF | $C_ON |

Throughput loss with export on when saturated (pipeline): **$LOSS%**. Here the worker makes
spans several times faster than the target load, so the span buffer fills and the oldest
spans are dropped (counted): spans sampled $SAMPLED, exported $EXPORTED, rejected $REJECTED,
dropped $DROPPED; metric data points exported $POINTS.

All runs (mode, transactions, pipeline s, total s, CPU s, export line):

\`\`\`
$(cat "$TMP/paced.txt" "$TMP/runs.txt")
\`\`\`
EOF
)
results_section "## Export overhead" "$SECTION"
echo "saturated: off $R_OFF tx/s, on $R_ON tx/s, loss $LOSS%; at $TX_RATE tx/s: off $PR_OFF, on $PR_ON, loss $PLOSS%"
