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
