//! `diverse`: DiverseSampling. `n` samples over a temperature ladder, each its own
//! request with its own temperature (and seed), all concurrently; one is picked by a
//! selection rule: the extracted-answer majority (default; optionally weighted by each
//! sample's token confidence, see [`crate::samples`]), the longest, or the model's 0-10
//! rating. Every sample is recorded in the outcome.

use async_trait::async_trait;
use futures::future::join_all;
use serde::{Deserialize, Serialize};

use super::Approach;
use super::read_answer::answer_kind;
use super::select::{SampleVote, argmax, best_guess, rate_all, settle};
use super::util::{temp, with_confidences};
use crate::extract::{AnswerKind, extract};
use crate::samples::{Sample, VoteRule, Weight};
use crate::spec::SpecError;
use crate::strategy::{Answer, Ctx, Strategy, StrategyError, StrategyRequest};

/// How the answer is picked among the samples.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "snake_case")]
pub enum Selection {
    /// Majority of the extracted answers (first sample of the winning group).
    Vote,
    /// The longest sample.
    Longest,
    /// The sample the model rates highest (0-10, one rating call per sample).
    Rated,
}

/// The parameters of `diverse`; a field a spec leaves out takes its default here
/// (`optillm approaches` lists them).
#[derive(Debug, Clone, Serialize, Deserialize)]
#[serde(default, deny_unknown_fields)]
pub struct Params {
    /// Samples, one request each.
    pub n: u32,
    /// Temperature of the first sample.
    pub min_temperature: f32,
    /// Temperature of the last sample; the others are evenly spaced in between.
    pub max_temperature: f32,
    pub selection: Selection,
    /// Temperature of the rating calls (`rated` selection).
    pub rating_temperature: f32,
    /// Answer kind for the `vote` selection (`number`, `choice`, `yes_no`, `text`); `null`: any.
    pub answer_kind: Option<AnswerKind>,
    /// What weighs a vote (`vote` selection): `none`, `mean`, `lowest_group`, `tail`.
    pub weight: Weight,
    /// Share of the samples that vote, the most confident first (1: all).
    pub keep: f32,
}

impl Default for Params {
    fn default() -> Self {
        Self {
            n: 5,
            min_temperature: 0.3,
            max_temperature: 1.5,
            selection: Selection::Vote,
            rating_temperature: 0.1,
            answer_kind: None,
            weight: Weight::None,
            keep: 1.0,
        }
    }
}

/// The `diverse` strategy (the module documentation describes it): built from typed
/// [`Params`] with `new`, or by name through [`crate::strategies::build`].
#[derive(Debug, Clone)]
pub struct Diverse {
    params: Params,
}

impl Diverse {
    pub fn new(params: Params) -> Result<Self, SpecError> {
        let bad = |message: &str| SpecError::BadParameter {
            approach: Self::SLUG.into(),
            message: message.into(),
        };
        if params.n == 0 {
            return Err(bad("n must be at least 1"));
        }
        let (lo, hi) = (params.min_temperature, params.max_temperature);
        if !(lo.is_finite() && hi.is_finite() && lo >= 0.0 && hi >= lo) {
            return Err(bad(
                "temperatures must satisfy 0 <= min_temperature <= max_temperature",
            ));
        }
        if !(params.keep > 0.0 && params.keep <= 1.0) {
            return Err(bad("keep must be in (0, 1]"));
        }
        Ok(Self { params })
    }

    fn rule(&self) -> VoteRule {
        VoteRule {
            weight: self.params.weight,
            keep: self.params.keep,
            ..VoteRule::default()
        }
    }

    /// The temperature of each sample, from min to max.
    pub fn ladder(&self) -> Vec<f32> {
        let n = self.params.n.max(1);
        let (lo, hi) = (self.params.min_temperature, self.params.max_temperature);
        (0..n)
            .map(|i| {
                if n == 1 {
                    lo
                } else {
                    lo + (hi - lo) * i as f32 / (n - 1) as f32
                }
            })
            .collect()
    }
}

impl Approach for Diverse {
    const SLUG: &'static str = "diverse";
    const DESCRIPTION: &'static str =
        "Diverse sampling: n requests over a temperature ladder, picked by vote, length or rating";
    type Params = Params;

    fn from_params(params: Params) -> Result<Self, SpecError> {
        Self::new(params)
    }
}

#[async_trait]
impl Strategy for Diverse {
    fn slug(&self) -> &str {
        Self::SLUG
    }

