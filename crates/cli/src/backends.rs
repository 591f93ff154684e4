//! Choosing and opening a backend from command-line options.

use std::sync::Arc;

use anyhow::bail;
use clap::{Args, ValueEnum};
use optillm::Backend;

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

#[derive(Debug, Clone, Args)]
pub struct BackendArgs {
    /// Backend kind.
    #[arg(long, value_enum, env = "OPTILLM_BACKEND", default_value = "native")]
    pub backend: BackendKind,
    /// Server URL for remote backends (default: OLLAMA_HOST or OPENAI_BASE_URL, else the usual local address).
    #[arg(long)]
    pub url: Option<String>,
    /// CPU threads for the native backend, 1..=512 (default: all cores).
    #[arg(long, value_parser = crate::commands::parse_threads)]
    pub threads: Option<i32>,
    /// Context size for the native backend, 16 up to the model's trained context
    /// (default: the model's, at most 8192).
    #[arg(long, value_parser = crate::commands::parse_ctx_size)]
    pub ctx_size: Option<u32>,
    /// Remote backends: seconds to wait for the next chunk once an answer has begun,
    /// before the request fails as stalled and is cancelled (default 60).
    #[arg(long, value_name = "SECS", value_parser = parse_idle_timeout)]
    pub idle_timeout: Option<std::time::Duration>,
}

/// A positive, finite number of seconds.
fn parse_idle_timeout(s: &str) -> Result<std::time::Duration, String> {
    let secs: f64 = s
        .trim()
        .parse()
        .map_err(|_| format!("{s:?} is not a number of seconds"))?;
    if secs.is_nan() || secs <= 0.0 {
        return Err("the idle timeout must be above zero".to_string());
    }
    std::time::Duration::try_from_secs_f64(secs).map_err(|e| e.to_string())
}

/// The model name to use: the flag, else `LLM_MODEL`, else the manifest's default.
pub fn model_name(flag: Option<String>) -> anyhow::Result<String> {
    match flag {
        Some(m) => Ok(m),
        None => Ok(optillm::model_from_env()?),
    }
}

/// Opens `model` on the chosen backend; native models are pulled when missing.
pub async fn open(args: &BackendArgs, model: &str) -> anyhow::Result<Arc<dyn Backend>> {
    match args.backend {
        BackendKind::Native => open_native(args, model).await,
        BackendKind::Ollama => open_ollama(args, model),
        BackendKind::Openai => open_openai(args, model),
    }
}

#[cfg(feature = "llama")]
async fn open_native(args: &BackendArgs, model: &str) -> anyhow::Result<Arc<dyn Backend>> {
    // A GGUF file by `hf:` spec or URL: pulled (or re-checked), then opened by its path.
    let local;
    let model = match optillm_models::resolve_model(model) {
        Ok(optillm_models::Resolved::Remote(m)) => {
            local = crate::commands::models::ensure_remote(&m).await?;
            local.to_str().unwrap_or(model)
        }
        _ => model,
    };
    let mut options = optillm::OpenOptions::new();
    if let Some(n) = args.ctx_size {
        options = options.ctx_size(n);
    }
    if let Some(n) = args.threads {
        options = options.threads(n);
    }
    match optillm::open(model, options.clone()).await {
        Err(optillm::OpenError::NotPulled { name, size_mb }) => {
            eprintln!("pulling {name} ({size_mb} MB)...");
            crate::commands::models::pull_one(optillm_models::find(&name)?).await?;
            Ok(optillm::open(model, options).await?)
        }
        opened => Ok(opened?),
    }
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
    let config = match &args.url {
        Some(url) => optillm_ollama::OllamaConfig::new(url.clone(), model),
        None => optillm_ollama::OllamaConfig::from_env(model),
    };
    let config = match args.idle_timeout {
        Some(d) => config.with_idle_timeout(d),
        None => config,
    };
    Ok(optillm_ollama::OllamaBackend::new(config)?)
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
    let config = match &args.url {
        Some(url) => optillm_openai::OpenAiConfig::new(url.clone(), model),
        None => optillm_openai::OpenAiConfig::from_env(model),
    };
    let config = match args.idle_timeout {
        Some(d) => config.with_idle_timeout(d),
        None => config,
    };
    Ok(optillm_openai::OpenAiBackend::new(config)?)
}

/// The models a remote server offers (`None` for the native backend).
pub async fn remote_models(args: &BackendArgs) -> anyhow::Result<Option<Vec<String>>> {
    match args.backend {
        BackendKind::Native => Ok(None),
        #[cfg(feature = "ollama")]
        BackendKind::Ollama => Ok(Some(
            ollama(args, "")?
                .list_models()
                .await?
                .into_iter()
                .map(|m| m.name)
                .collect(),
        )),
        #[cfg(feature = "openai")]
        BackendKind::Openai => Ok(Some(
            openai(args, "")?
                .list_models()
                .await?
                .into_iter()
                .map(|m| m.id)
                .collect(),
        )),
        #[allow(unreachable_patterns)]
        _ => bail!("this build lacks the {:?} backend", args.backend),
    }
}

#[cfg(not(feature = "openai"))]
fn open_openai(_: &BackendArgs, _: &str) -> anyhow::Result<Arc<dyn Backend>> {
    bail!("this build has no OpenAI-compatible backend (enable the `openai` feature)")
}

#[cfg(test)]
mod tests {
    use super::*;
    use std::time::Duration;

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
}
