//! What every remote backend does with an answer once its wire format is parsed:
//! forwarding each piece as a delta while gathering the choices ([`Received`]), reading
//! a streamed body frame by frame ([`read_frames`]), running several requests at once
//! for `n` samples ([`fan_out`]), feeding a [`CompletionStream`] from a task that stops
//! when the consumer drops the stream ([`spawn_producer`]), and merging what the
//! requests returned into one [`Completion`] ([`completion`]). Plus the pieces of wire
//! that Ollama and OpenAI spell the same way (logprobs, finish reasons).

use std::collections::BTreeMap;
use std::future::Future;
use std::time::{Duration, Instant};

use optillm_core::{
    BackendError, Choice, Completion, CompletionStream, FinishReason, Sampling, StreamEvent,
    StreamSender, Timings, TokenLogprob, TopLogprob, Usage, stream_channel,
};
use serde::{Deserialize, Serialize};
use tokio::task::JoinSet;
use tracing::{debug, warn};

use crate::Opened;
use crate::framing::{Framer, Frames};

/// A token's logprob as Ollama (`logprobs[]`) and OpenAI (`logprobs.content[]`) send it.
#[derive(Debug, Deserialize)]
pub struct WireLogprob {
    pub token: String,
    pub logprob: f64,
    #[serde(default)]
    pub top_logprobs: Option<Vec<WireTopLogprob>>,
}

/// One of a token's most likely alternatives.
#[derive(Debug, Deserialize)]
pub struct WireTopLogprob {
    pub token: String,
    pub logprob: f64,
}

impl From<WireLogprob> for TokenLogprob {
    fn from(w: WireLogprob) -> Self {
        TokenLogprob {
            token: w.token,
            logprob: w.logprob as f32,
            top: w
                .top_logprobs
                .unwrap_or_default()
                .into_iter()
                .map(|t| TopLogprob {
                    token: t.token,
                    logprob: t.logprob as f32,
                })
                .collect(),
        }
    }
}

/// The sampling settings both wires spell the same way: Ollama sends them inside
/// `options`, OpenAI-compatible servers at the top level (`top_k`, `min_p` and
/// `repeat_penalty` as extra fields llama-server and vLLM accept). Unset ones are left
/// out.
#[derive(Debug, Clone, Serialize)]
pub struct WireSampling<'a> {
    #[serde(skip_serializing_if = "Option::is_none")]
    pub temperature: Option<f32>,
    #[serde(skip_serializing_if = "Option::is_none")]
    pub top_p: Option<f32>,
    #[serde(skip_serializing_if = "Option::is_none")]
    pub top_k: Option<u32>,
    #[serde(skip_serializing_if = "Option::is_none")]
    pub min_p: Option<f32>,
    #[serde(skip_serializing_if = "Option::is_none")]
    pub repeat_penalty: Option<f32>,
    #[serde(skip_serializing_if = "Option::is_none")]
    pub seed: Option<u32>,
    #[serde(skip_serializing_if = "<[String]>::is_empty")]
    pub stop: &'a [String],
}

impl<'a> WireSampling<'a> {
    /// `sampling`'s settings, with the seed of this one request.
    pub fn new(sampling: &'a Sampling, seed: Option<u32>) -> Self {
        Self {
            temperature: sampling.temperature,
            top_p: sampling.top_p,
            top_k: sampling.top_k,
            min_p: sampling.min_p,
            repeat_penalty: sampling.repeat_penalty,
            seed,
            stop: &sampling.stop,
        }
    }
}

/// A message or delta as both wires send it: only its text is read.
#[derive(Debug, Default, Deserialize)]
pub struct WireContent {
    pub content: Option<String>,
}

/// Wire logprobs as the core's.
pub fn logprobs(wire: Option<Vec<WireLogprob>>) -> Vec<TokenLogprob> {
    wire.unwrap_or_default()
        .into_iter()
        .map(TokenLogprob::from)
        .collect()
}

/// A finish reason as both wires name it: `"length"` is [`FinishReason::Length`];
/// `"stop"` covers both the end-of-text token and a matched stop sequence (neither wire
/// tells them apart), so it is [`FinishReason::EndOfText`], as is anything else
/// (`tool_calls`, `content_filter`).
pub fn finish_reason(reason: &str) -> FinishReason {
    match reason {
        "length" => FinishReason::Length,
        _ => FinishReason::EndOfText,
    }
}

/// One choice being received.
#[derive(Debug, Default)]
pub struct Partial {
    pub text: String,
    pub logprobs: Vec<TokenLogprob>,
    pub finish: Option<FinishReason>,
    /// Pieces of text streamed (servers stream a token a piece).
    pub pieces: u32,
}

impl Partial {
    /// The finished choice; its token count is `completion_tokens` when the server
    /// reported it, else the number of logprobs received, else the number of pieces
    /// streamed (a server that reports one usage for several choices). A choice that
    /// never said why it ended counts as ended by its text.
    pub fn into_choice(self, index: u32, completion_tokens: Option<u32>) -> Choice {
        let counted = u32::try_from(self.logprobs.len())
            .unwrap_or(u32::MAX)
            .max(self.pieces);
        Choice {
            index,
            text: self.text,
            finish_reason: self.finish.unwrap_or(FinishReason::EndOfText),
            logprobs: (!self.logprobs.is_empty()).then_some(self.logprobs),
            completion_tokens: completion_tokens.unwrap_or(counted),
        }
    }
}

