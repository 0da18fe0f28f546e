//! The factorized hierarchical search space of MnasNet (§4.1), as data.
//!
//! A space is a fixed skeleton (stem, head, input, number of blocks and their strides) and, per
//! block, independent choice lists: operator, kernel, SE ratio, skip, output channels and
//! layer count. An architecture in the space is a sequence of choice indices ("tokens"), six
//! per block in the order of [`Decision::ALL`]; this is what the RL controller emits and what
//! evolution mutates.

use std::collections::BTreeSet;
use std::fmt;
use std::path::Path;
use std::str::FromStr;

use rand::seq::IndexedRandom;
use rand::Rng;
use serde::{Deserialize, Deserializer, Serialize, Serializer};

use crate::arch::{
    conv_output_size, default_drop_connect, default_dropout, default_head_channels, default_input_channels,
    default_num_classes, default_resolution, default_stem_channels, defaults, Activation, ArchSpec,
    BlockSpec, Op, Skip,
};
use crate::cost::{wide_block_cost, CostKind};
use crate::error::{Result, SpaceError};

/// An operator choice: the operator with its expansion (`conv`, `dsconv`, `mbconv1/3/6`),
/// optionally with its own kernel (`mbconv6_k5`: the block's kernel choice does not apply), or
/// `skip`, no layer at all.
///
/// A skipped block is the identity where its shape does not change (stride 1, output channels
/// equal to its input), and then it is absent from the architecture, so that spaces which skip
/// layers in different places name one network once; where the shape changes it becomes one
/// 1×1 convolution with the block's stride and BN, without activation ([`Op::Projection`], as
/// NAS-Bench-Macro's identity on a stage's first layer). Spaces with per-layer choices (FBNet,
/// ProxylessNAS, NAS-Bench-Macro) write each layer as a block of one layer whose operators
/// include `skip`.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash, PartialOrd, Ord)]
pub enum OpChoice {
    Layer { op: Op, expansion: u32, kernel: Option<u32> },
    Skip,
}

impl OpChoice {
    /// An operator with its expansion, taking the block's kernel choice.
    pub const fn layer(op: Op, expansion: u32) -> Self {
        OpChoice::Layer { op, expansion, kernel: None }
    }

    /// Whether this choice, in a block of the given stride, produces `block`.
    fn matches(self, block: &BlockSpec, stride: u32) -> bool {
        match self {
            OpChoice::Layer { op, expansion, kernel } => {
                op == block.op && expansion == block.expansion && kernel.is_none_or(|k| k == block.kernel)
            }
            OpChoice::Skip => *block == skip_projection(block.in_channels, block.out_channels, stride),
        }
    }
}

/// What a skipped block becomes where its shape changes: one 1×1 convolution with BN.
fn skip_projection(in_channels: u32, out_channels: u32, stride: u32) -> BlockSpec {
    BlockSpec {
        op: Op::Projection,
        repeats: 1,
        kernel: 1,
        stride,
        expansion: 1,
        in_channels,
        out_channels,
        se_ratio: 0.0,
        skip: Skip::None,
    }
}

impl fmt::Display for OpChoice {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        let OpChoice::Layer { op, expansion, kernel } = *self else {
            return f.write_str("skip");
        };
        match op {
            Op::Conv => f.write_str("conv")?,
            Op::DepthwiseSeparable => f.write_str("dsconv")?,
            Op::MBConv => write!(f, "mbconv{expansion}")?,
            // Not choices of a space (`from_str` refuses them); named for messages.
            Op::Basic => f.write_str("basic")?,
            Op::Bottleneck => write!(f, "bottleneck{expansion}")?,
            Op::Projection => f.write_str("proj")?,
        }
        match kernel {
            Some(k) => write!(f, "_k{k}"),
            None => Ok(()),
        }
    }
}

impl FromStr for OpChoice {
    type Err = String;

    fn from_str(text: &str) -> Result<Self, String> {
        const KNOWN: &str = "skip, conv, dsconv, mbconv1 … mbconv16, each optionally with _k1 … _k7";
        if text == "skip" {
            return Ok(OpChoice::Skip);
        }
        let (name, kernel) = match text.split_once("_k") {
            Some((name, digits)) => {
                let kernel = digits
                    .parse::<u32>()
                    .ok()
                    .filter(|k| (1..=7).contains(k) && k % 2 == 1)
                    .ok_or_else(|| format!("kernel {digits:?} in operator {text:?} (odd, 1 to 7)"))?;
                (name, Some(kernel))
            }
            None => (text, None),
        };
        let (op, expansion) = match name {
            "conv" => (Op::Conv, 1),
            "dsconv" => (Op::DepthwiseSeparable, 1),
            _ => name
                .strip_prefix("mbconv")
                .and_then(|e| e.parse::<u32>().ok())
                .filter(|e| (1..=crate::arch::MAX_EXPANSION).contains(e))
                .map(|expansion| (Op::MBConv, expansion))
                .ok_or_else(|| format!("unknown operator {text:?} ({KNOWN})"))?,
        };
        Ok(OpChoice::Layer { op, expansion, kernel })
    }
}

impl Serialize for OpChoice {
    fn serialize<S: Serializer>(&self, serializer: S) -> std::result::Result<S::Ok, S::Error> {
        serializer.collect_str(self)
    }
}

impl<'de> Deserialize<'de> for OpChoice {
    fn deserialize<D: Deserializer<'de>>(deserializer: D) -> std::result::Result<Self, D::Error> {
        let text = String::deserialize(deserializer)?;
        text.parse().map_err(serde::de::Error::custom)
    }
}

/// The independent decisions of one block, in token order.
///
/// This enum is the one place that fixes the token layout: a block's tokens are its choice
/// indices in declaration order (the discriminants), which is also the order of
/// [`Decision::ALL`]. Stored runs and controllers depend on it, so it never changes.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Decision {
    Op = 0,
    Kernel = 1,
    SeRatio = 2,
    Skip = 3,
    Channels = 4,
    Layers = 5,
}

impl Decision {
    /// Every decision, in token order.
    pub const ALL: [Decision; 6] = [
        Decision::Op,
        Decision::Kernel,
        Decision::SeRatio,
        Decision::Skip,
        Decision::Channels,
        Decision::Layers,
    ];

