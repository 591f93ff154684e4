//! The [`Strategy`] abstraction: an inference-time approach written once over any [`Backend`].
//!
//! A strategy makes its model calls through a [`Ctx`], which sums usage, records a
//! trace entry per call, enforces the request's [`Budget`] and keeps the best answer
//! offered so far, so that a run cut by the budget still returns an answer.
//!
//! A run may carry a [`TextSink`]: the tokens of its *final call* (the call whose texts
//! the strategy returns as they are, made with [`Ctx::final_call`]) reach the sink as
//! they are generated, so a server or a CLI can stream the last stage of a multi-stage
//! approach token by token; [`Ctx::final_call_viewed`] streams only the part of them that
//! is the answer (the `<output>` section of `cot_reflection`). Calls made with
//! [`Ctx::call`] never reach it.

use std::sync::{Arc, Mutex};
use std::time::{Duration, Instant};

use async_trait::async_trait;
use serde::{Deserialize, Serialize};

use crate::backend::{Backend, StreamEvent, run_token_job};
use crate::error::BackendError;
use crate::extract::Vote;
use crate::samples::Sample;
use crate::token::TokenSession;
use crate::types::{ChatRequest, Completion, Message, Role, Sampling, Usage};

/// Errors of a strategy run.
#[derive(Debug, thiserror::Error)]
#[non_exhaustive]
pub enum StrategyError {
    #[error(transparent)]
    Backend(#[from] BackendError),
    /// The budget ran out before the strategy had any answer to offer.
    #[error("the budget ran out before any answer was found")]
    BudgetExhausted,
    #[error("unknown approach `{0}`")]
    UnknownApproach(String),
    #[error("bad parameter for `{approach}`: {message}")]
    BadParameter { approach: String, message: String },
    #[error("bad approach spec at {position}: {message}")]
    BadSpec { position: usize, message: String },
    #[error("the request needs a user message")]
    NoQuery,
    /// The approach cannot answer this kind of request (a multiple-choice approach
    /// given a question without options).
    #[error("`{approach}` cannot answer this request: {message}")]
    Unanswerable { approach: String, message: String },
}

/// Limits on one strategy run.
#[derive(Debug, Clone, Copy, Default, PartialEq, Serialize, Deserialize)]
pub struct Budget {
    /// Most prompt + completion tokens over all calls.
    pub max_total_tokens: Option<u64>,
    /// Longest wall time of the run.
    pub max_duration: Option<Duration>,
}

/// Usage summed over every call of a run.
#[derive(Debug, Clone, Copy, Default, PartialEq, Eq, Serialize, Deserialize)]
pub struct RunUsage {
    /// Backend calls the approach made (one per call, whatever its `n`).
    pub calls: u32,
    /// HTTP requests remote backends sent for those calls ([`crate::types::Timings::requests`]: a
    /// call of `n` samples the server would not batch is `n` requests); 0 in process.
    #[serde(default)]
    pub requests: u32,
    pub prompt_tokens: u64,
    pub completion_tokens: u64,
}

impl RunUsage {
    pub fn total_tokens(&self) -> u64 {
        self.prompt_tokens + self.completion_tokens
    }
    /// Adds one call that used `u` and took `requests` HTTP requests.
    fn add(&mut self, u: &Usage, requests: u32) {
        self.calls += 1;
        self.requests += requests;
        self.prompt_tokens += u64::from(u.prompt_tokens);
        self.completion_tokens += u64::from(u.completion_tokens);
    }
}

/// One model call of a run.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct TraceEntry {
    /// What the call was for ("sample", "rate candidate 2", "critique", ...).
    pub purpose: String,
    pub messages: Vec<Message>,
    pub sampling: Sampling,
    pub n: u32,
    pub outputs: Vec<String>,
    pub usage: Usage,
    /// HTTP requests the call took (see [`RunUsage::requests`]).
    #[serde(default)]
    pub requests: u32,
    pub elapsed: Duration,
}

