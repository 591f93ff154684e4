//! `choice_likelihood`: answers a multiple-choice question by the model's likelihood
//! of each option, the way evaluation harnesses score multiple choice
//! (lm-evaluation-harness `acc` / `acc_norm`), instead of by what it generates.
//!
//! The query's lettered options (`(A) text`, `A) text`, `A. text` or `A: text`, one per
//! line, from `A`) are split from its stem. The stem is evaluated once, as the user
//! message of the chat template with every option scored as the assistant's reply
//! (`format=chat`), or as the plain text `Question: {stem}\nAnswer:` with every option
//! scored as its continuation ` {text}`, no chat template, as lm-evaluation-harness's
//! `arc_easy` does (`format=plain`). By default (`format=auto`) a model that ships a
//! chat template of its own is asked in it, and a base model, which has none, in plain
//! text (the trace then shows the chat message that was not scored). An option's score is the sum
//! of the log probabilities of its tokens, all options forked from the one evaluated
//! prompt and appended together, one batch per token position. The option with the best
//! score (by default per character of its text, as `acc_norm`) is the answer, written as
//! `The answer is (B) text`. Tiny models that cannot follow an answer format, or that
//! always write the same letter, can still rank the options they know.
//!
//! `score=letter` asks the question as a model that can pick answers is asked: the stem
//! with its lettered options and `Answer with the letter of the correct option.`, each
//! option scored as the reply `The answer is (X)` in the model's chat template (` (X)`
//! after `Answer:` in plain text for a model without one; `format` is about the texts).
//! A model that reads the options well gains by it (ARC-Challenge with
//! Qwen2.5-Coder-1.5B), a small one that cannot yet bind letters to options loses
//! (docs/results.md). `score=auto` scores the letters first and answers by them when the
//! best letter holds at least `letter_confidence` of the probability the letters share;
//! else it scores the texts.
//!
//! `normalize=unconditional` scores each option by how much the question raises its
//! likelihood: its summed log probability minus the same after the bare text `Answer:`
//! (the unconditional normalisation Brown et al. 2020 used for ARC, a pointwise mutual
//! information as in Holtzman et al. 2021), so an option that is likely after anything
//! does not win for that alone.

use async_trait::async_trait;
use serde::{Deserialize, Serialize};

use super::Approach;
use super::sampler::log_softmax;
use crate::error::BackendError;
use crate::spec::SpecError;
use crate::strategy::{Answer, Ctx, Strategy, StrategyError, StrategyRequest, TokenLimits};
use crate::token::{SeqId, Token, TokenSession};
use crate::types::{Message, Sampling};

pub const SLUG: &str = "choice_likelihood";

/// How an option's summed log probability is compared across options of other lengths.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "lowercase")]
pub enum Normalize {
    /// Per character of the option's text (lm-evaluation-harness `acc_norm`).
    Chars,
    /// Per token of the option.
    Tokens,
    /// The plain sum (`acc`): favours short options.
    None,
    /// The sum minus the option's sum after the bare `Answer:` (one more prompt scored).
    Unconditional,
}

/// The content-free prompt of `normalize=unconditional`; options follow it as ` {text}`.
const UNCONDITIONAL_PROMPT: &str = "Answer:";

/// The prompt the options are scored after.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "lowercase")]
pub enum Format {
    /// `chat` when the model ships a chat template of its own (an instruction-tuned
    /// model), else `plain` (a base model, which only knows plain text: on ARC-Easy
    /// Gemma-3-270M scores 30.5% = chance in a generic chat template, 55.5% plain).
    Auto,
    /// The stem as the chat template's user message, each option as the assistant's reply.
    Chat,
    /// The raw text `Question: {stem}\nAnswer:` (the model's BOS first if it takes one,
    /// no chat template), each option as the continuation ` {text}` (lm-evaluation-harness).
    Plain,
}

/// What is scored.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "lowercase")]
pub enum Score {
    /// Each option's text after the stem (cloze scoring, as the harnesses do for ARC).
    Text,
    /// Each option's letter after the stem with its options (as MMLU is scored).
    Letter,
    /// The letters when the best holds at least `letter_confidence` of their shared
    /// probability, else the texts.
    Auto,
}

/// Instruction after the options when their letters are scored.
const LETTER_INSTRUCTION: &str = "Answer with the letter of the correct option.";

/// The parameters of `choice_likelihood`; a field a spec leaves out takes its default here
/// (`optillm approaches` lists them).
#[derive(Debug, Clone, Serialize, Deserialize)]
#[serde(default, deny_unknown_fields)]
pub struct Params {
    pub normalize: Normalize,
    pub format: Format,
    /// Keep the lettered options in the prompt the options are scored after (default:
    /// the stem alone, as the harnesses do). Letters are always scored with them.
    pub show_options: bool,
    pub score: Score,
    /// With `score=auto`: the share of the letters' probability the best letter needs
    /// for the answer to go by the letters (0 to 1).
    pub letter_confidence: f64,
}

