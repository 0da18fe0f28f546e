//! Seeded, stratified selection of images: the held-out validation split and the image budget.
//!
//! MnasNet (Tan et al., 2019, §6) searched with a proxy task that trains on part of ImageNet's
//! training set and measures accuracy on 50K images held out of it, so the search never sees the
//! test set. effnas does the same: [`ImageSet::split_validation`] holds out a fixed validation set
//! chosen by a seed, and [`ImageSet::take`] then draws the proxy's image budget from the rest. The
//! validation set depends only on the training set, its size and the seed, never on the budget, so
//! proxies with different budgets are validated on the same images.
//!
//! Both selections are *stratified*: every class contributes in proportion to its share of the
//! set, to within one image, and which images of a class is random. They are prefixes of one
//! stratified random order of the set (see [`stratified_order`]), so a smaller budget is a subset
//! of a larger one with the same seed.
//!
//! Determinism: the order comes from ChaCha8 keyed by the seed (its little-endian bytes, zero
//! padded to 32) with a fixed stream per purpose, and from integer arithmetic only (an unbiased
//! rejection sampler, an exact rational sort key). It does not depend on the platform, the
//! thread count, or the `rand` crate's sampling algorithms, so a split made today on one machine
//! is the split made later on another. A golden test pins it.

use std::collections::BTreeMap;

use rand_chacha::rand_core::{RngCore, SeedableRng};
use rand_chacha::ChaCha8Rng;

use super::{DataError, ImageSet};

/// ChaCha8 stream of the validation split.
const VALIDATION_STREAM: u64 = 1;
/// ChaCha8 stream of the image budget.
const BUDGET_STREAM: u64 = 2;

fn rng(seed: u64, stream: u64) -> ChaCha8Rng {
    let mut key = [0u8; 32];
    key[..8].copy_from_slice(&seed.to_le_bytes());
    let mut rng = ChaCha8Rng::from_seed(key);
    rng.set_stream(stream);
    rng
}

fn validation_rng(seed: u64) -> ChaCha8Rng {
    rng(seed, VALIDATION_STREAM)
}

fn budget_rng(seed: u64) -> ChaCha8Rng {
    rng(seed, BUDGET_STREAM)
}

/// A uniform integer in `0..n` (`n > 0`), by rejection so that no value is favoured.
fn below(rng: &mut ChaCha8Rng, n: u64) -> u64 {
    let zone = u64::MAX - (u64::MAX % n + 1) % n; // the largest multiple of n, minus one
    loop {
        let x = rng.next_u64();
        if x <= zone {
            return x % n;
        }
    }
}

/// Fisher–Yates shuffle with [`below`].
fn shuffle<T>(rng: &mut ChaCha8Rng, items: &mut [T]) {
    for i in (1..items.len()).rev() {
        let j = below(rng, i as u64 + 1) as usize;
        items.swap(i, j);
    }
}

/// A random order of the indices of `labels` in which every prefix is stratified.
///
/// Each class's indices are shuffled; the `r`-th of a class of `n` images gets the key
/// `(r + ½) / n`, and the order sorts by key, ties between classes broken by a random ranking of
/// the classes. A prefix of length `k` then holds `k · n / N` images of each class, give or take
/// one.
fn stratified_order(labels: &[i64], rng: &mut ChaCha8Rng) -> Vec<usize> {
    let mut by_class: BTreeMap<i64, Vec<usize>> = BTreeMap::new();
    for (index, &label) in labels.iter().enumerate() {
        by_class.entry(label).or_default().push(index);
    }
    let mut members: Vec<Vec<usize>> = by_class.into_values().collect();
    for class in &mut members {
        shuffle(rng, class);
    }
    let mut class_rank: Vec<usize> = (0..members.len()).collect();
    shuffle(rng, &mut class_rank);

    // (numerator 2r + 1, denominator 2n, class rank, index): key = numerator / denominator.
    let mut keyed: Vec<(u64, u64, usize, usize)> = Vec::with_capacity(labels.len());
    for (class, indices) in members.iter().enumerate() {
        let denominator = 2 * indices.len() as u64;
        for (r, &index) in indices.iter().enumerate() {
            keyed.push((2 * r as u64 + 1, denominator, class_rank[class], index));
        }
    }
    keyed.sort_unstable_by(|a, b| {
        let lhs = u128::from(a.0) * u128::from(b.1);
        let rhs = u128::from(b.0) * u128::from(a.1);
        lhs.cmp(&rhs).then(a.2.cmp(&b.2))
    });
    keyed.into_iter().map(|(_, _, _, index)| index).collect()
}

