//! Running a resolved request: `none` goes straight to the backend (real token streaming,
//! true finish reasons, logprobs); other approaches run as strategies, with keep-alive
//! events while their stages run and the tokens of their final call streamed as they
//! are generated (see [`optillm_core::Ctx::final_call`]).

use std::pin::Pin;
use std::sync::Arc;
use std::task::{Context, Poll};
use std::time::Duration;

use futures::future::{BoxFuture, join_all};
use optillm_core::strategies::build_spec;
use optillm_core::strategy::{self, Strategy};
use optillm_core::{
    Backend, Budget, ChatRequest, Completion, Ctx, FinishReason, ResponseFormat, StrategyError,
    StrategyRequest, StreamEvent, TextSink, Timings, TokenLogprob, Usage, stream_channel,
};
use tokio::sync::mpsc;
use tokio::task::JoinHandle;

use crate::error::ApiError;
use crate::limit::{Permit, Queued, Ticket};
use crate::metrics::Metrics;

/// How a request runs.
pub enum Plan {
    /// `none`: one backend call.
    Direct,
    /// Any other approach.
    Strategy(Box<dyn Strategy>),
}

/// A request ready to run.
pub struct Job {
    pub backend: Arc<dyn Backend>,
    pub plan: Plan,
    pub request: StrategyRequest,
    /// Top logprobs per token (`none` only).
    pub logprobs: Option<u32>,
    /// Structured output (`none` only).
    pub format: Option<ResponseFormat>,
    pub budget: Budget,
    pub metrics: Arc<Metrics>,
}

/// One choice of the final answer.
#[derive(Debug, Clone, PartialEq)]
pub struct FinalChoice {
    pub index: u32,
    pub text: String,
    pub finish: FinishReason,
    pub logprobs: Option<Vec<TokenLogprob>>,
}

/// The final answer of a request.
#[derive(Debug, Clone, PartialEq)]
pub struct Final {
    pub choices: Vec<FinalChoice>,
    /// Tokens over every model call of the request.
    pub usage: Usage,
    /// Timings, and the HTTP requests sent to remote servers (`timings.requests`).
    pub timings: Timings,
    /// Model calls made (each may take several HTTP requests).
    pub calls: u32,
}

/// One event of a streamed answer.
#[derive(Debug)]
pub enum RunEvent {
    /// Nothing new yet; stages are running.
    KeepAlive,
    Delta {
        index: u32,
        text: String,
        logprob: Option<TokenLogprob>,
    },
    Done(Final),
    Error(ApiError),
}

impl Job {
    /// Checks what can be checked before running, so that a bad request is a 4xx
    /// answer rather than an error in the middle of a stream.
    pub fn new(
        backend: Arc<dyn Backend>,
        spec: &optillm_core::Spec,
        request: StrategyRequest,
        logprobs: Option<u32>,
        format: Option<ResponseFormat>,
        budget: Budget,
        metrics: Arc<Metrics>,
    ) -> Result<Self, ApiError> {
        let mut check = ChatRequest::new(request.messages.clone())
            .with_sampling(request.sampling.clone())
            .with_n(request.n);
        check.logprobs = logprobs;
        check.format = format.clone();
        check.validate()?;
        let plan = if spec.is_none() {
            Plan::Direct
        } else {
            if logprobs.is_some() {
                return Err(ApiError::bad_request(format!(
                    "logprobs are only available with the `none` approach, not `{spec}`"
                )));
            }
            // An approach's answer is often not the output of one model call (a vote, a
            // choice among samples, a composed text), so no grammar could vouch for it.
            if let Some(f) = &format {
                return Err(ApiError::bad_request(format!(
                    "structured output ({}) is only available with the `none` approach, \
                     not `{spec}`: an approach's answer is not constrained by a grammar",
                    f.kind()
                )));
            }
            request.query()?;
            Plan::Strategy(build_spec(spec)?)
        };
        Ok(Self {
            backend,
            plan,
            request,
            logprobs,
            format,
            budget,
            metrics,
        })
    }

    fn chat_request(&self) -> ChatRequest {
        let mut r = ChatRequest::new(self.request.messages.clone())
            .with_sampling(self.request.sampling.clone())
            .with_n(self.request.n);
        r.logprobs = self.logprobs;
        r.format = self.format.clone();
        r
    }

