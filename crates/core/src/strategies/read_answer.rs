//! Answers that can always be read: when a sample ends without a final answer that the
//! extraction finds, one short constrained continuation asks for it. The sample is
//! given back as the assistant's turn, then "State only the final answer.", with the
//! reply constrained by a JSON schema (`{"answer": <number>}`, or one of the option
//! letters for a multiple-choice question), which the native backend enforces with a
//! llama.cpp grammar and Ollama / OpenAI-compatible servers with their structured
//! output. The answer read is appended to the sample as `The answer is X.`, so the
//! vote and any later scoring see it.

use serde_json::{Value, json};

use super::auto::{Route, asked_kind, classify, holds_code};
use super::choice_likelihood::split_choices;
use crate::extract::AnswerKind;
use crate::format::ResponseFormat;
use crate::strategy::{Ctx, StrategyError, StrategyRequest};
use crate::types::{Message, Sampling};

/// Tokens allowed for the constrained reply.
const READ_TOKENS: u32 = 32;

/// The kind of answer that replies to `query` are read for (votes, scores): the given
/// kind, else a letter when the question lists lettered options (a number in a reply to
/// such a question is not an answer to it), else a LaTeX math answer when the question
/// asks for it in `\boxed{}` (MATH-style prompts: `\left( 3, \frac{\pi}{2} \right)` and
/// `(3,\dfrac{\pi}{2})` are one answer), else yes / no for a yes / no question ("Does
/// she have enough money?", see [`asked_kind`]: a number in its reasoning is not its
/// answer), else a program when the question holds code ([`holds_code`]: a function to
/// complete; the numbers in its docstring are not its answer), else unknown, where any
/// final answer counts ([`crate::extract::extract_any`]: a boxed answer, a number,
/// yes / no, ...).
pub(crate) fn answer_kind(query: &str, kind: Option<AnswerKind>) -> Option<AnswerKind> {
    kind.or_else(|| {
        if split_choices(query).is_some() {
            Some(AnswerKind::Choice)
        } else if holds_code(query) {
            Some(AnswerKind::Code)
        } else if query.contains("\\boxed") {
            Some(AnswerKind::Math)
        } else if asked_kind(query) == Some(AnswerKind::YesNo) {
            Some(AnswerKind::YesNo)
        } else {
            None
        }
    })
}

/// The kind of answer to read for `query`: [`answer_kind`], else the kind of `auto`'s
/// route for it ([`classify`]: a number for a word problem, LaTeX math for a question
/// written in LaTeX): a constrained read needs a concrete kind.
pub(crate) fn read_kind(query: &str, kind: Option<AnswerKind>) -> Option<AnswerKind> {
    answer_kind(query, kind).or_else(|| match classify(query) {
        Route::Numeric => Some(AnswerKind::Number),
        Route::Math => Some(AnswerKind::Math),
        Route::MultipleChoice | Route::Code | Route::WordAnswer | Route::Other => None,
    })
}

/// The schema of the answer to read for `query` (see [`read_kind`]); `None` when nothing
/// sensible can be asked (free text, no kind).
pub(crate) fn schema_for(query: &str, kind: Option<AnswerKind>) -> Option<Value> {
    let number = json!({"type": "object", "properties": {"answer": {"type": "number"}},
        "required": ["answer"], "additionalProperties": false});
    let choice = |l: Vec<String>| {
        json!({"type": "object", "properties": {"answer": {"enum": l}},
            "required": ["answer"], "additionalProperties": false})
    };
    match read_kind(query, kind)? {
        AnswerKind::Number => Some(number),
        AnswerKind::Choice => {
            let letters = split_choices(query)?
                .options
                .iter()
                .map(|(c, _)| c.to_string())
                .collect();
            Some(choice(letters))
        }
        AnswerKind::YesNo => Some(choice(vec!["yes".into(), "no".into()])),
        _ => None,
    }
}

