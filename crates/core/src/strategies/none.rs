//! `none`: one completion, passed through.

use async_trait::async_trait;
use serde::{Deserialize, Serialize};

use crate::strategy::{Answer, Ctx, Strategy, StrategyError, StrategyRequest};
use crate::types::Sampling;

#[derive(Debug, Clone, Default, Serialize, Deserialize)]
#[serde(default, deny_unknown_fields)]
pub struct Params {}

#[derive(Debug, Clone, Default)]
pub struct NoneStrategy {
    _params: Params,
}

impl NoneStrategy {
    pub fn new(params: Params) -> Self {
        Self { _params: params }
    }
}

#[async_trait]
impl Strategy for NoneStrategy {
    fn slug(&self) -> &str {
        "none"
    }

    async fn run(&self, ctx: &Ctx, request: &StrategyRequest) -> Result<Answer, StrategyError> {
        let chat = request
            .chat(request.messages.clone(), &Sampling::default())
            .with_n(request.n);
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
        assert_eq!(out.choices, vec!["answer 0", "answer 1"]);
        assert_eq!(out.usage.calls, 1);
        assert_eq!(out.usage.completion_tokens, 4);
        let sent = mock.requests();
        assert_eq!(sent[0].n, 2);
        assert_eq!(sent[0].sampling.temperature, Some(0.3));
        assert_eq!(out.trace.len(), 1);
    }
}
