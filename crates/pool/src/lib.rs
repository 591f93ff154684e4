//! A [`Backend`] over several upstream backends (llama.cpp servers, vLLM, Ollama, hosted
//! OpenAI-compatible endpoints, or native models), so that the calls of a strategy and
//! the questions of an evaluation spread over every engine a user runs, and survive one
//! of them going away.
//!
//! - **Routing by least outstanding work**: each request goes to the upstream with the
//!   fewest requests in flight per unit of weight (an upstream with free room first;
//!   ties: the heavier weight, then the first listed), so the samples of one strategy
//!   step run on different servers at once. Each upstream has a cap on requests in
//!   flight; beyond it requests wait for that upstream.
//! - **Failover before the first byte**: a request that fails before its first event
//!   (connection refused, timeout, 5xx, 429, a busy or closed backend) is sent to the next
//!   upstream; never once streaming began (the caller has seen text). Requests that are
//!   wrong in themselves (bad parameters, context overflow) fail at once, on any upstream.
//! - **Health with back-off** (a circuit breaker): an upstream that failed is left out for
//!   a back-off that doubles with each consecutive failure (`backoff_min` up to
//!   `backoff_max`); once it has passed, the next request probes it, and one success
//!   brings it back. When every upstream is out, the one whose back-off ends first is
//!   tried anyway rather than failing without trying.
//! - **`n` split across upstreams** when they cannot batch samples themselves
//!   (`Capabilities::native_n` false): chunk `j` of a request asks for its share of the
//!   samples with the seeds that the same samples would have had in one request.
//! - **Counters** per upstream ([`Pool::stats`]): requests, failures, failovers, latency,
//!   in flight, health; totals also as [`BackendCounter`]s for `/metrics`.
//! - **A pool file** ([`config`]): the upstreams as TOML (kind, URL, API key variable,
//!   weight, max in flight, model name on that server).

pub mod config;

use std::sync::atomic::{AtomicU64, AtomicUsize, Ordering};
use std::sync::{Arc, Mutex};
use std::time::{Duration, Instant};

use async_trait::async_trait;
use futures::future::join_all;
use optillm_core::{
    Backend, BackendCounter, BackendError, Capabilities, ChatRequest, Completion, CompletionStream,
    StreamEvent, Timings, Usage, stream_channel,
};
use tokio::sync::Semaphore;

/// One upstream of a pool.
#[derive(Clone)]
pub struct Upstream {
    /// A name for logs and counters (e.g. its URL).
    pub name: String,
    pub backend: Arc<dyn Backend>,
    /// Relative capacity (at least 1): an upstream of weight 2 gets twice the work.
    pub weight: u32,
    /// Most requests in flight at once (at least 1).
    pub max_concurrent: usize,
}

impl Upstream {
    pub fn new(name: impl Into<String>, backend: Arc<dyn Backend>) -> Self {
        Self {
            name: name.into(),
            backend,
            weight: 1,
            max_concurrent: 8,
        }
    }
    pub fn with_weight(mut self, weight: u32) -> Self {
        self.weight = weight;
        self
    }
    pub fn with_max_concurrent(mut self, max_concurrent: usize) -> Self {
        self.max_concurrent = max_concurrent;
        self
    }
}

/// How a pool treats failing upstreams.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct PoolOptions {
    /// Back-off after the first failure; it doubles with each consecutive one.
    pub backoff_min: Duration,
    /// Longest back-off.
    pub backoff_max: Duration,
}

impl Default for PoolOptions {
    fn default() -> Self {
        Self {
            backoff_min: Duration::from_secs(1),
            backoff_max: Duration::from_secs(60),
        }
    }
}

/// A pool that cannot be built.
#[derive(Debug, thiserror::Error, PartialEq, Eq)]
pub enum PoolError {
    #[error("a pool needs at least one upstream")]
    Empty,
    #[error("upstream `{name}`: {message}")]
    BadUpstream { name: String, message: String },
}

/// What a pool has seen of one upstream (also [`Backend::upstreams`], for `/metrics`).
pub use optillm_core::UpstreamStats;

#[derive(Debug, Default)]
struct Breaker {
    consecutive_failures: u32,
    open_until: Option<Instant>,
}

