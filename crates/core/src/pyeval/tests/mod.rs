use std::time::{Duration, Instant};

use super::interp::catchable;
use super::*;

mod cases;
use cases::{
    BIT_CASES, BUILTIN_CASES, CLOSURE_PROGRAM, COLLECTIONS_MORE_PROGRAM, COLLECTIONS_PROGRAM,
    FORMAT_CASES, KEY_AND_LAMBDA_CASES, LAMBDA_PROGRAM, SET_AND_DICT_CASES, SET_PROGRAM,
    STRING_CASES, STRING_PROGRAM, TRY_PROGRAM,
};

fn run(src: &str) -> Result<Number, PyError> {
    run_program(src, &Limits::default())
        .map(|r| r.value)
        .map_err(|f| f.error)
}

fn value(src: &str) -> String {
    match run(src) {
        Ok(n) => n.text(),
        Err(e) => format!("error: {e}"),
    }
}

/// Runs `src`, which must fail fast.
fn fails(src: &str) -> PyError {
    let t = Instant::now();
    let out = run(src);
    assert!(
        t.elapsed() < Duration::from_secs(5),
        "took {:?}",
        t.elapsed()
    );
    match out {
        Ok(n) => panic!("expected an error, got {n:?}"),
        Err(e) => e,
    }
}

#[test]
fn gsm8k_style_programs() {
    let src = "def solution():\n    clips_april = 48\n    clips_may = clips_april / 2\n    total = clips_april + clips_may\n    return total\n";
    assert_eq!(run(src), Ok(Number::Float(72.0)));
    assert_eq!(value(src), "72");
    let src = r#"
import math

def solution():
    """Janet's ducks."""
    eggs_per_day = 16
    eaten = 3  # breakfast
    baked = 4
    price: float = 2.0
    remaining = eggs_per_day - eaten - baked
    money = remaining * price
    return money

print(solution())
"#;
    assert_eq!(value(src), "18");
    let src = "def solution() -> int:\n    total = 0\n    for i in range(1, 11):\n        if i % 2 == 0:\n            total += i\n        elif i == 5:\n            total -= 1\n        else:\n            continue\n    return total\n";
    assert_eq!(value(src), "29");
}

#[test]
fn python_arithmetic_semantics() {
    let cases = [
        ("7 // 2", "3"),
        ("-7 // 2", "-4"),
        ("7 // -2", "-4"),
        ("-7 % 3", "2"),
        ("7 % -3", "-2"),
        ("7.5 // 2", "3"),
        ("-7.5 % 2", "0.5"),
        ("2 ** 10", "1024"),
        ("2 ** -1", "0.5"),
        ("-2 ** 2", "-4"),
        ("2 ** 3 ** 2", "512"),
        ("10 / 4", "2.5"),
        ("0.1 + 0.2", "0.3"),
        ("round(2.5)", "2"),
        ("round(3.5)", "4"),
        ("round(1234, -2)", "1200"),
        ("int(-3.9)", "-3"),
        ("abs(-4) + abs(-0.5)", "4.5"),
        ("max(3, 9, 4) - min([5, 2, 8])", "7"),
        ("sum([1, 2, 3]) + len([0] * 4)", "10"),
        ("sum(x * 2 for x in range(4))", "12"),
        ("sum([x for x in range(10) if x % 3 == 0])", "18"),
        ("math.ceil(7 / 2) + math.floor(2.5)", "6"),
        ("math.sqrt(16)", "4"),
        (
            "1 < 2 < 3",
            "error: no numeric result: the result is a bool",
        ),
        ("(1 if 2 > 3 else 5) + (not 0)", "6"),
        ("0 or 7", "7"),
        ("3 and 0", "0"),
        ("divmod(17, 5)[1]", "2"),
        ("[10, 20, 30][-1]", "30"),
        ("[10, 20, 30, 40][1:3][0]", "20"),
        ("len('héllo')", "5"),
        ("float('12.5') * 2", "25"),
        ("int('42')", "42"),
        ("1_000 * 3", "3000"),
        ("1e3 / 8", "125"),
        ("0x10", "16"),
        ("{'a': 2, 'b': 5}['b']", "5"),
        ("sum({'a': 2, 'b': 5}.values())", "7"),
        ("f'{2 / 3:.2f}'", "0.67"),
        ("f'{1234567.891:,.2f}'", "1234567.89"),
        ("round(2.675, 2)", "2.67"),
    ];
    for (expr, want) in cases {
        let src = format!("def solution():\n    return {expr}\n");
        assert_eq!(value(&src), want, "{expr}");
    }
    // Strings holding a number are numbers; "$1,234.50" is read as 1234.5.
    assert_eq!(value("def solution():\n    return '$1,234.50'\n"), "1234.5");
}

