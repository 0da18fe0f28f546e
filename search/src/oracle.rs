//! The oracle evaluator: a synthetic objective computed from the architecture alone, in
//! microseconds, with a known best architecture. It exists to test controllers and to dry-run a
//! search configuration; everything else (store, progress, resume) is shared with real training.
//!
//! Definition. The oracle has a target architecture (EfficientNet-B0 when the space contains it,
//! otherwise the member the space decodes from all-zero tokens). Blocks are compared position by
//! position, six decisions each, every decision scoring a credit in [0, 1]:
//! - operator: 1 when operator and expansion agree, ½ when both are MBConv with another expansion;
//! - kernel, SE ratio, skip: 1 when equal;
//! - output channels: `1 − |log2(c / c_target)|`, floored at 0;
//! - layers: `1 − |n − n_target| / 2`, floored at 0.
//!
//! The similarity `S` is the mean credit over the target's decisions (a missing block scores 0),
//! and the oracle's accuracy is `0.5 + 0.45·S`: 0.95 exactly at the target and lower anywhere
//! else. With a hard constraint whose target T is at least the target's multiply-adds, the
//! target is therefore the unique best reward.

use effnas_space::{presets, ArchSpec, BlockSpec, Op, SearchSpace};

/// Accuracy the oracle gives its target.
pub const TARGET_ACCURACY: f64 = 0.95;

#[derive(Debug, Clone)]
pub struct Oracle {
    target: ArchSpec,
}

impl Oracle {
    /// The oracle over `space`, targeting EfficientNet-B0 where the space contains it.
    pub fn for_space(space: &SearchSpace) -> Self {
        let b0 = presets::efficientnet_b0();
        let target = match space.encode(&b0) {
            Ok(tokens) => space.decode(&tokens),
            Err(_) => space.decode(&vec![0; space.num_tokens()]),
        };
        // A validated space always decodes its all-zero tokens.
        Oracle { target: target.unwrap_or(b0) }
    }

    pub fn with_target(target: ArchSpec) -> Self {
        Oracle { target }
    }

    pub fn target(&self) -> &ArchSpec {
        &self.target
    }

    /// Similarity to the target in [0, 1].
    pub fn similarity(&self, arch: &ArchSpec) -> f64 {
        let decisions = 6.0 * self.target.blocks.len() as f64;
        let credit: f64 = self
            .target
            .blocks
            .iter()
            .zip(&arch.blocks)
            .map(|(target, block)| block_credit(target, block))
            .sum();
        credit / decisions
    }

    /// The oracle's accuracy, `0.5 + 0.45 × similarity`.
    pub fn accuracy(&self, arch: &ArchSpec) -> f64 {
        0.5 + (TARGET_ACCURACY - 0.5) * self.similarity(arch)
    }
}

fn block_credit(target: &BlockSpec, block: &BlockSpec) -> f64 {
    let same = |equal: bool| if equal { 1.0 } else { 0.0 };
    let op = if target.op == block.op && target.expansion == block.expansion {
        1.0
    } else if target.op == Op::MBConv && block.op == Op::MBConv {
        0.5
    } else {
        0.0
    };
    let channels = 1.0 - (f64::from(block.out_channels) / f64::from(target.out_channels)).log2().abs();
    let layers = 1.0 - (f64::from(block.repeats) - f64::from(target.repeats)).abs() / 2.0;
    op + same(target.kernel == block.kernel)
        + same(target.se_ratio == block.se_ratio)
        + same(target.skip == block.skip)
        + channels.max(0.0)
        + layers.max(0.0)
}

/// The oracle of the compound stage: a synthetic accuracy of a scaled network as a function of
/// how much deeper, wider and larger its input is than the base, read off the architecture
/// (total layers, head channels, resolution). It peaks at the paper's α = 1.2, β = 1.1,
/// γ = 1.15 at φ = 1: `0.5 + 0.45 · exp(−‖(d, w, r) − (1.2, 1.1, 1.15)‖² / 0.1)`, so the grid
/// point whose rounded ratios come nearest those coefficients is the known winner.
#[derive(Debug, Clone)]
pub struct CompoundOracle {
    base: ArchSpec,
}

/// Where the compound oracle peaks.
pub const COMPOUND_OPTIMUM: (f64, f64, f64) = (1.2, 1.1, 1.15);

impl CompoundOracle {
    pub fn new(base: ArchSpec) -> Self {
        CompoundOracle { base }
    }

    /// The depth, width and resolution of `arch` relative to the base.
    pub fn ratios(&self, arch: &ArchSpec) -> (f64, f64, f64) {
        (
            f64::from(arch.num_layers()) / f64::from(self.base.num_layers().max(1)),
            f64::from(arch.classifier_channels()) / f64::from(self.base.classifier_channels().max(1)),
            f64::from(arch.resolution) / f64::from(self.base.resolution.max(1)),
        )
    }

    pub fn accuracy(&self, arch: &ArchSpec) -> f64 {
        let (d, w, r) = self.ratios(arch);
        let (a, b, g) = COMPOUND_OPTIMUM;
        let distance = (d - a).powi(2) + (w - b).powi(2) + (r - g).powi(2);
        0.5 + (TARGET_ACCURACY - 0.5) * (-distance / 0.1).exp()
    }
}

#[cfg(test)]
#[allow(clippy::unwrap_used)] // a failing unwrap is a failing test
mod tests {
    use rand::SeedableRng;

    use super::*;

    #[test]
    fn the_target_is_the_unique_best() {
        let space = SearchSpace::default_space();
        let oracle = Oracle::for_space(&space);
        assert_eq!(oracle.target(), &presets::efficientnet_b0());
        assert!((oracle.accuracy(oracle.target()) - TARGET_ACCURACY).abs() < 1e-12);
        let mut rng = rand_chacha::ChaCha8Rng::seed_from_u64(1);
        let target_tokens = space.encode(oracle.target()).unwrap();
        for _ in 0..2000 {
            let tokens = space.mutate(&target_tokens, &mut rng);
            let accuracy = oracle.accuracy(&space.decode(&tokens).unwrap());
            assert!(accuracy < TARGET_ACCURACY && accuracy > 0.5, "{accuracy}");
        }
    }

    #[test]
    fn spaces_without_b0_target_a_member() {
        let space = SearchSpace::mnasnet();
        let oracle = Oracle::for_space(&space);
        assert!(space.contains(oracle.target()));
    }
}
