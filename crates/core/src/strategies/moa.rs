//! `moa`: mixture of agents with one model. Samples (T=1, one request) -> one critique
//! of all (T=0.1) -> one synthesis (T=0.1), with the reference prompts' words. The
//! synthesis is asked as the next turn of the critique's conversation (the reference sends
//! query, candidates and critique again in one new message), so a backend that keeps the
//! critique's prompt and reply (the native backend's prefix reuse, llama.cpp's
//! `cache_prompt`, vLLM's prefix caching) evaluates only the request that follows them.

use async_trait::async_trait;
use serde::{Deserialize, Serialize};

use super::Approach;
use super::read_answer::answer_kind;
use super::select::best_guess;
use super::util::{one, prompt, samples, temp};
use crate::Message;
use crate::spec::SpecError;
use crate::strategy::{Answer, Ctx, Strategy, StrategyError, StrategyRequest};

/// The parameters of `moa`; a field a spec leaves out takes its default here
/// (`optillm approaches` lists them).
#[derive(Debug, Clone, Serialize, Deserialize)]
#[serde(default, deny_unknown_fields)]
pub struct Params {
    /// Candidate responses, in one request.
    pub samples: u32,
    pub temperature: f32,
    pub critique_temperature: f32,
    /// Most tokens of the critique (reference: 512).
    pub critique_max_tokens: u32,
    pub synthesis_temperature: f32,
}

impl Default for Params {
    fn default() -> Self {
        Self {
            samples: 3,
            temperature: 1.0,
            critique_temperature: 0.1,
            critique_max_tokens: 512,
            synthesis_temperature: 0.1,
        }
    }
}

/// The `moa` strategy (the module documentation describes it): built from typed
/// [`Params`] with `new`, or by name through [`crate::strategies::build`].
#[derive(Debug, Clone)]
pub struct MixtureOfAgents {
    params: Params,
}

impl MixtureOfAgents {
    pub fn new(params: Params) -> Result<Self, SpecError> {
        if params.samples == 0 || params.critique_max_tokens == 0 {
            return Err(SpecError::BadParameter {
                approach: Self::SLUG.into(),
                message: "samples and critique_max_tokens must be at least 1".into(),
            });
        }
        Ok(Self { params })
    }
}

fn candidates_block(texts: &[String]) -> String {
    texts
        .iter()
        .enumerate()
        .map(|(i, t)| format!("Candidate {}:\n{}", i + 1, t.trim()))
        .collect::<Vec<_>>()
        .join("\n\n")
}

fn count_word(n: usize) -> String {
    match n {
        1 => "one".into(),
        2 => "two".into(),
        3 => "three".into(),
        4 => "four".into(),
        5 => "five".into(),
        _ => n.to_string(),
    }
}

pub(crate) fn critique_prompt(query: &str, texts: &[String]) -> String {
    format!(
        "Original query: {query}\n\nHere are {} candidate responses to the original query.\n\n\
         {}\n\nPlease analyze and critique each candidate response, discussing its strengths \
         and weaknesses. Provide your analysis for each candidate separately.\n\n\
         Please provide your critique for each candidate:",
        count_word(texts.len()),
        candidates_block(texts)
    )
}

/// The synthesis request, the turn after the critique.
pub(crate) const SYNTHESIS_REQUEST: &str = "Based on the candidate responses and your \
    critiques of them above, generate a final response to the original query.\n\n\
    Please provide a final, optimized response to the original query:";

/// The critique's conversation, its reply, then the synthesis request.
fn synthesis_messages(
    system: Option<&str>,
    critique_prompt: String,
    critique: &str,
) -> Vec<Message> {
    let mut messages = prompt(system, critique_prompt);
    messages.push(Message::assistant(critique));
    messages.push(Message::user(SYNTHESIS_REQUEST));
    messages
}

impl Approach for MixtureOfAgents {
    const SLUG: &'static str = "moa";
    const DESCRIPTION: &'static str =
        "Mixture of agents: samples, one critique of all, one synthesis";
    type Params = Params;

    fn from_params(params: Params) -> Result<Self, SpecError> {
        Self::new(params)
    }
}

