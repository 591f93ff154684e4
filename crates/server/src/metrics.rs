//! Prometheus metrics: requests by endpoint and status, tokens, model calls and the HTTP
//! requests they sent to remote servers, latency, queue depth,
//! the counters each loaded backend keeps of its own work, and for a backend over
//! several servers (a pool) each upstream's requests, failures, failovers, latency, in
//! flight and health, labelled `{model, upstream}`.

use std::time::Instant;

use prometheus_client::collector::Collector;
use prometheus_client::encoding::{DescriptorEncoder, EncodeLabelSet, EncodeMetric, text};
use prometheus_client::metrics::counter::ConstCounter;
use prometheus_client::metrics::counter::Counter;
use prometheus_client::metrics::family::Family;
use prometheus_client::metrics::gauge::{ConstGauge, Gauge};
use prometheus_client::metrics::histogram::{Histogram, exponential_buckets};
use prometheus_client::registry::Registry;

use optillm_core::{BackendCounter, UpstreamStats, Usage};

/// The prefix of every metric name.
const PREFIX: &str = "optillm";

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

#[derive(Clone, Debug, Hash, PartialEq, Eq, EncodeLabelSet)]
struct ModelLabels {
    model: String,
}

/// The backends' counters as read for one scrape (model name, counters), encoded as one
/// metric per counter name with a `model` label.
#[derive(Debug)]
struct BackendCollector(Vec<(String, Vec<BackendCounter>)>);

impl Collector for BackendCollector {
    fn encode(&self, mut encoder: DescriptorEncoder) -> Result<(), std::fmt::Error> {
        // One metric per counter name, each model's value a series of it.
        let mut rows: Vec<(&str, &BackendCounter)> = self
            .0
            .iter()
            .flat_map(|(model, counters)| counters.iter().map(move |c| (model.as_str(), c)))
            .collect();
        rows.sort_by_key(|(_, c)| c.name);
        for metric_rows in rows.chunk_by(|a, b| a.1.name == b.1.name) {
            let Some((_, first)) = metric_rows.first() else {
                continue;
            };
            let name = format!("backend_{}", first.name);
            let mut metric = encoder.encode_descriptor(
                &name,
                first.help,
                None,
                prometheus_client::metrics::MetricType::Counter,
            )?;
            for (model, c) in metric_rows {
                let labels = ModelLabels {
                    model: (*model).to_string(),
                };
                ConstCounter::new(c.value).encode(metric.encode_family(&labels)?)?;
            }
        }
        Ok(())
    }
}

#[derive(Clone, Debug, Hash, PartialEq, Eq, EncodeLabelSet)]
struct UpstreamLabels {
    model: String,
    upstream: String,
}

/// One value per upstream: a counter (it only grows) or a gauge.
#[derive(Clone, Copy)]
enum UpstreamValue {
    Counter(fn(&UpstreamStats) -> f64),
    Gauge(fn(&UpstreamStats) -> f64),
}

/// The upstream metrics: name (after `optillm_`), help, value.
const UPSTREAM_METRICS: [(&str, &str, UpstreamValue); 6] = [
    (
        "upstream_requests",
        "Requests a pool sent to each upstream (each attempt counts)",
        UpstreamValue::Counter(|s| s.requests as f64),
    ),
    (
        "upstream_failures",
        "Requests to each upstream that failed (before or after the first byte)",
        UpstreamValue::Counter(|s| s.failures as f64),
    ),
    (
        "upstream_failovers",
        "Requests moved from each upstream to another after a failure before the first byte",
        UpstreamValue::Counter(|s| s.failovers as f64),
    ),
    (
        "upstream_latency_seconds",
        "Summed wall time of each upstream's finished requests",
        UpstreamValue::Counter(|s| s.latency_s),
    ),
    (
        "upstream_in_flight",
        "Requests in flight on each upstream, including those waiting for room on it",
        UpstreamValue::Gauge(|s| s.in_flight as f64),
    ),
    (
        "upstream_healthy",
        "1 when the upstream takes requests, 0 while it backs off after a failure",
        UpstreamValue::Gauge(|s| if s.healthy { 1.0 } else { 0.0 }),
    ),
];

