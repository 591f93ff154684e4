//! The native backend on the real SmolLM2-135M model.
//!
//! The model comes from `OPTILLM_TEST_MODEL` (a GGUF path) or else from the project's
//! model cache, pulled there on first use (`optillm pull smollm2-135m` does the same).

#![allow(clippy::unwrap_used, clippy::expect_used, clippy::panic)]

mod common;

use std::sync::atomic::Ordering;
use std::sync::{Arc, OnceLock};

use common::model_path;
use futures::StreamExt;
use optillm_core::{
    Backend, BackendError, ChatRequest, FinishReason, Message, Sampling, StreamEvent, run_token_job,
};
use optillm_llama::{LlamaBackend, LlamaConfig, LlamaError};

fn own_backend() -> LlamaBackend {
    let config = LlamaConfig {
        n_ctx: Some(2048),
        n_threads: Some(2),
        ..LlamaConfig::default()
    };
    LlamaBackend::load(model_path(), config).expect("load model")
}

/// The backend most tests share.
fn backend() -> Arc<LlamaBackend> {
    static BACKEND: OnceLock<Arc<LlamaBackend>> = OnceLock::new();
    BACKEND.get_or_init(|| Arc::new(own_backend())).clone()
}

fn ask(prompt: &str, sampling: Sampling) -> ChatRequest {
    ChatRequest::user(prompt).with_sampling(sampling)
}

#[tokio::test]
async fn same_seed_gives_same_text() {
    let b = backend();
    let s = Sampling::default()
        .with_temperature(0.9)
        .with_seed(42)
        .with_max_tokens(24);
    let a = b
        .complete(ask("Tell me about cats.", s.clone()))
        .await
        .unwrap();
    let c = b.complete(ask("Tell me about cats.", s)).await.unwrap();
    assert!(!a.text().is_empty());
    assert_eq!(a.text(), c.text());
    assert!(a.usage.prompt_tokens > 5);
    assert!(a.timings.time_to_first_token.is_some());
}

#[tokio::test]
async fn n_samples_share_one_prompt_and_differ() {
    let b = backend();
    let s = Sampling::default()
        .with_temperature(1.0)
        .with_seed(7)
        .with_max_tokens(20);
    let one = b.complete(ask("Name a colour.", s.clone())).await.unwrap();
    let four = b
        .complete(ask("Name a colour.", s).with_n(4))
        .await
        .unwrap();
    assert_eq!(four.choices.len(), 4);
    for (i, c) in four.choices.iter().enumerate() {
        assert_eq!(c.index as usize, i);
        assert!(!c.text.is_empty());
    }
    // Sample 0 uses the same seed as the single run: same text.
    assert_eq!(four.choices[0].text, one.text());
    let distinct: std::collections::HashSet<&str> =
        four.choices.iter().map(|c| c.text.as_str()).collect();
    assert!(distinct.len() >= 2, "samples should differ: {distinct:?}");
    // The prompt was evaluated once for all four samples.
    assert_eq!(four.usage.prompt_tokens, one.usage.prompt_tokens);
    assert_eq!(
        four.usage.completion_tokens,
        four.choices
            .iter()
            .map(|c| c.completion_tokens)
            .sum::<u32>()
    );
}

#[tokio::test]
async fn per_stream_and_shared_cache_decode_the_same_samples() {
    // n samples of bounded length decode in the per-stream context when they fit
    // (n x (prompt + max_tokens) within n_ctx = 2048), else in the shared cache; greedy
    // samples must read the same either way, and the same as a single run. A backend of
    // its own, so that no other test's request moves the counter.
    let b = own_backend();
    let greedy = Sampling::default()
        .with_temperature(0.0)
        .with_max_tokens(40);
    let prompt = "Write one sentence about the sea.";
    let one = b.complete(ask(prompt, greedy.clone())).await.unwrap();
    let before = b.stats().stream_rounds.load(Ordering::Relaxed);
    let three = b
        .complete(ask(prompt, greedy.clone()).with_n(3))
        .await
        .unwrap();
    let after_three = b.stats().stream_rounds.load(Ordering::Relaxed);
    // 8 x (prompt + 300) needs more cells than the context has: shared cache.
    let eight = b
        .complete(ask(prompt, greedy.with_max_tokens(300)).with_n(8))
        .await
        .unwrap();
    let after_eight = b.stats().stream_rounds.load(Ordering::Relaxed);
    assert_eq!(
        after_three,
        before + 1,
        "n=3 of 40 tokens fits the per-stream context"
    );
    assert_eq!(after_eight, after_three, "n=8 of 300 tokens does not");
    assert_eq!(three.choices.len(), 3);
    assert_eq!(eight.choices.len(), 8);
    for c in &three.choices {
        assert_eq!(c.text, one.text());
    }
    for c in &eight.choices {
        assert!(
            c.text.starts_with(one.text().trim_end()),
            "{:?} vs {:?}",
            c.text,
            one.text()
        );
    }
}

#[tokio::test]
async fn max_tokens_and_stop_sequences_end_with_the_right_reason() {
    let b = backend();
    let greedy = Sampling::default().with_temperature(0.0);
    let short = b
        .complete(ask(
            "Write a long story about a dragon.",
            greedy.clone().with_max_tokens(5),
        ))
        .await
        .unwrap();
    assert_eq!(short.choices[0].finish_reason, FinishReason::Length);
    assert_eq!(short.choices[0].completion_tokens, 5);

    let full = b
        .complete(ask(
            "Write a long story about a dragon.",
            greedy.clone().with_max_tokens(40),
        ))
        .await
        .unwrap();
    let text = full.text().to_string();
    // Stop on the second word of the greedy text.
    let word = text.split_whitespace().nth(1).unwrap().to_string();
    let stopped = b
        .complete(ask(
            "Write a long story about a dragon.",
            greedy.with_max_tokens(40).with_stop(word.clone()),
        ))
        .await
        .unwrap();
    assert_eq!(stopped.choices[0].finish_reason, FinishReason::StopSequence);
    assert!(!stopped.text().contains(&word));
    assert!(text.starts_with(stopped.text()));
}

#[tokio::test]
async fn ends_on_end_of_text() {
    let b = backend();
    let c = b
        .complete(ask(
            "What is 2+2?",
            Sampling::default()
                .with_temperature(0.0)
                .with_max_tokens(200),
        ))
        .await
        .unwrap();
    assert_eq!(c.choices[0].finish_reason, FinishReason::EndOfText);
    assert!(c.choices[0].completion_tokens < 200);
}

