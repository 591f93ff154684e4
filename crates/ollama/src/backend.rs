//! [`OllamaBackend`]: the [`Backend`] trait over `/api/chat` (and `/api/generate` with
//! `raw: true` for a raw request: text continued without the chat template).

use std::sync::{Arc, OnceLock};
use std::time::{Duration, Instant};

use async_trait::async_trait;
use bytes::Bytes;
use optillm_core::{
    Backend, BackendError, Capabilities, ChatRequest, CompletionStream, FormatSupport,
    ResponseFormat, Sampling, StreamSender, Timings, Usage,
};
use optillm_http::Remote;
use optillm_http::answer::{self, Answer, Flow, FrameHandler, Received, WireSampling};
use optillm_http::framing::LineBuffer;
use reqwest::header::HeaderMap;
use tracing::{debug, warn};

use crate::config::OllamaConfig;
use crate::error::OllamaError;
use crate::http;
use crate::wire::{ChatBody, ChatChunk, OllamaModel, Options, Show, Tags};

/// The Ollama backend. Cheap to clone; clones share the connection pool and the
/// concurrency limit.
#[derive(Debug, Clone)]
pub struct OllamaBackend {
    inner: Arc<Inner>,
}

#[derive(Debug)]
struct Inner {
    config: OllamaConfig,
    remote: Remote,
    context_length: OnceLock<Option<u32>>,
}

impl OllamaBackend {
    /// A backend for `config`; checks the URL and builds the HTTP client (no request yet).
    pub fn new(config: OllamaConfig) -> Result<Self, OllamaError> {
        let remote = Remote::new("Ollama", &config.remote, HeaderMap::new())?;
        Ok(Self {
            inner: Arc::new(Inner {
                config,
                remote,
                context_length: OnceLock::new(),
            }),
        })
    }

    pub fn config(&self) -> &OllamaConfig {
        &self.inner.config
    }

    /// The models installed on the server (`GET /api/tags`).
    pub async fn list_models(&self) -> Result<Vec<OllamaModel>, BackendError> {
        list(&self.inner.remote).await
    }

    /// The models installed on the server of `config` (`GET /api/tags`), with no
    /// backend for one of them: `config.model` is not used and may be empty.
    pub async fn list_server_models(
        config: &OllamaConfig,
    ) -> Result<Vec<OllamaModel>, BackendError> {
        let remote = Remote::for_server("Ollama", &config.remote, HeaderMap::new())?;
        list(&remote).await
    }

    /// The model's trained context length (`POST /api/show`, `model_info`'s
    /// `<arch>.context_length`), `None` when the server does not report it. Remembered
    /// after the first answer. Ollama runs a model with `num_ctx` tokens of context,
    /// which may be less; [`Backend::capabilities`] reports `num_ctx` when it is configured.
    pub async fn context_length(&self) -> Result<Option<u32>, BackendError> {
        if let Some(known) = self.inner.context_length.get() {
            return Ok(*known);
        }
        let remote = &self.inner.remote;
        let url = remote.endpoint("api/show")?;
        let body = serde_json::json!({ "model": self.inner.config.model });
        let show: Show = remote
            .fetch_json(|c| c.post(url.clone()).json(&body))
            .await?;
        let length = show.context_length();
        let _ = self.inner.context_length.set(length);
        Ok(length)
    }
}

