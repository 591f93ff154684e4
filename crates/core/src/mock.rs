//! A scripted backend for strategy tests: answers from a script or a function and
//! records every request it receives. Tokens are whitespace-separated words.

use std::collections::VecDeque;
use std::sync::Mutex;
use std::sync::atomic::{AtomicUsize, Ordering};
use std::time::Duration;

use async_trait::async_trait;

use crate::backend::{Backend, CompletionStream, StreamEvent};
use crate::error::BackendError;
use crate::types::{
    Capabilities, ChatRequest, Choice, Completion, FinishReason, Timings, TokenLogprob, Usage,
};

type Responder = dyn Fn(&ChatRequest, u32) -> Result<String, BackendError> + Send + Sync;

/// A backend whose answers come from a function of (request, choice index).
pub struct MockBackend {
    name: String,
    responder: Box<Responder>,
    requests: Mutex<Vec<ChatRequest>>,
    capabilities: Capabilities,
}

impl std::fmt::Debug for MockBackend {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("MockBackend")
            .field("name", &self.name)
            .finish()
    }
}

impl MockBackend {
    /// Answers every choice with `f(request, choice_index)`.
    pub fn new(
        f: impl Fn(&ChatRequest, u32) -> Result<String, BackendError> + Send + Sync + 'static,
    ) -> Self {
        Self {
            name: "mock".into(),
            responder: Box::new(f),
            requests: Mutex::new(Vec::new()),
            capabilities: Capabilities {
                native_n: true,
                logprobs: true,
                max_top_logprobs: 20,
                token_control: false,
                context_length: Some(8192),
                formats: crate::FormatSupport::ALL,
            },
        }
    }

    /// Answers choices with the given texts in order, one per choice; an error once they run out.
    pub fn scripted<I, S>(replies: I) -> Self
    where
        I: IntoIterator<Item = S>,
        S: Into<String>,
    {
        let queue: Mutex<VecDeque<String>> =
            Mutex::new(replies.into_iter().map(Into::into).collect());
        Self::new(move |_, _| {
            let mut q = queue
                .lock()
                .map_err(|_| BackendError::Protocol("mock script lock poisoned".into()))?;
            q.pop_front()
                .ok_or_else(|| BackendError::Protocol("mock script exhausted".into()))
        })
    }

    /// Always answers `text`.
    pub fn constant(text: impl Into<String>) -> Self {
        let text = text.into();
        Self::new(move |_, _| Ok(text.clone()))
    }

    pub fn with_capabilities(mut self, capabilities: Capabilities) -> Self {
        self.capabilities = capabilities;
        self
    }

    pub fn with_name(mut self, name: impl Into<String>) -> Self {
        self.name = name.into();
        self
    }

    /// Every request received so far, in order.
    pub fn requests(&self) -> Vec<ChatRequest> {
        self.requests.lock().map(|r| r.clone()).unwrap_or_default()
    }

    /// Number of requests received so far.
    pub fn calls(&self) -> usize {
        self.requests.lock().map(|r| r.len()).unwrap_or(0)
    }

    fn answer(&self, request: &ChatRequest) -> Result<Completion, BackendError> {
        request.validate()?;
        if let Ok(mut r) = self.requests.lock() {
            r.push(request.clone());
        }
        let prompt_tokens: usize = request
            .messages
            .iter()
            .map(|m| m.content.split_whitespace().count())
            .sum();
        let mut usage = Usage {
            prompt_tokens: prompt_tokens as u32,
            completion_tokens: 0,
        };
        let mut choices = Vec::new();
        for index in 0..request.n {
            let full = (self.responder)(request, index)?;
            let (text, finish) = shape(&full, request);
            let tokens = text.split_inclusive(char::is_whitespace).count() as u32;
            usage.completion_tokens += tokens;
            let logprobs = request.logprobs.map(|k| {
                text.split_inclusive(char::is_whitespace)
                    .map(|t| TokenLogprob {
                        token: t.to_string(),
                        logprob: -0.1,
                        top: (0..k)
                            .map(|i| crate::types::TopLogprob {
                                token: if i == 0 {
                                    t.to_string()
                                } else {
                                    format!("alt{i}")
                                },
                                logprob: -0.1 - i as f32,
                            })
                            .collect(),
                    })
                    .collect()
            });
            choices.push(Choice {
                index,
                text,
                finish_reason: finish,
                logprobs,
                completion_tokens: tokens,
            });
        }
        Ok(Completion {
            model: self.name.clone(),
            choices,
            usage,
            timings: Timings {
                time_to_first_token: Some(Duration::from_millis(1)),
                ..Timings::default()
            },
        })
    }
}

