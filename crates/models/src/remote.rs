//! GGUF files outside the manifest: `hf:OWNER/REPO[@REVISION]/PATH/FILE.gguf` and
//! `https://.../FILE.gguf`.
//!
//! Such a file is cached under `models/hf/OWNER/REPO/REVISION/PATH/FILE.gguf` or
//! `models/url/HOST/HASH/FILE.gguf` (HASH: 16 hex digits of the URL's SHA-256, so that
//! two URLs never share a file). Its size and SHA-256 are recorded in the lock file
//! `models/remote-models.lock` when it is first downloaded, with the hash given by the
//! user (`pinned`) or the one of that first download (`first-use`: trust on first use);
//! later pulls and uses check the file against it. Downloads go into
//! `.FILE.gguf.part` beside the final file and resume with an HTTP range request
//! after a dropped connection, in the same call or the next one; a server that
//! ignores the range (answers `200`) restarts the file from its first byte.

use std::fs::{File, OpenOptions};
use std::io::{Read, Seek, SeekFrom, Write};
use std::path::{Path, PathBuf};
use std::time::{Duration, SystemTime, UNIX_EPOCH};

use reqwest::header::{CONTENT_RANGE, ETAG, IF_RANGE, LAST_MODIFIED, LOCATION, RANGE};
use reqwest::{StatusCode, Url};
use serde::{Deserialize, Serialize};
use sha2::{Digest, Sha256};
use tracing::{info, warn};

use crate::cache::{Cache, LocalState, Lock, marker_text, try_lock};
use crate::error::ModelsError;
use crate::manifest::ArtifactKind;
use crate::progress::{Progress, ProgressEvent, Stage};

/// The Hugging Face endpoint when `$HF_ENDPOINT` is not set.
pub const HF_DEFAULT_ENDPOINT: &str = "https://huggingface.co";

/// The first four bytes of every GGUF file.
pub const GGUF_MAGIC: &[u8; 4] = b"GGUF";

/// The lock file's name, in the cache's `models/` directory.
pub const REMOTE_LOCK_FILE: &str = "remote-models.lock";

const LOCK_VERSION: u32 = 1;

/// The Hugging Face endpoint for `hf:` specs: `$HF_ENDPOINT` (as `huggingface_hub`
/// reads it) without a trailing `/`, else [`HF_DEFAULT_ENDPOINT`].
pub fn hf_endpoint() -> String {
    std::env::var("HF_ENDPOINT")
        .ok()
        .map(|e| e.trim().trim_end_matches('/').to_string())
        .filter(|e| !e.is_empty())
        .unwrap_or_else(|| HF_DEFAULT_ENDPOINT.to_string())
}

/// A GGUF file outside the manifest, named by a `hf:` spec or an URL.
#[derive(Debug, Clone, PartialEq, Eq, Hash)]
pub struct RemoteModel {
    /// The canonical spec: `hf:...` as given, or the parsed URL.
    spec: String,
    origin: Origin,
    /// Path segments of the cached file under `models/`.
    local: Vec<String>,
}

#[derive(Debug, Clone, PartialEq, Eq, Hash)]
enum Origin {
    Hf {
        owner: String,
        repo: String,
        revision: String,
        file: Vec<String>,
    },
    Url(Url),
}

impl RemoteModel {
    /// Whether `s` is meant as a `hf:` spec or a URL (`hf:` or `SCHEME://`), whether
    /// or not it is a valid one.
    pub fn looks_remote(s: &str) -> bool {
        s.starts_with("hf:") || s.contains("://")
    }

    /// Parses `hf:OWNER/REPO[@REVISION]/PATH/FILE.gguf` or an `https://` URL (or
    /// `http://` to a loopback address) whose path ends in a `.gguf` file name.
    pub fn parse(spec: &str) -> Result<RemoteModel, ModelsError> {
        let bad = |reason: &str| ModelsError::BadModelSpec {
            spec: spec.to_string(),
            reason: reason.to_string(),
        };
        if let Some(rest) = spec.strip_prefix("hf:") {
            let mut parts = rest.split('/');
            let owner = parts.next().unwrap_or_default();
            let repo_rev = parts.next().unwrap_or_default();
            let file: Vec<String> = parts.map(str::to_string).collect();
            let (repo, revision) = repo_rev.split_once('@').unwrap_or((repo_rev, "main"));
            if file.is_empty() {
                return Err(bad("expected hf:OWNER/REPO/FILE.gguf"));
            }
            for seg in [owner, repo, revision]
                .into_iter()
                .chain(file.iter().map(String::as_str))
            {
                check_segment(seg).map_err(|r| bad(&r))?;
            }
            check_gguf_name(file.last().map_or("", String::as_str)).map_err(|r| bad(&r))?;
            let mut local = vec![
                "hf".to_string(),
                owner.to_string(),
                repo.to_string(),
                revision.to_string(),
            ];
            local.extend(file.iter().cloned());
            return Ok(RemoteModel {
                spec: spec.to_string(),
                origin: Origin::Hf {
                    owner: owner.to_string(),
                    repo: repo.to_string(),
                    revision: revision.to_string(),
                    file,
                },
                local,
            });
        }
        let mut url = Url::parse(spec).map_err(|e| bad(&format!("not a URL: {e}")))?;
        check_transport(&url)?;
        if !url.username().is_empty() || url.password().is_some() {
            return Err(bad(
                "credentials in the URL would be written to the lock file; not accepted",
            ));
        }
        url.set_fragment(None);
        let host = url.host_str().unwrap_or_default();
        if host.is_empty() {
            return Err(bad("the URL has no host"));
        }
        let file = url
            .path_segments()
            .and_then(|mut s| s.next_back())
            .unwrap_or_default()
            .to_string();
        check_segment(&file).map_err(|r| bad(&format!("its last path segment: {r}")))?;
        check_gguf_name(&file).map_err(|r| bad(&r))?;
        let mut host_dir: String = host
            .chars()
            .map(|c| match c {
                'a'..='z' | '0'..='9' | '.' | '-' => c,
                'A'..='Z' => c.to_ascii_lowercase(),
                _ => '_',
            })
            .collect();
        if host_dir.starts_with('.') {
            host_dir.insert(0, '_');
        }
        if let Some(port) = url.port() {
            host_dir = format!("{host_dir}_{port}");
        }
        let digest = hex::encode(Sha256::digest(url.as_str().as_bytes()));
        let short: String = digest.chars().take(16).collect();
        Ok(RemoteModel {
            spec: url.as_str().to_string(),
            local: vec!["url".to_string(), host_dir, short, file],
            origin: Origin::Url(url),
        })
    }

