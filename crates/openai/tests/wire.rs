//! The OpenAI-compatible backend against an in-process HTTP server replaying documented
//! chat-completions answers (server-sent events cut at awkward places) and its faults.

#![allow(clippy::unwrap_used, clippy::expect_used, clippy::panic)]

mod common;

use std::time::Duration;

use common::{Received, Reply, TestServer};
use optillm_core::{
    Backend, BackendError, ChatRequest, FinishReason, Message, Sampling, StreamEvent,
};
use optillm_http::RemoteConfig;
use optillm_http::test_suite::{self, Dialect, drain, eventually};
use optillm_openai::{OpenAiBackend, OpenAiConfig, OpenAiError, UrlError};
use serde_json::json;

const SSE: &str = "text/event-stream";

fn event(v: serde_json::Value) -> String {
    format!("data: {v}\n\n")
}

fn chunk(index: u32, content: Option<&str>, finish: Option<&str>) -> String {
    let delta = match content {
        Some(c) => json!({"content": c}),
        None => json!({}),
    };
    event(json!({
        "id": "chatcmpl-123", "object": "chat.completion.chunk", "created": 1795460080,
        "model": "m", "system_fingerprint": "fp",
        "choices": [{"index": index, "delta": delta, "logprobs": null, "finish_reason": finish}]
    }))
}

fn role_chunk() -> String {
    event(json!({
        "id": "chatcmpl-123", "object": "chat.completion.chunk", "created": 1795460080, "model": "m",
        "choices": [{"index": 0, "delta": {"role": "assistant", "content": ""}, "finish_reason": null}]
    }))
}

fn usage_chunk(prompt: u32, completion: u32) -> String {
    event(json!({
        "id": "chatcmpl-123", "object": "chat.completion.chunk", "created": 1795460080, "model": "m",
        "choices": [],
        "usage": {"prompt_tokens": prompt, "completion_tokens": completion, "total_tokens": prompt + completion}
    }))
}

const DONE: &str = "data: [DONE]\n\n";

fn backend(server: &TestServer) -> OpenAiBackend {
    OpenAi::open(&server.url(), &test_suite::quick)
}

/// A backend of `server` with `config` applied to its default configuration.
fn configured(
    server: &TestServer,
    config: impl FnOnce(OpenAiConfig) -> OpenAiConfig,
) -> OpenAiBackend {
    OpenAiBackend::new(config(
        OpenAiConfig::new(format!("{}/v1", server.url()), "m")
            .with_api_key_env("OPTILLM_TEST_UNSET_VARIABLE"),
    ))
    .unwrap()
}

/// A server that answers every request with one streamed choice `text`, finished by
/// `finish`, and a usage chunk.
async fn one_answer_server(text: &str, finish: &str) -> TestServer {
    let body = format!(
        "{}{}{}",
        chunk(0, Some(text), Some(finish)),
        usage_chunk(1, 1),
        DONE
    );
    TestServer::start(move |_, _| Reply::split(200, SSE, body.as_bytes(), &[])).await
}

/// The OpenAI wire for the transport tests every remote backend shares.
struct OpenAi;

impl Dialect for OpenAi {
    const CONTENT_TYPE: &'static str = SSE;
    const FRAME: &'static str = "an event";
    type Backend = OpenAiBackend;
    fn open(url: &str, tweak: &dyn Fn(&mut RemoteConfig)) -> OpenAiBackend {
        let mut config = OpenAiConfig::new(format!("{url}/v1"), "m")
            .with_api_key_env("OPTILLM_TEST_UNSET_VARIABLE");
        tweak(&mut config.remote);
        OpenAiBackend::new(config).unwrap()
    }
    fn piece(text: &str) -> String {
        chunk(0, Some(text), None)
    }
    fn end() -> String {
        format!("{}{DONE}", chunk(0, None, Some("stop")))
    }
    fn error(message: &str) -> String {
        json!({"error": {"message": message, "type": "invalid_request_error"}}).to_string()
    }
    fn frame(json: &str) -> String {
        format!("data: {json}\n\n")
    }
    fn endless_start() -> &'static str {
        "data: {\"id\":\""
    }
}

#[tokio::test]
async fn the_transport_behaviours_every_remote_backend_shares() {
    test_suite::run_all::<OpenAi>().await;
}

