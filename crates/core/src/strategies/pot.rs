//! `pot`: program of thought. The model writes a short Python function `solution()`
//! that computes the answer; the reply's code is run by [`crate::pyeval`], this crate's
//! own bounded interpreter of a small Python subset (no real Python, nothing executed
//! outside it), so the arithmetic is exact whatever the model's own arithmetic is.
//!
//! `k` programs are drawn in one request (`k = 1`: greedy at `temperature = 0`), each is
//! run, and the numeric results are voted on ([`crate::extract::vote`]). The answer
//! shows the winning program and states its result ("The answer is 18."). When no
//! program gives a number, the vote falls back to the numbers extracted from the
//! replies as `none` would read them, and the answer is the winning reply as it is
//! (the candidates and the log say so). With `k > 1` every program is recorded as a
//! [`Sample`] (its result as the answer, its confidence where the backend reports
//! log-probabilities), so `optillm eval --rescore` can score other votes offline.

use async_trait::async_trait;
use serde::{Deserialize, Serialize};

use super::Approach;
use super::util::{temp, with_confidences};
use crate::extract::{self, AnswerKind, Vote};
use crate::pyeval::{self, Limits, Number, PyFailure};
use crate::samples::Sample;
use crate::spec::SpecError;
use crate::strategy::{Answer, Ctx, Strategy, StrategyError, StrategyRequest};
use crate::types::{ChatRequest, Message};

pub const SLUG: &str = "pot";

/// The system prompt: what to write, and one short worked example.
pub const SYSTEM: &str = "You solve math word problems by writing Python code.
Write a function `solution()` that computes the answer step by step: one variable per \
quantity of the problem, named after what it is, then the arithmetic, and `return` the \
final number. Use plain Python arithmetic only (the `math` module is allowed; no input, \
no files, no other imports). Reply with one ```python code block.

Example:
Question: A baker makes 3 trays of 12 muffins and sells 20 of them. Each remaining muffin \
costs $2. How much money does he get for the remaining muffins?
```python
def solution():
    trays = 3
    muffins_per_tray = 12
    muffins_made = trays * muffins_per_tray
    muffins_sold = 20
    muffins_left = muffins_made - muffins_sold
    price_per_muffin = 2
    money = muffins_left * price_per_muffin
    return money
```";

/// The user message around the query.
pub const USER: &str = "Question: {query}

Write the Python function `solution()` that returns the final number, in one ```python code block.";

/// The answer the example in [`SYSTEM`] computes.
#[cfg(test)]
const EXAMPLE_ANSWER: &str = "32";

/// The parameters of `pot`; a field a spec leaves out takes its default here
/// (`optillm approaches` lists them).
#[derive(Debug, Clone, Serialize, Deserialize)]
#[serde(default, deny_unknown_fields)]
pub struct Params {
    /// Programs drawn, in one request with `n = k`.
    pub k: u32,
    /// Sampling temperature of the programs (0: greedy, for `k = 1`).
    pub temperature: f32,
}

impl Default for Params {
    fn default() -> Self {
        Self {
            k: 1,
            temperature: 0.0,
        }
    }
}

/// The `pot` strategy (the module documentation describes it): built from typed
/// [`Params`] with `new`, or by name through [`crate::strategies::build`].
#[derive(Debug, Clone)]
pub struct ProgramOfThought {
    params: Params,
}

impl ProgramOfThought {
    pub fn new(params: Params) -> Result<Self, SpecError> {
        let bad = |message: &str| SpecError::BadParameter {
            approach: SLUG.to_string(),
            message: message.to_string(),
        };
        if params.k == 0 {
            return Err(bad("k must be at least 1"));
        }
        if !params.temperature.is_finite() || params.temperature < 0.0 {
            return Err(bad("temperature must be a number >= 0"));
        }
        Ok(Self { params })
    }
}

/// The request for `k` programs at `temperature` (greedy at 0), asking for
/// log-probabilities where `confidences` and the backend has them.
pub(crate) fn program_chat(
    ctx: &Ctx,
    request: &StrategyRequest,
    (k, temperature): (u32, f32),
    confidences: bool,
) -> Result<ChatRequest, StrategyError> {
    let query = request.query()?;
    let chat = request
        .chat(messages(request.system(), query), &temp(temperature))
        .with_n(k);
    Ok(match confidences {
        true => with_confidences(ctx, chat),
        false => chat,
    })
}

