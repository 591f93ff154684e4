//! The worker thread: owns the model and the context and serves the jobs of the queue in
//! order; generation requests waiting together decode together in one round.

use std::collections::VecDeque;
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
use llama_cpp_2::token::data::LlamaTokenData;
use llama_cpp_2::token::data_array::LlamaTokenDataArray;
use optillm_core::{
    BackendError, ChatRequest, Choice, Completion, FinishReason, FormatError, ResponseFormat,
    Sampling, StreamEvent, StreamSender, Timings, TokenLogprob, TopLogprob, Usage,
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
    // Jobs taken off the queue that did not join a round, served next in order.
    let mut waiting: VecDeque<Job> = VecDeque::new();
    loop {
        let job = match waiting.pop_front() {
            Some(job) => job,
            None => match queue.recv() {
                Ok(job) => job,
                Err(_) => break,
            },
        };
        match job {
            Job::Generate {
                request,
                sender,
                submitted,
            } => {
                let Some(first) = engine.admit(request, sender, submitted) else {
                    continue;
                };
                let mut group = vec![first];
                // Requests already waiting decode together with it while they fit.
                loop {
                    let next = match waiting.pop_front() {
                        Some(job) => job,
                        None => match queue.try_recv() {
                            Ok(job) => job,
                            Err(_) => break,
                        },
                    };
                    let Job::Generate {
                        request,
                        sender,
                        submitted,
                    } = next
                    else {
                        waiting.push_front(next);
                        break;
                    };
                    let Some(next) = engine.admit(request, sender, submitted) else {
                        continue;
                    };
                    if !engine.joins(&group, &next) {
                        waiting.push_front(next.into_job());
                        break;
                    }
                    group.push(next);
                }
                engine.generate(&group);
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

/// Why a part of a round ended without its samples.
enum Stopped {
    /// The request was abandoned by its consumer.
    Cancelled,
    /// Its samples could not go on (a grammar with no admissible token).
    Failed(BackendError),
}

/// A generation request taken off the queue, its prompt tokenized.
struct Admitted {
    request: ChatRequest,
    sender: StreamSender,
    submitted: Instant,
    tokens: Vec<LlamaToken>,
    /// The GBNF grammar every sample follows (from the request's format).
    grammar: Option<String>,
}

impl Admitted {
    /// The most cells its samples can fill (`None`: its length is unbounded).
    fn cells(&self) -> Option<u64> {
        let per_sample = self.tokens.len() as u64 + u64::from(self.request.sampling.max_tokens?);
        Some(u64::from(self.request.n) * per_sample)
    }

    fn part(&self, first: u32, count: u32) -> Part<'_> {
        Part {
            request: &self.request,
            sender: &self.sender,
            prompt: &self.tokens,
            first,
            count,
            submitted: self.submitted,
            grammar: self.grammar.as_deref(),
        }
    }

    /// Back to a job of the queue (to be served later).
    fn into_job(self) -> Job {
        Job::Generate {
            request: self.request,
            sender: self.sender,
            submitted: self.submitted,
        }
    }
}

/// Receives a part of a round when it ends: its index, its samples (or why it has none)
/// and its timings.
type OnEnd<'f> = dyn FnMut(usize, Result<Vec<Choice>, Stopped>, &Timings) + 'f;

/// A request's share of a round: its samples `first..first + count`.
struct Part<'a> {
    request: &'a ChatRequest,
    sender: &'a StreamSender,
    prompt: &'a [LlamaToken],
    first: u32,
    count: u32,
    submitted: Instant,
    grammar: Option<&'a str>,
}

/// One sequence being generated.
struct Seq {
    id: i32,
    /// The part (request) of the round it belongs to.
    part: usize,
    index: u32,
    sampler: LlamaSampler,
    /// Its own grammar state, when the request constrains the output.
    grammar: Option<LlamaSampler>,
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
        // Every message takes at least one token: refuse what cannot fit before the chat
        // template, whose cost grows faster than linearly with the number of messages.
        let n_ctx = self.ctx.n_ctx();
        if request.messages.len() as u64 >= u64::from(n_ctx) {
            return Err(BackendError::InvalidRequest(format!(
                "{} messages cannot fit a context of {n_ctx} tokens (each takes at least one)",
                request.messages.len()
            )));
        }
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
        if tokens.is_empty() || tokens.len() as u64 >= u64::from(n_ctx) {
            return Err(BackendError::ContextOverflow {
                prompt_tokens: u32::try_from(tokens.len()).unwrap_or(u32::MAX),
                context_length: n_ctx,
            });
        }
        Ok(tokens)
    }

    /// A generation request with its prompt tokenized; `None` when the prompt is bad
    /// (the error has been sent to its caller).
    fn admit(
        &self,
        request: ChatRequest,
        sender: StreamSender,
        submitted: Instant,
    ) -> Option<Admitted> {
        let admitted = self.prompt_tokens(&request).and_then(|tokens| {
            let grammar = self.grammar_of(request.format.as_ref())?;
            Ok((tokens, grammar))
        });
        match admitted {
            Ok((tokens, grammar)) => Some(Admitted {
                request,
                sender,
                submitted,
                tokens,
                grammar,
            }),
            Err(e) => {
                self.stats.requests.fetch_add(1, Ordering::Relaxed);
                sender.blocking_send(Err(e));
                None
            }
        }
    }

    /// The GBNF grammar of a response format, checked by building its sampler once: a
    /// schema llama.cpp cannot convert or a grammar it cannot parse is an
    /// [`BackendError::InvalidFormat`] here, before any decoding.
    fn grammar_of(&self, format: Option<&ResponseFormat>) -> Result<Option<String>, BackendError> {
        let Some(format) = format else {
            return Ok(None);
        };
        let grammar = match format {
            ResponseFormat::Grammar { grammar } => grammar.clone(),
            ResponseFormat::JsonObject => schema_grammar(r#"{"type":"object"}"#)?,
            ResponseFormat::JsonSchema { schema } => schema_grammar(&schema.to_string())?,
        };
        grammar_sampler(self.model, &grammar)?;
        Ok(Some(grammar))
    }

    /// Whether `next` can decode in one round with `group`: every request bounds its
    /// length, all their samples fit the sequences of a round and all their cells fit the
    /// main context (so neither context can fill up in the middle of the round).
    fn joins(&self, group: &[Admitted], next: &Admitted) -> bool {
        let all = || group.iter().chain(std::iter::once(next));
        let seqs: u32 = all().map(|a| a.request.n).sum();
        let cells: Option<u64> = all().map(Admitted::cells).sum();
        let parts = group.len() + 1;
        seqs <= self.config.n_seq_max.max(1)
            && parts <= self.config.n_batch as usize
            && cells.is_some_and(|c| c <= u64::from(self.ctx.n_ctx()))
    }

    /// Serves a group of requests: one alone as [`Engine::generate_all`], several in
    /// one round; each request's answer (or error) goes to its caller.
    fn generate(&mut self, group: &[Admitted]) {
        if let [one] = group {
            let result = self.generate_all(one);
            answer(&self.stats, one, result);
            return;
        }
        self.stats
            .batched_requests
            .fetch_add(group.len() as u64, Ordering::Relaxed);
        self.generate_together(group);
    }

    /// One request's samples, in rounds of at most `n_seq_max`.
    fn generate_all(&mut self, a: &Admitted) -> Result<Option<Completion>, BackendError> {
        let request = &a.request;
        let mut usage = Usage::default();
        let mut timings = Timings::default();
        let mut choices = Vec::new();
        let per_round = self.config.n_seq_max.max(1);
        // Cells one sample can fill: prompt and completion (`None`: unbounded).
        let cells = request
            .sampling
            .max_tokens
            .map(|m| m.saturating_add(a.tokens.len() as u32));
        let mut first = 0;
        while first < request.n {
            let count = per_round.min(request.n - first);
            let per_stream = self.use_streams(count, cells);
            usage.prompt_tokens += a.tokens.len() as u32;
            let part = a.part(first, count);
            let mut ended = None;
            self.round(
                &[part],
                per_stream,
                std::slice::from_mut(&mut timings),
                &mut |_, samples, _| ended = Some(samples),
            )?;
            match ended {
                Some(Ok(mut samples)) => choices.append(&mut samples),
                Some(Err(Stopped::Failed(e))) => return Err(e),
                _ => return Ok(None),
            }
            first += count;
        }
        usage.completion_tokens = choices.iter().map(|c: &Choice| c.completion_tokens).sum();
        timings.total = a.submitted.elapsed();
        Ok(Some(Completion {
            model: self.name.clone(),
            choices,
            usage,
            timings,
        }))
    }

    /// Several requests (admitted by [`Engine::joins`]) in one round: each prompt
    /// evaluated once, every sample of every request decoded in the same batch per step,
    /// each request answered as soon as its own samples end.
    fn generate_together(&mut self, group: &[Admitted]) {
        let seqs: u32 = group.iter().map(|a| a.request.n).sum();
        let cells = group
            .iter()
            .filter_map(|a| {
                a.request
                    .sampling
                    .max_tokens
                    .map(|m| m + a.tokens.len() as u32)
            })
            .max();
        let per_stream = self.use_streams(seqs, cells);
        let parts: Vec<Part> = group.iter().map(|a| a.part(0, a.request.n)).collect();
        let mut timings = vec![Timings::default(); group.len()];
        let stats = Arc::clone(&self.stats);
        let name = self.name.clone();
        let mut answered = vec![false; group.len()];
        let outcome = self.round(&parts, per_stream, &mut timings, &mut |p, samples, t| {
            let (Some(a), Some(flag)) = (group.get(p), answered.get_mut(p)) else {
                return;
            };
            *flag = true;
            let completion = match samples {
                Ok(choices) => {
                    let mut timings = *t;
                    timings.total = a.submitted.elapsed();
                    Ok(Some(Completion {
                        model: name.clone(),
                        usage: Usage {
                            prompt_tokens: a.tokens.len() as u32,
                            completion_tokens: choices.iter().map(|c| c.completion_tokens).sum(),
                        },
                        choices,
                        timings,
                    }))
                }
                Err(Stopped::Cancelled) => Ok(None),
                Err(Stopped::Failed(e)) => Err(e),
            };
            answer(&stats, a, completion);
        });
        if let Err(e) = outcome {
            let message = e.to_string();
            for (a, done) in group.iter().zip(answered) {
                if !done {
                    answer(&self.stats, a, Err(decode_error(message.clone())));
                }
            }
        }
    }

    /// One round: each part's prompt evaluated once in the chosen context, its cache
    /// copied to each of its samples' sequences, all samples of all parts decoded
    /// together. `on_end` gets each part's samples (with its timings) as soon as they
    /// have all ended, or `Cancelled` when its consumer is gone; the others go on.
    fn round(
        &mut self,
        parts: &[Part],
        per_stream: bool,
        timings: &mut [Timings],
        on_end: &mut OnEnd,
    ) -> Result<(), BackendError> {
        if per_stream {
            self.stats.stream_rounds.fetch_add(1, Ordering::Relaxed);
        }
        let ctx = match self.streams.as_mut() {
            Some(s) if per_stream => &mut s.ctx,
            _ => &mut self.ctx,
        };
        let started = Instant::now();
        let mut prompts = Vec::with_capacity(parts.len());
        let mut base = 0;
        for part in parts {
            prompts.push((part.prompt, base));
            base += part.count as i32;
        }
        let lasts = eval_prompts(ctx, self.config.n_batch, &prompts)?;
        // Summed over the rounds of a request of more than `n_seq_max` samples.
        let prompt_eval = started.elapsed();
        for t in timings.iter_mut() {
            t.prompt_eval += prompt_eval;
        }
        let decode_started = Instant::now();
        let n_vocab = self.model.n_vocab();
        let mut seqs: Vec<Seq> = Vec::new();
        for (p, ((part, (_, base)), logits_at)) in parts.iter().zip(&prompts).zip(lasts).enumerate()
        {
            for s in 0..part.count {
                let id = base + s as i32;
                if s > 0 {
                    ctx.copy_kv_cache_seq(*base, id, None, None)
                        .map_err(|e| decode_error(e.to_string()))?;
                }
                let index = part.first + s;
                let grammar = match part.grammar {
                    Some(g) => Some(grammar_sampler(self.model, g)?),
                    None => None,
                };
                seqs.push(Seq {
                    id,
                    part: p,
                    index,
                    sampler: sampler(&part.request.sampling, index, n_vocab),
                    grammar,
                    utf8: Utf8Buffer::default(),
                    scanner: StopScanner::new(&part.request.sampling.stop),
                    generated: 0,
                    pos: part.prompt.len() as i32,
                    logits_at,
                    logprobs: part.request.logprobs.map(|_| Vec::new()),
                    finish: None,
                    next: None,
                });
            }
        }
        let mut cancelled = vec![false; parts.len()];
        let mut failed: Vec<Option<FormatError>> = vec![None; parts.len()];
        let mut reported = vec![false; parts.len()];
        let vocab = self.model.vocab();
        let mut batch = LlamaBatch::new(seqs.len().max(1), 1);
        loop {
            let mut gone = Vec::new();
            for seq in seqs.iter_mut().filter(|s| s.finish.is_none()) {
                let Some(part) = parts.get(seq.part) else {
                    continue;
                };
                let token = match seq.grammar.as_mut() {
                    None => seq.sampler.sample(ctx, seq.logits_at),
                    Some(grammar) => {
                        match sample_constrained(ctx, seq.logits_at, &mut seq.sampler, grammar) {
                            Some(t) => t,
                            None => {
                                // The grammar admits nothing here: the request fails.
                                if let Some(slot) = failed.get_mut(seq.part) {
                                    slot.get_or_insert(FormatError::DeadEnd {
                                        after: seq.scanner.text().to_string(),
                                    });
                                }
                                gone.push(seq.part);
                                continue;
                            }
                        }
                    }
                };
                self.stats.tokens_generated.fetch_add(1, Ordering::Relaxed);
                if let Some(t) = timings.get_mut(seq.part) {
                    if t.time_to_first_token.is_none() {
                        t.time_to_first_token = Some(part.submitted.elapsed());
                    }
                }
                let logprob = part.request.logprobs.map(|k| {
                    token_logprob(ctx.get_logits_ith(seq.logits_at), token, k, |t| {
                        String::from_utf8_lossy(&vocab.token_to_piece(t, false, None)).into_owned()
                    })
                });
                if vocab.is_eog(token) {
                    let text = seq.close(FinishReason::EndOfText);
                    if !send_delta(part.sender, seq.index, text, None) {
                        gone.push(seq.part);
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
                let max_tokens = part.request.sampling.max_tokens.unwrap_or(u32::MAX);
                if seq.finish.is_none() && seq.generated >= max_tokens {
                    text.push_str(&seq.close(FinishReason::Length));
                }
                if !send_delta(part.sender, seq.index, text, logprob) {
                    gone.push(seq.part);
                }
                seq.next = Some(token);
            }
            gone.extend(
                parts
                    .iter()
                    .enumerate()
                    .filter(|(_, part)| part.sender.is_closed())
                    .map(|(p, _)| p),
            );
            for p in gone {
                if let Some(flag) = cancelled.get_mut(p) {
                    *flag = true;
                }
                // Its sequences stop and free their cells for the others.
                for seq in seqs.iter_mut().filter(|s| s.part == p) {
                    seq.finish.get_or_insert(FinishReason::Length);
                    seq.next = None;
                    let _ = ctx.clear_kv_cache_seq(u32::try_from(seq.id).ok(), None, None);
                }
            }
            report(
                &mut seqs,
                &cancelled,
                &mut failed,
                &mut reported,
                timings,
                decode_started,
                on_end,
            );
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
                    if let Some(part) = parts.get(seq.part) {
                        if !send_delta(part.sender, seq.index, text, None) {
                            if let Some(flag) = cancelled.get_mut(seq.part) {
                                *flag = true;
                            }
                        }
                    }
                }
                // Every sequence has ended: the next pass reports them and stops.
            }
        }
        Ok(())
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

/// Hands every part not reported yet whose samples have all ended (or whose consumer
/// is gone, or whose grammar failed) to `on_end`, its samples in order, its decode time
/// added to its timings.
fn report(
    seqs: &mut [Seq],
    cancelled: &[bool],
    failed: &mut [Option<FormatError>],
    reported: &mut [bool],
    timings: &mut [Timings],
    decode_started: Instant,
    on_end: &mut OnEnd,
) {
    for (p, (done, &gone)) in reported.iter_mut().zip(cancelled).enumerate() {
        let ended = seqs
            .iter()
            .filter(|s| s.part == p)
            .all(|s| s.finish.is_some());
        if *done || !(gone || ended) {
            continue;
        }
        *done = true;
        let choices = seqs
            .iter_mut()
            .filter(|s| s.part == p)
            .map(|s| Choice {
                index: s.index,
                text: s.scanner.text().to_string(),
                finish_reason: s.finish.unwrap_or(FinishReason::Length),
                logprobs: s.logprobs.take(),
                completion_tokens: s.generated,
            })
            .collect();
        let Some(t) = timings.get_mut(p) else {
            continue;
        };
        t.decode += decode_started.elapsed();
        let outcome = match failed.get_mut(p).and_then(Option::take) {
            Some(e) => Err(Stopped::Failed(e.into())),
            None if gone => Err(Stopped::Cancelled),
            None => Ok(choices),
        };
        on_end(p, outcome, t);
    }
}

/// Clears the cache of `ctx` and evaluates `tokens` into sequence 0, `chunk` tokens per
/// batch; returns the batch index of the last token's logits.
pub(crate) fn eval_prompt(
    ctx: &mut LlamaContext,
    chunk: u32,
    tokens: &[LlamaToken],
) -> Result<i32, BackendError> {
    let lasts = eval_prompts(ctx, chunk, &[(tokens, 0)])?;
    lasts
        .first()
        .copied()
        .ok_or_else(|| decode_error("an empty prompt".into()))
}

/// Clears the cache of `ctx` and evaluates each prompt into its sequence, `chunk` tokens
/// per batch. The last token of every prompt goes into the last batch, so that the
/// logits of all of them are there at once; returns their batch indices, in order.
pub(crate) fn eval_prompts(
    ctx: &mut LlamaContext,
    chunk: u32,
    prompts: &[(&[LlamaToken], i32)],
) -> Result<Vec<i32>, BackendError> {
    ctx.clear_kv_cache();
    let chunk = chunk.max(1) as usize;
    if prompts.len() > chunk {
        return Err(decode_error(format!(
            "{} prompts in one round need a batch of at least as many tokens (n_batch {chunk})",
            prompts.len()
        )));
    }
    let mut leading = Vec::new();
    let mut lasts = Vec::with_capacity(prompts.len());
    for (tokens, seq) in prompts {
        let Some((last, rest)) = tokens.split_last() else {
            return Err(decode_error("an empty prompt".into()));
        };
        leading.extend(
            rest.iter()
                .enumerate()
                .map(|(pos, t)| (*t, pos as i32, *seq)),
        );
        lasts.push((*last, rest.len() as i32, *seq));
    }
    let mut batch = LlamaBatch::new(chunk, 1);
    let mut pieces = leading.chunks(chunk).peekable();
    while let Some(piece) = pieces.next() {
        for &(t, pos, seq) in piece {
            batch
                .add(t, pos, &[seq], false)
                .map_err(|e| decode_error(e.to_string()))?;
        }
        // The last piece takes the prompts' last tokens too when they fit.
        if pieces.peek().is_none() && piece.len() + lasts.len() <= chunk {
            break;
        }
        ctx.decode(&mut batch)
            .map_err(|e| decode_error(e.to_string()))?;
        batch.clear();
    }
    let mut indices = Vec::with_capacity(lasts.len());
    for (t, pos, seq) in lasts {
        indices.push(batch.n_tokens());
        batch
            .add(t, pos, &[seq], true)
            .map_err(|e| decode_error(e.to_string()))?;
    }
    ctx.decode(&mut batch)
        .map_err(|e| decode_error(e.to_string()))?;
    Ok(indices)
}

/// Sends a request's outcome: its completion, its error, or nothing when its consumer
/// has gone (`Ok(None)`).
fn answer(stats: &Stats, a: &Admitted, result: Result<Option<Completion>, BackendError>) {
    stats.requests.fetch_add(1, Ordering::Relaxed);
    match result {
        Ok(Some(completion)) => {
            a.sender.blocking_send(Ok(StreamEvent::Done(completion)));
        }
        Ok(None) => {
            stats.cancelled.fetch_add(1, Ordering::Relaxed);
            tracing::debug!("request cancelled by its consumer");
        }
        Err(e) => {
            a.sender.blocking_send(Err(e));
        }
    }
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

/// The GBNF grammar llama.cpp makes of a JSON schema.
fn schema_grammar(schema: &str) -> Result<String, BackendError> {
    llama_cpp_2::json_schema_to_grammar(schema).map_err(|e| {
        tracing::debug!("json_schema_to_grammar: {e}");
        BackendError::from(FormatError::BadSchema {
            path: "#".into(),
            reason: "llama.cpp cannot turn it into a grammar (an unsupported keyword, a \
                     `$ref` to nothing, or an invalid `pattern`?)"
                .into(),
        })
    })
}

/// A grammar sampler whose start rule is `root`. llama.cpp's parser reports its errors
/// (syntax, undefined rules, left recursion) as a null sampler, and C++ exceptions are
/// caught by llama-cpp-2's `common` shim: a bad grammar is an error, never an abort.
fn grammar_sampler(model: &LlamaModel, grammar: &str) -> Result<LlamaSampler, BackendError> {
    LlamaSampler::grammar(model, grammar, "root").map_err(|e| {
        let why = match e {
            llama_cpp_2::GrammarError::RootNotFound => "it has no `root` rule".to_string(),
            llama_cpp_2::GrammarError::GrammarNullBytes => "it contains a NUL byte".to_string(),
            _ => "llama.cpp could not parse it (a syntax error, an undefined rule or left \
                  recursion)"
                .to_string(),
        };
        BackendError::from(FormatError::BadGrammar(why))
    })
}

/// Whether `grammar` (in its current state) admits `token` next.
fn admits(grammar: &mut LlamaSampler, token: LlamaToken) -> bool {
    let mut one = LlamaTokenDataArray::new(vec![LlamaTokenData::new(token, 0.0, 0.0)], false);
    grammar.apply(&mut one);
    one.data.first().is_some_and(|d| d.logit().is_finite())
}

/// Samples the next token of a sequence under its grammar, as llama.cpp's own common
/// sampler does: the unconstrained choice when the grammar admits it (one check), else a
/// choice among the admitted tokens only (the grammar applied to the whole vocabulary).
/// Both samplers then accept the token. `None` when the grammar admits no token at all,
/// or refuses the one accepted (the sequence cannot go on): never a token the grammar
/// would abort on.
fn sample_constrained(
    ctx: &LlamaContext,
    idx: i32,
    chain: &mut LlamaSampler,
    grammar: &mut LlamaSampler,
) -> Option<LlamaToken> {
    let candidates = || {
        LlamaTokenDataArray::from_iter(
            ctx.get_logits_ith(idx)
                .iter()
                .enumerate()
                .map(|(i, l)| LlamaTokenData::new(LlamaToken(i as i32), *l, 0.0)),
            false,
        )
    };
    let mut all = candidates();
    chain.apply(&mut all);
    let mut token = all.selected_token()?;
    if !admits(grammar, token) {
        let mut allowed = candidates();
        grammar.apply(&mut allowed);
        if !allowed.data.iter().any(|d| d.logit().is_finite()) {
            return None;
        }
        chain.apply(&mut allowed);
        token = allowed.selected_token()?;
        if !admits(grammar, token) {
            return None;
        }
    }
    chain.accept(token);
    grammar.try_accept(token).ok()?;
    Some(token)
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
