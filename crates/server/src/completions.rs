//! OpenAI's text completions, `POST /v1/completions`: the prompt is continued as it is,
//! without the chat template (a base model, or a prompt its caller has templated).
//! Only the `none` approach takes it; the others write chat prompts of their own.

use axum::body::Bytes;
use axum::extract::State;
use axum::extract::rejection::BytesRejection;
use axum::response::Response;
use optillm_core::{Message, TokenLogprob};
use serde::Deserialize;
use serde_json::{Map, Value, json};

use crate::error::{ApiError, OpenAiError};
use crate::openai::{Layout, Shared, log_ignored, respond};
use crate::run::FinalChoice;
use crate::{AppState, Incoming, parse_body};

/// Tokens generated when a request gives no `max_tokens`: OpenAI's documented default
/// for this endpoint (vLLM's too).
pub const DEFAULT_MAX_TOKENS: u32 = 16;

#[derive(Debug, Deserialize)]
struct CompletionBody {
    model: String,
    /// One string, or a list holding one (a batch of prompts is not served): read by
    /// [`prompt_text`], which says what is wrong with any other value.
    prompt: Value,
    /// Before `extra`, which gets only the fields nothing else took.
    #[serde(flatten)]
    shared: Shared,
    #[serde(default)]
    suffix: Option<String>,
    #[serde(default)]
    echo: Option<bool>,
    #[serde(default)]
    best_of: Option<u32>,
    /// The number of top alternatives per token (`0`: the chosen token's only).
    #[serde(default)]
    logprobs: Option<u32>,
    #[serde(flatten)]
    extra: Map<String, Value>,
}

impl CompletionBody {
    fn into_incoming(self) -> Result<Incoming, ApiError> {
        let unsupported = |what: &str| {
            Err(ApiError::bad_request(format!(
                "`{what}` is not supported by this server"
            )))
        };
        if self.suffix.as_ref().is_some_and(|s| !s.is_empty()) {
            return unsupported("suffix");
        }
        if self.echo == Some(true) {
            return unsupported("echo");
        }
        let n = self.shared.n.unwrap_or(1);
        if self.best_of.is_some_and(|b| b != n) {
            return Err(ApiError::bad_request(
                "`best_of` other than `n` is not supported: ask for the `bon-` approach's \
                 chat model instead",
            ));
        }
        let prompt = prompt_text(self.prompt)?;
        log_ignored(&self.extra);
        let max_tokens = Some(self.shared.max_tokens.unwrap_or(DEFAULT_MAX_TOKENS));
        let read = self.shared.read(max_tokens)?;
        Ok(Incoming {
            model: self.model,
            messages: vec![Message::user(prompt)],
            sampling: read.sampling,
            n,
            logprobs: self.logprobs,
            format: read.format,
            raw: true,
            approach: read.approach,
            params: read.params,
        })
    }
}

/// The text of a request's `prompt`: a string, or a list of one string. Token ids and
/// batches of prompts are refused, each with its own message.
fn prompt_text(prompt: Value) -> Result<String, ApiError> {
    let not_text = || ApiError::bad_request("`prompt` must be a string (or a list of one string)");
    let text = match prompt {
        Value::String(text) => text,
        Value::Array(list) => {
            if list.first().is_some_and(|v| v.is_number() || v.is_array()) {
                return Err(ApiError::bad_request(
                    "`prompt` as token ids is not supported: send the text",
                ));
            }
            if list.len() > 1 {
                return Err(ApiError::bad_request(format!(
                    "`prompt` must be one string ({} given): send one request per prompt",
                    list.len()
                )));
            }
            match list.into_iter().next() {
                Some(Value::String(text)) => text,
                _ => return Err(not_text()),
            }
        }
        _ => return Err(not_text()),
    };
    if text.is_empty() {
        return Err(ApiError::bad_request("`prompt` must not be empty"));
    }
    Ok(text)
}

/// `POST /v1/completions`
pub(crate) async fn complete(
    State(state): State<AppState>,
    body: Result<Bytes, BytesRejection>,
) -> Result<Response, OpenAiError> {
    let body: CompletionBody = parse_body(body)?;
    let (stream, include_usage) = body.shared.streaming();
    let incoming = body.into_incoming()?;
    respond(&state, incoming, stream, include_usage, Text::default()).await
}

/// Logprobs in this endpoint's own layout: parallel lists, one entry per token, each
/// token's offset counted in characters from the start of the completion.
fn logprobs_json(logprobs: &[TokenLogprob], first_offset: usize) -> Value {
    let mut offset = first_offset;
    let mut offsets = Vec::with_capacity(logprobs.len());
    for lp in logprobs {
        offsets.push(offset);
        offset += lp.token.chars().count();
    }
    json!({
        "tokens": logprobs.iter().map(|l| l.token.as_str()).collect::<Vec<_>>(),
        "token_logprobs": logprobs.iter().map(|l| l.logprob).collect::<Vec<_>>(),
        "top_logprobs": logprobs.iter().map(|l| {
            l.top.iter().map(|t| (t.token.clone(), json!(t.logprob))).collect::<Map<_, _>>()
        }).collect::<Vec<_>>(),
        "text_offset": offsets,
    })
}

/// Text completions: the text as it is, logprobs as parallel lists.
#[derive(Default)]
struct Text {
    /// Characters sent so far per choice (the next token's `text_offset`).
    sent: Vec<usize>,
}

impl Layout for Text {
    const ID_PREFIX: &'static str = "cmpl";
    const OBJECT: &'static str = "text_completion";
    const CHUNK_OBJECT: &'static str = "text_completion";

    fn choice(c: &FinalChoice) -> Value {
        json!({
            "index": c.index,
            "text": c.text,
            "logprobs": c.logprobs.as_ref().map(|l| logprobs_json(l, 0)),
            "finish_reason": c.finish.as_api_str(),
        })
    }

    fn delta(&mut self, index: u32, text: &str, logprob: Option<&TokenLogprob>) -> Value {
        let i = index as usize;
        if self.sent.len() <= i {
            self.sent.resize(i + 1, 0);
        }
        let offset = self.sent[i];
        self.sent[i] += text.chars().count();
        let logprobs = logprob.map(|l| logprobs_json(std::slice::from_ref(l), offset));
        json!({ "index": index, "text": text, "logprobs": logprobs, "finish_reason": null })
    }

    fn end(&mut self, index: u32, reason: &str) -> Vec<Value> {
        vec![json!({ "index": index, "text": "", "logprobs": null, "finish_reason": reason })]
    }
}
