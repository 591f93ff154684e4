//! `calculator`: the model reasons, the arithmetic is exact.
//!
//! Tiny models set up a calculation well and then get its result wrong (`80 + 80 + 150 +
//! 150 = 500`). This approach decodes token by token (native backend, `token_control`)
//! and, each time the text reaches an `=` right after an arithmetic expression, computes
//! the expression and writes the result itself; the model goes on from the exact value.
//! It is the GSM8K calculator-annotation idea (`<<48/2=24>>`, Cobbe et al. 2021) applied
//! to the equations the model writes anyway, plain or LaTeX (`\frac{48}{2}`, `3 \times
//! 4`), so no special prompt or fine-tuning is needed.
//!
//! Only arithmetic is evaluated, by a small parser over numbers, `+ - * / ^` and
//! brackets: no code runs, the expression is at most [`MAX_EXPR_CHARS`] characters and
//! bracket depth [`MAX_DEPTH`]. An `=` whose left side is not a complete expression
//! (`x = `, `total - 3 * 4 = `, `2.5% of 40 = `) is left to the model. After a written
//! result, the next token may not start with a digit, so the model cannot extend
//! `1200` into `12000`.
//!
//! Programs run too (`run_code`, on by default). A code model often reasons by writing a
//! Python block and then, after a ```` ```output ```` fence, what it imagines the block
//! prints (Qwen2.5-Coder-0.5B on GSM8K: 50 of 200 greedy answers, 3 of them right). When
//! the text reaches such a fence, the block is run by the bounded interpreter of
//! [`crate::pyeval`] (no real Python, no files, no network; steps and memory bounded)
//! and what it prints (or the error that stopped it) is written as the output; the
//! model goes on from it. This is tool-integrated reasoning (ToRA, Gou et al. 2024; the
//! Python-interpreter mode of Qwen2.5-Math) with no prompt of its own.
//!
//! With `k > 1`, `k` samples are decoded together from the one evaluated prompt (one
//! batch per step) and vote on their final answers, as `self_consistency` does.

use std::sync::LazyLock;

use async_trait::async_trait;
use regex::Regex;
use serde::{Deserialize, Serialize};

use crate::arith::latex_to_plain;
pub use crate::arith::{MAX_DEPTH, evaluate};

use super::Approach;
use super::read_answer::answer_kind;
use super::sampler::{Rng, SamplerConfig, max_new_tokens, run_seed, sample};
use crate::error::BackendError;
use crate::extract::{AnswerKind, extract_as, vote};
use crate::pyeval::{self, Limits};
use crate::samples::Sample;
use crate::spec::SpecError;
use crate::strategy::{Answer, Ctx, Strategy, StrategyError, StrategyRequest, TokenLimits};
use crate::token::{SeqId, Token, TokenSession};
use crate::types::{FinishReason, Message, Sampling};

pub const SLUG: &str = "calculator";

/// Longest expression evaluated, in characters.
pub const MAX_EXPR_CHARS: usize = 120;
/// Characters before an `=` looked at.
const TAIL_CHARS: usize = 240;
/// Most likely tokens checked when the token after a result may not be a digit.
const GUARD_TOP: usize = 64;
/// The fence after which a model writes what its code block prints.
const OUTPUT_FENCE: &str = "```output";
/// Most characters of a program's output written for the model.
pub const MAX_OUTPUT_CHARS: usize = 2_000;

/// The parameters of `calculator`; a field a spec leaves out takes its default here
/// (`optillm approaches` lists them).
#[derive(Debug, Clone, Serialize, Deserialize)]
#[serde(default, deny_unknown_fields)]
pub struct Params {
    /// Samples decoded together; more than one vote on their answers.
    pub k: u32,
    /// Sampling temperature (0: greedy; `k > 1` needs more than 0).
    pub temperature: f32,
    pub top_p: f32,
    /// Most tokens generated per sample.
    pub max_tokens: u32,
    /// Answer kind to extract for the vote (`null`: any).
    pub answer_kind: Option<AnswerKind>,
    /// Sampling seed (`null`: the request's seed, else 0); sample `i` uses `seed + i`.
    pub seed: Option<u64>,
    /// Run the Python block before a ```` ```output ```` fence and write what it prints.
    pub run_code: bool,
}

impl Default for Params {
    fn default() -> Self {
        Self {
            k: 1,
            temperature: 0.0,
            top_p: 1.0,
            max_tokens: 512,
            answer_kind: None,
            seed: None,
            run_code: true,
        }
    }
}

/// The `calculator` strategy (the module documentation describes it): built from typed
/// [`Params`] with `new`, or by name through [`crate::strategies::build`].
#[derive(Debug, Clone)]
pub struct Calculator {
    params: Params,
}

impl Calculator {
    pub fn new(params: Params) -> Result<Self, SpecError> {
        let bad = |message: &str| SpecError::BadParameter {
            approach: SLUG.into(),
            message: message.into(),
        };
        if params.k == 0 || params.k > 64 {
            return Err(bad("k must be between 1 and 64"));
        }
        if params.max_tokens == 0 {
            return Err(bad("max_tokens must be at least 1"));
        }
        let sampler = sampler_of(&params);
        if let Some(reason) = sampler.check() {
            return Err(bad(reason));
        }
        if params.k > 1 && params.temperature == 0.0 {
            return Err(bad(
                "k > 1 needs temperature > 0 (greedy samples are all the same)",
            ));
        }
        Ok(Self { params })
    }
}

