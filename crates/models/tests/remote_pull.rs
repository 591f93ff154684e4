//! Pulls of GGUF files outside the manifest (`hf:` specs and URLs) against a real HTTP
//! server on 127.0.0.1 started by each test: trust on first use, pinned hashes,
//! resumed downloads, redirects and the checks on what a server sends.

use std::collections::HashMap;
use std::net::SocketAddr;
use std::path::{Path, PathBuf};
use std::sync::{Arc, Mutex};
use std::time::Duration;

use axum::Router;
use axum::body::Body;
use axum::extract::State;
use axum::http::{HeaderMap, StatusCode, Uri, header};
use axum::response::Response;
use futures::StreamExt;
use optillm_models::{
    Cache, DownloadOptions, LocalState, ModelsError, NoProgress, ProgressEvent, RemoteModel,
    Resolved, Stage, Trust, TrustOutcome,
};
use sha2::{Digest, Sha256};

#[derive(Default)]
struct Behaviour {
    files: HashMap<String, Vec<u8>>,
    /// path -> Location of a 302.
    redirects: HashMap<String, String>,
    /// The next this-many answers with a body send half of it, then drop the connection.
    drops: usize,
    /// Answer every request with the whole file (200), whatever its Range says.
    ignore_range: bool,
    /// Send bodies chunked, without a Content-Length.
    chunked: bool,
    /// (path, Range, If-Range) of every request.
    requests: Vec<(String, Option<String>, Option<String>)>,
}

type Shared = Arc<Mutex<Behaviour>>;

struct Server {
    addr: SocketAddr,
    state: Shared,
}

fn etag(body: &[u8]) -> String {
    format!("\"{}\"", &sha(body)[..16])
}

async fn handle(State(state): State<Shared>, uri: Uri, headers: HeaderMap) -> Response {
    let text = |name: header::HeaderName| {
        headers
            .get(name)
            .and_then(|v| v.to_str().ok())
            .map(str::to_string)
    };
    let range = text(header::RANGE);
    let if_range = text(header::IF_RANGE);
    let path = uri.path().to_string();
    let (body, drop_now, ignore_range) = {
        let mut b = state.lock().unwrap();
        b.requests
            .push((path.clone(), range.clone(), if_range.clone()));
        if let Some(loc) = b.redirects.get(&path) {
            return Response::builder()
                .status(StatusCode::FOUND)
                .header(header::LOCATION, loc.as_str())
                .body(Body::empty())
                .unwrap();
        }
        let Some(body) = b.files.get(&path).cloned() else {
            return Response::builder()
                .status(StatusCode::NOT_FOUND)
                .body(Body::from("not here"))
                .unwrap();
        };
        let drop_now = b.drops > 0;
        if drop_now {
            b.drops -= 1;
        }
        (body, drop_now, b.ignore_range)
    };
    let tag = etag(&body);
    let start = range
        .as_deref()
        .and_then(|r| r.strip_prefix("bytes="))
        .and_then(|r| r.strip_suffix('-'))
        .and_then(|n| n.parse::<usize>().ok())
        .filter(|_| !ignore_range && if_range.as_deref().is_none_or(|v| v == tag));
    let mut builder = Response::builder().header(header::ETAG, tag.as_str());
    let slice = match start {
        Some(s) if s >= body.len() => {
            return builder
                .status(StatusCode::RANGE_NOT_SATISFIABLE)
                .header(header::CONTENT_RANGE, format!("bytes */{}", body.len()))
                .body(Body::empty())
                .unwrap();
        }
        Some(s) => {
            builder = builder.status(StatusCode::PARTIAL_CONTENT).header(
                header::CONTENT_RANGE,
                format!("bytes {s}-{}/{}", body.len() - 1, body.len()),
            );
            body[s..].to_vec()
        }
        None => {
            builder = builder.status(StatusCode::OK);
            body
        }
    };
    if state.lock().unwrap().chunked {
        let chunks: Vec<Result<Vec<u8>, std::io::Error>> =
            slice.chunks(1000).map(|c| Ok(c.to_vec())).collect();
        return builder
            .body(Body::from_stream(futures::stream::iter(chunks)))
            .unwrap();
    }
    builder = builder.header(header::CONTENT_LENGTH, slice.len());
    if drop_now {
        let half = slice[..slice.len() / 2].to_vec();
        let stream = futures::stream::iter(vec![Ok::<_, std::io::Error>(half)]).chain(
            futures::stream::once(async {
                tokio::time::sleep(Duration::from_millis(100)).await;
                Err(std::io::Error::other("dropped on purpose"))
            }),
        );
        return builder.body(Body::from_stream(stream)).unwrap();
    }
    builder.body(Body::from(slice)).unwrap()
}

