//! Choosing and opening a backend from command-line options.

use std::path::{Path, PathBuf};
use std::sync::Arc;

use anyhow::{Context, bail};
use clap::{Args, ValueEnum};
use optillm::Backend;
use optillm_pool::config::{OpenaiServer as PoolServer, PoolFile, UpstreamKind, UpstreamSpec};
use optillm_pool::{Pool, PoolOptions, Upstream};

/// Which kind of backend serves the model.
#[derive(Debug, Clone, Copy, PartialEq, Eq, ValueEnum)]
pub enum BackendKind {
    /// llama.cpp in this process (GGUF files).
    Native,
    /// An Ollama server.
    Ollama,
    /// An OpenAI-compatible server (vLLM, llama-server, hosted endpoints).
    Openai,
}

/// What an OpenAI-compatible server is, for the fields outside OpenAI's spec it takes.
#[derive(Debug, Clone, Copy, Default, PartialEq, Eq, ValueEnum)]
pub enum OpenaiServer {
    /// Neither of the fields below (OpenAI and servers that refuse unknown fields).
    #[default]
    Generic,
    /// llama.cpp's llama-server: GBNF grammars sent in `grammar`.
    LlamaServer,
    /// vLLM: a conversation that ends with an assistant message is continued
    /// (`continue_final_message`), as `calculator`'s programs need.
    Vllm,
}

#[derive(Debug, Clone, Args)]
pub struct BackendArgs {
    /// Backend kind.
    #[arg(long, value_enum, env = "OPTILLM_BACKEND", default_value = "native")]
    pub backend: BackendKind,
    /// Server URL for remote backends (default: OLLAMA_HOST or OPENAI_BASE_URL, else the
    /// usual local address). Repeat it to spread the requests over several servers of the
    /// `--backend` kind (a pool: least outstanding work first, a failed server skipped
    /// with back-off, a request that failed before its answer moved to another server).
    #[arg(long, value_name = "URL")]
    pub url: Vec<String>,
    /// A pool file (TOML): upstream servers of any remote kind, each with its URL, API-key
    /// variable, weight, most requests in flight and model name. Replaces --backend and
    /// --url. Format:
    ///
    ///   model = "smollm2"               # the pool's model name (default for upstreams)
    ///   backoff_min_ms = 1000           # optional; back-off doubles up to backoff_max_ms
    ///   [[upstream]]
    ///   kind = "openai"                 # or "ollama"
    ///   url = "http://10.0.0.2:8080/v1"
    ///   api_key_env = "BOX_KEY"         # optional: the variable holding the key
    ///   model = "smollm2-135m.gguf"     # optional: its name on that server
    ///   weight = 2                      # optional, default 1
    ///   max_concurrent = 4              # optional, default 8
    ///   server = "vllm"                 # optional (openai): as --openai-server
    #[arg(
        long,
        value_name = "FILE.toml",
        conflicts_with = "url",
        verbatim_doc_comment
    )]
    pub pool: Option<PathBuf>,
    /// CPU threads for the native backend, 1..=512 (default: all cores).
    #[arg(long, value_parser = crate::commands::parse_threads)]
    pub threads: Option<i32>,
    /// Context size for the native backend, 16 up to the model's trained context
    /// (default: the model's, at most 8192).
    #[arg(long, value_parser = crate::commands::parse_ctx_size)]
    pub ctx_size: Option<u32>,
    /// KV cache type for the native backend: f16 (default) or q8_0 (half the cache's
    /// memory; llama.cpp's `--cache-type-k/-v q8_0`).
    #[arg(long, value_name = "TYPE", value_parser = ["f16", "q8_0"])]
    pub kv_type: Option<String>,
    /// Recent prompts (with their replies) whose KV cells the native backend keeps, so
    /// that a prompt sharing their beginning evaluates only the rest (default 4; 0 turns
    /// reuse off).
    #[arg(long, value_name = "N", value_parser = clap::value_parser!(u32).range(0..=64))]
    pub prefix_cache: Option<u32>,
    /// Seconds the native backend waits idle before it frees the KV cache that requests
    /// grew (a long prompt, n > 1 samples, token-level jobs), back to what it allocated
    /// at load; `never` keeps it (default 60).
    #[arg(long, value_name = "SECS|never", value_parser = parse_release_after)]
    pub release_after: Option<ReleaseAfter>,
    /// Token-level jobs (`calculator`, `choice_likelihood`, ...) the native backend runs
    /// at once, each in a KV cache of its own, their steps taking turns; more wait
    /// (default 2).
    #[arg(long, value_name = "N", value_parser = clap::value_parser!(u32).range(1..=16))]
    pub token_jobs: Option<u32>,
    /// Remote backends: seconds to wait for the next chunk once an answer has begun,
    /// before the request fails as stalled and is cancelled (default 60).
    #[arg(long, value_name = "SECS", value_parser = parse_idle_timeout)]
    pub idle_timeout: Option<std::time::Duration>,
    /// What the OpenAI-compatible server(s) are: `llama-server` takes GBNF grammars,
    /// `vllm` continues a final assistant message when asked; `generic` (default) gets
    /// no field outside OpenAI's spec.
    #[arg(long, value_enum, default_value = "generic")]
    pub openai_server: OpenaiServer,
}

