//! The worker thread: owns the model and the context, serves jobs one at a time.

use std::num::NonZeroU32;
use std::path::PathBuf;
use std::sync::Arc;
use std::sync::atomic::Ordering;
use std::sync::mpsc::{Receiver, Sender};
use std::time::Instant;

use llama_cpp_2::context::LlamaContext;
use llama_cpp_2::context::params::LlamaContextParams;
use llama_cpp_2::llama_batch::LlamaBatch;
use llama_cpp_2::model::params::LlamaModelParams;
use llama_cpp_2::model::{LlamaChatMessage, LlamaChatTemplate, LlamaModel};
use llama_cpp_2::sampling::LlamaSampler;
use llama_cpp_2::token::LlamaToken;
use optillm_core::{
    BackendError, ChatRequest, Choice, Completion, FinishReason, Sampling, StreamEvent,
    StreamSender, Timings, TokenLogprob, TopLogprob, Usage,
};

use crate::session::Session;
use crate::text::{Scan, StopScanner, Utf8Buffer};
use crate::{Job, LlamaConfig, LlamaError, Loaded, Stats, llama};

// llama.cpp's `llama_flash_attn_type` values.
const FLASH_ATTN_AUTO: i32 = -1;
const FLASH_ATTN_DISABLED: i32 = 0;
const FLASH_ATTN_ENABLED: i32 = 1;

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
    };
    while let Ok(job) = queue.recv() {
        match job {
            Job::Generate {
                request,
                sender,
                submitted,
            } => engine.generate(&request, &sender, submitted),
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
    tracing::debug!("native worker stopped");
}

pub(crate) struct Engine<'m> {
    backend: &'static llama_cpp_2::llama_backend::LlamaBackend,
    pub(crate) model: &'m LlamaModel,
    /// The main context: one KV cache shared by all sequences (`kv_unified`), the whole
    /// context length available to any of them.
    pub(crate) ctx: LlamaContext<'m>,
    /// A second context for n > 1 samples, made on demand (see [`Engine::use_streams`]).
    streams: Option<Streams<'m>>,
    template: LlamaChatTemplate,
    name: String,
    pub(crate) config: LlamaConfig,
    stats: Arc<Stats>,
}

/// A context whose KV cache has one stream per sequence (`kv_unified = false`), as
/// llama-batched-bench uses by default: each of n samples attends to its own cells only,
/// where in the shared cache every step would attend over the cells of all n.
struct Streams<'m> {
    ctx: LlamaContext<'m>,
    /// Number of streams (sequences it can hold).
    streams: u32,
    /// Cells of each stream: the most prompt + generated tokens of one sequence.
    cells: u32,
}

/// llama.cpp pads context sizes to this many cells.
const CELL_PAD: u32 = 256;

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

/// The request was abandoned by its consumer.
struct Cancelled;

/// One sequence being generated.
struct Seq {
    id: i32,
    index: u32,
    sampler: LlamaSampler,
    utf8: Utf8Buffer,
    scanner: StopScanner,
    generated: u32,
    pos: i32,
    logits_at: i32,
    logprobs: Option<Vec<TokenLogprob>>,
    finish: Option<FinishReason>,
    next: Option<LlamaToken>,
}

impl Seq {
    /// Ends the sequence; returns the text still held back (a partial character, a
    /// possible start of a stop sequence).
    fn close(&mut self, reason: FinishReason) -> String {
        let rest = self.utf8.finish();
        let (mut text, reason) = match self.scanner.push(&rest) {
            Scan::Delta(t) => (t, reason),
            Scan::Stopped(t) => (t, FinishReason::StopSequence),
        };
        text.push_str(&self.scanner.flush());
        self.finish = Some(reason);
        text
    }
}

impl<'m> Engine<'m> {
    /// The request's messages through the model's chat template, tokenized.
    pub(crate) fn prompt_tokens(
        &self,
        request: &ChatRequest,
    ) -> Result<Vec<LlamaToken>, BackendError> {
        let messages = request
            .messages
            .iter()
            .map(|m| LlamaChatMessage::new(m.role.as_str().to_string(), m.content.clone()))
            .collect::<Result<Vec<_>, _>>()
            .map_err(|e| BackendError::InvalidRequest(format!("message: {e}")))?;
        let prompt = self
            .model
            .apply_chat_template(&self.template, &messages, true)
            .map_err(|e| BackendError::from(LlamaError::Template(e.to_string())))?;
        let vocab = self.model.vocab();
        let mut tokens = vocab.tokenize(prompt.as_bytes(), true, true);
        // Templates that write the BOS token themselves would get it twice.
        if tokens.len() > 1 && tokens[0] == tokens[1] && tokens[0] == vocab.bos() {
            tokens.remove(0);
        }
        let n_ctx = self.ctx.n_ctx();
        if tokens.is_empty() || tokens.len() as u64 >= u64::from(n_ctx) {
            return Err(BackendError::ContextOverflow {
                prompt_tokens: u32::try_from(tokens.len()).unwrap_or(u32::MAX),
                context_length: n_ctx,
            });
        }
        Ok(tokens)
    }

