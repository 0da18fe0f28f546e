//! The rank statistics of `effnas_search::stats` against golden values computed by SciPy
//! (tests/data/rank_stats_golden.json, written by scripts/golden/rank-stats with scipy 1.17.1 and
//! numpy 2.4.6), and the bootstrap, top-k overlap, noise floor and error cases on hand-checked
//! examples. No test here trains anything or asserts a correlation threshold.

use std::cell::Cell;

use effnas_search::stats::{
    bootstrap_interval, kendall_tau_b, ranks, spearman_rho, top_k_overlap, NoiseFloor, StatsError, Summary,
};
use rand::{Rng, SeedableRng};
use rand_chacha::ChaCha8Rng;
use serde::Deserialize;

const TOLERANCE: f64 = 1e-12;

#[derive(Deserialize)]
struct Golden {
    cases: Vec<Case>,
    undefined: Vec<Pair>,
}

#[derive(Deserialize)]
struct Case {
    name: String,
    x: Vec<f64>,
    y: Vec<f64>,
    tau_b: f64,
    spearman_rho: f64,
    ranks_x: Vec<f64>,
    ranks_y: Vec<f64>,
}

#[derive(Deserialize)]
struct Pair {
    name: String,
    x: Vec<f64>,
    y: Vec<f64>,
}

fn golden() -> Golden {
    let text = include_str!("data/rank_stats_golden.json");
    serde_json::from_str(text).expect("the golden JSON parses")
}

fn realistic() -> (Vec<f64>, Vec<f64>) {
    let case = golden()
        .cases
        .into_iter()
        .find(|case| case.name == "realistic_14_architectures")
        .expect("the realistic pair is in the golden file");
    (case.x, case.y)
}

fn assert_close(what: &str, actual: f64, expected: f64) {
    assert!(
        (actual - expected).abs() <= TOLERANCE,
        "{what}: {actual} differs from SciPy's {expected} by {:e}",
        (actual - expected).abs()
    );
}

#[test]
fn golden_file_covers_the_promised_cases() {
    let golden = golden();
    let names: Vec<&str> = golden.cases.iter().map(|case| case.name.as_str()).collect();
    for name in [
        "ties_in_x",
        "ties_in_y",
        "ties_in_both",
        "concordant",
        "discordant",
        "n2_concordant",
        "realistic_14_architectures",
    ] {
        assert!(names.contains(&name), "{name} missing from the golden file");
    }
    let (x, y) = realistic();
    assert_eq!(x.len(), 14);
    // The realistic pair really has repeated values on both sides.
    for values in [&x, &y] {
        let mut sorted = values.clone();
        sorted.sort_by(f64::total_cmp);
        assert!(sorted.windows(2).any(|w| w[0] == w[1]));
    }
}

#[test]
fn kendall_tau_b_matches_scipy() {
    for case in golden().cases {
        let tau = kendall_tau_b(&case.x, &case.y).expect(&case.name);
        assert_close(&format!("tau-b of {}", case.name), tau, case.tau_b);
        // Symmetric in its arguments.
        let swapped = kendall_tau_b(&case.y, &case.x).expect(&case.name);
        assert_close(&format!("tau-b of {} swapped", case.name), swapped, case.tau_b);
    }
}

#[test]
fn spearman_rho_matches_scipy() {
    for case in golden().cases {
        let rho = spearman_rho(&case.x, &case.y).expect(&case.name);
        assert_close(&format!("rho of {}", case.name), rho, case.spearman_rho);
    }
}

#[test]
fn ranks_match_scipy() {
    for case in golden().cases {
        for (values, expected, which) in [(&case.x, &case.ranks_x, "x"), (&case.y, &case.ranks_y, "y")] {
            let actual = ranks(values);
            assert_eq!(actual.len(), expected.len());
            for (a, e) in actual.iter().zip(expected) {
                assert_close(&format!("ranks of {} {which}", case.name), *a, *e);
            }
        }
    }
}

#[test]
fn constant_vectors_are_undefined_where_scipy_returns_nan() {
    for pair in golden().undefined {
        assert!(
            matches!(kendall_tau_b(&pair.x, &pair.y), Err(StatsError::Undefined { .. })),
            "tau-b of {}",
            pair.name
        );
        assert!(
            matches!(spearman_rho(&pair.x, &pair.y), Err(StatsError::Undefined { .. })),
            "rho of {}",
            pair.name
        );
    }
}