/// The final answer of `sample` read by one constrained call, as text (`42`, `B`);
/// `None` when the backend cannot constrain its output or the reply has no answer.
pub(crate) async fn read_answer(
    ctx: &Ctx,
    request: &StrategyRequest,
    sample: &str,
    schema: &Value,
) -> Result<Option<String>, StrategyError> {
    let format = ResponseFormat::JsonSchema {
        schema: schema.clone(),
    };
    if !ctx.backend().capabilities().formats.supports(&format) {
        return Ok(None);
    }
    let mut messages = request.messages.clone();
    messages.push(Message::assistant(sample));
    messages.push(Message::user("State only the final answer."));
    let step = Sampling::default()
        .with_temperature(0.0)
        .with_max_tokens(READ_TOKENS);
    let chat = request.chat(messages, &step).with_format(format);
    let reply = ctx.text("read the final answer", chat).await?;
    let answer = serde_json::from_str::<Value>(reply.trim())
        .ok()
        .and_then(|v| v.get("answer").cloned())
        .and_then(|a| match a {
            Value::Number(n) => Some(n.to_string()),
            Value::String(s) if !s.trim().is_empty() => Some(s.trim().to_string()),
            _ => None,
        });
    Ok(answer)
}

#[cfg(test)]
mod tests {
    use std::sync::Arc;

    use super::*;
    use crate::mock::MockBackend;
    use crate::strategy::Budget;

    #[test]
    fn the_answer_kind_follows_the_question() {
        let mc = "Which is a metal?\n(A) wood\n(B) iron";
        assert_eq!(answer_kind(mc, None), Some(AnswerKind::Choice));
        let boxed = "Convert (0,3) to polar coordinates. Finish with \"The answer is \\boxed{X}\".";
        assert_eq!(answer_kind(boxed, None), Some(AnswerKind::Math));
        assert_eq!(answer_kind("Tom has 3 apples. How many?", None), None);
        // A yes / no question is read as yes / no, not as the last number of a reply.
        let enough = "Tom has 3 apples and needs 4. Does he have enough?";
        assert_eq!(answer_kind(enough, None), Some(AnswerKind::YesNo));
        assert_eq!(
            crate::extract::extract_as(
                "He has 3, one short of 4. So no.",
                answer_kind(enough, None)
            ),
            Some("no".to_string())
        );
        assert_eq!(
            answer_kind(mc, Some(AnswerKind::Number)),
            Some(AnswerKind::Number),
            "a given kind wins"
        );
        // A function to complete is answered by a program, not by its docstring's numbers;
        // nothing is read from it by a constrained call.
        let code = "def double(x: int) -> int:\n    \"\"\"double(2) == 4\"\"\"\n";
        assert_eq!(answer_kind(code, None), Some(AnswerKind::Code));
        assert_eq!(schema_for(code, None), None);
    }

    #[test]
    fn the_schema_follows_the_question() {
        let mc = schema_for("Which?\n(A) one\n(B) two", None).unwrap();
        assert_eq!(mc["properties"]["answer"]["enum"], json!(["A", "B"]));
        let n = schema_for("Tom has 3 apples.", None).unwrap();
        assert_eq!(n["properties"]["answer"]["type"], "number");
        assert!(schema_for("Write a poem.", None).is_none());
        assert!(schema_for("Write a poem.", Some(AnswerKind::Text)).is_none());
        assert!(schema_for("No options here", Some(AnswerKind::Choice)).is_none());
    }

    #[tokio::test]
    async fn a_constrained_call_reads_the_answer() {
        let mock = Arc::new(MockBackend::scripted([r#"{"answer": 42}"#]));
        let ctx = Ctx::new(mock.clone(), Budget::default());
        let req = StrategyRequest::user("6 * 7?");
        let schema = schema_for("6 * 7?", None).unwrap();
        let a = read_answer(&ctx, &req, "I multiplied them.", &schema)
            .await
            .unwrap();
        assert_eq!(a.as_deref(), Some("42"));
        let sent = &mock.requests()[0];
        assert!(matches!(
            sent.format,
            Some(ResponseFormat::JsonSchema { .. })
        ));
        assert_eq!(sent.messages.len(), 3);
        assert_eq!(sent.messages[1].content, "I multiplied them.");
        assert_eq!(sent.sampling.temperature, Some(0.0));
        // A backend without structured output is not asked.
        let plain = Arc::new(
            MockBackend::scripted(["x"]).with_capabilities(crate::types::Capabilities::default()),
        );
        let ctx = Ctx::new(plain.clone(), Budget::default());
        assert_eq!(read_answer(&ctx, &req, "hm", &schema).await.unwrap(), None);
        assert_eq!(plain.calls(), 0);
    }
}
