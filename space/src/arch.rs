//! `BlockSpec` and `ArchSpec`: a convolutional network as plain data.
//!
//! The network layout follows EfficientNet (Tan & Le, 2019, §4 and Table 1) and the MnasNet
//! factorized hierarchical space (Tan et al., 2019, §4.1): a 3×3 stride-2 stem, a list of blocks
//! each repeating one layer `repeats` times (only the first layer strides or changes the channel
//! count), a 1×1 head convolution, global average pooling, dropout and a linear classifier.
//!
//! The same data also describes the baselines of EfficientNet's Table 3: ResNet (He et al.,
//! 2016, Table 1, in torchvision's layout: a 7×7 stride-2 stem, a 3×3 stride-2 max-pool, basic or
//! bottleneck residual blocks, no head convolution) and MobileNetV1 (Howard et al., 2017,
//! Table 1: depthwise-separable layers without residuals, no head convolution), both with ReLU.
//! The fields that only these need (`stem_kernel`, `stem_max_pool`, a missing head,
//! `activation`; `stem_stride` for CIFAR-style networks) default to EfficientNet's values, and neither the JSON nor the canonical form
//! of an architecture mentions them at their defaults, so older files and hashes stay valid.

use std::fmt;

use serde::{Deserialize, Serialize};

use crate::error::{Result, SpaceError};

/// The largest channel count, repeat count, resolution and expansion accepted. They catch
/// typos such as `o24000` and bound the cost of each layer; the total, which also grows with
/// the number of blocks, is bounded by [`crate::cost::MAX_COUNT`] in [`ArchSpec::validate`].
pub const MAX_CHANNELS: u32 = 16_384;
pub const MAX_REPEATS: u32 = 64;
pub const MAX_RESOLUTION: u32 = 4_096;
pub const MAX_EXPANSION: u32 = 16;

/// The operator a block repeats (MnasNet §4.1, "ConvOp").
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash, PartialOrd, Ord, Serialize, Deserialize)]
#[serde(rename_all = "snake_case")]
pub enum Op {
    /// Regular k×k convolution, batch norm, SiLU (block-string prefix `cn_`).
    Conv,
    /// Depthwise-separable convolution as in MobileNetV1: depthwise k×k, BN, SiLU, optional SE,
    /// pointwise 1×1, BN, SiLU (prefix `ds_`).
    DepthwiseSeparable,
    /// Mobile inverted bottleneck (MobileNetV2/EfficientNet): optional 1×1 expansion, depthwise
    /// k×k, optional SE, linear 1×1 projection (the default; prefix `ir_` is accepted).
    MBConv,
    /// ResNet's basic block (He et al., 2016, Figure 5 left): k×k conv, BN, activation, k×k
    /// conv, BN, added to the shortcut, activation (prefix `basic_`, timm's name for it).
    Basic,
    /// ResNet's bottleneck block (He et al., 2016, Figure 5 right; the stride on the k×k conv as
    /// torchvision's "v1.5"): 1×1 reduce to `out / e`, BN, activation, k×k conv, BN,
    /// activation, 1×1 expand to `out`, BN, added to the shortcut, activation (prefix `bottle_`,
    /// timm's name; `e` is the ratio of output to bottleneck width, 4 in ResNet).
    Bottleneck,
    /// A k×k convolution and batch norm without activation (prefix `proj_`): what a skipped
    /// layer becomes where its shape changes. NAS-Bench-Macro (Su et al., 2021) replaces an
    /// identity on a stage's first, strided layer by a 1×1 stride-2 convolution and BN.
    Projection,
}

