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
    /// Largest GGUF file accepted from a `hf:` spec or URL ([`Cache::ensure_remote`]);
    /// a larger announced size fails before the body is read. Default 64 GiB.
    pub max_file_size: u64,
    /// Most redirects followed by such a pull (Hugging Face redirects once, to its
    /// CDN). Default 5.
    pub max_redirects: usize,
    /// How many times such a pull resumes (with an HTTP range request) after the
    /// connection dropped in the middle of the body, within the same call. Default 3.
    /// What was received stays in a partial file either way, for the next pull.
    pub resume_attempts: u32,
    /// The Hugging Face endpoint of `hf:` specs; `None`: `$HF_ENDPOINT`, else
    /// `https://huggingface.co` ([`crate::hf_endpoint`]).
    pub hf_endpoint: Option<String>,
}

/// The default of [`DownloadOptions::max_file_size`]: 64 GiB.
pub const DEFAULT_MAX_FILE_SIZE: u64 = 64 << 30;

impl Default for DownloadOptions {
    fn default() -> Self {
        DownloadOptions {
            connect_timeout: Duration::from_secs(5),
            read_timeout: Duration::from_secs(60),
            max_file_size: DEFAULT_MAX_FILE_SIZE,
            max_redirects: 5,
            resume_attempts: 3,
            hf_endpoint: None,
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

    /// Sets the largest file accepted from a `hf:` spec or URL.
    pub fn max_file_size(mut self, bytes: u64) -> Self {
        self.max_file_size = bytes;
        self
    }

    /// Sets how many redirects a `hf:` or URL pull follows.
    pub fn max_redirects(mut self, n: usize) -> Self {
        self.max_redirects = n;
        self
    }

    /// Sets how many times a `hf:` or URL pull resumes within one call.
    pub fn resume_attempts(mut self, n: u32) -> Self {
        self.resume_attempts = n;
        self
    }

    /// Sets the Hugging Face endpoint of `hf:` specs (instead of `$HF_ENDPOINT`).
    pub fn hf_endpoint(mut self, endpoint: impl Into<String>) -> Self {
        self.hf_endpoint = Some(endpoint.into());
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
    /// Whether it is also [`LocalState::Verified`] (else it is re-hashed before use).
    pub verified: bool,
}

/// What the cache holds of an artifact, from cheap checks only (no hashing).
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
#[non_exhaustive]
pub enum LocalState {
    /// No file.
    Missing,
    /// A file of another size.
    WrongSize {
        /// Its size in bytes.
        actual: u64,
    },
    /// The right size, but no verification marker for this very file (a file from an
    /// older version, copied in, or changed since it was checked): its SHA-256 must be
    /// checked before it is used.
    Unverified,
    /// The right size, with the marker written when its SHA-256 was checked, which
    /// records the file's size and modification time, both unchanged since.
    Verified,
}

/// Temporary files of pulls start with this; no manifest file name starts with a dot.
pub(crate) const PARTIAL_PREFIX: &str = ".partial-";

/// Partial files that cannot be locked (no `flock`, or not Unix) are removed once they
/// are this old; lockable ones as soon as no pull holds their lock.
pub const STALE_PARTIAL_AGE: Duration = Duration::from_secs(24 * 3600);

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

    /// Where the verification marker of the artifact's file lives: `.<file>.verified`
    /// beside it, written only after its SHA-256 was checked.
    pub fn marker_path(&self, artifact: &Artifact) -> PathBuf {
        self.dir_for(artifact.kind)
            .join(format!(".{}.verified", artifact.file))
    }

    /// What the cache holds of the artifact (cheap: metadata and the marker only).
    pub fn state(&self, artifact: &Artifact) -> LocalState {
        let path = self.path_for(artifact);
        let Ok(meta) = std::fs::metadata(&path) else {
            return LocalState::Missing;
        };
        if !meta.is_file() {
            return LocalState::Missing;
        }
        if meta.len() != artifact.size {
            return LocalState::WrongSize { actual: meta.len() };
        }
        match std::fs::read_to_string(self.marker_path(artifact)) {
            Ok(text) if text == marker_text(&artifact.sha256, &meta) => LocalState::Verified,
            _ => LocalState::Unverified,
        }
    }

    /// The artifact's file if it is present with the right size and verified
    /// ([`LocalState::Verified`]): a pull renames only a verified file into place and
    /// then writes its marker; a file without a valid marker is re-hashed by
    /// [`Cache::ensure`] before use, and [`Cache::verify`] re-hashes any file.
    pub fn local_path(&self, artifact: &Artifact) -> Option<PathBuf> {
        (self.state(artifact) == LocalState::Verified).then(|| self.path_for(artifact))
    }

    /// Every manifest entry with its cache path and whether it is present.
    pub fn list<'m>(&self, manifest: &'m Manifest) -> Vec<Listed<'m>> {
        manifest
            .artifacts()
            .iter()
            .map(|artifact| {
                let state = self.state(artifact);
                Listed {
                    artifact,
                    local: matches!(state, LocalState::Verified | LocalState::Unverified),
                    verified: state == LocalState::Verified,
                    path: self.path_for(artifact),
                }
            })
            .collect()
    }

