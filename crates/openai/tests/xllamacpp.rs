//! The OpenAI backend against a real llama.cpp server (xllamacpp from PyPI).
//!
//! Skipped unless `OPTILLM_XLLAMACPP_URL` names a running server, e.g.:
//!
//! ```sh
//! scripts/xllamacpp-server.sh /path/to/SmolLM2-135M-Instruct.Q4_1.gguf 8088 &
//! OPTILLM_XLLAMACPP_URL=http://127.0.0.1:8088 cargo test -p optillm-openai --test xllamacpp
//! ```
//!
//! The model name is `OPTILLM_XLLAMACPP_MODEL`, or else the first one `/v1/models` lists.

#![allow(clippy::unwrap_used, clippy::expect_used, clippy::panic)]

use std::time::Duration;

use optillm_core::{Backend, ChatRequest, FinishReason, Sampling, StreamEvent};
use optillm_openai::{OpenAiBackend, OpenAiConfig};

async fn server() -> Option<OpenAiBackend> {
    let Ok(url) = std::env::var("OPTILLM_XLLAMACPP_URL") else {
        eprintln!(
            "skipped: OPTILLM_XLLAMACPP_URL is not set (start a server with \
             scripts/xllamacpp-server.sh MODEL.gguf PORT and set it to http://127.0.0.1:PORT)"
        );
        return None;
    };
    let base = format!("{}/v1", url.trim_end_matches('/'));
    let config = |model: &str| {
        OpenAiConfig::new(base.clone(), model)
            .with_api_key_env("OPTILLM_XLLAMACPP_API_KEY")
            .with_first_byte_timeout(Duration::from_secs(120))
    };
    let model = match std::env::var("OPTILLM_XLLAMACPP_MODEL") {
        Ok(m) => m,
        Err(_) => {
            let probe = OpenAiBackend::new(config("probe")).unwrap();
            let models = probe.list_models().await.unwrap();
            assert!(!models.is_empty(), "the server lists no model");
            models[0].id.clone()
        }
    };
    Some(OpenAiBackend::new(config(&model)).unwrap())
}

fn greedy(max_tokens: u32) -> Sampling {
    Sampling::default()
        .with_temperature(0.0)
        .with_seed(1)
        .with_max_tokens(max_tokens)
}

#[tokio::test]
async fn streamed_and_whole_greedy_answers_agree() {
    let Some(b) = server().await else { return };
    let request = ChatRequest::user("What is the capital of France? Answer in one word.")
        .with_sampling(greedy(16));

    let mut stream = b.stream(request.clone()).await.unwrap();
    let mut joined = String::new();
    let streamed = loop {
        match stream.next_event().await.unwrap().unwrap() {
            StreamEvent::Delta { index, text, .. } => {
                assert_eq!(index, 0);
                joined.push_str(&text);
            }
            StreamEvent::Done(c) => break c,
        }
    };
    let whole = b.complete(request).await.unwrap();
    eprintln!(
        "streamed: {:?} usage {:?} timings {:?}",
        streamed.text(),
        streamed.usage,
        streamed.timings
    );
    eprintln!("whole:    {:?} usage {:?}", whole.text(), whole.usage);

    assert!(!streamed.text().trim().is_empty());
    assert_eq!(joined, streamed.text(), "the deltas add up to the text");
    assert_eq!(
        streamed.text(),
        whole.text(),
        "greedy decoding is deterministic"
    );
    for c in [&streamed, &whole] {
        assert!(c.usage.prompt_tokens > 0);
        let choice = &c.choices[0];
        assert!(choice.completion_tokens > 0 && choice.completion_tokens <= 16);
        if choice.finish_reason == FinishReason::Length {
            assert_eq!(choice.completion_tokens, 16);
        }
    }
    assert!(streamed.timings.time_to_first_token.is_some());
}

#[tokio::test]
async fn a_token_limit_of_one_stops_for_length() {
    let Some(b) = server().await else { return };
    let c = b
        .complete(ChatRequest::user("Tell me a long story.").with_sampling(greedy(1)))
        .await
        .unwrap();
    assert_eq!(c.choices[0].finish_reason, FinishReason::Length);
    assert_eq!(c.usage.completion_tokens, 1);
}

