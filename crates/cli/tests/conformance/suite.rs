//! The behaviours every backend owes its callers, written once over `&dyn Backend`.
//! Where a backend legitimately differs, the [`Expect`] it comes with says so; the
//! tests themselves have no per-backend cases.

use std::collections::BTreeSet;
use std::sync::Arc;
use std::time::Duration;

use optillm::{
    Backend, BackendError, ChatRequest, Completion, FinishReason, Message, Sampling, StreamEvent,
};

/// How a backend refuses a prompt longer than its context.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Overflow {
    /// [`BackendError::ContextOverflow`] with the counts (the native backend, and llama.cpp's
    /// server, whose refusal carries them).
    Typed,
    /// [`BackendError::Http`] 400 whose message speaks of the context (a remote server's
    /// refusal, as the wire carries it).
    BadRequest,
    /// It has no context to overflow (a scripted mock).
    Unbounded,
}

/// What the suite may expect of one backend, where backends legitimately differ.
pub struct Expect {
    /// How a prompt longer than the context is refused.
    pub overflow: Overflow,
    /// A long enough prompt to overflow the context, in words.
    pub overflow_words: usize,
    /// How many requests the generating side has seen cancelled so far, where that can
    /// be observed (the native worker's `cancelled` counter, also behind a server).
    pub cancelled: Option<Box<dyn Fn() -> u64 + Send + Sync>>,
    /// For a remote backend: the same backend pointed at a server that is down.
    pub down: Option<Arc<dyn Backend>>,
    /// A conversation that ends with an assistant message is continued (prefill), not
    /// answered with a new turn (every model backend; not a scripted mock).
    pub prefill: bool,
}

/// A backend under test.
pub struct Subject {
    pub name: &'static str,
    pub backend: Arc<dyn Backend>,
    pub expect: Expect,
}

/// The `cancelled` counter of a backend that reports one.
pub fn cancelled_counter(backend: Arc<dyn Backend>) -> Box<dyn Fn() -> u64 + Send + Sync> {
    Box::new(move || {
        backend
            .counters()
            .iter()
            .find(|c| c.name == "cancelled")
            .map_or(0, |c| c.value)
    })
}

/// Runs every test of the suite on `s`, one after the other.
pub async fn run_all(s: &Subject) {
    for (test, run) in TESTS {
        eprintln!("[{}] {test}", s.name);
        tokio::time::timeout(Duration::from_secs(600), run(s))
            .await
            .unwrap_or_else(|_| panic!("[{}] {test} took more than 600 s", s.name));
    }
}

type Test = for<'a> fn(&'a Subject) -> futures::future::BoxFuture<'a, ()>;

const TESTS: &[(&str, Test)] = &[
    ("streams_text_then_a_finish_with_usage", |s| {
        Box::pin(streams_text_then_a_finish_with_usage(s))
    }),
    ("n_choices_with_distinct_indexes", |s| {
        Box::pin(n_choices_with_distinct_indexes(s))
    }),
    ("max_tokens_ends_with_length", |s| {
        Box::pin(max_tokens_ends_with_length(s))
    }),
    ("a_stop_sequence_ends_the_text_before_it", |s| {
        Box::pin(a_stop_sequence_ends_the_text_before_it(s))
    }),
    ("dropping_the_stream_cancels_the_work", |s| {
        Box::pin(dropping_the_stream_cancels_the_work(s))
    }),
    ("a_prompt_longer_than_the_context_is_a_typed_error", |s| {
        Box::pin(a_prompt_longer_than_the_context_is_a_typed_error(s))
    }),
    ("logprobs_when_asked_and_capabilities_honest", |s| {
        Box::pin(logprobs_when_asked_and_capabilities_honest(s))
    }),
    ("a_server_that_is_down_is_a_typed_error", |s| {
        Box::pin(a_server_that_is_down_is_a_typed_error(s))
    }),
    ("a_final_assistant_message_is_continued", |s| {
        Box::pin(a_final_assistant_message_is_continued(s))
    }),
];

async fn a_final_assistant_message_is_continued(s: &Subject) {
    if !s.expect.prefill {
        return;
    }
    let request = ChatRequest::new(vec![
        Message::user("What is the capital of France?"),
        Message::assistant("The capital of France is"),
    ])
    .with_sampling(greedy(4));
    let out = s.backend.complete(request).await.unwrap();
    assert!(
        out.text().trim_start().starts_with("Paris"),
        "[{}] {:?}",
        s.name,
        out.text()
    );
}

fn greedy(max_tokens: u32) -> Sampling {
    Sampling::default()
        .with_temperature(0.0)
        .with_seed(1)
        .with_max_tokens(max_tokens)
}

