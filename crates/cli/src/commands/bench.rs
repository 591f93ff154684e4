//! `optillm bench` (speed per model) and `optillm eval` (accuracy against cost per approach).

use std::path::PathBuf;
use std::time::{Duration, Instant};

use anyhow::{Context, bail};
use clap::Args;
use indicatif::{ProgressBar, ProgressStyle};
use optillm_bench::{Dataset, EvalEvent, EvalOptions, Shard, SpeedOptions, SpeedReport};
use optillm_core::{Budget, Sampling};
use optillm_models::{ArtifactKind, IndicatifProgress};

use crate::backends::{self, BackendArgs};

#[derive(Debug, Args)]
pub struct BenchArgs {
    /// Models to measure (default: every model of the manifest that is local).
    #[arg(long, short)]
    pub model: Vec<String>,
    #[command(flatten)]
    pub backend: BackendArgs,
    /// Tokens generated per run (1..=1048576).
    #[arg(long, default_value_t = 64, value_parser = super::parse_max_tokens)]
    pub max_tokens: u32,
    /// Measured runs per model after one warm-up (1..=1000).
    #[arg(long, default_value_t = 3, value_parser = super::parse_runs)]
    pub runs: usize,
    /// Write the reports as JSON to this file.
    #[arg(long)]
    pub json: Option<PathBuf>,
    /// Internal: measure one model in this process and print its report as JSON.
    #[arg(long, hide = true)]
    pub single: bool,
}

pub async fn bench(args: BenchArgs) -> anyhow::Result<()> {
    let options = SpeedOptions {
        max_tokens: args.max_tokens,
        runs: args.runs,
        ..SpeedOptions::default()
    };
    if args.single {
        let model = args.model.first().context("--single needs --model")?;
        super::check_native(&args.backend, model)?;
        let started = Instant::now();
        let backend = backends::open(&args.backend, model).await?;
        let report =
            optillm_bench::measure_speed(backend.as_ref(), started.elapsed(), &options).await?;
        println!("{}", report.to_json()?);
        return Ok(());
    }
    let mut models = args.model.clone();
    if models.is_empty() {
        models = optillm_models::list()?
            .into_iter()
            .filter(|r| r.local && r.artifact.kind == ArtifactKind::Model)
            .map(|r| r.artifact.name.clone())
            .collect();
        if models.is_empty() {
            bail!("no local model: run `optillm pull` first");
        }
    }
    for model in &models {
        super::check_native(&args.backend, model)?;
    }
    // Each model is measured in a process of its own, so peak RSS is that model's.
    let exe = std::env::current_exe().context("locating the optillm binary")?;
    let mut reports: Vec<SpeedReport> = Vec::new();
    for model in &models {
        eprintln!("measuring {model}...");
        let mut cmd = tokio::process::Command::new(&exe);
        cmd.args(["bench", "--single", "--model", model])
            .args([
                "--max-tokens",
                &args.max_tokens.to_string(),
                "--runs",
                &args.runs.to_string(),
            ])
            .args(args.backend.child_args());
        let out = cmd.output().await?;
        if !out.status.success() {
            bail!(
                "measuring {model} failed: {}",
                String::from_utf8_lossy(&out.stderr)
            );
        }
        reports.push(serde_json::from_slice(&out.stdout).context("reading a speed report")?);
    }
    println!("{}", SpeedReport::markdown_table(&reports));
    if let Some(path) = &args.json {
        std::fs::write(path, serde_json::to_string_pretty(&reports)?)?;
    }
    Ok(())
}

