//! Property tests of answer extraction and voting, which read raw model output: no panic
//! on any UTF-8, an extracted answer made of what the text holds, canonical answers, a
//! consistent vote, and time bounded on long outputs.
#![allow(clippy::unwrap_used, clippy::expect_used, clippy::panic)]

use std::collections::HashSet;
use std::time::{Duration, Instant};

use optillm_core::extract::{
    AnswerKind, answers_equal, extract, extract_any, extract_as, math_answers_equal, normalize,
    normalize_math, vote,
};
use proptest::prelude::*;

const KINDS: [AnswerKind; 6] = [
    AnswerKind::Number,
    AnswerKind::Choice,
    AnswerKind::YesNo,
    AnswerKind::Text,
    AnswerKind::Math,
    AnswerKind::Code,
];

/// Whether an answer extracted from (or normalised from) `text` is made of what the text
/// holds: a number when the text has digits, a letter, yes/no or words it contains.
fn derived_from(answer: &str, text: &str) -> bool {
    if answer.is_empty() {
        return false;
    }
    if answer.parse::<f64>().is_ok() {
        return text.chars().any(|c| c.is_ascii_digit());
    }
    let lower = text.to_lowercase();
    match answer {
        "yes" if lower.contains("yes") || lower.contains("true") => return true,
        "no" if lower.contains("no") || lower.contains("false") => return true,
        _ => {}
    }
    let mut seen: HashSet<char> = text.chars().collect();
    seen.extend(lower.chars());
    seen.extend(text.chars().flat_map(char::to_lowercase));
    seen.extend(text.chars().flat_map(char::to_uppercase));
    answer.chars().filter(|c| c.is_alphanumeric()).all(|c| {
        seen.contains(&c)
            || c.to_lowercase().all(|l| seen.contains(&l))
            || c.to_uppercase().all(|u| seen.contains(&u))
    })
}

/// Runs every extraction on `text` and checks what comes out.
fn check_text(text: &str) {
    for kind in KINDS {
        if let Some(a) = extract(text, kind) {
            assert!(derived_from(&a, text), "{kind:?} {a:?} from {text:?}");
            match kind {
                AnswerKind::Number => assert!(a.parse::<f64>().is_ok(), "{a:?} from {text:?}"),
                AnswerKind::Choice => assert!(
                    matches!(a.as_str(), "A" | "B" | "C" | "D" | "E"),
                    "{a:?} from {text:?}"
                ),
                AnswerKind::YesNo => {
                    assert!(matches!(a.as_str(), "yes" | "no"), "{a:?} from {text:?}")
                }
                AnswerKind::Text => assert!(!a.trim().is_empty(), "{a:?} from {text:?}"),
                AnswerKind::Math => assert!(
                    !a.is_empty() && !a.chars().any(char::is_whitespace),
                    "{a:?} from {text:?}"
                ),
                AnswerKind::Code => assert!(
                    !a.trim().is_empty() && a.lines().all(|l| text.contains(l)),
                    "{a:?} from {text:?}"
                ),
            }
        }
        assert_eq!(extract_as(text, Some(kind)), extract(text, kind));
    }
    let any = extract_any(text);
    if let Some(a) = &any {
        assert!(derived_from(a, text), "any: {a:?} from {text:?}");
    }
    assert_eq!(extract_as(text, None), any);
    let n = normalize(text);
    if !n.is_empty() {
        assert!(derived_from(&n, text), "normalize: {n:?} from {text:?}");
    }
    assert!(answers_equal(text, text));
}

// ---------------------------------------------------------------------------
// Generators