impl Server {
    async fn start(files: Vec<(&str, Vec<u8>)>) -> Server {
        let state: Shared = Arc::new(Mutex::new(Behaviour {
            files: files.into_iter().map(|(p, b)| (p.to_string(), b)).collect(),
            ..Behaviour::default()
        }));
        let app = Router::new().fallback(handle).with_state(state.clone());
        let listener = tokio::net::TcpListener::bind("127.0.0.1:0").await.unwrap();
        let addr = listener.local_addr().unwrap();
        tokio::spawn(async move { axum::serve(listener, app).await.unwrap() });
        Server { addr, state }
    }

    fn endpoint(&self) -> String {
        format!("http://{}", self.addr)
    }

    fn with<T>(&self, f: impl FnOnce(&mut Behaviour) -> T) -> T {
        f(&mut self.state.lock().unwrap())
    }

    fn requests(&self) -> Vec<(String, Option<String>, Option<String>)> {
        self.with(|b| b.requests.clone())
    }
}

fn sha(bytes: &[u8]) -> String {
    hex::encode(Sha256::digest(bytes))
}

/// A GGUF-looking file: the magic, then `len - 4` bytes depending on `seed`.
fn gguf(seed: u8, len: usize) -> Vec<u8> {
    let mut v = b"GGUF".to_vec();
    v.extend((4..len).map(|i| (i as u8).wrapping_mul(29).wrapping_add(seed) ^ ((i / 11) as u8)));
    v
}

const HF_PATH: &str = "/owner/repo/resolve/main/tiny-q8_0.gguf";
const SPEC: &str = "hf:owner/repo/tiny-q8_0.gguf";

fn cache(dir: &Path, server: &Server) -> Cache {
    Cache::new(dir).with_options(
        DownloadOptions::default()
            .connect_timeout(Duration::from_secs(2))
            .read_timeout(Duration::from_secs(10))
            .hf_endpoint(server.endpoint()),
    )
}

fn spec() -> RemoteModel {
    RemoteModel::parse(SPEC).unwrap()
}

/// Every file under `dir` (relative paths), sorted.
fn tree(dir: &Path) -> Vec<String> {
    fn walk(root: &Path, dir: &Path, out: &mut Vec<String>) {
        let Ok(rd) = std::fs::read_dir(dir) else {
            return;
        };
        for e in rd {
            let p = e.unwrap().path();
            if p.is_dir() {
                walk(root, &p, out);
            } else {
                out.push(p.strip_prefix(root).unwrap().to_string_lossy().into_owned());
            }
        }
    }
    let mut out = Vec::new();
    walk(dir, dir, &mut out);
    out.sort();
    out
}

fn part_path(cache: &Cache) -> PathBuf {
    cache
        .remote_path(&spec())
        .with_file_name(".tiny-q8_0.gguf.part")
}