fn sampler_of(p: &Params) -> SamplerConfig {
    SamplerConfig {
        temperature: p.temperature,
        top_p: p.top_p,
        ..SamplerConfig::greedy()
    }
}

// ---------------------------------------------------------------------------------
// Finding and evaluating the expression before an `=`.

macro_rules! pattern {
    ($name:ident, $re:expr) => {
        static $name: LazyLock<Option<Regex>> = LazyLock::new(|| Regex::new($re).ok());
    };
}

pattern!(TIMES_X, r"([0-9)])\s*[xX]\s*([0-9(])");
pattern!(THOUSANDS, r"(\d),(\d{3})\b");
pattern!(LIST_NUMBER, r"^\d+\.\s+");

fn replace_all(re: &LazyLock<Option<Regex>>, text: &str, with: &str) -> String {
    match re.as_ref() {
        Some(re) => re.replace_all(text, with).into_owned(),
        None => text.to_string(),
    }
}

/// Plain arithmetic notation for `text`: LaTeX operators and fractions, `×`, `÷`, the
/// `x` of `3 x 4`, thousands separators and currency signs.
fn plain_notation(text: &str) -> String {
    let mut s = latex_to_plain(text);
    for (from, to) in [
        ("\\ast", "*"),
        ("\\left", ""),
        ("\\right", ""),
        ("\\,", " "),
        ("\\;", " "),
        ("\\!", ""),
        ("\\$", ""),
        ("$", ""),
        ("×", "*"),
        ("·", "*"),
        ("∗", "*"),
        ("÷", "/"),
        ("−", "-"),
    ] {
        s = s.replace(from, to);
    }
    // Twice: `2 x 3 x 4` overlaps.
    s = replace_all(&TIMES_X, &s, "$1 * $2");
    s = replace_all(&TIMES_X, &s, "$1 * $2");
    // Matches do not overlap: `1,000,000` takes two rounds.
    for _ in 0..6 {
        let next = replace_all(&THOUSANDS, &s, "$1$2");
        if next == s {
            break;
        }
        s = next;
    }
    s
}

fn expression_char(c: char) -> bool {
    c.is_ascii_digit() || " .+-*/^()".contains(c)
}

/// The arithmetic expression that `before` (the text up to an `=`, without it) ends
/// with, in plain notation: `None` when it does not end with one, or when what precedes
/// the expression makes its left end uncertain (`feet + 3 * 400`).
pub fn expression_before(before: &str) -> Option<String> {
    let count = before.chars().count();
    let tail: String = before
        .chars()
        .skip(count.saturating_sub(TAIL_CHARS))
        .collect();
    let plain: Vec<char> = plain_notation(&tail).chars().collect();
    let mut start = plain.len();
    while start > 0 && plain.get(start - 1).is_some_and(|c| expression_char(*c)) {
        start -= 1;
    }
    let at_line_start = start == 0 || plain.get(start - 1) == Some(&'\n');
    let run: String = plain.get(start..)?.iter().collect();
    let mut expr = run.trim().to_string();
    if at_line_start {
        // A list bullet or number, not an operator: "- 5000 * 0.025", "2. 3 + 4".
        for bullet in ["- ", "* ", "+ "] {
            if let Some(rest) = expr.strip_prefix(bullet) {
                expr = rest.trim_start().to_string();
            }
        }
        expr = replace_all(&LIST_NUMBER, &expr, "");
    }
    // Brackets opened before the expression: `\(80 + 80` became `(80 + 80`.
    while expr.starts_with('(') && expr.matches('(').count() > expr.matches(')').count() {
        expr = expr
            .chars()
            .skip(1)
            .collect::<String>()
            .trim_start()
            .to_string();
    }
    if expr.is_empty() || expr.chars().count() > MAX_EXPR_CHARS {
        return None;
    }
    Some(expr)
}

/// `value` as a model would write it: an integer without decimals, otherwise at most six
/// decimals without trailing zeros.
pub fn format_number(value: f64) -> String {
    let rounded = (value * 1e6).round() / 1e6;
    if rounded.fract() == 0.0 {
        if rounded == 0.0 {
            return "0".into();
        }
        return format!("{rounded:.0}");
    }
    let text = format!("{rounded:.6}");
    text.trim_end_matches('0').trim_end_matches('.').to_string()
}

/// The result of the arithmetic expression that `text` closes with its final `=` (an
/// `= ` with one space after it is fine): `None` when there is nothing to compute. The
/// number is written as the expression writes its numbers: `1,200` grouped in
/// thousands when the expression is.
pub fn result_after(text: &str) -> Option<String> {
    let before = match text.strip_suffix("= ") {
        Some(b) => b,
        None => text.strip_suffix('=')?,
    };
    // `==`, `<=`, `>=`, `!=` are comparisons.
    if before.ends_with(['=', '<', '>', '!']) {
        return None;
    }
    let value = evaluate(&expression_before(before)?)?;
    let line = before.rsplit('\n').next().unwrap_or(before);
    let grouped = THOUSANDS.as_ref().is_some_and(|re| re.is_match(line));
    Some(if grouped {
        group_thousands(&format_number(value))
    } else {
        format_number(value)
    })
}

