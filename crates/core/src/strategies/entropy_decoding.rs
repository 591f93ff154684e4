//! `entropy_decoding`: entropix-style adaptive decoding.
//!
//! At every token the entropy and varentropy (in bits) of the next-token distribution
//! choose what to do:
//! - both low (the model is sure): take the most likely token;
//! - both high (the model is lost): insert a "think more" text (default `"Wait, "`) and
//!   go on from there, at most `max_insertions` times per answer;
//! - otherwise: sample with temperature, top-p, top-k and min-p (entropix defaults
//!   0.666, 0.9, 27, 0.03).
//!
//! Sampling uses a seeded generator: the same seed gives the same text.

use async_trait::async_trait;
use serde::{Deserialize, Serialize};

use super::Approach;
use super::sampler::{
    Rng, SamplerConfig, argmax, entropy_varentropy, max_new_tokens, run_seed, sample,
};
use crate::error::BackendError;
use crate::spec::SpecError;
use crate::strategy::{Answer, Ctx, Strategy, StrategyError, StrategyRequest, TokenLimits};
use crate::token::{Token, TokenSession};
use crate::types::Sampling;

pub const SLUG: &str = "entropy_decoding";

/// The parameters of `entropy_decoding`; a field a spec leaves out takes its default here
/// (`optillm approaches` lists them).
#[derive(Debug, Clone, Serialize, Deserialize)]
#[serde(default, deny_unknown_fields)]
pub struct Params {
    pub max_tokens: u32,
    pub temperature: f32,
    pub top_p: f32,
    pub top_k: u32,
    pub min_p: f32,
    /// Below both of these (bits), the most likely token is taken.
    pub low_entropy: f32,
    pub low_varentropy: f32,
    /// Above both of these (bits), the "think more" text is inserted.
    pub high_entropy: f32,
    pub high_varentropy: f32,
    /// The inserted text.
    pub think_text: String,
    /// Most insertions per answer.
    pub max_insertions: u32,
    /// Seed of the sampler (`None`: the request's seed, else 0).
    pub seed: Option<u64>,
}

impl Default for Params {
    fn default() -> Self {
        Self {
            max_tokens: 512,
            temperature: 0.666,
            top_p: 0.9,
            top_k: 27,
            min_p: 0.03,
            low_entropy: 0.1,
            low_varentropy: 0.1,
            high_entropy: 3.0,
            high_varentropy: 3.0,
            think_text: "Wait, ".into(),
            max_insertions: 2,
            seed: None,
        }
    }
}

/// The `entropy_decoding` strategy (the module documentation describes it): built from typed
/// [`Params`] with `new`, or by name through [`crate::strategies::build`].
#[derive(Debug, Clone)]
pub struct EntropyDecoding {
    params: Params,
}

impl EntropyDecoding {
    pub fn new(params: Params) -> Result<Self, SpecError> {
        let bad = |message: &str| SpecError::BadParameter {
            approach: SLUG.into(),
            message: message.into(),
        };
        if params.max_tokens == 0 {
            return Err(bad("max_tokens must be at least 1"));
        }
        if let Some(m) = sampler_of(&params).check() {
            return Err(bad(m));
        }
        if params.low_entropy > params.high_entropy
            || params.low_varentropy > params.high_varentropy
        {
            return Err(bad("the low thresholds must not exceed the high ones"));
        }
        if params.max_insertions > 0 && params.think_text.is_empty() {
            return Err(bad("think_text must not be empty"));
        }
        Ok(Self { params })
    }
}

fn sampler_of(p: &Params) -> SamplerConfig {
    SamplerConfig {
        temperature: p.temperature,
        top_p: p.top_p,
        top_k: p.top_k as usize,
        min_p: p.min_p,
    }
}

/// What the decoder did at one position.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Decision {
    Argmax,
    Sample,
    ThinkMore,
}

/// The decision for a distribution with this entropy and varentropy.
fn decide(p: &Params, entropy: f32, varentropy: f32, insertions_left: bool) -> Decision {
    if entropy < p.low_entropy && varentropy < p.low_varentropy {
        Decision::Argmax
    } else if entropy > p.high_entropy && varentropy > p.high_varentropy && insertions_left {
        Decision::ThinkMore
    } else {
        Decision::Sample
    }
}

/// The decoded text and the decision taken at each step.
#[derive(Debug, Clone, PartialEq)]
pub struct Decoded {
    pub text: String,
    pub decisions: Vec<Decision>,
}

