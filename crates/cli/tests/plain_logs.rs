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

/// stderr on a terminal (a pseudo-terminal from util-linux's `script`): coloured logs,
/// unless `NO_COLOR` is set. Skipped when `script` is not installed.
#[test]
fn logs_to_a_terminal_are_coloured_unless_no_color_is_set() {
    let has_script = Command::new("script")
        .arg("--version")
        .output()
        .is_ok_and(|o| o.status.success());
    if !has_script {
        eprintln!("skipped: util-linux's `script` is not installed");
        return;
    }
    let url = format!("http://127.0.0.1:{}/v1", closed_port());
    let line = format!(
        "'{}' run --backend openai --url {url} --model m Hi",
        env!("CARGO_BIN_EXE_optillm")
    );
    let on_terminal = |no_color: Option<&str>| {
        let mut command = Command::new("script");
        command
            .args(["-qec", &line, "/dev/null"])
            .env_remove("NO_COLOR")
            .env_remove("OPTILLM_LOG")
            .env("OPENAI_API_KEY", "unused")
            .stdin(Stdio::null());
        if let Some(v) = no_color {
            command.env("NO_COLOR", v);
        }
        let out = command.output().unwrap();
        String::from_utf8_lossy(&out.stdout).into_owned()
    };
    let coloured = on_terminal(None);
    assert!(coloured.contains("WARN"), "{coloured}");
    assert!(
        coloured.contains("\x1b["),
        "no colours on a terminal: {coloured:?}"
    );
    let plain = on_terminal(Some("1"));
    assert!(plain.contains("WARN"), "{plain}");
    assert!(
        !plain.contains('\x1b'),
        "colours despite NO_COLOR: {plain:?}"
    );
}