    /// Number of tokens per block.
    pub const PER_BLOCK: usize = Decision::ALL.len();

    /// The position of this decision's token within its block's tokens.
    pub const fn position(self) -> usize {
        self as usize
    }

    /// The name of the decision's choice list in a space file.
    pub fn name(self) -> &'static str {
        match self {
            Decision::Op => "ops",
            Decision::Kernel => "kernels",
            Decision::SeRatio => "se_ratios",
            Decision::Skip => "skips",
            Decision::Channels => "channels",
            Decision::Layers => "layers",
        }
    }

    /// The block's value for this decision, as error messages show it.
    fn value_text(self, block: &BlockSpec) -> String {
        match self {
            Decision::Op => OpChoice::layer(block.op, block.expansion).to_string(),
            Decision::Kernel => block.kernel.to_string(),
            Decision::SeRatio => block.se_ratio.to_string(),
            Decision::Skip => format!("{:?}", block.skip),
            Decision::Channels => block.out_channels.to_string(),
            Decision::Layers => block.repeats.to_string(),
        }
    }
}

/// The choices of one block of the space. The stride is fixed by the skeleton.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct BlockChoices {
    pub stride: u32,
    pub ops: Vec<OpChoice>,
    pub kernels: Vec<u32>,
    pub se_ratios: Vec<f64>,
    pub skips: Vec<Skip>,
    pub channels: Vec<u32>,
    pub layers: Vec<u32>,
}

impl BlockChoices {
    /// The number of choices for a decision.
    fn len(&self, decision: Decision) -> usize {
        match decision {
            Decision::Op => self.ops.len(),
            Decision::Kernel => self.kernels.len(),
            Decision::SeRatio => self.se_ratios.len(),
            Decision::Skip => self.skips.len(),
            Decision::Channels => self.channels.len(),
            Decision::Layers => self.layers.len(),
        }
    }

    /// The number of distinct values among the choices for a decision (SE ratios compared
    /// bit for bit).
    fn distinct(&self, decision: Decision) -> usize {
        fn count<T: Ord>(values: impl Iterator<Item = T>) -> usize {
            values.collect::<BTreeSet<T>>().len()
        }
        match decision {
            Decision::Op => count(self.ops.iter()),
            Decision::Kernel => count(self.kernels.iter()),
            Decision::SeRatio => count(self.se_ratios.iter().map(|r| r.to_bits())),
            Decision::Skip => count(self.skips.iter()),
            Decision::Channels => count(self.channels.iter()),
            Decision::Layers => count(self.layers.iter()),
        }
    }

    /// The index of the block's value among the choices for a decision (any operator decision
    /// is answered by [`BlockChoices::encode`]).
    fn index_of(&self, decision: Decision, block: &BlockSpec) -> Option<usize> {
        match decision {
            Decision::Op => self.ops.iter().position(|o| o.matches(block, self.stride)),
            Decision::Kernel => self.kernels.iter().position(|&k| k == block.kernel),
            Decision::SeRatio => self.se_ratios.iter().position(|&r| r == block.se_ratio),
            Decision::Skip => self.skips.iter().position(|&s| s == block.skip),
            Decision::Channels => self.channels.iter().position(|&c| c == block.out_channels),
            Decision::Layers => self.layers.iter().position(|&l| l == block.repeats),
        }
    }

    /// The block's tokens (choice indices in token order), or which decision has no such
    /// choice. Decisions that the chosen operator does not use (all but the channels for a
    /// skip, the kernel for an operator with its own) get token 0.
    fn encode(&self, block: &BlockSpec) -> std::result::Result<[usize; Decision::PER_BLOCK], String> {
        if block.stride != self.stride {
            return Err(format!("stride {} where the space fixes {}", block.stride, self.stride));
        }
        let missing = |decision: Decision| {
            format!("{} is not among its {} choices", decision.value_text(block), decision.name())
        };
        let op = self.index_of(Decision::Op, block).ok_or_else(|| missing(Decision::Op))?;
        let used: &[Decision] = match self.ops[op] {
            OpChoice::Skip => &[Decision::Channels],
            OpChoice::Layer { kernel: Some(_), .. } => {
                &[Decision::SeRatio, Decision::Skip, Decision::Channels, Decision::Layers]
            }
            OpChoice::Layer { kernel: None, .. } => &Decision::ALL[1..],
        };
        let mut tokens = [0; Decision::PER_BLOCK];
        tokens[Decision::Op.position()] = op;
        for &decision in used {
            tokens[decision.position()] = self.index_of(decision, block).ok_or_else(|| missing(decision))?;
        }
        Ok(tokens)
    }

    /// The tokens of a skip that leaves `channels` channels unchanged, if this block offers one.
    fn identity_skip(&self, channels: u32) -> Option<[usize; Decision::PER_BLOCK]> {
        let op = self.ops.iter().position(|&o| o == OpChoice::Skip)?;
        let width = self.channels.iter().position(|&c| c == channels)?;
        let mut tokens = [0; Decision::PER_BLOCK];
        tokens[Decision::Op.position()] = op;
        tokens[Decision::Channels.position()] = width;
        (self.stride == 1).then_some(tokens)
    }

    /// Checks one block's tokens against the lengths of its choice lists.
    fn check_tokens(&self, index: usize, tokens: &[usize]) -> Result<()> {
        for decision in Decision::ALL {
            let (token, len) = (tokens[decision.position()], self.len(decision));
            if token >= len {
                return Err(SpaceError::invalid(
                    format!("tokens (block {index}, {})", decision.name()),
                    format!("choice {token} of {len}"),
                ));
            }
        }
        Ok(())
    }

    /// The block that one block's checked tokens select, fed by `in_channels`; `None` for a
    /// skip that leaves the shape unchanged (no layer at all).
    fn block(&self, tokens: &[usize], in_channels: u32) -> Option<BlockSpec> {
        let choice = |decision: Decision| tokens[decision.position()];
        let out_channels = self.channels[choice(Decision::Channels)];
        let (op, expansion, kernel) = match self.ops[choice(Decision::Op)] {
            OpChoice::Skip if self.stride == 1 && out_channels == in_channels => return None,
            OpChoice::Skip => return Some(skip_projection(in_channels, out_channels, self.stride)),
            OpChoice::Layer { op, expansion, kernel } => {
                (op, expansion, kernel.unwrap_or(self.kernels[choice(Decision::Kernel)]))
            }
        };
        Some(BlockSpec {
            op,
            repeats: self.layers[choice(Decision::Layers)],
            kernel,
            stride: self.stride,
            expansion,
            in_channels,
            out_channels,
            se_ratio: self.se_ratios[choice(Decision::SeRatio)],
            skip: self.skips[choice(Decision::Skip)],
        })
    }

