//! Shared helpers of the logit-level strategies: sampling over raw logits
//! (temperature, top-k, min-p, top-p), a small seeded RNG, and the per-token
//! statistics the strategies score with (margin, entropy, varentropy, confidence).

use serde::{Deserialize, Serialize};

use crate::token::{Token, softmax};

/// A small seeded generator (xorshift64*, seeded through splitmix64): reproducible
/// runs for a given seed, which is all sampling needs here.
#[derive(Debug, Clone)]
pub struct Rng(u64);

impl Rng {
    pub fn new(seed: u64) -> Self {
        // splitmix64 of the seed, so that 0 and nearby seeds give unrelated streams.
        let mut z = seed.wrapping_add(0x9E37_79B9_7F4A_7C15);
        z = (z ^ (z >> 30)).wrapping_mul(0xBF58_476D_1CE4_E5B9);
        z = (z ^ (z >> 27)).wrapping_mul(0x94D0_49BB_1331_11EB);
        z ^= z >> 31;
        Self(if z == 0 { 0x2545_F491_4F6C_DD1D } else { z })
    }

    pub fn next_u64(&mut self) -> u64 {
        let mut x = self.0;
        x ^= x >> 12;
        x ^= x << 25;
        x ^= x >> 27;
        self.0 = x;
        x.wrapping_mul(0x2545_F491_4F6C_DD1D)
    }

    /// Uniform in [0, 1).
    pub fn next_f32(&mut self) -> f32 {
        // 24 high bits: exactly representable in an f32.
        (self.next_u64() >> 40) as f32 / (1u64 << 24) as f32
    }
}

/// Settings of one sampling step. `temperature` 0 is greedy; `top_k` 0, `top_p` 1 and
/// `min_p` 0 switch those filters off.
#[derive(Debug, Clone, Copy, PartialEq, Serialize, Deserialize)]
pub struct SamplerConfig {
    pub temperature: f32,
    pub top_p: f32,
    pub top_k: usize,
    pub min_p: f32,
}

impl Default for SamplerConfig {
    fn default() -> Self {
        Self::greedy()
    }
}

impl SamplerConfig {
    pub fn greedy() -> Self {
        Self {
            temperature: 0.0,
            top_p: 1.0,
            top_k: 0,
            min_p: 0.0,
        }
    }

    /// A reason the settings are out of range, if any.
    pub fn check(&self) -> Option<&'static str> {
        if !self.temperature.is_finite() || self.temperature < 0.0 {
            Some("temperature must be a finite number >= 0")
        } else if !(self.top_p > 0.0 && self.top_p <= 1.0) {
            Some("top_p must be in (0, 1]")
        } else if !(0.0..=1.0).contains(&self.min_p) {
            Some("min_p must be in [0, 1]")
        } else {
            None
        }
    }
}

/// The most likely token (`None` for empty logits).
pub fn argmax(logits: &[f32]) -> Option<Token> {
    logits
        .iter()
        .enumerate()
        .max_by(|a, b| a.1.total_cmp(b.1))
        .map(|(i, _)| i as Token)
}

/// The `k` most likely entries of `probs` (all when `k` is 0), most likely first; equal
/// probabilities in token order.
fn sorted_top(probs: &[f32], k: usize) -> Vec<(Token, f32)> {
    let mut all: Vec<(Token, f32)> = probs
        .iter()
        .enumerate()
        .map(|(i, p)| (i as Token, *p))
        .collect();
    if k > 0 && k < all.len() {
        all.select_nth_unstable_by(k - 1, by_probability);
        all.truncate(k);
    }
    all.sort_by(by_probability);
    all
}

/// Most likely first, then token order.
fn by_probability(a: &(Token, f32), b: &(Token, f32)) -> std::cmp::Ordering {
    b.1.total_cmp(&a.1).then(a.0.cmp(&b.0))
}

/// The most likely tokens sorted before a draw. Sorting the whole vocabulary (152k
/// tokens for Qwen2.5) took about 9 ms a step; the rest is sorted only when a filter or
/// the draw reaches past these, which a peaked distribution rarely does.
const HEAD: usize = 64;

