//! Sampling and voting (self-consistency, best-of-n): `cargo run --release --example voting`.
//! The k samples of self-consistency are one request for n = k, decoded in one batch.

#[path = "common.rs"]
mod common;

use optillm::Sampling;
use optillm::strategy::{self, Budget, StrategyRequest};

#[tokio::main]
async fn main() -> anyhow::Result<()> {
    let backend = common::native().await?;
    let mut request = StrategyRequest::user("What is 15 + 27? End with: The answer is N.");
    request.sampling = Sampling::default().with_max_tokens(64).with_seed(7);
    for text in ["self_consistency(k=5)", "bon(n=3)"] {
        let approach = optillm::approach(text)?;
        let out = strategy::run(
            approach.as_ref(),
            backend.clone(),
            &request,
            Budget::default(),
        )
        .await?;
        println!("{text}: {}", out.answer);
        println!(
            "  {} calls, {} tokens, {:.1} s",
            out.usage.calls,
            out.usage.total_tokens(),
            out.wall.as_secs_f64()
        );
    }
    Ok(())
}