#[tokio::test]
async fn first_pull_records_the_hash_and_later_ones_reuse_the_checked_file() {
    let body = gguf(1, 300_000);
    let server = Server::start(vec![(HF_PATH, body.clone())]).await;
    let dir = tempfile::tempdir().unwrap();
    let cache = cache(dir.path(), &server);
    let events: Mutex<Vec<(Stage, u64, Option<u64>)>> = Mutex::default();
    let progress = |e: &ProgressEvent<'_>| {
        events.lock().unwrap().push((e.stage, e.done, e.total));
    };

    let pulled = cache.ensure_remote(&spec(), None, &progress).await.unwrap();
    assert_eq!(pulled.trust, TrustOutcome::Recorded);
    assert!(pulled.downloaded);
    assert_eq!(pulled.resumed_from, None);
    assert_eq!(pulled.sha256, sha(&body));
    assert_eq!(pulled.size, body.len() as u64);
    assert_eq!(
        pulled.path,
        dir.path().join("models/hf/owner/repo/main/tiny-q8_0.gguf")
    );
    assert_eq!(std::fs::read(&pulled.path).unwrap(), body);
    let events = events.into_inner().unwrap();
    assert_eq!(events.first(), Some(&(Stage::Download, 0, Some(300_000))));
    assert_eq!(
        events.last(),
        Some(&(Stage::Download, 300_000, Some(300_000)))
    );

    // The lock file records it as trusted on first use.
    let lock = std::fs::read_to_string(cache.remote_lock_path()).unwrap();
    assert!(lock.contains(&sha(&body)), "{lock}");
    assert!(lock.contains("trust = \"first-use\""), "{lock}");
    let entries = cache.remote_entries().unwrap();
    assert_eq!(entries.len(), 1);
    assert_eq!(entries[0].spec, SPEC);
    assert_eq!(entries[0].trust, Trust::FirstUse);
    assert_eq!(entries[0].url, format!("{}{HF_PATH}", server.endpoint()));

    // Nothing but the file, its marker and the lock file (and its guard) are left.
    assert_eq!(
        tree(dir.path()),
        vec![
            "models/.remote-models.lock.guard",
            "models/hf/owner/repo/main/.tiny-q8_0.gguf.verified",
            "models/hf/owner/repo/main/tiny-q8_0.gguf",
            "models/remote-models.lock",
        ]
    );

    // Reuse: no request, same file, checked against the recorded hash.
    let again = cache
        .ensure_remote(&spec(), None, &NoProgress)
        .await
        .unwrap();
    assert!(!again.downloaded);
    assert_eq!(again.trust, TrustOutcome::MatchedFirstUse);
    assert_eq!(server.requests().len(), 1);

    let listed = cache.list_remote().unwrap();
    assert_eq!(listed.len(), 1);
    assert_eq!(listed[0].state, LocalState::Verified);
    assert_eq!(listed[0].model.spec(), SPEC);

    // Confirming the recorded hash with --sha256 pins it, still without a download.
    let pinned = cache
        .ensure_remote(&spec(), Some(&sha(&body)), &NoProgress)
        .await
        .unwrap();
    assert!(!pinned.downloaded);
    assert_eq!(pinned.trust, TrustOutcome::MatchedPin);
    assert_eq!(cache.remote_entries().unwrap()[0].trust, Trust::Pinned);
    assert_eq!(server.requests().len(), 1);

    // The bare file name finds it, and so does the spec.
    assert_eq!(
        cache.find_remote_file("tiny-q8_0.gguf").unwrap(),
        Some(spec())
    );
    assert_eq!(cache.find_remote_file("other.gguf").unwrap(), None);
}

