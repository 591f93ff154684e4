//! `deepconf`: DeepConf online (Fu et al. 2025, "Deep Think with Confidence").
//!
//! Reasoning traces are sampled as sequences forked from one evaluated prompt and
//! decoded `parallel` at a time in one batch per step. Each token gets a confidence:
//! minus the mean log-probability of the `top_k` most likely tokens at its position.
//! A trace's group confidence is the mean over a sliding window of its last `window`
//! tokens.
//!
//! 1. Warm-up: the first `warmup_traces` traces run to the end; the threshold is the
//!    `threshold_percentile` percentile of their lowest group confidences (10 keeps about
//!    90% of traces, the paper's DeepConf-high; 90 is DeepConf-low).
//! 2. Online: later traces stop as soon as their group confidence falls below the
//!    threshold; stopped traces do not vote.
//! 3. After each step past warm-up, the surviving traces vote on their extracted answers,
//!    each weighted by its lowest group confidence; once the winner holds `consensus` of
//!    the weight (0.95), no new trace starts and running ones are cancelled.
//!
//! Defaults are scaled down from the paper's (warm-up 16, 128 traces, window 2048) for
//! small models and budgets: warm-up 4, at most 16 traces, window 64 tokens.

use async_trait::async_trait;
use serde::{Deserialize, Serialize};

use super::Approach;
use super::read_answer::answer_kind;
use super::sampler::{Rng, SamplerConfig, max_new_tokens, run_seed, sample, token_confidence};
use crate::error::BackendError;
use crate::extract::{AnswerKind, extract_as};
use crate::spec::SpecError;
use crate::strategy::{Answer, Ctx, Strategy, StrategyError, StrategyRequest, TokenLimits};
use crate::token::{SeqId, Token, TokenSession};
use crate::types::Sampling;

pub const SLUG: &str = "deepconf";

/// The parameters of `deepconf`; a field a spec leaves out takes its default here
/// (`optillm approaches` lists them).
#[derive(Debug, Clone, Serialize, Deserialize)]
#[serde(default, deny_unknown_fields)]
pub struct Params {
    pub warmup_traces: u32,
    pub max_traces: u32,
    /// Traces decoded together, one batch per step.
    pub parallel: u32,
    /// Share of the vote weight at which sampling stops.
    pub consensus: f32,
    /// Sliding window of the group confidence, in tokens.
    pub window: u32,
    /// Alternatives per position in the token confidence.
    pub top_k: u32,
    /// Percentile of the warm-up confidences used as the stopping threshold.
    pub threshold_percentile: f32,
    /// Most tokens per trace.
    pub max_tokens: u32,
    pub temperature: f32,
    pub top_p: f32,
    /// Seed of the sampler (`None`: the request's seed, else 0).
    pub seed: Option<u64>,
    /// The kind of answer to extract for the vote (`None`: any kind).
    pub answer_kind: Option<AnswerKind>,
}

impl Default for Params {
    fn default() -> Self {
        Self {
            warmup_traces: 4,
            max_traces: 16,
            parallel: 4,
            consensus: 0.95,
            window: 64,
            top_k: 5,
            threshold_percentile: 10.0,
            max_tokens: 256,
            temperature: 0.7,
            top_p: 0.95,
            seed: None,
            answer_kind: None,
        }
    }
}

/// The `deepconf` strategy (the module documentation describes it): built from typed
/// [`Params`] with `new`, or by name through [`crate::strategies::build`].
#[derive(Debug, Clone)]
pub struct DeepConf {
    params: Params,
}