/// `config` with the fields `server` takes.
#[cfg(feature = "openai")]
fn for_server(
    config: optillm_openai::OpenAiConfig,
    server: OpenaiServer,
) -> optillm_openai::OpenAiConfig {
    config
        .with_grammar(server == OpenaiServer::LlamaServer)
        .with_continue_final_message(server == OpenaiServer::Vllm)
}

/// `--release-after`: a number of seconds, or never.
#[derive(Debug, Clone, Copy, PartialEq)]
pub enum ReleaseAfter {
    After(std::time::Duration),
    Never,
}

impl std::fmt::Display for ReleaseAfter {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        match self {
            Self::After(d) => write!(f, "{}", d.as_secs_f64()),
            Self::Never => f.write_str("never"),
        }
    }
}

fn parse_release_after(s: &str) -> Result<ReleaseAfter, String> {
    if s.trim() == "never" {
        return Ok(ReleaseAfter::Never);
    }
    parse_seconds(s)
        .map_err(|_| format!("{s:?} is neither a number of seconds nor `never`"))
        .map(ReleaseAfter::After)
}

/// A finite number of seconds, 0 or more.
fn parse_seconds(s: &str) -> Result<std::time::Duration, String> {
    let secs: f64 = s
        .trim()
        .parse()
        .map_err(|_| format!("{s:?} is not a number of seconds"))?;
    if secs.is_nan() || secs < 0.0 {
        return Err("the seconds must be 0 or more".to_string());
    }
    std::time::Duration::try_from_secs_f64(secs).map_err(|e| e.to_string())
}

/// A positive, finite number of seconds.
fn parse_idle_timeout(s: &str) -> Result<std::time::Duration, String> {
    match parse_seconds(s)? {
        std::time::Duration::ZERO => Err("the idle timeout must be above zero".to_string()),
        d => Ok(d),
    }
}

impl BackendArgs {
    /// Whether requests go to servers (a remote `--backend` or a `--pool` file).
    pub fn is_remote(&self) -> bool {
        self.pool.is_some() || self.backend != BackendKind::Native
    }

