//! Configuration errors of the OpenAI-compatible backend.

/// Errors building an [`OpenAiBackend`](crate::OpenAiBackend) from its configuration:
/// the shared [`optillm_http::ConfigError`].
pub type OpenAiError = optillm_http::ConfigError;