struct Member {
    up: Upstream,
    permits: Arc<Semaphore>,
    in_flight: AtomicUsize,
    requests: AtomicU64,
    failures: AtomicU64,
    failovers: AtomicU64,
    latency_us: AtomicU64,
    breaker: Mutex<Breaker>,
}

impl Member {
    fn breaker<T>(&self, f: impl FnOnce(&mut Breaker) -> T) -> T {
        match self.breaker.lock() {
            Ok(mut b) => f(&mut b),
            Err(poisoned) => f(&mut poisoned.into_inner()),
        }
    }

    /// `None` when it may take requests now, else when its back-off ends.
    fn open_until(&self, now: Instant) -> Option<Instant> {
        self.breaker(|b| b.open_until.filter(|t| *t > now))
    }

    fn failed(&self, options: &PoolOptions) {
        self.failures.fetch_add(1, Ordering::Relaxed);
        self.breaker(|b| {
            b.consecutive_failures = b.consecutive_failures.saturating_add(1);
            let shift = (b.consecutive_failures - 1).min(20);
            let backoff = options
                .backoff_min
                .saturating_mul(1u32 << shift)
                .min(options.backoff_max);
            b.open_until = Some(Instant::now() + backoff);
        });
    }

    fn succeeded(&self) {
        self.breaker(|b| *b = Breaker::default());
    }

    fn load(&self) -> f64 {
        self.in_flight.load(Ordering::Relaxed) as f64 / f64::from(self.up.weight.max(1))
    }
}

/// Counts a request in flight on a member until dropped.
struct InFlight(Arc<Member>);

impl InFlight {
    fn new(m: &Arc<Member>) -> Self {
        m.in_flight.fetch_add(1, Ordering::Relaxed);
        Self(m.clone())
    }
}

impl Drop for InFlight {
    fn drop(&mut self) {
        self.0.in_flight.fetch_sub(1, Ordering::Relaxed);
    }
}

/// Failures that say the upstream, not the request, is at fault.
fn fails_over(e: &BackendError) -> bool {
    e.is_transient() || matches!(e, BackendError::Closed)
}

/// A backend over several upstreams. See the crate documentation.
pub struct Pool {
    model: String,
    members: Vec<Arc<Member>>,
    options: PoolOptions,
}

impl Pool {
    /// A pool named `model` (what [`Backend::model`] says) over `upstreams`.
    pub fn new(
        model: impl Into<String>,
        upstreams: Vec<Upstream>,
        options: PoolOptions,
    ) -> Result<Self, PoolError> {
        if upstreams.is_empty() {
            return Err(PoolError::Empty);
        }
        let members = upstreams
            .into_iter()
            .map(|up| {
                let bad = |message: &str| PoolError::BadUpstream {
                    name: up.name.clone(),
                    message: message.into(),
                };
                if up.weight == 0 {
                    return Err(bad("weight must be at least 1"));
                }
                if up.max_concurrent == 0 || up.max_concurrent > Semaphore::MAX_PERMITS {
                    return Err(bad("max_concurrent must be at least 1"));
                }
                Ok(Arc::new(Member {
                    permits: Arc::new(Semaphore::new(up.max_concurrent)),
                    up,
                    in_flight: AtomicUsize::new(0),
                    requests: AtomicU64::new(0),
                    failures: AtomicU64::new(0),
                    failovers: AtomicU64::new(0),
                    latency_us: AtomicU64::new(0),
                    breaker: Mutex::new(Breaker::default()),
                }))
            })
            .collect::<Result<Vec<_>, _>>()?;
        Ok(Self {
            model: model.into(),
            members,
            options,
        })
    }

    /// The counters of every upstream, in the order given.
    pub fn stats(&self) -> Vec<UpstreamStats> {
        let now = Instant::now();
        self.members
            .iter()
            .map(|m| UpstreamStats {
                name: m.up.name.clone(),
                model: m.up.backend.model().to_string(),
                weight: m.up.weight,
                requests: m.requests.load(Ordering::Relaxed),
                failures: m.failures.load(Ordering::Relaxed),
                failovers: m.failovers.load(Ordering::Relaxed),
                in_flight: m.in_flight.load(Ordering::Relaxed),
                latency_s: m.latency_us.load(Ordering::Relaxed) as f64 / 1e6,
                healthy: m.open_until(now).is_none(),
            })
            .collect()
    }

