//! The error type every [`Backend`](crate::Backend) returns.

use std::time::Duration;

/// Errors of a backend request. Backend crates keep their own typed error enums
/// and convert into this one at the trait boundary, keeping the source.
#[derive(Debug, thiserror::Error)]
#[non_exhaustive]
pub enum BackendError {
    /// The request itself is malformed (bad ranges, no messages, ...).
    #[error("invalid request: {0}")]
    InvalidRequest(String),
    /// The request's [`ResponseFormat`](crate::ResponseFormat) is malformed, out of bounds,
    /// or (native backend) could not be completed.
    #[error("invalid response format: {0}")]
    InvalidFormat(#[from] crate::format::FormatError),
    /// The backend cannot honour a setting that the request asked for.
    #[error("{backend} does not support {feature}")]
    Unsupported { backend: String, feature: String },
    /// The prompt (plus room for one token) does not fit in the context.
    #[error("the prompt has {prompt_tokens} tokens but the context holds {context_length}")]
    ContextOverflow {
        prompt_tokens: u32,
        context_length: u32,
    },
    /// The named model does not exist on the backend.
    #[error("model not found: {0}")]
    ModelNotFound(String),
    /// The backend is at capacity; try again later.
    #[error("backend busy: {0}")]
    Busy(String),
    /// The server answered with an error status.
    #[error("server answered {status}: {message}")]
    Http { status: u16, message: String },
    /// The server could not be reached or the connection dropped.
    #[error("connection failed: {0}")]
    Connection(String),
    /// No answer in time.
    #[error("timed out after {0:?}")]
    Timeout(Duration),
    /// The server stopped sending in the middle of an answer: nothing arrived for this
    /// long (the read-idle timeout between chunks). The request was cancelled.
    #[error("the upstream sent nothing for {0:?}")]
    Stalled(Duration),
    /// The server's answer broke a size limit: `what` ("a line", "an answer") was longer
    /// than `limit` bytes. The request was cancelled.
    #[error("the upstream sent {what} longer than {limit} bytes")]
    TooLarge { what: String, limit: usize },
    /// The server answered something that is not the protocol (malformed or truncated JSON,
    /// an error line in the middle of a stream, ...).
    #[error("protocol error: {0}")]
    Protocol(String),
    /// The backend's worker is gone (it stopped or crashed).
    #[error("the backend has shut down")]
    Closed,
    /// Any other backend-specific failure, with its typed source.
    #[error(transparent)]
    Other(Box<dyn std::error::Error + Send + Sync + 'static>),
}

impl BackendError {
    pub fn unsupported(backend: impl Into<String>, feature: impl Into<String>) -> Self {
        BackendError::Unsupported {
            backend: backend.into(),
            feature: feature.into(),
        }
    }

    /// Whether retrying the same request may succeed.
    pub fn is_transient(&self) -> bool {
        match self {
            BackendError::Busy(_)
            | BackendError::Connection(_)
            | BackendError::Timeout(_)
            | BackendError::Stalled(_) => true,
            BackendError::Http { status, .. } => *status >= 500 || *status == 429,
            _ => false,
        }
    }
}
