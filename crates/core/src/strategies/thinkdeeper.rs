//! `thinkdeeper`: budget forcing (s1, Muennighoff et al. 2025).
//!
//! The model thinks with a token budget. When it tries to stop thinking before the
//! minimum (it emits an end-of-generation token, or `</think>` when the vocabulary has
//! that token), the stop is replaced by `"\nWait,"` and decoding goes on. At the maximum
//! thinking budget the end is forced: `</think>` is appended when the vocabulary has it,
//! else `"\n\nFinal answer:"`, and the model writes its answer in the tokens left.
//!
//! Budgets are fractions of `max_tokens`: the minimum is `min_fraction` (10%), the
//! maximum `max_fraction` when set, else by `effort`: low 33%, medium 66%, high 90%.

use async_trait::async_trait;
use serde::{Deserialize, Serialize};

use super::Approach;
use super::sampler::{Rng, SamplerConfig, max_new_tokens, run_seed, sample};
use crate::error::BackendError;
use crate::spec::SpecError;
use crate::strategy::{Answer, Ctx, Strategy, StrategyError, StrategyRequest, TokenLimits};
use crate::token::{Token, TokenSession};
use crate::types::Sampling;

pub const SLUG: &str = "thinkdeeper";

/// How much of the token budget thinking may take at most.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "snake_case")]
pub enum Effort {
    Low,
    Medium,
    High,
}

impl Effort {
    /// The maximum thinking budget as a fraction of `max_tokens`.
    pub fn max_fraction(self) -> f32 {
        match self {
            Effort::Low => 0.33,
            Effort::Medium => 0.66,
            Effort::High => 0.9,
        }
    }

    pub fn as_str(self) -> &'static str {
        match self {
            Effort::Low => "low",
            Effort::Medium => "medium",
            Effort::High => "high",
        }
    }
}

/// The parameters of `thinkdeeper`; a field a spec leaves out takes its default here
/// (`optillm approaches` lists them).
#[derive(Debug, Clone, Serialize, Deserialize)]
#[serde(default, deny_unknown_fields)]
pub struct Params {
    /// Most tokens generated (thinking and answer).
    pub max_tokens: u32,
    /// Minimum thinking budget, as a fraction of `max_tokens`.
    pub min_fraction: f32,
    /// Maximum thinking budget, as a fraction of `max_tokens` (overrides `effort`).
    pub max_fraction: Option<f32>,
    pub effort: Effort,
    /// Replaces a premature end of thinking.
    pub wait_text: String,
    /// Forces the end of thinking for models without a `</think>` token.
    pub answer_text: String,
    /// The end-of-thinking marker, used when it is one token of the vocabulary.
    pub think_end: String,
    pub temperature: f32,
    pub top_p: f32,
    /// Seed of the sampler (`None`: the request's seed, else 0).
    pub seed: Option<u64>,
}

impl Default for Params {
    fn default() -> Self {
        Self {
            max_tokens: 512,
            min_fraction: 0.1,
            max_fraction: None,
            effort: Effort::Medium,
            wait_text: "\nWait,".into(),
            answer_text: "\n\nFinal answer:".into(),
            think_end: "</think>".into(),
            temperature: 0.6,
            top_p: 0.95,
            seed: None,
        }
    }
}

/// Settings of one budget-forced generation (shared with `autothink`).
#[derive(Debug, Clone, PartialEq)]
pub(crate) struct Forcing {
    pub max_tokens: usize,
    pub min_thinking: usize,
    pub max_thinking: usize,
    pub wait_text: String,
    pub answer_text: String,
    pub think_end: String,
    pub sampler: SamplerConfig,
    pub seed: u64,
}