/// The input of a strategy: the conversation and the caller's base settings.
#[derive(Debug, Clone, PartialEq)]
pub struct StrategyRequest {
    pub messages: Vec<Message>,
    /// The caller's sampling settings; strategies layer their own per step on top.
    pub sampling: Sampling,
    /// Choices wanted in the final answer (strategies that can give several honour it).
    pub n: u32,
}

impl StrategyRequest {
    pub fn new(messages: Vec<Message>) -> Self {
        Self {
            messages,
            sampling: Sampling::default(),
            n: 1,
        }
    }
    pub fn user(prompt: impl Into<String>) -> Self {
        Self::new(vec![Message::user(prompt)])
    }
    /// The system prompt, if any.
    pub fn system(&self) -> Option<&str> {
        self.messages
            .iter()
            .find(|m| m.role == Role::System)
            .map(|m| m.content.as_str())
    }
    /// The last user message: the query.
    pub fn query(&self) -> Result<&str, StrategyError> {
        crate::types::last_user(&self.messages).ok_or(StrategyError::NoQuery)
    }
    /// The conversation with its last user message replaced by `query`.
    pub fn with_query(&self, query: &str) -> Vec<Message> {
        let mut messages = self.messages.clone();
        match messages.iter_mut().rev().find(|m| m.role == Role::User) {
            Some(m) => m.content = query.to_string(),
            None => messages.push(Message::user(query)),
        }
        messages
    }
    /// A chat request: `messages`, the caller's settings overlaid by `step`.
    pub fn chat(&self, messages: Vec<Message>, step: &Sampling) -> ChatRequest {
        ChatRequest::new(messages).with_sampling(self.sampling.merged(step))
    }
}

/// What a strategy returns.
#[derive(Debug, Clone, Default, PartialEq, Serialize, Deserialize)]
pub struct Answer {
    /// Final answers, the chosen one first (more than one for `n > 1` or `a|b`).
    pub choices: Vec<String>,
    /// Candidates considered on the way.
    pub candidates: Vec<String>,
    /// The vote that chose the answer, for approaches that vote on extracted answers.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub vote: Option<Vote>,
}

impl Answer {
    pub fn one(text: impl Into<String>) -> Self {
        Self {
            choices: vec![text.into()],
            ..Self::default()
        }
    }
    pub fn with_candidates(mut self, candidates: Vec<String>) -> Self {
        self.candidates = candidates;
        self
    }
    pub fn with_vote(mut self, vote: Option<Vote>) -> Self {
        self.vote = vote;
        self
    }
}

/// The result of a run: the answer, its cost and its trace.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct Outcome {
    pub approach: String,
    pub answer: String,
    pub choices: Vec<String>,
    pub candidates: Vec<String>,
    /// The vote that chose the answer (see [`Answer::vote`]).
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub vote: Option<Vote>,
    pub usage: RunUsage,
    pub wall: Duration,
    /// True when the budget stopped the run and `answer` is the best found so far.
    pub budget_exhausted: bool,
    pub trace: Vec<TraceEntry>,
    /// Every sample a voting strategy drew, in the order drawn, with its extracted
    /// answer and confidence (see [`crate::samples`]); empty for other approaches.
    #[serde(default, skip_serializing_if = "Vec::is_empty")]
    pub samples: Vec<Sample>,
}

impl Outcome {
    /// The trace as JSON Lines, one call per line.
    pub fn trace_jsonl(&self) -> String {
        self.trace
            .iter()
            .filter_map(|e| serde_json::to_string(e).ok())
            .map(|l| l + "\n")
            .collect()
    }
}

/// Receives the text of a run's final call as it is generated: the choice index and
/// the new text. Called from the run's task; it must not block.
pub type TextSink = Arc<dyn Fn(u32, &str) + Send + Sync>;

#[derive(Debug, Default)]
struct CtxState {
    usage: RunUsage,
    trace: Vec<TraceEntry>,
    best: Option<String>,
    samples: Vec<Sample>,
}

/// The calling context of a run: backend, budget, usage, trace, and the sink of the
/// final call (if any). Cheap to clone, so independent calls can run concurrently.
#[derive(Clone)]
pub struct Ctx {
    backend: Arc<dyn Backend>,
    budget: Budget,
    started: Instant,
    state: Arc<Mutex<CtxState>>,
    sink: Option<TextSink>,
}

