#!/usr/bin/env bash
# Peak RSS of `optillm run` per model and KV cache setting ("Maximum resident set size"
# of /usr/bin/time -v, shown in MiB), for docs/benchmarks.md.
#
#   scripts/peak-rss.sh [BINARY] [MODEL...]
#
# BINARY defaults to target/release/optillm, MODEL to smollm2-135m (manifest names, pulled
# already). Rows per model: the default run (the KV cache starts at 1,024 cells and grows),
# --kv-type q8_0, --ctx-size 2048, and a ~3,000-token prompt (the cache grows to 4,096).
set -euo pipefail
bin=${1:-target/release/optillm}
shift || true
models=("${@:-smollm2-135m}")
long=$(mktemp)
trap 'rm -f "$long"' EXIT
{ for _ in $(seq 1 3000); do printf 'word '; done; printf '\nHow many times is the word repeated?\n'; } >"$long"

rss() { # label, then the run's arguments
  local label=$1 out
  shift
  out=$( { /usr/bin/time -v "$bin" run --max-tokens 8 --temperature 0 --threads 2 "$@" >/dev/null; } 2>&1 )
  local kib
  kib=$(grep 'Maximum resident set size' <<<"$out" | awk '{print $NF}')
  awk -v m="$model" -v l="$label" -v k="$kib" 'BEGIN { printf "| %s | %s | %.1f |\n", m, l, k / 1024 }'
}

echo "| model | run | peak RSS MiB |"
echo "|---|---|---:|"
for model in "${models[@]}"; do
  rss "default" --model "$model" "What is 2+2?"
  rss "--kv-type q8_0" --model "$model" --kv-type q8_0 "What is 2+2?"
  rss "--ctx-size 2048" --model "$model" --ctx-size 2048 "What is 2+2?"
  rss "3,000-token prompt" --model "$model" - <"$long"
  rss "3,000-token prompt, q8_0" --model "$model" --kv-type q8_0 - <"$long"
done
