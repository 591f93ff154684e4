//! `mars`: multi-agent reasoning with aggregation and cross-agent verification.
//!
//! 1. Explore: `agents` solve the problem concurrently, agent i at `temperatures[i]`.
//! 2. Strategy sharing (full profile): each agent's strategy is summarised, and each agent
//!    solves again knowing the other agents' strategies.
//! 3. Aggregation: RSA steps ([`super::rsa`]) over the current solutions.
//! 4. Cross-agent verification: each solution is checked by the next agent(s),
//!    `verification_passes` times; it is verified when every pass says CORRECT.
//! 5. If none is verified: improve each with its verifier's feedback and re-verify, up to
//!    `improve_rounds` times.
//! 6. A verified solution wins (majority answer among the verified); else a clear answer
//!    vote over everything produced; else one synthesis call.
//!
//! Profiles: `lightweight` (the default, meant for tiny models: no strategy sharing, 1
//! aggregation step, 1 verification pass, 1 improvement round; about 16 calls) and `full`
//! (sharing, 2 passes, 5 rounds, as the reference). Each profile value can be overridden.
//! `token_budget` stops the run between phases once spent, and answers with the best
//! available (vote, no synthesis); the run's own [`crate::Budget`] is honoured as well.

use async_trait::async_trait;
use futures::future::join_all;
use serde::{Deserialize, Serialize};

use super::Approach;
use super::read_answer::answer_kind;
use super::rsa::{Aggregation, aggregate_step};
use super::sampler::Rng;
use super::util::{numbered, one, prompt, temp};
use crate::extract::{Vote, extract_as, vote};
use crate::spec::SpecError;
use crate::strategy::{Answer, Ctx, Strategy, StrategyError, StrategyRequest};

const FINAL_LINE: &str = "End with the final answer on its own line as \"The answer is: ...\".";

#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "snake_case")]
pub enum Profile {
    Lightweight,
    Full,
}

/// The parameters of `mars`; a field a spec leaves out takes its default here
/// (`optillm approaches` lists them).
#[derive(Debug, Clone, Serialize, Deserialize)]
#[serde(default, deny_unknown_fields)]
pub struct Params {
    pub agents: u32,
    /// Agent i explores at `temperatures[i % len]`.
    pub temperatures: Vec<f32>,
    pub profile: Profile,
    /// Profile value unless set: sharing of solving strategies between agents.
    pub strategy_sharing: Option<bool>,
    /// Profile value unless set: RSA aggregation steps.
    pub aggregation_steps: Option<u32>,
    /// Solutions aggregated per new one (capped by the number of agents).
    pub aggregation_k: u32,
    /// Profile value unless set: verifications per solution.
    pub verification_passes: Option<u32>,
    /// Profile value unless set: improve + re-verify rounds.
    pub improve_rounds: Option<u32>,
    pub aggregation_temperature: f32,
    pub verifier_temperature: f32,
    /// Share of the votes the majority answer needs in the vote fallback.
    pub vote_threshold: f64,
    /// Stop between phases once the run has used this many tokens.
    pub token_budget: Option<u64>,
    pub seed: u64,
}

impl Default for Params {
    fn default() -> Self {
        Self {
            agents: 3,
            temperatures: vec![0.3, 0.6, 1.0],
            profile: Profile::Lightweight,
            strategy_sharing: None,
            aggregation_steps: None,
            aggregation_k: 3,
            verification_passes: None,
            improve_rounds: None,
            aggregation_temperature: 0.7,
            verifier_temperature: 0.1,
            vote_threshold: 0.5,
            token_budget: None,
            seed: 0,
        }
    }
}

/// Parameters with the profile applied.
#[derive(Debug, Clone)]
struct Resolved {
    sharing: bool,
    aggregation_steps: u32,
    passes: u32,
    improve_rounds: u32,
}

/// The `mars` strategy (the module documentation describes it): built from typed
/// [`Params`] with `new`, or by name through [`crate::strategies::build`].
#[derive(Debug)]
pub struct Mars {
    params: Params,
    resolved: Resolved,
}

