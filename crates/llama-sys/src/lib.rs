//! Native GGUF inference for optillm-rs through llama.cpp ([`llama_cpp_2`]).
//!
//! [`LlamaBackend`] loads a GGUF model on a worker thread that owns the model and its
//! context (the llama.cpp context is not `Send`). Requests arrive on a bounded queue. A
//! request for `n` samples evaluates the prompt once, copies its KV cache to `n`
//! sequences and decodes all of them together, one batch per step, each with its own
//! sampler and seed. When the request bounds its length (`max_tokens`) and the n
//! sequences fit, they decode in a second context with one KV stream per sequence, so
//! each step attends over one sample's cells, not all n's.
//!
//! Requests that wait in the queue together decode together: when a round starts, the
//! requests behind the first join it while every one bounds its length, their samples fit
//! the `n_seq_max` sequences of a round and their cells fit the context. Each prompt is
//! evaluated into its own sequence, and every sample of every request is in the batch of
//! each step. A request arriving during a round waits for the next one.
//!
//! A request's [`ResponseFormat`](optillm_core::ResponseFormat) is honoured with
//! llama.cpp's grammar sampler (a JSON schema turned into GBNF by llama.cpp's converter),
//! one grammar state per sample; a schema or grammar llama.cpp refuses is
//! [`BackendError::InvalidFormat`] before decoding starts.

mod error;
mod session;
mod text;
mod worker;

use crossbeam_channel::{Sender, TrySendError};
use std::path::{Path, PathBuf};
use std::sync::atomic::{AtomicU64, Ordering};
use std::sync::{Arc, OnceLock};
use std::time::{Duration, Instant};

use async_trait::async_trait;
use optillm_core::{
    Backend, BackendCounter, BackendError, Capabilities, ChatRequest, CompletionStream, TokenJob,
    stream_channel,
};

pub use error::LlamaError;

/// Settings of the native backend.
#[derive(Debug, Clone, PartialEq)]
pub struct LlamaConfig {
    /// Name reported by [`Backend::model`] and in completions (default: the file stem).
    pub name: Option<String>,
    /// Context size in tokens, shared by all sequences of a request (`None`: the
    /// model's training context, at most 8192). Also the most cells of the second,
    /// per-stream context that n > 1 samples with `max_tokens` decode in.
    pub n_ctx: Option<u32>,
    /// Cells of KV cache allocated at load (`None`: [`N_CTX_START`], or `n_ctx` if
    /// smaller). The cache doubles, keeping its contents, when a request needs more, up
    /// to `n_ctx`, and stays at its largest size; `Some(n_ctx)` allocates it all up
    /// front as llama.cpp does.
    pub n_ctx_start: Option<u32>,
    /// Recent prompts, and then each sample's prompt and reply, whose KV cells are kept
    /// (saved beside the cache, in memory: each the size of its share of the cache, at
    /// most [`PREFIX_CACHE_BYTES`] together), so that a new prompt starts from the longest
    /// token prefix it shares with one of them (least recently used dropped first; 0 turns
    /// reuse off; at most [`PREFIX_CACHE_MAX`]). The main context and the per-stream one
    /// (n > 1 samples with `max_tokens`, or requests batched together) keep their own: a
    /// saved state restores only into a context of the same stream count.
    pub prefix_cache: u32,
    /// Type of the KV cache's keys and values: [`KvType::Q8_0`] halves its memory (it
    /// needs flash attention, so not with `flash_attention: Some(false)`).
    pub kv_type: KvType,
    /// CPU threads (`None`: all available cores). Never more than free cores.
    pub n_threads: Option<i32>,
    /// Largest number of tokens decoded in one batch (prompt chunks).
    pub n_batch: u32,
    /// Most sequences decoded together; larger `n` runs in rounds.
    pub n_seq_max: u32,
    /// Flash attention: `None` lets llama.cpp decide.
    pub flash_attention: Option<bool>,
    /// Layers offloaded to a GPU (only with a GPU feature).
    pub n_gpu_layers: u32,
    /// Requests waiting beyond the one in progress; more are refused with `Busy`. Token
    /// jobs (which run beside the generation requests) have a queue of this size too.
    pub queue: usize,
    /// After this long with no work, the worker frees the KV cache requests grew: the
    /// per-stream context of n > 1 samples (with its kept prompts), the token lane's
    /// context of token-level jobs (with its kept prompts) and the main context's cells
    /// beyond `n_ctx_start` (its kept prompts stay: they are saved beside the cache). The next request that needs them makes them again. `None`: keep them
    /// (llama.cpp's server keeps its whole cache). Default [`RELEASE_AFTER`].
    pub release_after: Option<Duration>,
    /// Token-level jobs (`calculator`, `choice_likelihood`, ...) that run at once, each
    /// in a context of its own made when needed (freed with the other grown caches when
    /// idle); their steps take turns on the worker thread. More wait in their queue.
    /// Default [`TOKEN_JOBS`], at most [`TOKEN_JOBS_MAX`].
    pub token_jobs: u32,
}