#[test]
fn signed_zeros_tie() {
    assert_eq!(ranks(&[0.0, -0.0, 1.0]), vec![1.5, 1.5, 3.0]);
    assert!(matches!(kendall_tau_b(&[0.0, -0.0], &[1.0, 2.0]), Err(StatsError::Undefined { .. })));
}

#[test]
fn bootstrap_is_deterministic_for_a_seed() {
    let (x, y) = realistic();
    let first = bootstrap_interval(&x, &y, kendall_tau_b, 500, 0.95, 7).expect("defined");
    let again = bootstrap_interval(&x, &y, kendall_tau_b, 500, 0.95, 7).expect("defined");
    assert_eq!(first, again);
    let other = bootstrap_interval(&x, &y, kendall_tau_b, 500, 0.95, 8).expect("defined");
    assert_eq!(other.estimate, first.estimate);
    assert_ne!((other.low, other.high), (first.low, first.high), "a different seed resamples differently");
}

#[test]
fn bootstrap_interval_contains_the_estimate_on_a_realistic_pair() {
    let (x, y) = realistic();
    for (name, statistic) in
        [("tau-b", kendall_tau_b as effnas_search::stats::PairStatistic), ("rho", spearman_rho)]
    {
        let interval = bootstrap_interval(&x, &y, statistic, 2000, 0.95, 11).expect(name);
        assert_eq!(interval.estimate, statistic(&x, &y).expect(name));
        assert!(
            -1.0 <= interval.low && interval.low <= interval.estimate,
            "{name}: {interval:?} should contain its estimate"
        );
        assert!(interval.estimate <= interval.high && interval.high <= 1.0, "{name}: {interval:?}");
        assert!(interval.low < interval.high, "{name}: a 14-point resample is not degenerate");
        // 14 resampled points are all tied with probability about 14⁻¹³: nothing skipped.
        assert_eq!(interval.resamples_used, 2000, "{name}");
        // A narrower level gives a narrower interval from the same replicates.
        let narrow = bootstrap_interval(&x, &y, statistic, 2000, 0.5, 11).expect(name);
        assert!(interval.low <= narrow.low && narrow.high <= interval.high, "{name}");
    }
}

#[test]
fn bootstrap_skips_and_counts_constant_resamples() {
    // With two points, a resample that draws the same index twice is constant (tau undefined),
    // which happens about half the time. Reproduce the draws to know exactly how many: each
    // replicate draws its n indices in order from one ChaCha8Rng seeded with the seed.
    let (x, y) = ([0.81, 0.84], [0.85, 0.86]);
    let (resamples, seed) = (1000, 3);
    let mut rng = ChaCha8Rng::seed_from_u64(seed);
    let defined =
        (0..resamples).filter(|_| rng.random_range(0..2usize) != rng.random_range(0..2usize)).count();
    assert!(defined > 400 && defined < 600, "{defined} of {resamples}");

    let interval = bootstrap_interval(&x, &y, kendall_tau_b, resamples, 0.95, seed).expect("defined");
    assert_eq!(interval.resamples_used, defined);
    // Every defined resample is the concordant pair, in some order.
    assert_eq!((interval.low, interval.estimate, interval.high), (1.0, 1.0, 1.0));
}

thread_local! {
    static CALLS: Cell<usize> = const { Cell::new(0) };
}

/// Defined on its first call (the original data), undefined on every later one (the replicates).
fn defined_once(_: &[f64], _: &[f64]) -> Result<f64, StatsError> {
    let calls = CALLS.with(|calls| calls.replace(calls.get() + 1));
    if calls == 0 {
        Ok(0.5)
    } else {
        Err(StatsError::Undefined { statistic: "test statistic" })
    }
}

/// Fails with an error other than `Undefined` on the replicates.
fn fails_on_replicates(x: &[f64], _: &[f64]) -> Result<f64, StatsError> {
    if x == [1.0, 2.0, 3.0] {
        Ok(0.0)
    } else {
        Err(StatsError::TooFewPoints { needed: 99, got: x.len() })
    }
}

