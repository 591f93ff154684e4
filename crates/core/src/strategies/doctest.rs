//! `doctest`: a program checked against the question's own examples.
//!
//! Code questions often show what the function must return (`>>> add(2, 3)` then `5`
//! in its docstring, or `add(2, 3) ==> 5`). The greedy program (T 0) is run on those
//! examples by [`crate::pyeval`], this crate's bounded interpreter of a Python subset
//! (no real Python runs: nothing is executed outside it). When it passes them, or
//! when they cannot tell (no examples, or the program needs Python beyond the subset),
//! it is the answer, at the cost of one completion. Only when it fails an example are
//! programs sampled, `batch` at a time up to `k`, until one passes every example; if
//! none does, the answer is the program that passed the most examples (the greedy
//! one on ties).
//!
//! With `feedback=true` the samples are repairs instead (self-debugging, Chen et al.
//! 2023): the request carries the best program so far and the first example it fails,
//! with the value it returned or the error it raised, and asks for the corrected
//! function.
//!
//! An example fails only on what Python would fail on too: a false assertion, a
//! division by zero, a missing index or key, a value error, an exception the program
//! raises itself. A name the subset does
//! not know, a type error, a recursion or step limit may be the interpreter's limits
//! rather than the program's fault, and count as "cannot tell".

use async_trait::async_trait;
use serde::{Deserialize, Serialize};

use super::Approach;
use super::auto::is_identifier;
use super::util::{one, temp};
use crate::extract::{extract_code, fenced_blocks};
use crate::pyeval::{self, Limits, PyError};
use crate::spec::SpecError;
use crate::strategy::{Answer, Ctx, Strategy, StrategyError, StrategyRequest};
use crate::types::Message;

/// The parameters of `doctest`; a field a spec leaves out takes its default here
/// (`optillm approaches` lists them).
#[derive(Debug, Clone, Serialize, Deserialize)]
#[serde(default, deny_unknown_fields)]
pub struct Params {
    /// Most programs sampled after a greedy program that fails an example.
    pub k: u32,
    /// Programs drawn per request.
    pub batch: u32,
    /// Temperature of the sampled programs.
    pub temperature: f32,
    /// Sample from a repair request (self-debugging): the best program so far and the
    /// first example it fails, with what it gave instead, rather than from the question
    /// alone.
    pub feedback: bool,
}

impl Default for Params {
    fn default() -> Self {
        Self {
            k: 4,
            batch: 2,
            temperature: 0.8,
            feedback: false,
        }
    }
}

/// The `doctest` strategy (the module documentation describes it): built from typed
/// [`Params`] with `new`, or by name through [`crate::strategies::build`].
#[derive(Debug, Clone)]
pub struct Doctest {
    params: Params,
}

impl Doctest {
    pub fn new(params: Params) -> Result<Self, SpecError> {
        if params.batch == 0 {
            return Err(SpecError::BadParameter {
                approach: Self::SLUG.into(),
                message: "batch must be at least 1".into(),
            });
        }
        Ok(Self { params })
    }
}

impl Approach for Doctest {
    const SLUG: &'static str = "doctest";
    const DESCRIPTION: &'static str = "Code: the greedy program, checked on the question's own examples; sample others only when it fails one";
    type Params = Params;

    fn from_params(params: Params) -> Result<Self, SpecError> {
        Self::new(params)
    }
}

/// One example of a code question: a call of its function and the value it must give.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Example {
    pub call: String,
    pub expected: String,
}

/// The question's code and its examples; `None` when it has no function with examples.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Examples {
    /// The question's code (imports, signatures, docstrings).
    pub code: String,
    /// The functions the question's code defines.
    pub functions: Vec<String>,
    pub examples: Vec<Example>,
}

/// Most examples read from one question.
const MAX_EXAMPLES: usize = 16;

/// Most candidate example lines parsed (each parse runs the interpreter), so that a
/// question full of unparsable examples costs a bounded amount of work.
const MAX_CANDIDATES: usize = 4 * MAX_EXAMPLES;

/// Separators between a call and its value in prose examples (`f(1) ==> 2`), longest
/// first.
const SEPARATORS: &[&str] = &[
    "should return",
    "returns",
    "==>",
    "=>",
    "->",
    "\u{279e}",
    "==",
    "=",
];

/// Words that may come before a prose example's call (`assert f(1) == 2`).
const LEADS: &[&str] = &["assert ", "for ", "For "];