/// How long an idle worker keeps the KV cache requests grew by default
/// ([`LlamaConfig::release_after`]).
pub const RELEASE_AFTER: Duration = Duration::from_secs(60);

/// Token-level jobs that run at once by default ([`LlamaConfig::token_jobs`]).
pub const TOKEN_JOBS: u32 = 2;
/// Most token-level jobs at once ([`LlamaConfig::token_jobs`]): each holds a context.
pub const TOKEN_JOBS_MAX: u32 = 16;

/// Most prompts kept for prefix reuse ([`LlamaConfig::prefix_cache`]).
pub const PREFIX_CACHE_MAX: u32 = 64;
/// Most bytes of saved KV cells the kept prompts hold together (32 MiB: about 1,450
/// tokens of SmolLM2-135M's f16 cache, 2,700 of Qwen2.5-0.5B's); the least recently used
/// go first, and a longer prompt is not kept.
pub const PREFIX_CACHE_BYTES: usize = 32 << 20;
/// Cells of KV cache allocated at load by default ([`LlamaConfig::n_ctx_start`]).
pub const N_CTX_START: u32 = 1024;
/// Smallest context size accepted ([`LlamaConfig::n_ctx`]); it must also be at least
/// [`LlamaConfig::n_seq_max`] (llama.cpp reserves one output row per sequence in a batch
/// of at most `n_ctx` tokens and aborts otherwise). llama.cpp rounds any context up to
/// 256 cells.
pub const N_CTX_MIN: u32 = 16;
/// Largest context size accepted when the model's trained context is unknown; a model's
/// own trained context (`<arch>.context_length` in its GGUF header) bounds it otherwise.
pub const N_CTX_MAX: u32 = 1 << 20;
/// Most CPU threads (llama.cpp's `GGML_MAX_N_THREADS`).
pub const N_THREADS_MAX: i32 = 512;
/// Largest batch ([`LlamaConfig::n_batch`]): the smallest per-stream context the worker
/// makes has 512 cells, and a batch must fit every context it is used with.
pub const N_BATCH_MAX: u32 = 512;
/// Most sequences decoded together (llama.cpp's `LLAMA_MAX_SEQ`).
pub const N_SEQ_MAX_MAX: u32 = 256;
/// Most requests waiting in the queue ([`LlamaConfig::queue`]; its slots are allocated
/// up front).
pub const QUEUE_MAX: usize = 1 << 16;

/// Type of the KV cache's entries ([`LlamaConfig::kv_type`]).
#[derive(Debug, Clone, Copy, Default, PartialEq, Eq)]
pub enum KvType {
    /// 16-bit floats, llama.cpp's default.
    #[default]
    F16,
    /// 8-bit blocks (`q8_0`): half the memory of `F16`, close to its answers.
    Q8_0,
}

impl KvType {
    /// The name llama.cpp's `--cache-type-k` uses: `f16`, `q8_0`.
    pub fn as_str(self) -> &'static str {
        match self {
            KvType::F16 => "f16",
            KvType::Q8_0 => "q8_0",
        }
    }
}

impl std::str::FromStr for KvType {
    type Err = String;

    fn from_str(s: &str) -> Result<Self, Self::Err> {
        match s.trim().to_ascii_lowercase().as_str() {
            "f16" => Ok(KvType::F16),
            "q8_0" | "q8" => Ok(KvType::Q8_0),
            _ => Err(format!("{s:?} is not a KV cache type (f16 or q8_0)")),
        }
    }
}

/// A setting of [`LlamaConfig`] outside what llama.cpp (or this backend) accepts.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
#[error("{setting} = {value} is out of range: allowed {allowed}")]
#[non_exhaustive]
pub struct ConfigError {
    /// The setting, as named in [`LlamaConfig`].
    pub setting: &'static str,
    /// The value given.
    pub value: String,
    /// The allowed values, e.g. `1..=512`.
    pub allowed: String,
}

impl ConfigError {
    fn new(setting: &'static str, value: impl ToString, allowed: impl Into<String>) -> Self {
        ConfigError {
            setting,
            value: value.to_string(),
            allowed: allowed.into(),
        }
    }
}