fn decode(
    session: &mut dyn TokenSession,
    p: &Params,
    max_tokens: usize,
    seed: u64,
    limits: &TokenLimits,
) -> Result<Decoded, BackendError> {
    let sampler = sampler_of(p);
    let mut rng = Rng::new(seed);
    let think: Vec<Token> = if p.max_insertions > 0 {
        session.tokenize(&p.think_text)?
    } else {
        Vec::new()
    };
    let mut tokens: Vec<Token> = Vec::new();
    let mut decisions = Vec::new();
    let mut insertions = 0;
    // No insertion right after an insertion: the model first has to react to it.
    let mut just_inserted = false;
    while tokens.len() < max_tokens && session.remaining(0) > 0 && !limits.exhausted(session) {
        let logits = session.logits(0)?;
        let (entropy, varentropy) = entropy_varentropy(&logits);
        let may_insert = insertions < p.max_insertions
            && !just_inserted
            && !think.is_empty()
            && tokens.len() + think.len() <= max_tokens
            && session.remaining(0) as usize >= think.len();
        let decision = decide(p, entropy, varentropy, may_insert);
        tracing::trace!(entropy, varentropy, ?decision, "entropy decoding step");
        decisions.push(decision);
        let next = match decision {
            Decision::ThinkMore => {
                session.append(0, &think)?;
                tokens.extend_from_slice(&think);
                insertions += 1;
                just_inserted = true;
                continue;
            }
            Decision::Argmax => argmax(&logits),
            Decision::Sample => sample(&logits, &sampler, &mut rng),
        };
        let Some(next) = next else { break };
        if session.is_end(next) {
            break;
        }
        session.append(0, &[next])?;
        tokens.push(next);
        just_inserted = false;
    }
    Ok(Decoded {
        text: session.detokenize(&tokens)?,
        decisions,
    })
}

impl Approach for EntropyDecoding {
    const SLUG: &'static str = SLUG;
    const DESCRIPTION: &'static str = "Entropix-style decoding: entropy and varentropy per token choose \
         argmax, sampling or a \"Wait, \" insertion";
    type Params = Params;

    fn from_params(params: Params) -> Result<Self, SpecError> {
        Self::new(params)
    }
}

#[async_trait]
impl Strategy for EntropyDecoding {
    fn slug(&self) -> &str {
        SLUG
    }

    async fn run(&self, ctx: &Ctx, request: &StrategyRequest) -> Result<Answer, StrategyError> {
        let max_tokens = max_new_tokens(self.params.max_tokens, request.sampling.max_tokens);
        let seed = run_seed(self.params.seed, request.sampling.seed);
        let params = self.params.clone();
        let chat = request.chat(request.messages.clone(), &Sampling::default());
        let decoded = ctx
            .token_job("entropy decoding", chat, move |session, limits| {
                let d = decode(session, &params, max_tokens as usize, seed, limits)?;
                let text = d.text.clone();
                Ok((d, vec![text]))
            })
            .await?;
        let count = |d: Decision| decoded.decisions.iter().filter(|x| **x == d).count();
        tracing::debug!(
            argmax = count(Decision::Argmax),
            sample = count(Decision::Sample),
            think_more = count(Decision::ThinkMore),
            "entropy decoding decisions"
        );
        Ok(Answer::one(decoded.text))
    }
}

#[cfg(test)]
mod tests {
    use std::sync::Arc;

    use super::*;
    use crate::mock::MockBackend;
    use crate::mock_tokens::{MockTokenBackend, logits_with};
    use crate::strategy::{Budget, run};

    // 0 <eos>, 1 "Wait", 2 ", ", 3 "x", 4 "y", 5.. 36 filler tokens "f0".."f31".
    fn vocab() -> Vec<String> {
        let mut v: Vec<String> = ["<eos>", "Wait", ", ", "x", "y"]
            .iter()
            .map(|s| s.to_string())
            .collect();
        v.extend((0..32).map(|i| format!("<f{i}>")));
        v
    }

    const N: usize = 37;

    /// A sure distribution (one token at +20).
    fn sure(t: Token) -> Vec<f32> {
        logits_with(N, 0.0, &[(t, 20.0)])
    }

    /// High entropy and high varentropy (about 4.0 and 4.4 bits): 40% of the mass on
    /// one token, the rest spread thin over 32 others.
    fn lost() -> Vec<f32> {
        let mut l = vec![-9.0; N];
        l[3] = 3.0;
        for x in l.iter_mut().skip(5) {
            *x = 0.0;
        }
        l
    }

