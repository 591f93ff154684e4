pub mod bench;
pub mod models;
pub mod run;
pub mod serve;

use std::io::Write;
use std::time::Duration;

use anyhow::Context;
use optillm_core::strategies;

use crate::backends::BackendArgs;

/// Longest `--deadline` accepted, in seconds (7 days).
pub const DEADLINE_MAX_SECS: f64 = 7.0 * 24.0 * 3600.0;
/// Most answers per request (`-n`).
pub const N_MAX: u32 = 256;
/// Most tokens per completion (`--max-tokens`): the largest context accepted.
pub const MAX_TOKENS_MAX: u32 = 1 << 20;
/// Most requests running at once in `serve`.
pub const MAX_CONCURRENT_MAX: usize = 4096;
/// Most requests waiting in `serve`.
pub const MAX_QUEUE_MAX: usize = 1 << 16;

/// `--deadline`: seconds, finite, > 0 and at most [`DEADLINE_MAX_SECS`].
pub fn parse_deadline(s: &str) -> Result<Duration, String> {
    let secs: f64 = s
        .trim()
        .parse()
        .map_err(|_| format!("`{s}` is not a number of seconds"))?;
    if !secs.is_finite() || secs <= 0.0 || secs > DEADLINE_MAX_SECS {
        return Err(format!(
            "{s} is out of range: a number of seconds > 0 and at most {DEADLINE_MAX_SECS} (7 days)"
        ));
    }
    Duration::try_from_secs_f64(secs).map_err(|e| format!("{s}: {e}"))
}

/// An integer in `min..=max`, with the range in the message.
pub(crate) fn parse_in<T>(s: &str, min: T, max: T) -> Result<T, String>
where
    T: std::str::FromStr + PartialOrd + std::fmt::Display + Copy,
{
    let v: T = s
        .trim()
        .parse()
        .map_err(|_| format!("`{s}` is not an integer in {min}..={max}"))?;
    if v < min || v > max {
        return Err(format!("{s} is out of range: allowed {min}..={max}"));
    }
    Ok(v)
}

/// `-n`: 1..=[`N_MAX`].
pub fn parse_n(s: &str) -> Result<u32, String> {
    parse_in(s, 1, N_MAX)
}

/// `--max-tokens`: 1..=[`MAX_TOKENS_MAX`].
pub fn parse_max_tokens(s: &str) -> Result<u32, String> {
    parse_in(s, 1, MAX_TOKENS_MAX)
}

/// `--max-concurrent`: 1..=[`MAX_CONCURRENT_MAX`].
pub fn parse_max_concurrent(s: &str) -> Result<usize, String> {
    parse_in(s, 1, MAX_CONCURRENT_MAX)
}

/// `--max-queue`: 0..=[`MAX_QUEUE_MAX`].
pub fn parse_max_queue(s: &str) -> Result<usize, String> {
    parse_in(s, 0, MAX_QUEUE_MAX)
}

/// `--runs` of `bench`: 1..=1000.
pub fn parse_runs(s: &str) -> Result<usize, String> {
    parse_in(s, 1, 1000)
}

/// `--ctx-size` (for a clap `value_parser`): the native backend's static range
/// (the model's trained context bounds it further when it loads).
#[cfg(feature = "llama")]
#[allow(dead_code)]
pub fn parse_ctx_size(s: &str) -> Result<u32, String> {
    parse_in(s, optillm_llama::N_CTX_MIN, optillm_llama::N_CTX_MAX)
}

/// `--threads` (for a clap `value_parser`): 1..=512.
#[cfg(feature = "llama")]
#[allow(dead_code)]
pub fn parse_threads(s: &str) -> Result<i32, String> {
    parse_in(s, 1, optillm_llama::N_THREADS_MAX)
}

/// Checks, before anything is downloaded or loaded, what can be checked of a native
/// model: the backend settings (`--ctx-size`, `--threads`) and that the name is a model
/// (a manifest model, an Ollama name mapped to one, or a file; not a data set). Remote
/// backends are left alone.
pub fn check_native(args: &BackendArgs, model: &str) -> anyhow::Result<()> {
    if args.is_remote() {
        return Ok(());
    }
    #[cfg(feature = "llama")]
    {
        let config = optillm_llama::LlamaConfig {
            n_ctx: args.ctx_size,
            n_threads: args.threads,
            ..Default::default()
        };
        if let Err(e) = config.validate() {
            let flag = match e.setting {
                "n_ctx" => "--ctx-size",
                "n_threads" => "--threads",
                other => other,
            };
            return Err(e).with_context(|| format!("invalid {flag}"));
        }
    }
    // `hf:` specs and URLs are parsed here; they are pulled when opened.
    if !matches!(
        optillm_models::resolve_model(model),
        Ok(optillm_models::Resolved::Remote(_))
    ) {
        optillm::resolve(model)?;
    }
    Ok(())
}

/// `optillm approaches`: slugs, descriptions, parameters with defaults.
pub fn approaches(json: bool) -> anyhow::Result<()> {
    let catalogue = strategies::catalogue();
    let mut out = std::io::stdout().lock();
    if json {
        writeln!(out, "{}", serde_json::to_string_pretty(&catalogue)?)?;
        return Ok(());
    }
    for a in catalogue {
        writeln!(out, "{:<18} {}", a.slug, a.description)?;
        for (k, v) in &a.params {
            writeln!(out, "{:<18}   {k} = {v}", "")?;
        }
    }
    writeln!(
        out,
        "\nCombine with `a&b` (pipeline), `a|b` (parallel), parentheses, and per-stage parameters: `bon(n=5)&moa`."
    )?;
    Ok(())
}
