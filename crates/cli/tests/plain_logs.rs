//! Log lines written to a pipe or a file carry no terminal colour codes: `optillm run`
//! against a server that refuses connections logs its retries (warnings) on stderr,
//! which is a pipe here.

#![allow(clippy::unwrap_used, clippy::expect_used, clippy::panic)]

use std::process::{Command, Stdio};

/// A loopback port nothing listens on.
fn closed_port() -> u16 {
    let l = std::net::TcpListener::bind("127.0.0.1:0").unwrap();
    l.local_addr().unwrap().port()
}

#[test]
fn logs_to_a_pipe_have_no_colour_codes() {
    let url = format!("http://127.0.0.1:{}/v1", closed_port());
    let out = Command::new(env!("CARGO_BIN_EXE_optillm"))
        .args([
            "run",
            "--backend",
            "openai",
            "--url",
            &url,
            "--model",
            "m",
            "Hi",
        ])
        .env_remove("NO_COLOR")
        .env_remove("OPTILLM_LOG")
        .env("OPENAI_API_KEY", "unused")
        .stdin(Stdio::null())
        .output()
        .unwrap();
    let stderr = String::from_utf8_lossy(&out.stderr);
    assert!(!out.status.success(), "nothing listens there: {stderr}");
    assert!(
        stderr.contains("WARN") && stderr.contains("retrying"),
        "the retries are logged: {stderr}"
    );
    assert!(
        !stderr.contains('\x1b'),
        "colour codes in logs written to a pipe: {stderr:?}"
    );
}