    /// The canonical spec (the key of the lock file).
    pub fn spec(&self) -> &str {
        &self.spec
    }

    /// The GGUF file name.
    pub fn file_name(&self) -> &str {
        self.local.last().map_or("", String::as_str)
    }

    /// A short name for messages and backends: the file name without `.gguf`.
    pub fn name(&self) -> &str {
        let f = self.file_name();
        f.len()
            .checked_sub(5)
            .and_then(|n| f.get(..n))
            .filter(|stem| !stem.is_empty())
            .unwrap_or(f)
    }

    /// Whether this is a `hf:` spec.
    pub fn is_hf(&self) -> bool {
        matches!(self.origin, Origin::Hf { .. })
    }

    /// The cached file's path relative to the cache's `models/` directory.
    pub fn relative_path(&self) -> PathBuf {
        self.local.iter().collect()
    }

    /// Where to download it: for `hf:`, `ENDPOINT/OWNER/REPO/resolve/REVISION/PATH`.
    pub fn url(&self, hf_endpoint: &str) -> Result<Url, ModelsError> {
        match &self.origin {
            Origin::Url(url) => Ok(url.clone()),
            Origin::Hf {
                owner,
                repo,
                revision,
                file,
            } => {
                let text = format!(
                    "{}/{owner}/{repo}/resolve/{revision}/{}",
                    hf_endpoint.trim_end_matches('/'),
                    file.join("/")
                );
                let url = Url::parse(&text).map_err(|e| ModelsError::BadModelSpec {
                    spec: self.spec.clone(),
                    reason: format!("bad Hugging Face endpoint `{hf_endpoint}`: {e}"),
                })?;
                check_transport(&url)?;
                Ok(url)
            }
        }
    }
}

impl std::fmt::Display for RemoteModel {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.write_str(&self.spec)
    }
}

/// A path segment that stays inside its directory and needs no quoting.
fn check_segment(seg: &str) -> Result<(), String> {
    if seg.is_empty() {
        return Err("empty path segment".to_string());
    }
    if seg == "." || seg == ".." || seg.starts_with('.') {
        return Err(format!("`{seg}`: a path segment may not start with a dot"));
    }
    if let Some(c) = seg
        .chars()
        .find(|c| !(c.is_ascii_alphanumeric() || matches!(c, '.' | '_' | '-' | '+')))
    {
        return Err(format!(
            "`{seg}`: character {c:?} not allowed (only A-Z a-z 0-9 . _ - +)"
        ));
    }
    Ok(())
}

fn check_gguf_name(file: &str) -> Result<(), String> {
    let lower = file.to_ascii_lowercase();
    if lower.ends_with(".gguf") && lower.len() > 5 {
        Ok(())
    } else {
        Err(format!("`{file}` is not a .gguf file name"))
    }
}

/// `https://`, or `http://` to a loopback address.
fn check_transport(url: &Url) -> Result<(), ModelsError> {
    let loopback = match url.host() {
        Some(url::Host::Domain(d)) => d.eq_ignore_ascii_case("localhost"),
        Some(url::Host::Ipv4(ip)) => ip.is_loopback(),
        Some(url::Host::Ipv6(ip)) => ip.is_loopback(),
        None => false,
    };
    match url.scheme() {
        "https" => Ok(()),
        "http" if loopback => Ok(()),
        _ => Err(ModelsError::InsecureUrl {
            url: url.to_string(),
        }),
    }
}

/// Where the hash of a lock entry came from.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "kebab-case")]
#[non_exhaustive]
pub enum Trust {
    /// The hash of the first download, trusted because nothing else was known.
    FirstUse,
    /// The hash the user gave (`--sha256`).
    Pinned,
}

impl std::fmt::Display for Trust {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.write_str(match self {
            Trust::FirstUse => "first-use",
            Trust::Pinned => "pinned",
        })
    }
}

/// One entry of the lock file.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
#[non_exhaustive]
pub struct LockEntry {
    /// The canonical spec ([`RemoteModel::spec`]).
    pub spec: String,
    /// The URL it was downloaded from (for `hf:`, under the endpoint of that time).
    pub url: String,
    /// Size in bytes.
    pub size: u64,
    /// Lower-case hex SHA-256.
    pub sha256: String,
    /// Where the hash came from.
    pub trust: Trust,
    /// When it was recorded, in seconds since 1970.
    pub recorded: u64,
}

#[derive(Debug, Default, Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
struct LockFile {
    version: u32,
    #[serde(default, rename = "model")]
    models: Vec<LockEntry>,
}

/// How a [`Cache::ensure_remote`] call trusted the file it returns.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
#[non_exhaustive]
pub enum TrustOutcome {
    /// No hash was known: this download's hash was recorded in the lock file (trust
    /// on first use).
    Recorded,
    /// The file has the hash recorded at its first download.
    MatchedFirstUse,
    /// The file has the hash the caller gave (now recorded as pinned).
    MatchedPin,
}

/// What [`Cache::ensure_remote`] did.
#[derive(Debug, Clone, PartialEq, Eq)]
#[non_exhaustive]
pub struct RemotePulled {
    /// The checked file in the cache.
    pub path: PathBuf,
    pub size: u64,
    pub sha256: String,
    pub trust: TrustOutcome,
    /// Whether it was downloaded now (else the cached file was used).
    pub downloaded: bool,
    /// The byte a download resumed from, when it continued a partial file.
    pub resumed_from: Option<u64>,
    /// The lock file.
    pub lock: PathBuf,
}

/// One row of [`Cache::list_remote`].
#[derive(Debug, Clone, PartialEq, Eq)]
#[non_exhaustive]
pub struct ListedRemote {
    pub entry: LockEntry,
    /// The parsed spec.
    pub model: RemoteModel,
    /// Where the file lives (or would live).
    pub path: PathBuf,
    /// What the cache holds of it.
    pub state: LocalState,
}

