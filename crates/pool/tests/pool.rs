//! The pool's routing, failover, back-off and `n` split, over scripted upstreams.

use std::sync::Arc;
use std::time::Duration;

use async_trait::async_trait;
use optillm_core::mock::MockBackend;
use optillm_core::{
    Backend, BackendError, Capabilities, ChatRequest, CompletionStream, Sampling, StreamEvent,
};
use optillm_pool::{Pool, PoolError, PoolOptions, Upstream};

fn up(name: &str, backend: Arc<dyn Backend>) -> Upstream {
    Upstream::new(name, backend)
}

fn down() -> Arc<MockBackend> {
    Arc::new(MockBackend::new(|_, _| {
        Err(BackendError::Connection("connection refused".into()))
    }))
}

fn fast_backoff() -> PoolOptions {
    PoolOptions {
        backoff_min: Duration::from_millis(50),
        backoff_max: Duration::from_millis(400),
    }
}

/// Answers after a delay, so that concurrent requests overlap.
struct Slow(Arc<MockBackend>);

#[async_trait]
impl Backend for Slow {
    fn model(&self) -> &str {
        self.0.model()
    }
    fn capabilities(&self) -> Capabilities {
        self.0.capabilities()
    }
    async fn stream(&self, request: ChatRequest) -> Result<CompletionStream, BackendError> {
        tokio::time::sleep(Duration::from_millis(150)).await;
        self.0.stream(request).await
    }
}

/// Sends one delta, then fails: a server that dies mid-answer.
struct DiesMidway;

#[async_trait]
impl Backend for DiesMidway {
    fn model(&self) -> &str {
        "dies"
    }
    fn capabilities(&self) -> Capabilities {
        Capabilities::default()
    }
    async fn stream(&self, _: ChatRequest) -> Result<CompletionStream, BackendError> {
        Ok(CompletionStream::from_events(vec![
            Ok(StreamEvent::Delta {
                index: 0,
                text: "The answer".into(),
                logprob: None,
            }),
            Err(BackendError::Connection("reset by peer".into())),
        ]))
    }
}

#[tokio::test]
async fn a_request_fails_over_before_its_first_byte_and_the_dead_upstream_backs_off() {
    let dead = down();
    let alive = Arc::new(MockBackend::constant("fine"));
    let pool = Pool::new(
        "m",
        vec![up("dead", dead.clone()), up("alive", alive.clone())],
        fast_backoff(),
    )
    .unwrap();
    let c = pool.complete(ChatRequest::user("q")).await.unwrap();
    assert_eq!(c.text(), "fine");
    let s = pool.stats();
    assert_eq!((s[0].requests, s[0].failures, s[0].failovers), (1, 1, 1));
    assert!(!s[0].healthy);
    assert_eq!((s[1].requests, s[1].failures), (1, 0));

    // While it backs off, the dead one is not tried.
    pool.complete(ChatRequest::user("q")).await.unwrap();
    assert_eq!(dead.calls(), 1, "not tried again while backing off");
    assert_eq!(pool.stats()[0].requests, 1);
    assert_eq!(alive.calls(), 2);

    // After the back-off it is probed again (first listed, equal load), fails, and the
    // request still succeeds elsewhere; its back-off doubles.
    tokio::time::sleep(Duration::from_millis(80)).await;
    pool.complete(ChatRequest::user("q")).await.unwrap();
    let s = pool.stats();
    assert_eq!((s[0].requests, s[0].failures), (2, 2));
    assert_eq!(alive.calls(), 3);
    let counters = pool.counters();
    assert!(
        counters
            .iter()
            .any(|c| c.name == "pool_failovers" && c.value == 2)
    );
}

#[tokio::test]
async fn a_request_that_is_wrong_in_itself_is_not_retried_elsewhere() {
    let picky = Arc::new(MockBackend::new(|_, _| {
        Err(BackendError::ContextOverflow {
            prompt_tokens: 9000,
            context_length: 8192,
        })
    }));
    let other = Arc::new(MockBackend::constant("x"));
    let pool = Pool::new(
        "m",
        vec![up("a", picky), up("b", other.clone())],
        PoolOptions::default(),
    )
    .unwrap();
    let e = pool.complete(ChatRequest::user("q")).await.unwrap_err();
    assert!(matches!(e, BackendError::ContextOverflow { .. }), "{e}");
    assert_eq!(other.calls(), 0);
    assert!(pool.stats()[0].healthy, "the upstream did nothing wrong");
    // Bad requests are refused before any upstream sees them.
    let bad = ChatRequest::user("q").with_n(0);
    assert!(matches!(
        pool.complete(bad).await,
        Err(BackendError::InvalidRequest(_))
    ));
}

