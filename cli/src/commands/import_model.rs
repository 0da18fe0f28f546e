//! `effnas import-model`: PyTorch weights into an effnas checkpoint folder. The weights are a
//! safetensors state dict with torchvision's names (`features.0.0.weight`, …, `classifier.1.*`
//! for EfficientNet and MobileNetV2; `conv1`, `layer1.0.*`, `fc.*` for ResNet), which are
//! effnas's own names ([`effnas_evaluator::model`]); loading is strict (every tensor, by name
//! and shape, nothing extra).

use std::path::PathBuf;
use std::process::ExitCode;

use anyhow::{bail, Context, Result};
use effnas_evaluator::model::checkpoint::{self, InputNorm, Meta};
use tch::Device;

use crate::output::outln;

#[derive(Debug, clap::Args)]
#[command(
    after_help = "torchvision's EfficientNet-B0 with its ImageNet weights, in effnas: write its state dict as
safetensors (`write_safetensors(path, model.state_dict())` of scripts/effnas_torch.py, or the
safetensors package's `save_file`), then
    effnas import-model b0.safetensors --arch efficientnet-b0 \\
        --mean 0.485,0.456,0.406 --std 0.229,0.224,0.225 --out b0/
A file written by `effnas export-model` needs no flags: its header carries all of it."
)]
pub struct Args {
    /// A safetensors file: a PyTorch state dict with torchvision's names, or effnas's export.
    pub weights: PathBuf,
    /// The architecture (a preset, block strings or a JSON file); required when the file's
    /// header does not carry one (a plain PyTorch state dict).
    #[arg(long, value_name = "SPEC")]
    pub arch: Option<String>,
    /// Classes of the classifier (with --arch; a preset has ImageNet's 1000).
    #[arg(long)]
    pub num_classes: Option<u32>,
    /// Input resolution the network is meant for (with --arch).
    #[arg(long)]
    pub resolution: Option<u32>,
    /// Batch-norm eps the weights were trained with. Default: the file's header, else PyTorch's
    /// 1e-5 (torchvision's EfficientNet-B0…B7 and ResNets; effnas itself trains with 1e-3).
    #[arg(long)]
    pub bn_eps: Option<f64>,
    /// Per-channel input mean of pixels in [0, 1], comma-separated (with --std).
    #[arg(long, value_delimiter = ',', requires = "std")]
    pub mean: Option<Vec<f64>>,
    /// Per-channel input standard deviation of pixels in [0, 1], comma-separated (with --mean).
    #[arg(long, value_delimiter = ',', requires = "mean")]
    pub std: Option<Vec<f64>>,
    /// The checkpoint folder to write (must not hold a checkpoint yet).
    #[arg(long, value_name = "DIR")]
    pub out: PathBuf,
    /// Print the checkpoint's architecture and metadata as JSON.
    #[arg(long)]
    pub json: bool,
}

pub fn run(args: Args) -> Result<ExitCode> {
    if args.out.join(checkpoint::WEIGHTS_FILE).exists() || args.out.join(checkpoint::ARCH_FILE).exists() {
        bail!("--out {}: already holds a checkpoint; choose another folder", args.out.display());
    }
    let header = checkpoint::read_header(&args.weights)?;
    let arch = match &args.arch {
        Some(spec) => {
            let mut arch = effnas_space::parse_arch(spec).context("--arch")?;
            arch.num_classes = args.num_classes.unwrap_or(arch.num_classes);
            arch.resolution = args.resolution.unwrap_or(arch.resolution);
            arch.validate().context("--arch")?;
            Some(arch)
        }
        None if !header.contains_key(checkpoint::ARCH_KEY) => bail!(
            "{}: a plain state dict (no architecture in its header): name one with --arch",
            args.weights.display()
        ),
        None => None,
    };
    let meta = meta(&args, header.contains_key(checkpoint::META_KEY), arch.as_ref())?;
    let model = checkpoint::import(&args.weights, arch.as_ref(), meta, Device::Cpu)?;
    if let Some(input) = &model.meta.input {
        if input.mean.len() != model.arch.input_channels as usize {
            bail!("--mean: {} values for {} input channels", input.mean.len(), model.arch.input_channels);
        }
    }
    checkpoint::save::<()>(&model, &args.out, None)
        .with_context(|| format!("writing {}", args.out.display()))?;
    if args.json {
        let doc = serde_json::json!({ "out": args.out, "arch": model.arch, "meta": model.meta });
        outln!("{}", serde_json::to_string_pretty(&doc)?)?;
    } else {
        outln!("wrote checkpoint {} ({} tensors)", args.out.display(), model.vs.variables().len())?;
    }
    Ok(ExitCode::SUCCESS)
}

/// The metadata the flags give, or `None` to take the file's header as it is.
fn meta(args: &Args, in_header: bool, arch: Option<&effnas_space::ArchSpec>) -> Result<Option<Meta>> {
    if in_header && args.bn_eps.is_none() && args.mean.is_none() {
        return Ok(None);
    }
    let mut meta = if in_header {
        checkpoint::import_meta(&args.weights)?
    } else {
        Meta { batch_norm_eps: 1e-5, ..Meta::default() }
    };
    if let Some(eps) = args.bn_eps {
        if !(eps > 0.0 && eps < 1.0) {
            bail!("--bn-eps {eps}: must be between 0 and 1");
        }
        meta.batch_norm_eps = eps;
    }
    if let (Some(mean), Some(std)) = (&args.mean, &args.std) {
        if mean.len() != std.len() || std.iter().any(|s| *s <= 0.0) {
            bail!("--mean and --std: one value a channel each, every std positive");
        }
        let resolution = arch.map_or(meta.input.as_ref().map_or(224, |i| i.resolution), |a| a.resolution);
        meta.input = Some(InputNorm { resolution, mean: mean.clone(), std: std.clone() });
    }
    Ok(Some(meta))
}
