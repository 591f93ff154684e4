//! Structured output through both dialects (in-process, mock backend): OpenAI
//! `response_format` and llama-server's `grammar`, Ollama `format`; what the backend
//! receives, and 400 for what cannot be honoured.
#![allow(clippy::unwrap_used, clippy::expect_used, clippy::panic)]

use std::sync::Arc;

use axum::Router;
use axum::body::Body;
use axum::http::{Request, StatusCode};
use http_body_util::BodyExt;
use optillm_core::ResponseFormat;
use optillm_core::mock::MockBackend;
use optillm_server::{AppState, ServerConfig, StaticModels, router};
use serde_json::{Value, json};
use tower::ServiceExt;

fn app(mock: Arc<MockBackend>) -> Router {
    let models = StaticModels::new().with("m", mock);
    router(AppState::new(ServerConfig::default(), Arc::new(models)).unwrap())
}

async fn post(app: &Router, path: &str, body: Value) -> (StatusCode, String) {
    let request = Request::post(path)
        .header("content-type", "application/json")
        .body(Body::from(body.to_string()))
        .unwrap();
    let response = app.clone().oneshot(request).await.unwrap();
    let status = response.status();
    let bytes = response.into_body().collect().await.unwrap().to_bytes();
    (status, String::from_utf8(bytes.to_vec()).unwrap())
}

fn openai(extra: Value) -> Value {
    let mut body = json!({"model": "m", "messages": [{"role": "user", "content": "q"}]});
    for (k, v) in extra.as_object().unwrap() {
        body[k] = v.clone();
    }
    body
}

fn ollama(extra: Value) -> Value {
    let mut body = openai(extra);
    body["stream"] = json!(false);
    body
}

fn schema() -> Value {
    json!({
        "type": "object",
        "properties": {"answer": {"type": "integer"}},
        "required": ["answer"]
    })
}

#[tokio::test]
async fn openai_response_format_reaches_the_backend() {
    let mock = Arc::new(MockBackend::constant("{\"answer\": 4}"));
    let app = app(mock.clone());
    let cases = [
        (json!({"type": "text"}), None),
        (
            json!({"type": "json_object"}),
            Some(ResponseFormat::JsonObject),
        ),
        (
            json!({"type": "json_schema", "json_schema": {"name": "a", "strict": true, "schema": schema()}}),
            Some(ResponseFormat::json_schema(schema())),
        ),
        // llama-server's spelling: the schema beside the type.
        (
            json!({"type": "json_object", "schema": schema()}),
            Some(ResponseFormat::json_schema(schema())),
        ),
    ];
    for (i, (format, expected)) in cases.into_iter().enumerate() {
        let (status, body) = post(
            &app,
            "/v1/chat/completions",
            openai(json!({"response_format": format})),
        )
        .await;
        assert_eq!(status, StatusCode::OK, "{body}");
        let v: Value = serde_json::from_str(&body).unwrap();
        assert_eq!(v["choices"][0]["message"]["content"], "{\"answer\": 4}");
        assert_eq!(mock.requests()[i].format, expected, "case {i}");
    }
    // llama-server's `grammar`, streamed.
    let (status, body) = post(
        &app,
        "/v1/chat/completions",
        openai(json!({"grammar": "root ::= \"{}\"", "stream": true})),
    )
    .await;
    assert_eq!(status, StatusCode::OK, "{body}");
    assert!(body.contains("[DONE]"), "{body}");
    assert_eq!(
        mock.requests().last().unwrap().format,
        Some(ResponseFormat::grammar("root ::= \"{}\""))
    );
}