#[test]
fn statements_and_functions() {
    let src = r#"
def price(n, each=3):
    return n * each

def solution():
    items = []
    for i in range(3):
        items.append(price(i + 1))
    items.append(price(2, each=10))
    a, b = 2, 3
    a, b = b, a
    counts = {"x": 1}
    counts["x"] += 4
    counts["y"] = a
    total = 0
    n = 0
    while True:
        n += 1
        if n > 100:
            break
    for i, v in enumerate(items):
        total += v * (i == 0)
    xs = [5, 3, 9]
    xs.sort()
    xs[0] = 100
    ys = xs
    ys.append(1)
    assert len(xs) == 3
    return total + sum(items) + counts["x"] + counts["y"] + n + xs[0] + len(ys)
"#;
    // 3 + (3+6+9+20) + 5 + 3 + 101 + 100 + 4
    assert_eq!(value(src), "254");
    // Recursion within the bound.
    let src = "def f(n):\n    return 1 if n <= 1 else n * f(n - 1)\n\ndef solution():\n    return f(10)\n";
    assert_eq!(value(src), "3628800");
    // No solution(): the last printed number, else `answer`.
    assert_eq!(value("x = 4\nprint('Total:', x * 3)\n"), "12");
    assert_eq!(value("answer = 7 * 6\n"), "42");
    // solution() that prints instead of returning.
    assert_eq!(
        value("def solution():\n    t = 5 * 5\n    print(f'The answer is {t}')\nsolution()\n"),
        "25"
    );
    // One-line blocks and semicolons.
    assert_eq!(value("def solution(): x = 2; return x * 21\n"), "42");
}

#[test]
fn typed_errors_for_the_unsupported() {
    type Check = fn(&PyError) -> bool;
    let cases: [(&str, Check); 11] = [
        ("import os\ndef solution():\n    return 1\n", |e| {
            matches!(e, PyError::Unsupported(_))
        }),
        ("def solution():\n    return open('x').read()\n", |e| {
            matches!(e, PyError::Unsupported(_))
        }),
        ("def solution():\n    return __import__('os')\n", |e| {
            matches!(e, PyError::Unsupported(_))
        }),
        ("def solution():\n    return eval('1')\n", |e| {
            matches!(e, PyError::Unsupported(_))
        }),
        ("def solution():\n    x = 1\n    return x.real\n", |e| {
            matches!(e, PyError::Unsupported(_))
        }),
        ("def solution():\n    return math.system\n", |e| {
            matches!(e, PyError::Unsupported(_))
        }),
        ("class A:\n    pass\n", |e| {
            matches!(e, PyError::Unsupported(_))
        }),
        (
            "def solution():\n    with open('x') as f:\n        return 1\n",
            |e| matches!(e, PyError::Unsupported(_)),
        ),
        ("def solution():\n    return y\n", |e| {
            matches!(e, PyError::Name(_))
        }),
        ("def solution():\n    return 1 / 0\n", |e| {
            matches!(e, PyError::ZeroDivision)
        }),
        ("def solution():\n    return 'a' + 1\n", |e| {
            matches!(e, PyError::Type(_))
        }),
    ];
    for (src, ok) in cases {
        let e = fails(src);
        assert!(ok(&e), "{src}: {e:?}");
    }
    for src in [
        "def solution(:\n    return 1\n",
        "def solution():\nreturn 1\n",
        "def solution():\n    return 'abc\n",
        "def solution():\n    return (1 + 2\n",
        "x = = 2\n",
        "def solution():\n  if 1:\n      x = 1\n    return x\n",
    ] {
        assert!(matches!(fails(src), PyError::Syntax(_)), "{src}");
    }
    // The failing line is reported.
    let f = run_program("x = 1\ny = 2\nz = x / (y - 2)\n", &Limits::default()).unwrap_err();
    assert_eq!((f.line, f.error), (3, PyError::ZeroDivision));
}

