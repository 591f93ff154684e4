//! Values, and what is done to them without the interpreter: equality, order, hashing
//! for sets, indices and slices, and the arithmetic of ints and floats.

use std::rc::Rc;

use super::PyError;
use super::ast::{BinOp, FuncDef};
use super::interp::EResult;

#[derive(Debug, Clone)]
pub(super) struct Seq {
    pub(super) items: Vec<Value>,
    pub(super) depth: u32,
    /// Which of `collections`' types a dict or a list is ([`Kind::Plain`] for all
    /// other values).
    pub(super) kind: Kind,
}

/// The types of `collections`: dicts and a list that behave a little differently.
#[derive(Debug, Clone, Default)]
pub(super) enum Kind {
    #[default]
    Plain,
    /// A `Counter` (a dict): a missing key reads as 0, and is not added.
    Counter,
    /// A `defaultdict` (a dict): a missing key reads as what its factory makes, which
    /// a variable's dict keeps (`None`: no factory, a missing key is a `KeyError`).
    DefaultDict(Value),
    /// An `OrderedDict` (a dict; equality of two of them also compares the order).
    OrderedDict,
    /// A `deque` (a list), with its `maxlen`.
    Deque(Option<usize>),
}

impl Kind {
    /// The `defaultdict` factory, a value the dict holds (its depth counts).
    pub(super) fn factory(&self) -> Option<&Value> {
        match self {
            Kind::DefaultDict(f) => Some(f),
            _ => None,
        }
    }
}

#[derive(Debug, Clone)]
pub(super) enum Value {
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
    /// `math` or `collections`.
    Module(&'static str),
}

/// A function value: its definition, the frame of the function it was made in (by
/// index and activation id, see [`super::interp::Scope`]), and what it used of that frame's
/// variables, as they were then (for calls after that function returned).
#[derive(Debug)]
pub(super) struct Function {
    pub(super) def: Rc<FuncDef>,
    /// The parameters' default values, evaluated when the function was made.
    pub(super) defaults: Vec<Option<Value>>,
    pub(super) home: Option<(usize, u64)>,
    pub(super) env: Vec<(String, Value)>,
    pub(super) depth: u32,
}

/// A method as a value: `d.get` (bound to `d`), or `str.lower` (of the class `str`,
/// the object comes first among the arguments). Only methods that do not change
/// their object are called this way.
#[derive(Debug)]
pub(super) struct Method {
    pub(super) receiver: Option<Value>,
    pub(super) class: &'static str,
    pub(super) name: String,
}

/// The methods that change their object: called on a variable only.
pub(super) const MUTATING: [&str; 19] = [
    "append",
    "extend",
    "pop",
    "insert",
    "remove",
    "sort",
    "reverse",
    "clear",
    "update",
    "add",
    "discard",
    "appendleft",
    "extendleft",
    "popleft",
    "rotate",
    "subtract",
    "popitem",
    "move_to_end",
    "setdefault",
];

impl Value {
    pub(super) fn type_name(&self) -> &'static str {
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
            Value::Module(_) => "module",
        }
    }

    /// What `type(v)` names: the type, or the `collections` class of a dict or a list.
    pub(super) fn class_name(&self) -> &'static str {
        match self {
            Value::Dict(s) | Value::List(s) => match s.kind {
                Kind::Plain => self.type_name(),
                Kind::Counter => "collections.Counter",
                Kind::DefaultDict(_) => "collections.defaultdict",
                Kind::OrderedDict => "collections.OrderedDict",
                Kind::Deque(_) => "collections.deque",
            },
            other => other.type_name(),
        }
    }

    pub(super) fn depth(&self) -> u32 {
        match self {
            Value::List(s) | Value::Tuple(s) | Value::Dict(s) | Value::Set(s) => s.depth,
            Value::Func(f) => f.depth,
            Value::Method(m) => m.receiver.as_ref().map_or(0, |r| r.depth() + 1),
            _ => 0,
        }
    }

    pub(super) fn truthy(&self) -> bool {
        match self {
            Value::None => false,
            Value::Bool(b) => *b,
            Value::Int(i) => *i != 0,
            Value::Float(f) => *f != 0.0,
            Value::Str(s) => !s.is_empty(),
            Value::List(s) | Value::Tuple(s) => !s.items.is_empty(),
            Value::Dict(s) | Value::Set(s) => !s.items.is_empty(),
            Value::Range(a, b, st) => range_len(*a, *b, *st) > 0,
            Value::Func(_) | Value::Method(_) | Value::Builtin(_) | Value::Module(_) => true,
        }
    }

    /// Ints and bools as `i128`.
    pub(super) fn as_int(&self) -> Option<i128> {
        match self {
            Value::Int(i) => Some(*i),
            Value::Bool(b) => Some(i128::from(*b)),
            _ => None,
        }
    }

    pub(super) fn as_f64(&self) -> Option<f64> {
        match self {
            Value::Float(f) => Some(*f),
            other => other.as_int().map(|i| i as f64),
        }
    }

    pub(super) fn is_number(&self) -> bool {
        matches!(self, Value::Int(_) | Value::Float(_) | Value::Bool(_))
    }
}

