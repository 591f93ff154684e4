#!/usr/bin/env bash
# The whole test suite:
#  1. build dependencies (Debian packages) and the default model, pulled by the project's
#     own `optillm pull` (SHA-256 checked, cached);
#  2. every crate's tests in release mode (one llama.cpp build serves binary and tests),
#     including the native backend on the real SmolLM2-135M;
#  3. the OpenAI-compatible backend against llama.cpp's own server (xllamacpp, PyPI):
#     its own tests and the backend conformance suite;
#  4. the official Python `openai` and `ollama` clients against `optillm serve`.
set -euo pipefail
cd "$(dirname "$0")/.."
./scripts/setup.sh
cargo build --release -p optillm
model=$(./target/release/optillm pull | cut -f2)
cargo fmt --all -- --check
cargo clippy --release --workspace --all-targets -- -D warnings
cargo test --release --workspace

port=18088
./scripts/xllamacpp-server.sh "$model" "$port" > target/xllamacpp.log 2>&1 &
xl=$!
trap 'kill $xl 2>/dev/null || true' EXIT
for _ in $(seq 1 240); do
  curl -sf "http://127.0.0.1:$port/health" >/dev/null 2>&1 && break
  kill -0 "$xl" 2>/dev/null || { cat target/xllamacpp.log; exit 1; }
  sleep 0.5
done
OPTILLM_XLLAMACPP_URL="http://127.0.0.1:$port" cargo test --release -p optillm-openai --test xllamacpp
# The backend conformance suite against llama.cpp's server (the workspace run above skips
# that subject: no server then).
OPTILLM_XLLAMACPP_URL="http://127.0.0.1:$port" cargo test --release -p optillm --test conformance \
  the_openai_backend_to_llama_cpp_server
kill "$xl" 2>/dev/null || true

./scripts/python-clients.sh
