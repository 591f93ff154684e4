//! `mixed_vote`: a vote over ways of reasoning whose mistakes differ. A program
//! (`pot`: Python run exactly by [`crate::pyeval`]), a greedy chain of thought and
//! `samples` chains of thought sampled at `temperature` answer the same question at
//! once; the most frequent answer wins (read as the question implies, as every vote
//! reads it: a number, or a word or yes / no where a word problem asks for one). A tie
//! goes to the program, then to the greedy chain, then to the samples in order.
//!
//! Why: on math word problems a tiny model's programs and its chains of thought fail on
//! different questions (Qwen2.5-Coder-0.5B on GSM8K: `pot` and greedy `none` each
//! right on about a quarter of the questions, but not the same quarter), so where
//! two of them agree the answer is far more often right than any one of them; sampled
//! chains of the same prompt agree with each other in their mistakes much more. This
//! is the chain-of-thought + program-aided ensemble of Zhao et al. 2023 ("Automatic
//! model selection with large language models for reasoning"), decided by a vote
//! instead of a selection call.
//!
//! By default (`samples_when=disagree`) the sampled chains are drawn only when the
//! program and the greedy chain give different answers. Where the two agree, two samples
//! cannot change the answer (if they agree on another number, that is a tie, which goes
//! to the program), so with `samples <= 2` the answers are those of drawing the samples
//! always, for fewer tokens and, on a CPU, less time; the price is a second round on the
//! questions where they disagree, which a batching GPU server would have run alongside
//! (`samples_when=always` asks for all four at once; docs/results.md has the figures).
//!
//! With `calculator`, on a backend with token control (native), the program and the
//! chains are decoded in one token job, one batch a step (the program from its own
//! conversation, [`crate::TokenSession::start_chat`]); where they would overflow the
//! context together, they run one after the other.
//!
//! Every voter is recorded as a [`Sample`] in the vote's order (the program, the greedy
//! chain, the samples), with its confidence where the backend reports log-probabilities
//! over chat calls, so `optillm eval --rescore` can score other rules on the same voters
//! (`vote(k=4)` is this vote: a tie goes to the first voter).

use async_trait::async_trait;
use serde::{Deserialize, Serialize};

use super::Approach;
use super::calculator::{self, Calculator, Chain, Decoded};
use super::pot;
use super::read_answer::answer_kind;
use super::sampler::max_new_tokens;
use super::util::{temp, with_confidences};
use crate::error::BackendError;
use crate::extract::{self, AnswerKind, Vote};
use crate::samples::Sample;
use crate::spec::SpecError;
use crate::strategy::{Answer, Ctx, Strategy, StrategyError, StrategyRequest};

pub const SLUG: &str = "mixed_vote";

/// The parameters of `mixed_vote`; a field a spec leaves out takes its default here
/// (`optillm approaches` lists them).
#[derive(Debug, Clone, Serialize, Deserialize)]
#[serde(default, deny_unknown_fields)]
pub struct Params {
    /// One greedy program (`pot`) votes.
    pub program: bool,
    /// One greedy chain of thought votes.
    pub greedy: bool,
    /// Sampled chains of thought that vote, drawn in one request with `n = samples`.
    pub samples: u32,
    /// Temperature of the sampled chains.
    pub temperature: f32,
    /// When the sampled chains are drawn: `disagree` (after the program and the greedy
    /// chain, only when their answers differ) or `always` (with them, at once).
    pub samples_when: SamplesWhen,
    /// Run the Python blocks the chains write and let them go on from the real output:
    /// the chains are decoded by `calculator` where the backend gives token control
    /// (native: exact arithmetic too), else over chat calls that stop at each output
    /// fence and continue the assistant's message after the program's output.
    pub calculator: bool,
}

/// When `mixed_vote` draws its sampled chains.
#[derive(Debug, Clone, Copy, Default, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "snake_case")]
pub enum SamplesWhen {
    /// Together with the program and the greedy chain.
    Always,
    /// After them, and only when the two answers differ (or one is missing).
    #[default]
    Disagree,
}

