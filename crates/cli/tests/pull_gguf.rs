//! `optillm pull hf:...` end to end against a loopback HTTP server standing in for
//! Hugging Face (`HF_ENDPOINT`): the real default model served as a `hf:` file, the
//! first answer cut off halfway (resumed with a range request), trust on first use said
//! in the output, `optillm models` listing it, `optillm run --model hf:...` (and by its
//! file name) answering with it without another download, a wrong `--sha256` refused.

#![allow(clippy::unwrap_used, clippy::expect_used, clippy::panic)]

use std::io::{BufRead, BufReader, Write};
use std::net::{TcpListener, TcpStream};
use std::path::{Path, PathBuf};
use std::process::Command;
use std::sync::atomic::{AtomicUsize, Ordering};
use std::sync::{Arc, Mutex};

const PATH: &str = "/test-owner/smol-repo/resolve/main/smol.gguf";
const SPEC: &str = "hf:test-owner/smol-repo/smol.gguf";

/// The default model's file (pulled into the user's cache if missing, as the other
/// suites do).
fn default_model() -> PathBuf {
    std::thread::spawn(|| {
        tokio::runtime::Runtime::new().unwrap().block_on(async {
            let entry = optillm_models::default_model().unwrap();
            optillm_models::ensure(entry, &optillm_models::NoProgress)
                .await
                .expect("pull the test model")
        })
    })
    .join()
    .unwrap()
}

/// A minimal HTTP/1.1 file server: `GET PATH` with `Range: bytes=N-` and `If-Range`;
/// the first `drops` answers stop halfway and close the connection.
struct Server {
    port: u16,
    /// Range header of every request for PATH.
    ranges: Arc<Mutex<Vec<Option<String>>>>,
}

impl Server {
    fn start(body: Vec<u8>, drops: usize) -> Server {
        let listener = TcpListener::bind("127.0.0.1:0").unwrap();
        let port = listener.local_addr().unwrap().port();
        let ranges: Arc<Mutex<Vec<Option<String>>>> = Arc::default();
        let body = Arc::new(body);
        let drops = Arc::new(AtomicUsize::new(drops));
        let log = ranges.clone();
        std::thread::spawn(move || {
            for stream in listener.incoming() {
                let Ok(stream) = stream else { continue };
                let (body, drops, log) = (body.clone(), drops.clone(), log.clone());
                std::thread::spawn(move || {
                    let _ = serve(stream, &body, &drops, &log);
                });
            }
        });
        Server { port, ranges }
    }

    fn endpoint(&self) -> String {
        format!("http://127.0.0.1:{}", self.port)
    }

    fn ranges(&self) -> Vec<Option<String>> {
        self.ranges.lock().unwrap().clone()
    }
}

fn serve(
    stream: TcpStream,
    body: &[u8],
    drops: &AtomicUsize,
    log: &Mutex<Vec<Option<String>>>,
) -> std::io::Result<()> {
    let mut reader = BufReader::new(stream.try_clone()?);
    let mut out = stream;
    loop {
        let mut line = String::new();
        if reader.read_line(&mut line)? == 0 {
            return Ok(());
        }
        let path = line
            .split_whitespace()
            .nth(1)
            .unwrap_or_default()
            .to_string();
        let (mut range, mut if_range) = (None, None);
        loop {
            let mut h = String::new();
            reader.read_line(&mut h)?;
            let h = h.trim_end();
            if h.is_empty() {
                break;
            }
            if let Some((k, v)) = h.split_once(':') {
                match k.trim().to_ascii_lowercase().as_str() {
                    "range" => range = Some(v.trim().to_string()),
                    "if-range" => if_range = Some(v.trim().to_string()),
                    _ => {}
                }
            }
        }
        if path != PATH {
            out.write_all(b"HTTP/1.1 404 Not Found\r\ncontent-length: 0\r\n\r\n")?;
            continue;
        }
        log.lock().unwrap().push(range.clone());
        let etag = "\"smol-v1\"";
        let start = range
            .as_deref()
            .and_then(|r| r.strip_prefix("bytes="))
            .and_then(|r| r.strip_suffix('-'))
            .and_then(|n| n.parse::<usize>().ok())
            .filter(|s| *s < body.len() && if_range.as_deref().is_none_or(|v| v == etag));
        let slice = &body[start.unwrap_or(0)..];
        let head = match start {
            Some(s) => format!(
                "HTTP/1.1 206 Partial Content\r\ncontent-range: bytes {s}-{}/{}\r\n",
                body.len() - 1,
                body.len()
            ),
            None => "HTTP/1.1 200 OK\r\n".to_string(),
        };
        out.write_all(
            format!(
                "{head}etag: {etag}\r\ncontent-length: {}\r\ncontent-type: application/octet-stream\r\n\r\n",
                slice.len()
            )
            .as_bytes(),
        )?;
        let cut = drops
            .fetch_update(Ordering::SeqCst, Ordering::SeqCst, |d| d.checked_sub(1))
            .is_ok();
        if cut {
            out.write_all(&slice[..slice.len() / 2])?;
            out.flush()?;
            return out.shutdown(std::net::Shutdown::Both);
        }
        out.write_all(slice)?;
    }
}

