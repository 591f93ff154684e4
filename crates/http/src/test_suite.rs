//! The transport behaviours every remote backend shares, tested once against the
//! loopback [`TestServer`]: retries, timeouts, stalls, caps, broken connections,
//! cancellation on drop and the keep-alive race. A backend's wire tests describe its
//! format with a [`Dialect`] and call [`run_all`]; what only one wire does (its field
//! names, its `n`, its error frames) stays in that backend's own tests.

#![allow(clippy::unwrap_used, clippy::expect_used, clippy::panic)]

use std::sync::atomic::Ordering;
use std::time::{Duration, Instant};

use optillm_core::{Backend, BackendError, ChatRequest, Completion, StreamEvent};

use crate::RemoteConfig;
use crate::test_server::{Reply, TestServer};

/// A backend's wire format, as far as the shared tests need it.
pub trait Dialect {
    /// The content type of a streamed answer.
    const CONTENT_TYPE: &'static str;
    /// What the backend calls a frame in [`BackendError::TooLarge`] ("a line").
    const FRAME: &'static str;
    /// The backend.
    type Backend: Backend + 'static;
    /// A backend for the test server at `url`, its shared settings changed by `tweak`.
    fn open(url: &str, tweak: &dyn Fn(&mut RemoteConfig)) -> Self::Backend;
    /// The frame of a streamed answer that carries `text` for choice 0.
    fn piece(text: &str) -> String;
    /// The frames that end a streamed answer.
    fn end() -> String;
    /// The JSON body of an error answer with `message` (also sent as a frame mid-stream).
    fn error(message: &str) -> String;
    /// `json` as one frame of a streamed answer.
    fn frame(json: &str) -> String;
    /// The start of a frame, to be followed by an endless run of `x`.
    fn endless_start() -> &'static str;
}

/// Runs every shared test, one after the other (each prints its name first).
pub async fn run_all<D: Dialect>() {
    eprintln!("a_500_is_retried_then_succeeds");
    a_500_is_retried_then_succeeds::<D>().await;
    eprintln!("a_persistent_500_is_an_http_error_after_the_retries");
    a_persistent_500_is_an_http_error_after_the_retries::<D>().await;
    eprintln!("client_errors_keep_status_and_message_and_are_not_retried");
    client_errors_keep_status_and_message_and_are_not_retried::<D>().await;
    eprintln!("a_mid_stream_error_is_a_protocol_error_with_its_message");
    a_mid_stream_error_is_a_protocol_error_with_its_message::<D>().await;
    eprintln!("malformed_and_truncated_answers_are_protocol_errors");
    malformed_and_truncated_answers_are_protocol_errors::<D>().await;
    eprintln!("a_slow_first_byte_times_out");
    a_slow_first_byte_times_out::<D>().await;
    eprintln!("the_total_timeout_bounds_a_slow_stream");
    the_total_timeout_bounds_a_slow_stream::<D>().await;
    eprintln!("a_dropped_connection_mid_stream_is_a_connection_error");
    a_dropped_connection_mid_stream_is_a_connection_error::<D>().await;
    eprintln!("connection_refused_is_a_connection_error_after_retries");
    connection_refused_is_a_connection_error_after_retries::<D>().await;
    eprintln!("dropping_the_stream_closes_the_response");
    dropping_the_stream_closes_the_response::<D>().await;
    eprintln!("half_a_frame_then_silence_is_a_stall_after_the_idle_timeout");
    half_a_frame_then_silence_is_a_stall_after_the_idle_timeout::<D>().await;
    eprintln!("an_endless_frame_is_too_large_and_memory_stays_bounded");
    an_endless_frame_is_too_large_and_memory_stays_bounded::<D>().await;
    eprintln!("a_reused_connection_closed_by_the_server_is_retried_once");
    a_reused_connection_closed_by_the_server_is_retried_once::<D>().await;
}

/// Drains a stream: the deltas (index, text) and the final result.
pub async fn drain(
    backend: &dyn Backend,
    request: ChatRequest,
) -> (Vec<(u32, String)>, Result<Completion, BackendError>) {
    let mut stream = match backend.stream(request).await {
        Ok(s) => s,
        Err(e) => return (Vec::new(), Err(e)),
    };
    let mut deltas = Vec::new();
    while let Some(event) = stream.next_event().await {
        match event {
            Ok(StreamEvent::Delta { index, text, .. }) => deltas.push((index, text)),
            Ok(StreamEvent::Done(c)) => return (deltas, Ok(c)),
            Err(e) => return (deltas, Err(e)),
        }
    }
    (deltas, Err(BackendError::Protocol("no final event".into())))
}

