//! The Ollama dialect: `/api/chat`, `/api/generate`, `/api/tags`, `/api/show`, `/api/version`.
//!
//! Ollama has no `n`: one response per request. Sampling settings live in `options`.

use std::convert::Infallible;
use std::time::{Duration, Instant};

use axum::Json;
use axum::body::{Body, Bytes};
use axum::extract::State;
use axum::extract::rejection::BytesRejection;
use axum::http::header;
use axum::response::{IntoResponse, Response};
use futures::{StreamExt, stream};
use optillm_core::{Message, ResponseFormat, Role, Sampling};
use serde::Deserialize;
use serde_json::{Map, Value, json};

use crate::error::{ApiError, OllamaError};
use crate::models::ModelInfo;
use crate::openai::logprob_json;
use crate::run::{EventStream, Final, RunEvent};
use crate::{Answer, AppState, Incoming, parse_body, rfc3339_now};

/// The Ollama API version this server answers like.
pub const OLLAMA_VERSION: &str = "0.5.1";

#[derive(Debug, Deserialize)]
struct InMessage {
    role: String,
    #[serde(default)]
    content: Option<String>,
    #[serde(default)]
    images: Option<Vec<Value>>,
    #[serde(default)]
    tool_calls: Option<Vec<Value>>,
}

/// Fields shared by `/api/chat` and `/api/generate`.
#[derive(Debug, Default, Deserialize)]
struct Common {
    #[serde(default)]
    model: String,
    #[serde(default)]
    stream: Option<bool>,
    #[serde(default)]
    options: Option<Map<String, Value>>,
    #[serde(default)]
    format: Option<Value>,
    #[serde(default)]
    tools: Option<Vec<Value>>,
    #[serde(default)]
    think: Option<Value>,
    #[serde(default)]
    logprobs: Option<bool>,
    #[serde(default)]
    top_logprobs: Option<u32>,
    #[serde(default)]
    optillm_approach: Option<String>,
    #[serde(default)]
    optillm_params: Option<Map<String, Value>>,
}

#[derive(Debug, Deserialize)]
struct ChatBody {
    #[serde(default)]
    messages: Vec<InMessage>,
    #[serde(flatten)]
    common: Common,
}

#[derive(Debug, Deserialize)]
struct GenerateBody {
    #[serde(default)]
    prompt: Option<String>,
    #[serde(default)]
    system: Option<String>,
    #[serde(default)]
    suffix: Option<String>,
    #[serde(default)]
    images: Option<Vec<Value>>,
    #[serde(default)]
    raw: Option<bool>,
    #[serde(default)]
    template: Option<String>,
    #[serde(flatten)]
    common: Common,
}

fn unsupported(what: &str) -> ApiError {
    ApiError::bad_request(format!("{what} is not supported by this server"))
}

fn number(key: &str, v: &Value) -> Result<f64, ApiError> {
    v.as_f64()
        .ok_or_else(|| ApiError::bad_request(format!("option `{key}` must be a number, got {v}")))
}

fn float(key: &str, v: &Value) -> Result<f32, ApiError> {
    Ok(number(key, v)? as f32)
}

fn integer(key: &str, v: &Value) -> Result<i64, ApiError> {
    v.as_i64()
        .ok_or_else(|| ApiError::bad_request(format!("option `{key}` must be an integer, got {v}")))
}

