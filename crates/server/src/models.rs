//! Where the server's models come from: the [`Models`] provider trait and [`StaticModels`].

use std::collections::BTreeMap;
use std::sync::Arc;

use async_trait::async_trait;
use optillm_core::{Backend, BackendError};
use serde::Serialize;

/// What the server tells clients about a model (`/v1/models`, `/api/tags`, `/api/show`).
/// Every field but `name` is optional and omitted from listings when unknown.
#[derive(Debug, Clone, Default, PartialEq, Eq, Serialize)]
pub struct ModelInfo {
    /// The name clients use (`smollm2-135m`).
    pub name: String,
    /// Size of the weights in bytes.
    pub size: Option<u64>,
    /// Content digest (e.g. the SHA-256 of the GGUF file).
    pub digest: Option<String>,
    /// Weights format (`gguf`).
    pub format: Option<String>,
    /// Architecture family (`llama`, `qwen2`).
    pub family: Option<String>,
    /// Parameter count as text (`135M`).
    pub parameter_size: Option<String>,
    /// Quantisation (`Q8_0`).
    pub quantization_level: Option<String>,
    /// Context length in tokens.
    pub context_length: Option<u32>,
    /// Who serves it (`optillm`, `ollama`, ...), shown as OpenAI's `owned_by`.
    pub owned_by: Option<String>,
}

impl ModelInfo {
    pub fn new(name: impl Into<String>) -> Self {
        Self {
            name: name.into(),
            ..Self::default()
        }
    }
}

/// The models a server offers. The CLI implements it over native models loaded once
/// and kept, or over Ollama / OpenAI upstreams.
#[async_trait]
pub trait Models: Send + Sync {
    /// Every model that can be asked for by name.
    fn list(&self) -> Vec<ModelInfo>;

    /// The backend serving `name`; [`BackendError::ModelNotFound`] for an unknown name.
    async fn get(&self, name: &str) -> Result<Arc<dyn Backend>, BackendError>;

    /// The backends loaded now, by model name, for monitoring (`/metrics` reads their
    /// counters); asking must not load anything. None by default.
    fn loaded(&self) -> Vec<(String, Arc<dyn Backend>)> {
        Vec::new()
    }
}

/// A fixed map of names to backends, for tests and simple uses.
#[derive(Default, Clone)]
pub struct StaticModels {
    models: BTreeMap<String, (ModelInfo, Arc<dyn Backend>)>,
}

impl std::fmt::Debug for StaticModels {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("StaticModels")
            .field("models", &self.models.keys().collect::<Vec<_>>())
            .finish()
    }
}

impl StaticModels {
    pub fn new() -> Self {
        Self::default()
    }

    /// Adds `backend` under `name`, described only by its name and context length.
    pub fn with(self, name: impl Into<String>, backend: Arc<dyn Backend>) -> Self {
        let mut info = ModelInfo::new(name);
        info.context_length = backend.capabilities().context_length;
        self.with_info(info, backend)
    }

    /// Adds `backend` with a full description; it is served under `info.name`.
    pub fn with_info(mut self, info: ModelInfo, backend: Arc<dyn Backend>) -> Self {
        self.insert(info, backend);
        self
    }

    pub fn insert(&mut self, info: ModelInfo, backend: Arc<dyn Backend>) {
        self.models.insert(info.name.clone(), (info, backend));
    }
}

#[async_trait]
impl Models for StaticModels {
    fn list(&self) -> Vec<ModelInfo> {
        self.models.values().map(|(info, _)| info.clone()).collect()
    }

    async fn get(&self, name: &str) -> Result<Arc<dyn Backend>, BackendError> {
        self.models
            .get(name)
            .map(|(_, backend)| Arc::clone(backend))
            .ok_or_else(|| BackendError::ModelNotFound(name.to_string()))
    }

    fn loaded(&self) -> Vec<(String, Arc<dyn Backend>)> {
        self.models
            .iter()
            .map(|(name, (_, backend))| (name.clone(), Arc::clone(backend)))
            .collect()
    }
}
