//! Scoring model outputs against gold answers (through the shared extraction of
//! [`optillm_core::extract`]), accuracy with a Wilson confidence interval, and the
//! paired comparison of two approaches on the same questions ([`PairedDiff`]: Newcombe's
//! interval for the difference of paired proportions, McNemar's exact test).

use optillm_core::extract::{AnswerKind, answers_equal, extract, math_answers_equal};
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
    /// Why a wrong answer is wrong, where the judge can say more than "not equal": for
    /// a program, "no program", its run's last error line, or "timed out".
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub failure: Option<String>,
}

/// Scores `output` against `gold` for a question of `kind`: the final answer is
/// extracted with [`extract`] and compared with [`answers_equal`] (math answers with
/// [`math_answers_equal`]: LaTeX normalised, numbers compared by value). An output
/// without an answer is wrong.
pub fn score(output: &str, gold: &str, kind: AnswerKind) -> Score {
    score_answer(extract(output, kind), gold, kind)
}

/// Scores an answer already read (a recorded sample's) against `gold`.
pub fn score_answer(extracted: Option<String>, gold: &str, kind: AnswerKind) -> Score {
    if kind == AnswerKind::Code {
        let failure = match extracted.as_deref() {
            None => Some("no program".to_string()),
            Some(code) => crate::code::judge(code, gold).failure(),
        };
        return Score {
            correct: failure.is_none(),
            extracted,
            failure,
        };
    }
    let correct = extracted
        .as_deref()
        .is_some_and(|answer| answer_matches(answer, gold, kind));
    Score {
        extracted,
        correct,
        failure: None,
    }
}

