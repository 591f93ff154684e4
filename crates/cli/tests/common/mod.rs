//! Shared setup: the real default model, loaded once per test binary.

use std::path::PathBuf;
use std::sync::{Arc, OnceLock};

use optillm_llama::{LlamaBackend, LlamaConfig};

pub fn model_path() -> PathBuf {
    static PATH: OnceLock<PathBuf> = OnceLock::new();
    PATH.get_or_init(|| {
        if let Ok(p) = std::env::var("OPTILLM_TEST_MODEL") {
            return PathBuf::from(p);
        }
        // A thread of its own: callers may already be inside an async runtime.
        std::thread::spawn(|| {
            let rt = tokio::runtime::Runtime::new().unwrap();
            let entry = optillm_models::default_model().expect("manifest");
            rt.block_on(optillm_models::ensure(entry, &optillm_models::NoProgress))
                .expect("pull the default model")
        })
        .join()
        .unwrap()
    })
    .clone()
}

pub fn native() -> Arc<LlamaBackend> {
    static BACKEND: OnceLock<Arc<LlamaBackend>> = OnceLock::new();
    BACKEND
        .get_or_init(|| {
            let config = LlamaConfig {
                name: Some("smollm2-135m".into()),
                n_ctx: Some(4096),
                n_threads: Some(2),
                ..LlamaConfig::default()
            };
            Arc::new(LlamaBackend::load(model_path(), config).expect("load model"))
        })
        .clone()
}
