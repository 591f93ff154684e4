//! The [`Backend`] trait: one interface for native and remote inference.

use std::pin::Pin;
use std::sync::Arc;
use std::task::{Context, Poll};

use async_trait::async_trait;
use tokio::sync::mpsc;

use crate::error::BackendError;
use crate::token::{TokenJob, TokenSession};
use crate::types::{Capabilities, ChatRequest, Choice, Completion, FinishReason, TokenLogprob};

/// One event of a streamed completion.
#[derive(Debug, Clone, PartialEq)]
pub enum StreamEvent {
    /// New text of choice `index` (one or more tokens).
    Delta {
        index: u32,
        text: String,
        /// Present when the request asked for logprobs and the delta is one token.
        logprob: Option<TokenLogprob>,
    },
    /// The last event: every choice complete, with usage and timings.
    Done(Completion),
}

/// A count a backend keeps of its own work (it only grows), for monitoring: the server
/// exports each as a Prometheus counter `optillm_backend_<name>_total{model=..}`.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct BackendCounter {
    /// Metric name: lower-case ASCII words joined by `_`, without the `_total` suffix.
    pub name: &'static str,
    /// One line on what is counted.
    pub help: &'static str,
    pub value: u64,
}

/// What a backend that spreads requests over several upstream servers (a pool) has seen
/// of one of them, for monitoring: the server exports each field as a metric
/// `optillm_upstream_<field>{model=..,upstream=..}`.
#[derive(Debug, Clone, PartialEq, serde::Serialize)]
pub struct UpstreamStats {
    /// The upstream's name in logs and metrics (by default its URL).
    pub name: String,
    /// The model's name on that upstream.
    pub model: String,
    /// Its relative share of the work.
    pub weight: u32,
    /// Requests sent to it (each attempt counts).
    pub requests: u64,
    /// Attempts that failed (before or after the first byte).
    pub failures: u64,
    /// Requests moved from it to another upstream after a failure before the first byte.
    pub failovers: u64,
    /// Requests in flight now (including those waiting for room on it).
    pub in_flight: usize,
    /// Summed wall time of its finished requests, in seconds.
    pub latency_s: f64,
    /// False while it is backing off after a failure.
    pub healthy: bool,
}

/// Capacity of the channel between a backend's producer and the consumer.
pub const STREAM_BUFFER: usize = 64;

/// A stream of [`StreamEvent`]s. Dropping it tells the producer to stop: the native
/// backend stops decoding, remote backends close the HTTP response.
#[derive(Debug)]
pub struct CompletionStream {
    rx: mpsc::Receiver<Result<StreamEvent, BackendError>>,
}

/// The producing side of a [`CompletionStream`].
#[derive(Debug, Clone)]
pub struct StreamSender {
    tx: mpsc::Sender<Result<StreamEvent, BackendError>>,
}

/// A connected sender and stream.
pub fn stream_channel() -> (StreamSender, CompletionStream) {
    let (tx, rx) = mpsc::channel(STREAM_BUFFER);
    (StreamSender { tx }, CompletionStream { rx })
}

impl StreamSender {
    /// Sends an event; `false` when the consumer has gone (the work should stop).
    pub async fn send(&self, event: Result<StreamEvent, BackendError>) -> bool {
        self.tx.send(event).await.is_ok()
    }
    /// Blocking send for producers on their own thread (never call inside an async task).
    pub fn blocking_send(&self, event: Result<StreamEvent, BackendError>) -> bool {
        self.tx.blocking_send(event).is_ok()
    }
    /// True once the consumer dropped its stream.
    pub fn is_closed(&self) -> bool {
        self.tx.is_closed()
    }
    /// Resolves once the consumer has dropped its stream: for a producer that waits on
    /// something else meanwhile (`select!` on both) and must stop when nobody reads.
    pub async fn closed(&self) {
        self.tx.closed().await
    }
}

impl CompletionStream {
    /// A stream that yields the given events, for backends that produce everything at once.
    pub fn from_events(events: Vec<Result<StreamEvent, BackendError>>) -> Self {
        let (tx, rx) = mpsc::channel(events.len().max(1));
        for e in events {
            // The channel has room for every event, so try_send cannot fail here.
            let _ = tx.try_send(e);
        }
        CompletionStream { rx }
    }

    /// The next event, `None` when the producer is done.
    pub async fn next_event(&mut self) -> Option<Result<StreamEvent, BackendError>> {
        self.rx.recv().await
    }

    /// Drains the stream into its final [`Completion`].
    pub async fn collect(mut self) -> Result<Completion, BackendError> {
        while let Some(event) = self.rx.recv().await {
            if let StreamEvent::Done(c) = event? {
                return Ok(c);
            }
        }
        Err(BackendError::Protocol(
            "the stream ended before its final event".into(),
        ))
    }
}

impl futures::Stream for CompletionStream {
    type Item = Result<StreamEvent, BackendError>;
    fn poll_next(mut self: Pin<&mut Self>, cx: &mut Context<'_>) -> Poll<Option<Self::Item>> {
        self.rx.poll_recv(cx)
    }
}

/// An inference backend. Implementations must honour every sampling setting of a request,
/// and its [`format`](ChatRequest::format) (structured output, see
/// [`Capabilities::formats`]), or reject it with [`BackendError::Unsupported`].
#[async_trait]
pub trait Backend: Send + Sync {
    /// The model this backend serves (a name or a file path).
    fn model(&self) -> &str;

    /// What the backend can do.
    fn capabilities(&self) -> Capabilities;

