//! Property tests of the approach-spec parser, which reads client input in every
//! request: no panic on any text, errors that point inside the input and show it,
//! `Display` that parses back to the same spec, and work bounded by the length caps.
//! (The model-name splitter's are the server's `prop_names`.)
#![allow(clippy::unwrap_used, clippy::expect_used, clippy::panic)]

use std::time::{Duration, Instant};

use optillm_core::spec::{self, MAX_DEPTH, MAX_SPEC_CHARS, Spec, SpecError};
use proptest::prelude::*;

const SLUGS: &[&str] = &[
    "none",
    "re2",
    "moa",
    "bon",
    "self_consistency",
    "cot_reflection",
    "mcts",
];

/// Checks one parse result against the input; returns the spec when it parsed.
fn check(input: &str) -> Option<Spec> {
    match spec::parse(input) {
        Ok(spec) => {
            let shown = spec.to_string();
            let again = spec::parse(&shown)
                .unwrap_or_else(|e| panic!("{input:?} parsed, its display {shown:?} not: {e}"));
            assert_eq!(again, spec, "{input:?} -> {shown:?}");
            // The display is canonical: showing the re-parsed spec gives the same text.
            assert_eq!(again.to_string(), shown, "{input:?}");
            Some(spec)
        }
        Err(SpecError::BadSpec { position, message }) => {
            let chars = input.chars().count();
            if chars > MAX_SPEC_CHARS {
                assert_eq!(position, MAX_SPEC_CHARS, "{input:?}: {message}");
            } else {
                assert!(
                    position <= chars,
                    "{input:?}: position {position} > {chars}"
                );
                // The message shows the spec, with a caret line under it.
                assert!(message.contains(input), "{input:?}: {message}");
                let caret = message.lines().last().unwrap_or_default();
                assert_eq!(
                    caret.find('^'),
                    Some(2 + position),
                    "{input:?}: caret not at {position}: {message}"
                );
            }
            None
        }
        Err(other) => panic!("{input:?}: not a BadSpec error: {other:?}"),
    }
}

// ---------------------------------------------------------------------------
// Generators

fn key() -> impl Strategy<Value = String> {
    "[a-z_][a-z0-9_]{0,6}"
}

/// A parameter value as spec text: numbers, booleans, bare and quoted strings, lists.
fn value() -> impl Strategy<Value = String> {
    let leaf = prop_oneof![
        any::<i64>().prop_map(|i| i.to_string()),
        (-1e12..1e12f64).prop_map(|f| f.to_string()),
        prop_oneof![Just(f64::MIN_POSITIVE), Just(f64::MAX), Just(-0.0)]
            .prop_map(|f| f.to_string()),
        (0u32..1000, 0u32..1000).prop_map(|(a, b)| format!("{a}.{b}")),
        prop_oneof![Just("1e3"), Just("-2.5e-3"), Just("+7"), Just(".5")].prop_map(String::from),
        prop_oneof![Just("true"), Just("false")].prop_map(String::from),
        "[a-zA-Z][a-zA-Z0-9_./:+-]{0,8}",
        "\\PC{0,8}".prop_map(|s| format!("\"{}\"", s.replace('\\', "\\\\").replace('"', "\\\""))),
        "[^'\\\\]{0,8}".prop_map(|s| format!("'{s}'")),
    ];
    leaf.prop_recursive(3, 12, 4, |inner| {
        prop::collection::vec(inner, 0..4).prop_map(|items| format!("[{}]", items.join(",")))
    })
}

fn ws() -> impl Strategy<Value = &'static str> {
    prop_oneof![4 => Just(""), 1 => Just(" "), 1 => Just("\t"), 1 => Just(" \n ")]
}

/// One stage: a known slug, maybe with parameters (distinct keys).
fn stage() -> impl Strategy<Value = String> {
    (
        prop::sample::select(SLUGS),
        prop::option::of(prop::collection::btree_map(key(), value(), 0..4)),
        ws(),
    )
        .prop_map(|(slug, params, w)| match params {
            None => slug.to_string(),
            Some(params) => {
                let list: Vec<String> = params
                    .into_iter()
                    .map(|(k, v)| format!("{w}{k}{w}={w}{v}{w}"))
                    .collect();
                format!("{slug}{w}({})", list.join(","))
            }
        })
}

/// A valid spec: stages joined by `&` and `|`, groups in parentheses, random spacing.
fn valid_spec() -> impl Strategy<Value = String> {
    stage().prop_recursive(4, 24, 4, |inner| {
        prop_oneof![
            (prop::collection::vec(inner.clone(), 2..4), ws())
                .prop_map(|(items, w)| items.join(&format!("{w}&{w}"))),
            (prop::collection::vec(inner.clone(), 2..4), ws())
                .prop_map(|(items, w)| items.join(&format!("{w}|{w}"))),
            (inner, ws()).prop_map(|(s, w)| format!("({w}{s}{w})")),
        ]
    })
}