async fn list(remote: &Remote) -> Result<Vec<OllamaModel>, BackendError> {
    let tags: Tags = remote.get_json("api/tags").await?;
    Ok(tags.models.into_iter().map(OllamaModel::from).collect())
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
        let inner = Arc::clone(&self.inner);
        let want_logprobs = request.logprobs.is_some();
        let raw = request.raw;
        let n = request.n;
        Ok(answer::spawn_producer(move |tx| async move {
            let started = Instant::now();
            let samples = bodies.into_iter().zip(0u32..).map(|(body, index)| {
                let inner = Arc::clone(&inner);
                let tx = tx.clone();
                async move {
                    let sample = Sample::new(index, want_logprobs, started);
                    inner.run(sample, raw, body, &tx).await
                }
            });
            let answers = answer::fan_out(samples).await?;
            Ok(answers.map(|a| answer::completion(&inner.config.model, n, a, started)))
        }))
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
    /// The JSON body of one sample's request.
    fn body(
        &self,
        request: &ChatRequest,
        sampling: &Sampling,
        format: Option<&serde_json::Value>,
        seed: Option<u32>,
    ) -> Result<Bytes, BackendError> {
        // A raw request goes to `/api/generate` with `raw: true`: no chat template.
        let raw = request.raw_text();
        let body = ChatBody {
            model: &self.config.model,
            messages: raw.is_none().then_some(request.messages.as_slice()),
            prompt: raw,
            raw: raw.is_some(),
            stream: true,
            options: Options {
                sampling: WireSampling::new(sampling, seed),
                num_predict: sampling.max_tokens,
                num_ctx: self.config.num_ctx,
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

    /// One sample: one request under the backend's limits, its NDJSON lines read as
    /// they come. `Ok(None)`: the consumer went away.
    async fn run(
        &self,
        mut sample: Sample,
        raw: bool,
        body: Bytes,
        tx: &StreamSender,
    ) -> Result<Option<Answer>, BackendError> {
        let remote = &self.remote;
        remote
            .limited(async {
                let path = if raw { "api/generate" } else { "api/chat" };
                debug!(model = %self.config.model, index = sample.index, path, "POST");
                let opened = remote.post(path, body).await?;
                let limit = remote.max_line_bytes();
                match answer::read_frames::<LineBuffer, _>(opened, limit, &mut sample, tx).await? {
                    Flow::Done => Ok(Some(sample.into_answer())),
                    Flow::Gone => Ok(None),
                    Flow::More => Err(BackendError::Protocol(
                        "the Ollama stream ended before its final (done) line".into(),
                    )),
                }
            })
            .await
    }
}

/// One sample being received.
struct Sample {
    index: u32,
    want_logprobs: bool,
    received: Received,
    /// The final (`done`) line, with the metrics.
    last: Option<ChatChunk>,
}

impl Sample {
    fn new(index: u32, want_logprobs: bool, started: Instant) -> Self {
        Self {
            index,
            want_logprobs,
            received: Received::new(started),
            last: None,
        }
    }

    fn into_answer(mut self) -> Answer {
        let last = self.last.unwrap_or_default();
        let mut partial = self
            .received
            .choices
            .remove(&self.index)
            .unwrap_or_default();
        if self.want_logprobs && partial.logprobs.is_empty() && !partial.text.is_empty() {
            warn!("logprobs were asked for but Ollama sent none (Ollama too old?)");
        }
        partial.finish = Some(answer::finish_reason(
            last.done_reason.as_deref().unwrap_or("stop"),
        ));
        let choice = partial.into_choice(self.index, last.eval_count);
        Answer {
            usage: Usage {
                prompt_tokens: last.prompt_eval_count.unwrap_or(0),
                completion_tokens: choice.completion_tokens,
            },
            timings: Timings {
                prompt_eval: Duration::from_nanos(last.prompt_eval_duration.unwrap_or(0)),
                decode: Duration::from_nanos(last.eval_duration.unwrap_or(0)),
                time_to_first_token: self.received.first_token,
                requests: 1,
                ..Timings::default()
            },
            choices: vec![choice],
        }
    }
}

impl FrameHandler<Vec<u8>> for Sample {
    /// Handles one NDJSON line.
    async fn frame(&mut self, line: Vec<u8>, tx: &StreamSender) -> Result<Flow, BackendError> {
        if line.iter().all(u8::is_ascii_whitespace) {
            return Ok(Flow::More);
        }
        let mut chunk: ChatChunk = serde_json::from_slice(&line).map_err(|e| {
            BackendError::Protocol(format!(
                "malformed JSON line from Ollama ({e}): {}",
                http::preview(&line)
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
            .or_else(|| chunk.response.take())
            .unwrap_or_default();
        let logprobs = match self.want_logprobs {
            true => answer::logprobs(chunk.logprobs.take()),
            false => Vec::new(),
        };
        if !self.received.add(self.index, text, logprobs, tx).await {
            return Ok(Flow::Gone);
        }
        if chunk.done {
            self.last = Some(chunk);
            return Ok(Flow::Done);
        }
        Ok(Flow::More)
    }
}