    async fn run(&self, ctx: &Ctx, request: &StrategyRequest) -> Result<Answer, StrategyError> {
        let kind = answer_kind(request.query()?, self.params.answer_kind);
        let calls = self.ladder().into_iter().enumerate().map(|(i, t)| {
            let mut step = temp(t);
            // Distinct seeds, so a seeded run does not repeat one sample n times.
            step.seed = request.sampling.seed_for(i as u32);
            let chat = with_confidences(ctx, request.chat(request.messages.clone(), &step));
            async move {
                let purpose = format!("sample {} (temperature {t:.2})", i + 1);
                let completion = ctx.call(purpose, chat).await?;
                Ok(completion
                    .choices
                    .first()
                    .map(|c| Sample::from_choice(c, kind))
                    .unwrap_or_else(|| Sample {
                        text: String::new(),
                        answer: None,
                        completion_tokens: 0,
                        finish_reason: None,
                        confidence: None,
                    }))
            }
        });
        let (results, cut) = settle(join_all(calls).await)?;
        let mut samples: Vec<Sample> = results.into_iter().flatten().collect();
        ctx.record_samples(samples.iter().cloned());
        let texts: Vec<String> = samples.iter().map(|s| s.text.clone()).collect();
        if let Some(guess) = best_guess(&texts, kind) {
            ctx.offer(guess);
        }
        if let Some(e) = cut {
            return Err(e);
        }
        let (chosen, candidates) = match self.params.selection {
            Selection::Vote => {
                // No sample has an answer of the kind: vote on their final lines.
                if samples.iter().all(|s| s.answer.is_none()) {
                    for s in &mut samples {
                        s.answer = extract(&s.text, AnswerKind::Text);
                    }
                }
                let sv = SampleVote {
                    answers: samples.iter().map(|s| s.answer.clone()).collect(),
                    vote: self.rule().vote(&samples),
                };
                (sv.chosen(), sv.labelled(&texts))
            }
            Selection::Longest => {
                // The first of the longest on ties.
                let longest = texts
                    .iter()
                    .enumerate()
                    .rev()
                    .max_by_key(|(_, t)| t.chars().count())
                    .map(|(i, _)| i);
                (longest, texts.clone())
            }
            Selection::Rated => {
                let (ratings, cut) =
                    rate_all(ctx, request, &texts, &temp(self.params.rating_temperature)).await?;
                let best = argmax(&ratings);
                if let Some(t) = best.and_then(|i| texts.get(i)) {
                    ctx.offer(t.clone());
                }
                if let Some(e) = cut {
                    return Err(e);
                }
                let labelled = texts
                    .iter()
                    .zip(&ratings)
                    .map(|(t, r)| match r {
                        Some(r) => format!("[rating: {r}]\n{t}"),
                        None => format!("[rating: none]\n{t}"),
                    })
                    .collect();
                (best, labelled)
            }
        };
        let answer = chosen
            .and_then(|i| texts.get(i))
            .or_else(|| texts.first())
            .cloned()
            .unwrap_or_default();
        Ok(Answer {
            choices: vec![answer],
            candidates,
            vote: None,
        })
    }
}

#[cfg(test)]
mod tests {
    use std::sync::Arc;

    use super::*;
    use crate::mock::MockBackend;
    use crate::strategy::{Budget, run};
    use crate::types::{ChatRequest, Sampling};

    fn by_temperature(r: &ChatRequest) -> String {
        let t = r.sampling.temperature.unwrap_or(-1.0);
        if r.messages
            .last()
            .is_some_and(|m| m.content.starts_with("Rate the above"))
        {
            // Rate the sample drawn at 0.9 highest.
            let rated = &r.messages[r.messages.len() - 2].content;
            return if rated.contains("0.9") {
                "9".into()
            } else {
                "Rating: 4".into()
            };
        }
        match (t * 10.0).round() as i32 {
            3 => "at 0.3 the answer is 12".into(),
            6 => "at 0.6 I get 13, a long and winding explanation of it".into(),
            9 => "at 0.9: answer is 13".into(),
            12 => "at 1.2 the answer is 12".into(),
            _ => "at 1.5 the answer is 13".into(),
        }
    }

    fn strategy(selection: Selection) -> Diverse {
        Diverse::new(Params {
            selection,
            ..Params::default()
        })
        .unwrap()
    }