/// The code and examples of `query`: the first fenced block that defines a function
/// (else the query from its first `def`), and in it the examples of a function the code
/// defines, written as
/// - `>>> f(...)` with the value on the next line (the call may sit inside an expression,
///   `>>> round(f(x), 2)`), or `>>> f(...) == value`;
/// - `f(...) ==> value` (also `=>`, `->`, `➞`, `==`, `=`, `returns`, `should return`,
///   after a `#`, or after `assert`), where a value that shows its working
///   (`-> 19 - 5 - 6 = 8`) counts by its last part;
/// - `Input: x = 1, y = [2]` with `Output: value` on one of the next lines, and
///   `For x = 1 the output should be value`: calls of the last function the code
///   defines, arguments in the order of its parameters.
///
/// An example whose assertion the interpreter cannot parse, or that names something the
/// question's code leaves undefined (`f(a) == true` in prose), is dropped.
pub fn examples(query: &str) -> Option<Examples> {
    let code = fenced_blocks(query)
        .into_iter()
        .find(|b| b.contains("def "))
        .or_else(|| extract_code(query))?;
    // Longer than the interpreter runs, no program built on it could be checked.
    if code.chars().count() > Limits::default().max_source_chars {
        return None;
    }
    let functions: Vec<String> = code.lines().filter_map(defined_function).collect();
    let last = code.lines().rev().find_map(signature)?;
    let code_runs = pyeval::run_script(&code, &Limits::default())
        .failure
        .is_none();
    let lines: Vec<&str> = code.lines().map(str::trim).collect();
    let mut found = Vec::new();
    let mut tried = 0;
    for (i, line) in lines.iter().enumerate() {
        let next = lines.get(i + 1..).unwrap_or_default();
        let example = if let Some(call) = line.strip_prefix(">>>") {
            doctest_example(call, next, &functions)
        } else if let Some(input) = line.strip_prefix("Input:") {
            input_example(input, next, &last)
        } else if let Some((input, value)) = LEADS
            .iter()
            .find_map(|l| line.strip_prefix(l))
            .and_then(|rest| rest.split_once(" the output should be "))
        {
            call_with(&last, input).and_then(|call| example(call, value))
        } else {
            prose_example(line, &functions)
        };
        if let Some(e) = example {
            tried += 1;
            if usable(&e, &code, code_runs) && !found.contains(&e) {
                found.push(e);
            }
        }
        if found.len() == MAX_EXAMPLES || tried == MAX_CANDIDATES {
            break;
        }
    }
    (!found.is_empty()).then_some(Examples {
        code,
        functions,
        examples: found,
    })
}

/// The name a `def name(` line defines.
fn defined_function(line: &str) -> Option<String> {
    signature(line).map(|s| s.name)
}

/// A function of the question: its name and its parameters' names.
#[derive(Debug, Clone, PartialEq, Eq)]
struct Signature {
    name: String,
    parameters: Vec<String>,
}

/// The signature a one-line `def name(a, b: int = 1) -> T:` defines.
fn signature(line: &str) -> Option<Signature> {
    let rest = line.trim_start().strip_prefix("def ")?;
    let (name, rest) = rest.split_once('(')?;
    let name = name.trim();
    if !is_identifier(name) {
        return None;
    }
    let (inside, _) = rest.rsplit_once(')')?;
    let parameters = split_top_level(inside)
        .iter()
        .filter_map(|p| {
            let p = p.split([':', '=']).next().unwrap_or_default().trim();
            is_identifier(p).then(|| p.to_string())
        })
        .collect();
    Some(Signature {
        name: name.to_string(),
        parameters,
    })
}

/// Where each char of `text` stands: its bracket depth, or `None` inside a string.
fn depths(text: &str) -> Vec<Option<usize>> {
    let mut depth = 0usize;
    let mut quote: Option<char> = None;
    let mut escaped = false;
    text.chars()
        .map(|c| {
            if let Some(q) = quote {
                if escaped {
                    escaped = false;
                } else if c == '\\' {
                    escaped = true;
                } else if c == q {
                    quote = None;
                }
                return None;
            }
            match c {
                '\'' | '"' => {
                    quote = Some(c);
                    return None;
                }
                '(' | '[' | '{' => depth += 1,
                ')' | ']' | '}' => depth = depth.saturating_sub(1),
                _ => {}
            }
            Some(depth)
        })
        .collect()
}

