//! The Ollama backend against an in-process HTTP server replaying Ollama's documented
//! answers byte for byte, cut into chunks at awkward places, and against its faults.

#![allow(clippy::unwrap_used, clippy::expect_used, clippy::panic)]

mod common;

use std::time::Duration;

use common::{Received, Reply, TestServer};
use optillm_core::{Backend, BackendError, ChatRequest, FinishReason, Sampling, StreamEvent};
use optillm_http::RemoteConfig;
use optillm_http::test_suite::{self, Dialect, drain};
use optillm_ollama::{OllamaBackend, OllamaConfig, OllamaError};

const NDJSON: &str = "application/x-ndjson";

fn line(content: &str) -> String {
    format!(
        "{{\"model\":\"smollm2\",\"created_at\":\"2023-08-04T08:52:19.385406455-07:00\",\"message\":{{\"role\":\"assistant\",\"content\":{}}},\"done\":false}}\n",
        serde_json::to_string(content).unwrap()
    )
}

const FINAL: &str = "{\"model\":\"smollm2\",\"created_at\":\"2023-08-04T19:22:45.499127Z\",\"message\":{\"role\":\"assistant\",\"content\":\"\"},\"done\":true,\"done_reason\":\"stop\",\"total_duration\":10706818083,\"load_duration\":6338219291,\"prompt_eval_count\":26,\"prompt_eval_duration\":130079000,\"eval_count\":259,\"eval_duration\":4232710000}\n";

fn backend(server: &TestServer) -> OllamaBackend {
    Ollama::open(&server.url(), &test_suite::quick)
}

/// Ollama's wire for the transport tests every remote backend shares.
struct Ollama;

impl Dialect for Ollama {
    const CONTENT_TYPE: &'static str = NDJSON;
    const FRAME: &'static str = "a line";
    type Backend = OllamaBackend;
    fn open(url: &str, tweak: &dyn Fn(&mut RemoteConfig)) -> OllamaBackend {
        let mut config = OllamaConfig::new(url, "smollm2");
        tweak(&mut config.remote);
        OllamaBackend::new(config).unwrap()
    }
    fn piece(text: &str) -> String {
        line(text)
    }
    fn end() -> String {
        FINAL.to_string()
    }
    fn error(message: &str) -> String {
        serde_json::json!({ "error": message }).to_string()
    }
    fn frame(json: &str) -> String {
        format!("{json}\n")
    }
    fn endless_start() -> &'static str {
        "{\"model\":\""
    }
}

#[tokio::test]
async fn the_transport_behaviours_every_remote_backend_shares() {
    test_suite::run_all::<Ollama>().await;
}

#[tokio::test]
async fn lines_and_utf8_characters_split_across_chunks_survive() {
    let body = format!("{}{}{}{}", line("Caf"), line("é "), line("😀!"), FINAL);
    let bytes = body.as_bytes().to_vec();
    // Cut inside the first line, inside "é" (2 bytes), inside the emoji (4 bytes), and
    // inside the final line.
    let e = body.find('é').unwrap() + 1;
    let emoji = body.find('😀').unwrap() + 2;
    let cuts = vec![10, e, emoji, emoji + 1, body.len() - 20];
    let server = TestServer::start(move |_, _| Reply::split(200, NDJSON, &bytes, &cuts)).await;
    let b = backend(&server);
    let (deltas, result) = drain(&b, ChatRequest::user("Hi")).await;
    let c = result.unwrap();
    assert_eq!(
        deltas,
        vec![(0, "Caf".into()), (0, "é ".into()), (0, "😀!".into())]
    );
    assert_eq!(c.text(), "Café 😀!");
    assert_eq!(c.choices[0].finish_reason, FinishReason::EndOfText);
    assert_eq!(c.choices[0].completion_tokens, 259);
    assert_eq!(c.usage.prompt_tokens, 26);
    assert_eq!(c.usage.completion_tokens, 259);
    assert_eq!(c.timings.prompt_eval, Duration::from_nanos(130_079_000));
    assert_eq!(c.timings.decode, Duration::from_nanos(4_232_710_000));
    assert!(c.timings.time_to_first_token.is_some());
    assert!(c.timings.total >= c.timings.time_to_first_token.unwrap());
}