/// Ollama `options` as sampling settings. Load-time and tuning options that do not change
/// what is sampled are ignored with a log line (as Ollama does with unknown keys);
/// sampling options this server cannot honour are refused.
fn sampling_from_options(options: Option<&Map<String, Value>>) -> Result<Sampling, ApiError> {
    let mut s = Sampling::default();
    let Some(options) = options else {
        return Ok(s);
    };
    for (key, v) in options {
        if v.is_null() {
            continue;
        }
        match key.as_str() {
            "temperature" => s.temperature = Some(float(key, v)?),
            "top_p" => s.top_p = Some(float(key, v)?),
            "min_p" => s.min_p = Some(float(key, v)?),
            "repeat_penalty" => s.repeat_penalty = Some(float(key, v)?),
            "top_k" => {
                let k = integer(key, v)?;
                s.top_k = Some(u32::try_from(k).map_err(|_| {
                    ApiError::bad_request(format!("option `top_k` must be >= 0, got {k}"))
                })?);
            }
            "seed" => {
                // -1 (Ollama's default) means a random seed.
                let seed = integer(key, v)?;
                s.seed = u32::try_from(seed).ok();
            }
            "num_predict" => {
                // -1: unlimited, -2: fill the context.
                let n = integer(key, v)?;
                s.max_tokens = match n {
                    -2 | -1 => None,
                    1.. => Some(u32::try_from(n).unwrap_or(u32::MAX)),
                    _ => {
                        return Err(ApiError::bad_request(format!(
                            "option `num_predict` must be at least 1, or -1 (no limit) or \
                             -2 (fill the context), got {n}"
                        )));
                    }
                };
            }
            "stop" => {
                s.stop = match v {
                    Value::String(one) => vec![one.clone()],
                    Value::Array(items) => items
                        .iter()
                        .map(|i| {
                            i.as_str().map(str::to_string).ok_or_else(|| {
                                ApiError::bad_request("option `stop` must be a list of strings")
                            })
                        })
                        .collect::<Result<_, _>>()?,
                    _ => {
                        return Err(ApiError::bad_request(
                            "option `stop` must be a list of strings",
                        ));
                    }
                }
            }
            "presence_penalty" | "frequency_penalty" => {
                if number(key, v)? != 0.0 {
                    return Err(unsupported(&format!("option `{key}`")));
                }
            }
            "mirostat" => {
                if number(key, v)? != 0.0 {
                    return Err(unsupported("option `mirostat`"));
                }
            }
            "typical_p" | "tfs_z" => {
                if number(key, v)? != 1.0 {
                    return Err(unsupported(&format!("option `{key}`")));
                }
            }
            other => tracing::debug!(option = other, "ignoring Ollama option"),
        }
    }
    Ok(s)
}

impl Common {
    fn check(&self) -> Result<(), ApiError> {
        if self.model.trim().is_empty() {
            return Err(ApiError::bad_request("model is required"));
        }
        if self.tools.as_ref().is_some_and(|t| !t.is_empty()) {
            return Err(unsupported("`tools`"));
        }
        if self
            .think
            .as_ref()
            .is_some_and(|t| !matches!(t, Value::Null | Value::Bool(false)))
        {
            return Err(unsupported("`think`"));
        }
        Ok(())
    }

    fn into_incoming(self, messages: Vec<Message>) -> Result<Incoming, ApiError> {
        let logprobs = match (self.logprobs, self.top_logprobs) {
            (Some(true), k) => Some(k.unwrap_or(0)),
            _ => None,
        };
        Ok(Incoming {
            model: self.model,
            messages,
            sampling: sampling_from_options(self.options.as_ref())?,
            n: 1,
            logprobs,
            format: format_of(self.format.as_ref())?,
            raw: false,
            approach: self.optillm_approach,
            params: self.optillm_params,
        })
    }
}

/// Ollama's `format`: `"json"` for any JSON object, or a JSON schema object (`""` and
/// `null`: free text). The schema's bounds are checked later, with the rest of the request.
fn format_of(format: Option<&Value>) -> Result<Option<ResponseFormat>, ApiError> {
    match format {
        None | Some(Value::Null) => Ok(None),
        Some(Value::String(s)) if s.is_empty() => Ok(None),
        Some(Value::String(s)) if s == "json" => Ok(Some(ResponseFormat::JsonObject)),
        Some(schema @ Value::Object(_)) => Ok(Some(ResponseFormat::json_schema(schema.clone()))),
        Some(_) => Err(ApiError::bad_request(
            "`format` must be \"json\" or a JSON schema object",
        )),
    }
}

fn role(name: &str) -> Result<Role, ApiError> {
    match name {
        "system" => Ok(Role::System),
        "user" => Ok(Role::User),
        "assistant" => Ok(Role::Assistant),
        "tool" => Ok(Role::Tool),
        other => Err(ApiError::bad_request(format!(
            "unknown message role `{other}` (system, user, assistant or tool)"
        ))),
    }
}

/// Which field carries the text: `message.content` (chat) or `response` (generate).
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
enum Kind {
    Chat,
    Generate,
}

/// `POST /api/chat`
pub(crate) async fn chat(
    State(state): State<AppState>,
    body: Result<Bytes, BytesRejection>,
) -> Result<Response, OllamaError> {
    let body: ChatBody = parse_body(body)?;
    body.common.check()?;
    let mut messages = Vec::new();
    for m in body.messages {
        if m.images.as_ref().is_some_and(|i| !i.is_empty()) {
            return Err(unsupported("`images`").into());
        }
        if m.tool_calls.as_ref().is_some_and(|t| !t.is_empty()) {
            return Err(unsupported("`tool_calls`").into());
        }
        messages.push(Message::new(role(&m.role)?, m.content.unwrap_or_default()));
    }
    let stream = body.common.stream.unwrap_or(true);
    respond(
        state,
        body.common.into_incoming(messages)?,
        stream,
        Kind::Chat,
    )
    .await
}