#[tokio::test]
async fn logprobs_are_sane() {
    let b = backend();
    let c = b
        .complete(
            ask(
                "What is 2+2?",
                Sampling::default().with_temperature(0.0).with_max_tokens(8),
            )
            .with_logprobs(3),
        )
        .await
        .unwrap();
    let choice = &c.choices[0];
    let lps = choice.logprobs.as_ref().unwrap();
    assert_eq!(lps.len() as u32, choice.completion_tokens);
    for lp in lps {
        assert!(lp.logprob <= 0.0 && lp.logprob.is_finite());
        assert_eq!(lp.top.len(), 3);
        assert!(lp.top.windows(2).all(|w| w[0].logprob >= w[1].logprob));
        // Greedy: the chosen token is the most likely one.
        assert_eq!(lp.token, lp.top[0].token);
        assert!((lp.logprob - lp.top[0].logprob).abs() < 1e-4);
    }
    let joined: String = lps.iter().map(|l| l.token.as_str()).collect();
    assert_eq!(joined, choice.text);
}

#[tokio::test]
async fn streamed_deltas_add_up_to_the_text() {
    let b = backend();
    let mut stream = b
        .stream(ask(
            "Say hello in French and Japanese.",
            Sampling::default()
                .with_temperature(0.0)
                .with_max_tokens(30),
        ))
        .await
        .unwrap();
    let mut text = String::new();
    let mut done = None;
    while let Some(e) = stream.next().await {
        match e.unwrap() {
            StreamEvent::Delta { text: t, .. } => text.push_str(&t),
            StreamEvent::Done(c) => done = Some(c),
        }
    }
    assert_eq!(done.unwrap().text(), text);
}

#[tokio::test]
async fn prompt_longer_than_context_is_a_typed_error() {
    let b = backend();
    let long = "word ".repeat(3000);
    let err = b
        .complete(ChatRequest::new(vec![Message::user(long)]))
        .await
        .unwrap_err();
    match err {
        BackendError::ContextOverflow {
            prompt_tokens,
            context_length,
        } => {
            assert_eq!(context_length, 2048);
            assert!(prompt_tokens > 2048);
        }
        other => panic!("expected ContextOverflow, got {other:?}"),
    }
    // More messages than the context has tokens: refused before the chat template.
    let many = vec![Message::user("a"); 2048];
    let err = b.complete(ChatRequest::new(many)).await.unwrap_err();
    match err {
        BackendError::InvalidRequest(m) => assert!(m.contains("2048 messages"), "{m}"),
        other => panic!("expected InvalidRequest, got {other:?}"),
    }
    // The backend still works afterwards.
    let ok = b
        .complete(ask("Hi", Sampling::default().with_max_tokens(3)))
        .await
        .unwrap();
    assert!(!ok.choices.is_empty());
}

/// A backend of its own whose KV cache starts at `start` cells and grows up to `n_ctx`.
fn sized_backend(n_ctx: Option<u32>, start: Option<u32>) -> LlamaBackend {
    let config = LlamaConfig {
        n_ctx,
        n_ctx_start: start,
        n_threads: Some(2),
        ..LlamaConfig::default()
    };
    LlamaBackend::load(model_path(), config).expect("load model")
}

#[tokio::test]
async fn the_cache_starts_small_and_grows_to_hold_a_long_prompt() {
    let b = sized_backend(None, None);
    // The whole trained context (8192) is available; 1,024 cells are allocated.
    assert_eq!(b.n_ctx(), 8192);
    assert_eq!(b.context_cells(), optillm_llama::N_CTX_START);
    let long = format!(
        "{}\nHow many times is the word repeated?",
        "word ".repeat(1500)
    );
    let c = b
        .complete(ChatRequest::user(long).with_sampling(Sampling::default().with_max_tokens(4)))
        .await
        .unwrap();
    assert!(c.usage.prompt_tokens > 1500, "{:?}", c.usage);
    assert!(!c.choices.is_empty());
    assert_eq!(b.context_cells(), 2048);
    assert_eq!(b.stats().context_grown.load(Ordering::Relaxed), 1);
}

#[tokio::test]
async fn a_cache_grown_while_decoding_gives_the_text_of_one_allocated_up_front() {
    let grown = sized_backend(Some(512), Some(256));
    let fixed = sized_backend(Some(512), Some(512));
    assert_eq!(grown.context_cells(), 256);
    let prompt = "Write a long story about a dragon who learns to bake bread, step by step.";
    let greedy = Sampling::default().with_temperature(0.0);
    let sampled = Sampling::default().with_temperature(0.8).with_seed(3);
    for (sampling, n) in [(greedy, 1), (sampled, 2)] {
        // No max_tokens: the cache is sized for the prompt and grows while decoding.
        let request = ChatRequest::user(prompt).with_sampling(sampling).with_n(n);
        let a = grown.complete(request.clone()).await.unwrap();
        let b = fixed.complete(request).await.unwrap();
        assert!(
            a.usage.prompt_tokens + a.choices[0].completion_tokens > 256,
            "the answer must outgrow the first 256 cells: {:?}",
            a.usage
        );
        assert_eq!(a.choices.len(), b.choices.len());
        for (x, y) in a.choices.iter().zip(&b.choices) {
            assert_eq!(x.text, y.text);
            assert_eq!(x.finish_reason, y.finish_reason);
        }
    }
    assert!(grown.stats().context_grown.load(Ordering::Relaxed) >= 1);
    assert_eq!(grown.context_cells(), 512);
    assert_eq!(fixed.stats().context_grown.load(Ordering::Relaxed), 0);
}

#[tokio::test]
async fn a_token_session_grows_the_cache_as_it_appends() {
    let grown = sized_backend(Some(512), Some(256));
    let fixed = sized_backend(Some(512), Some(512));
    async fn walk(b: &LlamaBackend) -> Result<(Vec<f32>, Vec<u32>), BackendError> {
        run_token_job(b, ChatRequest::user("Count to one hundred."), |s| {
            let mut remaining = Vec::new();
            for _ in 0..300 {
                let logits = s.logits(0)?;
                let best =
                    optillm_core::token::top_k(&optillm_core::token::softmax(&logits), 1)[0].0;
                s.append(0, &[best])?;
                remaining.push(s.remaining(0));
            }
            Ok((s.logits(0)?, remaining))
        })
        .await
    }
    let (a, remaining) = walk(&grown).await.unwrap();
    let (b, _) = walk(&fixed).await.unwrap();
    // Remaining room counts against the limit, not the cells allocated now.
    assert_eq!(remaining[0] - remaining[299], 299);
    assert!(remaining[299] < 512 - 300);
    assert!(a.iter().zip(&b).all(|(x, y)| (x - y).abs() < 1e-3));
    // The token lane's context grew; the generation rounds' one is left as it was.
    assert_eq!(grown.stats().token_cells.load(Ordering::Relaxed), 512);
    assert_eq!(grown.context_cells(), 256);
}

