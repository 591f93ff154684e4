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

mod error;
mod session;
mod text;
mod worker;

use std::path::{Path, PathBuf};
use std::sync::atomic::{AtomicU64, Ordering};
use std::sync::mpsc::{SyncSender, TrySendError};
use std::sync::{Arc, OnceLock};
use std::time::Instant;

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
    /// Requests waiting beyond the one in progress; more are refused with `Busy`.
    pub queue: usize,
}

impl Default for LlamaConfig {
    fn default() -> Self {
        Self {
            name: None,
            n_ctx: None,
            n_threads: None,
            n_batch: 512,
            n_seq_max: 16,
            flash_attention: None,
            n_gpu_layers: 0,
            queue: 64,
        }
    }
}

pub(crate) enum Job {
    Generate {
        request: ChatRequest,
        sender: optillm_core::StreamSender,
        submitted: Instant,
    },
    Tokens {
        request: ChatRequest,
        job: TokenJob,
        reply: tokio::sync::oneshot::Sender<Result<(), BackendError>>,
    },
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
    /// Rounds of n > 1 samples decoded in the per-stream context (one KV stream per
    /// sample) rather than the shared cache.
    pub stream_rounds: AtomicU64,
    /// Requests decoded in one round together with others.
    pub batched_requests: AtomicU64,
}

/// The native llama.cpp backend.
#[derive(Debug)]
pub struct LlamaBackend {
    stats: Arc<Stats>,
    name: String,
    path: PathBuf,
    jobs: SyncSender<Job>,
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

impl LlamaBackend {
    /// Loads a GGUF model (blocking: call it from `spawn_blocking` in async code).
    pub fn load(path: impl AsRef<Path>, config: LlamaConfig) -> Result<Self, LlamaError> {
        let path = path.as_ref().to_path_buf();
        check_gguf(&path)?;
        let started = Instant::now();
        let (jobs, queue) = std::sync::mpsc::sync_channel(config.queue);
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
                    queue,
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

    /// Context size in tokens.
    pub fn n_ctx(&self) -> u32 {
        self.loaded.n_ctx
    }

    /// Context length the model was trained with.
    pub fn n_ctx_train(&self) -> u32 {
        self.loaded.n_ctx_train
    }

    /// Parameter count and file size of the model.
    pub fn model_size(&self) -> (u64, u64) {
        (self.loaded.n_params, self.loaded.size)
    }

    fn submit(&self, job: Job) -> Result<(), BackendError> {
        self.jobs.try_send(job).map_err(|e| match e {
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
        }
    }

    async fn stream(&self, request: ChatRequest) -> Result<CompletionStream, BackendError> {
        request.validate()?;
        let (sender, stream) = stream_channel();
        self.submit(Job::Generate {
            request,
            sender,
            submitted: Instant::now(),
        })?;
        Ok(stream)
    }

    async fn token_job(&self, request: ChatRequest, job: TokenJob) -> Result<(), BackendError> {
        request.validate()?;
        let (reply, done) = tokio::sync::oneshot::channel();
        self.submit(Job::Tokens {
            request,
            job,
            reply,
        })?;
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
        ]
    }
}
