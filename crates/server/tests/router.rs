//! In-process tests of both dialects over the mock backend (tower `oneshot`).
#![allow(clippy::unwrap_used, clippy::expect_used, clippy::panic)]

mod common;

use std::sync::Arc;
use std::sync::atomic::{AtomicBool, Ordering};
use std::time::Duration;

use async_trait::async_trait;
use axum::Router;
use axum::body::Body;
use axum::http::{HeaderMap, Request, StatusCode};
use http_body_util::BodyExt;
use optillm_core::mock::MockBackend;
use optillm_core::{
    Backend, BackendCounter, BackendError, Capabilities, ChatRequest, CompletionStream, Role,
    StreamEvent, stream_channel,
};
use optillm_server::{AppState, ServerConfig, StaticModels, router};
use serde_json::{Value, json};
use tokio::sync::{Notify, Semaphore};
use tower::ServiceExt;

use common::Hangs;

fn app_with(models: StaticModels, config: ServerConfig) -> Router {
    router(AppState::new(config, Arc::new(models)).unwrap())
}

fn one_model(name: &str, backend: Arc<dyn Backend>) -> Router {
    app_with(
        StaticModels::new().with(name, backend),
        ServerConfig::default(),
    )
}

struct Reply {
    status: StatusCode,
    headers: HeaderMap,
    body: String,
}

impl Reply {
    fn json(&self) -> Value {
        serde_json::from_str(&self.body).unwrap_or_else(|e| panic!("not JSON ({e}): {}", self.body))
    }
}

async fn send(app: &Router, request: Request<Body>) -> Reply {
    let response = app.clone().oneshot(request).await.unwrap();
    let status = response.status();
    let headers = response.headers().clone();
    let bytes = response.into_body().collect().await.unwrap().to_bytes();
    Reply {
        status,
        headers,
        body: String::from_utf8(bytes.to_vec()).unwrap(),
    }
}

fn post_req(path: &str, body: &Value) -> Request<Body> {
    Request::post(path)
        .header("content-type", "application/json")
        .body(Body::from(body.to_string()))
        .unwrap()
}

async fn post(app: &Router, path: &str, body: Value) -> Reply {
    send(app, post_req(path, &body)).await
}

async fn get(app: &Router, path: &str) -> Reply {
    send(app, Request::get(path).body(Body::empty()).unwrap()).await
}

/// The JSON payloads of an SSE body (without `[DONE]`), and whether `[DONE]` ended it.
fn sse_data(body: &str) -> (Vec<Value>, bool) {
    let mut events = Vec::new();
    let mut done = false;
    for block in body.split("\n\n").filter(|b| !b.is_empty()) {
        for line in block.lines() {
            if let Some(data) = line.strip_prefix("data: ") {
                if data == "[DONE]" {
                    done = true;
                } else {
                    assert!(!done, "data after [DONE]");
                    events.push(serde_json::from_str(data).unwrap());
                }
            } else {
                assert!(line.starts_with(':'), "unexpected SSE line {line:?}");
            }
        }
    }
    (events, done)
}

fn ndjson(body: &str) -> Vec<Value> {
    assert!(body.ends_with('\n'), "{body:?}");
    body.lines()
        .map(|l| serde_json::from_str(l).unwrap())
        .collect()
}

fn last_user(r: &ChatRequest) -> String {
    r.messages
        .iter()
        .rev()
        .find(|m| m.role == Role::User)
        .map(|m| m.content.clone())
        .unwrap_or_default()
}

fn chat(model: &str, content: &str) -> Value {
    json!({"model": model, "messages": [{"role": "user", "content": content}]})
}

// ---------- OpenAI dialect ----------

#[tokio::test]
async fn openai_completion_has_every_field() {
    let mock = Arc::new(MockBackend::constant("Hello there friend"));
    let app = one_model("smollm2", mock.clone());
    let r = post(
        &app,
        "/v1/chat/completions",
        json!({"model": "smollm2", "messages": [
            {"role": "system", "content": "Be nice."},
            {"role": "user", "content": [{"type": "text", "text": "say hi"}]}
        ], "temperature": 0.2, "top_k": 5, "seed": 11, "stop": "END", "top_p": 0.9,
           "min_p": 0.05, "repetition_penalty": 1.1, "max_tokens": 100,
           "max_completion_tokens": 9, "presence_penalty": 0, "unknown_field": [1]}),
    )
    .await;
    assert_eq!(r.status, StatusCode::OK, "{}", r.body);
    let v = r.json();
    assert!(v["id"].as_str().unwrap().starts_with("chatcmpl-"));
    assert_eq!(v["object"], "chat.completion");
    assert!(v["created"].as_u64().unwrap() > 1_700_000_000);
    assert_eq!(v["model"], "smollm2");
    assert_eq!(v["choices"][0]["index"], 0);
    assert_eq!(v["choices"][0]["message"]["role"], "assistant");
    assert_eq!(v["choices"][0]["message"]["content"], "Hello there friend");
    assert_eq!(v["choices"][0]["finish_reason"], "stop");
    // Mock tokens are words: "Be nice." + "say hi" = 4 prompt tokens.
    assert_eq!(v["usage"]["prompt_tokens"], 4);
    assert_eq!(v["usage"]["completion_tokens"], 3);
    assert_eq!(v["usage"]["total_tokens"], 7);
    let sent = &mock.requests()[0];
    assert_eq!(sent.sampling.temperature, Some(0.2));
    assert_eq!(sent.sampling.top_k, Some(5));
    assert_eq!(sent.sampling.seed, Some(11));
    assert_eq!(sent.sampling.stop, vec!["END".to_string()]);
    assert_eq!(sent.sampling.top_p, Some(0.9));
    assert_eq!(sent.sampling.min_p, Some(0.05));
    // vLLM's spelling of llama.cpp's `repeat_penalty`.
    assert_eq!(sent.sampling.repeat_penalty, Some(1.1));
    // The newer name wins over the deprecated one.
    assert_eq!(sent.sampling.max_tokens, Some(9));
    assert_eq!(sent.messages[0].role, Role::System);
}

#[tokio::test]
async fn openai_finish_reason_follows_its_cause() {
    let app = one_model(
        "m",
        Arc::new(MockBackend::constant("one two three STOP four")),
    );
    let mut body = chat("m", "q");
    body["max_tokens"] = json!(2);
    let v = post(&app, "/v1/chat/completions", body).await.json();
    assert_eq!(v["choices"][0]["finish_reason"], "length");
    assert_eq!(v["choices"][0]["message"]["content"], "one two ");
    assert_eq!(v["usage"]["completion_tokens"], 2);

    let mut body = chat("m", "q");
    body["stop"] = json!(["STOP"]);
    let v = post(&app, "/v1/chat/completions", body).await.json();
    assert_eq!(v["choices"][0]["finish_reason"], "stop");
    assert_eq!(v["choices"][0]["message"]["content"], "one two three ");

    // Through an approach: the reason of the call whose output is the answer.
    let mut body = chat("re2-m", "q");
    body["max_tokens"] = json!(2);
    let v = post(&app, "/v1/chat/completions", body.clone())
        .await
        .json();
    assert_eq!(v["choices"][0]["finish_reason"], "length");
    body["stream"] = json!(true);
    let (events, _) = sse_data(&post(&app, "/v1/chat/completions", body).await.body);
    assert_eq!(
        events.last().unwrap()["choices"][0]["finish_reason"],
        "length"
    );
    let v = post(&app, "/v1/chat/completions", chat("re2-m", "q"))
        .await
        .json();
    assert_eq!(v["choices"][0]["finish_reason"], "stop");
    let r = post(
        &app,
        "/api/generate",
        json!({"model": "re2-m", "prompt": "q", "stream": false, "options": {"num_predict": 1}}),
    )
    .await;
    assert_eq!(r.json()["done_reason"], "length");
}