#[tokio::test]
async fn an_idle_worker_frees_the_cache_requests_grew() {
    let config = LlamaConfig {
        n_ctx: Some(2048),
        n_ctx_start: Some(256),
        n_threads: Some(2),
        // Whole evaluations, so the text after the release is comparable to the bit.
        prefix_cache: 0,
        release_after: Some(std::time::Duration::from_millis(100)),
        ..LlamaConfig::default()
    };
    let b = LlamaBackend::load(model_path(), config).expect("load model");
    let stats = b.stats();
    assert_eq!(b.context_cells(), 256);
    let long = ChatRequest::user(format!("{}\nHow many words?", "word ".repeat(400)))
        .with_sampling(Sampling::default().with_temperature(0.0).with_max_tokens(8));
    let before = b.complete(long.clone()).await.unwrap();
    assert!(before.usage.prompt_tokens > 256, "{:?}", before.usage);
    let samples = ChatRequest::user("Name a colour.")
        .with_sampling(
            Sampling::default()
                .with_temperature(0.8)
                .with_seed(1)
                .with_max_tokens(8),
        )
        .with_n(2);
    assert_eq!(b.complete(samples).await.unwrap().choices.len(), 2);
    // Whatever was grown is freed once the worker has been idle for 100 ms; waiting
    // up to 30 s leaves room for a loaded machine.
    let freed = || {
        b.context_cells() == 256
            && stats.stream_cells.load(Ordering::Relaxed) == 0
            && stats.idle_releases.load(Ordering::Relaxed) >= 1
    };
    let deadline = std::time::Instant::now() + std::time::Duration::from_secs(30);
    while !freed() && std::time::Instant::now() < deadline {
        tokio::time::sleep(std::time::Duration::from_millis(20)).await;
    }
    assert!(
        freed(),
        "cells {}, stream cells {}, releases {}",
        b.context_cells(),
        stats.stream_cells.load(Ordering::Relaxed),
        stats.idle_releases.load(Ordering::Relaxed)
    );
    // The next request grows it again and answers as before.
    let after = b.complete(long).await.unwrap();
    assert_eq!(after.choices[0].text, before.choices[0].text);
    assert!(b.context_cells() > 256);
}

/// A backend that evaluates every prompt whole (`prefix_cache: 0`), to compare against.
fn no_reuse_backend() -> LlamaBackend {
    let config = LlamaConfig {
        n_ctx: Some(2048),
        prefix_cache: 0,
        n_threads: Some(2),
        ..LlamaConfig::default()
    };
    LlamaBackend::load(model_path(), config).expect("load model")
}

#[tokio::test]
async fn a_prompt_started_from_a_kept_prefix_gives_the_text_of_a_whole_evaluation() {
    let reusing = sized_backend(Some(2048), None);
    let whole = no_reuse_backend();
    let system = "You are a careful assistant who answers in one short sentence. ".repeat(12);
    let ask = |q: &str, sampling: Sampling| {
        ChatRequest::new(vec![Message::system(system.clone()), Message::user(q)])
            .with_sampling(sampling)
    };
    let greedy = Sampling::default()
        .with_temperature(0.0)
        .with_max_tokens(24);
    for b in [&reusing, &whole] {
        b.complete(ask("What is 2+2?", greedy.clone()))
            .await
            .unwrap();
    }
    // The first run starts from the system prompt of the one before, the second from the
    // whole of the first's prompt. Greedy text is the same. A seeded sample is not
    // asserted: llama.cpp computes a prompt's rest with other kernels than the whole
    // prompt (its CPU attention is tiled from 32 queries up), so the logits agree to about
    // 1e-3 (the next test), not to the bit, and a sample can flip where two tokens nearly
    // tie (llama.cpp's server says the same of its `cache_prompt`).
    for _ in 0..2 {
        let a = reusing
            .complete(ask("Name a colour.", greedy.clone()))
            .await
            .unwrap();
        let b = whole
            .complete(ask("Name a colour.", greedy.clone()))
            .await
            .unwrap();
        assert_eq!(a.text(), b.text());
        assert_eq!(a.usage, b.usage, "prompt tokens count the reused ones too");
    }
    let stat = |b: &LlamaBackend, f: fn(&optillm_llama::Stats) -> &std::sync::atomic::AtomicU64| {
        f(b.stats()).load(Ordering::Relaxed)
    };
    assert_eq!(stat(&reusing, |s| &s.prefix_hits), 2);
    assert!(stat(&reusing, |s| &s.prefix_tokens_reused) > 2 * 100);
    assert_eq!(stat(&whole, |s| &s.prefix_hits), 0);
    assert_eq!(
        stat(&reusing, |s| &s.prompt_tokens_evaluated)
            + stat(&reusing, |s| &s.prefix_tokens_reused),
        stat(&whole, |s| &s.prompt_tokens_evaluated)
    );
}

#[tokio::test]
async fn a_next_turn_starts_after_the_kept_reply() {
    // The next turn of a conversation quotes the reply: its prompt starts after the
    // reply's cells, kept with the prompt, and greedy text is that of a whole evaluation.
    let reusing = sized_backend(Some(2048), None);
    let whole = no_reuse_backend();
    let greedy = Sampling::default()
        .with_temperature(0.0)
        .with_max_tokens(32);
    let first = vec![Message::user("Name three fruits.")];
    let mut runs = Vec::new();
    for b in [&reusing, &whole] {
        let reply = b
            .complete(ChatRequest::new(first.clone()).with_sampling(greedy.clone()))
            .await
            .unwrap();
        let before = b.stats().prefix_tokens_reused.load(Ordering::Relaxed);
        let mut next = first.clone();
        next.push(Message::assistant(reply.text()));
        next.push(Message::user("Which of them is red?"));
        let second = b
            .complete(ChatRequest::new(next).with_sampling(greedy.clone()))
            .await
            .unwrap();
        let reused = b.stats().prefix_tokens_reused.load(Ordering::Relaxed) - before;
        runs.push((reply, second.text().to_string(), reused));
    }
    let (reply, second, reused) = &runs[0];
    assert_eq!(reply.text(), runs[1].0.text());
    assert_eq!(second, &runs[1].1);
    assert_eq!(runs[1].2, 0);
    let first_turn = u64::from(reply.usage.prompt_tokens);
    assert!(
        *reused >= first_turn + u64::from(reply.usage.completion_tokens) / 2,
        "reused {reused} tokens: the first prompt has {first_turn}, its reply {}",
        reply.usage.completion_tokens
    );
}

