#!/usr/bin/env python3
"""How often a recorded sample is right by its length, and what a length cap on the
sampled chains of `mixed_vote` would have given (estimated from records, no generation).

    scripts/sample-length.py docs/results/gsm8k-qwen2.5-coder-0.5b

The directory needs `none(temperature=0)`, `pot` and `majority_voting(k=8)` (with samples)
records on the same questions (as for scripts/mixed-vote-estimate.py, whose vote, cost and
report it reuses). A sample longer than the cap would have been cut off with no answer (it
does not vote) after costing the cap's tokens; one within it is the same sample, since a
seeded sample does not depend on its `max_tokens` until it reaches it.
"""
import collections
import importlib.util
import os
import sys

HERE = os.path.dirname(os.path.abspath(__file__))
spec = importlib.util.spec_from_file_location("estimate", os.path.join(HERE, "mixed-vote-estimate.py"))
# mixed-vote-estimate.py runs its report at import when given directories: import it
# with none.
argv, sys.argv = sys.argv, sys.argv[:1]
estimate = importlib.util.module_from_spec(spec)
spec.loader.exec_module(estimate)
sys.argv = argv
load, num, tokens, vote, report = estimate.load, estimate.num, estimate.tokens, estimate.vote, estimate.report


def capped(r, k, cap):
    answers, cost = [], r["prompt_tokens"]
    for s in r["samples"][:k]:
        t = s["completion_tokens"]
        cost += min(t, cap)
        answers.append(s.get("answer") if t <= cap else None)
    return answers, cost


def shortest_tie(P, G, S, k):
    """`mixed_vote` with k samples where the program and the greedy chain disagree, a tie
    going to the shortest chain among the tied answers (to the program if none is)."""
    def run(i):
        spent = tokens(P[i]) + tokens(G[i])
        p, g = P[i]["extracted"], G[i]["extracted"]
        if p is not None and num(p) == num(g):
            return p, spent
        drawn = S[i]["samples"][:k]
        spent += S[i]["prompt_tokens"] + sum(s["completion_tokens"] for s in drawn)
        chains = [(g, G[i]["completion_tokens"])] + [(s.get("answer"), s["completion_tokens"]) for s in drawn]
        count = collections.Counter(num(a) for a in [p] + [a for a, _ in chains] if a is not None)
        if not count:
            return None, spent
        best = max(count.values())
        tied = [(t, a) for a, t in chains if a is not None and count[num(a)] == best]
        if p is not None and count[num(p)] == best and len({num(a) for _, a in tied} | {num(p)}) == 1:
            return p, spent
        return (min(tied, key=lambda x: x[0])[1] if tied else p), spent
    return run


def mixed(P, G, S, k, cap):
    def run(i):
        spent = tokens(P[i]) + tokens(G[i])
        p, g = P[i]["extracted"], G[i]["extracted"]
        if p is not None and num(p) == num(g):
            return p, spent
        answers, cost = capped(S[i], k, cap)
        return vote([p, g] + answers), spent + cost
    return run


for d in sys.argv[1:]:
    by = load(d)
    G, P, S = by["none(temperature=0)"], by["pot"], by["majority_voting(k=8)"]
    buckets = collections.defaultdict(lambda: [0, 0, 0])
    for i, r in S.items():
        for s in r["samples"]:
            t = s["completion_tokens"]
            b = buckets[min(t // 100, 5)]
            b[0] += 1
            b[1] += s.get("answer") is not None and num(s.get("answer")) == num(r["gold"])
            b[2] += t
    total = sum(b[2] for b in buckets.values())
    print(f"\n{d}: samples of majority_voting(k=8) by completion tokens\n")
    print("| completion tokens | samples | right | share of sample tokens |")
    print("|---|---:|---:|---:|")
    for key in sorted(buckets):
        n, right, t = buckets[key]
        label = f"{key * 100}-{key * 100 + 99}" if key < 5 else "500+"
        print(f"| {label} | {n} | {right} ({100 * right / n:.1f}%) | {100 * t / total:.1f}% |")
    mean = lambda rows, f: sum(f(r) for r in rows.values()) / len(rows)
    print(f"\nprogram: {mean(P, lambda r: r['prompt_tokens']):.0f} prompt + "
          f"{mean(P, lambda r: r['completion_tokens']):.0f} completion tokens; program + greedy chain "
          f"{(mean(P, tokens) + mean(G, tokens)) / mean(G, tokens):.2f}x greedy's tokens")
    print("\n| program + greedy chain + k samples where they disagree, samples capped | accuracy | vs greedy, points (95% CI) | b/c | x greedy tokens |")
    print("|---|---:|---|---:|---:|")
    for k in (2, 3, 4, 8):
        for cap in (512, 400, 300):
            report(by, f"k={k}, at most {cap} tokens a sample", mixed(P, G, S, k, cap))
    for k in (2, 4):
        report(by, f"k={k}, ties to the shortest chain instead of the program", shortest_tie(P, G, S, k))
    # Two samples that disagree, one of them right: which one a rule picks.
    both = first = shorter = 0
    for r in S.values():
        a, b = r["samples"][:2]
        right = [s.get("answer") is not None and num(s.get("answer")) == num(r["gold"]) for s in (a, b)]
        if num(a.get("answer")) != num(b.get("answer")) and any(right):
            both += 1
            first += right[0]
            shorter += right[0] if a["completion_tokens"] <= b["completion_tokens"] else right[1]
    print(f"\nfirst two samples disagree, one right: {both} questions; the first is right on "
          f"{first}, the shorter on {shorter}")
