//! `cot_decoding`: CoT-decoding (Wang & Zhou 2024, "Chain-of-Thought Reasoning Without
//! Prompting").
//!
//! The `k` most likely first tokens each start a branch. Every branch is forked from the
//! one evaluated prompt (the reference re-evaluates the prompt per branch) and all
//! branches are decoded greedily together, one batch per step. A path is scored by the
//! mean margin p(top1) - p(top2) over the tokens of its final answer (all its tokens when
//! no answer can be extracted); the best path wins, or with `aggregate` the answer whose
//! paths have the highest summed score.

use async_trait::async_trait;
use serde::{Deserialize, Serialize};

use super::Approach;
use super::read_answer::answer_kind;
use super::sampler::{max_new_tokens, top_margin};
use crate::error::BackendError;
use crate::extract::{AnswerKind, extract_as};
use crate::spec::SpecError;
use crate::strategy::{Answer, Ctx, Strategy, StrategyError, StrategyRequest, TokenLimits};
use crate::token::{SeqId, Token, TokenSession, softmax, top_k};
use crate::types::Sampling;

pub const SLUG: &str = "cot_decoding";

/// The parameters of `cot_decoding`; a field a spec leaves out takes its default here
/// (`optillm approaches` lists them).
#[derive(Debug, Clone, Serialize, Deserialize)]
#[serde(default, deny_unknown_fields)]
pub struct Params {
    /// Branches: the `k` most likely first tokens.
    pub k: u32,
    /// Most tokens generated per branch.
    pub max_tokens: u32,
    /// Sum the scores of paths with the same answer and pick the best answer.
    pub aggregate: bool,
    /// The kind of answer to extract for the answer span (`None`: any kind).
    pub answer_kind: Option<AnswerKind>,
}

impl Default for Params {
    fn default() -> Self {
        Self {
            k: 10,
            max_tokens: 256,
            aggregate: false,
            answer_kind: None,
        }
    }
}

/// The `cot_decoding` strategy (the module documentation describes it): built from typed
/// [`Params`] with `new`, or by name through [`crate::strategies::build`].
#[derive(Debug, Clone)]
pub struct CotDecoding {
    params: Params,
}

impl CotDecoding {
    pub fn new(params: Params) -> Result<Self, SpecError> {
        let bad = |message: &str| SpecError::BadParameter {
            approach: SLUG.into(),
            message: message.into(),
        };
        if params.k == 0 {
            return Err(bad("k must be at least 1"));
        }
        if params.max_tokens == 0 {
            return Err(bad("max_tokens must be at least 1"));
        }
        Ok(Self { params })
    }
}

/// One decoded branch.
#[derive(Debug, Clone, PartialEq)]
pub struct Path {
    /// Generated tokens, the branching first token included (no end token).
    pub tokens: Vec<Token>,
    /// The margin at each token; `None` for the forced first token.
    pub margins: Vec<Option<f32>>,
    pub text: String,
    /// The extracted final answer (canonical), if any.
    pub answer: Option<String>,
    /// Mean margin over the answer tokens.
    pub score: f32,
}

struct Branch {
    seq: SeqId,
    tokens: Vec<Token>,
    margins: Vec<Option<f32>>,
    done: bool,
}

/// Branches on the `k` most likely first tokens and decodes every branch greedily,
/// all branches in one batch per step.
fn decode_branches(
    session: &mut dyn TokenSession,
    k: usize,
    max_tokens: usize,
    limits: &TokenLimits,
) -> Result<Vec<Branch>, BackendError> {
    let probs = softmax(&session.logits(0)?);
    // A few extra candidates so that end tokens among the top k can be skipped.
    let firsts: Vec<Token> = top_k(&probs, k + 8)
        .into_iter()
        .map(|(t, _)| t)
        .filter(|t| !session.is_end(*t))
        .take(k)
        .collect();
    let mut branches = Vec::with_capacity(firsts.len());
    for t in firsts {
        let seq = session.fork(0)?;
        branches.push(Branch {
            seq,
            tokens: vec![t],
            margins: vec![None],
            done: false,
        });
    }
    let batch: Vec<(SeqId, Token)> = branches.iter().map(|b| (b.seq, b.tokens[0])).collect();
    if !batch.is_empty() {
        session.append_batch(&batch)?;
    }
    loop {
        if limits.exhausted(session) {
            break;
        }
        let mut batch = Vec::new();
        for b in branches.iter_mut().filter(|b| !b.done) {
            if b.tokens.len() >= max_tokens || session.remaining(b.seq) == 0 {
                b.done = true;
                continue;
            }
            let Some((t, margin)) = top_margin(&session.logits(b.seq)?) else {
                b.done = true;
                continue;
            };
            if session.is_end(t) {
                b.done = true;
                continue;
            }
            b.tokens.push(t);
            b.margins.push(Some(margin));
            batch.push((b.seq, t));
        }
        if batch.is_empty() {
            break;
        }
        session.append_batch(&batch)?;
    }
    for b in &branches {
        session.release(b.seq);
    }
    Ok(branches)
}

