//! Which approach a request asks for: the body field `optillm_approach`, a
//! `<optillm_approach>` tag in the system prompt, a model-name prefix (`moa-smollm2`),
//! the server's default, or `none` - in that order - and its per-request parameters.

use optillm_core::spec::{self, Spec};
use optillm_core::{Message, Role};
use serde_json::{Map, Value};

use crate::error::ApiError;
use crate::models::ModelInfo;

const TAG_OPEN: &str = "<optillm_approach>";
const TAG_CLOSE: &str = "</optillm_approach>";

/// The approach and model a request resolved to.
#[derive(Debug, Clone, PartialEq)]
pub struct Selection {
    pub spec: Spec,
    /// The model name to look up (without any approach prefix).
    pub model: String,
    /// The conversation with any approach tag removed.
    pub messages: Vec<Message>,
}

/// Removes the first `<optillm_approach>slug</optillm_approach>` tag from the system
/// messages and returns its content. A system message left empty is dropped.
pub fn take_system_tag(messages: &mut Vec<Message>) -> Option<String> {
    for i in 0..messages.len() {
        if messages[i].role != Role::System {
            continue;
        }
        let content = &messages[i].content;
        let Some(open) = content.find(TAG_OPEN) else {
            continue;
        };
        let inner_start = open + TAG_OPEN.len();
        let Some(close_rel) = content.get(inner_start..).and_then(|s| s.find(TAG_CLOSE)) else {
            continue;
        };
        let close = inner_start + close_rel;
        let slug = content.get(inner_start..close)?.trim().to_string();
        let before = content.get(..open).unwrap_or_default();
        let after = content.get(close + TAG_CLOSE.len()..).unwrap_or_default();
        let rest = format!("{}{}", before.trim_end(), after).trim().to_string();
        if rest.is_empty() {
            messages.remove(i);
        } else {
            messages[i].content = rest;
        }
        return Some(slug);
    }
    None
}

/// Longest model name accepted (approach prefix included), in bytes.
pub const MAX_MODEL_NAME_BYTES: usize = 1024;

/// Splits a requested model name into an approach (when it has a known approach prefix)
/// and the model name. A name that is itself a served model is never split, and a
/// trailing Ollama `:latest` tag is dropped when the bare name is what is served.
/// Names longer than [`MAX_MODEL_NAME_BYTES`] are refused (400).
pub fn split_model(
    requested: &str,
    known: &[ModelInfo],
) -> Result<(Option<Spec>, String), ApiError> {
    if requested.len() > MAX_MODEL_NAME_BYTES {
        return Err(ApiError::bad_request(format!(
            "the model name is {} bytes long; at most {MAX_MODEL_NAME_BYTES} are accepted",
            requested.len()
        )));
    }
    Ok(split_checked(requested, known))
}

fn split_checked(requested: &str, known: &[ModelInfo]) -> (Option<Spec>, String) {
    let served = |n: &str| known.iter().any(|m| m.name == n);
    let bare = |n: &str| -> String {
        match n.strip_suffix(":latest") {
            Some(b) if !served(n) && served(b) => b.to_string(),
            _ => n.to_string(),
        }
    };
    if served(requested) || served(&bare(requested)) {
        return (None, bare(requested));
    }
    let (spec, rest) = split_model_name(requested);
    if rest == requested {
        (None, bare(requested))
    } else {
        (Some(spec), bare(&rest))
    }
}

/// Reads the optillm model-name convention: `moa-smollm2` gives (`moa`, `smollm2`),
/// `bon|moa-smollm2` and `re2&self_consistency-smollm2` give the combined spec.
///
/// The approach part is the shortest prefix before a `-` that parses as a spec of known
/// approaches; a name with no such prefix (`smollm2-135m`) gives `none` and the whole name.
/// Only prefixes up to [`spec::MAX_SPEC_CHARS`] are tried, so the work is bounded whatever the
/// name's length.
pub fn split_model_name(name: &str) -> (Spec, String) {
    for (i, c) in name.char_indices() {
        if i > 4 * spec::MAX_SPEC_CHARS {
            break;
        }
        if c != '-' {
            continue;
        }
        let (Some(prefix), Some(rest)) = (name.get(..i), name.get(i + 1..)) else {
            continue;
        };
        if rest.is_empty() {
            break;
        }
        if let Ok(spec) = spec::parse(prefix) {
            return (spec, rest.to_string());
        }
    }
    (Spec::none(), name.to_string())
}

