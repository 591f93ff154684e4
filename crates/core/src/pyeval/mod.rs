//! `pyeval`: a small, safe interpreter of a subset of Python, for program-of-thought
//! (`pot`: the model writes `def solution(): ...`, this module runs it) and for checking
//! the programs of code questions on their examples (`doctest`).
//!
//! Nothing is executed outside this interpreter: no real Python, no imports beyond
//! `math` and `collections` (and `typing`, whose names only annotate), no attributes
//! beyond theirs and the methods below, no files, no network. Every resource is bounded
//! by [`Limits`]: source length, nesting of the parsed program (the parser refuses
//! deeper input, so no recursion an input controls goes beyond a fixed depth),
//! interpreter steps (every statement, expression and element of a bulk operation
//! counts; a method over a string counts its characters), call depth, collection
//! lengths, the elements and characters allocated over the whole run (a result over the
//! length limit is refused before it is built), and the size of integers (`i128`,
//! overflow is an error). Anything outside the subset is a typed [`PyError`], never a
//! panic.
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
//! steps), `import math`, `import collections`, `from math import ...`, `from
//! collections import ...` (each also with `as`, and `*`), `from typing import ...`,
//! `assert`.
//!
//! Built-ins: `print` (captured), `len sum min max abs round int float str bool list
//! tuple dict set range sorted reversed enumerate zip divmod pow all any map filter chr
//! ord bin hex oct isinstance type format repr` (`pow` also with a modulus; `key=` and
//! `reverse=` on `sorted` and `list.sort`, `key=` and `default=` on `min`/`max`; `map`
//! and `filter` give lists), and `__name__` (`"__main__"`); `math.floor ceil sqrt trunc
//! fabs pow exp log log10 gcd lcm factorial prod isclose pi e inf`; list `append extend
//! pop insert remove count index sort reverse copy clear`; dict `get keys values items
//! update pop popitem setdefault copy clear`; set `add remove discard pop clear update
//! union intersection difference symmetric_difference issubset issuperset isdisjoint
//! copy`; str `split rsplit splitlines join strip lstrip rstrip lower upper casefold
//! capitalize swapcase title startswith endswith find rfind index rindex count replace
//! zfill ljust rjust center partition rpartition removeprefix removesuffix format
//! isalpha isdigit isdecimal isnumeric isalnum isspace isupper islower istitle`, with
//! Python's results (the character classes and case mappings are Unicode's as Rust has
//! them: exact on ASCII, `isdigit` and `isnumeric` alike beyond it). A method that does
//! not change its object is also a value: `key=d.get`, `map(str.strip, lines)`.
//!
//! `collections`: `Counter` (a dict whose missing keys read as 0; `most_common elements
//! total update subtract`, `+ - | &`, equal to another when the counts are, shown in
//! `most_common()` order), `defaultdict` (a dict whose missing key, read from a
//! variable, is added as what its factory makes: `int`, `list`, `set`, a lambda...),
//! `OrderedDict` (a dict; `move_to_end`, `popitem(last=)`, order-sensitive equality
//! between two of them) and `deque` (a list; `append appendleft pop popleft extend
//! extendleft rotate`, `maxlen`, never equal to a list). They are dicts and a list that
//! carry their kind (`values::Kind`), which `type`, `isinstance`, `repr` and `==`
//! follow (`repr` as Python 3.11: `OrderedDict([('a', 1)])`).
//!
//! Where it departs from Python:
//! - Lists, dicts and sets have value semantics (`b = a; b.append(1)` leaves `a` alone),
//!   which keeps values acyclic; methods that mutate need a plain variable or an item of
//!   one (`xs.append(1)`, `groups[k].append(x)`), and a defaultdict keeps what a missing
//!   key made only when read through a variable (`d[k]`).
//! - A deque is a list underneath: slicing and `+` give lists where Python refuses them;
//!   a move of its elements (`popleft`, `appendleft`) costs a step per 64 of them.
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
//!
//! The code: `lexer` (source text to tokens), `parser` (tokens to the syntax tree of
//! `ast`), `interp` (runs it), `values` (values and what is done to them), `methods`
//! (of strings, lists, dicts and sets), `builtins` (the built-in functions), `format`
//! (`str`, `repr` and format specs); `tests` checks programs against what Python
//! prints.

mod ast;
mod builtins;
mod format;
mod interp;
mod lexer;
mod methods;
mod parser;
mod values;

use interp::Interp;
use lexer::tokenize;
use parser::Parser;
use values::Value;

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

#[cfg(test)]
mod tests;