/// The token range `[start, end)` that carries `answer`: from the last token where the
/// remaining text still gives `answer`, to the first token after which it is complete.
/// `None` when no token range reproduces the answer.
fn answer_span(
    session: &dyn TokenSession,
    tokens: &[Token],
    answer: &str,
    kind: Option<AnswerKind>,
) -> Result<Option<(usize, usize)>, BackendError> {
    let gives_answer = |range: &[Token]| -> Result<bool, BackendError> {
        let text = session.detokenize(range)?;
        Ok(extract_as(&text, kind).as_deref() == Some(answer))
    };
    let mut start = None;
    for i in (0..tokens.len()).rev() {
        if gives_answer(tokens.get(i..).unwrap_or_default())? {
            start = Some(i);
            break;
        }
    }
    let Some(start) = start else {
        return Ok(None);
    };
    for end in start + 1..=tokens.len() {
        if gives_answer(tokens.get(start..end).unwrap_or_default())? {
            return Ok(Some((start, end)));
        }
    }
    Ok(Some((start, tokens.len())))
}

/// Mean of the known margins in `margins` (`None` when there is none).
fn mean_margin<'a>(margins: impl Iterator<Item = &'a Option<f32>>) -> Option<f32> {
    let known: Vec<f32> = margins.filter_map(|m| *m).collect();
    if known.is_empty() {
        None
    } else {
        Some(known.iter().sum::<f32>() / known.len() as f32)
    }
}

fn score_branch(
    session: &dyn TokenSession,
    branch: Branch,
    kind: Option<AnswerKind>,
) -> Result<Path, BackendError> {
    let text = session.detokenize(&branch.tokens)?;
    let answer = extract_as(&text, kind);
    let span = match &answer {
        Some(a) => answer_span(session, &branch.tokens, a, kind)?,
        None => None,
    };
    let over_answer = span.and_then(|(s, e)| mean_margin(branch.margins.get(s..e)?.iter()));
    let score = over_answer
        .or_else(|| mean_margin(branch.margins.iter()))
        .unwrap_or(0.0);
    Ok(Path {
        tokens: branch.tokens,
        margins: branch.margins,
        text,
        answer,
        score,
    })
}

/// The index of the chosen path: the best score, or with `aggregate` the best path of the
/// answer with the highest summed score (paths without an answer stand alone).
fn choose(paths: &[Path], aggregate: bool) -> Option<usize> {
    let best_of = |idx: &mut dyn Iterator<Item = usize>| {
        idx.max_by(|a, b| {
            paths[*a]
                .score
                .total_cmp(&paths[*b].score)
                // Ties go to the earlier (more likely first token) path.
                .then(b.cmp(a))
        })
    };
    if !aggregate {
        return best_of(&mut (0..paths.len()));
    }
    let mut groups: Vec<(Option<&str>, Vec<usize>, f32)> = Vec::new();
    for (i, p) in paths.iter().enumerate() {
        let key = p.answer.as_deref();
        match groups.iter_mut().find(|g| key.is_some() && g.0 == key) {
            Some(g) => {
                g.1.push(i);
                g.2 += p.score;
            }
            None => groups.push((key, vec![i], p.score)),
        }
    }
    let group = groups
        .iter()
        .enumerate()
        .max_by(|(ia, a), (ib, b)| a.2.total_cmp(&b.2).then(ib.cmp(ia)))
        .map(|(_, g)| g)?;
    best_of(&mut group.1.iter().copied())
}

impl Approach for CotDecoding {
    const SLUG: &'static str = SLUG;
    const DESCRIPTION: &'static str = "CoT decoding: branch on the top-k first tokens from one shared prompt, \
         decode greedily in one batch, pick the path most confident in its answer";
    type Params = Params;

    fn from_params(params: Params) -> Result<Self, SpecError> {
        Self::new(params)
    }
}

