#!/usr/bin/env python3
"""Estimates, from recorded eval records only (no generation), what a vote over reasoning
modes would score: greedy `pot` + greedy `none(temperature=0)` + the first k samples of
`majority_voting(k=8)`, ties to the program, then the greedy chain (as `mixed_vote` does).

    scripts/mixed-vote-estimate.py docs/results/gsm8k-qwen2.5-coder-0.5b [more dirs...]

Each directory needs records of `none(temperature=0)`, `pot` and `majority_voting(k=8)`
(with samples) on the same questions; rows of sampled programs are added when a
`pot(k=8,...)` run recorded its programs on every question (in the directory or in
`<dir>-pot8`). Answers are compared as numbers; the interval is a
Wald interval of the paired difference to greedy `none` (an estimate: `optillm eval`'s
own table uses Newcombe's). Token cost: the sum of each part's recorded tokens, the
samples' share taken from the 8-sample record, over greedy's tokens.
"""
import collections
import json
import math
import os
import sys


def load(d):
    by = collections.defaultdict(dict)
    with open(d + "/results.jsonl") as f:
        for line in f:
            r = json.loads(line)
            by[r["approach"]][r["item"]] = r
    return by


def num(a):
    if a is None:
        return None
    try:
        return float(str(a).replace(",", ""))
    except ValueError:
        return a


def tokens(r):
    return r["prompt_tokens"] + r["completion_tokens"]


def vote(answers):
    count = collections.Counter(num(a) for a in answers if a is not None)
    if not count:
        return None
    best = max(count.values())
    return next(a for a in answers if a is not None and count[num(a)] == best)


def samples(r, k):
    per = r["completion_tokens"] / len(r["samples"])
    return [s.get("answer") for s in r["samples"][:k]], r["prompt_tokens"] + per * k


def adaptive(p, g, s, k, batch=2, lead=2):
    """The vote of the program, the greedy chain and samples drawn `batch` at a time
    where the first two disagree, until one answer leads the next by `lead` votes or
    cannot be overtaken, at most `k`; each batch pays the prompt again."""
    spent = tokens(p) + tokens(g)
    if p["extracted"] is not None and num(p["extracted"]) == num(g["extracted"]):
        return p["extracted"], spent
    answers = [p["extracted"], g["extracted"]]
    drawn = [x.get("answer") for x in s["samples"]]
    per = s["completion_tokens"] / len(s["samples"])
    n = 0
    while n < k:
        answers += drawn[n:n + batch]
        n += batch
        spent += s["prompt_tokens"] + per * batch
        counts = sorted(collections.Counter(num(a) for a in answers if a is not None).values(), reverse=True) + [0, 0]
        if counts[0] - counts[1] >= lead or counts[0] - counts[1] > k - n:
            break
    return vote(answers), spent


def report(by, name, answer_and_cost):
    greedy = by["none(temperature=0)"]
    items = sorted(greedy, key=int)
    base_tokens = sum(tokens(greedy[i]) for i in items) / len(items)
    right = cost = b = c = 0
    for i in items:
        answer, spent = answer_and_cost(i)
        ok = answer is not None and num(answer) == num(greedy[i]["gold"])
        base = greedy[i]["correct"]
        right += ok
        cost += spent
        b += ok and not base
        c += base and not ok
    n = len(items)
    d = (b - c) / n
    se = math.sqrt(max(b + c - (b - c) ** 2 / n, 0)) / n
    print(
        f"| {name} | {100 * right / n:.1f}% | {100 * d:+.1f} ({100 * (d - 1.96 * se):+.1f} to "
        f"{100 * (d + 1.96 * se):+.1f}) | {b}/{c} | {cost / n / base_tokens:.2f} |"
    )


for d in sys.argv[1:]:
    by = load(d)
    G, P, S = by["none(temperature=0)"], by["pot"], by["majority_voting(k=8)"]
    print(f"\n{d} ({len(G)} questions)\n")
    print("| votes | accuracy | vs greedy, points (95% CI) | b/c | x greedy tokens |")
    print("|---|---:|---|---:|---:|")
    report(by, "greedy `none`", lambda i: (G[i]["extracted"], tokens(G[i])))
    report(by, "`pot`", lambda i: (P[i]["extracted"], tokens(P[i])))
    for k in (1, 2, 3, 4, 8):
        report(by, f"{k} samples", lambda i: (vote(samples(S[i], k)[0]), samples(S[i], k)[1]))
        report(
            by,
            f"program + greedy chain + {k} samples",
            lambda i: (
                vote([P[i]["extracted"], G[i]["extracted"]] + samples(S[i], k)[0]),
                tokens(P[i]) + tokens(G[i]) + samples(S[i], k)[1],
            ),
        )
    # Samples drawn only when the program and the greedy chain disagree.
    for k in (2, 4, 8):
        report(
            by,
            f"program + greedy chain, {k} samples only when they disagree",
            lambda i: (
                (P[i]["extracted"], tokens(P[i]) + tokens(G[i]))
                if P[i]["extracted"] is not None and num(P[i]["extracted"]) == num(G[i]["extracted"])
                else (
                    vote([P[i]["extracted"], G[i]["extracted"]] + samples(S[i], k)[0]),
                    tokens(P[i]) + tokens(G[i]) + samples(S[i], k)[1],
                )
            ),
        )
    # Samples drawn where the program and the greedy chain disagree, 2 at a time, until
    # the leading answer leads by 2 votes (or cannot be overtaken), at most k.
    for k in (4, 8):
        report(by, f"program + greedy chain, then samples 2 at a time until one answer leads by 2, at most {k}",
               lambda i: adaptive(P[i], G[i], S[i], k))
    # Sampled programs, when a `pot(k=8,...)` run recorded them on every question.
    # Kept in a directory of their own (`<dir>-pot8`): with every program's text the
    # records would make one file too large to commit.
    if os.path.exists(d + "-pot8/results.jsonl"):
        by.update(load(d + "-pot8"))
    Q = next((by[a] for a in by if a.startswith("pot(k=8") and set(G) <= set(by[a])), None)
    if Q is None:
        continue
    for j in (2, 3, 4, 8):
        report(by, f"{j} sampled programs", lambda i: (vote(samples(Q[i], j)[0]), samples(Q[i], j)[1]))
        report(
            by,
            f"program + {j} sampled programs",
            lambda i: (
                vote([P[i]["extracted"]] + samples(Q[i], j)[0]),
                tokens(P[i]) + samples(Q[i], j)[1],
            ),
        )
        for k in (1, 2):
            report(
                by,
                f"program + greedy chain + {j} sampled programs + {k} samples",
                lambda i: (
                    vote([P[i]["extracted"], G[i]["extracted"]] + samples(Q[i], j)[0] + samples(S[i], k)[0]),
                    tokens(P[i]) + tokens(G[i]) + samples(Q[i], j)[1] + samples(S[i], k)[1],
                ),
            )