/// Applies stop sequences and `max_tokens` to a scripted answer.
fn shape(full: &str, request: &ChatRequest) -> (String, FinishReason) {
    let mut text = full.to_string();
    let mut finish = FinishReason::EndOfText;
    if let Some(pos) = request
        .sampling
        .stop
        .iter()
        .filter_map(|s| text.find(s.as_str()))
        .min()
    {
        text = text.get(..pos).unwrap_or_default().to_string();
        finish = FinishReason::StopSequence;
    }
    if let Some(max) = request.sampling.max_tokens {
        let words: Vec<&str> = text.split_inclusive(char::is_whitespace).collect();
        if words.len() > max as usize {
            text = words[..max as usize].concat();
            finish = FinishReason::Length;
        }
    }
    (text, finish)
}

#[async_trait]
impl Backend for MockBackend {
    fn model(&self) -> &str {
        &self.name
    }

    fn capabilities(&self) -> Capabilities {
        self.capabilities
    }

    async fn stream(&self, request: ChatRequest) -> Result<CompletionStream, BackendError> {
        let completion = self.answer(&request)?;
        let mut events = Vec::new();
        for c in &completion.choices {
            for (i, piece) in c.text.split_inclusive(char::is_whitespace).enumerate() {
                events.push(Ok(StreamEvent::Delta {
                    index: c.index,
                    text: piece.to_string(),
                    logprob: c.logprobs.as_ref().and_then(|l| l.get(i).cloned()),
                }));
            }
        }
        events.push(Ok(StreamEvent::Done(completion)));
        Ok(CompletionStream::from_events(events))
    }
}

/// A backend that answers like a [`MockBackend`] after a fixed delay (tokio time, so a
/// paused test clock makes it instant), and counts the calls in flight: what a test needs
/// to check that a strategy's independent calls overlap.
pub struct DelayedBackend {
    inner: MockBackend,
    delay: Duration,
    in_flight: AtomicUsize,
    max_in_flight: AtomicUsize,
}

impl std::fmt::Debug for DelayedBackend {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("DelayedBackend")
            .field("delay", &self.delay)
            .finish()
    }
}

impl DelayedBackend {
    pub fn new(inner: MockBackend, delay: Duration) -> Self {
        Self {
            inner,
            delay,
            in_flight: AtomicUsize::new(0),
            max_in_flight: AtomicUsize::new(0),
        }
    }

    /// The most calls that were in flight at once.
    pub fn max_in_flight(&self) -> usize {
        self.max_in_flight.load(Ordering::SeqCst)
    }

    /// The wrapped backend (its recorded requests).
    pub fn inner(&self) -> &MockBackend {
        &self.inner
    }
}

#[async_trait]
impl Backend for DelayedBackend {
    fn model(&self) -> &str {
        self.inner.model()
    }

    fn capabilities(&self) -> Capabilities {
        self.inner.capabilities()
    }

    async fn stream(&self, request: ChatRequest) -> Result<CompletionStream, BackendError> {
        let now = self.in_flight.fetch_add(1, Ordering::SeqCst) + 1;
        self.max_in_flight.fetch_max(now, Ordering::SeqCst);
        tokio::time::sleep(self.delay).await;
        self.in_flight.fetch_sub(1, Ordering::SeqCst);
        self.inner.stream(request).await
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::types::Sampling;

    #[tokio::test]
    async fn records_requests_and_applies_limits() {
        let mock = MockBackend::scripted(["one two three four", "stop here END more"]);
        let r1 =
            ChatRequest::user("hi there").with_sampling(Sampling::default().with_max_tokens(2));
        let c1 = mock.complete(r1.clone()).await.unwrap();
        assert_eq!(c1.text(), "one two ");
        assert_eq!(c1.choices[0].finish_reason, FinishReason::Length);
        assert_eq!(c1.usage.prompt_tokens, 2);
        let r2 = ChatRequest::user("x").with_sampling(Sampling::default().with_stop("END"));
        let c2 = mock.complete(r2).await.unwrap();
        assert_eq!(c2.text(), "stop here ");
        assert_eq!(c2.choices[0].finish_reason, FinishReason::StopSequence);
        assert_eq!(mock.calls(), 2);
        assert_eq!(mock.requests()[0], r1);
        assert!(mock.complete(ChatRequest::user("x")).await.is_err());
    }

    #[tokio::test]
    async fn streams_deltas_then_done() {
        let mock = MockBackend::constant("a b");
        let mut s = mock.stream(ChatRequest::user("q").with_n(2)).await.unwrap();
        let mut deltas = 0;
        let mut done = None;
        while let Some(e) = s.next_event().await {
            match e.unwrap() {
                StreamEvent::Delta { .. } => deltas += 1,
                StreamEvent::Done(c) => done = Some(c),
            }
        }
        assert_eq!(deltas, 4);
        assert_eq!(done.unwrap().choices.len(), 2);
    }

    #[tokio::test]
    async fn rejects_invalid_requests() {
        let mock = MockBackend::constant("a");
        let bad = ChatRequest::user("q").with_sampling(Sampling::default().with_temperature(-1.0));
        assert!(matches!(
            mock.complete(bad).await,
            Err(BackendError::InvalidRequest(_))
        ));
        assert_eq!(mock.calls(), 0);
    }
}
