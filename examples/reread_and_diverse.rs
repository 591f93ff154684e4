//! The seed's ReRead and DiverseSampling usage with a tiny model:
//! `cargo run --release --example reread_and_diverse`.

#[path = "common.rs"]
mod common;

use optillm::strategies::diverse::{self, Diverse};
use optillm::strategy::{self, Budget, StrategyRequest};
use optillm::{Sampling, strategies};

#[tokio::main]
async fn main() -> anyhow::Result<()> {
    let backend = common::native().await?;
    let mut request =
        StrategyRequest::user("A farmer has 17 sheep. All but 9 run away. How many are left?");
    request.sampling = Sampling::default().with_max_tokens(96).with_seed(1);

    // ReRead by name: the question is given twice.
    let re2 = strategies::build("re2", &Default::default())?;
    let out = strategy::run(re2.as_ref(), backend.clone(), &request, Budget::default()).await?;
    println!("re2: {}\n", out.answer);

    // DiverseSampling from typed parameters (the spec
    // `diverse(n=5,min_temperature=0.3,max_temperature=1.5)` builds the same): 5 requests
    // over a temperature ladder 0.3..1.5, answer by vote.
    let diverse = Diverse::new(diverse::Params {
        n: 5,
        min_temperature: 0.3,
        max_temperature: 1.5,
        ..Default::default()
    })?;
    let out = strategy::run(&diverse, backend, &request, Budget::default()).await?;
    println!("diverse: {}", out.answer);
    for c in &out.candidates {
        println!("  candidate: {}", c.lines().next().unwrap_or(""));
    }
    println!(
        "{} calls, {} tokens",
        out.usage.calls,
        out.usage.total_tokens()
    );
    Ok(())
}