/// Resolves the approach, model and messages of a request.
pub fn select(
    requested_model: &str,
    body_approach: Option<&str>,
    mut messages: Vec<Message>,
    params: Option<&Map<String, Value>>,
    known: &[ModelInfo],
    default: Option<&Spec>,
) -> Result<Selection, ApiError> {
    if requested_model.trim().is_empty() {
        return Err(ApiError::bad_request("model is required"));
    }
    let (name_spec, model) = split_model(requested_model, known)?;
    let tag = take_system_tag(&mut messages);
    let mut spec = match (body_approach, tag) {
        (Some(a), _) => parse_field("optillm_approach", a)?,
        (None, Some(t)) => parse_field("the <optillm_approach> tag", &t)?,
        (None, None) => name_spec
            .or_else(|| default.cloned())
            .unwrap_or_else(Spec::none),
    };
    if let Some(params) = params {
        apply_params(&mut spec, params)?;
    }
    Ok(Selection {
        spec,
        model,
        messages,
    })
}

fn parse_field(what: &str, text: &str) -> Result<Spec, ApiError> {
    spec::parse(text).map_err(|e| ApiError::bad_request(format!("{what}: {e}")))
}

fn stage_slugs(spec: &Spec, out: &mut Vec<String>) {
    match spec {
        Spec::Stage { slug, .. } => out.push(slug.clone()),
        Spec::Pipeline(items) | Spec::Parallel(items) => {
            for s in items {
                stage_slugs(s, out);
            }
        }
    }
}

fn add_to_stages(spec: &mut Spec, target: &str, extra: &Map<String, Value>) {
    match spec {
        Spec::Stage { slug, params } if slug == target => {
            params.extend(extra.iter().map(|(k, v)| (k.clone(), v.clone())));
        }
        Spec::Stage { .. } => {}
        Spec::Pipeline(items) | Spec::Parallel(items) => {
            for s in items {
                add_to_stages(s, target, extra);
            }
        }
    }
}

/// Applies `optillm_params` to `spec`: `{"k": 5}` sets a parameter of a single-stage
/// approach; `{"bon": {"n": 3}}` sets parameters of every stage named `bon` (needed for
/// combined approaches). Request values override those of the spec.
pub fn apply_params(spec: &mut Spec, params: &Map<String, Value>) -> Result<(), ApiError> {
    let mut slugs = Vec::new();
    stage_slugs(spec, &mut slugs);
    for (key, value) in params {
        match (value, &mut *spec) {
            (Value::Object(inner), s) if slugs.iter().any(|x| x == key) => {
                add_to_stages(s, key, inner)
            }
            (v, Spec::Stage { params, .. }) => {
                params.insert(key.clone(), v.clone());
            }
            (_, s) => {
                return Err(ApiError::bad_request(format!(
                    "optillm_params: `{key}` is not a stage of `{s}`; for a combined approach \
                     give parameters per stage, e.g. {{\"{first}\": {{\"{key}\": ...}}}}",
                    first = slugs.first().map(String::as_str).unwrap_or("bon"),
                )));
            }
        }
    }
    Ok(())
}

