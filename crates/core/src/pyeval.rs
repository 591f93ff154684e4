//! `pyeval`: a small, safe interpreter of a subset of Python, for program-of-thought
//! (`pot`): the model writes `def solution(): ...`, this module runs it.
//!
//! Nothing is executed outside this interpreter: no real Python, no imports beyond
//! `math`, no attributes beyond a few `math` functions and list/dict/str methods, no
//! files, no network. Every resource is bounded by [`Limits`]: source length, nesting
//! of the parsed program (the parser refuses deeper input, so no recursion an input
//! controls goes beyond a fixed depth), interpreter steps (every statement, expression
//! and element of a bulk operation counts), call depth, collection lengths, the
//! elements and characters allocated over the whole run, and the size of integers
//! (`i128`, overflow is an error). Anything outside the subset is a typed [`PyError`],
//! never a panic.
//!
//! The subset: integers, floats, strings (f-strings with `{expr}` and `{expr:.2f}`),
//! `True`/`False`/`None`, lists, tuples, dicts, `+ - * / // % **`, unary `-`/`+`,
//! comparisons (chained, `in`, `not in`, `is`), `and`/`or`/`not`, conditional
//! expressions, assignment (also to tuples, list and dict items, annotated), augmented
//! assignment, `if/elif/else`, `for ... in` (range, lists, tuples, strings, dicts),
//! `while`, `break`/`continue`/`pass`, `def` with positional, default and keyword
//! arguments, `return`, list comprehensions and generator arguments (`sum(x for x in
//! xs)`), indexing and slicing, `import math` / `from math import ...`, `assert`.
//! Built-ins: `print` (captured), `len sum min max abs round int float str bool list
//! tuple range sorted reversed enumerate zip divmod pow`; `math.floor ceil sqrt trunc
//! fabs pow exp log log10 gcd lcm factorial prod isclose pi e inf`; list `append extend
//! pop insert remove count index sort reverse copy`; dict `get keys values items`.
//!
//! Lists and dicts have value semantics (`b = a; b.append(1)` leaves `a` alone), which
//! keeps values acyclic; methods that mutate need a plain variable (`xs.append(1)`).
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
                    '0' => out.push('\0'),
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
    Neg(Box<Expr>),
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
    While(Expr, Vec<Stmt>),
    For(Target, Expr, Vec<Stmt>),
    Def(Rc<FuncDef>),
    Return(Option<Expr>),
    Pass,
    Break,
    Continue,
    Assert(Expr),
}

