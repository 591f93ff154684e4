//! The evaluation runner: every approach on every sampled item, one
//! [`strategy::run`] each, recorded as it goes so that a
//! killed run resumes where it stopped.
//!
//! Files in the output directory:
//!
//! - `run.json`: what the results belong to (data set, model, seeds, sampling, budget);
//!   a later run into the same directory must match it;
//! - `results.jsonl`: one [`ItemRecord`] per (approach, item), appended and flushed
//!   after each run; on resume, recorded pairs are skipped and a truncated last line
//!   (a run killed mid-write) is dropped;
//! - `summary.json`, `summary.csv`, `summary.md`: per approach accuracy with its 95%
//!   Wilson interval, mean tokens and calls per question, wall time, and the paired
//!   comparison with the reference approach ([`PairedDiff`]: difference in accuracy on
//!   the questions both answered with Newcombe's 95% interval for paired proportions,
//!   the discordant counts b and c, McNemar's exact p-value); for multiple-choice sets
//!   also the baselines that need no model ([`no_model_baselines`]);
//! - `pareto.svg`: accuracy against mean tokens per question, Pareto front highlighted.
//!
//! Several processes (or machines) may share an evaluation: each runs one [`Shard`] of
//! the items into the same directory (records are appended one line per write), and a
//! last run without a shard, which finds everything recorded, writes the full summary.

use std::collections::{HashMap, HashSet};
use std::fs::{File, OpenOptions};
use std::io::{BufRead, BufReader, Write};
use std::path::{Path, PathBuf};
use std::sync::Arc;

use futures::StreamExt;
use optillm_core::extract::AnswerKind;
use optillm_core::samples::Sample;
use optillm_core::spec;
use optillm_core::strategies::build_spec;
use optillm_core::strategy::{self, Budget, Strategy, StrategyError, StrategyRequest};
use optillm_core::{Backend, BackendError, Sampling};
use serde::{Deserialize, Serialize};
use tracing::{info, warn};

use crate::baselines::{NoModelBaseline, no_model_baselines};
use crate::dataset::{Item, LoadedDataset, sample, splitmix64};
use crate::error::{BenchError, Result};
use crate::plot::{PlotPoint, pareto_front, write_svg};
use crate::score::{Accuracy, PairedDiff, answer_matches, score};

pub const RESULTS_FILE: &str = "results.jsonl";
pub const RUN_FILE: &str = "run.json";
pub const SUMMARY_JSON: &str = "summary.json";
pub const SUMMARY_CSV: &str = "summary.csv";
pub const SUMMARY_MD: &str = "summary.md";
pub const PLOT_FILE: &str = "pareto.svg";

/// How an evaluation samples items and calls the model.
#[derive(Debug, Clone, PartialEq)]
pub struct EvalOptions {
    /// Most items to evaluate (`None`: all).
    pub limit: Option<usize>,
    /// `false`: the first `limit` items; `true`: a random sample drawn with `seed`.
    pub shuffle: bool,
    /// The seed of the sample (when shuffling) and of every model call: each item gets
    /// its own sampling seed derived from this and its id, the same for every approach.
    pub seed: u64,
    /// The base sampling settings of every run (strategies layer their own on top).
    pub sampling: Sampling,
    /// Limits of each (approach, item) run.
    pub budget: Budget,
    /// Run only this share of the selected items (`None`: all of them).
    pub shard: Option<Shard>,
    /// Runs in flight at once (at least 1). The native backend decodes concurrent
    /// requests together, so more than one raises throughput; records are still written
    /// in order, and each run's wall time then includes the time it shared.
    pub concurrency: usize,
    /// The reference approach of the paired comparisons (a spec among the approaches).
    /// `None`: the first greedy `none` (`none(temperature=0)`, or `none` when the base
    /// sampling is greedy), else the first `none`, else no comparison.
    pub baseline: Option<String>,
}

/// Share `index` of `count` of the selected items: those whose position in the
/// selection is `index` modulo `count`.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct Shard {
    pub index: usize,
    pub count: usize,
}

impl Shard {
    /// Parses `I/N` (0 <= I < N).
    pub fn parse(s: &str) -> Result<Self> {
        let bad = || {
            BenchError::InvalidArgument(format!(
                "bad shard `{s}`: expected I/N with 0 <= I < N, e.g. 0/2"
            ))
        };
        let (i, n) = s.split_once('/').ok_or_else(bad)?;
        let index: usize = i.trim().parse().map_err(|_| bad())?;
        let count: usize = n.trim().parse().map_err(|_| bad())?;
        if index >= count {
            return Err(bad());
        }
        Ok(Self { index, count })
    }

    /// True when the item at `position` of the selection belongs to this shard.
    pub fn holds(&self, position: usize) -> bool {
        position % self.count == self.index
    }
}

