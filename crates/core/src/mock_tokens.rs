//! A scripted token-level backend for tests of the logit-level strategies.
//!
//! The vocabulary is a list of byte strings; the logits of a sequence are a function
//! of the tokens generated on it so far (the chat prompt is not part of the input; a
//! sequence made by [`TokenSession::start`] begins with its own prompt tokens, one made
//! by [`TokenSession::start_chat`] with the tokens a test maps its conversation to), so
//! a test can make any selection rule observable. The session counts forks, batches and
//! evaluated tokens the way a real backend would.

use std::collections::HashMap;
use std::sync::{Arc, Mutex};

use async_trait::async_trait;

use crate::backend::{Backend, CompletionStream};
use crate::error::BackendError;
use crate::token::{SeqId, Token, TokenJob, TokenSession};
use crate::types::{Capabilities, ChatRequest, Message, Usage};

/// Logits of the next token given the tokens generated on a sequence so far.
pub type LogitFn = dyn Fn(&[Token]) -> Vec<f32> + Send + Sync;

/// The tokens a sequence made by [`TokenSession::start_chat`] begins its history with,
/// given its conversation (none by default).
pub type ChatFn = dyn Fn(&[Message]) -> Vec<Token> + Send + Sync;

/// Cells a conversation takes in the scripted context: one per word.
fn words(messages: &[Message]) -> u32 {
    let n: usize = messages
        .iter()
        .map(|m| m.content.split_whitespace().count())
        .sum();
    u32::try_from(n).unwrap_or(u32::MAX)
}

/// Logits that are `floor` everywhere except at the listed tokens.
pub fn logits_with(vocab_size: usize, floor: f32, set: &[(Token, f32)]) -> Vec<f32> {
    let mut l = vec![floor; vocab_size];
    for (t, v) in set {
        if let Some(slot) = usize::try_from(*t).ok().and_then(|i| l.get_mut(i)) {
            *slot = *v;
        }
    }
    l
}

/// What a session did, for assertions.
#[derive(Debug, Clone, Default, PartialEq)]
pub struct SessionStats {
    /// Prompt tokens evaluated (once per session).
    pub prompt_tokens: u32,
    /// Tokens appended over all sequences.
    pub appended: u32,
    /// Sequences forked.
    pub forks: u32,
    /// Sequences released.
    pub released: u32,
    /// Size of each `append_batch` call, in order.
    pub batch_sizes: Vec<usize>,
    /// Number of single-sequence `append` calls.
    pub single_appends: u32,
    /// The prompt of every sequence made by [`TokenSession::start`], in order.
    pub started: Vec<Vec<Token>>,
    /// The conversation of every sequence made by [`TokenSession::start_chat`], in order.
    pub chats: Vec<Vec<Message>>,
    /// The generated tokens of every sequence at the end of the job (released ones included).
    pub sequences: HashMap<SeqId, Vec<Token>>,
}

/// A deterministic [`TokenSession`].
pub struct ScriptedSession {
    vocab: Vec<Vec<u8>>,
    ends: Vec<Token>,
    specials: Vec<Token>,
    bos: Option<Token>,
    chat_template: bool,
    logit_fn: Arc<LogitFn>,
    chat_fn: Option<Arc<ChatFn>>,
    context: u32,
    live: HashMap<SeqId, Vec<Token>>,
    /// Context cells each sequence holds before its history: the chat prompt for
    /// sequence 0 and its forks, none for a started one.
    bases: HashMap<SeqId, u32>,
    next_seq: SeqId,
    stats: SessionStats,
}

impl ScriptedSession {
    pub fn new(
        vocab: Vec<Vec<u8>>,
        ends: Vec<Token>,
        logit_fn: Arc<LogitFn>,
        prompt_tokens: u32,
        context: u32,
    ) -> Self {
        let mut live = HashMap::new();
        live.insert(0, Vec::new());
        let mut bases = HashMap::new();
        bases.insert(0, prompt_tokens);
        Self {
            vocab,
            ends,
            specials: Vec::new(),
            bos: None,
            chat_template: true,
            logit_fn,
            chat_fn: None,
            context,
            live,
            bases,
            next_seq: 1,
            stats: SessionStats {
                prompt_tokens,
                ..SessionStats::default()
            },
        }
    }

    /// Tokens that [`TokenSession::tokenize`] never produces from text, like special
    /// tokens in a tokenizer that does not parse them (llama.cpp's `parse_special = false`).
    pub fn with_specials(mut self, specials: &[Token]) -> Self {
        self.specials = specials.to_vec();
        self
    }

