//! `optillm serve` and signals: SIGTERM with a slow client open stops within the grace
//! period, and a second signal stops at once. The server fronts an OpenAI-compatible
//! upstream that is never called (no model is loaded), so no model file is needed.

#![cfg(unix)]
#![allow(clippy::unwrap_used, clippy::expect_used, clippy::panic)]

use std::io::{Read, Write};
use std::net::TcpStream;
use std::process::{Child, Command, Stdio};
use std::time::{Duration, Instant};

fn free_port() -> u16 {
    let l = std::net::TcpListener::bind("127.0.0.1:0").unwrap();
    l.local_addr().unwrap().port()
}

struct Server {
    child: Child,
    port: u16,
}

impl Drop for Server {
    fn drop(&mut self) {
        let _ = self.child.kill();
        let _ = self.child.wait();
    }
}

fn serve(extra: &[&str]) -> Server {
    let port = free_port();
    let upstream = format!("http://127.0.0.1:{}/v1", free_port());
    let port_text = port.to_string();
    let mut args = vec![
        "serve",
        "--backend",
        "openai",
        "--url",
        &upstream,
        "--model",
        "m",
        "--port",
        &port_text,
    ];
    args.extend_from_slice(extra);
    let child = Command::new(env!("CARGO_BIN_EXE_optillm"))
        .args(&args)
        .env("OPENAI_API_KEY", "unused")
        .stdout(Stdio::null())
        .stderr(Stdio::piped())
        .spawn()
        .unwrap();
    let server = Server { child, port };
    let started = Instant::now();
    while TcpStream::connect(("127.0.0.1", port)).is_err() {
        assert!(
            started.elapsed() < Duration::from_secs(20),
            "the server did not start"
        );
        std::thread::sleep(Duration::from_millis(50));
    }
    server
}

fn signal(server: &Server, name: &str) {
    let status = Command::new("kill")
        .arg(format!("-{name}"))
        .arg(server.child.id().to_string())
        .status()
        .unwrap();
    assert!(status.success());
}

/// Waits for the process to end; its exit code and how long it took.
fn wait_exit(server: &mut Server, limit: Duration) -> (Option<i32>, Duration) {
    let started = Instant::now();
    loop {
        if let Some(status) = server.child.try_wait().unwrap() {
            return (status.code(), started.elapsed());
        }
        assert!(
            started.elapsed() < limit,
            "the server was still running {limit:?} after the signal"
        );
        std::thread::sleep(Duration::from_millis(20));
    }
}

/// A client that opened a request and never finishes its headers.
fn slow_client(port: u16) -> TcpStream {
    let mut tcp = TcpStream::connect(("127.0.0.1", port)).unwrap();
    tcp.write_all(b"POST /v1/chat/completions HTTP/1.1\r\nHost: localhost\r\n")
        .unwrap();
    // Let the server accept it.
    std::thread::sleep(Duration::from_millis(200));
    tcp
}

#[test]
fn sigterm_with_a_slow_client_stops_within_the_grace_period() {
    let mut server = serve(&["--shutdown-grace", "1", "--header-timeout", "120"]);
    let _slow = slow_client(server.port);
    signal(&server, "TERM");
    let (code, took) = wait_exit(&mut server, Duration::from_secs(10));
    assert_eq!(code, Some(0));
    assert!(took < Duration::from_secs(5), "{took:?}");
}

#[test]
fn a_second_signal_stops_at_once() {
    let mut server = serve(&["--shutdown-grace", "120", "--header-timeout", "120"]);
    let _slow = slow_client(server.port);
    signal(&server, "TERM");
    std::thread::sleep(Duration::from_millis(300));
    assert!(
        server.child.try_wait().unwrap().is_none(),
        "stopped before the grace period"
    );
    signal(&server, "INT");
    let (code, _) = wait_exit(&mut server, Duration::from_secs(5));
    assert_eq!(code, Some(130));
    let mut stderr = String::new();
    server
        .child
        .stderr
        .take()
        .unwrap()
        .read_to_string(&mut stderr)
        .unwrap();
    assert!(stderr.contains("second signal"), "{stderr}");
}