/// The messages of the request: our system prompt (then the caller's, if any) and
/// the query in [`USER`].
pub(crate) fn messages(caller_system: Option<&str>, query: &str) -> Vec<Message> {
    let system = match caller_system.filter(|s| !s.trim().is_empty()) {
        Some(s) => format!("{SYSTEM}\n\n{s}"),
        None => SYSTEM.to_string(),
    };
    vec![
        Message::system(system),
        Message::user(USER.replace("{query}", query.trim())),
    ]
}

/// The program in a reply: the first fenced block that defines `solution()`, else the
/// last non-empty fenced block (an unclosed fence runs to the end of the reply), else,
/// without fences, the code-looking lines from the first `def` / `import` on.
pub fn code_of(reply: &str) -> Option<String> {
    let blocks = crate::extract::fenced_blocks(reply);
    if let Some(b) = blocks.iter().find(|b| b.contains("def solution")) {
        return Some(b.clone());
    }
    if let Some(b) = blocks.iter().rev().find(|b| !b.trim().is_empty()) {
        return Some(b.clone());
    }
    // No fences: from the first line that starts a program, while lines look like code.
    let lines: Vec<&str> = reply.lines().collect();
    let start = lines.iter().position(|l| {
        let t = l.trim_start();
        t.starts_with("def ") || t.starts_with("import ") || t.starts_with("from math")
    })?;
    let code: Vec<&str> = lines
        .iter()
        .skip(start)
        .take_while(|l| looks_like_code(l))
        .copied()
        .collect();
    Some(code.join("\n"))
}

fn looks_like_code(line: &str) -> bool {
    if line.trim().is_empty() || line.starts_with([' ', '\t']) {
        return true;
    }
    let t = line.trim();
    [
        "def ", "import ", "from ", "print(", "#", "return ", "if ", "for ", "while ",
    ]
    .iter()
    .any(|p| t.starts_with(p))
        || t.split_once('=').is_some_and(|(lhs, _)| {
            let lhs = lhs.trim().trim_end_matches(['+', '-', '*', '/']);
            !lhs.is_empty()
                && lhs
                    .chars()
                    .all(|c| c.is_alphanumeric() || c == '_' || c == ',' || c == ' ')
        })
}

/// The answer text of a program's result: the program, then the result stated so
/// that the answer extraction reads it ("The answer is 18."). Markers inside the code
/// that the extraction prefers (`####`, `\boxed`) are defused.
pub fn answer_text(code: &str, result: &str) -> String {
    let shown = code
        .replace("####", "#")
        .replace("\\boxed", "boxed")
        .replace("\\fbox", "fbox");
    format!(
        "```python\n{}\n```\n\nThe program computes {result}.\nThe answer is {result}.",
        shown.trim_end()
    )
}

/// What became of one reply.
enum Run {
    NoCode,
    Failed(PyFailure),
    Result(String, Number),
}

fn run_programs(codes: Vec<Option<String>>) -> Vec<Run> {
    let limits = Limits::default();
    codes
        .into_iter()
        .map(|code| match code {
            None => Run::NoCode,
            Some(code) => match pyeval::run_program(&code, &limits) {
                Ok(r) => Run::Result(code, r.value),
                Err(e) => Run::Failed(e),
            },
        })
        .collect()
}

impl Approach for ProgramOfThought {
    const SLUG: &'static str = SLUG;
    const DESCRIPTION: &'static str = "Program of thought: k Python programs (greedy for k=1) run by a bounded \
         interpreter of a Python subset, vote on their results; replies' numbers when none runs";
    type Params = Params;

    fn from_params(params: Params) -> Result<Self, SpecError> {
        Self::new(params)
    }
}

#[async_trait]
impl Strategy for ProgramOfThought {
    fn slug(&self) -> &str {
        SLUG
    }

