//! The backend conformance suite (`suite.rs`: streaming, `n`, `max_tokens`, stop
//! sequences, cancellation on drop, context overflow, logprobs, a server that is down),
//! written once and run against every backend:
//! - the scripted mock of optillm-core;
//! - the native backend on SmolLM2-135M;
//! - this project's Ollama and OpenAI backends talking to `optillm serve` (in process,
//!   on loopback) serving that native model;
//! - the OpenAI backend talking to llama.cpp's own server (xllamacpp from PyPI), when
//!   `OPTILLM_XLLAMACPP_URL` names one (`scripts/test.sh` starts it); skipped otherwise.

#![allow(clippy::unwrap_used, clippy::expect_used, clippy::panic)]

#[path = "../common/mod.rs"]
mod common;
mod suite;

use std::sync::Arc;

use optillm::{Backend, OllamaBackend, OllamaConfig, OpenAiBackend, OpenAiConfig};
use optillm_core::mock::MockBackend;
use suite::{Expect, Overflow, Subject, cancelled_counter};

/// The native model's context is 4096 tokens (`common`): well past it.
const OVERFLOW_WORDS: usize = 6000;

/// The tests that use the native model take turns: each reads its `cancelled` counter.
static NATIVE: tokio::sync::Mutex<()> = tokio::sync::Mutex::const_new(());

/// A loopback port nothing listens on.
fn dead_url() -> String {
    let l = std::net::TcpListener::bind("127.0.0.1:0").unwrap();
    format!("http://127.0.0.1:{}", l.local_addr().unwrap().port())
}

fn remote(name: &'static str, backend: Arc<dyn Backend>, down: Arc<dyn Backend>) -> Subject {
    Subject {
        name,
        backend,
        expect: Expect {
            overflow: Overflow::BadRequest,
            overflow_words: OVERFLOW_WORDS,
            cancelled: Some(cancelled_counter(common::native())),
            down: Some(down),
            prefill: true,
        },
    }
}

#[tokio::test]
async fn the_scripted_mock() {
    let mock = MockBackend::new(|_, i| {
        Ok(format!(
            "Answer {i}: red, green and blue are three colours people often name."
        ))
    });
    let subject = Subject {
        name: "mock",
        backend: Arc::new(mock),
        expect: Expect {
            // A script has no context to overflow, and nothing runs on after a drop.
            overflow: Overflow::Unbounded,
            overflow_words: 0,
            cancelled: None,
            down: None,
            prefill: false,
        },
    };
    suite::run_all(&subject).await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn the_native_backend_on_smollm2() {
    let _turn = NATIVE.lock().await;
    let native = common::native();
    let subject = Subject {
        name: "native",
        backend: native.clone(),
        expect: Expect {
            overflow: Overflow::Typed,
            overflow_words: OVERFLOW_WORDS,
            cancelled: Some(cancelled_counter(native)),
            down: None,
            prefill: true,
        },
    };
    suite::run_all(&subject).await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn the_ollama_backend_to_optillm_serve() {
    let _turn = NATIVE.lock().await;
    let (url, _stop) = common::serve_native().await;
    let ollama = |url: String| {
        OllamaBackend::new(OllamaConfig::new(url, "smollm2-135m").with_max_retries(0)).unwrap()
    };
    let subject = remote(
        "ollama->optillm",
        Arc::new(ollama(url)),
        Arc::new(ollama(dead_url())),
    );
    suite::run_all(&subject).await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn the_openai_backend_to_optillm_serve() {
    let _turn = NATIVE.lock().await;
    let (url, _stop) = common::serve_native().await;
    let openai = |url: String| {
        let config = OpenAiConfig::new(format!("{url}/v1"), "smollm2-135m")
            .with_api_key_env("OPTILLM_TEST_UNSET_VARIABLE")
            .with_max_retries(0);
        OpenAiBackend::new(config).unwrap()
    };
    let subject = remote(
        "openai->optillm",
        Arc::new(openai(url)),
        Arc::new(openai(dead_url())),
    );
    suite::run_all(&subject).await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn the_openai_backend_to_llama_cpp_server() {
    let Ok(url) = std::env::var("OPTILLM_XLLAMACPP_URL") else {
        eprintln!("skipped: OPTILLM_XLLAMACPP_URL is not set (see scripts/xllamacpp-server.sh)");
        return;
    };
    let openai = |url: &str, model: &str| {
        let config = OpenAiConfig::new(format!("{}/v1", url.trim_end_matches('/')), model)
            .with_api_key_env("OPTILLM_XLLAMACPP_API_KEY")
            .with_max_retries(0);
        OpenAiBackend::new(config).unwrap()
    };
    let model = match std::env::var("OPTILLM_XLLAMACPP_MODEL") {
        Ok(m) => m,
        Err(_) => openai(&url, "probe").list_models().await.unwrap()[0]
            .id
            .clone(),
    };
    let subject = Subject {
        name: "openai->llama.cpp",
        backend: Arc::new(openai(&url, &model)),
        expect: Expect {
            // llama.cpp's refusal carries both counts, which the backend reads.
            overflow: Overflow::Typed,
            overflow_words: OVERFLOW_WORDS,
            // llama-server's cancellation is not observable from here.
            cancelled: None,
            down: Some(Arc::new(openai(&dead_url(), &model))),
            // This build of llama.cpp's server (xllamacpp, its built-in templates, no
            // Jinja) answers a final assistant message with a new turn ("The capital of
            // France is Paris."); llama-server prefills with its Jinja templates.
            prefill: false,
        },
    };
    suite::run_all(&subject).await;
}