/// `POST /api/generate`
pub(crate) async fn generate(
    State(state): State<AppState>,
    body: Result<Bytes, BytesRejection>,
) -> Result<Response, OllamaError> {
    let body: GenerateBody = parse_body(body)?;
    body.common.check()?;
    if body.images.as_ref().is_some_and(|i| !i.is_empty()) {
        return Err(unsupported("`images`").into());
    }
    if body.suffix.as_ref().is_some_and(|s| !s.is_empty()) {
        return Err(unsupported("`suffix` (fill in the middle)").into());
    }
    if body.template.as_ref().is_some_and(|t| !t.is_empty()) {
        return Err(unsupported(
            "`template` (the model's chat template is used, or none with `raw`)",
        )
        .into());
    }
    let raw = body.raw == Some(true);
    let system = body.system.filter(|s| !s.is_empty());
    if raw && system.is_some() {
        return Err(ApiError::bad_request(
            "`system` has no place in a `raw` prompt: write it into the prompt",
        )
        .into());
    }
    let mut messages = Vec::new();
    if let Some(system) = system {
        messages.push(Message::system(system));
    }
    if let Some(prompt) = body.prompt.filter(|p| !p.is_empty()) {
        messages.push(Message::user(prompt));
    }
    let stream = body.common.stream.unwrap_or(true);
    let mut incoming = body.common.into_incoming(messages)?;
    // `raw`: the prompt is continued as it is, without the chat template.
    incoming.raw = raw;
    respond(state, incoming, stream, Kind::Generate).await
}

async fn respond(
    state: AppState,
    incoming: Incoming,
    stream: bool,
    kind: Kind,
) -> Result<Response, OllamaError> {
    let model = incoming.model.clone();
    if !incoming
        .messages
        .iter()
        .any(|m| m.role == Role::User || m.role == Role::Assistant)
    {
        // An empty request loads the model: answer like Ollama, with done_reason "load".
        let known = state.inner.models.list();
        let (_, name) = crate::approach::split_model(&model, &known)?;
        state.inner.models.get(&name).await?;
        let mut line = base(&model, kind, "");
        line["done"] = json!(true);
        line["done_reason"] = json!("load");
        return Ok(Json(line).into_response());
    }
    let started = Instant::now();
    match state.answer(incoming, stream).await? {
        Answer::Whole(fin) => {
            let text = fin.choices.first().map(|c| c.text.as_str()).unwrap_or("");
            let mut line = base(&model, kind, text);
            if let Some(lps) = fin.choices.first().and_then(|c| c.logprobs.as_ref()) {
                line["logprobs"] = json!(lps.iter().map(logprob_json).collect::<Vec<_>>());
            }
            finish(&mut line, &fin, started.elapsed());
            Ok(Json(line).into_response())
        }
        Answer::Stream(events) => Ok(ndjson(events, model, kind, started)),
    }
}

fn base(model: &str, kind: Kind, text: &str) -> Value {
    let mut v = json!({ "model": model, "created_at": rfc3339_now() });
    match kind {
        Kind::Chat => v["message"] = json!({ "role": "assistant", "content": text }),
        Kind::Generate => v["response"] = json!(text),
    }
    v["done"] = json!(false);
    v
}

fn nanos(d: Duration) -> u64 {
    u64::try_from(d.as_nanos()).unwrap_or(u64::MAX)
}

/// Marks `line` as the final one, with the reason and metrics (zero metrics omitted).
fn finish(line: &mut Value, fin: &Final, elapsed: Duration) {
    line["done"] = json!(true);
    let reason = fin
        .choices
        .first()
        .map_or("stop", |c| c.finish.as_api_str());
    line["done_reason"] = json!(reason);
    let metrics = [
        ("total_duration", nanos(elapsed)),
        ("prompt_eval_count", u64::from(fin.usage.prompt_tokens)),
        ("prompt_eval_duration", nanos(fin.timings.prompt_eval)),
        ("eval_count", u64::from(fin.usage.completion_tokens)),
        ("eval_duration", nanos(fin.timings.decode)),
    ];
    for (key, value) in metrics {
        if value > 0 {
            line[key] = json!(value);
        }
    }
}

struct LineState {
    model: String,
    kind: Kind,
    started: Instant,
    finished: bool,
}

