//! Property tests of the server's model-name splitter (`approach::split_model`), which
//! reads the `model` field of every request: names over the cap are a 400, a served
//! name is never split, and a split name is the approach prefix, `-`, and the model.
#![allow(clippy::unwrap_used, clippy::expect_used, clippy::panic)]

use std::time::{Duration, Instant};

use axum::http::StatusCode;
use optillm_core::spec::{self, Spec};
use optillm_server::ModelInfo;
use optillm_server::approach::{MAX_MODEL_NAME_BYTES, split_model, split_model_name};
use proptest::prelude::*;

const SERVED: &[&str] = &[
    "smollm2-135m",
    "qwen2.5-coder:0.5b",
    "moa-smollm2",
    "bon",
    "gemma3:latest",
];

fn known() -> Vec<ModelInfo> {
    SERVED.iter().map(|n| ModelInfo::new(*n)).collect()
}

/// Splits `name` and checks the result against the rules; returns it.
fn check(name: &str) -> Result<(Option<spec::Spec>, String), StatusCode> {
    let known = known();
    let got = split_model(name, &known).map_err(|e| e.status);
    if name.len() > MAX_MODEL_NAME_BYTES {
        assert_eq!(got, Err(StatusCode::BAD_REQUEST), "{} bytes", name.len());
        return got;
    }
    let (approach, model) = got.clone().unwrap_or_else(|s| panic!("{name:?}: {s}"));
    // The model is the name's tail, maybe without a `:latest` the served list lacks.
    let served = |n: &str| SERVED.contains(&n);
    let untagged = |n: &str| n == model || n.strip_suffix(":latest") == Some(model.as_str());
    if served(name) {
        assert_eq!(
            (approach, model.as_str()),
            (None, name),
            "served name split"
        );
        return got;
    }
    match approach {
        None => assert!(untagged(name), "{name:?} -> {model:?}"),
        Some(spec) => {
            // prefix + "-" + rest == name, the spec is the prefix's, the model is rest.
            let rest = (0..name.len())
                .filter(|&i| name.get(i..).is_some_and(|r| r.starts_with('-')))
                .filter_map(|i| Some((name.get(..i)?, name.get(i + 1..)?)))
                .find(|(prefix, _)| spec::parse(prefix).ok().as_ref() == Some(&spec));
            let (_, rest) = rest.unwrap_or_else(|| panic!("{name:?}: no prefix gives {spec}"));
            assert!(untagged(rest), "{name:?}: {rest:?} -> {model:?}");
            assert!(!model.is_empty(), "{name:?}");
        }
    }
    got
}

/// Stages of known approaches, with and without parameters.
fn known_stage() -> BoxedStrategy<String> {
    prop_oneof![
        prop::sample::select(&["re2", "moa", "bon", "self_consistency", "none", "mcts"][..])
            .prop_map(String::from),
        prop::sample::select(&["bon(n=3)", "moa(rounds=2)", "self_consistency(k=5,t=0.5)"][..])
            .prop_map(String::from),
    ]
    .boxed()
}

/// Specs, some with unknown stage names.
fn spec_text() -> impl Strategy<Value = String> {
    combined(prop_oneof![known_stage(), "[a-z_]{1,8}".boxed()].boxed())
}

/// Specs of known approaches only: every one parses.
fn known_spec_text() -> impl Strategy<Value = String> {
    combined(known_stage())
}

/// `stage`s combined with `&`, `|` and parentheses.
fn combined(stage: BoxedStrategy<String>) -> impl Strategy<Value = String> {
    stage.prop_recursive(2, 6, 3, |inner| {
        prop_oneof![
            prop::collection::vec(inner.clone(), 2..3).prop_map(|v| v.join("&")),
            prop::collection::vec(inner.clone(), 2..3).prop_map(|v| v.join("|")),
            inner.prop_map(|s| format!("({s})")),
        ]
    })
}

fn model_text() -> impl Strategy<Value = String> {
    prop_oneof![
        prop::sample::select(SERVED).prop_map(String::from),
        "[a-z0-9][a-z0-9._-]{0,16}(:[a-z0-9.]{1,6})?",
        Just(String::new()),
    ]
}

fn name() -> impl Strategy<Value = String> {
    prop_oneof![
        (spec_text(), model_text(), prop::option::of(Just(":latest")))
            .prop_map(|(s, m, tag)| format!("{s}-{m}{}", tag.unwrap_or(""))),
        model_text(),
        (model_text(), Just(":latest")).prop_map(|(m, t)| format!("{m}{t}")),
        "[a-z0-9_&|()=,.:-]{0,40}",
        "\\PC{0,40}",
    ]
}

fn config(cases: u32) -> ProptestConfig {
    ProptestConfig {
        cases,
        ..ProptestConfig::default()
    }
}