    /// The token [`TokenSession::tokenize_prompt`] puts first (none by default).
    pub fn with_bos(mut self, bos: Token) -> Self {
        self.bos = Some(bos);
        self
    }

    /// A session of a model without a chat template of its own (a base model).
    pub fn without_chat_template(mut self) -> Self {
        self.chat_template = false;
        self
    }

    /// What the session did so far (including the tokens of live sequences).
    pub fn stats(&self) -> SessionStats {
        let mut s = self.stats.clone();
        for (id, toks) in &self.live {
            s.sequences.insert(*id, toks.clone());
        }
        s
    }

    fn seq(&self, seq: SeqId) -> Result<&Vec<Token>, BackendError> {
        self.live
            .get(&seq)
            .ok_or_else(|| BackendError::InvalidRequest(format!("no live sequence {seq}")))
    }

    fn check_token(&self, token: Token) -> Result<(), BackendError> {
        if usize::try_from(token).is_ok_and(|i| i < self.vocab.len()) {
            Ok(())
        } else {
            Err(BackendError::InvalidRequest(format!(
                "token {token} is outside the vocabulary"
            )))
        }
    }

    fn push(&mut self, seq: SeqId, token: Token) -> Result<(), BackendError> {
        self.check_token(token)?;
        if self.remaining(seq) == 0 {
            return Err(BackendError::ContextOverflow {
                prompt_tokens: self.stats.prompt_tokens,
                context_length: self.context,
            });
        }
        let toks = self
            .live
            .get_mut(&seq)
            .ok_or_else(|| BackendError::InvalidRequest(format!("no live sequence {seq}")))?;
        toks.push(token);
        self.stats.appended += 1;
        Ok(())
    }
}

impl TokenSession for ScriptedSession {
    fn vocab_size(&self) -> usize {
        self.vocab.len()
    }

    fn remaining(&self, seq: SeqId) -> u32 {
        let used = (self.live.get(&seq).map_or(0, Vec::len) as u32)
            .saturating_add(self.bases.get(&seq).copied().unwrap_or(0));
        self.context.saturating_sub(used)
    }

    fn is_end(&self, token: Token) -> bool {
        self.ends.contains(&token)
    }

    /// Longest match against the vocabulary, left to right.
    fn tokenize(&self, text: &str) -> Result<Vec<Token>, BackendError> {
        let mut rest = text.as_bytes();
        let mut out = Vec::new();
        while !rest.is_empty() {
            let best = self
                .vocab
                .iter()
                .enumerate()
                .filter(|(i, v)| {
                    let id = *i as Token;
                    !v.is_empty()
                        && rest.starts_with(v)
                        && !self.ends.contains(&id)
                        && !self.specials.contains(&id)
                })
                .max_by_key(|(_, v)| v.len());
            let Some((id, bytes)) = best else {
                return Err(BackendError::InvalidRequest(format!(
                    "the scripted vocabulary cannot tokenize {text:?}"
                )));
            };
            out.push(id as Token);
            rest = rest.get(bytes.len()..).unwrap_or_default();
        }
        Ok(out)
    }

    fn has_chat_template(&self) -> bool {
        self.chat_template
    }

    fn tokenize_prompt(&self, text: &str) -> Result<Vec<Token>, BackendError> {
        let mut tokens: Vec<Token> = self.bos.into_iter().collect();
        tokens.extend(self.tokenize(text)?);
        Ok(tokens)
    }

    fn token_bytes(&self, token: Token) -> Result<Vec<u8>, BackendError> {
        self.check_token(token)?;
        if self.is_end(token) {
            return Ok(Vec::new());
        }
        Ok(usize::try_from(token)
            .ok()
            .and_then(|i| self.vocab.get(i))
            .cloned()
            .unwrap_or_default())
    }

    fn logits(&self, seq: SeqId) -> Result<Vec<f32>, BackendError> {
        let toks = self.seq(seq)?;
        let l = (self.logit_fn)(toks);
        if l.len() != self.vocab.len() {
            return Err(BackendError::Protocol(format!(
                "scripted logits have {} entries for a vocabulary of {}",
                l.len(),
                self.vocab.len()
            )));
        }
        Ok(l)
    }

    fn append(&mut self, seq: SeqId, tokens: &[Token]) -> Result<(), BackendError> {
        self.stats.single_appends += 1;
        for t in tokens {
            self.push(seq, *t)?;
        }
        Ok(())
    }

