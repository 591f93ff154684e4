//! The strategy catalogue and its registry by slug.
//!
//! Each strategy is a public module with its strategy type and its typed `Params`, and
//! declares its slug, description, parameters and constructor once, in its
//! [`Approach`] implementation. The registry ([`catalogue`], [`is_known`], [`build`])
//! lists those implementations; the spec parser, `optillm approaches`, the server's
//! `/v1/models` and the documentation read it.
//!
//! A library user builds a strategy from its typed parameters, without a JSON map:
//!
//! ```
//! use optillm_core::strategies::moa::{self, MixtureOfAgents};
//! use optillm_core::strategies::Approach;
//! use optillm_core::Strategy;
//!
//! let moa = MixtureOfAgents::new(moa::Params {
//!     samples: 2,
//!     ..moa::Params::default()
//! })?;
//! assert_eq!(moa.slug(), MixtureOfAgents::SLUG);
//! # Ok::<(), optillm_core::SpecError>(())
//! ```

use serde::Serialize;
use serde::de::DeserializeOwned;

use crate::spec::SpecError;
use crate::strategy::Strategy;

pub mod auto;
pub mod autothink;
pub mod bon;
pub mod calculator;
pub mod cepo;
pub mod choice_likelihood;
mod combinators;
pub mod cot_decoding;
pub mod cot_reflection;
pub mod deepconf;
pub mod deepthink;
pub mod diverse;
pub mod doctest;
pub mod entropy_decoding;
pub mod genselect;
pub mod leap;
pub mod majority_voting;
pub mod mars;
pub mod mcts;
pub mod mixed_vote;
pub mod moa;
pub mod none;
pub mod plansearch;
pub mod pot;
pub mod pvg;
pub mod re2;
mod read_answer;
pub mod rsa;
pub mod rstar;
pub mod rto;
pub mod sampler;
mod select;
pub mod self_consistency;
pub mod thinkdeeper;
mod util;

pub use combinators::{Parallel, Pipeline, build_spec};
pub use none::NoneStrategy;

/// A strategy of the registry: its slug, description, typed parameters and constructor,
/// declared once in the strategy's module.
pub trait Approach: Strategy + Sized + 'static {
    /// The name in specs, model-name prefixes and listings (`moa`).
    const SLUG: &'static str;
    /// One line for `optillm approaches` and `/v1/models`.
    const DESCRIPTION: &'static str;
    /// The parameters (`#[serde(default, deny_unknown_fields)]`); their defaults are
    /// the approach's.
    type Params: Serialize + DeserializeOwned + Default;
    /// Builds the strategy, checking the parameters' ranges.
    fn from_params(params: Self::Params) -> Result<Self, SpecError>;
}

/// Per-strategy parameters as given by a spec, the CLI or a request body.
pub type Params = serde_json::Map<String, serde_json::Value>;

/// Describes one approach for `optillm approaches` and `/v1/models`.
#[derive(Debug, Clone, Serialize)]
pub struct ApproachInfo {
    pub slug: &'static str,
    pub description: &'static str,
    /// Parameter names with their default values.
    pub params: Params,
}

/// Builds typed parameters (`#[serde(default, deny_unknown_fields)]` structs) from `params`.
pub fn parse_params<P: DeserializeOwned>(slug: &str, params: &Params) -> Result<P, SpecError> {
    serde_json::from_value(serde_json::Value::Object(params.clone())).map_err(|e| {
        SpecError::BadParameter {
            approach: slug.to_string(),
            message: e.to_string(),
        }
    })
}

/// The defaults of a parameter struct, as a map.
pub fn defaults_of<P: Serialize + Default>() -> Params {
    match serde_json::to_value(P::default()).map(shortest_floats) {
        Ok(serde_json::Value::Object(m)) => m,
        _ => Params::new(),
    }
}

/// `f32` parameters serialise through `f64` (`0.3f32` becomes 0.30000001192092896):
/// numbers that are exactly an `f32` are written as that `f32`'s shortest decimal.
fn shortest_floats(value: serde_json::Value) -> serde_json::Value {
    use serde_json::Value;
    match value {
        Value::Number(n) => {
            let short = n
                .as_f64()
                .filter(|&f| n.is_f64() && f64::from(f as f32) == f)
                .and_then(|f| (f as f32).to_string().parse::<f64>().ok())
                .and_then(serde_json::Number::from_f64);
            Value::Number(short.unwrap_or(n))
        }
        Value::Array(items) => Value::Array(items.into_iter().map(shortest_floats).collect()),
        Value::Object(map) => Value::Object(
            map.into_iter()
                .map(|(k, v)| (k, shortest_floats(v)))
                .collect(),
        ),
        other => other,
    }
}

/// One approach of the registry: what [`Approach`] declares, erased to plain functions.
struct Entry {
    slug: &'static str,
    description: &'static str,
    defaults: fn() -> Params,
    build: fn(&Params) -> Result<Box<dyn Strategy>, SpecError>,
}

const fn entry<A: Approach>() -> Entry {
    Entry {
        slug: A::SLUG,
        description: A::DESCRIPTION,
        defaults: defaults_of::<A::Params>,
        build: build_boxed::<A>,
    }
}

fn build_boxed<A: Approach>(params: &Params) -> Result<Box<dyn Strategy>, SpecError> {
    Ok(Box::new(A::from_params(parse_params(A::SLUG, params)?)?))
}