impl Op {
    /// The block-string prefix; MBConv has none in the TF style.
    pub fn prefix(self) -> &'static str {
        match self {
            Op::Conv => "cn",
            Op::DepthwiseSeparable => "ds",
            Op::MBConv => "ir",
            Op::Basic => "basic",
            Op::Bottleneck => "bottle",
            Op::Projection => "proj",
        }
    }

    /// A short human name with the expansion for MBConv (`MBConv6`).
    pub fn display_name(self, expansion: u32) -> String {
        match self {
            Op::Conv => "Conv".to_owned(),
            Op::DepthwiseSeparable => "DSConv".to_owned(),
            Op::MBConv => format!("MBConv{expansion}"),
            Op::Basic => "Basic".to_owned(),
            Op::Bottleneck => "Bottleneck".to_owned(),
            Op::Projection => "Proj".to_owned(),
        }
    }

    /// ResNet's blocks: the activation follows the addition, and where the first layer changes
    /// the shape the shortcut is a projection instead of nothing.
    pub fn is_residual(self) -> bool {
        matches!(self, Op::Basic | Op::Bottleneck)
    }

    /// Whether `e` is a field of the operator (and printed in its block string).
    pub fn has_expansion(self) -> bool {
        matches!(self, Op::MBConv | Op::Bottleneck)
    }
}

/// The activation function of a whole network (stem, blocks, head and SE).
#[derive(Debug, Clone, Copy, Default, PartialEq, Eq, Hash, Serialize, Deserialize)]
#[serde(rename_all = "snake_case")]
pub enum Activation {
    /// SiLU (swish), EfficientNet's and MnasNet's search space's (the default).
    #[default]
    Silu,
    /// ReLU, ResNet's and MobileNetV1's.
    Relu,
}

impl Activation {
    /// The name in JSON and in the canonical form.
    pub fn name(self) -> &'static str {
        match self {
            Activation::Silu => "silu",
            Activation::Relu => "relu",
        }
    }
}

/// The residual connection of a block (MnasNet §4.1, "SkipOp").
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash, PartialOrd, Ord, Serialize, Deserialize)]
#[serde(rename_all = "snake_case")]
pub enum Skip {
    /// No residual connection (`noskip`).
    None,
    /// Identity residual on every layer whose input and output shapes agree (the default).
    Identity,
    /// Identity where shapes agree; where the first layer strides or changes channels, the
    /// shortcut is a k=s, s=s average pool followed by a 1×1 convolution and BN when the channel
    /// count changes (`poolskip`).
    Pool,
}

// `Skip::Identity` on a residual operator (basic, bottleneck) also covers the layer whose shape
// changes: it gets ResNet's projection shortcut, a strided 1×1 convolution and BN ("option B",
// He et al., 2016, §3.3), as torchvision's `downsample`.

/// One block: `repeats` layers of one operator. Only the first layer uses `stride` and maps
/// `in_channels` to `out_channels`; the others are stride 1, `out_channels` to `out_channels`.
#[derive(Debug, Clone, PartialEq)]
pub struct BlockSpec {
    pub op: Op,
    pub repeats: u32,
    pub kernel: u32,
    pub stride: u32,
    /// Expansion ratio: of the MBConv hidden width over the input (`c_in × e`), of a
    /// bottleneck's output over its bottleneck width (`out / e`); always 1 for the others.
    pub expansion: u32,
    pub in_channels: u32,
    pub out_channels: u32,
    /// Squeeze-and-excitation ratio of the block's input channels; 0 means no SE.
    pub se_ratio: f64,
    pub skip: Skip,
}

impl BlockSpec {
    /// The channels of layer `layer` (0-based) of this block: (input, output).
    pub fn layer_channels(&self, layer: u32) -> (u32, u32) {
        if layer == 0 {
            (self.in_channels, self.out_channels)
        } else {
            (self.out_channels, self.out_channels)
        }
    }

    /// The stride of layer `layer` (0-based).
    pub fn layer_stride(&self, layer: u32) -> u32 {
        if layer == 0 {
            self.stride
        } else {
            1
        }
    }

    /// Width of the squeeze in SE as the reference builders compute it (`max(1, int(c_in × r))`),
    /// or `None` without SE.
    pub fn se_channels(&self, layer_in: u32) -> Option<u32> {
        (self.se_ratio > 0.0).then(|| ((f64::from(layer_in) * self.se_ratio) as u32).max(1))
    }

