//! Samples of a voting run and the rules that aggregate them.
//!
//! A sampling strategy (`self_consistency`, `majority_voting`) records every sample it
//! draws as a [`Sample`]: its text, the answer extracted from it, and, when the backend
//! returns log-probabilities, a [`Confidence`] summary. A [`VoteRule`] turns samples
//! into an answer: a plain or confidence-weighted vote, optionally over the most
//! confident share of the samples only, optionally stopping early (adaptive sampling).
//!
//! The same rule runs live (the strategies draw samples batch by batch and ask
//! [`VoteRule::should_stop`] after each) and offline on recorded samples
//! ([`VoteRule::decide`], used by `optillm eval --rescore`): the samples of a batch
//! drawn at offset `d` use the seeds `seed + d ..`, so the first `m` samples of a
//! fixed-`k` run are the samples an adaptive run that stopped at `m` would have drawn.
//!
//! Confidence follows DeepConf (Fu et al. 2025): a token's confidence is minus the mean
//! log-probability of the most likely tokens at its position (high when the model's
//! distribution is peaked); a sample's *group* confidence is the mean over a sliding
//! window of tokens, its *lowest group* confidence the lowest such mean, its *tail*
//! confidence the mean over its last tokens.

use serde::{Deserialize, Serialize};

use crate::extract::{AnswerKind, extract_as};
use crate::extract::{Vote, weighted_vote};
use crate::types::{Capabilities, Choice, FinishReason, TokenLogprob};

/// Tokens per window of the lowest-group confidence, and of the tail.
pub const CONFIDENCE_WINDOW: usize = 32;

/// The top alternatives per token asked of the backend for confidences.
pub const CONFIDENCE_TOP_K: u32 = 5;

/// Confidence summary of one sample, from its per-token log-probabilities.
#[derive(Debug, Clone, Copy, PartialEq, Serialize, Deserialize)]
pub struct Confidence {
    /// Mean log-probability of the sampled tokens.
    pub mean_logprob: f32,
    /// Mean token confidence over the sample.
    pub mean: f32,
    /// Lowest mean token confidence over a window of [`CONFIDENCE_WINDOW`] tokens (the
    /// mean of all tokens when the sample is shorter).
    pub lowest_group: f32,
    /// Mean token confidence over the last [`CONFIDENCE_WINDOW`] tokens.
    pub tail: f32,
}

impl Confidence {
    /// The summary of a sample's log-probabilities; `None` when there are none, or when
    /// no position carries its top alternatives.
    pub fn from_logprobs(logprobs: &[TokenLogprob]) -> Option<Self> {
        let conf: Vec<f32> = logprobs.iter().filter_map(token_confidence).collect();
        if conf.is_empty() || conf.len() != logprobs.len() {
            return None;
        }
        let mean = |xs: &[f32]| xs.iter().sum::<f32>() / xs.len().max(1) as f32;
        let w = CONFIDENCE_WINDOW.min(conf.len());
        let lowest_group = conf.windows(w).map(mean).fold(f32::INFINITY, f32::min);
        let tail = mean(conf.get(conf.len() - w..).unwrap_or(&conf));
        let logprob: Vec<f32> = logprobs.iter().map(|t| t.logprob.max(-1e4)).collect();
        Some(Self {
            mean_logprob: round(mean(&logprob)),
            mean: round(mean(&conf)),
            lowest_group: round(lowest_group),
            tail: round(tail),
        })
    }

    /// The confidence a [`Weight`] reads (`None` for [`Weight::None`]).
    pub fn get(&self, weight: Weight) -> Option<f32> {
        match weight {
            Weight::None => None,
            Weight::Mean => Some(self.mean),
            Weight::LowestGroup => Some(self.lowest_group),
            Weight::Tail => Some(self.tail),
        }
    }
}

/// Four decimals are plenty for a summary and keep records short.
fn round(x: f32) -> f32 {
    (x * 1e4).round() / 1e4
}

/// A token's confidence: minus the mean log-probability of its top alternatives
/// (`None` when the backend returned none).
pub fn token_confidence(t: &TokenLogprob) -> Option<f32> {
    if t.top.is_empty() {
        return None;
    }
    let sum: f32 = t.top.iter().map(|a| a.logprob.max(-1e4)).sum();
    Some(-sum / t.top.len() as f32)
}