#[tokio::test]
async fn when_every_upstream_is_down_the_last_error_is_returned() {
    let pool = Pool::new("m", vec![up("a", down()), up("b", down())], fast_backoff()).unwrap();
    let e = pool.complete(ChatRequest::user("q")).await.unwrap_err();
    assert!(matches!(e, BackendError::Connection(_)), "{e}");
    // Both are backing off; the next request still tries rather than failing untried.
    let e = pool.complete(ChatRequest::user("q")).await.unwrap_err();
    assert!(matches!(e, BackendError::Connection(_)), "{e}");
    assert_eq!(pool.stats()[0].requests + pool.stats()[1].requests, 4);
}

#[tokio::test]
async fn no_failover_once_streaming_began() {
    let spare = Arc::new(MockBackend::constant("spare"));
    let pool = Pool::new(
        "m",
        vec![up("dies", Arc::new(DiesMidway)), up("spare", spare.clone())],
        fast_backoff(),
    )
    .unwrap();
    let mut s = pool.stream(ChatRequest::user("q")).await.unwrap();
    let first = s.next_event().await.unwrap().unwrap();
    assert!(matches!(first, StreamEvent::Delta { .. }));
    let second = s.next_event().await.unwrap();
    assert!(matches!(second, Err(BackendError::Connection(_))));
    assert_eq!(spare.calls(), 0);
    // The failure counts against the upstream once the stream has ended.
    tokio::time::sleep(Duration::from_millis(20)).await;
    assert_eq!(pool.stats()[0].failures, 1);
    assert_eq!(pool.stats()[0].failovers, 0);
}

/// Sends one delta, then its stream ends without a final event (a server killed midway
/// whose client saw the connection close cleanly).
struct EndsMidway;

#[async_trait]
impl Backend for EndsMidway {
    fn model(&self) -> &str {
        "ends"
    }
    fn capabilities(&self) -> Capabilities {
        Capabilities::default()
    }
    async fn stream(&self, _: ChatRequest) -> Result<CompletionStream, BackendError> {
        Ok(CompletionStream::from_events(vec![Ok(
            StreamEvent::Delta {
                index: 0,
                text: "The ans".into(),
                logprob: None,
            },
        )]))
    }
}

#[tokio::test]
async fn a_whole_completion_that_fails_midway_is_retried_on_another_upstream() {
    for dies in [
        Arc::new(DiesMidway) as Arc<dyn Backend>,
        Arc::new(EndsMidway) as Arc<dyn Backend>,
    ] {
        let spare = Arc::new(MockBackend::constant("spare"));
        let pool = Pool::new(
            "m",
            vec![up("dies", dies), up("spare", spare.clone())],
            fast_backoff(),
        )
        .unwrap();
        // Nothing of a whole completion reached the caller: it is answered by the spare.
        let c = pool.complete(ChatRequest::user("q")).await.unwrap();
        assert_eq!(c.text(), "spare");
        assert_eq!(spare.calls(), 1);
        let stats = pool.stats();
        assert_eq!((stats[0].requests, stats[0].failures), (1, 1));
        assert!(!stats[0].healthy, "the upstream that died backs off");
        assert_eq!((stats[1].requests, stats[1].failures), (1, 0));
        assert_eq!(pool.upstreams(), stats, "the same counters for /metrics");
    }
}

#[tokio::test]
async fn a_whole_completion_is_not_retried_when_every_upstream_dies_midway() {
    let pool = Pool::new(
        "m",
        vec![up("a", Arc::new(DiesMidway)), up("b", Arc::new(DiesMidway))],
        fast_backoff(),
    )
    .unwrap();
    let e = pool.complete(ChatRequest::user("q")).await.unwrap_err();
    assert!(matches!(e, BackendError::Connection(_)), "{e}");
    let requests: u64 = pool.stats().iter().map(|s| s.requests).sum();
    assert_eq!(requests, 2, "once per upstream, no more");
}

