//! The syntax tree the parser builds and the interpreter runs.

use std::rc::Rc;

use super::values::Value;

#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub(super) enum BinOp {
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
pub(super) enum CmpOp {
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
pub(super) enum Expr {
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
pub(super) enum Clause {
    For(Target, Expr),
    If(Expr),
}

#[derive(Debug, Clone)]
pub(super) enum FPart {
    Lit(String),
    Field(Expr, String),
}

#[derive(Debug, Clone)]
pub(super) enum Target {
    Name(String),
    Item(String, Expr),
    /// `xs[a:b:c] = ...` on the list variable `xs`.
    Slice(String, Box<[Option<Expr>; 3]>),
    Tuple(Vec<Target>),
}

#[derive(Debug, Clone)]
pub(super) struct Stmt {
    pub(super) line: usize,
    pub(super) kind: StmtKind,
}

#[derive(Debug, Clone)]
pub(super) enum StmtKind {
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
pub(super) struct TryStmt {
    pub(super) body: Vec<Stmt>,
    pub(super) handlers: Vec<Handler>,
    pub(super) orelse: Vec<Stmt>,
    pub(super) finally: Vec<Stmt>,
}

/// `except (A, B) as name:`; no classes for a bare `except:`.
#[derive(Debug, Clone)]
pub(super) struct Handler {
    pub(super) classes: Vec<String>,
    pub(super) name: Option<String>,
    pub(super) body: Vec<Stmt>,
}

#[derive(Debug)]
pub(super) struct FuncDef {
    pub(super) name: String,
    pub(super) params: Vec<(String, Option<Expr>)>,
    pub(super) body: Vec<Stmt>,
    /// Names the body uses that are not its parameters: what a function defined
    /// inside another one captures from it (defaults are evaluated where it is defined).
    pub(super) free: Vec<String>,
}

impl FuncDef {
    pub(super) fn new(name: String, params: Vec<(String, Option<Expr>)>, body: Vec<Stmt>) -> Self {
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
