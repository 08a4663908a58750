#!/usr/bin/env bash
# Capture every user-visible output of one snpsim build, to compare two builds byte for byte:
#   scripts/golden.sh BIN OUTDIR        then  diff -r OUTDIR_A OUTDIR_B
# The default run's screen and JSON, `run --json` and the JSONL trace of every shipped example, the
# Chrome trace of one, and every sweep's JSON. The build's commit (printed by --version and written
# into JSON and trace headers) is replaced by COMMIT so that two commits compare equal.
set -uo pipefail
bin=$(realpath "$1")
out=$2
cd "$(dirname "$0")/.."
rm -rf "$out"
mkdir -p "$out/json" "$out/trace" "$out/sweep"
norm() { sed -E "s#$out#OUT#g" | sed -E 's/[0-9a-f]{40}/COMMIT/g; s/tree (clean|dirty)/tree STATE/g; s/"tree_clean": ?(true|false)/"tree_clean":STATE/g'; }
run() { # name, then the command's arguments; records stdout, stderr and the exit code
  local name=$1; shift
  "$bin" "$@" >"$out/$name.out" 2>"$out/$name.err"
  echo "exit $?" >>"$out/$name.err"
  norm <"$out/$name.out" >"$out/$name.tmp" && mv "$out/$name.tmp" "$out/$name.out"
}
run default
run default-json run --json
for f in examples/*/*.toml; do
  dir=$(basename "$(dirname "$f")")
  [ "$dir" = sweeps ] && continue
  name=$dir-$(basename "$f" .toml)
  run "json/$name" run "$f" --json
  "$bin" run "$f" --trace "$out/trace/$name.jsonl" >/dev/null 2>&1
  norm <"$out/trace/$name.jsonl" >"$out/trace/$name.tmp" && mv "$out/trace/$name.tmp" "$out/trace/$name.jsonl"
done
"$bin" run examples/debate/01-rfc-host-split-thp.toml --trace "$out/trace/chrome.json" --trace-format chrome >/dev/null 2>&1
for f in examples/sweeps/*.toml; do
  case $f in *.base.toml) continue ;; esac
  name=$(basename "$f" .toml)
  run "sweep/$name" sweep "$f" --out "$out/sweep/$name"
  for g in "$out/sweep/$name"/*; do norm <"$g" >"$g.tmp" && mv "$g.tmp" "$g"; done
done
echo "golden outputs of $bin in $out"
