//! Structured output: a [`ResponseFormat`] constrains what a completion may be (any JSON
//! object, JSON matching a schema, or text matching a GBNF grammar).
//!
//! Every format is checked and bounded once, at the edge ([`ResponseFormat::validate`],
//! called by [`ChatRequest::validate`](crate::ChatRequest::validate)): sizes, nesting and
//! the shape of the schema keywords a backend turns into a grammar. Backends then honour
//! it (the native backend with llama.cpp's grammar sampler, Ollama with `format`,
//! OpenAI-compatible servers with `response_format`) or reject it with
//! [`BackendError::Unsupported`](crate::BackendError::Unsupported); see
//! [`FormatSupport`].

use serde::{Deserialize, Serialize};
use serde_json::Value;

/// Largest JSON schema, in bytes of its compact serialisation.
pub const MAX_SCHEMA_BYTES: usize = 64 * 1024;
/// Deepest nesting of JSON values (objects and arrays) inside a schema.
pub const MAX_SCHEMA_DEPTH: usize = 32;
/// Largest value of a count keyword (`minLength`, `maxItems`, ...) of a schema.
pub const MAX_SCHEMA_COUNT: u64 = 1024;
/// Largest GBNF grammar, in bytes.
pub const MAX_GRAMMAR_BYTES: usize = 32 * 1024;
/// Deepest nesting of parentheses in a GBNF grammar.
pub const MAX_GRAMMAR_NESTING: usize = 64;

/// What a completion must look like.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
#[serde(tag = "type", rename_all = "snake_case")]
pub enum ResponseFormat {
    /// Any JSON object.
    JsonObject,
    /// JSON matching a JSON Schema (a subset: `type`, `properties`, `required`,
    /// `additionalProperties`, `items`, `enum`, `const`, `anyOf` / `oneOf` / `allOf`,
    /// local `$ref`s, length and count bounds, `minimum` / `maximum`, `pattern`).
    JsonSchema { schema: Value },
    /// Text matching a GBNF grammar (llama.cpp's format) whose start rule is `root`.
    Grammar { grammar: String },
}

/// The kinds of [`ResponseFormat`] a backend honours (see
/// [`Capabilities::formats`](crate::Capabilities::formats)).
#[derive(Debug, Clone, Copy, Default, PartialEq, Eq, Serialize, Deserialize)]
pub struct FormatSupport {
    pub json_object: bool,
    pub json_schema: bool,
    pub grammar: bool,
}

impl FormatSupport {
    /// Every kind.
    pub const ALL: FormatSupport = FormatSupport {
        json_object: true,
        json_schema: true,
        grammar: true,
    };

    /// Whether `format` is honoured.
    pub fn supports(&self, format: &ResponseFormat) -> bool {
        match format {
            ResponseFormat::JsonObject => self.json_object,
            ResponseFormat::JsonSchema { .. } => self.json_schema,
            ResponseFormat::Grammar { .. } => self.grammar,
        }
    }
}

/// Why a [`ResponseFormat`] cannot be used.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
#[non_exhaustive]
pub enum FormatError {
    #[error("the JSON schema is {size} bytes long; at most {max} are accepted")]
    SchemaTooLarge { size: usize, max: usize },
    #[error("the JSON schema nests objects and arrays more than {max} levels deep")]
    SchemaTooDeep { max: usize },
    /// A keyword of the schema has a value of the wrong shape or out of bounds.
    #[error("invalid JSON schema at `{path}`: {reason}")]
    BadSchema { path: String, reason: String },
    #[error("the grammar is empty")]
    EmptyGrammar,
    #[error("the grammar is {size} bytes long; at most {max} are accepted")]
    GrammarTooLarge { size: usize, max: usize },
    #[error("the grammar nests parentheses more than {max} levels deep")]
    GrammarTooDeep { max: usize },
    /// The grammar is malformed (syntax, undefined rule, left recursion, no `root`, ...).
    #[error("invalid grammar: {0}")]
    BadGrammar(String),
    /// Generation reached a point where the grammar admits no token at all.
    #[error("the grammar admits no token after {after:?}: it cannot be completed")]
    DeadEnd { after: String },
}

impl ResponseFormat {
    /// A JSON-schema format.
    pub fn json_schema(schema: Value) -> Self {
        ResponseFormat::JsonSchema { schema }
    }

    /// A GBNF-grammar format.
    pub fn grammar(grammar: impl Into<String>) -> Self {
        ResponseFormat::Grammar {
            grammar: grammar.into(),
        }
    }

