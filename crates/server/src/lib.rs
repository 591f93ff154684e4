//! optillm-server: an HTTP server speaking the OpenAI and Ollama dialects, running an
//! optillm-rs approach on every request.
//!
//! - OpenAI: `POST /v1/chat/completions` (streamed or not), `POST /v1/completions`
//!   (text continued without the chat template, `none` only), `GET /v1/models` (every
//!   approach x model, as `moa-smollm2`).
//! - Ollama: `POST /api/chat`, `POST /api/generate` (`raw: true`: without the chat
//!   template, `none` only), `GET /api/tags`, `POST /api/show`, `GET /api/version`,
//!   `GET /` ("Ollama is running").
//! - `GET /health` and `GET /metrics` (Prometheus / OpenMetrics text).
//!
//! The approach of a request comes from the body field `optillm_approach`, else a
//! `<optillm_approach>spec</optillm_approach>` tag in the system prompt (removed before
//! the model sees it), else a model-name prefix (`moa-smollm2`, `bon|moa-smollm2`,
//! `re2&self_consistency-smollm2`), else the configured default, else `none`.
//! `optillm_params` in the body sets approach parameters.
//!
//! Models come from a [`Models`] provider; the server never loads models itself.
//!
//! ```no_run
//! use std::sync::Arc;
//! use optillm_core::mock::MockBackend;
//! use optillm_server::{ServerConfig, StaticModels, serve};
//!
//! # async fn example() -> Result<(), optillm_server::ServerError> {
//! let models = StaticModels::new().with("smollm2-135m", Arc::new(MockBackend::constant("hi")));
//! let config = ServerConfig { default_approach: Some("re2".into()), ..ServerConfig::default() };
//! serve(config, Arc::new(models), async {
//!     let _ = tokio::signal::ctrl_c().await;
//! })
//! .await
//! # }
//! ```

use std::future::Future;
use std::net::{Ipv4Addr, SocketAddr};
use std::sync::Arc;
use std::sync::atomic::{AtomicU64, Ordering};
use std::time::{Duration, Instant, SystemTime, UNIX_EPOCH};

use axum::Router;
use axum::body::{Body, Bytes};
use axum::extract::rejection::BytesRejection;
use axum::extract::{DefaultBodyLimit, MatchedPath, Request, State};
use axum::http::{HeaderValue, StatusCode, header};
use axum::middleware::{self, Next};
use axum::response::{IntoResponse, Response};
use axum::routing::{get, post};
use futures::StreamExt;
use optillm_core::{Budget, Message, ResponseFormat, Sampling, Spec, StrategyRequest};
use serde::de::DeserializeOwned;
use serde_json::{Map, Value};

pub mod approach;
mod completions;
pub mod error;
mod guard;
mod limit;
mod listen;
mod metrics;
pub mod models;
mod ollama;
mod openai;
mod run;

pub use error::{ApiError, Dialect, ServerError};
pub use listen::shutdown_signal;
pub use models::{ModelInfo, Models, StaticModels};

use limit::Limiter;
use metrics::{Metrics, RequestRecord};
use run::{EventStream, Final, Job};

/// Most choices one request may ask for (as OpenAI).
pub const MAX_N: u32 = 128;