/// How many of the most likely tokens the filters keep (top-k, then min-p relative to
/// the most likely, then top-p over what is left: each keeps a prefix of the tokens by
/// probability), when `head`, the first of `limit` tokens after top-k, tells; `None`
/// when the prefix may run past it.
fn kept_in_head(head: &[(Token, f32)], limit: usize, config: &SamplerConfig) -> Option<usize> {
    let mut cut = (limit <= head.len()).then_some(limit);
    let mut keep = |n: usize| cut = Some(cut.map_or(n, |c| c.min(n)));
    let best = head.first().map_or(0.0, |t| t.1);
    if config.min_p > 0.0 {
        if let Some(i) = head.iter().position(|(_, p)| *p < config.min_p * best) {
            keep(i);
        }
    }
    if config.top_p < 1.0 {
        let mut cumulative = 0.0;
        if let Some(i) = head.iter().position(|(_, p)| {
            cumulative += p;
            cumulative >= config.top_p
        }) {
            keep(i + 1);
        }
    }
    cut
}

/// The sum of probabilities, added in f64 so that it does not depend on their order
/// (the sorted head and the whole vocabulary then draw alike).
fn sum(probs: impl Iterator<Item = f32>) -> f32 {
    probs.map(f64::from).sum::<f64>() as f32
}

/// Draws from `candidates` (most likely first) by their weights, `r` the draw; when it
/// falls past them, `Err` with what is left of it.
fn walk(candidates: &[(Token, f32)], mut r: f32) -> Result<Token, f32> {
    for (t, p) in candidates {
        if r < *p {
            return Ok(*t);
        }
        r -= p;
    }
    Err(r)
}

/// Samples the next token from raw `logits`: temperature, then top-k, min-p (relative to
/// the most likely token) and top-p (nucleus), then a draw from what is left.
pub fn sample(logits: &[f32], config: &SamplerConfig, rng: &mut Rng) -> Option<Token> {
    if config.temperature <= 0.0 {
        return argmax(logits);
    }
    let scaled: Vec<f32> = logits.iter().map(|l| l / config.temperature).collect();
    let probs = softmax(&scaled);
    let limit = match config.top_k {
        0 => probs.len(),
        k => k.min(probs.len()),
    };
    // Where even the head cannot hold half the mass, the draw mostly falls past it:
    // sort everything at once.
    let best = probs.iter().copied().fold(0.0f32, f32::max);
    if best * (HEAD as f32) < 0.5 {
        return sample_sorted(logits, &probs, limit, config, rng);
    }
    let head = sorted_top(&probs, HEAD.min(limit));
    head.first()?;
    let unfiltered = limit == probs.len() && config.min_p <= 0.0 && config.top_p >= 1.0;
    let (candidates, total) = match kept_in_head(&head, limit, config) {
        Some(n) => {
            let kept = head.get(..n).unwrap_or(&head);
            (kept, sum(kept.iter().map(|(_, p)| *p)))
        }
        // Every token stays: the head, then (rarely reached) the rest.
        None if unfiltered => (head.as_slice(), sum(probs.iter().copied())),
        None => return sample_sorted(logits, &probs, limit, config, rng),
    };
    if !(total > 0.0 && total.is_finite()) {
        return argmax(logits);
    }
    match walk(candidates, rng.next_f32() * total) {
        Ok(t) => Some(t),
        Err(r) if unfiltered => {
            let mut rest: Vec<(Token, f32)> = probs
                .iter()
                .enumerate()
                .map(|(i, p)| (i as Token, *p))
                .filter(|x| by_probability(x, head.last().unwrap_or(x)).is_gt())
                .collect();
            rest.sort_by(by_probability);
            walk(&rest, r)
                .ok()
                .or_else(|| rest.last().or(head.last()).map(|(t, _)| *t))
        }
        Err(_) => candidates.last().map(|(t, _)| *t),
    }
}

/// [`sample`] over the whole vocabulary sorted (`probs`: the softmax of `logits` at the
/// temperature; `limit`: the tokens top-k keeps).
fn sample_sorted(
    logits: &[f32],
    probs: &[f32],
    limit: usize,
    config: &SamplerConfig,
    rng: &mut Rng,
) -> Option<Token> {
    let mut candidates = sorted_top(probs, limit);
    let best = candidates.first()?.1;
    if config.min_p > 0.0 {
        candidates.retain(|(_, p)| *p >= config.min_p * best);
    }
    if config.top_p < 1.0 {
        let mut cumulative = 0.0;
        let mut keep = candidates.len();
        for (i, (_, p)) in candidates.iter().enumerate() {
            cumulative += p;
            if cumulative >= config.top_p {
                keep = i + 1;
                break;
            }
        }
        candidates.truncate(keep.max(1));
    }
    let total = sum(candidates.iter().map(|(_, p)| *p));
    if !(total > 0.0 && total.is_finite()) {
        return argmax(logits);
    }
    walk(&candidates, rng.next_f32() * total)
        .ok()
        .or_else(|| candidates.last().map(|(t, _)| *t))
}