    /// The arguments that choose the same backend in a child `optillm` process.
    pub fn child_args(&self) -> Vec<String> {
        let mut out = Vec::new();
        match &self.pool {
            Some(path) => {
                out.push("--pool".to_string());
                out.push(path.to_string_lossy().into_owned());
            }
            None => {
                out.push("--backend".to_string());
                out.push(format!("{:?}", self.backend).to_lowercase());
                for url in &self.url {
                    out.push("--url".to_string());
                    out.push(url.clone());
                }
            }
        }
        if let Some(t) = self.threads {
            out.push("--threads".to_string());
            out.push(t.to_string());
        }
        if let Some(c) = self.ctx_size {
            out.push("--ctx-size".to_string());
            out.push(c.to_string());
        }
        if let Some(t) = &self.kv_type {
            out.push("--kv-type".to_string());
            out.push(t.clone());
        }
        if let Some(n) = self.prefix_cache {
            out.push("--prefix-cache".to_string());
            out.push(n.to_string());
        }
        if let Some(r) = self.release_after {
            out.push("--release-after".to_string());
            out.push(r.to_string());
        }
        if let Some(n) = self.token_jobs {
            out.push("--token-jobs".to_string());
            out.push(n.to_string());
        }
        if let Some(d) = self.idle_timeout {
            out.push("--idle-timeout".to_string());
            out.push(d.as_secs_f64().to_string());
        }
        out
    }
}

/// The model name to use: the flag, else the pool file's model, else `LLM_MODEL`, else
/// the manifest's default.
pub fn model_name(args: &BackendArgs, flag: Option<String>) -> anyhow::Result<String> {
    match (flag, &args.pool) {
        (Some(m), _) => Ok(m),
        (None, Some(path)) => Ok(pool_name(&read_pool_file(path)?)),
        (None, None) => Ok(optillm::model_from_env()?),
    }
}

/// Opens `model` on the chosen backend; native models are pulled when missing. Several
/// `--url`s, or a `--pool` file, open a [`Pool`] over them.
pub async fn open(args: &BackendArgs, model: &str) -> anyhow::Result<Arc<dyn Backend>> {
    if let Some(path) = &args.pool {
        return Ok(Arc::new(open_pool_file(args, path, model)?));
    }
    if args.url.len() > 1 {
        return Ok(Arc::new(open_url_pool(args, model)?));
    }
    match args.backend {
        BackendKind::Native => open_native(args, model).await,
        BackendKind::Ollama => open_ollama(args, model),
        BackendKind::Openai => open_openai(args, model),
    }
}

/// Most requests in flight on each server of a `--url` pool (the OpenAI and Ollama
/// backends' own default).
const URL_POOL_MAX_CONCURRENT: usize = 4;

/// A pool over the repeated `--url`s, every one of the `--backend` kind serving `model`.
fn open_url_pool(args: &BackendArgs, model: &str) -> anyhow::Result<Pool> {
    let kind = match args.backend {
        BackendKind::Native => bail!(
            "--url is repeated, but the native backend runs in this process: \
             choose --backend openai or --backend ollama for several servers"
        ),
        BackendKind::Ollama => UpstreamKind::Ollama,
        BackendKind::Openai => UpstreamKind::Openai,
    };
    let mut upstreams = Vec::with_capacity(args.url.len());
    for (i, url) in args.url.iter().enumerate() {
        if args.url.get(..i).is_some_and(|before| before.contains(url)) {
            bail!("--url {url} is given twice");
        }
        let spec = UpstreamSpec {
            kind,
            url: url.clone(),
            model: None,
            api_key_env: None,
            weight: 1,
            max_concurrent: URL_POOL_MAX_CONCURRENT,
            name: None,
            server: None,
        };
        let backend =
            open_upstream(args, &spec, model).with_context(|| format!("cannot use --url {url}"))?;
        upstreams
            .push(Upstream::new(url.clone(), backend).with_max_concurrent(spec.max_concurrent));
    }
    Ok(Pool::new(model, upstreams, PoolOptions::default())?)
}

/// Reads and checks a pool file (bounded: a larger file is refused unread).
pub fn read_pool_file(path: &Path) -> anyhow::Result<PoolFile> {
    use std::io::Read;
    let file = std::fs::File::open(path)
        .with_context(|| format!("cannot open the pool file {}", path.display()))?;
    let mut text = String::new();
    file.take(optillm_pool::config::MAX_FILE_BYTES as u64 + 1)
        .read_to_string(&mut text)
        .with_context(|| format!("cannot read the pool file {}", path.display()))?;
    PoolFile::parse(&text).with_context(|| format!("in the pool file {}", path.display()))
}

