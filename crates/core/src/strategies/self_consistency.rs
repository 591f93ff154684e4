//! `self_consistency`: k samples at T=1 in one request, majority vote on the extracted
//! answers; a response from the winning group is returned. Also the engine of
//! `majority_voting`, which differs only in its defaults.
//!
//! Both take the options of a [`VoteRule`]: `weight` (votes weighted by each sample's
//! token confidence, when the backend returns log-probabilities), `keep` (only the most
//! confident share of the samples votes), and `batch` / `stop_at` (adaptive sampling:
//! draw `batch` samples at a time and stop once the leading answer is the majority
//! answer with probability `stop_at`). Every sample is recorded in the outcome
//! ([`crate::Outcome::samples`]) so other rules can be scored on it later.

use async_trait::async_trait;
use serde::{Deserialize, Serialize};

use futures::future::join_all;

use super::Approach;
use super::read_answer::{answer_kind, read_answer, read_kind, schema_for};
use super::select::SampleVote;
use super::util::{temp, with_confidences};
use crate::extract::{AnswerKind, Vote, extract, extract_as};
use crate::samples::{Sample, VoteRule, Weight};
use crate::spec::SpecError;
use crate::strategy::{Answer, Ctx, Strategy, StrategyError, StrategyRequest};

/// The parameters of `self_consistency`; a field a spec leaves out takes its default here
/// (`optillm approaches` lists them).
#[derive(Debug, Clone, Serialize, Deserialize)]
#[serde(default, deny_unknown_fields)]
pub struct Params {
    /// Samples drawn, in one request with `n = k` (at most, when adaptive).
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
            k: 5,
            temperature: 1.0,
            answer_kind: None,
            weight: rule.weight,
            keep: rule.keep,
            batch: rule.batch,
            stop_at: rule.stop_at,
            read_answers: false,
        }
    }
}

/// Sample `k` (in batches when adaptive), vote on the extracted answers, answer with
/// the winning group.
#[derive(Debug, Clone)]
pub(crate) struct Voting {
    pub slug: &'static str,
    pub k: u32,
    pub temperature: f32,
    pub answer_kind: Option<AnswerKind>,
    pub rule: VoteRule,
    pub read_answers: bool,
}

impl Voting {
    /// The voting of `slug` with these options, checked.
    pub fn new(
        slug: &'static str,
        k: u32,
        temperature: f32,
        answer_kind: Option<AnswerKind>,
        rule: VoteRule,
    ) -> Result<Self, SpecError> {
        let bad = |message: String| SpecError::BadParameter {
            approach: slug.to_string(),
            message,
        };
        if k == 0 {
            return Err(bad("k must be at least 1".into()));
        }
        rule.check().map_err(bad)?;
        Ok(Self {
            slug,
            k,
            temperature,
            answer_kind,
            rule,
            read_answers: false,
        })
    }

