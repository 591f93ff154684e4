//! The native backend measured on the quantities of llama.cpp's `llama-bench -p 256 -n 128`
//! and `llama-batched-bench -npp 32 -ntg 128 -npl 1,2,4,8`, printed as one table of
//! medians (and one JSON line) for scripts/llama-cpp-reference.sh and docs/benchmarks.md.
//!
//! Run: `cargo bench -p optillm --bench native_reference`
//! (`OPTILLM_BENCH_MODEL`, `OPTILLM_BENCH_THREADS` as for the criterion benches;
//! `OPTILLM_BENCH_REPS` repetitions, default 5). Every repetition runs every test once,
//! so slow phases of a shared machine spread over all tests.
//!
//! What is timed (all through `Backend::complete`, i.e. with chat template, sampling,
//! detokenization and streaming included, unlike llama.cpp's tools, which decode
//! random tokens without sampling):
//! - prompt tok/s: `usage.prompt_tokens / timings.prompt_eval` of a 256-token prompt;
//! - decode tok/s: `usage.completion_tokens / timings.decode` of 128 sampled tokens;
//! - time to first token of the short story prompt (`timings.time_to_first_token`);
//! - n = 1, 2, 4, 8 samples of 128 tokens from one request: wall time (client side),
//!   aggregate decode tok/s (`completion_tokens / decode`, like batched-bench's S_TG)
//!   and all tokens over wall time (like batched-bench's S with a shared prompt);
//! - 8 separate one-sample requests one after the other: wall time;
//! - the same two at a prompt of [`LONG_PROMPT_TOKENS`] (notes before the story request,
//!   the size of a strategy's prompt), where n samples share one prompt evaluation and
//!   separate requests evaluate it each (with `OPTILLM_BENCH_PREFIX_CACHE=4`, the
//!   backend's default, they share it through the prefix cache);
//! - raw decode, for the analysis: the same prompt, then 128 steps of n sequences fed a
//!   fixed token through the token-level session (`Backend::token_job`): llama.cpp's
//!   decoding through our binding and worker without sampling, detokenization or
//!   streaming, which is what llama-bench's tg and batched-bench's S_TG time.

mod common;

use std::time::{Duration, Instant};

use common::{BoxError, GEN_TOKENS, N_SAMPLES, Native, PROMPT_TOKENS, long_story, story};
use optillm_core::run_token_job;
use serde_json::json;

/// Tokens of the realistic prompt of the n = 8 against 8 separate requests comparison.
const LONG_PROMPT_TOKENS: u32 = 279;

#[derive(Default)]
struct Runs {
    prompt_tps: Vec<f64>,
    decode_tps: Vec<f64>,
    ttft_ms: Vec<f64>,
    story_prompt_tokens: u32,
    /// Per n: wall seconds, aggregate decode tok/s, total tok/s, generated tokens.
    n_wall: Vec<Vec<f64>>,
    n_decode_tps: Vec<Vec<f64>>,
    n_total_tps: Vec<Vec<f64>>,
    n_tokens: Vec<Vec<f64>>,
    separate_wall: Vec<f64>,
    separate_tokens: Vec<f64>,
    /// n = 8 in one request and 8 separate requests at the long prompt: wall, tokens.
    long_n8_wall: Vec<f64>,
    long_n8_tokens: Vec<f64>,
    long_separate_wall: Vec<f64>,
    long_separate_tokens: Vec<f64>,
    /// Per n: tok/s of the raw decode.
    raw_tps: Vec<Vec<f64>>,
}

/// Tokens per second of `GEN_TOKENS` steps of `n` sequences forked from the prompt,
/// each step one batch of the same token (no sampling).
fn raw_decode(native: &Native, n: u32) -> Result<f64, BoxError> {
    let request = story(GEN_TOKENS, 1, 1);
    let elapsed: Duration =
        native
            .rt
            .block_on(run_token_job(&*native.backend, request, move |s| {
                let started = Instant::now();
                let logits = s.logits(0)?;
                let token = logits
                    .iter()
                    .enumerate()
                    .max_by(|a, b| a.1.total_cmp(b.1))
                    .map_or(0, |(i, _)| i as i32);
                let mut seqs = vec![0];
                for _ in 1..n {
                    seqs.push(s.fork(0)?);
                }
                let items: Vec<(i32, i32)> = seqs.iter().map(|q| (*q, token)).collect();
                for _ in 0..GEN_TOKENS {
                    s.append_batch(&items)?;
                }
                Ok(started.elapsed())
            }))?;
    Ok(f64::from(n * GEN_TOKENS) / elapsed.as_secs_f64())
}

