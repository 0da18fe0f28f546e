//! The analytic cost model: exact parameter count and multiply-add count of any `ArchSpec`.
//!
//! Counting follows the torchvision layout of EfficientNet/MBConv: convolutions without bias
//! followed by batch norm (2 parameters a channel; running statistics are buffers, not
//! parameters), SE as two 1×1 convolutions with bias, a linear classifier with bias.
//! Multiply-adds ("FLOPS" in the EfficientNet and MnasNet papers) count convolutions
//! (output elements × input channels per group × kernel area) and the classifier (in × out);
//! batch norm, activations, pooling and additions are not counted, as in the papers.
//! ResNet's blocks count the same way (torchvision's `BasicBlock` and `Bottleneck`: bias-free
//! convolutions with BN, the projection shortcut a strided 1×1 convolution with BN); the
//! max-pool after its stem costs nothing.
//! The golden test checks torchvision's EfficientNet-B0…B7, MobileNetV2 and ResNet-18/34/50 to
//! the unit, and MobileNetV1 against its paper (Howard et al., 2017, Table 8).

use std::fmt;

use serde::Serialize;

use crate::arch::{conv_output_size, ArchSpec, BlockSpec, Op, Shortcut};
use crate::error::{Result, SpaceError};

/// The largest parameter count and the largest multiply-add count an architecture may have:
/// 10^18. [`ArchSpec::validate`] rejects anything above it with [`SpaceError::CostOverflow`].
///
/// Counts are stored in signed 64-bit database columns, so anything above `i64::MAX`
/// (about 9.2 × 10^18) could not be recorded; the limit sits below that with a margin, and
/// nine orders of magnitude above EfficientNet-B7 (3.7 × 10^10 multiply-adds). Per-block
/// limits alone do not bound the total: 4,096 px and seven blocks of 64 layers of 16,384
/// channels already exceed `u64::MAX`.
pub const MAX_COUNT: u64 = 1_000_000_000_000_000_000;

/// Parameters and multiply-adds of a part of a network.
///
/// Counts of a validated architecture are exact. [`cost`] and [`cost_breakdown`] accept any
/// `ArchSpec`; for one that validation would reject, a count that does not fit in `u64`
/// saturates at `u64::MAX` instead of wrapping around. Adding two costs saturates too.
#[derive(Debug, Clone, Copy, Default, PartialEq, Eq, Serialize)]
pub struct Cost {
    pub params: u64,
    pub macs: u64,
}

impl std::ops::AddAssign for Cost {
    fn add_assign(&mut self, other: Cost) {
        self.params = self.params.saturating_add(other.params);
        self.macs = self.macs.saturating_add(other.macs);
    }
}

/// Which count a [`SpaceError::CostOverflow`] is about.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize)]
#[serde(rename_all = "snake_case")]
pub enum CostKind {
    Params,
    Macs,
}

impl fmt::Display for CostKind {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(match self {
            CostKind::Params => "parameters",
            CostKind::Macs => "multiply-adds",
        })
    }
}

/// The cost of one block with the spatial size it leaves behind.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize)]
pub struct BlockCost {
    pub cost: Cost,
    /// Spatial size (height = width) of the block's output.
    pub output_resolution: u32,
}

/// Costs of every part of a network and the total.
#[derive(Debug, Clone, PartialEq, Eq, Serialize)]
pub struct CostBreakdown {
    pub stem: Cost,
    pub blocks: Vec<BlockCost>,
    /// The 1×1 head convolution and its batch norm (zero without a head).
    pub head: Cost,
    pub classifier: Cost,
    pub total: Cost,
    /// Spatial size entering the global pooling.
    pub final_resolution: u32,
}

/// Counts as they are computed: in 128 bits, from `u32` factors. A layer of a block that
/// passes [`BlockSpec::validate`] counts below 2^60, so no architecture that fits in memory
/// comes near 2^128; the operations still saturate so that no input can wrap them.
#[derive(Debug, Clone, Copy, Default, PartialEq, Eq)]
pub(crate) struct WideCost {
    params: u128,
    macs: u128,
}