#[tokio::test]
async fn a_dropped_download_is_resumed_by_the_next_pull_with_a_range_request() {
    let body = gguf(2, 400_000);
    let server = Server::start(vec![(HF_PATH, body.clone())]).await;
    server.with(|b| b.drops = 1);
    let dir = tempfile::tempdir().unwrap();
    let opts = DownloadOptions::default()
        .hf_endpoint(server.endpoint())
        .resume_attempts(0);
    let cache = Cache::new(dir.path()).with_options(opts);

    let err = cache
        .ensure_remote(&spec(), None, &NoProgress)
        .await
        .unwrap_err();
    assert!(matches!(err, ModelsError::Request { .. }), "{err}");
    // Half of it waits in the partial file; nothing under the final name, no lock entry.
    let partial = std::fs::read(part_path(&cache)).unwrap();
    assert_eq!(partial.len(), 200_000);
    assert_eq!(partial, body[..200_000]);
    assert!(!cache.remote_path(&spec()).exists());
    assert!(cache.remote_entries().unwrap().is_empty());

    let pulled = cache
        .ensure_remote(&spec(), None, &NoProgress)
        .await
        .unwrap();
    assert_eq!(pulled.resumed_from, Some(200_000));
    assert_eq!(pulled.sha256, sha(&body), "the hash covers the whole file");
    assert_eq!(std::fs::read(&pulled.path).unwrap(), body);
    assert!(!part_path(&cache).exists());
    let requests = server.requests();
    assert_eq!(requests.len(), 2);
    assert_eq!(requests[0].1, None);
    assert_eq!(requests[1].1.as_deref(), Some("bytes=200000-"));
    // The version of the file being continued is named.
    assert_eq!(requests[1].2, Some(etag(&body)));
    assert_eq!(cache.remote_entries().unwrap()[0].sha256, sha(&body));
}

#[tokio::test]
async fn a_drop_is_resumed_within_the_same_pull() {
    let body = gguf(3, 250_000);
    let server = Server::start(vec![(HF_PATH, body.clone())]).await;
    server.with(|b| b.drops = 2);
    let dir = tempfile::tempdir().unwrap();
    let cache = cache(dir.path(), &server);
    let pulled = cache
        .ensure_remote(&spec(), None, &NoProgress)
        .await
        .unwrap();
    assert_eq!(std::fs::read(&pulled.path).unwrap(), body);
    // 125 000 bytes, then half of the other 125 000, then the rest.
    assert_eq!(pulled.resumed_from, Some(187_500));
    let ranges: Vec<Option<String>> = server.requests().into_iter().map(|r| r.1).collect();
    assert_eq!(
        ranges,
        vec![
            None,
            Some("bytes=125000-".to_string()),
            Some("bytes=187500-".to_string())
        ]
    );
}

#[tokio::test]
async fn a_server_ignoring_range_restarts_the_file_cleanly() {
    let body = gguf(4, 100_000);
    let server = Server::start(vec![(HF_PATH, body.clone())]).await;
    server.with(|b| {
        b.drops = 1;
        b.ignore_range = true;
    });
    let dir = tempfile::tempdir().unwrap();
    let cache = Cache::new(dir.path()).with_options(
        DownloadOptions::default()
            .hf_endpoint(server.endpoint())
            .resume_attempts(0),
    );
    assert!(
        cache
            .ensure_remote(&spec(), None, &NoProgress)
            .await
            .is_err()
    );
    assert_eq!(std::fs::metadata(part_path(&cache)).unwrap().len(), 50_000);
    let pulled = cache
        .ensure_remote(&spec(), None, &NoProgress)
        .await
        .unwrap();
    // Asked for the rest, got everything: written from the first byte, not appended.
    assert_eq!(server.requests()[1].1.as_deref(), Some("bytes=50000-"));
    assert_eq!(pulled.resumed_from, None);
    assert_eq!(std::fs::read(&pulled.path).unwrap(), body);
    assert_eq!(pulled.sha256, sha(&body));
}

