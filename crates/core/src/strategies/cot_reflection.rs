//! `cot_reflection`: one call that thinks in `<thinking>`, checks itself in
//! `<reflection>` and answers in `<output>`; only the output is returned. Robust to
//! small models: a missing closing tag, an echoed format template, or no tags at all.

use async_trait::async_trait;
use serde::{Deserialize, Serialize};

use super::Approach;
use super::util::temp;
use crate::spec::SpecError;
use crate::strategy::{Answer, Ctx, Strategy, StrategyError, StrategyRequest};
use crate::types::Message;

/// The parameters of `cot_reflection`; a field a spec leaves out takes its default here
/// (`optillm approaches` lists them).
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

/// The `cot_reflection` strategy (the module documentation describes it): built from typed
/// [`Params`] with `new`, or by name through [`crate::strategies::build`].
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

/// The start of the format template's output line, which small models echo.
const TEMPLATE: &str = "[Your final";

/// The answer part of a reply, as the reference reads it: the content of the first
/// `<output>` section (up to `</output>` or the end) that is not empty and not the
/// echoed format template; without one, what follows the last closing `</thinking>`
/// or `</reflection>`; without tags, the reply itself.
pub(crate) fn output_of(reply: &str) -> String {
    // `to_ascii_lowercase` keeps byte offsets, so positions found in the lowered copy
    // are valid char boundaries of `reply`.
    let lower = reply.to_ascii_lowercase();
    let from_output = lower
        .match_indices("<output>")
        .filter_map(|(p, tag)| reply.get(p + tag.len()..))
        .map(|rest| match find_ci(rest, "</output>", false) {
            Some(end) => rest.get(..end).unwrap_or(rest),
            None => rest,
        })
        .map(str::trim)
        .find(|s| !s.is_empty() && !s.starts_with(TEMPLATE));
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

/// The settled start of the answer of a reply still being generated, for streaming:
/// a prefix of [`output_of`] of every continuation of `partial` that has an `<output>`
/// section. Empty until the first real section shows; holds back trailing whitespace and
/// what may be the start of `</output>` or of the echoed template.
pub(crate) fn streamed_output(partial: &str) -> &str {
    const CLOSE: &str = "</output>";
    let lower = partial.to_ascii_lowercase();
    for (p, tag) in lower.match_indices("<output>") {
        let start = p + tag.len();
        let (Some(rest), Some(rest_lower)) = (partial.get(start..), lower.get(start..)) else {
            continue;
        };
        if let Some(end) = rest_lower.find(CLOSE) {
            // A closed section: the answer if [`output_of`] takes it.
            let content = rest.get(..end).unwrap_or(rest).trim();
            if !content.is_empty() && !content.starts_with(TEMPLATE) {
                return content;
            }
            continue;
        }
        // The open section: what may be the start of the closing tag is held back.
        let held = (1..CLOSE.len())
            .rev()
            .find(|&k| CLOSE.get(..k).is_some_and(|c| rest_lower.ends_with(c)))
            .unwrap_or(0);
        let content = rest.get(..rest.len() - held).unwrap_or("").trim();
        if content.starts_with(TEMPLATE) || TEMPLATE.starts_with(content) {
            return "";
        }
        return content;
    }
    ""
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

impl Approach for CotReflection {
    const SLUG: &'static str = "cot_reflection";
    const DESCRIPTION: &'static str =
        "Chain of thought with <thinking>, <reflection> and <output>; returns the output";
    type Params = Params;

    fn from_params(params: Params) -> Result<Self, SpecError> {
        Ok(Self::new(params))
    }
}

#[async_trait]
impl Strategy for CotReflection {
    fn slug(&self) -> &str {
        Self::SLUG
    }

    async fn run(&self, ctx: &Ctx, request: &StrategyRequest) -> Result<Answer, StrategyError> {
        let query = request.query()?;
        let messages = vec![
            Message::system(system_prompt(request.system())),
            Message::user(query),
        ];
        let replies = ctx
            .final_call_viewed(
                "cot with reflection",
                request
                    .chat(messages, &temp(self.params.temperature))
                    .with_n(request.n.max(1)),
                streamed_output,
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
        // An echoed template first, the real output after it.
        assert_eq!(
            output_of(
                "<output>\n[Your final, concise answer]\n</output>\n<thinking>x</thinking>\n<output>5</output>"
            ),
            "5"
        );
        // Two real sections: the first one, as the reference takes it.
        assert_eq!(
            output_of("<output>5</output> Wait, recheck. <output>6</output>"),
            "5"
        );
        assert_eq!(output_of("<output></output>\n<output>7</output>"), "7");
        assert_eq!(output_of("<thinking>é ü</thinking><output>ß</output>"), "ß");
        // Unclosed thinking, no output: the reply without tags.
        assert_eq!(output_of("<thinking>still going"), "still going");
    }

    #[test]
    fn the_streamed_output_grows_into_the_answer() {
        let replies = [
            "<thinking>2+2 <reflection>ok</reflection></thinking>\n<output>\n The sum is 4. \n</output>",
            "<output>\n[Your final, concise answer]\n</output><thinking>x</thinking><output>5 </OUTPUT> more",
            "<output></output> <output>é ü ß</output",
            "<output>[Your</output>",
            "<thinking>no output section</thinking> It is 4.",
            "<output>5</output> Wait, <output>6</output>",
        ];
        for reply in replies {
            let answer = output_of(reply);
            let mut shown = "";
            for (i, _) in reply.char_indices().chain([(reply.len(), ' ')]) {
                let now = streamed_output(reply.get(..i).unwrap());
                assert!(
                    now.starts_with(shown),
                    "{reply:?} at {i}: {shown:?} then {now:?}"
                );
                assert!(
                    answer.starts_with(now),
                    "{reply:?} at {i}: {now:?} vs {answer:?}"
                );
                shown = now;
            }
        }
        assert_eq!(streamed_output(replies[0]), "The sum is 4.");
        assert_eq!(streamed_output(replies[1]), "5");
        assert_eq!(streamed_output("<output>[Your fin"), "");
        assert_eq!(streamed_output("<output>The answer </ou"), "The answer");
        assert_eq!(streamed_output(replies[4]), "");
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
