#!/usr/bin/env bash
# Live capture benchmark: trafgen in a network namespace blasts 64- and 512-byte UDP and
# TCP frames over a veth into the root namespace; on the host end, one capturer at a time
# (nothing, tcpdump -w /dev/null, netsniff-ng, podtap in tpacket mode, a bare AF_XDP
# receive loop on the veth (examples/xdp_count.rs), podtap in xdp mode on the veth as on a
# SPAN port, and podtap in xdp mode mirroring the veth as a pod's) receives them. For each: frames that arrived (veth rx counter),
# frames the capturer got, its loss, its CPU time per million frames, and the whole
# machine's added CPU per million frames over the no-capture run (kernel + user).
#
#   perf/capture_bench.sh                 # writes perf/out/capture.md, prints it
#   N=2000000 RATE=300000 perf/capture_bench.sh
#
# The generator is pinned to CPU 1, the capturers to CPU 0 (podtap: one worker on CPU 0).
# Nothing leaves the namespace: the host end has no address and the frames are dropped
# by the stack after capture.
set -euo pipefail
cd "$(dirname "$0")/.."
export PATH="$HOME/.cargo/bin:$PATH"
OUT=perf/out
mkdir -p "$OUT"
N=${N:-2000000}          # frames per run
RATE=${RATE:-}           # offered pps (empty: as fast as trafgen goes)
need() { command -v "$1" >/dev/null || { echo "missing $1: apt-get install $2" >&2; exit 1; }; }
need trafgen netsniff-ng; need netsniff-ng netsniff-ng; need tcpdump tcpdump

cargo build --release --quiet --bin podtap --example xdp_count
PODTAP=$PWD/target/release/podtap
XDP_COUNT=$PWD/target/release/examples/xdp_count
NS=ptcapb-$$; HOST_IF=ptcapb$$; GEN_IF=tg$$; TMP=$(mktemp -d)
WMEM_OLD=$(sysctl -n net.core.wmem_default)
cleanup() {
  pkill -P $$ 2>/dev/null || true
  ip link del "$HOST_IF" 2>/dev/null || true
  ip netns del "$NS" 2>/dev/null || true
  sysctl -qw net.core.wmem_default="$WMEM_OLD"
  rm -rf "$TMP"
}
trap cleanup EXIT
# trafgen slows down instead of failing with ENOBUFS when the socket buffer is large.
sysctl -qw net.core.wmem_default=8388608
ip netns add "$NS"
ip link add "$HOST_IF" type veth peer name "$GEN_IF" netns "$NS"
ip link set "$HOST_IF" up
ip -n "$NS" link set "$GEN_IF" up
HOST_MAC=$(cat /sys/class/net/$HOST_IF/address)

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
busy() { awk '/^cpu /{print $2+$3+$4+$7+$8}' /proc/stat; }   # user nice system irq softirq
proc_cpu() { awk '{print $14+$15}' "/proc/$1/stat" 2>/dev/null || echo 0; }
HZ=$(getconf CLK_TCK)

cat > "$TMP/podtap.toml" <<CONF
[capture]
mode = "tpacket"
workers = 1
cpus = [0]
[output]
stats_interval_secs = 0
CONF
# xdp: the veth stands for a SPAN port (AF_XDP on its queue, as the bare loop); xdp-mirror:
# the veth stands for a pod's veth (copies through podtap's mirror device).
sed 's/^mode = .*/mode = "xdp"/' "$TMP/podtap.toml" > "$TMP/podtap-xdp-mirror.toml"
sed "s/^mode = .*/mode = \"xdp\"\ndirect = [\"$HOST_IF\"]/" "$TMP/podtap.toml" > "$TMP/podtap-xdp.toml"

