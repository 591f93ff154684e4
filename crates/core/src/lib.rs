//! optillm-core: the [`Backend`] trait, its request and response types, and the
//! inference-time strategies written once over it.

pub mod arith;
pub mod backend;
pub mod error;
pub mod extract;
pub mod format;
#[cfg(any(test, feature = "mock"))]
pub mod mock;
#[cfg(any(test, feature = "mock"))]
pub mod mock_tokens;
pub mod pyeval;
pub mod samples;
pub mod spec;
pub mod strategies;
pub mod strategy;
pub mod token;
pub mod types;

pub use backend::{
    Backend, BackendCounter, ChoiceAccumulator, CompletionStream, StreamEvent, StreamSender,
    UpstreamStats, run_token_job, stream_channel,
};
pub use error::BackendError;
pub use format::{FormatError, FormatSupport, ResponseFormat};
pub use spec::{Spec, SpecError};
pub use strategy::{
    Answer, Budget, Ctx, FinalChoice, Outcome, RunUsage, Strategy, StrategyError, StrategyRequest,
    TextSink, TokenLimits, TraceEntry,
};
pub use token::{SeqId, Token, TokenJob, TokenSession};
pub use types::{
    Capabilities, ChatRequest, Choice, Completion, FinishReason, Message, Role, Sampling, Timings,
    TokenLogprob, TopLogprob, Usage,
};