/// The state of a resumable download, beside its partial file.
#[derive(Debug, Default, Serialize, Deserialize)]
struct PartMeta {
    url: String,
    /// `ETag` (strong) or `Last-Modified` of the answer, sent as `If-Range`.
    validator: Option<String>,
    total: Option<u64>,
}

/// A lower-case SHA-256 from user input (upper case accepted).
pub fn parse_sha256(value: &str) -> Result<String, ModelsError> {
    let v = value.trim().to_ascii_lowercase();
    if v.len() == 64 && v.bytes().all(|b| b.is_ascii_hexdigit()) {
        Ok(v)
    } else {
        Err(ModelsError::InvalidSha256 {
            value: value.to_string(),
        })
    }
}

fn unix_now() -> u64 {
    SystemTime::now()
        .duration_since(UNIX_EPOCH)
        .map_or(0, |d| d.as_secs())
}

impl Cache {
    /// The lock file of pulled GGUF files: `models/remote-models.lock`.
    pub fn remote_lock_path(&self) -> PathBuf {
        self.dir_for(ArtifactKind::Model).join(REMOTE_LOCK_FILE)
    }

    /// Where the file of `model` lives (or would live).
    pub fn remote_path(&self, model: &RemoteModel) -> PathBuf {
        self.dir_for(ArtifactKind::Model)
            .join(model.relative_path())
    }

    fn remote_marker_path(&self, model: &RemoteModel) -> PathBuf {
        sibling(&self.remote_path(model), ".", ".verified")
    }

    /// The entries of the lock file (none if it does not exist).
    pub fn remote_entries(&self) -> Result<Vec<LockEntry>, ModelsError> {
        Ok(self.read_lock()?.models)
    }

    /// The lock entry of `model`, if it was pulled before.
    pub fn remote_entry(&self, model: &RemoteModel) -> Result<Option<LockEntry>, ModelsError> {
        Ok(self
            .read_lock()?
            .models
            .into_iter()
            .find(|e| e.spec == model.spec))
    }

    fn read_lock(&self) -> Result<LockFile, ModelsError> {
        let path = self.remote_lock_path();
        let text = match std::fs::read_to_string(&path) {
            Ok(t) => t,
            Err(e) if e.kind() == std::io::ErrorKind::NotFound => return Ok(LockFile::default()),
            Err(e) => return Err(ModelsError::io(&path, e)),
        };
        let bad = |message: String| ModelsError::LockFile {
            path: path.clone(),
            message,
        };
        let lock: LockFile = toml::from_str(&text).map_err(|e| bad(e.to_string()))?;
        if lock.version != LOCK_VERSION {
            return Err(bad(format!(
                "version {} is not supported (expected {LOCK_VERSION})",
                lock.version
            )));
        }
        for e in &lock.models {
            if parse_sha256(&e.sha256).ok().as_deref() != Some(e.sha256.as_str()) {
                return Err(bad(format!("`{}`: bad sha256", e.spec)));
            }
            let model = RemoteModel::parse(&e.spec).map_err(|err| bad(err.to_string()))?;
            if model.spec != e.spec {
                return Err(bad(format!("`{}` is not a canonical spec", e.spec)));
            }
        }
        Ok(lock)
    }

    /// Adds or replaces the entry of its spec, under an exclusive lock of the lock
    /// file's guard (`.remote-models.lock.guard`), written to a temporary file and
    /// renamed into place.
    fn record(&self, entry: LockEntry) -> Result<(), ModelsError> {
        let dir = self.dir_for(ArtifactKind::Model);
        std::fs::create_dir_all(&dir).map_err(|e| ModelsError::io(&dir, e))?;
        let guard_path = dir.join(format!(".{REMOTE_LOCK_FILE}.guard"));
        let guard = OpenOptions::new()
            .create(true)
            .truncate(false)
            .write(true)
            .open(&guard_path)
            .map_err(|e| ModelsError::io(&guard_path, e))?;
        lock_blocking(&guard).map_err(|e| ModelsError::io(&guard_path, e))?;
        let mut lock = self.read_lock()?;
        lock.version = LOCK_VERSION;
        lock.models.retain(|e| e.spec != entry.spec);
        lock.models.push(entry);
        lock.models.sort_by(|a, b| a.spec.cmp(&b.spec));
        let path = self.remote_lock_path();
        let body = toml::to_string_pretty(&lock).map_err(|e| ModelsError::LockFile {
            path: path.clone(),
            message: e.to_string(),
        })?;
        let text = format!(
            "# GGUF files pulled by `hf:` spec or URL, with the SHA-256 each is checked against.\n\
             # trust = \"first-use\": the hash of the first download (trust on first use);\n\
             # trust = \"pinned\": the hash given with --sha256. Written by optillm pull.\n\n{body}"
        );
        let mut tmp = tempfile::Builder::new()
            .prefix(&format!(".{REMOTE_LOCK_FILE}-"))
            .tempfile_in(&dir)
            .map_err(|e| ModelsError::io(&dir, e))?;
        tmp.write_all(text.as_bytes())
            .and_then(|()| tmp.as_file().sync_all())
            .map_err(|e| ModelsError::io(tmp.path(), e))?;
        tmp.persist(&path)
            .map_err(|e| ModelsError::io(&path, e.error))?;
        drop(guard);
        Ok(())
    }

    /// What the cache holds of `model` against its lock entry (cheap: metadata and the
    /// marker). Without an entry a present file is [`LocalState::Unverified`].
    pub fn remote_state(&self, model: &RemoteModel, entry: Option<&LockEntry>) -> LocalState {
        let path = self.remote_path(model);
        let Ok(meta) = std::fs::metadata(&path) else {
            return LocalState::Missing;
        };
        if !meta.is_file() {
            return LocalState::Missing;
        }
        let Some(entry) = entry else {
            return LocalState::Unverified;
        };
        if meta.len() != entry.size {
            return LocalState::WrongSize { actual: meta.len() };
        }
        match std::fs::read_to_string(self.remote_marker_path(model)) {
            Ok(text) if text == marker_text(&entry.sha256, &meta) => LocalState::Verified,
            _ => LocalState::Unverified,
        }
    }

    /// Every entry of the lock file with its path and local state.
    pub fn list_remote(&self) -> Result<Vec<ListedRemote>, ModelsError> {
        let mut rows = Vec::new();
        for entry in self.read_lock()?.models {
            let model = RemoteModel::parse(&entry.spec)?;
            rows.push(ListedRemote {
                path: self.remote_path(&model),
                state: self.remote_state(&model, Some(&entry)),
                model,
                entry,
            });
        }
        Ok(rows)
    }

