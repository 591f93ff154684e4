//! Errors: the server's own [`ServerError`], and [`ApiError`], one HTTP error rendered in
//! either dialect, with the single mapping from backend and strategy errors to statuses.

use axum::Json;
use axum::http::{HeaderValue, StatusCode, header};
use axum::response::{IntoResponse, Response};
use optillm_core::{BackendError, SpecError, StrategyError};
use serde_json::json;

/// Errors of starting or running the server.
#[derive(Debug, thiserror::Error)]
#[non_exhaustive]
pub enum ServerError {
    #[error("cannot listen on {addr}: {source}")]
    Bind {
        addr: std::net::SocketAddr,
        #[source]
        source: std::io::Error,
    },
    #[error("server I/O failed: {0}")]
    Io(#[from] std::io::Error),
    #[error("invalid server configuration: {0}")]
    Config(String),
    #[error("invalid default approach: {0}")]
    DefaultApproach(#[source] SpecError),
}

/// Which wire format an error is written in.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Dialect {
    /// `{"error":{"message","type","param","code"}}`
    OpenAi,
    /// `{"error":"message"}`
    Ollama,
}

/// One HTTP error: a status, a message and the OpenAI `type` / `code` fields.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct ApiError {
    pub status: StatusCode,
    pub message: String,
    /// OpenAI error `type` (`invalid_request_error`, `server_error`, ...).
    pub kind: &'static str,
    /// OpenAI error `code` (`model_not_found`, ...), when there is one.
    pub code: Option<&'static str>,
    /// `Retry-After` seconds for 429 / 503.
    pub retry_after: Option<u32>,
}

impl ApiError {
    pub fn new(status: StatusCode, message: impl Into<String>) -> Self {
        let kind = match status.as_u16() {
            401 => "authentication_error",
            403 => "permission_error",
            429 => "rate_limit_error",
            400..=499 => "invalid_request_error",
            _ => "server_error",
        };
        Self {
            status,
            message: message.into(),
            kind,
            code: None,
            retry_after: None,
        }
    }

    pub fn bad_request(message: impl Into<String>) -> Self {
        Self::new(StatusCode::BAD_REQUEST, message)
    }

    pub fn with_code(mut self, code: &'static str) -> Self {
        self.code = Some(code);
        self
    }

    pub fn model_not_found(name: &str) -> Self {
        Self::new(StatusCode::NOT_FOUND, format!("model '{name}' not found"))
            .with_code("model_not_found")
    }

    pub fn unauthorized() -> Self {
        Self::new(
            StatusCode::UNAUTHORIZED,
            "missing or invalid API key: send `Authorization: Bearer <key>`",
        )
        .with_code("invalid_api_key")
    }

    /// The server's own request queue is full.
    pub fn over_capacity(running: usize, queued: usize) -> Self {
        let mut e = Self::new(
            StatusCode::TOO_MANY_REQUESTS,
            format!(
                "server over capacity: {running} requests running and {queued} queued; retry later"
            ),
        )
        .with_code("over_capacity");
        e.retry_after = Some(1);
        e
    }

    /// The body in `dialect`'s error format.
    pub fn body(&self, dialect: Dialect) -> serde_json::Value {
        match dialect {
            Dialect::OpenAi => json!({
                "error": {
                    "message": self.message,
                    "type": self.kind,
                    "param": null,
                    "code": self.code,
                }
            }),
            Dialect::Ollama => json!({ "error": self.message }),
        }
    }

    /// The full HTTP response in `dialect`'s error format.
    pub fn into_response_for(self, dialect: Dialect) -> Response {
        let mut response = (self.status, Json(self.body(dialect))).into_response();
        if let Some(secs) = self.retry_after {
            response
                .headers_mut()
                .insert(header::RETRY_AFTER, HeaderValue::from(secs));
        }
        response
    }
}

impl From<BackendError> for ApiError {
    fn from(e: BackendError) -> Self {
        let message = e.to_string();
        let status = match &e {
            BackendError::ModelNotFound(name) => return ApiError::model_not_found(name),
            BackendError::InvalidRequest(_)
            | BackendError::InvalidFormat(_)
            | BackendError::Unsupported { .. } => StatusCode::BAD_REQUEST,
            BackendError::ContextOverflow { .. } => {
                return ApiError::bad_request(format!(
                    "{message}: shorten the conversation or use a model with a longer context"
                ))
                .with_code("context_length_exceeded");
            }
            BackendError::Busy(_) => {
                let mut err = ApiError::new(StatusCode::SERVICE_UNAVAILABLE, message);
                err.retry_after = Some(1);
                return err;
            }
            BackendError::Timeout(_) | BackendError::Stalled(_) => StatusCode::GATEWAY_TIMEOUT,
            BackendError::Http { .. }
            | BackendError::Connection(_)
            | BackendError::Protocol(_)
            | BackendError::TooLarge { .. } => StatusCode::BAD_GATEWAY,
            _ => StatusCode::INTERNAL_SERVER_ERROR,
        };
        ApiError::new(status, message)
    }
}