/// `1234567.5` as `1,234,567.5`.
fn group_thousands(number: &str) -> String {
    let (sign, rest) = match number.strip_prefix('-') {
        Some(r) => ("-", r),
        None => ("", number),
    };
    let (int, frac) = match rest.split_once('.') {
        Some((i, f)) => (i, Some(f)),
        None => (rest, None),
    };
    let digits: Vec<char> = int.chars().collect();
    let mut grouped = String::new();
    for (i, d) in digits.iter().enumerate() {
        if i > 0 && (digits.len() - i) % 3 == 0 {
            grouped.push(',');
        }
        grouped.push(*d);
    }
    match frac {
        Some(f) => format!("{sign}{grouped}.{f}"),
        None => format!("{sign}{grouped}"),
    }
}

/// Where the model's own number begins in a token's text: the token is what may come
/// before a number (spaces, `$`, `\(`), then a digit or a sign with a digit. Gives the
/// part before the number; `None` when the token has text of another kind.
fn number_start(token: &str) -> Option<Result<String, ()>> {
    let chars: Vec<char> = token.chars().collect();
    for (i, c) in chars.iter().enumerate() {
        let next_is_digit = chars.get(i + 1).is_some_and(char::is_ascii_digit);
        if c.is_ascii_digit() || (*c == '-' && next_is_digit) {
            return Some(Ok(chars.get(..i)?.iter().collect()));
        }
        if !(c.is_whitespace() || matches!(c, '$' | '\\' | '(' | '[')) {
            return None;
        }
    }
    // Only lead-in so far: the number may come with the next token.
    Some(Err(()))
}

// ---------------------------------------------------------------------------------
// Running the model's code.

/// The code of the Python block right before the output fence `text` ends with (the
/// fence, or the fence and its newline): the model has written a program and expects
/// what it prints next. `None` when the text does not end so.
pub fn code_before_output(text: &str) -> Option<&str> {
    let before = text.strip_suffix('\n').unwrap_or(text);
    let before = before.strip_suffix(OUTPUT_FENCE)?;
    let (_, block) = before.rsplit_once("```python")?;
    let code = block.trim_end().strip_suffix("```")?;
    (!code.contains("```")).then_some(code)
}

/// What running `code` prints, as the body of an output block: the printed lines (at
/// most [`MAX_OUTPUT_CHARS`] characters), then the error that stopped it, if one did.
pub fn program_output(code: &str) -> String {
    let run = pyeval::run_script(code, &Limits::default());
    let mut lines = run.printed;
    if let Some(failure) = run.failure {
        lines.push(format!("Error: {failure}"));
    }
    lines.join("\n").chars().take(MAX_OUTPUT_CHARS).collect()
}

/// The text to write after the output fence `text` ends with, when it follows a code
/// block: the program's output, then the closing fence.
fn output_block(text: &str) -> Option<String> {
    let code = code_before_output(text)?;
    let opened = if text.ends_with('\n') { "" } else { "\n" };
    Some(format!("{opened}{}\n```\n", program_output(code)))
}

/// Most programs one chain runs over chat calls.
pub const MAX_PROGRAMS: usize = 4;

/// `n` chains of the request's conversation at `step`, decoded over chat calls with
/// their programs run, for backends without token control.
///
/// Each call stops at an output fence. Where the text before it ends with a Python
/// block, the block runs, its output is written, and the next call continues the
/// assistant's message from there: a conversation that ends with an assistant message
/// is continued, not answered (the native backend and Ollama do so, llama-server with
/// its Jinja templates; a server that starts a new turn instead gets a chain that
/// restates itself). A remote backend does not say which stop ended a reply, so a chain
/// that ends right after a Python block is taken as asking for its output too, as
/// ToRA's loop does. The first call asks for all `n` chains at once; each then goes on
/// alone, at most [`MAX_PROGRAMS`] times, within the request's `max_tokens` in all.
pub(crate) async fn chat_chains_running_code(
    ctx: &Ctx,
    request: &StrategyRequest,
    purpose: &str,
    step: &Sampling,
    n: u32,
) -> Result<Vec<Decoded>, StrategyError> {
    let mut first = request
        .chat(request.messages.clone(), step)
        .with_n(n.max(1));
    first.sampling.stop.push(OUTPUT_FENCE.to_string());
    let budget = first.sampling.max_tokens;
    let done = ctx.call(purpose, first).await?;
    let chains = done.choices.into_iter().map(|c| async move {
        let (mut text, mut used, mut finish) = (c.text, c.completion_tokens, c.finish_reason);
        let mut programs = 0;
        for _ in 0..MAX_PROGRAMS {
            if finish == FinishReason::Length {
                break;
            }
            let fenced = if text.ends_with(OUTPUT_FENCE) {
                text.clone()
            } else {
                format!("{text}{OUTPUT_FENCE}")
            };
            let Some(block) = output_block(&fenced) else {
                break;
            };
            let left = budget.map(|b| b.saturating_sub(used));
            if left == Some(0) {
                break;
            }
            text = format!("{fenced}{block}");
            programs += 1;
            let mut messages = request.messages.clone();
            messages.push(Message::assistant(text.clone()));
            let mut next = request.chat(messages, step);
            next.sampling.max_tokens = left;
            next.sampling.stop.push(OUTPUT_FENCE.to_string());
            let more = ctx
                .call(format!("{purpose}: after its program ran"), next)
                .await?;
            let Some(more) = more.choices.into_iter().next() else {
                break;
            };
            text.push_str(&more.text);
            used += more.completion_tokens;
            finish = more.finish_reason;
        }
        Ok::<_, StrategyError>(Decoded {
            text,
            tokens: used,
            computed: 0,
            programs,
            finish,
        })
    });
    futures::future::join_all(chains)
        .await
        .into_iter()
        .collect()
}

