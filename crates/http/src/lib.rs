//! HTTP plumbing shared by the remote backends (Ollama, OpenAI-compatible): opening a
//! request with connect / first-byte / total timeouts and safe retries, reading its body
//! with a read-idle timeout between chunks and size limits, and turning failures into
//! [`BackendError`]s that keep the status and the server's message.
//!
//! Limits, each with its default (the backends' config builders change them):
//! - [`DEFAULT_IDLE_TIMEOUT`]: once the answer has begun, the longest wait for its next
//!   chunk; past it the request fails with [`BackendError::Stalled`] and is cancelled.
//! - [`DEFAULT_MAX_LINE_BYTES`]: the longest NDJSON line or server-sent event the
//!   streaming parsers buffer; past it, [`BackendError::TooLarge`].
//! - [`DEFAULT_MAX_BODY_BYTES`]: the largest whole (non-streamed) body [`read_all`]
//!   reads; past it, [`BackendError::TooLarge`].
//! - [`POOL_IDLE_TIMEOUT`]: how long an idle keep-alive connection stays in the pool,
//!   below the 5 s keep-alive of llama-server (cpp-httplib), uvicorn (vLLM) and Node.
//!   A request that fails on a connection that closed before any byte of the answer
//!   (the server closed an idle keep-alive connection just as it was reused) is sent
//!   again, once, on a fresh connection.
//!
//! Besides the transport, what the remote backends share lives here too, so that each
//! backend keeps only its wire format: the shared settings and their builders
//! ([`RemoteConfig`], [`remote_config_builders!`], [`ConfigError`]), the server end
//! ([`Remote`]), the framing of streamed bodies ([`framing`]: NDJSON lines, server-sent
//! events), and the handling of answers ([`answer`]: deltas, the `n` fan-out, the
//! producer task, the merged completion, logprob wire types).

pub mod answer;
mod config;
pub mod framing;
mod remote;

pub use config::{ConfigError, RemoteConfig};
pub use optillm_core::Sampling;
pub use remote::Remote;

use std::time::Duration;

use bytes::Bytes;
use optillm_core::BackendError;
use reqwest::header::HeaderMap;
use tracing::{debug, warn};

/// Default longest wait for the next chunk once an answer has begun (60 s).
pub const DEFAULT_IDLE_TIMEOUT: Duration = Duration::from_secs(60);

/// Default longest streamed line (NDJSON) or event (SSE) buffered: 8 MiB.
pub const DEFAULT_MAX_LINE_BYTES: usize = 8 * 1024 * 1024;

/// Default largest whole (non-streamed) answer read: 64 MiB.
pub const DEFAULT_MAX_BODY_BYTES: usize = 64 * 1024 * 1024;

/// How long an idle keep-alive connection stays in the pool (3 s): below the 5 s after
/// which llama-server, uvicorn (vLLM) and Node close idle connections, so that the pool
/// rarely hands out a connection the server is closing.
pub const POOL_IDLE_TIMEOUT: Duration = Duration::from_secs(3);

/// The most of an error answer's body kept for its message.
const MAX_ERROR_BODY_BYTES: usize = 64 * 1024;

/// How requests are retried, timed and bounded.
#[derive(Debug, Clone, Copy)]
pub struct Policy {
    pub connect_timeout: Duration,
    pub first_byte_timeout: Duration,
    /// Longest wait for the next body chunk after the first.
    pub idle_timeout: Duration,
    pub max_retries: u32,
    pub retry_backoff: Duration,
    /// Longest streamed line or event, in bytes (checked by the backends' parsers
    /// through [`check_pending`]).
    pub max_line_bytes: usize,
    /// Largest whole body [`read_all`] reads, in bytes.
    pub max_body_bytes: usize,
}

/// The HTTP clients of a backend: one that keeps idle connections for
/// [`POOL_IDLE_TIMEOUT`], and one that never reuses a connection, for the single retry
/// of a request whose reused connection closed before answering.
#[derive(Debug, Clone)]
pub struct Clients {
    pooled: reqwest::Client,
    fresh: reqwest::Client,
}

impl Clients {
    /// Both clients, with `connect_timeout` and `headers` sent on every request.
    pub fn new(connect_timeout: Duration, headers: HeaderMap) -> Result<Self, reqwest::Error> {
        let builder = || {
            reqwest::Client::builder()
                .connect_timeout(connect_timeout)
                .default_headers(headers.clone())
        };
        Ok(Self {
            pooled: builder().pool_idle_timeout(POOL_IDLE_TIMEOUT).build()?,
            fresh: builder().pool_max_idle_per_host(0).build()?,
        })
    }

