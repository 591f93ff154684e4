//! OpenAI's text completions, `POST /v1/completions`: the prompt is continued as it is,
//! without the chat template (a base model, or a prompt its caller has templated).
//! Only the `none` approach takes it; the others write chat prompts of their own.

use std::convert::Infallible;

use axum::Json;
use axum::body::Bytes;
use axum::extract::State;
use axum::extract::rejection::BytesRejection;
use axum::response::sse::{Event, Sse};
use axum::response::{IntoResponse, Response};
use futures::{Stream, StreamExt, stream};
use optillm_core::{Message, Sampling, TokenLogprob};
use serde::Deserialize;
use serde_json::{Map, Value, json};

use crate::error::{ApiError, OpenAiError};
use crate::openai::{
    Meta, Stop, StreamOptions, data, response_format, seed_of, stop_list, usage_json,
};
use crate::run::{EventStream, Final, RunEvent};
use crate::{AppState, Incoming, new_id, parse_body, unix_now};

/// Tokens generated when a request gives no `max_tokens`: OpenAI's documented default
/// for this endpoint (vLLM's too).
pub const DEFAULT_MAX_TOKENS: u32 = 16;

/// `prompt`: one string, or a list holding one (a batch of prompts is not served).
#[derive(Debug, Deserialize)]
#[serde(untagged)]
enum Prompt {
    One(String),
    Many(Vec<String>),
}

#[derive(Debug, Deserialize)]
struct CompletionBody {
    model: String,
    prompt: Prompt,
    #[serde(default)]
    suffix: Option<String>,
    #[serde(default)]
    echo: Option<bool>,
    #[serde(default)]
    best_of: Option<u32>,
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
    max_tokens: Option<u32>,
    #[serde(default)]
    stop: Option<Stop>,
    #[serde(default)]
    n: Option<u32>,
    /// The number of top alternatives per token (`0`: the chosen token's only).
    #[serde(default)]
    logprobs: Option<u32>,
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
    #[serde(flatten)]
    extra: Map<String, Value>,
}

impl CompletionBody {
    fn into_incoming(self) -> Result<Incoming, ApiError> {
        let unsupported = |what: &str| {
            Err(ApiError::bad_request(format!(
                "`{what}` is not supported by this server"
            )))
        };
        if self.suffix.as_ref().is_some_and(|s| !s.is_empty()) {
            return unsupported("suffix");
        }
        if self.echo == Some(true) {
            return unsupported("echo");
        }
        if self.presence_penalty.is_some_and(|p| p != 0.0) {
            return unsupported("presence_penalty");
        }
        if self.frequency_penalty.is_some_and(|p| p != 0.0) {
            return unsupported("frequency_penalty");
        }
        if self.logit_bias.as_ref().is_some_and(|m| !m.is_empty()) {
            return unsupported("logit_bias");
        }
        let n = self.n.unwrap_or(1);
        if self.best_of.is_some_and(|b| b != n) {
            return Err(ApiError::bad_request(
                "`best_of` other than `n` is not supported: ask for the `bon-` approach's \
                 chat model instead",
            ));
        }
        let prompt = match self.prompt {
            Prompt::One(p) => p,
            Prompt::Many(mut list) if list.len() == 1 => list.remove(0),
            Prompt::Many(list) => {
                return Err(ApiError::bad_request(format!(
                    "`prompt` must be one string ({} given): send one request per prompt",
                    list.len()
                )));
            }
        };
        if prompt.is_empty() {
            return Err(ApiError::bad_request("`prompt` must not be empty"));
        }
        let format = response_format(self.response_format.as_ref(), self.grammar)?;
        for key in self.extra.keys() {
            tracing::debug!(field = %key, "ignoring request field");
        }
        let sampling = Sampling {
            temperature: self.temperature,
            top_p: self.top_p,
            top_k: self.top_k,
            min_p: self.min_p,
            repeat_penalty: self.repeat_penalty,
            seed: seed_of(self.seed)?,
            max_tokens: Some(self.max_tokens.unwrap_or(DEFAULT_MAX_TOKENS)),
            stop: stop_list(self.stop),
        };
        Ok(Incoming {
            model: self.model,
            messages: vec![Message::user(prompt)],
            sampling,
            n,
            logprobs: self.logprobs,
            format,
            raw: true,
            approach: self.optillm_approach,
            params: self.optillm_params,
        })
    }
}