/// `text` split at its commas outside brackets and strings.
fn split_top_level(text: &str) -> Vec<String> {
    let mut parts = vec![String::new()];
    for (c, d) in text.chars().zip(depths(text)) {
        match parts.last_mut() {
            Some(_) if c == ',' && d == Some(0) => parts.push(String::new()),
            Some(part) => part.push(c),
            None => {}
        }
    }
    parts
}

/// `text` up to a `#` comment outside strings.
fn without_comment(text: &str) -> String {
    text.chars()
        .zip(depths(text))
        .take_while(|&(c, d)| !(c == '#' && d.is_some()))
        .map(|(c, _)| c)
        .collect()
}

/// The length in chars of the call of one of `functions` that `text` starts with
/// (`f(...)`, brackets balanced, strings skipped).
fn calls_one_of(text: &str, functions: &[String]) -> Option<usize> {
    let name = functions.iter().find(|f| {
        text.strip_prefix(f.as_str())
            .is_some_and(|r| r.starts_with('('))
    })?;
    let open = name.chars().count();
    text.chars()
        .zip(depths(text))
        .enumerate()
        .skip(open)
        .find(|&(_, (c, d))| c == ')' && d == Some(0))
        .map(|(i, _)| i + 1)
}

/// Whether `text` calls one of `functions` somewhere (`round(f(x), 2)`).
fn mentions_one_of(text: &str, functions: &[String]) -> bool {
    functions.iter().any(|f| {
        text.match_indices(&format!("{f}(")).any(|(at, _)| {
            text.get(..at)
                .and_then(|before| before.chars().last())
                .is_none_or(|c| !(c.is_alphanumeric() || c == '_' || c == '.'))
        })
    })
}

fn example(call: String, value: &str) -> Option<Example> {
    let value = value.trim().trim_end_matches([',', '.']).trim_end();
    // A value that shows its working (`19 - 5 - 6 = 8`) counts by its last part.
    let value = match value.rsplit_once(" = ") {
        Some((_, last)) if !value.contains(['\'', '"']) => last.trim(),
        _ => value,
    };
    // `f(3) = f(2) + f(1)` states a recurrence, not an example.
    let recurrence = call
        .split_once('(')
        .is_some_and(|(name, _)| value.contains(&format!("{name}(")));
    (!value.is_empty() && !recurrence).then(|| Example {
        call,
        expected: value.to_string(),
    })
}

/// `>>> f(x)` with the value on the next line, or `>>> f(x) == value`.
fn doctest_example(call: &str, next: &[&str], functions: &[String]) -> Option<Example> {
    let call = without_comment(call);
    let call = call.trim();
    if let Some(e) = prose_example(call, functions) {
        return Some(e);
    }
    let expected = next.first().copied().unwrap_or_default();
    // What `print` shows is not the value's repr.
    if call.starts_with("print(")
        || !mentions_one_of(call, functions)
        || expected.is_empty()
        || expected.starts_with(">>>")
    {
        return None;
    }
    example(call.to_string(), expected)
}

/// `f(1, 2) ==> 3` and the like (see [`SEPARATORS`] and [`LEADS`]).
fn prose_example(line: &str, functions: &[String]) -> Option<Example> {
    let line = LEADS
        .iter()
        .find_map(|l| line.strip_prefix(l))
        .unwrap_or(line);
    let end = calls_one_of(line, functions)?;
    let call: String = line.chars().take(end).collect();
    let rest: String = line.chars().skip(end).collect();
    let rest = rest.trim_start();
    let rest = rest.strip_prefix('#').unwrap_or(rest).trim_start();
    let value = SEPARATORS.iter().find_map(|s| rest.strip_prefix(s))?;
    example(call, value)
}

/// `Input: x = 1, y = 2` (or `Input: 1`) with `Output: value` on one of the next three
/// lines.
fn input_example(input: &str, next: &[&str], function: &Signature) -> Option<Example> {
    let value = next
        .iter()
        .take(3)
        .find_map(|l| l.strip_prefix("Output:"))?;
    example(call_with(function, input)?, value)
}

