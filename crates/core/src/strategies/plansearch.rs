//! `plansearch`: search over natural-language plans (Wang et al. 2024, "Planning in
//! natural language improves LLM search for code generation").
//!
//! `plans` chains run concurrently. Their first-order observations (`observations` each)
//! come from one n-request; each chain then derives `derived` new observations from its
//! own, writes a natural-language plan from all of them, and implements the plan as the
//! final solution. Several plans are searched, as in the paper: the answer is the
//! majority answer over the solutions when one exists (by [`crate::extract`]; for a
//! function to complete, the solutions' programs), else the first solution; the other
//! solutions are returned as candidates.

use async_trait::async_trait;
use futures::future::join_all;
use serde::{Deserialize, Serialize};

use super::Approach;
use super::read_answer::answer_kind;
use super::util::{one, prompt, samples, temp};
use crate::extract::{Vote, extract_as, vote};
use crate::spec::SpecError;
use crate::strategy::{Answer, Ctx, Strategy, StrategyError, StrategyRequest};

/// The parameters of `plansearch`; a field a spec leaves out takes its default here
/// (`optillm approaches` lists them).
#[derive(Debug, Clone, Serialize, Deserialize)]
#[serde(default, deny_unknown_fields)]
pub struct Params {
    /// Plans searched (independent chains).
    pub plans: u32,
    /// First-order observations per chain.
    pub observations: u32,
    /// Derived observations per chain.
    pub derived: u32,
    pub temperature: f32,
    /// Temperature of the final implementation.
    pub solve_temperature: f32,
}

impl Default for Params {
    fn default() -> Self {
        Self {
            plans: 3,
            observations: 3,
            derived: 2,
            temperature: 0.7,
            solve_temperature: 0.1,
        }
    }
}

/// The `plansearch` strategy (the module documentation describes it): built from typed
/// [`Params`] with `new`, or by name through [`crate::strategies::build`].
#[derive(Debug)]
pub struct PlanSearch {
    params: Params,
}

impl PlanSearch {
    pub fn new(params: Params) -> Result<Self, SpecError> {
        if params.plans == 0 || params.observations == 0 {
            return Err(SpecError::BadParameter {
                approach: Self::SLUG.into(),
                message: "plans and observations must be at least 1".into(),
            });
        }
        Ok(Self { params })
    }
}

async fn chain(
    ctx: Ctx,
    request: &StrategyRequest,
    params: &Params,
    query: &str,
    observations: String,
    index: usize,
) -> Result<String, StrategyError> {
    let system = request.system();
    let step = temp(params.temperature);
    let derived = if params.derived > 0 {
        one(
            &ctx,
            request,
            &format!("plan {}: derived observations", index + 1),
            prompt(
                system,
                format!(
                    "Problem:\n{query}\n\nObservations:\n{observations}\n\nCombine these \
                     observations into {} new, deeper observations about the problem. Number them.",
                    params.derived
                ),
            ),
            &step,
        )
        .await?
    } else {
        String::new()
    };
    let plan = one(
        &ctx,
        request,
        &format!("plan {}: natural-language plan", index + 1),
        prompt(
            system,
            format!(
                "Problem:\n{query}\n\nObservations:\n{observations}\n{derived}\n\nUsing these \
                 observations, describe in plain language a step-by-step plan that solves the \
                 problem. Do not write the final solution yet."
            ),
        ),
        &step,
    )
    .await?;
    one(
        &ctx,
        request,
        &format!("plan {}: solution", index + 1),
        prompt(
            system,
            format!(
                "Problem:\n{query}\n\nPlan:\n{plan}\n\nCarry out the plan and give the complete \
                 solution."
            ),
        ),
        &temp(params.solve_temperature),
    )
    .await
}

impl Approach for PlanSearch {
    const SLUG: &'static str = "plansearch";
    const DESCRIPTION: &'static str = "Plan search: observations, derived observations, natural-language plans, solutions; several plans";
    type Params = Params;

    fn from_params(params: Params) -> Result<Self, SpecError> {
        Self::new(params)
    }
}

#[async_trait]
impl Strategy for PlanSearch {
    fn slug(&self) -> &str {
        Self::SLUG
    }