    /// The pooled client (requests that need no retry logic).
    pub fn pooled(&self) -> &reqwest::Client {
        &self.pooled
    }
}

/// A successful answer whose first body chunk has arrived. Its body is read with
/// [`Opened::chunk`] (read-idle timeout between chunks) or [`read_all`] (size limit);
/// dropping it closes the connection, which cancels the request upstream.
#[derive(Debug)]
pub struct Opened {
    response: reqwest::Response,
    /// The first chunk, not handed out yet.
    first: Option<Bytes>,
    ended: bool,
    idle_timeout: Duration,
    max_body_bytes: usize,
}

impl Opened {
    /// The next chunk of the body, `None` at its end. Waits at most the idle timeout:
    /// past it, [`BackendError::Stalled`] (drop the `Opened` to cancel the request).
    pub async fn chunk(&mut self) -> Result<Option<Bytes>, BackendError> {
        if let Some(first) = self.first.take() {
            return Ok(Some(first));
        }
        if self.ended {
            return Ok(None);
        }
        match tokio::time::timeout(self.idle_timeout, self.response.chunk()).await {
            Ok(Ok(Some(bytes))) => Ok(Some(bytes)),
            Ok(Ok(None)) => {
                self.ended = true;
                Ok(None)
            }
            Ok(Err(e)) => Err(body_error(&e)),
            Err(_) => Err(BackendError::Stalled(self.idle_timeout)),
        }
    }

    /// The status of the answer (a success).
    pub fn status(&self) -> u16 {
        self.response.status().as_u16()
    }
}

/// Whether and how a failed attempt may be retried.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
enum Retry {
    /// Never (the answer began, or the failure will not change).
    No,
    /// After a backoff, within `max_retries`: a refused connection or a 5xx status.
    Backoff,
    /// At once and only once, on a fresh connection: the connection closed (or was
    /// reset) after the request was written and before any byte of the answer, which is
    /// what a reused keep-alive connection that the server had just closed looks like.
    Fresh,
}

struct Failed {
    error: BackendError,
    retry: Retry,
}

/// Sends the request built by `make` (with the client it is given) until it succeeds or
/// fails for good. An attempt is retried only when nothing of the answer was received:
/// after a backoff for a refused connection or a 5xx status (at most `max_retries`
/// times), and at once on a fresh connection, once, when the connection closed before
/// any byte of the answer (the keep-alive race). Each attempt gets `first_byte_timeout`
/// to deliver its first body byte.
pub async fn open(
    policy: &Policy,
    clients: &Clients,
    model: &str,
    make: impl Fn(&reqwest::Client) -> reqwest::RequestBuilder,
) -> Result<Opened, BackendError> {
    let mut attempt = 0u32;
    let mut fresh = false;
    loop {
        let client = if fresh {
            &clients.fresh
        } else {
            &clients.pooled
        };
        let outcome = match tokio::time::timeout(
            policy.first_byte_timeout,
            try_open(policy, model, make(client)),
        )
        .await
        {
            Ok(outcome) => outcome,
            Err(_) => Err(Failed {
                error: BackendError::Timeout(policy.first_byte_timeout),
                retry: Retry::No,
            }),
        };
        match outcome {
            Ok(opened) => return Ok(opened),
            Err(f) if f.retry == Retry::Fresh && !fresh => {
                debug!(error = %f.error, "the connection closed before any answer \
                      (a keep-alive connection the server had closed?); retrying once on a fresh connection");
                fresh = true;
            }
            Err(f) if f.retry == Retry::Backoff && attempt < policy.max_retries => {
                let wait = backoff(policy.retry_backoff, attempt);
                warn!(error = %f.error, attempt, ?wait, "request failed before any answer; retrying");
                tokio::time::sleep(wait).await;
                attempt += 1;
            }
            Err(f) => return Err(f.error),
        }
    }
}

fn backoff(base: Duration, attempt: u32) -> Duration {
    base.saturating_mul(1u32 << attempt.min(16))
        .min(Duration::from_secs(30))
}

/// How a request that got no answer may be retried.
fn send_retry(e: &reqwest::Error) -> Retry {
    if e.is_timeout() {
        Retry::No
    } else if e.is_connect() {
        Retry::Backoff
    } else if e.is_request() {
        // Connected, request (partly) written, then the connection closed or was reset
        // before the status line: hyper's "connection closed before message completed".
        Retry::Fresh
    } else {
        Retry::No
    }
}

