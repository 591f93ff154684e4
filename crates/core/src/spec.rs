//! The approach spec: which strategies run, how they combine, and their parameters.
//!
//! One parser, shared by the CLI and the server:
//!
//! - `a&b` is a pipeline: the answer of `a` becomes the query of `b`;
//! - `a|b` runs `a` and `b` concurrently and returns one choice each;
//! - `&` binds tighter than `|`; parentheses nest: `(re2&bon)|moa`;
//! - parameters per stage: `bon(n=5,temperature=0.8)`, `self_consistency(k=7)`;
//!   values are numbers, booleans, bare or quoted strings, or lists `[0.3,0.6]`.
//!
//! Errors in a spec, and in building one, are [`SpecError`]s; errors of a run are
//! [`crate::StrategyError`]s. The optillm model-name convention (`moa-smollm2`) is read
//! by the server (`optillm_server::approach::split_model_name`).
//!
//! Specs come from clients, so the parser is bounded: at most [`MAX_SPEC_CHARS`] characters
//! and [`MAX_DEPTH`] levels of parentheses and lists. Its recursion depth is bounded by
//! the latter, and its work is linear in the input.

use std::fmt;

use serde_json::Value;

use crate::strategies::{self, Params};

/// An approach spec that does not parse or build.
#[derive(Debug, Clone, PartialEq, thiserror::Error)]
#[non_exhaustive]
pub enum SpecError {
    /// No approach has this slug.
    #[error("unknown approach `{0}`")]
    UnknownApproach(String),
    /// An approach's parameter is unknown, of the wrong type or out of range.
    #[error("bad parameter for `{approach}`: {message}")]
    BadParameter { approach: String, message: String },
    /// The spec's syntax is wrong at char `position` (the message shows where).
    #[error("bad approach spec at {position}: {message}")]
    BadSpec { position: usize, message: String },
}

/// A parsed approach spec.
#[derive(Debug, Clone, PartialEq)]
pub enum Spec {
    /// One approach with its parameters.
    Stage { slug: String, params: Params },
    /// Runs each in turn; the answer of one is the query of the next (two or more).
    Pipeline(Vec<Spec>),
    /// Runs all concurrently, one choice each (two or more).
    Parallel(Vec<Spec>),
}

impl Spec {
    /// One approach with default parameters.
    pub fn stage(slug: impl Into<String>) -> Self {
        Spec::Stage {
            slug: slug.into(),
            params: Params::new(),
        }
    }

    /// The pass-through approach.
    pub fn none() -> Self {
        Spec::stage("none")
    }

    /// True for `none` without parameters.
    pub fn is_none(&self) -> bool {
        matches!(self, Spec::Stage { slug, params } if slug == "none" && params.is_empty())
    }
}

impl std::str::FromStr for Spec {
    type Err = SpecError;
    fn from_str(s: &str) -> Result<Self, Self::Err> {
        parse(s)
    }
}

impl fmt::Display for Spec {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        match self {
            Spec::Stage { slug, params } => {
                f.write_str(slug)?;
                if !params.is_empty() {
                    f.write_str("(")?;
                    for (i, (k, v)) in params.iter().enumerate() {
                        if i > 0 {
                            f.write_str(",")?;
                        }
                        write!(f, "{k}=")?;
                        write_value(f, v)?;
                    }
                    f.write_str(")")?;
                }
                Ok(())
            }
            Spec::Pipeline(stages) => {
                for (i, s) in stages.iter().enumerate() {
                    if i > 0 {
                        f.write_str("&")?;
                    }
                    if matches!(s, Spec::Stage { .. }) {
                        write!(f, "{s}")?;
                    } else {
                        write!(f, "({s})")?;
                    }
                }
                Ok(())
            }
            Spec::Parallel(branches) => {
                for (i, s) in branches.iter().enumerate() {
                    if i > 0 {
                        f.write_str("|")?;
                    }
                    if matches!(s, Spec::Parallel(_)) {
                        write!(f, "({s})")?;
                    } else {
                        write!(f, "{s}")?;
                    }
                }
                Ok(())
            }
        }
    }
}