    fn append_batch(&mut self, tokens: &[(SeqId, Token)]) -> Result<(), BackendError> {
        self.stats.batch_sizes.push(tokens.len());
        for (seq, t) in tokens {
            self.push(*seq, *t)?;
        }
        Ok(())
    }

    fn fork(&mut self, seq: SeqId) -> Result<SeqId, BackendError> {
        let toks = self.seq(seq)?.clone();
        let base = self.bases.get(&seq).copied().unwrap_or(0);
        let id = self.next_seq;
        self.next_seq += 1;
        self.live.insert(id, toks);
        self.bases.insert(id, base);
        self.stats.forks += 1;
        Ok(id)
    }

    fn start(&mut self, tokens: &[Token]) -> Result<SeqId, BackendError> {
        if tokens.is_empty() {
            return Err(BackendError::InvalidRequest(
                "a new sequence needs at least one token".into(),
            ));
        }
        for t in tokens {
            self.check_token(*t)?;
        }
        if tokens.len() as u64 > u64::from(self.context) {
            return Err(BackendError::ContextOverflow {
                prompt_tokens: tokens.len() as u32,
                context_length: self.context,
            });
        }
        let id = self.next_seq;
        self.next_seq += 1;
        self.live.insert(id, tokens.to_vec());
        self.bases.insert(id, 0);
        self.stats.started.push(tokens.to_vec());
        self.stats.prompt_tokens += tokens.len() as u32;
        Ok(id)
    }

    /// Its history begins with the tokens the backend's [`ChatFn`] maps the
    /// conversation to; the conversation itself takes a cell per word, like sequence 0's.
    fn start_chat(&mut self, messages: &[Message]) -> Result<SeqId, BackendError> {
        let history = self
            .chat_fn
            .as_ref()
            .map(|f| f(messages))
            .unwrap_or_default();
        for t in &history {
            self.check_token(*t)?;
        }
        let base = words(messages);
        let cells = u64::from(base) + history.len() as u64;
        if cells >= u64::from(self.context) {
            return Err(BackendError::ContextOverflow {
                prompt_tokens: u32::try_from(cells).unwrap_or(u32::MAX),
                context_length: self.context,
            });
        }
        let id = self.next_seq;
        self.next_seq += 1;
        self.stats.prompt_tokens += base + history.len() as u32;
        self.live.insert(id, history);
        self.bases.insert(id, base);
        self.stats.chats.push(messages.to_vec());
        Ok(id)
    }

    fn release(&mut self, seq: SeqId) {
        if let Some(toks) = self.live.remove(&seq) {
            self.bases.remove(&seq);
            self.stats.released += 1;
            self.stats.sequences.insert(seq, toks);
        }
    }

    fn usage(&self) -> Usage {
        Usage {
            prompt_tokens: self.stats.prompt_tokens,
            completion_tokens: self.stats.appended,
        }
    }
}

/// A backend with `token_control` whose token jobs run on a [`ScriptedSession`].
/// It serves token jobs only: chat completions are refused as unsupported.
pub struct MockTokenBackend {
    vocab: Vec<Vec<u8>>,
    ends: Vec<Token>,
    logit_fn: Arc<LogitFn>,
    chat_fn: Option<Arc<ChatFn>>,
    context: u32,
    bos: Option<Token>,
    chat_template: bool,
    requests: Mutex<Vec<ChatRequest>>,
    last: Mutex<Option<SessionStats>>,
}

impl std::fmt::Debug for MockTokenBackend {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("MockTokenBackend")
            .field("vocab", &self.vocab.len())
            .finish()
    }
}

impl MockTokenBackend {
    /// `vocab` as text pieces; `ends` are the end-of-generation tokens.
    pub fn new(
        vocab: &[&str],
        ends: &[Token],
        logit_fn: impl Fn(&[Token]) -> Vec<f32> + Send + Sync + 'static,
    ) -> Self {
        Self::from_bytes(
            vocab.iter().map(|v| v.as_bytes().to_vec()).collect(),
            ends,
            logit_fn,
        )
    }

    /// `vocab` as raw bytes (a token may hold part of a UTF-8 character).
    pub fn from_bytes(
        vocab: Vec<Vec<u8>>,
        ends: &[Token],
        logit_fn: impl Fn(&[Token]) -> Vec<f32> + Send + Sync + 'static,
    ) -> Self {
        Self {
            vocab,
            ends: ends.to_vec(),
            logit_fn: Arc::new(logit_fn),
            chat_fn: None,
            context: 4096,
            bos: None,
            chat_template: true,
            requests: Mutex::new(Vec::new()),
            last: Mutex::new(None),
        }
    }

