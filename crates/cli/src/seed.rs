//! The API of the seed document (`seed-ultra-tiny-models.md`, the guide this project
//! started from), as a thin layer over the real types, so its snippets compile with the
//! import line changed to `use optillm::seed::*;` (or to the names they use).
//!
//! - [`OllamaConfig`] and [`OllamaClient`] are the Ollama backend's own configuration and
//!   backend ([`crate::OllamaConfig`], [`crate::OllamaBackend`]): `with_temperature` and
//!   `with_num_predict` set the defaults of every request.
//! - [`ReReadAggregator::run_reread`] runs the `re2` approach,
//!   [`DiverseSamplingAggregator::run_diverse_sampling`] the `diverse` approach and
//!   [`run_single_generation`] `none`, each through [`crate::strategy::run`].
//! - The client is anything that is a [`ModelClient`]: an [`OllamaClient`], an
//!   `Arc<dyn Backend>` such as [`crate::open`] returns for the native backend (where
//!   the seed's Ollama names, `tinyllama`, `gpt2`, `qwen:0.5b`, stand for the closest
//!   model of the manifest), or an `Arc` of any backend.
//! - `LLM_MODEL` chooses the model as in the seed; [`crate::model_from_env`] reads it
//!   with the manifest's default model as fallback.
//!
//! A setting of a `ReReadConfig` or `DiverseSamplingConfig` (temperature, max tokens)
//! wins over the client's default for that setting; what they leave unset is the client's.
//!
//! The seed's snippets, with the import line they need (they talk to an Ollama server on
//! `localhost:11434`, so they are compiled here, not run; `crates/cli/tests/seed.rs` runs
//! each of them against an Ollama-dialect server on loopback, and the native examples
//! below run against SmolLM2-135M).
//!
//! DistilGPT-2:
//!
//! ```no_run
//! # #[cfg(feature = "ollama")]
//! # fn demo() -> Result<(), Box<dyn std::error::Error>> {
//! use optillm::seed::{OllamaClient, OllamaConfig};
//!
//! let config = OllamaConfig::new(
//!     "http://localhost:11434".to_string(),
//!     "gpt2".to_string(),
//! ).with_temperature(0.7)
//!  .with_num_predict(256);
//!
//! let client = OllamaClient::new(config)?;
//! # Ok(()) }
//! ```
//!
//! TinyLlama (the seed passes its `config` a second time after moving it into the
//! client, which no Rust API can accept; the only change is `ReReadConfig::new()` for
//! that argument, as the seed's own "With Simple Strategy" snippet has it):
//!
//! ```no_run
//! # #[cfg(feature = "ollama")]
//! # async fn demo() -> Result<(), Box<dyn std::error::Error>> {
//! use optillm::seed::{OllamaClient, OllamaConfig, ReReadAggregator, ReReadConfig};
//!
//! let config = OllamaConfig::new(
//!     "http://localhost:11434".to_string(),
//!     "tinyllama".to_string(),
//! ).with_temperature(0.3)
//!  .with_num_predict(512);
//!
//! let client = OllamaClient::new(config)?;
//!
//! // Works with ANY optimization strategy
//! let result = ReReadAggregator::run_reread(
//!     "Write a Rust function...",
//!     "You are a helpful assistant.",
//!     ReReadConfig::new(),
//!     &client,
//! ).await?;
//! # Ok(()) }
//! ```
//!
//! Single generation:
//!
//! ```no_run
//! # #[cfg(feature = "ollama")]
//! # async fn demo() -> Result<(), Box<dyn std::error::Error>> {
//! use optillm::seed::{run_single_generation, OllamaClient, OllamaConfig};
//!
//! let config = OllamaConfig::new(
//!     "http://localhost:11434".to_string(),
//!     "tinyllama".to_string(),
//! ).with_temperature(0.5)
//!  .with_num_predict(256);  // Smaller = faster
//!
//! let client = OllamaClient::new(config)?;
//!
//! // Single generation - fastest approach
//! let result = run_single_generation(&client, "Simple task").await?;
//! println!("Done in 5 seconds on CPU!");
//! # Ok(()) }
//! ```
//!
//! With a simple strategy:
//!
//! ```no_run
//! # #[cfg(feature = "ollama")]
//! # async fn demo(query: &str, system_prompt: &str) -> Result<(), Box<dyn std::error::Error>> {
//! use optillm::seed::{
//!     DiverseSamplingAggregator, DiverseSamplingConfig,
//!     ReReadAggregator, ReReadConfig,
//!     OllamaClient, OllamaConfig,
//! };
//!
//! let ollama_config = OllamaConfig::new(
//!     "http://localhost:11434".to_string(),
//!     "tinyllama".to_string(),
//! ).with_temperature(0.3);
//!
//! let client = OllamaClient::new(ollama_config)?;
//!
//! // ReRead: Simple re-reading (very lightweight)
//! let result = ReReadAggregator::run_reread(
//!     query,
//!     system_prompt,
//!     ReReadConfig::new(),
//!     &client,
//! ).await?;
//!
//! println!("Done with re-reading verification!");
//! # Ok(()) }
//! ```
//!
//! Performance tips (the list of lightweight strategies in the seed names the two calls
//! without their arguments, so it is not code; they are the calls above):
//!
//! ```
//! # let chat_history = vec![optillm::Message::user("a"), optillm::Message::user("b")];
//! // Instead of full history, use last N messages
//! let messages: Vec<_> = chat_history
//!     .iter()
//!     .rev()
//!     .take(3)  // Only last 3 messages
//!     .collect();
//! ```
//!
//! ```
//! # #[cfg(feature = "ollama")] {
//! # let config = optillm::seed::OllamaConfig::new("http://localhost:11434", "tinyllama");
//! # let config =
//! config.with_num_predict(256)  // Instead of 1024
//! # ;
//! # assert_eq!(config.sampling.max_tokens, Some(256));
//! # }
//! ```
//!
//! Switching model sizes:
//!
//! ```
//! # #[cfg(feature = "ollama")] {
//! # use optillm::seed::OllamaConfig;
//! // Development
//! let model = "tinyllama";
//!
//! // Testing ultra-tiny
//! let model = "gpt2";
//!
//! // Production
//! let model = "deepseek-coder:6.7b-base-q4_K_M";
//!
//! let config = OllamaConfig::new(
//!     "http://localhost:11434".to_string(),
//!     model.to_string(),
//! );
//! # assert_eq!(config.model, "deepseek-coder:6.7b-base-q4_K_M");
//! # }
//! ```
//!
//! ```
//! let model = std::env::var("LLM_MODEL")
//!     .unwrap_or("tinyllama".to_string());
//! ```
//!
//! The same calls on the native backend (these run, on SmolLM2-135M, which `tinyllama`
//! stands for; the model is pulled into the cache if missing):
//!
//! ```
//! # #[cfg(feature = "llama")]
//! # #[tokio::main(flavor = "current_thread")]
//! # async fn main() -> Result<(), Box<dyn std::error::Error>> {
//! use optillm::seed::{
//!     run_single_generation, DiverseSamplingAggregator, DiverseSamplingConfig,
//!     ReReadAggregator, ReReadConfig,
//! };
//!
//! let model = std::env::var("LLM_MODEL")
//!     .unwrap_or("tinyllama".to_string());
//! let client = optillm::open(&model, optillm::OpenOptions::new().pull(true)).await?;
//!
//! let result = run_single_generation(&client, "Say hello.").await?;
//! assert!(result.metadata.total_tokens > 0);
//!
//! let result = ReReadAggregator::run_reread(
//!     "What is 2 + 3?",
//!     "You are a helpful assistant.",
//!     ReReadConfig::new().with_max_tokens(32),
//!     &client,
//! ).await?;
//! println!("{}", result.answer);
//!
//! let result = DiverseSamplingAggregator::run_diverse_sampling(
//!     "What is 2 + 3?",
//!     "You are a helpful assistant.",
//!     DiverseSamplingConfig::new().with_num_samples(3).with_max_tokens(32),
//!     &client,
//! ).await?;
//! assert_eq!(result.metadata.samples.len(), 3);
//! # Ok(()) }
//! # #[cfg(not(feature = "llama"))]
//! # fn main() {}
//! ```