    /// High entropy, low varentropy: even over 16 filler tokens.
    fn spread() -> Vec<f32> {
        let mut l = vec![-30.0; N];
        for x in l.iter_mut().skip(5).take(16) {
            *x = 0.0;
        }
        l
    }

    fn backend(script: fn(&[Token]) -> Vec<f32>) -> Arc<MockTokenBackend> {
        let v = vocab();
        let refs: Vec<&str> = v.iter().map(String::as_str).collect();
        Arc::new(MockTokenBackend::new(&refs, &[0], script))
    }

    fn strategy(seed: u64) -> EntropyDecoding {
        EntropyDecoding::new(Params {
            seed: Some(seed),
            think_text: "Wait, ".into(),
            ..Params::default()
        })
        .unwrap()
    }

    #[test]
    fn the_test_distributions_land_in_their_regions() {
        let p = Params::default();
        let (h, v) = entropy_varentropy(&sure(3));
        assert_eq!(decide(&p, h, v, true), Decision::Argmax);
        let (h, v) = entropy_varentropy(&lost());
        assert!(h > 3.0 && v > 3.0, "{h} {v}");
        assert_eq!(decide(&p, h, v, true), Decision::ThinkMore);
        assert_eq!(decide(&p, h, v, false), Decision::Sample);
        let (h, v) = entropy_varentropy(&spread());
        assert!(h > 3.0 && v < 0.1, "{h} {v}");
        assert_eq!(decide(&p, h, v, true), Decision::Sample);
    }

    #[tokio::test]
    async fn sure_steps_are_greedy_and_lost_steps_insert_think_text() {
        // x, then lost, then after "Wait, " sure of y, then end.
        fn script(t: &[Token]) -> Vec<f32> {
            match t {
                [] => sure(3),
                [3] => lost(),
                [3, 1, 2] => sure(4),
                _ => sure(0),
            }
        }
        let b = backend(script);
        let out = run(
            &strategy(1),
            b.clone(),
            &StrategyRequest::user("q"),
            Budget::default(),
        )
        .await
        .unwrap();
        assert_eq!(out.answer, "xWait, y");
        let s = b.last_session().unwrap();
        // "Wait, " is two tokens, appended in one call.
        assert_eq!(s.sequences[&0], vec![3, 1, 2, 4]);
        assert_eq!(out.usage.completion_tokens, 4);
    }

    #[tokio::test]
    async fn insertions_are_bounded_then_it_samples() {
        // Always lost: two insertions (default bound), separated by sampled tokens.
        let b = backend(|_| lost());
        let strat = EntropyDecoding::new(Params {
            seed: Some(3),
            max_tokens: 12,
            ..Params::default()
        })
        .unwrap();
        let out = run(
            &strat,
            b.clone(),
            &StrategyRequest::user("q"),
            Budget::default(),
        )
        .await
        .unwrap();
        assert_eq!(out.answer.matches("Wait, ").count(), 2, "{}", out.answer);
        let toks = &b.last_session().unwrap().sequences[&0];
        assert_eq!(toks.len(), 12);
        // Sampled tokens come from the top-k 27 / min-p filtered set: x or a filler.
        assert!(toks.iter().all(|t| *t != 4 && *t != 0));
    }

    #[tokio::test]
    async fn sampling_is_seeded_and_respects_filters() {
        let b = backend(|t| if t.len() < 40 { spread() } else { sure(0) });
        let text = |seed| {
            let b = b.clone();
            async move {
                run(
                    &strategy(seed),
                    b,
                    &StrategyRequest::user("q"),
                    Budget::default(),
                )
                .await
                .unwrap()
                .answer
            }
        };
        let (a1, a2, c) = (text(5).await, text(5).await, text(6).await);
        assert_eq!(a1, a2);
        assert_ne!(a1, c);
        let toks = &b.last_session().unwrap().sequences[&0];
        assert_eq!(toks.len(), 40);
        // Only 16 filler tokens carry mass; several of them were drawn.
        assert!(toks.iter().all(|t| (5..21).contains(t)));
        let mut distinct = toks.clone();
        distinct.sort_unstable();
        distinct.dedup();
        assert!(distinct.len() > 5);
    }

    #[tokio::test]
    async fn needs_token_control() {
        let err = run(
            &strategy(0),
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
        let bad = |p: Params| EntropyDecoding::new(p).is_err();
        assert!(bad(Params {
            top_p: 0.0,
            ..Params::default()
        }));
        assert!(bad(Params {
            low_entropy: 5.0,
            ..Params::default()
        }));
        assert!(bad(Params {
            think_text: String::new(),
            ..Params::default()
        }));
    }
}
