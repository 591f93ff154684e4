//! OpenAI's chat-completions and text-completions JSON shapes (only the fields this
//! backend reads or writes), plus the fields llama-server adds (`timings`).

use std::collections::BTreeMap;

use optillm_core::Message;
use optillm_http::answer::{WireContent, WireLogprob, WireSampling, WireTopLogprob};
use serde::{Deserialize, Serialize};

/// Body of `POST /chat/completions` (with `messages`) or `POST /completions` (with
/// `prompt`, the text to continue).
#[derive(Debug, Serialize)]
pub(crate) struct ChatBody<'a> {
    pub model: &'a str,
    #[serde(skip_serializing_if = "Option::is_none")]
    pub messages: Option<&'a [Message]>,
    #[serde(skip_serializing_if = "Option::is_none")]
    pub prompt: Option<&'a str>,
    pub stream: bool,
    #[serde(skip_serializing_if = "Option::is_none")]
    pub stream_options: Option<StreamOptions>,
    #[serde(skip_serializing_if = "Option::is_none")]
    pub n: Option<u32>,
    /// `top_k`, `min_p` and `repeat_penalty` are not in OpenAI's spec: they are the extra
    /// fields llama-server and vLLM accept.
    #[serde(flatten)]
    pub sampling: WireSampling<'a>,
    #[serde(skip_serializing_if = "Option::is_none")]
    pub max_tokens: Option<u32>,
    #[serde(skip_serializing_if = "Option::is_none")]
    pub logprobs: Option<LogprobsAsk>,
    #[serde(skip_serializing_if = "Option::is_none")]
    pub top_logprobs: Option<u32>,
    /// vLLM's name for `repeat_penalty` (llama-server reads the other one).
    #[serde(skip_serializing_if = "Option::is_none")]
    pub repetition_penalty: Option<f32>,
    /// Structured output: `{"type":"json_object"}` or `{"type":"json_schema",...}`.
    #[serde(skip_serializing_if = "Option::is_none")]
    pub response_format: Option<serde_json::Value>,
    /// llama-server's GBNF grammar (only sent when the configuration says it is taken).
    #[serde(skip_serializing_if = "Option::is_none")]
    pub grammar: Option<&'a str>,
    /// vLLM's prefill: continue the final assistant message (sent as `true` with
    /// `add_generation_prompt: false`, only when the configuration asks for it).
    #[serde(skip_serializing_if = "Option::is_none")]
    pub continue_final_message: Option<bool>,
    #[serde(skip_serializing_if = "Option::is_none")]
    pub add_generation_prompt: Option<bool>,
}

/// How each endpoint asks for logprobs: chat completions `true` (with `top_logprobs`
/// beside), text completions the number of alternatives.
#[derive(Debug, Serialize)]
#[serde(untagged)]
pub(crate) enum LogprobsAsk {
    Chat(bool),
    Text(u32),
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
    pub usage: Option<WireUsage>,
    pub timings: Option<WireTimings>,
    pub error: Option<serde_json::Value>,
}

#[derive(Debug, Default, Deserialize)]
pub(crate) struct ChunkChoice {
    #[serde(default)]
    pub index: u32,
    pub delta: Option<WireContent>,
    /// A text completion's piece.
    pub text: Option<String>,
    pub finish_reason: Option<String>,
    pub logprobs: Option<WireLogprobs>,
}

/// A whole `chat.completion` (`stream: false`).
#[derive(Debug, Default, Deserialize)]
pub(crate) struct Response {
    #[serde(default)]
    pub choices: Vec<ResponseChoice>,
    pub usage: Option<WireUsage>,
    pub timings: Option<WireTimings>,
}

#[derive(Debug, Default, Deserialize)]
pub(crate) struct ResponseChoice {
    #[serde(default)]
    pub index: u32,
    pub message: Option<WireContent>,
    /// A text completion's text.
    pub text: Option<String>,
    pub finish_reason: Option<String>,
    pub logprobs: Option<WireLogprobs>,
}

/// Logprobs in either layout: chat completions' `content` list, or text completions'
/// parallel lists (`tokens`, `token_logprobs`, `top_logprobs` as token -> logprob).
#[derive(Debug, Default, Deserialize)]
pub(crate) struct WireLogprobs {
    pub content: Option<Vec<WireLogprob>>,
    pub tokens: Option<Vec<String>>,
    pub token_logprobs: Option<Vec<Option<f64>>>,
    pub top_logprobs: Option<Vec<Option<BTreeMap<String, f64>>>>,
}

impl WireLogprobs {
    /// The tokens, whatever the layout; `None` when the parallel lists do not line up
    /// (a token without its logprob), which cannot be read as one token each.
    pub fn into_tokens(self) -> Option<Vec<WireLogprob>> {
        if self.content.is_some() {
            return self.content;
        }
        let tokens = self.tokens?;
        let logprobs = self.token_logprobs.unwrap_or_default();
        let mut tops = self.top_logprobs.unwrap_or_default().into_iter();
        if logprobs.len() != tokens.len() {
            return None;
        }
        tokens
            .into_iter()
            .zip(logprobs)
            .map(|(token, logprob)| {
                let mut top: Vec<WireTopLogprob> = tops
                    .next()
                    .flatten()
                    .unwrap_or_default()
                    .into_iter()
                    .map(|(token, logprob)| WireTopLogprob { token, logprob })
                    .collect();
                top.sort_by(|a, b| b.logprob.total_cmp(&a.logprob));
                Some(WireLogprob {
                    token,
                    logprob: logprob?,
                    top_logprobs: Some(top),
                })
            })
            .collect()
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
    pub prompt_ms: Option<f64>,
    pub predicted_ms: Option<f64>,
}

/// `GET /models`.
#[derive(Debug, Deserialize)]
pub(crate) struct Models {
    #[serde(default)]
    pub data: Vec<OpenAiModel>,
}

/// A model the server offers (`GET /models`).
#[derive(Debug, Clone, PartialEq, Eq, Deserialize)]
#[non_exhaustive]
pub struct OpenAiModel {
    pub id: String,
    pub owned_by: Option<String>,
    pub created: Option<u64>,
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
