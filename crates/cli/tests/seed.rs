//! The seed document's snippets (`optillm::seed`), run: the Ollama ones against an
//! Ollama-dialect server on loopback (`optillm serve` in process, serving SmolLM2-135M
//! under the seed's Ollama names `tinyllama` and `gpt2`), with only the server URL
//! changed; the same calls on the native backend.

#![allow(clippy::unwrap_used, clippy::expect_used, clippy::panic)]

mod common;

use std::sync::Arc;

use optillm::Backend;
use optillm::seed::{
    DiverseSamplingAggregator, DiverseSamplingConfig, OllamaClient, OllamaConfig, ReReadAggregator,
    ReReadConfig, SeedError, run_single_generation,
};
use optillm::server::{ServerConfig, StaticModels};

type BoxError = Box<dyn std::error::Error>;

async fn start_server() -> (String, tokio::sync::oneshot::Sender<()>) {
    let native: Arc<dyn Backend> = common::native();
    let models = StaticModels::new()
        .with("tinyllama", native.clone())
        .with("gpt2", native);
    let listener = tokio::net::TcpListener::bind("127.0.0.1:0").await.unwrap();
    let addr = listener.local_addr().unwrap();
    let (stop, stopped) = tokio::sync::oneshot::channel::<()>();
    tokio::spawn(async move {
        optillm::server::serve_on(listener, ServerConfig::default(), Arc::new(models), async {
            let _ = stopped.await;
        })
        .await
        .unwrap();
    });
    (format!("http://{addr}"), stop)
}

/// "DistilGPT-2 ... Example".
fn distilgpt2_example(url: &str) -> Result<OllamaClient, BoxError> {
    let config = OllamaConfig::new(url.to_string(), "gpt2".to_string())
        .with_temperature(0.7)
        .with_num_predict(256);

    let client = OllamaClient::new(config)?;
    Ok(client)
}

/// "TinyLlama ... Example" (its third argument fixed, see `optillm::seed`).
async fn tinyllama_example(url: &str) -> Result<String, BoxError> {
    let config = OllamaConfig::new(url.to_string(), "tinyllama".to_string())
        .with_temperature(0.3)
        .with_num_predict(512);

    let client = OllamaClient::new(config)?;

    // Works with ANY optimization strategy
    let result = ReReadAggregator::run_reread(
        "Write a Rust function...",
        "You are a helpful assistant.",
        ReReadConfig::new(),
        &client,
    )
    .await?;
    Ok(result.answer)
}

/// "Single Generation (Fastest)".
async fn single_generation_example(url: &str) -> Result<usize, BoxError> {
    let config = OllamaConfig::new(url.to_string(), "tinyllama".to_string())
        .with_temperature(0.5)
        .with_num_predict(256); // Smaller = faster

    let client = OllamaClient::new(config)?;

    // Single generation - fastest approach
    let result = run_single_generation(&client, "Simple task").await?;
    println!("Done in 5 seconds on CPU!");
    Ok(result.metadata.total_tokens)
}

/// "With Simple Strategy (Fast + Better Quality)", and DiverseSampling with the same client.
async fn simple_strategy_example(
    url: &str,
    query: &str,
    system_prompt: &str,
) -> Result<(String, optillm::seed::DiverseSamplingResult), BoxError> {
    let ollama_config =
        OllamaConfig::new(url.to_string(), "tinyllama".to_string()).with_temperature(0.3);

    let client = OllamaClient::new(ollama_config)?;

    // ReRead: Simple re-reading (very lightweight)
    let result = ReReadAggregator::run_reread(
        query,
        system_prompt,
        ReReadConfig::new().with_max_tokens(48),
        &client,
    )
    .await?;

    println!("Done with re-reading verification!");

    let diverse = DiverseSamplingAggregator::run_diverse_sampling(
        query,
        system_prompt,
        DiverseSamplingConfig::new()
            .with_num_samples(3)
            .with_max_tokens(48),
        &client,
    )
    .await?;
    Ok((result.answer, diverse))
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn the_seeds_ollama_snippets_run_against_an_ollama_dialect_server() {
    let (url, _stop) = start_server().await;

    let client = distilgpt2_example(&url).unwrap();
    assert_eq!(client.config().model, "gpt2");
    assert_eq!(client.config().sampling.temperature, Some(0.7));
    assert_eq!(client.config().sampling.max_tokens, Some(256));

    let answer = tinyllama_example(&url).await.unwrap();
    assert!(!answer.trim().is_empty());

    let tokens = single_generation_example(&url).await.unwrap();
    assert!(tokens > 0);

    let (answer, diverse) = simple_strategy_example(
        &url,
        "What is 6 times 7? End with: The answer is N.",
        "You are a helpful assistant.",
    )
    .await
    .unwrap();
    assert!(!answer.trim().is_empty());
    let temps: Vec<f32> = diverse
        .metadata
        .samples
        .iter()
        .map(|s| s.temperature)
        .collect();
    assert_eq!(temps.len(), 3, "{temps:?}");
    assert!((temps[0] - 0.3).abs() < 1e-6 && (temps[2] - 1.5).abs() < 1e-6);
    assert!(
        diverse
            .metadata
            .samples
            .iter()
            .any(|s| s.answer == diverse.best_answer && s.temperature == diverse.best_temperature)
    );
    assert!(diverse.metadata.samples.iter().all(|s| s.tokens > 0));
    assert!(diverse.metadata.unique_answers >= 1);

    // A model the server does not have is an error, not an empty answer.
    let config = OllamaConfig::new(url.clone(), "deepseek-coder:6.7b-base-q4_K_M");
    let client = OllamaClient::new(config).unwrap();
    let err = run_single_generation(&client, "hi").await.unwrap_err();
    assert!(matches!(err, SeedError::Strategy(_)), "{err}");
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn the_same_calls_give_the_same_greedy_answer_natively_and_over_ollama() {
    let (url, _stop) = start_server().await;
    let ollama = OllamaClient::new(OllamaConfig::new(url, "tinyllama")).unwrap();
    let native: Arc<dyn Backend> = common::native();
    let greedy = || {
        ReReadConfig::new()
            .with_temperature(0.0)
            .with_max_tokens(24)
    };
    let (q, s) = ("What is the capital of France?", "Answer briefly.");
    let over_ollama = ReReadAggregator::run_reread(q, s, greedy(), &ollama)
        .await
        .unwrap();
    let natively = ReReadAggregator::run_reread(q, s, greedy(), &native)
        .await
        .unwrap();
    assert!(!natively.answer.is_empty());
    assert_eq!(over_ollama.answer, natively.answer);
    assert!(natively.metadata.total_tokens > 24);
}