    fn generate(&mut self, request: &ChatRequest, sender: &StreamSender, submitted: Instant) {
        let result = self.generate_all(request, sender, submitted);
        self.stats.requests.fetch_add(1, Ordering::Relaxed);
        match result {
            Ok(Some(completion)) => {
                sender.blocking_send(Ok(StreamEvent::Done(completion)));
            }
            Ok(None) => {
                self.stats.cancelled.fetch_add(1, Ordering::Relaxed);
                tracing::debug!("request cancelled by its consumer");
            }
            Err(e) => {
                sender.blocking_send(Err(e));
            }
        }
    }

    fn generate_all(
        &mut self,
        request: &ChatRequest,
        sender: &StreamSender,
        submitted: Instant,
    ) -> Result<Option<Completion>, BackendError> {
        let tokens = self.prompt_tokens(request)?;
        let mut usage = Usage::default();
        let mut timings = Timings::default();
        let mut choices = Vec::new();
        let per_round = self.config.n_seq_max.max(1);
        // Cells one sample can fill: prompt and completion (`None`: unbounded).
        let cells = request
            .sampling
            .max_tokens
            .map(|m| m.saturating_add(tokens.len() as u32));
        let mut first = 0;
        while first < request.n {
            let count = per_round.min(request.n - first);
            let per_stream = self.use_streams(count, cells);
            if per_stream {
                self.stats.stream_rounds.fetch_add(1, Ordering::Relaxed);
            }
            usage.prompt_tokens += tokens.len() as u32;
            match self.round(
                request,
                sender,
                &tokens,
                per_stream,
                first,
                count,
                submitted,
                &mut timings,
            )? {
                Ok(mut round) => choices.append(&mut round),
                Err(Cancelled) => return Ok(None),
            }
            first += count;
        }
        usage.completion_tokens = choices.iter().map(|c: &Choice| c.completion_tokens).sum();
        timings.total = submitted.elapsed();
        Ok(Some(Completion {
            model: self.name.clone(),
            choices,
            usage,
            timings,
        }))
    }

