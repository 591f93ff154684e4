//! `/metrics` of a model served through an upstream pool: one series per upstream of its
//! requests, failures, failovers, latency, in flight and health.
#![allow(clippy::unwrap_used, clippy::expect_used, clippy::panic)]

use std::sync::Arc;
use std::time::Duration;

use axum::body::Body;
use axum::http::{Request, StatusCode};
use http_body_util::BodyExt;
use optillm_core::mock::MockBackend;
use optillm_core::{Backend, BackendError};
use optillm_pool::{Pool, PoolOptions, Upstream};
use optillm_server::{AppState, ServerConfig, StaticModels, router};
use serde_json::json;
use tower::ServiceExt;

async fn send(app: &axum::Router, request: Request<Body>) -> (StatusCode, String) {
    let response = app.clone().oneshot(request).await.unwrap();
    let status = response.status();
    let bytes = response.into_body().collect().await.unwrap().to_bytes();
    (status, String::from_utf8(bytes.to_vec()).unwrap())
}

async fn scrape(app: &axum::Router) -> String {
    let (status, body) = send(app, Request::get("/metrics").body(Body::empty()).unwrap()).await;
    assert_eq!(status, StatusCode::OK);
    body
}

/// The value of one series, `None` when absent.
fn metric(text: &str, series: &str) -> Option<f64> {
    text.lines()
        .find_map(|l| l.strip_prefix(series).and_then(|r| r.strip_prefix(' ')))
        .map(|v| v.trim().parse().unwrap())
}

#[tokio::test]
async fn metrics_show_each_upstream_of_a_pool() {
    let dead = Arc::new(MockBackend::new(|_, _| {
        Err(BackendError::Connection("connection refused".into()))
    }));
    let alive = Arc::new(MockBackend::constant("fine"));
    let pool = Pool::new(
        "pooled",
        vec![
            Upstream::new("http://a:8080/v1", dead.clone() as Arc<dyn Backend>),
            Upstream::new("http://b:8080/v1", alive.clone() as Arc<dyn Backend>),
        ],
        PoolOptions {
            backoff_min: Duration::from_secs(60),
            backoff_max: Duration::from_secs(60),
        },
    )
    .unwrap();
    let app = router(
        AppState::new(
            ServerConfig::default(),
            Arc::new(
                StaticModels::new()
                    .with("pooled", Arc::new(pool))
                    .with("plain", Arc::new(MockBackend::constant("z"))),
            ),
        )
        .unwrap(),
    );
    let series =
        |name: &str, up: &str| format!(r#"optillm_{name}{{model="pooled",upstream="{up}"}}"#);
    let (a, b) = ("http://a:8080/v1", "http://b:8080/v1");

    let before = scrape(&app).await;
    assert_eq!(
        metric(&before, &series("upstream_requests_total", a)),
        Some(0.0),
        "{before}"
    );
    assert_eq!(
        metric(&before, &series("upstream_healthy", a)),
        Some(1.0),
        "{before}"
    );
    assert!(
        before.contains("# TYPE optillm_upstream_requests counter"),
        "{before}"
    );
    assert!(
        before.contains("# TYPE optillm_upstream_in_flight gauge"),
        "{before}"
    );
    assert!(
        !before.contains(r#"model="plain",upstream"#),
        "a backend without upstreams has no series"
    );

    for _ in 0..3 {
        let body = json!({"model": "pooled", "messages": [{"role": "user", "content": "q"}]});
        let (status, reply) = send(
            &app,
            Request::post("/v1/chat/completions")
                .header("content-type", "application/json")
                .body(Body::from(body.to_string()))
                .unwrap(),
        )
        .await;
        assert_eq!(status, StatusCode::OK, "{reply}");
        assert!(reply.contains("fine"), "{reply}");
    }
    // The pool's stream forwarder records latency once the stream has ended.
    tokio::time::sleep(Duration::from_millis(50)).await;

    let after = scrape(&app).await;
    // The first request tried `a` (listed first), failed over to `b`; `a` then backs off.
    assert_eq!(
        metric(&after, &series("upstream_requests_total", a)),
        Some(1.0),
        "{after}"
    );
    assert_eq!(
        metric(&after, &series("upstream_failures_total", a)),
        Some(1.0),
        "{after}"
    );
    assert_eq!(
        metric(&after, &series("upstream_failovers_total", a)),
        Some(1.0),
        "{after}"
    );
    assert_eq!(
        metric(&after, &series("upstream_healthy", a)),
        Some(0.0),
        "{after}"
    );
    assert_eq!(
        metric(&after, &series("upstream_requests_total", b)),
        Some(3.0),
        "{after}"
    );
    assert_eq!(
        metric(&after, &series("upstream_failures_total", b)),
        Some(0.0),
        "{after}"
    );
    assert_eq!(
        metric(&after, &series("upstream_in_flight", b)),
        Some(0.0),
        "{after}"
    );
    assert_eq!(
        metric(&after, &series("upstream_healthy", b)),
        Some(1.0),
        "{after}"
    );
    assert!(
        metric(&after, &series("upstream_latency_seconds_total", b)).is_some(),
        "{after}"
    );
    assert_eq!((dead.calls(), alive.calls()), (1, 3));
    // The pool's totals are backend counters like any other backend's.
    assert_eq!(
        metric(
            &after,
            r#"optillm_backend_pool_failovers_total{model="pooled"}"#
        ),
        Some(1.0),
        "{after}"
    );
    assert_eq!(
        after.matches("# HELP optillm_upstream_requests ").count(),
        1
    );
    assert!(after.ends_with("# EOF\n"), "{after}");
}