    /// Hidden width of a layer with input `c_in`: `c_in × e` for MBConv, the bottleneck width
    /// `out / e` for a bottleneck (the same in every layer), `c_in` for the others.
    pub fn hidden_channels(&self, layer_in: u32) -> u32 {
        match self.op {
            // Saturating only matters for unvalidated blocks: validated ones are at most 2^18.
            Op::MBConv => layer_in.saturating_mul(self.expansion),
            Op::Bottleneck => self.out_channels.checked_div(self.expansion).unwrap_or(0),
            Op::Conv | Op::DepthwiseSeparable | Op::Basic | Op::Projection => layer_in,
        }
    }

    /// What kind of shortcut a layer gets.
    pub fn layer_shortcut(&self, layer: u32) -> Shortcut {
        let (c_in, c_out) = self.layer_channels(layer);
        let shapes_agree = self.layer_stride(layer) == 1 && c_in == c_out;
        match self.skip {
            Skip::None => Shortcut::None,
            Skip::Identity if shapes_agree => Shortcut::Identity,
            Skip::Identity if self.op.is_residual() => Shortcut::Projection,
            Skip::Identity => Shortcut::None,
            Skip::Pool if shapes_agree => Shortcut::Identity,
            Skip::Pool => Shortcut::Pool { project: c_in != c_out },
        }
    }

    /// Checks every field; the error names the field and the value.
    pub fn validate(&self) -> Result<()> {
        // The block's text is only needed for an error; formatting it eagerly would dominate
        // the cost of validating sampled candidates.
        let bad =
            |reason: String| Err(SpaceError::BlockString { block: crate::codec::format_block(self), reason });
        if !(1..=7).contains(&self.kernel) || self.kernel % 2 == 0 {
            return bad(format!(
                "kernel {} in token \"k{}\" (kernels are odd, 1 to 7)",
                self.kernel, self.kernel
            ));
        }
        if !(1..=2).contains(&self.stride) {
            return bad(format!("stride {} in token \"s{}\" (strides are 1 or 2)", self.stride, self.stride));
        }
        if !(1..=MAX_REPEATS).contains(&self.repeats) {
            return bad(format!(
                "repeats {} in token \"r{}\" (1 to {MAX_REPEATS})",
                self.repeats, self.repeats
            ));
        }
        for (token, value) in [("i", self.in_channels), ("o", self.out_channels)] {
            if !(1..=MAX_CHANNELS).contains(&value) {
                return bad(format!("channels {value} in token \"{token}{value}\" (1 to {MAX_CHANNELS})"));
            }
        }
        match self.op {
            Op::MBConv if !(1..=MAX_EXPANSION).contains(&self.expansion) => {
                return bad(format!(
                    "expansion {} in token \"e{}\" (1 to {MAX_EXPANSION})",
                    self.expansion, self.expansion
                ));
            }
            Op::Bottleneck
                if !(1..=MAX_EXPANSION).contains(&self.expansion)
                    || self.out_channels % self.expansion != 0 =>
            {
                return bad(format!(
                    "expansion {} in token \"e{}\" (1 to {MAX_EXPANSION}, dividing the output channels {})",
                    self.expansion, self.expansion, self.out_channels
                ));
            }
            Op::Conv | Op::DepthwiseSeparable | Op::Basic | Op::Projection if self.expansion != 1 => {
                return bad(format!(
                    "expansion {} in token \"e{}\": only MBConv and bottleneck blocks expand",
                    self.expansion, self.expansion
                ));
            }
            _ => {}
        }
        if !(self.se_ratio.is_finite() && (0.0..=1.0).contains(&self.se_ratio)) {
            return bad(format!("SE ratio {} in token \"se{}\" (0 to 1)", self.se_ratio, self.se_ratio));
        }
        if (self.op.is_residual() || self.op == Op::Projection) && self.se_ratio != 0.0 {
            // SE-ResNet places SE differently (on the output, before the addition); not built.
            return bad(format!(
                "token \"se{}\": residual and projection blocks ({}_) take no squeeze-and-excitation",
                self.se_ratio,
                self.op.prefix()
            ));
        }
        Ok(())
    }
}