    async fn run(&self, ctx: &Ctx, request: &StrategyRequest) -> Result<Answer, StrategyError> {
        let k = self.params.k;
        // A vote of k > 1 programs records its samples, with their confidences where
        // the backend reports log-probabilities, so other rules can be scored offline.
        let chat = program_chat(ctx, request, (k, self.params.temperature), k > 1)?;
        let completion = ctx.call("program", chat).await?;
        let texts = completion.texts();
        let (answer, results) = judge(&texts).await;
        if k > 1 {
            ctx.record_samples(
                completion
                    .choices
                    .iter()
                    .zip(&results)
                    .map(|(c, r)| Sample {
                        answer: r.clone(),
                        ..Sample::from_choice(c, None)
                    }),
            );
        }
        if let Some(text) = answer.choices.first() {
            ctx.offer(text.clone());
        }
        Ok(answer)
    }
}

/// What replies come to: their programs run and vote on their results (the answer text
/// shows the winning program and its result); where no program gives a number, the
/// replies' own numbers vote. Also each reply's result.
pub(crate) async fn judge(texts: &[String]) -> (Answer, Vec<Option<String>>) {
    let codes: Vec<Option<String>> = texts.iter().map(|t| code_of(t)).collect();
    let n = codes.len();
    let runs = match tokio::task::spawn_blocking(move || run_programs(codes)).await {
        Ok(runs) => runs,
        Err(e) => {
            tracing::warn!(approach = SLUG, error = %e, "the programs could not be run");
            (0..n).map(|_| Run::NoCode).collect()
        }
    };
    let results: Vec<Option<String>> = runs
        .iter()
        .map(|r| match r {
            Run::Result(_, v) => Some(v.text()),
            _ => None,
        })
        .collect();
    let ran = results.iter().filter(|r| r.is_some()).count();
    let mut labels: Vec<String> = runs
        .iter()
        .map(|r| match r {
            Run::NoCode => "[no program]".to_string(),
            Run::Failed(e) => format!("[program failed: {e}]"),
            Run::Result(_, v) => format!("[program: {}]", v.text()),
        })
        .collect();
    let (answer, vote): (String, Option<Vote>) = match extract::vote(&results) {
        Some(v) => {
            let winner = v.chosen().unwrap_or(0);
            let code = match runs.get(winner) {
                Some(Run::Result(code, _)) => code.as_str(),
                _ => "",
            };
            tracing::info!(
                approach = SLUG,
                ran,
                of = n,
                winner = %v.winner,
                distribution = %v.summary(),
                "programs"
            );
            (answer_text(code, &v.winner), Some(v))
        }
        None => {
            // No program gave a number: read the replies as `none` would.
            let read: Vec<Option<String>> = texts
                .iter()
                .map(|t| extract::extract(t, AnswerKind::Number))
                .collect();
            let v = extract::vote(&read);
            let pick = v.as_ref().and_then(Vote::chosen).unwrap_or(0);
            tracing::info!(
                approach = SLUG,
                of = n,
                fallback = v
                    .as_ref()
                    .map_or_else(|| "none".to_string(), |v| v.summary()),
                "no program ran; answer extracted from the replies"
            );
            for (label, r) in labels.iter_mut().zip(&read) {
                label.push_str(&format!(
                    " [fallback: the reply's number, {}]",
                    r.as_deref().unwrap_or("none")
                ));
            }
            (texts.get(pick).cloned().unwrap_or_default(), v)
        }
    };
    let candidates = labels
        .into_iter()
        .zip(texts)
        .map(|(l, t)| format!("{l} {t}"))
        .collect();
    let answer = Answer {
        choices: vec![answer],
        candidates,
        vote,
    };
    (answer, results)
}

#[cfg(test)]
mod tests {
    use std::sync::Arc;

    use super::*;
    use crate::mock::MockBackend;
    use crate::strategy::{Budget, run};
    use crate::types::Role;

    const GOOD: &str = "Here is the program:\n```python\ndef solution():\n    apples = 48\n    more = apples / 2\n    return apples + more\n```\nThe answer is 71.";

    #[test]
    fn the_prompt_example_runs_to_its_answer() {
        let code = code_of(SYSTEM).unwrap();
        assert!(code.starts_with("def solution():"));
        let r = pyeval::run_program(&code, &Limits::default()).unwrap();
        assert_eq!(r.value.text(), EXAMPLE_ANSWER);
        let m = messages(None, " Q? ");
        assert_eq!(m.len(), 2);
        assert_eq!(m[0].role, Role::System);
        assert!(m[1].content.starts_with("Question: Q?\n"));
        assert!(m[1].content.contains("`solution()`"));
        let m = messages(Some("Be brief."), "Q?");
        assert!(m[0].content.starts_with(SYSTEM) && m[0].content.ends_with("Be brief."));
    }