impl Default for Params {
    fn default() -> Self {
        Self {
            program: true,
            greedy: true,
            samples: 2,
            temperature: 0.6,
            samples_when: SamplesWhen::Disagree,
            calculator: false,
        }
    }
}

/// The `mixed_vote` strategy (the module documentation describes it): built from typed
/// [`Params`] with `new`, or by name through [`crate::strategies::build`].
#[derive(Debug, Clone)]
pub struct MixedVote {
    params: Params,
    /// With `calculator`: the greedy chain's and the sampled chains' decoders.
    greedy_calculator: Option<Calculator>,
    samples_calculator: Option<Calculator>,
}

impl MixedVote {
    pub fn new(params: Params) -> Result<Self, SpecError> {
        let bad = |message: &str| SpecError::BadParameter {
            approach: SLUG.to_string(),
            message: message.to_string(),
        };
        if !params.program && !params.greedy && params.samples == 0 {
            return Err(bad(
                "nothing votes: keep the program, the greedy chain or samples",
            ));
        }
        if !params.temperature.is_finite() || params.temperature < 0.0 {
            return Err(bad("temperature must be a number >= 0"));
        }
        let chains = |k: u32, temperature: f32| {
            Calculator::new(calculator::Params {
                k,
                temperature,
                ..calculator::Params::default()
            })
        };
        let greedy_calculator = (params.calculator && params.greedy)
            .then(|| chains(1, 0.0))
            .transpose()?;
        let samples_calculator = (params.calculator && params.samples > 0)
            .then(|| chains(params.samples, params.temperature))
            .transpose()?;
        Ok(Self {
            params,
            greedy_calculator,
            samples_calculator,
        })
    }

    /// `n` chains at `temperature`, read as `kind`: without a decoder, one chat request
    /// (with log-probabilities where the backend has them, for the samples'
    /// confidences); with one, `calculator`'s decoding (token by token where the backend
    /// gives token control, else chat calls that run the chains' programs between them).
    async fn chains(
        ctx: &Ctx,
        request: &StrategyRequest,
        purpose: &str,
        decoder: Option<&Calculator>,
        (temperature, n): (f32, u32),
        kind: Option<AnswerKind>,
    ) -> Result<Vec<Sample>, StrategyError> {
        match decoder {
            Some(c) => {
                let decoded = c.decode(ctx, request, purpose).await?;
                Ok(decoded
                    .into_iter()
                    .map(|d| decoded_sample(d, kind))
                    .collect())
            }
            None => {
                let chat = request
                    .chat(request.messages.clone(), &temp(temperature))
                    .with_n(n.max(1));
                let completion = ctx.call(purpose, with_confidences(ctx, chat)).await?;
                Ok(completion
                    .choices
                    .iter()
                    .map(|c| Sample::from_choice(c, kind))
                    .collect())
            }
        }
    }

    /// The greedy program over a chat call (`pot`'s request), as a voter (none when the
    /// backend returns no choice).
    async fn program(
        ctx: &Ctx,
        request: &StrategyRequest,
        kind: Option<AnswerKind>,
    ) -> Result<Option<Sample>, StrategyError> {
        let chat = pot::program_chat(ctx, request, (1, 0.0), true)?;
        let completion = ctx.without_sink().call("program", chat).await?;
        match completion.choices.first() {
            Some(c) => Ok(Some(
                program_voter(Sample::from_choice(c, None), kind).await,
            )),
            None => Ok(None),
        }
    }
}

/// A chain decoded by `calculator` as a sample (no confidence: the decoder keeps none).
fn decoded_sample(d: Decoded, kind: Option<AnswerKind>) -> Sample {
    Sample {
        answer: extract::extract_as(&d.text, kind),
        text: d.text,
        completion_tokens: d.tokens,
        finish_reason: Some(d.finish),
        confidence: None,
    }
}