async fn try_open(
    policy: &Policy,
    model: &str,
    request: reqwest::RequestBuilder,
) -> Result<Opened, Failed> {
    let mut response = request.send().await.map_err(|e| Failed {
        retry: send_retry(&e),
        error: send_error(&e, policy.connect_timeout),
    })?;
    let status = response.status();
    if !status.is_success() {
        let body = error_body(&mut response, policy.idle_timeout).await;
        return Err(Failed {
            retry: if status.is_server_error() {
                Retry::Backoff
            } else {
                Retry::No
            },
            error: context_overflow(&body)
                .unwrap_or_else(|| status_error(status.as_u16(), error_message(&body), model)),
        });
    }
    let first = response.chunk().await.map_err(|e| Failed {
        error: body_error(&e),
        retry: Retry::No,
    })?;
    Ok(Opened {
        response,
        ended: first.is_none(),
        first,
        idle_timeout: policy.idle_timeout,
        max_body_bytes: policy.max_body_bytes,
    })
}

/// The start of an error answer's body (at most [`MAX_ERROR_BODY_BYTES`]), for its
/// message; whatever arrived when the body ends, breaks off or stalls.
async fn error_body(response: &mut reqwest::Response, idle: Duration) -> Vec<u8> {
    let mut body = Vec::new();
    while body.len() < MAX_ERROR_BODY_BYTES {
        match tokio::time::timeout(idle, response.chunk()).await {
            Ok(Ok(Some(chunk))) => body.extend_from_slice(&chunk),
            _ => break,
        }
    }
    body.truncate(MAX_ERROR_BODY_BYTES);
    body
}

/// Fails with [`BackendError::TooLarge`] when `pending` bytes of a streamed `what` ("a
/// line", "an event") are still waiting for their end and exceed `limit`.
pub fn check_pending(pending: usize, limit: usize, what: &str) -> Result<(), BackendError> {
    if pending > limit {
        Err(BackendError::TooLarge {
            what: what.to_string(),
            limit,
        })
    } else {
        Ok(())
    }
}

/// Why a remote backend's base URL was refused.
#[derive(Debug, thiserror::Error)]
#[non_exhaustive]
pub enum UrlError {
    /// The base URL does not parse.
    #[error("invalid base URL {url:?}: {source}")]
    Invalid {
        url: String,
        #[source]
        source: url::ParseError,
    },
    /// The base URL is not http or https.
    #[error("unsupported scheme {scheme:?} in base URL {url:?} (use http or https)")]
    UnsupportedScheme { url: String, scheme: String },
}

/// A server's base URL, checked (http or https) and ending in `/`, so that joining an
/// endpoint (`api/chat`, `chat/completions`) keeps its path (`http://host/v1/`).
pub fn base_url(raw: &str) -> Result<url::Url, UrlError> {
    let mut base = url::Url::parse(raw).map_err(|source| UrlError::Invalid {
        url: raw.to_string(),
        source,
    })?;
    if !matches!(base.scheme(), "http" | "https") {
        return Err(UrlError::UnsupportedScheme {
            url: raw.to_string(),
            scheme: base.scheme().to_string(),
        });
    }
    if !base.path().ends_with('/') {
        let path = format!("{}/", base.path());
        base.set_path(&path);
    }
    Ok(base)
}

/// The seed of each of `n` samples sent as separate requests: `seed + i` when the request
/// has a seed; without one, a single sample keeps none and several get distinct seeds
/// from a random start, so that they differ.
pub fn sample_seeds(seed: Option<u32>, n: u32) -> Vec<Option<u32>> {
    let base = seed.or_else(|| (n > 1).then(random_seed));
    (0..n).map(|i| base.map(|s| s.wrapping_add(i))).collect()
}

fn random_seed() -> u32 {
    use std::hash::{BuildHasher, Hasher};
    let mut h = std::collections::hash_map::RandomState::new().build_hasher();
    h.write_u128(
        std::time::SystemTime::now()
            .duration_since(std::time::UNIX_EPOCH)
            .map(|d| d.as_nanos())
            .unwrap_or_default(),
    );
    (h.finish() >> 32) as u32
}

