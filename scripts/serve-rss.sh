#!/usr/bin/env bash
# Resident memory of `optillm serve` (native backend) over a request's life, for
# docs/benchmarks.md: at start, after one request of n = 8 samples (a 340-token prompt,
# 64 tokens each: the per-stream context is made), after one ~3,300-token prompt (the
# main context grows), and once the worker has been idle past `--release-after`.
#
#   scripts/serve-rss.sh [BINARY] [MODEL] [RELEASE_AFTER]
#
# BINARY defaults to target/release/optillm, MODEL to smollm2-135m (pulled already),
# RELEASE_AFTER to 5 (seconds; `never` keeps the grown cache, as before 2026-12-06).
set -euo pipefail
bin=${1:-target/release/optillm}
model=${2:-smollm2-135m}
release=${3:-5}
source "$(dirname "$0")/serve-common.sh"
start_serve "$bin" "$model" 18124 --release-after "$release"
ask() { # body (JSON)
  curl -sf "http://127.0.0.1:$port/v1/chat/completions" -H 'Content-Type: application/json' \
    -d "$1" >/dev/null
}
words() { python3 -c "import sys; print('Tell me about the history of the city of Paris. ' * int(sys.argv[1]))" "$1"; }

echo "| $model, --release-after $release | RSS MiB |"
echo "|---|---:|"
echo "| loaded | $(rss) |"
ask "{\"model\":\"$model\",\"n\":8,\"max_tokens\":64,\"temperature\":0.8,\"messages\":[{\"role\":\"user\",\"content\":\"$(words 30)\"}]}"
echo "| after n = 8 samples | $(rss) |"
ask "{\"model\":\"$model\",\"max_tokens\":8,\"temperature\":0,\"messages\":[{\"role\":\"user\",\"content\":\"$(words 300)\"}]}"
echo "| after a 3,300-token prompt | $(rss) |"
if [ "$release" != never ]; then
  sleep "$(python3 -c "print(float('$release') + 2)")"
else
  sleep 7
fi
echo "| idle, $( [ "$release" = never ] && echo 7 || echo "$release + 2") s later | $(rss) |"
curl -sf "http://127.0.0.1:$port/metrics" | grep -E '^optillm_backend_(context_grown|idle_releases)_total' \
  | sed 's/^/    /'
