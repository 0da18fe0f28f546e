//! Statistics for trusting a search's ranking: how well a cheap proxy ranks architectures
//! compared with a reference setting, and how much of that is seed noise.
//!
//! - [`kendall_tau_b`]: Kendall's tau-b (M. G. Kendall, "The treatment of ties in ranking
//!   problems", Biometrika 33(3), 1945), `(P − Q) / √((n₀ − n₁)(n₀ − n₂))` over the `n₀ = n(n−1)/2`
//!   pairs, with `P`/`Q` the concordant/discordant pairs and `n₁`/`n₂` the pairs tied in `x`/`y`
//!   (a pair tied in both counts in both). This is what `scipy.stats.kendalltau` computes by
//!   default (`variant="b"`). It counts pairs directly, O(n²) time and O(1) memory: fine for the
//!   tens to a few thousand architectures a fidelity study trains, not meant for millions
//!   (Knight's 1966 O(n log n) algorithm would be).
//! - [`spearman_rho`]: Spearman's rank correlation (C. Spearman, "The proof and measurement of
//!   association between two things", Am. J. Psychol. 15(1), 1904) in the form that stays exact
//!   with ties: Pearson's correlation of the average ranks ([`ranks`]), as
//!   `scipy.stats.spearmanr` computes it (not the `1 − 6Σd²/(n(n²−1))` shortcut, which is wrong
//!   under ties).
//! - [`bootstrap_interval`]: Efron's percentile bootstrap (B. Efron, "Bootstrap methods: another
//!   look at the jackknife", Ann. Statist. 7(1), 1979; the percentile interval as in Efron &
//!   Tibshirani, *An Introduction to the Bootstrap*, 1993, §13.3): resample the `(x, y)` pairs
//!   with replacement, recompute the statistic, and take the `(1 − level)/2` and `(1 + level)/2`
//!   quantiles of the replicates (linear interpolation between order statistics, numpy's default).
//!   A resample in which one vector is constant has no rank correlation; it is skipped and the
//!   interval reports how many replicates it rests on.
//! - [`top_k_overlap`], [`NoiseFloor`] (the spread of one architecture's accuracy across seeds)
//!   and [`Summary`] (mean ± standard deviation over seeds).
//!
//! Undefined values are errors ([`StatsError::Undefined`]), never NaN, so a report cannot print
//! a correlation that was never computed.
//!
//! The tests (`search/tests/rank_stats.rs`) compare every value with golden numbers computed by
//! SciPy (`scripts/golden/rank-stats`, committed JSON), not with numbers derived from these
//! formulas: tie handling is where rank statistics go quietly wrong, and an independent
//! implementation is the only check that does not share the mistake.

use rand::{Rng, SeedableRng};
use rand_chacha::ChaCha8Rng;

