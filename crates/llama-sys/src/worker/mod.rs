//! The worker thread: owns the model and its contexts and serves the jobs of the queue
//! in order; generation requests waiting together decode together in one round, and
//! token-level jobs run beside them in the token lane.
//!
//! - this module: the thread, its loop over the queues, the [`Engine`] it serves with;
//! - [`admission`]: prompts tokenized and checked, which waiting requests join a round;
//! - [`round`]: the batched round (prompts evaluated, samples decoded together);
//! - [`sampling`]: sampler chains, grammar-constrained sampling, logprobs;
//! - [`outbox`]: each request's events delivered without blocking the worker;
//! - [`lane`]: token jobs, their operations run between the rounds' steps.

mod admission;
pub(crate) mod lane;
mod outbox;
mod prefix;
mod round;
mod sampling;

use std::collections::VecDeque;
use std::num::NonZeroU32;
use std::path::PathBuf;
use std::sync::Arc;
use std::sync::atomic::{AtomicU64, Ordering};
use std::sync::mpsc::Sender;
use std::task::Waker;
use std::time::Duration;

use crossbeam_channel::{Receiver, Select};
use llama_cpp_2::context::LlamaContext;
use llama_cpp_2::context::params::{KvCacheType, LlamaContextParams};
use llama_cpp_2::context::session::{LlamaStateSeqFlags, SeqState};
use llama_cpp_2::model::params::LlamaModelParams;
use llama_cpp_2::model::{LlamaChatTemplate, LlamaModel};
use optillm_core::{BackendError, ChatRequest};

use crate::session::Begun;
use crate::{Job, LlamaConfig, LlamaError, Loaded, Stats, TokenWork, llama};
use lane::{Heard, TokenLane};
use outbox::{Delivery, Outbox, thread_waker};
use prefix::PrefixCache;
use round::{Streams, eval_prompts};

// llama.cpp's `llama_flash_attn_type` values.
const FLASH_ATTN_AUTO: i32 = -1;
const FLASH_ATTN_DISABLED: i32 = 0;
const FLASH_ATTN_ENABLED: i32 = 1;

/// How often an idle worker looks at consumers that have not read all of their events.
const LINGER_WAIT: Duration = Duration::from_millis(20);

/// The worker's two queues: generation requests, and token-level jobs (served by the
/// token lane beside the generation rounds).
pub(crate) struct Queues {
    pub(crate) jobs: Receiver<Job>,
    pub(crate) tokens: Receiver<TokenWork>,
}

/// Which of a model's two contexts an [`Engine`] serves.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub(crate) enum Lane {
    /// Generation requests, batched in rounds.
    Rounds,
    /// Token-level jobs, each in a context of its own.
    Tokens,
}

impl Lane {
    /// The gauge of the cells of this lane's main context.
    fn cells(self, stats: &Stats) -> &AtomicU64 {
        match self {
            Lane::Rounds => &stats.context_cells,
            Lane::Tokens => &stats.token_cells,
        }
    }
}

/// Thread entry: load, report, then serve until every sender is dropped.
pub(crate) fn run(
    path: PathBuf,
    name: String,
    config: LlamaConfig,
    stats: Arc<Stats>,
    queues: Queues,
    ready: Sender<Result<Loaded, LlamaError>>,
) {
    let backend = match llama() {
        Ok(b) => b,
        Err(e) => {
            let _ = ready.send(Err(e));
            return;
        }
    };
    let params = LlamaModelParams::default().with_n_gpu_layers(config.n_gpu_layers);
    let model = match LlamaModel::load_from_file(backend, &path, &params) {
        Ok(m) => Arc::new(m),
        Err(_) => {
            let _ = ready.send(Err(LlamaError::LoadFailed { path }));
            return;
        }
    };
    let parts = Parts {
        backend,
        model: &model,
        name: &name,
        config: &config,
        stats: &stats,
    };
    let mut engine = match Engine::new(parts, Lane::Rounds) {
        Ok(engine) => engine,
        Err(e) => {
            let _ = ready.send(Err(e));
            return;
        }
    };
    let loaded = Loaded {
        n_ctx: engine.limit,
        n_ctx_train: model.n_ctx_train(),
        n_params: model.n_params(),
        size: model.size(),
    };
    tracing::info!(
        path = %path.display(),
        n_ctx = loaded.n_ctx,
        allocated = engine.ctx.n_ctx(),
        threads = context_params(&config, 1, 1, true).n_threads(),
        "model loaded"
    );
    if ready.send(Ok(loaded)).is_err() {
        return;
    }
    let Queues { jobs, tokens } = queues;
    let mut lane = TokenLane::new(parts, Arc::clone(&model), tokens);
    serve(&mut engine, &mut lane, &jobs);
    tracing::debug!("native worker stopped");
}

