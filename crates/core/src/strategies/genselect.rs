//! `genselect`: GenSelect (arXiv 2504.16891). n candidates at T=0.7 in one request,
//! then one comparison call that names the best ("BEST CANDIDATE: i"); when the
//! choice cannot be parsed, the extracted-answer majority decides.

use std::sync::LazyLock;

use async_trait::async_trait;
use regex::Regex;
use serde::{Deserialize, Serialize};

use super::Approach;
use super::read_answer::answer_kind;
use super::select::{best_guess, vote_samples};
use super::util::{one, samples, temp};
use crate::extract::AnswerKind;
use crate::spec::SpecError;
use crate::strategy::{Answer, Ctx, Strategy, StrategyError, StrategyRequest};
use crate::types::Message;

/// The parameters of `genselect`; a field a spec leaves out takes its default here
/// (`optillm approaches` lists them).
#[derive(Debug, Clone, Serialize, Deserialize)]
#[serde(default, deny_unknown_fields)]
pub struct Params {
    /// Candidates, in one request.
    pub n: u32,
    pub temperature: f32,
    pub comparison_temperature: f32,
    /// Answer kind for the fallback vote; `null`: any.
    pub answer_kind: Option<AnswerKind>,
}

impl Default for Params {
    fn default() -> Self {
        Self {
            n: 4,
            temperature: 0.7,
            comparison_temperature: 0.3,
            answer_kind: None,
        }
    }
}

/// The `genselect` strategy (the module documentation describes it): built from typed
/// [`Params`] with `new`, or by name through [`crate::strategies::build`].
#[derive(Debug, Clone)]
pub struct GenSelect {
    params: Params,
}

impl GenSelect {
    pub fn new(params: Params) -> Result<Self, SpecError> {
        if params.n < 2 {
            return Err(SpecError::BadParameter {
                approach: Self::SLUG.into(),
                message: "n must be at least 2 (there is nothing to select from one)".into(),
            });
        }
        Ok(Self { params })
    }
}

const EVALUATOR: &str =
    "You are an expert evaluator skilled at comparing and selecting high-quality responses.";

pub(crate) fn comparison_prompt(query: &str, candidates: &[String]) -> String {
    let mut p = format!(
        "You are an expert evaluator tasked with selecting the best response to the following query:

Query: {query}

I will provide you with {} different candidate responses. Please analyze each one carefully and select the best response based on the following criteria:

1. **Correctness and Accuracy**: Is the response factually correct and accurate?
2. **Completeness**: Does it fully address all aspects of the query?
3. **Clarity**: Is the explanation clear and easy to understand?
4. **Logical Coherence**: Is the reasoning sound and well-structured?
5. **Practical Value**: Does it provide useful, actionable information?

For coding problems, also consider:
- Code correctness and efficiency
- Best practices and style
- Error handling

Here are the candidate responses:

",
        candidates.len()
    );
    for (i, c) in candidates.iter().enumerate() {
        p.push_str(&format!("=== Candidate {} ===\n{}\n\n", i + 1, c.trim()));
    }
    p.push_str(
        "Please analyze all candidates and provide:
1. A brief comparison highlighting the strengths and weaknesses of each candidate
2. Your selection of the best candidate (specify the number)
3. A clear explanation of why you selected that candidate

Format your response as:
COMPARISON:
[Your comparison analysis]

BEST CANDIDATE: [number]

REASONING:
[Your explanation for the selection]",
    );
    p
}

static SELECTION: LazyLock<Vec<Regex>> = LazyLock::new(|| {
    [
        r"(?i)best\s+candidate\**\s*:?\s*\**\s*(?:candidate\s*)?#?\[?(\d+)",
        r"(?i)candidate\s+#?(\d+)\s+is\s+(?:the\s+)?best",
        r"(?i)\bi\s+(?:would\s+)?(?:select|choose|pick)\s+candidate\s+#?(\d+)",
        r"(?i)the\s+best\s+(?:response|candidate)\s+is\s+(?:candidate\s+)?(?:number\s+)?#?(\d+)",
    ]
    .iter()
    .filter_map(|p| Regex::new(p).ok())
    .collect()
});

/// The 0-based index the comparison selects, when it names a valid candidate.
/// "BEST CANDIDATE: i" wins (its last mention); then looser phrasings.
pub(crate) fn parse_selection(text: &str, n: usize) -> Option<usize> {
    SELECTION.iter().find_map(|re| {
        re.captures_iter(text)
            .filter_map(|c| c.get(1)?.as_str().parse::<usize>().ok())
            .filter(|&i| (1..=n).contains(&i))
            .last()
            .map(|i| i - 1)
    })
}

impl Approach for GenSelect {
    const SLUG: &'static str = "genselect";
    const DESCRIPTION: &'static str =
        "GenSelect: n candidates, one comparison call names the best; vote when unparsable";
    type Params = Params;

    fn from_params(params: Params) -> Result<Self, SpecError> {
        Self::new(params)
    }
}

#[async_trait]
impl Strategy for GenSelect {
    fn slug(&self) -> &str {
        Self::SLUG
    }