impl Forcing {
    /// Budgets from fractions of `max_tokens`; checks every setting.
    pub fn new(
        slug: &str,
        max_tokens: u32,
        min_fraction: f32,
        max_fraction: f32,
        p: &Params,
        seed: u64,
    ) -> Result<Self, SpecError> {
        let bad = |message: &str| SpecError::BadParameter {
            approach: slug.into(),
            message: message.into(),
        };
        if !(0.0..=1.0).contains(&min_fraction) || !(0.0..=1.0).contains(&max_fraction) {
            return Err(bad("budget fractions must be in [0, 1]"));
        }
        if min_fraction > max_fraction {
            return Err(bad("min_fraction must not exceed the maximum fraction"));
        }
        if p.wait_text.is_empty() || p.answer_text.is_empty() {
            return Err(bad("wait_text and answer_text must not be empty"));
        }
        let sampler = SamplerConfig {
            temperature: p.temperature,
            top_p: p.top_p,
            ..SamplerConfig::greedy()
        };
        if let Some(m) = sampler.check() {
            return Err(bad(m));
        }
        let of = |f: f32| (f * max_tokens as f32).round() as usize;
        Ok(Self {
            max_tokens: max_tokens as usize,
            min_thinking: of(min_fraction),
            max_thinking: of(max_fraction),
            wait_text: p.wait_text.clone(),
            answer_text: p.answer_text.clone(),
            think_end: p.think_end.clone(),
            sampler,
            seed,
        })
    }
}

/// The result of a budget-forced generation.
#[derive(Debug, Clone, PartialEq)]
pub(crate) struct Forced {
    pub text: String,
    /// Tokens generated while thinking (insertions included).
    pub thinking_tokens: usize,
    /// Premature ends replaced by the wait text.
    pub waits: u32,
    /// True when the maximum thinking budget forced the end.
    pub forced_end: bool,
}

/// The one ordinary (non-end) token whose text is `text`, if the vocabulary has one.
/// Tokenizers that do not parse special tokens from text split `</think>` into pieces,
/// so the vocabulary is searched when tokenizing does not give one token.
fn single_token(session: &dyn TokenSession, text: &str) -> Option<Token> {
    if let Ok(t) = session.tokenize(text) {
        if let [one] = t.as_slice() {
            if !session.is_end(*one) {
                return Some(*one);
            }
        }
    }
    let n = Token::try_from(session.vocab_size()).ok()?;
    (0..n).find(|t| {
        !session.is_end(*t) && session.token_bytes(*t).is_ok_and(|b| b == text.as_bytes())
    })
}

/// Decodes sequence 0 with budget forcing.
pub(crate) fn force_budget(
    session: &mut dyn TokenSession,
    f: &Forcing,
    limits: &TokenLimits,
) -> Result<Forced, BackendError> {
    let think_end = single_token(session, &f.think_end);
    let wait = session.tokenize(&f.wait_text)?;
    let end_marker = match think_end {
        Some(t) => vec![t],
        None => session.tokenize(&f.answer_text)?,
    };
    let mut rng = Rng::new(f.seed);
    let mut tokens: Vec<Token> = Vec::new();
    let mut thinking = true;
    let mut out = Forced {
        text: String::new(),
        thinking_tokens: 0,
        waits: 0,
        forced_end: false,
    };
    while tokens.len() < f.max_tokens && session.remaining(0) > 0 && !limits.exhausted(session) {
        if thinking && out.thinking_tokens >= f.max_thinking {
            if (session.remaining(0) as usize) < end_marker.len() {
                break;
            }
            session.append(0, &end_marker)?;
            tokens.extend_from_slice(&end_marker);
            thinking = false;
            out.forced_end = true;
            continue;
        }
        let Some(next) = sample(&session.logits(0)?, &f.sampler, &mut rng) else {
            break;
        };
        let is_end = session.is_end(next);
        if thinking && (is_end || Some(next) == think_end) {
            if out.thinking_tokens < f.min_thinking {
                if (session.remaining(0) as usize) < wait.len() {
                    break;
                }
                session.append(0, &wait)?;
                tokens.extend_from_slice(&wait);
                out.thinking_tokens += wait.len();
                out.waits += 1;
                continue;
            }
            thinking = false;
        }
        if is_end {
            break;
        }
        session.append(0, &[next])?;
        tokens.push(next);
        if thinking {
            out.thinking_tokens += 1;
        }
    }
    out.text = session.detokenize(&tokens)?;
    Ok(out)
}

/// The `thinkdeeper` strategy (the module documentation describes it): built from typed
/// [`Params`] with `new`, or by name through [`crate::strategies::build`].
#[derive(Debug, Clone)]
pub struct ThinkDeeper {
    params: Params,
}

impl ThinkDeeper {
    pub fn new(params: Params) -> Result<Self, SpecError> {
        if params.max_tokens == 0 {
            return Err(SpecError::BadParameter {
                approach: SLUG.into(),
                message: "max_tokens must be at least 1".into(),
            });
        }
        // Checks the remaining settings once, at build time.
        Self::forcing(&params, params.max_tokens, 0)?;
        Ok(Self { params })
    }