use std::collections::HashSet;
use std::fmt;
use std::sync::Arc;

use serde::{Deserialize, Serialize};

use crate::strategies::{self, Params};
use crate::strategy::{self, Budget, Outcome, StrategyRequest};
use crate::{Backend, Message, Sampling, StrategyError};

#[cfg(feature = "ollama")]
pub use optillm_ollama::OllamaConfig;

/// The seed's Ollama client: the Ollama backend itself (`OllamaClient::new(config)?`).
#[cfg(feature = "ollama")]
pub type OllamaClient = optillm_ollama::OllamaBackend;

/// Errors of the seed's calls.
#[derive(Debug, thiserror::Error)]
#[non_exhaustive]
pub enum SeedError {
    /// A configuration value out of range.
    #[error("invalid configuration: {0}")]
    InvalidConfiguration(String),
    /// The run failed (the backend's error, a bad parameter, ...).
    #[error(transparent)]
    Strategy(#[from] StrategyError),
}

/// What the seed's calls run on: anything that gives a shared [`Backend`].
pub trait ModelClient {
    /// The backend to run on.
    fn backend(&self) -> Arc<dyn Backend>;
}

impl ModelClient for Arc<dyn Backend> {
    fn backend(&self) -> Arc<dyn Backend> {
        Arc::clone(self)
    }
}

impl<B: Backend + 'static> ModelClient for Arc<B> {
    fn backend(&self) -> Arc<dyn Backend> {
        Arc::clone(self) as Arc<dyn Backend>
    }
}