    pub fn with_context(mut self, context: u32) -> Self {
        self.context = context;
        self
    }

    /// What a sequence made by [`TokenSession::start_chat`] begins its history with.
    pub fn with_chat_prompts(
        mut self,
        chat_fn: impl Fn(&[Message]) -> Vec<Token> + Send + Sync + 'static,
    ) -> Self {
        self.chat_fn = Some(Arc::new(chat_fn));
        self
    }

    /// The token the sessions' [`TokenSession::tokenize_prompt`] puts first.
    pub fn with_bos(mut self, bos: Token) -> Self {
        self.bos = Some(bos);
        self
    }

    /// A model without a chat template of its own (a base model's GGUF).
    pub fn without_chat_template(mut self) -> Self {
        self.chat_template = false;
        self
    }

    /// What the last session did.
    pub fn last_session(&self) -> Option<SessionStats> {
        self.last.lock().ok().and_then(|l| l.clone())
    }

    /// Every token-job request received, in order.
    pub fn requests(&self) -> Vec<ChatRequest> {
        self.requests.lock().map(|r| r.clone()).unwrap_or_default()
    }
}

#[async_trait]
impl Backend for MockTokenBackend {
    fn model(&self) -> &str {
        "mock-tokens"
    }

    fn capabilities(&self) -> Capabilities {
        Capabilities {
            token_control: true,
            context_length: Some(self.context),
            ..Capabilities::default()
        }
    }

    async fn stream(&self, _request: ChatRequest) -> Result<CompletionStream, BackendError> {
        Err(BackendError::unsupported(
            self.model(),
            "chat completions (it serves token jobs only)",
        ))
    }

    async fn token_job(&self, request: ChatRequest, job: TokenJob) -> Result<(), BackendError> {
        request.validate()?;
        let prompt_tokens = words(&request.messages);
        if let Ok(mut r) = self.requests.lock() {
            r.push(request);
        }
        let mut session = ScriptedSession::new(
            self.vocab.clone(),
            self.ends.clone(),
            self.logit_fn.clone(),
            prompt_tokens,
            self.context,
        );
        session.chat_fn = self.chat_fn.clone();
        session.bos = self.bos;
        session.chat_template = self.chat_template;
        let result = job(&mut session);
        if let Ok(mut last) = self.last.lock() {
            *last = Some(session.stats());
        }
        result
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn session() -> ScriptedSession {
        let vocab = ["<eos>", "a", "b", "ab", " "]
            .iter()
            .map(|v| v.as_bytes().to_vec())
            .collect();
        ScriptedSession::new(
            vocab,
            vec![0],
            Arc::new(|toks: &[Token]| logits_with(5, 0.0, &[(toks.len() as Token % 4 + 1, 5.0)])),
            3,
            6,
        )
    }

    #[test]
    fn forks_share_history_and_count_usage() {
        let mut s = session();
        assert_eq!(s.tokenize("ab a").unwrap(), vec![3, 4, 1]);
        assert!(s.tokenize("c").is_err());
        s.append(0, &[1]).unwrap();
        let f = s.fork(0).unwrap();
        s.append_batch(&[(0, 2), (f, 3)]).unwrap();
        assert_eq!(s.detokenize(&s.stats().sequences[&f]).unwrap(), "aab");
        assert_eq!(s.logits(f).unwrap()[3], 5.0);
        assert_eq!(s.remaining(f), 1);
        assert_eq!(s.usage().prompt_tokens, 3);
        assert_eq!(s.usage().completion_tokens, 3);
        s.append(f, &[1]).unwrap();
        assert!(matches!(
            s.append(f, &[1]),
            Err(BackendError::ContextOverflow { .. })
        ));
        s.release(f);
        assert!(s.logits(f).is_err());
        assert_eq!(s.stats().batch_sizes, vec![2]);
        assert_eq!(s.stats().forks, 1);
    }

    #[test]
    fn started_sequences_hold_their_own_prompt() {
        let mut s = session().with_bos(2);
        assert_eq!(s.tokenize_prompt("ab a").unwrap(), vec![2, 3, 4, 1]);
        assert_eq!(session().tokenize_prompt("a").unwrap(), vec![1]);
        let p = s.start(&[2, 1]).unwrap();
        // Its history is its prompt (the chat prompt's 3 cells are not its own).
        assert_eq!(s.logits(p).unwrap()[3], 5.0);
        assert_eq!(s.remaining(p), 4);
        let f = s.fork(p).unwrap();
        assert_eq!(s.remaining(f), 4);
        assert_eq!(s.usage().prompt_tokens, 5);
        assert_eq!(s.usage().completion_tokens, 0);
        assert_eq!(s.stats().started, vec![vec![2, 1]]);
        assert!(s.start(&[]).is_err());
        assert!(s.start(&[9]).is_err());
        assert!(matches!(
            s.start(&[1; 7]),
            Err(BackendError::ContextOverflow { .. })
        ));
    }

    #[test]
    fn started_conversations_begin_with_their_mapped_tokens() {
        let mut s = session();
        s.chat_fn = Some(Arc::new(|m: &[Message]| match m.len() {
            1 => vec![1],
            _ => vec![2, 2],
        }));
        let one = s.start_chat(&[Message::user("x")]).unwrap();
        // One cell for the word, one for its history: token 1 leads to token 2.
        assert_eq!(s.logits(one).unwrap()[2], 5.0);
        assert_eq!(s.remaining(one), 4);
        let two = s
            .start_chat(&[Message::system("be brief"), Message::user("y")])
            .unwrap();
        assert_eq!(s.logits(two).unwrap()[3], 5.0);
        assert_eq!(s.stats().chats.len(), 2);
        assert_eq!(s.usage().prompt_tokens, 3 + 2 + 5);
        let long = Message::user("w w w w w w");
        assert!(matches!(
            s.start_chat(&[long]),
            Err(BackendError::ContextOverflow { .. })
        ));
    }
}

#[cfg(test)]
mod ctx_tests {
    use std::sync::Arc;

