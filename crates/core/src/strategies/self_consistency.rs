//! `self_consistency`: k samples at T=1 in one request, majority vote on the extracted
//! answers; a response from the winning group is returned. Also the engine of
//! `majority_voting`, which differs only in its defaults.

use async_trait::async_trait;
use serde::{Deserialize, Serialize};

use super::select::vote_samples;
use super::util::{samples, temp};
use crate::extract::AnswerKind;
use crate::strategy::{Answer, Ctx, Strategy, StrategyError, StrategyRequest};

#[derive(Debug, Clone, Serialize, Deserialize)]
#[serde(default, deny_unknown_fields)]
pub struct Params {
    /// Samples drawn, in one request with `n = k`.
    pub k: u32,
    pub temperature: f32,
    /// Answer kind to extract and vote on (`number`, `choice`, `yes_no`, `text`); `null`: any.
    pub answer_kind: Option<AnswerKind>,
}

impl Default for Params {
    fn default() -> Self {
        Self {
            k: 5,
            temperature: 1.0,
            answer_kind: None,
        }
    }
}

/// Sample `k`, vote on the extracted answers, answer with the winning group.
#[derive(Debug, Clone)]
pub(crate) struct Voting {
    pub slug: &'static str,
    pub k: u32,
    pub temperature: f32,
    pub answer_kind: Option<AnswerKind>,
}

impl Voting {
    pub fn checked(self) -> Result<Self, StrategyError> {
        if self.k == 0 {
            return Err(StrategyError::BadParameter {
                approach: self.slug.to_string(),
                message: "k must be at least 1".into(),
            });
        }
        Ok(self)
    }

    pub async fn run(&self, ctx: &Ctx, request: &StrategyRequest) -> Result<Answer, StrategyError> {
        request.query()?;
        let texts = samples(
            ctx,
            request,
            "sample",
            request.messages.clone(),
            &temp(self.temperature),
            self.k,
        )
        .await?;
        let sv = vote_samples(&texts, self.answer_kind);
        if let Some(v) = &sv.vote {
            tracing::info!(
                approach = self.slug,
                winner = %v.winner,
                votes = v.count,
                distribution = %v.summary(),
                "vote"
            );
        }
        // The winning group first, then one sample per other answer (for n > 1).
        let mut order = sv.representatives();
        if order.is_empty() && !texts.is_empty() {
            order.push(0);
        }
        let choices: Vec<String> = order
            .iter()
            .take(request.n.max(1) as usize)
            .filter_map(|&i| texts.get(i).cloned())
            .collect();
        if let Some(first) = choices.first() {
            ctx.offer(first.clone());
        }
        Ok(Answer {
            choices,
            candidates: sv.labelled(&texts),
            vote: sv.vote,
        })
    }
}

#[derive(Debug, Clone)]
pub struct SelfConsistency {
    voting: Voting,
}

impl SelfConsistency {
    pub fn new(params: Params) -> Result<Self, StrategyError> {
        Ok(Self {
            voting: Voting {
                slug: "self_consistency",
                k: params.k,
                temperature: params.temperature,
                answer_kind: params.answer_kind,
            }
            .checked()?,
        })
    }
}

#[async_trait]
impl Strategy for SelfConsistency {
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
    use crate::types::Sampling;

    const SAMPLES: [&str; 5] = [
        "She has 3 + 4 = 7 apples.",
        "Adding gives 8. The answer is 8.",
        "3 plus 4 is seven, so \\boxed{7}",
        "I am not sure.",
        "#### 7.0",
    ];

    #[tokio::test]
    async fn one_request_of_k_samples_and_a_vote() {
        let mock = Arc::new(MockBackend::scripted(SAMPLES));
        let mut req = StrategyRequest::user("Sam has 3 apples and gets 4 more. How many?");
        req.sampling = Sampling::default().with_top_p(0.9).with_temperature(0.0);
        let sc = SelfConsistency::new(Params::default()).unwrap();
        let out = run(&sc, mock.clone(), &req, Budget::default())
            .await
            .unwrap();
        let sent = mock.requests();
        assert_eq!(sent.len(), 1);
        assert_eq!(sent[0].n, 5);
        // The step's temperature wins; the caller's other settings stay.
        assert_eq!(sent[0].sampling.temperature, Some(1.0));
        assert_eq!(sent[0].sampling.top_p, Some(0.9));
        // 7 wins 3 to 1; the first sample of the winning group is returned.
        assert_eq!(out.answer, SAMPLES[0]);
        assert_eq!(out.candidates.len(), 5);
        assert!(out.candidates[0].starts_with("[answer: 7, votes: 3/5]"));
        assert!(out.candidates[1].starts_with("[answer: 8, votes: 1/5]"));
        assert!(out.candidates[3].starts_with("[answer: none]"));
        // The vote itself reaches the outcome.
        let vote = out.vote.expect("the vote is reported");
        assert_eq!((vote.winner.as_str(), vote.count), ("7", 3));
        assert_eq!(vote.summary(), "7: 3, 8: 1, none: 1");
    }

    #[tokio::test]
    async fn answer_kind_and_n_choices() {
        let replies = [
            "The answer is (B).",
            "Answer: C",
            "b",
            "I pick (C)... no, (B)",
        ];
        let mock = Arc::new(MockBackend::scripted(replies));
        let mut req = StrategyRequest::user("Which? (A) 1 (B) 2 (C) 3");
        req.n = 2;
        let params = Params {
            k: 4,
            temperature: 0.8,
            answer_kind: Some(AnswerKind::Choice),
        };
        let out = run(
            &SelfConsistency::new(params).unwrap(),
            mock.clone(),
            &req,
            Budget::default(),
        )
        .await
        .unwrap();
        assert_eq!(mock.requests()[0].n, 4);
        assert_eq!(mock.requests()[0].sampling.temperature, Some(0.8));
        // B twice, C once, the last mentions both (B) and (C): no answer.
        assert_eq!(out.choices, vec![replies[0], replies[1]]);
        assert!(out.candidates[3].starts_with("[answer: none]"));
    }

    #[test]
    fn rejects_k_zero() {
        let p = Params {
            k: 0,
            ..Params::default()
        };
        assert!(matches!(
            SelfConsistency::new(p),
            Err(StrategyError::BadParameter { .. })
        ));
    }
}
