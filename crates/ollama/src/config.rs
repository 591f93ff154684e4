//! Configuration of the Ollama backend.

use std::time::Duration;

use optillm_core::Sampling;

/// Where Ollama listens when `OLLAMA_HOST` is not set.
pub const DEFAULT_HOST: &str = "http://127.0.0.1:11434";

const DEFAULT_PORT: &str = "11434";

/// Settings of an [`OllamaBackend`](crate::OllamaBackend), built with `with_*` methods.
///
/// `sampling` holds defaults: every setting a request sets wins over them.
///
/// Timeouts and limits, with their defaults:
/// - `connect_timeout` 10 s; `first_byte_timeout` 300 s per attempt (model loading and
///   prompt evaluation); `total_timeout` none;
/// - `idle_timeout` 60 s: once the answer has begun, the longest wait for its next chunk
///   ([`BackendError::Stalled`](optillm_core::BackendError::Stalled) past it);
/// - `max_line_bytes` 8 MiB: the longest NDJSON line;
/// - `max_body_bytes` 64 MiB: the largest whole answer of `/api/tags` and `/api/show`
///   (both [`BackendError::TooLarge`](optillm_core::BackendError::TooLarge) past them).
///
/// On any of these errors the connection is closed, which cancels the request upstream.
/// Idle keep-alive connections are kept 3 s (below the usual 5 s server keep-alive), and
/// a request whose reused connection closed before any byte of the answer is sent again
/// once on a fresh connection.
#[derive(Debug, Clone, PartialEq)]
#[non_exhaustive]
pub struct OllamaConfig {
    /// Base URL of the server, e.g. `http://127.0.0.1:11434`.
    pub base_url: String,
    /// Model name as Ollama knows it (`smollm2:135m`).
    pub model: String,
    /// Default sampling settings (sent in `options`).
    pub sampling: Sampling,
    /// `options.num_ctx`: the context window Ollama should load the model with.
    pub num_ctx: Option<u32>,
    /// `keep_alive`: how long Ollama keeps the model loaded after a request (`"5m"`, `"-1"`).
    pub keep_alive: Option<String>,
    /// Time to establish a TCP (and TLS) connection.
    pub connect_timeout: Duration,
    /// Time from sending a request to the first byte of the answer's body (covers model
    /// loading and prompt evaluation), per attempt.
    pub first_byte_timeout: Duration,
    /// Time for a whole answer (one sample), `None` for no limit.
    pub total_timeout: Option<Duration>,
    /// Longest wait for the next chunk once the answer has begun (default 60 s).
    pub idle_timeout: Duration,
    /// Longest NDJSON line, in bytes (default 8 MiB).
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

impl OllamaConfig {
    /// A configuration for `model` on the server at `base_url`, with default settings.
    pub fn new(base_url: impl Into<String>, model: impl Into<String>) -> Self {
        Self {
            base_url: base_url.into(),
            model: model.into(),
            sampling: Sampling::default(),
            num_ctx: None,
            keep_alive: None,
            connect_timeout: Duration::from_secs(10),
            first_byte_timeout: Duration::from_secs(300),
            total_timeout: None,
            idle_timeout: optillm_http::DEFAULT_IDLE_TIMEOUT,
            max_line_bytes: optillm_http::DEFAULT_MAX_LINE_BYTES,
            max_body_bytes: optillm_http::DEFAULT_MAX_BODY_BYTES,
            max_concurrency: 4,
            max_retries: 2,
            retry_backoff: Duration::from_millis(250),
        }
    }