/// What the idle worker waits for.
enum Wake {
    Job(Job),
    Lane,
    /// Nothing came in the time given.
    Timeout,
    /// The backend is gone.
    Closed,
}

/// The worker's loop: generation jobs of the queue in order (requests waiting together
/// decode together in one round), and the token lane's work between the rounds' steps
/// and whenever the rounds are idle.
fn serve(engine: &mut Engine, lane: &mut TokenLane, queue: &Receiver<Job>) {
    // Jobs taken off the queue that did not join a round, served next in order.
    let mut waiting: VecDeque<Job> = VecDeque::new();
    // Outboxes of requests already answered whose consumers have not read everything.
    let mut lingering: Vec<Outbox> = Vec::new();
    loop {
        lingering.retain_mut(|o| o.flush() == Delivery::Held);
        lane.serve();
        let job = match waiting.pop_front() {
            Some(job) => job,
            None => {
                // Idle with a cache grown or a lane context made: wait so long, then
                // free it. Consumers that have not read everything: look now and then.
                let wait = if lingering.is_empty() {
                    engine.release_after(lane)
                } else {
                    Some(LINGER_WAIT)
                };
                match wait_for_work(queue, lane, wait) {
                    Wake::Job(job) => job,
                    Wake::Lane => continue,
                    Wake::Timeout if lingering.is_empty() => {
                        engine.release_grown();
                        lane.release();
                        continue;
                    }
                    Wake::Timeout => continue,
                    Wake::Closed => break,
                }
            }
        };
        let Job {
            request,
            sender,
            submitted,
        } = job;
        let first = match engine.admit(request, submitted) {
            Ok(first) => first,
            Err(e) => {
                lingering.push(engine.refuse(sender, e));
                continue;
            }
        };
        let group = engine.gather((first, sender), &mut waiting, queue, &mut lingering);
        lingering.extend(engine.generate(group, &mut || lane.serve()));
    }
    // The backend is gone: deliver what its consumers still wait for.
    loop {
        lingering.retain_mut(|o| o.flush() == Delivery::Held);
        if lingering.is_empty() {
            break;
        }
        std::thread::park_timeout(LINGER_WAIT);
    }
}

/// Waits (at most `wait`; `None`: as long as it takes) for a generation job, or for
/// the token lane's next message: a running job's operation, or a new job when a slot
/// is free. A lane message is handled here.
fn wait_for_work(queue: &Receiver<Job>, lane: &mut TokenLane, wait: Option<Duration>) -> Wake {
    let lane::Listening { running, starts } = lane.receivers();
    let mut select = Select::new();
    let jobs = select.recv(queue);
    let ops: Vec<usize> = running.iter().map(|(_, r)| select.recv(r)).collect();
    if let Some(r) = &starts {
        select.recv(r);
    }
    let ready = match wait {
        Some(wait) => match select.select_timeout(wait) {
            Ok(ready) => ready,
            Err(_) => return Wake::Timeout,
        },
        None => select.select(),
    };
    let index = ready.index();
    let heard = if index == jobs {
        return match ready.recv(queue) {
            Ok(job) => Wake::Job(job),
            Err(_) => Wake::Closed,
        };
    } else if let Some(k) = ops.iter().position(|&i| i == index) {
        let (slot, receiver) = &running[k];
        match ready.recv(receiver) {
            Ok(msg) => Heard::Op(*slot, msg),
            // Not reached: the slot holds a sender of its own.
            Err(_) => return Wake::Lane,
        }
    } else {
        match starts.as_ref().map(|r| ready.recv(r)) {
            Some(Ok(work)) => Heard::Start(work),
            // The backend is gone (it holds the only sender of new token jobs).
            _ => return Wake::Closed,
        }
    };
    lane.heard(heard);
    Wake::Lane
}