/// Every approach, in the order `optillm approaches` and `/v1/models` list them.
const REGISTRY: &[Entry] = &[
    entry::<none::NoneStrategy>(),
    // Sampling, voting and selection approaches.
    entry::<re2::Re2>(),
    entry::<diverse::Diverse>(),
    entry::<self_consistency::SelfConsistency>(),
    entry::<majority_voting::MajorityVoting>(),
    entry::<pot::ProgramOfThought>(),
    entry::<mixed_vote::MixedVote>(),
    entry::<bon::BestOfN>(),
    entry::<moa::MixtureOfAgents>(),
    entry::<cot_reflection::CotReflection>(),
    entry::<genselect::GenSelect>(),
    entry::<rto::RoundTrip>(),
    entry::<doctest::Doctest>(),
    // Logit-level approaches (need a backend with `token_control`).
    entry::<cot_decoding::CotDecoding>(),
    entry::<calculator::Calculator>(),
    entry::<entropy_decoding::EntropyDecoding>(),
    entry::<thinkdeeper::ThinkDeeper>(),
    entry::<autothink::AutoThink>(),
    entry::<deepconf::DeepConf>(),
    entry::<choice_likelihood::ChoiceLikelihood>(),
    entry::<auto::Auto>(),
    // Search and multi-step approaches.
    entry::<mcts::Mcts>(),
    entry::<pvg::Pvg>(),
    entry::<rsa::Rsa>(),
    entry::<mars::Mars>(),
    entry::<plansearch::PlanSearch>(),
    entry::<leap::Leap>(),
    entry::<deepthink::DeepThink>(),
    entry::<rstar::RStar>(),
    entry::<cepo::Cepo>(),
];

/// Every approach of the catalogue.
pub fn catalogue() -> Vec<ApproachInfo> {
    REGISTRY
        .iter()
        .map(|e| ApproachInfo {
            slug: e.slug,
            description: e.description,
            params: (e.defaults)(),
        })
        .collect()
}

/// True when `slug` names an approach.
pub fn is_known(slug: &str) -> bool {
    REGISTRY.iter().any(|e| e.slug == slug)
}

/// Builds the approach `slug` with `params` (unknown parameters are an error).
pub fn build(slug: &str, params: &Params) -> Result<Box<dyn Strategy>, SpecError> {
    let entry = REGISTRY
        .iter()
        .find(|e| e.slug == slug)
        .ok_or_else(|| SpecError::UnknownApproach(slug.to_string()))?;
    (entry.build)(params)
}

#[cfg(test)]
mod tests {
    use std::sync::Arc;

    use super::*;
    use crate::mock::MockBackend;
    use crate::strategy::{Budget, StrategyRequest, run};

    #[test]
    fn every_approach_is_registered_once_under_its_own_slug() {
        let slugs: Vec<&str> = catalogue().iter().map(|a| a.slug).collect();
        let unique: std::collections::BTreeSet<&str> = slugs.iter().copied().collect();
        assert_eq!(unique.len(), slugs.len(), "{slugs:?}");
        for slug in slugs {
            let built = build(slug, &Params::new()).unwrap();
            assert_eq!(built.slug(), slug);
        }
        assert!(matches!(
            build("nope", &Params::new()),
            Err(SpecError::UnknownApproach(_))
        ));
    }

    #[tokio::test]
    async fn a_strategy_builds_from_typed_params_without_a_map() {
        let params = moa::Params {
            samples: 2,
            ..moa::Params::default()
        };
        let moa = moa::MixtureOfAgents::new(params.clone()).unwrap();
        assert_eq!(moa.slug(), <moa::MixtureOfAgents as Approach>::SLUG);
        let mock = Arc::new(MockBackend::scripted([
            "candidate a",
            "candidate b",
            "the critique",
            "the synthesis",
        ]));
        let out = run(
            &moa,
            mock.clone(),
            &StrategyRequest::user("q"),
            Budget::default(),
        )
        .await
        .unwrap();
        assert_eq!(out.answer, "the synthesis");
        assert_eq!(out.usage.calls, 3);
        assert_eq!(mock.requests()[0].n, 2, "two samples in one call");
        // Out-of-range typed parameters are the same error as from a spec.
        let zero = moa::Params {
            samples: 0,
            ..params
        };
        assert!(matches!(
            moa::MixtureOfAgents::new(zero),
            Err(SpecError::BadParameter { .. })
        ));
    }

    #[test]
    fn float_defaults_print_as_written_and_parse_back_the_same() {
        let moa = catalogue().into_iter().find(|a| a.slug == "moa").unwrap();
        assert_eq!(moa.params["critique_temperature"].to_string(), "0.1");
        let diverse = catalogue()
            .into_iter()
            .find(|a| a.slug == "diverse")
            .unwrap();
        assert_eq!(diverse.params["min_temperature"].to_string(), "0.3");
        // The printed defaults build the same strategy as no parameters.
        for a in catalogue() {
            assert!(build(a.slug, &a.params).is_ok(), "{}", a.slug);
        }
        // Integers and non-f32 floats are left alone.
        let v = shortest_floats(serde_json::json!([3, 0.123456789012345, 0.5f32]));
        assert_eq!(v, serde_json::json!([3, 0.123456789012345, 0.5]));
    }
}