    /// The name of its kind, as in the OpenAI `response_format.type` (`grammar` for GBNF).
    pub fn kind(&self) -> &'static str {
        match self {
            ResponseFormat::JsonObject => "json_object",
            ResponseFormat::JsonSchema { .. } => "json_schema",
            ResponseFormat::Grammar { .. } => "grammar",
        }
    }

    /// Checks sizes, nesting and the shape of the keywords that are turned into a grammar.
    pub fn validate(&self) -> Result<(), FormatError> {
        match self {
            ResponseFormat::JsonObject => Ok(()),
            ResponseFormat::JsonSchema { schema } => validate_schema(schema),
            ResponseFormat::Grammar { grammar } => validate_grammar(grammar),
        }
    }
}

fn validate_schema(schema: &Value) -> Result<(), FormatError> {
    // Depth first: the size is measured by serialising, which recurses.
    if depth_exceeds(schema, MAX_SCHEMA_DEPTH) {
        return Err(FormatError::SchemaTooDeep {
            max: MAX_SCHEMA_DEPTH,
        });
    }
    let size = schema.to_string().len();
    if size > MAX_SCHEMA_BYTES {
        return Err(FormatError::SchemaTooLarge {
            size,
            max: MAX_SCHEMA_BYTES,
        });
    }
    if !schema.is_object() {
        return Err(bad("", "a schema must be a JSON object"));
    }
    check_schema(schema, "")
}

/// Whether `v` nests objects and arrays more than `max` levels deep (`max` bounds the
/// recursion too).
fn depth_exceeds(v: &Value, max: usize) -> bool {
    let children: Box<dyn Iterator<Item = &Value>> = match v {
        Value::Array(a) => Box::new(a.iter()),
        Value::Object(o) => Box::new(o.values()),
        _ => return false,
    };
    if max == 0 {
        return true;
    }
    let mut children = children;
    children.any(|c| depth_exceeds(c, max - 1))
}

fn bad(path: &str, reason: impl Into<String>) -> FormatError {
    FormatError::BadSchema {
        path: if path.is_empty() {
            "#".into()
        } else {
            format!("#{path}")
        },
        reason: reason.into(),
    }
}

const TYPES: [&str; 7] = [
    "string", "number", "integer", "boolean", "object", "array", "null",
];

const COUNTS: [(&str, &str); 3] = [
    ("minLength", "maxLength"),
    ("minItems", "maxItems"),
    ("minProperties", "maxProperties"),
];

/// Checks one (sub)schema: `true` / `false` or an object whose known keywords have the
/// right shapes. Unknown keywords (`title`, `description`, ...) are left alone. The depth
/// is bounded by [`depth_exceeds`] beforehand.
fn check_schema(schema: &Value, path: &str) -> Result<(), FormatError> {
    let obj = match schema {
        Value::Bool(_) => return Ok(()),
        Value::Object(o) => o,
        _ => return Err(bad(path, "a schema must be an object or a boolean")),
    };
    let at = |key: &str| format!("{path}/{key}");
    if let Some(t) = obj.get("type") {
        let names: Vec<&Value> = match t {
            Value::Array(a) if !a.is_empty() => a.iter().collect(),
            other => vec![other],
        };
        for n in names {
            match n.as_str() {
                Some(name) if TYPES.contains(&name) => {}
                _ => {
                    return Err(bad(
                        &at("type"),
                        format!("unknown type {n}: one of {}", TYPES.join(", ")),
                    ));
                }
            }
        }
    }
    for (min_key, max_key) in COUNTS {
        let mut bounds = [None, None];
        for (slot, key) in bounds.iter_mut().zip([min_key, max_key]) {
            if let Some(v) = obj.get(key) {
                match v.as_u64() {
                    Some(n) if n <= MAX_SCHEMA_COUNT => *slot = Some(n),
                    _ => {
                        return Err(bad(
                            &at(key),
                            format!("must be an integer in 0..={MAX_SCHEMA_COUNT}, got {v}"),
                        ));
                    }
                }
            }
        }
        if let [Some(lo), Some(hi)] = bounds {
            if lo > hi {
                return Err(bad(path, format!("{min_key} {lo} exceeds {max_key} {hi}")));
            }
        }
    }
    for key in ["minimum", "maximum", "exclusiveMinimum", "exclusiveMaximum"] {
        if obj.get(key).is_some_and(|v| !v.is_number()) {
            return Err(bad(&at(key), "must be a number"));
        }
    }
    if let Some(r) = obj.get("required") {
        let ok = r.as_array().is_some_and(|a| a.iter().all(Value::is_string));
        if !ok {
            return Err(bad(&at("required"), "must be a list of property names"));
        }
    }
    if let Some(e) = obj.get("enum") {
        if e.as_array().is_none_or(|a| a.is_empty()) {
            return Err(bad(&at("enum"), "must be a non-empty list"));
        }
    }
    if obj.get("pattern").is_some_and(|p| !p.is_string()) {
        return Err(bad(&at("pattern"), "must be a string"));
    }
    if let Some(r) = obj.get("$ref") {
        match r.as_str() {
            Some(s) if s.starts_with('#') => {}
            _ => {
                return Err(bad(
                    &at("$ref"),
                    "only local references (`#/$defs/...`) are supported",
                ));
            }
        }
    }
    for key in ["properties", "$defs", "definitions"] {
        if let Some(v) = obj.get(key) {
            let Some(map) = v.as_object() else {
                return Err(bad(&at(key), "must be an object of schemas"));
            };
            for (name, sub) in map {
                check_schema(sub, &format!("{path}/{key}/{}", escape_pointer(name)))?;
            }
        }
    }
    for key in ["additionalProperties", "items", "not"] {
        if let Some(sub) = obj.get(key) {
            check_schema(sub, &at(key))?;
        }
    }
    for key in ["anyOf", "oneOf", "allOf", "prefixItems"] {
        if let Some(v) = obj.get(key) {
            let Some(list) = v.as_array().filter(|l| !l.is_empty()) else {
                return Err(bad(&at(key), "must be a non-empty list of schemas"));
            };
            for (i, sub) in list.iter().enumerate() {
                check_schema(sub, &format!("{path}/{key}/{i}"))?;
            }
        }
    }
    Ok(())
}