impl Default for EvalOptions {
    fn default() -> Self {
        Self {
            limit: None,
            shuffle: false,
            seed: 0,
            sampling: Sampling::default().with_max_tokens(512),
            budget: Budget::default(),
            shard: None,
            concurrency: 1,
            baseline: None,
        }
    }
}

/// What `run.json` holds: the settings that make results comparable.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct RunInfo {
    pub dataset: String,
    pub model: String,
    pub seed: u64,
    pub shuffle: bool,
    pub sampling: Sampling,
    pub budget: Budget,
}

/// The outcome of one approach on one item: one line of `results.jsonl`.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct ItemRecord {
    /// The approach spec, canonical (as [`optillm_core::Spec`] prints it).
    pub approach: String,
    pub item: String,
    pub gold: String,
    pub kind: AnswerKind,
    /// The final answer text of the run ("" when it failed).
    pub output: String,
    pub extracted: Option<String>,
    pub correct: bool,
    pub calls: u32,
    pub prompt_tokens: u64,
    pub completion_tokens: u64,
    pub wall_ms: f64,
    /// The sampling seed of the run.
    pub seed: u32,
    #[serde(default)]
    pub budget_exhausted: bool,
    /// The vote that chose the answer, for approaches that vote (`18: 3, 17: 1, none: 1`).
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub vote: Option<String>,
    /// Why the run gave no answer (it counts as wrong).
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub error: Option<String>,
    /// Why the answer was judged wrong, where the judge says more than "not equal": a
    /// program's "no program", the last error line of its test run, or "timed out".
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub failure: Option<String>,
    /// Every sample a voting approach drew, with its answer and confidence, so other
    /// aggregation rules can be scored later without generating again
    /// ([`crate::rescore`]).
    #[serde(default, skip_serializing_if = "Vec::is_empty")]
    pub samples: Vec<Sample>,
}

impl ItemRecord {
    pub fn total_tokens(&self) -> u64 {
        self.prompt_tokens + self.completion_tokens
    }

    /// Whether the recorded answer is right by today's scoring: `extracted` against
    /// `gold` ([`answer_matches`]). Summaries count this rather than the `correct` stored
    /// when the question ran, so that recorded runs follow fixes to how answers are
    /// compared (clock times, ...) without being run again; the stored verdict stays
    /// in the record, and a summary counts the records judged otherwise today
    /// ([`ApproachSummary::rejudged`]).
    pub fn judged_correct(&self) -> bool {
        // A program's verdict comes from running its tests, not from a comparison that
        // a fix could change: the stored one stands.
        if self.kind == AnswerKind::Code {
            return self.correct;
        }
        self.extracted
            .as_deref()
            .is_some_and(|answer| answer_matches(answer, &self.gold, self.kind))
    }
}

/// The results of one approach.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct ApproachSummary {
    pub approach: String,
    /// Items with a record.
    pub items: usize,
    pub correct: usize,
    pub accuracy: f64,
    pub ci_low: f64,
    pub ci_high: f64,
    /// Mean prompt + completion tokens per question.
    pub mean_tokens: f64,
    pub mean_prompt_tokens: f64,
    pub mean_completion_tokens: f64,
    /// Mean model calls per question.
    pub mean_calls: f64,
    /// Wall time summed over the items, in seconds.
    pub wall_s: f64,
    /// Mean wall time per question, in seconds.
    pub mean_wall_s: f64,
    /// Outputs in which no answer was found.
    pub no_answer: usize,
    /// Runs that failed (counted as wrong).
    pub errors: usize,
    /// On the accuracy-against-tokens Pareto front.
    pub pareto: bool,
    /// Records whose answer today's scoring judges otherwise than the `correct` stored
    /// when they ran ([`ItemRecord::judged_correct`]); `correct` counts today's verdict.
    #[serde(default, skip_serializing_if = "is_zero")]
    pub rejudged: usize,
    /// Compared with the reference on the questions both have a record of (`None` for
    /// the reference itself, or when there is none).
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub vs_baseline: Option<PairedDiff>,
    /// Tokens per question as a multiple of the reference's, on the questions both have
    /// a record of (`None` as [`ApproachSummary::vs_baseline`]).
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub tokens_vs_baseline: Option<f64>,
}

/// The summary of an evaluation: `summary.json`.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct EvalSummary {
    pub dataset: String,
    pub model: String,
    pub seed: u64,
    /// Items selected for the evaluation.
    pub items: usize,
    /// The reference approach of the paired comparisons.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub baseline: Option<String>,
    pub approaches: Vec<ApproachSummary>,
    /// Baselines that need no model (multiple-choice sets only).
    #[serde(default, skip_serializing_if = "Vec::is_empty")]
    pub no_model: Vec<NoModelBaseline>,
}

