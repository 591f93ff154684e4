//! [`OpenAiBackend`]: the [`Backend`] trait over `/chat/completions` (and `/completions`
//! for a raw request: text continued without the chat template).

use std::collections::BTreeMap;
use std::sync::Arc;
use std::sync::atomic::{AtomicU32, Ordering};
use std::time::Instant;

use async_trait::async_trait;
use bytes::Bytes;
use optillm_core::{
    Backend, BackendError, Capabilities, ChatRequest, Completion, CompletionStream, FormatSupport,
    ResponseFormat, Role, Sampling, StreamSender, Timings, Usage,
};
use optillm_http::Remote;
use optillm_http::answer::{self, Answer, Flow, FrameHandler, Received, WireSampling};
use optillm_http::framing::{SseBuffer, SseEvent};
use reqwest::header::{AUTHORIZATION, HeaderMap, HeaderValue};
use tracing::{debug, warn};

use crate::config::OpenAiConfig;
use crate::error::OpenAiError;
use crate::http;
use crate::wire::{
    self, ChatBody, Chunk, LogprobsAsk, Models, OpenAiModel, Response, StreamOptions, WireLogprobs,
    WireTimings, WireUsage,
};

/// The OpenAI-compatible backend. Cheap to clone; clones share the connection pool, the
/// concurrency limit and the smallest `n` the server rejected.
#[derive(Debug, Clone)]
pub struct OpenAiBackend {
    inner: Arc<Inner>,
}

#[derive(Debug)]
struct Inner {
    config: OpenAiConfig,
    remote: Remote,
    /// The smallest `n` the server rejected (`u32::MAX` while none was): requests that
    /// ask for fewer samples are still sent with `n`, the others as single requests.
    rejected_n: AtomicU32,
}

/// The headers of every request to the server of `config`: its API key as a bearer
/// token (from `api_key`, else the variable `api_key_env`), when there is one.
fn headers(config: &OpenAiConfig) -> Result<HeaderMap, OpenAiError> {
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
    Ok(headers)
}

impl OpenAiBackend {
    /// A backend for `config`: checks the URL, reads the API key, builds the HTTP client
    /// (no request yet).
    pub fn new(config: OpenAiConfig) -> Result<Self, OpenAiError> {
        let remote = Remote::new("the server", &config.remote, headers(&config)?)?;
        Ok(Self {
            inner: Arc::new(Inner {
                config,
                remote,
                rejected_n: AtomicU32::new(u32::MAX),
            }),
        })
    }

    pub fn config(&self) -> &OpenAiConfig {
        &self.inner.config
    }

    /// The models the server offers (`GET /models`).
    pub async fn list_models(&self) -> Result<Vec<OpenAiModel>, BackendError> {
        let models: Models = self.inner.remote.get_json("models").await?;
        Ok(models.data)
    }

    /// The models the server of `config` offers (`GET /models`), with no backend for
    /// one of them: `config.model` is not used and may be empty.
    pub async fn list_server_models(
        config: &OpenAiConfig,
    ) -> Result<Vec<OpenAiModel>, BackendError> {
        let remote = Remote::for_server("the server", &config.remote, headers(config)?)?;
        let models: Models = remote.get_json("models").await?;
        Ok(models.data)
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
        let inner = Arc::clone(&self.inner);
        Ok(answer::spawn_producer(move |tx| async move {
            inner.produce(&request, &sampling, streaming, &tx).await
        }))
    }
}

#[async_trait]
impl Backend for OpenAiBackend {
    fn model(&self) -> &str {
        &self.inner.config.model
    }