#[derive(Debug, Args)]
pub struct EvalArgs {
    /// gsm8k, arc-easy, arc-challenge, asdiv, math-500, openbookqa, csqa, humaneval, or a JSON Lines file of your own
    /// (PATH.jsonl, or .jsonl.gz), one question a line:
    /// {"id": "q1", "question": "...", "answer": "B", "options": ["...", "..."], "kind": "choice"}.
    /// `question` and `answer` are required; `options` (2-5) make it multiple choice,
    /// answered by letter (A = the first) or by the option's text; `kind` (number, choice,
    /// yes_no, text) defaults from the answer; `id` defaults to the line number.
    #[arg(long)]
    pub dataset: String,
    /// Comma-separated approach specs (a spec with a comma inside parentheses is kept whole).
    #[arg(long, default_value = "none")]
    pub approaches: String,
    #[arg(long, short)]
    pub model: Option<String>,
    #[command(flatten)]
    pub backend: BackendArgs,
    /// Questions to evaluate (default: all).
    #[arg(long)]
    pub limit: Option<usize>,
    /// Draw a seeded random sample instead of the first questions.
    #[arg(long)]
    pub shuffle: bool,
    #[arg(long, default_value_t = 0)]
    pub seed: u64,
    /// Most tokens per completion.
    #[arg(long, default_value_t = 512)]
    pub max_tokens: u32,
    /// Sampling temperature of every request (0: greedy). An approach's own setting wins
    /// (`none(temperature=0)`, `bon(temperature=1)`, ...). Unset: the backend's default.
    #[arg(long)]
    pub temperature: Option<f32>,
    /// Nucleus sampling of every request (an approach's own setting wins).
    #[arg(long)]
    pub top_p: Option<f32>,
    /// Budget per question and approach: most prompt + completion tokens.
    #[arg(long)]
    pub max_total_tokens: Option<u64>,
    /// Output directory (results resume from what it holds).
    #[arg(long)]
    pub out: Option<PathBuf>,
    /// Run share I of N of the questions (`0/2`, `1/2`: two processes into one `--out`);
    /// a last run without it writes the summary of all.
    #[arg(long)]
    pub shard: Option<String>,
    /// Runs in flight at once; the native backend decodes them together (throughput up,
    /// each run's wall time then includes the time it shared).
    #[arg(long, default_value_t = 1)]
    pub concurrency: usize,
    /// The reference of the paired comparisons in the summary, one of --approaches
    /// (default: greedy `none(temperature=0)` when listed, else `none`). Each row gets
    /// its accuracy difference to it on the same questions with a 95% interval, the
    /// discordant counts b/c and McNemar's exact p.
    #[arg(long)]
    pub baseline: Option<String>,
    /// Score aggregation rules on the samples the voting approaches of --approaches
    /// recorded in --out, without calling the model (no backend is opened): a
    /// semicolon-separated list of `vote(k=.., weight=none|mean|lowest_group|tail,
    /// keep=.., batch=.., stop_at=..)`. Writes rescore.md/json/csv beside the summary.
    #[arg(long)]
    pub rescore: Option<String>,
    /// Print the summary of what --out holds for --approaches, without calling the model
    /// or writing a file: a run still going (or stopped halfway) compared on the
    /// questions each pair of rows has.
    #[arg(long, conflicts_with_all = ["rescore", "shard"])]
    pub recorded: bool,
}

/// Splits `a,b(k=1,n=2),c` at top-level commas.
fn split_specs(s: &str) -> Vec<String> {
    let mut out = Vec::new();
    let mut depth = 0i32;
    let mut cur = String::new();
    for c in s.chars() {
        match c {
            '(' | '[' => depth += 1,
            ')' | ']' => depth -= 1,
            ',' if depth == 0 => {
                out.push(std::mem::take(&mut cur).trim().to_string());
                continue;
            }
            _ => {}
        }
        cur.push(c);
    }
    out.push(cur.trim().to_string());
    out.retain(|s| !s.is_empty());
    out
}

/// The base sampling of every eval request. Unset flags stay unset, so `run.json` of
/// an evaluation made without them still matches.
fn eval_sampling(args: &EvalArgs) -> anyhow::Result<Sampling> {
    let mut sampling = Sampling::default().with_max_tokens(args.max_tokens);
    if let Some(t) = args.temperature {
        if !(t.is_finite() && t >= 0.0) {
            bail!("--temperature must be a number >= 0, got {t}");
        }
        sampling = sampling.with_temperature(t);
    }
    if let Some(p) = args.top_p {
        if !(p > 0.0 && p <= 1.0) {
            bail!("--top-p must be in (0, 1], got {p}");
        }
        sampling = sampling.with_top_p(p);
    }
    Ok(sampling)
}

