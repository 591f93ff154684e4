//! Serves a scripted mock model (words as tokens) for trying HTTP clients without a real
//! model: `cargo run -p optillm-server --example mock_serve -- 18766 smollm2-135m`.
#![allow(clippy::unwrap_used, clippy::expect_used)]

use std::net::{Ipv4Addr, SocketAddr};
use std::sync::Arc;

use optillm_core::mock::MockBackend;
use optillm_server::{ServerConfig, StaticModels, serve};

#[tokio::main]
async fn main() {
    let mut args = std::env::args().skip(1);
    let port: u16 = args
        .next()
        .map_or(18766, |p| p.parse().expect("a port number"));
    let name = args.next().unwrap_or_else(|| "smollm2-135m".into());
    let counting: Vec<String> = (1..=100).map(|i| format!("{i},")).collect();
    let text = counting.join(" ");
    let backend = Arc::new(MockBackend::new(move |_, i| {
        Ok(format!("choice{i} {text}"))
    }));
    let config = ServerConfig {
        bind: SocketAddr::from((Ipv4Addr::LOCALHOST, port)),
        ..ServerConfig::default()
    };
    let models = Arc::new(StaticModels::new().with(name, backend));
    serve(config, models, async {
        let _ = tokio::signal::ctrl_c().await;
    })
    .await
    .expect("server failed");
}