impl Ctx {
    pub fn new(backend: Arc<dyn Backend>, budget: Budget) -> Self {
        Self {
            backend,
            budget,
            started: Instant::now(),
            state: Arc::default(),
            sink: None,
        }
    }

    /// The context with a sink for the text of the final call (see [`Ctx::final_call`]).
    pub fn with_sink(mut self, sink: TextSink) -> Self {
        self.sink = Some(sink);
        self
    }

    /// The same run (usage, trace, budget) without the sink: for the stages and branches
    /// of a combinator whose answer is not the run's answer as it is.
    pub fn without_sink(&self) -> Self {
        Self {
            sink: None,
            ..self.clone()
        }
    }

    /// True when final calls stream to a sink.
    pub fn streams(&self) -> bool {
        self.sink.is_some()
    }

    pub fn backend(&self) -> &Arc<dyn Backend> {
        &self.backend
    }

    fn with_state<T>(&self, f: impl FnOnce(&mut CtxState) -> T) -> T {
        match self.state.lock() {
            Ok(mut s) => f(&mut s),
            Err(poisoned) => f(&mut poisoned.into_inner()),
        }
    }

    pub fn usage(&self) -> RunUsage {
        self.with_state(|s| s.usage)
    }

    /// Tokens left in the budget (`None`: unlimited).
    pub fn tokens_left(&self) -> Option<u64> {
        let used = self.usage().total_tokens();
        self.budget
            .max_total_tokens
            .map(|max| max.saturating_sub(used))
    }

    /// True once the token budget or the deadline is spent.
    pub fn exhausted(&self) -> bool {
        self.tokens_left() == Some(0)
            || self
                .budget
                .max_duration
                .is_some_and(|d| self.started.elapsed() >= d)
    }

    /// Offers the best answer so far: what the run returns if the budget cuts it.
    /// Records samples drawn for a vote; they reach [`Outcome::samples`].
    pub fn record_samples(&self, samples: impl IntoIterator<Item = Sample>) {
        self.with_state(|s| s.samples.extend(samples));
    }

    pub fn offer(&self, answer: impl Into<String>) {
        let a = answer.into();
        self.with_state(|s| s.best = Some(a));
    }

    /// Checks the budget and caps `max_tokens` to what it has left.
    fn admit(&self, request: &mut ChatRequest) -> Result<(), StrategyError> {
        if self.exhausted() {
            return Err(StrategyError::BudgetExhausted);
        }
        if let Some(left) = self.tokens_left() {
            let per_choice = (left / u64::from(request.n.max(1))).max(1);
            let cap = u32::try_from(per_choice).unwrap_or(u32::MAX);
            request.sampling.max_tokens =
                Some(request.sampling.max_tokens.map_or(cap, |m| m.min(cap)));
        }
        Ok(())
    }

    /// What is left of the wall-time budget (`None`: unlimited).
    fn time_left(&self) -> Option<Duration> {
        self.budget
            .max_duration
            .map(|d| d.saturating_sub(self.started.elapsed()))
    }

    fn record(
        &self,
        purpose: String,
        request: ChatRequest,
        completion: &Completion,
        started: Instant,
    ) {
        let entry = TraceEntry {
            purpose,
            messages: request.messages,
            sampling: request.sampling,
            n: request.n,
            outputs: completion.texts(),
            usage: completion.usage,
            requests: completion.timings.requests,
            elapsed: started.elapsed(),
        };
        self.with_state(|s| {
            s.usage.add(&completion.usage, completion.timings.requests);
            s.trace.push(entry);
        });
    }

