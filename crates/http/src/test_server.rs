//! A loopback test server for the remote backends' wire tests: scripted replies with
//! exact chunking, delays, disconnects, stalls and endless bodies, recording every
//! request it receives; optionally with keep-alive connections that it closes when they
//! are reused (the keep-alive race, made certain).

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
    /// After the parts, send nothing more and keep the connection open until the client
    /// hangs up (counted in [`TestServer::hung_up`]) or 60 s pass.
    pub stall: bool,
    /// After the parts, send the last part again and again (`gap` apart) until the
    /// client hangs up (counted in [`TestServer::hung_up`]) or 60 s pass.
    pub endless: bool,
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
            stall: false,
            endless: false,
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
    pub fn stalling(mut self) -> Self {
        self.stall = true;
        self
    }
    pub fn endless(mut self) -> Self {
        self.endless = true;
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
    /// Connections the client closed while a stalling or endless reply was being served.
    pub hung_up: Arc<AtomicUsize>,
    /// Requests that came on a reused keep-alive connection and were dropped unanswered
    /// ([`TestServer::start_keep_alive`]).
    pub dropped_reused: Arc<AtomicUsize>,
}

impl TestServer {
    /// Serves `handler(request, number_of_requests_before_it)` on 127.0.0.1, one
    /// request per connection (`Connection: close`).
    pub async fn start(
        handler: impl Fn(&Received, usize) -> Reply + Send + Sync + 'static,
    ) -> Self {
        Self::start_with(false, handler).await
    }

    /// Like [`TestServer::start`], but connections are kept alive after a complete
    /// reply, and a request that arrives on a connection already used is read and then
    /// dropped unanswered (the connection closed): what a client sees when the server
    /// closes an idle keep-alive connection just as the client reuses it.
    pub async fn start_keep_alive(
        handler: impl Fn(&Received, usize) -> Reply + Send + Sync + 'static,
    ) -> Self {
        Self::start_with(true, handler).await
    }

