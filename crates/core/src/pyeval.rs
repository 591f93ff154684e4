//! `pyeval`: a small, safe interpreter of a subset of Python, for program-of-thought
//! (`pot`: the model writes `def solution(): ...`, this module runs it) and for checking
//! the programs of code questions on their examples (`doctest`).
//!
//! Nothing is executed outside this interpreter: no real Python, no imports beyond
//! `math` (and `typing`, whose names only annotate), no attributes beyond `math`'s and
//! the methods below, no files, no network. Every resource is bounded by [`Limits`]:
//! source length, nesting of the parsed program (the parser refuses deeper input, so no
//! recursion an input controls goes beyond a fixed depth), interpreter steps (every
//! statement, expression and element of a bulk operation counts; a method over a string
//! counts its characters), call depth, collection lengths, the elements and characters
//! allocated over the whole run (a result over the length limit is refused before it is
//! built), and the size of integers (`i128`, overflow is an error). Anything outside the
//! subset is a typed [`PyError`], never a panic.
//!
//! The subset: integers, floats, strings (escapes, f-strings and `str.format` with
//! Python's format specs: fill, alignment, sign, `#`, `0`, width, `,`/`_`, precision,
//! `s d b o x X c e f g %`), `True`/`False`/`None`, lists, tuples, dicts, sets;
//! `+ - * / // % **`, `& | ^ << >> ~` (ints and bools), `| & - ^` (sets), unary `-`/`+`,
//! comparisons (chained, `in`, `not in`, `is`; subsets for sets), `and`/`or`/`not`,
//! conditional expressions, `lambda`; assignment (also to tuples, list and dict items,
//! list slices, annotated), augmented assignment, `if/elif/else`, `for ... in` (range,
//! lists, tuples, strings, dicts, sets) and `while`, both with `else`,
//! `break`/`continue`/`pass`, `def` with positional, default and keyword arguments (also
//! inside functions; defaults evaluated when `def` runs), `return`,
//! `try`/`except`/`else`/`finally`, `raise`, list, set and dict comprehensions and
//! generator arguments (`sum(x for x in xs)`), indexing and slicing (negative bounds,
//! steps), `import math` / `from math import ...`, `from typing import ...`, `assert`.
//!
//! Built-ins: `print` (captured), `len sum min max abs round int float str bool list
//! tuple dict set range sorted reversed enumerate zip divmod pow all any map filter chr
//! ord bin hex oct isinstance type format` (`pow` also with a modulus; `key=` and
//! `reverse=` on `sorted` and `list.sort`, `key=` and `default=` on `min`/`max`; `map`
//! and `filter` give lists), and `__name__` (`"__main__"`); `math.floor ceil sqrt trunc
//! fabs pow exp log log10 gcd lcm factorial prod isclose pi e inf`; list `append extend
//! pop insert remove count index sort reverse copy clear`; dict `get keys values items
//! update pop clear`; set `add remove discard pop clear update union intersection
//! difference symmetric_difference issubset issuperset isdisjoint copy`; str `split
//! rsplit splitlines join strip lstrip rstrip lower upper casefold capitalize swapcase
//! title startswith endswith find rfind index rindex count replace zfill ljust rjust
//! center partition rpartition removeprefix removesuffix format isalpha isdigit
//! isdecimal isnumeric isalnum isspace isupper islower istitle`, with Python's results
//! (the character classes and case mappings are Unicode's as Rust has them: exact on
//! ASCII, `isdigit` and `isnumeric` alike beyond it). A method that does not change its
//! object is also a value: `key=d.get`, `map(str.strip, lines)`.
//!
//! Where it departs from Python:
//! - Lists, dicts and sets have value semantics (`b = a; b.append(1)` leaves `a` alone),
//!   which keeps values acyclic; methods that mutate need a plain variable
//!   (`xs.append(1)`).
//! - Sets keep their elements sorted, and iterate and print in that order: Python's own
//!   order for small non-negative ints; for strings and tuples Python's order changes
//!   from run to run anyway.
//! - A function defined inside another one sees that function's variables as Python
//!   does while that call runs; once it has returned, the inner function reads them as
//!   they were when it was made, and may not change them in place (a typed error).
//! - `try` catches what Python programs raise and catch: `ValueError`, `TypeError`,
//!   `IndexError` and `KeyError` (one error here: `except KeyError` also catches an
//!   index out of range), `ZeroDivisionError`, `AssertionError`, and what `raise`
//!   raises. Never a limit (steps, memory, recursion, the size of integers, which
//!   Python's are not bounded by), a name the program does not define (it may be one
//!   the subset lacks), or what the subset does not support; `finally` does not run
//!   after those. `except ... as e` binds the error's message, a string.
//!
//! Parsing is char-aware: source text is never sliced by byte index.

use std::collections::HashMap;
use std::rc::Rc;

/// Bounds on one program run.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct Limits {
    /// Longest source, in characters.
    pub max_source_chars: usize,
    /// Deepest nesting of blocks, brackets and prefix operators in the source.
    pub max_nesting: usize,
    /// Most interpreter steps.
    pub max_steps: u64,
    /// Deepest call stack (`solution()` itself is one).
    pub max_call_depth: usize,
    /// Longest list, tuple, dict or string.
    pub max_len: usize,
    /// Most list elements and string characters created over the whole run.
    pub max_alloc: u64,
    /// Deepest nesting of lists, tuples and dicts inside each other.
    pub max_value_depth: u32,
}

impl Default for Limits {
    fn default() -> Self {
        Self {
            max_source_chars: 20_000,
            max_nesting: 40,
            max_steps: 100_000,
            max_call_depth: 32,
            max_len: 10_000,
            max_alloc: 1_000_000,
            max_value_depth: 16,
        }
    }
}

/// Why a program did not give a result.
#[derive(Debug, Clone, PartialEq, thiserror::Error)]
#[non_exhaustive]
pub enum PyError {
    #[error("the source has {0} characters, over the limit")]
    SourceTooLong(usize),
    #[error("syntax error: {0}")]
    Syntax(String),
    #[error("not supported: {0}")]
    Unsupported(String),
    #[error("nesting deeper than {0} levels")]
    TooDeep(usize),
    #[error("name `{0}` is not defined")]
    Name(String),
    #[error("type error: {0}")]
    Type(String),
    #[error("value error: {0}")]
    Value(String),
    #[error("division by zero")]
    ZeroDivision,
    #[error("number too large")]
    Overflow,
    #[error("index or key not found")]
    Index,
    #[error("step limit of {0} reached")]
    Steps(u64),
    #[error("calls nested deeper than {0}")]
    Recursion(usize),
    #[error("memory limit reached: {0}")]
    Memory(String),
    #[error("assertion failed")]
    Assertion,
    /// An exception the program raised whose class has no variant of its own
    /// (`raise RuntimeError("...")`): the class and the message.
    #[error("{0}: {1}")]
    Raised(String, String),
    #[error("no numeric result: {0}")]
    NoResult(String),
    #[error("the interpreter could not run: {0}")]
    Internal(String),
}

/// A [`PyError`] with the source line it happened on (0: no line).
#[derive(Debug, Clone, PartialEq, thiserror::Error)]
#[error("line {line}: {error}")]
pub struct PyFailure {
    pub line: usize,
    pub error: PyError,
}

impl PyFailure {
    fn at(line: usize, error: PyError) -> Self {
        Self { line, error }
    }
}

/// The numeric result of a program.
#[derive(Debug, Clone, Copy, PartialEq)]
pub enum Number {
    Int(i128),
    Float(f64),
}

impl Number {
    pub fn as_f64(&self) -> f64 {
        match *self {
            Number::Int(i) => i as f64,
            Number::Float(f) => f,
        }
    }

    /// The number as an answer: integers as they are, floats within 1e-9 of an
    /// integer as that integer, others as their shortest decimal (rounded to 10
    /// decimals below a million, as the answer extraction does).
    pub fn text(&self) -> String {
        match *self {
            Number::Int(i) => i.to_string(),
            Number::Float(f) => {
                let r = f.round();
                if (f - r).abs() <= 1e-9 * r.abs().max(1.0) && r.abs() < 1e30 {
                    let s = format!("{r:.0}");
                    if s == "-0" { "0".to_string() } else { s }
                } else if f.abs() < 1e6 {
                    ((f * 1e10).round() / 1e10).to_string()
                } else {
                    f.to_string()
                }
            }
        }
    }
}

/// What a program gave: its number and what it printed.
#[derive(Debug, Clone, PartialEq)]
pub struct ProgramResult {
    pub value: Number,
    pub printed: Vec<String>,
    pub steps: u64,
}

/// Runs `source` and returns its numeric result: the value of `solution()` when the
/// program defines it (its last printed number when it returns `None`); otherwise the
/// last number the program printed, else its global `answer` or `result`.
///
/// Runs on its own thread with a fixed, large stack, so the (bounded) recursion of the
/// parser and the interpreter never meets the caller's stack size.
pub fn run_program(source: &str, limits: &Limits) -> Result<ProgramResult, PyFailure> {
    on_interpreter_thread(source, limits, run_here)?
}

/// What a script printed, and the failure that stopped it early, if one did.
#[derive(Debug, Clone, PartialEq)]
pub struct ScriptOutput {
    pub printed: Vec<String>,
    pub failure: Option<PyFailure>,
}

/// Runs `source` as Python runs a script: its statements in order, nothing called
/// after them (a `solution()` that nobody calls does not run). What it printed before
/// a failure is kept, as a terminal would show it. On its own thread, as
/// [`run_program`].
pub fn run_script(source: &str, limits: &Limits) -> ScriptOutput {
    on_interpreter_thread(source, limits, script_here).unwrap_or_else(|failure| ScriptOutput {
        printed: Vec::new(),
        failure: Some(failure),
    })
}

/// Runs `run` over `source` on a thread of its own with a fixed, large stack, so the
/// (bounded) recursion of the parser and the interpreter never meets the caller's stack
/// size; a source over the length limit is refused before.
fn on_interpreter_thread<T: Send + 'static>(
    source: &str,
    limits: &Limits,
    run: fn(&str, &Limits) -> T,
) -> Result<T, PyFailure> {
    let chars = source.chars().count();
    if chars > limits.max_source_chars {
        return Err(PyFailure::at(0, PyError::SourceTooLong(chars)));
    }
    let source = source.to_string();
    let limits = *limits;
    let handle = std::thread::Builder::new()
        .name("pyeval".into())
        .stack_size(64 << 20)
        .spawn(move || run(&source, &limits))
        .map_err(|e| PyFailure::at(0, PyError::Internal(e.to_string())))?;
    handle
        .join()
        .map_err(|_| PyFailure::at(0, PyError::Internal("the interpreter thread failed".into())))
}

fn script_here(source: &str, limits: &Limits) -> ScriptOutput {
    let program = match tokenize(source, limits).and_then(|t| Parser::new(t, limits).file()) {
        Ok(program) => program,
        Err(failure) => {
            return ScriptOutput {
                printed: Vec::new(),
                failure: Some(failure),
            };
        }
    };
    let mut interp = Interp::new(limits);
    let failure = interp.exec_block(&program).err().map(|e| interp.fail(e));
    ScriptOutput {
        printed: interp.printed,
        failure,
    }
}

fn run_here(source: &str, limits: &Limits) -> Result<ProgramResult, PyFailure> {
    let tokens = tokenize(source, limits)?;
    let program = Parser::new(tokens, limits).file()?;
    let mut interp = Interp::new(limits);
    interp.exec_block(&program).map_err(|e| interp.fail(e))?;
    let value = match interp.global("solution") {
        Some(Value::Func(f)) => {
            let v = interp
                .call_func(&f, Vec::new(), Vec::new())
                .map_err(|e| interp.fail(e))?;
            match v {
                Value::None => interp.last_printed_number().ok_or_else(|| {
                    PyFailure::at(
                        0,
                        PyError::NoResult("solution() returned None and printed no number".into()),
                    )
                })?,
                other => number_of(&other).map_err(|e| PyFailure::at(0, e))?,
            }
        }
        Some(_) => {
            return Err(PyFailure::at(
                0,
                PyError::Type("`solution` is not a function".into()),
            ));
        }
        None => match interp.last_printed_number() {
            Some(n) => n,
            None => {
                let named = ["answer", "result"]
                    .iter()
                    .find_map(|n| interp.global(n).and_then(|v| number_of(&v).ok()));
                named.ok_or_else(|| {
                    PyFailure::at(
                        0,
                        PyError::NoResult("no solution() and nothing printed".into()),
                    )
                })?
            }
        },
    };
    Ok(ProgramResult {
        value,
        printed: interp.printed,
        steps: interp.steps,
    })
}

/// A value as a number: ints, floats, and strings that hold one (`"12.50"`).
fn number_of(v: &Value) -> Result<Number, PyError> {
    match v {
        Value::Int(i) => Ok(Number::Int(*i)),
        Value::Float(f) if f.is_finite() => Ok(Number::Float(*f)),
        Value::Str(s) => parse_number_text(s)
            .ok_or_else(|| PyError::NoResult(format!("the result is the text {s:?}"))),
        other => Err(PyError::NoResult(format!(
            "the result is a {}",
            other.type_name()
        ))),
    }
}

fn parse_number_text(s: &str) -> Option<Number> {
    let t: String = s
        .trim()
        .trim_start_matches('$')
        .chars()
        .filter(|c| *c != ',')
        .collect();
    let t = t.trim_end_matches('%').trim();
    if let Ok(i) = t.parse::<i128>() {
        return Some(Number::Int(i));
    }
    t.parse::<f64>()
        .ok()
        .filter(|f| f.is_finite())
        .map(Number::Float)
}

// ---------------------------------------------------------------------------
// Tokens

#[derive(Debug, Clone, PartialEq)]
enum Tok {
    Name(String),
    Int(i128),
    Float(f64),
    Str(String),
    FStr(String),
    Op(&'static str),
    Newline,
    Indent,
    Dedent,
    End,
}

#[derive(Debug, Clone, PartialEq)]
struct Token {
    tok: Tok,
    line: usize,
}

const OPS: [&str; 46] = [
    "**=", "//=", ">>=", "<<=", "...", "->", ":=", "**", "//", "==", "!=", "<=", ">=", "+=", "-=",
    "*=", "/=", "%=", "<<", ">>", "&=", "|=", "^=", "@=", "+", "-", "*", "/", "%", "<", ">", "=",
    "(", ")", "[", "]", "{", "}", ",", ":", ".", ";", "@", "&", "|", "^",
];
const OTHER_OPS: [&str; 2] = ["~", "!"];

struct Lexer<'a> {
    chars: Vec<char>,
    i: usize,
    line: usize,
    limits: &'a Limits,
}

impl Lexer<'_> {
    fn at(&self, k: usize) -> char {
        self.chars.get(self.i + k).copied().unwrap_or('\0')
    }
    fn done(&self) -> bool {
        self.i >= self.chars.len()
    }
    fn err(&self, message: impl Into<String>) -> PyFailure {
        PyFailure::at(self.line, PyError::Syntax(message.into()))
    }

    fn number(&mut self) -> Result<Tok, PyFailure> {
        let mut text = String::new();
        if self.at(0) == '0' && matches!(self.at(1), 'x' | 'X' | 'o' | 'O' | 'b' | 'B') {
            let radix = match self.at(1) {
                'x' | 'X' => 16,
                'o' | 'O' => 8,
                _ => 2,
            };
            self.i += 2;
            while self.at(0).is_ascii_alphanumeric() || self.at(0) == '_' {
                if self.at(0) != '_' {
                    text.push(self.at(0));
                }
                self.i += 1;
            }
            return i128::from_str_radix(&text, radix)
                .map(Tok::Int)
                .map_err(|_| self.err(format!("bad number literal {text:?}")));
        }
        let mut float = false;
        loop {
            let c = self.at(0);
            if c.is_ascii_digit() {
                text.push(c);
            } else if c == '_' {
            } else if c == '.' && !float && !text.contains('e') {
                float = true;
                text.push(c);
            } else if matches!(c, 'e' | 'E')
                && !text.contains('e')
                && (self.at(1).is_ascii_digit()
                    || (matches!(self.at(1), '+' | '-') && self.at(2).is_ascii_digit()))
            {
                float = true;
                text.push('e');
                if matches!(self.at(1), '+' | '-') {
                    text.push(self.at(1));
                    self.i += 1;
                }
            } else {
                break;
            }
            self.i += 1;
        }
        if matches!(self.at(0), 'j' | 'J') {
            return Err(PyFailure::at(
                self.line,
                PyError::Unsupported("complex numbers".into()),
            ));
        }
        if float {
            text.parse::<f64>()
                .map(Tok::Float)
                .map_err(|_| self.err(format!("bad number literal {text:?}")))
        } else {
            text.parse::<i128>()
                .map(Tok::Int)
                .map_err(|_| PyFailure::at(self.line, PyError::Overflow))
        }
    }

    /// A string literal starting at the quote under the cursor.
    fn string(&mut self, raw: bool) -> Result<String, PyFailure> {
        let q = self.at(0);
        let triple = self.at(1) == q && self.at(2) == q;
        self.i += if triple { 3 } else { 1 };
        let mut out = String::new();
        loop {
            if self.done() {
                return Err(self.err("unterminated string"));
            }
            let c = self.at(0);
            if c == q && (!triple || (self.at(1) == q && self.at(2) == q)) {
                self.i += if triple { 3 } else { 1 };
                return Ok(out);
            }
            if c == '\n' {
                if !triple {
                    return Err(self.err("unterminated string"));
                }
                self.line += 1;
            }
            if c == '\\' && !raw {
                let e = self.at(1);
                self.i += 2;
                match e {
                    'n' => out.push('\n'),
                    't' => out.push('\t'),
                    'r' => out.push('\r'),
                    'a' => out.push('\u{7}'),
                    'b' => out.push('\u{8}'),
                    'f' => out.push('\u{c}'),
                    'v' => out.push('\u{b}'),
                    'x' | 'u' | 'U' => {
                        let digits = match e {
                            'x' => 2,
                            'u' => 4,
                            _ => 8,
                        };
                        let hex: String = (0..digits).map(|k| self.at(k)).collect();
                        let c = u32::from_str_radix(&hex, 16)
                            .ok()
                            .filter(|_| hex.chars().all(|h| h.is_ascii_hexdigit()))
                            .and_then(char::from_u32)
                            .ok_or_else(|| self.err(format!("bad escape \\{e}{hex}")))?;
                        out.push(c);
                        self.i += digits;
                    }
                    '0'..='7' => {
                        // Up to three octal digits.
                        let mut code = e.to_digit(8).unwrap_or(0);
                        for _ in 0..2 {
                            match self.at(0).to_digit(8) {
                                Some(d) => {
                                    code = code * 8 + d;
                                    self.i += 1;
                                }
                                None => break,
                            }
                        }
                        out.push(char::from_u32(code).unwrap_or('\0'));
                    }
                    '\\' => out.push('\\'),
                    '\'' => out.push('\''),
                    '"' => out.push('"'),
                    '\n' => self.line += 1,
                    other => {
                        out.push('\\');
                        out.push(other);
                    }
                }
                continue;
            }
            out.push(c);
            self.i += 1;
        }
    }
}

fn tokenize(source: &str, limits: &Limits) -> Result<Vec<Token>, PyFailure> {
    let mut lx = Lexer {
        chars: source.chars().collect(),
        i: 0,
        line: 1,
        limits,
    };
    let mut toks: Vec<Token> = Vec::new();
    let mut indents: Vec<usize> = vec![0];
    let mut brackets = 0usize;
    let mut line_start = true;
    let push = |toks: &mut Vec<Token>, tok: Tok, line: usize| toks.push(Token { tok, line });
    while !lx.done() {
        if line_start && brackets == 0 {
            let mut col = 0usize;
            let mut k = 0usize;
            loop {
                match lx.at(k) {
                    ' ' => col += 1,
                    '\t' => col = (col / 8 + 1) * 8,
                    '\x0c' => col = 0,
                    _ => break,
                }
                k += 1;
            }
            let c = lx.at(k);
            if c == '\0' && lx.i + k >= lx.chars.len() {
                lx.i += k;
                break;
            }
            if matches!(c, '\n' | '\r' | '#') {
                // A blank or comment-only line.
                lx.i += k;
                while !lx.done() && lx.at(0) != '\n' {
                    lx.i += 1;
                }
                if !lx.done() {
                    lx.i += 1;
                    lx.line += 1;
                }
                continue;
            }
            lx.i += k;
            line_start = false;
            let top = indents.last().copied().unwrap_or(0);
            if col > top {
                indents.push(col);
                if indents.len() > limits.max_nesting {
                    return Err(PyFailure::at(lx.line, PyError::TooDeep(limits.max_nesting)));
                }
                push(&mut toks, Tok::Indent, lx.line);
            } else {
                while col < indents.last().copied().unwrap_or(0) {
                    indents.pop();
                    push(&mut toks, Tok::Dedent, lx.line);
                }
                if col != indents.last().copied().unwrap_or(0) {
                    return Err(lx.err("unindent does not match any outer level"));
                }
            }
            continue;
        }
        let c = lx.at(0);
        match c {
            '\n' => {
                if brackets == 0 {
                    if toks.last().is_some_and(|t| t.tok != Tok::Newline) {
                        push(&mut toks, Tok::Newline, lx.line);
                    }
                    line_start = true;
                }
                lx.line += 1;
                lx.i += 1;
            }
            ' ' | '\t' | '\r' | '\x0c' => lx.i += 1,
            '#' => {
                while !lx.done() && lx.at(0) != '\n' {
                    lx.i += 1;
                }
            }
            '\\' => {
                let skip = if lx.at(1) == '\n' {
                    2
                } else if lx.at(1) == '\r' && lx.at(2) == '\n' {
                    3
                } else {
                    return Err(lx.err("unexpected backslash"));
                };
                lx.i += skip;
                lx.line += 1;
            }
            '\'' | '"' => {
                let line = lx.line;
                let s = lx.string(false)?;
                push(&mut toks, Tok::Str(s), line);
            }
            c if c.is_ascii_digit() || (c == '.' && lx.at(1).is_ascii_digit()) => {
                let line = lx.line;
                let t = lx.number()?;
                push(&mut toks, t, line);
            }
            c if c.is_alphabetic() || c == '_' => {
                let mut name = String::new();
                while lx.at(0).is_alphanumeric() || lx.at(0) == '_' {
                    name.push(lx.at(0));
                    lx.i += 1;
                }
                let line = lx.line;
                let lower = name.to_ascii_lowercase();
                let prefix = matches!(
                    lower.as_str(),
                    "r" | "u" | "f" | "b" | "rb" | "br" | "fr" | "rf"
                );
                if prefix && matches!(lx.at(0), '\'' | '"') {
                    let raw = lower.contains('r');
                    let s = lx.string(raw)?;
                    if lower.contains('f') {
                        push(&mut toks, Tok::FStr(s), line);
                    } else {
                        push(&mut toks, Tok::Str(s), line);
                    }
                } else {
                    push(&mut toks, Tok::Name(name), line);
                }
            }
            _ => {
                let op = OPS
                    .iter()
                    .chain(OTHER_OPS.iter())
                    .find(|op| op.chars().enumerate().all(|(k, oc)| lx.at(k) == oc));
                let Some(op) = op else {
                    return Err(lx.err(format!("unexpected character {c:?}")));
                };
                match *op {
                    "(" | "[" | "{" => {
                        brackets += 1;
                        if brackets > limits.max_nesting {
                            return Err(PyFailure::at(
                                lx.line,
                                PyError::TooDeep(limits.max_nesting),
                            ));
                        }
                    }
                    ")" | "]" | "}" => brackets = brackets.saturating_sub(1),
                    _ => {}
                }
                lx.i += op.chars().count();
                push(&mut toks, Tok::Op(op), lx.line);
            }
        }
    }
    if brackets > 0 {
        return Err(lx.err("unclosed bracket"));
    }
    if toks.last().is_some_and(|t| t.tok != Tok::Newline) {
        push(&mut toks, Tok::Newline, lx.line);
    }
    for _ in 1..indents.len() {
        push(&mut toks, Tok::Dedent, lx.line);
    }
    push(&mut toks, Tok::End, lx.line);
    let _ = lx.limits;
    Ok(toks)
}

// ---------------------------------------------------------------------------
// Syntax tree

#[derive(Debug, Clone, Copy, PartialEq, Eq)]
enum BinOp {
    Add,
    Sub,
    Mul,
    Div,
    FloorDiv,
    Mod,
    Pow,
    BitAnd,
    BitOr,
    BitXor,
    LShift,
    RShift,
}

#[derive(Debug, Clone, Copy, PartialEq, Eq)]
enum CmpOp {
    Lt,
    Gt,
    Le,
    Ge,
    Eq,
    Ne,
    In,
    NotIn,
    Is,
    IsNot,
}

#[derive(Debug, Clone)]
enum Expr {
    Const(Value),
    Name(String),
    List(Vec<Expr>),
    Tuple(Vec<Expr>),
    Dict(Vec<(Expr, Expr)>),
    Set(Vec<Expr>),
    Neg(Box<Expr>),
    Invert(Box<Expr>),
    Pos(Box<Expr>),
    Not(Box<Expr>),
    Chain(Box<Expr>, Vec<(BinOp, Expr)>),
    Pow(Box<Expr>, Box<Expr>),
    And(Vec<Expr>),
    Or(Vec<Expr>),
    Compare(Box<Expr>, Vec<(CmpOp, Expr)>),
    IfElse(Box<Expr>, Box<Expr>, Box<Expr>),
    Call(Box<Expr>, Vec<Expr>, Vec<(String, Expr)>),
    Attr(Box<Expr>, String),
    Index(Box<Expr>, Box<Expr>),
    Slice(Box<Expr>, [Option<Box<Expr>>; 3]),
    Comp(Box<Expr>, Vec<Clause>),
    SetComp(Box<Expr>, Vec<Clause>),
    /// `{k: v for ...}`; the element is the tuple `(k, v)`.
    DictComp(Box<Expr>, Vec<Clause>),
    Lambda(Rc<FuncDef>),
    FStr(Vec<FPart>),
}

#[derive(Debug, Clone)]
enum Clause {
    For(Target, Expr),
    If(Expr),
}

#[derive(Debug, Clone)]
enum FPart {
    Lit(String),
    Field(Expr, String),
}

#[derive(Debug, Clone)]
enum Target {
    Name(String),
    Item(String, Expr),
    /// `xs[a:b:c] = ...` on the list variable `xs`.
    Slice(String, Box<[Option<Expr>; 3]>),
    Tuple(Vec<Target>),
}

#[derive(Debug, Clone)]
struct Stmt {
    line: usize,
    kind: StmtKind,
}

#[derive(Debug, Clone)]
enum StmtKind {
    Expr(Expr),
    Assign(Vec<Target>, Expr),
    Aug(Target, BinOp, Expr),
    If(Expr, Vec<Stmt>, Vec<Stmt>),
    /// The condition, the body, and the `else` block (run unless `break` ended it).
    While(Expr, Vec<Stmt>, Vec<Stmt>),
    For(Target, Expr, Vec<Stmt>, Vec<Stmt>),
    Def(Rc<FuncDef>),
    Return(Option<Expr>),
    Pass,
    Break,
    Continue,
    Assert(Expr),
    Try(Box<TryStmt>),
    /// `raise`, `raise Class` or `raise Class(message)` (`from ...` is ignored).
    Raise(Option<(String, Option<Expr>)>),
}

#[derive(Debug, Clone)]
struct TryStmt {
    body: Vec<Stmt>,
    handlers: Vec<Handler>,
    orelse: Vec<Stmt>,
    finally: Vec<Stmt>,
}

/// `except (A, B) as name:`; no classes for a bare `except:`.
#[derive(Debug, Clone)]
struct Handler {
    classes: Vec<String>,
    name: Option<String>,
    body: Vec<Stmt>,
}

#[derive(Debug)]
struct FuncDef {
    name: String,
    params: Vec<(String, Option<Expr>)>,
    body: Vec<Stmt>,
    /// Names the body uses that are not its parameters: what a function defined
    /// inside another one captures from it (defaults are evaluated where it is defined).
    free: Vec<String>,
}

impl FuncDef {
    fn new(name: String, params: Vec<(String, Option<Expr>)>, body: Vec<Stmt>) -> Self {
        let mut names = Vec::new();
        for s in &body {
            names_in_stmt(s, &mut names);
        }
        names.sort();
        names.dedup();
        names.retain(|n| !params.iter().any(|(p, _)| p == n));
        Self {
            name,
            params,
            body,
            free: names,
        }
    }
}

/// The names a statement reads or changes in place (recursion bounded by the parser's
/// nesting limit).
fn names_in_stmt(s: &Stmt, out: &mut Vec<String>) {
    let block = |b: &[Stmt], out: &mut Vec<String>| {
        for s in b {
            names_in_stmt(s, out);
        }
    };
    match &s.kind {
        StmtKind::Expr(e) | StmtKind::Assert(e) | StmtKind::Return(Some(e)) => {
            names_in_expr(e, out);
        }
        StmtKind::Assign(targets, e) => {
            for t in targets {
                names_in_target(t, out);
            }
            names_in_expr(e, out);
        }
        StmtKind::Aug(t, _, e) => {
            names_in_target(t, out);
            names_in_expr(e, out);
        }
        StmtKind::If(c, body, orelse) => {
            names_in_expr(c, out);
            block(body, out);
            block(orelse, out);
        }
        StmtKind::While(c, body, orelse) => {
            names_in_expr(c, out);
            block(body, out);
            block(orelse, out);
        }
        StmtKind::For(t, e, body, orelse) => {
            names_in_target(t, out);
            names_in_expr(e, out);
            block(body, out);
            block(orelse, out);
        }
        StmtKind::Def(f) => out.extend(f.free.iter().cloned()),
        StmtKind::Try(t) => {
            block(&t.body, out);
            for h in &t.handlers {
                block(&h.body, out);
            }
            block(&t.orelse, out);
            block(&t.finally, out);
        }
        StmtKind::Raise(Some((class, message))) => {
            out.push(class.clone());
            if let Some(m) = message {
                names_in_expr(m, out);
            }
        }
        StmtKind::Return(None)
        | StmtKind::Raise(None)
        | StmtKind::Pass
        | StmtKind::Break
        | StmtKind::Continue => {}
    }
}

fn names_in_target(t: &Target, out: &mut Vec<String>) {
    match t {
        Target::Name(_) => {}
        Target::Item(n, e) => {
            out.push(n.clone());
            names_in_expr(e, out);
        }
        Target::Slice(n, parts) => {
            out.push(n.clone());
            for p in parts.iter().flatten() {
                names_in_expr(p, out);
            }
        }
        Target::Tuple(items) => {
            for t in items {
                names_in_target(t, out);
            }
        }
    }
}

fn names_in_expr(e: &Expr, out: &mut Vec<String>) {
    let all = |items: &[Expr], out: &mut Vec<String>| {
        for e in items {
            names_in_expr(e, out);
        }
    };
    let clauses = |cs: &[Clause], out: &mut Vec<String>| {
        for c in cs {
            match c {
                Clause::For(t, e) => {
                    names_in_target(t, out);
                    names_in_expr(e, out);
                }
                Clause::If(e) => names_in_expr(e, out),
            }
        }
    };
    match e {
        Expr::Const(_) => {}
        Expr::Name(n) => out.push(n.clone()),
        Expr::List(items)
        | Expr::Tuple(items)
        | Expr::Set(items)
        | Expr::And(items)
        | Expr::Or(items) => {
            all(items, out);
        }
        Expr::Dict(pairs) => {
            for (k, v) in pairs {
                names_in_expr(k, out);
                names_in_expr(v, out);
            }
        }
        Expr::Neg(x) | Expr::Pos(x) | Expr::Not(x) | Expr::Invert(x) | Expr::Attr(x, _) => {
            names_in_expr(x, out);
        }
        Expr::Chain(first, rest) => {
            names_in_expr(first, out);
            for (_, e) in rest {
                names_in_expr(e, out);
            }
        }
        Expr::Compare(first, rest) => {
            names_in_expr(first, out);
            for (_, e) in rest {
                names_in_expr(e, out);
            }
        }
        Expr::Pow(a, b) | Expr::Index(a, b) => {
            names_in_expr(a, out);
            names_in_expr(b, out);
        }
        Expr::IfElse(a, b, c) => {
            names_in_expr(a, out);
            names_in_expr(b, out);
            names_in_expr(c, out);
        }
        Expr::Call(f, args, kwargs) => {
            names_in_expr(f, out);
            all(args, out);
            for (_, v) in kwargs {
                names_in_expr(v, out);
            }
        }
        Expr::Slice(base, parts) => {
            names_in_expr(base, out);
            for p in parts.iter().flatten() {
                names_in_expr(p, out);
            }
        }
        Expr::Comp(elt, cs) | Expr::SetComp(elt, cs) | Expr::DictComp(elt, cs) => {
            names_in_expr(elt, out);
            clauses(cs, out);
        }
        Expr::Lambda(f) => out.extend(f.free.iter().cloned()),
        Expr::FStr(parts) => {
            for p in parts {
                if let FPart::Field(e, _) = p {
                    names_in_expr(e, out);
                }
            }
        }
    }
}

const KEYWORDS: [&str; 35] = [
    "False", "None", "True", "and", "as", "assert", "async", "await", "break", "class", "continue",
    "def", "del", "elif", "else", "except", "finally", "for", "from", "global", "if", "import",
    "in", "is", "lambda", "nonlocal", "not", "or", "pass", "raise", "return", "try", "while",
    "with", "yield",
];

// ---------------------------------------------------------------------------
// Parser

type PResult<T> = Result<T, PyFailure>;
type KwArgs = Vec<(String, Expr)>;

struct Parser<'a> {
    toks: Vec<Token>,
    pos: usize,
    depth: usize,
    limits: &'a Limits,
}

impl<'a> Parser<'a> {
    fn new(toks: Vec<Token>, limits: &'a Limits) -> Self {
        Self {
            toks,
            pos: 0,
            depth: 0,
            limits,
        }
    }