#[test]
fn hostile_programs_fail_fast_with_typed_errors() {
    assert!(matches!(
        fails("while True:\n    pass\n"),
        PyError::Steps(_)
    ));
    assert!(matches!(
        fails("def solution():\n    i = 0\n    while i >= 0:\n        i += 1\n    return i\n"),
        PyError::Steps(_)
    ));
    assert!(matches!(
        fails("def solution():\n    for i in range(10**30):\n        pass\n"),
        PyError::Steps(_)
    ));
    assert!(matches!(
        fails("def solution():\n    return 10**10**10\n"),
        PyError::Overflow
    ));
    assert!(matches!(
        fails("def solution():\n    return 2**200\n"),
        PyError::Overflow
    ));
    assert!(matches!(
        fails("def solution():\n    return 10.0**400\n"),
        PyError::Overflow
    ));
    assert!(matches!(
        fails("def solution():\n    return math.factorial(10**9)\n"),
        PyError::Overflow | PyError::Steps(_)
    ));
    assert!(matches!(
        fails(
            "def solution():\n    x = 170141183460469231731687303715884105727\n    return x + 1\n"
        ),
        PyError::Overflow
    ));
    assert!(matches!(
        fails("def solution():\n    return [0] * 10**12\n"),
        PyError::Memory(_)
    ));
    assert!(matches!(
        fails("def solution():\n    return 'ab' * 10**9\n"),
        PyError::Memory(_)
    ));
    assert!(matches!(
        fails("def solution():\n    return list(range(10**9))\n"),
        PyError::Memory(_)
    ));
    assert!(matches!(
        fails("def solution():\n    return sum(range(10**9))\n"),
        PyError::Memory(_)
    ));
    assert!(matches!(
        fails("def solution():\n    xs = []\n    while True:\n        xs.append(1)\n"),
        PyError::Memory(_) | PyError::Steps(_)
    ));
    // Doubling a list: the length bound, not the machine's memory.
    assert!(matches!(
        fails(
            "def solution():\n    xs = [1]\n    for i in range(64):\n        xs = xs + xs\n    return len(xs)\n"
        ),
        PyError::Memory(_)
    ));
    // Many large lists: the allocation bound over the run.
    assert!(matches!(
        fails(
            "def solution():\n    keep = []\n    for i in range(5000):\n        keep.append([0] * 9000)\n    return 1\n"
        ),
        PyError::Memory(_) | PyError::Steps(_)
    ));
    // Nesting values inside values.
    assert!(matches!(
        fails(
            "def solution():\n    x = []\n    for i in range(1000):\n        x = [x]\n    return 1\n"
        ),
        PyError::Memory(_)
    ));
    assert!(matches!(
        fails(
            "def solution():\n    x = []\n    for i in range(1000):\n        x.append(x)\n    return 1\n"
        ),
        PyError::Memory(_)
    ));
    // Unbounded and mutual recursion.
    assert!(matches!(
        fails("def f(n):\n    return f(n + 1)\n\ndef solution():\n    return f(0)\n"),
        PyError::Recursion(_)
    ));
    assert!(matches!(
        fails("def a(n):\n    return b(n)\ndef b(n):\n    return a(n)\nsolution = 1\na(1)\n"),
        PyError::Recursion(_)
    ));
    // Exponential recursion: the step bound.
    assert!(matches!(
        fails(
            "def f(n):\n    return 1 if n < 2 else f(n-1) + f(n-2)\ndef solution():\n    return f(30)\n"
        ),
        PyError::Steps(_)
    ));
    // Deep nesting in the source: brackets, prefix operators, blocks.
    let parens = format!("x = {}1{}\n", "(".repeat(5000), ")".repeat(5000));
    assert!(matches!(fails(&parens), PyError::TooDeep(_)));
    let lists = format!("x = {}{}\n", "[".repeat(5000), "]".repeat(5000));
    assert!(matches!(fails(&lists), PyError::TooDeep(_)));
    let negs = format!("x = {}1\n", "-".repeat(19_000));
    assert!(matches!(fails(&negs), PyError::TooDeep(_)));
    let nots = format!("x = {}1\n", "not ".repeat(4000));
    assert!(matches!(fails(&nots), PyError::TooDeep(_)));
    let pows = format!("x = 1{}\n", " ** 1".repeat(3000));
    assert!(matches!(fails(&pows), PyError::TooDeep(_)));
    let calls = format!("x = abs{}\n", "(1)".repeat(3000));
    assert!(matches!(fails(&calls), PyError::TooDeep(_)));
    let ifs: String = (0..60)
        .map(|i| format!("{}if True:\n", " ".repeat(i)))
        .collect::<String>()
        + &" ".repeat(60)
        + "x = 1\n";
    assert!(matches!(fails(&ifs), PyError::TooDeep(_)));
    let elifs = format!(
        "x = 0\nif x == 1:\n    pass\n{}",
        "elif x == 1:\n    pass\n".repeat(500)
    );
    assert!(matches!(fails(&elifs), PyError::TooDeep(_)));
    let fstr = format!("x = f'{{{}1{}}}'\n", "(".repeat(300), ")".repeat(300));
    assert!(matches!(fails(&fstr), PyError::TooDeep(_)));
    // Long but flat chains are fine: they are loops, not recursion.
    let sum = format!("def solution():\n    return 0{}\n", " + 1".repeat(4000));
    assert_eq!(value(&sum), "4000");
    let and = format!("def solution():\n    return 1{}\n", " and 1".repeat(3000));
    assert_eq!(value(&and), "1");
    // Too long a source.
    let long = format!("x = 1\n{}", "# padding\n".repeat(3000));
    assert!(matches!(fails(&long), PyError::SourceTooLong(_)));
    // Odd input never panics.
    for src in [
        "",
        "\n\n",
        "def",
        "def solution",
        "(((",
        ")))",
        "'''",
        "f'{'",
        "f'{}'",
        "x[",
        "1 +",
        "\\",
        "é = 1\nsolution = é",
        "\u{0}",
        "if",
        "for x in",
        "return",
        "x = [i for i in]",
        "a, = 1,",
        "def solution():\n    return\n",
    ] {
        let _ = run(src);
    }
}

#[test]
fn numbers_as_answers() {
    assert_eq!(Number::Int(-3).text(), "-3");
    assert_eq!(Number::Float(12.000000000000002).text(), "12");
    assert_eq!(Number::Float(2.5).text(), "2.5");
    assert_eq!(Number::Float(1.0 / 3.0).text(), "0.3333333333");
    assert_eq!(Number::Float(-0.0).text(), "0");
}

/// What `print([expr])` prints, else the error.
fn shown(expr: &str) -> String {
    let out = run_script(&format!("print([{expr}])\n"), &Limits::default());
    match out.failure {
        None => out.printed.join("\n"),
        Some(f) => format!("error: {}", f.error),
    }
}

fn check_cases(cases: &[(&str, &str)]) {
    for (expr, want) in cases {
        assert_eq!(shown(expr), *want, "{expr}");
    }
}