impl DeepConf {
    pub fn new(params: Params) -> Result<Self, SpecError> {
        let bad = |message: &str| SpecError::BadParameter {
            approach: SLUG.into(),
            message: message.into(),
        };
        if params.max_traces == 0 || params.parallel == 0 {
            return Err(bad("max_traces and parallel must be at least 1"));
        }
        if params.window == 0 || params.top_k == 0 || params.max_tokens == 0 {
            return Err(bad("window, top_k and max_tokens must be at least 1"));
        }
        if !(params.consensus > 0.0 && params.consensus <= 1.0) {
            return Err(bad("consensus must be in (0, 1]"));
        }
        if !(0.0..=100.0).contains(&params.threshold_percentile) {
            return Err(bad("threshold_percentile must be in [0, 100]"));
        }
        if let Some(m) = sampler_of(&params).check() {
            return Err(bad(m));
        }
        Ok(Self { params })
    }
}

fn sampler_of(p: &Params) -> SamplerConfig {
    SamplerConfig {
        temperature: p.temperature,
        top_p: p.top_p,
        ..SamplerConfig::greedy()
    }
}

/// How a trace ended.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum TraceEnd {
    /// End token or `max_tokens`.
    Completed,
    /// Its group confidence fell below the threshold.
    Stopped,
    /// Consensus was reached while it ran.
    Cancelled,
    /// The run's budget ran out while it ran.
    Cut,
}

/// One trace of a run.
#[derive(Debug, Clone, PartialEq)]
pub struct TraceRecord {
    pub text: String,
    pub answer: Option<String>,
    /// Lowest group confidence (mean of all token confidences when shorter than a window).
    pub confidence: f32,
    pub warmup: bool,
    pub end: TraceEnd,
    /// Token confidences, one per generated token.
    pub confidences: Vec<f32>,
}

impl TraceRecord {
    fn votes(&self) -> bool {
        matches!(self.end, TraceEnd::Completed | TraceEnd::Cut) && self.answer.is_some()
    }
}

/// The result of a DeepConf run.
#[derive(Debug, Clone, PartialEq)]
pub struct DeepConfRun {
    /// Traces in the order they ended.
    pub traces: Vec<TraceRecord>,
    /// The stopping threshold set by the warm-up (`None`: no warm-up trace completed).
    pub threshold: Option<f32>,
    /// The winning answer and its share of the vote weight.
    pub vote: Option<(String, f32)>,
}

struct Running {
    seq: SeqId,
    warmup: bool,
    tokens: Vec<Token>,
    confidences: Vec<f32>,
    window_sum: f32,
    lowest: f32,
}

impl Running {
    fn new(seq: SeqId, warmup: bool) -> Self {
        Self {
            seq,
            warmup,
            tokens: Vec::new(),
            confidences: Vec::new(),
            window_sum: 0.0,
            lowest: f32::INFINITY,
        }
    }

    /// Adds a token confidence; returns the group confidence once a window is full.
    fn push(&mut self, confidence: f32, window: usize) -> Option<f32> {
        self.confidences.push(confidence);
        self.window_sum += confidence;
        let n = self.confidences.len();
        if n > window {
            self.window_sum -= self.confidences.get(n - 1 - window).copied().unwrap_or(0.0);
        }
        if n >= window {
            let group = self.window_sum / window as f32;
            self.lowest = self.lowest.min(group);
            Some(group)
        } else {
            None
        }
    }

    fn lowest_group(&self) -> f32 {
        if self.lowest.is_finite() {
            self.lowest
        } else if self.confidences.is_empty() {
            0.0
        } else {
            self.confidences.iter().sum::<f32>() / self.confidences.len() as f32
        }
    }

    fn finish(
        self,
        session: &mut dyn TokenSession,
        end: TraceEnd,
        kind: Option<AnswerKind>,
    ) -> Result<TraceRecord, BackendError> {
        session.release(self.seq);
        let text = session.detokenize(&self.tokens)?;
        let answer = match end {
            TraceEnd::Completed | TraceEnd::Cut => extract_as(&text, kind),
            TraceEnd::Stopped | TraceEnd::Cancelled => None,
        };
        Ok(TraceRecord {
            confidence: self.lowest_group(),
            text,
            answer,
            warmup: self.warmup,
            end,
            confidences: self.confidences,
        })
    }
}