#[tokio::test]
async fn sampling_settings_go_inside_options_and_the_request_overrides_the_config() {
    let body = format!("{}{}", line("ok"), FINAL);
    let server =
        TestServer::start(move |_, _| Reply::split(200, NDJSON, body.as_bytes(), &[])).await;
    let b = OllamaBackend::new(
        OllamaConfig::new(server.url(), "smollm2")
            .with_temperature(0.2)
            .with_top_k(30)
            .with_num_predict(100)
            .with_num_ctx(2048)
            .with_keep_alive("10m"),
    )
    .unwrap();
    let request = ChatRequest::user("Hi").with_sampling(
        Sampling::default()
            .with_temperature(0.9)
            .with_max_tokens(5)
            .with_min_p(0.05)
            .with_repeat_penalty(1.1)
            .with_top_p(0.5)
            .with_seed(7)
            .with_stop("\n\n"),
    );
    b.complete(request).await.unwrap();
    let got = server.received();
    assert_eq!(got.len(), 1);
    assert_eq!(got[0].method, "POST");
    assert_eq!(got[0].path, "/api/chat");
    let j = got[0].json();
    assert_eq!(j["model"], "smollm2");
    assert_eq!(j["stream"], true);
    assert_eq!(j["keep_alive"], "10m");
    assert_eq!(
        j["messages"],
        serde_json::json!([{"role":"user","content":"Hi"}])
    );
    let o = &j["options"];
    assert!((o["temperature"].as_f64().unwrap() - 0.9).abs() < 1e-6);
    assert_eq!(o["num_predict"], 5);
    assert_eq!(o["top_k"], 30);
    assert_eq!(o["num_ctx"], 2048);
    assert_eq!(o["seed"], 7);
    assert_eq!(o["stop"], serde_json::json!(["\n\n"]));
    assert!((o["min_p"].as_f64().unwrap() - 0.05).abs() < 1e-6);
    assert!((o["repeat_penalty"].as_f64().unwrap() - 1.1).abs() < 1e-6);
    assert!((o["top_p"].as_f64().unwrap() - 0.5).abs() < 1e-6);
    for top_level in [
        "temperature",
        "num_predict",
        "top_k",
        "seed",
        "stop",
        "logprobs",
    ] {
        assert!(
            j.get(top_level).is_none(),
            "{top_level} leaked to the top level"
        );
    }
    assert_eq!(b.capabilities().context_length, Some(2048));
}

fn seed_of(r: &Received) -> u64 {
    r.json()["options"]["seed"].as_u64().unwrap()
}

/// Answers with the seed it was given, so every choice can be traced to its request.
fn echo_seed(r: &Received, _: usize) -> Reply {
    let seed = seed_of(r);
    let body = format!(
        "{}{}",
        line(&format!("seed={seed}")),
        FINAL.replace("\"eval_count\":259", "\"eval_count\":3")
    );
    Reply::split(200, NDJSON, body.as_bytes(), &[7]).with_gap(Duration::from_millis(30))
}

#[tokio::test]
async fn n_samples_are_concurrent_requests_with_distinct_seeds() {
    let server = TestServer::start(echo_seed).await;
    let b = backend(&server);
    let request = test_suite::seeded(3, 42);
    let (deltas, c) = test_suite::drained(&b, request).await;
    let mut seeds: Vec<u64> = server.received().iter().map(seed_of).collect();
    seeds.sort();
    assert_eq!(seeds, vec![42, 43, 44]);
    assert_eq!(c.choices.len(), 3);
    for (i, choice) in c.choices.iter().enumerate() {
        assert_eq!(choice.index as usize, i);
        assert_eq!(choice.text, format!("seed={}", 42 + i));
        assert!(deltas.contains(&(i as u32, format!("seed={}", 42 + i))));
    }
    // The prompt is evaluated once per request.
    assert_eq!(c.usage.prompt_tokens, 3 * 26);
    assert_eq!(c.usage.completion_tokens, 9);
    assert_eq!(c.timings.requests, 3, "three HTTP requests");
    assert!(
        server.max_in_flight() > 1,
        "the samples did not run concurrently"
    );
}

