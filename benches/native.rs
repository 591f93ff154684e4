//! Criterion benches of the native backend, named `native/<model>/<group>/...`.
//!
//! Run: `cargo bench -p optillm --bench native` (model from
//! `OPTILLM_BENCH_MODEL`, threads from `OPTILLM_BENCH_THREADS`, default 2; see
//! `benches/common/mod.rs` and docs/benchmarks.md).
//!
//! - `time_to_first_token`: wall time of a one-token completion of a short prompt.
//! - `prompt_256`: the backend's own prompt-evaluation time of a 256-token prompt
//!   (the count is checked against `usage`); throughput in prompt tokens.
//! - `decode_128`: the backend's decode time of 128 sampled tokens (a seed found to run
//!   the full length); throughput in generated tokens.
//! - `n_samples/{1,2,4,8}`: wall time of one request for n samples of 128 tokens
//!   (one prompt evaluation, batched decoding); throughput in the generated tokens
//!   measured beforehand with the same seeds. `n_samples/separate_8`: 8 requests of
//!   one sample each, one after the other, for comparison.
#![allow(clippy::expect_used)] // a bench, like a test, stops on failure

mod common;

use std::time::Duration;

use common::{GEN_TOKENS, N_SAMPLES, Native, PROMPT_TOKENS, story};
use criterion::{BenchmarkId, Criterion, SamplingMode, Throughput};
use optillm::{ChatRequest, Sampling};

fn bench_native(c: &mut Criterion) {
    let native = Native::load().expect("load the bench model");
    let prefix = native.prefix.clone();
    eprintln!(
        "{prefix}: {} with {} threads",
        native.path.display(),
        native.threads
    );

    // Time to first token: one generated token of a short prompt, wall time.
    {
        let request = ChatRequest::user("Say hello.")
            .with_sampling(Sampling::default().with_temperature(0.0).with_max_tokens(1));
        let mut group = c.benchmark_group(format!("{prefix}/time_to_first_token"));
        group.sampling_mode(SamplingMode::Flat);
        group.bench_function("short_prompt", |b| {
            b.iter(|| native.complete(request.clone()).expect("completion"))
        });
        group.finish();
    }

    // Prompt throughput: the backend's prompt-evaluation time of 256 tokens.
    {
        let request = native.prompt_of(PROMPT_TOKENS).expect("256-token prompt");
        let mut group = c.benchmark_group(format!("{prefix}/prompt_tokens_per_second"));
        group.sampling_mode(SamplingMode::Flat);
        group.throughput(Throughput::Elements(u64::from(PROMPT_TOKENS)));
        group.bench_function(BenchmarkId::from_parameter(PROMPT_TOKENS), |b| {
            b.iter_custom(|iters| {
                let mut spent = Duration::ZERO;
                for _ in 0..iters {
                    let c = native.complete(request.clone()).expect("completion");
                    assert_eq!(c.usage.prompt_tokens, PROMPT_TOKENS, "prompt size drifted");
                    spent += c.timings.prompt_eval;
                }
                spent
            })
        });
        group.finish();
    }

    // Decode throughput: the backend's decode time of 128 sampled tokens.
    let seed = native
        .full_length_seed(GEN_TOKENS)
        .expect("a seed that decodes 128 tokens");
    {
        let request = story(GEN_TOKENS, 1, seed);
        let mut group = c.benchmark_group(format!("{prefix}/decode_tokens_per_second"));
        group.sampling_mode(SamplingMode::Flat);
        group.throughput(Throughput::Elements(u64::from(GEN_TOKENS)));
        group.bench_function(BenchmarkId::from_parameter(GEN_TOKENS), |b| {
            b.iter_custom(|iters| {
                let mut spent = Duration::ZERO;
                for _ in 0..iters {
                    let c = native.complete(request.clone()).expect("completion");
                    assert_eq!(
                        c.usage.completion_tokens, GEN_TOKENS,
                        "the seed stopped early"
                    );
                    spent += c.timings.decode;
                }
                spent
            })
        });
        group.finish();
    }

    // n samples of 128 tokens from one prompt, wall time per request.
    {
        let mut group = c.benchmark_group(format!("{prefix}/n_samples"));
        group.sampling_mode(SamplingMode::Flat);
        for n in N_SAMPLES {
            let request = story(GEN_TOKENS, n, seed);
            let tokens = native
                .complete(request.clone())
                .expect("completion")
                .usage
                .completion_tokens;
            group.throughput(Throughput::Elements(u64::from(tokens)));
            group.bench_function(BenchmarkId::from_parameter(n), |b| {
                b.iter(|| native.complete(request.clone()).expect("completion"))
            });
        }
        let separate: Vec<ChatRequest> = (0..8).map(|i| story(GEN_TOKENS, 1, seed + i)).collect();
        let tokens: u32 = separate
            .iter()
            .map(|r| {
                native
                    .complete(r.clone())
                    .expect("completion")
                    .usage
                    .completion_tokens
            })
            .sum();
        group.throughput(Throughput::Elements(u64::from(tokens)));
        group.bench_function("separate_8", |b| {
            b.iter(|| {
                for r in &separate {
                    native.complete(r.clone()).expect("completion");
                }
            })
        });
        group.finish();
    }
}

fn main() {
    // Small samples: a full run takes a few minutes; command-line flags still win.
    let mut c = Criterion::default()
        .sample_size(10)
        .warm_up_time(Duration::from_millis(500))
        .measurement_time(Duration::from_secs(5))
        .configure_from_args();
    bench_native(&mut c);
    c.final_summary();
}