/// The `p`-th percentile (0-100) of `values`, linearly interpolated.
pub fn percentile(values: &[f32], p: f32) -> Option<f32> {
    let mut v: Vec<f32> = values.iter().copied().filter(|x| x.is_finite()).collect();
    if v.is_empty() {
        return None;
    }
    v.sort_by(f32::total_cmp);
    let rank = (p / 100.0).clamp(0.0, 1.0) * (v.len() - 1) as f32;
    let lo = rank.floor() as usize;
    let hi = rank.ceil() as usize;
    let (a, b) = (v.get(lo)?, v.get(hi)?);
    Some(a + (b - a) * (rank - lo as f32))
}

/// Confidence-weighted vote of the traces that may vote and reach the threshold (all
/// voting traces when none reaches it): the winner, its share, and its best trace.
pub fn weighted_vote(
    traces: &[TraceRecord],
    threshold: Option<f32>,
) -> Option<(String, f32, usize)> {
    let voters: Vec<usize> = {
        let all: Vec<usize> = (0..traces.len()).filter(|i| traces[*i].votes()).collect();
        let kept: Vec<usize> = all
            .iter()
            .copied()
            .filter(|i| threshold.is_none_or(|t| traces[*i].confidence >= t))
            .collect();
        if kept.is_empty() { all } else { kept }
    };
    let mut groups: Vec<(&str, f32, usize)> = Vec::new();
    let mut total = 0.0;
    for i in voters {
        let t = &traces[i];
        let Some(answer) = t.answer.as_deref() else {
            continue;
        };
        let w = t.confidence.max(0.0);
        total += w;
        match groups.iter_mut().find(|g| g.0 == answer) {
            Some(g) => {
                g.1 += w;
                if t.confidence > traces[g.2].confidence {
                    g.2 = i;
                }
            }
            None => groups.push((answer, w, i)),
        }
    }
    let best = groups
        .iter()
        .enumerate()
        // Ties go to the answer seen first.
        .max_by(|(ia, a), (ib, b)| a.1.total_cmp(&b.1).then(ib.cmp(ia)))
        .map(|(_, g)| *g)?;
    let share = if total > 0.0 { best.1 / total } else { 0.0 };
    Some((best.0.to_string(), share, best.2))
}

/// Settings of one run, copied into the token job.
#[derive(Debug, Clone)]
struct Config {
    warmup: usize,
    max_traces: usize,
    parallel: usize,
    consensus: f32,
    window: usize,
    top_k: usize,
    percentile: f32,
    max_tokens: usize,
    sampler: SamplerConfig,
    seed: u64,
    kind: Option<AnswerKind>,
}