#[tokio::test]
async fn openai_n_is_honoured_with_and_without_an_approach() {
    let mock = Arc::new(MockBackend::new(|r, i| {
        if r.messages
            .last()
            .is_some_and(|m| m.content.starts_with("Rate the above"))
        {
            Ok("7".into())
        } else {
            Ok(format!("answer {i}"))
        }
    }));
    let app = one_model("m", mock.clone());
    let mut body = chat("m", "q");
    body["n"] = json!(3);
    let v = post(&app, "/v1/chat/completions", body).await.json();
    let texts: Vec<&str> = v["choices"]
        .as_array()
        .unwrap()
        .iter()
        .map(|c| c["message"]["content"].as_str().unwrap())
        .collect();
    assert_eq!(texts, ["answer 0", "answer 1", "answer 2"]);
    assert_eq!(v["choices"][2]["index"], 2);
    assert_eq!(mock.requests()[0].n, 3);

    // bon gives one answer per run: the server runs it again for the second choice.
    let calls_before = mock.calls();
    let mut body = chat("bon-m", "q");
    body["n"] = json!(2);
    body["seed"] = json!(5);
    body["optillm_params"] = json!({"n": 2});
    let r = post(&app, "/v1/chat/completions", body).await;
    assert_eq!(r.status, StatusCode::OK, "{}", r.body);
    let v = r.json();
    assert_eq!(v["choices"].as_array().unwrap().len(), 2);
    assert_eq!(v["choices"][1]["index"], 1);
    assert_eq!(v["model"], "bon-m");
    // Each run: one sampling call (n=2) and two rating calls.
    let sent = &mock.requests()[calls_before..];
    assert_eq!(sent.len(), 6);
    let sample_seeds: Vec<Option<u32>> = sent
        .iter()
        .filter(|r| r.n == 2)
        .map(|r| r.sampling.seed)
        .collect();
    assert_eq!(sample_seeds.len(), 2);
    assert!(sample_seeds.contains(&Some(5)) && sample_seeds.contains(&Some(6)));
    assert!(v["usage"]["completion_tokens"].as_u64().unwrap() >= 8);
}

#[tokio::test]
async fn approach_by_prefix_body_field_and_system_tag() {
    let mock = Arc::new(MockBackend::new(|r, _| {
        Ok(format!("got: {}", last_user(r)))
    }));
    let app = app_with(
        StaticModels::new()
            .with("smollm2-135m", mock.clone())
            .with("qwen2.5-coder-0.5b", mock.clone()),
        ServerConfig::default(),
    );
    let reread = "q?\nRead the question again: q?";

    let v = post(&app, "/v1/chat/completions", chat("re2-smollm2-135m", "q?"))
        .await
        .json();
    assert_eq!(
        v["choices"][0]["message"]["content"],
        format!("got: {reread}")
    );
    assert_eq!(v["model"], "re2-smollm2-135m");

    // `-` inside the model name: plain, and after an approach prefix.
    let v = post(
        &app,
        "/v1/chat/completions",
        chat("qwen2.5-coder-0.5b", "q?"),
    )
    .await
    .json();
    assert_eq!(v["choices"][0]["message"]["content"], "got: q?");
    let v = post(
        &app,
        "/v1/chat/completions",
        chat("re2-qwen2.5-coder-0.5b", "q?"),
    )
    .await
    .json();
    assert_eq!(
        v["choices"][0]["message"]["content"],
        format!("got: {reread}")
    );

    let mut body = chat("smollm2-135m", "q?");
    body["optillm_approach"] = json!("re2");
    let v = post(&app, "/v1/chat/completions", body).await.json();
    assert_eq!(
        v["choices"][0]["message"]["content"],
        format!("got: {reread}")
    );

    // A pipeline by prefix: re2 then re2 again on its answer.
    let v = post(
        &app,
        "/v1/chat/completions",
        chat("re2&re2-smollm2-135m", "q?"),
    )
    .await
    .json();
    let text = v["choices"][0]["message"]["content"].as_str().unwrap();
    assert!(text.starts_with(&format!("got: got: {reread}")), "{text}");

    let before = mock.calls();
    let v = post(
        &app,
        "/v1/chat/completions",
        json!({"model": "smollm2-135m", "messages": [
            {"role": "system", "content": "Be brief. <optillm_approach>re2</optillm_approach>"},
            {"role": "user", "content": "q?"}
        ]}),
    )
    .await
    .json();
    assert_eq!(
        v["choices"][0]["message"]["content"],
        format!("got: {reread}")
    );
    let sent = &mock.requests()[before];
    assert_eq!(sent.messages[0].content, "Be brief.");
    assert!(
        sent.messages
            .iter()
            .all(|m| !m.content.contains("optillm_approach"))
    );
}

#[tokio::test]
async fn default_approach_from_config() {
    let mock = Arc::new(MockBackend::new(|r, _| Ok(last_user(r))));
    let config = ServerConfig {
        default_approach: Some("re2".into()),
        ..ServerConfig::default()
    };
    let app = app_with(StaticModels::new().with("m", mock), config);
    let v = post(&app, "/v1/chat/completions", chat("m", "x"))
        .await
        .json();
    assert_eq!(
        v["choices"][0]["message"]["content"],
        "x\nRead the question again: x"
    );
    let bad = ServerConfig {
        default_approach: Some("nope".into()),
        ..ServerConfig::default()
    };
    assert!(AppState::new(bad, Arc::new(StaticModels::new())).is_err());
}

#[tokio::test]
async fn openai_streams_tokens_for_none() {
    let app = one_model("m", Arc::new(MockBackend::constant("alpha beta gamma")));
    let mut body = chat("m", "q");
    body["stream"] = json!(true);
    body["stream_options"] = json!({"include_usage": true});
    let r = post(&app, "/v1/chat/completions", body).await;
    assert_eq!(r.status, StatusCode::OK);
    assert!(
        r.headers["content-type"]
            .to_str()
            .unwrap()
            .starts_with("text/event-stream")
    );
    let (events, done) = sse_data(&r.body);
    assert!(done, "{}", r.body);
    let id = events[0]["id"].as_str().unwrap();
    assert!(
        events
            .iter()
            .all(|e| e["id"] == id && e["object"] == "chat.completion.chunk")
    );
    assert_eq!(events[0]["choices"][0]["delta"]["role"], "assistant");
    let content: Vec<&str> = events
        .iter()
        .filter_map(|e| e["choices"][0]["delta"]["content"].as_str())
        .collect();
    // One delta per token, not one blob.
    assert_eq!(content, ["alpha ", "beta ", "gamma"]);
    let finish: Vec<&Value> = events
        .iter()
        .filter(|e| !e["choices"][0]["finish_reason"].is_null())
        .collect();
    assert_eq!(finish.len(), 1);
    assert_eq!(finish[0]["choices"][0]["finish_reason"], "stop");
    let usage = events.last().unwrap();
    assert_eq!(usage["choices"], json!([]));
    assert_eq!(usage["usage"]["prompt_tokens"], 1);
    assert_eq!(usage["usage"]["completion_tokens"], 3);
}

