//! The `optillm` binary with bad flags and settings: a clear error and a non-zero exit
//! before any model is pulled or loaded, never a panic (101) or an abort (134).
//!
//! Each run gets an empty cache (`OPTILLM_HOME`) and a proxy that refuses connections,
//! so a run that wrongly tries to pull fails fast instead of downloading. Only the tests
//! marked so use the real default model (by path).

#![allow(clippy::unwrap_used, clippy::expect_used, clippy::panic)]

#[allow(dead_code)]
mod common;

use std::path::Path;
use std::process::{Command, Output};

/// A fresh directory under the system's temporary one, removed on drop.
struct TempDir(std::path::PathBuf);

impl TempDir {
    fn new() -> TempDir {
        use std::sync::atomic::{AtomicU32, Ordering};
        static NEXT: AtomicU32 = AtomicU32::new(0);
        let dir = std::env::temp_dir().join(format!(
            "optillm-bad-flags-{}-{}",
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

struct Run {
    code: Option<i32>,
    stderr: String,
    stdout: String,
}

/// A refused local port, for the proxy variables.
fn refused() -> String {
    let l = std::net::TcpListener::bind("127.0.0.1:0").unwrap();
    let port = l.local_addr().unwrap().port();
    drop(l);
    format!("http://127.0.0.1:{port}")
}

fn optillm(home: &Path, args: &[&str]) -> Run {
    let proxy = refused();
    let out: Output = Command::new(env!("CARGO_BIN_EXE_optillm"))
        .args(args)
        .env("OPTILLM_HOME", home)
        .env_remove("LLM_MODEL")
        .env_remove("OPTILLM_BACKEND")
        .env("HTTPS_PROXY", &proxy)
        .env("HTTP_PROXY", &proxy)
        .env("ALL_PROXY", &proxy)
        .env("https_proxy", &proxy)
        .env("http_proxy", &proxy)
        .env_remove("NO_PROXY")
        .env_remove("no_proxy")
        .output()
        .unwrap();
    Run {
        code: out.status.code(),
        stderr: String::from_utf8_lossy(&out.stderr).into_owned(),
        stdout: String::from_utf8_lossy(&out.stdout).into_owned(),
    }
}

/// Fails cleanly: non-zero exit, not a panic or an abort (a signal gives no code),
/// with every `needle` in stderr.
fn assert_clean_failure(r: &Run, needles: &[&str]) {
    let code = r
        .code
        .unwrap_or_else(|| panic!("killed by a signal: {}", r.stderr));
    assert_ne!(code, 0, "should fail: {}", r.stderr);
    assert_ne!(code, 101, "panicked: {}", r.stderr);
    assert_ne!(code, 134, "aborted: {}", r.stderr);
    assert!(!r.stderr.contains("panicked"), "{}", r.stderr);
    assert!(!r.stderr.contains("GGML_ASSERT"), "{}", r.stderr);
    for n in needles {
        assert!(r.stderr.contains(n), "`{n}` not in: {}", r.stderr);
    }
}

/// Nothing was pulled into the cache.
fn assert_nothing_pulled(home: &Path) {
    for dir in ["models", "datasets"] {
        let d = home.join(dir);
        let entries: Vec<_> = std::fs::read_dir(&d)
            .map(|rd| rd.map(|e| e.unwrap().file_name()).collect())
            .unwrap_or_default();
        assert!(entries.is_empty(), "{} has {entries:?}", d.display());
    }
}

#[test]
fn bad_deadlines_are_refused_at_parse_time() {
    let home = TempDir::new();
    for bad in ["-1", "0", "NaN", "inf", "1e300", "604801", "soon"] {
        let flag = format!("--deadline={bad}");
        let r = optillm(home.path(), &["run", "hi", "-a", "bon", &flag]);
        assert_clean_failure(&r, &["--deadline"]);
        assert!(
            r.stderr.contains("7 days") || r.stderr.contains("not a number"),
            "{bad}: {}",
            r.stderr
        );
        let r = optillm(home.path(), &["serve", "--approach", "bon", &flag]);
        assert_clean_failure(&r, &["--deadline"]);
    }
    assert_nothing_pulled(home.path());
}

#[test]
fn out_of_range_native_settings_are_refused_before_loading() {
    let home = TempDir::new();
    for bad in ["0", "1", "8", "15", "4000000000", "2000000"] {
        let r = optillm(home.path(), &["run", "hi", "--ctx-size", bad]);
        assert_clean_failure(&r, &["--ctx-size"]);
        if bad != "4000000000" {
            // (u32 overflow is refused by the parser with its own message)
            assert!(r.stderr.contains("16..=1048576"), "{bad}: {}", r.stderr);
        }
    }
    for bad in ["0", "-1", "513", "100000"] {
        let flag = format!("--threads={bad}");
        let r = optillm(home.path(), &["run", "hi", &flag]);
        assert_clean_failure(&r, &["--threads", "1..=512"]);
    }
    for bad in ["0", "257", "4000000000"] {
        let r = optillm(home.path(), &["run", "hi", "-n", bad]);
        assert_clean_failure(&r, &["-n"]);
    }
    let r = optillm(home.path(), &["run", "hi", "-n", "0"]);
    assert_clean_failure(&r, &["1..=256"]);
    let r = optillm(home.path(), &["run", "hi", "--max-tokens", "0"]);
    assert_clean_failure(&r, &["--max-tokens", "1..=1048576"]);
    let r = optillm(home.path(), &["bench", "--max-tokens", "0"]);
    assert_clean_failure(&r, &["--max-tokens"]);
    let r = optillm(home.path(), &["bench", "--runs", "0", "-m", "smollm2"]);
    assert_clean_failure(&r, &["--runs", "1..=1000"]);
    let r = optillm(home.path(), &["serve", "--ctx-size", "8", "--port", "0"]);
    assert_clean_failure(&r, &["--ctx-size", "16..=1048576"]);
    let r = optillm(home.path(), &["serve", "--max-concurrent", "0"]);
    assert_clean_failure(&r, &["--max-concurrent", "1..=4096"]);
    let r = optillm(home.path(), &["run", "hi", "--temperature", "NaN"]);
    assert_clean_failure(&r, &["temperature"]);
    assert_nothing_pulled(home.path());
}

#[test]
fn a_data_set_as_model_fails_at_once_listing_the_models() {
    let home = TempDir::new();
    let r = optillm(home.path(), &["run", "--model", "gsm8k", "hi"]);
    assert_clean_failure(&r, &["`gsm8k` is a dataset", "not a model", "smollm2-135m"]);
    let r = optillm(home.path(), &["serve", "--model", "gsm8k", "--port", "0"]);
    assert_clean_failure(&r, &["`gsm8k` is a dataset"]);
    let r = optillm(home.path(), &["bench", "--single", "--model", "arc-easy"]);
    assert_clean_failure(&r, &["`arc-easy` is a dataset"]);
    assert_nothing_pulled(home.path());
}

#[test]
fn a_bad_approach_fails_before_the_model_is_pulled() {
    let home = TempDir::new();
    let r = optillm(home.path(), &["run", "--approach", "bogus", "hi"]);
    assert_clean_failure(&r, &["bogus"]);
    assert!(!r.stderr.contains("pulling"), "{}", r.stderr);
    let r = optillm(
        home.path(),
        &["serve", "--approach", "bogus", "--port", "0"],
    );
    assert_clean_failure(&r, &["--approach", "bogus"]);
    assert!(!r.stderr.contains("pulling"), "{}", r.stderr);
    assert_nothing_pulled(home.path());
}

#[test]
fn a_busy_port_fails_before_the_model_is_pulled() {
    let home = TempDir::new();
    let busy = std::net::TcpListener::bind("127.0.0.1:0").unwrap();
    let port = busy.local_addr().unwrap().port().to_string();
    let r = optillm(home.path(), &["serve", "--port", &port]);
    assert_clean_failure(&r, &["cannot listen on 127.0.0.1:", &port]);
    assert!(!r.stderr.contains("pulling"), "{}", r.stderr);
    assert_nothing_pulled(home.path());
}

#[test]
fn verify_reports_a_same_size_corrupt_file_and_cleans_partials() {
    let home = TempDir::new();
    let r = optillm(home.path(), &["verify"]);
    assert_eq!(r.code, Some(0), "{}", r.stderr);
    assert!(r.stdout.contains("nothing in the cache"), "{}", r.stdout);

    let gsm8k = optillm_models::find("gsm8k").unwrap();
    let dir = home.path().join("datasets");
    std::fs::create_dir_all(&dir).unwrap();
    std::fs::write(dir.join(&gsm8k.file), vec![0u8; gsm8k.size as usize]).unwrap();
    let partial = dir.join(".partial-gsm8k-test.olmo.jsonl.gz-x1");
    std::fs::write(&partial, b"half a download").unwrap();
    let r = optillm(home.path(), &["verify"]);
    assert_clean_failure(&r, &["failed verification", "gsm8k", "--repair"]);
    assert!(r.stdout.contains("gsm8k\tFAILED"), "{}", r.stdout);
    assert!(r.stdout.contains("SHA-256 mismatch"), "{}", r.stdout);
    assert!(!partial.exists(), "the partial file was removed");
    assert!(r.stderr.contains("interrupted pull"), "{}", r.stderr);
    // Named, and with `pull --verify` (whose re-download fails here: no network).
    let r = optillm(home.path(), &["verify", "gsm8k"]);
    assert_clean_failure(&r, &["failed verification"]);
    let r = optillm(home.path(), &["pull", "--verify", "gsm8k"]);
    assert_clean_failure(&r, &["damaged", "pulling it again"]);
    // `models` says the file is present but unchecked.
    let r = optillm(home.path(), &["models"]);
    assert_eq!(r.code, Some(0), "{}", r.stderr);
    let row = r.stdout.lines().find(|l| l.starts_with("gsm8k ")).unwrap();
    assert!(row.contains("check"), "{row}");
}

// ---- With the real default model (by path; pulled into the default cache if needed).

#[test]
fn a_context_beyond_the_trained_one_is_refused_before_llama_cpp() {
    let model = common::model_path();
    let home = TempDir::new();
    let model = model.to_str().unwrap();
    // SmolLM2-135M was trained on 8192 tokens.
    let r = optillm(
        home.path(),
        &["run", "-m", model, "--ctx-size", "9000", "hi"],
    );
    assert_clean_failure(&r, &["n_ctx = 9000", "16..=8192"]);
}

#[test]
fn small_contexts_work_with_long_prompts() {
    let model = common::model_path();
    let home = TempDir::new();
    let model = model.to_str().unwrap();
    // The smallest context; and one smaller than the default batch (512) with a
    // prompt longer than it, whose chunks once exceeded llama.cpp's batch (abort).
    let long = "one two three four five six seven eight nine ten ".repeat(12);
    for (ctx, prompt) in [("16", "hi"), ("100", long.as_str())] {
        let r = optillm(
            home.path(),
            &[
                "run",
                "-m",
                model,
                "--ctx-size",
                ctx,
                "--threads",
                "2",
                "--max-tokens",
                "4",
                prompt,
            ],
        );
        assert_eq!(r.code, Some(0), "--ctx-size {ctx}: {}", r.stderr);
        assert!(r.stderr.contains("completion"), "{}", r.stderr);
    }
}

#[test]
fn bad_json_schemas_fail_before_the_model_is_pulled() {
    let home = TempDir::new();
    let missing = home.path().join("missing.json");
    let missing = missing.to_str().unwrap();
    let cases: [(&[&str], &[&str]); 6] = [
        (
            &["--raw", "-a", "moa"],
            &["--raw", "only available with the `none` approach"],
        ),
        (&["--raw", "--system", "s"], &["--raw", "--system"]),
        (
            &["--json-schema", r#"{"type": "int"}"#],
            &["--json-schema", "#/type"],
        ),
        (
            &["--json-schema", "{not json"],
            &["--json-schema", "not valid JSON"],
        ),
        (
            &["--json-schema", missing],
            &["--json-schema", "cannot read"],
        ),
        (
            &["--json-schema", r#"{"type": "object"}"#, "-a", "bon"],
            &["only available with the `none` approach"],
        ),
    ];
    for (flags, needles) in cases {
        let mut args = vec!["run", "hi"];
        args.extend_from_slice(flags);
        let r = optillm(home.path(), &args);
        assert_clean_failure(&r, needles);
    }
    assert_nothing_pulled(home.path());
}

#[test]
fn a_json_schema_constrains_the_answer() {
    let model = common::model_path();
    let home = TempDir::new();
    let schema_file = home.path().join("answer.json");
    let trace = home.path().join("trace.jsonl");
    std::fs::write(
        &schema_file,
        r#"{"type": "object", "properties": {"answer": {"type": "integer"}},
            "required": ["answer"], "additionalProperties": false}"#,
    )
    .unwrap();
    let r = optillm(
        home.path(),
        &[
            "run",
            "-m",
            model.to_str().unwrap(),
            "--threads",
            "2",
            "--temperature",
            "0",
            "--max-tokens",
            "64",
            "--json-schema",
            schema_file.to_str().unwrap(),
            "--trace",
            trace.to_str().unwrap(),
            "What is 2 + 3? Reply in JSON.",
        ],
    );
    assert_eq!(r.code, Some(0), "{}", r.stderr);
    // The same run path as every approach: traced, one call.
    let traced = std::fs::read_to_string(&trace).unwrap();
    assert_eq!(traced.lines().count(), 1, "{traced}");
    let v: serde_json::Value = serde_json::from_str(r.stdout.trim())
        .unwrap_or_else(|e| panic!("not JSON ({e}): {:?}", r.stdout));
    assert!(v["answer"].is_i64(), "{v}");
    assert_eq!(v.as_object().unwrap().len(), 1, "{v}");
}

#[test]
fn raw_continues_the_prompt_without_the_chat_template() {
    let model = common::model_path();
    let home = TempDir::new();
    let run = |raw: bool| {
        let trace = home.path().join(format!("trace-{raw}.jsonl"));
        let mut args = vec![
            "run",
            "-m",
            model.to_str().unwrap(),
            "--temperature",
            "0",
            "--max-tokens",
            "4",
            "--trace",
            trace.to_str().unwrap(),
        ];
        if raw {
            args.push("--raw");
        }
        args.push("Question: What is the capital of France?\nAnswer:");
        let r = optillm(home.path(), &args);
        assert_eq!(r.code, Some(0), "{}", r.stderr);
        let line = std::fs::read_to_string(&trace).unwrap();
        let v: serde_json::Value = serde_json::from_str(line.trim()).unwrap();
        (
            v["raw"] == true,
            v["usage"]["prompt_tokens"].as_u64().unwrap(),
        )
    };
    let (raw_flag, raw_prompt) = run(true);
    let (chat_flag, chat_prompt) = run(false);
    assert!(raw_flag && !chat_flag);
    // The text alone, against the text inside the chat template.
    assert!(
        raw_prompt + 5 < chat_prompt,
        "{raw_prompt} vs {chat_prompt}"
    );
}