/// Server settings. `Default` binds 127.0.0.1:8000 without auth.
#[derive(Debug, Clone)]
pub struct ServerConfig {
    pub bind: SocketAddr,
    /// When set, every endpoint but `/` and `/health` needs `Authorization: Bearer <key>`.
    pub api_key: Option<String>,
    /// Requests running at once (the rest wait in the queue). The native backend decodes
    /// the running requests that wait for it together, so more than one pays off.
    pub max_concurrent: usize,
    /// Requests waiting for a slot; more are refused with 429.
    pub max_queue: usize,
    /// Approach spec used when a request names none (`None`: `none`).
    pub default_approach: Option<String>,
    /// Sampling defaults under every request's own settings.
    pub default_sampling: Sampling,
    /// Token and time budget of every request.
    pub default_budget: Budget,
    /// How often a streamed multi-stage approach sends a keep-alive while it runs.
    pub keep_alive_interval: Duration,
    /// Largest request body accepted (413 beyond).
    pub max_body_bytes: usize,
    /// Longest wait for a request's headers, and longest idle time of a keep-alive
    /// connection between requests; the connection is closed after it.
    pub header_timeout: Duration,
    /// Longest time to receive a request's whole body (408 after it).
    pub body_timeout: Duration,
    /// Most connections open at once; more wait in the kernel's accept backlog.
    pub max_connections: usize,
    /// After shutdown is asked, how long requests in flight may run before they are dropped.
    pub shutdown_grace: Duration,
    /// Extra `Host` names accepted when bound to loopback (`localhost`, `*.localhost` and
    /// loopback addresses always are); `*` accepts any. Bound beyond loopback, any host is
    /// accepted. Guards against DNS rebinding.
    pub allowed_hosts: Vec<String>,
    /// Extra browser origins (`https://app.example:8443`) allowed to call the server and
    /// answered in CORS preflights; `*` allows any. Local origins (`http(s)://localhost`,
    /// `127.0.0.1`, `[::1]`, `0.0.0.0`, any port) always are. Requests without `Origin`
    /// (not from a browser) are not affected.
    pub allowed_origins: Vec<String>,
    /// Largest count of work an approach parameter may ask for per stage (`k`, `n`,
    /// `agents`, `rounds`, `simulations`, list lengths...); more is refused with 400.
    pub max_count: u32,
}

impl Default for ServerConfig {
    fn default() -> Self {
        Self {
            bind: SocketAddr::from((Ipv4Addr::LOCALHOST, 8000)),
            api_key: None,
            max_concurrent: 8,
            max_queue: 16,
            default_approach: None,
            default_sampling: Sampling::default(),
            default_budget: Budget::default(),
            keep_alive_interval: Duration::from_secs(10),
            max_body_bytes: 8 * 1024 * 1024,
            header_timeout: Duration::from_secs(10),
            body_timeout: Duration::from_secs(30),
            max_connections: 256,
            shutdown_grace: Duration::from_secs(10),
            allowed_hosts: Vec::new(),
            allowed_origins: Vec::new(),
            max_count: 64,
        }
    }
}

/// The shared state of the server's handlers.
#[derive(Clone)]
pub struct AppState {
    inner: Arc<Inner>,
}

struct Inner {
    config: ServerConfig,
    models: Arc<dyn Models>,
    limiter: Limiter,
    metrics: Arc<Metrics>,
    default_spec: Option<Spec>,
}

impl std::fmt::Debug for AppState {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("AppState")
            .field("config", &self.inner.config)
            .finish_non_exhaustive()
    }
}

impl AppState {
    /// Checks the configuration (capacity, default approach) and builds the state.
    pub fn new(config: ServerConfig, models: Arc<dyn Models>) -> Result<Self, ServerError> {
        if config.max_concurrent == 0 {
            return Err(ServerError::Config(
                "max_concurrent must be at least 1".into(),
            ));
        }
        if config.max_connections == 0 {
            return Err(ServerError::Config(
                "max_connections must be at least 1".into(),
            ));
        }
        if config
            .api_key
            .as_deref()
            .is_some_and(|k| k.trim().is_empty())
        {
            return Err(ServerError::Config(
                "the API key is empty: give a non-empty key or none".into(),
            ));
        }
        let default_spec = match config.default_approach.as_deref() {
            None => None,
            Some(text) => {
                let spec = optillm_core::spec::parse(text).map_err(ServerError::DefaultApproach)?;
                optillm_core::strategies::build_spec(&spec)
                    .map_err(ServerError::DefaultApproach)?;
                Some(spec)
            }
        };
        Ok(Self {
            inner: Arc::new(Inner {
                limiter: Limiter::new(config.max_concurrent, config.max_queue),
                config,
                models,
                metrics: Arc::new(Metrics::default()),
                default_spec,
            }),
        })
    }

