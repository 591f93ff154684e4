//! `auto`: picks an approach per question from the question alone and what the backend
//! can do.
//!
//! - A multiple-choice question (lettered options `(A) ...`, `(B) ...` after the stem,
//!   as [`split_choices`] reads them) on a backend with token-level access: the options
//!   are ranked by likelihood (`multiple_choice`, [`MULTIPLE_CHOICE`]): their letters
//!   after the question with its options when the model is sure of one, else their
//!   texts. Measured on ARC-Easy with SmolLM2-135M, likelihood is the only approach that
//!   beats greedy decoding; every generating approach scored at or below it. A model
//!   that reads the options well loses by the texts (ARC-Challenge with
//!   Qwen2.5-Coder-1.5B: greedy 57.5%, the texts 38.0%) and not by its sure letters
//!   (55.5%). Without token access: `other`.
//! - A request that holds code (a fenced block, or a line that opens a Python `def` or
//!   `class`, as HumanEval's function stubs do) and is not multiple choice: `code`, by
//!   default `doctest` ([`CODE`]): the greedy program, checked on the question's own
//!   examples, with others sampled only where it fails one. Its docstring's examples
//!   hold numbers, so without this it would take the word-problem route, whose program
//!   and votes answer with numbers.
//! - A math question written in LaTeX (it asks for the answer in `\boxed{}`, or uses a
//!   LaTeX command such as `\frac`), as MATH-style problems are: `math`, a vote that
//!   compares whole LaTeX answers (a point, an interval, `\frac{\pi}{2}`).
//! - Any other question with a number in it and no options (a math word problem):
//!   `numeric`, the best measured approach for word problems (see docs/results.md).
//!   Spelled-out numbers count when the question asks for a quantity ("four more plums
//!   ... How many plums ...").
//! - Such a question whose answer is not a number ("What time does it end?", "Who has
//!   more?", "Does she have enough money?", as `asked_kind` reads the wording):
//!   `word_answer`, a vote of sampled chains (a program prints numbers).
//! - Anything else: `other` (one completion).
//!
//! The six routes are approach specs, so a user can change them
//! (`auto(numeric="pot")`); a route may not itself contain `auto`.

use async_trait::async_trait;
use serde::{Deserialize, Serialize};

use super::Approach;
use super::build_spec;
use super::choice_likelihood::split_choices;
use crate::extract::AnswerKind;
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

/// The route of word problems whose answer is not a number (`asked_kind`: a name, a
/// time, yes / no): the same adaptive vote of sampled chains as `math`. A program prints
/// numbers, so `mixed_vote` is the wrong tool there: on the 14 such questions of ASDiv's
/// first 200, Qwen2.5-Coder-0.5B's programs answered 1, `mixed_vote` 2, greedy decoding
/// 4 and this vote 7 (docs/results.md).
pub const WORD_ANSWER: &str = MATH;

/// The route for multiple-choice questions: `choice_likelihood`'s defaults, the options'
/// letters when the model is sure of one (a model that reads the options picks by letter:
/// ARC-Challenge with Qwen2.5-Coder-1.5B 54.5% against 32.5% by the texts), else the
/// texts' likelihood per character after the question in the model's chat template
/// (plain text for a base model). Per character rather than the plain sum, which favours
/// short options: over the twelve set and model pairs measured it is ahead on eight,
/// level on one, and by 3.5 points on average; the plain sum wins on ARC-Easy (by 8.5-9 points with
/// SmolLM2-135M and Qwen2.5-Coder-0.5B) and loses badly on OpenBookQA, whose right options
/// are often the long ones (by 19.5 and 20.5 with the same models; there it fell below
/// greedy decoding). docs/results.md, "OpenBookQA and CommonsenseQA".
pub const MULTIPLE_CHOICE: &str = "choice_likelihood(score=auto)";

/// The code route: the greedy program, checked on the question's own examples in the
/// bounded interpreter, other programs sampled only where it fails one (`doctest`;
/// without examples it is greedy decoding). On HumanEval with Qwen2.5-Coder-0.5B it is
/// the one approach measured above greedy decoding (docs/results.md, "HumanEval"):
/// sampling alone costs (a sampled completion, T 0.8, the route's first default: -11.1
/// points, -21.2 to -0.8, on the first 72 problems), and `rto` only ties greedy at 5.4x
/// the tokens.
pub const CODE: &str = "doctest";

