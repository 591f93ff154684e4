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
//!
//! A run is one path for every approach, `none` included: [`run_in`] runs the strategy,
//! makes up the request's `n` choices (see there), and returns an [`Outcome`] whose
//! choices carry their finish reason and, for `none` asked for them, their logprobs.
//!
//! # Whose sampling settings win
//! A strategy builds each call's settings from the caller's ([`StrategyRequest::sampling`])
//! overlaid by its own for that step ([`StrategyRequest::chat`]): what the strategy sets
//! wins, what it leaves unset is the caller's. `self_consistency` samples at its own
//! temperature whatever the caller asked, because its vote needs diverse samples; change
//! it through the approach's parameters (`self_consistency(temperature=0.3)`). Every call
//! where a strategy overrides a setting the caller gave is marked in the trace
//! ([`TraceEntry::overrides`]) and logged once per run (`tracing`, level info).

use std::sync::{Arc, Mutex};
use std::time::{Duration, Instant};

use async_trait::async_trait;
use serde::{Deserialize, Serialize};

use crate::backend::{Backend, StreamEvent, run_token_job};
use crate::error::BackendError;
use crate::extract::Vote;
use crate::samples::Sample;
use crate::spec::SpecError;
use crate::token::TokenSession;
use crate::types::{
    ChatRequest, Completion, FinishReason, Message, Role, Sampling, Timings, TokenLogprob, Usage,
};