#[async_trait]
impl Strategy for MixtureOfAgents {
    fn slug(&self) -> &str {
        Self::SLUG
    }

    async fn run(&self, ctx: &Ctx, request: &StrategyRequest) -> Result<Answer, StrategyError> {
        let query = request.query()?;
        let p = &self.params;
        let texts = samples(
            ctx,
            request,
            "candidates",
            request.messages.clone(),
            &temp(p.temperature),
            p.samples,
        )
        .await?;
        if let Some(guess) = best_guess(&texts, answer_kind(query, None)) {
            ctx.offer(guess);
        }
        let asked = critique_prompt(query, &texts);
        let critique = one(
            ctx,
            request,
            "critique",
            prompt(request.system(), asked.clone()),
            &temp(p.critique_temperature).with_max_tokens(p.critique_max_tokens),
        )
        .await?;
        let fin = ctx
            .final_text(
                "synthesis",
                request.chat(
                    synthesis_messages(request.system(), asked, &critique),
                    &temp(p.synthesis_temperature),
                ),
            )
            .await?;
        let mut candidates = texts;
        candidates.push(format!("[critique]\n{critique}"));
        Ok(Answer {
            choices: vec![fin],
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
    use crate::types::{Message, Sampling};

    #[tokio::test]
    async fn samples_critique_synthesis() {
        let mock = Arc::new(MockBackend::scripted([
            "first try 41",
            "second try 42",
            "third try 42",
            "Candidate 1 is off by one.",
            "Final: 42",
        ]));
        let mut req =
            StrategyRequest::new(vec![Message::system("Be exact."), Message::user("6*7?")]);
        req.sampling = Sampling::default().with_seed(3);
        let moa = MixtureOfAgents::new(Params::default()).unwrap();
        let out = run(&moa, mock.clone(), &req, Budget::default())
            .await
            .unwrap();
        assert_eq!(out.answer, "Final: 42");
        let sent = mock.requests();
        assert_eq!(sent.len(), 3);
        assert_eq!(sent[0].n, 3);
        assert_eq!(sent[0].sampling.temperature, Some(1.0));
        assert_eq!(sent[0].sampling.seed, Some(3));
        assert_eq!(sent[1].n, 1);
        assert_eq!(sent[1].sampling.temperature, Some(0.1));
        assert_eq!(sent[1].sampling.max_tokens, Some(512));
        assert_eq!(sent[1].messages[0], Message::system("Be exact."));
        let critique = &sent[1].messages[1].content;
        assert!(critique.starts_with("Original query: 6*7?"));
        assert!(critique.contains("three candidate responses"));
        assert!(critique.contains("Candidate 2:\nsecond try 42"));
        assert!(critique.ends_with("Please provide your critique for each candidate:"));
        // The synthesis continues the critique's conversation, byte for byte (prefix reuse).
        assert_eq!(sent[2].sampling.temperature, Some(0.1));
        assert_eq!(sent[2].messages.len(), 4);
        assert_eq!(sent[2].messages[..2], sent[1].messages[..]);
        assert_eq!(
            sent[2].messages[2],
            Message::assistant("Candidate 1 is off by one.")
        );
        assert_eq!(sent[2].messages[3], Message::user(SYNTHESIS_REQUEST));
        assert_eq!(out.candidates.len(), 4);
    }

    #[tokio::test]
    async fn budget_cut_before_critique_returns_the_voted_sample() {
        let mock = Arc::new(MockBackend::scripted([
            "it is 41", "it is 42", "so 42", "critique", "final",
        ]));
        // Prompt (1 word) + three 3-word and 2-word samples = 9 tokens: the budget.
        let budget = Budget {
            max_total_tokens: Some(9),
            max_duration: None,
        };
        let moa = MixtureOfAgents::new(Params::default()).unwrap();
        let out = run(&moa, mock.clone(), &StrategyRequest::user("q"), budget)
            .await
            .unwrap();
        assert!(out.budget_exhausted);
        assert_eq!(out.answer, "it is 42");
        assert_eq!(mock.calls(), 1);
    }
}