impl Mars {
    pub fn new(params: Params) -> Result<Self, SpecError> {
        let bad = |m: &str| SpecError::BadParameter {
            approach: Self::SLUG.into(),
            message: m.into(),
        };
        if params.agents == 0 {
            return Err(bad("agents must be at least 1"));
        }
        if params.temperatures.is_empty()
            || params
                .temperatures
                .iter()
                .any(|t| !t.is_finite() || *t < 0.0)
        {
            return Err(bad("temperatures must be a non-empty list of numbers >= 0"));
        }
        if params.aggregation_k == 0 {
            return Err(bad("aggregation_k must be at least 1"));
        }
        let full = params.profile == Profile::Full;
        let resolved = Resolved {
            sharing: params.strategy_sharing.unwrap_or(full),
            aggregation_steps: params.aggregation_steps.unwrap_or(1),
            passes: params
                .verification_passes
                .unwrap_or(if full { 2 } else { 1 })
                .max(1),
            improve_rounds: params.improve_rounds.unwrap_or(if full { 5 } else { 1 }),
        };
        Ok(Self { params, resolved })
    }
}

/// One solution of the working set, with its last verification.
#[derive(Debug, Clone)]
struct Solution {
    agent: usize,
    text: String,
    verified: bool,
    feedback: String,
}

/// The verdict of a verification: `Some(true)` for CORRECT, `Some(false)` for INCORRECT.
fn verdict(text: &str) -> Option<bool> {
    let upper = text.to_ascii_uppercase();
    let at = upper.rfind("VERDICT")?;
    let tail = upper.get(at..)?;
    if tail.contains("INCORRECT") || tail.contains("NOT CORRECT") {
        Some(false)
    } else if tail.contains("CORRECT") {
        Some(true)
    } else {
        None
    }
}

struct Run<'a> {
    ctx: &'a Ctx,
    request: &'a StrategyRequest,
    params: &'a Params,
    query: String,
    /// Everything produced, for the vote and the candidates.
    archive: Vec<String>,
}

