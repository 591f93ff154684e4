//! Values as text: `str` and `repr`, the repr of floats, and Python's format specs.

use super::PyError;
use super::interp::EResult;
use super::values::{Kind, Seq, Value, is_class, most_common_order, pair};

/// A float as Python's `repr` shows it: the shortest digits that read back as it,
/// in fixed point from 1e-4 to 1e16 (with at least one decimal), else as `1.5e+16`.
fn float_text(f: f64) -> String {
    if f.is_nan() {
        return "nan".into();
    }
    if f.is_infinite() {
        return if f > 0.0 { "inf" } else { "-inf" }.into();
    }
    if f == 0.0 {
        return if f.is_sign_negative() { "-0.0" } else { "0.0" }.into();
    }
    let sign = if f < 0.0 { "-" } else { "" };
    let sci = format!("{:e}", f.abs());
    let (mantissa, exp) = sci.split_once('e').unwrap_or((sci.as_str(), "0"));
    let exp: i32 = exp.parse().unwrap_or(0);
    let digits: String = mantissa.chars().filter(|c| *c != '.').collect();
    let body = if (-4..16).contains(&exp) {
        match usize::try_from(exp) {
            Ok(e) => {
                let int: String = digits
                    .chars()
                    .chain(std::iter::repeat('0'))
                    .take(e + 1)
                    .collect();
                let frac: String = digits.chars().skip(e + 1).collect();
                let frac = if frac.is_empty() {
                    "0".to_string()
                } else {
                    frac
                };
                format!("{int}.{frac}")
            }
            Err(_) => format!("0.{}{digits}", "0".repeat(exp.unsigned_abs() as usize - 1)),
        }
    } else {
        let sign = if exp < 0 { '-' } else { '+' };
        format!("{mantissa}e{sign}{:02}", exp.unsigned_abs())
    };
    format!("{sign}{body}")
}

/// `str(v)`.
pub(super) fn display(v: &Value) -> String {
    match v {
        Value::None => "None".into(),
        Value::Bool(b) => if *b { "True" } else { "False" }.into(),
        Value::Int(i) => i.to_string(),
        Value::Float(f) => float_text(*f),
        Value::Str(s) => s.to_string(),
        Value::List(s) => {
            let items = format!(
                "[{}]",
                s.items.iter().map(repr).collect::<Vec<_>>().join(", ")
            );
            match s.kind {
                Kind::Deque(Some(m)) => format!("deque({items}, maxlen={m})"),
                Kind::Deque(None) => format!("deque({items})"),
                _ => items,
            }
        }
        Value::Tuple(s) if s.items.len() == 1 => {
            format!("({},)", s.items.iter().map(repr).collect::<String>())
        }
        Value::Tuple(s) => format!(
            "({})",
            s.items.iter().map(repr).collect::<Vec<_>>().join(", ")
        ),
        Value::Dict(s) => dict_text(s),
        Value::Range(a, b, 1) => format!("range({a}, {b})"),
        Value::Range(a, b, s) => format!("range({a}, {b}, {s})"),
        Value::Set(s) if s.items.is_empty() => "set()".into(),
        Value::Set(s) => format!(
            "{{{}}}",
            s.items.iter().map(repr).collect::<Vec<_>>().join(", ")
        ),
        Value::Func(f) => format!("<function {}>", f.def.name),
        Value::Method(m) => format!("<method {}>", m.name),
        Value::Builtin(b) if is_class(b) => format!("<class '{b}'>"),
        Value::Builtin(b) => format!("<built-in function {b}>"),
        Value::Module(m) => format!("<module '{m}'>"),
    }
}

/// A dict as Python 3.11 shows it: a Counter's entries by count (largest first, as
/// `most_common()` orders them, or as they are when the counts do not compare), a
/// defaultdict with its factory, an OrderedDict as a list of pairs.
fn dict_text(s: &Seq) -> String {
    let entries = |order: &mut dyn Iterator<Item = &Value>| -> String {
        let texts: Vec<String> = order
            .filter_map(pair)
            .map(|(k, v)| format!("{}: {}", repr(k), repr(v)))
            .collect();
        format!("{{{}}}", texts.join(", "))
    };
    match &s.kind {
        Kind::Counter if s.items.is_empty() => "Counter()".into(),
        Kind::Counter => {
            let order = most_common_order(s).unwrap_or_else(|_| (0..s.items.len()).collect());
            let text = entries(&mut order.iter().filter_map(|i| s.items.get(*i)));
            format!("Counter({text})")
        }
        Kind::DefaultDict(f) => {
            format!("defaultdict({}, {})", repr(f), entries(&mut s.items.iter()))
        }
        Kind::OrderedDict if s.items.is_empty() => "OrderedDict()".into(),
        Kind::OrderedDict => {
            let pairs: Vec<String> = s.items.iter().map(repr).collect();
            format!("OrderedDict([{}])", pairs.join(", "))
        }
        _ => entries(&mut s.items.iter()),
    }
}

