//! `leap`: learning principles from mistakes (Zhang et al. 2024, LEAP).
//!
//! The few-shot examples of the query (question + answer) are extracted as JSON; the
//! model answers each with a deliberate mistake; each wrong answer yields low-level
//! principles; these are merged into at most `max_principles` high-level principles,
//! and the query is answered with them. Mistakes and low-level principles are made
//! concurrently. A query without examples is answered directly (one extraction call +
//! one answer), as in the reference.

use async_trait::async_trait;
use futures::future::join_all;
use serde::{Deserialize, Serialize};

use super::Approach;
use super::util::{one, prompt, tagged, temp};
use crate::extract::answers_equal;
use crate::spec::SpecError;
use crate::strategy::{Answer, Ctx, Strategy, StrategyError, StrategyRequest};

/// The parameters of `leap`; a field a spec leaves out takes its default here
/// (`optillm approaches` lists them).
#[derive(Debug, Clone, Serialize, Deserialize)]
#[serde(default, deny_unknown_fields)]
pub struct Params {
    /// Temperature of the deliberate mistakes.
    pub mistake_temperature: f32,
    /// Most high-level principles.
    pub max_principles: u32,
    /// Most examples used.
    pub max_examples: u32,
}

impl Default for Params {
    fn default() -> Self {
        Self {
            mistake_temperature: 0.7,
            max_principles: 8,
            max_examples: 4,
        }
    }
}

/// The `leap` strategy (the module documentation describes it): built from typed
/// [`Params`] with `new`, or by name through [`crate::strategies::build`].
#[derive(Debug)]
pub struct Leap {
    params: Params,
}

impl Leap {
    pub fn new(params: Params) -> Self {
        Self { params }
    }
}

#[derive(Debug, Clone, Deserialize)]
struct Example {
    question: String,
    #[serde(deserialize_with = "any_string")]
    answer: String,
}

fn any_string<'de, D: serde::Deserializer<'de>>(d: D) -> Result<String, D::Error> {
    let v = serde_json::Value::deserialize(d)?;
    Ok(match v {
        serde_json::Value::String(s) => s,
        other => other.to_string(),
    })
}

/// The examples of an extraction reply: the JSON array inside `<output>`, or the first
/// `[...]` of the text.
fn parse_examples(text: &str) -> Vec<Example> {
    let inner = tagged(text, "output").unwrap_or(text);
    let json = match (inner.find('['), inner.rfind(']')) {
        (Some(a), Some(b)) if a < b => inner.get(a..=b).unwrap_or(""),
        _ => return Vec::new(),
    };
    serde_json::from_str(json).unwrap_or_default()
}

impl Approach for Leap {
    const SLUG: &'static str = "leap";
    const DESCRIPTION: &'static str =
        "LEAP: learn principles from deliberate mistakes on the query's examples, then answer";
    type Params = Params;

    fn from_params(params: Params) -> Result<Self, SpecError> {
        Ok(Self::new(params))
    }
}

#[async_trait]
impl Strategy for Leap {
    fn slug(&self) -> &str {
        Self::SLUG
    }