/// One sample of a voting run.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct Sample {
    pub text: String,
    /// The answer extracted for the vote (`None`: none found).
    pub answer: Option<String>,
    pub completion_tokens: u32,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub finish_reason: Option<FinishReason>,
    /// `None` when the backend returned no log-probabilities.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub confidence: Option<Confidence>,
}

impl Sample {
    /// A sample from a backend's choice, its answer extracted as `kind`.
    pub fn from_choice(c: &Choice, kind: Option<AnswerKind>) -> Self {
        Self {
            text: c.text.clone(),
            answer: extract_as(&c.text, kind),
            completion_tokens: c.completion_tokens,
            finish_reason: Some(c.finish_reason),
            confidence: c.logprobs.as_deref().and_then(Confidence::from_logprobs),
        }
    }
}

/// The top alternatives to ask a backend for, so samples get confidences (`None`
/// when it returns no log-probabilities).
pub fn confidence_top_k(caps: &Capabilities) -> Option<u32> {
    caps.logprobs
        .then_some(CONFIDENCE_TOP_K.min(caps.max_top_logprobs))
        .filter(|&k| k > 0)
}

/// What weighs a sample's vote.
#[derive(Debug, Clone, Copy, Default, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "snake_case")]
pub enum Weight {
    /// One vote per sample.
    #[default]
    None,
    /// The sample's mean token confidence.
    Mean,
    /// Its lowest group confidence (DeepConf's weight).
    LowestGroup,
    /// Its tail confidence.
    Tail,
}

/// How samples become an answer.
#[derive(Debug, Clone, Copy, PartialEq, Serialize, Deserialize)]
#[serde(default, deny_unknown_fields)]
pub struct VoteRule {
    /// What weighs a vote.
    pub weight: Weight,
    /// Share of the samples that vote: the most confident by `weight` (by lowest-group
    /// confidence when `weight` is `none`); 1 keeps all. Samples without a confidence
    /// always vote.
    pub keep: f32,
    /// Adaptive sampling: draw this many samples at a time and stop once
    /// [`VoteRule::should_stop`] holds; 0 draws all at once.
    pub batch: u32,
    /// The stopping rule's threshold: stop when the probability that the leading
    /// answer is the majority answer of the distribution reaches it.
    pub stop_at: f32,
}

impl Default for VoteRule {
    fn default() -> Self {
        Self {
            weight: Weight::None,
            keep: 1.0,
            batch: 0,
            stop_at: 0.95,
        }
    }
}

/// What a rule decided over a set of samples.
#[derive(Debug, Clone, PartialEq)]
pub struct Decision {
    /// The vote (over the samples used, after filtering); `None` when no sample had an
    /// answer.
    pub vote: Option<Vote>,
    /// Samples the rule used (a prefix of those given: fewer when it stopped early).
    pub used: usize,
    /// Requests the samples took (1 without adaptive sampling).
    pub batches: usize,
}

impl VoteRule {
    /// Checks the ranges; the message names the bad parameter.
    pub fn check(&self) -> Result<(), String> {
        if !(self.keep > 0.0 && self.keep <= 1.0) {
            return Err("keep must be in (0, 1]".into());
        }
        if !(self.stop_at > 0.5 && self.stop_at < 1.0) {
            return Err("stop_at must be in (0.5, 1)".into());
        }
        Ok(())
    }

    /// Whether sampling can stop with these samples: the probability that the leading
    /// answer is the majority one, under a uniform prior on the shares of the two
    /// leading answers (Adaptive-Consistency's Beta stopping rule, Aggarwal et al.
    /// 2023), has reached `stop_at`.
    pub fn should_stop(&self, samples: &[Sample]) -> bool {
        let counts = leading_counts(samples);
        beta_majority_probability(counts.0, counts.1) >= f64::from(self.stop_at)
    }

