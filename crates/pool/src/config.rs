//! The upstreams of a pool as a small TOML file:
//!
//! ```toml
//! model = "qwen2.5-coder-0.5b"    # what the pool answers to (optional)
//! backoff_min_ms = 1000            # optional
//! backoff_max_ms = 60000           # optional
//!
//! [[upstream]]
//! kind = "openai"                  # or "ollama"
//! url = "http://10.0.0.2:8080/v1"
//! api_key_env = "GPU_BOX_KEY"      # the API key is read from this variable (optional)
//! model = "qwen2.5-coder-0.5b-instruct-q4_k_m.gguf"   # its name on that server
//! weight = 2                       # optional, default 1
//! max_concurrent = 4               # optional, default 8
//! server = "llama-server"          # openai only: "generic", "llama-server" or "vllm" (optional)
//!
//! [[upstream]]
//! kind = "ollama"
//! url = "http://10.0.0.3:11434"
//! model = "qwen2.5-coder:0.5b"
//! ```
//!
//! Keys are never written in the file itself, only the name of the variable holding them.
//! [`PoolFile::parse`] checks everything it can without a network: sizes, kinds, URLs,
//! weights, variable names; [`PoolFile::build`] opens each upstream with a function of
//! the caller's (the CLI's backends) and returns the [`Pool`].

use std::sync::Arc;
use std::time::Duration;

use optillm_core::Backend;
use serde::Deserialize;

use crate::{Pool, PoolOptions, Upstream};

/// Largest pool file read, in bytes.
pub const MAX_FILE_BYTES: usize = 64 * 1024;
/// Most upstreams in one pool.
pub const MAX_UPSTREAMS: usize = 64;

/// The kind of server an upstream is.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Deserialize)]
#[serde(rename_all = "lowercase")]
pub enum UpstreamKind {
    /// An OpenAI-compatible server (vLLM, llama.cpp's server, hosted APIs).
    Openai,
    /// An Ollama server.
    Ollama,
}

/// What an OpenAI-compatible upstream is, for the fields outside OpenAI's spec it takes.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Deserialize)]
#[serde(rename_all = "kebab-case")]
pub enum OpenaiServer {
    /// No field outside OpenAI's spec.
    Generic,
    /// llama.cpp's llama-server: GBNF grammars in `grammar`.
    LlamaServer,
    /// vLLM: a final assistant message continued (`continue_final_message`).
    Vllm,
}

/// One `[[upstream]]` table.
#[derive(Debug, Clone, PartialEq, Eq, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct UpstreamSpec {
    pub kind: UpstreamKind,
    pub url: String,
    /// The model's name on that server (default: the pool's `model`).
    #[serde(default)]
    pub model: Option<String>,
    /// The environment variable that holds the API key.
    #[serde(default)]
    pub api_key_env: Option<String>,
    #[serde(default = "one")]
    pub weight: u32,
    #[serde(default = "eight")]
    pub max_concurrent: usize,
    /// A name for logs and counters (default: the URL).
    #[serde(default)]
    pub name: Option<String>,
    /// What an OpenAI-compatible upstream is (default: the caller's choice for all).
    #[serde(default)]
    pub server: Option<OpenaiServer>,
}

fn one() -> u32 {
    1
}

fn eight() -> usize {
    8
}

impl UpstreamSpec {
    /// The API key from `api_key_env`, if one is named and set.
    pub fn api_key(&self) -> Option<String> {
        self.api_key_env
            .as_deref()
            .and_then(|v| std::env::var(v).ok())
            .filter(|k| !k.is_empty())
    }
}

/// A pool file.
#[derive(Debug, Clone, PartialEq, Eq, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct PoolFile {
    #[serde(default)]
    pub model: Option<String>,
    #[serde(default)]
    pub backoff_min_ms: Option<u64>,
    #[serde(default)]
    pub backoff_max_ms: Option<u64>,
    #[serde(default)]
    pub upstream: Vec<UpstreamSpec>,
}