    use super::*;
    use crate::mock::MockBackend;
    use crate::strategy::{Budget, Ctx, StrategyError};

    fn backend() -> Arc<MockTokenBackend> {
        Arc::new(MockTokenBackend::new(
            &["<eos>", "hi", " there"],
            &[0],
            |t| logits_with(3, 0.0, &[(t.len() as Token % 2 + 1, 3.0)]),
        ))
    }

    #[tokio::test]
    async fn token_job_adds_usage_and_trace() {
        let ctx = Ctx::new(backend(), Budget::default());
        let text = ctx
            .token_job(
                "greedy",
                ChatRequest::user("one two three"),
                |s, _limits| {
                    let mut toks = Vec::new();
                    for _ in 0..4 {
                        let l = s.logits(0)?;
                        let t = crate::strategies::sampler::argmax(&l).unwrap_or(0);
                        s.append(0, &[t])?;
                        toks.push(t);
                    }
                    let text = s.detokenize(&toks)?;
                    Ok((text.clone(), vec![text]))
                },
            )
            .await
            .unwrap();
        assert_eq!(text, "hi therehi there");
        let usage = ctx.usage();
        assert_eq!(usage.calls, 1);
        assert_eq!(usage.prompt_tokens, 3);
        assert_eq!(usage.completion_tokens, 4);
    }

    #[tokio::test]
    async fn token_job_limits_report_the_budget() {
        let budget = Budget {
            max_total_tokens: Some(5),
            max_duration: None,
        };
        let ctx = Ctx::new(backend(), budget);
        let steps = ctx
            .token_job("until the budget", ChatRequest::user("a b"), |s, limits| {
                let mut n = 0;
                while !limits.exhausted(s) {
                    s.append(0, &[1])?;
                    n += 1;
                }
                Ok((n, Vec::new()))
            })
            .await
            .unwrap();
        // Two prompt tokens + three generated ones reach the five-token budget.
        assert_eq!(steps, 3);
        assert_eq!(ctx.tokens_left(), Some(0));
        let again = ctx
            .token_job("over", ChatRequest::user("a"), |_, _| Ok(((), Vec::new())))
            .await;
        assert!(matches!(again, Err(StrategyError::BudgetExhausted)));
    }

    #[tokio::test]
    async fn token_job_needs_token_control() {
        let ctx = Ctx::new(Arc::new(MockBackend::constant("x")), Budget::default());
        let err = ctx
            .token_job("x", ChatRequest::user("q"), |_, _| Ok(((), Vec::new())))
            .await
            .unwrap_err();
        assert!(err.to_string().contains("token_control"), "{err}");
        assert_eq!(ctx.usage().calls, 0);
    }
}
