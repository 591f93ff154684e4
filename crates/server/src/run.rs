//! Running a resolved request. Every approach, `none` included, runs as a strategy
//! ([`strategy::run_in`]): keep-alive events while its stages run, the tokens of its
//! final call streamed as they are generated (see [`optillm_core::Ctx::final_call`]),
//! and its choices with the finish reasons and logprobs the run reports.

use std::pin::Pin;
use std::sync::Arc;
use std::task::{Context, Poll};
use std::time::Duration;

use futures::future::BoxFuture;
use optillm_core::strategies::build_spec;
use optillm_core::strategy::{self, Strategy};
use optillm_core::{
    Backend, Budget, ChatRequest, Ctx, FinishReason, Outcome, StrategyError, StrategyRequest,
    TextSink, Timings, TokenLogprob, Usage,
};
use tokio::sync::mpsc;
use tokio::task::JoinHandle;

use crate::error::ApiError;
use crate::limit::{Permit, Queued, Ticket};
use crate::metrics::Metrics;

/// A request ready to run.
pub struct Job {
    pub backend: Arc<dyn Backend>,
    pub strategy: Box<dyn Strategy>,
    pub request: StrategyRequest,
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
        budget: Budget,
        metrics: Arc<Metrics>,
    ) -> Result<Self, ApiError> {
        let mut check = ChatRequest::new(request.messages.clone())
            .with_sampling(request.sampling.clone())
            .with_n(request.n);
        check.logprobs = request.logprobs;
        check.format = request.format.clone();
        check.validate()?;
        let strategy = build_spec(spec)?;
        strategy::check_request(strategy.as_ref(), &request)?;
        Ok(Self {
            backend,
            strategy,
            request,
            budget,
            metrics,
        })
    }

    /// Runs to the final answer.
    pub async fn complete(&self) -> Result<Final, ApiError> {
        let ctx = Ctx::new(Arc::clone(&self.backend), self.budget);
        let outcome = strategy::run_in(ctx, self.strategy.as_ref(), &self.request)
            .await
            .map_err(|e| budget_error(e, self.budget))?;
        let fin = Final::from(outcome);
        self.metrics.add_usage(&fin.usage);
        self.metrics.add_calls(fin.calls, fin.timings.requests);
        Ok(fin)
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

    /// The run as a future sending its events to `tx`.
    async fn start(
        self,
        keep_alive: Duration,
        permit: Permit,
        tx: mpsc::Sender<RunEvent>,
    ) -> Result<BoxFuture<'static, ()>, ApiError> {
        Ok(Box::pin(run_with_keep_alive(self, keep_alive, tx, permit)))
    }
}

/// A budget that ran out with no answer is a timeout when the budget has a deadline.
fn budget_error(e: StrategyError, budget: Budget) -> ApiError {
    match (e, budget.max_duration) {
        (StrategyError::BudgetExhausted, Some(d)) => ApiError::new(
            axum::http::StatusCode::GATEWAY_TIMEOUT,
            format!("no answer within the time budget of {d:?}"),
        ),
        (e, _) => e.into(),
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

/// Runs a job, sending keep-alives every `interval` while no text comes, the deltas of
/// its final call as they are generated, then what of the answer was not streamed (one
/// delta per choice) and `Done`.
async fn run_with_keep_alive(
    job: Job,
    interval: Duration,
    tx: mpsc::Sender<RunEvent>,
    _permit: Permit,
) {
    type Piece = (u32, String, Option<TokenLogprob>);
    let (delta_tx, mut deltas) = mpsc::unbounded_channel::<Piece>();
    let sink: TextSink = Arc::new(move |index, text: &str, logprob| {
        let _ = delta_tx.send((index, text.to_string(), logprob.cloned()));
    });
    let ctx = Ctx::new(Arc::clone(&job.backend), job.budget).with_sink(sink);
    let run = strategy::run_in(ctx, job.strategy.as_ref(), &job.request);
    tokio::pin!(run);
    let interval = interval.max(Duration::from_millis(1));
    let mut ticks = tokio::time::interval_at(tokio::time::Instant::now() + interval, interval);
    let mut streamed = Streamed::default();
    let result = loop {
        tokio::select! {
            r = &mut run => break r,
            Some((index, text, logprob)) = deltas.recv() => {
                if tx.send(streamed.delta(index, text, logprob)).await.is_err() {
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
    while let Ok((index, text, logprob)) = deltas.try_recv() {
        if tx.send(streamed.delta(index, text, logprob)).await.is_err() {
            return;
        }
    }
    match result {
        Ok(outcome) => {
            let fin = Final::from(outcome);
            job.metrics.add_usage(&fin.usage);
            job.metrics.add_calls(fin.calls, fin.timings.requests);
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
            let _ = tx.send(RunEvent::Error(budget_error(e, job.budget))).await;
        }
    }
}

/// The text sent so far per choice of a streamed strategy run.
#[derive(Default)]
struct Streamed(Vec<String>);

impl Streamed {
    fn delta(&mut self, index: u32, text: String, logprob: Option<TokenLogprob>) -> RunEvent {
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
            logprob,
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

impl From<Outcome> for Final {
    fn from(o: Outcome) -> Self {
        let timings = o.timings();
        Final {
            choices: o
                .choices
                .into_iter()
                .zip(0u32..)
                .map(|(c, index)| FinalChoice {
                    index,
                    text: c.text,
                    finish: c.finish_reason,
                    logprobs: c.logprobs,
                })
                .collect(),
            usage: Usage {
                prompt_tokens: saturate(o.usage.prompt_tokens),
                completion_tokens: saturate(o.usage.completion_tokens),
            },
            timings,
            calls: o.usage.calls,
        }
    }
}

fn saturate(n: u64) -> u32 {
    u32::try_from(n).unwrap_or(u32::MAX)
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