/// A property name as a JSON-pointer segment.
fn escape_pointer(name: &str) -> String {
    name.replace('~', "~0").replace('/', "~1")
}

fn validate_grammar(grammar: &str) -> Result<(), FormatError> {
    if grammar.trim().is_empty() {
        return Err(FormatError::EmptyGrammar);
    }
    if grammar.len() > MAX_GRAMMAR_BYTES {
        return Err(FormatError::GrammarTooLarge {
            size: grammar.len(),
            max: MAX_GRAMMAR_BYTES,
        });
    }
    if grammar.contains('\0') {
        return Err(FormatError::BadGrammar(
            "it contains a NUL character".into(),
        ));
    }
    if nesting(grammar) > MAX_GRAMMAR_NESTING {
        return Err(FormatError::GrammarTooDeep {
            max: MAX_GRAMMAR_NESTING,
        });
    }
    let defines_root = grammar.lines().any(|line| {
        line.trim_start()
            .strip_prefix("root")
            .is_some_and(|rest| rest.trim_start().starts_with("::="))
    });
    if !defines_root {
        return Err(FormatError::BadGrammar(
            "no `root ::= ...` rule (the start rule must be named root)".into(),
        ));
    }
    Ok(())
}

/// The deepest nesting of parentheses outside string literals, character classes and
/// comments (llama.cpp's parser recurses once per level).
fn nesting(grammar: &str) -> usize {
    let mut depth = 0usize;
    let mut deepest = 0usize;
    let mut chars = grammar.chars();
    while let Some(c) = chars.next() {
        match c {
            '(' => {
                depth += 1;
                deepest = deepest.max(depth);
            }
            ')' => depth = depth.saturating_sub(1),
            '"' | '[' => {
                let close = if c == '"' { '"' } else { ']' };
                while let Some(d) = chars.next() {
                    if d == '\\' {
                        chars.next();
                    } else if d == close {
                        break;
                    }
                }
            }
            '#' => {
                for d in chars.by_ref() {
                    if d == '\n' {
                        break;
                    }
                }
            }
            _ => {}
        }
    }
    deepest
}

#[cfg(test)]
mod tests {
    use super::*;
    use serde_json::json;

    fn schema_err(v: Value) -> FormatError {
        ResponseFormat::json_schema(v).validate().unwrap_err()
    }

    #[test]
    fn serde_spelling_is_tagged_by_type() {
        let f: ResponseFormat =
            serde_json::from_value(json!({"type": "json_schema", "schema": {"type": "object"}}))
                .unwrap();
        assert_eq!(f, ResponseFormat::json_schema(json!({"type": "object"})));
        let g = ResponseFormat::grammar("root ::= \"a\"");
        let v = serde_json::to_value(&g).unwrap();
        assert_eq!(v, json!({"type": "grammar", "grammar": "root ::= \"a\""}));
        assert_eq!(
            serde_json::to_value(ResponseFormat::JsonObject).unwrap(),
            json!({"type": "json_object"})
        );
    }