impl Run<'_> {
    fn agent_temperature(&self, agent: usize) -> f32 {
        let t = &self.params.temperatures;
        t.get(agent % t.len()).copied().unwrap_or(0.7)
    }

    /// The `token_budget` parameter or the run's own budget is spent.
    fn over_budget(&self) -> bool {
        self.ctx.exhausted()
            || self
                .params
                .token_budget
                .is_some_and(|b| self.ctx.usage().total_tokens() >= b)
    }

    fn record(&mut self, solutions: &[Solution]) {
        self.archive
            .extend(solutions.iter().map(|s| s.text.clone()));
        if let Some((best, _)) = self.vote_pick(0.0) {
            self.ctx.offer(best);
        }
    }

    /// The archive member with the majority answer, if its share reaches `threshold`
    /// (and, for a threshold above 0, at least two votes), with the vote.
    fn vote_pick(&self, threshold: f64) -> Option<(String, Option<Vote>)> {
        let kind = answer_kind(&self.query, None);
        let answers: Vec<Option<String>> =
            self.archive.iter().map(|s| extract_as(s, kind)).collect();
        match vote(&answers) {
            Some(v) if threshold <= 0.0 || (v.count >= 2 && v.share() >= threshold) => v
                .members
                .last()
                .and_then(|&i| self.archive.get(i))
                .map(|text| (text.clone(), Some(v))),
            Some(_) => None,
            None if threshold <= 0.0 => self.archive.last().map(|text| (text.clone(), None)),
            None => None,
        }
    }

    async fn explore(&self) -> Result<Vec<Solution>, StrategyError> {
        let system = self.request.system();
        let calls = (0..self.params.agents as usize).map(|agent| {
            let ctx = self.ctx.clone();
            let msgs = prompt(
                system,
                format!(
                    "{}\n\nSolve this problem step by step and check your work. {FINAL_LINE}",
                    self.query
                ),
            );
            let step = temp(self.agent_temperature(agent));
            async move {
                let purpose = format!("agent {} explores", agent + 1);
                let text = one(&ctx, self.request, &purpose, msgs, &step).await?;
                ctx.offer(text.clone());
                Ok::<_, StrategyError>(Solution {
                    agent,
                    text,
                    verified: false,
                    feedback: String::new(),
                })
            }
        });
        // Keep the agents that finished when a budget cuts the others.
        let mut solutions = Vec::new();
        let mut first_error = None;
        for r in join_all(calls).await {
            match r {
                Ok(s) => solutions.push(s),
                Err(e) => {
                    first_error.get_or_insert(e);
                }
            }
        }
        match first_error {
            Some(e) if solutions.is_empty() => Err(e),
            _ => Ok(solutions),
        }
    }

    async fn share_strategies(
        &self,
        solutions: &[Solution],
    ) -> Result<Vec<Solution>, StrategyError> {
        let system = self.request.system();
        let summaries = join_all(solutions.iter().map(|s| {
            let ctx = self.ctx.clone();
            let msgs = prompt(
                system,
                format!(
                    "Here is a solution to a problem:\n\n{}\n\nIn two or three sentences, describe \
                     the strategy it uses (the key idea and the method), without its final answer.",
                    s.text
                ),
            );
            let step = temp(self.params.verifier_temperature);
            async move { one(&ctx, self.request, "summarise strategy", msgs, &step).await }
        }))
        .await
        .into_iter()
        .collect::<Result<Vec<_>, _>>()?;
        let calls = solutions.iter().enumerate().map(|(i, s)| {
            let others: Vec<String> = summaries
                .iter()
                .enumerate()
                .filter(|(j, _)| *j != i)
                .map(|(_, t)| t.clone())
                .collect();
            let ctx = self.ctx.clone();
            let msgs = prompt(
                system,
                format!(
                    "{}\n\nOther solvers tried these strategies:\n\n{}\n\nUse whatever helps, solve \
                     the problem step by step and check your work. {FINAL_LINE}",
                    self.query,
                    numbered("Strategy", &others)
                ),
            );
            let step = temp(self.agent_temperature(s.agent));
            let agent = s.agent;
            async move {
                let text = one(&ctx, self.request, "solve with shared strategies", msgs, &step)
                    .await?;
                Ok::<_, StrategyError>(Solution {
                    agent,
                    text,
                    verified: false,
                    feedback: String::new(),
                })
            }
        });
        join_all(calls).await.into_iter().collect()
    }

    /// Verifies every unverified solution `passes` times, each pass by another agent.
    async fn verify(&self, solutions: &mut [Solution], passes: u32) -> Result<(), StrategyError> {
        let agents = self.params.agents as usize;
        let system = self.request.system();
        let mut jobs = Vec::new();
        for (i, s) in solutions.iter().enumerate().filter(|(_, s)| !s.verified) {
            for pass in 0..passes as usize {
                let verifier = (s.agent + 1 + pass) % agents;
                let msgs = prompt(
                    system,
                    format!(
                        "Problem:\n{}\n\nProposed solution:\n{}\n\nCheck the solution step by step for \
                         errors in reasoning or calculation, and list any you find. Then give your \
                         verdict on the last line as \"VERDICT: CORRECT\" or \"VERDICT: INCORRECT\".",
                        self.query, s.text
                    ),
                );
                let ctx = self.ctx.clone();
                let step = temp(self.params.verifier_temperature);
                jobs.push(async move {
                    let purpose = format!("agent {} verifies solution {}", verifier + 1, i + 1);
                    let text = one(&ctx, self.request, &purpose, msgs, &step).await?;
                    Ok::<_, StrategyError>((i, text))
                });
            }
        }
        let mut results: Vec<(usize, Vec<String>)> = Vec::new();
        for r in join_all(jobs).await {
            let (i, text) = r?;
            match results.iter_mut().find(|(j, _)| *j == i) {
                Some((_, texts)) => texts.push(text),
                None => results.push((i, vec![text])),
            }
        }
        for (i, texts) in results {
            if let Some(s) = solutions.get_mut(i) {
                s.verified = texts.iter().all(|t| verdict(t) == Some(true));
                s.feedback = texts
                    .into_iter()
                    .filter(|t| verdict(t) != Some(true))
                    .collect::<Vec<_>>()
                    .join("\n\n");
            }
        }
        Ok(())
    }

    async fn improve(&self, solutions: &mut [Solution]) -> Result<(), StrategyError> {
        let system = self.request.system();
        let calls = solutions
            .iter()
            .enumerate()
            .filter(|(_, s)| !s.verified)
            .map(|(i, s)| {
                let ctx = self.ctx.clone();
                let msgs = prompt(
                    system,
                    format!(
                        "Problem:\n{}\n\nYour previous solution:\n{}\n\nA reviewer found these \
                         problems:\n{}\n\nWrite a corrected, complete solution. {FINAL_LINE}",
                        self.query, s.text, s.feedback
                    ),
                );
                let step = temp(self.agent_temperature(s.agent));
                async move {
                    let purpose = format!("agent {} improves solution {}", s.agent + 1, i + 1);
                    let text = one(&ctx, self.request, &purpose, msgs, &step).await?;
                    Ok::<_, StrategyError>((i, text))
                }
            });
        let improved = join_all(calls)
            .await
            .into_iter()
            .collect::<Result<Vec<_>, _>>()?;
        for (i, text) in improved {
            if let Some(s) = solutions.get_mut(i) {
                s.text = text;
                s.feedback.clear();
            }
        }
        Ok(())
    }

    /// The majority answer among the verified solutions, if any is verified, with the
    /// vote among them.
    fn verified_pick(&self, solutions: &[Solution]) -> Option<(String, Option<Vote>)> {
        let kind = answer_kind(&self.query, None);
        let verified: Vec<&Solution> = solutions.iter().filter(|s| s.verified).collect();
        let answers: Vec<Option<String>> =
            verified.iter().map(|s| extract_as(&s.text, kind)).collect();
        let tally = vote(&answers);
        let index = tally.as_ref().and_then(Vote::chosen).unwrap_or(0);
        verified.get(index).map(|s| (s.text.clone(), tally))
    }

    async fn synthesise(&self) -> Result<String, StrategyError> {
        let msgs = prompt(
            self.request.system(),
            format!(
                "Problem:\n{}\n\nCandidate solutions (they disagree):\n\n{}\n\nWeigh them, decide \
                 which reasoning is right, and write the final solution. {FINAL_LINE}",
                self.query,
                numbered("Solution", &self.archive)
            ),
        );
        one(
            self.ctx,
            self.request,
            "synthesis",
            msgs,
            &temp(self.params.verifier_temperature),
        )
        .await
    }
}