    pub async fn run(&self, ctx: &Ctx, request: &StrategyRequest) -> Result<Answer, StrategyError> {
        let kind = answer_kind(request.query()?, self.answer_kind);
        let step = temp(self.temperature);
        let batch = match self.rule.batch {
            0 => self.k,
            b => b.min(self.k),
        };
        let mut drawn: Vec<Sample> = Vec::new();
        while (drawn.len() as u32) < self.k {
            let offset = drawn.len() as u32;
            let m = batch.min(self.k - offset);
            let mut chat =
                with_confidences(ctx, request.chat(request.messages.clone(), &step).with_n(m));
            // Batch at offset d takes the seeds of samples d.. of one k-sample request.
            chat.sampling.seed = chat.sampling.seed.map(|s| s.wrapping_add(offset));
            let completion = match ctx.call("sample", chat).await {
                Ok(c) => c,
                Err(e) => {
                    // Keep what was drawn (a budget cut still returns the best so far).
                    ctx.record_samples(drawn);
                    return Err(e);
                }
            };
            let new: Vec<Sample> = completion
                .choices
                .iter()
                .map(|c| Sample::from_choice(c, kind))
                .collect();
            drawn.extend(new);
            let texts: Vec<String> = drawn.iter().map(|s| s.text.clone()).collect();
            if let Some(i) = self.rule.vote(&drawn).as_ref().and_then(Vote::chosen) {
                if let Some(t) = texts.get(i) {
                    ctx.offer(t.clone());
                }
            }
            if self.rule.batch > 0 && self.rule.should_stop(&drawn) {
                tracing::info!(
                    approach = self.slug,
                    drawn = drawn.len(),
                    k = self.k,
                    "adaptive sampling stopped early"
                );
                break;
            }
            if completion.choices.is_empty() {
                break;
            }
        }
        if self.read_answers {
            if let Err(e) = self.read_missing(ctx, request, kind, &mut drawn).await {
                ctx.record_samples(drawn);
                return Err(e);
            }
        }
        // No sample has an answer of the kind: vote on the samples' final lines, so
        // open-ended answers that agree still win over a lone one.
        if drawn.iter().all(|s| s.answer.is_none()) {
            for s in &mut drawn {
                s.answer = extract(&s.text, AnswerKind::Text);
            }
        }
        ctx.record_samples(drawn.iter().cloned());
        let texts: Vec<String> = drawn.iter().map(|s| s.text.clone()).collect();
        let sv = SampleVote {
            answers: drawn.iter().map(|s| s.answer.clone()).collect(),
            vote: self.rule.vote(&drawn),
        };
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
        if let Some(first) = sv.chosen() {
            order.retain(|&i| i != first);
            order.insert(0, first);
        }
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

impl Voting {
    /// Fills in the answers of samples that state none, by one constrained call each
    /// (concurrently); a sample whose answer was read ends with `The answer is X.`.
    async fn read_missing(
        &self,
        ctx: &Ctx,
        request: &StrategyRequest,
        vote_kind: Option<AnswerKind>,
        drawn: &mut [Sample],
    ) -> Result<(), StrategyError> {
        let query = request.query()?;
        let Some(schema) = schema_for(query, self.answer_kind) else {
            return Ok(());
        };
        // Missing is what the read kind cannot find: a sample answering a lettered
        // question with a number has no letter to vote on.
        let kind = read_kind(query, self.answer_kind);
        let missing: Vec<usize> = drawn
            .iter()
            .enumerate()
            .filter(|(_, s)| extract_as(&s.text, kind).is_none())
            .map(|(i, _)| i)
            .collect();
        let reads = join_all(missing.iter().map(|&i| {
            let text = drawn.get(i).map(|s| s.text.clone()).unwrap_or_default();
            let schema = &schema;
            async move { read_answer(ctx, request, &text, schema).await }
        }))
        .await;
        for (i, read) in missing.into_iter().zip(reads) {
            if let (Some(s), Some(a)) = (drawn.get_mut(i), read?) {
                s.text = format!("{}\n\nThe answer is {a}.", s.text.trim_end());
                s.answer = extract_as(&s.text, vote_kind);
            }
        }
        Ok(())
    }
}

/// The [`VoteRule`] of a strategy's parameters.
pub(crate) fn rule(weight: Weight, keep: f32, batch: u32, stop_at: f32) -> VoteRule {
    VoteRule {
        weight,
        keep,
        batch,
        stop_at,
    }
}

/// The `self_consistency` strategy (the module documentation describes it): built from typed
/// [`Params`] with `new`, or by name through [`crate::strategies::build`].
#[derive(Debug, Clone)]
pub struct SelfConsistency {
    voting: Voting,
}

impl SelfConsistency {
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

impl Approach for SelfConsistency {
    const SLUG: &'static str = "self_consistency";
    const DESCRIPTION: &'static str =
        "Self-consistency: k samples at T=1 in one request, majority vote on extracted answers";
    type Params = Params;

    fn from_params(params: Params) -> Result<Self, SpecError> {
        Self::new(params)
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

    /// `self_consistency` with `params` on `req`, over `mock`.
    async fn vote(
        mock: &Arc<MockBackend>,
        req: &StrategyRequest,
        params: Params,
    ) -> crate::strategy::Outcome {
        run(
            &SelfConsistency::new(params).unwrap(),
            mock.clone(),
            req,
            Budget::default(),
        )
        .await
        .unwrap()
    }

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
            ..Params::default()
        };
        let out = vote(&mock, &req, params).await;
        assert_eq!(mock.requests()[0].n, 4);
        assert_eq!(mock.requests()[0].sampling.temperature, Some(0.8));
        // B twice, C once, the last mentions both (B) and (C): no answer.
        assert_eq!(out.texts(), vec![replies[0], replies[1]]);
        assert!(out.candidates[3].starts_with("[answer: none]"));
    }

    #[tokio::test]
    async fn a_boxed_math_question_votes_on_whole_latex_answers() {
        // A point is one answer, not its first number, and one point written two ways
        // is one answer: it wins 2 to 1 to 1.
        let replies = [
            "So the point is \\boxed{(3, 0)}.",
            "The answer is \\boxed{3}.",
            "The answer is \\boxed{\\left( 3, \\frac{\\pi}{2} \\right)}.",
            "The answer is \\boxed{(3,\\dfrac{\\pi}{2})}.",
        ];
        let mock = Arc::new(MockBackend::scripted(replies));
        let req = StrategyRequest::user(
            "Convert (0,3) to polar coordinates. Finish with \"The answer is \\boxed{X}\".",
        );
        let params = Params {
            k: 4,
            ..Params::default()
        };
        let out = vote(&mock, &req, params).await;
        assert_eq!(out.texts(), vec![replies[2]]);
        assert_eq!(out.vote.expect("a vote").count, 2);
    }

    #[tokio::test]
    async fn a_lettered_question_votes_on_letters_without_an_answer_kind() {
        // Two samples end on a number, one names a letter: the numbers are no answer to
        // a question with lettered options, so the letter wins.
        let replies = [
            "Iron is a metal, so the answer is (B).",
            "There are 3 options and 2 are not metals.",
            "Counting again: 3 options, 2 not metals.",
        ];
        let mock = Arc::new(MockBackend::scripted(replies));
        let req = StrategyRequest::user("Which is a metal?\n(A) wood\n(B) iron\n(C) glass");
        let params = Params {
            k: 3,
            ..Params::default()
        };
        let out = vote(&mock, &req, params).await;
        assert_eq!(out.texts(), vec![replies[0]]);
        let vote = out.vote.expect("a vote");
        assert_eq!((vote.winner.as_str(), vote.count), ("B", 1));
        assert_eq!(out.samples[1].answer, None);
    }

    #[tokio::test]
    async fn adaptive_batches_continue_the_seeds_and_stop_on_agreement() {
        let replies = ["#### 7", "#### 7", "#### 7", "#### 7", "#### 9", "#### 9"];
        let mock = Arc::new(MockBackend::scripted(replies));
        let mut req = StrategyRequest::user("3 + 4?");
        req.sampling = Sampling::default().with_seed(100);
        let params = Params {
            k: 6,
            batch: 2,
            ..Params::default()
        };
        let out = vote(&mock, &req, params).await;
        let sent = mock.requests();
        // 2 then 4 agreeing answers: P = 31/32 >= 0.95, so the third batch is not drawn.
        assert_eq!(sent.iter().map(|r| r.n).collect::<Vec<_>>(), vec![2, 2]);
        assert_eq!(
            sent.iter().map(|r| r.sampling.seed).collect::<Vec<_>>(),
            vec![Some(100), Some(102)]
        );
        // Confidences were asked for, and every sample is in the outcome.
        assert!(
            sent.iter()
                .all(|r| r.logprobs == Some(crate::samples::CONFIDENCE_TOP_K))
        );
        assert_eq!(out.samples.len(), 4);
        assert!(out.samples.iter().all(|s| s.confidence.is_some()));
        assert_eq!(out.samples[0].answer.as_deref(), Some("7"));
        assert_eq!(out.vote.unwrap().count, 4);
    }

    #[tokio::test]
    async fn no_logprobs_no_confidence_and_weights_fall_back_to_counts() {
        let caps = crate::types::Capabilities {
            native_n: true,
            ..Default::default()
        };
        let mock = Arc::new(MockBackend::scripted(SAMPLES).with_capabilities(caps));
        let params = Params {
            weight: Weight::LowestGroup,
            keep: 0.5,
            ..Params::default()
        };
        let out = run(
            &SelfConsistency::new(params).unwrap(),
            mock.clone(),
            &StrategyRequest::user("3 + 4?"),
            Budget::default(),
        )
        .await
        .unwrap();
        assert_eq!(mock.requests()[0].logprobs, None);
        assert!(out.samples.iter().all(|s| s.confidence.is_none()));
        // Without confidences every sample votes once: 7 wins 3 to 1.
        assert_eq!(out.vote.unwrap().winner, "7");
    }

    #[tokio::test]
    async fn samples_without_an_answer_can_have_it_read() {
        let mock = Arc::new(MockBackend::scripted([
            "So it is 7.",
            "I think about it and stop",
            "#### 8",
            r#"{"answer": 7}"#,
        ]));
        let params = Params {
            k: 3,
            read_answers: true,
            answer_kind: Some(AnswerKind::Number),
            ..Params::default()
        };
        let out = run(
            &SelfConsistency::new(params).unwrap(),
            mock.clone(),
            &StrategyRequest::user("3 + 4?"),
            Budget::default(),
        )
        .await
        .unwrap();
        // One constrained call, for the sample without an answer only.
        let sent = mock.requests();
        assert_eq!(sent.len(), 2);
        assert!(sent[1].format.is_some());
        assert_eq!(
            out.samples[1].answer.as_deref(),
            Some("7"),
            "{:?}",
            out.samples
        );
        assert!(out.samples[1].text.ends_with("The answer is 7."));
        assert_eq!(out.vote.unwrap().winner, "7");
    }

    #[tokio::test]
    async fn a_lettered_question_reads_a_letter_when_the_sample_states_none() {
        // With no answer kind set, a number is an answer to the generic extraction, but a
        // lettered question needs a letter: that sample is read.
        let mock = Arc::new(MockBackend::scripted([
            "The answer is B.",
            "It melts at 0 degrees, so 0.",
            r#"{"answer": "A"}"#,
        ]));
        let params = Params {
            k: 2,
            read_answers: true,
            ..Params::default()
        };
        let out = run(
            &SelfConsistency::new(params).unwrap(),
            mock.clone(),
            &StrategyRequest::user("When does ice melt?\n(A) at 0 C\n(B) at 50 C"),
            Budget::default(),
        )
        .await
        .unwrap();
        let sent = mock.requests();
        assert_eq!(sent.len(), 2, "{sent:?}");
        assert!(out.samples[1].text.ends_with("The answer is A."));
        assert_eq!(out.samples[1].answer.as_deref(), Some("A"));
        assert_eq!(out.samples[0].answer.as_deref(), Some("B"));
    }

    #[test]
    fn rejects_k_zero() {
        let p = Params {
            k: 0,
            ..Params::default()
        };
        assert!(matches!(
            SelfConsistency::new(p),
            Err(SpecError::BadParameter { .. })
        ));
        let p = Params {
            keep: 1.5,
            ..Params::default()
        };
        assert!(matches!(
            SelfConsistency::new(p),
            Err(SpecError::BadParameter { .. })
        ));
    }
}
