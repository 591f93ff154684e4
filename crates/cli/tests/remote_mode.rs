//! Remote mode as users meet it, with the `optillm` binary against loopback servers
//! that speak the OpenAI and Ollama wire (optillm-http's test server): `models` and
//! `serve` without `--model` list and serve every model of the remote server, and a
//! server that cannot list them is a clear error.

#![allow(clippy::unwrap_used, clippy::expect_used, clippy::panic)]

use std::io::{Read, Write};
use std::net::TcpStream;
use std::process::{Child, Command, Output, Stdio};
use std::time::{Duration, Instant};

use optillm_http::test_server::{Received, Reply, TestServer};
use serde_json::json;

const SSE: &str = "text/event-stream";

/// A loopback port nothing listens on (yet).
fn free_port() -> u16 {
    let l = std::net::TcpListener::bind("127.0.0.1:0").unwrap();
    l.local_addr().unwrap().port()
}

/// `optillm ARGS`, run to its end on a blocking thread (the test servers run on the
/// runtime meanwhile).
async fn optillm(args: &[&str]) -> Output {
    let args: Vec<String> = args.iter().map(|a| a.to_string()).collect();
    tokio::task::spawn_blocking(move || {
        Command::new(env!("CARGO_BIN_EXE_optillm"))
            .args(&args)
            .env("OPENAI_API_KEY", "unused")
            .env("NO_COLOR", "1")
            .stdin(Stdio::null())
            .output()
            .unwrap()
    })
    .await
    .unwrap()
}

/// An answer of the OpenAI wire naming the model it was asked for, streamed or whole.
fn openai_answer(r: &Received) -> Reply {
    let body = r.json();
    let text = format!("answer of {}", body["model"].as_str().unwrap_or("?"));
    if body["stream"] == true {
        let chunk =
            json!({"choices": [{"index": 0, "delta": {"content": text}, "finish_reason": "stop"}]});
        let usage = json!({"choices": [], "usage": {"prompt_tokens": 5, "completion_tokens": 3}});
        let events = format!("data: {chunk}\n\ndata: {usage}\n\ndata: [DONE]\n\n");
        return Reply::new(200, SSE, vec![events.into_bytes()]);
    }
    let whole = json!({"object": "chat.completion", "choices": [{"index": 0,
        "message": {"role": "assistant", "content": text}, "finish_reason": "stop"}],
        "usage": {"prompt_tokens": 5, "completion_tokens": 3}});
    Reply::json(200, &whole.to_string())
}