// ---------------------------------------------------------------------------------
// Decoding.

/// One decoded sample.
#[derive(Debug, Clone, PartialEq)]
pub struct Decoded {
    pub text: String,
    /// Tokens generated, results written by the calculator included.
    pub tokens: u32,
    /// Results the calculator wrote.
    pub computed: u32,
    /// Programs run, their output written.
    pub programs: u32,
    pub finish: FinishReason,
}

/// One chain of a token job and how it is decoded.
#[derive(Debug, Clone)]
pub(crate) struct Chain {
    /// Its prompt: `None`, the request's (sequence 0, forked for the chains after the
    /// first); else a conversation of its own ([`TokenSession::start_chat`]).
    pub prompt: Option<Vec<Message>>,
    pub sampler: SamplerConfig,
    pub seed: u64,
    pub max_tokens: usize,
    /// Write the result of each arithmetic expression closed by `=`.
    pub arithmetic: bool,
    /// Run the Python block before an output fence and write what it prints.
    pub run_code: bool,
}

impl Chain {
    /// A greedy reply to `messages`, decoded as the model writes it (a program, say).
    pub(crate) fn plain(messages: Vec<Message>, max_tokens: usize) -> Self {
        Self {
            prompt: Some(messages),
            sampler: SamplerConfig::greedy(),
            seed: 0,
            max_tokens,
            arithmetic: false,
            run_code: false,
        }
    }
}

struct Branch {
    seq: SeqId,
    chain: Chain,
    rng: Rng,
    tokens: Vec<Token>,
    text: Vec<u8>,
    computed: u32,
    programs: u32,
    /// A result waiting for the model to begin its own number (with the tokens of
    /// lead-in seen so far); the model's number is then replaced by it.
    pending: Option<(String, u32)>,
    /// The last thing written was a result: the next token may not start with a digit.
    guard: bool,
    finish: Option<FinishReason>,
}

fn starts_with_digit(session: &dyn TokenSession, t: Token) -> Result<bool, BackendError> {
    Ok(session
        .token_bytes(t)?
        .first()
        .is_some_and(u8::is_ascii_digit))
}

/// The next token of `b`: sampled, with the digit guard applied to the most likely
/// tokens after a written result.
fn next_token(session: &dyn TokenSession, b: &mut Branch) -> Result<Option<Token>, BackendError> {
    let mut logits = session.logits(b.seq)?;
    if b.guard {
        let mut order: Vec<usize> = (0..logits.len()).collect();
        let top = GUARD_TOP.min(order.len());
        if top > 0 {
            order.select_nth_unstable_by(top - 1, |x, y| {
                logits
                    .get(*y)
                    .unwrap_or(&f32::MIN)
                    .total_cmp(logits.get(*x).unwrap_or(&f32::MIN))
            });
        }
        for &i in order.iter().take(top) {
            let Ok(t) = Token::try_from(i) else { continue };
            if starts_with_digit(session, t)?
                && let Some(l) = logits.get_mut(i)
            {
                *l = f32::NEG_INFINITY;
            }
        }
    }
    Ok(sample(&logits, &b.chain.sampler, &mut b.rng))
}

