//! Record once, aggregate many: new aggregation rules scored on the samples an
//! evaluation already recorded, with no new generation.
//!
//! A voting approach (`self_consistency`, `majority_voting`) records every sample it
//! drew in `results.jsonl` ([`ItemRecord::samples`]). [`rescore`] applies rules written
//! like approach specs to those samples:
//!
//! - `vote`: the plain majority vote (what the approach did);
//! - `vote(k=4)`: the vote of the first 4 samples only (what `k=4` would have scored);
//! - `vote(weight=lowest_group)`: votes weighted by confidence (`mean`, `lowest_group`,
//!   `tail`), `vote(keep=0.5)`: only the most confident half votes;
//! - `vote(batch=2,stop_at=0.95)`: adaptive sampling, stopping once the leader cannot
//!   reasonably be overtaken.
//!
//! Each rule becomes a row `APPROACH / RULE` in `rescore.md`, `rescore.json` and
//! `rescore.csv` beside the evaluation's own summary, compared with the same reference
//! (greedy `none` by default) on the same questions. Prompt tokens are counted once per
//! request the rule would have made; completion tokens are those of the samples used;
//! wall time is the source run's, scaled by the share of its completion tokens used
//! (an estimate).

use std::path::Path;

use optillm_core::samples::VoteRule;
use optillm_core::spec::{self, Spec};
use serde::Deserialize;

use crate::dataset::LoadedDataset;
use crate::error::{BenchError, Result};
use crate::eval::{EvalOptions, EvalSummary, ItemRecord, Recorded, summarize};
use crate::score::score_answer;

pub const RESCORE_JSON: &str = "rescore.json";
pub const RESCORE_CSV: &str = "rescore.csv";
pub const RESCORE_MD: &str = "rescore.md";

/// A rule as written: `vote(k=.., weight=.., keep=.., batch=.., stop_at=..)`.
#[derive(Debug, Clone, PartialEq)]
pub struct Rule {
    /// The rule as given, canonical (the row label's second half).
    pub label: String,
    /// Use only the first `k` samples (`None`: all).
    pub k: Option<usize>,
    pub vote: VoteRule,
}

#[derive(Deserialize)]
#[serde(default, deny_unknown_fields)]
struct RuleParams {
    k: Option<usize>,
    weight: optillm_core::samples::Weight,
    keep: f32,
    batch: u32,
    stop_at: f32,
}

impl Default for RuleParams {
    fn default() -> Self {
        let v = VoteRule::default();
        Self {
            k: None,
            weight: v.weight,
            keep: v.keep,
            batch: v.batch,
            stop_at: v.stop_at,
        }
    }
}

impl Rule {
    pub fn parse(text: &str) -> Result<Self> {
        let bad = |message: String| {
            BenchError::InvalidArgument(format!("bad rescoring rule `{text}`: {message}"))
        };
        let parsed =
            spec::parse_with(text, |slug| slug == "vote").map_err(|e| bad(e.to_string()))?;
        let label = parsed.to_string();
        let Spec::Stage { slug, params } = parsed else {
            return Err(bad("expected one `vote(...)`".into()));
        };
        if slug != "vote" {
            return Err(bad(format!("unknown rule `{slug}` (the rule is `vote`)")));
        }
        let p: RuleParams = serde_json::from_value(serde_json::Value::Object(params))
            .map_err(|e| bad(e.to_string()))?;
        if p.k == Some(0) {
            return Err(bad("k must be at least 1".into()));
        }
        let vote = VoteRule {
            weight: p.weight,
            keep: p.keep,
            batch: p.batch,
            stop_at: p.stop_at,
        };
        vote.check().map_err(bad)?;
        Ok(Self {
            label,
            k: p.k,
            vote,
        })
    }

