//! The token lane: token-level jobs served beside the generation rounds.
//!
//! A job's closure runs on a thread of its own with a [`Session`]; what it asks of the
//! model alone (tokens, their text, end-of-generation tokens) it gets there, and each
//! operation on the KV cache (evaluate tokens, copy or clear a sequence) it sends to the
//! worker thread, which runs it in the job's context between two steps of the rounds.
//! So a long job does not hold up generation requests, a generation round does not hold
//! up a job, and they share the CPU step by step. Up to `token_jobs` jobs run at once,
//! each in a context of its own, their operations taking turns: a short job
//! (`choice_likelihood`) does not wait for a long one (`calculator`) to end.
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

/// What a running job's thread sends to the worker.
pub(crate) enum LaneMsg {
    Op(LaneOp),
    /// The job returned: its session and sequences are gone.
    End,
}

/// One job at a time: its context (made for its first job, kept for the next until the
/// worker is idle) and the running job's operations.
struct Slot<'m> {
    engine: Option<Engine<'m>>,
    ops: Receiver<LaneMsg>,
    ops_sender: Sender<LaneMsg>,
    running: bool,
}

/// The worker's side of the lane: the jobs' queue, and [`LlamaConfig::token_jobs`]
/// slots, each running one job at a time in a context of its own (jobs in one context
/// would share its cells, and a context that grows is made anew). The running jobs'
/// operations take turns.
///
/// [`LlamaConfig::token_jobs`]: crate::LlamaConfig::token_jobs
pub(crate) struct TokenLane<'p, 'm> {
    parts: Parts<'p, 'm>,
    /// The model for the jobs' threads.
    model: Arc<LlamaModel>,
    starts: Receiver<TokenWork>,
    slots: Vec<Slot<'m>>,
}

/// What the idle worker listens to of the lane ([`TokenLane::receivers`]).
pub(super) struct Listening {
    /// Each running job's slot and operations.
    pub(super) running: Vec<(usize, Receiver<LaneMsg>)>,
    /// New jobs, when a slot is free.
    pub(super) starts: Option<Receiver<TokenWork>>,
}

/// What the idle worker heard from the lane ([`TokenLane::receivers`]).
pub(super) enum Heard {
    /// An operation or the end of the job in this slot.
    Op(usize, LaneMsg),
    /// A new job.
    Start(TokenWork),
}

impl<'p, 'm> TokenLane<'p, 'm> {
    pub(super) fn new(
        parts: Parts<'p, 'm>,
        model: Arc<LlamaModel>,
        starts: Receiver<TokenWork>,
    ) -> Self {
        let slots = (0..parts.config.token_jobs.max(1))
            .map(|_| {
                let (ops_sender, ops) = crossbeam_channel::unbounded();
                Slot {
                    engine: None,
                    ops,
                    ops_sender,
                    running: false,
                }
            })
            .collect();
        Self {
            parts,
            model,
            starts,
            slots,
        }
    }

    /// The first slot free for a new job: one whose context is made, else any.
    fn free_slot(&self) -> Option<usize> {
        let made = self
            .slots
            .iter()
            .position(|s| !s.running && s.engine.is_some());
        made.or_else(|| self.slots.iter().position(|s| !s.running))
    }

    /// What the idle worker waits for from the lane: each running job's operations
    /// (with its slot), and new jobs when a slot is free.
    pub(super) fn receivers(&self) -> Listening {
        let running = self
            .slots
            .iter()
            .enumerate()
            .filter(|(_, s)| s.running)
            .map(|(i, s)| (i, s.ops.clone()))
            .collect();
        let starts = self.free_slot().map(|_| self.starts.clone());
        Listening { running, starts }
    }

    /// Handles what the idle worker heard.
    pub(super) fn heard(&mut self, heard: Heard) {
        match heard {
            Heard::Op(slot, msg) => self.handle(slot, msg),
            Heard::Start(work) => self.start(work),
        }
    }

    /// Whether a slot holds a context an idle worker can free.
    pub(super) fn holds_context(&self) -> bool {
        self.slots.iter().any(|s| s.engine.is_some() && !s.running)
    }

