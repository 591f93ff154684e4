//! [`OpenAiBackend`]: the [`Backend`] trait over `/chat/completions`.

use std::collections::BTreeMap;
use std::sync::Arc;
use std::sync::atomic::{AtomicBool, Ordering};
use std::time::{Duration, Instant};

use async_trait::async_trait;
use bytes::Bytes;
use optillm_core::{
    Backend, BackendError, Capabilities, ChatRequest, Choice, Completion, CompletionStream,
    FinishReason, FormatSupport, ResponseFormat, Sampling, StreamEvent, StreamSender, Timings,
    TokenLogprob, Usage, stream_channel,
};
use reqwest::header::{AUTHORIZATION, CONTENT_TYPE, HeaderMap, HeaderValue};
use tokio::sync::Semaphore;
use tokio::task::JoinSet;
use tracing::{debug, warn};
use url::Url;

use crate::config::OpenAiConfig;
use crate::error::OpenAiError;
use crate::http::{self, Policy};
use crate::sse::{SseBuffer, SseEvent};
use crate::wire::{self, ChatBody, Chunk, Models, Response, StreamOptions, WireTimings, WireUsage};

/// A model the server offers (`GET /models`).
#[derive(Debug, Clone, PartialEq, Eq)]
#[non_exhaustive]
pub struct OpenAiModel {
    pub id: String,
    pub owned_by: Option<String>,
    pub created: Option<u64>,
}

/// The OpenAI-compatible backend. Cheap to clone; clones share the connection pool, the
/// concurrency limit and what was learnt about `n`.
#[derive(Debug, Clone)]
pub struct OpenAiBackend {
    inner: Arc<Inner>,
}

#[derive(Debug)]
struct Inner {
    config: OpenAiConfig,
    base: Url,
    clients: http::Clients,
    policy: Policy,
    permits: Arc<Semaphore>,
    /// Whether `n > 1` is still sent natively (false once the server refused it).
    native_n: AtomicBool,
}

impl OpenAiBackend {
    /// A backend for `config`: checks the URL, reads the API key, builds the HTTP client
    /// (no request yet).
    pub fn new(config: OpenAiConfig) -> Result<Self, OpenAiError> {
        if config.model.trim().is_empty() {
            return Err(OpenAiError::EmptyModel);
        }
        if config.max_concurrency == 0 {
            return Err(OpenAiError::ZeroConcurrency);
        }
        if config.idle_timeout.is_zero() {
            return Err(OpenAiError::ZeroLimit("idle_timeout"));
        }
        if config.max_line_bytes == 0 {
            return Err(OpenAiError::ZeroLimit("max_line_bytes"));
        }
        if config.max_body_bytes == 0 {
            return Err(OpenAiError::ZeroLimit("max_body_bytes"));
        }
        let base = http::base_url(&config.base_url)?;
        let (key, source_name) = match &config.api_key {
            Some(k) => (Some(k.clone()), "api_key".to_string()),
            None => (
                std::env::var(&config.api_key_env)
                    .ok()
                    .filter(|k| !k.trim().is_empty()),
                config.api_key_env.clone(),
            ),
        };
        let mut headers = HeaderMap::new();
        if let Some(key) = key {
            let mut value = HeaderValue::from_str(&format!("Bearer {}", key.trim()))
                .map_err(|_| OpenAiError::InvalidApiKey { source_name })?;
            value.set_sensitive(true);
            headers.insert(AUTHORIZATION, value);
        }
        let clients =
            http::Clients::new(config.connect_timeout, headers).map_err(OpenAiError::Client)?;
        let policy = Policy {
            connect_timeout: config.connect_timeout,
            first_byte_timeout: config.first_byte_timeout,
            idle_timeout: config.idle_timeout,
            max_retries: config.max_retries,
            retry_backoff: config.retry_backoff,
            max_line_bytes: config.max_line_bytes,
            max_body_bytes: config.max_body_bytes,
        };
        Ok(Self {
            inner: Arc::new(Inner {
                permits: Arc::new(Semaphore::new(config.max_concurrency)),
                config,
                base,
                clients,
                policy,
                native_n: AtomicBool::new(true),
            }),
        })
    }

    pub fn config(&self) -> &OpenAiConfig {
        &self.inner.config
    }

