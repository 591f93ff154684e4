//! Accepting connections: HTTP/1.1 served by hyper, bounded in time and in number.
//!
//! - hyper's header-read timeout bounds how long a client may take to send a request's
//!   headers, and how long a keep-alive connection may sit idle between requests;
//! - [`crate::read_body`] bounds the time to receive a request body;
//! - at most `max_connections` connections are open at once: beyond that, new clients wait
//!   in the kernel's accept backlog instead of taking a file descriptor each;
//! - shutdown stops accepting, lets the requests in flight finish for `shutdown_grace`,
//!   then drops what is left (dropping a request cancels its model work).

use std::future::Future;
use std::sync::Arc;
use std::time::Duration;

use axum::Router;
use hyper_util::rt::{TokioIo, TokioTimer};
use hyper_util::server::graceful::GracefulShutdown;
use hyper_util::service::TowerToHyperService;
use tokio::net::TcpListener;
use tokio::sync::Semaphore;
use tokio::task::JoinSet;

use crate::ServerConfig;

/// Serves `app` on `listener` until `shutdown` completes, then drains (see the module doc).
pub(crate) async fn run(
    listener: TcpListener,
    app: Router,
    config: &ServerConfig,
    shutdown: impl Future<Output = ()> + Send + 'static,
) {
    let mut http = hyper::server::conn::http1::Builder::new();
    http.timer(TokioTimer::new())
        .header_read_timeout(config.header_timeout)
        .keep_alive(true);
    let slots = Arc::new(Semaphore::new(config.max_connections.max(1)));
    let graceful = GracefulShutdown::new();
    let mut connections = JoinSet::new();
    tokio::pin!(shutdown);
    loop {
        while connections.try_join_next().is_some() {}
        let permit = tokio::select! {
            biased;
            () = &mut shutdown => break,
            permit = Arc::clone(&slots).acquire_owned() => match permit {
                Ok(p) => p,
                Err(_) => break,
            },
        };
        let accepted = tokio::select! {
            biased;
            () = &mut shutdown => break,
            accepted = listener.accept() => accepted,
        };
        let stream = match accepted {
            Ok((stream, _peer)) => stream,
            Err(e) => {
                // Out of file descriptors or memory: wait a little instead of spinning.
                tracing::warn!(error = %e, "accept failed");
                tokio::time::sleep(Duration::from_millis(100)).await;
                continue;
            }
        };
        let _ = stream.set_nodelay(true);
        let service = TowerToHyperService::new(app.clone());
        let connection = graceful.watch(http.serve_connection(TokioIo::new(stream), service));
        connections.spawn(async move {
            if let Err(e) = connection.await {
                tracing::debug!(error = %e, "connection ended with an error");
            }
            drop(permit);
        });
    }
    drop(listener);
    let open = connections.len();
    if open > 0 {
        tracing::info!(
            connections = open,
            grace = ?config.shutdown_grace,
            "shutting down: finishing the requests in flight"
        );
    }
    let drained = tokio::time::timeout(config.shutdown_grace, graceful.shutdown()).await;
    if drained.is_err() {
        tracing::warn!(
            connections = connections.len(),
            "shutdown grace period over: closing the connections left"
        );
    }
    connections.shutdown().await;
}

/// Completes at the first SIGINT (Ctrl-C) or SIGTERM. From then on a second one ends the
/// process at once (exit status 130), without waiting for the requests in flight: for
/// binaries that pass this to [`crate::serve`].
pub async fn shutdown_signal() {
    first_signal().await;
    tracing::warn!("shutting down: finishing requests in flight (signal again to stop now)");
    tokio::spawn(async {
        first_signal().await;
        tracing::warn!("second signal: stopping now");
        std::process::exit(130);
    });
}

async fn first_signal() {
    #[cfg(unix)]
    {
        use tokio::signal::unix::{SignalKind, signal};
        match signal(SignalKind::terminate()) {
            Ok(mut term) => {
                tokio::select! {
                    _ = tokio::signal::ctrl_c() => {}
                    _ = term.recv() => {}
                }
            }
            Err(_) => {
                let _ = tokio::signal::ctrl_c().await;
            }
        }
    }
    #[cfg(not(unix))]
    {
        let _ = tokio::signal::ctrl_c().await;
    }
}