    /// The upstream for the next attempt among those not `tried`: healthy ones first
    /// (else the one whose back-off ends first), with free room first, then the least
    /// load per weight, the heavier weight, the first listed.
    fn pick(&self, tried: &[usize]) -> Option<usize> {
        let now = Instant::now();
        let untried: Vec<usize> = (0..self.members.len())
            .filter(|i| !tried.contains(i))
            .collect();
        let healthy: Vec<usize> = untried
            .iter()
            .copied()
            .filter(|&i| {
                self.members
                    .get(i)
                    .is_some_and(|m| m.open_until(now).is_none())
            })
            .collect();
        if healthy.is_empty() {
            return untried
                .into_iter()
                .min_by_key(|&i| self.members.get(i).and_then(|m| m.open_until(now)));
        }
        healthy.into_iter().min_by(|&a, &b| {
            let (ma, mb) = (&self.members[a], &self.members[b]);
            let full = |m: &Member| m.permits.available_permits() == 0;
            full(ma)
                .cmp(&full(mb))
                .then(ma.load().total_cmp(&mb.load()))
                .then(mb.up.weight.cmp(&ma.up.weight))
                .then(a.cmp(&b))
        })
    }

    /// Upstreams that can take requests now.
    fn healthy_count(&self) -> usize {
        let now = Instant::now();
        self.members
            .iter()
            .filter(|m| m.open_until(now).is_none())
            .count()
    }

    /// Splits an `n`-sample request into one request per healthy upstream (at most `n`),
    /// each with its share of the samples and their seeds, run concurrently and merged
    /// back in order.
    async fn complete_split(&self, request: ChatRequest) -> Result<Completion, BackendError> {
        let n = request.n;
        let parts = u32::try_from(self.healthy_count().clamp(1, n as usize)).unwrap_or(1);
        let mut chunks = Vec::new();
        let mut offset = 0;
        for j in 0..parts {
            let size = n / parts + u32::from(j < n % parts);
            let mut part = request.clone();
            part.n = size;
            part.sampling.seed = request.sampling.seed.map(|s| s.wrapping_add(offset));
            chunks.push(part);
            offset += size;
        }
        let results = join_all(chunks.into_iter().map(|c| self.complete_one(c))).await;
        let mut merged = Completion {
            model: self.model.clone(),
            choices: Vec::with_capacity(n as usize),
            usage: Usage::default(),
            timings: Timings::default(),
        };
        for r in results {
            let c = r?;
            merged.usage += c.usage;
            merged.timings.overlap(&c.timings);
            merged.timings.total = merged.timings.total.max(c.timings.total);
            for mut choice in c.choices {
                choice.index = merged.choices.len() as u32;
                merged.choices.push(choice);
            }
        }
        Ok(merged)
    }

    /// One whole completion. Unlike a stream, nothing of it has reached the caller
    /// until it is complete, so an upstream failing midway (killed, stalled, a 5xx in
    /// the stream) is retried on another upstream too, up to once per upstream.
    async fn complete_one(&self, request: ChatRequest) -> Result<Completion, BackendError> {
        let mut attempts = 0;
        loop {
            attempts += 1;
            let result = match self.stream(request.clone()).await {
                Ok(stream) => stream.collect().await,
                Err(e) => return Err(e),
            };
            match result {
                Err(e) if fails_over(&e) && attempts < self.members.len() => {
                    tracing::warn!(error = %e, "an upstream failed midway through a whole completion; retrying it on another");
                }
                other => return other,
            }
        }
    }
}

#[async_trait]
impl Backend for Pool {
    fn model(&self) -> &str {
        &self.model
    }

    /// What every upstream can do: the first one's capabilities with each flag and limit
    /// lowered to what all of them share; no token-level access (a token job cannot
    /// move between servers).
    fn capabilities(&self) -> Capabilities {
        let mut caps = self
            .members
            .first()
            .map(|m| m.up.backend.capabilities())
            .unwrap_or_default();
        for m in self.members.iter().skip(1) {
            let c = m.up.backend.capabilities();
            caps.native_n &= c.native_n;
            caps.logprobs &= c.logprobs;
            caps.max_top_logprobs = caps.max_top_logprobs.min(c.max_top_logprobs);
            caps.context_length = match (caps.context_length, c.context_length) {
                (Some(a), Some(b)) => Some(a.min(b)),
                (a, b) => a.or(b),
            };
        }
        caps.token_control = false;
        caps
    }

