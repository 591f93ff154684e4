//! The interpreter: statements and expressions, variables and scopes, calls, and what
//! `try` catches.

use std::collections::HashMap;
use std::rc::Rc;

use super::ast::{
    BinOp, Clause, CmpOp, Expr, FPart, FuncDef, Handler, Stmt, StmtKind, Target, TryStmt,
};
use super::format::{display, format_spec};
use super::values::{
    BUILTINS, Function, Kind, MUTATING, Method, Seq, Value, check_hashable, dict_get, float_op,
    int_op, keys_equal, makes_default, module_member, norm_index, order, pair, range_len,
    set_contains, slice_bounds, slice_indices, values_equal,
};
use super::{Limits, Number, PyError, PyFailure, parse_number_text};

pub(super) type EResult<T> = Result<T, PyError>;
/// The variable an item changed in place is while it changes (no program can name it).
const ITEM: &str = "<item>";
/// A call's evaluated arguments: positional, then keyword.
type Args = (Vec<Value>, Vec<(String, Value)>);

pub(super) enum Flow {
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

pub(super) struct Interp<'a> {
    pub(super) limits: &'a Limits,
    pub(super) steps: u64,
    alloc: u64,
    frames: Vec<HashMap<String, Value>>,
    /// Per frame, where its names are looked up after it (see [`Scope`]).
    scopes: Vec<Scope>,
    next_scope: u64,
    /// The exceptions being handled (innermost last), with the name an `except ... as`
    /// bound: what a bare `raise` raises again.
    handling: Vec<(Option<String>, PyError)>,
    line: usize,
    pub(super) printed: Vec<String>,
}