#[tokio::test]
async fn ollama_format_reaches_the_backend() {
    let mock = Arc::new(MockBackend::constant("{}"));
    let app = app(mock.clone());
    for (path, format, expected) in [
        ("/api/chat", json!("json"), Some(ResponseFormat::JsonObject)),
        (
            "/api/chat",
            schema(),
            Some(ResponseFormat::json_schema(schema())),
        ),
        ("/api/chat", json!(""), None),
        (
            "/api/generate",
            schema(),
            Some(ResponseFormat::json_schema(schema())),
        ),
    ] {
        let mut body = ollama(json!({"format": format}));
        if path == "/api/generate" {
            body["prompt"] = json!("q");
        }
        let (status, text) = post(&app, path, body).await;
        assert_eq!(status, StatusCode::OK, "{text}");
        assert_eq!(mock.requests().last().unwrap().format, expected, "{path}");
    }
}

#[tokio::test]
async fn bad_formats_are_400_in_each_dialect() {
    let mock = Arc::new(MockBackend::constant("x"));
    let app = app(mock.clone());
    let mut deep = json!({"type": "string"});
    for _ in 0..40 {
        deep = json!({"type": "array", "items": deep});
    }
    let openai_cases = [
        (
            json!({"response_format": {"type": "json_schema", "json_schema": {"schema": {"type": "int"}}}}),
            "#/type",
        ),
        (
            json!({"response_format": {"type": "json_schema", "json_schema": {"schema": deep.clone()}}}),
            "levels deep",
        ),
        (
            json!({"response_format": {"type": "json_schema", "json_schema": {"name": "x"}}}),
            "json_schema.schema",
        ),
        (json!({"response_format": {"type": "xml"}}), "xml"),
        (
            json!({"response_format": {"type": "json_schema", "json_schema": {"schema": {"type": "string", "maxLength": 1_000_000}}}}),
            "maxLength",
        ),
        (json!({"grammar": "start ::= \"a\""}), "root"),
        (
            json!({"grammar": "root ::= \"a\"", "response_format": {"type": "json_object"}}),
            "not both",
        ),
    ];
    for (extra, needle) in openai_cases {
        let (status, body) = post(&app, "/v1/chat/completions", openai(extra.clone())).await;
        assert_eq!(status, StatusCode::BAD_REQUEST, "{extra}: {body}");
        let v: Value = serde_json::from_str(&body).unwrap();
        assert_eq!(v["error"]["type"], "invalid_request_error");
        let message = v["error"]["message"].as_str().unwrap();
        assert!(message.contains(needle), "{extra}: {message}");
    }
    for (format, needle) in [
        (json!(42), "must be \"json\" or a JSON schema"),
        (json!({"type": "int"}), "#/type"),
        (deep, "levels deep"),
    ] {
        let (status, body) = post(&app, "/api/chat", ollama(json!({"format": format}))).await;
        assert_eq!(status, StatusCode::BAD_REQUEST, "{body}");
        let v: Value = serde_json::from_str(&body).unwrap();
        assert!(v["error"].as_str().unwrap().contains(needle), "{body}");
    }
    assert!(
        mock.requests().is_empty(),
        "no bad format reached the backend"
    );
}

#[tokio::test]
async fn an_approach_with_a_format_is_refused_naming_the_limitation() {
    let mock = Arc::new(MockBackend::constant("x"));
    let app = app(mock.clone());
    let mut body = openai(json!({"response_format": {"type": "json_object"}}));
    body["model"] = json!("re2-m");
    let (status, text) = post(&app, "/v1/chat/completions", body).await;
    assert_eq!(status, StatusCode::BAD_REQUEST, "{text}");
    assert!(
        text.contains("only available with the `none` approach"),
        "{text}"
    );
    assert!(text.contains("re2"), "{text}");
    let mut body = ollama(json!({"format": "json", "optillm_approach": "bon"}));
    body["model"] = json!("m");
    let (status, text) = post(&app, "/api/chat", body).await;
    assert_eq!(status, StatusCode::BAD_REQUEST, "{text}");
    assert!(text.contains("`none` approach"), "{text}");
    assert!(mock.requests().is_empty());
    // `text` is no format at all: any approach takes it.
    let mut body = openai(json!({"response_format": {"type": "text"}}));
    body["model"] = json!("re2-m");
    let (status, text) = post(&app, "/v1/chat/completions", body).await;
    assert_eq!(status, StatusCode::OK, "{text}");
}
