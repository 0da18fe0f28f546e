//! `effnas export-model`: a trained network for PyTorch, as one safetensors file with
//! torchvision's names (the architecture, input normalisation, resolution and class names in
//! its header) or as a TorchScript module traced from the network.
//!
//! TorchScript: tch 0.24 cannot script a network built in Rust, but it can trace one
//! (`CModule::create_by_tracing` records the libtorch operations of one forward pass into a
//! TorchScript graph, with the weights as constants). The traced module runs in eval mode at any
//! batch size and resolution; `torch.jit.load(FILE)` reads it.

use std::path::{Path, PathBuf};
use std::process::ExitCode;

use anyhow::{bail, Context, Result};
use effnas_evaluator::model::{checkpoint, Model};
use tch::{CModule, Device, Kind, Tensor};

use crate::output::outln;

#[derive(Debug, clap::Args)]
#[command(
    after_help = "Not to be confused with `effnas export`, which exports a run's trials as CSV or JSON.

In Python, the safetensors file loads into torchvision (EfficientNet-B0 layouts, ResNets) or, for
any searched architecture, into the module scripts/effnas_torch.py builds from its header:
    python scripts/effnas_torch.py evaluate model.safetensors"
)]
pub struct Args {
    /// A checkpoint folder (`effnas train --save`) or a safetensors file written by effnas.
    pub checkpoint: PathBuf,
    /// What to write: `safetensors` (weights by torchvision's names, metadata in the header) or
    /// `torchscript` (a traced module for `torch.jit.load`).
    #[arg(long, value_enum, default_value_t = Format::Safetensors)]
    pub format: Format,
    /// The file to write (replaced whole, or left untouched on failure).
    #[arg(long, value_name = "FILE")]
    pub out: PathBuf,
    /// Print what was written as JSON.
    #[arg(long)]
    pub json: bool,
}

#[derive(Debug, Clone, Copy, PartialEq, Eq, clap::ValueEnum)]
pub enum Format {
    Safetensors,
    Torchscript,
}

/// A checkpoint folder, or a lone safetensors file whose header carries the architecture.
pub fn open_checkpoint(path: &Path, device: Device) -> Result<Model> {
    if path.is_dir() {
        checkpoint::load(path, device).with_context(|| format!("checkpoint {}", path.display()))
    } else if path.is_file() {
        checkpoint::import(path, None, None, device).with_context(|| format!("checkpoint {}", path.display()))
    } else {
        bail!("checkpoint {}: no such folder or file", path.display())
    }
}

pub fn run(args: Args) -> Result<ExitCode> {
    let mut model = open_checkpoint(&args.checkpoint, Device::Cpu)?;
    refuse_own_file(&args.out, &args.checkpoint)?;
    match args.format {
        Format::Safetensors => crate::files::replace_file(&args.out, |temporary| {
            Ok(checkpoint::write_weights(&model, temporary)?)
        })?,
        Format::Torchscript => {
            let traced = trace(&mut model)?;
            crate::files::replace_file(&args.out, |temporary| Ok(traced.save(temporary)?))?;
        }
    }
    let bytes = std::fs::metadata(&args.out).map(|m| m.len()).unwrap_or(0);
    if args.json {
        let doc = serde_json::json!({
            "out": args.out,
            "format": format!("{:?}", args.format).to_lowercase(),
            "bytes": bytes,
            "tensors": model.vs.variables().len(),
            "arch": model.arch,
            "meta": model.meta,
        });
        outln!("{}", serde_json::to_string_pretty(&doc)?)?;
    } else {
        outln!("wrote {} ({bytes} bytes, {} tensors)", args.out.display(), model.vs.variables().len())?;
    }
    Ok(ExitCode::SUCCESS)
}

/// Exporting must not write over the checkpoint it reads (its folder's weights, or the file).
fn refuse_own_file(out: &Path, checkpoint: &Path) -> Result<()> {
    let canonical = |p: &Path| std::fs::canonicalize(p).ok();
    let source =
        if checkpoint.is_dir() { checkpoint.join(checkpoint::WEIGHTS_FILE) } else { checkpoint.to_owned() };
    if canonical(out).is_some() && canonical(out) == canonical(&source) {
        bail!("--out {}: is the checkpoint being exported; choose another file", out.display());
    }
    Ok(())
}

/// The network's eval-mode forward pass traced into a TorchScript module. Tracing records the
/// weights as constants, which libtorch refuses for tensors that require gradients: the
/// variables are frozen first.
fn trace(model: &mut Model) -> Result<CModule> {
    model.vs.freeze();
    let (c, r) = (i64::from(model.arch.input_channels), i64::from(model.arch.resolution));
    let example = Tensor::f_randn([1, c, r, r], (Kind::Float, Device::Cpu))?;
    let mut failure = None;
    let traced = tch::no_grad(|| {
        CModule::create_by_tracing("EffnasNet", "forward", &[example], &mut |inputs| match model
            .net
            .try_forward(&inputs[0], false)
        {
            Ok(logits) => vec![logits],
            Err(e) => {
                failure = Some(e);
                vec![]
            }
        })
    });
    if let Some(e) = failure {
        bail!("tracing the network: {e}");
    }
    traced.context("tracing the network into TorchScript")
}