/// The call of `function` with the arguments `text` names: `x = 1, y = [2]` (in the
/// order of its parameters; a part that is not `name = value` ends them), or one value.
fn call_with(function: &Signature, text: &str) -> Option<String> {
    let text = text.trim();
    if text.is_empty() {
        return None;
    }
    let named: Vec<(String, String)> = split_top_level(text)
        .iter()
        .map_while(|part| {
            let (name, value) = part.split_once('=')?;
            let name = name.trim();
            let value = value.trim();
            (is_identifier(name) && !value.is_empty() && !value.starts_with('='))
                .then(|| (name.to_string(), value.to_string()))
        })
        .collect();
    let args = if named.is_empty() {
        text.to_string()
    } else {
        let position = |name: &str| {
            function
                .parameters
                .iter()
                .position(|p| p == name)
                .unwrap_or(usize::MAX)
        };
        let mut named = named;
        named.sort_by_key(|(name, _)| position(name));
        named
            .into_iter()
            .map(|(_, value)| value)
            .collect::<Vec<_>>()
            .join(", ")
    };
    Some(format!("{}({args})", function.name))
}

fn assertion(e: &Example) -> String {
    format!("assert {} == {}", e.call, e.expected)
}

/// Whether `e` can check a program: the interpreter parses its assertion, and, after
/// the question's own code (its functions, with a docstring for a body, return `None`),
/// the assertion names nothing undefined (`f(a) == true` in a docstring is prose, not
/// Python). When the question's code does not run in the interpreter, only the parse
/// is checked.
fn usable(e: &Example, code: &str, code_runs: bool) -> bool {
    let script = if code_runs {
        format!("{code}\n\n{}\n", assertion(e))
    } else {
        assertion(e)
    };
    match pyeval::run_script(&script, &Limits::default()).failure {
        Some(f) => match f.error {
            PyError::Syntax(_) | PyError::Unsupported(_) | PyError::TooDeep(_) => false,
            PyError::Name(_) => !code_runs,
            _ => true,
        },
        None => true,
    }
}

/// What one program did on the examples.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Default)]
pub struct Check {
    pub passed: usize,
    /// Examples it fails as Python would fail them.
    pub failed: usize,
    /// Examples the interpreter cannot tell about.
    pub unknown: usize,
}

impl Check {
    /// Passes every example and was checked on at least one.
    pub fn passes(&self) -> bool {
        self.failed == 0 && self.unknown == 0 && self.passed > 0
    }
}

/// `reply`'s program, ready to run the examples after it: the reply's code when it
/// defines one of the question's functions (after the question's imports), else the
/// question's code followed by the reply's (a body). `None` when the reply holds no code.
fn program(reply: &str, examples: &Examples) -> Option<String> {
    let code = extract_code(reply)?;
    let defines = code
        .lines()
        .filter_map(defined_function)
        .any(|f| examples.functions.contains(&f));
    Some(if defines {
        let imports: Vec<&str> = examples
            .code
            .lines()
            .filter(|l| l.starts_with("import ") || l.starts_with("from "))
            .collect();
        format!("{}\n\n{code}", imports.join("\n"))
    } else {
        format!("{}\n{code}", examples.code)
    })
}

/// Whether an error is one Python would raise too (the program's fault, not the
/// subset's limits): besides the errors Python raises alike, a name that is neither
/// defined nor one of Python's builtins (a `NameError` in Python too), and source that
/// no Python reads (an unclosed bracket or string: a program cut short).
fn fails_in_python(error: &PyError) -> bool {
    match error {
        PyError::Assertion
        | PyError::ZeroDivision
        | PyError::Index
        | PyError::Value(_)
        | PyError::Raised(..) => true,
        PyError::Name(name) => !python_builtin(name),
        PyError::Syntax(message) => {
            message == "unclosed bracket" || message == "unterminated string"
        }
        _ => false,
    }
}

/// Python 3's builtin functions and constants.
#[rustfmt::skip]
const PYTHON_BUILTINS: &[&str] = &[
    "abs", "aiter", "all", "anext", "any", "ascii", "bin", "bool", "breakpoint",
    "bytearray", "bytes", "callable", "chr", "classmethod", "compile", "complex", "delattr",
    "dict", "dir", "divmod", "enumerate", "eval", "exec", "exit", "filter", "float",
    "format", "frozenset", "getattr", "globals", "hasattr", "hash", "help", "hex", "id",
    "input", "int", "isinstance", "issubclass", "iter", "len", "list", "locals", "map",
    "max", "memoryview", "min", "next", "object", "oct", "open", "ord", "pow", "print",
    "property", "quit", "range", "repr", "reversed", "round", "set", "setattr", "slice",
    "sorted", "staticmethod", "str", "sum", "super", "tuple", "type", "vars", "zip",
    "__import__", "__name__", "__file__", "__doc__", "True", "False", "None",
    "NotImplemented", "Ellipsis",
];

