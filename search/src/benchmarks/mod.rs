//! Readers for published NAS benchmarks whose search spaces are MBConv spaces that effnas block
//! strings can write, so that a search strategy can be measured by table look-up instead of by
//! training (issue 12). The data files are committed unchanged under `benchmarks/` at the
//! repository root, each with its license, its source and a NOTICE; `benchmarks/README.md` says
//! what each one is and how it was checked.
//!
//! - [`macro_cifar`]: NAS-Bench-Macro (X. Su et al., "Prioritized Architecture Sampling with
//!   Monte-Carlo Tree Search", CVPR 2021; data from github.com/xiusu/NAS-Bench-Macro): all
//!   3^8 = 6,561 codes of an 8-layer CIFAR-10 macro space, each trained three times.
//! - [`accel`]: Accel-NASBench (A. Ahmad et al., "Accel-NASBench: Sustainable Benchmarking for
//!   Accelerator-Aware NAS", 2024; data from github.com/afzalxo/Accel-NASBench): 5,138
//!   proxified ImageNet trainings in EfficientNet-B0's own search space, with throughput and
//!   latency on six accelerators.
//!
//! [`lookup`] answers a search's trials from either benchmark instead of training them.
//!
//! Both readers check every record and return a [`BenchmarkError`] that names the file and the
//! record; a damaged file is an error value, never a panic.

pub mod accel;
pub mod lookup;
pub mod macro_cifar;

use std::path::PathBuf;

/// Why a benchmark file could not be read. Every message is one line and names the file; those
/// about one record name the record too (an 8-digit code, or an archive entry).
#[derive(Debug, thiserror::Error)]
pub enum BenchmarkError {
    /// The file could not be opened or read.
    #[error("{}: cannot read: {source}", path.display())]
    Read { path: PathBuf, source: std::io::Error },
    /// The file is not one JSON document of the expected shape (truncated, for instance).
    #[error("{}: not valid JSON: {source}", path.display())]
    Json { path: PathBuf, source: serde_json::Error },
    /// The gzip or tar layer of an archive is damaged; `at` says where reading stopped.
    #[error("{}: damaged archive ({at}): {source}", path.display())]
    Archive { path: PathBuf, at: String, source: std::io::Error },
    /// One record is missing a field, has a field of the wrong type, or a value outside the
    /// benchmark's space.
    #[error("{}: record {record}: {reason}", path.display())]
    Record { path: PathBuf, record: String, reason: String },
    /// The file holds no records at all.
    #[error("{}: no records", path.display())]
    Empty { path: PathBuf },
}

/// The expected best value found by random search that draws `n` distinct members uniformly
/// from a finite table without replacement: `E[max] = Σᵢ v₍ᵢ₎ · P(the maximum is the i-th
/// smallest)`, with `P = C(i−1, n−1) / C(N, n)` for the ascending order statistics `v₍ᵢ₎`.
///
/// The probabilities are built from the top down (`P(N) = n/N`, then
/// `P(i−1) = P(i)·(i−n)/(i−1)`), which stays in f64 range where `C(N, n)` itself would overflow.
/// Ties need no care: each order statistic carries its own probability. `None` when `n` is zero,
/// exceeds the table, or a value is not finite.
pub fn expected_best_of_random(values: &[f64], n: usize) -> Option<f64> {
    let total = values.len();
    if n == 0 || n > total || values.iter().any(|v| !v.is_finite()) {
        return None;
    }
    let mut sorted = values.to_vec();
    sorted.sort_by(f64::total_cmp);
    let mut p = n as f64 / total as f64;
    let mut expected = 0.0;
    // `i` is the 1-based rank in ascending order; the maximum of n draws has rank ≥ n.
    for i in (n..=total).rev() {
        expected += sorted[i - 1] * p;
        if i > 1 {
            p *= (i - n) as f64 / (i - 1) as f64;
        }
    }
    Some(expected)
}

#[cfg(test)]
mod tests {
    use super::expected_best_of_random;

    #[test]
    fn expected_best_matches_enumeration_on_a_small_table() {
        // Draws of 2 from {1, 2, 3, 4}: the six pairs have maxima 2, 3, 4, 3, 4, 4.
        let close = |got: Option<f64>, want: f64| got.is_some_and(|g| (g - want).abs() < 1e-12);
        assert!(close(expected_best_of_random(&[3.0, 1.0, 4.0, 2.0], 2), 20.0 / 6.0));
        assert!(close(expected_best_of_random(&[3.0, 1.0, 4.0, 2.0], 4), 4.0));
        assert!(close(expected_best_of_random(&[3.0, 1.0], 1), 2.0));
        assert_eq!(expected_best_of_random(&[3.0], 0), None);
        assert_eq!(expected_best_of_random(&[3.0], 2), None);
    }
}