/// Every event of a stream: the text of each choice as its deltas built it, the
/// completion, and whether anything came after the completion.
async fn streamed(
    s: &Subject,
    request: ChatRequest,
) -> (Vec<(u32, String)>, Result<Completion, BackendError>) {
    let mut stream = match s.backend.stream(request).await {
        Ok(stream) => stream,
        Err(e) => return (Vec::new(), Err(e)),
    };
    let mut deltas = Vec::new();
    let mut done = None;
    while let Some(event) = stream.next_event().await {
        assert!(done.is_none(), "[{}] an event after the completion", s.name);
        match event {
            Ok(StreamEvent::Delta { index, text, .. }) => deltas.push((index, text)),
            Ok(StreamEvent::Done(c)) => done = Some(Ok(c)),
            Err(e) => done = Some(Err(e)),
        }
    }
    let result = done.unwrap_or_else(|| Err(BackendError::Protocol("no final event".into())));
    (deltas, result)
}

/// The text of choice `index` as the deltas built it.
fn joined(deltas: &[(u32, String)], index: u32) -> String {
    deltas
        .iter()
        .filter(|(i, _)| *i == index)
        .map(|(_, t)| t.as_str())
        .collect()
}

async fn streams_text_then_a_finish_with_usage(s: &Subject) {
    let request = ChatRequest::user("What is the capital of France?").with_sampling(greedy(16));
    let (deltas, result) = streamed(s, request).await;
    let c = result.unwrap_or_else(|e| panic!("[{}] {e}", s.name));
    assert!(
        !deltas.is_empty(),
        "[{}] no delta before the finish",
        s.name
    );
    assert_eq!(c.choices.len(), 1, "[{}]", s.name);
    let choice = &c.choices[0];
    assert!(!choice.text.trim().is_empty(), "[{}] empty text", s.name);
    assert_eq!(
        joined(&deltas, 0),
        choice.text,
        "[{}] the deltas add up to the text",
        s.name
    );
    assert!(c.usage.prompt_tokens > 0, "[{}] no prompt tokens", s.name);
    assert!(
        c.usage.completion_tokens > 0 && c.usage.completion_tokens <= 16,
        "[{}] completion tokens {}",
        s.name,
        c.usage.completion_tokens
    );
    assert_eq!(
        choice.completion_tokens, c.usage.completion_tokens,
        "[{}]",
        s.name
    );
}

async fn n_choices_with_distinct_indexes(s: &Subject) {
    let request = ChatRequest::user("Write a sentence about the sea.")
        .with_n(3)
        .with_sampling(
            Sampling::default()
                .with_temperature(1.0)
                .with_seed(7)
                .with_max_tokens(8),
        );
    let (deltas, result) = streamed(s, request).await;
    let c = result.unwrap_or_else(|e| panic!("[{}] {e}", s.name));
    let indexes: Vec<u32> = c.choices.iter().map(|c| c.index).collect();
    assert_eq!(indexes, vec![0, 1, 2], "[{}] choice indexes", s.name);
    let streamed_indexes: BTreeSet<u32> = deltas.iter().map(|(i, _)| *i).collect();
    assert!(
        streamed_indexes.iter().all(|i| *i < 3),
        "[{}] deltas for choices not asked for: {streamed_indexes:?}",
        s.name
    );
    for choice in &c.choices {
        assert!(
            !choice.text.trim().is_empty(),
            "[{}] choice {} is empty",
            s.name,
            choice.index
        );
        assert_eq!(
            joined(&deltas, choice.index),
            choice.text,
            "[{}] the deltas of choice {} add up to its text",
            s.name,
            choice.index
        );
    }
    let sum: u32 = c.choices.iter().map(|c| c.completion_tokens).sum();
    assert_eq!(sum, c.usage.completion_tokens, "[{}] usage adds up", s.name);
}

async fn max_tokens_ends_with_length(s: &Subject) {
    let request =
        ChatRequest::user("Tell me a long story about a dragon.").with_sampling(greedy(4));
    let c = s
        .backend
        .complete(request)
        .await
        .unwrap_or_else(|e| panic!("[{}] {e}", s.name));
    assert_eq!(
        c.choices[0].finish_reason,
        FinishReason::Length,
        "[{}]",
        s.name
    );
    assert_eq!(c.choices[0].completion_tokens, 4, "[{}]", s.name);
    assert_eq!(c.usage.completion_tokens, 4, "[{}]", s.name);
}