    fn forcing(p: &Params, max_tokens: u32, seed: u64) -> Result<Forcing, SpecError> {
        let max_fraction = p.max_fraction.unwrap_or(p.effort.max_fraction());
        Forcing::new(SLUG, max_tokens, p.min_fraction, max_fraction, p, seed)
    }
}

/// Runs one budget-forced generation as a token job (shared with `autothink`).
pub(crate) async fn run_forcing(
    ctx: &Ctx,
    purpose: String,
    request: &StrategyRequest,
    forcing: Forcing,
) -> Result<Forced, StrategyError> {
    let chat = request.chat(request.messages.clone(), &Sampling::default());
    let forced = ctx
        .token_job(purpose, chat, move |session, limits| {
            let out = force_budget(session, &forcing, limits)?;
            let text = out.text.clone();
            Ok((out, vec![text]))
        })
        .await?;
    tracing::debug!(
        thinking_tokens = forced.thinking_tokens,
        waits = forced.waits,
        forced_end = forced.forced_end,
        "budget forcing"
    );
    Ok(forced)
}

impl Approach for ThinkDeeper {
    const SLUG: &'static str = SLUG;
    const DESCRIPTION: &'static str = "Budget forcing (s1): a premature end of thinking becomes \"Wait,\"; \
         the end is forced at the maximum thinking budget";
    type Params = Params;

    fn from_params(params: Params) -> Result<Self, SpecError> {
        Self::new(params)
    }
}

#[async_trait]
impl Strategy for ThinkDeeper {
    fn slug(&self) -> &str {
        SLUG
    }

    async fn run(&self, ctx: &Ctx, request: &StrategyRequest) -> Result<Answer, StrategyError> {
        let max_tokens = max_new_tokens(self.params.max_tokens, request.sampling.max_tokens);
        let seed = run_seed(self.params.seed, request.sampling.seed);
        let forcing = Self::forcing(&self.params, max_tokens, seed)?;
        let forced = run_forcing(ctx, "budget forcing".into(), request, forcing).await?;
        Ok(Answer::one(forced.text))
    }
}

#[cfg(test)]
pub(crate) mod tests {
    use std::sync::Arc;

    use super::*;
    use crate::mock::MockBackend;
    use crate::mock_tokens::{MockTokenBackend, logits_with};
    use crate::strategy::{Budget, run};

    // 0 <eos>, 1 "\nWait,", 2 " hmm", 3 " ok", 4 "</think>", 5 " 42",
    // 6 "\n\nFinal answer:", 7 "<think>"
    pub(crate) const VOCAB: [&str; 8] = [
        "<eos>",
        "\nWait,",
        " hmm",
        " ok",
        "</think>",
        " 42",
        "\n\nFinal answer:",
        "<think>",
    ];
    /// The same vocabulary without the think tags.
    pub(crate) const PLAIN: [&str; 6] = [
        "<eos>",
        "\nWait,",
        " hmm",
        " ok",
        " 42",
        "\n\nFinal answer:",
    ];

    pub(crate) fn sure(n: usize, t: Token) -> Vec<f32> {
        logits_with(n, 0.0, &[(t, 20.0)])
    }

    fn greedy(max_tokens: u32) -> ThinkDeeper {
        ThinkDeeper::new(Params {
            max_tokens,
            temperature: 0.0,
            ..Params::default()
        })
        .unwrap()
    }

    async fn answer(strategy: &ThinkDeeper, b: Arc<MockTokenBackend>) -> String {
        run(strategy, b, &StrategyRequest::user("q"), Budget::default())
            .await
            .unwrap()
            .answer
    }

    #[tokio::test]
    async fn a_premature_end_becomes_wait() {
        // Says " hmm" and wants to stop; after each "Wait," it says " ok" again.
        let b = Arc::new(MockTokenBackend::new(&PLAIN, &[0], |t| match t.last() {
            None => sure(6, 2),
            Some(1) => sure(6, 3),
            _ => sure(6, 0),
        }));
        // max 40: minimum 4 thinking tokens. hmm(1) Wait(2) ok(3) Wait(4) ok(5), then stop.
        let text = answer(&greedy(40), b.clone()).await;
        assert_eq!(text, " hmm\nWait, ok\nWait, ok");
        // Without a minimum it stops at once.
        let lax = ThinkDeeper::new(Params {
            max_tokens: 40,
            min_fraction: 0.0,
            temperature: 0.0,
            ..Params::default()
        })
        .unwrap();
        assert_eq!(answer(&lax, b).await, " hmm");
    }

