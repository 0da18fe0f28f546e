//! `effnas arch SPEC`: an architecture block by block with its exact cost.

use crate::output::{out, outln};
use std::process::ExitCode;

use anyhow::{Context, Result};
use effnas_space::cost::BlockCost;
use effnas_space::error::Echo;
use effnas_space::{
    arch_hash, canonical, cost_breakdown, parse_arch, ArchSpec, BlockSpec, Cost, CostBreakdown,
};
use serde_json::json;

use crate::table::{human_count, Table};

#[derive(Debug, clap::Args)]
pub struct Args {
    /// A preset (efficientnet-b0 … efficientnet-b7, b0 … b7, mnasnet-a1, mobilenet-v1,
    /// mobilenet-v2, resnet-18, resnet-34, resnet-50), a comma-separated list of block strings
    /// (r2_k3_s22_e6_i16_o24_se0.25,…) or a JSON file.
    pub spec: String,
    /// Input resolution in pixels (default: the architecture's own).
    #[arg(long)]
    pub resolution: Option<u32>,
    /// Number of classes of the classifier (default: the architecture's own, 1000 for presets).
    #[arg(long)]
    pub num_classes: Option<u32>,
    /// Input channels (1 for grayscale data such as Fashion-MNIST).
    #[arg(long)]
    pub input_channels: Option<u32>,
    /// Print JSON instead of a table.
    #[arg(long)]
    pub json: bool,
}

/// Resolves SPEC and applies the overrides, validating the result.
pub fn resolve(
    spec: &str,
    resolution: Option<u32>,
    num_classes: Option<u32>,
    input_channels: Option<u32>,
) -> Result<ArchSpec> {
    // Every parse error already names the preset, file or block string at fault.
    let mut arch = parse_arch(spec)?;
    if let Some(resolution) = resolution {
        arch.resolution = resolution;
    }
    if let Some(classes) = num_classes {
        arch.num_classes = classes;
    }
    if let Some(channels) = input_channels {
        arch.input_channels = channels;
    }
    arch.validate().with_context(|| format!("architecture {}", Echo(spec)))?;
    Ok(arch)
}

pub fn run(args: Args) -> Result<ExitCode> {
    let arch = resolve(&args.spec, args.resolution, args.num_classes, args.input_channels)?;
    let breakdown = cost_breakdown(&arch);
    if args.json {
        outln!("{}", serde_json::to_string_pretty(&to_json(&args.spec, &arch, &breakdown))?)?;
    } else {
        out!("{}", render(&args.spec, &arch, &breakdown))?;
    }
    Ok(ExitCode::SUCCESS)
}

/// The JSON form: the totals, the block strings, a per-block breakdown and the spec itself
/// (so the output can be fed back as a SPEC file).
pub fn to_json(name: &str, arch: &ArchSpec, breakdown: &CostBreakdown) -> serde_json::Value {
    let blocks: Vec<_> = arch
        .blocks
        .iter()
        .zip(&breakdown.blocks)
        .map(|(block, cost)| {
            json!({
                "block": block.to_string(),
                "params": cost.cost.params,
                "flops": cost.cost.macs,
                "output_resolution": cost.output_resolution,
            })
        })
        .collect();
    json!({
        "name": name,
        "hash": arch_hash(arch),
        "canonical": canonical(arch),
        "params": breakdown.total.params,
        "flops": breakdown.total.macs,
        "resolution": arch.resolution,
        "num_classes": arch.num_classes,
        "input_channels": arch.input_channels,
        "blocks": arch.block_strings(),
        "breakdown": {
            "stem": breakdown.stem,
            "blocks": blocks,
            "head": breakdown.head,
            "classifier": breakdown.classifier,
        },
        "spec": arch,
    })
}

