//! The strategy catalogue and its registry by slug.

use serde::Serialize;
use serde::de::DeserializeOwned;

use crate::strategy::{Strategy, StrategyError};

mod auto;
mod autothink;
mod bon;
mod calculator;
mod cepo;
mod choice_likelihood;
mod combinators;
mod cot_decoding;
mod cot_reflection;
mod deepconf;
mod deepthink;
mod diverse;
mod entropy_decoding;
mod genselect;
mod leap;
mod majority_voting;
mod mars;
mod mcts;
mod moa;
mod none;
mod plansearch;
mod pot;
mod pvg;
mod re2;
mod read_answer;
mod rsa;
mod rstar;
mod rto;
pub mod sampler;
mod select;
mod self_consistency;
mod thinkdeeper;
mod util;

pub use combinators::{Parallel, Pipeline, build_spec};
pub use none::NoneStrategy;

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
pub fn parse_params<P: DeserializeOwned>(slug: &str, params: &Params) -> Result<P, StrategyError> {
    serde_json::from_value(serde_json::Value::Object(params.clone())).map_err(|e| {
        StrategyError::BadParameter {
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

type Builder = fn(&Params) -> Result<Box<dyn Strategy>, StrategyError>;

struct Entry {
    slug: &'static str,
    description: &'static str,
    defaults: fn() -> Params,
    build: Builder,
}

fn entries() -> Vec<Entry> {
    vec![
        Entry {
            slug: "none",
            description: "Pass-through: one completion, streamed (temperature=0: greedy; unset: the request's)",
            defaults: defaults_of::<none::Params>,
            build: |p| Ok(Box::new(NoneStrategy::new(parse_params("none", p)?))),
        },
        // Sampling, voting and selection approaches.
        Entry {
            slug: "re2",
            description: "ReRead: the query is given twice (\"Read the question again\"); keeps n",
            defaults: defaults_of::<re2::Params>,
            build: |p| Ok(Box::new(re2::Re2::new(parse_params("re2", p)?))),
        },
        Entry {
            slug: "diverse",
            description: "Diverse sampling: n requests over a temperature ladder, picked by vote, length or rating",
            defaults: defaults_of::<diverse::Params>,
            build: |p| {
                Ok(Box::new(diverse::Diverse::new(parse_params(
                    "diverse", p,
                )?)?))
            },
        },
        Entry {
            slug: "self_consistency",
            description: "Self-consistency: k samples at T=1 in one request, majority vote on extracted answers",
            defaults: defaults_of::<self_consistency::Params>,
            build: |p| {
                Ok(Box::new(self_consistency::SelfConsistency::new(
                    parse_params("self_consistency", p)?,
                )?))
            },
        },
        Entry {
            slug: "majority_voting",
            description: "Majority voting: k samples at T=0.6 in one request, vote on normalised answers",
            defaults: defaults_of::<majority_voting::Params>,
            build: |p| {
                Ok(Box::new(majority_voting::MajorityVoting::new(
                    parse_params("majority_voting", p)?,
                )?))
            },
        },
        Entry {
            slug: pot::SLUG,
            description: "Program of thought: k Python programs (greedy for k=1) run by a bounded \
                      interpreter of a Python subset, vote on their results; replies' numbers when none runs",
            defaults: defaults_of::<pot::Params>,
            build: |p| {
                Ok(Box::new(pot::ProgramOfThought::new(parse_params(
                    pot::SLUG,
                    p,
                )?)?))
            },
        },
        Entry {
            slug: "bon",
            description: "Best-of-n: n samples in one request, each rated 0-10 by the model concurrently, argmax",
            defaults: defaults_of::<bon::Params>,
            build: |p| Ok(Box::new(bon::BestOfN::new(parse_params("bon", p)?)?)),
        },
        Entry {
            slug: "moa",
            description: "Mixture of agents: samples, one critique of all, one synthesis",
            defaults: defaults_of::<moa::Params>,
            build: |p| {
                Ok(Box::new(moa::MixtureOfAgents::new(parse_params(
                    "moa", p,
                )?)?))
            },
        },
        Entry {
            slug: "cot_reflection",
            description: "Chain of thought with <thinking>, <reflection> and <output>; returns the output",
            defaults: defaults_of::<cot_reflection::Params>,
            build: |p| {
                Ok(Box::new(cot_reflection::CotReflection::new(parse_params(
                    "cot_reflection",
                    p,
                )?)))
            },
        },
        Entry {
            slug: "genselect",
            description: "GenSelect: n candidates, one comparison call names the best; vote when unparsable",
            defaults: defaults_of::<genselect::Params>,
            build: |p| {
                Ok(Box::new(genselect::GenSelect::new(parse_params(
                    "genselect",
                    p,
                )?)?))
            },
        },
        Entry {
            slug: "rto",
            description: "Round-trip optimisation for code: C1, describe, C2 from the description, merge if they differ",
            defaults: defaults_of::<rto::Params>,
            build: |p| Ok(Box::new(rto::RoundTrip::new(parse_params("rto", p)?)?)),
        },
        // Logit-level approaches (need a backend with `token_control`).
        Entry {
            slug: cot_decoding::SLUG,
            description: "CoT decoding: branch on the top-k first tokens from one shared prompt, \
                      decode greedily in one batch, pick the path most confident in its answer",
            defaults: defaults_of::<cot_decoding::Params>,
            build: |p| {
                Ok(Box::new(cot_decoding::CotDecoding::new(parse_params(
                    cot_decoding::SLUG,
                    p,
                )?)?))
            },
        },
        Entry {
            slug: calculator::SLUG,
            description: "Exact arithmetic while decoding: each expression the model closes \
                      with `=` is computed and its result written for the model; k > 1 \
                      samples vote",
            defaults: defaults_of::<calculator::Params>,
            build: |p| {
                Ok(Box::new(calculator::Calculator::new(parse_params(
                    calculator::SLUG,
                    p,
                )?)?))
            },
        },
        Entry {
            slug: entropy_decoding::SLUG,
            description: "Entropix-style decoding: entropy and varentropy per token choose \
                      argmax, sampling or a \"Wait, \" insertion",
            defaults: defaults_of::<entropy_decoding::Params>,
            build: |p| {
                Ok(Box::new(entropy_decoding::EntropyDecoding::new(
                    parse_params(entropy_decoding::SLUG, p)?,
                )?))
            },
        },
        Entry {
            slug: thinkdeeper::SLUG,
            description: "Budget forcing (s1): a premature end of thinking becomes \"Wait,\"; \
                      the end is forced at the maximum thinking budget",
            defaults: defaults_of::<thinkdeeper::Params>,
            build: |p| {
                Ok(Box::new(thinkdeeper::ThinkDeeper::new(parse_params(
                    thinkdeeper::SLUG,
                    p,
                )?)?))
            },
        },
        Entry {
            slug: autothink::SLUG,
            description: "A heuristic classifier (query length, math/logic keywords, numbers) \
                      picks the thinking budget, then thinkdeeper budget forcing \
                      (not the reference's trained classifier or steering vectors)",
            defaults: defaults_of::<autothink::Params>,
            build: |p| {
                Ok(Box::new(autothink::AutoThink::new(parse_params(
                    autothink::SLUG,
                    p,
                )?)?))
            },
        },
        Entry {
            slug: deepconf::SLUG,
            description: "DeepConf online: forked traces decoded in parallel, warm-up sets a \
                      confidence threshold, weak traces stop early, confidence-weighted \
                      vote, stop at consensus (defaults scaled down for small models)",
            defaults: defaults_of::<deepconf::Params>,
            build: |p| {
                Ok(Box::new(deepconf::DeepConf::new(parse_params(
                    deepconf::SLUG,
                    p,
                )?)?))
            },
        },
        Entry {
            slug: choice_likelihood::SLUG,
            description: "Multiple choice by likelihood: every lettered option scored as the \
                      reply to the question stem (summed token log-probabilities, per \
                      character by default), forked from one prompt; the best option wins",
            defaults: defaults_of::<choice_likelihood::Params>,
            build: |p| {
                Ok(Box::new(choice_likelihood::ChoiceLikelihood::new(
                    parse_params(choice_likelihood::SLUG, p)?,
                )))
            },
        },
        Entry {
            slug: auto::SLUG,
            description: "Picks per question: multiple choice -> likelihood (with token access), \
                      a number in the question -> the best measured math approach, else none",
            defaults: defaults_of::<auto::Params>,
            build: |p| Ok(Box::new(auto::Auto::new(parse_params(auto::SLUG, p)?)?)),
        },
        // Search and multi-step approaches.
        Entry {
            slug: "mcts",
            description: "Monte-Carlo tree search over dialogue states (UCT, model-scored states)",
            defaults: defaults_of::<mcts::Params>,
            build: |p| Ok(Box::new(mcts::Mcts::new(parse_params("mcts", p)?)?)),
        },
        Entry {
            slug: "pvg",
            description: "Prover-verifier game: helpful and sneaky provers, verifier scores, query refinement",
            defaults: defaults_of::<pvg::Params>,
            build: |p| Ok(Box::new(pvg::Pvg::new(parse_params("pvg", p)?)?)),
        },
        Entry {
            slug: "rsa",
            description: "Recursive self-aggregation: a population refined by aggregating K of N per step",
            defaults: defaults_of::<rsa::Params>,
            build: |p| Ok(Box::new(rsa::Rsa::new(parse_params("rsa", p)?)?)),
        },
        Entry {
            slug: "mars",
            description: "Multi-agent reasoning: explore, aggregate, cross-verify, improve, vote or synthesise",
            defaults: defaults_of::<mars::Params>,
            build: |p| Ok(Box::new(mars::Mars::new(parse_params("mars", p)?)?)),
        },
        Entry {
            slug: "plansearch",
            description: "Plan search: observations, derived observations, natural-language plans, solutions; several plans",
            defaults: defaults_of::<plansearch::Params>,
            build: |p| {
                Ok(Box::new(plansearch::PlanSearch::new(parse_params(
                    "plansearch",
                    p,
                )?)?))
            },
        },
        Entry {
            slug: "leap",
            description: "LEAP: learn principles from deliberate mistakes on the query's examples, then answer",
            defaults: defaults_of::<leap::Params>,
            build: |p| Ok(Box::new(leap::Leap::new(parse_params("leap", p)?))),
        },
        Entry {
            slug: "deepthink",
            description: "SELF-DISCOVER reasoning structure, then uncertainty-routed CoT (vote if confident, else greedy)",
            defaults: defaults_of::<deepthink::Params>,
            build: |p| {
                Ok(Box::new(deepthink::DeepThink::new(parse_params(
                    "deepthink",
                    p,
                )?)?))
            },
        },
        Entry {
            slug: rstar::SLUG,
            description: "rStar: MCTS over five reasoning actions, then a mutual-consistency check; returns the whole reasoning",
            defaults: defaults_of::<rstar::Params>,
            build: |p| Ok(Box::new(rstar::RStar::new(parse_params(rstar::SLUG, p)?)?)),
        },
        Entry {
            slug: cepo::SLUG,
            description: "CePO: best-of-n over plan, execute, review, answer pipelines; judge rating or majority",
            defaults: defaults_of::<cepo::Params>,
            build: |p| Ok(Box::new(cepo::Cepo::new(parse_params(cepo::SLUG, p)?)?)),
        },
    ]
}

/// Every approach of the catalogue.
pub fn catalogue() -> Vec<ApproachInfo> {
    entries()
        .into_iter()
        .map(|e| ApproachInfo {
            slug: e.slug,
            description: e.description,
            params: (e.defaults)(),
        })
        .collect()
}

/// True when `slug` names an approach.
pub fn is_known(slug: &str) -> bool {
    entries().iter().any(|e| e.slug == slug)
}

/// Builds the approach `slug` with `params` (unknown parameters are an error).
pub fn build(slug: &str, params: &Params) -> Result<Box<dyn Strategy>, StrategyError> {
    let entry = entries()
        .into_iter()
        .find(|e| e.slug == slug)
        .ok_or_else(|| StrategyError::UnknownApproach(slug.to_string()))?;
    (entry.build)(params)
}

#[cfg(test)]
mod tests {
    use super::*;

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