#[tokio::test]
async fn a_changed_file_is_not_resumed_on_top_of_the_old_one() {
    let old = gguf(5, 100_000);
    let new = gguf(6, 100_000);
    let server = Server::start(vec![(HF_PATH, old)]).await;
    server.with(|b| b.drops = 1);
    let dir = tempfile::tempdir().unwrap();
    let cache = Cache::new(dir.path()).with_options(
        DownloadOptions::default()
            .hf_endpoint(server.endpoint())
            .resume_attempts(0),
    );
    assert!(
        cache
            .ensure_remote(&spec(), None, &NoProgress)
            .await
            .is_err()
    );
    server.with(|b| b.files.insert(HF_PATH.to_string(), new.clone()));
    // If-Range names the old version: the server sends the new file whole.
    let pulled = cache
        .ensure_remote(&spec(), None, &NoProgress)
        .await
        .unwrap();
    assert_eq!(std::fs::read(&pulled.path).unwrap(), new);
    assert_eq!(pulled.sha256, sha(&new));
}

#[tokio::test]
async fn a_wrong_pinned_hash_is_a_clear_error_and_the_download_is_removed() {
    let body = gguf(7, 50_000);
    let server = Server::start(vec![(HF_PATH, body.clone())]).await;
    let dir = tempfile::tempdir().unwrap();
    let cache = cache(dir.path(), &server);
    let wrong = "0".repeat(64);
    let err = cache
        .ensure_remote(&spec(), Some(&wrong), &NoProgress)
        .await
        .unwrap_err();
    match &err {
        ModelsError::HashMismatch {
            what,
            expected,
            actual,
        } => {
            assert_eq!(what, SPEC);
            assert_eq!(expected, &wrong);
            assert_eq!(actual, &sha(&body));
        }
        other => panic!("{other}"),
    }
    assert!(err.to_string().contains("SHA-256 mismatch"), "{err}");
    // No file, no partial, no lock entry.
    let files = tree(dir.path());
    assert!(files.iter().all(|f| !f.contains("tiny-q8_0")), "{files:?}");
    assert!(cache.remote_entries().unwrap().is_empty());

    // The right one, in upper case: recorded as pinned.
    let pulled = cache
        .ensure_remote(&spec(), Some(&sha(&body).to_uppercase()), &NoProgress)
        .await
        .unwrap();
    assert_eq!(pulled.trust, TrustOutcome::MatchedPin);
    assert_eq!(cache.remote_entries().unwrap()[0].trust, Trust::Pinned);
    let bad = cache
        .ensure_remote(&spec(), Some("xyz"), &NoProgress)
        .await
        .unwrap_err();
    assert!(matches!(bad, ModelsError::InvalidSha256 { .. }), "{bad}");
}

