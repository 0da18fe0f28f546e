//! The analytic cost model: exact parameter count and multiply-add count of any `ArchSpec`.
//!
//! Counting follows the torchvision layout of EfficientNet/MBConv: convolutions without bias
//! followed by batch norm (2 parameters a channel; running statistics are buffers, not
//! parameters), SE as two 1×1 convolutions with bias, a linear classifier with bias.
//! Multiply-adds ("FLOPS" in the EfficientNet and MnasNet papers) count convolutions
//! (output elements × input channels per group × kernel area) and the classifier (in × out);
//! batch norm, activations, pooling and additions are not counted, as in the papers.
//! The golden test checks torchvision's EfficientNet-B0…B7 and MobileNetV2 to the unit.

use serde::Serialize;

use crate::arch::{conv_output_size, ArchSpec, BlockSpec, Op, Shortcut};

/// Parameters and multiply-adds of a part of a network.
#[derive(Debug, Clone, Copy, Default, PartialEq, Eq, Serialize)]
pub struct Cost {
    pub params: u64,
    pub macs: u64,
}

impl std::ops::AddAssign for Cost {
    fn add_assign(&mut self, other: Cost) {
        self.params += other.params;
        self.macs += other.macs;
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
    /// The 1×1 head convolution and its batch norm.
    pub head: Cost,
    pub classifier: Cost,
    pub total: Cost,
    /// Spatial size entering the global pooling.
    pub final_resolution: u32,
}

/// A convolution without bias followed by batch norm.
fn conv_bn(c_in: u32, c_out: u32, kernel: u32, groups: u32, out_size: u32) -> Cost {
    let (c_in, c_out, k, g, hw) =
        (u64::from(c_in), u64::from(c_out), u64::from(kernel), u64::from(groups), u64::from(out_size));
    let weights = c_out * (c_in / g) * k * k;
    Cost { params: weights + 2 * c_out, macs: weights * hw * hw }
}

/// Squeeze-and-excitation on `channels` with a `squeeze`-wide bottleneck: two 1×1 convolutions
/// with bias on the pooled 1×1 map.
fn squeeze_excite(channels: u32, squeeze: u32) -> Cost {
    let (c, s) = (u64::from(channels), u64::from(squeeze));
    Cost { params: 2 * c * s + s + c, macs: 2 * c * s }
}

/// The cost of one layer of a block, given its input size; returns the cost and output size.
pub fn layer_cost(block: &BlockSpec, layer: u32, input_size: u32) -> (Cost, u32) {
    let (c_in, c_out) = block.layer_channels(layer);
    let stride = block.layer_stride(layer);
    let k = block.kernel;
    let out = conv_output_size(input_size, k, stride);
    let mut cost = Cost::default();
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
    }
    if let Shortcut::Pool { project: true } = block.layer_shortcut(layer) {
        cost += conv_bn(c_in, c_out, 1, 1, out);
    }
    (cost, out)
}

/// Full breakdown of an architecture's cost at its own resolution and number of classes.
pub fn cost_breakdown(arch: &ArchSpec) -> CostBreakdown {
    let mut size = conv_output_size(arch.resolution, 3, 2);
    let stem = conv_bn(arch.input_channels, arch.stem_channels, 3, 1, size);
    let mut total = stem;
    let mut blocks = Vec::with_capacity(arch.blocks.len());
    for block in &arch.blocks {
        let mut block_cost = Cost::default();
        for layer in 0..block.repeats {
            let (cost, out) = layer_cost(block, layer, size);
            block_cost += cost;
            size = out;
        }
        total += block_cost;
        blocks.push(BlockCost { cost: block_cost, output_resolution: size });
    }
    let head = conv_bn(arch.last_block_channels(), arch.head_channels, 1, 1, size);
    let (features, classes) = (u64::from(arch.head_channels), u64::from(arch.num_classes));
    let classifier = Cost { params: features * classes + classes, macs: features * classes };
    total += head;
    total += classifier;
    CostBreakdown { stem, blocks, head, classifier, total, final_resolution: size }
}

/// Total parameters and multiply-adds.
pub fn cost(arch: &ArchSpec) -> Cost {
    cost_breakdown(arch).total
}