impl LlamaConfig {
    /// Checks every numeric setting against the ranges llama.cpp accepts (see
    /// [`N_CTX_MIN`], [`N_CTX_MAX`], [`N_THREADS_MAX`], [`N_BATCH_MAX`], [`N_SEQ_MAX_MAX`],
    /// [`QUEUE_MAX`]); [`LlamaBackend::load`] calls it before any llama.cpp call and also
    /// bounds `n_ctx` by the model's trained context.
    pub fn validate(&self) -> Result<(), ConfigError> {
        if !(1..=N_SEQ_MAX_MAX).contains(&self.n_seq_max) {
            return Err(ConfigError::new(
                "n_seq_max",
                self.n_seq_max,
                format!("1..={N_SEQ_MAX_MAX}"),
            ));
        }
        if !(1..=N_BATCH_MAX).contains(&self.n_batch) || self.n_batch < self.n_seq_max {
            return Err(ConfigError::new(
                "n_batch",
                self.n_batch,
                format!(
                    "{}..={N_BATCH_MAX} (at least n_seq_max = {})",
                    self.n_seq_max, self.n_seq_max
                ),
            ));
        }
        if let Some(n_ctx) = self.n_ctx {
            let min = N_CTX_MIN.max(self.n_seq_max);
            if !(min..=N_CTX_MAX).contains(&n_ctx) {
                return Err(ConfigError::new(
                    "n_ctx",
                    n_ctx,
                    format!(
                        "{min}..={N_CTX_MAX} tokens (at least n_seq_max = {})",
                        self.n_seq_max
                    ),
                ));
            }
        }
        if let Some(start) = self.n_ctx_start {
            let min = N_CTX_MIN.max(self.n_seq_max);
            let max = self.n_ctx.unwrap_or(N_CTX_MAX);
            if !(min..=max).contains(&start) {
                return Err(ConfigError::new(
                    "n_ctx_start",
                    start,
                    format!("{min}..={max} tokens (at least n_seq_max, at most n_ctx)"),
                ));
            }
        }
        if self.prefix_cache > PREFIX_CACHE_MAX {
            return Err(ConfigError::new(
                "prefix_cache",
                self.prefix_cache,
                format!("0..={PREFIX_CACHE_MAX}"),
            ));
        }
        if self.kv_type == KvType::Q8_0 && self.flash_attention == Some(false) {
            return Err(ConfigError::new(
                "kv_type",
                self.kv_type.as_str(),
                "f16 without flash attention (llama.cpp quantises the V cache only with it)",
            ));
        }
        if let Some(t) = self.n_threads {
            if !(1..=N_THREADS_MAX).contains(&t) {
                return Err(ConfigError::new(
                    "n_threads",
                    t,
                    format!("1..={N_THREADS_MAX}"),
                ));
            }
        }
        if !(1..=TOKEN_JOBS_MAX).contains(&self.token_jobs) {
            return Err(ConfigError::new(
                "token_jobs",
                self.token_jobs,
                format!("1..={TOKEN_JOBS_MAX}"),
            ));
        }
        if self.queue > QUEUE_MAX {
            return Err(ConfigError::new(
                "queue",
                self.queue,
                format!("0..={QUEUE_MAX}"),
            ));
        }
        Ok(())
    }

    /// [`LlamaConfig::validate`], then `n_ctx` against the model's trained context
    /// (`n_ctx_train`, when known).
    pub fn validate_for(&self, n_ctx_train: Option<u32>) -> Result<(), ConfigError> {
        self.validate()?;
        if let (Some(n_ctx), Some(train)) = (self.n_ctx, n_ctx_train) {
            let min = N_CTX_MIN.max(self.n_seq_max);
            // A model trained on fewer cells than the minimum still gets the minimum.
            let max = train.clamp(min, N_CTX_MAX);
            if n_ctx > max {
                return Err(ConfigError::new(
                    "n_ctx",
                    n_ctx,
                    format!("{min}..={max} tokens (the model's trained context is {train})"),
                ));
            }
        }
        Ok(())
    }
}

impl Default for LlamaConfig {
    fn default() -> Self {
        Self {
            name: None,
            n_ctx: None,
            n_ctx_start: None,
            prefix_cache: 4,
            kv_type: KvType::F16,
            n_threads: None,
            n_batch: 512,
            n_seq_max: 16,
            flash_attention: None,
            n_gpu_layers: 0,
            queue: 64,
            release_after: Some(RELEASE_AFTER),
            token_jobs: TOKEN_JOBS,
        }
    }
}

/// A generation request, for the worker's queue.
pub(crate) struct Job {
    pub(crate) request: ChatRequest,
    pub(crate) sender: optillm_core::StreamSender,
    pub(crate) submitted: Instant,
}

