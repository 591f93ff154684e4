//! Property tests of the two evaluators that read model-written text: the Python-subset
//! interpreter (`pyeval`, which runs the programs `pot`, `mixed_vote` and `calculator`
//! get from the model) and the arithmetic evaluator (`arith`, which computes the
//! expressions a chain closes with `=`). Neither may panic or run past its bounds on any
//! text, and both compute what Python computes on what they accept.
#![allow(clippy::unwrap_used, clippy::expect_used, clippy::panic)]

use optillm_core::arith;
use optillm_core::pyeval::{self, Limits, Number, PyError, PyFailure};
use proptest::prelude::*;

fn config(cases: u32) -> ProptestConfig {
    ProptestConfig {
        cases,
        failure_persistence: None,
        ..ProptestConfig::default()
    }
}

/// Pieces of the Python a small model writes, and of what it gets wrong.
const FRAGMENTS: &[&str] = &[
    "def solution():\n",
    "def f(x, y=2):\n",
    "    ",
    "        ",
    "\n",
    "return ",
    "x",
    "y",
    "total",
    " = ",
    " += ",
    "1",
    "0",
    "-3",
    "2.5",
    "1e308",
    "10**",
    "(",
    ")",
    "[",
    "]",
    "{",
    "}",
    ":",
    ",",
    ".",
    " + ",
    " - ",
    " * ",
    " / ",
    " // ",
    " % ",
    " ** ",
    "for i in range(",
    "while ",
    "True",
    "False",
    "None",
    "if ",
    "elif ",
    "else:",
    "print(",
    "'a'",
    "\"b\"",
    "f\"{x:.2f}\"",
    "len(",
    "sum(",
    "min(",
    "max(",
    "round(",
    "int(",
    "abs(",
    "import math\n",
    "from fractions import Fraction\n",
    "math.sqrt(",
    "lambda ",
    "f(",
    ".append(",
    " for ",
    " in ",
    "not ",
    " and ",
    " or ",
    " == ",
    " < ",
    "break",
    "continue",
    "solution()",
    "try:\n",
    "except:\n",
    "class A:\n",
    "# note\n",
    "\\",
    "'''",
    "é",
    "\t",
    "x[0]",
    "*",
    "=",
    "global x\n",
    "del x\n",
];

fn soup() -> impl Strategy<Value = String> {
    prop::collection::vec(prop::sample::select(FRAGMENTS), 0..80).prop_map(|v| v.concat())
}

/// A program whose `solution()` returns `a op b`.
fn program(a: i64, op: &str, b: i64) -> String {
    format!("def solution():\n    a = {a}\n    b = {b}\n    return a {op} b\n")
}

/// Python's integer floor division and modulo (the remainder takes the divisor's sign).
fn floor_div(a: i64, b: i64) -> i64 {
    let q = a / b;
    if (a % b != 0) && ((a < 0) != (b < 0)) {
        q - 1
    } else {
        q
    }
}

fn not_internal(failure: &PyFailure, source: &str) {
    assert!(
        !matches!(failure.error, PyError::Internal(_)),
        "the interpreter failed inside on {source:?}: {failure}"
    );
}

proptest! {
    #![proptest_config(config(256))]

    /// Any text: a result or a typed failure, never a panic (a panic in the interpreter
    /// thread would come back as `Internal`), never more steps than the limit.
    #[test]
    fn python_soup_runs_or_fails_within_its_bounds(source in soup()) {
        let limits = Limits::default();
        match pyeval::run_program(&source, &limits) {
            Ok(result) => prop_assert!(result.steps <= limits.max_steps),
            Err(failure) => not_internal(&failure, &source),
        }
        let script = pyeval::run_script(&source, &limits);
        if let Some(failure) = &script.failure {
            not_internal(failure, &source);
        }
    }

    #[test]
    fn any_unicode_runs_or_fails(source in "\\PC{0,200}") {
        if let Err(failure) = pyeval::run_program(&source, &Limits::default()) {
            not_internal(&failure, &source);
        }
        prop_assert!(arith::evaluate(&source).is_none_or(f64::is_finite));
    }

    /// Integer arithmetic is exact and follows Python (floor division, the modulo's
    /// sign, true division giving a float).
    #[test]
    fn integer_arithmetic_is_pythons(a in -1_000_000i64..1_000_000, b in -1_000_000i64..1_000_000) {
        let run = |op: &str| pyeval::run_program(&program(a, op, b), &Limits::default()).map(|r| r.value);
        prop_assert_eq!(run("+").unwrap(), Number::Int(i128::from(a + b)));
        prop_assert_eq!(run("-").unwrap(), Number::Int(i128::from(a - b)));
        prop_assert_eq!(run("*").unwrap(), Number::Int(i128::from(a) * i128::from(b)));
        if b == 0 {
            for op in ["/", "//", "%"] {
                let failure = run(op).unwrap_err();
                prop_assert!(failure.to_string().contains("division"), "{}: {}", op, failure);
            }
        } else {
            let q = floor_div(a, b);
            prop_assert_eq!(run("//").unwrap(), Number::Int(i128::from(q)));
            prop_assert_eq!(run("%").unwrap(), Number::Int(i128::from(a - b * q)));
            prop_assert_eq!(run("/").unwrap(), Number::Float(a as f64 / b as f64));
        }
    }

    /// What a script prints is what Python prints for integers and their sums.
    #[test]
    fn printed_integers_are_pythons(a in any::<i32>(), b in any::<i32>()) {
        let source = format!("x = {a}\ny = {b}\nprint(x + y)\nprint(x, y)\n");
        let out = pyeval::run_script(&source, &Limits::default());
        prop_assert_eq!(out.failure, None);
        let sum = i64::from(a) + i64::from(b);
        prop_assert_eq!(out.printed, vec![sum.to_string(), format!("{a} {b}")]);
    }

    /// Brackets nest as deep as the limit allows, and deeper ones are refused.
    #[test]
    fn deep_brackets_are_refused_not_followed(n in 0usize..300) {
        let source = format!("def solution():\n    return {}7{}\n", "(".repeat(n), ")".repeat(n));
        let limits = Limits::default();
        match pyeval::run_program(&source, &limits) {
            Ok(result) => {
                prop_assert!(n <= limits.max_nesting);
                prop_assert_eq!(result.value, Number::Int(7));
            }
            Err(failure) => {
                prop_assert!(n > 10, "{} brackets refused: {}", n, failure);
                prop_assert_eq!(failure.error, PyError::TooDeep(limits.max_nesting));
            }
        }
        let expr = format!("{}2 + 3{} =", "(".repeat(n), ")".repeat(n));
        let value = arith::evaluate(expr.trim_end_matches('='));
        if n <= arith::MAX_DEPTH / 2 {
            prop_assert_eq!(value, Some(5.0));
        } else if n > arith::MAX_DEPTH {
            prop_assert_eq!(value, None);
        }
    }

    /// The arithmetic evaluator is exact on integer sums and products, refuses a
    /// division by zero and results past its bound.
    #[test]
    fn arithmetic_is_exact_or_refused(a in -1_000_000i64..1_000_000, b in -1_000_000i64..1_000_000) {
        prop_assert_eq!(arith::evaluate(&format!("{a} + {b}")), Some((a + b) as f64));
        prop_assert_eq!(arith::evaluate(&format!("{a} * {b}")), Some((a * b) as f64));
        prop_assert_eq!(arith::evaluate(&format!("{a} / 0")), None);
        prop_assert_eq!(arith::evaluate(&format!("{a} * 1000000000 * 1000000000")).is_some(), a == 0);
    }
}