impl Approach for Mars {
    const SLUG: &'static str = "mars";
    const DESCRIPTION: &'static str =
        "Multi-agent reasoning: explore, aggregate, cross-verify, improve, vote or synthesise";
    type Params = Params;

    fn from_params(params: Params) -> Result<Self, SpecError> {
        Self::new(params)
    }
}

#[async_trait]
impl Strategy for Mars {
    fn slug(&self) -> &str {
        Self::SLUG
    }

    async fn run(&self, ctx: &Ctx, request: &StrategyRequest) -> Result<Answer, StrategyError> {
        let p = &self.params;
        let r = &self.resolved;
        let mut run = Run {
            ctx,
            request,
            params: p,
            query: request.query()?.to_string(),
            archive: Vec::new(),
        };
        let finish = |run: &Run<'_>, (answer, tally): (String, Option<Vote>)| {
            Ok(Answer::one(answer)
                .with_candidates(run.archive.clone())
                .with_vote(tally))
        };

        let mut solutions = run.explore().await?;
        run.record(&solutions);

        if r.sharing && !run.over_budget() {
            solutions = run.share_strategies(&solutions).await?;
            run.record(&solutions);
        }

        let mut rng = Rng::new(p.seed);
        for _ in 0..r.aggregation_steps {
            if run.over_budget() || solutions.len() < 2 {
                break;
            }
            let texts: Vec<String> = solutions.iter().map(|s| s.text.clone()).collect();
            let shape = Aggregation {
                size: solutions.len(),
                k: (p.aggregation_k as usize).min(texts.len()),
                temperature: p.aggregation_temperature,
            };
            let new = aggregate_step(ctx, request, &run.query, &texts, shape, &mut rng).await?;
            for (s, text) in solutions.iter_mut().zip(new) {
                s.text = text;
            }
            run.record(&solutions);
        }

