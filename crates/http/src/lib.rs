//! HTTP plumbing shared by the remote backends (Ollama, OpenAI-compatible): opening a
//! request with connect / first-byte / total timeouts and safe retries, and turning
//! failures into [`BackendError`]s that keep the status and the server's message.

use std::time::Duration;

use bytes::Bytes;
use optillm_core::BackendError;
use tracing::warn;

/// How requests are retried and timed.
#[derive(Debug, Clone, Copy)]
pub struct Policy {
    pub connect_timeout: Duration,
    pub first_byte_timeout: Duration,
    pub max_retries: u32,
    pub retry_backoff: Duration,
}

/// A successful answer whose first body chunk has arrived (`None`: the body is empty).
pub struct Opened {
    pub response: reqwest::Response,
    pub first: Option<Bytes>,
}

struct Failed {
    error: BackendError,
    retryable: bool,
}

/// Sends the request built by `make` until it succeeds or fails for good. An attempt is
/// retried only when nothing of the answer was received: a refused connection or a 5xx
/// status. Each attempt gets `first_byte_timeout` to deliver its first body byte.
pub async fn open(
    policy: &Policy,
    model: &str,
    make: impl Fn() -> reqwest::RequestBuilder,
) -> Result<Opened, BackendError> {
    let mut attempt = 0u32;
    loop {
        let outcome =
            match tokio::time::timeout(policy.first_byte_timeout, try_open(policy, model, make()))
                .await
            {
                Ok(outcome) => outcome,
                Err(_) => Err(Failed {
                    error: BackendError::Timeout(policy.first_byte_timeout),
                    retryable: false,
                }),
            };
        match outcome {
            Ok(opened) => return Ok(opened),
            Err(f) if f.retryable && attempt < policy.max_retries => {
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

async fn try_open(
    policy: &Policy,
    model: &str,
    request: reqwest::RequestBuilder,
) -> Result<Opened, Failed> {
    let mut response = request.send().await.map_err(|e| Failed {
        retryable: e.is_connect() && !e.is_timeout(),
        error: send_error(&e, policy.connect_timeout),
    })?;
    let status = response.status();
    if !status.is_success() {
        let body = response.bytes().await.unwrap_or_default();
        return Err(Failed {
            retryable: status.is_server_error(),
            error: status_error(status.as_u16(), error_message(&body), model),
        });
    }
    let first = response.chunk().await.map_err(|e| Failed {
        error: body_error(&e),
        retryable: false,
    })?;
    Ok(Opened { response, first })
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

/// Reads the rest of an opened body.
pub async fn read_all(opened: Opened) -> Result<Vec<u8>, BackendError> {
    let Opened {
        mut response,
        first,
    } = opened;
    let mut body = first.map(|b| b.to_vec()).unwrap_or_default();
    while let Some(chunk) = response.chunk().await.map_err(|e| body_error(&e))? {
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
    fn backoff_doubles_and_is_capped() {
        let b = Duration::from_millis(100);
        assert_eq!(backoff(b, 0), Duration::from_millis(100));
        assert_eq!(backoff(b, 3), Duration::from_millis(800));
        assert_eq!(backoff(b, 40), Duration::from_secs(30));
    }
}

#[cfg(feature = "test-server")]
pub mod test_server;

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