    fn capabilities(&self) -> Capabilities {
        Capabilities {
            // False only once the server rejected `n = 2`: it takes one sample per request.
            native_n: self.inner.rejected_n.load(Ordering::Relaxed) > 2,
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

/// Whether an error message is about the `n` parameter: it names `n` (or llama.cpp's
/// `n_cmpl`) as a word (OpenAI's `param`), or speaks of choices (llama-server: "Only one
/// completion choice is allowed").
fn mentions_n(message: &str) -> bool {
    let lower = message.to_lowercase();
    lower.contains("choice")
        || lower
            .split(|c: char| !c.is_alphanumeric() && c != '_')
            .any(|w| w == "n" || w == "n_cmpl")
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

/// What one request produced.
#[derive(Debug)]
struct Run {
    target: Target,
    received: Received,
    /// Usage chunks, each with the choice that finished last before it. OpenAI sends one
    /// for the whole answer; llama-server sends one per choice, right after its end.
    usages: Vec<(Option<u32>, WireUsage)>,
    last_finished: Option<u32>,
    timings: Option<WireTimings>,
}

impl Run {
    fn new(target: Target, started: Instant) -> Self {
        Self {
            target,
            received: Received::new(started),
            usages: Vec::new(),
            last_finished: None,
            timings: None,
        }
    }

    /// The usage of the whole request and the token count of each choice, when known.
    fn usage(&self) -> (Option<WireUsage>, BTreeMap<u32, u32>) {
        let mut per_choice = BTreeMap::new();
        match self.usages.as_slice() {
            [] => (None, per_choice),
            [(_, u)] => {
                let indexes: Vec<u32> = self.received.choices.keys().copied().collect();
                if let [index] = indexes.as_slice() {
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

    /// A whole (`stream: false`) response.
    fn whole(&mut self, response: Response) {
        for c in response.choices {
            let index = self.target.index(c.index);
            let p = self.received.choices.entry(index).or_default();
            p.text = c
                .message
                .and_then(|m| m.content)
                .or(c.text)
                .unwrap_or_default();
            p.logprobs = answer::logprobs(c.logprobs.and_then(WireLogprobs::into_tokens));
            p.finish = c.finish_reason.as_deref().map(answer::finish_reason);
        }
        self.usages.extend(response.usage.map(|u| (None, u)));
        self.timings = response.timings;
    }

    fn into_answer(self) -> Answer {
        let (usage, per_choice) = self.usage();
        let choices: Vec<_> = self
            .received
            .choices
            .into_iter()
            .map(|(index, p)| p.into_choice(index, per_choice.get(&index).copied()))
            .collect();
        let usage = match usage {
            Some(u) => Usage {
                prompt_tokens: u.prompt_tokens,
                completion_tokens: u.completion_tokens,
            },
            None => Usage {
                prompt_tokens: 0,
                completion_tokens: choices.iter().map(|c| c.completion_tokens).sum(),
            },
        };
        let server = self.timings.unwrap_or_default();
        Answer {
            choices,
            usage,
            timings: Timings {
                prompt_eval: wire::millis(server.prompt_ms),
                decode: wire::millis(server.predicted_ms),
                time_to_first_token: self.received.first_token,
                requests: 1,
                ..Timings::default()
            },
        }
    }
}

impl FrameHandler<SseEvent> for Run {
    /// Handles one server-sent event.
    async fn frame(&mut self, event: SseEvent, tx: &StreamSender) -> Result<Flow, BackendError> {
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
            let index = self.target.index(c.index);
            let text = c
                .delta
                .and_then(|d| d.content)
                .or(c.text)
                .unwrap_or_default();
            let logprobs = answer::logprobs(c.logprobs.and_then(WireLogprobs::into_tokens));
            if let Some(reason) = c.finish_reason.as_deref() {
                self.received.finish(index, answer::finish_reason(reason));
                self.last_finished = Some(index);
            }
            if !self.received.add(index, text, logprobs, tx).await {
                return Ok(Flow::Gone);
            }
        }
        Ok(Flow::More)
    }
}

impl Inner {
    fn body(
        &self,
        request: &ChatRequest,
        sampling: &Sampling,
        streaming: bool,
        n: Option<u32>,
        seed: Option<u32>,
    ) -> Result<Bytes, BackendError> {
        // A raw request is a text completion: its text as `prompt`, logprobs asked for
        // as a count.
        let raw = request.raw_text();
        let prefill = raw.is_none()
            && self.config.continue_final_message
            && request
                .messages
                .last()
                .is_some_and(|m| m.role == Role::Assistant);
        let body = ChatBody {
            model: &self.config.model,
            messages: raw.is_none().then_some(request.messages.as_slice()),
            prompt: raw,
            stream: streaming,
            stream_options: (streaming && self.config.stream_usage).then_some(StreamOptions {
                include_usage: true,
            }),
            n,
            sampling: WireSampling::new(sampling, seed),
            max_tokens: sampling.max_tokens,
            logprobs: request.logprobs.map(|k| match raw {
                Some(_) => LogprobsAsk::Text(k),
                None => LogprobsAsk::Chat(true),
            }),
            top_logprobs: request.logprobs.filter(|_| raw.is_none()),
            repetition_penalty: sampling.repeat_penalty,
            response_format: response_format(request.format.as_ref()),
            grammar: match &request.format {
                Some(ResponseFormat::Grammar { grammar }) => Some(grammar.as_str()),
                _ => None,
            },
            continue_final_message: prefill.then_some(true),
            add_generation_prompt: prefill.then_some(false),
        };
        serde_json::to_vec(&body)
            .map(Bytes::from)
            .map_err(|e| BackendError::InvalidRequest(format!("cannot encode the request: {e}")))
    }

    /// Every choice of `request`: natively when `n > 1` is below the smallest `n` the
    /// server rejected, the missing ones as single requests. A rejected `n` (llama-server
    /// caps it at its slot count) or a short answer falls back for this request only;
    /// later requests with a smaller `n` are still sent natively. `Ok(None)`: the
    /// consumer went away.
    async fn produce(
        self: &Arc<Self>,
        request: &ChatRequest,
        sampling: &Sampling,
        streaming: bool,
        tx: &StreamSender,
    ) -> Result<Option<Completion>, BackendError> {
        let started = Instant::now();
        let path = if request.raw {
            "completions"
        } else {
            "chat/completions"
        };
        let n = request.n;
        let mut answers = Vec::new();
        let mut missing: Vec<u32> = (0..n).collect();
        // Requests sent that returned no answer (a rejected `n`).
        let mut refused = 0;
        if n > 1 && n < self.rejected_n.load(Ordering::Relaxed) {
            let body = self.body(request, sampling, streaming, Some(n), sampling.seed)?;
            match self
                .run(path, body, streaming, Target::Native, tx, started)
                .await
            {
                Ok(Some(run)) => {
                    missing.retain(|i| !run.received.choices.contains_key(i));
                    if !missing.is_empty() {
                        warn!(
                            asked = n,
                            got = run.received.choices.len(),
                            "the server returned fewer choices than asked for; \
                             the rest are sent as separate requests"
                        );
                    }
                    answers.push(run.into_answer());
                }
                Ok(None) => return Ok(None),
                Err(BackendError::Http { status, message })
                    if (400..500).contains(&status) && mentions_n(&message) =>
                {
                    warn!(
                        status,
                        %message,
                        n,
                        "the server rejects this n; its samples are sent as separate \
                         requests, as are those of later requests with this n or more"
                    );
                    self.rejected_n.fetch_min(n, Ordering::Relaxed);
                    refused += 1;
                }
                Err(e) => return Err(e),
            }
        }
        if !missing.is_empty() {
            let seeds = http::sample_seeds(sampling.seed, n);
            let mut singles = Vec::with_capacity(missing.len());
            for i in missing {
                let seed = seeds.get(i as usize).copied().flatten();
                let body = self.body(request, sampling, streaming, None, seed)?;
                let inner = Arc::clone(self);
                let tx = tx.clone();
                singles.push(async move {
                    inner
                        .run(path, body, streaming, Target::Single(i), &tx, started)
                        .await
                });
            }
            match answer::fan_out(singles).await? {
                Some(runs) => answers.extend(runs.into_iter().map(Run::into_answer)),
                None => return Ok(None),
            }
        }
        let mut completion = answer::completion(&self.config.model, n, answers, started);
        completion.timings.requests += refused;
        Ok(Some(completion))
    }

    /// One request under the backend's limits. `Ok(None)`: the consumer went away.
    async fn run(
        &self,
        path: &'static str,
        body: Bytes,
        streaming: bool,
        target: Target,
        tx: &StreamSender,
        started: Instant,
    ) -> Result<Option<Run>, BackendError> {
        let remote = &self.remote;
        remote
            .limited(async {
                debug!(model = %self.config.model, ?target, streaming, path, "POST");
                let opened = remote.post(path, body).await?;
                let mut run = Run::new(target, started);
                if !streaming {
                    let bytes = http::read_all(opened).await?;
                    let response: Response =
                        serde_json::from_slice(&bytes).map_err(|e| malformed(&e, &bytes))?;
                    run.whole(response);
                    return Ok(Some(run));
                }
                let limit = remote.max_line_bytes();
                match answer::read_frames::<SseBuffer, _>(opened, limit, &mut run, tx).await? {
                    Flow::Done => Ok(Some(run)),
                    Flow::Gone => Ok(None),
                    // No [DONE]: accepted only if every choice said why it finished.
                    Flow::More if run.received.all_finished() => Ok(Some(run)),
                    Flow::More => Err(BackendError::Protocol(
                        "the event stream ended before [DONE]".into(),
                    )),
                }
            })
            .await
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
        assert!(mentions_n("n_cmpl must not exceed the number of slots"));
        assert!(!mentions_n("Incorrect API key provided"));
        assert!(!mentions_n("max_tokens is too large: 4096"));
    }
}
