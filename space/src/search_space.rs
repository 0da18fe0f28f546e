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
    default_drop_connect, default_dropout, default_head_channels, default_input_channels,
    default_num_classes, default_resolution, default_stem_channels, defaults, ArchSpec, BlockSpec, Op, Skip,
};
use crate::error::{Result, SpaceError};

/// An operator choice: the operator with its expansion (`conv`, `dsconv`, `mbconv1/3/6`).
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash, PartialOrd, Ord)]
pub struct OpChoice {
    pub op: Op,
    pub expansion: u32,
}

impl fmt::Display for OpChoice {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        match self.op {
            Op::Conv => f.write_str("conv"),
            Op::DepthwiseSeparable => f.write_str("dsconv"),
            Op::MBConv => write!(f, "mbconv{}", self.expansion),
        }
    }
}

impl FromStr for OpChoice {
    type Err = String;

    fn from_str(text: &str) -> Result<Self, String> {
        match text {
            "conv" => Ok(OpChoice { op: Op::Conv, expansion: 1 }),
            "dsconv" => Ok(OpChoice { op: Op::DepthwiseSeparable, expansion: 1 }),
            _ => text
                .strip_prefix("mbconv")
                .and_then(|e| e.parse::<u32>().ok())
                .filter(|e| (1..=crate::arch::MAX_EXPANSION).contains(e))
                .map(|expansion| OpChoice { op: Op::MBConv, expansion })
                .ok_or_else(|| format!("unknown operator {text:?} (conv, dsconv, mbconv1 … mbconv16)")),
        }
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
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Decision {
    Op,
    Kernel,
    SeRatio,
    Skip,
    Channels,
    Layers,
}

impl Decision {
    pub const ALL: [Decision; 6] = [
        Decision::Op,
        Decision::Kernel,
        Decision::SeRatio,
        Decision::Skip,
        Decision::Channels,
        Decision::Layers,
    ];

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

    /// The index of the block's value for each decision, or which decision has no such choice.
    fn encode(&self, block: &BlockSpec) -> std::result::Result<[usize; 6], String> {
        let position = |found: Option<usize>, decision: Decision, value: String| {
            found.ok_or_else(|| format!("{value} is not among its {} choices", decision.name()))
        };
        let op = OpChoice { op: block.op, expansion: block.expansion };
        if block.stride != self.stride {
            return Err(format!("stride {} where the space fixes {}", block.stride, self.stride));
        }
        Ok([
            position(self.ops.iter().position(|&o| o == op), Decision::Op, op.to_string())?,
            position(
                self.kernels.iter().position(|&k| k == block.kernel),
                Decision::Kernel,
                block.kernel.to_string(),
            )?,
            position(
                self.se_ratios.iter().position(|&r| r == block.se_ratio),
                Decision::SeRatio,
                block.se_ratio.to_string(),
            )?,
            position(
                self.skips.iter().position(|&s| s == block.skip),
                Decision::Skip,
                format!("{:?}", block.skip),
            )?,
            position(
                self.channels.iter().position(|&c| c == block.out_channels),
                Decision::Channels,
                block.out_channels.to_string(),
            )?,
            position(
                self.layers.iter().position(|&l| l == block.repeats),
                Decision::Layers,
                block.repeats.to_string(),
            )?,
        ])
    }
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
    #[serde(default = "default_head_channels")]
    pub head_channels: u32,
    #[serde(default = "default_dropout")]
    pub dropout: f64,
    #[serde(default = "default_drop_connect")]
    pub drop_connect: f64,
    pub blocks: Vec<BlockChoices>,
}

/// MobileNetV2's stage skeleton: (channels, repeats, stride).
const MOBILENET_V2_STAGES: [(u32, u32, u32); 7] =
    [(16, 1, 1), (24, 2, 2), (32, 3, 2), (64, 4, 2), (96, 3, 1), (160, 3, 2), (320, 1, 1)];

impl SearchSpace {
    /// The MnasNet space around MobileNetV2: five operators, kernel 3/5, SE 0/0.25, three skips,
    /// filters ×{0.75, 1, 1.25} of MobileNetV2's and layers +{−1, 0, +1} of its repeats (at
    /// least one).
    pub fn mnasnet() -> Self {
        let ops = ["conv", "dsconv", "mbconv1", "mbconv3", "mbconv6"]
            .iter()
            .map(|o| o.parse().expect("built-in operator names parse"))
            .collect::<Vec<OpChoice>>();
        let blocks = MOBILENET_V2_STAGES
            .iter()
            .map(|&(channels, repeats, stride)| BlockChoices {
                stride,
                ops: ops.clone(),
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
            head_channels: defaults::HEAD_CHANNELS,
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

    /// A built-in space by name, or a space file (`.json` or `.toml`).
    pub fn resolve(name_or_path: &str) -> Result<Self> {
        match name_or_path {
            "default" => Ok(SearchSpace::default_space()),
            "mnasnet" => Ok(SearchSpace::mnasnet()),
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
            toml::from_str(&text).map_err(|e| file_err(e.message().to_owned()))?
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
            let field = |decision: Decision| format!("blocks[{index}].{}", decision.name());
            for decision in Decision::ALL {
                if block.len(decision) == 0 {
                    return Err(SpaceError::invalid(field(decision), "the choice list is empty"));
                }
            }
            let distinct = |len: usize, unique: usize, decision: Decision| {
                if len == unique {
                    Ok(())
                } else {
                    Err(SpaceError::invalid(field(decision), "the choice list repeats a value"))
                }
            };
            distinct(block.ops.len(), block.ops.iter().collect::<BTreeSet<_>>().len(), Decision::Op)?;
            distinct(
                block.kernels.len(),
                block.kernels.iter().collect::<BTreeSet<_>>().len(),
                Decision::Kernel,
            )?;
            distinct(block.skips.len(), block.skips.iter().collect::<BTreeSet<_>>().len(), Decision::Skip)?;
            distinct(
                block.channels.len(),
                block.channels.iter().collect::<BTreeSet<_>>().len(),
                Decision::Channels,
            )?;
            distinct(
                block.layers.len(),
                block.layers.iter().collect::<BTreeSet<_>>().len(),
                Decision::Layers,
            )?;
            let ratios: BTreeSet<u64> = block.se_ratios.iter().map(|r| r.to_bits()).collect();
            distinct(block.se_ratios.len(), ratios.len(), Decision::SeRatio)?;
            // Each value is checked by building the extreme blocks it can appear in.
            for op in &block.ops {
                for &kernel in &block.kernels {
                    for &se_ratio in &block.se_ratios {
                        let probe = BlockSpec {
                            op: op.op,
                            repeats: block.layers[0],
                            kernel,
                            stride: block.stride,
                            expansion: op.expansion,
                            in_channels: self.stem_channels,
                            out_channels: block.channels[0],
                            se_ratio,
                            skip: Skip::Identity,
                        };
                        probe
                            .validate()
                            .map_err(|e| SpaceError::invalid(format!("blocks[{index}]"), e.to_string()))?;
                    }
                }
            }
            for (&channels, &layers) in block.channels.iter().zip(block.layers.iter().cycle()) {
                let probe = BlockSpec {
                    op: Op::MBConv,
                    repeats: layers,
                    kernel: 3,
                    stride: block.stride,
                    expansion: 1,
                    in_channels: self.stem_channels,
                    out_channels: channels,
                    se_ratio: 0.0,
                    skip: Skip::Identity,
                };
                probe
                    .validate()
                    .map_err(|e| SpaceError::invalid(format!("blocks[{index}]"), e.to_string()))?;
            }
            for &layers in &block.layers {
                if !(1..=crate::arch::MAX_REPEATS).contains(&layers) {
                    return Err(SpaceError::invalid(
                        field(Decision::Layers),
                        format!("{layers} layers (1 to {})", crate::arch::MAX_REPEATS),
                    ));
                }
            }
        }
        // The skeleton itself must be a valid architecture.
        self.decode(&vec![0; self.num_tokens()]).map(|_| ())
    }

    /// Number of tokens that describe one member (six per block).
    pub fn num_tokens(&self) -> usize {
        self.blocks.len() * Decision::ALL.len()
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
        for (index, (choices, t)) in self.blocks.iter().zip(tokens.chunks(Decision::ALL.len())).enumerate() {
            for (decision, &token) in Decision::ALL.iter().zip(t) {
                if token >= choices.len(*decision) {
                    return Err(SpaceError::invalid(
                        format!("tokens (block {index}, {})", decision.name()),
                        format!("choice {token} of {}", choices.len(*decision)),
                    ));
                }
            }
            let op = choices.ops[t[0]];
            let block = BlockSpec {
                op: op.op,
                repeats: choices.layers[t[5]],
                kernel: choices.kernels[t[1]],
                stride: choices.stride,
                expansion: op.expansion,
                in_channels,
                out_channels: choices.channels[t[4]],
                se_ratio: choices.se_ratios[t[2]],
                skip: choices.skips[t[3]],
            };
            in_channels = block.out_channels;
            blocks.push(block);
        }
        let arch = ArchSpec {
            input_channels: self.input_channels,
            resolution: self.resolution,
            num_classes: self.num_classes,
            stem_channels: self.stem_channels,
            blocks,
            head_channels: self.head_channels,
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
        if arch.blocks.len() != self.blocks.len() {
            return Err(not_in(format!(
                "{} blocks where the space has {}",
                arch.blocks.len(),
                self.blocks.len()
            )));
        }
        if arch.stem_channels != self.stem_channels {
            return Err(not_in(format!(
                "stem of {} channels where the space fixes {}",
                arch.stem_channels, self.stem_channels
            )));
        }
        if arch.head_channels != self.head_channels {
            return Err(not_in(format!(
                "head of {} channels where the space fixes {}",
                arch.head_channels, self.head_channels
            )));
        }
        if arch.input_channels != self.input_channels {
            return Err(not_in(format!(
                "{} input channels where the space fixes {}",
                arch.input_channels, self.input_channels
            )));
        }
        let mut tokens = Vec::with_capacity(self.num_tokens());
        for (index, (choices, block)) in self.blocks.iter().zip(&arch.blocks).enumerate() {
            let block_tokens =
                choices.encode(block).map_err(|reason| not_in(format!("block {index}: {reason}")))?;
            tokens.extend(block_tokens);
        }
        Ok(tokens)
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

#[cfg(test)]
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
