//! The settings every remote backend shares ([`RemoteConfig`]), their `with_*` builders
//! ([`remote_config_builders!`](crate::remote_config_builders)) and the errors of a bad
//! configuration ([`ConfigError`]).

use std::time::Duration;

use optillm_core::{BackendError, Sampling};

use crate::{DEFAULT_IDLE_TIMEOUT, DEFAULT_MAX_BODY_BYTES, DEFAULT_MAX_LINE_BYTES, Policy};

/// The settings of a remote backend that do not depend on its wire format. Each
/// backend's configuration holds one (as its `remote` field, readable through `Deref`)
/// and adds its own settings.
///
/// `sampling` holds defaults: every setting a request sets wins over them.
///
/// Timeouts and limits, with their defaults:
/// - `connect_timeout` 10 s; `first_byte_timeout` 300 s per attempt (model loading and
///   prompt evaluation); `total_timeout` none;
/// - `idle_timeout` 60 s: once the answer has begun, the longest wait for its next chunk
///   ([`BackendError::Stalled`] past it);
/// - `max_line_bytes` 8 MiB: the longest streamed line (NDJSON) or event (SSE);
/// - `max_body_bytes` 64 MiB: the largest whole (non-streamed) answer
///   (both [`BackendError::TooLarge`] past them).
///
/// On any of these errors the connection is closed, which cancels the request upstream.
/// Idle keep-alive connections are kept 3 s (below the usual 5 s server keep-alive), and
/// a request whose reused connection closed before any byte of the answer is sent again
/// once on a fresh connection.
#[derive(Debug, Clone, PartialEq)]
#[non_exhaustive]
pub struct RemoteConfig {
    /// Base URL of the server (`http://127.0.0.1:11434`, `https://api.openai.com/v1`).
    pub base_url: String,
    /// The model's name on the server.
    pub model: String,
    /// Default sampling settings.
    pub sampling: Sampling,
    /// Time to establish a TCP (and TLS) connection.
    pub connect_timeout: Duration,
    /// Time from sending a request to the first byte of the answer's body (covers model
    /// loading and prompt evaluation), per attempt.
    pub first_byte_timeout: Duration,
    /// Time for a whole answer (one request), `None` for no limit.
    pub total_timeout: Option<Duration>,
    /// Longest wait for the next chunk once the answer has begun (default 60 s).
    pub idle_timeout: Duration,
    /// Longest streamed line or event, in bytes (default 8 MiB).
    pub max_line_bytes: usize,
    /// Largest whole (non-streamed) answer, in bytes (default 64 MiB).
    pub max_body_bytes: usize,
    /// Most requests in flight at once from this backend (samples of `n > 1` included).
    pub max_concurrency: usize,
    /// Retries after a refused connection or a 5xx answer (before anything was streamed).
    pub max_retries: u32,
    /// Wait before the first retry; doubled for each further one.
    pub retry_backoff: Duration,
}

impl RemoteConfig {
    /// `model` on the server at `base_url`, with the default settings.
    pub fn new(base_url: impl Into<String>, model: impl Into<String>) -> Self {
        Self {
            base_url: base_url.into(),
            model: model.into(),
            sampling: Sampling::default(),
            connect_timeout: Duration::from_secs(10),
            first_byte_timeout: Duration::from_secs(300),
            total_timeout: None,
            idle_timeout: DEFAULT_IDLE_TIMEOUT,
            max_line_bytes: DEFAULT_MAX_LINE_BYTES,
            max_body_bytes: DEFAULT_MAX_BODY_BYTES,
            max_concurrency: 4,
            max_retries: 2,
            retry_backoff: Duration::from_millis(250),
        }
    }

    /// Checks the values that must not be empty or zero.
    pub fn validate(&self) -> Result<(), ConfigError> {
        if self.model.trim().is_empty() {
            return Err(ConfigError::EmptyModel);
        }
        self.validate_limits()
    }

    /// Checks the limits that must not be zero (everything [`validate`](Self::validate)
    /// checks but the model name, which requests about the server itself do not need).
    pub fn validate_limits(&self) -> Result<(), ConfigError> {
        if self.max_concurrency == 0 {
            return Err(ConfigError::ZeroConcurrency);
        }
        if self.idle_timeout.is_zero() {
            return Err(ConfigError::ZeroLimit("idle_timeout"));
        }
        if self.max_line_bytes == 0 {
            return Err(ConfigError::ZeroLimit("max_line_bytes"));
        }
        if self.max_body_bytes == 0 {
            return Err(ConfigError::ZeroLimit("max_body_bytes"));
        }
        Ok(())
    }

    /// How requests are retried, timed and bounded.
    pub fn policy(&self) -> Policy {
        Policy {
            connect_timeout: self.connect_timeout,
            first_byte_timeout: self.first_byte_timeout,
            idle_timeout: self.idle_timeout,
            max_retries: self.max_retries,
            retry_backoff: self.retry_backoff,
            max_line_bytes: self.max_line_bytes,
            max_body_bytes: self.max_body_bytes,
        }
    }
}