    /// The tokens of the costliest block with the given operator, skip and channel choices:
    /// the largest kernel, SE ratio and layer count. With the others fixed, a block's counts
    /// never decrease with any of the three (odd kernels keep the output size; the SE
    /// bottleneck widens with its ratio; layers only add).
    fn heaviest_tokens(&self, op: usize, skip: usize, channels: usize) -> [usize; Decision::PER_BLOCK] {
        let mut tokens = [0; Decision::PER_BLOCK];
        tokens[Decision::Op.position()] = op;
        tokens[Decision::Kernel.position()] = index_of_max(&self.kernels);
        tokens[Decision::SeRatio.position()] = index_of_max(&self.se_ratios);
        tokens[Decision::Skip.position()] = skip;
        tokens[Decision::Channels.position()] = channels;
        tokens[Decision::Layers.position()] = index_of_max(&self.layers);
        tokens
    }

    /// Checks that every choice list is non-empty and free of duplicates; the error names
    /// the list (`blocks[2].kernels`).
    fn check_lists(&self, index: usize) -> Result<()> {
        let field = |decision: Decision| format!("blocks[{index}].{}", decision.name());
        for decision in Decision::ALL {
            if self.len(decision) == 0 {
                return Err(SpaceError::invalid(field(decision), "the choice list is empty"));
            }
        }
        for decision in Decision::ALL {
            if self.distinct(decision) != self.len(decision) {
                return Err(SpaceError::invalid(field(decision), "the choice list repeats a value"));
            }
        }
        Ok(())
    }

    /// Checks every value by building blocks it appears in: each layer count against the
    /// limit, each operator with each kernel and SE ratio, each channel count. Blocks are
    /// probed with `probe_in` input channels.
    fn check_values(&self, index: usize, probe_in: u32) -> Result<()> {
        for &layers in &self.layers {
            if !(1..=crate::arch::MAX_REPEATS).contains(&layers) {
                return Err(SpaceError::invalid(
                    format!("blocks[{index}].{}", Decision::Layers.name()),
                    format!("{layers} layers (1 to {})", crate::arch::MAX_REPEATS),
                ));
            }
        }
        let probe = |(op, expansion): (Op, u32), kernel: u32, se_ratio: f64, out_channels: u32| {
            let block = BlockSpec {
                op,
                repeats: self.layers[0],
                kernel,
                stride: self.stride,
                expansion,
                in_channels: probe_in,
                out_channels,
                se_ratio,
                skip: Skip::Identity,
            };
            block.validate().map_err(|e| SpaceError::invalid(format!("blocks[{index}]"), e.to_string()))
        };
        for &choice in &self.ops {
            // A skip is the identity or a 1×1 projection: valid for any channels checked below.
            let OpChoice::Layer { op, expansion, kernel } = choice else { continue };
            let kernels = kernel.map_or_else(|| self.kernels.clone(), |k| vec![k]);
            for kernel in kernels {
                for &se_ratio in &self.se_ratios {
                    probe((op, expansion), kernel, se_ratio, self.channels[0])?;
                }
            }
        }
        self.channels.iter().try_for_each(|&channels| probe((Op::MBConv, 1), 3, 0.0, channels))
    }
}

/// The index of the largest value (the last of equals; 0 for an empty list).
fn index_of_max<T: PartialOrd>(values: &[T]) -> usize {
    let mut best = 0;
    for (index, value) in values.iter().enumerate() {
        if values.get(best).is_some_and(|b| value >= b) {
            best = index;
        }
    }
    best
}

/// A member under construction by [`SearchSpace::heaviest_members`]: its count so far, the
/// output channels of its last block and its tokens.
#[derive(Clone)]
struct Partial {
    count: u128,
    channels: u32,
    tokens: Vec<usize>,
}

/// A search space: skeleton plus per-block choices.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct SearchSpace {
    pub name: String,
    #[serde(default = "default_input_channels")]
    pub input_channels: u32,
    #[serde(default = "default_resolution")]
    pub resolution: u32,
    #[serde(default = "default_num_classes")]
    pub num_classes: u32,
    #[serde(default = "default_stem_channels")]
    pub stem_channels: u32,
    /// The stem's stride: 2 (EfficientNet's), or 1 for CIFAR-style spaces.
    #[serde(default = "default_stem_stride", skip_serializing_if = "is_default_stem_stride")]
    pub stem_stride: u32,
    #[serde(default = "default_head_channels")]
    pub head_channels: u32,
    /// The activation of every member (SiLU, or ReLU as NAS-Bench-Macro).
    #[serde(default, skip_serializing_if = "is_default_activation")]
    pub activation: Activation,
    #[serde(default = "default_dropout")]
    pub dropout: f64,
    #[serde(default = "default_drop_connect")]
    pub drop_connect: f64,
    pub blocks: Vec<BlockChoices>,
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

/// The names [`SearchSpace::resolve`] knows.
pub const BUILT_IN: [&str; 4] = ["default", "mnasnet", "nas-bench-macro", "accel-nasbench"];

/// MobileNetV2's stage skeleton: (channels, repeats, stride).
const MOBILENET_V2_STAGES: [(u32, u32, u32); 7] =
    [(16, 1, 1), (24, 2, 2), (32, 3, 2), (64, 4, 2), (96, 3, 1), (160, 3, 2), (320, 1, 1)];