/// Decodes `chains` together, one batch per step: each from its prompt, with the
/// calculator writing the result of every arithmetic expression closed by `=` and the
/// output of every program, where its chain asks for them.
pub(crate) fn decode_chains(
    session: &mut dyn TokenSession,
    chains: Vec<Chain>,
    limits: &TokenLimits,
) -> Result<Vec<Decoded>, BackendError> {
    let mut branches: Vec<Branch> = Vec::with_capacity(chains.len());
    let mut from_request = 0;
    for chain in chains {
        let seq = match &chain.prompt {
            Some(messages) => session.start_chat(messages)?,
            None if from_request == 0 => 0,
            None => session.fork(0)?,
        };
        from_request += usize::from(chain.prompt.is_none());
        branches.push(Branch {
            seq,
            rng: Rng::new(chain.seed),
            chain,
            tokens: Vec::new(),
            text: Vec::new(),
            computed: 0,
            programs: 0,
            pending: None,
            guard: false,
            finish: None,
        });
    }
    loop {
        let exhausted = limits.exhausted(session);
        let mut batch = Vec::new();
        // Sequences whose number the calculator wrote instead of the model's.
        let mut replaced: Vec<(SeqId, Vec<Token>)> = Vec::new();
        for b in branches.iter_mut().filter(|b| b.finish.is_none()) {
            let max_tokens = b.chain.max_tokens;
            if exhausted || b.tokens.len() >= max_tokens || session.remaining(b.seq) == 0 {
                b.finish = Some(FinishReason::Length);
                continue;
            }
            let Some(t) = next_token(session, b)? else {
                b.finish = Some(FinishReason::EndOfText);
                continue;
            };
            if session.is_end(t) {
                b.finish = Some(FinishReason::EndOfText);
                continue;
            }
            let bytes = session.token_bytes(t)?;
            if let Some((result, lead_ins)) = b.pending.take() {
                match number_start(&String::from_utf8_lossy(&bytes)) {
                    Some(Ok(lead)) => {
                        let text = format!("{lead}{result}");
                        let tokens = session.tokenize(&text)?;
                        let fits = !tokens.is_empty()
                            && b.tokens.len() + tokens.len() <= max_tokens
                            && session.remaining(b.seq) as usize >= tokens.len();
                        if fits {
                            tracing::trace!(seq = b.seq, result = %result, "calculator wrote a result");
                            b.tokens.extend_from_slice(&tokens);
                            b.text.extend_from_slice(text.as_bytes());
                            b.computed += 1;
                            b.guard = true;
                            replaced.push((b.seq, tokens));
                            continue;
                        }
                    }
                    // Spaces or `$` before the number: it may begin with the next token.
                    Some(Err(())) if lead_ins < 3 => b.pending = Some((result, lead_ins + 1)),
                    _ => {}
                }
            }
            b.guard = b.guard && matches!(bytes.as_slice(), b"." | b",");
            b.text.extend_from_slice(&bytes);
            b.tokens.push(t);
            batch.push((b.seq, t));
        }
        if batch.is_empty() && replaced.is_empty() {
            break;
        }
        if !batch.is_empty() {
            session.append_batch(&batch)?;
        }
        for (seq, tokens) in &replaced {
            session.append(*seq, tokens)?;
        }
        for b in branches.iter_mut().filter(|b| b.finish.is_none()) {
            if b.chain.run_code
                && (b.text.ends_with(b"```output") || b.text.ends_with(b"```output\n"))
            {
                let block = output_block(&String::from_utf8_lossy(&b.text));
                if let Some(block) = block {
                    let tokens = session.tokenize(&block)?;
                    let fits = b.tokens.len() + tokens.len() <= b.chain.max_tokens
                        && session.remaining(b.seq) as usize >= tokens.len();
                    if !fits {
                        b.finish = Some(FinishReason::Length);
                        continue;
                    }
                    tracing::trace!(seq = b.seq, "calculator ran a program");
                    session.append(b.seq, &tokens)?;
                    b.tokens.extend_from_slice(&tokens);
                    b.text.extend_from_slice(block.as_bytes());
                    b.programs += 1;
                    b.pending = None;
                    b.guard = false;
                    continue;
                }
            }
            let wrote_equals = match b.tokens.last() {
                Some(t) if b.chain.arithmetic => session.token_bytes(*t)?.contains(&b'='),
                _ => false,
            };
            if wrote_equals {
                b.pending = result_after(&String::from_utf8_lossy(&b.text)).map(|r| (r, 0));
            }
        }
    }
    let mut out = Vec::with_capacity(branches.len());
    for b in branches {
        if b.seq != 0 {
            session.release(b.seq);
        }
        out.push(Decoded {
            text: session.detokenize(&b.tokens)?,
            tokens: u32::try_from(b.tokens.len()).unwrap_or(u32::MAX),
            computed: b.computed,
            programs: b.programs,
            finish: b.finish.unwrap_or(FinishReason::Length),
        });
    }
    Ok(out)
}

/// Runs `chains` as one token job labelled `label` (sequence 0 holds the request's
/// conversation).
pub(crate) async fn decode_job(
    ctx: &Ctx,
    request: &StrategyRequest,
    label: &str,
    chains: Vec<Chain>,
) -> Result<Vec<Decoded>, StrategyError> {
    let chat = request.chat(request.messages.clone(), &Sampling::default());
    ctx.token_job(label, chat, move |session, limits| {
        let d = decode_chains(session, chains, limits)?;
        let texts = d.iter().map(|x| x.text.clone()).collect();
        Ok((d, texts))
    })
    .await
}

impl Calculator {
    /// The request's `k` chains as this calculator decodes them where the backend gives
    /// token control: from the request's prompt, sample `i` seeded `seed + i`.
    pub(crate) fn chains(&self, request: &StrategyRequest) -> Vec<Chain> {
        let p = &self.params;
        let max_tokens = max_new_tokens(p.max_tokens, request.sampling.max_tokens) as usize;
        let seed = run_seed(p.seed, request.sampling.seed);
        (0..p.k)
            .map(|i| Chain {
                prompt: None,
                sampler: sampler_of(p),
                seed: seed.wrapping_add(u64::from(i)),
                max_tokens,
                arithmetic: true,
                run_code: p.run_code,
            })
            .collect()
    }

    /// Decodes the request's `k` samples: token by token (a token job labelled `label`
    /// in the trace) where the backend gives token control; elsewhere, with `run_code`,
    /// over chat calls that run the samples' programs (no arithmetic is intercepted
    /// there: a remote server decodes the tokens).
    pub(crate) async fn decode(
        &self,
        ctx: &Ctx,
        request: &StrategyRequest,
        label: &str,
    ) -> Result<Vec<Decoded>, StrategyError> {
        if self.params.run_code && !ctx.backend().capabilities().token_control {
            let step = Sampling {
                temperature: Some(self.params.temperature),
                top_p: Some(self.params.top_p),
                seed: self.params.seed.and_then(|s| u32::try_from(s).ok()),
                max_tokens: Some(max_new_tokens(
                    self.params.max_tokens,
                    request.sampling.max_tokens,
                )),
                ..Sampling::default()
            };
            return chat_chains_running_code(ctx, request, label, &step, self.params.k).await;
        }
        decode_job(ctx, request, label, self.chains(request)).await
    }
}

impl Approach for Calculator {
    const SLUG: &'static str = SLUG;
    const DESCRIPTION: &'static str = "Exact arithmetic while decoding: each expression the model closes \
         with `=` is computed and its result written for the model, and each Python block \
         it follows with an output fence is run (bounded interpreter) and its output \
         written (over HTTP backends only the programs: they give no token control); k > 1 \
         samples vote";
    type Params = Params;

    fn from_params(params: Params) -> Result<Self, SpecError> {
        Self::new(params)
    }
}

