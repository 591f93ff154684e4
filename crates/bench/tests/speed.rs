//! The speed table on a backend with known timing: tokens at fixed intervals.

#![allow(clippy::unwrap_used, clippy::expect_used, clippy::panic)]

use std::sync::atomic::{AtomicUsize, Ordering};
use std::time::Duration;

use async_trait::async_trait;
use optillm_bench::{SpeedOptions, SpeedReport, measure_speed};
use optillm_core::{
    Backend, BackendError, Capabilities, ChatRequest, Choice, Completion, CompletionStream,
    FinishReason, StreamEvent, Timings, Usage, stream_channel,
};

/// First token after 60 ms, then one every 15 ms; reports 40 ms of prompt evaluation
/// for its 20 prompt tokens.
struct Paced {
    calls: AtomicUsize,
}

const FIRST: Duration = Duration::from_millis(60);
const STEP: Duration = Duration::from_millis(15);

#[async_trait]
impl Backend for Paced {
    fn model(&self) -> &str {
        "paced"
    }
    fn capabilities(&self) -> Capabilities {
        Capabilities::default()
    }
    async fn stream(&self, request: ChatRequest) -> Result<CompletionStream, BackendError> {
        self.calls.fetch_add(1, Ordering::SeqCst);
        let n = request.sampling.max_tokens.unwrap_or(16);
        assert_eq!(request.sampling.temperature, Some(0.0), "greedy");
        let (tx, stream) = stream_channel();
        tokio::spawn(async move {
            tokio::time::sleep(FIRST).await;
            let mut text = String::new();
            for i in 0..n {
                if i > 0 {
                    tokio::time::sleep(STEP).await;
                }
                let piece = format!("w{i} ");
                text.push_str(&piece);
                tx.send(Ok(StreamEvent::Delta {
                    index: 0,
                    text: piece,
                    logprob: None,
                }))
                .await;
            }
            tx.send(Ok(StreamEvent::Done(Completion {
                model: "paced".into(),
                choices: vec![Choice {
                    index: 0,
                    text,
                    finish_reason: FinishReason::Length,
                    logprobs: None,
                    completion_tokens: n,
                }],
                usage: Usage {
                    prompt_tokens: 20,
                    completion_tokens: n,
                },
                timings: Timings {
                    prompt_eval: Duration::from_millis(40),
                    ..Timings::default()
                },
            })))
            .await;
        });
        Ok(stream)
    }
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn measures_first_token_per_token_and_throughput() {
    let backend = Paced {
        calls: AtomicUsize::new(0),
    };
    let options = SpeedOptions {
        max_tokens: 11,
        warmup: 1,
        runs: 3,
        ..SpeedOptions::default()
    };
    let report = measure_speed(&backend, Duration::from_millis(1234), &options)
        .await
        .unwrap();
    assert_eq!(
        backend.calls.load(Ordering::SeqCst),
        4,
        "1 warm-up + 3 runs"
    );
    assert_eq!(report.runs.len(), 3);
    assert_eq!(report.model, "paced");
    assert_eq!(report.load_ms, 1234.0);
    assert_eq!((report.prompt_tokens, report.completion_tokens), (20, 11));
    // Sleeps only ever overshoot; a busy machine may add a lot.
    assert!(
        (60.0..200.0).contains(&report.first_token_ms),
        "{}",
        report.first_token_ms
    );
    let per_token = report.per_token_ms.unwrap();
    assert!((15.0..45.0).contains(&per_token), "{per_token}");
    let decode = report.decode_tps.unwrap();
    assert!(
        (1000.0 / 45.0..=1000.0 / 15.0).contains(&decode),
        "{decode}"
    );
    // The backend's own prompt time: 20 tokens in 40 ms.
    assert!((report.prompt_tps.unwrap() - 500.0).abs() < 1e-6);
    assert!(report.peak_rss_bytes.is_some_and(|b| b > 0) || !cfg!(target_os = "linux"));

    let md = report.to_markdown();
    assert!(md.starts_with("| model | load ms | first token ms | per token ms |"));
    assert!(md.contains("| paced | 1234 | "));
    assert!(md.contains("| 500.0 |"));
    assert!(md.contains("Medians of 3 runs"));
    let back: SpeedReport = serde_json::from_str(&report.to_json().unwrap()).unwrap();
    assert_eq!((&back.model, back.runs.len()), (&report.model, 3));
    assert!((back.first_token_ms - report.first_token_ms).abs() < 1e-9);
    assert_eq!(back.peak_rss_bytes, report.peak_rss_bytes);
    let table = SpeedReport::markdown_table(&[report.clone(), report]);
    assert_eq!(table.lines().count(), 4);
}

#[tokio::test]
async fn rejects_zero_runs() {
    let backend = Paced {
        calls: AtomicUsize::new(0),
    };
    let options = SpeedOptions {
        runs: 0,
        ..SpeedOptions::default()
    };
    assert!(
        measure_speed(&backend, Duration::ZERO, &options)
            .await
            .is_err()
    );
    assert_eq!(backend.calls.load(Ordering::SeqCst), 0);
}
