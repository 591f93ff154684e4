//! The lexer: source text as [`Token`]s, indentation as `Indent` and `Dedent`.

use super::{Limits, PyError, PyFailure};

#[derive(Debug, Clone, PartialEq)]
pub(super) enum Tok {
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
pub(super) struct Token {
    pub(super) tok: Tok,
    pub(super) line: usize,
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

pub(super) fn tokenize(source: &str, limits: &Limits) -> Result<Vec<Token>, PyFailure> {
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
