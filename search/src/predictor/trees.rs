//! Gradient-boosted regression trees for squared error (J. H. Friedman, "Greedy function
//! approximation: a gradient boosting machine", Annals of Statistics 29(5), 2001, Algorithm 2
//! (LS_Boost) with shrinkage, and row subsampling as in his "Stochastic gradient boosting", 2002).
//!
//! Each tree is fitted to the residuals of the ensemble so far. Split search runs over
//! histograms of pre-binned features (at most `MAX_BINS` cut points per feature, the distinct
//! values' midpoints or quantiles), as LightGBM does, so a level of a tree costs one pass over
//! the rows per feature. A fitted tree keeps the raw thresholds, so prediction needs no bins.

use rand::seq::SliceRandom;
use rand::SeedableRng;
use rand_chacha::ChaCha8Rng;
use serde::{Deserialize, Serialize};

/// Most cut points a feature gets.
const MAX_BINS: usize = 64;

/// How an ensemble is grown.
#[derive(Debug, Clone, Copy, PartialEq, Serialize, Deserialize)]
pub struct BoostParams {
    pub trees: usize,
    pub depth: usize,
    pub learning_rate: f64,
    /// Fraction of the rows each tree sees.
    pub subsample: f64,
    /// Fewest rows in a leaf.
    pub min_leaf: usize,
}

/// One node of a tree: a split sends a row left when `x[feature] <= threshold`.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
#[serde(untagged)]
pub enum Node {
    Split { feature: usize, threshold: f64, left: usize, right: usize },
    Leaf { value: f64 },
}

/// A fitted ensemble: the base value plus every tree's leaf value.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct Boosted {
    pub params: BoostParams,
    pub base: f64,
    /// Each tree as its nodes, the root first.
    pub trees: Vec<Vec<Node>>,
}

impl Boosted {
    /// Fits the ensemble to rows `x` (all of one length) and targets `y`.
    pub fn fit(x: &[Vec<f64>], y: &[f64], params: BoostParams, seed: u64) -> Self {
        let binned = Binned::new(x);
        let base = y.iter().sum::<f64>() / y.len().max(1) as f64;
        let mut prediction = vec![base; y.len()];
        let mut rng = ChaCha8Rng::seed_from_u64(seed);
        let mut rows: Vec<usize> = (0..y.len()).collect();
        let take = ((y.len() as f64 * params.subsample).ceil() as usize).clamp(1, y.len().max(1));
        let mut trees = Vec::with_capacity(params.trees);
        for _ in 0..params.trees {
            let residual: Vec<f64> = y.iter().zip(&prediction).map(|(t, p)| t - p).collect();
            rows.shuffle(&mut rng);
            let mut grower = Grower { binned: &binned, residual: &residual, params, nodes: Vec::new() };
            grower.grow(rows[..take].to_vec(), 0);
            let tree = grower.nodes;
            for (p, row) in prediction.iter_mut().zip(x) {
                *p += predict_tree(&tree, row);
            }
            trees.push(tree);
        }
        Boosted { params, base, trees }
    }

    pub fn predict(&self, row: &[f64]) -> f64 {
        self.base + self.trees.iter().map(|t| predict_tree(t, row)).sum::<f64>()
    }

    /// Why the ensemble cannot be used on rows of `features` values, if it cannot: a node that
    /// names a feature or child out of range, or a value that is not finite.
    pub fn check(&self, features: usize) -> Result<(), String> {
        if !self.base.is_finite() {
            return Err("the base value is not finite".to_owned());
        }
        for (t, tree) in self.trees.iter().enumerate() {
            if tree.is_empty() {
                return Err(format!("tree {t} has no nodes"));
            }
            for (n, node) in tree.iter().enumerate() {
                let fine = match *node {
                    // Children after their parent: prediction always ends.
                    Node::Split { feature, threshold, left, right } => {
                        feature < features
                            && threshold.is_finite()
                            && (n + 1..tree.len()).contains(&left)
                            && (n + 1..tree.len()).contains(&right)
                    }
                    Node::Leaf { value } => value.is_finite(),
                };
                if !fine {
                    return Err(format!("tree {t} node {n} is out of range"));
                }
            }
        }
        Ok(())
    }
}

fn predict_tree(tree: &[Node], row: &[f64]) -> f64 {
    let mut at = 0;
    loop {
        match tree[at] {
            Node::Leaf { value } => return value,
            Node::Split { feature, threshold, left, right } => {
                at = if row[feature] <= threshold { left } else { right };
            }
        }
    }
}

/// Every row's bin per feature, and each feature's cut points: bin `b` holds the values in
/// `(cuts[b-1], cuts[b]]`.
struct Binned {
    cuts: Vec<Vec<f64>>,
    /// `bins[feature][row]`.
    bins: Vec<Vec<u8>>,
}