    /// One round of `count` samples: the prompt evaluated once in the chosen context,
    /// its cache copied to every sequence, all decoded together.
    #[allow(clippy::too_many_arguments)]
    fn round(
        &mut self,
        request: &ChatRequest,
        sender: &StreamSender,
        prompt: &[LlamaToken],
        per_stream: bool,
        first: u32,
        count: u32,
        submitted: Instant,
        timings: &mut Timings,
    ) -> Result<Result<Vec<Choice>, Cancelled>, BackendError> {
        let ctx = match self.streams.as_mut() {
            Some(s) if per_stream => &mut s.ctx,
            _ => &mut self.ctx,
        };
        let started = Instant::now();
        let last = eval_prompt(ctx, self.config.n_batch, prompt)?;
        timings.prompt_eval += started.elapsed();
        let decode_started = Instant::now();
        for s in 1..count as i32 {
            ctx.copy_kv_cache_seq(0, s, None, None)
                .map_err(|e| decode_error(e.to_string()))?;
        }
        let mut seqs: Vec<Seq> = (0..count)
            .map(|s| {
                let index = first + s;
                Seq {
                    id: s as i32,
                    index,
                    sampler: sampler(&request.sampling, index, self.model.n_vocab()),
                    utf8: Utf8Buffer::default(),
                    scanner: StopScanner::new(&request.sampling.stop),
                    generated: 0,
                    pos: prompt.len() as i32,
                    logits_at: last,
                    logprobs: request.logprobs.map(|_| Vec::new()),
                    finish: None,
                    next: None,
                }
            })
            .collect();
        let max_tokens = request.sampling.max_tokens.unwrap_or(u32::MAX);
        let vocab = self.model.vocab();
        let mut batch = LlamaBatch::new(count as usize, 1);
        loop {
            for seq in seqs.iter_mut().filter(|s| s.finish.is_none()) {
                let token = seq.sampler.sample(ctx, seq.logits_at);
                self.stats.tokens_generated.fetch_add(1, Ordering::Relaxed);
                if timings.time_to_first_token.is_none() {
                    timings.time_to_first_token = Some(submitted.elapsed());
                }
                let logprob = match request.logprobs {
                    Some(k) => Some(token_logprob(
                        ctx.get_logits_ith(seq.logits_at),
                        token,
                        k,
                        |t| {
                            String::from_utf8_lossy(&vocab.token_to_piece(t, false, None))
                                .into_owned()
                        },
                    )),
                    None => None,
                };
                if vocab.is_eog(token) {
                    let text = seq.close(FinishReason::EndOfText);
                    if !send_delta(sender, seq.index, text, None) {
                        return Ok(Err(Cancelled));
                    }
                    continue;
                }
                seq.generated += 1;
                if let (Some(list), Some(lp)) = (seq.logprobs.as_mut(), logprob.clone()) {
                    list.push(lp);
                }
                let piece = seq.utf8.push(&vocab.token_to_piece(token, false, None));
                let delta = match seq.scanner.push(&piece) {
                    Scan::Delta(t) => t,
                    Scan::Stopped(t) => {
                        seq.finish = Some(FinishReason::StopSequence);
                        t
                    }
                };
                let mut text = delta;
                if seq.finish.is_none() && seq.generated >= max_tokens {
                    text.push_str(&seq.close(FinishReason::Length));
                }
                if !send_delta(sender, seq.index, text, logprob) {
                    return Ok(Err(Cancelled));
                }
                seq.next = Some(token);
            }
            if sender.is_closed() {
                return Ok(Err(Cancelled));
            }
            batch.clear();
            for seq in seqs.iter_mut().filter(|s| s.finish.is_none()) {
                if let Some(t) = seq.next.take() {
                    seq.logits_at = batch.n_tokens();
                    batch
                        .add(t, seq.pos, &[seq.id], true)
                        .map_err(|e| decode_error(e.to_string()))?;
                    seq.pos += 1;
                }
            }
            if batch.n_tokens() == 0 {
                break;
            }
            if let Err(e) = ctx.decode(&mut batch) {
                // The context is full: every sequence still going ends for length.
                tracing::debug!("decode stopped: {e}");
                for seq in seqs.iter_mut().filter(|s| s.finish.is_none()) {
                    let text = seq.close(FinishReason::Length);
                    if !send_delta(sender, seq.index, text, None) {
                        return Ok(Err(Cancelled));
                    }
                }
                break;
            }
        }
        timings.decode += decode_started.elapsed();
        Ok(Ok(seqs
            .into_iter()
            .map(|s| Choice {
                index: s.index,
                text: s.scanner.text().to_string(),
                finish_reason: s.finish.unwrap_or(FinishReason::Length),
                logprobs: s.logprobs,
                completion_tokens: s.generated,
            })
            .collect()))
    }

    /// Whether a round of `count` samples of at most `cells` tokens each (prompt and
    /// completion; `None`: unbounded) decodes in the per-stream context, made or grown
    /// here if needed. Only when its KV cache fits in the size of the main one: the
    /// memory cost is at most twice the main context's.
    fn use_streams(&mut self, count: u32, cells: Option<u32>) -> bool {
        let Some(cells) = cells.map(|c| c.div_ceil(CELL_PAD).saturating_mul(CELL_PAD)) else {
            return false;
        };
        let budget = self.ctx.n_ctx();
        if count < 2 || count.saturating_mul(cells) > budget {
            return false;
        }
        // Grow to the larger of the old and new shapes when that fits, so requests of
        // varying sizes do not remake it each time.
        let (streams, per) = match &self.streams {
            Some(s) if s.streams >= count && s.cells >= cells => return true,
            Some(s) if s.streams.max(count).saturating_mul(s.cells.max(cells)) <= budget => {
                (s.streams.max(count), s.cells.max(cells))
            }
            _ => (count, cells),
        };
        self.streams = None;
        let params = context_params(&self.config, streams * per, streams, false);
        match self.model.new_context(self.backend, params) {
            Ok(ctx) => {
                let cells = ctx.n_ctx() / streams;
                tracing::debug!(streams, cells, "per-stream context made");
                self.streams = Some(Streams {
                    ctx,
                    streams,
                    cells,
                });
                true
            }
            Err(e) => {
                tracing::warn!("per-stream context failed, using the shared one: {e}");
                false
            }
        }
    }

    fn token_job(
        &mut self,
        request: &ChatRequest,
        job: optillm_core::TokenJob,
    ) -> Result<(), BackendError> {
        let tokens = self.prompt_tokens(request)?;
        let last = eval_prompt(&mut self.ctx, self.config.n_batch, &tokens)?;
        let logits = self.ctx.get_logits_ith(last).to_vec();
        self.stats.token_jobs.fetch_add(1, Ordering::Relaxed);
        let mut session = Session::new(self, tokens.len() as u32, logits);
        job(&mut session)
    }
}

