//! `pvg`: the prover-verifier game at inference time.
//!
//! Each round, a "helpful" prover gives `n` solutions and a "sneaky" prover gives `n`
//! subtly wrong ones (one n-request each, concurrently, at
//! T = max(0.2, 0.7 - 0.1 * round)). A verifier (T = `verifier_temperature`) scores every
//! solution "Score: x/10" against the original problem, all concurrently. Between rounds
//! the query is refined from the best solution so far, and the next round's provers work
//! on the refined query.
//!
//! Unlike the reference, a sneaky solution never wins: sneaky solutions are generated and
//! scored (they keep the verifier's scale honest and show in the trace and candidates) but
//! only helpful ones can be chosen.

use async_trait::async_trait;
use futures::future::{join, join_all};
use serde::{Deserialize, Serialize};

use super::Approach;
use super::util::{one, parse_rating, prompt, samples, temp};
use crate::spec::SpecError;
use crate::strategy::{Answer, Ctx, Strategy, StrategyError, StrategyRequest};

const ROLES: &str = "You are a problem solver tasked with generating solutions to the given problem.
If you are in 'helpful' mode:
- Provide a correct, detailed, and step-by-step solution to the problem.
- Explain your reasoning clearly and logically.
- Ensure your final answer or conclusion is accurate and well-supported.

If you are in 'sneaky' mode:
- Provide a solution that appears correct but contains subtle errors or flaws.
- Make your explanation seem logical and convincing.
- Ensure your final answer or conclusion is incorrect, but in a way that's not immediately obvious.";

const VERIFY: &str = "You are a verifier tasked with evaluating the correctness and clarity of solutions to the given problem.
Rate the solution on a scale from 0 to 10, where:
- 0 is completely incorrect or incomprehensible
- 5 is partially correct or lacks clarity
- 10 is perfectly correct, clear, and well-explained
Be especially vigilant for subtle errors or flaws that might not be immediately obvious.
Respond in this format:
Score: [a number from 0 to 10]
Explanation: [why]";

/// The parameters of `pvg`; a field a spec leaves out takes its default here
/// (`optillm approaches` lists them).
#[derive(Debug, Clone, Serialize, Deserialize)]
#[serde(default, deny_unknown_fields)]
pub struct Params {
    pub rounds: u32,
    /// Solutions per prover per round.
    pub n: u32,
    /// Generate and score sneaky solutions (never chosen either way).
    pub sneaky: bool,
    pub verifier_temperature: f32,
    pub refine_temperature: f32,
}

impl Default for Params {
    fn default() -> Self {
        Self {
            rounds: 2,
            n: 3,
            sneaky: true,
            verifier_temperature: 0.2,
            refine_temperature: 0.5,
        }
    }
}

/// The `pvg` strategy (the module documentation describes it): built from typed
/// [`Params`] with `new`, or by name through [`crate::strategies::build`].
#[derive(Debug)]
pub struct Pvg {
    params: Params,
}

impl Pvg {
    pub fn new(params: Params) -> Result<Self, SpecError> {
        if params.rounds == 0 || params.n == 0 {
            return Err(SpecError::BadParameter {
                approach: Self::SLUG.into(),
                message: "rounds and n must be at least 1".into(),
            });
        }
        Ok(Self { params })
    }

    /// The prover temperature of round `round` (0-based).
    pub fn prover_temperature(round: u32) -> f32 {
        ((7.0 - round as f32) / 10.0).max(0.2)
    }
}

fn prover_system(system: Option<&str>, role: &str) -> String {
    let base = system.map(|s| format!("{s}\n")).unwrap_or_default();
    format!("{base}{ROLES}\nYou are in {role} mode.")
}

impl Approach for Pvg {
    const SLUG: &'static str = "pvg";
    const DESCRIPTION: &'static str =
        "Prover-verifier game: helpful and sneaky provers, verifier scores, query refinement";
    type Params = Params;

    fn from_params(params: Params) -> Result<Self, SpecError> {
        Self::new(params)
    }
}

#[async_trait]
impl Strategy for Pvg {
    fn slug(&self) -> &str {
        Self::SLUG
    }

