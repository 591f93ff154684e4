//! [`TokenSession`] of a token job, on the job's own thread: the prompt in sequence 0
//! (evaluated when the job first uses it), branches forked from it by KV-cache copy,
//! one-token steps of several branches in one batch. What needs only the model is
//! answered here; what touches the KV cache is sent to the worker, which runs it in the
//! job's context of the token lane ([`crate::worker::lane`]).

use std::cell::RefCell;
use std::collections::HashMap;
use std::sync::Arc;

use crossbeam_channel::Sender;
use llama_cpp_2::DecodeError;
use llama_cpp_2::llama_batch::LlamaBatch;
use llama_cpp_2::model::LlamaModel;
use llama_cpp_2::token::LlamaToken;
use optillm_core::{BackendError, Message, SeqId, Token, TokenSession, Usage};

use crate::LlamaError;
use crate::worker::Engine;
use crate::worker::lane::LaneMsg;

/// A job's prompt as the lane tokenized it, with the lane's settings.
pub(crate) struct Begun {
    /// The request's prompt, for sequence 0.
    pub(crate) prompt: Vec<LlamaToken>,
    /// Most cells of the lane's context.
    pub(crate) limit: u32,
    pub(crate) n_seq_max: u32,
    pub(crate) n_batch: u32,
    pub(crate) has_template: bool,
}

struct SeqState {
    pos: i32,
    /// Logits after the sequence's last token, copied out of the batch that produced them.
    logits: Vec<f32>,
}

pub(crate) struct Session {
    model: Arc<LlamaModel>,
    lane: Sender<LaneMsg>,
    /// The worker thread, woken when an operation is sent (it may be parked waiting for
    /// a slow consumer of a round rather than for the lane).
    worker: std::thread::Thread,
    limit: u32,
    n_seq_max: u32,
    n_batch: u32,
    has_template: bool,
    /// What the job's steps change; in a cell because reading sequence 0's logits may
    /// first evaluate its prompt.
    state: RefCell<State>,
}

struct State {
    seqs: HashMap<SeqId, SeqState>,
    usage: Usage,
    /// Sequence 0's prompt while not evaluated yet (the job has not used it).
    first: Option<Vec<LlamaToken>>,
    /// Nothing evaluated in the job's context yet: sequence 0's prompt may start from a
    /// kept prompt's cells (restored into the emptied context).
    fresh: bool,
}

fn no_seq(seq: SeqId) -> BackendError {
    BackendError::InvalidRequest(format!("no sequence {seq} in this session"))
}

/// Tokens to evaluate: (sequence, token, position, whether its logits are wanted).
type Items = Vec<(SeqId, Token, i32, bool)>;

impl Session {
    /// A session for the job begun on the worker thread (the caller's).
    pub(crate) fn new(model: Arc<LlamaModel>, lane: Sender<LaneMsg>, begun: Begun) -> Self {
        let mut seqs = HashMap::new();
        seqs.insert(
            0,
            SeqState {
                pos: 0,
                logits: Vec::new(),
            },
        );
        Self {
            model,
            lane,
            worker: std::thread::current(),
            limit: begun.limit,
            n_seq_max: begun.n_seq_max,
            n_batch: begun.n_batch,
            has_template: begun.has_template,
            state: RefCell::new(State {
                seqs,
                usage: Usage::default(),
                first: Some(begun.prompt),
                fresh: true,
            }),
        }
    }

    /// Tells the worker the job is over (its sequences are free for the next one).
    pub(crate) fn end(self) {
        let _ = self.lane.send(LaneMsg::End);
        self.worker.unpark();
    }

