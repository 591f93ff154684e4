//! The token lane: token-level jobs served beside the generation rounds.
//!
//! A job's closure runs on a thread of its own with a [`Session`]; what it asks of the
//! model alone (tokens, their text, end-of-generation tokens) it gets there, and each
//! operation on the KV cache (evaluate tokens, copy or clear a sequence) it sends to the
//! worker thread, which runs it in the lane's own context between two steps of the
//! rounds. So a long job does not hold up generation requests, a generation round does
//! not hold up a job, and they share the CPU step by step.
//!
//! Every decode stays on the worker thread: llama.cpp's OpenMP threads belong to the
//! thread that decodes, and a second decoding thread makes a second team of them that
//! throttles the first's even when it is idle (measured: a `calculator` request about
//! 1.5x slower once the rounds had run; docs/benchmarks.md, "Token jobs beside the rounds").

use std::panic::{AssertUnwindSafe, catch_unwind};
use std::sync::Arc;
use std::sync::atomic::Ordering;

use crossbeam_channel::{Receiver, Sender};
use llama_cpp_2::model::LlamaModel;
use optillm_core::BackendError;

use super::{Engine, Lane, Parts};
use crate::session::Session;
use crate::{LlamaError, TokenWork};

/// An operation of the running job's session, run by the worker on the lane's engine.
pub(crate) type LaneOp = Box<dyn for<'e, 'm> FnOnce(&'e mut Engine<'m>) + Send>;

/// What the running job's thread sends to the worker.
pub(crate) enum LaneMsg {
    Op(LaneOp),
    /// The job returned: its session and sequences are gone.
    End,
}

/// The worker's side of the lane: the jobs' queue, the running job's operations, and
/// the context they run in (made for the first job, dropped when the worker is idle).
pub(crate) struct TokenLane<'p, 'm> {
    parts: Parts<'p, 'm>,
    /// The model for the jobs' threads.
    model: Arc<LlamaModel>,
    pub(super) starts: Receiver<TokenWork>,
    pub(super) ops: Receiver<LaneMsg>,
    ops_sender: Sender<LaneMsg>,
    engine: Option<Engine<'m>>,
    running: bool,
}

impl<'p, 'm> TokenLane<'p, 'm> {
    pub(super) fn new(
        parts: Parts<'p, 'm>,
        model: Arc<LlamaModel>,
        starts: Receiver<TokenWork>,
    ) -> Self {
        let (ops_sender, ops) = crossbeam_channel::unbounded();
        Self {
            parts,
            model,
            starts,
            ops,
            ops_sender,
            engine: None,
            running: false,
        }
    }

    /// Whether a job is running (its operations are what to wait for; else new jobs).
    pub(super) fn running(&self) -> bool {
        self.running
    }

    /// Whether the lane holds a context an idle worker can free.
    pub(super) fn holds_context(&self) -> bool {
        self.engine.is_some() && !self.running
    }

    /// Serves what is there without waiting: the running job's pending operation, or
    /// the next job when none runs. A job waits for each operation's answer, so this
    /// serves at most one of its operations per call: called between two steps of a
    /// round, the two alternate.
    pub(super) fn serve(&mut self) {
        loop {
            if self.running {
                match self.ops.try_recv() {
                    Ok(msg) => self.handle(msg),
                    Err(_) => return,
                }
                // The job has the answer; its next operation is not there yet.
                if self.running {
                    return;
                }
            } else {
                match self.starts.try_recv() {
                    Ok(work) => self.start(work),
                    Err(_) => return,
                }
            }
        }
    }

    /// Handles one message of the running job.
    pub(super) fn handle(&mut self, msg: LaneMsg) {
        match msg {
            LaneMsg::Op(op) => match self.engine.as_mut() {
                Some(engine) => op(engine),
                // Not reached: a job runs only with the lane's engine made. Dropping the
                // operation drops its reply sender, and the job reads `Closed`.
                None => drop(op),
            },
            LaneMsg::End => self.running = false,
        }
    }

    /// Starts a job: its prompt evaluated in the lane's context, then its closure on a
    /// thread of its own. A job that cannot start gets its error at once.
    pub(super) fn start(&mut self, work: TokenWork) {
        let TokenWork {
            request,
            job,
            reply,
        } = work;
        let engine = match self.engine.as_mut() {
            Some(engine) => engine,
            None => match Engine::new(self.parts, Lane::Tokens) {
                Ok(made) => self.engine.insert(made),
                Err(e) => {
                    let _ = reply.send(Err(BackendError::from(e)));
                    return;
                }
            },
        };
        let begun = match engine.begin_tokens(&request) {
            Ok(begun) => begun,
            Err(e) => {
                let _ = reply.send(Err(e));
                return;
            }
        };
        let mut session = Session::new(Arc::clone(&self.model), self.ops_sender.clone(), begun);
        let spawned = std::thread::Builder::new()
            .name("optillm-token-job".into())
            .spawn(move || {
                let result =
                    catch_unwind(AssertUnwindSafe(|| job(&mut session))).unwrap_or_else(|_| {
                        Err(BackendError::from(LlamaError::Decode(
                            "the token job panicked".into(),
                        )))
                    });
                session.end();
                let _ = reply.send(result);
            });
        match spawned {
            Ok(_) => {
                self.running = true;
                self.parts.stats.token_jobs.fetch_add(1, Ordering::Relaxed);
            }
            // The closure (with the reply) is gone: the caller reads `Closed`.
            Err(e) => tracing::warn!("a token job's thread could not start: {e}"),
        }
    }

    /// Frees the lane's context (the worker is idle and no job runs).
    pub(super) fn release(&mut self) {
        if self.holds_context() {
            self.engine = None;
            self.parts.stats.token_cells.store(0, Ordering::Relaxed);
            tracing::debug!("idle: the token lane's context freed");
        }
    }
}