#[cfg(feature = "ollama")]
impl ModelClient for optillm_ollama::OllamaBackend {
    fn backend(&self) -> Arc<dyn Backend> {
        // Cheap: clones share the connection pool and the concurrency limit.
        Arc::new(self.clone())
    }
}

#[cfg(feature = "openai")]
impl ModelClient for optillm_openai::OpenAiBackend {
    fn backend(&self) -> Arc<dyn Backend> {
        Arc::new(self.clone())
    }
}

/// `usize` of a token count.
fn tokens(n: u64) -> usize {
    usize::try_from(n).unwrap_or(usize::MAX)
}

/// A `max_tokens` that fits the request type.
fn max_tokens(n: Option<usize>) -> Result<Option<u32>, SeedError> {
    n.map(|n| match u32::try_from(n) {
        Ok(n) if n > 0 => Ok(n),
        _ => Err(SeedError::InvalidConfiguration(format!(
            "max_tokens must be 1..={}, not {n}",
            u32::MAX
        ))),
    })
    .transpose()
}

/// The request of the seed's calls: the system prompt (when not empty) and the query.
fn request(query: &str, system_prompt: &str, sampling: Sampling) -> StrategyRequest {
    let mut messages = Vec::new();
    if !system_prompt.is_empty() {
        messages.push(Message::system(system_prompt));
    }
    messages.push(Message::user(query));
    StrategyRequest::new(messages).with_sampling(sampling)
}

async fn run_approach(
    slug: &str,
    params: &Params,
    request: &StrategyRequest,
    client: &(impl ModelClient + ?Sized),
) -> Result<Outcome, SeedError> {
    let approach = strategies::build(slug, params).map_err(StrategyError::Spec)?;
    Ok(strategy::run(
        approach.as_ref(),
        client.backend(),
        request,
        Budget::default(),
    )
    .await?)
}

/// Settings of [`ReReadAggregator::run_reread`]; unset ones are the client's.
#[derive(Debug, Clone, Default, PartialEq, Serialize, Deserialize)]
pub struct ReReadConfig {
    /// Temperature of the answer.
    pub temperature: Option<f32>,
    /// Most tokens of the answer.
    pub max_tokens: Option<usize>,
}

impl ReReadConfig {
    pub fn new() -> Self {
        Self::default()
    }
    pub fn with_temperature(mut self, temperature: f32) -> Self {
        self.temperature = Some(temperature);
        self
    }
    pub fn with_max_tokens(mut self, max_tokens: usize) -> Self {
        self.max_tokens = Some(max_tokens);
        self
    }
    /// Checks the ranges (temperature 0..=2, max_tokens at least 1).
    pub fn validate(&self) -> Result<(), SeedError> {
        check_temperature("temperature", self.temperature)?;
        max_tokens(self.max_tokens).map(|_| ())
    }
}

