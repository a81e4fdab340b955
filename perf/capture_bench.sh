#!/usr/bin/env bash
# Live capture benchmark: trafgen in a network namespace blasts 64- and 512-byte UDP and
# TCP frames over a veth into the root namespace; on the host end, one capturer at a time
# (nothing, tcpdump -w /dev/null, netsniff-ng, podtap in tpacket mode, a bare AF_XDP
# receive loop on the veth (examples/xdp_count.rs: no arrival stamps), podtap in xdp mode
# on the veth as on a SPAN port, and podtap in xdp mode mirroring the veth as a pod's; the
# last two also with capture.xdp.frame_timestamps = false, "-nots", to show what the
# per-frame arrival stamps cost) receives them.
#
# The machine's speed wanders from minute to minute, so the capturers take turns: ROUNDS
# rounds per kind of traffic, each round running every capturer once (the order rotated
# from round to round), and the tables give medians over the rounds.
#
# For each run: frames that arrived (veth rx counter), frames the capturer got, its loss,
# its own CPU time (user and system) per packet, and the kernel cost it adds per packet.
# The generator saturates its CPU, and the veth delivers each frame to the taps (AF_PACKET
# ring copy, fanout, filter; generic XDP and the AF_XDP copy) in the generator's own
# context on that CPU, so what a capturer adds there shows as a lower arrival rate:
#   added kernel us/packet = 1/rate(capturer) - 1/rate(nothing, same round)
#                            + the capturer's own system time per packet (its CPU).
# Kernel CPU accounting here is tick-sampled and cannot split softirq time finely; the
# arrival rate measures the same cost with the clock instead. That measure depends on how
# saturated the generator is and moves by up to 2x between runs of one capturer on a shared
# 2-core VM, so for the AF_PACKET capturers (tcpdump, netsniff-ng, podtap tpacket) the
# kernel's work is also sampled directly:
#   AF_PACKET kernel ns/pkt (sampled) = (time in the packet socket's receive path, i.e.
#     samples under tpacket_rcv / packet_rcv: socket filter, timestamp, ring copy
#     + the capturer's own kernel time: poll, getsockopt, faults) / frames arrived
# from `perf record -a -e cpu-clock:k -F 20000 -g` over the run's measured window (both
# CPUs; cpu-clock is a software event, so it works without hardware counters). perf runs
# in every run (the same sampling overhead for every capturer and the baseline); without
# perf (apt-get install linux-perf) or with SAMPLE=0 the column says n/a.
#
#   perf/capture_bench.sh                 # writes perf/out/capture.md, prints it
#   N=2000000 ROUNDS=7 perf/capture_bench.sh
#   RATE=300000 perf/capture_bench.sh     # fixed offered rate (then only loss and CPU mean much)
#   CAPTURERS="none tcpdump podtap-tpacket" perf/capture_bench.sh   # a subset
#   SAMPLE=0 perf/capture_bench.sh        # no perf sampling
#
# For the AF_XDP capturers the kernel's own BPF run-time statistics (kernel.bpf_stats_enabled,
# on for the whole bench, for every capturer alike) give the ns per frame of podtap's XDP
# program and of the mirror's stamp program (tc, on the capture device), read while the
# capturer runs (examples/bpf_prog_stats.rs). With and without arrival stamps, these are
# what the stamps cost in the kernel, where they also lower the arrival rate.
#
# The generator is pinned to CPU 1, the capturers (every thread of them) to CPU 0.
# Nothing leaves the namespace: the host end has no address and the frames are dropped
# by the stack after capture.
set -euo pipefail
cd "$(dirname "$0")/.."
export PATH="$HOME/.cargo/bin:$PATH"
OUT=perf/out
mkdir -p "$OUT"
N=${N:-1000000}          # frames per run
ROUNDS=${ROUNDS:-5}      # runs of each capturer per kind of traffic (medians reported)
RATE=${RATE:-}           # offered pps (empty: as fast as trafgen goes)
SAMPLE=${SAMPLE:-1}      # 0: no perf sampling (the sampled column says n/a)
need() { command -v "$1" >/dev/null || { echo "missing $1: apt-get install $2" >&2; exit 1; }; }
need trafgen netsniff-ng; need netsniff-ng netsniff-ng; need tcpdump tcpdump
# perf is optional: without it the sampled kernel cost is n/a and everything else runs.
want() { command -v "$1" >/dev/null || { echo "missing $1 (apt-get install $2): $3" >&2; return 1; }; }
[ "$SAMPLE" = 1 ] && { want perf linux-perf "the sampled kernel cost will be n/a" || SAMPLE=0; }

