//! Shared by the examples: the default model, pulled into the cache if missing.

use std::sync::Arc;

use optillm_core::Backend;
use optillm_llama::{LlamaBackend, LlamaConfig};

/// SmolLM2-135M (or the GGUF path in `OPTILLM_MODEL`) on the native backend.
pub async fn native() -> anyhow::Result<Arc<dyn Backend>> {
    let path = match std::env::var("OPTILLM_MODEL") {
        Ok(p) => p.into(),
        Err(_) => {
            let model = optillm_models::default_model()?;
            optillm_models::ensure(model, &optillm_models::NoProgress).await?
        }
    };
    let backend =
        tokio::task::spawn_blocking(move || LlamaBackend::load(path, LlamaConfig::default()))
            .await??;
    Ok(Arc::new(backend))
}