/// Runs a program that must print what Python prints for it.
fn check_program((src, want): (&str, &str)) {
    let out = run_script(src, &Limits::default());
    assert_eq!(out.failure, None, "{src}");
    assert_eq!(out.printed.join("\n") + "\n", want);
}

/// Runs a script, which must fail fast; its error.
fn script_error(src: &str) -> PyError {
    let t = Instant::now();
    let out = run_script(src, &Limits::default());
    assert!(
        t.elapsed() < Duration::from_secs(5),
        "took {:?}",
        t.elapsed()
    );
    match out.failure {
        Some(f) => f.error,
        None => panic!(
            "expected an error from {src:?}, it printed {:?}",
            out.printed
        ),
    }
}

/// What a script prints, which must not fail.
fn script_prints(src: &str) -> String {
    let out = run_script(src, &Limits::default());
    assert_eq!(out.failure, None, "{src}");
    out.printed.join("\n")
}

#[test]
fn typing_imports_are_accepted_and_ignored() {
    let src = "from typing import List, Tuple, Optional, Any, Dict, Union
import typing
from typing import (
    Callable,
    Set,
)
import math, typing
from typing import *
from typing import List as L

def f(xs: List[int], d: Optional[Dict[str, Tuple[int, ...]]] = None) -> Union[int, typing.Any]:
    total: int = sum(xs)
    return total

print(f([1, 2, 3]))
";
    assert_eq!(script_prints(src), "6");
    for src in [
        "import os\n",
        "from collections import namedtuple\n",
        "import typing, os\n",
        "import numpy as np\n",
        "from os import path\n",
    ] {
        assert!(
            matches!(script_error(src), PyError::Unsupported(_)),
            "{src}"
        );
    }
}

#[test]
fn string_methods_are_pythons() {
    check_cases(STRING_CASES);
    check_program(STRING_PROGRAM);
}