/// A near-valid spec: a valid one with a few edits of the significant characters,
/// unknown slugs or truncation.
fn near_valid_spec() -> impl Strategy<Value = String> {
    let edit = (
        any::<prop::sample::Index>(),
        prop_oneof![
            Just(None),
            prop::sample::select(
                &[
                    '(',
                    ')',
                    '&',
                    '|',
                    '[',
                    ']',
                    ',',
                    '=',
                    '"',
                    '\'',
                    '\\',
                    ' ',
                    '-',
                    'x',
                    '1',
                    'é',
                    '\u{1F600}',
                    '\0',
                ][..]
            )
            .prop_map(Some),
        ],
        any::<bool>(),
    );
    (valid_spec(), prop::collection::vec(edit, 1..4)).prop_map(|(spec, edits)| {
        let mut chars: Vec<char> = spec.chars().collect();
        for (at, c, replace) in edits {
            let i = at.index(chars.len() + 1);
            match c {
                // Delete a char (or truncate at the end).
                None if i < chars.len() => {
                    chars.remove(i);
                }
                None => chars.truncate(i / 2),
                Some(c) if replace && i < chars.len() => chars[i] = c,
                Some(c) => chars.insert(i, c),
            }
        }
        chars.into_iter().collect()
    })
}

/// Any text made of the characters that matter to the parser.
fn spec_soup() -> impl Strategy<Value = String> {
    "[()&|\\[\\],='\"\\\\ a-z0-9_.-]{0,60}"
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
    fn any_text_parses_or_fails_at_a_position_inside_it(input in "\\PC{0,80}") {
        check(&input);
    }

    #[test]
    fn any_unicode_including_controls_never_panics(input in ".{0,40}") {
        check(&input);
    }

    #[test]
    fn spec_soup_parses_or_fails_at_a_position_inside_it(input in spec_soup()) {
        check(&input);
    }

    #[test]
    fn valid_specs_parse_and_round_trip(input in valid_spec()) {
        // Generated specs stay far below the caps: every one must parse.
        prop_assume!(input.chars().count() <= MAX_SPEC_CHARS);
        let parsed = check(&input);
        prop_assert!(parsed.is_some(), "{input:?}: {:?}", spec::parse(&input));
    }

    #[test]
    fn near_valid_specs_parse_or_fail_at_a_position_inside_them(input in near_valid_spec()) {
        check(&input);
    }
}

#[test]
fn over_long_specs_fail_at_the_length_cap() {
    for input in [
        "n".repeat(MAX_SPEC_CHARS + 1),
        "é".repeat(MAX_SPEC_CHARS + 1),
        "none&".repeat(1000),
        "\u{1F600}".repeat(5000),
    ] {
        let Err(SpecError::BadSpec { position, message }) = spec::parse(&input) else {
            panic!("{} chars accepted", input.chars().count());
        };
        assert_eq!(position, MAX_SPEC_CHARS);
        assert!(message.contains("longer than"), "{message}");
    }
    // Exactly at the cap is parsed (and here refused for what it says, not its length).
    let at_cap = format!("none(s=\"{}\")", "x".repeat(MAX_SPEC_CHARS - 10));
    assert_eq!(at_cap.chars().count(), MAX_SPEC_CHARS);
    assert!(spec::parse(&at_cap).is_ok());
}

#[test]
fn nesting_is_refused_past_the_depth_cap_at_the_opening_that_exceeds_it() {
    for depth in 1..=MAX_DEPTH + 3 {
        let groups = format!("{}none{}", "(".repeat(depth), ")".repeat(depth));
        let lists = format!("none(a={}1{})", "[".repeat(depth), "]".repeat(depth));
        for (input, first_open) in [(groups, 0), (lists, 7)] {
            match spec::parse(&input) {
                Ok(_) => assert!(depth <= MAX_DEPTH, "{input}"),
                Err(SpecError::BadSpec { position, message }) => {
                    assert!(depth > MAX_DEPTH, "{input}: {message}");
                    assert_eq!(position, first_open + MAX_DEPTH, "{message}");
                    assert!(message.contains("nested"), "{message}");
                }
                Err(e) => panic!("{e:?}"),
            }
        }
    }
}

/// Worst cases for the parser's work at the length cap. Each should take microseconds;
/// the generous bound guards the complexity class (linear in the input), not the speed.
#[test]
fn parsing_at_the_length_cap_is_fast() {
    let n = MAX_SPEC_CHARS;
    let inputs = [
        "(".repeat(n),
        "[".repeat(n),
        format!("none(a={}", "[".repeat(n - 7)),
        format!("none(a=\"{}", "\\".repeat(n - 8)),
        format!("none(a={}", "x-".repeat((n - 7) / 2)),
        "none&".repeat(n / 5),
        "none|".repeat(n / 5),
        format!("{}none", "none&(".repeat((n - 4) / 6)),
        "self_consistency(k=1)&".repeat(n / 22),
        " ".repeat(n),
        "é".repeat(n),
    ];
    let start = Instant::now();
    for _ in 0..20 {
        for input in &inputs {
            check(input);
        }
    }
    let took = start.elapsed();
    assert!(
        took < Duration::from_secs(2),
        "{took:?} for 20 x {} specs",
        inputs.len()
    );
}
