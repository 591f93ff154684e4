//! Logit-level approaches (CoT decoding, DeepConf) need token-level control, which the native
//! backend gives: `cargo run --release --example logit_level`.

#[path = "common.rs"]
mod common;

use optillm::strategy::{self, Budget, StrategyRequest};

#[tokio::main]
async fn main() -> anyhow::Result<()> {
    let backend = common::native().await?;
    let request = StrategyRequest::user("What is 6 times 7?");
    for text in [
        "cot_decoding(k=5,max_tokens=48)",
        "deepconf(max_traces=6,max_tokens=48)",
    ] {
        let approach = optillm::approach(text)?;
        let out = strategy::run(
            approach.as_ref(),
            backend.clone(),
            &request,
            Budget::default(),
        )
        .await?;
        println!(
            "{text}: {}\n  {} tokens",
            out.answer.trim(),
            out.usage.total_tokens()
        );
    }
    Ok(())
}