    /// Starts a completion and streams it. Dropping the stream cancels the work.
    async fn stream(&self, request: ChatRequest) -> Result<CompletionStream, BackendError>;

    /// A whole completion (the stream, collected).
    async fn complete(&self, request: ChatRequest) -> Result<Completion, BackendError> {
        self.stream(request).await?.collect().await
    }

    /// Runs `job` with token-level access to the model, the request's prompt already
    /// evaluated into sequence 0. Only backends whose capabilities say `token_control`.
    async fn token_job(&self, request: ChatRequest, job: TokenJob) -> Result<(), BackendError> {
        let _ = (request, job);
        Err(BackendError::unsupported(
            self.model(),
            "token-level control (logits and branching)",
        ))
    }

    /// The backend's own counters (requests batched together, tokens generated...);
    /// none by default.
    fn counters(&self) -> Vec<BackendCounter> {
        Vec::new()
    }

    /// The upstream servers this backend spreads its requests over, with what it has
    /// seen of each (a pool); none by default.
    fn upstreams(&self) -> Vec<UpstreamStats> {
        Vec::new()
    }
}

/// Runs a token-level closure on `backend` and returns its value.
pub async fn run_token_job<B, T, F>(
    backend: &B,
    request: ChatRequest,
    f: F,
) -> Result<T, BackendError>
where
    B: Backend + ?Sized,
    T: Send + 'static,
    F: FnOnce(&mut dyn TokenSession) -> Result<T, BackendError> + Send + 'static,
{
    let (tx, rx) = tokio::sync::oneshot::channel();
    let job: TokenJob = Box::new(move |session| {
        let out = f(session)?;
        let _ = tx.send(out);
        Ok(())
    });
    backend.token_job(request, job).await?;
    rx.await.map_err(|_| BackendError::Closed)
}

#[async_trait]
impl<B: Backend + ?Sized> Backend for Arc<B> {
    fn model(&self) -> &str {
        (**self).model()
    }
    fn capabilities(&self) -> Capabilities {
        (**self).capabilities()
    }
    async fn stream(&self, request: ChatRequest) -> Result<CompletionStream, BackendError> {
        (**self).stream(request).await
    }
    async fn complete(&self, request: ChatRequest) -> Result<Completion, BackendError> {
        (**self).complete(request).await
    }
    async fn token_job(&self, request: ChatRequest, job: TokenJob) -> Result<(), BackendError> {
        (**self).token_job(request, job).await
    }
    fn counters(&self) -> Vec<BackendCounter> {
        (**self).counters()
    }
    fn upstreams(&self) -> Vec<UpstreamStats> {
        (**self).upstreams()
    }
}

#[async_trait]
impl<B: Backend + ?Sized> Backend for Box<B> {
    fn model(&self) -> &str {
        (**self).model()
    }
    fn capabilities(&self) -> Capabilities {
        (**self).capabilities()
    }
    async fn stream(&self, request: ChatRequest) -> Result<CompletionStream, BackendError> {
        (**self).stream(request).await
    }
    async fn complete(&self, request: ChatRequest) -> Result<Completion, BackendError> {
        (**self).complete(request).await
    }
    async fn token_job(&self, request: ChatRequest, job: TokenJob) -> Result<(), BackendError> {
        (**self).token_job(request, job).await
    }
    fn counters(&self) -> Vec<BackendCounter> {
        (**self).counters()
    }
    fn upstreams(&self) -> Vec<UpstreamStats> {
        (**self).upstreams()
    }
}

/// Builds the choices of a completion from streamed pieces; used by backends whose
/// wire format streams deltas per choice.
#[derive(Debug, Default, Clone)]
pub struct ChoiceAccumulator {
    choices: Vec<PartialChoice>,
}

#[derive(Debug, Default, Clone)]
struct PartialChoice {
    text: String,
    logprobs: Option<Vec<TokenLogprob>>,
    tokens: u32,
    finish: Option<FinishReason>,
}

impl ChoiceAccumulator {
    pub fn new(n: u32) -> Self {
        Self {
            choices: vec![PartialChoice::default(); n as usize],
        }
    }

    fn slot(&mut self, index: u32) -> &mut PartialChoice {
        let i = index as usize;
        if self.choices.len() <= i {
            self.choices.resize(i + 1, PartialChoice::default());
        }
        &mut self.choices[i]
    }

    /// Adds text (and the token's logprob, when there is one) to choice `index`.
    pub fn push(&mut self, index: u32, text: &str, logprob: Option<TokenLogprob>) {
        let c = self.slot(index);
        c.text.push_str(text);
        if let Some(lp) = logprob {
            c.logprobs.get_or_insert_with(Vec::new).push(lp);
        }
    }

    /// Sets the generated-token count of choice `index`, when the wire reports it.
    pub fn set_tokens(&mut self, index: u32, tokens: u32) {
        self.slot(index).tokens = tokens;
    }

    pub fn finish(&mut self, index: u32, reason: FinishReason) {
        self.slot(index).finish = Some(reason);
    }

    /// The finished choices; one that never reported a reason counts as `Length`
    /// only if `default` says so.
    pub fn into_choices(self, default: FinishReason) -> Vec<Choice> {
        self.choices
            .into_iter()
            .enumerate()
            .map(|(i, c)| Choice {
                index: i as u32,
                completion_tokens: if c.tokens > 0 {
                    c.tokens
                } else {
                    c.logprobs.as_ref().map_or(0, |l| l.len() as u32)
                },
                text: c.text,
                finish_reason: c.finish.unwrap_or(default),
                logprobs: c.logprobs,
            })
            .collect()
    }
}