#[tokio::test]
async fn a_file_changed_upstream_is_a_tofu_mismatch_on_reuse() {
    let first = gguf(8, 60_000);
    let server = Server::start(vec![(HF_PATH, first.clone())]).await;
    let dir = tempfile::tempdir().unwrap();
    let cache = cache(dir.path(), &server);
    let pulled = cache
        .ensure_remote(&spec(), None, &NoProgress)
        .await
        .unwrap();
    let lock_before = std::fs::read_to_string(cache.remote_lock_path()).unwrap();

    // Upstream now serves another file (same size, so only the hash tells).
    let second = gguf(9, 60_000);
    server.with(|b| b.files.insert(HF_PATH.to_string(), second.clone()));
    // The cached copy is damaged in place: it is re-hashed, downloaded again, and the
    // new download does not match what was recorded at first use.
    let mut damaged = first.clone();
    damaged[100] ^= 1;
    std::fs::write(&pulled.path, &damaged).unwrap();
    let err = cache
        .ensure_remote(&spec(), None, &NoProgress)
        .await
        .unwrap_err();
    match &err {
        ModelsError::TofuMismatch {
            spec: s,
            recorded,
            actual,
            lock,
        } => {
            assert_eq!(s, SPEC);
            assert_eq!(recorded, &sha(&first));
            assert_eq!(actual, &sha(&second));
            assert_eq!(lock, &cache.remote_lock_path());
        }
        other => panic!("{other}"),
    }
    let msg = err.to_string();
    assert!(
        msg.contains("trust on first use") && msg.contains("--sha256"),
        "{msg}"
    );
    // The lock file is unchanged and the bad download is gone.
    assert_eq!(
        std::fs::read_to_string(cache.remote_lock_path()).unwrap(),
        lock_before
    );
    assert!(!part_path(&cache).exists());
    assert_eq!(
        cache.remote_state(&spec(), cache.remote_entry(&spec()).unwrap().as_ref()),
        LocalState::Unverified
    );
    // verify says so too.
    assert!(matches!(
        cache.verify_remote(&spec(), &NoProgress).await,
        Err(ModelsError::TofuMismatch { .. })
    ));

    // A missing cached file, downloaded again, is checked the same way; a different
    // size does not change the error.
    std::fs::remove_file(&pulled.path).unwrap();
    server.with(|b| b.files.insert(HF_PATH.to_string(), gguf(9, 70_000)));
    let err = cache
        .ensure_remote(&spec(), None, &NoProgress)
        .await
        .unwrap_err();
    assert!(matches!(err, ModelsError::TofuMismatch { .. }), "{err}");

    // Accepting the new file explicitly.
    let new = gguf(9, 70_000);
    let ok = cache
        .ensure_remote(&spec(), Some(&sha(&new)), &NoProgress)
        .await
        .unwrap();
    assert_eq!(std::fs::read(&ok.path).unwrap(), new);
    let entry = cache.remote_entry(&spec()).unwrap().unwrap();
    assert_eq!(
        (entry.sha256.as_str(), entry.trust),
        (sha(&new).as_str(), Trust::Pinned)
    );
}

#[tokio::test]
async fn the_server_is_checked_magic_size_redirects_and_status() {
    let server = Server::start(vec![
        (
            "/o/r/resolve/main/page.gguf",
            b"<html>sign in</html>".to_vec(),
        ),
        ("/o/r/resolve/main/big.gguf", gguf(1, 5_000)),
        ("/cdn/blob", gguf(2, 3_000)),
    ])
    .await;
    server.with(|b| {
        b.redirects.insert(
            "/o/r/resolve/main/moved.gguf".into(),
            "/cdn/blob?sig=1".into(),
        );
        b.redirects.insert(
            "/o/r/resolve/main/loop.gguf".into(),
            "/o/r/resolve/main/loop.gguf".into(),
        );
        b.redirects.insert(
            "/o/r/resolve/main/plain.gguf".into(),
            "http://example.invalid/m.gguf".into(),
        );
    });
    let dir = tempfile::tempdir().unwrap();
    let cache = Cache::new(dir.path()).with_options(
        DownloadOptions::default()
            .hf_endpoint(server.endpoint())
            .max_file_size(4_000)
            .max_redirects(3),
    );
    let pull = |s: &str| {
        let cache = cache.clone();
        let m = RemoteModel::parse(s).unwrap();
        async move { cache.ensure_remote(&m, None, &NoProgress).await }
    };

    let err = pull("hf:o/r/page.gguf").await.unwrap_err();
    assert!(matches!(err, ModelsError::NotGguf { .. }), "{err}");
    let err = pull("hf:o/r/big.gguf").await.unwrap_err();
    assert!(
        matches!(
            err,
            ModelsError::TooLarge {
                size: 5_000,
                max: 4_000,
                ..
            }
        ),
        "{err}"
    );
    // A relative redirect (as Hugging Face's to its CDN) is followed.
    let ok = pull("hf:o/r/moved.gguf").await.unwrap();
    assert_eq!(std::fs::read(&ok.path).unwrap(), gguf(2, 3_000));
    let err = pull("hf:o/r/loop.gguf").await.unwrap_err();
    assert!(
        matches!(&err, ModelsError::BadRedirect { reason, .. } if reason.contains("more than 3")),
        "{err}"
    );
    let loops = server
        .requests()
        .iter()
        .filter(|r| r.0 == "/o/r/resolve/main/loop.gguf")
        .count();
    assert_eq!(loops, 4);
    // A redirect to plain http elsewhere is refused before any connection to it.
    let err = pull("hf:o/r/plain.gguf").await.unwrap_err();
    assert!(matches!(err, ModelsError::InsecureUrl { .. }), "{err}");
    let err = pull("hf:o/r/absent.gguf").await.unwrap_err();
    assert!(
        matches!(err, ModelsError::HttpStatus { status: 404, .. }),
        "{err}"
    );

    // Only the redirected file made it; no partial files are left behind.
    let files = tree(dir.path());
    let gguf_files: Vec<&String> = files.iter().filter(|f| f.contains(".gguf")).collect();
    assert_eq!(
        gguf_files,
        vec![
            "models/hf/o/r/main/.moved.gguf.verified",
            "models/hf/o/r/main/moved.gguf"
        ],
        "{files:?}"
    );
}