#[tokio::test]
async fn openai_streams_n_choices_and_logprobs() {
    let app = one_model(
        "m",
        Arc::new(MockBackend::new(|_, i| Ok(format!("c{i} x")))),
    );
    let mut body = chat("m", "q");
    body["stream"] = json!(true);
    body["n"] = json!(2);
    body["logprobs"] = json!(true);
    body["top_logprobs"] = json!(2);
    let (events, done) = sse_data(&post(&app, "/v1/chat/completions", body).await.body);
    assert!(done);
    for index in 0..2u64 {
        let mine: Vec<&Value> = events
            .iter()
            .filter(|e| e["choices"][0]["index"] == index)
            .collect();
        let text: String = mine
            .iter()
            .filter_map(|e| e["choices"][0]["delta"]["content"].as_str())
            .collect();
        assert_eq!(text, format!("c{index} x"));
        assert_eq!(mine[0]["choices"][0]["delta"]["role"], "assistant");
        let lp = &mine[0]["choices"][0]["logprobs"]["content"][0];
        assert_eq!(lp["token"], format!("c{index} "));
        assert_eq!(lp["top_logprobs"].as_array().unwrap().len(), 2);
        assert_eq!(mine.last().unwrap()["choices"][0]["finish_reason"], "stop");
    }
    // Logprobs need `none`.
    let mut body = chat("re2-m", "q");
    body["logprobs"] = json!(true);
    let r = post(&app, "/v1/chat/completions", body).await;
    assert_eq!(r.status, StatusCode::BAD_REQUEST);
    assert!(
        r.json()["error"]["message"]
            .as_str()
            .unwrap()
            .contains("none")
    );
}

/// Delegates to a mock after a delay, so strategies take time.
struct Slow(MockBackend, Duration);

#[async_trait]
impl Backend for Slow {
    fn model(&self) -> &str {
        "slow"
    }
    fn capabilities(&self) -> Capabilities {
        self.0.capabilities()
    }
    async fn stream(&self, request: ChatRequest) -> Result<CompletionStream, BackendError> {
        tokio::time::sleep(self.1).await;
        self.0.stream(request).await
    }
}

/// The non-empty content deltas of choice 0 of OpenAI stream chunks.
fn content_pieces(events: &[Value]) -> Vec<&str> {
    events
        .iter()
        .filter_map(|e| e["choices"][0]["delta"]["content"].as_str())
        .filter(|t| !t.is_empty())
        .collect()
}

fn moa_script() -> Arc<MockBackend> {
    Arc::new(MockBackend::scripted([
        "cand one",
        "cand two",
        "cand three",
        "the critique",
        "the final synthesis here",
    ]))
}

#[tokio::test]
async fn streamed_approach_streams_its_final_stage_token_by_token() {
    // moa: three candidates and a critique (not streamed), then the synthesis, whose
    // words arrive one delta each.
    let mut body = chat("moa-m", "q");
    body["stream"] = json!(true);
    let r = post(
        &one_model("m", moa_script()),
        "/v1/chat/completions",
        body.clone(),
    )
    .await;
    assert_eq!(r.status, StatusCode::OK, "{}", r.body);
    let (events, done) = sse_data(&r.body);
    assert!(done);
    let pieces = content_pieces(&events);
    assert_eq!(pieces, vec!["the ", "final ", "synthesis ", "here"]);
    assert_eq!(
        events.last().unwrap()["choices"][0]["finish_reason"],
        "stop"
    );

    // The finish reason of the streamed final call is kept: `length` when it was cut.
    let mut cut = body.clone();
    cut["max_tokens"] = json!(2);
    let r = post(&one_model("m", moa_script()), "/v1/chat/completions", cut).await;
    let (events, _) = sse_data(&r.body);
    assert_eq!(content_pieces(&events).concat(), "the final ");
    assert_eq!(
        events.last().unwrap()["choices"][0]["finish_reason"],
        "length"
    );

    // Ollama: the same, one line per word, then the final line.
    let r = post(&one_model("m", moa_script()), "/api/chat", body).await;
    assert_eq!(r.status, StatusCode::OK, "{}", r.body);
    let lines = ndjson(&r.body);
    let pieces: Vec<&str> = lines
        .iter()
        .filter_map(|l| l["message"]["content"].as_str())
        .filter(|t| !t.is_empty())
        .collect();
    assert_eq!(pieces, vec!["the ", "final ", "synthesis ", "here"]);
    assert_eq!(lines.last().unwrap()["done"], true);
    assert_eq!(lines.last().unwrap()["done_reason"], "stop");
}

#[tokio::test]
async fn a_streamed_approach_without_a_final_call_sends_its_answer_whole() {
    // self_consistency picks one of its samples after the vote: nothing to stream
    // before the end, then the chosen sample in one delta.
    let mock = Arc::new(MockBackend::new(|_, i| {
        Ok(if i == 1 {
            "so the answer is 5".to_string()
        } else {
            "thus the answer is 7".to_string()
        })
    }));
    let mut body = chat("self_consistency-m", "q");
    body["stream"] = json!(true);
    let r = post(&one_model("m", mock), "/v1/chat/completions", body).await;
    let (events, done) = sse_data(&r.body);
    assert!(done);
    let pieces = content_pieces(&events);
    assert_eq!(pieces, vec!["thus the answer is 7"]);
}

#[tokio::test]
async fn streamed_approach_sends_keep_alives_then_the_answer() {
    let backend = Arc::new(Slow(
        MockBackend::new(|r, _| Ok(format!("final {}", last_user(r).len()))),
        Duration::from_millis(120),
    ));
    let config = ServerConfig {
        keep_alive_interval: Duration::from_millis(20),
        ..ServerConfig::default()
    };
    let app = app_with(StaticModels::new().with("m", backend), config);
    let mut body = chat("re2&re2-m", "q");
    body["stream"] = json!(true);
    let r = post(&app, "/v1/chat/completions", body.clone()).await;
    assert_eq!(r.status, StatusCode::OK);
    let keep_alives = r.body.matches(": keep-alive\n\n").count();
    assert!(keep_alives >= 3, "{}", r.body);
    let (events, done) = sse_data(&r.body);
    assert!(done);
    let text: String = events
        .iter()
        .filter_map(|e| e["choices"][0]["delta"]["content"].as_str())
        .collect();
    assert!(text.starts_with("final "), "{text}");
    assert_eq!(
        events.last().unwrap()["choices"][0]["finish_reason"],
        "stop"
    );

    // Ollama: empty chunks while the stages run, then the answer and the final line.
    let r = post(&app, "/api/chat", body).await;
    assert_eq!(r.status, StatusCode::OK);
    let lines = ndjson(&r.body);
    assert!(lines.len() >= 5, "{}", r.body);
    let empty = lines
        .iter()
        .filter(|l| l["done"] == false && l["message"]["content"] == "")
        .count();
    assert!(empty >= 3, "{}", r.body);
    let text: String = lines
        .iter()
        .filter_map(|l| l["message"]["content"].as_str())
        .collect();
    assert!(text.starts_with("final "), "{text}");
    assert_eq!(lines.last().unwrap()["done"], true);
}

// ---------- errors ----------