/// Reads the rest of an opened body: at most the policy's `max_body_bytes` (past it,
/// [`BackendError::TooLarge`]), each chunk within the idle timeout.
pub async fn read_all(mut opened: Opened) -> Result<Vec<u8>, BackendError> {
    let limit = opened.max_body_bytes;
    let too_large = || BackendError::TooLarge {
        what: "an answer".to_string(),
        limit,
    };
    let announced = opened.response.content_length().unwrap_or(0);
    if announced > u64::try_from(limit).unwrap_or(u64::MAX) {
        return Err(too_large());
    }
    let mut body = Vec::new();
    while let Some(chunk) = opened.chunk().await? {
        if body.len().saturating_add(chunk.len()) > limit {
            return Err(too_large());
        }
        body.extend_from_slice(&chunk);
    }
    Ok(body)
}

/// The error of a request that could not be sent or got no answer.
pub fn send_error(e: &reqwest::Error, connect_timeout: Duration) -> BackendError {
    if e.is_connect() && e.is_timeout() {
        BackendError::Timeout(connect_timeout)
    } else {
        BackendError::Connection(describe(e))
    }
}

/// The error of a body that broke off (the connection dropped).
pub fn body_error(e: &reqwest::Error) -> BackendError {
    BackendError::Connection(format!("the answer broke off: {}", describe(e)))
}

/// An error status as a typed error; a 404 that names a model is `ModelNotFound`.
pub fn status_error(status: u16, message: String, model: &str) -> BackendError {
    if status == 404 && message.to_lowercase().contains("model") {
        BackendError::ModelNotFound(message)
    } else if status == 404 && message.is_empty() {
        BackendError::ModelNotFound(model.to_string())
    } else {
        BackendError::Http { status, message }
    }
}

/// llama.cpp's server refusing a prompt longer than a slot's context
/// (`{"error":{"type":"exceed_context_size_error","n_prompt_tokens":N,"n_ctx":M,...}}`), as
/// the typed [`BackendError::ContextOverflow`] the native backend gives for the same.
pub fn context_overflow(body: &[u8]) -> Option<BackendError> {
    let v = serde_json::from_slice::<serde_json::Value>(body).ok()?;
    let err = v.get("error")?;
    if err.get("type")?.as_str()? != "exceed_context_size_error" {
        return None;
    }
    let count = |key: &str| {
        err.get(key)
            .and_then(|n| n.as_u64())
            .and_then(|n| u32::try_from(n).ok())
    };
    Some(BackendError::ContextOverflow {
        prompt_tokens: count("n_prompt_tokens")?,
        context_length: count("n_ctx")?,
    })
}

/// The message of an error body: `{"error":{"message":"msg","param":"p"}}` (with
/// ` (param: p)` appended when the server names a parameter), `{"error":"msg"}`, or the
/// body's text (at most 500 characters).
pub fn error_message(body: &[u8]) -> String {
    if let Ok(v) = serde_json::from_slice::<serde_json::Value>(body) {
        let err = v.get("error");
        if let Some(s) = err.and_then(|e| e.as_str()) {
            return s.to_string();
        }
        if let Some(s) = err.and_then(|e| e.get("message")).and_then(|m| m.as_str()) {
            let param = err.and_then(|e| e.get("param")).and_then(|p| p.as_str());
            return match param {
                Some(p) => format!("{s} (param: {p})"),
                None => s.to_string(),
            };
        }
    }
    String::from_utf8_lossy(body)
        .trim()
        .chars()
        .take(500)
        .collect()
}

/// An error with its chain of sources, for messages.
pub fn describe(e: &dyn std::error::Error) -> String {
    let mut s = e.to_string();
    let mut source = e.source();
    while let Some(cause) = source {
        s.push_str(": ");
        s.push_str(&cause.to_string());
        source = cause.source();
    }
    s
}

