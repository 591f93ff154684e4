//! `cepo`: Cerebras Planning and Optimization (CePO, as in the Python optillm reference):
//! best-of-n over plan -> execute pipelines.
//!
//! Each of the `bestofn` completions runs the pipeline below; the completions run
//! concurrently, and so do the independent calls inside one:
//!
//! 1. plans: `planning_n` step-by-step plans with a confidence per step (T 0.55), asked in
//!    one n-request;
//! 2. execution of each plan, in its own conversation (T 0.25), concurrently. A plan or an
//!    execution cut by its token cap (finish reason `length`) is rejected, and the missing
//!    plans are asked for again while fewer than `planning_m` plans have been drawn in all;
//!    when none survives, the last execution (or plan) is used anyway, as in the reference;
//! 3. review of the executions for inconsistencies, ending in a refined final solution (T 0.1);
//! 4. the answer to the question, from that solution (T 0).
//!
//! With `plan_diversity`, one call first asks for `bestofn` fundamentally different
//! high-level approaches (a JSON object, asked twice at most), and completion i plans along
//! approach i; when no answer parses, the completions plan without one.
//!
//! The completions are then rated: `rating = "absolute"` asks the model, as an impartial
//! judge, to rate each one 0 or 1 (`"Rating: [[1]]"`; the ratings run concurrently) and takes
//! the highest; `rating = "pairwise"` shows the judge every ordered pair of completions (both
//! orders, so n * (n - 1) calls, concurrently), asks `"Better Response: [[0]]"` or `"[[1]]"` and
//! takes the completion with the most wins. Both break ties by the vote on extracted answers
//! (and use the vote alone when nothing parses); an unparsable pairwise verdict counts for
//! neither response (the reference credits the first shown, which with both orders asked
//! only adds a tie). `rating = "majority"` skips the judge and returns the first completion
//! of the majority answer. At the defaults a run makes 3 * (1 + 3 + 2) + 3 = 21 calls when
//! no plan is rejected, at most 3 * (6 + 6 + 2) + 3 = 45; pairwise rating makes 6 judge
//! calls instead of 3.
//!
//! Defaults reduced for small models: every token cap is 1024 (reference 4096), which keeps
//! the review prompt (three executions) inside a small model's context.

use std::sync::LazyLock;

use async_trait::async_trait;
use futures::future::join_all;
use regex::Regex;
use serde::{Deserialize, Serialize};

use super::Approach;
use super::read_answer::answer_kind;
use super::select::{settle, vote_samples};
use super::util::{numbered, prompt, temp};
use crate::extract::{AnswerKind, normalize};
use crate::spec::SpecError;
use crate::strategy::{Answer, Ctx, Strategy, StrategyError, StrategyRequest};
use crate::types::{ChatRequest, FinishReason, Message, Sampling};

pub const SLUG: &str = "cepo";

const EXECUTE: &str = "Can you execute the above plan step-by-step to produce the final answer. \
                       Be extra careful when executing steps where your confidence is lower.";
const JUDGE: &str = "Please act as an impartial judge and evaluate the accuracy of the response \
provided by an AI assistant to the user question displayed below. Your evaluation should consider \
only correctness and accuracy as the primary factor. Evaluation Criteria:\n\
- Correctness: How free is it from errors or mistakes?\n\
- Accuracy: Are the information and explanations factually correct?\n\
Evaluation Process:\n\
1. Carefully review the user question and the AI assistant's response.\n\
2. Assess the response for any inaccuracies in reasoning as well as execution.\n\
3. Provide a detailed explanation of your step-by-step evaluation.\n\
4. Identify if the final answer is correct or not.\n\
Begin your evaluation by thinking through the given problem and response step-by-step. \
VERY IMPORTANT: Re-do any calculations present and check if you arrive at the same answer. \
Thoroughly check for any inaccuracies in reasoning and calculations for each step. \
Be as objective as possible. After providing your detailed explanation, please rate the response \
as 0 or 1, (0 for incorrect and 1 for correct) by strictly following this format: \
\"Rating: [[rating]]\", for example: \"Rating: [[0]]\"";
const PAIRWISE_JUDGE: &str = "Please act as an impartial judge and compare the quality of the two \
responses provided by the AI assistant to the user's question displayed below. Evaluation Criteria:\n\
- Helpfulness: How effectively does the response meet the user's needs?\n\
- Relevance: How directly does the response address the original question?\n\
- Accuracy: Are the information and explanations factually correct?\n\
- Depth: Does the response provide comprehensive and meaningful insights?\n\
- Creativity: Does the response offer unique or innovative perspectives?\n\
- Clarity: Is the response well-organized, coherent, and easy to understand?\n\
Evaluation Process:\n\
1. Carefully review the user's question and the AI assistant's responses.\n\
2. Compare the responses against each other for each criterion.\n\
3. Provide a concise explanation of your overall evaluation.\n\
4. Select the response that is superior based on the above criteria.\n";
const COMPARE: &str = "Reply with \"Better Response: [[response id]]\".\n\
If the first response is better, reply with \"Better Response: [[0]]\". \
If the second response is better, reply with \"Better Response: [[1]]\".";
const RATE: &str = "Rate the above response beginning with the detailed explanation followed by \
                    a rating of 0 or 1 by strictly following this format: \
                    \"Explanation: <reason for your rating>\n\nRating: [[rating]]\".";