    async fn stream(&self, request: ChatRequest) -> Result<CompletionStream, BackendError> {
        request.validate()?;
        let mut tried: Vec<usize> = Vec::new();
        let mut last: Option<BackendError> = None;
        while let Some(i) = self.pick(&tried) {
            tried.push(i);
            let Some(member) = self.members.get(i).cloned() else {
                break;
            };
            let in_flight = InFlight::new(&member);
            let permit = member
                .permits
                .clone()
                .acquire_owned()
                .await
                .map_err(|_| BackendError::Closed)?;
            member.requests.fetch_add(1, Ordering::Relaxed);
            let started = Instant::now();
            let failed = |e: BackendError, last: &mut Option<BackendError>| {
                member.failed(&self.options);
                member.failovers.fetch_add(1, Ordering::Relaxed);
                tracing::warn!(upstream = %member.up.name, error = %e, "upstream failed before the first byte; trying another");
                *last = Some(e);
            };
            let mut inner = match member.up.backend.stream(request.clone()).await {
                Ok(s) => s,
                Err(e) if fails_over(&e) => {
                    failed(e, &mut last);
                    continue;
                }
                Err(e) => return Err(e),
            };
            let first = inner.next_event().await;
            let first = match first {
                Some(Err(e)) if fails_over(&e) => {
                    failed(e, &mut last);
                    continue;
                }
                Some(Err(e)) => return Err(e),
                None => {
                    failed(
                        BackendError::Protocol("the upstream's stream ended at once".into()),
                        &mut last,
                    );
                    continue;
                }
                Some(Ok(event)) => event,
            };
            let (tx, out) = stream_channel();
            let options = self.options;
            tokio::spawn(async move {
                let _in_flight = in_flight;
                let _permit = permit;
                let mut outcome: Result<(), ()> = Ok(());
                let mut next = Some(Ok(first));
                loop {
                    let Some(event) = next.take() else { break };
                    let done = matches!(event, Ok(StreamEvent::Done(_)));
                    if let Err(e) = &event {
                        if fails_over(e) {
                            outcome = Err(());
                        }
                    }
                    let failed_now = event.is_err();
                    if !tx.send(event).await || done || failed_now {
                        break;
                    }
                    next = tokio::select! {
                        e = inner.next_event() => Some(e.unwrap_or_else(|| {
                            // The upstream went away without its final event.
                            Err(BackendError::Connection(
                                "the upstream's stream ended before its final event".into(),
                            ))
                        })),
                        () = tx.closed() => None,
                    };
                }
                member.latency_us.fetch_add(
                    u64::try_from(started.elapsed().as_micros()).unwrap_or(u64::MAX),
                    Ordering::Relaxed,
                );
                match outcome {
                    Ok(()) => member.succeeded(),
                    Err(()) => member.failed(&options),
                }
            });
            return Ok(out);
        }
        Err(last.unwrap_or(BackendError::Closed))
    }

    async fn complete(&self, request: ChatRequest) -> Result<Completion, BackendError> {
        let split = request.n > 1
            && self.members.len() > 1
            && !self.capabilities().native_n
            && self.healthy_count() > 1;
        if split {
            request.validate()?;
            self.complete_split(request).await
        } else {
            self.complete_one(request).await
        }
    }

    fn upstreams(&self) -> Vec<UpstreamStats> {
        self.stats()
    }

    fn counters(&self) -> Vec<BackendCounter> {
        let sum = |f: fn(&Member) -> u64| self.members.iter().map(|m| f(m)).sum();
        vec![
            BackendCounter {
                name: "pool_requests",
                help: "requests sent to upstreams (each attempt counts)",
                value: sum(|m| m.requests.load(Ordering::Relaxed)),
            },
            BackendCounter {
                name: "pool_failures",
                help: "upstream requests that failed",
                value: sum(|m| m.failures.load(Ordering::Relaxed)),
            },
            BackendCounter {
                name: "pool_failovers",
                help: "requests moved to another upstream after a failure before the first byte",
                value: sum(|m| m.failovers.load(Ordering::Relaxed)),
            },
        ]
    }
}