/// A token-level job, for the token lane's queue.
pub(crate) struct TokenWork {
    pub(crate) request: ChatRequest,
    pub(crate) job: TokenJob,
    pub(crate) reply: tokio::sync::oneshot::Sender<Result<(), BackendError>>,
}

/// What the worker reports once the model is loaded.
#[derive(Debug, Clone)]
pub(crate) struct Loaded {
    pub n_ctx: u32,
    pub n_ctx_train: u32,
    pub n_params: u64,
    pub size: u64,
}

/// Counters of the worker, for monitoring and tests.
#[derive(Debug, Default)]
pub struct Stats {
    /// Generation requests finished (completed, failed or cancelled).
    pub requests: AtomicU64,
    /// Requests whose consumer dropped the stream before the end.
    pub cancelled: AtomicU64,
    /// Tokens sampled, over all requests.
    pub tokens_generated: AtomicU64,
    /// Token-level jobs run.
    pub token_jobs: AtomicU64,
    /// Cells of the token lane's contexts now, together (0: there is none; one is made
    /// for each token job running beside others, and they are dropped with the other
    /// grown caches when idle).
    pub token_cells: AtomicU64,
    /// Rounds of n > 1 samples decoded in the per-stream context (one KV stream per
    /// sample) rather than the shared cache.
    pub stream_rounds: AtomicU64,
    /// Requests decoded in one round together with others.
    pub batched_requests: AtomicU64,
    /// Times the main context's KV cache grew.
    pub context_grown: AtomicU64,
    /// Cells of the main context's KV cache now (it grows on demand up to `n_ctx`).
    pub context_cells: AtomicU64,
    /// Cells of the per-stream context now, all streams together (0: there is none).
    pub stream_cells: AtomicU64,
    /// Times the idle worker freed the KV cache requests had grown
    /// ([`LlamaConfig::release_after`]).
    pub idle_releases: AtomicU64,
    /// Prompt tokens evaluated (those taken from a kept prompt are not).
    pub prompt_tokens_evaluated: AtomicU64,
    /// Prompts that started from a kept prompt's cells.
    pub prefix_hits: AtomicU64,
    /// Prompt tokens taken from kept prompts' cells instead of evaluated.
    pub prefix_tokens_reused: AtomicU64,
}

/// The native llama.cpp backend.
#[derive(Debug)]
pub struct LlamaBackend {
    stats: Arc<Stats>,
    name: String,
    path: PathBuf,
    jobs: Sender<Job>,
    token_jobs: Sender<TokenWork>,
    loaded: Loaded,
    load_time: std::time::Duration,
}

static LLAMA: OnceLock<Result<llama_cpp_2::llama_backend::LlamaBackend, String>> = OnceLock::new();

/// The process-wide llama.cpp backend (initialised once, logs routed to `tracing`).
pub(crate) fn llama() -> Result<&'static llama_cpp_2::llama_backend::LlamaBackend, LlamaError> {
    LLAMA
        .get_or_init(|| {
            llama_cpp_2::send_logs_to_tracing(llama_cpp_2::LogOptions::default());
            llama_cpp_2::llama_backend::LlamaBackend::init().map_err(|e| e.to_string())
        })
        .as_ref()
        .map_err(|e| LlamaError::Init(e.clone()))
}

/// Checks that `path` exists and starts with the GGUF magic.
pub fn check_gguf(path: &Path) -> Result<(), LlamaError> {
    use std::io::Read;
    let mut file = std::fs::File::open(path).map_err(|source| {
        if source.kind() == std::io::ErrorKind::NotFound {
            LlamaError::FileNotFound(path.to_path_buf())
        } else {
            LlamaError::Io {
                path: path.to_path_buf(),
                source,
            }
        }
    })?;
    let mut magic = [0u8; 4];
    match file.read_exact(&mut magic) {
        Ok(()) if &magic == b"GGUF" => Ok(()),
        Ok(()) => Err(LlamaError::NotGguf(path.to_path_buf())),
        Err(e) if e.kind() == std::io::ErrorKind::UnexpectedEof => {
            Err(LlamaError::NotGguf(path.to_path_buf()))
        }
        Err(source) => Err(LlamaError::Io {
            path: path.to_path_buf(),
            source,
        }),
    }
}

/// The context length a GGUF model was trained with (`<arch>.context_length` of its
/// header), read without llama.cpp; `None` if the file cannot be read or lacks it.
pub fn gguf_context_length(path: &Path) -> Option<u32> {
    let file = std::fs::File::open(path).ok()?;
    gguf::context_length(&mut std::io::BufReader::new(file)).ok()?
}

/// A minimal reader of GGUF metadata (version 2 and 3 headers).
mod gguf {
    use std::collections::HashMap;
    use std::io::{self, Read};