/// Whether `name` is one of Python 3's builtins (functions, constants, exceptions):
/// one the interpreter may lack where Python has it.
fn python_builtin(name: &str) -> bool {
    PYTHON_BUILTINS.contains(&name)
        || [
            "Error",
            "Exception",
            "Warning",
            "Exit",
            "Interrupt",
            "Iteration",
        ]
        .iter()
        .any(|end| name.ends_with(end))
}

/// How `program` fails example `e` (`None`: it passes).
fn run_example(program: &str, e: &Example) -> Option<pyeval::PyFailure> {
    pyeval::run_script(
        &format!("{program}\n\n{}\n", assertion(e)),
        &Limits::default(),
    )
    .failure
}

/// Runs `reply`'s program on the examples.
pub fn check(reply: &str, examples: &Examples) -> Check {
    let Some(program) = program(reply, examples) else {
        return Check {
            failed: examples.examples.len(),
            ..Check::default()
        };
    };
    let mut c = Check::default();
    for e in &examples.examples {
        match run_example(&program, e).map(|f| f.error) {
            None => c.passed += 1,
            Some(error) if fails_in_python(&error) => c.failed += 1,
            Some(_) => c.unknown += 1,
        }
    }
    c
}

/// The repair request for `reply`'s program: the first example it fails, what it gave
/// instead (its value, or the error it raised), and the request to correct it. `None`
/// when it fails none the interpreter can tell about.
pub fn feedback(reply: &str, examples: &Examples) -> Option<String> {
    let Some(program) = program(reply, examples) else {
        return Some(
            "Your reply has no Python code block. Write the complete function in one \
             ```python code block."
                .to_string(),
        );
    };
    examples.examples.iter().find_map(|e| {
        let failure = run_example(&program, e)?;
        if !fails_in_python(&failure.error) {
            return None;
        }
        let shown = pyeval::run_script(
            &format!("{program}\n\nprint(repr({}))\n", e.call),
            &Limits::default(),
        );
        let got = match (shown.failure, shown.printed.last()) {
            (None, Some(value)) => format!("it returns `{value}`"),
            (Some(f), _) if fails_in_python(&f.error) => format!("it fails: {}", f.error),
            _ => "it does not".to_string(),
        };
        Some(format!(
            "The function is wrong. `{}` should return `{}`, but {got}. Find the mistake \
             and write the complete corrected function in one ```python code block.",
            e.call, e.expected
        ))
    })
}

/// [`check`] off the async threads (the interpreter runs on a thread of its own).
async fn check_off_thread(reply: String, examples: Examples) -> Check {
    let failed = examples.examples.len();
    tokio::task::spawn_blocking(move || check(&reply, &examples))
        .await
        .unwrap_or(Check {
            failed,
            ..Check::default()
        })
}

/// [`feedback`] off the async threads.
async fn feedback_off_thread(reply: String, examples: Examples) -> Option<String> {
    tokio::task::spawn_blocking(move || feedback(&reply, &examples))
        .await
        .ok()
        .flatten()
}

#[async_trait]
impl Strategy for Doctest {
    fn slug(&self) -> &str {
        Self::SLUG
    }