fn plan_prompt(question: &str) -> String {
    format!(
        "To answer this question, can you come up with a concise plan to solve it step-by-step \
         but do not provide the final answer. Also, for each step, provide your confidence in the \
         correctness of that step as well as your ability to execute it correctly. Here is the \
         question:\n{question}\nRead the question again:\n\n{question}"
    )
}

fn diverse_plan_prompt(question: &str, approach: &str) -> String {
    format!(
        "To answer this question, can you come up with a concise plan using to solve it \
         step-by-step but do not provide the final answer. Here is the approach you need to \
         follow to generate the plan: {approach}. Also, for each step, provide your confidence \
         in the correctness of that step as well as your ability to execute it correctly. Here \
         is the question:\n{question}\nRead the question again:\n\n{question}"
    )
}

fn approaches_prompt(question: &str, count: u32) -> String {
    format!(
        "To answer the question: \"{question}\", please propose {count} different high-level \
         approaches to solve the problem. All approaches should be fundamentally different from \
         each other and easily executable without too many steps. Do not include a step-by-step \
         plan or the final answer. You must present the approaches in the following JSON format \
         which is directly loadable:\n{{\n    \"approach_1\": \"<Description of approach 1>\",\n    \
         \"approach_2\": \"<Description of approach 2>\",\n    \"approach_3\": \"<Description of \
         approach 3>\",\n    ...\n}}"
    )
}

/// The approaches of a JSON object such as `{"approach_1": "...", "approach_2": "..."}`,
/// the first one in the text (code fences and prose around it are ignored), in the order
/// of the numbers in their keys; `None` when no object parses or none has a text value.
pub(crate) fn parse_approaches(text: &str) -> Option<Vec<String>> {
    let (_, after_open) = text.split_once('{')?;
    let from_open = format!("{{{after_open}");
    // The first object from the first brace on; what follows it is ignored.
    let object = serde_json::Deserializer::from_str(&from_open)
        .into_iter::<serde_json::Map<String, serde_json::Value>>()
        .next()?
        .ok()?;
    let mut numbered: Vec<(u32, String)> = object
        .into_iter()
        .filter_map(|(key, value)| {
            let text = value.as_str()?.trim().to_string();
            let digits: String = key.chars().filter(char::is_ascii_digit).collect();
            (!text.is_empty()).then(|| (digits.parse().unwrap_or(u32::MAX), text))
        })
        .collect();
    numbered.sort_by_key(|(k, _)| *k);
    let approaches: Vec<String> = numbered.into_iter().map(|(_, t)| t).collect();
    (!approaches.is_empty()).then_some(approaches)
}

fn review_prompt(count: usize, question: &str) -> String {
    format!(
        "Can you review your last {count} responses and identify any inconsistency between them. \
         After that, can you address it and present a final step-by-step solution to the problem? \
         Here is the question:\n{question}"
    )
}

fn answer_prompt(question: &str) -> String {
    format!(
        "Use your final solution from above to correctly answer the question. Here is the \
         question:\n{question}"
    )
}

/// "Rating: [[1]]", "Rating: 1", "rating = **0**".
static RATING: LazyLock<Option<Regex>> =
    LazyLock::new(|| Regex::new(r"(?i)rating\s*[:=]?[\s*_]*\[*\s*(\d+(?:\.\d+)?)\s*\]*").ok());
/// "Better Response: [[1]]", "better response: 0".
static BETTER: LazyLock<Option<Regex>> =
    LazyLock::new(|| Regex::new(r"(?i)better\s+response\s*[:=]?[\s*_]*\[*\s*([01])\s*\]*").ok());
/// A bare "[[1]]".
static BRACKETED: LazyLock<Option<Regex>> =
    LazyLock::new(|| Regex::new(r"\[\[\s*(\d+(?:\.\d+)?)\s*\]\]").ok());

/// The judge's rating: the last "Rating: x" (also "Rating: [[x]]"), else the last "[[x]]".
pub(crate) fn parse_judge_rating(text: &str) -> Option<f64> {
    [RATING.as_ref(), BRACKETED.as_ref()]
        .into_iter()
        .flatten()
        .find_map(|re| {
            re.captures_iter(text)
                .filter_map(|c| c.get(1)?.as_str().parse::<f64>().ok())
                .last()
        })
        .filter(|v| v.is_finite())
}

/// The pairwise judge's verdict: 0 (the first response shown is better) or 1 (the
/// second): the last "Better Response: [[k]]", else the last bare "[[k]]".
pub(crate) fn parse_better(text: &str) -> Option<usize> {
    let verdict = |re: &Regex| {
        re.captures_iter(text)
            .filter_map(|c| c.get(1)?.as_str().parse::<usize>().ok())
            .filter(|k| *k <= 1)
            .last()
    };
    BETTER
        .as_ref()
        .and_then(verdict)
        .or_else(|| BRACKETED.as_ref().and_then(verdict))
}

/// How the completions are compared.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "snake_case")]
pub enum Rating {
    /// Each completion rated 0/1 by the model as a judge; the highest wins.
    Absolute,
    /// Every ordered pair of completions compared by the model as a judge; most wins.
    Pairwise,
    /// Majority vote over the completions' extracted answers; no judge calls.
    Majority,
}