#[async_trait]
impl Strategy for CotDecoding {
    fn slug(&self) -> &str {
        SLUG
    }

    async fn run(&self, ctx: &Ctx, request: &StrategyRequest) -> Result<Answer, StrategyError> {
        let max_tokens = max_new_tokens(self.params.max_tokens, request.sampling.max_tokens);
        let k = self.params.k as usize;
        let kind = answer_kind(request.query()?, self.params.answer_kind);
        let chat = request.chat(request.messages.clone(), &Sampling::default());
        let paths = ctx
            .token_job("cot decoding branches", chat, move |session, limits| {
                let branches = decode_branches(session, k, max_tokens as usize, limits)?;
                let paths = branches
                    .into_iter()
                    .map(|b| score_branch(session, b, kind))
                    .collect::<Result<Vec<_>, _>>()?;
                let texts = paths.iter().map(|p| p.text.clone()).collect();
                Ok((paths, texts))
            })
            .await?;
        for (i, p) in paths.iter().enumerate() {
            tracing::debug!(branch = i, score = p.score, answer = ?p.answer, "cot decoding path");
        }
        let chosen = choose(&paths, self.params.aggregate)
            .and_then(|i| paths.get(i))
            .map(|p| p.text.clone())
            .unwrap_or_default();
        Ok(Answer::one(chosen).with_candidates(paths.into_iter().map(|p| p.text).collect()))
    }
}

#[cfg(test)]
mod tests {
    use std::sync::Arc;

    use super::*;
    use crate::mock::MockBackend;
    use crate::mock_tokens::{MockTokenBackend, logits_with};
    use crate::strategy::{Budget, run};

    // Vocabulary: 0 <eos>, 1 "Hm", 2 "Ok", 3 "Um", 4 " so", 5 " 7", 6 " 8", 7 " 9", 8 ".".
    const VOCAB: [&str; 9] = ["<eos>", "Hm", "Ok", "Um", " so", " 7", " 8", " 9", "."];

    /// First token: Hm > Ok > Um (all unsure). Each branch then says " so <n>." with the
    /// margin at the number set per branch: branch Hm is unsure of its answer (" 7"),
    /// Ok is sure (" 8"), Um fairly sure (" 8" too), while Hm is very sure of " so".
    fn script(toks: &[Token]) -> Vec<f32> {
        let l = |set: &[(Token, f32)]| logits_with(9, 0.0, set);
        match toks {
            [] => l(&[(1, 3.0), (2, 2.9), (3, 2.8), (0, 2.7)]),
            [1] => l(&[(4, 20.0)]),
            [2] | [3] => l(&[(4, 3.0)]),
            [1, 4] => l(&[(5, 2.0), (6, 1.9)]),
            [2, 4] => l(&[(6, 12.0)]),
            [3, 4] => l(&[(6, 6.0), (7, 5.0)]),
            [_, 4, _] => l(&[(8, 10.0)]),
            _ => l(&[(0, 10.0)]),
        }
    }

    fn backend() -> Arc<MockTokenBackend> {
        Arc::new(MockTokenBackend::new(&VOCAB, &[0], script))
    }

    fn strategy(k: u32, aggregate: bool) -> CotDecoding {
        CotDecoding::new(Params {
            k,
            aggregate,
            ..Params::default()
        })
        .unwrap()
    }

    #[tokio::test]
    async fn picks_the_path_most_confident_about_its_answer() {
        let b = backend();
        let out = run(
            &strategy(3, false),
            b.clone(),
            &StrategyRequest::user("what is it"),
            Budget::default(),
        )
        .await
        .unwrap();
        // Branch Hm is greedy-first and very sure of " so", but unsure of its answer.
        assert_eq!(out.answer, "Ok so 8.");
        assert_eq!(out.candidates, vec!["Hm so 7.", "Ok so 8.", "Um so 8."]);
        let s = b.last_session().unwrap();
        // One prompt evaluation shared by three forks, decoded in batches of three.
        assert_eq!(s.forks, 3);
        assert_eq!(s.prompt_tokens, 3);
        assert_eq!(s.single_appends, 0);
        assert_eq!(s.batch_sizes, vec![3, 3, 3, 3]);
        assert_eq!(s.released, 3);
        assert_eq!(out.usage.calls, 1);
        assert_eq!(out.usage.completion_tokens, 12);
        assert_eq!(out.trace[0].outputs.len(), 3);
    }