    async fn start_with(
        keep_alive: bool,
        handler: impl Fn(&Received, usize) -> Reply + Send + Sync + 'static,
    ) -> Self {
        let listener = TcpListener::bind("127.0.0.1:0").await.expect("bind");
        let addr = listener.local_addr().expect("addr");
        let handler: Arc<Handler> = Arc::new(handler);
        let received = Arc::new(Mutex::new(Vec::new()));
        let in_flight = Arc::new(AtomicUsize::new(0));
        let max_in_flight = Arc::new(AtomicUsize::new(0));
        let broken_writes = Arc::new(AtomicUsize::new(0));
        let hung_up = Arc::new(AtomicUsize::new(0));
        let dropped_reused = Arc::new(AtomicUsize::new(0));
        let shared = Shared {
            handler,
            received: received.clone(),
            in_flight: in_flight.clone(),
            max_in_flight: max_in_flight.clone(),
            broken: broken_writes.clone(),
            hung_up: hung_up.clone(),
            dropped_reused: dropped_reused.clone(),
            keep_alive,
        };
        tokio::spawn(async move {
            loop {
                let Ok((socket, _)) = listener.accept().await else {
                    return;
                };
                let shared = shared.clone();
                tokio::spawn(async move {
                    let _ = serve(socket, shared).await;
                });
            }
        });
        Self {
            addr,
            received,
            in_flight,
            max_in_flight,
            broken_writes,
            hung_up,
            dropped_reused,
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
    pub fn hung_up(&self) -> usize {
        self.hung_up.load(Ordering::SeqCst)
    }
    pub fn dropped_reused(&self) -> usize {
        self.dropped_reused.load(Ordering::SeqCst)
    }
}

#[derive(Clone)]
struct Shared {
    handler: Arc<Handler>,
    received: Arc<Mutex<Vec<Received>>>,
    in_flight: Arc<AtomicUsize>,
    max_in_flight: Arc<AtomicUsize>,
    broken: Arc<AtomicUsize>,
    hung_up: Arc<AtomicUsize>,
    dropped_reused: Arc<AtomicUsize>,
    keep_alive: bool,
}

async fn serve(mut socket: TcpStream, shared: Shared) -> std::io::Result<()> {
    let mut served = 0usize;
    loop {
        let request = match read_request(&mut socket).await {
            Ok(r) => r,
            // A kept-alive connection the client closed: the normal end.
            Err(_) if served > 0 => return Ok(()),
            Err(e) => return Err(e),
        };
        if served > 0 {
            shared.dropped_reused.fetch_add(1, Ordering::SeqCst);
            return Ok(()); // drops the socket unanswered
        }
        served += 1;
        let number = {
            let mut all = shared.received.lock().unwrap();
            all.push(request.clone());
            all.len() - 1
        };
        let now = shared.in_flight.fetch_add(1, Ordering::SeqCst) + 1;
        shared.max_in_flight.fetch_max(now, Ordering::SeqCst);
        let reply = (shared.handler)(&request, number);
        let result = write_reply(&mut socket, &reply, shared.keep_alive).await;
        shared.in_flight.fetch_sub(1, Ordering::SeqCst);
        match result {
            Err(e) => {
                shared.broken.fetch_add(1, Ordering::SeqCst);
                return Err(e);
            }
            Ok(Ending::HungUp) => {
                shared.hung_up.fetch_add(1, Ordering::SeqCst);
                return Ok(());
            }
            Ok(Ending::Open) if shared.keep_alive => {}
            Ok(_) => return Ok(()),
        }
    }
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

/// How a reply ended.
enum Ending {
    /// Complete, the connection still open (keep-alive).
    Open,
    /// Complete and shut down, or deliberately cut.
    Closed,
    /// The client hung up during a stall or an endless body.
    HungUp,
}

async fn write_reply(
    socket: &mut TcpStream,
    reply: &Reply,
    keep_alive: bool,
) -> std::io::Result<Ending> {
    tokio::time::sleep(reply.delay).await;
    let connection = if keep_alive { "keep-alive" } else { "close" };
    let head = format!(
        "HTTP/1.1 {} X\r\nContent-Type: {}\r\nTransfer-Encoding: chunked\r\nConnection: {connection}\r\n\r\n",
        reply.status, reply.content_type
    );
    socket.write_all(head.as_bytes()).await?;
    socket.flush().await?;
    for part in &reply.parts {
        tokio::time::sleep(reply.gap).await;
        write_chunk(socket, part).await?;
    }
    if reply.stall {
        return Ok(wait_for_hang_up(socket).await);
    }
    if reply.endless {
        let last = reply.parts.last().cloned().unwrap_or_else(|| b"x".to_vec());
        let writing = async {
            loop {
                tokio::time::sleep(reply.gap).await;
                if write_chunk(socket, &last).await.is_err() {
                    return Ending::HungUp;
                }
            }
        };
        return Ok(tokio::time::timeout(Duration::from_secs(60), writing)
            .await
            .unwrap_or(Ending::Closed));
    }
    if reply.disconnect {
        return Ok(Ending::Closed);
    }
    socket.write_all(b"0\r\n\r\n").await?;
    socket.flush().await?;
    if keep_alive {
        return Ok(Ending::Open);
    }
    socket.shutdown().await?;
    Ok(Ending::Closed)
}

async fn write_chunk(socket: &mut TcpStream, part: &[u8]) -> std::io::Result<()> {
    if part.is_empty() {
        return Ok(());
    }
    socket
        .write_all(format!("{:x}\r\n", part.len()).as_bytes())
        .await?;
    socket.write_all(part).await?;
    socket.write_all(b"\r\n").await?;
    socket.flush().await
}

/// Waits until the client closes the connection (`HungUp`) or 60 s pass (`Closed`).
async fn wait_for_hang_up(socket: &mut TcpStream) -> Ending {
    let mut buf = [0u8; 1024];
    let waiting = async {
        loop {
            match socket.read(&mut buf).await {
                Ok(0) | Err(_) => return Ending::HungUp,
                Ok(_) => {}
            }
        }
    };
    tokio::time::timeout(Duration::from_secs(60), waiting)
        .await
        .unwrap_or(Ending::Closed)
}