/// The parameters of `cepo`; a field a spec leaves out takes its default here
/// (`optillm approaches` lists them).
#[derive(Debug, Clone, Serialize, Deserialize)]
#[serde(default, deny_unknown_fields)]
pub struct Params {
    /// Completions (whole pipelines) compared at the end.
    pub bestofn: u32,
    /// Plans executed per completion.
    pub planning_n: u32,
    /// Most plans drawn per completion, rejected ones included.
    pub planning_m: u32,
    /// Ask first for `bestofn` different approaches, one per completion's plans.
    pub plan_diversity: bool,
    pub approaches_temperature: f32,
    pub approaches_max_tokens: u32,
    pub plan_temperature: f32,
    pub execute_temperature: f32,
    pub review_temperature: f32,
    pub answer_temperature: f32,
    pub plan_max_tokens: u32,
    pub execute_max_tokens: u32,
    pub review_max_tokens: u32,
    pub answer_max_tokens: u32,
    /// `absolute` (judge per completion), `pairwise` (judge per pair) or `majority`
    /// (vote on extracted answers).
    pub rating: Rating,
    pub rating_temperature: f32,
    pub rating_max_tokens: u32,
    /// Answer kind for votes (`number`, `choice`, `yes_no`, `text`); `null`: any.
    pub answer_kind: Option<AnswerKind>,
}

impl Default for Params {
    fn default() -> Self {
        Self {
            bestofn: 3,
            planning_n: 3,
            planning_m: 6,
            plan_diversity: false,
            approaches_temperature: 0.7,
            approaches_max_tokens: 1024,
            plan_temperature: 0.55,
            execute_temperature: 0.25,
            review_temperature: 0.1,
            answer_temperature: 0.0,
            plan_max_tokens: 1024,
            execute_max_tokens: 1024,
            review_max_tokens: 1024,
            answer_max_tokens: 1024,
            rating: Rating::Absolute,
            rating_temperature: 0.1,
            rating_max_tokens: 1024,
            answer_kind: None,
        }
    }
}

/// The `cepo` strategy (the module documentation describes it): built from typed
/// [`Params`] with `new`, or by name through [`crate::strategies::build`].
#[derive(Debug, Clone)]
pub struct Cepo {
    params: Params,
}

impl Cepo {
    pub fn new(params: Params) -> Result<Self, SpecError> {
        let bad = |m: &str| SpecError::BadParameter {
            approach: SLUG.into(),
            message: m.into(),
        };
        if params.bestofn == 0 || params.planning_n == 0 {
            return Err(bad("bestofn and planning_n must be at least 1"));
        }
        if params.planning_m < params.planning_n {
            return Err(bad(
                "planning_m (plans drawn at most) must be at least planning_n",
            ));
        }
        let caps = [
            params.approaches_max_tokens,
            params.plan_max_tokens,
            params.execute_max_tokens,
            params.review_max_tokens,
            params.answer_max_tokens,
            params.rating_max_tokens,
        ];
        if caps.contains(&0) {
            return Err(bad("token caps must be at least 1"));
        }
        let temps = [
            params.approaches_temperature,
            params.plan_temperature,
            params.execute_temperature,
            params.review_temperature,
            params.answer_temperature,
            params.rating_temperature,
        ];
        if temps.iter().any(|t| !t.is_finite() || *t < 0.0) {
            return Err(bad("temperatures must be finite numbers >= 0"));
        }
        Ok(Self { params })
    }
}

fn step(t: f32, max_tokens: u32) -> Sampling {
    temp(t).with_max_tokens(max_tokens)
}

/// `count` different high-level approaches to the question (two attempts at a parsable
/// answer); empty when neither parses.
async fn approaches(
    ctx: &Ctx,
    request: &StrategyRequest,
    p: &Params,
) -> Result<Vec<String>, StrategyError> {
    let question = request.query()?;
    let messages = prompt(request.system(), approaches_prompt(question, p.bestofn));
    for attempt in 1..=2 {
        let chat = request.chat(
            messages.clone(),
            &step(p.approaches_temperature, p.approaches_max_tokens),
        );
        let text = ctx
            .text(format!("approaches (attempt {attempt})"), chat)
            .await?;
        if let Some(found) = parse_approaches(&text) {
            return Ok(found);
        }
        tracing::warn!(attempt, "cepo: the approaches were not a JSON object");
    }
    Ok(Vec::new())
}

