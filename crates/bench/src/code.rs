//! Programs judged by running unit tests (HumanEval): the answer of a code question is
//! the program of the reply ([`optillm_core::extract::extract_code`]), and it is right
//! when the data set's tests pass against it.
//!
//! The tests run in a `python3` process (`OPTILLM_PYTHON` names another interpreter)
//! with what the official `human-eval` harness does before it runs a completion, which
//! its authors call a guard against accidents, not a security sandbox: an empty
//! temporary directory as working directory, an environment holding only `PATH` and
//! `HOME`, `python -I` (no user site, no `PYTHON*` variables), stdin closed, limits on
//! address space, CPU seconds and written file size (`setrlimit`), and the functions
//! that delete files, start processes, open sockets or change directory replaced by
//! `None` before the program runs; the program runs as a module named `program`, so
//! an `if __name__ == "__main__":` demo in a reply does not run. On top, a wall-clock
//! timeout kills the process.
//! Run model-written code this way only on a machine you can afford to lose, as with
//! `human-eval` itself.

use std::io::Read;
use std::path::Path;
use std::process::{Command, Stdio};
use std::time::{Duration, Instant};

use serde::{Deserialize, Serialize};

/// What a code question's program is checked against, kept as JSON in the item's (and
/// every record's) `gold`, so that a record can be judged again on its own.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct CodeGold {
    /// The question's code: imports, the function's signature and docstring.
    pub prompt: String,
    /// The unit tests: Python source that defines `check(candidate)`.
    pub test: String,
    /// The name of the function the tests call.
    pub entry_point: String,
}

impl CodeGold {
    /// The JSON kept in `gold`.
    pub fn to_gold(&self) -> String {
        serde_json::to_string(self).unwrap_or_default()
    }

    /// Reads [`CodeGold::to_gold`]'s JSON; `None` when `gold` is not such JSON.
    pub fn from_gold(gold: &str) -> Option<Self> {
        serde_json::from_str(gold).ok()
    }

    /// The program the tests run against: `code` itself when it defines the entry
    /// point (after the prompt's own `import` lines, which a reply that rewrites the
    /// function often leaves out), else the prompt followed by `code` (a reply that
    /// wrote only the body); then the tests and `check(entry_point)`.
    pub fn program(&self, code: &str) -> String {
        let def = format!("def {}(", self.entry_point);
        let defines = code.lines().any(|l| l.trim_start().starts_with(&def));
        let head = if defines {
            let imports: Vec<&str> = self
                .prompt
                .lines()
                .filter(|l| l.starts_with("import ") || l.starts_with("from "))
                .collect();
            format!("{}\n\n{}", imports.join("\n"), code)
        } else {
            format!("{}{}", self.prompt, code)
        };
        format!(
            "{head}\n\n\n{}\n\ncheck({})\n",
            self.test.trim_end(),
            self.entry_point
        )
    }
}

/// Bounds on one test run.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct Limits {
    /// Wall-clock time before the process is killed.
    pub timeout: Duration,
    /// Address space (`RLIMIT_AS`), bytes.
    pub memory_bytes: u64,
    /// Largest file the program may write (`RLIMIT_FSIZE`), bytes; its error output
    /// goes to such a file, so this also bounds what is kept of it.
    pub file_bytes: u64,
}

impl Default for Limits {
    fn default() -> Self {
        Self {
            timeout: Duration::from_secs(10),
            memory_bytes: 2 << 30,
            file_bytes: 1 << 20,
        }
    }
}

/// How a test run ended.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Verdict {
    Passed,
    /// The program or a test failed: the last line of its error output.
    Failed(String),
    /// Killed at the wall-clock timeout.
    TimedOut,
}

impl Verdict {
    pub fn passed(&self) -> bool {
        matches!(self, Verdict::Passed)
    }

    /// Why the program failed, for a record: the error line, or the timeout.
    pub fn failure(&self) -> Option<String> {
        match self {
            Verdict::Passed => None,
            Verdict::Failed(line) => Some(line.clone()),
            Verdict::TimedOut => Some("timed out".into()),
        }
    }
}

/// Runs before the program, inside the interpreter: limits, then the guard.
const GUARD: &str = r#"import builtins, os, resource, shutil, socket, subprocess, sys
memory, cpu, fsize = (int(a) for a in sys.argv[2:5])
resource.setrlimit(resource.RLIMIT_AS, (memory, memory))
resource.setrlimit(resource.RLIMIT_CPU, (cpu, cpu))
resource.setrlimit(resource.RLIMIT_FSIZE, (fsize, fsize))
with open(sys.argv[1], encoding="utf-8") as f:
    source = f.read()
