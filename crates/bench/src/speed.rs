//! The speed table of `optillm bench`: load time, time to first token, time per token,
//! prompt and decode throughput, and peak memory of one backend.
//!
//! Each run streams one greedy completion of a fixed prompt and times it from the
//! client side: the first token is the first non-empty text delta; decode speed is the
//! tokens after the first over the time after the first. Prompt throughput uses the
//! backend's own prompt-evaluation time when it reports one, else the time to first
//! token (which then also holds the first sampling step). Warm-up runs are not counted;
//! the table gives the median of the measured runs.

use std::time::{Duration, Instant};

use optillm_core::{Backend, ChatRequest, Sampling, StreamEvent};
use serde::{Deserialize, Serialize};

use crate::error::{BenchError, Result};

/// What to measure.
#[derive(Debug, Clone, PartialEq)]
pub struct SpeedOptions {
    pub prompt: String,
    /// Tokens to generate per run.
    pub max_tokens: u32,
    /// Runs before measuring (model load into caches, allocator warm-up).
    pub warmup: usize,
    /// Measured runs.
    pub runs: usize,
}

impl Default for SpeedOptions {
    fn default() -> Self {
        Self {
            prompt: "Write a short story about a lighthouse keeper who finds a message in a \
                     bottle. Describe the weather, the keeper's daily routine, the moment the \
                     bottle washes ashore, and what the message says. Use plain language."
                .to_string(),
            max_tokens: 64,
            warmup: 1,
            runs: 3,
        }
    }
}

/// One measured run.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct SpeedRun {
    pub prompt_tokens: u32,
    pub completion_tokens: u32,
    pub first_token_ms: f64,
    pub total_ms: f64,
    /// Prompt tokens per second (`None` when no prompt time is known).
    pub prompt_tps: Option<f64>,
    /// Generated tokens per second after the first (`None` with fewer than 2 tokens).
    pub decode_tps: Option<f64>,
}

impl SpeedRun {
    pub fn per_token_ms(&self) -> Option<f64> {
        self.decode_tps.filter(|t| *t > 0.0).map(|t| 1000.0 / t)
    }
}

/// The speed of one backend: medians over the measured runs.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct SpeedReport {
    pub model: String,
    pub load_ms: f64,
    pub first_token_ms: f64,
    pub per_token_ms: Option<f64>,
    pub prompt_tps: Option<f64>,
    pub decode_tps: Option<f64>,
    /// Peak resident memory of this process (`VmHWM`), when the platform tells.
    pub peak_rss_bytes: Option<u64>,
    pub prompt_tokens: u32,
    pub completion_tokens: u32,
    pub runs: Vec<SpeedRun>,
}

impl SpeedReport {
    /// Rows of several reports as one Markdown table.
    pub fn markdown_table(reports: &[SpeedReport]) -> String {
        let mut out = String::from(
            "| model | load ms | first token ms | per token ms | prompt tok/s | decode tok/s | peak RSS MiB | runs |\n\
             |---|---:|---:|---:|---:|---:|---:|---:|\n",
        );
        for r in reports {
            out.push_str(&r.markdown_row());
        }
        out
    }

    fn markdown_row(&self) -> String {
        let opt = |v: Option<f64>, digits: usize| match v {
            Some(v) => format!("{v:.digits$}"),
            None => "-".to_string(),
        };
        format!(
            "| {} | {:.0} | {:.1} | {} | {} | {} | {} | {} |\n",
            self.model.replace('|', "\\|"),
            self.load_ms,
            self.first_token_ms,
            opt(self.per_token_ms, 2),
            opt(self.prompt_tps, 1),
            opt(self.decode_tps, 1),
            opt(self.peak_rss_bytes.map(|b| b as f64 / (1024.0 * 1024.0)), 1),
            self.runs.len()
        )
    }

    /// This report as a Markdown table with a note on what was measured.
    pub fn to_markdown(&self) -> String {
        format!(
            "{}\nMedians of {} runs after warm-up; {} prompt tokens, {} generated tokens per run.\n",
            Self::markdown_table(std::slice::from_ref(self)),
            self.runs.len(),
            self.prompt_tokens,
            self.completion_tokens
        )
    }

    /// This report as pretty JSON.
    pub fn to_json(&self) -> Result<String> {
        serde_json::to_string_pretty(self).map_err(|source| BenchError::Json {
            path: "speed report".into(),
            line: 0,
            source,
        })
    }
}

