//! Configuration errors of the Ollama backend.

/// Errors building an [`OllamaBackend`](crate::OllamaBackend) from its configuration:
/// the shared [`optillm_http::ConfigError`].
pub type OllamaError = optillm_http::ConfigError;
