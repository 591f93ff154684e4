//! The model of the native suites: `OPTILLM_TEST_MODEL` (a GGUF path), else the
//! manifest's default model from the project's cache, pulled there on first use
//! (`optillm pull smollm2-135m` does the same).
//!
//! (These suites cannot use `optillm::open`: the `optillm` crate depends on this one.)

use std::path::PathBuf;
use std::sync::OnceLock;

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
