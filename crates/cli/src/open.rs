//! [`open`]: a native backend from a model name or a GGUF path.

use std::fmt;
use std::path::PathBuf;
use std::sync::Arc;

use optillm_models::{Cache, ModelsError, NoProgress, Progress, RemoteModel, TrustOutcome};

use crate::names::{self, ModelSource};

/// The environment variable naming the model when no other name is given.
pub const MODEL_ENV: &str = "LLM_MODEL";

/// Errors of [`open`] and [`locate`].
#[derive(Debug, thiserror::Error)]
#[non_exhaustive]
pub enum OpenError {
    /// Manifest, cache or download errors (a data set's name given as a model, a
    /// missing file path, a failed pull, ...).
    #[error(transparent)]
    Models(#[from] ModelsError),
    /// The name is neither a file, a manifest model nor a known Ollama name.
    #[error(
        "no native model `{name}`: the manifest has {}; Ollama names that map to them: {}; \
         or give the path of a GGUF file",
        models.join(", "),
        ollama_names.join(", ")
    )]
    UnknownModel {
        name: String,
        /// The manifest's models.
        models: Vec<String>,
        /// The Ollama names mapped to a manifest model.
        ollama_names: Vec<String>,
    },
    /// The model is in the manifest but not in the cache, and pulling was not asked for.
    #[error(
        "model `{name}` ({size_mb} MB) is not in the cache: pull it with `optillm pull {name}` \
         or open it with `OpenOptions::default().pull(true)`"
    )]
    NotPulled { name: String, size_mb: u64 },
    /// A GGUF file outside the pinned manifest (`hf:` spec, URL, or a manifest model
    /// trusted on first use) is not in the cache, or its cached copy was not checked
    /// yet, and pulling was not asked for.
    #[error(
        "model `{name}` is not in the cache (or not checked yet): pull it with \
         `optillm pull {name}` or open it with `OpenOptions::default().pull(true)`"
    )]
    RemoteNotPulled { name: String },
    /// llama.cpp could not load the file (not GGUF, truncated, a setting out of range).
    #[cfg(feature = "llama")]
    #[error(transparent)]
    Load(#[from] optillm_llama::LlamaError),
    /// The blocking task that loads the model panicked or was cancelled.
    #[error("the model loader stopped: {0}")]
    LoaderStopped(#[source] tokio::task::JoinError),
}

/// How [`open`] finds and loads a model. `OpenOptions::default()`: no pull, llama.cpp's
/// default settings.
#[derive(Clone, Default)]
pub struct OpenOptions {
    pull: bool,
    progress: Option<Arc<dyn Progress>>,
    #[cfg(feature = "llama")]
    llama: optillm_llama::LlamaConfig,
}

impl fmt::Debug for OpenOptions {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        let mut d = f.debug_struct("OpenOptions");
        d.field("pull", &self.pull)
            .field("progress", &self.progress.is_some());
        #[cfg(feature = "llama")]
        d.field("llama", &self.llama);
        d.finish()
    }
}

impl OpenOptions {
    /// Same as `OpenOptions::default()`.
    pub fn new() -> Self {
        Self::default()
    }
    /// Download a model that is not in the cache instead of failing with
    /// [`OpenError::NotPulled`] / [`OpenError::RemoteNotPulled`]: a manifest model is
    /// checked against its pinned SHA-256; a `hf:` spec or URL against the hash recorded
    /// at its first download (trust on first use, said so in the log when recorded now).
    pub fn pull(mut self, pull: bool) -> Self {
        self.pull = pull;
        self
    }
    /// Receives the progress of a pull.
    pub fn progress(mut self, progress: Arc<dyn Progress>) -> Self {
        self.progress = Some(progress);
        self
    }
    /// Context size in tokens (default: the model's trained context, at most 8192).
    #[cfg(feature = "llama")]
    pub fn ctx_size(mut self, n_ctx: u32) -> Self {
        self.llama.n_ctx = Some(n_ctx);
        self
    }
    /// Recent prompts whose KV cells are kept for reuse (default 4; 0: off).
    #[cfg(feature = "llama")]
    pub fn prefix_cache(mut self, prompts: u32) -> Self {
        self.llama.prefix_cache = prompts;
        self
    }
    /// How long the idle backend keeps the KV cache requests grew (default
    /// [`optillm_llama::RELEASE_AFTER`]; `None`: always).
    #[cfg(feature = "llama")]
    pub fn release_after(mut self, after: Option<std::time::Duration>) -> Self {
        self.llama.release_after = after;
        self
    }
    /// Token-level jobs run at once, each in a context of its own (default
    /// [`optillm_llama::TOKEN_JOBS`]).
    #[cfg(feature = "llama")]
    pub fn token_jobs(mut self, jobs: u32) -> Self {
        self.llama.token_jobs = jobs;
        self
    }
    /// KV cache type (default f16; q8_0 halves the cache's memory).
    #[cfg(feature = "llama")]
    pub fn kv_type(mut self, kv_type: optillm_llama::KvType) -> Self {
        self.llama.kv_type = kv_type;
        self
    }
    /// CPU threads (default: all cores).
    #[cfg(feature = "llama")]
    pub fn threads(mut self, n_threads: i32) -> Self {
        self.llama.n_threads = Some(n_threads);
        self
    }
    /// Every setting of the native backend at once. Its `name`, when `None`, becomes
    /// the manifest name of the model (or the file stem of a path).
    #[cfg(feature = "llama")]
    pub fn llama_config(mut self, config: optillm_llama::LlamaConfig) -> Self {
        self.llama = config;
        self
    }
}