#[test]
fn format_specs_and_float_reprs_are_pythons() {
    check_cases(FORMAT_CASES);
    // Corners a differential run against Python found.
    check_cases(&[
        (r#"format(255, '0=05,')"#, r#"['0,255']"#),
        (r#"format(1, '04,')"#, r#"['0,001']"#),
        (r#"format(-42, '0=#10_x')"#, r#"['-0x00_002a']"#),
        (r#"format(-0.5, ' 010,.2F')"#, r#"['-00,000.50']"#),
        (r#"format(-1234.5, '0=10,.0g')"#, r#"['-0,001e+03']"#),
        (r#"format(2.5, '#.0g')"#, r#"['2.']"#),
        (r#"format(7, '0^#010,.0g')"#, r#"['00007.0000']"#),
        (r#"format(1e-7, '#')"#, r#"['1.e-07']"#),
        (r#"format(0.0, '<#012.10n')"#, r#"['0.0000000000']"#),
        (r#"format(99.995, '*>+#12n')"#, r#"['****+99.9950']"#),
        (r#"format(1234567, 'n')"#, r#"['1234567']"#),
        (r#"format(3.5, '.0n')"#, r#"['4']"#),
        (r#"range(10)[::-1]"#, r#"[range(9, -1, -1)]"#),
        (r#"range(5, 50, 7)[::-2]"#, r#"[range(47, -2, -14)]"#),
        (r#"list(range(5, 50, 7)[::-2])"#, r#"[[47, 33, 19, 5]]"#),
        (r#"range(10)[-5::2]"#, r#"[range(5, 10, 2)]"#),
        (r#"range(3)[:]"#, r#"[range(0, 3)]"#),
    ]);
    for (src, ok) in [
        ("x = format(1234567, ',n')\n", "Value"),
        ("x = format(65, '+c')\n", "Value"),
        ("x = format([1], '>5')\n", "Type"),
        ("x = format('a', '+')\n", "Value"),
        ("x = format(1.5, 'd')\n", "Value"),
        ("x = 'a'.split(None, None)\n", "Type"),
        ("x = 'a'.replace('a', 'b', None)\n", "Type"),
    ] {
        let e = script_error(src);
        assert!(format!("{e:?}").starts_with(ok), "{src}: {e:?}");
    }
}

#[test]
fn new_builtins_and_operators_are_pythons() {
    check_cases(BUILTIN_CASES);
    check_cases(BIT_CASES);
    // Python 3's results.
    assert_eq!(
        shown(
            "(pow(3, 200, 13), pow(2, 10, 1000), pow(3, 2, -5), pow(3, -1, 7), pow(-2, 3, 5), pow(5, 0, 1), pow(7, 10**20, 2**61-1), pow(0,0,7))"
        ),
        "[(9, 24, -1, 5, 2, 0, 2149250165951207424, 1)]"
    );
    assert!(matches!(
        script_error("x = pow(2, 3, 0)\n"),
        PyError::Value(_)
    ));
    assert!(matches!(
        script_error("x = pow(2, -1, 4)\n"),
        PyError::Value(_)
    ));
    assert!(matches!(
        script_error("x = pow(2, 3, 2**70)\n"),
        PyError::Overflow
    ));
    assert!(matches!(
        script_error("x = pow(2.0, 3, 5)\n"),
        PyError::Type(_)
    ));
    // A program runs as a script.
    assert_eq!(
        script_prints("def main():\n    print('main')\nif __name__ == '__main__':\n    main()\n"),
        "main"
    );
}

#[test]
fn lambdas_keys_and_closures_are_pythons() {
    check_cases(KEY_AND_LAMBDA_CASES);
    check_program(LAMBDA_PROGRAM);
    check_program(CLOSURE_PROGRAM);
    // A function whose maker has returned reads what it captured, may rebind it,
    // but may not change it in place (Python would change the maker's value).
    let made = "def outer():\n    xs = [1]\n    def add(v):\n        BODY\n    return add\nprint(outer()(2))\n";
    let src = made.replace("BODY", "return xs + [v]");
    assert_eq!(script_prints(&src), "[1, 2]");
    let src = made.replace(
        "BODY",
        "xs = xs + [v]\n        xs.append(3)\n        return xs",
    );
    assert_eq!(script_prints(&src), "[1, 2, 3]");
    let src = made.replace("BODY", "xs.append(v)\n        return xs");
    assert!(matches!(script_error(&src), PyError::Unsupported(_)));
    let src = made.replace("BODY", "xs[0] = v\n        return xs");
    assert!(matches!(script_error(&src), PyError::Unsupported(_)));
    // Keyword arguments the functions do not take.
    assert!(matches!(
        script_error("x = sorted([1], cmp=1)\n"),
        PyError::Unsupported(_)
    ));
    assert!(matches!(
        script_error("xs = [2, 1]\nxs.sort(1)\n"),
        PyError::Type(_)
    ));
    assert!(matches!(
        script_error("x = (lambda *a: 1)()\n"),
        PyError::Unsupported(_)
    ));
}

#[test]
fn sets_are_pythons() {
    check_cases(SET_AND_DICT_CASES);
    check_program(SET_PROGRAM);
    // Sets keep their elements sorted: Python's order for small ints, where its
    // own order for strings and tuples changes from run to run.
    assert_eq!(shown("{'b', 'c', 'a'}"), "[{'a', 'b', 'c'}]");
    assert_eq!(shown("list({(1, 2), (0, 5)})"), "[[(0, 5), (1, 2)]]");
    assert_eq!(shown("{'a', 2, None, (1,)}"), "[{None, 2, 'a', (1,)}]");
    assert!(matches!(script_error("x = {[1]}\n"), PyError::Type(_)));
    assert!(matches!(script_error("x = [1] in {1}\n"), PyError::Type(_)));
    assert!(matches!(
        script_error("s = {1}\ns.add({2})\n"),
        PyError::Type(_)
    ));
    assert!(matches!(
        script_error("s = {1}\ns.remove(2)\n"),
        PyError::Index
    ));
    assert!(matches!(
        script_error("s = set()\ns.pop()\n"),
        PyError::Index
    ));
    assert!(matches!(script_error("x = {1} | [2]\n"), PyError::Type(_)));
}

#[test]
fn try_except_catches_what_python_raises() {
    check_program(TRY_PROGRAM);
    // Each error is caught by Python's class for it, not by another class.
    let cases = [
        ("''.split('')", "ValueError"),
        ("'abc'.index('x')", "ValueError"),
        ("int('x')", "ValueError"),
        ("chr(-1)", "ValueError"),
        ("1 << -1", "ValueError"),
        ("','.join([1])", "TypeError"),
        ("ord('ab')", "TypeError"),
        ("1.5 & 1", "TypeError"),
        ("isinstance(1, 5)", "TypeError"),
        ("'a'.center(3, 'ab')", "TypeError"),
        ("'a' + 1", "TypeError"),
        ("[1][5]", "IndexError"),
        ("{'a': 1}['b']", "KeyError"),
        ("1 // 0", "ZeroDivisionError"),
        ("1 % 0.0", "ArithmeticError"),
    ];
    for (expr, class) in cases {
        let src = format!("try:\n    x = {expr}\nexcept {class}:\n    print('caught')\n");
        assert_eq!(script_prints(&src), "caught", "{expr}");
        let other = if class == "TypeError" {
            "ValueError"
        } else {
            "TypeError"
        };
        let src = format!("try:\n    x = {expr}\nexcept {other}:\n    print('caught')\n");
        let e = script_error(&src);
        assert!(catchable(&e), "{expr}: {e:?}");
    }
    // Raised and not caught: typed errors.
    assert_eq!(
        script_error("raise ValueError('bad')\n"),
        PyError::Value("bad".into())
    );
    assert_eq!(script_error("raise KeyError('k')\n"), PyError::Index);
    assert_eq!(
        script_error("raise ZeroDivisionError\n"),
        PyError::ZeroDivision
    );
    assert_eq!(
        script_error("raise RuntimeError('boom')\n"),
        PyError::Raised("RuntimeError".into(), "boom".into())
    );
    assert_eq!(
        script_error("raise NotImplementedError\n"),
        PyError::Raised("NotImplementedError".into(), String::new())
    );
    assert!(matches!(script_error("raise\n"), PyError::Raised(..)));
    // A handler's own error goes on, after `finally`.
    let src = "try:\n    try:\n        1 / 0\n    except ZeroDivisionError:\n        [][1]\n    finally:\n        print('fin')\nexcept IndexError:\n    print('outer')\n";
    assert_eq!(script_prints(src), "fin\nouter");
    for src in [
        "try:\n    pass\n",
        "except:\n    pass\n",
        "finally:\n    pass\n",
        "try:\n    pass\nelse:\n    pass\n",
        "try:\npass\nexcept:\n    pass\n",
    ] {
        assert!(matches!(script_error(src), PyError::Syntax(_)), "{src}");
    }
    for src in [
        "try:\n    pass\nexcept* ValueError:\n    pass\n",
        "try:\n    pass\nexcept a.b:\n    pass\n",
        "raise a.B()\n",
    ] {
        assert!(
            matches!(script_error(src), PyError::Unsupported(_)),
            "{src}"
        );
    }
}

#[test]
fn try_never_catches_a_limit() {
    type Check = fn(&PyError) -> bool;
    let bodies: [(&str, Check); 7] = [
        ("while True:\n        pass", |e| {
            matches!(e, PyError::Steps(_))
        }),
        ("x = [0] * 10**9", |e| matches!(e, PyError::Memory(_))),
        ("x = 2 ** 200", |e| matches!(e, PyError::Overflow)),
        ("x = f(0)", |e| matches!(e, PyError::Recursion(_))),
        ("x = open('x')", |e| matches!(e, PyError::Unsupported(_))),
        ("x = undefined_name", |e| matches!(e, PyError::Name(_))),
        ("x = 'a'.ljust(10**9)", |e| matches!(e, PyError::Memory(_))),
    ];
    for handler in [
        "except Exception:",
        "except:",
        "except (OverflowError, RecursionError, MemoryError, NameError):",
    ] {
        for (body, ok) in bodies {
            let src = format!(
                "def f(n):\n    return f(n + 1)\ntry:\n    {body}\n{handler}\n    print('caught')\nfinally:\n    print('finally')\n"
            );
            let out = run_script(&src, &Limits::default());
            let e = out.failure.map(|f| f.error);
            assert!(e.as_ref().is_some_and(ok), "{src}: {e:?}");
            // Neither the handler nor `finally` ran.
            assert!(out.printed.is_empty(), "{src}");
        }
    }
    // Caught errors in a loop still meet the step limit.
    assert!(matches!(
        script_error(
            "while True:\n    try:\n        1 / 0\n    except ZeroDivisionError:\n        pass\n"
        ),
        PyError::Steps(_)
    ));
    assert!(matches!(
        script_error(
            "while True:\n    try:\n        raise ValueError\n    except:\n        pass\n    finally:\n        pass\n"
        ),
        PyError::Steps(_)
    ));
}

#[test]
fn new_features_stay_bounded() {
    let memory = |src: &str| {
        let e = script_error(src);
        assert!(matches!(e, PyError::Memory(_)), "{src}: {e:?}");
    };
    let memory_or_steps = |src: &str| {
        let e = script_error(src);
        assert!(
            matches!(e, PyError::Memory(_) | PyError::Steps(_)),
            "{src}: {e:?}"
        );
    };
    let steps = |src: &str| {
        let e = script_error(src);
        assert!(matches!(e, PyError::Steps(_)), "{src}: {e:?}");
    };
    // One huge result, refused before it is built.
    memory("x = ','.join(['x' * 1000] * 100)\n");
    memory("x = ('a' * 5000).replace('a', 'aaaa')\n");
    memory("x = ('a' * 5000).replace('', 'bc')\n");
    memory("x = 'a'.ljust(10**9)\n");
    memory("x = 'a'.center(10**30)\n");
    memory("x = '7'.zfill(10**6)\n");
    memory("x = f'{1:>1000000000}'\n");
    memory("x = format(1.5, '.100000f')\n");
    memory("x = '{:>99999999}'.format(1)\n");
    memory("x = set(range(10**9))\n");
    memory("x = {i: i for i in range(10**9)}\n");
    // Many results: the allocation bound over the run.
    memory_or_steps("s = 'a' * 5000\nfor i in range(1000):\n    t = ''.join([s, s])\n");
    memory_or_steps("s = 'a ' * 5000\nfor i in range(1000):\n    t = s.split()\n");
    memory_or_steps("s = 'a,' * 5000\nfor i in range(1000):\n    t = s.split(',')\n");
    memory_or_steps("s = ' a ' * 3000\nfor i in range(1000):\n    t = s.strip().upper().title()\n");
    memory_or_steps("s = set()\ni = 0\nwhile True:\n    s.add(i)\n    i += 1\n");
    memory_or_steps("s = set()\ni = 0\nwhile True:\n    s.add(-i)\n    i += 1\n");
    // Work on long values counts.
    steps("xs = list(range(5000))\nwhile True:\n    ys = sorted(xs, key=lambda v: -v)\n");
    steps("xs = list(range(5000))\nwhile True:\n    xs.sort(key=lambda v: -v)\n");
    steps("while True:\n    x = list(map(lambda v: v, range(100)))\n");
    steps("s = 'ab' * 4000\nwhile True:\n    n = s.count('b') + s.find('x')\n");
    memory_or_steps(
        "a = set(range(5000))\nb = set(range(2500, 7500))\nwhile True:\n    c = a | b\n",
    );
    // Calls and nesting.
    assert!(matches!(
        script_error("f = lambda n: f(n + 1)\nf(0)\n"),
        PyError::Recursion(_)
    ));
    assert!(matches!(
        script_error(
            "def outer():\n    def inner(n):\n        return inner(n + 1)\n    return inner(0)\nouter()\n"
        ),
        PyError::Recursion(_)
    ));
    memory(
        "def f():\n    x = []\n    for i in range(100):\n        g = lambda: x\n        x = [g]\n    return x\nf()\n",
    );
    memory(
        "def f():\n    x = 0\n    for i in range(100):\n        g = lambda y=x: y\n        x = [g]\n    return x\nf()\n",
    );
    memory("s = {1}\nfor i in range(100):\n    s.add(tuple(x for x in s))\n");
    for src in ["x = 1 << 200\n", "x = 1 << 10**30\n", "x = -1 << 128\n"] {
        assert!(matches!(script_error(src), PyError::Overflow), "{src}");
    }
    // Odd input never panics.
    for src in [
        "try:",
        "try:\n    pass\nexcept",
        "try:\n    pass\nexcept ValueError as:\n    pass\n",
        "lambda",
        "f = lambda x",
        "f = lambda: ",
        "x = 1 + lambda: 2",
        "{1,",
        "{1: 2 for",
        "{x for x in}",
        "raise",
        "raise ValueError(",
        "x = '\\x4'",
        "x = '\\u12'",
        "x = '\\U0011ffff'",
        "x = '{'.format(1)",
        "x = '}'.format(1)",
        "x = '{0[1]}'.format([1, 2])",
        "x = '{:%%}'.format(1)",
        "x = format(1, '.')",
        "x = 1 <<",
        "x = ~",
        "s = {1}\ns |= [1]",
        "def f():\n    try:\n        return 1\n    finally:\n        return 2\nprint(f())",
    ] {
        let out = run_script(src, &Limits::default());
        assert!(
            !out.failure
                .is_some_and(|f| matches!(f.error, PyError::Internal(_))),
            "{src}"
        );
    }
}

/// A program and what Python 3 prints running it.
const METHOD_AND_ELSE_PROGRAM: (&str, &str) = (
    r#"counts = {"a": 3, "b": 7, "c": 1}
print(max(counts, key=counts.get), sorted(counts, key=counts.get))
print(list(map(str.strip, [" a ", "b  "])), sorted(["b", "A", "c"], key=str.lower))
print(list(filter(str.isdigit, ["1", "x", "23"])), list(map("-".join, ["ab", "cd"])))
words = ["x", "yy"]
print(list(map(len, words)), sorted(words, key=words.index))
find = "hello".find
print(find("l"), str.upper("abc"), dict.get({1: 2}, 1))
def is_prime(n):
    for k in range(2, n):
        if n % k == 0:
            break
    else:
        return n > 1
    return False
print([n for n in range(12) if is_prime(n)])
i = 0
while i < 3:
    i += 1
else:
    print("while done", i)
while True:
    break
else:
    print("never")
for x in []:
    pass
else:
    print("empty for else")
"#,
    r#"b ['c', 'a', 'b']
['a', 'b'] ['A', 'b', 'c']
['1', '23'] ['a-b', 'c-d']
[1, 2] ['x', 'yy']
2 ABC 2
[2, 3, 5, 7, 11]
while done 3
empty for else
"#,
);

#[test]
fn methods_as_values_and_loop_else_are_pythons() {
    check_program(METHOD_AND_ELSE_PROGRAM);
    for src in [
        "xs = [1]\nf = xs.append\n",
        "f = list.append\n",
        "x = (1).real\n",
    ] {
        assert!(
            matches!(script_error(src), PyError::Unsupported(_)),
            "{src}"
        );
    }
    assert!(matches!(
        script_error("x = str.upper(1)\n"),
        PyError::Type(_)
    ));
}

/// A program and what Python 3 prints running it.
const SLICE_PROGRAM: (&str, &str) = (
    r#"def sort_third(l):
    l = list(l)
    l[::3] = sorted(l[::3])
    return l
print(sort_third([5, 6, 3, 4, 8, 9, 2]))
xs = [0, 1, 2, 3, 4, 5]
xs[1:3] = ["a", "b", "c"]
print(xs)
xs[:] = []
print(xs)
ys = list(range(6))
ys[::-2] = [10, 20, 30]
print(ys)
ys[10:] = [7]
print(ys)
ys[-2:] = "xy"
print(ys)
ys[2:1] = [99]
print(ys)
try:
    ys[::2] = [1]
except ValueError:
    print("sizes differ")
s = "hello world"
print(s[::-1], s[-5:], s[:-6], s[::3], s[100:], s[-100:2], s[3:-3:2])
"#,
    r#"[2, 6, 3, 4, 8, 9, 5]
[0, 'a', 'b', 'c', 3, 4, 5]
[]
[0, 30, 2, 20, 4, 10]
[0, 30, 2, 20, 4, 10, 7]
[0, 30, 2, 20, 4, 'x', 'y']
[0, 30, 99, 2, 20, 4, 'x', 'y']
sizes differ
dlrow olleh world hello hlwl  he l o
"#,
);

#[test]
fn slices_and_slice_assignment_are_pythons() {
    check_program(SLICE_PROGRAM);
    for src in [
        "xs = [0] * 5000\nwhile True:\n    xs[0:1] = [1, 2]\n",
        "xs = []\nxs[:] = range(10**9)\n",
        "xs = [0] * 5000\nwhile True:\n    xs[100:200] = xs[100:200]\n",
    ] {
        let e = script_error(src);
        assert!(
            matches!(e, PyError::Memory(_) | PyError::Steps(_)),
            "{src}: {e:?}"
        );
    }
    assert!(matches!(
        script_error("s = 'abc'\ns[0:1] = 'x'\n"),
        PyError::Type(_)
    ));
    assert!(matches!(
        script_error("xs = [1, 2]\nxs[0:1] += [3]\n"),
        PyError::Unsupported(_)
    ));
    assert!(matches!(
        script_error("xs = [1, 2]\nxs[::0] = []\n"),
        PyError::Value(_)
    ));
    assert_eq!(shown("'abc'[::2**126]"), "['a']");
    assert_eq!(
        shown("'abc'[1::170141183460469231731687303715884105727]"),
        "['b']"
    );
}

#[test]
fn collections_are_pythons() {
    check_program(COLLECTIONS_PROGRAM);
    check_program(COLLECTIONS_MORE_PROGRAM);
    // A missing key of a Counter reads as 0 and is not added; a defaultdict's is added.
    assert_eq!(
        script_prints(
            "from collections import Counter, defaultdict\nc = Counter('aab')\nd = defaultdict(int)\nprint(c['z'], len(c), d['z'], len(d))\n"
        ),
        "0 2 0 1"
    );
    // Equal counts keep the order their keys came in.
    assert_eq!(
        script_prints(
            "from collections import Counter\nprint(Counter('cbbaac').most_common(), Counter('xyz').most_common(1))\n"
        ),
        "[('c', 2), ('b', 2), ('a', 2)] [('x', 1)]"
    );
    // Errors Python raises, as its classes.
    let prelude = "from collections import Counter, defaultdict, deque, OrderedDict\n";
    type Check = fn(&PyError) -> bool;
    let cases: [(&str, Check); 9] = [
        ("q = deque()\nq.popleft()\n", |e| {
            matches!(e, PyError::Index)
        }),
        ("q = deque([1])\nq.pop()\nq.pop()\n", |e| {
            matches!(e, PyError::Index)
        }),
        ("d = {}\nd['k'].append(1)\n", |e| {
            matches!(e, PyError::Index)
        }),
        ("d = defaultdict()\nx = d['k']\n", |e| {
            matches!(e, PyError::Index)
        }),
        ("c = Counter([[1]])\n", |e| matches!(e, PyError::Type(_))),
        ("d = defaultdict(5)\n", |e| matches!(e, PyError::Type(_))),
        ("q = deque([], -1)\n", |e| matches!(e, PyError::Value(_))),
        ("od = OrderedDict()\nod.popitem()\n", |e| {
            matches!(e, PyError::Index)
        }),
        ("xs = [1]\nxs.popleft()\n", |e| {
            matches!(e, PyError::Unsupported(_))
        }),
    ];
    for (src, ok) in cases {
        let src = format!("{prelude}{src}");
        let e = script_error(&src);
        assert!(ok(&e), "{src}: {e:?}");
    }
    // Not imported: not defined.
    assert!(matches!(script_error("c = Counter()\n"), PyError::Name(_)));
    // Bounded as the rest: huge inputs and endless growth are typed errors, fast.
    for src in [
        "c = Counter(range(10**9))\n",
        "c = Counter(range(10**4))\n",
        "c = Counter()\ni = 0\nwhile True:\n    c[i] += 1\n    i += 1\n",
        "n = len(Counter({'a': 10**9}).elements())\n",
        "q = deque(range(10**9))\n",
        "q = deque()\nwhile True:\n    q.append(1)\n",
        "q = deque(maxlen=5)\nwhile True:\n    q.appendleft(1)\n",
        "q = deque(range(5000))\nwhile True:\n    q.rotate(1)\n",
        "d = defaultdict(list)\ni = 0\nwhile True:\n    d[i % 7].append(i)\n    i += 1\n",
        "d = defaultdict(int)\ni = 0\nwhile True:\n    d[i] += 1\n    i += 1\n",
    ] {
        let src = format!("{prelude}{src}");
        let e = script_error(&src);
        assert!(
            matches!(e, PyError::Memory(_) | PyError::Steps(_)),
            "{src}: {e:?}"
        );
    }
    // A factory that reads its own dict recurses as Python's does, to the bound.
    assert!(matches!(
        script_error(&format!(
            "{prelude}d = defaultdict(lambda: d[0])\nx = d[1]\n"
        )),
        PyError::Recursion(_)
    ));
    // A factory's captured values count for the nesting of values.
    assert!(matches!(
        script_error(&format!(
            "{prelude}def f():\n    d = defaultdict(int)\n    for i in range(100):\n        d = defaultdict(lambda: d)\n    return d\nf()\n"
        )),
        PyError::Memory(_)
    ));
}
