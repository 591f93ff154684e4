//! OpenAI's chat-completions JSON shapes (only the fields this backend reads or writes),
//! plus the fields llama-server adds (`timings`).

use optillm_core::{FinishReason, Message, TokenLogprob, TopLogprob};
use serde::{Deserialize, Serialize};

/// Body of `POST /chat/completions`.
#[derive(Debug, Serialize)]
pub(crate) struct ChatBody<'a> {
    pub model: &'a str,
    pub messages: &'a [Message],
    pub stream: bool,
    #[serde(skip_serializing_if = "Option::is_none")]
    pub stream_options: Option<StreamOptions>,
    #[serde(skip_serializing_if = "Option::is_none")]
    pub n: Option<u32>,
    #[serde(skip_serializing_if = "Option::is_none")]
    pub temperature: Option<f32>,
    #[serde(skip_serializing_if = "Option::is_none")]
    pub top_p: Option<f32>,
    #[serde(skip_serializing_if = "Option::is_none")]
    pub max_tokens: Option<u32>,
    #[serde(skip_serializing_if = "<[String]>::is_empty")]
    pub stop: &'a [String],
    #[serde(skip_serializing_if = "Option::is_none")]
    pub seed: Option<u32>,
    #[serde(skip_serializing_if = "Option::is_none")]
    pub logprobs: Option<bool>,
    #[serde(skip_serializing_if = "Option::is_none")]
    pub top_logprobs: Option<u32>,
    // Not in OpenAI's spec: the extra fields llama-server and vLLM accept.
    #[serde(skip_serializing_if = "Option::is_none")]
    pub top_k: Option<u32>,
    #[serde(skip_serializing_if = "Option::is_none")]
    pub min_p: Option<f32>,
    #[serde(skip_serializing_if = "Option::is_none")]
    pub repeat_penalty: Option<f32>,
    /// vLLM's name for `repeat_penalty` (llama-server reads the other one).
    #[serde(skip_serializing_if = "Option::is_none")]
    pub repetition_penalty: Option<f32>,
    /// Structured output: `{"type":"json_object"}` or `{"type":"json_schema",...}`.
    #[serde(skip_serializing_if = "Option::is_none")]
    pub response_format: Option<serde_json::Value>,
    /// llama-server's GBNF grammar (only sent when the configuration says it is taken).
    #[serde(skip_serializing_if = "Option::is_none")]
    pub grammar: Option<&'a str>,
}

#[derive(Debug, Serialize)]
pub(crate) struct StreamOptions {
    pub include_usage: bool,
}

/// A `chat.completion.chunk` (or an error event's body).
#[derive(Debug, Default, Deserialize)]
pub(crate) struct Chunk {
    #[serde(default)]
    pub choices: Vec<ChunkChoice>,
    #[serde(default)]
    pub usage: Option<WireUsage>,
    #[serde(default)]
    pub timings: Option<WireTimings>,
    #[serde(default)]
    pub error: Option<serde_json::Value>,
}

#[derive(Debug, Default, Deserialize)]
pub(crate) struct ChunkChoice {
    #[serde(default)]
    pub index: u32,
    #[serde(default)]
    pub delta: Option<Delta>,
    #[serde(default)]
    pub finish_reason: Option<String>,
    #[serde(default)]
    pub logprobs: Option<WireLogprobs>,
}

#[derive(Debug, Default, Deserialize)]
pub(crate) struct Delta {
    #[serde(default)]
    pub content: Option<String>,
}

/// A whole `chat.completion` (`stream: false`).
#[derive(Debug, Default, Deserialize)]
pub(crate) struct Response {
    #[serde(default)]
    pub choices: Vec<ResponseChoice>,
    #[serde(default)]
    pub usage: Option<WireUsage>,
    #[serde(default)]
    pub timings: Option<WireTimings>,
}

#[derive(Debug, Default, Deserialize)]
pub(crate) struct ResponseChoice {
    #[serde(default)]
    pub index: u32,
    #[serde(default)]
    pub message: Option<Delta>,
    #[serde(default)]
    pub finish_reason: Option<String>,
    #[serde(default)]
    pub logprobs: Option<WireLogprobs>,
}

#[derive(Debug, Default, Deserialize)]
pub(crate) struct WireLogprobs {
    #[serde(default)]
    pub content: Option<Vec<WireLogprob>>,
}

#[derive(Debug, Deserialize)]
pub(crate) struct WireLogprob {
    pub token: String,
    pub logprob: f64,
    #[serde(default)]
    pub top_logprobs: Option<Vec<WireTopLogprob>>,
}

#[derive(Debug, Deserialize)]
pub(crate) struct WireTopLogprob {
    pub token: String,
    pub logprob: f64,
}

impl From<WireLogprob> for TokenLogprob {
    fn from(w: WireLogprob) -> Self {
        TokenLogprob {
            token: w.token,
            logprob: w.logprob as f32,
            top: w
                .top_logprobs
                .unwrap_or_default()
                .into_iter()
                .map(|t| TopLogprob {
                    token: t.token,
                    logprob: t.logprob as f32,
                })
                .collect(),
        }
    }
}

#[derive(Debug, Default, Clone, Copy, Deserialize)]
pub(crate) struct WireUsage {
    #[serde(default)]
    pub prompt_tokens: u32,
    #[serde(default)]
    pub completion_tokens: u32,
}

/// llama-server's own timings (milliseconds).
#[derive(Debug, Default, Clone, Copy, Deserialize)]
pub(crate) struct WireTimings {
    #[serde(default)]
    pub prompt_ms: Option<f64>,
    #[serde(default)]
    pub predicted_ms: Option<f64>,
}

/// `GET /models`.
#[derive(Debug, Deserialize)]
pub(crate) struct Models {
    #[serde(default)]
    pub data: Vec<WireModel>,
}

#[derive(Debug, Deserialize)]
pub(crate) struct WireModel {
    pub id: String,
    #[serde(default)]
    pub owned_by: Option<String>,
    #[serde(default)]
    pub created: Option<u64>,
}

/// `finish_reason` as a finish reason. `stop` covers both the end-of-text token and a
/// matched stop sequence (the wire does not tell them apart); it maps to `EndOfText`, as
/// do `tool_calls` and `content_filter`.
pub(crate) fn finish_reason(reason: &str) -> FinishReason {
    match reason {
        "length" => FinishReason::Length,
        _ => FinishReason::EndOfText,
    }
}

/// The message of an `error` member: a string, or an object with `message`.
pub(crate) fn error_text(error: &serde_json::Value) -> String {
    error
        .as_str()
        .map(str::to_string)
        .or_else(|| {
            error
                .get("message")
                .and_then(|m| m.as_str())
                .map(str::to_string)
        })
        .unwrap_or_else(|| error.to_string())
}

/// Milliseconds as a duration (negative or non-finite values count as zero).
pub(crate) fn millis(ms: Option<f64>) -> std::time::Duration {
    ms.filter(|m| m.is_finite() && *m > 0.0)
        .and_then(|m| std::time::Duration::try_from_secs_f64(m / 1000.0).ok())
        .unwrap_or_default()
}