    pub fn config(&self) -> &ServerConfig {
        &self.inner.config
    }

    /// Admits a request (or refuses it when the queue is full), prepares it and runs it:
    /// to its whole answer once it holds a slot, or (`stream`) as its events, which wait
    /// for the slot themselves, with keep-alives.
    async fn answer(&self, incoming: Incoming, stream: bool) -> Result<Answer, ApiError> {
        let ticket = self.inner.limiter.admit()?;
        let job = self.prepare(incoming).await?;
        if stream {
            let events = job
                .stream(self.inner.config.keep_alive_interval, ticket)
                .await?;
            return Ok(Answer::Stream(events));
        }
        let permit = ticket.wait().await?;
        let fin = job.complete().await?;
        drop(permit);
        Ok(Answer::Whole(fin))
    }

    /// Resolves approach and model, fetches the backend and validates the request.
    async fn prepare(&self, incoming: Incoming) -> Result<Job, ApiError> {
        if incoming.n > MAX_N {
            return Err(ApiError::bad_request(format!(
                "n must be at most {MAX_N}, got {}",
                incoming.n
            )));
        }
        let known = self.inner.models.list();
        let selection = approach::select(
            &incoming.model,
            incoming.approach.as_deref(),
            incoming.messages,
            incoming.params.as_ref(),
            &known,
            self.inner.default_spec.as_ref(),
        )?;
        approach::check_counts(&selection.spec, self.inner.config.max_count)?;
        let backend = self.inner.models.get(&selection.model).await?;
        let request = StrategyRequest {
            messages: selection.messages,
            sampling: self
                .inner
                .config
                .default_sampling
                .merged(&incoming.sampling),
            n: incoming.n,
            logprobs: incoming.logprobs,
            format: incoming.format,
            raw: incoming.raw,
        };
        tracing::debug!(
            model = %selection.model,
            approach = %selection.spec,
            n = request.n,
            "request"
        );
        Job::new(
            backend,
            &selection.spec,
            request,
            self.inner.config.default_budget,
            Arc::clone(&self.inner.metrics),
        )
    }
}

/// What a dialect handler writes out: a whole answer, or one to stream.
enum Answer {
    Whole(Final),
    Stream(EventStream),
}

/// A chat request in dialect-neutral form.
struct Incoming {
    /// The model name as requested (may carry an approach prefix).
    model: String,
    messages: Vec<Message>,
    sampling: Sampling,
    n: u32,
    logprobs: Option<u32>,
    /// Structured output (`none` only).
    format: Option<ResponseFormat>,
    /// A plain text completion of the one user message (`none` only).
    raw: bool,
    approach: Option<String>,
    params: Option<Map<String, Value>>,
}

/// The router with every endpoint, for [`serve`] and for in-process tests.
pub fn router(state: AppState) -> Router {
    let limit = state.inner.config.max_body_bytes;
    Router::new()
        .route("/", get(|| async { "Ollama is running" }))
        .route("/health", get(health))
        .route("/metrics", get(metrics_text))
        .route("/v1/models", get(openai::models))
        .route("/v1/models/{*id}", get(openai::model))
        .route("/v1/chat/completions", post(openai::chat))
        .route("/v1/completions", post(completions::complete))
        .route("/api/chat", post(ollama::chat))
        .route("/api/generate", post(ollama::generate))
        .route("/api/tags", get(ollama::tags))
        .route("/api/show", post(ollama::show))
        .route("/api/version", get(ollama::version))
        .fallback(not_found)
        .method_not_allowed_fallback(method_not_allowed)
        .layer(middleware::from_fn_with_state(state.clone(), read_body))
        .layer(middleware::from_fn_with_state(state.clone(), auth))
        .layer(guard::cors(&state.inner.config.allowed_origins))
        .layer(middleware::from_fn_with_state(state.clone(), guard::check))
        .layer(middleware::from_fn_with_state(state.clone(), track))
        .layer(DefaultBodyLimit::max(limit))
        .with_state(state)
}

