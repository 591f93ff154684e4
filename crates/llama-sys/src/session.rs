//! [`TokenSession`] over the worker's context: the prompt in sequence 0, branches
//! forked from it by KV-cache copy, one-token steps of several branches in one batch.

use std::collections::HashMap;

use llama_cpp_2::DecodeError;
use llama_cpp_2::llama_batch::LlamaBatch;
use llama_cpp_2::token::LlamaToken;
use optillm_core::{BackendError, Message, SeqId, Token, TokenSession, Usage};

use crate::LlamaError;
use crate::worker::Engine;

struct SeqState {
    pos: i32,
    /// Logits after the sequence's last token, copied out of the batch that produced them.
    logits: Vec<f32>,
}

pub(crate) struct Session<'e, 'm> {
    engine: &'e mut Engine<'m>,
    seqs: HashMap<SeqId, SeqState>,
    usage: Usage,
}

impl<'e, 'm> Session<'e, 'm> {
    pub(crate) fn new(engine: &'e mut Engine<'m>, prompt_tokens: u32, logits: Vec<f32>) -> Self {
        let mut seqs = HashMap::new();
        seqs.insert(
            0,
            SeqState {
                pos: prompt_tokens as i32,
                logits,
            },
        );
        Self {
            engine,
            seqs,
            usage: Usage {
                prompt_tokens,
                completion_tokens: 0,
            },
        }
    }

    fn state(&self, seq: SeqId) -> Result<&SeqState, BackendError> {
        self.seqs.get(&seq).ok_or_else(|| {
            BackendError::InvalidRequest(format!("no sequence {seq} in this session"))
        })
    }

    /// The lowest sequence id not in use.
    fn free_seq(&self) -> Result<SeqId, BackendError> {
        let max = i32::try_from(self.engine.config.n_seq_max).unwrap_or(i32::MAX);
        (0..max)
            .find(|id| !self.seqs.contains_key(id))
            .ok_or_else(|| BackendError::InvalidRequest(format!("at most {max} sequences at once")))
    }

    /// Decodes `items` (sequence, token) in one batch, logits kept for each sequence's last token.
    fn decode(&mut self, items: &[(SeqId, Token)]) -> Result<(), BackendError> {
        let chunk = self.engine.config.n_batch.max(1) as usize;
        let mut batch = LlamaBatch::new(chunk, 1);
        for part in items.chunks(chunk) {
            batch.clear();
            // Only the last token of each sequence needs its logits: computing them for
            // every token of a prompt costs a vocabulary-sized product per token.
            let mut last_of: HashMap<SeqId, i32> = HashMap::new();
            for (i, (seq, _)) in part.iter().enumerate() {
                last_of.insert(*seq, i as i32);
            }
            for (i, (seq, token)) in part.iter().enumerate() {
                let state = self
                    .seqs
                    .get_mut(seq)
                    .ok_or_else(|| BackendError::InvalidRequest(format!("no sequence {seq}")))?;
                let wants_logits = last_of.get(seq) == Some(&(i as i32));
                batch
                    .add(LlamaToken(*token), state.pos, &[*seq], wants_logits)
                    .map_err(|e| BackendError::from(LlamaError::Decode(e.to_string())))?;
                state.pos += 1;
            }
            let main = self.engine.context(false);
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
                    prompt_tokens: self.usage.prompt_tokens,
                    context_length: self.engine.limit,
                },
                other => BackendError::from(LlamaError::Decode(other.to_string())),
            })?;
            for (seq, idx) in last_of {
                let logits = self.engine.ctx.get_logits_ith(idx).to_vec();
                if let Some(state) = self.seqs.get_mut(&seq) {
                    state.logits = logits;
                }
            }
        }
        self.usage.completion_tokens += items.len() as u32;
        Ok(())
    }
}

impl TokenSession for Session<'_, '_> {
    fn vocab_size(&self) -> usize {
        usize::try_from(self.engine.model.n_vocab()).unwrap_or(0)
    }

    fn remaining(&self, seq: SeqId) -> u32 {
        let used = self.seqs.get(&seq).map_or(0, |s| s.pos.max(0) as u32);
        self.engine.limit.saturating_sub(used)
    }

    fn is_end(&self, token: Token) -> bool {
        self.engine.model.vocab().is_eog(LlamaToken(token))
    }

    fn tokenize(&self, text: &str) -> Result<Vec<Token>, BackendError> {
        Ok(self
            .engine
            .model
            .vocab()
            .tokenize(text.as_bytes(), false, false)
            .into_iter()
            .map(|t| t.0)
            .collect())
    }

    fn has_chat_template(&self) -> bool {
        self.engine.has_template
    }

    fn tokenize_prompt(&self, text: &str) -> Result<Vec<Token>, BackendError> {
        // `add_special` adds BOS (and EOS) only as the vocabulary asks.
        Ok(self
            .engine
            .model
            .vocab()
            .tokenize(text.as_bytes(), true, false)
            .into_iter()
            .map(|t| t.0)
            .collect())
    }

    fn token_bytes(&self, token: Token) -> Result<Vec<u8>, BackendError> {
        if token < 0 || token >= self.engine.model.n_vocab() {
            return Err(BackendError::InvalidRequest(format!(
                "token {token} is out of the vocabulary"
            )));
        }
        Ok(self
            .engine
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
        self.engine
            .ctx
            .copy_kv_cache_seq(seq, new, None, None)
            .map_err(|e| BackendError::from(LlamaError::Decode(e.to_string())))?;
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
        if let Ok(id) = u32::try_from(new) {
            let _ = self.engine.ctx.clear_kv_cache_seq(Some(id), None, None);
        }
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
        let tokens: Vec<Token> = self
            .engine
            .chat_tokens(messages)?
            .into_iter()
            .map(|t| t.0)
            .collect();
        self.start(&tokens)
    }

    fn release(&mut self, seq: SeqId) {
        if self.seqs.remove(&seq).is_some() {
            if let Ok(id) = u32::try_from(seq) {
                let _ = self.engine.ctx.clear_kv_cache_seq(Some(id), None, None);
            }
        }
    }

    fn usage(&self) -> Usage {
        self.usage
    }
}