    #[test]
    fn code_is_found_in_replies() {
        assert_eq!(
            code_of(GOOD).unwrap(),
            "def solution():\n    apples = 48\n    more = apples / 2\n    return apples + more"
        );
        // The block defining solution() wins over an earlier one; an unclosed fence
        // (a reply cut by max_tokens) runs to the end.
        let two = "```\npip install x\n```\n```py\ndef solution():\n    return 3\n```";
        assert_eq!(code_of(two).unwrap(), "def solution():\n    return 3");
        let cut = "```python\ndef solution():\n    return 4";
        assert_eq!(code_of(cut).unwrap(), "def solution():\n    return 4");
        // Without fences: the code lines, not the prose after them.
        let bare = "Sure.\ndef solution():\n    x = 2\n\n    return x * 5\nprint(solution())\nThis prints 10.";
        assert_eq!(
            code_of(bare).unwrap(),
            "def solution():\n    x = 2\n\n    return x * 5\nprint(solution())"
        );
        assert_eq!(code_of("The answer is 5."), None);
    }

    #[test]
    fn the_answer_text_reads_as_the_result() {
        let code = "def solution():\n    answer = 3 * 4  # answer is 12\n    #### 99\n    return answer + 1.5";
        let text = answer_text(code, "13.5");
        assert_eq!(
            extract::extract(&text, AnswerKind::Number).as_deref(),
            Some("13.5")
        );
        assert!(text.contains("answer = 3 * 4"));
        assert!(!text.contains("####"));
        let boxed = answer_text("x = '\\boxed{7}'", "2");
        assert_eq!(
            extract::extract(&boxed, AnswerKind::Number).as_deref(),
            Some("2")
        );
    }

    #[tokio::test]
    async fn greedy_program_by_default() {
        let mock = Arc::new(MockBackend::scripted([GOOD]));
        let pot = ProgramOfThought::new(Params::default()).unwrap();
        let out = run(
            &pot,
            mock.clone(),
            &StrategyRequest::user("Natalia sold 48 clips ... How many?"),
            Budget::default(),
        )
        .await
        .unwrap();
        let sent = mock.requests();
        assert_eq!(sent.len(), 1);
        assert_eq!(sent[0].n, 1);
        assert_eq!(sent[0].sampling.temperature, Some(0.0));
        assert_eq!(sent[0].messages[0].content, SYSTEM);
        assert!(
            sent[0].messages[1]
                .content
                .contains("Natalia sold 48 clips")
        );
        // The program's 72, not the model's own "71".
        assert!(out.answer.ends_with("The answer is 72."), "{}", out.answer);
        assert_eq!(
            extract::extract(&out.answer, AnswerKind::Number).as_deref(),
            Some("72")
        );
        let vote = out.vote.unwrap();
        assert_eq!((vote.winner.as_str(), vote.count, vote.total), ("72", 1, 1));
        assert!(out.candidates[0].starts_with("[program: 72] Here is"));
        assert_eq!(out.usage.calls, 1);
        // One greedy program is not a vote of samples: nothing recorded, no logprobs asked.
        assert!(out.samples.is_empty());
        assert_eq!(sent[0].logprobs, None);
    }

