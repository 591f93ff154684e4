#!/usr/bin/env python3
"""Where `mixed_vote` loses: from the records of one of its runs (its `vote` field lists the
answers in tie-break order: the program's, the greedy chain's, then the samples'), how
often the voters agree, how often the gold answer was among the answers when they did
not, and what two other ways of choosing among disagreeing answers would have scored.

    scripts/mixed-vote-selection.py DIR [APPROACH] [--candidates OUT.jsonl]

APPROACH defaults to `auto` (the `auto` runs on GSM8K answer every question by
`mixed_vote`). Printed:

- the vote patterns (`1,1,1,1`: four different answers) with the questions right and the
  questions whose gold answer was among the voted answers (an oracle's pick);
- a tie-break that prefers whole, non-negative numbers among the tied leaders (on every
  question, and on "how many" questions only), in questions right.

With `--candidates`, writes the questions where the voters disagreed and the gold answer
was among their answers as a multiple-choice data set of your own (the answers as
options, in vote order; ids as the data set's), for scoring them by likelihood with
`optillm eval --dataset OUT.jsonl --approaches choice_likelihood...`. The questions come
from the GSM8K file `optillm pull gsm8k` caches (or GSM8K_FILE).
"""
import collections
import gzip
import json
import os
import re
import sys


def parse_vote(vote):
    out = []
    for part in (vote or "").split(", "):
        if ": " in part:
            answer, count = part.rsplit(": ", 1)
            out.append((answer, int(count)))
    return out


def whole_non_negative(answer):
    try:
        x = float(answer)
    except ValueError:
        return False
    return x >= 0 and x == int(x)


def same(a, b):
    try:
        return abs(float(a) - float(b)) < 1e-9
    except ValueError:
        return a == b


def asks_how_many(question):
    text = question.rsplit("?", 1)[0]
    last = re.split(r"[.!?\n]\s", text)[-1].lower()
    return "how many" in last


def questions():
    path = os.environ.get("GSM8K_FILE") or os.path.expanduser(
        "~/.cache/optillm/datasets/gsm8k-test.olmo.jsonl.gz")
    out = {}
    with gzip.open(path, "rt") as f:
        for line in f:
            d = json.loads(line)
            out[str(d["doc_id"])] = d["doc"]["question"]
    return out


def main():
    args = sys.argv[1:]
    out_path = None
    if "--candidates" in args:
        i = args.index("--candidates")
        out_path = args[i + 1]
        del args[i:i + 2]
    if not args:
        sys.exit(__doc__)
    directory = args[0]
    approach = args[1] if len(args) > 1 else "auto"
    records = []
    with open(os.path.join(directory, "results.jsonl")) as f:
        for line in f:
            r = json.loads(line)
            if r["approach"] == approach:
                records.append(r)
    qs = questions()

    patterns = collections.Counter()
    right = collections.Counter()
    oracle = collections.Counter()
    tie_any = tie_how_many = 0
    candidates = []
    for r in records:
        vote = parse_vote(r.get("vote"))
        answers = [a for a, _ in vote]
        key = ",".join(str(c) for _, c in vote) or "none"
        patterns[key] += 1
        right[key] += r["correct"]
        in_vote = any(same(a, r["gold"]) for a in answers)
        oracle[key] += in_vote
        # Tie-breaks among the leaders: whole non-negative numbers first.
        pick_any = pick_how_many = r["correct"]
        if vote:
            top = max(c for _, c in vote)
            leaders = [a for a, c in vote if c == top]
            plausible = [a for a in leaders if whole_non_negative(a)] or leaders
            if plausible[0] != leaders[0]:
                pick_any = same(plausible[0], r["gold"])
                if asks_how_many(qs.get(r["item"], "")):
                    pick_how_many = pick_any
        tie_any += pick_any
        tie_how_many += pick_how_many
        if len(vote) >= 2 and in_vote and len(answers) <= 5:
            gold = next(i for i, a in enumerate(answers) if same(a, r["gold"]))
            candidates.append({"id": r["item"], "question": qs[r["item"]],
                               "options": answers, "answer": "ABCDE"[gold]})

    n = len(records)
    print(f"{directory} `{approach}`: {n} questions, {sum(right.values())} right")
    print("vote pattern\tquestions\tright\tgold among the answers")
    for key in sorted(patterns, key=lambda k: -patterns[k]):
        print(f"{key}\t{patterns[key]}\t{right[key]}\t{oracle[key]}")
    print(f"tie-break to whole non-negative numbers: {tie_any} right "
          f"(\"how many\" questions only: {tie_how_many})")
    if out_path:
        with open(out_path, "w") as f:
            for c in candidates:
                f.write(json.dumps(c) + "\n")
        print(f"{len(candidates)} questions with the gold answer among disagreeing answers "
              f"written to {out_path}")


if __name__ == "__main__":
    main()