cargo build --release --quiet --example xdp_count --example bpf_prog_stats
PODTAP=$(pgo/build.sh)
XDP_COUNT=$PWD/target/release/examples/xdp_count
BPF_STATS=$PWD/target/release/examples/bpf_prog_stats
NS=ptcapb-$$; HOST_IF=ptcapb$$; GEN_IF=tg$$; TMP=$(mktemp -d)
WMEM_OLD=$(sysctl -n net.core.wmem_default)
BPF_STATS_OLD=$(sysctl -n kernel.bpf_stats_enabled)
cleanup() {
  pkill -P $$ 2>/dev/null || true
  # perf and the capturers are started in run_one's subshell: their pids are in $TMP/pids.
  # (a pid leaves the file once it has been waited for)
  [ -f "$TMP/pids" ] && while read -r p; do kill -INT "$p" 2>/dev/null || true; done < "$TMP/pids"
  sleep 0.5
  ip link del "$HOST_IF" 2>/dev/null || true
  ip netns del "$NS" 2>/dev/null || true
  sysctl -qw net.core.wmem_default="$WMEM_OLD"
  sysctl -qw kernel.bpf_stats_enabled="$BPF_STATS_OLD"
  rm -rf "$TMP"
}
trap cleanup EXIT
sysctl -qw kernel.bpf_stats_enabled=1
# trafgen slows down instead of failing with ENOBUFS when the socket buffer is large.
sysctl -qw net.core.wmem_default=8388608
ip netns add "$NS"
ip link add "$HOST_IF" type veth peer name "$GEN_IF" netns "$NS"
ip link set "$HOST_IF" up
ip -n "$NS" link set "$GEN_IF" up
HOST_MAC=$(cat /sys/class/net/$HOST_IF/address)
# perf must be able to sample the kernel system-wide (root, or perf_event_paranoid <= -1).
if [ "$SAMPLE" = 1 ] && ! perf record -q -a -e cpu-clock:k -F 1000 -g -o "$TMP/probe.data" sleep 0.1 >"$TMP/probe.log" 2>&1; then
  echo "perf cannot sample here ($(head -1 "$TMP/probe.log")): the sampled kernel cost will be n/a" >&2
  SAMPLE=0
fi

cfg() { # proto size
  local l4len=8
  [ "$1" = tcp ] && l4len=20
  # A 64-byte frame on a wire carries 4 bytes of FCS that a veth does not have.
  local fill=$(( $2 - 4 - 14 - 20 - l4len ))
  local l4="udp(sp=dinc(1000, 1255, 1), dp=5000)"
  [ "$1" = tcp ] && l4="tcp(sp=dinc(1000, 1255, 1), dp=80, ack, psh, win=65535)"
  echo "{ eth(da=$HOST_MAC, sa=02:00:00:00:00:01), ipv4(saddr=10.202.0.1, daddr=10.202.0.2), $l4, fill(0x41, $fill) }" > "$TMP/$1$2.cfg"
}
rx() { cat /sys/class/net/$HOST_IF/statistics/rx_packets; }
started() { echo "$1" >> "$TMP/pids"; }
reaped() { sed -i "/^$1\$/d" "$TMP/pids"; }
proc_cpu() { awk '{print $14, $15}' "/proc/$1/stat" 2>/dev/null || echo 0 0; }   # user system
HZ=$(getconf CLK_TCK)