/// The shortcut a single layer gets, derived from its block's `Skip` and shapes.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Shortcut {
    None,
    Identity,
    /// Average pool (kernel = stride = the layer's stride) and, with `project`, a 1×1 conv + BN.
    Pool {
        project: bool,
    },
    /// A 1×1 convolution with the layer's stride and BN (ResNet's projection shortcut).
    Projection,
}

/// A whole network: stem, blocks, head and classifier, with the input it is built for.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
#[serde(try_from = "ArchSpecData", into = "ArchSpecData")]
pub struct ArchSpec {
    pub input_channels: u32,
    pub resolution: u32,
    pub num_classes: u32,
    pub stem_channels: u32,
    /// The stem convolution's kernel (odd, 1–7): 3, or ResNet's 7.
    pub stem_kernel: u32,
    /// The stem convolution's stride: EfficientNet's 2, or 1 for small images (CIFAR-style
    /// networks such as NAS-Bench-Macro's keep 32 px inputs at full size through the stem).
    pub stem_stride: u32,
    /// A 3×3 stride-2 max-pool after the stem (ResNet's).
    pub stem_max_pool: bool,
    pub blocks: Vec<BlockSpec>,
    /// The 1×1 head convolution's channels, or `None` for no head: the last block's output
    /// goes straight to pooling and the classifier (ResNet, MobileNetV1).
    pub head_channels: Option<u32>,
    pub activation: Activation,
    pub dropout: f64,
    pub drop_connect: f64,
}

/// Defaults shared by every preset and by architectures given as bare block strings.
pub mod defaults {
    pub const INPUT_CHANNELS: u32 = 3;
    pub const RESOLUTION: u32 = 224;
    pub const NUM_CLASSES: u32 = 1000;
    pub const STEM_CHANNELS: u32 = 32;
    pub const STEM_KERNEL: u32 = 3;
    pub const STEM_STRIDE: u32 = 2;
    pub const HEAD_CHANNELS: u32 = 1280;
    pub const DROPOUT: f64 = 0.2;
    pub const DROP_CONNECT: f64 = 0.2;
}

impl ArchSpec {
    /// An architecture with the EfficientNet defaults around the given blocks.
    pub fn from_blocks(blocks: Vec<BlockSpec>) -> Result<Self> {
        let arch = ArchSpec {
            input_channels: defaults::INPUT_CHANNELS,
            resolution: defaults::RESOLUTION,
            num_classes: defaults::NUM_CLASSES,
            stem_channels: defaults::STEM_CHANNELS,
            stem_kernel: defaults::STEM_KERNEL,
            stem_stride: defaults::STEM_STRIDE,
            stem_max_pool: false,
            blocks,
            head_channels: Some(defaults::HEAD_CHANNELS),
            activation: Activation::Silu,
            dropout: defaults::DROPOUT,
            drop_connect: defaults::DROP_CONNECT,
        };
        arch.validate()?;
        Ok(arch)
    }

    /// Checks every field, that each block's input is the previous block's output, and that
    /// the parameter and multiply-add counts are at most [`crate::cost::MAX_COUNT`]
    /// ([`SpaceError::CostOverflow`] otherwise).
    pub fn validate(&self) -> Result<()> {
        self.validate_fields()?;
        self.validate_blocks()?;
        crate::cost::checked_cost(self).map(|_| ())
    }

