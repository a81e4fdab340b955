#!/usr/bin/env bash
# The release binary, built with profile-guided optimisation (PGO), as `make build` and
# the benchmarks in perf/ use it. Prints the binary's path on stdout; progress goes to
# stderr.
#
#   pgo/build.sh              # -> target/pgo/release/podtap
#
# Three steps, each incremental (cargo rebuilds only what changed):
#   1. an instrumented release build (target/pgo-gen), which counts every branch taken;
#   2. training: that binary replays the captures below, in table and JSON lines output;
#      its counts are merged into target/pgo-gen/podtap.profdata;
#   3. the release build proper (target/pgo), laid out and inlined by those counts.
# On the benchmark prefixes this cut instructions by 1 to 11 percent, and wall-clock time
# by more (perf/RESULTS.md, "Instructions per replay, stop 36").
#
# The training captures are not the benchmarks' captures: real third-party traffic of
# every decoded protocol (../shared/pcaps, where the checkout has it), the MongoDB golden
# capture, and HTTP/1.1 and pipelined Redis traffic `podtap synth` writes. Profiles steer
# the code layout and inlining, never what the program does: the instrumented and the
# final binaries decode alike (the tests run on ordinary builds; perf/ compares outputs).
#
# llvm-profdata must be the LLVM version rustc is built with (rust-toolchain.toml pins
# rustc): `llvm-<major>` is installed from Debian when missing. Without it, the plain
# release build (target/release) is used and said so.
set -euo pipefail
cd "$(dirname "$0")/.."
export PATH="$HOME/.cargo/bin:$PATH"

plain() {
  echo "pgo/build.sh: $1; using the plain release build" >&2
  cargo build --release --locked --quiet --bin podtap >&2
  echo "$PWD/target/release/podtap"
  exit 0
}

major=$(rustc -vV | awk '/^LLVM version/ {split($3, v, "."); print v[1]}')
[ -n "$major" ] || plain "rustc does not say its LLVM version"
PROFDATA=$(command -v "llvm-profdata-$major" || true)
if [ -z "$PROFDATA" ] && command -v apt-get >/dev/null; then
  echo "pgo/build.sh: installing llvm-$major (llvm-profdata for rustc's LLVM $major)" >&2
  DEBIAN_FRONTEND=noninteractive apt-get install -y -qq --no-install-recommends "llvm-$major" >&2 \
    || { apt-get update -qq >&2 && DEBIAN_FRONTEND=noninteractive apt-get install -y -qq --no-install-recommends "llvm-$major" >&2; } \
    || true
  PROFDATA=$(command -v "llvm-profdata-$major" || true)
fi
[ -n "$PROFDATA" ] || plain "llvm-profdata-$major not found"

GEN=$PWD/target/pgo-gen
PROFILE=$GEN/podtap.profdata
echo "pgo/build.sh: instrumented build (target/pgo-gen)" >&2
RUSTFLAGS="-Cprofile-generate=$GEN/raw" cargo build --release --locked --quiet --bin podtap --target-dir "$GEN" >&2
TRAINEE=$GEN/release/podtap

if [ ! -s "$PROFILE" ] || [ "$TRAINEE" -nt "$PROFILE" ]; then
  echo "pgo/build.sh: training on captures" >&2
  rm -rf "$GEN/raw" "$GEN/train"; mkdir -p "$GEN/raw" "$GEN/train"
  "$TRAINEE" synth "$GEN/train/http.pcap" --tcp-flows 200 --requests 50 >/dev/null 2>&1
  # Pipelined Redis (the corpus's Redis captures are a command at a time).
  "$TRAINEE" synth "$GEN/train/redis.pcap" --protocol redis --tcp-flows 20 --requests 50 >/dev/null 2>&1
  captures=("$GEN/train/http.pcap" "$GEN/train/redis.pcap" src/proto/mongodb/golden/*.pcap)
  if [ -d ../shared/pcaps ]; then
    while IFS= read -r f; do captures+=("$f"); done < <(find ../shared/pcaps -name '*.pcap' | sort)
  else
    echo "pgo/build.sh: ../shared/pcaps missing: training on synthetic HTTP and MongoDB only" >&2
  fi
  for f in "${captures[@]}"; do
    for out in table jsonl; do
      LLVM_PROFILE_FILE="$GEN/raw/%p.profraw" "$TRAINEE" replay "$f" --output "$out" --workers 1 \
        >/dev/null 2>&1 || true
    done
  done
  "$PROFDATA" merge --sparse -o "$PROFILE" "$GEN"/raw/*.profraw >&2
fi

echo "pgo/build.sh: optimised build (target/pgo)" >&2
# PODTAP_PGO_PROFILE: build.rs watches the profile, so new counts rebuild podtap's crate.
PODTAP_PGO_PROFILE=$PROFILE RUSTFLAGS="-Cprofile-use=$PROFILE" \
  cargo build --release --locked --quiet --bin podtap --target-dir target/pgo >&2
echo "$PWD/target/pgo/release/podtap"