/// Serves on `config.bind` until `shutdown` completes, then finishes the requests in flight.
pub async fn serve(
    config: ServerConfig,
    models: Arc<dyn Models>,
    shutdown: impl Future<Output = ()> + Send + 'static,
) -> Result<(), ServerError> {
    let addr = config.bind;
    let listener = tokio::net::TcpListener::bind(addr)
        .await
        .map_err(|source| ServerError::Bind { addr, source })?;
    serve_on(listener, config, models, shutdown).await
}

/// [`serve`] on a listener already bound (e.g. to port 0, to learn the port first).
pub async fn serve_on(
    listener: tokio::net::TcpListener,
    config: ServerConfig,
    models: Arc<dyn Models>,
    shutdown: impl Future<Output = ()> + Send + 'static,
) -> Result<(), ServerError> {
    let state = AppState::new(config.clone(), models)?;
    if let Ok(addr) = listener.local_addr() {
        tracing::info!(%addr, "optillm server listening");
        if !addr.ip().is_loopback() && config.api_key.is_none() {
            tracing::warn!(
                %addr,
                "listening beyond loopback WITHOUT an API key: anyone who can reach this \
                 address can run the models; set --api-key (OPTILLM_API_KEY)"
            );
        }
    }
    listen::run(listener, router(state), &config, shutdown).await;
    tracing::info!("optillm server stopped");
    Ok(())
}

async fn health(State(state): State<AppState>) -> Response {
    axum::Json(serde_json::json!({
        "status": "ok",
        "models": state.inner.models.list().len(),
        "running": state.inner.limiter.running(),
        "queued": state.inner.limiter.queued(),
    }))
    .into_response()
}

async fn metrics_text(State(state): State<AppState>) -> Response {
    let loaded = state.inner.models.loaded();
    let upstreams = loaded
        .iter()
        .map(|(name, backend)| (name.clone(), backend.upstreams()))
        .filter(|(_, ups)| !ups.is_empty())
        .collect();
    let backends = loaded
        .into_iter()
        .map(|(name, backend)| (name, backend.counters()))
        .collect();
    let body = state.inner.metrics.render(
        state.inner.limiter.running(),
        state.inner.limiter.queued(),
        backends,
        upstreams,
    );
    (
        [(
            header::CONTENT_TYPE,
            "application/openmetrics-text; version=1.0.0; charset=utf-8",
        )],
        body,
    )
        .into_response()
}

async fn method_not_allowed(request: Request) -> Response {
    let path = request.uri().path().to_string();
    ApiError::new(
        StatusCode::METHOD_NOT_ALLOWED,
        format!("method {} is not allowed on {path}", request.method()),
    )
    .into_response_for(dialect_of(&path))
}

/// Reads the whole request body within `body_timeout` and `max_body_bytes`, so that a
/// client sending its body slowly is answered 408 instead of holding a task forever.
async fn read_body(State(state): State<AppState>, request: Request, next: Next) -> Response {
    let config = &state.inner.config;
    let path = request.uri().path().to_string();
    let (parts, body) = request.into_parts();
    let read = axum::body::to_bytes(body, config.max_body_bytes);
    let bytes = match tokio::time::timeout(config.body_timeout, read).await {
        Ok(Ok(bytes)) => bytes,
        Ok(Err(e)) => {
            let too_large = std::error::Error::source(&e)
                .is_some_and(|s| s.is::<http_body_util::LengthLimitError>());
            let error = if too_large {
                ApiError::new(
                    StatusCode::PAYLOAD_TOO_LARGE,
                    format!(
                        "the request body is larger than {} bytes",
                        config.max_body_bytes
                    ),
                )
            } else {
                ApiError::bad_request(format!("cannot read the request body: {e}"))
            };
            return error.into_response_for(dialect_of(&path));
        }
        Err(_) => {
            return ApiError::new(
                StatusCode::REQUEST_TIMEOUT,
                format!(
                    "the request body did not arrive within {} s",
                    config.body_timeout.as_secs_f64()
                ),
            )
            .into_response_for(dialect_of(&path));
        }
    };
    next.run(Request::from_parts(parts, Body::from(bytes)))
        .await
}