/// What making an engine takes (the generation rounds' and the token lane's).
#[derive(Clone, Copy)]
pub(crate) struct Parts<'a, 'm> {
    backend: &'static llama_cpp_2::llama_backend::LlamaBackend,
    model: &'m LlamaModel,
    name: &'a str,
    config: &'a LlamaConfig,
    stats: &'a Arc<Stats>,
}

pub(crate) struct Engine<'m> {
    backend: &'static llama_cpp_2::llama_backend::LlamaBackend,
    pub(crate) model: &'m LlamaModel,
    /// The main context: one KV cache shared by all sequences (`kv_unified`), the whole
    /// context length available to any of them.
    pub(crate) ctx: LlamaContext<'m>,
    /// Cells of the main context as made at load, which an idle worker returns to.
    start: u32,
    /// The most cells the main context grows to ([`LlamaConfig::n_ctx`]).
    pub(crate) limit: u32,
    /// Recent prompts (and replies) of the main context, their cells saved.
    prefix: PrefixCache<SeqState>,
    /// A second context for n > 1 samples, made on demand (see [`round::streams_plan`]).
    streams: Option<Streams<'m>>,
    template: LlamaChatTemplate,
    /// The model's GGUF has a chat template of its own (else `template` is ChatML).
    pub(crate) has_template: bool,
    name: String,
    pub(crate) config: LlamaConfig,
    stats: Arc<Stats>,
    /// The lane this engine serves.
    lane: Lane,
    /// Wakes the worker when a consumer it waits for reads.
    waker: Waker,
}

/// A context to decode in and what growing it takes ([`Engine::context`]).
pub(crate) struct Decoding<'a, 'm> {
    pub(crate) ctx: &'a mut LlamaContext<'m>,
    pub(crate) maker: Maker<'a, 'm>,
    /// The kept prompts of this context (a saved state is restored only into a context
    /// of its own shape, so each context keeps its own).
    pub(crate) prefix: &'a mut PrefixCache<SeqState>,
    /// Cells one sequence can take: a kept prompt longer than that is not restored.
    pub(crate) room: usize,
    /// Whether prompts of one round share their common beginning (reuse is on).
    pub(crate) share: bool,
    /// One KV stream per sequence: a copy between sequences is a whole stream's. The
    /// main context (not per-stream) grows when full; the per-stream one is sized for
    /// its round.
    pub(crate) per_stream: bool,
}

/// What making a context of the model takes.
#[derive(Clone, Copy)]
pub(crate) struct Maker<'a, 'm> {
    backend: &'static llama_cpp_2::llama_backend::LlamaBackend,
    pub(crate) model: &'m LlamaModel,
    pub(crate) config: &'a LlamaConfig,
    pub(crate) stats: &'a Stats,
    /// The gauge of the main context's cells ([`Stats::context_cells`] or
    /// [`Stats::token_cells`]).
    cells: &'a AtomicU64,
    /// The most cells of the main context.
    limit: u32,
}

