//! Configuration of the OpenAI-compatible backend.

use std::fmt;

use optillm_http::RemoteConfig;

/// The base URL when `OPENAI_BASE_URL` is not set.
pub const DEFAULT_BASE_URL: &str = "https://api.openai.com/v1";

/// The environment variable the API key is read from by default.
pub const DEFAULT_API_KEY_ENV: &str = "OPENAI_API_KEY";

/// Settings of an [`OpenAiBackend`](crate::OpenAiBackend), built with `with_*` methods.
///
/// The base URL includes the API version, as with OpenAI's own clients:
/// `https://api.openai.com/v1`, `http://127.0.0.1:8080/v1` (llama-server),
/// `http://127.0.0.1:8000/v1` (vLLM).
///
/// The settings every remote backend shares (server, model, default sampling, timeouts,
/// limits, retries, concurrency) are in [`RemoteConfig`], which this type dereferences
/// to (`config.model`, `config.idle_timeout`); see it for their defaults. The event cap
/// (`max_line_bytes`) bounds each server-sent event; the body cap (`max_body_bytes`)
/// the whole answers (`stream: false`, `/models`).
#[derive(Clone, PartialEq)]
#[non_exhaustive]
pub struct OpenAiConfig {
    /// The shared settings.
    pub remote: RemoteConfig,
    /// The API key, sent as a bearer token. When `None`, it is read from the
    /// environment variable `api_key_env` when the backend is built (no key: no header).
    pub api_key: Option<String>,
    pub api_key_env: String,
    /// Ask for a usage chunk at the end of streams (`stream_options.include_usage`).
    pub stream_usage: bool,
    /// The server takes a GBNF grammar in a `grammar` field (llama.cpp's llama-server
    /// does; OpenAI and vLLM do not). Off by default: a grammar is then refused with
    /// [`BackendError::Unsupported`](optillm_core::BackendError::Unsupported) rather than
    /// sent to a server that would ignore it.
    pub grammar: bool,
    /// The server continues a final assistant message when told with vLLM's
    /// `continue_final_message` (and `add_generation_prompt: false`): sent with such a
    /// conversation only. Off by default: OpenAI refuses fields it does not know, and
    /// llama-server (Jinja templates) and Ollama continue such a message unasked.
    /// Without it vLLM starts a new turn after the message (no prefill).
    pub continue_final_message: bool,
}

optillm_http::deref_remote_config!(OpenAiConfig);

impl fmt::Debug for OpenAiConfig {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.debug_struct("OpenAiConfig")
            .field("remote", &self.remote)
            .field("api_key", &self.api_key.as_ref().map(|_| "<redacted>"))
            .field("api_key_env", &self.api_key_env)
            .field("stream_usage", &self.stream_usage)
            .field("grammar", &self.grammar)
            .field("continue_final_message", &self.continue_final_message)
            .finish()
    }
}

impl OpenAiConfig {
    /// A configuration for `model` at `base_url` (with its `/v1`), default settings.
    pub fn new(base_url: impl Into<String>, model: impl Into<String>) -> Self {
        Self {
            remote: RemoteConfig::new(base_url, model),
            api_key: None,
            api_key_env: DEFAULT_API_KEY_ENV.to_string(),
            stream_usage: true,
            grammar: false,
            continue_final_message: false,
        }
    }

    /// A configuration for `model` at `OPENAI_BASE_URL` (or [`DEFAULT_BASE_URL`]).
    pub fn from_env(model: impl Into<String>) -> Self {
        let base = std::env::var("OPENAI_BASE_URL")
            .ok()
            .map(|s| s.trim().to_string())
            .filter(|s| !s.is_empty())
            .unwrap_or_else(|| DEFAULT_BASE_URL.to_string());
        Self::new(base, model)
    }

    // `top_k` and `min_p` are sent as extra body fields, the repeat penalty as
    // `repeat_penalty` (llama-server) and `repetition_penalty` (vLLM): not in OpenAI's spec.
    optillm_http::remote_config_builders!();

    /// Whether the server takes llama.cpp's `grammar` field (see [`OpenAiConfig::grammar`]).
    pub fn with_grammar(mut self, on: bool) -> Self {
        self.grammar = on;
        self
    }
    /// Whether to send vLLM's `continue_final_message` with a conversation that ends
    /// with an assistant message (see [`OpenAiConfig::continue_final_message`]).
    pub fn with_continue_final_message(mut self, on: bool) -> Self {
        self.continue_final_message = on;
        self
    }
    pub fn with_api_key(mut self, key: impl Into<String>) -> Self {
        self.api_key = Some(key.into());
        self
    }
    /// Reads the API key from this environment variable instead of `OPENAI_API_KEY`.
    pub fn with_api_key_env(mut self, var: impl Into<String>) -> Self {
        self.api_key_env = var.into();
        self
    }
    pub fn with_stream_usage(mut self, on: bool) -> Self {
        self.stream_usage = on;
        self
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn debug_output_hides_the_api_key() {
        let c = OpenAiConfig::new("http://h/v1", "m").with_api_key("sk-secret");
        let shown = format!("{c:?}");
        assert!(!shown.contains("sk-secret"));
        assert!(shown.contains("<redacted>"));
    }
}