/// Whether an answer already read equals `gold` for a question of `kind`
/// ([`math_answers_equal`] for math, the unit tests of [`crate::code`] for code, else
/// [`answers_equal`]).
pub fn answer_matches(answer: &str, gold: &str, kind: AnswerKind) -> bool {
    match kind {
        AnswerKind::Math => math_answers_equal(answer, gold),
        AnswerKind::Code => crate::code::judge(answer, gold).passed(),
        _ => answers_equal(answer, gold),
    }
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

/// Two approaches compared on the same questions: an approach against a reference.
///
/// The interval of the difference is Newcombe's hybrid score interval for paired
/// proportions (Newcombe 1998, "Improved confidence intervals for the difference between
/// binomial proportions based on paired data", Statistics in Medicine 17, method 10:
/// the two Wilson intervals combined with the continuity-corrected correlation of the
/// pairs). The p-value is McNemar's exact test: two-sided binomial test of `b` against
/// `b + c` at 1/2.
#[derive(Debug, Clone, Copy, PartialEq, Serialize, Deserialize)]
pub struct PairedDiff {
    /// Questions both were run on.
    pub items: usize,
    /// Both right.
    pub both: usize,
    /// Only the approach right (the reference wrong).
    pub b: usize,
    /// Only the reference right (the approach wrong).
    pub c: usize,
    /// Both wrong.
    pub neither: usize,
    /// The approach's accuracy minus the reference's, `(b - c) / items`.
    pub diff: f64,
    /// 95% interval of `diff`.
    pub ci_low: f64,
    pub ci_high: f64,
    /// Two-sided exact McNemar p-value.
    pub mcnemar_p: f64,
}

impl PairedDiff {
    /// The comparison from the four counts of the paired table.
    pub fn new(both: usize, b: usize, c: usize, neither: usize) -> Self {
        let items = both + b + c + neither;
        let (diff, ci_low, ci_high) = newcombe_paired(both, b, c, neither, Z_95);
        Self {
            items,
            both,
            b,
            c,
            neither,
            diff,
            ci_low,
            ci_high,
            mcnemar_p: mcnemar_exact(b, c),
        }
    }

    /// The comparison of `(approach right, reference right)` pairs, one per question.
    pub fn from_pairs(pairs: impl IntoIterator<Item = (bool, bool)>) -> Self {
        let (mut both, mut b, mut c, mut neither) = (0, 0, 0, 0);
        for pair in pairs {
            match pair {
                (true, true) => both += 1,
                (true, false) => b += 1,
                (false, true) => c += 1,
                (false, false) => neither += 1,
            }
        }
        Self::new(both, b, c, neither)
    }

    /// The interval leaves out zero: the difference is more than noise at 95%.
    pub fn excludes_zero(&self) -> bool {
        self.ci_low > 0.0 || self.ci_high < 0.0
    }
}

/// The difference of paired proportions `(b - c) / n` with Newcombe's hybrid score
/// interval (method 10) for the normal quantile `z`. The table is `both` (first and
/// second right), `b` (first only), `c` (second only), `neither`. With no pairs nothing is
/// known: `(0, -1, 1)`.
pub fn newcombe_paired(both: usize, b: usize, c: usize, neither: usize, z: f64) -> (f64, f64, f64) {
    let n = both + b + c + neither;
    if n == 0 {
        return (0.0, -1.0, 1.0);
    }
    let nf = n as f64;
    let (first, second) = (both + b, both + c);
    let (p1, p2) = (first as f64 / nf, second as f64 / nf);
    let diff = p1 - p2;
    let (l1, u1) = wilson_interval(first, n, z);
    let (l2, u2) = wilson_interval(second, n, z);
    // The correlation of the pairs (phi), continuity-corrected towards zero when
    // positive; zero when a margin is empty.
    let margins = [first, n - first, second, n - second];
    let phi = if margins.contains(&0) {
        0.0
    } else {
        let det = both as f64 * neither as f64 - b as f64 * c as f64;
        let corrected = if det > nf / 2.0 {
            det - nf / 2.0
        } else if det >= 0.0 {
            0.0
        } else {
            det
        };
        corrected / margins.iter().map(|&m| m as f64).product::<f64>().sqrt()
    };
    let root = |x: f64, y: f64| (x * x + y * y - 2.0 * phi * x * y).max(0.0).sqrt();
    let low = diff - root(p1 - l1, u2 - p2);
    let high = diff + root(p2 - l2, u1 - p1);
    (diff, low.max(-1.0), high.min(1.0))
}

/// McNemar's exact test: the two-sided p-value of `b` successes in `b + c` fair coin
/// tosses (twice the smaller tail, at most 1). No discordant pair: 1.
pub fn mcnemar_exact(b: usize, c: usize) -> f64 {
    let m = b + c;
    if m == 0 {
        return 1.0;
    }
    let k = b.min(c);
    let mut tail = 0.0_f64;
    if m <= 1000 {
        // C(m, i) / 2^m term by term from the exact 2^-m.
        let mut term = 0.5_f64.powi(m as i32);
        for i in 0..=k {
            tail += term;
            term *= (m - i) as f64 / (i + 1) as f64;
        }
    } else {
        // In logs: 2^-m underflows past m = 1074.
        let ln_half_m = m as f64 * std::f64::consts::LN_2;
        let mut ln_choose = 0.0_f64;
        for i in 0..=k {
            if i > 0 {
                ln_choose += ((m - i + 1) as f64).ln() - (i as f64).ln();
            }
            tail += (ln_choose - ln_half_m).exp();
        }
    }
    (2.0 * tail).min(1.0)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn mcnemar_exact_matches_hand_computed_tails() {
        // 0 of 5: 2 / 2^5.
        assert_eq!(mcnemar_exact(0, 5), 0.0625);
        assert_eq!(mcnemar_exact(5, 0), 0.0625);
        // 1 of 10: 2 (1 + 10) / 2^10.
        assert!((mcnemar_exact(1, 9) - 22.0 / 1024.0).abs() < 1e-12);
        // 6 of 22: 2 (1 + 22 + 231 + 1540 + 7315 + 26334 + 74613) / 2^22.
        assert!((mcnemar_exact(6, 16) - 2.0 * 110_056.0 / 4_194_304.0).abs() < 1e-12);
        assert_eq!(mcnemar_exact(3, 3), 1.0);
        assert_eq!(mcnemar_exact(0, 0), 1.0);
        // Past 2^1074 the tail is still a probability, continuous with the exact sum.
        let p = mcnemar_exact(500, 700);
        assert!(p > 0.0 && p < 1e-6, "{p}");
        assert_eq!(mcnemar_exact(600, 600), 1.0);
        let (below, above) = (mcnemar_exact(450, 550), mcnemar_exact(451, 550));
        assert!(below < above && above / below < 1.2, "{below} {above}");
    }

    #[test]
    fn paired_interval_matches_a_published_example() {
        // Fagerland, Lydersen and Laake, "Statistical Analysis of Contingency Tables"
        // (2017), chapter 8, complete response before and after consolidation therapy
        // (Cavo et al. 2012): table 59, 6 / 16, 80; Newcombe square-and-add interval
        // -0.0621 (-0.1186 to -0.0046).
        let d = PairedDiff::new(59, 6, 16, 80);
        assert_eq!(d.items, 161);
        assert!(close(d.diff, -0.0621) && close(d.ci_low, -0.1186), "{d:?}");
        assert!(close(d.ci_high, -0.0046), "{d:?}");
        assert!(d.excludes_zero());
        // The interval is the same with the approaches swapped, mirrored.
        let swapped = PairedDiff::new(59, 16, 6, 80);
        assert!((swapped.ci_low + d.ci_high).abs() < 1e-12);
        assert!((swapped.ci_high + d.ci_low).abs() < 1e-12);
        assert_eq!(swapped.mcnemar_p, d.mcnemar_p);
    }

    #[test]
    fn paired_counts_come_from_the_pairs() {
        let pairs = [
            (true, true),
            (true, false),
            (true, false),
            (false, true),
            (false, false),
        ];
        let d = PairedDiff::from_pairs(pairs);
        assert_eq!((d.both, d.b, d.c, d.neither, d.items), (1, 2, 1, 1, 5));
        assert!((d.diff - 0.2).abs() < 1e-12);
        assert!(d.ci_low < 0.2 && d.ci_high > 0.2 && !d.excludes_zero());
        // Identical answers: no difference, an interval around zero, p = 1.
        let same = PairedDiff::new(40, 0, 0, 60);
        assert_eq!((same.diff, same.mcnemar_p), (0.0, 1.0));
        assert!(same.ci_low < 0.0 && same.ci_high > 0.0);
        // Nothing to compare.
        let empty = PairedDiff::from_pairs([]);
        assert_eq!((empty.diff, empty.ci_low, empty.ci_high), (0.0, -1.0, 1.0));
        // Everything flips one way: bounded by 1.
        let all = PairedDiff::new(0, 30, 0, 0);
        assert_eq!(all.diff, 1.0);
        assert!(all.ci_high <= 1.0 && all.ci_low > 0.8, "{all:?}");
    }

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
                correct: false,
                failure: None,
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

    /// Gold answers of MATH-500 items as the reference solutions write them.
    #[test]
    fn a_wrong_program_says_why() {
        let gold = crate::code::CodeGold {
            prompt: "def double(x):\n    \"\"\"Twice x.\"\"\"\n".into(),
            test: "def check(candidate):\n    assert candidate(2) == 4\n".into(),
            entry_point: "double".into(),
        }
        .to_gold();
        let code = |body: &str| score(&format!("```python\n{body}\n```"), &gold, AnswerKind::Code);
        let right = code("def double(x):\n    return 2 * x");
        assert!(right.correct);
        assert_eq!(right.failure, None);
        let wrong = code("def double(x):\n    return x + 1");
        assert!(!wrong.correct);
        assert_eq!(wrong.failure.as_deref(), Some("AssertionError"));
        let crashing = code("def double(x):\n    return x / 0");
        assert_eq!(
            crashing.failure.as_deref(),
            Some("ZeroDivisionError: division by zero")
        );
        let prose = score("I would double it.", &gold, AnswerKind::Code);
        assert_eq!(
            (prose.correct, prose.failure.as_deref()),
            (false, Some("no program"))
        );
        // Other kinds compare answers: nothing more to say than "not equal".
        assert_eq!(
            score("The answer is 5", "4", AnswerKind::Number).failure,
            None
        );
    }

    #[test]
    fn scores_math_answers() {
        let math = |output: &str, gold: &str| score(output, gold, AnswerKind::Math);
        // Item 0: polar coordinates.
        let gold = "\\left( 3, \\frac{\\pi}{2} \\right)";
        let s = math(
            "So $r = 3$, $\\theta = \\pi/2$. The answer is $\\boxed{(3, \\frac{\\pi}{2})}$",
            gold,
        );
        assert_eq!(s.extracted.as_deref(), Some("(3,\\frac{\\pi}{2})"));
        assert!(s.correct);
        assert!(!math("The answer is \\boxed{\\left(3, \\pi\\right)}", gold).correct);
        // Item 2: a fraction, written as a fraction or as a decimal that is exact enough.
        assert!(math("The answer is \\boxed{\\dfrac{14}{3}}.", "\\frac{14}{3}").correct);
        assert!(math("The answer is \\boxed{14/3}.", "\\frac{14}{3}").correct);
        assert!(!math("The answer is \\boxed{4.67}.", "\\frac{14}{3}").correct);
        assert!(!math("The answer is \\boxed{\\frac{3}{14}}.", "\\frac{14}{3}").correct);
        // Item 4: a name in \text{}; item 7: degrees; item 8: a root.
        assert!(math("The answer is \\boxed{Evelyn}", "\\text{Evelyn}").correct);
        assert!(!math("The answer is \\boxed{Angela}", "\\text{Evelyn}").correct);
        assert!(math("The angle is \\boxed{90^{\\circ}}", "90^\\circ").correct);
        assert!(math("The answer is \\boxed{90}", "90^\\circ").correct);
        assert!(math("\\boxed{3\\sqrt{13}}", "3\\sqrt{13}").correct);
        assert!(!math("\\boxed{3\\sqrt{31}}", "3\\sqrt{13}").correct);
        // Item 15: a complex number; item 23: `x=5`; item 31: `11\sqrt2`.
        assert!(math("\\boxed{6-5i}", "6 - 5i").correct);
        assert!(!math("\\boxed{6+5i}", "6 - 5i").correct);
        assert!(math("The only solution is \\boxed{5}.", "x=5").correct);
        assert!(math("\\boxed{11 \\sqrt{2}}", "11\\sqrt2").correct);
        // Item 36: a list of roots is not the number 357.
        assert!(math("\\boxed{3,5,7}", "3, 5, 7").correct);
        assert!(!math("\\boxed{357}", "3, 5, 7").correct);
        // Without a box: "Final Answer: The final answer is $...$", or the last number.
        assert!(
            math(
                "Final Answer: The final answer is $\\frac{14}{3}$. I hope it is correct.",
                "\\frac{14}{3}"
            )
            .correct
        );
        assert!(math("So there are 9 divisors", "9").correct);
        assert_eq!(math("I do not know.", "9").extracted, None);
        // Numbers keep the numeric comparison of the other kinds.
        assert!(math("\\boxed{\\frac{1}{2}}", "0.5").correct);
        assert!(math("\\boxed{10080}", "10,\\!080").correct);
    }
}