    const STRING: u32 = 8;
    const ARRAY: u32 = 9;
    /// Keys and strings longer than this are taken for a corrupt header.
    const MAX_STRING: u64 = 1 << 24;

    fn bad(what: &str) -> io::Error {
        io::Error::new(io::ErrorKind::InvalidData, what.to_string())
    }

    fn u32_of(r: &mut impl Read) -> io::Result<u32> {
        let mut b = [0u8; 4];
        r.read_exact(&mut b)?;
        Ok(u32::from_le_bytes(b))
    }

    fn u64_of(r: &mut impl Read) -> io::Result<u64> {
        let mut b = [0u8; 8];
        r.read_exact(&mut b)?;
        Ok(u64::from_le_bytes(b))
    }

    fn skip(r: &mut impl Read, n: u64) -> io::Result<()> {
        let copied = io::copy(&mut r.take(n), &mut io::sink())?;
        if copied == n {
            Ok(())
        } else {
            Err(io::ErrorKind::UnexpectedEof.into())
        }
    }

    fn string(r: &mut impl Read) -> io::Result<String> {
        let len = u64_of(r)?;
        if len > MAX_STRING {
            return Err(bad("string too long"));
        }
        let mut buf = Vec::new();
        r.take(len).read_to_end(&mut buf)?;
        if buf.len() as u64 != len {
            return Err(io::ErrorKind::UnexpectedEof.into());
        }
        Ok(String::from_utf8_lossy(&buf).into_owned())
    }

    fn scalar_size(kind: u32) -> Option<u64> {
        match kind {
            0 | 1 | 7 => Some(1),
            2 | 3 => Some(2),
            4..=6 => Some(4),
            10..=12 => Some(8),
            _ => None,
        }
    }

    /// An integer value of the given type (`None` for other types, which are skipped).
    fn value(r: &mut impl Read, kind: u32) -> io::Result<Option<u64>> {
        match kind {
            4 => Ok(Some(u64::from(u32_of(r)?))),
            5 => Ok(u64::try_from(u32_of(r)? as i32).ok()),
            10 => Ok(Some(u64_of(r)?)),
            11 => Ok(u64::try_from(u64_of(r)? as i64).ok()),
            STRING => {
                let len = u64_of(r)?;
                skip(r, len).map(|()| None)
            }
            ARRAY => {
                let elem = u32_of(r)?;
                let count = u64_of(r)?;
                match (elem, scalar_size(elem)) {
                    (_, Some(size)) => skip(r, count.saturating_mul(size))?,
                    (STRING, None) => {
                        for _ in 0..count {
                            let len = u64_of(r)?;
                            skip(r, len)?;
                        }
                    }
                    _ => return Err(bad("unsupported array element type")),
                }
                Ok(None)
            }
            other => match scalar_size(other) {
                Some(size) => skip(r, size).map(|()| None),
                None => Err(bad("unknown value type")),
            },
        }
    }

    /// `<general.architecture>.context_length`, if the header has it.
    pub(super) fn context_length(r: &mut impl Read) -> io::Result<Option<u32>> {
        let mut magic = [0u8; 4];
        r.read_exact(&mut magic)?;
        if &magic != b"GGUF" {
            return Err(bad("no GGUF magic"));
        }
        let version = u32_of(r)?;
        if !(2..=3).contains(&version) {
            return Err(bad("unsupported GGUF version"));
        }
        let _tensors = u64_of(r)?;
        let kvs = u64_of(r)?;
        let mut arch: Option<String> = None;
        let mut lengths: HashMap<String, u64> = HashMap::new();
        for _ in 0..kvs {
            let key = string(r)?;
            let kind = u32_of(r)?;
            if key == "general.architecture" && kind == STRING {
                arch = Some(string(r)?);
            } else if let Some(v) = value(r, kind)? {
                if let Some(prefix) = key.strip_suffix(".context_length") {
                    lengths.insert(prefix.to_string(), v);
                }
            }
            if let Some(a) = &arch {
                if let Some(v) = lengths.get(a) {
                    return Ok(Some(u32::try_from(*v).unwrap_or(u32::MAX)));
                }
            }
        }
        Ok(None)
    }

    #[cfg(test)]
    mod tests {
        use super::*;

        fn kv_string(out: &mut Vec<u8>, key: &str, v: &str) {
            out.extend((key.len() as u64).to_le_bytes());
            out.extend(key.as_bytes());
            out.extend(STRING.to_le_bytes());
            out.extend((v.len() as u64).to_le_bytes());
            out.extend(v.as_bytes());
        }

        fn header(kvs: u64) -> Vec<u8> {
            let mut out = b"GGUF".to_vec();
            out.extend(3u32.to_le_bytes());
            out.extend(0u64.to_le_bytes());
            out.extend(kvs.to_le_bytes());
            out
        }