/// `POST /v1/completions`
pub(crate) async fn complete(
    State(state): State<AppState>,
    body: Result<Bytes, BytesRejection>,
) -> Result<Response, OpenAiError> {
    let body: CompletionBody = parse_body(body)?;
    let stream = body.stream.unwrap_or(false);
    let include_usage = body
        .stream_options
        .as_ref()
        .is_some_and(|o| o.include_usage);
    let incoming = body.into_incoming()?;
    let meta = Meta {
        id: new_id("cmpl"),
        created: unix_now(),
        model: incoming.model.clone(),
        include_usage,
    };
    let ticket = state.inner.limiter.admit()?;
    let job = state.prepare(incoming).await?;
    if !stream {
        let permit = ticket.wait().await?;
        let fin = job.complete().await?;
        drop(permit);
        return Ok(Json(completion_json(&meta, &fin)).into_response());
    }
    let events = job
        .stream(state.inner.config.keep_alive_interval, ticket)
        .await?;
    Ok(Sse::new(sse_events(events, meta)).into_response())
}

/// Logprobs in this endpoint's own layout: parallel lists, one entry per token, each
/// token's offset counted in characters from the start of the completion.
fn logprobs_json(logprobs: &[TokenLogprob], first_offset: usize) -> Value {
    let mut offset = first_offset;
    let mut offsets = Vec::with_capacity(logprobs.len());
    for lp in logprobs {
        offsets.push(offset);
        offset += lp.token.chars().count();
    }
    json!({
        "tokens": logprobs.iter().map(|l| l.token.as_str()).collect::<Vec<_>>(),
        "token_logprobs": logprobs.iter().map(|l| l.logprob).collect::<Vec<_>>(),
        "top_logprobs": logprobs.iter().map(|l| {
            l.top.iter().map(|t| (t.token.clone(), json!(t.logprob))).collect::<Map<_, _>>()
        }).collect::<Vec<_>>(),
        "text_offset": offsets,
    })
}

fn completion_json(meta: &Meta, fin: &Final) -> Value {
    json!({
        "id": meta.id,
        "object": "text_completion",
        "created": meta.created,
        "model": meta.model,
        "system_fingerprint": null,
        "choices": fin.choices.iter().map(|c| json!({
            "index": c.index,
            "text": c.text,
            "logprobs": c.logprobs.as_ref().map(|l| logprobs_json(l, 0)),
            "finish_reason": c.finish.as_api_str(),
        })).collect::<Vec<_>>(),
        "usage": usage_json(fin),
    })
}

fn chunk(meta: &Meta, choices: Value) -> Event {
    data(json!({
        "id": meta.id,
        "object": "text_completion",
        "created": meta.created,
        "model": meta.model,
        "system_fingerprint": null,
        "choices": choices,
    }))
}

struct SseState {
    meta: Meta,
    /// Characters sent so far per choice (the next token's `text_offset`).
    sent: Vec<usize>,
    finished: bool,
}

impl SseState {
    fn sent_mut(&mut self, index: u32) -> &mut usize {
        let i = index as usize;
        if self.sent.len() <= i {
            self.sent.resize(i + 1, 0);
        }
        &mut self.sent[i]
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
                let sent = self.sent_mut(index);
                let offset = *sent;
                *sent += text.chars().count();
                let logprobs = logprob.map(|l| logprobs_json(std::slice::from_ref(&l), offset));
                vec![chunk(
                    &self.meta,
                    json!([{ "index": index, "text": text, "logprobs": logprobs, "finish_reason": null }]),
                )]
            }
            Some(RunEvent::Done(fin)) => {
                self.finished = true;
                let mut out: Vec<Event> = fin
                    .choices
                    .iter()
                    .map(|c| {
                        chunk(
                            &self.meta,
                            json!([{
                                "index": c.index,
                                "text": "",
                                "logprobs": null,
                                "finish_reason": c.finish.as_api_str(),
                            }]),
                        )
                    })
                    .collect();
                if self.meta.include_usage {
                    out.push(data(json!({
                        "id": self.meta.id,
                        "object": "text_completion",
                        "created": self.meta.created,
                        "model": self.meta.model,
                        "choices": [],
                        "usage": usage_json(&fin),
                    })));
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

fn sse_events(events: EventStream, meta: Meta) -> impl Stream<Item = Result<Event, Infallible>> {
    let mut state = SseState {
        meta,
        sent: Vec::new(),
        finished: false,
    };
    events
        .map(Some)
        .chain(stream::once(async { None }))
        .flat_map(move |e| stream::iter(state.render(e)))
        .map(Ok)
}
