//! `cot_reflection`: one call that thinks in `<thinking>`, checks itself in
//! `<reflection>` and answers in `<output>`; only the output is returned. Robust to
//! small models: a missing closing tag, an echoed format template, or no tags at all.

use async_trait::async_trait;
use serde::{Deserialize, Serialize};

use super::util::temp;
use crate::strategy::{Answer, Ctx, Strategy, StrategyError, StrategyRequest};
use crate::types::Message;

#[derive(Debug, Clone, Serialize, Deserialize)]
#[serde(default, deny_unknown_fields)]
pub struct Params {
    pub temperature: f32,
    /// Also return the whole reply (thinking and reflection) as a candidate.
    pub keep_reasoning: bool,
}

impl Default for Params {
    fn default() -> Self {
        Self {
            temperature: 0.6,
            keep_reasoning: true,
        }
    }
}

#[derive(Debug, Clone, Default)]
pub struct CotReflection {
    params: Params,
}

impl CotReflection {
    pub fn new(params: Params) -> Self {
        Self { params }
    }
}

const INSTRUCTIONS: &str = "You are an AI assistant that uses a Chain of Thought (CoT) approach with reflection to answer queries. Follow these steps:

1. Think through the problem step by step within the <thinking> tags.
2. Reflect on your thinking to check for any errors or improvements within the <reflection> tags.
3. Make any necessary adjustments based on your reflection.
4. Provide your final, concise answer within the <output> tags.

Important: The <thinking> and <reflection> sections are for your internal reasoning process only.
Do not include any part of the final answer in these sections.
The actual response to the query must be entirely contained within the <output> tags.

Use the following format for your response:
<thinking>
[Your step-by-step reasoning goes here. This is your internal thought process, not the final answer.]
<reflection>
[Your reflection on your reasoning, checking for errors or improvements]
</reflection>
[Any adjustments to your thinking based on your reflection]
</thinking>
<output>
[Your final, concise answer to the query. This is the only part that will be shown to the user.]
</output>";

/// The system prompt: the caller's, then the instructions.
pub(crate) fn system_prompt(caller: Option<&str>) -> String {
    match caller.map(str::trim).filter(|s| !s.is_empty()) {
        Some(s) => format!("{s}\n\n{INSTRUCTIONS}"),
        None => INSTRUCTIONS.to_string(),
    }
}

/// Finds `needle` in `hay` ignoring ASCII case; byte offset of the match.
fn find_ci(hay: &str, needle: &str, last: bool) -> Option<usize> {
    let lower = hay.to_ascii_lowercase();
    if last {
        lower.rfind(needle)
    } else {
        lower.find(needle)
    }
}

/// The answer part of a reply: the content of the last `<output>` section (up to
/// `</output>` or the end); without one, what follows the last closing `</thinking>`
/// or `</reflection>`; without tags, the reply itself.
pub(crate) fn output_of(reply: &str) -> String {
    // `to_ascii_lowercase` keeps byte offsets, so positions found in the lowered copy
    // are valid char boundaries of `reply`.
    let from_output = find_ci(reply, "<output>", true)
        .and_then(|p| reply.get(p + "<output>".len()..))
        .map(|rest| match find_ci(rest, "</output>", false) {
            Some(end) => rest.get(..end).unwrap_or(rest),
            None => rest,
        })
        .map(str::trim)
        .filter(|s| !s.is_empty() && !s.starts_with("[Your final"));
    if let Some(o) = from_output {
        return o.to_string();
    }
    let after_close = ["</thinking>", "</reflection>"]
        .iter()
        .filter_map(|t| find_ci(reply, t, true).map(|p| p + t.len()))
        .max()
        .and_then(|p| reply.get(p..))
        .map(strip_tags)
        .filter(|s| !s.is_empty());
    if let Some(a) = after_close {
        return a;
    }
    strip_tags(reply)
}

/// `text` without the section tags, trimmed.
fn strip_tags(text: &str) -> String {
    let mut s = text.to_string();
    for tag in [
        "<thinking>",
        "</thinking>",
        "<reflection>",
        "</reflection>",
        "<output>",
        "</output>",
    ] {
        s = s.replace(tag, "");
    }
    s.trim().to_string()
}

#[async_trait]
impl Strategy for CotReflection {
    fn slug(&self) -> &str {
        "cot_reflection"
    }

    async fn run(&self, ctx: &Ctx, request: &StrategyRequest) -> Result<Answer, StrategyError> {
        let query = request.query()?;
        let messages = vec![
            Message::system(system_prompt(request.system())),
            Message::user(query),
        ];
        let replies = ctx
            .call(
                "cot with reflection",
                request
                    .chat(messages, &temp(self.params.temperature))
                    .with_n(request.n.max(1)),
            )
            .await?
            .texts();
        let choices: Vec<String> = replies.iter().map(|r| output_of(r)).collect();
        Ok(Answer {
            choices,
            candidates: if self.params.keep_reasoning {
                replies
            } else {
                Vec::new()
            },
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
    fn output_parsing_is_robust() {
        let full =
            "<thinking>2+2 is 4\n<reflection>ok</reflection>\n</thinking>\n<output>\n4\n</output>";
        assert_eq!(output_of(full), "4");
        assert_eq!(
            output_of("<thinking>hm</thinking><output>The answer is 4"),
            "The answer is 4"
        );
        assert_eq!(
            output_of("<thinking>a</thinking>\n<reflection>b</reflection>\nIt is 4."),
            "It is 4."
        );
        assert_eq!(output_of("Just 4."), "Just 4.");
        assert_eq!(output_of("<OUTPUT>Four</OUTPUT>"), "Four");
        // An echoed template first, the real output last.
        assert_eq!(
            output_of(
                "<output>\n[Your final, concise answer]\n</output>\n<thinking>x</thinking>\n<output>5</output>"
            ),
            "5"
        );
        assert_eq!(output_of("<thinking>é ü</thinking><output>ß</output>"), "ß");
        // Unclosed thinking, no output: the reply without tags.
        assert_eq!(output_of("<thinking>still going"), "still going");
    }

    #[tokio::test]
    async fn one_call_with_instructions_returns_only_the_output() {
        let mock = Arc::new(MockBackend::constant(
            "<thinking>6*7 <reflection>checked</reflection></thinking><output>42</output>",
        ));
        let mut req =
            StrategyRequest::new(vec![Message::system("Be terse."), Message::user("6*7?")]);
        req.sampling = Sampling::default().with_max_tokens(100);
        let out = run(
            &CotReflection::default(),
            mock.clone(),
            &req,
            Budget::default(),
        )
        .await
        .unwrap();
        assert_eq!(out.answer, "42");
        let sent = mock.requests();
        assert_eq!(sent.len(), 1);
        assert_eq!(sent[0].sampling.temperature, Some(0.6));
        assert_eq!(sent[0].sampling.max_tokens, Some(100));
        assert_eq!(sent[0].messages[0].role, Role::System);
        assert!(
            sent[0].messages[0]
                .content
                .starts_with("Be terse.\n\nYou are an AI assistant")
        );
        assert_eq!(sent[0].messages[1], Message::user("6*7?"));
        assert!(out.candidates[0].contains("<reflection>checked"));
    }
}
