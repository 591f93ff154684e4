#!/usr/bin/env bash
# llama.cpp's own speed tools as the reference for the native backend (docs/benchmarks.md).
#
#   scripts/llama-cpp-reference.sh build   # tools compiled against OUR static llama.cpp libs
#   scripts/llama-cpp-reference.sh run     # llama-bench, llama-batched-bench and our side
#   scripts/llama-cpp-reference.sh         # both
#
# build: `cargo build --release -p optillm --benches` (this builds
# llama.cpp through llama-cpp-sys-2, once), then `pip download` of the llama-cpp-python
# sdist (its vendor/llama.cpp is a complete llama.cpp tree; llama-cpp-sys-2 ships no tool
# sources), and compiles tools/llama-bench and tools/batched-bench from it with the compiler
# flags of llama-cpp-sys-2's own `common` build (read from its compile_commands.json),
# linked against the very static libraries of our build (libllama, libggml*, libllama-common*
# under target/release/build/llama-cpp-sys-2-*/out). Same kernels, same flags: what differs
# between the tools and our backend is the calling code only.
#
# run: with THREADS threads on MODEL, prints `uptime`, then
#   llama-bench -m MODEL -t 2 -p 256 -n 128 -r 3
#   llama-batched-bench -m MODEL -t 2 -c 4096 -npp 32 -ntg 128 -npl 1,2,4,8        (prompt per sequence)
#   llama-batched-bench -m MODEL -t 2 -c 4096 -npp 32 -ntg 128 -npl 1,2,4,8 -pps   (prompt shared, as ours)
#   llama-batched-bench ... -pps -kvu   (also one unified KV cache, as our backend's context)
#   our bench `native_reference` (same quantities through Backend::complete)
# ROUNDS times, the tools and ours alternating, in turn first (slow phases of a shared
# machine then hit both sides), keeps every output under target/llama-cpp-reference/results/<time>/ and
# writes summary.md there (medians over rounds, ratios to the targets;
# scripts/llama-cpp-reference-summary.py).
#
# Environment: MODEL (default: the cached SmolLM2-135M-Instruct Q4_1), THREADS (2),
# REPS (llama-bench -r, 3), ROUNDS (3), OPTILLM_BENCH_REPS (our repetitions per round, 3),
# LLAMA_CPP_PYTHON
# (sdist version, 0.3.36). Run it on a quiet machine: with 2 threads on 2 cores any other
# load makes llama.cpp's OpenMP threads wait for each other and the numbers collapse.
set -euo pipefail

ROOT="$(cd "$(dirname "${BASH_SOURCE[0]}")/.." && pwd)"
WORK="$ROOT/target/llama-cpp-reference"
VERSION="${LLAMA_CPP_PYTHON:-0.3.36}"
MODEL="${MODEL:-$HOME/.cache/optillm/models/SmolLM2-135M-Instruct.Q4_1.gguf}"
THREADS="${THREADS:-2}"
REPS="${REPS:-3}"
ROUNDS="${ROUNDS:-3}"
MODE="${1:-all}"

log() { echo "== $*" >&2; }

# The out dir of llama-cpp-sys-2 in the release build (the newest, if several).
sys_out() {
    local out
    out="$(ls -dt "$ROOT"/target/release/build/llama-cpp-sys-2-*/out 2>/dev/null | while read -r d; do
        [ -f "$d/lib/libllama.a" ] && echo "$d" && break
    done)"
    [ -n "$out" ] || { echo "no llama-cpp-sys-2 release build under $ROOT/target/release/build" >&2; exit 1; }
    echo "$out"
}

cargo_build() {
    log "cargo build --release -p optillm --benches"
    (cd "$ROOT" && nice -n 10 cargo build --release -p optillm --benches \
        --message-format=json) |
        python3 -c '
import json, sys
for line in sys.stdin:
    m = json.loads(line)
    if m.get("reason") == "compiler-artifact" and m.get("executable") and m["target"]["name"] == "native_reference":
        print(m["executable"])
' >"$WORK/native_reference.path"
    [ -s "$WORK/native_reference.path" ] || { echo "native_reference bench not built" >&2; exit 1; }
}