/// Log-probabilities of raw logits (numerically stable).
pub fn log_softmax(logits: &[f32]) -> Vec<f32> {
    let max = logits.iter().copied().fold(f32::NEG_INFINITY, f32::max);
    let sum: f32 = logits.iter().map(|l| (l - max).exp()).sum();
    let log_sum = max + sum.ln();
    logits.iter().map(|l| l - log_sum).collect()
}

/// The most likely token and its margin p(top1) - p(top2) (CoT decoding's path score).
pub fn top_margin(logits: &[f32]) -> Option<(Token, f32)> {
    let probs = softmax(logits);
    let top = sorted_top(&probs, 2);
    let first = top.first()?;
    let second = top.get(1).map_or(0.0, |t| t.1);
    Some((first.0, first.1 - second))
}

/// Entropy and varentropy of the next-token distribution, in bits.
pub fn entropy_varentropy(logits: &[f32]) -> (f32, f32) {
    let log_probs = log_softmax(logits);
    let log2 = |lp: f32| lp / std::f32::consts::LN_2;
    let mut entropy = 0.0;
    for lp in &log_probs {
        let p = lp.exp();
        if p > 0.0 {
            entropy -= p * log2(*lp);
        }
    }
    let mut varentropy = 0.0;
    for lp in &log_probs {
        let p = lp.exp();
        if p > 0.0 {
            let d = log2(*lp) + entropy;
            varentropy += p * d * d;
        }
    }
    (entropy, varentropy)
}

/// DeepConf's token confidence: minus the mean log-probability of the `k` most likely
/// tokens. High when the distribution is peaked.
pub fn token_confidence(logits: &[f32], k: usize) -> f32 {
    let log_probs = log_softmax(logits);
    let top = sorted_top(&log_probs, k.max(1));
    if top.is_empty() {
        return 0.0;
    }
    let sum: f32 = top.iter().map(|(_, lp)| lp.max(-1e4)).sum();
    -sum / top.len() as f32
}

/// The seed of a run: the strategy's own when set, else the caller's, else 0.
pub fn run_seed(own: Option<u64>, caller: Option<u32>) -> u64 {
    own.or(caller.map(u64::from)).unwrap_or(0)
}

