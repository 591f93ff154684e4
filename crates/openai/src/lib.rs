//! OpenAI-compatible HTTP backend for optillm-rs: OpenAI itself, vLLM, llama-server
//! (and xllamacpp, which embeds it), and other servers of `/v1/chat/completions`.
//!
//! ```no_run
//! # async fn demo() -> Result<(), Box<dyn std::error::Error>> {
//! use optillm_core::{Backend, ChatRequest};
//! use optillm_openai::{OpenAiBackend, OpenAiConfig};
//!
//! // OPENAI_BASE_URL (default https://api.openai.com/v1); the key from OPENAI_API_KEY.
//! let backend = OpenAiBackend::new(OpenAiConfig::from_env("gpt-4o-mini").with_temperature(0.7))?;
//! let answer = backend.complete(ChatRequest::user("Why is the sky blue?").with_n(3)).await?;
//! for text in answer.texts() {
//!     println!("{text}");
//! }
//! # Ok(()) }
//! ```
//!
//! Wire choices, documented once here:
//! - [`Backend::stream`](optillm_core::Backend::stream) sends `stream: true` with
//!   `stream_options.include_usage` and parses the server-sent events from a byte buffer;
//!   [`Backend::complete`](optillm_core::Backend::complete) sends `stream: false`.
//! - Settings outside OpenAI's spec are sent as the extra body fields llama-server and
//!   vLLM accept: `top_k`, `min_p`, and the repeat penalty under both its names,
//!   `repeat_penalty` (llama-server) and `repetition_penalty` (vLLM). They are sent only
//!   when set. OpenAI's hosted API rejects them with a 400, which comes back as
//!   [`BackendError::Http`] with its message.
//!   The token limit is sent as `max_tokens`, which every such server reads.
//! - `n > 1` is sent natively first. When the server rejects it (a 4xx whose message
//!   names the parameter `n` or `n_cmpl`, or speaks of "choice(s)", as llama-server's
//!   "Only one completion choice is allowed"; llama-server caps `n` at its slot count) or
//!   returns fewer choices than asked, the missing samples of that request are sent as
//!   concurrent single requests with seeds `seed + i` (a random base when the request
//!   has no seed). Only the rejected `n` is remembered: later requests asking for that
//!   many samples or more go straight to single requests, those asking for fewer are
//!   still sent with `n` ([`Capabilities::native_n`](optillm_core::Capabilities) turns
//!   false only when `n = 2` was rejected). A short answer is completed for that request
//!   only.
//! - `finish_reason: "stop"` covers both the end-of-text token and a matched stop
//!   sequence; the wire cannot tell them apart, so it maps to
//!   [`FinishReason::EndOfText`](optillm_core::FinishReason). `"length"` maps to `Length`.
//! - A 404 whose message mentions a model is [`BackendError::ModelNotFound`]; other error
//!   statuses are [`BackendError::Http`] with the server's message. Retries (exponential
//!   backoff) happen only after a refused connection or a 5xx answer, never once
//!   streaming began; and a request whose connection closed before any byte of the
//!   answer (a reused keep-alive connection the server had just closed: llama-server
//!   and vLLM close idle ones after 5 s) is sent again once, on a fresh connection.
//! - An answer that sends nothing for [`OpenAiConfig::idle_timeout`](optillm_http::RemoteConfig::idle_timeout) (60 s) fails with
//!   [`BackendError::Stalled`](optillm_core::BackendError::Stalled); an event longer
//!   than [`OpenAiConfig::max_line_bytes`](optillm_http::RemoteConfig::max_line_bytes) (8 MiB) or a whole answer larger than
//!   [`OpenAiConfig::max_body_bytes`](optillm_http::RemoteConfig::max_body_bytes) (64 MiB) with
//!   [`BackendError::TooLarge`](optillm_core::BackendError::TooLarge). Either way the
//!   connection is closed, which cancels the request upstream.
//!
//! [`BackendError::Http`]: optillm_core::BackendError::Http
//! [`BackendError::ModelNotFound`]: optillm_core::BackendError::ModelNotFound

mod backend;
mod config;
mod error;
use optillm_http as http;
pub mod sse;
mod wire;

pub use backend::OpenAiBackend;
pub use config::{DEFAULT_API_KEY_ENV, DEFAULT_BASE_URL, OpenAiConfig};
pub use error::OpenAiError;
pub use optillm_http::{RemoteConfig, UrlError};
pub use wire::OpenAiModel;