#[tokio::test]
async fn events_and_utf8_split_across_chunks_survive() {
    let body = format!(
        "{}{}{}{}{}{}",
        role_chunk(),
        chunk(0, Some("Caf"), None),
        chunk(0, Some("é 😀"), None),
        chunk(0, None, Some("stop")),
        usage_chunk(40, 8),
        DONE
    );
    let e = body.find('é').unwrap() + 1;
    let emoji = body.find('😀').unwrap() + 3;
    let blank = body.find("\n\n").unwrap() + 1; // between the two newlines ending an event
    let cuts = vec![3, blank, e, emoji, body.len() - 3];
    let bytes = body.into_bytes();
    let server = TestServer::start(move |_, _| Reply::split(200, SSE, &bytes, &cuts)).await;
    let b = backend(&server);
    let (deltas, result) = drain(&b, ChatRequest::user("Hi")).await;
    let c = result.unwrap();
    assert_eq!(deltas, vec![(0, "Caf".into()), (0, "é 😀".into())]);
    assert_eq!(c.text(), "Café 😀");
    assert_eq!(c.choices[0].finish_reason, FinishReason::EndOfText);
    assert_eq!(c.choices[0].completion_tokens, 8);
    assert_eq!(c.usage.prompt_tokens, 40);
    assert_eq!(c.usage.completion_tokens, 8);
    assert!(c.timings.time_to_first_token.is_some());

    let got = server.received();
    assert_eq!(got.len(), 1);
    assert_eq!(got[0].path, "/v1/chat/completions");
    let j = got[0].json();
    assert_eq!(j["model"], "m");
    assert_eq!(j["stream"], true);
    assert_eq!(j["stream_options"], json!({"include_usage": true}));
    assert_eq!(j["messages"], json!([{"role": "user", "content": "Hi"}]));
    for absent in ["n", "seed", "logprobs", "top_k", "temperature"] {
        assert!(j.get(absent).is_none(), "{absent} sent without being set");
    }
    assert_eq!(got[0].header("authorization"), None);
}

#[tokio::test]
async fn settings_api_key_and_extra_fields_are_sent() {
    let server = one_answer_server("ok", "length").await;
    // `cargo test` sets CARGO_PKG_NAME for the test process: a variable known to be set.
    let b = OpenAiBackend::new(
        OpenAiConfig::new(format!("{}/v1/", server.url()), "m")
            .with_api_key_env("CARGO_PKG_NAME")
            .with_temperature(0.1)
            .with_top_k(20)
            .with_max_tokens(64),
    )
    .unwrap();
    let request = ChatRequest::user("Hi").with_logprobs(3).with_sampling(
        Sampling::default()
            .with_temperature(0.8)
            .with_min_p(0.05)
            .with_repeat_penalty(1.1)
            .with_top_p(0.9)
            .with_seed(5)
            .with_stop("END"),
    );
    let c = b.complete(request.clone()).await.unwrap_err();
    // The non-streaming answer of this server is an event stream: not JSON.
    assert!(matches!(c, BackendError::Protocol(_)), "{c:?}");
    let (_, result) = drain(&b, request).await;
    assert_eq!(
        result.unwrap().choices[0].finish_reason,
        FinishReason::Length
    );

    let got = server.received();
    assert_eq!(got[1].path, "/v1/chat/completions");
    assert_eq!(
        got[1].header("authorization"),
        Some("Bearer optillm-openai")
    );
    let j = got[1].json();
    assert!((j["temperature"].as_f64().unwrap() - 0.8).abs() < 1e-6);
    assert_eq!(j["top_k"], 20);
    assert_eq!(j["max_tokens"], 64);
    assert!((j["min_p"].as_f64().unwrap() - 0.05).abs() < 1e-6);
    assert!((j["repeat_penalty"].as_f64().unwrap() - 1.1).abs() < 1e-6);
    assert!((j["repetition_penalty"].as_f64().unwrap() - 1.1).abs() < 1e-6);
    assert!((j["top_p"].as_f64().unwrap() - 0.9).abs() < 1e-6);
    assert_eq!(j["seed"], 5);
    assert_eq!(j["stop"], json!(["END"]));
    assert_eq!(j["logprobs"], true);
    assert_eq!(j["top_logprobs"], 3);
    let first = got[0].json();
    assert_eq!(first["stream"], false);
    assert!(first.get("stream_options").is_none());
}

