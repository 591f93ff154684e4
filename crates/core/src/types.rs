//! Request and response types shared by every backend and strategy.

use std::fmt;
use std::time::Duration;

use serde::{Deserialize, Serialize};

use crate::error::BackendError;
use crate::format::{FormatSupport, ResponseFormat};

/// Who said a message.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash, Serialize, Deserialize)]
#[serde(rename_all = "lowercase")]
pub enum Role {
    System,
    User,
    Assistant,
    Tool,
}

impl Role {
    pub fn as_str(self) -> &'static str {
        match self {
            Role::System => "system",
            Role::User => "user",
            Role::Assistant => "assistant",
            Role::Tool => "tool",
        }
    }
}

impl fmt::Display for Role {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(self.as_str())
    }
}

/// One chat message.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct Message {
    pub role: Role,
    pub content: String,
}

impl Message {
    pub fn new(role: Role, content: impl Into<String>) -> Self {
        Self {
            role,
            content: content.into(),
        }
    }
    pub fn system(content: impl Into<String>) -> Self {
        Self::new(Role::System, content)
    }
    pub fn user(content: impl Into<String>) -> Self {
        Self::new(Role::User, content)
    }
    pub fn assistant(content: impl Into<String>) -> Self {
        Self::new(Role::Assistant, content)
    }
}

/// Most stop sequences one request may give (each is checked after every token).
pub const MAX_STOP_SEQUENCES: usize = 16;

/// Longest stop sequence, in characters.
pub const MAX_STOP_CHARS: usize = 256;

/// Sampling settings. `None` means "the backend's default".
///
/// Every backend either honours each setting that is set or rejects the request with
/// [`BackendError::Unsupported`]; none is silently ignored.
#[derive(Debug, Clone, Default, PartialEq, Serialize, Deserialize)]
pub struct Sampling {
    /// 0 means greedy decoding.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub temperature: Option<f32>,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub top_p: Option<f32>,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub top_k: Option<u32>,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub min_p: Option<f32>,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub repeat_penalty: Option<f32>,
    /// Seed of the first sample; sample `i` of an `n`-sample request uses `seed + i`.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub seed: Option<u32>,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub max_tokens: Option<u32>,
    #[serde(default, skip_serializing_if = "Vec::is_empty")]
    pub stop: Vec<String>,
}

impl Sampling {
    pub fn with_temperature(mut self, t: f32) -> Self {
        self.temperature = Some(t);
        self
    }
    pub fn with_top_p(mut self, p: f32) -> Self {
        self.top_p = Some(p);
        self
    }
    pub fn with_top_k(mut self, k: u32) -> Self {
        self.top_k = Some(k);
        self
    }
    pub fn with_min_p(mut self, p: f32) -> Self {
        self.min_p = Some(p);
        self
    }
    pub fn with_repeat_penalty(mut self, p: f32) -> Self {
        self.repeat_penalty = Some(p);
        self
    }
    pub fn with_seed(mut self, seed: u32) -> Self {
        self.seed = Some(seed);
        self
    }
    pub fn with_max_tokens(mut self, n: u32) -> Self {
        self.max_tokens = Some(n);
        self
    }
    pub fn with_stop(mut self, stop: impl Into<String>) -> Self {
        self.stop.push(stop.into());
        self
    }

    /// Settings layered: every field set in `over` wins over `self`.
    pub fn merged(&self, over: &Sampling) -> Sampling {
        Sampling {
            temperature: over.temperature.or(self.temperature),
            top_p: over.top_p.or(self.top_p),
            top_k: over.top_k.or(self.top_k),
            min_p: over.min_p.or(self.min_p),
            repeat_penalty: over.repeat_penalty.or(self.repeat_penalty),
            seed: over.seed.or(self.seed),
            max_tokens: over.max_tokens.or(self.max_tokens),
            stop: if over.stop.is_empty() {
                self.stop.clone()
            } else {
                over.stop.clone()
            },
        }
    }

    /// The seed of sample `index` when the request asks for several.
    pub fn seed_for(&self, index: u32) -> Option<u32> {
        self.seed.map(|s| s.wrapping_add(index))
    }