        #[test]
        fn reads_the_architecture_context_length() {
            let mut f = header(4);
            kv_string(&mut f, "general.name", "tiny");
            // An array of strings before the wanted keys is skipped.
            f.extend((8u64).to_le_bytes());
            f.extend(b"tok.list");
            f.extend(ARRAY.to_le_bytes());
            f.extend(STRING.to_le_bytes());
            f.extend(2u64.to_le_bytes());
            for s in ["a", "bc"] {
                f.extend((s.len() as u64).to_le_bytes());
                f.extend(s.as_bytes());
            }
            let key = "llama.context_length";
            f.extend((key.len() as u64).to_le_bytes());
            f.extend(key.as_bytes());
            f.extend(4u32.to_le_bytes());
            f.extend(8192u32.to_le_bytes());
            kv_string(&mut f, "general.architecture", "llama");
            assert_eq!(context_length(&mut f.as_slice()).unwrap(), Some(8192));
        }

        #[test]
        fn missing_or_corrupt_headers_give_none_or_an_error() {
            let mut f = header(1);
            kv_string(&mut f, "general.architecture", "llama");
            assert_eq!(context_length(&mut f.as_slice()).unwrap(), None);
            assert!(context_length(&mut &b"GGUF\x03\0\0\0"[..]).is_err());
            assert!(context_length(&mut &b"not a gguf file"[..]).is_err());
        }
    }
}

impl LlamaBackend {
    /// Loads a GGUF model (blocking: call it from `spawn_blocking` in async code).
    ///
    /// The settings are checked first ([`LlamaConfig::validate_for`] with the trained
    /// context read from the GGUF header): a bad value is [`LlamaError::Config`] before
    /// llama.cpp sees it.
    pub fn load(path: impl AsRef<Path>, mut config: LlamaConfig) -> Result<Self, LlamaError> {
        let path = path.as_ref().to_path_buf();
        config.validate()?;
        check_gguf(&path)?;
        config.validate_for(gguf_context_length(&path))?;
        // llama.cpp never batches more tokens than the context holds; the worker's
        // prompt chunks must not exceed the context's batch either.
        if let Some(n_ctx) = config.n_ctx_start.or(config.n_ctx) {
            config.n_batch = config.n_batch.min(n_ctx);
        }
        let started = Instant::now();
        let (jobs, queue) = crossbeam_channel::bounded(config.queue);
        let (token_jobs, token_queue) = crossbeam_channel::bounded(config.queue);
        let (ready_tx, ready_rx) = std::sync::mpsc::channel();
        let name = config.name.clone().unwrap_or_else(|| {
            path.file_stem()
                .map(|s| s.to_string_lossy().into_owned())
                .unwrap_or_else(|| path.display().to_string())
        });
        let stats = Arc::new(Stats::default());
        let (worker_path, worker_name, worker_stats) = (path.clone(), name.clone(), stats.clone());
        std::thread::Builder::new()
            .name("optillm-llama".into())
            .spawn(move || {
                worker::run(
                    worker_path,
                    worker_name,
                    config,
                    worker_stats,
                    worker::Queues {
                        jobs: queue,
                        tokens: token_queue,
                    },
                    ready_tx,
                )
            })
            .map_err(|e| LlamaError::Init(e.to_string()))?;
        let loaded = ready_rx.recv().map_err(|_| LlamaError::WorkerGone)??;
        Ok(Self {
            stats,
            name,
            path,
            jobs,
            token_jobs,
            loaded,
            load_time: started.elapsed(),
        })
    }

    pub fn path(&self) -> &Path {
        &self.path
    }

    /// Time it took to load the model and create the context.
    pub fn load_time(&self) -> std::time::Duration {
        self.load_time
    }

    /// The worker's counters.
    pub fn stats(&self) -> &Stats {
        &self.stats
    }

    /// Context size in tokens: the most a request can use.
    pub fn n_ctx(&self) -> u32 {
        self.loaded.n_ctx
    }

    /// Cells of KV cache allocated now (at most [`LlamaBackend::n_ctx`]; it grows on
    /// demand from [`LlamaConfig::n_ctx_start`]).
    pub fn context_cells(&self) -> u32 {
        u32::try_from(self.stats.context_cells.load(Ordering::Relaxed)).unwrap_or(u32::MAX)
    }

    /// Context length the model was trained with.
    pub fn n_ctx_train(&self) -> u32 {
        self.loaded.n_ctx_train
    }

    /// Parameter count and file size of the model.
    pub fn model_size(&self) -> (u64, u64) {
        (self.loaded.n_params, self.loaded.size)
    }