    async fn run(&self, ctx: &Ctx, request: &StrategyRequest) -> Result<Answer, StrategyError> {
        let p = &self.params;
        // Reading the examples runs the interpreter (to drop unparsable ones): off the
        // async threads, while the greedy program is written.
        let query = request.query()?.to_string();
        let reading = tokio::task::spawn_blocking(move || examples(&query));
        let greedy = one(
            ctx,
            request,
            "greedy program",
            request.messages.clone(),
            &temp(0.0),
        )
        .await?;
        ctx.offer(greedy.clone());
        let Some(found) = reading.await.ok().flatten() else {
            tracing::info!(approach = Self::SLUG, "no examples to check: greedy");
            return Ok(Answer::one(greedy));
        };
        let first = check_off_thread(greedy.clone(), found.clone()).await;
        tracing::info!(approach = Self::SLUG, ?first, "greedy program checked");
        let mut best = (greedy.clone(), first);
        let mut candidates = vec![greedy];
        if first.failed == 0 {
            return Ok(Answer::one(best.0).with_candidates(candidates));
        }
        let step = temp(p.temperature);
        let mut drawn = 0;
        while drawn < p.k {
            let n = p.batch.min(p.k - drawn);
            let mut messages = request.messages.clone();
            if p.feedback {
                if let Some(repair) = feedback_off_thread(best.0.clone(), found.clone()).await {
                    messages.push(Message::assistant(best.0.clone()));
                    messages.push(Message::user(repair));
                }
            }
            let mut chat = request.chat(messages, &step).with_n(n);
            // A batch at offset d takes the seeds of samples d.. of one k-sample request.
            chat.sampling.seed = chat.sampling.seed.map(|s| s.wrapping_add(drawn));
            let texts = ctx.call("sampled programs", chat).await?.texts();
            drawn += n;
            if texts.is_empty() {
                break;
            }
            for text in texts {
                let c = check_off_thread(text.clone(), found.clone()).await;
                tracing::info!(approach = Self::SLUG, check = ?c, "sampled program checked");
                candidates.push(text.clone());
                if c.passed > best.1.passed {
                    ctx.offer(text.clone());
                    best = (text.clone(), c);
                }
                if c.passes() {
                    return Ok(Answer::one(text).with_candidates(candidates));
                }
            }
        }
        Ok(Answer::one(best.0).with_candidates(candidates))
    }
}

#[cfg(test)]
mod tests {
    use std::sync::Arc;

    use super::*;
    use crate::mock::MockBackend;
    use crate::strategy::{Budget, run};
    use crate::types::Sampling;

    const QUERY: &str = "Complete the function.\n```python\nfrom typing import List\n\n\ndef add(a: int, b: int) -> int:\n    \"\"\"The sum of a and b.\n    >>> add(2, 3)\n    5\n    >>> add(-1, 1)\n    0\n    \"\"\"\n```";

    #[test]
    fn examples_are_read_from_doctests_and_prose() {
        let found = examples(QUERY).unwrap();
        assert_eq!(found.functions, vec!["add"]);
        assert_eq!(
            found.examples,
            vec![
                Example {
                    call: "add(2, 3)".into(),
                    expected: "5".into()
                },
                Example {
                    call: "add(-1, 1)".into(),
                    expected: "0".into()
                }
            ]
        );
        let prose = "def f(s):\n    \"\"\"Examples:\n    f(\"a)b\") ==> [1, 2],\n    f('x') \u{279e} 'y'\n    f(3) = 4\n    f(1, 2) returns True\n    f(1) and more\n    g(1) ==> 2\n    \"\"\"\n";
        let found = examples(prose).unwrap();
        let pairs: Vec<(&str, &str)> = found
            .examples
            .iter()
            .map(|e| (e.call.as_str(), e.expected.as_str()))
            .collect();
        assert_eq!(
            pairs,
            vec![
                ("f(\"a)b\")", "[1, 2]"),
                ("f('x')", "'y'"),
                ("f(3)", "4"),
                ("f(1, 2)", "True")
            ]
        );
        // The work is bounded: past MAX_CANDIDATES unparsable lines, nothing more is
        // read; a question longer than the interpreter runs is not read at all.
        let mut hostile = String::from("def f(x):\n");
        for _ in 0..MAX_CANDIDATES {
            hostile.push_str("    f(1) ==> (\n");
        }
        hostile.push_str("    f(1) ==> 2\n");
        assert_eq!(examples(&hostile), None);
        let long = format!("def f(x):\n    f(1) ==> 2\n#{}", "x".repeat(20_000));
        assert_eq!(examples(&long), None);
        // No function, or no example: nothing to check.
        assert_eq!(examples("What is 2 + 3?"), None);
        assert_eq!(examples("```python\ndef f(x):\n    pass\n```"), None);
        // An example the interpreter cannot parse is dropped.
        assert_eq!(
            examples("def f(x):\n    \"\"\"f(1) ==> 2 (since 1 + 1 is two)\n    \"\"\"")
                .map(|e| e.examples),
            None
        );
    }