impl Default for Params {
    fn default() -> Self {
        Self {
            normalize: Normalize::Chars,
            format: Format::Auto,
            show_options: false,
            score: Score::Text,
            letter_confidence: 0.5,
        }
    }
}

/// The `choice_likelihood` strategy (the module documentation describes it): built from typed
/// [`Params`] with `new`, or by name through [`crate::strategies::build`].
#[derive(Debug, Clone, Default)]
pub struct ChoiceLikelihood {
    params: Params,
}

impl ChoiceLikelihood {
    pub fn new(params: Params) -> Self {
        Self { params }
    }
}

/// The question as the letters are scored after it: the stem, its options, the instruction.
fn letter_question(choices: &Choices) -> String {
    let mut q = choices.stem.clone();
    q.push('\n');
    for (letter, text) in &choices.options {
        q.push_str(&format!("\n({letter}) {text}"));
    }
    format!("{q}\n\n{LETTER_INSTRUCTION}")
}

/// The share of the options' summed probability that the best one holds (the softmax
/// of their log probabilities).
fn confidence(scored: &[Scored]) -> f64 {
    let max = scored
        .iter()
        .map(|s| s.logprob)
        .fold(f64::NEG_INFINITY, f64::max);
    if !max.is_finite() {
        return 0.0;
    }
    let sum: f64 = scored.iter().map(|s| (s.logprob - max).exp()).sum();
    1.0 / sum
}

/// A question split into its stem and its lettered options.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Choices {
    pub stem: String,
    pub options: Vec<(char, String)>,
}

/// The option of one line: `(A) text`, `A) text`, `A. text`, `A: text`.
fn option_line(line: &str) -> Option<(char, &str)> {
    let line = line.trim_start();
    let rest = line.strip_prefix('(').unwrap_or(line);
    let mut chars = rest.chars();
    let letter = chars.next().filter(|c| c.is_ascii_uppercase())?;
    let after = chars.as_str();
    let after = match (line.starts_with('('), after.chars().next()) {
        (true, Some(')')) => after.get(1..)?,
        (false, Some(')' | '.' | ':')) => after.get(1..)?,
        _ => return None,
    };
    // A separating space, then some text.
    if !after.starts_with(char::is_whitespace) {
        return None;
    }
    let text = after.trim();
    (!text.is_empty()).then_some((letter, text))
}

/// The stem and the options of a multiple-choice query: the first run of option lines
/// lettered `A`, `B`, ... in order (at least two); the stem is the text before it, what
/// follows the options (an instruction) is left out. `None` without such options.
pub fn split_choices(query: &str) -> Option<Choices> {
    let lines: Vec<&str> = query.lines().collect();
    let start = lines
        .iter()
        .position(|l| option_line(l).is_some_and(|(c, _)| c == 'A'))?;
    let mut options = Vec::new();
    for line in lines.iter().skip(start) {
        if line.trim().is_empty() {
            continue;
        }
        let expected = u8::try_from(options.len())
            .ok()
            .and_then(|n| b'A'.checked_add(n))
            .map(char::from);
        match option_line(line) {
            Some((c, text)) if Some(c) == expected => options.push((c, text.to_string())),
            _ => break,
        }
    }
    let stem = lines
        .iter()
        .take(start)
        .copied()
        .collect::<Vec<_>>()
        .join("\n")
        .trim()
        .to_string();
    (options.len() >= 2 && !stem.is_empty()).then_some(Choices { stem, options })
}

/// One option's score.
#[derive(Debug, Clone, PartialEq)]
pub struct Scored {
    pub letter: char,
    pub text: String,
    /// Sum of the log probabilities of the option's tokens.
    pub logprob: f64,
    pub tokens: usize,
    /// The same sum after `UNCONDITIONAL_PROMPT` (`normalize=unconditional` only).
    pub unconditional: Option<f64>,
}

impl Scored {
    fn value(&self, normalize: Normalize) -> f64 {
        let per = match normalize {
            Normalize::Chars => self.text.chars().count(),
            Normalize::Tokens => self.tokens,
            Normalize::None => 1,
            Normalize::Unconditional => return self.logprob - self.unconditional.unwrap_or(0.0),
        };
        self.logprob / per.max(1) as f64
    }
}

/// The plain-text prompt of `format=plain`: the system prompt (if any) and a blank line,
/// then `Question: {question}\nAnswer:`.
fn plain_prompt(system: Option<&str>, question: &str) -> String {
    let question = format!("Question: {question}\nAnswer:");
    match system {
        Some(system) => format!("{system}\n\n{question}"),
        None => question,
    }
}