pub(super) fn repr(v: &Value) -> String {
    match v {
        Value::Str(s) => str_repr(s),
        other => display(other),
    }
}

/// A string as Python shows it: in single quotes unless it holds one and no double
/// quote, with escapes for backslashes, the quote and control characters.
fn str_repr(s: &str) -> String {
    let quote = if s.contains('\'') && !s.contains('"') {
        '"'
    } else {
        '\''
    };
    let mut out = String::new();
    out.push(quote);
    for c in s.chars() {
        match c {
            '\\' => out.push_str("\\\\"),
            '\n' => out.push_str("\\n"),
            '\r' => out.push_str("\\r"),
            '\t' => out.push_str("\\t"),
            c if c == quote => {
                out.push('\\');
                out.push(c);
            }
            c if c.is_control() || (c.is_whitespace() && c != ' ') => {
                let code = u32::from(c);
                if code < 0x100 {
                    out.push_str(&format!("\\x{code:02x}"));
                } else {
                    out.push_str(&format!("\\u{code:04x}"));
                }
            }
            c => out.push(c),
        }
    }
    out.push(quote);
    out
}

/// `format(v, spec)`: Python's format mini-language,
/// `[[fill]align][sign][#][0][width][,|_][.precision][type]` with the types
/// `s d n b o x X c e E f F g G %` and none (`n` as `d` and `g`: no locale). A width or precision over `max_len` is
/// refused before anything is built.
pub(super) fn format_spec(v: &Value, spec: &str, max_len: usize) -> EResult<String> {
    if spec.is_empty() {
        return Ok(display(v));
    }
    let cs: Vec<char> = spec.chars().collect();
    let at = |k: usize| cs.get(k).copied();
    let is_align = |c: Option<char>| matches!(c, Some('<' | '>' | '^' | '='));
    let mut i = 0usize;
    let (mut fill, mut align, mut explicit_fill) = (' ', None, false);
    if is_align(at(1)) {
        fill = at(0).unwrap_or(' ');
        align = at(1);
        explicit_fill = true;
        i = 2;
    } else if is_align(at(0)) {
        align = at(0);
        i = 1;
    }
    let sign = match at(i) {
        Some(c @ ('+' | '-' | ' ')) => {
            i += 1;
            Some(c)
        }
        _ => None,
    };
    let alt = at(i) == Some('#');
    if alt {
        i += 1;
    }
    if at(i) == Some('0') {
        // Zero padding after the sign, unless a fill or an alignment says otherwise.
        i += 1;
        if !explicit_fill {
            fill = '0';
        }
        if align.is_none() {
            align = Some('=');
        }
    }
    let number = |i: &mut usize| -> Option<usize> {
        let mut n: Option<usize> = None;
        while let Some(d) = at(*i).and_then(|c| c.to_digit(10)) {
            n = Some(n.unwrap_or(0).saturating_mul(10).saturating_add(d as usize));
            *i += 1;
        }
        n
    };
    let width = number(&mut i).unwrap_or(0);
    let group = match at(i) {
        Some(c @ (',' | '_')) => {
            i += 1;
            Some(c)
        }
        _ => None,
    };
    let precision = if at(i) == Some('.') {
        i += 1;
        Some(
            number(&mut i)
                .ok_or_else(|| PyError::Value("format specifier missing precision".into()))?,
        )
    } else {
        None
    };
    let ty = at(i);
    if i + usize::from(ty.is_some()) < cs.len() {
        return Err(PyError::Value(format!("invalid format specifier {spec:?}")));
    }
    if ty == Some('n') && group.is_some() {
        return Err(PyError::Value("cannot specify ',' or '_' with 'n'".into()));
    }
    if width > max_len || precision.is_some_and(|p| p > max_len) {
        return Err(PyError::Memory(format!(
            "a format of {} characters",
            width.max(precision.unwrap_or(0))
        )));
    }
    // The sign, a prefix (`0x`), then the digits (grouped as `group` says) and the rest.
    let (negative, prefix, digits, rest, grouping) = match v {
        Value::Str(s) => {
            if !matches!(ty, None | Some('s')) {
                return Err(PyError::Value(format!(
                    "unknown format code {:?} for a str",
                    ty.unwrap_or(' ')
                )));
            }
            if sign.is_some() || alt || group.is_some() || align == Some('=') {
                return Err(PyError::Value(format!(
                    "the format specifier {spec:?} is not allowed for a str"
                )));
            }
            let body: String = match precision {
                Some(p) => s.chars().take(p).collect(),
                None => s.to_string(),
            };
            (false, "", body, String::new(), None)
        }
        Value::Int(_) | Value::Bool(_)
            if matches!(ty, None | Some('d' | 'n' | 'b' | 'o' | 'x' | 'X' | 'c')) =>
        {
            let n = v.as_int().unwrap_or(0);
            if precision.is_some() {
                return Err(PyError::Value(
                    "precision not allowed in integer format specifier".into(),
                ));
            }
            let m = n.unsigned_abs();
            let (prefix, digits, every) = match ty {
                Some('b') => ("0b", format!("{m:b}"), 4),
                Some('o') => ("0o", format!("{m:o}"), 4),
                Some('x') => ("0x", format!("{m:x}"), 4),
                Some('X') => ("0X", format!("{m:X}"), 4),
                Some('c') => {
                    if sign.is_some() || alt || group.is_some() {
                        return Err(PyError::Value(format!(
                            "the format specifier {spec:?} is not allowed with 'c'"
                        )));
                    }
                    let c = u32::try_from(n)
                        .ok()
                        .and_then(char::from_u32)
                        .ok_or_else(|| PyError::Value(format!("%c arg {n} not in range")))?;
                    ("", c.to_string(), 0)
                }
                _ => ("", m.to_string(), 3),
            };
            if group == Some(',') && every == 4 {
                return Err(PyError::Value(format!(
                    "cannot specify ',' with {:?}",
                    ty.unwrap_or(' ')
                )));
            }
            let prefix = if alt { prefix } else { "" };
            let grouping = group.filter(|_| every > 0).map(|g| (g, every));
            (n < 0, prefix, digits, String::new(), grouping)
        }
        Value::Int(_) | Value::Bool(_) | Value::Float(_) => {
            let f = v.as_f64().unwrap_or(0.0);
            if let Some(c @ ('d' | 'b' | 'o' | 'x' | 'X' | 'c' | 's')) = ty {
                return Err(PyError::Value(format!(
                    "unknown format code {c:?} for a float"
                )));
            }
            let body = float_body(f.abs(), ty, precision, alt)?;
            let int_len = body.chars().take_while(char::is_ascii_digit).count();
            let digits: String = body.chars().take(int_len).collect();
            let rest: String = body.chars().skip(int_len).collect();
            let negative = f.is_sign_negative() && !f.is_nan();
            (negative, "", digits, rest, group.map(|g| (g, 3)))
        }
        other => {
            return Err(PyError::Type(format!(
                "unsupported format string passed to {}.__format__",
                other.type_name()
            )));
        }
    };
    let sign_text = match (negative, sign) {
        (true, _) => "-",
        (false, Some('+')) => "+",
        (false, Some(' ')) => " ",
        _ => "",
    };
    let body = match grouping {
        Some((sep, every)) => {
            let mut digits = digits;
            if fill == '0' && align == Some('=') {
                // Zero padding is grouped too: as many digits as reach the width.
                let other = sign_text.len() + prefix.len() + rest.chars().count();
                let grouped = |n: usize| n + n.saturating_sub(1) / every;
                let mut n = digits.chars().count();
                while grouped(n) + other < width {
                    n += 1;
                }
                digits = "0".repeat(n - digits.chars().count()) + &digits;
            }
            group_digits(&digits, sep, every) + &rest
        }
        None => digits + &rest,
    };
    let len = sign_text.len() + prefix.len() + body.chars().count();
    let pad = width.saturating_sub(len);
    let fills = |n: usize| -> String { std::iter::repeat_n(fill, n).collect() };
    let align = align.unwrap_or(if matches!(v, Value::Str(_)) { '<' } else { '>' });
    Ok(match align {
        '<' => format!("{sign_text}{prefix}{body}{}", fills(pad)),
        '^' => format!(
            "{}{sign_text}{prefix}{body}{}",
            fills(pad / 2),
            fills(pad - pad / 2)
        ),
        '=' => format!("{sign_text}{prefix}{}{body}", fills(pad)),
        _ => format!("{}{sign_text}{prefix}{body}", fills(pad)),
    })
}

