//! `rsa`: recursive self-aggregation (Venkatraman et al., arXiv 2509.26626).
//!
//! A population of `population` (N) solutions is sampled in one n-request. Each of the
//! following `steps - 1` steps builds N new solutions, each from an aggregation prompt over
//! `k` (K) members drawn without replacement from the current population (the N
//! aggregation calls of a step run concurrently). `steps` (T) counts the initial
//! population, so a run samples N*T solutions in 1 + (T-1)*N requests. The answer is the
//! majority answer of the final population (by [`crate::extract`]); without extractable
//! answers, its first member. Draws come from a seeded RNG: a run is reproducible.

use async_trait::async_trait;
use futures::future::join_all;
use serde::{Deserialize, Serialize};

use super::Approach;
use super::read_answer::answer_kind;
use super::sampler::Rng;
use super::util::{numbered, one, prompt, samples, temp};
use crate::extract::{Vote, extract_as, vote};
use crate::spec::SpecError;
use crate::strategy::{Answer, Ctx, Strategy, StrategyError, StrategyRequest};

/// The parameters of `rsa`; a field a spec leaves out takes its default here
/// (`optillm approaches` lists them).
#[derive(Debug, Clone, Serialize, Deserialize)]
#[serde(default, deny_unknown_fields)]
pub struct Params {
    /// N: solutions per step.
    pub population: u32,
    /// K: solutions aggregated into each new one.
    pub k: u32,
    /// T: steps, the initial population included.
    pub steps: u32,
    pub temperature: f32,
    /// Seed of the draws of aggregation sets.
    pub seed: u64,
}

impl Default for Params {
    fn default() -> Self {
        Self {
            population: 6,
            k: 3,
            steps: 3,
            temperature: 0.7,
            seed: 0,
        }
    }
}

/// The `rsa` strategy (the module documentation describes it): built from typed
/// [`Params`] with `new`, or by name through [`crate::strategies::build`].
#[derive(Debug)]
pub struct Rsa {
    params: Params,
}

impl Rsa {
    pub fn new(params: Params) -> Result<Self, SpecError> {
        let bad = |m: &str| SpecError::BadParameter {
            approach: Self::SLUG.into(),
            message: m.into(),
        };
        if params.population == 0 || params.k == 0 || params.steps == 0 {
            return Err(bad("population, k and steps must be at least 1"));
        }
        if params.k > params.population {
            return Err(bad("k cannot exceed population"));
        }
        Ok(Self { params })
    }
}

/// `k` distinct indices below `n`, drawn uniformly (partial Fisher-Yates).
pub(crate) fn draw(rng: &mut Rng, n: usize, k: usize) -> Vec<usize> {
    let mut idx: Vec<usize> = (0..n).collect();
    let k = k.min(n);
    for i in 0..k {
        let span = (n - i) as u64;
        let j = i + (rng.next_u64() % span) as usize;
        idx.swap(i, j);
    }
    idx.truncate(k);
    idx
}

/// The aggregation prompt over `candidates` for `query`.
pub(crate) fn aggregation_prompt(query: &str, candidates: &[String]) -> String {
    let what = if candidates.len() == 1 {
        "a candidate solution"
    } else {
        "several candidate solutions"
    };
    format!(
        "Problem:\n{query}\n\nHere are {what} to the problem. Some may be wrong or incomplete.\n\n{}\n\n\
         Examine them carefully: check each step, keep what is correct, fix the mistakes and combine \
         the useful ideas. Then write one complete, improved solution, ending with the final answer.",
        numbered("Solution", candidates)
    )
}

/// The shape of one aggregation step.
#[derive(Debug, Clone, Copy)]
pub(crate) struct Aggregation {
    /// New solutions built.
    pub size: usize,
    /// Members aggregated into each.
    pub k: usize,
    pub temperature: f32,
}

/// One RSA step: `shape.size` new solutions, each aggregating `shape.k` members of
/// `population` drawn with `rng`; the calls run concurrently.
pub(crate) async fn aggregate_step(
    ctx: &Ctx,
    request: &StrategyRequest,
    query: &str,
    population: &[String],
    shape: Aggregation,
    rng: &mut Rng,
) -> Result<Vec<String>, StrategyError> {
    let system = request.system();
    let sets: Vec<Vec<String>> = (0..shape.size)
        .map(|_| {
            draw(rng, population.len(), shape.k)
                .into_iter()
                .filter_map(|i| population.get(i).cloned())
                .collect()
        })
        .collect();
    let step = temp(shape.temperature);
    let calls = sets.iter().enumerate().map(|(i, set)| {
        let ctx = ctx.clone();
        let messages = prompt(system, aggregation_prompt(query, set));
        let purpose = format!("aggregate {}", i + 1);
        let step = &step;
        async move { one(&ctx, request, &purpose, messages, step).await }
    });
    join_all(calls).await.into_iter().collect()
}

/// The majority member of `population` by the answers it gives to `query` (first member
/// without extractable answers), with the vote that chose it.
pub(crate) fn majority(query: &str, population: &[String]) -> (Option<String>, Option<Vote>) {
    let kind = answer_kind(query, None);
    let answers: Vec<Option<String>> = population.iter().map(|s| extract_as(s, kind)).collect();
    let tally = vote(&answers);
    let chosen = match &tally {
        Some(v) => v.members.first().and_then(|&i| population.get(i)).cloned(),
        None => population.first().cloned(),
    };
    (chosen, tally)
}

