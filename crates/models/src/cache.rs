//! The local cache: where artifacts live, which are present, and full verification.

use std::ffi::OsString;
use std::fs::File;
use std::io::Read;
use std::path::{Path, PathBuf};
use std::time::Duration;

use sha2::{Digest, Sha256};

use crate::error::ModelsError;
use crate::manifest::{Artifact, ArtifactKind, Manifest};
use crate::progress::{Progress, ProgressEvent, Stage};

/// The cache root: `$OPTILLM_HOME` if set (and not empty), else `$XDG_CACHE_HOME/optillm`
/// (if set to an absolute path), else `~/.cache/optillm`.
pub fn cache_dir() -> Result<PathBuf, ModelsError> {
    cache_dir_from(
        std::env::var_os("OPTILLM_HOME"),
        std::env::var_os("XDG_CACHE_HOME"),
        dirs::home_dir(),
    )
}

/// [`cache_dir`] from explicit values of `$OPTILLM_HOME`, `$XDG_CACHE_HOME` and the
/// home directory.
pub fn cache_dir_from(
    optillm_home: Option<OsString>,
    xdg_cache_home: Option<OsString>,
    home: Option<PathBuf>,
) -> Result<PathBuf, ModelsError> {
    if let Some(h) = optillm_home.filter(|h| !h.is_empty()) {
        return Ok(PathBuf::from(h));
    }
    if let Some(x) = xdg_cache_home
        .map(PathBuf::from)
        .filter(|x| x.is_absolute())
    {
        return Ok(x.join("optillm"));
    }
    home.map(|h| h.join(".cache").join("optillm"))
        .ok_or(ModelsError::NoCacheDir)
}

/// Network settings of a [`Cache`]'s downloads.
#[derive(Debug, Clone)]
#[non_exhaustive]
pub struct DownloadOptions {
    /// Time to establish a TCP (and TLS) connection; an unreachable source fails after
    /// this. Default 5 s.
    pub connect_timeout: Duration,
    /// Longest wait for the next bytes of a response. Default 60 s.
    pub read_timeout: Duration,
}

impl Default for DownloadOptions {
    fn default() -> Self {
        DownloadOptions {
            connect_timeout: Duration::from_secs(5),
            read_timeout: Duration::from_secs(60),
        }
    }
}

impl DownloadOptions {
    /// Sets the connect timeout.
    pub fn connect_timeout(mut self, d: Duration) -> Self {
        self.connect_timeout = d;
        self
    }

    /// Sets the read timeout.
    pub fn read_timeout(mut self, d: Duration) -> Self {
        self.read_timeout = d;
        self
    }
}

/// A cache directory holding `models/`, `datasets/` and `downloads/` (archives kept only
/// while a pull runs, or after a failed one so that a retry can reuse them).
#[derive(Debug, Clone)]
pub struct Cache {
    root: PathBuf,
    pub(crate) options: DownloadOptions,
}

/// One row of [`Cache::list`].
#[derive(Debug, Clone, PartialEq, Eq)]
#[non_exhaustive]
pub struct Listed<'a> {
    pub artifact: &'a Artifact,
    /// Where the file lives (or would live) in the cache.
    pub path: PathBuf,
    /// Whether the file is there with the right size.
    pub local: bool,
}

impl Cache {
    /// A cache rooted at `root` (created on the first pull).
    pub fn new(root: impl Into<PathBuf>) -> Self {
        Cache {
            root: root.into(),
            options: DownloadOptions::default(),
        }
    }

    /// The cache at [`cache_dir`].
    pub fn from_env() -> Result<Self, ModelsError> {
        cache_dir().map(Cache::new)
    }

    /// Replaces the download settings.
    pub fn with_options(mut self, options: DownloadOptions) -> Self {
        self.options = options;
        self
    }

    /// The cache root.
    pub fn root(&self) -> &Path {
        &self.root
    }

    /// The directory of one kind: `models/` or `datasets/`.
    pub fn dir_for(&self, kind: ArtifactKind) -> PathBuf {
        self.root.join(kind.subdir())
    }

    /// Where downloaded archives are kept during a pull.
    pub fn downloads_dir(&self) -> PathBuf {
        self.root.join("downloads")
    }

    /// Where the artifact's file lives (or would live).
    pub fn path_for(&self, artifact: &Artifact) -> PathBuf {
        self.dir_for(artifact.kind).join(&artifact.file)
    }

    /// The artifact's file if it is present with the right size. (A pull only ever
    /// renames a verified file into place; [`Cache::verify`] re-hashes.)
    pub fn local_path(&self, artifact: &Artifact) -> Option<PathBuf> {
        let path = self.path_for(artifact);
        let meta = std::fs::metadata(&path).ok()?;
        (meta.is_file() && meta.len() == artifact.size).then_some(path)
    }

    /// Every manifest entry with its cache path and whether it is present.
    pub fn list<'m>(&self, manifest: &'m Manifest) -> Vec<Listed<'m>> {
        manifest
            .artifacts()
            .iter()
            .map(|artifact| {
                let local = self.local_path(artifact);
                Listed {
                    artifact,
                    local: local.is_some(),
                    path: self.path_for(artifact),
                }
            })
            .collect()
    }

    /// Re-hashes the artifact's local file: its path if size and SHA-256 are right.
    /// A missing file is [`ModelsError::Io`] (not found).
    pub async fn verify(
        &self,
        artifact: &Artifact,
        progress: &dyn Progress,
    ) -> Result<PathBuf, ModelsError> {
        let path = self.path_for(artifact);
        check_file(
            &path,
            &artifact.name,
            &artifact.file,
            artifact.size,
            &artifact.sha256,
            progress,
        )
        .await?;
        Ok(path)
    }
}

/// Checks size, then SHA-256 (reporting [`Stage::Verify`] progress) of a file.
pub(crate) async fn check_file(
    path: &Path,
    artifact: &str,
    what: &str,
    size: u64,
    sha256: &str,
    progress: &dyn Progress,
) -> Result<(), ModelsError> {
    let meta = tokio::fs::metadata(path)
        .await
        .map_err(|e| ModelsError::io(path, e))?;
    if meta.len() != size {
        return Err(ModelsError::SizeMismatch {
            what: what.to_string(),
            expected: size,
            actual: meta.len(),
        });
    }
    let owned = path.to_path_buf();
    let actual = crate::download::blocking_with_progress(
        move |report| hash_file(&owned, report),
        |done| {
            progress.update(&ProgressEvent {
                artifact,
                stage: Stage::Verify,
                item: what,
                done,
                total: Some(size),
            })
        },
    )
    .await?;
    if actual != sha256 {
        return Err(ModelsError::HashMismatch {
            what: what.to_string(),
            expected: sha256.to_string(),
            actual,
        });
    }
    Ok(())
}

/// Lower-case hex SHA-256 of a file, calling `report(bytes_done)` as it goes.
fn hash_file(path: &Path, report: &dyn Fn(u64)) -> Result<String, ModelsError> {
    let mut file = File::open(path).map_err(|e| ModelsError::io(path, e))?;
    let mut hasher = Sha256::new();
    let mut buf = vec![0u8; 1 << 20];
    let mut done = 0u64;
    loop {
        let n = file.read(&mut buf).map_err(|e| ModelsError::io(path, e))?;
        if n == 0 {
            break;
        }
        hasher.update(buf.get(..n).unwrap_or_default());
        done += n as u64;
        report(done);
    }
    Ok(hex::encode(hasher.finalize()))
}