    async fn run(&self, ctx: &Ctx, request: &StrategyRequest) -> Result<Answer, StrategyError> {
        let p = &self.params;
        let query = request.query()?.to_string();
        let system = request.system();
        let extraction = one(
            ctx,
            request,
            "extract examples",
            prompt(
                system,
                format!(
                    "Analyze the following query and determine if it contains few-shot examples. \
                     If it does, extract the examples and their answers as a JSON array of objects \
                     with \"question\" and \"answer\" fields; if not, give an empty array. Put only \
                     the JSON array inside <output></output> tags.\n\nExample output:\n<output>\n\
                     [{{\"question\": \"What is 2+2?\", \"answer\": \"4\"}}]\n</output>\n\nQuery: {query}"
                ),
            ),
            &temp(0.0),
        )
        .await?;
        let mut examples = parse_examples(&extraction);
        examples.truncate(p.max_examples as usize);

        let mut principles = String::new();
        if !examples.is_empty() {
            let mistakes = join_all(examples.iter().enumerate().map(|(i, ex)| {
                let ctx = ctx.clone();
                let msgs = prompt(
                    system,
                    format!(
                        "Answer the following question step by step. To induce a mistake, \
                         deliberately introduce an error in your reasoning or calculation.\n\
                         Question: {}\nGive your step-by-step reasoning, then your final answer \
                         inside <output></output> tags.",
                        ex.question
                    ),
                );
                let step = temp(p.mistake_temperature);
                async move {
                    let purpose = format!("mistake on example {}", i + 1);
                    one(&ctx, request, &purpose, msgs, &step).await
                }
            }))
            .await
            .into_iter()
            .collect::<Result<Vec<_>, _>>()?;
            let wrong: Vec<(&Example, String)> = examples
                .iter()
                .zip(mistakes)
                .filter(|(ex, reasoning)| {
                    let given = tagged(reasoning, "output").unwrap_or("");
                    !answers_equal(given, &ex.answer)
                })
                .collect();
            let low = join_all(wrong.iter().enumerate().map(|(i, (ex, reasoning))| {
                let ctx = ctx.clone();
                let given = tagged(reasoning, "output").unwrap_or("").to_string();
                let msgs = prompt(
                    system,
                    format!(
                        "Question: {}\nGenerated reasoning: {reasoning}\nGenerated answer: {given}\n\
                         Correct answer: {}\nAnalyse why the generated answer is wrong and how the \
                         reasoning differs from correct reasoning. Then state general principles \
                         that would avoid such errors in future answers, inside <output></output> tags.",
                        ex.question, ex.answer
                    ),
                );
                async move {
                    let purpose = format!("low-level principles {}", i + 1);
                    let text = one(&ctx, request, &purpose, msgs, &temp(0.3)).await?;
                    Ok::<String, StrategyError>(
                        tagged(&text, "output").unwrap_or(text.trim()).to_string(),
                    )
                }
            }))
            .await
            .into_iter()
            .collect::<Result<Vec<_>, _>>()?;
            if !low.is_empty() {
                let high = one(
                    ctx,
                    request,
                    "high-level principles",
                    prompt(
                        system,
                        format!(
                            "Low-level principles:\n{}\n\nCreate a numbered list of unique, \
                             insightful principles that capture this feedback without redundancy. \
                             At most {} principles. Put the list inside <output></output> tags.",
                            low.join("\n"),
                            p.max_principles
                        ),
                    ),
                    &temp(0.3),
                )
                .await?;
                principles = tagged(&high, "output").unwrap_or(high.trim()).to_string();
            }
        }
        let final_prompt = if principles.is_empty() {
            query.clone()
        } else {
            format!(
                "Please answer the following query. Keep in mind these principles:\n\n\
                 {principles}\n\nQuery: {query}"
            )
        };
        let chat = request.chat(request.with_query(&final_prompt), &Default::default());
        let answer = ctx.final_text("answer with principles", chat).await?;
        Ok(Answer::one(answer))
    }
}

#[cfg(test)]
mod tests {
    use std::sync::Arc;

    use super::*;
    use crate::mock::MockBackend;
    use crate::strategy::{Budget, run};

    #[tokio::test]
    async fn principles_come_from_wrong_examples_only() {
        let mock = Arc::new(MockBackend::new(|r, _| {
            let u = &r.messages.last().unwrap().content;
            Ok(if u.contains("few-shot examples") {
                r#"<output>[{"question": "1+1?", "answer": 2}, {"question": "2+2?", "answer": "4"}]</output>"#.into()
            } else if u.contains("induce a mistake") {
                // The first example is answered wrongly, the second correctly.
                if u.contains("1+1?") {
                    "1+1=3 <output>3</output>"
                } else {
                    "<output>4.0</output>"
                }
                .into()
            } else if u.contains("Analyse why") {
                assert!(u.contains("Correct answer: 2"));
                "<output>add carefully</output>".into()
            } else if u.contains("Low-level principles") {
                "<output>1. Check arithmetic.</output>".into()
            } else {
                format!("final: {u}")
            })
        }));
        let out = run(
            &Leap::new(Params::default()),
            mock.clone(),
            &StrategyRequest::user("Q: 1+1? A: 2. Q: 2+2? A: 4. Q: 3+3?"),
            Budget::default(),
        )
        .await
        .unwrap();
        assert!(out.answer.contains("1. Check arithmetic."));
        assert!(out.answer.contains("Query: Q: 1+1?"));
        // extraction + 2 mistakes + 1 low-level (one wrong) + high-level + answer.
        assert_eq!(mock.calls(), 6);
        let sent = mock.requests();
        assert!(
            sent.iter()
                .filter(|r| r.messages.last().unwrap().content.contains("induce"))
                .all(|r| r.sampling.temperature == Some(0.7))
        );
    }

    #[tokio::test]
    async fn no_examples_answers_directly() {
        let mock = Arc::new(MockBackend::scripted(["<output>[]</output>", "the answer"]));
        let out = run(
            &Leap::new(Params::default()),
            mock.clone(),
            &StrategyRequest::user("q"),
            Budget::default(),
        )
        .await
        .unwrap();
        assert_eq!(out.answer, "the answer");
        assert_eq!(mock.requests()[1].messages.last().unwrap().content, "q");
    }

    #[test]
    fn examples_parse_leniently() {
        assert_eq!(parse_examples("no json").len(), 0);
        assert_eq!(
            parse_examples("[{\"question\":\"a\",\"answer\":1}] trailing").len(),
            1
        );
        assert_eq!(parse_examples("<output>[{\"bad\":1}]</output>").len(), 0);
    }
}
