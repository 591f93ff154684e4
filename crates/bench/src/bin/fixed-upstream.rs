//! `fixed-upstream`: an OpenAI-compatible chat server that answers every request after one
//! fixed latency, whatever its `n`, as a batching GPU server roughly behaves. It measures
//! the strategy layer apart from the model (`scripts/orchestration-bench.sh`): what a proxy
//! adds on top of the upstream latency, and what its concurrency saves.
//!
//! ```text
//! fixed-upstream [--port 8099] [--latency-ms 200] [--tokens 40]
//! ```
//!
//! * `POST /v1/chat/completions`: `n` choices (default 1) after `--latency-ms`, streamed
//!   (`"stream": true`, all chunks at once after the latency) or not. Each choice is a
//!   plausible worked answer of about `--tokens` words that states "The answer is 42."
//!   and carries a "Rating: 7" and a `<output>` block, so that the rating, answer and tag
//!   parsers of the strategies find what they look for.
//! * `GET /v1/models`: one model, `fixed`.
//! * `GET /stats`: `{"requests", "choices", "max_in_flight", "in_flight"}` since start.

use std::net::SocketAddr;
use std::sync::Arc;
use std::sync::atomic::{AtomicU64, Ordering};
use std::time::Duration;

use axum::Router;
use axum::body::Body;
use axum::extract::State;
use axum::http::{StatusCode, header};
use axum::response::{IntoResponse, Response};
use axum::routing::{get, post};
use serde_json::{Value, json};

#[derive(Debug, Clone, Copy)]
struct Options {
    port: u16,
    latency: Duration,
    tokens: usize,
}

#[derive(Default)]
struct Stats {
    requests: AtomicU64,
    choices: AtomicU64,
    in_flight: AtomicU64,
    max_in_flight: AtomicU64,
}

struct App {
    options: Options,
    stats: Stats,
}

const USAGE: &str = "usage: fixed-upstream [--port N] [--latency-ms MS] [--tokens N]";

fn parse_args() -> Result<Options, String> {
    let mut options = Options {
        port: 8099,
        latency: Duration::from_millis(200),
        tokens: 40,
    };
    let mut args = std::env::args().skip(1);
    while let Some(flag) = args.next() {
        if flag == "-h" || flag == "--help" {
            return Err(USAGE.to_string());
        }
        let value = args
            .next()
            .ok_or_else(|| format!("{flag} needs a value\n{USAGE}"))?;
        let bad = |e: std::num::ParseIntError| format!("{flag} {value}: {e}");
        match flag.as_str() {
            "--port" => options.port = value.parse().map_err(bad)?,
            "--latency-ms" => options.latency = Duration::from_millis(value.parse().map_err(bad)?),
            "--tokens" => options.tokens = value.parse().map_err(bad)?,
            _ => return Err(format!("unknown flag {flag}\n{USAGE}")),
        }
    }
    Ok(options)
}

/// A worked answer of about `tokens` words; `index` varies the wording a little.
fn completion_text(tokens: usize, index: usize) -> String {
    let head = format!(
        "<thinking>Let me work through this step by step (attempt {}). Six times seven is \
         forty-two.</thinking>",
        index + 1
    );
    let tail = "<output>The answer is 42.</output>\nRating: 7";
    let used = head.split_whitespace().count() + tail.split_whitespace().count();
    let filler = ["We", "check", "each", "step", "again", "carefully."];
    let pad: Vec<&str> = filler
        .iter()
        .copied()
        .cycle()
        .take(tokens.saturating_sub(used))
        .collect();
    if pad.is_empty() {
        format!("{head}\n{tail}")
    } else {
        format!("{head}\n{}\n{tail}", pad.join(" "))
    }
}

/// Rough prompt size in tokens: a token per four characters of message text.
fn prompt_tokens(body: &Value) -> u64 {
    let chars: usize = body["messages"]
        .as_array()
        .map(|ms| {
            ms.iter()
                .map(|m| m["content"].as_str().map_or(0, |c| c.chars().count()))
                .sum()
        })
        .unwrap_or(0);
    (chars / 4).max(1) as u64
}

struct InFlight<'a>(&'a Stats);

impl<'a> InFlight<'a> {
    fn enter(stats: &'a Stats) -> Self {
        let now = stats.in_flight.fetch_add(1, Ordering::SeqCst) + 1;
        stats.max_in_flight.fetch_max(now, Ordering::SeqCst);
        Self(stats)
    }
}

impl Drop for InFlight<'_> {
    fn drop(&mut self) {
        self.0.in_flight.fetch_sub(1, Ordering::SeqCst);
    }
}