    /// The pulled model whose file name is `file_name` (a bare name such as
    /// `qwen2.5-0.5b-instruct-q4_k_m.gguf`), if exactly one is; several are
    /// [`ModelsError::AmbiguousFile`].
    pub fn find_remote_file(&self, file_name: &str) -> Result<Option<RemoteModel>, ModelsError> {
        let mut found = Vec::new();
        for entry in self.read_lock()?.models {
            let model = RemoteModel::parse(&entry.spec)?;
            if model.file_name() == file_name {
                found.push(model);
            }
        }
        match found.len() {
            0 => Ok(None),
            1 => Ok(found.pop()),
            _ => Err(ModelsError::AmbiguousFile {
                name: file_name.to_string(),
                specs: found.iter().map(|m| m.spec.clone()).collect(),
            }),
        }
    }

    /// Forgets that the cached file of `model` was checked, so that the next
    /// [`Cache::ensure_remote`] re-hashes it.
    pub fn unverify_remote(&self, model: &RemoteModel) -> Result<(), ModelsError> {
        let marker = self.remote_marker_path(model);
        match std::fs::remove_file(&marker) {
            Err(e) if e.kind() != std::io::ErrorKind::NotFound => Err(ModelsError::io(marker, e)),
            _ => Ok(()),
        }
    }

    /// Re-hashes the cached file of `model` against its lock entry: its path if it
    /// matches (and its marker is written), else [`ModelsError::TofuMismatch`] or
    /// [`ModelsError::HashMismatch`] (pinned) and the marker is removed. A model never
    /// pulled is [`ModelsError::UnknownArtifact`]; a missing file [`ModelsError::Io`].
    pub async fn verify_remote(
        &self,
        model: &RemoteModel,
        progress: &dyn Progress,
    ) -> Result<PathBuf, ModelsError> {
        let Some(entry) = self.remote_entry(model)? else {
            return Err(ModelsError::UnknownArtifact {
                name: model.spec.clone(),
                known: self
                    .read_lock()?
                    .models
                    .into_iter()
                    .map(|e| e.spec)
                    .collect(),
            });
        };
        self.unverify_remote(model)?;
        let path = self.remote_path(model);
        let (size, sha) = hash_with_progress(&path, model.file_name(), progress).await?;
        if size != entry.size || sha != entry.sha256 {
            return Err(self.mismatch(model, &entry, size, sha));
        }
        self.write_remote_marker(model, &entry.sha256)?;
        Ok(path)
    }

    fn mismatch(
        &self,
        model: &RemoteModel,
        entry: &LockEntry,
        size: u64,
        sha: String,
    ) -> ModelsError {
        if size != entry.size && entry.trust == Trust::Pinned {
            return ModelsError::SizeMismatch {
                what: model.spec.clone(),
                expected: entry.size,
                actual: size,
            };
        }
        match entry.trust {
            Trust::FirstUse => ModelsError::TofuMismatch {
                spec: model.spec.clone(),
                recorded: entry.sha256.clone(),
                actual: sha,
                lock: self.remote_lock_path(),
            },
            Trust::Pinned => ModelsError::HashMismatch {
                what: model.spec.clone(),
                expected: entry.sha256.clone(),
                actual: sha,
            },
        }
    }

    fn write_remote_marker(&self, model: &RemoteModel, sha256: &str) -> Result<(), ModelsError> {
        let path = self.remote_path(model);
        let meta = std::fs::metadata(&path).map_err(|e| ModelsError::io(&path, e))?;
        let marker = self.remote_marker_path(model);
        std::fs::write(&marker, marker_text(sha256, &meta)).map_err(|e| ModelsError::io(&marker, e))
    }

    /// The cached, checked file of `model`, downloading it if needed.
    ///
    /// The hash it must have is `sha256` if given, else the one recorded in the lock
    /// file when it was first pulled; with neither, the first download's hash is
    /// recorded (trust on first use, [`TrustOutcome::Recorded`]). A cached file is
    /// used if its marker says it was checked against that hash; else it is re-hashed,
    /// and downloaded again if it does not match. A download is checked (GGUF magic,
    /// size limit, then hash) before it is renamed into place; one with the wrong hash
    /// is removed and gives [`ModelsError::HashMismatch`] (against `sha256`) or
    /// [`ModelsError::TofuMismatch`] (against the lock file), and the lock file is
    /// left as it was. A dropped connection leaves a partial file that the next call
    /// resumes with an HTTP range request.
    pub async fn ensure_remote(
        &self,
        model: &RemoteModel,
        sha256: Option<&str>,
        progress: &dyn Progress,
    ) -> Result<RemotePulled, ModelsError> {
        let pin = sha256.map(parse_sha256).transpose()?;
        let entry = self.remote_entry(model)?;
        let lock = self.remote_lock_path();
        // The hash to check against, and where it comes from.
        let expected: Option<(String, TrustOutcome)> = match (&pin, &entry) {
            (Some(p), _) => Some((p.clone(), TrustOutcome::MatchedPin)),
            (None, Some(e)) => Some((
                e.sha256.clone(),
                match e.trust {
                    Trust::Pinned => TrustOutcome::MatchedPin,
                    Trust::FirstUse => TrustOutcome::MatchedFirstUse,
                },
            )),
            (None, None) => None,
        };
        let path = self.remote_path(model);
        // The cached file, if it has the expected hash.
        if let (Some((sha, outcome)), Some(e)) = (&expected, &entry) {
            if e.sha256 == *sha {
                let ok = match self.remote_state(model, Some(e)) {
                    LocalState::Verified => true,
                    LocalState::Unverified => match self.verify_remote(model, progress).await {
                        Ok(_) => true,
                        Err(error) => {
                            warn!(model = %model, error = %error, "the cached file does not match the lock file: downloading it again");
                            false
                        }
                    },
                    _ => false,
                };
                if ok {
                    // A first-use hash confirmed by the caller becomes pinned.
                    if pin.is_some() && e.trust != Trust::Pinned {
                        self.record(LockEntry {
                            trust: Trust::Pinned,
                            recorded: unix_now(),
                            ..e.clone()
                        })?;
                    }
                    return Ok(RemotePulled {
                        path,
                        size: e.size,
                        sha256: e.sha256.clone(),
                        trust: *outcome,
                        downloaded: false,
                        resumed_from: None,
                        lock,
                    });
                }
            }
        }
        let endpoint = self.options.hf_endpoint.clone().unwrap_or_else(hf_endpoint);
        let url = model.url(&endpoint)?;
        // A pinned size fails early; a first-use one is left to the hash check, whose
        // error says what trust on first use found.
        let expected_size = match (&pin, &entry) {
            (None, Some(e)) if e.trust == Trust::Pinned => Some(e.size),
            _ => None,
        };
        let expected_sha = expected.as_ref().map(|(s, _)| s.as_str());
        let fetched = self
            .fetch_remote(model, &url, expected_size, expected_sha, progress)
            .await?;
        // `fetch_remote` removed a download of the wrong hash and returned its error.
        let trust = match &expected {
            Some((_, outcome)) => *outcome,
            None => TrustOutcome::Recorded,
        };
        let new_entry = LockEntry {
            spec: model.spec.clone(),
            url: url.to_string(),
            size: fetched.size,
            sha256: fetched.sha256.clone(),
            trust: if pin.is_some() || entry.as_ref().is_some_and(|e| e.trust == Trust::Pinned) {
                Trust::Pinned
            } else {
                Trust::FirstUse
            },
            recorded: unix_now(),
        };
        let changed = entry.as_ref().is_none_or(|e| {
            e.sha256 != new_entry.sha256 || e.size != new_entry.size || e.trust != new_entry.trust
        });
        if changed {
            self.record(new_entry)?;
        }
        info!(model = %model, path = %path.display(), "checked and in place");
        progress.finished(model.spec(), &path);
        Ok(RemotePulled {
            path,
            size: fetched.size,
            sha256: fetched.sha256,
            trust,
            downloaded: true,
            resumed_from: fetched.resumed_from,
            lock,
        })
    }