    #[tokio::test]
    async fn each_sample_is_its_own_request_with_its_temperature() {
        let mock = Arc::new(MockBackend::new(|r, _| Ok(by_temperature(r))));
        let mut req = StrategyRequest::user("q");
        req.sampling = Sampling::default().with_seed(100).with_top_k(20);
        let out = run(
            &strategy(Selection::Vote),
            mock.clone(),
            &req,
            Budget::default(),
        )
        .await
        .unwrap();
        let sent = mock.requests();
        assert_eq!(sent.len(), 5);
        let mut temps: Vec<f32> = sent.iter().filter_map(|r| r.sampling.temperature).collect();
        temps.sort_by(f32::total_cmp);
        let expected = [0.3, 0.6, 0.9, 1.2, 1.5];
        for (t, e) in temps.iter().zip(expected) {
            assert!((t - e).abs() < 1e-6, "{temps:?}");
        }
        let mut seeds: Vec<u32> = sent.iter().filter_map(|r| r.sampling.seed).collect();
        seeds.sort_unstable();
        assert_eq!(seeds, vec![100, 101, 102, 103, 104]);
        assert!(
            sent.iter()
                .all(|r| r.n == 1 && r.sampling.top_k == Some(20))
        );
        // 13 has three votes (0.6, 0.9, 1.5); the lowest-temperature member is returned,
        // not the first sample (which says 12).
        assert_eq!(out.answer, by_temperature(&sent_at(&sent, 0.6)));
    }

    #[tokio::test]
    async fn samples_are_recorded_and_only_the_kept_share_votes() {
        let mock = Arc::new(MockBackend::new(|r, _| Ok(by_temperature(r))));
        let keep = Diverse::new(Params {
            keep: 0.4,
            ..Params::default()
        })
        .unwrap();
        let out = run(
            &keep,
            mock.clone(),
            &StrategyRequest::user("q"),
            Budget::default(),
        )
        .await
        .unwrap();
        assert!(mock.requests().iter().all(|r| r.logprobs.is_some()));
        assert_eq!(out.samples.len(), 5);
        assert!(out.samples.iter().all(|s| s.confidence.is_some()));
        // Equal confidences: the first two samples (12 at 0.3, 13 at 0.6) vote, a tie
        // that the first seen wins, where all five would have chosen 13.
        assert_eq!(out.answer, "at 0.3 the answer is 12");
        assert!(
            Diverse::new(Params {
                keep: 0.0,
                ..Params::default()
            })
            .is_err()
        );
    }

    fn sent_at(sent: &[ChatRequest], t: f32) -> ChatRequest {
        sent.iter()
            .find(|r| r.sampling.temperature.is_some_and(|x| (x - t).abs() < 1e-6))
            .cloned()
            .unwrap()
    }

    #[tokio::test]
    async fn longest_and_rated_selection() {
        let mock = Arc::new(MockBackend::new(|r, _| Ok(by_temperature(r))));
        let out = run(
            &strategy(Selection::Longest),
            mock.clone(),
            &StrategyRequest::user("q"),
            Budget::default(),
        )
        .await
        .unwrap();
        assert!(out.answer.starts_with("at 0.6"));
        assert_eq!(mock.calls(), 5);

        let mock = Arc::new(MockBackend::new(|r, _| Ok(by_temperature(r))));
        let out = run(
            &strategy(Selection::Rated),
            mock.clone(),
            &StrategyRequest::user("q"),
            Budget::default(),
        )
        .await
        .unwrap();
        assert_eq!(out.answer, "at 0.9: answer is 13");
        let sent = mock.requests();
        assert_eq!(sent.len(), 10);
        let ratings: Vec<&ChatRequest> = sent
            .iter()
            .filter(|r| {
                r.messages
                    .last()
                    .is_some_and(|m| m.content.starts_with("Rate the above"))
            })
            .collect();
        assert_eq!(ratings.len(), 5);
        assert!(ratings.iter().all(|r| r.sampling.temperature == Some(0.1)));
        assert!(out.candidates.iter().any(|c| c.starts_with("[rating: 9]")));
    }

    #[tokio::test]
    async fn budget_cut_returns_a_sample() {
        let mock = Arc::new(MockBackend::new(|r, _| Ok(by_temperature(r))));
        // Room for the five samples but not for the ratings.
        let budget = Budget {
            max_total_tokens: Some(40),
            max_duration: None,
        };
        let out = run(
            &strategy(Selection::Rated),
            mock.clone(),
            &StrategyRequest::user("q"),
            budget,
        )
        .await
        .unwrap();
        assert!(out.budget_exhausted);
        assert!(out.answer.starts_with("at "));
        assert!(mock.calls() < 10);
    }

    #[test]
    fn bad_ladders_are_rejected() {
        let p = Params {
            min_temperature: 1.0,
            max_temperature: 0.5,
            ..Params::default()
        };
        assert!(matches!(
            Diverse::new(p),
            Err(SpecError::BadParameter { .. })
        ));
        let one = Diverse::new(Params {
            n: 1,
            ..Params::default()
        })
        .unwrap();
        assert_eq!(one.ladder(), vec![0.3]);
    }
}