/// `digits` with `sep` between groups of `every`, from the right.
fn group_digits(digits: &str, sep: char, every: usize) -> String {
    let n = digits.chars().count();
    let mut out = String::new();
    for (k, c) in digits.chars().enumerate() {
        if k > 0 && (n - k) % every == 0 {
            out.push(sep);
        }
        out.push(c);
    }
    out
}

/// A non-negative float (or nan) in the format type `ty` (`e f g %`, upper case, none).
fn float_body(f: f64, ty: Option<char>, precision: Option<usize>, alt: bool) -> EResult<String> {
    let upper = matches!(ty, Some('E' | 'F' | 'G'));
    if !f.is_finite() {
        let word = match (f.is_nan(), upper) {
            (true, false) => "nan",
            (true, true) => "NAN",
            (false, false) => "inf",
            (false, true) => "INF",
        };
        let percent = if ty == Some('%') { "%" } else { "" };
        return Ok(format!("{word}{percent}"));
    }
    let point = |s: String, p: usize| if alt && p == 0 { s + "." } else { s };
    Ok(match ty {
        Some('f' | 'F') => {
            let p = precision.unwrap_or(6);
            point(format!("{f:.p$}"), p)
        }
        Some('%') => {
            let p = precision.unwrap_or(6);
            point(format!("{:.p$}", f * 100.0), p) + "%"
        }
        Some('e' | 'E') => scientific(f, precision.unwrap_or(6), upper, alt),
        // `n` is `g` (no locale here).
        Some('g' | 'G' | 'n') => general(f, precision.unwrap_or(6), upper, alt, false),
        None => match precision {
            // `#` keeps a point: `1.e-07`.
            None if alt && !float_text(f).contains('.') => {
                let text = float_text(f);
                match text.split_once('e') {
                    Some((m, e)) => format!("{m}.e{e}"),
                    None => text + ".",
                }
            }
            None => float_text(f),
            Some(p) => general(f, p, false, alt, true),
        },
        Some(other) => {
            return Err(PyError::Value(format!(
                "unknown format code {other:?} for a number"
            )));
        }
    })
}