    /// Checks ranges and sizes; called once at the edge by [`ChatRequest::validate`].
    pub fn validate(&self) -> Result<(), BackendError> {
        fn bad(what: &str) -> Result<(), BackendError> {
            Err(BackendError::InvalidRequest(what.to_string()))
        }
        if let Some(t) = self.temperature {
            if !t.is_finite() || t < 0.0 {
                return bad("temperature must be a finite number >= 0");
            }
        }
        if let Some(p) = self.top_p {
            if !(p > 0.0 && p <= 1.0) {
                return bad("top_p must be in (0, 1]");
            }
        }
        if let Some(p) = self.min_p {
            if !(0.0..=1.0).contains(&p) {
                return bad("min_p must be in [0, 1]");
            }
        }
        if let Some(p) = self.repeat_penalty {
            if !p.is_finite() || p <= 0.0 {
                return bad("repeat_penalty must be > 0");
            }
        }
        if self.max_tokens == Some(0) {
            return bad("max_tokens must be at least 1");
        }
        if self.stop.iter().any(String::is_empty) {
            return bad("stop sequences must not be empty");
        }
        if self.stop.len() > MAX_STOP_SEQUENCES {
            return Err(BackendError::InvalidRequest(format!(
                "at most {MAX_STOP_SEQUENCES} stop sequences, got {}",
                self.stop.len()
            )));
        }
        if self.stop.iter().any(|s| s.chars().count() > MAX_STOP_CHARS) {
            return Err(BackendError::InvalidRequest(format!(
                "stop sequences must be at most {MAX_STOP_CHARS} characters long"
            )));
        }
        Ok(())
    }

    /// True when decoding is greedy (temperature 0).
    pub fn is_greedy(&self) -> bool {
        self.temperature == Some(0.0)
    }
}

/// A chat completion request.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct ChatRequest {
    pub messages: Vec<Message>,
    #[serde(default)]
    pub sampling: Sampling,
    /// Number of samples (choices) wanted from the same prompt.
    #[serde(default = "one")]
    pub n: u32,
    /// `Some(k)`: return the log-probability of every generated token and of the
    /// `k` most likely alternatives at each position (`k` may be 0).
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub logprobs: Option<u32>,
    /// Constrains the completion (JSON, a JSON schema, a GBNF grammar); `None`: free text.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub format: Option<ResponseFormat>,
    /// `true`: a plain text completion. The one user message is the text the model
    /// continues, as it is, without the chat template (OpenAI `/v1/completions`, Ollama
    /// `raw`): for a base model, or a prompt the caller has templated already.
    #[serde(default, skip_serializing_if = "std::ops::Not::not")]
    pub raw: bool,
}

/// The content of the last user message of a conversation, if any.
pub fn last_user(messages: &[Message]) -> Option<&str> {
    messages
        .iter()
        .rev()
        .find(|m| m.role == Role::User)
        .map(|m| m.content.as_str())
}

fn one() -> u32 {
    1
}

impl ChatRequest {
    pub fn new(messages: Vec<Message>) -> Self {
        Self {
            messages,
            sampling: Sampling::default(),
            n: 1,
            logprobs: None,
            format: None,
            raw: false,
        }
    }
    /// A request with a single user message.
    pub fn user(prompt: impl Into<String>) -> Self {
        Self::new(vec![Message::user(prompt)])
    }
    /// A plain text completion: the model continues `text` as it is, without the chat
    /// template (see [`ChatRequest::raw`]).
    pub fn completion(text: impl Into<String>) -> Self {
        Self {
            raw: true,
            ..Self::user(text)
        }
    }
    /// The text a raw request continues (its one user message); `None` for a chat request.
    pub fn raw_text(&self) -> Option<&str> {
        match (self.raw, self.messages.as_slice()) {
            (true, [m]) if m.role == Role::User => Some(&m.content),
            _ => None,
        }
    }
    pub fn with_sampling(mut self, sampling: Sampling) -> Self {
        self.sampling = sampling;
        self
    }
    pub fn with_n(mut self, n: u32) -> Self {
        self.n = n;
        self
    }
    pub fn with_logprobs(mut self, top_k: u32) -> Self {
        self.logprobs = Some(top_k);
        self
    }
    pub fn with_format(mut self, format: ResponseFormat) -> Self {
        self.format = Some(format);
        self
    }