    /// Applies the rule to the first `k` samples (all when `k` is `None`) as a live run
    /// would have drawn them: batch by batch, stopping early when adaptive.
    pub fn decide(&self, samples: &[Sample], k: Option<usize>) -> Decision {
        let k = k.map_or(samples.len(), |k| k.min(samples.len()));
        let (used, batches) = if self.batch == 0 {
            (k, usize::from(k > 0))
        } else {
            let step = self.batch as usize;
            let mut used = 0;
            let mut batches = 0;
            while used < k {
                used = (used + step).min(k);
                batches += 1;
                if self.should_stop(samples.get(..used).unwrap_or(&[])) {
                    break;
                }
            }
            (used, batches)
        };
        Decision {
            vote: self.vote(samples.get(..used).unwrap_or(&[])),
            used,
            batches,
        }
    }

    /// The vote over `samples`: the most confident `keep` share, each weighted by
    /// `weight`. `Vote::members` index into `samples`.
    pub fn vote(&self, samples: &[Sample]) -> Option<Vote> {
        let filter_by = match self.weight {
            Weight::None => Weight::LowestGroup,
            w => w,
        };
        let voting = self.kept(samples, filter_by);
        let answers: Vec<Option<String>> = samples
            .iter()
            .enumerate()
            .map(|(i, s)| s.answer.clone().filter(|_| voting.contains(&i)))
            .collect();
        let weights: Vec<f64> = samples
            .iter()
            .map(|s| {
                s.confidence
                    .and_then(|c| c.get(self.weight))
                    .map_or(1.0, |c| f64::from(c.max(0.0)))
            })
            .collect();
        weighted_vote(&answers, &weights)
    }

    /// Indices of the samples that vote: all of them, or the `keep` share with the
    /// highest confidence by `by` (ties: the earlier sample) plus those without one.
    fn kept(&self, samples: &[Sample], by: Weight) -> Vec<usize> {
        let mut scored: Vec<(usize, f32)> = samples
            .iter()
            .enumerate()
            .filter_map(|(i, s)| Some((i, s.confidence?.get(by)?)))
            .collect();
        let mut kept: Vec<usize> = (0..samples.len())
            .filter(|i| !scored.iter().any(|(j, _)| j == i))
            .collect();
        let n = ((scored.len() as f32 * self.keep).ceil() as usize).clamp(1, scored.len().max(1));
        scored.sort_by(|a, b| b.1.total_cmp(&a.1).then(a.0.cmp(&b.0)));
        kept.extend(scored.iter().take(n).map(|(i, _)| *i));
        kept
    }
}

/// The counts of the two most frequent answers among the samples (0 when absent).
fn leading_counts(samples: &[Sample]) -> (u64, u64) {
    let answers: Vec<Option<String>> = samples.iter().map(|s| s.answer.clone()).collect();
    let Some(vote) = crate::extract::vote(&answers) else {
        return (0, 0);
    };
    let second = vote.distribution.get(1).map_or(0, |d| d.1);
    (vote.count as u64, second as u64)
}

