#!/usr/bin/env bash
# The upstream pool against three real llama.cpp servers on loopback (xllamacpp, PyPI):
#
#   scripts/pool-failover.sh          # the fault test, then 1 against 3 servers, timed
#   scripts/pool-failover.sh --time   # only the timing
#
#  1. `cargo test --release -p optillm --test pool_failover`: `optillm eval` over
#     `--url A --url B --url C`, one server killed mid-run and another restarted; no
#     question may fail and the records must equal those of the run without faults.
#  2. The same eval (GSM8K, first QUESTIONS questions, self_consistency(k=3), 48 tokens,
#     seed 7, 3 runs in flight) through 1 server and through 3, wall time of each.
#
# Needs smollm2-135m and gsm8k in the cache (`optillm pull`, `optillm pull gsm8k`);
# xllamacpp goes into .venv-test/ like scripts/xllamacpp-server.sh does. Each server has
# one slot (N_PARALLEL=1), one thread (N_THREADS=1) and no prompt cache (CACHE_PROMPT=0),
# as in the test, so that the answers through 1 and 3 servers can be compared. On one machine the servers
# share its cores: the timing says what a pool costs or gains here, not what three
# machines would give.
set -euo pipefail
cd "$(dirname "$0")/.."
questions=${QUESTIONS:-30}
export OPTILLM_POOL_QUESTIONS=$questions

if [ "${1:-}" != "--time" ]; then
    # Installs xllamacpp into .venv-test/ when missing (the server script does it).
    if [ ! -x .venv-test/bin/python ] || ! .venv-test/bin/python -c 'import xllamacpp' 2>/dev/null; then
        python3 -m venv .venv-test
        echo '*' > .venv-test/.gitignore
        .venv-test/bin/pip install --quiet "xllamacpp${XLLAMACPP_VERSION:+==$XLLAMACPP_VERSION}"
    fi
    cargo test --release -p optillm --test pool_failover -- --ignored --nocapture
fi

# OPTILLM_BIN: an optillm binary to time instead of building target/release/optillm.
bin=${OPTILLM_BIN:-}
if [ -z "$bin" ]; then
    cargo build --release -p optillm --bin optillm
    bin=target/release/optillm
fi
model=$("$bin" pull | cut -f2)
"$bin" pull gsm8k > /dev/null
work=$(mktemp -d)
pids=()
cleanup() {
    for p in "${pids[@]}"; do kill "$p" 2>/dev/null || true; done
    rm -rf "$work"
}
trap cleanup EXIT
urls=()
for port in 18401 18402 18403; do
    CACHE_PROMPT=0 N_PARALLEL=1 N_THREADS=1 N_CTX=2048 scripts/xllamacpp-server.sh "$model" "$port" > "$work/server-$port.log" 2>&1 &
    pids+=($!)
    urls+=("http://127.0.0.1:$port/v1")
done
for port in 18401 18402 18403; do
    for _ in $(seq 1 240); do
        curl -sf "http://127.0.0.1:$port/health" > /dev/null 2>&1 && break
        sleep 0.5
    done
done

run() { # name url...
    local name=$1; shift
    local args=()
    for u in "$@"; do args+=(--url "$u"); done
    local start end
    start=$(date +%s.%N)
    "$bin" eval --dataset gsm8k --limit "$questions" --approaches "self_consistency(k=3)" \
        --max-tokens 48 --seed 7 --concurrency 3 --model smollm2-135m --backend openai \
        "${args[@]}" --out "$work/$name" > "$work/$name.md" 2> "$work/$name.log"
    end=$(date +%s.%N)
    printf '%s servers: %s s, %s correct\n' "$name" "$(awk "BEGIN { printf \"%.1f\", $end - $start }")" \
        "$(python3 -c 'import json,sys; r=[json.loads(l) for l in open(sys.argv[1])]; print(f"{sum(x["correct"] for x in r)}/{len(r)}")' "$work/$name/results.jsonl")"
}
echo "GSM8K x $questions, self_consistency(k=3), 48 tokens, concurrency 3, $(nproc) cores:"
run 1 "${urls[0]}"
run 3 "${urls[@]}"
cmp <(python3 -c 'import json,sys; [print(r["item"], r.get("extracted")) for r in map(json.loads, open(sys.argv[1]))]' "$work/1/results.jsonl" | sort) \
    <(python3 -c 'import json,sys; [print(r["item"], r.get("extracted")) for r in map(json.loads, open(sys.argv[1]))]' "$work/3/results.jsonl" | sort) \
    && echo "same answers through 1 and 3 servers" || echo "answers differ between 1 and 3 servers"