    fn peek(&self) -> &Tok {
        self.toks.get(self.pos).map_or(&Tok::End, |t| &t.tok)
    }
    fn peek_at(&self, k: usize) -> &Tok {
        self.toks.get(self.pos + k).map_or(&Tok::End, |t| &t.tok)
    }
    fn line(&self) -> usize {
        self.toks
            .get(self.pos)
            .or(self.toks.last())
            .map_or(0, |t| t.line)
    }
    fn advance(&mut self) -> Tok {
        let t = self.peek().clone();
        if self.pos < self.toks.len() {
            self.pos += 1;
        }
        t
    }
    fn is_op(&self, op: &str) -> bool {
        matches!(self.peek(), Tok::Op(o) if *o == op)
    }
    fn is_kw(&self, kw: &str) -> bool {
        matches!(self.peek(), Tok::Name(n) if n == kw)
    }
    fn eat_op(&mut self, op: &str) -> bool {
        let yes = self.is_op(op);
        if yes {
            self.pos += 1;
        }
        yes
    }
    fn eat_kw(&mut self, kw: &str) -> bool {
        let yes = self.is_kw(kw);
        if yes {
            self.pos += 1;
        }
        yes
    }
    fn err(&self, message: impl Into<String>) -> PyFailure {
        PyFailure::at(self.line(), PyError::Syntax(message.into()))
    }
    fn unsupported(&self, what: impl Into<String>) -> PyFailure {
        PyFailure::at(self.line(), PyError::Unsupported(what.into()))
    }
    fn expect_op(&mut self, op: &str) -> PResult<()> {
        if self.eat_op(op) {
            Ok(())
        } else {
            Err(self.err(format!("expected `{op}`, found {}", describe(self.peek()))))
        }
    }
    fn name(&mut self) -> PResult<String> {
        match self.peek().clone() {
            Tok::Name(n) if !KEYWORDS.contains(&n.as_str()) => {
                self.pos += 1;
                Ok(n)
            }
            other => Err(self.err(format!("expected a name, found {}", describe(&other)))),
        }
    }

    /// Runs `f` one nesting level deeper; refuses to go beyond the limit.
    fn nested<T>(&mut self, f: impl FnOnce(&mut Self) -> PResult<T>) -> PResult<T> {
        if self.depth >= self.limits.max_nesting {
            return Err(PyFailure::at(
                self.line(),
                PyError::TooDeep(self.limits.max_nesting),
            ));
        }
        self.depth += 1;
        let out = f(self);
        self.depth -= 1;
        out
    }

    fn file(&mut self) -> PResult<Vec<Stmt>> {
        let mut body = Vec::new();
        loop {
            match self.peek() {
                Tok::End => return Ok(body),
                Tok::Newline => {
                    self.pos += 1;
                }
                Tok::Indent => return Err(self.err("unexpected indent")),
                _ => self.statement(&mut body)?,
            }
        }
    }

    /// One statement (a line of simple statements appends several).
    fn statement(&mut self, out: &mut Vec<Stmt>) -> PResult<()> {
        let line = self.line();
        let kw = match self.peek() {
            Tok::Name(n) => n.clone(),
            _ => String::new(),
        };
        let kind = match kw.as_str() {
            "if" => {
                self.pos += 1;
                self.if_rest()?
            }
            "while" => {
                self.pos += 1;
                let cond = self.expr()?;
                let body = self.block()?;
                let orelse = if self.eat_kw("else") {
                    self.block()?
                } else {
                    Vec::new()
                };
                StmtKind::While(cond, body, orelse)
            }
            "for" => {
                self.pos += 1;
                let target = self.target_list()?;
                if !self.eat_kw("in") {
                    return Err(self.err("expected `in`"));
                }
                let iter = self.expr_list()?;
                let body = self.block()?;
                let orelse = if self.eat_kw("else") {
                    self.block()?
                } else {
                    Vec::new()
                };
                StmtKind::For(target, iter, body, orelse)
            }
            "def" => {
                self.pos += 1;
                StmtKind::Def(Rc::new(self.def_rest()?))
            }
            "try" => {
                self.pos += 1;
                StmtKind::Try(Box::new(self.try_rest()?))
            }
            "except" | "finally" => return Err(self.err(format!("`{kw}` without `try`"))),
            "class" | "with" | "async" | "global" | "nonlocal" | "del" | "yield" => {
                return Err(self.unsupported(format!("`{kw}`")));
            }
            _ => {
                if self.is_op("@") {
                    return Err(self.unsupported("decorators"));
                }
                loop {
                    let line = self.line();
                    if let Some(kind) = self.simple()? {
                        out.push(Stmt { line, kind });
                    }
                    if !self.eat_op(";") {
                        break;
                    }
                    if matches!(self.peek(), Tok::Newline | Tok::End) {
                        break;
                    }
                }
                return self.end_of_line();
            }
        };
        out.push(Stmt { line, kind });
        Ok(())
    }

    fn end_of_line(&mut self) -> PResult<()> {
        match self.peek() {
            Tok::Newline => {
                self.pos += 1;
                Ok(())
            }
            Tok::End | Tok::Dedent => Ok(()),
            other => Err(self.err(format!("unexpected {}", describe(other)))),
        }
    }

    fn if_rest(&mut self) -> PResult<StmtKind> {
        let cond = self.expr()?;
        let body = self.block()?;
        let orelse = if self.is_kw("elif") {
            let line = self.line();
            self.pos += 1;
            let inner = self.nested(|p| p.if_rest())?;
            vec![Stmt { line, kind: inner }]
        } else if self.eat_kw("else") {
            self.block()?
        } else {
            Vec::new()
        };
        Ok(StmtKind::If(cond, body, orelse))
    }

    /// After `try`: its block, the `except` clauses, `else` and `finally`.
    fn try_rest(&mut self) -> PResult<TryStmt> {
        let body = self.block()?;
        let mut handlers = Vec::new();
        while self.eat_kw("except") {
            if self.is_op("*") {
                return Err(self.unsupported("except*"));
            }
            let mut classes = Vec::new();
            let mut name = None;
            if !self.is_op(":") {
                let items = match self.expr()? {
                    Expr::Tuple(items) => items,
                    one => vec![one],
                };
                for item in items {
                    match item {
                        Expr::Name(n) => classes.push(n),
                        _ => return Err(self.unsupported("an exception class that is not a name")),
                    }
                }
                if self.eat_kw("as") {
                    name = Some(self.name()?);
                }
            }
            let body = self.block()?;
            handlers.push(Handler {
                classes,
                name,
                body,
            });
        }
        let orelse = if !handlers.is_empty() && self.eat_kw("else") {
            self.block()?
        } else {
            Vec::new()
        };
        let has_finally = self.eat_kw("finally");
        let finally = if has_finally {
            self.block()?
        } else {
            Vec::new()
        };
        if handlers.is_empty() && !has_finally {
            return Err(self.err("expected `except` or `finally`"));
        }
        Ok(TryStmt {
            body,
            handlers,
            orelse,
            finally,
        })
    }

    fn def_rest(&mut self) -> PResult<FuncDef> {
        let name = self.name()?;
        self.expect_op("(")?;
        let mut params = Vec::new();
        while !self.is_op(")") {
            if self.is_op("*") || self.is_op("**") || self.is_op("/") {
                return Err(self.unsupported("*args, **kwargs and / in parameters"));
            }
            let p = self.name()?;
            if self.eat_op(":") {
                self.expr()?;
            }
            let default = if self.eat_op("=") {
                Some(self.expr()?)
            } else {
                None
            };
            params.push((p, default));
            if !self.eat_op(",") {
                break;
            }
        }
        self.expect_op(")")?;
        if self.eat_op("->") {
            self.expr()?;
        }
        let body = self.block()?;
        Ok(FuncDef::new(name, params, body))
    }

    /// `:` then simple statements on the same line, or an indented block.
    fn block(&mut self) -> PResult<Vec<Stmt>> {
        self.expect_op(":")?;
        self.nested(|p| {
            let mut body = Vec::new();
            if p.eat_newline() {
                if !matches!(p.peek(), Tok::Indent) {
                    return Err(p.err("expected an indented block"));
                }
                p.pos += 1;
                loop {
                    match p.peek() {
                        Tok::Dedent => {
                            p.pos += 1;
                            break;
                        }
                        Tok::End => break,
                        Tok::Newline => p.pos += 1,
                        Tok::Indent => return Err(p.err("unexpected indent")),
                        _ => p.statement(&mut body)?,
                    }
                }
            } else {
                loop {
                    let line = p.line();
                    if let Some(kind) = p.simple()? {
                        body.push(Stmt { line, kind });
                    }
                    if !p.eat_op(";") || matches!(p.peek(), Tok::Newline | Tok::End) {
                        break;
                    }
                }
                p.end_of_line()?;
            }
            if body.is_empty() {
                body.push(Stmt {
                    line: p.line(),
                    kind: StmtKind::Pass,
                });
            }
            Ok(body)
        })
    }

    fn eat_newline(&mut self) -> bool {
        if matches!(self.peek(), Tok::Newline) {
            self.pos += 1;
            true
        } else {
            false
        }
    }

    /// A simple statement; `None` for statements with no effect here (`import math`).
    fn simple(&mut self) -> PResult<Option<StmtKind>> {
        if let Tok::Name(n) = self.peek().clone() {
            match n.as_str() {
                "pass" => {
                    self.pos += 1;
                    return Ok(Some(StmtKind::Pass));
                }
                "break" => {
                    self.pos += 1;
                    return Ok(Some(StmtKind::Break));
                }
                "continue" => {
                    self.pos += 1;
                    return Ok(Some(StmtKind::Continue));
                }
                "return" => {
                    self.pos += 1;
                    if matches!(self.peek(), Tok::Newline | Tok::End | Tok::Dedent)
                        || self.is_op(";")
                    {
                        return Ok(Some(StmtKind::Return(None)));
                    }
                    return Ok(Some(StmtKind::Return(Some(self.expr_list()?))));
                }
                "raise" => {
                    self.pos += 1;
                    if matches!(self.peek(), Tok::Newline | Tok::End | Tok::Dedent)
                        || self.is_op(";")
                    {
                        return Ok(Some(StmtKind::Raise(None)));
                    }
                    let class = self.name()?;
                    if self.is_op(".") {
                        return Err(self.unsupported("raise of a dotted class"));
                    }
                    let message = if self.eat_op("(") {
                        let (args, _) = self.nested(|p| p.call_args())?;
                        args.into_iter().next()
                    } else {
                        None
                    };
                    if self.eat_kw("from") {
                        self.expr()?;
                    }
                    return Ok(Some(StmtKind::Raise(Some((class, message)))));
                }
                "assert" => {
                    self.pos += 1;
                    let e = self.expr()?;
                    if self.eat_op(",") {
                        self.expr()?;
                    }
                    return Ok(Some(StmtKind::Assert(e)));
                }
                "import" => {
                    self.pos += 1;
                    loop {
                        let m = self.name()?;
                        if m != "math" && m != "typing" {
                            return Err(self.unsupported(format!("import of `{m}`")));
                        }
                        if self.eat_kw("as") {
                            if m != "typing" {
                                return Err(self.unsupported("import ... as"));
                            }
                            self.name()?;
                        }
                        if !self.eat_op(",") {
                            break;
                        }
                    }
                    return Ok(None);
                }
                "from" => {
                    self.pos += 1;
                    let m = self.name()?;
                    if m != "math" && m != "typing" {
                        return Err(self.unsupported(format!("import from `{m}`")));
                    }
                    if !self.eat_kw("import") {
                        return Err(self.err("expected `import`"));
                    }
                    if m == "typing" {
                        // Type hints are parsed and ignored: nothing to bind.
                        self.typing_names()?;
                        return Ok(None);
                    }
                    // The names are bound to what `math.<name>` is.
                    let mut names = Vec::new();
                    if self.eat_op("*") {
                        names.extend(MATH_NAMES.iter().map(|n| n.to_string()));
                    } else {
                        let paren = self.eat_op("(");
                        loop {
                            let name = self.name()?;
                            if math_member(&name).is_none() {
                                return Err(self.unsupported(format!("math.{name}")));
                            }
                            if self.eat_kw("as") {
                                return Err(self.unsupported("import ... as"));
                            }
                            names.push(name);
                            if !self.eat_op(",") {
                                break;
                            }
                        }
                        if paren {
                            self.expect_op(")")?;
                        }
                    }
                    let values = names
                        .iter()
                        .filter_map(|n| math_member(n).map(Expr::Const))
                        .collect();
                    let targets = names.into_iter().map(Target::Name).collect();
                    return Ok(Some(StmtKind::Assign(
                        vec![Target::Tuple(targets)],
                        Expr::Tuple(values),
                    )));
                }
                _ => {}
            }
        }
        let first = self.expr_list()?;
        if self.is_op("=") {
            let mut targets = vec![self.to_target(first)?];
            let mut value;
            loop {
                self.expect_op("=")?;
                value = self.expr_list()?;
                if self.is_op("=") {
                    targets.push(self.to_target(value)?);
                } else {
                    break;
                }
            }
            return Ok(Some(StmtKind::Assign(targets, value)));
        }
        let aug = [
            ("+=", BinOp::Add),
            ("-=", BinOp::Sub),
            ("*=", BinOp::Mul),
            ("/=", BinOp::Div),
            ("//=", BinOp::FloorDiv),
            ("%=", BinOp::Mod),
            ("**=", BinOp::Pow),
            ("&=", BinOp::BitAnd),
            ("|=", BinOp::BitOr),
            ("^=", BinOp::BitXor),
            ("<<=", BinOp::LShift),
            (">>=", BinOp::RShift),
        ];
        if let Some((_, op)) = aug.iter().find(|(s, _)| self.is_op(s)) {
            self.pos += 1;
            let target = self.to_target(first)?;
            if matches!(target, Target::Tuple(_)) {
                return Err(self.err("augmented assignment to a tuple"));
            }
            let value = self.expr_list()?;
            return Ok(Some(StmtKind::Aug(target, *op, value)));
        }
        if self.eat_op(":") {
            // An annotated assignment: `total: float = 3.5`.
            self.expr()?;
            let target = self.to_target(first)?;
            if self.eat_op("=") {
                let value = self.expr_list()?;
                return Ok(Some(StmtKind::Assign(vec![target], value)));
            }
            return Ok(None);
        }
        if let Tok::Op(op) = self.peek() {
            if !matches!(*op, ";") {
                return Err(self.unsupported(format!("operator `{op}`")));
            }
        }
        Ok(Some(StmtKind::Expr(first)))
    }

    /// The names of `from typing import ...`: `*`, or names (in parentheses or not,
    /// each perhaps `as` another).
    fn typing_names(&mut self) -> PResult<()> {
        if self.eat_op("*") {
            return Ok(());
        }
        let paren = self.eat_op("(");
        loop {
            self.name()?;
            if self.eat_kw("as") {
                self.name()?;
            }
            if !self.eat_op(",") || (paren && self.is_op(")")) {
                break;
            }
        }
        if paren {
            self.expect_op(")")?;
        }
        Ok(())
    }

    fn to_target(&self, e: Expr) -> PResult<Target> {
        match e {
            Expr::Name(n) => Ok(Target::Name(n)),
            Expr::Index(base, idx) => match *base {
                Expr::Name(n) => Ok(Target::Item(n, *idx)),
                _ => Err(self.unsupported("assignment into a nested item")),
            },
            Expr::Tuple(items) | Expr::List(items) => Ok(Target::Tuple(
                items
                    .into_iter()
                    .map(|i| self.to_target(i))
                    .collect::<PResult<_>>()?,
            )),
            Expr::Attr(..) => Err(self.unsupported("assignment to an attribute")),
            Expr::Slice(base, parts) => match *base {
                Expr::Name(n) => {
                    let [a, b, c] = parts;
                    Ok(Target::Slice(
                        n,
                        Box::new([a.map(|x| *x), b.map(|x| *x), c.map(|x| *x)]),
                    ))
                }
                _ => Err(self.unsupported("assignment into a nested slice")),
            },
            _ => Err(self.err("cannot assign to this expression")),
        }
    }

    /// Targets of a `for` or a comprehension: `x`, `i, x`, `(a, b)`.
    fn target_list(&mut self) -> PResult<Target> {
        let mut items = Vec::new();
        loop {
            let e = self.or_expr_no_in()?;
            items.push(self.to_target(e)?);
            if !self.eat_op(",") || self.is_kw("in") {
                break;
            }
        }
        if items.len() == 1 {
            Ok(items.remove(0))
        } else {
            Ok(Target::Tuple(items))
        }
    }

    /// A target expression of a `for` (no comparisons, so `in` ends it).
    fn or_expr_no_in(&mut self) -> PResult<Expr> {
        self.arith()
    }

    /// `a, b, c` (a tuple when there is a comma) or one expression.
    fn expr_list(&mut self) -> PResult<Expr> {
        let first = self.expr()?;
        if !self.is_op(",") {
            return Ok(first);
        }
        let mut items = vec![first];
        while self.eat_op(",") {
            if self.ends_list() {
                break;
            }
            items.push(self.expr()?);
        }
        Ok(Expr::Tuple(items))
    }

    fn ends_list(&self) -> bool {
        matches!(self.peek(), Tok::Newline | Tok::End | Tok::Dedent)
            || ["=", ")", "]", "}", ":", ";"].iter().any(|o| self.is_op(o))
            || [
                "+=", "-=", "*=", "/=", "//=", "%=", "**=", "&=", "|=", "^=", "<<=", ">>=",
            ]
            .iter()
            .any(|o| self.is_op(o))
    }

    fn expr(&mut self) -> PResult<Expr> {
        if self.eat_kw("lambda") {
            return self.nested(|p| p.lambda_rest());
        }
        if self.is_kw("yield") || self.is_kw("await") {
            return Err(self.unsupported("yield / await"));
        }
        let body = self.or_test()?;
        if self.eat_kw("if") {
            let cond = self.or_test()?;
            if !self.eat_kw("else") {
                return Err(self.err("expected `else`"));
            }
            let orelse = self.nested(|p| p.expr())?;
            return Ok(Expr::IfElse(
                Box::new(body),
                Box::new(cond),
                Box::new(orelse),
            ));
        }
        if self.is_op(":=") {
            return Err(self.unsupported("`:=`"));
        }
        Ok(body)
    }

    /// After `lambda`: parameters (perhaps with defaults), `:`, the body.
    fn lambda_rest(&mut self) -> PResult<Expr> {
        let line = self.line();
        let mut params = Vec::new();
        while !self.is_op(":") {
            if self.is_op("*") || self.is_op("**") || self.is_op("/") {
                return Err(self.unsupported("*args, **kwargs and / in parameters"));
            }
            let p = self.name()?;
            let default = if self.eat_op("=") {
                Some(self.expr()?)
            } else {
                None
            };
            params.push((p, default));
            if !self.eat_op(",") {
                break;
            }
        }
        self.expect_op(":")?;
        let body = self.expr()?;
        let ret = Stmt {
            line,
            kind: StmtKind::Return(Some(body)),
        };
        Ok(Expr::Lambda(Rc::new(FuncDef::new(
            "<lambda>".into(),
            params,
            vec![ret],
        ))))
    }

    fn or_test(&mut self) -> PResult<Expr> {
        let first = self.and_test()?;
        if !self.is_kw("or") {
            return Ok(first);
        }
        let mut items = vec![first];
        while self.eat_kw("or") {
            items.push(self.and_test()?);
        }
        Ok(Expr::Or(items))
    }

    fn and_test(&mut self) -> PResult<Expr> {
        let first = self.not_test()?;
        if !self.is_kw("and") {
            return Ok(first);
        }
        let mut items = vec![first];
        while self.eat_kw("and") {
            items.push(self.not_test()?);
        }
        Ok(Expr::And(items))
    }

    fn not_test(&mut self) -> PResult<Expr> {
        if self.eat_kw("not") {
            let inner = self.nested(|p| p.not_test())?;
            return Ok(Expr::Not(Box::new(inner)));
        }
        self.comparison()
    }

    fn comparison(&mut self) -> PResult<Expr> {
        let first = self.bit_or()?;
        let mut rest = Vec::new();
        loop {
            let op = match self.peek() {
                Tok::Op("<") => CmpOp::Lt,
                Tok::Op(">") => CmpOp::Gt,
                Tok::Op("<=") => CmpOp::Le,
                Tok::Op(">=") => CmpOp::Ge,
                Tok::Op("==") => CmpOp::Eq,
                Tok::Op("!=") => CmpOp::Ne,
                Tok::Name(n) if n == "in" => CmpOp::In,
                Tok::Name(n)
                    if n == "not" && matches!(self.peek_at(1), Tok::Name(m) if m == "in") =>
                {
                    self.pos += 1;
                    CmpOp::NotIn
                }
                Tok::Name(n) if n == "is" => {
                    if matches!(self.peek_at(1), Tok::Name(m) if m == "not") {
                        self.pos += 1;
                        CmpOp::IsNot
                    } else {
                        CmpOp::Is
                    }
                }
                _ => break,
            };
            self.pos += 1;
            rest.push((op, self.bit_or()?));
        }
        if rest.is_empty() {
            Ok(first)
        } else {
            Ok(Expr::Compare(Box::new(first), rest))
        }
    }

    /// One level of left-associative binary operators: `next (op next)*`.
    fn binary_level(
        &mut self,
        ops: &[(&str, BinOp)],
        next: fn(&mut Self) -> PResult<Expr>,
    ) -> PResult<Expr> {
        let first = next(self)?;
        let mut rest = Vec::new();
        while let Some((_, op)) = ops.iter().find(|(o, _)| self.is_op(o)) {
            self.pos += 1;
            rest.push((*op, next(self)?));
        }
        if rest.is_empty() {
            Ok(first)
        } else {
            Ok(Expr::Chain(Box::new(first), rest))
        }
    }

    fn bit_or(&mut self) -> PResult<Expr> {
        self.binary_level(&[("|", BinOp::BitOr)], Self::bit_xor)
    }

    fn bit_xor(&mut self) -> PResult<Expr> {
        self.binary_level(&[("^", BinOp::BitXor)], Self::bit_and)
    }

    fn bit_and(&mut self) -> PResult<Expr> {
        self.binary_level(&[("&", BinOp::BitAnd)], Self::shift)
    }

    fn shift(&mut self) -> PResult<Expr> {
        self.binary_level(&[("<<", BinOp::LShift), (">>", BinOp::RShift)], Self::arith)
    }

    fn arith(&mut self) -> PResult<Expr> {
        let first = self.term()?;
        let mut rest = Vec::new();
        loop {
            let op = match self.peek() {
                Tok::Op("+") => BinOp::Add,
                Tok::Op("-") => BinOp::Sub,
                _ => break,
            };
            self.pos += 1;
            rest.push((op, self.term()?));
        }
        if rest.is_empty() {
            Ok(first)
        } else {
            Ok(Expr::Chain(Box::new(first), rest))
        }
    }

    fn term(&mut self) -> PResult<Expr> {
        let first = self.factor()?;
        let mut rest = Vec::new();
        loop {
            let op = match self.peek() {
                Tok::Op("*") => BinOp::Mul,
                Tok::Op("/") => BinOp::Div,
                Tok::Op("//") => BinOp::FloorDiv,
                Tok::Op("%") => BinOp::Mod,
                Tok::Op("@") => return Err(self.unsupported("operator `@`")),
                _ => break,
            };
            self.pos += 1;
            rest.push((op, self.factor()?));
        }
        if rest.is_empty() {
            Ok(first)
        } else {
            Ok(Expr::Chain(Box::new(first), rest))
        }
    }

    fn factor(&mut self) -> PResult<Expr> {
        if self.eat_op("-") {
            let inner = self.nested(|p| p.factor())?;
            return Ok(Expr::Neg(Box::new(inner)));
        }
        if self.eat_op("+") {
            let inner = self.nested(|p| p.factor())?;
            return Ok(Expr::Pos(Box::new(inner)));
        }
        if self.eat_op("~") {
            let inner = self.nested(|p| p.factor())?;
            return Ok(Expr::Invert(Box::new(inner)));
        }
        self.power()
    }

    fn power(&mut self) -> PResult<Expr> {
        let base = self.trailers()?;
        if self.eat_op("**") {
            let exp = self.nested(|p| p.factor())?;
            return Ok(Expr::Pow(Box::new(base), Box::new(exp)));
        }
        Ok(base)
    }

    fn trailers(&mut self) -> PResult<Expr> {
        let mut e = self.atom()?;
        let mut count = 0usize;
        loop {
            if self.is_op("(") || self.is_op("[") || self.is_op(".") {
                count += 1;
                if self.depth + count > self.limits.max_nesting {
                    return Err(PyFailure::at(
                        self.line(),
                        PyError::TooDeep(self.limits.max_nesting),
                    ));
                }
            }
            if self.eat_op("(") {
                let (args, kwargs) = self.nested(|p| p.call_args())?;
                e = Expr::Call(Box::new(e), args, kwargs);
            } else if self.eat_op("[") {
                e = self.nested(|p| p.subscript(e))?;
            } else if self.eat_op(".") {
                let name = self.name()?;
                e = Expr::Attr(Box::new(e), name);
            } else {
                return Ok(e);
            }
        }
    }

    fn call_args(&mut self) -> PResult<(Vec<Expr>, KwArgs)> {
        let mut args = Vec::new();
        let mut kwargs = Vec::new();
        while !self.is_op(")") {
            if self.is_op("*") || self.is_op("**") {
                return Err(self.unsupported("*args and **kwargs in calls"));
            }
            if let (Tok::Name(n), Tok::Op("=")) = (self.peek().clone(), self.peek_at(1)) {
                self.pos += 2;
                kwargs.push((n, self.expr()?));
            } else {
                let e = self.expr()?;
                if self.is_kw("for") {
                    let clauses = self.comp_clauses()?;
                    args.push(Expr::Comp(Box::new(e), clauses));
                } else {
                    args.push(e);
                }
            }
            if !self.eat_op(",") {
                break;
            }
        }
        self.expect_op(")")?;
        Ok((args, kwargs))
    }

    fn subscript(&mut self, base: Expr) -> PResult<Expr> {
        let mut parts: [Option<Box<Expr>>; 3] = [None, None, None];
        let mut k = 0usize;
        let mut sliced = false;
        loop {
            if self.is_op(":") {
                sliced = true;
                self.pos += 1;
                k += 1;
                if k > 2 {
                    return Err(self.err("too many `:` in a slice"));
                }
                continue;
            }
            if self.is_op("]") {
                break;
            }
            let e = self.expr_list()?;
            if let Some(slot) = parts.get_mut(k) {
                if slot.is_some() {
                    return Err(self.err("bad subscript"));
                }
                *slot = Some(Box::new(e));
            }
        }
        self.expect_op("]")?;
        if sliced {
            return Ok(Expr::Slice(Box::new(base), parts));
        }
        match parts {
            [Some(i), None, None] => Ok(Expr::Index(Box::new(base), i)),
            _ => Err(self.err("empty subscript")),
        }
    }

    fn comp_clauses(&mut self) -> PResult<Vec<Clause>> {
        let mut clauses = Vec::new();
        loop {
            if self.eat_kw("for") {
                let target = self.target_list()?;
                if !self.eat_kw("in") {
                    return Err(self.err("expected `in`"));
                }
                clauses.push(Clause::For(target, self.or_test()?));
            } else if self.eat_kw("if") {
                clauses.push(Clause::If(self.or_test()?));
            } else {
                return Ok(clauses);
            }
            if self.depth + clauses.len() > self.limits.max_nesting {
                return Err(PyFailure::at(
                    self.line(),
                    PyError::TooDeep(self.limits.max_nesting),
                ));
            }
        }
    }

    fn atom(&mut self) -> PResult<Expr> {
        let tok = self.advance();
        match tok {
            Tok::Int(i) => Ok(Expr::Const(Value::Int(i))),
            Tok::Float(f) => Ok(Expr::Const(Value::Float(f))),
            Tok::Str(s) => {
                let mut s = s;
                let mut parts: Vec<FPart> = Vec::new();
                let mut fstring = false;
                loop {
                    match self.peek().clone() {
                        Tok::Str(more) => {
                            self.pos += 1;
                            s.push_str(&more);
                        }
                        Tok::FStr(more) => {
                            self.pos += 1;
                            fstring = true;
                            parts.push(FPart::Lit(std::mem::take(&mut s)));
                            parts.extend(self.fstring_parts(&more)?);
                        }
                        _ => break,
                    }
                }
                if fstring {
                    parts.push(FPart::Lit(s));
                    Ok(Expr::FStr(parts))
                } else {
                    Ok(Expr::Const(Value::Str(Rc::from(s.as_str()))))
                }
            }
            Tok::FStr(s) => {
                let mut parts = self.fstring_parts(&s)?;
                while let Tok::Str(more) | Tok::FStr(more) = self.peek().clone() {
                    let f = matches!(self.peek(), Tok::FStr(_));
                    self.pos += 1;
                    if f {
                        parts.extend(self.fstring_parts(&more)?);
                    } else {
                        parts.push(FPart::Lit(more));
                    }
                }
                Ok(Expr::FStr(parts))
            }
            Tok::Name(n) => match n.as_str() {
                "True" => Ok(Expr::Const(Value::Bool(true))),
                "False" => Ok(Expr::Const(Value::Bool(false))),
                "None" => Ok(Expr::Const(Value::None)),
                "lambda" => Err(self.err("a lambda here needs parentheses")),
                kw if KEYWORDS.contains(&kw) => {
                    self.pos = self.pos.saturating_sub(1);
                    Err(self.err(format!("unexpected keyword `{kw}`")))
                }
                _ => Ok(Expr::Name(n)),
            },
            Tok::Op("(") => self.nested(|p| {
                if p.eat_op(")") {
                    return Ok(Expr::Tuple(Vec::new()));
                }
                let first = p.expr()?;
                if p.is_kw("for") {
                    let clauses = p.comp_clauses()?;
                    p.expect_op(")")?;
                    return Ok(Expr::Comp(Box::new(first), clauses));
                }
                if p.eat_op(")") {
                    return Ok(first);
                }
                let mut items = vec![first];
                while p.eat_op(",") {
                    if p.is_op(")") {
                        break;
                    }
                    items.push(p.expr()?);
                }
                p.expect_op(")")?;
                Ok(Expr::Tuple(items))
            }),
            Tok::Op("[") => self.nested(|p| {
                let mut items = Vec::new();
                if p.eat_op("]") {
                    return Ok(Expr::List(items));
                }
                let first = p.expr()?;
                if p.is_kw("for") {
                    let clauses = p.comp_clauses()?;
                    p.expect_op("]")?;
                    return Ok(Expr::Comp(Box::new(first), clauses));
                }
                items.push(first);
                while p.eat_op(",") {
                    if p.is_op("]") {
                        break;
                    }
                    items.push(p.expr()?);
                }
                p.expect_op("]")?;
                Ok(Expr::List(items))
            }),
            Tok::Op("{") => self.nested(|p| {
                if p.eat_op("}") {
                    return Ok(Expr::Dict(Vec::new()));
                }
                if p.is_op("**") {
                    return Err(p.unsupported("`**` in a dict"));
                }
                let first = p.expr()?;
                if !p.eat_op(":") {
                    // A set: `{1, 2}` or `{x for x in xs}`.
                    if p.is_kw("for") {
                        let clauses = p.comp_clauses()?;
                        p.expect_op("}")?;
                        return Ok(Expr::SetComp(Box::new(first), clauses));
                    }
                    let mut items = vec![first];
                    while p.eat_op(",") {
                        if p.is_op("}") {
                            break;
                        }
                        items.push(p.expr()?);
                    }
                    p.expect_op("}")?;
                    return Ok(Expr::Set(items));
                }
                let v = p.expr()?;
                if p.is_kw("for") {
                    let clauses = p.comp_clauses()?;
                    p.expect_op("}")?;
                    let pair = Expr::Tuple(vec![first, v]);
                    return Ok(Expr::DictComp(Box::new(pair), clauses));
                }
                let mut items = vec![(first, v)];
                while p.eat_op(",") {
                    if p.is_op("}") {
                        break;
                    }
                    let k = p.expr()?;
                    p.expect_op(":")?;
                    items.push((k, p.expr()?));
                }
                p.expect_op("}")?;
                Ok(Expr::Dict(items))
            }),
            Tok::Op("...") => Ok(Expr::Const(Value::None)),
            other => {
                self.pos = self.pos.saturating_sub(1);
                Err(self.err(format!("unexpected {}", describe(&other))))
            }
        }
    }

    /// The literal text and `{expr[:spec]}` fields of an f-string.
    fn fstring_parts(&mut self, s: &str) -> PResult<Vec<FPart>> {
        let chars: Vec<char> = s.chars().collect();
        let mut parts = Vec::new();
        let mut lit = String::new();
        let mut i = 0usize;
        let at = |k: usize| chars.get(k).copied().unwrap_or('\0');
        while i < chars.len() {
            let c = at(i);
            if c == '{' && at(i + 1) == '{' {
                lit.push('{');
                i += 2;
                continue;
            }
            if c == '}' && at(i + 1) == '}' {
                lit.push('}');
                i += 2;
                continue;
            }
            if c != '{' {
                lit.push(c);
                i += 1;
                continue;
            }
            // A field: up to the matching `}`; a top-level `:` or `!` starts the spec.
            let mut j = i + 1;
            let mut depth = 0usize;
            let mut expr = String::new();
            let mut spec = String::new();
            let mut in_spec = false;
            let mut quote: Option<char> = None;
            loop {
                if j >= chars.len() {
                    return Err(self.err("unterminated f-string field"));
                }
                let d = at(j);
                if let Some(q) = quote {
                    if d == q {
                        quote = None;
                    }
                } else if !in_spec && matches!(d, '\'' | '"') {
                    quote = Some(d);
                } else if !in_spec && matches!(d, '(' | '[' | '{') {
                    depth += 1;
                } else if !in_spec && matches!(d, ')' | ']') {
                    depth = depth.saturating_sub(1);
                } else if d == '}' {
                    if depth == 0 {
                        break;
                    }
                    depth -= 1;
                } else if depth == 0 && !in_spec && (d == ':' || (d == '!' && at(j + 1) != '=')) {
                    in_spec = true;
                    if d == '!' {
                        // `!r` / `!s` conversions: skip the letter, a spec may follow.
                        j += 2;
                        if at(j) == ':' {
                            j += 1;
                        }
                        continue;
                    }
                    j += 1;
                    continue;
                }
                if in_spec {
                    spec.push(d);
                } else {
                    expr.push(d);
                }
                j += 1;
            }
            i = j + 1;
            let expr = expr.trim_end_matches('=').to_string();
            let toks = tokenize(&expr, self.limits)?;
            let line = self.line();
            let toks: Vec<Token> = toks
                .into_iter()
                .filter(|t| !matches!(t.tok, Tok::Newline))
                .map(|t| Token { tok: t.tok, line })
                .collect();
            let saved_toks = std::mem::replace(&mut self.toks, toks);
            let saved_pos = std::mem::replace(&mut self.pos, 0);
            let parsed = self.nested(|p| {
                let e = p.expr_list()?;
                if !matches!(p.peek(), Tok::End) {
                    return Err(p.err("bad f-string field"));
                }
                Ok(e)
            });
            self.toks = saved_toks;
            self.pos = saved_pos;
            parts.push(FPart::Lit(std::mem::take(&mut lit)));
            parts.push(FPart::Field(parsed?, spec));
        }
        parts.push(FPart::Lit(lit));
        Ok(parts)
    }
}

