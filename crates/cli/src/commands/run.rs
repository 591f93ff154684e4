//! `optillm run`: one prompt through an approach.

use std::io::Write;
use std::path::PathBuf;
use std::time::Duration;

use anyhow::Context;
use clap::Args;
use optillm_core::spec::{self, Spec};
use std::sync::{Arc, Mutex};

use optillm_core::strategy::{self, Budget, StrategyRequest};
use optillm_core::{Ctx, Message, Outcome, ResponseFormat, Sampling, TextSink, Usage, strategies};

use crate::backends::{self, BackendArgs};

#[derive(Debug, Args)]
pub struct RunArgs {
    /// The prompt (`-` reads it from stdin).
    pub prompt: String,
    /// Model: a manifest name, a GGUF path, or a remote model name (default: LLM_MODEL, else the manifest default).
    #[arg(long, short)]
    pub model: Option<String>,
    #[command(flatten)]
    pub backend: BackendArgs,
    /// Approach spec, e.g. `self_consistency(k=5)` or `re2&bon` (see `optillm approaches`).
    #[arg(long, short, default_value = "none")]
    pub approach: String,
    /// A system prompt.
    #[arg(long)]
    pub system: Option<String>,
    #[arg(long)]
    pub temperature: Option<f32>,
    #[arg(long)]
    pub top_p: Option<f32>,
    #[arg(long)]
    pub top_k: Option<u32>,
    #[arg(long)]
    pub min_p: Option<f32>,
    #[arg(long)]
    pub repeat_penalty: Option<f32>,
    /// Most tokens per completion (1..=1048576).
    #[arg(long, value_parser = super::parse_max_tokens)]
    pub max_tokens: Option<u32>,
    #[arg(long)]
    pub seed: Option<u32>,
    /// Stop sequence (repeatable).
    #[arg(long)]
    pub stop: Vec<String>,
    /// Number of answers (1..=256).
    #[arg(short, default_value_t = 1, value_parser = super::parse_n)]
    pub n: u32,
    /// Budget: most prompt + completion tokens over all model calls of the approach.
    #[arg(long)]
    pub max_total_tokens: Option<u64>,
    /// Budget: most seconds for the whole approach (> 0, at most 604800 = 7 days).
    #[arg(long, value_parser = super::parse_deadline)]
    pub deadline: Option<Duration>,
    /// Write the trace of every model call as JSON Lines to this file.
    #[arg(long)]
    pub trace: Option<PathBuf>,
    /// Constrain the answer to JSON matching this JSON schema: a file, or the schema
    /// itself when it starts with `{` (approach `none` only).
    #[arg(long, value_name = "FILE_OR_JSON")]
    pub json_schema: Option<String>,
    /// Continue the prompt as it is, without the model's chat template: for a base
    /// model (gemma3-270m), or a prompt already templated (approach `none` only).
    #[arg(long, conflicts_with = "system")]
    pub raw: bool,
}

/// Largest `--json-schema` file read (its compact form is bounded again, more tightly).
const MAX_SCHEMA_FILE: u64 = 1 << 20;

impl RunArgs {
    fn sampling(&self) -> Sampling {
        Sampling {
            temperature: self.temperature,
            top_p: self.top_p,
            top_k: self.top_k,
            min_p: self.min_p,
            repeat_penalty: self.repeat_penalty,
            seed: self.seed,
            max_tokens: self.max_tokens,
            stop: self.stop.clone(),
        }
    }

    /// The `--json-schema` format, read and checked (`None` without the flag).
    fn format(&self) -> anyhow::Result<Option<ResponseFormat>> {
        let Some(arg) = &self.json_schema else {
            return Ok(None);
        };
        let text = if arg.trim_start().starts_with('{') {
            arg.clone()
        } else {
            let path = std::path::Path::new(arg);
            let size = std::fs::metadata(path)
                .with_context(|| format!("--json-schema: cannot read {}", path.display()))?
                .len();
            anyhow::ensure!(
                size <= MAX_SCHEMA_FILE,
                "--json-schema: {} is {size} bytes; at most {MAX_SCHEMA_FILE}",
                path.display()
            );
            std::fs::read_to_string(path)
                .with_context(|| format!("--json-schema: cannot read {}", path.display()))?
        };
        let schema: serde_json::Value =
            serde_json::from_str(&text).context("--json-schema: not valid JSON")?;
        let format = ResponseFormat::json_schema(schema);
        format.validate().context("--json-schema")?;
        Ok(Some(format))
    }

    fn messages(&self) -> anyhow::Result<Vec<Message>> {
        let prompt = if self.prompt == "-" {
            std::io::read_to_string(std::io::stdin()).context("reading the prompt from stdin")?
        } else {
            self.prompt.clone()
        };
        let mut messages = Vec::new();
        if let Some(s) = &self.system {
            messages.push(Message::system(s.clone()));
        }
        messages.push(Message::user(prompt));
        Ok(messages)
    }
}

