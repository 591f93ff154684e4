//! Configuration of the OpenAI-compatible backend.

use std::fmt;
use std::time::Duration;

use optillm_core::Sampling;

/// The base URL when `OPENAI_BASE_URL` is not set.
pub const DEFAULT_BASE_URL: &str = "https://api.openai.com/v1";

/// The environment variable the API key is read from by default.
pub const DEFAULT_API_KEY_ENV: &str = "OPENAI_API_KEY";

/// Settings of an [`OpenAiBackend`](crate::OpenAiBackend), built with `with_*` methods.
///
/// The base URL includes the API version, as with OpenAI's own clients:
/// `https://api.openai.com/v1`, `http://127.0.0.1:8080/v1` (llama-server),
/// `http://127.0.0.1:8000/v1` (vLLM). `sampling` holds defaults: every setting a request
/// sets wins over them.
///
/// Timeouts and limits, with their defaults:
/// - `connect_timeout` 10 s; `first_byte_timeout` 300 s per attempt; `total_timeout` none;
/// - `idle_timeout` 60 s: once the answer has begun, the longest wait for its next chunk
///   ([`BackendError::Stalled`](optillm_core::BackendError::Stalled) past it);
/// - `max_line_bytes` 8 MiB: the longest server-sent event (or line of one);
/// - `max_body_bytes` 64 MiB: the largest whole answer (`stream: false`, `/models`)
///   (both [`BackendError::TooLarge`](optillm_core::BackendError::TooLarge) past them).
///
/// On any of these errors the connection is closed, which cancels the request upstream.
/// Idle keep-alive connections are kept 3 s (below the 5 s keep-alive of llama-server
/// and vLLM), and a request whose reused connection closed before any byte of the answer
/// is sent again once on a fresh connection.
#[derive(Clone, PartialEq)]
#[non_exhaustive]
pub struct OpenAiConfig {
    pub base_url: String,
    pub model: String,
    /// The API key, sent as a bearer token. When `None`, it is read from the
    /// environment variable `api_key_env` when the backend is built (no key: no header).
    pub api_key: Option<String>,
    pub api_key_env: String,
    /// Default sampling settings.
    pub sampling: Sampling,
    /// Ask for a usage chunk at the end of streams (`stream_options.include_usage`).
    pub stream_usage: bool,
    /// Time to establish a TCP (and TLS) connection.
    pub connect_timeout: Duration,
    /// Time from sending a request to the first byte of the answer's body, per attempt.
    pub first_byte_timeout: Duration,
    /// Time for a whole answer (one request), `None` for no limit.
    pub total_timeout: Option<Duration>,
    /// Longest wait for the next chunk once the answer has begun (default 60 s).
    pub idle_timeout: Duration,
    /// Longest server-sent event, in bytes (default 8 MiB).
    pub max_line_bytes: usize,
    /// Largest whole (non-streamed) answer, in bytes (default 64 MiB).
    pub max_body_bytes: usize,
    /// Most requests in flight at once from this backend.
    pub max_concurrency: usize,
    /// Retries after a refused connection or a 5xx answer (before anything was streamed).
    pub max_retries: u32,
    /// Wait before the first retry; doubled for each further one.
    pub retry_backoff: Duration,
    /// The server takes a GBNF grammar in a `grammar` field (llama.cpp's llama-server
    /// does; OpenAI and vLLM do not). Off by default: a grammar is then refused with
    /// [`BackendError::Unsupported`](optillm_core::BackendError::Unsupported) rather than
    /// sent to a server that would ignore it.
    pub grammar: bool,
}

impl fmt::Debug for OpenAiConfig {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.debug_struct("OpenAiConfig")
            .field("base_url", &self.base_url)
            .field("model", &self.model)
            .field("api_key", &self.api_key.as_ref().map(|_| "<redacted>"))
            .field("api_key_env", &self.api_key_env)
            .field("sampling", &self.sampling)
            .field("stream_usage", &self.stream_usage)
            .field("connect_timeout", &self.connect_timeout)
            .field("first_byte_timeout", &self.first_byte_timeout)
            .field("total_timeout", &self.total_timeout)
            .field("idle_timeout", &self.idle_timeout)
            .field("max_line_bytes", &self.max_line_bytes)
            .field("max_body_bytes", &self.max_body_bytes)
            .field("max_concurrency", &self.max_concurrency)
            .field("max_retries", &self.max_retries)
            .field("retry_backoff", &self.retry_backoff)
            .field("grammar", &self.grammar)
            .finish()
    }
}

