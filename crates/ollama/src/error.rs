//! Configuration errors of the Ollama backend.

use optillm_core::BackendError;

/// Errors building an [`OllamaBackend`](crate::OllamaBackend) from its configuration.
#[derive(Debug, thiserror::Error)]
#[non_exhaustive]
pub enum OllamaError {
    /// The base URL does not parse or is not http(s).
    #[error(transparent)]
    Url(#[from] optillm_http::UrlError),
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

impl From<OllamaError> for BackendError {
    fn from(e: OllamaError) -> Self {
        BackendError::Other(Box::new(e))
    }
}
