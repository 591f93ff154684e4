//! The built-in functions, `math`'s among them.

use std::rc::Rc;

use super::PyError;
use super::ast::BinOp;
use super::format::{display, format_spec, repr};
use super::interp::{EResult, Interp};
use super::values::{Kind, Value, finite, order, range_len};

impl<'a> Interp<'a> {
    /// The i-th elements of `iterables` together, for each i up to the shortest (`zip`'s
    /// rows, `map`'s argument lists).
    fn rows(&mut self, iterables: &[Value]) -> EResult<Vec<Vec<Value>>> {
        let lists = iterables
            .iter()
            .map(|a| self.items(a))
            .collect::<EResult<Vec<_>>>()?;
        let n = lists.iter().map(Vec::len).min().unwrap_or(0);
        Ok((0..n)
            .map(|i| lists.iter().filter_map(|l| l.get(i).cloned()).collect())
            .collect())
    }

    pub(super) fn builtin(
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
            "collections.deque" => &["maxlen"],
            _ => &[],
        };
        // `dict(a=1)`: any keyword is a key.
        let any_keyword = matches!(
            name,
            "dict" | "collections.Counter" | "collections.defaultdict" | "collections.OrderedDict"
        );
        if !any_keyword {
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
                let mut out = Vec::new();
                for row in self.rows(iterables)? {
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
            "type" => match one_arg(&args)? {
                v @ (Value::Bool(_)
                | Value::Int(_)
                | Value::Float(_)
                | Value::Str(_)
                | Value::List(_)
                | Value::Tuple(_)
                | Value::Dict(_)
                | Value::Set(_)) => Ok(Value::Builtin(v.class_name())),
                other => Err(PyError::Unsupported(format!(
                    "type() of a {}",
                    other.type_name()
                ))),
            },
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
            "repr" => {
                let s = args.first().map(repr).unwrap_or_default();
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
            "dict" | "collections.OrderedDict" => {
                let entries = self.dict_entries(&args, kwargs)?;
                let kind = if name == "dict" {
                    Kind::Plain
                } else {
                    Kind::OrderedDict
                };
                self.dict_of_kind(entries, kind)
            }
            "collections.defaultdict" => {
                let (factory, rest) = match args.split_first() {
                    Some((f, rest)) => (f.clone(), rest),
                    None => (Value::None, &[][..]),
                };
                if !matches!(
                    factory,
                    Value::None | Value::Func(_) | Value::Builtin(_) | Value::Method(_)
                ) {
                    return Err(PyError::Type(
                        "first argument must be callable or None".into(),
                    ));
                }
                let entries = self.dict_entries(rest, kwargs)?;
                self.dict_of_kind(entries, Kind::DefaultDict(factory))
            }
            "collections.Counter" => {
                if args.len() > 1 {
                    return Err(PyError::Type(format!(
                        "Counter() takes at most 1 argument, {} given",
                        args.len()
                    )));
                }
                let mut deltas = match args.first() {
                    Some(source) => self.count_deltas(source)?,
                    None => Vec::new(),
                };
                deltas.extend(
                    kwargs
                        .into_iter()
                        .map(|(k, v)| (Value::Str(Rc::from(k.as_str())), v)),
                );
                let mut entries = Vec::new();
                self.add_counts(&mut entries, deltas, BinOp::Add)?;
                Ok(Value::Dict(self.seq_of(entries, Kind::Counter)?))
            }
            "collections.deque" => {
                if args.len() > 2 {
                    return Err(PyError::Type(format!(
                        "deque() takes at most 2 arguments, {} given",
                        args.len()
                    )));
                }
                let maxlen = match args.get(1).cloned().or_else(|| kw("maxlen")) {
                    None | Some(Value::None) => None,
                    Some(v) => {
                        let n = v.as_int().ok_or_else(|| {
                            PyError::Type("maxlen must be an integer or None".into())
                        })?;
                        if n < 0 {
                            return Err(PyError::Value("maxlen must be non-negative".into()));
                        }
                        Some(usize::try_from(n).unwrap_or(usize::MAX))
                    }
                };
                let mut items = match args.first() {
                    Some(v) => self.items(v)?,
                    None => Vec::new(),
                };
                // Only the last `maxlen` stay.
                if let Some(m) = maxlen {
                    let over = items.len().saturating_sub(m);
                    items.drain(..over);
                }
                Ok(Value::List(self.seq_of(items, Kind::Deque(maxlen))?))
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
                let mut out = Vec::new();
                for row in self.rows(&args)? {
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
                        "tuple" => matches!(v, Value::Tuple(_)),
                        // Counter, defaultdict and OrderedDict are dicts; a deque is no list.
                        "dict" => matches!(v, Value::Dict(_)),
                        "list" => v.class_name() == "list",
                        c @ ("collections.Counter"
                        | "collections.defaultdict"
                        | "collections.OrderedDict"
                        | "collections.deque") => v.class_name() == c,
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

    /// The entries of `dict(...)`: of a mapping or of pairs, then of the keyword
    /// arguments.
    fn dict_entries(
        &mut self,
        args: &[Value],
        kwargs: Vec<(String, Value)>,
    ) -> EResult<Vec<(Value, Value)>> {
        let mut entries: Vec<(Value, Value)> = Vec::new();
        match args {
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
        Ok(entries)
    }
}

pub(super) fn one_arg(args: &[Value]) -> EResult<&Value> {
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

fn float_to_int(f: f64) -> EResult<Value> {
    if !f.is_finite() || f.abs() >= 1.0e38 {
        return Err(PyError::Overflow);
    }
    Ok(Value::Int(f as i128))
}
