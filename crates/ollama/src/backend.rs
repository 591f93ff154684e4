//! [`OllamaBackend`]: the [`Backend`] trait over `/api/chat`.

use std::sync::{Arc, OnceLock};
use std::time::{Duration, Instant};

use async_trait::async_trait;
use bytes::Bytes;
use optillm_core::{
    Backend, BackendError, Capabilities, ChatRequest, Choice, Completion, CompletionStream,
    FormatSupport, ResponseFormat, Sampling, StreamEvent, StreamSender, Timings, TokenLogprob,
    Usage, stream_channel,
};
use reqwest::header::CONTENT_TYPE;
use tokio::sync::Semaphore;
use tokio::task::JoinSet;
use tracing::{debug, warn};
use url::Url;

use crate::config::OllamaConfig;
use crate::error::OllamaError;
use crate::http::{self, Policy};
use crate::ndjson::LineBuffer;
use crate::wire::{self, ChatBody, ChatChunk, Options, Show, Tags};

/// A model installed on the Ollama server (`GET /api/tags`).
#[derive(Debug, Clone, PartialEq, Eq)]
#[non_exhaustive]
pub struct OllamaModel {
    pub name: String,
    pub model: Option<String>,
    pub size: Option<u64>,
    pub digest: Option<String>,
    pub modified_at: Option<String>,
    pub family: Option<String>,
    pub parameter_size: Option<String>,
    pub quantization_level: Option<String>,
}

/// The Ollama backend. Cheap to clone; clones share the connection pool and the
/// concurrency limit.
#[derive(Debug, Clone)]
pub struct OllamaBackend {
    inner: Arc<Inner>,
}

#[derive(Debug)]
struct Inner {
    config: OllamaConfig,
    base: Url,
    clients: http::Clients,
    policy: Policy,
    permits: Arc<Semaphore>,
    context_length: OnceLock<Option<u32>>,
}

impl OllamaBackend {
    /// A backend for `config`; checks the URL and builds the HTTP client (no request yet).
    pub fn new(config: OllamaConfig) -> Result<Self, OllamaError> {
        if config.model.trim().is_empty() {
            return Err(OllamaError::EmptyModel);
        }
        if config.max_concurrency == 0 {
            return Err(OllamaError::ZeroConcurrency);
        }
        if config.idle_timeout.is_zero() {
            return Err(OllamaError::ZeroLimit("idle_timeout"));
        }
        if config.max_line_bytes == 0 {
            return Err(OllamaError::ZeroLimit("max_line_bytes"));
        }
        if config.max_body_bytes == 0 {
            return Err(OllamaError::ZeroLimit("max_body_bytes"));
        }
        let base = http::base_url(&config.base_url)?;
        let clients = http::Clients::new(config.connect_timeout, reqwest::header::HeaderMap::new())
            .map_err(OllamaError::Client)?;
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
                context_length: OnceLock::new(),
            }),
        })
    }

    pub fn config(&self) -> &OllamaConfig {
        &self.inner.config
    }

    /// The models installed on the server (`GET /api/tags`).
    pub async fn list_models(&self) -> Result<Vec<OllamaModel>, BackendError> {
        let url = self.inner.endpoint("api/tags")?;
        let tags: Tags = self.inner.fetch_json(|c| c.get(url.clone())).await?;
        Ok(tags
            .models
            .into_iter()
            .map(|m| {
                let details = m.details.unwrap_or_default();
                OllamaModel {
                    name: m.name,
                    model: m.model,
                    size: m.size,
                    digest: m.digest,
                    modified_at: m.modified_at,
                    family: details.family,
                    parameter_size: details.parameter_size,
                    quantization_level: details.quantization_level,
                }
            })
            .collect())
    }

    /// The model's trained context length (`POST /api/show`, `model_info`'s
    /// `<arch>.context_length`), `None` when the server does not report it. Remembered
    /// after the first answer. Ollama runs a model with `num_ctx` tokens of context,
    /// which may be less; [`Backend::capabilities`] reports `num_ctx` when it is configured.
    pub async fn context_length(&self) -> Result<Option<u32>, BackendError> {
        if let Some(known) = self.inner.context_length.get() {
            return Ok(*known);
        }
        let url = self.inner.endpoint("api/show")?;
        let body = serde_json::json!({ "model": self.inner.config.model });
        let show: Show = self
            .inner
            .fetch_json(|c| c.post(url.clone()).json(&body))
            .await?;
        let length = show.context_length();
        let _ = self.inner.context_length.set(length);
        Ok(length)
    }
}