#[tokio::test]
async fn n_samples_without_a_seed_still_get_distinct_seeds() {
    let server = TestServer::start(echo_seed).await;
    let b = backend(&server);
    let c = b.complete(ChatRequest::user("Hi").with_n(3)).await.unwrap();
    let mut seeds: Vec<u64> = server.received().iter().map(seed_of).collect();
    seeds.sort();
    seeds.dedup();
    assert_eq!(seeds.len(), 3, "seeds not distinct: {seeds:?}");
    assert_eq!(c.choices.len(), 3);
}

#[tokio::test]
async fn a_single_sample_without_a_seed_sends_no_seed() {
    let body = format!("{}{}", line("ok"), FINAL);
    let server =
        TestServer::start(move |_, _| Reply::split(200, NDJSON, body.as_bytes(), &[])).await;
    backend(&server)
        .complete(ChatRequest::user("Hi"))
        .await
        .unwrap();
    assert!(server.received()[0].json()["options"].get("seed").is_none());
}

#[tokio::test]
async fn the_concurrency_limit_holds() {
    let server = TestServer::start(echo_seed).await;
    let b = OllamaBackend::new(OllamaConfig::new(server.url(), "smollm2").with_max_concurrency(1))
        .unwrap();
    let c = b.complete(ChatRequest::user("Hi").with_n(3)).await.unwrap();
    assert_eq!(c.choices.len(), 3);
    assert_eq!(server.received().len(), 3);
    assert_eq!(server.max_in_flight(), 1);
}

#[tokio::test]
async fn a_final_line_without_newline_still_counts() {
    let body = format!("{}{}", line("x"), FINAL.trim_end());
    let server =
        TestServer::start(move |_, _| Reply::split(200, NDJSON, body.as_bytes(), &[])).await;
    let c = backend(&server)
        .complete(ChatRequest::user("Hi"))
        .await
        .unwrap();
    assert_eq!(c.text(), "x");
}

#[tokio::test]
async fn done_reason_length_and_missing_metrics() {
    let body = format!(
        "{}{{\"model\":\"smollm2\",\"created_at\":\"x\",\"message\":{{\"role\":\"assistant\",\"content\":\"\"}},\"done\":true,\"done_reason\":\"length\"}}\n",
        line("cut")
    );
    let server =
        TestServer::start(move |_, _| Reply::split(200, NDJSON, body.as_bytes(), &[])).await;
    let c = backend(&server)
        .complete(ChatRequest::user("Hi"))
        .await
        .unwrap();
    assert_eq!(c.choices[0].finish_reason, FinishReason::Length);
    assert_eq!(c.usage.prompt_tokens, 0);
    assert_eq!(c.timings.decode, Duration::ZERO);
}

#[tokio::test]
async fn logprobs_are_asked_for_and_parsed() {
    let chunk = |tok: &str, lp: f64| {
        format!(
            "{{\"model\":\"smollm2\",\"created_at\":\"x\",\"message\":{{\"role\":\"assistant\",\"content\":{t}}},\"done\":false,\"logprobs\":[{{\"token\":{t},\"logprob\":{lp},\"bytes\":[72],\"top_logprobs\":[{{\"token\":{t},\"logprob\":{lp},\"bytes\":[72]}},{{\"token\":\"Hey\",\"logprob\":-2.5,\"bytes\":[72]}}]}}]}}\n",
            t = serde_json::to_string(tok).unwrap()
        )
    };
    let body = format!(
        "{}{}{}",
        chunk("Hello", -0.25),
        chunk("!", -1.5),
        FINAL.replace("\"eval_count\":259,", "")
    );
    let server =
        TestServer::start(move |_, _| Reply::split(200, NDJSON, body.as_bytes(), &[100])).await;
    let b = backend(&server);
    let mut stream = b
        .stream(ChatRequest::user("Hi").with_logprobs(2))
        .await
        .unwrap();
    let mut delta_logprobs = Vec::new();
    let completion = loop {
        match stream.next_event().await.unwrap().unwrap() {
            StreamEvent::Delta { logprob, .. } => delta_logprobs.push(logprob.unwrap()),
            StreamEvent::Done(c) => break c,
        }
    };
    let j = server.received()[0].json();
    assert_eq!(j["logprobs"], true);
    assert_eq!(j["top_logprobs"], 2);
    let lps = completion.choices[0].logprobs.as_ref().unwrap();
    assert_eq!(lps, &delta_logprobs);
    assert_eq!(lps.len(), 2);
    assert_eq!(lps[0].token, "Hello");
    assert_eq!(lps[0].logprob, -0.25);
    assert_eq!(lps[0].top.len(), 2);
    assert_eq!(lps[0].top[1].token, "Hey");
    assert_eq!(lps[1].logprob, -1.5);
    // Without eval_count the tokens are counted from the logprobs.
    assert_eq!(completion.choices[0].completion_tokens, 2);
}