/// A pool file that cannot be used.
#[derive(Debug, thiserror::Error, PartialEq, Eq)]
pub enum ConfigError {
    #[error("the pool file is {0} bytes, more than the {MAX_FILE_BYTES} allowed")]
    TooLarge(usize),
    #[error("the pool file is not valid: {0}")]
    Syntax(String),
    #[error("upstream {index} ({url}): {message}")]
    Upstream {
        index: usize,
        url: String,
        message: String,
    },
    #[error("{0}")]
    Pool(#[from] crate::PoolError),
    #[error("upstream {index} ({url}) cannot be opened: {message}")]
    Open {
        index: usize,
        url: String,
        message: String,
    },
}

impl PoolFile {
    /// Parses and checks a pool file.
    pub fn parse(text: &str) -> Result<Self, ConfigError> {
        if text.len() > MAX_FILE_BYTES {
            return Err(ConfigError::TooLarge(text.len()));
        }
        let file: PoolFile =
            toml::from_str(text).map_err(|e| ConfigError::Syntax(e.message().to_string()))?;
        if file.upstream.is_empty() {
            return Err(ConfigError::Syntax(
                "no [[upstream]] table: a pool needs at least one".into(),
            ));
        }
        if file.upstream.len() > MAX_UPSTREAMS {
            return Err(ConfigError::Syntax(format!(
                "{} upstreams, more than the {MAX_UPSTREAMS} allowed",
                file.upstream.len()
            )));
        }
        for (index, u) in file.upstream.iter().enumerate() {
            let bad = |message: &str| ConfigError::Upstream {
                index,
                url: u.url.clone(),
                message: message.into(),
            };
            let scheme_ok = ["http://", "https://"].iter().any(|p| {
                u.url
                    .get(..p.len())
                    .is_some_and(|head| head.eq_ignore_ascii_case(p))
            });
            if !scheme_ok || u.url.len() > 2048 || u.url.chars().any(char::is_whitespace) {
                return Err(bad("the url must be an http:// or https:// URL"));
            }
            if u.weight == 0 || u.weight > 1000 {
                return Err(bad("weight must be in 1..=1000"));
            }
            if u.max_concurrent == 0 || u.max_concurrent > 1024 {
                return Err(bad("max_concurrent must be in 1..=1024"));
            }
            if let Some(v) = &u.api_key_env {
                let ok = !v.is_empty()
                    && v.len() <= 128
                    && v.chars().all(|c| c.is_ascii_alphanumeric() || c == '_');
                if !ok {
                    return Err(bad("api_key_env must be an environment variable name"));
                }
            }
            if u.server.is_some() && u.kind != UpstreamKind::Openai {
                return Err(bad("server applies to an openai upstream only"));
            }
            if u.model.as_deref().or(file.model.as_deref()).is_none() {
                return Err(bad("no model: set `model` on the upstream or the pool"));
            }
        }
        let (min, max) = (file.backoff_min_ms, file.backoff_max_ms);
        if min == Some(0) || max.is_some_and(|m| m < min.unwrap_or(1)) {
            return Err(ConfigError::Syntax(
                "backoff_min_ms must be at least 1 and at most backoff_max_ms".into(),
            ));
        }
        Ok(file)
    }

    /// The back-off settings of the file over the defaults.
    pub fn options(&self) -> PoolOptions {
        let d = PoolOptions::default();
        PoolOptions {
            backoff_min: self
                .backoff_min_ms
                .map_or(d.backoff_min, Duration::from_millis),
            backoff_max: self
                .backoff_max_ms
                .map_or(d.backoff_max, Duration::from_millis),
        }
    }

    /// The model of upstream `u`: its own, else the pool's.
    pub fn model_of<'a>(&'a self, u: &'a UpstreamSpec) -> &'a str {
        u.model.as_deref().or(self.model.as_deref()).unwrap_or("")
    }

    /// Opens every upstream with `open(spec, model)` and returns the pool. The pool's
    /// name is the file's `model`, else the first upstream's.
    pub fn build<E: std::fmt::Display>(
        &self,
        mut open: impl FnMut(&UpstreamSpec, &str) -> Result<Arc<dyn Backend>, E>,
    ) -> Result<Pool, ConfigError> {
        let mut upstreams = Vec::with_capacity(self.upstream.len());
        for (index, u) in self.upstream.iter().enumerate() {
            let backend = open(u, self.model_of(u)).map_err(|e| ConfigError::Open {
                index,
                url: u.url.clone(),
                message: e.to_string(),
            })?;
            upstreams.push(
                Upstream::new(u.name.clone().unwrap_or_else(|| u.url.clone()), backend)
                    .with_weight(u.weight)
                    .with_max_concurrent(u.max_concurrent),
            );
        }
        let name = self
            .model
            .clone()
            .or_else(|| self.upstream.first().and_then(|u| u.model.clone()))
            .unwrap_or_default();
        Ok(Pool::new(name, upstreams, self.options())?)
    }
}

#[cfg(test)]
mod tests {
    use optillm_core::mock::MockBackend;

    use super::*;

    const GOOD: &str = r#"
        model = "qwen"
        backoff_min_ms = 200

