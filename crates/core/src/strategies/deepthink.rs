//! `deepthink`: a SELF-DISCOVER reasoning structure, then uncertainty-routed chain of thought.
//!
//! SELF-DISCOVER (Zhou et al. 2024): the model SELECTs reasoning modules useful for the
//! task, ADAPTs them to it, and IMPLEMENTs them as a step-by-step reasoning structure
//! (three calls). Then `samples` solutions following the structure are drawn in one
//! n-request; when the majority answer holds at least `confidence_threshold` of them, it
//! wins (a member of the majority group is returned); otherwise one greedy (T=0) solution
//! is the answer.

use async_trait::async_trait;
use serde::{Deserialize, Serialize};

use super::Approach;
use super::read_answer::answer_kind;
use super::util::{one, prompt, samples, temp};
use crate::extract::{extract_as, vote};
use crate::spec::SpecError;
use crate::strategy::{Answer, Ctx, Strategy, StrategyError, StrategyRequest};

const MODULES: &[&str] = &[
    "How could I devise an experiment to help solve that problem?",
    "How can I simplify the problem so that it is easier to solve?",
    "What are the key assumptions underlying this problem?",
    "Break the problem into sub-problems and solve them one by one.",
    "Critical thinking: analyse the problem from different perspectives and question assumptions.",
    "Use step-by-step reasoning and check each step.",
    "What is the core question being asked, and what data is given?",
    "Is this problem similar to a known problem with a known method?",
    "Work backwards from what the answer must satisfy.",
    "Make a plan, carry it out, and verify the result against the question.",
];

/// The parameters of `deepthink`; a field a spec leaves out takes its default here
/// (`optillm approaches` lists them).
#[derive(Debug, Clone, Serialize, Deserialize)]
#[serde(default, deny_unknown_fields)]
pub struct Params {
    /// Chain-of-thought samples for the uncertainty check (one n-request).
    pub samples: u32,
    pub temperature: f32,
    /// Majority share needed to trust the vote; below it the greedy answer is used.
    pub confidence_threshold: f64,
    /// Temperature of the SELF-DISCOVER calls.
    pub discover_temperature: f32,
}

impl Default for Params {
    fn default() -> Self {
        Self {
            samples: 3,
            temperature: 0.7,
            confidence_threshold: 0.6,
            discover_temperature: 0.3,
        }
    }
}

/// The `deepthink` strategy (the module documentation describes it): built from typed
/// [`Params`] with `new`, or by name through [`crate::strategies::build`].
#[derive(Debug)]
pub struct DeepThink {
    params: Params,
}

impl DeepThink {
    pub fn new(params: Params) -> Result<Self, SpecError> {
        if params.samples == 0 || !(0.0..=1.0).contains(&params.confidence_threshold) {
            return Err(SpecError::BadParameter {
                approach: Self::SLUG.into(),
                message: "samples must be at least 1 and confidence_threshold in 0..=1".into(),
            });
        }
        Ok(Self { params })
    }
}

impl Approach for DeepThink {
    const SLUG: &'static str = "deepthink";
    const DESCRIPTION: &'static str = "SELF-DISCOVER reasoning structure, then uncertainty-routed CoT (vote if confident, else greedy)";
    type Params = Params;

    fn from_params(params: Params) -> Result<Self, SpecError> {
        Self::new(params)
    }
}

#[async_trait]
impl Strategy for DeepThink {
    fn slug(&self) -> &str {
        Self::SLUG
    }

