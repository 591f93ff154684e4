//! optillm: inference-time strategies for small language models, run natively
//! (llama.cpp, GGUF files) or against a server (Ollama, OpenAI-compatible).
//!
//! One crate with backend features: `llama` (native, default), `ollama`, `openai`,
//! `server` (the OpenAI/Ollama-compatible server), `cuda` / `metal` / `vulkan` (GPU
//! builds of llama.cpp), and `cli` (the `optillm` binary; default). A library that only
//! talks to Ollama needs no llama.cpp build:
//!
//! ```toml
//! optillm = { version = "0.1", default-features = false, features = ["ollama"] }
//! ```
//!
//! ```no_run
//! # #[cfg(feature = "llama")]
//! # async fn demo() -> Result<(), Box<dyn std::error::Error>> {
//! let model = optillm::open("smollm2-135m", optillm::OpenOptions::new().pull(true)).await?;
//! let outcome = optillm::run(&model, "self_consistency(k=5)", "What is 12*3?").await?;
//! println!("{} ({} calls)", outcome.answer, outcome.usage.calls);
//! # Ok(()) }
//! ```
//!
//! - [`open`]: a native backend by manifest name, alias or GGUF path (pulled on request).
//! - [`run`]: an approach spec on a prompt; [`approach`] and [`strategy::run`] for full
//!   control (conversation, sampling, `n`, [`Budget`]).
//! - [`seed`]: the API of the seed document (`OllamaClient`, `ReReadAggregator`, ...).
//! - [`strategies`], [`spec`], [`extract`]: the catalogue, the spec parser, answer
//!   extraction.

mod names;
mod open;
pub mod seed;

use std::sync::Arc;

pub use names::{ModelSource, closest_to_ollama_name, resolve};
#[cfg(feature = "llama")]
pub use open::open;
pub use open::{MODEL_ENV, OpenError, OpenOptions, locate, model_from_env};

pub use optillm_core::{
    Answer, Backend, BackendError, Budget, Capabilities, ChatRequest, Choice, Completion,
    CompletionStream, FinishReason, Message, Outcome, Role, RunUsage, Sampling, Spec, SpecError,
    Strategy, StrategyError, StrategyRequest, StreamEvent, TokenLogprob, TopLogprob, TraceEntry,
    Usage, extract, spec, strategies, strategy,
};

/// Manifest, cache and downloads of models and data sets.
pub use optillm_models as models;

/// The native backend (llama.cpp).
#[cfg(feature = "llama")]
pub use optillm_llama as llama;
#[cfg(feature = "llama")]
pub use optillm_llama::{KvType, LlamaBackend, LlamaConfig, LlamaError};

/// The Ollama backend.
#[cfg(feature = "ollama")]
pub use optillm_ollama as ollama;
#[cfg(feature = "ollama")]
pub use optillm_ollama::{OllamaBackend, OllamaConfig};

/// The OpenAI-compatible backend.
#[cfg(feature = "openai")]
pub use optillm_openai as openai;
#[cfg(feature = "openai")]
pub use optillm_openai::{OpenAiBackend, OpenAiConfig};

/// The upstream pool: a [`Backend`] over several servers (least outstanding work,
/// failover before the first byte, back-off), built in code or from a TOML pool file.
#[cfg(feature = "pool")]
pub use optillm_pool as pool;
#[cfg(feature = "pool")]
pub use optillm_pool::{Pool, PoolOptions, Upstream};

/// The OpenAI- and Ollama-compatible HTTP server.
#[cfg(feature = "server")]
pub use optillm_server as server;

/// The approach of a spec string (`"moa"`, `"self_consistency(k=5)"`, `"re2&bon(n=3)"`),
/// to run with [`strategy::run`] (own sampling, conversation, `n`, [`Budget`]). Unknown
/// approaches and bad parameters are a [`SpecError`] that says what is accepted.
pub fn approach(spec: &str) -> Result<Box<dyn Strategy>, SpecError> {
    strategies::build_spec(&spec::parse(spec)?)
}

/// Runs the approach `spec` (`"self_consistency(k=5)"`, `"re2&bon(n=3)"`, `"none"`) on
/// one user prompt, with the backend's default sampling and no budget.
pub async fn run(
    backend: &Arc<dyn Backend>,
    spec: &str,
    prompt: &str,
) -> Result<Outcome, StrategyError> {
    let approach = approach(spec)?;
    strategy::run(
        approach.as_ref(),
        Arc::clone(backend),
        &StrategyRequest::user(prompt),
        Budget::default(),
    )
    .await
}

/// The README's code, run as doc-tests.
#[cfg(all(doctest, feature = "llama", feature = "ollama"))]
#[doc = include_str!("../../../README.md")]
pub struct ReadmeDoctests;

#[cfg(test)]
mod tests {
    #![allow(clippy::unwrap_used)]
    use super::*;
    use optillm_core::mock::MockBackend;

    #[tokio::test]
    async fn run_parses_builds_and_runs_a_spec() {
        let mock = Arc::new(MockBackend::new(|_, i| {
            Ok(format!("The answer is {}.", 36 + i))
        }));
        let backend: Arc<dyn Backend> = mock.clone();
        let out = run(&backend, "self_consistency(k=3)", "What is 12*3?")
            .await
            .unwrap();
        assert_eq!(out.approach, "self_consistency");
        assert!(out.usage.calls >= 1);
        assert!(
            mock.requests()
                .iter()
                .all(|r| r.last_user() == Some("What is 12*3?"))
        );
        let err = run(&backend, "no_such_approach", "q").await.unwrap_err();
        assert!(
            matches!(err, StrategyError::Spec(SpecError::BadSpec { .. })),
            "{err}"
        );
        assert!(err.to_string().contains("no_such_approach"), "{err}");
    }
}