/// The parameters of `auto`; a field a spec leaves out takes its default here
/// (`optillm approaches` lists them).
#[derive(Debug, Clone, Serialize, Deserialize)]
#[serde(default, deny_unknown_fields)]
pub struct Params {
    /// For multiple-choice questions, when the backend gives token-level access.
    pub multiple_choice: String,
    /// For requests that hold code.
    pub code: String,
    /// For math questions written in LaTeX.
    pub math: String,
    /// For other questions with a number and no options.
    pub numeric: String,
    /// For questions with a number that ask for a word, a time or yes / no.
    pub word_answer: String,
    /// For everything else.
    pub other: String,
}

impl Default for Params {
    fn default() -> Self {
        Self {
            multiple_choice: MULTIPLE_CHOICE.into(),
            code: CODE.into(),
            math: MATH.into(),
            numeric: NUMERIC.into(),
            word_answer: WORD_ANSWER.into(),
            other: "none".into(),
        }
    }
}

/// What kind of question a query is.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Route {
    MultipleChoice,
    Code,
    Math,
    Numeric,
    WordAnswer,
    Other,
}

/// The route of `query`, from its text alone.
pub fn classify(query: &str) -> Route {
    if split_choices(query).is_some() {
        Route::MultipleChoice
    } else if holds_code(query) {
        Route::Code
    } else if latex(query) {
        Route::Math
    } else if query.chars().any(|c| c.is_ascii_digit()) || spelled_quantity_question(query) {
        if asked_kind(query).is_some() {
            Route::WordAnswer
        } else {
            Route::Numeric
        }
    } else {
        Route::Other
    }
}

/// Whether `query` holds code: a line that opens a fenced block, or one that opens a
/// Python function or class definition (`def name(`, `class Name`).
pub(crate) fn holds_code(query: &str) -> bool {
    query.lines().any(|line| {
        let t = line.trim_start();
        t.starts_with("```")
            || t.strip_prefix("def ").is_some_and(|rest| {
                rest.split_once('(')
                    .is_some_and(|(name, _)| is_identifier(name))
            })
            || t.strip_prefix("class ").is_some_and(|rest| {
                is_identifier(
                    rest.trim_end()
                        .trim_end_matches(':')
                        .split('(')
                        .next()
                        .unwrap_or_default(),
                )
            })
    })
}

/// A Python identifier: a letter or `_`, then letters, digits or `_`.
pub(crate) fn is_identifier(name: &str) -> bool {
    let mut chars = name.chars();
    chars.next().is_some_and(|c| c.is_alphabetic() || c == '_')
        && chars.all(|c| c.is_alphanumeric() || c == '_')
}

/// What the question of `query` asks for when it is not a number, from its wording:
/// yes / no for a question that opens with an auxiliary verb ("Does she have enough
/// money?"), a word for one that opens with who / which / where / when or asks "what
/// time", "what color", "what day", ... or "what is the ratio" ("What time does it
/// end?", "Who has more?"); `None` for anything else, a number ("how many", "what is the
/// total") included, and for a query without a question mark (an instruction, whose
/// clauses are no question: "..., where N is the final number."). The question is the
/// last sentence that ends with `?`; its first "how" or "what" decides, else the first
/// word of one of its clauses, after a leading preposition or conjunction ("If it bakes
/// 2 hours, what time ...", "At what time ...", "In which month ...").
pub(crate) fn asked_kind(query: &str) -> Option<AnswerKind> {
    let question = question_sentence(query)?.to_lowercase();
    let all: Vec<&str> = words(&question).collect();
    for (i, word) in all.iter().enumerate() {
        match *word {
            "how" => return None,
            "what" => {
                let next = all.get(i + 1..).unwrap_or_default();
                let word_answer = next.first().is_some_and(|w| WHAT_WORDS.contains(w))
                    || next.iter().take(3).any(|w| *w == "ratio");
                return word_answer.then_some(AnswerKind::Text);
            }
            _ => {}
        }
    }
    for clause in question.split([',', ';']) {
        let mut clause = words(clause).skip_while(|w| LEADING_WORDS.contains(w));
        let Some(first) = clause.next() else {
            continue;
        };
        if WH_WORDS.contains(&first) {
            return Some(AnswerKind::Text);
        }
        if AUXILIARIES.contains(&first) {
            return Some(AnswerKind::YesNo);
        }
    }
    None
}