    fn submit<T>(queue: &Sender<T>, job: T) -> Result<(), BackendError> {
        queue.try_send(job).map_err(|e| match e {
            TrySendError::Full(_) => BackendError::Busy("the native request queue is full".into()),
            TrySendError::Disconnected(_) => BackendError::Closed,
        })
    }
}

#[async_trait]
impl Backend for LlamaBackend {
    fn model(&self) -> &str {
        &self.name
    }

    fn capabilities(&self) -> Capabilities {
        Capabilities {
            native_n: true,
            logprobs: true,
            max_top_logprobs: 20,
            token_control: true,
            context_length: Some(self.loaded.n_ctx),
            // JSON and JSON schemas through llama.cpp's converter, GBNF as given; every
            // sample has its own grammar state.
            formats: optillm_core::FormatSupport::ALL,
        }
    }

    async fn stream(&self, request: ChatRequest) -> Result<CompletionStream, BackendError> {
        request.validate()?;
        let (sender, stream) = stream_channel();
        Self::submit(
            &self.jobs,
            Job {
                request,
                sender,
                submitted: Instant::now(),
            },
        )?;
        Ok(stream)
    }

    async fn token_job(&self, request: ChatRequest, job: TokenJob) -> Result<(), BackendError> {
        request.validate()?;
        let (reply, done) = tokio::sync::oneshot::channel();
        Self::submit(
            &self.token_jobs,
            TokenWork {
                request,
                job,
                reply,
            },
        )?;
        done.await.map_err(|_| BackendError::Closed)?
    }