    /// The record this rule would have produced from `source`'s samples (`None` when
    /// the source has none).
    pub fn apply(&self, source: &ItemRecord, approach: &str) -> Option<ItemRecord> {
        if source.samples.is_empty() {
            return None;
        }
        let decision = self.vote.decide(&source.samples, self.k);
        let used = source.samples.get(..decision.used).unwrap_or(&[]);
        let chosen = decision
            .vote
            .as_ref()
            .and_then(|v| v.members.first())
            .and_then(|&i| used.get(i));
        let output = chosen.map(|s| s.text.clone()).unwrap_or_default();
        // The answer the vote counted, as its sample recorded it (a program's result is
        // not in the program's text); a sample without one never wins a vote.
        let s = score_answer(
            chosen.and_then(|s| s.answer.clone()),
            &source.gold,
            source.kind,
        );
        let completion: u64 = used.iter().map(|s| u64::from(s.completion_tokens)).sum();
        let all: u64 = source
            .samples
            .iter()
            .map(|s| u64::from(s.completion_tokens))
            .sum();
        let per_call = source.prompt_tokens / u64::from(source.calls.max(1));
        Some(ItemRecord {
            approach: approach.to_string(),
            item: source.item.clone(),
            gold: source.gold.clone(),
            kind: source.kind,
            output,
            extracted: s.extracted,
            correct: s.correct,
            failure: s.failure,
            calls: decision.batches as u32,
            prompt_tokens: per_call * decision.batches as u64,
            completion_tokens: completion,
            wall_ms: if all == 0 {
                source.wall_ms
            } else {
                source.wall_ms * completion as f64 / all as f64
            },
            seed: source.seed,
            budget_exhausted: source.budget_exhausted,
            vote: decision.vote.map(|v| v.summary()),
            error: source.error.clone(),
            samples: Vec::new(),
        })
    }
}

/// Scores `rules` on the recorded samples of `approaches` in `out_dir` (an evaluation
/// of `dataset` with the same `options` selection), writes the `rescore.*` files and
/// returns their summary: every approach's own row, each followed by one row per rule
/// when it recorded samples.
pub fn rescore(
    dataset: &LoadedDataset,
    approaches: &[String],
    rules: &[String],
    options: &EvalOptions,
    out_dir: &Path,
) -> Result<EvalSummary> {
    let rules: Vec<Rule> = rules
        .iter()
        .map(|r| Rule::parse(r))
        .collect::<Result<_>>()?;
    if rules.is_empty() {
        return Err(BenchError::InvalidArgument(
            "at least one rescoring rule is needed, e.g. `vote(weight=lowest_group)`".into(),
        ));
    }
    let Recorded {
        info,
        keys,
        baseline,
        items,
        mut records,
    } = Recorded::read(dataset, approaches, options, out_dir)?;
    let mut rows: Vec<String> = Vec::new();
    let mut derived: Vec<ItemRecord> = Vec::new();
    for key in &keys {
        rows.push(key.clone());
        let sources: Vec<&ItemRecord> = records.iter().filter(|r| r.approach == *key).collect();
        if !sources.iter().any(|r| !r.samples.is_empty()) {
            continue;
        }
        for rule in &rules {
            let label = format!("{key} / {}", rule.label);
            derived.extend(sources.iter().filter_map(|r| rule.apply(r, &label)));
            rows.push(label);
        }
    }
    records.extend(derived);
    let summary = summarize(&info, &items, &rows, &records, baseline.as_deref());
    let json_path = out_dir.join(RESCORE_JSON);
    let json = serde_json::to_string_pretty(&summary).map_err(|source| BenchError::Json {
        path: json_path.clone(),
        line: 0,
        source,
    })?;
    std::fs::write(&json_path, json + "\n").map_err(|e| BenchError::io(&json_path, e))?;
    let csv_path = out_dir.join(RESCORE_CSV);
    std::fs::write(&csv_path, summary.to_csv()).map_err(|e| BenchError::io(&csv_path, e))?;
    let md_path = out_dir.join(RESCORE_MD);
    std::fs::write(&md_path, summary.to_markdown()).map_err(|e| BenchError::io(&md_path, e))?;
    Ok(summary)
}

#[cfg(test)]
mod tests {
    use optillm_core::extract::AnswerKind;
    use optillm_core::samples::{Confidence, Sample, Weight};

    use super::*;

