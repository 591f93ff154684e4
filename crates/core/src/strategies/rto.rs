//! `rto`: round-trip optimisation for code. C1 from the query; C1 described as an
//! instruction; C2 from that instruction alone; when the code of C1 and C2 differs,
//! both are merged into C3. All calls at T=0.1.

use async_trait::async_trait;
use serde::{Deserialize, Serialize};

use super::Approach;
use super::util::{one, prompt, temp};
use crate::spec::SpecError;
use crate::strategy::{Answer, Ctx, Strategy, StrategyError, StrategyRequest};
use crate::types::Message;

/// The parameters of `rto`; a field a spec leaves out takes its default here
/// (`optillm approaches` lists them).
#[derive(Debug, Clone, Serialize, Deserialize)]
#[serde(default, deny_unknown_fields)]
pub struct Params {
    pub temperature: f32,
    /// Most tokens of the description (reference: 1024).
    pub description_max_tokens: u32,
}

impl Default for Params {
    fn default() -> Self {
        Self {
            temperature: 0.1,
            description_max_tokens: 1024,
        }
    }
}

/// The `rto` strategy (the module documentation describes it): built from typed
/// [`Params`] with `new`, or by name through [`crate::strategies::build`].
#[derive(Debug, Clone)]
pub struct RoundTrip {
    params: Params,
}

impl RoundTrip {
    pub fn new(params: Params) -> Result<Self, SpecError> {
        if params.description_max_tokens == 0 {
            return Err(SpecError::BadParameter {
                approach: Self::SLUG.into(),
                message: "description_max_tokens must be at least 1".into(),
            });
        }
        Ok(Self { params })
    }
}

const DESCRIBE: &str = "Summarize or describe the code you just created. The summary should be in form of an instruction such that, given the instruction you can create the code yourself.";

/// The code of a reply: the first fenced block (its language tag dropped), else the
/// whole reply; trimmed.
pub(crate) fn code_of(reply: &str) -> String {
    let Some(open) = reply.find("```") else {
        return reply.trim().to_string();
    };
    let after = reply.get(open + 3..).unwrap_or_default();
    // Skip the info string (language tag) up to the end of its line.
    let body = match after.find('\n') {
        Some(nl) => after.get(nl + 1..).unwrap_or_default(),
        None => return reply.trim().to_string(),
    };
    match body.find("```") {
        Some(close) => body.get(..close).unwrap_or(body).trim().to_string(),
        None => body.trim().to_string(),
    }
}

/// Code compared without trailing spaces and blank lines.
fn same_code(a: &str, b: &str) -> bool {
    let lines = |s: &str| -> Vec<String> {
        s.lines()
            .map(|l| l.trim_end().to_string())
            .filter(|l| !l.is_empty())
            .collect()
    };
    lines(a) == lines(b)
}

pub(crate) fn merge_prompt(query: &str, c1: &str, c2: &str) -> String {
    format!(
        "Initial query: {query}\n\nFirst generated code (C1):\n{c1}\n\nSecond generated code (C2):\n{c2}\n\n\
         Based on the initial query and these two different code implementations, generate a final, \
         optimized version of the code. Only respond with the final code, do not return anything else."
    )
}

impl Approach for RoundTrip {
    const SLUG: &'static str = "rto";
    const DESCRIPTION: &'static str = "Round-trip optimisation for code: C1, describe, C2 from the description, merge if they differ";
    type Params = Params;

    fn from_params(params: Params) -> Result<Self, SpecError> {
        Self::new(params)
    }
}

#[async_trait]
impl Strategy for RoundTrip {
    fn slug(&self) -> &str {
        Self::SLUG
    }

