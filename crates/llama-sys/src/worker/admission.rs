//! Admission: a generation request taken off the queue gets its prompt tokenized and
//! checked against the context, and the requests waiting behind it join its round while
//! their samples fit the round's sequences and their cells fit the context.

use crossbeam_channel::Receiver;
use std::collections::VecDeque;
use std::sync::atomic::Ordering;
use std::time::Instant;

use llama_cpp_2::model::LlamaChatMessage;
use llama_cpp_2::token::LlamaToken;
use optillm_core::{BackendError, ChatRequest, Message, ResponseFormat, Role, StreamSender};

use super::Engine;
use super::outbox::Outbox;
use super::round::Part;
use super::sampling::{grammar_sampler, schema_grammar};
use crate::{Job, LlamaError};

/// A generation request taken off the queue, its prompt tokenized.
pub(super) struct Admitted {
    pub(super) request: ChatRequest,
    pub(super) submitted: Instant,
    pub(super) tokens: Vec<LlamaToken>,
    /// The GBNF grammar every sample follows (from the request's format).
    pub(super) grammar: Option<String>,
}

/// An admitted request and where its events go.
pub(super) type Entry = (Admitted, StreamSender);

impl Admitted {
    /// What admission needs to know of it.
    pub(super) fn shape(&self) -> Shape {
        Shape {
            n: self.request.n,
            prompt: self.tokens.len() as u64,
            max_tokens: self.request.sampling.max_tokens,
        }
    }

    pub(super) fn part(&self, first: u32, count: u32) -> Part<'_> {
        Part {
            request: &self.request,
            prompt: &self.tokens,
            first,
            count,
            submitted: self.submitted,
            grammar: self.grammar.as_deref(),
        }
    }

    /// Back to a job of the queue (to be served later).
    fn into_job(self, sender: StreamSender) -> Job {
        Job {
            request: self.request,
            sender,
            submitted: self.submitted,
        }
    }
}

/// A request as admission sees it: plain numbers.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub(super) struct Shape {
    /// Samples.
    pub(super) n: u32,
    /// Prompt tokens.
    pub(super) prompt: u64,
    /// Most tokens a sample generates (`None`: unbounded).
    pub(super) max_tokens: Option<u32>,
}

impl Shape {
    /// The most cells its samples can fill (`None`: its length is unbounded).
    pub(super) fn cells(&self) -> Option<u64> {
        let per_sample = self.prompt + u64::from(self.max_tokens?);
        Some(u64::from(self.n) * per_sample)
    }
}

/// What one round can hold.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub(super) struct Limits {
    /// Sequences (samples) decoded together: `n_seq_max`.
    pub(super) seqs: u32,
    /// Requests: each needs one slot of the batch for its prompt's last token.
    pub(super) parts: usize,
    /// Cells of the main context.
    pub(super) cells: u64,
}

/// Whether `next` can decode in one round with `group`: every request bounds its
/// length, all their samples fit the sequences of a round and all their cells fit the
/// main context (so neither context can fill up in the middle of the round).
pub(super) fn joins(limits: Limits, group: &[Shape], next: Shape) -> bool {
    let all = || group.iter().chain(std::iter::once(&next));
    let seqs: u64 = all().map(|s| u64::from(s.n)).sum();
    let cells: Option<u64> = all().map(Shape::cells).sum();
    seqs <= u64::from(limits.seqs)
        && group.len() < limits.parts
        && cells.is_some_and(|c| c <= limits.cells)
}

/// Refuses messages that cannot fit a context of `n_ctx` tokens (every message takes at
/// least one), before the chat template, whose cost grows faster than linearly with
/// their number.
fn check_messages(messages: usize, n_ctx: u32) -> Result<(), BackendError> {
    if messages as u64 >= u64::from(n_ctx) {
        return Err(BackendError::InvalidRequest(format!(
            "{messages} messages cannot fit a context of {n_ctx} tokens (each takes at least one)"
        )));
    }
    Ok(())
}

/// Refuses an empty prompt, or one that leaves no cell of the context to generate into.
fn check_prompt(tokens: usize, n_ctx: u32) -> Result<(), BackendError> {
    if tokens == 0 || tokens as u64 >= u64::from(n_ctx) {
        return Err(BackendError::ContextOverflow {
            prompt_tokens: u32::try_from(tokens).unwrap_or(u32::MAX),
            context_length: n_ctx,
        });
    }
    Ok(())
}