    #[test]
    fn examples_are_read_in_the_other_forms_questions_use() {
        let pairs = |query: &str| -> Vec<(String, String)> {
            examples(query)
                .map(|e| e.examples)
                .unwrap_or_default()
                .into_iter()
                .map(|e| (e.call, e.expected))
                .collect()
        };
        let doctests = "def f(x, y):\n    \"\"\"\n    >>> f(1, 2) == 3\n    >>> round(f(2, 0.5), 1)  # a comment\n    2.5\n    >>> print(f(1, 1))\n    2\n    >>> f(3, 3)\n    >>> f(4, 4)\n    8\n    \"\"\"\n";
        assert_eq!(
            pairs(doctests),
            [
                ("f(1, 2)", "3"),
                ("round(f(2, 0.5), 1)", "2.5"),
                ("f(4, 4)", "8")
            ]
            .map(|(c, v)| (c.to_string(), v.to_string()))
        );
        let prose = "def f(x, y):\n    \"\"\"\n    f(1, 2) # returns \"3\"\n    assert f(2, 2) => 4\n    for f(3, 3) == 6\n    f(4, 4) should return True.\n    f(5, 5) -> 5 + 5 = 10\n    f(6, 6) = f(5, 5) + 2\n    \"\"\"\n";
        assert_eq!(
            pairs(prose),
            [
                ("f(1, 2)", "\"3\""),
                ("f(2, 2)", "4"),
                ("f(3, 3)", "6"),
                ("f(4, 4)", "True"),
                ("f(5, 5)", "10")
            ]
            .map(|(c, v)| (c.to_string(), v.to_string()))
        );
        // Inputs by name, in the order of the last function's parameters.
        let inputs = "def helper(a):\n    pass\n\ndef g(x: int, y: list = [1, 2]) -> int:\n    \"\"\"\n    Example 1:\n        Input: y = [3], x = 2\n        Output: 5\n    Example 2:\n        Input: 7\n        Explanation: one line\n        Output: (7, 0)\n    For x = 1, y = [0] the output should be 1\n    For x = 4, the sum is 1 the output should be \"4\".\n    \"\"\"\n";
        assert_eq!(
            pairs(inputs),
            [
                ("g(2, [3])", "5"),
                ("g(7)", "(7, 0)"),
                ("g(1, [0])", "1"),
                ("g(4)", "\"4\"")
            ]
            .map(|(c, v)| (c.to_string(), v.to_string()))
        );
    }

    #[test]
    fn programs_are_checked_whole_or_as_a_body() {
        let found = examples(QUERY).unwrap();
        let whole = "```python\ndef add(a: int, b: int) -> int:\n    return a + b\n```";
        assert_eq!(
            check(whole, &found),
            Check {
                passed: 2,
                failed: 0,
                unknown: 0
            }
        );
        assert!(check("```python\n    return a + b\n```", &found).passes());
        let wrong = check("```python\ndef add(a, b):\n    return a * b\n```", &found);
        assert_eq!((wrong.passed, wrong.failed), (0, 2));
        let half = check(
            "```python\ndef add(a, b):\n    return 5 if a == 2 else 1\n```",
            &found,
        );
        assert_eq!((half.passed, half.failed), (1, 1));
        // Beyond the subset: cannot tell, not a failure.
        let unknown = check(
            "```python\ndef add(a, b):\n    return a + b + len(memoryview(b''))\n```",
            &found,
        );
        assert_eq!((unknown.failed, unknown.unknown), (0, 2));
        let raises = check(
            "```python\ndef add(a, b):\n    raise NotImplementedError\n```",
            &found,
        );
        assert_eq!(raises.failed, 2);
        assert_eq!(check("no code here", &found).failed, 2);
        // A name Python does not know either, and a program cut short, fail as in
        // Python (a builtin of Python's the subset lacks cannot tell, above).
        let undefined = check("```python\ndef add(a, b):\n    return true\n```", &found);
        assert_eq!(undefined.failed, 2);
        let cut = check(
            "```python\ndef add(a, b):\n    return sum([a, b\n```",
            &found,
        );
        assert_eq!(cut.failed, 2);
    }

    const RIGHT: &str = "```python\ndef add(a, b):\n    return a + b\n```";
    const WRONG: &str = "```python\ndef add(a, b):\n    return a - b\n```";
    const HALF: &str = "```python\ndef add(a, b):\n    return a + b if a > 0 else 7\n```";

    async fn doctest(
        replies: Vec<&'static str>,
        params: Params,
    ) -> (String, Vec<(u32, Option<f32>, Option<u32>)>) {
        let mock = Arc::new(MockBackend::scripted(replies));
        let mut req = StrategyRequest::user(QUERY);
        req.sampling = Sampling::default().with_seed(10);
        let out = run(
            &Doctest::new(params).unwrap(),
            mock.clone(),
            &req,
            Budget::default(),
        )
        .await
        .unwrap();
        let sent = mock
            .requests()
            .iter()
            .map(|r| (r.n, r.sampling.temperature, r.sampling.seed))
            .collect();
        (out.answer, sent)
    }