/// P(p1 > p2) for the shares of the two leading answers after `v1` and `v2` votes, with
/// a uniform prior: P(X > 1/2) for X ~ Beta(v1 + 1, v2 + 1), which for whole counts is
/// P(Binomial(v1 + v2 + 1, 1/2) <= v1).
pub fn beta_majority_probability(v1: u64, v2: u64) -> f64 {
    let n = v1 + v2 + 1;
    // Sum of C(n, j) / 2^n for j <= v1, in logs so large n stays finite.
    let ln_half_n = -(n as f64) * std::f64::consts::LN_2;
    let mut ln_c = 0.0; // ln C(n, 0)
    let mut p = 0.0;
    for j in 0..=v1.min(n) {
        if j > 0 {
            ln_c += ((n - j + 1) as f64).ln() - (j as f64).ln();
        }
        p += (ln_c + ln_half_n).exp();
    }
    p.min(1.0)
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::types::TopLogprob;

    fn lp(logprob: f32, top: &[f32]) -> TokenLogprob {
        TokenLogprob {
            token: "x".into(),
            logprob,
            top: top
                .iter()
                .map(|&l| TopLogprob {
                    token: "y".into(),
                    logprob: l,
                })
                .collect(),
        }
    }

    fn sample(answer: Option<&str>, conf: f32) -> Sample {
        Sample {
            text: answer.unwrap_or("?").into(),
            answer: answer.map(str::to_string),
            completion_tokens: 10,
            finish_reason: None,
            confidence: Some(Confidence {
                mean_logprob: -0.5,
                mean: conf,
                lowest_group: conf,
                tail: conf,
            }),
        }
    }

    #[test]
    fn beta_rule_matches_the_closed_form() {
        // One vote against none: P(Beta(2, 1) > 1/2) = 3/4.
        assert!((beta_majority_probability(1, 0) - 0.75).abs() < 1e-12);
        // Four unanimous votes: 31/32.
        assert!((beta_majority_probability(4, 0) - 31.0 / 32.0).abs() < 1e-12);
        // A tie is a coin toss.
        assert!((beta_majority_probability(3, 3) - 0.5).abs() < 1e-12);
        // Large counts stay finite and ordered.
        let a = beta_majority_probability(600, 500);
        assert!(a > 0.99 && a <= 1.0, "{a}");
        assert!(beta_majority_probability(0, 5) < 0.05);
    }

    #[test]
    fn confidence_summarises_windows_and_tail() {
        // 40 confident tokens (top logprobs very low -> high confidence), then 10 unsure.
        let mut lps: Vec<TokenLogprob> = (0..40).map(|_| lp(-0.01, &[-0.01, -9.0])).collect();
        lps.extend((0..10).map(|_| lp(-0.7, &[-0.7, -0.7])));
        let c = Confidence::from_logprobs(&lps).unwrap();
        assert!(c.lowest_group < c.mean, "{c:?}");
        assert!(
            c.tail <= c.lowest_group + 1e-3,
            "the unsure tail is the lowest window"
        );
        assert!((c.mean_logprob - (-(40.0 * 0.01 + 10.0 * 0.7) / 50.0)).abs() < 1e-3);
        // No alternatives: no confidence.
        assert_eq!(Confidence::from_logprobs(&[lp(-0.1, &[])]), None);
        assert_eq!(Confidence::from_logprobs(&[]), None);
    }

    #[test]
    fn weighted_vote_lets_confident_samples_win() {
        let s = vec![
            sample(Some("7"), 1.0),
            sample(Some("7"), 1.0),
            sample(Some("8"), 5.0),
        ];
        let plain = VoteRule::default().vote(&s).unwrap();
        assert_eq!(plain.winner, "7");
        let rule = VoteRule {
            weight: Weight::LowestGroup,
            ..VoteRule::default()
        };
        let weighted = rule.vote(&s).unwrap();
        assert_eq!(
            (weighted.winner.as_str(), weighted.members.clone()),
            ("8", vec![2])
        );
        // Keeping the most confident third leaves only the 8.
        let kept = VoteRule {
            keep: 0.3,
            ..VoteRule::default()
        };
        assert_eq!(kept.vote(&s).unwrap().winner, "8");
    }

    #[test]
    fn adaptive_rule_stops_on_agreement_and_uses_a_prefix() {
        let agree: Vec<Sample> = (0..8).map(|_| sample(Some("42"), 1.0)).collect();
        let rule = VoteRule {
            batch: 2,
            ..VoteRule::default()
        };
        let d = rule.decide(&agree, None);
        // 2 agreeing: 7/8 < 0.95; 4 agreeing: 31/32 >= 0.95.
        assert_eq!((d.used, d.batches), (4, 2));
        assert_eq!(d.vote.unwrap().count, 4);
        let split: Vec<Sample> = (0..8)
            .map(|i| sample(Some(if i % 2 == 0 { "1" } else { "2" }), 1.0))
            .collect();
        let d = rule.decide(&split, None);
        assert_eq!((d.used, d.batches), (8, 4));
        // `k` caps what is used; without `batch` everything up to k is one request.
        let d = VoteRule::default().decide(&split, Some(3));
        assert_eq!((d.used, d.batches), (3, 1));
        assert_eq!(VoteRule::default().decide(&[], None).batches, 0);
    }

    #[test]
    fn bad_ranges_are_named() {
        let r = VoteRule {
            keep: 0.0,
            ..VoteRule::default()
        };
        assert!(r.check().unwrap_err().contains("keep"));
        let r = VoteRule {
            stop_at: 1.0,
            ..VoteRule::default()
        };
        assert!(r.check().unwrap_err().contains("stop_at"));
    }
}