#[test]
fn bootstrap_errors() {
    let (x, y) = realistic();
    for level in [0.0, 1.0, -0.5, 1.5, f64::NAN] {
        let result = bootstrap_interval(&x, &y, kendall_tau_b, 100, level, 1);
        assert!(matches!(result, Err(StatsError::InvalidLevel(_))), "level {level}: {result:?}");
    }
    assert_eq!(bootstrap_interval(&x, &y, kendall_tau_b, 0, 0.95, 1), Err(StatsError::NoResamples));
    assert_eq!(
        bootstrap_interval(&x, &y[..13], kendall_tau_b, 100, 0.95, 1),
        Err(StatsError::LengthMismatch { x: 14, y: 13 })
    );
    assert!(matches!(
        bootstrap_interval(&[0.8, 0.8, 0.8], &[0.1, 0.2, 0.3], spearman_rho, 100, 0.95, 1),
        Err(StatsError::Undefined { .. })
    ));
    assert!(matches!(
        bootstrap_interval(&[0.8, f64::NAN], &[0.1, 0.2], spearman_rho, 100, 0.95, 1),
        Err(StatsError::NonFinite { index: 1, .. })
    ));
    // Every replicate skipped: no interval.
    CALLS.with(|calls| calls.set(0));
    assert!(matches!(
        bootstrap_interval(&x, &y, defined_once, 50, 0.95, 1),
        Err(StatsError::Undefined { .. })
    ));
    // An error other than `Undefined` on a replicate is returned, not skipped.
    assert_eq!(
        bootstrap_interval(&[1.0, 2.0, 3.0], &[1.0, 2.0, 3.0], fails_on_replicates, 50, 0.95, 1)
            .map(|interval| interval.resamples_used),
        Err(StatsError::TooFewPoints { needed: 99, got: 3 })
    );
}

#[test]
fn correlation_errors() {
    for statistic in [kendall_tau_b as effnas_search::stats::PairStatistic, spearman_rho] {
        assert_eq!(statistic(&[1.0, 2.0, 3.0], &[1.0, 2.0]), Err(StatsError::LengthMismatch { x: 3, y: 2 }));
        assert_eq!(statistic(&[], &[]), Err(StatsError::TooFewPoints { needed: 2, got: 0 }));
        assert_eq!(statistic(&[0.8], &[0.9]), Err(StatsError::TooFewPoints { needed: 2, got: 1 }));
        assert!(matches!(
            statistic(&[0.8, f64::NAN, 0.7], &[0.1, 0.2, 0.3]),
            Err(StatsError::NonFinite { index: 1, .. })
        ));
        assert!(matches!(
            statistic(&[0.8, 0.9, 0.7], &[0.1, 0.2, f64::INFINITY]),
            Err(StatsError::NonFinite { index: 2, .. })
        ));
        assert!(matches!(statistic(&[0.8, 0.8, 0.8], &[0.1, 0.2, 0.3]), Err(StatsError::Undefined { .. })));
        assert!(matches!(statistic(&[0.1, 0.2], &[0.5, 0.5]), Err(StatsError::Undefined { .. })));
    }
}

#[test]
fn top_k_overlap_counts_shared_best() {
    // Best by x: indices 4, 1, 0, 3, 2; best by y: 4, 0, 2, 3, 1.
    let x = [0.83, 0.86, 0.79, 0.81, 0.87];
    let y = [0.85, 0.80, 0.84, 0.82, 0.88];
    assert_eq!(top_k_overlap(&x, &y, 0), Ok(0));
    assert_eq!(top_k_overlap(&x, &y, 1), Ok(1)); // {4} and {4}
    assert_eq!(top_k_overlap(&x, &y, 2), Ok(1)); // {4, 1} and {4, 0}
    assert_eq!(top_k_overlap(&x, &y, 3), Ok(2)); // {4, 1, 0} and {4, 0, 2}
    assert_eq!(top_k_overlap(&x, &y, 4), Ok(3)); // misses 1 and 2
    assert_eq!(top_k_overlap(&x, &y, 5), Ok(5));
    assert_eq!(top_k_overlap(&x, &y, 50), Ok(5), "k beyond the length counts every item");
    assert_eq!(top_k_overlap(&[], &[], 3), Ok(0));
}