#[async_trait]
impl Backend for OllamaBackend {
    fn model(&self) -> &str {
        &self.inner.config.model
    }

    fn capabilities(&self) -> Capabilities {
        Capabilities {
            native_n: false,
            logprobs: true,
            max_top_logprobs: 20,
            token_control: false,
            context_length: self
                .inner
                .config
                .num_ctx
                .or_else(|| self.inner.context_length.get().copied().flatten()),
            formats: FORMATS,
        }
    }

    /// Streams the answer. `n > 1` runs `n` requests (seeds `seed + i`) under the
    /// backend's concurrency limit; their deltas carry their choice index. Errors, HTTP
    /// ones included, arrive as an event of the stream.
    async fn stream(&self, request: ChatRequest) -> Result<CompletionStream, BackendError> {
        request.validate()?;
        let sampling = self.inner.config.sampling.merged(&request.sampling);
        sampling.validate()?;
        let format = wire_format(request.format.as_ref())?;
        let bodies = http::sample_seeds(sampling.seed, request.n)
            .into_iter()
            .map(|seed| self.inner.body(&request, &sampling, format.as_ref(), seed))
            .collect::<Result<Vec<_>, _>>()?;
        let (tx, stream) = stream_channel();
        let inner = Arc::clone(&self.inner);
        let want_logprobs = request.logprobs.is_some();
        tokio::spawn(async move { inner.produce(bodies, want_logprobs, tx).await });
        Ok(stream)
    }
}

/// What `/api/chat`'s `format` expresses: JSON (`"json"`) and JSON schemas.
const FORMATS: FormatSupport = FormatSupport {
    json_object: true,
    json_schema: true,
    grammar: false,
};

/// The `format` field of a request: `"json"` for any JSON object, the schema itself for a
/// JSON schema; a GBNF grammar is refused (Ollama has no way to take one).
fn wire_format(format: Option<&ResponseFormat>) -> Result<Option<serde_json::Value>, BackendError> {
    match format {
        None => Ok(None),
        Some(ResponseFormat::JsonObject) => Ok(Some(serde_json::Value::from("json"))),
        Some(ResponseFormat::JsonSchema { schema }) => Ok(Some(schema.clone())),
        Some(ResponseFormat::Grammar { .. }) => Err(BackendError::unsupported(
            "Ollama",
            "GBNF grammars (its `format` takes \"json\" or a JSON schema)",
        )),
    }
}

impl Inner {
    fn endpoint(&self, path: &str) -> Result<Url, BackendError> {
        self.base
            .join(path)
            .map_err(|e| BackendError::InvalidRequest(format!("bad endpoint {path}: {e}")))
    }

    async fn fetch_json<T: serde::de::DeserializeOwned>(
        &self,
        make: impl Fn(&reqwest::Client) -> reqwest::RequestBuilder,
    ) -> Result<T, BackendError> {
        let opened = http::open(&self.policy, &self.clients, &self.config.model, make).await?;
        let body = http::read_all(opened).await?;
        serde_json::from_slice(&body).map_err(|e| {
            BackendError::Protocol(format!(
                "malformed JSON from Ollama ({e}): {}",
                http::preview(&body)
            ))
        })
    }

    /// The JSON body of one sample's request.
    fn body(
        &self,
        request: &ChatRequest,
        sampling: &Sampling,
        format: Option<&serde_json::Value>,
        seed: Option<u32>,
    ) -> Result<Bytes, BackendError> {
        let body = ChatBody {
            model: &self.config.model,
            messages: &request.messages,
            stream: true,
            options: Options {
                temperature: sampling.temperature,
                top_p: sampling.top_p,
                top_k: sampling.top_k,
                min_p: sampling.min_p,
                repeat_penalty: sampling.repeat_penalty,
                seed,
                num_predict: sampling.max_tokens,
                num_ctx: self.config.num_ctx,
                stop: sampling.stop.clone(),
            },
            keep_alive: self.config.keep_alive.as_deref(),
            logprobs: request.logprobs.map(|_| true),
            top_logprobs: request.logprobs.filter(|&k| k > 0),
            format,
        };
        serde_json::to_vec(&body)
            .map(Bytes::from)
            .map_err(|e| BackendError::InvalidRequest(format!("cannot encode the request: {e}")))
    }