        [[upstream]]
        kind = "openai"
        url = "http://127.0.0.1:8081/v1"
        api_key_env = "OPTILLM_POOL_TEST_KEY"
        weight = 2
        server = "llama-server"

        [[upstream]]
        kind = "ollama"
        url = "https://box.example/ollama"
        model = "qwen2.5-coder:0.5b"
        max_concurrent = 2
    "#;

    #[test]
    fn a_good_file_builds_a_pool_with_its_names_weights_and_models() {
        let file = PoolFile::parse(GOOD).unwrap();
        assert_eq!(file.upstream[0].server, Some(OpenaiServer::LlamaServer));
        assert_eq!(file.upstream[1].server, None);
        assert_eq!(file.options().backoff_min, Duration::from_millis(200));
        assert_eq!(
            file.options().backoff_max,
            PoolOptions::default().backoff_max
        );
        let mut seen = Vec::new();
        let pool = file
            .build(|u, model| {
                seen.push((u.kind, model.to_string(), u.weight, u.max_concurrent));
                Ok::<_, String>(Arc::new(MockBackend::constant("x")) as Arc<dyn Backend>)
            })
            .unwrap();
        assert_eq!(
            seen,
            vec![
                (UpstreamKind::Openai, "qwen".to_string(), 2, 8),
                (UpstreamKind::Ollama, "qwen2.5-coder:0.5b".to_string(), 1, 2),
            ]
        );
        assert_eq!(optillm_core::Backend::model(&pool), "qwen");
        let stats = pool.stats();
        assert_eq!(stats[0].name, "http://127.0.0.1:8081/v1");
        assert_eq!(stats[0].weight, 2);
    }

    #[test]
    fn bad_files_name_what_is_wrong() {
        let err = |t: &str| PoolFile::parse(t).unwrap_err().to_string();
        assert!(err("model = 1").contains("not valid"));
        assert!(err("model = \"m\"").contains("at least one"));
        assert!(
            err("[[upstream]]\nkind = \"grpc\"\nurl = \"http://x\"\nmodel = \"m\"")
                .contains("not valid")
        );
        assert!(
            err("[[upstream]]\nkind = \"openai\"\nurl = \"file:///etc/passwd\"\nmodel = \"m\"")
                .contains("http://")
        );
        assert!(err("[[upstream]]\nkind = \"openai\"\nurl = \"http://x\"").contains("no model"));
        assert!(
            err("[[upstream]]\nkind = \"openai\"\nurl = \"http://x\"\nmodel = \"m\"\nweight = 0")
                .contains("weight")
        );
        assert!(err("[[upstream]]\nkind = \"openai\"\nurl = \"http://x\"\nmodel = \"m\"\napi_key_env = \"A B\"").contains("api_key_env"));
        assert!(err("[[upstream]]\nkind = \"ollama\"\nurl = \"http://x\"\nmodel = \"m\"\nserver = \"vllm\"").contains("openai upstream only"));
        assert!(err("[[upstream]]\nkind = \"openai\"\nurl = \"http://x\"\nmodel = \"m\"\nserver = \"tgi\"").contains("server"));
        assert!(err("[[upstream]]\nkind = \"openai\"\nurl = \"http://x\"\nmodel = \"m\"\napi_key = \"sk-...\"").contains("not valid"), "keys never in the file");
        assert!(err(&"#".repeat(MAX_FILE_BYTES + 1)).contains("bytes"));
        let many = "[[upstream]]\nkind = \"openai\"\nurl = \"http://x\"\nmodel = \"m\"\n"
            .repeat(MAX_UPSTREAMS + 1);
        assert!(err(&many).contains("upstreams"));
        let backoff = "backoff_min_ms = 10\nbackoff_max_ms = 5\n[[upstream]]\nkind = \"openai\"\nurl = \"http://x\"\nmodel = \"m\"";
        assert!(err(backoff).contains("backoff"));
    }

    #[test]
    fn an_upstream_that_cannot_be_opened_is_named() {
        let file = PoolFile::parse(GOOD).unwrap();
        let e = file
            .build(|u, _| {
                if u.kind == UpstreamKind::Ollama {
                    Err("refused".to_string())
                } else {
                    Ok(Arc::new(MockBackend::constant("x")) as Arc<dyn Backend>)
                }
            })
            .err()
            .unwrap();
        assert_eq!(
            e,
            ConfigError::Open {
                index: 1,
                url: "https://box.example/ollama".into(),
                message: "refused".into()
            }
        );
    }
}