impl Binned {
    fn new(x: &[Vec<f64>]) -> Self {
        let features = x.first().map_or(0, Vec::len);
        let mut cuts = Vec::with_capacity(features);
        let mut bins = Vec::with_capacity(features);
        for f in 0..features {
            let mut values: Vec<f64> = x.iter().map(|row| row[f]).collect();
            values.sort_by(f64::total_cmp);
            values.dedup();
            let feature_cuts: Vec<f64> = if values.len() <= MAX_BINS + 1 {
                values.windows(2).map(|w| (w[0] + w[1]) / 2.0).collect()
            } else {
                let mut q: Vec<f64> =
                    (1..=MAX_BINS).map(|i| values[i * (values.len() - 1) / (MAX_BINS + 1)]).collect();
                q.dedup();
                q
            };
            bins.push(x.iter().map(|row| feature_cuts.partition_point(|&c| c < row[f]) as u8).collect());
            cuts.push(feature_cuts);
        }
        Binned { cuts, bins }
    }
}

struct Grower<'a> {
    binned: &'a Binned,
    residual: &'a [f64],
    params: BoostParams,
    nodes: Vec<Node>,
}

/// The best split of a node: feature, bin (rows with bin ≤ it go left) and the gain.
struct Split {
    feature: usize,
    bin: usize,
    gain: f64,
}

impl Grower<'_> {
    /// Grows the subtree of `rows` at `depth` and returns its node's index.
    fn grow(&mut self, rows: Vec<usize>, depth: usize) -> usize {
        let at = self.nodes.len();
        let mean = rows.iter().map(|&r| self.residual[r]).sum::<f64>() / rows.len().max(1) as f64;
        self.nodes.push(Node::Leaf { value: mean * self.params.learning_rate });
        let split = match depth < self.params.depth {
            true => self.best_split(&rows),
            false => None,
        };
        let Some(split) = split else { return at };
        let bins = &self.binned.bins[split.feature];
        let (left, right): (Vec<usize>, Vec<usize>) =
            rows.into_iter().partition(|&r| usize::from(bins[r]) <= split.bin);
        let threshold = self.binned.cuts[split.feature][split.bin];
        let left = self.grow(left, depth + 1);
        let right = self.grow(right, depth + 1);
        self.nodes[at] = Node::Split { feature: split.feature, threshold, left, right };
        at
    }

    /// The split of `rows` that most reduces the squared error, leaving `min_leaf` rows a side.
    fn best_split(&self, rows: &[usize]) -> Option<Split> {
        let total: f64 = rows.iter().map(|&r| self.residual[r]).sum();
        let n = rows.len();
        let parent = total * total / n as f64;
        let mut best: Option<Split> = None;
        for (feature, cuts) in self.binned.cuts.iter().enumerate() {
            let mut sums = vec![0.0; cuts.len() + 1];
            let mut counts = vec![0usize; cuts.len() + 1];
            let bins = &self.binned.bins[feature];
            for &r in rows {
                sums[usize::from(bins[r])] += self.residual[r];
                counts[usize::from(bins[r])] += 1;
            }
            let (mut left_sum, mut left_n) = (0.0, 0);
            for bin in 0..cuts.len() {
                left_sum += sums[bin];
                left_n += counts[bin];
                let right_n = n - left_n;
                if left_n < self.params.min_leaf || right_n < self.params.min_leaf {
                    continue;
                }
                let right_sum = total - left_sum;
                let gain =
                    left_sum * left_sum / left_n as f64 + right_sum * right_sum / right_n as f64 - parent;
                if gain > 1e-15 && best.as_ref().is_none_or(|b| gain > b.gain) {
                    best = Some(Split { feature, bin, gain });
                }
            }
        }
        best
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn boosting_learns_a_step_and_an_interaction() {
        // y = 1 when x0 > 0.5 and x1 > 0.5, else 0; x2 is noise the trees should ignore.
        let mut rng = ChaCha8Rng::seed_from_u64(1);
        let x: Vec<Vec<f64>> =
            (0..400).map(|_| (0..3).map(|_| rand::Rng::random::<f64>(&mut rng)).collect()).collect();
        let y: Vec<f64> = x.iter().map(|r| f64::from(u8::from(r[0] > 0.5 && r[1] > 0.5))).collect();
        let params = BoostParams { trees: 60, depth: 2, learning_rate: 0.3, subsample: 1.0, min_leaf: 2 };
        let model = Boosted::fit(&x, &y, params, 0);
        assert!(model.check(3).is_ok());
        assert!(model.predict(&[0.9, 0.9, 0.1]) > 0.9);
        assert!(model.predict(&[0.9, 0.1, 0.9]) < 0.1);
        assert!(model.predict(&[0.1, 0.9, 0.5]) < 0.1);
        assert!(model.check(2).is_err(), "a feature out of range is found");
    }
}
