//! `auto`: picks an approach per question from the question alone and what the backend
//! can do.
//!
//! - A multiple-choice question (lettered options `(A) ...`, `(B) ...` after the stem,
//!   as [`split_choices`] reads them) on a backend with token-level access: the options
//!   are ranked by likelihood (`multiple_choice`). Measured on ARC-Easy with
//!   SmolLM2-135M, likelihood is the only approach that beats greedy decoding; every
//!   generating approach scored at or below it. Without token access: `other`.
//! - A math question written in LaTeX (it asks for the answer in `\boxed{}`, or uses a
//!   LaTeX command such as `\frac`), as MATH-style problems are: `math`, a vote that
//!   compares whole LaTeX answers (a point, an interval, `\frac{\pi}{2}`).
//! - Any other question with a number in it and no options (a math word problem):
//!   `numeric`, the best measured approach for word problems (see docs/results.md).
//!   Spelled-out numbers count when the question asks for a quantity ("four more plums
//!   ... How many plums ...").
//! - Anything else: `other` (one completion).
//!
//! The four routes are approach specs, so a user can change them
//! (`auto(numeric="pot")`); a route may not itself contain `auto`.

use async_trait::async_trait;
use serde::{Deserialize, Serialize};

use super::Approach;
use super::build_spec;
use super::choice_likelihood::split_choices;
use crate::spec::SpecError;
use crate::spec::{self, Spec};
use crate::strategy::{Answer, Ctx, Strategy, StrategyError, StrategyRequest};

pub const SLUG: &str = "auto";

/// The numeric route: a greedy program, run exactly, and a greedy chain of thought vote;
/// where they disagree, two sampled chains vote with them (`mixed_vote`'s defaults). On
/// GSM8K and ASDiv with Qwen2.5-Coder-0.5B it matched or beat the adaptive vote below at
/// fewer tokens, and it needs no log-probabilities (docs/results.md).
pub const NUMERIC: &str = "mixed_vote";

/// The math route: 8 samples at most, drawn 2 at a time until the leading answer cannot
/// be overtaken with probability 0.75 (Adaptive-Consistency's Beta rule), each vote
/// weighed by its sample's lowest-group token confidence (plain counts where the backend
/// gives no log-probabilities). Chosen on GSM8K's recorded samples and checked on
/// ASDiv's; it reads whole LaTeX answers, which `mixed_vote`'s numbers cannot hold.
pub const MATH: &str = "majority_voting(weight=lowest_group,batch=2,stop_at=0.75)";

/// The parameters of `auto`; a field a spec leaves out takes its default here
/// (`optillm approaches` lists them).
#[derive(Debug, Clone, Serialize, Deserialize)]
#[serde(default, deny_unknown_fields)]
pub struct Params {
    /// For multiple-choice questions, when the backend gives token-level access.
    pub multiple_choice: String,
    /// For math questions written in LaTeX.
    pub math: String,
    /// For other questions with a number and no options.
    pub numeric: String,
    /// For everything else.
    pub other: String,
}

impl Default for Params {
    fn default() -> Self {
        Self {
            multiple_choice: "choice_likelihood(format=plain,normalize=none)".into(),
            math: MATH.into(),
            numeric: NUMERIC.into(),
            other: "none".into(),
        }
    }
}

/// What kind of question a query is.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Route {
    MultipleChoice,
    Math,
    Numeric,
    Other,
}

/// The route of `query`, from its text alone.
pub fn classify(query: &str) -> Route {
    if split_choices(query).is_some() {
        Route::MultipleChoice
    } else if latex(query) {
        Route::Math
    } else if query.chars().any(|c| c.is_ascii_digit()) || spelled_quantity_question(query) {
        Route::Numeric
    } else {
        Route::Other
    }
}

/// Whether `query` is written in LaTeX: it holds a backslash command (`\boxed`,
/// `\frac`, `\sqrt`, ...). Word problems in plain text (GSM8K, ASDiv) hold none.
fn latex(query: &str) -> bool {
    query
        .as_bytes()
        .windows(2)
        .any(|w| w[0] == b'\\' && w[1].is_ascii_alphabetic())
}

/// Number words that make a question with a quantity cue a math problem.
const NUMBER_WORDS: &[&str] = &[
    "zero",
    "one",
    "two",
    "three",
    "four",
    "five",
    "six",
    "seven",
    "eight",
    "nine",
    "ten",
    "eleven",
    "twelve",
    "thirteen",
    "fourteen",
    "fifteen",
    "sixteen",
    "seventeen",
    "eighteen",
    "nineteen",
    "twenty",
    "thirty",
    "forty",
    "fifty",
    "sixty",
    "seventy",
    "eighty",
    "ninety",
    "hundred",
    "thousand",
    "million",
    "dozen",
    "half",
    "twice",
    "double",
    "triple",
];