# run_one NAME PROTO SIZE -> "arrived captured lost capturer_jiffies machine_jiffies seconds"
run_one() {
  local name=$1 proto=$2 size=$3 pid=""
  local log=$TMP/$1.log
  case $name in
    none) ;;
    tcpdump) taskset -c 0 tcpdump -i "$HOST_IF" -w /dev/null -B 65536 -s 0 2>"$log" & pid=$! ;;
    netsniff-ng) taskset -c 0 netsniff-ng --in "$HOST_IF" --out /dev/null --silent --ring-size 64MiB 2>"$log" >"$log.out" & pid=$! ;;
    podtap-tpacket) NO_COLOR=1 "$PODTAP" --config "$TMP/podtap.toml" run -i "$HOST_IF" --output table >/dev/null 2>"$log" & pid=$! ;;
    af_xdp-bare) taskset -c 0 "$XDP_COUNT" "$HOST_IF" >"$log.out" 2>"$log" & pid=$! ;;
    podtap-xdp|podtap-xdp-mirror) NO_COLOR=1 "$PODTAP" --config "$TMP/$name.toml" run -i "$HOST_IF" --output table >/dev/null 2>"$log" & pid=$! ;;
  esac
  sleep 1.5
  local rx0 b0 c0=0
  rx0=$(rx); b0=$(busy)
  [ -n "$pid" ] && c0=$(proc_cpu "$pid")
  local rate_arg=()
  [ -n "$RATE" ] && rate_arg=(-b "${RATE}pps")
  local t0 t1
  t0=$(date +%s.%N)
  ip netns exec "$NS" taskset -c 1 trafgen -o "$GEN_IF" -i "$TMP/$proto$size.cfg" -n "$N" -P 1 -C -Q "${rate_arg[@]}" >"$TMP/trafgen.log" 2>&1 || { cat "$TMP/trafgen.log" >&2; exit 1; }
  t1=$(date +%s.%N)
  sleep 0.5
  local rx1 b1 c1=0
  rx1=$(rx); b1=$(busy)
  [ -n "$pid" ] && c1=$(proc_cpu "$pid")
  local got=0 lost=0
  if [ -n "$pid" ]; then
    kill -INT "$pid"; wait "$pid" 2>/dev/null || true
    case $name in
      tcpdump) got=$(awk '/packets received by filter/{print $1}' "$log"); lost=$(awk '/dropped by kernel/{print $1}' "$log") ;;
      netsniff-ng) got=$(tr -d '\r' < "$log.out" | awk '/packets passed filter/{print $1}')
                   lost=$(tr -d '\r' < "$log.out" | awk '/failed filter/{print $1}') ;;
      af_xdp-bare) got=$(sed -n 's/.*frames=\([0-9]*\).*/\1/p' "$log.out"); lost=$(sed -n 's/.*dropped=\([0-9]*\).*/\1/p' "$log.out") ;;
      podtap-*) got=$(sed -n 's/.*podtap stopped packets=\([0-9]*\).*/\1/p' "$log" | tail -1)
                lost=$(sed -n 's/.*podtap stopped.*kernel_dropped=\([0-9]*\).*/\1/p' "$log" | tail -1) ;;
    esac
  fi
  echo "$((rx1 - rx0)) ${got:-0} ${lost:-0} $((c1 - c0)) $((b1 - b0)) $(echo "$t1 - $t0" | bc -l)"
}

RES=$OUT/capture.md
{
  echo "Offered: $N frames per run, rate ${RATE:-unlimited}; generator on CPU 1, capturer on CPU 0; $(nproc) CPUs, $(uname -r)."
  echo
  echo "| traffic | capturer | arrived | arrival Mpps | captured | kernel drops | capturer CPU s/Mpkt | machine CPU s/Mpkt | added vs none |"
  echo "| --- | --- | --- | --- | --- | --- | --- | --- | --- |"
} > "$RES"
for proto in udp tcp; do
  for size in 64 512; do
    cfg "$proto" "$size"
    base_per=""
    for cap in none tcpdump netsniff-ng podtap-tpacket af_xdp-bare podtap-xdp podtap-xdp-mirror; do
      read -r arrived got lost ccpu tcpu secs < <(run_one "$cap" "$proto" "$size")
      mpkt=$(echo "$arrived / 1000000" | bc -l)
      per=$(echo "$tcpu / $HZ / $mpkt" | bc -l)
      cper=$(echo "$ccpu / $HZ / $mpkt" | bc -l)
      [ -z "$base_per" ] && base_per=$per
      added=$(echo "$per - $base_per" | bc -l)
      mpps=$(echo "$arrived / $secs / 1000000" | bc -l)
      printf '| %s %dB | %s | %d | %.2f | %s | %s | %.3f | %.3f | %.3f |\n' "$proto" "$size" "$cap" "$arrived" "$mpps" \
        "$([ "$cap" = none ] && echo - || echo "$got")" "$([ "$cap" = none ] && echo - || echo "$lost")" \
        "$cper" "$per" "$added" >> "$RES"
    done
  done
done
cat "$RES"
