//! Shared setup: the real default model (or the GGUF file in `OPTILLM_TEST_MODEL`),
//! opened once per test binary with `optillm::open`, pulled if missing.

use std::future::Future;
use std::path::PathBuf;
use std::sync::{Arc, OnceLock};

use optillm::{Backend, LlamaConfig, OpenOptions};

fn model() -> String {
    std::env::var("OPTILLM_TEST_MODEL").unwrap_or_else(|_| "smollm2-135m".into())
}

fn options() -> OpenOptions {
    OpenOptions::new().pull(true).llama_config(LlamaConfig {
        name: Some("smollm2-135m".into()),
        n_ctx: Some(4096),
        n_threads: Some(2),
        ..LlamaConfig::default()
    })
}

/// `f` on a runtime of its own thread: callers may already be inside an async runtime.
fn block_on<T: Send + 'static>(f: impl Future<Output = T> + Send + 'static) -> T {
    std::thread::spawn(move || tokio::runtime::Runtime::new().unwrap().block_on(f))
        .join()
        .unwrap()
}

// Not every test binary uses both.
#[allow(dead_code)]
pub fn model_path() -> PathBuf {
    static PATH: OnceLock<PathBuf> = OnceLock::new();
    PATH.get_or_init(|| {
        block_on(async {
            let (path, _) = optillm::locate(&model(), &options())
                .await
                .expect("pull the test model");
            path
        })
    })
    .clone()
}

#[allow(dead_code)]
pub fn native() -> Arc<dyn Backend> {
    static BACKEND: OnceLock<Arc<dyn Backend>> = OnceLock::new();
    BACKEND
        .get_or_init(|| {
            block_on(async {
                optillm::open(&model(), options())
                    .await
                    .expect("open the test model")
            })
        })
        .clone()
}

/// `optillm serve` in process on loopback, serving [`native`] as `smollm2-135m`: its base
/// URL, and the sender whose drop stops it.
#[allow(dead_code)]
pub async fn serve_native() -> (String, tokio::sync::oneshot::Sender<()>) {
    let models = optillm_server::StaticModels::new().with("smollm2-135m", native());
    let listener = tokio::net::TcpListener::bind("127.0.0.1:0").await.unwrap();
    let url = format!("http://{}", listener.local_addr().unwrap());
    let (stop, stopped) = tokio::sync::oneshot::channel::<()>();
    let config = optillm_server::ServerConfig {
        max_concurrent: 4,
        ..optillm_server::ServerConfig::default()
    };
    tokio::spawn(async move {
        optillm_server::serve_on(listener, config, Arc::new(models), async {
            let _ = stopped.await;
        })
        .await
        .unwrap();
    });
    (url, stop)
}

/// A request the model answers with a Python block and an output block, after one
/// worked exchange that it imitates (SmolLM2-135M writes `x = 4 + 3`, `print(x * 6)`).
#[allow(dead_code)]
pub fn program_request() -> optillm_core::StrategyRequest {
    use optillm::{Message, Sampling};
    let shown = "```python\nx = 2 + 3\nprint(x * 10)\n```\n```output\n50\n```\nThe answer is 50.";
    let mut request = optillm_core::StrategyRequest::new(vec![
        Message::user("Compute (2 + 3) * 10 with Python."),
        Message::assistant(shown),
        Message::user("Compute (4 + 3) * 6 with Python."),
    ]);
    request.sampling = Sampling::default().with_max_tokens(64);
    request
}

/// The output blocks of `text` that follow a Python block: (its code, what is written).
#[allow(dead_code)]
pub fn output_blocks(text: &str) -> Vec<(String, String)> {
    const FENCE: &str = "```output";
    let mut out = Vec::new();
    let mut before = String::new();
    let mut pieces = text.split(FENCE).peekable();
    while let Some(piece) = pieces.next() {
        before.push_str(piece);
        let Some(next) = pieces.peek() else { break };
        before.push_str(FENCE);
        let code = optillm_core::strategies::calculator::code_before_output(&before);
        let written = next.trim_start_matches('\n').split("```").next();
        if let (Some(code), Some(written)) = (code, written) {
            out.push((code.to_string(), written.trim_end().to_string()));
        }
    }
    out
}