#[tokio::test]
async fn unknown_model_is_404_in_each_dialect() {
    let app = one_model("m", Arc::new(MockBackend::constant("x")));
    let r = post(&app, "/v1/chat/completions", chat("nope", "q")).await;
    assert_eq!(r.status, StatusCode::NOT_FOUND);
    let e = r.json();
    assert_eq!(e["error"]["code"], "model_not_found");
    assert_eq!(e["error"]["type"], "invalid_request_error");
    assert!(e["error"]["message"].as_str().unwrap().contains("nope"));

    let r = post(&app, "/api/chat", chat("moa-nope", "q")).await;
    assert_eq!(r.status, StatusCode::NOT_FOUND);
    assert_eq!(r.json(), json!({"error": "model 'nope' not found"}));

    let r = post(
        &app,
        "/api/generate",
        json!({"model": "nope", "prompt": "q"}),
    )
    .await;
    assert_eq!(r.status, StatusCode::NOT_FOUND);
    assert!(r.json()["error"].is_string());
}

#[tokio::test]
async fn bad_requests_are_400_in_each_dialect() {
    let app = one_model("m", Arc::new(MockBackend::constant("x")));
    let mut body = chat("m", "q");
    body["optillm_approach"] = json!("bon&&moa");
    let r = post(&app, "/v1/chat/completions", body.clone()).await;
    assert_eq!(r.status, StatusCode::BAD_REQUEST);
    let e = r.json();
    assert_eq!(e["error"]["type"], "invalid_request_error");
    let msg = e["error"]["message"].as_str().unwrap();
    assert!(msg.contains("bad approach spec"), "{msg}");

    let r = post(&app, "/api/chat", body).await;
    assert_eq!(r.status, StatusCode::BAD_REQUEST);
    assert!(
        r.json()["error"]
            .as_str()
            .unwrap()
            .contains("bad approach spec")
    );

    // Unknown approach parameter.
    let mut body = chat("bon-m", "q");
    body["optillm_params"] = json!({"bogus": 1});
    let r = post(&app, "/v1/chat/completions", body).await;
    assert_eq!(r.status, StatusCode::BAD_REQUEST);
    assert!(r.body.contains("bogus"), "{}", r.body);

    // Out-of-range sampling, unsupported settings, malformed JSON.
    let mut body = chat("m", "q");
    body["temperature"] = json!(-1);
    let r = post(&app, "/v1/chat/completions", body).await;
    assert_eq!(r.status, StatusCode::BAD_REQUEST);
    assert!(r.body.contains("temperature"), "{}", r.body);
    let mut body = chat("m", "q");
    body["n"] = json!(1000);
    let r = post(&app, "/v1/chat/completions", body).await;
    assert_eq!(r.status, StatusCode::BAD_REQUEST);
    assert!(r.body.contains("at most 128"), "{}", r.body);
    let mut body = chat("m", "q");
    body["presence_penalty"] = json!(0.5);
    let r = post(&app, "/v1/chat/completions", body).await;
    assert_eq!(r.status, StatusCode::BAD_REQUEST);
    assert!(r.body.contains("presence_penalty"), "{}", r.body);
    let r = send(
        &app,
        Request::post("/v1/chat/completions")
            .header("content-type", "application/json")
            .body(Body::from("{not json"))
            .unwrap(),
    )
    .await;
    assert_eq!(r.status, StatusCode::BAD_REQUEST);
    assert!(r.json()["error"]["message"].is_string());
    let r = post(&app, "/api/chat", json!({"messages": []})).await;
    assert_eq!(r.status, StatusCode::BAD_REQUEST);
    assert_eq!(r.json(), json!({"error": "model is required"}));
    let r = post(
        &app,
        "/api/chat",
        json!({"model": "m", "messages": [{"role": "user", "content": "q"}],
               "options": {"temperature": "hot"}}),
    )
    .await;
    assert_eq!(r.status, StatusCode::BAD_REQUEST);
    assert!(r.body.contains("temperature"), "{}", r.body);
}

#[tokio::test]
async fn backend_errors_map_to_statuses() {
    let cases = [
        (
            BackendError::ContextOverflow {
                prompt_tokens: 9000,
                context_length: 2048,
            },
            400,
        ),
        (BackendError::Busy("all slots taken".into()), 503),
        (BackendError::Timeout(Duration::from_secs(30)), 504),
        (BackendError::Connection("refused".into()), 502),
        (
            BackendError::Http {
                status: 500,
                message: "upstream".into(),
            },
            502,
        ),
        (BackendError::Closed, 500),
    ];
    for (error, status) in cases {
        let text = error.to_string();
        let shared = std::sync::Mutex::new(Some(error));
        let mock = MockBackend::new(move |_, _| {
            Err(shared
                .lock()
                .unwrap()
                .take()
                .unwrap_or(BackendError::Closed))
        });
        let app = one_model("m", Arc::new(mock));
        let r = post(&app, "/v1/chat/completions", chat("m", "q")).await;
        assert_eq!(r.status.as_u16(), status, "{text}: {}", r.body);
        let msg = r.json()["error"]["message"].as_str().unwrap().to_string();
        assert!(msg.contains(&text), "{msg} / {text}");
        if status == 400 {
            assert!(msg.contains("9000") && msg.contains("2048"), "{msg}");
        }
        if status == 503 {
            assert_eq!(r.headers["retry-after"], "1");
        }
    }
}

/// Fails in the middle of the stream.
struct Breaks;

#[async_trait]
impl Backend for Breaks {
    fn model(&self) -> &str {
        "breaks"
    }
    fn capabilities(&self) -> Capabilities {
        Capabilities::default()
    }
    async fn stream(&self, _: ChatRequest) -> Result<CompletionStream, BackendError> {
        Ok(CompletionStream::from_events(vec![
            Ok(StreamEvent::Delta {
                index: 0,
                text: "partial ".into(),
                logprob: None,
            }),
            Err(BackendError::Connection("reset by peer".into())),
        ]))
    }
}

#[tokio::test]
async fn an_error_mid_stream_is_reported_in_the_stream() {
    let app = one_model("m", Arc::new(Breaks));
    let mut body = chat("m", "q");
    body["stream"] = json!(true);
    let r = post(&app, "/v1/chat/completions", body.clone()).await;
    assert_eq!(r.status, StatusCode::OK);
    let (events, done) = sse_data(&r.body);
    assert!(!done, "an errored stream must not end with [DONE]");
    assert_eq!(events[0]["choices"][0]["delta"]["content"], "partial ");
    let last = events.last().unwrap();
    assert!(
        last["error"]["message"]
            .as_str()
            .unwrap()
            .contains("reset by peer")
    );

    let r = post(&app, "/api/chat", body).await;
    let lines = ndjson(&r.body);
    assert_eq!(lines[0]["message"]["content"], "partial ");
    assert!(
        lines.last().unwrap()["error"]
            .as_str()
            .unwrap()
            .contains("reset by peer")
    );
}

#[tokio::test]
async fn auth_is_401_in_each_dialect() {
    let config = ServerConfig {
        api_key: Some("sekret".into()),
        ..ServerConfig::default()
    };
    let app = app_with(
        StaticModels::new().with("m", Arc::new(MockBackend::constant("x"))),
        config,
    );
    let r = post(&app, "/v1/chat/completions", chat("m", "q")).await;
    assert_eq!(r.status, StatusCode::UNAUTHORIZED);
    assert_eq!(r.json()["error"]["type"], "authentication_error");
    assert_eq!(r.headers["www-authenticate"], "Bearer");

    let mut wrong = post_req("/v1/chat/completions", &chat("m", "q"));
    wrong
        .headers_mut()
        .insert("authorization", "Bearer sekreT".parse().unwrap());
    assert_eq!(send(&app, wrong).await.status, StatusCode::UNAUTHORIZED);

    let mut right = post_req("/v1/chat/completions", &chat("m", "q"));
    right
        .headers_mut()
        .insert("authorization", "Bearer sekret".parse().unwrap());
    assert_eq!(send(&app, right).await.status, StatusCode::OK);

    let r = get(&app, "/api/tags").await;
    assert_eq!(r.status, StatusCode::UNAUTHORIZED);
    assert!(r.json()["error"].is_string());
    assert_eq!(
        get(&app, "/v1/models").await.status,
        StatusCode::UNAUTHORIZED
    );
    assert_eq!(get(&app, "/health").await.status, StatusCode::OK);
    assert_eq!(get(&app, "/").await.status, StatusCode::OK);
}

