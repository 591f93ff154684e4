//! `optillm serve`: the OpenAI- and Ollama-compatible optimizing proxy.

use std::net::SocketAddr;
use std::sync::Arc;
use std::time::Duration;

use anyhow::Context;
use clap::Args;
use optillm_server::{ModelInfo, ServerConfig, StaticModels};

use crate::backends::{self, BackendArgs, BackendKind};

#[derive(Debug, Args)]
pub struct ServeArgs {
    /// Address to bind (loopback by default).
    #[arg(long, default_value = "127.0.0.1")]
    pub host: std::net::IpAddr,
    #[arg(long, default_value_t = 8000)]
    pub port: u16,
    /// Models to serve (repeatable). Native: loaded once at start and kept. Default: LLM_MODEL,
    /// else the manifest default (native), or every model of the remote server.
    #[arg(long, short)]
    pub model: Vec<String>,
    #[command(flatten)]
    pub backend: BackendArgs,
    /// Require `Authorization: Bearer <key>`.
    #[arg(long, env = "OPTILLM_API_KEY")]
    pub api_key: Option<String>,
    /// Requests running at once, 1..=4096 (the native backend decodes the ones that wait
    /// for it together, up to 16 sequences per round).
    #[arg(long, default_value_t = 8, value_parser = super::parse_max_concurrent)]
    pub max_concurrent: usize,
    /// Requests waiting for a slot, 0..=65536; more get 429.
    #[arg(long, default_value_t = 16, value_parser = super::parse_max_queue)]
    pub max_queue: usize,
    /// Approach used when a request names none.
    #[arg(long)]
    pub approach: Option<String>,
    /// Per-request budget: most prompt + completion tokens over all model calls.
    #[arg(long)]
    pub max_total_tokens: Option<u64>,
    /// Per-request budget: most seconds (> 0, at most 604800 = 7 days).
    #[arg(long, value_parser = super::parse_deadline)]
    pub deadline: Option<Duration>,
}

pub async fn serve(args: ServeArgs) -> anyhow::Result<()> {
    // Configuration errors come before any model is loaded: the default approach must
    // build, and the address must be free (it is bound now, served once models load).
    if let Some(approach) = &args.approach {
        let spec = optillm_core::spec::parse(approach)
            .with_context(|| format!("invalid --approach `{approach}`"))?;
        optillm_core::strategies::build_spec(&spec)
            .with_context(|| format!("invalid --approach `{approach}`"))?;
    }
    let mut names = args.model.clone();
    if names.is_empty() {
        names = match backends::remote_models(&args.backend).await? {
            Some(remote) => remote,
            None => vec![backends::model_name(None)?],
        };
    }
    for name in &names {
        super::check_native(&args.backend, name)?;
    }
    let bind = SocketAddr::new(args.host, args.port);
    let listener = tokio::net::TcpListener::bind(bind)
        .await
        .with_context(|| format!("cannot listen on {bind}"))?;
    let mut models = StaticModels::new();
    for name in &names {
        let backend = backends::open(&args.backend, name).await?;
        let mut info = ModelInfo::new(name.clone());
        info.context_length = backend.capabilities().context_length;
        info.owned_by = Some(match args.backend.backend {
            BackendKind::Native => "optillm".into(),
            BackendKind::Ollama => "ollama".into(),
            BackendKind::Openai => "openai".into(),
        });
        if let Ok(a) = optillm_models::find(name) {
            info.size = Some(a.size);
            info.digest = Some(a.sha256.clone());
            info.format = Some("gguf".into());
        }
        models.insert(info, backend);
    }
    let config = ServerConfig {
        bind: listener.local_addr().unwrap_or(bind),
        api_key: args.api_key.clone(),
        max_concurrent: args.max_concurrent,
        max_queue: args.max_queue,
        default_approach: args.approach.clone(),
        default_budget: optillm_core::Budget {
            max_total_tokens: args.max_total_tokens,
            max_duration: args.deadline,
        },
        ..ServerConfig::default()
    };
    eprintln!(
        "serving {} on http://{} (OpenAI: /v1/chat/completions, Ollama: /api/chat)",
        names.join(", "),
        config.bind
    );
    optillm_server::serve_on(listener, config, Arc::new(models), shutdown_signal())
        .await
        .context("the server stopped")
}

async fn shutdown_signal() {
    #[cfg(unix)]
    {
        use tokio::signal::unix::{SignalKind, signal};
        match signal(SignalKind::terminate()) {
            Ok(mut term) => {
                tokio::select! {
                    _ = tokio::signal::ctrl_c() => {}
                    _ = term.recv() => {}
                }
            }
            Err(_) => {
                let _ = tokio::signal::ctrl_c().await;
            }
        }
    }
    #[cfg(not(unix))]
    {
        let _ = tokio::signal::ctrl_c().await;
    }
    eprintln!("shutting down: finishing requests in flight");
}
