//! The OpenAI dialect: `POST /v1/chat/completions`, `GET /v1/models`.

use std::collections::BTreeSet;
use std::convert::Infallible;

use axum::Json;
use axum::body::Bytes;
use axum::extract::State;
use axum::extract::rejection::BytesRejection;
use axum::response::sse::{Event, Sse};
use axum::response::{IntoResponse, Response};
use futures::{Stream, StreamExt, stream};
use optillm_core::{Message, ResponseFormat, Role, Sampling, TokenLogprob};
use serde::Deserialize;
use serde_json::{Map, Value, json};

use crate::error::{ApiError, OpenAiError};
use crate::run::{EventStream, Final, FinalChoice, RunEvent};
use crate::{Answer, AppState, Incoming, new_id, parse_body, unix_now};

#[derive(Debug, Deserialize)]
#[serde(untagged)]
enum Content {
    Text(String),
    Parts(Vec<Part>),
}

#[derive(Debug, Deserialize)]
struct Part {
    #[serde(rename = "type")]
    kind: String,
    #[serde(default)]
    text: Option<String>,
}

#[derive(Debug, Deserialize)]
struct InMessage {
    role: String,
    #[serde(default)]
    content: Option<Content>,
    #[serde(default)]
    tool_calls: Option<Vec<Value>>,
}

#[derive(Debug, Deserialize)]
#[serde(untagged)]
pub(crate) enum Stop {
    One(String),
    Many(Vec<String>),
}

#[derive(Debug, Default, Deserialize)]
pub(crate) struct StreamOptions {
    #[serde(default)]
    pub(crate) include_usage: bool,
}

/// The fields the chat and the text completions endpoints share: streaming, sampling,
/// what this server refuses, structured output and the approach.
#[derive(Debug, Deserialize)]
pub(crate) struct Shared {
    #[serde(default)]
    stream: Option<bool>,
    #[serde(default)]
    stream_options: Option<StreamOptions>,
    #[serde(default)]
    temperature: Option<f32>,
    #[serde(default)]
    top_p: Option<f32>,
    #[serde(default)]
    top_k: Option<u32>,
    #[serde(default)]
    min_p: Option<f32>,
    #[serde(default, alias = "repetition_penalty")]
    repeat_penalty: Option<f32>,
    #[serde(default)]
    seed: Option<i64>,
    #[serde(default)]
    pub(crate) max_tokens: Option<u32>,
    #[serde(default)]
    stop: Option<Stop>,
    #[serde(default)]
    pub(crate) n: Option<u32>,
    #[serde(default)]
    presence_penalty: Option<f32>,
    #[serde(default)]
    frequency_penalty: Option<f32>,
    #[serde(default)]
    logit_bias: Option<Map<String, Value>>,
    #[serde(default)]
    response_format: Option<Value>,
    /// llama-server's GBNF grammar.
    #[serde(default)]
    grammar: Option<String>,
    #[serde(default)]
    optillm_approach: Option<String>,
    #[serde(default)]
    optillm_params: Option<Map<String, Value>>,
}

/// What the shared fields ask for, checked ([`Shared::read`]).
pub(crate) struct Read {
    pub(crate) sampling: Sampling,
    pub(crate) format: Option<ResponseFormat>,
    pub(crate) approach: Option<String>,
    pub(crate) params: Option<Map<String, Value>>,
}

impl Shared {
    /// Whether the answer is streamed, and with a final usage chunk.
    pub(crate) fn streaming(&self) -> (bool, bool) {
        let include_usage = self
            .stream_options
            .as_ref()
            .is_some_and(|o| o.include_usage);
        (self.stream.unwrap_or(false), include_usage)
    }

    /// The sampling settings (`max_tokens` as the endpoint resolved it), the response
    /// format and the approach; a 400 for what this server does not do.
    pub(crate) fn read(self, max_tokens: Option<u32>) -> Result<Read, ApiError> {
        let unsupported = |what: &str| {
            Err(ApiError::bad_request(format!(
                "`{what}` is not supported by this server"
            )))
        };
        if self.presence_penalty.is_some_and(|p| p != 0.0) {
            return unsupported("presence_penalty");
        }
        if self.frequency_penalty.is_some_and(|p| p != 0.0) {
            return unsupported("frequency_penalty");
        }
        if self.logit_bias.as_ref().is_some_and(|m| !m.is_empty()) {
            return unsupported("logit_bias");
        }
        let format = response_format(self.response_format.as_ref(), self.grammar)?;
        let sampling = Sampling {
            temperature: self.temperature,
            top_p: self.top_p,
            top_k: self.top_k,
            min_p: self.min_p,
            repeat_penalty: self.repeat_penalty,
            seed: seed_of(self.seed)?,
            max_tokens,
            stop: stop_list(self.stop),
        };
        Ok(Read {
            sampling,
            format,
            approach: self.optillm_approach,
            params: self.optillm_params,
        })
    }
}