/// What one request has received so far: its choices by index, and when its first
/// token came.
#[derive(Debug)]
pub struct Received {
    pub choices: BTreeMap<u32, Partial>,
    pub first_token: Option<Duration>,
    started: Instant,
}

impl Received {
    /// Nothing yet, for a request that started at `started`.
    pub fn new(started: Instant) -> Self {
        Self {
            choices: BTreeMap::new(),
            first_token: None,
            started,
        }
    }

    /// Adds a piece of choice `index` and forwards it to the consumer as a delta (with
    /// its logprob when the piece is exactly one token). An empty piece only makes the
    /// choice known. `false`: the consumer dropped the stream.
    pub async fn add(
        &mut self,
        index: u32,
        text: String,
        logprobs: Vec<TokenLogprob>,
        tx: &StreamSender,
    ) -> bool {
        let partial = self.choices.entry(index).or_default();
        if text.is_empty() && logprobs.is_empty() {
            return true;
        }
        if self.first_token.is_none() {
            self.first_token = Some(self.started.elapsed());
        }
        partial.text.push_str(&text);
        if !text.is_empty() {
            partial.pieces += 1;
        }
        let logprob = match logprobs.as_slice() {
            [one] => Some(one.clone()),
            _ => None,
        };
        partial.logprobs.extend(logprobs);
        tx.send(Ok(StreamEvent::Delta {
            index,
            text,
            logprob,
        }))
        .await
    }

    /// Records why choice `index` ended.
    pub fn finish(&mut self, index: u32, reason: FinishReason) {
        self.choices.entry(index).or_default().finish = Some(reason);
    }

    /// Whether some choice arrived and every one said why it ended.
    pub fn all_finished(&self) -> bool {
        !self.choices.is_empty() && self.choices.values().all(|c| c.finish.is_some())
    }
}

/// What handling a frame of a streamed answer leads to.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Flow {
    /// Read on.
    More,
    /// The answer is complete (its final frame came).
    Done,
    /// The consumer dropped the stream: stop.
    Gone,
}

/// Handles the frames of a streamed answer.
pub trait FrameHandler<Frame> {
    /// Handles one frame, forwarding what it carries to `tx`.
    fn frame(
        &mut self,
        frame: Frame,
        tx: &StreamSender,
    ) -> impl Future<Output = Result<Flow, BackendError>> + Send;
}

/// Reads `opened` frame by frame (a frame past `limit` bytes is
/// [`BackendError::TooLarge`]) into `handler` until it says [`Flow::Done`] or
/// [`Flow::Gone`]; [`Flow::More`] when the body ended first. Every error return drops
/// the body, which closes the connection: the request is cancelled upstream.
pub async fn read_frames<F, H>(
    opened: Opened,
    limit: usize,
    handler: &mut H,
    tx: &StreamSender,
) -> Result<Flow, BackendError>
where
    F: Framer,
    H: FrameHandler<F::Frame>,
{
    let mut frames = Frames::<F>::new(opened, limit);
    while let Some(frame) = frames.next().await? {
        match handler.frame(frame, tx).await? {
            Flow::More => {}
            ended => return Ok(ended),
        }
    }
    Ok(Flow::More)
}

/// Runs the requests of `work` at once (each still waits for the backend's concurrency
/// limit) and returns their results in the order given. The first error ends the
/// others (dropped, so their connections close) and is returned; `Ok(None)` when one
/// found the consumer gone.
pub async fn fan_out<T, Fut>(
    work: impl IntoIterator<Item = Fut>,
) -> Result<Option<Vec<T>>, BackendError>
where
    T: Send + 'static,
    Fut: Future<Output = Result<Option<T>, BackendError>> + Send + 'static,
{
    let mut tasks = JoinSet::new();
    for (i, running) in work.into_iter().enumerate() {
        tasks.spawn(async move { (i, running.await) });
    }
    let mut done = Vec::new();
    while let Some(joined) = tasks.join_next().await {
        match joined {
            Ok((i, Ok(Some(t)))) => done.push((i, t)),
            Ok((_, Ok(None))) => return Ok(None),
            Ok((_, Err(e))) => return Err(e),
            Err(e) => return Err(BackendError::Other(Box::new(e))),
        }
    }
    done.sort_by_key(|(i, _)| *i);
    Ok(Some(done.into_iter().map(|(_, t)| t).collect()))
}