impl OpenAiConfig {
    /// A configuration for `model` at `base_url` (with its `/v1`), default settings.
    pub fn new(base_url: impl Into<String>, model: impl Into<String>) -> Self {
        Self {
            base_url: base_url.into(),
            model: model.into(),
            api_key: None,
            api_key_env: DEFAULT_API_KEY_ENV.to_string(),
            sampling: Sampling::default(),
            stream_usage: true,
            connect_timeout: Duration::from_secs(10),
            first_byte_timeout: Duration::from_secs(300),
            total_timeout: None,
            idle_timeout: optillm_http::DEFAULT_IDLE_TIMEOUT,
            max_line_bytes: optillm_http::DEFAULT_MAX_LINE_BYTES,
            max_body_bytes: optillm_http::DEFAULT_MAX_BODY_BYTES,
            max_concurrency: 4,
            max_retries: 2,
            retry_backoff: Duration::from_millis(250),
            grammar: false,
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

    /// Whether the server takes llama.cpp's `grammar` field (see [`OpenAiConfig::grammar`]).
    pub fn with_grammar(mut self, on: bool) -> Self {
        self.grammar = on;
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
    pub fn with_sampling(mut self, sampling: Sampling) -> Self {
        self.sampling = sampling;
        self
    }
    pub fn with_temperature(mut self, t: f32) -> Self {
        self.sampling.temperature = Some(t);
        self
    }
    pub fn with_top_p(mut self, p: f32) -> Self {
        self.sampling.top_p = Some(p);
        self
    }
    /// Sent as the extra body field `top_k` (llama-server, vLLM; not in OpenAI's spec).
    pub fn with_top_k(mut self, k: u32) -> Self {
        self.sampling.top_k = Some(k);
        self
    }
    /// Sent as the extra body field `min_p` (llama-server, vLLM; not in OpenAI's spec).
    pub fn with_min_p(mut self, p: f32) -> Self {
        self.sampling.min_p = Some(p);
        self
    }
    /// Sent as the extra body fields `repeat_penalty` (llama-server) and
    /// `repetition_penalty` (vLLM); not in OpenAI's spec.
    pub fn with_repeat_penalty(mut self, p: f32) -> Self {
        self.sampling.repeat_penalty = Some(p);
        self
    }
    pub fn with_seed(mut self, seed: u32) -> Self {
        self.sampling.seed = Some(seed);
        self
    }
    pub fn with_max_tokens(mut self, n: u32) -> Self {
        self.sampling.max_tokens = Some(n);
        self
    }
    pub fn with_stop(mut self, stop: impl Into<String>) -> Self {
        self.sampling.stop.push(stop.into());
        self
    }
    pub fn with_stream_usage(mut self, on: bool) -> Self {
        self.stream_usage = on;
        self
    }
    pub fn with_connect_timeout(mut self, d: Duration) -> Self {
        self.connect_timeout = d;
        self
    }
    pub fn with_first_byte_timeout(mut self, d: Duration) -> Self {
        self.first_byte_timeout = d;
        self
    }
    pub fn with_total_timeout(mut self, d: Duration) -> Self {
        self.total_timeout = Some(d);
        self
    }
    /// Longest wait for the next chunk once the answer has begun (default 60 s, above
    /// zero); past it the request fails with
    /// [`BackendError::Stalled`](optillm_core::BackendError::Stalled) and is cancelled.
    pub fn with_idle_timeout(mut self, d: Duration) -> Self {
        self.idle_timeout = d;
        self
    }
    /// Longest server-sent event, in bytes (default 8 MiB); past it the request fails
    /// with [`BackendError::TooLarge`](optillm_core::BackendError::TooLarge) and is
    /// cancelled.
    pub fn with_max_line_bytes(mut self, n: usize) -> Self {
        self.max_line_bytes = n;
        self
    }
    /// Largest whole (non-streamed) answer, in bytes (default 64 MiB); past it,
    /// [`BackendError::TooLarge`](optillm_core::BackendError::TooLarge).
    pub fn with_max_body_bytes(mut self, n: usize) -> Self {
        self.max_body_bytes = n;
        self
    }
    pub fn with_max_concurrency(mut self, n: usize) -> Self {
        self.max_concurrency = n;
        self
    }
    pub fn with_max_retries(mut self, n: u32) -> Self {
        self.max_retries = n;
        self
    }
    pub fn with_retry_backoff(mut self, d: Duration) -> Self {
        self.retry_backoff = d;
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