/// A request for `n` samples with `seed`.
pub fn seeded(n: u32, seed: u32) -> ChatRequest {
    ChatRequest::user("Hi")
        .with_n(n)
        .with_sampling(optillm_core::Sampling::default().with_seed(seed))
}

/// [`drain`], for an answer that must succeed.
pub async fn drained(
    backend: &dyn Backend,
    request: ChatRequest,
) -> (Vec<(u32, String)>, Completion) {
    let (deltas, result) = drain(backend, request).await;
    (
        deltas,
        result.unwrap_or_else(|e| panic!("the answer failed: {e}")),
    )
}

/// Polls `f` until it holds, at most 5 s.
pub async fn eventually(f: impl Fn() -> bool) -> bool {
    for _ in 0..100 {
        if f() {
            return true;
        }
        tokio::time::sleep(Duration::from_millis(50)).await;
    }
    f()
}

/// The streamed answer of the pieces `texts`, whole.
fn answer<D: Dialect>(texts: &[&str]) -> String {
    let mut body: String = texts.iter().map(|t| D::piece(t)).collect();
    body.push_str(&D::end());
    body
}

/// Short retry backoff, and a first-byte timeout of 5 s: the settings of most tests.
pub fn quick(c: &mut RemoteConfig) {
    c.retry_backoff = Duration::from_millis(10);
    c.first_byte_timeout = Duration::from_secs(5);
}

async fn streamed(backend: &dyn Backend) -> Result<Completion, BackendError> {
    drain(backend, ChatRequest::user("Hi")).await.1
}

pub async fn a_500_is_retried_then_succeeds<D: Dialect>() {
    let body = answer::<D>(&["second time lucky"]);
    let server = TestServer::start(move |_, number| {
        if number < 2 {
            Reply::json(500, &D::error("llama runner process has terminated"))
        } else {
            Reply::split(200, D::CONTENT_TYPE, body.as_bytes(), &[3])
        }
    })
    .await;
    let b = D::open(&server.url(), &quick);
    assert_eq!(streamed(&b).await.unwrap().text(), "second time lucky");
    let got = server.received();
    assert_eq!(got.len(), 3);
    assert_eq!(got[0].body, got[2].body, "the retry sends the same request");
}

pub async fn a_persistent_500_is_an_http_error_after_the_retries<D: Dialect>() {
    let server = TestServer::start(|_, _| Reply::json(503, &D::error("Loading model"))).await;
    let b = D::open(&server.url(), &|c| {
        c.max_retries = 2;
        c.retry_backoff = Duration::from_millis(5);
    });
    let err = streamed(&b).await.unwrap_err();
    assert!(
        matches!(&err, BackendError::Http { status: 503, message } if message == "Loading model"),
        "{err:?}"
    );
    assert_eq!(server.received().len(), 3);
}

pub async fn client_errors_keep_status_and_message_and_are_not_retried<D: Dialect>() {
    let server = TestServer::start(|r, _| match r.json()["messages"][0]["content"].as_str() {
        Some("missing") => Reply::json(404, &D::error("model 'nope' not found")),
        _ => Reply::json(400, &D::error("invalid options: num_ctx")),
    })
    .await;
    let b = D::open(&server.url(), &quick);
    let err = drain(&b, ChatRequest::user("missing")).await.1.unwrap_err();
    assert!(
        matches!(&err, BackendError::ModelNotFound(m) if m.contains("nope")),
        "{err:?}"
    );
    let err = streamed(&b).await.unwrap_err();
    assert!(
        matches!(&err, BackendError::Http { status: 400, message } if message == "invalid options: num_ctx"),
        "{err:?}"
    );
    assert_eq!(server.received().len(), 2, "a 4xx is not retried");

    // llama.cpp's server refusing a prompt longer than its slot: the typed overflow.
    let server = TestServer::start(|_, _| {
        Reply::json(
            400,
            r#"{"error":{"code":400,"message":"request (1302 tokens) exceeds the available context size (1024 tokens), try increasing it","type":"exceed_context_size_error","n_prompt_tokens":1302,"n_ctx":1024}}"#,
        )
    })
    .await;
    let b = D::open(&server.url(), &quick);
    let err = drain(&b, ChatRequest::user("long")).await.1.unwrap_err();
    assert!(
        matches!(
            err,
            BackendError::ContextOverflow {
                prompt_tokens: 1302,
                context_length: 1024
            }
        ),
        "{err:?}"
    );
    assert_eq!(server.received().len(), 1, "an overflow is not retried");
}