impl Engine<'_> {
    /// The request's messages through the model's chat template, tokenized; a raw
    /// request's text as it is (BOS only where the vocabulary asks for it, special
    /// tokens written in the text read as such, as llama.cpp's server does).
    pub(crate) fn prompt_tokens(
        &self,
        request: &ChatRequest,
    ) -> Result<Vec<LlamaToken>, BackendError> {
        let n_ctx = self.limit;
        if request.raw {
            let text = request.raw_text().ok_or_else(|| {
                BackendError::InvalidRequest(
                    "a raw completion is one user message: the text to continue".into(),
                )
            })?;
            let tokens = self.model.vocab().tokenize(text.as_bytes(), true, true);
            check_prompt(tokens.len(), n_ctx)?;
            return Ok(tokens);
        }
        self.chat_tokens(&request.messages)
    }

    /// A conversation through the model's chat template, tokenized.
    pub(crate) fn chat_tokens(
        &self,
        messages: &[Message],
    ) -> Result<Vec<LlamaToken>, BackendError> {
        let n_ctx = self.limit;
        check_messages(messages.len(), n_ctx)?;
        let prompt = self.chat_prompt(messages)?;
        let vocab = self.model.vocab();
        let mut tokens = vocab.tokenize(prompt.as_bytes(), true, true);
        // Templates that write the BOS token themselves would get it twice.
        if tokens.len() > 1 && tokens[0] == tokens[1] && tokens[0] == vocab.bos() {
            tokens.remove(0);
        }
        check_prompt(tokens.len(), n_ctx)?;
        Ok(tokens)
    }

    /// The conversation through the chat template. A conversation that ends with an
    /// assistant message is continued (prefill, as Ollama and llama.cpp's server with
    /// its Jinja templates do): the template renders it with a marker in place of that
    /// message's text, the prompt is what comes before the marker, then the text itself,
    /// with no end of turn after it. (The last marker is the one: an earlier message may
    /// hold the same characters.)
    fn chat_prompt(&self, messages: &[Message]) -> Result<String, BackendError> {
        const MARKER: &str = "\u{1}optillm-prefill\u{1}";
        let prefill = messages.last().filter(|m| m.role == Role::Assistant);
        let rendered = messages
            .iter()
            .enumerate()
            .map(|(i, m)| {
                let content = match prefill {
                    Some(_) if i + 1 == messages.len() => MARKER.to_string(),
                    _ => m.content.clone(),
                };
                LlamaChatMessage::new(m.role.as_str().to_string(), content)
            })
            .collect::<Result<Vec<_>, _>>()
            .map_err(|e| BackendError::InvalidRequest(format!("message: {e}")))?;
        let prompt = self
            .model
            .apply_chat_template(&self.template, &rendered, prefill.is_none())
            .map_err(|e| BackendError::from(LlamaError::Template(e.to_string())))?;
        let Some(last) = prefill else {
            return Ok(prompt);
        };
        let (before, _) = prompt.rsplit_once(MARKER).ok_or_else(|| {
            BackendError::InvalidRequest(
                "this model's chat template cannot continue an assistant message".into(),
            )
        })?;
        Ok(format!("{before}{}", last.content))
    }

    /// A generation request with its prompt tokenized, or why it cannot run.
    pub(super) fn admit(
        &self,
        request: ChatRequest,
        submitted: Instant,
    ) -> Result<Admitted, BackendError> {
        let tokens = self.prompt_tokens(&request)?;
        let grammar = self.grammar_of(request.format.as_ref())?;
        Ok(Admitted {
            request,
            submitted,
            tokens,
            grammar,
        })
    }

    /// A refused request's answer: its error, in an outbox of its own.
    pub(super) fn refuse(&self, sender: StreamSender, error: BackendError) -> Outbox {
        self.stats.requests.fetch_add(1, Ordering::Relaxed);
        let mut outbox = Outbox::new(sender, self.waker.clone());
        outbox.push(Err(error));
        outbox
    }

    /// The GBNF grammar of a response format, checked by building its sampler once: a
    /// schema llama.cpp cannot convert or a grammar it cannot parse is an
    /// [`BackendError::InvalidFormat`] here, before any decoding.
    fn grammar_of(&self, format: Option<&ResponseFormat>) -> Result<Option<String>, BackendError> {
        let Some(format) = format else {
            return Ok(None);
        };
        let grammar = match format {
            ResponseFormat::Grammar { grammar } => grammar.clone(),
            ResponseFormat::JsonObject => schema_grammar(r#"{"type":"object"}"#)?,
            ResponseFormat::JsonSchema { schema } => schema_grammar(&schema.to_string())?,
        };
        grammar_sampler(self.model, &grammar)?;
        Ok(Some(grammar))
    }

    /// What a round of the main context can hold.
    pub(super) fn limits(&self) -> Limits {
        Limits {
            seqs: self.config.n_seq_max.max(1),
            parts: self.config.n_batch as usize,
            cells: u64::from(self.limit),
        }
    }

    /// The round of `first`: it and the generation requests already waiting behind it
    /// (in `waiting`, then on the queue), in order, while they [`joins`]. The first that
    /// does not join goes back to the front of `waiting`; requests refused at admission
    /// leave their outbox (holding their error) in `refused`.
    pub(super) fn gather(
        &self,
        first: Entry,
        waiting: &mut VecDeque<Job>,
        queue: &Receiver<Job>,
        refused: &mut Vec<Outbox>,
    ) -> Vec<Entry> {
        let limits = self.limits();
        let mut shapes = vec![first.0.shape()];
        let mut group = vec![first];
        loop {
            let next = match waiting.pop_front() {
                Some(job) => job,
                None => match queue.try_recv() {
                    Ok(job) => job,
                    Err(_) => break,
                },
            };
            let Job {
                request,
                sender,
                submitted,
            } = next;
            let next = match self.admit(request, submitted) {
                Ok(next) => next,
                Err(e) => {
                    refused.push(self.refuse(sender, e));
                    continue;
                }
            };
            if !joins(limits, &shapes, next.shape()) {
                waiting.push_front(next.into_job(sender));
                break;
            }
            shapes.push(next.shape());
            group.push((next, sender));
        }
        group
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    const LIMITS: Limits = Limits {
        seqs: 16,
        parts: 512,
        cells: 2048,
    };

    fn shape(n: u32, prompt: u64, max_tokens: Option<u32>) -> Shape {
        Shape {
            n,
            prompt,
            max_tokens,
        }
    }

    #[test]
    fn cells_count_prompt_and_completion_of_every_sample() {
        assert_eq!(shape(1, 30, Some(20)).cells(), Some(50));
        assert_eq!(shape(4, 30, Some(20)).cells(), Some(200));
        assert_eq!(shape(4, 30, None).cells(), None);
        // The largest request a valid configuration allows does not overflow.
        let most = shape(
            crate::N_SEQ_MAX_MAX,
            u64::from(crate::N_CTX_MAX),
            Some(u32::MAX),
        );
        assert_eq!(most.cells(), Some(256 * ((1 << 20) + u64::from(u32::MAX))));
    }

    #[test]
    fn bounded_requests_that_fit_join() {
        let group = [shape(1, 30, Some(24)), shape(2, 40, Some(24))];
        assert!(joins(LIMITS, &group, shape(1, 25, Some(100))));
        assert!(joins(LIMITS, &[], shape(16, 50, Some(50))));
    }

    #[test]
    fn an_unbounded_request_never_joins_nor_lets_others_join() {
        assert!(!joins(
            LIMITS,
            &[shape(1, 30, Some(24))],
            shape(1, 30, None)
        ));
        assert!(!joins(
            LIMITS,
            &[shape(1, 30, None)],
            shape(1, 30, Some(24))
        ));
    }

    #[test]
    fn samples_must_fit_the_sequences_of_a_round() {
        // 15 + 1 = 16 sequences fit exactly; one more does not.
        let group = [shape(15, 10, Some(10))];
        assert!(joins(LIMITS, &group, shape(1, 10, Some(10))));
        assert!(!joins(LIMITS, &group, shape(2, 10, Some(10))));
        // A full round (the n = 16 "blocker") takes nobody.
        assert!(!joins(
            LIMITS,
            &[shape(16, 10, Some(10))],
            shape(1, 10, Some(1))
        ));
        // n_seq_max of 1: never two requests together.
        let one = Limits { seqs: 1, ..LIMITS };
        assert!(!joins(
            one,
            &[shape(1, 10, Some(10))],
            shape(1, 10, Some(10))
        ));
    }

    #[test]
    fn cells_must_fit_the_context() {
        // 2 * (100 + 900) = 2000, + 48 = 2048: exactly full is allowed.
        let group = [shape(2, 100, Some(900))];
        assert!(joins(LIMITS, &group, shape(1, 24, Some(24))));
        assert!(!joins(LIMITS, &group, shape(1, 24, Some(25))));
        // The sum counts every sample of every request.
        assert!(!joins(LIMITS, &group, shape(2, 12, Some(13))));
    }

    #[test]
    fn requests_must_fit_the_batch_of_their_last_prompt_tokens() {
        let few = Limits { parts: 2, ..LIMITS };
        let one = [shape(1, 5, Some(5))];
        let two = [shape(1, 5, Some(5)), shape(1, 5, Some(5))];
        assert!(joins(few, &one, shape(1, 5, Some(5))));
        assert!(!joins(few, &two, shape(1, 5, Some(5))));
    }

    #[test]
    fn prompts_must_leave_room_in_the_context() {
        assert!(check_prompt(1, 16).is_ok());
        assert!(check_prompt(15, 16).is_ok());
        for tokens in [0, 16, 17] {
            match check_prompt(tokens, 16) {
                Err(BackendError::ContextOverflow {
                    prompt_tokens,
                    context_length,
                }) => {
                    assert_eq!(prompt_tokens as usize, tokens);
                    assert_eq!(context_length, 16);
                }
                other => panic!("{tokens} tokens: {other:?}"),
            }
        }
        assert!(check_messages(15, 16).is_ok());
        assert!(matches!(
            check_messages(16, 16),
            Err(BackendError::InvalidRequest(_))
        ));
    }
}