#[async_trait]
impl Strategy for Calculator {
    fn slug(&self) -> &str {
        SLUG
    }

    async fn run(&self, ctx: &Ctx, request: &StrategyRequest) -> Result<Answer, StrategyError> {
        let kind = answer_kind(request.query()?, self.params.answer_kind);
        let decoded = self.decode(ctx, request, "calculator decoding").await?;
        let computed: u32 = decoded.iter().map(|d| d.computed).sum();
        let programs: u32 = decoded.iter().map(|d| d.programs).sum();
        tracing::debug!(
            computed,
            programs,
            samples = decoded.len(),
            "calculator results written"
        );
        let samples: Vec<Sample> = decoded
            .iter()
            .map(|d| Sample {
                text: d.text.clone(),
                answer: extract_as(&d.text, kind),
                completion_tokens: d.tokens,
                finish_reason: Some(d.finish),
                confidence: None,
            })
            .collect();
        let chosen = if samples.len() > 1 {
            let answers: Vec<Option<String>> = samples.iter().map(|s| s.answer.clone()).collect();
            let winner = vote(&answers).map(|v| v.winner);
            samples
                .iter()
                .position(|s| winner.is_some() && s.answer == winner)
                .unwrap_or(0)
        } else {
            0
        };
        let answer = samples
            .get(chosen)
            .map(|s| s.text.clone())
            .unwrap_or_default();
        let candidates = samples.iter().map(|s| s.text.clone()).collect();
        if samples.len() > 1 {
            ctx.record_samples(samples);
        }
        Ok(Answer::one(answer).with_candidates(candidates))
    }
}

#[cfg(test)]
pub(crate) mod tests {
    use std::sync::Arc;

    use super::*;
    use crate::mock::MockBackend;
    use crate::mock_tokens::{MockTokenBackend, logits_with};
    use crate::strategy::{Budget, run};

    fn result(text: &str) -> Option<String> {
        result_after(text)
    }

    #[test]
    fn computes_what_the_model_got_wrong() {
        assert_eq!(result("So 80 + 80 + 150 + 150 ="), Some("460".into()));
        assert_eq!(result("her salary is \\(50 * 50 = "), Some("2500".into()));
        assert_eq!(result("\\[ 33 + 66 ="), Some("99".into()));
        assert_eq!(result("<<48/2="), Some("24".into()));
        assert_eq!(result("W = \\frac{2}{2} ="), Some("1".into()));
        assert_eq!(result("\\frac{1}{2} \\times 2 ="), Some("1".into()));
        assert_eq!(result("3 x 4 x 2 ="), Some("24".into()));
        assert_eq!(result("$1,200 - $300 ="), Some("900".into()));
        assert_eq!(result("(2 + 3) * 4 ="), Some("20".into()));
        assert_eq!(result("2^10 ="), Some("1024".into()));
        assert_eq!(result("0.1 + 0.2 ="), Some("0.3".into()));
        assert_eq!(result("10 / 4 ="), Some("2.5".into()));
        assert_eq!(result("1 / 3 ="), Some("0.333333".into()));
        assert_eq!(result("-5 + 3 ="), Some("-2".into()));
        assert_eq!(result("4 × 2.5 ="), Some("10".into()));
    }

    #[test]
    fn writes_numbers_as_the_expression_does() {
        assert_eq!(result("$80,000 + $50,000 ="), Some("130,000".into()));
        assert_eq!(result("1,000,000 * 2.5 ="), Some("2,500,000".into()));
        assert_eq!(result("1,000 - 1,500 ="), Some("-500".into()));
        assert_eq!(group_thousands("-1234567.25"), "-1,234,567.25");
        // A grouped number on an earlier line does not count.
        assert_eq!(result("It costs 1,000.\n2000 + 500 ="), Some("2500".into()));
    }

    #[test]
    fn finds_where_the_models_number_begins() {
        assert_eq!(number_start("5"), Some(Ok(String::new())));
        assert_eq!(number_start(" 130"), Some(Ok(" ".into())));
        assert_eq!(number_start(" $1"), Some(Ok(" $".into())));
        assert_eq!(number_start("-3"), Some(Ok(String::new())));
        assert_eq!(number_start(" "), Some(Err(())));
        assert_eq!(number_start(" \\("), Some(Err(())));
        assert_eq!(number_start(" x"), None);
        assert_eq!(number_start(" -"), None);
    }

    #[test]
    fn list_markers_and_opening_brackets_are_not_part_of_the_expression() {
        assert_eq!(result("we multiply.\n- 5000 * 0.025 ="), Some("125".into()));
        assert_eq!(result("steps:\n2. 3 + 4 ="), Some("7".into()));
        assert_eq!(result("is \\(40 + 0.5 * 40 ="), Some("60".into()));
    }

    #[test]
    fn leaves_what_is_not_a_closed_expression_to_the_model() {
        // An operand that is not a number: where the expression begins is unclear.
        assert_eq!(result("is 1000 feet + 3 * 400 ="), None);
        assert_eq!(result("total - 3 * 4 ="), None);
        assert_eq!(result("Let x ="), None);
        assert_eq!(result("B = 2, so W ="), None);
        assert_eq!(result("the price is 5 ="), None); // no operator
        assert_eq!(result("2.5% of 40 ="), None);
        assert_eq!(result("if a <="), None);
        assert_eq!(result("a =="), None);
        assert_eq!(result("5 / 0 ="), None);
        assert_eq!(result("3 + ="), None);
        assert_eq!(result("(3 + 4 ="), Some("7".into())); // the open bracket came before
        assert_eq!(result("3 + 4) * 2 ="), None);
        assert_eq!(result("3 + 4\n"), None); // no `=`
        assert_eq!(result("9^99 ="), None);
        assert_eq!(result("99999999 * 99999999 ="), None); // past the largest result
    }