    /// Re-hashes the artifact's local file: its path if size and SHA-256 are right (and
    /// its marker is then written, so that [`Cache::local_path`] trusts it). A wrong
    /// file loses its marker and gives [`ModelsError::SizeMismatch`] or
    /// [`ModelsError::HashMismatch`]; a missing one is [`ModelsError::Io`] (not found).
    pub async fn verify(
        &self,
        artifact: &Artifact,
        progress: &dyn Progress,
    ) -> Result<PathBuf, ModelsError> {
        let path = self.path_for(artifact);
        let checked = check_file(
            &path,
            &artifact.name,
            &artifact.file,
            artifact.size,
            &artifact.sha256,
            progress,
        )
        .await;
        match checked {
            Ok(()) => {
                self.write_marker(artifact)?;
                Ok(path)
            }
            Err(e) => {
                self.remove_marker(artifact)?;
                Err(e)
            }
        }
    }

    /// Records that the artifact's file (as it is now) has been checked.
    pub(crate) fn write_marker(&self, artifact: &Artifact) -> Result<(), ModelsError> {
        let path = self.path_for(artifact);
        let meta = std::fs::metadata(&path).map_err(|e| ModelsError::io(&path, e))?;
        let marker = self.marker_path(artifact);
        std::fs::write(&marker, marker_text(&artifact.sha256, &meta))
            .map_err(|e| ModelsError::io(&marker, e))
    }

    /// Removes the artifact's marker, if any.
    pub(crate) fn remove_marker(&self, artifact: &Artifact) -> Result<(), ModelsError> {
        let marker = self.marker_path(artifact);
        match std::fs::remove_file(&marker) {
            Err(e) if e.kind() != std::io::ErrorKind::NotFound => Err(ModelsError::io(marker, e)),
            _ => Ok(()),
        }
    }

    /// Removes the temporary files (`.partial-*`) that interrupted pulls left in
    /// `models/`, `datasets/` and `downloads/`, and returns their paths. A pull holds an
    /// exclusive lock on its temporary file while it runs, so only abandoned files are
    /// removed; where locks are not available, files older than [`STALE_PARTIAL_AGE`].
    /// Every pull does this first.
    pub fn clean_partials(&self) -> Vec<PathBuf> {
        let mut removed = Vec::new();
        for dir in [
            self.dir_for(ArtifactKind::Model),
            self.dir_for(ArtifactKind::Dataset),
            self.downloads_dir(),
        ] {
            removed.extend(clean_partials_in(&dir, STALE_PARTIAL_AGE));
        }
        removed
    }
}

/// The marker's content for a file with this SHA-256 and this metadata.
pub(crate) fn marker_text(sha256: &str, meta: &std::fs::Metadata) -> String {
    let modified = meta
        .modified()
        .ok()
        .and_then(|t| t.duration_since(std::time::UNIX_EPOCH).ok())
        .map_or_else(
            || "unknown".to_string(),
            |d| format!("{}.{:09}", d.as_secs(), d.subsec_nanos()),
        );
    format!(
        "sha256 {}\nsize {}\nmodified {modified}\n",
        sha256,
        meta.len()
    )
}

/// The outcome of trying to lock a partial file.
pub(crate) enum Lock {
    /// Locked by us: no pull holds it.
    Taken,
    /// A pull holds it.
    Busy,
    /// Locks do not work here.
    Unavailable,
}