    #[tokio::test]
    async fn k_programs_in_one_request_and_a_vote_on_their_results() {
        let replies = [
            "```python\ndef solution():\n    return 6 * 3\n```",
            "```python\ndef solution():\n    return 20 - 3\n```",
            "```python\ndef solution():\n    return 1 / 0\n```",
            "```python\ndef solution():\n    x = 9\n    return x * 2.0\n```",
            "I think it is 17.",
        ];
        let mock = Arc::new(MockBackend::scripted(replies));
        let spec = crate::spec::parse("pot(k=5,temperature=0.7)").unwrap();
        let pot = crate::strategies::build_spec(&spec).unwrap();
        let out = run(
            pot.as_ref(),
            mock.clone(),
            &StrategyRequest::user("q"),
            Budget::default(),
        )
        .await
        .unwrap();
        let sent = mock.requests();
        assert_eq!(sent.len(), 1);
        assert_eq!(sent[0].n, 5);
        assert_eq!(sent[0].sampling.temperature, Some(0.7));
        // 18 (twice: 18 and 18.0) beats 17; the failed and the code-less replies do not vote.
        let vote = out.vote.unwrap();
        assert_eq!(vote.summary(), "18: 2, 17: 1, none: 2");
        assert!(out.answer.contains("return 6 * 3"));
        assert!(out.answer.ends_with("The answer is 18."));
        assert!(out.candidates[2].starts_with("[program failed: line 2: division by zero]"));
        assert!(out.candidates[4].starts_with("[no program]"));
        // Every program is recorded with its result, for offline rescoring.
        let answers: Vec<Option<&str>> = out.samples.iter().map(|s| s.answer.as_deref()).collect();
        assert_eq!(
            answers,
            vec![Some("18"), Some("17"), None, Some("18"), None]
        );
        assert!(out.samples[1].text.contains("20 - 3"));
        assert_eq!(sent[0].logprobs, Some(crate::samples::CONFIDENCE_TOP_K));
    }

    #[tokio::test]
    async fn falls_back_to_the_replies_numbers_when_no_program_runs() {
        let replies = [
            "```python\nimport os\ndef solution():\n    return 5\n```\nThe answer is 5.",
            "The total is 5 apples.",
            "```python\ndef solution():\n    while True:\n        pass\n```\nSo 4.",
        ];
        let mock = Arc::new(MockBackend::scripted(replies));
        let pot = ProgramOfThought::new(Params {
            k: 3,
            temperature: 0.5,
        })
        .unwrap();
        let out = run(&pot, mock, &StrategyRequest::user("q"), Budget::default())
            .await
            .unwrap();
        // The replies read as `none` reads them: 5, 5, 4; the first 5 is returned as is.
        assert_eq!(out.answer, replies[0]);
        assert_eq!(out.vote.unwrap().summary(), "5: 2, 4: 1");
        assert!(out.candidates[0].starts_with("[program failed: line 1: not supported"));
        assert!(out.candidates[0].contains("[fallback: the reply's number, 5]"));
        assert!(out.candidates[2].contains("step limit"));
    }

    #[test]
    fn parameters_are_checked_and_registered() {
        assert!(
            ProgramOfThought::new(Params {
                k: 0,
                ..Params::default()
            })
            .is_err()
        );
        assert!(
            ProgramOfThought::new(Params {
                temperature: -1.0,
                ..Params::default()
            })
            .is_err()
        );
        let unknown = crate::spec::parse("pot(n=3)").unwrap();
        assert!(crate::strategies::build_spec(&unknown).is_err());
        let info = crate::strategies::catalogue()
            .into_iter()
            .find(|a| a.slug == SLUG)
            .unwrap();
        assert_eq!(info.params["k"], 1);
        assert_eq!(info.params["temperature"].to_string(), "0.0");
    }
}

/// Reruns the programs of recorded `pot` outputs (`POT_RECORDS=results.jsonl`) and
/// prints why each one that fell back did not run: for looking at failures.
#[cfg(test)]
mod inspect {
    use super::*;

    #[test]
    #[ignore = "reads POT_RECORDS"]
    fn failures_of_recorded_programs() {
        let Ok(path) = std::env::var("POT_RECORDS") else {
            return;
        };
        let text = std::fs::read_to_string(path).unwrap();
        for line in text.lines() {
            let r: serde_json::Value = serde_json::from_str(line).unwrap();
            if !r["approach"].as_str().unwrap_or("").starts_with("pot") {
                continue;
            }
            let output = r["output"].as_str().unwrap_or("");
            let status = match code_of(output) {
                None => "no code".to_string(),
                Some(code) => match pyeval::run_program(&code, &Limits::default()) {
                    Ok(v) => format!("ok {}", v.value.text()),
                    Err(e) => format!("FAILED {e}"),
                },
            };
            println!(
                "item {} gold {} extracted {} correct {}: {status}",
                r["item"], r["gold"], r["extracted"], r["correct"]
            );
        }
    }
}