struct Run {
    code: Option<i32>,
    stdout: String,
    stderr: String,
}

fn optillm(home: &Path, endpoint: &str, args: &[&str]) -> Run {
    let mut cmd = Command::new(env!("CARGO_BIN_EXE_optillm"));
    cmd.args(args)
        .env("OPTILLM_HOME", home)
        .env("HF_ENDPOINT", endpoint)
        .env_remove("LLM_MODEL")
        .env_remove("OPTILLM_BACKEND");
    for v in [
        "HTTPS_PROXY",
        "HTTP_PROXY",
        "ALL_PROXY",
        "https_proxy",
        "http_proxy",
        "all_proxy",
    ] {
        cmd.env_remove(v);
    }
    let out = cmd.output().unwrap();
    Run {
        code: out.status.code(),
        stdout: String::from_utf8_lossy(&out.stdout).into_owned(),
        stderr: String::from_utf8_lossy(&out.stderr).into_owned(),
    }
}

/// A fresh directory under the system's temporary one, removed on drop.
struct TempDir(PathBuf);

impl TempDir {
    fn new() -> TempDir {
        static NEXT: AtomicUsize = AtomicUsize::new(0);
        let dir = std::env::temp_dir().join(format!(
            "optillm-pull-gguf-{}-{}",
            std::process::id(),
            NEXT.fetch_add(1, Ordering::Relaxed)
        ));
        std::fs::create_dir_all(&dir).unwrap();
        TempDir(dir)
    }

    fn path(&self) -> &Path {
        &self.0
    }
}

impl Drop for TempDir {
    fn drop(&mut self) {
        let _ = std::fs::remove_dir_all(&self.0);
    }
}

#[test]
fn pull_hf_resumes_records_the_hash_and_the_model_runs_by_its_spec() {
    let model = default_model();
    let expected_sha = optillm_models::default_model().unwrap().sha256.clone();
    let body = std::fs::read(&model).unwrap();
    let half = body.len() / 2;
    let server = Server::start(body.clone(), 1);
    let home = TempDir::new();
    let ep = server.endpoint();

    // The connection drops halfway; the pull resumes from there and checks the whole.
    let r = optillm(home.path(), &ep, &["pull", SPEC]);
    assert_eq!(r.code, Some(0), "{}", r.stderr);
    assert!(
        r.stderr
            .contains(&format!("resumed an interrupted download at byte {half}")),
        "{}",
        r.stderr
    );
    assert!(r.stderr.contains("trust on first use"), "{}", r.stderr);
    let local = home
        .path()
        .join("models/hf/test-owner/smol-repo/main/smol.gguf");
    assert_eq!(r.stdout.trim(), format!("{SPEC}\t{}", local.display()));
    assert!(
        std::fs::read(&local).unwrap() == body,
        "the pulled file differs"
    );
    assert_eq!(server.ranges(), vec![None, Some(format!("bytes={half}-"))]);
    let lock = std::fs::read_to_string(home.path().join("models/remote-models.lock")).unwrap();
    assert!(
        lock.contains(&expected_sha) && lock.contains(SPEC),
        "{lock}"
    );

    // Pulling again downloads nothing and says what it checked against.
    let r = optillm(home.path(), &ep, &["pull", SPEC]);
    assert_eq!(r.code, Some(0), "{}", r.stderr);
    assert!(
        r.stderr
            .contains("matches the one recorded at its first download"),
        "{}",
        r.stderr
    );
    assert_eq!(server.ranges().len(), 2);

    let r = optillm(home.path(), &ep, &["models"]);
    assert_eq!(r.code, Some(0), "{}", r.stderr);
    let row = r
        .stdout
        .lines()
        .find(|l| l.ends_with(SPEC))
        .unwrap_or_else(|| panic!("{}", r.stdout));
    assert!(row.contains("yes") && row.contains("first-use"), "{row}");

    // The model answers by its spec and by its file name, without another download.
    for name in [SPEC, "smol.gguf"] {
        let r = optillm(home.path(), &ep, &say_hi(name));
        assert_eq!(r.code, Some(0), "{name}: {}", r.stderr);
        assert!(!r.stdout.trim().is_empty(), "{name}: no answer");
    }
    assert_eq!(server.ranges().len(), 2);

    let r = optillm(home.path(), &ep, &["verify", SPEC]);
    assert_eq!(r.code, Some(0), "{}", r.stderr);
    assert!(r.stdout.starts_with(&format!("{SPEC}\tok")), "{}", r.stdout);

    // A wrong --sha256: downloaded, refused, removed; the cached file and the lock stay.
    let wrong = "ab".repeat(32);
    let r = optillm(home.path(), &ep, &["pull", SPEC, "--sha256", &wrong]);
    assert_eq!(r.code, Some(1), "{}", r.stderr);
    assert!(
        r.stderr.contains("SHA-256 mismatch") && r.stderr.contains(&wrong),
        "{}",
        r.stderr
    );
    assert!(
        std::fs::read(&local).unwrap() == body,
        "the cached file changed"
    );
    assert_eq!(
        std::fs::read_to_string(home.path().join("models/remote-models.lock")).unwrap(),
        lock
    );
    assert!(!local.with_file_name(".smol.gguf.part").exists());
}