fn is_bare_char(c: char) -> bool {
    c.is_alphanumeric() || matches!(c, '_' | '-' | '.' | '+' | '/' | ':')
}

fn is_slug_char(c: char) -> bool {
    c.is_ascii_alphanumeric() || c == '_'
}

fn looks_numeric(s: &str) -> bool {
    s.chars()
        .next()
        .is_some_and(|c| c.is_ascii_digit() || matches!(c, '-' | '+' | '.'))
}

fn write_value(f: &mut fmt::Formatter<'_>, v: &Value) -> fmt::Result {
    match v {
        Value::String(s) => {
            let bare = !s.is_empty()
                && s.chars().all(is_bare_char)
                && !looks_numeric(s)
                && s != "true"
                && s != "false";
            if bare {
                f.write_str(s)
            } else {
                f.write_str("\"")?;
                for c in s.chars() {
                    if c == '"' || c == '\\' {
                        f.write_str("\\")?;
                    }
                    write!(f, "{c}")?;
                }
                f.write_str("\"")
            }
        }
        Value::Array(items) => {
            f.write_str("[")?;
            for (i, item) in items.iter().enumerate() {
                if i > 0 {
                    f.write_str(",")?;
                }
                write_value(f, item)?;
            }
            f.write_str("]")
        }
        Value::Number(n) => write!(f, "{n}"),
        Value::Bool(b) => write!(f, "{b}"),
        // Not produced by the parser; written as a quoted JSON string.
        other => write_value(f, &Value::String(other.to_string())),
    }
}

/// Longest approach spec accepted, in characters.
pub const MAX_SPEC_CHARS: usize = 1024;

/// Deepest nesting of parentheses (groups and parameter lists) and `[...]` lists.
pub const MAX_DEPTH: usize = 16;

/// Parses an approach spec such as `(re2&bon(n=5))|moa`.
///
/// Errors are [`SpecError::BadSpec`] with the character position of the bad part and
/// a message that shows the spec with a caret under it. A spec longer than
/// [`MAX_SPEC_CHARS`] or nested deeper than [`MAX_DEPTH`] is refused.
pub fn parse(input: &str) -> Result<Spec, SpecError> {
    parse_with(input, strategies::is_known)
}

/// [`parse`] with another vocabulary of stage names (e.g. the rules of
/// `optillm eval --rescore`): the same syntax and bounds, `known` decides which names
/// are accepted.
pub fn parse_with(input: &str, known: fn(&str) -> bool) -> Result<Spec, SpecError> {
    // Bytes bound chars from above: count chars only for inputs that may be short enough.
    if input.len() > 4 * MAX_SPEC_CHARS || input.chars().count() > MAX_SPEC_CHARS {
        return Err(SpecError::BadSpec {
            position: MAX_SPEC_CHARS,
            message: format!(
                "the approach spec is longer than {MAX_SPEC_CHARS} characters ({} bytes)",
                input.len()
            ),
        });
    }
    let mut p = Parser {
        input,
        chars: input.chars().collect(),
        pos: 0,
        depth: 0,
        known,
    };
    p.skip_ws();
    if p.peek().is_none() {
        return Err(p.error(0, 0, "the approach spec is empty"));
    }
    let spec = p.alternatives()?;
    p.skip_ws();
    match p.peek() {
        None => Ok(spec),
        Some(')') => Err(p.error(p.pos, 1, "unbalanced parenthesis: `)` without `(`")),
        Some(c) => Err(p.error(
            p.pos,
            1,
            &format!("unexpected `{c}`: expected `&`, `|` or the end"),
        )),
    }
}

struct Parser<'a> {
    input: &'a str,
    chars: Vec<char>,
    pos: usize,
    /// Open parentheses and lists around `pos`.
    depth: usize,
    /// Which stage names exist.
    known: fn(&str) -> bool,
}