impl SearchSpace {
    /// The MnasNet space around MobileNetV2: five operators, kernel 3/5, SE 0/0.25, three skips,
    /// filters ×{0.75, 1, 1.25} of MobileNetV2's and layers +{−1, 0, +1} of its repeats (at
    /// least one).
    pub fn mnasnet() -> Self {
        let ops = [
            OpChoice::layer(Op::Conv, 1),
            OpChoice::layer(Op::DepthwiseSeparable, 1),
            OpChoice::layer(Op::MBConv, 1),
            OpChoice::layer(Op::MBConv, 3),
            OpChoice::layer(Op::MBConv, 6),
        ];
        let blocks = MOBILENET_V2_STAGES
            .iter()
            .map(|&(channels, repeats, stride)| BlockChoices {
                stride,
                ops: ops.to_vec(),
                kernels: vec![3, 5],
                se_ratios: vec![0.0, 0.25],
                skips: vec![Skip::None, Skip::Identity, Skip::Pool],
                // 0.75× and 1.25× of every MobileNetV2 width are whole numbers.
                channels: vec![channels * 3 / 4, channels, channels * 5 / 4],
                layers: (repeats.saturating_sub(1).max(1)..=repeats + 1).collect(),
            })
            .collect();
        SearchSpace {
            name: "mnasnet".to_owned(),
            input_channels: defaults::INPUT_CHANNELS,
            resolution: defaults::RESOLUTION,
            num_classes: defaults::NUM_CLASSES,
            stem_channels: defaults::STEM_CHANNELS,
            stem_stride: defaults::STEM_STRIDE,
            head_channels: defaults::HEAD_CHANNELS,
            activation: Activation::Silu,
            dropout: defaults::DROPOUT,
            drop_connect: defaults::DROP_CONNECT,
            blocks,
        }
    }

    /// The default space: the MnasNet space with every channel count of EfficientNet-B0 and
    /// MnasNet-A1 added to its block's list, so that both networks are members exactly
    /// (112 in block 4 and 192 in block 5 are not MobileNetV2 × {0.75, 1, 1.25}).
    pub fn default_space() -> Self {
        let mut space = SearchSpace::mnasnet();
        space.name = "default".to_owned();
        for reference in [
            crate::presets::efficientnet_b0(),
            crate::presets::preset("mnasnet-a1").expect("built-in preset"),
        ] {
            for (choices, block) in space.blocks.iter_mut().zip(&reference.blocks) {
                if !choices.channels.contains(&block.out_channels) {
                    choices.channels.push(block.out_channels);
                    choices.channels.sort_unstable();
                }
            }
        }
        space
    }

    /// NAS-Bench-Macro's CIFAR-10 space (Su et al., "Prioritized Architecture Sampling with
    /// Monte-Carlo Tree Search", CVPR 2021): a 3×3 stride-1 stem of 32 channels at 32 px, three
    /// stages of 2, 3 and 3 layers to 64, 128 and 256 channels (stride 2 on each stage's first
    /// layer), where every layer is `skip`, MBConv k3 e3 or MBConv k5 e6 (no SE, ReLU), and a
    /// 1×1 head to 1280. One block per layer; its operator token is the benchmark's code digit.
    /// Regularisation is the task's, not the space's: none here.
    pub fn nas_bench_macro() -> Self {
        let ops = vec![
            OpChoice::Skip,
            OpChoice::Layer { op: Op::MBConv, expansion: 3, kernel: Some(3) },
            OpChoice::Layer { op: Op::MBConv, expansion: 6, kernel: Some(5) },
        ];
        let layer = |stride: u32, channels: u32| BlockChoices {
            stride,
            ops: ops.clone(),
            kernels: vec![3],
            se_ratios: vec![0.0],
            skips: vec![Skip::Identity],
            channels: vec![channels],
            layers: vec![1],
        };
        let blocks = [(2, 64), (3, 128), (3, 256)]
            .into_iter()
            .flat_map(|(layers, channels)| {
                (0..layers).map(move |l| layer(if l == 0 { 2 } else { 1 }, channels))
            })
            .collect();
        SearchSpace {
            name: "nas-bench-macro".to_owned(),
            input_channels: 3,
            resolution: 32,
            num_classes: 10,
            stem_channels: 32,
            stem_stride: 1,
            head_channels: defaults::HEAD_CHANNELS,
            activation: Activation::Relu,
            dropout: 0.0,
            drop_connect: 0.0,
            blocks,
        }
    }

    /// Accel-NASBench's space (Ahmad et al., 2024): EfficientNet-B0's skeleton (its strides and
    /// channels, 224 px, 1000 classes) with per-block expansion {1, 4, 6}, kernel {3, 5}, layers
    /// {1, 2, 3} ({1, 2, 3, 4} in block 5, where B0 has 4) and SE 0.25 on or off. B0 is a
    /// member.
    pub fn accel_nasbench() -> Self {
        let b0 = crate::presets::efficientnet_b0();
        let blocks = b0
            .blocks
            .iter()
            .enumerate()
            .map(|(index, block)| BlockChoices {
                stride: block.stride,
                ops: [1, 4, 6].map(|e| OpChoice::layer(Op::MBConv, e)).to_vec(),
                kernels: vec![3, 5],
                se_ratios: vec![0.0, 0.25],
                skips: vec![Skip::Identity],
                channels: vec![block.out_channels],
                layers: if index == 5 { vec![1, 2, 3, 4] } else { vec![1, 2, 3] },
            })
            .collect();
        SearchSpace {
            name: "accel-nasbench".to_owned(),
            input_channels: b0.input_channels,
            resolution: b0.resolution,
            num_classes: b0.num_classes,
            stem_channels: b0.stem_channels,
            stem_stride: b0.stem_stride,
            head_channels: defaults::HEAD_CHANNELS,
            activation: Activation::Silu,
            dropout: b0.dropout,
            drop_connect: b0.drop_connect,
            blocks,
        }
    }

    /// A built-in space by name, or a space file (`.json` or `.toml`).
    pub fn resolve(name_or_path: &str) -> Result<Self> {
        match name_or_path {
            "default" => Ok(SearchSpace::default_space()),
            "mnasnet" => Ok(SearchSpace::mnasnet()),
            "nas-bench-macro" => Ok(SearchSpace::nas_bench_macro()),
            "accel-nasbench" => Ok(SearchSpace::accel_nasbench()),
            path if Path::new(path).is_dir() => Err(SpaceError::File {
                path: path.into(),
                reason: format!("is a directory; give {} or a .json/.toml space file", BUILT_IN.join(", ")),
            }),
            path if Path::new(path).exists() || path.ends_with(".json") || path.ends_with(".toml") => {
                SearchSpace::from_file(Path::new(path))
            }
            other => Err(SpaceError::UnknownSpace(other.to_owned())),
        }
    }

