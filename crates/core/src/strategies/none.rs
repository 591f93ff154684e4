//! `none`: one completion, passed through, with its logprobs and structured output
//! when the request asks for them (the one approach that honours them).
//!
//! `none(temperature=0)` is greedy decoding: the reference of an evaluation. Without
//! `temperature` the request's own sampling settings (or the backend's default) apply.

use async_trait::async_trait;
use serde::{Deserialize, Serialize};

use super::Approach;
use crate::spec::SpecError;
use crate::strategy::{Answer, Ctx, Strategy, StrategyError, StrategyRequest};
use crate::types::Sampling;

/// The parameters of `none`; a field a spec leaves out takes its default here
/// (`optillm approaches` lists them).
#[derive(Debug, Clone, Default, Serialize, Deserialize)]
#[serde(default, deny_unknown_fields)]
pub struct Params {
    /// The sampling temperature of the call, over the request's (0: greedy); unset:
    /// the request's.
    #[serde(skip_serializing_if = "Option::is_none")]
    pub temperature: Option<f32>,
}

/// The `none` strategy (the module documentation describes it): built from typed
/// [`Params`] with `new`, or by name through [`crate::strategies::build`].
#[derive(Debug, Clone, Default)]
pub struct NoneStrategy {
    params: Params,
}

impl NoneStrategy {
    pub fn new(params: Params) -> Self {
        Self { params }
    }
}

impl Approach for NoneStrategy {
    const SLUG: &'static str = "none";
    const DESCRIPTION: &'static str =
        "Pass-through: one completion, streamed (temperature=0: greedy; unset: the request's)";
    type Params = Params;

    fn from_params(params: Params) -> Result<Self, SpecError> {
        Ok(Self::new(params))
    }
}

#[async_trait]
impl Strategy for NoneStrategy {
    fn slug(&self) -> &str {
        Self::SLUG
    }

    fn passes_through(&self) -> bool {
        true
    }

    async fn run(&self, ctx: &Ctx, request: &StrategyRequest) -> Result<Answer, StrategyError> {
        let step = Sampling {
            temperature: self.params.temperature,
            ..Sampling::default()
        };
        // The request as it came (n, logprobs, format, raw), at the step's settings.
        let chat = StrategyRequest {
            sampling: request.sampling.merged(&step),
            ..request.clone()
        };
        let completion = ctx.final_call("completion", chat).await?;
        Ok(Answer {
            choices: completion.texts(),
            candidates: Vec::new(),
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

    #[tokio::test]
    async fn passes_through_with_settings_and_n() {
        let mock = Arc::new(MockBackend::new(|_, i| Ok(format!("answer {i}"))));
        let mut req = StrategyRequest::user("2+2?");
        req.n = 2;
        req.sampling = Sampling::default().with_temperature(0.3);
        let out = run(
            &NoneStrategy::default(),
            mock.clone(),
            &req,
            Budget::default(),
        )
        .await
        .unwrap();
        assert_eq!(out.texts(), vec!["answer 0", "answer 1"]);
        assert_eq!(out.usage.calls, 1);
        assert_eq!(out.usage.completion_tokens, 4);
        let sent = mock.requests();
        assert_eq!(sent[0].n, 2);
        assert_eq!(sent[0].sampling.temperature, Some(0.3));
        assert_eq!(out.trace.len(), 1);
    }

    #[tokio::test]
    async fn its_temperature_wins_over_the_request() {
        let mock = Arc::new(MockBackend::new(|_, _| Ok("4".to_string())));
        let mut req = StrategyRequest::user("2+2?");
        req.sampling = Sampling::default()
            .with_temperature(0.8)
            .with_seed(5)
            .with_max_tokens(64);
        let spec = crate::spec::parse("none(temperature=0)").unwrap();
        // The spec keeps its parameter, so an evaluation tells the greedy row apart.
        assert_eq!(spec.to_string(), "none(temperature=0)");
        let greedy = crate::strategies::build_spec(&spec).unwrap();
        run(greedy.as_ref(), mock.clone(), &req, Budget::default())
            .await
            .unwrap();
        let sent = mock.requests();
        assert_eq!(sent[0].sampling.temperature, Some(0.0));
        // The rest of the request's settings stay.
        assert_eq!(sent[0].sampling.seed, Some(5));
        assert_eq!(sent[0].sampling.max_tokens, Some(64));
        // Unknown parameters are still refused.
        let unknown = crate::spec::parse("none(top_q=1)").unwrap();
        assert!(crate::strategies::build_spec(&unknown).is_err());
    }
}
