#!/usr/bin/env bash
# Serves a GGUF model with xllamacpp (llama.cpp's own server, from PyPI) on 127.0.0.1:PORT,
# for the OpenAI backend's integration test:
#
#   scripts/xllamacpp-server.sh MODEL.gguf [PORT]     # default port 8088
#   OPTILLM_XLLAMACPP_URL=http://127.0.0.1:8088 cargo test -p optillm-openai --test xllamacpp
#
# xllamacpp is installed into .venv-test/ at the repository root (ignored by git through
# .venv-test/.gitignore). Set XLLAMACPP_VERSION to pin a version, N_PARALLEL for the number
# of server slots (default 4), N_CTX for the total context (default 4096), N_THREADS for
# the CPU threads of decoding and prompt processing (default: llama.cpp's), CACHE_PROMPT=0
# to turn off the reuse of a previous prompt's KV cache (sampled texts then no longer depend
# on what the server computed before: the cache changes the floating-point rounding),
# METRICS=1 to serve llama.cpp's Prometheus counters at /metrics.
set -euo pipefail

if [ $# -lt 1 ] || [ $# -gt 2 ]; then
    echo "usage: $0 MODEL.gguf [PORT]" >&2
    exit 2
fi
model=$(realpath "$1")
port=${2:-8088}
[ -f "$model" ] || { echo "no such model file: $model" >&2; exit 2; }
case "$port" in ''|*[!0-9]*) echo "PORT must be a number, got '$port'" >&2; exit 2;; esac

repo=$(cd "$(dirname "$0")/.." && pwd)
venv="$repo/.venv-test"
if [ ! -x "$venv/bin/python" ]; then
    python3 -m venv "$venv"
fi
echo '*' > "$venv/.gitignore"
if ! "$venv/bin/python" -c 'import xllamacpp' 2>/dev/null; then
    "$venv/bin/pip" install --quiet "xllamacpp${XLLAMACPP_VERSION:+==$XLLAMACPP_VERSION}"
fi

# xllamacpp.Server starts llama.cpp's HTTP server on a background thread, listening on
# params.hostnames / params.port; the process only has to stay alive.
exec "$venv/bin/python" - "$model" "$port" <<'PY'
import os
import signal
import sys
import threading

import xllamacpp as xlc

model, port = sys.argv[1], int(sys.argv[2])
params = xlc.CommonParams()
params.model.path = model
params.hostnames = ["127.0.0.1"]
params.port = port
params.n_parallel = int(os.environ.get("N_PARALLEL", "4"))
params.n_ctx = int(os.environ.get("N_CTX", "4096"))
if os.environ.get("CACHE_PROMPT") == "0":
    params.cache_prompt = False
if os.environ.get("METRICS") == "1":
    params.endpoint_metrics = True
if os.environ.get("N_THREADS"):
    params.cpuparams.n_threads = int(os.environ["N_THREADS"])
    params.cpuparams_batch.n_threads = int(os.environ["N_THREADS"])
server = xlc.Server(params)
print(f"xllamacpp {getattr(xlc, '__version__', '?')} serving {model} at {server.listening_address}",
      flush=True)

stop = threading.Event()
signal.signal(signal.SIGTERM, lambda *_: stop.set())
signal.signal(signal.SIGINT, lambda *_: stop.set())
stop.wait()
PY
