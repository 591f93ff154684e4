//! Selection helpers shared by the sampling strategies: voting on extracted answers,
//! model ratings run concurrently, and handling of partial results when the budget
//! cuts a concurrent stage.

use futures::future::join_all;

use super::util::{parse_rating, samples};
use crate::extract::{AnswerKind, Vote, extract, extract_as};
use crate::strategy::{Ctx, StrategyError, StrategyRequest};
use crate::types::{Message, Sampling};

/// The outcome of a vote over sample texts.
#[derive(Debug, Clone, PartialEq)]
pub(crate) struct SampleVote {
    /// The answer extracted from each sample (`None`: no answer found).
    pub answers: Vec<Option<String>>,
    /// The vote, when at least one answer was found.
    pub vote: Option<Vote>,
}

impl SampleVote {
    /// The index of the sample returned for the vote: the first of the winning group.
    pub fn chosen(&self) -> Option<usize> {
        self.vote.as_ref().and_then(Vote::chosen)
    }

    /// One representative sample index per answer group, most votes first.
    pub fn representatives(&self) -> Vec<usize> {
        let Some(vote) = &self.vote else {
            return Vec::new();
        };
        vote.distribution
            .iter()
            .filter_map(|(answer, _)| {
                self.answers.iter().position(|a| {
                    a.as_deref().map(crate::extract::normalize).as_ref() == Some(answer)
                })
            })
            .collect()
    }

    /// The samples labelled with their answer and its votes, for `Answer::candidates`:
    /// `[answer: 18, votes: 3/5]` then the sample.
    pub fn labelled(&self, texts: &[String]) -> Vec<String> {
        let total = texts.len();
        texts
            .iter()
            .zip(&self.answers)
            .map(|(t, a)| match a {
                Some(a) => {
                    let key = crate::extract::normalize(a);
                    let votes = self
                        .vote
                        .as_ref()
                        .and_then(|v| v.distribution.iter().find(|d| d.0 == key))
                        .map_or(0, |d| d.1);
                    format!("[answer: {key}, votes: {votes}/{total}]\n{t}")
                }
                None => format!("[answer: none]\n{t}"),
            })
            .collect()
    }
}

/// Extracts an answer from every sample (as `kind`, or any kind when `None`) and votes.
/// When no sample has an answer of that kind, votes on the samples' final lines, so
/// open-ended answers that agree still win over a lone one.
pub(crate) fn vote_samples(texts: &[String], kind: Option<AnswerKind>) -> SampleVote {
    let answers: Vec<Option<String>> = texts.iter().map(|t| extract_as(t, kind)).collect();
    if answers.iter().any(Option::is_some) {
        let vote = crate::extract::vote(&answers);
        return SampleVote { answers, vote };
    }
    let answers: Vec<Option<String>> = texts.iter().map(|t| extract(t, AnswerKind::Text)).collect();
    let vote = crate::extract::vote(&answers);
    SampleVote { answers, vote }
}

/// The sample a voting strategy would return now: the first of the winning group,
/// else the first sample.
pub(crate) fn best_guess(texts: &[String], kind: Option<AnswerKind>) -> Option<String> {
    let i = vote_samples(texts, kind).chosen().unwrap_or(0);
    texts.get(i).cloned()
}

/// The results of concurrent calls: the successes in order (`None` for a call the
/// budget cut), and the budget error if there was one. Any other error is returned.
pub(crate) fn settle<T>(
    results: Vec<Result<T, StrategyError>>,
) -> Result<(Vec<Option<T>>, Option<StrategyError>), StrategyError> {
    let mut out = Vec::with_capacity(results.len());
    let mut cut = None;
    for r in results {
        match r {
            Ok(v) => out.push(Some(v)),
            Err(StrategyError::BudgetExhausted) => {
                out.push(None);
                cut = Some(StrategyError::BudgetExhausted);
            }
            Err(e) => return Err(e),
        }
    }
    Ok((out, cut))
}

/// The index of the highest rating (the first one on ties); `None` when nothing was rated.
pub(crate) fn argmax(ratings: &[Option<f64>]) -> Option<usize> {
    let mut best: Option<(usize, f64)> = None;
    for (i, r) in ratings.iter().enumerate() {
        if let Some(r) = *r {
            if best.is_none_or(|(_, b)| r > b) {
                best = Some((i, r));
            }
        }
    }
    best.map(|(i, _)| i)
}

/// The reference best-of-n rating instruction (asked as a user turn after the response,
/// which small models' chat templates accept more readily than a second system message).
pub(crate) const RATING_PROMPT: &str = "Rate the above response on a scale from 0 to 10, where 0 is poor and 10 is excellent. Consider factors such as relevance, coherence, and helpfulness. Respond with only a number.";