/// Logs the fields a body sent that this server does not read.
pub(crate) fn log_ignored(extra: &Map<String, Value>) {
    for key in extra.keys() {
        tracing::debug!(field = %key, "ignoring request field");
    }
}

#[derive(Debug, Deserialize)]
struct ChatBody {
    model: String,
    messages: Vec<InMessage>,
    /// Before `extra`, which gets only the fields nothing else took.
    #[serde(flatten)]
    shared: Shared,
    #[serde(default)]
    max_completion_tokens: Option<u32>,
    #[serde(default)]
    logprobs: Option<bool>,
    #[serde(default)]
    top_logprobs: Option<u32>,
    #[serde(default)]
    tools: Option<Vec<Value>>,
    #[serde(flatten)]
    extra: Map<String, Value>,
}

/// A request's `seed`, which llama.cpp takes as 32 bits.
pub(crate) fn seed_of(seed: Option<i64>) -> Result<Option<u32>, ApiError> {
    seed.map(|s| {
        u32::try_from(s)
            .map_err(|_| ApiError::bad_request(format!("seed must be in 0..=4294967295, got {s}")))
    })
    .transpose()
}

/// A request's `stop`: one string or a list.
pub(crate) fn stop_list(stop: Option<Stop>) -> Vec<String> {
    match stop {
        None => Vec::new(),
        Some(Stop::One(s)) => vec![s],
        Some(Stop::Many(v)) => v,
    }
}

fn role(name: &str) -> Result<Role, ApiError> {
    match name {
        "system" | "developer" => Ok(Role::System),
        "user" => Ok(Role::User),
        "assistant" => Ok(Role::Assistant),
        "tool" => Ok(Role::Tool),
        other => Err(ApiError::bad_request(format!(
            "unknown message role `{other}` (system, developer, user, assistant or tool)"
        ))),
    }
}

fn message(m: InMessage) -> Result<Message, ApiError> {
    if m.tool_calls.as_ref().is_some_and(|t| !t.is_empty()) {
        return Err(ApiError::bad_request("tool calls are not supported"));
    }
    let content = match m.content {
        None => String::new(),
        Some(Content::Text(t)) => t,
        Some(Content::Parts(parts)) => {
            let mut texts = Vec::new();
            for p in parts {
                match (p.kind.as_str(), p.text) {
                    ("text", Some(t)) => texts.push(t),
                    (kind, _) => {
                        return Err(ApiError::bad_request(format!(
                            "content part `{kind}` is not supported: only text"
                        )));
                    }
                }
            }
            texts.join("\n")
        }
    };
    Ok(Message::new(role(&m.role)?, content))
}

impl ChatBody {
    fn into_incoming(self) -> Result<Incoming, ApiError> {
        if self.tools.as_ref().is_some_and(|t| !t.is_empty()) {
            return Err(ApiError::bad_request(
                "`tools` is not supported by this server",
            ));
        }
        log_ignored(&self.extra);
        let n = self.shared.n.unwrap_or(1);
        let max_tokens = self.max_completion_tokens.or(self.shared.max_tokens);
        let read = self.shared.read(max_tokens)?;
        let logprobs = match (self.logprobs, self.top_logprobs) {
            (Some(true), k) => Some(k.unwrap_or(0)),
            (_, Some(_)) => {
                return Err(ApiError::bad_request(
                    "top_logprobs needs logprobs set to true",
                ));
            }
            _ => None,
        };
        Ok(Incoming {
            model: self.model,
            messages: self
                .messages
                .into_iter()
                .map(message)
                .collect::<Result<_, _>>()?,
            sampling: read.sampling,
            n,
            logprobs,
            format: read.format,
            raw: false,
            approach: read.approach,
            params: read.params,
        })
    }
}