fn run() -> Result<(), BoxError> {
    let reps: usize = match std::env::var("OPTILLM_BENCH_REPS") {
        Ok(v) => v.trim().parse()?,
        Err(_) => 5,
    };
    // No prefix reuse unless asked: llama.cpp's tools evaluate every prompt whole, and the
    // prompt test repeats one prompt, which a kept prefix would turn into a cache hit.
    let prefix_cache = common::prefix_cache(0)?;
    let native = Native::load_with(prefix_cache)?;
    eprintln!(
        "{}: {} with {} threads, {reps} repetitions",
        native.prefix,
        native.path.display(),
        native.threads
    );
    let long = native.prompt_of(PROMPT_TOKENS)?;
    let seed = native.full_length_seed(GEN_TOKENS)?;
    let notes = native.long_story_words(LONG_PROMPT_TOKENS)?;
    eprintln!("decode seed {seed}");
    let mut r = Runs {
        n_wall: vec![Vec::new(); N_SAMPLES.len()],
        n_decode_tps: vec![Vec::new(); N_SAMPLES.len()],
        n_total_tps: vec![Vec::new(); N_SAMPLES.len()],
        n_tokens: vec![Vec::new(); N_SAMPLES.len()],
        raw_tps: vec![Vec::new(); N_SAMPLES.len()],
        ..Runs::default()
    };
    // One unmeasured pass over everything (caches, allocator, OpenMP threads).
    for rep in 0..=reps {
        let measured = rep > 0;
        let c = native.complete(long.clone())?;
        if c.usage.prompt_tokens != PROMPT_TOKENS {
            return Err(format!("prompt has {} tokens", c.usage.prompt_tokens).into());
        }
        if measured {
            r.prompt_tps
                .push(c.timings.prompt_tokens_per_second(&c.usage));
        }
        let c = native.complete(story(GEN_TOKENS, 1, seed))?;
        if measured {
            r.decode_tps
                .push(c.timings.decode_tokens_per_second(&c.usage));
            r.ttft_ms.push(
                c.timings
                    .time_to_first_token
                    .map_or(f64::NAN, |d| d.as_secs_f64() * 1e3),
            );
            r.story_prompt_tokens = c.usage.prompt_tokens;
        }
        for (i, n) in N_SAMPLES.into_iter().enumerate() {
            let started = Instant::now();
            let c = native.complete(story(GEN_TOKENS, n, seed))?;
            let wall = started.elapsed().as_secs_f64();
            if measured {
                r.n_wall[i].push(wall);
                r.n_decode_tps[i].push(c.timings.decode_tokens_per_second(&c.usage));
                r.n_total_tps[i].push(f64::from(c.usage.total()) / wall);
                r.n_tokens[i].push(f64::from(c.usage.completion_tokens));
            }
        }
        for (i, n) in N_SAMPLES.into_iter().enumerate() {
            let tps = raw_decode(&native, n)?;
            if measured {
                r.raw_tps[i].push(tps);
            }
        }
        let started = Instant::now();
        let mut tokens = 0;
        for i in 0..8 {
            tokens += native
                .complete(story(GEN_TOKENS, 1, seed + i))?
                .usage
                .completion_tokens;
        }
        if measured {
            r.separate_wall.push(started.elapsed().as_secs_f64());
            r.separate_tokens.push(f64::from(tokens));
        }
        let started = Instant::now();
        let c = native.complete(long_story(notes, GEN_TOKENS, 8, seed))?;
        if measured {
            r.long_n8_wall.push(started.elapsed().as_secs_f64());
            r.long_n8_tokens.push(f64::from(c.usage.completion_tokens));
        }
        let started = Instant::now();
        let mut tokens = 0;
        for i in 0..8 {
            tokens += native
                .complete(long_story(notes, GEN_TOKENS, 1, seed + i))?
                .usage
                .completion_tokens;
        }
        if measured {
            r.long_separate_wall.push(started.elapsed().as_secs_f64());
            r.long_separate_tokens.push(f64::from(tokens));
            eprintln!("repetition {rep}/{reps} done");
        }
    }
    report(&native, &r, prefix_cache);
    Ok(())
}

