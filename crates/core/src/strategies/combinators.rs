//! Combinators built from a [`Spec`]: `a&b` (pipeline) and `a|b` (parallel).

use async_trait::async_trait;
use futures::future::join_all;

use crate::spec::{Spec, SpecError};
use crate::strategy::{Answer, Ctx, Strategy, StrategyError, StrategyRequest};

/// Builds the strategy a spec describes: a single approach, a pipeline or a parallel set.
pub fn build_spec(spec: &Spec) -> Result<Box<dyn Strategy>, SpecError> {
    match spec {
        Spec::Stage { slug, params } => super::build(slug, params),
        Spec::Pipeline(stages) => Ok(Box::new(Pipeline {
            name: spec.to_string(),
            stages: stages.iter().map(build_spec).collect::<Result<_, _>>()?,
        })),
        Spec::Parallel(branches) => Ok(Box::new(Parallel {
            name: spec.to_string(),
            branches: branches.iter().map(build_spec).collect::<Result<_, _>>()?,
        })),
    }
}

/// `a&b&...`: the answer of each stage becomes the query of the next. Intermediate
/// stages give one answer; the last one honours the request's `n`. Only the last stage
/// streams its final call (intermediate answers are not the run's answer).
pub struct Pipeline {
    name: String,
    stages: Vec<Box<dyn Strategy>>,
}

#[async_trait]
impl Strategy for Pipeline {
    fn slug(&self) -> &str {
        &self.name
    }

    async fn run(&self, ctx: &Ctx, request: &StrategyRequest) -> Result<Answer, StrategyError> {
        let mut current = request.clone();
        let mut candidates = Vec::new();
        let last = self.stages.len().saturating_sub(1);
        for (i, stage) in self.stages.iter().enumerate() {
            current.n = if i == last { request.n } else { 1 };
            tracing::debug!(stage = stage.slug(), index = i, "pipeline stage");
            let answer = if i == last {
                stage.run(ctx, &current).await?
            } else {
                stage.run(&ctx.without_sink(), &current).await?
            };
            let text = answer.choices.first().cloned().unwrap_or_default();
            ctx.offer(text.clone());
            if i == last {
                candidates.extend(answer.candidates);
                return Ok(Answer {
                    choices: answer.choices,
                    candidates,
                    vote: answer.vote,
                });
            }
            candidates.push(text.clone());
            current = StrategyRequest {
                messages: current.with_query(&text),
                n: 1,
                ..request.clone()
            };
        }
        Err(SpecError::BadSpec {
            position: 0,
            message: "a pipeline needs at least one stage".into(),
        }
        .into())
    }
}

/// `a|b|...`: every branch runs concurrently on the same request; the answer has one
/// choice per branch, in order. Branches do not stream (each would be choice 0).
pub struct Parallel {
    name: String,
    branches: Vec<Box<dyn Strategy>>,
}

#[async_trait]
impl Strategy for Parallel {
    fn slug(&self) -> &str {
        &self.name
    }

    async fn run(&self, ctx: &Ctx, request: &StrategyRequest) -> Result<Answer, StrategyError> {
        let mut single = request.clone();
        single.n = 1;
        let runs = self.branches.iter().map(|b| {
            let ctx = ctx.without_sink();
            let single = &single;
            async move { b.run(&ctx, single).await }
        });
        let results = join_all(runs).await;
        let mut answer = Answer::default();
        let mut first_error = None;
        for result in results {
            match result {
                Ok(a) => {
                    let text = a.choices.into_iter().next().unwrap_or_default();
                    if answer.choices.is_empty() {
                        ctx.offer(text.clone());
                    }
                    answer.choices.push(text);
                    answer.candidates.extend(a.candidates);
                }
                Err(e) => {
                    first_error.get_or_insert(e);
                }
            }
        }
        match first_error {
            Some(e) => Err(e),
            None => Ok(answer),
        }
    }
}

#[cfg(test)]
mod tests {
    use std::sync::Arc;
    use std::time::Duration;

    use super::*;
    use crate::mock::MockBackend;
    use crate::spec::parse;
    use crate::strategy::{Budget, run};

    fn last_user(r: &crate::types::ChatRequest) -> String {
        r.last_user().unwrap_or_default().to_string()
    }

    #[tokio::test]
    async fn pipeline_feeds_answer_as_next_query() {
        let mock = Arc::new(MockBackend::new(|r, _| Ok(format!("<{}>", last_user(r)))));
        let strategy = build_spec(&parse("none&none&none").unwrap()).unwrap();
        assert_eq!(strategy.slug(), "none&none&none");
        let mut req = StrategyRequest::user("q");
        req.n = 2;
        let out = run(strategy.as_ref(), mock.clone(), &req, Budget::default())
            .await
            .unwrap();
        assert_eq!(out.answer, "<<<q>>>");
        assert_eq!(out.choices.len(), 2);
        assert_eq!(out.candidates, vec!["<q>", "<<q>>"]);
        let sent = mock.requests();
        assert_eq!(sent.len(), 3);
        assert_eq!(last_user(&sent[1]), "<q>");
        assert_eq!(sent[0].n, 1);
        assert_eq!(sent[2].n, 2);
        assert_eq!(out.usage.calls, 3);
    }

    /// A backend that waits before answering, to show branches overlap.
    struct Slow(MockBackend);

    #[async_trait]
    impl crate::backend::Backend for Slow {
        fn model(&self) -> &str {
            "slow"
        }
        fn capabilities(&self) -> crate::types::Capabilities {
            self.0.capabilities()
        }
        async fn stream(
            &self,
            request: crate::types::ChatRequest,
        ) -> Result<crate::backend::CompletionStream, crate::error::BackendError> {
            tokio::time::sleep(Duration::from_millis(100)).await;
            self.0.stream(request).await
        }
    }

    #[tokio::test(start_paused = true)]
    async fn parallel_runs_concurrently_one_choice_per_branch() {
        let counter = std::sync::atomic::AtomicU32::new(0);
        let mock = MockBackend::new(move |r, _| {
            let i = counter.fetch_add(1, std::sync::atomic::Ordering::SeqCst);
            Ok(format!("{} #{i}", last_user(r)))
        });
        let backend = Arc::new(Slow(mock));
        let strategy = build_spec(&parse("none|none&none|none").unwrap()).unwrap();
        let mut req = StrategyRequest::user("q");
        req.n = 3;
        let started = tokio::time::Instant::now();
        let out = run(strategy.as_ref(), backend.clone(), &req, Budget::default())
            .await
            .unwrap();
        // Three branches, the middle one two calls deep: 200 ms, not 400 ms.
        let took = started.elapsed();
        assert!(took >= Duration::from_millis(200) && took < Duration::from_millis(300));
        assert_eq!(out.choices.len(), 3);
        assert!(out.choices[1].text.starts_with("q #"));
        assert!(out.choices[1].text.ends_with(&format!(" #{}", 3)));
        assert_eq!(out.usage.calls, 4);
        assert!(backend.0.requests().iter().all(|r| r.n == 1));
    }

    #[tokio::test]
    async fn build_errors_are_typed() {
        assert!(matches!(
            build_spec(&parse("none(bogus=1)").unwrap()),
            Err(SpecError::BadParameter { .. })
        ));
        assert!(matches!(
            build_spec(&Spec::stage("nope")),
            Err(SpecError::UnknownApproach(_))
        ));
    }
}