impl<'m> Maker<'_, 'm> {
    /// Grows the main context `ctx` to hold at least `cells` cells (doubling, at most
    /// the limit); its KV cache comes along when `keep` (sequences, positions and
    /// cells shared between sequences as they were). Whether it now holds `cells`:
    /// false when that is past the limit or the new context could not be made (the old
    /// one is left as it was).
    pub(crate) fn grow(&self, ctx: &mut LlamaContext<'m>, cells: u32, keep: bool) -> bool {
        let current = ctx.n_ctx();
        if cells <= current {
            return true;
        }
        if cells > self.limit {
            return false;
        }
        let mut size = current.max(1);
        while size < cells {
            size = size.saturating_mul(2);
        }
        let size = size.min(self.limit);
        // Sequence -1: the whole cache, every cell with all of its sequences.
        let state = if keep {
            match ctx.state_seq_get(-1, LlamaStateSeqFlags::empty()) {
                Ok(state) => Some(state),
                Err(e) => {
                    tracing::warn!("context not grown, its cache could not be read: {e}");
                    return false;
                }
            }
        } else {
            None
        };
        let params = context_params(self.config, size, self.config.n_seq_max, true);
        let mut grown = match self.model.new_context(self.backend, params) {
            Ok(c) => c,
            Err(e) => {
                tracing::warn!(cells = size, "context not grown: {e}");
                return false;
            }
        };
        if let Some(state) = &state {
            if let Err(e) = grown.state_seq_set(state, -1) {
                tracing::warn!("context not grown, its cache could not be restored: {e}");
                return false;
            }
        }
        tracing::debug!(from = current, to = grown.n_ctx(), "context grown");
        *ctx = grown;
        self.stats.context_grown.fetch_add(1, Ordering::Relaxed);
        self.cells.store(u64::from(ctx.n_ctx()), Ordering::Relaxed);
        ctx.n_ctx() >= cells
    }
}

/// Context parameters from the backend's settings.
fn context_params(
    config: &LlamaConfig,
    n_ctx: u32,
    n_seq_max: u32,
    unified: bool,
) -> LlamaContextParams {
    let threads = config.n_threads.unwrap_or_else(|| {
        std::thread::available_parallelism().map_or(1, |n| i32::try_from(n.get()).unwrap_or(1))
    });
    let flash = match config.flash_attention {
        None => FLASH_ATTN_AUTO,
        Some(true) => FLASH_ATTN_ENABLED,
        Some(false) => FLASH_ATTN_DISABLED,
    };
    LlamaContextParams::default()
        .with_n_ctx(NonZeroU32::new(n_ctx))
        .with_n_batch(config.n_batch)
        .with_n_ubatch(config.n_batch)
        .with_n_seq_max(n_seq_max)
        .with_n_threads(threads)
        .with_n_threads_batch(threads)
        .with_kv_unified(unified)
        .with_flash_attention_policy(flash)
        .with_type_k(kv_type(config.kv_type))
        .with_type_v(kv_type(config.kv_type))
}

fn kv_type(t: crate::KvType) -> KvCacheType {
    match t {
        crate::KvType::F16 => KvCacheType::F16,
        crate::KvType::Q8_0 => KvCacheType::Q8_0,
    }
}

impl<'m> Engine<'m> {
    /// An engine for `lane` with its main context made at its starting size.
    fn new(parts: Parts<'_, 'm>, lane: Lane) -> Result<Self, LlamaError> {
        let Parts {
            backend,
            model,
            config,
            ..
        } = parts;
        let limit = config
            .n_ctx
            .unwrap_or_else(|| model.n_ctx_train().clamp(512, 8192));
        let start = config
            .n_ctx_start
            .unwrap_or(crate::N_CTX_START)
            .clamp(crate::N_CTX_MIN.max(config.n_seq_max), limit);
        let params = context_params(config, start, config.n_seq_max, true);
        let ctx = model
            .new_context(backend, params)
            .map_err(|e| LlamaError::Context(e.to_string()))?;
        // A base model's GGUF has no chat template: chat requests get ChatML.
        let own_template = model.chat_template(None);
        let has_template = own_template.is_ok();
        let template = own_template
            .or_else(|_| LlamaChatTemplate::new("chatml"))
            .map_err(|e| LlamaError::Template(e.to_string()))?;
        let engine = Self {
            backend,
            model,
            // What llama.cpp made of `start` (it rounds a context up to 256 cells).
            start: ctx.n_ctx(),
            limit: limit.max(ctx.n_ctx()),
            ctx,
            prefix: PrefixCache::new(config.prefix_cache, crate::PREFIX_CACHE_BYTES),
            streams: None,
            template,
            has_template,
            name: parts.name.to_owned(),
            config: config.clone(),
            stats: Arc::clone(parts.stats),
            lane,
            waker: thread_waker(),
        };
        engine
            .cells()
            .store(u64::from(engine.ctx.n_ctx()), Ordering::Relaxed);
        Ok(engine)
    }

