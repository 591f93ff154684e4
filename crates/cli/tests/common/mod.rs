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