fn describe(t: &Tok) -> String {
    match t {
        Tok::Name(n) => format!("`{n}`"),
        Tok::Int(i) => format!("`{i}`"),
        Tok::Float(f) => format!("`{f}`"),
        Tok::Str(_) | Tok::FStr(_) => "a string".into(),
        Tok::Op(o) => format!("`{o}`"),
        Tok::Newline => "the end of the line".into(),
        Tok::Indent => "an indent".into(),
        Tok::Dedent => "a dedent".into(),
        Tok::End => "the end of the program".into(),
    }
}

// ---------------------------------------------------------------------------
// Values

#[derive(Debug, Clone)]
struct Seq {
    items: Vec<Value>,
    depth: u32,
}

#[derive(Debug, Clone)]
enum Value {
    None,
    Bool(bool),
    Int(i128),
    Float(f64),
    Str(Rc<str>),
    List(Rc<Seq>),
    Tuple(Rc<Seq>),
    /// Keys and values, in insertion order (small dicts; linear lookup).
    Dict(Rc<Seq>),
    /// Distinct hashable elements, kept in [`set_order`] (binary search).
    Set(Rc<Seq>),
    Range(i128, i128, i128),
    Func(Rc<Function>),
    Method(Rc<Method>),
    Builtin(&'static str),
    Module,
}

/// A function value: its definition, the frame of the function it was made in (by
/// index and activation id, see [`Scope`]), and what it used of that frame's
/// variables, as they were then (for calls after that function returned).
#[derive(Debug)]
struct Function {
    def: Rc<FuncDef>,
    /// The parameters' default values, evaluated when the function was made.
    defaults: Vec<Option<Value>>,
    home: Option<(usize, u64)>,
    env: Vec<(String, Value)>,
    depth: u32,
}

/// A method as a value: `d.get` (bound to `d`), or `str.lower` (of the class `str`,
/// the object comes first among the arguments). Only methods that do not change
/// their object are called this way.
#[derive(Debug)]
struct Method {
    receiver: Option<Value>,
    class: &'static str,
    name: String,
}

/// The methods that change their object: called on a variable only.
const MUTATING: [&str; 11] = [
    "append", "extend", "pop", "insert", "remove", "sort", "reverse", "clear", "update", "add",
    "discard",
];

impl Value {
    fn type_name(&self) -> &'static str {
        match self {
            Value::None => "None",
            Value::Bool(_) => "bool",
            Value::Int(_) => "int",
            Value::Float(_) => "float",
            Value::Str(_) => "str",
            Value::List(_) => "list",
            Value::Tuple(_) => "tuple",
            Value::Dict(_) => "dict",
            Value::Set(_) => "set",
            Value::Range(..) => "range",
            Value::Func(_) | Value::Builtin(_) => "function",
            Value::Method(_) => "method",
            Value::Module => "module",
        }
    }

    fn depth(&self) -> u32 {
        match self {
            Value::List(s) | Value::Tuple(s) | Value::Dict(s) | Value::Set(s) => s.depth,
            Value::Func(f) => f.depth,
            Value::Method(m) => m.receiver.as_ref().map_or(0, |r| r.depth() + 1),
            _ => 0,
        }
    }

    fn truthy(&self) -> bool {
        match self {
            Value::None => false,
            Value::Bool(b) => *b,
            Value::Int(i) => *i != 0,
            Value::Float(f) => *f != 0.0,
            Value::Str(s) => !s.is_empty(),
            Value::List(s) | Value::Tuple(s) => !s.items.is_empty(),
            Value::Dict(s) | Value::Set(s) => !s.items.is_empty(),
            Value::Range(a, b, st) => range_len(*a, *b, *st) > 0,
            Value::Func(_) | Value::Method(_) | Value::Builtin(_) | Value::Module => true,
        }
    }

    /// Ints and bools as `i128`.
    fn as_int(&self) -> Option<i128> {
        match self {
            Value::Int(i) => Some(*i),
            Value::Bool(b) => Some(i128::from(*b)),
            _ => None,
        }
    }

    fn as_f64(&self) -> Option<f64> {
        match self {
            Value::Float(f) => Some(*f),
            other => other.as_int().map(|i| i as f64),
        }
    }

    fn is_number(&self) -> bool {
        matches!(self, Value::Int(_) | Value::Float(_) | Value::Bool(_))
    }
}

fn range_len(a: i128, b: i128, step: i128) -> i128 {
    if step > 0 && a < b {
        (b - a - 1) / step + 1
    } else if step < 0 && a > b {
        (a - b - 1) / (-step) + 1
    } else {
        0
    }
}

/// A float as Python's `repr` shows it: the shortest digits that read back as it,
/// in fixed point from 1e-4 to 1e16 (with at least one decimal), else as `1.5e+16`.
fn float_text(f: f64) -> String {
    if f.is_nan() {
        return "nan".into();
    }
    if f.is_infinite() {
        return if f > 0.0 { "inf" } else { "-inf" }.into();
    }
    if f == 0.0 {
        return if f.is_sign_negative() { "-0.0" } else { "0.0" }.into();
    }
    let sign = if f < 0.0 { "-" } else { "" };
    let sci = format!("{:e}", f.abs());
    let (mantissa, exp) = sci.split_once('e').unwrap_or((sci.as_str(), "0"));
    let exp: i32 = exp.parse().unwrap_or(0);
    let digits: String = mantissa.chars().filter(|c| *c != '.').collect();
    let body = if (-4..16).contains(&exp) {
        match usize::try_from(exp) {
            Ok(e) => {
                let int: String = digits
                    .chars()
                    .chain(std::iter::repeat('0'))
                    .take(e + 1)
                    .collect();
                let frac: String = digits.chars().skip(e + 1).collect();
                let frac = if frac.is_empty() {
                    "0".to_string()
                } else {
                    frac
                };
                format!("{int}.{frac}")
            }
            Err(_) => format!("0.{}{digits}", "0".repeat(exp.unsigned_abs() as usize - 1)),
        }
    } else {
        let sign = if exp < 0 { '-' } else { '+' };
        format!("{mantissa}e{sign}{:02}", exp.unsigned_abs())
    };
    format!("{sign}{body}")
}

const MATH_NAMES: [&str; 17] = [
    "floor",
    "ceil",
    "sqrt",
    "trunc",
    "fabs",
    "pow",
    "exp",
    "log",
    "log10",
    "gcd",
    "lcm",
    "factorial",
    "prod",
    "isclose",
    "pi",
    "e",
    "inf",
];

/// What `math.<name>` is: a function (as a built-in name) or a constant.
fn math_member(name: &str) -> Option<Value> {
    Some(match name {
        "floor" => Value::Builtin("math.floor"),
        "ceil" => Value::Builtin("math.ceil"),
        "sqrt" => Value::Builtin("math.sqrt"),
        "trunc" => Value::Builtin("math.trunc"),
        "fabs" => Value::Builtin("math.fabs"),
        "pow" => Value::Builtin("math.pow"),
        "exp" => Value::Builtin("math.exp"),
        "log" => Value::Builtin("math.log"),
        "log10" => Value::Builtin("math.log10"),
        "gcd" => Value::Builtin("math.gcd"),
        "lcm" => Value::Builtin("math.lcm"),
        "factorial" => Value::Builtin("math.factorial"),
        "prod" => Value::Builtin("math.prod"),
        "isclose" => Value::Builtin("math.isclose"),
        "pi" => Value::Float(std::f64::consts::PI),
        "e" => Value::Float(std::f64::consts::E),
        "inf" => Value::Float(f64::INFINITY),
        _ => return None,
    })
}

const BUILTINS: [&str; 34] = [
    "format",
    "all",
    "any",
    "chr",
    "ord",
    "map",
    "filter",
    "bin",
    "hex",
    "oct",
    "set",
    "type",
    "print",
    "len",
    "sum",
    "min",
    "max",
    "abs",
    "round",
    "int",
    "float",
    "str",
    "bool",
    "list",
    "tuple",
    "range",
    "sorted",
    "reversed",
    "enumerate",
    "zip",
    "divmod",
    "pow",
    "dict",
    "isinstance",
];

// ---------------------------------------------------------------------------
// Interpreter

type EResult<T> = Result<T, PyError>;

enum Flow {
    Normal,
    Break,
    Continue,
    Return(Value),
}

/// What a frame's names resolve to beyond it. A function defined inside another one
/// sees that function's variables as Python does (their current values, changed in
/// place by either) for as long as that call runs: `home` is its frame, by index and
/// activation id. After it returned, the function has what it captured when it was
/// made (`borrowed`), which it may read but not change in place: that change would be
/// lost, where Python's would last.
#[derive(Debug, Default)]
struct Scope {
    id: u64,
    home: Option<(usize, u64)>,
    borrowed: Vec<String>,
}

struct Interp<'a> {
    limits: &'a Limits,
    steps: u64,
    alloc: u64,
    frames: Vec<HashMap<String, Value>>,
    /// Per frame, where its names are looked up after it (see [`Scope`]).
    scopes: Vec<Scope>,
    next_scope: u64,
    /// The exceptions being handled (innermost last), with the name an `except ... as`
    /// bound: what a bare `raise` raises again.
    handling: Vec<(Option<String>, PyError)>,
    line: usize,
    printed: Vec<String>,
}

impl<'a> Interp<'a> {
    fn new(limits: &'a Limits) -> Self {
        Self {
            limits,
            steps: 0,
            alloc: 0,
            frames: vec![HashMap::new()],
            scopes: vec![Scope::default()],
            next_scope: 1,
            handling: Vec::new(),
            line: 0,
            printed: Vec::new(),
        }
    }

    fn fail(&self, error: PyError) -> PyFailure {
        PyFailure::at(self.line, error)
    }

    fn global(&self, name: &str) -> Option<Value> {
        self.frames.first().and_then(|f| f.get(name)).cloned()
    }

    fn last_printed_number(&self) -> Option<Number> {
        self.printed.iter().rev().find_map(|line| {
            line.split_whitespace()
                .rev()
                .find_map(|w| parse_number_text(w.trim_end_matches(['.', ',', ';', ')'])))
        })
    }

    fn tick(&mut self, n: u64) -> EResult<()> {
        self.steps = self.steps.saturating_add(n);
        if self.steps > self.limits.max_steps {
            return Err(PyError::Steps(self.limits.max_steps));
        }
        Ok(())
    }

    /// Accounts for `n` new elements or characters.
    fn alloc(&mut self, n: usize) -> EResult<()> {
        if n > self.limits.max_len {
            return Err(PyError::Memory(format!(
                "a value of {n} elements, over {}",
                self.limits.max_len
            )));
        }
        self.charge(n)
    }

    /// Accounts for `n` elements copied (no length check: the copy's length is bounded).
    fn charge(&mut self, n: usize) -> EResult<()> {
        self.alloc = self.alloc.saturating_add(n as u64);
        if self.alloc > self.limits.max_alloc {
            return Err(PyError::Memory("too much allocated over the run".into()));
        }
        self.tick(n as u64 / 8)
    }

    fn seq(&mut self, items: Vec<Value>) -> EResult<Rc<Seq>> {
        self.alloc(items.len())?;
        let depth = 1 + items.iter().map(Value::depth).max().unwrap_or(0);
        if depth > self.limits.max_value_depth {
            return Err(PyError::Memory("values nested too deeply".into()));
        }
        Ok(Rc::new(Seq { items, depth }))
    }

    fn list(&mut self, items: Vec<Value>) -> EResult<Value> {
        Ok(Value::List(self.seq(items)?))
    }

    fn string(&mut self, s: String) -> EResult<Value> {
        self.alloc(s.chars().count())?;
        Ok(Value::Str(Rc::from(s.as_str())))
    }

    /// Whether the frame at `index` is still the activation `id`.
    fn live(&self, (index, id): (usize, u64)) -> bool {
        self.scopes.get(index).is_some_and(|s| s.id == id)
    }

    /// The frame that holds the variable `name`: the current one, the frames of the
    /// functions it is defined in while they run, else the globals (`None`: nowhere).
    fn frame_of(&self, name: &str) -> Option<usize> {
        let mut index = self.frames.len().checked_sub(1)?;
        loop {
            if self.frames.get(index).is_some_and(|f| f.contains_key(name)) {
                return Some(index);
            }
            match self.scopes.get(index).and_then(|s| s.home) {
                Some(home) if home.0 < index && self.live(home) => index = home.0,
                _ => break,
            }
        }
        self.frames
            .first()
            .is_some_and(|f| f.contains_key(name))
            .then_some(0)
    }

    fn lookup(&self, name: &str) -> EResult<Value> {
        if let Some(v) = self
            .frame_of(name)
            .and_then(|i| self.frames.get(i))
            .and_then(|f| f.get(name))
        {
            return Ok(v.clone());
        }
        if let Some(b) = BUILTINS.iter().find(|b| **b == name) {
            return Ok(Value::Builtin(b));
        }
        if name == "math" {
            return Ok(Value::Module);
        }
        if name == "__name__" {
            // A program runs as a script: `if __name__ == "__main__":` blocks run.
            return Ok(Value::Str(Rc::from("__main__")));
        }
        if matches!(
            name,
            "open"
                | "exec"
                | "eval"
                | "compile"
                | "input"
                | "__import__"
                | "globals"
                | "locals"
                | "getattr"
                | "setattr"
                | "vars"
                | "dir"
                | "exit"
                | "quit"
        ) {
            return Err(PyError::Unsupported(format!("`{name}`")));
        }
        Err(PyError::Name(name.to_string()))
    }

    fn set(&mut self, name: &str, v: Value) {
        if let Some(f) = self.frames.last_mut() {
            f.insert(name.to_string(), v);
        }
        if let Some(s) = self.scopes.last_mut() {
            s.borrowed.retain(|n| n != name);
        }
    }

    /// The variable `name` for mutation in place (where [`Self::lookup`] finds it).
    fn var_mut(&mut self, name: &str) -> EResult<&mut Value> {
        let idx = self
            .frame_of(name)
            .ok_or_else(|| PyError::Name(name.to_string()))?;
        let borrowed = idx + 1 == self.frames.len()
            && self
                .scopes
                .last()
                .is_some_and(|s| s.borrowed.iter().any(|x| x == name));
        if borrowed {
            return Err(PyError::Unsupported(format!(
                "changing `{name}` of a function that has returned, in place"
            )));
        }
        self.frames
            .get_mut(idx)
            .and_then(|f| f.get_mut(name))
            .ok_or_else(|| PyError::Name(name.to_string()))
    }

    fn exec_block(&mut self, body: &[Stmt]) -> EResult<Flow> {
        for stmt in body {
            match self.exec(stmt)? {
                Flow::Normal => {}
                other => return Ok(other),
            }
        }
        Ok(Flow::Normal)
    }

    fn exec(&mut self, stmt: &Stmt) -> EResult<Flow> {
        self.line = stmt.line;
        self.tick(1)?;
        match &stmt.kind {
            StmtKind::Expr(e) => {
                self.eval(e)?;
            }
            StmtKind::Assign(targets, value) => {
                let v = self.eval(value)?;
                for t in targets {
                    self.assign(t, v.clone())?;
                }
            }
            StmtKind::Aug(target, op, value) => {
                let rhs = self.eval(value)?;
                match target {
                    Target::Name(n) => {
                        let cur = self.lookup(n)?;
                        let v = self.binop(*op, cur, rhs)?;
                        self.set(n, v);
                    }
                    Target::Item(n, idx) => {
                        let i = self.eval(idx)?;
                        let base = self.lookup(n)?;
                        let cur = self.index(&base, &i)?;
                        drop(base);
                        let v = self.binop(*op, cur, rhs)?;
                        self.set_item(n, i, v)?;
                    }
                    Target::Slice(..) => {
                        return Err(PyError::Unsupported(
                            "augmented assignment to a slice".into(),
                        ));
                    }
                    Target::Tuple(_) => {
                        return Err(PyError::Syntax("augmented assignment to a tuple".into()));
                    }
                }
            }
            StmtKind::If(cond, body, orelse) => {
                let c = self.eval(cond)?.truthy();
                return self.exec_block(if c { body } else { orelse });
            }
            StmtKind::While(cond, body, orelse) => loop {
                self.tick(1)?;
                if !self.eval(cond)?.truthy() {
                    return self.exec_block(orelse);
                }
                match self.exec_block(body)? {
                    Flow::Break => break,
                    Flow::Return(v) => return Ok(Flow::Return(v)),
                    Flow::Normal | Flow::Continue => {}
                }
            },
            StmtKind::For(target, iter, body, orelse) => {
                let it = self.eval(iter)?;
                let mut flow = None;
                self.for_each(&it, &mut |me, v| {
                    me.assign(target, v)?;
                    match me.exec_block(body)? {
                        Flow::Break => {
                            flow = Some(Flow::Normal);
                            Ok(false)
                        }
                        Flow::Return(v) => {
                            flow = Some(Flow::Return(v));
                            Ok(false)
                        }
                        Flow::Normal | Flow::Continue => Ok(true),
                    }
                })?;
                // `else` runs when no `break` (nor `return`) ended the loop.
                return match flow {
                    Some(flow) => Ok(flow),
                    None => self.exec_block(orelse),
                };
            }
            StmtKind::Def(f) => {
                let v = self.make_function(f)?;
                self.set(&f.name, v);
            }
            StmtKind::Return(e) => {
                let v = match e {
                    Some(e) => self.eval(e)?,
                    None => Value::None,
                };
                return Ok(Flow::Return(v));
            }
            StmtKind::Pass => {}
            StmtKind::Break => return Ok(Flow::Break),
            StmtKind::Continue => return Ok(Flow::Continue),
            StmtKind::Assert(e) => {
                if !self.eval(e)?.truthy() {
                    return Err(PyError::Assertion);
                }
            }
            StmtKind::Try(t) => return self.exec_try(t),
            StmtKind::Raise(None) => {
                return Err(self.handling.last().map_or_else(
                    || {
                        PyError::Raised(
                            "RuntimeError".into(),
                            "no active exception to reraise".into(),
                        )
                    },
                    |(_, e)| e.clone(),
                ));
            }
            StmtKind::Raise(Some((class, message))) => {
                // `raise e` in `except ... as e:` raises the handled exception again.
                if let Some((_, e)) = self
                    .handling
                    .iter()
                    .rev()
                    .find(|(n, _)| n.as_deref() == Some(class.as_str()))
                {
                    return Err(e.clone());
                }
                let text = match message {
                    Some(m) => display(&self.eval(m)?),
                    None => String::new(),
                };
                return Err(raised(class, text));
            }
        }
        Ok(Flow::Normal)
    }

    /// `try`: the handlers catch the errors a Python program can catch, never a limit
    /// (steps, memory, recursion, integer size) or what the subset lacks.
    fn exec_try(&mut self, t: &TryStmt) -> EResult<Flow> {
        let mut outcome = self.exec_block(&t.body);
        match &outcome {
            Err(e) if catchable(e) => {
                let e = e.clone();
                if let Some(h) = t.handlers.iter().find(|h| handles(h, &e)) {
                    if let Some(n) = &h.name {
                        let v = self.string(error_message(&e))?;
                        self.set(n, v);
                    }
                    self.handling.push((h.name.clone(), e));
                    outcome = self.exec_block(&h.body);
                    self.handling.pop();
                }
            }
            Ok(Flow::Normal) => outcome = self.exec_block(&t.orelse),
            _ => {}
        }
        if outcome.as_ref().err().is_none_or(catchable) {
            match self.exec_block(&t.finally)? {
                Flow::Normal => {}
                other => return Ok(other),
            }
        }
        outcome
    }

    /// A function value for `def` or `lambda`: inside a function, it knows that
    /// function's frame and captures the variables of it its body uses, as they are now.
    fn make_function(&mut self, def: &Rc<FuncDef>) -> EResult<Value> {
        let mut env = Vec::new();
        let mut home = None;
        if self.frames.len() > 1 {
            let index = self.frames.len() - 1;
            home = self.scopes.get(index).map(|s| (index, s.id));
            // What this frame sees itself (its own and its home's variables).
            for name in &def.free {
                if self.frame_of(name).is_some_and(|i| i > 0) {
                    env.push((name.clone(), self.lookup(name)?));
                }
            }
        }
        self.tick(def.free.len() as u64)?;
        let mut defaults = Vec::with_capacity(def.params.len());
        for (_, d) in &def.params {
            defaults.push(match d {
                Some(e) => Some(self.eval(e)?),
                None => None,
            });
        }
        let depth = env
            .iter()
            .map(|(_, v)| v)
            .chain(defaults.iter().flatten())
            .map(|v| v.depth() + 1)
            .max()
            .unwrap_or(0);
        if depth > self.limits.max_value_depth {
            return Err(PyError::Memory("values nested too deeply".into()));
        }
        Ok(Value::Func(Rc::new(Function {
            def: def.clone(),
            defaults,
            home,
            env,
            depth,
        })))
    }

    /// Calls `f` on each element of `it` until it returns false; every element is a step.
    fn for_each(
        &mut self,
        it: &Value,
        f: &mut dyn FnMut(&mut Self, Value) -> EResult<bool>,
    ) -> EResult<()> {
        match it {
            Value::Range(a, b, st) => {
                let mut i = *a;
                while (*st > 0 && i < *b) || (*st < 0 && i > *b) {
                    self.tick(1)?;
                    if !f(self, Value::Int(i))? {
                        break;
                    }
                    i = match i.checked_add(*st) {
                        Some(n) => n,
                        None => break,
                    };
                }
            }
            Value::List(s) | Value::Tuple(s) | Value::Set(s) => {
                let s = s.clone();
                for v in &s.items {
                    self.tick(1)?;
                    if !f(self, v.clone())? {
                        break;
                    }
                }
            }
            Value::Dict(s) => {
                let s = s.clone();
                for pair in &s.items {
                    self.tick(1)?;
                    let key = match pair {
                        Value::Tuple(kv) => kv.items.first().cloned().unwrap_or(Value::None),
                        other => other.clone(),
                    };
                    if !f(self, key)? {
                        break;
                    }
                }
            }
            Value::Str(s) => {
                let s = s.clone();
                for c in s.chars() {
                    self.tick(1)?;
                    let v = Value::Str(Rc::from(c.to_string().as_str()));
                    if !f(self, v)? {
                        break;
                    }
                }
            }
            other => {
                return Err(PyError::Type(format!(
                    "a {} is not iterable",
                    other.type_name()
                )));
            }
        }
        Ok(())
    }

    /// The elements of an iterable, materialised (bounded by the length limit).
    fn items(&mut self, it: &Value) -> EResult<Vec<Value>> {
        if let Value::Range(a, b, st) = it {
            let n = range_len(*a, *b, *st);
            if n > self.limits.max_len as i128 {
                return Err(PyError::Memory(format!("a range of {n} elements")));
            }
        }
        let mut out = Vec::new();
        self.for_each(it, &mut |_, v| {
            out.push(v);
            Ok(true)
        })?;
        Ok(out)
    }

    fn assign(&mut self, target: &Target, v: Value) -> EResult<()> {
        match target {
            Target::Name(n) => {
                self.set(n, v);
                Ok(())
            }
            Target::Item(n, idx) => {
                let i = self.eval(idx)?;
                self.set_item(n, i, v)
            }
            Target::Slice(n, parts) => {
                let bounds = self.slice_bounds_of(parts.iter().map(Option::as_ref))?;
                self.set_slice(n, bounds, v)
            }
            Target::Tuple(targets) => {
                let items = match &v {
                    Value::List(s) | Value::Tuple(s) => s.items.clone(),
                    other => self.items(other)?,
                };
                if items.len() != targets.len() {
                    return Err(PyError::Value(format!(
                        "cannot unpack {} values into {}",
                        items.len(),
                        targets.len()
                    )));
                }
                for (t, v) in targets.iter().zip(items) {
                    self.assign(t, v)?;
                }
                Ok(())
            }
        }
    }

    fn set_item(&mut self, name: &str, key: Value, v: Value) -> EResult<()> {
        let max_depth = self.limits.max_value_depth;
        if v.depth() + 1 > max_depth {
            return Err(PyError::Memory("values nested too deeply".into()));
        }
        let mut grew = false;
        let slot = self.var_mut(name)?;
        let shared_len = match slot {
            Value::List(s) | Value::Dict(s) if Rc::strong_count(s) > 1 => s.items.len(),
            _ => 0,
        };
        match slot {
            Value::List(s) => {
                let len = s.items.len();
                let i = norm_index(&key, len)?;
                let seq = Rc::make_mut(s);
                seq.depth = seq.depth.max(v.depth() + 1);
                if let Some(item) = seq.items.get_mut(i) {
                    *item = v;
                }
            }
            Value::Dict(s) => {
                let seq = Rc::make_mut(s);
                seq.depth = seq.depth.max(v.depth() + 1);
                let found = seq.items.iter_mut().find_map(|pair| match pair {
                    Value::Tuple(kv) if kv.items.first().is_some_and(|k| keys_equal(k, &key)) => {
                        Some(kv)
                    }
                    _ => None,
                });
                match found {
                    Some(kv) => {
                        let kv = Rc::make_mut(kv);
                        if let Some(val) = kv.items.get_mut(1) {
                            *val = v;
                        }
                    }
                    None => {
                        let depth = 1 + key.depth().max(v.depth());
                        seq.items.push(Value::Tuple(Rc::new(Seq {
                            items: vec![key, v],
                            depth,
                        })));
                        grew = true;
                    }
                }
            }
            other => {
                return Err(PyError::Type(format!(
                    "a {} does not support item assignment",
                    other.type_name()
                )));
            }
        }
        let len = match self.var_mut(name)? {
            Value::Dict(s) => s.items.len(),
            _ => 0,
        };
        self.charge(shared_len)?;
        if grew {
            self.alloc(2)?;
            if len > self.limits.max_len {
                return Err(PyError::Memory("a dict too long".into()));
            }
        }
        Ok(())
    }

    fn eval(&mut self, e: &Expr) -> EResult<Value> {
        self.tick(1)?;
        match e {
            Expr::Const(v) => Ok(v.clone()),
            Expr::Name(n) => self.lookup(n),
            Expr::List(items) => {
                let vs = items
                    .iter()
                    .map(|i| self.eval(i))
                    .collect::<EResult<Vec<_>>>()?;
                self.list(vs)
            }
            Expr::Tuple(items) => {
                let vs = items
                    .iter()
                    .map(|i| self.eval(i))
                    .collect::<EResult<Vec<_>>>()?;
                Ok(Value::Tuple(self.seq(vs)?))
            }
            Expr::Dict(items) => {
                let mut entries = Vec::with_capacity(items.len());
                for (k, v) in items {
                    let k = self.eval(k)?;
                    entries.push((k, self.eval(v)?));
                }
                self.dict_of(entries)
            }
            Expr::Set(items) => {
                let vs = items
                    .iter()
                    .map(|i| self.eval(i))
                    .collect::<EResult<Vec<_>>>()?;
                self.make_set(vs)
            }
            Expr::Invert(x) => {
                let v = self.eval(x)?;
                v.as_int()
                    .map(|i| Value::Int(!i))
                    .ok_or_else(|| PyError::Type(format!("bad operand for ~: {}", v.type_name())))
            }
            Expr::Lambda(def) => self.make_function(def),
            Expr::Neg(x) => match self.eval(x)? {
                Value::Float(f) => Ok(Value::Float(-f)),
                v => match v.as_int() {
                    Some(i) => i.checked_neg().map(Value::Int).ok_or(PyError::Overflow),
                    None => Err(PyError::Type(format!(
                        "bad operand for -: {}",
                        v.type_name()
                    ))),
                },
            },
            Expr::Pos(x) => {
                let v = self.eval(x)?;
                match v {
                    Value::Bool(b) => Ok(Value::Int(i128::from(b))),
                    Value::Int(_) | Value::Float(_) => Ok(v),
                    other => Err(PyError::Type(format!(
                        "bad operand for +: {}",
                        other.type_name()
                    ))),
                }
            }
            Expr::Not(x) => Ok(Value::Bool(!self.eval(x)?.truthy())),
            Expr::Chain(first, rest) => {
                let mut acc = self.eval(first)?;
                for (op, rhs) in rest {
                    let r = self.eval(rhs)?;
                    acc = self.binop(*op, acc, r)?;
                }
                Ok(acc)
            }
            Expr::Pow(a, b) => {
                let a = self.eval(a)?;
                let b = self.eval(b)?;
                self.binop(BinOp::Pow, a, b)
            }
            Expr::And(items) => {
                let mut v = Value::Bool(true);
                for i in items {
                    v = self.eval(i)?;
                    if !v.truthy() {
                        return Ok(v);
                    }
                }
                Ok(v)
            }
            Expr::Or(items) => {
                let mut v = Value::Bool(false);
                for i in items {
                    v = self.eval(i)?;
                    if v.truthy() {
                        return Ok(v);
                    }
                }
                Ok(v)
            }
            Expr::Compare(first, rest) => {
                let mut left = self.eval(first)?;
                for (op, rhs) in rest {
                    let right = self.eval(rhs)?;
                    if !self.compare(*op, &left, &right)? {
                        return Ok(Value::Bool(false));
                    }
                    left = right;
                }
                Ok(Value::Bool(true))
            }
            Expr::IfElse(body, cond, orelse) => {
                if self.eval(cond)?.truthy() {
                    self.eval(body)
                } else {
                    self.eval(orelse)
                }
            }
            Expr::Call(f, args, kwargs) => self.call(f, args, kwargs),
            Expr::Attr(obj, name) => {
                let obj = self.eval(obj)?;
                self.attribute(obj, name)
            }
            Expr::Index(base, idx) => {
                let b = self.eval(base)?;
                let i = self.eval(idx)?;
                self.index(&b, &i)
            }
            Expr::Slice(base, parts) => {
                let b = self.eval(base)?;
                let bounds = self.slice_bounds_of(parts.iter().map(|p| p.as_deref()))?;
                self.slice(&b, bounds)
            }
            Expr::Comp(elt, clauses) => {
                let mut out = Vec::new();
                self.comprehension(elt, clauses, &mut out)?;
                self.list(out)
            }
            Expr::SetComp(elt, clauses) => {
                let mut out = Vec::new();
                self.comprehension(elt, clauses, &mut out)?;
                self.make_set(out)
            }
            Expr::DictComp(pair, clauses) => {
                let mut out = Vec::new();
                self.comprehension(pair, clauses, &mut out)?;
                let entries = out
                    .into_iter()
                    .map(|pair| match pair {
                        Value::Tuple(kv) => match kv.items.as_slice() {
                            [k, v] => (k.clone(), v.clone()),
                            _ => (Value::None, Value::None),
                        },
                        other => (other, Value::None),
                    })
                    .collect();
                self.dict_of(entries)
            }
            Expr::FStr(parts) => {
                let mut s = String::new();
                for p in parts {
                    match p {
                        FPart::Lit(l) => s.push_str(l),
                        FPart::Field(e, spec) => {
                            let v = self.eval(e)?;
                            s.push_str(&format_spec(&v, spec, self.limits.max_len)?);
                        }
                    }
                }
                self.string(s)
            }
        }
    }

    /// A dict of `entries` in order, a later value for an equal key replacing the
    /// earlier one where it stands.
    fn dict_of(&mut self, entries: Vec<(Value, Value)>) -> EResult<Value> {
        let mut pairs: Vec<Value> = Vec::new();
        for (k, v) in entries {
            self.tick(pairs.len() as u64 / 8)?;
            let pair = Value::Tuple(self.seq(vec![k.clone(), v])?);
            match pairs.iter_mut().find(|p| match p {
                Value::Tuple(kv) => kv.items.first().is_some_and(|x| keys_equal(x, &k)),
                _ => false,
            }) {
                Some(p) => *p = pair,
                None => pairs.push(pair),
            }
        }
        Ok(Value::Dict(self.seq(pairs)?))
    }

    fn comprehension(
        &mut self,
        elt: &Expr,
        clauses: &[Clause],
        out: &mut Vec<Value>,
    ) -> EResult<()> {
        let Some((first, rest)) = clauses.split_first() else {
            let v = self.eval(elt)?;
            if out.len() >= self.limits.max_len {
                return Err(PyError::Memory("a comprehension too long".into()));
            }
            out.push(v);
            return Ok(());
        };
        match first {
            Clause::If(cond) => {
                if self.eval(cond)?.truthy() {
                    self.comprehension(elt, rest, out)?;
                }
                Ok(())
            }
            Clause::For(target, iter) => {
                let it = self.eval(iter)?;
                self.for_each(&it, &mut |me, v| {
                    me.assign(target, v)?;
                    me.comprehension(elt, rest, out)?;
                    Ok(true)
                })
            }
        }
    }

    fn index(&mut self, base: &Value, key: &Value) -> EResult<Value> {
        match base {
            Value::List(s) | Value::Tuple(s) => {
                let i = norm_index(key, s.items.len())?;
                s.items.get(i).cloned().ok_or(PyError::Index)
            }
            Value::Str(s) => {
                let chars: Vec<char> = s.chars().collect();
                let i = norm_index(key, chars.len())?;
                self.tick(chars.len() as u64 / 8)?;
                chars
                    .get(i)
                    .map(|c| Value::Str(Rc::from(c.to_string().as_str())))
                    .ok_or(PyError::Index)
            }
            Value::Dict(s) => {
                self.tick(s.items.len() as u64 / 8)?;
                dict_get(s, key).ok_or(PyError::Index)
            }
            Value::Range(a, b, st) => {
                let len = range_len(*a, *b, *st);
                let i = key
                    .as_int()
                    .ok_or_else(|| PyError::Type("indices must be ints".into()))?;
                let i = if i < 0 { i + len } else { i };
                if i < 0 || i >= len {
                    return Err(PyError::Index);
                }
                Ok(Value::Int(a + i * st))
            }
            other => Err(PyError::Type(format!(
                "a {} is not subscriptable",
                other.type_name()
            ))),
        }
    }