    /// The content of the last user message, if any.
    pub fn last_user(&self) -> Option<&str> {
        last_user(&self.messages)
    }

    pub fn validate(&self) -> Result<(), BackendError> {
        if self.messages.is_empty() {
            return Err(BackendError::InvalidRequest(
                "a request needs at least one message".into(),
            ));
        }
        if self.raw && self.raw_text().is_none() {
            return Err(BackendError::InvalidRequest(
                "a raw completion is one user message: the text to continue".into(),
            ));
        }
        if self.n == 0 {
            return Err(BackendError::InvalidRequest("n must be at least 1".into()));
        }
        if self.logprobs.is_some_and(|k| k > 20) {
            return Err(BackendError::InvalidRequest(
                "at most 20 top logprobs per token".into(),
            ));
        }
        if let Some(format) = &self.format {
            format.validate()?;
        }
        self.sampling.validate()
    }
}

/// Why a choice stopped.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash, Serialize, Deserialize)]
#[serde(rename_all = "snake_case")]
pub enum FinishReason {
    /// The model produced its end-of-generation token.
    EndOfText,
    /// One of the request's stop sequences was produced (it is not part of the text).
    StopSequence,
    /// `max_tokens` was reached, or the context filled up.
    Length,
}

impl FinishReason {
    /// The OpenAI / Ollama spelling (`stop` or `length`).
    pub fn as_api_str(self) -> &'static str {
        match self {
            FinishReason::EndOfText | FinishReason::StopSequence => "stop",
            FinishReason::Length => "length",
        }
    }
}

/// One alternative token at a position.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct TopLogprob {
    pub token: String,
    pub logprob: f32,
}

/// The log-probability of one generated token, with its top alternatives.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct TokenLogprob {
    pub token: String,
    pub logprob: f32,
    #[serde(default)]
    pub top: Vec<TopLogprob>,
}

/// One sample of a completion.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct Choice {
    pub index: u32,
    pub text: String,
    pub finish_reason: FinishReason,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub logprobs: Option<Vec<TokenLogprob>>,
    /// Generated tokens of this choice.
    pub completion_tokens: u32,
}

/// Token counts of one request.
#[derive(Debug, Clone, Copy, Default, PartialEq, Eq, Serialize, Deserialize)]
pub struct Usage {
    /// Prompt tokens evaluated. A backend that evaluates the prompt once for `n`
    /// samples counts it once; one that sends `n` requests counts it `n` times.
    pub prompt_tokens: u32,
    /// Tokens generated, summed over all choices.
    pub completion_tokens: u32,
}

impl Usage {
    pub fn total(&self) -> u32 {
        self.prompt_tokens + self.completion_tokens
    }
}

impl std::ops::AddAssign for Usage {
    fn add_assign(&mut self, o: Usage) {
        self.prompt_tokens += o.prompt_tokens;
        self.completion_tokens += o.completion_tokens;
    }
}

/// Where the time of one request went, and how many HTTP requests it took.
#[derive(Debug, Clone, Copy, Default, PartialEq, Serialize, Deserialize)]
pub struct Timings {
    /// From the request reaching the backend to the first generated token.
    pub time_to_first_token: Option<Duration>,
    /// Prompt evaluation (prefill).
    pub prompt_eval: Duration,
    /// Token generation after the prompt.
    pub decode: Duration,
    /// Wall time of the whole request.
    pub total: Duration,
    /// HTTP requests a remote backend sent for it: `n` samples the server would not
    /// batch are `n` requests, and a request the server rejected (an `n` above its cap)
    /// counts too. 0 for a backend in this process.
    #[serde(default)]
    pub requests: u32,
}