    fn counters(&self) -> Vec<BackendCounter> {
        let s = &self.stats;
        let counter = |name, help, value: &AtomicU64| BackendCounter {
            name,
            help,
            value: value.load(Ordering::Relaxed),
        };
        vec![
            counter(
                "requests",
                "Generation requests finished (completed, failed or cancelled)",
                &s.requests,
            ),
            counter(
                "cancelled",
                "Requests whose consumer left before the end",
                &s.cancelled,
            ),
            counter(
                "tokens_generated",
                "Tokens sampled over all requests",
                &s.tokens_generated,
            ),
            counter("token_jobs", "Token-level jobs run", &s.token_jobs),
            counter(
                "stream_rounds",
                "Rounds of several samples decoded with one KV stream per sample",
                &s.stream_rounds,
            ),
            counter(
                "batched_requests",
                "Requests decoded in one round together with other requests",
                &s.batched_requests,
            ),
            counter(
                "prompt_tokens_evaluated",
                "Prompt tokens evaluated (not those reused from a kept prompt)",
                &s.prompt_tokens_evaluated,
            ),
            counter(
                "prefix_hits",
                "Prompts that started from the cells of a kept prompt",
                &s.prefix_hits,
            ),
            counter(
                "prefix_tokens_reused",
                "Prompt tokens reused from kept prompts instead of evaluated",
                &s.prefix_tokens_reused,
            ),
            counter(
                "context_grown",
                "Times the KV cache grew to hold a request (it starts small)",
                &s.context_grown,
            ),
            counter(
                "idle_releases",
                "Times the idle worker freed the KV cache requests had grown",
                &s.idle_releases,
            ),
        ]
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn with(f: impl FnOnce(&mut LlamaConfig)) -> LlamaConfig {
        let mut c = LlamaConfig::default();
        f(&mut c);
        c
    }

    #[test]
    fn the_default_settings_are_valid() {
        assert_eq!(LlamaConfig::default().validate(), Ok(()));
        assert_eq!(LlamaConfig::default().validate_for(Some(8192)), Ok(()));
    }

    #[test]
    fn out_of_range_settings_are_refused_with_the_allowed_range() {
        // Context sizes below n_seq_max made llama.cpp abort (GGML_ASSERT).
        for n in [0, 1, 8, 15] {
            let e = with(|c| c.n_ctx = Some(n)).validate().unwrap_err();
            assert_eq!(e.setting, "n_ctx");
            assert!(e.to_string().contains("16..=1048576"), "{e}");
        }
        let e = with(|c| c.n_ctx = Some(4_000_000_000))
            .validate()
            .unwrap_err();
        assert_eq!(e.setting, "n_ctx");
        assert!(with(|c| c.n_ctx = Some(16)).validate().is_ok());
        let e = with(|c| c.n_ctx = Some(16)).validate_for(Some(8192));
        assert!(e.is_ok());
        let e = with(|c| c.n_ctx = Some(9000))
            .validate_for(Some(8192))
            .unwrap_err();
        assert!(e.to_string().contains("16..=8192"), "{e}");
        for t in [0, -1, 513, i32::MAX] {
            let e = with(|c| c.n_threads = Some(t)).validate().unwrap_err();
            assert_eq!(e.setting, "n_threads");
            assert!(e.to_string().contains("1..=512"), "{e}");
        }
        assert!(with(|c| c.n_threads = Some(1)).validate().is_ok());
        for b in [0, 8, 513] {
            let e = with(|c| c.n_batch = b).validate().unwrap_err();
            assert_eq!(e.setting, "n_batch", "{b}");
        }
        assert!(with(|c| c.n_seq_max = 0).validate().is_err());
        assert!(with(|c| c.n_seq_max = 257).validate().is_err());
        assert!(with(|c| c.token_jobs = 0).validate().is_err());
        assert!(
            with(|c| c.token_jobs = TOKEN_JOBS_MAX + 1)
                .validate()
                .is_err()
        );
        assert!(with(|c| c.token_jobs = TOKEN_JOBS_MAX).validate().is_ok());
        assert!(with(|c| c.queue = usize::MAX).validate().is_err());
    }

    #[test]
    fn the_first_allocation_lies_between_n_seq_max_and_n_ctx() {
        for (n_ctx, start) in [(None, 8), (Some(512), 1024), (Some(512), 0)] {
            let e = with(|c| {
                c.n_ctx = n_ctx;
                c.n_ctx_start = Some(start);
            })
            .validate()
            .unwrap_err();
            assert_eq!(e.setting, "n_ctx_start", "{n_ctx:?} {start}");
        }
        for (n_ctx, start) in [(None, 16), (Some(512), 512), (None, 8192)] {
            let config = with(|c| {
                c.n_ctx = n_ctx;
                c.n_ctx_start = Some(start);
            });
            assert!(config.validate().is_ok(), "{n_ctx:?} {start}");
        }
    }

    #[test]
    fn a_q8_0_cache_needs_flash_attention() {
        let q8 = |flash| {
            with(|c| {
                c.kv_type = KvType::Q8_0;
                c.flash_attention = flash;
            })
            .validate()
        };
        assert_eq!(q8(Some(false)).unwrap_err().setting, "kv_type");
        assert!(q8(None).is_ok());
        assert!(q8(Some(true)).is_ok());
        assert_eq!("Q8_0".parse::<KvType>(), Ok(KvType::Q8_0));
        assert_eq!("f16".parse::<KvType>(), Ok(KvType::F16));
        assert!("q4_0".parse::<KvType>().is_err());
    }

    #[test]
    fn the_prefix_cache_is_bounded() {
        let e = with(|c| c.prefix_cache = PREFIX_CACHE_MAX + 1)
            .validate()
            .unwrap_err();
        assert_eq!(e.setting, "prefix_cache");
        assert!(with(|c| c.prefix_cache = 0).validate().is_ok());
    }

    #[test]
    fn a_bad_setting_fails_the_load_before_llama_cpp_runs() {
        let dir = tempfile::tempdir().unwrap();
        let path = dir.path().join("m.gguf");
        std::fs::write(&path, b"GGUF\x03\0\0\0").unwrap();
        let config = with(|c| c.n_ctx = Some(4));
        match LlamaBackend::load(&path, config) {
            Err(LlamaError::Config(e)) => assert_eq!(e.setting, "n_ctx"),
            other => panic!("expected a config error, got {other:?}"),
        }
        // A header saying the model was trained on 2048 tokens: 4096 is refused before
        // llama.cpp sees the (otherwise unloadable) file.
        let mut f = b"GGUF".to_vec();
        f.extend(3u32.to_le_bytes());
        f.extend(0u64.to_le_bytes());
        f.extend(2u64.to_le_bytes());
        for (key, kind, value) in [
            ("general.architecture", 8u32, None),
            ("llama.context_length", 4u32, Some(2048u32)),
        ] {
            f.extend((key.len() as u64).to_le_bytes());
            f.extend(key.as_bytes());
            f.extend(kind.to_le_bytes());
            match value {
                None => {
                    f.extend(5u64.to_le_bytes());
                    f.extend(b"llama");
                }
                Some(v) => f.extend(v.to_le_bytes()),
            }
        }
        std::fs::write(&path, &f).unwrap();
        assert_eq!(gguf_context_length(&path), Some(2048));
        match LlamaBackend::load(&path, with(|c| c.n_ctx = Some(4096))) {
            Err(LlamaError::Config(e)) => {
                assert!(e.to_string().contains("16..=2048"), "{e}");
            }
            other => panic!("expected a config error, got {other:?}"),
        }
        assert!(matches!(
            LlamaBackend::load(&path, with(|c| c.n_ctx = Some(2048))),
            Err(LlamaError::LoadFailed { .. })
        ));
    }
}