/// Scores every option as a continuation of sequence `base`: each forked from it, the
/// tokens of `prefix` + its text appended together one position per batch. `None` when
/// the budget ran out before every option was scored.
fn score_options(
    session: &mut dyn TokenSession,
    base: SeqId,
    prefix: &str,
    options: &[(char, String)],
    limits: &TokenLimits,
) -> Result<Option<Vec<Scored>>, BackendError> {
    struct Pending {
        seq: SeqId,
        tokens: Vec<Token>,
        logprob: f64,
    }
    let first = log_softmax(&session.logits(base)?);
    let mut pending = Vec::with_capacity(options.len());
    for (_, text) in options {
        let tokens = session.tokenize(&format!("{prefix}{text}"))?;
        let logprob = logprob_of(&first, tokens.first());
        let seq = session.fork(base)?;
        pending.push(Pending {
            seq,
            tokens,
            logprob,
        });
    }
    let release = |session: &mut dyn TokenSession, pending: &[Pending]| {
        for p in pending {
            session.release(p.seq);
        }
    };
    // Position `pos` is scored from the logits after the option's token `pos - 1`.
    let longest = pending.iter().map(|p| p.tokens.len()).max().unwrap_or(0);
    for pos in 1..longest {
        if limits.exhausted(session) {
            release(session, &pending);
            return Ok(None);
        }
        let batch: Vec<(SeqId, Token)> = pending
            .iter()
            .filter(|p| p.tokens.len() > pos)
            .filter_map(|p| Some((p.seq, *p.tokens.get(pos - 1)?)))
            .collect();
        session.append_batch(&batch)?;
        for p in pending.iter_mut().filter(|p| p.tokens.len() > pos) {
            let lps = log_softmax(&session.logits(p.seq)?);
            p.logprob += logprob_of(&lps, p.tokens.get(pos));
        }
    }
    release(session, &pending);
    Ok(Some(
        options
            .iter()
            .zip(pending)
            .map(|((letter, text), p)| Scored {
                letter: *letter,
                text: text.clone(),
                logprob: p.logprob,
                tokens: p.tokens.len(),
                unconditional: None,
            })
            .collect(),
    ))
}

/// The log probability of `token` in `logprobs` (minus infinity for none or an unknown one).
fn logprob_of(logprobs: &[f32], token: Option<&Token>) -> f64 {
    token
        .and_then(|t| usize::try_from(*t).ok())
        .and_then(|i| logprobs.get(i))
        .map_or(f64::NEG_INFINITY, |lp| f64::from(*lp))
}

/// The index of the best option (the first on ties).
fn best(scored: &[Scored], normalize: Normalize) -> Option<usize> {
    scored
        .iter()
        .enumerate()
        .max_by(|(ia, a), (ib, b)| {
            a.value(normalize)
                .total_cmp(&b.value(normalize))
                .then(ib.cmp(ia))
        })
        .map(|(i, _)| i)
}

/// The prompts and replies of `score=letter`.
struct Letters {
    chat: Vec<Message>,
    plain: String,
}

impl Letters {
    fn new(system: Option<&str>, choices: &Choices) -> Self {
        let question = letter_question(choices);
        let mut chat = Vec::with_capacity(2);
        if let Some(system) = system {
            chat.push(Message::system(system));
        }
        chat.push(Message::user(question.clone()));
        Self {
            chat,
            plain: plain_prompt(system, &question),
        }
    }

    /// Every option's letter scored as the reply: `The answer is (X)` in the chat
    /// template, ` (X)` after the plain prompt. The scores keep the options' texts.
    fn score(
        &self,
        session: &mut dyn TokenSession,
        plain: bool,
        options: &[(char, String)],
        limits: &TokenLimits,
    ) -> Result<Option<Vec<Scored>>, BackendError> {
        let base = if plain {
            let tokens = session.tokenize_prompt(&self.plain)?;
            session.start(&tokens)?
        } else {
            session.start_chat(&self.chat)?
        };
        let (prefix, replies): (&str, Vec<(char, String)>) = if plain {
            (
                " ",
                options
                    .iter()
                    .map(|(l, _)| (*l, format!("({l})")))
                    .collect(),
            )
        } else {
            let reply = |l: &char| format!("The answer is ({l})");
            ("", options.iter().map(|(l, _)| (*l, reply(l))).collect())
        };
        let scored = score_options(session, base, prefix, &replies, limits);
        session.release(base);
        Ok(scored?.map(|scored| {
            scored
                .into_iter()
                .zip(options)
                .map(|(s, (_, text))| Scored {
                    text: text.clone(),
                    ..s
                })
                .collect()
        }))
    }
}

impl Approach for ChoiceLikelihood {
    const SLUG: &'static str = SLUG;
    const DESCRIPTION: &'static str = "Multiple choice by likelihood: every lettered option scored as the \
         reply to the question stem (summed token log-probabilities, per \
         character by default), forked from one prompt; the best option wins. \
         score=letter scores the options' letters after the question with its \
         options; score=auto the letters when the best is sure, else the texts";
    type Params = Params;

    fn from_params(params: Params) -> Result<Self, SpecError> {
        if !(0.0..=1.0).contains(&params.letter_confidence) {
            return Err(SpecError::BadParameter {
                approach: SLUG.into(),
                message: format!(
                    "letter_confidence must be between 0 and 1, not {}",
                    params.letter_confidence
                ),
            });
        }
        Ok(Self::new(params))
    }
}