    async fn run(&self, ctx: &Ctx, request: &StrategyRequest) -> Result<Answer, StrategyError> {
        let p = &self.params;
        let query = request.query()?.to_string();
        let observations = samples(
            ctx,
            request,
            "observations",
            prompt(
                request.system(),
                format!(
                    "Problem:\n{query}\n\nWrite {} useful, non-obvious observations about this \
                     problem (properties, constraints, ideas that could help solve it). Number \
                     them. Do not solve it.",
                    p.observations
                ),
            ),
            &temp(p.temperature),
            p.plans,
        )
        .await?;
        let solutions = join_all(
            observations
                .into_iter()
                .enumerate()
                .map(|(i, obs)| chain(ctx.clone(), request, p, &query, obs, i)),
        )
        .await
        .into_iter()
        .collect::<Result<Vec<String>, _>>()?;
        let kind = answer_kind(&query, None);
        let answers: Vec<Option<String>> = solutions.iter().map(|s| extract_as(s, kind)).collect();
        let tally = vote(&answers);
        let index = tally.as_ref().and_then(Vote::chosen).unwrap_or(0);
        let answer = solutions.get(index).cloned().unwrap_or_default();
        Ok(Answer::one(answer)
            .with_candidates(solutions)
            .with_vote(tally))
    }
}

#[cfg(test)]
mod tests {
    use std::sync::Arc;

    use super::*;
    use crate::mock::MockBackend;
    use crate::strategy::{Budget, run};

    #[tokio::test]
    async fn several_plans_each_chained_and_majority_chosen() {
        let mock = Arc::new(MockBackend::new(|r, i| {
            let u = &r.messages.last().unwrap().content;
            Ok(if u.contains("non-obvious observations") {
                format!("OBS{i}")
            } else if u.contains("new, deeper observations") {
                let obs = if u.contains("OBS0") {
                    "0"
                } else if u.contains("OBS1") {
                    "1"
                } else {
                    "2"
                };
                format!("DER{obs}")
            } else if u.contains("step-by-step plan") {
                assert!(u.contains("DER"));
                let k = u.split("OBS").nth(1).unwrap().chars().next().unwrap();
                format!("PLAN{k}")
            } else {
                // Plans 0 and 2 lead to 12, plan 1 to 13.
                let k = u.split("PLAN").nth(1).unwrap().chars().next().unwrap();
                format!(
                    "done via {k}. The answer is {}",
                    if k == '1' { 13 } else { 12 }
                )
            })
        }));
        let out = run(
            &PlanSearch::new(Params::default()).unwrap(),
            mock.clone(),
            &StrategyRequest::user("problem"),
            Budget::default(),
        )
        .await
        .unwrap();
        assert_eq!(out.answer, "done via 0. The answer is 12");
        assert_eq!(out.candidates.len(), 3);
        let sent = mock.requests();
        // 1 n-request of observations + 3 chains x 3 calls.
        assert_eq!(sent.len(), 10);
        assert_eq!(sent[0].n, 3);
        let solves: Vec<_> = sent
            .iter()
            .filter(|r| {
                r.messages
                    .last()
                    .unwrap()
                    .content
                    .contains("Carry out the plan")
            })
            .collect();
        assert_eq!(solves.len(), 3);
        assert!(solves.iter().all(|r| r.sampling.temperature == Some(0.1)));
    }

    #[tokio::test]
    async fn a_code_question_votes_on_programs_not_on_their_numbers() {
        // Plans 0 and 1 write the same program with different prose and numbers around
        // it; plan 2 another program. Read as numbers, plan 2's "returns 3" would tie.
        let mock = Arc::new(MockBackend::new(|r, i| {
            let u = &r.messages.last().unwrap().content;
            Ok(if u.contains("non-obvious observations") {
                format!("OBS{i}")
            } else if u.contains("step-by-step plan") {
                let k = u.split("OBS").nth(1).unwrap().chars().next().unwrap();
                format!("PLAN{k}")
            } else if u.contains("Carry out the plan") {
                let k = u.split("PLAN").nth(1).unwrap().chars().next().unwrap();
                match k {
                    '2' => "```python\ndef add(a, b):\n    return 3\n```\nIt returns 3.".into(),
                    _ => format!(
                        "Plan {k}, step {}:\n```python\ndef add(a, b):\n    return a + b\n```",
                        7 + i
                    ),
                }
            } else {
                "DER".into()
            })
        }));
        let query = "Complete the function.\n\ndef add(a, b):\n    \"\"\"add(1, 2) == 3\"\"\"\n";
        let out = run(
            &PlanSearch::new(Params::default()).unwrap(),
            mock,
            &StrategyRequest::user(query),
            Budget::default(),
        )
        .await
        .unwrap();
        assert!(out.answer.contains("return a + b"), "{}", out.answer);
        let vote = out.vote.unwrap();
        // Programs are grouped with their whitespace collapsed, as every vote's answers.
        assert_eq!(
            vote.summary(),
            "def add(a, b): return a + b: 2, def add(a, b): return 3: 1"
        );
    }
}