/// One plan -> execute -> review -> answer pipeline, planning along `approach` when
/// there is one; returns the answer.
async fn completion(
    ctx: Ctx,
    request: &StrategyRequest,
    p: &Params,
    index: usize,
    approach: Option<&str>,
) -> Result<String, StrategyError> {
    let question = request.query()?;
    let system = request.system();
    let label = index + 1;
    let plan = match approach {
        Some(a) => diverse_plan_prompt(question, a),
        None => plan_prompt(question),
    };
    let plan_messages = prompt(system, plan);
    let mut executions: Vec<String> = Vec::new();
    let mut last_rejected: Option<String> = None;
    let mut drawn = 0u32;
    let mut executed = 0usize;
    while (executions.len() as u32) < p.planning_n && drawn < p.planning_m {
        let want = (p.planning_n - executions.len() as u32).min(p.planning_m - drawn);
        drawn += want;
        let chat = request
            .chat(
                plan_messages.clone(),
                &step(p.plan_temperature, p.plan_max_tokens),
            )
            .with_n(want);
        let plans = ctx.call(format!("completion {label}: plans"), chat).await?;
        let mut complete_plans = Vec::new();
        for c in plans.choices {
            if c.finish_reason == FinishReason::Length {
                last_rejected = Some(c.text);
            } else {
                complete_plans.push(c.text);
            }
        }
        let calls = complete_plans.iter().map(|plan| {
            executed += 1;
            let mut messages = plan_messages.clone();
            messages.push(Message::assistant(plan.clone()));
            messages.push(Message::user(EXECUTE));
            let chat = request.chat(messages, &step(p.execute_temperature, p.execute_max_tokens));
            let ctx = ctx.clone();
            let purpose = format!("completion {label}: execute plan {executed}");
            async move { ctx.call(purpose, chat).await }
        });
        for result in join_all(calls).await {
            let done = result?;
            let Some(c) = done.choices.into_iter().next() else {
                continue;
            };
            if c.finish_reason == FinishReason::Length {
                last_rejected = Some(c.text);
            } else {
                executions.push(c.text);
            }
        }
        if index == 0 {
            if let Some(first) = executions.first() {
                ctx.offer(first.clone());
            }
        }
    }
    if executions.is_empty() {
        tracing::warn!(
            completion = label,
            "cepo: every plan was cut by its token cap"
        );
        executions.extend(last_rejected);
    }
    tracing::debug!(
        completion = label,
        plans = executions.len(),
        drawn,
        "cepo plans"
    );

    let mut review = prompt(system, question);
    review.push(Message::assistant(numbered("Response", &executions)));
    review.push(Message::user(review_prompt(executions.len(), question)));
    let solution = ctx
        .text(
            format!("completion {label}: review plans"),
            request.chat(review, &step(p.review_temperature, p.review_max_tokens)),
        )
        .await?;

    let mut answer = prompt(system, question);
    answer.push(Message::assistant(solution));
    answer.push(Message::user(answer_prompt(question)));
    let text = ctx
        .text(
            format!("completion {label}: answer"),
            request.chat(answer, &step(p.answer_temperature, p.answer_max_tokens)),
        )
        .await?;
    Ok(text.trim().to_string())
}

/// A judge call: the caller's system prompt with the judge's `instructions`, the
/// question, what is judged (`shown`, as the assistant's turn), then `ask`.
fn judge_chat(
    request: &StrategyRequest,
    p: &Params,
    instructions: &str,
    shown: String,
    ask: &str,
) -> ChatRequest {
    let system = match request.system() {
        Some(s) if !s.trim().is_empty() => format!("{s}\n\n{instructions}"),
        _ => instructions.to_string(),
    };
    let question = request.query().unwrap_or_default();
    let messages = vec![
        Message::system(system),
        Message::user(question),
        Message::assistant(shown),
        Message::user(ask),
    ];
    request.chat(messages, &step(p.rating_temperature, p.rating_max_tokens))
}

/// The judge's 0/1 rating of each completion, concurrently (`None`: unparsable or cut),
/// and the budget error if a call was cut.
async fn judge(
    ctx: &Ctx,
    request: &StrategyRequest,
    p: &Params,
    completions: &[String],
) -> Result<(Vec<Option<f64>>, Option<StrategyError>), StrategyError> {
    let calls = completions.iter().enumerate().map(|(i, c)| {
        let chat = judge_chat(request, p, JUDGE, c.clone(), RATE);
        let ctx = ctx.clone();
        async move {
            let text = ctx.text(format!("rate completion {}", i + 1), chat).await?;
            Ok(parse_judge_rating(&text))
        }
    });
    let (ratings, cut) = settle(join_all(calls).await)?;
    Ok((ratings.into_iter().map(Option::flatten).collect(), cut))
}

/// Each completion's wins over every ordered pair, compared by the judge concurrently,
/// and the budget error if a call was cut.
async fn compare_pairs(
    ctx: &Ctx,
    request: &StrategyRequest,
    p: &Params,
    completions: &[String],
) -> Result<(Vec<Option<f64>>, Option<StrategyError>), StrategyError> {
    let shown = completions.iter().enumerate();
    let pairs = shown.clone().flat_map(|(i, first)| {
        shown
            .clone()
            .filter(move |(j, _)| *j != i)
            .map(move |(j, second)| (i, first, j, second))
    });
    let calls = pairs.map(|(i, first, j, second)| {
        let shown = format!("Response 0: {first}\n\nResponse 1: {second}");
        let chat = judge_chat(request, p, PAIRWISE_JUDGE, shown, COMPARE);
        let ctx = ctx.clone();
        async move {
            let purpose = format!("compare completions {} and {}", i + 1, j + 1);
            let text = ctx.text(purpose, chat).await?;
            Ok(parse_better(&text).map(|k| if k == 0 { i } else { j }))
        }
    });
    let (winners, cut) = settle(join_all(calls).await)?;
    let mut wins = vec![0.0; completions.len()];
    for w in winners.into_iter().flatten().flatten() {
        if let Some(count) = wins.get_mut(w) {
            *count += 1.0;
        }
    }
    Ok((wins.into_iter().map(Some).collect(), cut))
}

