#!/usr/bin/env bash
# How long a short request waits behind a token-level job in `optillm serve` (native
# backend), for docs/benchmarks.md: a `calculator` request (token by token, up to 400
# tokens) is sent, and 1 s later a short greedy chat request to the plain model; then the
# same with a `choice_likelihood` request (a short token job: a lettered question's
# options scored) instead of the chat. Each wall is curl's `time_total`; "alone" is the
# same request with nothing else in flight. Also the server's resident memory once the
# token jobs are done.
#
#   [TOKEN_JOBS=N] scripts/token-lane.sh [BINARY] [MODEL] [ROUNDS]
#
# BINARY defaults to target/release/optillm, MODEL to smollm2-135m (pulled already),
# ROUNDS to 3; TOKEN_JOBS, when set, is passed as `--token-jobs` (token jobs at once).
# Run it on a quiet machine.
set -euo pipefail
bin=${1:-target/release/optillm}
model=${2:-smollm2-135m}
rounds=${3:-3}
source "$(dirname "$0")/serve-common.sh"
start_serve "$bin" "$model" 18125 ${TOKEN_JOBS:+--token-jobs "$TOKEN_JOBS"}
wall() { # body (JSON): prints the request's wall in seconds
  curl -sf -o /dev/null -w '%{time_total}' "http://127.0.0.1:$port/v1/chat/completions" \
    -H 'Content-Type: application/json' -d "$1"
}
calc="{\"model\":\"calculator-$model\",\"max_tokens\":400,\"temperature\":0,\"messages\":[{\"role\":\"user\",\"content\":\"A shop sells 48 apples on Monday, half as many on Tuesday, and 3 times as many on Wednesday as on Tuesday. Each apple costs 0.75 dollars. Work out step by step how much money the shop made in the three days.\"}]}"
pick="{\"model\":\"choice_likelihood-$model\",\"temperature\":0,\"messages\":[{\"role\":\"user\",\"content\":\"Which gas do plants take in from the air to make food?\\nA. oxygen\\nB. carbon dioxide\\nC. nitrogen\\nD. helium\"}]}"
chat="{\"model\":\"$model\",\"max_tokens\":16,\"temperature\":0,\"messages\":[{\"role\":\"user\",\"content\":\"Name a colour.\"}]}"

wall "$chat" >/dev/null # warm-up
echo "loaded: $(rss) MiB"
during() { # body: the wall of a `calculator` request and of body sent 1 s into it
  local out
  out=$(mktemp)
  wall "$calc" >"$out" &
  sleep 1
  local other
  other=$(wall "$1")
  wait $!
  echo "$other $(cat "$out")"
  rm -f "$out"
}
echo "| round | chat alone s | calculator alone s | chat during calculator s | calculator with chat s | choice_likelihood alone s | choice_likelihood during calculator s | calculator with it s |"
echo "|---:|---:|---:|---:|---:|---:|---:|---:|"
for r in $(seq 1 "$rounds"); do
  chat_alone=$(wall "$chat")
  calc_alone=$(wall "$calc")
  read -r chat_during calc_chat < <(during "$chat")
  pick_alone=$(wall "$pick")
  read -r pick_during calc_pick < <(during "$pick")
  echo "| $r | $chat_alone | $calc_alone | $chat_during | $calc_chat | $pick_alone | $pick_during | $calc_pick |"
done
echo "after the token jobs: $(rss) MiB"