    /// Runs to the final answer.
    pub async fn complete(&self) -> Result<Final, ApiError> {
        let fin = match &self.plan {
            Plan::Direct => {
                let ctx = Ctx::new(Arc::clone(&self.backend), self.budget);
                let c = ctx
                    .call("completion", self.chat_request())
                    .await
                    .map_err(|e| self.budget_error(e))?;
                from_completion(c)
            }
            Plan::Strategy(s) => {
                run_strategy(s.as_ref(), &self.backend, &self.request, self.budget, None)
                    .await
                    .map_err(|e| self.budget_error(e))?
            }
        };
        self.metrics.add_usage(&fin.usage);
        self.metrics.add_calls(fin.calls, fin.timings.requests);
        Ok(fin)
    }

    /// A budget that ran out with no answer is a timeout when the budget has a deadline.
    fn budget_error(&self, e: StrategyError) -> ApiError {
        match (e, self.budget.max_duration) {
            (StrategyError::BudgetExhausted, Some(d)) => ApiError::new(
                axum::http::StatusCode::GATEWAY_TIMEOUT,
                format!("no answer within the time budget of {d:?}"),
            ),
            (e, _) => e.into(),
        }
    }

    /// Starts the run and streams its events. The work runs on its own task holding
    /// the slot; dropping the returned stream aborts the task, which drops the backend
    /// stream and so cancels the upstream work. A queued request sends keep-alives while
    /// it waits for its slot.
    pub async fn stream(
        self,
        keep_alive: Duration,
        ticket: Ticket,
    ) -> Result<EventStream, ApiError> {
        let (tx, rx) = mpsc::channel(64);
        let task = match ticket {
            Ticket::Ready(permit) => tokio::spawn(self.start(keep_alive, permit, tx).await?),
            Ticket::Queued(queued) => tokio::spawn(async move {
                let Some(permit) = wait_with_keep_alive(queued, keep_alive, &tx).await else {
                    return;
                };
                let permit = match permit {
                    Ok(p) => p,
                    Err(e) => {
                        let _ = tx.send(RunEvent::Error(e)).await;
                        return;
                    }
                };
                match self.start(keep_alive, permit, tx.clone()).await {
                    Ok(run) => run.await,
                    Err(e) => {
                        let _ = tx.send(RunEvent::Error(e)).await;
                    }
                }
            }),
        };
        let mut events = EventStream {
            rx,
            task,
            first: None,
        };
        // The response starts with the first event: an error that comes before anything
        // else (a prompt longer than the context, a bad parameter) is an HTTP error.
        match events.rx.recv().await {
            Some(RunEvent::Error(e)) => Err(e),
            first => {
                events.first = first;
                Ok(events)
            }
        }
    }

    /// The run as a future sending its events to `tx`. For `none` the backend call starts
    /// here, so that errors before the first token are HTTP errors.
    async fn start(
        self,
        keep_alive: Duration,
        permit: Permit,
        tx: mpsc::Sender<RunEvent>,
    ) -> Result<BoxFuture<'static, ()>, ApiError> {
        Ok(match self.plan {
            Plan::Direct => {
                let mut request = self.chat_request();
                if let Some(max) = self.budget.max_total_tokens {
                    let per = u32::try_from(max / u64::from(request.n.max(1))).unwrap_or(u32::MAX);
                    let cap = per.max(1);
                    request.sampling.max_tokens =
                        Some(request.sampling.max_tokens.map_or(cap, |m| m.min(cap)));
                }
                let upstream = self.backend.stream(request).await?;
                let deadline = self
                    .budget
                    .max_duration
                    .map(|d| (tokio::time::Instant::now() + d, d));
                Box::pin(forward_backend(
                    upstream,
                    tx,
                    deadline,
                    self.metrics,
                    permit,
                ))
            }
            Plan::Strategy(strategy) => Box::pin(run_with_keep_alive(
                strategy,
                self.backend,
                self.request,
                self.budget,
                keep_alive,
                tx,
                self.metrics,
                permit,
            )),
        })
    }
}

