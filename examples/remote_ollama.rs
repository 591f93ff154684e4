//! The same strategy over an Ollama server (`OLLAMA_HOST`, model from the first argument):
//! `cargo run --release --example remote_ollama -- llama3.2`.

use std::sync::Arc;

use optillm::strategy::{self, Budget, StrategyRequest};
use optillm::{OllamaBackend, OllamaConfig};

#[tokio::main]
async fn main() -> anyhow::Result<()> {
    let model = std::env::args()
        .nth(1)
        .unwrap_or_else(|| "smollm2:135m".into());
    let backend = Arc::new(OllamaBackend::new(
        OllamaConfig::from_env(model).with_temperature(0.7),
    )?);
    let approach = optillm::approach("moa")?;
    let out = strategy::run(
        approach.as_ref(),
        backend,
        &StrategyRequest::user("Why is the sky blue?"),
        Budget::default(),
    )
    .await?;
    println!("{}", out.answer);
    Ok(())
}