    /// The values of a slice's `start:stop:step` (ints or `None`).
    fn slice_bounds_of<'e>(
        &mut self,
        parts: impl Iterator<Item = Option<&'e Expr>>,
    ) -> EResult<[Option<i128>; 3]> {
        let mut bounds = [None, None, None];
        for (slot, part) in bounds.iter_mut().zip(parts) {
            if let Some(p) = part {
                let v = self.eval(p)?;
                if !matches!(v, Value::None) {
                    *slot = Some(
                        v.as_int()
                            .ok_or_else(|| PyError::Type("slice bounds must be ints".into()))?,
                    );
                }
            }
        }
        Ok(bounds)
    }

    /// `name[start:stop:step] = v` on a list: a plain slice is replaced by the elements
    /// of `v` (any number), a slice with a step by as many as it has.
    fn set_slice(&mut self, name: &str, bounds: [Option<i128>; 3], v: Value) -> EResult<()> {
        if bounds[2] == Some(0) {
            return Err(PyError::Value("slice step cannot be zero".into()));
        }
        let new = self.items(&v)?;
        let max_len = self.limits.max_len;
        let new_depth = 1 + new.iter().map(Value::depth).max().unwrap_or(0);
        if new_depth > self.limits.max_value_depth {
            return Err(PyError::Memory("values nested too deeply".into()));
        }
        let added = new.len();
        let slot = self.var_mut(name)?;
        let Value::List(s) = slot else {
            return Err(PyError::Type(format!(
                "a {} does not support slice assignment",
                slot.type_name()
            )));
        };
        let copied = if Rc::strong_count(s) > 1 {
            s.items.len()
        } else {
            0
        };
        let len = s.items.len();
        // What moves: the elements after a plain slice, and the new ones.
        let mut moved = added;
        if bounds[2].unwrap_or(1) == 1 {
            let (start, stop, _) = slice_bounds(len as i128, bounds);
            let start = usize::try_from(start).unwrap_or(0).min(len);
            let stop = usize::try_from(stop).unwrap_or(0).clamp(start, len);
            if len - (stop - start) + added > max_len {
                return Err(PyError::Memory(format!("a list longer than {max_len}")));
            }
            moved += len - stop;
            let seq = Rc::make_mut(s);
            seq.items.splice(start..stop, new);
            seq.depth = seq.depth.max(new_depth);
        } else {
            let picked = slice_indices(len, bounds);
            if picked.len() != added {
                return Err(PyError::Value(format!(
                    "attempt to assign a sequence of size {added} to an extended slice of size {}",
                    picked.len()
                )));
            }
            let seq = Rc::make_mut(s);
            for (i, v) in picked.into_iter().zip(new) {
                if let Some(slot) = seq.items.get_mut(i) {
                    *slot = v;
                }
            }
            seq.depth = seq.depth.max(new_depth);
        }
        self.charge(copied + moved)
    }

    fn slice(&mut self, base: &Value, bounds: [Option<i128>; 3]) -> EResult<Value> {
        let step = bounds[2].unwrap_or(1);
        if step == 0 {
            return Err(PyError::Value("slice step cannot be zero".into()));
        }
        let pick = |len: usize| slice_indices(len, bounds);
        match base {
            Value::List(s) | Value::Tuple(s) => {
                let idx = pick(s.items.len());
                let items: Vec<Value> = idx
                    .iter()
                    .filter_map(|&i| s.items.get(i).cloned())
                    .collect();
                let seq = self.seq(items)?;
                Ok(if matches!(base, Value::List(_)) {
                    Value::List(seq)
                } else {
                    Value::Tuple(seq)
                })
            }
            Value::Range(a, b, st) => {
                // A range of the picked values: `range(10)[::-1]` is `range(9, -1, -1)`.
                let (start, stop, step) = slice_bounds(range_len(*a, *b, *st), bounds);
                let at = |k: i128| k.checked_mul(*st).and_then(|o| a.checked_add(o));
                match (at(start), at(stop), st.checked_mul(step)) {
                    (Some(x), Some(y), Some(z)) => Ok(Value::Range(x, y, z)),
                    _ => Err(PyError::Overflow),
                }
            }
            Value::Str(s) => {
                let chars: Vec<char> = s.chars().collect();
                let out: String = pick(chars.len())
                    .iter()
                    .filter_map(|&i| chars.get(i))
                    .collect();
                self.string(out)
            }
            other => Err(PyError::Type(format!(
                "a {} cannot be sliced",
                other.type_name()
            ))),
        }
    }

    fn binop(&mut self, op: BinOp, a: Value, b: Value) -> EResult<Value> {
        if let (Value::Bool(x), Value::Bool(y)) = (&a, &b) {
            match op {
                BinOp::BitAnd => return Ok(Value::Bool(*x & *y)),
                BinOp::BitOr => return Ok(Value::Bool(*x | *y)),
                BinOp::BitXor => return Ok(Value::Bool(*x ^ *y)),
                _ => {}
            }
        }
        if let (Some(x), Some(y)) = (a.as_int(), b.as_int()) {
            return int_op(op, x, y);
        }
        if a.is_number() && b.is_number() {
            let (x, y) = (a.as_f64().unwrap_or(0.0), b.as_f64().unwrap_or(0.0));
            return float_op(op, x, y);
        }
        match (op, &a, &b) {
            (BinOp::Add, Value::Str(x), Value::Str(y)) => self.string(format!("{x}{y}")),
            (BinOp::Add, Value::List(x), Value::List(y)) => {
                let mut items = x.items.clone();
                items.extend(y.items.iter().cloned());
                self.list(items)
            }
            (BinOp::Add, Value::Tuple(x), Value::Tuple(y)) => {
                let mut items = x.items.clone();
                items.extend(y.items.iter().cloned());
                Ok(Value::Tuple(self.seq(items)?))
            }
            (BinOp::Mul, Value::Str(_) | Value::List(_) | Value::Tuple(_), n)
                if n.as_int().is_some() =>
            {
                self.repeat(&a, n.as_int().unwrap_or(0))
            }
            (BinOp::Mul, n, Value::Str(_) | Value::List(_) | Value::Tuple(_))
                if n.as_int().is_some() =>
            {
                self.repeat(&b, n.as_int().unwrap_or(0))
            }
            (BinOp::Mod, Value::Str(_), _) => Err(PyError::Unsupported("%-formatting".into())),
            (
                BinOp::BitOr | BinOp::BitAnd | BinOp::Sub | BinOp::BitXor,
                Value::Set(x),
                Value::Set(y),
            ) => self.set_op(op, x, y),
            _ => Err(PyError::Type(format!(
                "unsupported operand types for {op:?}: {} and {}",
                a.type_name(),
                b.type_name()
            ))),
        }
    }

    fn repeat(&mut self, v: &Value, n: i128) -> EResult<Value> {
        let n = n.max(0);
        let len = match v {
            Value::Str(s) => s.chars().count(),
            Value::List(s) | Value::Tuple(s) => s.items.len(),
            _ => 0,
        } as i128;
        let total = len.saturating_mul(n);
        if total > self.limits.max_len as i128 {
            return Err(PyError::Memory(format!("a value of {total} elements")));
        }
        let n = n as usize;
        match v {
            Value::Str(s) => self.string(s.repeat(n)),
            Value::List(s) => {
                let items: Vec<Value> = (0..n).flat_map(|_| s.items.iter().cloned()).collect();
                self.list(items)
            }
            Value::Tuple(s) => {
                let items: Vec<Value> = (0..n).flat_map(|_| s.items.iter().cloned()).collect();
                Ok(Value::Tuple(self.seq(items)?))
            }
            _ => Err(PyError::Type("cannot repeat".into())),
        }
    }

    fn compare(&mut self, op: CmpOp, a: &Value, b: &Value) -> EResult<bool> {
        match op {
            CmpOp::In | CmpOp::NotIn => {
                let found = match b {
                    Value::Str(s) => match a {
                        Value::Str(x) => s.contains(&**x),
                        _ => return Err(PyError::Type("`in <str>` needs a string".into())),
                    },
                    Value::Dict(s) => {
                        self.tick(s.items.len() as u64 / 8)?;
                        dict_get(s, a).is_some()
                    }
                    Value::Set(s) => {
                        check_hashable(a)?;
                        set_contains(s, a)
                    }
                    Value::Range(x, y, st) => match a.as_int() {
                        Some(i) => {
                            let len = range_len(*x, *y, *st);
                            let off = i - x;
                            off % st == 0 && (0..len).contains(&(off / st))
                        }
                        None => false,
                    },
                    other => {
                        let items = self.items(other)?;
                        let mut found = false;
                        for v in &items {
                            if values_equal(v, a) {
                                found = true;
                                break;
                            }
                        }
                        found
                    }
                };
                Ok(found == (op == CmpOp::In))
            }
            CmpOp::Is | CmpOp::IsNot => {
                let same = match (a, b) {
                    (Value::None, Value::None) => true,
                    (Value::Bool(x), Value::Bool(y)) => x == y,
                    (Value::None, _) | (_, Value::None) => false,
                    _ => values_equal(a, b),
                };
                Ok(same == (op == CmpOp::Is))
            }
            CmpOp::Eq => Ok(values_equal(a, b)),
            CmpOp::Ne => Ok(!values_equal(a, b)),
            _ if matches!((a, b), (Value::Set(_), Value::Set(_))) => {
                let (Value::Set(x), Value::Set(y)) = (a, b) else {
                    return Ok(false);
                };
                self.tick((x.items.len() + y.items.len()) as u64 / 4)?;
                // Subsets: `<=` and `<`, supersets: `>=` and `>`.
                let within = |x: &Seq, y: &Seq| x.items.iter().all(|v| set_contains(y, v));
                Ok(match op {
                    CmpOp::Lt => x.items.len() < y.items.len() && within(x, y),
                    CmpOp::Le => within(x, y),
                    CmpOp::Gt => x.items.len() > y.items.len() && within(y, x),
                    _ => within(y, x),
                })
            }
            _ => {
                let ord = order(a, b)?;
                Ok(match op {
                    CmpOp::Lt => ord == std::cmp::Ordering::Less,
                    CmpOp::Gt => ord == std::cmp::Ordering::Greater,
                    CmpOp::Le => ord != std::cmp::Ordering::Greater,
                    _ => ord != std::cmp::Ordering::Less,
                })
            }
        }
    }

    fn call(&mut self, f: &Expr, args: &[Expr], kwargs: &[(String, Expr)]) -> EResult<Value> {
        if let Expr::Attr(obj, method) = f {
            return self.method(obj, method, args, kwargs);
        }
        let fv = self.eval(f)?;
        let argv = args
            .iter()
            .map(|a| self.eval(a))
            .collect::<EResult<Vec<_>>>()?;
        let kw = kwargs
            .iter()
            .map(|(k, v)| Ok((k.clone(), self.eval(v)?)))
            .collect::<EResult<Vec<_>>>()?;
        self.call_value(&fv, argv, kw)
    }

    /// Calls a function value (a `def`, a lambda or a built-in).
    fn call_value(
        &mut self,
        f: &Value,
        args: Vec<Value>,
        kwargs: Vec<(String, Value)>,
    ) -> EResult<Value> {
        match f {
            Value::Func(func) => self.call_func(func, args, kwargs),
            Value::Builtin(name) => self.builtin(name, args, kwargs),
            Value::Method(m) => {
                let (receiver, args) = match &m.receiver {
                    Some(r) => (r.clone(), args),
                    None => {
                        let mut args = args.into_iter();
                        let r = args
                            .next()
                            .filter(|r| r.type_name() == m.class)
                            .ok_or_else(|| {
                                PyError::Type(format!("{}.{}() needs a {0}", m.class, m.name))
                            })?;
                        (r, args.collect())
                    }
                };
                self.value_method(&receiver, &m.name, args, kwargs)
            }
            other => Err(PyError::Type(format!(
                "a {} is not callable",
                other.type_name()
            ))),
        }
    }

    fn call_func(
        &mut self,
        func: &Rc<Function>,
        args: Vec<Value>,
        kwargs: Vec<(String, Value)>,
    ) -> EResult<Value> {
        let def = &func.def;
        if self.frames.len() > self.limits.max_call_depth {
            return Err(PyError::Recursion(self.limits.max_call_depth));
        }
        if args.len() > def.params.len() {
            return Err(PyError::Type(format!(
                "{}() takes {} arguments, {} given",
                def.name,
                def.params.len(),
                args.len()
            )));
        }
        let mut frame: HashMap<String, Value> = HashMap::new();
        let home = func.home.filter(|h| self.live(*h));
        let mut borrowed = Vec::new();
        if home.is_none() && func.home.is_some() {
            // The function it was made in has returned: what it captured then.
            self.tick(func.env.len() as u64)?;
            for (name, v) in &func.env {
                if !def.params.iter().any(|(p, _)| p == name) {
                    frame.insert(name.clone(), v.clone());
                    borrowed.push(name.clone());
                }
            }
            if def.name != "<lambda>" && !frame.contains_key(&def.name) {
                frame.insert(def.name.clone(), Value::Func(func.clone()));
            }
        }
        let mut args = args.into_iter();
        for (k, (name, _)) in def.params.iter().enumerate() {
            let v = match args.next() {
                Some(v) => v,
                None => match kwargs.iter().find(|(k, _)| k == name) {
                    Some((_, v)) => v.clone(),
                    None => match func.defaults.get(k).cloned().flatten() {
                        Some(d) => d,
                        None => {
                            return Err(PyError::Type(format!(
                                "{}() is missing the argument `{name}`",
                                def.name
                            )));
                        }
                    },
                },
            };
            frame.insert(name.clone(), v);
        }
        if let Some((k, _)) = kwargs
            .iter()
            .find(|(k, _)| !def.params.iter().any(|(p, _)| p == k))
        {
            return Err(PyError::Type(format!(
                "{}() has no argument `{k}`",
                def.name
            )));
        }
        let line = self.line;
        self.frames.push(frame);
        self.scopes.push(Scope {
            id: self.next_scope,
            home,
            borrowed,
        });
        self.next_scope += 1;
        let out = self.exec_block(&def.body);
        self.frames.pop();
        self.scopes.pop();
        // On an error the line stays where it happened.
        let out = out?;
        self.line = line;
        match out {
            Flow::Return(v) => Ok(v),
            _ => Ok(Value::None),
        }
    }

    fn method(
        &mut self,
        obj: &Expr,
        method: &str,
        args: &[Expr],
        kwargs: &[(String, Expr)],
    ) -> EResult<Value> {
        let argv = args
            .iter()
            .map(|a| self.eval(a))
            .collect::<EResult<Vec<_>>>()?;
        let kw = kwargs
            .iter()
            .map(|(k, v)| Ok((k.clone(), self.eval(v)?)))
            .collect::<EResult<Vec<_>>>()?;
        if MUTATING.contains(&method) {
            let Expr::Name(name) = obj else {
                return Err(PyError::Unsupported(format!(
                    ".{method}() on anything but a variable"
                )));
            };
            // A module attribute (`math.pow`) is not a mutation.
            if !matches!(self.lookup(name)?, Value::Module) {
                return self.mutate(name, method, argv, kw);
            }
        }
        let target = self.eval(obj)?;
        if let Value::Builtin(_) = target {
            // `str.upper("abc")`: the object is the first argument.
            let m = self.attribute(target, method)?;
            return self.call_value(&m, argv, kw);
        }
        self.value_method(&target, method, argv, kw)
    }

    /// `obj.name` as a value: a `math` member, or a method that does not change its
    /// object.
    fn attribute(&mut self, obj: Value, name: &str) -> EResult<Value> {
        let (receiver, class) = match obj {
            Value::Module => {
                return math_member(name)
                    .ok_or_else(|| PyError::Unsupported(format!("math.{name}")));
            }
            Value::Builtin(class @ ("str" | "list" | "tuple" | "dict" | "set")) => (None, class),
            v @ (Value::Str(_)
            | Value::List(_)
            | Value::Tuple(_)
            | Value::Dict(_)
            | Value::Set(_)) => {
                let class = v.type_name();
                (Some(v), class)
            }
            other => {
                return Err(PyError::Unsupported(format!(
                    "attribute `{name}` of a {}",
                    other.type_name()
                )));
            }
        };
        if MUTATING.contains(&name) {
            return Err(PyError::Unsupported(format!(
                "the method `{name}` as a value"
            )));
        }
        let m = Value::Method(Rc::new(Method {
            receiver,
            class,
            name: name.to_string(),
        }));
        if m.depth() > self.limits.max_value_depth {
            return Err(PyError::Memory("values nested too deeply".into()));
        }
        Ok(m)
    }

    /// A method that does not change its object, called on the value `target`.
    fn value_method(
        &mut self,
        target: &Value,
        method: &str,
        argv: Vec<Value>,
        kw: Vec<(String, Value)>,
    ) -> EResult<Value> {
        match (target, method) {
            (Value::Module, _) => match math_member(method) {
                Some(Value::Builtin(b)) => self.builtin(b, argv, kw),
                _ => Err(PyError::Unsupported(format!("math.{method}"))),
            },
            (Value::List(s) | Value::Tuple(s), "count") => {
                let x = one_arg(&argv)?;
                self.tick(s.items.len() as u64 / 8)?;
                Ok(Value::Int(
                    s.items.iter().filter(|v| values_equal(v, x)).count() as i128,
                ))
            }
            (Value::List(s) | Value::Tuple(s), "index") => {
                let x = one_arg(&argv)?;
                self.tick(s.items.len() as u64 / 8)?;
                s.items
                    .iter()
                    .position(|v| values_equal(v, x))
                    .map(|i| Value::Int(i as i128))
                    .ok_or_else(|| PyError::Value("not in list".into()))
            }
            (Value::List(s), "copy") => self.list(s.items.clone()),
            (Value::Dict(s), "get") => {
                let key = argv
                    .first()
                    .ok_or_else(|| PyError::Type("get() needs a key".into()))?;
                Ok(dict_get(s, key).unwrap_or_else(|| argv.get(1).cloned().unwrap_or(Value::None)))
            }
            (Value::Dict(s), "keys" | "values" | "items") => {
                let k = match method {
                    "keys" => Some(0),
                    "values" => Some(1),
                    _ => None,
                };
                let items: Vec<Value> = s
                    .items
                    .iter()
                    .map(|pair| match (k, pair) {
                        (Some(k), Value::Tuple(kv)) => {
                            kv.items.get(k).cloned().unwrap_or(Value::None)
                        }
                        _ => pair.clone(),
                    })
                    .collect();
                self.list(items)
            }
            (Value::Str(s), _) => {
                let s = s.clone();
                self.str_method(&s, method, &argv, &kw)
            }
            (Value::Set(s), _) => {
                let s = s.clone();
                self.set_method(&s, method, &argv)
            }
            (other, _) => Err(PyError::Unsupported(format!(
                "method `{method}` of a {}",
                other.type_name()
            ))),
        }
    }

    /// A method of a string (which never changes it).
    fn str_method(
        &mut self,
        s: &str,
        method: &str,
        argv: &[Value],
        kw: &[(String, Value)],
    ) -> EResult<Value> {
        let most_args = match method {
            "upper" | "lower" | "casefold" | "capitalize" | "swapcase" | "title" | "isalpha"
            | "isdigit" | "isdecimal" | "isnumeric" | "isalnum" | "isspace" | "isupper"
            | "islower" | "istitle" => 0,
            "strip" | "lstrip" | "rstrip" | "join" | "zfill" | "partition" | "rpartition"
            | "removeprefix" | "removesuffix" | "splitlines" => 1,
            "split" | "rsplit" | "ljust" | "rjust" | "center" => 2,
            "startswith" | "endswith" | "find" | "rfind" | "index" | "rindex" | "count"
            | "replace" => 3,
            "format" => usize::MAX,
            _ => {
                return Err(PyError::Unsupported(format!("method `{method}` of a str")));
            }
        };
        if argv.len() > most_args {
            return Err(PyError::Type(format!(
                "str.{method}() takes at most {most_args} arguments, {} given",
                argv.len()
            )));
        }
        let keywords: &[&str] = match method {
            "split" | "rsplit" => &["sep", "maxsplit"],
            "splitlines" => &["keepends"],
            "replace" => &["count"],
            _ => &[],
        };
        if method != "format" {
            if let Some((k, _)) = kw.iter().find(|(k, _)| !keywords.contains(&k.as_str())) {
                return Err(PyError::Type(format!(
                    "str.{method}() has no argument `{k}`"
                )));
            }
        }
        let chars: Vec<char> = s.chars().collect();
        let n = chars.len();
        self.tick(n as u64 / 8)?;
        match method {
            "upper" => self.string(s.to_uppercase()),
            "lower" | "casefold" => self.string(s.to_lowercase()),
            "capitalize" => {
                let mut out = String::new();
                for (k, c) in chars.iter().enumerate() {
                    if k == 0 {
                        out.extend(c.to_uppercase());
                    } else {
                        out.extend(c.to_lowercase());
                    }
                }
                self.string(out)
            }
            "swapcase" => {
                let mut out = String::new();
                for c in &chars {
                    if c.is_uppercase() {
                        out.extend(c.to_lowercase());
                    } else if c.is_lowercase() {
                        out.extend(c.to_uppercase());
                    } else {
                        out.push(*c);
                    }
                }
                self.string(out)
            }
            "title" => {
                // Python's rule: a cased character after a cased one is lowered, any other
                // is raised ("they're" gives "They'Re").
                let mut out = String::new();
                let mut previous_cased = false;
                for c in &chars {
                    if previous_cased {
                        out.extend(c.to_lowercase());
                    } else {
                        out.extend(c.to_uppercase());
                    }
                    previous_cased = c.is_uppercase() || c.is_lowercase();
                }
                self.string(out)
            }
            "isalpha" => Ok(Value::Bool(
                n > 0 && chars.iter().all(|c| c.is_alphabetic()),
            )),
            "isdigit" | "isdecimal" | "isnumeric" => Ok(Value::Bool(
                n > 0
                    && chars
                        .iter()
                        .all(|c| c.is_ascii_digit() || (!c.is_ascii() && c.is_numeric())),
            )),
            "isalnum" => Ok(Value::Bool(
                n > 0 && chars.iter().all(|c| c.is_alphanumeric()),
            )),
            "isspace" => Ok(Value::Bool(n > 0 && chars.iter().all(|c| py_space(*c)))),
            "isupper" | "islower" => {
                // At least one cased character, and none of the other case.
                let upper = method == "isupper";
                let mut cased = false;
                for c in &chars {
                    let (this, other) = if upper {
                        (c.is_uppercase(), c.is_lowercase())
                    } else {
                        (c.is_lowercase(), c.is_uppercase())
                    };
                    if other {
                        return Ok(Value::Bool(false));
                    }
                    cased |= this;
                }
                Ok(Value::Bool(cased))
            }
            "istitle" => {
                let mut cased = false;
                let mut previous_cased = false;
                for c in &chars {
                    if c.is_uppercase() {
                        if previous_cased {
                            return Ok(Value::Bool(false));
                        }
                        previous_cased = true;
                        cased = true;
                    } else if c.is_lowercase() {
                        if !previous_cased {
                            return Ok(Value::Bool(false));
                        }
                        previous_cased = true;
                        cased = true;
                    } else {
                        previous_cased = false;
                    }
                }
                Ok(Value::Bool(cased))
            }
            "strip" | "lstrip" | "rstrip" => {
                let set: Option<Vec<char>> = match argv.first() {
                    None | Some(Value::None) => None,
                    Some(Value::Str(cs)) => {
                        let mut v: Vec<char> = cs.chars().collect();
                        self.tick(v.len() as u64 / 8)?;
                        v.sort_unstable();
                        v.dedup();
                        Some(v)
                    }
                    Some(other) => {
                        return Err(PyError::Type(format!(
                            "{method} arg must be None or str, not {}",
                            other.type_name()
                        )));
                    }
                };
                let strip = |c: char| match &set {
                    None => py_space(c),
                    Some(cs) => cs.binary_search(&c).is_ok(),
                };
                let out = match method {
                    "strip" => s.trim_matches(strip),
                    "lstrip" => s.trim_start_matches(strip),
                    _ => s.trim_end_matches(strip),
                };
                self.string(out.to_string())
            }
            "split" | "rsplit" => {
                let maxsplit =
                    strict_int_arg(keyword_arg(argv, kw, 1, "maxsplit"), "maxsplit")?.unwrap_or(-1);
                // A negative maxsplit is no limit.
                let limit = usize::try_from(maxsplit).unwrap_or(usize::MAX);
                let pieces: Vec<String> = match keyword_arg(argv, kw, 0, "sep") {
                    None | Some(Value::None) => {
                        if method == "split" {
                            split_on_space(&chars, limit)
                        } else {
                            let reversed: Vec<char> = chars.iter().rev().copied().collect();
                            split_on_space(&reversed, limit)
                                .into_iter()
                                .rev()
                                .map(|p| p.chars().rev().collect())
                                .collect()
                        }
                    }
                    Some(Value::Str(sep)) => {
                        if sep.is_empty() {
                            return Err(PyError::Value("empty separator".into()));
                        }
                        let parts = limit.saturating_add(1);
                        if method == "split" {
                            s.splitn(parts, &**sep).map(String::from).collect()
                        } else {
                            let mut v: Vec<String> =
                                s.rsplitn(parts, &**sep).map(String::from).collect();
                            v.reverse();
                            v
                        }
                    }
                    Some(other) => {
                        return Err(PyError::Type(format!(
                            "must be str or None, not {}",
                            other.type_name()
                        )));
                    }
                };
                self.str_list(pieces)
            }
            "splitlines" => {
                let keep = keyword_arg(argv, kw, 0, "keepends").is_some_and(Value::truthy);
                let mut lines = Vec::new();
                let mut line = String::new();
                let mut k = 0usize;
                while let Some(&c) = chars.get(k) {
                    k += 1;
                    if !line_break(c) {
                        line.push(c);
                        continue;
                    }
                    if keep {
                        line.push(c);
                    }
                    if c == '\r' && chars.get(k) == Some(&'\n') {
                        k += 1;
                        if keep {
                            line.push('\n');
                        }
                    }
                    lines.push(std::mem::take(&mut line));
                }
                if !line.is_empty() {
                    lines.push(line);
                }
                self.str_list(lines)
            }
            "join" => {
                let items = self.items(one_arg(argv)?)?;
                let max_len = self.limits.max_len;
                let mut total = 0usize;
                for (k, v) in items.iter().enumerate() {
                    let Value::Str(x) = v else {
                        return Err(PyError::Type(format!(
                            "sequence item {k}: expected str instance, {} found",
                            v.type_name()
                        )));
                    };
                    let sep = if k > 0 { n } else { 0 };
                    total = total.saturating_add(sep + x.chars().count());
                    if total > max_len {
                        return Err(PyError::Memory(format!(
                            "a joined string longer than {max_len}"
                        )));
                    }
                }
                let mut out = String::new();
                for (k, v) in items.iter().enumerate() {
                    if k > 0 {
                        out.push_str(s);
                    }
                    if let Value::Str(x) = v {
                        out.push_str(x);
                    }
                }
                self.string(out)
            }
            "startswith" | "endswith" => {
                let affixes: Vec<Rc<str>> = match argv.first() {
                    Some(Value::Str(p)) => vec![p.clone()],
                    Some(Value::Tuple(t)) => t
                        .items
                        .iter()
                        .map(|v| match v {
                            Value::Str(p) => Ok(p.clone()),
                            other => Err(PyError::Type(format!(
                                "a tuple for {method} must only contain str, not {}",
                                other.type_name()
                            ))),
                        })
                        .collect::<EResult<_>>()?,
                    other => {
                        return Err(PyError::Type(format!(
                            "{method} first arg must be str or a tuple of str, not {}",
                            other.map_or("nothing", Value::type_name)
                        )));
                    }
                };
                self.tick(affixes.len() as u64)?;
                let start = int_arg(argv.get(1), "start")?;
                let end = int_arg(argv.get(2), "end")?;
                let Some((text, _)) = window(&chars, start, end) else {
                    return Ok(Value::Bool(false));
                };
                Ok(Value::Bool(affixes.iter().any(|a| {
                    if method == "startswith" {
                        text.starts_with(&**a)
                    } else {
                        text.ends_with(&**a)
                    }
                })))
            }
            "find" | "rfind" | "index" | "rindex" | "count" => {
                let sub = match argv.first() {
                    Some(Value::Str(x)) => x.clone(),
                    other => {
                        return Err(PyError::Type(format!(
                            "{method}() needs a str, not {}",
                            other.map_or("nothing", Value::type_name)
                        )));
                    }
                };
                let start = int_arg(argv.get(1), "start")?;
                let end = int_arg(argv.get(2), "end")?;
                let found = window(&chars, start, end).map(|(text, offset)| {
                    let at = match method {
                        "count" => return text.matches(&*sub).count(),
                        "find" | "index" => text.find(&*sub),
                        _ => text.rfind(&*sub),
                    };
                    at.map_or(usize::MAX, |b| offset + char_offset(&text, b))
                });
                match (method, found) {
                    ("count", n) => Ok(Value::Int(n.unwrap_or(0) as i128)),
                    (_, Some(i)) if i != usize::MAX => Ok(Value::Int(i as i128)),
                    ("find" | "rfind", _) => Ok(Value::Int(-1)),
                    _ => Err(PyError::Value("substring not found".into())),
                }
            }
            "replace" => {
                let (old, new) = match (argv.first(), argv.get(1)) {
                    (Some(Value::Str(a)), Some(Value::Str(b))) => (a.clone(), b.clone()),
                    _ => return Err(PyError::Type("replace() needs two strs".into())),
                };
                let count =
                    strict_int_arg(keyword_arg(argv, kw, 2, "count"), "count")?.unwrap_or(-1);
                let found = s.matches(&*old).count();
                let k = usize::try_from(count).map_or(found, |c| c.min(found));
                let len = n
                    .saturating_sub(k.saturating_mul(old.chars().count()))
                    .saturating_add(k.saturating_mul(new.chars().count()));
                if len > self.limits.max_len {
                    return Err(PyError::Memory(format!("a string of {len} characters")));
                }
                self.string(s.replacen(&*old, &new, k))
            }
            "zfill" | "ljust" | "rjust" | "center" => {
                let width = int_arg(argv.first(), "width")?
                    .ok_or_else(|| PyError::Type(format!("{method}() needs a width")))?;
                let fill = match argv.get(1) {
                    None => ' ',
                    Some(Value::Str(f)) if f.chars().count() == 1 => {
                        f.chars().next().unwrap_or(' ')
                    }
                    Some(_) => {
                        return Err(PyError::Type(
                            "the fill character must be exactly one character long".into(),
                        ));
                    }
                };
                if width > self.limits.max_len as i128 {
                    return Err(PyError::Memory(format!("a string of {width} characters")));
                }
                let pad = usize::try_from(width).unwrap_or(0).saturating_sub(n);
                let (left, right) = match method {
                    "ljust" => (0, pad),
                    "rjust" | "zfill" => (pad, 0),
                    // Python's centring: the odd space goes left when the width is odd.
                    _ => {
                        let left = pad / 2 + (pad & usize::try_from(width).unwrap_or(0) & 1);
                        (left, pad - left)
                    }
                };
                let fill = if method == "zfill" { '0' } else { fill };
                let mut out = String::new();
                let mut rest = chars.as_slice();
                if method == "zfill" && pad > 0 {
                    if let Some((&sign @ ('+' | '-'), tail)) = chars.split_first() {
                        out.push(sign);
                        rest = tail;
                    }
                }
                out.extend(std::iter::repeat_n(fill, left));
                out.extend(rest.iter());
                out.extend(std::iter::repeat_n(fill, right));
                self.string(out)
            }
            "partition" | "rpartition" => {
                let sep = match argv.first() {
                    Some(Value::Str(x)) if !x.is_empty() => x.clone(),
                    Some(Value::Str(_)) => return Err(PyError::Value("empty separator".into())),
                    _ => return Err(PyError::Type(format!("{method}() needs a str"))),
                };
                let split = if method == "partition" {
                    s.split_once(&*sep)
                } else {
                    s.rsplit_once(&*sep)
                };
                let parts = match (split, method) {
                    (Some((a, b)), _) => [a, &*sep, b],
                    (None, "partition") => [s, "", ""],
                    (None, _) => ["", "", s],
                };
                let mut items = Vec::new();
                for p in parts {
                    items.push(self.string(p.to_string())?);
                }
                Ok(Value::Tuple(self.seq(items)?))
            }
            "removeprefix" | "removesuffix" => {
                let Some(Value::Str(a)) = argv.first() else {
                    return Err(PyError::Type(format!("{method}() needs a str")));
                };
                let out = if method == "removeprefix" {
                    s.strip_prefix(&**a)
                } else {
                    s.strip_suffix(&**a)
                };
                self.string(out.unwrap_or(s).to_string())
            }
            "format" => {
                let out = self.format_fields(&chars, argv, kw)?;
                self.string(out)
            }
            _ => Err(PyError::Unsupported(format!("method `{method}` of a str"))),
        }
    }

    /// `str.format`: `{}`, `{0}` and `{name}` fields with `!r`/`!s` and a spec, `{{`
    /// and `}}`.
    fn format_fields(
        &mut self,
        chars: &[char],
        argv: &[Value],
        kw: &[(String, Value)],
    ) -> EResult<String> {
        let mut out = String::new();
        let mut auto = 0usize;
        let mut i = 0usize;
        while let Some(&c) = chars.get(i) {
            let next = chars.get(i + 1).copied();
            if (c == '{' || c == '}') && next == Some(c) {
                out.push(c);
                i += 2;
                continue;
            }
            if c == '}' {
                return Err(PyError::Value("single '}' in a format string".into()));
            }
            if c != '{' {
                out.push(c);
                i += 1;
                continue;
            }
            let close = (i + 1..chars.len())
                .find(|&k| chars.get(k) == Some(&'}'))
                .ok_or_else(|| PyError::Value("single '{' in a format string".into()))?;
            let field: String = chars.get(i + 1..close).unwrap_or(&[]).iter().collect();
            i = close + 1;
            let (head, spec) = field.split_once(':').unwrap_or((field.as_str(), ""));
            let (name, conversion) = match head.split_once('!') {
                Some((n, c)) => (n, Some(c)),
                None => (head, None),
            };
            let v = if name.is_empty() {
                auto += 1;
                argv.get(auto - 1)
            } else if let Ok(k) = name.parse::<usize>() {
                argv.get(k)
            } else if name.chars().all(|c| c.is_alphanumeric() || c == '_') {
                kw.iter().find(|(k, _)| k == name).map(|(_, v)| v)
            } else {
                return Err(PyError::Unsupported(format!("the format field {{{name}}}")));
            }
            .ok_or(PyError::Index)?;
            let max_len = self.limits.max_len;
            let text = match conversion {
                None | Some("s") => format_spec(v, spec, max_len)?,
                Some("r") => format_spec(&Value::Str(Rc::from(repr(v).as_str())), spec, max_len)?,
                Some(other) => {
                    return Err(PyError::Unsupported(format!("the conversion !{other}")));
                }
            };
            out.push_str(&text);
            if out.len() > self.limits.max_len.saturating_mul(4) {
                return Err(PyError::Memory("a formatted string too long".into()));
            }
        }
        Ok(out)
    }

    /// Strings as a list, each accounted for.
    fn str_list(&mut self, pieces: Vec<String>) -> EResult<Value> {
        let mut items = Vec::with_capacity(pieces.len());
        for p in pieces {
            items.push(self.string(p)?);
        }
        self.list(items)
    }

    /// A set of `items` (unhashable ones refused): sorted by [`set_order`], the first of
    /// equal elements kept.
    fn make_set(&mut self, items: Vec<Value>) -> EResult<Value> {
        for v in &items {
            check_hashable(v)?;
        }
        self.tick(items.len() as u64 * 2)?;
        let order = merge_sort(
            items.len(),
            &mut |i, j| match (items.get(i), items.get(j)) {
                (Some(a), Some(b)) => Ok(set_order(a, b)),
                _ => Ok(std::cmp::Ordering::Equal),
            },
        )?;
        let mut out: Vec<Value> = Vec::with_capacity(items.len());
        for i in order {
            let Some(v) = items.get(i) else { continue };
            if out
                .last()
                .is_some_and(|last| set_order(last, v) == std::cmp::Ordering::Equal)
            {
                continue;
            }
            out.push(v.clone());
        }
        Ok(Value::Set(self.seq(out)?))
    }

    /// `a | b`, `a & b`, `a - b`, `a ^ b` of two sets (merges of sorted elements).
    fn set_op(&mut self, op: BinOp, a: &Seq, b: &Seq) -> EResult<Value> {
        use std::cmp::Ordering::{Equal, Greater, Less};
        self.tick((a.items.len() + b.items.len()) as u64 / 4 + 1)?;
        let (mut i, mut j) = (0usize, 0usize);
        let mut out = Vec::new();
        loop {
            let (x, y) = (a.items.get(i), b.items.get(j));
            let ord = match (x, y) {
                (None, None) => break,
                (Some(_), None) => Less,
                (None, Some(_)) => Greater,
                (Some(x), Some(y)) => set_order(x, y),
            };
            // Union: all; intersection: in both; difference: only in `a`; symmetric
            // difference: in one only.
            let keep = matches!(
                (op, ord),
                (BinOp::BitOr, _)
                    | (BinOp::BitAnd, Equal)
                    | (BinOp::Sub | BinOp::BitXor, Less)
                    | (BinOp::BitXor, Greater)
            );
            let picked = if ord == Greater { y } else { x };
            if keep {
                if let Some(v) = picked {
                    out.push(v.clone());
                }
            }
            if ord != Greater {
                i += 1;
            }
            if ord != Less {
                j += 1;
            }
        }
        Ok(Value::Set(self.seq(out)?))
    }

    /// The set of an iterable's elements (a set as it is).
    fn set_of(&mut self, v: &Value) -> EResult<Rc<Seq>> {
        if let Value::Set(s) = v {
            return Ok(s.clone());
        }
        let items = self.items(v)?;
        match self.make_set(items)? {
            Value::Set(s) => Ok(s),
            _ => Err(PyError::Internal("a set that is not one".into())),
        }
    }

    /// A method of a set that does not change it.
    fn set_method(&mut self, s: &Rc<Seq>, method: &str, argv: &[Value]) -> EResult<Value> {
        let op = match method {
            "union" => BinOp::BitOr,
            "intersection" => BinOp::BitAnd,
            "difference" => BinOp::Sub,
            "symmetric_difference" => BinOp::BitXor,
            "copy" => return Ok(Value::Set(self.seq(s.items.clone())?)),
            "issubset" | "issuperset" | "isdisjoint" => {
                let other = self.set_of(one_arg(argv)?)?;
                self.tick((s.items.len() + other.items.len()) as u64 / 4)?;
                let within = |x: &Seq, y: &Seq| x.items.iter().all(|v| set_contains(y, v));
                return Ok(Value::Bool(match method {
                    "issubset" => within(s, &other),
                    "issuperset" => within(&other, s),
                    _ => !s.items.iter().any(|v| set_contains(&other, v)),
                }));
            }
            _ => return Err(PyError::Unsupported(format!("method `{method}` of a set"))),
        };
        if op == BinOp::BitXor && argv.len() != 1 {
            return Err(PyError::Type(
                "symmetric_difference() takes 1 argument".into(),
            ));
        }
        let mut acc = Value::Set(s.clone());
        for a in argv {
            let other = self.set_of(a)?;
            if let Value::Set(cur) = &acc {
                let cur = cur.clone();
                acc = self.set_op(op, &cur, &other)?;
            }
        }
        if argv.is_empty() {
            acc = Value::Set(self.seq(s.items.clone())?);
        }
        Ok(acc)
    }

    /// `items` sorted (stably, as Python sorts) by `key` of each, or by themselves.
    fn sort_values(
        &mut self,
        items: Vec<Value>,
        key: Option<&Value>,
        reverse: bool,
    ) -> EResult<Vec<Value>> {
        self.tick(items.len() as u64 * 4)?;
        let keys = match key {
            Some(k) if !matches!(k, Value::None) => items
                .iter()
                .map(|v| self.call_value(k, vec![v.clone()], Vec::new()))
                .collect::<EResult<Vec<_>>>()?,
            _ => items.clone(),
        };
        let order = merge_sort(items.len(), &mut |i, j| match (keys.get(i), keys.get(j)) {
            (Some(a), Some(b)) => order(a, b).map(|o| if reverse { o.reverse() } else { o }),
            _ => Ok(std::cmp::Ordering::Equal),
        })?;
        Ok(order
            .into_iter()
            .filter_map(|i| items.get(i).cloned())
            .collect())
    }

    /// A mutating method on the variable `name`, in place.
    fn mutate(
        &mut self,
        name: &str,
        method: &str,
        argv: Vec<Value>,
        kw: Vec<(String, Value)>,
    ) -> EResult<Value> {
        if method == "sort" {
            return self.sort_in_place(name, argv, kw);
        }
        if matches!(self.lookup(name)?, Value::Set(_)) {
            return self.mutate_set(name, method, argv);
        }
        let max_len = self.limits.max_len;
        let max_depth = self.limits.max_value_depth;
        let extra = match (method, argv.first()) {
            ("extend", Some(v)) => self.items(v)?,
            ("update", Some(Value::Dict(d))) => d.items.clone(),
            ("update", Some(other)) => {
                // Pairs: `d.update([("a", 1)])`.
                let mut pairs = Vec::new();
                for p in self.items(other)? {
                    match &p {
                        Value::Tuple(s) | Value::List(s) if s.items.len() == 2 => {
                            pairs.push(Value::Tuple(self.seq(s.items.clone())?));
                        }
                        _ => {
                            return Err(PyError::Type(
                                "dict.update() needs pairs of a key and a value".into(),
                            ));
                        }
                    }
                }
                pairs
            }
            _ => Vec::new(),
        };
        let arg_depth = argv.iter().map(Value::depth).max().unwrap_or(0);
        let mut copied = 0usize;
        let slot = self.var_mut(name)?;
        let out = match slot {
            Value::List(s) => {
                if Rc::strong_count(s) > 1 {
                    copied = s.items.len();
                }
                let seq = Rc::make_mut(s);
                let new_depth = seq
                    .depth
                    .max(1 + arg_depth)
                    .max(1 + extra.iter().map(Value::depth).max().unwrap_or(0));
                if new_depth > max_depth {
                    return Err(PyError::Memory("values nested too deeply".into()));
                }
                seq.depth = new_depth;
                let grow = |seq: &Seq, n: usize| -> EResult<()> {
                    if seq.items.len() + n > max_len {
                        return Err(PyError::Memory(format!("a list longer than {max_len}")));
                    }
                    Ok(())
                };
                match method {
                    "append" => {
                        grow(seq, 1)?;
                        seq.items.push(one_arg(&argv)?.clone());
                        Value::None
                    }
                    "extend" => {
                        grow(seq, extra.len())?;
                        copied += extra.len();
                        seq.items.extend(extra);
                        Value::None
                    }
                    "insert" => {
                        grow(seq, 1)?;
                        let i = argv
                            .first()
                            .and_then(Value::as_int)
                            .ok_or_else(|| PyError::Type("insert() needs an index".into()))?;
                        let v = argv
                            .get(1)
                            .cloned()
                            .ok_or_else(|| PyError::Type("insert() needs a value".into()))?;
                        let len = seq.items.len() as i128;
                        let i = if i < 0 { (i + len).max(0) } else { i.min(len) };
                        seq.items.insert(i as usize, v);
                        copied += seq.items.len();
                        Value::None
                    }
                    "pop" => {
                        let len = seq.items.len();
                        if len == 0 {
                            return Err(PyError::Index);
                        }
                        let i = match argv.first() {
                            Some(k) => norm_index(k, len)?,
                            None => len - 1,
                        };
                        copied += len - i;
                        seq.items.remove(i)
                    }
                    "remove" => {
                        let x = one_arg(&argv)?;
                        let i = seq
                            .items
                            .iter()
                            .position(|v| values_equal(v, x))
                            .ok_or_else(|| PyError::Value("not in list".into()))?;
                        seq.items.remove(i);
                        copied += seq.items.len();
                        Value::None
                    }
                    "reverse" => {
                        seq.items.reverse();
                        Value::None
                    }
                    "clear" => {
                        seq.items.clear();
                        Value::None
                    }
                    _ => {
                        return Err(PyError::Unsupported(format!("list.{method}")));
                    }
                }
            }
            Value::Dict(s) => match method {
                "update" | "clear" | "pop" => {
                    if Rc::strong_count(s) > 1 {
                        copied = s.items.len();
                    }
                    let seq = Rc::make_mut(s);
                    match method {
                        "clear" => {
                            seq.items.clear();
                            Value::None
                        }
                        "pop" => {
                            let key = one_arg(&argv)?;
                            let i = seq.items.iter().position(|p| match p {
                                Value::Tuple(kv) => {
                                    kv.items.first().is_some_and(|k| keys_equal(k, key))
                                }
                                _ => false,
                            });
                            match i {
                                Some(i) => match seq.items.remove(i) {
                                    Value::Tuple(kv) => {
                                        kv.items.get(1).cloned().unwrap_or(Value::None)
                                    }
                                    _ => Value::None,
                                },
                                None => return Err(PyError::Index),
                            }
                        }
                        _ => {
                            // update: set each pair (few, small dicts).
                            for pair in extra {
                                let Value::Tuple(kv) = &pair else { continue };
                                let k = kv.items.first().cloned().unwrap_or(Value::None);
                                match seq.items.iter_mut().find(|p| match p {
                                    Value::Tuple(x) => {
                                        x.items.first().is_some_and(|x| keys_equal(x, &k))
                                    }
                                    _ => false,
                                }) {
                                    Some(p) => *p = pair.clone(),
                                    None => {
                                        if seq.items.len() >= max_len {
                                            return Err(PyError::Memory("a dict too long".into()));
                                        }
                                        seq.items.push(pair.clone());
                                    }
                                }
                                copied += seq.items.len();
                            }
                            Value::None
                        }
                    }
                }
                _ => return Err(PyError::Unsupported(format!("dict.{method}"))),
            },
            other => {
                return Err(PyError::Unsupported(format!(
                    "method `{method}` of a {}",
                    other.type_name()
                )));
            }
        };
        self.alloc(1)?;
        self.charge(copied)?;
        Ok(out)
    }

    /// `xs.sort(key=..., reverse=...)` on the list variable `name`.
    fn sort_in_place(
        &mut self,
        name: &str,
        argv: Vec<Value>,
        kw: Vec<(String, Value)>,
    ) -> EResult<Value> {
        if !argv.is_empty() {
            return Err(PyError::Type("sort() takes no positional arguments".into()));
        }
        if let Some((k, _)) = kw.iter().find(|(k, _)| k != "key" && k != "reverse") {
            return Err(PyError::Type(format!("sort() has no argument `{k}`")));
        }
        let current = self.lookup(name)?;
        let Value::List(s) = &current else {
            return Err(PyError::Unsupported(format!(
                "method `sort` of a {}",
                current.type_name()
            )));
        };
        let key = kw.iter().find(|(k, _)| k == "key").map(|(_, v)| v);
        let reverse = kw.iter().any(|(k, v)| k == "reverse" && v.truthy());
        let depth = s.depth;
        let sorted = self.sort_values(s.items.clone(), key, reverse)?;
        drop(current);
        let len = sorted.len();
        let slot = self.var_mut(name)?;
        *slot = Value::List(Rc::new(Seq {
            items: sorted,
            depth,
        }));
        self.charge(len).map(|()| Value::None)
    }

    /// A mutating method on the set variable `name`, in place.
    fn mutate_set(&mut self, name: &str, method: &str, argv: Vec<Value>) -> EResult<Value> {
        let extra: Vec<Value> = match method {
            "add" | "remove" | "discard" => vec![one_arg(&argv)?.clone()],
            "update" => {
                let mut all = Vec::new();
                for a in &argv {
                    all.extend(self.items(a)?);
                }
                all
            }
            "pop" | "clear" => {
                if !argv.is_empty() {
                    return Err(PyError::Type(format!("set.{method}() takes no arguments")));
                }
                Vec::new()
            }
            _ => return Err(PyError::Unsupported(format!("method `{method}` of a set"))),
        };
        for v in &extra {
            check_hashable(v)?;
        }
        let max_len = self.limits.max_len;
        let max_depth = self.limits.max_value_depth;
        let slot = self.var_mut(name)?;
        let Value::Set(s) = slot else {
            return Err(PyError::Internal("a set that is not one".into()));
        };
        let copied = if Rc::strong_count(s) > 1 {
            s.items.len()
        } else {
            0
        };
        let seq = Rc::make_mut(s);
        let mut shifted = 0usize;
        let mut added = 0usize;
        let out = match method {
            "add" | "update" => {
                for v in extra {
                    let Err(pos) = seq.items.binary_search_by(|x| set_order(x, &v)) else {
                        continue;
                    };
                    if seq.items.len() >= max_len {
                        return Err(PyError::Memory(format!("a set larger than {max_len}")));
                    }
                    if v.depth() + 1 > max_depth {
                        return Err(PyError::Memory("values nested too deeply".into()));
                    }
                    seq.depth = seq.depth.max(v.depth() + 1);
                    shifted += seq.items.len() - pos;
                    added += 1;
                    seq.items.insert(pos, v);
                }
                Value::None
            }
            "remove" | "discard" => {
                let found = extra
                    .first()
                    .and_then(|v| seq.items.binary_search_by(|x| set_order(x, v)).ok());
                match found {
                    Some(pos) => {
                        shifted += seq.items.len() - pos;
                        seq.items.remove(pos);
                    }
                    None if method == "remove" => return Err(PyError::Index),
                    None => {}
                }
                Value::None
            }
            "pop" => {
                if seq.items.is_empty() {
                    return Err(PyError::Index);
                }
                shifted += seq.items.len();
                seq.items.remove(0)
            }
            _ => {
                seq.items.clear();
                Value::None
            }
        };
        self.alloc(1)?;
        self.charge(copied + added)?;
        self.tick(shifted as u64 / 16)?;
        Ok(out)
    }

    fn builtin(
        &mut self,
        name: &str,
        args: Vec<Value>,
        kwargs: Vec<(String, Value)>,
    ) -> EResult<Value> {
        let kw = |k: &str| kwargs.iter().find(|(n, _)| n == k).map(|(_, v)| v.clone());
        let keywords: &[&str] = match name {
            "print" => &["sep", "end", "flush"],
            "sorted" => &["key", "reverse"],
            "min" | "max" => &["key", "default"],
            "round" => &["ndigits"],
            _ => &[],
        };
        // `dict(a=1)`: any keyword is a key.
        if name != "dict" {
            if let Some((k, _)) = kwargs.iter().find(|(k, _)| !keywords.contains(&k.as_str())) {
                return Err(PyError::Unsupported(format!("{name}() with `{k}=`")));
            }
        }
        let num = |v: &Value| -> EResult<f64> {
            v.as_f64().ok_or_else(|| {
                PyError::Type(format!("{name}() needs a number, not a {}", v.type_name()))
            })
        };
        match name {
            "print" => {
                let sep = match kw("sep") {
                    Some(Value::Str(s)) => s.to_string(),
                    _ => " ".to_string(),
                };
                let line = args.iter().map(display).collect::<Vec<_>>().join(&sep);
                self.alloc(line.chars().count())?;
                self.printed.push(line);
                Ok(Value::None)
            }
            "len" => {
                let v = one_arg(&args)?;
                Ok(Value::Int(match v {
                    Value::Str(s) => s.chars().count() as i128,
                    Value::List(s) | Value::Tuple(s) | Value::Dict(s) | Value::Set(s) => {
                        s.items.len() as i128
                    }
                    Value::Range(a, b, st) => range_len(*a, *b, *st),
                    other => {
                        return Err(PyError::Type(format!(
                            "a {} has no len()",
                            other.type_name()
                        )));
                    }
                }))
            }
            "sum" => {
                let items = self.items(
                    args.first()
                        .ok_or_else(|| PyError::Type("sum() needs an argument".into()))?,
                )?;
                let mut acc = args.get(1).cloned().unwrap_or(Value::Int(0));
                for v in items {
                    self.tick(1)?;
                    acc = self.binop(BinOp::Add, acc, v)?;
                }
                Ok(acc)
            }
            "min" | "max" => {
                let key = kw("key").filter(|k| !matches!(k, Value::None));
                let items = if args.len() == 1 {
                    self.items(one_arg(&args)?)?
                } else {
                    if kw("default").is_some() {
                        return Err(PyError::Type(format!(
                            "{name}() takes default= only with one iterable"
                        )));
                    }
                    args
                };
                // The first of the smallest (largest) keys, as Python picks.
                let mut best: Option<(Value, Value)> = None;
                for v in items {
                    self.tick(1)?;
                    let k = match &key {
                        Some(f) => self.call_value(f, vec![v.clone()], Vec::new())?,
                        None => v.clone(),
                    };
                    best = Some(match best {
                        None => (k, v),
                        Some((bk, bv)) => {
                            let ord = order(&k, &bk)?;
                            let better = if name == "min" {
                                ord == std::cmp::Ordering::Less
                            } else {
                                ord == std::cmp::Ordering::Greater
                            };
                            if better { (k, v) } else { (bk, bv) }
                        }
                    });
                }
                match (best, kw("default")) {
                    (Some((_, v)), _) => Ok(v),
                    (None, Some(d)) => Ok(d),
                    (None, None) => Err(PyError::Value(format!("{name}() of an empty sequence"))),
                }
            }
            "format" => {
                let spec = match args.as_slice() {
                    [_] => "",
                    [_, Value::Str(spec)] => spec,
                    _ => return Err(PyError::Type("format() takes a value and a str".into())),
                };
                let v = args.first().cloned().unwrap_or(Value::None);
                let text = format_spec(&v, spec, self.limits.max_len)?;
                self.string(text)
            }
            "all" | "any" => {
                let items = self.items(one_arg(&args)?)?;
                let want = name == "any";
                Ok(Value::Bool(
                    items.iter().any(|v| v.truthy() == want) == want,
                ))
            }
            "chr" => {
                let i = one_arg(&args)?
                    .as_int()
                    .ok_or_else(|| PyError::Type("chr() needs an int".into()))?;
                u32::try_from(i)
                    .ok()
                    .and_then(char::from_u32)
                    .map(|c| Value::Str(Rc::from(c.to_string().as_str())))
                    .ok_or_else(|| PyError::Value(format!("chr() arg {i} not in range")))
            }
            "ord" => match one_arg(&args)? {
                Value::Str(s) => {
                    let mut cs = s.chars();
                    match (cs.next(), cs.next()) {
                        (Some(c), None) => Ok(Value::Int(i128::from(u32::from(c)))),
                        _ => Err(PyError::Type(format!(
                            "ord() expected a character, but a string of length {} found",
                            s.chars().count()
                        ))),
                    }
                }
                other => Err(PyError::Type(format!(
                    "ord() expected a string of length 1, but {} found",
                    other.type_name()
                ))),
            },
            "bin" | "hex" | "oct" => {
                let v = one_arg(&args)?;
                let i = v.as_int().ok_or_else(|| {
                    PyError::Type(format!("{name}() needs an int, not {}", v.type_name()))
                })?;
                let sign = if i < 0 { "-" } else { "" };
                let m = i.unsigned_abs();
                let digits = match name {
                    "bin" => format!("0b{m:b}"),
                    "hex" => format!("0x{m:x}"),
                    _ => format!("0o{m:o}"),
                };
                self.string(format!("{sign}{digits}"))
            }
            "map" => {
                let (f, iterables) = args
                    .split_first()
                    .ok_or_else(|| PyError::Type("map() needs a function".into()))?;
                if iterables.is_empty() {
                    return Err(PyError::Type("map() needs an iterable".into()));
                }
                let lists = iterables
                    .iter()
                    .map(|a| self.items(a))
                    .collect::<EResult<Vec<_>>>()?;
                let n = lists.iter().map(Vec::len).min().unwrap_or(0);
                let mut out = Vec::with_capacity(n);
                for i in 0..n {
                    let row: Vec<Value> = lists.iter().filter_map(|l| l.get(i).cloned()).collect();
                    out.push(self.call_value(f, row, Vec::new())?);
                }
                self.list(out)
            }
            "filter" => {
                let (f, it) = two_args(&args)?;
                let items = self.items(it)?;
                let mut out = Vec::new();
                for v in items {
                    let keep = match f {
                        Value::None => v.truthy(),
                        f => self.call_value(f, vec![v.clone()], Vec::new())?.truthy(),
                    };
                    if keep {
                        out.push(v);
                    }
                }
                self.list(out)
            }
            "set" => match args.first() {
                None => self.make_set(Vec::new()),
                Some(v) if args.len() == 1 => {
                    let items = self.items(v)?;
                    self.make_set(items)
                }
                Some(_) => Err(PyError::Type("set() takes at most 1 argument".into())),
            },
            "type" => {
                let t = match one_arg(&args)? {
                    Value::Bool(_) => "bool",
                    Value::Int(_) => "int",
                    Value::Float(_) => "float",
                    Value::Str(_) => "str",
                    Value::List(_) => "list",
                    Value::Tuple(_) => "tuple",
                    Value::Dict(_) => "dict",
                    Value::Set(_) => "set",
                    other => {
                        return Err(PyError::Unsupported(format!(
                            "type() of a {}",
                            other.type_name()
                        )));
                    }
                };
                Ok(Value::Builtin(t))
            }
            "abs" => match one_arg(&args)? {
                Value::Float(f) => Ok(Value::Float(f.abs())),
                v => v
                    .as_int()
                    .ok_or_else(|| PyError::Type("abs() needs a number".into()))?
                    .checked_abs()
                    .map(Value::Int)
                    .ok_or(PyError::Overflow),
            },
            "round" => {
                let x = args
                    .first()
                    .ok_or_else(|| PyError::Type("round() needs a number".into()))?;
                let nd = args.get(1).cloned().or_else(|| kw("ndigits"));
                match nd {
                    None | Some(Value::None) => match x {
                        Value::Float(f) => float_to_int(f.round_ties_even()),
                        v => v
                            .as_int()
                            .map(Value::Int)
                            .ok_or_else(|| PyError::Type("round() needs a number".into())),
                    },
                    Some(n) => {
                        let n = n
                            .as_int()
                            .ok_or_else(|| PyError::Type("round() digits must be an int".into()))?;
                        match x {
                            Value::Float(f) => {
                                let n = n.clamp(-30, 30) as i32;
                                // Python rounds the exact binary value (round(2.675, 2)
                                // is 2.67), as Rust's decimal formatting does.
                                let r = if n >= 0 {
                                    format!("{:.*}", n as usize, f).parse::<f64>().unwrap_or(*f)
                                } else {
                                    let p = 10f64.powi(n);
                                    (f * p).round_ties_even() / p
                                };
                                Ok(Value::Float(if r.is_finite() { r } else { *f }))
                            }
                            v => {
                                let i = v.as_int().ok_or_else(|| {
                                    PyError::Type("round() needs a number".into())
                                })?;
                                if n >= 0 {
                                    return Ok(Value::Int(i));
                                }
                                let p = 10i128
                                    .checked_pow((-n).min(38) as u32)
                                    .ok_or(PyError::Overflow)?;
                                let q = (i as f64 / p as f64).round_ties_even() as i128;
                                q.checked_mul(p).map(Value::Int).ok_or(PyError::Overflow)
                            }
                        }
                    }
                }
            }
            "int" => match args.first() {
                None => Ok(Value::Int(0)),
                Some(Value::Float(f)) => float_to_int(f.trunc()),
                Some(Value::Str(s)) => s
                    .trim()
                    .replace('_', "")
                    .parse::<i128>()
                    .map(Value::Int)
                    .map_err(|_| PyError::Value(format!("int() of {s:?}"))),
                Some(v) => v
                    .as_int()
                    .map(Value::Int)
                    .ok_or_else(|| PyError::Type(format!("int() of a {}", v.type_name()))),
            },
            "float" => match args.first() {
                None => Ok(Value::Float(0.0)),
                Some(Value::Str(s)) => s
                    .trim()
                    .parse::<f64>()
                    .map(Value::Float)
                    .map_err(|_| PyError::Value(format!("float() of {s:?}"))),
                Some(v) => num(v).map(Value::Float),
            },
            "str" => {
                let s = args.first().map(display).unwrap_or_default();
                self.string(s)
            }
            "bool" => Ok(Value::Bool(args.first().is_some_and(Value::truthy))),
            "list" | "tuple" => {
                let items = match args.first() {
                    Some(v) => self.items(v)?,
                    None => Vec::new(),
                };
                let seq = self.seq(items)?;
                Ok(if name == "list" {
                    Value::List(seq)
                } else {
                    Value::Tuple(seq)
                })
            }
            "dict" => {
                // `dict(mapping)` or `dict(pairs)`, then the keyword arguments.
                let mut entries: Vec<(Value, Value)> = Vec::new();
                match args.as_slice() {
                    [] => {}
                    [Value::Dict(d)] => {
                        for pair in &d.items {
                            if let Value::Tuple(kv) = pair {
                                if let [k, v] = kv.items.as_slice() {
                                    entries.push((k.clone(), v.clone()));
                                }
                            }
                        }
                    }
                    [it] => {
                        for p in self.items(it)? {
                            let kv = match &p {
                                Value::Tuple(s) | Value::List(s) => s.items.as_slice(),
                                _ => &[],
                            };
                            let [k, v] = kv else {
                                return Err(PyError::Type(
                                    "dict() needs pairs of a key and a value".into(),
                                ));
                            };
                            entries.push((k.clone(), v.clone()));
                        }
                    }
                    _ => return Err(PyError::Type("dict() takes at most 1 argument".into())),
                }
                for (k, v) in kwargs {
                    entries.push((Value::Str(Rc::from(k.as_str())), v));
                }
                self.dict_of(entries)
            }
            "range" => {
                let ints = args
                    .iter()
                    .map(|a| {
                        a.as_int().ok_or_else(|| {
                            PyError::Type(format!("range() needs ints, not a {}", a.type_name()))
                        })
                    })
                    .collect::<EResult<Vec<_>>>()?;
                let (a, b, st) = match ints.as_slice() {
                    [b] => (0, *b, 1),
                    [a, b] => (*a, *b, 1),
                    [a, b, s] => (*a, *b, *s),
                    _ => return Err(PyError::Type("range() takes 1 to 3 arguments".into())),
                };
                if st == 0 {
                    return Err(PyError::Value("range() step cannot be zero".into()));
                }
                Ok(Value::Range(a, b, st))
            }
            "sorted" => {
                let items = self.items(one_arg(&args)?)?;
                let reverse = kw("reverse").is_some_and(|v| v.truthy());
                let sorted = self.sort_values(items, kw("key").as_ref(), reverse)?;
                self.list(sorted)
            }
            "reversed" => {
                let mut items = self.items(one_arg(&args)?)?;
                items.reverse();
                self.list(items)
            }
            "enumerate" => {
                let items = self.items(
                    args.first()
                        .ok_or_else(|| PyError::Type("enumerate() needs an argument".into()))?,
                )?;
                let start = args.get(1).and_then(Value::as_int).unwrap_or(0);
                let mut out = Vec::with_capacity(items.len());
                for (i, v) in items.into_iter().enumerate() {
                    out.push(Value::Tuple(
                        self.seq(vec![Value::Int(start + i as i128), v])?,
                    ));
                }
                self.list(out)
            }
            "zip" => {
                let lists = args
                    .iter()
                    .map(|a| self.items(a))
                    .collect::<EResult<Vec<_>>>()?;
                let n = lists.iter().map(Vec::len).min().unwrap_or(0);
                let mut out = Vec::with_capacity(n);
                for i in 0..n {
                    let row: Vec<Value> = lists.iter().filter_map(|l| l.get(i).cloned()).collect();
                    out.push(Value::Tuple(self.seq(row)?));
                }
                self.list(out)
            }
            "divmod" => {
                let (a, b) = two_args(&args)?;
                let q = self.binop(BinOp::FloorDiv, a.clone(), b.clone())?;
                let r = self.binop(BinOp::Mod, a.clone(), b.clone())?;
                Ok(Value::Tuple(self.seq(vec![q, r])?))
            }
            "pow" => match args.as_slice() {
                [a, b] => self.binop(BinOp::Pow, a.clone(), b.clone()),
                [a, b, m] => {
                    let ints = (a.as_int(), b.as_int(), m.as_int());
                    let (Some(a), Some(b), Some(m)) = ints else {
                        return Err(PyError::Type("pow() with a modulus needs ints".into()));
                    };
                    self.tick(128)?;
                    pow_mod(a, b, m).map(Value::Int)
                }
                _ => Err(PyError::Type("pow() takes 2 or 3 arguments".into())),
            },
            "isinstance" => {
                let (v, classes) = two_args(&args)?;
                let classes = match classes {
                    Value::Tuple(t) => t.items.clone(),
                    one => vec![one.clone()],
                };
                self.tick(classes.len() as u64 / 8)?;
                let mut yes = false;
                for c in &classes {
                    let Value::Builtin(t) = c else {
                        return Err(PyError::Type(
                            "isinstance() arg 2 must be a type or a tuple of types".into(),
                        ));
                    };
                    yes |= match *t {
                        // bool is a subclass of int.
                        "int" => matches!(v, Value::Int(_) | Value::Bool(_)),
                        "bool" => matches!(v, Value::Bool(_)),
                        "float" => matches!(v, Value::Float(_)),
                        "str" => matches!(v, Value::Str(_)),
                        "list" => matches!(v, Value::List(_)),
                        "tuple" => matches!(v, Value::Tuple(_)),
                        "dict" => matches!(v, Value::Dict(_)),
                        "set" => matches!(v, Value::Set(_)),
                        other => {
                            return Err(PyError::Unsupported(format!("isinstance() of `{other}`")));
                        }
                    };
                }
                Ok(Value::Bool(yes))
            }
            "math.floor" | "math.ceil" | "math.trunc" => {
                let v = one_arg(&args)?;
                if let Some(i) = v.as_int() {
                    return Ok(Value::Int(i));
                }
                let f = num(v)?;
                float_to_int(match name {
                    "math.floor" => f.floor(),
                    "math.ceil" => f.ceil(),
                    _ => f.trunc(),
                })
            }
            "math.sqrt" => {
                let f = num(one_arg(&args)?)?;
                if f < 0.0 {
                    return Err(PyError::Value("math domain error".into()));
                }
                Ok(Value::Float(f.sqrt()))
            }
            "math.fabs" => Ok(Value::Float(num(one_arg(&args)?)?.abs())),
            "math.exp" => finite(num(one_arg(&args)?)?.exp()),
            "math.log" | "math.log10" => {
                let f = num(args
                    .first()
                    .ok_or_else(|| PyError::Type("log() needs a number".into()))?)?;
                if f <= 0.0 {
                    return Err(PyError::Value("math domain error".into()));
                }
                match (name, args.get(1)) {
                    ("math.log10", _) => finite(f.log10()),
                    (_, Some(b)) => finite(f.ln() / num(b)?.ln()),
                    _ => finite(f.ln()),
                }
            }
            "math.pow" => {
                let (a, b) = two_args(&args)?;
                finite(num(a)?.powf(num(b)?))
            }
            "math.gcd" | "math.lcm" => {
                let (a, b) = two_args(&args)?;
                let (a, b) = (
                    a.as_int()
                        .ok_or_else(|| PyError::Type("gcd() needs ints".into()))?,
                    b.as_int()
                        .ok_or_else(|| PyError::Type("gcd() needs ints".into()))?,
                );
                let (mut x, mut y) = (a.unsigned_abs(), b.unsigned_abs());
                while y != 0 {
                    self.tick(1)?;
                    (x, y) = (y, x % y);
                }
                let g = i128::try_from(x).map_err(|_| PyError::Overflow)?;
                if name == "math.gcd" {
                    return Ok(Value::Int(g));
                }
                if g == 0 {
                    return Ok(Value::Int(0));
                }
                (a / g)
                    .checked_mul(b)
                    .map(|v| Value::Int(v.abs()))
                    .ok_or(PyError::Overflow)
            }
            "math.factorial" => {
                let n = one_arg(&args)?
                    .as_int()
                    .ok_or_else(|| PyError::Type("factorial() needs an int".into()))?;
                if n < 0 {
                    return Err(PyError::Value("factorial() of a negative number".into()));
                }
                let mut acc: i128 = 1;
                let mut i: i128 = 2;
                while i <= n {
                    self.tick(1)?;
                    acc = acc.checked_mul(i).ok_or(PyError::Overflow)?;
                    i += 1;
                }
                Ok(Value::Int(acc))
            }
            "math.prod" => {
                let items = self.items(one_arg(&args)?)?;
                let mut acc = Value::Int(1);
                for v in items {
                    self.tick(1)?;
                    acc = self.binop(BinOp::Mul, acc, v)?;
                }
                Ok(acc)
            }
            "math.isclose" => {
                let (a, b) = two_args(&args)?;
                let (a, b) = (num(a)?, num(b)?);
                Ok(Value::Bool((a - b).abs() <= 1e-9 * a.abs().max(b.abs())))
            }
            other => Err(PyError::Unsupported(format!("{other}()"))),
        }
    }
}