        if !run.over_budget() {
            run.verify(&mut solutions, r.passes).await?;
            for round in 0..r.improve_rounds {
                if solutions.iter().any(|s| s.verified) || run.over_budget() {
                    break;
                }
                tracing::debug!(round, "mars improve round");
                run.improve(&mut solutions).await?;
                run.record(&solutions);
                if run.over_budget() {
                    break;
                }
                run.verify(&mut solutions, r.passes).await?;
            }
            if let Some(picked) = run.verified_pick(&solutions) {
                return finish(&run, picked);
            }
        }

        if run.over_budget() {
            let picked = run.vote_pick(0.0).unwrap_or_default();
            return finish(&run, picked);
        }
        if let Some(picked) = run.vote_pick(p.vote_threshold) {
            return finish(&run, picked);
        }
        let answer = run.synthesise().await?;
        finish(&run, (answer, None))
    }
}

#[cfg(test)]
mod tests {
    use std::sync::Arc;

    use super::*;
    use crate::mock::MockBackend;
    use crate::strategy::{Budget, run};
    use crate::types::ChatRequest;

    fn user_of(r: &ChatRequest) -> &str {
        &r.messages.last().unwrap().content
    }

    fn kind(r: &ChatRequest) -> &'static str {
        let u = user_of(r);
        if u.contains("VERDICT: CORRECT") {
            "verify"
        } else if u.contains("Candidate solutions (they disagree)") {
            "synth"
        } else if u.contains("Examine them carefully") {
            "aggregate"
        } else if u.contains("A reviewer found") {
            "improve"
        } else if u.contains("describe the strategy") {
            "summarise"
        } else if u.contains("Other solvers tried") {
            "shared"
        } else {
            "explore"
        }
    }

    #[tokio::test]
    async fn lightweight_verified_aggregate_wins() {
        let mock = Arc::new(MockBackend::new(|r, _| {
            Ok(match kind(r) {
                "explore" => format!(
                    "The answer is: {}",
                    (r.sampling.temperature.unwrap() * 10.0) as i32
                ),
                "aggregate" => "combined. The answer is: 42".into(),
                "verify" if user_of(r).contains("42") => "fine\nVERDICT: CORRECT".into(),
                _ => "VERDICT: INCORRECT".into(),
            })
        }));
        let out = run(
            &Mars::new(Params::default()).unwrap(),
            mock.clone(),
            &StrategyRequest::user("q"),
            Budget::default(),
        )
        .await
        .unwrap();
        assert_eq!(out.answer, "combined. The answer is: 42");
        let sent = mock.requests();
        let kinds: Vec<_> = sent.iter().map(kind).collect();
        assert_eq!(kinds.iter().filter(|k| **k == "explore").count(), 3);
        assert_eq!(kinds.iter().filter(|k| **k == "aggregate").count(), 3);
        assert_eq!(kinds.iter().filter(|k| **k == "verify").count(), 3);
        assert_eq!(sent.len(), 9);
        let mut temps: Vec<f32> = sent
            .iter()
            .filter(|r| kind(r) == "explore")
            .map(|r| r.sampling.temperature.unwrap())
            .collect();
        temps.sort_by(f32::total_cmp);
        assert_eq!(temps, vec![0.3, 0.6, 1.0]);
        assert!(
            sent.iter()
                .filter(|r| kind(r) == "verify")
                .all(|r| r.sampling.temperature == Some(0.1))
        );
    }

    #[tokio::test]
    async fn unverified_falls_back_to_vote_then_synthesis() {
        // Never verified; all answers are 7: the vote decides after one improve round.
        let mock = Arc::new(MockBackend::new(|r, _| {
            Ok(match kind(r) {
                "verify" => "wrong\nVERDICT: INCORRECT".into(),
                k => format!("{k}: The answer is: 7"),
            })
        }));
        let out = run(
            &Mars::new(Params::default()).unwrap(),
            mock.clone(),
            &StrategyRequest::user("q"),
            Budget::default(),
        )
        .await
        .unwrap();
        assert!(out.answer.ends_with("The answer is: 7"));
        let kinds: Vec<_> = mock.requests().iter().map(kind).collect();
        assert_eq!(kinds.iter().filter(|k| **k == "improve").count(), 3);
        assert_eq!(kinds.iter().filter(|k| **k == "verify").count(), 6);
        assert!(!kinds.contains(&"synth"));
        // The archive's vote chose it, and is reported: every answer is 7.
        let v = out.vote.expect("the vote is reported");
        assert_eq!(
            (v.winner.as_str(), v.count, v.total),
            ("7", v.total, v.total)
        );

        // Never verified and every answer differs: one synthesis call.
        let counter = std::sync::atomic::AtomicU32::new(0);
        let mock = Arc::new(MockBackend::new(move |r, _| {
            let n = counter.fetch_add(1, std::sync::atomic::Ordering::SeqCst);
            Ok(match kind(r) {
                "verify" => "VERDICT: INCORRECT".into(),
                "synth" => "SYNTHESIS".into(),
                _ => format!("The answer is: {n}"),
            })
        }));
        let out = run(
            &Mars::new(Params::default()).unwrap(),
            mock.clone(),
            &StrategyRequest::user("q"),
            Budget::default(),
        )
        .await
        .unwrap();
        assert_eq!(out.answer, "SYNTHESIS");
        assert!(out.vote.is_none(), "a synthesis is not a vote");
        assert_eq!(mock.calls(), 16);
    }

    #[tokio::test]
    async fn full_profile_shares_strategies_and_verifies_twice() {
        let mock = Arc::new(MockBackend::new(|r, _| {
            Ok(match kind(r) {
                "verify" => "VERDICT: CORRECT".into(),
                "summarise" => "use algebra".into(),
                k => format!("{k}: The answer is: 5"),
            })
        }));
        let params = Params {
            profile: Profile::Full,
            ..Params::default()
        };
        let out = run(
            &Mars::new(params).unwrap(),
            mock.clone(),
            &StrategyRequest::user("q"),
            Budget::default(),
        )
        .await
        .unwrap();
        assert!(out.answer.starts_with("aggregate:"));
        let kinds: Vec<_> = mock.requests().iter().map(kind).collect();
        assert_eq!(kinds.iter().filter(|k| **k == "summarise").count(), 3);
        assert_eq!(kinds.iter().filter(|k| **k == "shared").count(), 3);
        assert_eq!(kinds.iter().filter(|k| **k == "verify").count(), 6);
        // Each agent is shown the other two strategies.
        let shared = mock
            .requests()
            .into_iter()
            .find(|r| kind(r) == "shared")
            .unwrap();
        assert!(
            user_of(&shared).contains("Strategy 2:") && !user_of(&shared).contains("Strategy 3:")
        );
    }

    #[tokio::test]
    async fn token_budget_param_stops_between_phases() {
        let mock = Arc::new(MockBackend::new(|r, i| {
            Ok(format!("{} The answer is: 3 {i}", kind(r)))
        }));
        let params = Params {
            token_budget: Some(1),
            ..Params::default()
        };
        let out = run(
            &Mars::new(params).unwrap(),
            mock.clone(),
            &StrategyRequest::user("q"),
            Budget::default(),
        )
        .await
        .unwrap();
        // Only the exploration ran; the answer is a vote over it, not a budget cut.
        assert_eq!(mock.calls(), 3);
        assert!(!out.budget_exhausted);
        assert!(out.answer.starts_with("explore The answer is: 3"));
    }

    #[tokio::test]
    async fn run_budget_keeps_the_agents_that_finished() {
        let mock = Arc::new(MockBackend::new(|r, _| {
            Ok(format!("{} The answer is: 9", kind(r)))
        }));
        let budget = Budget {
            max_total_tokens: Some(40),
            max_duration: None,
        };
        let out = run(
            &Mars::new(Params::default()).unwrap(),
            mock.clone(),
            &StrategyRequest::user("q"),
            budget,
        )
        .await
        .unwrap();
        // Two agents finish before the budget is spent; their vote answers.
        assert_eq!(out.usage.calls, 2);
        assert!(out.answer.contains("The answer is: 9"));
        assert!(out.usage.total_tokens() < 80);
    }

    #[test]
    fn verdicts() {
        assert_eq!(verdict("ok\nVERDICT: CORRECT"), Some(true));
        assert_eq!(verdict("Verdict: incorrect"), Some(false));
        assert_eq!(
            verdict("VERDICT: CORRECT?\nverdict: not correct"),
            Some(false)
        );
        assert_eq!(verdict("looks right"), None);
    }
}