    /// Serves what is there without waiting: one pending operation of each running job,
    /// then new jobs while slots are free. A job waits for each operation's answer, so
    /// called between two steps of a round, the round and the jobs take turns.
    pub(super) fn serve(&mut self) {
        for slot in 0..self.slots.len() {
            if !self.slots[slot].running {
                continue;
            }
            if let Ok(msg) = self.slots[slot].ops.try_recv() {
                self.handle(slot, msg);
            }
        }
        while self.free_slot().is_some() {
            match self.starts.try_recv() {
                Ok(work) => self.start(work),
                Err(_) => return,
            }
        }
    }

    /// Handles one message of the job running in `slot`.
    fn handle(&mut self, slot: usize, msg: LaneMsg) {
        let Some(s) = self.slots.get_mut(slot) else {
            return;
        };
        match msg {
            LaneMsg::Op(op) => match s.engine.as_mut() {
                Some(engine) => op(engine),
                // Not reached: a job runs only with its slot's engine made. Dropping the
                // operation drops its reply sender, and the job reads `Closed`.
                None => drop(op),
            },
            LaneMsg::End => s.running = false,
        }
        self.count_cells();
    }

    /// Starts a job in a free slot: its prompt tokenized and the slot's context emptied
    /// (the prompt is evaluated there when the job first uses it), then its closure on
    /// a thread of its own. A job that cannot start gets its error at
    /// once. (Called only with a slot free.)
    fn start(&mut self, work: TokenWork) {
        let TokenWork {
            request,
            job,
            reply,
        } = work;
        // What running jobs sent before this job came is handled first: a job that has
        // ended (its caller may already have sent the next) frees its slot, and its
        // context's kept prompt is where the next job may start from.
        self.settle();
        let Some(slot) = self.free_slot() else {
            let _ = reply.send(Err(BackendError::Busy("no token-job slot is free".into())));
            return;
        };
        let parts = self.parts;
        let s = &mut self.slots[slot];
        let engine = match s.engine.as_mut() {
            Some(engine) => engine,
            None => match Engine::new(parts, Lane::Tokens) {
                Ok(made) => s.engine.insert(made),
                Err(e) => {
                    let _ = reply.send(Err(BackendError::from(e)));
                    return;
                }
            },
        };
        let begun = engine.begin_tokens(&request);
        self.count_cells();
        let begun = match begun {
            Ok(begun) => begun,
            Err(e) => {
                let _ = reply.send(Err(e));
                return;
            }
        };
        let s = &mut self.slots[slot];
        let mut session = Session::new(Arc::clone(&self.model), s.ops_sender.clone(), begun);
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
                s.running = true;
                self.parts.stats.token_jobs.fetch_add(1, Ordering::Relaxed);
            }
            // The closure (with the reply) is gone: the caller reads `Closed`.
            Err(e) => tracing::warn!("a token job's thread could not start: {e}"),
        }
    }

    /// Handles every message the running jobs have sent so far.
    fn settle(&mut self) {
        for slot in 0..self.slots.len() {
            while self.slots[slot].running {
                match self.slots[slot].ops.try_recv() {
                    Ok(msg) => self.handle(slot, msg),
                    Err(_) => break,
                }
            }
        }
    }

    /// Frees the contexts of the slots with no job (the worker is idle).
    pub(super) fn release(&mut self) {
        let mut freed = false;
        for s in self.slots.iter_mut().filter(|s| !s.running) {
            freed |= s.engine.take().is_some();
        }
        if freed {
            self.count_cells();
            tracing::debug!("idle: the token lane's contexts freed");
        }
    }

    /// Sets the gauge of the lane's cells: all slots' contexts together (an engine
    /// sets it to its own size when made or grown).
    fn count_cells(&self) {
        let cells: u64 = self
            .slots
            .iter()
            .filter_map(|s| s.engine.as_ref())
            .map(|e| u64::from(e.ctx.n_ctx()))
            .sum();
        self.parts.stats.token_cells.store(cells, Ordering::Relaxed);
    }
}