#[tokio::test]
async fn ratings_of_samples_start_after_the_kept_samples() {
    // `bon`'s layout: n samples decode in the per-stream context, then each is rated in
    // the conversation that produced it (the sample as the assistant's turn). The rating,
    // decoded there too, starts after the sample's kept cells.
    let reusing = own_backend();
    let whole = no_reuse_backend();
    let question = vec![Message::user("Write one sentence about the sea.")];
    let sampled = Sampling::default()
        .with_temperature(0.8)
        .with_seed(7)
        .with_max_tokens(40);
    let rating = Sampling::default().with_temperature(0.0).with_max_tokens(8);
    let mut runs = Vec::new();
    for b in [&reusing, &whole] {
        let samples = b
            .complete(
                ChatRequest::new(question.clone())
                    .with_sampling(sampled.clone())
                    .with_n(2),
            )
            .await
            .unwrap();
        let rounds = b.stats().stream_rounds.load(Ordering::Relaxed);
        let before = b.stats().prefix_tokens_reused.load(Ordering::Relaxed);
        let mut rate = question.clone();
        rate.push(Message::assistant(samples.choices[0].text.clone()));
        rate.push(Message::user("Rate the above response from 0 to 10."));
        let rated = b
            .complete(
                ChatRequest::new(rate)
                    .with_sampling(rating.clone())
                    .with_n(2),
            )
            .await
            .unwrap();
        assert_eq!(b.stats().stream_rounds.load(Ordering::Relaxed), rounds + 1);
        let reused = b.stats().prefix_tokens_reused.load(Ordering::Relaxed) - before;
        runs.push((samples, rated.choices[0].text.clone(), reused));
    }
    let (samples, rated, reused) = &runs[0];
    assert_eq!(samples.choices[0].text, runs[1].0.choices[0].text);
    assert_eq!(rated, &runs[1].1);
    assert_eq!(runs[1].2, 0);
    let asked = u64::from(samples.usage.prompt_tokens);
    let sample = u64::from(samples.choices[0].completion_tokens);
    assert!(
        *reused >= asked + sample / 2,
        "reused {reused} tokens: the question has {asked}, the sample {sample}"
    );
}

#[tokio::test]
async fn requests_batched_together_evaluate_their_shared_beginning_once() {
    let sharing = own_backend();
    let whole = no_reuse_backend();
    // Ratings of three candidates, as `bon` sends them: one long question first.
    let question = "A farmer has 12 cows and buys 7 more, then sells 5. ".repeat(6);
    let rate = |candidate: &str| {
        ChatRequest::new(vec![
            Message::system("You rate answers from 0 to 10."),
            Message::user(format!("{question}\nAnswer: {candidate}\nRate it.")),
        ])
        .with_sampling(
            Sampling::default()
                .with_temperature(0.0)
                .with_max_tokens(12),
        )
    };
    let mut texts = Vec::new();
    for b in [&sharing, &whole] {
        // A round of 16 samples runs first, so the three ratings wait and decode together.
        let (blocker, x, y, z) = tokio::join!(
            b.complete(
                ChatRequest::user("Count to twenty.")
                    .with_sampling(Sampling::default().with_max_tokens(32))
                    .with_n(16)
            ),
            b.complete(rate("14")),
            b.complete(rate("12")),
            b.complete(rate("24")),
        );
        assert_eq!(blocker.unwrap().choices.len(), 16);
        let (x, y, z) = (x.unwrap(), y.unwrap(), z.unwrap());
        assert_eq!(b.stats().batched_requests.load(Ordering::Relaxed), 3);
        texts.push([
            x.text().to_string(),
            y.text().to_string(),
            z.text().to_string(),
        ]);
    }
    // Greedy text is the same as with every prompt evaluated whole.
    assert_eq!(texts[0], texts[1]);
    let stat = |b: &LlamaBackend, f: fn(&optillm_llama::Stats) -> &std::sync::atomic::AtomicU64| {
        f(b.stats()).load(Ordering::Relaxed)
    };
    // Two of the three borrowed the question from the first.
    assert!(stat(&sharing, |s| &s.prefix_hits) >= 2);
    assert!(stat(&sharing, |s| &s.prefix_tokens_reused) > 2 * 60);
    assert_eq!(stat(&whole, |s| &s.prefix_hits), 0);
    assert_eq!(
        stat(&sharing, |s| &s.prompt_tokens_evaluated)
            + stat(&sharing, |s| &s.prefix_tokens_reused),
        stat(&whole, |s| &s.prompt_tokens_evaluated)
    );
}

#[tokio::test]
async fn a_token_session_starts_from_the_kept_prompt() {
    async fn logits(b: &LlamaBackend, prompt: &str) -> Vec<f32> {
        run_token_job(b, ChatRequest::user(prompt), |s| s.logits(0))
            .await
            .unwrap()
    }
    let close = |x: &[f32], y: &[f32]| x.iter().zip(y).all(|(a, b)| (a - b).abs() < 1e-2);
    let b = sized_backend(Some(2048), None);
    let moon = logits(&b, "Tell me a fact about the moon.").await;
    let hits = b.stats().prefix_hits.load(Ordering::Relaxed);
    // The whole prompt again, then one that shares its beginning only.
    let again = logits(&b, "Tell me a fact about the moon.").await;
    let sun = logits(&b, "Tell me a fact about the sun.").await;
    assert_eq!(b.stats().prefix_hits.load(Ordering::Relaxed), hits + 2);
    assert!(close(&moon, &again));
    let fresh = sized_backend(Some(2048), None);
    assert!(close(
        &sun,
        &logits(&fresh, "Tell me a fact about the sun.").await
    ));
    assert_eq!(fresh.stats().prefix_hits.load(Ordering::Relaxed), 0);
}

#[tokio::test]
async fn a_q8_0_cache_answers_like_the_f16_one() {
    let config = LlamaConfig {
        kv_type: optillm_llama::KvType::Q8_0,
        n_threads: Some(2),
        ..LlamaConfig::default()
    };
    let q8 = LlamaBackend::load(model_path(), config).expect("load with a q8_0 cache");
    let greedy = Sampling::default()
        .with_temperature(0.0)
        .with_max_tokens(12);
    let a = q8
        .complete(ask("What is the capital of France?", greedy.clone()))
        .await
        .unwrap();
    let b = backend()
        .complete(ask("What is the capital of France?", greedy))
        .await
        .unwrap();
    assert!(a.text().contains("Paris"), "{}", a.text());
    assert!(b.text().contains("Paris"), "{}", b.text());
}

#[test]
fn bad_model_files_are_typed_errors() {
    let dir = tempfile::tempdir().unwrap();
    let missing = dir.path().join("missing.gguf");
    assert!(matches!(
        LlamaBackend::load(&missing, LlamaConfig::default()),
        Err(LlamaError::FileNotFound(_))
    ));
    let text = dir.path().join("notes.gguf");
    std::fs::write(&text, "this is not a model").unwrap();
    assert!(matches!(
        LlamaBackend::load(&text, LlamaConfig::default()),
        Err(LlamaError::NotGguf(_))
    ));
    let empty = dir.path().join("empty.gguf");
    std::fs::write(&empty, "").unwrap();
    assert!(matches!(
        LlamaBackend::load(&empty, LlamaConfig::default()),
        Err(LlamaError::NotGguf(_))
    ));
    let truncated = dir.path().join("truncated.gguf");
    let bytes = std::fs::read(model_path()).unwrap();
    std::fs::write(&truncated, &bytes[..bytes.len() / 3]).unwrap();
    assert!(matches!(
        LlamaBackend::load(&truncated, LlamaConfig::default()),
        Err(LlamaError::LoadFailed { .. })
    ));
}