/// Whether `try` may catch `e`: what Python programs raise and catch, never a limit
/// of the interpreter (steps, memory, recursion, nesting, the size of integers, which
/// Python's are not bounded), nor what the subset lacks, nor a name it does not know.
fn catchable(e: &PyError) -> bool {
    matches!(
        e,
        PyError::Type(_)
            | PyError::Value(_)
            | PyError::ZeroDivision
            | PyError::Index
            | PyError::Assertion
            | PyError::Raised(..)
    )
}

/// Whether the `except` clause `h` catches `e` (following Python's classes: `KeyError`
/// and `IndexError` are both the interpreter's `Index`).
fn handles(h: &Handler, e: &PyError) -> bool {
    h.classes.is_empty()
        || h.classes.iter().any(|class| match class.as_str() {
            "Exception" | "BaseException" => true,
            "ValueError" => matches!(e, PyError::Value(_)),
            "TypeError" => matches!(e, PyError::Type(_)),
            "IndexError" | "KeyError" | "LookupError" => matches!(e, PyError::Index),
            "ZeroDivisionError" => matches!(e, PyError::ZeroDivision),
            "ArithmeticError" => {
                matches!(e, PyError::ZeroDivision)
                    || matches!(e, PyError::Raised(c, _) if c == "OverflowError")
            }
            "AssertionError" => matches!(e, PyError::Assertion),
            other => matches!(e, PyError::Raised(c, _) if c == other),
        })
}