    /// Reads a space from a JSON or TOML file (by extension; JSON otherwise).
    pub fn from_file(path: &Path) -> Result<Self> {
        let file_err = |reason: String| SpaceError::File { path: path.to_owned(), reason };
        let text = std::fs::read_to_string(path).map_err(|e| file_err(e.to_string()))?;
        let space: SearchSpace = if path.extension().is_some_and(|e| e == "toml") {
            // TOML messages can span lines (an expectation under the message); keep one.
            toml::from_str(&text).map_err(|e| file_err(one_line(e.message())))?
        } else {
            serde_json::from_str(&text).map_err(|e| file_err(e.to_string()))?
        };
        space.validate().map_err(|e| file_err(e.to_string()))?;
        Ok(space)
    }

    /// Checks that every choice list is non-empty, free of duplicates and valid, and that every
    /// combination of choices is a valid architecture.
    pub fn validate(&self) -> Result<()> {
        if self.blocks.is_empty() {
            return Err(SpaceError::invalid("blocks", "a space needs at least one block"));
        }
        for (index, block) in self.blocks.iter().enumerate() {
            block.check_lists(index)?;
            block.check_values(index, self.stem_channels)?;
        }
        // The skeleton itself must be a valid architecture.
        self.decode(&vec![0; self.num_tokens()])?;
        self.check_cost_limit()
    }

    /// Checks that no member is over the cost model's limit ([`crate::cost::MAX_COUNT`]) by
    /// decoding the heaviest ones, so that every member decodes.
    fn check_cost_limit(&self) -> Result<()> {
        for what in [CostKind::Params, CostKind::Macs] {
            for tokens in self.heaviest_members(what) {
                self.decode(&tokens).map_err(|e| {
                    SpaceError::invalid("blocks", format!("the largest members are too large: {e}"))
                })?;
            }
        }
        Ok(())
    }

    /// For each output channel choice of the last block, the tokens of the member with the
    /// largest count of `what`; the largest member of the space is among them.
    ///
    /// Dynamic programming over the blocks: a block's cost depends only on its own choices, its
    /// input channels (the previous block's output) and its input size (fixed by the
    /// skeleton's strides), so the heaviest member through each channel choice extends the
    /// heaviest member up to the previous block through one of its channel choices.
    fn heaviest_members(&self, what: CostKind) -> Vec<Vec<usize>> {
        let mut paths = vec![Partial { count: 0, channels: self.stem_channels, tokens: Vec::new() }];
        let mut size = conv_output_size(self.resolution, defaults::STEM_KERNEL, self.stem_stride);
        for choices in &self.blocks {
            let (next, out_size) = Self::extend_heaviest(choices, &paths, size, what);
            (paths, size) = (next, out_size);
        }
        paths.into_iter().map(|path| path.tokens).collect()
    }

    /// One step of [`SearchSpace::heaviest_members`]: the heaviest extension through each of
    /// the block's channel choices, and the block's output size.
    fn extend_heaviest(
        choices: &BlockChoices,
        paths: &[Partial],
        size: u32,
        what: CostKind,
    ) -> (Vec<Partial>, u32) {
        let mut best: Vec<Option<Partial>> = vec![None; choices.channels.len()];
        let mut out_size = size;
        for path in paths {
            for op in 0..choices.ops.len() {
                for skip in 0..choices.skips.len() {
                    for (channels, slot) in best.iter_mut().enumerate() {
                        let tokens = choices.heaviest_tokens(op, skip, channels);
                        let (cost, out) = match choices.block(&tokens, path.channels) {
                            Some(block) => wide_block_cost(&block, size),
                            None => (Default::default(), size),
                        };
                        out_size = out;
                        let count = path.count.saturating_add(cost.count(what));
                        if slot.as_ref().is_none_or(|b| count > b.count) {
                            *slot = Some(Partial {
                                count,
                                channels: choices.channels[channels],
                                tokens: [path.tokens.as_slice(), &tokens].concat(),
                            });
                        }
                    }
                }
            }
        }
        (best.into_iter().flatten().collect(), out_size)
    }

    /// Number of tokens that describe one member (six per block).
    pub fn num_tokens(&self) -> usize {
        self.blocks.len() * Decision::PER_BLOCK
    }

    /// The number of choices at each token position: the controller's vocabulary sizes.
    pub fn choice_counts(&self) -> Vec<usize> {
        self.blocks.iter().flat_map(|b| Decision::ALL.map(|d| b.len(d))).collect()
    }

    /// Number of distinct token sequences (the space size as MnasNet counts it).
    pub fn size(&self) -> u128 {
        self.choice_counts().iter().fold(1u128, |acc, &n| acc.saturating_mul(n as u128))
    }

    /// log10 of the size, exact even where `size` saturates.
    pub fn log10_size(&self) -> f64 {
        self.choice_counts().iter().map(|&n| (n as f64).log10()).sum()
    }

    /// Builds the architecture a token sequence describes.
    pub fn decode(&self, tokens: &[usize]) -> Result<ArchSpec> {
        if tokens.len() != self.num_tokens() {
            return Err(SpaceError::invalid(
                "tokens",
                format!("{} tokens given, space {:?} takes {}", tokens.len(), self.name, self.num_tokens()),
            ));
        }
        let mut in_channels = self.stem_channels;
        let mut blocks = Vec::with_capacity(self.blocks.len());
        for (index, (choices, block_tokens)) in
            self.blocks.iter().zip(tokens.chunks(Decision::PER_BLOCK)).enumerate()
        {
            choices.check_tokens(index, block_tokens)?;
            if let Some(block) = choices.block(block_tokens, in_channels) {
                in_channels = block.out_channels;
                blocks.push(block);
            }
        }
        let arch = ArchSpec {
            input_channels: self.input_channels,
            resolution: self.resolution,
            num_classes: self.num_classes,
            stem_channels: self.stem_channels,
            stem_kernel: defaults::STEM_KERNEL,
            stem_stride: self.stem_stride,
            stem_max_pool: false,
            blocks,
            head_channels: Some(self.head_channels),
            activation: self.activation,
            dropout: self.dropout,
            drop_connect: self.drop_connect,
        };
        arch.validate()?;
        Ok(arch)
    }