/// The model name a pool file answers to: its `model`, else its first upstream's.
fn pool_name(file: &PoolFile) -> String {
    file.model
        .clone()
        .or_else(|| file.upstream.first().map(|u| file.model_of(u).to_string()))
        .unwrap_or_default()
}

/// The pool of a `--pool` file, answering to `model`; upstreams without a `model` of
/// their own serve `model` too.
fn open_pool_file(args: &BackendArgs, path: &Path, model: &str) -> anyhow::Result<Pool> {
    let mut file = read_pool_file(path)?;
    file.model = Some(model.to_string());
    Ok(file.build(|spec, name| open_upstream(args, spec, name))?)
}

/// One upstream of a pool. The pool moves failed requests to another upstream itself, so
/// the backend does not retry them on its own server.
fn open_upstream(
    args: &BackendArgs,
    spec: &UpstreamSpec,
    model: &str,
) -> anyhow::Result<Arc<dyn Backend>> {
    match spec.kind {
        #[cfg(feature = "ollama")]
        UpstreamKind::Ollama => {
            if spec.api_key_env.is_some() {
                bail!("an Ollama upstream takes no API key (api_key_env)");
            }
            let mut config = optillm_ollama::OllamaConfig::new(spec.url.clone(), model)
                .with_max_retries(0)
                .with_max_concurrency(spec.max_concurrent);
            if let Some(d) = args.idle_timeout {
                config = config.with_idle_timeout(d);
            }
            Ok(Arc::new(optillm_ollama::OllamaBackend::new(config)?))
        }
        #[cfg(feature = "openai")]
        UpstreamKind::Openai => {
            let mut config = optillm_openai::OpenAiConfig::new(spec.url.clone(), model)
                .with_max_retries(0)
                .with_max_concurrency(spec.max_concurrent);
            if let Some(var) = &spec.api_key_env {
                config = config.with_api_key_env(var.clone());
            }
            if let Some(d) = args.idle_timeout {
                config = config.with_idle_timeout(d);
            }
            let server = match spec.server {
                None => args.openai_server,
                Some(PoolServer::Generic) => OpenaiServer::Generic,
                Some(PoolServer::LlamaServer) => OpenaiServer::LlamaServer,
                Some(PoolServer::Vllm) => OpenaiServer::Vllm,
            };
            let config = for_server(config, server);
            Ok(Arc::new(optillm_openai::OpenAiBackend::new(config)?))
        }
        #[allow(unreachable_patterns)]
        kind => bail!("this build lacks the {kind:?} backend"),
    }
}

#[cfg(feature = "llama")]
async fn open_native(args: &BackendArgs, model: &str) -> anyhow::Result<Arc<dyn Backend>> {
    let mut options = optillm::OpenOptions::new();
    if let Some(n) = args.ctx_size {
        options = options.ctx_size(n);
    }
    if let Some(n) = args.threads {
        options = options.threads(n);
    }
    if let Some(n) = args.prefix_cache {
        options = options.prefix_cache(n);
    }
    if let Some(r) = args.release_after {
        options = options.release_after(match r {
            ReleaseAfter::After(d) => Some(d),
            ReleaseAfter::Never => None,
        });
    }
    if let Some(n) = args.token_jobs {
        options = options.token_jobs(n);
    }
    if let Some(t) = &args.kv_type {
        options = options.kv_type(t.parse().map_err(anyhow::Error::msg)?);
    }
    // A model missing from the cache is pulled as `optillm pull` does (progress bar,
    // what its hash was checked against), then opened.
    match optillm::open(model, options.clone()).await {
        Err(optillm::OpenError::NotPulled { name, size_mb }) => {
            eprintln!("pulling {name} ({size_mb} MB)...");
            crate::commands::models::pull_one(optillm_models::find(&name)?).await?;
        }
        Err(optillm::OpenError::RemoteNotPulled { .. }) => {
            if let optillm_models::Resolved::Remote(m) = optillm_models::resolve_model(model)? {
                crate::commands::models::ensure_remote(&m).await?;
            }
        }
        opened => return Ok(opened?),
    }
    Ok(optillm::open(model, options).await?)
}