    /// Runs every sample, forwards their deltas, then sends the completion. Stops (and
    /// drops every response) as soon as the consumer drops its stream.
    async fn produce(self: Arc<Self>, bodies: Vec<Bytes>, want_logprobs: bool, tx: StreamSender) {
        let started = Instant::now();
        let n = bodies.len();
        let mut tasks = JoinSet::new();
        for (i, body) in bodies.into_iter().enumerate() {
            let inner = Arc::clone(&self);
            let tx = tx.clone();
            let index = u32::try_from(i).unwrap_or(u32::MAX);
            tasks.spawn(async move {
                let outcome = inner
                    .run_limited(index, body, want_logprobs, &tx, started)
                    .await;
                (i, outcome)
            });
        }
        let mut outcomes: Vec<Option<Outcome>> = (0..n).map(|_| None).collect();
        loop {
            tokio::select! {
                joined = tasks.join_next() => match joined {
                    None => break,
                    Some(Ok((i, Ok(Some(outcome))))) => {
                        if let Some(slot) = outcomes.get_mut(i) {
                            *slot = Some(outcome);
                        }
                    }
                    Some(Ok((_, Ok(None)))) => return,
                    Some(Ok((_, Err(e)))) => {
                        let _ = tx.send(Err(e)).await;
                        return;
                    }
                    Some(Err(e)) => {
                        let _ = tx.send(Err(BackendError::Other(Box::new(e)))).await;
                        return;
                    }
                },
                _ = tx.closed() => {
                    debug!("the consumer dropped the stream; cancelling");
                    return;
                }
            }
        }
        let completion = self.completion(outcomes.into_iter().flatten().collect(), started);
        let _ = tx.send(Ok(StreamEvent::Done(completion))).await;
    }

    fn completion(&self, outcomes: Vec<Outcome>, started: Instant) -> Completion {
        let mut usage = Usage::default();
        let mut timings = Timings {
            total: started.elapsed(),
            ..Timings::default()
        };
        let mut choices = Vec::with_capacity(outcomes.len());
        for o in outcomes {
            usage.prompt_tokens += o.prompt_tokens;
            usage.completion_tokens += o.choice.completion_tokens;
            timings.overlap(&Timings {
                prompt_eval: o.prompt_eval,
                decode: o.decode,
                time_to_first_token: o.first_token,
                ..Timings::default()
            });
            choices.push(o.choice);
        }
        Completion {
            model: self.config.model.clone(),
            choices,
            usage,
            timings,
        }
    }

    async fn run_limited(
        &self,
        index: u32,
        body: Bytes,
        want_logprobs: bool,
        tx: &StreamSender,
        started: Instant,
    ) -> Result<Option<Outcome>, BackendError> {
        let run = self.run(index, body, want_logprobs, tx, started);
        http::limited(&self.permits, self.config.total_timeout, run).await
    }

    /// One sample: one request, its NDJSON lines parsed from a byte buffer.
    /// `Ok(None)`: the consumer went away.
    async fn run(
        &self,
        index: u32,
        body: Bytes,
        want_logprobs: bool,
        tx: &StreamSender,
        started: Instant,
    ) -> Result<Option<Outcome>, BackendError> {
        let url = self.endpoint("api/chat")?;
        debug!(model = %self.config.model, index, "POST /api/chat");
        let mut opened = http::open(&self.policy, &self.clients, &self.config.model, |c| {
            c.post(url.clone())
                .header(CONTENT_TYPE, "application/json")
                .body(body.clone())
        })
        .await?;
        let mut lines = LineBuffer::new();
        let mut state = ChoiceState::new(index, want_logprobs);
        // Every error return drops `opened`, which closes the connection: the request
        // is cancelled upstream (a stall past the idle timeout, a line past the limit).
        while let Some(bytes) = opened.chunk().await? {
            lines.push(&bytes);
            while let Some(line) = lines.next_line() {
                match state.line(&line, tx, started).await? {
                    Flow::More => {}
                    Flow::Done => return Ok(Some(state.into_outcome())),
                    Flow::Gone => return Ok(None),
                }
            }
            http::check_pending(lines.pending(), self.policy.max_line_bytes, "a line")?;
        }
        if let Some(rest) = lines.finish() {
            match state.line(&rest, tx, started).await? {
                Flow::More => {}
                Flow::Done => return Ok(Some(state.into_outcome())),
                Flow::Gone => return Ok(None),
            }
        }
        Err(BackendError::Protocol(
            "the Ollama stream ended before its final (done) line".into(),
        ))
    }
}