/// Why a statistic could not be computed.
#[derive(Debug, Clone, PartialEq, thiserror::Error)]
pub enum StatsError {
    /// The two vectors of a pair have different lengths.
    #[error("the two vectors differ in length ({x} and {y})")]
    LengthMismatch { x: usize, y: usize },
    /// Too few points (or architectures) for the statistic.
    #[error("at least {needed} points are needed, got {got}")]
    TooFewPoints { needed: usize, got: usize },
    /// An architecture has fewer than two seeds, so it has no spread.
    #[error("architecture {architecture} has {got} seed(s); the noise floor needs at least 2")]
    TooFewSeeds { architecture: usize, got: usize },
    /// A value is NaN or infinite. `index` is the point's position (for [`NoiseFloor`], the
    /// architecture's).
    #[error("value {value} at index {index} is not finite")]
    NonFinite { index: usize, value: f64 },
    /// The statistic has no value because a vector is constant (every pair tied).
    #[error("{statistic} is undefined: a vector is constant")]
    Undefined { statistic: &'static str },
    /// The bootstrap's confidence level is not strictly between 0 and 1.
    #[error("the confidence level must lie strictly between 0 and 1, got {0}")]
    InvalidLevel(f64),
    /// The bootstrap was asked for zero resamples.
    #[error("the bootstrap needs at least one resample")]
    NoResamples,
}

/// A statistic of a pair of vectors, as [`bootstrap_interval`] takes it.
pub type PairStatistic = fn(&[f64], &[f64]) -> Result<f64, StatsError>;

/// Checks that `x` and `y` are a usable pair: same length, at least two points, all finite.
fn check_pair(x: &[f64], y: &[f64]) -> Result<(), StatsError> {
    if x.len() != y.len() {
        return Err(StatsError::LengthMismatch { x: x.len(), y: y.len() });
    }
    if x.len() < 2 {
        return Err(StatsError::TooFewPoints { needed: 2, got: x.len() });
    }
    check_finite(x)?;
    check_finite(y)
}

fn check_finite(values: &[f64]) -> Result<(), StatsError> {
    match values.iter().position(|v| !v.is_finite()) {
        Some(index) => Err(StatsError::NonFinite { index, value: values[index] }),
        None => Ok(()),
    }
}

/// -1, 0 or 1 as `a` is below, equal to (0.0 and -0.0 are equal) or above `b`; both finite.
fn sign(a: f64, b: f64) -> i8 {
    if a < b {
        -1
    } else if a > b {
        1
    } else {
        0
    }
}

fn is_constant(values: &[f64]) -> bool {
    values.windows(2).all(|w| w[0] == w[1])
}

/// Kendall's tau-b between `x` and `y`, ties in either vector corrected for, equal to
/// `scipy.stats.kendalltau(x, y).statistic`. O(n²) pair counting (see the module doc).
///
/// Errors: different lengths, fewer than 2 points, a non-finite value, or
/// [`StatsError::Undefined`] when either vector is constant.
pub fn kendall_tau_b(x: &[f64], y: &[f64]) -> Result<f64, StatsError> {
    check_pair(x, y)?;
    let n = x.len();
    let (mut concordant, mut discordant, mut tied_x, mut tied_y) = (0u64, 0u64, 0u64, 0u64);
    for i in 0..n {
        for j in i + 1..n {
            let (dx, dy) = (sign(x[i], x[j]), sign(y[i], y[j]));
            if dx == 0 {
                tied_x += 1;
            }
            if dy == 0 {
                tied_y += 1;
            }
            match dx * dy {
                1 => concordant += 1,
                -1 => discordant += 1,
                _ => {}
            }
        }
    }
    let pairs = (n as u64) * (n as u64 - 1) / 2;
    if tied_x == pairs || tied_y == pairs {
        return Err(StatsError::Undefined { statistic: "Kendall's tau-b" });
    }
    // The same order of operations as SciPy, so the last bits agree as far as they can.
    let tau = (concordant as f64 - discordant as f64)
        / ((pairs - tied_x) as f64).sqrt()
        / ((pairs - tied_y) as f64).sqrt();
    Ok(tau.clamp(-1.0, 1.0))
}

/// Spearman's rho between `x` and `y`: Pearson's correlation of their average ranks, equal to
/// `scipy.stats.spearmanr(x, y).statistic`.
///
/// Errors: as [`kendall_tau_b`].
pub fn spearman_rho(x: &[f64], y: &[f64]) -> Result<f64, StatsError> {
    check_pair(x, y)?;
    if is_constant(x) || is_constant(y) {
        return Err(StatsError::Undefined { statistic: "Spearman's rho" });
    }
    Ok(pearson(&ranks(x), &ranks(y)).clamp(-1.0, 1.0))
}

/// Pearson's correlation of two equally long, non-constant vectors.
fn pearson(a: &[f64], b: &[f64]) -> f64 {
    let n = a.len() as f64;
    let mean_a = a.iter().sum::<f64>() / n;
    let mean_b = b.iter().sum::<f64>() / n;
    let (mut sab, mut saa, mut sbb) = (0.0, 0.0, 0.0);
    for (&va, &vb) in a.iter().zip(b) {
        let (da, db) = (va - mean_a, vb - mean_b);
        sab += da * db;
        saa += da * da;
        sbb += db * db;
    }
    sab / (saa * sbb).sqrt()
}

/// The 1-based average ranks of `values`: the smallest value has rank 1, and tied values share
/// the mean of the ranks they span (`[10, 20, 20, 30]` → `[1, 2.5, 2.5, 4]`), as
/// `scipy.stats.rankdata(values, method="average")`. Values are ordered by `f64::total_cmp`;
/// the correlation functions reject non-finite input before ranking.
pub fn ranks(values: &[f64]) -> Vec<f64> {
    let mut order: Vec<usize> = (0..values.len()).collect();
    order.sort_by(|&a, &b| values[a].total_cmp(&values[b]));
    let mut ranks = vec![0.0; values.len()];
    let mut start = 0;
    while start < order.len() {
        let mut end = start + 1;
        // `==`, not `total_cmp`, so 0.0 and -0.0 (adjacent in the sort) tie.
        while end < order.len() && values[order[end]] == values[order[start]] {
            end += 1;
        }
        // Positions start..end hold 1-based ranks start+1 ..= end; their mean:
        let average = (start + 1 + end) as f64 / 2.0;
        for &index in &order[start..end] {
            ranks[index] = average;
        }
        start = end;
    }
    ranks
}

/// A bootstrap confidence interval around a statistic.
#[derive(Debug, Clone, Copy, PartialEq)]
pub struct Interval {
    /// The lower bound: the `(1 − level)/2` quantile of the replicates.
    pub low: f64,
    /// The upper bound: the `(1 + level)/2` quantile of the replicates.
    pub high: f64,
    /// The statistic on the original, unresampled pairs.
    pub estimate: f64,
    /// How many replicates the bounds rest on: the resamples requested less those skipped
    /// because the statistic was undefined on them (a constant resampled vector).
    pub resamples_used: usize,
}

/// Efron's percentile bootstrap interval of `statistic` over the pairs `(x[i], y[i])`.
///
/// Each of `resamples` replicates draws `n` pair indices uniformly with replacement from a
/// `ChaCha8Rng` seeded with `seed` (same inputs and seed, same interval). A replicate on which
/// the statistic is [`StatsError::Undefined`] is skipped and not counted in `resamples_used`;
/// any other error is returned. `level` is the coverage, e.g. 0.95.
///
/// Errors: the statistic's own errors on the original data, [`StatsError::InvalidLevel`],
/// [`StatsError::NoResamples`], and [`StatsError::Undefined`] when every replicate was skipped.
pub fn bootstrap_interval(
    x: &[f64],
    y: &[f64],
    statistic: PairStatistic,
    resamples: usize,
    level: f64,
    seed: u64,
) -> Result<Interval, StatsError> {
    // Written to reject NaN as well.
    if !(level > 0.0 && level < 1.0) {
        return Err(StatsError::InvalidLevel(level));
    }
    if resamples == 0 {
        return Err(StatsError::NoResamples);
    }
    check_pair(x, y)?;
    let estimate = statistic(x, y)?;
    let n = x.len();
    let mut rng = ChaCha8Rng::seed_from_u64(seed);
    let (mut xs, mut ys) = (vec![0.0; n], vec![0.0; n]);
    let mut replicates = Vec::with_capacity(resamples);
    for _ in 0..resamples {
        for (xi, yi) in xs.iter_mut().zip(ys.iter_mut()) {
            let index = rng.random_range(0..n);
            (*xi, *yi) = (x[index], y[index]);
        }
        match statistic(&xs, &ys) {
            Ok(value) => replicates.push(value),
            Err(StatsError::Undefined { .. }) => {}
            Err(other) => return Err(other),
        }
    }
    if replicates.is_empty() {
        return Err(StatsError::Undefined { statistic: "the bootstrap interval (every resample)" });
    }
    replicates.sort_by(f64::total_cmp);
    let tail = (1.0 - level) / 2.0;
    Ok(Interval {
        low: quantile(&replicates, tail),
        high: quantile(&replicates, 1.0 - tail),
        estimate,
        resamples_used: replicates.len(),
    })
}

/// The `p` quantile of sorted, non-empty `values`, interpolating linearly between order
/// statistics (numpy's default, Hyndman & Fan type 7).
fn quantile(sorted: &[f64], p: f64) -> f64 {
    let h = (sorted.len() - 1) as f64 * p;
    let below = h.floor() as usize;
    let above = (below + 1).min(sorted.len() - 1);
    sorted[below] + (h - below as f64) * (sorted[above] - sorted[below])
}

/// How many of the `k` best items by `x` are also among the `k` best by `y`, "best" meaning
/// largest (accuracies). Equal values are broken by index, the earlier item ranking higher, so
/// the result is deterministic; `k` larger than the length counts every item.
///
/// Errors: different lengths or a non-finite value. (Fewer than two points is allowed.)
pub fn top_k_overlap(x: &[f64], y: &[f64], k: usize) -> Result<usize, StatsError> {
    if x.len() != y.len() {
        return Err(StatsError::LengthMismatch { x: x.len(), y: y.len() });
    }
    check_finite(x)?;
    check_finite(y)?;
    let k = k.min(x.len());
    let best_y = top_k(y, k);
    Ok(top_k(x, k).iter().filter(|index| best_y.contains(index)).count())
}

/// The indices of the `k` largest values, ties to the earlier index.
fn top_k(values: &[f64], k: usize) -> Vec<usize> {
    let mut order: Vec<usize> = (0..values.len()).collect();
    // A stable sort keeps equal values in index order; values are finite, so `partial_cmp`
    // is total here and treats 0.0 and -0.0 as equal.
    order.sort_by(|&a, &b| values[b].partial_cmp(&values[a]).unwrap_or(std::cmp::Ordering::Equal));
    order.truncate(k);
    order
}

/// The noise floor of a training setting: how much one architecture's accuracy moves between
/// seeds. A difference between two architectures smaller than this says nothing about which is
/// better.
#[derive(Debug, Clone, Copy, PartialEq)]
pub struct NoiseFloor {
    /// The mean over architectures of the sample standard deviation (n − 1) across seeds.
    pub mean_std: f64,
    /// The largest such standard deviation.
    pub max_std: f64,
    /// The mean over architectures of |seed 1 − seed 2|: the first two seeds of each.
    pub mean_abs_pair_diff: f64,
}

impl NoiseFloor {
    /// The noise floor of `accuracies[architecture][seed]`. Architectures may have different
    /// numbers of seeds, each at least two.
    ///
    /// Errors: no architectures ([`StatsError::TooFewPoints`]), an architecture with fewer than
    /// two seeds ([`StatsError::TooFewSeeds`]), a non-finite accuracy
    /// ([`StatsError::NonFinite`], indexed by architecture).
    pub fn from_seeds(accuracies: &[Vec<f64>]) -> Result<Self, StatsError> {
        if accuracies.is_empty() {
            return Err(StatsError::TooFewPoints { needed: 1, got: 0 });
        }
        let (mut sum_std, mut max_std, mut sum_diff) = (0.0, 0.0f64, 0.0);
        for (architecture, seeds) in accuracies.iter().enumerate() {
            if seeds.len() < 2 {
                return Err(StatsError::TooFewSeeds { architecture, got: seeds.len() });
            }
            if let Some(value) = seeds.iter().find(|v| !v.is_finite()) {
                return Err(StatsError::NonFinite { index: architecture, value: *value });
            }
            let std = sample_std(seeds);
            sum_std += std;
            max_std = max_std.max(std);
            sum_diff += (seeds[0] - seeds[1]).abs();
        }
        let count = accuracies.len() as f64;
        Ok(Self { mean_std: sum_std / count, max_std, mean_abs_pair_diff: sum_diff / count })
    }
}

/// The sample standard deviation (denominator n − 1) of at least two values.
fn sample_std(values: &[f64]) -> f64 {
    let n = values.len() as f64;
    let mean = values.iter().sum::<f64>() / n;
    (values.iter().map(|v| (v - mean).powi(2)).sum::<f64>() / (n - 1.0)).sqrt()
}

/// Mean and sample standard deviation of one architecture's accuracy over seeds, as a finalist
/// is reported ("0.8312 ± 0.0041 (3 seeds)").
#[derive(Debug, Clone, Copy, PartialEq)]
pub struct Summary {
    /// The mean over seeds.
    pub mean: f64,
    /// The sample standard deviation (n − 1); `None` with a single seed, which has no spread.
    pub std: Option<f64>,
    /// The number of seeds.
    pub seeds: usize,
}

impl Summary {
    /// Summarises one architecture's accuracies over seeds.
    ///
    /// Errors: no values ([`StatsError::TooFewPoints`]) or a non-finite one.
    pub fn of(values: &[f64]) -> Result<Self, StatsError> {
        if values.is_empty() {
            return Err(StatsError::TooFewPoints { needed: 1, got: 0 });
        }
        check_finite(values)?;
        let mean = values.iter().sum::<f64>() / values.len() as f64;
        let std = (values.len() >= 2).then(|| sample_std(values));
        Ok(Self { mean, std, seeds: values.len() })
    }
}

impl std::fmt::Display for Summary {
    /// `mean ± std (n seeds)`, four decimals unless a precision is given (`{:.2}`).
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        let precision = f.precision().unwrap_or(4);
        let seeds = if self.seeds == 1 { "1 seed".to_string() } else { format!("{} seeds", self.seeds) };
        match self.std {
            Some(std) => write!(f, "{:.p$} ± {:.p$} ({seeds})", self.mean, std, p = precision),
            None => write!(f, "{:.p$} ({seeds})", self.mean, p = precision),
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn ranks_average_ties() {
        assert_eq!(ranks(&[10.0, 20.0, 20.0, 30.0]), vec![1.0, 2.5, 2.5, 4.0]);
        assert_eq!(ranks(&[3.0, 1.0, 3.0, 3.0]), vec![3.0, 1.0, 3.0, 3.0]);
        assert_eq!(ranks(&[]), Vec::<f64>::new());
    }

    #[test]
    fn quantile_interpolates_like_numpy() {
        let sorted = [1.0, 2.0, 3.0, 4.0, 5.0];
        assert_eq!(quantile(&sorted, 0.0), 1.0);
        assert_eq!(quantile(&sorted, 1.0), 5.0);
        assert_eq!(quantile(&sorted, 0.5), 3.0);
        // numpy.quantile([1, 2, 3, 4, 5], 0.025) = 1.1
        assert!((quantile(&sorted, 0.025) - 1.1).abs() < 1e-15);
        assert_eq!(quantile(&[7.0], 0.975), 7.0);
    }

    #[test]
    fn a_pair_tied_in_both_vectors_is_neither_concordant_nor_discordant() {
        // Two points tied in both: every pair tied in x, so undefined.
        assert!(matches!(kendall_tau_b(&[1.0, 1.0], &[2.0, 2.0]), Err(StatsError::Undefined { .. })));
        // (1,1),(1,1),(2,2): P = 2, n1 = n2 = 1, tau = 2 / √2 / √2 = 1.
        let tau = kendall_tau_b(&[1.0, 1.0, 2.0], &[1.0, 1.0, 2.0]).expect("defined");
        assert!((tau - 1.0).abs() < 1e-15);
    }

    #[test]
    fn summary_displays_mean_and_std() {
        let summary = Summary::of(&[0.80, 0.82, 0.84]).expect("finite");
        assert_eq!(summary.to_string(), "0.8200 ± 0.0200 (3 seeds)");
        assert_eq!(format!("{summary:.2}"), "0.82 ± 0.02 (3 seeds)");
        assert_eq!(Summary::of(&[0.5]).expect("one seed").to_string(), "0.5000 (1 seed)");
    }
}