#[cfg(not(feature = "llama"))]
async fn open_native(_: &BackendArgs, _: &str) -> anyhow::Result<Arc<dyn Backend>> {
    bail!("this build has no native backend (enable the `llama` feature)")
}

#[cfg(feature = "ollama")]
fn open_ollama(args: &BackendArgs, model: &str) -> anyhow::Result<Arc<dyn Backend>> {
    Ok(Arc::new(ollama(args, model)?))
}

#[cfg(feature = "ollama")]
pub fn ollama(args: &BackendArgs, model: &str) -> anyhow::Result<optillm_ollama::OllamaBackend> {
    Ok(optillm_ollama::OllamaBackend::new(ollama_config(
        args, model,
    ))?)
}

/// The settings of the Ollama server of `--url` (else `OLLAMA_HOST`) for `model`.
#[cfg(feature = "ollama")]
fn ollama_config(args: &BackendArgs, model: &str) -> optillm_ollama::OllamaConfig {
    let config = match args.url.first() {
        Some(url) => optillm_ollama::OllamaConfig::new(url.clone(), model),
        None => optillm_ollama::OllamaConfig::from_env(model),
    };
    match args.idle_timeout {
        Some(d) => config.with_idle_timeout(d),
        None => config,
    }
}

#[cfg(not(feature = "ollama"))]
fn open_ollama(_: &BackendArgs, _: &str) -> anyhow::Result<Arc<dyn Backend>> {
    bail!("this build has no Ollama backend (enable the `ollama` feature)")
}

#[cfg(feature = "openai")]
fn open_openai(args: &BackendArgs, model: &str) -> anyhow::Result<Arc<dyn Backend>> {
    Ok(Arc::new(openai(args, model)?))
}

#[cfg(feature = "openai")]
pub fn openai(args: &BackendArgs, model: &str) -> anyhow::Result<optillm_openai::OpenAiBackend> {
    Ok(optillm_openai::OpenAiBackend::new(openai_config(
        args, model,
    ))?)
}

/// The settings of the OpenAI-compatible server of `--url` (else `OPENAI_BASE_URL`) for
/// `model`.
#[cfg(feature = "openai")]
fn openai_config(args: &BackendArgs, model: &str) -> optillm_openai::OpenAiConfig {
    let config = match args.url.first() {
        Some(url) => optillm_openai::OpenAiConfig::new(url.clone(), model),
        None => optillm_openai::OpenAiConfig::from_env(model),
    };
    let config = for_server(config, args.openai_server);
    match args.idle_timeout {
        Some(d) => config.with_idle_timeout(d),
        None => config,
    }
}

/// Why the models of a remote server could not be had.
#[derive(Debug, thiserror::Error)]
#[non_exhaustive]
pub enum ListError {
    /// The server did not answer the listing (`GET /v1/models`, `GET /api/tags`), or
    /// answered it with an error.
    #[error("cannot list the models of the {server} (name one with --model)")]
    Unavailable {
        server: String,
        #[source]
        source: optillm::BackendError,
    },
    /// The server lists no model: there is nothing to serve.
    #[error("the {server} lists no model (name one with --model)")]
    Empty { server: String },
}

/// The remote server(s) of `args`, for messages: `OpenAI-compatible server at URL`,
/// `Ollama server at URL`, `pool FILE`.
pub fn describe_server(args: &BackendArgs) -> String {
    if let Some(path) = &args.pool {
        return format!("pool {}", path.display());
    }
    let kind = match args.backend {
        BackendKind::Native => "native backend",
        BackendKind::Ollama => "Ollama server",
        BackendKind::Openai => "OpenAI-compatible server",
    };
    let urls = match (args.backend, args.url.as_slice()) {
        (_, [_, ..]) => args.url.join(", "),
        #[cfg(feature = "ollama")]
        (BackendKind::Ollama, []) => ollama_config(args, "").base_url.clone(),
        #[cfg(feature = "openai")]
        (BackendKind::Openai, []) => openai_config(args, "").base_url.clone(),
        _ => return kind.to_string(),
    };
    format!("{kind} at {urls}")
}