#[tokio::test]
async fn dropping_the_stream_stops_decoding() {
    // A backend of its own, so other tests' requests do not blur the counters.
    let b = LlamaBackend::load(
        model_path(),
        LlamaConfig {
            n_ctx: Some(1024),
            n_threads: Some(2),
            ..LlamaConfig::default()
        },
    )
    .unwrap();
    let mut stream = b
        .stream(ask(
            "Write a very long story about a dragon.",
            Sampling::default()
                .with_temperature(0.0)
                .with_max_tokens(500),
        ))
        .await
        .unwrap();
    let first = stream.next().await.unwrap().unwrap();
    assert!(matches!(first, StreamEvent::Delta { .. }));
    drop(stream);
    // Requests are served in order: once this one is answered, the first is over.
    b.complete(ask("Hi", Sampling::default().with_max_tokens(2)))
        .await
        .unwrap();
    let stats = b.stats();
    assert_eq!(stats.cancelled.load(Ordering::Relaxed), 1);
    let generated = stats.tokens_generated.load(Ordering::Relaxed);
    assert!(
        generated < 100,
        "decoding went on after the drop: {generated} tokens"
    );
}

#[tokio::test]
async fn concurrent_callers_both_get_their_answers() {
    let b = backend();
    let greedy = Sampling::default()
        .with_temperature(0.0)
        .with_max_tokens(16);
    let alone_a = b
        .complete(ask("What is the capital of France?", greedy.clone()))
        .await
        .unwrap();
    let alone_b = b
        .complete(ask("List three fruits.", greedy.clone()))
        .await
        .unwrap();
    let (x, y) = tokio::join!(
        b.complete(ask("What is the capital of France?", greedy.clone())),
        b.complete(ask("List three fruits.", greedy.clone())),
    );
    assert_eq!(x.unwrap().text(), alone_a.text());
    assert_eq!(y.unwrap().text(), alone_b.text());
}

/// A token job (spawned) of one greedy step after the prompt, answering the logits
/// after it. With `held` it first signals `started`, then waits for `go` (two minutes at
/// most: a signal that never comes fails the test instead of hanging it).
fn greedy_step(
    b: &Arc<LlamaBackend>,
    prompt: &'static str,
    held: Option<(
        tokio::sync::oneshot::Sender<()>,
        std::sync::mpsc::Receiver<()>,
    )>,
) -> tokio::task::JoinHandle<Result<Vec<f32>, BackendError>> {
    let b = b.clone();
    tokio::spawn(async move {
        run_token_job(b.as_ref(), ChatRequest::user(prompt), move |s| {
            if let Some((started, go)) = held {
                let _ = started.send(());
                let wait = std::time::Duration::from_secs(120);
                go.recv_timeout(wait)
                    .map_err(|_| BackendError::Timeout(wait))?;
            }
            let first = s.logits(0)?;
            let best = (0..first.len())
                .max_by(|&i, &j| first[i].total_cmp(&first[j]))
                .unwrap_or(0);
            s.append(0, &[best as i32])?;
            s.logits(0)
        })
        .await
    })
}

/// Token jobs run in a lane of their own: a generation request sent while a job is in
/// progress is answered before the job ends, as it is alone, and the job goes on from
/// where it was. Idle, the lane's context is freed.
#[tokio::test]
async fn a_token_job_does_not_hold_up_generation_requests() {
    let config = LlamaConfig {
        n_ctx: Some(2048),
        n_threads: Some(2),
        release_after: Some(std::time::Duration::from_millis(100)),
        ..LlamaConfig::default()
    };
    let b = Arc::new(LlamaBackend::load(model_path(), config).expect("load model"));
    let greedy = Sampling::default()
        .with_temperature(0.0)
        .with_max_tokens(12);
    let alone = b
        .complete(ask("Name a colour.", greedy.clone()))
        .await
        .unwrap();
    let (started, started_rx) = tokio::sync::oneshot::channel();
    let (go, go_rx) = std::sync::mpsc::channel();
    let job = greedy_step(&b, "What is 2+2?", Some((started, go_rx)));
    started_rx.await.unwrap();
    assert!(b.stats().token_cells.load(Ordering::Relaxed) > 0);
    let reply = tokio::time::timeout(
        std::time::Duration::from_secs(120),
        b.complete(ask("Name a colour.", greedy)),
    )
    .await
    .expect("a generation request is answered while a token job is in progress")
    .unwrap();
    assert_eq!(reply.text(), alone.text());
    go.send(()).unwrap();
    let held = job.await.unwrap().unwrap();
    let unheld = greedy_step(&b, "What is 2+2?", None)
        .await
        .unwrap()
        .unwrap();
    assert!(held.iter().zip(&unheld).all(|(x, y)| (x - y).abs() < 1e-2));
    // Idle for 100 ms, the lane's context goes (30 s of room for a loaded machine).
    let deadline = std::time::Instant::now() + std::time::Duration::from_secs(30);
    while b.stats().token_cells.load(Ordering::Relaxed) > 0 && std::time::Instant::now() < deadline
    {
        tokio::time::sleep(std::time::Duration::from_millis(20)).await;
    }
    assert_eq!(b.stats().token_cells.load(Ordering::Relaxed), 0);
}

/// The request's prompt (sequence 0) is evaluated when the job first uses it: a job
/// that starts prompts of its own does not pay for it, and one that reads sequence 0
/// after them reads what it reads first.
#[tokio::test]
async fn a_token_job_evaluates_its_request_prompt_only_when_used() {
    let b = own_backend();
    let raw = "Question: What is the capital of France?\nAnswer:";
    let evaluated = || b.stats().prompt_tokens_evaluated.load(Ordering::Relaxed);
    let first = |s: &mut dyn optillm_core::TokenSession| -> Result<_, BackendError> {
        Ok((s.logits(0)?, s.usage().prompt_tokens))
    };
    let (seq0, chat_tokens) = run_token_job(&b, ChatRequest::user("What is 2+2?"), first)
        .await
        .unwrap();
    // Only a prompt of its own: the request's is not evaluated, nor counted.
    let before = evaluated();
    let (usage, raw_tokens, room) =
        run_token_job(&b, ChatRequest::user("What is 2+2?"), move |s| {
            let room = s.remaining(0);
            let tokens = s.tokenize_prompt(raw)?;
            let a = s.start(&tokens)?;
            s.release(a);
            s.release(0);
            Ok((s.usage(), tokens.len(), room))
        })
        .await
        .unwrap();
    assert_eq!(usage.prompt_tokens as usize, raw_tokens);
    // (The gauge counts the prompts evaluated for requests and jobs, not a job's own
    // sequences: nothing here.)
    assert_eq!(evaluated(), before);
    // Room counts the prompt not evaluated yet.
    assert_eq!(room + chat_tokens, 2048);
    // Sequence 0 read after another prompt: evaluated then, beside it, the same logits.
    let (late, usage) = run_token_job(&b, ChatRequest::user("What is 2+2?"), move |s| {
        let tokens = s.tokenize_prompt(raw)?;
        let a = s.start(&tokens)?;
        let late = s.logits(0)?;
        s.release(a);
        Ok((late, s.usage().prompt_tokens as usize))
    })
    .await
    .unwrap();
    assert_eq!(usage, raw_tokens + chat_tokens as usize);
    assert!(seq0.iter().zip(&late).all(|(x, y)| (x - y).abs() < 1e-2));
}

