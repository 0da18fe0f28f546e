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
    ///
    /// The message text is the only signal tch offers: libtch's `PROTECT` macro catches every
    /// C++ exception as `std::exception` and keeps only `e.what()`, and tch turns it into
    /// `TchError::Torch(String)`, so the type of c10's `OutOfMemoryError` is lost before Rust
    /// sees it. This is therefore a fallback that matches the fixed prefixes c10 writes (see
    /// [`OUT_OF_MEMORY_MESSAGES`]), case-sensitively, rather than any mention of "memory".
    pub fn is_out_of_memory(&self) -> bool {
        match self {
            EvalError::Torch(tch::TchError::Torch(text)) => {
                OUT_OF_MEMORY_MESSAGES.iter().any(|prefix| text.contains(prefix))
            }
            _ => false,
        }
    }

    /// The first non-empty line of the message. libtorch appends a C++ backtrace of several
    /// kilobytes to its messages; results and logs keep this line, `debug!` the full text.
    pub fn first_line(&self) -> String {
        first_line(&self.to_string())
    }
}

/// The messages with which c10 reports an allocation failure (libtorch 2.x):
/// the CUDA caching allocator's `OutOfMemoryError`, a CUDA runtime error, cuBLAS and cuDNN
/// workspace allocations, and the CPU allocator (`DefaultCPUAllocator`, older and newer wording).
pub const OUT_OF_MEMORY_MESSAGES: &[&str] = &[
    "CUDA out of memory",
    "CUDA error: out of memory",
    "CUBLAS_STATUS_ALLOC_FAILED",
    "CUDNN_STATUS_ALLOC_FAILED",
    "DefaultCPUAllocator: not enough memory",
    "DefaultCPUAllocator: can't allocate memory",
];

/// The first non-empty line of `text`, trimmed (the whole text when it has one line).
pub fn first_line(text: &str) -> String {
    text.lines().map(str::trim).find(|line| !line.is_empty()).unwrap_or("").to_owned()
}

pub type Result<T, E = EvalError> = std::result::Result<T, E>;

#[cfg(test)]
#[allow(clippy::unwrap_used)] // a failing unwrap is a failing test
mod tests {
    use super::*;

    fn torch(text: &str) -> EvalError {
        EvalError::Torch(tch::TchError::Torch(text.to_owned()))
    }

    #[test]
    fn out_of_memory_is_recognised_by_c10_prefixes_only() {
        let cuda =
            "CUDA out of memory. Tried to allocate 20.00 MiB. GPU 0 has a total capacity of 79.10 GiB\n\
                    Exception raised from malloc at ../c10/cuda/CUDACachingAllocator.cpp:1200";
        assert!(torch(cuda).is_out_of_memory());
        let cpu = "DefaultCPUAllocator: can't allocate memory: you tried to allocate 1 bytes";
        assert!(torch(cpu).is_out_of_memory());
        let older = "DefaultCPUAllocator: not enough memory: you tried to allocate 1 bytes";
        assert!(torch(older).is_out_of_memory());
        assert!(!torch("shape '[2, 3]' is invalid for input of size 5").is_out_of_memory());
        assert!(!torch("the memory format is not enough memory-friendly").is_out_of_memory());
        assert!(!EvalError::Data("CUDA out of memory".to_owned()).is_out_of_memory());
    }

    #[test]
    fn first_line_drops_the_backtrace() {
        let e = torch(
            "CUDA out of memory. Tried to allocate 2.00 GiB\n\
             Exception raised from malloc at x.cpp:1 (most recent call first):\n\
             frame #0: c10::Error::Error",
        );
        assert_eq!(
            e.first_line(),
            "libtorch: Internal torch error: CUDA out of memory. Tried to allocate 2.00 GiB"
        );
        assert_eq!(first_line("\n  one\ntwo"), "one");
        assert_eq!(first_line(""), "");
    }
}
