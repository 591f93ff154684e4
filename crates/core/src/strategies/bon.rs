//! `bon`: best-of-n. n samples at T=1 in one request, each rated 0-10 by the model
//! (T=0.1), the ratings concurrently; the highest rated sample wins.

use async_trait::async_trait;
use serde::{Deserialize, Serialize};

use super::Approach;
use super::select::{argmax, rate_all};
use super::util::{samples, temp};
use crate::spec::SpecError;
use crate::strategy::{Answer, Ctx, Strategy, StrategyError, StrategyRequest};

/// The parameters of `bon`; a field a spec leaves out takes its default here
/// (`optillm approaches` lists them).
#[derive(Debug, Clone, Serialize, Deserialize)]
#[serde(default, deny_unknown_fields)]
pub struct Params {
    /// Samples, in one request.
    pub n: u32,
    pub temperature: f32,
    pub rating_temperature: f32,
    /// Most tokens of a rating reply.
    pub rating_max_tokens: u32,
}

impl Default for Params {
    fn default() -> Self {
        Self {
            n: 3,
            temperature: 1.0,
            rating_temperature: 0.1,
            rating_max_tokens: 256,
        }
    }
}

/// The `bon` strategy (the module documentation describes it): built from typed
/// [`Params`] with `new`, or by name through [`crate::strategies::build`].
#[derive(Debug, Clone)]
pub struct BestOfN {
    params: Params,
}

impl BestOfN {
    pub fn new(params: Params) -> Result<Self, SpecError> {
        if params.n == 0 || params.rating_max_tokens == 0 {
            return Err(SpecError::BadParameter {
                approach: Self::SLUG.into(),
                message: "n and rating_max_tokens must be at least 1".into(),
            });
        }
        Ok(Self { params })
    }
}

impl Approach for BestOfN {
    const SLUG: &'static str = "bon";
    const DESCRIPTION: &'static str =
        "Best-of-n: n samples in one request, each rated 0-10 by the model concurrently, argmax";
    type Params = Params;

    fn from_params(params: Params) -> Result<Self, SpecError> {
        Self::new(params)
    }
}

#[async_trait]
impl Strategy for BestOfN {
    fn slug(&self) -> &str {
        Self::SLUG
    }

    async fn run(&self, ctx: &Ctx, request: &StrategyRequest) -> Result<Answer, StrategyError> {
        request.query()?;
        let p = &self.params;
        let texts = samples(
            ctx,
            request,
            "sample",
            request.messages.clone(),
            &temp(p.temperature),
            p.n,
        )
        .await?;
        if let Some(first) = texts.first() {
            ctx.offer(first.clone());
        }
        let step = temp(p.rating_temperature).with_max_tokens(p.rating_max_tokens);
        let (ratings, cut) = rate_all(ctx, request, &texts, &step).await?;
        let best = argmax(&ratings).unwrap_or(0);
        let answer = texts.get(best).cloned().unwrap_or_default();
        ctx.offer(answer.clone());
        if let Some(e) = cut {
            return Err(e);
        }
        tracing::debug!(?ratings, best, "best of n");
        let candidates = texts
            .iter()
            .zip(&ratings)
            .map(|(t, r)| match r {
                Some(r) => format!("[rating: {r}]\n{t}"),
                None => format!("[rating: none]\n{t}"),
            })
            .collect();
        Ok(Answer {
            choices: vec![answer],
            candidates,
            vote: None,
        })
    }
}

#[cfg(test)]
mod tests {
    use std::sync::Arc;
    use std::time::Duration;

    use super::*;
    use crate::mock::MockBackend;
    use crate::strategy::{Budget, run};
    use crate::types::{ChatRequest, Message, Role, Sampling};

    fn is_rating(r: &ChatRequest) -> bool {
        r.messages
            .last()
            .is_some_and(|m| m.content.starts_with("Rate the above"))
    }