    #[tokio::test]
    async fn think_end_token_is_replaced_then_kept_and_the_answer_follows() {
        // <think> hmm </think>?  -> replaced until the minimum, then the answer " 42".
        let b = Arc::new(MockTokenBackend::new(&VOCAB, &[0], |t| match t {
            [] => sure(8, 7),
            [.., 4] => sure(8, 5),
            [.., 5] => sure(8, 0),
            [.., 2] => sure(8, 4),
            _ => sure(8, 2),
        }));
        // max 50: minimum 5: <think>(1) hmm(2) Wait(3) hmm(4) Wait(5), hmm(6) </think> 42.
        let text = answer(&greedy(50), b.clone()).await;
        assert_eq!(text, "<think> hmm\nWait, hmm\nWait, hmm</think> 42");
        let s = b.last_session().unwrap();
        assert_eq!(s.sequences[&0].len(), 8);
    }

    #[tokio::test]
    async fn the_maximum_forces_the_end_of_thinking() {
        // Never stops thinking on its own; answers " 42" once thinking is closed.
        fn script(t: &[Token]) -> Vec<f32> {
            match t.last() {
                Some(4) => sure(8, 5),
                Some(5) => sure(8, 0),
                _ => sure(8, 2),
            }
        }
        let b = Arc::new(MockTokenBackend::new(&VOCAB, &[0], script));
        let low = ThinkDeeper::new(Params {
            max_tokens: 10,
            effort: Effort::Low,
            temperature: 0.0,
            ..Params::default()
        })
        .unwrap();
        // Low effort: 33% of 10 = 3 thinking tokens, then </think> and the answer.
        assert_eq!(answer(&low, b.clone()).await, " hmm hmm hmm</think> 42");
        let high = ThinkDeeper::new(Params {
            max_tokens: 10,
            effort: Effort::High,
            temperature: 0.0,
            ..Params::default()
        })
        .unwrap();
        assert_eq!(
            answer(&high, b).await,
            " hmm hmm hmm hmm hmm hmm hmm hmm hmm</think>"
        );
        // Without a </think> token, "Final answer:" closes the thinking.
        let plain = Arc::new(MockTokenBackend::new(&PLAIN, &[0], |t| match t.last() {
            Some(5) => sure(6, 4),
            Some(4) => sure(6, 0),
            _ => sure(6, 2),
        }));
        assert_eq!(
            answer(&low, plain).await,
            " hmm hmm hmm\n\nFinal answer: 42"
        );
    }

    #[test]
    fn finds_think_end_even_when_tokenizing_splits_it() {
        use crate::mock_tokens::ScriptedSession;
        // "</think>" is the special token 3: tokenizing text gives the pieces 1 and 2.
        let vocab = ["<eos>", "</", "think>", "</think>"];
        let session = ScriptedSession::new(
            vocab.iter().map(|v| v.as_bytes().to_vec()).collect(),
            vec![0],
            Arc::new(|_: &[Token]| vec![0.0; 4]),
            1,
            100,
        )
        .with_specials(&[3]);
        assert_eq!(session.tokenize("</think>").unwrap(), vec![1, 2]);
        assert_eq!(single_token(&session, "</think>"), Some(3));
        assert_eq!(single_token(&session, "think>"), Some(2));
        assert_eq!(single_token(&session, "<think>"), None);
    }

    #[tokio::test]
    async fn needs_token_control() {
        let err = run(
            &greedy(10),
            Arc::new(MockBackend::constant("x")),
            &StrategyRequest::user("q"),
            Budget::default(),
        )
        .await
        .unwrap_err();
        assert!(err.to_string().contains("token_control"), "{err}");
    }

    #[test]
    fn rejects_bad_params() {
        let bad = |p: Params| ThinkDeeper::new(p).is_err();
        assert!(bad(Params {
            min_fraction: 0.8,
            effort: Effort::Low,
            ..Params::default()
        }));
        assert!(bad(Params {
            max_fraction: Some(1.5),
            ..Params::default()
        }));
        assert!(bad(Params {
            wait_text: String::new(),
            ..Params::default()
        }));
        assert!(!bad(Params::default()));
    }
}