    /// The models the server offers (`GET /models`).
    pub async fn list_models(&self) -> Result<Vec<OpenAiModel>, BackendError> {
        let url = self.inner.endpoint("models")?;
        let inner = &self.inner;
        let opened = http::open(&inner.policy, &inner.clients, &inner.config.model, |c| {
            c.get(url.clone())
        })
        .await?;
        let body = http::read_all(opened).await?;
        let models: Models = serde_json::from_slice(&body).map_err(|e| malformed(&e, &body))?;
        Ok(models
            .data
            .into_iter()
            .map(|m| OpenAiModel {
                id: m.id,
                owned_by: m.owned_by,
                created: m.created,
            })
            .collect())
    }

    fn start(
        &self,
        request: ChatRequest,
        streaming: bool,
    ) -> Result<CompletionStream, BackendError> {
        request.validate()?;
        let sampling = self.inner.config.sampling.merged(&request.sampling);
        sampling.validate()?;
        if let Some(ResponseFormat::Grammar { .. }) = &request.format {
            if !self.inner.config.grammar {
                return Err(BackendError::unsupported(
                    "this OpenAI-compatible server",
                    "GBNF grammars (only llama-server takes them: configure the backend \
                     with OpenAiConfig::with_grammar(true))",
                ));
            }
        }
        let (tx, stream) = stream_channel();
        let inner = Arc::clone(&self.inner);
        tokio::spawn(async move {
            tokio::select! {
                result = inner.produce(&request, &sampling, streaming, &tx) => {
                    let event = match result {
                        Ok(Some(c)) => Ok(StreamEvent::Done(c)),
                        Ok(None) => return,
                        Err(e) => Err(e),
                    };
                    let _ = tx.send(event).await;
                }
                _ = tx.closed() => debug!("the consumer dropped the stream; cancelling"),
            }
        });
        Ok(stream)
    }
}

#[async_trait]
impl Backend for OpenAiBackend {
    fn model(&self) -> &str {
        &self.inner.config.model
    }

    fn capabilities(&self) -> Capabilities {
        Capabilities {
            native_n: self.inner.native_n.load(Ordering::Relaxed),
            logprobs: true,
            max_top_logprobs: 20,
            token_control: false,
            context_length: None,
            formats: FormatSupport {
                json_object: true,
                json_schema: true,
                grammar: self.inner.config.grammar,
            },
        }
    }

    /// Streams the answer (`stream: true`). Errors, HTTP ones included, arrive as an
    /// event of the stream.
    async fn stream(&self, request: ChatRequest) -> Result<CompletionStream, BackendError> {
        self.start(request, true)
    }

    /// The whole answer in one response (`stream: false`).
    async fn complete(&self, request: ChatRequest) -> Result<Completion, BackendError> {
        self.start(request, false)?.collect().await
    }
}

/// The `response_format` of a request (`None` for free text and for a GBNF grammar,
/// which goes in `grammar`).
fn response_format(format: Option<&ResponseFormat>) -> Option<serde_json::Value> {
    match format? {
        ResponseFormat::JsonObject => Some(serde_json::json!({"type": "json_object"})),
        ResponseFormat::JsonSchema { schema } => Some(serde_json::json!({
            "type": "json_schema",
            "json_schema": {"name": "response", "schema": schema},
        })),
        ResponseFormat::Grammar { .. } => None,
    }
}

fn malformed(e: &serde_json::Error, body: &[u8]) -> BackendError {
    BackendError::Protocol(format!(
        "malformed JSON from the server ({e}): {}",
        http::preview(body)
    ))
}

/// Whether an error message is about the `n` parameter: it names `n` as a word (OpenAI's
/// `param`), or speaks of choices (llama-server: "Only one completion choice is allowed").
fn mentions_n(message: &str) -> bool {
    let lower = message.to_lowercase();
    lower.contains("choice")
        || lower
            .split(|c: char| !c.is_alphanumeric() && c != '_')
            .any(|w| w == "n")
}

/// Which choice the choices of a response are.
#[derive(Debug, Clone, Copy)]
enum Target {
    /// A request with native `n`: the wire's indices.
    Native,
    /// A single-sample request standing for choice `i`.
    Single(u32),
}