#[async_trait]
impl Strategy for ChoiceLikelihood {
    fn slug(&self) -> &str {
        SLUG
    }

    async fn run(&self, ctx: &Ctx, request: &StrategyRequest) -> Result<Answer, StrategyError> {
        let query = request.query()?;
        let choices = split_choices(query).ok_or_else(|| StrategyError::Unanswerable {
            approach: SLUG.into(),
            message: "the query has no lettered options (lines `(A) ...`, `(B) ...` after \
                      the question)"
                .into(),
        })?;
        let user = if self.params.show_options {
            query.to_string()
        } else {
            choices.stem.clone()
        };
        let format = self.params.format;
        let mut messages = Vec::with_capacity(2);
        let plain = plain_prompt(request.system(), &user);
        match format {
            Format::Chat | Format::Auto => {
                if let Some(system) = request.system() {
                    messages.push(Message::system(system));
                }
                messages.push(Message::user(user));
            }
            // The token session evaluates a chat prompt first; the plain prompt as its
            // user message keeps the trace showing what was scored.
            Format::Plain => messages.push(Message::user(plain.clone())),
        }
        let chat = request.chat(messages, &Sampling::default());
        let letters = Letters::new(request.system(), &choices);
        let options = choices.options;
        let normalize = self.params.normalize;
        let (score, threshold) = (self.params.score, self.params.letter_confidence);
        let (scored, normalize) = ctx
            .token_job("option likelihoods", chat, move |session, limits| {
                let use_plain = match format {
                    Format::Chat => false,
                    Format::Plain => true,
                    Format::Auto => !session.has_chat_template(),
                };
                if score != Score::Text {
                    // Asked as the model is asked questions (`format` is about the texts).
                    let plain = !session.has_chat_template();
                    let Some(by_letter) = letters.score(session, plain, &options, limits)? else {
                        return Ok(((None, normalize), Vec::new()));
                    };
                    let sure = confidence(&by_letter);
                    tracing::debug!(confidence = sure, "letters scored");
                    if score == Score::Letter || sure >= threshold {
                        let texts = by_letter
                            .iter()
                            .map(|s| format!("({}) by letter: {:.3}", s.letter, s.logprob))
                            .collect();
                        // One token or so each, the same for every option: the plain sum.
                        return Ok(((Some(by_letter), Normalize::None), texts));
                    }
                }
                let mut scored = if use_plain {
                    let tokens = session.tokenize_prompt(&plain)?;
                    // The chat prompt of sequence 0 is not needed: free its cells.
                    session.release(0);
                    let base = session.start(&tokens)?;
                    let scored = score_options(session, base, " ", &options, limits);
                    session.release(base);
                    scored?
                } else {
                    score_options(session, 0, "", &options, limits)?
                };
                if let (Normalize::Unconditional, Some(conditional)) = (normalize, &mut scored) {
                    let tokens = session.tokenize_prompt(UNCONDITIONAL_PROMPT)?;
                    let base = session.start(&tokens)?;
                    let bare = score_options(session, base, " ", &options, limits);
                    session.release(base);
                    match bare? {
                        Some(bare) => {
                            for (s, b) in conditional.iter_mut().zip(bare) {
                                s.unconditional = Some(b.logprob);
                            }
                        }
                        None => scored = None,
                    }
                }
                let texts = scored
                    .iter()
                    .flatten()
                    .map(|s| format!("({}) {}: {:.3}", s.letter, s.text, s.logprob))
                    .collect();
                Ok(((scored, normalize), texts))
            })
            .await?;
        let scored = scored.ok_or(StrategyError::BudgetExhausted)?;
        let chosen = best(&scored, normalize)
            .and_then(|i| scored.get(i))
            .ok_or(StrategyError::BudgetExhausted)?;
        let answer = format!("The answer is ({}) {}", chosen.letter, chosen.text);
        let candidates = scored
            .iter()
            .map(|s| {
                format!(
                    "[option: {}, logprob: {:.3}, score: {:.4}] {}",
                    s.letter,
                    s.logprob,
                    s.value(normalize),
                    s.text
                )
            })
            .collect();
        Ok(Answer::one(answer).with_candidates(candidates))
    }
}

#[cfg(test)]
mod tests {
    use std::sync::Arc;

    use super::*;
    use crate::mock::MockBackend;
    use crate::mock_tokens::{MockTokenBackend, logits_with};
    use crate::strategy::{Budget, run};

    const QUERY: &str = "Which is a planet?\n\n(A) Moon\n(B) Mars red\n(C) Sun\n\n\
                         Answer with the letter.";