impl Parser<'_> {
    fn peek(&self) -> Option<char> {
        self.chars.get(self.pos).copied()
    }

    fn skip_ws(&mut self) {
        while self.peek().is_some_and(char::is_whitespace) {
            self.pos += 1;
        }
    }

    /// Enters a parenthesis or list opened at `open`; refused beyond [`MAX_DEPTH`].
    fn enter(&mut self, open: usize) -> Result<(), SpecError> {
        if self.depth >= MAX_DEPTH {
            return Err(self.error(
                open,
                1,
                &format!("nested more than {MAX_DEPTH} levels deep"),
            ));
        }
        self.depth += 1;
        Ok(())
    }

    fn leave(&mut self) {
        self.depth = self.depth.saturating_sub(1);
    }

    /// A `BadSpec` error at char `position`, underlining `len` chars.
    fn error(&self, position: usize, len: usize, what: &str) -> SpecError {
        let pad: String = " ".repeat(position);
        let marks: String = "^".repeat(len.max(1));
        SpecError::BadSpec {
            position,
            message: format!("{what}\n  {}\n  {pad}{marks}", self.input),
        }
    }

    fn alternatives(&mut self) -> Result<Spec, SpecError> {
        let mut branches = Vec::new();
        push_flat(&mut branches, self.pipeline()?, true);
        loop {
            self.skip_ws();
            if self.peek() != Some('|') {
                break;
            }
            let op = self.pos;
            self.pos += 1;
            push_flat(&mut branches, self.operand(op, '|')?, true);
        }
        Ok(if branches.len() == 1 {
            branches.remove(0)
        } else {
            Spec::Parallel(branches)
        })
    }

    fn pipeline(&mut self) -> Result<Spec, SpecError> {
        let mut stages = Vec::new();
        push_flat(&mut stages, self.atom()?, false);
        loop {
            self.skip_ws();
            if self.peek() != Some('&') {
                break;
            }
            let op = self.pos;
            self.pos += 1;
            let next = self.operand(op, '&')?;
            push_flat(&mut stages, next, false);
        }
        Ok(if stages.len() == 1 {
            stages.remove(0)
        } else {
            Spec::Pipeline(stages)
        })
    }

    /// The operand after operator `op` at `op_pos`; for `|` a whole pipeline.
    fn operand(&mut self, op_pos: usize, op: char) -> Result<Spec, SpecError> {
        self.skip_ws();
        match self.peek() {
            None => Err(self.error(
                op_pos,
                1,
                &format!("trailing operator `{op}`: an approach must follow it"),
            )),
            Some(c @ ('&' | '|' | ')')) => Err(self.error(
                self.pos,
                1,
                &format!("empty stage: expected an approach before `{c}`"),
            )),
            _ if op == '|' => self.pipeline(),
            _ => self.atom(),
        }
    }

    fn atom(&mut self) -> Result<Spec, SpecError> {
        self.skip_ws();
        let start = self.pos;
        match self.peek() {
            None => Err(self.error(start, 1, "expected an approach")),
            Some('(') => {
                self.pos += 1;
                self.skip_ws();
                if self.peek() == Some(')') {
                    return Err(self.error(start, 2, "empty stage: nothing inside `()`"));
                }
                if self.peek().is_none() {
                    return Err(self.error(
                        start,
                        1,
                        "unbalanced parenthesis: `(` is never closed",
                    ));
                }
                self.enter(start)?;
                let inner = self.alternatives()?;
                self.leave();
                self.skip_ws();
                if self.peek() != Some(')') {
                    return Err(match self.peek() {
                        None => self.error(start, 1, "unbalanced parenthesis: `(` is never closed"),
                        Some(c) => self.error(
                            self.pos,
                            1,
                            &format!("unexpected `{c}`: expected `&`, `|` or `)`"),
                        ),
                    });
                }
                self.pos += 1;
                Ok(inner)
            }
            Some(c @ ('&' | '|' | ')')) => Err(self.error(
                start,
                1,
                &format!("empty stage: expected an approach before `{c}`"),
            )),
            Some(c) if !is_slug_char(c) => Err(self.error(
                start,
                1,
                &format!("unexpected `{c}`: expected an approach name"),
            )),
            Some(_) => self.stage(),
        }
    }

    fn stage(&mut self) -> Result<Spec, SpecError> {
        let start = self.pos;
        while self.peek().is_some_and(is_slug_char) {
            self.pos += 1;
        }
        let slug: String = self.chars[start..self.pos].iter().collect();
        if !(self.known)(&slug) {
            return Err(self.error(
                start,
                self.pos - start,
                &format!("unknown approach `{slug}`"),
            ));
        }
        let mut params = Params::new();
        self.skip_ws();
        if self.peek() == Some('(') {
            let open = self.pos;
            self.pos += 1;
            self.skip_ws();
            if self.peek() == Some(')') {
                self.pos += 1;
            } else {
                loop {
                    self.param(&mut params, open)?;
                    self.skip_ws();
                    match self.peek() {
                        Some(',') => self.pos += 1,
                        Some(')') => {
                            self.pos += 1;
                            break;
                        }
                        None => {
                            return Err(self.error(
                                open,
                                1,
                                "unbalanced parenthesis: the parameter list is never closed",
                            ));
                        }
                        Some(c) => {
                            return Err(self.error(
                                self.pos,
                                1,
                                &format!("unexpected `{c}`: expected `,` or `)` in parameters"),
                            ));
                        }
                    }
                }
            }
        }
        Ok(Spec::Stage { slug, params })
    }

    fn param(&mut self, params: &mut Params, open: usize) -> Result<(), SpecError> {
        self.skip_ws();
        let start = self.pos;
        if self.peek().is_none() {
            return Err(self.error(
                open,
                1,
                "unbalanced parenthesis: the parameter list is never closed",
            ));
        }
        while self.peek().is_some_and(is_slug_char) {
            self.pos += 1;
        }
        let key: String = self.chars[start..self.pos].iter().collect();
        if key.is_empty() || key.starts_with(|c: char| c.is_ascii_digit()) {
            return Err(self.error(start, 1, "expected a parameter name"));
        }
        self.skip_ws();
        if self.peek() != Some('=') {
            return Err(self.error(
                self.pos,
                1,
                &format!("expected `=` after parameter `{key}`"),
            ));
        }
        self.pos += 1;
        let value = self.value(&key)?;
        if params.contains_key(&key) {
            return Err(self.error(
                start,
                key.chars().count(),
                &format!("parameter `{key}` is given twice"),
            ));
        }
        params.insert(key, value);
        Ok(())
    }

    fn value(&mut self, key: &str) -> Result<Value, SpecError> {
        self.skip_ws();
        let start = self.pos;
        match self.peek() {
            Some(q @ ('"' | '\'')) => {
                self.pos += 1;
                let mut s = String::new();
                loop {
                    match self.peek() {
                        None => {
                            return Err(self.error(
                                start,
                                1,
                                &format!(
                                    "bad value for `{key}`: the quoted string is never closed"
                                ),
                            ));
                        }
                        Some('\\') => {
                            self.pos += 1;
                            if let Some(c) = self.peek() {
                                s.push(c);
                                self.pos += 1;
                            }
                        }
                        Some(c) if c == q => {
                            self.pos += 1;
                            return Ok(Value::String(s));
                        }
                        Some(c) => {
                            s.push(c);
                            self.pos += 1;
                        }
                    }
                }
            }
            Some('[') => {
                self.pos += 1;
                self.enter(start)?;
                let items = self.list_items(key, start);
                self.leave();
                items
            }
            _ => {
                while self.peek().is_some_and(is_bare_char) {
                    self.pos += 1;
                }
                let text: String = self.chars[start..self.pos].iter().collect();
                let len = self.pos - start;
                if text.is_empty() {
                    let what = match self.peek() {
                        None | Some(',' | ')') => format!("missing value for `{key}`"),
                        Some(c) => format!("bad value for `{key}`: unexpected `{c}`"),
                    };
                    return Err(self.error(start, 1, &what));
                }
                match text.as_str() {
                    "true" => return Ok(Value::Bool(true)),
                    "false" => return Ok(Value::Bool(false)),
                    _ => {}
                }
                if looks_numeric(&text) {
                    if let Ok(i) = text.parse::<i64>() {
                        return Ok(Value::from(i));
                    }
                    return text
                        .parse::<f64>()
                        .ok()
                        .and_then(serde_json::Number::from_f64)
                        .map(Value::Number)
                        .ok_or_else(|| {
                            self.error(
                                start,
                                len,
                                &format!(
                                    "bad value for `{key}`: `{text}` is not a number (quote it for a string)"
                                ),
                            )
                        });
                }
                Ok(Value::String(text))
            }
        }
    }

    /// The items of a list whose `[` at `start` was just read, through its `]`.
    fn list_items(&mut self, key: &str, start: usize) -> Result<Value, SpecError> {
        let mut items = Vec::new();
        self.skip_ws();
        if self.peek() == Some(']') {
            self.pos += 1;
            return Ok(Value::Array(items));
        }
        loop {
            items.push(self.value(key)?);
            self.skip_ws();
            match self.peek() {
                Some(',') => self.pos += 1,
                Some(']') => {
                    self.pos += 1;
                    return Ok(Value::Array(items));
                }
                _ => {
                    return Err(self.error(
                        start,
                        1,
                        &format!("bad value for `{key}`: the list is never closed"),
                    ));
                }
            }
        }
    }
}