    /// One model call, accounted and traced. Fails with `BudgetExhausted` when the
    /// budget is spent; caps `max_tokens` to what the budget has left.
    pub async fn call(
        &self,
        purpose: impl Into<String>,
        mut request: ChatRequest,
    ) -> Result<Completion, StrategyError> {
        self.admit(&mut request)?;
        let started = Instant::now();
        let call = self.backend.complete(request.clone());
        let completion = match self.time_left() {
            Some(left) => tokio::time::timeout(left, call)
                .await
                .map_err(|_| StrategyError::BudgetExhausted)??,
            None => call.await?,
        };
        self.record(purpose.into(), request, &completion, started);
        Ok(completion)
    }

    /// The call whose texts the strategy returns as they are, as its answer. With a
    /// sink ([`Ctx::with_sink`]) the call is streamed and every delta reaches the sink
    /// as it is generated; without one it is [`Ctx::call`]. A strategy makes at most
    /// one final call, and only when its answer is decided to be that call's output.
    ///
    /// When the deadline cuts a streamed call, the text streamed so far (choice 0) is
    /// offered as the best answer, so that what the sink received is what the run
    /// returns.
    pub async fn final_call(
        &self,
        purpose: impl Into<String>,
        request: ChatRequest,
    ) -> Result<Completion, StrategyError> {
        self.final_call_viewed(purpose, request, |text| text).await
    }

    /// [`Ctx::final_call`] for a strategy whose answer is a part of the call's text: the
    /// sink receives, per choice, the growth of `view` of the text generated so far.
    /// `view` must only grow as the text grows (each result a prefix of the next) and
    /// be a prefix of the answer the strategy makes of the whole text, such as the
    /// settled start of an `<output>` section. The completion keeps the whole texts.
    pub async fn final_call_viewed(
        &self,
        purpose: impl Into<String>,
        mut request: ChatRequest,
        view: fn(&str) -> &str,
    ) -> Result<Completion, StrategyError> {
        let Some(sink) = self.sink.clone() else {
            return self.call(purpose, request).await;
        };
        self.admit(&mut request)?;
        let started = Instant::now();
        let deadline = self.time_left().map(|d| tokio::time::Instant::now() + d);
        // Per choice: the text generated so far, and how much of its view was sent.
        let mut texts: Vec<(String, usize)> = Vec::new();
        let cut = |texts: &[(String, usize)]| {
            let streamed = texts.first().map_or("", |(text, _)| view(text));
            if !streamed.is_empty() {
                self.offer(streamed);
            }
            StrategyError::BudgetExhausted
        };
        let open = self.backend.stream(request.clone());
        let mut stream = match deadline {
            Some(at) => tokio::time::timeout_at(at, open)
                .await
                .map_err(|_| cut(&[]))??,
            None => open.await?,
        };
        let completion = loop {
            let next = match deadline {
                Some(at) => tokio::time::timeout_at(at, stream.next_event())
                    .await
                    .map_err(|_| cut(&texts))?,
                None => stream.next_event().await,
            };
            match next {
                Some(Ok(StreamEvent::Delta { index, text, .. })) => {
                    let i = index as usize;
                    if texts.len() <= i {
                        texts.resize(i + 1, (String::new(), 0));
                    }
                    if let Some((all, sent)) = texts.get_mut(i) {
                        all.push_str(&text);
                        let shown = view(all);
                        if let Some(new) = shown.get(*sent..).filter(|n| !n.is_empty()) {
                            sink(index, new);
                            *sent = shown.len();
                        }
                    }
                }
                Some(Ok(StreamEvent::Done(completion))) => break completion,
                Some(Err(e)) => return Err(e.into()),
                None => {
                    return Err(BackendError::Protocol(
                        "the backend stream ended before its final event".into(),
                    )
                    .into());
                }
            }
        };
        self.record(purpose.into(), request, &completion, started);
        Ok(completion)
    }

    /// What a token job may still spend: checked by the job itself at each step,
    /// because it runs on the backend's worker where the budget cannot interrupt it.
    pub fn token_limits(&self) -> TokenLimits {
        TokenLimits {
            tokens_left: self.tokens_left(),
            deadline: self.budget.max_duration.map(|d| self.started + d),
        }
    }