#[tokio::test]
async fn native_n_streams_interleaved_choices() {
    let body = format!(
        "{}{}{}{}{}{}{}",
        chunk(0, Some("A"), None),
        chunk(1, Some("B"), None),
        chunk(1, Some("b"), Some("length")),
        chunk(0, Some("a"), None),
        chunk(0, None, Some("stop")),
        usage_chunk(10, 4),
        DONE
    );
    let server =
        TestServer::start(move |_, _| Reply::split(200, SSE, body.as_bytes(), &[50, 100])).await;
    let b = backend(&server);
    let (deltas, result) = drain(&b, ChatRequest::user("Hi").with_n(2)).await;
    let c = result.unwrap();
    assert_eq!(server.received().len(), 1);
    assert_eq!(server.received()[0].json()["n"], 2);
    assert_eq!(c.texts(), vec!["Aa".to_string(), "Bb".to_string()]);
    assert_eq!(c.choices[1].finish_reason, FinishReason::Length);
    assert_eq!(c.choices[0].finish_reason, FinishReason::EndOfText);
    assert_eq!(deltas.iter().filter(|(i, _)| *i == 1).count(), 2);
    assert_eq!(
        c.usage.prompt_tokens, 10,
        "one request: the prompt counted once"
    );
    assert_eq!(c.usage.completion_tokens, 4);
    // One usage for both choices: each counts the pieces it streamed.
    assert_eq!(c.choices[0].completion_tokens, 2);
    assert_eq!(c.choices[1].completion_tokens, 2);
    assert!(b.capabilities().native_n);
}

#[tokio::test]
async fn llama_server_usage_chunks_per_choice_add_up() {
    // llama-server with n = 2 ends each choice with its own usage chunk.
    let body = format!(
        "{}{}{}{}{}{}{}",
        chunk(1, Some("B"), None),
        chunk(1, None, Some("length")),
        usage_chunk(31, 3),
        chunk(0, Some("A"), None),
        chunk(0, None, Some("stop")),
        usage_chunk(31, 5),
        DONE
    );
    let server = TestServer::start(move |_, _| Reply::split(200, SSE, body.as_bytes(), &[])).await;
    let c = drain(&backend(&server), ChatRequest::user("Hi").with_n(2))
        .await
        .1
        .unwrap();
    assert_eq!(c.texts(), vec!["A".to_string(), "B".into()]);
    assert_eq!(c.choices[0].completion_tokens, 5);
    assert_eq!(c.choices[1].completion_tokens, 3);
    assert_eq!(c.usage.prompt_tokens, 31);
    assert_eq!(c.usage.completion_tokens, 8);
}

fn seed_of(r: &Received) -> u64 {
    r.json()["seed"].as_u64().unwrap()
}

/// A server like llama-server of old: `n != 1` is a 400; single requests answer with
/// their seed.
fn rejects_n(r: &Received, _: usize) -> Reply {
    if r.json().get("n").is_some() {
        return Reply::json(
            400,
            r#"{"error":{"code":400,"message":"Only one completion choice is allowed","type":"invalid_request_error"}}"#,
        );
    }
    let text = format!("seed={}", seed_of(r));
    if r.json()["stream"] == false {
        let whole = json!({"object": "chat.completion", "choices": [{"index": 0,
            "message": {"role": "assistant", "content": text}, "finish_reason": "stop"}],
            "usage": {"prompt_tokens": 10, "completion_tokens": 2}});
        return Reply::json(200, &whole.to_string());
    }
    let body = format!(
        "{}{}{}{}",
        chunk(0, Some(&text), None),
        chunk(0, None, Some("stop")),
        usage_chunk(10, 2),
        DONE
    );
    Reply::split(200, SSE, body.as_bytes(), &[9]).with_gap(Duration::from_millis(20))
}

#[tokio::test]
async fn a_rejected_n_falls_back_for_that_request_only() {
    let server = TestServer::start(rejects_n).await;
    let b = backend(&server);
    let request = test_suite::seeded(3, 42);
    let (deltas, c) = test_suite::drained(&b, request).await;
    assert_eq!(
        c.texts(),
        vec!["seed=42".to_string(), "seed=43".into(), "seed=44".into()]
    );
    assert!(deltas.contains(&(2, "seed=44".into())));
    assert_eq!(c.usage.prompt_tokens, 30);
    assert_eq!(c.usage.completion_tokens, 6);
    assert_eq!(server.received().len(), 4);
    assert!(
        server.max_in_flight() > 1,
        "the fallback requests ran one at a time"
    );
    assert!(
        b.capabilities().native_n,
        "one rejection of n = 3 does not turn native n off"
    );

    // A smaller n is tried again; this server rejects it too.
    let c = b.complete(ChatRequest::user("Hi").with_n(2)).await.unwrap();
    assert_eq!(c.choices.len(), 2);
    assert_ne!(c.choices[0].text, c.choices[1].text);
    let got = server.received();
    assert_eq!(got.len(), 7);
    assert_eq!(got[4].json()["n"], 2);
    assert!(got[5..].iter().all(|r| r.json().get("n").is_none()));
    let (s5, s6) = (seed_of(&got[5]), seed_of(&got[6]));
    assert_ne!(s5, s6, "samples without a seed still get distinct seeds");

    // n = 2 rejected: the server takes one sample per request, and it is not asked again.
    assert!(!b.capabilities().native_n);
    let c = b.complete(test_suite::seeded(2, 9)).await.unwrap();
    assert_eq!(c.texts(), ["seed=9", "seed=10"]);
    let got = server.received();
    assert_eq!(got.len(), 9);
    assert!(got[7..].iter().all(|r| r.json().get("n").is_none()));
}