/// `optillm run` of `model`: a short greedy answer.
fn say_hi(model: &str) -> [&str; 10] {
    [
        "run",
        "--model",
        model,
        "--max-tokens",
        "4",
        "--temperature",
        "0",
        "--threads",
        "2",
        "Say hi.",
    ]
}

/// `run --model SPEC` of a file never pulled: `optillm::open` says it is not in the
/// cache, the command line pulls it (trust on first use, said so) and runs it.
#[test]
fn run_by_a_spec_never_pulled_pulls_it_first() {
    let body = std::fs::read(default_model()).unwrap();
    let server = Server::start(body.clone(), 0);
    let home = TempDir::new();
    let args = say_hi(SPEC);
    let r = optillm(home.path(), &server.endpoint(), &args);
    assert_eq!(r.code, Some(0), "{}", r.stderr);
    assert!(!r.stdout.trim().is_empty(), "no answer: {}", r.stderr);
    assert!(r.stderr.contains("trust on first use"), "{}", r.stderr);
    assert_eq!(server.ranges(), vec![None]);
    let local = home
        .path()
        .join("models/hf/test-owner/smol-repo/main/smol.gguf");
    assert!(
        std::fs::read(&local).unwrap() == body,
        "the pulled file differs"
    );

    // The second run uses the checked file: no download.
    let r = optillm(home.path(), &server.endpoint(), &args);
    assert_eq!(r.code, Some(0), "{}", r.stderr);
    assert_eq!(server.ranges(), vec![None]);
}

#[test]
fn bad_specs_fail_before_any_download() {
    let home = TempDir::new();
    // Each is refused by `pull` and by `run --model` before any connection (the
    // endpoint is a port where nothing listens).
    for (spec, needle) in [
        ("http://example.com/m.gguf", "only https://"),
        ("ftp://example.com/m.gguf", "only https://"),
        ("hf:o/r/../m.gguf", "may not start with a dot"),
        ("hf:o/r/m.bin", "not a .gguf file name"),
        ("https://user:pw@example.com/m.gguf", "credentials"),
    ] {
        for args in [vec!["pull", spec], vec!["run", "--model", spec, "hi"]] {
            let r = optillm(home.path(), "http://127.0.0.1:9", &args);
            assert_eq!(r.code, Some(1), "{args:?}: {}", r.stderr);
            assert!(r.stderr.contains(needle), "{args:?}: {}", r.stderr);
        }
    }
    // A bad --sha256, or one for several files.
    let r = optillm(
        home.path(),
        "http://127.0.0.1:9",
        &["pull", "hf:o/r/m.gguf", "--sha256", "xyz"],
    );
    assert_eq!(r.code, Some(1), "{}", r.stderr);
    assert!(r.stderr.contains("is not a SHA-256"), "{}", r.stderr);
    let sha = "0".repeat(64);
    let r = optillm(
        home.path(),
        "http://127.0.0.1:9",
        &["pull", "hf:o/r/a.gguf", "hf:o/r/b.gguf", "--sha256", &sha],
    );
    assert_eq!(r.code, Some(1), "{}", r.stderr);
    assert!(r.stderr.contains("exactly one"), "{}", r.stderr);
    assert!(!home.path().join("models").exists());
}