    /// The tokens of an architecture, or why it is not a member. Membership concerns the
    /// network's structure: stem, head, input channels and every block; resolution, classes
    /// and regularisation are properties of the task, not of the space.
    pub fn encode(&self, arch: &ArchSpec) -> Result<Vec<usize>> {
        let not_in = |reason: String| SpaceError::NotInSpace { space: self.name.clone(), reason };
        self.check_skeleton(arch).map_err(not_in)?;
        let has_skips = self.blocks.iter().any(|b| b.ops.contains(&OpChoice::Skip));
        if !has_skips && arch.blocks.len() != self.blocks.len() {
            return Err(not_in(format!(
                "{} blocks where the space has {}",
                arch.blocks.len(),
                self.blocks.len()
            )));
        }
        let mut tokens = Vec::with_capacity(self.num_tokens());
        let mut dead_ends = BTreeSet::new();
        match self.align(&arch.blocks, (0, 0), &mut tokens, &mut dead_ends) {
            Ok(()) => Ok(tokens),
            Err(reason) => Err(not_in(reason)),
        }
    }

    /// Assigns the architecture's blocks from `blocks[at.1]` on to the space's blocks from
    /// `self.blocks[at.0]` on, appending their tokens. A block of the space either makes the
    /// architecture's next block or, where it offers `skip` and the shape stays, is skipped
    /// (decoding drops such skips, so they leave no block behind). Making is tried first, which
    /// gives the canonical tokens: a stage's skips after its layers. `dead_ends` remembers the
    /// positions from which no assignment exists, so the search is at most quadratic.
    fn align(
        &self,
        blocks: &[BlockSpec],
        at: (usize, usize),
        tokens: &mut Vec<usize>,
        dead_ends: &mut BTreeSet<(usize, usize)>,
    ) -> std::result::Result<(), String> {
        let (space_index, arch_index) = at;
        let Some(choices) = self.blocks.get(space_index) else {
            return match blocks.len() - arch_index {
                0 => Ok(()),
                extra => Err(format!("{extra} more blocks than the space can make")),
            };
        };
        if dead_ends.contains(&at) {
            return Err(format!("block {space_index}: no assignment of the remaining blocks"));
        }
        let channels = arch_index.checked_sub(1).map_or(self.stem_channels, |i| blocks[i].out_channels);
        let mut reason = format!("block {space_index}: the architecture has no block left for it");
        if let Some(block) = blocks.get(arch_index) {
            match choices.encode(block) {
                Ok(made) => {
                    tokens.extend(made);
                    match self.align(blocks, (space_index + 1, arch_index + 1), tokens, dead_ends) {
                        Ok(()) => return Ok(()),
                        Err(later) => reason = later,
                    }
                    tokens.truncate(tokens.len() - Decision::PER_BLOCK);
                }
                Err(why) => reason = format!("block {space_index}: {why}"),
            }
        }
        if let Some(skip) = choices.identity_skip(channels) {
            tokens.extend(skip);
            if self.align(blocks, (space_index + 1, arch_index), tokens, dead_ends).is_ok() {
                return Ok(());
            }
            tokens.truncate(tokens.len() - Decision::PER_BLOCK);
        }
        dead_ends.insert(at);
        Err(reason)
    }

    /// Checks what membership needs besides the blocks: stem, head, activation and input
    /// channels (resolution, classes and regularisation are properties of the task).
    fn check_skeleton(&self, arch: &ArchSpec) -> std::result::Result<(), String> {
        if arch.stem_channels != self.stem_channels {
            return Err(format!(
                "stem of {} channels where the space fixes {}",
                arch.stem_channels, self.stem_channels
            ));
        }
        if arch.head_channels != Some(self.head_channels) {
            let head =
                arch.head_channels.map_or_else(|| "no head".to_owned(), |c| format!("head of {c} channels"));
            return Err(format!("{head} where the space fixes {}", self.head_channels));
        }
        // The space's stem is EfficientNet's 3×3 convolution without max-pool, at its stride.
        if arch.stem_kernel != defaults::STEM_KERNEL
            || arch.stem_max_pool
            || arch.stem_stride != self.stem_stride
        {
            return Err(format!(
                "a {k}×{k} stem of stride {s}{pool} where the space fixes a 3×3 stem of stride {fixed} without max-pool",
                k = arch.stem_kernel,
                s = arch.stem_stride,
                pool = if arch.stem_max_pool { " with max-pool" } else { "" },
                fixed = self.stem_stride,
            ));
        }
        if arch.activation != self.activation {
            return Err(format!(
                "activation {} where the space fixes {}",
                arch.activation.name(),
                self.activation.name()
            ));
        }
        if arch.input_channels != self.input_channels {
            return Err(format!(
                "{} input channels where the space fixes {}",
                arch.input_channels, self.input_channels
            ));
        }
        Ok(())
    }

    /// Whether the space contains the architecture's structure.
    pub fn contains(&self, arch: &ArchSpec) -> bool {
        self.encode(arch).is_ok()
    }

    /// Uniform sample: every token drawn uniformly and independently, which is uniform over
    /// the space.
    pub fn sample_tokens<R: Rng + ?Sized>(&self, rng: &mut R) -> Vec<usize> {
        self.choice_counts().into_iter().map(|n| rng.random_range(0..n)).collect()
    }

    /// One mutation as in regularized evolution: a single decision, chosen uniformly among
    /// those with more than one choice, changes to a different value.
    pub fn mutate<R: Rng + ?Sized>(&self, tokens: &[usize], rng: &mut R) -> Vec<usize> {
        let counts = self.choice_counts();
        let mut mutated = tokens.to_vec();
        let open: Vec<usize> = (0..counts.len()).filter(|&i| counts[i] > 1).collect();
        if let Some(&position) = open.choose(rng) {
            let offset = rng.random_range(1..counts[position]);
            mutated[position] = (tokens[position] + offset) % counts[position];
        }
        mutated
    }
}

/// A parser's message folded onto one line, so errors stay one line long.
fn one_line(message: &str) -> String {
    message.lines().map(str::trim).filter(|line| !line.is_empty()).collect::<Vec<_>>().join(": ")
}