/// Adds `spec` to `list`, splicing in the items of a nested spec of the same kind.
fn push_flat(list: &mut Vec<Spec>, spec: Spec, parallel: bool) {
    match spec {
        Spec::Parallel(items) if parallel => list.extend(items),
        Spec::Pipeline(items) if !parallel => list.extend(items),
        other => list.push(other),
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn stage(slug: &str, params: &[(&str, Value)]) -> Spec {
        Spec::Stage {
            slug: slug.into(),
            params: params
                .iter()
                .map(|(k, v)| (k.to_string(), v.clone()))
                .collect(),
        }
    }

    fn bad(input: &str) -> (usize, String) {
        match parse(input) {
            Err(SpecError::BadSpec { position, message }) => (position, message),
            other => panic!("expected BadSpec for {input:?}, got {other:?}"),
        }
    }

    #[test]
    fn parses_single_stage_with_params() {
        assert_eq!(parse("none").unwrap(), Spec::none());
        assert_eq!(
            parse(" none ( a = 5 , b=0.8, c = true, d=hello, e=\"x, y\", f='q\\'s', g=[1,2.5]) ")
                .unwrap(),
            stage(
                "none",
                &[
                    ("a", Value::from(5)),
                    ("b", Value::from(0.8)),
                    ("c", Value::Bool(true)),
                    ("d", Value::from("hello")),
                    ("e", Value::from("x, y")),
                    ("f", Value::from("q's")),
                    ("g", Value::from(vec![Value::from(1), Value::from(2.5)])),
                ]
            )
        );
    }

    #[test]
    fn precedence_and_nesting() {
        // & binds tighter than |.
        let s = parse("none&none(a=1)|none").unwrap();
        assert_eq!(
            s,
            Spec::Parallel(vec![
                Spec::Pipeline(vec![Spec::none(), stage("none", &[("a", Value::from(1))])]),
                Spec::none(),
            ])
        );
        // Parentheses override it.
        let s = parse("none&(none|none(a=2))").unwrap();
        assert_eq!(
            s,
            Spec::Pipeline(vec![
                Spec::none(),
                Spec::Parallel(vec![Spec::none(), stage("none", &[("a", Value::from(2))])]),
            ])
        );
        // Same-kind nesting is flattened.
        assert_eq!(
            parse("(none|none)|none").unwrap(),
            Spec::Parallel(vec![Spec::none(), Spec::none(), Spec::none()])
        );
        assert_eq!(parse("((none))").unwrap(), Spec::none());
    }

    #[test]
    fn display_round_trips() {
        for input in [
            "none",
            "none(a=5,b=0.8)",
            "none&none|none",
            "none&(none|none)",
            "(none&none(x=\"a b\"))|none(t=[0.3,0.6,1.0])",
            "none(s=\"12\",t='true',u=\"q\\\"\",v=plain-text.x)",
            "none(a=-3,b=1e3)",
        ] {
            let spec = parse(input).unwrap();
            let shown = spec.to_string();
            assert_eq!(parse(&shown).unwrap(), spec, "{input} -> {shown}");
        }
        assert_eq!(
            parse("none & ( none | none )").unwrap().to_string(),
            "none&(none|none)"
        );
    }

    #[test]
    fn errors_point_at_the_bad_part() {
        let (pos, msg) = bad("none&bogus");
        assert_eq!(pos, 5);
        assert!(msg.contains("unknown approach `bogus`"), "{msg}");
        assert!(msg.contains("  none&bogus\n       ^^^^^"), "{msg}");

        let (pos, msg) = bad("(none|none");
        assert_eq!(pos, 0);
        assert!(msg.contains("never closed"), "{msg}");

        let (pos, msg) = bad("none)");
        assert_eq!(pos, 4);
        assert!(msg.contains("without `(`"), "{msg}");

        let (pos, msg) = bad("none&");
        assert_eq!(pos, 4);
        assert!(msg.contains("trailing operator `&`"), "{msg}");

        let (pos, msg) = bad("none||none");
        assert_eq!(pos, 5);
        assert!(msg.contains("empty stage"), "{msg}");

        let (pos, msg) = bad("none&()");
        assert_eq!(pos, 5);
        assert!(msg.contains("empty stage"), "{msg}");

        let (pos, _) = bad("");
        assert_eq!(pos, 0);

        let (pos, msg) = bad("none(n=5x)");
        assert_eq!(pos, 7);
        assert!(msg.contains("not a number"), "{msg}");

        let (pos, msg) = bad("none(n=)");
        assert_eq!(pos, 7);
        assert!(msg.contains("missing value"), "{msg}");

        let (pos, msg) = bad("none(n=5");
        assert_eq!(pos, 4);
        assert!(msg.contains("never closed"), "{msg}");

        let (pos, msg) = bad("none(n=1,n=2)");
        assert_eq!(pos, 9);
        assert!(msg.contains("twice"), "{msg}");

        let (pos, msg) = bad("none(s=\"open)");
        assert_eq!(pos, 7);
        assert!(msg.contains("never closed"), "{msg}");

        let (pos, _) = bad("none none");
        assert_eq!(pos, 5);

        // Positions count characters, not bytes.
        let (pos, _) = bad("none(s=\"é\")&zz");
        assert_eq!(pos, 12);
    }

    #[test]
    fn long_and_deep_specs_are_refused_not_overflowed() {
        let deep = format!("{}none{}", "(".repeat(3000), ")".repeat(3000));
        let (_, msg) = bad(&deep);
        assert!(msg.contains("longer than"), "{msg}");
        let deep = format!("{}none{}", "(".repeat(400), ")".repeat(400));
        let (pos, msg) = bad(&deep);
        assert_eq!(pos, MAX_DEPTH);
        assert!(msg.contains("nested more than"), "{msg}");
        let lists = format!("none(a={}1{})", "[".repeat(400), "]".repeat(400));
        let (_, msg) = bad(&lists);
        assert!(msg.contains("nested more than"), "{msg}");
        // At the limit it parses.
        let ok = format!("{}none{}", "(".repeat(MAX_DEPTH), ")".repeat(MAX_DEPTH));
        assert_eq!(parse(&ok).unwrap(), Spec::none());
        let ok = format!(
            "none(a={}1{})",
            "[".repeat(MAX_DEPTH),
            "]".repeat(MAX_DEPTH)
        );
        assert!(parse(&ok).is_ok());
        // Multi-byte characters count once.
        let long = "é".repeat(MAX_SPEC_CHARS + 1);
        let (_, msg) = bad(&long);
        assert!(msg.contains("longer than"), "{msg}");
    }
}
