//! Ollama's JSON shapes (only the fields this backend reads or writes).

use optillm_core::{FinishReason, Message, TokenLogprob, TopLogprob};
use serde::{Deserialize, Serialize};

/// Body of `POST /api/chat`.
#[derive(Debug, Serialize)]
pub(crate) struct ChatBody<'a> {
    pub model: &'a str,
    pub messages: &'a [Message],
    pub stream: bool,
    pub options: Options,
    #[serde(skip_serializing_if = "Option::is_none")]
    pub keep_alive: Option<&'a str>,
    #[serde(skip_serializing_if = "Option::is_none")]
    pub logprobs: Option<bool>,
    #[serde(skip_serializing_if = "Option::is_none")]
    pub top_logprobs: Option<u32>,
    /// Structured output: `"json"` or a JSON schema.
    #[serde(skip_serializing_if = "Option::is_none")]
    pub format: Option<&'a serde_json::Value>,
}

/// `options` of a request: every sampling setting goes here, never at the top level.
#[derive(Debug, Clone, Default, Serialize)]
pub(crate) struct Options {
    #[serde(skip_serializing_if = "Option::is_none")]
    pub temperature: Option<f32>,
    #[serde(skip_serializing_if = "Option::is_none")]
    pub top_p: Option<f32>,
    #[serde(skip_serializing_if = "Option::is_none")]
    pub top_k: Option<u32>,
    #[serde(skip_serializing_if = "Option::is_none")]
    pub min_p: Option<f32>,
    #[serde(skip_serializing_if = "Option::is_none")]
    pub repeat_penalty: Option<f32>,
    #[serde(skip_serializing_if = "Option::is_none")]
    pub seed: Option<u32>,
    #[serde(skip_serializing_if = "Option::is_none")]
    pub num_predict: Option<u32>,
    #[serde(skip_serializing_if = "Option::is_none")]
    pub num_ctx: Option<u32>,
    #[serde(skip_serializing_if = "Vec::is_empty")]
    pub stop: Vec<String>,
}

/// One NDJSON line of a `/api/chat` stream (or an error line). Every metric is optional:
/// Ollama omits zero values.
#[derive(Debug, Default, Deserialize)]
pub(crate) struct ChatChunk {
    #[serde(default)]
    pub message: Option<ChunkMessage>,
    #[serde(default)]
    pub done: bool,
    #[serde(default)]
    pub done_reason: Option<String>,
    #[serde(default)]
    pub prompt_eval_count: Option<u32>,
    #[serde(default)]
    pub prompt_eval_duration: Option<u64>,
    #[serde(default)]
    pub eval_count: Option<u32>,
    #[serde(default)]
    pub eval_duration: Option<u64>,
    #[serde(default)]
    pub logprobs: Option<Vec<WireLogprob>>,
    #[serde(default)]
    pub error: Option<String>,
}

#[derive(Debug, Default, Deserialize)]
pub(crate) struct ChunkMessage {
    #[serde(default)]
    pub content: Option<String>,
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

/// `done_reason` as a finish reason. `stop` covers both the end-of-text token and a
/// matched stop sequence (Ollama does not tell them apart); it maps to `EndOfText`.
pub(crate) fn finish_reason(done_reason: Option<&str>) -> FinishReason {
    match done_reason {
        Some("length") => FinishReason::Length,
        _ => FinishReason::EndOfText,
    }
}

/// `GET /api/tags`.
#[derive(Debug, Deserialize)]
pub(crate) struct Tags {
    #[serde(default)]
    pub models: Vec<TagModel>,
}

#[derive(Debug, Deserialize)]
pub(crate) struct TagModel {
    pub name: String,
    #[serde(default)]
    pub model: Option<String>,
    #[serde(default)]
    pub size: Option<u64>,
    #[serde(default)]
    pub digest: Option<String>,
    #[serde(default)]
    pub modified_at: Option<String>,
    #[serde(default)]
    pub details: Option<TagDetails>,
}

#[derive(Debug, Default, Deserialize)]
pub(crate) struct TagDetails {
    #[serde(default)]
    pub family: Option<String>,
    #[serde(default)]
    pub parameter_size: Option<String>,
    #[serde(default)]
    pub quantization_level: Option<String>,
}

/// `POST /api/show`: only `model_info` is read.
#[derive(Debug, Deserialize)]
pub(crate) struct Show {
    #[serde(default)]
    pub model_info: Option<serde_json::Map<String, serde_json::Value>>,
}

impl Show {
    /// The `<architecture>.context_length` entry of `model_info`.
    pub fn context_length(&self) -> Option<u32> {
        let info = self.model_info.as_ref()?;
        let arch_key = info
            .get("general.architecture")
            .and_then(|a| a.as_str())
            .map(|a| format!("{a}.context_length"));
        let value = arch_key.and_then(|k| info.get(&k)).or_else(|| {
            info.iter()
                .find(|(k, _)| k.ends_with(".context_length"))
                .map(|(_, v)| v)
        })?;
        value.as_u64().and_then(|v| u32::try_from(v).ok())
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn final_chunk_parses_with_every_metric_optional() {
        let full: ChatChunk = serde_json::from_str(
            r#"{"model":"m","created_at":"x","message":{"role":"assistant","content":""},"done":true,"done_reason":"length","total_duration":10706818083,"load_duration":6338219291,"prompt_eval_count":26,"prompt_eval_duration":130079000,"eval_count":259,"eval_duration":4232710000}"#,
        )
        .unwrap();
        assert!(full.done);
        assert_eq!(full.eval_count, Some(259));
        assert_eq!(full.prompt_eval_duration, Some(130_079_000));
        assert_eq!(
            finish_reason(full.done_reason.as_deref()),
            FinishReason::Length
        );
        let bare: ChatChunk = serde_json::from_str(r#"{"done":true}"#).unwrap();
        assert_eq!(bare.eval_count, None);
        assert_eq!(finish_reason(None), FinishReason::EndOfText);
    }

    #[test]
    fn show_context_length_prefers_the_architecture_key() {
        let s: Show = serde_json::from_str(
            r#"{"model_info":{"general.architecture":"llama","clip.context_length":77,"llama.context_length":8192}}"#,
        )
        .unwrap();
        assert_eq!(s.context_length(), Some(8192));
        let s: Show =
            serde_json::from_str(r#"{"model_info":{"qwen2.context_length":32768}}"#).unwrap();
        assert_eq!(s.context_length(), Some(32768));
        let s: Show = serde_json::from_str(r#"{"modelfile":""}"#).unwrap();
        assert_eq!(s.context_length(), None);
    }
}
