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
}

impl Default for Params {
    fn default() -> Self {
        Self {
            k: 4,
            batch: 2,
            temperature: 0.8,
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

/// The code and examples of `query`: the first fenced block that defines a function
/// (else the query from its first `def`), and in it, `>>> f(...)` lines with the value
/// on the next line, or lines `f(...) ==> value` (also `=>`, `->`, `➞`, `==`, `=`,
/// `returns`, `should return`), where `f` is a function the code defines. An example
/// whose assertion the interpreter cannot parse is dropped.
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
    if functions.is_empty() {
        return None;
    }
    let lines: Vec<&str> = code.lines().map(str::trim).collect();
    let mut found = Vec::new();
    let mut tried = 0;
    for (i, line) in lines.iter().enumerate() {
        let example = match line.strip_prefix(">>>") {
            Some(call) => {
                let call = call.trim();
                let expected = lines.get(i + 1).copied().unwrap_or_default();
                (calls_one_of(call, &functions).is_some()
                    && !expected.is_empty()
                    && !expected.starts_with(">>>"))
                .then(|| Example {
                    call: call.to_string(),
                    expected: expected.to_string(),
                })
            }
            None => prose_example(line, &functions),
        };
        if let Some(e) = example {
            tried += 1;
            if parses(&e) && !found.contains(&e) {
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
    let rest = line.trim_start().strip_prefix("def ")?;
    let (name, _) = rest.split_once('(')?;
    let name = name.trim();
    is_identifier(name).then(|| name.to_string())
}

/// The length in chars of the call of one of `functions` that `text` starts with
/// (`f(...)`, brackets balanced, strings skipped).
fn calls_one_of(text: &str, functions: &[String]) -> Option<usize> {
    let name = functions.iter().find(|f| {
        text.strip_prefix(f.as_str())
            .is_some_and(|r| r.starts_with('('))
    })?;
    let mut depth = 0usize;
    let mut quote: Option<char> = None;
    let mut escaped = false;
    for (i, c) in text.chars().enumerate().skip(name.chars().count()) {
        if let Some(q) = quote {
            if escaped {
                escaped = false;
            } else if c == '\\' {
                escaped = true;
            } else if c == q {
                quote = None;
            }
            continue;
        }
        match c {
            '\'' | '"' => quote = Some(c),
            '(' | '[' | '{' => depth += 1,
            ')' | ']' | '}' => {
                depth = depth.checked_sub(1)?;
                if depth == 0 {
                    return Some(i + 1);
                }
            }
            _ => {}
        }
    }
    None
}

/// `f(1, 2) ==> 3` and the like (see [`SEPARATORS`]).
fn prose_example(line: &str, functions: &[String]) -> Option<Example> {
    let end = calls_one_of(line, functions)?;
    let call: String = line.chars().take(end).collect();
    let rest: String = line.chars().skip(end).collect();
    let rest = rest.trim_start();
    let value = SEPARATORS
        .iter()
        .find_map(|s| rest.strip_prefix(s))?
        .trim()
        .trim_end_matches(',');
    (!value.is_empty()).then(|| Example {
        call,
        expected: value.to_string(),
    })
}

fn assertion(e: &Example) -> String {
    format!("assert {} == {}", e.call, e.expected)
}

/// Whether the interpreter parses `e`'s assertion (run alone, it can only fail for
/// want of the function).
fn parses(e: &Example) -> bool {
    let run = pyeval::run_script(&assertion(e), &Limits::default());
    !matches!(
        run.failure.map(|f| f.error),
        Some(PyError::Syntax(_) | PyError::Unsupported(_) | PyError::TooDeep(_))
    )
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

/// Runs `reply`'s program on the examples: the reply's code when it defines one of the
/// question's functions (after the question's imports), else the question's code
/// followed by the reply's (a body).
pub fn check(reply: &str, examples: &Examples) -> Check {
    let Some(code) = extract_code(reply) else {
        return Check {
            failed: examples.examples.len(),
            ..Check::default()
        };
    };
    let defines = code
        .lines()
        .filter_map(defined_function)
        .any(|f| examples.functions.contains(&f));
    let program = if defines {
        let imports: Vec<&str> = examples
            .code
            .lines()
            .filter(|l| l.starts_with("import ") || l.starts_with("from "))
            .collect();
        format!("{}\n\n{code}", imports.join("\n"))
    } else {
        format!("{}\n{code}", examples.code)
    };
    let mut c = Check::default();
    for e in &examples.examples {
        let run = pyeval::run_script(
            &format!("{program}\n\n{}\n", assertion(e)),
            &Limits::default(),
        );
        match run.failure.map(|f| f.error) {
            None => c.passed += 1,
            Some(
                PyError::Assertion
                | PyError::ZeroDivision
                | PyError::Index
                | PyError::Value(_)
                | PyError::Raised(..),
            ) => c.failed += 1,
            Some(_) => c.unknown += 1,
        }
    }
    c
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
            let mut chat = request.chat(request.messages.clone(), &step).with_n(n);
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
            "```python\ndef add(a, b):\n    return frobnicate(a, b)\n```",
            &found,
        );
        assert_eq!((unknown.failed, unknown.unknown), (0, 2));
        let raises = check(
            "```python\ndef add(a, b):\n    raise NotImplementedError\n```",
            &found,
        );
        assert_eq!(raises.failed, 2);
        assert_eq!(check("no code here", &found).failed, 2);
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