    async fn run(&self, ctx: &Ctx, request: &StrategyRequest) -> Result<Answer, StrategyError> {
        let original = request.query()?.to_string();
        let system = request.system();
        let p = &self.params;
        let mut query = original.clone();
        let mut best: Option<(f64, String)> = None;
        let mut candidates = Vec::new();
        for round in 0..p.rounds {
            let step = temp(Pvg::prover_temperature(round));
            let helpful_msgs = prompt(Some(&prover_system(system, "helpful")), query.clone());
            let sneaky_msgs = prompt(Some(&prover_system(system, "sneaky")), query.clone());
            let helpful = samples(ctx, request, "helpful prover", helpful_msgs, &step, p.n);
            let (helpful, sneaky) = if p.sneaky {
                let sneaky = samples(ctx, request, "sneaky prover", sneaky_msgs, &step, p.n);
                let (h, s) = join(helpful, sneaky).await;
                (h?, s?)
            } else {
                (helpful.await?, Vec::new())
            };
            let verify = |solution: &String, who: &str| {
                let ctx = ctx.clone();
                let msgs = prompt(
                    Some(&match system {
                        Some(s) => format!("{s}\n{VERIFY}"),
                        None => VERIFY.to_string(),
                    }),
                    format!("Problem: {original}\n\nSolution: {solution}"),
                );
                let purpose = format!("verify {who} solution");
                let step = temp(p.verifier_temperature);
                async move {
                    let text = one(&ctx, request, &purpose, msgs, &step).await?;
                    Ok::<f64, StrategyError>(parse_rating(&text, 10.0).unwrap_or(0.0))
                }
            };
            let scored = join_all(
                helpful
                    .iter()
                    .map(|s| verify(s, "helpful"))
                    .chain(sneaky.iter().map(|s| verify(s, "sneaky"))),
            )
            .await;
            let scores = scored.into_iter().collect::<Result<Vec<f64>, _>>()?;
            let (helpful_scores, sneaky_scores) = scores.split_at(helpful.len().min(scores.len()));
            tracing::debug!(round, ?helpful_scores, ?sneaky_scores, "pvg scores");
            for (solution, &score) in helpful.iter().zip(helpful_scores) {
                if best.as_ref().is_none_or(|(b, _)| score > *b) {
                    best = Some((score, solution.clone()));
                }
            }
            candidates.extend(helpful);
            let Some((_, best_solution)) = &best else {
                continue;
            };
            ctx.offer(best_solution.clone());
            if round + 1 < p.rounds {
                let refine = format!(
                    "Based on the original query and the best solution so far, suggest a refined query \
                     that might lead to an even better solution. Focus on aspects of the problem that \
                     were challenging or not fully addressed in the best solution. Keep the core intent \
                     of the original query and every detail of it. Reply with the refined query only.\n\n\
                     Original query: {original}\n\nBest solution so far: {best_solution}\n\nRefined query:"
                );
                let refined = one(
                    ctx,
                    request,
                    "refine query",
                    prompt(system, refine),
                    &temp(p.refine_temperature),
                )
                .await?;
                if !refined.trim().is_empty() {
                    query = refined.trim().to_string();
                }
            }
        }
        let answer = best.map(|(_, s)| s).unwrap_or_default();
        Ok(Answer::one(answer).with_candidates(candidates))
    }
}

#[cfg(test)]
mod tests {
    use std::sync::Arc;

    use super::*;
    use crate::mock::MockBackend;
    use crate::strategy::{Budget, run};
    use crate::types::{ChatRequest, Role};

    fn system_of(r: &ChatRequest) -> &str {
        r.messages
            .iter()
            .find(|m| m.role == Role::System)
            .map(|m| m.content.as_str())
            .unwrap_or("")
    }
    fn user_of(r: &ChatRequest) -> &str {
        r.last_user().unwrap_or_default()
    }