impl EvalSummary {
    /// The summary as CSV, one row per approach.
    pub fn to_csv(&self) -> String {
        let mut out = String::from(
            "approach,items,correct,accuracy,ci_low,ci_high,mean_tokens,mean_prompt_tokens,\
             mean_completion_tokens,mean_calls,wall_s,mean_wall_s,no_answer,errors,pareto,\
             reference,paired_items,diff,diff_ci_low,diff_ci_high,b,c,mcnemar_p,\
             tokens_vs_reference\n",
        );
        for a in &self.approaches {
            let reference = self.baseline.as_deref() == Some(a.approach.as_str());
            let paired = match &a.vs_baseline {
                Some(d) => format!(
                    "{},{:.6},{:.6},{:.6},{},{},{:.6}",
                    d.items, d.diff, d.ci_low, d.ci_high, d.b, d.c, d.mcnemar_p
                ),
                None => ",,,,,,".to_string(),
            };
            let tokens_ratio = a
                .tokens_vs_baseline
                .map(|r| format!("{r:.4}"))
                .unwrap_or_default();
            out.push_str(&format!(
                "{},{},{},{:.6},{:.6},{:.6},{:.2},{:.2},{:.2},{:.3},{:.3},{:.3},{},{},{},{},{},{}\n",
                csv_field(&a.approach),
                a.items,
                a.correct,
                a.accuracy,
                a.ci_low,
                a.ci_high,
                a.mean_tokens,
                a.mean_prompt_tokens,
                a.mean_completion_tokens,
                a.mean_calls,
                a.wall_s,
                a.mean_wall_s,
                a.no_answer,
                a.errors,
                a.pareto,
                reference,
                paired,
                tokens_ratio
            ));
        }
        out
    }

    /// The summary as a Markdown table, with the paired comparison to the reference
    /// and the no-model baselines under it.
    pub fn to_markdown(&self) -> String {
        let mut out = format!(
            "{} on {} ({} items, seed {})\n\n\
             | approach | accuracy | 95% CI | vs reference, points (95% CI) | b/c | McNemar p \
             | tokens/q | x reference's tokens | calls/q | wall s | no answer | errors |\n\
             |---|---:|---|---|---:|---:|---:|---:|---:|---:|---:|---:|\n",
            self.model, self.dataset, self.items, self.seed
        );
        for a in &self.approaches {
            let reference = self.baseline.as_deref() == Some(a.approach.as_str());
            let (diff, bc, p) = match &a.vs_baseline {
                Some(d) => (
                    format!(
                        "{}{:+.1} ({:+.1} to {:+.1})",
                        if d.excludes_zero() { "**" } else { "" },
                        d.diff * 100.0,
                        d.ci_low * 100.0,
                        d.ci_high * 100.0
                    ) + if d.excludes_zero() { "**" } else { "" },
                    format!("{}/{}", d.b, d.c),
                    format_p(d.mcnemar_p),
                ),
                None if reference => ("reference".to_string(), String::new(), String::new()),
                None => (String::new(), String::new(), String::new()),
            };
            let tokens_ratio = a
                .tokens_vs_baseline
                .map(|r| format!("{r:.1}x"))
                .unwrap_or_default();
            out.push_str(&format!(
                "| {}{} | {:.1}% ({}/{}) | {:.1}-{:.1}% | {} | {} | {} | {:.0} | {} | {:.2} | {:.1} | {} | {} |\n",
                a.approach.replace('|', "\\|"),
                if a.pareto { " *" } else { "" },
                a.accuracy * 100.0,
                a.correct,
                a.items,
                a.ci_low * 100.0,
                a.ci_high * 100.0,
                diff,
                bc,
                p,
                a.mean_tokens,
                tokens_ratio,
                a.mean_calls,
                a.wall_s,
                a.no_answer,
                a.errors
            ));
        }
        out.push_str("\n`*`: on the accuracy-against-tokens Pareto front\n");
        let rejudged: Vec<String> = self
            .approaches
            .iter()
            .filter(|a| a.rejudged > 0)
            .map(|a| format!("`{}` {}", a.approach, a.rejudged))
            .collect();
        if !rejudged.is_empty() {
            out.push_str(&format!(
                "\nRecords judged by today's scoring otherwise than when they ran (answer \
                 comparison changed since; the counts above are today's), per approach: {}.\n",
                rejudged.join(", ")
            ));
        }
        if let Some(reference) = &self.baseline {
            out.push_str(&format!(
                "\nReference: `{reference}`. `vs reference`: the row's accuracy minus the \
                 reference's on the questions both answered, in percentage points, with \
                 Newcombe's 95% interval for paired proportions (bold: the interval excludes \
                 0); b: questions only the row got right, c: questions only the reference \
                 got right; McNemar p: exact two-sided test on b and c.\n"
            ));
        }
        if !self.no_model.is_empty() {
            out.push_str("\nNo-model baselines (from the questions alone):\n\n");
            for b in &self.no_model {
                out.push_str(&format!(
                    "- {}{}: {:.1}% ({}/{}, 95% CI {:.1}-{:.1}%)\n",
                    b.name,
                    b.answer
                        .as_deref()
                        .map(|a| format!(" (`{a}`)"))
                        .unwrap_or_default(),
                    b.accuracy * 100.0,
                    b.correct,
                    b.items,
                    b.ci_low * 100.0,
                    b.ci_high * 100.0
                ));
            }
        }
        out
    }
}