impl ImageSet {
    /// MnasNet-style proxy split: holds out `validation` images of this (training) set, chosen by
    /// `seed`, stratified by class. Returns `(train, validation)`, each in the set's original order.
    ///
    /// The validation images depend only on this set, `validation` and `seed`: draw the image
    /// budget from the returned training part with [`ImageSet::take`], never before splitting.
    /// `validation` may be 0 (an empty validation set) but must leave at least one training image.
    pub fn split_validation(&self, validation: usize, seed: u64) -> Result<(ImageSet, ImageSet), DataError> {
        let (kept, held_out) = self.split_indices(validation, seed)?;
        Ok((self.subset(&kept)?, self.subset(&held_out)?))
    }

    /// The indices behind [`ImageSet::split_validation`]: `(train, validation)`, each ascending.
    pub fn split_indices(&self, validation: usize, seed: u64) -> Result<(Vec<i64>, Vec<i64>), DataError> {
        let len = self.len();
        if validation >= len {
            return Err(DataError::InvalidArgument(format!(
                "a validation split of {validation} images leaves none of the {len} for training"
            )));
        }
        let order = stratified_order(&self.label_values()?, &mut validation_rng(seed));
        let (held_out, kept) = order.split_at(validation);
        Ok((sorted(kept), sorted(held_out)))
    }

    /// The proxy's image budget: at most `n` images chosen by `seed`, stratified by class (each
    /// class in proportion to its share, to within one image), in the set's original order. With
    /// the same seed a smaller budget is a subset of a larger one. When `n` is at least the set's
    /// size, the whole set (sharing its tensors). `n` must be at least 1.
    pub fn take(&self, n: usize, seed: u64) -> Result<ImageSet, DataError> {
        if n >= self.len() && n > 0 {
            return Ok(self.shallow_clone());
        }
        self.subset(&self.take_indices(n, seed)?)
    }

    /// The indices behind [`ImageSet::take`], ascending.
    pub fn take_indices(&self, n: usize, seed: u64) -> Result<Vec<i64>, DataError> {
        if n == 0 {
            return Err(DataError::InvalidArgument("an image budget must be at least 1 image".into()));
        }
        let order = stratified_order(&self.label_values()?, &mut budget_rng(seed));
        Ok(sorted(&order[..n.min(order.len())]))
    }
}

fn sorted(indices: &[usize]) -> Vec<i64> {
    let mut out: Vec<i64> = indices.iter().map(|&i| i as i64).collect();
    out.sort_unstable();
    out
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn below_stays_in_range_and_reaches_every_value() {
        let mut r = rng(7, 0);
        let mut seen = [0usize; 5];
        for _ in 0..1000 {
            seen[below(&mut r, 5) as usize] += 1;
        }
        assert!(seen.iter().all(|&c| c > 150), "{seen:?}");
        assert_eq!(below(&mut r, 1), 0);
    }

    #[test]
    fn every_prefix_is_stratified_to_within_one_image() {
        // Unbalanced classes: 50 of class 0, 30 of class 1, 20 of class 2.
        let labels: Vec<i64> = (0..100)
            .map(|i| {
                if i < 50 {
                    0
                } else if i < 80 {
                    1
                } else {
                    2
                }
            })
            .collect();
        let order = stratified_order(&labels, &mut validation_rng(3));
        let mut sorted = order.clone();
        sorted.sort();
        assert_eq!(sorted, (0..100).collect::<Vec<_>>(), "a permutation");
        let shares = [0.5, 0.3, 0.2];
        for k in 1..=100 {
            let mut counts = [0usize; 3];
            for &i in &order[..k] {
                counts[labels[i] as usize] += 1;
            }
            for c in 0..3 {
                let ideal = k as f64 * shares[c];
                assert!((counts[c] as f64 - ideal).abs() <= 1.0, "prefix {k}: {counts:?}");
            }
        }
    }

    #[test]
    fn seeds_and_streams_give_different_orders() {
        let labels: Vec<i64> = (0..200).map(|i| i % 4).collect();
        let a = stratified_order(&labels, &mut validation_rng(1));
        assert_eq!(a, stratified_order(&labels, &mut validation_rng(1)));
        assert_ne!(a, stratified_order(&labels, &mut validation_rng(2)));
        assert_ne!(a, stratified_order(&labels, &mut budget_rng(1)));
    }
}
