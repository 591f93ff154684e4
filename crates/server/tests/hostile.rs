//! Hostile clients against a real server on loopback: slow and idle connections, too many
//! of them, shutdown with a request that never ends, foreign hosts and origins, bodies of
//! the wrong type or size, and specs or names built to exhaust the parser. Every test is
//! bounded in time and traffic.
#![allow(clippy::unwrap_used, clippy::expect_used, clippy::panic)]

use std::net::SocketAddr;
mod common;

use std::sync::Arc;
use std::sync::atomic::{AtomicBool, Ordering};
use std::time::{Duration, Instant};

use async_trait::async_trait;
use axum::body::Body;
use axum::http::{Request, StatusCode};
use http_body_util::BodyExt;
use optillm_core::mock::MockBackend;
use optillm_core::{
    Backend, BackendError, Capabilities, ChatRequest, CompletionStream, stream_channel,
};
use optillm_server::{AppState, ServerConfig, StaticModels, router};
use serde_json::{Value, json};
use tokio::io::{AsyncReadExt, AsyncWriteExt};
use tokio::net::TcpStream;
use tokio::sync::{Notify, oneshot};
use tokio::task::JoinHandle;
use tower::ServiceExt;

use common::Hangs;

struct Running {
    addr: SocketAddr,
    stop: oneshot::Sender<()>,
    server: JoinHandle<Result<(), optillm_server::ServerError>>,
}

async fn start(config: ServerConfig, backend: Arc<dyn Backend>) -> Running {
    let listener = tokio::net::TcpListener::bind("127.0.0.1:0").await.unwrap();
    let addr = listener.local_addr().unwrap();
    let (stop, stopped) = oneshot::channel::<()>();
    let server = tokio::spawn(optillm_server::serve_on(
        listener,
        config,
        Arc::new(StaticModels::new().with("m", backend)),
        async move {
            let _ = stopped.await;
        },
    ));
    Running { addr, stop, server }
}

/// Reads until the peer closes or `limit` passes; the text read and whether it closed.
async fn read_until_closed(tcp: &mut TcpStream, limit: Duration) -> (String, bool) {
    let mut out = Vec::new();
    let mut buf = [0u8; 4096];
    let deadline = Instant::now() + limit;
    loop {
        let left = deadline.saturating_duration_since(Instant::now());
        match tokio::time::timeout(left, tcp.read(&mut buf)).await {
            Ok(Ok(0)) | Ok(Err(_)) => return (String::from_utf8_lossy(&out).into(), true),
            Ok(Ok(n)) => out.extend_from_slice(&buf[..n]),
            Err(_) => return (String::from_utf8_lossy(&out).into(), false),
        }
    }
}

fn health_request() -> &'static [u8] {
    b"GET /health HTTP/1.1\r\nHost: localhost\r\n\r\n"
}

#[tokio::test]
async fn a_client_that_never_finishes_its_headers_is_dropped() {
    let config = ServerConfig {
        header_timeout: Duration::from_millis(300),
        ..ServerConfig::default()
    };
    let server = start(config, Arc::new(MockBackend::constant("x"))).await;
    let mut tcp = TcpStream::connect(server.addr).await.unwrap();
    tcp.write_all(b"GET /health HTTP/1.1\r\nHo").await.unwrap();
    let started = Instant::now();
    let (_, closed) = read_until_closed(&mut tcp, Duration::from_secs(5)).await;
    assert!(closed, "a half-sent header kept the connection open");
    assert!(started.elapsed() < Duration::from_secs(3));
}

#[tokio::test]
async fn an_idle_keep_alive_connection_is_closed() {
    let config = ServerConfig {
        header_timeout: Duration::from_millis(300),
        ..ServerConfig::default()
    };
    let server = start(config, Arc::new(MockBackend::constant("x"))).await;
    let mut tcp = TcpStream::connect(server.addr).await.unwrap();
    tcp.write_all(health_request()).await.unwrap();
    let (answer, closed) = read_until_closed(&mut tcp, Duration::from_secs(5)).await;
    assert!(answer.starts_with("HTTP/1.1 200"), "{answer}");
    assert!(closed, "the idle keep-alive connection stayed open");
}

#[tokio::test]
async fn a_body_sent_too_slowly_gets_408() {
    let config = ServerConfig {
        body_timeout: Duration::from_millis(300),
        ..ServerConfig::default()
    };
    let server = start(config, Arc::new(MockBackend::constant("x"))).await;
    let mut tcp = TcpStream::connect(server.addr).await.unwrap();
    tcp.write_all(
        b"POST /v1/chat/completions HTTP/1.1\r\nHost: localhost\r\n\
          Content-Type: application/json\r\nContent-Length: 100\r\n\r\n{\"model\":",
    )
    .await
    .unwrap();
    let (answer, _) = read_until_closed(&mut tcp, Duration::from_secs(5)).await;
    assert!(answer.starts_with("HTTP/1.1 408"), "{answer}");
    assert!(answer.contains("did not arrive within"), "{answer}");
}