    /// Downloads (or resumes) into the partial file, checks it, renames it into place
    /// and writes its marker.
    async fn fetch_remote(
        &self,
        model: &RemoteModel,
        url: &Url,
        expected_size: Option<u64>,
        expected_sha: Option<&str>,
        progress: &dyn Progress,
    ) -> Result<Fetched, ModelsError> {
        let dest = self.remote_path(model);
        let dir = dest
            .parent()
            .map(Path::to_path_buf)
            .unwrap_or_else(|| self.dir_for(ArtifactKind::Model));
        tokio::fs::create_dir_all(&dir)
            .await
            .map_err(|e| ModelsError::io(&dir, e))?;
        let part = Part::open(&dest)?;
        let client = reqwest::Client::builder()
            .connect_timeout(self.options.connect_timeout)
            .read_timeout(self.options.read_timeout)
            .redirect(reqwest::redirect::Policy::none())
            .user_agent(concat!("optillm-rs/", env!("CARGO_PKG_VERSION")))
            .build()
            .map_err(ModelsError::Client)?;
        let job = Job {
            client: &client,
            url,
            label: model.spec(),
            expected_size,
            // Resuming is safe when the final hash is known, or when the server names
            // the version of the file it continues (If-Range).
            hash_known: expected_sha.is_some(),
            options: &self.options,
            progress,
        };
        let result = job.run(&part).await;
        let fetched = match result {
            Ok(f) => f,
            Err(e) => {
                if keeps_partial(&e) && part.len().is_ok_and(|n| n > 0) {
                    info!(model = %model, error = %e, "download interrupted; the next pull resumes it");
                } else {
                    part.discard();
                }
                return Err(e);
            }
        };
        if let Some(sha) = expected_sha {
            if fetched.sha256 != sha {
                part.discard();
                let entry = self.remote_entry(model)?;
                return Err(match entry {
                    Some(e) if e.sha256 == sha && e.trust == Trust::FirstUse => {
                        ModelsError::TofuMismatch {
                            spec: model.spec.clone(),
                            recorded: sha.to_string(),
                            actual: fetched.sha256,
                            lock: self.remote_lock_path(),
                        }
                    }
                    _ => ModelsError::HashMismatch {
                        what: model.spec.clone(),
                        expected: sha.to_string(),
                        actual: fetched.sha256,
                    },
                });
            }
        }
        self.unverify_remote(model)?;
        part.persist(&dest)?;
        self.write_remote_marker(model, &fetched.sha256)?;
        Ok(fetched)
    }
}

/// Errors after which the partial file is kept for the next pull to resume.
fn keeps_partial(e: &ModelsError) -> bool {
    matches!(
        e,
        ModelsError::Request { .. } | ModelsError::HttpStatus { .. } | ModelsError::Io { .. }
    )
}

/// `dir/{prefix}{file}{suffix}` for `path = dir/file`.
fn sibling(path: &Path, prefix: &str, suffix: &str) -> PathBuf {
    let name = path
        .file_name()
        .map(|n| n.to_string_lossy().into_owned())
        .unwrap_or_default();
    path.with_file_name(format!("{prefix}{name}{suffix}"))
}

#[cfg(unix)]
fn lock_blocking(file: &File) -> std::io::Result<()> {
    use rustix::fs::{FlockOperation, flock};
    match flock(file, FlockOperation::LockExclusive) {
        Ok(()) => Ok(()),
        // No locks on this file system: go on unlocked.
        Err(e) if e == rustix::io::Errno::NOLCK || e == rustix::io::Errno::NOSYS => Ok(()),
        Err(e) => Err(e.into()),
    }
}

#[cfg(not(unix))]
fn lock_blocking(_: &File) -> std::io::Result<()> {
    Ok(())
}

/// The result of a download.
#[derive(Debug)]
struct Fetched {
    size: u64,
    sha256: String,
    resumed_from: Option<u64>,
}

/// The partial file of a download (`.FILE.part`, locked while open) and its state
/// (`.FILE.part.meta`).
struct Part {
    path: PathBuf,
    meta_path: PathBuf,
    file: File,
}