/// Phrases that ask for a quantity.
const QUANTITY_CUES: &[&str] = &["how many", "how much", "how far", "how long", "how old"];

/// A word problem with its numbers spelled out ("Brian has four more plums than Paul. Paul
/// has seven plums. How many plums does Brian have?"): a number word and a question for a
/// quantity. ASDiv spells the numbers of 31 of its first 200 problems this way.
fn spelled_quantity_question(query: &str) -> bool {
    let lower = query.to_lowercase();
    QUANTITY_CUES.iter().any(|cue| lower.contains(cue))
        && lower
            .split(|c: char| !c.is_alphabetic())
            .any(|word| NUMBER_WORDS.contains(&word))
}

/// The `auto` strategy (the module documentation describes it): built from typed
/// [`Params`] with `new`, or by name through [`crate::strategies::build`].
pub struct Auto {
    routes: [(Route, String, Box<dyn Strategy>); 4],
}

impl Auto {
    pub fn new(params: Params) -> Result<Self, SpecError> {
        let route =
            |spec_text: &str, which: &str| -> Result<(String, Box<dyn Strategy>), SpecError> {
                let parsed = spec::parse(spec_text)?;
                if mentions_auto(&parsed) {
                    return Err(SpecError::BadParameter {
                        approach: SLUG.into(),
                        message: format!("the `{which}` route may not use `auto` itself"),
                    });
                }
                Ok((parsed.to_string(), build_spec(&parsed)?))
            };
        let (mc, mc_s) = route(&params.multiple_choice, "multiple_choice")?;
        let (math, math_s) = route(&params.math, "math")?;
        let (num, num_s) = route(&params.numeric, "numeric")?;
        let (other, other_s) = route(&params.other, "other")?;
        Ok(Self {
            routes: [
                (Route::MultipleChoice, mc, mc_s),
                (Route::Math, math, math_s),
                (Route::Numeric, num, num_s),
                (Route::Other, other, other_s),
            ],
        })
    }

    fn strategy(&self, route: Route) -> Option<&(Route, String, Box<dyn Strategy>)> {
        self.routes.iter().find(|(r, _, _)| *r == route)
    }
}

fn mentions_auto(spec: &Spec) -> bool {
    match spec {
        Spec::Stage { slug, .. } => slug == SLUG,
        Spec::Pipeline(specs) | Spec::Parallel(specs) => specs.iter().any(mentions_auto),
    }
}

impl Approach for Auto {
    const SLUG: &'static str = SLUG;
    const DESCRIPTION: &'static str = "Picks per question: multiple choice -> likelihood (with token access), \
         LaTeX math -> an adaptive vote on whole answers, a number in the question -> a program and \
         chains of thought voting (mixed_vote), else none";
    type Params = Params;

    fn from_params(params: Params) -> Result<Self, SpecError> {
        Self::new(params)
    }
}

#[async_trait]
impl Strategy for Auto {
    fn slug(&self) -> &str {
        SLUG
    }

    async fn run(&self, ctx: &Ctx, request: &StrategyRequest) -> Result<Answer, StrategyError> {
        let mut route = classify(request.query()?);
        if route == Route::MultipleChoice && !ctx.backend().capabilities().token_control {
            route = Route::Other;
        }
        let (_, name, strategy) =
            self.strategy(route)
                .ok_or_else(|| StrategyError::Unanswerable {
                    approach: SLUG.into(),
                    message: format!("no approach for {route:?} questions"),
                })?;
        tracing::info!(approach = SLUG, route = ?route, chosen = %name, "auto route");
        strategy.run(ctx, request).await
    }
}

#[cfg(test)]
mod tests {
    use std::sync::Arc;

    use super::*;
    use crate::mock::MockBackend;
    use crate::strategy::{Budget, run};
    use crate::types::Role;