#[cfg(unix)]
pub(crate) fn try_lock(file: &File) -> Lock {
    use rustix::fs::{FlockOperation, flock};
    match flock(file, FlockOperation::NonBlockingLockExclusive) {
        Ok(()) => Lock::Taken,
        Err(e) if e == rustix::io::Errno::WOULDBLOCK || e == rustix::io::Errno::INTR => Lock::Busy,
        Err(_) => Lock::Unavailable,
    }
}

#[cfg(not(unix))]
pub(crate) fn try_lock(_: &File) -> Lock {
    Lock::Unavailable
}

/// Locks a new temporary file of a pull for as long as it stays open. False if a
/// cleaner got to it first and removed it (the caller makes another).
pub(crate) fn claim_partial(file: &File) -> bool {
    match try_lock(file) {
        Lock::Taken => still_linked(file),
        Lock::Busy => false,
        Lock::Unavailable => true,
    }
}

#[cfg(unix)]
fn still_linked(file: &File) -> bool {
    use std::os::unix::fs::MetadataExt;
    file.metadata().is_ok_and(|m| m.nlink() > 0)
}

#[cfg(not(unix))]
fn still_linked(_: &File) -> bool {
    true
}

/// [`Cache::clean_partials`] in one directory.
pub(crate) fn clean_partials_in(dir: &Path, stale_after: Duration) -> Vec<PathBuf> {
    let mut removed = Vec::new();
    let Ok(entries) = std::fs::read_dir(dir) else {
        return removed;
    };
    for entry in entries.flatten() {
        if !entry
            .file_name()
            .to_string_lossy()
            .starts_with(PARTIAL_PREFIX)
        {
            continue;
        }
        let path = entry.path();
        let old = || {
            entry
                .metadata()
                .ok()
                .and_then(|m| m.modified().ok())
                .and_then(|t| t.elapsed().ok())
                .is_some_and(|age| age > stale_after)
        };
        // Held open (and locked) while it is removed, so that a pull that has just
        // made it sees it unlinked when it gets the lock.
        let file = if cfg!(unix) {
            File::open(&path).ok()
        } else {
            None
        };
        let abandoned = match file.as_ref().map(try_lock) {
            Some(Lock::Taken) => true,
            Some(Lock::Busy) => false,
            Some(Lock::Unavailable) | None => old(),
        };
        if abandoned {
            match std::fs::remove_file(&path) {
                Ok(()) => {
                    tracing::info!(path = %path.display(), "removed the partial file of an interrupted pull");
                    removed.push(path);
                }
                Err(e) => {
                    tracing::warn!(path = %path.display(), error = %e, "cannot remove a partial file");
                }
            }
        }
        drop(file);
    }
    removed
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
pub(crate) fn hash_file(path: &Path, report: &dyn Fn(u64)) -> Result<String, ModelsError> {
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

#[cfg(all(test, unix))]
mod tests {
    use super::*;

    #[test]
    fn only_partial_files_no_pull_holds_are_removed() {
        let dir = tempfile::tempdir().unwrap();
        let held = dir.path().join(".partial-held.gguf-1");
        let dead = dir.path().join(".partial-dead.gguf-2");
        let other = dir.path().join("keep.gguf");
        for p in [&held, &dead, &other] {
            std::fs::write(p, b"x").unwrap();
        }
        let file = File::open(&held).unwrap();
        assert!(claim_partial(&file), "a pull locks its file");
        let removed = clean_partials_in(dir.path(), STALE_PARTIAL_AGE);
        assert_eq!(removed, vec![dead.clone()]);
        assert!(held.exists() && other.exists() && !dead.exists());
        drop(file);
        // Its pull gone, the file is removed too.
        assert_eq!(clean_partials_in(dir.path(), STALE_PARTIAL_AGE), vec![held]);
    }

    #[test]
    fn a_file_removed_before_its_lock_is_not_claimed() {
        let dir = tempfile::tempdir().unwrap();
        let path = dir.path().join(".partial-m.gguf-3");
        std::fs::write(&path, b"x").unwrap();
        let file = File::open(&path).unwrap();
        std::fs::remove_file(&path).unwrap();
        assert!(!claim_partial(&file));
    }
}
