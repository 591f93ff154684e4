//! The batched round: each request's prompt evaluated once, its KV cache copied to each
//! of its samples' sequences, then every sample of every request decoded together, one
//! token per sequence per step, each request answered as soon as its own samples end.
//!
//! A request whose consumer does not read has its events held in its [`Outbox`]; past
//! the outbox's limit its sequences sit out the steps (they keep their cells and their
//! next token) until the consumer reads, so the others never wait for it. A consumer
//! that leaves cancels its request and frees its sequences' cells.

use std::sync::Arc;
use std::sync::atomic::Ordering;
use std::time::{Duration, Instant};

use llama_cpp_2::DecodeError;
use llama_cpp_2::context::LlamaContext;
use llama_cpp_2::llama_batch::LlamaBatch;
use llama_cpp_2::sampling::LlamaSampler;
use llama_cpp_2::token::LlamaToken;
use optillm_core::{
    BackendError, ChatRequest, Choice, Completion, FinishReason, FormatError, StreamEvent, Timings,
    TokenLogprob, Usage,
};

use super::admission::{Admitted, Entry};
use super::outbox::{Delivery, Event, Outbox};
use super::prefix::PrefixCache;
use super::sampling::{grammar_sampler, sample_constrained, sampler, token_logprob};
use super::{Decoding, Engine, context_params};
use crate::text::{Scan, StopScanner, Utf8Buffer};
use crate::{LlamaError, Stats};
use llama_cpp_2::context::session::{LlamaStateSeqFlags, SeqState};

/// llama.cpp pads context sizes to this many cells.
const CELL_PAD: u32 = 256;

/// How long a round with only paused requests left sleeps between looks at their
/// consumers (a consumer that reads wakes it at once).
const PAUSED_WAIT: Duration = Duration::from_millis(100);

/// A context whose KV cache has one stream per sequence (`kv_unified = false`), as
/// llama-batched-bench uses by default: each of n samples attends to its own cells only,
/// where in the shared cache every step would attend over the cells of all n.
pub(super) struct Streams<'m> {
    pub(super) ctx: LlamaContext<'m>,
    /// Number of streams (sequences it can hold).
    streams: u32,
    /// Cells of each stream: the most prompt + generated tokens of one sequence.
    pub(super) cells: u32,
    /// Its own kept prompts and replies (a saved state restores only into a context of
    /// the same stream count), carried over when it is remade with as many streams.
    pub(super) prefix: PrefixCache<SeqState>,
}

/// Whether a round decodes in the per-stream context, and whether that must be made.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub(super) enum StreamsPlan {
    /// The main (shared) context.
    Shared,
    /// The per-stream context as it is.
    Reuse,
    /// A per-stream context of this shape, made now.
    Make { streams: u32, cells: u32 },
}

/// The plan for a round of `count` samples of at most `cells` tokens each (prompt and
/// completion; `None`: unbounded), given the main context's size `budget` and the shape
/// `(streams, cells)` of the per-stream context there is. Per-stream only when its KV
/// cache fits in the size of the main one (the memory cost is at most twice the main
/// context's); grown to the larger of the old and new shapes when that fits, so requests
/// of varying sizes do not remake it each time.
pub(super) fn streams_plan(
    count: u32,
    cells: Option<u32>,
    budget: u32,
    current: Option<(u32, u32)>,
) -> StreamsPlan {
    let Some(cells) = cells.map(|c| c.div_ceil(CELL_PAD).saturating_mul(CELL_PAD)) else {
        return StreamsPlan::Shared;
    };
    if count < 2 || count.saturating_mul(cells) > budget {
        return StreamsPlan::Shared;
    }
    match current {
        Some((s, c)) if s >= count && c >= cells => StreamsPlan::Reuse,
        Some((s, c)) if s.max(count).saturating_mul(c.max(cells)) <= budget => StreamsPlan::Make {
            streams: s.max(count),
            cells: c.max(cells),
        },
        _ => StreamsPlan::Make {
            streams: count,
            cells,
        },
    }
}

/// Why a part of a round ended without its samples.
pub(super) enum Stopped {
    /// The request was abandoned by its consumer.
    Cancelled,
    /// Its samples could not go on (a grammar with no admissible token).
    Failed(BackendError),
}

/// Receives a part of a round when it ends: its index, its samples (or why it has none)
/// and its timings; returns the event that answers its request, if any.
type OnEnd<'f> = dyn FnMut(usize, Result<Vec<Choice>, Stopped>, &Timings) -> Option<Event> + 'f;
/// Work run before every decoding step of a round (the token lane's pending step).
pub(super) type Between<'b, 'f> = &'b mut (dyn FnMut() + 'f);

/// A request's share of a round: its samples `first..first + count`.
pub(super) struct Part<'a> {
    pub(super) request: &'a ChatRequest,
    pub(super) prompt: &'a [LlamaToken],
    pub(super) first: u32,
    pub(super) count: u32,
    pub(super) submitted: Instant,
    pub(super) grammar: Option<&'a str>,
}

/// The first sequence id of each part: the parts' samples take consecutive ids, in
/// order, and each part's prompt is evaluated into its first one.
pub(super) fn bases(counts: impl IntoIterator<Item = u32>) -> Vec<i32> {
    let mut next = 0i32;
    counts
        .into_iter()
        .map(|count| {
            let base = next;
            next = next.saturating_add(i32::try_from(count).unwrap_or(i32::MAX));
            base
        })
        .collect()
}

/// One sequence being generated: its place and its text so far.
pub(super) struct Seq {
    id: i32,
    /// The part (request) of the round it belongs to.
    part: usize,
    index: u32,
    utf8: Utf8Buffer,
    scanner: StopScanner,
    generated: u32,
    pos: i32,
    /// Batch index of its logits in the last decode.
    logits_at: i32,
    logprobs: Option<Vec<TokenLogprob>>,
    finish: Option<FinishReason>,
    /// A sampled token not decoded yet.
    next: Option<LlamaToken>,
    /// The tokens decoded into its cells after the prompt.
    decoded: Vec<LlamaToken>,
}