# The mirror gets a capture device and filter handle of its own: a podtap starting
# elsewhere on the machine with the defaults removes ptap0 and every filter with handle
# 0x7074 as a crashed run's leftovers, and with them this bench's copies.
cat > "$TMP/podtap.toml" <<CONF
[capture]
mode = "tpacket"
workers = 1
cpus = [0]
[capture.mirror]
device = "ptcb$$"
peer = "ptcbc$$"
tc_handle = $(( 0x7200 + $$ % 1000 ))
state_dir = "$TMP"
[output]
stats_interval_secs = 0
CONF
# xdp: the veth stands for a SPAN port (AF_XDP on its queue, as the bare loop); xdp-mirror:
# the veth stands for a pod's veth (copies through podtap's mirror device).
sed 's/^mode = .*/mode = "xdp"/' "$TMP/podtap.toml" > "$TMP/podtap-xdp-mirror.toml"
sed "s/^mode = .*/mode = \"xdp\"\ndirect = [\"$HOST_IF\"]/" "$TMP/podtap.toml" > "$TMP/podtap-xdp.toml"
for c in podtap-xdp podtap-xdp-mirror; do
  { cat "$TMP/$c.toml"; printf '[capture.xdp]\nframe_timestamps = false\n'; } > "$TMP/$c-nots.toml"
done

# tapcost.py CAPTURER_PID FRAMES LABEL BREAKDOWN_TSV < perf script -F pid,period,ip,sym
# -> "tap_ns own_ns path_ns" per frame. tap: samples whose call chain passes through the
# packet socket's receive function (all of the socket's per-frame work: filter, timestamp,
# ring copy, block handling; whichever CPU and task it ran on). own: the capturer's other
# kernel samples (its syscalls and faults). path: the rest of the frame's way through the
# kernel (trafgen's send, the veth, the receive softirq), which no capturer changes: it
# scales with how fast the machine is at that moment, so tap / path is a second figure
# that does not move with the VM's speed. Appends the tap time per frame split by the
# function tpacket_rcv called (or its own code) to BREAKDOWN_TSV.
cat > "$TMP/tapcost.py" <<'PY'
import collections, sys
pid, frames, label, out = sys.argv[1], max(int(sys.argv[2]), 1), sys.argv[3], sys.argv[4]
ROOTS = {"tpacket_rcv", "packet_rcv", "packet_rcv_spkt", "packet_rcv_fanout"}
PATH = {"packet_sendmsg", "net_rx_action"}
tap = own = path = 0
parts = collections.Counter()
def sample(head, chain):
    global tap, own, path
    if head is None:
        return
    spid, period = head.split()[:2]
    period = int(period)
    syms = [f.split(None, 1)[1] if " " in f else "?" for f in chain]
    roots = [i for i, s in enumerate(syms) if s in ROOTS]
    if roots:
        top = roots[-1]  # callers come after callees; the outermost entry into the socket
        tap += period
        parts[syms[top - 1] if top > 0 else "(" + syms[top] + " itself)"] += period
    elif spid == pid:
        own += period
    elif PATH.intersection(syms):
        path += period
head, chain = None, []
for line in sys.stdin:
    if line.startswith("\t"):
        chain.append(line.strip())
    elif line.strip():
        sample(head, chain)
        head, chain = line, []
sample(head, chain)
with open(out, "a") as f:
    for sym, t in parts.items():
        f.write(f"{label}\t{sym}\t{t / frames:.2f}\n")
print(f"{tap / frames:.1f} {own / frames:.1f} {path / frames:.1f}")
PY