/// The structured output a body asks for: OpenAI's `response_format` (`text`,
/// `json_object`, `json_schema` with `json_schema.schema`; llama-server's spelling with
/// `schema` beside `type` too), or llama-server's GBNF `grammar` (empty: none). The
/// format's own bounds are checked later, with the rest of the request.
pub(crate) fn response_format(
    format: Option<&Value>,
    grammar: Option<String>,
) -> Result<Option<ResponseFormat>, ApiError> {
    let kinds = "text, json_object or json_schema";
    let parsed = match format {
        None | Some(Value::Null) => None,
        Some(f) => {
            let Some(kind) = f.get("type").and_then(Value::as_str) else {
                return Err(ApiError::bad_request(format!(
                    "`response_format` needs a `type`: {kinds}"
                )));
            };
            let schema = f
                .get("json_schema")
                .and_then(|j| j.get("schema"))
                .or_else(|| f.get("schema"));
            match (kind, schema) {
                ("text", _) => None,
                ("json_object", None) => Some(ResponseFormat::JsonObject),
                ("json_object" | "json_schema", Some(s)) => {
                    Some(ResponseFormat::json_schema(s.clone()))
                }
                ("json_schema", None) => {
                    return Err(ApiError::bad_request(
                        "`response_format` of type json_schema needs `json_schema.schema`",
                    ));
                }
                (other, _) => {
                    return Err(ApiError::bad_request(format!(
                        "unknown `response_format` type `{other}`: {kinds}"
                    )));
                }
            }
        }
    };
    match (parsed, grammar.filter(|g| !g.is_empty())) {
        (parsed, None) => Ok(parsed),
        (None, Some(g)) => Ok(Some(ResponseFormat::grammar(g))),
        (Some(_), Some(_)) => Err(ApiError::bad_request(
            "give either a `grammar` or a JSON `response_format`, not both",
        )),
    }
}

/// `POST /v1/chat/completions`
pub(crate) async fn chat(
    State(state): State<AppState>,
    body: Result<Bytes, BytesRejection>,
) -> Result<Response, OpenAiError> {
    let body: ChatBody = parse_body(body)?;
    let (stream, include_usage) = body.shared.streaming();
    let incoming = body.into_incoming()?;
    respond(&state, incoming, stream, include_usage, Chat::default()).await
}

/// How one OpenAI endpoint lays out its answer and its stream's chunks: chat
/// completions here, text completions in [`crate::completions`].
pub(crate) trait Layout: Send + 'static {
    /// The prefix of a response's id.
    const ID_PREFIX: &'static str;
    /// `object` of a whole answer.
    const OBJECT: &'static str;
    /// `object` of a streamed chunk.
    const CHUNK_OBJECT: &'static str;
    /// One choice of a whole answer.
    fn choice(c: &FinalChoice) -> Value;
    /// A streamed choice carrying the next piece of choice `index`'s text.
    fn delta(&mut self, index: u32, text: &str, logprob: Option<&TokenLogprob>) -> Value;
    /// The streamed choices (one a chunk) that end choice `index` with `reason`.
    fn end(&mut self, index: u32, reason: &str) -> Vec<Value>;
}

/// Runs a request of either OpenAI endpoint and writes its answer in `layout`: whole,
/// or as server-sent events.
pub(crate) async fn respond<L: Layout>(
    state: &AppState,
    incoming: Incoming,
    stream: bool,
    include_usage: bool,
    layout: L,
) -> Result<Response, OpenAiError> {
    let meta = Meta {
        id: new_id(L::ID_PREFIX),
        created: unix_now(),
        model: incoming.model.clone(),
        include_usage,
    };
    Ok(match state.answer(incoming, stream).await? {
        Answer::Whole(fin) => Json(whole_json::<L>(&meta, &fin)).into_response(),
        Answer::Stream(events) => Sse::new(sse_events(events, meta, layout)).into_response(),
    })
}

/// What every chunk and answer of one response repeats.
struct Meta {
    id: String,
    created: u64,
    model: String,
    include_usage: bool,
}

fn usage_json(fin: &Final) -> Value {
    json!({
        "prompt_tokens": fin.usage.prompt_tokens,
        "completion_tokens": fin.usage.completion_tokens,
        "total_tokens": fin.usage.total(),
    })
}

fn whole_json<L: Layout>(meta: &Meta, fin: &Final) -> Value {
    json!({
        "id": meta.id,
        "object": L::OBJECT,
        "created": meta.created,
        "model": meta.model,
        "system_fingerprint": null,
        "choices": fin.choices.iter().map(L::choice).collect::<Vec<_>>(),
        "usage": usage_json(fin),
    })
}

/// Chat completions: the text as a message, logprobs as a `content` list.
#[derive(Default)]
struct Chat {
    /// Choices whose role has been sent.
    started: BTreeSet<u32>,
}

/// One token's logprobs as OpenAI's chat completions write them; Ollama's answers use
/// the same shape.
pub(crate) fn logprob_json(lp: &TokenLogprob) -> Value {
    json!({
        "token": lp.token,
        "logprob": lp.logprob,
        "bytes": lp.token.as_bytes(),
        "top_logprobs": lp.top.iter().map(|t| json!({
            "token": t.token,
            "logprob": t.logprob,
            "bytes": t.token.as_bytes(),
        })).collect::<Vec<_>>(),
    })
}

impl Layout for Chat {
    const ID_PREFIX: &'static str = "chatcmpl";
    const OBJECT: &'static str = "chat.completion";
    const CHUNK_OBJECT: &'static str = "chat.completion.chunk";