/// Two token jobs run at once, each in a context of its own: a job held until the
/// other has finished does not keep it waiting, and each reads its own prompt's logits.
#[tokio::test]
async fn two_token_jobs_run_at_once_each_in_a_context_of_its_own() {
    let b = Arc::new(own_backend());
    let alone_first = greedy_step(&b, "What is 2+2?", None)
        .await
        .unwrap()
        .unwrap();
    let alone_second = greedy_step(&b, "Name a colour.", None)
        .await
        .unwrap()
        .unwrap();

    let (go, held) = std::sync::mpsc::channel();
    let (started, first_started) = tokio::sync::oneshot::channel();
    let first = greedy_step(&b, "What is 2+2?", Some((started, held)));
    first_started.await.expect("the first job starts");
    let second = tokio::time::timeout(
        std::time::Duration::from_secs(120),
        greedy_step(&b, "Name a colour.", None),
    )
    .await
    .expect("a second token job runs while the first is held")
    .unwrap()
    .unwrap();
    // Both contexts are there while the first job is held.
    let cells = b.stats().token_cells.load(Ordering::Relaxed);
    assert!(
        cells >= 2 * u64::from(optillm_llama::N_CTX_START),
        "{cells} cells"
    );
    go.send(()).unwrap();
    let first = first.await.unwrap().unwrap();
    let close = |x: &[f32], y: &[f32]| {
        x.len() == y.len() && x.iter().zip(y).all(|(a, b)| (a - b).abs() < 1e-2)
    };
    assert!(close(&first, &alone_first));
    assert!(close(&second, &alone_second));
    assert!(!close(&first, &second));
}

/// A job that panics (a bug in a strategy) is that job's error, not the backend's end.
#[tokio::test]
async fn a_token_job_that_panics_is_an_error_and_the_backend_goes_on() {
    let b = own_backend();
    let err = run_token_job(&b, ChatRequest::user("What is 2+2?"), |s| {
        s.append(0, &[0])?;
        if s.usage().completion_tokens > 0 {
            panic!("a strategy bug");
        }
        Ok(())
    })
    .await
    .unwrap_err();
    assert!(err.to_string().contains("panicked"), "{err}");
    let logits = run_token_job(&b, ChatRequest::user("What is 2+2?"), |s| s.logits(0))
        .await
        .unwrap();
    assert!(!logits.is_empty());
    let greedy = Sampling::default().with_temperature(0.0).with_max_tokens(4);
    assert!(
        !b.complete(ask("Hi.", greedy))
            .await
            .unwrap()
            .text()
            .is_empty()
    );
}

#[tokio::test]
async fn token_session_forks_share_the_prompt() {
    let b = backend();
    let greedy = b
        .complete(ask(
            "What is 2+2?",
            Sampling::default().with_temperature(0.0).with_max_tokens(1),
        ))
        .await
        .unwrap();
    let (first_piece, same, usage) =
        run_token_job(b.as_ref(), ChatRequest::user("What is 2+2?"), |s| {
            let logits = s.logits(0)?;
            let best = optillm_core::token::top_k(&optillm_core::token::softmax(&logits), 1)[0].0;
            let a = s.fork(0)?;
            let c = s.fork(0)?;
            s.append_batch(&[(a, best), (c, best)])?;
            let (la, lc) = (s.logits(a)?, s.logits(c)?);
            let same = la.iter().zip(&lc).all(|(x, y)| (x - y).abs() < 1e-3);
            Ok((s.detokenize(&[best])?, same, s.usage()))
        })
        .await
        .unwrap();
    assert_eq!(first_piece, greedy.text());
    assert!(
        same,
        "two forks fed the same token must see the same logits"
    );
    assert_eq!(usage.prompt_tokens, greedy.usage.prompt_tokens);
    assert_eq!(usage.completion_tokens, 2);
}

#[tokio::test]
async fn token_session_starts_a_raw_prompt_beside_the_chat_prompt() {
    let b = backend();
    let raw = "Question: What is the capital of France?\nAnswer:";
    let chat = b
        .complete(ask(
            "What is 2+2?",
            Sampling::default().with_temperature(0.0).with_max_tokens(1),
        ))
        .await
        .unwrap();
    let (tokens, text_tokens, diff, paris_first, seq0_same, (usage, has_template)) =
        run_token_job(b.as_ref(), ChatRequest::user("What is 2+2?"), move |s| {
            let before = s.logits(0)?;
            let tokens = s.tokenize_prompt(raw)?;
            let text_tokens = s.tokenize(raw)?;
            // The whole raw prompt at once, and the same less its last token, then that token.
            let a = s.start(&tokens)?;
            let (last, rest) = tokens.split_last().unwrap();
            let c = s.start(rest)?;
            s.append(c, &[*last])?;
            let (whole, stepped) = (s.logits(a)?, s.logits(c)?);
            let diff = whole
                .iter()
                .zip(&stepped)
                .map(|(x, y)| (x - y).abs())
                .fold(0.0f32, f32::max);
            let first = |w: &str| -> Result<usize, BackendError> { Ok(s.tokenize(w)?[0] as usize) };
            let paris_first = whole[first(" Paris")?] > whole[first(" Berlin")?];
            // Sequence 0 (the chat prompt) is untouched: a fork of it reads as before.
            let f = s.fork(0)?;
            let seq0_same = s.logits(f)? == before;
            for seq in [a, c, f] {
                s.release(seq);
            }
            let usage = (s.usage(), s.has_chat_template());
            Ok((tokens, text_tokens, diff, paris_first, seq0_same, usage))
        })
        .await
        .unwrap();
    // The raw prompt's tokens are its text's, with BOS first only if the model takes one.
    assert!(tokens.ends_with(&text_tokens));
    assert!(tokens.len() - text_tokens.len() <= 1);
    assert!(
        diff < 0.1,
        "a started prompt must read the same evaluated at once or in two steps (max diff {diff})"
    );
    assert!(
        paris_first,
        "after the raw prompt, \" Paris\" beats \" Berlin\""
    );
    assert!(seq0_same);
    // SmolLM2-135M-Instruct's GGUF ships its chat template (a base model's has none).
    assert!(has_template);
    // Started tokens count as prompt tokens, the one appended token as completion.
    assert_eq!(
        usage.prompt_tokens as usize,
        chat.usage.prompt_tokens as usize + 2 * tokens.len() - 1
    );
    assert_eq!(usage.completion_tokens, 1);
    // An empty prompt is refused.
    let err = run_token_job(b.as_ref(), ChatRequest::user("x"), |s| s.start(&[]))
        .await
        .unwrap_err();
    assert!(matches!(err, BackendError::InvalidRequest(_)), "{err}");
}

