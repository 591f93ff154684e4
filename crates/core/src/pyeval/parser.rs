//! The parser: [`Token`]s into the syntax tree, its nesting bounded by [`Limits`].

use std::rc::Rc;

use super::ast::{
    BinOp, Clause, CmpOp, Expr, FPart, FuncDef, Handler, Stmt, StmtKind, Target, TryStmt,
};
use super::lexer::{Tok, Token, tokenize};
use super::values::{Value, module, module_member, module_names};
use super::{Limits, PyError, PyFailure};

const KEYWORDS: [&str; 35] = [
    "False", "None", "True", "and", "as", "assert", "async", "await", "break", "class", "continue",
    "def", "del", "elif", "else", "except", "finally", "for", "from", "global", "if", "import",
    "in", "is", "lambda", "nonlocal", "not", "or", "pass", "raise", "return", "try", "while",
    "with", "yield",
];

type PResult<T> = Result<T, PyFailure>;
type KwArgs = Vec<(String, Expr)>;

pub(super) struct Parser<'a> {
    toks: Vec<Token>,
    pos: usize,
    depth: usize,
    limits: &'a Limits,
}

impl<'a> Parser<'a> {
    pub(super) fn new(toks: Vec<Token>, limits: &'a Limits) -> Self {
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

    pub(super) fn file(&mut self) -> PResult<Vec<Stmt>> {
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
                    // `import math, collections as c`: each name bound to its module.
                    self.pos += 1;
                    let mut bound = Vec::new();
                    loop {
                        let m = self.name()?;
                        let value = module(&m);
                        if value.is_none() && m != "typing" {
                            return Err(self.unsupported(format!("import of `{m}`")));
                        }
                        let name = if self.eat_kw("as") { self.name()? } else { m };
                        if let Some(v) = value {
                            bound.push((name, v));
                        }
                        if !self.eat_op(",") {
                            break;
                        }
                    }
                    return Ok(bind(bound));
                }
                "from" => {
                    self.pos += 1;
                    let m = self.name()?;
                    if module(&m).is_none() && m != "typing" {
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
                    // The names are bound to what `<module>.<name>` is.
                    let mut bound = Vec::new();
                    if self.eat_op("*") {
                        for n in module_names(&m) {
                            bound.extend(module_member(&m, n).map(|v| (n.to_string(), v)));
                        }
                    } else {
                        let paren = self.eat_op("(");
                        loop {
                            let name = self.name()?;
                            let Some(v) = module_member(&m, &name) else {
                                return Err(self.unsupported(format!("{m}.{name}")));
                            };
                            let name = if self.eat_kw("as") {
                                self.name()?
                            } else {
                                name
                            };
                            bound.push((name, v));
                            if !self.eat_op(",") || (paren && self.is_op(")")) {
                                break;
                            }
                        }
                        if paren {
                            self.expect_op(")")?;
                        }
                    }
                    return Ok(bind(bound));
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

/// `import` as an assignment: each name to its value (nothing for none).
fn bind(bound: Vec<(String, Value)>) -> Option<StmtKind> {
    if bound.is_empty() {
        return None;
    }
    let (names, values): (Vec<_>, Vec<_>) = bound
        .into_iter()
        .map(|(n, v)| (Target::Name(n), Expr::Const(v)))
        .unzip();
    Some(StmtKind::Assign(
        vec![Target::Tuple(names)],
        Expr::Tuple(values),
    ))
}