pub async fn eval(args: EvalArgs) -> anyhow::Result<()> {
    let approaches = split_specs(&args.approaches);
    let model = backends::model_name(&args.backend, args.model.clone())?;
    let own = optillm_bench::dataset::looks_like_path(&args.dataset);
    let loaded = if own {
        optillm_bench::dataset::load_custom(std::path::Path::new(&args.dataset))?
    } else {
        let dataset = Dataset::from_name(&args.dataset)?;
        let progress = IndicatifProgress::new();
        let loaded = dataset.load(&progress).await;
        progress.finish();
        loaded?
    };
    let out = args.out.clone().unwrap_or_else(|| {
        let name = if own {
            loaded
                .name
                .trim_end_matches(".gz")
                .trim_end_matches(".jsonl")
        } else {
            args.dataset.as_str()
        };
        PathBuf::from("eval-results").join(format!("{name}-{}", model.replace('/', "_")))
    });
    let options = EvalOptions {
        limit: args.limit,
        shuffle: args.shuffle,
        seed: args.seed,
        sampling: eval_sampling(&args)?,
        budget: Budget {
            max_total_tokens: args.max_total_tokens,
            max_duration: None::<Duration>,
        },
        shard: args.shard.as_deref().map(Shard::parse).transpose()?,
        concurrency: args.concurrency.max(1),
        baseline: args.baseline.clone(),
    };
    if args.recorded {
        let recorded = optillm_bench::eval::Recorded::read(&loaded, &approaches, &options, &out)?;
        println!("{}", recorded.summary().to_markdown());
        return Ok(());
    }
    if let Some(rules) = &args.rescore {
        let rules: Vec<String> = rules
            .split(';')
            .map(str::trim)
            .filter(|r| !r.is_empty())
            .map(str::to_string)
            .collect();
        let summary =
            optillm_bench::rescore::rescore(&loaded, &approaches, &rules, &options, &out)?;
        println!("{}", summary.to_markdown());
        eprintln!(
            "rescored in {}",
            out.join(optillm_bench::rescore::RESCORE_MD).display()
        );
        return Ok(());
    }
    let backend = backends::open(&args.backend, &model).await?;
    let bar = ProgressBar::new(0);
    bar.set_style(
        ProgressStyle::with_template("{bar:40} {pos}/{len} runs ({eta} left) {msg}")
            .unwrap_or_else(|_| ProgressStyle::default_bar()),
    );
    // Without a terminal (nohup, CI logs) the bar is hidden: one line per run instead.
    let lines = bar.is_hidden();
    let on_event = |e: &EvalEvent<'_>| match e {
        EvalEvent::Started { total, done } => {
            bar.set_length(*total as u64);
            bar.set_position(*done as u64);
            if lines {
                eprintln!("{total} runs, {done} already recorded");
            }
        }
        EvalEvent::Recorded {
            record,
            done,
            total,
        } => {
            bar.set_position(*done as u64);
            if lines {
                eprintln!(
                    "{done}/{total} {} item {}: {} ({} tokens, {:.1} s)",
                    record.approach,
                    record.item,
                    if record.correct { "correct" } else { "wrong" },
                    record.prompt_tokens + record.completion_tokens,
                    record.wall_ms / 1000.0,
                );
            }
        }
        EvalEvent::Finished { .. } => bar.finish_and_clear(),
        _ => {}
    };
    let summary = optillm_bench::run_eval(
        backend.clone(),
        &loaded,
        &approaches,
        &options,
        &out,
        &on_event,
    )
    .await?;
    println!("{}", summary.to_markdown());
    // What the backend did for this process's runs (the native one: prompt tokens
    // evaluated and reused, ...), for measurements such as prefix reuse on and off.
    let counters = backend.counters();
    if !counters.is_empty() {
        let line: Vec<String> = counters
            .iter()
            .map(|c| format!("{}={}", c.name, c.value))
            .collect();
        eprintln!("backend counters: {}", line.join(" "));
    }
    eprintln!("results in {}", out.display());
    Ok(())
}

#[cfg(test)]
mod tests {
    use clap::Parser;

    use super::{EvalArgs, eval_sampling, split_specs};

    #[derive(Parser)]
    struct Cli {
        #[command(flatten)]
        eval: EvalArgs,
    }

    fn args(extra: &[&str]) -> EvalArgs {
        let mut argv = vec!["eval", "--dataset", "gsm8k"];
        argv.extend_from_slice(extra);
        Cli::try_parse_from(argv).unwrap().eval
    }

    #[test]
    fn sampling_flags_reach_every_request_and_stay_unset_otherwise() {
        let plain = eval_sampling(&args(&[])).unwrap();
        assert_eq!(plain.temperature, None);
        assert_eq!(plain.top_p, None);
        assert_eq!(plain.max_tokens, Some(512));
        // An evaluation made before the flags existed keeps its `run.json`.
        assert_eq!(
            serde_json::to_string(&plain).unwrap(),
            r#"{"max_tokens":512}"#
        );
        let set = eval_sampling(&args(&[
            "--temperature",
            "0",
            "--top-p",
            "0.9",
            "--max-tokens",
            "64",
        ]))
        .unwrap();
        assert_eq!(set.temperature, Some(0.0));
        assert_eq!(set.top_p, Some(0.9));
        assert_eq!(set.max_tokens, Some(64));
        assert!(eval_sampling(&args(&["--temperature=-1"])).is_err());
        assert!(eval_sampling(&args(&["--top-p", "0"])).is_err());
    }

    #[tokio::test]
    async fn a_bad_line_of_your_own_data_set_stops_eval_with_its_number() {
        let dir = std::env::temp_dir().join(format!("optillm-eval-test-{}", std::process::id()));
        std::fs::create_dir_all(&dir).unwrap();
        let path = dir.join("mine.jsonl");
        std::fs::write(
            &path,
            "{\"question\": \"2+2?\", \"answer\": 4}\n{\"question\": \"Pick\", \"options\": [\"a\", \"b\"], \"answer\": \"E\"}\n",
        )
        .unwrap();
        let path = path.to_string_lossy().into_owned();
        // The file is read before any model is opened.
        let err = super::eval(args(&["--model", "no-such-model"]).with_dataset(&path))
            .await
            .unwrap_err();
        let message = format!("{err:#}");
        assert!(message.contains("mine.jsonl:2:"), "{message}");
        assert!(message.contains("neither an option letter"), "{message}");
        std::fs::remove_dir_all(&dir).unwrap();
    }

    impl EvalArgs {
        fn with_dataset(mut self, dataset: &str) -> Self {
            self.dataset = dataset.to_string();
            self
        }
    }

    #[test]
    fn splits_only_top_level_commas() {
        assert_eq!(
            split_specs("none, bon(n=3,temperature=1.0),mars(temperatures=[0.3,0.6])"),
            vec![
                "none",
                "bon(n=3,temperature=1.0)",
                "mars(temperatures=[0.3,0.6])"
            ]
        );
    }
}
