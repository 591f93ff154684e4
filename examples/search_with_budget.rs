//! Search (MCTS) and a pipeline under a token budget, with the trace written as JSONL:
//! `cargo run --release --example search_with_budget`.

#[path = "common.rs"]
mod common;

use optillm::Sampling;
use optillm::strategy::{self, Budget, StrategyRequest};

#[tokio::main]
async fn main() -> anyhow::Result<()> {
    let backend = common::native().await?;
    let mut request = StrategyRequest::user("Suggest a name for a bakery that sells only bread.");
    request.sampling = Sampling::default().with_max_tokens(48);
    let budget = Budget {
        max_total_tokens: Some(1500),
        max_duration: None,
    };
    let approach = optillm::approach("re2&mcts(simulations=2)")?;
    let out = strategy::run(approach.as_ref(), backend, &request, budget).await?;
    println!("{}", out.answer);
    println!(
        "{} calls, {} tokens{}",
        out.usage.calls,
        out.usage.total_tokens(),
        if out.budget_exhausted {
            " (budget cut: best answer so far)"
        } else {
            ""
        }
    );
    std::fs::write("trace.jsonl", out.trace_jsonl())?;
    println!("trace of every call in trace.jsonl");
    Ok(())
}