for name in ("kill", "killpg", "system", "putenv", "remove", "removedirs", "rmdir",
             "fchdir", "chdir", "setuid", "fork", "forkpty", "rename", "renames",
             "truncate", "replace", "unlink", "fchmod", "fchown", "chmod", "chown",
             "chroot", "lchown", "execv", "execve", "spawnv", "popen"):
    setattr(os, name, None)
shutil.rmtree = shutil.move = shutil.chown = None
subprocess.Popen = subprocess.run = subprocess.call = None
socket.socket = socket.create_connection = None
builtins.help = None
for name in ("ipdb", "joblib", "resource", "psutil", "tkinter"):
    sys.modules[name] = None
exec(compile(source, "program.py", "exec"), {"__name__": "program"})
"#;

/// Runs the tests of `gold` against `code` (see the module documentation).
/// `Err` only when the run could not be made (no interpreter, no temporary directory):
/// whatever the program does is a [`Verdict`].
pub fn run_tests(code: &str, gold: &CodeGold, limits: Limits) -> std::io::Result<Verdict> {
    let dir = tempfile::tempdir()?;
    let program = dir.path().join("program.py");
    let guard = dir.path().join("guard.py");
    let errors = dir.path().join("stderr.txt");
    std::fs::write(&program, gold.program(code))?;
    std::fs::write(&guard, GUARD)?;
    let stderr = std::fs::File::create(&errors)?;
    let interpreter = interpreter();
    // Beyond the wall-clock timeout, so that it is the one that ends a busy loop (CPU
    // time never runs ahead of wall time in one thread); the limit is the backstop.
    let cpu_seconds = limits.timeout.as_secs() + 2;
    let mut command = Command::new(interpreter);
    command
        .arg("-I")
        .arg("-B")
        .arg(&guard)
        .arg(&program)
        .arg(limits.memory_bytes.to_string())
        .arg(cpu_seconds.to_string())
        .arg(limits.file_bytes.to_string())
        .current_dir(dir.path())
        .env_clear()
        .env("LANG", "C.UTF-8")
        .stdin(Stdio::null())
        .stdout(Stdio::null())
        .stderr(stderr);
    for name in ["PATH", "HOME"] {
        if let Some(value) = std::env::var_os(name) {
            command.env(name, value);
        }
    }
    let mut child = command.spawn()?;
    let started = Instant::now();
    let status = loop {
        if let Some(status) = child.try_wait()? {
            break Some(status);
        }
        if started.elapsed() >= limits.timeout {
            // Already gone is fine: it is reaped below either way.
            let _ = child.kill();
            let _ = child.wait();
            break None;
        }
        std::thread::sleep(Duration::from_millis(10));
    };
    Ok(match status {
        None => Verdict::TimedOut,
        Some(s) if s.success() => Verdict::Passed,
        Some(s) => Verdict::Failed(last_error_line(&errors).unwrap_or_else(|| s.to_string())),
    })
}

/// The interpreter the tests run in: `OPTILLM_PYTHON`, else `python3`.
pub fn interpreter() -> String {
    std::env::var("OPTILLM_PYTHON").unwrap_or_else(|_| "python3".into())
}

/// Checks that `interpreter` runs and has the `resource` module the guard needs (a
/// POSIX Python 3), so that a run does not judge every program wrong for want of one.
pub fn check_interpreter(interpreter: &str) -> Result<(), crate::BenchError> {
    let failed = |message: String| crate::BenchError::NoInterpreter {
        interpreter: interpreter.to_string(),
        message,
    };
    let output = Command::new(interpreter)
        .args([
            "-I",
            "-c",
            "import resource, sys; assert sys.version_info >= (3, 8)",
        ])
        .stdin(Stdio::null())
        .output()
        .map_err(|e| failed(e.to_string()))?;
    if output.status.success() {
        Ok(())
    } else {
        let stderr = String::from_utf8_lossy(&output.stderr);
        let last = stderr.lines().rev().find(|l| !l.trim().is_empty());
        Err(failed(
            last.unwrap_or("it exited with an error").trim().to_string(),
        ))
    }
}

/// The verdict on `code` against the tests kept in `gold` ([`CodeGold::to_gold`]'s JSON)
/// with the default [`Limits`]. When `gold` is not such JSON or the run cannot be made,
/// the program is judged wrong, and the verdict says why.
pub fn judge(code: &str, gold: &str) -> Verdict {
    let Some(gold) = CodeGold::from_gold(gold) else {
        return Verdict::Failed("the question's tests could not be read".into());
    };
    run_tests(code, &gold, Limits::default()).unwrap_or_else(|e| {
        tracing::warn!(error = %e, "could not run a program's tests; judged wrong");
        Verdict::Failed(format!("the tests could not be run: {e}"))
    })
}

