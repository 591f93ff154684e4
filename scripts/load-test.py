#!/usr/bin/env python3
"""Bounded loopback load run against a running `optillm serve` (stdlib only).

    scripts/load-test.py URL MODEL [--clients 32] [--requests 8] [--max-tokens 8]

Each client sends its requests one after the other (OpenAI dialect, `none`, not streamed).
Prints failures, latency percentiles and throughput, then the server overhead: for a few
sequential requests on the Ollama dialect, client wall time minus the backend's own
`total_duration`. Only 127.0.0.1 / localhost URLs are accepted.
"""
import argparse, json, statistics, threading, time, urllib.request, urllib.parse

ap = argparse.ArgumentParser()
ap.add_argument("url"); ap.add_argument("model")
ap.add_argument("--clients", type=int, default=32)
ap.add_argument("--requests", type=int, default=8)
ap.add_argument("--max-tokens", type=int, default=8)
args = ap.parse_args()
host = urllib.parse.urlparse(args.url).hostname
assert host in ("127.0.0.1", "localhost", "::1"), "loopback only"

def post(path, body, timeout=600):
    req = urllib.request.Request(args.url + path, data=json.dumps(body).encode(),
                                 headers={"content-type": "application/json"})
    with urllib.request.urlopen(req, timeout=timeout) as r:
        return r.status, json.loads(r.read())

lat, fails, lock = [], [], threading.Lock()
def client(c):
    for i in range(args.requests):
        body = {"model": args.model, "max_tokens": args.max_tokens, "seed": c * 100 + i,
                "messages": [{"role": "user", "content": f"Say a word about the number {c * 100 + i}."}]}
        t = time.perf_counter()
        try:
            status, out = post("/v1/chat/completions", body)
            ok = status == 200 and out["choices"][0]["message"]["content"] is not None
        except Exception as e:  # counted, reported
            ok, out = False, repr(e)
        dt = time.perf_counter() - t
        with lock:
            (lat if ok else fails).append(dt if ok else out)

t0 = time.perf_counter()
threads = [threading.Thread(target=client, args=(c,)) for c in range(args.clients)]
for t in threads: t.start()
for t in threads: t.join()
wall = time.perf_counter() - t0
n = args.clients * args.requests
q = statistics.quantiles(lat, n=100) if len(lat) > 1 else [0] * 99
print(f"requests {n}, ok {len(lat)}, failed {len(fails)}, wall {wall:.1f} s, {len(lat) / wall:.2f} req/s")
print(f"latency s: p50 {q[49]:.2f}  p90 {q[89]:.2f}  p99 {q[98]:.2f}  max {max(lat) if lat else 0:.2f}")
for f in fails[:5]: print("failure:", f)

over = []
for i in range(5):
    body = {"model": args.model, "stream": False, "options": {"num_predict": args.max_tokens, "seed": i},
            "messages": [{"role": "user", "content": "Say hello."}]}
    t = time.perf_counter(); _, out = post("/api/chat", body); dt = time.perf_counter() - t
    over.append(dt - out.get("total_duration", 0) / 1e9)
print(f"server overhead per request (client wall - backend total_duration), median of 5: {statistics.median(over) * 1000:.1f} ms")