async fn a_stop_sequence_ends_the_text_before_it(s: &Subject) {
    let ask = || ChatRequest::user("Name three colours, separated by commas.");
    let free = s
        .backend
        .complete(ask().with_sampling(greedy(16)))
        .await
        .unwrap_or_else(|e| panic!("[{}] {e}", s.name));
    let text = free.text().to_string();
    // A stop sequence that occurs after the start of the greedy answer: its second word.
    let words: Vec<&str> = text.split_whitespace().collect();
    assert!(
        words.len() >= 3,
        "[{}] too short an answer to cut: {text:?}",
        s.name
    );
    let stop = words[1];
    let at = text.find(stop).unwrap_or(0);
    let cut = s
        .backend
        .complete(ask().with_sampling(greedy(16).with_stop(stop)))
        .await
        .unwrap_or_else(|e| panic!("[{}] {e}", s.name));
    let choice = &cut.choices[0];
    assert_eq!(
        choice.text,
        text.get(..at).unwrap_or_default(),
        "[{}] the text ends right before {stop:?} (free answer {text:?})",
        s.name
    );
    assert_ne!(choice.finish_reason, FinishReason::Length, "[{}]", s.name);
}

async fn dropping_the_stream_cancels_the_work(s: &Subject) {
    let before = s.expect.cancelled.as_ref().map(|count| count());
    let long = ChatRequest::user("Write a very long story about a dragon and a knight.")
        .with_sampling(greedy(2000));
    let mut stream = s
        .backend
        .stream(long)
        .await
        .unwrap_or_else(|e| panic!("[{}] {e}", s.name));
    match stream.next_event().await {
        Some(Ok(StreamEvent::Delta { .. })) => {}
        other => panic!("[{}] expected a first delta, got {other:?}", s.name),
    }
    drop(stream);
    if let (Some(count), Some(before)) = (&s.expect.cancelled, before) {
        let mut seen = count();
        for _ in 0..200 {
            if seen > before {
                break;
            }
            tokio::time::sleep(Duration::from_millis(50)).await;
            seen = count();
        }
        assert!(
            seen > before,
            "[{}] the generating side did not cancel the request within 10 s",
            s.name
        );
    }
    // The backend still serves, promptly.
    let after = tokio::time::timeout(
        Duration::from_secs(60),
        s.backend
            .complete(ChatRequest::user("Say hi.").with_sampling(greedy(2))),
    )
    .await
    .unwrap_or_else(|_| panic!("[{}] no answer within 60 s after a cancel", s.name));
    assert!(after.is_ok(), "[{}] {after:?}", s.name);
}

async fn a_prompt_longer_than_the_context_is_a_typed_error(s: &Subject) {
    if s.expect.overflow == Overflow::Unbounded {
        return;
    }
    let prompt = "word ".repeat(s.expect.overflow_words);
    let result = s
        .backend
        .complete(ChatRequest::user(prompt).with_sampling(greedy(4)))
        .await;
    match (s.expect.overflow, &result) {
        (
            Overflow::Typed,
            Err(BackendError::ContextOverflow {
                prompt_tokens,
                context_length,
            }),
        ) => assert!(prompt_tokens > context_length, "[{}] {result:?}", s.name),
        (
            Overflow::BadRequest,
            Err(BackendError::Http {
                status: 400,
                message,
            }),
        ) => assert!(
            message.to_lowercase().contains("context"),
            "[{}] {message}",
            s.name
        ),
        _ => panic!(
            "[{}] expected {:?}, got {result:?}",
            s.name, s.expect.overflow
        ),
    }
}

async fn logprobs_when_asked_and_capabilities_honest(s: &Subject) {
    let caps = s.backend.capabilities();
    let request = ChatRequest::user("Say hello.")
        .with_logprobs(2)
        .with_sampling(greedy(6));
    let result = s.backend.complete(request).await;
    if !caps.logprobs {
        // Not claimed: refused, or answered without any.
        match &result {
            Err(BackendError::Unsupported { .. }) => {}
            Ok(c) => assert!(
                c.choices.iter().all(|c| c.logprobs.is_none()),
                "[{}] logprobs not claimed but sent",
                s.name
            ),
            Err(e) => panic!("[{}] {e}", s.name),
        }
        return;
    }
    let c = result.unwrap_or_else(|e| panic!("[{}] {e}", s.name));
    let choice = &c.choices[0];
    let lps = choice
        .logprobs
        .as_ref()
        .unwrap_or_else(|| panic!("[{}] logprobs claimed but none came", s.name));
    assert_eq!(
        lps.len() as u32,
        choice.completion_tokens,
        "[{}] one logprob per token",
        s.name
    );
    for lp in lps {
        assert!(lp.logprob <= 1e-4, "[{}] {lp:?}", s.name);
        assert!(
            !lp.top.is_empty() && lp.top.len() <= 2,
            "[{}] {} alternatives, asked for 2",
            s.name,
            lp.top.len()
        );
    }
}

async fn a_server_that_is_down_is_a_typed_error(s: &Subject) {
    let Some(down) = &s.expect.down else {
        return;
    };
    let result = down.complete(ChatRequest::user("Hi")).await;
    assert!(
        matches!(result, Err(BackendError::Connection(_))),
        "[{}] {result:?}",
        s.name
    );
}