/// The completion to return: the highest rating, ties to the one whose answer has the most
/// votes (then the first); the vote alone when nothing was rated.
pub(crate) fn pick_rated(
    ratings: &[Option<f64>],
    completions: &[String],
    kind: Option<AnswerKind>,
) -> usize {
    let sv = vote_samples(completions, kind);
    let votes = |i: usize| -> usize {
        let Some(answer) = sv.answers.get(i).and_then(Option::as_deref) else {
            return 0;
        };
        let key = normalize(answer);
        sv.vote
            .as_ref()
            .and_then(|v| v.distribution.iter().find(|d| d.0 == key))
            .map_or(0, |d| d.1)
    };
    let mut best: Option<(usize, f64, usize)> = None;
    for (i, r) in ratings.iter().enumerate() {
        let Some(r) = *r else { continue };
        let v = votes(i);
        if best.is_none_or(|(_, br, bv)| r > br || (r == br && v > bv)) {
            best = Some((i, r, v));
        }
    }
    match best {
        Some((i, _, _)) => i,
        None => sv.chosen().unwrap_or(0),
    }
}

impl Approach for Cepo {
    const SLUG: &'static str = SLUG;
    const DESCRIPTION: &'static str =
        "CePO: best-of-n over plan, execute, review, answer pipelines; judge rating or majority";
    type Params = Params;

    fn from_params(params: Params) -> Result<Self, SpecError> {
        Self::new(params)
    }
}

#[async_trait]
impl Strategy for Cepo {
    fn slug(&self) -> &str {
        SLUG
    }

    async fn run(&self, ctx: &Ctx, request: &StrategyRequest) -> Result<Answer, StrategyError> {
        let p = &Params {
            answer_kind: answer_kind(request.query()?, self.params.answer_kind),
            ..self.params.clone()
        };
        let approaches = if p.plan_diversity {
            approaches(ctx, request, p).await?
        } else {
            Vec::new()
        };
        let pipelines = (0..p.bestofn as usize).map(|i| {
            let approach = approaches.get(i).map(String::as_str);
            completion(ctx.clone(), request, p, i, approach)
        });
        let (finished, cut) = settle(join_all(pipelines).await)?;
        let completions: Vec<String> = finished.into_iter().flatten().collect();
        if let Some(e) = cut {
            if let Some(best) = super::select::best_guess(&completions, p.answer_kind) {
                ctx.offer(best);
            }
            return Err(e);
        }
        if let Some(best) = super::select::best_guess(&completions, p.answer_kind) {
            ctx.offer(best);
        }
        let (chosen, vote) = match p.rating {
            Rating::Majority => {
                let sv = vote_samples(&completions, p.answer_kind);
                (sv.chosen().unwrap_or(0), sv.vote)
            }
            Rating::Absolute | Rating::Pairwise => {
                let (ratings, cut) = if p.rating == Rating::Pairwise {
                    compare_pairs(ctx, request, p, &completions).await?
                } else {
                    judge(ctx, request, p, &completions).await?
                };
                let chosen = pick_rated(&ratings, &completions, p.answer_kind);
                if let Some(e) = cut {
                    ctx.offer(completions.get(chosen).cloned().unwrap_or_default());
                    return Err(e);
                }
                tracing::info!(?ratings, chosen, "cepo ratings");
                // The judge chose; a vote only breaks its ties.
                (chosen, None)
            }
        };
        let answer = completions.get(chosen).cloned().unwrap_or_default();
        Ok(Answer::one(answer)
            .with_candidates(completions)
            .with_vote(vote))
    }
}

#[cfg(test)]
mod tests {
    use std::sync::Arc;
    use std::sync::atomic::{AtomicUsize, Ordering};

    use super::*;
    use crate::mock::MockBackend;
    use crate::strategy::{Budget, run};
    use crate::types::ChatRequest;

    fn user_text(r: &ChatRequest) -> &str {
        r.last_user().unwrap_or_default()
    }

    fn is_plan(r: &ChatRequest) -> bool {
        user_text(r).contains("come up with a concise plan")
    }
    fn is_execute(r: &ChatRequest) -> bool {
        user_text(r) == EXECUTE
    }
    fn is_review(r: &ChatRequest) -> bool {
        user_text(r).starts_with("Can you review your last")
    }
    fn is_answer(r: &ChatRequest) -> bool {
        user_text(r).starts_with("Use your final solution")
    }
    fn is_rating(r: &ChatRequest) -> bool {
        user_text(r) == RATE
    }
    fn is_compare(r: &ChatRequest) -> bool {
        user_text(r) == COMPARE
    }
    /// The two responses a comparison shows.
    fn compared(r: &ChatRequest) -> (String, String) {
        let shown = &r.messages[r.messages.len() - 2].content;
        let (a, b) = shown.split_once("\n\nResponse 1: ").unwrap();
        (a.trim_start_matches("Response 0: ").into(), b.into())
    }

    /// Plans and executions are short; the k-th final answer (in call order) is
    /// `answers[k]`; the judge rates 1 a completion containing `good`, else 0.
    async fn cepo(params: Params, mock: &Arc<MockBackend>, query: &str) -> crate::Outcome {
        let strategy = Cepo::new(params).unwrap();
        let request = StrategyRequest::user(query);
        run(&strategy, mock.clone(), &request, Budget::default())
            .await
            .unwrap()
    }