/// The upstreams of the pooled backends as read for one scrape (model name, upstreams).
#[derive(Debug)]
struct UpstreamCollector(Vec<(String, Vec<UpstreamStats>)>);

impl Collector for UpstreamCollector {
    fn encode(&self, mut encoder: DescriptorEncoder) -> Result<(), std::fmt::Error> {
        if self.0.iter().all(|(_, ups)| ups.is_empty()) {
            return Ok(());
        }
        for (name, help, value) in UPSTREAM_METRICS {
            let kind = match value {
                UpstreamValue::Counter(_) => prometheus_client::metrics::MetricType::Counter,
                UpstreamValue::Gauge(_) => prometheus_client::metrics::MetricType::Gauge,
            };
            let mut metric = encoder.encode_descriptor(name, help, None, kind)?;
            for (model, ups) in &self.0 {
                for up in ups {
                    let labels = UpstreamLabels {
                        model: model.clone(),
                        upstream: up.name.clone(),
                    };
                    let family = metric.encode_family(&labels)?;
                    match value {
                        UpstreamValue::Counter(f) => ConstCounter::new(f(up)).encode(family)?,
                        UpstreamValue::Gauge(f) => ConstGauge::new(f(up)).encode(family)?,
                    }
                }
            }
        }
        Ok(())
    }
}

type HistogramFamily = Family<EndpointLabels, Histogram, fn() -> Histogram>;

/// The server's metrics.
pub struct Metrics {
    registry: Registry,
    requests: Family<RequestLabels, Counter>,
    tokens: Family<TokenLabels, Counter>,
    calls: Counter,
    remote_requests: Counter,
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
        let mut registry = Registry::with_prefix(PREFIX);
        let requests = Family::<RequestLabels, Counter>::default();
        let tokens = Family::<TokenLabels, Counter>::default();
        let calls = Counter::default();
        let remote_requests = Counter::default();
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
            "model_calls",
            "Model calls made by approaches (one per backend call, whatever its n)",
            calls.clone(),
        );
        registry.register(
            "remote_requests",
            "HTTP requests sent to remote model servers (n samples a server would not batch \
             are n requests; a rejected request counts too)",
            remote_requests.clone(),
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
            calls,
            remote_requests,
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

    /// Adds the model calls of one request and the HTTP requests they sent upstream.
    pub fn add_calls(&self, calls: u32, remote_requests: u32) {
        self.calls.inc_by(u64::from(calls));
        self.remote_requests.inc_by(u64::from(remote_requests));
    }

    /// The Prometheus text exposition, with the gauges set to `running` and `queued`,
    /// the backend counters to `backends` (model name, counters) and the upstream
    /// metrics to `upstreams` (model name, its pool's upstreams).
    pub fn render(
        &self,
        running: usize,
        queued: usize,
        backends: Vec<(String, Vec<BackendCounter>)>,
        upstreams: Vec<(String, Vec<UpstreamStats>)>,
    ) -> String {
        self.in_flight
            .set(i64::try_from(running).unwrap_or(i64::MAX));
        self.queue_depth
            .set(i64::try_from(queued).unwrap_or(i64::MAX));
        // The backends' counters are read per scrape: a registry of this scrape only.
        let mut scrape = Registry::with_prefix(PREFIX);
        scrape.register_collector(Box::new(BackendCollector(backends)));
        scrape.register_collector(Box::new(UpstreamCollector(upstreams)));
        let mut out = String::new();
        let encoded = text::encode_registry(&mut out, &self.registry)
            .and_then(|()| text::encode_registry(&mut out, &scrape))
            .and_then(|()| text::encode_eof(&mut out));
        if let Err(e) = encoded {
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