    /// Samples "draft 0..n"; ratings from the rated text.
    fn responder(r: &ChatRequest, i: u32) -> Result<String, crate::BackendError> {
        if !is_rating(r) {
            return Ok(format!("draft {i}"));
        }
        let rated = r.messages[r.messages.len() - 2].content.clone();
        Ok(match rated.as_str() {
            "draft 0" => "6".into(),
            "draft 1" => "I would rate this **Rating: 9/10** overall.".into(),
            _ => "no number here".into(),
        })
    }

    #[tokio::test]
    async fn n_samples_in_one_request_then_concurrent_ratings_argmax() {
        let mock = Arc::new(MockBackend::new(responder));
        let mut req =
            StrategyRequest::new(vec![Message::system("sys"), Message::user("Write a haiku")]);
        req.sampling = Sampling::default().with_max_tokens(64).with_top_p(0.95);
        let out = run(
            &BestOfN::new(Params::default()).unwrap(),
            mock.clone(),
            &req,
            Budget::default(),
        )
        .await
        .unwrap();
        assert_eq!(out.answer, "draft 1");
        let sent = mock.requests();
        assert_eq!(sent.len(), 4);
        assert_eq!(sent[0].n, 3);
        assert_eq!(sent[0].sampling.temperature, Some(1.0));
        assert_eq!(sent[0].sampling.max_tokens, Some(64));
        let ratings: Vec<&ChatRequest> = sent.iter().filter(|r| is_rating(r)).collect();
        assert_eq!(ratings.len(), 3);
        for r in &ratings {
            assert_eq!(r.sampling.temperature, Some(0.1));
            assert_eq!(r.sampling.max_tokens, Some(256));
            assert_eq!(r.sampling.top_p, Some(0.95));
            assert_eq!(r.messages[0], Message::system("sys"));
            assert_eq!(r.messages[1], Message::user("Write a haiku"));
            assert_eq!(r.messages[2].role, Role::Assistant);
        }
        assert_eq!(
            out.candidates,
            vec![
                "[rating: 6]\ndraft 0",
                "[rating: 9]\ndraft 1",
                "[rating: none]\ndraft 2"
            ]
        );
    }

    /// A backend whose rating calls are slow: run concurrently they take one delay, not three.
    struct Slow(MockBackend);

    #[async_trait]
    impl crate::Backend for Slow {
        fn model(&self) -> &str {
            "slow"
        }
        fn capabilities(&self) -> crate::Capabilities {
            self.0.capabilities()
        }
        async fn stream(
            &self,
            request: ChatRequest,
        ) -> Result<crate::CompletionStream, crate::BackendError> {
            if is_rating(&request) {
                tokio::time::sleep(Duration::from_millis(200)).await;
            }
            self.0.stream(request).await
        }
    }

    #[tokio::test(start_paused = true)]
    async fn ratings_run_concurrently() {
        let backend = Arc::new(Slow(MockBackend::new(responder)));
        let started = tokio::time::Instant::now();
        let out = run(
            &BestOfN::new(Params::default()).unwrap(),
            backend,
            &StrategyRequest::user("q"),
            Budget::default(),
        )
        .await
        .unwrap();
        assert_eq!(out.answer, "draft 1");
        let elapsed = started.elapsed();
        assert!(elapsed >= Duration::from_millis(200));
        assert!(elapsed < Duration::from_millis(400), "{elapsed:?}");
    }

    #[tokio::test]
    async fn budget_cut_after_samples_returns_a_sample() {
        let mock = Arc::new(MockBackend::new(responder));
        // The prompt (1 word) and three 2-word drafts fill the budget.
        let budget = Budget {
            max_total_tokens: Some(7),
            max_duration: None,
        };
        let out = run(
            &BestOfN::new(Params::default()).unwrap(),
            mock.clone(),
            &StrategyRequest::user("q"),
            budget,
        )
        .await
        .unwrap();
        assert!(out.budget_exhausted);
        assert_eq!(out.answer, "draft 0");
        assert_eq!(mock.calls(), 1);
    }
}