    /// The skeleton's fields: channels, resolution, classes and regularisation.
    fn validate_fields(&self) -> Result<()> {
        let positive = |field: &str, value: u32, max: u32| {
            if (1..=max).contains(&value) {
                Ok(())
            } else {
                Err(SpaceError::invalid(field, format!("{value} is out of range (1 to {max})")))
            }
        };
        positive("input_channels", self.input_channels, MAX_CHANNELS)?;
        positive("resolution", self.resolution, MAX_RESOLUTION)?;
        positive("num_classes", self.num_classes, 1_000_000)?;
        positive("stem_channels", self.stem_channels, MAX_CHANNELS)?;
        if let Some(head) = self.head_channels {
            positive("head_channels", head, MAX_CHANNELS)?;
        }
        if !(1..=7).contains(&self.stem_kernel) || self.stem_kernel % 2 == 0 {
            return Err(SpaceError::invalid(
                "stem_kernel",
                format!("{} is not an odd kernel from 1 to 7", self.stem_kernel),
            ));
        }
        if !(1..=2).contains(&self.stem_stride) {
            return Err(SpaceError::invalid(
                "stem_stride",
                format!("{} is not a stride of 1 or 2", self.stem_stride),
            ));
        }
        for (field, value) in [("dropout", self.dropout), ("drop_connect", self.drop_connect)] {
            if !(value.is_finite() && (0.0..1.0).contains(&value)) {
                return Err(SpaceError::invalid(field, format!("{value} is out of range (0 to below 1)")));
            }
        }
        Ok(())
    }

    /// Every block, and the channel chain from the stem through the blocks.
    fn validate_blocks(&self) -> Result<()> {
        if self.blocks.is_empty() {
            return Err(SpaceError::invalid("blocks", "an architecture needs at least one block"));
        }
        let mut channels = self.stem_channels;
        for (index, block) in self.blocks.iter().enumerate() {
            block.validate()?;
            if block.in_channels != channels {
                return Err(SpaceError::invalid(
                    format!("blocks[{index}]"),
                    format!(
                        "block {:?} takes {} input channels but the previous layer gives {channels}",
                        crate::codec::format_block(block),
                        block.in_channels
                    ),
                ));
            }
            channels = block.out_channels;
        }
        Ok(())
    }

    /// Total number of layers over all blocks.
    pub fn num_layers(&self) -> u32 {
        self.blocks.iter().map(|b| b.repeats).sum()
    }

    /// The channel count entering the head.
    pub fn last_block_channels(&self) -> u32 {
        self.blocks.last().map_or(self.stem_channels, |b| b.out_channels)
    }

    /// The channel count entering the pooling and the classifier: the head's, or without a
    /// head the last block's.
    pub fn classifier_channels(&self) -> u32 {
        self.head_channels.unwrap_or_else(|| self.last_block_channels())
    }

    /// The spatial size the stem convolution alone leaves.
    pub fn stem_conv_output_size(&self) -> u32 {
        conv_output_size(self.resolution, self.stem_kernel, self.stem_stride)
    }

    /// The spatial size the stem (its convolution and the max-pool if any) leaves.
    pub fn stem_output_size(&self) -> u32 {
        let size = self.stem_conv_output_size();
        if self.stem_max_pool {
            // 3×3, stride 2, padding 1: the same arithmetic as a convolution.
            conv_output_size(size, 3, 2)
        } else {
            size
        }
    }

    /// The block strings in the TF style, one per block.
    pub fn block_strings(&self) -> Vec<String> {
        self.blocks.iter().map(crate::codec::format_block).collect()
    }
}

/// Convolution output size with the symmetric `(k - 1) / 2` padding torchvision uses.
///
/// Defined for any input: out-of-range values (kernel 0, stride 0, sizes near `u32::MAX`),
/// which validation rejects, saturate instead of panicking in the cost model.
pub fn conv_output_size(input: u32, kernel: u32, stride: u32) -> u32 {
    let padding = kernel.saturating_sub(1) / 2;
    (input.saturating_add(2 * padding).saturating_sub(kernel) / stride.max(1)).saturating_add(1)
}

