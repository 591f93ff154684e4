//! Exact arithmetic over plain notation: numbers, `+ - * / ^` and brackets, parsed by
//! a small recursive-descent parser (no code runs). The `calculator` strategy computes
//! the equations a model writes with it, and math answers are compared by its value
//! (`3^{3}` is `27`).
//!
//! Bounded: brackets nest at most [`MAX_DEPTH`] deep, exponents are integers of at most
//! 64, and a result beyond [`MAX_RESULT`] (or a division by zero) is no value.

use std::sync::LazyLock;

use regex::Regex;

/// `\frac{a}{b}` (or `\dfrac`, `\tfrac`) with arguments that hold no braces.
static FRAC: LazyLock<Option<Regex>> =
    LazyLock::new(|| Regex::new(r"\\[dt]?frac\s*\{([^{}]*)\}\s*\{([^{}]*)\}").ok());

/// LaTeX arithmetic in plain notation: fractions become `((a)/(b))` (inner ones first;
/// three rounds cover `\frac{\frac{a}{b}}{c}`), `\times` / `\cdot` `*`, `\div` `/`,
/// braces brackets (`3^{3}` -> `3^(3)`). Other text is left as it is.
pub fn latex_to_plain(text: &str) -> String {
    let mut s = text.to_string();
    if let Some(re) = FRAC.as_ref() {
        for _ in 0..3 {
            s = re.replace_all(&s, "(($1)/($2))").into_owned();
        }
    }
    for (from, to) in [
        ("\\times", "*"),
        ("\\cdot", "*"),
        ("\\div", "/"),
        ("{", "("),
        ("}", ")"),
    ] {
        s = s.replace(from, to);
    }
    s
}

/// Deepest bracket nesting evaluated.
pub const MAX_DEPTH: usize = 16;
/// Largest result: beyond it an expression has no value.
pub const MAX_RESULT: f64 = 1e15;

#[derive(Debug, Clone, Copy, PartialEq)]
enum Tok {
    Num(f64),
    Op(char),
    Open,
    Close,
}

fn lex(expr: &str) -> Option<Vec<Tok>> {
    let chars: Vec<char> = expr.chars().collect();
    let mut out: Vec<Tok> = Vec::new();
    let mut i = 0;
    while let Some(&c) = chars.get(i) {
        let next = chars.get(i + 1).copied();
        let starts_number = c.is_ascii_digit()
            || (c == '.' && next.is_some_and(|n| n.is_ascii_digit()))
            // A sign written against its number, where no operand precedes: `-5 + 3`.
            || (c == '-'
                && next.is_some_and(|n| n.is_ascii_digit() || n == '.')
                && matches!(out.last(), None | Some(Tok::Op(_)) | Some(Tok::Open)));
        if starts_number {
            let mut text = String::new();
            text.push(c);
            i += 1;
            while let Some(&d) = chars.get(i) {
                if d.is_ascii_digit() || d == '.' {
                    text.push(d);
                    i += 1;
                } else {
                    break;
                }
            }
            if text.ends_with('.') || text.matches('.').count() > 1 {
                return None;
            }
            if matches!(out.last(), Some(Tok::Num(_)) | Some(Tok::Close)) {
                return None;
            }
            out.push(Tok::Num(text.parse().ok()?));
            continue;
        }
        match c {
            ' ' => {}
            '+' | '-' | '*' | '/' | '^' => out.push(Tok::Op(c)),
            '(' => out.push(Tok::Open),
            ')' => out.push(Tok::Close),
            _ => return None,
        }
        i += 1;
    }
    Some(out)
}

struct Parser {
    toks: Vec<Tok>,
    pos: usize,
    binary_ops: usize,
}

impl Parser {
    fn peek(&self) -> Option<Tok> {
        self.toks.get(self.pos).copied()
    }

    fn expr(&mut self, depth: usize) -> Option<f64> {
        let mut value = self.term(depth)?;
        while let Some(Tok::Op(op @ ('+' | '-'))) = self.peek() {
            self.pos += 1;
            self.binary_ops += 1;
            let rhs = self.term(depth)?;
            value = if op == '+' { value + rhs } else { value - rhs };
        }
        Some(value)
    }

    fn term(&mut self, depth: usize) -> Option<f64> {
        let mut value = self.power(depth)?;
        while let Some(Tok::Op(op @ ('*' | '/'))) = self.peek() {
            self.pos += 1;
            self.binary_ops += 1;
            let rhs = self.power(depth)?;
            value = if op == '*' {
                value * rhs
            } else if rhs == 0.0 {
                return None;
            } else {
                value / rhs
            };
        }
        Some(value)
    }

    fn power(&mut self, depth: usize) -> Option<f64> {
        let base = self.atom(depth)?;
        if self.peek() == Some(Tok::Op('^')) {
            self.pos += 1;
            self.binary_ops += 1;
            let exponent = self.atom(depth)?;
            if exponent.fract() != 0.0 || exponent.abs() > 64.0 {
                return None;
            }
            return Some(base.powi(exponent as i32));
        }
        Some(base)
    }

    fn atom(&mut self, depth: usize) -> Option<f64> {
        match self.peek()? {
            Tok::Num(v) => {
                self.pos += 1;
                Some(v)
            }
            Tok::Open if depth < MAX_DEPTH => {
                self.pos += 1;
                let v = self.expr(depth + 1)?;
                if self.peek() != Some(Tok::Close) {
                    return None;
                }
                self.pos += 1;
                Some(v)
            }
            _ => None,
        }
    }
}

/// The value of an arithmetic expression in plain notation with at least one operator
/// (`None`: not such an expression, division by zero, too large).
pub fn evaluate(expr: &str) -> Option<f64> {
    let toks = lex(expr)?;
    let mut parser = Parser {
        toks,
        pos: 0,
        binary_ops: 0,
    };
    let value = parser.expr(0)?;
    let complete = parser.pos == parser.toks.len();
    (complete && parser.binary_ops > 0 && value.is_finite() && value.abs() < MAX_RESULT)
        .then_some(value)
}