fn run_traces(
    session: &mut dyn TokenSession,
    c: &Config,
    limits: &TokenLimits,
) -> Result<DeepConfRun, BackendError> {
    let mut rng = Rng::new(c.seed);
    // Every trace's first token is drawn from the prompt's distribution.
    let prompt_logits = session.logits(0)?;
    let mut running: Vec<Running> = Vec::new();
    let mut traces: Vec<TraceRecord> = Vec::new();
    let mut started = 0;
    let mut warmup_done = c.warmup == 0;
    let mut threshold = None;
    let mut closed = false;
    loop {
        while !closed && running.len() < c.parallel && started < c.max_traces {
            let warmup = started < c.warmup;
            if !warmup && !warmup_done {
                break;
            }
            running.push(Running::new(session.fork(0)?, warmup));
            started += 1;
        }
        if running.is_empty() {
            break;
        }
        if limits.exhausted(session) {
            for r in running.drain(..) {
                traces.push(r.finish(session, TraceEnd::Cut, c.kind)?);
            }
            break;
        }
        let mut batch = Vec::new();
        let mut ended: Vec<(usize, TraceEnd)> = Vec::new();
        for (i, r) in running.iter_mut().enumerate() {
            if r.tokens.len() >= c.max_tokens || session.remaining(r.seq) == 0 {
                ended.push((i, TraceEnd::Completed));
                continue;
            }
            let own;
            let logits: &[f32] = if r.tokens.is_empty() {
                &prompt_logits
            } else {
                own = session.logits(r.seq)?;
                &own
            };
            let next = sample(logits, &c.sampler, &mut rng);
            let Some(next) = next.filter(|t| !session.is_end(*t)) else {
                ended.push((i, TraceEnd::Completed));
                continue;
            };
            let group = r.push(token_confidence(logits, c.top_k), c.window);
            if let (false, Some(t), Some(g)) = (r.warmup, threshold, group) {
                if g < t {
                    ended.push((i, TraceEnd::Stopped));
                    continue;
                }
            }
            r.tokens.push(next);
            batch.push((r.seq, next));
        }
        if !batch.is_empty() {
            session.append_batch(&batch)?;
        }
        for (i, end) in ended.into_iter().rev() {
            let r = running.remove(i);
            traces.push(r.finish(session, end, c.kind)?);
        }
        if !warmup_done && started >= c.warmup && running.iter().all(|r| !r.warmup) {
            warmup_done = true;
            let confidences: Vec<f32> = traces
                .iter()
                .filter(|t| t.warmup && t.end == TraceEnd::Completed)
                .map(|t| t.confidence)
                .collect();
            threshold = percentile(&confidences, c.percentile);
            tracing::debug!(?threshold, "deepconf warm-up threshold");
        }
        if warmup_done && !closed {
            if let Some((answer, share, _)) = weighted_vote(&traces, threshold) {
                if share >= c.consensus {
                    tracing::debug!(answer, share, "deepconf consensus");
                    closed = true;
                    for r in running.drain(..) {
                        traces.push(r.finish(session, TraceEnd::Cancelled, c.kind)?);
                    }
                }
            }
        }
    }
    let vote = weighted_vote(&traces, threshold).map(|(a, s, _)| (a, s));
    Ok(DeepConfRun {
        traces,
        threshold,
        vote,
    })
}

/// The text returned for a run: the most confident trace of the winning answer, else the
/// most confident trace that ran to its end, else the most confident of all.
fn chosen_text(run: &DeepConfRun) -> String {
    if let Some((_, _, i)) = weighted_vote(&run.traces, run.threshold) {
        if let Some(t) = run.traces.get(i) {
            return t.text.clone();
        }
    }
    let most_confident = |filter: &dyn Fn(&TraceRecord) -> bool| {
        run.traces
            .iter()
            .filter(|t| filter(t))
            .max_by(|a, b| a.confidence.total_cmp(&b.confidence))
            .map(|t| t.text.clone())
    };
    most_confident(&|t| matches!(t.end, TraceEnd::Completed | TraceEnd::Cut))
        .or_else(|| most_confident(&|_| true))
        .unwrap_or_default()
}

impl Approach for DeepConf {
    const SLUG: &'static str = SLUG;
    const DESCRIPTION: &'static str = "DeepConf online: forked traces decoded in parallel, warm-up sets a \
         confidence threshold, weak traces stop early, confidence-weighted \
         vote, stop at consensus (defaults scaled down for small models)";
    type Params = Params;

    fn from_params(params: Params) -> Result<Self, SpecError> {
        Self::new(params)
    }
}

#[async_trait]
impl Strategy for DeepConf {
    fn slug(&self) -> &str {
        SLUG
    }