impl std::ops::AddAssign for WideCost {
    fn add_assign(&mut self, other: WideCost) {
        self.params = self.params.saturating_add(other.params);
        self.macs = self.macs.saturating_add(other.macs);
    }
}

impl WideCost {
    /// One of the two counts.
    pub(crate) fn count(self, what: CostKind) -> u128 {
        match what {
            CostKind::Params => self.params,
            CostKind::Macs => self.macs,
        }
    }

    /// The counts in `u64`, saturating at `u64::MAX` (only for architectures over the limit).
    fn narrow(self) -> Cost {
        let narrow = |count: u128| u64::try_from(count).unwrap_or(u64::MAX);
        Cost { params: narrow(self.params), macs: narrow(self.macs) }
    }

    /// The counts if both are within [`MAX_COUNT`], or the error that names the first above.
    fn within_limit(self) -> Result<Cost> {
        for what in [CostKind::Params, CostKind::Macs] {
            let count = self.count(what);
            if count > u128::from(MAX_COUNT) {
                return Err(SpaceError::CostOverflow { what, count, limit: MAX_COUNT });
            }
        }
        Ok(self.narrow())
    }
}

/// The product of some counts, saturating.
fn product(factors: &[u32]) -> u128 {
    factors.iter().fold(1, |acc: u128, &factor| acc.saturating_mul(u128::from(factor)))
}

/// A convolution without bias followed by batch norm.
fn conv_bn(c_in: u32, c_out: u32, kernel: u32, groups: u32, out_size: u32) -> WideCost {
    // Zero groups only arise from zero channels, which validation rejects.
    let weights = product(&[c_out, c_in.checked_div(groups).unwrap_or(0), kernel, kernel]);
    WideCost {
        params: weights.saturating_add(product(&[2, c_out])),
        macs: weights.saturating_mul(product(&[out_size, out_size])),
    }
}

/// Squeeze-and-excitation on `channels` with a `squeeze`-wide bottleneck: two 1×1 convolutions
/// with bias on the pooled 1×1 map.
fn squeeze_excite(channels: u32, squeeze: u32) -> WideCost {
    let weights = product(&[2, channels, squeeze]);
    WideCost {
        params: weights.saturating_add(u128::from(squeeze)).saturating_add(u128::from(channels)),
        macs: weights,
    }
}

/// The classifier: a linear layer with bias from the head's features to the classes.
fn classifier(features: u32, classes: u32) -> WideCost {
    let weights = product(&[features, classes]);
    WideCost { params: weights.saturating_add(u128::from(classes)), macs: weights }
}

/// The cost of one layer of a block, given its input size; returns the cost and output size.
pub fn layer_cost(block: &BlockSpec, layer: u32, input_size: u32) -> (Cost, u32) {
    let (cost, out) = wide_layer_cost(block, layer, input_size);
    (cost.narrow(), out)
}

fn wide_layer_cost(block: &BlockSpec, layer: u32, input_size: u32) -> (WideCost, u32) {
    let (c_in, c_out) = block.layer_channels(layer);
    let stride = block.layer_stride(layer);
    let k = block.kernel;
    let out = conv_output_size(input_size, k, stride);
    let mut cost = WideCost::default();
    let se = block.se_channels(c_in);
    match block.op {
        Op::MBConv => {
            let hidden = block.hidden_channels(c_in);
            if hidden != c_in {
                cost += conv_bn(c_in, hidden, 1, 1, input_size);
            }
            cost += conv_bn(hidden, hidden, k, hidden, out);
            if let Some(squeeze) = se {
                cost += squeeze_excite(hidden, squeeze);
            }
            cost += conv_bn(hidden, c_out, 1, 1, out);
        }
        Op::DepthwiseSeparable => {
            cost += conv_bn(c_in, c_in, k, c_in, out);
            if let Some(squeeze) = se {
                cost += squeeze_excite(c_in, squeeze);
            }
            cost += conv_bn(c_in, c_out, 1, 1, out);
        }
        Op::Conv => {
            cost += conv_bn(c_in, c_out, k, 1, out);
            if let Some(squeeze) = se {
                cost += squeeze_excite(c_out, squeeze);
            }
        }
        Op::Basic => {
            cost += conv_bn(c_in, c_out, k, 1, out);
            cost += conv_bn(c_out, c_out, k, 1, out);
        }
        Op::Projection => cost += conv_bn(c_in, c_out, k, 1, out),
        Op::Bottleneck => {
            let width = block.hidden_channels(c_in);
            cost += conv_bn(c_in, width, 1, 1, input_size);
            cost += conv_bn(width, width, k, 1, out);
            cost += conv_bn(width, c_out, 1, 1, out);
        }
    }
    match block.layer_shortcut(layer) {
        Shortcut::Pool { project: true } | Shortcut::Projection => cost += conv_bn(c_in, c_out, 1, 1, out),
        Shortcut::Pool { project: false } | Shortcut::Identity | Shortcut::None => {}
    }
    (cost, out)
}