# run_one NAME PROTO SIZE ROUND -> "arrived captured lost user_jiffies system_jiffies seconds
#                                   tap_ns own_kernel_ns path_ns" (n/a when not sampled)
run_one() {
  local name=$1 proto=$2 size=$3 round=$4 pid="" perf_pid=""
  local log=$TMP/$1.log
  case $name in
    none) ;;
    tcpdump) taskset -c 0 tcpdump -i "$HOST_IF" -w /dev/null -B 65536 -s 0 2>"$log" & pid=$! ;;
    netsniff-ng) taskset -c 0 netsniff-ng --in "$HOST_IF" --out /dev/null --silent --ring-size 64MiB 2>"$log" >"$log.out" & pid=$! ;;
    podtap-tpacket) NO_COLOR=1 taskset -c 0 "$PODTAP" --config "$TMP/podtap.toml" run -i "$HOST_IF" --output table >/dev/null 2>"$log" & pid=$! ;;
    af_xdp-bare) taskset -c 0 "$XDP_COUNT" "$HOST_IF" >"$log.out" 2>"$log" & pid=$! ;;
    podtap-xdp*) NO_COLOR=1 taskset -c 0 "$PODTAP" --config "$TMP/$name.toml" run -i "$HOST_IF" --output table >/dev/null 2>"$log" & pid=$! ;;
  esac
  [ -n "$pid" ] && started "$pid"
  sleep 1.5
  if [ "$SAMPLE" = 1 ]; then
    # Every run is sampled, so the sampling overhead is the same for all capturers and
    # the baseline.
    perf record -q -a -e cpu-clock:k -F 20000 -g -o "$TMP/perf.data" >"$TMP/perf.log" 2>&1 &
    perf_pid=$!; started "$perf_pid"
    sleep 0.3   # perf has opened its events
  fi
  local rx0 u0=0 s0=0
  rx0=$(rx)
  [ -n "$pid" ] && read -r u0 s0 < <(proc_cpu "$pid")
  local rate_arg=()
  [ -n "$RATE" ] && rate_arg=(-b "${RATE}pps")
  local t0 t1
  t0=$(date +%s.%N)
  ip netns exec "$NS" taskset -c 1 trafgen -o "$GEN_IF" -i "$TMP/$proto$size.cfg" -n "$N" -P 1 -C -Q "${rate_arg[@]}" >"$TMP/trafgen.log" 2>&1 || { cat "$TMP/trafgen.log" >&2; exit 1; }
  t1=$(date +%s.%N)
  sleep 0.5
  local rx1 u1=0 s1=0
  rx1=$(rx)
  [ -n "$pid" ] && read -r u1 s1 < <(proc_cpu "$pid")
  # ns per run of the XDP program and of the mirror's stamp program, while they are loaded;
  # of each name the instance that ran most (other podtap instances may be running).
  local bpf_ns="n/a n/a"
  case $name in
    af_xdp-bare|podtap-xdp*)
      bpf_ns=$("$BPF_STATS" podtap_ | awk '
        { k = ($1 ~ /^podtap_xsk/) ? "xsk" : ($1 == "podtap_mirror_t") ? "ts" : ""
          if (k != "" && $2 > n[k]) { n[k] = $2; t[k] = $3 } }
        END { for (i = 1; i <= 2; i++) { k = i == 1 ? "xsk" : "ts"
                printf "%s ", (n[k] > 0 ? sprintf("%.1f", t[k] / n[k]) : "n/a") } }') ;;
  esac
  if [ -n "$perf_pid" ]; then
    kill -INT "$perf_pid"; wait "$perf_pid" 2>/dev/null || true; reaped "$perf_pid"
  fi
  local got=0 lost=0
  if [ -n "$pid" ]; then
    kill -INT "$pid"; wait "$pid" 2>/dev/null || true; reaped "$pid"
    case $name in
      tcpdump) got=$(awk '/packets received by filter/{print $1}' "$log"); lost=$(awk '/dropped by kernel/{print $1}' "$log") ;;
      netsniff-ng) got=$(tr -d '\r' < "$log.out" | awk '/packets passed filter/{print $1}')
                   lost=$(tr -d '\r' < "$log.out" | awk '/failed filter/{print $1}') ;;
      af_xdp-bare) got=$(sed -n 's/.*frames=\([0-9]*\).*/\1/p' "$log.out"); lost=$(sed -n 's/.*dropped=\([0-9]*\).*/\1/p' "$log.out") ;;
      podtap-*) got=$(sed -n 's/.*podtap stopped packets=\([0-9]*\).*/\1/p' "$log" | tail -1)
                lost=$(sed -n 's/.*podtap stopped.*kernel_dropped=\([0-9]*\).*/\1/p' "$log" | tail -1) ;;
    esac
  fi
  local sampled="n/a n/a n/a"
  case $name in
    none|tcpdump|netsniff-ng|podtap-tpacket)
      # none: what the packet-socket path costs without a capturer (should be 0).
      if [ -n "$perf_pid" ] && [ -s "$TMP/perf.data" ]; then
        sampled=$(perf script -i "$TMP/perf.data" -F pid,period,ip,sym 2>/dev/null |
          python3 "$TMP/tapcost.py" "${pid:--}" "$((rx1 - rx0))" "$proto ${size}B"$'\t'"$name"$'\t'"$round" "$BREAKDOWN") ||
          sampled="n/a n/a n/a"
      fi ;;
  esac
  rm -f "$TMP/perf.data"
  echo "$((rx1 - rx0)) ${got:-0} ${lost:-0} $((u1 - u0)) $((s1 - s0)) $(echo "$t1 - $t0" | bc -l) $sampled $bpf_ns"
}