impl Target {
    fn index(self, wire: u32) -> u32 {
        match self {
            Target::Native => wire,
            Target::Single(i) => i,
        }
    }
}

#[derive(Debug, Default)]
struct Partial {
    text: String,
    logprobs: Vec<TokenLogprob>,
    finish: Option<FinishReason>,
}

/// What one request produced.
#[derive(Debug, Default)]
struct Run {
    choices: BTreeMap<u32, Partial>,
    /// Usage chunks, each with the choice that finished last before it. OpenAI sends one
    /// for the whole answer; llama-server sends one per choice, right after its end.
    usages: Vec<(Option<u32>, WireUsage)>,
    last_finished: Option<u32>,
    timings: Option<WireTimings>,
    first_token: Option<Duration>,
}

impl Run {
    /// The usage of the whole request and the token count of each choice, when known.
    fn usage(&self) -> (Option<WireUsage>, BTreeMap<u32, u32>) {
        let mut per_choice = BTreeMap::new();
        match self.usages.as_slice() {
            [] => (None, per_choice),
            [(_, u)] => {
                if let [index] = self.choices.keys().copied().collect::<Vec<_>>().as_slice() {
                    per_choice.insert(*index, u.completion_tokens);
                }
                (Some(*u), per_choice)
            }
            many => {
                // One usage chunk per choice: the prompt is the same, the tokens add up.
                let mut total = WireUsage::default();
                for (finished, u) in many {
                    total.prompt_tokens = total.prompt_tokens.max(u.prompt_tokens);
                    total.completion_tokens += u.completion_tokens;
                    if let Some(i) = finished {
                        per_choice.insert(*i, u.completion_tokens);
                    }
                }
                (Some(total), per_choice)
            }
        }
    }
}

enum Flow {
    More,
    Done,
    Gone,
}

impl Inner {
    fn endpoint(&self, path: &str) -> Result<Url, BackendError> {
        self.base
            .join(path)
            .map_err(|e| BackendError::InvalidRequest(format!("bad endpoint {path}: {e}")))
    }

    fn body(
        &self,
        request: &ChatRequest,
        sampling: &Sampling,
        streaming: bool,
        n: Option<u32>,
        seed: Option<u32>,
    ) -> Result<Bytes, BackendError> {
        let body = ChatBody {
            model: &self.config.model,
            messages: &request.messages,
            stream: streaming,
            stream_options: (streaming && self.config.stream_usage).then_some(StreamOptions {
                include_usage: true,
            }),
            n,
            temperature: sampling.temperature,
            top_p: sampling.top_p,
            max_tokens: sampling.max_tokens,
            stop: &sampling.stop,
            seed,
            logprobs: request.logprobs.map(|_| true),
            top_logprobs: request.logprobs,
            top_k: sampling.top_k,
            min_p: sampling.min_p,
            repeat_penalty: sampling.repeat_penalty,
            repetition_penalty: sampling.repeat_penalty,
            response_format: response_format(request.format.as_ref()),
            grammar: match &request.format {
                Some(ResponseFormat::Grammar { grammar }) => Some(grammar.as_str()),
                _ => None,
            },
        };
        serde_json::to_vec(&body)
            .map(Bytes::from)
            .map_err(|e| BackendError::InvalidRequest(format!("cannot encode the request: {e}")))
    }

