//! Token-level access to a model, for the logit-level strategies (CoT decoding,
//! entropy decoding, budget forcing, DeepConf).
//!
//! A strategy hands a [`TokenJob`] to [`Backend::token_job`](crate::Backend::token_job);
//! the backend runs it where the model lives (the native backend: on its worker
//! thread) with a [`TokenSession`] whose sequence 0 already holds the evaluated
//! chat prompt. Sequences forked from it share that one prompt evaluation; a job that
//! needs a prompt without the chat template starts its own sequence from raw tokens.

use crate::error::BackendError;
use crate::types::{Message, Usage};

/// A token id of the model's vocabulary.
pub type Token = i32;
/// A sequence (branch) inside a session.
pub type SeqId = i32;

/// Token-level operations over one evaluated prompt.
pub trait TokenSession {
    /// Number of tokens in the vocabulary (length of [`logits`](Self::logits)).
    fn vocab_size(&self) -> usize;
    /// Room left in the context for sequence `seq`, in tokens.
    fn remaining(&self, seq: SeqId) -> u32;
    /// True for end-of-generation tokens (EOS, end-of-turn).
    fn is_end(&self, token: Token) -> bool;
    /// Tokens of `text` (no special tokens added).
    fn tokenize(&self, text: &str) -> Result<Vec<Token>, BackendError>;
    /// Whether the model ships a chat template of its own. Without one (a base model's
    /// GGUF), sequence 0's chat prompt is written in a generic template the model was
    /// never trained on.
    fn has_chat_template(&self) -> bool;
    /// Tokens of `text` as the start of a prompt without a chat template: the model's
    /// BOS token first when its vocabulary asks for one (special tokens written in the
    /// text are not parsed).
    fn tokenize_prompt(&self, text: &str) -> Result<Vec<Token>, BackendError>;
    /// The bytes of one token. Use [`TokenSession::detokenize`] for text: a token
    /// may hold part of a UTF-8 character.
    fn token_bytes(&self, token: Token) -> Result<Vec<u8>, BackendError>;
    /// Text of a token sequence (invalid UTF-8 replaced).
    fn detokenize(&self, tokens: &[Token]) -> Result<String, BackendError> {
        let mut bytes = Vec::new();
        for t in tokens {
            bytes.extend(self.token_bytes(*t)?);
        }
        Ok(String::from_utf8_lossy(&bytes).into_owned())
    }
    /// Raw logits for the next token of `seq` (after its last appended token).
    fn logits(&self, seq: SeqId) -> Result<Vec<f32>, BackendError>;
    /// Appends tokens to one sequence and evaluates them.
    fn append(&mut self, seq: SeqId, tokens: &[Token]) -> Result<(), BackendError>;
    /// Appends one token to each listed sequence, evaluated together in one batch.
    fn append_batch(&mut self, tokens: &[(SeqId, Token)]) -> Result<(), BackendError>;
    /// A new sequence sharing `seq`'s cache (no re-evaluation).
    fn fork(&mut self, seq: SeqId) -> Result<SeqId, BackendError>;
    /// A new sequence holding `tokens` from its first position, evaluated on their own
    /// (not after sequence 0's prompt): a prompt of the caller's making, such as one from
    /// [`tokenize_prompt`](Self::tokenize_prompt). Its tokens count as prompt tokens.
    fn start(&mut self, tokens: &[Token]) -> Result<SeqId, BackendError>;
    /// A new sequence holding another conversation through the model's chat template,
    /// as sequence 0 holds the request's (ready for the assistant's reply; one that ends
    /// with an assistant message is continued), so a job can decode answers to other
    /// prompts in the same batches. Its tokens count as prompt tokens.
    fn start_chat(&mut self, messages: &[Message]) -> Result<SeqId, BackendError>;
    /// Frees a sequence.
    fn release(&mut self, seq: SeqId);
    /// Prompt tokens evaluated and tokens appended since the session began.
    fn usage(&self) -> Usage;
}

/// Work to run with a [`TokenSession`].
pub type TokenJob = Box<dyn FnOnce(&mut dyn TokenSession) -> Result<(), BackendError> + Send>;

/// Softmax of logits into probabilities (numerically stable).
pub fn softmax(logits: &[f32]) -> Vec<f32> {
    let max = logits.iter().copied().fold(f32::NEG_INFINITY, f32::max);
    let exps: Vec<f32> = logits.iter().map(|l| (l - max).exp()).collect();
    let sum: f32 = exps.iter().sum();
    if sum > 0.0 && sum.is_finite() {
        exps.into_iter().map(|e| e / sum).collect()
    } else {
        vec![0.0; logits.len()]
    }
}

/// The `k` most likely tokens with their probabilities, most likely first.
pub fn top_k(probs: &[f32], k: usize) -> Vec<(Token, f32)> {
    let mut idx: Vec<(Token, f32)> = probs
        .iter()
        .enumerate()
        .map(|(i, p)| (i as Token, *p))
        .collect();
    idx.sort_by(|a, b| b.1.total_cmp(&a.1));
    idx.truncate(k);
    idx
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn softmax_sums_to_one_and_orders() {
        let p = softmax(&[1.0, 3.0, 2.0]);
        assert!((p.iter().sum::<f32>() - 1.0).abs() < 1e-5);
        let top = top_k(&p, 2);
        assert_eq!(top[0].0, 1);
        assert_eq!(top[1].0, 2);
    }
}