    #[test]
    fn options_are_split_from_the_stem_and_the_instruction() {
        let c = split_choices(QUERY).unwrap();
        assert_eq!(c.stem, "Which is a planet?");
        assert_eq!(
            c.options,
            vec![
                ('A', "Moon".to_string()),
                ('B', "Mars red".to_string()),
                ('C', "Sun".to_string())
            ]
        );
        let other = split_choices("Pick one:\nA. yes\nB) no\n\nC: maybe\nD.no space").unwrap();
        assert_eq!(other.options.len(), 3);
        // The run of options ends at the first other line.
        let cut = split_choices("Q?\n(A) x\n(B) y\nSo (C) z\n(C) w").unwrap();
        assert_eq!(cut.options.len(), 2);
        // Out of order, a single option, no stem, no options: not a choice question.
        assert!(split_choices("Q?\n(B) x\n(A) y").is_none());
        assert!(split_choices("Q?\n(A) x").is_none());
        assert!(split_choices("(A) x\n(B) y").is_none());
        assert!(split_choices("What is 6 times 7?").is_none());
        assert!(split_choices("Q?\n(A) é\n(B) ü").is_some());
    }

    // Vocabulary: 0 <eos>, 1 "Moon", 2 "Mars", 3 " red", 4 "Sun".
    const VOCAB: [&str; 5] = ["<eos>", "Moon", "Mars", " red", "Sun"];

    /// After the prompt: Moon -1 nat-ish, Mars a bit less likely, Sun unlikely; after
    /// "Mars", " red" is near certain.
    fn script(toks: &[Token]) -> Vec<f32> {
        match toks {
            [] => logits_with(5, 0.0, &[(1, 3.0), (2, 2.5), (4, 0.5)]),
            [2] => logits_with(5, 0.0, &[(3, 12.0)]),
            _ => logits_with(5, 0.0, &[(0, 5.0)]),
        }
    }

    async fn answer(normalize: Normalize) -> (crate::strategy::Outcome, Arc<MockTokenBackend>) {
        let backend = Arc::new(MockTokenBackend::new(&VOCAB, &[0], script));
        let strategy = ChoiceLikelihood::new(Params {
            normalize,
            ..Params::default()
        });
        let out = run(
            &strategy,
            backend.clone(),
            &StrategyRequest::user(QUERY),
            Budget::default(),
        )
        .await
        .unwrap();
        (out, backend)
    }

    #[tokio::test]
    async fn the_plain_sum_and_the_normalised_scores_rank_the_options() {
        // Sum: Moon (one likely token) beats Mars red (a less likely first token).
        let (out, backend) = answer(Normalize::None).await;
        assert_eq!(out.answer, "The answer is (A) Moon");
        assert_eq!(out.candidates.len(), 3);
        assert_eq!(out.usage.calls, 1);
        // The stem alone was evaluated; the options were forked and appended in batches.
        let asked = backend.requests();
        assert_eq!(
            asked[0].messages.last().unwrap().content,
            "Which is a planet?"
        );
        let stats = backend.last_session().unwrap();
        assert_eq!(stats.forks, 3);
        assert_eq!(stats.released, 3);
        // Only "Mars red" has a second token: one batch of one token ("Mars").
        assert_eq!(stats.batch_sizes, vec![1]);
        assert_eq!(
            stats.sequences.values().filter(|s| s == &&vec![2]).count(),
            1
        );
        // Per character, "Mars red" (8 characters, nearly all of it certain) wins.
        let (out, _) = answer(Normalize::Chars).await;
        assert_eq!(out.answer, "The answer is (B) Mars red");
        // Per token too.
        let (out, _) = answer(Normalize::Tokens).await;
        assert_eq!(out.answer, "The answer is (B) Mars red");
        assert_eq!(
            crate::extract::extract(&out.answer, crate::extract::AnswerKind::Choice).as_deref(),
            Some("B")
        );
    }

    // Letters: 5 "The answer is (", 6-8 the letters, 9 the letter prompt (the chat
    // template's rendering of the question with its options and the instruction).
    const LETTER_VOCAB: [&str; 10] = [
        "<eos>",
        "Moon",
        "Mars",
        " red",
        "Sun",
        "The answer is (",
        "A)",
        "B)",
        "C)",
        "<letters>",
    ];

    /// The texts as in `script` (per character "Mars red" wins); the letters favour (C),
    /// by far when `sure`, by a little otherwise.
    fn letter_script(sure: bool, toks: &[Token]) -> Vec<f32> {
        let c = if sure { 6.0 } else { 1.2 };
        match toks {
            [9] => logits_with(10, 0.0, &[(5, 12.0)]),
            [9, 5] => logits_with(10, 0.0, &[(6, 1.0), (7, 1.0), (8, c)]),
            [] => logits_with(10, 0.0, &[(1, 3.0), (2, 2.5), (4, 0.5)]),
            [2] => logits_with(10, 0.0, &[(3, 12.0)]),
            _ => logits_with(10, 0.0, &[(0, 5.0)]),
        }
    }