#[tokio::test]
async fn token_session_starts_another_conversation_beside_the_request() {
    let b = backend();
    let question = "What is the capital of France?";
    let greedy = Sampling::default().with_temperature(0.0).with_max_tokens(1);
    let alone = b.complete(ask(question, greedy)).await.unwrap();
    let (first, continued, seq0_same, usage, request_prompt) =
        run_token_job(b.as_ref(), ChatRequest::user("What is 2+2?"), move |s| {
            let request_prompt = s.usage().prompt_tokens;
            let before = s.logits(0)?;
            let argmax = |l: Vec<f32>| {
                l.iter()
                    .enumerate()
                    .max_by(|x, y| x.1.total_cmp(y.1))
                    .map(|(i, _)| i as i32)
                    .unwrap()
            };
            let asked = s.start_chat(&[Message::user(question)])?;
            let first = s.detokenize(&[argmax(s.logits(asked)?)])?;
            // A conversation that ends with the assistant's words is continued.
            let begun = s.start_chat(&[
                Message::user(question),
                Message::assistant("The capital of France is"),
            ])?;
            let continued = s.detokenize(&[argmax(s.logits(begun)?)])?;
            let seq0_same = s.logits(0)? == before;
            s.release(asked);
            s.release(begun);
            Ok((first, continued, seq0_same, s.usage(), request_prompt))
        })
        .await
        .unwrap();
    // The started conversation reads as the same request sent alone.
    assert_eq!(first, alone.text(), "{first:?} against {:?}", alone.text());
    assert_eq!(continued.trim(), "Paris");
    assert!(seq0_same);
    // Its tokens count as prompt tokens: the question's prompt, then the same with the
    // begun reply (a few tokens more), nothing generated.
    assert!(
        usage.prompt_tokens > request_prompt + 2 * alone.usage.prompt_tokens,
        "{usage:?}"
    );
    assert_eq!(usage.completion_tokens, 0);
}

#[tokio::test]
async fn waiting_requests_decode_together_and_read_as_alone() {
    // A backend of its own, so that the counters see this test's requests only.
    let b = own_backend();
    let greedy = Sampling::default()
        .with_temperature(0.0)
        .with_max_tokens(24);
    let prompts = [
        "What is the capital of France?",
        "List three fruits.",
        "Write one sentence about the sea.",
    ];
    let mut alone = Vec::new();
    for p in prompts {
        let c = b.complete(ask(p, greedy.clone())).await.unwrap();
        alone.push(c.text().to_string());
    }
    assert_eq!(b.stats().batched_requests.load(Ordering::Relaxed), 0);
    // 16 samples fill a round (n_seq_max): the requests sent while it runs wait, then
    // decode together; the first of them is dropped after its first delta.
    let long = greedy.clone().with_max_tokens(200);
    let (blocker, dropped, story, x, y, z) = tokio::join!(
        b.complete(ask("Count to twenty.", greedy.clone().with_max_tokens(48)).with_n(16)),
        async {
            let mut s = b
                .stream(ask("Tell me a long story.", long.clone()))
                .await
                .unwrap();
            s.next_event().await.map(|e| e.is_ok())
        },
        b.complete(ask("Write a story about a dragon.", long.clone())),
        b.complete(ask(prompts[0], greedy.clone())),
        b.complete(ask(prompts[1], greedy.clone()).with_n(2)),
        b.complete(ask(prompts[2], greedy.clone())),
    );
    assert_eq!(blocker.unwrap().choices.len(), 16);
    assert_eq!(dropped, Some(true));
    let (x, y, z) = (x.unwrap(), y.unwrap(), z.unwrap());
    let story = story.unwrap();
    assert_eq!(b.stats().batched_requests.load(Ordering::Relaxed), 5);
    assert_eq!(b.stats().cancelled.load(Ordering::Relaxed), 1);
    // The same counts as the server's /metrics reads them.
    let counter = |name| {
        b.counters()
            .iter()
            .find(|c| c.name == name)
            .map(|c| c.value)
    };
    assert_eq!(counter("batched_requests"), Some(5));
    assert_eq!(counter("cancelled"), Some(1));
    assert_eq!(counter("requests"), Some(9));
    // Greedy samples read the same as when each request ran alone.
    assert_eq!(x.text(), alone[0]);
    assert_eq!(y.choices.len(), 2);
    assert_eq!(y.choices[0].index, 0);
    assert_eq!(y.choices[1].index, 1);
    for c in &y.choices {
        assert_eq!(c.text, alone[1]);
    }
    assert_eq!(z.text(), alone[2]);
    // Each request is accounted on its own.
    assert!(x.usage.prompt_tokens > 5 && x.usage.prompt_tokens != y.usage.prompt_tokens);
    assert_eq!(
        y.usage.completion_tokens,
        y.choices.iter().map(|c| c.completion_tokens).sum::<u32>()
    );
    assert!(z.timings.time_to_first_token.is_some());
    // A short request is answered when its own samples end, not when the round does.
    let (short, long) = (
        x.choices[0].completion_tokens,
        story.choices[0].completion_tokens,
    );
    assert!(
        long >= 3 * short,
        "the story ({long} tokens) outlasts the answer ({short})"
    );
    assert!(
        x.timings.total < story.timings.total,
        "{:?} vs {:?}",
        x.timings,
        story.timings
    );
}