/// The last non-empty line of the error output (a traceback's exception line).
fn last_error_line(path: &Path) -> Option<String> {
    let mut text = String::new();
    std::fs::File::open(path)
        .ok()?
        .take(1 << 20)
        .read_to_string(&mut text)
        .ok()?;
    text.lines()
        .rev()
        .find(|l| !l.trim().is_empty())
        .map(|l| l.trim().chars().take(300).collect())
}

#[cfg(test)]
mod tests {
    use super::*;

    fn gold() -> CodeGold {
        CodeGold {
            prompt: "from typing import List\n\n\ndef total(xs: List[int]) -> int:\n    \"\"\"The sum of xs.\"\"\"\n".into(),
            test: "def check(candidate):\n    assert candidate([1, 2, 3]) == 6\n    assert candidate([]) == 0\n".into(),
            entry_point: "total".into(),
        }
    }

    #[test]
    fn the_gold_round_trips_through_json() {
        let g = gold();
        assert_eq!(CodeGold::from_gold(&g.to_gold()), Some(g));
        assert_eq!(CodeGold::from_gold("42"), None);
    }

    #[test]
    fn a_whole_function_gets_the_prompts_imports_and_a_body_gets_the_prompt() {
        let g = gold();
        let whole = g.program("def total(xs: List[int]) -> int:\n    return sum(xs)");
        assert!(whole.starts_with("from typing import List\n\ndef total("));
        assert!(whole.ends_with("check(total)\n"));
        let body = g.program("    return sum(xs)");
        assert!(body.starts_with(&g.prompt));
        assert!(body.contains("\"\"\"\n    return sum(xs)"));
    }

    #[test]
    fn right_code_passes_and_wrong_code_fails_with_its_error() {
        let g = gold();
        let limits = Limits::default();
        let right = run_tests(
            "def total(xs: List[int]) -> int:\n    return sum(xs)",
            &g,
            limits,
        );
        assert_eq!(right.unwrap(), Verdict::Passed);
        assert_eq!(
            run_tests("    return sum(xs)", &g, limits).unwrap(),
            Verdict::Passed
        );
        let wrong = run_tests("def total(xs):\n    return len(xs)", &g, limits).unwrap();
        assert_eq!(wrong, Verdict::Failed("AssertionError".into()));
        let broken = run_tests("def total(xs) return 0", &g, limits).unwrap();
        assert!(
            matches!(&broken, Verdict::Failed(m) if m.starts_with("SyntaxError")),
            "{broken:?}"
        );
        assert!(judge("def total(xs):\n    return sum(xs)", &g.to_gold()).passed());
        let unreadable = judge("def total(xs):\n    return sum(xs)", "not a code gold");
        assert_eq!(
            unreadable.failure().as_deref(),
            Some("the question's tests could not be read")
        );
    }

    #[test]
    fn a_missing_interpreter_is_a_clear_error() {
        assert!(check_interpreter(&interpreter()).is_ok());
        let e = check_interpreter("/nonexistent/python3").unwrap_err();
        assert!(
            e.to_string()
                .contains("`/nonexistent/python3` cannot be run"),
            "{e}"
        );
    }

    #[test]
    fn a_program_that_never_ends_is_killed_at_the_timeout() {
        let limits = Limits {
            timeout: Duration::from_millis(1500),
            ..Limits::default()
        };
        let started = Instant::now();
        let v = run_tests(
            "def total(xs):\n    while True:\n        pass",
            &gold(),
            limits,
        )
        .unwrap();
        assert_eq!(v, Verdict::TimedOut);
        assert!(started.elapsed() < Duration::from_secs(10));
    }

    #[test]
    fn the_guard_stops_deleting_spawning_and_hoarding_memory() {
        let g = gold();
        let limits = Limits::default();
        // A file outside the run's directory survives a program that tries to delete it.
        let keep = tempfile::NamedTempFile::new().unwrap();
        let path = keep.path().display().to_string();
        let delete = format!("import os\nos.remove({path:?})\ndef total(xs):\n    return sum(xs)");
        assert!(matches!(
            run_tests(&delete, &g, limits).unwrap(),
            Verdict::Failed(_)
        ));
        assert!(keep.path().exists());
        let spawn =
            "import subprocess\nsubprocess.run(['true'])\ndef total(xs):\n    return sum(xs)";
        assert!(matches!(
            run_tests(spawn, &g, limits).unwrap(),
            Verdict::Failed(_)
        ));
        let hoard = "x = bytearray(8 << 30)\ndef total(xs):\n    return sum(xs)";
        let v = run_tests(hoard, &g, limits).unwrap();
        assert_eq!(v, Verdict::Failed("MemoryError".into()));
    }
}