#[tokio::test]
async fn open_connections_are_capped() {
    let config = ServerConfig {
        max_connections: 3,
        header_timeout: Duration::from_secs(30),
        ..ServerConfig::default()
    };
    let server = start(config, Arc::new(MockBackend::constant("x"))).await;
    let mut idle = Vec::new();
    for _ in 0..3 {
        idle.push(TcpStream::connect(server.addr).await.unwrap());
    }
    // Let the server accept the three.
    tokio::time::sleep(Duration::from_millis(200)).await;
    // The fourth waits in the backlog: no answer while the three stay open.
    let mut fourth = TcpStream::connect(server.addr).await.unwrap();
    fourth.write_all(health_request()).await.unwrap();
    let mut buf = [0u8; 64];
    let early = tokio::time::timeout(Duration::from_millis(500), fourth.read(&mut buf)).await;
    assert!(early.is_err(), "a connection beyond the cap was served");
    // One closes: the fourth is served.
    drop(idle.pop());
    let n = tokio::time::timeout(Duration::from_secs(5), fourth.read(&mut buf))
        .await
        .expect("the waiting connection was never served")
        .unwrap();
    assert!(String::from_utf8_lossy(&buf[..n]).starts_with("HTTP/1.1 200"));
}

#[tokio::test]
async fn shutdown_with_a_request_that_never_ends_stops_after_the_grace_period() {
    let entered = Arc::new(Notify::new());
    let dropped = Arc::new(AtomicBool::new(false));
    let backend = Hangs {
        entered: entered.clone(),
        dropped: dropped.clone(),
    };
    let config = ServerConfig {
        shutdown_grace: Duration::from_millis(300),
        ..ServerConfig::default()
    };
    let server = start(config, Arc::new(backend)).await;
    let body = json!({"model": "m", "messages": [{"role": "user", "content": "q"}]}).to_string();
    let mut tcp = TcpStream::connect(server.addr).await.unwrap();
    let head = format!(
        "POST /v1/chat/completions HTTP/1.1\r\nHost: localhost\r\n\
         Content-Type: application/json\r\nContent-Length: {}\r\n\r\n",
        body.len()
    );
    tcp.write_all(head.as_bytes()).await.unwrap();
    tcp.write_all(body.as_bytes()).await.unwrap();
    tokio::time::timeout(Duration::from_secs(5), entered.notified())
        .await
        .unwrap();
    let started = Instant::now();
    server.stop.send(()).unwrap();
    let result = tokio::time::timeout(Duration::from_secs(5), server.server)
        .await
        .expect("shutdown waited for a request that never ends")
        .unwrap();
    assert!(result.is_ok());
    assert!(started.elapsed() < Duration::from_secs(3));
    assert!(
        dropped.load(Ordering::SeqCst),
        "the model call outlived the server"
    );
    // No new connections after shutdown.
    assert!(TcpStream::connect(server.addr).await.is_err());
}

// ---------- in process: what a browser page or a crafted body can do ----------

struct Reply {
    status: StatusCode,
    headers: axum::http::HeaderMap,
    body: String,
}

async fn send(config: ServerConfig, backend: Arc<dyn Backend>, request: Request<Body>) -> Reply {
    let app =
        router(AppState::new(config, Arc::new(StaticModels::new().with("m", backend))).unwrap());
    let response = app.oneshot(request).await.unwrap();
    let status = response.status();
    let headers = response.headers().clone();
    let bytes = response.into_body().collect().await.unwrap().to_bytes();
    Reply {
        status,
        headers,
        body: String::from_utf8_lossy(&bytes).into(),
    }
}

async fn mock(request: Request<Body>) -> Reply {
    send(
        ServerConfig::default(),
        Arc::new(MockBackend::constant("x")),
        request,
    )
    .await
}

fn chat_body() -> String {
    json!({"model": "m", "messages": [{"role": "user", "content": "q"}]}).to_string()
}

/// A POST as a local client sends it (its Host names this machine).
fn local_post(path: &str) -> axum::http::request::Builder {
    Request::post(path).header("host", "localhost:8000")
}