/// Waits at a gate before answering.
struct Gate {
    inner: MockBackend,
    entered: Arc<Notify>,
    open: Arc<Semaphore>,
}

#[async_trait]
impl Backend for Gate {
    fn model(&self) -> &str {
        "gate"
    }
    fn capabilities(&self) -> Capabilities {
        self.inner.capabilities()
    }
    async fn stream(&self, request: ChatRequest) -> Result<CompletionStream, BackendError> {
        self.entered.notify_one();
        let _pass = self.open.acquire().await;
        self.inner.stream(request).await
    }
}

#[tokio::test]
async fn over_capacity_is_429_and_the_queue_drains() {
    let entered = Arc::new(Notify::new());
    let open = Arc::new(Semaphore::new(0));
    let gate = Gate {
        inner: MockBackend::constant("done"),
        entered: entered.clone(),
        open: open.clone(),
    };
    let config = ServerConfig {
        max_concurrent: 1,
        max_queue: 1,
        keep_alive_interval: Duration::from_millis(10),
        ..ServerConfig::default()
    };
    let app = app_with(StaticModels::new().with("m", Arc::new(gate)), config);

    let first = tokio::spawn({
        let app = app.clone();
        async move { post(&app, "/v1/chat/completions", chat("m", "one")).await }
    });
    entered.notified().await;
    let second = tokio::spawn({
        let app = app.clone();
        async move { post(&app, "/api/chat", chat("m", "two")).await }
    });
    // Wait until the second request is queued.
    let mut queued = false;
    for _ in 0..200 {
        let h = get(&app, "/health").await.json();
        if h["queued"] == 1 {
            queued = true;
            break;
        }
        tokio::time::sleep(Duration::from_millis(5)).await;
    }
    assert!(queued);
    let metrics = get(&app, "/metrics").await.body;
    assert!(metrics.contains("optillm_queue_depth 1"), "{metrics}");
    assert!(
        metrics.contains("optillm_requests_in_flight 1"),
        "{metrics}"
    );

    let r = post(&app, "/v1/chat/completions", chat("m", "three")).await;
    assert_eq!(r.status, StatusCode::TOO_MANY_REQUESTS);
    assert_eq!(r.json()["error"]["type"], "rate_limit_error");
    assert!(
        r.json()["error"]["message"]
            .as_str()
            .unwrap()
            .contains("capacity")
    );
    assert_eq!(r.headers["retry-after"], "1");
    let r = post(
        &app,
        "/api/generate",
        json!({"model": "m", "prompt": "four"}),
    )
    .await;
    assert_eq!(r.status, StatusCode::TOO_MANY_REQUESTS);
    assert!(r.json()["error"].as_str().unwrap().contains("capacity"));

    // Long enough for the queued stream to send keep-alives.
    tokio::time::sleep(Duration::from_millis(60)).await;
    open.add_permits(10);
    let a = first.await.unwrap();
    assert_eq!(a.status, StatusCode::OK);
    assert_eq!(a.json()["choices"][0]["message"]["content"], "done");
    let b = second.await.unwrap();
    assert_eq!(b.status, StatusCode::OK, "{}", b.body);
    // The queued request was streamed: empty chunks kept it alive while it waited.
    let lines = ndjson(&b.body);
    assert!(lines.len() >= 3, "{}", b.body);
    assert_eq!(lines[0]["message"]["content"], "");
    assert_eq!(lines[0]["done"], false);
    assert_eq!(lines.last().unwrap()["done"], true);
    let h = get(&app, "/health").await.json();
    assert_eq!(
        (h["running"].as_u64(), h["queued"].as_u64()),
        (Some(0), Some(0))
    );
}

/// Streams tokens until the consumer goes away, then records that it stopped.
struct Endless {
    stopped: Arc<AtomicBool>,
}

#[async_trait]
impl Backend for Endless {
    fn model(&self) -> &str {
        "endless"
    }
    fn capabilities(&self) -> Capabilities {
        Capabilities::default()
    }
    async fn stream(&self, _: ChatRequest) -> Result<CompletionStream, BackendError> {
        let (tx, stream) = stream_channel();
        let stopped = self.stopped.clone();
        tokio::spawn(async move {
            loop {
                let event = StreamEvent::Delta {
                    index: 0,
                    text: "tok ".into(),
                    logprob: None,
                };
                if !tx.send(Ok(event)).await {
                    stopped.store(true, Ordering::SeqCst);
                    return;
                }
                tokio::time::sleep(Duration::from_millis(2)).await;
            }
        });
        Ok(stream)
    }
}

#[tokio::test]
async fn a_client_that_leaves_cancels_the_upstream_work() {
    for (path, body) in [
        ("/v1/chat/completions", {
            let mut b = chat("m", "q");
            b["stream"] = json!(true);
            b
        }),
        ("/api/chat", chat("m", "q")),
    ] {
        let stopped = Arc::new(AtomicBool::new(false));
        let config = ServerConfig {
            max_concurrent: 1,
            max_queue: 0,
            ..ServerConfig::default()
        };
        let app = app_with(
            StaticModels::new().with(
                "m",
                Arc::new(Endless {
                    stopped: stopped.clone(),
                }),
            ),
            config,
        );
        let response = app.clone().oneshot(post_req(path, &body)).await.unwrap();
        let mut body_stream = response.into_body();
        let frame = body_stream.frame().await.unwrap().unwrap();
        assert!(String::from_utf8_lossy(frame.data_ref().unwrap()).contains("tok"));
        drop(body_stream);
        let mut waited = 0;
        while !stopped.load(Ordering::SeqCst) && waited < 400 {
            tokio::time::sleep(Duration::from_millis(5)).await;
            waited += 1;
        }
        assert!(
            stopped.load(Ordering::SeqCst),
            "{path}: upstream kept running"
        );
        // The slot is free again.
        let h = get(&app, "/health").await.json();
        assert_eq!(h["running"], 0, "{path}");
    }
}

// ---------- listings and metrics ----------

#[tokio::test]
async fn models_list_every_approach_for_every_model() {
    let app = app_with(
        StaticModels::new()
            .with("smollm2", Arc::new(MockBackend::constant("x")))
            .with("qwen-0.5b", Arc::new(MockBackend::constant("x"))),
        ServerConfig::default(),
    );
    let v = get(&app, "/v1/models").await.json();
    assert_eq!(v["object"], "list");
    let ids: Vec<&str> = v["data"]
        .as_array()
        .unwrap()
        .iter()
        .map(|m| m["id"].as_str().unwrap())
        .collect();
    let approaches = optillm_core::strategies::catalogue();
    assert_eq!(ids.len(), approaches.len() * 2);
    for a in &approaches {
        for m in ["smollm2", "qwen-0.5b"] {
            let id = if a.slug == "none" {
                m.to_string()
            } else {
                format!("{}-{m}", a.slug)
            };
            assert!(ids.contains(&id.as_str()), "{id} missing");
        }
    }
    assert_eq!(v["data"][0]["object"], "model");
    let one = get(&app, "/v1/models/bon%7Cmoa-qwen-0.5b").await;
    assert_eq!(one.status, StatusCode::OK, "{}", one.body);
    assert_eq!(one.json()["id"], "bon|moa-qwen-0.5b");
    let missing = get(&app, "/v1/models/moa-nothing").await;
    assert_eq!(missing.status, StatusCode::NOT_FOUND);
    assert_eq!(missing.json()["error"]["code"], "model_not_found");
    assert!(v["data"][0]["owned_by"].is_string());

    let tags = get(&app, "/api/tags").await.json();
    let names: Vec<&str> = tags["models"]
        .as_array()
        .unwrap()
        .iter()
        .map(|m| m["name"].as_str().unwrap())
        .collect();
    assert!(names.contains(&"smollm2") && names.contains(&"moa-qwen-0.5b"));
    assert_eq!(names.len(), ids.len());
}