    async fn run(&self, ctx: &Ctx, request: &StrategyRequest) -> Result<Answer, StrategyError> {
        let p = &self.params;
        let query = request.query()?;
        let system = request.system();
        let step = temp(p.discover_temperature);
        let modules = MODULES
            .iter()
            .map(|m| format!("- {m}"))
            .collect::<Vec<_>>()
            .join("\n");
        let selected = one(
            ctx,
            request,
            "self-discover: select",
            prompt(
                system,
                format!(
                    "Task:\n{query}\n\nReasoning modules:\n{modules}\n\nSelect the few reasoning \
                     modules most useful for solving this task. List them."
                ),
            ),
            &step,
        )
        .await?;
        let adapted = one(
            ctx,
            request,
            "self-discover: adapt",
            prompt(
                system,
                format!(
                    "Task:\n{query}\n\nSelected reasoning modules:\n{selected}\n\nRephrase each \
                     module so that it is specific to this task."
                ),
            ),
            &step,
        )
        .await?;
        let structure = one(
            ctx,
            request,
            "self-discover: implement",
            prompt(
                system,
                format!(
                    "Task:\n{query}\n\nAdapted reasoning modules:\n{adapted}\n\nTurn them into a \
                     step-by-step reasoning structure: a numbered plan of what to work out, in \
                     order, to reach the answer. Do not solve the task."
                ),
            ),
            &step,
        )
        .await?;
        let solve = format!(
            "{query}\n\nFollow this reasoning structure step by step:\n{structure}\n\nEnd with the \
             final answer on its own line as \"The answer is: ...\"."
        );
        let sampled = samples(
            ctx,
            request,
            "structured chain of thought",
            prompt(system, solve.clone()),
            &temp(p.temperature),
            p.samples,
        )
        .await?;
        let kind = answer_kind(query, None);
        let answers: Vec<Option<String>> = sampled.iter().map(|s| extract_as(s, kind)).collect();
        let confident = vote(&answers)
            .filter(|v| v.count as f64 / sampled.len().max(1) as f64 >= p.confidence_threshold);
        if let Some(v) = confident {
            tracing::debug!(winner = %v.winner, count = v.count, "deepthink: confident vote");
            let chosen = v
                .members
                .first()
                .and_then(|&i| sampled.get(i))
                .cloned()
                .unwrap_or_default();
            return Ok(Answer::one(chosen)
                .with_candidates(sampled)
                .with_vote(Some(v)));
        }
        if let Some(first) = sampled.first() {
            ctx.offer(first.clone());
        }
        let greedy = ctx
            .final_text(
                "greedy chain of thought (uncertain vote)",
                request.chat(prompt(system, solve), &temp(0.0)),
            )
            .await?;
        Ok(Answer::one(greedy).with_candidates(sampled))
    }
}

#[cfg(test)]
mod tests {
    use std::sync::Arc;

    use super::*;
    use crate::mock::MockBackend;
    use crate::strategy::{Budget, run};

    fn backend(answers: [&'static str; 3]) -> MockBackend {
        MockBackend::new(move |r, i| {
            let u = &r.messages.last().unwrap().content;
            Ok(if u.contains("Select the few") {
                "modules A, B".into()
            } else if u.contains("Rephrase each") {
                "adapted A, B".into()
            } else if u.contains("Turn them into") {
                "1. find x 2. check".into()
            } else if r.sampling.temperature == Some(0.0) {
                "greedy. The answer is: 100".into()
            } else {
                format!("sample {i}. The answer is: {}", answers[i as usize])
            })
        })
    }

    #[tokio::test]
    async fn confident_vote_wins() {
        let mock = Arc::new(backend(["5", "7", "5"]));
        let out = run(
            &DeepThink::new(Params::default()).unwrap(),
            mock.clone(),
            &StrategyRequest::user("q"),
            Budget::default(),
        )
        .await
        .unwrap();
        assert_eq!(out.answer, "sample 0. The answer is: 5");
        let sent = mock.requests();
        assert_eq!(sent.len(), 4);
        assert_eq!(sent[3].n, 3);
        assert_eq!(sent[3].sampling.temperature, Some(0.7));
        // The structure reaches the solving prompt; the adapted modules reach the structure.
        assert!(sent[3].messages[0].content.contains("1. find x 2. check"));
        assert!(sent[2].messages[0].content.contains("adapted A, B"));
        assert_eq!(out.vote.map(|v| v.summary()).as_deref(), Some("5: 2, 7: 1"));
    }

    #[tokio::test]
    async fn uncertain_vote_goes_greedy() {
        let mock = Arc::new(backend(["1", "2", "3"]));
        let out = run(
            &DeepThink::new(Params::default()).unwrap(),
            mock.clone(),
            &StrategyRequest::user("q"),
            Budget::default(),
        )
        .await
        .unwrap();
        assert_eq!(out.answer, "greedy. The answer is: 100");
        // The vote did not choose the answer, so none is reported.
        assert!(out.vote.is_none());
        assert_eq!(mock.calls(), 5);
        assert_eq!(out.candidates.len(), 3);
    }
}