#[tokio::test]
async fn foreign_hosts_origins_and_content_types_are_refused() {
    // DNS rebinding: a foreign Host on a loopback server.
    let r = mock(
        Request::get("/v1/models")
            .header("host", "evil.example:8000")
            .body(Body::empty())
            .unwrap(),
    )
    .await;
    assert_eq!(r.status, StatusCode::FORBIDDEN);
    assert!(r.body.contains("host"), "{}", r.body);
    // A page on another origin.
    let r = mock(
        local_post("/v1/chat/completions")
            .header("origin", "https://evil.example")
            .header("content-type", "application/json")
            .body(Body::from(chat_body()))
            .unwrap(),
    )
    .await;
    assert_eq!(r.status, StatusCode::FORBIDDEN);
    let v: Value = serde_json::from_str(&r.body).unwrap();
    assert!(v["error"]["message"].as_str().unwrap().contains("origin"));
    // A "simple" cross-origin request: text/plain.
    for path in ["/v1/chat/completions", "/api/chat"] {
        let r = mock(
            local_post(path)
                .header("content-type", "text/plain")
                .body(Body::from(chat_body()))
                .unwrap(),
        )
        .await;
        assert_eq!(r.status, StatusCode::UNSUPPORTED_MEDIA_TYPE, "{path}");
    }
    // A local page and a listed origin are fine.
    let config = ServerConfig {
        allowed_origins: vec!["https://ui.example".into()],
        ..ServerConfig::default()
    };
    for origin in ["http://localhost:5173", "https://ui.example"] {
        let r = send(
            config.clone(),
            Arc::new(MockBackend::constant("x")),
            local_post("/v1/chat/completions")
                .header("origin", origin)
                .header("content-type", "application/json")
                .body(Body::from(chat_body()))
                .unwrap(),
        )
        .await;
        assert_eq!(r.status, StatusCode::OK, "{origin}: {}", r.body);
        assert_eq!(r.headers["access-control-allow-origin"], origin);
    }
}

#[tokio::test]
async fn cors_preflights_answer_allowed_origins_only() {
    let preflight = |origin: &str| {
        Request::builder()
            .method("OPTIONS")
            .uri("/v1/chat/completions")
            .header("host", "localhost:8000")
            .header("origin", origin)
            .header("access-control-request-method", "POST")
            .header(
                "access-control-request-headers",
                "content-type,authorization",
            )
            .body(Body::empty())
            .unwrap()
    };
    let config = ServerConfig {
        api_key: Some("secret".into()),
        ..ServerConfig::default()
    };
    let r = send(
        config.clone(),
        Arc::new(MockBackend::constant("x")),
        preflight("http://localhost:3000"),
    )
    .await;
    assert!(r.status.is_success(), "{}", r.status);
    assert_eq!(
        r.headers["access-control-allow-origin"],
        "http://localhost:3000"
    );
    let methods = r.headers["access-control-allow-methods"].to_str().unwrap();
    assert!(methods.contains("POST"), "{methods}");
    let r = send(
        config,
        Arc::new(MockBackend::constant("x")),
        preflight("https://evil.example"),
    )
    .await;
    assert!(!r.headers.contains_key("access-control-allow-origin"));
}

#[tokio::test]
async fn wrong_methods_get_405_in_the_dialect() {
    let r = mock(
        Request::get("/v1/chat/completions")
            .header("host", "localhost")
            .body(Body::empty())
            .unwrap(),
    )
    .await;
    assert_eq!(r.status, StatusCode::METHOD_NOT_ALLOWED);
    let v: Value = serde_json::from_str(&r.body).unwrap();
    assert!(v["error"]["message"].as_str().unwrap().contains("GET"));
    let r = mock(
        Request::delete("/api/chat")
            .header("host", "localhost")
            .body(Body::empty())
            .unwrap(),
    )
    .await;
    assert_eq!(r.status, StatusCode::METHOD_NOT_ALLOWED);
    let v: Value = serde_json::from_str(&r.body).unwrap();
    assert!(v["error"].is_string(), "{v}");
}

#[tokio::test]
async fn an_oversized_body_gets_413() {
    let config = ServerConfig {
        max_body_bytes: 1000,
        ..ServerConfig::default()
    };
    let big = json!({"model": "m", "messages": [{"role": "user", "content": "q".repeat(5000)}]});
    let r = send(
        config,
        Arc::new(MockBackend::constant("x")),
        local_post("/v1/chat/completions")
            .header("content-type", "application/json")
            .body(Body::from(big.to_string()))
            .unwrap(),
    )
    .await;
    assert_eq!(r.status, StatusCode::PAYLOAD_TOO_LARGE, "{}", r.body);
}

fn json_post(path: &str, body: Value) -> Request<Body> {
    local_post(path)
        .header("content-type", "application/json")
        .body(Body::from(body.to_string()))
        .unwrap()
}