fn check_temperature(what: &str, t: Option<f32>) -> Result<(), SeedError> {
    match t {
        Some(t) if !(0.0..=2.0).contains(&t) => Err(SeedError::InvalidConfiguration(format!(
            "{what} must be between 0.0 and 2.0, not {t}"
        ))),
        _ => Ok(()),
    }
}

/// What [`ReReadAggregator::run_reread`] returns.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct ReReadResult {
    /// The answer.
    pub answer: String,
    pub metadata: ReReadMetadata,
}

/// Cost of a ReRead run.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct ReReadMetadata {
    /// Prompt and completion tokens of the call.
    pub total_tokens: usize,
}

impl fmt::Display for ReReadMetadata {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        write!(f, "ReReadMetadata {{ tokens: {} }}", self.total_tokens)
    }
}

/// ReRead (the `re2` approach): the question is given twice.
#[derive(Debug, Clone, Copy)]
pub struct ReReadAggregator;

impl ReReadAggregator {
    /// Answers `query` (with `system_prompt` as the system message when not empty) with
    /// the question read twice.
    pub async fn run_reread(
        query: &str,
        system_prompt: &str,
        config: ReReadConfig,
        client: &(impl ModelClient + ?Sized),
    ) -> Result<ReReadResult, SeedError> {
        config.validate()?;
        let sampling = Sampling {
            temperature: config.temperature,
            max_tokens: max_tokens(config.max_tokens)?,
            ..Sampling::default()
        };
        let request = request(query, system_prompt, sampling);
        let outcome = run_approach("re2", &Params::new(), &request, client).await?;
        Ok(ReReadResult {
            answer: outcome.answer,
            metadata: ReReadMetadata {
                total_tokens: tokens(outcome.usage.total_tokens()),
            },
        })
    }
}

/// Settings of [`DiverseSamplingAggregator::run_diverse_sampling`].
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct DiverseSamplingConfig {
    /// Samples, one request each (default 5).
    pub num_samples: usize,
    /// Temperature of the first sample (default 0.3).
    pub min_temperature: f32,
    /// Temperature of the last sample (default 1.5); the others are evenly spaced.
    pub max_temperature: f32,
    /// Most tokens per sample (default: the client's).
    pub max_tokens: Option<usize>,
}

impl Default for DiverseSamplingConfig {
    fn default() -> Self {
        Self {
            num_samples: 5,
            min_temperature: 0.3,
            max_temperature: 1.5,
            max_tokens: None,
        }
    }
}

impl DiverseSamplingConfig {
    pub fn new() -> Self {
        Self::default()
    }
    pub fn with_num_samples(mut self, num_samples: usize) -> Self {
        self.num_samples = num_samples;
        self
    }
    pub fn with_min_temperature(mut self, temperature: f32) -> Self {
        self.min_temperature = temperature;
        self
    }
    pub fn with_max_temperature(mut self, temperature: f32) -> Self {
        self.max_temperature = temperature;
        self
    }
    pub fn with_max_tokens(mut self, max_tokens: usize) -> Self {
        self.max_tokens = Some(max_tokens);
        self
    }
    /// Checks the ranges: 1..=64 samples, temperatures 0..=2 with min <= max,
    /// max_tokens at least 1.
    pub fn validate(&self) -> Result<(), SeedError> {
        if !(1..=64).contains(&self.num_samples) {
            return Err(SeedError::InvalidConfiguration(format!(
                "num_samples must be 1..=64, not {}",
                self.num_samples
            )));
        }
        check_temperature("min_temperature", Some(self.min_temperature))?;
        check_temperature("max_temperature", Some(self.max_temperature))?;
        if self.min_temperature > self.max_temperature {
            return Err(SeedError::InvalidConfiguration(
                "min_temperature must be at most max_temperature".into(),
            ));
        }
        max_tokens(self.max_tokens).map(|_| ())
    }
}

/// One sample of a DiverseSampling run.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct Sample {
    pub answer: String,
    /// The temperature it was drawn at.
    pub temperature: f32,
    /// Prompt and completion tokens of its call.
    pub tokens: usize,
}

/// What [`DiverseSamplingAggregator::run_diverse_sampling`] returns.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct DiverseSamplingResult {
    /// The sample chosen by the majority of the answers extracted from the samples.
    pub best_answer: String,
    /// The temperature the chosen sample was drawn at.
    pub best_temperature: f32,
    pub metadata: DiverseSamplingMetadata,
}

