//! The error type of the benchmark and evaluation harness.

use std::path::{Path, PathBuf};

/// Errors of data-set loading, evaluation runs, plotting and speed measurement.
#[derive(Debug, thiserror::Error)]
#[non_exhaustive]
pub enum BenchError {
    /// Reading or writing a file failed.
    #[error("{}: {source}", path.display())]
    Io {
        path: PathBuf,
        #[source]
        source: std::io::Error,
    },
    /// A line of a JSON Lines file is not the JSON expected.
    #[error("{}:{line}: {source}", path.display())]
    Json {
        path: PathBuf,
        line: usize,
        #[source]
        source: serde_json::Error,
    },
    /// A data-set file parsed but an item in it is not usable.
    #[error("{}:{line}: {message}", path.display())]
    BadItem {
        path: PathBuf,
        line: usize,
        message: String,
    },
    /// No data set of that name.
    #[error(
        "unknown data set `{0}` (known: gsm8k, arc-easy, arc-challenge, asdiv, math-500, openbookqa, csqa)"
    )]
    UnknownDataset(String),
    /// Fetching a data set through the model cache failed.
    #[error(transparent)]
    Models(#[from] optillm_models::ModelsError),
    /// An approach spec does not parse or build, or a run failed in a way that stops
    /// the evaluation (the backend is unreachable, ...).
    #[error("approach `{approach}`: {source}")]
    Strategy {
        approach: String,
        #[source]
        source: optillm_core::StrategyError,
    },
    /// A backend call of the speed benchmark failed.
    #[error(transparent)]
    Backend(#[from] optillm_core::BackendError),
    /// The output directory holds results of another evaluation.
    #[error("{}: {message}", path.display())]
    Mismatch { path: PathBuf, message: String },
    /// Bad arguments (no approaches, zero runs, ...).
    #[error("invalid argument: {0}")]
    InvalidArgument(String),
    /// Drawing the plot failed.
    #[error("plot: {0}")]
    Plot(String),
    /// A code data set's tests need a Python interpreter, and it cannot be run.
    #[error(
        "the tests of code questions run in Python, and `{interpreter}` cannot be run \
         ({message}); install python3 or name an interpreter in OPTILLM_PYTHON"
    )]
    NoInterpreter {
        interpreter: String,
        message: String,
    },
}

impl BenchError {
    pub(crate) fn io(path: &Path, source: std::io::Error) -> Self {
        BenchError::Io {
            path: path.to_path_buf(),
            source,
        }
    }
}

/// Results of this crate.
pub type Result<T, E = BenchError> = std::result::Result<T, E>;