#[tokio::test]
async fn two_samples_streamed_and_not() {
    let Some(b) = server().await else { return };
    let request = ChatRequest::user("Write a short sentence about the sea.")
        .with_n(2)
        .with_sampling(
            Sampling::default()
                .with_temperature(1.0)
                .with_seed(7)
                .with_max_tokens(24),
        );
    let mut stream = b.stream(request.clone()).await.unwrap();
    let mut joined = [String::new(), String::new()];
    let streamed = loop {
        match stream.next_event().await.unwrap().unwrap() {
            StreamEvent::Delta { index, text, .. } => joined[index as usize].push_str(&text),
            StreamEvent::Done(c) => break c,
        }
    };
    let whole = b.complete(request).await.unwrap();
    eprintln!("native n after the requests: {}", b.capabilities().native_n);
    for c in [&streamed, &whole] {
        eprintln!("n=2: {:?} usage {:?}", c.texts(), c.usage);
        assert_eq!(c.choices.len(), 2);
        for (i, choice) in c.choices.iter().enumerate() {
            assert_eq!(choice.index as usize, i);
            assert!(!choice.text.trim().is_empty(), "choice {i} is empty");
        }
    }
    // llama-server ends each streamed choice with its own usage chunk: per-choice counts.
    assert!(streamed.choices.iter().all(|c| c.completion_tokens > 0));
    assert_eq!(
        streamed
            .choices
            .iter()
            .map(|c| c.completion_tokens)
            .sum::<u32>(),
        streamed.usage.completion_tokens
    );
    assert_eq!(joined[0], streamed.choices[0].text);
    assert_eq!(joined[1], streamed.choices[1].text);
}

#[tokio::test]
async fn logprobs_come_back_per_token() {
    let Some(b) = server().await else { return };
    let c = b
        .complete(
            ChatRequest::user("Say hello.")
                .with_logprobs(3)
                .with_sampling(greedy(5)),
        )
        .await
        .unwrap();
    let lps = c.choices[0].logprobs.as_ref().expect("logprobs");
    assert_eq!(lps.len() as u32, c.choices[0].completion_tokens);
    let joined: String = lps.iter().map(|l| l.token.as_str()).collect();
    assert_eq!(joined, c.text());
    for lp in lps {
        assert!(lp.logprob <= 0.0);
        assert!(!lp.top.is_empty() && lp.top.len() <= 3);
        // Greedy: the chosen token is the most likely one.
        assert_eq!(lp.top[0].token, lp.token);
    }
}

/// A raw request is a text completion (`/v1/completions`): the server evaluates the text
/// alone, not the chat template around it, and its logprobs are read, streamed and not.
#[tokio::test]
async fn a_raw_request_is_a_text_completion_of_the_text_alone() {
    let Some(b) = server().await else { return };
    let text = "The capital of France is";
    let raw = || {
        ChatRequest::completion(text)
            .with_sampling(greedy(6))
            .with_logprobs(2)
    };
    let whole = b.complete(raw()).await.unwrap();
    let chat = b
        .complete(ChatRequest::user(text).with_sampling(greedy(6)))
        .await
        .unwrap();
    assert!(!whole.text().is_empty());
    assert!(
        whole.usage.prompt_tokens + 5 < chat.usage.prompt_tokens,
        "raw {} vs chat {} prompt tokens",
        whole.usage.prompt_tokens,
        chat.usage.prompt_tokens
    );
    let lps = whole.choices[0].logprobs.as_ref().unwrap();
    assert_eq!(
        lps.iter().map(|l| l.token.as_str()).collect::<String>(),
        whole.text()
    );
    assert!(lps.iter().all(|l| l.logprob <= 0.0 && l.top.len() <= 2));

    let mut stream = b.stream(raw()).await.unwrap();
    let mut joined = String::new();
    let streamed = loop {
        match stream.next_event().await.unwrap().unwrap() {
            StreamEvent::Delta { text, .. } => joined.push_str(&text),
            StreamEvent::Done(c) => break c,
        }
    };
    assert_eq!(joined, streamed.text());
    assert_eq!(
        streamed.text(),
        whole.text(),
        "greedy: the same text streamed"
    );
}