/// Waits for a queued slot, sending keep-alives; `None` when the client has gone.
async fn wait_with_keep_alive(
    queued: Queued,
    interval: Duration,
    tx: &mpsc::Sender<RunEvent>,
) -> Option<Result<Permit, ApiError>> {
    let wait = queued.wait();
    tokio::pin!(wait);
    let interval = interval.max(Duration::from_millis(1));
    let mut ticks = tokio::time::interval_at(tokio::time::Instant::now() + interval, interval);
    loop {
        tokio::select! {
            r = &mut wait => return Some(r),
            _ = ticks.tick() => {
                if tx.send(RunEvent::KeepAlive).await.is_err() {
                    return None;
                }
            }
        }
    }
}

/// Forwards the backend's deltas; ends with `Done` or an `Error`.
async fn forward_backend(
    mut upstream: optillm_core::CompletionStream,
    tx: mpsc::Sender<RunEvent>,
    deadline: Option<(tokio::time::Instant, Duration)>,
    metrics: Arc<Metrics>,
    _permit: Permit,
) {
    loop {
        let next = match deadline {
            Some((at, d)) => match tokio::time::timeout_at(at, upstream.next_event()).await {
                Ok(e) => e,
                Err(_) => Some(Err(optillm_core::BackendError::Timeout(d))),
            },
            None => upstream.next_event().await,
        };
        let event = match next {
            Some(Ok(StreamEvent::Delta {
                index,
                text,
                logprob,
            })) => RunEvent::Delta {
                index,
                text,
                logprob,
            },
            Some(Ok(StreamEvent::Done(c))) => {
                let fin = from_completion(c);
                metrics.add_usage(&fin.usage);
                metrics.add_calls(fin.calls, fin.timings.requests);
                let _ = tx.send(RunEvent::Done(fin)).await;
                return;
            }
            Some(Err(e)) => {
                let _ = tx.send(RunEvent::Error(e.into())).await;
                return;
            }
            None => {
                let _ = tx
                    .send(RunEvent::Error(
                        optillm_core::BackendError::Protocol(
                            "the backend stream ended before its final event".into(),
                        )
                        .into(),
                    ))
                    .await;
                return;
            }
        };
        if tx.send(event).await.is_err() {
            return;
        }
    }
}

/// Runs a strategy, sending keep-alives every `interval` while no text comes, the
/// deltas of its final call as they are generated, then what of the answer was not
/// streamed (one delta per choice) and `Done`.
#[allow(clippy::too_many_arguments)]
async fn run_with_keep_alive(
    strategy: Box<dyn Strategy>,
    backend: Arc<dyn Backend>,
    request: StrategyRequest,
    budget: Budget,
    interval: Duration,
    tx: mpsc::Sender<RunEvent>,
    metrics: Arc<Metrics>,
    _permit: Permit,
) {
    let (delta_tx, mut deltas) = mpsc::unbounded_channel::<(u32, String)>();
    let sink: TextSink = Arc::new(move |index, text: &str| {
        let _ = delta_tx.send((index, text.to_string()));
    });
    let run = run_strategy(strategy.as_ref(), &backend, &request, budget, Some(sink));
    tokio::pin!(run);
    let interval = interval.max(Duration::from_millis(1));
    let mut ticks = tokio::time::interval_at(tokio::time::Instant::now() + interval, interval);
    let mut streamed = Streamed::default();
    let result = loop {
        tokio::select! {
            r = &mut run => break r,
            Some((index, text)) = deltas.recv() => {
                if tx.send(streamed.delta(index, text)).await.is_err() {
                    return;
                }
                ticks.reset();
            }
            _ = ticks.tick() => {
                if tx.send(RunEvent::KeepAlive).await.is_err() {
                    return;
                }
            }
        }
    };
    while let Ok((index, text)) = deltas.try_recv() {
        if tx.send(streamed.delta(index, text)).await.is_err() {
            return;
        }
    }
    match result {
        Ok(fin) => {
            metrics.add_usage(&fin.usage);
            metrics.add_calls(fin.calls, fin.timings.requests);
            for c in &fin.choices {
                let Some(rest) = streamed.rest_of(c.index, &c.text) else {
                    continue;
                };
                let delta = RunEvent::Delta {
                    index: c.index,
                    text: rest.to_string(),
                    logprob: None,
                };
                if tx.send(delta).await.is_err() {
                    return;
                }
            }
            let _ = tx.send(RunEvent::Done(fin)).await;
        }
        Err(e) => {
            let err = match (e, budget.max_duration) {
                (StrategyError::BudgetExhausted, Some(d)) => ApiError::new(
                    axum::http::StatusCode::GATEWAY_TIMEOUT,
                    format!("no answer within the time budget of {d:?}"),
                ),
                (e, _) => e.into(),
            };
            let _ = tx.send(RunEvent::Error(err)).await;
        }
    }
}