#[cfg(test)]
#[allow(clippy::unwrap_used)] // a failing unwrap is a failing test
mod tests {
    use rand::SeedableRng;
    use rand_chacha::ChaCha8Rng;

    use super::*;

    #[test]
    fn default_space_contains_b0_and_mnasnet_a1() {
        let space = SearchSpace::default_space();
        for name in ["b0", "mnasnet-a1"] {
            let arch = crate::presets::preset(name).unwrap();
            let tokens = space.encode(&arch).unwrap();
            assert_eq!(space.decode(&tokens).unwrap(), arch, "{name} round-trips through tokens");
        }
        // B0 is not in the strict MnasNet space: 112 and 192 are not MobileNetV2 × {0.75, 1, 1.25}.
        let strict = SearchSpace::mnasnet();
        let message = strict.encode(&crate::presets::efficientnet_b0()).unwrap_err().to_string();
        assert!(message.contains("block 4") && message.contains("112"), "{message}");
        assert!(!SearchSpace::default_space().contains(&crate::presets::preset("b1").unwrap()));
    }

    /// The skeleton fields of the baselines are part of membership: B0's blocks behind a
    /// ResNet stem, without a head or with ReLU are other networks.
    #[test]
    fn stem_head_and_activation_decide_membership() {
        let space = SearchSpace::default_space();
        let b0 = crate::presets::efficientnet_b0();
        let mut variants = vec![b0.clone(); 4];
        variants[0].stem_kernel = 7;
        variants[1].stem_max_pool = true;
        variants[2].head_channels = None;
        variants[3].activation = crate::arch::Activation::Relu;
        for (arch, needle) in variants.iter().zip(["7×7 stem", "max-pool", "no head", "relu"]) {
            let message = space.encode(arch).unwrap_err().to_string();
            assert!(message.contains(needle), "{message}");
        }
    }

    /// Pins the token layout that stored runs and controllers rely on: per block, the op,
    /// kernel, SE ratio, skip, channels and layers indices, in that order.
    #[test]
    fn token_layout_is_pinned() {
        for (position, decision) in Decision::ALL.into_iter().enumerate() {
            assert_eq!(decision.position(), position, "{decision:?}");
        }
        let space = SearchSpace::mnasnet();
        let mut tokens = vec![0; space.num_tokens()];
        tokens[..Decision::PER_BLOCK].copy_from_slice(&[4, 1, 1, 2, 0, 1]);
        let arch = space.decode(&tokens).expect("decode");
        assert_eq!(arch.block_strings()[0], "r2_k5_s11_e6_i32_o12_se0.25_poolskip");
        assert_eq!(arch.block_strings()[1], "cn_r1_k3_s22_i12_o18_noskip");
        assert_eq!(space.encode(&arch).expect("encode"), tokens);
    }