/// Samples and cost of a DiverseSampling run.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct DiverseSamplingMetadata {
    /// Tokens of every call.
    pub total_tokens: usize,
    /// Every sample, by increasing temperature.
    pub samples: Vec<Sample>,
    /// Distinct sample texts (compared ignoring case).
    pub unique_answers: usize,
}

impl fmt::Display for DiverseSamplingMetadata {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        write!(
            f,
            "DiverseSamplingMetadata {{ tokens: {}, samples: {}, unique: {} }}",
            self.total_tokens,
            self.samples.len(),
            self.unique_answers
        )
    }
}

/// DiverseSampling (the `diverse` approach): samples over a temperature ladder, the
/// answer chosen by majority vote.
#[derive(Debug, Clone, Copy)]
pub struct DiverseSamplingAggregator;

impl DiverseSamplingAggregator {
    pub async fn run_diverse_sampling(
        query: &str,
        system_prompt: &str,
        config: DiverseSamplingConfig,
        client: &(impl ModelClient + ?Sized),
    ) -> Result<DiverseSamplingResult, SeedError> {
        config.validate()?;
        let mut params = Params::new();
        params.insert("n".into(), config.num_samples.into());
        params.insert("min_temperature".into(), config.min_temperature.into());
        params.insert("max_temperature".into(), config.max_temperature.into());
        let sampling = Sampling {
            max_tokens: max_tokens(config.max_tokens)?,
            ..Sampling::default()
        };
        let request = request(query, system_prompt, sampling);
        let outcome = run_approach("diverse", &params, &request, client).await?;
        // With the vote selection every call of the run is a sample.
        let mut samples: Vec<Sample> = outcome
            .trace
            .iter()
            .map(|call| Sample {
                answer: call.outputs.first().cloned().unwrap_or_default(),
                temperature: call.sampling.temperature.unwrap_or(config.min_temperature),
                tokens: tokens(u64::from(call.usage.total())),
            })
            .collect();
        samples.sort_by(|a, b| a.temperature.total_cmp(&b.temperature));
        let best_temperature = samples
            .iter()
            .find(|s| s.answer == outcome.answer)
            .map_or(config.min_temperature, |s| s.temperature);
        let unique_answers = samples
            .iter()
            .map(|s| s.answer.to_lowercase())
            .collect::<HashSet<_>>()
            .len();
        Ok(DiverseSamplingResult {
            best_answer: outcome.answer,
            best_temperature,
            metadata: DiverseSamplingMetadata {
                total_tokens: tokens(outcome.usage.total_tokens()),
                samples,
                unique_answers,
            },
        })
    }
}

/// What [`run_single_generation`] returns.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct GenerationResult {
    pub answer: String,
    pub metadata: GenerationMetadata,
}

/// Cost of one generation.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct GenerationMetadata {
    /// Prompt and completion tokens of the call.
    pub total_tokens: usize,
}

/// One completion of `prompt` (the `none` approach) with the client's settings.
pub async fn run_single_generation(
    client: &(impl ModelClient + ?Sized),
    prompt: &str,
) -> Result<GenerationResult, SeedError> {
    let request = request(prompt, "", Sampling::default());
    let outcome = run_approach("none", &Params::new(), &request, client).await?;
    Ok(GenerationResult {
        answer: outcome.answer,
        metadata: GenerationMetadata {
            total_tokens: tokens(outcome.usage.total_tokens()),
        },
    })
}

#[cfg(test)]
mod tests {
    #![allow(clippy::unwrap_used)]

    use super::*;
    use optillm_core::mock::MockBackend;

    fn mock(reply: fn(&crate::ChatRequest) -> String) -> Arc<MockBackend> {
        Arc::new(MockBackend::new(move |r, _| Ok(reply(r))))
    }

