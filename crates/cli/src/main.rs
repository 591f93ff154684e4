//! `optillm`: run small models with inference-time strategies, natively or remotely.

mod backends;
mod commands;

use std::process::ExitCode;

use clap::{Parser, Subcommand};

use crate::backends::BackendArgs;
use crate::commands::run::RunArgs;

#[derive(Debug, Parser)]
#[command(
    name = "optillm",
    version,
    about = "Inference-time optimisation for small language models"
)]
struct Cli {
    #[command(subcommand)]
    command: Command,
}

#[derive(Debug, Subcommand)]
enum Command {
    /// Answer a prompt, streaming the answer to stdout (usage and timings go to stderr).
    Run(RunArgs),
    /// Download models or data sets of the manifest, or any GGUF file by `hf:` spec or
    /// https URL, into the cache (default: the default model).
    Pull(commands::models::PullArgs),
    /// Re-hash cached models and data sets against the manifest's SHA-256, and GGUF files
    /// pulled by `hf:` spec or URL against the lock file (default: every one in the
    /// cache); remove files left by interrupted pulls.
    Verify {
        /// Manifest names or aliases, `hf:` specs or URLs.
        names: Vec<String>,
        /// Download damaged or missing files again.
        #[arg(long)]
        repair: bool,
    },
    /// List the manifest's models and data sets and the GGUF files pulled by `hf:` spec or
    /// URL, and whether they are local; with
    /// `--backend ollama|openai`, the server's models too.
    Models {
        #[command(flatten)]
        backend: BackendArgs,
    },
    /// Serve the OpenAI and Ollama APIs with approaches chosen by model name (`moa-smollm2-135m`).
    Serve(commands::serve::ServeArgs),
    /// Measure speed per model: first token, per-token time, tokens/s, peak RSS, load time.
    Bench(commands::bench::BenchArgs),
    /// Measure accuracy against cost per approach on an evaluation set.
    Eval(commands::bench::EvalArgs),
    /// List the approaches with their parameters and defaults.
    Approaches {
        /// Print JSON instead of a table.
        #[arg(long)]
        json: bool,
    },
}

/// Whether log lines may carry terminal colour codes: only when stderr is a terminal
/// and `NO_COLOR` is unset or empty (<https://no-color.org>).
fn colour_logs() -> bool {
    use std::io::IsTerminal;
    std::io::stderr().is_terminal() && std::env::var_os("NO_COLOR").is_none_or(|v| v.is_empty())
}

fn main() -> ExitCode {
    tracing_subscriber::fmt()
        .with_env_filter(
            tracing_subscriber::EnvFilter::try_from_env("OPTILLM_LOG")
                .unwrap_or_else(|_| tracing_subscriber::EnvFilter::new("warn")),
        )
        .with_writer(std::io::stderr)
        .with_ansi(colour_logs())
        .init();
    let cli = Cli::parse();
    let runtime = match tokio::runtime::Runtime::new() {
        Ok(rt) => rt,
        Err(e) => {
            eprintln!("error: cannot start the async runtime: {e}");
            return ExitCode::FAILURE;
        }
    };
    let result = runtime.block_on(async move {
        match cli.command {
            Command::Run(args) => commands::run::run(args).await,
            Command::Pull(args) => commands::models::pull(args).await,
            Command::Verify { names, repair } => commands::models::verify(names, repair).await,
            Command::Models { backend } => commands::models::list(backend).await,
            Command::Serve(args) => commands::serve::serve(args).await,
            Command::Bench(args) => commands::bench::bench(args).await,
            Command::Eval(args) => commands::bench::eval(args).await,
            Command::Approaches { json } => commands::approaches(json),
        }
    });
    match result {
        Ok(()) => ExitCode::SUCCESS,
        Err(e) => {
            eprintln!("error: {e:#}");
            ExitCode::FAILURE
        }
    }
}
