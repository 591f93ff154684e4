//! The worker thread: owns the model and the context and serves the jobs of the queue in
//! order; generation requests waiting together decode together in one round.
//!
//! - this module: the thread, its loop over the queue, the [`Engine`] it serves with;
//! - [`admission`]: prompts tokenized and checked, which waiting requests join a round;
//! - [`round`]: the batched round (prompts evaluated, samples decoded together);
//! - [`sampling`]: sampler chains, grammar-constrained sampling, logprobs;
//! - [`outbox`]: each request's events delivered without blocking the worker.

mod admission;
mod outbox;
mod round;
mod sampling;

use std::collections::VecDeque;
use std::num::NonZeroU32;
use std::path::PathBuf;
use std::sync::Arc;
use std::sync::atomic::Ordering;
use std::sync::mpsc::{Receiver, RecvTimeoutError, Sender};
use std::task::Waker;
use std::time::Duration;

use llama_cpp_2::context::LlamaContext;
use llama_cpp_2::context::params::LlamaContextParams;
use llama_cpp_2::model::params::LlamaModelParams;
use llama_cpp_2::model::{LlamaChatTemplate, LlamaModel};
use optillm_core::{BackendError, ChatRequest};

use crate::session::Session;
use crate::{Job, LlamaConfig, LlamaError, Loaded, Stats, llama};
use outbox::{Delivery, Outbox, thread_waker};
use round::{Streams, eval_prompt};

// llama.cpp's `llama_flash_attn_type` values.
const FLASH_ATTN_AUTO: i32 = -1;
const FLASH_ATTN_DISABLED: i32 = 0;
const FLASH_ATTN_ENABLED: i32 = 1;

/// How often an idle worker looks at consumers that have not read all of their events.
const LINGER_WAIT: Duration = Duration::from_millis(20);

/// Thread entry: load, report, then serve until every sender is dropped.
pub(crate) fn run(
    path: PathBuf,
    name: String,
    config: LlamaConfig,
    stats: Arc<Stats>,
    queue: Receiver<Job>,
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
        Ok(m) => m,
        Err(_) => {
            let _ = ready.send(Err(LlamaError::LoadFailed { path }));
            return;
        }
    };
    let n_ctx = config
        .n_ctx
        .unwrap_or_else(|| model.n_ctx_train().clamp(512, 8192));
    let params = context_params(&config, n_ctx, config.n_seq_max, true);
    let threads = params.n_threads();
    let ctx = match model.new_context(backend, params) {
        Ok(c) => c,
        Err(e) => {
            let _ = ready.send(Err(LlamaError::Context(e.to_string())));
            return;
        }
    };
    let template = model
        .chat_template(None)
        .or_else(|_| LlamaChatTemplate::new("chatml"));
    let template = match template {
        Ok(t) => t,
        Err(e) => {
            let _ = ready.send(Err(LlamaError::Template(e.to_string())));
            return;
        }
    };
    let loaded = Loaded {
        n_ctx: ctx.n_ctx(),
        n_ctx_train: model.n_ctx_train(),
        n_params: model.n_params(),
        size: model.size(),
    };
    tracing::info!(path = %path.display(), n_ctx = loaded.n_ctx, threads, "model loaded");
    if ready.send(Ok(loaded)).is_err() {
        return;
    }
    let mut engine = Engine {
        backend,
        model: &model,
        ctx,
        streams: None,
        template,
        name,
        config,
        stats,
        waker: thread_waker(),
    };
    // Jobs taken off the queue that did not join a round, served next in order.
    let mut waiting: VecDeque<Job> = VecDeque::new();
    // Outboxes of requests already answered whose consumers have not read everything.
    let mut lingering: Vec<Outbox> = Vec::new();
    loop {
        lingering.retain_mut(|o| o.flush() == Delivery::Held);
        let job = match waiting.pop_front() {
            Some(job) => job,
            None if lingering.is_empty() => match queue.recv() {
                Ok(job) => job,
                Err(_) => break,
            },
            // Look at the consumers that have not read everything now and then.
            None => match queue.recv_timeout(LINGER_WAIT) {
                Ok(job) => job,
                Err(RecvTimeoutError::Timeout) => continue,
                Err(RecvTimeoutError::Disconnected) => break,
            },
        };
        match job {
            Job::Generate {
                request,
                sender,
                submitted,
            } => {
                let first = match engine.admit(request, submitted) {
                    Ok(first) => first,
                    Err(e) => {
                        lingering.push(engine.refuse(sender, e));
                        continue;
                    }
                };
                let group = engine.gather((first, sender), &mut waiting, &queue, &mut lingering);
                lingering.extend(engine.generate(group));
            }
            Job::Tokens {
                request,
                job,
                reply,
            } => {
                let result = engine.token_job(&request, job);
                let _ = reply.send(result);
            }
        }
    }
    // The backend is gone: deliver what its consumers still wait for.
    loop {
        lingering.retain_mut(|o| o.flush() == Delivery::Held);
        if lingering.is_empty() {
            break;
        }
        std::thread::park_timeout(LINGER_WAIT);
    }
    tracing::debug!("native worker stopped");
}

pub(crate) struct Engine<'m> {
    backend: &'static llama_cpp_2::llama_backend::LlamaBackend,
    pub(crate) model: &'m LlamaModel,
    /// The main context: one KV cache shared by all sequences (`kv_unified`), the whole
    /// context length available to any of them.
    pub(crate) ctx: LlamaContext<'m>,
    /// A second context for n > 1 samples, made on demand (see [`round::streams_plan`]).
    streams: Option<Streams<'m>>,
    template: LlamaChatTemplate,
    name: String,
    pub(crate) config: LlamaConfig,
    stats: Arc<Stats>,
    /// Wakes the worker when a consumer it waits for reads.
    waker: Waker,
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
}

impl Engine<'_> {
    fn token_job(
        &mut self,
        request: &ChatRequest,
        job: optillm_core::TokenJob,
    ) -> Result<(), BackendError> {
        if request.format.is_some() {
            return Err(BackendError::unsupported(
                "the native token-level interface",
                "a response format",
            ));
        }
        let tokens = self.prompt_tokens(request)?;
        let last = eval_prompt(&mut self.ctx, self.config.n_batch, &tokens)?;
        let logits = self.ctx.get_logits_ith(last).to_vec();
        self.stats.token_jobs.fetch_add(1, Ordering::Relaxed);
        let mut session = Session::new(self, tokens.len() as u32, logits);
        job(&mut session)
    }
}