/// The start of a line, for error messages.
pub fn preview(line: &[u8]) -> String {
    String::from_utf8_lossy(line).chars().take(200).collect()
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn error_messages_of_both_shapes_and_plain_text() {
        assert_eq!(
            error_message(br#"{"error":"model 'x' not found"}"#),
            "model 'x' not found"
        );
        assert_eq!(error_message(br#"{"error":{"message":"bad"}}"#), "bad");
        assert_eq!(
            error_message(br#"{"error":{"message":"too many","param":"n","code":null}}"#),
            "too many (param: n)"
        );
        assert_eq!(error_message(b"  Bad Gateway \n"), "Bad Gateway");
        assert_eq!(error_message(&[0xff, b'a']), "\u{fffd}a");
    }

    #[test]
    fn a_llama_cpp_context_overflow_is_typed() {
        let body = br#"{"error":{"code":400,"message":"request (1302 tokens) exceeds the available context size (1024 tokens), try increasing it","type":"exceed_context_size_error","n_prompt_tokens":1302,"n_ctx":1024}}"#;
        assert!(matches!(
            context_overflow(body),
            Some(BackendError::ContextOverflow {
                prompt_tokens: 1302,
                context_length: 1024
            })
        ));
        // Other errors, and overflows without their counts, keep the status path.
        assert!(
            context_overflow(br#"{"error":{"message":"bad","type":"invalid_request_error"}}"#)
                .is_none()
        );
        assert!(context_overflow(br#"{"error":{"type":"exceed_context_size_error"}}"#).is_none());
        assert!(context_overflow(b"not json").is_none());
    }

    #[test]
    fn status_errors_are_typed() {
        assert!(matches!(
            status_error(404, "model 'x' not found".into(), "x"),
            BackendError::ModelNotFound(m) if m.contains("'x'")
        ));
        assert!(matches!(
            status_error(404, "404 page not found".into(), "x"),
            BackendError::Http { status: 404, .. }
        ));
        assert!(matches!(
            status_error(400, "bad".into(), "x"),
            BackendError::Http { status: 400, message } if message == "bad"
        ));
    }

    #[test]
    fn base_urls_are_checked_and_end_in_a_slash() {
        assert_eq!(
            base_url("http://127.0.0.1:11434")
                .map(|u| u.to_string())
                .ok(),
            Some("http://127.0.0.1:11434/".to_string())
        );
        let v1 = base_url("https://host/v1").map(|u| u.join("chat/completions"));
        assert_eq!(
            v1.ok().and_then(Result::ok).map(|u| u.to_string()),
            Some("https://host/v1/chat/completions".to_string())
        );
        assert!(matches!(
            base_url("not a url"),
            Err(UrlError::Invalid { .. })
        ));
        assert!(matches!(
            base_url("ftp://host/"),
            Err(UrlError::UnsupportedScheme { scheme, .. }) if scheme == "ftp"
        ));
    }

    #[test]
    fn sample_seeds_follow_the_request_seed_or_differ() {
        assert_eq!(sample_seeds(Some(7), 3), vec![Some(7), Some(8), Some(9)]);
        assert_eq!(
            sample_seeds(Some(u32::MAX), 2),
            vec![Some(u32::MAX), Some(0)]
        );
        assert_eq!(sample_seeds(None, 1), vec![None]);
        let random = sample_seeds(None, 3);
        assert!(random.iter().all(Option::is_some));
        assert_eq!(
            random[1].zip(random[0]).map(|(b, a)| b.wrapping_sub(a)),
            Some(1)
        );
    }

    #[test]
    fn pending_bytes_over_the_limit_are_too_large() {
        assert!(check_pending(10, 10, "a line").is_ok());
        assert!(matches!(
            check_pending(11, 10, "a line"),
            Err(BackendError::TooLarge { what, limit: 10 }) if what == "a line"
        ));
        let shown = check_pending(11, 10, "a line").map_err(|e| e.to_string());
        assert_eq!(
            shown,
            Err("the upstream sent a line longer than 10 bytes".to_string())
        );
    }

    #[test]
    fn backoff_doubles_and_is_capped() {
        let b = Duration::from_millis(100);
        assert_eq!(backoff(b, 0), Duration::from_millis(100));
        assert_eq!(backoff(b, 3), Duration::from_millis(800));
        assert_eq!(backoff(b, 40), Duration::from_secs(30));
    }
}

#[cfg(feature = "test-server")]
pub mod test_server;

#[cfg(feature = "test-server")]
pub mod test_suite;

/// Runs `work` once one of `permits` is free, within the `total` time limit (if any):
/// the concurrency limit and total timeout every remote request goes through.
pub async fn limited<T>(
    permits: &std::sync::Arc<tokio::sync::Semaphore>,
    total: Option<Duration>,
    work: impl std::future::Future<Output = Result<T, BackendError>>,
) -> Result<T, BackendError> {
    let _permit = std::sync::Arc::clone(permits)
        .acquire_owned()
        .await
        .map_err(|_| BackendError::Closed)?;
    match total {
        Some(limit) => tokio::time::timeout(limit, work)
            .await
            .unwrap_or(Err(BackendError::Timeout(limit))),
        None => work.await,
    }
}