    /// One token-level job (logit-level strategies), accounted as one call and traced.
    ///
    /// `f` runs on the backend's worker with a [`TokenSession`] whose sequence 0 holds the
    /// evaluated prompt of `request`, and the run's [`TokenLimits`]; it returns its value and
    /// the texts it produced (for the trace). The session's usage is added to the run.
    /// Fails with [`BackendError::Unsupported`] naming the `token_control` capability when
    /// the backend does not have it.
    pub async fn token_job<T, F>(
        &self,
        purpose: impl Into<String>,
        request: ChatRequest,
        f: F,
    ) -> Result<T, StrategyError>
    where
        T: Send + 'static,
        F: FnOnce(&mut dyn TokenSession, &TokenLimits) -> Result<(T, Vec<String>), BackendError>
            + Send
            + 'static,
    {
        if !self.backend.capabilities().token_control {
            return Err(BackendError::unsupported(
                self.backend.model(),
                "the `token_control` capability (token-level access to logits and branching), \
                 which logit-level approaches need",
            )
            .into());
        }
        if self.exhausted() {
            return Err(StrategyError::BudgetExhausted);
        }
        let limits = self.token_limits();
        let started = Instant::now();
        let job = run_token_job(self.backend.as_ref(), request.clone(), move |session| {
            let (value, outputs) = f(session, &limits)?;
            Ok((value, outputs, session.usage()))
        });
        let (value, outputs, usage) = match self.budget.max_duration {
            Some(d) => {
                // One step past the deadline: the job checks it itself and stops early.
                let left = d.saturating_sub(self.started.elapsed()) + Duration::from_secs(5);
                tokio::time::timeout(left, job)
                    .await
                    .map_err(|_| StrategyError::BudgetExhausted)??
            }
            None => job.await?,
        };
        let entry = TraceEntry {
            purpose: purpose.into(),
            messages: request.messages,
            sampling: request.sampling,
            n: u32::try_from(outputs.len()).unwrap_or(u32::MAX),
            outputs,
            usage,
            requests: 0,
            elapsed: started.elapsed(),
        };
        self.with_state(|s| {
            s.usage.add(&usage, 0);
            s.trace.push(entry);
        });
        Ok(value)
    }

    /// `call` for one text.
    pub async fn text(
        &self,
        purpose: impl Into<String>,
        request: ChatRequest,
    ) -> Result<String, StrategyError> {
        Ok(self.call(purpose, request).await?.text().to_string())
    }

    /// `final_call` for one text.
    pub async fn final_text(
        &self,
        purpose: impl Into<String>,
        request: ChatRequest,
    ) -> Result<String, StrategyError> {
        Ok(self.final_call(purpose, request).await?.text().to_string())
    }
}

/// Limits a token job checks at each step (see [`Ctx::token_job`]).
#[derive(Debug, Clone, Copy, Default, PartialEq)]
pub struct TokenLimits {
    /// Tokens (prompt + generated) the run may still spend when the job starts.
    pub tokens_left: Option<u64>,
    /// When the run's wall-time budget ends.
    pub deadline: Option<Instant>,
}

impl TokenLimits {
    /// No limits.
    pub fn none() -> Self {
        Self::default()
    }

    /// True once the session has spent the tokens left or the deadline has passed.
    pub fn exhausted(&self, session: &dyn TokenSession) -> bool {
        self.tokens_left
            .is_some_and(|left| u64::from(session.usage().total()) >= left)
            || self.deadline.is_some_and(|d| Instant::now() >= d)
    }

    /// Tokens the session may still generate (`None`: unlimited).
    pub fn generation_left(&self, session: &dyn TokenSession) -> Option<u64> {
        self.tokens_left
            .map(|left| left.saturating_sub(u64::from(session.usage().total())))
    }
}

/// An inference-time approach.
#[async_trait]
pub trait Strategy: Send + Sync {
    /// The registry slug (`moa`, `self_consistency`, ...).
    fn slug(&self) -> &str;
    /// Runs the approach. Calls go through `ctx`; offer intermediate answers with
    /// [`Ctx::offer`] so a budget cut can still return one.
    async fn run(&self, ctx: &Ctx, request: &StrategyRequest) -> Result<Answer, StrategyError>;
}

