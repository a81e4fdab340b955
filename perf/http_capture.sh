#!/usr/bin/env bash
# A real HTTP/1.1 capture: nginx serving hey (small keep-alive requests) and then curl
# (100 KiB bodies) in two network namespaces joined by a veth pair (nothing leaves the
# namespaces), recorded by tcpdump on the server's end. Used by replay_bench.sh and
# jsonl_bench.sh.
#
#   perf/http_capture.sh OUT.pcap HEY_REQUESTS CURL_REQUESTS
set -euo pipefail
OUT=$1; HEY_N=$2; BIG_N=$3
for c in nginx hey tcpdump curl; do command -v "$c" >/dev/null || { echo "missing $c: make deps-test" >&2; exit 1; }; done
NS_S=ptbench-srv-$$; NS_C=ptbench-cli-$$; TMP=$(mktemp -d)
cleanup() {
  [ -n "${TCPDUMP_PID:-}" ] && kill "$TCPDUMP_PID" 2>/dev/null || true
  [ -f "$TMP/nginx.pid" ] && kill "$(cat "$TMP/nginx.pid")" 2>/dev/null || true
  ip netns del "$NS_S" 2>/dev/null || true
  ip netns del "$NS_C" 2>/dev/null || true
  rm -rf "$TMP"
}
trap cleanup EXIT
ip netns add "$NS_S"; ip netns add "$NS_C"
ip link add ptb-s$$ netns "$NS_S" type veth peer name ptb-c$$ netns "$NS_C"
ip -n "$NS_S" addr add 10.77.0.1/24 dev ptb-s$$; ip -n "$NS_C" addr add 10.77.0.2/24 dev ptb-c$$
ip -n "$NS_S" link set ptb-s$$ up; ip -n "$NS_C" link set ptb-c$$ up
ip -n "$NS_S" link set lo up; ip -n "$NS_C" link set lo up
head -c 102400 /dev/urandom > "$TMP/big.bin"
printf 'ok' > "$TMP/small.txt"
cat > "$TMP/nginx.conf" <<CONF
daemon off; worker_processes 1; pid $TMP/nginx.pid; error_log $TMP/error.log;
events { worker_connections 1024; }
http { access_log off; keepalive_requests 1000000;
  client_body_temp_path $TMP; proxy_temp_path $TMP; fastcgi_temp_path $TMP; uwsgi_temp_path $TMP; scgi_temp_path $TMP;
  server { listen 10.77.0.1:80; root $TMP; location / { } } }
CONF
ip netns exec "$NS_S" nginx -c "$TMP/nginx.conf" &
sleep 0.5
ip netns exec "$NS_S" tcpdump -i ptb-s$$ -s 0 -w "$OUT" -U 2>"$TMP/tcpdump.err" &
TCPDUMP_PID=$!
for _ in $(seq 50); do grep -q "listening on" "$TMP/tcpdump.err" 2>/dev/null && break; sleep 0.1; done
# Small keep-alive requests, then large bodies; both bounded in count and time.
timeout 120 ip netns exec "$NS_C" hey -n "$HEY_N" -c 8 -t 10 http://10.77.0.1/small.txt >/dev/null
if [ "$BIG_N" -gt 0 ]; then
  args=(); for _ in $(seq "$BIG_N"); do args+=(-o /dev/null http://10.77.0.1/big.bin); done
  timeout 120 ip netns exec "$NS_C" curl -s --max-time 100 "${args[@]}" >/dev/null
fi
sleep 0.5; kill -INT "$TCPDUMP_PID"; wait "$TCPDUMP_PID" 2>/dev/null || true; TCPDUMP_PID=
kill "$(cat "$TMP/nginx.pid")"; wait 2>/dev/null || true