/// The cost of all layers of a block, given its input size; returns the cost and output size.
pub(crate) fn wide_block_cost(block: &BlockSpec, input_size: u32) -> (WideCost, u32) {
    let (mut cost, mut size) = (WideCost::default(), input_size);
    for layer in 0..block.repeats {
        let (layer_cost, out) = wide_layer_cost(block, layer, size);
        cost += layer_cost;
        size = out;
    }
    (cost, size)
}

/// The parts of a network other than its blocks, with the total, in 128 bits.
struct WideParts {
    stem: WideCost,
    head: WideCost,
    classifier: WideCost,
    total: WideCost,
    final_resolution: u32,
}

/// The one walk over a network behind every public function here: counts every part and
/// hands each block's cost and output size to `each_block`.
fn walk(arch: &ArchSpec, mut each_block: impl FnMut(WideCost, u32)) -> WideParts {
    let stem_conv_size = arch.stem_conv_output_size();
    let stem = conv_bn(arch.input_channels, arch.stem_channels, arch.stem_kernel, 1, stem_conv_size);
    let mut size = arch.stem_output_size();
    let mut total = stem;
    for block in &arch.blocks {
        let (block_cost, out) = wide_block_cost(block, size);
        total += block_cost;
        size = out;
        each_block(block_cost, size);
    }
    let head = match arch.head_channels {
        Some(head) => conv_bn(arch.last_block_channels(), head, 1, 1, size),
        None => WideCost::default(),
    };
    let classifier = classifier(arch.classifier_channels(), arch.num_classes);
    total += head;
    total += classifier;
    WideParts { stem, head, classifier, total, final_resolution: size }
}

/// Full breakdown of an architecture's cost at its own resolution and number of classes.
pub fn cost_breakdown(arch: &ArchSpec) -> CostBreakdown {
    let mut blocks = Vec::with_capacity(arch.blocks.len());
    let parts = walk(arch, |cost, output_resolution| {
        blocks.push(BlockCost { cost: cost.narrow(), output_resolution });
    });
    CostBreakdown {
        stem: parts.stem.narrow(),
        blocks,
        head: parts.head.narrow(),
        classifier: parts.classifier.narrow(),
        total: parts.total.narrow(),
        final_resolution: parts.final_resolution,
    }
}

/// Total parameters and multiply-adds.
///
/// Exact for every architecture that passes [`ArchSpec::validate`] (both counts at most
/// [`MAX_COUNT`]); for any other, a count that does not fit in `u64` saturates at `u64::MAX`.
pub fn cost(arch: &ArchSpec) -> Cost {
    walk(arch, |_, _| {}).total.narrow()
}

/// Total parameters and multiply-adds, or [`SpaceError::CostOverflow`] when either is above
/// [`MAX_COUNT`]. [`ArchSpec::validate`] runs this check.
pub fn checked_cost(arch: &ArchSpec) -> Result<Cost> {
    walk(arch, |_, _| {}).total.within_limit()
}
