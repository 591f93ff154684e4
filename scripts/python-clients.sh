#!/usr/bin/env bash
# Runs tests/python (the official `openai` and `ollama` PyPI clients) against a real
# `optillm serve`: creates .venv-test, starts the server, waits for /health, runs pytest,
# stops the server.
#
#   scripts/python-clients.sh [pytest args...]
#
# Environment: PORT (default 18765), OPTILLM_TEST_MODEL (default smollm2-135m),
# OPTILLM_BIN (default target/release/optillm), OPTILLM_SERVE_ARGS (extra serve flags).
set -euo pipefail
cd "$(dirname "$0")/.."

PORT="${PORT:-18765}"
MODEL="${OPTILLM_TEST_MODEL:-smollm2-135m}"
BIN="${OPTILLM_BIN:-target/release/optillm}"
VENV=.venv-test
URL="http://127.0.0.1:$PORT"

if [ ! -x "$BIN" ]; then
    echo "error: $BIN not found; build it with: cargo build --release -p optillm" >&2
    exit 2
fi

if [ ! -x "$VENV/bin/python" ]; then
    python3 -m venv "$VENV"
fi
# Keep the venv out of git without touching the repository's .gitignore.
echo '*' > "$VENV/.gitignore"
"$VENV/bin/pip" install --quiet --disable-pip-version-check openai ollama pytest

LOG="$(mktemp)"
# shellcheck disable=SC2086
"$BIN" serve --host 127.0.0.1 --port "$PORT" --model "$MODEL" ${OPTILLM_SERVE_ARGS:-} >"$LOG" 2>&1 &
SERVER=$!
cleanup() {
    kill "$SERVER" 2>/dev/null || true
    wait "$SERVER" 2>/dev/null || true
    rm -f "$LOG"
}
trap cleanup EXIT

healthy=""
for _ in $(seq 1 600); do
    if "$VENV/bin/python" -c "import urllib.request,sys; urllib.request.urlopen(sys.argv[1], timeout=2)" "$URL/health" 2>/dev/null; then
        healthy=1
        break
    fi
    if ! kill -0 "$SERVER" 2>/dev/null; then
        echo "error: optillm serve exited before becoming healthy:" >&2
        cat "$LOG" >&2
        exit 1
    fi
    sleep 0.5
done
if [ -z "$healthy" ]; then
    echo "error: $URL/health did not answer within 300 s; server log:" >&2
    cat "$LOG" >&2
    exit 1
fi

status=0
OPTILLM_SERVER_URL="$URL" OPTILLM_TEST_MODEL="$MODEL" \
    "$VENV/bin/python" -m pytest -v tests/python "$@" || status=$?
if [ "$status" -ne 0 ]; then
    echo "--- server log ---" >&2
    tail -n 50 "$LOG" >&2
fi
exit "$status"