build() {
    mkdir -p "$WORK/bin"
    cargo_build
    local out src tree
    out="$(sys_out)"
    src="$(sed -n 's/^CMAKE_HOME_DIRECTORY:INTERNAL=//p' "$out/build/CMakeCache.txt")"
    log "our llama.cpp: $src (libraries in $out)"
    tree="$WORK/llama_cpp_python-$VERSION/vendor/llama.cpp"
    if [ ! -f "$tree/tools/llama-bench/llama-bench.cpp" ]; then
        log "pip download llama-cpp-python==$VERSION (sdist)"
        (cd "$WORK" && pip download --no-deps --no-binary :all: "llama-cpp-python==$VERSION" -d .)
        tar -xzf "$WORK/llama_cpp_python-$VERSION.tar.gz" -C "$WORK"
    fi
    # The flags llama-cpp-sys-2 compiled common/common.cpp with (defines, includes, -O, -march).
    local flags
    flags="$(python3 - "$out/build/compile_commands.json" <<'EOF'
import json, shlex, sys
for e in json.load(open(sys.argv[1])):
    if e["file"].endswith("/common/common.cpp"):
        args = shlex.split(e["command"])[1:]
        keep, skip = [], False
        for a in args:
            if skip:
                skip = False
            elif a in ("-o", "-c"):
                skip = True
            else:
                keep.append(a)
        print(" ".join(shlex.quote(a) for a in keep))
        break
EOF
)"
    [ -n "$flags" ] || { echo "common.cpp not in compile_commands.json" >&2; exit 1; }
    echo "$flags" >"$WORK/flags.txt"
    local libs=(
        "$out/build/common/libllama-common.a" "$out/build/common/libllama-common-base.a"
        "$out/build/vendor/cpp-httplib/libcpp-httplib.a" "$out/build/vendor/hash/libvendor-hash.a"
        "$out/lib/libllama.a" "$out/lib/libggml.a" "$out/lib/libggml-cpu.a" "$out/lib/libggml-base.a"
    )
    for tool in llama-bench:llama-bench batched-bench:llama-batched-bench; do
        local dir="${tool%%:*}" bin="${tool##*:}"
        log "compiling $bin from $tree/tools/$dir against our libraries"
        # shellcheck disable=SC2086 # flags are a word list
        eval nice -n 10 c++ $flags -fopenmp -I"$src/vendor" \
            "$tree/tools/$dir"/*.cpp -o "$WORK/bin/$bin" \
            "${libs[@]}" -lssl -lcrypto -lpthread -ldl
    done
    log "built: $(ls "$WORK/bin")"
}

# llama-bench and the three llama-batched-bench set-ups, round $2, into directory $1.
tools() {
    local res="$1" round="$2" variant
    log "round $round/$ROUNDS: llama-bench ($(uptime))"
    "$WORK/bin/llama-bench" -m "$MODEL" -t "$THREADS" -p 256 -n 128 -r "$REPS" \
        2>"$res/llama-bench.$round.err" | tee "$res/llama-bench.$round.md" >&2
    for variant in default pps pps-kvu; do
        local extra=()
        case "$variant" in pps) extra=(-pps) ;; pps-kvu) extra=(-pps -kvu) ;; esac
        log "round $round/$ROUNDS: llama-batched-bench ${extra[*]:-}"
        "$WORK/bin/llama-batched-bench" -m "$MODEL" -t "$THREADS" -c 4096 -npp 32 -ntg 128 \
            -npl 1,2,4,8 "${extra[@]}" >"$res/batched-bench-$variant.$round.out" 2>&1
        grep '^|' "$res/batched-bench-$variant.$round.out" >&2
    done
}

# Our native_reference bench, round $2, into directory $1.
ours() {
    local res="$1" round="$2"
    log "round $round/$ROUNDS: ours (native_reference, $(uptime))"
    OPTILLM_BENCH_MODEL="$MODEL" OPTILLM_BENCH_THREADS="$THREADS" \
        OPTILLM_BENCH_REPS="${OPTILLM_BENCH_REPS:-3}" \
        "$(cat "$WORK/native_reference.path")" 2>"$res/ours.$round.err" | tee "$res/ours.$round.md" >&2
}

run() {
    [ -f "$MODEL" ] || { echo "model not found: $MODEL (optillm pull smollm2-135m)" >&2; exit 1; }
    [ -x "$WORK/bin/llama-bench" ] && [ -s "$WORK/native_reference.path" ] || build
    local res
    res="$WORK/results/$(date +%Y%m%d-%H%M%S)"
    mkdir -p "$res"
    {
        echo "date: $(date -Is)"
        echo "nproc: $(nproc)"
        lscpu | grep -E '^(Model name|Thread|Core|Socket|CPU\(s\)|Flags)' | cut -c1-200
        echo "model: $MODEL"
        echo "threads: $THREADS"
        echo "flags: $(cat "$WORK/flags.txt")"
    } >"$res/machine.txt"
    cat "$res/machine.txt" >&2
    log "uptime before: $(uptime)"; uptime >"$res/uptime-before.txt"
    local round
    for round in $(seq 1 "$ROUNDS"); do
        # Odd rounds run the tools first, even rounds ours first: a machine that is faster
        # at the start of a round (or slows down under sustained load) favours neither side.
        if (( round % 2 )); then
            tools "$res" "$round"; ours "$res" "$round"
        else
            ours "$res" "$round"; tools "$res" "$round"
        fi
        uptime >"$res/uptime-after-round-$round.txt"
    done
    python3 "$ROOT/scripts/llama-cpp-reference-summary.py" "$res" | tee "$res/summary.md"
    log "uptime after: $(uptime)"; uptime >"$res/uptime-after.txt"
    log "results in $res"
}

case "$MODE" in
    build) build ;;
    run) run ;;
    all) build && run ;;
    *) echo "usage: $0 [build|run|all]" >&2; exit 2 ;;
esac