/// Has the model rate each candidate 0-10, all ratings concurrently. Returns the
/// ratings (`None`: unparsable, or cut by the budget) and the budget error if one
/// call was cut.
pub(crate) async fn rate_all(
    ctx: &Ctx,
    request: &StrategyRequest,
    candidates: &[String],
    step: &Sampling,
) -> Result<(Vec<Option<f64>>, Option<StrategyError>), StrategyError> {
    let calls = candidates.iter().enumerate().map(|(i, c)| {
        let mut messages = request.messages.clone();
        messages.push(Message::assistant(c.clone()));
        messages.push(Message::user(RATING_PROMPT));
        async move {
            let texts = samples(
                ctx,
                request,
                &format!("rate candidate {}", i + 1),
                messages,
                step,
                1,
            )
            .await?;
            Ok(texts.first().and_then(|t| parse_rating(t, 10.0)))
        }
    });
    let (ratings, cut) = settle(join_all(calls).await)?;
    Ok((ratings.into_iter().map(Option::flatten).collect(), cut))
}

#[cfg(test)]
mod tests {
    use super::*;

    fn texts(v: &[&str]) -> Vec<String> {
        v.iter().map(|s| s.to_string()).collect()
    }

    #[test]
    fn votes_and_labels_samples() {
        let t = texts(&[
            "I think it is 17.",
            "So the answer is 18.",
            "no idea",
            "#### 18",
        ]);
        let v = vote_samples(&t, None);
        assert_eq!(v.chosen(), Some(1));
        assert_eq!(v.representatives(), vec![1, 0]);
        let l = v.labelled(&t);
        assert_eq!(l[1], "[answer: 18, votes: 2/4]\nSo the answer is 18.");
        assert_eq!(l[0], "[answer: 17, votes: 1/4]\nI think it is 17.");
        assert!(l[2].starts_with("[answer: none]"));
        assert_eq!(
            best_guess(&t, None).as_deref(),
            Some("So the answer is 18.")
        );
    }

    #[test]
    fn falls_back_to_final_lines_when_no_answer_of_the_kind() {
        let t = texts(&["Blue.", "It is red", "Hmm.\nblue"]);
        let v = vote_samples(&t, Some(AnswerKind::Number));
        assert_eq!(v.chosen(), Some(0));
        assert_eq!(v.vote.unwrap().count, 2);
    }

    const SLUGS: [&str; 9] = [
        "re2",
        "diverse",
        "self_consistency",
        "majority_voting",
        "bon",
        "moa",
        "cot_reflection",
        "genselect",
        "rto",
    ];

    #[test]
    fn registered_with_one_line_descriptions_and_defaults() {
        let catalogue = crate::strategies::catalogue();
        for slug in SLUGS {
            let info = catalogue.iter().find(|i| i.slug == slug).unwrap();
            assert!(!info.description.contains('\n'), "{slug}");
            let built = crate::strategies::build(slug, &info.params).unwrap();
            assert_eq!(built.slug(), slug);
            let mut bad = info.params.clone();
            bad.insert("no_such_param".into(), serde_json::json!(1));
            assert!(matches!(
                crate::strategies::build(slug, &bad),
                Err(crate::spec::SpecError::BadParameter { .. })
            ));
        }
        let sc = &catalogue
            .iter()
            .find(|i| i.slug == "self_consistency")
            .unwrap()
            .params;
        assert_eq!(sc.get("k"), Some(&serde_json::json!(5)));
    }

    #[tokio::test]
    async fn registry_params_reach_the_request() {
        use std::sync::Arc;

        use crate::mock::MockBackend;
        use crate::strategy::{Budget, run};

        let params: crate::strategies::Params = serde_json::from_value(serde_json::json!({
            "k": 3, "temperature": 0.4, "answer_kind": "yes_no"
        }))
        .unwrap();
        let sc = crate::strategies::build("self_consistency", &params).unwrap();
        let mock = Arc::new(MockBackend::scripted(["No, 2 is less.", "Yes", "no"]));
        let out = run(
            sc.as_ref(),
            mock.clone(),
            &StrategyRequest::user("Is 2 > 3?"),
            Budget::default(),
        )
        .await
        .unwrap();
        assert_eq!(mock.requests()[0].n, 3);
        assert_eq!(mock.requests()[0].sampling.temperature, Some(0.4));
        assert_eq!(out.answer, "No, 2 is less.");
        assert!(out.candidates[0].starts_with("[answer: no, votes: 2/3]"));
    }

    #[test]
    fn argmax_and_settle() {
        assert_eq!(argmax(&[Some(3.0), None, Some(7.0), Some(7.0)]), Some(2));
        assert_eq!(argmax(&[None, None]), None);
        let (v, cut) = settle(vec![Ok(1), Err(StrategyError::BudgetExhausted), Ok(3)]).unwrap();
        assert_eq!(v, vec![Some(1), None, Some(3)]);
        assert!(matches!(cut, Some(StrategyError::BudgetExhausted)));
        assert!(settle::<u8>(vec![Err(StrategyError::NoQuery)]).is_err());
    }
}