pub(super) fn range_len(a: i128, b: i128, step: i128) -> i128 {
    if step > 0 && a < b {
        (b - a - 1) / step + 1
    } else if step < 0 && a > b {
        (a - b - 1) / (-step) + 1
    } else {
        0
    }
}

pub(super) const MATH_NAMES: [&str; 17] = [
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
pub(super) fn math_member(name: &str) -> Option<Value> {
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

/// The classes of `collections` the subset has, as built-in names.
pub(super) const COLLECTIONS: [(&str, &str); 4] = [
    ("Counter", "collections.Counter"),
    ("defaultdict", "collections.defaultdict"),
    ("OrderedDict", "collections.OrderedDict"),
    ("deque", "collections.deque"),
];

/// The module `import <name>` imports.
pub(super) fn module(name: &str) -> Option<Value> {
    match name {
        "math" => Some(Value::Module("math")),
        "collections" => Some(Value::Module("collections")),
        _ => None,
    }
}

/// The names `from <module> import *` binds.
pub(super) fn module_names(module: &str) -> Vec<&'static str> {
    match module {
        "math" => MATH_NAMES.to_vec(),
        "collections" => COLLECTIONS.iter().map(|(n, _)| *n).collect(),
        _ => Vec::new(),
    }
}

/// What `<module>.<name>` is.
pub(super) fn module_member(module: &str, name: &str) -> Option<Value> {
    match module {
        "math" => math_member(name),
        "collections" => COLLECTIONS
            .iter()
            .find(|(n, _)| *n == name)
            .map(|(_, b)| Value::Builtin(b)),
        _ => None,
    }
}

/// The built-in names that are classes (`<class 'int'>`).
pub(super) fn is_class(builtin: &str) -> bool {
    matches!(
        builtin,
        "int"
            | "float"
            | "str"
            | "bool"
            | "list"
            | "tuple"
            | "dict"
            | "set"
            | "range"
            | "type"
            | "map"
            | "filter"
            | "reversed"
            | "enumerate"
            | "zip"
    ) || builtin.starts_with("collections.")
}

pub(super) const BUILTINS: [&str; 35] = [
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
    "repr",
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

/// Set elements: `None`, numbers, strings and tuples of those.
pub(super) fn check_hashable(v: &Value) -> EResult<()> {
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
pub(super) fn set_order(a: &Value, b: &Value) -> std::cmp::Ordering {
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

pub(super) fn set_contains(s: &Seq, v: &Value) -> bool {
    s.items.binary_search_by(|x| set_order(x, v)).is_ok()
}

/// The indices `0..n` sorted stably by `cmp` (a bottom-up merge sort: a comparison
/// that fails stops it, and one that is not a total order cannot make it panic).
pub(super) fn merge_sort(
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

pub(super) fn finite(f: f64) -> EResult<Value> {
    if f.is_finite() {
        Ok(Value::Float(f))
    } else if f.is_nan() {
        Err(PyError::Value("math domain error".into()))
    } else {
        Err(PyError::Overflow)
    }
}

/// Python's clamped `start` and `stop` of `s[start:stop:step]` over a sequence of `len`.
pub(super) fn slice_bounds(len: i128, bounds: [Option<i128>; 3]) -> (i128, i128, i128) {
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
pub(super) fn slice_indices(len: usize, bounds: [Option<i128>; 3]) -> Vec<usize> {
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

pub(super) fn norm_index(key: &Value, len: usize) -> EResult<usize> {
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

/// The key and the value of a dict's entry.
pub(super) fn pair(entry: &Value) -> Option<(&Value, &Value)> {
    match entry {
        Value::Tuple(kv) => match kv.items.as_slice() {
            [k, v] => Some((k, v)),
            _ => None,
        },
        _ => None,
    }
}

/// Whether reading the missing `key` of `base` makes a value a variable's dict keeps:
/// `base` is a `defaultdict` with a factory, without that key.
pub(super) fn makes_default(base: &Value, key: &Value) -> bool {
    match base {
        Value::Dict(d) => {
            matches!(&d.kind, Kind::DefaultDict(f) if !matches!(f, Value::None))
                && dict_get(d, key).is_none()
        }
        _ => false,
    }
}

/// The entries of a `Counter` in `most_common()`'s order: by count, largest first, equal
/// counts in the order they were added (a stable sort, as Python's).
pub(super) fn most_common_order(d: &Seq) -> EResult<Vec<usize>> {
    merge_sort(d.items.len(), &mut |i, j| match (
        d.items.get(i).and_then(pair),
        d.items.get(j).and_then(pair),
    ) {
        (Some((_, a)), Some((_, b))) => order(b, a),
        _ => Ok(std::cmp::Ordering::Equal),
    })
}

pub(super) fn dict_get(d: &Seq, key: &Value) -> Option<Value> {
    d.items.iter().find_map(|pair| match pair {
        Value::Tuple(kv) if kv.items.first().is_some_and(|k| keys_equal(k, key)) => {
            kv.items.get(1).cloned()
        }
        _ => None,
    })
}

pub(super) fn keys_equal(a: &Value, b: &Value) -> bool {
    values_equal(a, b)
}

/// `==` (numbers compared by value; depth of nested values is bounded).
pub(super) fn values_equal(a: &Value, b: &Value) -> bool {
    match (a, b) {
        (Value::None, Value::None) => true,
        (Value::Str(x), Value::Str(y)) => x == y,
        (Value::List(x), Value::List(y)) | (Value::Tuple(x), Value::Tuple(y)) => {
            // A deque is never equal to a list.
            matches!(x.kind, Kind::Deque(_)) == matches!(y.kind, Kind::Deque(_))
                && x.items.len() == y.items.len()
                && x.items
                    .iter()
                    .zip(&y.items)
                    .all(|(p, q)| values_equal(p, q))
        }
        (Value::Dict(x), Value::Dict(y)) => match (&x.kind, &y.kind) {
            // Two Counters: a missing key counts 0 (Python 3.10 on).
            (Kind::Counter, Kind::Counter) => counts_within(x, y) && counts_within(y, x),
            // Two OrderedDicts: also in the same order.
            (Kind::OrderedDict, Kind::OrderedDict) => {
                dicts_equal(x, y)
                    && x.items.iter().zip(&y.items).all(|(p, q)| {
                        matches!((pair(p), pair(q)), (Some((a, _)), Some((b, _))) if keys_equal(a, b))
                    })
            }
            _ => dicts_equal(x, y),
        },
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

fn dicts_equal(x: &Seq, y: &Seq) -> bool {
    x.items.len() == y.items.len()
        && x.items.iter().all(|p| match pair(p) {
            Some((k, v)) => dict_get(y, k).is_some_and(|w| values_equal(v, &w)),
            None => false,
        })
}

/// Whether each count of the Counter `x` is the one `y` has (0 when missing).
fn counts_within(x: &Seq, y: &Seq) -> bool {
    x.items.iter().all(|p| match pair(p) {
        Some((k, v)) => values_equal(v, &dict_get(y, k).unwrap_or(Value::Int(0))),
        None => false,
    })
}

pub(super) fn order(a: &Value, b: &Value) -> EResult<std::cmp::Ordering> {
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

pub(super) fn int_op(op: BinOp, x: i128, y: i128) -> EResult<Value> {
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

pub(super) fn float_op(op: BinOp, x: f64, y: f64) -> EResult<Value> {
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