    #[test]
    fn bounded_input_gives_no_answer_rather_than_recursion() {
        let deep = format!("{}1 + 1{} =", "(".repeat(40), ")".repeat(40));
        assert_eq!(result(&deep), None);
        let ok = format!("{}1 + 1{} =", "(".repeat(10), ")".repeat(10));
        assert_eq!(result(&ok), Some("2".into()));
        let long = format!("{} =", vec!["1"; 100].join(" + "));
        assert_eq!(result(&long), None);
        // Multi-byte text before the expression is no problem.
        assert_eq!(result("déjà vu ✓ 2 + 2 ="), Some("4".into()));
    }

    #[test]
    fn formats_like_a_model_writes() {
        assert_eq!(format_number(24.0), "24");
        assert_eq!(format_number(-0.0), "0");
        assert_eq!(format_number(2.50), "2.5");
        assert_eq!(format_number(1e14), "100000000000000");
    }

    // Vocabulary: 0 <eos>, 1 "2", 2 " +", 3 " 2", 4 " =", 5 " 5", 6 ".", 7 " 4", 8 "0",
    // 9 " The answer is", 10 " so".
    const VOCAB: [&str; 11] = [
        "<eos>",
        "2",
        " +",
        " 2",
        " =",
        " 5",
        ".",
        " 4",
        "0",
        " The answer is",
        " so",
    ];

    /// The model writes "2 + 2 = 5." then "The answer is 5." unless the calculator wrote
    /// " 4" in place of its " 5": then it wants to add a digit ("0"), and after the guard it
    /// writes "." and "The answer is 4".
    fn script(toks: &[Token]) -> Vec<f32> {
        let l = |set: &[(Token, f32)]| logits_with(11, 0.0, set);
        match toks {
            [] => l(&[(1, 10.0)]),
            [1] => l(&[(2, 10.0)]),
            [1, 2] => l(&[(3, 10.0)]),
            [1, 2, 3] => l(&[(4, 10.0)]),
            [1, 2, 3, 4] => l(&[(5, 10.0)]),
            [1, 2, 3, 4, 5] => l(&[(6, 10.0)]),
            [1, 2, 3, 4, 5, 6] => l(&[(9, 10.0)]),
            [1, 2, 3, 4, 5, 6, 9] => l(&[(5, 10.0)]),
            [1, 2, 3, 4, 7] => l(&[(8, 10.0), (6, 9.0)]),
            [1, 2, 3, 4, 7, 6] => l(&[(9, 10.0)]),
            [1, 2, 3, 4, 7, 6, 9] => l(&[(7, 10.0)]),
            _ => l(&[(0, 10.0)]),
        }
    }

    #[tokio::test]
    async fn the_model_goes_on_from_the_exact_result() {
        let backend = Arc::new(MockTokenBackend::new(&VOCAB, &[0], script));
        let calc = Calculator::new(Params::default()).unwrap();
        let out = run(
            &calc,
            backend,
            &StrategyRequest::user("What is 2 + 2?"),
            Budget::default(),
        )
        .await
        .unwrap();
        // Without the calculator the script says "2 + 2 = 5. The answer is 5"; with it, the
        // guard keeps the model from writing "40".
        assert_eq!(out.answer, "2 + 2 = 4. The answer is 4");
    }

    #[tokio::test]
    async fn k_samples_vote() {
        let backend = Arc::new(MockTokenBackend::new(&VOCAB, &[0], script));
        let calc = Calculator::new(Params {
            k: 3,
            temperature: 0.01,
            ..Params::default()
        })
        .unwrap();
        let out = run(
            &calc,
            backend,
            &StrategyRequest::user("What is 2 + 2?"),
            Budget::default(),
        )
        .await
        .unwrap();
        assert_eq!(out.answer, "2 + 2 = 4. The answer is 4");
        assert_eq!(out.candidates.len(), 3);
        assert_eq!(out.samples.len(), 3);
        assert!(out.samples.iter().all(|s| s.answer.as_deref() == Some("4")));
    }

    #[test]
    fn finds_the_code_the_model_expects_output_of() {
        let text = "Let's compute.\n```python\nx = 3\nprint(x * 4)\n```\n```output";
        assert_eq!(code_before_output(text), Some("\nx = 3\nprint(x * 4)\n"));
        let newline = format!("{text}\n");
        assert_eq!(
            code_before_output(&newline),
            Some("\nx = 3\nprint(x * 4)\n")
        );
        // The last block is the one run.
        let two =
            "```python\nprint(1)\n```\n```output\n1\n```\n```python\nprint(2)\n```\n```output";
        assert_eq!(code_before_output(two), Some("\nprint(2)\n"));
        // No fence at the end, no block before it, or a block not closed: nothing to run.
        assert_eq!(code_before_output("```python\nprint(1)\n```\nSo"), None);
        assert_eq!(code_before_output("The output:\n```output"), None);
        assert_eq!(code_before_output("```python\nprint(1)\n```output"), None);
    }