/// The words of `text`: its runs of letters.
fn words(text: &str) -> impl Iterator<Item = &str> {
    text.split(|c: char| !c.is_alphabetic())
        .filter(|w| !w.is_empty())
}

/// The question of `query`: its last sentence that ends with `?` (sentences end at `?`,
/// `!`, a line break or `. ` after anything but a title such as "Mrs.", so "3.5" and
/// "Which rug should Mrs. Hilt buy?" stay whole); `None` without a question mark.
fn question_sentence(query: &str) -> Option<&str> {
    let (text, _) = query.rsplit_once('?')?;
    let sentence = text.rsplit(['?', '!', '\n']).next().unwrap_or(text);
    let ends_sentence = |at: usize| {
        let before = sentence.get(..at).unwrap_or_default();
        // The whole word before the period: "1st" is not the title "St".
        let word = before
            .rsplit(char::is_whitespace)
            .next()
            .unwrap_or_default()
            .trim_start_matches(|c: char| !c.is_alphanumeric())
            .to_lowercase();
        !TITLES.contains(&word.as_str())
    };
    let start = sentence
        .rmatch_indices(". ")
        .map(|(at, _)| at)
        .find(|&at| ends_sentence(at))
        .map_or(0, |at| at + ". ".len());
    sentence.get(start..)
}

/// Abbreviations whose period does not end a sentence: "Mrs. Hilt", "Dr. Lee".
const TITLES: &[&str] = &["mr", "mrs", "ms", "dr", "prof", "st", "mt", "jr", "sr"];

/// Question words whose answer is a word: "Who has more?", "Which color ...?"
const WH_WORDS: &[&str] = &["who", "whom", "whose", "which", "where", "when"];

/// What "what" asks for when its answer is not a number: "What time ...?"
const WHAT_WORDS: &[&str] = &[
    "time", "place", "color", "colour", "day", "date", "month", "season",
];

/// The verbs that open a yes / no question: "Does she have enough?"
const AUXILIARIES: &[&str] = &[
    "is", "are", "am", "was", "were", "do", "does", "did", "can", "could", "will", "would",
    "should", "has", "have", "had",
];

