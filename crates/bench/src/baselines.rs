//! Baselines that need no model, computed from the questions alone: what a
//! multiple-choice table has to beat before a model's answers mean anything.
//!
//! - `most frequent gold letter`: the letter that is right most often on the selected
//!   questions, answered every time. It reads the gold answers, so it is the best any
//!   constant letter can do on these questions, not a fair guess;
//! - `longest option`: on each question, the option with the most characters (the
//!   first of the longest on a tie).

use optillm_core::extract::AnswerKind;
use serde::{Deserialize, Serialize};

use crate::dataset::Item;
use crate::score::Accuracy;

/// The accuracy of one rule that needs no model.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct NoModelBaseline {
    /// `most frequent gold letter` or `longest option`.
    pub name: String,
    /// What the rule answered (the letter, for the constant rule).
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub answer: Option<String>,
    /// Questions the rule applies to.
    pub items: usize,
    pub correct: usize,
    pub accuracy: f64,
    pub ci_low: f64,
    pub ci_high: f64,
}

impl NoModelBaseline {
    fn new(name: &str, answer: Option<String>, correct: usize, items: usize) -> Self {
        let acc = Accuracy::new(correct, items);
        Self {
            name: name.to_string(),
            answer,
            items,
            correct,
            accuracy: acc.value,
            ci_low: acc.ci_low,
            ci_high: acc.ci_high,
        }
    }
}

/// The no-model baselines of the multiple-choice questions among `items` (none when
/// there are none). `longest option` covers the questions whose options are known.
pub fn no_model_baselines(items: &[Item]) -> Vec<NoModelBaseline> {
    let choice: Vec<&Item> = items
        .iter()
        .filter(|i| i.kind == AnswerKind::Choice)
        .collect();
    if choice.is_empty() {
        return Vec::new();
    }
    let mut out = Vec::new();
    // Letters in order, so a tie goes to the earlier letter.
    let mut counts: Vec<(String, usize)> = Vec::new();
    for item in &choice {
        match counts.iter_mut().find(|(l, _)| *l == item.gold) {
            Some((_, n)) => *n += 1,
            None => counts.push((item.gold.clone(), 1)),
        }
    }
    counts.sort_by(|a, b| a.0.cmp(&b.0));
    let best = counts
        .iter()
        .fold(None::<&(String, usize)>, |best, c| match best {
            Some(b) if b.1 >= c.1 => Some(b),
            _ => Some(c),
        });
    if let Some((letter, n)) = best {
        out.push(NoModelBaseline::new(
            "most frequent gold letter",
            Some(letter.clone()),
            *n,
            choice.len(),
        ));
    }
    let with_options: Vec<&&Item> = choice.iter().filter(|i| !i.options.is_empty()).collect();
    if !with_options.is_empty() {
        let correct = with_options
            .iter()
            .filter(|i| longest_option(&i.options).is_some_and(|l| l.to_string() == i.gold))
            .count();
        out.push(NoModelBaseline::new(
            "longest option",
            None,
            correct,
            with_options.len(),
        ));
    }
    out
}

/// The letter of the option with the most characters (the first on a tie).
pub fn longest_option(options: &[String]) -> Option<char> {
    let mut best: Option<(usize, usize)> = None;
    for (i, text) in options.iter().enumerate() {
        let len = text.trim().chars().count();
        if best.is_none_or(|(_, l)| len > l) {
            best = Some((i, len));
        }
    }
    best.and_then(|(i, _)| u8::try_from(i).ok())
        .filter(|&i| i < 26)
        .map(|i| char::from(b'A' + i))
}

#[cfg(test)]
mod tests {
    use super::*;

    fn mc(id: &str, gold: &str, options: &[&str]) -> Item {
        Item {
            id: id.into(),
            prompt: String::new(),
            gold: gold.into(),
            kind: AnswerKind::Choice,
            options: options.iter().map(|s| s.to_string()).collect(),
        }
    }

    #[test]
    fn constant_letter_and_longest_option() {
        let items = vec![
            mc("1", "B", &["ice", "water vapour", "rock"]),
            mc("2", "B", &["a", "bb", "ccc"]),
            mc("3", "A", &["the longest one", "short", "tiny"]),
            mc("4", "C", &["x", "yy", "zz"]),
        ];
        let b = no_model_baselines(&items);
        assert_eq!(b.len(), 2);
        assert_eq!(b[0].name, "most frequent gold letter");
        assert_eq!(b[0].answer.as_deref(), Some("B"));
        assert_eq!((b[0].correct, b[0].items), (2, 4));
        assert_eq!(b[0].accuracy, 0.5);
        // Longest: B (right), C (wrong), A (right), B on the tie yy/zz (wrong).
        assert_eq!(b[1].name, "longest option");
        assert_eq!((b[1].correct, b[1].items), (2, 4));
        assert!(b[1].ci_low < 0.5 && b[1].ci_high > 0.5);
    }

    #[test]
    fn ties_and_other_kinds() {
        // A tie between letters goes to the earlier one.
        let items = vec![mc("1", "C", &[]), mc("2", "A", &[])];
        let b = no_model_baselines(&items);
        assert_eq!(b[0].answer.as_deref(), Some("A"));
        // Without options there is no longest-option row.
        assert_eq!(b.len(), 1);
        let numbers = vec![Item {
            id: "1".into(),
            prompt: String::new(),
            gold: "4".into(),
            kind: AnswerKind::Number,
            options: Vec::new(),
        }];
        assert!(no_model_baselines(&numbers).is_empty());
        assert_eq!(longest_option(&[]), None);
        assert_eq!(
            longest_option(&["ab".into(), " abc ".into(), "xyz".into()]),
            Some('B')
        );
    }
}
