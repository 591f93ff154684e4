//! Sampling: each sample's sampler chain, grammar-constrained sampling, and the
//! log-probabilities of sampled tokens.

use std::time::Instant;

use llama_cpp_2::context::LlamaContext;
use llama_cpp_2::model::LlamaModel;
use llama_cpp_2::sampling::LlamaSampler;
use llama_cpp_2::token::LlamaToken;
use llama_cpp_2::token::data::LlamaTokenData;
use llama_cpp_2::token::data_array::LlamaTokenDataArray;
use optillm_core::{BackendError, FormatError, Sampling, TokenLogprob, TopLogprob};

/// llama.cpp's defaults for settings the request leaves open.
const DEFAULT_TEMPERATURE: f32 = 0.8;
const DEFAULT_TOP_K: u32 = 40;
const DEFAULT_TOP_P: f32 = 0.95;
const DEFAULT_MIN_P: f32 = 0.05;
const REPEAT_LAST_N: i32 = 64;

/// The sampler chain of sample `index` of a request.
pub(super) fn sampler(s: &Sampling, index: u32, n_vocab: i32) -> LlamaSampler {
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
pub(super) fn schema_grammar(schema: &str) -> Result<String, BackendError> {
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
pub(super) fn grammar_sampler(
    model: &LlamaModel,
    grammar: &str,
) -> Result<LlamaSampler, BackendError> {
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
pub(super) fn sample_constrained(
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

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn token_logprobs_are_log_softmax_with_the_top_k_in_order() {
        let logits = [1.0f32, 3.0, 2.0, 0.0];
        let lp = token_logprob(&logits, LlamaToken(2), 2, |t| format!("t{}", t.0));
        let total: f32 = logits.iter().map(|l| l.exp()).sum();
        assert!((lp.logprob - (2.0f32.exp() / total).ln()).abs() < 1e-5);
        assert_eq!(lp.token, "t2");
        let top: Vec<&str> = lp.top.iter().map(|t| t.token.as_str()).collect();
        assert_eq!(top, ["t1", "t2"]);
        assert!(lp.top[0].logprob > lp.top[1].logprob);
        assert!(
            token_logprob(&logits, LlamaToken(0), 0, |_| String::new())
                .top
                .is_empty()
        );
        // k past the vocabulary: all of it.
        assert_eq!(
            token_logprob(&logits, LlamaToken(0), 9, |_| String::new())
                .top
                .len(),
            4
        );
    }
}