# CAPTURERS="none tcpdump podtap-tpacket" measures a subset (none is the baseline: keep it).
read -r -a CAPTURERS <<< "${CAPTURERS:-none tcpdump netsniff-ng podtap-tpacket af_xdp-bare podtap-xdp podtap-xdp-nots podtap-xdp-mirror podtap-xdp-mirror-nots}"
RUNS=$OUT/capture_runs.tsv
BREAKDOWN=$OUT/capture_tap_breakdown.tsv
printf 'traffic\tcapturer\tround\tarrived\tcaptured\tdrops\tuser_j\tsys_j\tseconds\ttap_ns\town_kernel_ns\tpath_ns\txsk_ns\tstamp_ns\n' > "$RUNS"
printf 'traffic\tcapturer\tround\tcallee\tns_per_pkt\n' > "$BREAKDOWN"
for proto in udp tcp; do
  for size in 64 512; do
    cfg "$proto" "$size"
    for round in $(seq 0 $((ROUNDS - 1))); do
      for i in "${!CAPTURERS[@]}"; do
        cap=${CAPTURERS[$(( (i + round) % ${#CAPTURERS[@]} ))]}
        read -r arrived got lost ucpu scpu secs tap_ns own_ns path_ns xsk_ns stamp_ns < <(run_one "$cap" "$proto" "$size" "$round")
        printf '%s %dB\t%s\t%d\t%s\t%s\t%s\t%s\t%s\t%s\t%s\t%s\t%s\t%s\t%s\n' "$proto" "$size" "$cap" "$round" \
          "$arrived" "$got" "$lost" "$ucpu" "$scpu" "$secs" "$tap_ns" "$own_ns" "$path_ns" "$xsk_ns" "$stamp_ns" >> "$RUNS"
      done
    done
  done
done

RES=$OUT/capture.md
python3 - "$RUNS" "$HZ" "$N" "${RATE:-unlimited}" "$ROUNDS" "$(nproc)" "$(uname -r)" "$BREAKDOWN" > "$RES" <<'PY'
import csv, statistics, sys
runs_file, hz, n, rate, rounds, cpus, kernel, breakdown_file = sys.argv[1:]
hz = float(hz)
runs = list(csv.DictReader(open(runs_file), delimiter="\t"))
traffics = list(dict.fromkeys(r["traffic"] for r in runs))
caps = list(dict.fromkeys(r["capturer"] for r in runs))
med = statistics.median
def get(t, c):
    return {int(r["round"]): r for r in runs if r["traffic"] == t and r["capturer"] == c}
def us_per_pkt(secs, pkts):
    return secs / max(pkts, 1) * 1e6
def sampled(r):
    """AF_PACKET kernel ns per frame of one run (socket receive path + the capturer's own
    kernel time), None when the run was not sampled."""
    try:
        return float(r["tap_ns"]) + float(r["own_kernel_ns"])
    except ValueError:
        return None
def sampled_med(rs):
    v = [x for x in map(sampled, rs.values()) if x is not None]
    return (med(v), min(v), max(v)) if v else None
print(f"Offered: {n} frames per run, rate {rate}; {rounds} rounds, capturers in rotating order; "
      f"generator on CPU 1, capturer on CPU 0; {cpus} CPUs, {kernel}. Medians over the rounds.")
print()
print("| traffic | capturer | arrival Mpps | captured / arrived (all rounds) | kernel drops (all rounds) "
      "| capturer user us/pkt | capturer system us/pkt | added kernel us/pkt | AF_PACKET kernel ns/pkt (sampled) |")
print("| --- | --- | ---: | ---: | ---: | ---: | ---: | ---: | ---: |")
summary = {}
for t in traffics:
    base = get(t, "none")
    for c in caps:
        rs = get(t, c)
        mpps, user, system, added = [], [], [], []
        arrived = captured = drops = 0
        for rd, r in rs.items():
            a, secs = int(r["arrived"]), float(r["seconds"])
            mpps.append(a / secs / 1e6)
            if c == "none":
                continue
            arrived += a; captured += int(r["captured"]); drops += int(r["drops"])
            u = us_per_pkt(int(r["user_j"]) / hz, a)
            s = us_per_pkt(int(r["sys_j"]) / hz, a)
            user.append(u); system.append(s)
            if rd in base:
                b = base[rd]
                added.append(us_per_pkt(secs, a) - us_per_pkt(float(b["seconds"]), int(b["arrived"])) + s)
        row = {"mpps": med(mpps), "added": med(added) if added else 0.0, "rounds": rs}
        summary[(t, c)] = row
        sm = sampled_med(rs)
        sm = f"{sm[0]:.0f}" if sm else "n/a"
        if c == "none":
            print(f"| {t} | none | {row['mpps']:.3f} | - | - | - | - | - | {sm} |")
        else:
            print(f"| {t} | {c} | {row['mpps']:.3f} | {captured} / {arrived} | {drops} "
                  f"| {med(user):.3f} | {med(system):.3f} | {row['added']:.3f} | {sm} |")
print()
print("| traffic | added kernel us/pkt: tcpdump, podtap tpacket (ratio) "
      "| AF_PACKET kernel ns/pkt (sampled): tcpdump, podtap tpacket, median [min-max] "
      "| sampled podtap tpacket / tcpdump, median of per-round ratios [min-max] "
      "| the same, each run's figure divided by its frame path's sampled ns "
      "| loss tcpdump, podtap tpacket "
      "| podtap xdp / bare AF_XDP, arrival rate (median of per-round ratios) | loss bare, podtap xdp |")
print("| --- | --- | --- | ---: | ---: | --- | ---: | --- |")
def loss(t, c):
    rs = summary[(t, c)]["rounds"].values()
    return sum(int(r["arrived"]) - int(r["captured"]) for r in rs if int(r["captured"]) < int(r["arrived"]))
for t in traffics:
    have = lambda *cs: all((t, c) in summary for c in cs)
    tk = tl = xr = xl = sk = sr = sn = "-"
    if have("tcpdump", "podtap-tpacket"):
        td, pt = get(t, "tcpdump"), get(t, "podtap-tpacket")
        tds, pts = sampled_med(td), sampled_med(pt)
        if tds and pts:
            sk = f"{tds[0]:.0f} [{tds[1]:.0f}-{tds[2]:.0f}], {pts[0]:.0f} [{pts[1]:.0f}-{pts[2]:.0f}]"
            ratios = [sampled(pt[rd]) / sampled(td[rd]) for rd in pt
                      if rd in td and sampled(pt[rd]) and sampled(td[rd])]
            if ratios:
                sr = f"{med(ratios):.2f} [{min(ratios):.2f}-{max(ratios):.2f}]"
            rel = lambda r: sampled(r) / float(r["path_ns"]) if sampled(r) and float(r["path_ns"]) else None
            ratios = [rel(pt[rd]) / rel(td[rd]) for rd in pt if rd in td and rel(pt[rd]) and rel(td[rd])]
            if ratios:
                sn = f"{med(ratios):.2f} [{min(ratios):.2f}-{max(ratios):.2f}]"
        td, pt = summary[(t, "tcpdump")]["added"], summary[(t, "podtap-tpacket")]["added"]
        # A ratio of two costs within the noise of zero says nothing.
        tk = f"{td:.3f}, {pt:.3f} ({pt / td:.2f})" if td > 0.02 else f"{td:.3f}, {pt:.3f}"
        tl = f"{loss(t, 'tcpdump')}, {loss(t, 'podtap-tpacket')}"
    if have("af_xdp-bare", "podtap-xdp"):
        bare, xdp = get(t, "af_xdp-bare"), get(t, "podtap-xdp")
        ratios = [int(xdp[rd]["arrived"]) / float(xdp[rd]["seconds"]) /
                  (int(bare[rd]["arrived"]) / float(bare[rd]["seconds"])) for rd in xdp if rd in bare]
        xr = f"{med(ratios):.2f}"
        xl = f"{loss(t, 'af_xdp-bare')}, {loss(t, 'podtap-xdp')}"
    print(f"| {t} | {tk} | {sk} | {sr} | {sn} | {tl} | {xr} | {xl} |")

# What the per-frame arrival stamps cost xdp mode: the same capturer with and without
# them, per round (same traffic, adjacent in time), as arrival rates; and both against
# the bare AF_XDP loop of the same round.
def ratios(t, a, b):
    ra, rb = get(t, a), get(t, b)
    rate = lambda r: int(r["arrived"]) / float(r["seconds"])
    v = [rate(ra[rd]) / rate(rb[rd]) for rd in ra if rd in rb]
    return (med(v), min(v), max(v)) if v else None
stamp_rows = []
for t in traffics:
    cells = []
    for a, b in (("podtap-xdp", "af_xdp-bare"), ("podtap-xdp-nots", "af_xdp-bare"),
                 ("podtap-xdp", "podtap-xdp-nots"), ("podtap-xdp-mirror", "podtap-xdp-mirror-nots")):
        r = ratios(t, a, b) if (t, a) in summary and (t, b) in summary else None
        cells.append(f"{r[0]:.3f} [{r[1]:.3f}-{r[2]:.3f}]" if r else "-")
    if any(c != "-" for c in cells):
        stamp_rows.append(f"| {t} | " + " | ".join(cells) + " |")
if stamp_rows:
    print()
    print("Arrival rate ratios, median of per-round ratios [min-max]; stamps cost 1 - (with / without):")
    print()
    print("| traffic | podtap xdp / bare AF_XDP | podtap xdp without stamps / bare AF_XDP "
          "| podtap xdp with / without stamps | podtap xdp mirror with / without stamps |")
    print("| --- | ---: | ---: | ---: | ---: |")
    for r in stamp_rows:
        print(r)

# The stamps' kernel cost from the BPF run-time statistics: ns per frame of the XDP
# program (and, mirrored, of the stamp program per copy), medians over the rounds; and the
# extra ns per frame as a share of a frame's time at the bare AF_XDP loop's arrival rate
# in the same rounds (mirrored: at the unstamped mirror's rate).
def bpf(t, c, col):
    v = []
    for r in get(t, c).values():
        try:
            v.append(float(r[col]))
        except (KeyError, ValueError):
            pass
    return med(v) if v else None
def frame_ns(t, c):
    rs = get(t, c).values()
    v = [float(r["seconds"]) / max(int(r["arrived"]), 1) * 1e9 for r in rs]
    return med(v) if v else None
bpf_rows = []
f = lambda x: "-" if x is None else f"{x:.1f}"
for t in traffics:
    x = {c: bpf(t, c, "xsk_ns") for c in ("af_xdp-bare", "podtap-xdp", "podtap-xdp-nots",
                                        "podtap-xdp-mirror", "podtap-xdp-mirror-nots")}
    st = {c: bpf(t, c, "stamp_ns") for c in ("podtap-xdp-mirror", "podtap-xdp-mirror-nots")}
    if all(v is None for v in x.values()):
        continue
    share = share_m = "-"
    if x["podtap-xdp"] is not None and x["podtap-xdp-nots"] is not None and frame_ns(t, "af_xdp-bare"):
        share = f"{(x['podtap-xdp'] - x['podtap-xdp-nots']) / frame_ns(t, 'af_xdp-bare') * 100:.1f}%"
    if None not in (x["podtap-xdp-mirror"], x["podtap-xdp-mirror-nots"], st["podtap-xdp-mirror"],
                    st["podtap-xdp-mirror-nots"]) and frame_ns(t, "podtap-xdp-mirror-nots"):
        extra = (x["podtap-xdp-mirror"] - x["podtap-xdp-mirror-nots"]
                 + st["podtap-xdp-mirror"] - st["podtap-xdp-mirror-nots"])
        share_m = f"{extra / frame_ns(t, 'podtap-xdp-mirror-nots') * 100:.1f}%"
    bpf_rows.append(f"| {t} | {f(x['af_xdp-bare'])} | {f(x['podtap-xdp'])} | {f(x['podtap-xdp-nots'])} "
                    f"| {share} | {f(x['podtap-xdp-mirror'])} + {f(st['podtap-xdp-mirror'])} "
                    f"| {f(x['podtap-xdp-mirror-nots'])} + {f(st['podtap-xdp-mirror-nots'])} | {share_m} |")
if bpf_rows:
    print()
    print("Kernel BPF run time, ns per frame (medians over the rounds; kernel.bpf_stats_enabled):")
    print()
    print("| traffic | XDP prog: bare AF_XDP | podtap xdp | podtap xdp without stamps "
          "| stamps' extra / frame time at the bare loop's rate "
          "| mirrored, XDP + tc stamp prog: podtap xdp | the same without stamps "
          "| stamps' extra / frame time at the unstamped mirror's rate |")
    print("| --- | ---: | ---: | ---: | ---: | ---: | ---: | ---: |")
    for r in bpf_rows:
        print(r)

# Where the sampled socket time goes: per function tpacket_rcv calls (inclusive), median
# ns per frame over the rounds, the functions above 2% of some capturer's total.
parts = list(csv.DictReader(open(breakdown_file), delimiter="\t"))
pcaps = [c for c in caps if c in ("tcpdump", "netsniff-ng", "podtap-tpacket")]
if parts and pcaps:
    print()
    print("AF_PACKET receive path, median ns/pkt by function called from tpacket_rcv (sampled):")
    print()
    print("| traffic | function | " + " | ".join(pcaps) + " |")
    print("| --- | --- |" + " ---: |" * len(pcaps))
    for t in traffics:
        cell = {}
        for c in pcaps:
            nr = len(get(t, c))
            by = {}
            for p in parts:
                if p["traffic"] == t and p["capturer"] == c:
                    by.setdefault(p["callee"], []).append(float(p["ns_per_pkt"]))
            # a function missing from a round's samples took 0 ns in it
            cell[c] = {f: med(v + [0.0] * (nr - len(v))) for f, v in by.items()}
        tot = {c: sum(cell[c].values()) or 1.0 for c in pcaps}
        funcs = sorted({f for c in pcaps for f, v in cell[c].items() if v >= 0.02 * tot[c]},
                       key=lambda f: -max(cell[c].get(f, 0.0) for c in pcaps))
        for f in funcs:
            print(f"| {t} | {f} | " + " | ".join(f"{cell[c].get(f, 0.0):.1f}" for c in pcaps) + " |")
PY
cat "$RES"
