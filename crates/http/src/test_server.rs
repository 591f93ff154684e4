//! A loopback test server for the remote backends' wire tests: scripted replies with
//! exact chunking, delays and disconnects, recording every request it receives.

#![allow(dead_code, clippy::unwrap_used, clippy::expect_used, clippy::panic)]

use std::net::SocketAddr;
use std::sync::atomic::{AtomicUsize, Ordering};
use std::sync::{Arc, Mutex};
use std::time::Duration;

use tokio::io::{AsyncReadExt, AsyncWriteExt};
use tokio::net::{TcpListener, TcpStream};

/// A request the server received.
#[derive(Debug, Clone)]
pub struct Received {
    pub method: String,
    pub path: String,
    pub headers: Vec<(String, String)>,
    pub body: Vec<u8>,
}

impl Received {
    pub fn json(&self) -> serde_json::Value {
        serde_json::from_slice(&self.body).expect("request body is JSON")
    }
    pub fn header(&self, name: &str) -> Option<&str> {
        self.headers
            .iter()
            .find(|(k, _)| k.eq_ignore_ascii_case(name))
            .map(|(_, v)| v.as_str())
    }
}

/// What to answer.
#[derive(Debug, Clone)]
pub struct Reply {
    pub status: u16,
    pub content_type: &'static str,
    /// Body parts, each written as its own HTTP chunk, with `gap` between them.
    pub parts: Vec<Vec<u8>>,
    /// Wait before sending anything (status line included).
    pub delay: Duration,
    pub gap: Duration,
    /// Drop the connection after the parts, without ending the chunked body.
    pub disconnect: bool,
}

impl Reply {
    pub fn new(status: u16, content_type: &'static str, parts: Vec<Vec<u8>>) -> Self {
        Self {
            status,
            content_type,
            parts,
            delay: Duration::ZERO,
            gap: Duration::from_millis(5),
            disconnect: false,
        }
    }
    pub fn json(status: u16, body: &str) -> Self {
        Self::new(status, "application/json", vec![body.as_bytes().to_vec()])
    }
    /// `body` cut at the given byte offsets.
    pub fn split(status: u16, content_type: &'static str, body: &[u8], cuts: &[usize]) -> Self {
        let mut parts = Vec::new();
        let mut from = 0;
        for &c in cuts {
            parts.push(body[from..c].to_vec());
            from = c;
        }
        parts.push(body[from..].to_vec());
        Self::new(status, content_type, parts)
    }
    pub fn with_delay(mut self, d: Duration) -> Self {
        self.delay = d;
        self
    }
    pub fn with_gap(mut self, d: Duration) -> Self {
        self.gap = d;
        self
    }
    pub fn disconnecting(mut self) -> Self {
        self.disconnect = true;
        self
    }
}

type Handler = dyn Fn(&Received, usize) -> Reply + Send + Sync;

pub struct TestServer {
    pub addr: SocketAddr,
    received: Arc<Mutex<Vec<Received>>>,
    in_flight: Arc<AtomicUsize>,
    max_in_flight: Arc<AtomicUsize>,
    /// Connections on which writing failed (the client went away).
    pub broken_writes: Arc<AtomicUsize>,
}

impl TestServer {
    /// Serves `handler(request, number_of_requests_before_it)` on 127.0.0.1.
    pub async fn start(
        handler: impl Fn(&Received, usize) -> Reply + Send + Sync + 'static,
    ) -> Self {
        let listener = TcpListener::bind("127.0.0.1:0").await.expect("bind");
        let addr = listener.local_addr().expect("addr");
        let handler: Arc<Handler> = Arc::new(handler);
        let received = Arc::new(Mutex::new(Vec::new()));
        let in_flight = Arc::new(AtomicUsize::new(0));
        let max_in_flight = Arc::new(AtomicUsize::new(0));
        let broken_writes = Arc::new(AtomicUsize::new(0));
        let (r, f, m, b) = (
            received.clone(),
            in_flight.clone(),
            max_in_flight.clone(),
            broken_writes.clone(),
        );
        tokio::spawn(async move {
            loop {
                let Ok((socket, _)) = listener.accept().await else {
                    return;
                };
                let (handler, r, f, m, b) =
                    (handler.clone(), r.clone(), f.clone(), m.clone(), b.clone());
                tokio::spawn(async move {
                    let _ = serve(socket, handler, r, f, m, b).await;
                });
            }
        });
        Self {
            addr,
            received,
            in_flight,
            max_in_flight,
            broken_writes,
        }
    }