/// A program reply as a voter: its text becomes what `pot` answers for it (the program
/// run and its result, or the reply itself when no program gives a number), read as
/// `kind`; tokens, end and confidence stay the reply's.
async fn program_voter(reply: Sample, kind: Option<AnswerKind>) -> Sample {
    let (answer, _) = pot::judge(std::slice::from_ref(&reply.text)).await;
    let text = answer.choices.into_iter().next().unwrap_or_default();
    Sample {
        answer: extract::extract_as(&text, kind),
        text,
        ..reply
    }
}

/// A voter: its label and its reply as a sample.
#[derive(Debug, Clone)]
struct Voter {
    label: String,
    sample: Sample,
}

impl Voter {
    fn new(label: impl Into<String>, sample: Sample) -> Self {
        Self {
            label: label.into(),
            sample,
        }
    }
}

/// Voters of one kind, or why there are none.
type Voters = Result<Vec<Voter>, StrategyError>;

/// Most tokens of the program in [`MixedVote::decode_together`] (a reply of `pot` over
/// chat calls is bounded by the request's `max_tokens` alone).
const PROGRAM_MAX_TOKENS: u32 = 512;

impl MixedVote {
    /// With `calculator` where the backend gives token control: the program, the greedy
    /// chain and (with `samples`) the sampled chains decoded in one token job, one batch
    /// a step. As separate calls they would not share batches: the native backend runs
    /// a token job on its own. An error is the job's.
    async fn decode_together(
        &self,
        ctx: &Ctx,
        request: &StrategyRequest,
        samples: bool,
        kind: Option<AnswerKind>,
    ) -> Result<[Voters; 3], StrategyError> {
        let mut chains = Vec::new();
        if self.params.program {
            let query = request.query()?;
            let max_tokens = max_new_tokens(PROGRAM_MAX_TOKENS, request.sampling.max_tokens);
            chains.push(Chain::plain(
                pot::messages(request.system(), query),
                max_tokens as usize,
            ));
        }
        let programs = chains.len();
        if let Some(c) = &self.greedy_calculator {
            chains.extend(c.chains(request));
        }
        let greedy = chains.len() - programs;
        if let (true, Some(c)) = (samples, &self.samples_calculator) {
            chains.extend(c.chains(request));
        }
        let decoded = calculator::decode_job(ctx, request, "program and chains", chains).await?;
        let mut decoded = decoded.into_iter();
        let mut program = Vec::new();
        for d in decoded.by_ref().take(programs) {
            let voter = program_voter(decoded_sample(d, None), kind).await;
            program.push(Voter::new("program", voter));
        }
        let greedy = decoded
            .by_ref()
            .take(greedy)
            .map(|d| Voter::new("greedy chain", decoded_sample(d, kind)))
            .collect();
        let sampled = decoded
            .enumerate()
            .map(|(i, d)| Voter::new(format!("sampled chain {}", i + 1), decoded_sample(d, kind)))
            .collect();
        Ok([Ok(program), Ok(greedy), Ok(sampled)])
    }
}

impl Approach for MixedVote {
    const SLUG: &'static str = SLUG;
    const DESCRIPTION: &'static str = "Vote of a program (pot), a greedy chain of thought and, where those two \
         disagree, sampled chains; ties go to the program, then the greedy chain";
    type Params = Params;

    fn from_params(params: Params) -> Result<Self, SpecError> {
        Self::new(params)
    }
}

#[async_trait]
impl Strategy for MixedVote {
    fn slug(&self) -> &str {
        SLUG
    }

