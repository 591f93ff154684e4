//! Benchmark and evaluation harness for optillm-rs.
//!
//! - [`dataset`]: GSM8K, ARC-Easy, ARC-Challenge, ASDiv, MATH-500, OpenBookQA,
//!   CommonsenseQA and HumanEval from the model cache as [`Item`]s (question prompt,
//!   gold answer, answer kind);
//! - [`code`]: programs judged by running a data set's unit tests (HumanEval);
//! - [`score`](mod@score): scoring through the shared answer extraction of
//!   [`optillm_core::extract`], accuracy with a 95% Wilson interval, paired comparisons
//!   ([`PairedDiff`]: Newcombe's interval, McNemar's exact test);
//! - [`baselines`]: what a multiple-choice set scores with no model (most frequent gold
//!   letter, longest option);
//! - [`eval`]: [`run_eval`], every approach spec on every sampled item, resumable,
//!   with JSON/CSV summaries and an accuracy-against-tokens plot ([`plot`]);
//! - [`rescore`]: new aggregation rules (weighted votes, confidence filters, adaptive
//!   stopping) scored on the samples an evaluation recorded, with no new generation;
//! - [`speed`]: [`measure_speed`], the speed table of one backend.

pub mod baselines;
pub mod code;
pub mod dataset;
pub mod error;
pub mod eval;
pub mod plot;
pub mod rescore;
pub mod score;
pub mod speed;

pub use baselines::{NoModelBaseline, no_model_baselines};
pub use dataset::{Dataset, Item, LoadedDataset, sample};
pub use error::{BenchError, Result};
pub use eval::{
    ApproachSummary, EvalEvent, EvalOptions, EvalProgress, EvalSummary, ItemRecord, NoEvalProgress,
    RunInfo, Shard, run_eval,
};
pub use score::{
    Accuracy, PairedDiff, Score, mcnemar_exact, newcombe_paired, score, wilson_interval,
};
pub use speed::{SpeedOptions, SpeedReport, SpeedRun, measure_speed, peak_rss_bytes};
