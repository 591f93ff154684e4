//! [`TokenSession`] of a token job, on the job's own thread: the prompt in sequence 0,
//! branches forked from it by KV-cache copy, one-token steps of several branches in
//! one batch. What needs only the model is answered here; what touches the KV cache
//! is sent to the worker, which runs it in the token lane's context
//! ([`crate::worker::lane`]).

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

/// A job's prompt as the lane evaluated it, with the lane's settings.
pub(crate) struct Begun {
    pub(crate) prompt_tokens: u32,
    /// Logits after the prompt's last token.
    pub(crate) logits: Vec<f32>,
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
    seqs: HashMap<SeqId, SeqState>,
    usage: Usage,
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
                pos: begun.prompt_tokens as i32,
                logits: begun.logits,
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
            seqs,
            usage: Usage {
                prompt_tokens: begun.prompt_tokens,
                completion_tokens: 0,
            },
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

    fn state(&self, seq: SeqId) -> Result<&SeqState, BackendError> {
        self.seqs.get(&seq).ok_or_else(|| {
            BackendError::InvalidRequest(format!("no sequence {seq} in this session"))
        })
    }

    /// The lowest sequence id not in use.
    fn free_seq(&self) -> Result<SeqId, BackendError> {
        let max = i32::try_from(self.n_seq_max).unwrap_or(i32::MAX);
        (0..max)
            .find(|id| !self.seqs.contains_key(id))
            .ok_or_else(|| BackendError::InvalidRequest(format!("at most {max} sequences at once")))
    }

    /// Decodes `items` (sequence, token) in batches of `n_batch`, logits kept for each
    /// sequence's last token.
    fn decode(&mut self, items: &[(SeqId, Token)]) -> Result<(), BackendError> {
        let chunk = self.n_batch.max(1) as usize;
        for part in items.chunks(chunk) {
            // Only the last token of each sequence needs its logits: computing them for
            // every token of a prompt costs a vocabulary-sized product per token.
            let mut last_of: HashMap<SeqId, usize> = HashMap::new();
            for (i, (seq, _)) in part.iter().enumerate() {
                last_of.insert(*seq, i);
            }
            let mut batch: Items = Vec::with_capacity(part.len());
            for (i, (seq, token)) in part.iter().enumerate() {
                let state = self
                    .seqs
                    .get_mut(seq)
                    .ok_or_else(|| BackendError::InvalidRequest(format!("no sequence {seq}")))?;
                batch.push((*seq, *token, state.pos, last_of.get(seq) == Some(&i)));
                state.pos += 1;
            }
            let prompt_tokens = self.usage.prompt_tokens;
            let logits = self.call(move |engine| engine.decode_items(&batch, prompt_tokens))??;
            for (seq, logits) in logits {
                if let Some(state) = self.seqs.get_mut(&seq) {
                    state.logits = logits;
                }
            }
        }
        self.usage.completion_tokens += items.len() as u32;
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
        let used = self.seqs.get(&seq).map_or(0, |s| s.pos.max(0) as u32);
        self.limit.saturating_sub(used)
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
        Ok(self.state(seq)?.logits.clone())
    }

    fn append(&mut self, seq: SeqId, tokens: &[Token]) -> Result<(), BackendError> {
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
        self.decode(tokens)
    }

    fn fork(&mut self, seq: SeqId) -> Result<SeqId, BackendError> {
        let (pos, logits) = {
            let s = self.state(seq)?;
            (s.pos, s.logits.clone())
        };
        let new = self.free_seq()?;
        self.call(move |engine| {
            engine
                .ctx
                .copy_kv_cache_seq(seq, new, None, None)
                .map_err(|e| BackendError::from(LlamaError::Decode(e.to_string())))
        })??;
        self.seqs.insert(new, SeqState { pos, logits });
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
        self.seqs.insert(
            new,
            SeqState {
                pos: 0,
                logits: Vec::new(),
            },
        );
        let items: Vec<(SeqId, Token)> = tokens.iter().map(|t| (new, *t)).collect();
        if let Err(e) = self.decode(&items) {
            self.release(new);
            return Err(e);
        }
        // `decode` counted them as appended tokens: they are a prompt.
        let n = u32::try_from(tokens.len()).unwrap_or(u32::MAX);
        self.usage.completion_tokens = self.usage.completion_tokens.saturating_sub(n);
        self.usage.prompt_tokens = self.usage.prompt_tokens.saturating_add(n);
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
        if self.seqs.remove(&seq).is_some() {
            self.send(move |engine| engine.clear_seq(seq));
        }
    }

    fn usage(&self) -> Usage {
        self.usage
    }
}