    async fn run(&self, ctx: &Ctx, request: &StrategyRequest) -> Result<Answer, StrategyError> {
        let query = request.query()?;
        let step = temp(self.params.temperature);
        let c1 = one(ctx, request, "code C1", request.messages.clone(), &step).await?;
        ctx.offer(c1.clone());

        let mut conversation = request.messages.clone();
        conversation.push(Message::assistant(c1.clone()));
        conversation.push(Message::user(DESCRIBE));
        let describe_step = step
            .clone()
            .with_max_tokens(self.params.description_max_tokens);
        let q2 = one(ctx, request, "describe C1", conversation, &describe_step).await?;

        let c2 = one(
            ctx,
            request,
            "code C2",
            prompt(request.system(), q2.clone()),
            &step,
        )
        .await?;
        let (code1, code2) = (code_of(&c1), code_of(&c2));
        let mut candidates = vec![c1.clone(), format!("[description]\n{q2}"), c2.clone()];
        if same_code(&code1, &code2) {
            tracing::debug!("rto: C1 and C2 agree");
            return Ok(Answer {
                choices: vec![c1],
                candidates,
                vote: None,
            });
        }
        let c3 = ctx
            .final_text(
                "merge C3",
                request.chat(
                    prompt(request.system(), merge_prompt(query, &code1, &code2)),
                    &step,
                ),
            )
            .await?;
        candidates.push(c3.clone());
        Ok(Answer {
            choices: vec![c3],
            candidates,
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
    use crate::types::{Role, Sampling};

    #[test]
    fn code_extraction() {
        assert_eq!(
            code_of("Here:\n```python\ndef f():\n    return 1\n```\nDone."),
            "def f():\n    return 1"
        );
        assert_eq!(code_of("```\nx = 1\n```"), "x = 1");
        assert_eq!(code_of("```rust\nfn main() {}"), "fn main() {}");
        assert_eq!(code_of("plain text"), "plain text");
        assert_eq!(code_of("é ```py\nü\n```"), "ü");
        assert!(same_code("a  \n\nb\n", "a\nb"));
        assert!(!same_code("a\nb", "a\nc"));
    }

    #[tokio::test]
    async fn differing_code_is_merged() {
        let mock = Arc::new(MockBackend::scripted([
            "```python\ndef add(a, b):\n    return a + b\n```",
            "Write a function add(a, b) returning the sum.",
            "```python\ndef add(x, y):\n    return x + y\n```",
            "def add(a, b):\n    return a + b",
        ]));
        let mut req = StrategyRequest::new(vec![
            Message::system("You write Python."),
            Message::user("Sum two numbers"),
        ]);
        req.sampling = Sampling::default().with_stop("<|end|>");
        let out = run(
            &RoundTrip::new(Params::default()).unwrap(),
            mock.clone(),
            &req,
            Budget::default(),
        )
        .await
        .unwrap();
        assert_eq!(out.answer, "def add(a, b):\n    return a + b");
        let sent = mock.requests();
        assert_eq!(sent.len(), 4);
        for r in &sent {
            assert_eq!(r.sampling.temperature, Some(0.1));
            assert_eq!(r.sampling.stop, vec!["<|end|>".to_string()]);
        }
        // Describe: the conversation with C1, then the instruction.
        assert_eq!(sent[1].messages[2].role, Role::Assistant);
        assert_eq!(sent[1].messages[3].content, DESCRIBE);
        assert_eq!(sent[1].sampling.max_tokens, Some(1024));
        // C2 sees the description alone (with the caller's system prompt).
        assert_eq!(
            sent[2].messages,
            vec![
                Message::system("You write Python."),
                Message::user("Write a function add(a, b) returning the sum.")
            ]
        );
        let merge = &sent[3].messages[1].content;
        assert!(merge.starts_with("Initial query: Sum two numbers"));
        assert!(merge.contains("First generated code (C1):\ndef add(a, b):"));
        assert!(merge.contains("Second generated code (C2):\ndef add(x, y):"));
    }

    #[tokio::test]
    async fn same_code_stops_after_three_calls() {
        let code = "```python\nprint(1)\n```";
        let mock = Arc::new(MockBackend::scripted([
            code,
            "Print one.",
            "```py\nprint(1)  \n```",
            "unused",
        ]));
        let out = run(
            &RoundTrip::new(Params::default()).unwrap(),
            mock.clone(),
            &StrategyRequest::user("print 1"),
            Budget::default(),
        )
        .await
        .unwrap();
        assert_eq!(out.answer, code);
        assert_eq!(mock.calls(), 3);
    }

    #[tokio::test]
    async fn budget_cut_returns_c1() {
        let mock = Arc::new(MockBackend::scripted([
            "c1 code here",
            "describe",
            "c2",
            "c3",
        ]));
        // Prompt (2 words) + C1 (3 words).
        let budget = Budget {
            max_total_tokens: Some(5),
            max_duration: None,
        };
        let out = run(
            &RoundTrip::new(Params::default()).unwrap(),
            mock.clone(),
            &StrategyRequest::user("write code"),
            budget,
        )
        .await
        .unwrap();
        assert!(out.budget_exhausted);
        assert_eq!(out.answer, "c1 code here");
        assert_eq!(mock.calls(), 1);
    }
}