    /// Sneaky solutions get 10/10, helpful "good-<round>-<i>" get i+3 (i+5 in round 2).
    fn backend() -> MockBackend {
        MockBackend::new(|r, i| {
            let sys = system_of(r);
            let user = user_of(r);
            Ok(if sys.contains("You are in sneaky mode") {
                format!("sneaky-{i}")
            } else if sys.contains("You are in helpful mode") {
                let round = if user == "REFINED" { 2 } else { 1 };
                format!("good-{round}-{i}")
            } else if sys.contains("You are a verifier") {
                if user.contains("sneaky-") {
                    "Score: 10/10\nExplanation: flawless".into()
                } else if let Some(rest) = user.split("good-").nth(1) {
                    let digits: Vec<f64> = rest
                        .split('-')
                        .take(2)
                        .map(|d| d.parse().unwrap())
                        .collect();
                    let (round, i) = (digits[0], digits[1]);
                    format!("Score: {}\nExplanation: fine", i + 1.0 + 2.0 * round)
                } else {
                    "Score: 0".into()
                }
            } else {
                "REFINED".into()
            })
        })
    }

    #[tokio::test]
    async fn refined_query_is_used_and_sneaky_never_wins() {
        let mock = Arc::new(backend());
        let strategy = Pvg::new(Params::default()).unwrap();
        let out = run(
            &strategy,
            mock.clone(),
            &StrategyRequest::user("What is 6*7?"),
            Budget::default(),
        )
        .await
        .unwrap();
        // Sneaky answers scored 10 but the best helpful one of round 2 wins.
        assert_eq!(out.answer, "good-2-2");
        assert!(out.candidates.iter().all(|c| c.starts_with("good-")));
        let sent = mock.requests();
        // 2 rounds x (2 provers + 6 verifications) + 1 refinement.
        assert_eq!(sent.len(), 17);
        let provers: Vec<_> = sent
            .iter()
            .filter(|r| system_of(r).contains("mode."))
            .collect();
        assert_eq!(provers.len(), 4);
        assert!(provers.iter().all(|r| r.n == 3));
        let temps: Vec<_> = provers.iter().map(|r| r.sampling.temperature).collect();
        assert_eq!(temps.iter().filter(|t| **t == Some(0.7)).count(), 2);
        assert_eq!(temps.iter().filter(|t| **t == Some(0.6)).count(), 2);
        // Round-2 provers received the refined query; verifiers always the original.
        assert!(
            provers
                .iter()
                .filter(|r| r.sampling.temperature == Some(0.6))
                .all(|r| user_of(r) == "REFINED")
        );
        let verifiers: Vec<_> = sent
            .iter()
            .filter(|r| system_of(r).contains("You are a verifier"))
            .collect();
        assert_eq!(verifiers.len(), 12);
        assert!(
            verifiers
                .iter()
                .all(|r| r.sampling.temperature == Some(0.2))
        );
        assert!(
            verifiers
                .iter()
                .all(|r| user_of(r).starts_with("Problem: What is 6*7?"))
        );
    }

    #[tokio::test]
    async fn only_sneaky_scoring_well_still_picks_helpful() {
        let mock = Arc::new(MockBackend::new(|r, i| {
            let sys = system_of(r);
            Ok(if sys.contains("sneaky mode") {
                format!("sneaky-{i}")
            } else if sys.contains("helpful mode") {
                format!("helpful-{i}")
            } else if user_of(r).contains("helpful-1") {
                "Score: 2".into()
            } else if user_of(r).contains("sneaky") {
                "Score: 9".into()
            } else {
                "no score given".into()
            })
        }));
        let strategy = Pvg::new(Params {
            rounds: 1,
            ..Params::default()
        })
        .unwrap();
        let out = run(
            &strategy,
            mock.clone(),
            &StrategyRequest::user("q"),
            Budget::default(),
        )
        .await
        .unwrap();
        assert_eq!(out.answer, "helpful-1");
        assert_eq!(mock.calls(), 8);
    }

    #[test]
    fn temperatures_follow_the_schedule() {
        assert_eq!(Pvg::prover_temperature(0), 0.7);
        assert!((Pvg::prover_temperature(3) - 0.4).abs() < 1e-6);
        assert_eq!(Pvg::prover_temperature(9), 0.2);
    }
}