    /// A configuration for `model` on the server named by `OLLAMA_HOST` (as Ollama's own
    /// client reads it: `host`, `host:port`, `scheme://host[:port]`), or
    /// [`DEFAULT_HOST`] when it is unset.
    pub fn from_env(model: impl Into<String>) -> Self {
        let host = std::env::var("OLLAMA_HOST").ok();
        Self::new(host_from_env_value(host.as_deref()), model)
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
    pub fn with_top_k(mut self, k: u32) -> Self {
        self.sampling.top_k = Some(k);
        self
    }
    pub fn with_min_p(mut self, p: f32) -> Self {
        self.sampling.min_p = Some(p);
        self
    }
    pub fn with_repeat_penalty(mut self, p: f32) -> Self {
        self.sampling.repeat_penalty = Some(p);
        self
    }
    pub fn with_seed(mut self, seed: u32) -> Self {
        self.sampling.seed = Some(seed);
        self
    }
    /// Most tokens to generate (`options.num_predict`).
    pub fn with_num_predict(mut self, n: u32) -> Self {
        self.sampling.max_tokens = Some(n);
        self
    }
    pub fn with_stop(mut self, stop: impl Into<String>) -> Self {
        self.sampling.stop.push(stop.into());
        self
    }
    pub fn with_num_ctx(mut self, n: u32) -> Self {
        self.num_ctx = Some(n);
        self
    }
    pub fn with_keep_alive(mut self, keep_alive: impl Into<String>) -> Self {
        self.keep_alive = Some(keep_alive.into());
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
    /// Longest NDJSON line, in bytes (default 8 MiB); past it the request fails with
    /// [`BackendError::TooLarge`](optillm_core::BackendError::TooLarge) and is cancelled.
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

/// The base URL named by a value of `OLLAMA_HOST`, read the way Ollama reads it: the
/// scheme defaults to `http`; the port to 11434 (80 / 443 when the scheme is given
/// explicitly as http / https); an empty host means 127.0.0.1; a path is kept.
pub fn host_from_env_value(value: Option<&str>) -> String {
    let value = value.map(str::trim).unwrap_or("");
    if value.is_empty() {
        return DEFAULT_HOST.to_string();
    }
    let (scheme, rest, default_port) = match value.split_once("://") {
        None => ("http", value, DEFAULT_PORT),
        Some(("http", rest)) => ("http", rest, "80"),
        Some(("https", rest)) => ("https", rest, "443"),
        Some((scheme, rest)) => (scheme, rest, DEFAULT_PORT),
    };
    let (hostport, path) = match rest.split_once('/') {
        Some((hp, p)) => (hp, p.trim_end_matches('/')),
        None => (rest, ""),
    };
    let (host, port) = split_host_port(hostport).unwrap_or((hostport, default_port));
    let host = host.trim_start_matches('[').trim_end_matches(']');
    let host = if host.is_empty() { "127.0.0.1" } else { host };
    let host = if host.contains(':') {
        format!("[{host}]")
    } else {
        host.to_string()
    };
    let path = if path.is_empty() {
        String::new()
    } else {
        format!("/{path}")
    };
    format!("{scheme}://{host}:{port}{path}")
}

/// `host:port` or `[v6]:port` split like Go's `net.SplitHostPort`; `None` without a port.
fn split_host_port(s: &str) -> Option<(&str, &str)> {
    let (host, port) = if let Some(after) = s.strip_prefix('[') {
        let (h, rest) = after.split_once(']')?;
        (h, rest.strip_prefix(':')?)
    } else {
        let (h, p) = s.rsplit_once(':')?;
        if h.contains(':') {
            return None; // a bare IPv6 address
        }
        (h, p)
    };
    if port.is_empty() || !port.bytes().all(|b| b.is_ascii_digit()) {
        return None;
    }
    Some((host, port))
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn ollama_host_values_are_read_like_ollama() {
        let cases = [
            (None, "http://127.0.0.1:11434"),
            (Some(""), "http://127.0.0.1:11434"),
            (Some("  "), "http://127.0.0.1:11434"),
            (Some("example.com"), "http://example.com:11434"),
            (Some("example.com:1234"), "http://example.com:1234"),
            (Some(":1234"), "http://127.0.0.1:1234"),
            (Some("0.0.0.0"), "http://0.0.0.0:11434"),
            (Some("http://example.com"), "http://example.com:80"),
            (Some("https://example.com"), "https://example.com:443"),
            (
                Some("https://example.com:8443/ollama/"),
                "https://example.com:8443/ollama",
            ),
            (Some("[::1]:5000"), "http://[::1]:5000"),
            (Some("::1"), "http://[::1]:11434"),
            (Some("10.0.0.2:8080/path"), "http://10.0.0.2:8080/path"),
        ];
        for (input, want) in cases {
            assert_eq!(host_from_env_value(input), want, "OLLAMA_HOST={input:?}");
        }
    }

    #[test]
    fn builder_sets_sampling_defaults() {
        let c = OllamaConfig::new("http://h:1", "m")
            .with_temperature(0.5)
            .with_num_predict(7)
            .with_top_k(3)
            .with_stop("\n\n")
            .with_num_ctx(2048);
        assert_eq!(c.sampling.temperature, Some(0.5));
        assert_eq!(c.sampling.max_tokens, Some(7));
        assert_eq!(c.sampling.top_k, Some(3));
        assert_eq!(c.sampling.stop, vec!["\n\n".to_string()]);
        assert_eq!(c.num_ctx, Some(2048));
    }
}