    async fn run(&self, ctx: &Ctx, request: &StrategyRequest) -> Result<Answer, StrategyError> {
        // Replies are read as the question implies, as every vote reads them: a word
        // problem's answer may be a number, a word ("Purple") or yes / no.
        let kind = answer_kind(request.query()?, None);
        let p = &self.params;
        // Each voter with its label; the order is the tie-break order.
        let program = async {
            if !p.program {
                return Ok(Vec::new());
            }
            let voter = Self::program(ctx, request, kind).await?;
            Ok(voter
                .map(|s| Voter::new("program", s))
                .into_iter()
                .collect())
        };
        let greedy = async {
            if !p.greedy {
                return Ok(Vec::new());
            }
            let decoder = self.greedy_calculator.as_ref();
            let chains = Self::chains(ctx, request, "greedy chain", decoder, (0.0, 1), kind);
            Ok(chains
                .await?
                .into_iter()
                .take(1)
                .map(|s| Voter::new("greedy chain", s))
                .collect())
        };
        // A function: the samples are drawn in one of two places below.
        let sampled = || async move {
            if p.samples == 0 {
                return Ok(Vec::new());
            }
            let decoder = self.samples_calculator.as_ref();
            let drawn = (p.temperature, p.samples);
            let chains = Self::chains(ctx, request, "sampled chain", decoder, drawn, kind);
            Ok(chains
                .await?
                .into_iter()
                .enumerate()
                .map(|(i, s)| Voter::new(format!("sampled chain {}", i + 1), s))
                .collect())
        };
        // The samples wait for the program and the greedy chain only where those two
        // may agree and make them needless.
        let samples_first = !(p.samples_when == SamplesWhen::Disagree && p.program && p.greedy);
        let together = if p.calculator && ctx.backend().capabilities().token_control {
            match self
                .decode_together(ctx, request, samples_first, kind)
                .await
            {
                // Together they overflow the context; one at a time each may fit.
                Err(StrategyError::Backend(BackendError::ContextOverflow { .. })) => {
                    tracing::debug!(approach = SLUG, "too long to decode together");
                    None
                }
                decoded => Some(decoded),
            }
        } else {
            None
        };
        let (a, b, c) = match together {
            Some(Ok([a, b, c])) => (a, b, samples_first.then_some(c)),
            Some(Err(e)) => (Err(e), Ok(Vec::new()), Some(Ok(Vec::new()))),
            None if samples_first => {
                let (a, b, c) = tokio::join!(program, greedy, sampled());
                (a, b, Some(c))
            }
            None => {
                let (a, b) = tokio::join!(program, greedy);
                (a, b, None)
            }
        };
        let c = match c {
            Some(c) => c,
            None if agree(&a, &b) => {
                tracing::debug!(
                    approach = SLUG,
                    "program and greedy chain agree: no samples"
                );
                Ok(Vec::new())
            }
            None => sampled().await,
        };
        let parts: [Voters; 3] = [a, b, c];
        let mut voters: Vec<Voter> = Vec::new();
        let mut first_error = None;
        for part in parts {
            match part {
                Ok(v) => voters.extend(v),
                Err(e) => {
                    first_error.get_or_insert(e);
                }
            }
        }
        // What was drawn is kept, even when a part failed.
        ctx.record_samples(voters.iter().map(|v| v.sample.clone()));

        let answers: Vec<Option<String>> = voters.iter().map(|v| v.sample.answer.clone()).collect();
        let vote = extract::vote(&answers);
        let pick = vote.as_ref().and_then(Vote::chosen).unwrap_or(0);
        let answer = voters
            .get(pick)
            .map(|v| v.sample.text.clone())
            .unwrap_or_default();
        if !answer.is_empty() {
            ctx.offer(answer.clone());
        }
        if let Some(e) = first_error {
            return Err(e);
        }
        tracing::info!(
            approach = SLUG,
            distribution = %vote.as_ref().map_or_else(|| "no answer".to_string(), |v| v.summary()),
            "mixed vote"
        );
        let candidates = voters
            .iter()
            .map(|v| {
                let a = v.sample.answer.as_deref().unwrap_or("none");
                format!("[{}: {a}] {}", v.label, v.sample.text)
            })
            .collect();
        Ok(Answer {
            choices: vec![answer],
            candidates,
            vote,
        })
    }
}

/// Whether the first voters of two parts state the same answer.
fn agree(a: &Voters, b: &Voters) -> bool {
    let answer = |r: &Voters| {
        r.as_ref()
            .ok()
            .and_then(|v| v.first())
            .and_then(|v| v.sample.answer.clone())
    };
    match (answer(a), answer(b)) {
        (Some(x), Some(y)) => extract::answers_equal(&x, &y),
        _ => false,
    }
}

#[cfg(test)]
mod tests {
    use std::sync::Arc;