/// Measures `backend` (which took `load_time` to load) as [`SpeedOptions`] say.
pub async fn measure_speed(
    backend: &dyn Backend,
    load_time: Duration,
    options: &SpeedOptions,
) -> Result<SpeedReport> {
    if options.runs == 0 {
        return Err(BenchError::InvalidArgument(
            "at least one measured run is needed".into(),
        ));
    }
    if options.max_tokens == 0 {
        return Err(BenchError::InvalidArgument(
            "max_tokens must be at least 1".into(),
        ));
    }
    let request = ChatRequest::user(options.prompt.clone()).with_sampling(
        Sampling::default()
            .with_temperature(0.0)
            .with_seed(0)
            .with_max_tokens(options.max_tokens),
    );
    for _ in 0..options.warmup {
        timed_run(backend, request.clone()).await?;
    }
    let mut runs = Vec::with_capacity(options.runs);
    for _ in 0..options.runs {
        runs.push(timed_run(backend, request.clone()).await?);
    }
    let per_token: Vec<f64> = runs.iter().filter_map(SpeedRun::per_token_ms).collect();
    Ok(SpeedReport {
        model: backend.model().to_string(),
        load_ms: load_time.as_secs_f64() * 1000.0,
        first_token_ms: median(runs.iter().map(|r| r.first_token_ms).collect()).unwrap_or(0.0),
        per_token_ms: median(per_token),
        prompt_tps: median(runs.iter().filter_map(|r| r.prompt_tps).collect()),
        decode_tps: median(runs.iter().filter_map(|r| r.decode_tps).collect()),
        peak_rss_bytes: peak_rss_bytes(),
        prompt_tokens: runs.first().map_or(0, |r| r.prompt_tokens),
        completion_tokens: median(
            runs.iter()
                .map(|r| f64::from(r.completion_tokens))
                .collect(),
        )
        .map_or(0, |m| m.round() as u32),
        runs,
    })
}

async fn timed_run(backend: &dyn Backend, request: ChatRequest) -> Result<SpeedRun> {
    let started = Instant::now();
    let mut stream = backend.stream(request).await?;
    let mut first: Option<Duration> = None;
    while let Some(event) = stream.next_event().await {
        match event? {
            StreamEvent::Delta { text, .. } => {
                if first.is_none() && !text.is_empty() {
                    first = Some(started.elapsed());
                }
            }
            StreamEvent::Done(completion) => {
                let total = started.elapsed();
                let first = first.unwrap_or(total);
                let usage = completion.usage;
                let prompt_time = if completion.timings.prompt_eval > Duration::ZERO {
                    completion.timings.prompt_eval
                } else {
                    first
                };
                let decode_time = total.saturating_sub(first);
                return Ok(SpeedRun {
                    prompt_tokens: usage.prompt_tokens,
                    completion_tokens: usage.completion_tokens,
                    first_token_ms: ms(first),
                    total_ms: ms(total),
                    prompt_tps: rate(usage.prompt_tokens, prompt_time),
                    decode_tps: rate(usage.completion_tokens.saturating_sub(1), decode_time),
                });
            }
        }
    }
    Err(BenchError::Backend(optillm_core::BackendError::Protocol(
        "the stream ended before its final event".into(),
    )))
}

fn ms(d: Duration) -> f64 {
    d.as_secs_f64() * 1000.0
}

fn rate(tokens: u32, d: Duration) -> Option<f64> {
    let s = d.as_secs_f64();
    (tokens > 0 && s > 0.0).then(|| f64::from(tokens) / s)
}

fn median(mut v: Vec<f64>) -> Option<f64> {
    if v.is_empty() {
        return None;
    }
    v.sort_by(f64::total_cmp);
    let mid = v.len() / 2;
    Some(if v.len() % 2 == 1 {
        v[mid]
    } else {
        (v[mid - 1] + v[mid]) / 2.0
    })
}

/// Peak resident memory of this process in bytes (`VmHWM` of `/proc/self/status`);
/// `None` where there is no such file.
pub fn peak_rss_bytes() -> Option<u64> {
    let status = std::fs::read_to_string("/proc/self/status").ok()?;
    parse_vm_hwm(&status)
}

fn parse_vm_hwm(status: &str) -> Option<u64> {
    let line = status.lines().find(|l| l.starts_with("VmHWM:"))?;
    let mut parts = line.split_whitespace().skip(1);
    let value: u64 = parts.next()?.parse().ok()?;
    let factor = match parts.next() {
        Some("kB") | None => 1024,
        Some("mB") | Some("MB") => 1024 * 1024,
        Some(_) => return None,
    };
    Some(value * factor)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn vm_hwm_is_parsed() {
        let status = "Name:\tx\nVmPeak:\t  2000 kB\nVmHWM:\t   1536 kB\nVmRSS:\t 1000 kB\n";
        assert_eq!(parse_vm_hwm(status), Some(1536 * 1024));
        assert_eq!(parse_vm_hwm("Name: x\n"), None);
        // This process has a peak RSS on Linux.
        if cfg!(target_os = "linux") {
            assert!(peak_rss_bytes().is_some_and(|b| b > 1024 * 1024));
        }
    }

    #[test]
    fn medians() {
        assert_eq!(median(vec![3.0, 1.0, 2.0]), Some(2.0));
        assert_eq!(median(vec![4.0, 1.0, 2.0, 3.0]), Some(2.5));
        assert_eq!(median(vec![]), None);
    }
}