    /// Runs `op` on the lane's engine (on the worker thread) and waits for its answer.
    fn call<T: Send + 'static>(
        &self,
        op: impl for<'e, 'm> FnOnce(&'e mut Engine<'m>) -> T + Send + 'static,
    ) -> Result<T, BackendError> {
        let (answer, answered) = crossbeam_channel::bounded(1);
        self.send(move |engine| {
            let _ = answer.send(op(engine));
        });
        answered.recv().map_err(|_| BackendError::Closed)
    }

    /// Sends `op` without waiting: the lane runs operations in order, so the next call
    /// finds it done.
    /// (The worker gone, `op` is dropped, and a call waiting for its answer reads
    /// `Closed`.)
    fn send(&self, op: impl for<'e, 'm> FnOnce(&'e mut Engine<'m>) + Send + 'static) {
        let _ = self.lane.send(LaneMsg::Op(Box::new(op)));
        self.worker.unpark();
    }

    /// Evaluates sequence 0's prompt if `seq` is sequence 0 and the job has not used it
    /// yet: from a kept prompt when nothing else is in the context, else as a new
    /// sequence's tokens. If that fails, sequence 0 is gone (its later use is an error).
    fn ready(&self, seq: SeqId) -> Result<(), BackendError> {
        let (tokens, fresh) = {
            let mut state = self.state.borrow_mut();
            if seq != 0 || !state.seqs.contains_key(&0) {
                return Ok(());
            }
            match state.first.take() {
                Some(tokens) => (tokens, state.fresh),
                None => return Ok(()),
            }
        };
        let evaluated = if fresh {
            let n = tokens.len();
            self.call(move |engine| engine.eval_first(&tokens))
                .and_then(|logits| logits)
                .map(|logits| {
                    let mut state = self.state.borrow_mut();
                    state.fresh = false;
                    let pos = i32::try_from(n).unwrap_or(i32::MAX);
                    state.seqs.insert(0, SeqState { pos, logits });
                    state.usage.prompt_tokens = state
                        .usage
                        .prompt_tokens
                        .saturating_add(u32::try_from(n).unwrap_or(u32::MAX));
                })
        } else {
            let tokens: Vec<Token> = tokens.iter().map(|t| t.0).collect();
            self.decode_prompt(0, &tokens)
        };
        if evaluated.is_err() {
            self.state.borrow_mut().seqs.remove(&0);
            self.send(|engine| engine.clear_seq(0));
        }
        evaluated
    }

    /// Decodes `tokens` as the prompt of sequence `seq` (counted as prompt tokens).
    fn decode_prompt(&self, seq: SeqId, tokens: &[Token]) -> Result<(), BackendError> {
        let items: Vec<(SeqId, Token)> = tokens.iter().map(|t| (seq, *t)).collect();
        self.decode(&items)?;
        // `decode` counted them as appended tokens: they are a prompt.
        let n = u32::try_from(tokens.len()).unwrap_or(u32::MAX);
        let mut state = self.state.borrow_mut();
        state.usage.completion_tokens = state.usage.completion_tokens.saturating_sub(n);
        state.usage.prompt_tokens = state.usage.prompt_tokens.saturating_add(n);
        Ok(())
    }

    /// The lowest sequence id not in use.
    fn free_seq(&self) -> Result<SeqId, BackendError> {
        let max = i32::try_from(self.n_seq_max).unwrap_or(i32::MAX);
        let state = self.state.borrow();
        (0..max)
            .find(|id| !state.seqs.contains_key(id))
            .ok_or_else(|| BackendError::InvalidRequest(format!("at most {max} sequences at once")))
    }

    /// Decodes `items` (sequence, token) in batches of `n_batch`, logits kept for each
    /// sequence's last token.
    fn decode(&self, items: &[(SeqId, Token)]) -> Result<(), BackendError> {
        let chunk = self.n_batch.max(1) as usize;
        for part in items.chunks(chunk) {
            // Only the last token of each sequence needs its logits: computing them for
            // every token of a prompt costs a vocabulary-sized product per token.
            let mut last_of: HashMap<SeqId, usize> = HashMap::new();
            for (i, (seq, _)) in part.iter().enumerate() {
                last_of.insert(*seq, i);
            }
            let (batch, prompt_tokens) = {
                let mut state = self.state.borrow_mut();
                state.fresh = false;
                let mut batch: Items = Vec::with_capacity(part.len());
                for (i, (seq, token)) in part.iter().enumerate() {
                    let s = state.seqs.get_mut(seq).ok_or_else(|| {
                        BackendError::InvalidRequest(format!("no sequence {seq}"))
                    })?;
                    batch.push((*seq, *token, s.pos, last_of.get(seq) == Some(&i)));
                    s.pos += 1;
                }
                (batch, state.usage.prompt_tokens)
            };
            let logits = self.call(move |engine| engine.decode_items(&batch, prompt_tokens))??;
            let mut state = self.state.borrow_mut();
            for (seq, logits) in logits {
                if let Some(s) = state.seqs.get_mut(&seq) {
                    s.logits = logits;
                }
            }
        }
        let mut state = self.state.borrow_mut();
        state.usage.completion_tokens += items.len() as u32;
        Ok(())
    }
}