fn render(name: &str, arch: &ArchSpec, breakdown: &CostBreakdown) -> String {
    format!(
        "{name}: {res}×{res}×{ch} input, {classes} classes, dropout {do_}, \
         drop-connect {dc}, hash {hash}\n\n{table}\n\
         total: {params} parameters ({params_h}), {macs} multiply-adds ({macs_h})\n",
        res = arch.resolution,
        ch = arch.input_channels,
        classes = arch.num_classes,
        do_ = arch.dropout,
        dc = arch.drop_connect,
        hash = arch_hash(arch),
        table = layer_table(arch, breakdown).render(),
        params = breakdown.total.params,
        params_h = human_count(breakdown.total.params),
        macs = breakdown.total.macs,
        macs_h = human_count(breakdown.total.macs),
    )
}

/// One row per layer: the stem, every block, the head and the classifier.
fn layer_table(arch: &ArchSpec, breakdown: &CostBreakdown) -> Table {
    let mut table = Table::new([
        "stage",
        "operator",
        "k",
        "s",
        "e",
        "se",
        "skip",
        "channels",
        "layers",
        "out res",
        "params",
        "mult-adds",
    ]);
    let stem = FixedLayer {
        stage: "stem",
        operator: format!("Conv{k}x{k}", k = arch.stem_kernel),
        kernel: arch.stem_kernel.to_string(),
        stride: if arch.stem_stride == 1 { "1" } else { "2" },
        channels: (arch.input_channels, arch.stem_channels),
        output_resolution: arch.stem_conv_output_size(),
        cost: breakdown.stem,
    };
    table.row(stem.cells());
    if arch.stem_max_pool {
        let pool = FixedLayer {
            stage: "stem",
            operator: "MaxPool3x3".to_owned(),
            kernel: "3".to_owned(),
            stride: "2",
            channels: (arch.stem_channels, arch.stem_channels),
            output_resolution: arch.stem_output_size(),
            cost: Cost::default(),
        };
        table.row(pool.cells());
    }
    for (index, (block, cost)) in arch.blocks.iter().zip(&breakdown.blocks).enumerate() {
        table.row(block_cells(index + 1, block, cost));
    }
    if let Some(head_channels) = arch.head_channels {
        let head = FixedLayer {
            stage: "head",
            operator: "Conv1x1".to_owned(),
            kernel: "1".to_owned(),
            stride: "1",
            channels: (arch.last_block_channels(), head_channels),
            output_resolution: breakdown.final_resolution,
            cost: breakdown.head,
        };
        table.row(head.cells());
    }
    let classifier = FixedLayer {
        stage: "fc",
        operator: "Pool+FC".to_owned(),
        kernel: "-".to_owned(),
        stride: "-",
        channels: (arch.classifier_channels(), arch.num_classes),
        output_resolution: 1,
        cost: breakdown.classifier,
    };
    table.row(classifier.cells());
    table
}

/// A searched block's row: its choices, channels, repeats, output resolution and cost.
fn block_cells(number: usize, block: &BlockSpec, cost: &BlockCost) -> [String; 12] {
    [
        number.to_string(),
        block.op.display_name(block.expansion),
        block.kernel.to_string(),
        block.stride.to_string(),
        block.expansion.to_string(),
        if block.se_ratio > 0.0 { block.se_ratio.to_string() } else { "-".to_owned() },
        format!("{:?}", block.skip).to_lowercase(),
        format!("{}→{}", block.in_channels, block.out_channels),
        block.repeats.to_string(),
        cost.output_resolution.to_string(),
        human_count(cost.cost.params),
        human_count(cost.cost.macs),
    ]
}

/// A layer outside the searched blocks (stem, head, classifier): one layer with no
/// expansion, squeeze-excite or skip.
struct FixedLayer {
    stage: &'static str,
    operator: String,
    kernel: String,
    stride: &'static str,
    /// Input and output channels.
    channels: (u32, u32),
    output_resolution: u32,
    cost: Cost,
}

impl FixedLayer {
    fn cells(self) -> [String; 12] {
        let dash = || "-".to_owned();
        [
            self.stage.to_owned(),
            self.operator,
            self.kernel,
            self.stride.to_owned(),
            dash(),
            dash(),
            dash(),
            format!("{}→{}", self.channels.0, self.channels.1),
            "1".to_owned(),
            self.output_resolution.to_string(),
            human_count(self.cost.params),
            human_count(self.cost.macs),
        ]
    }
}