#[tokio::test]
async fn deep_specs_and_long_names_are_400_wherever_they_come_from() {
    let deep = format!("{}re2{}", "(".repeat(3000), ")".repeat(3000));
    let user = json!([{"role": "user", "content": "q"}]);
    let with_tag = json!([
        {"role": "system", "content": format!("<optillm_approach>{deep}</optillm_approach>")},
        {"role": "user", "content": "q"}
    ]);
    let cases = [
        json_post(
            "/v1/chat/completions",
            json!({"model": "m", "messages": user, "optillm_approach": deep}),
        ),
        json_post(
            "/v1/chat/completions",
            json!({"model": "m", "messages": with_tag}),
        ),
        json_post(
            "/api/chat",
            json!({"model": "m", "messages": user, "optillm_approach": deep}),
        ),
        json_post(
            "/v1/chat/completions",
            json!({"model": format!("{}-m", deep), "messages": user}),
        ),
        json_post("/api/show", json!({"model": format!("{}-m", deep)})),
        json_post(
            "/v1/chat/completions",
            json!({"model": format!("{}smollm2-135m", "x-".repeat(80_000)), "messages": user}),
        ),
    ];
    for request in cases {
        let started = Instant::now();
        let r = mock(request).await;
        assert_eq!(r.status, StatusCode::BAD_REQUEST, "{}", r.body);
        assert!(started.elapsed() < Duration::from_secs(2));
    }
    // In a URL path.
    let id = format!("{}-m", "(".repeat(2000) + "re2" + &")".repeat(2000));
    let r = mock(
        Request::get(format!("/v1/models/{id}"))
            .header("host", "localhost")
            .body(Body::empty())
            .unwrap(),
    )
    .await;
    assert_eq!(r.status, StatusCode::BAD_REQUEST, "{}", r.body);
}

#[tokio::test]
async fn ollama_num_predict_below_minus_two_is_400() {
    let r = mock(json_post(
        "/api/chat",
        json!({"model": "m", "messages": [{"role": "user", "content": "q"}],
               "stream": false, "options": {"num_predict": -7}}),
    ))
    .await;
    assert_eq!(r.status, StatusCode::BAD_REQUEST);
    assert!(r.body.contains("num_predict"), "{}", r.body);
}

/// Fails every request in its stream's first event, as the native backend does for a
/// prompt longer than the context.
struct Overflows;

#[async_trait]
impl Backend for Overflows {
    fn model(&self) -> &str {
        "overflows"
    }
    fn capabilities(&self) -> Capabilities {
        Capabilities::default()
    }
    async fn stream(&self, _: ChatRequest) -> Result<CompletionStream, BackendError> {
        let (tx, rx) = stream_channel();
        tokio::spawn(async move {
            tx.send(Err(BackendError::ContextOverflow {
                prompt_tokens: 9000,
                context_length: 8192,
            }))
            .await;
        });
        Ok(rx)
    }
}

#[tokio::test]
async fn a_streamed_prompt_longer_than_the_context_is_400_before_the_stream() {
    let user = json!([{"role": "user", "content": "q"}]);
    for (path, model) in [
        ("/v1/chat/completions", "m"),
        ("/v1/chat/completions", "re2-m"),
        ("/api/chat", "m"),
    ] {
        let r = send(
            ServerConfig::default(),
            Arc::new(Overflows),
            json_post(
                path,
                json!({"model": model, "messages": user, "stream": true}),
            ),
        )
        .await;
        assert_eq!(
            r.status,
            StatusCode::BAD_REQUEST,
            "{path} {model}: {}",
            r.body
        );
        assert!(r.body.contains("context"), "{}", r.body);
    }
}

#[test]
fn an_empty_api_key_is_refused() {
    let config = ServerConfig {
        api_key: Some(" ".into()),
        ..ServerConfig::default()
    };
    let e = AppState::new(config, Arc::new(StaticModels::new())).unwrap_err();
    assert!(e.to_string().contains("API key is empty"), "{e}");
}

#[tokio::test]
async fn approach_parameters_asking_for_unbounded_work_are_400() {
    let user = json!([{"role": "user", "content": "q"}]);
    for body in [
        json!({"model": "m", "messages": user, "optillm_approach": "self_consistency",
               "optillm_params": {"k": 1_000_000}}),
        json!({"model": "mars(agents=100000)-m", "messages": user}),
        json!({"model": "m", "messages": user, "optillm_approach": "re2&mcts(simulations=4000000000)"}),
    ] {
        let started = Instant::now();
        let r = mock(json_post("/v1/chat/completions", body)).await;
        assert_eq!(r.status, StatusCode::BAD_REQUEST, "{}", r.body);
        assert!(r.body.contains("limit"), "{}", r.body);
        assert!(started.elapsed() < Duration::from_secs(2));
    }
}
