//! Configuration of the Ollama backend.

use optillm_http::RemoteConfig;

/// Where Ollama listens when `OLLAMA_HOST` is not set.
pub const DEFAULT_HOST: &str = "http://127.0.0.1:11434";

const DEFAULT_PORT: &str = "11434";

/// Settings of an [`OllamaBackend`](crate::OllamaBackend), built with `with_*` methods.
///
/// The settings every remote backend shares (server, model, default sampling, timeouts,
/// limits, retries, concurrency) are in [`RemoteConfig`], which this type dereferences
/// to (`config.model`, `config.idle_timeout`); see it for their defaults. The NDJSON
/// line cap (`max_line_bytes`) bounds each streamed line; the body cap
/// (`max_body_bytes`) the whole answers of `/api/tags` and `/api/show`.
#[derive(Debug, Clone, PartialEq)]
#[non_exhaustive]
pub struct OllamaConfig {
    /// The shared settings (base URL like `http://127.0.0.1:11434`, model name as
    /// Ollama knows it like `smollm2:135m`, sampling sent in `options`).
    pub remote: RemoteConfig,
    /// `options.num_ctx`: the context window Ollama should load the model with.
    pub num_ctx: Option<u32>,
    /// `keep_alive`: how long Ollama keeps the model loaded after a request (`"5m"`, `"-1"`).
    pub keep_alive: Option<String>,
}

optillm_http::deref_remote_config!(OllamaConfig);

impl OllamaConfig {
    /// A configuration for `model` on the server at `base_url`, with default settings.
    pub fn new(base_url: impl Into<String>, model: impl Into<String>) -> Self {
        Self {
            remote: RemoteConfig::new(base_url, model),
            num_ctx: None,
            keep_alive: None,
        }
    }

    /// A configuration for `model` on the server named by `OLLAMA_HOST` (as Ollama's own
    /// client reads it: `host`, `host:port`, `scheme://host[:port]`), or
    /// [`DEFAULT_HOST`] when it is unset.
    pub fn from_env(model: impl Into<String>) -> Self {
        let host = std::env::var("OLLAMA_HOST").ok();
        Self::new(host_from_env_value(host.as_deref()), model)
    }

    optillm_http::remote_config_builders!();

    /// Most tokens to generate (`options.num_predict`); the same as `with_max_tokens`.
    pub fn with_num_predict(self, n: u32) -> Self {
        self.with_max_tokens(n)
    }
    pub fn with_num_ctx(mut self, n: u32) -> Self {
        self.num_ctx = Some(n);
        self
    }
    pub fn with_keep_alive(mut self, keep_alive: impl Into<String>) -> Self {
        self.keep_alive = Some(keep_alive.into());
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