/// The samplers of one sequence.
struct Samplers {
    chain: LlamaSampler,
    /// Its own grammar state, when the request constrains the output.
    grammar: Option<LlamaSampler>,
}

impl Seq {
    /// Sequence `id`, sample `index` of part `part`, after a prompt of `prompt` tokens
    /// whose last logits are at batch index `logits_at`.
    fn new(
        id: i32,
        (part, index): (usize, u32),
        prompt: usize,
        logits_at: i32,
        stop: &[String],
        logprobs: bool,
    ) -> Self {
        Seq {
            id,
            part,
            index,
            utf8: Utf8Buffer::default(),
            scanner: StopScanner::new(stop),
            generated: 0,
            pos: i32::try_from(prompt).unwrap_or(i32::MAX),
            logits_at,
            logprobs: logprobs.then(Vec::new),
            finish: None,
            next: None,
            decoded: Vec::new(),
        }
    }

    /// Whether it samples in this step: it goes on and its last token has been decoded.
    fn samples_now(&self) -> bool {
        self.finish.is_none() && self.next.is_none()
    }

    /// Takes its sampled `token`: the end of text (`piece` is `None`) closes it; any
    /// other token counts, adds its logprob and its piece (through the UTF-8 buffer and
    /// the stop scanner), waits to be decoded, and closes the sequence at a stop
    /// sequence or at `max_tokens`. Returns the text to send now.
    fn accept(
        &mut self,
        token: LlamaToken,
        piece: Option<&[u8]>,
        max_tokens: u32,
        logprob: Option<&TokenLogprob>,
    ) -> String {
        let Some(piece) = piece else {
            return self.close(FinishReason::EndOfText);
        };
        self.generated += 1;
        if let (Some(list), Some(lp)) = (self.logprobs.as_mut(), logprob) {
            list.push(lp.clone());
        }
        let piece = self.utf8.push(piece);
        let mut text = match self.scanner.push(&piece) {
            Scan::Delta(t) => t,
            Scan::Stopped(t) => {
                self.finish = Some(FinishReason::StopSequence);
                t
            }
        };
        if self.finish.is_none() && self.generated >= max_tokens {
            text.push_str(&self.close(FinishReason::Length));
        }
        self.next = Some(token);
        text
    }

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

    /// Stops it where it is (its request was cancelled or failed).
    fn stop(&mut self) {
        self.finish.get_or_insert(FinishReason::Length);
        self.next = None;
    }
}

/// The sequences in the next step's batch, in order: those going on with a sampled
/// token to decode, unless their request is paused.
pub(super) fn batch_members(seqs: &[Seq], paused: &[bool]) -> Vec<usize> {
    seqs.iter()
        .enumerate()
        .filter(|(_, s)| s.finish.is_none() && s.next.is_some())
        .filter(|(_, s)| !paused.get(s.part).copied().unwrap_or(false))
        .map(|(i, _)| i)
        .collect()
}

/// The paused parts that still have sequences going on: what a step whose batch is
/// empty waits for.
pub(super) fn held_parts(seqs: &[Seq], paused: &[bool]) -> Vec<usize> {
    let mut held: Vec<usize> = seqs
        .iter()
        .filter(|s| s.finish.is_none() && paused.get(s.part).copied().unwrap_or(false))
        .map(|s| s.part)
        .collect();
    held.dedup();
    held
}