    async fn run(&self, ctx: &Ctx, request: &StrategyRequest) -> Result<Answer, StrategyError> {
        let query = request.query()?;
        let p = &Params {
            answer_kind: answer_kind(query, self.params.answer_kind),
            ..self.params.clone()
        };
        let texts = samples(
            ctx,
            request,
            "candidates",
            request.messages.clone(),
            &temp(p.temperature),
            p.n,
        )
        .await?;
        if let Some(guess) = best_guess(&texts, p.answer_kind) {
            ctx.offer(guess);
        }
        if texts.len() < 2 {
            return Ok(Answer {
                choices: texts.first().cloned().into_iter().collect(),
                candidates: texts,
                vote: None,
            });
        }
        let comparison = one(
            ctx,
            request,
            "compare candidates",
            vec![
                Message::system(EVALUATOR),
                Message::user(comparison_prompt(query, &texts)),
            ],
            &temp(p.comparison_temperature),
        )
        .await?;
        let chosen = match parse_selection(&comparison, texts.len()) {
            Some(i) => i,
            None => {
                tracing::warn!("genselect: no candidate named in the comparison; voting instead");
                vote_samples(&texts, p.answer_kind).chosen().unwrap_or(0)
            }
        };
        let mut candidates = texts.clone();
        candidates.push(format!("[comparison]\n{comparison}"));
        Ok(Answer {
            choices: vec![texts.get(chosen).cloned().unwrap_or_default()],
            candidates,
            vote: None,
        })
    }
}

#[cfg(test)]
mod tests {
    use std::sync::Arc;

    use super::*;
    use crate::mock::MockBackend;
    use crate::strategy::{Budget, run};
    use crate::types::Sampling;

    #[test]
    fn selection_parsing() {
        assert_eq!(
            parse_selection("COMPARISON: ...\n\nBEST CANDIDATE: 3\n\nREASONING: ...", 4),
            Some(2)
        );
        assert_eq!(parse_selection("**BEST CANDIDATE:** [2]", 4), Some(1));
        assert_eq!(parse_selection("Best candidate: Candidate 4", 4), Some(3));
        assert_eq!(
            parse_selection("Candidate 1 is the best overall.", 4),
            Some(0)
        );
        assert_eq!(parse_selection("I would select candidate 2.", 4), Some(1));
        assert_eq!(parse_selection("BEST CANDIDATE: 9", 4), None);
        assert_eq!(parse_selection("They are all fine.", 4), None);
    }

    const CANDIDATES: [&str; 4] = ["x = 5", "x is 6", "so x=6", "x = 7"];

    #[tokio::test]
    async fn n_candidates_then_one_comparison() {
        let script = CANDIDATES
            .iter()
            .copied()
            .chain(["COMPARISON: fine\nBEST CANDIDATE: 4\nREASONING: r"]);
        let mock = Arc::new(MockBackend::scripted(script));
        let mut req = StrategyRequest::user("Solve x+1=6");
        req.sampling = Sampling::default().with_min_p(0.05);
        let gs = GenSelect::new(Params::default()).unwrap();
        let out = run(&gs, mock.clone(), &req, Budget::default())
            .await
            .unwrap();
        assert_eq!(out.answer, "x = 7");
        let sent = mock.requests();
        assert_eq!(sent.len(), 2);
        assert_eq!(sent[0].n, 4);
        assert_eq!(sent[0].sampling.temperature, Some(0.7));
        assert_eq!(sent[0].sampling.min_p, Some(0.05));
        assert_eq!(sent[1].n, 1);
        assert_eq!(sent[1].sampling.temperature, Some(0.3));
        let prompt = &sent[1].messages[1].content;
        assert!(prompt.contains("Query: Solve x+1=6"));
        assert!(prompt.contains("4 different candidate responses"));
        assert!(prompt.contains("=== Candidate 2 ===\nx is 6"));
    }

    #[tokio::test]
    async fn unparsable_comparison_falls_back_to_the_vote() {
        let script = CANDIDATES
            .iter()
            .copied()
            .chain(["They all look good to me."]);
        let mock = Arc::new(MockBackend::scripted(script));
        let gs = GenSelect::new(Params::default()).unwrap();
        let out = run(
            &gs,
            mock.clone(),
            &StrategyRequest::user("Solve x+1=6"),
            Budget::default(),
        )
        .await
        .unwrap();
        // 6 has two votes: the first of them is returned.
        assert_eq!(out.answer, "x is 6");
    }

    #[tokio::test]
    async fn budget_cut_before_comparison_returns_the_voted_candidate() {
        let mock = Arc::new(MockBackend::scripted(CANDIDATES));
        // Prompt (2 words) + 11 words of candidates.
        let budget = Budget {
            max_total_tokens: Some(13),
            max_duration: None,
        };
        let gs = GenSelect::new(Params::default()).unwrap();
        let out = run(
            &gs,
            mock.clone(),
            &StrategyRequest::user("Solve x+1=6"),
            budget,
        )
        .await
        .unwrap();
        assert!(out.budget_exhausted);
        assert_eq!(out.answer, "x is 6");
        assert_eq!(mock.calls(), 1);
    }

    #[test]
    fn needs_two_candidates() {
        assert!(
            GenSelect::new(Params {
                n: 1,
                ..Params::default()
            })
            .is_err()
        );
    }
}