impl Engine<'_> {
    /// Frees a sequence's cells in the main context.
    pub(crate) fn clear_seq(&mut self, seq: SeqId) {
        if let Ok(id) = u32::try_from(seq) {
            let _ = self.ctx.clear_kv_cache_seq(Some(id), None, None);
        }
    }

    /// Evaluates `items` in the lane's context, growing it when full; the logits of the
    /// items that want them, by sequence.
    pub(crate) fn decode_items(
        &mut self,
        items: &[(SeqId, Token, i32, bool)],
        prompt_tokens: u32,
    ) -> Result<Vec<(SeqId, Vec<f32>)>, BackendError> {
        let mut batch = LlamaBatch::new(items.len().max(1), 1);
        let mut wanted = Vec::new();
        for &(seq, token, pos, logits) in items {
            if logits {
                wanted.push((seq, batch.n_tokens()));
            }
            batch
                .add(LlamaToken(token), pos, &[seq], logits)
                .map_err(|e| BackendError::from(LlamaError::Decode(e.to_string())))?;
        }
        let limit = self.limit;
        let main = self.context(false);
        let mut decoded = main.ctx.decode(&mut batch);
        while matches!(decoded, Err(DecodeError::NoKvCacheSlot)) {
            // Full: the context grows, its cache kept, up to its limit.
            let cells = main.ctx.n_ctx().saturating_add(1);
            if !main.maker.grow(main.ctx, cells, true) {
                break;
            }
            decoded = main.ctx.decode(&mut batch);
        }
        decoded.map_err(|e| match e {
            DecodeError::NoKvCacheSlot => BackendError::ContextOverflow {
                prompt_tokens,
                context_length: limit,
            },
            other => BackendError::from(LlamaError::Decode(other.to_string())),
        })?;
        Ok(wanted
            .into_iter()
            .map(|(seq, i)| (seq, self.ctx.get_logits_ith(i).to_vec()))
            .collect())
    }
}

impl TokenSession for Session {
    fn vocab_size(&self) -> usize {
        usize::try_from(self.model.n_vocab()).unwrap_or(0)
    }

    fn remaining(&self, seq: SeqId) -> u32 {
        let state = self.state.borrow();
        let pending = match (seq, &state.first) {
            (0, Some(tokens)) => u32::try_from(tokens.len()).unwrap_or(u32::MAX),
            _ => 0,
        };
        let used = state.seqs.get(&seq).map_or(0, |s| s.pos.max(0) as u32);
        self.limit.saturating_sub(used.saturating_add(pending))
    }

    fn is_end(&self, token: Token) -> bool {
        self.model.vocab().is_eog(LlamaToken(token))
    }

    fn tokenize(&self, text: &str) -> Result<Vec<Token>, BackendError> {
        Ok(self
            .model
            .vocab()
            .tokenize(text.as_bytes(), false, false)
            .into_iter()
            .map(|t| t.0)
            .collect())
    }

    fn has_chat_template(&self) -> bool {
        self.has_template
    }

