#!/usr/bin/env python3
"""Summary of scripts/llama-cpp-reference.sh results directories (one or more, pooled):
medians over rounds of llama.cpp's tools and of our native_reference bench, and the
ratios the targets are about."""

import glob
import json
import os
import re
import statistics
import sys

NAN = float("nan")


def files(dirs, pattern):
    return sorted(f for d in dirs for f in glob.glob(os.path.join(d, pattern)))


def med(xs):
    xs = [x for x in xs if x == x]
    return statistics.median(xs) if xs else NAN


def cells(line):
    return [c.strip() for c in line.strip().strip("|").split("|")]


def llama_bench(res, test):
    """Mean t/s of each round's llama-bench row for `test` (pp256, tg128)."""
    out = []
    for f in files(res, "llama-bench.*.md"):
        for line in open(f):
            c = cells(line)
            if len(c) > 2 and c[-2] == test:
                out.append(float(c[-1].split()[0]))
    return out


def batched(res, variant):
    """Rows of each round's llama-batched-bench table, by batch size B."""
    rows = {}
    for f in files(res, f"batched-bench-{variant}.*.out"):
        for line in open(f):
            c = cells(line)
            if len(c) == 10 and re.fullmatch(r"\d+", c[0]):
                rows.setdefault(int(c[2]), []).append(
                    {"t_pp": float(c[4]), "s_tg": float(c[7]), "t": float(c[8]), "s": float(c[9])}
                )
    return rows


def main(res):
    ours = []
    for f in files(res, "ours.*.md"):
        for line in open(f):
            if line.startswith("JSON "):
                ours.append(json.loads(line[5:]))
    pp, tg = med(llama_bench(res, "pp256")), med(llama_bench(res, "tg128"))
    opp, otg = med([o["prompt_tps"] for o in ours]), med([o["decode_tps"] for o in ours])
    ttft = med([o["ttft_ms"] for o in ours])
    story = ours[0]["story_prompt_tokens"] if ours else "?"
    print(f"rounds: llama-bench {len(llama_bench(res, 'pp256'))}, ours {len(ours)}")
    print()
    print("| quantity | llama.cpp | ours | ratio | target |")
    print("|---|---:|---:|---:|---|")
    print(f"| prompt tok/s, 256 tokens (llama-bench pp256) | {pp:.1f} | {opp:.1f} | {opp / pp:.2f} | >= 0.95 |")
    print(f"| decode tok/s, 128 tokens (llama-bench tg128) | {tg:.1f} | {otg:.1f} | {otg / tg:.2f} | >= 0.95 |")
    print(f"| time to first token, ms ({story}-token prompt) | | {ttft:.1f} | | |")
    print()
    # Ratios within each round (the two sides ran minutes apart), then their median.
    paired = {"pp256": [], "tg128": []}
    for d in res:
        for f in sorted(glob.glob(os.path.join(d, "ours.*.md"))):
            n = f.rsplit(".", 2)[-2]
            o = [json.loads(x[5:]) for x in open(f) if x.startswith("JSON ")]
            for test, key in (("pp256", "prompt_tps"), ("tg128", "decode_tps")):
                mdf = os.path.join(d, f"llama-bench.{n}.md")
                if o and os.path.exists(mdf):
                    for line in open(mdf):
                        c = cells(line)
                        if len(c) > 2 and c[-2] == test:
                            paired[test].append(o[0][key] / float(c[-1].split()[0]))
    for test, rs in paired.items():
        print(f"paired ratio {test} per round: {', '.join(f'{r:.2f}' for r in rs)}; median {med(rs):.2f}")
    print()
    variants = ("default", "pps", "pps-kvu")
    tables = {v: batched(res, v) for v in variants}
    print("| B | batched-bench S_TG tok/s: default / -pps / -pps -kvu | T s: default / -pps / -pps -kvu |")
    print("|---:|---|---|")
    for b in sorted(tables["default"]):
        s_tg = " / ".join(f"{med([r['s_tg'] for r in tables[v].get(b, [])]):.1f}" for v in variants)
        t = " / ".join(f"{med([r['t'] for r in tables[v].get(b, [])]):.3f}" for v in variants)
        print(f"| {b} | {s_tg} | {t} |")
    print()
    print(
        "| n | ours: tokens | wall s | decode tok/s | raw decode tok/s "
        "| ratio decode / S_TG default | ratio decode / S_TG -pps -kvu |"
    )
    print("|---:|---:|---:|---:|---:|---:|---:|")
    for i, n in enumerate((1, 2, 4, 8)):
        row = [o["n_samples"][i] for o in ours]
        toks = med([r["completion_tokens"] for r in row])
        wall = med([r["wall_s"] for r in row])
        dec = med([r["decode_tps"] for r in row])
        raw = med([r.get("raw_decode_tps", NAN) for r in row])
        ref = med([r["s_tg"] for r in tables["default"].get(n, [])])
        kvu = med([r["s_tg"] for r in tables["pps-kvu"].get(n, [])])
        print(f"| {n} | {toks:.0f} | {wall:.3f} | {dec:.1f} | {raw:.1f} | {dec / ref:.2f} | {dec / kvu:.2f} |")
    sep = med([o["separate_8_wall_s"] for o in ours])
    w8 = med([o["n_samples"][3]["wall_s"] for o in ours])
    print()
    print(f"ours: 8 separate requests {sep:.3f} s; n=8 in one request {w8:.3f} s; ratio {w8 / sep:.2f} (target <= 0.50)")
    for v in variants:
        t1 = med([r["t"] for r in tables[v].get(1, [])])
        t8 = med([r["t"] for r in tables[v].get(8, [])])
        print(f"batched-bench {v}: T(B=8) / (8 x T(B=1)) = {t8:.3f} / {8 * t1:.3f} = {t8 / (8 * t1):.2f}")


if __name__ == "__main__":
    main(sys.argv[1:])
