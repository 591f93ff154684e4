//! `optillm run`: one prompt through an approach.

use std::io::Write;
use std::path::PathBuf;
use std::time::Duration;

use anyhow::Context;
use clap::Args;
use futures::StreamExt;
use optillm_core::spec::{self, Spec};
use std::sync::{Arc, Mutex};

use optillm_core::strategy::{self, Budget, StrategyRequest};
use optillm_core::{
    ChatRequest, Completion, Ctx, Message, ResponseFormat, Sampling, StreamEvent, TextSink,
    strategies,
};

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
    let format = args.format()?;
    if format.is_some() {
        // An approach's answer is not one constrained model call.
        anyhow::ensure!(
            spec.is_none(),
            "--json-schema works with the `none` approach only, not `{spec}`"
        );
        anyhow::ensure!(
            args.trace.is_none(),
            "--json-schema cannot be combined with --trace"
        );
    }
    let messages = args.messages()?;
    let model = backends::model_name(&args.backend, args.model.clone())?;
    super::check_native(&args.backend, &model)?;
    let backend = backends::open(&args.backend, &model).await?;
    if spec.is_none() && args.trace.is_none() {
        let mut request = ChatRequest::new(messages)
            .with_sampling(args.sampling())
            .with_n(args.n);
        request.format = format;
        return stream_plain(backend.as_ref(), request).await;
    }
    run_strategy(&args, &spec, strategy, backend, messages).await
}

/// ` | requests N` for a footer: the HTTP requests sent to remote servers (a call of `n`
/// samples a server would not batch is `n` requests); nothing for a native model.
fn requests_sent(requests: u32) -> String {
    match requests {
        0 => String::new(),
        r => format!(" | requests {r}"),
    }
}

/// `none`: tokens go to stdout as the model produces them.
async fn stream_plain(
    backend: &dyn optillm_core::Backend,
    request: ChatRequest,
) -> anyhow::Result<()> {
    let n = request.n;
    let mut stream = backend.stream(request).await?;
    let mut out = std::io::stdout().lock();
    let mut done: Option<Completion> = None;
    while let Some(event) = stream.next().await {
        match event? {
            StreamEvent::Delta { index: 0, text, .. } => {
                out.write_all(text.as_bytes())?;
                out.flush()?;
            }
            StreamEvent::Delta { .. } => {}
            StreamEvent::Done(c) => done = Some(c),
        }
    }
    let completion = done.context("the backend ended the stream without a final event")?;
    writeln!(out)?;
    for choice in completion.choices.iter().skip(1) {
        writeln!(out, "\n--- choice {} ---\n{}", choice.index, choice.text)?;
    }
    let u = &completion.usage;
    let t = &completion.timings;
    let reasons: Vec<&str> = completion
        .choices
        .iter()
        .map(|c| c.finish_reason.as_api_str())
        .collect();
    eprintln!(
        "model {} | n {}{} | finish {} | prompt {} tokens, completion {} tokens",
        completion.model,
        n,
        requests_sent(t.requests),
        reasons.join(","),
        u.prompt_tokens,
        u.completion_tokens
    );
    eprintln!(
        "time to first token {:.0} ms | prompt {:.1} tok/s | decode {:.1} tok/s | total {:.2} s",
        t.time_to_first_token.unwrap_or_default().as_secs_f64() * 1000.0,
        t.prompt_tokens_per_second(u),
        t.decode_tokens_per_second(u),
        t.total.as_secs_f64()
    );
    Ok(())
}

async fn run_strategy(
    args: &RunArgs,
    spec: &Spec,
    strategy: Box<dyn optillm_core::strategy::Strategy>,
    backend: std::sync::Arc<dyn optillm_core::Backend>,
    messages: Vec<Message>,
) -> anyhow::Result<()> {
    let mut request = StrategyRequest::new(messages);
    request.sampling = args.sampling();
    request.n = args.n;
    let budget = Budget {
        max_total_tokens: args.max_total_tokens,
        max_duration: args.deadline,
    };
    // The final call of the approach (if it has one) streams to stdout as it runs.
    let streamed: Arc<Mutex<String>> = Arc::default();
    let into = Arc::clone(&streamed);
    let sink: TextSink = Arc::new(move |index, text: &str| {
        if index != 0 {
            return;
        }
        if let Ok(mut s) = into.lock() {
            s.push_str(text);
        }
        let mut out = std::io::stdout().lock();
        let _ = out.write_all(text.as_bytes()).and_then(|()| out.flush());
    });
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
        writeln!(out, "\n--- choice {i} ---\n{choice}")?;
    }
    if let Some(path) = &args.trace {
        std::fs::write(path, outcome.trace_jsonl())
            .with_context(|| format!("writing the trace to {}", path.display()))?;
    }
    if let Some(v) = &outcome.vote {
        eprintln!("votes {} of {} | {}", v.count, v.total, v.summary());
    }
    let u = &outcome.usage;
    eprintln!(
        "approach {} | calls {}{} | prompt {} tokens, completion {} tokens | wall {:.2} s{}",
        spec,
        u.calls,
        requests_sent(u.requests),
        u.prompt_tokens,
        u.completion_tokens,
        outcome.wall.as_secs_f64(),
        if outcome.budget_exhausted {
            " | budget exhausted: best answer so far"
        } else {
            ""
        }
    );
    Ok(())
}
