//! Strategy overhead on the mock backend, named `mock/<approach>/...`: the cost of the
//! strategy machinery itself (prompt building, the `Ctx` bookkeeping and trace, answer
//! extraction and voting), with a backend that answers instantly.
//!
//! Run: `cargo bench -p optillm --bench strategies` (no model, no llama.cpp).
//! `mock/none/direct_call` is one plain `Backend::complete` for comparison; the
//! throughput of each approach is in backend calls, read from the run's usage.
//! `sampler/...`: one draw of the token-level strategies' sampler over a vocabulary of
//! Qwen2.5's size (151,936 logits), peaked as a model's usually are, and flat.
#![allow(clippy::expect_used)] // a bench, like a test, stops on failure

use std::sync::Arc;
use std::time::Duration;

use criterion::{Criterion, Throughput};
use optillm::strategies::{Params, build};
use optillm::strategy::run;
use optillm::{Backend, Budget, ChatRequest, StrategyRequest};
use optillm_core::mock::MockBackend;
use optillm_core::strategies::sampler::{Rng, SamplerConfig, sample};

const ANSWER: &str =
    "Each box holds 6 apples and there are 7 boxes, so 6 * 7 = 42. The answer is 42.";
const QUESTION: &str = "A shop has 7 boxes with 6 apples in each. How many apples are there?";

fn bench_strategies(c: &mut Criterion) {
    let rt = tokio::runtime::Builder::new_current_thread()
        .enable_all()
        .build()
        .expect("tokio runtime");
    let backend: Arc<dyn Backend> = Arc::new(MockBackend::constant(ANSWER));
    let request = StrategyRequest::user(QUESTION);

    let mut group = c.benchmark_group("mock/none");
    group.throughput(Throughput::Elements(1));
    group.bench_function("direct_call", |b| {
        b.iter(|| {
            rt.block_on(backend.complete(ChatRequest::user(QUESTION)))
                .expect("mock completion")
        })
    });
    group.finish();

    for (slug, params) in [
        ("none", Params::new()),
        ("self_consistency", Params::new()),
        ("moa", Params::new()),
    ] {
        let strategy = build(slug, &params).expect("approach from its defaults");
        let calls = rt
            .block_on(run(
                strategy.as_ref(),
                backend.clone(),
                &request,
                Budget::default(),
            ))
            .expect("strategy run")
            .usage
            .calls;
        let mut group = c.benchmark_group(format!("mock/{slug}"));
        group.throughput(Throughput::Elements(u64::from(calls)));
        group.bench_function("defaults", |b| {
            b.iter(|| {
                let outcome = rt
                    .block_on(run(
                        strategy.as_ref(),
                        backend.clone(),
                        &request,
                        Budget::default(),
                    ))
                    .expect("strategy run");
                assert!(
                    outcome.answer.contains("42"),
                    "wrong answer: {}",
                    outcome.answer
                );
                outcome
            })
        });
        group.finish();
    }
}

fn bench_sampler(c: &mut Criterion) {
    let mut source = Rng::new(1);
    // Roughly bell-shaped noise (a sum of three uniforms), spread as given.
    let mut noise = |spread: f32| -> Vec<f32> {
        (0..151_936)
            .map(|_| (source.next_f32() + source.next_f32() + source.next_f32() - 1.5) * spread)
            .collect()
    };
    let mut peaked = noise(5.0);
    for (token, logit) in [(17, 18.0), (99, 17.0), (1234, 16.5), (5000, 15.0)] {
        peaked[token] = logit;
    }
    let flat = noise(2.0);
    let mut group = c.benchmark_group("sampler");
    for (name, logits) in [("peaked", &peaked), ("flat", &flat)] {
        for (label, top_p) in [("t0.6", 1.0), ("t0.6_top_p0.95", 0.95)] {
            let config = SamplerConfig {
                temperature: 0.6,
                top_p,
                ..SamplerConfig::greedy()
            };
            let mut rng = Rng::new(7);
            group.bench_function(format!("{name}/{label}"), |b| {
                b.iter(|| sample(logits, &config, &mut rng))
            });
        }
    }
    group.finish();
}

fn main() {
    let mut c = Criterion::default()
        .sample_size(10)
        .warm_up_time(Duration::from_millis(300))
        .measurement_time(Duration::from_secs(2))
        .configure_from_args();
    bench_strategies(&mut c);
    bench_sampler(&mut c);
    c.final_summary();
}
