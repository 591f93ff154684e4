# Sourced by the scripts that measure one `optillm serve` (serve-rss.sh, token-lane.sh).

# start_serve BINARY MODEL PORT [ARGS...]: starts `optillm serve` on loopback with 2
# threads, stops it when the script exits, and waits until it answers /health.
start_serve() {
  local bin=$1 model=$2
  port=$3
  shift 3
  "$bin" serve --port "$port" --model "$model" --threads 2 "$@" >/dev/null 2>&1 &
  server=$!
  trap 'kill $server 2>/dev/null || true' EXIT
  for _ in $(seq 1 600); do
    curl -sf "http://127.0.0.1:$port/health" >/dev/null 2>&1 && return
    sleep 0.2
  done
  echo "optillm serve did not answer on port $port" >&2
  exit 1
}

# rss: the server's resident memory, MiB.
rss() { awk '/VmRSS/ { printf "%.1f", $2 / 1024 }' "/proc/$server/status"; }