/// What `str(e)` gives for an exception `except ... as e` caught.
fn error_message(e: &PyError) -> String {
    match e {
        PyError::Value(m) | PyError::Type(m) | PyError::Raised(_, m) => m.clone(),
        other => other.to_string(),
    }
}

/// The error `raise Class(message)` raises.
fn raised(class: &str, message: String) -> PyError {
    match class {
        "ValueError" => PyError::Value(message),
        "TypeError" => PyError::Type(message),
        "IndexError" | "KeyError" | "LookupError" => PyError::Index,
        "ZeroDivisionError" => PyError::ZeroDivision,
        "AssertionError" => PyError::Assertion,
        _ => PyError::Raised(class.to_string(), message),
    }
}

/// Python's `str.isspace` for one character (Unicode white space and the separators
/// `\x1c`-`\x1f`).
fn py_space(c: char) -> bool {
    c.is_whitespace() || ('\u{1c}'..='\u{1f}').contains(&c)
}

/// The line boundaries of `str.splitlines`.
fn line_break(c: char) -> bool {
    matches!(
        c,
        '\n' | '\r'
            | '\u{b}'
            | '\u{c}'
            | '\u{1c}'
            | '\u{1d}'
            | '\u{1e}'
            | '\u{85}'
            | '\u{2028}'
            | '\u{2029}'
    )
}

/// `str.split()` with no separator: runs of white space separate, at most `limit`
/// splits, the rest (from its first non-space character) is the last piece.
fn split_on_space(chars: &[char], limit: usize) -> Vec<String> {
    let n = chars.len();
    let space = |i: usize| chars.get(i).is_some_and(|c| py_space(*c));
    let piece = |a: usize, b: usize| -> String { chars.get(a..b).unwrap_or(&[]).iter().collect() };
    let mut out = Vec::new();
    let mut left = limit;
    let mut i = 0usize;
    while left > 0 {
        while i < n && space(i) {
            i += 1;
        }
        if i == n {
            break;
        }
        let start = i;
        while i < n && !space(i) {
            i += 1;
        }
        out.push(piece(start, i));
        left -= 1;
    }
    while i < n && space(i) {
        i += 1;
    }
    if i < n {
        out.push(piece(i, n));
    }
    out
}

/// The characters `s[start:end]` as `find`, `count` and `startswith` see them (Python's
/// index adjustment), with the index they start at; `None` when `start` is past `end`.
fn window(chars: &[char], start: Option<i128>, end: Option<i128>) -> Option<(String, usize)> {
    let len = chars.len() as i128;
    let adjust = |v: i128| if v < 0 { (v + len).max(0) } else { v };
    let end = end.map_or(len, adjust).min(len);
    let start = start.map_or(0, adjust);
    if start > end {
        return None;
    }
    let (start, end) = (usize::try_from(start).ok()?, usize::try_from(end).ok()?);
    let text = chars.get(start..end)?.iter().collect();
    Some((text, start))
}

/// The character index of the byte offset `byte` of `text`.
fn char_offset(text: &str, byte: usize) -> usize {
    text.char_indices().take_while(|(b, _)| *b < byte).count()
}

/// An optional int argument (`None` also means absent).
fn int_arg(v: Option<&Value>, what: &str) -> EResult<Option<i128>> {
    match v {
        None | Some(Value::None) => Ok(None),
        Some(v) => v
            .as_int()
            .map(Some)
            .ok_or_else(|| PyError::Type(format!("{what} must be an int, not {}", v.type_name()))),
    }
}

/// An optional int argument that may not be `None`.
fn strict_int_arg(v: Option<&Value>, what: &str) -> EResult<Option<i128>> {
    match v {
        Some(Value::None) => Err(PyError::Type(format!("{what} must be an int, not None"))),
        other => int_arg(other, what),
    }
}

/// Positional argument `i`, else the keyword argument `name`.
fn keyword_arg<'v>(
    argv: &'v [Value],
    kw: &'v [(String, Value)],
    i: usize,
    name: &str,
) -> Option<&'v Value> {
    argv.get(i)
        .or_else(|| kw.iter().find(|(k, _)| k == name).map(|(_, v)| v))
}

/// Set elements: `None`, numbers, strings and tuples of those.
fn check_hashable(v: &Value) -> EResult<()> {
    match v {
        Value::None | Value::Bool(_) | Value::Int(_) | Value::Float(_) | Value::Str(_) => Ok(()),
        Value::Tuple(s) => s.items.iter().try_for_each(check_hashable),
        Value::List(_) | Value::Dict(_) | Value::Set(_) => Err(PyError::Type(format!(
            "unhashable type: '{}'",
            v.type_name()
        ))),
        other => Err(PyError::Unsupported(format!(
            "a {} in a set",
            other.type_name()
        ))),
    }
}

/// The order sets keep their elements in (and iterate them in): `None`, then numbers
/// by value (nan last), then strings, then tuples, each in Python's order. Elements
/// equal under it are equal as Python compares them (`1`, `1.0` and `True`).
fn set_order(a: &Value, b: &Value) -> std::cmp::Ordering {
    use std::cmp::Ordering::Equal;
    let rank = |v: &Value| match v {
        Value::None => 0u8,
        Value::Bool(_) | Value::Int(_) | Value::Float(_) => 1,
        Value::Str(_) => 2,
        Value::Tuple(_) => 3,
        _ => 4,
    };
    match rank(a).cmp(&rank(b)) {
        Equal => {}
        other => return other,
    }
    match (a, b) {
        (Value::Str(x), Value::Str(y)) => x.cmp(y),
        (Value::Tuple(x), Value::Tuple(y)) => {
            for (p, q) in x.items.iter().zip(&y.items) {
                let o = set_order(p, q);
                if o != Equal {
                    return o;
                }
            }
            x.items.len().cmp(&y.items.len())
        }
        _ => match (a.as_int(), b.as_int(), a.as_f64(), b.as_f64()) {
            (Some(x), Some(y), _, _) => x.cmp(&y),
            (_, _, Some(x), Some(y)) => x
                .partial_cmp(&y)
                .unwrap_or_else(|| x.is_nan().cmp(&y.is_nan())),
            _ => Equal,
        },
    }
}

fn set_contains(s: &Seq, v: &Value) -> bool {
    s.items.binary_search_by(|x| set_order(x, v)).is_ok()
}

/// The indices `0..n` sorted stably by `cmp` (a bottom-up merge sort: a comparison
/// that fails stops it, and one that is not a total order cannot make it panic).
fn merge_sort(
    n: usize,
    cmp: &mut dyn FnMut(usize, usize) -> EResult<std::cmp::Ordering>,
) -> EResult<Vec<usize>> {
    let mut src: Vec<usize> = (0..n).collect();
    let mut width = 1usize;
    while width < n {
        let mut dst = Vec::with_capacity(n);
        let mut start = 0usize;
        while start < n {
            let mid = start.saturating_add(width).min(n);
            let end = start.saturating_add(width.saturating_mul(2)).min(n);
            let (mut i, mut j) = (start, mid);
            while let (true, true, Some(&a), Some(&b)) = (i < mid, j < end, src.get(i), src.get(j))
            {
                // The right one goes first only when strictly smaller: stable.
                if cmp(b, a)? == std::cmp::Ordering::Less {
                    dst.push(b);
                    j += 1;
                } else {
                    dst.push(a);
                    i += 1;
                }
            }
            dst.extend_from_slice(src.get(i..mid).unwrap_or(&[]));
            dst.extend_from_slice(src.get(j..end).unwrap_or(&[]));
            start = end;
        }
        src = dst;
        width = width.saturating_mul(2);
    }
    Ok(src)
}

fn one_arg(args: &[Value]) -> EResult<&Value> {
    match args {
        [v] => Ok(v),
        _ => Err(PyError::Type(format!(
            "expected 1 argument, got {}",
            args.len()
        ))),
    }
}

fn two_args(args: &[Value]) -> EResult<(&Value, &Value)> {
    match args {
        [a, b] => Ok((a, b)),
        _ => Err(PyError::Type(format!(
            "expected 2 arguments, got {}",
            args.len()
        ))),
    }
}

/// `pow(base, exp, m)`: `base ** exp % m` by squaring (a negative `exp` through the
/// inverse of `base` modulo `m`), for moduli up to 2**64 (above: an overflow).
fn pow_mod(base: i128, exp: i128, m: i128) -> EResult<i128> {
    if m == 0 {
        return Err(PyError::Value("pow() 3rd argument cannot be 0".into()));
    }
    let mu = m.unsigned_abs();
    if mu > u128::from(u64::MAX) {
        return Err(PyError::Overflow);
    }
    let modulus = i128::try_from(mu).map_err(|_| PyError::Overflow)?;
    let mut b = u128::try_from(base.rem_euclid(modulus)).map_err(|_| PyError::Overflow)?;
    if exp < 0 {
        // The inverse of b modulo mu, by the extended Euclidean algorithm.
        let (mut r0, mut r1) = (modulus, b as i128);
        let (mut t0, mut t1) = (0i128, 1i128);
        while r1 != 0 {
            let q = r0 / r1;
            (r0, r1) = (r1, r0 - q * r1);
            (t0, t1) = (t1, t0 - q * t1);
        }
        if r0 != 1 {
            return Err(PyError::Value(
                "base is not invertible for the given modulus".into(),
            ));
        }
        b = u128::try_from(t0.rem_euclid(modulus)).map_err(|_| PyError::Overflow)?;
    }
    let mut e = exp.unsigned_abs();
    let mut acc: u128 = 1 % mu;
    while e > 0 {
        if e & 1 == 1 {
            acc = acc * b % mu;
        }
        b = b * b % mu;
        e >>= 1;
    }
    let r = i128::try_from(acc).map_err(|_| PyError::Overflow)?;
    // The result takes the modulus's sign, as Python's `%` does.
    Ok(if m < 0 && r != 0 { r + m } else { r })
}

fn finite(f: f64) -> EResult<Value> {
    if f.is_finite() {
        Ok(Value::Float(f))
    } else if f.is_nan() {
        Err(PyError::Value("math domain error".into()))
    } else {
        Err(PyError::Overflow)
    }
}

fn float_to_int(f: f64) -> EResult<Value> {
    if !f.is_finite() || f.abs() >= 1.0e38 {
        return Err(PyError::Overflow);
    }
    Ok(Value::Int(f as i128))
}

/// Python's clamped `start` and `stop` of `s[start:stop:step]` over a sequence of `len`.
fn slice_bounds(len: i128, bounds: [Option<i128>; 3]) -> (i128, i128, i128) {
    let step = bounds[2].unwrap_or(1);
    let clamp = |v: Option<i128>, default: i128| -> i128 {
        match v {
            None => default,
            Some(v) => {
                let v = if v < 0 { v.saturating_add(len) } else { v };
                if step > 0 {
                    v.clamp(0, len)
                } else {
                    v.clamp(-1, len - 1)
                }
            }
        }
    };
    if step > 0 {
        (clamp(bounds[0], 0), clamp(bounds[1], len), step)
    } else {
        (clamp(bounds[0], len - 1), clamp(bounds[1], -1), step)
    }
}

/// The indices `s[start:stop:step]` picks from a sequence of `len` (the step is not
/// zero).
fn slice_indices(len: usize, bounds: [Option<i128>; 3]) -> Vec<usize> {
    let (start, stop, step) = slice_bounds(len as i128, bounds);
    let mut out = Vec::new();
    let mut i = start;
    while (step > 0 && i < stop) || (step < 0 && i > stop) {
        if let Ok(k) = usize::try_from(i) {
            out.push(k);
        }
        match i.checked_add(step) {
            Some(next) => i = next,
            None => break,
        }
    }
    out
}

fn norm_index(key: &Value, len: usize) -> EResult<usize> {
    let i = key
        .as_int()
        .ok_or_else(|| PyError::Type(format!("indices must be ints, not a {}", key.type_name())))?;
    let len = len as i128;
    let i = if i < 0 { i + len } else { i };
    if i < 0 || i >= len {
        return Err(PyError::Index);
    }
    usize::try_from(i).map_err(|_| PyError::Index)
}

fn dict_get(d: &Seq, key: &Value) -> Option<Value> {
    d.items.iter().find_map(|pair| match pair {
        Value::Tuple(kv) if kv.items.first().is_some_and(|k| keys_equal(k, key)) => {
            kv.items.get(1).cloned()
        }
        _ => None,
    })
}

fn keys_equal(a: &Value, b: &Value) -> bool {
    values_equal(a, b)
}

/// `==` (numbers compared by value; depth of nested values is bounded).
fn values_equal(a: &Value, b: &Value) -> bool {
    match (a, b) {
        (Value::None, Value::None) => true,
        (Value::Str(x), Value::Str(y)) => x == y,
        (Value::List(x), Value::List(y)) | (Value::Tuple(x), Value::Tuple(y)) => {
            x.items.len() == y.items.len()
                && x.items
                    .iter()
                    .zip(&y.items)
                    .all(|(p, q)| values_equal(p, q))
        }
        (Value::Dict(x), Value::Dict(y)) => {
            x.items.len() == y.items.len()
                && x.items.iter().all(|p| match p {
                    Value::Tuple(kv) => match (kv.items.first(), kv.items.get(1)) {
                        (Some(k), Some(v)) => dict_get(y, k).is_some_and(|w| values_equal(v, &w)),
                        _ => false,
                    },
                    _ => false,
                })
        }
        (Value::Set(x), Value::Set(y)) => {
            x.items.len() == y.items.len() && x.items.iter().all(|v| set_contains(y, v))
        }
        (Value::Builtin(x), Value::Builtin(y)) => x == y,
        (Value::Range(a1, b1, s1), Value::Range(a2, b2, s2)) => (a1, b1, s1) == (a2, b2, s2),
        _ => match (a.as_int(), b.as_int()) {
            (Some(x), Some(y)) => x == y,
            _ => match (a.is_number() && b.is_number(), a.as_f64(), b.as_f64()) {
                (true, Some(x), Some(y)) => x == y,
                _ => false,
            },
        },
    }
}

fn order(a: &Value, b: &Value) -> EResult<std::cmp::Ordering> {
    if let (Some(x), Some(y)) = (a.as_int(), b.as_int()) {
        return Ok(x.cmp(&y));
    }
    if a.is_number() && b.is_number() {
        let (x, y) = (a.as_f64().unwrap_or(0.0), b.as_f64().unwrap_or(0.0));
        return x
            .partial_cmp(&y)
            .ok_or_else(|| PyError::Value("comparison with nan".into()));
    }
    match (a, b) {
        (Value::Str(x), Value::Str(y)) => Ok(x.cmp(y)),
        (Value::List(x), Value::List(y)) | (Value::Tuple(x), Value::Tuple(y)) => {
            for (p, q) in x.items.iter().zip(&y.items) {
                let o = order(p, q)?;
                if o != std::cmp::Ordering::Equal {
                    return Ok(o);
                }
            }
            Ok(x.items.len().cmp(&y.items.len()))
        }
        _ => Err(PyError::Type(format!(
            "cannot order a {} and a {}",
            a.type_name(),
            b.type_name()
        ))),
    }
}

fn int_op(op: BinOp, x: i128, y: i128) -> EResult<Value> {
    let v = match op {
        BinOp::Add => x.checked_add(y),
        BinOp::Sub => x.checked_sub(y),
        BinOp::Mul => x.checked_mul(y),
        BinOp::Div => {
            if y == 0 {
                return Err(PyError::ZeroDivision);
            }
            return finite(x as f64 / y as f64);
        }
        BinOp::FloorDiv => {
            if y == 0 {
                return Err(PyError::ZeroDivision);
            }
            x.checked_div(y).zip(x.checked_rem(y)).map(|(q, r)| {
                if r != 0 && ((r < 0) != (y < 0)) {
                    q - 1
                } else {
                    q
                }
            })
        }
        BinOp::Mod => {
            if y == 0 {
                return Err(PyError::ZeroDivision);
            }
            x.checked_rem(y).map(|r| {
                if r != 0 && ((r < 0) != (y < 0)) {
                    r + y
                } else {
                    r
                }
            })
        }
        BinOp::BitAnd => Some(x & y),
        BinOp::BitOr => Some(x | y),
        BinOp::BitXor => Some(x ^ y),
        BinOp::LShift | BinOp::RShift => {
            if y < 0 {
                return Err(PyError::Value("negative shift count".into()));
            }
            let by = u32::try_from(y).unwrap_or(u32::MAX).min(127);
            if op == BinOp::RShift {
                // Floor division by a power of two, as Python shifts.
                Some(x >> by)
            } else if x == 0 {
                Some(0)
            } else {
                // Overflow when shifting back does not give `x` again.
                let r = x.checked_shl(by).filter(|r| r >> by == x);
                if y > 127 { None } else { r }
            }
        }
        BinOp::Pow => {
            if y < 0 {
                if x == 0 {
                    return Err(PyError::ZeroDivision);
                }
                return finite((x as f64).powf(y as f64));
            }
            match x {
                0 | 1 => Some(if y == 0 { 1 } else { x }),
                -1 => Some(if y % 2 == 0 { 1 } else { -1 }),
                _ => u32::try_from(y).ok().and_then(|e| x.checked_pow(e)),
            }
        }
    };
    v.map(Value::Int).ok_or(PyError::Overflow)
}

fn float_op(op: BinOp, x: f64, y: f64) -> EResult<Value> {
    let v = match op {
        BinOp::Add => x + y,
        BinOp::Sub => x - y,
        BinOp::Mul => x * y,
        BinOp::Div => {
            if y == 0.0 {
                return Err(PyError::ZeroDivision);
            }
            x / y
        }
        BinOp::FloorDiv => {
            if y == 0.0 {
                return Err(PyError::ZeroDivision);
            }
            (x / y).floor()
        }
        BinOp::Mod => {
            if y == 0.0 {
                return Err(PyError::ZeroDivision);
            }
            let r = x % y;
            if r != 0.0 && ((r < 0.0) != (y < 0.0)) {
                r + y
            } else {
                r
            }
        }
        BinOp::Pow => {
            if x == 0.0 && y < 0.0 {
                return Err(PyError::ZeroDivision);
            }
            if x < 0.0 && y.fract() != 0.0 {
                return Err(PyError::Value(
                    "a negative number to a fractional power".into(),
                ));
            }
            x.powf(y)
        }
        BinOp::BitAnd | BinOp::BitOr | BinOp::BitXor | BinOp::LShift | BinOp::RShift => {
            return Err(PyError::Type(format!(
                "unsupported operand types for {op:?}: float"
            )));
        }
    };
    finite(v)
}

/// `str(v)`.
fn display(v: &Value) -> String {
    match v {
        Value::None => "None".into(),
        Value::Bool(b) => if *b { "True" } else { "False" }.into(),
        Value::Int(i) => i.to_string(),
        Value::Float(f) => float_text(*f),
        Value::Str(s) => s.to_string(),
        Value::List(s) => format!(
            "[{}]",
            s.items.iter().map(repr).collect::<Vec<_>>().join(", ")
        ),
        Value::Tuple(s) if s.items.len() == 1 => {
            format!("({},)", s.items.iter().map(repr).collect::<String>())
        }
        Value::Tuple(s) => format!(
            "({})",
            s.items.iter().map(repr).collect::<Vec<_>>().join(", ")
        ),
        Value::Dict(s) => format!(
            "{{{}}}",
            s.items
                .iter()
                .map(|p| match p {
                    Value::Tuple(kv) => format!(
                        "{}: {}",
                        kv.items.first().map(repr).unwrap_or_default(),
                        kv.items.get(1).map(repr).unwrap_or_default()
                    ),
                    other => repr(other),
                })
                .collect::<Vec<_>>()
                .join(", ")
        ),
        Value::Range(a, b, 1) => format!("range({a}, {b})"),
        Value::Range(a, b, s) => format!("range({a}, {b}, {s})"),
        Value::Set(s) if s.items.is_empty() => "set()".into(),
        Value::Set(s) => format!(
            "{{{}}}",
            s.items.iter().map(repr).collect::<Vec<_>>().join(", ")
        ),
        Value::Func(f) => format!("<function {}>", f.def.name),
        Value::Method(m) => format!("<method {}>", m.name),
        Value::Builtin(b) => format!("<built-in function {b}>"),
        Value::Module => "<module 'math'>".into(),
    }
}

fn repr(v: &Value) -> String {
    match v {
        Value::Str(s) => str_repr(s),
        other => display(other),
    }
}

/// A string as Python shows it: in single quotes unless it holds one and no double
/// quote, with escapes for backslashes, the quote and control characters.
fn str_repr(s: &str) -> String {
    let quote = if s.contains('\'') && !s.contains('"') {
        '"'
    } else {
        '\''
    };
    let mut out = String::new();
    out.push(quote);
    for c in s.chars() {
        match c {
            '\\' => out.push_str("\\\\"),
            '\n' => out.push_str("\\n"),
            '\r' => out.push_str("\\r"),
            '\t' => out.push_str("\\t"),
            c if c == quote => {
                out.push('\\');
                out.push(c);
            }
            c if c.is_control() || (c.is_whitespace() && c != ' ') => {
                let code = u32::from(c);
                if code < 0x100 {
                    out.push_str(&format!("\\x{code:02x}"));
                } else {
                    out.push_str(&format!("\\u{code:04x}"));
                }
            }
            c => out.push(c),
        }
    }
    out.push(quote);
    out
}

/// `format(v, spec)`: Python's format mini-language,
/// `[[fill]align][sign][#][0][width][,|_][.precision][type]` with the types
/// `s d n b o x X c e E f F g G %` and none (`n` as `d` and `g`: no locale). A width or precision over `max_len` is
/// refused before anything is built.
fn format_spec(v: &Value, spec: &str, max_len: usize) -> EResult<String> {
    if spec.is_empty() {
        return Ok(display(v));
    }
    let cs: Vec<char> = spec.chars().collect();
    let at = |k: usize| cs.get(k).copied();
    let is_align = |c: Option<char>| matches!(c, Some('<' | '>' | '^' | '='));
    let mut i = 0usize;
    let (mut fill, mut align, mut explicit_fill) = (' ', None, false);
    if is_align(at(1)) {
        fill = at(0).unwrap_or(' ');
        align = at(1);
        explicit_fill = true;
        i = 2;
    } else if is_align(at(0)) {
        align = at(0);
        i = 1;
    }
    let sign = match at(i) {
        Some(c @ ('+' | '-' | ' ')) => {
            i += 1;
            Some(c)
        }
        _ => None,
    };
    let alt = at(i) == Some('#');
    if alt {
        i += 1;
    }
    if at(i) == Some('0') {
        // Zero padding after the sign, unless a fill or an alignment says otherwise.
        i += 1;
        if !explicit_fill {
            fill = '0';
        }
        if align.is_none() {
            align = Some('=');
        }
    }
    let number = |i: &mut usize| -> Option<usize> {
        let mut n: Option<usize> = None;
        while let Some(d) = at(*i).and_then(|c| c.to_digit(10)) {
            n = Some(n.unwrap_or(0).saturating_mul(10).saturating_add(d as usize));
            *i += 1;
        }
        n
    };
    let width = number(&mut i).unwrap_or(0);
    let group = match at(i) {
        Some(c @ (',' | '_')) => {
            i += 1;
            Some(c)
        }
        _ => None,
    };
    let precision = if at(i) == Some('.') {
        i += 1;
        Some(
            number(&mut i)
                .ok_or_else(|| PyError::Value("format specifier missing precision".into()))?,
        )
    } else {
        None
    };
    let ty = at(i);
    if i + usize::from(ty.is_some()) < cs.len() {
        return Err(PyError::Value(format!("invalid format specifier {spec:?}")));
    }
    if ty == Some('n') && group.is_some() {
        return Err(PyError::Value("cannot specify ',' or '_' with 'n'".into()));
    }
    if width > max_len || precision.is_some_and(|p| p > max_len) {
        return Err(PyError::Memory(format!(
            "a format of {} characters",
            width.max(precision.unwrap_or(0))
        )));
    }
    // The sign, a prefix (`0x`), then the digits (grouped as `group` says) and the rest.
    let (negative, prefix, digits, rest, grouping) = match v {
        Value::Str(s) => {
            if !matches!(ty, None | Some('s')) {
                return Err(PyError::Value(format!(
                    "unknown format code {:?} for a str",
                    ty.unwrap_or(' ')
                )));
            }
            if sign.is_some() || alt || group.is_some() || align == Some('=') {
                return Err(PyError::Value(format!(
                    "the format specifier {spec:?} is not allowed for a str"
                )));
            }
            let body: String = match precision {
                Some(p) => s.chars().take(p).collect(),
                None => s.to_string(),
            };
            (false, "", body, String::new(), None)
        }
        Value::Int(_) | Value::Bool(_)
            if matches!(ty, None | Some('d' | 'n' | 'b' | 'o' | 'x' | 'X' | 'c')) =>
        {
            let n = v.as_int().unwrap_or(0);
            if precision.is_some() {
                return Err(PyError::Value(
                    "precision not allowed in integer format specifier".into(),
                ));
            }
            let m = n.unsigned_abs();
            let (prefix, digits, every) = match ty {
                Some('b') => ("0b", format!("{m:b}"), 4),
                Some('o') => ("0o", format!("{m:o}"), 4),
                Some('x') => ("0x", format!("{m:x}"), 4),
                Some('X') => ("0X", format!("{m:X}"), 4),
                Some('c') => {
                    if sign.is_some() || alt || group.is_some() {
                        return Err(PyError::Value(format!(
                            "the format specifier {spec:?} is not allowed with 'c'"
                        )));
                    }
                    let c = u32::try_from(n)
                        .ok()
                        .and_then(char::from_u32)
                        .ok_or_else(|| PyError::Value(format!("%c arg {n} not in range")))?;
                    ("", c.to_string(), 0)
                }
                _ => ("", m.to_string(), 3),
            };
            if group == Some(',') && every == 4 {
                return Err(PyError::Value(format!(
                    "cannot specify ',' with {:?}",
                    ty.unwrap_or(' ')
                )));
            }
            let prefix = if alt { prefix } else { "" };
            let grouping = group.filter(|_| every > 0).map(|g| (g, every));
            (n < 0, prefix, digits, String::new(), grouping)
        }
        Value::Int(_) | Value::Bool(_) | Value::Float(_) => {
            let f = v.as_f64().unwrap_or(0.0);
            if let Some(c @ ('d' | 'b' | 'o' | 'x' | 'X' | 'c' | 's')) = ty {
                return Err(PyError::Value(format!(
                    "unknown format code {c:?} for a float"
                )));
            }
            let body = float_body(f.abs(), ty, precision, alt)?;
            let int_len = body.chars().take_while(char::is_ascii_digit).count();
            let digits: String = body.chars().take(int_len).collect();
            let rest: String = body.chars().skip(int_len).collect();
            let negative = f.is_sign_negative() && !f.is_nan();
            (negative, "", digits, rest, group.map(|g| (g, 3)))
        }
        other => {
            return Err(PyError::Type(format!(
                "unsupported format string passed to {}.__format__",
                other.type_name()
            )));
        }
    };
    let sign_text = match (negative, sign) {
        (true, _) => "-",
        (false, Some('+')) => "+",
        (false, Some(' ')) => " ",
        _ => "",
    };
    let body = match grouping {
        Some((sep, every)) => {
            let mut digits = digits;
            if fill == '0' && align == Some('=') {
                // Zero padding is grouped too: as many digits as reach the width.
                let other = sign_text.len() + prefix.len() + rest.chars().count();
                let grouped = |n: usize| n + n.saturating_sub(1) / every;
                let mut n = digits.chars().count();
                while grouped(n) + other < width {
                    n += 1;
                }
                digits = "0".repeat(n - digits.chars().count()) + &digits;
            }
            group_digits(&digits, sep, every) + &rest
        }
        None => digits + &rest,
    };
    let len = sign_text.len() + prefix.len() + body.chars().count();
    let pad = width.saturating_sub(len);
    let fills = |n: usize| -> String { std::iter::repeat_n(fill, n).collect() };
    let align = align.unwrap_or(if matches!(v, Value::Str(_)) { '<' } else { '>' });
    Ok(match align {
        '<' => format!("{sign_text}{prefix}{body}{}", fills(pad)),
        '^' => format!(
            "{}{sign_text}{prefix}{body}{}",
            fills(pad / 2),
            fills(pad - pad / 2)
        ),
        '=' => format!("{sign_text}{prefix}{}{body}", fills(pad)),
        _ => format!("{}{sign_text}{prefix}{body}", fills(pad)),
    })
}

/// `digits` with `sep` between groups of `every`, from the right.
fn group_digits(digits: &str, sep: char, every: usize) -> String {
    let n = digits.chars().count();
    let mut out = String::new();
    for (k, c) in digits.chars().enumerate() {
        if k > 0 && (n - k) % every == 0 {
            out.push(sep);
        }
        out.push(c);
    }
    out
}

/// A non-negative float (or nan) in the format type `ty` (`e f g %`, upper case, none).
fn float_body(f: f64, ty: Option<char>, precision: Option<usize>, alt: bool) -> EResult<String> {
    let upper = matches!(ty, Some('E' | 'F' | 'G'));
    if !f.is_finite() {
        let word = match (f.is_nan(), upper) {
            (true, false) => "nan",
            (true, true) => "NAN",
            (false, false) => "inf",
            (false, true) => "INF",
        };
        let percent = if ty == Some('%') { "%" } else { "" };
        return Ok(format!("{word}{percent}"));
    }
    let point = |s: String, p: usize| if alt && p == 0 { s + "." } else { s };
    Ok(match ty {
        Some('f' | 'F') => {
            let p = precision.unwrap_or(6);
            point(format!("{f:.p$}"), p)
        }
        Some('%') => {
            let p = precision.unwrap_or(6);
            point(format!("{:.p$}", f * 100.0), p) + "%"
        }
        Some('e' | 'E') => scientific(f, precision.unwrap_or(6), upper, alt),
        // `n` is `g` (no locale here).
        Some('g' | 'G' | 'n') => general(f, precision.unwrap_or(6), upper, alt, false),
        None => match precision {
            // `#` keeps a point: `1.e-07`.
            None if alt && !float_text(f).contains('.') => {
                let text = float_text(f);
                match text.split_once('e') {
                    Some((m, e)) => format!("{m}.e{e}"),
                    None => text + ".",
                }
            }
            None => float_text(f),
            Some(p) => general(f, p, false, alt, true),
        },
        Some(other) => {
            return Err(PyError::Value(format!(
                "unknown format code {other:?} for a number"
            )));
        }
    })
}

/// `f` as `d.ddde+XX` with `p` decimals.
fn scientific(f: f64, p: usize, upper: bool, alt: bool) -> String {
    let s = format!("{f:.p$e}");
    let (mantissa, exp) = s.split_once('e').unwrap_or((s.as_str(), "0"));
    let exp: i32 = exp.parse().unwrap_or(0);
    let dot = if alt && p == 0 { "." } else { "" };
    let e = if upper { 'E' } else { 'e' };
    let sign = if exp < 0 { '-' } else { '+' };
    format!("{mantissa}{dot}{e}{sign}{:02}", exp.unsigned_abs())
}

/// The `g` format with `p` significant digits: fixed point unless the exponent is below
/// -4 or from `p` on, trailing zeros removed (unless `#`). With `repr_like` (a float
/// formatted with a precision and no type), scientific from `p - 1` on and fixed point
/// keeps a `.0`.
fn general(f: f64, p: usize, upper: bool, alt: bool, repr_like: bool) -> String {
    let p = p.max(1);
    let exp: i64 = if f == 0.0 {
        0
    } else {
        let s = format!("{:.*e}", p - 1, f);
        s.split_once('e')
            .and_then(|(_, e)| e.parse().ok())
            .unwrap_or(0)
    };
    let limit = if repr_like { p as i64 - 1 } else { p as i64 };
    let trim = |s: &str| -> String {
        if alt || !s.contains('.') {
            s.to_string()
        } else {
            s.trim_end_matches('0').trim_end_matches('.').to_string()
        }
    };
    if exp >= -4 && exp < limit {
        let decimals = usize::try_from(p as i64 - 1 - exp).unwrap_or(0);
        let mut s = trim(&format!("{f:.decimals$}"));
        if alt && !s.contains('.') {
            s.push('.');
        } else if repr_like && !s.contains('.') {
            s.push_str(".0");
        }
        s
    } else {
        let s = scientific(f, p - 1, upper, alt);
        match s.split_once(['e', 'E']) {
            Some((m, e)) => format!("{}{}{e}", trim(m), if upper { 'E' } else { 'e' }),
            None => s,
        }
    }
}

#[cfg(test)]
mod tests {
    use std::time::{Duration, Instant};

    use super::*;

    fn run(src: &str) -> Result<Number, PyError> {
        run_program(src, &Limits::default())
            .map(|r| r.value)
            .map_err(|f| f.error)
    }

    fn value(src: &str) -> String {
        match run(src) {
            Ok(n) => n.text(),
            Err(e) => format!("error: {e}"),
        }
    }

    /// Runs `src`, which must fail fast.
    fn fails(src: &str) -> PyError {
        let t = Instant::now();
        let out = run(src);
        assert!(
            t.elapsed() < Duration::from_secs(5),
            "took {:?}",
            t.elapsed()
        );
        match out {
            Ok(n) => panic!("expected an error, got {n:?}"),
            Err(e) => e,
        }
    }

    #[test]
    fn gsm8k_style_programs() {
        let src = "def solution():\n    clips_april = 48\n    clips_may = clips_april / 2\n    total = clips_april + clips_may\n    return total\n";
        assert_eq!(run(src), Ok(Number::Float(72.0)));
        assert_eq!(value(src), "72");
        let src = r#"
import math

def solution():
    """Janet's ducks."""
    eggs_per_day = 16
    eaten = 3  # breakfast
    baked = 4
    price: float = 2.0
    remaining = eggs_per_day - eaten - baked
    money = remaining * price
    return money

print(solution())
"#;
        assert_eq!(value(src), "18");
        let src = "def solution() -> int:\n    total = 0\n    for i in range(1, 11):\n        if i % 2 == 0:\n            total += i\n        elif i == 5:\n            total -= 1\n        else:\n            continue\n    return total\n";
        assert_eq!(value(src), "29");
    }

