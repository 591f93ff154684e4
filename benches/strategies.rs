//! Strategy overhead on the mock backend, named `mock/<approach>/...`: the cost of the
//! strategy machinery itself (prompt building, the `Ctx` bookkeeping and trace, answer
//! extraction and voting), with a backend that answers instantly.
//!
//! Run: `cargo bench -p optillm --bench strategies` (no model, no llama.cpp).
//! `mock/none/direct_call` is one plain `Backend::complete` for comparison; the
//! throughput of each approach is in backend calls, read from the run's usage.
#![allow(clippy::expect_used)] // a bench, like a test, stops on failure

use std::sync::Arc;
use std::time::Duration;

use criterion::{Criterion, Throughput};
use optillm::strategies::{Params, build};
use optillm::strategy::run;
use optillm::{Backend, Budget, ChatRequest, StrategyRequest};
use optillm_core::mock::MockBackend;

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

fn main() {
    let mut c = Criterion::default()
        .sample_size(10)
        .warm_up_time(Duration::from_millis(300))
        .measurement_time(Duration::from_secs(2))
        .configure_from_args();
    bench_strategies(&mut c);
    c.final_summary();
}