    #[test]
    fn reasonable_schemas_pass() {
        let s = json!({
            "type": "object",
            "properties": {
                "answer": {"type": "integer", "minimum": 0},
                "why": {"type": ["string", "null"], "maxLength": 200},
                "tags": {"type": "array", "items": {"$ref": "#/$defs/tag"}, "maxItems": 3},
                "a/b": {"enum": ["x", "y"]}
            },
            "required": ["answer"],
            "additionalProperties": false,
            "$defs": {"tag": {"type": "string", "pattern": "^[a-z]+$"}}
        });
        assert_eq!(ResponseFormat::json_schema(s).validate(), Ok(()));
        assert_eq!(ResponseFormat::json_schema(json!({})).validate(), Ok(()));
        assert_eq!(ResponseFormat::JsonObject.validate(), Ok(()));
    }

    #[test]
    fn bad_schemas_name_the_keyword() {
        let e = schema_err(json!({"type": "object", "properties": {"n": {"type": "int"}}}));
        assert!(
            matches!(&e, FormatError::BadSchema { path, .. } if path == "#/properties/n/type"),
            "{e}"
        );
        let e = schema_err(json!({"type": "string", "maxLength": 1_000_000}));
        assert!(e.to_string().contains("maxLength"), "{e}");
        let e = schema_err(json!({"type": "string", "minLength": 5, "maxLength": 2}));
        assert!(
            e.to_string().contains("minLength 5 exceeds maxLength 2"),
            "{e}"
        );
        let e = schema_err(json!({"$ref": "https://example.com/s.json"}));
        assert!(e.to_string().contains("local"), "{e}");
        let e = schema_err(json!({"required": "answer"}));
        assert!(e.to_string().contains("required"), "{e}");
        let e = schema_err(json!({"anyOf": []}));
        assert!(e.to_string().contains("anyOf"), "{e}");
        let e = schema_err(json!("object"));
        assert!(e.to_string().contains("must be a JSON object"), "{e}");
        let e = schema_err(json!({"properties": {"a/b": 3}}));
        assert!(e.to_string().contains("#/properties/a~1b"), "{e}");
    }

    #[test]
    fn schemas_are_bounded_in_depth_and_size() {
        let mut deep = json!({"type": "string"});
        for _ in 0..MAX_SCHEMA_DEPTH {
            deep = json!({"type": "array", "items": deep});
        }
        assert_eq!(
            schema_err(deep),
            FormatError::SchemaTooDeep {
                max: MAX_SCHEMA_DEPTH
            }
        );
        let mut ok = json!({"type": "string"});
        for _ in 0..(MAX_SCHEMA_DEPTH / 2 - 1) {
            ok = json!({"type": "array", "items": ok});
        }
        assert_eq!(ResponseFormat::json_schema(ok).validate(), Ok(()));
        let big = json!({"description": "x".repeat(MAX_SCHEMA_BYTES)});
        assert!(matches!(
            schema_err(big),
            FormatError::SchemaTooLarge { max, .. } if max == MAX_SCHEMA_BYTES
        ));
    }

    #[test]
    fn grammars_are_bounded_and_need_a_root() {
        let ok = "# digits\nroot ::= \"(\" [0-9]+ \")\" | (\"a\" (\"b\"))\n";
        assert_eq!(ResponseFormat::grammar(ok).validate(), Ok(()));
        let v = |g: &str| ResponseFormat::grammar(g).validate();
        assert_eq!(v("  \n"), Err(FormatError::EmptyGrammar));
        assert!(matches!(
            v("start ::= \"a\""),
            Err(FormatError::BadGrammar(_))
        ));
        assert!(matches!(
            v("root ::= \"a\0\""),
            Err(FormatError::BadGrammar(_))
        ));
        let deep = format!(
            "root ::= {}\"a\"{}",
            "(".repeat(MAX_GRAMMAR_NESTING + 1),
            ")".repeat(MAX_GRAMMAR_NESTING + 1)
        );
        assert_eq!(
            v(&deep),
            Err(FormatError::GrammarTooDeep {
                max: MAX_GRAMMAR_NESTING
            })
        );
        // Parentheses inside literals, classes and comments do not count.
        let quoted = format!(
            "root ::= \"{}\" [(] # {}\n",
            "(".repeat(100),
            "(".repeat(100)
        );
        assert_eq!(v(&quoted), Ok(()));
        let long = format!("root ::= \"{}\"", "a".repeat(MAX_GRAMMAR_BYTES));
        assert!(matches!(v(&long), Err(FormatError::GrammarTooLarge { .. })));
    }

    #[test]
    fn support_is_per_kind() {
        let only_json = FormatSupport {
            json_object: true,
            json_schema: true,
            grammar: false,
        };
        assert!(only_json.supports(&ResponseFormat::JsonObject));
        assert!(!only_json.supports(&ResponseFormat::grammar("root ::= \"a\"")));
        assert!(FormatSupport::ALL.supports(&ResponseFormat::grammar("root ::= \"a\"")));
        assert!(!FormatSupport::default().supports(&ResponseFormat::JsonObject));
    }
}