    #[test]
    fn questions_are_routed_by_their_text() {
        assert_eq!(
            classify("Which is a metal?\n(A) wood\n(B) iron\n(C) glass"),
            Route::MultipleChoice
        );
        assert_eq!(
            classify("Tom has 3 apples and buys 4 more. How many?"),
            Route::Numeric
        );
        assert_eq!(classify("Write a haiku about rain."), Route::Other);
        assert_eq!(
            classify(
                "Brian has four more plums than Paul. Paul has seven. How many plums does Brian have?"
            ),
            Route::Numeric
        );
        assert_eq!(
            classify("A dozen eggs cost twice as much as milk. How much is the milk?"),
            Route::Numeric
        );
        // A number word alone, or a quantity cue alone, is not a math problem.
        assert_eq!(classify("Tell me one thing about Paris."), Route::Other);
        assert_eq!(classify("How many planets are there?"), Route::Other);
        // LaTeX math (MATH-style problems) takes its own route; `$` alone is no LaTeX.
        assert_eq!(
            classify("Compute $\\frac{1}{2} + 3$. Put your final answer in \\boxed{}."),
            Route::Math
        );
        assert_eq!(
            classify("Find $x$ if $x^2 = 4$. Answer in \\boxed{}."),
            Route::Math
        );
        assert_eq!(
            classify("A pen costs $3 and a book $12. How much do both cost?"),
            Route::Numeric
        );
        // Words are whole words: "someone" holds no "one".
        assert_eq!(
            classify("How much does someone need to sleep?"),
            Route::Other
        );
    }

    #[test]
    fn routes_are_specs_and_auto_may_not_nest() {
        assert!(Auto::new(Params::default()).is_ok());
        let nested = Params {
            numeric: "re2&auto".into(),
            ..Params::default()
        };
        assert!(matches!(
            Auto::new(nested),
            Err(SpecError::BadParameter { .. })
        ));
        let bad = Params {
            other: "nonsense".into(),
            ..Params::default()
        };
        assert!(Auto::new(bad).is_err());
    }

    #[tokio::test]
    async fn latex_math_votes_adaptively_on_whole_answers() {
        let question = "Convert $(0,3)$ to polar coordinates. Answer in \\boxed{}.";
        let mock = Arc::new(MockBackend::scripted(
            ["So \\boxed{(3, \\frac{\\pi}{2})}."; 8],
        ));
        let auto = Auto::new(Params::default()).unwrap();
        let out = run(
            &auto,
            mock.clone(),
            &StrategyRequest::user(question),
            Budget::default(),
        )
        .await
        .unwrap();
        // majority_voting, adaptive: two samples that agree are enough.
        assert_eq!(mock.requests().len(), 1);
        assert_eq!(mock.requests()[0].n, 2);
        assert_eq!(out.vote.unwrap().winner, "(3,\\frac{\\pi}{2})");

        // Two that disagree are not: two more are drawn, and 3 to 1 stops it.
        let mock = Arc::new(MockBackend::scripted([
            "\\boxed{7}",
            "\\boxed{(3, 0)}",
            "\\boxed{7}",
            "\\boxed{7}",
        ]));
        let out = run(
            &auto,
            mock.clone(),
            &StrategyRequest::user(question),
            Budget::default(),
        )
        .await
        .unwrap();
        assert_eq!(mock.requests().len(), 2);
        assert_eq!(out.vote.unwrap().winner, "7");
    }

    #[tokio::test]
    async fn word_problems_vote_a_program_and_chains_and_others_pass_through() {
        // The program and the greedy chain agree: two calls, no samples.
        let mock = Arc::new(MockBackend::new(|r, _| {
            Ok(
                if r.messages.first().is_some_and(|m| m.role == Role::System) {
                    "```python\ndef solution():\n    return 3 + 4\n```".to_string()
                } else {
                    "3 + 4 = 7. The answer is 7.".to_string()
                },
            )
        }));
        let auto = Auto::new(Params::default()).unwrap();
        let out = run(
            &auto,
            mock.clone(),
            &StrategyRequest::user("Tom has 3 apples and buys 4 more. How many has he?"),
            Budget::default(),
        )
        .await
        .unwrap();
        assert_eq!(mock.requests().len(), 2);
        assert!(mock.requests().iter().all(|r| r.n == 1));
        assert_eq!(out.vote.unwrap().winner, "7");

        let mock = Arc::new(MockBackend::scripted(["Rain falls."]));
        let out = run(
            &auto,
            mock.clone(),
            &StrategyRequest::user("Write a haiku about rain."),
            Budget::default(),
        )
        .await
        .unwrap();
        assert_eq!(mock.requests()[0].n, 1);
        assert_eq!(out.answer, "Rain falls.");
    }

    #[tokio::test]
    async fn multiple_choice_without_token_access_is_answered_by_generation() {
        // MockBackend has no token-level access: likelihood is impossible, `other` runs.
        let mock = Arc::new(MockBackend::scripted(["The answer is (B)."]));
        let auto = Auto::new(Params::default()).unwrap();
        let out = run(
            &auto,
            mock.clone(),
            &StrategyRequest::user("Which is a metal?\n(A) wood\n(B) iron"),
            Budget::default(),
        )
        .await
        .unwrap();
        assert_eq!(mock.requests().len(), 1);
        assert_eq!(out.answer, "The answer is (B).");
    }
}
