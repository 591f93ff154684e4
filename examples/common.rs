//! Shared by the examples: the default model, pulled into the cache if missing.

use std::sync::Arc;

use optillm::{Backend, OpenOptions};

/// SmolLM2-135M (or the model named by `OPTILLM_MODEL`: a manifest name or a GGUF path)
/// on the native backend.
pub async fn native() -> anyhow::Result<Arc<dyn Backend>> {
    let model = std::env::var("OPTILLM_MODEL").unwrap_or_else(|_| "smollm2-135m".into());
    Ok(optillm::open(&model, OpenOptions::new().pull(true)).await?)
}
