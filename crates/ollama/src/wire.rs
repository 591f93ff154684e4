//! Ollama's JSON shapes (only the fields this backend reads or writes).

use optillm_core::Message;
use optillm_http::answer::{WireContent, WireLogprob, WireSampling};
use serde::{Deserialize, Serialize};

/// Body of `POST /api/chat` (with `messages`), or of `POST /api/generate` with `raw`
/// (with `prompt`: the text to continue, without the chat template).
#[derive(Debug, Serialize)]
pub(crate) struct ChatBody<'a> {
    pub model: &'a str,
    #[serde(skip_serializing_if = "Option::is_none")]
    pub messages: Option<&'a [Message]>,
    #[serde(skip_serializing_if = "Option::is_none")]
    pub prompt: Option<&'a str>,
    #[serde(skip_serializing_if = "std::ops::Not::not")]
    pub raw: bool,
    pub stream: bool,
    pub options: Options<'a>,
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
#[derive(Debug, Clone, Serialize)]
pub(crate) struct Options<'a> {
    #[serde(flatten)]
    pub sampling: WireSampling<'a>,
    #[serde(skip_serializing_if = "Option::is_none")]
    pub num_predict: Option<u32>,
    #[serde(skip_serializing_if = "Option::is_none")]
    pub num_ctx: Option<u32>,
}

/// One NDJSON line of a `/api/chat` or `/api/generate` stream (or an error line). Every
/// metric is optional: Ollama omits zero values.
#[derive(Debug, Default, Deserialize)]
pub(crate) struct ChatChunk {
    pub message: Option<WireContent>,
    /// `/api/generate`'s piece of text.
    pub response: Option<String>,
    #[serde(default)]
    pub done: bool,
    pub done_reason: Option<String>,
    pub prompt_eval_count: Option<u32>,
    pub prompt_eval_duration: Option<u64>,
    pub eval_count: Option<u32>,
    pub eval_duration: Option<u64>,
    pub logprobs: Option<Vec<WireLogprob>>,
    pub error: Option<String>,
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
    pub model: Option<String>,
    pub size: Option<u64>,
    pub digest: Option<String>,
    pub modified_at: Option<String>,
    pub details: Option<TagDetails>,
}

#[derive(Debug, Default, Deserialize)]
pub(crate) struct TagDetails {
    pub family: Option<String>,
    pub parameter_size: Option<String>,
    pub quantization_level: Option<String>,
}

/// A model installed on the Ollama server (`GET /api/tags`).
#[derive(Debug, Clone, PartialEq, Eq)]
#[non_exhaustive]
pub struct OllamaModel {
    pub name: String,
    pub model: Option<String>,
    pub size: Option<u64>,
    pub digest: Option<String>,
    pub modified_at: Option<String>,
    pub family: Option<String>,
    pub parameter_size: Option<String>,
    pub quantization_level: Option<String>,
}

impl From<TagModel> for OllamaModel {
    fn from(m: TagModel) -> Self {
        let details = m.details.unwrap_or_default();
        OllamaModel {
            name: m.name,
            model: m.model,
            size: m.size,
            digest: m.digest,
            modified_at: m.modified_at,
            family: details.family,
            parameter_size: details.parameter_size,
            quantization_level: details.quantization_level,
        }
    }
}

/// `POST /api/show`: only `model_info` is read.
#[derive(Debug, Deserialize)]
pub(crate) struct Show {
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
        assert_eq!(full.done_reason.as_deref(), Some("length"));
        let bare: ChatChunk = serde_json::from_str(r#"{"done":true}"#).unwrap();
        assert_eq!(bare.eval_count, None);
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