/// Pieces of model output: markers, boxes, numbers in many notations, option letters,
/// yes/no, LaTeX, multi-byte characters and line breaks.
fn fragment() -> impl Strategy<Value = String> {
    prop_oneof![
        prop::sample::select(
            &[
                "The answer is ",
                "answer: ",
                "**Final Answer:** ",
                "the correct option is ",
                "Answer would be",
                "\\boxed{",
                "\\boxed",
                "\\fbox{",
                "}",
                "{",
                "#### ",
                "####",
                "$",
                "\\$",
                "€",
                "£ ",
                "−",
                "-",
                "1,234.50",
                "1,23",
                ",000",
                "\\frac{3}{4}",
                "\\dfrac12",
                "\\frac{-1}{0}",
                "\\frac{",
                "\\text{",
                "\\textbf{B}",
                "\\left(",
                "\\right)",
                "\\sqrt{2}",
                "(B)",
                "(A) ",
                "\nC) ",
                "\nD. ",
                "B",
                "e",
                "Yes",
                "no.",
                "True",
                "FALSE",
                "= ",
                "=",
                ". ",
                "Dr. ",
                "e.g. ",
                "\n",
                "\r\n",
                "\n\n",
                " ",
                "\t",
                "*",
                "**",
                "_",
                "`",
                "\"",
                "/",
                " / ",
                "0",
                "0.0",
                ".5",
                "é",
                "ß",
                "İ",
                "Σ",
                "\u{1F600}",
                "\u{200B}",
                "\u{0301}",
                "日本",
            ][..]
        )
        .prop_map(String::from),
        any::<i64>().prop_map(|i| i.to_string()),
        any::<f64>().prop_map(|f| f.to_string()),
        "[0-9]{1,400}",
        "[0-9]{1,3}(,[0-9]{3}){0,5}(\\.[0-9]{1,4})?",
        "[a-zA-Z ]{1,12}",
        "\\PC{1,6}",
    ]
}

fn model_output() -> impl Strategy<Value = String> {
    prop::collection::vec(fragment(), 0..30).prop_map(|parts| parts.concat())
}

/// Whether every `{` of `s` is closed by a later `}` and every `}` closes one.
fn balanced(s: &str) -> bool {
    let mut depth = 0i64;
    for c in s.chars() {
        match c {
            '{' => depth += 1,
            '}' if depth == 0 => return false,
            '}' => depth -= 1,
            _ => {}
        }
    }
    depth == 0
}

/// Math answers as LaTeX: commands, braces, numbers, units and stray symbols.
fn latex_answer() -> impl Strategy<Value = String> {
    let piece = prop_oneof![
        4 => prop::sample::select(
            &[
                "\\frac", "\\dfrac", "\\sqrt", "\\pi", "\\infty", "\\text{", "\\text{ cm}",
                "\\mbox{ inches}", "\\left(", "\\right)", "\\left[", "\\right]", "^\\circ",
                "^{\\circ}", "\\!", "\\,", "\\ ", "\\\\", "\\%", "\\$", "{", "}", "(", ")", "[",
                "]", "^", "_", "=", "x", "y", "East", "(C)", "1", "2", "43", "0.5", "10,080",
                "-", "+", ",", ".", "/", "$", " ", "%", "°", "\u{2212}", "\\begin{pmatrix}",
                "\\end{bmatrix}", "&",
            ][..],
        )
        .prop_map(String::from),
        1 => "\\PC{0,3}",
    ];
    prop::collection::vec(piece, 0..10).prop_map(|parts| parts.concat())
}

fn config(cases: u32) -> ProptestConfig {
    ProptestConfig {
        cases,
        ..ProptestConfig::default()
    }
}

// ---------------------------------------------------------------------------
// Properties