impl Approach for Rsa {
    const SLUG: &'static str = "rsa";
    const DESCRIPTION: &'static str =
        "Recursive self-aggregation: a population refined by aggregating K of N per step";
    type Params = Params;

    fn from_params(params: Params) -> Result<Self, SpecError> {
        Self::new(params)
    }
}

#[async_trait]
impl Strategy for Rsa {
    fn slug(&self) -> &str {
        Self::SLUG
    }

    async fn run(&self, ctx: &Ctx, request: &StrategyRequest) -> Result<Answer, StrategyError> {
        let p = &self.params;
        let query = request.query()?.to_string();
        let mut rng = Rng::new(p.seed);
        let mut population = samples(
            ctx,
            request,
            "initial population",
            request.with_query(&query),
            &temp(p.temperature),
            p.population,
        )
        .await?;
        let mut candidates = population.clone();
        if let (Some(best), _) = majority(&query, &population) {
            ctx.offer(best);
        }
        for step in 1..p.steps {
            population = aggregate_step(
                ctx,
                request,
                &query,
                &population,
                Aggregation {
                    size: p.population as usize,
                    k: p.k as usize,
                    temperature: p.temperature,
                },
                &mut rng,
            )
            .await?;
            tracing::debug!(step, size = population.len(), "rsa step");
            if let (Some(best), _) = majority(&query, &population) {
                ctx.offer(best);
            }
            candidates.extend(population.iter().cloned());
        }
        let (answer, tally) = majority(&query, &population);
        Ok(Answer::one(answer.unwrap_or_default())
            .with_candidates(candidates)
            .with_vote(tally))
    }
}

#[cfg(test)]
mod tests {
    use std::sync::Arc;
    use std::sync::atomic::{AtomicU32, Ordering};

    use super::*;
    use crate::mock::MockBackend;
    use crate::strategy::{Budget, run};

    #[test]
    fn draws_are_distinct_seeded_and_cover() {
        let mut a = Rng::new(7);
        let mut b = Rng::new(7);
        let mut seen = [0u32; 6];
        for _ in 0..200 {
            let d = draw(&mut a, 6, 3);
            assert_eq!(d, draw(&mut b, 6, 3));
            let mut s = d.clone();
            s.sort();
            s.dedup();
            assert_eq!(s.len(), 3);
            for i in d {
                seen[i] += 1;
            }
        }
        // Every member gets drawn, roughly equally (300 draws over 6 members = 100 each).
        assert!(seen.iter().all(|&c| (60..140).contains(&c)), "{seen:?}");
    }

    #[tokio::test]
    async fn population_steps_and_aggregation_sets() {
        let counter = Arc::new(AtomicU32::new(0));
        let c = counter.clone();
        // Initial solutions answer 1..6; aggregations answer 42.
        let mock = Arc::new(MockBackend::new(move |r, i| {
            let user = r.last_user().unwrap_or_default();
            Ok(if user.starts_with("Problem:") {
                c.fetch_add(1, Ordering::SeqCst);
                "so the answer is 42".to_string()
            } else {
                format!("the answer is {}", i + 1)
            })
        }));
        let strategy = Rsa::new(Params::default()).unwrap();
        let out = run(
            &strategy,
            mock.clone(),
            &StrategyRequest::user("q?"),
            Budget::default(),
        )
        .await
        .unwrap();
        assert_eq!(out.answer, "so the answer is 42");
        // The final population votes 6 to 0.
        assert_eq!(out.vote.map(|v| v.summary()).as_deref(), Some("42: 6"));
        // 1 n-request of 6, then 2 steps of 6 aggregations.
        let sent = mock.requests();
        assert_eq!(sent.len(), 13);
        assert_eq!(sent[0].n, 6);
        assert_eq!(counter.load(Ordering::SeqCst), 12);
        assert_eq!(out.candidates.len(), 18);
        // Each aggregation shows exactly K=3 solutions.
        for r in &sent[1..] {
            let user = &r.messages.last().unwrap().content;
            assert!(user.contains("Solution 3:") && !user.contains("Solution 4:"));
            assert_eq!(r.sampling.temperature, Some(0.7));
        }
    }

    #[tokio::test]
    async fn same_seed_same_run() {
        let go = |seed| async move {
            let mock = Arc::new(MockBackend::new(|r, i| {
                let user = &r.messages.last().unwrap().content;
                Ok(format!("{} {}", user.len(), i))
            }));
            let strategy = Rsa::new(Params {
                seed,
                steps: 2,
                ..Params::default()
            })
            .unwrap();
            run(
                &strategy,
                mock.clone(),
                &StrategyRequest::user("q"),
                Budget::default(),
            )
            .await
            .unwrap();
            mock.requests()
                .iter()
                .skip(1)
                .map(|r| r.messages.last().unwrap().content.clone())
                .collect::<Vec<_>>()
        };
        assert_eq!(go(3).await, go(3).await);
        assert_ne!(go(3).await, go(4).await);
    }

    #[test]
    fn rejects_k_above_population() {
        assert!(
            Rsa::new(Params {
                k: 7,
                ..Params::default()
            })
            .is_err()
        );
    }
}