pub async fn run(args: RunArgs) -> anyhow::Result<()> {
    // Everything that can be checked is checked before the model is pulled or loaded.
    let spec = spec::parse(&args.approach)?;
    let strategy = strategies::build_spec(&spec)?;
    args.sampling()
        .validate()
        .context("invalid sampling options")?;
    let mut request = StrategyRequest::new(args.messages()?);
    request.sampling = args.sampling();
    request.n = args.n;
    request.format = args.format()?;
    if request.format.is_some() {
        strategy::check_request(strategy.as_ref(), &request).context("--json-schema")?;
    }
    request.raw = args.raw;
    if request.raw {
        strategy::check_request(strategy.as_ref(), &request).context("--raw")?;
    }
    let model = backends::model_name(&args.backend, args.model.clone())?;
    super::check_native(&args.backend, &model)?;
    let backend = backends::open(&args.backend, &model).await?;
    run_strategy(&args, &spec, strategy, backend, request).await
}

/// ` | requests N` for a footer: the HTTP requests sent to remote servers (a call of `n`
/// samples a server would not batch is `n` requests); nothing for a native model.
fn requests_sent(requests: u32) -> String {
    match requests {
        0 => String::new(),
        r => format!(" | requests {r}"),
    }
}

async fn run_strategy(
    args: &RunArgs,
    spec: &Spec,
    strategy: Box<dyn optillm_core::strategy::Strategy>,
    backend: std::sync::Arc<dyn optillm_core::Backend>,
    request: StrategyRequest,
) -> anyhow::Result<()> {
    let budget = Budget {
        max_total_tokens: args.max_total_tokens,
        max_duration: args.deadline,
    };
    // The final call of the approach (if it has one) streams to stdout as it runs.
    let streamed: Arc<Mutex<String>> = Arc::default();
    let into = Arc::clone(&streamed);
    let sink: TextSink = Arc::new(move |index, text: &str, _| {
        if index != 0 {
            return;
        }
        if let Ok(mut s) = into.lock() {
            s.push_str(text);
        }
        let mut out = std::io::stdout().lock();
        let _ = out.write_all(text.as_bytes()).and_then(|()| out.flush());
    });
    let backend_model = backend.model().to_string();
    let backend_model = backend_model.as_str();
    let ctx = Ctx::new(backend, budget).with_sink(sink);
    let outcome = strategy::run_in(ctx, strategy.as_ref(), &request).await?;
    let sent = streamed.lock().map(|s| s.clone()).unwrap_or_default();
    let mut out = std::io::stdout().lock();
    match outcome.answer.strip_prefix(sent.as_str()) {
        Some(rest) => writeln!(out, "{rest}")?,
        // Not the streamed text (cannot happen for a strategy that keeps the final-call
        // contract): print the answer apart.
        None => writeln!(out, "\n--- answer ---\n{}", outcome.answer)?,
    }
    for (i, choice) in outcome.choices.iter().enumerate().skip(1) {
        writeln!(out, "\n--- choice {i} ---\n{}", choice.text)?;
    }
    if let Some(path) = &args.trace {
        std::fs::write(path, outcome.trace_jsonl())
            .with_context(|| format!("writing the trace to {}", path.display()))?;
    }
    if let Some(v) = &outcome.vote {
        eprintln!("votes {} of {} | {}", v.count, v.total, v.summary());
    }
    eprintln!("{}", footer(backend_model, spec, &outcome));
    if let Some(speed) = speed(&outcome) {
        eprintln!("{speed}");
    }
    Ok(())
}

/// What the run cost: model, approach, choices, calls, HTTP requests, why the choices
/// stopped, tokens and wall time.
fn footer(model: &str, spec: &Spec, outcome: &Outcome) -> String {
    let u = &outcome.usage;
    let reasons: Vec<&str> = outcome
        .choices
        .iter()
        .map(|c| c.finish_reason.as_api_str())
        .collect();
    format!(
        "model {model} | approach {spec} | n {} | calls {}{} | finish {} | prompt {} tokens, completion {} tokens | wall {:.2} s{}",
        outcome.choices.len(),
        u.calls,
        requests_sent(u.requests),
        reasons.join(","),
        u.prompt_tokens,
        u.completion_tokens,
        outcome.wall.as_secs_f64(),
        if outcome.budget_exhausted {
            " | budget exhausted: best answer so far"
        } else {
            ""
        }
    )
}

/// Time to first token and speeds, for a run of one model call (`none`).
fn speed(outcome: &Outcome) -> Option<String> {
    let [call] = outcome.trace.as_slice() else {
        return None;
    };
    let t = &call.timings;
    let u: &Usage = &call.usage;
    Some(format!(
        "time to first token {:.0} ms | prompt {:.1} tok/s | decode {:.1} tok/s | total {:.2} s",
        t.time_to_first_token.unwrap_or_default().as_secs_f64() * 1000.0,
        t.prompt_tokens_per_second(u),
        t.decode_tokens_per_second(u),
        t.total.as_secs_f64()
    ))
}
