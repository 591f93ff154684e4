//! Prometheus metrics: requests by endpoint and status, tokens, latency, queue depth.

use std::time::Instant;

use prometheus_client::encoding::EncodeLabelSet;
use prometheus_client::metrics::counter::Counter;
use prometheus_client::metrics::family::Family;
use prometheus_client::metrics::gauge::Gauge;
use prometheus_client::metrics::histogram::{Histogram, exponential_buckets};
use prometheus_client::registry::Registry;

use optillm_core::Usage;

#[derive(Clone, Debug, Hash, PartialEq, Eq, EncodeLabelSet)]
struct RequestLabels {
    endpoint: String,
    status: String,
}

#[derive(Clone, Debug, Hash, PartialEq, Eq, EncodeLabelSet)]
struct EndpointLabels {
    endpoint: String,
}

#[derive(Clone, Debug, Hash, PartialEq, Eq, EncodeLabelSet)]
struct TokenLabels {
    kind: String,
}

type HistogramFamily = Family<EndpointLabels, Histogram, fn() -> Histogram>;

/// The server's metrics.
pub struct Metrics {
    registry: Registry,
    requests: Family<RequestLabels, Counter>,
    tokens: Family<TokenLabels, Counter>,
    latency: HistogramFamily,
    in_flight: Gauge,
    queue_depth: Gauge,
}

impl std::fmt::Debug for Metrics {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("Metrics").finish_non_exhaustive()
    }
}

fn latency_histogram() -> Histogram {
    // 5 ms .. ~164 s
    Histogram::new(exponential_buckets(0.005, 2.0, 16))
}

impl Default for Metrics {
    fn default() -> Self {
        let mut registry = Registry::with_prefix("optillm");
        let requests = Family::<RequestLabels, Counter>::default();
        let tokens = Family::<TokenLabels, Counter>::default();
        let latency: HistogramFamily = Family::new_with_constructor(latency_histogram);
        let in_flight = Gauge::default();
        let queue_depth = Gauge::default();
        registry.register(
            "requests",
            "HTTP requests answered, by endpoint and status",
            requests.clone(),
        );
        registry.register(
            "tokens",
            "Tokens processed by model calls, by kind (prompt or completion)",
            tokens.clone(),
        );
        registry.register(
            "request_duration_seconds",
            "Time from request to the end of the response body",
            latency.clone(),
        );
        registry.register(
            "requests_in_flight",
            "Requests holding a model slot",
            in_flight.clone(),
        );
        registry.register(
            "queue_depth",
            "Requests waiting for a model slot",
            queue_depth.clone(),
        );
        Self {
            registry,
            requests,
            tokens,
            latency,
            in_flight,
            queue_depth,
        }
    }
}

impl Metrics {
    /// Records one answered request.
    pub fn observe_request(&self, endpoint: &str, status: u16, started: Instant) {
        self.requests
            .get_or_create(&RequestLabels {
                endpoint: endpoint.to_string(),
                status: status.to_string(),
            })
            .inc();
        self.latency
            .get_or_create(&EndpointLabels {
                endpoint: endpoint.to_string(),
            })
            .observe(started.elapsed().as_secs_f64());
    }

    /// Adds the tokens of one request.
    pub fn add_usage(&self, usage: &Usage) {
        for (kind, n) in [
            ("prompt", usage.prompt_tokens),
            ("completion", usage.completion_tokens),
        ] {
            self.tokens
                .get_or_create(&TokenLabels { kind: kind.into() })
                .inc_by(u64::from(n));
        }
    }

    /// The Prometheus text exposition, with the gauges set to `running` and `queued`.
    pub fn render(&self, running: usize, queued: usize) -> String {
        self.in_flight
            .set(i64::try_from(running).unwrap_or(i64::MAX));
        self.queue_depth
            .set(i64::try_from(queued).unwrap_or(i64::MAX));
        let mut out = String::new();
        if let Err(e) = prometheus_client::encoding::text::encode(&mut out, &self.registry) {
            tracing::warn!(error = %e, "encoding metrics failed");
        }
        out
    }
}

/// Records a request when dropped (at the end of a streamed body, or when the client leaves).
pub struct RequestRecord {
    pub metrics: std::sync::Arc<Metrics>,
    pub endpoint: String,
    pub status: u16,
    pub started: Instant,
}

impl Drop for RequestRecord {
    fn drop(&mut self) {
        self.metrics
            .observe_request(&self.endpoint, self.status, self.started);
    }
}