/// The models a remote server offers (`None` for the native backend). A pool file offers
/// its model; several `--url`s the models every server that answers offers. Neither
/// needs a model name: a listing is about the server.
pub async fn remote_models(args: &BackendArgs) -> anyhow::Result<Option<Vec<String>>> {
    if let Some(path) = &args.pool {
        return Ok(Some(vec![pool_name(&read_pool_file(path)?)]));
    }
    if args.url.len() > 1 && args.backend != BackendKind::Native {
        let mut shared: Option<Vec<String>> = None;
        let mut first_error = None;
        for url in &args.url {
            let one = BackendArgs {
                url: vec![url.clone()],
                ..args.clone()
            };
            match Box::pin(remote_models(&one)).await {
                Ok(Some(names)) => {
                    shared = Some(match shared {
                        None => names,
                        Some(mut s) => {
                            s.retain(|n| names.contains(n));
                            s
                        }
                    });
                }
                Ok(None) => {}
                Err(e) => {
                    tracing::warn!(%url, error = %e, "cannot list the models of an upstream");
                    first_error.get_or_insert(e);
                }
            }
        }
        return match (shared, first_error) {
            (Some(names), _) => Ok(Some(names)),
            (None, Some(e)) => Err(e),
            (None, None) => Ok(Some(Vec::new())),
        };
    }
    let listed = match args.backend {
        BackendKind::Native => return Ok(None),
        #[cfg(feature = "ollama")]
        BackendKind::Ollama => {
            optillm_ollama::OllamaBackend::list_server_models(&ollama_config(args, ""))
                .await
                .map(|models| models.into_iter().map(|m| m.name).collect())
        }
        #[cfg(feature = "openai")]
        BackendKind::Openai => {
            optillm_openai::OpenAiBackend::list_server_models(&openai_config(args, ""))
                .await
                .map(|models| models.into_iter().map(|m| m.id).collect())
        }
        #[allow(unreachable_patterns)]
        _ => bail!("this build lacks the {:?} backend", args.backend),
    };
    let names = listed.map_err(|source| ListError::Unavailable {
        server: describe_server(args),
        source,
    })?;
    Ok(Some(names))
}

#[cfg(not(feature = "openai"))]
fn open_openai(_: &BackendArgs, _: &str) -> anyhow::Result<Arc<dyn Backend>> {
    bail!("this build has no OpenAI-compatible backend (enable the `openai` feature)")
}

#[cfg(test)]
mod tests {
    #![allow(clippy::unwrap_used)]
    use super::*;
    use std::time::Duration;

    #[derive(clap::Parser)]
    struct Cli {
        #[command(flatten)]
        backend: BackendArgs,
    }

    fn parse(argv: &[&str]) -> Result<BackendArgs, clap::Error> {
        use clap::Parser;
        Cli::try_parse_from(std::iter::once("optillm").chain(argv.iter().copied()))
            .map(|c| c.backend)
    }

    fn pool_file(text: &str) -> PathBuf {
        use std::sync::atomic::{AtomicUsize, Ordering};
        static N: AtomicUsize = AtomicUsize::new(0);
        let path = std::env::temp_dir().join(format!(
            "optillm-pool-{}-{}.toml",
            std::process::id(),
            N.fetch_add(1, Ordering::Relaxed)
        ));
        std::fs::write(&path, text).unwrap();
        path
    }

