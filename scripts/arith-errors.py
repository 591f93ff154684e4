#!/usr/bin/env python3
"""Arithmetic mistakes in eval records, and paired counts of two approaches.

  arith-errors.py RESULTS.jsonl APPROACH
      For each answer of APPROACH: the equations `expression = number` whose expression
      is plain arithmetic (LaTeX \\times, \\cdot, \\div, \\frac{a}{b} read as such), and how
      many state a wrong result; prints how many answers hold a wrong one and how many
      of those answers are wrong.

  arith-errors.py --pair DIR APPROACH REFERENCE
      Accuracy of APPROACH and REFERENCE on the questions both answered in
      DIR/results.jsonl, with b (only APPROACH right) / c (only REFERENCE right) and the
      exact two-sided McNemar p.
"""

import json
import math
import re
import sys

ALLOWED = set("0123456789.+-*/() ")


def plain(text):
    for a, b in [("\\times", "*"), ("\\cdot", "*"), ("\\div", "/"), ("×", "*"), ("÷", "/"),
                 ("\\left", ""), ("\\right", ""), ("\\$", ""), ("$", "")]:
        text = text.replace(a, b)
    text = re.sub(r"\\[dt]?frac\{([^{}]*)\}\{([^{}]*)\}", r"((\1)/(\2))", text)
    while True:
        new = re.sub(r"(\d),(\d{3})", r"\1\2", text)
        if new == text:
            return text
        text = new


def value(expr):
    """The value of a plain arithmetic expression with an operator, else None."""
    if not re.search(r"\d\s*[-+*/]\s*[\d(]", expr) or not set(expr) <= ALLOWED:
        return None
    try:
        return eval(expr, {"__builtins__": {}}, {})  # only digits, operators, brackets
    except Exception:
        return None


def equations(text):
    """(computed, stated) for every `expression = number` in text."""
    text = plain(text)
    for m in re.finditer(r"=\s*(-?\d+(?:\.\d+)?)", text):
        left = text[: m.start()]
        i = len(left)
        while i > 0 and left[i - 1] in ALLOWED:
            i -= 1
        run = left[i:].strip()
        # A list bullet at the start of a line is not a minus sign.
        if (i == 0 or left[i - 1] == "\n") and run.startswith("- "):
            run = run[2:]
        while run.startswith("(") and run.count("(") > run.count(")"):
            run = run[1:].lstrip()
        if run[:1] in ("+", "-", "*", "/"):
            continue  # an operand that is not a number: the start is unclear
        v = value(run)
        if v is not None:
            yield v, float(m.group(1))


def wrong(computed, stated):
    return abs(computed - stated) > 1e-6 * max(1.0, abs(computed)) and abs(round(computed, 2) - stated) > 1e-9


def records(path):
    with open(path) as f:
        return [json.loads(line) for line in f if line.strip()]


def errors(path, approach):
    answers = [r for r in records(path) if r["approach"] == approach]
    with_error = [r for r in answers if any(wrong(c, s) for c, s in equations(r["output"]))]
    eqs = sum(len(list(equations(r["output"]))) for r in answers)
    bad = sum(sum(wrong(c, s) for c, s in equations(r["output"])) for r in answers)
    print(f"{approach}: {len(answers)} answers, {eqs} equations, {bad} with a wrong result; "
          f"{len(with_error)} answers hold a wrong one, "
          f"{sum(not r['correct'] for r in with_error)} of them are wrong answers")


def mcnemar(b, c):
    n = b + c
    if n == 0:
        return 1.0
    k = min(b, c)
    tail = sum(math.comb(n, i) for i in range(k + 1)) / 2 ** n
    return min(1.0, 2 * tail)


def pair(directory, approach, reference):
    by = {}
    for r in records(f"{directory}/results.jsonl"):
        by.setdefault(r["approach"], {})[r["item"]] = r
    a, ref = by.get(approach, {}), by.get(reference, {})
    both = [i for i in a if i in ref]
    b = sum(a[i]["correct"] and not ref[i]["correct"] for i in both)
    c = sum(ref[i]["correct"] and not a[i]["correct"] for i in both)
    print(f"{len(both)} questions: {approach} {sum(a[i]['correct'] for i in both)} correct, "
          f"{reference} {sum(ref[i]['correct'] for i in both)}; b/c {b}/{c}, "
          f"McNemar exact p = {mcnemar(b, c):.3f}")


if __name__ == "__main__":
    args = sys.argv[1:]
    if len(args) == 4 and args[0] == "--pair":
        pair(*args[1:])
    elif len(args) == 2:
        errors(*args)
    else:
        sys.exit(__doc__)