    #[tokio::test]
    async fn a_greedy_program_that_passes_is_the_answer_at_one_call() {
        let (answer, sent) = doctest(vec![RIGHT, WRONG], Params::default()).await;
        assert_eq!(answer, RIGHT);
        assert_eq!(sent, vec![(1, Some(0.0), Some(10))]);
    }

    #[tokio::test]
    async fn a_failing_greedy_program_samples_until_one_passes() {
        let (answer, sent) =
            doctest(vec![WRONG, WRONG, HALF, RIGHT, WRONG], Params::default()).await;
        assert_eq!(answer, RIGHT);
        assert_eq!(
            sent,
            vec![
                (1, Some(0.0), Some(10)),
                (2, Some(0.8), Some(10)),
                (2, Some(0.8), Some(12))
            ]
        );
    }

    #[tokio::test]
    async fn when_none_passes_the_program_that_passed_most_wins() {
        let params = Params {
            k: 2,
            ..Params::default()
        };
        let (answer, _) = doctest(vec![WRONG, WRONG, HALF], params.clone()).await;
        assert_eq!(answer, HALF);
        // Ties go to the greedy program.
        let (answer, sent) = doctest(vec![HALF, WRONG, HALF.trim_end_matches('`')], params).await;
        assert_eq!(answer, HALF);
        assert_eq!(sent.len(), 2);
    }

    #[test]
    fn feedback_names_the_failing_example_and_what_the_program_gave() {
        let found = examples(QUERY).unwrap();
        let text = feedback(WRONG, &found).unwrap();
        assert!(
            text.contains("`add(2, 3)` should return `5`, but it returns `-1`"),
            "{text}"
        );
        let raises = "```python\ndef add(a, b):\n    raise ValueError('no')\n```";
        let text = feedback(raises, &found).unwrap();
        assert!(text.contains("but it fails: value error: no"), "{text}");
        let strings = "```python\ndef add(a, b):\n    return str(a + b)\n```";
        let text = feedback(strings, &found).unwrap();
        assert!(text.contains("but it returns `'5'`"), "{text}");
        assert!(
            feedback("no code", &found)
                .unwrap()
                .contains("no Python code")
        );
        // Nothing to repair: it passes, or the interpreter cannot tell.
        assert_eq!(feedback(RIGHT, &found), None);
        let unknown = "```python\ndef add(a, b):\n    return a + b + len(memoryview(b''))\n```";
        assert_eq!(feedback(unknown, &found), None);
    }

    #[tokio::test]
    async fn with_feedback_the_samples_repair_the_best_program() {
        let mock = Arc::new(MockBackend::scripted([WRONG, HALF, WRONG, RIGHT, WRONG]));
        let params = Params {
            feedback: true,
            ..Params::default()
        };
        let out = run(
            &Doctest::new(params).unwrap(),
            mock.clone(),
            &StrategyRequest::user(QUERY),
            Budget::default(),
        )
        .await
        .unwrap();
        assert_eq!(out.answer, RIGHT);
        let sent = mock.requests();
        assert_eq!(sent.len(), 3);
        assert_eq!(sent[0].messages.len(), 1);
        // The first repair shows the greedy program and its first failing example ...
        assert_eq!(sent[1].messages[1], Message::assistant(WRONG));
        assert!(
            sent[1].messages[2]
                .content
                .contains("`add(2, 3)` should return `5`")
        );
        // ... the next one the sample that passed more (HALF fails only add(-1, 1)).
        assert_eq!(sent[2].messages[1], Message::assistant(HALF));
        assert!(
            sent[2].messages[2]
                .content
                .contains("`add(-1, 1)` should return `0`")
        );
    }

    #[tokio::test]
    async fn without_examples_it_is_greedy_decoding() {
        let mock = Arc::new(MockBackend::scripted(["42", "43"]));
        let out = run(
            &Doctest::new(Params::default()).unwrap(),
            mock.clone(),
            &StrategyRequest::user("What is 6 x 7?"),
            Budget::default(),
        )
        .await
        .unwrap();
        assert_eq!(out.answer, "42");
        assert_eq!(mock.requests().len(), 1);
        assert!(
            Doctest::new(Params {
                batch: 0,
                ..Params::default()
            })
            .is_err()
        );
    }
}