    fn s(answer: &str, conf: f32) -> Sample {
        Sample {
            text: format!("so #### {answer}"),
            answer: Some(answer.into()),
            completion_tokens: 10,
            finish_reason: None,
            confidence: Some(Confidence {
                mean_logprob: -0.3,
                mean: conf,
                lowest_group: conf,
                tail: conf,
            }),
        }
    }

    fn record(samples: Vec<Sample>) -> ItemRecord {
        ItemRecord {
            approach: "majority_voting".into(),
            item: "q1".into(),
            gold: "8".into(),
            kind: AnswerKind::Number,
            output: String::new(),
            extracted: None,
            correct: false,
            calls: 1,
            prompt_tokens: 50,
            completion_tokens: 60,
            wall_ms: 600.0,
            seed: 1,
            budget_exhausted: false,
            vote: None,
            error: None,
            failure: None,
            samples,
        }
    }

    #[test]
    fn the_recorded_answer_is_scored_not_the_text() {
        // Programs: the text is code, the recorded answer is what it computed.
        let program = |result: &str| Sample {
            text: "def solution():\n    apples = 4\n    return apples * 2".into(),
            answer: Some(result.into()),
            ..s(result, 1.0)
        };
        let src = record(vec![program("8"), program("8"), program("6")]);
        let out = Rule::parse("vote").unwrap().apply(&src, "x").unwrap();
        assert_eq!(out.extracted.as_deref(), Some("8"));
        assert!(out.correct, "{out:?}");
        // Samples with no recorded answer do not vote: nothing is chosen, nothing right.
        let unread = Sample {
            answer: None,
            ..s("8", 1.0)
        };
        let out = Rule::parse("vote")
            .unwrap()
            .apply(&record(vec![unread]), "x");
        assert!(out.is_some_and(|r| !r.correct && r.extracted.is_none()));
    }

    #[test]
    fn rules_parse_and_reject_what_they_cannot_do() {
        let r = Rule::parse("vote(weight=lowest_group,keep=0.5)").unwrap();
        assert_eq!(r.vote.weight, Weight::LowestGroup);
        assert_eq!(r.k, None);
        assert!(Rule::parse("vote(k=0)").is_err());
        assert!(Rule::parse("vote(keep=2)").is_err());
        assert!(Rule::parse("vote(colour=red)").is_err());
        assert!(Rule::parse("moa").is_err());
        assert!(Rule::parse("vote|vote").is_err());
    }

    #[test]
    fn a_rule_rescores_the_recorded_samples() {
        // Plain majority: 7 (3 votes, unsure) beats 8 (2 votes, sure).
        let src = record(vec![
            s("7", 1.0),
            s("8", 6.0),
            s("7", 1.0),
            s("8", 6.0),
            s("7", 1.0),
            s("9", 0.5),
        ]);
        let plain = Rule::parse("vote").unwrap().apply(&src, "x").unwrap();
        assert!(!plain.correct);
        assert_eq!(plain.extracted.as_deref(), Some("7"));
        assert_eq!((plain.prompt_tokens, plain.completion_tokens), (50, 60));
        let weighted = Rule::parse("vote(weight=mean)")
            .unwrap()
            .apply(&src, "x")
            .unwrap();
        assert!(weighted.correct, "{weighted:?}");
        // The first two samples only: a 7-8 tie goes to the first seen.
        let k2 = Rule::parse("vote(k=2)").unwrap().apply(&src, "x").unwrap();
        assert_eq!(
            (k2.extracted.as_deref(), k2.completion_tokens),
            (Some("7"), 20)
        );
        assert!((k2.wall_ms - 200.0).abs() < 1e-9);
        // Adaptive with batches of 2 never agrees enough to stop: three requests.
        let adaptive = Rule::parse("vote(batch=2)")
            .unwrap()
            .apply(&src, "x")
            .unwrap();
        assert_eq!((adaptive.calls, adaptive.prompt_tokens), (3, 150));
        // No samples, nothing to rescore.
        assert!(
            Rule::parse("vote")
                .unwrap()
                .apply(&record(vec![]), "x")
                .is_none()
        );
    }
}