pub async fn a_mid_stream_error_is_a_protocol_error_with_its_message<D: Dialect>() {
    let message = "an error was encountered while running the model: out of memory";
    let body = format!("{}{}", D::piece("Hel"), D::frame(&D::error(message)));
    let server =
        TestServer::start(move |_, _| Reply::split(200, D::CONTENT_TYPE, body.as_bytes(), &[5]))
            .await;
    let b = D::open(&server.url(), &quick);
    let (deltas, result) = drain(&b, ChatRequest::user("Hi")).await;
    assert_eq!(deltas, vec![(0, "Hel".into())]);
    assert!(
        matches!(&result, Err(BackendError::Protocol(m)) if m.contains("out of memory")),
        "{result:?}"
    );
    assert_eq!(server.received().len(), 1, "no retry once streaming began");
}

pub async fn malformed_and_truncated_answers_are_protocol_errors<D: Dialect>() {
    let garbage = D::frame("{\"choices\":[{\"index\":0,\"message\":{\"content\" GARBAGE");
    let half = D::piece("b");
    let half = half.get(..half.len() / 2).unwrap_or_default();
    let bodies = [
        // A frame that is not JSON.
        format!("{}{garbage}{}", D::piece("a"), D::end()),
        // The body ends cleanly, but in the middle of a frame and before the end.
        format!("{}{half}", D::piece("a")),
        // Complete frames, but not the end.
        D::piece("a"),
    ];
    for (i, body) in bodies.into_iter().enumerate() {
        let server =
            TestServer::start(move |_, _| Reply::split(200, D::CONTENT_TYPE, body.as_bytes(), &[]))
                .await;
        let b = D::open(&server.url(), &quick);
        let result = streamed(&b).await;
        match (i, &result) {
            (0, Err(BackendError::Protocol(m))) => assert!(m.contains("malformed"), "{m}"),
            (_, Err(BackendError::Protocol(_))) => {}
            _ => panic!("body {i}: expected a protocol error, got {result:?}"),
        }
    }
}

pub async fn a_slow_first_byte_times_out<D: Dialect>() {
    let body = answer::<D>(&["late"]);
    let server = TestServer::start(move |_, _| {
        Reply::split(200, D::CONTENT_TYPE, body.as_bytes(), &[]).with_delay(Duration::from_secs(3))
    })
    .await;
    let b = D::open(&server.url(), &|c| {
        c.first_byte_timeout = Duration::from_millis(200);
    });
    let started = Instant::now();
    let err = streamed(&b).await.unwrap_err();
    assert!(
        matches!(err, BackendError::Timeout(d) if d == Duration::from_millis(200)),
        "{err:?}"
    );
    assert!(started.elapsed() < Duration::from_secs(2));
}

pub async fn the_total_timeout_bounds_a_slow_stream<D: Dialect>() {
    let parts: Vec<Vec<u8>> = [D::piece("a"), D::piece("b"), D::end()]
        .into_iter()
        .map(String::into_bytes)
        .collect();
    let server = TestServer::start(move |_, _| {
        Reply::new(200, D::CONTENT_TYPE, parts.clone()).with_gap(Duration::from_millis(400))
    })
    .await;
    let b = D::open(&server.url(), &|c| {
        c.total_timeout = Some(Duration::from_millis(600));
    });
    let err = streamed(&b).await.unwrap_err();
    assert!(
        matches!(err, BackendError::Timeout(d) if d == Duration::from_millis(600)),
        "{err:?}"
    );
}

pub async fn a_dropped_connection_mid_stream_is_a_connection_error<D: Dialect>() {
    let body = format!("{}{}", D::piece("Hello"), D::piece(" wor"));
    let cut = D::piece("Hello").len() - 3;
    let server = TestServer::start(move |_, _| {
        Reply::split(200, D::CONTENT_TYPE, body.as_bytes(), &[cut]).disconnecting()
    })
    .await;
    let b = D::open(&server.url(), &quick);
    let (deltas, result) = drain(&b, ChatRequest::user("Hi")).await;
    assert_eq!(deltas.len(), 2);
    assert!(
        matches!(result, Err(BackendError::Connection(_))),
        "{result:?}"
    );
    assert_eq!(server.received().len(), 1, "no retry once streaming began");
}

pub async fn connection_refused_is_a_connection_error_after_retries<D: Dialect>() {
    let port = {
        let l = std::net::TcpListener::bind("127.0.0.1:0").unwrap();
        l.local_addr().unwrap().port()
    };
    let b = D::open(&format!("http://127.0.0.1:{port}"), &|c| {
        c.max_retries = 2;
        c.retry_backoff = Duration::from_millis(50);
    });
    let started = Instant::now();
    let err = streamed(&b).await.unwrap_err();
    assert!(matches!(err, BackendError::Connection(_)), "{err:?}");
    // 50 ms + 100 ms of backoff show that it retried.
    assert!(started.elapsed() >= Duration::from_millis(150));
}