impl Part {
    fn open(dest: &Path) -> Result<Part, ModelsError> {
        let path = sibling(dest, ".", ".part");
        let meta_path = sibling(dest, ".", ".part.meta");
        let file = OpenOptions::new()
            .create(true)
            .truncate(false)
            .read(true)
            .write(true)
            .open(&path)
            .map_err(|e| ModelsError::io(&path, e))?;
        if let Lock::Busy = try_lock(&file) {
            return Err(ModelsError::PullInProgress {
                path: dest.to_path_buf(),
            });
        }
        Ok(Part {
            path,
            meta_path,
            file,
        })
    }

    fn len(&self) -> Result<u64, ModelsError> {
        self.file
            .metadata()
            .map(|m| m.len())
            .map_err(|e| ModelsError::io(&self.path, e))
    }

    fn read_meta(&self) -> Option<PartMeta> {
        let text = std::fs::read_to_string(&self.meta_path).ok()?;
        toml::from_str(&text).ok()
    }

    fn write_meta(&self, meta: &PartMeta) -> Result<(), ModelsError> {
        let text = toml::to_string(meta)
            .map_err(|e| ModelsError::io(&self.meta_path, std::io::Error::other(e.to_string())))?;
        std::fs::write(&self.meta_path, text).map_err(|e| ModelsError::io(&self.meta_path, e))
    }

    /// Removes the partial file and its state.
    fn discard(self) {
        for p in [&self.path, &self.meta_path] {
            if let Err(e) = std::fs::remove_file(p) {
                if e.kind() != std::io::ErrorKind::NotFound {
                    warn!(path = %p.display(), error = %e, "cannot remove a partial download");
                }
            }
        }
    }

    /// Renames the complete file into place (still locked, so no other pull touches it).
    fn persist(self, dest: &Path) -> Result<(), ModelsError> {
        self.file
            .sync_all()
            .map_err(|e| ModelsError::io(&self.path, e))?;
        std::fs::rename(&self.path, dest).map_err(|e| ModelsError::io(dest, e))?;
        let _ = std::fs::remove_file(&self.meta_path);
        Ok(())
    }
}

/// One download of one URL into a [`Part`].
struct Job<'a> {
    client: &'a reqwest::Client,
    url: &'a Url,
    label: &'a str,
    expected_size: Option<u64>,
    hash_known: bool,
    options: &'a crate::cache::DownloadOptions,
    progress: &'a dyn Progress,
}

/// How one attempt ended.
enum Attempt {
    Done(Fetched),
    /// The connection dropped after some bytes arrived; resume if attempts remain.
    Dropped(ModelsError),
    /// `416`: the partial file is not a prefix the server knows; restart.
    Restart,
}