    /// Every choice of `request`: natively when `n > 1` is (still) believed to work,
    /// the missing ones as single requests. `Ok(None)`: the consumer went away.
    async fn produce(
        self: &Arc<Self>,
        request: &ChatRequest,
        sampling: &Sampling,
        streaming: bool,
        tx: &StreamSender,
    ) -> Result<Option<Completion>, BackendError> {
        let started = Instant::now();
        let n = request.n;
        let mut runs = Vec::new();
        let mut missing: Vec<u32> = (0..n).collect();
        if n > 1 && self.native_n.load(Ordering::Relaxed) {
            let body = self.body(request, sampling, streaming, Some(n), sampling.seed)?;
            match self
                .run_limited(body, streaming, Target::Native, tx, started)
                .await
            {
                Ok(Some(run)) => {
                    missing.retain(|i| !run.choices.contains_key(i));
                    if !missing.is_empty() {
                        warn!(
                            asked = n,
                            got = run.choices.len(),
                            "the server returned fewer choices than asked for; \
                             the rest are sent as separate requests, from now on too"
                        );
                        self.native_n.store(false, Ordering::Relaxed);
                    }
                    runs.push(run);
                }
                Ok(None) => return Ok(None),
                Err(BackendError::Http { status, message })
                    if (400..500).contains(&status) && mentions_n(&message) =>
                {
                    warn!(status, %message, "the server rejects n > 1; sending separate requests, from now on too");
                    self.native_n.store(false, Ordering::Relaxed);
                }
                Err(e) => return Err(e),
            }
        }
        if !missing.is_empty() {
            let seeds = http::sample_seeds(sampling.seed, n);
            let mut tasks = JoinSet::new();
            for i in missing {
                let seed = seeds.get(i as usize).copied().flatten();
                let body = self.body(request, sampling, streaming, None, seed)?;
                let inner = Arc::clone(self);
                let tx = tx.clone();
                tasks.spawn(async move {
                    inner
                        .run_limited(body, streaming, Target::Single(i), &tx, started)
                        .await
                });
            }
            while let Some(joined) = tasks.join_next().await {
                match joined {
                    Ok(Ok(Some(run))) => runs.push(run),
                    Ok(Ok(None)) => return Ok(None),
                    Ok(Err(e)) => return Err(e),
                    Err(e) => return Err(BackendError::Other(Box::new(e))),
                }
            }
        }
        Ok(Some(self.completion(runs, n, started)))
    }

    fn completion(&self, runs: Vec<Run>, n: u32, started: Instant) -> Completion {
        let mut usage = Usage::default();
        let mut timings = Timings {
            total: started.elapsed(),
            ..Timings::default()
        };
        let mut choices: BTreeMap<u32, Choice> = BTreeMap::new();
        for run in runs {
            let (run_usage, per_choice) = run.usage();
            let mut counted = 0;
            for (index, p) in run.choices {
                if index >= n {
                    warn!(index, n, "ignoring a choice the request did not ask for");
                    continue;
                }
                let tokens = per_choice
                    .get(&index)
                    .copied()
                    .unwrap_or(u32::try_from(p.logprobs.len()).unwrap_or(u32::MAX));
                counted += tokens;
                choices.insert(
                    index,
                    Choice {
                        index,
                        text: p.text,
                        finish_reason: p.finish.unwrap_or(FinishReason::EndOfText),
                        logprobs: (!p.logprobs.is_empty()).then_some(p.logprobs),
                        completion_tokens: tokens,
                    },
                );
            }
            match run_usage {
                Some(u) => {
                    usage.prompt_tokens += u.prompt_tokens;
                    usage.completion_tokens += u.completion_tokens;
                }
                None => usage.completion_tokens += counted,
            }
            let server = run.timings.unwrap_or_default();
            timings.overlap(&Timings {
                prompt_eval: wire::millis(server.prompt_ms),
                decode: wire::millis(server.predicted_ms),
                time_to_first_token: run.first_token,
                ..Timings::default()
            });
        }
        Completion {
            model: self.config.model.clone(),
            choices: choices.into_values().collect(),
            usage,
            timings,
        }
    }

    async fn run_limited(
        &self,
        body: Bytes,
        streaming: bool,
        target: Target,
        tx: &StreamSender,
        started: Instant,
    ) -> Result<Option<Run>, BackendError> {
        let run = self.run(body, streaming, target, tx, started);
        http::limited(&self.permits, self.config.total_timeout, run).await
    }

