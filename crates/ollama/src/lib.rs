//! Ollama HTTP backend for optillm-rs.
//!
//! [`OllamaBackend`] speaks Ollama's `/api/chat` endpoint with streaming NDJSON and
//! implements [`optillm_core::Backend`]:
//!
//! ```no_run
//! # async fn demo() -> Result<(), Box<dyn std::error::Error>> {
//! use optillm_core::{Backend, ChatRequest};
//! use optillm_ollama::{OllamaBackend, OllamaConfig};
//!
//! let config = OllamaConfig::new("http://127.0.0.1:11434", "smollm2:135m")
//!     .with_temperature(0.7)
//!     .with_num_predict(128);
//! let backend = OllamaBackend::new(config)?;
//! let answer = backend.complete(ChatRequest::user("Why is the sky blue?")).await?;
//! println!("{}", answer.text());
//! # Ok(()) }
//! ```
//!
//! Wire choices, documented once here:
//! - Sampling settings are sent inside `options`; a request's settings override the
//!   config's defaults field by field ([`optillm_core::Sampling::merged`]).
//! - Ollama ignores `n`: a request for `n > 1` samples becomes `n` concurrent requests
//!   (at most [`OllamaConfig::max_concurrency`](optillm_http::RemoteConfig::max_concurrency) in flight per backend), sample `i` with
//!   seed `seed + i`; without a seed a random base seed is drawn so the samples differ.
//!   Usage then counts the prompt once per request.
//! - `done_reason: "stop"` is reported both when the model ended its text and when one of
//!   the request's stop sequences matched; the wire cannot tell them apart, so it maps to
//!   [`optillm_core::FinishReason::EndOfText`]. `"length"` maps to `Length`.
//! - Errors come as [`optillm_core::BackendError`]: HTTP errors are the first (and only)
//!   event of the stream, after retries where retrying is safe (connection refused, 5xx
//!   before any byte of the answer was streamed; never once streaming began). A request
//!   whose connection closed before any byte of the answer (a reused keep-alive
//!   connection the server had just closed) is sent again once, on a fresh connection.
//! - A stream that sends nothing for [`OllamaConfig::idle_timeout`](optillm_http::RemoteConfig::idle_timeout) (60 s) fails with
//!   [`BackendError::Stalled`](optillm_core::BackendError::Stalled); a line longer than
//!   [`OllamaConfig::max_line_bytes`](optillm_http::RemoteConfig::max_line_bytes) (8 MiB) or a whole answer larger than
//!   [`OllamaConfig::max_body_bytes`](optillm_http::RemoteConfig::max_body_bytes) (64 MiB) with
//!   [`BackendError::TooLarge`](optillm_core::BackendError::TooLarge). Either way the
//!   connection is closed, which cancels the request upstream.

mod config;
mod error;
use optillm_http as http;
pub mod ndjson;
mod wire;

mod backend;

pub use backend::OllamaBackend;
pub use config::{DEFAULT_HOST, OllamaConfig, host_from_env_value};
pub use error::OllamaError;
pub use optillm_http::{RemoteConfig, UrlError};
pub use wire::OllamaModel;