    async fn run(&self, ctx: &Ctx, request: &StrategyRequest) -> Result<Answer, StrategyError> {
        let p = &self.params;
        let config = Config {
            warmup: p.warmup_traces.min(p.max_traces) as usize,
            max_traces: p.max_traces as usize,
            parallel: p.parallel as usize,
            consensus: p.consensus,
            window: p.window as usize,
            top_k: p.top_k as usize,
            percentile: p.threshold_percentile,
            max_tokens: max_new_tokens(p.max_tokens, request.sampling.max_tokens) as usize,
            sampler: sampler_of(p),
            seed: run_seed(p.seed, request.sampling.seed),
            kind: answer_kind(request.query()?, p.answer_kind),
        };
        let chat = request.chat(request.messages.clone(), &Sampling::default());
        let run = ctx
            .token_job("deepconf traces", chat, move |session, limits| {
                let run = run_traces(session, &config, limits)?;
                let texts = run.traces.iter().map(|t| t.text.clone()).collect();
                Ok((run, texts))
            })
            .await?;
        tracing::debug!(
            traces = run.traces.len(),
            stopped = run
                .traces
                .iter()
                .filter(|t| t.end == TraceEnd::Stopped)
                .count(),
            threshold = ?run.threshold,
            vote = ?run.vote,
            "deepconf run"
        );
        let text = chosen_text(&run);
        let candidates = run
            .traces
            .into_iter()
            .filter(|t| matches!(t.end, TraceEnd::Completed | TraceEnd::Cut))
            .map(|t| t.text)
            .collect();
        Ok(Answer::one(text).with_candidates(candidates))
    }
}

#[cfg(test)]
mod tests {
    use std::sync::Arc;

    use super::*;
    use crate::mock::MockBackend;
    use crate::mock_tokens::{MockTokenBackend, ScriptedSession, logits_with};
    use crate::strategy::{Budget, run};

    // 0 <eos>, 1 " sure", 2 " unsure", 3 " yes", 4 " 7", 5 " 8", 6..16 fillers.
    const N: usize = 16;

    fn vocab() -> Vec<String> {
        let mut v: Vec<String> = ["<eos>", " sure", " unsure", " yes", " 7", " 8"]
            .iter()
            .map(|s| s.to_string())
            .collect();
        v.extend((0..10).map(|i| format!(" f{i}")));
        v
    }

    /// A coin flip between " sure" and " unsure". A sure trace says " yes" six times with
    /// peaked logits, then " 7". An unsure trace rambles over ten equally likely fillers
    /// for twenty tokens, then " 8".
    fn script(t: &[Token]) -> Vec<f32> {
        let peaked = |tok: Token| logits_with(N, 0.0, &[(tok, 20.0)]);
        match t.first() {
            None => logits_with(N, -30.0, &[(1, 0.0), (2, 0.0)]),
            Some(1) if t.len() < 7 => peaked(3),
            Some(1) if t.len() == 7 => peaked(4),
            Some(2) if t.len() < 21 => {
                let mut l = vec![-30.0; N];
                for x in l.iter_mut().skip(6) {
                    *x = 0.0;
                }
                l
            }
            Some(2) if t.len() == 21 => peaked(5),
            _ => peaked(0),
        }
    }

    fn session() -> ScriptedSession {
        let v = vocab();
        ScriptedSession::new(
            v.iter().map(|s| s.as_bytes().to_vec()).collect(),
            vec![0],
            Arc::new(script),
            2,
            4096,
        )
    }

    fn config(seed: u64) -> Config {
        Config {
            warmup: 4,
            max_traces: 12,
            parallel: 4,
            consensus: 0.95,
            window: 4,
            top_k: 5,
            percentile: 50.0,
            max_tokens: 64,
            sampler: SamplerConfig {
                temperature: 1.0,
                top_p: 1.0,
                ..SamplerConfig::greedy()
            },
            seed,
            kind: None,
        }
    }