    /// One request. `Ok(None)`: the consumer went away.
    async fn run(
        &self,
        body: Bytes,
        streaming: bool,
        target: Target,
        tx: &StreamSender,
        started: Instant,
    ) -> Result<Option<Run>, BackendError> {
        let url = self.endpoint("chat/completions")?;
        debug!(model = %self.config.model, ?target, streaming, "POST chat/completions");
        let mut opened = http::open(&self.policy, &self.clients, &self.config.model, |c| {
            c.post(url.clone())
                .header(CONTENT_TYPE, "application/json")
                .body(body.clone())
        })
        .await?;
        let mut run = Run::default();
        if !streaming {
            let bytes = http::read_all(opened).await?;
            let response: Response =
                serde_json::from_slice(&bytes).map_err(|e| malformed(&e, &bytes))?;
            for c in response.choices {
                let p = run.choices.entry(target.index(c.index)).or_default();
                p.text = c.message.and_then(|m| m.content).unwrap_or_default();
                p.logprobs = c
                    .logprobs
                    .and_then(|l| l.content)
                    .unwrap_or_default()
                    .into_iter()
                    .map(TokenLogprob::from)
                    .collect();
                p.finish = c.finish_reason.as_deref().map(wire::finish_reason);
            }
            run.usages.extend(response.usage.map(|u| (None, u)));
            run.timings = response.timings;
            return Ok(Some(run));
        }
        let mut events = SseBuffer::new();
        // Every error return drops `opened`, which closes the connection: the request
        // is cancelled upstream (a stall past the idle timeout, an event past the limit).
        while let Some(bytes) = opened.chunk().await? {
            events.push(&bytes);
            while let Some(event) = events.next_event() {
                match run.event(event, target, tx, started).await? {
                    Flow::More => {}
                    Flow::Done => return Ok(Some(run)),
                    Flow::Gone => return Ok(None),
                }
            }
            http::check_pending(events.pending(), self.policy.max_line_bytes, "an event")?;
        }
        if let Some(event) = events.finish() {
            match run.event(event, target, tx, started).await? {
                Flow::More => {}
                Flow::Done => return Ok(Some(run)),
                Flow::Gone => return Ok(None),
            }
        }
        // No [DONE]: accept the answer only if every choice said why it finished.
        if !run.choices.is_empty() && run.choices.values().all(|c| c.finish.is_some()) {
            return Ok(Some(run));
        }
        Err(BackendError::Protocol(
            "the event stream ended before [DONE]".into(),
        ))
    }
}

impl Run {
    /// Handles one server-sent event.
    async fn event(
        &mut self,
        event: SseEvent,
        target: Target,
        tx: &StreamSender,
        started: Instant,
    ) -> Result<Flow, BackendError> {
        if event.data.trim_ascii() == b"[DONE]" {
            return Ok(Flow::Done);
        }
        if event.event.as_deref() == Some("error") {
            return Err(BackendError::Protocol(format!(
                "the server reported an error mid-stream: {}",
                http::preview(&event.data)
            )));
        }
        let chunk: Chunk =
            serde_json::from_slice(&event.data).map_err(|e| malformed(&e, &event.data))?;
        if let Some(error) = &chunk.error {
            return Err(BackendError::Protocol(format!(
                "the server reported an error mid-stream: {}",
                wire::error_text(error)
            )));
        }
        if let Some(usage) = chunk.usage {
            self.usages.push((self.last_finished, usage));
        }
        if chunk.timings.is_some() {
            self.timings = chunk.timings;
        }
        for c in chunk.choices {
            let index = target.index(c.index);
            let text = c.delta.and_then(|d| d.content).unwrap_or_default();
            let logprobs: Vec<TokenLogprob> = c
                .logprobs
                .and_then(|l| l.content)
                .unwrap_or_default()
                .into_iter()
                .map(TokenLogprob::from)
                .collect();
            let partial = self.choices.entry(index).or_default();
            if let Some(reason) = c.finish_reason.as_deref() {
                partial.finish = Some(wire::finish_reason(reason));
                self.last_finished = Some(index);
            }
            if text.is_empty() && logprobs.is_empty() {
                continue;
            }
            if self.first_token.is_none() {
                self.first_token = Some(started.elapsed());
            }
            partial.text.push_str(&text);
            let logprob = match logprobs.as_slice() {
                [one] => Some(one.clone()),
                _ => None,
            };
            partial.logprobs.extend(logprobs);
            let delta = StreamEvent::Delta {
                index,
                text,
                logprob,
            };
            if !tx.send(Ok(delta)).await {
                return Ok(Flow::Gone);
            }
        }
        Ok(Flow::More)
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn n_rejections_are_recognised() {
        assert!(mentions_n("Only one completion choice is allowed"));
        assert!(mentions_n("n must be 1 (param: n)"));
        assert!(mentions_n("'n' is not supported with this model."));
        assert!(!mentions_n("Incorrect API key provided"));
        assert!(!mentions_n("max_tokens is too large: 4096"));
    }
}