proptest! {
    #![proptest_config(config(256))]

    #[test]
    fn any_text_extracts_without_panic(text in "\\PC{0,200}") {
        check_text(&text);
    }

    #[test]
    fn any_unicode_including_controls_extracts_without_panic(text in ".{0,100}") {
        check_text(&text);
    }

    #[test]
    fn model_like_output_gives_answers_it_holds(text in model_output()) {
        check_text(&text);
    }

    #[test]
    fn extracted_answers_are_canonical(text in model_output()) {
        // `extract` returns the canonical form, so equal answers compare equal as strings.
        for kind in [AnswerKind::Number, AnswerKind::Choice, AnswerKind::YesNo] {
            if let Some(a) = extract(&text, kind) {
                prop_assert_eq!(normalize(&a), a.clone(), "{:?} of {:?}", kind, text);
            }
        }
    }

    #[test]
    fn math_answers_are_canonical(text in latex_answer()) {
        // Normalised once is normalised: a gold normalised once and an extracted answer
        // normalised twice (by `extract`, then by the comparison) still agree.
        let once = normalize_math(&text);
        prop_assert_eq!(normalize_math(&once), once.clone(), "{:?}", text);
        if !once.is_empty() {
            prop_assert!(math_answers_equal(&text, &once), "{:?}", text);
            // Boxed (when its braces pair up, as they do in a box that closes).
            let boxed = format!("The answer is $\\boxed{{{text}}}$.");
            if let Some(a) = balanced(&text).then(|| extract(&boxed, AnswerKind::Math)).flatten() {
                prop_assert!(math_answers_equal(&a, &text), "{:?} from {:?}", a, text);
            }
        }
    }

    #[test]
    fn math_answers_equal_is_symmetric(a in latex_answer(), b in latex_answer()) {
        prop_assert_eq!(math_answers_equal(&a, &b), math_answers_equal(&b, &a));
    }

    #[test]
    fn answers_equal_is_symmetric(a in model_output(), b in model_output()) {
        prop_assert_eq!(answers_equal(&a, &b), answers_equal(&b, &a));
        prop_assert!(answers_equal(&a, &a));
    }

    #[test]
    fn votes_are_consistent(
        answers in prop::collection::vec(
            prop::option::of(prop_oneof![
                prop::sample::select(&["42", "42.0", "$42", "(b)", "B", "yes", "True", "x", " X. "][..])
                    .prop_map(String::from),
                "\\PC{0,6}",
            ]),
            0..12,
        )
    ) {
        let voters = answers.iter().filter(|a| a.is_some()).count();
        let Some(v) = vote(&answers) else {
            prop_assert_eq!(voters, 0);
            return Ok(());
        };
        prop_assert_eq!(v.voters, voters);
        prop_assert_eq!(v.total, answers.len());
        prop_assert_eq!(v.count, v.members.len());
        prop_assert_eq!(v.distribution.iter().map(|d| d.1).sum::<usize>(), voters);
        prop_assert!(v.distribution.iter().all(|d| d.1 <= v.count));
        prop_assert_eq!(v.distribution.first().map(|d| d.0.clone()), Some(v.winner.clone()));
        for &i in &v.members {
            let a = answers[i].as_deref().unwrap();
            prop_assert_eq!(normalize(a), v.winner.clone());
        }
        prop_assert!(v.share() > 0.0 && v.share() <= 1.0);
        let _ = v.summary();
    }
}

/// Long outputs built to make a careless extractor slow: many markers, boxes and braces,
/// long digit runs, option lines. Each extraction should take milliseconds; the generous
/// bound guards the complexity class (near-linear in the text), not the speed.
#[test]
fn long_outputs_are_extracted_in_bounded_time() {
    const SIZE: usize = 100_000;
    let fill = |unit: &str| unit.repeat(SIZE / unit.len());
    let inputs = [
        fill("answer: x "),
        fill("The answer is "),
        fill("answer is\n"),
        fill("the correct option is "),
        fill("\\boxed{"),
        fill("\\boxed{1}"),
        fill("{"),
        fill("}"),
        fill("####"),
        fill("1"),
        fill("1,000"),
        fill("1/"),
        fill("\\frac{1}{2}"),
        fill("(A) "),
        fill("\n(B) x"),
        fill("yes no "),
        fill("Dr. "),
        fill("= "),
        fill("é"),
        fill("\u{1F600}"),
        fill(" "),
        fill("\n"),
    ];
    let mut slow = Vec::new();
    for text in &inputs {
        let head: String = text.chars().take(16).collect();
        let mut time = |what: &str, f: &dyn Fn()| {
            let start = Instant::now();
            f();
            let took = start.elapsed();
            if took > Duration::from_secs(1) {
                slow.push(format!(
                    "{what} took {took:?} on {} bytes of {head:?}...",
                    text.len()
                ));
            }
        };
        for kind in KINDS {
            time(&format!("extract({kind:?})"), &|| {
                let _ = extract(text, kind);
            });
        }
        time("extract_any", &|| {
            let _ = extract_any(text);
        });
        time("normalize", &|| {
            let _ = normalize(text);
        });
    }
    assert!(slow.is_empty(), "{}", slow.join("\n"));
}

#[test]
fn huge_numbers_and_many_boxes_do_not_panic() {
    for text in [
        format!("The answer is {}", "9".repeat(1000)),
        format!("\\boxed{{{}}}", "9".repeat(400)),
        format!("{}1{}", "\\boxed{".repeat(1000), "}".repeat(1000)),
        format!("#### -{}.{}", "1".repeat(500), "2".repeat(500)),
        format!("1/{}", "0".repeat(400)),
        "\\frac{1}{0}".to_string(),
        "0/0".to_string(),
    ] {
        check_text(&text);
    }
}