    #[tokio::test]
    async fn one_url_is_one_server_and_several_are_a_pool_in_order() {
        let one = parse(&["--backend", "openai", "--url", "http://127.0.0.1:1/v1"]).unwrap();
        let backend = open(&one, "m").await.unwrap();
        assert!(backend.upstreams().is_empty(), "one --url is not a pool");
        assert_eq!(backend.model(), "m");

        let argv = [
            "--backend",
            "openai",
            "--url",
            "http://127.0.0.1:1/v1",
            "--url",
            "http://127.0.0.1:2/v1",
            "--url",
            "http://127.0.0.1:3/v1",
        ];
        let many = parse(&argv).unwrap();
        let pool = open(&many, "m").await.unwrap();
        assert_eq!(pool.model(), "m");
        let names: Vec<String> = pool.upstreams().into_iter().map(|u| u.name).collect();
        assert_eq!(
            names,
            [
                "http://127.0.0.1:1/v1",
                "http://127.0.0.1:2/v1",
                "http://127.0.0.1:3/v1"
            ]
        );
        assert!(pool.upstreams().iter().all(|u| u.model == "m" && u.healthy));
        // A child process (bench) is given the same servers.
        assert_eq!(many.child_args(), argv);

        let twice = parse(&[
            "--backend",
            "openai",
            "--url",
            "http://a/v1",
            "--url",
            "http://a/v1",
        ]);
        let e = open(&twice.unwrap(), "m").await.err().unwrap();
        assert!(e.to_string().contains("twice"), "{e}");
        let native = parse(&["--url", "http://a/v1", "--url", "http://b/v1"]).unwrap();
        let e = open(&native, "m").await.err().unwrap();
        assert!(e.to_string().contains("--backend openai"), "{e}");
    }

    #[tokio::test]
    async fn a_pool_file_names_the_model_and_opens_each_upstream() {
        let path = pool_file(
            r#"
            model = "smol"
            [[upstream]]
            kind = "openai"
            url = "http://127.0.0.1:1/v1"
            model = "smol.gguf"
            weight = 2
            [[upstream]]
            kind = "ollama"
            url = "http://127.0.0.1:2"
            "#,
        );
        let p = path.to_str().unwrap();
        let args = parse(&["--pool", p]).unwrap();
        assert!(args.is_remote(), "a pool is remote whatever --backend says");
        assert_eq!(model_name(&args, None).unwrap(), "smol");
        assert_eq!(model_name(&args, Some("other".into())).unwrap(), "other");
        assert_eq!(
            remote_models(&args).await.unwrap(),
            Some(vec!["smol".to_string()])
        );
        let pool = open(&args, "smol").await.unwrap();
        let ups = pool.upstreams();
        assert_eq!(
            ups.iter()
                .map(|u| (u.model.as_str(), u.weight))
                .collect::<Vec<_>>(),
            [("smol.gguf", 2), ("smol", 1)]
        );
        // --model renames the pool and the upstreams that name no model of their own.
        let renamed = open(&args, "other").await.unwrap();
        assert_eq!(renamed.model(), "other");
        assert_eq!(renamed.upstreams()[1].model, "other");
        assert_eq!(args.child_args(), ["--pool", p]);
        assert!(
            parse(&["--pool", p, "--url", "http://x"]).is_err(),
            "--pool replaces --url"
        );
        std::fs::remove_file(&path).unwrap();

        let bad = pool_file("[[upstream]]\nkind = \"openai\"\nurl = \"ftp://x\"\nmodel = \"m\"\n");
        let e = open(&parse(&["--pool", bad.to_str().unwrap()]).unwrap(), "m")
            .await
            .err()
            .unwrap();
        assert!(format!("{e:#}").contains("http://"), "{e:#}");
        std::fs::remove_file(&bad).unwrap();
        let key = pool_file(
            "[[upstream]]\nkind = \"ollama\"\nurl = \"http://x\"\nmodel = \"m\"\napi_key_env = \"K\"\n",
        );
        let e = open(&parse(&["--pool", key.to_str().unwrap()]).unwrap(), "m")
            .await
            .err()
            .unwrap();
        assert!(format!("{e:#}").contains("no API key"), "{e:#}");
        std::fs::remove_file(&key).unwrap();
        let missing = parse(&["--pool", "/no/such/pool.toml"]).unwrap();
        assert!(model_name(&missing, None).is_err());
    }

