//! Math word problems, with the approaches measured to help there (docs/results.md):
//! `auto` sends a word problem to `mixed_vote` (a program run exactly, a greedy chain of
//! thought and, where those two disagree, sampled chains voting), and
//! `mixed_vote(calculator=true)` also runs the Python blocks the chains write.
//!
//! `cargo run --release --example word_problems` uses Qwen2.5-Coder-0.5B (pulled into the
//! cache if missing, 491 MB); set `OPTILLM_MODEL=qwen2.5-coder-1.5b` for the model where
//! `mixed_vote(calculator=true)` gains +18 points over greedy decoding on GSM8K.

use optillm::strategy::{self, Budget, StrategyRequest};
use optillm::{OpenOptions, Sampling};

const QUESTION: &str = "A baker makes 48 muffins. She sells 3/4 of them in the morning and \
                        half of the rest in the afternoon. How many muffins are left?";

#[tokio::main]
async fn main() -> anyhow::Result<()> {
    let model = std::env::var("OPTILLM_MODEL").unwrap_or_else(|_| "qwen2.5-coder-0.5b".into());
    let backend = optillm::open(&model, OpenOptions::new().pull(true)).await?;
    let mut request = StrategyRequest::user(QUESTION);
    request.sampling = Sampling::default().with_max_tokens(512).with_seed(1);
    for text in ["none(temperature=0)", "auto", "mixed_vote(calculator=true)"] {
        let approach = optillm::approach(text)?;
        let out = strategy::run(
            approach.as_ref(),
            backend.clone(),
            &request,
            Budget::default(),
        )
        .await?;
        // The answer the vote settled on, when there was one; else the reply's last line.
        let answer = match &out.vote {
            Some(vote) => vote.winner.clone(),
            None => out
                .answer
                .lines()
                .last()
                .unwrap_or_default()
                .trim()
                .to_string(),
        };
        println!(
            "{text}: {answer}\n  {} calls, {} tokens, {:.1} s",
            out.usage.calls,
            out.usage.total_tokens(),
            out.wall.as_secs_f64()
        );
    }
    Ok(())
}