/// The text sent so far per choice of a streamed strategy run.
#[derive(Default)]
struct Streamed(Vec<String>);

impl Streamed {
    fn delta(&mut self, index: u32, text: String) -> RunEvent {
        let i = index as usize;
        if self.0.len() <= i {
            self.0.resize(i + 1, String::new());
        }
        if let Some(sent) = self.0.get_mut(i) {
            sent.push_str(&text);
        }
        RunEvent::Delta {
            index,
            text,
            logprob: None,
        }
    }

    /// What of `answer` is still to send for choice `index` (`None`: nothing). The
    /// streamed text of a final call is the answer's start; an answer that does not
    /// start with what was streamed cannot be fixed in the stream, and is logged.
    fn rest_of<'a>(&self, index: u32, answer: &'a str) -> Option<&'a str> {
        let sent = self.0.get(index as usize).map_or("", String::as_str);
        match answer.strip_prefix(sent) {
            Some("") => None,
            Some(rest) => Some(rest),
            None => {
                tracing::warn!(
                    index,
                    "the answer does not continue the streamed text of its final call"
                );
                None
            }
        }
    }
}

fn from_completion(c: Completion) -> Final {
    Final {
        choices: c
            .choices
            .into_iter()
            .map(|ch| FinalChoice {
                index: ch.index,
                text: ch.text,
                finish: ch.finish_reason,
                logprobs: ch.logprobs,
            })
            .collect(),
        usage: c.usage,
        timings: c.timings,
        calls: 1,
    }
}

fn saturate(n: u64) -> u32 {
    u32::try_from(n).unwrap_or(u32::MAX)
}

/// Passes calls through and remembers why each returned text stopped, so that the
/// final answer of an approach gets the finish reason of the call that produced it.
struct FinishRecorder {
    inner: Arc<dyn Backend>,
    seen: Arc<std::sync::Mutex<Vec<(String, FinishReason)>>>,
}

impl FinishRecorder {
    /// The finish reason of the last call output equal to `text` (`stop` when the text
    /// was composed by the approach rather than returned by a call).
    fn reason_of(&self, text: &str) -> FinishReason {
        self.seen
            .lock()
            .ok()
            .and_then(|seen| {
                seen.iter()
                    .rev()
                    .find(|(t, _)| t == text)
                    .map(|(_, reason)| *reason)
            })
            .unwrap_or(FinishReason::EndOfText)
    }
}

#[async_trait::async_trait]
impl Backend for FinishRecorder {
    fn model(&self) -> &str {
        self.inner.model()
    }
    fn capabilities(&self) -> optillm_core::Capabilities {
        self.inner.capabilities()
    }
    /// Forwards the stream (a final call), recording the finish reasons of its end.
    async fn stream(
        &self,
        request: ChatRequest,
    ) -> Result<optillm_core::CompletionStream, optillm_core::BackendError> {
        let mut upstream = self.inner.stream(request).await?;
        let (tx, stream) = stream_channel();
        let seen = Arc::clone(&self.seen);
        // Ends when the upstream ends or the reader is gone (dropping the upstream
        // cancels its work).
        tokio::spawn(async move {
            loop {
                let event = tokio::select! {
                    e = upstream.next_event() => e,
                    () = tx.closed() => return,
                };
                let Some(event) = event else { return };
                if let Ok(StreamEvent::Done(c)) = &event {
                    record_finish(&seen, c);
                }
                if !tx.send(event).await {
                    return;
                }
            }
        });
        Ok(stream)
    }
    async fn complete(
        &self,
        request: ChatRequest,
    ) -> Result<Completion, optillm_core::BackendError> {
        let completion = self.inner.complete(request).await?;
        record_finish(&self.seen, &completion);
        Ok(completion)
    }
    async fn token_job(
        &self,
        request: ChatRequest,
        job: optillm_core::TokenJob,
    ) -> Result<(), optillm_core::BackendError> {
        self.inner.token_job(request, job).await
    }
}