impl<'a> Interp<'a> {
    pub(super) fn new(limits: &'a Limits) -> Self {
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

    pub(super) fn fail(&self, error: PyError) -> PyFailure {
        PyFailure::at(self.line, error)
    }

    pub(super) fn global(&self, name: &str) -> Option<Value> {
        self.frames.first().and_then(|f| f.get(name)).cloned()
    }

    pub(super) fn last_printed_number(&self) -> Option<Number> {
        self.printed.iter().rev().find_map(|line| {
            line.split_whitespace()
                .rev()
                .find_map(|w| parse_number_text(w.trim_end_matches(['.', ',', ';', ')'])))
        })
    }

    pub(super) fn tick(&mut self, n: u64) -> EResult<()> {
        self.steps = self.steps.saturating_add(n);
        if self.steps > self.limits.max_steps {
            return Err(PyError::Steps(self.limits.max_steps));
        }
        Ok(())
    }

    /// Accounts for `n` new elements or characters.
    pub(super) fn alloc(&mut self, n: usize) -> EResult<()> {
        if n > self.limits.max_len {
            return Err(PyError::Memory(format!(
                "a value of {n} elements, over {}",
                self.limits.max_len
            )));
        }
        self.charge(n)
    }

    /// Accounts for `n` elements copied (no length check: the copy's length is bounded).
    pub(super) fn charge(&mut self, n: usize) -> EResult<()> {
        self.alloc = self.alloc.saturating_add(n as u64);
        if self.alloc > self.limits.max_alloc {
            return Err(PyError::Memory("too much allocated over the run".into()));
        }
        self.tick(n as u64 / 8)
    }

    pub(super) fn seq(&mut self, items: Vec<Value>) -> EResult<Rc<Seq>> {
        self.seq_of(items, Kind::Plain)
    }

    /// A sequence of `kind` (a `defaultdict`'s factory is one of the values it holds).
    pub(super) fn seq_of(&mut self, items: Vec<Value>, kind: Kind) -> EResult<Rc<Seq>> {
        self.alloc(items.len())?;
        let inner = items.iter().chain(kind.factory()).map(Value::depth).max();
        let depth = 1 + inner.unwrap_or(0);
        if depth > self.limits.max_value_depth {
            return Err(PyError::Memory("values nested too deeply".into()));
        }
        Ok(Rc::new(Seq { items, depth, kind }))
    }

    pub(super) fn list(&mut self, items: Vec<Value>) -> EResult<Value> {
        Ok(Value::List(self.seq(items)?))
    }

    pub(super) fn string(&mut self, s: String) -> EResult<Value> {
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

    pub(super) fn lookup(&self, name: &str) -> EResult<Value> {
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
            return Ok(Value::Module("math"));
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
    pub(super) fn var_mut(&mut self, name: &str) -> EResult<&mut Value> {
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

    pub(super) fn exec_block(&mut self, body: &[Stmt]) -> EResult<Flow> {
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
    pub(super) fn items(&mut self, it: &Value) -> EResult<Vec<Value>> {
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
                            kind: Kind::Plain,
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

    /// `name[key].method(...)` with a method that changes its object (`groups[k].append(x)`):
    /// the item is taken out of the list or dict (a `defaultdict` makes a missing one),
    /// changed as a variable is, and put back, also when the method fails (Python keeps
    /// what it changed before the error).
    fn mutate_item(
        &mut self,
        name: &str,
        key: Value,
        method: &str,
        argv: Vec<Value>,
        kw: Vec<(String, Value)>,
    ) -> EResult<Value> {
        // `sort` copies the list anyway, and calls the program's key function, which may
        // read the container: the item stays in it.
        let (item, keep) = match self.take_item(name, &key, method != "sort")? {
            Some(item) => (item, true),
            None => {
                let base = self.lookup(name)?;
                let keep = makes_default(&base, &key);
                (self.index(&base, &key)?, keep)
            }
        };
        self.set(ITEM, item);
        let out = self.mutate(ITEM, method, argv, kw);
        let item = self.frames.last_mut().and_then(|f| f.remove(ITEM));
        if let (Some(item), true) = (item, keep) {
            self.set_item(name, key, item)?;
        }
        out
    }

    /// The item `name[key]` of a list or dict variable (`None`: a dict without the key),
    /// taken out of it (`None` left in its place) so that changing it copies nothing, or
    /// else a copy.
    fn take_item(&mut self, name: &str, key: &Value, take: bool) -> EResult<Option<Value>> {
        let slot = self.var_mut(name)?;
        let (len, shared) = match slot {
            Value::List(s) | Value::Dict(s) => (s.items.len(), Rc::strong_count(s) > 1),
            other => {
                return Err(PyError::Unsupported(format!(
                    "changing an item of a {} in place",
                    other.type_name()
                )));
            }
        };
        let item = match slot {
            Value::List(s) => {
                let i = norm_index(key, len)?;
                if take {
                    Rc::make_mut(s)
                        .items
                        .get_mut(i)
                        .map(|v| std::mem::replace(v, Value::None))
                } else {
                    s.items.get(i).cloned()
                }
            }
            Value::Dict(s) if take => Rc::make_mut(s).items.iter_mut().find_map(|p| match p {
                Value::Tuple(kv) if kv.items.first().is_some_and(|k| keys_equal(k, key)) => {
                    Rc::make_mut(kv)
                        .items
                        .get_mut(1)
                        .map(|v| std::mem::replace(v, Value::None))
                }
                _ => None,
            }),
            Value::Dict(s) => dict_get(s, key),
            _ => None,
        };
        self.tick(len as u64 / 8)?;
        if take && shared {
            self.charge(len)?;
        }
        Ok(item)
    }

    /// `a + b`, `a - b`, `a | b`, `a & b` of two Counters, as Python computes them: the
    /// counts of `a`'s keys, then those of `b`'s others, where they are positive.
    fn counter_op(&mut self, op: BinOp, a: &Seq, b: &Seq) -> EResult<Value> {
        let zero = Value::Int(0);
        let mut out = Vec::new();
        for (k, x) in a.items.iter().filter_map(pair) {
            self.tick(b.items.len() as u64 / 8 + 1)?;
            let y = dict_get(b, k).unwrap_or(Value::Int(0));
            let n = match op {
                BinOp::Add | BinOp::Sub => self.binop(op, x.clone(), y)?,
                // The larger (`|`) or smaller (`&`) count, the first when equal.
                _ => {
                    let x_smaller = order(x, &y)? == std::cmp::Ordering::Less;
                    if x_smaller == (op == BinOp::BitOr) {
                        y
                    } else {
                        x.clone()
                    }
                }
            };
            if order(&n, &zero)? == std::cmp::Ordering::Greater {
                out.push(Value::Tuple(self.seq(vec![k.clone(), n])?));
            }
        }
        if op != BinOp::BitAnd {
            for (k, y) in b.items.iter().filter_map(pair) {
                self.tick(a.items.len() as u64 / 8 + 1)?;
                if dict_get(a, k).is_some() {
                    continue;
                }
                let n = if op == BinOp::Sub {
                    self.binop(BinOp::Sub, zero.clone(), y.clone())?
                } else {
                    y.clone()
                };
                if order(&n, &zero)? == std::cmp::Ordering::Greater {
                    out.push(Value::Tuple(self.seq(vec![k.clone(), n])?));
                }
            }
        }
        Ok(Value::Dict(self.seq_of(out, Kind::Counter)?))
    }

    /// The values of a call's positional and keyword arguments, in order.
    fn eval_args(&mut self, args: &[Expr], kwargs: &[(String, Expr)]) -> EResult<Args> {
        let argv = self.eval_all(args)?;
        let kw = kwargs
            .iter()
            .map(|(k, v)| Ok((k.clone(), self.eval(v)?)))
            .collect::<EResult<Vec<_>>>()?;
        Ok((argv, kw))
    }

    /// The values of `items`, in order.
    fn eval_all(&mut self, items: &[Expr]) -> EResult<Vec<Value>> {
        items.iter().map(|i| self.eval(i)).collect()
    }

    fn eval(&mut self, e: &Expr) -> EResult<Value> {
        self.tick(1)?;
        match e {
            Expr::Const(v) => Ok(v.clone()),
            Expr::Name(n) => self.lookup(n),
            Expr::List(items) => {
                let vs = self.eval_all(items)?;
                self.list(vs)
            }
            Expr::Tuple(items) => {
                let vs = self.eval_all(items)?;
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
                let vs = self.eval_all(items)?;
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
                // A `defaultdict` variable keeps what it made for a missing key.
                if let (Expr::Name(name), true) = (&**base, makes_default(&b, &i)) {
                    let v = self.index(&b, &i)?;
                    drop(b);
                    self.set_item(name, i, v.clone())?;
                    return Ok(v);
                }
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
    pub(super) fn dict_of(&mut self, entries: Vec<(Value, Value)>) -> EResult<Value> {
        self.dict_of_kind(entries, Kind::Plain)
    }

    /// [`Self::dict_of`], a dict of `kind`.
    pub(super) fn dict_of_kind(
        &mut self,
        entries: Vec<(Value, Value)>,
        kind: Kind,
    ) -> EResult<Value> {
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
        Ok(Value::Dict(self.seq_of(pairs, kind)?))
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
                match dict_get(s, key) {
                    Some(v) => Ok(v),
                    None => self.missing(s, key),
                }
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

    /// What reading the missing `key` of the dict `d` gives: 0 from a `Counter`, what
    /// the factory of a `defaultdict` makes, else a `KeyError`.
    pub(super) fn missing(&mut self, d: &Seq, key: &Value) -> EResult<Value> {
        match &d.kind {
            Kind::Counter => check_hashable(key).map(|()| Value::Int(0)),
            Kind::DefaultDict(f) if !matches!(f, Value::None) => {
                check_hashable(key)?;
                let f = f.clone();
                self.call_value(&f, Vec::new(), Vec::new())
            }
            _ => Err(PyError::Index),
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

    pub(super) fn binop(&mut self, op: BinOp, a: Value, b: Value) -> EResult<Value> {
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
            (
                BinOp::Add | BinOp::Sub | BinOp::BitOr | BinOp::BitAnd,
                Value::Dict(x),
                Value::Dict(y),
            ) if matches!((&x.kind, &y.kind), (Kind::Counter, Kind::Counter)) => {
                self.counter_op(op, x, y)
            }
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
        let (argv, kw) = self.eval_args(args, kwargs)?;
        self.call_value(&fv, argv, kw)
    }

    /// Calls a function value (a `def`, a lambda or a built-in).
    pub(super) fn call_value(
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

    pub(super) fn call_func(
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
        let (argv, kw) = self.eval_args(args, kwargs)?;
        if MUTATING.contains(&method) {
            let elsewhere = || {
                PyError::Unsupported(format!(
                    ".{method}() on anything but a variable or an item of one"
                ))
            };
            match obj {
                // A module attribute is not a mutation.
                Expr::Name(name) => {
                    if !matches!(self.lookup(name)?, Value::Module(_)) {
                        return self.mutate(name, method, argv, kw);
                    }
                }
                Expr::Index(base, idx) => {
                    let Expr::Name(name) = &**base else {
                        return Err(elsewhere());
                    };
                    let key = self.eval(idx)?;
                    return self.mutate_item(name, key, method, argv, kw);
                }
                _ => return Err(elsewhere()),
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
            Value::Module(m) => {
                return module_member(m, name)
                    .ok_or_else(|| PyError::Unsupported(format!("{m}.{name}")));
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
}

/// Whether `try` may catch `e`: what Python programs raise and catch, never a limit
/// of the interpreter (steps, memory, recursion, nesting, the size of integers, which
/// Python's are not bounded), nor what the subset lacks, nor a name it does not know.
pub(super) fn catchable(e: &PyError) -> bool {
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
