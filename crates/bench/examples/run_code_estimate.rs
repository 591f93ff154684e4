//! What running the model's own code would have changed, estimated from recorded chains
//! with no generation: where a chain wrote a Python block and then, after an output
//! fence, what it imagined the block prints, the block is run by the interpreter
//! `calculator(run_code=true)` uses and the chain is read as answering the last number
//! the block really printed. (The live approach lets the model go on from the real
//! output; what it writes then is not known here, so this is an estimate.)
//!
//! ```sh
//! cargo run --release -p optillm-bench --example run_code_estimate -- \
//!     docs/results/gsm8k-qwen2.5-coder-0.5b
//! ```
//!
//! Printed, on the records of the directory's `results.jsonl`:
//! - greedy `none(temperature=0)`: right as recorded, right when its program runs;
//! - votes of the first k samples of `majority_voting(k=8)`, as recorded and run;
//! - `mixed_vote`'s voters (the greedy `pot` program, the greedy chain, then the first
//!   s samples; ties to the program, then the greedy chain), samples always or only
//!   where program and greedy chain disagree, as recorded and run, with tokens as a
//!   multiple of greedy's (a sample costs its completion and greedy's prompt).

use std::collections::HashMap;
use std::path::PathBuf;

use optillm_bench::eval::{ItemRecord, read_records};
use optillm_bench::score::score_answer;
use optillm_core::extract::{self, AnswerKind};
use optillm_core::strategies::calculator::{code_before_output, program_output};

const GREEDY: &str = "none(temperature=0)";
const VOTE: &str = "majority_voting(k=8)";
const PROGRAM: &str = "pot";

/// The answer a chain gives when the program it wrote before an output fence runs:
/// the last number printed; `None` when the chain has no such program or it printed
/// no number.
fn run_answer(text: &str) -> Option<String> {
    const FENCE: &str = "```output";
    let (before, _) = text.split_once(FENCE)?;
    let code = code_before_output(&format!("{before}{FENCE}"))?.to_string();
    extract::extract_as(&program_output(&code), Some(AnswerKind::Number))
}

/// A chain's answer: as recorded, or (`run`) its program's when it has one.
fn answer(text: &str, recorded: Option<&str>, run: bool) -> Option<String> {
    let recorded = recorded.map(str::to_string);
    if run {
        run_answer(text).or(recorded)
    } else {
        recorded
    }
}

fn right(answer: Option<&str>, r: &ItemRecord) -> bool {
    score_answer(answer.map(str::to_string), &r.gold, r.kind).correct
}

fn winner(answers: &[Option<String>]) -> Option<String> {
    extract::vote(answers).map(|v| v.winner)
}

fn main() -> Result<(), Box<dyn std::error::Error>> {
    let dir: PathBuf = std::env::args()
        .nth(1)
        .ok_or("usage: run_code_estimate DIR")?
        .into();
    let mut by: HashMap<String, HashMap<String, ItemRecord>> = HashMap::new();
    for r in read_records(&dir.join("results.jsonl"))? {
        by.entry(r.approach.clone())
            .or_default()
            .insert(r.item.clone(), r);
    }
    let greedy = by.get(GREEDY).ok_or("no greedy records")?;
    let n = greedy.len() as f64;
    let pct = |k: usize| 100.0 * k as f64 / n;
    let (mut asis, mut ran, mut with_code) = (0, 0, 0);
    for r in greedy.values() {
        asis += usize::from(right(r.extracted.as_deref(), r));
        ran += usize::from(right(
            answer(&r.output, r.extracted.as_deref(), true).as_deref(),
            r,
        ));
        with_code += usize::from(run_answer(&r.output).is_some());
    }
    println!(
        "greedy: {:.1}% as recorded, {:.1}% with its program run ({with_code} of {n} chains ran one)",
        pct(asis),
        pct(ran)
    );
    let greedy_tokens: u64 = greedy.values().map(ItemRecord::total_tokens).sum();
    let Some(votes) = by.get(VOTE) else {
        return Ok(());
    };
    for k in [2, 4, 8] {
        let mut counts = [0; 2];
        for (item, r) in votes {
            let Some(g) = greedy.get(item) else { continue };
            for (run, count) in [false, true].into_iter().zip(counts.iter_mut()) {
                let answers: Vec<Option<String>> = r
                    .samples
                    .iter()
                    .take(k)
                    .map(|s| answer(&s.text, s.answer.as_deref(), run))
                    .collect();
                *count += usize::from(right(winner(&answers).as_deref(), g));
            }
        }
        println!(
            "vote of {k} samples: {:.1}% as recorded, {:.1}% with their programs run",
            pct(counts[0]),
            pct(counts[1])
        );
    }
    let Some(programs) = by.get(PROGRAM) else {
        return Ok(());
    };
    for samples in [1, 2, 4] {
        for disagree in [false, true] {
            let (mut counts, mut tokens) = ([0; 2], [0u64; 2]);
            for (item, g) in greedy {
                let (Some(p), Some(v)) = (programs.get(item), votes.get(item)) else {
                    continue;
                };
                for (i, run) in [false, true].into_iter().enumerate() {
                    let mut answers = vec![
                        p.extracted.clone(),
                        answer(&g.output, g.extracted.as_deref(), run),
                    ];
                    tokens[i] += p.total_tokens() + g.total_tokens();
                    let agree = match (&answers[0], &answers[1]) {
                        (Some(a), Some(b)) => extract::answers_equal(a, b),
                        _ => false,
                    };
                    if !(disagree && agree) {
                        for s in v.samples.iter().take(samples) {
                            answers.push(answer(&s.text, s.answer.as_deref(), run));
                            tokens[i] += u64::from(s.completion_tokens) + g.prompt_tokens;
                        }
                    }
                    counts[i] += usize::from(right(winner(&answers).as_deref(), g));
                }
            }
            let x = |t: u64| t as f64 / greedy_tokens as f64;
            println!(
                "program + greedy chain + {samples} sample(s){}: {:.1}% as recorded (x{:.2}), {:.1}% with programs run (x{:.2})",
                if disagree { " where they disagree" } else { "" },
                pct(counts[0]),
                x(tokens[0]),
                pct(counts[1]),
                x(tokens[1]),
            );
        }
    }
    Ok(())
}
