#!/usr/bin/env bash
# Orchestration measured apart from the model (issue 23): optillm-rs `serve` and the
# reference Python proxy (PyPI `optillm`, installed without torch) side by side, both in
# front of the same fixed-latency upstream (crates/bench/src/bin/fixed-upstream.rs), which
# answers any request, whatever its `n`, after one fixed latency, as a batching GPU server
# roughly does. What remains of a request's time is what the strategy layer costs and
# what its concurrency saves. Also the per-call cost of `optillm run` and of `serve`.
#
#   scripts/orchestration-bench.sh [--latency-ms 200] [--repeats 5] [--tokens 40]
#                                  [--approaches "none bon ..."] [--max-concurrent 16]
#                                  [--bin-dir DIR]   (prebuilt optillm and fixed-upstream)
#                                  [--llama-server MODEL.gguf]
#
# --llama-server: the upstream is llama.cpp's own server on this CPU instead
# (scripts/xllamacpp-server.sh, N_PARALLEL slots, default 4), so the model's compute bounds
# both proxies; the server's prompt and generated tokens per request (its /metrics) are
# reported instead of request counts and latencies.
#
# Needs: cargo, python3 (a venv with optillm==0.4.0 --no-deps and the few packages its
# server imports is made under /tmp/optillm-ref-venv), curl. Ports 8099-8101 on loopback.
# Prints a markdown table on stdout; logs go to $WORK (printed).
set -euo pipefail

LATENCY_MS=200
REPEATS=5
TOKENS=40
MAX_CONCURRENT=16
APPROACHES="none self_consistency bon pvg mcts rstar plansearch moa re2 cot_reflection leap rto"
UP_PORT=8099
OURS_PORT=8100
REF_PORT=8101
VENV=${OPTILLM_REF_VENV:-/tmp/optillm-ref-venv}
BIN=
LLAMA_MODEL=
REF_VERSION=0.4.0
while [ $# -gt 0 ]; do
    case "$1" in
        --latency-ms) LATENCY_MS=$2; shift 2 ;;
        --repeats) REPEATS=$2; shift 2 ;;
        --tokens) TOKENS=$2; shift 2 ;;
        --approaches) APPROACHES=$2; shift 2 ;;
        --max-concurrent) MAX_CONCURRENT=$2; shift 2 ;;
        --bin-dir) BIN=$2; shift 2 ;;
        --llama-server) LLAMA_MODEL=$2; shift 2 ;;
        -h|--help) sed -n 2,21p "$0"; exit 0 ;;
        *) echo "unknown argument $1" >&2; exit 2 ;;
    esac
done

ROOT=$(cd "$(dirname "$0")/.." && pwd)
cd "$ROOT"
WORK=$(mktemp -d /tmp/orchestration-bench.XXXXXX)
echo "logs in $WORK" >&2
PIDS=()
cleanup() {
    for p in "${PIDS[@]}"; do kill -- "$p" 2>/dev/null || true; done
}
trap cleanup EXIT

if [ -z "${BIN:-}" ]; then
    nice cargo build --release -p optillm-bench --bin fixed-upstream >&2
    nice cargo build --release -p optillm --bin optillm >&2
    BIN="${CARGO_TARGET_DIR:-$ROOT/target}/release"
fi

# The reference proxy, without torch: --no-deps, then only what `optillm.server` imports.
if ! "$VENV/bin/python" -c "import optillm.server" 2>/dev/null; then
    python3 -m venv "$VENV"
    "$VENV/bin/pip" install -q --no-deps "optillm==$REF_VERSION"
    "$VENV/bin/pip" install -q flask openai cerebras_cloud_sdk numpy networkx \
        'z3-solver<=4.15.4.0' aiohttp requests sympy PyYAML math-verify
    "$VENV/bin/python" -c "import optillm.server"
fi

wait_http() {
    for _ in $(seq 1 100); do
        curl -sf "$1" >/dev/null 2>&1 && return 0
        sleep 0.2
    done
    echo "no answer from $1" >&2
    return 1
}

if [ -n "$LLAMA_MODEL" ]; then
    # setsid: its own process group, so that the cleanup's kill reaches the Python server.
    METRICS=1 setsid "$ROOT/scripts/xllamacpp-server.sh" "$LLAMA_MODEL" "$UP_PORT" 2>"$WORK/upstream.log" &
    PIDS+=(-$!)
    for _ in $(seq 1 5); do wait_http "http://127.0.0.1:$UP_PORT/health" && break; done
    LATENCY_MS=0
else
    "$BIN/fixed-upstream" --port "$UP_PORT" --latency-ms "$LATENCY_MS" --tokens "$TOKENS" \
        2>"$WORK/upstream.log" &
    PIDS+=($!)
    wait_http "http://127.0.0.1:$UP_PORT/stats"
fi
UPSTREAM="http://127.0.0.1:$UP_PORT/v1"

# Ours: a pool of one upstream, so that the number of requests in flight to it is set
# (`max_concurrent`; `--url` alone allows 4), as one would for a batching server.
cat >"$WORK/pool.toml" <<EOF
model = "fixed"
[[upstream]]
kind = "openai"
url = "$UPSTREAM"
max_concurrent = $MAX_CONCURRENT
EOF
"$BIN/optillm" serve --pool "$WORK/pool.toml" --port "$OURS_PORT" 2>"$WORK/ours.log" &
PIDS+=($!)
wait_http "http://127.0.0.1:$OURS_PORT/v1/models"

(cd "$WORK" && OPENAI_API_KEY=none exec "$VENV/bin/optillm" --base-url "$UPSTREAM" \
    --port "$REF_PORT" --host 127.0.0.1 --log warning >"$WORK/reference.log" 2>&1) &