/// The number of tokens to generate: the strategy's own limit, lowered by the caller's
/// `max_tokens` when one is set.
pub fn max_new_tokens(own: u32, caller: Option<u32>) -> u32 {
    caller.map_or(own, |c| c.min(own)).max(1)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn rng_is_reproducible_and_spread() {
        let a: Vec<u64> = (0..4).map(|_| Rng::new(7).next_u64()).collect();
        assert!(a.windows(2).all(|w| w[0] == w[1]));
        let mut r = Rng::new(0);
        let xs: Vec<f32> = (0..1000).map(|_| r.next_f32()).collect();
        assert!(xs.iter().all(|x| (0.0..1.0).contains(x)));
        let mean = xs.iter().sum::<f32>() / 1000.0;
        assert!((mean - 0.5).abs() < 0.05, "mean {mean}");
        assert_ne!(Rng::new(1).next_u64(), Rng::new(2).next_u64());
    }

    #[test]
    fn greedy_and_zero_temperature_pick_argmax() {
        let l = [0.1, 2.0, 1.9];
        assert_eq!(argmax(&l), Some(1));
        assert_eq!(
            sample(&l, &SamplerConfig::greedy(), &mut Rng::new(0)),
            Some(1)
        );
        assert_eq!(argmax(&[]), None);
    }

    #[test]
    fn top_k_limits_the_draw() {
        let l = [3.0, 2.9, 2.8, 2.7];
        let c = SamplerConfig {
            temperature: 1.0,
            top_k: 2,
            ..SamplerConfig::greedy()
        };
        let mut rng = Rng::new(3);
        let mut seen = [0u32; 4];
        for _ in 0..400 {
            seen[sample(&l, &c, &mut rng).unwrap() as usize] += 1;
        }
        assert!(seen[0] > 0 && seen[1] > 0);
        assert_eq!(seen[2] + seen[3], 0);
    }

    #[test]
    fn min_p_drops_unlikely_tokens() {
        // p ~ [0.64, 0.24, 0.09, 0.03]: min_p 0.2 keeps tokens with p >= 0.128.
        let l = [3.0, 2.0, 1.0, 0.0];
        let c = SamplerConfig {
            temperature: 1.0,
            min_p: 0.2,
            ..SamplerConfig::greedy()
        };
        let mut rng = Rng::new(5);
        let mut seen = [0u32; 4];
        for _ in 0..400 {
            seen[sample(&l, &c, &mut rng).unwrap() as usize] += 1;
        }
        assert!(seen[0] > seen[1] && seen[1] > 0);
        assert_eq!(seen[2] + seen[3], 0);
    }

    #[test]
    fn top_p_keeps_the_nucleus_only() {
        // p ~ [0.64, 0.24, 0.09, 0.03]: top_p 0.8 keeps the first two.
        let l = [3.0, 2.0, 1.0, 0.0];
        let c = SamplerConfig {
            temperature: 1.0,
            top_p: 0.8,
            ..SamplerConfig::greedy()
        };
        let mut rng = Rng::new(9);
        let mut seen = [0u32; 4];
        for _ in 0..400 {
            seen[sample(&l, &c, &mut rng).unwrap() as usize] += 1;
        }
        assert!(seen[1] > 0);
        assert_eq!(seen[2] + seen[3], 0);
    }

    /// Sorting only the most likely tokens draws what sorting them all draws: peaked
    /// and flat distributions (whose draws reach past the head), every filter.
    #[test]
    fn the_sorted_head_draws_as_the_whole_sorted_vocabulary() {
        let mut source = Rng::new(42);
        let configs = [
            (1.0, 1.0, 0, 0.0),
            (0.6, 1.0, 0, 0.0),
            (0.6, 0.95, 0, 0.0),
            (0.6, 0.999, 0, 0.0),
            (1.0, 1.0, 40, 0.0),
            (1.0, 1.0, 200, 0.0),
            (1.0, 1.0, 0, 0.05),
            (1.0, 1.0, 0, 0.0001),
            (0.8, 0.9, 100, 0.01),
        ];
        let (mut draws, mut past_head) = (0, 0);
        for spread in [2.0, 8.0, 20.0] {
            let logits: Vec<f32> = (0..3000).map(|_| source.next_f32() * spread).collect();
            for (temperature, top_p, top_k, min_p) in configs {
                let config = SamplerConfig {
                    temperature,
                    top_p,
                    top_k,
                    min_p,
                };
                let scaled: Vec<f32> = logits.iter().map(|l| l / temperature).collect();
                let probs = softmax(&scaled);
                let limit = if top_k == 0 { probs.len() } else { top_k };
                let head = sorted_top(&probs, HEAD);
                for seed in 0..200 {
                    let fast = sample(&logits, &config, &mut Rng::new(seed));
                    let sorted =
                        sample_sorted(&logits, &probs, limit, &config, &mut Rng::new(seed));
                    assert_eq!(fast, sorted, "{config:?}, seed {seed}");
                    draws += 1;
                    past_head += usize::from(!head.iter().any(|(t, _)| Some(*t) == fast));
                }
            }
        }
        // The flat distributions draw past the head often: that path is tested too.
        assert!(past_head > draws / 10, "{past_head} of {draws}");
    }

    #[test]
    fn temperature_flattens_the_distribution() {
        let l = [2.0, 0.0];
        let count = |t: f32| {
            let c = SamplerConfig {
                temperature: t,
                ..SamplerConfig::greedy()
            };
            let mut rng = Rng::new(11);
            (0..2000)
                .filter(|_| sample(&l, &c, &mut rng) == Some(1))
                .count()
        };
        // p(1) is ~0.12 at T=1 and ~0.38 at T=4.
        let (cold, hot) = (count(1.0), count(4.0));
        assert!(cold > 150 && cold < 350, "{cold}");
        assert!(hot > 650 && hot < 900, "{hot}");
    }

    #[test]
    fn statistics_of_peaked_and_flat_distributions() {
        let flat = [0.0; 8];
        let (h, v) = entropy_varentropy(&flat);
        assert!((h - 3.0).abs() < 1e-4, "{h}");
        assert!(v.abs() < 1e-4);
        let peaked = [10.0, 0.0, 0.0, 0.0];
        let (h2, _) = entropy_varentropy(&peaked);
        assert!(h2 < 0.01);
        let (t, m) = top_margin(&[0.0, 2.0, 2.0]).unwrap();
        assert!(t == 1 || t == 2);
        assert!(m.abs() < 1e-6);
        let (t, m) = top_margin(&peaked).unwrap();
        assert_eq!(t, 0);
        assert!(m > 0.99);
        assert!(token_confidence(&peaked, 3) > token_confidence(&flat, 3));
        assert!((token_confidence(&flat, 3) - 8f32.ln()).abs() < 1e-4);
        assert_eq!(max_new_tokens(100, Some(20)), 20);
        assert_eq!(max_new_tokens(100, None), 100);
    }
}
