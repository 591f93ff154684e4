//! The methods of strings, lists, dicts and sets, also as values.

use std::rc::Rc;

use super::PyError;
use super::ast::BinOp;
use super::builtins::one_arg;
use super::format::{format_spec, repr};
use super::interp::{EResult, Interp};
use super::values::{
    Kind, Seq, Value, check_hashable, dict_get, keys_equal, merge_sort, module_member,
    most_common_order, norm_index, order, pair, set_contains, set_order, values_equal,
};

impl<'a> Interp<'a> {
    /// A method that does not change its object, called on the value `target`.
    pub(super) fn value_method(
        &mut self,
        target: &Value,
        method: &str,
        argv: Vec<Value>,
        kw: Vec<(String, Value)>,
    ) -> EResult<Value> {
        match (target, method) {
            (Value::Module(m), _) => match module_member(m, method) {
                Some(Value::Builtin(b)) => self.builtin(b, argv, kw),
                _ => Err(PyError::Unsupported(format!("{m}.{method}"))),
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
            // A copy is of the same kind (a deque's is a deque, a Counter's a Counter).
            (Value::List(s) | Value::Dict(s), "copy") => {
                let seq = self.seq_of(s.items.clone(), s.kind.clone())?;
                Ok(match target {
                    Value::List(_) => Value::List(seq),
                    _ => Value::Dict(seq),
                })
            }
            (Value::Dict(s), "most_common" | "elements" | "total")
                if matches!(s.kind, Kind::Counter) =>
            {
                let s = s.clone();
                self.counter_method(&s, method, &argv, &kw)
            }
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
            (Value::Str(s), _) => {
                let s = s.clone();
                self.str_method(&s, method, &argv, &kw)
            }
            (Value::Set(s), _) => {
                let s = s.clone();
                self.set_method(&s, method, &argv)
            }
            (other, _) => Err(PyError::Unsupported(format!(
                "method `{method}` of a {}",
                other.type_name()
            ))),
        }
    }

    /// `most_common`, `elements` and `total` of a Counter.
    fn counter_method(
        &mut self,
        s: &Seq,
        method: &str,
        argv: &[Value],
        kw: &[(String, Value)],
    ) -> EResult<Value> {
        let keywords: &[&str] = if method == "most_common" { &["n"] } else { &[] };
        if let Some((k, _)) = kw.iter().find(|(k, _)| !keywords.contains(&k.as_str())) {
            return Err(PyError::Type(format!("{method}() has no argument `{k}`")));
        }
        if argv.len() > keywords.len() {
            return Err(PyError::Type(format!(
                "{method}() takes at most {} arguments",
                keywords.len()
            )));
        }
        let entries = s.items.iter().filter_map(pair);
        match method {
            "most_common" => {
                let n = int_arg(keyword_arg(argv, kw, 0, "n"), "n")?;
                self.tick(s.items.len() as u64 * 4)?;
                let ranked = most_common_order(s)?;
                let n = n.map_or(ranked.len(), |n| usize::try_from(n).unwrap_or(0));
                let items = ranked
                    .into_iter()
                    .take(n)
                    .filter_map(|i| s.items.get(i).cloned())
                    .collect();
                self.list(items)
            }
            "elements" => {
                // Each key as many times as its count (none when not positive).
                let mut times = Vec::new();
                for (k, n) in entries {
                    let n = match n {
                        Value::Float(_) => {
                            return Err(PyError::Type("elements() needs int counts".into()));
                        }
                        n => n
                            .as_int()
                            .ok_or_else(|| PyError::Type("elements() needs int counts".into()))?,
                    };
                    times.push((k, usize::try_from(n).unwrap_or(0)));
                }
                let total = times.iter().fold(0usize, |t, (_, n)| t.saturating_add(*n));
                if total > self.limits.max_len {
                    return Err(PyError::Memory(format!("a list of {total} elements")));
                }
                let items = times
                    .into_iter()
                    .flat_map(|(k, n)| std::iter::repeat_n(k.clone(), n))
                    .collect();
                self.list(items)
            }
            _ => {
                let mut acc = Value::Int(0);
                for (_, n) in entries {
                    self.tick(1)?;
                    acc = self.binop(BinOp::Add, acc, n.clone())?;
                }
                Ok(acc)
            }
        }
    }

    /// A method of a string (which never changes it).
    fn str_method(
        &mut self,
        s: &str,
        method: &str,
        argv: &[Value],
        kw: &[(String, Value)],
    ) -> EResult<Value> {
        let most_args = match method {
            "upper" | "lower" | "casefold" | "capitalize" | "swapcase" | "title" | "isalpha"
            | "isdigit" | "isdecimal" | "isnumeric" | "isalnum" | "isspace" | "isupper"
            | "islower" | "istitle" => 0,
            "strip" | "lstrip" | "rstrip" | "join" | "zfill" | "partition" | "rpartition"
            | "removeprefix" | "removesuffix" | "splitlines" => 1,
            "split" | "rsplit" | "ljust" | "rjust" | "center" => 2,
            "startswith" | "endswith" | "find" | "rfind" | "index" | "rindex" | "count"
            | "replace" => 3,
            "format" => usize::MAX,
            _ => {
                return Err(PyError::Unsupported(format!("method `{method}` of a str")));
            }
        };
        if argv.len() > most_args {
            return Err(PyError::Type(format!(
                "str.{method}() takes at most {most_args} arguments, {} given",
                argv.len()
            )));
        }
        let keywords: &[&str] = match method {
            "split" | "rsplit" => &["sep", "maxsplit"],
            "splitlines" => &["keepends"],
            "replace" => &["count"],
            _ => &[],
        };
        if method != "format" {
            if let Some((k, _)) = kw.iter().find(|(k, _)| !keywords.contains(&k.as_str())) {
                return Err(PyError::Type(format!(
                    "str.{method}() has no argument `{k}`"
                )));
            }
        }
        let chars: Vec<char> = s.chars().collect();
        let n = chars.len();
        self.tick(n as u64 / 8)?;
        match method {
            "upper" => self.string(s.to_uppercase()),
            "lower" | "casefold" => self.string(s.to_lowercase()),
            "capitalize" => {
                let mut out = String::new();
                for (k, c) in chars.iter().enumerate() {
                    if k == 0 {
                        out.extend(c.to_uppercase());
                    } else {
                        out.extend(c.to_lowercase());
                    }
                }
                self.string(out)
            }
            "swapcase" => {
                let mut out = String::new();
                for c in &chars {
                    if c.is_uppercase() {
                        out.extend(c.to_lowercase());
                    } else if c.is_lowercase() {
                        out.extend(c.to_uppercase());
                    } else {
                        out.push(*c);
                    }
                }
                self.string(out)
            }
            "title" => {
                // Python's rule: a cased character after a cased one is lowered, any other
                // is raised ("they're" gives "They'Re").
                let mut out = String::new();
                let mut previous_cased = false;
                for c in &chars {
                    if previous_cased {
                        out.extend(c.to_lowercase());
                    } else {
                        out.extend(c.to_uppercase());
                    }
                    previous_cased = c.is_uppercase() || c.is_lowercase();
                }
                self.string(out)
            }
            "isalpha" => Ok(Value::Bool(
                n > 0 && chars.iter().all(|c| c.is_alphabetic()),
            )),
            "isdigit" | "isdecimal" | "isnumeric" => Ok(Value::Bool(
                n > 0
                    && chars
                        .iter()
                        .all(|c| c.is_ascii_digit() || (!c.is_ascii() && c.is_numeric())),
            )),
            "isalnum" => Ok(Value::Bool(
                n > 0 && chars.iter().all(|c| c.is_alphanumeric()),
            )),
            "isspace" => Ok(Value::Bool(n > 0 && chars.iter().all(|c| py_space(*c)))),
            "isupper" | "islower" => {
                // At least one cased character, and none of the other case.
                let upper = method == "isupper";
                let mut cased = false;
                for c in &chars {
                    let (this, other) = if upper {
                        (c.is_uppercase(), c.is_lowercase())
                    } else {
                        (c.is_lowercase(), c.is_uppercase())
                    };
                    if other {
                        return Ok(Value::Bool(false));
                    }
                    cased |= this;
                }
                Ok(Value::Bool(cased))
            }
            "istitle" => {
                let mut cased = false;
                let mut previous_cased = false;
                for c in &chars {
                    if c.is_uppercase() {
                        if previous_cased {
                            return Ok(Value::Bool(false));
                        }
                        previous_cased = true;
                        cased = true;
                    } else if c.is_lowercase() {
                        if !previous_cased {
                            return Ok(Value::Bool(false));
                        }
                        previous_cased = true;
                        cased = true;
                    } else {
                        previous_cased = false;
                    }
                }
                Ok(Value::Bool(cased))
            }
            "strip" | "lstrip" | "rstrip" => {
                let set: Option<Vec<char>> = match argv.first() {
                    None | Some(Value::None) => None,
                    Some(Value::Str(cs)) => {
                        let mut v: Vec<char> = cs.chars().collect();
                        self.tick(v.len() as u64 / 8)?;
                        v.sort_unstable();
                        v.dedup();
                        Some(v)
                    }
                    Some(other) => {
                        return Err(PyError::Type(format!(
                            "{method} arg must be None or str, not {}",
                            other.type_name()
                        )));
                    }
                };
                let strip = |c: char| match &set {
                    None => py_space(c),
                    Some(cs) => cs.binary_search(&c).is_ok(),
                };
                let out = match method {
                    "strip" => s.trim_matches(strip),
                    "lstrip" => s.trim_start_matches(strip),
                    _ => s.trim_end_matches(strip),
                };
                self.string(out.to_string())
            }
            "split" | "rsplit" => {
                let maxsplit =
                    strict_int_arg(keyword_arg(argv, kw, 1, "maxsplit"), "maxsplit")?.unwrap_or(-1);
                // A negative maxsplit is no limit.
                let limit = usize::try_from(maxsplit).unwrap_or(usize::MAX);
                let pieces: Vec<String> = match keyword_arg(argv, kw, 0, "sep") {
                    None | Some(Value::None) => {
                        if method == "split" {
                            split_on_space(&chars, limit)
                        } else {
                            let reversed: Vec<char> = chars.iter().rev().copied().collect();
                            split_on_space(&reversed, limit)
                                .into_iter()
                                .rev()
                                .map(|p| p.chars().rev().collect())
                                .collect()
                        }
                    }
                    Some(Value::Str(sep)) => {
                        if sep.is_empty() {
                            return Err(PyError::Value("empty separator".into()));
                        }
                        let parts = limit.saturating_add(1);
                        if method == "split" {
                            s.splitn(parts, &**sep).map(String::from).collect()
                        } else {
                            let mut v: Vec<String> =
                                s.rsplitn(parts, &**sep).map(String::from).collect();
                            v.reverse();
                            v
                        }
                    }
                    Some(other) => {
                        return Err(PyError::Type(format!(
                            "must be str or None, not {}",
                            other.type_name()
                        )));
                    }
                };
                self.str_list(pieces)
            }
            "splitlines" => {
                let keep = keyword_arg(argv, kw, 0, "keepends").is_some_and(Value::truthy);
                let mut lines = Vec::new();
                let mut line = String::new();
                let mut k = 0usize;
                while let Some(&c) = chars.get(k) {
                    k += 1;
                    if !line_break(c) {
                        line.push(c);
                        continue;
                    }
                    if keep {
                        line.push(c);
                    }
                    if c == '\r' && chars.get(k) == Some(&'\n') {
                        k += 1;
                        if keep {
                            line.push('\n');
                        }
                    }
                    lines.push(std::mem::take(&mut line));
                }
                if !line.is_empty() {
                    lines.push(line);
                }
                self.str_list(lines)
            }
            "join" => {
                let items = self.items(one_arg(argv)?)?;
                let max_len = self.limits.max_len;
                let mut total = 0usize;
                for (k, v) in items.iter().enumerate() {
                    let Value::Str(x) = v else {
                        return Err(PyError::Type(format!(
                            "sequence item {k}: expected str instance, {} found",
                            v.type_name()
                        )));
                    };
                    let sep = if k > 0 { n } else { 0 };
                    total = total.saturating_add(sep + x.chars().count());
                    if total > max_len {
                        return Err(PyError::Memory(format!(
                            "a joined string longer than {max_len}"
                        )));
                    }
                }
                let mut out = String::new();
                for (k, v) in items.iter().enumerate() {
                    if k > 0 {
                        out.push_str(s);
                    }
                    if let Value::Str(x) = v {
                        out.push_str(x);
                    }
                }
                self.string(out)
            }
            "startswith" | "endswith" => {
                let affixes: Vec<Rc<str>> = match argv.first() {
                    Some(Value::Str(p)) => vec![p.clone()],
                    Some(Value::Tuple(t)) => t
                        .items
                        .iter()
                        .map(|v| match v {
                            Value::Str(p) => Ok(p.clone()),
                            other => Err(PyError::Type(format!(
                                "a tuple for {method} must only contain str, not {}",
                                other.type_name()
                            ))),
                        })
                        .collect::<EResult<_>>()?,
                    other => {
                        return Err(PyError::Type(format!(
                            "{method} first arg must be str or a tuple of str, not {}",
                            other.map_or("nothing", Value::type_name)
                        )));
                    }
                };
                self.tick(affixes.len() as u64)?;
                let start = int_arg(argv.get(1), "start")?;
                let end = int_arg(argv.get(2), "end")?;
                let Some((text, _)) = window(&chars, start, end) else {
                    return Ok(Value::Bool(false));
                };
                Ok(Value::Bool(affixes.iter().any(|a| {
                    if method == "startswith" {
                        text.starts_with(&**a)
                    } else {
                        text.ends_with(&**a)
                    }
                })))
            }
            "find" | "rfind" | "index" | "rindex" | "count" => {
                let sub = match argv.first() {
                    Some(Value::Str(x)) => x.clone(),
                    other => {
                        return Err(PyError::Type(format!(
                            "{method}() needs a str, not {}",
                            other.map_or("nothing", Value::type_name)
                        )));
                    }
                };
                let start = int_arg(argv.get(1), "start")?;
                let end = int_arg(argv.get(2), "end")?;
                let found = window(&chars, start, end).map(|(text, offset)| {
                    let at = match method {
                        "count" => return text.matches(&*sub).count(),
                        "find" | "index" => text.find(&*sub),
                        _ => text.rfind(&*sub),
                    };
                    at.map_or(usize::MAX, |b| offset + char_offset(&text, b))
                });
                match (method, found) {
                    ("count", n) => Ok(Value::Int(n.unwrap_or(0) as i128)),
                    (_, Some(i)) if i != usize::MAX => Ok(Value::Int(i as i128)),
                    ("find" | "rfind", _) => Ok(Value::Int(-1)),
                    _ => Err(PyError::Value("substring not found".into())),
                }
            }
            "replace" => {
                let (old, new) = match (argv.first(), argv.get(1)) {
                    (Some(Value::Str(a)), Some(Value::Str(b))) => (a.clone(), b.clone()),
                    _ => return Err(PyError::Type("replace() needs two strs".into())),
                };
                let count =
                    strict_int_arg(keyword_arg(argv, kw, 2, "count"), "count")?.unwrap_or(-1);
                let found = s.matches(&*old).count();
                let k = usize::try_from(count).map_or(found, |c| c.min(found));
                let len = n
                    .saturating_sub(k.saturating_mul(old.chars().count()))
                    .saturating_add(k.saturating_mul(new.chars().count()));
                if len > self.limits.max_len {
                    return Err(PyError::Memory(format!("a string of {len} characters")));
                }
                self.string(s.replacen(&*old, &new, k))
            }
            "zfill" | "ljust" | "rjust" | "center" => {
                let width = int_arg(argv.first(), "width")?
                    .ok_or_else(|| PyError::Type(format!("{method}() needs a width")))?;
                let fill = match argv.get(1) {
                    None => ' ',
                    Some(Value::Str(f)) if f.chars().count() == 1 => {
                        f.chars().next().unwrap_or(' ')
                    }
                    Some(_) => {
                        return Err(PyError::Type(
                            "the fill character must be exactly one character long".into(),
                        ));
                    }
                };
                if width > self.limits.max_len as i128 {
                    return Err(PyError::Memory(format!("a string of {width} characters")));
                }
                let pad = usize::try_from(width).unwrap_or(0).saturating_sub(n);
                let (left, right) = match method {
                    "ljust" => (0, pad),
                    "rjust" | "zfill" => (pad, 0),
                    // Python's centring: the odd space goes left when the width is odd.
                    _ => {
                        let left = pad / 2 + (pad & usize::try_from(width).unwrap_or(0) & 1);
                        (left, pad - left)
                    }
                };
                let fill = if method == "zfill" { '0' } else { fill };
                let mut out = String::new();
                let mut rest = chars.as_slice();
                if method == "zfill" && pad > 0 {
                    if let Some((&sign @ ('+' | '-'), tail)) = chars.split_first() {
                        out.push(sign);
                        rest = tail;
                    }
                }
                out.extend(std::iter::repeat_n(fill, left));
                out.extend(rest.iter());
                out.extend(std::iter::repeat_n(fill, right));
                self.string(out)
            }
            "partition" | "rpartition" => {
                let sep = match argv.first() {
                    Some(Value::Str(x)) if !x.is_empty() => x.clone(),
                    Some(Value::Str(_)) => return Err(PyError::Value("empty separator".into())),
                    _ => return Err(PyError::Type(format!("{method}() needs a str"))),
                };
                let split = if method == "partition" {
                    s.split_once(&*sep)
                } else {
                    s.rsplit_once(&*sep)
                };
                let parts = match (split, method) {
                    (Some((a, b)), _) => [a, &*sep, b],
                    (None, "partition") => [s, "", ""],
                    (None, _) => ["", "", s],
                };
                let mut items = Vec::new();
                for p in parts {
                    items.push(self.string(p.to_string())?);
                }
                Ok(Value::Tuple(self.seq(items)?))
            }
            "removeprefix" | "removesuffix" => {
                let Some(Value::Str(a)) = argv.first() else {
                    return Err(PyError::Type(format!("{method}() needs a str")));
                };
                let out = if method == "removeprefix" {
                    s.strip_prefix(&**a)
                } else {
                    s.strip_suffix(&**a)
                };
                self.string(out.unwrap_or(s).to_string())
            }
            "format" => {
                let out = self.format_fields(&chars, argv, kw)?;
                self.string(out)
            }
            _ => Err(PyError::Unsupported(format!("method `{method}` of a str"))),
        }
    }

    /// `str.format`: `{}`, `{0}` and `{name}` fields with `!r`/`!s` and a spec, `{{`
    /// and `}}`.
    fn format_fields(
        &mut self,
        chars: &[char],
        argv: &[Value],
        kw: &[(String, Value)],
    ) -> EResult<String> {
        let mut out = String::new();
        let mut auto = 0usize;
        let mut i = 0usize;
        while let Some(&c) = chars.get(i) {
            let next = chars.get(i + 1).copied();
            if (c == '{' || c == '}') && next == Some(c) {
                out.push(c);
                i += 2;
                continue;
            }
            if c == '}' {
                return Err(PyError::Value("single '}' in a format string".into()));
            }
            if c != '{' {
                out.push(c);
                i += 1;
                continue;
            }
            let close = (i + 1..chars.len())
                .find(|&k| chars.get(k) == Some(&'}'))
                .ok_or_else(|| PyError::Value("single '{' in a format string".into()))?;
            let field: String = chars.get(i + 1..close).unwrap_or(&[]).iter().collect();
            i = close + 1;
            let (head, spec) = field.split_once(':').unwrap_or((field.as_str(), ""));
            let (name, conversion) = match head.split_once('!') {
                Some((n, c)) => (n, Some(c)),
                None => (head, None),
            };
            let v = if name.is_empty() {
                auto += 1;
                argv.get(auto - 1)
            } else if let Ok(k) = name.parse::<usize>() {
                argv.get(k)
            } else if name.chars().all(|c| c.is_alphanumeric() || c == '_') {
                kw.iter().find(|(k, _)| k == name).map(|(_, v)| v)
            } else {
                return Err(PyError::Unsupported(format!("the format field {{{name}}}")));
            }
            .ok_or(PyError::Index)?;
            let max_len = self.limits.max_len;
            let text = match conversion {
                None | Some("s") => format_spec(v, spec, max_len)?,
                Some("r") => format_spec(&Value::Str(Rc::from(repr(v).as_str())), spec, max_len)?,
                Some(other) => {
                    return Err(PyError::Unsupported(format!("the conversion !{other}")));
                }
            };
            out.push_str(&text);
            if out.len() > self.limits.max_len.saturating_mul(4) {
                return Err(PyError::Memory("a formatted string too long".into()));
            }
        }
        Ok(out)
    }

    /// Strings as a list, each accounted for.
    fn str_list(&mut self, pieces: Vec<String>) -> EResult<Value> {
        let mut items = Vec::with_capacity(pieces.len());
        for p in pieces {
            items.push(self.string(p)?);
        }
        self.list(items)
    }

    /// A set of `items` (unhashable ones refused): sorted by [`set_order`], the first of
    /// equal elements kept.
    pub(super) fn make_set(&mut self, items: Vec<Value>) -> EResult<Value> {
        for v in &items {
            check_hashable(v)?;
        }
        self.tick(items.len() as u64 * 2)?;
        let order = merge_sort(
            items.len(),
            &mut |i, j| match (items.get(i), items.get(j)) {
                (Some(a), Some(b)) => Ok(set_order(a, b)),
                _ => Ok(std::cmp::Ordering::Equal),
            },
        )?;
        let mut out: Vec<Value> = Vec::with_capacity(items.len());
        for i in order {
            let Some(v) = items.get(i) else { continue };
            if out
                .last()
                .is_some_and(|last| set_order(last, v) == std::cmp::Ordering::Equal)
            {
                continue;
            }
            out.push(v.clone());
        }
        Ok(Value::Set(self.seq(out)?))
    }

    /// `a | b`, `a & b`, `a - b`, `a ^ b` of two sets (merges of sorted elements).
    pub(super) fn set_op(&mut self, op: BinOp, a: &Seq, b: &Seq) -> EResult<Value> {
        use std::cmp::Ordering::{Equal, Greater, Less};
        self.tick((a.items.len() + b.items.len()) as u64 / 4 + 1)?;
        let (mut i, mut j) = (0usize, 0usize);
        let mut out = Vec::new();
        loop {
            let (x, y) = (a.items.get(i), b.items.get(j));
            let ord = match (x, y) {
                (None, None) => break,
                (Some(_), None) => Less,
                (None, Some(_)) => Greater,
                (Some(x), Some(y)) => set_order(x, y),
            };
            // Union: all; intersection: in both; difference: only in `a`; symmetric
            // difference: in one only.
            let keep = matches!(
                (op, ord),
                (BinOp::BitOr, _)
                    | (BinOp::BitAnd, Equal)
                    | (BinOp::Sub | BinOp::BitXor, Less)
                    | (BinOp::BitXor, Greater)
            );
            let picked = if ord == Greater { y } else { x };
            if keep {
                if let Some(v) = picked {
                    out.push(v.clone());
                }
            }
            if ord != Greater {
                i += 1;
            }
            if ord != Less {
                j += 1;
            }
        }
        Ok(Value::Set(self.seq(out)?))
    }

    /// The set of an iterable's elements (a set as it is).
    fn set_of(&mut self, v: &Value) -> EResult<Rc<Seq>> {
        if let Value::Set(s) = v {
            return Ok(s.clone());
        }
        let items = self.items(v)?;
        match self.make_set(items)? {
            Value::Set(s) => Ok(s),
            _ => Err(PyError::Internal("a set that is not one".into())),
        }
    }

    /// A method of a set that does not change it.
    fn set_method(&mut self, s: &Rc<Seq>, method: &str, argv: &[Value]) -> EResult<Value> {
        let op = match method {
            "union" => BinOp::BitOr,
            "intersection" => BinOp::BitAnd,
            "difference" => BinOp::Sub,
            "symmetric_difference" => BinOp::BitXor,
            "copy" => return Ok(Value::Set(self.seq(s.items.clone())?)),
            "issubset" | "issuperset" | "isdisjoint" => {
                let other = self.set_of(one_arg(argv)?)?;
                self.tick((s.items.len() + other.items.len()) as u64 / 4)?;
                let within = |x: &Seq, y: &Seq| x.items.iter().all(|v| set_contains(y, v));
                return Ok(Value::Bool(match method {
                    "issubset" => within(s, &other),
                    "issuperset" => within(&other, s),
                    _ => !s.items.iter().any(|v| set_contains(&other, v)),
                }));
            }
            _ => return Err(PyError::Unsupported(format!("method `{method}` of a set"))),
        };
        if op == BinOp::BitXor && argv.len() != 1 {
            return Err(PyError::Type(
                "symmetric_difference() takes 1 argument".into(),
            ));
        }
        let mut acc = Value::Set(s.clone());
        for a in argv {
            let other = self.set_of(a)?;
            if let Value::Set(cur) = &acc {
                let cur = cur.clone();
                acc = self.set_op(op, &cur, &other)?;
            }
        }
        if argv.is_empty() {
            acc = Value::Set(self.seq(s.items.clone())?);
        }
        Ok(acc)
    }

    /// `items` sorted (stably, as Python sorts) by `key` of each, or by themselves.
    pub(super) fn sort_values(
        &mut self,
        items: Vec<Value>,
        key: Option<&Value>,
        reverse: bool,
    ) -> EResult<Vec<Value>> {
        self.tick(items.len() as u64 * 4)?;
        let keys = match key {
            Some(k) if !matches!(k, Value::None) => items
                .iter()
                .map(|v| self.call_value(k, vec![v.clone()], Vec::new()))
                .collect::<EResult<Vec<_>>>()?,
            _ => items.clone(),
        };
        let order = merge_sort(items.len(), &mut |i, j| match (keys.get(i), keys.get(j)) {
            (Some(a), Some(b)) => order(a, b).map(|o| if reverse { o.reverse() } else { o }),
            _ => Ok(std::cmp::Ordering::Equal),
        })?;
        Ok(order
            .into_iter()
            .filter_map(|i| items.get(i).cloned())
            .collect())
    }

    /// A mutating method on the variable `name`, in place.
    pub(super) fn mutate(
        &mut self,
        name: &str,
        method: &str,
        argv: Vec<Value>,
        kw: Vec<(String, Value)>,
    ) -> EResult<Value> {
        if method == "sort" {
            return self.sort_in_place(name, argv, kw);
        }
        if matches!(self.lookup(name)?, Value::Set(_)) {
            return self.mutate_set(name, method, argv);
        }
        let counter =
            matches!(self.lookup(name)?, Value::Dict(d) if matches!(d.kind, Kind::Counter));
        if counter && matches!(method, "update" | "subtract") {
            return self.update_counter(name, method, argv, kw);
        }
        let max_len = self.limits.max_len;
        let max_depth = self.limits.max_value_depth;
        let extra = match (method, argv.first()) {
            ("extend" | "extendleft", Some(v)) => self.items(v)?,
            ("setdefault", Some(k)) => {
                check_hashable(k)?;
                let default = argv.get(1).cloned().unwrap_or(Value::None);
                vec![Value::Tuple(self.seq(vec![k.clone(), default])?)]
            }
            ("update", Some(Value::Dict(d))) => d.items.clone(),
            ("update", Some(other)) => {
                // Pairs: `d.update([("a", 1)])`.
                let mut pairs = Vec::new();
                for p in self.items(other)? {
                    match &p {
                        Value::Tuple(s) | Value::List(s) if s.items.len() == 2 => {
                            pairs.push(Value::Tuple(self.seq(s.items.clone())?));
                        }
                        _ => {
                            return Err(PyError::Type(
                                "dict.update() needs pairs of a key and a value".into(),
                            ));
                        }
                    }
                }
                pairs
            }
            _ => Vec::new(),
        };
        let arg_depth = argv.iter().map(Value::depth).max().unwrap_or(0);
        let mut copied = 0usize;
        // Elements moved within a deque (a step per 64: Python's deque moves none).
        let mut shifted = 0usize;
        let slot = self.var_mut(name)?;
        let out = match slot {
            Value::List(s) => {
                if Rc::strong_count(s) > 1 {
                    copied = s.items.len();
                }
                let seq = Rc::make_mut(s);
                // `Some(maxlen)` for a deque.
                let deque = match seq.kind {
                    Kind::Deque(maxlen) => Some(maxlen),
                    _ => None,
                };
                let maxlen = deque.flatten();
                if deque.is_none()
                    && matches!(method, "appendleft" | "extendleft" | "popleft" | "rotate")
                {
                    return Err(PyError::Unsupported(format!("list.{method}")));
                }
                let new_depth = seq
                    .depth
                    .max(1 + arg_depth)
                    .max(1 + extra.iter().map(Value::depth).max().unwrap_or(0));
                if new_depth > max_depth {
                    return Err(PyError::Memory("values nested too deeply".into()));
                }
                seq.depth = new_depth;
                let grow = |seq: &Seq, n: usize| -> EResult<()> {
                    // A deque with a `maxlen` drops elements at the other end.
                    if (seq.items.len() + n).min(maxlen.unwrap_or(usize::MAX)) > max_len {
                        return Err(PyError::Memory(format!("a list longer than {max_len}")));
                    }
                    Ok(())
                };
                let out = match method {
                    "append" => {
                        grow(seq, 1)?;
                        seq.items.push(one_arg(&argv)?.clone());
                        Value::None
                    }
                    "appendleft" => {
                        grow(seq, 1)?;
                        shifted += seq.items.len();
                        seq.items.insert(0, one_arg(&argv)?.clone());
                        Value::None
                    }
                    "extend" => {
                        grow(seq, extra.len())?;
                        copied += extra.len();
                        seq.items.extend(extra);
                        Value::None
                    }
                    "extendleft" => {
                        // One by one at the front: in reverse order.
                        grow(seq, extra.len())?;
                        copied += extra.len();
                        shifted += seq.items.len();
                        seq.items.splice(0..0, extra.into_iter().rev());
                        Value::None
                    }
                    "popleft" => {
                        if seq.items.is_empty() {
                            return Err(PyError::Index);
                        }
                        shifted += seq.items.len();
                        seq.items.remove(0)
                    }
                    "rotate" => {
                        let n = int_arg(argv.first(), "rotate()")?.unwrap_or(1);
                        let len = seq.items.len();
                        if len > 0 {
                            let k = usize::try_from(n.rem_euclid(len as i128)).unwrap_or(0);
                            seq.items.rotate_right(k);
                            shifted += len;
                        }
                        Value::None
                    }
                    "pop" if deque.is_some() && !argv.is_empty() => {
                        return Err(PyError::Type("pop() takes no arguments".into()));
                    }
                    "insert" if maxlen.is_some_and(|m| seq.items.len() >= m) => {
                        return Err(PyError::Index);
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
                };
                // A full deque drops what is over its `maxlen` at the other end.
                if let Some(m) = maxlen {
                    if matches!(method, "appendleft" | "extendleft") {
                        seq.items.truncate(m);
                    } else if seq.items.len() > m {
                        let over = seq.items.len() - m;
                        seq.items.drain(..over);
                        shifted += seq.items.len();
                    }
                }
                out
            }
            Value::Dict(s) => match method {
                "update" | "clear" | "pop" | "popitem" | "move_to_end" | "setdefault" => {
                    if Rc::strong_count(s) > 1 {
                        copied = s.items.len();
                    }
                    let seq = Rc::make_mut(s);
                    let ordered = matches!(seq.kind, Kind::OrderedDict);
                    let position = |seq: &Seq, key: &Value| {
                        seq.items
                            .iter()
                            .position(|p| pair(p).is_some_and(|(k, _)| keys_equal(k, key)))
                    };
                    // `last=` of an OrderedDict's `popitem` and `move_to_end`.
                    let last = |at: usize| match keyword_arg(&argv, &kw, at, "last") {
                        Some(_) if !ordered => Err(PyError::Type(format!(
                            "dict.{method}() takes no `last` argument"
                        ))),
                        v => Ok(v.is_none_or(Value::truthy)),
                    };
                    match method {
                        "clear" => {
                            seq.items.clear();
                            Value::None
                        }
                        "popitem" => {
                            let i = if last(0)? {
                                seq.items.len().checked_sub(1)
                            } else {
                                Some(0)
                            };
                            match i.filter(|i| *i < seq.items.len()) {
                                Some(i) => {
                                    copied += seq.items.len() - i;
                                    seq.items.remove(i)
                                }
                                None => return Err(PyError::Index),
                            }
                        }
                        "move_to_end" if ordered => {
                            let key = argv
                                .first()
                                .ok_or_else(|| PyError::Type("move_to_end() needs a key".into()))?;
                            let i = position(seq, key).ok_or(PyError::Index)?;
                            let entry = seq.items.remove(i);
                            if last(1)? {
                                seq.items.push(entry);
                            } else {
                                seq.items.insert(0, entry);
                            }
                            copied += seq.items.len();
                            Value::None
                        }
                        "move_to_end" => {
                            return Err(PyError::Unsupported("dict.move_to_end".into()));
                        }
                        "setdefault" => {
                            let Some((key, default)) = extra.first().and_then(pair) else {
                                return Err(PyError::Type("setdefault() needs a key".into()));
                            };
                            match position(seq, key)
                                .and_then(|i| seq.items.get(i))
                                .and_then(pair)
                            {
                                Some((_, v)) => v.clone(),
                                None => {
                                    if seq.items.len() >= max_len {
                                        return Err(PyError::Memory("a dict too long".into()));
                                    }
                                    let default = default.clone();
                                    seq.depth = seq.depth.max(arg_depth + 2);
                                    if seq.depth > max_depth {
                                        return Err(PyError::Memory(
                                            "values nested too deeply".into(),
                                        ));
                                    }
                                    seq.items.extend(extra);
                                    default
                                }
                            }
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
        self.tick(shifted as u64 / 64)?;
        Ok(out)
    }

    /// `update` and `subtract` of the Counter variable `name`: a mapping's counts, or one
    /// for each element of an iterable, added or subtracted; then the keyword arguments'.
    fn update_counter(
        &mut self,
        name: &str,
        method: &str,
        argv: Vec<Value>,
        kw: Vec<(String, Value)>,
    ) -> EResult<Value> {
        if argv.len() > 1 {
            return Err(PyError::Type(format!(
                "{method}() takes at most 1 argument, {} given",
                argv.len()
            )));
        }
        let mut deltas = match argv.first() {
            Some(source) => self.count_deltas(source)?,
            None => Vec::new(),
        };
        deltas.extend(
            kw.into_iter()
                .map(|(k, v)| (Value::Str(Rc::from(k.as_str())), v)),
        );
        let op = if method == "update" {
            BinOp::Add
        } else {
            BinOp::Sub
        };
        // Taken out of the variable while it changes, so that nothing is copied.
        let slot = self.var_mut(name)?;
        let Value::Dict(mut d) = std::mem::replace(slot, Value::None) else {
            return Err(PyError::Internal("a Counter that is not a dict".into()));
        };
        let copied = if Rc::strong_count(&d) > 1 {
            d.items.len()
        } else {
            0
        };
        let seq = Rc::make_mut(&mut d);
        let out = self.add_counts(&mut seq.items, deltas, op);
        seq.depth = 1 + seq.items.iter().map(Value::depth).max().unwrap_or(0);
        let too_deep = seq.depth > self.limits.max_value_depth;
        *self.var_mut(name)? = Value::Dict(d);
        out?;
        if too_deep {
            return Err(PyError::Memory("values nested too deeply".into()));
        }
        self.charge(copied)?;
        Ok(Value::None)
    }

    /// What a Counter counts of `source`: a mapping's values, else 1 for each element.
    pub(super) fn count_deltas(&mut self, source: &Value) -> EResult<Vec<(Value, Value)>> {
        Ok(match source {
            Value::None => Vec::new(),
            Value::Dict(d) => d
                .items
                .iter()
                .filter_map(pair)
                .map(|(k, v)| (k.clone(), v.clone()))
                .collect(),
            other => self
                .items(other)?
                .into_iter()
                .map(|k| (k, Value::Int(1)))
                .collect(),
        })
    }

    /// Adds (`op` is `Add`) or subtracts (`Sub`) counts to the entries of a Counter
    /// (a missing key counts 0); new keys go last.
    pub(super) fn add_counts(
        &mut self,
        entries: &mut Vec<Value>,
        deltas: Vec<(Value, Value)>,
        op: BinOp,
    ) -> EResult<()> {
        for (key, n) in deltas {
            check_hashable(&key)?;
            self.tick(entries.len() as u64 / 8 + 1)?;
            let at = entries
                .iter()
                .position(|p| pair(p).is_some_and(|(k, _)| keys_equal(k, &key)));
            let (key, count) = match at.and_then(|i| entries.get(i)).and_then(pair) {
                // The key first added stays (`1` for a later `1.0`).
                Some((k, old)) => (k.clone(), self.binop(op, old.clone(), n)?),
                None if op == BinOp::Add => (key, n),
                None => (key, self.binop(op, Value::Int(0), n)?),
            };
            let entry = Value::Tuple(self.seq(vec![key, count])?);
            match at.and_then(|i| entries.get_mut(i)) {
                Some(slot) => *slot = entry,
                None => {
                    if entries.len() >= self.limits.max_len {
                        return Err(PyError::Memory("a Counter too long".into()));
                    }
                    entries.push(entry);
                }
            }
        }
        Ok(())
    }

    /// `xs.sort(key=..., reverse=...)` on the list variable `name`.
    fn sort_in_place(
        &mut self,
        name: &str,
        argv: Vec<Value>,
        kw: Vec<(String, Value)>,
    ) -> EResult<Value> {
        if !argv.is_empty() {
            return Err(PyError::Type("sort() takes no positional arguments".into()));
        }
        if let Some((k, _)) = kw.iter().find(|(k, _)| k != "key" && k != "reverse") {
            return Err(PyError::Type(format!("sort() has no argument `{k}`")));
        }
        let current = self.lookup(name)?;
        let Value::List(s) = &current else {
            return Err(PyError::Unsupported(format!(
                "method `sort` of a {}",
                current.type_name()
            )));
        };
        if matches!(s.kind, Kind::Deque(_)) {
            return Err(PyError::Unsupported("method `sort` of a deque".into()));
        }
        let key = kw.iter().find(|(k, _)| k == "key").map(|(_, v)| v);
        let reverse = kw.iter().any(|(k, v)| k == "reverse" && v.truthy());
        let depth = s.depth;
        let sorted = self.sort_values(s.items.clone(), key, reverse)?;
        drop(current);
        let len = sorted.len();
        let slot = self.var_mut(name)?;
        *slot = Value::List(Rc::new(Seq {
            items: sorted,
            depth,
            kind: Kind::Plain,
        }));
        self.charge(len).map(|()| Value::None)
    }

    /// A mutating method on the set variable `name`, in place.
    fn mutate_set(&mut self, name: &str, method: &str, argv: Vec<Value>) -> EResult<Value> {
        let extra: Vec<Value> = match method {
            "add" | "remove" | "discard" => vec![one_arg(&argv)?.clone()],
            "update" => {
                let mut all = Vec::new();
                for a in &argv {
                    all.extend(self.items(a)?);
                }
                all
            }
            "pop" | "clear" => {
                if !argv.is_empty() {
                    return Err(PyError::Type(format!("set.{method}() takes no arguments")));
                }
                Vec::new()
            }
            _ => return Err(PyError::Unsupported(format!("method `{method}` of a set"))),
        };
        for v in &extra {
            check_hashable(v)?;
        }
        let max_len = self.limits.max_len;
        let max_depth = self.limits.max_value_depth;
        let slot = self.var_mut(name)?;
        let Value::Set(s) = slot else {
            return Err(PyError::Internal("a set that is not one".into()));
        };
        let copied = if Rc::strong_count(s) > 1 {
            s.items.len()
        } else {
            0
        };
        let seq = Rc::make_mut(s);
        let mut shifted = 0usize;
        let mut added = 0usize;
        let out = match method {
            "add" | "update" => {
                for v in extra {
                    let Err(pos) = seq.items.binary_search_by(|x| set_order(x, &v)) else {
                        continue;
                    };
                    if seq.items.len() >= max_len {
                        return Err(PyError::Memory(format!("a set larger than {max_len}")));
                    }
                    if v.depth() + 1 > max_depth {
                        return Err(PyError::Memory("values nested too deeply".into()));
                    }
                    seq.depth = seq.depth.max(v.depth() + 1);
                    shifted += seq.items.len() - pos;
                    added += 1;
                    seq.items.insert(pos, v);
                }
                Value::None
            }
            "remove" | "discard" => {
                let found = extra
                    .first()
                    .and_then(|v| seq.items.binary_search_by(|x| set_order(x, v)).ok());
                match found {
                    Some(pos) => {
                        shifted += seq.items.len() - pos;
                        seq.items.remove(pos);
                    }
                    None if method == "remove" => return Err(PyError::Index),
                    None => {}
                }
                Value::None
            }
            "pop" => {
                if seq.items.is_empty() {
                    return Err(PyError::Index);
                }
                shifted += seq.items.len();
                seq.items.remove(0)
            }
            _ => {
                seq.items.clear();
                Value::None
            }
        };
        self.alloc(1)?;
        self.charge(copied + added)?;
        self.tick(shifted as u64 / 16)?;
        Ok(out)
    }
}

/// Python's `str.isspace` for one character (Unicode white space and the separators
/// `\x1c`-`\x1f`).
fn py_space(c: char) -> bool {
    c.is_whitespace() || ('\u{1c}'..='\u{1f}').contains(&c)
}

/// The line boundaries of `str.splitlines`.
fn line_break(c: char) -> bool {
    matches!(
        c,
        '\n' | '\r'
            | '\u{b}'
            | '\u{c}'
            | '\u{1c}'
            | '\u{1d}'
            | '\u{1e}'
            | '\u{85}'
            | '\u{2028}'
            | '\u{2029}'
    )
}

/// `str.split()` with no separator: runs of white space separate, at most `limit`
/// splits, the rest (from its first non-space character) is the last piece.
fn split_on_space(chars: &[char], limit: usize) -> Vec<String> {
    let n = chars.len();
    let space = |i: usize| chars.get(i).is_some_and(|c| py_space(*c));
    let piece = |a: usize, b: usize| -> String { chars.get(a..b).unwrap_or(&[]).iter().collect() };
    let mut out = Vec::new();
    let mut left = limit;
    let mut i = 0usize;
    while left > 0 {
        while i < n && space(i) {
            i += 1;
        }
        if i == n {
            break;
        }
        let start = i;
        while i < n && !space(i) {
            i += 1;
        }
        out.push(piece(start, i));
        left -= 1;
    }
    while i < n && space(i) {
        i += 1;
    }
    if i < n {
        out.push(piece(i, n));
    }
    out
}

/// The characters `s[start:end]` as `find`, `count` and `startswith` see them (Python's
/// index adjustment), with the index they start at; `None` when `start` is past `end`.
fn window(chars: &[char], start: Option<i128>, end: Option<i128>) -> Option<(String, usize)> {
    let len = chars.len() as i128;
    let adjust = |v: i128| if v < 0 { (v + len).max(0) } else { v };
    let end = end.map_or(len, adjust).min(len);
    let start = start.map_or(0, adjust);
    if start > end {
        return None;
    }
    let (start, end) = (usize::try_from(start).ok()?, usize::try_from(end).ok()?);
    let text = chars.get(start..end)?.iter().collect();
    Some((text, start))
}

/// The character index of the byte offset `byte` of `text`.
fn char_offset(text: &str, byte: usize) -> usize {
    text.char_indices().take_while(|(b, _)| *b < byte).count()
}

/// An optional int argument (`None` also means absent).
fn int_arg(v: Option<&Value>, what: &str) -> EResult<Option<i128>> {
    match v {
        None | Some(Value::None) => Ok(None),
        Some(v) => v
            .as_int()
            .map(Some)
            .ok_or_else(|| PyError::Type(format!("{what} must be an int, not {}", v.type_name()))),
    }
}

/// An optional int argument that may not be `None`.
fn strict_int_arg(v: Option<&Value>, what: &str) -> EResult<Option<i128>> {
    match v {
        Some(Value::None) => Err(PyError::Type(format!("{what} must be an int, not None"))),
        other => int_arg(other, what),
    }
}

/// Positional argument `i`, else the keyword argument `name`.
fn keyword_arg<'v>(
    argv: &'v [Value],
    kw: &'v [(String, Value)],
    i: usize,
    name: &str,
) -> Option<&'v Value> {
    argv.get(i)
        .or_else(|| kw.iter().find(|(k, _)| k == name).map(|(_, v)| v))
}