/// Errors of a strategy run (errors of a spec, before any run, are [`SpecError`]s).
#[derive(Debug, thiserror::Error)]
#[non_exhaustive]
pub enum StrategyError {
    #[error(transparent)]
    Backend(#[from] BackendError),
    /// The budget ran out before the strategy had any answer to offer.
    #[error("the budget ran out before any answer was found")]
    BudgetExhausted,
    /// A spec that did not parse or build, for callers that parse, build and run in
    /// one (parsing and building alone return [`SpecError`]).
    #[error(transparent)]
    Spec(#[from] SpecError),
    #[error("the request needs a user message")]
    NoQuery,
    /// The approach cannot answer this kind of request (a multiple-choice approach
    /// given a question without options, logprobs asked of an approach other than
    /// `none`).
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
    /// Where the call's time went, as the backend reported it.
    #[serde(default)]
    pub timings: Timings,
    /// The caller's settings this call's own overrode, as `temperature 0.2 -> 0.7` (see
    /// the module documentation: the strategy's step settings win).
    #[serde(default, skip_serializing_if = "Vec::is_empty")]
    pub overrides: Vec<String>,
    /// The call continued its one message as raw text, without the chat template.
    #[serde(default, skip_serializing_if = "std::ops::Not::not")]
    pub raw: bool,
}

/// The input of a strategy: the same request a backend takes, so an approach is called
/// as a model is. For a strategy its fields mean:
/// - `sampling`: the caller's settings; strategies layer their own per step on top
///   ([`ChatRequest::chat`]);
/// - `n`: choices wanted in the final answer: strategies that can give several honour it,
///   and [`run_in`] runs the others again until there are `n`;
/// - `logprobs`, `format`, `raw`: honoured by `none` only (see
///   [`Strategy::passes_through`]): an approach's answer is not one constrained model call.
pub type StrategyRequest = ChatRequest;

/// What strategies ask of their request.
impl ChatRequest {
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

/// One choice of a run's answer.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct FinalChoice {
    pub text: String,
    /// Why it stopped: that of the final call whose output it is ([`Ctx::final_call`]),
    /// `stop` for an answer the approach composed itself (a vote, a synthesis it cut),
    /// `length` when the budget cut the run.
    pub finish_reason: FinishReason,
    /// Per token, when the request asked for them ([`StrategyRequest::logprobs`]).
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub logprobs: Option<Vec<TokenLogprob>>,
}

impl FinalChoice {
    fn composed(text: String) -> Self {
        Self {
            text,
            finish_reason: FinishReason::EndOfText,
            logprobs: None,
        }
    }
}

/// The result of a run: the answer, its cost and its trace.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct Outcome {
    pub approach: String,
    /// The text of the first choice.
    pub answer: String,
    /// The request's `n` choices (more for a parallel spec `a|b`: one per branch; fewer
    /// only when the budget ran out first), the chosen one first.
    pub choices: Vec<FinalChoice>,
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

    /// Where the run's time went: its wall time, the HTTP requests of all its calls, the
    /// prompt evaluation and decoding they spent (summed), and, for a run of one call,
    /// that call's time to first token.
    pub fn timings(&self) -> Timings {
        let mut t = Timings {
            total: self.wall,
            requests: self.usage.requests,
            ..Timings::default()
        };
        for e in &self.trace {
            t.prompt_eval += e.timings.prompt_eval;
            t.decode += e.timings.decode;
        }
        if let [only] = self.trace.as_slice() {
            t.time_to_first_token = only.timings.time_to_first_token;
        }
        t
    }

    /// The texts of the choices.
    pub fn texts(&self) -> Vec<String> {
        self.choices.iter().map(|c| c.text.clone()).collect()
    }
}

/// Receives the text of a run's final call as it is generated: the choice index, the
/// new text, and its token's logprob when the request asked for them and the delta is
/// one token shown whole. Called from the run's task; it must not block.
pub type TextSink = Arc<dyn Fn(u32, &str, Option<&TokenLogprob>) + Send + Sync>;

/// What a whole run shares: its accounting, trace and samples.
#[derive(Debug, Default)]
struct CtxState {
    usage: RunUsage,
    trace: Vec<TraceEntry>,
    samples: Vec<Sample>,
    /// True once an override of the caller's settings was logged.
    overrides_logged: bool,
}

/// What one strategy run has of its answer so far: the best answer offered, and the
/// choices of the final calls it made (choice index, and the answer part of its text).
/// The runs [`run_in`] adds to make up `n` have a slot each.
#[derive(Debug, Default)]
struct RunSlot {
    best: Option<String>,
    finals: Vec<(u32, FinalChoice)>,
}

/// The calling context of a run: backend, budget, usage, trace, and the sink of the
/// final call (if any). Cheap to clone, so independent calls can run concurrently.
#[derive(Clone)]
pub struct Ctx {
    backend: Arc<dyn Backend>,
    budget: Budget,
    started: Instant,
    /// The caller's settings, to tell when a call overrides them.
    caller: Arc<Sampling>,
    state: Arc<Mutex<CtxState>>,
    slot: Arc<Mutex<RunSlot>>,
    sink: Option<TextSink>,
}

fn locked<S, T>(m: &Mutex<S>, f: impl FnOnce(&mut S) -> T) -> T {
    match m.lock() {
        Ok(mut s) => f(&mut s),
        Err(poisoned) => f(&mut poisoned.into_inner()),
    }
}

impl Ctx {
    pub fn new(backend: Arc<dyn Backend>, budget: Budget) -> Self {
        Self {
            backend,
            budget,
            started: Instant::now(),
            caller: Arc::default(),
            state: Arc::default(),
            slot: Arc::default(),
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

    /// The same run with a slot of its own for a run of the strategy beside the first.
    fn branch(&self) -> Self {
        Self {
            slot: Arc::default(),
            ..self.without_sink()
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
        locked(&self.state, f)
    }

    fn with_slot<T>(&self, f: impl FnOnce(&mut RunSlot) -> T) -> T {
        locked(&self.slot, f)
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

    /// Records samples drawn for a vote; they reach [`Outcome::samples`].
    pub fn record_samples(&self, samples: impl IntoIterator<Item = Sample>) {
        self.with_state(|s| s.samples.extend(samples));
    }

    /// Offers the best answer so far: what the run returns if the budget cuts it.
    pub fn offer(&self, answer: impl Into<String>) {
        let a = answer.into();
        self.with_slot(|s| s.best = Some(a));
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

    /// The settings the caller gave that `sampling` (a call's, before the budget caps
    /// it) sets otherwise. Seeds are left out: strategies derive one per sample.
    fn overrides(&self, sampling: &Sampling) -> Vec<String> {
        fn differs<T: PartialEq + std::fmt::Debug>(
            out: &mut Vec<String>,
            name: &str,
            caller: &Option<T>,
            call: &Option<T>,
        ) {
            if let (Some(a), Some(b)) = (caller, call)
                && a != b
            {
                out.push(format!("{name} {a:?} -> {b:?}"));
            }
        }
        let c = &self.caller;
        let mut out = Vec::new();
        differs(
            &mut out,
            "temperature",
            &c.temperature,
            &sampling.temperature,
        );
        differs(&mut out, "top_p", &c.top_p, &sampling.top_p);
        differs(&mut out, "top_k", &c.top_k, &sampling.top_k);
        differs(&mut out, "min_p", &c.min_p, &sampling.min_p);
        differs(
            &mut out,
            "repeat_penalty",
            &c.repeat_penalty,
            &sampling.repeat_penalty,
        );
        differs(&mut out, "max_tokens", &c.max_tokens, &sampling.max_tokens);
        if !c.stop.is_empty() && c.stop != sampling.stop {
            out.push(format!("stop {:?} -> {:?}", c.stop, sampling.stop));
        }
        out
    }

    #[allow(clippy::too_many_arguments)]
    fn record(
        &self,
        purpose: String,
        request: ChatRequest,
        outputs: Vec<String>,
        usage: Usage,
        timings: Timings,
        overrides: Vec<String>,
        started: Instant,
    ) {
        let requests = timings.requests;
        let log = self.with_state(|s| {
            let first = !overrides.is_empty() && !s.overrides_logged;
            s.overrides_logged |= first;
            first
        });
        if log {
            tracing::info!(
                purpose = %purpose,
                overrides = %overrides.join(", "),
                "the approach's own settings win over the caller's (noted in the trace)"
            );
        }
        let entry = TraceEntry {
            purpose,
            n: request.n,
            raw: request.raw,
            messages: request.messages,
            sampling: request.sampling,
            outputs,
            usage,
            requests,
            elapsed: started.elapsed(),
            timings,
            overrides,
        };
        self.with_state(|s| {
            s.usage.add(&usage, requests);
            s.trace.push(entry);
        });
    }

    fn record_completion(
        &self,
        purpose: String,
        request: ChatRequest,
        completion: &Completion,
        overrides: Vec<String>,
        started: Instant,
    ) {
        self.record(
            purpose,
            request,
            completion.texts(),
            completion.usage,
            completion.timings,
            overrides,
            started,
        );
    }

    /// One model call, accounted and traced. Fails with `BudgetExhausted` when the
    /// budget is spent; caps `max_tokens` to what the budget has left.
    pub async fn call(
        &self,
        purpose: impl Into<String>,
        mut request: ChatRequest,
    ) -> Result<Completion, StrategyError> {
        let overrides = self.overrides(&request.sampling);
        self.admit(&mut request)?;
        let started = Instant::now();
        let call = self.backend.complete(request.clone());
        let completion = match self.time_left() {
            Some(left) => tokio::time::timeout(left, call)
                .await
                .map_err(|_| StrategyError::BudgetExhausted)??,
            None => call.await?,
        };
        self.record_completion(purpose.into(), request, &completion, overrides, started);
        Ok(completion)
    }

    /// The call whose texts the strategy returns as they are, as its answer. With a
    /// sink ([`Ctx::with_sink`]) the call is streamed and every delta reaches the sink
    /// as it is generated; without one it is [`Ctx::call`]. A strategy makes at most
    /// one final call, and only when its answer is decided to be that call's output.
    /// The run's choices take their finish reasons (and logprobs) from it.
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
        request: ChatRequest,
        view: fn(&str) -> &str,
    ) -> Result<Completion, StrategyError> {
        let completion = match self.sink.clone() {
            None => self.call(purpose, request).await?,
            Some(sink) => {
                self.streamed_call(purpose.into(), request, view, sink)
                    .await?
            }
        };
        self.keep_final(&completion, view);
        Ok(completion)
    }

    /// Keeps the choices of a final call, for the finish reasons of the run's answer.
    fn keep_final(&self, completion: &Completion, view: fn(&str) -> &str) {
        let kept: Vec<_> = completion
            .choices
            .iter()
            .map(|c| {
                let shown = view(&c.text);
                let whole = shown.len() == c.text.len();
                let choice = FinalChoice {
                    text: shown.to_string(),
                    finish_reason: c.finish_reason,
                    logprobs: c.logprobs.clone().filter(|_| whole),
                };
                (c.index, choice)
            })
            .collect();
        self.with_slot(|s| s.finals.extend(kept));
    }

    async fn streamed_call(
        &self,
        purpose: String,
        mut request: ChatRequest,
        view: fn(&str) -> &str,
        sink: TextSink,
    ) -> Result<Completion, StrategyError> {
        let overrides = self.overrides(&request.sampling);
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
                Some(Ok(StreamEvent::Delta {
                    index,
                    text,
                    logprob,
                })) => {
                    let i = index as usize;
                    if texts.len() <= i {
                        texts.resize(i + 1, (String::new(), 0));
                    }
                    if let Some((all, sent)) = texts.get_mut(i) {
                        all.push_str(&text);
                        let shown = view(all);
                        if let Some(new) = shown.get(*sent..).filter(|n| !n.is_empty()) {
                            // A logprob belongs to a delta shown whole.
                            let logprob = if new == text { logprob.as_ref() } else { None };
                            sink(index, new, logprob);
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
        self.record_completion(purpose, request, &completion, overrides, started);
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
        let overrides = self.overrides(&request.sampling);
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
        let mut request = request;
        request.n = u32::try_from(outputs.len()).unwrap_or(u32::MAX);
        self.record(
            purpose.into(),
            request,
            outputs,
            usage,
            Timings::default(),
            overrides,
            started,
        );
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
    /// True for an approach whose answer is one model call passed through as it is
    /// (`none`): it alone honours [`StrategyRequest::logprobs`] and
    /// [`StrategyRequest::format`].
    fn passes_through(&self) -> bool {
        false
    }
    /// Runs the approach. Calls go through `ctx`; offer intermediate answers with
    /// [`Ctx::offer`] so a budget cut can still return one.
    async fn run(&self, ctx: &Ctx, request: &StrategyRequest) -> Result<Answer, StrategyError>;
}

/// Checks what `strategy` can take of `request` before anything runs: logprobs,
/// structured output and raw completions only with an approach that passes one call
/// through, and a user message for every other approach.
pub fn check_request(
    strategy: &dyn Strategy,
    request: &StrategyRequest,
) -> Result<(), StrategyError> {
    if strategy.passes_through() {
        return Ok(());
    }
    let refuse = |message: String| StrategyError::Unanswerable {
        approach: strategy.slug().to_string(),
        message,
    };
    if request.logprobs.is_some() {
        return Err(refuse(
            "logprobs are only available with the `none` approach: an approach's answer \
             is not the tokens of one model call"
                .into(),
        ));
    }
    if let Some(f) = &request.format {
        // An approach's answer is often not the output of one model call (a vote, a
        // choice among samples, a composed text), so no grammar could vouch for it.
        return Err(refuse(format!(
            "structured output ({}) is only available with the `none` approach: an \
             approach's answer is not constrained by a grammar",
            f.kind()
        )));
    }
    if request.raw {
        return Err(refuse(
            "a raw completion (text continued without the chat template) is only \
             available with the `none` approach: the other approaches write prompts of \
             their own around the query"
                .into(),
        ));
    }
    request.query()?;
    Ok(())
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
///
/// `n`: when the strategy gives fewer choices than the request's `n`, it runs again,
/// concurrently, once per missing choice (`n` = 1, seed offset by the choice index), in
/// the same run: one budget, one usage, one trace. Only the first run streams. When the
/// budget runs out, the choices found by then are the answer.
pub async fn run_in(
    mut ctx: Ctx,
    strategy: &dyn Strategy,
    request: &StrategyRequest,
) -> Result<Outcome, StrategyError> {
    check_request(strategy, request)?;
    ctx.caller = Arc::new(request.sampling.clone());
    let result = strategy.run(&ctx, request).await;
    let (first, mut choices, mut budget_exhausted) = settle(&ctx, result)?;
    if choices.is_empty() {
        // An approach that found nothing answers with nothing, once.
        choices.push(FinalChoice::composed(String::new()));
    }
    let mut candidates = first.candidates;
    let wanted = request.n.max(1) as usize;
    if choices.len() < wanted {
        let extra = (choices.len()..wanted).map(|i| {
            let mut one = request.clone();
            one.n = 1;
            one.sampling.seed = request
                .sampling
                .seed_for(u32::try_from(i).unwrap_or(u32::MAX));
            let branch = ctx.branch();
            async move {
                let result = strategy.run(&branch, &one).await;
                settle(&branch, result)
            }
        });
        for result in futures::future::join_all(extra).await {
            match result {
                Ok((answer, more, cut)) => {
                    choices.extend(more.into_iter().take(1));
                    candidates.extend(answer.candidates);
                    budget_exhausted |= cut;
                }
                Err(StrategyError::BudgetExhausted) => budget_exhausted = true,
                Err(e) => return Err(e),
            }
        }
    }
    let (usage, trace, samples) = ctx.with_state(|s| {
        (
            s.usage,
            std::mem::take(&mut s.trace),
            std::mem::take(&mut s.samples),
        )
    });
    Ok(Outcome {
        approach: strategy.slug().to_string(),
        answer: choices.first().map(|c| c.text.clone()).unwrap_or_default(),
        choices,
        candidates,
        vote: first.vote,
        usage,
        wall: ctx.started.elapsed(),
        budget_exhausted,
        trace,
        samples,
    })
}

/// The answer of one strategy run in `ctx`'s slot: its choices with their finish
/// reasons, and whether the budget cut it (its answer then is the best offered).
fn settle(
    ctx: &Ctx,
    result: Result<Answer, StrategyError>,
) -> Result<(Answer, Vec<FinalChoice>, bool), StrategyError> {
    let (best, finals) = ctx.with_slot(|s| (s.best.take(), std::mem::take(&mut s.finals)));
    let (answer, cut) = match result {
        Ok(a) => (a, false),
        Err(StrategyError::BudgetExhausted) => match best {
            Some(b) => (Answer::one(b), true),
            None => return Err(StrategyError::BudgetExhausted),
        },
        Err(e) => return Err(e),
    };
    let choices = answer
        .choices
        .iter()
        .zip(0u32..)
        .map(|(text, index)| {
            if cut {
                return FinalChoice {
                    text: text.clone(),
                    finish_reason: FinishReason::Length,
                    logprobs: None,
                };
            }
            // The latest final-call choice that is this text, at this index if one is.
            let at_index = finals
                .iter()
                .rev()
                .find(|(i, f)| *i == index && f.text == *text);
            let any = || finals.iter().rev().find(|(_, f)| f.text == *text);
            match at_index.or_else(any) {
                Some((_, f)) => f.clone(),
                None => FinalChoice::composed(text.clone()),
            }
        })
        .collect();
    Ok((answer, choices, cut))
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
        let sink: TextSink =
            Arc::new(move |i, t: &str, _| into.lock().unwrap().push((i, t.into())));
        (sink, got)
    }

    fn joined(got: &Mutex<Vec<(u32, String)>>, index: u32) -> String {
        let got = got.lock().unwrap();
        got.iter()
            .filter(|(i, _)| *i == index)
            .map(|(_, t)| t.as_str())
            .collect()
    }

    async fn run_streaming_request(
        strategy: &dyn Strategy,
        backend: Arc<dyn Backend>,
        request: &StrategyRequest,
    ) -> (Result<Outcome, StrategyError>, Received) {
        let (sink, got) = recording_sink();
        let ctx = Ctx::new(backend, Budget::default()).with_sink(sink);
        (run_in(ctx, strategy, request).await, got)
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

    #[tokio::test]
    async fn none_carries_finish_reasons_and_logprobs_of_its_call() {
        let mock = Arc::new(MockBackend::constant("one two three four"));
        let mut req = StrategyRequest::user("q");
        req.n = 2;
        req.logprobs = Some(1);
        req.sampling = Sampling::default().with_max_tokens(2);
        let strategy = build_spec(&parse("none").unwrap()).unwrap();
        let (out, got) = run_streaming_request(strategy.as_ref(), mock.clone(), &req).await;
        let out = out.unwrap();
        assert_eq!(out.choices.len(), 2);
        for c in &out.choices {
            assert_eq!(c.text.trim_end(), "one two");
            assert_eq!(c.finish_reason, FinishReason::Length);
            assert_eq!(c.logprobs.as_ref().map(Vec::len), Some(2));
        }
        // Streamed deltas carried their tokens' logprobs.
        let deltas = got.lock().unwrap();
        assert_eq!(deltas.len(), 4);
        assert_eq!(mock.requests()[0].logprobs, Some(1));
    }

    #[tokio::test]
    async fn a_composed_answer_stops_and_a_cut_run_is_length() {
        // moa's synthesis is its final call: its finish reason is the answer's.
        let mock = Arc::new(MockBackend::scripted(["a", "b", "c", "critique", "synth"]));
        let out = run(
            build_spec(&parse("moa").unwrap()).unwrap().as_ref(),
            mock,
            &StrategyRequest::user("q"),
            Budget::default(),
        )
        .await
        .unwrap();
        assert_eq!(out.choices[0].finish_reason, FinishReason::EndOfText);
        assert!(!out.budget_exhausted);

        // A budget that cuts the run: the best answer so far, finish `length`.
        let mock = Arc::new(MockBackend::constant("word word word word word word"));
        let budget = Budget {
            max_total_tokens: Some(1),
            max_duration: None,
        };
        let out = run(
            build_spec(&parse("re2&re2").unwrap()).unwrap().as_ref(),
            mock,
            &StrategyRequest::user("q"),
            budget,
        )
        .await
        .unwrap();
        assert!(out.budget_exhausted);
        assert_eq!(out.choices[0].finish_reason, FinishReason::Length);
    }

    #[tokio::test]
    async fn n_is_made_up_once_in_core_with_one_budget_and_offset_seeds() {
        let mock = Arc::new(MockBackend::new(|r, _| {
            Ok(format!("seed {:?}", r.sampling.seed))
        }));
        let mut req = StrategyRequest::user("q");
        req.n = 3;
        req.sampling = Sampling::default().with_seed(10);
        let strategy = build_spec(&parse("moa").unwrap()).unwrap();
        let out = run(strategy.as_ref(), mock.clone(), &req, Budget::default())
            .await
            .unwrap();
        assert_eq!(out.choices.len(), 3);
        // Three runs of moa (3 calls each) in one usage and one trace.
        assert_eq!(out.usage.calls, 9);
        assert_eq!(out.trace.len(), 9);
        let seeds: std::collections::BTreeSet<Option<u32>> =
            mock.requests().iter().map(|r| r.sampling.seed).collect();
        assert!(seeds.contains(&Some(11)) && seeds.contains(&Some(12)));

        // One budget for all of them: the extra runs stop when it is spent.
        let budget = Budget {
            max_total_tokens: Some(40),
            max_duration: None,
        };
        let small = run(strategy.as_ref(), mock, &req, budget).await.unwrap();
        assert!(small.usage.calls < 9, "{:?}", small.usage);
        assert!(small.choices.len() < 3);
        assert!(small.budget_exhausted);
    }

    #[tokio::test]
    async fn only_none_takes_logprobs_or_a_format() {
        let mut req = StrategyRequest::user("q");
        req.logprobs = Some(0);
        let moa = build_spec(&parse("moa").unwrap()).unwrap();
        let mock = Arc::new(MockBackend::constant("x"));
        let err = run(moa.as_ref(), mock.clone(), &req, Budget::default())
            .await
            .unwrap_err();
        assert!(err.to_string().contains("logprobs"), "{err}");
        assert_eq!(mock.calls(), 0);
        req.logprobs = None;
        req.format = Some(crate::format::ResponseFormat::JsonObject);
        let err = check_request(moa.as_ref(), &req).unwrap_err();
        assert!(err.to_string().contains("structured output"), "{err}");
        let none = build_spec(&parse("none").unwrap()).unwrap();
        assert!(check_request(none.as_ref(), &req).is_ok());
    }

    #[tokio::test]
    async fn a_strategy_overriding_the_callers_settings_is_traced() {
        let mock = Arc::new(MockBackend::constant("The answer is 4."));
        let mut req = StrategyRequest::user("2+2?");
        req.sampling = Sampling::default().with_temperature(0.2);
        let sc = build_spec(&parse("self_consistency(k=2,temperature=0.9)").unwrap()).unwrap();
        let out = run(sc.as_ref(), mock.clone(), &req, Budget::default())
            .await
            .unwrap();
        assert!(
            out.trace.iter().any(|e| e
                .overrides
                .iter()
                .any(|o| o.starts_with("temperature 0.2 -> 0.9"))),
            "{:?}",
            out.trace.iter().map(|e| &e.overrides).collect::<Vec<_>>()
        );
        // A call that keeps the caller's settings notes nothing.
        let none = build_spec(&parse("none").unwrap()).unwrap();
        let out = run(none.as_ref(), mock, &req, Budget::default())
            .await
            .unwrap();
        assert!(out.trace[0].overrides.is_empty());
    }
}