fn record_finish(seen: &std::sync::Mutex<Vec<(String, FinishReason)>>, completion: &Completion) {
    if let Ok(mut seen) = seen.lock() {
        seen.extend(
            completion
                .choices
                .iter()
                .map(|c| (c.text.clone(), c.finish_reason)),
        );
    }
}

/// Runs `strategy`; when it gives fewer choices than the request's `n`, runs it again
/// (concurrently, one choice each, seeds offset) until there are `n`. A parallel
/// approach (`a|b`) may give more choices than `n`: one per branch, all kept.
///
/// Finish reasons: `length` when the budget cut the run, else that of the model call
/// whose output is the answer (`stop` for an answer the approach composed itself).
///
/// `sink` receives the final call of the first run as it is generated (the other runs
/// give their choice whole).
async fn run_strategy(
    strategy: &dyn Strategy,
    backend: &Arc<dyn Backend>,
    request: &StrategyRequest,
    budget: Budget,
    sink: Option<TextSink>,
) -> Result<Final, StrategyError> {
    let recorder = Arc::new(FinishRecorder {
        inner: Arc::clone(backend),
        seen: Arc::default(),
    });
    let backend: Arc<dyn Backend> = recorder.clone();
    let backend = &backend;
    let mut ctx = Ctx::new(Arc::clone(backend), budget);
    if let Some(sink) = sink {
        ctx = ctx.with_sink(sink);
    }
    let first = strategy::run_in(ctx, strategy, request).await?;
    let mut texts = first.choices.clone();
    if texts.is_empty() {
        texts.push(first.answer.clone());
    }
    let mut cut = vec![first.budget_exhausted; texts.len()];
    let mut usage = first.usage;
    let mut wall = first.wall;
    let wanted = request.n.max(1) as usize;
    if texts.len() < wanted {
        let have = texts.len();
        let extra = (have..wanted).map(|i| {
            let mut one = request.clone();
            one.n = 1;
            one.sampling.seed = request
                .sampling
                .seed_for(u32::try_from(i).unwrap_or(u32::MAX));
            async move { strategy::run(strategy, Arc::clone(backend), &one, budget).await }
        });
        for outcome in join_all(extra).await {
            let o = outcome?;
            texts.push(o.answer.clone());
            cut.push(o.budget_exhausted);
            usage.calls += o.usage.calls;
            usage.requests += o.usage.requests;
            usage.prompt_tokens += o.usage.prompt_tokens;
            usage.completion_tokens += o.usage.completion_tokens;
            wall = wall.max(o.wall);
        }
    }
    Ok(Final {
        choices: texts
            .into_iter()
            .zip(cut)
            .enumerate()
            .map(|(i, (text, cut))| FinalChoice {
                index: u32::try_from(i).unwrap_or(u32::MAX),
                finish: if cut {
                    FinishReason::Length
                } else {
                    recorder.reason_of(&text)
                },
                text,
                logprobs: None,
            })
            .collect(),
        usage: Usage {
            prompt_tokens: saturate(usage.prompt_tokens),
            completion_tokens: saturate(usage.completion_tokens),
        },
        timings: Timings {
            total: wall,
            requests: usage.requests,
            ..Timings::default()
        },
        calls: usage.calls,
    })
}

/// The events of a streamed run. Dropping it aborts the run.
pub struct EventStream {
    rx: mpsc::Receiver<RunEvent>,
    task: JoinHandle<()>,
    /// The first event, read before the response started.
    first: Option<RunEvent>,
}

impl Drop for EventStream {
    fn drop(&mut self) {
        self.task.abort();
    }
}

impl futures::Stream for EventStream {
    type Item = RunEvent;
    fn poll_next(mut self: Pin<&mut Self>, cx: &mut Context<'_>) -> Poll<Option<RunEvent>> {
        if let Some(first) = self.first.take() {
            return Poll::Ready(Some(first));
        }
        self.rx.poll_recv(cx)
    }
}