enum Flow {
    More,
    Done,
    Gone,
}

/// One finished sample.
struct Outcome {
    choice: Choice,
    prompt_tokens: u32,
    prompt_eval: Duration,
    decode: Duration,
    first_token: Option<Duration>,
}

struct ChoiceState {
    index: u32,
    want_logprobs: bool,
    text: String,
    logprobs: Vec<TokenLogprob>,
    first_token: Option<Duration>,
    last: Option<ChatChunk>,
}

impl ChoiceState {
    fn new(index: u32, want_logprobs: bool) -> Self {
        Self {
            index,
            want_logprobs,
            text: String::new(),
            logprobs: Vec::new(),
            first_token: None,
            last: None,
        }
    }

    /// Handles one NDJSON line.
    async fn line(
        &mut self,
        line: &[u8],
        tx: &StreamSender,
        started: Instant,
    ) -> Result<Flow, BackendError> {
        if line.iter().all(u8::is_ascii_whitespace) {
            return Ok(Flow::More);
        }
        let mut chunk: ChatChunk = serde_json::from_slice(line).map_err(|e| {
            BackendError::Protocol(format!(
                "malformed JSON line from Ollama ({e}): {}",
                http::preview(line)
            ))
        })?;
        if let Some(message) = chunk.error.take() {
            return Err(BackendError::Protocol(format!(
                "Ollama reported an error mid-stream: {message}"
            )));
        }
        let text = chunk
            .message
            .take()
            .and_then(|m| m.content)
            .unwrap_or_default();
        let logprobs: Vec<TokenLogprob> = chunk
            .logprobs
            .take()
            .unwrap_or_default()
            .into_iter()
            .map(TokenLogprob::from)
            .collect();
        if !text.is_empty() || !logprobs.is_empty() {
            if self.first_token.is_none() {
                self.first_token = Some(started.elapsed());
            }
            self.text.push_str(&text);
            let logprob = match logprobs.as_slice() {
                [one] if self.want_logprobs => Some(one.clone()),
                _ => None,
            };
            if self.want_logprobs {
                self.logprobs.extend(logprobs);
            }
            let delta = StreamEvent::Delta {
                index: self.index,
                text,
                logprob,
            };
            if !tx.send(Ok(delta)).await {
                return Ok(Flow::Gone);
            }
        }
        if chunk.done {
            self.last = Some(chunk);
            return Ok(Flow::Done);
        }
        Ok(Flow::More)
    }

    fn into_outcome(self) -> Outcome {
        let last = self.last.unwrap_or_default();
        if self.want_logprobs && self.logprobs.is_empty() && !self.text.is_empty() {
            warn!("logprobs were asked for but Ollama sent none (Ollama too old?)");
        }
        let tokens = last
            .eval_count
            .unwrap_or(u32::try_from(self.logprobs.len()).unwrap_or(u32::MAX));
        Outcome {
            choice: Choice {
                index: self.index,
                text: self.text,
                finish_reason: wire::finish_reason(last.done_reason.as_deref()),
                logprobs: (!self.logprobs.is_empty()).then_some(self.logprobs),
                completion_tokens: tokens,
            },
            prompt_tokens: last.prompt_eval_count.unwrap_or(0),
            prompt_eval: Duration::from_nanos(last.prompt_eval_duration.unwrap_or(0)),
            decode: Duration::from_nanos(last.eval_duration.unwrap_or(0)),
            first_token: self.first_token,
        }
    }
}