#[derive(Debug)]
struct FuncDef {
    name: String,
    params: Vec<(String, Option<Expr>)>,
    body: Vec<Stmt>,
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
                if self.is_kw("else") {
                    return Err(self.unsupported("while ... else"));
                }
                StmtKind::While(cond, body)
            }
            "for" => {
                self.pos += 1;
                let target = self.target_list()?;
                if !self.eat_kw("in") {
                    return Err(self.err("expected `in`"));
                }
                let iter = self.expr_list()?;
                let body = self.block()?;
                if self.is_kw("else") {
                    return Err(self.unsupported("for ... else"));
                }
                StmtKind::For(target, iter, body)
            }
            "def" => {
                self.pos += 1;
                StmtKind::Def(Rc::new(self.def_rest()?))
            }
            "class" | "try" | "with" | "async" | "lambda" | "global" | "nonlocal" | "del"
            | "raise" | "yield" | "except" | "finally" => {
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
        Ok(FuncDef { name, params, body })
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
                        if m != "math" {
                            return Err(self.unsupported(format!("import of `{m}`")));
                        }
                        if self.eat_kw("as") {
                            return Err(self.unsupported("import ... as"));
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
                    if m != "math" {
                        return Err(self.unsupported(format!("import from `{m}`")));
                    }
                    if !self.eat_kw("import") {
                        return Err(self.err("expected `import`"));
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
            Expr::Slice(..) => Err(self.unsupported("assignment to a slice")),
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
            || ["+=", "-=", "*=", "/=", "//=", "%=", "**="]
                .iter()
                .any(|o| self.is_op(o))
    }

    fn expr(&mut self) -> PResult<Expr> {
        if self.is_kw("lambda") {
            return Err(self.unsupported("lambda"));
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
        let first = self.arith()?;
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
            rest.push((op, self.arith()?));
        }
        if rest.is_empty() {
            Ok(first)
        } else {
            Ok(Expr::Compare(Box::new(first), rest))
        }
    }

    fn arith(&mut self) -> PResult<Expr> {
        let first = self.term()?;
        let mut rest = Vec::new();
        loop {
            let op = match self.peek() {
                Tok::Op("+") => BinOp::Add,
                Tok::Op("-") => BinOp::Sub,
                Tok::Op(o @ ("<<" | ">>" | "&" | "|" | "^")) => {
                    return Err(self.unsupported(format!("operator `{o}`")));
                }
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
        if self.is_op("~") {
            return Err(self.unsupported("operator `~`"));
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
                "lambda" => Err(self.unsupported("lambda")),
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
                let mut items = Vec::new();
                while !p.is_op("}") {
                    let k = p.expr()?;
                    if !p.eat_op(":") {
                        return Err(p.unsupported("sets"));
                    }
                    let v = p.expr()?;
                    if p.is_kw("for") {
                        return Err(p.unsupported("dict comprehensions"));
                    }
                    items.push((k, v));
                    if !p.eat_op(",") {
                        break;
                    }
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
    Range(i128, i128, i128),
    Func(Rc<FuncDef>),
    Builtin(&'static str),
    Module,
}

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
            Value::Range(..) => "range",
            Value::Func(_) | Value::Builtin(_) => "function",
            Value::Module => "module",
        }
    }

    fn depth(&self) -> u32 {
        match self {
            Value::List(s) | Value::Tuple(s) | Value::Dict(s) => s.depth,
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
            Value::Dict(s) => !s.items.is_empty(),
            Value::Range(a, b, st) => range_len(*a, *b, *st) > 0,
            Value::Func(_) | Value::Builtin(_) | Value::Module => true,
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

fn float_text(f: f64) -> String {
    if f.is_finite() && f == f.trunc() && f.abs() < 1e16 {
        format!("{f:.1}")
    } else if f.is_nan() {
        "nan".into()
    } else if f.is_infinite() {
        if f > 0.0 { "inf".into() } else { "-inf".into() }
    } else {
        format!("{f}")
    }
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

const BUILTINS: [&str; 22] = [
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

struct Interp<'a> {
    limits: &'a Limits,
    steps: u64,
    alloc: u64,
    frames: Vec<HashMap<String, Value>>,
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

    fn lookup(&self, name: &str) -> EResult<Value> {
        if let Some(v) = self.frames.last().and_then(|f| f.get(name)) {
            return Ok(v.clone());
        }
        if let Some(v) = self.frames.first().and_then(|f| f.get(name)) {
            return Ok(v.clone());
        }
        if let Some(b) = BUILTINS.iter().find(|b| **b == name) {
            return Ok(Value::Builtin(b));
        }
        if name == "math" {
            return Ok(Value::Module);
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
    }

    /// The variable `name` for mutation in place (current frame, else globals).
    fn var_mut(&mut self, name: &str) -> EResult<&mut Value> {
        let n = self.frames.len();
        let in_local = self.frames.last().is_some_and(|f| f.contains_key(name));
        let idx = if in_local { n.saturating_sub(1) } else { 0 };
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
                    Target::Tuple(_) => {
                        return Err(PyError::Syntax("augmented assignment to a tuple".into()));
                    }
                }
            }
            StmtKind::If(cond, body, orelse) => {
                let c = self.eval(cond)?.truthy();
                return self.exec_block(if c { body } else { orelse });
            }
            StmtKind::While(cond, body) => loop {
                self.tick(1)?;
                if !self.eval(cond)?.truthy() {
                    break;
                }
                match self.exec_block(body)? {
                    Flow::Break => break,
                    Flow::Return(v) => return Ok(Flow::Return(v)),
                    Flow::Normal | Flow::Continue => {}
                }
            },
            StmtKind::For(target, iter, body) => {
                let it = self.eval(iter)?;
                let mut flow = Flow::Normal;
                self.for_each(&it, &mut |me, v| {
                    me.assign(target, v)?;
                    match me.exec_block(body)? {
                        Flow::Break => Ok(false),
                        Flow::Return(v) => {
                            flow = Flow::Return(v);
                            Ok(false)
                        }
                        Flow::Normal | Flow::Continue => Ok(true),
                    }
                })?;
                return Ok(flow);
            }
            StmtKind::Def(f) => self.set(&f.name, Value::Func(f.clone())),
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
        }
        Ok(Flow::Normal)
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
            Value::List(s) | Value::Tuple(s) => {
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
                let mut pairs: Vec<Value> = Vec::new();
                for (k, v) in items {
                    let k = self.eval(k)?;
                    let v = self.eval(v)?;
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
            Expr::Attr(obj, name) => match self.eval(obj)? {
                Value::Module => {
                    math_member(name).ok_or_else(|| PyError::Unsupported(format!("math.{name}")))
                }
                other => Err(PyError::Unsupported(format!(
                    "attribute `{name}` of a {}",
                    other.type_name()
                ))),
            },
            Expr::Index(base, idx) => {
                let b = self.eval(base)?;
                let i = self.eval(idx)?;
                self.index(&b, &i)
            }
            Expr::Slice(base, parts) => {
                let b = self.eval(base)?;
                let mut bounds = [None, None, None];
                for (slot, part) in bounds.iter_mut().zip(parts.iter()) {
                    if let Some(p) = part {
                        let v = self.eval(p)?;
                        if !matches!(v, Value::None) {
                            *slot = Some(v.as_int().ok_or_else(|| {
                                PyError::Type("slice bounds must be ints".into())
                            })?);
                        }
                    }
                }
                self.slice(&b, bounds)
            }
            Expr::Comp(elt, clauses) => {
                let mut out = Vec::new();
                self.comprehension(elt, clauses, &mut out)?;
                self.list(out)
            }
            Expr::FStr(parts) => {
                let mut s = String::new();
                for p in parts {
                    match p {
                        FPart::Lit(l) => s.push_str(l),
                        FPart::Field(e, spec) => {
                            let v = self.eval(e)?;
                            s.push_str(&format_spec(&v, spec)?);
                        }
                    }
                }
                self.string(s)
            }
        }
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

    fn slice(&mut self, base: &Value, bounds: [Option<i128>; 3]) -> EResult<Value> {
        let step = bounds[2].unwrap_or(1);
        if step == 0 {
            return Err(PyError::Value("slice step cannot be zero".into()));
        }
        let pick = |len: usize| -> Vec<usize> {
            let len = len as i128;
            let clamp = |v: Option<i128>, default: i128| -> i128 {
                match v {
                    None => default,
                    Some(v) => {
                        let v = if v < 0 { v + len } else { v };
                        if step > 0 {
                            v.clamp(0, len)
                        } else {
                            v.clamp(-1, len - 1)
                        }
                    }
                }
            };
            let (start, stop) = if step > 0 {
                (clamp(bounds[0], 0), clamp(bounds[1], len))
            } else {
                (clamp(bounds[0], len - 1), clamp(bounds[1], -1))
            };
            let mut out = Vec::new();
            let mut i = start;
            while (step > 0 && i < stop) || (step < 0 && i > stop) {
                out.push(i as usize);
                i += step;
            }
            out
        };
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
        match fv {
            Value::Func(def) => self.call_func(&def, argv, kw),
            Value::Builtin(name) => self.builtin(name, argv, kw),
            other => Err(PyError::Type(format!(
                "a {} is not callable",
                other.type_name()
            ))),
        }
    }

    fn call_func(
        &mut self,
        def: &Rc<FuncDef>,
        args: Vec<Value>,
        kwargs: Vec<(String, Value)>,
    ) -> EResult<Value> {
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
        let mut args = args.into_iter();
        for (name, default) in &def.params {
            let v = match args.next() {
                Some(v) => v,
                None => match kwargs.iter().find(|(k, _)| k == name) {
                    Some((_, v)) => v.clone(),
                    None => match default {
                        Some(d) => self.eval(d)?,
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
        let out = self.exec_block(&def.body);
        self.frames.pop();
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
        const MUTATING: [&str; 9] = [
            "append", "extend", "pop", "insert", "remove", "sort", "reverse", "clear", "update",
        ];
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
        match (&target, method) {
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
            (Value::Str(s), "upper") => self.string(s.to_uppercase()),
            (Value::Str(s), "lower") => self.string(s.to_lowercase()),
            (Value::Str(s), "strip") => self.string(s.trim().to_string()),
            (Value::Str(s), "format") => {
                // `"{} and {:.2f}".format(a, b)`: positional fields only.
                let mut parts = Vec::new();
                let mut rest: &str = s;
                let mut k = 0usize;
                while let Some(open) = rest.find('{') {
                    let Some(close) = rest.get(open..).and_then(|r| r.find('}')) else {
                        break;
                    };
                    let before = rest.get(..open).unwrap_or("");
                    let field = rest.get(open + 1..open + close).unwrap_or("");
                    parts.push(before.to_string());
                    let spec = field.split_once(':').map_or("", |(_, s)| s);
                    let v = argv.get(k).ok_or(PyError::Index)?;
                    parts.push(format_spec(v, spec)?);
                    k += 1;
                    rest = rest.get(open + close + 1..).unwrap_or("");
                }
                parts.push(rest.to_string());
                self.string(parts.concat())
            }
            (other, _) => Err(PyError::Unsupported(format!(
                "method `{method}` of a {}",
                other.type_name()
            ))),
        }
    }

    /// A mutating method on the variable `name`, in place.
    fn mutate(
        &mut self,
        name: &str,
        method: &str,
        argv: Vec<Value>,
        _kw: Vec<(String, Value)>,
    ) -> EResult<Value> {
        let max_len = self.limits.max_len;
        let max_depth = self.limits.max_value_depth;
        let extra = match (method, argv.first()) {
            ("extend", Some(v)) => self.items(v)?,
            ("update", Some(Value::Dict(d))) => d.items.clone(),
            _ => Vec::new(),
        };
        let arg_depth = argv.iter().map(Value::depth).max().unwrap_or(0);
        let mut copied = 0usize;
        let mut sort_work = 0usize;
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
                    "sort" => {
                        let mut err = None;
                        seq.items.sort_by(|a, b| {
                            order(a, b).unwrap_or_else(|e| {
                                err = Some(e);
                                std::cmp::Ordering::Equal
                            })
                        });
                        if let Some(e) = err {
                            return Err(e);
                        }
                        if _kw.iter().any(|(k, v)| k == "reverse" && v.truthy()) {
                            seq.items.reverse();
                        }
                        sort_work = seq.items.len() * 4;
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
        self.tick(sort_work as u64)?;
        Ok(out)
    }

    fn builtin(
        &mut self,
        name: &str,
        args: Vec<Value>,
        kwargs: Vec<(String, Value)>,
    ) -> EResult<Value> {
        let kw = |k: &str| kwargs.iter().find(|(n, _)| n == k).map(|(_, v)| v.clone());
        if name != "print" && name != "sorted" && name != "round" && !kwargs.is_empty() {
            if let Some((k, _)) = kwargs.first() {
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
                    Value::List(s) | Value::Tuple(s) | Value::Dict(s) => s.items.len() as i128,
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
                if kwargs.iter().any(|(k, _)| k == "key") {
                    return Err(PyError::Unsupported(format!("{name}() with key=")));
                }
                let items = if args.len() == 1 {
                    self.items(one_arg(&args)?)?
                } else {
                    args
                };
                let mut best: Option<Value> = None;
                for v in items {
                    self.tick(1)?;
                    best = Some(match best {
                        None => v,
                        Some(b) => {
                            let ord = order(&v, &b)?;
                            let better = if name == "min" {
                                ord == std::cmp::Ordering::Less
                            } else {
                                ord == std::cmp::Ordering::Greater
                            };
                            if better { v } else { b }
                        }
                    });
                }
                best.ok_or_else(|| PyError::Value(format!("{name}() of an empty sequence")))
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
                if !args.is_empty() {
                    return Err(PyError::Unsupported("dict() with arguments".into()));
                }
                let mut pairs = Vec::new();
                for (k, v) in kwargs {
                    pairs.push(Value::Tuple(
                        self.seq(vec![Value::Str(Rc::from(k.as_str())), v])?,
                    ));
                }
                Ok(Value::Dict(self.seq(pairs)?))
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
                if kwargs.iter().any(|(k, _)| k == "key") {
                    return Err(PyError::Unsupported("sorted() with key=".into()));
                }
                let mut items = self.items(one_arg(&args)?)?;
                self.tick(items.len() as u64 * 4)?;
                let mut err = None;
                items.sort_by(|a, b| {
                    order(a, b).unwrap_or_else(|e| {
                        err = Some(e);
                        std::cmp::Ordering::Equal
                    })
                });
                if let Some(e) = err {
                    return Err(e);
                }
                if kw("reverse").is_some_and(|v| v.truthy()) {
                    items.reverse();
                }
                self.list(items)
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
            "pow" => {
                let (a, b) = two_args(&args)?;
                self.binop(BinOp::Pow, a.clone(), b.clone())
            }
            "isinstance" => Err(PyError::Unsupported("isinstance()".into())),
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
        Value::Range(a, b, s) => format!("range({a}, {b}, {s})"),
        Value::Func(f) => format!("<function {}>", f.name),
        Value::Builtin(b) => format!("<built-in function {b}>"),
        Value::Module => "<module 'math'>".into(),
    }
}

fn repr(v: &Value) -> String {
    match v {
        Value::Str(s) => format!("'{s}'"),
        other => display(other),
    }
}

/// `format(v, spec)` for the common numeric specs: `.2f`, `,`, `,.2f`, `d`, `.1%`.
fn format_spec(v: &Value, spec: &str) -> EResult<String> {
    let spec = spec.trim();
    if spec.is_empty() {
        return Ok(display(v));
    }
    let comma = spec.contains(',') || spec.contains('_');
    let kind = spec
        .chars()
        .last()
        .filter(|c| c.is_ascii_alphabetic() || *c == '%');
    let precision: Option<usize> = spec
        .split_once('.')
        .map(|(_, p)| {
            p.chars()
                .take_while(char::is_ascii_digit)
                .collect::<String>()
        })
        .and_then(|p| p.parse().ok())
        .map(|p: usize| p.min(30));
    let body = match (kind, v) {
        (Some('%'), v) => {
            let f = v
                .as_f64()
                .ok_or_else(|| PyError::Type("% format needs a number".into()))?;
            return Ok(format!("{:.*}%", precision.unwrap_or(6), f * 100.0));
        }
        (Some('f' | 'F'), v) => {
            let f = v
                .as_f64()
                .ok_or_else(|| PyError::Type("f format needs a number".into()))?;
            format!("{:.*}", precision.unwrap_or(6), f)
        }
        (Some('d'), v) => v
            .as_int()
            .ok_or_else(|| PyError::Value("d format needs an int".into()))?
            .to_string(),
        (Some('e' | 'g' | 'E' | 'G'), v) => {
            let f = v
                .as_f64()
                .ok_or_else(|| PyError::Type("format needs a number".into()))?;
            format!("{f}")
        }
        (_, Value::Float(f)) => match precision {
            Some(p) => format!("{f:.p$}"),
            None => float_text(*f),
        },
        (_, other) => display(other),
    };
    if !comma {
        return Ok(body);
    }
    // Thousands separators on the integer part.
    let (sign, rest) = match body.strip_prefix('-') {
        Some(r) => ("-", r),
        None => ("", body.as_str()),
    };
    let (int_part, frac) = match rest.split_once('.') {
        Some((i, f)) => (i.to_string(), format!(".{f}")),
        None => (rest.to_string(), String::new()),
    };
    let digits: Vec<char> = int_part.chars().collect();
    let mut grouped = String::new();
    for (k, c) in digits.iter().enumerate() {
        if k > 0 && (digits.len() - k) % 3 == 0 {
            grouped.push(',');
        }
        grouped.push(*c);
    }
    Ok(format!("{sign}{grouped}{frac}"))
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
            ("def solution():\n    return (lambda: 1)()\n", |e| {
                matches!(e, PyError::Unsupported(_))
            }),
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
}