impl LineState {
    fn render(&mut self, event: Option<RunEvent>) -> Option<Value> {
        if self.finished {
            return None;
        }
        match event {
            // Ollama has no comments: an empty chunk keeps the connection busy.
            Some(RunEvent::KeepAlive) => Some(base(&self.model, self.kind, "")),
            // Ollama has one response per request.
            Some(RunEvent::Delta { index, .. }) if index != 0 => None,
            Some(RunEvent::Delta { text, logprob, .. }) => {
                let mut line = base(&self.model, self.kind, &text);
                if let Some(lp) = logprob {
                    line["logprobs"] = json!([logprob_json(&lp)]);
                }
                Some(line)
            }
            Some(RunEvent::Done(fin)) => {
                self.finished = true;
                let mut line = base(&self.model, self.kind, "");
                finish(&mut line, &fin, self.started.elapsed());
                Some(line)
            }
            Some(RunEvent::Error(e)) => {
                self.finished = true;
                Some(e.body(crate::Dialect::Ollama))
            }
            None => {
                self.finished = true;
                Some(json!({ "error": "the run stopped before its answer" }))
            }
        }
    }
}

fn ndjson(events: EventStream, model: String, kind: Kind, started: Instant) -> Response {
    let mut state = LineState {
        model,
        kind,
        started,
        finished: false,
    };
    let lines = events
        .map(Some)
        .chain(stream::once(async { None }))
        .filter_map(move |e| {
            let line = state
                .render(e)
                .map(|v| Ok::<_, Infallible>(format!("{v}\n")));
            async move { line }
        });
    (
        [(header::CONTENT_TYPE, "application/x-ndjson")],
        Body::from_stream(lines),
    )
        .into_response()
}

fn details(m: &ModelInfo) -> Value {
    json!({
        "parent_model": "",
        "format": m.format.clone().unwrap_or_else(|| "gguf".into()),
        "family": m.family.clone().unwrap_or_default(),
        "families": m.family.iter().collect::<Vec<_>>(),
        "parameter_size": m.parameter_size.clone().unwrap_or_default(),
        "quantization_level": m.quantization_level.clone().unwrap_or_default(),
    })
}

const EPOCH: &str = "1970-01-01T00:00:00Z";

/// `GET /api/tags`: every model under every approach, like `/v1/models`.
pub(crate) async fn tags(State(state): State<AppState>) -> Response {
    let approaches = optillm_core::strategies::catalogue();
    let mut models = Vec::new();
    for m in state.inner.models.list() {
        for a in &approaches {
            let name = if a.slug == "none" {
                m.name.clone()
            } else {
                format!("{}-{}", a.slug, m.name)
            };
            models.push(json!({
                "name": name,
                "model": name,
                "modified_at": EPOCH,
                "size": m.size.unwrap_or(0),
                "digest": m.digest.clone().unwrap_or_default(),
                "details": details(&m),
            }));
        }
    }
    Json(json!({ "models": models })).into_response()
}

#[derive(Debug, Deserialize)]
struct ShowBody {
    #[serde(default)]
    model: Option<String>,
    #[serde(default)]
    name: Option<String>,
}

/// `POST /api/show`
pub(crate) async fn show(
    State(state): State<AppState>,
    body: Result<Bytes, BytesRejection>,
) -> Result<Response, OllamaError> {
    let body: ShowBody = parse_body(body)?;
    let requested = body
        .model
        .or(body.name)
        .filter(|m| !m.trim().is_empty())
        .ok_or_else(|| ApiError::bad_request("model is required"))?;
    let known = state.inner.models.list();
    let (spec, name) = crate::approach::split_model(&requested, &known)?;
    let info = known
        .iter()
        .find(|m| m.name == name)
        .ok_or_else(|| ApiError::model_not_found(&requested))?;
    let mut model_info = Map::new();
    let arch = info.family.clone().unwrap_or_else(|| "unknown".into());
    model_info.insert("general.architecture".into(), json!(arch));
    if let Some(ctx) = info.context_length {
        model_info.insert(format!("{arch}.context_length"), json!(ctx));
    }
    let approach = spec.map_or_else(|| "none".to_string(), |s| s.to_string());
    Ok(Json(json!({
        "modelfile": format!("# served by optillm-rs with approach {approach}\nFROM {name}\n"),
        "parameters": "",
        "template": "",
        "details": details(info),
        "model_info": model_info,
        "capabilities": ["completion"],
        "modified_at": EPOCH,
    }))
    .into_response())
}

/// `GET /api/version`
pub(crate) async fn version() -> Response {
    Json(json!({ "version": OLLAMA_VERSION })).into_response()
}