impl From<SpecError> for ApiError {
    fn from(e: SpecError) -> Self {
        ApiError::bad_request(e.to_string())
    }
}

impl From<StrategyError> for ApiError {
    fn from(e: StrategyError) -> Self {
        match e {
            StrategyError::Backend(b) => b.into(),
            StrategyError::Spec(s) => s.into(),
            StrategyError::NoQuery | StrategyError::Unanswerable { .. } => {
                ApiError::bad_request(e.to_string())
            }
            other => ApiError::new(StatusCode::INTERNAL_SERVER_ERROR, other.to_string()),
        }
    }
}

/// An [`ApiError`] answered in the OpenAI format.
#[derive(Debug)]
pub struct OpenAiError(pub ApiError);

/// An [`ApiError`] answered in the Ollama format.
#[derive(Debug)]
pub struct OllamaError(pub ApiError);

impl<E: Into<ApiError>> From<E> for OpenAiError {
    fn from(e: E) -> Self {
        OpenAiError(e.into())
    }
}

impl<E: Into<ApiError>> From<E> for OllamaError {
    fn from(e: E) -> Self {
        OllamaError(e.into())
    }
}

impl IntoResponse for OpenAiError {
    fn into_response(self) -> Response {
        self.0.into_response_for(Dialect::OpenAi)
    }
}

impl IntoResponse for OllamaError {
    fn into_response(self) -> Response {
        self.0.into_response_for(Dialect::Ollama)
    }
}

#[cfg(test)]
mod tests {
    use std::time::Duration;

    use super::*;

    #[test]
    fn one_mapping_for_every_error() {
        let cases: Vec<(StrategyError, u16)> = vec![
            (BackendError::ModelNotFound("m".into()).into(), 404),
            (BackendError::InvalidRequest("x".into()).into(), 400),
            (BackendError::unsupported("b", "f").into(), 400),
            (
                BackendError::ContextOverflow {
                    prompt_tokens: 9000,
                    context_length: 8192,
                }
                .into(),
                400,
            ),
            (BackendError::Busy("full".into()).into(), 503),
            (BackendError::Timeout(Duration::from_secs(3)).into(), 504),
            (BackendError::Stalled(Duration::from_secs(60)).into(), 504),
            (
                BackendError::Http {
                    status: 500,
                    message: "x".into(),
                }
                .into(),
                502,
            ),
            (BackendError::Connection("refused".into()).into(), 502),
            (BackendError::Protocol("bad json".into()).into(), 502),
            (
                BackendError::TooLarge {
                    what: "a line".into(),
                    limit: 8,
                }
                .into(),
                502,
            ),
            (BackendError::Closed.into(), 500),
            (SpecError::UnknownApproach("zz".into()).into(), 400),
            (
                SpecError::BadParameter {
                    approach: "bon".into(),
                    message: "m".into(),
                }
                .into(),
                400,
            ),
            (
                SpecError::BadSpec {
                    position: 0,
                    message: "m".into(),
                }
                .into(),
                400,
            ),
            (StrategyError::NoQuery, 400),
            (
                StrategyError::Unanswerable {
                    approach: "choice_likelihood".into(),
                    message: "no options".into(),
                },
                400,
            ),
            (StrategyError::BudgetExhausted, 500),
        ];
        for (err, status) in cases {
            let shown = err.to_string();
            let api = ApiError::from(err);
            assert_eq!(api.status.as_u16(), status, "{shown}");
        }
    }

    #[test]
    fn dialect_bodies() {
        let e = ApiError::model_not_found("nope");
        let o = e.body(Dialect::OpenAi);
        assert_eq!(o["error"]["message"], "model 'nope' not found");
        assert_eq!(o["error"]["type"], "invalid_request_error");
        assert_eq!(o["error"]["code"], "model_not_found");
        assert!(o["error"]["param"].is_null());
        assert_eq!(
            e.body(Dialect::Ollama),
            json!({"error": "model 'nope' not found"})
        );
        let overflow = ApiError::from(BackendError::ContextOverflow {
            prompt_tokens: 9000,
            context_length: 8192,
        });
        assert!(
            overflow.message.contains("9000 tokens"),
            "{}",
            overflow.message
        );
        assert!(overflow.message.contains("8192"), "{}", overflow.message);
        assert_eq!(overflow.code, Some("context_length_exceeded"));
    }
}
