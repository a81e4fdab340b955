# Helpers shared by the perf/ scripts (sourced, not run).

# Median of the arguments (numbers).
med() { printf '%s\n' "$@" | sort -g | sed -n "$(( ($# + 1) / 2 ))p"; }

# results_section HEADING TEXT: replace the section of perf/RESULTS.md that starts with
# HEADING (up to the next "## " heading) by TEXT, or append TEXT when there is none.
results_section() {
  python3 - perf/RESULTS.md "$1" "$2" <<'PY'
import sys
path, head, section = sys.argv[1], sys.argv[2], sys.argv[3].rstrip() + "\n"
try:
    text = open(path).read()
except FileNotFoundError:
    text = "# Benchmark results\n"
i = text.find(head)
if i < 0:
    text = text.rstrip() + "\n\n" + section
else:
    j = text.find("\n## ", i + len(head))
    text = text[:i] + section + ("\n" + text[j + 1:] if j >= 0 else "")
open(path, "w").write(text)
PY
}

# The benchmarks measure the binary `PODTAP=$(pgo/build.sh)` names: the profile-guided
# build `make build` makes too, or the plain release build where the llvm-profdata matching
# rustc is missing (pgo/build.sh says so). How $PODTAP was built, for a result's heading
# lines:
build_kind() {
  case "$PODTAP" in
    */target/pgo/*) echo "profile-guided release build (\`pgo/build.sh\`) of $(git rev-parse --short HEAD)" ;;
    *) echo "release build (fat LTO, no profile: llvm-profdata missing) of $(git rev-parse --short HEAD)" ;;
  esac
}

# --- replay measurements (the decoder benchmarks) -----------------------------------------
# They use $PODTAP (the release binary), $RUNS and $PAIRS of the sourcing script. Every
# run reads its capture and program warm from the page cache (see replay_bench.sh).
warm() { cat "$PODTAP" "$@" >/dev/null 2>&1 || true; }
secs() { awk -v a="$1" -v b="$2" 'BEGIN { printf "%.4f", b - a }'; }
frames() { capinfos -c -M "$1" 2>/dev/null | awk -F: '/Number of packets/ {gsub(/ /,"",$2); print $2}'; }
rate() { awk -v n="$1" -v t="$2" 'BEGIN { if (t < 0.001) t = 0.001; printf "%.0f", n / t }'; }
wall() { local t0 t1; warm "${@: -1}"; t0=$EPOCHREALTIME; "$@" >/dev/null 2>&1 || true; t1=$EPOCHREALTIME; secs "$t0" "$t1"; }
replay() { "$PODTAP" replay "$1" --output table --workers 1 2>/dev/null; }

# per_core CAP: the worker thread's own CPU rate, as podtap prints it (`worker cpu ... T
# transactions/s per core`): "median (min, max)" of 2 * RUNS + 1 readings.
per_core() {
  local v=() _
  for _ in $(seq $((RUNS * 2 + 1))); do warm "$1"; v+=("$(replay "$1" | awk '/^worker cpu/ {print $(NF-3)}')"); done
  echo "$(med "${v[@]}") ($(printf '%s\n' "${v[@]}" | sort -g | head -1), $(printf '%s\n' "${v[@]}" | sort -g | tail -1))"
}

# tshark_pairs FILE FILTER [YARD_FILE YARD_FILTER]: podtap and `tshark -Y FILTER` on FILE,
# in PAIRS back-to-back pairs (the machine's speed wanders over minutes): the seconds of
# each in pp and pt, the ratio tshark / podtap of each pair in pr. With a yardstick (a
# capture another bench recorded its ratio on), each pair is followed by one on it: its
# ratio in hr, and the round's ratio over it in rh, which takes the machine out.
tshark_pairs() {
  local tp tt hp ht _
  pr=(); pp=(); pt=(); hr=(); rh=()
  for _ in $(seq "$PAIRS"); do
    tp=$(wall "$PODTAP" replay --output table --workers 1 "$1")
    tt=$(wall tshark -n -Y "$2" -r "$1")
    pp+=("$tp"); pt+=("$tt")
    pr+=("$(awk -v p="$tp" -v t="$tt" 'BEGIN { printf "%.2f", t / p }')")
    [ $# -ge 4 ] || continue
    hp=$(wall "$PODTAP" replay --output table --workers 1 "$3")
    ht=$(wall tshark -n -Y "$4" -r "$3")
    hr+=("$(awk -v p="$hp" -v t="$ht" 'BEGIN { printf "%.2f", t / p }')")
    rh+=("$(awk -v a="${pr[-1]}" -v b="${hr[-1]}" 'BEGIN { printf "%.3f", a / b }')")
  done
}

# instructions FILE: whole-process instructions of one replay of FILE (cachegrind).
instructions() {
  valgrind --tool=cachegrind --cache-sim=no --cachegrind-out-file=/dev/null "$PODTAP" \
    replay "$1" --output table --workers 1 2>&1 >/dev/null | awk '/I *refs/ {gsub(/,/, "", $4); print $4}'
}