fn metric(text: &str, series: &str) -> f64 {
    text.lines()
        .find_map(|l| l.strip_prefix(series).and_then(|r| r.strip_prefix(' ')))
        .map(|v| v.trim().parse().unwrap())
        .unwrap_or(0.0)
}

#[tokio::test]
async fn metrics_counters_move() {
    let app = one_model("m", Arc::new(MockBackend::constant("a b c")));
    let requests = r#"optillm_requests_total{endpoint="/v1/chat/completions",status="200"}"#;
    let not_found = r#"optillm_requests_total{endpoint="/v1/chat/completions",status="404"}"#;
    let completion = r#"optillm_tokens_total{kind="completion"}"#;
    let before = get(&app, "/metrics").await;
    assert_eq!(before.status, StatusCode::OK);
    assert_eq!(metric(&before.body, requests), 0.0);

    post(&app, "/v1/chat/completions", chat("m", "q")).await;
    let mut streamed = chat("m", "q");
    streamed["stream"] = json!(true);
    post(&app, "/v1/chat/completions", streamed).await;
    post(&app, "/v1/chat/completions", chat("x", "q")).await;
    post(&app, "/api/chat", chat("m", "q")).await;

    let after = get(&app, "/metrics").await.body;
    assert_eq!(metric(&after, requests), 2.0, "{after}");
    assert_eq!(metric(&after, not_found), 1.0, "{after}");
    assert_eq!(
        metric(
            &after,
            r#"optillm_requests_total{endpoint="/api/chat",status="200"}"#
        ),
        1.0
    );
    assert_eq!(metric(&after, completion), 9.0, "{after}");
    assert_eq!(
        metric(&after, r#"optillm_tokens_total{kind="prompt"}"#),
        3.0
    );
    assert_eq!(
        metric(
            &after,
            r#"optillm_request_duration_seconds_count{endpoint="/v1/chat/completions"}"#
        ),
        3.0,
        "{after}"
    );
    assert!(after.contains("# TYPE optillm_queue_depth gauge"));
}

/// A mock that reports the calls it answered as its own counter.
struct Counting(MockBackend);

#[async_trait]
impl Backend for Counting {
    fn model(&self) -> &str {
        "counting"
    }
    fn capabilities(&self) -> Capabilities {
        self.0.capabilities()
    }
    async fn stream(&self, request: ChatRequest) -> Result<CompletionStream, BackendError> {
        self.0.stream(request).await
    }
    fn counters(&self) -> Vec<BackendCounter> {
        vec![BackendCounter {
            name: "requests",
            help: "Requests answered",
            value: u64::try_from(self.0.calls()).unwrap(),
        }]
    }
}

#[tokio::test]
async fn metrics_show_each_backends_counters_by_model() {
    let app = app_with(
        StaticModels::new()
            .with("a", Arc::new(Counting(MockBackend::constant("x"))))
            .with("b", Arc::new(Counting(MockBackend::constant("y"))))
            .with("plain", Arc::new(MockBackend::constant("z"))),
        ServerConfig::default(),
    );
    let series = |m: &str| format!(r#"optillm_backend_requests_total{{model="{m}"}}"#);
    let before = get(&app, "/metrics").await.body;
    assert_eq!(metric(&before, &series("a")), 0.0, "{before}");
    assert!(before.contains(&series("a")), "{before}");
    assert!(
        before.contains("# TYPE optillm_backend_requests counter"),
        "{before}"
    );

    post(&app, "/v1/chat/completions", chat("a", "q")).await;
    post(&app, "/v1/chat/completions", chat("moa-a", "q")).await;
    post(&app, "/api/chat", chat("b", "q")).await;

    let after = get(&app, "/metrics").await.body;
    // moa: three proposals in one call (n = 3), a critique and a synthesis.
    assert_eq!(metric(&after, &series("a")), 4.0, "{after}");
    assert_eq!(metric(&after, &series("b")), 1.0, "{after}");
    assert!(!after.contains(&series("plain")), "{after}");
    assert_eq!(after.matches("# HELP optillm_backend_requests ").count(), 1);
    assert_eq!(after.matches("# EOF").count(), 1, "{after}");
    assert!(after.ends_with("# EOF\n"), "{after}");
}

// ---------- Ollama dialect ----------

#[tokio::test]
async fn ollama_chat_streamed_and_not() {
    let mock = Arc::new(MockBackend::constant("one two three"));
    let app = one_model("smollm2-135m", mock.clone());
    let r = post(
        &app,
        "/api/chat",
        json!({"model": "smollm2-135m", "stream": false,
               "messages": [{"role": "user", "content": "hi there"}],
               "options": {"temperature": 0.1, "num_predict": 100, "seed": -1,
                           "top_k": 3, "num_ctx": 4096, "stop": ["ZZ"]}}),
    )
    .await;
    assert_eq!(r.status, StatusCode::OK, "{}", r.body);
    let v = r.json();
    assert_eq!(v["model"], "smollm2-135m");
    assert!(v["created_at"].as_str().unwrap().ends_with('Z'));
    assert_eq!(v["message"]["role"], "assistant");
    assert_eq!(v["message"]["content"], "one two three");
    assert_eq!(v["done"], true);
    assert_eq!(v["done_reason"], "stop");
    assert_eq!(v["prompt_eval_count"], 2);
    assert_eq!(v["eval_count"], 3);
    assert!(v["total_duration"].as_u64().unwrap() > 0);
    let sent = &mock.requests()[0];
    assert_eq!(sent.sampling.temperature, Some(0.1));
    assert_eq!(sent.sampling.max_tokens, Some(100));
    assert_eq!(sent.sampling.seed, None);
    assert_eq!(sent.sampling.top_k, Some(3));
    assert_eq!(sent.sampling.stop, vec!["ZZ".to_string()]);

    // Streaming is the default.
    let r = post(&app, "/api/chat", chat("smollm2-135m", "hi")).await;
    assert_eq!(r.headers["content-type"], "application/x-ndjson");
    let lines = ndjson(&r.body);
    assert_eq!(lines.len(), 4);
    let text: String = lines
        .iter()
        .map(|l| l["message"]["content"].as_str().unwrap())
        .collect();
    assert_eq!(text, "one two three");
    assert!(lines[..3].iter().all(|l| l["done"] == false));
    assert_eq!(lines[3]["done"], true);
    assert_eq!(lines[3]["done_reason"], "stop");
    assert_eq!(lines[3]["eval_count"], 3);

    // num_predict reached: done_reason length.
    let r = post(
        &app,
        "/api/chat",
        json!({"model": "smollm2-135m", "stream": false, "options": {"num_predict": 1},
               "messages": [{"role": "user", "content": "hi"}]}),
    )
    .await;
    assert_eq!(r.json()["done_reason"], "length");
    assert_eq!(r.json()["message"]["content"], "one ");
}

#[tokio::test]
async fn ollama_generate_and_approaches() {
    let mock = Arc::new(MockBackend::new(|r, _| Ok(format!("[{}]", last_user(r)))));
    let app = one_model("m", mock.clone());
    let r = post(
        &app,
        "/api/generate",
        json!({"model": "re2-m", "prompt": "p", "system": "sys", "stream": false}),
    )
    .await;
    assert_eq!(r.status, StatusCode::OK, "{}", r.body);
    let v = r.json();
    assert_eq!(v["response"], "[p\nRead the question again: p]");
    assert_eq!(v["model"], "re2-m");
    assert_eq!(v["done"], true);
    let sent = mock.requests();
    assert_eq!(sent[0].messages[0].content, "sys");

    let r = post(
        &app,
        "/api/generate",
        json!({"model": "m", "prompt": "p", "optillm_approach": "re2"}),
    )
    .await;
    let lines = ndjson(&r.body);
    let text: String = lines
        .iter()
        .filter_map(|l| l["response"].as_str())
        .collect();
    assert_eq!(text, "[p\nRead the question again: p]");
    assert_eq!(lines.last().unwrap()["done"], true);

    // An empty prompt loads the model, like Ollama.
    let r = post(&app, "/api/generate", json!({"model": "m"})).await;
    assert_eq!(r.json()["done_reason"], "load");
    let r = post(&app, "/api/generate", json!({"model": "zz"})).await;
    assert_eq!(r.status, StatusCode::NOT_FOUND);
}

#[tokio::test]
async fn ollama_info_endpoints() {
    let info = optillm_server::ModelInfo {
        family: Some("llama".into()),
        context_length: Some(8192),
        parameter_size: Some("135M".into()),
        quantization_level: Some("Q8_0".into()),
        size: Some(145_000_000),
        ..optillm_server::ModelInfo::new("smollm2")
    };
    let app = app_with(
        StaticModels::new().with_info(info, Arc::new(MockBackend::constant("x"))),
        ServerConfig::default(),
    );
    let r = get(&app, "/").await;
    assert_eq!(r.body, "Ollama is running");
    assert!(get(&app, "/api/version").await.json()["version"].is_string());
    let v = post(&app, "/api/show", json!({"model": "moa-smollm2"}))
        .await
        .json();
    assert_eq!(v["details"]["family"], "llama");
    assert_eq!(v["details"]["parameter_size"], "135M");
    assert_eq!(v["model_info"]["general.architecture"], "llama");
    assert_eq!(v["model_info"]["llama.context_length"], 8192);
    assert!(v["modelfile"].as_str().unwrap().contains("moa"));
    let r = post(&app, "/api/show", json!({"model": "other"})).await;
    assert_eq!(r.status, StatusCode::NOT_FOUND);
    assert_eq!(r.json(), json!({"error": "model 'other' not found"}));
    let r = post(&app, "/api/show", json!({})).await;
    assert_eq!(r.status, StatusCode::BAD_REQUEST);
    let tags = get(&app, "/api/tags").await.json();
    let first = &tags["models"][0];
    assert_eq!(first["name"], "smollm2");
    assert_eq!(first["size"], 145_000_000);
    assert_eq!(first["details"]["quantization_level"], "Q8_0");
    let r = get(&app, "/api/nothing").await;
    assert_eq!(r.status, StatusCode::NOT_FOUND);
    assert!(r.json()["error"].is_string());
}

// ---------- serving over TCP ----------

#[tokio::test]
async fn serves_over_tcp_and_shuts_down_gracefully() {
    use tokio::io::{AsyncReadExt, AsyncWriteExt};
    let listener = tokio::net::TcpListener::bind("127.0.0.1:0").await.unwrap();
    let addr = listener.local_addr().unwrap();
    let (stop, stopped) = tokio::sync::oneshot::channel::<()>();
    let server = tokio::spawn(optillm_server::serve_on(
        listener,
        ServerConfig::default(),
        Arc::new(StaticModels::new().with("m", Arc::new(MockBackend::constant("x")))),
        async move {
            let _ = stopped.await;
        },
    ));
    let mut tcp = tokio::net::TcpStream::connect(addr).await.unwrap();
    tcp.write_all(b"GET /health HTTP/1.1\r\nHost: localhost\r\nConnection: close\r\n\r\n")
        .await
        .unwrap();
    let mut answer = String::new();
    tcp.read_to_string(&mut answer).await.unwrap();
    assert!(answer.starts_with("HTTP/1.1 200"), "{answer}");
    assert!(answer.contains("\"status\":\"ok\""), "{answer}");
    stop.send(()).unwrap();
    let result = tokio::time::timeout(Duration::from_secs(5), server)
        .await
        .expect("server did not stop")
        .unwrap();
    assert!(result.is_ok());
    assert!(tokio::net::TcpStream::connect(addr).await.is_err());
}

#[tokio::test]
async fn a_closed_connection_cancels_a_non_streamed_request() {
    use tokio::io::AsyncWriteExt;
    let listener = tokio::net::TcpListener::bind("127.0.0.1:0").await.unwrap();
    let addr = listener.local_addr().unwrap();
    let entered = Arc::new(Notify::new());
    let dropped = Arc::new(AtomicBool::new(false));
    let backend = Hangs {
        entered: entered.clone(),
        dropped: dropped.clone(),
    };
    let (stop, stopped) = tokio::sync::oneshot::channel::<()>();
    let server = tokio::spawn(optillm_server::serve_on(
        listener,
        ServerConfig::default(),
        Arc::new(StaticModels::new().with("m", Arc::new(backend))),
        async move {
            let _ = stopped.await;
        },
    ));
    let body =
        json!({"model": "re2-m", "messages": [{"role": "user", "content": "q"}]}).to_string();
    let mut tcp = tokio::net::TcpStream::connect(addr).await.unwrap();
    let head = format!(
        "POST /v1/chat/completions HTTP/1.1\r\nHost: localhost\r\nContent-Type: application/json\r\n\
         Content-Length: {}\r\n\r\n",
        body.len()
    );
    tcp.write_all(head.as_bytes()).await.unwrap();
    tcp.write_all(body.as_bytes()).await.unwrap();
    tokio::time::timeout(Duration::from_secs(5), entered.notified())
        .await
        .unwrap();
    assert!(!dropped.load(Ordering::SeqCst));
    drop(tcp);
    let mut waited = 0;
    while !dropped.load(Ordering::SeqCst) && waited < 400 {
        tokio::time::sleep(Duration::from_millis(5)).await;
        waited += 1;
    }
    assert!(
        dropped.load(Ordering::SeqCst),
        "the upstream call outlived its client"
    );
    stop.send(()).unwrap();
    tokio::time::timeout(Duration::from_secs(5), server)
        .await
        .unwrap()
        .unwrap()
        .unwrap();
}

// ---------- Text completions (raw prompts) ----------

#[tokio::test]
async fn openai_text_completion_continues_the_prompt_as_it_is() {
    let mock = Arc::new(MockBackend::constant("Paris is the capital"));
    let app = one_model("m", mock.clone());
    let r = post(
        &app,
        "/v1/completions",
        json!({"model": "m", "prompt": "Q: capital of France?\nA:", "temperature": 0, "stop": ["\n"],
               "top_k": 4, "repeat_penalty": 1.2, "seed": 3, "unknown_field": {}}),
    )
    .await;
    assert_eq!(r.status, StatusCode::OK, "{}", r.body);
    let v = r.json();
    assert!(v["id"].as_str().unwrap().starts_with("cmpl-"));
    assert_eq!(v["object"], "text_completion");
    assert_eq!(v["model"], "m");
    assert_eq!(v["choices"][0]["text"], "Paris is the capital");
    assert_eq!(v["choices"][0]["index"], 0);
    assert_eq!(v["choices"][0]["finish_reason"], "stop");
    assert!(v["choices"][0]["message"].is_null());
    assert_eq!(v["usage"]["completion_tokens"], 4);
    let sent = &mock.requests()[0];
    assert!(sent.raw, "the backend was asked for a chat answer");
    assert_eq!(sent.raw_text(), Some("Q: capital of France?\nA:"));
    assert_eq!(sent.sampling.temperature, Some(0.0));
    assert_eq!(sent.sampling.stop, vec!["\n".to_string()]);
    assert_eq!(sent.sampling.top_k, Some(4));
    assert_eq!(sent.sampling.repeat_penalty, Some(1.2));
    assert_eq!(sent.sampling.seed, Some(3));
    // OpenAI's default for this endpoint: 16 tokens.
    assert_eq!(sent.sampling.max_tokens, Some(16));

    // A list of one prompt is that prompt; streamed, the text comes in pieces.
    let r = post(
        &app,
        "/v1/completions",
        json!({"model": "m", "prompt": ["Once upon"], "max_tokens": 3, "stream": true,
               "stream_options": {"include_usage": true}}),
    )
    .await;
    assert_eq!(r.status, StatusCode::OK, "{}", r.body);
    let (events, done) = sse_data(&r.body);
    assert!(done);
    let text: String = events
        .iter()
        .filter_map(|e| e["choices"][0]["text"].as_str())
        .collect();
    assert_eq!(text, "Paris is the ");
    assert!(events.iter().all(|e| e["object"] == "text_completion"));
    let last_choice = events
        .iter()
        .rev()
        .find(|e| !e["choices"].as_array().unwrap().is_empty())
        .unwrap();
    assert_eq!(last_choice["choices"][0]["finish_reason"], "length");
    assert_eq!(events.last().unwrap()["usage"]["completion_tokens"], 3);
    assert_eq!(mock.requests()[1].raw_text(), Some("Once upon"));
}

#[tokio::test]
async fn text_completion_logprobs_are_parallel_lists() {
    let app = one_model("m", Arc::new(MockBackend::constant("a b")));
    let r = post(
        &app,
        "/v1/completions",
        json!({"model": "m", "prompt": "x", "logprobs": 2}),
    )
    .await;
    assert_eq!(r.status, StatusCode::OK, "{}", r.body);
    let lp = &r.json()["choices"][0]["logprobs"];
    let tokens: Vec<&str> = lp["tokens"]
        .as_array()
        .unwrap()
        .iter()
        .map(|t| t.as_str().unwrap())
        .collect();
    assert_eq!(tokens.concat(), "a b");
    assert_eq!(lp["token_logprobs"].as_array().unwrap().len(), tokens.len());
    assert_eq!(lp["top_logprobs"].as_array().unwrap().len(), tokens.len());
    // Each token's offset is where it starts in the text, in characters.
    let offsets: Vec<u64> = lp["text_offset"]
        .as_array()
        .unwrap()
        .iter()
        .map(|o| o.as_u64().unwrap())
        .collect();
    let mut expected = Vec::new();
    let mut at = 0;
    for t in &tokens {
        expected.push(at);
        at += t.chars().count() as u64;
    }
    assert_eq!(offsets, expected);
}

#[tokio::test]
async fn text_completions_refuse_what_they_cannot_do() {
    let mock = Arc::new(MockBackend::constant("x"));
    let app = one_model("m", mock.clone());
    for (body, needle) in [
        (json!({"model": "moa-m", "prompt": "p"}), "`none` approach"),
        (
            json!({"model": "m", "prompt": "p", "optillm_approach": "re2"}),
            "`none` approach",
        ),
        (json!({"model": "m", "prompt": ["a", "b"]}), "one string"),
        (json!({"model": "m", "prompt": ""}), "must not be empty"),
        (json!({"model": "m", "prompt": "p", "echo": true}), "echo"),
        (
            json!({"model": "m", "prompt": "p", "suffix": "s"}),
            "suffix",
        ),
        (
            json!({"model": "m", "prompt": "p", "best_of": 3}),
            "best_of",
        ),
        (json!({"model": "m", "prompt": [1, 2]}), "token ids"),
        (json!({"model": "m", "prompt": [[1, 2]]}), "token ids"),
        (json!({"model": "m", "prompt": 7}), "must be a string"),
        (
            json!({"model": "m", "prompt": [{"text": "p"}]}),
            "must be a string",
        ),
        (json!({"model": "m", "prompt": []}), "must be a string"),
        (json!({"model": "m"}), "missing field `prompt`"),
        (
            json!({"model": "m", "prompt": "p", "presence_penalty": 0.5}),
            "presence_penalty",
        ),
        (
            json!({"model": "m", "prompt": "p", "logit_bias": {"7": 1}}),
            "logit_bias",
        ),
        (json!({"model": "m", "prompt": "p", "seed": -1}), "seed"),
        (
            json!({"model": "m", "prompt": "p", "temperature": "hot"}),
            "invalid type",
        ),
    ] {
        let r = post(&app, "/v1/completions", body.clone()).await;
        assert_eq!(r.status, StatusCode::BAD_REQUEST, "{body}: {}", r.body);
        let message = r.json()["error"]["message"].as_str().unwrap().to_string();
        assert!(message.contains(needle), "{body}: {message}");
    }
    assert_eq!(mock.calls(), 0, "a refused request reached the model");
    let r = post(
        &app,
        "/v1/completions",
        json!({"model": "zz", "prompt": "p"}),
    )
    .await;
    assert_eq!(r.status, StatusCode::NOT_FOUND);
}

#[tokio::test]
async fn ollama_generate_raw_skips_the_chat_template() {
    let mock = Arc::new(MockBackend::constant("Paris"));
    let app = one_model("m", mock.clone());
    let r = post(
        &app,
        "/api/generate",
        json!({"model": "m", "prompt": "<start_of_turn>user\nCapital?", "raw": true, "stream": false}),
    )
    .await;
    assert_eq!(r.status, StatusCode::OK, "{}", r.body);
    assert_eq!(r.json()["response"], "Paris");
    let sent = &mock.requests()[0];
    assert!(sent.raw);
    assert_eq!(sent.raw_text(), Some("<start_of_turn>user\nCapital?"));

    // Without `raw` the same prompt is a chat message.
    post(
        &app,
        "/api/generate",
        json!({"model": "m", "prompt": "p", "stream": false}),
    )
    .await;
    assert!(!mock.requests()[1].raw);

    for body in [
        json!({"model": "m", "prompt": "p", "raw": true, "system": "s"}),
        json!({"model": "re2-m", "prompt": "p", "raw": true}),
        json!({"model": "m", "prompt": "p", "template": "{{ .Prompt }}"}),
    ] {
        let r = post(&app, "/api/generate", body.clone()).await;
        assert_eq!(r.status, StatusCode::BAD_REQUEST, "{body}: {}", r.body);
    }
    assert_eq!(mock.calls(), 2);
}
