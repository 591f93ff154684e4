//! Scoring model outputs against gold answers (through the shared extraction of
//! [`optillm_core::extract`]) and accuracy with a Wilson confidence interval.

use optillm_core::extract::{AnswerKind, answers_equal, extract};
use serde::{Deserialize, Serialize};

/// The two-sided 95% normal quantile.
pub const Z_95: f64 = 1.959_963_984_540_054;

/// The verdict on one output.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct Score {
    /// The answer found in the output (canonical), if any.
    pub extracted: Option<String>,
    /// The extracted answer equals the gold answer.
    pub correct: bool,
}

/// Scores `output` against `gold` for a question of `kind`: the final answer is
/// extracted with [`extract`] and compared with [`answers_equal`]. An output without an
/// answer is wrong.
pub fn score(output: &str, gold: &str, kind: AnswerKind) -> Score {
    let extracted = extract(output, kind);
    let correct = extracted
        .as_deref()
        .is_some_and(|answer| answers_equal(answer, gold));
    Score { extracted, correct }
}

/// An accuracy with its confidence interval.
#[derive(Debug, Clone, Copy, PartialEq, Serialize, Deserialize)]
pub struct Accuracy {
    pub correct: usize,
    pub total: usize,
    /// `correct / total` (0 when `total` is 0).
    pub value: f64,
    pub ci_low: f64,
    pub ci_high: f64,
}

impl Accuracy {
    /// The accuracy of `correct` out of `total` with a 95% Wilson interval.
    pub fn new(correct: usize, total: usize) -> Self {
        let (ci_low, ci_high) = wilson_interval(correct, total, Z_95);
        Self {
            correct,
            total,
            value: if total == 0 {
                0.0
            } else {
                correct as f64 / total as f64
            },
            ci_low,
            ci_high,
        }
    }
}

/// The Wilson score interval of `successes` out of `trials` for the normal quantile `z`
/// (1.96 for 95%). With no trials nothing is known: `(0, 1)`.
pub fn wilson_interval(successes: usize, trials: usize, z: f64) -> (f64, f64) {
    if trials == 0 {
        return (0.0, 1.0);
    }
    let n = trials as f64;
    let p = successes.min(trials) as f64 / n;
    let z2 = z * z;
    let denom = 1.0 + z2 / n;
    let centre = (p + z2 / (2.0 * n)) / denom;
    let half = z / denom * (p * (1.0 - p) / n + z2 / (4.0 * n * n)).sqrt();
    // At p = 0 and p = 1 the bound is exactly 0 or 1; keep rounding from moving it.
    let low = if successes == 0 {
        0.0
    } else {
        (centre - half).max(0.0)
    };
    let high = if successes >= trials {
        1.0
    } else {
        (centre + half).min(1.0)
    };
    (low, high)
}

#[cfg(test)]
mod tests {
    use super::*;

    fn close(a: f64, b: f64) -> bool {
        (a - b).abs() < 6e-5
    }

    #[test]
    fn wilson_matches_published_values() {
        // Newcombe (1998), "Two-sided confidence intervals for the single proportion",
        // Statistics in Medicine 17, Table I, method 3 (Wilson score, no continuity
        // correction), given to 4 decimals.
        let cases = [
            (81, 263, 0.2553, 0.3662),
            (15, 148, 0.0624, 0.1605),
            (0, 20, 0.0, 0.1611),
            (1, 29, 0.0061, 0.1718),
        ];
        for (k, n, lo, hi) in cases {
            let (l, h) = wilson_interval(k, n, Z_95);
            assert!(close(l, lo) && close(h, hi), "{k}/{n}: got ({l}, {h})");
        }
        // The interval is symmetric around 1/2 for k = n/2 and never leaves [0, 1].
        let (l, h) = wilson_interval(5, 10, Z_95);
        assert!(close(l + h, 1.0) && close(l, 0.2366));
        assert_eq!(wilson_interval(10, 10, Z_95).1, 1.0);
        assert_eq!(wilson_interval(0, 0, Z_95), (0.0, 1.0));
        let a = Accuracy::new(3, 4);
        assert_eq!(a.value, 0.75);
        assert!(a.ci_low < 0.75 && a.ci_high > 0.75);
    }

    #[test]
    fn scores_known_outputs() {
        let s = score(
            "She sells 16 - 3 - 4 = 9 eggs at $2 each.\nThe answer is 18.",
            "18",
            AnswerKind::Number,
        );
        assert_eq!(s.extracted.as_deref(), Some("18"));
        assert!(s.correct);
        assert!(score("The answer is $1,000.", "1000", AnswerKind::Number).correct);
        // The marker wins over a later number.
        let wrong = score(
            "The answer is 17.\nCheck: 3 steps.",
            "18",
            AnswerKind::Number,
        );
        assert_eq!(wrong.extracted.as_deref(), Some("17"));
        assert!(!wrong.correct);
        assert_eq!(
            score("I cannot solve it.", "18", AnswerKind::Number),
            Score {
                extracted: None,
                correct: false
            }
        );
        assert!(
            score(
                "Steam is water vapour. The answer is (B).",
                "B",
                AnswerKind::Choice
            )
            .correct
        );
        assert!(!score("The answer is C", "B", AnswerKind::Choice).correct);
        assert!(score("The answer is yes", "yes", AnswerKind::YesNo).correct);
        assert!(
            score(
                "Bryan read more pages.\nThe answer is Bryan.",
                "Bryan",
                AnswerKind::Text
            )
            .correct
        );
        assert!(!score("The answer is Sara.", "Bryan", AnswerKind::Text).correct);
    }
}