async fn chat(State(app): State<Arc<App>>, body: String) -> Response {
    let body: Value = match serde_json::from_str(&body) {
        Ok(v) => v,
        Err(e) => {
            let error = json!({"error": {"message": format!("bad JSON: {e}"), "type": "invalid_request_error"}});
            return (StatusCode::BAD_REQUEST, axum::Json(error)).into_response();
        }
    };
    let n = body["n"].as_u64().unwrap_or(1).clamp(1, 128) as usize;
    let stream = body["stream"].as_bool().unwrap_or(false);
    let model = body["model"].as_str().unwrap_or("fixed").to_string();
    app.stats.requests.fetch_add(1, Ordering::SeqCst);
    app.stats.choices.fetch_add(n as u64, Ordering::SeqCst);
    {
        let _guard = InFlight::enter(&app.stats);
        tokio::time::sleep(app.options.latency).await;
    }
    let texts: Vec<String> = (0..n)
        .map(|i| completion_text(app.options.tokens, i))
        .collect();
    let completion_tokens: u64 = texts
        .iter()
        .map(|t| t.split_whitespace().count() as u64)
        .sum();
    let prompt = prompt_tokens(&body);
    let usage = json!({
        "prompt_tokens": prompt,
        "completion_tokens": completion_tokens,
        "total_tokens": prompt + completion_tokens,
    });
    let created = std::time::SystemTime::now()
        .duration_since(std::time::UNIX_EPOCH)
        .map_or(0, |d| d.as_secs());
    let id = format!(
        "chatcmpl-fixed-{}",
        app.stats.requests.load(Ordering::SeqCst)
    );
    if !stream {
        let choices: Vec<Value> = texts
            .iter()
            .enumerate()
            .map(|(i, t)| {
                json!({"index": i, "message": {"role": "assistant", "content": t}, "finish_reason": "stop"})
            })
            .collect();
        let out = json!({
            "id": id, "object": "chat.completion", "created": created, "model": model,
            "choices": choices, "usage": usage,
        });
        return axum::Json(out).into_response();
    }
    let mut sse = String::new();
    let chunk = |choices: Value, usage: Option<&Value>| {
        let mut c = json!({
            "id": id, "object": "chat.completion.chunk", "created": created, "model": model,
            "choices": choices,
        });
        if let Some(u) = usage {
            c["usage"] = u.clone();
        }
        format!("data: {c}\n\n")
    };
    for (i, t) in texts.iter().enumerate() {
        sse.push_str(&chunk(
            json!([{"index": i, "delta": {"role": "assistant", "content": t}, "finish_reason": null}]),
            None,
        ));
        sse.push_str(&chunk(
            json!([{"index": i, "delta": {}, "finish_reason": "stop"}]),
            None,
        ));
    }
    sse.push_str(&chunk(json!([]), Some(&usage)));
    sse.push_str("data: [DONE]\n\n");
    Response::builder()
        .header(header::CONTENT_TYPE, "text/event-stream")
        .body(Body::from(sse))
        .unwrap_or_else(|_| StatusCode::INTERNAL_SERVER_ERROR.into_response())
}

async fn models() -> axum::Json<Value> {
    axum::Json(json!({
        "object": "list",
        "data": [{"id": "fixed", "object": "model", "created": 0, "owned_by": "fixed-upstream"}],
    }))
}

async fn stats(State(app): State<Arc<App>>) -> axum::Json<Value> {
    let s = &app.stats;
    axum::Json(json!({
        "requests": s.requests.load(Ordering::SeqCst),
        "choices": s.choices.load(Ordering::SeqCst),
        "in_flight": s.in_flight.load(Ordering::SeqCst),
        "max_in_flight": s.max_in_flight.load(Ordering::SeqCst),
    }))
}

#[tokio::main(flavor = "multi_thread", worker_threads = 1)]
async fn main() -> std::process::ExitCode {
    let options = match parse_args() {
        Ok(o) => o,
        Err(message) => {
            eprintln!("{message}");
            return std::process::ExitCode::from(2);
        }
    };
    let app = Arc::new(App {
        options,
        stats: Stats::default(),
    });
    let router = Router::new()
        .route("/v1/chat/completions", post(chat))
        .route("/chat/completions", post(chat))
        .route("/v1/models", get(models))
        .route("/models", get(models))
        .route("/stats", get(stats))
        .with_state(app.clone());
    let addr = SocketAddr::from(([127, 0, 0, 1], options.port));
    let listener = match tokio::net::TcpListener::bind(addr).await {
        Ok(l) => l,
        Err(e) => {
            eprintln!("cannot bind {addr}: {e}");
            return std::process::ExitCode::FAILURE;
        }
    };
    eprintln!(
        "fixed-upstream on http://{addr}/v1: latency {} ms, {} tokens per choice",
        options.latency.as_millis(),
        options.tokens
    );
    let shutdown = async {
        let _ = tokio::signal::ctrl_c().await;
    };
    let served = axum::serve(listener, router)
        .with_graceful_shutdown(shutdown)
        .await;
    let s = &app.stats;
    eprintln!(
        "fixed-upstream: {} requests, {} choices, at most {} in flight",
        s.requests.load(Ordering::SeqCst),
        s.choices.load(Ordering::SeqCst),
        s.max_in_flight.load(Ordering::SeqCst)
    );
    match served {
        Ok(()) => std::process::ExitCode::SUCCESS,
        Err(e) => {
            eprintln!("server error: {e}");
            std::process::ExitCode::FAILURE
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn text_has_the_markers_and_about_the_length() {
        let t = completion_text(40, 0);
        assert!(t.contains("The answer is 42."));
        assert!(t.contains("Rating: 7"));
        assert!(t.contains("<output>"));
        assert_eq!(t.split_whitespace().count(), 40);
        // Shorter than the markers: the markers stay.
        assert!(completion_text(1, 2).contains("attempt 3"));
    }
}