    pub fn url(&self) -> String {
        format!("http://{}", self.addr)
    }
    pub fn received(&self) -> Vec<Received> {
        self.received.lock().unwrap().clone()
    }
    pub fn max_in_flight(&self) -> usize {
        self.max_in_flight.load(Ordering::SeqCst)
    }
}

async fn serve(
    mut socket: TcpStream,
    handler: Arc<Handler>,
    received: Arc<Mutex<Vec<Received>>>,
    in_flight: Arc<AtomicUsize>,
    max_in_flight: Arc<AtomicUsize>,
    broken: Arc<AtomicUsize>,
) -> std::io::Result<()> {
    let request = read_request(&mut socket).await?;
    let number = {
        let mut all = received.lock().unwrap();
        all.push(request.clone());
        all.len() - 1
    };
    let now = in_flight.fetch_add(1, Ordering::SeqCst) + 1;
    max_in_flight.fetch_max(now, Ordering::SeqCst);
    let reply = handler(&request, number);
    let result = write_reply(&mut socket, &reply).await;
    in_flight.fetch_sub(1, Ordering::SeqCst);
    if result.is_err() {
        broken.fetch_add(1, Ordering::SeqCst);
    }
    result
}

async fn read_request(socket: &mut TcpStream) -> std::io::Result<Received> {
    let mut buf = Vec::new();
    let mut tmp = [0u8; 4096];
    let head_end = loop {
        if let Some(p) = buf.windows(4).position(|w| w == b"\r\n\r\n") {
            break p;
        }
        let n = socket.read(&mut tmp).await?;
        if n == 0 {
            return Err(std::io::ErrorKind::UnexpectedEof.into());
        }
        buf.extend_from_slice(&tmp[..n]);
    };
    let head = String::from_utf8_lossy(&buf[..head_end]).to_string();
    let mut lines = head.split("\r\n");
    let mut first = lines.next().unwrap_or("").split(' ');
    let method = first.next().unwrap_or("").to_string();
    let path = first.next().unwrap_or("").to_string();
    let headers: Vec<(String, String)> = lines
        .filter_map(|l| l.split_once(':'))
        .map(|(k, v)| (k.trim().to_string(), v.trim().to_string()))
        .collect();
    let len: usize = headers
        .iter()
        .find(|(k, _)| k.eq_ignore_ascii_case("content-length"))
        .and_then(|(_, v)| v.parse().ok())
        .unwrap_or(0);
    let mut body = buf[head_end + 4..].to_vec();
    while body.len() < len {
        let n = socket.read(&mut tmp).await?;
        if n == 0 {
            break;
        }
        body.extend_from_slice(&tmp[..n]);
    }
    Ok(Received {
        method,
        path,
        headers,
        body,
    })
}

async fn write_reply(socket: &mut TcpStream, reply: &Reply) -> std::io::Result<()> {
    tokio::time::sleep(reply.delay).await;
    let head = format!(
        "HTTP/1.1 {} X\r\nContent-Type: {}\r\nTransfer-Encoding: chunked\r\nConnection: close\r\n\r\n",
        reply.status, reply.content_type
    );
    socket.write_all(head.as_bytes()).await?;
    socket.flush().await?;
    for part in &reply.parts {
        tokio::time::sleep(reply.gap).await;
        if part.is_empty() {
            continue;
        }
        socket
            .write_all(format!("{:x}\r\n", part.len()).as_bytes())
            .await?;
        socket.write_all(part).await?;
        socket.write_all(b"\r\n").await?;
        socket.flush().await?;
    }
    if reply.disconnect {
        return Ok(());
    }
    socket.write_all(b"0\r\n\r\n").await?;
    socket.flush().await?;
    socket.shutdown().await
}
