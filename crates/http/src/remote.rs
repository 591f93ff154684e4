//! [`Remote`]: the server end of a remote backend, built once from its
//! [`RemoteConfig`]: the checked base URL, the HTTP clients, the retry and timeout
//! policy and the concurrency limit that every request goes through.

use std::sync::Arc;
use std::time::Duration;

use bytes::Bytes;
use optillm_core::BackendError;
use reqwest::header::{CONTENT_TYPE, HeaderMap};
use tokio::sync::Semaphore;
use url::Url;

use crate::config::{ConfigError, RemoteConfig};
use crate::{Clients, Opened, Policy};

/// A server and the means to send it requests. Share it behind an `Arc`: clones of a
/// backend share its connection pool and concurrency limit.
#[derive(Debug)]
pub struct Remote {
    /// The server's name in error messages ("Ollama", "the server").
    name: &'static str,
    model: String,
    base: Url,
    clients: Clients,
    policy: Policy,
    permits: Arc<Semaphore>,
    total_timeout: Option<Duration>,
}

impl Remote {
    /// Checks `config` (limits, model name, base URL) and builds the HTTP clients, with
    /// `headers` sent on every request. No request is sent yet.
    pub fn new(
        name: &'static str,
        config: &RemoteConfig,
        headers: HeaderMap,
    ) -> Result<Self, ConfigError> {
        config.validate()?;
        Self::for_server(name, config, headers)
    }

    /// Like [`Remote::new`], for requests about the server rather than one of its
    /// models (listing its models): `config.model` is not checked and may be empty.
    pub fn for_server(
        name: &'static str,
        config: &RemoteConfig,
        headers: HeaderMap,
    ) -> Result<Self, ConfigError> {
        config.validate_limits()?;
        let base = crate::base_url(&config.base_url)?;
        let clients = Clients::new(config.connect_timeout, headers).map_err(ConfigError::Client)?;
        Ok(Self {
            name,
            model: config.model.clone(),
            base,
            clients,
            policy: config.policy(),
            permits: Arc::new(Semaphore::new(config.max_concurrency)),
            total_timeout: config.total_timeout,
        })
    }

    /// The longest streamed line or event, in bytes.
    pub fn max_line_bytes(&self) -> usize {
        self.policy.max_line_bytes
    }

    /// The URL of `path` below the base URL.
    pub fn endpoint(&self, path: &str) -> Result<Url, BackendError> {
        self.base
            .join(path)
            .map_err(|e| BackendError::InvalidRequest(format!("bad endpoint {path}: {e}")))
    }

    /// Sends the request built by `make` with the retries and timeouts of
    /// [`open`](crate::open).
    pub async fn open(
        &self,
        make: impl Fn(&reqwest::Client) -> reqwest::RequestBuilder,
    ) -> Result<Opened, BackendError> {
        crate::open(&self.policy, &self.clients, &self.model, make).await
    }

    /// POSTs the JSON `body` to `path`.
    pub async fn post(&self, path: &str, body: Bytes) -> Result<Opened, BackendError> {
        let url = self.endpoint(path)?;
        self.open(|c| {
            c.post(url.clone())
                .header(CONTENT_TYPE, "application/json")
                .body(body.clone())
        })
        .await
    }

    /// The whole JSON answer to the request built by `make`, read within the body limit.
    pub async fn fetch_json<T: serde::de::DeserializeOwned>(
        &self,
        make: impl Fn(&reqwest::Client) -> reqwest::RequestBuilder,
    ) -> Result<T, BackendError> {
        let opened = self.open(make).await?;
        let body = crate::read_all(opened).await?;
        self.parse(&body)
    }

    /// The whole JSON answer to `GET path`.
    pub async fn get_json<T: serde::de::DeserializeOwned>(
        &self,
        path: &str,
    ) -> Result<T, BackendError> {
        let url = self.endpoint(path)?;
        self.fetch_json(|c| c.get(url.clone())).await
    }

    /// `bytes` read as JSON; a [`BackendError::Protocol`] that shows their start if not.
    pub fn parse<T: serde::de::DeserializeOwned>(&self, bytes: &[u8]) -> Result<T, BackendError> {
        serde_json::from_slice(bytes).map_err(|e| {
            BackendError::Protocol(format!(
                "malformed JSON from {} ({e}): {}",
                self.name,
                crate::preview(bytes)
            ))
        })
    }

    /// Runs `work` (one request) under the concurrency limit and the total timeout.
    pub async fn limited<T>(
        &self,
        work: impl Future<Output = Result<T, BackendError>>,
    ) -> Result<T, BackendError> {
        crate::limited(&self.permits, self.total_timeout, work).await
    }
}