#[tokio::test]
async fn list_models_and_context_length() {
    let server = TestServer::start(|r, _| match r.path.as_str() {
        "/api/tags" => Reply::json(200, r#"{"models":[{"name":"llama3.2:latest","model":"llama3.2:latest","modified_at":"2024-10-01T10:00:00Z","size":2019393189,"digest":"a80c4f17acd5","details":{"format":"gguf","family":"llama","families":["llama"],"parameter_size":"3.2B","quantization_level":"Q4_K_M"}},{"name":"smollm2:135m"}]}"#),
        "/api/show" => Reply::json(200, r#"{"modelfile":"FROM x","parameters":"","template":"","details":{},"model_info":{"general.architecture":"llama","llama.context_length":8192,"llama.embedding_length":576},"capabilities":["completion"]}"#),
        _ => Reply::json(404, r#"{"error":"404 page not found"}"#),
    })
    .await;
    let b = backend(&server);
    let models = b.list_models().await.unwrap();
    assert_eq!(models.len(), 2);
    assert_eq!(models[0].name, "llama3.2:latest");
    assert_eq!(models[0].size, Some(2_019_393_189));
    assert_eq!(models[0].quantization_level.as_deref(), Some("Q4_K_M"));
    assert_eq!(models[1].family, None);
    // The server's models are listed with no model name (none is known yet).
    let config = OllamaConfig::new(server.url(), "");
    assert!(matches!(
        OllamaBackend::new(config.clone()),
        Err(OllamaError::EmptyModel)
    ));
    let listed = OllamaBackend::list_server_models(&config).await.unwrap();
    assert_eq!(listed, models);

    assert_eq!(b.capabilities().context_length, None);
    assert_eq!(b.context_length().await.unwrap(), Some(8192));
    assert_eq!(b.capabilities().context_length, Some(8192));
    assert_eq!(b.context_length().await.unwrap(), Some(8192));
    let shows: Vec<_> = server
        .received()
        .into_iter()
        .filter(|r| r.path == "/api/show")
        .collect();
    assert_eq!(shows.len(), 1, "the context length is remembered");
    assert_eq!(shows[0].json(), serde_json::json!({"model":"smollm2"}));
    let caps = b.capabilities();
    assert!(!caps.native_n);
    assert!(caps.logprobs);
}

#[test]
fn bad_configurations_are_typed_errors() {
    use optillm_ollama::{OllamaError, UrlError};
    // The checks themselves are optillm_http's (RemoteConfig::validate, base_url).
    assert!(matches!(
        OllamaBackend::new(OllamaConfig::new("ftp://h", "m")),
        Err(OllamaError::Url(UrlError::UnsupportedScheme { .. }))
    ));
    assert!(matches!(
        OllamaBackend::new(OllamaConfig::new("http://h", " ").with_num_predict(1)),
        Err(OllamaError::EmptyModel)
    ));
}

#[tokio::test]
async fn invalid_requests_are_rejected_before_any_request() {
    let server = TestServer::start(|_, _| Reply::json(500, "{}")).await;
    let b = backend(&server);
    let err = b
        .stream(ChatRequest::user("Hi").with_n(0))
        .await
        .unwrap_err();
    assert!(matches!(err, BackendError::InvalidRequest(_)));
    assert!(server.received().is_empty());
}

#[tokio::test]
async fn a_whole_answer_over_the_body_limit_is_too_large() {
    let big = format!(r#"{{"models":[{{"name":"{}"}}]}}"#, "m".repeat(4096));
    let server = TestServer::start(move |_, _| {
        let bytes = big.as_bytes();
        Reply::split(200, "application/json", bytes, &[1000, 2000, 3000])
    })
    .await;
    let b =
        OllamaBackend::new(OllamaConfig::new(server.url(), "smollm2").with_max_body_bytes(2048))
            .unwrap();
    let err = b.list_models().await.unwrap_err();
    assert!(
        matches!(&err, BackendError::TooLarge { what, limit: 2048 } if what == "an answer"),
        "{err:?}"
    );
    // Within the limit it reads as before.
    let b =
        OllamaBackend::new(OllamaConfig::new(server.url(), "smollm2").with_max_body_bytes(8192))
            .unwrap();
    assert_eq!(b.list_models().await.unwrap().len(), 1);
}

#[tokio::test]
async fn response_formats_go_in_format_and_a_grammar_is_refused() {
    use optillm_core::ResponseFormat;
    let body = format!("{}{}", line("{\"a\":1}"), FINAL);
    let server =
        TestServer::start(move |_, _| Reply::split(200, NDJSON, body.as_bytes(), &[])).await;
    let b = backend(&server);
    let caps = b.capabilities().formats;
    assert!(caps.json_object && caps.json_schema && !caps.grammar);
    let schema = serde_json::json!({
        "type": "object",
        "properties": {"a": {"type": "integer"}},
        "required": ["a"]
    });
    let c = b
        .complete(ChatRequest::user("Hi").with_format(ResponseFormat::json_schema(schema.clone())))
        .await
        .unwrap();
    assert_eq!(c.text(), "{\"a\":1}");
    b.complete(ChatRequest::user("Hi").with_format(ResponseFormat::JsonObject))
        .await
        .unwrap();
    b.complete(ChatRequest::user("Hi")).await.unwrap();
    let got = server.received();
    assert_eq!(got.len(), 3);
    assert_eq!(got[0].json()["format"], schema);
    assert_eq!(got[1].json()["format"], "json");
    assert!(got[2].json().get("format").is_none());
    assert!(got[0].json()["options"].get("format").is_none());
    // A GBNF grammar cannot be expressed: refused before any request.
    let e = b
        .stream(ChatRequest::user("Hi").with_format(ResponseFormat::grammar("root ::= \"a\"")))
        .await
        .unwrap_err();
    assert!(matches!(e, BackendError::Unsupported { .. }), "{e}");
    assert!(e.to_string().contains("GBNF"), "{e}");
    // An out-of-bounds schema is refused at the edge, typed.
    let e = b
        .stream(
            ChatRequest::user("Hi").with_format(ResponseFormat::json_schema(
                serde_json::json!({"type": "string", "maxLength": 100_000}),
            )),
        )
        .await
        .unwrap_err();
    assert!(matches!(e, BackendError::InvalidFormat(_)), "{e}");
    assert_eq!(server.received().len(), 3);
}

/// A raw request goes to `/api/generate` with `raw: true` and the text as `prompt` (no
/// chat template), and `/api/generate`'s `response` pieces are read as the text.
#[tokio::test]
async fn a_raw_request_is_a_raw_generate() {
    let piece = |text: &str| {
        format!(
            "{{\"model\":\"smollm2\",\"created_at\":\"2023-08-04T19:22:45.499127Z\",\"response\":{},\"done\":false}}\n",
            serde_json::to_string(text).unwrap()
        )
    };
    let last = "{\"model\":\"smollm2\",\"created_at\":\"2023-08-04T19:22:45.499127Z\",\"response\":\"\",\"done\":true,\"done_reason\":\"length\",\"prompt_eval_count\":5,\"eval_count\":2}\n";
    let body = format!("{}{}{last}", piece(" Par"), piece("is"));
    let server =
        TestServer::start(move |_, _| Reply::split(200, NDJSON, body.as_bytes(), &[30])).await;
    let b = backend(&server);
    let request = ChatRequest::completion("<start_of_turn>user\nCapital?")
        .with_sampling(Sampling::default().with_max_tokens(2));
    let (deltas, result) = drain(&b, request).await;
    let c = result.unwrap();
    assert_eq!(deltas, vec![(0, " Par".into()), (0, "is".into())]);
    assert_eq!(c.text(), " Paris");
    assert_eq!(c.choices[0].finish_reason, FinishReason::Length);
    assert_eq!(c.usage.prompt_tokens, 5);
    let got = server.received();
    assert_eq!(got.len(), 1);
    assert_eq!(got[0].path, "/api/generate");
    let j = got[0].json();
    assert_eq!(j["raw"], true);
    assert_eq!(j["prompt"], "<start_of_turn>user\nCapital?");
    assert!(j.get("messages").is_none());
    assert_eq!(j["options"]["num_predict"], 2);
}