impl Timings {
    /// Adds the timings of a request that ran at the same time as the others: the
    /// longest prompt evaluation and decode are where the time went, the earliest first
    /// token is the first of all, the HTTP requests add up. `total` is left to the caller.
    pub fn overlap(&mut self, other: &Timings) {
        self.requests += other.requests;
        self.prompt_eval = self.prompt_eval.max(other.prompt_eval);
        self.decode = self.decode.max(other.decode);
        self.time_to_first_token = match (self.time_to_first_token, other.time_to_first_token) {
            (Some(a), Some(b)) => Some(a.min(b)),
            (a, b) => a.or(b),
        };
    }

    pub fn prompt_tokens_per_second(&self, usage: &Usage) -> f64 {
        per_second(usage.prompt_tokens, self.prompt_eval)
    }
    pub fn decode_tokens_per_second(&self, usage: &Usage) -> f64 {
        per_second(usage.completion_tokens, self.decode)
    }
}

fn per_second(tokens: u32, d: Duration) -> f64 {
    let s = d.as_secs_f64();
    if s > 0.0 { f64::from(tokens) / s } else { 0.0 }
}

/// The answer to a [`ChatRequest`]: one choice per sample.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct Completion {
    pub model: String,
    pub choices: Vec<Choice>,
    pub usage: Usage,
    pub timings: Timings,
}

impl Completion {
    /// Text of the first choice ("" when there is none).
    pub fn text(&self) -> &str {
        self.choices.first().map(|c| c.text.as_str()).unwrap_or("")
    }
    pub fn texts(&self) -> Vec<String> {
        self.choices.iter().map(|c| c.text.clone()).collect()
    }
}

/// What a backend can do, so strategies can choose how to call it.
#[derive(Debug, Clone, Copy, Default, PartialEq, Eq, Serialize, Deserialize)]
pub struct Capabilities {
    /// `n > 1` is served natively (one prompt evaluation, batched decoding or one request).
    pub native_n: bool,
    /// Per-token logprobs can be returned.
    pub logprobs: bool,
    /// Most top alternatives per token that can be returned.
    pub max_top_logprobs: u32,
    /// The backend gives token-level control (logit access, branching) through
    /// the token-level interface used by the logit-level strategies.
    pub token_control: bool,
    /// Context length in tokens, when known.
    pub context_length: Option<u32>,
    /// The [`ResponseFormat`]s honoured; any other is refused with
    /// [`BackendError::Unsupported`].
    #[serde(default)]
    pub formats: FormatSupport,
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn stop_sequences_are_bounded_in_number_and_length() {
        let mut s = Sampling {
            stop: vec!["x".into(); MAX_STOP_SEQUENCES],
            ..Sampling::default()
        };
        assert!(s.validate().is_ok());
        s.stop.push("y".into());
        let e = s.validate().unwrap_err().to_string();
        assert!(e.contains("at most 16 stop sequences"), "{e}");
        s.stop = vec!["é".repeat(MAX_STOP_CHARS)];
        assert!(s.validate().is_ok());
        s.stop = vec!["é".repeat(MAX_STOP_CHARS + 1)];
        assert!(s.validate().is_err());
    }

    #[test]
    fn overlapping_timings_keep_the_longest_phases_and_the_first_token() {
        let ms = Duration::from_millis;
        let mut t = Timings::default();
        t.overlap(&Timings {
            prompt_eval: ms(30),
            decode: ms(100),
            time_to_first_token: None,
            ..Timings::default()
        });
        assert_eq!(t.time_to_first_token, None);
        t.overlap(&Timings {
            prompt_eval: ms(20),
            decode: ms(300),
            time_to_first_token: Some(ms(50)),
            total: ms(999),
            requests: 1,
        });
        t.overlap(&Timings {
            time_to_first_token: Some(ms(40)),
            requests: 5,
            ..Timings::default()
        });
        assert_eq!((t.prompt_eval, t.decode), (ms(30), ms(300)));
        assert_eq!(t.time_to_first_token, Some(ms(40)));
        assert_eq!(t.total, Duration::ZERO);
        assert_eq!(t.requests, 6, "the requests that ran together add up");
    }
}