/// Runs `strategy` on `backend` and returns its outcome with usage, wall time and trace.
pub async fn run(
    strategy: &dyn Strategy,
    backend: Arc<dyn Backend>,
    request: &StrategyRequest,
    budget: Budget,
) -> Result<Outcome, StrategyError> {
    run_in(Ctx::new(backend, budget), strategy, request).await
}

/// [`run`] in a context made by the caller, e.g. one with a sink
/// ([`Ctx::with_sink`]) that receives the final call's text as it is generated.
pub async fn run_in(
    ctx: Ctx,
    strategy: &dyn Strategy,
    request: &StrategyRequest,
) -> Result<Outcome, StrategyError> {
    let result = strategy.run(&ctx, request).await;
    let (usage, trace, best, samples) = ctx.with_state(|s| {
        (
            s.usage,
            std::mem::take(&mut s.trace),
            s.best.take(),
            std::mem::take(&mut s.samples),
        )
    });
    let (answer, budget_exhausted) = match result {
        Ok(a) => (a, false),
        Err(StrategyError::BudgetExhausted) => match best {
            Some(b) => (Answer::one(b), true),
            None => return Err(StrategyError::BudgetExhausted),
        },
        Err(e) => return Err(e),
    };
    Ok(Outcome {
        approach: strategy.slug().to_string(),
        answer: answer.choices.first().cloned().unwrap_or_default(),
        choices: answer.choices,
        candidates: answer.candidates,
        vote: answer.vote,
        usage,
        wall: ctx.started.elapsed(),
        budget_exhausted,
        trace,
        samples,
    })
}

#[cfg(test)]
mod tests {
    use std::sync::Mutex;

    use super::*;
    use crate::backend::{CompletionStream, stream_channel};
    use crate::mock::MockBackend;
    use crate::spec::parse;
    use crate::strategies::build_spec;
    use crate::types::Capabilities;

    /// The deltas a sink received: (choice index, text).
    type Received = Arc<Mutex<Vec<(u32, String)>>>;

    /// A sink that records every delta, and the deltas it received.
    fn recording_sink() -> (TextSink, Received) {
        let got: Received = Arc::default();
        let into = Arc::clone(&got);
        let sink: TextSink = Arc::new(move |i, t: &str| into.lock().unwrap().push((i, t.into())));
        (sink, got)
    }

    fn joined(got: &Mutex<Vec<(u32, String)>>, index: u32) -> String {
        let got = got.lock().unwrap();
        got.iter()
            .filter(|(i, _)| *i == index)
            .map(|(_, t)| t.as_str())
            .collect()
    }

    async fn run_streaming(
        spec: &str,
        backend: Arc<dyn Backend>,
        request: &StrategyRequest,
        budget: Budget,
    ) -> (
        Result<Outcome, StrategyError>,
        Arc<Mutex<Vec<(u32, String)>>>,
    ) {
        let (sink, got) = recording_sink();
        let strategy = build_spec(&parse(spec).unwrap()).unwrap();
        let ctx = Ctx::new(backend, budget).with_sink(sink);
        (run_in(ctx, strategy.as_ref(), request).await, got)
    }

    #[tokio::test]
    async fn final_call_streams_to_the_sink_and_call_does_not() {
        let mock = Arc::new(MockBackend::constant("one two three"));
        let (sink, got) = recording_sink();
        let ctx = Ctx::new(mock.clone(), Budget::default()).with_sink(sink);
        let plain = ctx.call("plain", ChatRequest::user("q")).await.unwrap();
        assert_eq!(plain.text(), "one two three");
        assert!(got.lock().unwrap().is_empty());

        let fin = ctx
            .final_call("final", ChatRequest::user("q").with_n(2))
            .await
            .unwrap();
        assert_eq!(fin.texts(), vec!["one two three", "one two three"]);
        assert_eq!(
            got.lock().unwrap().len(),
            6,
            "one delta per word and choice"
        );
        assert_eq!(joined(&got, 0), "one two three");
        assert_eq!(joined(&got, 1), "one two three");
        // Accounted and traced like any call.
        let usage = ctx.usage();
        assert_eq!(usage.calls, 2);
        assert_eq!(usage.completion_tokens, 9);
        let purposes: Vec<String> =
            ctx.with_state(|s| s.trace.iter().map(|e| e.purpose.clone()).collect());
        assert_eq!(purposes, vec!["plain", "final"]);

        // Without a sink a final call is a plain call.
        let quiet = Ctx::new(mock, Budget::default());
        assert!(!quiet.streams() && ctx.streams() && !ctx.without_sink().streams());
        let c = quiet
            .final_call("final", ChatRequest::user("q"))
            .await
            .unwrap();
        assert_eq!(c.text(), "one two three");
    }