    #[cfg(feature = "openai")]
    #[test]
    fn the_openai_server_kind_chooses_the_extra_fields() {
        let config = |argv: &[&str]| {
            let mut all = vec!["--backend", "openai", "--url", "http://127.0.0.1:1/v1"];
            all.extend_from_slice(argv);
            openai_config(&parse(&all).unwrap(), "m")
        };
        let generic = config(&[]);
        assert!(!generic.grammar && !generic.continue_final_message);
        let llama = config(&["--openai-server", "llama-server"]);
        assert!(llama.grammar && !llama.continue_final_message);
        let vllm = config(&["--openai-server", "vllm"]);
        assert!(!vllm.grammar && vllm.continue_final_message);
        assert!(parse(&["--openai-server", "ollama"]).is_err());
    }

    #[cfg(feature = "openai")]
    #[test]
    fn a_pool_upstream_may_name_its_openai_server() {
        let file = PoolFile::parse(
            "model = \"m\"\n\
             [[upstream]]\nkind = \"openai\"\nurl = \"http://127.0.0.1:1/v1\"\nserver = \"llama-server\"\n\
             [[upstream]]\nkind = \"openai\"\nurl = \"http://127.0.0.1:2/v1\"\n",
        )
        .unwrap();
        let grammar = |argv: &[&str], u: &UpstreamSpec| {
            let args = parse(argv).unwrap();
            open_upstream(&args, u, "m")
                .unwrap()
                .capabilities()
                .formats
                .grammar
        };
        let plain = ["--backend", "openai"];
        assert!(grammar(&plain, &file.upstream[0]));
        assert!(!grammar(&plain, &file.upstream[1]));
        // Where the file says nothing, the command line's choice holds.
        let llama = ["--backend", "openai", "--openai-server", "llama-server"];
        assert!(grammar(&llama, &file.upstream[1]));
    }

    #[test]
    fn idle_timeouts_are_positive_seconds() {
        assert_eq!(parse_idle_timeout("60"), Ok(Duration::from_secs(60)));
        assert_eq!(parse_idle_timeout("0.5"), Ok(Duration::from_millis(500)));
        assert!(parse_idle_timeout("0").is_err());
        assert!(parse_idle_timeout("-3").is_err());
        assert!(parse_idle_timeout("NaN").is_err());
        assert!(parse_idle_timeout("inf").is_err());
        assert!(parse_idle_timeout("soon").is_err());
    }

    #[test]
    fn release_after_is_seconds_or_never_and_reaches_a_child() {
        let after = |s| parse_release_after(s);
        assert_eq!(
            after("60"),
            Ok(ReleaseAfter::After(Duration::from_secs(60)))
        );
        assert_eq!(after("0"), Ok(ReleaseAfter::After(Duration::ZERO)));
        assert_eq!(after("never"), Ok(ReleaseAfter::Never));
        assert!(after("-1").is_err());
        assert!(after("NaN").is_err());
        assert!(after("inf").is_err());
        assert!(after("later").is_err());
        for argv in [["--release-after", "never"], ["--release-after", "2.5"]] {
            let args = parse(&argv).unwrap();
            let child = args.child_args();
            let i = child.iter().position(|a| a == "--release-after").unwrap();
            assert_eq!(child[i + 1], argv[1]);
        }
    }

    #[test]
    fn token_jobs_are_bounded_and_reach_a_child() {
        assert!(parse(&["--token-jobs", "0"]).is_err());
        assert!(parse(&["--token-jobs", "17"]).is_err());
        let args = parse(&["--token-jobs", "3"]).unwrap();
        assert_eq!(args.token_jobs, Some(3));
        let child = args.child_args();
        let i = child.iter().position(|a| a == "--token-jobs").unwrap();
        assert_eq!(child[i + 1], "3");
    }
}