/// Words that may come before a clause's question word: "At what time ...", "So who ...".
const LEADING_WORDS: &[&str] = &[
    "at", "on", "in", "after", "before", "by", "during", "for", "to", "from", "and", "so", "then",
    "but",
];

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
    routes: [(Route, String, Box<dyn Strategy>); 6],
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
        let (code, code_s) = route(&params.code, "code")?;
        let (math, math_s) = route(&params.math, "math")?;
        let (num, num_s) = route(&params.numeric, "numeric")?;
        let (word, word_s) = route(&params.word_answer, "word_answer")?;
        let (other, other_s) = route(&params.other, "other")?;
        Ok(Self {
            routes: [
                (Route::MultipleChoice, mc, mc_s),
                (Route::Code, code, code_s),
                (Route::Math, math, math_s),
                (Route::Numeric, num, num_s),
                (Route::WordAnswer, word, word_s),
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
    const DESCRIPTION: &'static str = "Picks per question: multiple choice -> likelihood of the letters \
         when the model is sure of one, else of the texts (with token access), code -> greedy none, LaTeX math -> an \
         adaptive vote on whole answers, a number in the question -> a program and chains of \
         thought voting (mixed_vote), or the adaptive vote where it asks for a word, a time or \
         yes / no; else none";
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
    fn what_a_question_asks_for_is_read_from_its_wording() {
        let text = Some(AnswerKind::Text);
        let yes_no = Some(AnswerKind::YesNo);
        for (query, kind) in [
            // ASDiv's questions with a word, a time or yes / no for an answer.
            (
                "Mrs. Hilt has 5 cents and Jacob 3. Who has more money?",
                text,
            ),
            (
                "The movie starts at 1:30 and lasts 2 hours. What time does it end?",
                text,
            ),
            (
                "It needs to bake 2 hours and must be out at 8:10, what time should he put it in?",
                text,
            ),
            (
                "Bells ring every 3 and 4 minutes. At what time will they ring together?",
                text,
            ),
            (
                "She has 3 apples and needs 4. Does she have enough to make a pie?",
                yes_no,
            ),
            ("He has 50 cents. does the former equal the latter?", yes_no),
            // A title's period does not end the sentence.
            (
                "Rug A is 6 by 4 and rug B 5 by 5. Which rug should Mrs. Hilt buy if she \
                 wants the biggest area?",
                text,
            ),
            (
                "Dr. Lee has 3 pens. Mr. Bo has 4. How many pens do they have?",
                None,
            ),
            ("He came on May 1st. Who came 2 days later?", text),
            ("Lee met (Dr. Bo) at 3. Which one came late?", text),
            (
                "What is the ratio of guavas to apples? Guavas: 3, apples: 4.",
                text,
            ),
            // Questions for a number, whatever comes before or after them.
            ("Tom has 3 apples and buys 4. How many has he?", None),
            (
                "If her sister, who has 46 pencils, helps, how many boxes do they need?",
                None,
            ),
            (
                "If he packs 16 ounces to a pound, what is the total weight, in pounds?",
                None,
            ),
            (
                "If Kelly's budget is $65 then how much money, in dollars, does she have left?",
                None,
            ),
            ("A book costs $3.50 and a pen $1. What do both cost?", None),
            // No question mark: an instruction's clauses ask nothing.
            (
                "Find the number of bad oranges in 24.\n\nFinish with the line \"The answer is N\", \
                 where N is the final number.",
                None,
            ),
            // A question followed by an instruction is still read.
            (
                "Tom has 3 cents and needs 4. Does he have enough?\n\nThink it through. \
                 Finish with \"The answer is yes\" or \"The answer is no\".",
                yes_no,
            ),
        ] {
            assert_eq!(asked_kind(query), kind, "{query}");
        }
        assert_eq!(
            classify("She has 3 apples and needs 4. Does she have enough?"),
            Route::WordAnswer
        );
        assert_eq!(
            classify("The movie starts at 1:30. What time does it end?"),
            Route::WordAnswer
        );
        // Without a number it is no word problem.
        assert_eq!(classify("Who wrote Hamlet?"), Route::Other);
        // Code: a fenced block or a Python definition, though its examples hold numbers.
        assert_eq!(
            classify(
                "```python\ndef add(x: int, y: int) -> int:\n    \"\"\"add(2, 3) == 5\"\"\"\n```\nComplete the function."
            ),
            Route::Code
        );
        assert_eq!(
            classify("def f(n):\n    # return the 3rd power of n\n"),
            Route::Code
        );
        assert_eq!(classify("class Stack:\n    pass"), Route::Code);
        // Words that only look like it are not code.
        assert_eq!(
            classify("How would you define 3 friends who class things?"),
            Route::Numeric
        );
    }

    #[tokio::test]
    async fn word_problems_with_a_word_answer_vote_chains_without_a_program() {
        let mock = Arc::new(MockBackend::scripted(
            ["So yes, she has enough. The answer is yes."; 2],
        ));
        let auto = Auto::new(Params::default()).unwrap();
        let out = run(
            &auto,
            mock.clone(),
            &StrategyRequest::user("Pie needs 3 apples and she has 4. Does she have enough?"),
            Budget::default(),
        )
        .await
        .unwrap();
        // The adaptive vote: one request of two samples, no program (no system prompt).
        let requests = mock.requests();
        assert_eq!(requests.len(), 1);
        assert_eq!(requests[0].n, 2);
        assert!(requests[0].messages.iter().all(|m| m.role != Role::System));
        assert_eq!(out.vote.unwrap().winner, "yes");
    }

    #[tokio::test]
    async fn code_is_checked_on_its_examples() {
        let question = "Complete the function.\n```python\ndef add(a, b):\n    \"\"\"\n    >>> add(2, 3)\n    5\n    \"\"\"\n```";
        let wrong = "```python\ndef add(a, b):\n    return a - b\n```";
        let right = "```python\ndef add(a, b):\n    return a + b\n```";
        let mock = Arc::new(MockBackend::scripted([wrong, wrong, right]));
        let auto = Auto::new(Params::default()).unwrap();
        let out = run(
            &auto,
            mock.clone(),
            &StrategyRequest::user(question),
            Budget::default(),
        )
        .await
        .unwrap();
        // The greedy program fails `add(2, 3) == 5`: two sampled, the one that passes wins.
        let sent: Vec<_> = mock
            .requests()
            .iter()
            .map(|r| (r.n, r.sampling.temperature))
            .collect();
        assert_eq!(sent, vec![(1, Some(0.0)), (2, Some(0.8))]);
        assert_eq!(out.answer, right);
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
