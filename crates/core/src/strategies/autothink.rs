//! `autothink`: a thinking budget chosen by query difficulty, then budget forcing.
//!
//! The difficulty comes from a **heuristic classifier** (query length, math and logic
//! keywords, numbers and operators), not from the trained classifier and steering
//! vectors of the reference. Easy queries get a short thinking budget and no minimum,
//! hard ones a long budget and a higher minimum; the generation itself is `thinkdeeper`'s
//! budget forcing.

use async_trait::async_trait;
use serde::{Deserialize, Serialize};

use super::Approach;
use super::sampler::{max_new_tokens, run_seed};
use super::thinkdeeper::{self, Effort, Forcing, run_forcing};
use crate::spec::SpecError;
use crate::strategy::{Answer, Ctx, Strategy, StrategyError, StrategyRequest};

pub const SLUG: &str = "autothink";

/// The parameters of `autothink`; a field a spec leaves out takes its default here
/// (`optillm approaches` lists them).
#[derive(Debug, Clone, Serialize, Deserialize)]
#[serde(default, deny_unknown_fields)]
pub struct Params {
    /// Most tokens generated (thinking and answer).
    pub max_tokens: u32,
    /// Minimum thinking budget per difficulty, as fractions of `max_tokens`.
    pub min_fraction_easy: f32,
    pub min_fraction_medium: f32,
    pub min_fraction_hard: f32,
    pub wait_text: String,
    pub answer_text: String,
    pub think_end: String,
    pub temperature: f32,
    pub top_p: f32,
    pub seed: Option<u64>,
}

impl Default for Params {
    fn default() -> Self {
        let t = thinkdeeper::Params::default();
        Self {
            max_tokens: t.max_tokens,
            min_fraction_easy: 0.0,
            min_fraction_medium: 0.1,
            min_fraction_hard: 0.25,
            wait_text: t.wait_text,
            answer_text: t.answer_text,
            think_end: t.think_end,
            temperature: t.temperature,
            top_p: t.top_p,
            seed: None,
        }
    }
}

/// The classifier's verdict.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Assessment {
    /// The thinking effort chosen: low (easy), medium or high (hard).
    pub effort: Effort,
    pub score: u32,
    /// What raised the score.
    pub reasons: Vec<String>,
}

const KEYWORDS: &[&str] = &[
    "prove",
    "proof",
    "calculate",
    "compute",
    "solve",
    "how many",
    "how much",
    "probability",
    "equation",
    "integral",
    "derivative",
    "percent",
    "ratio",
    "average",
    "remainder",
    "divisible",
    "prime",
    "minimum",
    "maximum",
    "sum of",
    "product of",
    "if and only if",
    "therefore",
    "implies",
    "puzzle",
    "logic",
    "step by step",
    "optimal",
    "algorithm",
];

/// Scores a query's difficulty with simple, documented features: length (more than 25
/// words +1, more than 60 +1), distinct math/logic keywords (+1 each, at most 3), three
/// or more numbers (+1), arithmetic operators or `=` (+1). Score 0-1 is easy, 2-3
/// medium, 4 and more hard.
pub fn assess(query: &str) -> Assessment {
    let lower = query.to_lowercase();
    let mut score = 0;
    let mut reasons = Vec::new();
    let words = query.split_whitespace().count();
    if words > 25 {
        score += 1;
        reasons.push(format!("{words} words"));
    }
    if words > 60 {
        score += 1;
    }
    let hits: Vec<&str> = KEYWORDS
        .iter()
        .copied()
        .filter(|k| lower.contains(k))
        .collect();
    if !hits.is_empty() {
        score += hits.len().min(3) as u32;
        reasons.push(format!("keywords: {}", hits.join(", ")));
    }
    let numbers = query
        .split(|c: char| !c.is_ascii_digit())
        .filter(|s| !s.is_empty())
        .count();
    if numbers >= 3 {
        score += 1;
        reasons.push(format!("{numbers} numbers"));
    }
    if query
        .chars()
        .any(|c| matches!(c, '+' | '*' | '/' | '=' | '^' | '×' | '÷' | '√'))
    {
        score += 1;
        reasons.push("operators".into());
    }
    let effort = match score {
        0..=1 => Effort::Low,
        2..=3 => Effort::Medium,
        _ => Effort::High,
    };
    Assessment {
        effort,
        score,
        reasons,
    }
}

/// The `autothink` strategy (the module documentation describes it): built from typed
/// [`Params`] with `new`, or by name through [`crate::strategies::build`].
#[derive(Debug, Clone)]
pub struct AutoThink {
    params: Params,
}

impl AutoThink {
    pub fn new(params: Params) -> Result<Self, SpecError> {
        if params.max_tokens == 0 {
            return Err(SpecError::BadParameter {
                approach: SLUG.into(),
                message: "max_tokens must be at least 1".into(),
            });
        }
        for effort in [Effort::Low, Effort::Medium, Effort::High] {
            Self::forcing(&params, effort, params.max_tokens, 0)?;
        }
        Ok(Self { params })
    }