    async fn by_letter(score: Score, sure: bool) -> String {
        let backend = MockTokenBackend::new(&LETTER_VOCAB, &[0], move |t| letter_script(sure, t))
            .with_chat_prompts(|messages| {
                // The letter prompt: the question with its options and the instruction.
                let asked = messages.last().map(|m| m.content.as_str()).unwrap_or("");
                let whole = asked.contains("(C) Sun") && asked.ends_with(LETTER_INSTRUCTION);
                if whole { vec![9] } else { vec![] }
            });
        let strategy = ChoiceLikelihood::new(Params {
            score,
            ..Params::default()
        });
        let request = StrategyRequest::user(QUERY);
        run(&strategy, Arc::new(backend), &request, Budget::default())
            .await
            .unwrap()
            .answer
    }

    #[tokio::test]
    async fn letters_answer_when_asked_for_or_when_sure() {
        // By letter, sure or not.
        assert_eq!(
            by_letter(Score::Letter, true).await,
            "The answer is (C) Sun"
        );
        assert_eq!(
            by_letter(Score::Letter, false).await,
            "The answer is (C) Sun"
        );
        // `auto`: the letter when it holds most of the letters' probability (here 0.99),
        // else the texts (0.38 < 0.5: per character, "Mars red").
        assert_eq!(by_letter(Score::Auto, true).await, "The answer is (C) Sun");
        assert_eq!(
            by_letter(Score::Auto, false).await,
            "The answer is (B) Mars red"
        );
        // The texts alone, as before.
        assert_eq!(
            by_letter(Score::Text, true).await,
            "The answer is (B) Mars red"
        );
    }

    #[test]
    fn the_letter_confidence_is_a_share() {
        let scored = |lps: &[f64]| -> Vec<Scored> {
            lps.iter()
                .map(|lp| Scored {
                    letter: 'A',
                    text: String::new(),
                    logprob: *lp,
                    tokens: 1,
                    unconditional: None,
                })
                .collect()
        };
        let half = 0.5f64.ln();
        assert!((confidence(&scored(&[half, half])) - 0.5).abs() < 1e-12);
        assert!((confidence(&scored(&[0.0, f64::NEG_INFINITY])) - 1.0).abs() < 1e-12);
        assert_eq!(confidence(&scored(&[f64::NEG_INFINITY; 2])), 0.0);
        let params = |v: f64| Params {
            letter_confidence: v,
            ..Params::default()
        };
        assert!(ChoiceLikelihood::from_params(params(1.5)).is_err());
        assert!(ChoiceLikelihood::from_params(params(f64::NAN)).is_err());
        assert!(ChoiceLikelihood::from_params(params(0.7)).is_ok());
    }

    #[test]
    fn scores_are_the_log_probabilities_of_the_tokens() {
        let logit_fn: Arc<crate::mock_tokens::LogitFn> = Arc::new(script);
        let mut session = crate::mock_tokens::ScriptedSession::new(
            VOCAB.iter().map(|v| v.as_bytes().to_vec()).collect(),
            vec![0],
            logit_fn,
            4,
            64,
        );
        let options = vec![('A', "Moon".to_string()), ('B', "Mars red".to_string())];
        let scored = score_options(&mut session, 0, "", &options, &TokenLimits::none())
            .unwrap()
            .unwrap();
        let first = log_softmax(&script(&[]));
        let second = log_softmax(&script(&[2]));
        assert!((scored[0].logprob - f64::from(first[1])).abs() < 1e-9);
        let mars = f64::from(first[2]) + f64::from(second[3]);
        assert!((scored[1].logprob - mars).abs() < 1e-9);
        assert_eq!((scored[0].tokens, scored[1].tokens), (1, 2));
    }

    // Plain format: 0 <eos>, 1 <bos>, 2 the whole plain prompt, 3 " Moon", 4 " Mars",
    // 5 " red", 6 "Sun", 7 " Sun" ("Sun" alone is never a plain continuation).
    const PLAIN_VOCAB: [&str; 8] = [
        "<eos>",
        "<bos>",
        "Question: Which is a planet?\nAnswer:",
        " Moon",
        " Mars",
        " red",
        "Sun",
        " Sun",
    ];

    /// Logits that depend on the whole history of a sequence: after the plain prompt
    /// with BOS, " Mars" is likely and " Sun" certain-ish after nothing else; after the
    /// prompt without BOS, " Moon" wins. Anything else (a chat prompt, whose sequence
    /// starts empty) prefers "Sun".
    fn plain_script(toks: &[Token]) -> Vec<f32> {
        match toks {
            [1, 2] => logits_with(8, 0.0, &[(3, 2.0), (4, 4.0), (7, 1.0)]),
            [2] => logits_with(8, 0.0, &[(3, 6.0), (4, 1.0), (7, 1.0)]),
            [1, 2, 4] | [2, 4] => logits_with(8, 0.0, &[(5, 9.0)]),
            [] => logits_with(8, 0.0, &[(6, 9.0)]),
            _ => logits_with(8, 0.0, &[(0, 5.0)]),
        }
    }