    #[test]
    fn writes_what_the_program_prints_or_why_it_stopped() {
        assert_eq!(program_output("x = 16 - 3 - 4\nprint(x * 2)\n"), "18");
        assert_eq!(
            program_output("print('eggs', 9)\nprint(round(10 / 4, 1))"),
            "eggs 9\n2.5"
        );
        // A function nobody calls prints nothing, as in Python.
        assert_eq!(program_output("def solution():\n    return 3\n"), "");
        // What was printed before the error stays, the error follows.
        let failed = program_output("print(1)\nprint(y)\n");
        assert!(failed.starts_with("1\nError: line 2"), "{failed}");
        assert!(failed.contains('y'), "{failed}");
        assert!(program_output("import os\n").starts_with("Error:"));
        // A loop without end stops at the interpreter's step limit.
        assert!(program_output("while True:\n    pass\n").starts_with("Error:"));
        // Output is bounded.
        let long = program_output("for i in range(5000):\n    print(i)\n");
        assert_eq!(long.chars().count(), MAX_OUTPUT_CHARS);
    }

    pub(crate) const CODE_VOCAB: [&str; 10] = [
        "<eos>",
        "```python\nprint(2 + 2)\n```\n",
        "```output",
        "\n",
        "5",
        "4",
        "```",
        " The answer is",
        " 4",
        " 5",
    ];

    /// The model writes a program that prints 2 + 2, imagines its output as "5" and
    /// answers 5; given the real output "4", it answers 4.
    pub(crate) fn code_script(toks: &[Token]) -> Vec<f32> {
        let l = |t: Token| logits_with(10, 0.0, &[(t, 10.0)]);
        match toks {
            [] => l(1),
            [1] => l(2),
            [1, 2] => l(3),
            [1, 2, 3] => l(4),
            [1, 2, 3, 4] => l(3),
            [1, 2, 3, 4, 3] => l(6),
            [1, 2, 3, 4, 3, 6] => l(3),
            [1, 2, 3, 4, 3, 6, 3] | [1, 2, 3, 5, 3, 6, 3] => l(7),
            [1, 2, 3, 4, 3, 6, 3, 7] => l(9),
            [1, 2, 3, 5, 3, 6, 3, 7] => l(8),
            _ => l(0),
        }
    }

    #[tokio::test]
    async fn the_model_goes_on_from_what_its_program_really_prints() {
        let ask = |run_code| async move {
            let backend = Arc::new(MockTokenBackend::new(&CODE_VOCAB, &[0], code_script));
            let calc = Calculator::new(Params {
                run_code,
                ..Params::default()
            })
            .unwrap();
            run(
                &calc,
                backend,
                &StrategyRequest::user("What is 2 + 2?"),
                Budget::default(),
            )
            .await
            .unwrap()
            .answer
        };
        let code = "```python\nprint(2 + 2)\n```\n```output\n";
        assert_eq!(ask(false).await, format!("{code}5\n```\n The answer is 5"));
        assert_eq!(ask(true).await, format!("{code}4\n```\n The answer is 4"));
    }

    #[test]
    fn rejects_bad_parameters() {
        let bad = |p: Params| Calculator::new(p).is_err();
        assert!(bad(Params {
            k: 0,
            ..Params::default()
        }));
        assert!(bad(Params {
            k: 4,
            ..Params::default()
        }));
        assert!(bad(Params {
            max_tokens: 0,
            ..Params::default()
        }));
        assert!(bad(Params {
            temperature: -1.0,
            ..Params::default()
        }));
    }

    #[tokio::test]
    async fn needs_token_control_for_arithmetic() {
        let mock = Arc::new(MockBackend::scripted(["2 + 2 = 4"]));
        let calc = Calculator::new(Params {
            run_code: false,
            ..Params::default()
        })
        .unwrap();
        let err = run(
            &calc,
            mock,
            &StrategyRequest::user("What is 2 + 2?"),
            Budget::default(),
        )
        .await
        .unwrap_err();
        assert!(err.to_string().contains("token_control"), "{err}");
    }

    #[tokio::test]
    async fn over_chat_calls_the_programs_run_and_k_samples_vote() {
        // The first call of each sample stops at the output fence after its program; the
        // next continues the assistant's message from the program's real output.
        let mock = Arc::new(MockBackend::new(|r, _| {
            Ok(match r.messages.last() {
                Some(m) if m.role == crate::types::Role::Assistant => {
                    let printed = m.content.trim_end().trim_end_matches("```").trim_end();
                    let last = printed.lines().last().unwrap_or("");
                    format!("The answer is {last}.")
                }
                _ => "```python\nprint(6 * 7)\n```\n".to_string(),
            })
        }));
        let calc = Calculator::new(Params {
            k: 3,
            temperature: 0.5,
            ..Params::default()
        })
        .unwrap();
        let out = run(
            &calc,
            mock.clone(),
            &StrategyRequest::user("What is 6 * 7?"),
            Budget::default(),
        )
        .await
        .unwrap();
        assert!(
            out.answer
                .ends_with("```output\n42\n```\nThe answer is 42."),
            "{}",
            out.answer
        );
        assert_eq!(out.samples.len(), 3);
        assert!(
            out.samples
                .iter()
                .all(|s| s.answer.as_deref() == Some("42"))
        );
        // One request for the 3 samples, then one continuation each.
        let sent = mock.requests();
        assert_eq!(sent.len(), 4);
        assert_eq!(sent[0].n, 3);
        assert!(
            sent.iter()
                .all(|r| r.sampling.stop.iter().any(|s| s == "```output"))
        );
    }
}
