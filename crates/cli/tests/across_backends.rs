//! The same strategies, unchanged, over three backends: native llama.cpp, and this
//! project's Ollama and OpenAI backends talking to `optillm serve` (in process, on
//! loopback) which serves the same native model.

#![allow(clippy::unwrap_used, clippy::expect_used, clippy::panic)]

mod common;

use std::sync::Arc;

use optillm_core::strategy::{self, Budget, StrategyRequest};
use optillm_core::{Backend, ChatRequest, Sampling, spec, strategies};
use optillm_ollama::{OllamaBackend, OllamaConfig};
use optillm_openai::{OpenAiBackend, OpenAiConfig};

/// The native backend, and this project's Ollama and OpenAI backends to `optillm serve`
/// at `url` (which serves the same native model).
fn every_backend(url: &str) -> Vec<(&'static str, Arc<dyn Backend>)> {
    vec![
        ("native", common::native()),
        (
            "ollama-dialect",
            Arc::new(OllamaBackend::new(OllamaConfig::new(url, "smollm2-135m")).unwrap()),
        ),
        (
            "openai-dialect",
            Arc::new(
                OpenAiBackend::new(OpenAiConfig::new(format!("{url}/v1"), "smollm2-135m")).unwrap(),
            ),
        ),
    ]
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn strategies_run_unchanged_over_every_backend() {
    let (url, _stop) = common::serve_native().await;
    let backends = every_backend(&url);

    // Greedy decoding gives the same text whichever way the model is reached.
    let greedy = ChatRequest::user("What is the capital of France?").with_sampling(
        Sampling::default()
            .with_temperature(0.0)
            .with_max_tokens(24),
    );
    let mut texts = Vec::new();
    for (name, b) in &backends {
        let c = b
            .complete(greedy.clone())
            .await
            .unwrap_or_else(|e| panic!("{name}: {e}"));
        assert!(c.usage.prompt_tokens > 0, "{name}: prompt tokens");
        texts.push(c.text().to_string());
    }
    assert!(!texts[0].is_empty());
    assert!(
        texts.iter().all(|t| *t == texts[0]),
        "greedy texts differ: {texts:?}"
    );

    let mut request = StrategyRequest::user("What is 6 times 7? End with: The answer is N.");
    request.sampling = Sampling::default().with_max_tokens(40).with_seed(5);
    for spec_text in [
        "re2",
        "self_consistency(k=3)",
        "bon(n=2,rating_max_tokens=8)",
        "re2&moa(samples=2,critique_max_tokens=32)",
    ] {
        let parsed = spec::parse(spec_text).unwrap();
        let mut calls = Vec::new();
        for (name, b) in &backends {
            let approach = strategies::build_spec(&parsed).unwrap();
            let out = strategy::run(approach.as_ref(), b.clone(), &request, Budget::default())
                .await
                .unwrap_or_else(|e| panic!("{spec_text} over {name}: {e}"));
            assert!(
                !out.answer.trim().is_empty(),
                "{spec_text} over {name}: empty answer"
            );
            assert!(
                out.usage.completion_tokens > 0,
                "{spec_text} over {name}: no tokens"
            );
            calls.push(out.usage.calls);
        }
        // The strategy makes the same calls whatever the backend.
        assert!(
            calls.iter().all(|c| *c == calls[0]),
            "{spec_text}: calls {calls:?}"
        );
    }
}

/// `mixed_vote(calculator=true)` runs the chains' programs whichever way the model is
/// reached: natively by `calculator`'s decoding, over the two HTTP dialects by chat calls
/// that stop at the output fence and continue the assistant's message after the real
/// output.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn programs_run_over_every_backend() {
    let (url, _stop) = common::serve_native().await;
    let backends = every_backend(&url);
    let spec = "mixed_vote(program=false,samples=0,calculator=true)";
    let approach = strategies::build_spec(&spec::parse(spec).unwrap()).unwrap();
    for (name, backend) in backends {
        let out = strategy::run(
            approach.as_ref(),
            backend,
            &common::program_request(),
            Budget::default(),
        )
        .await
        .unwrap();
        let blocks = common::output_blocks(&out.answer);
        assert!(!blocks.is_empty(), "{name}: no program ran: {}", out.answer);
        for (code, written) in blocks {
            let printed = optillm_core::strategies::calculator::program_output(&code);
            assert_eq!(written, printed, "{name}: {}", out.answer);
        }
    }
}