#[test]
fn top_k_overlap_breaks_ties_by_index() {
    // x ties indices 1 and 2 for second place: index 1 wins, so the top 2 by x is {0, 1}.
    let x = [0.9, 0.8, 0.8, 0.7];
    assert_eq!(top_k_overlap(&x, &[4.0, 3.0, 2.0, 1.0], 2), Ok(2));
    assert_eq!(top_k_overlap(&x, &[4.0, 2.0, 3.0, 1.0], 2), Ok(1));
    // All tied: the top k is the first k indices.
    assert_eq!(top_k_overlap(&[0.5; 4], &[0.5; 4], 2), Ok(2));
    assert_eq!(top_k_overlap(&[0.5; 4], &[1.0, 2.0, 3.0, 4.0], 2), Ok(0));
}

#[test]
fn top_k_overlap_errors() {
    assert_eq!(top_k_overlap(&[1.0, 2.0], &[1.0], 1), Err(StatsError::LengthMismatch { x: 2, y: 1 }));
    assert!(matches!(
        top_k_overlap(&[1.0, f64::NAN], &[1.0, 2.0], 1),
        Err(StatsError::NonFinite { index: 1, .. })
    ));
    assert!(matches!(
        top_k_overlap(&[1.0, 2.0], &[f64::NEG_INFINITY, 2.0], 1),
        Err(StatsError::NonFinite { index: 0, .. })
    ));
}

#[test]
fn noise_floor_on_a_hand_computed_example() {
    // Dyadic accuracies, so every intermediate is exact:
    // [0.5, 0.75, 0.625]: mean 0.625, deviations ∓0.125 and 0, variance 2·0.125²/2, std 0.125.
    // [0.875, 0.875]:     std 0.
    // [0.5, 0.75]:        mean 0.625, variance 2·0.125²/1, std 0.125·√2.
    // First-two-seed differences: 0.25, 0, 0.25.
    let accuracies = vec![vec![0.5, 0.75, 0.625], vec![0.875, 0.875], vec![0.5, 0.75]];
    let floor = NoiseFloor::from_seeds(&accuracies).expect("valid");
    let sqrt2 = std::f64::consts::SQRT_2;
    assert!((floor.mean_std - (0.125 + 0.0 + 0.125 * sqrt2) / 3.0).abs() < 1e-15, "{floor:?}");
    assert!((floor.max_std - 0.125 * sqrt2).abs() < 1e-15, "{floor:?}");
    assert!((floor.mean_abs_pair_diff - 0.5 / 3.0).abs() < 1e-15, "{floor:?}");
}

#[test]
fn noise_floor_errors() {
    assert_eq!(NoiseFloor::from_seeds(&[]), Err(StatsError::TooFewPoints { needed: 1, got: 0 }));
    assert_eq!(
        NoiseFloor::from_seeds(&[vec![0.8, 0.81], vec![0.7]]),
        Err(StatsError::TooFewSeeds { architecture: 1, got: 1 })
    );
    assert_eq!(
        NoiseFloor::from_seeds(&[vec![0.8, 0.81], vec![]]),
        Err(StatsError::TooFewSeeds { architecture: 1, got: 0 })
    );
    assert!(matches!(
        NoiseFloor::from_seeds(&[vec![0.8, 0.81], vec![0.7, 0.71], vec![0.6, f64::NAN]]),
        Err(StatsError::NonFinite { index: 2, .. })
    ));
}

#[test]
fn summary_of_seeds() {
    let summary = Summary::of(&[0.5, 0.75, 0.625]).expect("valid");
    assert_eq!(summary, Summary { mean: 0.625, std: Some(0.125), seeds: 3 });
    assert_eq!(summary.to_string(), "0.6250 ± 0.1250 (3 seeds)");
    assert_eq!(Summary::of(&[0.8]).expect("one seed"), Summary { mean: 0.8, std: None, seeds: 1 });
    assert_eq!(Summary::of(&[]), Err(StatsError::TooFewPoints { needed: 1, got: 0 }));
    assert!(matches!(Summary::of(&[0.8, f64::INFINITY]), Err(StatsError::NonFinite { index: 1, .. })));
}