/// Refuses integer parameters that count work (samples, agents, rounds, simulations...)
/// above `max`, and lists longer than `max`, so that one request cannot ask for unbounded
/// work or allocate per unit of it up front. Token counts (`*max_tokens`, bounded by the
/// budget), seeds, `top_k` and `window` are not counts of work.
pub fn check_counts(spec: &Spec, max: u32) -> Result<(), ApiError> {
    match spec {
        Spec::Stage { slug, params } => {
            for (key, value) in params {
                let exempt = key == "seed"
                    || key == "top_k"
                    || key == "window"
                    || key.ends_with("max_tokens");
                let too_many = match value {
                    Value::Number(n) if !exempt => n.as_u64().is_some_and(|n| n > u64::from(max)),
                    Value::Array(items) => items.len() > max as usize,
                    _ => false,
                };
                if too_many {
                    return Err(ApiError::bad_request(format!(
                        "approach `{slug}`: `{key}` = {value} is above this server's limit of \
                         {max} (samples, agents, rounds and list lengths per stage)"
                    )));
                }
            }
            Ok(())
        }
        Spec::Pipeline(items) | Spec::Parallel(items) => {
            items.iter().try_for_each(|s| check_counts(s, max))
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn long_model_names_split_in_bounded_work() {
        let name = format!("{}smollm2-135m", "x-".repeat(80_000));
        let started = std::time::Instant::now();
        let (spec, rest) = split_model_name(&name);
        assert!(spec.is_none());
        assert_eq!(rest, name);
        // Generous: linear work is microseconds, the old quadratic one took seconds.
        assert!(started.elapsed() < std::time::Duration::from_secs(1));
        let deep = format!("{}none{}-m", "(".repeat(3000), ")".repeat(3000));
        assert_eq!(split_model_name(&deep), (Spec::none(), deep.clone()));
    }

    #[test]
    fn model_names() {
        assert_eq!(
            split_model_name("none-smollm2"),
            (Spec::none(), "smollm2".to_string())
        );
        assert_eq!(
            split_model_name("smollm2-135m"),
            (Spec::none(), "smollm2-135m".to_string())
        );
        assert_eq!(
            split_model_name("none|none-qwen2.5-coder-0.5b"),
            (
                Spec::Parallel(vec![Spec::none(), Spec::none()]),
                "qwen2.5-coder-0.5b".to_string()
            )
        );
        assert_eq!(
            split_model_name("smollm2"),
            (Spec::none(), "smollm2".to_string())
        );
        assert_eq!(split_model_name("none-"), (Spec::none(), "none-".into()));
        // Real slugs, with `_` in slugs and `-` in model names.
        assert_eq!(
            split_model_name("mcts-qwen2.5-coder-0.5b"),
            (Spec::stage("mcts"), "qwen2.5-coder-0.5b".to_string())
        );
        assert_eq!(
            split_model_name("pvg|mars-smollm2"),
            (
                Spec::Parallel(vec![Spec::stage("pvg"), Spec::stage("mars")]),
                "smollm2".to_string()
            )
        );
        assert_eq!(
            split_model_name("rsa&plansearch-smollm2-135m"),
            (
                Spec::Pipeline(vec![Spec::stage("rsa"), Spec::stage("plansearch")]),
                "smollm2-135m".to_string()
            )
        );
        assert_eq!(
            split_model_name("mctsx-model"),
            (Spec::none(), "mctsx-model".to_string())
        );
    }

    fn known(names: &[&str]) -> Vec<ModelInfo> {
        names.iter().map(|n| ModelInfo::new(*n)).collect()
    }

    #[test]
    fn system_tag_is_taken_and_removed() {
        let mut m = vec![
            Message::system("Be brief. <optillm_approach>re2</optillm_approach> Thanks"),
            Message::user("q"),
        ];
        assert_eq!(take_system_tag(&mut m).as_deref(), Some("re2"));
        assert_eq!(m[0].content, "Be brief. Thanks");

        let mut only = vec![
            Message::system("<optillm_approach> moa </optillm_approach>"),
            Message::user("q"),
        ];
        assert_eq!(take_system_tag(&mut only).as_deref(), Some("moa"));
        assert_eq!(only, vec![Message::user("q")]);

        // User messages are not searched; unclosed tags are left alone.
        let mut u = vec![
            Message::user("<optillm_approach>re2</optillm_approach>"),
            Message::system("é <optillm_approach>re2"),
        ];
        assert_eq!(take_system_tag(&mut u), None);
        assert_eq!(u[1].content, "é <optillm_approach>re2");
    }

    #[test]
    fn model_names_split_unless_served() {
        let k = known(&["smollm2-135m", "re2-special"]);
        assert_eq!(
            split_model("smollm2-135m", &k).unwrap(),
            (None, "smollm2-135m".into())
        );
        assert_eq!(
            split_model("re2-special", &k).unwrap(),
            (None, "re2-special".into())
        );
        assert_eq!(
            split_model("re2-smollm2-135m", &k).unwrap(),
            (Some(Spec::stage("re2")), "smollm2-135m".into())
        );
        assert_eq!(
            split_model("bon|moa-smollm2-135m:latest", &k).unwrap(),
            (
                Some(Spec::Parallel(vec![Spec::stage("bon"), Spec::stage("moa")])),
                "smollm2-135m".into()
            )
        );
        assert_eq!(
            split_model("smollm2-135m:latest", &k).unwrap(),
            (None, "smollm2-135m".into())
        );
        assert_eq!(
            split_model("other:latest", &k).unwrap(),
            (None, "other:latest".into())
        );
    }

    #[test]
    fn long_names_and_deep_specs_are_400() {
        let k = known(&["m"]);
        let long = format!("{}m", "x-".repeat(80_000));
        let e = split_model(&long, &k).unwrap_err();
        assert_eq!(e.status.as_u16(), 400);
        assert!(e.message.contains("at most 1024"), "{}", e.message);
        let deep = format!("{}re2{}", "(".repeat(3000), ")".repeat(3000));
        for (field, tag) in [(Some(deep.as_str()), None), (None, Some(&deep))] {
            let mut msgs = vec![Message::user("q")];
            if let Some(t) = tag {
                msgs.insert(
                    0,
                    Message::system(format!("<optillm_approach>{t}</optillm_approach>")),
                );
            }
            let e = select("m", field, msgs, None, &k, None).unwrap_err();
            assert_eq!(e.status.as_u16(), 400, "{}", e.message);
        }
        let deep_name = format!("{}re2{}-m", "(".repeat(400), ")".repeat(400));
        let (spec, name) = split_model(&deep_name, &k).unwrap();
        assert_eq!((spec, name), (None, deep_name.clone()));
    }

    #[test]
    fn precedence_field_then_tag_then_name_then_default() {
        let k = known(&["m"]);
        let msgs = vec![
            Message::system("<optillm_approach>moa</optillm_approach>"),
            Message::user("q"),
        ];
        let s = select("re2-m", Some("bon"), msgs.clone(), None, &k, None).unwrap();
        assert_eq!(s.spec, Spec::stage("bon"));
        assert_eq!(s.messages, vec![Message::user("q")]);
        let s = select("re2-m", None, msgs, None, &k, None).unwrap();
        assert_eq!(s.spec, Spec::stage("moa"));
        let s = select("re2-m", None, vec![Message::user("q")], None, &k, None).unwrap();
        assert_eq!((s.spec, s.model.as_str()), (Spec::stage("re2"), "m"));
        let d = Spec::stage("moa");
        let s = select("m", None, vec![Message::user("q")], None, &k, Some(&d)).unwrap();
        assert_eq!(s.spec, d);
        let s = select("m", None, vec![Message::user("q")], None, &k, None).unwrap();
        assert!(s.spec.is_none());
        let e = select("m", Some("bogus&"), vec![], None, &k, None).unwrap_err();
        assert_eq!(e.status.as_u16(), 400);
        assert!(e.message.starts_with("optillm_approach: "), "{}", e.message);
    }

    #[test]
    fn counts_of_work_are_capped() {
        let ok = spec::parse("mars(agents=64)|bon(n=3,rating_max_tokens=4096,seed=99999)").unwrap();
        assert!(check_counts(&ok, 64).is_ok());
        for bad in [
            "self_consistency(k=1000000)",
            "re2&mars(agents=65)",
            "diverse(temperatures=[0.1,0.2,0.3])",
        ] {
            let e = check_counts(
                &spec::parse(bad).unwrap(),
                if bad.contains('[') { 2 } else { 64 },
            )
            .unwrap_err();
            assert_eq!(e.status.as_u16(), 400);
            assert!(e.message.contains("limit"), "{}", e.message);
        }
    }

    #[test]
    fn params_per_stage_or_flat() {
        let mut single = Spec::stage("bon");
        let p: Map<String, Value> = serde_json::from_str(r#"{"n": 3}"#).unwrap();
        apply_params(&mut single, &p).unwrap();
        assert_eq!(single.to_string(), "bon(n=3)");

        let mut both = spec::parse("bon(n=2)|moa").unwrap();
        let p: Map<String, Value> = serde_json::from_str(r#"{"bon": {"n": 5}}"#).unwrap();
        apply_params(&mut both, &p).unwrap();
        assert_eq!(both.to_string(), "bon(n=5)|moa");

        let flat: Map<String, Value> = serde_json::from_str(r#"{"n": 5}"#).unwrap();
        let e = apply_params(&mut both, &flat).unwrap_err();
        assert!(e.message.contains("per stage"), "{}", e.message);
    }
}
