//! `effnas bench-infer`: inference speed of a network, as the paper reports it next to FLOPS:
//! median and 90th-percentile latency and throughput for each batch size, in eval mode without
//! gradients, after warm-up passes. The measurement is `effnas_evaluator::train::time_inference`,
//! the same code that gives a search's and `train`'s latency figure (batch 1), with every batch
//! norm folded into the convolution before it (`--separate-norms` times them as passes of their
//! own, as evaluation during training and PyTorch's eager modules run them).

use std::path::Path;
use std::process::ExitCode;

use anyhow::{bail, Context, Result};
use effnas_evaluator::device::{device_name, resolve_device};
use effnas_evaluator::model::Model;
use effnas_evaluator::train::{time_inference_with, BatchNorms, InferenceTiming};
use serde::Serialize;
use tch::Device;

use crate::output::{out, outln};
use crate::table::Table;

#[derive(Debug, clap::Args)]
#[command(after_help = "Examples:
    effnas bench-infer efficientnet-b0 --batch 1,8,64 --threads 2
    effnas bench-infer runs/b0-fashion/ --json          # a checkpoint folder (or exported .safetensors)
scripts/bench-infer runs this and torchvision's efficientnet_b0 side by side on the same machine.")]
pub struct Args {
    /// The network: an architecture (preset, block strings, JSON file) with random weights, or a
    /// checkpoint folder, or a safetensors file written by `effnas export-model`.
    pub network: String,
    /// Batch sizes, comma-separated.
    #[arg(long, value_delimiter = ',', default_value = "1,8,64", value_parser = clap::value_parser!(u32).range(1..=4096))]
    pub batch: Vec<u32>,
    /// Input resolution (default: the network's own).
    #[arg(long, value_parser = clap::value_parser!(u32).range(8..=4096))]
    pub resolution: Option<u32>,
    /// libtorch CPU threads (default: libtorch's choice, all cores).
    #[arg(long, value_parser = crate::flags::threads)]
    pub threads: Option<usize>,
    /// cpu, cuda or cuda:N (default: cpu).
    #[arg(long, default_value = "cpu")]
    pub device: String,
    /// Untimed forward passes before timing, per batch size.
    #[arg(long, default_value_t = 5)]
    pub warmup: usize,
    /// Timed forward passes per batch size.
    #[arg(long, default_value_t = 30, value_parser = clap::value_parser!(u32).range(1..=100_000))]
    pub runs: u32,
    /// Run each batch norm as a pass of its own over its convolution's output (as evaluation
    /// during training, and PyTorch's eager modules, do) instead of folded into the
    /// convolution's weights, the deployed form that is the default.
    #[arg(long)]
    pub separate_norms: bool,
    /// Print JSON instead of a table.
    #[arg(long)]
    pub json: bool,
}

#[derive(Debug, Serialize)]
struct Report {
    network: String,
    blocks: Vec<String>,
    params: u64,
    /// Multiply-adds at the benchmarked resolution.
    flops: u64,
    device: String,
    threads: i32,
    warmup: usize,
    batch_norms: BatchNorms,
    timings: Vec<InferenceTiming>,
}

/// A checkpoint (folder or exported file) when `text` names one, else an architecture with
/// random weights.
fn open_network(text: &str, device: Device) -> Result<Model> {
    let path = Path::new(text);
    if path.is_dir() || (path.is_file() && text.ends_with(".safetensors")) {
        return super::export_model::open_checkpoint(path, device);
    }
    let arch = effnas_space::parse_arch(text).context("network")?;
    Ok(Model::new(&arch, device)?)
}

pub fn run(args: Args) -> Result<ExitCode> {
    let device = resolve_device(&args.device).with_context(|| format!("--device {:?}", args.device))?;
    if let Some(threads) = args.threads {
        tch::set_num_threads(i32::try_from(threads).unwrap_or(i32::MAX));
    }
    let model = open_network(&args.network, device)?;
    let mut arch = model.arch.clone();
    arch.resolution = args.resolution.unwrap_or(arch.resolution);
    if let Err(e) = arch.validate() {
        bail!("--resolution {}: {e}", arch.resolution);
    }
    let cost = effnas_space::cost(&arch);
    let norms = if args.separate_norms { BatchNorms::Separate } else { BatchNorms::Folded };
    let mut timings = Vec::new();
    for &batch in &args.batch {
        let (resolution, warmup, runs) = (Some(arch.resolution), args.warmup, args.runs as usize);
        let timing = time_inference_with(&model, batch as usize, resolution, warmup, runs, norms)
            .with_context(|| format!("batch {batch}"))?;
        timings.push(timing);
    }
    let report = Report {
        network: args.network.clone(),
        blocks: arch.block_strings(),
        params: cost.params,
        flops: cost.macs,
        device: device_name(device),
        threads: tch::get_num_threads(),
        warmup: args.warmup,
        batch_norms: norms,
        timings,
    };
    if args.json {
        outln!("{}", serde_json::to_string_pretty(&report)?)?;
    } else {
        out!("{}", render(&report))?;
    }
    Ok(ExitCode::SUCCESS)
}

fn render(report: &Report) -> String {
    let mut text = format!(
        "{}: {} parameters, {} multiply-adds at {} px; {} ({} threads), eval mode, no gradients, batch norms {}, {} warm-up passes\n",
        report.network,
        report.params,
        report.flops,
        report.timings.first().map_or(0, |t| t.resolution),
        report.device,
        report.threads,
        if report.batch_norms == BatchNorms::Folded { "folded" } else { "separate" },
        report.warmup
    );
    let mut table = Table::new(["batch", "runs", "median ms", "p90 ms", "images/s"]);
    for t in &report.timings {
        table.row([
            t.batch.to_string(),
            t.runs.to_string(),
            format!("{:.2}", t.median_ms),
            format!("{:.2}", t.p90_ms),
            format!("{:.1}", t.images_per_second),
        ]);
    }
    text.push_str(&table.render());
    text
}