    #[test]
    fn python_arithmetic_semantics() {
        let cases = [
            ("7 // 2", "3"),
            ("-7 // 2", "-4"),
            ("7 // -2", "-4"),
            ("-7 % 3", "2"),
            ("7 % -3", "-2"),
            ("7.5 // 2", "3"),
            ("-7.5 % 2", "0.5"),
            ("2 ** 10", "1024"),
            ("2 ** -1", "0.5"),
            ("-2 ** 2", "-4"),
            ("2 ** 3 ** 2", "512"),
            ("10 / 4", "2.5"),
            ("0.1 + 0.2", "0.3"),
            ("round(2.5)", "2"),
            ("round(3.5)", "4"),
            ("round(1234, -2)", "1200"),
            ("int(-3.9)", "-3"),
            ("abs(-4) + abs(-0.5)", "4.5"),
            ("max(3, 9, 4) - min([5, 2, 8])", "7"),
            ("sum([1, 2, 3]) + len([0] * 4)", "10"),
            ("sum(x * 2 for x in range(4))", "12"),
            ("sum([x for x in range(10) if x % 3 == 0])", "18"),
            ("math.ceil(7 / 2) + math.floor(2.5)", "6"),
            ("math.sqrt(16)", "4"),
            (
                "1 < 2 < 3",
                "error: no numeric result: the result is a bool",
            ),
            ("(1 if 2 > 3 else 5) + (not 0)", "6"),
            ("0 or 7", "7"),
            ("3 and 0", "0"),
            ("divmod(17, 5)[1]", "2"),
            ("[10, 20, 30][-1]", "30"),
            ("[10, 20, 30, 40][1:3][0]", "20"),
            ("len('héllo')", "5"),
            ("float('12.5') * 2", "25"),
            ("int('42')", "42"),
            ("1_000 * 3", "3000"),
            ("1e3 / 8", "125"),
            ("0x10", "16"),
            ("{'a': 2, 'b': 5}['b']", "5"),
            ("sum({'a': 2, 'b': 5}.values())", "7"),
            ("f'{2 / 3:.2f}'", "0.67"),
            ("f'{1234567.891:,.2f}'", "1234567.89"),
            ("round(2.675, 2)", "2.67"),
        ];
        for (expr, want) in cases {
            let src = format!("def solution():\n    return {expr}\n");
            assert_eq!(value(&src), want, "{expr}");
        }
        // Strings holding a number are numbers; "$1,234.50" is read as 1234.5.
        assert_eq!(value("def solution():\n    return '$1,234.50'\n"), "1234.5");
    }

    #[test]
    fn statements_and_functions() {
        let src = r#"
def price(n, each=3):
    return n * each

def solution():
    items = []
    for i in range(3):
        items.append(price(i + 1))
    items.append(price(2, each=10))
    a, b = 2, 3
    a, b = b, a
    counts = {"x": 1}
    counts["x"] += 4
    counts["y"] = a
    total = 0
    n = 0
    while True:
        n += 1
        if n > 100:
            break
    for i, v in enumerate(items):
        total += v * (i == 0)
    xs = [5, 3, 9]
    xs.sort()
    xs[0] = 100
    ys = xs
    ys.append(1)
    assert len(xs) == 3
    return total + sum(items) + counts["x"] + counts["y"] + n + xs[0] + len(ys)
"#;
        // 3 + (3+6+9+20) + 5 + 3 + 101 + 100 + 4
        assert_eq!(value(src), "254");
        // Recursion within the bound.
        let src = "def f(n):\n    return 1 if n <= 1 else n * f(n - 1)\n\ndef solution():\n    return f(10)\n";
        assert_eq!(value(src), "3628800");
        // No solution(): the last printed number, else `answer`.
        assert_eq!(value("x = 4\nprint('Total:', x * 3)\n"), "12");
        assert_eq!(value("answer = 7 * 6\n"), "42");
        // solution() that prints instead of returning.
        assert_eq!(
            value("def solution():\n    t = 5 * 5\n    print(f'The answer is {t}')\nsolution()\n"),
            "25"
        );
        // One-line blocks and semicolons.
        assert_eq!(value("def solution(): x = 2; return x * 21\n"), "42");
    }

    #[test]
    fn typed_errors_for_the_unsupported() {
        type Check = fn(&PyError) -> bool;
        let cases: [(&str, Check); 11] = [
            ("import os\ndef solution():\n    return 1\n", |e| {
                matches!(e, PyError::Unsupported(_))
            }),
            ("def solution():\n    return open('x').read()\n", |e| {
                matches!(e, PyError::Unsupported(_))
            }),
            ("def solution():\n    return __import__('os')\n", |e| {
                matches!(e, PyError::Unsupported(_))
            }),
            ("def solution():\n    return eval('1')\n", |e| {
                matches!(e, PyError::Unsupported(_))
            }),
            ("def solution():\n    x = 1\n    return x.real\n", |e| {
                matches!(e, PyError::Unsupported(_))
            }),
            ("def solution():\n    return math.system\n", |e| {
                matches!(e, PyError::Unsupported(_))
            }),
            ("class A:\n    pass\n", |e| {
                matches!(e, PyError::Unsupported(_))
            }),
            (
                "def solution():\n    with open('x') as f:\n        return 1\n",
                |e| matches!(e, PyError::Unsupported(_)),
            ),
            ("def solution():\n    return y\n", |e| {
                matches!(e, PyError::Name(_))
            }),
            ("def solution():\n    return 1 / 0\n", |e| {
                matches!(e, PyError::ZeroDivision)
            }),
            ("def solution():\n    return 'a' + 1\n", |e| {
                matches!(e, PyError::Type(_))
            }),
        ];
        for (src, ok) in cases {
            let e = fails(src);
            assert!(ok(&e), "{src}: {e:?}");
        }
        for src in [
            "def solution(:\n    return 1\n",
            "def solution():\nreturn 1\n",
            "def solution():\n    return 'abc\n",
            "def solution():\n    return (1 + 2\n",
            "x = = 2\n",
            "def solution():\n  if 1:\n      x = 1\n    return x\n",
        ] {
            assert!(matches!(fails(src), PyError::Syntax(_)), "{src}");
        }
        // The failing line is reported.
        let f = run_program("x = 1\ny = 2\nz = x / (y - 2)\n", &Limits::default()).unwrap_err();
        assert_eq!((f.line, f.error), (3, PyError::ZeroDivision));
    }

    #[test]
    fn hostile_programs_fail_fast_with_typed_errors() {
        assert!(matches!(
            fails("while True:\n    pass\n"),
            PyError::Steps(_)
        ));
        assert!(matches!(
            fails("def solution():\n    i = 0\n    while i >= 0:\n        i += 1\n    return i\n"),
            PyError::Steps(_)
        ));
        assert!(matches!(
            fails("def solution():\n    for i in range(10**30):\n        pass\n"),
            PyError::Steps(_)
        ));
        assert!(matches!(
            fails("def solution():\n    return 10**10**10\n"),
            PyError::Overflow
        ));
        assert!(matches!(
            fails("def solution():\n    return 2**200\n"),
            PyError::Overflow
        ));
        assert!(matches!(
            fails("def solution():\n    return 10.0**400\n"),
            PyError::Overflow
        ));
        assert!(matches!(
            fails("def solution():\n    return math.factorial(10**9)\n"),
            PyError::Overflow | PyError::Steps(_)
        ));
        assert!(matches!(
            fails(
                "def solution():\n    x = 170141183460469231731687303715884105727\n    return x + 1\n"
            ),
            PyError::Overflow
        ));
        assert!(matches!(
            fails("def solution():\n    return [0] * 10**12\n"),
            PyError::Memory(_)
        ));
        assert!(matches!(
            fails("def solution():\n    return 'ab' * 10**9\n"),
            PyError::Memory(_)
        ));
        assert!(matches!(
            fails("def solution():\n    return list(range(10**9))\n"),
            PyError::Memory(_)
        ));
        assert!(matches!(
            fails("def solution():\n    return sum(range(10**9))\n"),
            PyError::Memory(_)
        ));
        assert!(matches!(
            fails("def solution():\n    xs = []\n    while True:\n        xs.append(1)\n"),
            PyError::Memory(_) | PyError::Steps(_)
        ));
        // Doubling a list: the length bound, not the machine's memory.
        assert!(matches!(
            fails(
                "def solution():\n    xs = [1]\n    for i in range(64):\n        xs = xs + xs\n    return len(xs)\n"
            ),
            PyError::Memory(_)
        ));
        // Many large lists: the allocation bound over the run.
        assert!(matches!(
            fails(
                "def solution():\n    keep = []\n    for i in range(5000):\n        keep.append([0] * 9000)\n    return 1\n"
            ),
            PyError::Memory(_) | PyError::Steps(_)
        ));
        // Nesting values inside values.
        assert!(matches!(
            fails(
                "def solution():\n    x = []\n    for i in range(1000):\n        x = [x]\n    return 1\n"
            ),
            PyError::Memory(_)
        ));
        assert!(matches!(
            fails(
                "def solution():\n    x = []\n    for i in range(1000):\n        x.append(x)\n    return 1\n"
            ),
            PyError::Memory(_)
        ));
        // Unbounded and mutual recursion.
        assert!(matches!(
            fails("def f(n):\n    return f(n + 1)\n\ndef solution():\n    return f(0)\n"),
            PyError::Recursion(_)
        ));
        assert!(matches!(
            fails("def a(n):\n    return b(n)\ndef b(n):\n    return a(n)\nsolution = 1\na(1)\n"),
            PyError::Recursion(_)
        ));
        // Exponential recursion: the step bound.
        assert!(matches!(
            fails(
                "def f(n):\n    return 1 if n < 2 else f(n-1) + f(n-2)\ndef solution():\n    return f(30)\n"
            ),
            PyError::Steps(_)
        ));
        // Deep nesting in the source: brackets, prefix operators, blocks.
        let parens = format!("x = {}1{}\n", "(".repeat(5000), ")".repeat(5000));
        assert!(matches!(fails(&parens), PyError::TooDeep(_)));
        let lists = format!("x = {}{}\n", "[".repeat(5000), "]".repeat(5000));
        assert!(matches!(fails(&lists), PyError::TooDeep(_)));
        let negs = format!("x = {}1\n", "-".repeat(19_000));
        assert!(matches!(fails(&negs), PyError::TooDeep(_)));
        let nots = format!("x = {}1\n", "not ".repeat(4000));
        assert!(matches!(fails(&nots), PyError::TooDeep(_)));
        let pows = format!("x = 1{}\n", " ** 1".repeat(3000));
        assert!(matches!(fails(&pows), PyError::TooDeep(_)));
        let calls = format!("x = abs{}\n", "(1)".repeat(3000));
        assert!(matches!(fails(&calls), PyError::TooDeep(_)));
        let ifs: String = (0..60)
            .map(|i| format!("{}if True:\n", " ".repeat(i)))
            .collect::<String>()
            + &" ".repeat(60)
            + "x = 1\n";
        assert!(matches!(fails(&ifs), PyError::TooDeep(_)));
        let elifs = format!(
            "x = 0\nif x == 1:\n    pass\n{}",
            "elif x == 1:\n    pass\n".repeat(500)
        );
        assert!(matches!(fails(&elifs), PyError::TooDeep(_)));
        let fstr = format!("x = f'{{{}1{}}}'\n", "(".repeat(300), ")".repeat(300));
        assert!(matches!(fails(&fstr), PyError::TooDeep(_)));
        // Long but flat chains are fine: they are loops, not recursion.
        let sum = format!("def solution():\n    return 0{}\n", " + 1".repeat(4000));
        assert_eq!(value(&sum), "4000");
        let and = format!("def solution():\n    return 1{}\n", " and 1".repeat(3000));
        assert_eq!(value(&and), "1");
        // Too long a source.
        let long = format!("x = 1\n{}", "# padding\n".repeat(3000));
        assert!(matches!(fails(&long), PyError::SourceTooLong(_)));
        // Odd input never panics.
        for src in [
            "",
            "\n\n",
            "def",
            "def solution",
            "(((",
            ")))",
            "'''",
            "f'{'",
            "f'{}'",
            "x[",
            "1 +",
            "\\",
            "é = 1\nsolution = é",
            "\u{0}",
            "if",
            "for x in",
            "return",
            "x = [i for i in]",
            "a, = 1,",
            "def solution():\n    return\n",
        ] {
            let _ = run(src);
        }
    }

    #[test]
    fn numbers_as_answers() {
        assert_eq!(Number::Int(-3).text(), "-3");
        assert_eq!(Number::Float(12.000000000000002).text(), "12");
        assert_eq!(Number::Float(2.5).text(), "2.5");
        assert_eq!(Number::Float(1.0 / 3.0).text(), "0.3333333333");
        assert_eq!(Number::Float(-0.0).text(), "0");
    }