async fn not_found(request: Request) -> Response {
    let path = request.uri().path().to_string();
    ApiError::new(StatusCode::NOT_FOUND, format!("no endpoint {path}"))
        .into_response_for(dialect_of(&path))
}

fn dialect_of(path: &str) -> Dialect {
    if path.starts_with("/v1") {
        Dialect::OpenAi
    } else {
        Dialect::Ollama
    }
}

/// Compares without an early exit on the first differing byte.
fn same_secret(a: &str, b: &str) -> bool {
    a.len() == b.len()
        && a.bytes()
            .zip(b.bytes())
            .fold(0u8, |acc, (x, y)| acc | (x ^ y))
            == 0
}

async fn auth(State(state): State<AppState>, request: Request, next: Next) -> Response {
    let Some(key) = state.inner.config.api_key.as_deref() else {
        return next.run(request).await;
    };
    let path = request.uri().path();
    if path == "/" || path == "/health" {
        return next.run(request).await;
    }
    let given = request
        .headers()
        .get(header::AUTHORIZATION)
        .and_then(|v| v.to_str().ok())
        .and_then(|v| v.strip_prefix("Bearer "))
        .map(str::trim);
    if given.is_some_and(|g| same_secret(g, key)) {
        return next.run(request).await;
    }
    let mut response = ApiError::unauthorized().into_response_for(dialect_of(path));
    response
        .headers_mut()
        .insert(header::WWW_AUTHENTICATE, HeaderValue::from_static("Bearer"));
    response
}

/// Counts the request and its latency; for streamed bodies at the end of the body.
async fn track(
    State(state): State<AppState>,
    matched: Option<MatchedPath>,
    request: Request,
    next: Next,
) -> Response {
    let endpoint = matched.map_or_else(|| "unmatched".to_string(), |m| m.as_str().to_string());
    let started = Instant::now();
    let response = next.run(request).await;
    let record = RequestRecord {
        metrics: Arc::clone(&state.inner.metrics),
        endpoint,
        status: response.status().as_u16(),
        started,
    };
    let streamed = response
        .headers()
        .get(header::CONTENT_TYPE)
        .and_then(|v| v.to_str().ok())
        .is_some_and(|t| {
            t.starts_with("text/event-stream") || t.starts_with("application/x-ndjson")
        });
    if !streamed {
        drop(record);
        return response;
    }
    let (parts, body) = response.into_parts();
    let body = body.into_data_stream().map(move |chunk| {
        let _ = &record;
        chunk
    });
    Response::from_parts(parts, Body::from_stream(body))
}

/// Parses a JSON body, with errors in the caller's dialect.
fn parse_body<T: DeserializeOwned>(body: Result<Bytes, BytesRejection>) -> Result<T, ApiError> {
    let bytes = body.map_err(|e| ApiError::new(e.status(), e.body_text()))?;
    serde_json::from_slice(&bytes)
        .map_err(|e| ApiError::bad_request(format!("invalid request body: {e}")))
}

fn unix_now() -> u64 {
    SystemTime::now()
        .duration_since(UNIX_EPOCH)
        .map_or(0, |d| d.as_secs())
}

fn rfc3339_now() -> String {
    humantime::format_rfc3339_nanos(SystemTime::now()).to_string()
}

/// A response id unique within this process and unlikely to repeat across runs.
fn new_id(prefix: &str) -> String {
    static COUNTER: AtomicU64 = AtomicU64::new(0);
    let n = COUNTER.fetch_add(1, Ordering::Relaxed);
    let nanos = SystemTime::now()
        .duration_since(UNIX_EPOCH)
        .map_or(0, |d| d.subsec_nanos());
    format!("{prefix}-{:x}{nanos:08x}{n:04x}", unix_now())
}
