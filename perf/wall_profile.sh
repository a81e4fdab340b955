#!/usr/bin/env bash
# Where a replay worker's wall-clock time goes, by source function (see wall_profile.py).
#
#   perf/wall_profile.sh BINARY CAPTURE [PATTERN,PATTERN,...]
#
# One `podtap replay CAPTURE --output table --workers 1`, sampled at 20 kHz with the
# cpu-clock timer; the worker thread's samples charged to the innermost inlined function
# that matches a pattern (default: the Redis path's stages). Needs perf (linux-perf),
# addr2line and nm (binutils), python3.
set -euo pipefail
BIN=$1; CAP=$2; PATTERNS=${3:-}
for c in perf addr2line nm python3; do
  command -v "$c" >/dev/null || { echo "missing $c (apt-get install linux-perf binutils python3)" >&2; exit 1; }
done
TMP=$(mktemp -d); trap 'rm -rf "$TMP"' EXIT
perf record -q -e cpu-clock -F 20000 -o "$TMP/perf.data" "$BIN" replay "$CAP" --output table --workers 1 >/dev/null 2>&1
perf script -i "$TMP/perf.data" -F comm,ip,sym,symoff 2>/dev/null \
  | python3 "$(dirname "$0")/wall_profile.py" "$BIN" ${PATTERNS:+"$PATTERNS"}