    #[test]
    fn window_percentile_and_vote_arithmetic() {
        let mut r = Running::new(1, false);
        assert_eq!(r.push(4.0, 2), None);
        assert_eq!(r.push(2.0, 2), Some(3.0));
        assert_eq!(r.push(6.0, 2), Some(4.0));
        assert_eq!(r.lowest_group(), 3.0);
        let short = Running {
            confidences: vec![1.0, 2.0],
            ..Running::new(2, true)
        };
        assert_eq!(short.lowest_group(), 1.5);

        assert_eq!(percentile(&[1.0, 3.0, 2.0, 4.0], 50.0), Some(2.5));
        assert_eq!(percentile(&[1.0, 3.0, 2.0, 4.0], 0.0), Some(1.0));
        assert_eq!(percentile(&[5.0], 90.0), Some(5.0));
        assert_eq!(percentile(&[], 10.0), None);

        let rec = |answer: &str, confidence: f32, end: TraceEnd| TraceRecord {
            text: format!("{answer}/{confidence}"),
            answer: Some(answer.into()),
            confidence,
            warmup: false,
            end,
            confidences: Vec::new(),
        };
        let traces = vec![
            rec("7", 5.0, TraceEnd::Completed),
            rec("8", 2.0, TraceEnd::Completed),
            rec("8", 2.5, TraceEnd::Completed),
            rec("9", 50.0, TraceEnd::Stopped),
        ];
        // Weighted: 7 has 5.0, 8 has 4.5; the stopped trace does not vote.
        let (w, share, best) = weighted_vote(&traces, None).unwrap();
        assert_eq!((w.as_str(), best), ("7", 0));
        assert!((share - 5.0 / 9.5).abs() < 1e-6);
        // With a threshold of 2.2 the 2.0 trace is filtered out.
        let (w, _, _) = weighted_vote(&traces, Some(2.2)).unwrap();
        assert_eq!(w, "7");
        let (w, share, best) = weighted_vote(&traces[1..], Some(2.2)).unwrap();
        assert_eq!((w.as_str(), best, share), ("8", 1, 1.0));
    }

    #[test]
    fn low_confidence_online_traces_stop_early() {
        // The first seed whose warm-up has at least two sure traces and one unsure one,
        // so that the median threshold lies between the two kinds.
        let (s, run) = (0..50)
            .map(|seed| {
                let mut s = session();
                // No consensus stop: the online phase must run.
                let c = Config {
                    consensus: 1.01,
                    ..config(seed)
                };
                let run = run_traces(&mut s, &c, &TokenLimits::none()).unwrap();
                (s, run)
            })
            .find(|(_, run)| {
                let warm = |a: &str| {
                    run.traces
                        .iter()
                        .filter(|t| t.warmup && t.answer.as_deref() == Some(a))
                        .count()
                };
                warm("7") >= 2 && warm("8") >= 1
            })
            .unwrap();
        let threshold = run.threshold.unwrap();
        let warm: Vec<&TraceRecord> = run.traces.iter().filter(|t| t.warmup).collect();
        assert_eq!(warm.len(), 4);
        assert!(warm.iter().all(|t| t.end == TraceEnd::Completed));
        let warm_conf: Vec<f32> = warm.iter().map(|t| t.confidence).collect();
        assert_eq!(percentile(&warm_conf, 50.0), Some(threshold));
        for t in run.traces.iter().filter(|t| !t.warmup) {
            match t.end {
                // A completed online trace never had a full window below the threshold.
                TraceEnd::Completed => assert!(t.confidence >= threshold),
                // A stopped one ends on its first full window below it, without an answer.
                TraceEnd::Stopped => {
                    let n = t.confidences.len();
                    let last: f32 = t.confidences[n - 4..].iter().sum::<f32>() / 4.0;
                    assert!(last < threshold);
                    assert!(t.answer.is_none());
                    assert!(n < 22, "stopped after the whole trace: {n}");
                }
                TraceEnd::Cancelled => {}
                TraceEnd::Cut => panic!("no budget was set"),
            }
        }
        // Every online unsure trace was stopped; sure ones completed.
        // The threshold lies above the unsure traces' confidence (about ln 10).
        assert!(threshold > 3.0, "{threshold}");
        for t in run.traces.iter().filter(|t| !t.warmup) {
            if t.end == TraceEnd::Completed {
                assert_eq!(t.answer.as_deref(), Some("7"));
            }
        }
        assert!(run.traces.iter().any(|t| t.end == TraceEnd::Stopped));
        // Sure traces carry far more weight: 7 wins.
        assert_eq!(run.vote.as_ref().map(|v| v.0.as_str()), Some("7"));
        let stats = s.stats();
        assert!(stats.batch_sizes.iter().any(|b| *b > 1));
        assert_eq!(stats.single_appends, 0);
        assert_eq!(stats.forks as usize, run.traces.len());
    }

