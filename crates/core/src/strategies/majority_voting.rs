//! `majority_voting`: k samples at T=0.6 in one request, vote on the extracted answers
//! (`\boxed{}`, "The answer is", option letters, numbers normalised).

use async_trait::async_trait;
use serde::{Deserialize, Serialize};

use super::Approach;
use super::self_consistency::{Voting, rule};
use crate::extract::AnswerKind;
use crate::samples::{VoteRule, Weight};
use crate::spec::SpecError;
use crate::strategy::{Answer, Ctx, Strategy, StrategyError, StrategyRequest};

/// The parameters of `majority_voting`; a field a spec leaves out takes its default here
/// (`optillm approaches` lists them).
#[derive(Debug, Clone, Serialize, Deserialize)]
#[serde(default, deny_unknown_fields)]
pub struct Params {
    /// Samples drawn, in one request with `n = k`.
    pub k: u32,
    pub temperature: f32,
    /// Answer kind to extract and vote on (`number`, `choice`, `yes_no`, `text`); `null`: any.
    pub answer_kind: Option<AnswerKind>,
    /// What weighs a vote: `none`, `mean`, `lowest_group`, `tail` (token confidence).
    pub weight: Weight,
    /// Share of the samples that vote, the most confident first (1: all).
    pub keep: f32,
    /// Adaptive sampling: samples per request, stopping early (0: all `k` at once).
    pub batch: u32,
    /// Adaptive sampling's threshold (Beta stopping rule).
    pub stop_at: f32,
    /// Read the final answer of samples that state none with one constrained call each
    /// (a JSON schema; backends with structured output only).
    pub read_answers: bool,
}

impl Default for Params {
    fn default() -> Self {
        let rule = VoteRule::default();
        Self {
            k: 8,
            temperature: 0.6,
            answer_kind: None,
            weight: rule.weight,
            keep: rule.keep,
            batch: rule.batch,
            stop_at: rule.stop_at,
            read_answers: false,
        }
    }
}

/// The `majority_voting` strategy (the module documentation describes it): built from typed
/// [`Params`] with `new`, or by name through [`crate::strategies::build`].
#[derive(Debug, Clone)]
pub struct MajorityVoting {
    voting: Voting,
}

impl MajorityVoting {
    pub fn new(params: Params) -> Result<Self, SpecError> {
        Ok(Self {
            voting: Voting {
                read_answers: params.read_answers,
                ..Voting::new(
                    Self::SLUG,
                    params.k,
                    params.temperature,
                    params.answer_kind,
                    rule(params.weight, params.keep, params.batch, params.stop_at),
                )?
            },
        })
    }
}

impl Approach for MajorityVoting {
    const SLUG: &'static str = "majority_voting";
    const DESCRIPTION: &'static str =
        "Majority voting: k samples at T=0.6 in one request, vote on normalised answers";
    type Params = Params;

    fn from_params(params: Params) -> Result<Self, SpecError> {
        Self::new(params)
    }
}

#[async_trait]
impl Strategy for MajorityVoting {
    fn slug(&self) -> &str {
        self.voting.slug
    }

    async fn run(&self, ctx: &Ctx, request: &StrategyRequest) -> Result<Answer, StrategyError> {
        self.voting.run(ctx, request).await
    }
}

#[cfg(test)]
mod tests {
    use std::sync::Arc;

    use super::*;
    use crate::mock::MockBackend;
    use crate::strategy::{Budget, run};

    #[tokio::test]
    async fn eight_samples_at_0_6_and_normalised_vote() {
        let replies = [
            "\\boxed{\\frac{1}{2}}",
            "It is 0.5",
            "The answer is 1/3.",
            "Answer: 0.50",
            "1/3",
            "#### 0.5",
            "hmm",
            "So \\boxed{1/3}",
        ];
        let mock = Arc::new(MockBackend::scripted(replies));
        let mv = MajorityVoting::new(Params::default()).unwrap();
        let out = run(
            &mv,
            mock.clone(),
            &StrategyRequest::user("Half of 1?"),
            Budget::default(),
        )
        .await
        .unwrap();
        let sent = mock.requests();
        assert_eq!(sent.len(), 1);
        assert_eq!(sent[0].n, 8);
        assert_eq!(sent[0].sampling.temperature, Some(0.6));
        // 1/2 (boxed frac, 0.5, 0.50, #### 0.5) beats 1/3 (3 votes) 4 to 3.
        assert_eq!(out.answer, replies[0]);
        assert!(out.candidates[0].starts_with("[answer: 0.5, votes: 4/8]"));
        assert!(out.candidates[2].starts_with("[answer: 0.3333333333, votes: 3/8]"));
        assert_eq!(out.usage.calls, 1);
    }
}