    /// `print([expr])` and what Python 3 prints for it.
    const STRING_CASES: &[(&str, &str)] = &[
        (r#""a b".split()"#, r#"[['a', 'b']]"#),
        (r#""  a  b \t c\n".split()"#, r#"[['a', 'b', 'c']]"#),
        (r#""".split()"#, r#"[[]]"#),
        (r#""   ".split()"#, r#"[[]]"#),
        (r#"" a ".split(" ")"#, r#"[['', 'a', '']]"#),
        (r#""a,b,,c".split(",")"#, r#"[['a', 'b', '', 'c']]"#),
        (r#""".split(",")"#, r#"[['']]"#),
        (r#""a,b,c".split(",", 1)"#, r#"[['a', 'b,c']]"#),
        (r#""a,b,c".split(",", 0)"#, r#"[['a,b,c']]"#),
        (r#""a,b,c".split(",", -1)"#, r#"[['a', 'b', 'c']]"#),
        (r#""  a b  c  ".split(None, 1)"#, r#"[['a', 'b  c  ']]"#),
        (r#""  a b  c  ".split(maxsplit=1)"#, r#"[['a', 'b  c  ']]"#),
        (r#""a b c".split(sep=" ", maxsplit=1)"#, r#"[['a', 'b c']]"#),
        (r#""aaa".split("aa")"#, r#"[['', 'a']]"#),
        (r#""a,b,c".rsplit(",", 1)"#, r#"[['a,b', 'c']]"#),
        (r#""  a b  c  ".rsplit(None, 1)"#, r#"[['  a b', 'c']]"#),
        (r#""  a b  c  ".rsplit()"#, r#"[['a', 'b', 'c']]"#),
        (r#""aaa".rsplit("aa")"#, r#"[['a', '']]"#),
        (r#""a\x1cb".split()"#, r#"[['a', 'b']]"#),
        (r#""a\u00a0b".split()"#, r#"[['a', 'b']]"#),
        (
            r#""ab\ncd\r\nef\rgh\x0bij".splitlines()"#,
            r#"[['ab', 'cd', 'ef', 'gh', 'ij']]"#,
        ),
        (r#""ab\n".splitlines()"#, r#"[['ab']]"#),
        (r#""\n".splitlines()"#, r#"[['']]"#),
        (r#""".splitlines()"#, r#"[[]]"#),
        (r#""ab\r\ncd".splitlines(True)"#, r#"[['ab\r\n', 'cd']]"#),
        (r#"",".join(["a", "b", "c"])"#, r#"['a,b,c']"#),
        (r#""".join([])"#, r#"['']"#),
        (r#""-".join("abc")"#, r#"['a-b-c']"#),
        (r#"", ".join(str(i) for i in range(3))"#, r#"['0, 1, 2']"#),
        (r#""".join(reversed("hello"))"#, r#"['olleh']"#),
        (r#""  hi  ".strip()"#, r#"['hi']"#),
        (r#""  hi  ".lstrip()"#, r#"['hi  ']"#),
        (r#""  hi  ".rstrip()"#, r#"['  hi']"#),
        (r#""xxhixyx".strip("xy")"#, r#"['hi']"#),
        (r#""xxhixyx".lstrip("x")"#, r#"['hixyx']"#),
        (r#""xxhixyx".rstrip("xy")"#, r#"['xxhi']"#),
        (r#""\t\n hi \x1f".strip()"#, r#"['hi']"#),
        (r#""hi".strip("")"#, r#"['hi']"#),
        (r#""hi".strip(None)"#, r#"['hi']"#),
        (r#""Héllo World".lower()"#, r#"['héllo world']"#),
        (r#""Héllo World".upper()"#, r#"['HÉLLO WORLD']"#),
        (r#""straße".upper()"#, r#"['STRASSE']"#),
        (r#""abc".isalpha()"#, r#"[True]"#),
        (r#""".isalpha()"#, r#"[False]"#),
        (r#""ab1".isalpha()"#, r#"[False]"#),
        (r#""é".isalpha()"#, r#"[True]"#),
        (r#""123".isdigit()"#, r#"[True]"#),
        (r#""".isdigit()"#, r#"[False]"#),
        (r#""12.3".isdigit()"#, r#"[False]"#),
        (r#""-1".isdigit()"#, r#"[False]"#),
        (r#""a1".isalnum()"#, r#"[True]"#),
        (r#""".isalnum()"#, r#"[False]"#),
        (r#""a 1".isalnum()"#, r#"[False]"#),
        (r#"" \t\n".isspace()"#, r#"[True]"#),
        (r#""".isspace()"#, r#"[False]"#),
        (r#"" a".isspace()"#, r#"[False]"#),
        (r#""ABC1".isupper()"#, r#"[True]"#),
        (r#""ABc".isupper()"#, r#"[False]"#),
        (r#""123".isupper()"#, r#"[False]"#),
        (r#""".isupper()"#, r#"[False]"#),
        (r#""abc1".islower()"#, r#"[True]"#),
        (r#""aBc".islower()"#, r#"[False]"#),
        (r#""123".islower()"#, r#"[False]"#),
        (r#""Hello World".istitle()"#, r#"[True]"#),
        (r#""Hello world".istitle()"#, r#"[False]"#),
        (r#""123".istitle()"#, r#"[False]"#),
        (r#""hello".startswith("he")"#, r#"[True]"#),
        (r#""hello".startswith(("x", "he"))"#, r#"[True]"#),
        (r#""hello".startswith("")"#, r#"[True]"#),
        (r#""hello".startswith("lo", 3)"#, r#"[True]"#),
        (r#""hello".startswith("", 5)"#, r#"[True]"#),
        (r#""hello".startswith("", 6)"#, r#"[False]"#),
        (r#""hello".endswith("lo")"#, r#"[True]"#),
        (r#""hello".endswith(("x", "y"))"#, r#"[False]"#),
        (r#""hello".endswith("hel", 0, 3)"#, r#"[True]"#),
        (r#""hello".endswith("", -1)"#, r#"[True]"#),
        (r#""hello".replace("l", "L")"#, r#"['heLLo']"#),
        (r#""hello".replace("l", "L", 1)"#, r#"['heLlo']"#),
        (r#""hello".replace("", "-")"#, r#"['-h-e-l-l-o-']"#),
        (r#""hello".replace("", "-", 2)"#, r#"['-h-ello']"#),
        (r#""hello".replace("x", "y")"#, r#"['hello']"#),
        (r#""aaaa".replace("aa", "b")"#, r#"['bb']"#),
        (r#""hello".replace("l", "", -1)"#, r#"['heo']"#),
        (r#""banana".count("a")"#, r#"[3]"#),
        (r#""banana".count("an")"#, r#"[2]"#),
        (r#""aaaa".count("aa")"#, r#"[2]"#),
        (r#""banana".count("")"#, r#"[7]"#),
        (r#""banana".count("a", 2)"#, r#"[2]"#),
        (r#""banana".count("a", 2, 4)"#, r#"[1]"#),
        (r#""banana".count("", 10)"#, r#"[0]"#),
        (r#""banana".count("", 6)"#, r#"[1]"#),
        (r#""".count("")"#, r#"[1]"#),
        (r#""banana".find("an")"#, r#"[1]"#),
        (r#""banana".find("an", 2)"#, r#"[3]"#),
        (r#""banana".find("x")"#, r#"[-1]"#),
        (r#""banana".find("")"#, r#"[0]"#),
        (r#""banana".find("", 6)"#, r#"[6]"#),
        (r#""banana".find("", 7)"#, r#"[-1]"#),
        (r#""banana".find("a", -2)"#, r#"[5]"#),
        (r#""banana".rfind("an")"#, r#"[3]"#),
        (r#""banana".rfind("")"#, r#"[6]"#),
        (r#""banana".rfind("x")"#, r#"[-1]"#),
        (r#""banana".index("n")"#, r#"[2]"#),
        (r#""banana".rindex("n")"#, r#"[4]"#),
        (r#""héllo wörld".find("wö")"#, r#"[6]"#),
        (r#""héllo wörld".rfind("l")"#, r#"[9]"#),
        (r#""hello world".capitalize()"#, r#"['Hello world']"#),
        (r#""hELLO wORLD".capitalize()"#, r#"['Hello world']"#),
        (r#""".capitalize()"#, r#"['']"#),
        (r#""1abc".capitalize()"#, r#"['1abc']"#),
        (r#""Hello World 123".swapcase()"#, r#"['hELLO wORLD 123']"#),
        (
            r#""they're bill's friends".title()"#,
            r#"["They'Re Bill'S Friends"]"#,
        ),
        (
            r#""hello2world foo_bar".title()"#,
            r#"['Hello2World Foo_Bar']"#,
        ),
        (r#""".title()"#, r#"['']"#),
        (r#""42".zfill(5)"#, r#"['00042']"#),
        (r#""-42".zfill(5)"#, r#"['-0042']"#),
        (r#""+".zfill(3)"#, r#"['+00']"#),
        (r#""abc".zfill(2)"#, r#"['abc']"#),
        (r#""ab".ljust(5, "*")"#, r#"['ab***']"#),
        (r#""ab".rjust(5)"#, r#"['   ab']"#),
        (r#""ab".center(5)"#, r#"['  ab ']"#),
        (r#""abc".center(6, "-")"#, r#"['-abc--']"#),
        (r#""ab".center(6)"#, r#"['  ab  ']"#),
        (r#""a".center(4)"#, r#"[' a  ']"#),
        (r#""a-b-c".partition("-")"#, r#"[('a', '-', 'b-c')]"#),
        (r#""a-b-c".rpartition("-")"#, r#"[('a-b', '-', 'c')]"#),
        (r#""abc".partition("x")"#, r#"[('abc', '', '')]"#),
        (r#""abc".rpartition("x")"#, r#"[('', '', 'abc')]"#),
        (r#""prefix_body".removeprefix("prefix_")"#, r#"['body']"#),
        (r#""body.py".removesuffix(".py")"#, r#"['body']"#),
        (r#""abc".removeprefix("x")"#, r#"['abc']"#),
        (r#""{} and {}".format(1, "b")"#, r#"['1 and b']"#),
        (r#""{1}{0}".format("a", "b")"#, r#"['ba']"#),
        (r#""{x}-{y:.2f}".format(x=1, y=2.5)"#, r#"['1-2.50']"#),
        (r#""{{}} {}".format(7)"#, r#"['{} 7']"#),
        (r#""{!r}".format("a")"#, r#"["'a'"]"#),
        (r#""{:.1f}%".format(12.345)"#, r#"['12.3%']"#),
        (r#""hello"[::-1]"#, r#"['olleh']"#),
        (r#""hello"[1:4]"#, r#"['ell']"#),
        (r#""hello"[-3:]"#, r#"['llo']"#),
        (r#""hello"[::2]"#, r#"['hlo']"#),
        (r#""hello"[4:1:-1]"#, r#"['oll']"#),
        (r#""hello"[-1]"#, r#"['o']"#),
        (r#""héllo"[1]"#, r#"['é']"#),
        (r#""ab" * 3"#, r#"['ababab']"#),
        (r#"3 * "ab""#, r#"['ababab']"#),
        (r#""ab" * 0"#, r#"['']"#),
        (r#""ab" * -1"#, r#"['']"#),
    ];

    /// `print([expr])` and what Python 3 prints for it.
    const BUILTIN_CASES: &[(&str, &str)] = &[
        (r#"all([])"#, r#"[True]"#),
        (r#"all([1, 2, 0])"#, r#"[False]"#),
        (r#"all(x > 0 for x in [1, 2])"#, r#"[True]"#),
        (r#"any([])"#, r#"[False]"#),
        (r#"any([0, "", None, 3])"#, r#"[True]"#),
        (r#"any(c.isdigit() for c in "ab1")"#, r#"[True]"#),
        (r#"chr(97)"#, r#"['a']"#),
        (r#"chr(0x1F600)"#, r#"['😀']"#),
        (r#"ord("a")"#, r#"[97]"#),
        (r#"ord("é")"#, r#"[233]"#),
        (r#"isinstance(1, int)"#, r#"[True]"#),
        (r#"isinstance(True, int)"#, r#"[True]"#),
        (r#"isinstance(1, bool)"#, r#"[False]"#),
        (r#"isinstance(1.0, int)"#, r#"[False]"#),
        (r#"isinstance(1, (str, float))"#, r#"[False]"#),
        (r#"isinstance(1.5, (str, float))"#, r#"[True]"#),
        (r#"isinstance("s", str)"#, r#"[True]"#),
        (r#"isinstance([], list)"#, r#"[True]"#),
        (r#"isinstance((), tuple)"#, r#"[True]"#),
        (r#"isinstance({}, dict)"#, r#"[True]"#),
        (r#"isinstance({1}, set)"#, r#"[True]"#),
        (r#"isinstance([], (tuple, dict))"#, r#"[False]"#),
        (r#"list(map(int, "1 2 3".split()))"#, r#"[[1, 2, 3]]"#),
        (
            r#"list(map(lambda x, y: x * y, [1, 2, 3], [4, 5]))"#,
            r#"[[4, 10]]"#,
        ),
        (r#"sum(map(int, "123"))"#, r#"[6]"#),
        (r#""".join(map(str, [1, 2, 3]))"#, r#"['123']"#),
        (
            r#"list(filter(None, [0, 1, "", "a", None, [], [0]]))"#,
            r#"[[1, 'a', [0]]]"#,
        ),
        (
            r#"list(filter(lambda x: x % 2, range(10)))"#,
            r#"[[1, 3, 5, 7, 9]]"#,
        ),
        (r#"bin(10)"#, r#"['0b1010']"#),
        (r#"bin(0)"#, r#"['0b0']"#),
        (r#"bin(-5)"#, r#"['-0b101']"#),
        (r#"hex(255)"#, r#"['0xff']"#),
        (r#"hex(-255)"#, r#"['-0xff']"#),
        (r#"oct(8)"#, r#"['0o10']"#),
        (r#"bin(True)"#, r#"['0b1']"#),
        (r#"type(1) == int"#, r#"[True]"#),
        (r#"type(True) == int"#, r#"[False]"#),
        (r#"type("a") is str"#, r#"[True]"#),
        (r#"type([]) == list"#, r#"[True]"#),
    ];

    /// `print([expr])` and what Python 3 prints for it.
    const KEY_AND_LAMBDA_CASES: &[(&str, &str)] = &[
        (r#"sorted([3, 1, 2], key=lambda x: -x)"#, r#"[[3, 2, 1]]"#),
        (
            r#"sorted(["bb", "a", "ccc"], key=len)"#,
            r#"[['a', 'bb', 'ccc']]"#,
        ),
        (
            r#"sorted(["bb", "a", "ccc"], key=len, reverse=True)"#,
            r#"[['ccc', 'bb', 'a']]"#,
        ),
        (
            r#"sorted([(1, "b"), (0, "c"), (1, "a")], key=lambda p: p[0])"#,
            r#"[[(0, 'c'), (1, 'b'), (1, 'a')]]"#,
        ),
        (
            r#"sorted([(1, "b"), (0, "c"), (1, "a")], key=lambda p: p[0], reverse=True)"#,
            r#"[[(1, 'b'), (1, 'a'), (0, 'c')]]"#,
        ),
        (r#"sorted([3, 1, 2], reverse=True)"#, r#"[[3, 2, 1]]"#),
        (r#"sorted("hello")"#, r#"[['e', 'h', 'l', 'l', 'o']]"#),
        (r#"sorted({3: "a", 1: "b"})"#, r#"[[1, 3]]"#),
        (r#"sorted([1, -2, 3], key=abs)"#, r#"[[1, -2, 3]]"#),
        (r#"min([3, 1, 2], key=lambda x: -x)"#, r#"[3]"#),
        (r#"max(["bb", "a", "ccc", "ddd"], key=len)"#, r#"['ccc']"#),
        (r#"min(["bb", "a", "c"], key=len)"#, r#"['a']"#),
        (r#"max([], default=7)"#, r#"[7]"#),
        (r#"min([], key=len, default=None)"#, r#"[None]"#),
        (r#"max(1, 5, 3)"#, r#"[5]"#),
        (r#"max("abc", "b", key=len)"#, r#"['abc']"#),
        (r#"(lambda: 5)()"#, r#"[5]"#),
        (r#"(lambda x, y=2: x ** y)(3)"#, r#"[9]"#),
        (r#"(lambda x: lambda y: x + y)(1)(2)"#, r#"[3]"#),
    ];

    /// `print([expr])` and what Python 3 prints for it.
    const SET_AND_DICT_CASES: &[(&str, &str)] = &[
        (r#"{1, 2, 3}"#, r#"[{1, 2, 3}]"#),
        (r#"{3, 1, 2, 1}"#, r#"[{1, 2, 3}]"#),
        (r#"set()"#, r#"[set()]"#),
        (r#"set([3, 1, 2, 1])"#, r#"[{1, 2, 3}]"#),
        (r#"sorted(set("hello"))"#, r#"[['e', 'h', 'l', 'o']]"#),
        (r#"list({5, 1, 3})"#, r#"[[1, 3, 5]]"#),
        (r#"len({1, 2, 2})"#, r#"[2]"#),
        (r#"2 in {1, 2}"#, r#"[True]"#),
        (r#"4 not in {1, 2}"#, r#"[True]"#),
        (r#"{1, 2, 3} | {3, 4}"#, r#"[{1, 2, 3, 4}]"#),
        (r#"{1, 2, 3} & {2, 3, 4}"#, r#"[{2, 3}]"#),
        (r#"{1, 2, 3} - {2}"#, r#"[{1, 3}]"#),
        (r#"{1, 2, 3} ^ {3, 4}"#, r#"[{1, 2, 4}]"#),
        (r#"{1, 2} == {2, 1}"#, r#"[True]"#),
        (r#"{1, 2} <= {1, 2, 3}"#, r#"[True]"#),
        (r#"{1, 2} < {1, 2}"#, r#"[False]"#),
        (r#"{1, 2, 3} > {1}"#, r#"[True]"#),
        (r#"{1, True, 1.0}"#, r#"[{1}]"#),
        (r#"{x % 3 for x in range(10)}"#, r#"[{0, 1, 2}]"#),
        (r#"sum({1, 2, 3})"#, r#"[6]"#),
        (r#"{1, 2}.union([5, 0])"#, r#"[{0, 1, 2, 5}]"#),
        (r#"{1, 2, 3}.intersection([2, 3], {3})"#, r#"[{3}]"#),
        (r#"{1, 2, 3}.difference([1])"#, r#"[{2, 3}]"#),
        (r#"{1, 2}.issubset([1, 2, 3])"#, r#"[True]"#),
        (r#"{1, 2}.issuperset({1})"#, r#"[True]"#),
        (r#"{1, 2}.isdisjoint({3})"#, r#"[True]"#),
        (r#"{1, 2}.symmetric_difference([2, 3])"#, r#"[{1, 3}]"#),
        (
            r#"{x: x * x for x in range(4)}"#,
            r#"[{0: 0, 1: 1, 2: 4, 3: 9}]"#,
        ),
        (
            r#"{c: i for i, c in enumerate("abca")}"#,
            r#"[{'a': 3, 'b': 1, 'c': 2}]"#,
        ),
    ];

    /// `print([expr])` and what Python 3 prints for it.
    const BIT_CASES: &[(&str, &str)] = &[
        (r#"5 & 3"#, r#"[1]"#),
        (r#"5 | 3"#, r#"[7]"#),
        (r#"5 ^ 3"#, r#"[6]"#),
        (r#"~5"#, r#"[-6]"#),
        (r#"1 << 10"#, r#"[1024]"#),
        (r#"-8 >> 1"#, r#"[-4]"#),
        (r#"-1 >> 100"#, r#"[-1]"#),
        (r#"True & False"#, r#"[False]"#),
        (r#"True | False"#, r#"[True]"#),
        (r#"True ^ True"#, r#"[False]"#),
        (r#"6 & True"#, r#"[0]"#),
        (r#"1 + 2 | 4"#, r#"[7]"#),
        (r#"1 | 2 == 3"#, r#"[True]"#),
        (r#"dict([("a", 1), ("b", 2)])"#, r#"[{'a': 1, 'b': 2}]"#),
    ];

    /// `print([expr])` and what Python 3 prints for it.
    const FORMAT_CASES: &[(&str, &str)] = &[
        (r#"format(True, '>5')"#, r#"['    1']"#),
        (r#"format(True, '')"#, r#"['True']"#),
        (r#"format(True, 'd')"#, r#"['1']"#),
        (r#"format(None, '')"#, r#"['None']"#),
        (r#"format(2.0, '.3')"#, r#"['2.0']"#),
        (r#"format(123.0, '.3')"#, r#"['1.23e+02']"#),
        (r#"format(0.0001, '.3')"#, r#"['0.0001']"#),
        (r#"format(0.00001, '.3')"#, r#"['1e-05']"#),
        (r#"format(1e16, '')"#, r#"['1e+16']"#),
        (r#"format(float('inf'), 'f')"#, r#"['inf']"#),
        (r#"format(float('nan'), 'F')"#, r#"['NAN']"#),
        (r#"format(-0.0, 'f')"#, r#"['-0.000000']"#),
        (r#"format(5, '<05')"#, r#"['50000']"#),
        (r#"format(5, 'x<05')"#, r#"['5xxxx']"#),
        (r#"format(1234.5, 'e')"#, r#"['1.234500e+03']"#),
        (r#"format(1234.5, '.2E')"#, r#"['1.23E+03']"#),
        (r#"format(0.0, 'e')"#, r#"['0.000000e+00']"#),
        (r#"format(1e-5, 'g')"#, r#"['1e-05']"#),
        (r#"format(123456789.0, 'g')"#, r#"['1.23457e+08']"#),
        (r#"format(100000.0, 'g')"#, r#"['100000']"#),
        (r#"format(1e6, 'g')"#, r#"['1e+06']"#),
        (r#"format(0.5, '.0%')"#, r#"['50%']"#),
        (r#"format(2.5, '.0f')"#, r#"['2']"#),
        (r#"format(3.5, '.0f')"#, r#"['4']"#),
        (r#"format(1234567, ',')"#, r#"['1,234,567']"#),
        (r#"format(255, '#x')"#, r#"['0xff']"#),
        (r#"format(255, '#010b')"#, r#"['0b11111111']"#),
        (r#"format(-5, '05')"#, r#"['-0005']"#),
        (r#"format(65, 'c')"#, r#"['A']"#),
        (r#"format('abc', '.2')"#, r#"['ab']"#),
        (r#"format('ab', '*^7')"#, r#"['**ab***']"#),
        (r#"format(3.14159, '+.2f')"#, r#"['+3.14']"#),
        (r#"format(42, ' d')"#, r#"[' 42']"#),
        (r#"format(10**6, '_')"#, r#"['1_000_000']"#),
        (r#"format(255, '_x')"#, r#"['ff']"#),
        (r#"format(65535, '_b')"#, r#"['1111_1111_1111_1111']"#),
        (r#"format(0.0, 'g')"#, r#"['0']"#),
        (r#"format(1.0, '.0e')"#, r#"['1e+00']"#),
        (r#"format(9.99, '.1f')"#, r#"['10.0']"#),
        (r#"format(0.000123456, '.3g')"#, r#"['0.000123']"#),
        (r#"format(2.0, '#g')"#, r#"['2.00000']"#),
        (r#"format(1.5, '')"#, r#"['1.5']"#),
        (r#"format(12.0, '5')"#, r#"[' 12.0']"#),
        (r#"format(1e22, '')"#, r#"['1e+22']"#),
        (r#"format(1e22, '.3')"#, r#"['1e+22']"#),
        (r#"format(1234567.891, ',.2f')"#, r#"['1,234,567.89']"#),
        (r#"format(-1234.5, '010,.1f')"#, r#"['-001,234.5']"#),
        (r#"format(5, 'b')"#, r#"['101']"#),
        (r#"format(5, '08b')"#, r#"['00000101']"#),
        (r#"format(-5, 'b')"#, r#"['-101']"#),
        (r#"format(255, 'X')"#, r#"['FF']"#),
        (r#"format(7, '>3')"#, r#"['  7']"#),
        (r#"format(7, '^5')"#, r#"['  7  ']"#),
        (r#"format(-7, '=+6')"#, r#"['-    7']"#),
        (r#"format(12, '%')"#, r#"['1200.000000%']"#),
        (r#"format(0.125, '.1%')"#, r#"['12.5%']"#),
        (r#"format(1/3, '.4')"#, r#"['0.3333']"#),
        (r#"format(2/3, '')"#, r#"['0.6666666666666666']"#),
        (r#"format(1e-7, '')"#, r#"['1e-07']"#),
        (r#"format(123.456, 'e')"#, r#"['1.234560e+02']"#),
        (r#"format(-2.5, 'g')"#, r#"['-2.5']"#),
        (r#"format(5, '.2f')"#, r#"['5.00']"#),
        (r#"format('x', '>3s')"#, r#"['  x']"#),
        (r#"format(3, '')"#, r#"['3']"#),
        (
            r#""{:>5}|{:<5}|{:^5}|".format("a", "b", "c")"#,
            r#"['    a|b    |  c  |']"#,
        ),
        (
            r#"f"{3:03d} {255:x} {5:b} {7:>3}""#,
            r#"['003 ff 101   7']"#,
        ),
        (
            r#"f"{3.14159:.2f} {1e-7} {1e16} {0.1 + 0.2}""#,
            r#"['3.14 1e-07 1e+16 0.30000000000000004']"#,
        ),
        (r#"f"{'abc':>6}|{'abc':<6}|""#, r#"['   abc|abc   |']"#),
        (
            r#"str(1e-05) + str(1.5e300) + str(-0.0) + str(123456789012345678.0)"#,
            r#"['1e-051.5e+300-0.01.2345678901234568e+17']"#,
        ),
        (
            r#"str(0.1) + " " + str(100.0) + " " + str(1/3)"#,
            r#"['0.1 100.0 0.3333333333333333']"#,
        ),
    ];

    /// A program and what Python 3 prints running it.
    const TRY_PROGRAM: (&str, &str) = (
        r#"def parse(s):
    try:
        return int(s)
    except ValueError:
        return -1
print(parse("12"), parse("x"))
def safe_div(a, b):
    try:
        r = a // b
    except ZeroDivisionError:
        print("caught")
        return None
    else:
        print("no error")
        return r
    finally:
        print("finally", a, b)
print(safe_div(7, 2), safe_div(1, 0))
def get(d, k):
    try:
        return d[k]
    except (IndexError, KeyError):
        return "missing"
print(get({"a": 1}, "a"), get({"a": 1}, "b"), get([1], 3))
def nested():
    try:
        try:
            raise ValueError("inner")
        except TypeError:
            print("wrong")
        finally:
            print("inner finally")
    except ValueError as e:
        print("outer", e)
nested()
def reraise():
    try:
        try:
            [][0]
        except IndexError:
            print("handling")
            raise
    except Exception:
        print("re-raised caught")
reraise()
def raise_custom():
    try:
        raise RuntimeError("boom")
    except ValueError:
        print("no")
    except RuntimeError as e:
        print("runtime", e)
raise_custom()
def loop():
    out = []
    for x in ["1", "a", "3"]:
        try:
            out.append(int(x))
        except:
            continue
    return out
print(loop())
def ret_finally():
    try:
        return 1
    finally:
        print("cleanup")
print(ret_finally())
try:
    assert 1 == 2, "msg"
except AssertionError:
    print("assertion caught")
def raise_as_e():
    try:
        int("q")
    except ValueError as err:
        raise err
try:
    raise_as_e()
except ValueError:
    print("raise err caught")
try:
    x = 1
except ValueError:
    x = 2
else:
    x = x + 10
finally:
    x = x * 2
print(x)
for i in range(3):
    try:
        if i == 1:
            break
    finally:
        print("fin", i)
def raise_from():
    try:
        {}["k"]
    except KeyError as e:
        raise ValueError("bad key") from e
try:
    raise_from()
except ValueError as e:
    print(e)
try:
    1 / 0
except ArithmeticError:
    print("arith")
"#,
        r#"12 -1
no error
finally 7 2
caught
finally 1 0
3 None
1 missing missing
inner finally
outer inner
handling
re-raised caught
runtime boom
[1, 3]
cleanup
1
assertion caught
raise err caught
22
fin 0
fin 1
bad key
arith
"#,
    );

    /// A program and what Python 3 prints running it.
    const LAMBDA_PROGRAM: (&str, &str) = (
        r#"def outer(k):
    add = lambda x: x + k
    return [add(i) for i in range(3)]
print(outer(10))
def counts(words):
    freq = {}
    for w in words:
        freq[w] = freq.get(w, 0) + 1
    return sorted(freq, key=lambda w: (-freq[w], w))
print(counts("b a c b a b".split()))
def helper_user(n):
    def is_even(m):
        return m % 2 == 0
    def fact(m):
        return 1 if m <= 1 else m * fact(m - 1)
    return [x for x in range(n) if is_even(x)], fact(5)
print(helper_user(6))
def uses_outer(xs):
    limit = 3
    def small(x):
        return x < limit
    return list(filter(small, xs))
print(uses_outer([1, 5, 2, 7]))
def sort_pairs():
    pairs = [(1, 'b'), (2, 'a'), (1, 'a')]
    pairs.sort(key=lambda p: p[1])
    print(pairs)
    pairs.sort(key=lambda p: p[0], reverse=True)
    print(pairs)
    xs = [3, 1, 2]
    xs.sort(reverse=True)
    print(xs)
    xs.sort()
    print(xs)
sort_pairs()
make_adder = lambda n: (lambda x: x + n)
print(make_adder(5)(1))
print(max({'a': 3, 'b': 7, 'c': 1}.items(), key=lambda kv: kv[1]))
print(sorted(range(10), key=lambda x: (x % 3, -x)))
def compose(f, g):
    return lambda x: f(g(x))
inc_then_double = compose(lambda x: x * 2, lambda x: x + 1)
print(inc_then_double(3))
print(list(map(lambda p: p[0] * p[1], zip([1, 2, 3], [4, 5, 6]))))
def local_sibling():
    def a(x):
        return x + 1
    def b(x):
        return a(x) * 2
    return b(3)
print(local_sibling())
def default_args():
    f = lambda x, y=10: x + y
    return f(1), f(1, 2), f(y=5, x=1)
print(default_args())
"#,
        r#"[10, 11, 12]
['b', 'a', 'c']
([0, 2, 4], 120)
[1, 2]
[(2, 'a'), (1, 'a'), (1, 'b')]
[(2, 'a'), (1, 'a'), (1, 'b')]
[3, 2, 1]
[1, 2, 3]
6
('b', 7)
[9, 6, 3, 0, 7, 4, 1, 8, 5, 2]
8
[4, 10, 18]
8
(11, 3, 6)
"#,
    );

    /// A program and what Python 3 prints running it.
    const SET_PROGRAM: (&str, &str) = (
        r#"s = set()
s.add(3); s.add(1); s.add(3)
print(s, len(s))
s.update([5, 2], "")
print(s)
s.discard(10); s.remove(1)
print(s, 2 in s)
t = {2, 9}
s |= t
print(s)
s -= {9}
print(s)
seen = set()
out = []
for x in [3, 1, 3, 2, 1]:
    if x not in seen:
        seen.add(x)
        out.append(x)
print(out, sorted(seen))
try:
    s.remove(42)
except KeyError:
    print("no 42")
print(s.pop(), s)
print({c for c in "mississippi"} == set("misp"))
print(set([1, 2]) == {2, 1}, {1} != {1, 2}, bool(set()), bool({0}))
s.clear()
print(s, len(s))
print(sorted({-3, 10, -1, 4}), max({4, 9, 2}), min({4, 9, 2}))
print(list(set([5, 5, 1, 3])), sum(set([1, 1, 2])))
print(len(set(range(100))), sorted(set(range(5)) - {1, 3}))
"#,
        r#"{1, 3} 2
{1, 2, 3, 5}
{2, 3, 5} True
{2, 3, 5, 9}
{2, 3, 5}
[3, 1, 2] [1, 2, 3]
no 42
2 {3, 5}
True
True True False True
set() 0
[-3, -1, 4, 10] 9 2
[1, 3, 5] 3
100 [0, 2, 4]
"#,
    );

    /// A program and what Python 3 prints running it.
    const STRING_PROGRAM: (&str, &str) = (
        r#"def words_string(s):
    s = s.replace(",", " ")
    return s.split()
print(words_string("Hi, my name is John"))
def count_upper(s):
    return sum(1 for i in range(0, len(s), 2) if s[i] in "AEIOU")
print(count_upper("aBCdEf"))
def anti_shuffle(s):
    return " ".join("".join(sorted(list(w))) for w in s.split(" "))
print(anti_shuffle("Hello World!!!"))
def encrypt(s):
    return "".join(chr((ord(c) - 97 + 4) % 26 + 97) if c.isalpha() else c for c in s)
print(encrypt("hi there"))
def is_palindrome(s):
    return s == s[::-1]
print(is_palindrome("aba"), is_palindrome("ab"))
print("-" * 5, "ab" * 2)
print("ok")
print(5 & 3, 5 | 3, 5 ^ 3, ~5, 1 << 4, 256 >> 2, -9 >> 1)
x = 6
x &= 3
x |= 8
x ^= 1
x <<= 2
x >>= 1
print(x)
print(isinstance(3, (int, float)), isinstance("a", (list, tuple)))
print(type(3) == int, type(3.0) == float, type("") == str)
print(dict(zip("abc", range(3))), dict([(1, 2)], x=3), dict({"a": 1}))
print({k: v for k, v in [("a", 1), ("b", 2), ("a", 3)]})
print("\x41\u00e9\x0a".split(), "\101")
"#,
        r#"['Hi', 'my', 'name', 'is', 'John']
1
Hello !!!Wdlor
lm xlivi
True False
----- abab
ok
1 7 6 -6 16 64 -5
22
True False
True True True
{'a': 0, 'b': 1, 'c': 2} {1: 2, 'x': 3} {'a': 1}
{'a': 3, 'b': 2}
['Aé'] A
"#,
    );

    /// A program and what Python 3 prints running it.
    const CLOSURE_PROGRAM: (&str, &str) = (
        r#"def solve(grid):
    n = len(grid)
    visited = set()
    def ok(i):
        return 0 <= i < n and i not in visited
    out = []
    for i in range(-1, n + 1):
        if ok(i):
            visited.add(i)
            out.append(ok(i))
    return out, sorted(visited)
print(solve([1, 2, 3]))
def memo_fib(n):
    memo = {}
    def fib(k):
        if k in memo:
            return memo[k]
        r = k if k < 2 else fib(k - 1) + fib(k - 2)
        memo[k] = r
        return r
    return fib(n), len(memo)
print(memo_fib(30))
def collect(xs):
    result = []
    def add(x):
        result.append(x * 2)
    for x in xs:
        add(x)
    return result
print(collect([1, 2, 3]))
def later():
    def b():
        return a() + 1
    def a():
        return 41
    return b()
print(later())
def counter():
    count = 0
    def get():
        return count
    count = 5
    return get()
print(counter())
def make_multipliers():
    return [lambda x, i=i: x * i for i in range(3)]
print([m(10) for m in make_multipliers()])
def make_adder(n):
    def add(x):
        return x + n
    return add
add5 = make_adder(5)
print(add5(1), make_adder(2)(2))
def outer():
    def rec(n):
        return 0 if n == 0 else 1 + rec(n - 1)
    return rec
print(outer()(5))
def apply(f, x):
    return f(x)
def user():
    k = 3
    return apply(lambda v: v * k, 7)
print(user())
def shadow(x):
    f = lambda x: x + 1
    return f(10), x
print(shadow(1))
"#,
        r#"([False, False, False], [0, 1, 2])
(832040, 31)
[2, 4, 6]
42
5
[0, 10, 20]
6 4
5
21
(11, 1)
"#,
    );

    /// What `print([expr])` prints, else the error.
    fn shown(expr: &str) -> String {
        let out = run_script(&format!("print([{expr}])\n"), &Limits::default());
        match out.failure {
            None => out.printed.join("\n"),
            Some(f) => format!("error: {}", f.error),
        }
    }

    fn check_cases(cases: &[(&str, &str)]) {
        for (expr, want) in cases {
            assert_eq!(shown(expr), *want, "{expr}");
        }
    }

    /// Runs a program that must print what Python prints for it.
    fn check_program((src, want): (&str, &str)) {
        let out = run_script(src, &Limits::default());
        assert_eq!(out.failure, None, "{src}");
        assert_eq!(out.printed.join("\n") + "\n", want);
    }

    /// Runs a script, which must fail fast; its error.
    fn script_error(src: &str) -> PyError {
        let t = Instant::now();
        let out = run_script(src, &Limits::default());
        assert!(
            t.elapsed() < Duration::from_secs(5),
            "took {:?}",
            t.elapsed()
        );
        match out.failure {
            Some(f) => f.error,
            None => panic!(
                "expected an error from {src:?}, it printed {:?}",
                out.printed
            ),
        }
    }

    /// What a script prints, which must not fail.
    fn script_prints(src: &str) -> String {
        let out = run_script(src, &Limits::default());
        assert_eq!(out.failure, None, "{src}");
        out.printed.join("\n")
    }

    #[test]
    fn typing_imports_are_accepted_and_ignored() {
        let src = "from typing import List, Tuple, Optional, Any, Dict, Union
import typing
from typing import (
    Callable,
    Set,
)
import math, typing
from typing import *
from typing import List as L

def f(xs: List[int], d: Optional[Dict[str, Tuple[int, ...]]] = None) -> Union[int, typing.Any]:
    total: int = sum(xs)
    return total

print(f([1, 2, 3]))
";
        assert_eq!(script_prints(src), "6");
        for src in [
            "import os\n",
            "from collections import Counter\n",
            "import typing, os\n",
            "import math as m\n",
            "from os import path\n",
        ] {
            assert!(
                matches!(script_error(src), PyError::Unsupported(_)),
                "{src}"
            );
        }
    }

    #[test]
    fn string_methods_are_pythons() {
        check_cases(STRING_CASES);
        check_program(STRING_PROGRAM);
    }

    #[test]
    fn format_specs_and_float_reprs_are_pythons() {
        check_cases(FORMAT_CASES);
        // Corners a differential run against Python found.
        check_cases(&[
            (r#"format(255, '0=05,')"#, r#"['0,255']"#),
            (r#"format(1, '04,')"#, r#"['0,001']"#),
            (r#"format(-42, '0=#10_x')"#, r#"['-0x00_002a']"#),
            (r#"format(-0.5, ' 010,.2F')"#, r#"['-00,000.50']"#),
            (r#"format(-1234.5, '0=10,.0g')"#, r#"['-0,001e+03']"#),
            (r#"format(2.5, '#.0g')"#, r#"['2.']"#),
            (r#"format(7, '0^#010,.0g')"#, r#"['00007.0000']"#),
            (r#"format(1e-7, '#')"#, r#"['1.e-07']"#),
            (r#"format(0.0, '<#012.10n')"#, r#"['0.0000000000']"#),
            (r#"format(99.995, '*>+#12n')"#, r#"['****+99.9950']"#),
            (r#"format(1234567, 'n')"#, r#"['1234567']"#),
            (r#"format(3.5, '.0n')"#, r#"['4']"#),
            (r#"range(10)[::-1]"#, r#"[range(9, -1, -1)]"#),
            (r#"range(5, 50, 7)[::-2]"#, r#"[range(47, -2, -14)]"#),
            (r#"list(range(5, 50, 7)[::-2])"#, r#"[[47, 33, 19, 5]]"#),
            (r#"range(10)[-5::2]"#, r#"[range(5, 10, 2)]"#),
            (r#"range(3)[:]"#, r#"[range(0, 3)]"#),
        ]);
        for (src, ok) in [
            ("x = format(1234567, ',n')\n", "Value"),
            ("x = format(65, '+c')\n", "Value"),
            ("x = format([1], '>5')\n", "Type"),
            ("x = format('a', '+')\n", "Value"),
            ("x = format(1.5, 'd')\n", "Value"),
            ("x = 'a'.split(None, None)\n", "Type"),
            ("x = 'a'.replace('a', 'b', None)\n", "Type"),
        ] {
            let e = script_error(src);
            assert!(format!("{e:?}").starts_with(ok), "{src}: {e:?}");
        }
    }

    #[test]
    fn new_builtins_and_operators_are_pythons() {
        check_cases(BUILTIN_CASES);
        check_cases(BIT_CASES);
        // Python 3's results.
        assert_eq!(
            shown(
                "(pow(3, 200, 13), pow(2, 10, 1000), pow(3, 2, -5), pow(3, -1, 7), pow(-2, 3, 5), pow(5, 0, 1), pow(7, 10**20, 2**61-1), pow(0,0,7))"
            ),
            "[(9, 24, -1, 5, 2, 0, 2149250165951207424, 1)]"
        );
        assert!(matches!(
            script_error("x = pow(2, 3, 0)\n"),
            PyError::Value(_)
        ));
        assert!(matches!(
            script_error("x = pow(2, -1, 4)\n"),
            PyError::Value(_)
        ));
        assert!(matches!(
            script_error("x = pow(2, 3, 2**70)\n"),
            PyError::Overflow
        ));
        assert!(matches!(
            script_error("x = pow(2.0, 3, 5)\n"),
            PyError::Type(_)
        ));
        // A program runs as a script.
        assert_eq!(
            script_prints(
                "def main():\n    print('main')\nif __name__ == '__main__':\n    main()\n"
            ),
            "main"
        );
    }

    #[test]
    fn lambdas_keys_and_closures_are_pythons() {
        check_cases(KEY_AND_LAMBDA_CASES);
        check_program(LAMBDA_PROGRAM);
        check_program(CLOSURE_PROGRAM);
        // A function whose maker has returned reads what it captured, may rebind it,
        // but may not change it in place (Python would change the maker's value).
        let made = "def outer():\n    xs = [1]\n    def add(v):\n        BODY\n    return add\nprint(outer()(2))\n";
        let src = made.replace("BODY", "return xs + [v]");
        assert_eq!(script_prints(&src), "[1, 2]");
        let src = made.replace(
            "BODY",
            "xs = xs + [v]\n        xs.append(3)\n        return xs",
        );
        assert_eq!(script_prints(&src), "[1, 2, 3]");
        let src = made.replace("BODY", "xs.append(v)\n        return xs");
        assert!(matches!(script_error(&src), PyError::Unsupported(_)));
        let src = made.replace("BODY", "xs[0] = v\n        return xs");
        assert!(matches!(script_error(&src), PyError::Unsupported(_)));
        // Keyword arguments the functions do not take.
        assert!(matches!(
            script_error("x = sorted([1], cmp=1)\n"),
            PyError::Unsupported(_)
        ));
        assert!(matches!(
            script_error("xs = [2, 1]\nxs.sort(1)\n"),
            PyError::Type(_)
        ));
        assert!(matches!(
            script_error("x = (lambda *a: 1)()\n"),
            PyError::Unsupported(_)
        ));
    }

    #[test]
    fn sets_are_pythons() {
        check_cases(SET_AND_DICT_CASES);
        check_program(SET_PROGRAM);
        // Sets keep their elements sorted: Python's order for small ints, where its
        // own order for strings and tuples changes from run to run.
        assert_eq!(shown("{'b', 'c', 'a'}"), "[{'a', 'b', 'c'}]");
        assert_eq!(shown("list({(1, 2), (0, 5)})"), "[[(0, 5), (1, 2)]]");
        assert_eq!(shown("{'a', 2, None, (1,)}"), "[{None, 2, 'a', (1,)}]");
        assert!(matches!(script_error("x = {[1]}\n"), PyError::Type(_)));
        assert!(matches!(script_error("x = [1] in {1}\n"), PyError::Type(_)));
        assert!(matches!(
            script_error("s = {1}\ns.add({2})\n"),
            PyError::Type(_)
        ));
        assert!(matches!(
            script_error("s = {1}\ns.remove(2)\n"),
            PyError::Index
        ));
        assert!(matches!(
            script_error("s = set()\ns.pop()\n"),
            PyError::Index
        ));
        assert!(matches!(script_error("x = {1} | [2]\n"), PyError::Type(_)));
    }

    #[test]
    fn try_except_catches_what_python_raises() {
        check_program(TRY_PROGRAM);
        // Each error is caught by Python's class for it, not by another class.
        let cases = [
            ("''.split('')", "ValueError"),
            ("'abc'.index('x')", "ValueError"),
            ("int('x')", "ValueError"),
            ("chr(-1)", "ValueError"),
            ("1 << -1", "ValueError"),
            ("','.join([1])", "TypeError"),
            ("ord('ab')", "TypeError"),
            ("1.5 & 1", "TypeError"),
            ("isinstance(1, 5)", "TypeError"),
            ("'a'.center(3, 'ab')", "TypeError"),
            ("'a' + 1", "TypeError"),
            ("[1][5]", "IndexError"),
            ("{'a': 1}['b']", "KeyError"),
            ("1 // 0", "ZeroDivisionError"),
            ("1 % 0.0", "ArithmeticError"),
        ];
        for (expr, class) in cases {
            let src = format!("try:\n    x = {expr}\nexcept {class}:\n    print('caught')\n");
            assert_eq!(script_prints(&src), "caught", "{expr}");
            let other = if class == "TypeError" {
                "ValueError"
            } else {
                "TypeError"
            };
            let src = format!("try:\n    x = {expr}\nexcept {other}:\n    print('caught')\n");
            let e = script_error(&src);
            assert!(catchable(&e), "{expr}: {e:?}");
        }
        // Raised and not caught: typed errors.
        assert_eq!(
            script_error("raise ValueError('bad')\n"),
            PyError::Value("bad".into())
        );
        assert_eq!(script_error("raise KeyError('k')\n"), PyError::Index);
        assert_eq!(
            script_error("raise ZeroDivisionError\n"),
            PyError::ZeroDivision
        );
        assert_eq!(
            script_error("raise RuntimeError('boom')\n"),
            PyError::Raised("RuntimeError".into(), "boom".into())
        );
        assert_eq!(
            script_error("raise NotImplementedError\n"),
            PyError::Raised("NotImplementedError".into(), String::new())
        );
        assert!(matches!(script_error("raise\n"), PyError::Raised(..)));
        // A handler's own error goes on, after `finally`.
        let src = "try:\n    try:\n        1 / 0\n    except ZeroDivisionError:\n        [][1]\n    finally:\n        print('fin')\nexcept IndexError:\n    print('outer')\n";
        assert_eq!(script_prints(src), "fin\nouter");
        for src in [
            "try:\n    pass\n",
            "except:\n    pass\n",
            "finally:\n    pass\n",
            "try:\n    pass\nelse:\n    pass\n",
            "try:\npass\nexcept:\n    pass\n",
        ] {
            assert!(matches!(script_error(src), PyError::Syntax(_)), "{src}");
        }
        for src in [
            "try:\n    pass\nexcept* ValueError:\n    pass\n",
            "try:\n    pass\nexcept a.b:\n    pass\n",
            "raise a.B()\n",
        ] {
            assert!(
                matches!(script_error(src), PyError::Unsupported(_)),
                "{src}"
            );
        }
    }

    #[test]
    fn try_never_catches_a_limit() {
        type Check = fn(&PyError) -> bool;
        let bodies: [(&str, Check); 7] = [
            ("while True:\n        pass", |e| {
                matches!(e, PyError::Steps(_))
            }),
            ("x = [0] * 10**9", |e| matches!(e, PyError::Memory(_))),
            ("x = 2 ** 200", |e| matches!(e, PyError::Overflow)),
            ("x = f(0)", |e| matches!(e, PyError::Recursion(_))),
            ("x = open('x')", |e| matches!(e, PyError::Unsupported(_))),
            ("x = undefined_name", |e| matches!(e, PyError::Name(_))),
            ("x = 'a'.ljust(10**9)", |e| matches!(e, PyError::Memory(_))),
        ];
        for handler in [
            "except Exception:",
            "except:",
            "except (OverflowError, RecursionError, MemoryError, NameError):",
        ] {
            for (body, ok) in bodies {
                let src = format!(
                    "def f(n):\n    return f(n + 1)\ntry:\n    {body}\n{handler}\n    print('caught')\nfinally:\n    print('finally')\n"
                );
                let out = run_script(&src, &Limits::default());
                let e = out.failure.map(|f| f.error);
                assert!(e.as_ref().is_some_and(ok), "{src}: {e:?}");
                // Neither the handler nor `finally` ran.
                assert!(out.printed.is_empty(), "{src}");
            }
        }
        // Caught errors in a loop still meet the step limit.
        assert!(matches!(
            script_error(
                "while True:\n    try:\n        1 / 0\n    except ZeroDivisionError:\n        pass\n"
            ),
            PyError::Steps(_)
        ));
        assert!(matches!(
            script_error(
                "while True:\n    try:\n        raise ValueError\n    except:\n        pass\n    finally:\n        pass\n"
            ),
            PyError::Steps(_)
        ));
    }

    #[test]
    fn new_features_stay_bounded() {
        let memory = |src: &str| {
            let e = script_error(src);
            assert!(matches!(e, PyError::Memory(_)), "{src}: {e:?}");
        };
        let memory_or_steps = |src: &str| {
            let e = script_error(src);
            assert!(
                matches!(e, PyError::Memory(_) | PyError::Steps(_)),
                "{src}: {e:?}"
            );
        };
        let steps = |src: &str| {
            let e = script_error(src);
            assert!(matches!(e, PyError::Steps(_)), "{src}: {e:?}");
        };
        // One huge result, refused before it is built.
        memory("x = ','.join(['x' * 1000] * 100)\n");
        memory("x = ('a' * 5000).replace('a', 'aaaa')\n");
        memory("x = ('a' * 5000).replace('', 'bc')\n");
        memory("x = 'a'.ljust(10**9)\n");
        memory("x = 'a'.center(10**30)\n");
        memory("x = '7'.zfill(10**6)\n");
        memory("x = f'{1:>1000000000}'\n");
        memory("x = format(1.5, '.100000f')\n");
        memory("x = '{:>99999999}'.format(1)\n");
        memory("x = set(range(10**9))\n");
        memory("x = {i: i for i in range(10**9)}\n");
        // Many results: the allocation bound over the run.
        memory_or_steps("s = 'a' * 5000\nfor i in range(1000):\n    t = ''.join([s, s])\n");
        memory_or_steps("s = 'a ' * 5000\nfor i in range(1000):\n    t = s.split()\n");
        memory_or_steps("s = 'a,' * 5000\nfor i in range(1000):\n    t = s.split(',')\n");
        memory_or_steps(
            "s = ' a ' * 3000\nfor i in range(1000):\n    t = s.strip().upper().title()\n",
        );
        memory_or_steps("s = set()\ni = 0\nwhile True:\n    s.add(i)\n    i += 1\n");
        memory_or_steps("s = set()\ni = 0\nwhile True:\n    s.add(-i)\n    i += 1\n");
        // Work on long values counts.
        steps("xs = list(range(5000))\nwhile True:\n    ys = sorted(xs, key=lambda v: -v)\n");
        steps("xs = list(range(5000))\nwhile True:\n    xs.sort(key=lambda v: -v)\n");
        steps("while True:\n    x = list(map(lambda v: v, range(100)))\n");
        steps("s = 'ab' * 4000\nwhile True:\n    n = s.count('b') + s.find('x')\n");
        memory_or_steps(
            "a = set(range(5000))\nb = set(range(2500, 7500))\nwhile True:\n    c = a | b\n",
        );
        // Calls and nesting.
        assert!(matches!(
            script_error("f = lambda n: f(n + 1)\nf(0)\n"),
            PyError::Recursion(_)
        ));
        assert!(matches!(
            script_error(
                "def outer():\n    def inner(n):\n        return inner(n + 1)\n    return inner(0)\nouter()\n"
            ),
            PyError::Recursion(_)
        ));
        memory(
            "def f():\n    x = []\n    for i in range(100):\n        g = lambda: x\n        x = [g]\n    return x\nf()\n",
        );
        memory(
            "def f():\n    x = 0\n    for i in range(100):\n        g = lambda y=x: y\n        x = [g]\n    return x\nf()\n",
        );
        memory("s = {1}\nfor i in range(100):\n    s.add(tuple(x for x in s))\n");
        for src in ["x = 1 << 200\n", "x = 1 << 10**30\n", "x = -1 << 128\n"] {
            assert!(matches!(script_error(src), PyError::Overflow), "{src}");
        }
        // Odd input never panics.
        for src in [
            "try:",
            "try:\n    pass\nexcept",
            "try:\n    pass\nexcept ValueError as:\n    pass\n",
            "lambda",
            "f = lambda x",
            "f = lambda: ",
            "x = 1 + lambda: 2",
            "{1,",
            "{1: 2 for",
            "{x for x in}",
            "raise",
            "raise ValueError(",
            "x = '\\x4'",
            "x = '\\u12'",
            "x = '\\U0011ffff'",
            "x = '{'.format(1)",
            "x = '}'.format(1)",
            "x = '{0[1]}'.format([1, 2])",
            "x = '{:%%}'.format(1)",
            "x = format(1, '.')",
            "x = 1 <<",
            "x = ~",
            "s = {1}\ns |= [1]",
            "def f():\n    try:\n        return 1\n    finally:\n        return 2\nprint(f())",
        ] {
            let out = run_script(src, &Limits::default());
            assert!(
                !out.failure
                    .is_some_and(|f| matches!(f.error, PyError::Internal(_))),
                "{src}"
            );
        }
    }

    /// A program and what Python 3 prints running it.
    const METHOD_AND_ELSE_PROGRAM: (&str, &str) = (
        r#"counts = {"a": 3, "b": 7, "c": 1}
print(max(counts, key=counts.get), sorted(counts, key=counts.get))
print(list(map(str.strip, [" a ", "b  "])), sorted(["b", "A", "c"], key=str.lower))
print(list(filter(str.isdigit, ["1", "x", "23"])), list(map("-".join, ["ab", "cd"])))
words = ["x", "yy"]
print(list(map(len, words)), sorted(words, key=words.index))
find = "hello".find
print(find("l"), str.upper("abc"), dict.get({1: 2}, 1))
def is_prime(n):
    for k in range(2, n):
        if n % k == 0:
            break
    else:
        return n > 1
    return False
print([n for n in range(12) if is_prime(n)])
i = 0
while i < 3:
    i += 1
else:
    print("while done", i)
while True:
    break
else:
    print("never")
for x in []:
    pass
else:
    print("empty for else")
"#,
        r#"b ['c', 'a', 'b']
['a', 'b'] ['A', 'b', 'c']
['1', '23'] ['a-b', 'c-d']
[1, 2] ['x', 'yy']
2 ABC 2
[2, 3, 5, 7, 11]
while done 3
empty for else
"#,
    );

    #[test]
    fn methods_as_values_and_loop_else_are_pythons() {
        check_program(METHOD_AND_ELSE_PROGRAM);
        for src in [
            "xs = [1]\nf = xs.append\n",
            "f = list.append\n",
            "x = (1).real\n",
        ] {
            assert!(
                matches!(script_error(src), PyError::Unsupported(_)),
                "{src}"
            );
        }
        assert!(matches!(
            script_error("x = str.upper(1)\n"),
            PyError::Type(_)
        ));
    }

    /// A program and what Python 3 prints running it.
    const SLICE_PROGRAM: (&str, &str) = (
        r#"def sort_third(l):
    l = list(l)
    l[::3] = sorted(l[::3])
    return l
print(sort_third([5, 6, 3, 4, 8, 9, 2]))
xs = [0, 1, 2, 3, 4, 5]
xs[1:3] = ["a", "b", "c"]
print(xs)
xs[:] = []
print(xs)
ys = list(range(6))
ys[::-2] = [10, 20, 30]
print(ys)
ys[10:] = [7]
print(ys)
ys[-2:] = "xy"
print(ys)
ys[2:1] = [99]
print(ys)
try:
    ys[::2] = [1]
except ValueError:
    print("sizes differ")
s = "hello world"
print(s[::-1], s[-5:], s[:-6], s[::3], s[100:], s[-100:2], s[3:-3:2])
"#,
        r#"[2, 6, 3, 4, 8, 9, 5]
[0, 'a', 'b', 'c', 3, 4, 5]
[]
[0, 30, 2, 20, 4, 10]
[0, 30, 2, 20, 4, 10, 7]
[0, 30, 2, 20, 4, 'x', 'y']
[0, 30, 99, 2, 20, 4, 'x', 'y']
sizes differ
dlrow olleh world hello hlwl  he l o
"#,
    );

    #[test]
    fn slices_and_slice_assignment_are_pythons() {
        check_program(SLICE_PROGRAM);
        for src in [
            "xs = [0] * 5000\nwhile True:\n    xs[0:1] = [1, 2]\n",
            "xs = []\nxs[:] = range(10**9)\n",
            "xs = [0] * 5000\nwhile True:\n    xs[100:200] = xs[100:200]\n",
        ] {
            let e = script_error(src);
            assert!(
                matches!(e, PyError::Memory(_) | PyError::Steps(_)),
                "{src}: {e:?}"
            );
        }
        assert!(matches!(
            script_error("s = 'abc'\ns[0:1] = 'x'\n"),
            PyError::Type(_)
        ));
        assert!(matches!(
            script_error("xs = [1, 2]\nxs[0:1] += [3]\n"),
            PyError::Unsupported(_)
        ));
        assert!(matches!(
            script_error("xs = [1, 2]\nxs[::0] = []\n"),
            PyError::Value(_)
        ));
        assert_eq!(shown("'abc'[::2**126]"), "['a']");
        assert_eq!(
            shown("'abc'[1::170141183460469231731687303715884105727]"),
            "['b']"
        );
    }
}