    fn tokenize_prompt(&self, text: &str) -> Result<Vec<Token>, BackendError> {
        // `add_special` adds BOS (and EOS) only as the vocabulary asks.
        Ok(self
            .model
            .vocab()
            .tokenize(text.as_bytes(), true, false)
            .into_iter()
            .map(|t| t.0)
            .collect())
    }

    fn token_bytes(&self, token: Token) -> Result<Vec<u8>, BackendError> {
        if token < 0 || token >= self.model.n_vocab() {
            return Err(BackendError::InvalidRequest(format!(
                "token {token} is out of the vocabulary"
            )));
        }
        Ok(self
            .model
            .vocab()
            .token_to_piece(LlamaToken(token), false, None))
    }

    fn logits(&self, seq: SeqId) -> Result<Vec<f32>, BackendError> {
        self.ready(seq)?;
        self.state
            .borrow()
            .seqs
            .get(&seq)
            .map(|s| s.logits.clone())
            .ok_or_else(|| no_seq(seq))
    }

    fn append(&mut self, seq: SeqId, tokens: &[Token]) -> Result<(), BackendError> {
        self.ready(seq)?;
        let items: Vec<(SeqId, Token)> = tokens.iter().map(|t| (seq, *t)).collect();
        self.decode(&items)
    }

    fn append_batch(&mut self, tokens: &[(SeqId, Token)]) -> Result<(), BackendError> {
        let mut seen = std::collections::HashSet::new();
        if !tokens.iter().all(|(s, _)| seen.insert(*s)) {
            return Err(BackendError::InvalidRequest(
                "append_batch takes one token per sequence".into(),
            ));
        }
        if tokens.iter().any(|(s, _)| *s == 0) {
            self.ready(0)?;
        }
        self.decode(tokens)
    }

    fn fork(&mut self, seq: SeqId) -> Result<SeqId, BackendError> {
        self.ready(seq)?;
        let (pos, logits) = {
            let state = self.state.borrow();
            let s = state.seqs.get(&seq).ok_or_else(|| no_seq(seq))?;
            (s.pos, s.logits.clone())
        };
        let new = self.free_seq()?;
        self.call(move |engine| {
            engine
                .ctx
                .copy_kv_cache_seq(seq, new, None, None)
                .map_err(|e| BackendError::from(LlamaError::Decode(e.to_string())))
        })??;
        let mut state = self.state.borrow_mut();
        state.fresh = false;
        state.seqs.insert(new, SeqState { pos, logits });
        Ok(new)
    }

    fn start(&mut self, tokens: &[Token]) -> Result<SeqId, BackendError> {
        if tokens.is_empty() {
            return Err(BackendError::InvalidRequest(
                "a new sequence needs at least one token".into(),
            ));
        }
        let new = self.free_seq()?;
        // A released sequence's cells are already gone; make sure of it.
        self.send(move |engine| engine.clear_seq(new));
        self.state.borrow_mut().seqs.insert(
            new,
            SeqState {
                pos: 0,
                logits: Vec::new(),
            },
        );
        if let Err(e) = self.decode_prompt(new, tokens) {
            self.release(new);
            return Err(e);
        }
        Ok(new)
    }

    fn start_chat(&mut self, messages: &[Message]) -> Result<SeqId, BackendError> {
        let messages = messages.to_vec();
        let tokens: Vec<Token> = self
            .call(move |engine| engine.chat_tokens(&messages))??
            .into_iter()
            .map(|t| t.0)
            .collect();
        self.start(&tokens)
    }

    fn release(&mut self, seq: SeqId) {
        let mut state = self.state.borrow_mut();
        if state.seqs.remove(&seq).is_none() {
            return;
        }
        if seq == 0 && state.first.take().is_some() {
            // Never evaluated: no cells to free.
            return;
        }
        drop(state);
        self.send(move |engine| engine.clear_seq(seq));
    }

    fn usage(&self) -> Usage {
        self.state.borrow().usage
    }
}