/// A server like llama-server with 4 slots: `n` above 4 is a 400; up to 4 it answers
/// every choice in one (whole) response, each text naming its request's `n` and seed.
fn caps_n_at_4(r: &Received, _: usize) -> Reply {
    let body = r.json();
    let n = body["n"].as_u64().unwrap_or(1);
    if n > 4 {
        return Reply::json(
            400,
            &json!({"error": {"code": 400, "type": "invalid_request_error",
                "message": format!("n_cmpl ({n}) exceeds the number of slots (4)")}})
            .to_string(),
        );
    }
    let choices: Vec<_> = (0..n)
        .map(|i| {
            json!({"index": i, "finish_reason": "stop", "message": {"role": "assistant",
                "content": format!("n={n} seed={}", seed_of(r) + i)}})
        })
        .collect();
    let whole = json!({"object": "chat.completion", "choices": choices,
        "usage": {"prompt_tokens": 10, "completion_tokens": 2 * n}});
    Reply::json(200, &whole.to_string())
}

#[tokio::test]
async fn an_n_above_the_servers_cap_falls_back_and_smaller_ones_stay_native() {
    let server = TestServer::start(caps_n_at_4).await;
    let b = backend(&server);
    let n_of = |r: &Received| r.json().get("n").and_then(|n| n.as_u64());

    // n = 6 is rejected: this request's six samples go as single requests.
    let c = b.complete(test_suite::seeded(6, 100)).await.unwrap();
    let want: Vec<String> = (100..106).map(|s| format!("n=1 seed={s}")).collect();
    assert_eq!(c.texts(), want);
    let got = server.received();
    assert_eq!(got.len(), 7, "one rejected request, then six single ones");
    assert_eq!(c.timings.requests, 7, "the completion counts them all");
    assert_eq!(n_of(&got[0]), Some(6));
    assert!(got[1..].iter().all(|r| n_of(r).is_none()));
    assert!(b.capabilities().native_n);

    // The next request of n = 3 is still sent natively: one request, three choices.
    let c = b.complete(test_suite::seeded(3, 7)).await.unwrap();
    assert_eq!(c.texts(), ["n=3 seed=7", "n=3 seed=8", "n=3 seed=9"]);
    assert_eq!(c.timings.requests, 1);
    let got = server.received();
    assert_eq!(got.len(), 8);
    assert_eq!(n_of(&got[7]), Some(3));

    // n = 6 again, and n = 8: straight to single requests, no second rejection.
    b.complete(test_suite::seeded(6, 1)).await.unwrap();
    b.complete(test_suite::seeded(8, 1)).await.unwrap();
    let got = server.received();
    assert_eq!(got.len(), 8 + 6 + 8);
    assert!(got[8..].iter().all(|r| n_of(r).is_none()));
}

#[tokio::test]
async fn fewer_choices_than_asked_are_completed_by_single_requests() {
    // A server that ignores n: one choice whatever was asked.
    let server = TestServer::start(|r: &Received, _| {
        let text = match r.json()["seed"].as_u64() {
            Some(s) => format!("seed={s}"),
            None => "no seed".into(),
        };
        let body = format!(
            "{}{}{}",
            chunk(0, Some(&text), Some("stop")),
            usage_chunk(7, 1),
            DONE
        );
        Reply::split(200, SSE, body.as_bytes(), &[])
    })
    .await;
    let b = backend(&server);
    let request = test_suite::seeded(3, 100);
    let c = drain(&b, request).await.1.unwrap();
    assert_eq!(
        c.texts(),
        vec!["seed=100".to_string(), "seed=101".into(), "seed=102".into()]
    );
    let got = server.received();
    assert_eq!(got.len(), 3);
    assert_eq!(got[0].json()["n"], 3);
    // For that request only: the next one asks for n again.
    assert!(b.capabilities().native_n);
    drain(&b, test_suite::seeded(2, 5)).await.1.unwrap();
    let got = server.received();
    assert_eq!(got.len(), 5);
    assert_eq!(got[3].json()["n"], 2);
}