    #[test]
    fn scores_answer_tokens_not_the_whole_path() {
        let mut session = crate::mock_tokens::ScriptedSession::new(
            VOCAB.iter().map(|v| v.as_bytes().to_vec()).collect(),
            vec![0],
            Arc::new(script),
            1,
            100,
        );
        let branches = decode_branches(&mut session, 3, 50, &TokenLimits::none()).unwrap();
        let paths: Vec<Path> = branches
            .into_iter()
            .map(|br| score_branch(&session, br, None).unwrap())
            .collect();
        let a = &paths[0];
        assert_eq!(a.answer.as_deref(), Some("7"));
        // The answer " 7" is token 2; its margin alone is the score.
        let m7 = a.margins[2].unwrap();
        assert!((a.score - m7).abs() < 1e-6);
        let whole = mean_margin(a.margins.iter()).unwrap();
        assert!(whole > a.score + 0.3, "whole {whole} answer {}", a.score);
    }

    #[test]
    fn aggregation_sums_scores_of_equal_answers() {
        // Alone, the best single path answers 7; two weaker paths answering 8 outweigh it.
        let paths = vec![
            Path {
                tokens: vec![],
                margins: vec![],
                text: "7".into(),
                answer: Some("7".into()),
                score: 0.9,
            },
            Path {
                tokens: vec![],
                margins: vec![],
                text: "eight: 8".into(),
                answer: Some("8".into()),
                score: 0.5,
            },
            Path {
                tokens: vec![],
                margins: vec![],
                text: "8 it is".into(),
                answer: Some("8".into()),
                score: 0.6,
            },
        ];
        assert_eq!(choose(&paths, false), Some(0));
        assert_eq!(choose(&paths, true), Some(2));
        assert_eq!(choose(&[], true), None);
    }

    #[tokio::test]
    async fn falls_back_to_all_tokens_without_an_answer() {
        let b = Arc::new(MockTokenBackend::new(
            &["<eos>", "x", "y"],
            &[0],
            |t| match t.len() {
                0 => logits_with(3, 0.0, &[(1, 5.0), (2, 4.0)]),
                1 | 2 => logits_with(3, 0.0, &[(t[0], 5.0), (3 - t[0], 4.0)]),
                _ => logits_with(3, 0.0, &[(0, 9.0)]),
            },
        ));
        let out = run(
            &strategy(2, false),
            b,
            &StrategyRequest::user("q"),
            Budget::default(),
        )
        .await
        .unwrap();
        // Both paths have the same margins: the tie goes to the likelier first token.
        assert_eq!(out.answer, "xxx");
        assert_eq!(out.candidates, vec!["xxx", "yyy"]);
    }

    #[tokio::test]
    async fn max_tokens_cuts_every_branch() {
        let b = backend();
        let mut req = StrategyRequest::user("q");
        req.sampling.max_tokens = Some(2);
        let out = run(&strategy(2, false), b, &req, Budget::default())
            .await
            .unwrap();
        assert_eq!(out.candidates, vec!["Hm so", "Ok so"]);
    }

    #[tokio::test]
    async fn needs_token_control() {
        let err = run(
            &strategy(3, false),
            Arc::new(MockBackend::constant("x")),
            &StrategyRequest::user("q"),
            Budget::default(),
        )
        .await
        .unwrap_err();
        assert!(err.to_string().contains("token_control"), "{err}");
    }

    #[test]
    fn logit_strategies_are_registered_with_their_defaults() {
        use crate::strategies::{Params as Map, build, catalogue};
        for slug in [
            "cot_decoding",
            "entropy_decoding",
            "thinkdeeper",
            "autothink",
            "deepconf",
        ] {
            let info = catalogue().into_iter().find(|i| i.slug == slug).unwrap();
            assert!(!info.params.is_empty(), "{slug}");
            let strategy = build(slug, &info.params).unwrap();
            assert_eq!(strategy.slug(), slug);
            let mut bad = Map::new();
            bad.insert("no_such_param".into(), serde_json::json!(1));
            assert!(build(slug, &bad).is_err(), "{slug}");
        }
        let autothink = catalogue()
            .into_iter()
            .find(|i| i.slug == "autothink")
            .unwrap();
        assert!(autothink.description.contains("heuristic classifier"));
        let mut k = crate::strategies::Params::new();
        k.insert("k".into(), serde_json::json!(3));
        assert!(build("cot_decoding", &k).is_ok());
    }

    #[test]
    fn rejects_bad_params() {
        assert!(
            CotDecoding::new(Params {
                k: 0,
                ..Params::default()
            })
            .is_err()
        );
    }
}