    fn scripted(answers: &'static [&'static str], good: &'static str) -> MockBackend {
        MockBackend::new(responder(answers, good))
    }

    fn responder(
        answers: &'static [&'static str],
        good: &'static str,
    ) -> impl Fn(&ChatRequest, u32) -> Result<String, crate::BackendError> + Send + Sync + 'static
    {
        let answered = AtomicUsize::new(0);
        move |r, i| {
            Ok(if is_plan(r) {
                format!("Plan {i}: add the numbers (confidence: high)")
            } else if is_execute(r) {
                "Executed: 3 + 4 = 7".to_string()
            } else if is_review(r) {
                "No inconsistency. Final solution: 3 + 4 = 7".to_string()
            } else if is_answer(r) {
                let k = answered.fetch_add(1, Ordering::SeqCst);
                answers[k % answers.len()].to_string()
            } else if is_rating(r) {
                let rated = r.messages.iter().any(|m| m.content.contains(good));
                format!("Explanation: checked.\n\nRating: [[{}]]", u8::from(rated))
            } else if is_compare(r) {
                let (a, b) = compared(r);
                match (a.contains(good), b.contains(good)) {
                    (true, false) => "The first is right.\n\nBetter Response: [[0]]".into(),
                    (false, true) => "The second is right.\n\nBetter Response: [[1]]".into(),
                    _ => "Both look the same to me.".into(),
                }
            } else {
                "unexpected".to_string()
            })
        }
    }

    #[tokio::test]
    async fn default_run_calls_and_settings() {
        let mock = Arc::new(scripted(
            &["The answer is 6.", "The answer is 7.", "The answer is 8."],
            "is 7",
        ));
        let strategy = Cepo::new(Params::default()).unwrap();
        let req = StrategyRequest::user("What is 3 + 4?");
        let out = run(&strategy, mock.clone(), &req, Budget::default())
            .await
            .unwrap();
        let sent = mock.requests();
        // 3 * (plans + 3 executions + review + answer) + 3 ratings.
        assert_eq!(sent.len(), 21);
        let plans: Vec<_> = sent.iter().filter(|r| is_plan(r)).collect();
        assert_eq!(plans.len(), 3);
        assert!(plans.iter().all(|r| r.n == 3));
        assert!(plans.iter().all(|r| r.sampling.temperature == Some(0.55)));
        assert!(plans.iter().all(|r| r.sampling.max_tokens == Some(1024)));
        let count = |f: fn(&ChatRequest) -> bool, t: f32| {
            let matching: Vec<_> = sent.iter().filter(|r| f(r)).collect();
            assert!(
                matching
                    .iter()
                    .all(|r| r.sampling.temperature == Some(t) && r.n == 1)
            );
            matching.len()
        };
        assert_eq!(count(is_execute, 0.25), 9);
        assert_eq!(count(is_review, 0.1), 3);
        assert_eq!(count(is_answer, 0.0), 3);
        assert_eq!(count(is_rating, 0.1), 3);
        // The review sees the three executions; the plan prompt reads the question twice.
        let review = sent.iter().find(|r| is_review(r)).unwrap();
        assert!(user_text(review).starts_with("Can you review your last 3 responses"));
        let shown = &review.messages[review.messages.len() - 2].content;
        assert!(shown.contains("Response 3:\nExecuted: 3 + 4 = 7"));
        assert_eq!(user_text(plans[0]).matches("What is 3 + 4?").count(), 2);
        let execute = sent.iter().find(|r| is_execute(r)).unwrap();
        assert!(
            execute.messages[execute.messages.len() - 2]
                .content
                .starts_with("Plan ")
        );
        // The judge rated only "The answer is 7." as correct.
        assert_eq!(out.answer, "The answer is 7.");
        assert_eq!(out.candidates.len(), 3);
        let rating = sent.iter().find(|r| is_rating(r)).unwrap();
        assert!(rating.messages[0].content.contains("impartial judge"));
    }

    #[tokio::test]
    async fn calls_scale_with_the_configuration() {
        let mock = Arc::new(scripted(&["The answer is 7."], "7"));
        let params = Params {
            bestofn: 2,
            planning_n: 4,
            planning_m: 4,
            rating: Rating::Majority,
            ..Params::default()
        };
        let out = cepo(params, &mock, "q").await;
        // 2 * (1 plan request + 4 executions + review + answer), no judge.
        assert_eq!(mock.calls(), 14);
        assert!(
            mock.requests()
                .iter()
                .filter(|r| is_plan(r))
                .all(|r| r.n == 4)
        );
        assert!(!mock.requests().iter().any(is_rating));
        assert_eq!(out.answer, "The answer is 7.");
    }

    #[tokio::test]
    async fn rejected_plans_are_drawn_again_up_to_planning_m() {
        // Choice 0 of every plan request overruns the 8-token cap; choice 1 fits.
        let mock = Arc::new(MockBackend::new(|r, i| {
            Ok(if is_plan(r) && i == 0 {
                "a very long plan that goes on and on and on past the cap".to_string()
            } else if is_plan(r) {
                "short plan".to_string()
            } else {
                "The answer is 7.".to_string()
            })
        }));
        let params = Params {
            bestofn: 1,
            planning_n: 2,
            planning_m: 6,
            plan_max_tokens: 8,
            rating: Rating::Majority,
            ..Params::default()
        };
        cepo(params, &mock, "q").await;
        let sent = mock.requests();
        let plan_ns: Vec<u32> = sent.iter().filter(|r| is_plan(r)).map(|r| r.n).collect();
        // 2 drawn (1 kept), then one at a time: every later choice 0 is cut, until 6 drawn.
        assert_eq!(plan_ns, vec![2, 1, 1, 1, 1]);
        assert_eq!(sent.iter().filter(|r| is_execute(r)).count(), 1);
        assert_eq!(sent.len(), 5 + 1 + 2);
        let review = sent.iter().find(|r| is_review(r)).unwrap();
        assert!(user_text(review).starts_with("Can you review your last 1 responses"));
    }

    #[tokio::test]
    async fn majority_mode_and_judge_ties() {
        let answers: &'static [&'static str] =
            &["I get 9.", "The answer is 7.", "So the answer is 7.0"];
        let params = Params {
            planning_n: 1,
            planning_m: 1,
            rating: Rating::Majority,
            ..Params::default()
        };
        let mock = Arc::new(scripted(answers, "-"));
        let out = cepo(params.clone(), &mock, "q").await;
        assert_eq!(mock.calls(), 3 * 4);
        let sevens = ["The answer is 7.", "So the answer is 7.0"];
        assert!(sevens.contains(&out.answer.as_str()), "{}", out.answer);
        let vote = out.vote.expect("the majority rating reports its vote");
        assert_eq!((vote.total, vote.summary()), (3, "7: 2, 9: 1".to_string()));

        // The judge rates everything 1: the tie goes to the majority answer.
        let mock = Arc::new(scripted(answers, "q"));
        let judged = Params {
            rating: Rating::Absolute,
            ..params
        };
        let out = cepo(judged.clone(), &mock, "q").await;
        assert_eq!(mock.calls(), 3 * 4 + 3);
        assert!(sevens.contains(&out.answer.as_str()), "{}", out.answer);
        assert!(out.vote.is_none(), "the judge chose, not a vote");

        // No pairwise verdict parses: every completion has 0 wins, the vote decides.
        let mock = Arc::new(scripted(answers, "no such text"));
        let compared = Params {
            rating: Rating::Pairwise,
            ..judged
        };
        let out = cepo(compared, &mock, "q").await;
        assert_eq!(mock.calls(), 3 * 4 + 6);
        assert!(sevens.contains(&out.answer.as_str()), "{}", out.answer);
    }

    #[test]
    fn ratings_and_argmax() {
        assert_eq!(
            parse_judge_rating("Explanation: ok\n\nRating: [[1]]"),
            Some(1.0)
        );
        assert_eq!(
            parse_judge_rating("Rating: [[0]] ... final Rating: [[1]]"),
            Some(1.0)
        );
        assert_eq!(parse_judge_rating("**Rating:** 0"), Some(0.0));
        assert_eq!(parse_judge_rating("I'd say [[1]]."), Some(1.0));
        assert_eq!(parse_judge_rating("3 + 4 = 7 so it is right"), None);
        let texts: Vec<String> = ["The answer is 5", "The answer is 6", "The answer is 6"]
            .iter()
            .map(|s| s.to_string())
            .collect();
        assert_eq!(pick_rated(&[Some(1.0), Some(0.0), None], &texts, None), 0);
        assert_eq!(
            pick_rated(&[Some(1.0), Some(1.0), Some(1.0)], &texts, None),
            1
        );
        assert_eq!(pick_rated(&[None, None, None], &texts, None), 1);
        assert_eq!(pick_rated(&[None, None, Some(0.0)], &texts, None), 2);
    }

    #[tokio::test]
    async fn budget_cut_returns_a_finished_answer() {
        let mock = Arc::new(scripted(&["The answer is 7."], "7"));
        // A little more than one pipeline: the run stops inside the second or third.
        let budget = Budget {
            max_total_tokens: Some(600),
            max_duration: None,
        };
        let out = run(
            &Cepo::new(Params::default()).unwrap(),
            mock.clone(),
            &StrategyRequest::user("What is 3 + 4?"),
            budget,
        )
        .await
        .unwrap();
        assert!(out.budget_exhausted);
        assert!(mock.calls() < 21);
        assert!(
            out.answer == "The answer is 7." || out.answer == "Executed: 3 + 4 = 7",
            "{}",
            out.answer
        );
    }

    #[test]
    fn registered_with_defaults_and_checked_params() {
        let info = crate::strategies::catalogue()
            .into_iter()
            .find(|i| i.slug == SLUG)
            .unwrap();
        assert_eq!(info.params.get("bestofn"), Some(&serde_json::json!(3)));
        assert_eq!(info.params.get("planning_n"), Some(&serde_json::json!(3)));
        assert_eq!(
            info.params.get("rating"),
            Some(&serde_json::json!("absolute"))
        );
        assert!(crate::strategies::build(SLUG, &info.params).is_ok());
        let mut bad = info.params.clone();
        bad.insert("planning_m".into(), serde_json::json!(2));
        assert!(matches!(
            crate::strategies::build(SLUG, &bad),
            Err(SpecError::BadParameter { .. })
        ));
        let mut pairwise = info.params.clone();
        pairwise.insert("rating".into(), serde_json::json!("pairwise"));
        assert!(crate::strategies::build(SLUG, &pairwise).is_ok());
        let mut bad = info.params.clone();
        bad.insert("rating".into(), serde_json::json!("elo"));
        assert!(crate::strategies::build(SLUG, &bad).is_err());
        assert_eq!(
            info.params.get("plan_diversity"),
            Some(&serde_json::json!(false))
        );
    }

    #[tokio::test]
    async fn pairwise_rating_compares_every_ordered_pair() {
        let mock = Arc::new(scripted(
            &["The answer is 6.", "The answer is 7.", "The answer is 8."],
            "is 7",
        ));
        let params = Params {
            rating: Rating::Pairwise,
            ..Params::default()
        };
        let out = cepo(params, &mock, "What is 3 + 4?").await;
        let sent = mock.requests();
        // 3 pipelines of 6 calls, then 3 * 2 ordered comparisons, no absolute ratings.
        assert_eq!(sent.len(), 3 * 6 + 6);
        assert!(!sent.iter().any(is_rating));
        let comparisons: Vec<_> = sent.iter().filter(|r| is_compare(r)).collect();
        assert_eq!(comparisons.len(), 6);
        assert!(
            comparisons
                .iter()
                .all(|r| r.sampling.temperature == Some(0.1) && r.n == 1)
        );
        assert!(
            comparisons[0].messages[0]
                .content
                .contains("compare the quality")
        );
        assert_eq!(comparisons[0].messages[1].content, "What is 3 + 4?");
        let mut shown: Vec<(String, String)> = comparisons.iter().map(|r| compared(r)).collect();
        shown.sort();
        shown.dedup();
        assert_eq!(shown.len(), 6, "every pair in both orders");
        assert!(shown.iter().all(|(a, b)| a != b));
        // "7" wins its 4 comparisons; 6 and 8 win none.
        assert_eq!(out.answer, "The answer is 7.");
        assert!(out.vote.is_none());
    }

    fn is_approaches(r: &ChatRequest) -> bool {
        user_text(r).contains("different high-level approaches")
    }

    #[tokio::test]
    async fn plan_diversity_gives_each_completion_its_approach() {
        let inner = responder(&["The answer is 7."], "7");
        let mock = Arc::new(MockBackend::new(move |r, i| {
            if is_approaches(r) {
                return Ok(
                    "Here they are:\n```json\n{\n  \"approach_2\": \"Use algebra\",\n  \
                           \"approach_1\": \"Count up from 3\",\n  \"approach_3\": \"Draw a \
                           number line\"\n}\n```"
                        .into(),
                );
            }
            inner(r, i)
        }));
        let params = Params {
            plan_diversity: true,
            rating: Rating::Majority,
            ..Params::default()
        };
        cepo(params, &mock, "What is 3 + 4?").await;
        let sent = mock.requests();
        let asked: Vec<_> = sent.iter().filter(|r| is_approaches(r)).collect();
        assert_eq!(asked.len(), 1);
        assert!(user_text(asked[0]).contains("propose 3 different"));
        assert_eq!(asked[0].sampling.temperature, Some(0.7));
        assert_eq!(sent.len(), 1 + 3 * 6);
        let mut followed: Vec<&str> = sent
            .iter()
            .filter(|r| is_plan(r))
            .map(|r| {
                let text = user_text(r);
                ["Count up from 3", "Use algebra", "Draw a number line"]
                    .into_iter()
                    .find(|a| text.contains(&format!("follow to generate the plan: {a}.")))
                    .unwrap()
            })
            .collect();
        followed.sort();
        assert_eq!(
            followed,
            vec!["Count up from 3", "Draw a number line", "Use algebra"]
        );
    }

    #[tokio::test]
    async fn plan_diversity_unparsable_twice_plans_without_approaches() {
        let inner = responder(&["The answer is 7."], "7");
        let mock = Arc::new(MockBackend::new(move |r, i| {
            if is_approaches(r) {
                return Ok("1. count 2. add 3. guess".into());
            }
            inner(r, i)
        }));
        let params = Params {
            bestofn: 2,
            plan_diversity: true,
            rating: Rating::Majority,
            ..Params::default()
        };
        let out = cepo(params, &mock, "q").await;
        let sent = mock.requests();
        assert_eq!(sent.iter().filter(|r| is_approaches(r)).count(), 2);
        assert!(
            sent.iter()
                .filter(|r| is_plan(r))
                .all(|r| !user_text(r).contains("approach you need to follow"))
        );
        assert_eq!(sent.len(), 2 + 2 * 6);
        assert_eq!(out.answer, "The answer is 7.");
    }

    #[test]
    fn verdicts_and_approaches_parse() {
        assert_eq!(parse_better("Both fine. Better Response: [[1]]"), Some(1));
        assert_eq!(parse_better("**Better response:** 0"), Some(0));
        assert_eq!(
            parse_better("Better Response: [[0]] ... on reflection Better Response: [[1]]"),
            Some(1)
        );
        assert_eq!(parse_better("I choose [[0]]."), Some(0));
        assert_eq!(parse_better("Better Response: [[2]]"), None);
        assert_eq!(parse_better("They are equally good."), None);
        assert_eq!(
            parse_approaches(
                "{\"approach_1\": \"a\", \"approach_10\": \"c\", \"approach_2\": \"b\"}"
            ),
            Some(vec!["a".into(), "b".into(), "c".into()])
        );
        assert_eq!(
            parse_approaches("Sure! {\"x\": \"é über\"} Hope it helps {:}"),
            Some(vec!["é über".into()])
        );
        assert_eq!(parse_approaches("{\"approach_1\": \"cut off"), None);
        assert_eq!(parse_approaches("{\"approach_1\": 3}"), None);
        assert_eq!(parse_approaches("no json here"), None);
    }
}