/// Clears the cache of `ctx` and evaluates `tokens` into sequence 0, `chunk` tokens per
/// batch; returns the batch index of the last token's logits.
pub(crate) fn eval_prompt(
    ctx: &mut LlamaContext,
    chunk: u32,
    tokens: &[LlamaToken],
) -> Result<i32, BackendError> {
    ctx.clear_kv_cache();
    let chunk = chunk.max(1) as usize;
    let mut batch = LlamaBatch::new(chunk, 1);
    let mut last = 0;
    for (c, part) in tokens.chunks(chunk).enumerate() {
        batch.clear();
        for (i, t) in part.iter().enumerate() {
            let pos = (c * chunk + i) as i32;
            let is_last = c * chunk + i + 1 == tokens.len();
            batch
                .add(*t, pos, &[0], is_last)
                .map_err(|e| decode_error(e.to_string()))?;
            if is_last {
                last = i as i32;
            }
        }
        ctx.decode(&mut batch)
            .map_err(|e| decode_error(e.to_string()))?;
    }
    Ok(last)
}

fn decode_error(message: String) -> BackendError {
    BackendError::from(LlamaError::Decode(message))
}

/// Sends a delta unless there is nothing to say; `false` when the consumer is gone.
fn send_delta(
    sender: &StreamSender,
    index: u32,
    text: String,
    logprob: Option<TokenLogprob>,
) -> bool {
    if text.is_empty() && logprob.is_none() {
        return !sender.is_closed();
    }
    sender.blocking_send(Ok(StreamEvent::Delta {
        index,
        text,
        logprob,
    }))
}

/// llama.cpp's defaults for settings the request leaves open.
const DEFAULT_TEMPERATURE: f32 = 0.8;
const DEFAULT_TOP_K: u32 = 40;
const DEFAULT_TOP_P: f32 = 0.95;
const DEFAULT_MIN_P: f32 = 0.05;
const REPEAT_LAST_N: i32 = 64;

/// The sampler chain of sample `index` of a request.
fn sampler(s: &Sampling, index: u32, n_vocab: i32) -> LlamaSampler {
    let mut chain = Vec::new();
    if let Some(p) = s.repeat_penalty.filter(|p| *p != 1.0) {
        chain.push(LlamaSampler::penalties(n_vocab, REPEAT_LAST_N, p, 0.0, 0.0));
    }
    if s.temperature.unwrap_or(DEFAULT_TEMPERATURE) <= 0.0 {
        chain.push(LlamaSampler::greedy());
        return LlamaSampler::chain_simple(chain);
    }
    let top_k = s.top_k.unwrap_or(DEFAULT_TOP_K);
    if top_k > 0 {
        chain.push(LlamaSampler::top_k(
            i32::try_from(top_k).unwrap_or(i32::MAX),
        ));
    }
    chain.push(LlamaSampler::top_p(s.top_p.unwrap_or(DEFAULT_TOP_P), 1));
    chain.push(LlamaSampler::min_p(s.min_p.unwrap_or(DEFAULT_MIN_P), 1));
    chain.push(LlamaSampler::temp(
        s.temperature.unwrap_or(DEFAULT_TEMPERATURE),
    ));
    let seed = s.seed_for(index).unwrap_or_else(random_seed);
    chain.push(LlamaSampler::dist(seed));
    LlamaSampler::chain_simple(chain)
}

fn random_seed() -> u32 {
    use std::hash::{BuildHasher, Hasher};
    let mut h = std::collections::hash_map::RandomState::new().build_hasher();
    h.write_u128(Instant::now().elapsed().as_nanos());
    h.finish() as u32
}

/// Log-probability of `token` under the raw logits, with the `k` most likely alternatives.
pub(crate) fn token_logprob(
    logits: &[f32],
    token: LlamaToken,
    k: u32,
    piece: impl Fn(LlamaToken) -> String,
) -> TokenLogprob {
    let max = logits.iter().copied().fold(f32::NEG_INFINITY, f32::max);
    let lse = max + logits.iter().map(|l| (l - max).exp()).sum::<f32>().ln();
    let lp = |i: usize| logits.get(i).map_or(f32::NEG_INFINITY, |l| l - lse);
    let top = if k > 0 {
        let mut idx: Vec<usize> = (0..logits.len()).collect();
        let k = (k as usize).min(idx.len());
        idx.select_nth_unstable_by(k.saturating_sub(1), |a, b| {
            logits[*b].total_cmp(&logits[*a])
        });
        idx.truncate(k);
        idx.sort_by(|a, b| logits[*b].total_cmp(&logits[*a]));
        idx.into_iter()
            .map(|i| TopLogprob {
                token: piece(LlamaToken(i as i32)),
                logprob: lp(i),
            })
            .collect()
    } else {
        Vec::new()
    };
    TokenLogprob {
        token: piece(token),
        logprob: lp(token.0 as usize),
        top,
    }
}