/// `f` as `d.ddde+XX` with `p` decimals.
fn scientific(f: f64, p: usize, upper: bool, alt: bool) -> String {
    let s = format!("{f:.p$e}");
    let (mantissa, exp) = s.split_once('e').unwrap_or((s.as_str(), "0"));
    let exp: i32 = exp.parse().unwrap_or(0);
    let dot = if alt && p == 0 { "." } else { "" };
    let e = if upper { 'E' } else { 'e' };
    let sign = if exp < 0 { '-' } else { '+' };
    format!("{mantissa}{dot}{e}{sign}{:02}", exp.unsigned_abs())
}

/// The `g` format with `p` significant digits: fixed point unless the exponent is below
/// -4 or from `p` on, trailing zeros removed (unless `#`). With `repr_like` (a float
/// formatted with a precision and no type), scientific from `p - 1` on and fixed point
/// keeps a `.0`.
fn general(f: f64, p: usize, upper: bool, alt: bool, repr_like: bool) -> String {
    let p = p.max(1);
    let exp: i64 = if f == 0.0 {
        0
    } else {
        let s = format!("{:.*e}", p - 1, f);
        s.split_once('e')
            .and_then(|(_, e)| e.parse().ok())
            .unwrap_or(0)
    };
    let limit = if repr_like { p as i64 - 1 } else { p as i64 };
    let trim = |s: &str| -> String {
        if alt || !s.contains('.') {
            s.to_string()
        } else {
            s.trim_end_matches('0').trim_end_matches('.').to_string()
        }
    };
    if exp >= -4 && exp < limit {
        let decimals = usize::try_from(p as i64 - 1 - exp).unwrap_or(0);
        let mut s = trim(&format!("{f:.decimals$}"));
        if alt && !s.contains('.') {
            s.push('.');
        } else if repr_like && !s.contains('.') {
            s.push_str(".0");
        }
        s
    } else {
        let s = scientific(f, p - 1, upper, alt);
        match s.split_once(['e', 'E']) {
            Some((m, e)) => format!("{}{}{e}", trim(m), if upper { 'E' } else { 'e' }),
            None => s,
        }
    }
}