/// The parts not reported yet whose samples have all ended (or whose consumer is gone,
/// or whose grammar failed), each with its samples in order or why it has none; marks
/// them reported.
pub(super) fn ended_parts(
    seqs: &mut [Seq],
    cancelled: &[bool],
    failed: &mut [Option<FormatError>],
    reported: &mut [bool],
) -> Vec<(usize, Result<Vec<Choice>, Stopped>)> {
    let mut ended = Vec::new();
    for (p, (done, &gone)) in reported.iter_mut().zip(cancelled).enumerate() {
        let all_ended = seqs
            .iter()
            .filter(|s| s.part == p)
            .all(|s| s.finish.is_some());
        if *done || !(gone || all_ended) {
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
        let outcome = match failed.get_mut(p).and_then(Option::take) {
            Some(e) => Err(Stopped::Failed(e.into())),
            None if gone => Err(Stopped::Cancelled),
            None => Ok(choices),
        };
        ended.push((p, outcome));
    }
    ended
}

/// Waits until one of the paused parts `held` can go on: its consumer read (its outbox
/// is under its limit again) or left. The token lane goes on meanwhile (its job's
/// operations wake the worker).
fn wait_for_room(outboxes: &mut [Outbox], held: &[usize], between: Between) {
    loop {
        between();
        let mut free = false;
        for &p in held {
            free |= match outboxes.get_mut(p) {
                Some(o) => o.flush() == Delivery::Gone || !o.is_full(),
                None => true,
            };
        }
        if free {
            return;
        }
        std::thread::park_timeout(PAUSED_WAIT);
    }
}

/// Counts a request's outcome and gives the event that answers it: its completion, its
/// error, or nothing when its consumer has gone (`Ok(None)`).
fn answer(stats: &Stats, result: Result<Option<Completion>, BackendError>) -> Option<Event> {
    stats.requests.fetch_add(1, Ordering::Relaxed);
    match result {
        Ok(Some(completion)) => Some(Ok(StreamEvent::Done(completion))),
        Ok(None) => {
            stats.cancelled.fetch_add(1, Ordering::Relaxed);
            tracing::debug!("request cancelled by its consumer");
            None
        }
        Err(e) => Some(Err(e)),
    }
}

pub(super) fn decode_error(message: String) -> BackendError {
    BackendError::from(LlamaError::Decode(message))
}

/// Sends a delta unless there is nothing to say; `false` when the consumer is gone.
fn send_delta(
    outbox: &mut Outbox,
    index: u32,
    text: String,
    logprob: Option<TokenLogprob>,
) -> bool {
    if text.is_empty() && logprob.is_none() {
        return !outbox.is_gone();
    }
    outbox.push(Ok(StreamEvent::Delta {
        index,
        text,
        logprob,
    }))
}

impl<'m> Engine<'m> {
    /// Serves a group of requests: one alone as [`Engine::generate_all`], several in
    /// one round; each request's answer (or error) goes to its caller. Returns their
    /// outboxes, which may still hold events for consumers that have not read them.
    /// `between` runs before every decoding step (the token lane's pending step).
    pub(super) fn generate(&mut self, group: Vec<Entry>, between: Between) -> Vec<Outbox> {
        let (group, mut outboxes): (Vec<Admitted>, Vec<Outbox>) = group
            .into_iter()
            .map(|(a, sender)| (a, Outbox::new(sender, self.waker.clone())))
            .unzip();
        if let ([one], [outbox]) = (group.as_slice(), outboxes.as_mut_slice()) {
            let result = self.generate_all(one, outbox, between);
            if let Some(event) = answer(&self.stats, result) {
                outbox.push(event);
            }
            return outboxes;
        }
        self.stats
            .batched_requests
            .fetch_add(group.len() as u64, Ordering::Relaxed);
        self.generate_together(&group, &mut outboxes, between);
        outboxes
    }

    /// One request's samples, in rounds of at most `n_seq_max`.
    fn generate_all(
        &mut self,
        a: &Admitted,
        outbox: &mut Outbox,
        between: Between,
    ) -> Result<Option<Completion>, BackendError> {
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
                std::slice::from_mut(outbox),
                per_stream,
                std::slice::from_mut(&mut timings),
                &mut |_, samples, _| {
                    ended = Some(samples);
                    None
                },
                &mut *between,
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

    /// Several requests (admitted by [`super::admission::joins`]) in one round: each
    /// prompt evaluated once, every sample of every request decoded in the same batch
    /// per step, each request answered as soon as its own samples end.
    fn generate_together(&mut self, group: &[Admitted], outboxes: &mut [Outbox], between: Between) {
        let seqs: u32 = group.iter().map(|a| a.request.n).sum();
        let cells = group
            .iter()
            .filter_map(|a| {
                a.request
                    .sampling
                    .max_tokens
                    .map(|m| m.saturating_add(a.tokens.len() as u32))
            })
            .max();
        let per_stream = self.use_streams(seqs, cells);
        let parts: Vec<Part> = group.iter().map(|a| a.part(0, a.request.n)).collect();
        let mut timings = vec![Timings::default(); group.len()];
        let stats = Arc::clone(&self.stats);
        let name = self.name.clone();
        let mut answered = vec![false; group.len()];
        let outcome = self.round(
            &parts,
            outboxes,
            per_stream,
            &mut timings,
            &mut |p, samples, t| {
                let (Some(a), Some(flag)) = (group.get(p), answered.get_mut(p)) else {
                    return None;
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
                                completion_tokens: choices
                                    .iter()
                                    .map(|c| c.completion_tokens)
                                    .sum(),
                            },
                            choices,
                            timings,
                        }))
                    }
                    Err(Stopped::Cancelled) => Ok(None),
                    Err(Stopped::Failed(e)) => Err(e),
                };
                answer(&stats, completion)
            },
            between,
        );
        if let Err(e) = outcome {
            let message = e.to_string();
            for (done, outbox) in answered.into_iter().zip(outboxes.iter_mut()) {
                if done {
                    continue;
                }
                if let Some(event) = answer(&self.stats, Err(decode_error(message.clone()))) {
                    outbox.push(event);
                }
            }
        }
    }

    /// One round: each part's prompt evaluated once in the chosen context, its cache
    /// copied to each of its samples' sequences, all samples of all parts decoded
    /// together. `on_end` gets each part's samples (with its timings) as soon as they
    /// have all ended, or `Cancelled` when its consumer is gone; the others go on. Part
    /// `p`'s events go to `outboxes[p]`.
    fn round(
        &mut self,
        parts: &[Part],
        outboxes: &mut [Outbox],
        per_stream: bool,
        timings: &mut [Timings],
        on_end: &mut OnEnd,
        between: Between,
    ) -> Result<(), BackendError> {
        if per_stream {
            self.stats.stream_rounds.fetch_add(1, Ordering::Relaxed);
        }
        let mut decoding = self.context(per_stream);
        let (model, stats) = (decoding.maker.model, decoding.maker.stats);
        let started = Instant::now();
        let bases = bases(parts.iter().map(|p| p.count));
        let prompts: Vec<(&[LlamaToken], i32)> = parts
            .iter()
            .zip(&bases)
            .map(|(part, base)| (part.prompt, *base))
            .collect();
        let lasts = eval_prompts(&mut decoding, &prompts, round_cells(parts))?;
        let Decoding {
            ctx,
            maker,
            prefix,
            per_stream,
            ..
        } = decoding;
        // The main context grows when full; the per-stream one is sized for its round.
        let grows = !per_stream;
        // Summed over the rounds of a request of more than `n_seq_max` samples.
        let prompt_eval = started.elapsed();
        for t in timings.iter_mut() {
            t.prompt_eval += prompt_eval;
        }
        let decode_started = Instant::now();
        let n_vocab = model.n_vocab();
        let mut seqs: Vec<Seq> = Vec::new();
        let mut samplers: Vec<Samplers> = Vec::new();
        for (p, ((part, base), logits_at)) in parts.iter().zip(&bases).zip(lasts).enumerate() {
            for s in 0..part.count {
                let id = base + s as i32;
                if s > 0 {
                    ctx.copy_kv_cache_seq(*base, id, None, None)
                        .map_err(|e| decode_error(e.to_string()))?;
                }
                let index = part.first + s;
                let grammar = match part.grammar {
                    Some(g) => Some(grammar_sampler(model, g)?),
                    None => None,
                };
                samplers.push(Samplers {
                    chain: sampler(&part.request.sampling, index, n_vocab),
                    grammar,
                });
                seqs.push(Seq::new(
                    id,
                    (p, index),
                    part.prompt.len(),
                    logits_at,
                    &part.request.sampling.stop,
                    part.request.logprobs.is_some(),
                ));
            }
        }
        let mut cancelled = vec![false; parts.len()];
        let mut failed: Vec<Option<FormatError>> = vec![None; parts.len()];
        let mut reported = vec![false; parts.len()];
        let vocab = model.vocab();
        let mut batch = LlamaBatch::new(seqs.len().max(1), 1);
        // Whether every sequence's cells hold its prompt and decoded tokens (a failed
        // decode leaves its batch's tokens out).
        let mut intact = true;
        loop {
            let mut gone = Vec::new();
            for (seq, own) in seqs.iter_mut().zip(samplers.iter_mut()) {
                if !seq.samples_now() {
                    continue;
                }
                let (Some(part), Some(outbox)) = (parts.get(seq.part), outboxes.get_mut(seq.part))
                else {
                    continue;
                };
                let token = match own.grammar.as_mut() {
                    None => own.chain.sample(ctx, seq.logits_at),
                    Some(grammar) => {
                        match sample_constrained(ctx, seq.logits_at, &mut own.chain, grammar) {
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
                stats.tokens_generated.fetch_add(1, Ordering::Relaxed);
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
                let max_tokens = part.request.sampling.max_tokens.unwrap_or(u32::MAX);
                let (text, logprob) = if vocab.is_eog(token) {
                    (seq.accept(token, None, max_tokens, None), None)
                } else {
                    let piece = vocab.token_to_piece(token, false, None);
                    let text =
                        seq.accept(token, Some(piece.as_slice()), max_tokens, logprob.as_ref());
                    (text, logprob)
                };
                if !send_delta(outbox, seq.index, text, logprob) {
                    gone.push(seq.part);
                }
            }
            // Deliver what waits; a consumer that left cancels its request.
            for (p, outbox) in outboxes.iter_mut().enumerate() {
                if outbox.flush() == Delivery::Gone {
                    gone.push(p);
                }
            }
            for p in gone {
                if let Some(flag) = cancelled.get_mut(p) {
                    *flag = true;
                }
                // Its sequences stop and free their cells for the others.
                for seq in seqs.iter_mut().filter(|s| s.part == p) {
                    seq.stop();
                    let _ = ctx.clear_kv_cache_seq(u32::try_from(seq.id).ok(), None, None);
                }
            }
            for (p, outcome) in ended_parts(&mut seqs, &cancelled, &mut failed, &mut reported) {
                let Some(t) = timings.get_mut(p) else {
                    continue;
                };
                t.decode += decode_started.elapsed();
                let event = on_end(p, outcome, t);
                if let (Some(event), Some(outbox)) = (event, outboxes.get_mut(p)) {
                    outbox.push(event);
                }
            }
            let paused: Vec<bool> = outboxes.iter().map(Outbox::is_full).collect();
            batch.clear();
            for i in batch_members(&seqs, &paused) {
                let Some(seq) = seqs.get_mut(i) else {
                    continue;
                };
                if let Some(t) = seq.next.take() {
                    seq.logits_at = batch.n_tokens();
                    batch
                        .add(t, seq.pos, &[seq.id], true)
                        .map_err(|e| decode_error(e.to_string()))?;
                    seq.pos += 1;
                    seq.decoded.push(t);
                }
            }
            if batch.n_tokens() == 0 {
                let held = held_parts(&seqs, &paused);
                if held.is_empty() {
                    break;
                }
                // Only requests whose consumers do not read are left: wait for one.
                wait_for_room(outboxes, &held, &mut *between);
                continue;
            }
            // The token lane's pending step first: the two alternate.
            between();
            let mut decoded = ctx.decode(&mut batch);
            while grows && matches!(decoded, Err(DecodeError::NoKvCacheSlot)) {
                // The main context is full: it grows, its cache kept, up to its limit.
                let cells = ctx.n_ctx().saturating_add(1);
                if !maker.grow(ctx, cells, true) {
                    break;
                }
                decoded = ctx.decode(&mut batch);
            }
            if let Err(e) = decoded {
                // The context is full: every sequence still going ends for length.
                tracing::debug!("decode stopped: {e}");
                intact = false;
                for seq in seqs.iter_mut().filter(|s| s.finish.is_none()) {
                    let text = seq.close(FinishReason::Length);
                    if let Some(outbox) = outboxes.get_mut(seq.part) {
                        if !send_delta(outbox, seq.index, text, None) {
                            if let Some(flag) = cancelled.get_mut(seq.part) {
                                *flag = true;
                            }
                        }
                    }
                }
                // Every sequence has ended: the next pass reports them and stops.
            }
        }
        if intact && prefix.enabled() {
            // Each sample's prompt and reply are kept: a next turn, or a prompt quoting
            // the reply after its conversation, starts after them. Of more samples than
            // the cache holds only the last are copied out: the others would be dropped.
            let kept: Vec<_> = seqs
                .iter()
                .filter_map(|seq| {
                    // A cancelled or failed part's cells are gone.
                    let gone = cancelled.get(seq.part).copied().unwrap_or(true);
                    let part = parts.get(seq.part)?;
                    (!gone && !seq.decoded.is_empty()).then_some((part, seq))
                })
                .collect();
            let skip = kept.len().saturating_sub(prefix.capacity());
            for (part, seq) in kept.into_iter().skip(skip) {
                let tokens = [part.prompt, seq.decoded.as_slice()].concat();
                keep(ctx, prefix, &tokens, seq.id);
            }
        }
        Ok(())
    }

    /// Whether a round of `count` samples of at most `cells` tokens each (prompt and
    /// completion; `None`: unbounded) decodes in the per-stream context, made or grown
    /// here if needed (see [`streams_plan`]).
    fn use_streams(&mut self, count: u32, cells: Option<u32>) -> bool {
        let current = self.streams.as_ref().map(|s| (s.streams, s.cells));
        let (streams, per) = match streams_plan(count, cells, self.limit, current) {
            StreamsPlan::Shared => return false,
            StreamsPlan::Reuse => return true,
            StreamsPlan::Make { streams, cells } => (streams, cells),
        };
        // Its kept states restore into a context of the same stream count only.
        let kept = self
            .streams
            .take()
            .filter(|s| s.streams == streams)
            .map(|s| s.prefix);
        let params = context_params(&self.config, streams * per, streams, false);
        match self.model.new_context(self.backend, params) {
            Ok(ctx) => {
                let cells = ctx.n_ctx() / streams;
                tracing::debug!(streams, cells, "per-stream context made");
                self.stats
                    .stream_cells
                    .store(u64::from(ctx.n_ctx()), Ordering::Relaxed);
                self.streams = Some(Streams {
                    ctx,
                    streams,
                    cells,
                    prefix: kept.unwrap_or_else(|| {
                        PrefixCache::new(self.config.prefix_cache, crate::PREFIX_CACHE_BYTES)
                    }),
                });
                true
            }
            Err(e) => {
                // The old one, if any, is gone too.
                self.stats.stream_cells.store(0, Ordering::Relaxed);
                tracing::warn!("per-stream context failed, using the shared one: {e}");
                false
            }
        }
    }
}

/// Cells a round of `parts` fills in the shared cache: each prompt once (its samples
/// share its cells) and what each sample may generate (one step when unbounded).
fn round_cells(parts: &[Part]) -> u64 {
    parts
        .iter()
        .map(|p| {
            let generated = p.request.sampling.max_tokens.unwrap_or(1).max(1);
            p.prompt.len() as u64 + u64::from(p.count) * u64::from(generated)
        })
        .sum()
}

/// Evaluates each prompt into its sequence of an emptied cache; returns the batch indices
/// of their last tokens' logits, in order.
///
/// In the main context, which first grows to hold `cells` cells (the prompts and what the
/// round may generate), each prompt starts from the saved cells of the kept prompt sharing
/// the longest prefix with it, or from the cells of an earlier prompt of the same round
/// sharing a longer one (evaluated once, then copied to its sequence: the ratings of `bon`
/// share their question); at least its last token is evaluated, for its logits. Each
/// prompt is kept afterwards. The per-stream context shares within the round only (a kept
/// state holds the stream count of its context, and llama.cpp restores it into no other).
/// With reuse off (`--prefix-cache 0`) every prompt is evaluated whole.
pub(crate) fn eval_prompts(
    d: &mut Decoding,
    prompts: &[(&[LlamaToken], i32)],
    cells: u64,
) -> Result<Vec<i32>, BackendError> {
    let config = d.maker.config;
    d.ctx.clear_kv_cache();
    let mut starts = vec![0; prompts.len()];
    let mut evaluated = 0usize;
    let kept: Vec<usize> = prompts
        .iter()
        .map(|(tokens, _)| {
            d.prefix
                .peek(tokens, d.room)
                .min(tokens.len().saturating_sub(1))
        })
        .collect();
    let plan = if d.share {
        share_plan(prompts.iter().map(|(t, _)| *t), &kept)
    } else {
        vec![None; prompts.len()]
    };
    if !d.per_stream {
        let needed = cells.min(u64::from(d.maker.limit));
        d.maker
            .grow(d.ctx, u32::try_from(needed).unwrap_or(u32::MAX), false);
    }
    if d.prefix.enabled() {
        // Kept cells, for the prompts that borrow from no other of the round.
        for (((tokens, seq), start), share) in prompts.iter().zip(starts.iter_mut()).zip(&plan) {
            if share.is_some() {
                continue;
            }
            let Some((state, common)) = d.prefix.best(tokens, d.room) else {
                continue;
            };
            let common = common.min(tokens.len().saturating_sub(1));
            if common == 0 {
                continue;
            }
            let id = u32::try_from(*seq).ok();
            if let Err(e) = d.ctx.state_seq_set(state, *seq) {
                tracing::warn!("a kept prompt could not be restored: {e}");
                let _ = d.ctx.clear_kv_cache_seq(id, None, None);
                continue;
            }
            // Its cells past the common prefix go.
            let from = u32::try_from(common).ok();
            d.ctx
                .clear_kv_cache_seq(id, from, None)
                .map_err(|e| decode_error(e.to_string()))?;
            *start = common;
        }
    }
    if plan.iter().any(Option::is_some) {
        // The prefixes others borrow, evaluated in their lenders' sequences...
        let mut spans = Vec::new();
        for (j, (tokens, seq)) in prompts.iter().enumerate() {
            let lent = plan
                .iter()
                .filter_map(|s| s.filter(|&(lender, _)| lender == j).map(|(_, len)| len))
                .max();
            let (Some(lent), Some(start)) = (lent, starts.get_mut(j)) else {
                continue;
            };
            if let Some(span) = tokens.get(*start..lent) {
                spans.push((span, *start, *seq));
                evaluated += span.len();
            }
            *start = (*start).max(lent);
        }
        decode_spans(d.ctx, config.n_batch, &spans)?;
        // ...then copied to the borrowers' sequences: the cells before `len` (between
        // streams llama.cpp copies a whole stream, so the rest is dropped after).
        for ((_, seq), (share, start)) in prompts.iter().zip(plan.iter().zip(starts.iter_mut())) {
            let Some((lender, len)) = *share else {
                continue;
            };
            let Some(&(_, from)) = prompts.get(lender) else {
                continue;
            };
            let len32 = u32::try_from(len).ok();
            let copied = if d.per_stream {
                d.ctx
                    .copy_kv_cache_seq(from, *seq, None, None)
                    .and_then(|()| {
                        d.ctx
                            .clear_kv_cache_seq(u32::try_from(*seq).ok(), len32, None)
                            .map(|_| ())
                    })
            } else {
                d.ctx.copy_kv_cache_seq(from, *seq, Some(0), len32)
            };
            copied.map_err(|e| decode_error(e.to_string()))?;
            *start = len;
        }
    }
    let lasts = decode_prompts(d.ctx, config.n_batch, prompts, &starts)?;
    let stats = d.maker.stats;
    let total: usize = prompts.iter().map(|(t, _)| t.len()).sum();
    evaluated += prompts
        .iter()
        .zip(&starts)
        .map(|((t, _), s)| t.len().saturating_sub(*s))
        .sum::<usize>();
    stats
        .prompt_tokens_evaluated
        .fetch_add(evaluated as u64, Ordering::Relaxed);
    stats.prefix_hits.fetch_add(
        starts.iter().filter(|&&s| s > 0).count() as u64,
        Ordering::Relaxed,
    );
    stats
        .prefix_tokens_reused
        .fetch_add(total.saturating_sub(evaluated) as u64, Ordering::Relaxed);
    // The sequences hold their prompts' cells and nothing else yet; of more prompts than
    // the cache holds only the last are copied out (none when reuse is off).
    let skip = prompts.len().saturating_sub(d.prefix.capacity());
    for (tokens, seq) in prompts.iter().skip(skip) {
        keep(d.ctx, d.prefix, tokens, *seq);
    }
    Ok(lasts)
}

/// Keeps the cells of sequence `seq`, which hold exactly `tokens`, unless kept already
/// or too large.
fn keep(ctx: &LlamaContext, prefix: &mut PrefixCache<SeqState>, tokens: &[LlamaToken], seq: i32) {
    if prefix.holds(tokens) {
        return;
    }
    let size = ctx.state_seq_get_size_ext(seq, LlamaStateSeqFlags::empty());
    if !prefix.fits(size) {
        return;
    }
    match ctx.state_seq_get(seq, LlamaStateSeqFlags::empty()) {
        Ok(state) => {
            let bytes = state.byte_len();
            prefix.keep(tokens, state, bytes);
        }
        Err(e) => tracing::warn!("a prompt could not be kept: {e}"),
    }
}

/// Fewest tokens worth sharing between two prompts of a round.
const MIN_SHARED: usize = 16;

/// Which prompts of a round borrow the beginning of an earlier one: for each prompt,
/// `Some((lender, len))` when an earlier prompt that borrows nothing itself shares its
/// first `len` tokens, more than the `kept` tokens it would restore otherwise and at
/// least [`MIN_SHARED`]. `len` leaves both prompts' last tokens to be evaluated (they
/// give the logits).
pub(super) fn share_plan<'t>(
    prompts: impl IntoIterator<Item = &'t [LlamaToken]>,
    kept: &[usize],
) -> Vec<Option<(usize, usize)>> {
    let prompts: Vec<&[LlamaToken]> = prompts.into_iter().collect();
    let mut plan: Vec<Option<(usize, usize)>> = Vec::with_capacity(prompts.len());
    for (i, tokens) in prompts.iter().enumerate() {
        let own = kept.get(i).copied().unwrap_or(0);
        let best = prompts
            .iter()
            .take(i)
            .enumerate()
            .filter(|&(j, _)| plan.get(j).is_some_and(|p| p.is_none()))
            .map(|(j, other)| {
                let common = other
                    .iter()
                    .zip(tokens.iter())
                    .take_while(|(a, b)| a == b)
                    .count();
                let len = common
                    .min(tokens.len().saturating_sub(1))
                    .min(other.len().saturating_sub(1));
                (j, len)
            })
            .max_by_key(|&(j, len)| (len, std::cmp::Reverse(j)));
        plan.push(best.filter(|&(_, len)| len >= MIN_SHARED && len > own));
    }
    plan
}

/// Evaluates spans of prompts into their sequences, no logits: `(tokens, position of the
/// first, sequence)`, `chunk` tokens per batch.
fn decode_spans(
    ctx: &mut LlamaContext,
    chunk: u32,
    spans: &[(&[LlamaToken], usize, i32)],
) -> Result<(), BackendError> {
    let chunk = chunk.max(1) as usize;
    let tokens: Vec<(LlamaToken, i32, i32)> = spans
        .iter()
        .flat_map(|(span, from, seq)| {
            span.iter()
                .enumerate()
                .map(move |(k, t)| (*t, (from + k) as i32, *seq))
        })
        .collect();
    let mut batch = LlamaBatch::new(chunk, 1);
    for piece in tokens.chunks(chunk) {
        batch.clear();
        for &(t, pos, seq) in piece {
            batch
                .add(t, pos, &[seq], false)
                .map_err(|e| decode_error(e.to_string()))?;
        }
        ctx.decode(&mut batch)
            .map_err(|e| decode_error(e.to_string()))?;
    }
    Ok(())
}

/// Evaluates each prompt into its sequence from its start (the cells before it are
/// there), `chunk` tokens per batch. The last token of every prompt goes into the last
/// batch, so that the logits of all of them are there at once; returns their batch
/// indices, in order.
fn decode_prompts(
    ctx: &mut LlamaContext,
    chunk: u32,
    prompts: &[(&[LlamaToken], i32)],
    starts: &[usize],
) -> Result<Vec<i32>, BackendError> {
    let chunk = chunk.max(1) as usize;
    if prompts.len() > chunk {
        return Err(decode_error(format!(
            "{} prompts in one round need a batch of at least as many tokens (n_batch {chunk})",
            prompts.len()
        )));
    }
    let mut leading = Vec::new();
    let mut lasts = Vec::with_capacity(prompts.len());
    for ((tokens, seq), &start) in prompts.iter().zip(starts) {
        let Some((last, rest)) = tokens.split_last() else {
            return Err(decode_error("an empty prompt".into()));
        };
        leading.extend(
            rest.iter()
                .enumerate()
                .skip(start)
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

#[cfg(test)]
mod tests {
    use super::*;

    fn seq(id: i32, part: usize, index: u32) -> Seq {
        Seq::new(id, (part, index), 10, 0, &[], false)
    }

    /// A sequence of `part` that has sampled a token not decoded yet.
    fn sampled(id: i32, part: usize) -> Seq {
        let mut s = seq(id, part, 0);
        let text = s.accept(LlamaToken(7), Some(b"a"), 100, None);
        assert_eq!(text, "a");
        s
    }

    /// A sequence of `part` that has ended.
    fn ended(id: i32, part: usize, index: u32) -> Seq {
        let mut s = seq(id, part, index);
        s.accept(LlamaToken(7), Some(b"ok"), 100, None);
        s.accept(LlamaToken(2), None, 100, None);
        s
    }

    fn toks(ids: impl IntoIterator<Item = i32>) -> Vec<LlamaToken> {
        ids.into_iter().map(LlamaToken).collect()
    }

    #[test]
    fn prompts_of_a_round_borrow_a_shared_beginning_once() {
        let question = || 0..20;
        let a = toks(question().chain([100, 101]));
        let b = toks(question().chain([200, 201, 202]));
        let short = toks((0..10).chain([300]));
        // `b` borrows the 20 shared tokens of `a`; 10 shared tokens are not worth it.
        assert_eq!(
            share_plan([&a[..], &b[..], &short[..]], &[0, 0, 0]),
            vec![None, Some((0, 20)), None]
        );
        // A kept prompt that gives more wins over borrowing.
        assert_eq!(share_plan([&a[..], &b[..]], &[0, 21]), vec![None, None]);
        // Each prompt's last token stays to be evaluated, for its logits.
        assert_eq!(
            share_plan([&a[..], &a[..]], &[0, 0]),
            vec![None, Some((0, a.len() - 1))]
        );
    }

    #[test]
    fn a_borrower_lends_nothing() {
        // c shares 30 tokens with b, but b borrows from a: c takes a's 20.
        let a = toks((0..20).chain([100]));
        let b = toks((0..30).chain([200]));
        let c = toks((0..30).chain([300]));
        assert_eq!(
            share_plan([&a[..], &b[..], &c[..]], &[0, 0, 0]),
            vec![None, Some((0, 20)), Some((0, 20))]
        );
    }

    #[test]
    fn parts_take_consecutive_sequence_ids() {
        assert_eq!(bases([3, 1, 2]), vec![0, 3, 4]);
        assert_eq!(bases([16]), vec![0]);
        assert!(bases([]).is_empty());
    }

    #[test]
    fn the_per_stream_context_is_used_when_its_cache_fits_the_main_one() {
        use StreamsPlan::*;
        // One sample, or an unbounded length: the shared context.
        assert_eq!(streams_plan(1, Some(100), 2048, None), Shared);
        assert_eq!(streams_plan(4, None, 2048, None), Shared);
        // 4 streams of 100 cells padded to 256: 1024 <= 2048.
        assert_eq!(
            streams_plan(4, Some(100), 2048, None),
            Make {
                streams: 4,
                cells: 256
            }
        );
        // 9 * 256 > 2048.
        assert_eq!(streams_plan(9, Some(256), 2048, None), Shared);
        // What there is holds it.
        assert_eq!(streams_plan(2, Some(200), 2048, Some((4, 256))), Reuse);
        // Grown to the larger shape when that fits...
        assert_eq!(
            streams_plan(4, Some(256), 2048, Some((2, 512))),
            Make {
                streams: 4,
                cells: 512
            }
        );
        // ...else made for this round only.
        assert_eq!(
            streams_plan(2, Some(600), 2048, Some((4, 256))),
            Make {
                streams: 2,
                cells: 768
            }
        );
    }

    #[test]
    fn a_sampled_token_waits_to_be_decoded_before_the_next_sample() {
        let mut s = seq(0, 0, 0);
        assert!(s.samples_now());
        assert_eq!(s.accept(LlamaToken(5), Some(b"Hi"), 10, None), "Hi");
        assert!(!s.samples_now());
        assert_eq!(s.next, Some(LlamaToken(5)));
        assert_eq!(s.generated, 1);
        s.next = None; // decoded
        assert!(s.samples_now());
    }

    #[test]
    fn max_tokens_ends_a_sequence_for_length() {
        let mut s = seq(0, 0, 0);
        assert_eq!(s.accept(LlamaToken(1), Some(b"a"), 2, None), "a");
        assert_eq!(s.finish, None);
        assert_eq!(s.accept(LlamaToken(1), Some(b"b"), 2, None), "b");
        assert_eq!(s.finish, Some(FinishReason::Length));
        assert!(!s.samples_now());
        assert_eq!(s.scanner.text(), "ab");
        assert_eq!(s.generated, 2);
    }

    #[test]
    fn end_of_text_releases_what_was_held_back_and_is_not_counted() {
        let stop = ["STOP".to_string()];
        let mut s = Seq::new(0, (0, 0), 10, 0, &stop, false);
        // "ST" could begin the stop sequence: held back.
        assert_eq!(s.accept(LlamaToken(1), Some(b"go ST"), 10, None), "go ");
        assert_eq!(s.accept(LlamaToken(2), None, 10, None), "ST");
        assert_eq!(s.finish, Some(FinishReason::EndOfText));
        assert_eq!(s.generated, 1);
        assert_eq!(s.scanner.text(), "go ST");
    }

    #[test]
    fn a_stop_sequence_ends_a_sequence_without_leaking() {
        let stop = ["\n\n".to_string()];
        let mut s = Seq::new(0, (0, 0), 10, 0, &stop, false);
        assert_eq!(s.accept(LlamaToken(1), Some(b"one\n"), 10, None), "one");
        assert_eq!(s.finish, None);
        assert_eq!(s.accept(LlamaToken(1), Some(b"\ntwo"), 10, None), "");
        assert_eq!(s.finish, Some(FinishReason::StopSequence));
        assert_eq!(s.scanner.text(), "one");
    }

    #[test]
    fn split_characters_wait_for_their_last_byte() {
        let mut s = seq(0, 0, 0);
        let e = "é".as_bytes();
        assert_eq!(s.accept(LlamaToken(1), Some(&e[..1]), 10, None), "");
        assert_eq!(s.accept(LlamaToken(1), Some(&e[1..]), 10, None), "é");
    }

    #[test]
    fn logprobs_are_kept_when_asked_for_each_counted_token() {
        let lp = TokenLogprob {
            token: "a".into(),
            logprob: -0.5,
            top: Vec::new(),
        };
        let mut asked = Seq::new(0, (0, 0), 10, 0, &[], true);
        asked.accept(LlamaToken(1), Some(b"a"), 10, Some(&lp));
        asked.accept(LlamaToken(2), None, 10, Some(&lp));
        assert_eq!(asked.logprobs.as_ref().map(Vec::len), Some(1));
        let mut not = seq(0, 0, 0);
        not.accept(LlamaToken(1), Some(b"a"), 10, Some(&lp));
        assert!(not.logprobs.is_none());
    }

    #[test]
    fn the_batch_takes_sampled_tokens_of_requests_not_paused_in_order() {
        let mut decoded = seq(1, 0, 1);
        decoded.accept(LlamaToken(7), Some(b"a"), 100, None);
        decoded.next = None;
        let seqs = vec![
            sampled(0, 0),
            decoded,
            ended(2, 0, 2),
            sampled(3, 1),
            sampled(4, 2),
            sampled(5, 2),
        ];
        assert_eq!(
            batch_members(&seqs, &[false, false, false]),
            vec![0, 3, 4, 5]
        );
        // Part 2's consumer does not read: its sequences sit out.
        assert_eq!(batch_members(&seqs, &[false, false, true]), vec![0, 3]);
        assert_eq!(held_parts(&seqs, &[false, false, true]), vec![2]);
        // Everyone paused: an empty batch, and what it waits for.
        assert!(batch_members(&seqs, &[true, true, true]).is_empty());
        assert_eq!(held_parts(&seqs, &[true, true, true]), vec![0, 1, 2]);
        // A paused part whose sequences all ended holds nothing.
        let done = vec![ended(0, 0, 0)];
        assert!(held_parts(&done, &[true]).is_empty());
        assert!(batch_members(&done, &[false]).is_empty());
    }

    #[test]
    fn a_part_is_reported_once_when_all_its_samples_end() {
        let mut seqs = vec![
            ended(0, 0, 0),
            ended(1, 0, 1),
            ended(2, 1, 0),
            sampled(3, 1),
        ];
        let cancelled = [false, false];
        let mut failed = vec![None, None];
        let mut reported = [false, false];
        let ended_now = ended_parts(&mut seqs, &cancelled, &mut failed, &mut reported);
        assert_eq!(ended_now.len(), 1);
        let (p, outcome) = &ended_now[0];
        assert_eq!(*p, 0);
        let Ok(choices) = outcome else {
            panic!("part 0 ended with its samples");
        };
        assert_eq!(
            choices.iter().map(|c| c.index).collect::<Vec<_>>(),
            vec![0, 1]
        );
        assert!(choices.iter().all(|c| c.text == "ok"
            && c.completion_tokens == 1
            && c.finish_reason == FinishReason::EndOfText));
        assert_eq!(reported, [true, false]);
        // Nothing new: nothing reported again.
        assert!(ended_parts(&mut seqs, &cancelled, &mut failed, &mut reported).is_empty());
        // Part 1's last sample ends for length.
        seqs[3].accept(LlamaToken(7), Some(b"b"), 2, None);
        let ended_now = ended_parts(&mut seqs, &cancelled, &mut failed, &mut reported);
        assert_eq!(ended_now.len(), 1);
        let Some((1, Ok(choices))) = ended_now.first() else {
            panic!("part 1 ended with its samples");
        };
        assert_eq!(choices[1].finish_reason, FinishReason::Length);
    }

    #[test]
    fn a_cancelled_part_ends_at_once_and_a_failure_wins_over_a_cancel() {
        let mut seqs = vec![sampled(0, 0), sampled(1, 1), sampled(2, 2)];
        let cancelled = [true, true, false];
        let mut failed = vec![None, Some(FormatError::DeadEnd { after: "{".into() }), None];
        let mut reported = [false; 3];
        let ended_now = ended_parts(&mut seqs, &cancelled, &mut failed, &mut reported);
        assert_eq!(ended_now.len(), 2);
        assert!(matches!(ended_now[0], (0, Err(Stopped::Cancelled))));
        assert!(matches!(ended_now[1], (1, Err(Stopped::Failed(_)))));
        assert_eq!(reported, [true, true, false]);
        assert!(failed[1].is_none());
    }

    #[test]
    fn a_stopped_sequence_leaves_the_batch() {
        let mut s = sampled(0, 0);
        s.stop();
        assert_eq!(s.finish, Some(FinishReason::Length));
        assert!(batch_members(&[s], &[false]).is_empty());
        // A sequence already ended keeps its reason.
        let mut e = ended(0, 0, 0);
        e.stop();
        assert_eq!(e.finish, Some(FinishReason::EndOfText));
    }
}