/// The serialised form: blocks travel as block strings, the lingua franca of the project.
#[derive(Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
struct ArchSpecData {
    #[serde(default = "default_input_channels")]
    input_channels: u32,
    #[serde(default = "default_resolution")]
    resolution: u32,
    #[serde(default = "default_num_classes")]
    num_classes: u32,
    #[serde(default = "default_stem_channels")]
    stem_channels: u32,
    #[serde(default = "default_stem_kernel", skip_serializing_if = "is_default_stem_kernel")]
    stem_kernel: u32,
    #[serde(default = "default_stem_stride", skip_serializing_if = "is_default_stem_stride")]
    stem_stride: u32,
    #[serde(default, skip_serializing_if = "std::ops::Not::not")]
    stem_max_pool: bool,
    blocks: Vec<String>,
    /// `null` for no head; absent for EfficientNet's 1280.
    #[serde(default = "default_head")]
    head_channels: Option<u32>,
    #[serde(default, skip_serializing_if = "is_default_activation")]
    activation: Activation,
    #[serde(default = "default_dropout")]
    dropout: f64,
    #[serde(default = "default_drop_connect")]
    drop_connect: f64,
}

pub(crate) fn default_input_channels() -> u32 {
    defaults::INPUT_CHANNELS
}
pub(crate) fn default_resolution() -> u32 {
    defaults::RESOLUTION
}
pub(crate) fn default_num_classes() -> u32 {
    defaults::NUM_CLASSES
}
pub(crate) fn default_stem_channels() -> u32 {
    defaults::STEM_CHANNELS
}
pub(crate) fn default_head_channels() -> u32 {
    defaults::HEAD_CHANNELS
}
fn default_head() -> Option<u32> {
    Some(defaults::HEAD_CHANNELS)
}
fn default_stem_kernel() -> u32 {
    defaults::STEM_KERNEL
}
fn is_default_stem_kernel(kernel: &u32) -> bool {
    *kernel == defaults::STEM_KERNEL
}
fn default_stem_stride() -> u32 {
    defaults::STEM_STRIDE
}
fn is_default_stem_stride(stride: &u32) -> bool {
    *stride == defaults::STEM_STRIDE
}
fn is_default_activation(activation: &Activation) -> bool {
    *activation == Activation::default()
}
pub(crate) fn default_dropout() -> f64 {
    defaults::DROPOUT
}
pub(crate) fn default_drop_connect() -> f64 {
    defaults::DROP_CONNECT
}

impl TryFrom<ArchSpecData> for ArchSpec {
    type Error = SpaceError;

    fn try_from(data: ArchSpecData) -> Result<Self> {
        let blocks =
            crate::codec::parse_block_chain(data.blocks.iter().map(String::as_str), data.stem_channels)?;
        let arch = ArchSpec {
            input_channels: data.input_channels,
            resolution: data.resolution,
            num_classes: data.num_classes,
            stem_channels: data.stem_channels,
            stem_kernel: data.stem_kernel,
            stem_stride: data.stem_stride,
            stem_max_pool: data.stem_max_pool,
            blocks,
            head_channels: data.head_channels,
            activation: data.activation,
            dropout: data.dropout,
            drop_connect: data.drop_connect,
        };
        arch.validate()?;
        Ok(arch)
    }
}

impl From<ArchSpec> for ArchSpecData {
    fn from(arch: ArchSpec) -> Self {
        ArchSpecData {
            input_channels: arch.input_channels,
            resolution: arch.resolution,
            num_classes: arch.num_classes,
            stem_channels: arch.stem_channels,
            stem_kernel: arch.stem_kernel,
            stem_stride: arch.stem_stride,
            stem_max_pool: arch.stem_max_pool,
            blocks: arch.block_strings(),
            head_channels: arch.head_channels,
            activation: arch.activation,
            dropout: arch.dropout,
            drop_connect: arch.drop_connect,
        }
    }
}

impl fmt::Display for BlockSpec {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(&crate::codec::format_block(self))
    }
}
