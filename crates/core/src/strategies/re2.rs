//! `re2`: ReRead (Xu et al. 2023). The query becomes `Q` + "Read the question again: " + `Q`.

use async_trait::async_trait;
use serde::{Deserialize, Serialize};

use super::Approach;
use crate::spec::SpecError;
use crate::strategy::{Answer, Ctx, Strategy, StrategyError, StrategyRequest};
use crate::types::Sampling;

/// The parameters of `re2`; a field a spec leaves out takes its default here
/// (`optillm approaches` lists them).
#[derive(Debug, Clone, Default, Serialize, Deserialize)]
#[serde(default, deny_unknown_fields)]
pub struct Params {}

/// The `re2` strategy (the module documentation describes it): built from typed
/// [`Params`] with `new`, or by name through [`crate::strategies::build`].
#[derive(Debug, Clone, Default)]
pub struct Re2 {
    _params: Params,
}

impl Re2 {
    pub fn new(params: Params) -> Self {
        Self { _params: params }
    }
}

/// The ReRead prompt of `query`.
pub(crate) fn reread(query: &str) -> String {
    format!("{query}\nRead the question again: {query}")
}

impl Approach for Re2 {
    const SLUG: &'static str = "re2";
    const DESCRIPTION: &'static str =
        "ReRead: the query is given twice (\"Read the question again\"); keeps n";
    type Params = Params;

    fn from_params(params: Params) -> Result<Self, SpecError> {
        Ok(Self::new(params))
    }
}

#[async_trait]
impl Strategy for Re2 {
    fn slug(&self) -> &str {
        Self::SLUG
    }

    async fn run(&self, ctx: &Ctx, request: &StrategyRequest) -> Result<Answer, StrategyError> {
        let query = request.query()?;
        let chat = request
            .chat(request.with_query(&reread(query)), &Sampling::default())
            .with_n(request.n.max(1));
        let completion = ctx.final_call("reread", chat).await?;
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
    use crate::types::{Message, Role};

    #[tokio::test]
    async fn rereads_the_query_and_keeps_n_and_settings() {
        let mock = Arc::new(MockBackend::new(|_, i| Ok(format!("reply {i}"))));
        let mut req = StrategyRequest::new(vec![
            Message::system("Be brief."),
            Message::user("What is 2+3?"),
        ]);
        req.n = 3;
        req.sampling = Sampling::default().with_temperature(0.2).with_seed(7);
        let out = run(&Re2::default(), mock.clone(), &req, Budget::default())
            .await
            .unwrap();
        assert_eq!(out.texts(), vec!["reply 0", "reply 1", "reply 2"]);
        let sent = mock.requests();
        assert_eq!(sent.len(), 1);
        assert_eq!(sent[0].n, 3);
        assert_eq!(sent[0].sampling.temperature, Some(0.2));
        assert_eq!(sent[0].sampling.seed, Some(7));
        assert_eq!(sent[0].messages[0], Message::system("Be brief."));
        assert_eq!(sent[0].messages[1].role, Role::User);
        assert_eq!(
            sent[0].messages[1].content,
            "What is 2+3?\nRead the question again: What is 2+3?"
        );
    }

    #[tokio::test]
    async fn needs_a_user_message() {
        let mock = Arc::new(MockBackend::constant("x"));
        let req = StrategyRequest::new(vec![Message::system("s")]);
        let err = run(&Re2::default(), mock.clone(), &req, Budget::default())
            .await
            .unwrap_err();
        assert!(matches!(err, StrategyError::NoQuery));
        assert_eq!(mock.calls(), 0);
    }
}
