//! Answer extraction, normalisation and voting on any text: no panic; numbers come
//! from texts with digits, option letters are A-E.
#![no_main]

use libfuzzer_sys::fuzz_target;
use optillm_core::extract::{AnswerKind, answers_equal, extract, extract_any, normalize, vote};

fuzz_target!(|data: &[u8]| {
    let text = String::from_utf8_lossy(data);
    let has_digit = text.chars().any(|c| c.is_ascii_digit());
    if let Some(n) = extract(&text, AnswerKind::Number) {
        assert!(has_digit && n.parse::<f64>().is_ok(), "{n:?} from {text:?}");
    }
    if let Some(c) = extract(&text, AnswerKind::Choice) {
        assert!(matches!(c.as_str(), "A" | "B" | "C" | "D" | "E"), "{c:?}");
    }
    if let Some(y) = extract(&text, AnswerKind::YesNo) {
        assert!(matches!(y.as_str(), "yes" | "no"), "{y:?}");
    }
    let _ = extract(&text, AnswerKind::Text);
    let any = extract_any(&text);
    let _ = normalize(&text);
    assert!(answers_equal(&text, &text));
    // Vote over the lines (and the answer found), some missing.
    let mut answers: Vec<Option<String>> = text
        .lines()
        .take(64)
        .map(|l| (!l.is_empty()).then(|| l.to_string()))
        .collect();
    answers.push(any);
    if let Some(v) = vote(&answers) {
        assert_eq!(v.count, v.members.len());
        assert!(v.count <= v.voters && v.voters <= v.total);
    }
});