/// An OpenAI-compatible server offering `models`.
async fn openai_server(models: &'static [&'static str]) -> TestServer {
    TestServer::start(move |r, _| match r.path.as_str() {
        "/v1/models" => {
            let data: Vec<_> = models
                .iter()
                .map(|m| json!({"id": m, "object": "model", "owned_by": "test"}))
                .collect();
            Reply::json(200, &json!({"object": "list", "data": data}).to_string())
        }
        "/v1/chat/completions" => openai_answer(r),
        _ => Reply::json(404, r#"{"error":{"message":"not found"}}"#),
    })
    .await
}

/// `optillm serve ARGS` on a free port, once it accepts connections; killed when dropped.
struct Served {
    child: Child,
    port: u16,
}

impl Drop for Served {
    fn drop(&mut self) {
        let _ = self.child.kill();
        let _ = self.child.wait();
    }
}

async fn serve(args: &[&str]) -> Served {
    let port = free_port();
    let mut child = Command::new(env!("CARGO_BIN_EXE_optillm"))
        .arg("serve")
        .args(args)
        .args(["--port", &port.to_string()])
        .env("OPENAI_API_KEY", "unused")
        .stdout(Stdio::null())
        .stderr(Stdio::piped())
        .spawn()
        .unwrap();
    let started = Instant::now();
    while TcpStream::connect(("127.0.0.1", port)).is_err() {
        if let Some(status) = child.try_wait().unwrap() {
            let mut err = String::new();
            child
                .stderr
                .take()
                .unwrap()
                .read_to_string(&mut err)
                .unwrap();
            panic!("optillm serve exited ({status}): {err}");
        }
        assert!(
            started.elapsed() < Duration::from_secs(30),
            "the server did not start"
        );
        tokio::time::sleep(Duration::from_millis(50)).await;
    }
    Served { child, port }
}

/// One HTTP/1.1 request to the served port: the status and the body.
async fn http(
    port: u16,
    method: &str,
    path: &str,
    body: Option<serde_json::Value>,
) -> (u16, String) {
    let request = match &body {
        Some(b) => {
            let b = b.to_string();
            format!(
                "{method} {path} HTTP/1.1\r\nHost: localhost\r\nConnection: close\r\n\
                 Content-Type: application/json\r\nContent-Length: {}\r\n\r\n{b}",
                b.len()
            )
        }
        None => format!("{method} {path} HTTP/1.1\r\nHost: localhost\r\nConnection: close\r\n\r\n"),
    };
    tokio::task::spawn_blocking(move || {
        let mut tcp = TcpStream::connect(("127.0.0.1", port)).unwrap();
        tcp.set_read_timeout(Some(Duration::from_secs(30))).unwrap();
        tcp.write_all(request.as_bytes()).unwrap();
        let mut raw = String::new();
        tcp.read_to_string(&mut raw).unwrap();
        let status = raw
            .split_whitespace()
            .nth(1)
            .and_then(|s| s.parse().ok())
            .unwrap_or(0);
        let body = raw
            .split_once("\r\n\r\n")
            .map_or("", |(_, b)| b)
            .to_string();
        (status, body)
    })
    .await
    .unwrap()
}

fn chat(model: &str) -> serde_json::Value {
    json!({"model": model, "messages": [{"role": "user", "content": "Hi"}]})
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn models_lists_the_models_of_an_openai_or_ollama_server() {
    let openai = openai_server(&["smol-a", "qwen2.5:0.5b"]).await;
    let url = format!("{}/v1", openai.url());
    let out = optillm(&["models", "--backend", "openai", "--url", &url]).await;
    let stdout = String::from_utf8_lossy(&out.stdout);
    assert!(
        out.status.success(),
        "{stdout}{}",
        String::from_utf8_lossy(&out.stderr)
    );
    assert_eq!(
        stdout.lines().collect::<Vec<_>>(),
        [
            format!("OpenAI-compatible server at {url}:").as_str(),
            "  smol-a",
            "  qwen2.5:0.5b"
        ]
    );
    assert_eq!(openai.received()[0].path, "/v1/models");

    let ollama = TestServer::start(|r, _| {
        assert_eq!(r.path, "/api/tags");
        Reply::json(
            200,
            r#"{"models":[{"name":"llama3.2:latest","size":2019393189},{"name":"smollm2:135m"}]}"#,
        )
    })
    .await;
    let out = optillm(&["models", "--backend", "ollama", "--url", &ollama.url()]).await;
    let stdout = String::from_utf8_lossy(&out.stdout);
    assert!(out.status.success(), "{stdout}");
    assert!(
        stdout.ends_with("  llama3.2:latest\n  smollm2:135m\n"),
        "{stdout}"
    );
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn serve_without_a_model_serves_every_model_of_the_server() {
    let upstream = openai_server(&["smol-a", "qwen2.5:0.5b"]).await;
    let url = format!("{}/v1", upstream.url());
    let served = serve(&["--backend", "openai", "--url", &url]).await;

    let (status, listed) = http(served.port, "GET", "/v1/models", None).await;
    assert_eq!(status, 200, "{listed}");
    let listed: serde_json::Value = serde_json::from_str(&listed).unwrap();
    let ids: Vec<&str> = listed["data"]
        .as_array()
        .unwrap()
        .iter()
        .map(|m| m["id"].as_str().unwrap())
        .collect();
    // Each model of the upstream, by its name and behind each approach prefix.
    for id in ["smol-a", "qwen2.5:0.5b", "moa-smol-a", "re2-qwen2.5:0.5b"] {
        assert!(ids.contains(&id), "{id} is not served: {ids:?}");
    }
    assert!(!ids.iter().any(|id| id.contains("smollm2")), "{ids:?}");

    // A model by its own name, and another behind an approach prefix: each request
    // reaches the upstream with that model's name.
    let (status, body) = http(
        served.port,
        "POST",
        "/v1/chat/completions",
        Some(chat("qwen2.5:0.5b")),
    )
    .await;
    assert_eq!(status, 200, "{body}");
    assert!(body.contains("answer of qwen2.5:0.5b"), "{body}");
    let (status, body) = http(
        served.port,
        "POST",
        "/v1/chat/completions",
        Some(chat("re2-smol-a")),
    )
    .await;
    assert_eq!(status, 200, "{body}");
    assert!(body.contains("answer of smol-a"), "{body}");
    let asked: Vec<String> = upstream
        .received()
        .iter()
        .filter(|r| r.path == "/v1/chat/completions")
        .map(|r| r.json()["model"].as_str().unwrap().to_string())
        .collect();
    assert_eq!(asked, ["qwen2.5:0.5b", "smol-a"]);
    // re2 re-reads the question: the prompt says it twice.
    let last = upstream.received().last().unwrap().json();
    assert!(
        last["messages"]
            .to_string()
            .contains("Read the question again"),
        "{last}"
    );

    let (status, body) = http(
        served.port,
        "POST",
        "/v1/chat/completions",
        Some(chat("gpt-4o")),
    )
    .await;
    assert_eq!(status, 404, "a model the server does not list: {body}");
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_server_that_cannot_list_its_models_is_a_clear_error() {
    let url = format!("http://127.0.0.1:{}/v1", free_port());
    for args in [
        vec!["models", "--backend", "openai", "--url", &url],
        vec!["serve", "--backend", "openai", "--url", &url, "--port", "0"],
    ] {
        let out = optillm(&args).await;
        let stderr = String::from_utf8_lossy(&out.stderr);
        assert!(!out.status.success(), "{args:?}: {stderr}");
        assert!(
            stderr.contains(&format!(
                "error: cannot list the models of the OpenAI-compatible server at {url} \
                 (name one with --model): "
            )),
            "{args:?}: {stderr}"
        );
        assert!(!stderr.contains("model name is empty"), "{stderr}");
    }

    let empty = openai_server(&[]).await;
    let url = format!("{}/v1", empty.url());
    let out = optillm(&["serve", "--backend", "openai", "--url", &url, "--port", "0"]).await;
    let stderr = String::from_utf8_lossy(&out.stderr);
    assert!(!out.status.success(), "{stderr}");
    assert!(
        stderr.contains(&format!(
            "error: the OpenAI-compatible server at {url} lists no model (name one with --model)"
        )),
        "{stderr}"
    );
}

/// An OpenAI-compatible server like llama-server with 4 slots: `n` above 4 is a 400;
/// otherwise every choice, streamed or whole.
async fn server_capping_n_at_4() -> TestServer {
    TestServer::start(|r, _| {
        let body = r.json();
        let n = body["n"].as_u64().unwrap_or(1);
        if n > 4 {
            let message = format!("n_cmpl ({n}) exceeds the number of slots (4)");
            let error = json!({"error": {"code": 400, "message": message}});
            return Reply::json(400, &error.to_string());
        }
        let usage = json!({"prompt_tokens": 5, "completion_tokens": n});
        if body["stream"] == true {
            let mut events = String::new();
            for i in 0..n {
                let chunk = json!({"choices": [{"index": i, "delta": {"content": format!("sample {i}")},
                    "finish_reason": "stop"}]});
                events.push_str(&format!("data: {chunk}\n\n"));
            }
            let last = json!({"choices": [], "usage": usage});
            events.push_str(&format!("data: {last}\n\ndata: [DONE]\n\n"));
            return Reply::new(200, SSE, vec![events.into_bytes()]);
        }
        let choices: Vec<_> = (0..n)
            .map(|i| {
                json!({"index": i, "finish_reason": "stop",
                    "message": {"role": "assistant", "content": format!("sample {i}")}})
            })
            .collect();
        let whole = json!({"object": "chat.completion", "choices": choices, "usage": usage});
        Reply::json(200, &whole.to_string())
    })
    .await
}

/// `optillm run -n N Hi` against the OpenAI-compatible server at `url`; its stderr.
async fn run_n(url: &str, n: u32) -> String {
    let n = n.to_string();
    let args = [
        "run",
        "--backend",
        "openai",
        "--url",
        url,
        "--model",
        "m",
        "-n",
        &n,
        "Hi",
    ];
    let out = optillm(&args).await;
    String::from_utf8_lossy(&out.stderr).into_owned()
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn the_run_footer_and_trace_count_the_http_requests_sent() {
    let upstream = server_capping_n_at_4().await;
    let url = format!("{}/v1", upstream.url());
    let trace = std::env::temp_dir().join(format!("optillm-trace-{}.jsonl", std::process::id()));
    let trace_arg = trace.to_str().unwrap();
    let args = [
        "run",
        "--backend",
        "openai",
        "--url",
        &url,
        "--model",
        "m",
        "-n",
        "6",
        "--trace",
        trace_arg,
        "Hi",
    ];
    let out = optillm(&args).await;
    let stderr = String::from_utf8_lossy(&out.stderr);
    assert!(out.status.success(), "{stderr}");
    // One call of n = 6: the server rejected n = 6, then six single requests.
    assert_eq!(upstream.received().len(), 7);
    assert!(
        stderr.contains("approach none | n 6 | calls 1 | requests 7 | finish ")
            && stderr.contains("prompt 30 tokens"),
        "{stderr}"
    );
    let lines: Vec<serde_json::Value> = std::fs::read_to_string(&trace)
        .unwrap()
        .lines()
        .map(|l| serde_json::from_str(l).unwrap())
        .collect();
    std::fs::remove_file(&trace).unwrap();
    assert_eq!(lines.len(), 1, "one call");
    assert_eq!(
        (lines[0]["n"].as_u64(), lines[0]["requests"].as_u64()),
        (Some(6), Some(7))
    );

    // Within the cap: one call, one request.
    let stderr = run_n(&url, 3).await;
    assert!(
        stderr.contains("model m | approach none | n 3 | calls 1 | requests 1 |"),
        "{stderr}"
    );
    let stderr = run_n(&url, 6).await;
    // A new process asks for n = 6 again: rejected, then six single requests.
    assert!(
        stderr.contains("model m | approach none | n 6 | calls 1 | requests 7 |"),
        "{stderr}"
    );
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn metrics_count_model_calls_and_the_http_requests_they_sent() {
    let upstream = server_capping_n_at_4().await;
    let url = format!("{}/v1", upstream.url());
    let served = serve(&["--backend", "openai", "--url", &url, "--model", "m"]).await;
    let mut six = chat("m");
    six["n"] = json!(6);
    let (status, body) = http(served.port, "POST", "/v1/chat/completions", Some(six)).await;
    assert_eq!(status, 200, "{body}");
    let mut two = chat("m");
    two["n"] = json!(2);
    let (status, body) = http(served.port, "POST", "/v1/chat/completions", Some(two)).await;
    assert_eq!(status, 200, "{body}");
    assert_eq!(upstream.received().len(), 7 + 1);

    let (status, metrics) = http(served.port, "GET", "/metrics", None).await;
    assert_eq!(status, 200, "{metrics}");
    let value = |name: &str| {
        metrics
            .lines()
            .find_map(|l| l.strip_prefix(name)?.strip_prefix(' '))
            .unwrap_or_else(|| panic!("no {name} in {metrics}"))
            .to_string()
    };
    assert_eq!(value("optillm_model_calls_total"), "2");
    assert_eq!(value("optillm_remote_requests_total"), "8");
}