proptest! {
    #![proptest_config(config(256))]

    #[test]
    fn names_split_into_an_approach_prefix_and_the_model(name in name()) {
        let _ = check(&name);
    }

    #[test]
    fn names_around_the_byte_cap_are_split_or_refused(
        unit in prop::sample::select(&["a", "-", "é", "re2-", "\u{1F600}", "(", "bon|"][..]),
        extra in 0usize..8,
    ) {
        let n = MAX_MODEL_NAME_BYTES / unit.len() + extra - 4;
        let _ = check(&unit.repeat(n));
    }

    #[test]
    fn a_spec_with_a_model_suffix_splits_back(spec in known_spec_text(), model in "[a-z0-9][a-z0-9.:_-]{0,20}") {
        let spec_text: String = spec.split_whitespace().collect();
        prop_assume!(!spec_text.is_empty() && spec_text.chars().count() <= spec::MAX_SPEC_CHARS);
        let name = format!("{spec_text}-{model}");
        let (got, rest) = split_model_name(&name);
        check_split(&name, &got, &rest);
        // The spec itself (no `-` outside a quoted or bare value) is found when it has no
        // dash; with one, a shorter prefix may parse first.
        if !spec_text.contains('-') {
            prop_assert_eq!(got, spec::parse(&spec_text).unwrap());
            prop_assert_eq!(rest, model);
        }
    }

    #[test]
    fn any_model_name_splits_consistently(name in "[a-z0-9_&|()=,.:-]{0,40}") {
        let (got, rest) = split_model_name(&name);
        check_split(&name, &got, &rest);
    }

    #[test]
    fn any_unicode_model_name_splits_consistently(name in "\\PC{0,40}") {
        let (got, rest) = split_model_name(&name);
        check_split(&name, &got, &rest);
    }
}

#[test]
fn served_names_are_never_split() {
    for name in SERVED {
        assert_eq!(check(name), Ok((None, (*name).to_string())));
    }
    assert_eq!(check("gemma3"), Ok((None, "gemma3".to_string())));
    assert_eq!(
        check("moa-smollm2-135m:latest").map(|(s, m)| (s.map(|s| s.to_string()), m)),
        Ok((Some("moa".to_string()), "smollm2-135m".to_string()))
    );
}

/// Names at the cap built to make each prefix parse slowly. Each split should take
/// well under a millisecond; the generous bound guards the complexity class (each of
/// at most the cap's prefixes is parsed once), not the speed.
#[test]
fn splitting_names_at_the_cap_is_bounded() {
    let n = MAX_MODEL_NAME_BYTES;
    let inputs = [
        "-".repeat(n),
        "re2-".repeat(n / 4),
        format!("none(a={}", "x-".repeat((n - 7) / 2)),
        format!("{}-", "(".repeat(n - 1)),
        "bon&-".repeat(n / 5),
        "-".repeat(n + 1),
        "x".repeat(1 << 20),
    ];
    let start = Instant::now();
    for _ in 0..10 {
        for name in &inputs {
            let _ = check(name);
        }
    }
    let took = start.elapsed();
    assert!(took < Duration::from_secs(2), "{took:?}");
}

/// When the name splits, prefix + `-` + rest is the name, the spec parses from the
/// prefix, and no shorter prefix before a `-` parses; otherwise the spec is `none`.
fn check_split(name: &str, got: &Spec, rest: &str) {
    if rest == name {
        assert!(got.is_none(), "{name:?}: unsplit but {got:?}");
        return;
    }
    let prefix_len = name
        .len()
        .checked_sub(rest.len() + 1)
        .unwrap_or_else(|| panic!("{name:?}: rest {rest:?} longer than the name"));
    let prefix = name.get(..prefix_len).expect("prefix on a char boundary");
    assert_eq!(format!("{prefix}-{rest}"), name);
    assert!(!rest.is_empty(), "{name:?}: empty model part");
    assert_eq!(spec::parse(prefix).ok().as_ref(), Some(got), "{name:?}");
    for (i, _) in prefix.match_indices('-') {
        assert!(
            prefix.get(..i).is_some_and(|p| spec::parse(p).is_err()),
            "{name:?}: a shorter prefix {:?} parses",
            prefix.get(..i)
        );
    }
}

/// The splitter tries each prefix before a `-` (up to the spec cap), so its work is at
/// most quadratic in the cap whatever the name's length. Generous bound: it guards the
/// complexity class, not the speed.
#[test]
fn splitting_long_names_is_bounded() {
    let inputs = [
        "-".repeat(100_000),
        "x-".repeat(50_000),
        format!("none(a={}", "x-".repeat(50_000)),
        format!("(((none&{}", "re2-".repeat(25_000)),
        "é-".repeat(50_000),
    ];
    let start = Instant::now();
    for name in &inputs {
        let (spec, rest) = split_model_name(name);
        check_split(name, &spec, &rest);
    }
    let took = start.elapsed();
    assert!(took < Duration::from_secs(2), "{took:?}");
}