impl Job<'_> {
    async fn run(&self, part: &Part) -> Result<Fetched, ModelsError> {
        // `part` is only borrowed; its file is cloned for writing.
        let mut writer = PartWriter {
            file: part
                .file
                .try_clone()
                .map_err(|e| ModelsError::io(&part.path, e))?,
            path: part.path.clone(),
        };
        let mut resumes = 0u32;
        let mut restarts = 0u32;
        loop {
            match self.attempt(part, &mut writer).await? {
                Attempt::Done(f) => return Ok(f),
                Attempt::Restart if restarts == 0 => {
                    restarts += 1;
                    writer.truncate()?;
                    let _ = std::fs::remove_file(&part.meta_path);
                }
                Attempt::Restart => {
                    return Err(ModelsError::HttpStatus {
                        url: self.url.to_string(),
                        status: StatusCode::RANGE_NOT_SATISFIABLE.as_u16(),
                    });
                }
                Attempt::Dropped(e) if resumes < self.options.resume_attempts => {
                    resumes += 1;
                    warn!(url = %self.url, error = %e, attempt = resumes, "the download dropped; resuming");
                    tokio::time::sleep(Duration::from_millis(250 * u64::from(resumes))).await;
                }
                Attempt::Dropped(e) => return Err(e),
            }
        }
    }

    async fn attempt(&self, part: &Part, writer: &mut PartWriter) -> Result<Attempt, ModelsError> {
        let url_text = self.url.to_string();
        let mut have = part.len()?;
        let meta = self.checked_meta(part, have);
        if have > 0 && meta.is_none() {
            info!(path = %part.path.display(), "cannot resume this partial file: starting again");
            writer.truncate()?;
            have = 0;
        }
        let validator = meta.as_ref().and_then(|m| m.validator.clone());
        let response = self.get(have, validator.as_deref()).await?;
        let status = response.status();
        let (start, total) = if status == StatusCode::PARTIAL_CONTENT {
            let header = response
                .headers()
                .get(CONTENT_RANGE)
                .and_then(|v| v.to_str().ok())
                .unwrap_or_default()
                .to_string();
            match parse_content_range(&header) {
                Some((start, total)) if start == have => {
                    (start, total.or(meta.as_ref().and_then(|m| m.total)))
                }
                _ => {
                    return Err(ModelsError::BadContentRange {
                        url: url_text,
                        header,
                        offset: have,
                    });
                }
            }
        } else if status == StatusCode::OK {
            (0, response.content_length())
        } else if status == StatusCode::RANGE_NOT_SATISFIABLE && have > 0 {
            return Ok(Attempt::Restart);
        } else {
            return Err(ModelsError::HttpStatus {
                url: url_text,
                status: status.as_u16(),
            });
        };
        if let Some(total) = total {
            if total > self.options.max_file_size {
                return Err(ModelsError::TooLarge {
                    what: url_text,
                    size: total,
                    max: self.options.max_file_size,
                });
            }
            if let Some(expected) = self.expected_size.filter(|e| *e != total) {
                return Err(ModelsError::SizeMismatch {
                    what: url_text,
                    expected,
                    actual: total,
                });
            }
        }
        if start == 0 && have > 0 {
            info!(url = %self.url, "the server sent the whole file: starting again");
            writer.truncate()?;
        }
        let validator = response
            .headers()
            .get(ETAG)
            .and_then(|v| v.to_str().ok())
            .filter(|v| !v.starts_with("W/"))
            .or_else(|| {
                response
                    .headers()
                    .get(LAST_MODIFIED)
                    .and_then(|v| v.to_str().ok())
            })
            .map(str::to_string);
        part.write_meta(&PartMeta {
            url: url_text.clone(),
            validator,
            total,
        })?;
        // The bytes already there: hashed again (and their magic checked).
        let mut hasher = Sha256::new();
        let mut head: Vec<u8> = Vec::with_capacity(4);
        if start > 0 {
            let (h, first) = hash_prefix(&part.path, start, self.label, self.progress).await?;
            hasher = h;
            head = first;
            check_magic(&head, self.label)?;
        }
        self.stream(response, writer, start, total, hasher, head)
            .await
    }

    /// The stored state if the partial file can be resumed from it.
    fn checked_meta(&self, part: &Part, have: u64) -> Option<PartMeta> {
        let meta = part.read_meta()?;
        let fits = meta.url == self.url.as_str()
            && meta.total.is_none_or(|t| have <= t)
            && (self.hash_known || meta.validator.is_some());
        (fits && have > 0).then_some(meta)
    }

    /// A GET from byte `from`, following at most `max_redirects` redirects, each
    /// target checked like the first URL.
    async fn get(
        &self,
        from: u64,
        if_range: Option<&str>,
    ) -> Result<reqwest::Response, ModelsError> {
        let mut current = self.url.clone();
        let mut hops = 0usize;
        loop {
            check_transport(&current)?;
            let mut request = self.client.get(current.clone());
            if from > 0 {
                request = request.header(RANGE, format!("bytes={from}-"));
                if let Some(v) = if_range {
                    request = request.header(IF_RANGE, v);
                }
            }
            let response = request
                .send()
                .await
                .map_err(|source| ModelsError::Request {
                    url: current.to_string(),
                    source: source.without_url(),
                })?;
            let status = response.status();
            if !status.is_redirection() || status == StatusCode::NOT_MODIFIED {
                return Ok(response);
            }
            let bad = |reason: String| ModelsError::BadRedirect {
                url: current.to_string(),
                reason,
            };
            if hops >= self.options.max_redirects {
                return Err(bad(format!(
                    "more than {} redirects",
                    self.options.max_redirects
                )));
            }
            let location = response
                .headers()
                .get(LOCATION)
                .and_then(|v| v.to_str().ok())
                .ok_or_else(|| bad(format!("HTTP {} without a Location", status.as_u16())))?;
            current = current
                .join(location)
                .map_err(|e| bad(format!("bad Location `{location}`: {e}")))?;
            hops += 1;
        }
    }

    async fn stream(
        &self,
        mut response: reqwest::Response,
        writer: &mut PartWriter,
        start: u64,
        total: Option<u64>,
        mut hasher: Sha256,
        mut head: Vec<u8>,
    ) -> Result<Attempt, ModelsError> {
        let url_text = self.url.as_str();
        let report = |done| {
            self.progress.update(&ProgressEvent {
                artifact: self.label,
                stage: Stage::Download,
                item: url_text,
                done,
                total,
            })
        };
        report(start);
        let mut done = start;
        let limit = total.unwrap_or(self.options.max_file_size);
        loop {
            let chunk = match response.chunk().await {
                Ok(Some(chunk)) => chunk,
                Ok(None) => break,
                Err(source) => {
                    writer.flush()?;
                    let error = ModelsError::Request {
                        url: url_text.to_string(),
                        source: source.without_url(),
                    };
                    if done > start {
                        return Ok(Attempt::Dropped(error));
                    }
                    return Err(error);
                }
            };
            done += chunk.len() as u64;
            if done > limit {
                return Err(match total {
                    Some(t) => ModelsError::SizeMismatch {
                        what: url_text.to_string(),
                        expected: t,
                        actual: done,
                    },
                    None => ModelsError::TooLarge {
                        what: url_text.to_string(),
                        size: done,
                        max: limit,
                    },
                });
            }
            if head.len() < 4 {
                let need = 4 - head.len();
                head.extend(chunk.iter().take(need));
                if head.len() == 4 {
                    check_magic(&head, self.label)?;
                }
            }
            hasher.update(&chunk);
            writer.write(&chunk)?;
            report(done);
        }
        writer.flush()?;
        if let Some(t) = total.filter(|t| *t != done) {
            return Err(ModelsError::SizeMismatch {
                what: url_text.to_string(),
                expected: t,
                actual: done,
            });
        }
        check_magic(&head, self.label)?;
        Ok(Attempt::Done(Fetched {
            size: done,
            sha256: hex::encode(hasher.finalize()),
            resumed_from: (start > 0).then_some(start),
        }))
    }
}

/// Appends to the partial file.
struct PartWriter {
    file: File,
    path: PathBuf,
}

impl PartWriter {
    fn write(&mut self, bytes: &[u8]) -> Result<(), ModelsError> {
        self.file
            .seek(SeekFrom::End(0))
            .and_then(|_| self.file.write_all(bytes))
            .map_err(|e| ModelsError::io(&self.path, e))
    }

    fn flush(&mut self) -> Result<(), ModelsError> {
        self.file
            .flush()
            .map_err(|e| ModelsError::io(&self.path, e))
    }

    fn truncate(&mut self) -> Result<(), ModelsError> {
        self.file
            .set_len(0)
            .and_then(|()| self.file.seek(SeekFrom::Start(0)).map(|_| ()))
            .map_err(|e| ModelsError::io(&self.path, e))
    }
}

/// `bytes START-END/TOTAL` (TOTAL may be `*`): START and TOTAL.
fn parse_content_range(header: &str) -> Option<(u64, Option<u64>)> {
    let rest = header.trim().strip_prefix("bytes")?.trim_start();
    let (range, total) = rest.split_once('/')?;
    let (start, end) = range.split_once('-')?;
    let start: u64 = start.trim().parse().ok()?;
    let end: u64 = end.trim().parse().ok()?;
    if end < start {
        return None;
    }
    let total = match total.trim() {
        "*" => None,
        t => {
            let t: u64 = t.parse().ok()?;
            if end >= t {
                return None;
            }
            Some(t)
        }
    };
    Some((start, total))
}

fn check_magic(head: &[u8], what: &str) -> Result<(), ModelsError> {
    if head == GGUF_MAGIC {
        return Ok(());
    }
    Err(ModelsError::NotGguf {
        what: what.to_string(),
        found: String::from_utf8_lossy(head).into_owned(),
    })
}

