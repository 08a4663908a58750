#!/usr/bin/env bash
# Build every fuzz target on the stable toolchain (no sanitizer) and run each for SECONDS
# (default 10), starting from the seed corpus in fuzz/seeds/. Exit non-zero on any crash; the
# crashing input is left in fuzz/artifacts/TARGET/.
set -euo pipefail
cd "$(dirname "$0")"
seconds="${1:-10}"
command -v cargo-fuzz >/dev/null || cargo install cargo-fuzz --locked
cargo fuzz build -s none -O
for target in $(cargo fuzz list); do
  mkdir -p "corpus/$target"
  echo "== fuzz $target for ${seconds}s"
  if ! out=$(cargo fuzz run -s none -O "$target" "corpus/$target" "seeds/$target" -- -max_total_time="$seconds" 2>&1); then
    echo "$out" | tail -40
    exit 1
  fi
  echo "$out" | grep -E '^Done' || true
done