    async fn plain_answer(
        backend: MockTokenBackend,
        normalize: Normalize,
    ) -> (crate::strategy::Outcome, Arc<MockTokenBackend>) {
        let backend = Arc::new(backend);
        let strategy = ChoiceLikelihood::new(Params {
            normalize,
            format: Format::Plain,
            ..Params::default()
        });
        let request = StrategyRequest::user(QUERY);
        let out = run(&strategy, backend.clone(), &request, Budget::default())
            .await
            .unwrap();
        (out, backend)
    }

    #[tokio::test]
    async fn the_plain_format_scores_options_after_a_raw_prompt_with_a_leading_space() {
        let with_bos = MockTokenBackend::new(&PLAIN_VOCAB, &[0], plain_script).with_bos(1);
        let (out, backend) = plain_answer(with_bos, Normalize::None).await;
        assert_eq!(out.answer, "The answer is (B) Mars red");
        // The raw prompt (BOS first) started its own sequence; each option was forked
        // from it with a leading space: " Moon", " Mars" " red", " Sun".
        let stats = backend.last_session().unwrap();
        assert_eq!(stats.started, vec![vec![1, 2]]);
        assert_eq!(stats.forks, 3);
        let mut finals: Vec<Vec<Token>> = stats
            .sequences
            .values()
            .filter(|s| s.len() > 2)
            .cloned()
            .collect();
        finals.sort();
        assert_eq!(finals, vec![vec![1, 2, 4]]);
        // Every sequence was released: the chat prompt's, the started one, the options.
        assert_eq!(stats.released, 5);
        // The trace shows the plain prompt as the one message.
        let asked = backend.requests();
        assert_eq!(asked[0].messages.len(), 1);
        assert_eq!(
            asked[0].messages[0].content,
            "Question: Which is a planet?\nAnswer:"
        );
        // The scores are those of the raw prompt's continuations.
        let first = log_softmax(&plain_script(&[1, 2]));
        let second = log_softmax(&plain_script(&[1, 2, 4]));
        let mars = f64::from(first[4]) + f64::from(second[5]);
        assert!(
            out.candidates[1].contains(&format!("logprob: {mars:.3}")),
            "{:?}",
            out.candidates
        );
        // Without a BOS in the vocabulary, the prompt starts with its text.
        let without = MockTokenBackend::new(&PLAIN_VOCAB, &[0], plain_script);
        let (out, backend) = plain_answer(without, Normalize::None).await;
        assert_eq!(out.answer, "The answer is (A) Moon");
        assert_eq!(backend.last_session().unwrap().started, vec![vec![2]]);
        // Usage counts the chat prompt the session evaluated and the raw prompt.
        assert_eq!(out.usage.calls, 1);
    }

    #[tokio::test]
    async fn the_default_format_is_chat_with_the_models_template_and_plain_without() {
        // 0 <eos>, 1 the plain prompt, 2-5 plain continuations, 6-8 chat replies.
        const VOCAB: [&str; 9] = [
            "<eos>",
            "Question: Which is a planet?\nAnswer:",
            " Moon",
            " Mars",
            " red",
            " Sun",
            "Moon",
            "Mars",
            "Sun",
        ];
        // After the plain prompt " Moon" is likely; after the chat prompt (a sequence
        // that starts empty) "Sun".
        let script = |toks: &[Token]| match toks {
            [1] => logits_with(9, 0.0, &[(2, 6.0)]),
            [] => logits_with(9, 0.0, &[(8, 6.0)]),
            _ => logits_with(9, 0.0, &[(0, 5.0)]),
        };
        assert_eq!(Params::default().format, Format::Auto);
        let strategy = ChoiceLikelihood::new(Params {
            normalize: Normalize::None,
            ..Params::default()
        });
        let request = StrategyRequest::user(QUERY);
        let instruct = Arc::new(MockTokenBackend::new(&VOCAB, &[0], script));
        let out = run(&strategy, instruct.clone(), &request, Budget::default())
            .await
            .unwrap();
        assert_eq!(out.answer, "The answer is (C) Sun");
        assert!(instruct.last_session().unwrap().started.is_empty());
        let base = Arc::new(MockTokenBackend::new(&VOCAB, &[0], script).without_chat_template());
        let out = run(&strategy, base.clone(), &request, Budget::default())
            .await
            .unwrap();
        assert_eq!(out.answer, "The answer is (A) Moon");
        assert_eq!(base.last_session().unwrap().started, vec![vec![1]]);
        // An explicit format holds whatever the model.
        let chat = ChoiceLikelihood::new(Params {
            normalize: Normalize::None,
            format: Format::Chat,
            ..Params::default()
        });
        let out = run(&chat, base, &request, Budget::default()).await.unwrap();
        assert_eq!(out.answer, "The answer is (C) Sun");
    }