    #[tokio::test]
    async fn consensus_after_warmup_stops_sampling() {
        // Greedy: every trace is the same sure path, so the warm-up already agrees.
        let b = Arc::new(MockTokenBackend::new(
            &vocab().iter().map(String::as_str).collect::<Vec<_>>(),
            &[0],
            |t| match t.first() {
                None => logits_with(N, -30.0, &[(1, 1.0), (2, 0.0)]),
                _ => script(t),
            },
        ));
        let strategy = DeepConf::new(Params {
            window: 4,
            temperature: 0.0,
            ..Params::default()
        })
        .unwrap();
        let out = run(
            &strategy,
            b.clone(),
            &StrategyRequest::user("q"),
            Budget::default(),
        )
        .await
        .unwrap();
        assert_eq!(out.answer, " sure yes yes yes yes yes yes 7");
        assert_eq!(out.candidates.len(), 4);
        let s = b.last_session().unwrap();
        // Four warm-up traces, all forked from the one prompt, decoded four at a time.
        assert_eq!(s.forks, 4);
        assert_eq!(s.prompt_tokens, 1);
        assert!(s.batch_sizes.iter().all(|b| *b == 4));
        assert_eq!(out.usage.calls, 1);
        assert_eq!(out.usage.completion_tokens, 32);
    }

    #[tokio::test]
    async fn without_consensus_it_samples_up_to_max_traces() {
        let v = vocab();
        let b = Arc::new(MockTokenBackend::new(
            &v.iter().map(String::as_str).collect::<Vec<_>>(),
            &[0],
            script,
        ));
        let strategy = DeepConf::new(Params {
            window: 4,
            max_traces: 8,
            // Never stop early: the threshold is the lowest warm-up confidence. With seed 1
            // the warm-up draws both answers, so a consensus of 1.0 is never reached.
            threshold_percentile: 0.0,
            consensus: 1.0,
            temperature: 1.0,
            top_p: 1.0,
            seed: Some(1),
            ..Params::default()
        })
        .unwrap();
        let out = run(
            &strategy,
            b.clone(),
            &StrategyRequest::user("q"),
            Budget::default(),
        )
        .await
        .unwrap();
        let s = b.last_session().unwrap();
        assert_eq!(s.forks, 8);
        assert_eq!(out.candidates.len(), 8);
        assert!(out.answer.ends_with(" 7"), "{}", out.answer);
    }

    #[tokio::test]
    async fn a_token_budget_cuts_the_traces() {
        let v = vocab();
        let b = Arc::new(MockTokenBackend::new(
            &v.iter().map(String::as_str).collect::<Vec<_>>(),
            &[0],
            script,
        ));
        let budget = Budget {
            max_total_tokens: Some(21),
            max_duration: None,
        };
        let strategy = DeepConf::new(Params {
            window: 4,
            ..Params::default()
        })
        .unwrap();
        let out = run(&strategy, b, &StrategyRequest::user("q"), budget)
            .await
            .unwrap();
        // One prompt token + 20 generated: four traces of five tokens each.
        assert_eq!(out.usage.total_tokens(), 21);
        assert_eq!(out.candidates.len(), 4);
    }

    #[tokio::test]
    async fn needs_token_control() {
        let err = run(
            &DeepConf::new(Params::default()).unwrap(),
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
        let bad = |p: Params| DeepConf::new(p).is_err();
        assert!(bad(Params {
            consensus: 0.0,
            ..Params::default()
        }));
        assert!(bad(Params {
            threshold_percentile: 101.0,
            ..Params::default()
        }));
        assert!(bad(Params {
            window: 0,
            ..Params::default()
        }));
    }
}
