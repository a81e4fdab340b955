#!/usr/bin/env bash
# cargo deny's advisories check against the RustSec advisories podtap vendors in
# deny/advisory-db/ (the advisories of the crates in Cargo.lock, from a dated snapshot of
# github.com/RustSec/advisory-db, CC0), because CI cannot reach github.com.
#
#   deny/advisories.sh                  check Cargo.lock against the vendored snapshot
#   deny/advisories.sh --refresh DB     re-vendor from DB, a clone of the advisory-db
#
# cargo-deny reads a database only from a git checkout: the check builds one in a
# temporary directory from the vendored files, dated as the snapshot.
set -euo pipefail
cd "$(dirname "$0")/.."
vendored=deny/advisory-db

if [ "${1:-}" = "--refresh" ]; then
  db=${2:?"usage: $0 --refresh <clone of github.com/RustSec/advisory-db>"}
  rm -rf "$vendored/crates"
  mkdir -p "$vendored/crates"
  for name in $(sed -n 's/^name = "\(.*\)"$/\1/p' Cargo.lock | sort -u); do
    [ -d "$db/crates/$name" ] && cp -r "$db/crates/$name" "$vendored/crates/"
  done
  cp "$db/LICENSE.txt" "$vendored/LICENSE.txt"
  # The crates looked up: a crate added to Cargo.lock later makes the check fail until
  # the snapshot is refreshed (its advisories were never vendored).
  sed -n 's/^name = "\(.*\)"$/\1/p' Cargo.lock | sort -u > "$vendored/CHECKED"
  git -C "$db" log -1 --format='%H %cI' > "$vendored/SNAPSHOT"
  echo "vendored $(find "$vendored/crates" -name '*.md' | wc -l) advisories at $(cat "$vendored/SNAPSHOT")"
  exit 0
fi

missing=$(sed -n 's/^name = "\(.*\)"$/\1/p' Cargo.lock | sort -u | comm -23 - "$vendored/CHECKED")
if [ -n "$missing" ]; then
  echo "advisories: crates in Cargo.lock not looked up in the vendored snapshot:" $missing
  echo "refresh it: $0 --refresh <clone of github.com/RustSec/advisory-db>"
  exit 1
fi
read -r commit date < "$vendored/SNAPSHOT"
tmp=$(mktemp -d)
trap 'rm -rf "$tmp"' EXIT
# The directory name cargo-deny derives from the default database URL.
repo="$tmp/db/advisory-db-3157b0e258782691"
mkdir -p "$repo"
cp -r "$vendored/crates" "$vendored/LICENSE.txt" "$repo/"
git -C "$repo" init -q
git -C "$repo" add -A
GIT_AUTHOR_DATE="$date" GIT_COMMITTER_DATE="$date" \
  git -C "$repo" -c user.name=podtap -c user.email=podtap@localhost \
  commit -q -m "RustSec advisory-db ${commit:0:9}, advisories of podtap's dependencies"
{ printf '[advisories]\ndb-path = "%s"\n\n' "$tmp/db"; cat deny.toml; } > "$tmp/deny.toml"
echo "advisories: RustSec snapshot ${commit:0:9} of ${date%%T*}"
cargo-deny --offline --config "$tmp/deny.toml" check advisories