/// Errors building a remote backend from its configuration (the `OllamaError` and
/// `OpenAiError` of the backends are this type).
#[derive(Debug, thiserror::Error)]
#[non_exhaustive]
pub enum ConfigError {
    /// The base URL does not parse or is not http(s).
    #[error(transparent)]
    Url(#[from] crate::UrlError),
    /// The API key cannot be sent in an HTTP header (control characters, non-ASCII).
    #[error("the API key (from {source_name}) is not a valid HTTP header value")]
    InvalidApiKey { source_name: String },
    /// `max_concurrency` is zero.
    #[error("max_concurrency must be at least 1")]
    ZeroConcurrency,
    /// A limit that must be above zero is zero (`idle_timeout`, `max_line_bytes`,
    /// `max_body_bytes`).
    #[error("{0} must be above zero")]
    ZeroLimit(&'static str),
    /// The model name is empty.
    #[error("the model name is empty")]
    EmptyModel,
    /// The HTTP client could not be built (TLS setup).
    #[error("could not build the HTTP client: {0}")]
    Client(#[source] reqwest::Error),
}

impl From<ConfigError> for BackendError {
    fn from(e: ConfigError) -> Self {
        BackendError::Other(Box::new(e))
    }
}

/// The `with_*` builders of the shared settings, for the `impl` block of a backend's
/// configuration type that holds a [`RemoteConfig`] in a field named `remote`:
///
/// ```ignore
/// impl MyConfig {
///     optillm_http::remote_config_builders!();
/// }
/// ```
#[macro_export]
macro_rules! remote_config_builders {
    () => {
        /// Default sampling settings (every setting a request sets wins over them).
        pub fn with_sampling(mut self, sampling: $crate::Sampling) -> Self {
            self.remote.sampling = sampling;
            self
        }
        pub fn with_temperature(mut self, t: f32) -> Self {
            self.remote.sampling.temperature = Some(t);
            self
        }
        pub fn with_top_p(mut self, p: f32) -> Self {
            self.remote.sampling.top_p = Some(p);
            self
        }
        pub fn with_top_k(mut self, k: u32) -> Self {
            self.remote.sampling.top_k = Some(k);
            self
        }
        pub fn with_min_p(mut self, p: f32) -> Self {
            self.remote.sampling.min_p = Some(p);
            self
        }
        pub fn with_repeat_penalty(mut self, p: f32) -> Self {
            self.remote.sampling.repeat_penalty = Some(p);
            self
        }
        pub fn with_seed(mut self, seed: u32) -> Self {
            self.remote.sampling.seed = Some(seed);
            self
        }
        /// Most tokens to generate.
        pub fn with_max_tokens(mut self, n: u32) -> Self {
            self.remote.sampling.max_tokens = Some(n);
            self
        }
        pub fn with_stop(mut self, stop: impl Into<String>) -> Self {
            self.remote.sampling.stop.push(stop.into());
            self
        }
        pub fn with_connect_timeout(mut self, d: ::std::time::Duration) -> Self {
            self.remote.connect_timeout = d;
            self
        }
        pub fn with_first_byte_timeout(mut self, d: ::std::time::Duration) -> Self {
            self.remote.first_byte_timeout = d;
            self
        }
        pub fn with_total_timeout(mut self, d: ::std::time::Duration) -> Self {
            self.remote.total_timeout = Some(d);
            self
        }
        /// Longest wait for the next chunk once the answer has begun (default 60 s, above
        /// zero); past it the request fails with `BackendError::Stalled` and is cancelled.
        pub fn with_idle_timeout(mut self, d: ::std::time::Duration) -> Self {
            self.remote.idle_timeout = d;
            self
        }
        /// Longest streamed line or event, in bytes (default 8 MiB); past it the request
        /// fails with `BackendError::TooLarge` and is cancelled.
        pub fn with_max_line_bytes(mut self, n: usize) -> Self {
            self.remote.max_line_bytes = n;
            self
        }
        /// Largest whole (non-streamed) answer, in bytes (default 64 MiB); past it,
        /// `BackendError::TooLarge`.
        pub fn with_max_body_bytes(mut self, n: usize) -> Self {
            self.remote.max_body_bytes = n;
            self
        }
        /// Most requests in flight at once from this backend (above zero).
        pub fn with_max_concurrency(mut self, n: usize) -> Self {
            self.remote.max_concurrency = n;
            self
        }
        pub fn with_max_retries(mut self, n: u32) -> Self {
            self.remote.max_retries = n;
            self
        }
        pub fn with_retry_backoff(mut self, d: ::std::time::Duration) -> Self {
            self.remote.retry_backoff = d;
            self
        }
    };
}

/// `Deref` and `DerefMut` to the [`RemoteConfig`] in the field `remote`, so that the
/// shared settings read as fields of the backend's configuration (`config.model`).
#[macro_export]
macro_rules! deref_remote_config {
    ($config:ty) => {
        impl ::std::ops::Deref for $config {
            type Target = $crate::RemoteConfig;
            fn deref(&self) -> &$crate::RemoteConfig {
                &self.remote
            }
        }
        impl ::std::ops::DerefMut for $config {
            fn deref_mut(&mut self) -> &mut $crate::RemoteConfig {
                &mut self.remote
            }
        }
    };
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn zero_and_empty_settings_are_refused() {
        let c = || RemoteConfig::new("http://h", "m");
        assert!(c().validate().is_ok());
        let mut bad = c();
        bad.model = " ".into();
        assert!(matches!(bad.validate(), Err(ConfigError::EmptyModel)));
        assert!(
            bad.validate_limits().is_ok(),
            "the server needs no model name"
        );
        let mut bad = c();
        bad.max_concurrency = 0;
        assert!(matches!(bad.validate(), Err(ConfigError::ZeroConcurrency)));
        for (field, set) in [
            (
                "idle_timeout",
                (|c: &mut RemoteConfig| c.idle_timeout = Duration::ZERO) as fn(&mut RemoteConfig),
            ),
            ("max_line_bytes", |c| c.max_line_bytes = 0),
            ("max_body_bytes", |c| c.max_body_bytes = 0),
        ] {
            let mut bad = c();
            set(&mut bad);
            assert!(
                matches!(bad.validate(), Err(ConfigError::ZeroLimit(f)) if f == field),
                "{field}"
            );
        }
        let e: BackendError = ConfigError::ZeroConcurrency.into();
        assert!(matches!(e, BackendError::Other(_)));
    }
}