    #[tokio::test]
    async fn only_the_last_stage_of_a_pipeline_streams() {
        let mock = Arc::new(MockBackend::scripted(["stage one text", "stage two text"]));
        let (out, got) = run_streaming(
            "re2&re2",
            mock,
            &StrategyRequest::user("q"),
            Budget::default(),
        )
        .await;
        let out = out.unwrap();
        assert_eq!(out.answer, "stage two text");
        assert_eq!(joined(&got, 0), "stage two text");
    }

    #[tokio::test]
    async fn cot_reflection_streams_its_output_section_only() {
        let mock = Arc::new(MockBackend::constant(
            "<thinking>6 times 7 <reflection>checked</reflection></thinking>\n<output>\n              The answer is 42.\n</output> trailing words",
        ));
        let (out, got) = run_streaming(
            "cot_reflection",
            mock,
            &StrategyRequest::user("6*7?"),
            Budget::default(),
        )
        .await;
        assert_eq!(out.unwrap().answer, "The answer is 42.");
        assert_eq!(joined(&got, 0), "The answer is 42.");
    }

    #[tokio::test]
    async fn parallel_branches_do_not_stream() {
        let mock = Arc::new(MockBackend::constant("branch text"));
        let (out, got) = run_streaming(
            "re2|none",
            mock,
            &StrategyRequest::user("q"),
            Budget::default(),
        )
        .await;
        assert_eq!(out.unwrap().choices.len(), 2);
        assert!(got.lock().unwrap().is_empty());
    }

    #[tokio::test]
    async fn moa_streams_its_synthesis_only() {
        let mock = Arc::new(MockBackend::scripted([
            "candidate a",
            "candidate b",
            "candidate c",
            "the critique",
            "the synthesis of all",
        ]));
        let (out, got) =
            run_streaming("moa", mock, &StrategyRequest::user("q"), Budget::default()).await;
        let out = out.unwrap();
        assert_eq!(out.answer, "the synthesis of all");
        assert_eq!(out.usage.calls, 3);
        assert_eq!(joined(&got, 0), "the synthesis of all");
    }

    /// Streams two deltas, then never finishes.
    struct Stalls;

    #[async_trait]
    impl Backend for Stalls {
        fn model(&self) -> &str {
            "stalls"
        }
        fn capabilities(&self) -> Capabilities {
            Capabilities::default()
        }
        async fn stream(&self, _: ChatRequest) -> Result<CompletionStream, BackendError> {
            let (tx, stream) = stream_channel();
            tokio::spawn(async move {
                for word in ["partial ", "answer "] {
                    tx.send(Ok(StreamEvent::Delta {
                        index: 0,
                        text: word.into(),
                        logprob: None,
                    }))
                    .await;
                }
                tx.closed().await;
            });
            Ok(stream)
        }
    }

    #[tokio::test]
    async fn a_deadline_in_the_final_call_returns_what_was_streamed() {
        let budget = Budget {
            max_total_tokens: None,
            max_duration: Some(Duration::from_millis(200)),
        };
        let (out, got) = run_streaming(
            "none",
            Arc::new(Stalls),
            &StrategyRequest::user("q"),
            budget,
        )
        .await;
        let out = out.unwrap();
        assert!(out.budget_exhausted);
        assert_eq!(out.answer, "partial answer ");
        assert_eq!(joined(&got, 0), out.answer);
    }
}