/// The model to use when none is named: `LLM_MODEL` when set (and not empty), else the
/// manifest's default model (SmolLM2-135M).
pub fn model_from_env() -> Result<String, OpenError> {
    match std::env::var(MODEL_ENV) {
        Ok(m) if !m.trim().is_empty() => Ok(m),
        _ => Ok(optillm_models::default_model()?.name.clone()),
    }
}

/// The local file of a model and the name to report it by: a path as it is (named by
/// its file stem), a manifest model (or an Ollama name mapped to one, see
/// `crate::names`) from the cache, a `hf:` spec or URL (named by its file stem) from
/// the cache, each pulled first when `options` ask for it.
pub async fn locate(
    name_or_path: &str,
    options: &OpenOptions,
) -> Result<(PathBuf, String), OpenError> {
    let progress: &dyn Progress = match &options.progress {
        Some(p) => p.as_ref(),
        None => &NoProgress,
    };
    match names::resolve(name_or_path)? {
        ModelSource::File(path) => {
            let name = stem_or(&path, name_or_path);
            Ok((path, name))
        }
        ModelSource::Manifest {
            artifact,
            stands_in_for,
        } => {
            if let Some(asked) = stands_in_for {
                tracing::warn!(
                    "`{asked}` is not in the manifest; using the closest model it has, {}",
                    artifact.name
                );
            }
            let path = match optillm_models::local_path(artifact) {
                Some(path) => path,
                None if options.pull => {
                    tracing::info!(model = %artifact.name, "pulling");
                    optillm_models::ensure(artifact, progress).await?
                }
                None => {
                    return Err(OpenError::NotPulled {
                        name: artifact.name.clone(),
                        size_mb: artifact.size / 1_000_000,
                    });
                }
            };
            Ok((path, artifact.name.clone()))
        }
        ModelSource::Remote(model) => {
            if !options.pull {
                return Err(OpenError::RemoteNotPulled {
                    name: name_or_path.to_string(),
                });
            }
            let path = pull_remote(&model, progress).await?;
            // A manifest model trusted on first use keeps its manifest name.
            let name = if RemoteModel::looks_remote(name_or_path) {
                stem_or(&path, name_or_path)
            } else {
                name_or_path.to_string()
            };
            Ok((path, name))
        }
    }
}

/// Pulls (or re-checks) a GGUF file outside the pinned manifest; a hash recorded now
/// (trust on first use) is said in the log.
async fn pull_remote(model: &RemoteModel, progress: &dyn Progress) -> Result<PathBuf, OpenError> {
    let cache = Cache::from_env()?;
    let pulled = cache.ensure_remote(model, None, progress).await?;
    if pulled.trust == TrustOutcome::Recorded {
        tracing::warn!(
            "{model}: no hash was known, so this first download is trusted (trust on first \
             use); its SHA-256 {} is recorded in {} and later uses are checked against it",
            pulled.sha256,
            pulled.lock.display()
        );
    }
    Ok(pulled.path)
}

/// A file's stem as a model name, else `fallback`.
fn stem_or(path: &std::path::Path, fallback: &str) -> String {
    path.file_stem().map_or_else(
        || fallback.to_string(),
        |s| s.to_string_lossy().into_owned(),
    )
}

/// Opens a model on the native backend (llama.cpp): a manifest name (`smollm2-135m`),
/// an alias, an Ollama name of the seed (`tinyllama`, mapped to the closest manifest
/// model), a GGUF path, or a GGUF file by `hf:OWNER/REPO/FILE.gguf` spec or `https://`
/// URL (trusted on first use). A model missing from the cache is pulled when
/// `options` say [`OpenOptions::pull`], else the error says how to pull it. The model
/// loads on a blocking thread, so this can be awaited from any async code.
///
/// ```no_run
/// # async fn demo() -> Result<(), optillm::OpenError> {
/// let model = optillm::open("smollm2-135m", optillm::OpenOptions::new().pull(true)).await?;
/// # Ok(()) }
/// ```
#[cfg(feature = "llama")]
pub async fn open(
    name_or_path: &str,
    options: OpenOptions,
) -> Result<Arc<dyn crate::Backend>, OpenError> {
    let (path, name) = locate(name_or_path, &options).await?;
    let mut config = options.llama;
    config.name.get_or_insert(name);
    let backend =
        tokio::task::spawn_blocking(move || optillm_llama::LlamaBackend::load(path, config))
            .await
            .map_err(OpenError::LoaderStopped)??;
    Ok(Arc::new(backend))
}

#[cfg(test)]
mod tests {
    #![allow(clippy::unwrap_used, clippy::panic)]
    use super::*;

    #[tokio::test]
    async fn a_spec_not_in_the_cache_is_pulled_only_when_asked() {
        let spec = "hf:nobody-here/no-repo/never-pulled.gguf";
        match locate(spec, &OpenOptions::new()).await {
            Err(OpenError::RemoteNotPulled { name }) => assert_eq!(name, spec),
            other => panic!("{other:?}"),
        }
        let e = locate(spec, &OpenOptions::new()).await.unwrap_err();
        assert!(e.to_string().contains("optillm pull hf:nobody-here"), "{e}");
    }
}