#[tokio::test]
async fn a_consumer_that_does_not_read_does_not_stall_the_requests_batched_with_it() {
    use std::time::Duration;
    // A backend of its own, so that the counters see this test's requests only.
    let b = own_backend();
    let greedy = Sampling::default().with_temperature(0.0);
    let story = ask(
        "Write a very long story about a dragon.",
        greedy.clone().with_max_tokens(300),
    );
    let alone = b.complete(story.clone()).await.unwrap();
    // More tokens than the stream's channel holds events: a consumer that does not read
    // fills it while its request still has tokens to send.
    let buffer = optillm_core::backend::STREAM_BUFFER as u32;
    assert!(alone.choices[0].completion_tokens > 2 * buffer, "{alone:?}");
    // 16 samples fill a round (n_seq_max): the two requests sent while it runs wait,
    // then decode together.
    let blocker = b
        .stream(ask("Count to twenty.", greedy.clone().with_max_tokens(32)).with_n(16))
        .await
        .unwrap();
    let mut stalled = b.stream(story).await.unwrap();
    let reader = b
        .stream(ask(
            "Write a long story about the sea.",
            greedy.clone().with_max_tokens(2 * buffer),
        ))
        .await
        .unwrap();
    let (blocker, read) = tokio::join!(
        blocker.collect(),
        // Before, the worker blocked on the full channel of the stalled consumer, and
        // this never ended.
        tokio::time::timeout(Duration::from_secs(900), reader.collect()),
    );
    assert_eq!(blocker.unwrap().choices.len(), 16);
    let read = read
        .expect("the reader finished while the other consumer read nothing")
        .unwrap();
    assert_eq!(b.stats().batched_requests.load(Ordering::Relaxed), 2);
    // It went on past the point where the stalled consumer's channel was full.
    assert!(read.choices[0].completion_tokens > buffer, "{read:?}");
    // The stalled consumer gets every event, in order, when it reads at last.
    let mut text = String::new();
    let done = loop {
        match stalled.next_event().await {
            Some(Ok(StreamEvent::Delta { text: t, .. })) => text.push_str(&t),
            Some(Ok(StreamEvent::Done(c))) => break c,
            other => panic!("unexpected {other:?}"),
        }
    };
    assert_eq!(text, done.text());
    // More events than its channel holds were kept for it, none lost. (Its text need
    // not equal `alone`'s: over 300 greedy tokens, decoding in a batch of two can tip a
    // near tie the other way.)
    assert!(done.choices[0].completion_tokens > 2 * buffer, "{done:?}");
    assert!(text.len() >= done.choices[0].completion_tokens as usize / 2);
    assert_eq!(b.stats().cancelled.load(Ordering::Relaxed), 0);
}

#[tokio::test]
async fn a_consumer_that_leaves_with_events_held_cancels_its_request() {
    use std::time::Duration;
    let b = own_backend();
    let greedy = Sampling::default().with_temperature(0.0);
    let stalled = b
        .stream(ask(
            "Write a very long story about a dragon.",
            greedy.clone().with_max_tokens(1000),
        ))
        .await
        .unwrap();
    // Let its channel fill up (64 tokens take well under a few seconds), then leave.
    let buffer = optillm_core::backend::STREAM_BUFFER as u64;
    let waited = std::time::Instant::now();
    while b.stats().tokens_generated.load(Ordering::Relaxed) <= 2 * buffer {
        assert!(waited.elapsed() < Duration::from_secs(120), "no progress");
        tokio::time::sleep(Duration::from_millis(20)).await;
    }
    drop(stalled);
    // Requests are served in order: once this one is answered, the first is over.
    b.complete(ask("Hi", greedy.with_max_tokens(2)))
        .await
        .unwrap();
    assert_eq!(b.stats().cancelled.load(Ordering::Relaxed), 1);
    let generated = b.stats().tokens_generated.load(Ordering::Relaxed);
    assert!(
        generated < 900,
        "decoding went on after the drop: {generated}"
    );
}

#[tokio::test]
async fn a_raw_completion_continues_the_text_without_the_chat_template() {
    let b = backend();
    // (After "Answer:" SmolLM2-135M-Instruct's likeliest token is the end of the text.)
    let text = "The capital of France is";
    let greedy = Sampling::default().with_temperature(0.0).with_max_tokens(1);
    let raw = b
        .complete(ChatRequest::completion(text).with_sampling(greedy.clone()))
        .await
        .unwrap();
    let chat = b.complete(ask(text, greedy)).await.unwrap();
    // The most likely token after the text, read off the token-level interface.
    let (tokens, best) = run_token_job(b.as_ref(), ChatRequest::user("x"), move |s| {
        let tokens = s.tokenize_prompt(text)?;
        let seq = s.start(&tokens)?;
        let logits = s.logits(seq)?;
        let best = (0..logits.len())
            .max_by(|&i, &j| logits[i].total_cmp(&logits[j]))
            .unwrap_or(0);
        let bytes = s.token_bytes(best as i32)?;
        s.release(seq);
        Ok((tokens, String::from_utf8_lossy(&bytes).into_owned()))
    })
    .await
    .unwrap();
    // Only the text's own tokens were evaluated: no template around them.
    assert_eq!(raw.usage.prompt_tokens as usize, tokens.len());
    assert!(chat.usage.prompt_tokens > raw.usage.prompt_tokens + 5);
    assert_eq!(
        raw.text(),
        best,
        "greedy continues with the likeliest token"
    );

    // Special tokens written in the text are read as such (a prompt templated by its
    // caller): `<|im_start|>` is one token, not its characters.
    let special = b
        .complete(
            ChatRequest::completion("<|im_start|>")
                .with_sampling(Sampling::default().with_max_tokens(1)),
        )
        .await
        .unwrap();
    assert_eq!(special.usage.prompt_tokens, 1);

    // A text longer than the context is the typed overflow, as a chat prompt is.
    let long = "word ".repeat(3000);
    assert!(matches!(
        b.complete(ChatRequest::completion(long)).await.unwrap_err(),
        BackendError::ContextOverflow { .. }
    ));

    // A raw request is one user message.
    let mut two = ChatRequest::completion("a");
    two.messages.push(Message::user("b"));
    assert!(matches!(
        b.complete(two).await.unwrap_err(),
        BackendError::InvalidRequest(_)
    ));
}

#[tokio::test]
async fn a_final_assistant_message_is_continued_not_answered() {
    let b = backend();
    let greedy = Sampling::default().with_temperature(0.0).with_max_tokens(4);
    let question = "What is the capital of France?";
    let begun = "The capital of France is";
    let prefill = b
        .complete(
            ChatRequest::new(vec![Message::user(question), Message::assistant(begun)])
                .with_sampling(greedy.clone()),
        )
        .await
        .unwrap();
    let fresh = b.complete(ask(question, greedy)).await.unwrap();
    // The prompt is the question's, up to where the assistant's turn begins, then the
    // begun text: no end of turn after it, no new turn.
    let begun_tokens = run_token_job(b.as_ref(), ChatRequest::user("x"), move |s| {
        Ok(s.tokenize(begun)?.len())
    })
    .await
    .unwrap();
    assert_eq!(
        prefill.usage.prompt_tokens as usize,
        fresh.usage.prompt_tokens as usize + begun_tokens
    );
    assert!(
        prefill.text().trim_start().starts_with("Paris"),
        "{:?}",
        prefill.text()
    );

    // A question that holds the characters the template is cut at is still whole.
    let sly = "What is the capital of France? \u{1}optillm-prefill\u{1}";
    let greedy = Sampling::default().with_temperature(0.0).with_max_tokens(1);
    let prefill = b
        .complete(
            ChatRequest::new(vec![Message::user(sly), Message::assistant(begun)])
                .with_sampling(greedy.clone()),
        )
        .await
        .unwrap();
    let fresh = b.complete(ask(sly, greedy)).await.unwrap();
    assert_eq!(
        prefill.usage.prompt_tokens as usize,
        fresh.usage.prompt_tokens as usize + begun_tokens
    );
}
