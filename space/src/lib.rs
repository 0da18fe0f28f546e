//! Architecture as plain data for effnas: no libtorch, no database.
//!
//! - [`arch`]: `BlockSpec` and `ArchSpec`, validated on the way in.
//! - [`codec`]: the TF/timm block-string notation, canonical form and stable hash.
//! - [`presets`]: EfficientNet-B0…B7 (Tan & Le, 2019, Tables 1–2), MnasNet-A1, MobileNetV2, and the
//!   baselines of its Table 3: MobileNetV1, ResNet-18/34/50.
//! - [`scaling`]: compound scaling and the reference rounding rules (EfficientNet §3.3).
//! - [`cost`](mod@cost): exact parameters and multiply-adds, analytically, within a checked limit.
//! - [`search_space`]: the MnasNet factorized hierarchical space (MnasNet §4.1) as data.

pub mod arch;
pub mod codec;
pub mod cost;
pub mod error;
pub mod presets;
pub mod scaling;
pub mod search_space;

pub use arch::{Activation, ArchSpec, BlockSpec, Op, Shortcut, Skip};
pub use codec::{arch_hash, canonical, format_block, parse_arch, parse_block};
pub use cost::{checked_cost, cost, cost_breakdown, Cost, CostBreakdown, CostKind, MAX_COUNT};
pub use error::SpaceError;
pub use scaling::{
    compound_grid, round_channels, round_repeats, scale, scale_to_flops, Compound, Dimension, FlopsMatch,
    FlopsTargetError, GridSpec, Multipliers,
};
pub use search_space::{BlockChoices, OpChoice, SearchSpace};