PIDS+=($!)
wait_http "http://127.0.0.1:$REF_PORT/v1/models" || wait_http "http://127.0.0.1:$REF_PORT/health"

python3 - "$UP_PORT" "$OURS_PORT" "$REF_PORT" "$REPEATS" "$LATENCY_MS" "$APPROACHES" \
    "$BIN/optillm" "$UPSTREAM" "$MAX_CONCURRENT" <<'PY'
import json, statistics, subprocess, sys, time, urllib.request

up, ours, ref, repeats, latency_ms = (int(a) for a in sys.argv[1:6])
approaches = sys.argv[6].split()
optillm, upstream, max_concurrent = sys.argv[7], sys.argv[8], sys.argv[9]
QUESTION = "What is 6 times 7? Think step by step."

def stats():
    """The fixed upstream's request counts; from a llama.cpp server, the tokens it
    evaluated and generated (its /metrics counts no requests)."""
    if latency_ms == 0:
        with urllib.request.urlopen(f"http://127.0.0.1:{up}/metrics") as r:
            text = r.read().decode()
        counters = {}
        for line in text.splitlines():
            name, _, value = line.partition(" ")
            if name in ("llamacpp:prompt_tokens_total", "llamacpp:tokens_predicted_total"):
                counters[name.split(":")[1]] = float(value)
        return counters
    with urllib.request.urlopen(f"http://127.0.0.1:{up}/stats") as r:
        return json.load(r)

def chat(port, model):
    body = json.dumps({"model": model, "messages": [{"role": "user", "content": QUESTION}],
                       "max_tokens": 256}).encode()
    req = urllib.request.Request(f"http://127.0.0.1:{port}/v1/chat/completions", data=body,
                                 headers={"Content-Type": "application/json",
                                          "Authorization": "Bearer none"})
    with urllib.request.urlopen(req, timeout=600) as r:
        out = json.load(r)
    return out["choices"][0]["message"]["content"]

def measure(port, model):
    """Mean seconds per request over `repeats` sequential requests (one warm-up first),
    upstream requests per run, and the most requests in flight at the upstream."""
    try:
        chat(port, model)
    except Exception as e:  # the approach is missing on this side
        return None, str(e)
    before = stats()
    walls = []
    for _ in range(repeats):
        t = time.perf_counter()
        chat(port, model)
        walls.append(time.perf_counter() - t)
    after = stats()
    if latency_ms == 0:  # tokens the server evaluated / generated per request
        calls = tuple((after.get(k, 0) - before.get(k, 0)) / repeats
                      for k in ("prompt_tokens_total", "tokens_predicted_total"))
    else:
        calls = (after["requests"] - before["requests"]) / repeats
    return (statistics.mean(walls), statistics.stdev(walls) if len(walls) > 1 else 0.0,
            calls), None

upstream_said = (f"fixed upstream latency {latency_ms} ms" if latency_ms
                 else "upstream: llama.cpp's server on this CPU")
print(f"{upstream_said}; {repeats} sequential requests per approach "
      f"after one warm-up; ours: `optillm serve --pool` (max_concurrent {max_concurrent})\n")
if latency_ms:
    print("| approach | ours s/req | reference s/req | speed-up | upstream requests ours/ref | "
          "ours in latencies | ref in latencies |")
else:
    print("| approach | ours s/req | reference s/req | speed-up | server prompt tokens/req "
          "ours/ref | server generated tokens/req ours/ref | ours generated tok/s |")
print("|---|---:|---:|---:|---:|---:|---:|")
lat = latency_ms / 1000
for a in approaches:
    o, oerr = measure(ours, f"{a}-fixed")
    r, rerr = measure(ref, f"{a}-fixed")
    if o is None or r is None:
        print(f"| {a} | {'-' if o is None else f'{o[0]:.3f}'} | "
              f"{'-' if r is None else f'{r[0]:.3f}'} | - | - | - | - |")
        print(f"  {a}: ours error {oerr!r:.200} reference error {rerr!r:.200}", file=sys.stderr)
        continue
    if lat:
        counts = f"{o[2]:g} / {r[2]:g} | {o[0] / lat:.1f} | {r[0] / lat:.1f}"
    else:
        counts = (f"{o[2][0]:.0f} / {r[2][0]:.0f} | {o[2][1]:.0f} / {r[2][1]:.0f} | "
                  f"{o[2][1] / o[0]:.1f}")
    print(f"| {a} | {o[0]:.3f} ± {o[1]:.3f} | {r[0]:.3f} ± {r[1]:.3f} | {r[0] / o[0]:.2f}x | "
          f"{counts} |", flush=True)

if not lat:
    sys.exit(0)  # a model's compute is no fixed latency to subtract

# Per-call cost above the upstream: `none` through serve, and a whole `optillm run`
# process (start, backend and model resolution, one call, exit).
o, _ = measure(ours, "none-fixed")
r, _ = measure(ref, "none-fixed")
runs = []
for _ in range(repeats):
    t = time.perf_counter()
    subprocess.run([optillm, "run", "--backend", "openai", "--url", upstream, "-m", "fixed",
                    QUESTION], check=True, capture_output=True)
    runs.append(time.perf_counter() - t)
run = statistics.mean(runs)
print(f"\nper call above the upstream's {latency_ms} ms (mean of {repeats}): "
      f"`optillm serve` none {1000 * (o[0] - lat):.1f} ms, reference proxy none "
      f"{1000 * (r[0] - lat):.1f} ms, `optillm run` (whole process) {1000 * (run - lat):.1f} ms "
      f"(min {1000 * (min(runs) - lat):.1f} ms)")
print(f"upstream: {json.dumps(stats())}")
PY
