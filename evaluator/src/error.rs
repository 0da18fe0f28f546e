//! Typed errors of the evaluator (model builder, trainer, pool, checkpoints).

use std::path::PathBuf;

use thiserror::Error;

/// Everything that can go wrong while building, training or saving a network.
#[derive(Debug, Error)]
pub enum EvalError {
    /// A libtorch call failed (out of memory, a shape mismatch, a missing CUDA kernel, …).
    #[error("libtorch: {0}")]
    Torch(#[from] tch::TchError),
    /// The architecture is not valid (see `effnas_space::ArchSpec::validate`).
    #[error("architecture: {0}")]
    Arch(#[from] effnas_space::SpaceError),
    /// A device string that is not `cpu`, `cuda` or `cuda:N`.
    #[error("unknown device {0:?} (expected cpu, cuda or cuda:N)")]
    BadDevice(String),
    /// A CUDA device was asked for and is not there.
    #[error("{requested} is not available: {reason}")]
    DeviceUnavailable { requested: String, reason: String },
    /// A proxy configuration that cannot run (zero batch, negative learning rate, …).
    #[error("invalid proxy configuration: {field}: {reason}")]
    Config { field: &'static str, reason: String },
    /// Training and validation data that do not fit the architecture or each other.
    #[error("data: {0}")]
    Data(String),
    /// Reading or writing a checkpoint.
    #[error("{path}: {reason}")]
    File { path: PathBuf, reason: String },
    /// The worker pool is gone (every worker stopped).
    #[error("worker pool: {0}")]
    Pool(String),
}

impl EvalError {
    pub(crate) fn config(field: &'static str, reason: impl Into<String>) -> Self {
        EvalError::Config { field, reason: reason.into() }
    }

    pub(crate) fn file(path: impl Into<PathBuf>, reason: impl ToString) -> Self {
        EvalError::File { path: path.into(), reason: reason.to_string() }
    }

    /// Whether libtorch reported an out-of-memory condition (CUDA or CPU allocator).
    pub fn is_out_of_memory(&self) -> bool {
        match self {
            EvalError::Torch(e) => {
                let text = e.to_string().to_ascii_lowercase();
                text.contains("out of memory")
                    || text.contains("can't allocate")
                    || text.contains("not enough memory")
            }
            _ => false,
        }
    }
}

pub type Result<T, E = EvalError> = std::result::Result<T, E>;
