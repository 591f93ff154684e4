#!/usr/bin/env python3
"""Why the failed HumanEval programs of an eval directory failed, counted by the exception
of the last error line: from each record's `failure` (written since 2026-12-07), else by
running the program again as crates/bench/src/code.rs builds it (the reply's program, or
the prompt and the body; then the tests and check(entry_point)) with python3 (10 s
timeout) in an empty temporary directory.

    scripts/humaneval-failures.py docs/results/humaneval-qwen2.5-coder-0.5b [APPROACH]

APPROACH defaults to none(temperature=0). Runs model-written code: see code.rs.
"""
import collections
import json
import os
import subprocess
import sys
import tempfile


def program(gold, code):
    g = json.loads(gold)
    define = "def %s(" % g["entry_point"]
    if any(line.lstrip().startswith(define) for line in code.split("\n")):
        imports = [l for l in g["prompt"].split("\n") if l.startswith(("import ", "from "))]
        head = "\n".join(imports) + "\n\n" + code
    else:
        head = g["prompt"] + code
    return head + "\n\n\n" + g["test"].rstrip() + "\n\ncheck(%s)\n" % g["entry_point"]


def failure(source):
    with tempfile.TemporaryDirectory() as tmp:
        path = os.path.join(tmp, "program.py")
        with open(path, "w", encoding="utf-8") as f:
            f.write(source)
        try:
            run = subprocess.run(["python3", "-I", path], capture_output=True, text=True,
                                 timeout=10, cwd=tmp, stdin=subprocess.DEVNULL)
        except subprocess.TimeoutExpired:
            return "timed out"
    lines = [l for l in run.stderr.splitlines() if l.strip()]
    return lines[-1].split(":")[0].strip() if lines else "exit %d" % run.returncode


def main():
    directory = sys.argv[1]
    approach = sys.argv[2] if len(sys.argv) > 2 else "none(temperature=0)"
    counts, example = collections.Counter(), {}
    with open(os.path.join(directory, "results.jsonl"), encoding="utf-8") as f:
        for line in f:
            r = json.loads(line)
            if r["approach"] != approach or r["correct"]:
                continue
            if r.get("failure"):
                why = r["failure"].split(":")[0].strip()
            elif r.get("extracted") is None:
                why = "no program"
            else:
                why = failure(program(r["gold"], r["extracted"]))
            counts[why] += 1
            example.setdefault(why, r["item"])
    for why, n in counts.most_common():
        print(f"{n:4d}  {why}  (e.g. {example[why]})")


if __name__ == "__main__":
    main()