    fn choice(c: &FinalChoice) -> Value {
        json!({
            "index": c.index,
            "message": {"role": "assistant", "content": c.text},
            "logprobs": c.logprobs.as_ref().map(|l| json!({
                "content": l.iter().map(logprob_json).collect::<Vec<_>>()
            })),
            "finish_reason": c.finish.as_api_str(),
        })
    }

    fn delta(&mut self, index: u32, text: &str, logprob: Option<&TokenLogprob>) -> Value {
        let mut delta = json!({ "content": text });
        if self.started.insert(index) {
            delta["role"] = json!("assistant");
        }
        let logprobs = logprob.map(|l| json!({ "content": [logprob_json(l)] }));
        json!({ "index": index, "delta": delta, "logprobs": logprobs, "finish_reason": null })
    }

    fn end(&mut self, index: u32, reason: &str) -> Vec<Value> {
        let mut out = Vec::new();
        if !self.started.contains(&index) {
            // A choice with no text still says its role before it ends.
            out.push(self.delta(index, "", None));
        }
        out.push(json!({ "index": index, "delta": {}, "logprobs": null, "finish_reason": reason }));
        out
    }
}

pub(crate) fn data(value: Value) -> Event {
    Event::default().data(value.to_string())
}

struct SseState<L> {
    meta: Meta,
    layout: L,
    finished: bool,
}

impl<L: Layout> SseState<L> {
    fn chunk(&self, choices: Value, usage: Option<Value>) -> Event {
        let mut chunk = json!({
            "id": self.meta.id,
            "object": L::CHUNK_OBJECT,
            "created": self.meta.created,
            "model": self.meta.model,
            "system_fingerprint": null,
            "choices": choices,
        });
        if let Some(usage) = usage {
            chunk["usage"] = usage;
        }
        data(chunk)
    }

    fn render(&mut self, event: Option<RunEvent>) -> Vec<Event> {
        if self.finished {
            return Vec::new();
        }
        match event {
            Some(RunEvent::KeepAlive) => vec![Event::default().comment("keep-alive")],
            Some(RunEvent::Delta {
                index,
                text,
                logprob,
            }) => {
                let choice = self.layout.delta(index, &text, logprob.as_ref());
                vec![self.chunk(json!([choice]), None)]
            }
            Some(RunEvent::Done(fin)) => {
                self.finished = true;
                let mut out = Vec::new();
                for c in &fin.choices {
                    for choice in self.layout.end(c.index, c.finish.as_api_str()) {
                        out.push(self.chunk(json!([choice]), None));
                    }
                }
                if self.meta.include_usage {
                    out.push(self.chunk(json!([]), Some(usage_json(&fin))));
                }
                out.push(Event::default().data("[DONE]"));
                out
            }
            Some(RunEvent::Error(e)) => {
                self.finished = true;
                vec![data(e.body(crate::Dialect::OpenAi))]
            }
            None => {
                self.finished = true;
                let e = ApiError::new(
                    axum::http::StatusCode::INTERNAL_SERVER_ERROR,
                    "the run stopped before its answer",
                );
                vec![data(e.body(crate::Dialect::OpenAi))]
            }
        }
    }
}

fn sse_events<L: Layout>(
    events: EventStream,
    meta: Meta,
    layout: L,
) -> impl Stream<Item = Result<Event, Infallible>> {
    let mut state = SseState {
        meta,
        layout,
        finished: false,
    };
    events
        .map(Some)
        .chain(stream::once(async { None }))
        .flat_map(move |e| stream::iter(state.render(e)))
        .map(Ok)
}

/// `GET /v1/models`: every model under every approach (`none` as the bare name).
pub(crate) async fn models(State(state): State<AppState>) -> Response {
    let approaches = optillm_core::strategies::catalogue();
    let mut data = Vec::new();
    for m in state.inner.models.list() {
        let owner = m.owned_by.clone().unwrap_or_else(|| "optillm".into());
        for a in &approaches {
            let id = if a.slug == "none" {
                m.name.clone()
            } else {
                format!("{}-{}", a.slug, m.name)
            };
            data.push(json!({"id": id, "object": "model", "created": 0, "owned_by": owner}));
        }
    }
    Json(json!({"object": "list", "data": data})).into_response()
}

/// `GET /v1/models/{id}`: one model, with or without an approach prefix.
pub(crate) async fn model(
    State(state): State<AppState>,
    axum::extract::Path(id): axum::extract::Path<String>,
) -> Result<Response, OpenAiError> {
    let known = state.inner.models.list();
    let (_, name) = crate::approach::split_model(&id, &known)?;
    let info = known
        .iter()
        .find(|m| m.name == name)
        .ok_or_else(|| ApiError::model_not_found(&id))?;
    let owner = info.owned_by.clone().unwrap_or_else(|| "optillm".into());
    Ok(Json(json!({"id": id, "object": "model", "created": 0, "owned_by": owner})).into_response())
}