fn is_zero(n: &usize) -> bool {
    *n == 0
}

/// A p-value for a table: three decimals, `<0.001` below.
fn format_p(p: f64) -> String {
    if p < 0.001 {
        "<0.001".to_string()
    } else {
        format!("{p:.3}")
    }
}

fn csv_field(s: &str) -> String {
    if s.contains([',', '"', '\n']) {
        format!("\"{}\"", s.replace('"', "\"\""))
    } else {
        s.to_string()
    }
}

/// An event of an evaluation, for progress display.
#[derive(Debug, Clone, Copy)]
#[non_exhaustive]
pub enum EvalEvent<'a> {
    /// The run begins: `total` (approach, item) runs, `done` of them already recorded.
    Started { total: usize, done: usize },
    /// One run was recorded; `done` of `total` are now recorded.
    Recorded {
        record: &'a ItemRecord,
        done: usize,
        total: usize,
    },
    /// Every run is recorded; the summary files are written.
    Finished { summary: &'a EvalSummary },
}

/// Receives [`EvalEvent`]s (any `Fn(&EvalEvent)` closure will do).
pub trait EvalProgress: Send + Sync {
    fn event(&self, event: &EvalEvent<'_>);
}

impl<F: Fn(&EvalEvent<'_>) + Send + Sync> EvalProgress for F {
    fn event(&self, event: &EvalEvent<'_>) {
        self(event)
    }
}

/// Ignores progress.
#[derive(Debug, Clone, Copy, Default)]
pub struct NoEvalProgress;

impl EvalProgress for NoEvalProgress {
    fn event(&self, _: &EvalEvent<'_>) {}
}

/// The sampling seed of an item: derived from the run seed and the item id, so every
/// approach sees the same seed on the same item, whatever the sample order.
pub fn item_seed(seed: u64, item_id: &str) -> u32 {
    // FNV-1a of the id, mixed with the seed through SplitMix64.
    let mut h: u64 = 0xcbf2_9ce4_8422_2325;
    for b in item_id.bytes() {
        h ^= u64::from(b);
        h = h.wrapping_mul(0x0000_0100_0000_01b3);
    }
    let mut state = seed ^ h;
    (splitmix64(&mut state) >> 32) as u32
}

/// Runs every approach on the sampled items of `dataset`, resuming what `out_dir`
/// already holds, and writes the summary files. See the module documentation.
///
/// Approach specs are parsed and built before anything runs, so a bad spec fails at
/// once. A run that fails for a reason that will not change on retry (the backend
/// rejects the request, the context overflows, the budget leaves no answer) is recorded
/// as wrong with its error; a transient backend failure (connection, timeout, busy,
/// closed) stops the evaluation with an error, and a later call resumes it.
pub async fn run_eval(
    backend: Arc<dyn Backend>,
    dataset: &LoadedDataset,
    approaches: &[String],
    options: &EvalOptions,
    out_dir: &Path,
    progress: &dyn EvalProgress,
) -> Result<EvalSummary> {
    if approaches.is_empty() {
        return Err(BenchError::InvalidArgument(
            "at least one approach is needed".into(),
        ));
    }
    let mut built: Vec<(String, Box<dyn Strategy>)> = Vec::new();
    for a in approaches {
        let wrap = |source| BenchError::Strategy {
            approach: a.clone(),
            source,
        };
        let parsed = spec::parse(a).map_err(|e| wrap(e.into()))?;
        let strategy = build_spec(&parsed).map_err(|e| wrap(e.into()))?;
        let key = parsed.to_string();
        if built.iter().any(|(k, _)| *k == key) {
            return Err(BenchError::InvalidArgument(format!(
                "approach `{key}` is listed twice"
            )));
        }
        built.push((key, strategy));
    }
    let keys: Vec<String> = built.iter().map(|(k, _)| k.clone()).collect();
    let baseline = resolve_baseline(&keys, options.baseline.as_deref(), &options.sampling)?;

    let items = sample(
        &dataset.items,
        options.limit,
        options.shuffle.then_some(options.seed),
    );
    if items.iter().any(|i| i.kind == AnswerKind::Code) {
        let interpreter = crate::code::interpreter();
        tokio::task::spawn_blocking(move || crate::code::check_interpreter(&interpreter))
            .await
            .map_err(|e| BenchError::InvalidArgument(format!("interpreter check failed: {e}")))??;
    }
    let info = RunInfo {
        dataset: dataset.name.clone(),
        model: backend.model().to_string(),
        seed: options.seed,
        shuffle: options.shuffle,
        sampling: options.sampling.clone(),
        budget: options.budget,
    };
    std::fs::create_dir_all(out_dir).map_err(|e| BenchError::io(out_dir, e))?;
    check_run_info(&out_dir.join(RUN_FILE), &info)?;

    let results_path = out_dir.join(RESULTS_FILE);
    let mut records = read_records(&results_path)?;
    let done: HashSet<(String, String)> = records
        .iter()
        .map(|r| (r.approach.clone(), r.item.clone()))
        .collect();
    let mine: Vec<&Item> = items
        .iter()
        .enumerate()
        .filter(|(k, _)| options.shard.is_none_or(|s| s.holds(*k)))
        .map(|(_, it)| it)
        .collect();
    let total = mine.len() * built.len();
    let mut done_count = mine
        .iter()
        .map(|it| {
            built
                .iter()
                .filter(|(k, _)| done.contains(&(k.clone(), it.id.clone())))
                .count()
        })
        .sum::<usize>();
    info!(
        dataset = %info.dataset,
        model = %info.model,
        total,
        already = done_count,
        "evaluation starting"
    );
    progress.event(&EvalEvent::Started {
        total,
        done: done_count,
    });

    let mut out = OpenOptions::new()
        .create(true)
        .append(true)
        .open(&results_path)
        .map_err(|e| BenchError::io(&results_path, e))?;
    let pending: Vec<(&Item, &String, &dyn Strategy)> = mine
        .iter()
        .flat_map(|item| {
            built
                .iter()
                .map(move |(key, strategy)| (*item, key, strategy))
        })
        .filter(|(item, key, _)| !done.contains(&((*key).clone(), item.id.clone())))
        .map(|(item, key, strategy)| (item, key, strategy.as_ref()))
        .collect();
    // Up to `concurrency` runs at once, recorded in order as they finish.
    let mut runs = futures::stream::iter(pending.into_iter().map(|(item, key, strategy)| {
        let seed = item_seed(options.seed, &item.id);
        run_one(backend.clone(), key, strategy, item, seed, options)
    }))
    .buffered(options.concurrency.max(1));
    while let Some(record) = runs.next().await {
        let record = record?;
        let mut line = serde_json::to_string(&record).map_err(|source| BenchError::Json {
            path: results_path.clone(),
            line: 0,
            source,
        })?;
        line.push('\n');
        out.write_all(line.as_bytes())
            .and_then(|()| out.flush())
            .map_err(|e| BenchError::io(&results_path, e))?;
        done_count += 1;
        progress.event(&EvalEvent::Recorded {
            record: &record,
            done: done_count,
            total,
        });
        records.push(record);
    }
    drop(runs);
    drop(out);

    let summary = summarize(&info, &items, &keys, &records, baseline.as_deref());
    write_summary(out_dir, &summary)?;
    progress.event(&EvalEvent::Finished { summary: &summary });
    Ok(summary)
}

async fn run_one(
    backend: Arc<dyn Backend>,
    approach: &str,
    strategy: &dyn Strategy,
    item: &Item,
    seed: u32,
    options: &EvalOptions,
) -> Result<ItemRecord> {
    let mut request = StrategyRequest::user(item.prompt.clone());
    request.sampling = options.sampling.clone().with_seed(seed);
    let started = std::time::Instant::now();
    let result = strategy::run(strategy, backend, &request, options.budget).await;
    let mut record = ItemRecord {
        approach: approach.to_string(),
        item: item.id.clone(),
        gold: item.gold.clone(),
        kind: item.kind,
        output: String::new(),
        extracted: None,
        correct: false,
        calls: 0,
        prompt_tokens: 0,
        completion_tokens: 0,
        wall_ms: started.elapsed().as_secs_f64() * 1000.0,
        seed,
        budget_exhausted: false,
        vote: None,
        error: None,
        failure: None,
        samples: Vec::new(),
    };
    match result {
        Ok(outcome) => {
            // A code answer runs its tests in a process: off the async threads.
            let (answer, gold, kind) = (outcome.answer.clone(), item.gold.clone(), item.kind);
            let s = tokio::task::spawn_blocking(move || score(&answer, &gold, kind))
                .await
                .map_err(|e| BenchError::InvalidArgument(format!("scoring task failed: {e}")))?;
            record.output = outcome.answer;
            record.extracted = s.extracted;
            record.correct = s.correct;
            record.failure = s.failure;
            record.calls = outcome.usage.calls;
            record.prompt_tokens = outcome.usage.prompt_tokens;
            record.completion_tokens = outcome.usage.completion_tokens;
            record.wall_ms = outcome.wall.as_secs_f64() * 1000.0;
            record.budget_exhausted = outcome.budget_exhausted;
            record.vote = outcome.vote.map(|v| v.summary());
            record.samples = outcome.samples;
        }
        Err(StrategyError::Backend(e)) if stops_the_run(&e) => {
            return Err(BenchError::Strategy {
                approach: approach.to_string(),
                source: StrategyError::Backend(e),
            });
        }
        Err(e) => {
            warn!(approach, item = %item.id, error = %e, "run failed; recorded as wrong");
            record.budget_exhausted = matches!(e, StrategyError::BudgetExhausted);
            record.error = Some(e.to_string());
        }
    }
    Ok(record)
}

/// Backend failures that say nothing about the item: retrying later may succeed.
fn stops_the_run(e: &BackendError) -> bool {
    e.is_transient() || matches!(e, BackendError::Closed)
}

pub(crate) fn check_run_info(path: &Path, info: &RunInfo) -> Result<()> {
    match std::fs::read_to_string(path) {
        Ok(text) => {
            let existing: RunInfo =
                serde_json::from_str(&text).map_err(|source| BenchError::Json {
                    path: path.to_path_buf(),
                    line: 1,
                    source,
                })?;
            if existing != *info {
                return Err(BenchError::Mismatch {
                    path: path.to_path_buf(),
                    message: format!(
                        "the directory holds results of another evaluation \
                         (theirs: {}, this one: {}); use another output directory",
                        serde_json::to_string(&existing).unwrap_or_default(),
                        serde_json::to_string(info).unwrap_or_default()
                    ),
                });
            }
            Ok(())
        }
        Err(e) if e.kind() == std::io::ErrorKind::NotFound => {
            let text = serde_json::to_string_pretty(info).map_err(|source| BenchError::Json {
                path: path.to_path_buf(),
                line: 0,
                source,
            })?;
            std::fs::write(path, text + "\n").map_err(|e| BenchError::io(path, e))
        }
        Err(e) => Err(BenchError::io(path, e)),
    }
}

/// The records of `results.jsonl` (none if it does not exist).
///
/// A last line that does not parse (a run killed while writing it) is dropped and the
/// file truncated to the records before it, so that appending continues cleanly. A bad
/// line before the last is an error: the file was damaged some other way.
pub fn read_records(path: &Path) -> Result<Vec<ItemRecord>> {
    let file = match File::open(path) {
        Ok(f) => f,
        Err(e) if e.kind() == std::io::ErrorKind::NotFound => return Ok(Vec::new()),
        Err(e) => return Err(BenchError::io(path, e)),
    };
    let mut reader = BufReader::new(file);
    let mut records = Vec::new();
    let mut good_len: u64 = 0;
    let mut line_no = 0;
    let mut pending: Option<(usize, serde_json::Error)> = None;
    let mut buf = Vec::new();
    loop {
        buf.clear();
        let n = reader
            .read_until(b'\n', &mut buf)
            .map_err(|e| BenchError::io(path, e))?;
        if n == 0 {
            break;
        }
        line_no += 1;
        if let Some((line, source)) = pending.take() {
            // A bad line followed by more lines.
            return Err(BenchError::Json {
                path: path.to_path_buf(),
                line,
                source,
            });
        }
        let text = String::from_utf8_lossy(&buf);
        if text.trim().is_empty() {
            good_len += n as u64;
            continue;
        }
        match serde_json::from_str::<ItemRecord>(text.trim()) {
            Ok(r) if buf.ends_with(b"\n") => {
                records.push(r);
                good_len += n as u64;
            }
            // Complete JSON but no newline: the write was cut before its end.
            Ok(_) => break,
            Err(source) => pending = Some((line_no, source)),
        }
    }
    let file_len = std::fs::metadata(path)
        .map_err(|e| BenchError::io(path, e))?
        .len();
    if file_len > good_len {
        warn!(
            path = %path.display(),
            dropped_bytes = file_len - good_len,
            "dropping a truncated last record"
        );
        OpenOptions::new()
            .write(true)
            .open(path)
            .and_then(|f| f.set_len(good_len))
            .map_err(|e| BenchError::io(path, e))?;
    }
    Ok(records)
}

/// The reference of the paired comparisons among `approaches` (canonical specs):
/// `requested` (which must be one of them), else the first greedy `none` (a
/// `temperature` of 0 in the spec, or none in the spec and 0 in `base`), else the first
/// `none`, else none.
pub fn resolve_baseline(
    approaches: &[String],
    requested: Option<&str>,
    base: &Sampling,
) -> Result<Option<String>> {
    if let Some(r) = requested {
        let key = spec::parse(r)
            .map_err(|source| BenchError::Strategy {
                approach: r.to_string(),
                source: source.into(),
            })?
            .to_string();
        return match approaches.iter().find(|a| **a == key) {
            Some(a) => Ok(Some(a.clone())),
            None => Err(BenchError::InvalidArgument(format!(
                "the baseline `{key}` is not among the approaches ({}); add it to them \
                 (its records in the directory are reused)",
                approaches.join(", ")
            ))),
        };
    }
    let none_temperature = |a: &str| match spec::parse(a) {
        Ok(spec::Spec::Stage { slug, params }) if slug == "none" => Some(
            params
                .get("temperature")
                .and_then(serde_json::Value::as_f64)
                .or(base.temperature.map(f64::from)),
        ),
        _ => None,
    };
    let greedy = approaches
        .iter()
        .find(|a| none_temperature(a) == Some(Some(0.0)));
    let any_none = approaches.iter().find(|a| none_temperature(a).is_some());
    Ok(greedy.or(any_none).cloned())
}

/// What an evaluation directory holds for some approaches: its settings, the
/// approaches' canonical specs, the reference of the comparisons, the questions the
/// options select, and every record.
pub struct Recorded {
    pub info: RunInfo,
    pub keys: Vec<String>,
    pub baseline: Option<String>,
    pub items: Vec<Item>,
    pub records: Vec<ItemRecord>,
}

impl Recorded {
    /// Reads `out_dir` (its `run.json` must be of `dataset`).
    pub fn read(
        dataset: &LoadedDataset,
        approaches: &[String],
        options: &EvalOptions,
        out_dir: &Path,
    ) -> Result<Self> {
        let run_path = out_dir.join(RUN_FILE);
        let text = std::fs::read_to_string(&run_path).map_err(|e| BenchError::io(&run_path, e))?;
        let info: RunInfo = serde_json::from_str(&text).map_err(|source| BenchError::Json {
            path: run_path.clone(),
            line: 1,
            source,
        })?;
        if info.dataset != dataset.name {
            return Err(BenchError::Mismatch {
                path: run_path,
                message: format!(
                    "the directory holds an evaluation of {}, not {}",
                    info.dataset, dataset.name
                ),
            });
        }
        let keys: Vec<String> = approaches
            .iter()
            .map(|a| {
                spec::parse(a)
                    .map(|s| s.to_string())
                    .map_err(|source| BenchError::Strategy {
                        approach: a.clone(),
                        source: source.into(),
                    })
            })
            .collect::<Result<_>>()?;
        let baseline = resolve_baseline(&keys, options.baseline.as_deref(), &info.sampling)?;
        let items = sample(
            &dataset.items,
            options.limit,
            options.shuffle.then_some(options.seed),
        );
        let records = read_records(&out_dir.join(RESULTS_FILE))?;
        Ok(Self {
            info,
            keys,
            baseline,
            items,
            records,
        })
    }

