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
    /// Per-request budget: most seconds (> 0, at most 604800 = 7 days); a run cut by it
    /// answers with its best answer so far.
    #[arg(long, default_value = "600", value_parser = super::parse_deadline)]
    pub deadline: Duration,
    /// Largest count of work an approach parameter may ask for per stage (`k`, `n`,
    /// `agents`, `rounds`, `simulations`, list lengths); more is refused with 400.
    #[arg(long, default_value_t = 64, value_parser = parse_max_count)]
    pub max_count: u32,
    /// Browser origins allowed to call the server besides local ones (comma-separated,
    /// `*` for any), e.g. `https://ui.example:8443`.
    #[arg(long, env = "OPTILLM_ORIGINS", value_delimiter = ',')]
    pub allowed_origins: Vec<String>,
    /// Host names accepted in `Host` besides local ones when bound to loopback
    /// (comma-separated, `*` for any).
    #[arg(long, env = "OPTILLM_HOSTS", value_delimiter = ',')]
    pub allowed_hosts: Vec<String>,
    /// Seconds a client has to send a request's headers; also the longest idle time of
    /// a keep-alive connection.
    #[arg(long, default_value = "10", value_parser = super::parse_deadline)]
    pub header_timeout: Duration,
    /// Seconds a client has to send a request's body (408 after).
    #[arg(long, default_value = "30", value_parser = super::parse_deadline)]
    pub body_timeout: Duration,
    /// Largest request body in MiB (413 beyond), 1..=1024.
    #[arg(long, default_value_t = 8, value_parser = parse_body_mib)]
    pub max_body_mib: usize,
    /// Most connections open at once (more wait to be accepted), 1..=65536.
    #[arg(long, default_value_t = 256, value_parser = parse_max_connections)]
    pub max_connections: usize,
    /// Seconds the requests in flight may run after SIGINT/SIGTERM before they are
    /// dropped; a second signal stops at once.
    #[arg(long, default_value = "10", value_parser = super::parse_deadline)]
    pub shutdown_grace: Duration,
}

fn parse_max_count(s: &str) -> Result<u32, String> {
    super::parse_in(s, 1, 4096)
}

fn parse_body_mib(s: &str) -> Result<usize, String> {
    super::parse_in(s, 1, 1024)
}

fn parse_max_connections(s: &str) -> Result<usize, String> {
    super::parse_in(s, 1, 1 << 16)
}

pub async fn serve(args: ServeArgs) -> anyhow::Result<()> {
    // Configuration errors come before any model is loaded: the default approach must
    // build, and the address must be free (it is bound now, served once models load).
    if args.api_key.as_deref().is_some_and(|k| k.trim().is_empty()) {
        anyhow::bail!("the API key is empty: give a non-empty --api-key (OPTILLM_API_KEY) or none");
    }
    if let Some(approach) = &args.approach {
        let spec = optillm_core::spec::parse(approach)
            .with_context(|| format!("invalid --approach `{approach}`"))?;
        optillm_core::strategies::build_spec(&spec)
            .with_context(|| format!("invalid --approach `{approach}`"))?;
    }
    let mut names = args.model.clone();
    if names.is_empty() {
        // Every model of the remote server, served under its own name (and behind
        // approach prefixes: `moa-NAME`).
        names = match backends::remote_models(&args.backend).await? {
            Some(remote) if remote.is_empty() => {
                return Err(backends::ListError::Empty {
                    server: backends::describe_server(&args.backend),
                }
                .into());
            }
            Some(remote) => remote,
            None => vec![backends::model_name(&args.backend, None)?],
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
            _ if args.backend.pool.is_some() => "pool".into(),
            BackendKind::Native => "optillm".into(),
            BackendKind::Ollama => "ollama".into(),
            BackendKind::Openai => "openai".into(),
        });
        if let Ok(a) = optillm_models::find(name) {
            info.size = Some(a.size);
            info.digest = Some(a.sha256.clone());
            info.format = Some("gguf".into());
        } else if let Some(e) = remote_entry(name) {
            info.size = Some(e.size);
            info.digest = Some(e.sha256);
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
            max_duration: Some(args.deadline),
        },
        max_body_bytes: args.max_body_mib * 1024 * 1024,
        header_timeout: args.header_timeout,
        body_timeout: args.body_timeout,
        max_connections: args.max_connections,
        shutdown_grace: args.shutdown_grace,
        allowed_hosts: args.allowed_hosts.clone(),
        allowed_origins: args.allowed_origins.clone(),
        max_count: args.max_count,
        ..ServerConfig::default()
    };
    eprintln!(
        "serving {} on http://{} (OpenAI: /v1/chat/completions, /v1/completions; Ollama: /api/chat, /api/generate)",
        names.join(", "),
        config.bind
    );
    optillm_server::serve_on(
        listener,
        config,
        Arc::new(models),
        optillm_server::shutdown_signal(),
    )
    .await
    .context("the server stopped")
}

/// The lock entry of a model served by `hf:` spec or URL (pulled by now).
fn remote_entry(name: &str) -> Option<optillm_models::LockEntry> {
    if !optillm_models::RemoteModel::looks_remote(name) {
        return None;
    }
    let model = optillm_models::RemoteModel::parse(name).ok()?;
    optillm_models::Cache::from_env()
        .ok()?
        .remote_entry(&model)
        .ok()
        .flatten()
}