fn report(native: &Native, r: &Runs, prefix_cache: u32) {
    println!(
        "model: {}  threads: {}",
        native.path.display(),
        native.threads
    );
    println!();
    println!("| test | median | unit |");
    println!("|---|---:|---|");
    println!(
        "| pp{PROMPT_TOKENS} | {:.2} | prompt tok/s |",
        median(&r.prompt_tps)
    );
    println!(
        "| tg{GEN_TOKENS} | {:.2} | decode tok/s |",
        median(&r.decode_tps)
    );
    println!(
        "| time to first token ({} prompt tokens) | {:.1} | ms |",
        r.story_prompt_tokens,
        median(&r.ttft_ms)
    );
    println!();
    println!(
        "| n | generated tokens | wall s | aggregate decode tok/s (S_TG) | all tokens / wall (S) | raw decode tok/s |"
    );
    println!("|---:|---:|---:|---:|---:|---:|");
    let mut n_rows = Vec::new();
    for (i, n) in N_SAMPLES.into_iter().enumerate() {
        let row = json!({
            "n": n,
            "completion_tokens": median(&r.n_tokens[i]),
            "wall_s": median(&r.n_wall[i]),
            "decode_tps": median(&r.n_decode_tps[i]),
            "total_tps": median(&r.n_total_tps[i]),
            "raw_decode_tps": median(&r.raw_tps[i]),
            "wall_s_runs": r.n_wall[i],
            "decode_tps_runs": r.n_decode_tps[i],
            "raw_decode_tps_runs": r.raw_tps[i],
        });
        println!(
            "| {n} | {:.0} | {:.3} | {:.2} | {:.2} | {:.2} |",
            median(&r.n_tokens[i]),
            median(&r.n_wall[i]),
            median(&r.n_decode_tps[i]),
            median(&r.n_total_tps[i]),
            median(&r.raw_tps[i])
        );
        n_rows.push(row);
    }
    println!(
        "| 8 separate requests | {:.0} | {:.3} | | | |",
        median(&r.separate_tokens),
        median(&r.separate_wall)
    );
    println!(
        "\nn = 8 in one request / 8 separate requests, wall: {:.2} at the {}-token story prompt",
        median(&r.n_wall[N_SAMPLES.len() - 1]) / median(&r.separate_wall),
        r.story_prompt_tokens
    );
    println!();
    println!("| {LONG_PROMPT_TOKENS}-token prompt | generated tokens | wall s |");
    println!("|---|---:|---:|");
    println!(
        "| n = 8 in one request | {:.0} | {:.3} |",
        median(&r.long_n8_tokens),
        median(&r.long_n8_wall)
    );
    println!(
        "| 8 separate requests | {:.0} | {:.3} |",
        median(&r.long_separate_tokens),
        median(&r.long_separate_wall)
    );
    println!(
        "\nn = 8 in one request / 8 separate requests, wall: {:.2} at the {LONG_PROMPT_TOKENS}-token prompt (prefix cache: {})",
        median(&r.long_n8_wall) / median(&r.long_separate_wall),
        prefix_cache
    );
    let summary = json!({
        "model": native.path.display().to_string(),
        "threads": native.threads,
        "reps": r.prompt_tps.len(),
        "prompt_tps": median(&r.prompt_tps),
        "prompt_tps_runs": r.prompt_tps,
        "decode_tps": median(&r.decode_tps),
        "decode_tps_runs": r.decode_tps,
        "ttft_ms": median(&r.ttft_ms),
        "story_prompt_tokens": r.story_prompt_tokens,
        "n_samples": n_rows,
        "separate_8_wall_s": median(&r.separate_wall),
        "separate_8_wall_s_runs": r.separate_wall,
        "separate_8_tokens": median(&r.separate_tokens),
        "long_prompt_tokens": LONG_PROMPT_TOKENS,
        "prefix_cache": prefix_cache,
        "long_n8_wall_s": median(&r.long_n8_wall),
        "long_n8_wall_s_runs": r.long_n8_wall,
        "long_n8_tokens": median(&r.long_n8_tokens),
        "long_separate_8_wall_s": median(&r.long_separate_wall),
        "long_separate_8_wall_s_runs": r.long_separate_wall,
        "long_separate_8_tokens": median(&r.long_separate_tokens),
    });
    println!();
    println!("JSON {summary}");
}

/// Median of a list of numbers (the mean of the two middle ones for an even count).
fn median(values: &[f64]) -> f64 {
    let mut v: Vec<f64> = values.iter().copied().filter(|x| x.is_finite()).collect();
    if v.is_empty() {
        return f64::NAN;
    }
    v.sort_by(f64::total_cmp);
    let mid = v.len() / 2;
    if v.len() % 2 == 0 {
        (v[mid - 1] + v[mid]) / 2.0
    } else {
        v[mid]
    }
}

fn main() {
    if let Err(e) = run() {
        eprintln!("native_reference: {e}");
        std::process::exit(1);
    }
}