    #[tokio::test]
    async fn reread_sends_the_question_twice_with_the_configs_settings() {
        let backend = mock(|_| "The answer is 5.".into());
        let out = ReReadAggregator::run_reread(
            "What is 2+3?",
            "Be brief.",
            ReReadConfig::new()
                .with_temperature(0.2)
                .with_max_tokens(40),
            &backend,
        )
        .await
        .unwrap();
        assert_eq!(out.answer, "The answer is 5.");
        assert!(out.metadata.total_tokens > 0);
        let sent = backend.requests();
        assert_eq!(sent.len(), 1);
        assert_eq!(sent[0].messages[0], Message::system("Be brief."));
        assert_eq!(
            sent[0].messages[1].content,
            "What is 2+3?\nRead the question again: What is 2+3?"
        );
        assert_eq!(sent[0].sampling.temperature, Some(0.2));
        assert_eq!(sent[0].sampling.max_tokens, Some(40));
    }

    #[tokio::test]
    async fn unset_settings_are_left_to_the_client_and_an_empty_system_prompt_is_dropped() {
        let backend = mock(|_| "x".into());
        let client: Arc<dyn Backend> = backend.clone();
        ReReadAggregator::run_reread("Q", "", ReReadConfig::new(), &client)
            .await
            .unwrap();
        let sent = backend.requests();
        assert_eq!(sent[0].messages.len(), 1);
        assert_eq!(sent[0].sampling.temperature, None);
        assert_eq!(sent[0].sampling.max_tokens, None);
    }

    #[tokio::test]
    async fn diverse_sampling_draws_the_ladder_and_keeps_every_sample() {
        // The answer depends on the temperature: 0.3 and 0.9 say 5, 1.5 says 6.
        let backend = mock(|r| {
            if r.sampling.temperature.unwrap_or(0.0) > 1.0 {
                "The answer is 6.".into()
            } else {
                "The answer is 5.".into()
            }
        });
        let out = DiverseSamplingAggregator::run_diverse_sampling(
            "What is 2+3?",
            "sys",
            DiverseSamplingConfig::new()
                .with_num_samples(3)
                .with_max_temperature(1.5)
                .with_max_tokens(16),
            &backend,
        )
        .await
        .unwrap();
        let temps: Vec<f32> = out.metadata.samples.iter().map(|s| s.temperature).collect();
        assert_eq!(temps.len(), 3);
        assert!((temps[0] - 0.3).abs() < 1e-6 && (temps[1] - 0.9).abs() < 1e-6);
        assert!((temps[2] - 1.5).abs() < 1e-6);
        assert_eq!(out.best_answer, "The answer is 5.");
        assert!((out.best_temperature - 0.3).abs() < 1e-6);
        assert_eq!(out.metadata.unique_answers, 2);
        let per_sample: usize = out.metadata.samples.iter().map(|s| s.tokens).sum();
        assert_eq!(out.metadata.total_tokens, per_sample);
        assert!(
            backend
                .requests()
                .iter()
                .all(|r| r.sampling.max_tokens == Some(16))
        );
    }

    #[tokio::test]
    async fn bad_configurations_fail_before_any_call() {
        let backend = mock(|_| "x".into());
        for config in [
            DiverseSamplingConfig::new().with_num_samples(0),
            DiverseSamplingConfig::new().with_min_temperature(-0.1),
            DiverseSamplingConfig::new()
                .with_min_temperature(1.0)
                .with_max_temperature(0.5),
            DiverseSamplingConfig::new().with_max_tokens(0),
        ] {
            let e = DiverseSamplingAggregator::run_diverse_sampling("q", "", config, &backend)
                .await
                .unwrap_err();
            assert!(matches!(e, SeedError::InvalidConfiguration(_)), "{e}");
        }
        let e = ReReadAggregator::run_reread(
            "q",
            "",
            ReReadConfig::new().with_temperature(2.5),
            &backend,
        )
        .await
        .unwrap_err();
        assert!(matches!(e, SeedError::InvalidConfiguration(_)), "{e}");
        assert_eq!(backend.calls(), 0);
    }

    #[tokio::test]
    async fn single_generation_is_one_call_of_the_prompt() {
        let backend = mock(|r| format!("echo: {}", r.messages[0].content));
        let out = run_single_generation(&backend, "Simple task")
            .await
            .unwrap();
        assert_eq!(out.answer, "echo: Simple task");
        assert_eq!(backend.calls(), 1);
        assert_eq!(
            backend.requests()[0].messages,
            vec![Message::user("Simple task")]
        );
    }
}