    /// The dynamic program finds the largest member that enumerating every member finds.
    #[test]
    fn heaviest_members_are_the_largest_by_enumeration() {
        let mut space = SearchSpace::mnasnet();
        space.blocks.truncate(2);
        for block in &mut space.blocks {
            block.ops.truncate(3); // conv, dsconv, mbconv1: the widest and cheapest kinds
            block.se_ratios.push(0.5);
        }
        let counts = space.choice_counts();
        let mut largest = [0u64; 2];
        let mut tokens = vec![0; space.num_tokens()];
        'members: loop {
            let total = crate::cost::cost(&space.decode(&tokens).unwrap());
            largest = [largest[0].max(total.params), largest[1].max(total.macs)];
            // Next token sequence, like an odometer.
            for (token, &count) in tokens.iter_mut().zip(&counts) {
                *token += 1;
                if *token < count {
                    continue 'members;
                }
                *token = 0;
            }
            break;
        }
        for (what, expected) in [(CostKind::Params, largest[0]), (CostKind::Macs, largest[1])] {
            let found = space
                .heaviest_members(what)
                .iter()
                .map(|tokens| {
                    let total = crate::cost::cost(&space.decode(tokens).unwrap());
                    if what == CostKind::Params {
                        total.params
                    } else {
                        total.macs
                    }
                })
                .max();
            assert_eq!(found, Some(expected), "{what}");
        }
    }

    /// The operator names of space files: `skip`, and an operator with its own kernel.
    #[test]
    fn operator_choices_parse_and_print() {
        for text in ["skip", "conv", "dsconv", "mbconv6", "mbconv3_k3", "mbconv6_k5", "conv_k7"] {
            let choice: OpChoice = text.parse().unwrap();
            assert_eq!(choice.to_string(), text);
        }
        assert_eq!(
            "mbconv6_k5".parse::<OpChoice>().unwrap(),
            OpChoice::Layer { op: Op::MBConv, expansion: 6, kernel: Some(5) }
        );
        for (bad, needle) in
            [("mbconv6_k4", "kernel \"4\""), ("mbconv6_kx", "\"x\""), ("skipp", "unknown operator")]
        {
            let message = bad.parse::<OpChoice>().unwrap_err();
            assert!(message.contains(needle), "{bad}: {message}");
        }
    }

    /// NAS-Bench-Macro: 3^8 codes; a layer's skip vanishes where the shape stays and becomes a
    /// projection on a stage's first layer; codes that differ only in where a stage's skips
    /// sit decode to one network, whose canonical tokens put the skips last.
    #[test]
    fn nas_bench_macro_skips_layers() {
        let space = SearchSpace::nas_bench_macro();
        assert_eq!(space.size(), 6561);
        let tokens_of = |code: &str| -> Vec<usize> {
            code.chars()
                .flat_map(|digit| {
                    let mut block = [0; Decision::PER_BLOCK];
                    block[0] = digit.to_digit(10).unwrap() as usize;
                    block
                })
                .collect()
        };
        let a = space.decode(&tokens_of("22212202")).unwrap();
        let b = space.decode(&tokens_of("22212220")).unwrap();
        assert_eq!(a, b);
        assert_eq!(space.encode(&a).unwrap(), tokens_of("22212220"), "skips last in the stage");
        assert_eq!((a.stem_stride, a.activation, a.stem_output_size()), (1, Activation::Relu, 32));
        assert_eq!(a.blocks.len(), 7, "one skipped layer is no block");
        let first_skipped = space.decode(&tokens_of("02111111")).unwrap();
        assert_eq!(first_skipped.block_strings()[0], "proj_r1_k1_s22_i32_o64_noskip");
        assert_eq!(first_skipped.block_strings()[1], "r1_k5_s11_e6_i64_o64");
        assert_eq!(space.encode(&first_skipped).unwrap(), tokens_of("02111111"));
        let all_skipped = space.decode(&tokens_of("00000000")).unwrap();
        assert_eq!(all_skipped.blocks.len(), 3, "three projections");
        assert_eq!(space.encode(&all_skipped).unwrap(), tokens_of("00000000"));
        // Not members: a k3 e6 layer, and B0.
        let mut other = a.clone();
        other.blocks[0].kernel = 3; // k3 e6: not a choice
        assert!(space.encode(&other).unwrap_err().to_string().contains("block 0"));
        assert!(!space.contains(&crate::presets::efficientnet_b0()));
    }

    /// An assignment that needs an early skip for a later block that cannot skip.
    #[test]
    fn membership_searches_past_a_greedy_choice() {
        let mut space = SearchSpace::nas_bench_macro();
        // Layer 1 of stage 1 may be skipped or k3 e3; layer 2 only k3 e3.
        space.blocks[1].ops = vec![OpChoice::Skip, "mbconv3_k3".parse().unwrap()];
        space.blocks[2].ops = vec!["mbconv3_k3".parse().unwrap()];
        let tokens = [
            [1, 0, 0, 0, 0, 0],
            [0; 6],
            [0; 6],
            [1, 0, 0, 0, 0, 0],
            [1, 0, 0, 0, 0, 0],
            [1, 0, 0, 0, 0, 0],
            [1, 0, 0, 0, 0, 0],
            [1, 0, 0, 0, 0, 0],
        ]
        .concat();
        let arch = space.decode(&tokens).unwrap();
        assert_eq!(space.encode(&arch).unwrap(), tokens);
    }

    /// Accel-NASBench: B0's skeleton with 36 choices a block (48 in block 5); B0 is a member.
    #[test]
    fn accel_nasbench_contains_b0() {
        let space = SearchSpace::accel_nasbench();
        assert_eq!(space.size(), 36u128.pow(6) * 48);
        let b0 = crate::presets::efficientnet_b0();
        let tokens = space.encode(&b0).unwrap();
        assert_eq!(space.decode(&tokens).unwrap(), b0);
        assert!(!space.contains(&crate::presets::preset("mnasnet-a1").unwrap()));
    }

    #[test]
    fn built_in_spaces_resolve_and_round_trip_through_files() {
        let dir = std::env::temp_dir().join(format!("effnas-builtin-spaces-{}", std::process::id()));
        std::fs::create_dir_all(&dir).unwrap();
        for name in BUILT_IN {
            let space = SearchSpace::resolve(name).unwrap();
            assert_eq!(space.name, name);
            space.validate().unwrap();
            let path = dir.join(format!("{name}.toml"));
            std::fs::write(&path, toml::to_string(&space).unwrap()).unwrap();
            assert_eq!(SearchSpace::from_file(&path).unwrap(), space, "{name}");
        }
        std::fs::remove_dir_all(&dir).unwrap();
    }

    #[test]
    fn sizes_are_products_of_the_choices() {
        let space = SearchSpace::mnasnet();
        // Per block: 5 ops × 2 kernels × 2 SE × 3 skips × 3 widths; layers 2,3,3,3,3,3,2.
        let per_block = 5u128 * 2 * 2 * 3 * 3;
        assert_eq!(space.size(), per_block.pow(7) * 2 * 3u128.pow(5) * 2);
        assert!((space.log10_size() - (space.size() as f64).log10()).abs() < 1e-9);
    }

    #[test]
    fn samples_are_members_and_seeded() {
        let space = SearchSpace::default_space();
        let mut a = ChaCha8Rng::seed_from_u64(7);
        let mut b = ChaCha8Rng::seed_from_u64(7);
        for _ in 0..200 {
            let tokens = space.sample_tokens(&mut a);
            assert_eq!(tokens, space.sample_tokens(&mut b));
            let arch = space.decode(&tokens).unwrap();
            assert_eq!(space.encode(&arch).unwrap(), tokens);
        }
    }

    #[test]
    fn mutation_changes_exactly_one_decision() {
        let space = SearchSpace::default_space();
        let mut rng = ChaCha8Rng::seed_from_u64(3);
        for _ in 0..200 {
            let parent = space.sample_tokens(&mut rng);
            let child = space.mutate(&parent, &mut rng);
            assert_eq!(parent.iter().zip(&child).filter(|(a, b)| a != b).count(), 1);
            assert!(space.decode(&child).is_ok());
        }
    }

    #[test]
    fn files_round_trip_and_errors_name_the_field() {
        let dir = std::env::temp_dir().join(format!("effnas-space-test-{}", std::process::id()));
        std::fs::create_dir_all(&dir).unwrap();
        let space = SearchSpace::default_space();
        let json = dir.join("space.json");
        std::fs::write(&json, serde_json::to_string_pretty(&space).unwrap()).unwrap();
        assert_eq!(SearchSpace::from_file(&json).unwrap(), space);
        let toml_path = dir.join("space.toml");
        std::fs::write(&toml_path, toml::to_string(&space).unwrap()).unwrap();
        assert_eq!(SearchSpace::from_file(&toml_path).unwrap(), space);

        let bad = dir.join("bad.json");
        let mut value = serde_json::to_value(&space).unwrap();
        value["blocks"][2]["kernels"] = serde_json::json!([3, 4]);
        std::fs::write(&bad, value.to_string()).unwrap();
        let message = SearchSpace::from_file(&bad).unwrap_err().to_string();
        assert!(
            message.contains("bad.json") && message.contains("blocks[2]") && message.contains("k4"),
            "{message}"
        );

        value["blocks"][2]["kernels"] = serde_json::json!([3]);
        value["blocks"][1]["colour"] = serde_json::json!("red");
        std::fs::write(&bad, value.to_string()).unwrap();
        let message = SearchSpace::from_file(&bad).unwrap_err().to_string();
        assert!(message.contains("colour"), "{message}");
        std::fs::remove_dir_all(&dir).unwrap();
    }
}