/// A stream fed by `work`, which sends its deltas to the sender it is given and
/// returns the completion (`Ok(None)`: the consumer went away). Its result is the last
/// event of the stream; dropping the stream stops `work` at its next await, which drops
/// its requests and so closes their connections.
pub fn spawn_producer<Fut>(work: impl FnOnce(StreamSender) -> Fut) -> CompletionStream
where
    Fut: Future<Output = Result<Option<Completion>, BackendError>> + Send + 'static,
{
    let (tx, stream) = stream_channel();
    let running = work(tx.clone());
    tokio::spawn(async move {
        tokio::select! {
            result = running => {
                let event = match result {
                    Ok(Some(c)) => Ok(StreamEvent::Done(c)),
                    Ok(None) => return,
                    Err(e) => Err(e),
                };
                let _ = tx.send(event).await;
            }
            _ = tx.closed() => debug!("the consumer dropped the stream; cancelling"),
        }
    });
    stream
}

/// What one request returned.
#[derive(Debug, Default)]
pub struct Answer {
    pub choices: Vec<Choice>,
    pub usage: Usage,
    /// Its prompt evaluation, decode and first token (`total` is not read), and the
    /// HTTP requests it took (1).
    pub timings: Timings,
}

/// The completion of `n` choices from the answers of the requests that ran at the same
/// time since `started`: usage and requests added up, timings overlapped ([`Timings::overlap`]),
/// choices in index order (one the request did not ask for, at `n` or above, is
/// dropped with a warning).
pub fn completion(model: &str, n: u32, answers: Vec<Answer>, started: Instant) -> Completion {
    let mut usage = Usage::default();
    let mut timings = Timings {
        total: started.elapsed(),
        ..Timings::default()
    };
    let mut choices = BTreeMap::new();
    for answer in answers {
        usage += answer.usage;
        timings.overlap(&answer.timings);
        for choice in answer.choices {
            if choice.index >= n {
                warn!(
                    index = choice.index,
                    n, "ignoring a choice the request did not ask for"
                );
                continue;
            }
            choices.insert(choice.index, choice);
        }
    }
    Completion {
        model: model.to_string(),
        choices: choices.into_values().collect(),
        usage,
        timings,
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn finish_reasons_and_token_counts() {
        assert_eq!(finish_reason("length"), FinishReason::Length);
        assert_eq!(finish_reason("stop"), FinishReason::EndOfText);
        assert_eq!(finish_reason("tool_calls"), FinishReason::EndOfText);
        let p = Partial {
            text: "ab".into(),
            logprobs: vec![TokenLogprob {
                token: "ab".into(),
                logprob: -0.5,
                top: Vec::new(),
            }],
            finish: None,
            pieces: 0,
        };
        let c = p.into_choice(2, None);
        assert_eq!((c.index, c.completion_tokens), (2, 1));
        assert_eq!(c.finish_reason, FinishReason::EndOfText);
        let c = Partial::default().into_choice(0, Some(7));
        assert_eq!((c.completion_tokens, c.logprobs), (7, None));
    }

    #[test]
    fn completions_add_usage_order_choices_and_drop_extra_ones() {
        let choice = |index, text: &str| Choice {
            index,
            text: text.into(),
            finish_reason: FinishReason::EndOfText,
            logprobs: None,
            completion_tokens: 1,
        };
        let ms = Duration::from_millis;
        let answers = vec![
            Answer {
                choices: vec![choice(1, "b"), choice(5, "extra")],
                usage: Usage {
                    prompt_tokens: 3,
                    completion_tokens: 1,
                },
                timings: Timings {
                    decode: ms(30),
                    time_to_first_token: Some(ms(9)),
                    requests: 1,
                    ..Timings::default()
                },
            },
            Answer {
                choices: vec![choice(0, "a")],
                usage: Usage {
                    prompt_tokens: 3,
                    completion_tokens: 2,
                },
                timings: Timings {
                    decode: ms(10),
                    time_to_first_token: Some(ms(4)),
                    requests: 1,
                    ..Timings::default()
                },
            },
        ];
        let c = completion("m", 2, answers, Instant::now());
        assert_eq!(c.texts(), vec!["a".to_string(), "b".to_string()]);
        assert_eq!((c.usage.prompt_tokens, c.usage.completion_tokens), (6, 3));
        assert_eq!(c.timings.decode, ms(30));
        assert_eq!(c.timings.time_to_first_token, Some(ms(4)));
        assert_eq!(c.timings.requests, 2);
    }

    #[tokio::test]
    async fn pieces_are_forwarded_and_gathered() {
        let (tx, mut stream) = stream_channel();
        let mut r = Received::new(Instant::now());
        assert!(r.add(0, String::new(), Vec::new(), &tx).await);
        assert!(r.first_token.is_none() && r.choices.contains_key(&0));
        assert!(r.add(1, "hi".into(), Vec::new(), &tx).await);
        assert!(r.first_token.is_some());
        assert_eq!(r.choices.get(&1).map(|p| p.pieces), Some(1));
        assert!(!r.all_finished());
        r.finish(0, FinishReason::Length);
        r.finish(1, FinishReason::EndOfText);
        assert!(r.all_finished());
        match stream.next_event().await {
            Some(Ok(StreamEvent::Delta { index, text, .. })) => {
                assert_eq!((index, text.as_str()), (1, "hi"));
            }
            other => panic!("expected a delta, got {other:?}"),
        }
        drop(stream);
        assert!(!r.add(1, "more".into(), Vec::new(), &tx).await);
    }
}