    #[tokio::test]
    async fn the_plain_format_puts_a_system_prompt_before_the_question() {
        assert_eq!(
            plain_prompt(Some("Be brief."), "Q?"),
            "Be brief.\n\nQuestion: Q?\nAnswer:"
        );
        assert_eq!(plain_prompt(None, "Q?"), "Question: Q?\nAnswer:");
        // The vocabulary cannot tokenize the system prompt: a clear backend error.
        let backend = Arc::new(MockTokenBackend::new(&PLAIN_VOCAB, &[0], plain_script));
        let strategy = ChoiceLikelihood::new(Params {
            format: Format::Plain,
            ..Params::default()
        });
        let request =
            StrategyRequest::new(vec![Message::system("Be brief."), Message::user(QUERY)]);
        let err = run(&strategy, backend.clone(), &request, Budget::default())
            .await
            .unwrap_err();
        assert!(err.to_string().contains("cannot tokenize"), "{err}");
        let asked = backend.requests();
        assert!(
            asked[0].messages[0]
                .content
                .starts_with("Be brief.\n\nQuestion:")
        );
    }

    #[tokio::test]
    async fn unconditional_scores_subtract_the_options_likelihood_after_a_bare_answer() {
        // 0 <eos>, 1 the plain prompt, 2 " Moon", 3 " Mars", 4 " red", 5 " Sun", 6 "Answer:".
        const VOCAB: [&str; 7] = [
            "<eos>",
            "Question: Which is a planet?\nAnswer:",
            " Moon",
            " Mars",
            " red",
            " Sun",
            "Answer:",
        ];
        // After the question " Moon" is likeliest, but after a bare "Answer:" it is far
        // likelier still: the question raises " Mars" most.
        fn script(toks: &[Token]) -> Vec<f32> {
            match toks {
                [1] => logits_with(7, 0.0, &[(2, 3.0), (3, 2.0), (5, 1.0)]),
                [6] => logits_with(7, 0.0, &[(2, 6.0), (3, 0.5), (5, 1.0)]),
                [1, 3] | [6, 3] => logits_with(7, 0.0, &[(4, 12.0)]),
                _ => logits_with(7, 0.0, &[(0, 5.0)]),
            }
        }
        let answer =
            |normalize| plain_answer(MockTokenBackend::new(&VOCAB, &[0], script), normalize);
        let (out, _) = answer(Normalize::None).await;
        assert_eq!(out.answer, "The answer is (A) Moon");
        let (out, backend) = answer(Normalize::Unconditional).await;
        assert_eq!(out.answer, "The answer is (B) Mars red");
        // The bare prompt was started after the question's, and both were released.
        let stats = backend.last_session().unwrap();
        assert_eq!(stats.started, vec![vec![1], vec![6]]);
        assert_eq!(stats.forks, 6);
        // The score is the difference of the two sums.
        let lp = |history: &[Token], t: usize| f64::from(log_softmax(&script(history))[t]);
        let mars = (lp(&[1], 3) + lp(&[1, 3], 4)) - (lp(&[6], 3) + lp(&[6, 3], 4));
        assert!(
            out.candidates[1].contains(&format!("score: {mars:.4}")),
            "{:?}",
            out.candidates
        );
    }

    #[test]
    fn the_format_is_a_parameter() {
        let info = crate::strategies::catalogue()
            .into_iter()
            .find(|i| i.slug == SLUG)
            .unwrap();
        let mut plain = info.params.clone();
        plain.insert("format".into(), serde_json::json!("plain"));
        assert!(crate::strategies::build(SLUG, &plain).is_ok());
        plain.insert("format".into(), serde_json::json!("raw"));
        assert!(crate::strategies::build(SLUG, &plain).is_err());
    }

    #[tokio::test]
    async fn a_query_without_options_and_a_backend_without_tokens_are_clear_errors() {
        let backend = Arc::new(MockTokenBackend::new(&VOCAB, &[0], script));
        let err = run(
            &ChoiceLikelihood::default(),
            backend,
            &StrategyRequest::user("What is 6 times 7?"),
            Budget::default(),
        )
        .await
        .unwrap_err();
        assert!(matches!(err, StrategyError::Unanswerable { .. }), "{err}");
        let err = run(
            &ChoiceLikelihood::default(),
            Arc::new(MockBackend::constant("x")),
            &StrategyRequest::user(QUERY),
            Budget::default(),
        )
        .await
        .unwrap_err();
        assert!(err.to_string().contains("token_control"), "{err}");
    }

    #[test]
    fn registered_with_its_defaults() {
        let info = crate::strategies::catalogue()
            .into_iter()
            .find(|i| i.slug == SLUG)
            .unwrap();
        assert_eq!(info.params["normalize"], "chars");
        assert_eq!(info.params["format"], "auto");
        assert!(crate::strategies::build(SLUG, &info.params).is_ok());
        let mut bad = info.params.clone();
        bad.insert("normalize".into(), serde_json::json!("bytes"));
        assert!(crate::strategies::build(SLUG, &bad).is_err());
    }
}