    fn forcing(
        p: &Params,
        effort: Effort,
        max_tokens: u32,
        seed: u64,
    ) -> Result<Forcing, SpecError> {
        let min_fraction = match effort {
            Effort::Low => p.min_fraction_easy,
            Effort::Medium => p.min_fraction_medium,
            Effort::High => p.min_fraction_hard,
        };
        let t = thinkdeeper::Params {
            max_tokens,
            min_fraction,
            max_fraction: None,
            effort,
            wait_text: p.wait_text.clone(),
            answer_text: p.answer_text.clone(),
            think_end: p.think_end.clone(),
            temperature: p.temperature,
            top_p: p.top_p,
            seed: None,
        };
        Forcing::new(
            SLUG,
            max_tokens,
            min_fraction,
            effort.max_fraction(),
            &t,
            seed,
        )
    }
}

impl Approach for AutoThink {
    const SLUG: &'static str = SLUG;
    const DESCRIPTION: &'static str = "A heuristic classifier (query length, math/logic keywords, numbers) \
         picks the thinking budget, then thinkdeeper budget forcing \
         (not the reference's trained classifier or steering vectors)";
    type Params = Params;

    fn from_params(params: Params) -> Result<Self, SpecError> {
        Self::new(params)
    }
}

#[async_trait]
impl Strategy for AutoThink {
    fn slug(&self) -> &str {
        SLUG
    }

    async fn run(&self, ctx: &Ctx, request: &StrategyRequest) -> Result<Answer, StrategyError> {
        let assessment = assess(request.query()?);
        tracing::debug!(?assessment, "autothink heuristic difficulty");
        let max_tokens = max_new_tokens(self.params.max_tokens, request.sampling.max_tokens);
        let seed = run_seed(self.params.seed, request.sampling.seed);
        let forcing = Self::forcing(&self.params, assessment.effort, max_tokens, seed)?;
        let purpose = format!(
            "budget forcing, {} effort (heuristic score {})",
            assessment.effort.as_str(),
            assessment.score
        );
        let forced = run_forcing(ctx, purpose, request, forcing).await?;
        Ok(Answer::one(forced.text))
    }
}

#[cfg(test)]
mod tests {
    use std::sync::Arc;

    use super::*;
    use crate::mock::MockBackend;
    use crate::mock_tokens::MockTokenBackend;
    use crate::strategies::thinkdeeper::tests::{VOCAB, sure};
    use crate::strategy::{Budget, run};
    use crate::token::Token;

    #[test]
    fn classifier_features() {
        assert_eq!(assess("What is the capital of France?").effort, Effort::Low);
        let medium = assess("Solve for x: 3x + 5 = 20");
        assert_eq!(medium.effort, Effort::Medium, "{medium:?}");
        let hard = assess(
            "A bag has 5 red, 7 blue and 3 green balls. Two are drawn without replacement. \
             Calculate the probability that both are the same colour, and prove that your \
             method counts every pair exactly once.",
        );
        assert_eq!(hard.effort, Effort::High, "{hard:?}");
        assert!(hard.reasons.iter().any(|r| r.contains("probability")));
    }

    /// Thinks " hmm" until forced to close, then answers " 42".
    fn never_stops(t: &[Token]) -> Vec<f32> {
        match t.last() {
            Some(4) => sure(8, 5),
            Some(5) => sure(8, 0),
            _ => sure(8, 2),
        }
    }

    #[tokio::test]
    async fn harder_queries_get_longer_budgets() {
        let strategy = AutoThink::new(Params {
            max_tokens: 20,
            temperature: 0.0,
            ..Params::default()
        })
        .unwrap();
        let thinking = |query: &'static str| {
            let strategy = strategy.clone();
            async move {
                let b = Arc::new(MockTokenBackend::new(&VOCAB, &[0], never_stops));
                let out = run(
                    &strategy,
                    b,
                    &StrategyRequest::user(query),
                    Budget::default(),
                )
                .await
                .unwrap();
                assert!(out.trace[0].purpose.contains("heuristic"));
                out.answer.matches(" hmm").count()
            }
        };
        // 33% and 90% of 20 tokens.
        assert_eq!(thinking("Hi there?").await, 7);
        assert_eq!(
            thinking("Prove that the sum of 3 odd numbers like 1, 3 and 5 is odd: 1+3+5=9.").await,
            18
        );
    }

    #[tokio::test]
    async fn needs_token_control() {
        let err = run(
            &AutoThink::new(Params::default()).unwrap(),
            Arc::new(MockBackend::constant("x")),
            &StrategyRequest::user("q"),
            Budget::default(),
        )
        .await
        .unwrap_err();
        assert!(err.to_string().contains("token_control"), "{err}");
    }
}
