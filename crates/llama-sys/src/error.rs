use std::path::PathBuf;

use optillm_core::BackendError;

/// Errors of the native backend.
#[derive(Debug, thiserror::Error)]
#[non_exhaustive]
pub enum LlamaError {
    #[error("model file not found: {0}")]
    FileNotFound(PathBuf),
    #[error("cannot read model file {path}: {source}")]
    Io {
        path: PathBuf,
        #[source]
        source: std::io::Error,
    },
    #[error("{0} is not a GGUF file (no GGUF magic)")]
    NotGguf(PathBuf),
    #[error("llama.cpp could not load {path} (truncated or unsupported GGUF?)")]
    LoadFailed { path: PathBuf },
    #[error("llama.cpp backend initialisation failed: {0}")]
    Init(String),
    #[error("could not create a context: {0}")]
    Context(String),
    #[error("chat template: {0}")]
    Template(String),
    #[error("decoding failed: {0}")]
    Decode(String),
    /// A setting out of the range llama.cpp accepts (checked before loading).
    #[error("invalid native backend setting: {0}")]
    Config(#[from] crate::ConfigError),
    #[error("the worker thread stopped")]
    WorkerGone,
}

impl From<LlamaError> for BackendError {
    fn from(e: LlamaError) -> Self {
        match e {
            LlamaError::WorkerGone => BackendError::Closed,
            other => BackendError::Other(Box::new(other)),
        }
    }
}