#[tokio::test]
async fn a_url_pull_and_resolution_of_specs() {
    let body = gguf(10, 20_000);
    let server = Server::start(vec![("/files/model.gguf", body.clone())]).await;
    let dir = tempfile::tempdir().unwrap();
    let cache = cache(dir.path(), &server);
    let url = format!("{}/files/model.gguf", server.endpoint());
    let model = match optillm_models::Manifest::builtin()
        .unwrap()
        .resolve(&url)
        .unwrap()
    {
        Resolved::Remote(m) => m,
        other => panic!("{other:?}"),
    };
    let pulled = cache
        .ensure_remote(&model, None, &NoProgress)
        .await
        .unwrap();
    assert_eq!(std::fs::read(&pulled.path).unwrap(), body);
    assert!(pulled.path.starts_with(dir.path().join("models/url")));
    assert_eq!(cache.remote_entries().unwrap()[0].spec, url);
    assert!(matches!(
        optillm_models::resolve_model("hf:o/r/x.gguf"),
        Ok(Resolved::Remote(_))
    ));
    assert!(matches!(
        optillm_models::resolve_model("hf:o/r/../x.gguf"),
        Err(ModelsError::BadModelSpec { .. })
    ));
    assert!(matches!(
        optillm_models::resolve_model("http://example.com/x.gguf"),
        Err(ModelsError::InsecureUrl { .. })
    ));
}

#[tokio::test]
async fn a_body_without_length_is_bounded_while_it_arrives() {
    let server = Server::start(vec![
        ("/o/r/resolve/main/small.gguf", gguf(3, 3_500)),
        ("/o/r/resolve/main/big.gguf", gguf(4, 9_000)),
    ])
    .await;
    server.with(|b| b.chunked = true);
    let dir = tempfile::tempdir().unwrap();
    let cache = Cache::new(dir.path()).with_options(
        DownloadOptions::default()
            .hf_endpoint(server.endpoint())
            .max_file_size(4_000),
    );
    let small = RemoteModel::parse("hf:o/r/small.gguf").unwrap();
    let pulled = cache
        .ensure_remote(&small, None, &NoProgress)
        .await
        .unwrap();
    assert_eq!(std::fs::read(&pulled.path).unwrap(), gguf(3, 3_500));
    let big = RemoteModel::parse("hf:o/r/big.gguf").unwrap();
    let err = cache
        .ensure_remote(&big, None, &NoProgress)
        .await
        .unwrap_err();
    // Stopped at the first chunk past the limit, not at the end of the body.
    match &err {
        ModelsError::TooLarge { size, max, .. } => {
            assert_eq!(*max, 4_000);
            assert!((4_001..=5_000).contains(size), "{size}");
        }
        other => panic!("{other}"),
    }
    assert!(!cache.remote_path(&big).exists());
    assert!(
        !cache
            .remote_path(&big)
            .with_file_name(".big.gguf.part")
            .exists()
    );
}