    /// The gauge of this engine's main context.
    fn cells(&self) -> &AtomicU64 {
        self.lane.cells(&self.stats)
    }

    /// The context to decode in, with what growing it takes: the per-stream context
    /// when `per_stream` and there is one (sized for its round, it does not grow),
    /// else the main one.
    pub(crate) fn context(&mut self, per_stream: bool) -> Decoding<'_, 'm> {
        let maker = Maker {
            backend: self.backend,
            model: self.model,
            config: &self.config,
            stats: &self.stats,
            cells: self.lane.cells(&self.stats),
            limit: self.limit,
        };
        let share = self.prefix.enabled();
        match self.streams.as_mut() {
            Some(s) if per_stream => Decoding {
                room: s.cells as usize,
                ctx: &mut s.ctx,
                maker,
                prefix: &mut s.prefix,
                share,
                per_stream: true,
            },
            _ => Decoding {
                ctx: &mut self.ctx,
                maker,
                prefix: &mut self.prefix,
                room: self.limit as usize,
                share,
                per_stream: false,
            },
        }
    }

    /// How long to wait idle before freeing the cache requests grew and the token
    /// lane's context; `None` when there is nothing to free or the configuration keeps it.
    fn release_after(&self, lane: &TokenLane) -> Option<Duration> {
        let grown = self.streams.is_some() || self.ctx.n_ctx() > self.start;
        self.config
            .release_after
            .filter(|_| grown || lane.holds_context())
    }

    /// Frees the cache requests grew (the worker is idle): the per-stream context with
    /// its kept prompts, and the main context's cells past its size at load (its kept
    /// prompts stay, saved beside the cache). Every round clears the main context
    /// before it starts, so nothing in it is lost.
    fn release_grown(&mut self) {
        self.streams = None;
        self.stats.stream_cells.store(0, Ordering::Relaxed);
        if self.ctx.n_ctx() > self.start {
            let params = context_params(&self.config, self.start, self.config.n_seq_max, true);
            match self.model.new_context(self.backend, params) {
                Ok(ctx) => self.ctx = ctx,
                Err(e) => {
                    // Kept as it is, and not tried again at every idle moment.
                    tracing::warn!("the grown context was kept: {e}");
                    self.start = self.ctx.n_ctx();
                }
            }
        }
        self.cells()
            .store(u64::from(self.ctx.n_ctx()), Ordering::Relaxed);
        self.stats.idle_releases.fetch_add(1, Ordering::Relaxed);
        tracing::debug!(cells = self.ctx.n_ctx(), "idle: grown KV cache freed");
    }

    /// Begins a token job (the lane's engine): its prompt tokenized (checked against
    /// the context) and the context emptied. The prompt is evaluated into sequence 0
    /// when the job first uses it ([`Engine::eval_first`]): a job that starts prompts of
    /// its own may never need it.
    pub(crate) fn begin_tokens(&mut self, request: &ChatRequest) -> Result<Begun, BackendError> {
        if request.format.is_some() {
            return Err(BackendError::unsupported(
                "the native token-level interface",
                "a response format",
            ));
        }
        let tokens = self.prompt_tokens(request)?;
        self.ctx.clear_kv_cache();
        Ok(Begun {
            prompt: tokens,
            limit: self.limit,
            n_seq_max: self.config.n_seq_max,
            n_batch: self.config.n_batch,
            has_template: self.has_template,
        })
    }

    /// Evaluates a job's prompt into sequence 0 of the emptied context, from a kept
    /// prompt where one shares its beginning; the logits after its last token.
    pub(crate) fn eval_first(
        &mut self,
        tokens: &[llama_cpp_2::token::LlamaToken],
    ) -> Result<Vec<f32>, BackendError> {
        let mut main = self.context(false);
        // Room for the prompt and a first step; decoding grows it further.
        let cells = u64::try_from(tokens.len())
            .unwrap_or(u64::MAX)
            .saturating_add(1);
        let last = eval_prompts(&mut main, &[(tokens, 0)], cells)?
            .first()
            .copied()
            .ok_or_else(|| round::decode_error("an empty prompt".into()))?;
        Ok(self.ctx.get_logits_ith(last).to_vec())
    }
}