#[tokio::test]
async fn a_401_keeps_status_and_message() {
    let server = TestServer::start(|_, _| {
        Reply::json(401, r#"{"error":{"message":"Incorrect API key provided: sk-abc.","type":"invalid_request_error","param":null,"code":"invalid_api_key"}}"#)
    })
    .await;
    let err = backend(&server)
        .complete(ChatRequest::user("Hi"))
        .await
        .unwrap_err();
    assert!(
        matches!(&err, BackendError::Http { status: 401, message } if message == "Incorrect API key provided: sk-abc."),
        "{err:?}"
    );
    assert_eq!(server.received().len(), 1, "a 4xx is not retried");
}

#[tokio::test]
async fn a_404_for_the_model_is_model_not_found() {
    let server = TestServer::start(|_, _| {
        Reply::json(404, r#"{"error":{"message":"The model `gpt-9` does not exist or you do not have access to it.","type":"invalid_request_error","param":null,"code":"model_not_found"}}"#)
    })
    .await;
    let err = backend(&server)
        .complete(ChatRequest::user("Hi"))
        .await
        .unwrap_err();
    assert!(
        matches!(&err, BackendError::ModelNotFound(m) if m.contains("gpt-9")),
        "{err:?}"
    );
}

#[tokio::test]
async fn logprobs_are_parsed_streamed_and_not() {
    let lp = |tok: &str, v: f64| {
        json!({"content": [{"token": tok, "logprob": v, "bytes": [72], "top_logprobs": [
            {"token": tok, "logprob": v, "bytes": [72]}, {"token": "Hi", "logprob": -2.0, "bytes": [72]}]}]})
    };
    let ev = |tok: &str, v: f64| {
        event(json!({"object": "chat.completion.chunk", "choices": [
            {"index": 0, "delta": {"content": tok}, "logprobs": lp(tok, v), "finish_reason": null}]}))
    };
    let stream_body = format!(
        "{}{}{}{}",
        ev("Hello", -0.5),
        ev(",", -1.25),
        chunk(0, None, Some("stop")),
        DONE
    );
    let whole = json!({
        "id": "chatcmpl-1", "object": "chat.completion", "created": 1795460080, "model": "m",
        "choices": [{"index": 0, "message": {"role": "assistant", "content": "Hello,"},
                     "finish_reason": "length",
                     "logprobs": {"content": [lp("Hello", -0.5)["content"][0], lp(",", -1.25)["content"][0]]}}],
        "usage": {"prompt_tokens": 40, "completion_tokens": 2, "total_tokens": 42},
        "timings": {"prompt_n": 40, "prompt_ms": 102.5, "predicted_n": 2, "predicted_ms": 70.0}
    })
    .to_string();
    let server = TestServer::start(move |r, _| {
        if r.json()["stream"] == true {
            Reply::split(200, SSE, stream_body.as_bytes(), &[30])
        } else {
            Reply::split(200, "application/json", whole.as_bytes(), &[20])
        }
    })
    .await;
    let b = backend(&server);
    let mut stream = b
        .stream(ChatRequest::user("Hi").with_logprobs(2))
        .await
        .unwrap();
    let mut per_delta = Vec::new();
    let streamed = loop {
        match stream.next_event().await.unwrap().unwrap() {
            StreamEvent::Delta { logprob, .. } => per_delta.push(logprob.unwrap()),
            StreamEvent::Done(c) => break c,
        }
    };
    let whole = b
        .complete(ChatRequest::user("Hi").with_logprobs(2))
        .await
        .unwrap();
    for c in [&streamed, &whole] {
        assert_eq!(c.text(), "Hello,");
        let lps = c.choices[0].logprobs.as_ref().unwrap();
        assert_eq!(lps.len(), 2);
        assert_eq!(lps[0].token, "Hello");
        assert_eq!(lps[1].logprob, -1.25);
        assert_eq!(lps[0].top[1].token, "Hi");
        assert_eq!(lps[0].top[1].logprob, -2.0);
        assert_eq!(c.choices[0].completion_tokens, 2);
    }
    assert_eq!(&per_delta, streamed.choices[0].logprobs.as_ref().unwrap());
    assert_eq!(whole.choices[0].finish_reason, FinishReason::Length);
    assert_eq!(whole.usage.prompt_tokens, 40);
    assert_eq!(whole.timings.prompt_eval, Duration::from_micros(102_500));
    assert_eq!(whole.timings.decode, Duration::from_millis(70));
}

#[tokio::test]
async fn finished_without_done_is_accepted_and_a_cut_whole_answer_is_not() {
    // (Garbage and truncation in general: optillm_http::test_suite.)
    // No [DONE], but finished: accepted.
    let finished = format!(
        "{}{}",
        chunk(0, Some("a"), None),
        chunk(0, None, Some("stop"))
    );
    let server =
        TestServer::start(move |_, _| Reply::split(200, SSE, finished.as_bytes(), &[])).await;
    let c = backend(&server)
        .stream(ChatRequest::user("Hi"))
        .await
        .unwrap()
        .collect()
        .await
        .unwrap();
    assert_eq!(c.text(), "a");

    // A non-streaming body cut short.
    let server = TestServer::start(|_, _| {
        Reply::json(200, r#"{"choices":[{"index":0,"message":{"content":"x"#)
    })
    .await;
    let err = backend(&server)
        .complete(ChatRequest::user("Hi"))
        .await
        .unwrap_err();
    assert!(matches!(err, BackendError::Protocol(_)), "{err:?}");
}

#[tokio::test]
async fn list_models_reads_v1_models() {
    let server = TestServer::start(|r, _| {
        assert_eq!(r.path, "/v1/models");
        Reply::json(200, r#"{"object":"list","data":[{"id":"smollm2","object":"model","created":0,"owned_by":"llamacpp"},{"id":"other","object":"model"}]}"#)
    })
    .await;
    let models = backend(&server).list_models().await.unwrap();
    assert_eq!(models.len(), 2);
    assert_eq!(models[0].id, "smollm2");
    assert_eq!(models[0].owned_by.as_deref(), Some("llamacpp"));
    assert_eq!(models[1].created, None);

    // The server's models are listed with no model name (none is known yet).
    let config = OpenAiConfig::new(format!("{}/v1", server.url()), "");
    assert!(matches!(
        OpenAiBackend::new(config.clone()),
        Err(OpenAiError::EmptyModel)
    ));
    let listed = OpenAiBackend::list_server_models(&config).await.unwrap();
    let ids: Vec<&str> = listed.iter().map(|m| m.id.as_str()).collect();
    assert_eq!(ids, ["smollm2", "other"]);
}

#[test]
fn bad_configurations_are_typed_errors() {
    // The shared checks are optillm_http's (RemoteConfig::validate, base_url); the key
    // is this backend's.
    assert!(matches!(
        OpenAiBackend::new(OpenAiConfig::new("::", "m")),
        Err(OpenAiError::Url(UrlError::Invalid { .. }))
    ));
    assert!(matches!(
        OpenAiBackend::new(OpenAiConfig::new("http://h/v1", "m").with_api_key("sk\nx")),
        Err(OpenAiError::InvalidApiKey { .. })
    ));
}

#[tokio::test]
async fn a_whole_answer_that_stalls_midway_is_a_stall_too() {
    let server = TestServer::start(|_, _| {
        Reply::new(
            200,
            "application/json",
            vec![b"{\"object\":\"chat.".to_vec()],
        )
        .stalling()
    })
    .await;
    let b = configured(&server, |c| c.with_idle_timeout(Duration::from_millis(300)));
    let err = tokio::time::timeout(Duration::from_secs(10), b.complete(ChatRequest::user("Hi")))
        .await
        .expect("a stalled upstream must not hang the request")
        .unwrap_err();
    assert!(matches!(err, BackendError::Stalled(_)), "{err:?}");
    assert!(eventually(|| server.hung_up() == 1).await);
}

#[tokio::test]
async fn many_data_lines_without_a_blank_line_are_too_long_too() {
    let server = TestServer::start(|_, _| {
        Reply::new(200, SSE, vec![b"data: x\n".repeat(1024)])
            .with_gap(Duration::from_millis(1))
            .endless()
    })
    .await;
    let b = configured(&server, |c| c.with_max_line_bytes(64 * 1024));
    let (_, result) =
        tokio::time::timeout(Duration::from_secs(10), drain(&b, ChatRequest::user("Hi")))
            .await
            .unwrap();
    assert!(
        matches!(&result, Err(BackendError::TooLarge { what, .. }) if what == "an event"),
        "{result:?}"
    );
}

#[tokio::test]
async fn a_whole_answer_over_the_body_limit_is_too_large() {
    let text = "y".repeat(8192);
    let whole = json!({"object": "chat.completion", "choices": [{"index": 0,
        "message": {"role": "assistant", "content": text}, "finish_reason": "stop"}]})
    .to_string();
    let server = TestServer::start(move |_, _| {
        Reply::split(200, "application/json", whole.as_bytes(), &[100, 5000])
    })
    .await;
    let b = configured(&server, |c| c.with_max_body_bytes(4096));
    let err = b.complete(ChatRequest::user("Hi")).await.unwrap_err();
    assert!(
        matches!(&err, BackendError::TooLarge { what, limit: 4096 } if what == "an answer"),
        "{err:?}"
    );
    assert_eq!(
        err.to_string(),
        "the upstream sent an answer longer than 4096 bytes"
    );
    let b = configured(&server, |c| c.with_max_body_bytes(16 * 1024));
    assert_eq!(
        b.complete(ChatRequest::user("Hi"))
            .await
            .unwrap()
            .text()
            .len(),
        8192
    );
}

#[tokio::test]
async fn a_reused_connection_closed_by_the_server_is_retried_once_on_a_fresh_one() {
    let server = TestServer::start_keep_alive(|r, _| {
        if r.path == "/v1/models" {
            return Reply::json(
                200,
                r#"{"object":"list","data":[{"id":"m","object":"model"}]}"#,
            );
        }
        if r.json()["stream"] == false {
            let whole = json!({"object": "chat.completion", "choices": [{"index": 0,
                "message": {"role": "assistant", "content": "ok"}, "finish_reason": "stop"}],
                "usage": {"prompt_tokens": 3, "completion_tokens": 1}});
            return Reply::json(200, &whole.to_string());
        }
        let body = format!(
            "{}{}{}",
            chunk(0, Some("ok"), None),
            chunk(0, None, Some("stop")),
            DONE
        );
        Reply::split(200, SSE, body.as_bytes(), &[])
    })
    .await;
    // No backoff retries: only the keep-alive retry can save a request.
    let b = configured(&server, |c| c.with_max_retries(0));
    for i in 0..4 {
        let whole =
            tokio::time::timeout(Duration::from_secs(10), b.complete(ChatRequest::user("Hi")))
                .await
                .unwrap();
        assert_eq!(whole.unwrap().text(), "ok", "request {i}");
        let (_, streamed) =
            tokio::time::timeout(Duration::from_secs(10), drain(&b, ChatRequest::user("Hi")))
                .await
                .unwrap();
        assert_eq!(streamed.unwrap().text(), "ok", "streamed request {i}");
        let models = tokio::time::timeout(Duration::from_secs(10), b.list_models())
            .await
            .unwrap();
        assert_eq!(models.unwrap().len(), 1, "models {i}");
    }
    assert!(
        server.dropped_reused() >= 3,
        "the server closed reused connections {} times",
        server.dropped_reused()
    );
}

#[tokio::test]
async fn response_formats_are_sent_and_grammars_only_to_llama_server() {
    use optillm_core::ResponseFormat;
    let server = one_answer_server("{}", "stop").await;
    let b = backend(&server);
    assert!(!b.capabilities().formats.grammar);
    let schema = json!({"type": "object", "properties": {"a": {"type": "integer"}}});
    let requests = [
        ChatRequest::user("Hi").with_format(ResponseFormat::json_schema(schema.clone())),
        ChatRequest::user("Hi").with_format(ResponseFormat::JsonObject),
        ChatRequest::user("Hi"),
    ];
    for r in requests {
        let (_, result) = drain(&b, r).await;
        result.unwrap();
    }
    let grammar = ResponseFormat::grammar("root ::= \"{}\"");
    let e = b
        .stream(ChatRequest::user("Hi").with_format(grammar.clone()))
        .await
        .unwrap_err();
    assert!(matches!(e, BackendError::Unsupported { .. }), "{e}");
    assert!(e.to_string().contains("with_grammar"), "{e}");
    let got = server.received();
    assert_eq!(got.len(), 3, "nothing sent for the refused grammar");
    assert_eq!(
        got[0].json()["response_format"],
        json!({"type": "json_schema", "json_schema": {"name": "response", "schema": schema}})
    );
    assert_eq!(
        got[1].json()["response_format"],
        json!({"type": "json_object"})
    );
    assert!(got[2].json().get("response_format").is_none());
    assert!(got[0].json().get("grammar").is_none());

    // A llama-server: the grammar goes in `grammar`, no response_format.
    let llama_server = configured(&server, |c| c.with_grammar(true));
    assert!(llama_server.capabilities().formats.grammar);
    let (_, result) = drain(&llama_server, ChatRequest::user("Hi").with_format(grammar)).await;
    result.unwrap();
    let sent = server.received()[3].json();
    assert_eq!(sent["grammar"], "root ::= \"{}\"");
    assert!(sent.get("response_format").is_none());
}

/// A conversation that ends with an assistant message asks vLLM to continue it when the
/// configuration says so, and sends nothing new otherwise (OpenAI refuses unknown fields).
#[tokio::test]
async fn a_final_assistant_message_is_continued_on_vllm_when_configured() {
    let server = one_answer_server(" 42.", "stop").await;
    let begun = ChatRequest::new(vec![
        Message::user("What is 6 * 7?"),
        Message::assistant("The answer is"),
    ]);
    let vllm = configured(&server, |c| c.with_continue_final_message(true));
    for (b, r) in [
        (&backend(&server), begun.clone()),
        (&vllm, begun),
        (&vllm, ChatRequest::user("Hi")),
    ] {
        let (_, result) = drain(b, r).await;
        result.unwrap();
    }
    let got: Vec<serde_json::Value> = server.received().iter().map(|r| r.json()).collect();
    assert!(got[0].get("continue_final_message").is_none());
    assert!(got[0].get("add_generation_prompt").is_none());
    assert_eq!(got[1]["continue_final_message"], json!(true));
    assert_eq!(got[1]["add_generation_prompt"], json!(false));
    assert!(got[2].get("continue_final_message").is_none());
}

/// A raw request is a text completion: `POST /completions` with the text as `prompt`,
/// logprobs asked for as a count; `text` choices and the parallel-list logprobs of that
/// endpoint are read, streamed and not.
#[tokio::test]
async fn a_raw_request_is_a_text_completion() {
    let text_event = |index: u32, text: &str, finish: Option<&str>, lp: Option<(f64, f64)>| {
        let logprobs = lp.map(|(own, alt)| {
            json!({"tokens": [text], "token_logprobs": [own], "top_logprobs": [{text: own, " B": alt}],
                   "text_offset": [0]})
        });
        event(
            json!({"id": "cmpl-1", "object": "text_completion", "created": 1795460080, "model": "m",
            "choices": [{"index": index, "text": text, "logprobs": logprobs, "finish_reason": finish}]}),
        )
    };
    let stream_body = format!(
        "{}{}{}{}{}",
        text_event(0, " Paris", None, Some((-0.25, -3.0))),
        text_event(0, ".", None, Some((-0.5, -4.0))),
        text_event(0, "", Some("length"), None),
        usage_chunk(7, 2),
        DONE
    );
    let whole = json!({
        "id": "cmpl-2", "object": "text_completion", "created": 1795460080, "model": "m",
        "choices": [{"index": 0, "text": " Paris.", "finish_reason": "length",
                     "logprobs": {"tokens": [" Paris", "."], "token_logprobs": [-0.25, -0.5],
                                  "top_logprobs": [{" Paris": -0.25, " B": -3.0}, {".": -0.5, " B": -4.0}],
                                  "text_offset": [0, 6]}}],
        "usage": {"prompt_tokens": 7, "completion_tokens": 2, "total_tokens": 9}
    })
    .to_string();
    let server = TestServer::start(move |r, _| {
        if r.json()["stream"] == true {
            Reply::split(200, SSE, stream_body.as_bytes(), &[25])
        } else {
            Reply::split(200, "application/json", whole.as_bytes(), &[20])
        }
    })
    .await;
    let b = backend(&server);
    let ask = || ChatRequest::completion("The capital of France is").with_logprobs(1);
    let (deltas, streamed) = drain(&b, ask()).await;
    let streamed = streamed.unwrap();
    assert_eq!(deltas, vec![(0, " Paris".into()), (0, ".".into())]);
    let whole = b.complete(ask()).await.unwrap();
    for c in [&streamed, &whole] {
        assert_eq!(c.text(), " Paris.");
        assert_eq!(c.choices[0].finish_reason, FinishReason::Length);
        assert_eq!(c.usage.prompt_tokens, 7);
        let lps = c.choices[0].logprobs.as_ref().unwrap();
        assert_eq!(lps.len(), 2);
        assert_eq!(lps[1].token, ".");
        assert_eq!(lps[1].logprob, -0.5);
        // Alternatives come most likely first, whatever the order of the JSON object.
        assert_eq!(lps[0].top[0].token, " Paris");
        assert_eq!(lps[0].top[1].token, " B");
        assert_eq!(lps[0].top[1].logprob, -3.0);
    }
    let got = server.received();
    assert_eq!(got.len(), 2);
    for r in &got {
        assert_eq!(r.path, "/v1/completions");
        let j = r.json();
        assert_eq!(j["prompt"], "The capital of France is");
        assert_eq!(j["logprobs"], 1);
        assert!(j.get("messages").is_none());
        assert!(j.get("top_logprobs").is_none());
    }

    // A chat request still goes to chat completions.
    let chat = ChatRequest::user("Hi").with_logprobs(1);
    let _ = b.complete(chat).await;
    let last = server.received().pop().unwrap();
    assert_eq!(last.path, "/v1/chat/completions");
    assert_eq!(last.json()["logprobs"], true);
    assert_eq!(last.json()["top_logprobs"], 1);
}