pub async fn dropping_the_stream_closes_the_response<D: Dialect>() {
    let parts: Vec<Vec<u8>> = (0..60)
        .map(|i| D::piece(&format!("t{i} ")))
        .chain([D::end()])
        .map(String::into_bytes)
        .collect();
    let server = TestServer::start(move |_, _| {
        Reply::new(200, D::CONTENT_TYPE, parts.clone()).with_gap(Duration::from_millis(20))
    })
    .await;
    let b = D::open(&server.url(), &quick);
    let mut stream = b.stream(ChatRequest::user("Hi")).await.unwrap();
    let first = stream.next_event().await.unwrap().unwrap();
    assert!(matches!(first, StreamEvent::Delta { .. }));
    drop(stream);
    // The server notices the closed connection long before its 1.2 s of answer ends.
    tokio::time::sleep(Duration::from_millis(700)).await;
    assert_eq!(server.broken_writes.load(Ordering::SeqCst), 1);
}

pub async fn half_a_frame_then_silence_is_a_stall_after_the_idle_timeout<D: Dialect>() {
    let first = D::piece("Hel");
    let second = D::piece("lo");
    let parts = vec![first.into_bytes(), second.as_bytes()[..20].to_vec()];
    let server =
        TestServer::start(move |_, _| Reply::new(200, D::CONTENT_TYPE, parts.clone()).stalling())
            .await;
    let b = D::open(&server.url(), &|c| {
        c.idle_timeout = Duration::from_millis(300);
    });
    let started = Instant::now();
    let (deltas, result) =
        tokio::time::timeout(Duration::from_secs(10), drain(&b, ChatRequest::user("Hi")))
            .await
            .expect("a stalled upstream must not hang the request");
    assert_eq!(deltas, vec![(0, "Hel".into())]);
    let err = result.unwrap_err();
    assert!(
        matches!(err, BackendError::Stalled(d) if d == Duration::from_millis(300)),
        "{err:?}"
    );
    assert_eq!(err.to_string(), "the upstream sent nothing for 300ms");
    assert!(err.is_transient());
    assert!(started.elapsed() < Duration::from_secs(3));
    assert!(
        eventually(|| server.hung_up() == 1).await,
        "the connection is closed (the request cancelled upstream)"
    );
    assert_eq!(server.received().len(), 1, "no retry once streaming began");
}

pub async fn an_endless_frame_is_too_large_and_memory_stays_bounded<D: Dialect>() {
    let server = TestServer::start(|_, _| {
        Reply::new(
            200,
            D::CONTENT_TYPE,
            vec![
                D::endless_start().as_bytes().to_vec(),
                vec![b'x'; 16 * 1024],
            ],
        )
        .with_gap(Duration::from_millis(1))
        .endless()
    })
    .await;
    let limit = 256 * 1024;
    let b = D::open(&server.url(), &|c| c.max_line_bytes = limit);
    let (deltas, result) =
        tokio::time::timeout(Duration::from_secs(10), drain(&b, ChatRequest::user("Hi")))
            .await
            .expect("an endless frame must not hang the request");
    assert!(deltas.is_empty());
    let err = result.unwrap_err();
    assert!(
        matches!(&err, BackendError::TooLarge { what, limit: l } if what == D::FRAME && *l == limit),
        "{err:?}"
    );
    assert_eq!(
        err.to_string(),
        format!("the upstream sent {} longer than 262144 bytes", D::FRAME)
    );
    assert!(
        eventually(|| server.hung_up() == 1).await,
        "the connection is closed (the request cancelled upstream)"
    );
}

pub async fn a_reused_connection_closed_by_the_server_is_retried_once<D: Dialect>() {
    let body = answer::<D>(&["ok"]);
    let server = TestServer::start_keep_alive(move |_, _| {
        Reply::split(200, D::CONTENT_TYPE, body.as_bytes(), &[])
    })
    .await;
    // No backoff retries: only the keep-alive retry can save a request.
    let b = D::open(&server.url(), &|c| c.max_retries = 0);
    for i in 0..8 {
        let answer = tokio::time::timeout(Duration::from_secs(10), streamed(&b))
            .await
            .unwrap();
        assert_eq!(answer.unwrap().text(), "ok", "request {i}");
    }
    assert!(
        server.dropped_reused() >= 3,
        "the server closed reused connections {} times",
        server.dropped_reused()
    );
}