    use super::*;
    use crate::mock::MockBackend;
    use crate::strategy::{Budget, run};
    use crate::token::Token;
    use crate::types::{ChatRequest, Role};

    const PROGRAM: &str =
        "```python\ndef solution():\n    eggs = 16 - 3 - 4\n    return eggs * 2\n```";

    const PROGRAM_WITHOUT_NUMBER: &str = "```python\ndef solution():\n    return \"purple\"\n```";

    fn is_program(r: &ChatRequest) -> bool {
        r.messages
            .first()
            .is_some_and(|m| m.role == Role::System && m.content == pot::SYSTEM)
    }

    /// A backend whose program, greedy chain and samples answer as given.
    fn backend(
        program: &'static str,
        greedy: &'static str,
        sampled: &'static [&'static str],
    ) -> Arc<MockBackend> {
        Arc::new(MockBackend::new(move |r, i| {
            Ok(if is_program(r) {
                program.to_string()
            } else if r.sampling.temperature == Some(0.0) {
                greedy.to_string()
            } else {
                sampled
                    .get(i as usize)
                    .copied()
                    .unwrap_or("no idea")
                    .to_string()
            })
        }))
    }

    async fn mixed(b: Arc<MockBackend>, params: Params) -> crate::Outcome {
        run(
            &MixedVote::new(params).unwrap(),
            b,
            &StrategyRequest::user("Eggs?"),
            Budget::default(),
        )
        .await
        .unwrap()
    }

    #[tokio::test]
    async fn program_greedy_chain_and_samples_vote_at_once() {
        let b = backend(
            PROGRAM,
            "So 9 * 2 = 18. The answer is 18.",
            &["The answer is 20.", "The answer is 18."],
        );
        let always = Params {
            samples_when: SamplesWhen::Always,
            ..Params::default()
        };
        let out = mixed(b.clone(), always).await;
        // 18 (program, greedy, one sample) beats 20.
        assert!(out.answer.contains("The answer is 18."), "{}", out.answer);
        assert!(
            out.answer.contains("```python"),
            "the program's text wins ties and leads: {}",
            out.answer
        );
        let sent = b.requests();
        assert_eq!(sent.len(), 3);
        let sampled: Vec<_> = sent
            .iter()
            .filter(|r| r.sampling.temperature == Some(0.6))
            .collect();
        assert_eq!(sampled.len(), 1);
        assert_eq!(sampled[0].n, 2);
        assert_eq!(sent.iter().filter(|r| is_program(r)).count(), 1);
        assert_eq!(out.candidates.len(), 4);
        assert!(
            out.candidates[0].starts_with("[program: 18]"),
            "{:?}",
            out.candidates
        );
        assert!(
            out.candidates[3].starts_with("[sampled chain 2: 18]"),
            "{:?}",
            out.candidates
        );
    }

    #[tokio::test]
    async fn a_tie_goes_to_the_program_then_the_greedy_chain() {
        // 18 (program) against 17 (greedy) against 20 and 21: one vote each.
        let b = backend(
            PROGRAM,
            "The answer is 17.",
            &["The answer is 20.", "The answer is 21."],
        );
        let out = mixed(b, Params::default()).await;
        assert!(out.answer.contains("The answer is 18."), "{}", out.answer);

        // Without the program, the greedy chain wins the tie.
        let b = backend(
            PROGRAM,
            "The answer is 17.",
            &["The answer is 20.", "The answer is 21."],
        );
        let out = mixed(
            b.clone(),
            Params {
                program: false,
                ..Params::default()
            },
        )
        .await;
        assert_eq!(out.answer, "The answer is 17.");
        assert!(!b.requests().iter().any(is_program));
    }

    #[tokio::test]
    async fn every_voter_is_recorded_in_vote_order_and_a_plain_rescore_is_the_vote() {
        // Four answers, one vote each: the program's wins the tie.
        let b = backend(
            PROGRAM,
            "The answer is 17.",
            &["The answer is 20.", "The answer is 21."],
        );
        let out = mixed(b.clone(), Params::default()).await;
        let answers: Vec<Option<&str>> = out.samples.iter().map(|s| s.answer.as_deref()).collect();
        assert_eq!(answers, [Some("18"), Some("17"), Some("20"), Some("21")]);
        // The program's sample is what the vote saw of it: the program and its result.
        assert!(out.samples[0].text.contains("The answer is 18."));
        assert!(out.samples[0].text.contains("```python"));
        // Log-probabilities were asked of every call, so every voter has a confidence.
        assert!(b.requests().iter().all(|r| r.logprobs.is_some()));
        assert!(out.samples.iter().all(|s| s.confidence.is_some()));
        assert!(out.samples.iter().all(|s| s.completion_tokens > 0));
        // The rescore's plain vote over the recorded voters is the live vote.
        let rescored = crate::samples::VoteRule::default()
            .vote(&out.samples)
            .unwrap();
        assert_eq!(rescored.winner, out.vote.unwrap().winner);
        assert_eq!(rescored.winner, "18");

        // Where program and greedy chain agree, only those two are recorded.
        let b = backend(PROGRAM, "The answer is 18.", &["The answer is 20."; 2]);
        let out = mixed(b, Params::default()).await;
        assert_eq!(out.samples.len(), 2);
    }

    #[tokio::test]
    async fn two_samples_that_agree_outvote_program_and_greedy_chain() {
        let b = backend(
            PROGRAM,
            "The answer is 17.",
            &["I get 20, so the answer is 20.", "The answer is 20."],
        );
        let out = mixed(b, Params::default()).await;
        assert_eq!(out.answer, "I get 20, so the answer is 20.");
    }

    #[tokio::test]
    async fn samples_only_when_program_and_greedy_chain_disagree() {
        let when_split = Params::default();
        assert_eq!(when_split.samples_when, SamplesWhen::Disagree);
        // Agreement on 18: no sampled request, the program's reply answers.
        let b = backend(PROGRAM, "The answer is 18.", &["The answer is 20."; 2]);
        let out = mixed(b.clone(), when_split.clone()).await;
        assert!(out.answer.contains("The answer is 18."), "{}", out.answer);
        assert_eq!(b.requests().len(), 2);
        assert_eq!(out.candidates.len(), 2);
        // Disagreement: the samples are drawn after, and two agreeing ones outvote.
        let b = backend(PROGRAM, "The answer is 17.", &["The answer is 20."; 2]);
        let out = mixed(b.clone(), when_split).await;
        assert_eq!(out.answer, "The answer is 20.");
        let sent = b.requests();
        assert_eq!(sent.len(), 3);
        assert_eq!(sent[2].n, 2);
        assert_eq!(sent[2].sampling.temperature, Some(0.6));
    }

    #[tokio::test]
    async fn a_word_answer_is_voted_as_a_word() {
        // ASDiv asks some questions with numbers whose answer is a word: the program
        // cannot return one (no number), the chains name it.
        let b = backend(
            PROGRAM_WITHOUT_NUMBER,
            "Purple has 3 parts and blue 2. The answer is Purple.",
            &["The answer is purple.", "The answer is blue."],
        );
        let out = mixed(b.clone(), Params::default()).await;
        assert_eq!(out.vote.unwrap().winner, "purple");
        assert!(
            out.answer.ends_with("The answer is Purple."),
            "{}",
            out.answer
        );
        // The program gave no answer, so the samples were drawn.
        assert_eq!(b.requests().len(), 3);
    }

    #[tokio::test]
    async fn chains_decoded_by_the_calculator_run_their_programs() {
        use crate::mock_tokens::MockTokenBackend;
        use crate::strategies::calculator::tests::{CODE_VOCAB, code_script};
        let params = |calculator| Params {
            program: false,
            samples: 0,
            calculator,
            ..Params::default()
        };
        // Where the backend gives token control, the greedy chain is the calculator's:
        // its program printed 4, not the 5 the model imagined.
        let tokens = Arc::new(MockTokenBackend::new(&CODE_VOCAB, &[0], code_script));
        let out = run(
            &MixedVote::new(params(true)).unwrap(),
            tokens,
            &StrategyRequest::user("What is 2 + 2?"),
            Budget::default(),
        )
        .await
        .unwrap();
        assert!(out.answer.ends_with("The answer is 4"), "{}", out.answer);
        assert_eq!(out.vote.unwrap().winner, "4");
        // Elsewhere a chain without a program is one chat call, as without the option.
        let chat = backend(PROGRAM, "The answer is 18.", &[]);
        let out = mixed(chat.clone(), params(true)).await;
        assert_eq!(out.answer, "The answer is 18.");
        assert_eq!(chat.requests().len(), 1);

        // A chain that writes a program stops at its output fence; the program runs and
        // the next call continues the assistant's message from its real output.
        let code = "Let me compute.\n```python\nprint(6 * 7)\n```\n";
        let chat = Arc::new(MockBackend::new(move |r, _| {
            Ok(match r.messages.last() {
                Some(m) if m.role == Role::Assistant => {
                    match m.content.ends_with("```output\n42\n```\n") {
                        true => "The answer is 42.".to_string(),
                        false => "The answer is 41.".to_string(),
                    }
                }
                _ => code.to_string(),
            })
        }));
        let out = mixed(chat.clone(), params(true)).await;
        assert_eq!(
            out.answer,
            format!("{code}```output\n42\n```\nThe answer is 42.")
        );
        let sent = chat.requests();
        assert_eq!(sent.len(), 2);
        assert!(
            sent.iter()
                .all(|r| r.sampling.stop.contains(&"```output".to_string()))
        );
        // Without the option the chain is read as the model wrote it.
        let out = mixed(chat.clone(), params(false)).await;
        assert_eq!(out.answer, code);
        // Sampled chains need a temperature when there are several.
        let e = MixedVote::new(Params {
            calculator: true,
            temperature: 0.0,
            ..Params::default()
        })
        .unwrap_err();
        assert!(e.to_string().contains("temperature"), "{e}");
    }

    /// A token backend whose program (pot's conversation) returns 2 + 2 and whose
    /// chains of the request's own conversation answer `chain` (4 or 5).
    fn together_backend(chain: &'static str) -> Arc<crate::mock_tokens::MockTokenBackend> {
        use crate::mock_tokens::{MockTokenBackend, logits_with};
        let vocab = [
            "<eos>",
            "PROGRAM",
            "```python\ndef solution():\n    return 2 + 2\n```",
            "The answer is",
            " 4",
            " 5",
        ];
        let answer = if chain == "4" { 4 } else { 5 };
        let script = move |toks: &[Token]| {
            let next = match toks {
                [1] => 2,
                [] => 3,
                [3] => answer,
                _ => 0,
            };
            logits_with(6, 0.0, &[(next, 10.0)])
        };
        Arc::new(
            MockTokenBackend::new(&vocab, &[0], script).with_chat_prompts(|m| {
                match m.first().is_some_and(|m| m.content == pot::SYSTEM) {
                    true => vec![1],
                    false => Vec::new(),
                }
            }),
        )
    }

    #[tokio::test]
    async fn with_token_control_program_and_chains_decode_in_one_batch() {
        let calc = |samples_when| {
            MixedVote::new(Params {
                calculator: true,
                samples_when,
                ..Params::default()
            })
            .unwrap()
        };
        let ask = |b: Arc<crate::mock_tokens::MockTokenBackend>, when| async move {
            run(
                &calc(when),
                b,
                &StrategyRequest::user("What is 2 + 2?"),
                Budget::default(),
            )
            .await
            .unwrap()
        };
        // The program and the greedy chain agree: one token job, both decoded in the
        // same batches (the program from pot's conversation), no samples.
        let b = together_backend("4");
        let out = ask(b.clone(), SamplesWhen::Disagree).await;
        // Both voters are recorded, the program first, with the tokens each decoded.
        let recorded: Vec<Option<&str>> = out.samples.iter().map(|s| s.answer.as_deref()).collect();
        assert_eq!(recorded, [Some("4"), Some("4")]);
        assert!(out.samples.iter().all(|s| s.completion_tokens > 0));
        assert_eq!(out.vote.unwrap().winner, "4");
        assert!(out.answer.ends_with("The answer is 4."), "{}", out.answer);
        assert_eq!(b.requests().len(), 1);
        let job = b.last_session().unwrap();
        assert_eq!(job.chats.len(), 1);
        assert_eq!(job.forks, 0);
        assert_eq!(job.batch_sizes.first(), Some(&2));
        // They disagree: the two samples follow in a second job and outvote the program.
        let b = together_backend("5");
        let out = ask(b.clone(), SamplesWhen::Disagree).await;
        let vote = out.vote.unwrap();
        assert_eq!((vote.winner.as_str(), vote.members.len()), ("5", 3));
        assert_eq!(b.requests().len(), 2);
        let job = b.last_session().unwrap();
        assert_eq!((job.chats.len(), job.forks), (0, 1));
        // Always: all four in one job, one batch of four a step.
        let b = together_backend("5");
        let out = ask(b.clone(), SamplesWhen::Always).await;
        assert_eq!(out.vote.unwrap().winner, "5");
        assert_eq!(b.requests().len(), 1);
        let job = b.last_session().unwrap();
        assert_eq!((job.chats.len(), job.forks), (1, 2));
        assert_eq!(job.batch_sizes.first(), Some(&4));
    }

    /// Chat requests to one mock, token jobs to another (a native backend serves both).
    struct ChatAndTokens {
        chat: Arc<MockBackend>,
        tokens: Arc<crate::mock_tokens::MockTokenBackend>,
    }

    #[async_trait]
    impl crate::Backend for ChatAndTokens {
        fn model(&self) -> &str {
            "chat-and-tokens"
        }
        fn capabilities(&self) -> crate::types::Capabilities {
            self.tokens.capabilities()
        }
        async fn stream(
            &self,
            request: ChatRequest,
        ) -> Result<crate::CompletionStream, BackendError> {
            self.chat.stream(request).await
        }
        async fn token_job(
            &self,
            request: ChatRequest,
            job: crate::TokenJob,
        ) -> Result<(), BackendError> {
            self.tokens.token_job(request, job).await
        }
    }

    #[tokio::test]
    async fn too_long_to_decode_together_they_decode_one_after_the_other() {
        // Room for the question and a chain, not for the program's long prompt beside it.
        let tokens = Arc::new(
            Arc::into_inner(together_backend("4"))
                .unwrap()
                .with_context(40),
        );
        let chat = backend(PROGRAM, "unused", &[]);
        let both = Arc::new(ChatAndTokens {
            chat: chat.clone(),
            tokens: tokens.clone(),
        });
        let out = run(
            &MixedVote::new(Params {
                calculator: true,
                samples: 0,
                ..Params::default()
            })
            .unwrap(),
            both,
            &StrategyRequest::user("What is 2 + 2?"),
            Budget::default(),
        )
        .await
        .unwrap();
        // The program came as a chat request (it computes 18), the chain as a token job
        // of its own (4); the tie goes to the program.
        assert_eq!(chat.requests().len(), 1);
        assert!(is_program(&chat.requests()[0]));
        assert_eq!(
            tokens.requests().len(),
            2,
            "the joint job, then the chain's"
        );
        assert_eq!(tokens.last_session().unwrap().chats.len(), 0);
        let vote = out.vote.unwrap();
        assert_eq!((vote.winner.as_str(), vote.members.len()), ("18", 1));
        assert!(
            out.candidates
                .iter()
                .any(|c| c.starts_with("[greedy chain: 4]"))
        );
    }

    #[test]
    fn nothing_to_vote_is_a_bad_parameter() {
        let e = MixedVote::new(Params {
            program: false,
            greedy: false,
            samples: 0,
            ..Params::default()
        })
        .unwrap_err();
        assert!(e.to_string().contains("nothing votes"), "{e}");
        assert!(
            MixedVote::new(Params {
                temperature: f32::NAN,
                ..Params::default()
            })
            .is_err()
        );
    }
}