    /// The summary of what is recorded, with no model call and no file written: each
    /// approach over the questions it has, compared with the reference on the
    /// questions both have (a run still going, or stopped halfway, can be read so).
    pub fn summary(&self) -> EvalSummary {
        summarize(
            &self.info,
            &self.items,
            &self.keys,
            &self.records,
            self.baseline.as_deref(),
        )
    }
}

/// The summary of `records` over `items` and `approaches` (records of other items or
/// approaches are left out; the last record of a pair wins), each approach compared with
/// `baseline` (one of `approaches`) on the items both have.
pub fn summarize(
    info: &RunInfo,
    items: &[Item],
    approaches: &[String],
    records: &[ItemRecord],
    baseline: Option<&str>,
) -> EvalSummary {
    let selected: HashSet<&str> = items.iter().map(|i| i.id.as_str()).collect();
    let mut by_pair: HashMap<(&str, &str), &ItemRecord> = HashMap::new();
    for r in records {
        if selected.contains(r.item.as_str()) {
            by_pair.insert((r.approach.as_str(), r.item.as_str()), r);
        }
    }
    // Each kept record judged once, by today's scoring.
    let judged: HashMap<(&str, &str), bool> = by_pair
        .iter()
        .map(|(&key, r)| (key, r.judged_correct()))
        .collect();
    let right = |approach: &str, item: &str| judged.get(&(approach, item)).copied();
    let mut rows: Vec<ApproachSummary> = approaches
        .iter()
        .map(|a| {
            let rs: Vec<&ItemRecord> = items
                .iter()
                .filter_map(|i| by_pair.get(&(a.as_str(), i.id.as_str())).copied())
                .collect();
            let n = rs.len();
            let mean = |f: &dyn Fn(&ItemRecord) -> f64| {
                if n == 0 {
                    0.0
                } else {
                    rs.iter().map(|r| f(r)).sum::<f64>() / n as f64
                }
            };
            let correct = rs
                .iter()
                .filter(|r| right(&r.approach, &r.item) == Some(true))
                .count();
            let acc = Accuracy::new(correct, n);
            let wall_s = rs.iter().map(|r| r.wall_ms).sum::<f64>() / 1000.0;
            ApproachSummary {
                approach: a.clone(),
                items: n,
                correct,
                accuracy: acc.value,
                ci_low: acc.ci_low,
                ci_high: acc.ci_high,
                mean_tokens: mean(&|r| r.total_tokens() as f64),
                mean_prompt_tokens: mean(&|r| r.prompt_tokens as f64),
                mean_completion_tokens: mean(&|r| r.completion_tokens as f64),
                mean_calls: mean(&|r| f64::from(r.calls)),
                wall_s,
                mean_wall_s: if n == 0 { 0.0 } else { wall_s / n as f64 },
                no_answer: rs
                    .iter()
                    .filter(|r| r.error.is_none() && r.extracted.is_none())
                    .count(),
                errors: rs.iter().filter(|r| r.error.is_some()).count(),
                pareto: false,
                rejudged: rs
                    .iter()
                    .filter(|r| right(&r.approach, &r.item) != Some(r.correct))
                    .count(),
                vs_baseline: baseline.filter(|b| *b != a.as_str()).map(|b| {
                    PairedDiff::from_pairs(
                        items
                            .iter()
                            .filter_map(|i| Some((right(a, &i.id)?, right(b, &i.id)?))),
                    )
                }),
                tokens_vs_baseline: baseline.filter(|b| *b != a.as_str()).and_then(|b| {
                    let (mine, theirs) = items
                        .iter()
                        .filter_map(|i| {
                            let mine = by_pair.get(&(a.as_str(), i.id.as_str()))?;
                            let theirs = by_pair.get(&(b, i.id.as_str()))?;
                            Some((mine.total_tokens(), theirs.total_tokens()))
                        })
                        .fold((0u64, 0u64), |(x, y), (m, t)| (x + m, y + t));
                    (theirs > 0).then(|| mine as f64 / theirs as f64)
                }),
            }
        })
        .collect();
    let with_items: Vec<usize> = (0..rows.len()).filter(|&i| rows[i].items > 0).collect();
    let coords: Vec<(f64, f64)> = with_items
        .iter()
        .map(|&i| (rows[i].mean_tokens, rows[i].accuracy))
        .collect();
    for j in pareto_front(&coords) {
        if let Some(row) = with_items.get(j).and_then(|&i| rows.get_mut(i)) {
            row.pareto = true;
        }
    }
    EvalSummary {
        dataset: info.dataset.clone(),
        model: info.model.clone(),
        seed: info.seed,
        items: items.len(),
        baseline: baseline
            .filter(|b| approaches.iter().any(|a| a == b))
            .map(str::to_string),
        approaches: rows,
        no_model: no_model_baselines(items),
    }
}

/// Writes `summary.json`, `summary.csv` and `pareto.svg` into `out_dir`.
pub fn write_summary(out_dir: &Path, summary: &EvalSummary) -> Result<()> {
    let json_path = out_dir.join(SUMMARY_JSON);
    let json = serde_json::to_string_pretty(summary).map_err(|source| BenchError::Json {
        path: json_path.clone(),
        line: 0,
        source,
    })?;
    std::fs::write(&json_path, json + "\n").map_err(|e| BenchError::io(&json_path, e))?;
    let csv_path = out_dir.join(SUMMARY_CSV);
    std::fs::write(&csv_path, summary.to_csv()).map_err(|e| BenchError::io(&csv_path, e))?;
    let md_path = out_dir.join(SUMMARY_MD);
    std::fs::write(&md_path, summary.to_markdown()).map_err(|e| BenchError::io(&md_path, e))?;
    let points: Vec<PlotPoint> = summary
        .approaches
        .iter()
        .filter(|a| a.items > 0)
        .map(|a| PlotPoint {
            label: a.approach.clone(),
            tokens: a.mean_tokens,
            accuracy: a.accuracy,
            ci_low: a.ci_low,
            ci_high: a.ci_high,
        })
        .collect();
    let title = format!(
        "{} on {} ({} items): accuracy vs tokens",
        summary.model, summary.dataset, summary.items
    );
    write_svg(&out_dir.join(PLOT_FILE), &title, &points)
}

/// The paths of the files an evaluation writes into `out_dir`.
pub fn output_files(out_dir: &Path) -> [PathBuf; 6] {
    [
        out_dir.join(RUN_FILE),
        out_dir.join(RESULTS_FILE),
        out_dir.join(SUMMARY_JSON),
        out_dir.join(SUMMARY_CSV),
        out_dir.join(SUMMARY_MD),
        out_dir.join(PLOT_FILE),
    ]
}