/// The hasher fed with the first `len` bytes of `path`, and its first 4 bytes.
async fn hash_prefix(
    path: &Path,
    len: u64,
    label: &str,
    progress: &dyn Progress,
) -> Result<(Sha256, Vec<u8>), ModelsError> {
    let owned = path.to_path_buf();
    let item = path
        .file_name()
        .map(|n| n.to_string_lossy().into_owned())
        .unwrap_or_default();
    crate::download::blocking_with_progress(
        move |report| {
            let file = File::open(&owned).map_err(|e| ModelsError::io(&owned, e))?;
            let mut reader = file.take(len);
            let mut hasher = Sha256::new();
            let mut head = Vec::with_capacity(4);
            let mut buf = vec![0u8; 1 << 20];
            let mut done = 0u64;
            loop {
                let n = reader
                    .read(&mut buf)
                    .map_err(|e| ModelsError::io(&owned, e))?;
                if n == 0 {
                    break;
                }
                let bytes = buf.get(..n).unwrap_or_default();
                if head.len() < 4 {
                    let need = 4 - head.len();
                    head.extend(bytes.iter().take(need));
                }
                hasher.update(bytes);
                done += n as u64;
                report(done);
            }
            if done != len {
                return Err(ModelsError::io(
                    &owned,
                    std::io::Error::other("the partial file shrank while it was read"),
                ));
            }
            Ok((hasher, head))
        },
        |done| {
            progress.update(&ProgressEvent {
                artifact: label,
                stage: Stage::Verify,
                item: &item,
                done,
                total: Some(len),
            })
        },
    )
    .await
}

/// Size and SHA-256 of a file, with [`Stage::Verify`] progress.
async fn hash_with_progress(
    path: &Path,
    label: &str,
    progress: &dyn Progress,
) -> Result<(u64, String), ModelsError> {
    let size = tokio::fs::metadata(path)
        .await
        .map_err(|e| ModelsError::io(path, e))?
        .len();
    let owned = path.to_path_buf();
    let sha = crate::download::blocking_with_progress(
        move |report| crate::cache::hash_file(&owned, report),
        |done| {
            progress.update(&ProgressEvent {
                artifact: label,
                stage: Stage::Verify,
                item: label,
                done,
                total: Some(size),
            })
        },
    )
    .await?;
    Ok((size, sha))
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn hf_specs_map_to_resolve_urls_and_cache_paths() {
        let m = RemoteModel::parse(
            "hf:Qwen/Qwen2.5-0.5B-Instruct-GGUF/qwen2.5-0.5b-instruct-q4_k_m.gguf",
        )
        .unwrap();
        assert_eq!(
            m.url("https://huggingface.co/").unwrap().as_str(),
            "https://huggingface.co/Qwen/Qwen2.5-0.5B-Instruct-GGUF/resolve/main/qwen2.5-0.5b-instruct-q4_k_m.gguf"
        );
        assert_eq!(
            m.relative_path(),
            Path::new("hf/Qwen/Qwen2.5-0.5B-Instruct-GGUF/main/qwen2.5-0.5b-instruct-q4_k_m.gguf")
        );
        assert_eq!(m.name(), "qwen2.5-0.5b-instruct-q4_k_m");
        let r = RemoteModel::parse("hf:o/r@v1.0/sub/f.GGUF").unwrap();
        assert_eq!(
            r.url("http://127.0.0.1:9").unwrap().as_str(),
            "http://127.0.0.1:9/o/r/resolve/v1.0/sub/f.GGUF"
        );
        // The endpoint must be https too (or loopback http).
        assert!(matches!(
            r.url("http://example.com"),
            Err(ModelsError::InsecureUrl { .. })
        ));
    }

    #[test]
    fn bad_specs_are_refused() {
        for spec in [
            "hf:o/r",
            "hf:o/r/",
            "hf:o/r/../x.gguf",
            "hf:o/../f.gguf",
            "hf:o/r/.hidden.gguf",
            "hf:o/r/a\\b.gguf",
            "hf:o/r/x.bin",
            "hf:o/r/a%2e%2e/x.gguf",
            "hf:/r/x.gguf",
            "hf:o/r@/x.gguf",
            "https://example.com/",
            "https://example.com/model.bin",
            "https://user:pw@example.com/m.gguf",
            "https://example.com/%2e%2e.gguf",
        ] {
            assert!(
                matches!(
                    RemoteModel::parse(spec),
                    Err(ModelsError::BadModelSpec { .. })
                ),
                "{spec}: {:?}",
                RemoteModel::parse(spec)
            );
        }
        for spec in [
            "http://example.com/m.gguf",
            "ftp://example.com/m.gguf",
            "file:///etc/m.gguf",
            "http://10.0.0.1/m.gguf",
        ] {
            assert!(
                matches!(
                    RemoteModel::parse(spec),
                    Err(ModelsError::InsecureUrl { .. })
                ),
                "{spec}"
            );
        }
    }

    #[test]
    fn url_specs_are_cached_per_url() {
        let a = RemoteModel::parse("https://Example.com/a/model.gguf#frag").unwrap();
        let b = RemoteModel::parse("https://example.com/b/model.gguf").unwrap();
        assert_eq!(a.spec(), "https://example.com/a/model.gguf");
        assert_ne!(a.relative_path(), b.relative_path());
        assert!(a.relative_path().starts_with("url/example.com"));
        assert_eq!(a.file_name(), "model.gguf");
        let l = RemoteModel::parse("http://[::1]:8080/m.gguf").unwrap();
        let p = l.relative_path();
        assert!(
            p.starts_with("url") && p.to_string_lossy().contains("_8080/"),
            "{p:?}"
        );
        assert_eq!(p.components().count(), 4, "{p:?}");
        assert!(RemoteModel::parse("http://localhost/m.gguf").is_ok());
    }

    #[test]
    fn content_ranges() {
        assert_eq!(parse_content_range("bytes 10-19/20"), Some((10, Some(20))));
        assert_eq!(parse_content_range("bytes 10-19/*"), Some((10, None)));
        assert_eq!(parse_content_range("bytes 10-19/15"), None);
        assert_eq!(parse_content_range("bytes 19-10/30"), None);
        assert_eq!(parse_content_range("items 0-1/2"), None);
        assert_eq!(parse_content_range(""), None);
    }

    #[test]
    fn sha256_input() {
        let h = "AB".repeat(32);
        assert_eq!(parse_sha256(&h).unwrap(), "ab".repeat(32));
        assert!(matches!(
            parse_sha256("abc"),
            Err(ModelsError::InvalidSha256 { .. })
        ));
    }
}