#[tokio::test]
async fn concurrent_requests_spread_by_outstanding_work_and_weight() {
    let mocks: Vec<Arc<MockBackend>> = (0..3)
        .map(|_| Arc::new(MockBackend::constant("ok")))
        .collect();
    let ups = mocks
        .iter()
        .enumerate()
        .map(|(i, m)| {
            let u = up(&format!("u{i}"), Arc::new(Slow(m.clone())));
            if i == 0 { u.with_weight(2) } else { u }
        })
        .collect();
    let pool = Arc::new(Pool::new("m", ups, PoolOptions::default()).unwrap());
    let runs = (0..4).map(|_| {
        let pool = pool.clone();
        tokio::spawn(async move { pool.complete(ChatRequest::user("q")).await })
    });
    for r in futures::future::join_all(runs).await {
        r.unwrap().unwrap();
    }
    // Weight 2 takes two at once; the others one each.
    let calls: Vec<usize> = mocks.iter().map(|m| m.calls()).collect();
    assert_eq!(calls, vec![2, 1, 1]);
    assert!(pool.stats().iter().all(|s| s.in_flight == 0));
}

#[tokio::test]
async fn a_full_upstream_makes_requests_wait_or_go_elsewhere() {
    let a = Arc::new(MockBackend::constant("a"));
    let b = Arc::new(MockBackend::constant("b"));
    let pool = Arc::new(
        Pool::new(
            "m",
            vec![
                up("a", Arc::new(Slow(a.clone())))
                    .with_weight(10)
                    .with_max_concurrent(1),
                up("b", Arc::new(Slow(b.clone()))),
            ],
            PoolOptions::default(),
        )
        .unwrap(),
    );
    let runs = (0..3).map(|_| {
        let pool = pool.clone();
        tokio::spawn(async move { pool.complete(ChatRequest::user("q")).await })
    });
    for r in futures::future::join_all(runs).await {
        r.unwrap().unwrap();
    }
    // `a` has the weight but room for one: the others go to `b`.
    assert_eq!((a.calls(), b.calls()), (1, 2));
}

#[tokio::test]
async fn samples_are_split_across_upstreams_that_cannot_batch_with_their_seeds() {
    let caps = Capabilities {
        native_n: false,
        ..Capabilities::default()
    };
    let a = Arc::new(
        MockBackend::new(|r, i| Ok(format!("a{}", r.sampling.seed.unwrap_or(0) + i)))
            .with_capabilities(caps),
    );
    let b = Arc::new(
        MockBackend::new(|r, i| Ok(format!("b{}", r.sampling.seed.unwrap_or(0) + i)))
            .with_capabilities(caps),
    );
    let pool = Pool::new(
        "m",
        vec![up("a", a.clone()), up("b", b.clone())],
        PoolOptions::default(),
    )
    .unwrap();
    let req = ChatRequest::user("q")
        .with_n(5)
        .with_sampling(Sampling::default().with_seed(10));
    let c = pool.complete(req).await.unwrap();
    let texts: Vec<&str> = c.choices.iter().map(|c| c.text.as_str()).collect();
    assert_eq!(texts, vec!["a10", "a11", "a12", "b13", "b14"]);
    assert_eq!(
        c.choices.iter().map(|c| c.index).collect::<Vec<_>>(),
        vec![0, 1, 2, 3, 4]
    );
    assert_eq!((a.requests()[0].n, b.requests()[0].n), (3, 2));
    assert_eq!(b.requests()[0].sampling.seed, Some(13));
    // Upstreams that batch get the whole request.
    let batching = Arc::new(MockBackend::constant("z"));
    let pool = Pool::new(
        "m",
        vec![
            up("z", batching.clone()),
            up("y", Arc::new(MockBackend::constant("y"))),
        ],
        PoolOptions::default(),
    )
    .unwrap();
    assert!(pool.capabilities().native_n);
    let c = pool
        .complete(ChatRequest::user("q").with_n(4))
        .await
        .unwrap();
    assert_eq!(c.choices.len(), 4);
    assert_eq!(batching.requests()[0].n, 4);
}

#[test]
fn bad_pools_are_refused() {
    assert!(matches!(
        Pool::new("m", vec![], PoolOptions::default()),
        Err(PoolError::Empty)
    ));
    let zero = up("z", Arc::new(MockBackend::constant("x"))).with_weight(0);
    assert!(matches!(
        Pool::new("m", vec![zero], PoolOptions::default()),
        Err(PoolError::BadUpstream { .. })
    ));
    let none = up("z", Arc::new(MockBackend::constant("x"))).with_max_concurrent(0);
    assert!(Pool::new("m", vec![none], PoolOptions::default()).is_err());
}
