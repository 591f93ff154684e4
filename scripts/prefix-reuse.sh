#!/usr/bin/env bash
# Prompt-prefix reuse on and off, side by side: per approach, the prompt tokens the native
# backend evaluated and reused, its prefix hits, and the wall time per question, from
# `optillm eval` runs on the first N GSM8K questions (`--prefix-cache 4` vs `0`, alternating).
#
#   scripts/prefix-reuse.sh [BINARY] [MODEL] [N] [APPROACH...]
#
# Defaults: target/release/optillm, qwen2.5-coder-0.5b, 10, bon moa mcts pvg rstar
# self_consistency. THREADS (default 2): llama.cpp threads; use 1 when another process
# holds a core (2 threads on a shared core make OpenMP wait). PARALLEL=1: run the two
# settings of an approach at the same time, one process each (use with THREADS=1 on 2
# cores: both share the machine alike, and a slow approach takes half the time). Writes a
# Markdown table to stdout; eval directories go to a temp dir.
set -euo pipefail
bin=${1:-target/release/optillm}
model=${2:-qwen2.5-coder-0.5b}
n=${3:-10}
threads=${THREADS:-2}
parallel=${PARALLEL:-0}
shift $(( $# < 3 ? $# : 3 ))
if [ $# -gt 0 ]; then
  approaches=("$@")
else
  approaches=(bon moa mcts pvg rstar self_consistency)
fi
work=$(mktemp -d)
trap 'rm -rf "$work"' EXIT

counter() { # name, log
  grep '^backend counters:' "$2" | tr ' ' '\n' | awk -F= -v k="$1" '$1 == k { print $2 }'
}

echo "| approach | prefix cache | prompt tokens evaluated | reused | hits | accuracy | wall s/question |"
echo "|---|---:|---:|---:|---:|---:|---:|"
run() { # approach, cache: runs one eval, writes its wall seconds to $out.wall
  local out="$work/$1-$2" start end
  start=$(date +%s.%N)
  NO_COLOR=1 "$bin" eval --dataset gsm8k --model "$model" --limit "$n" --seed 0 --threads "$threads" \
    --approaches "$1" --prefix-cache "$2" --out "$out" >"$out.md" 2>"$out.log"
  end=$(date +%s.%N)
  awk -v s="$start" -v t="$end" 'BEGIN { print t - s }' >"$out.wall"
}

row() { # approach, cache
  local out="$work/$1-$2" acc
  acc=$(grep -m1 "^| $1 " "$out.md" | awk -F'|' '{ gsub(/ /, "", $3); print $3 }')
  awk -v a="$1" -v c="$2" -v e="$(counter prompt_tokens_evaluated "$out.log")" \
    -v r="$(counter prefix_tokens_reused "$out.log")" -v h="$(counter prefix_hits "$out.log")" \
    -v acc="$acc" -v w="$(cat "$out.wall")" -v n="$n" \
    'BEGIN { printf "| %s | %s | %d | %d | %d | %s | %.1f |\n", a, c, e, r, h, acc, w / n }'
}

for a in "${approaches[@]}"; do
  if [ "$parallel" = 1 ]; then
    run "$a" 4 &
    on=$!
    run "$a" 0
    wait "$on"
  else
    run "$a" 4
    run "$a" 0
  fi
  row "$a" 4
  row "$a" 0
done
