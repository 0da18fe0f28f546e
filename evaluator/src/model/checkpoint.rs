//! Trained weights saved with their architecture beside them, and loaded again for evaluation.
//!
//! A checkpoint is a folder:
//! - `arch.json`: the `ArchSpec` (the same JSON `effnas arch --json` reads back);
//! - `weights.safetensors`: every variable by its torchvision-style name (see [`super`]);
//! - `result.json` (optional): the training result the caller chose to keep.
//!
//! From Python, without effnas: read `weights.safetensors` with the `safetensors` package
//! (`safetensors.torch.load_file`) and pass it to `efficientnet_b0(num_classes=N).load_state_dict`.

use std::path::Path;

use effnas_space::ArchSpec;
use tch::Device;

use super::{Model, NormConfig};
use crate::error::{EvalError, Result};

pub const ARCH_FILE: &str = "arch.json";
pub const WEIGHTS_FILE: &str = "weights.safetensors";
pub const RESULT_FILE: &str = "result.json";

/// Writes `model`'s architecture and weights into `dir` (created if needed), and `extra` as
/// `result.json` when given.
pub fn save<T: serde::Serialize>(model: &Model, dir: &Path, extra: Option<&T>) -> Result<()> {
    std::fs::create_dir_all(dir).map_err(|e| EvalError::file(dir, e))?;
    let arch_path = dir.join(ARCH_FILE);
    let json = serde_json::to_string_pretty(&model.arch).map_err(|e| EvalError::file(&arch_path, e))?;
    std::fs::write(&arch_path, json + "\n").map_err(|e| EvalError::file(&arch_path, e))?;
    let weights = dir.join(WEIGHTS_FILE);
    // Contiguous copies: safetensors stores row-major data, and a channels-last network's kernels
    // (`Model::to_channels_last`) are not.
    let mut named = model
        .vs
        .variables()
        .into_iter()
        .map(|(name, t)| Ok((name, if t.is_contiguous() { t } else { t.f_contiguous()? })))
        .collect::<std::result::Result<Vec<_>, tch::TchError>>()?;
    named.sort_by(|a, b| a.0.cmp(&b.0));
    tch::Tensor::write_safetensors(&named, &weights).map_err(|e| EvalError::file(&weights, e))?;
    if let Some(extra) = extra {
        let path = dir.join(RESULT_FILE);
        let json = serde_json::to_string_pretty(extra).map_err(|e| EvalError::file(&path, e))?;
        std::fs::write(&path, json + "\n").map_err(|e| EvalError::file(&path, e))?;
    }
    Ok(())
}

/// Reads a checkpoint folder written by [`save`] and rebuilds the model on `device`.
pub fn load(dir: &Path, device: Device) -> Result<Model> {
    let arch_path = dir.join(ARCH_FILE);
    let text = std::fs::read_to_string(&arch_path).map_err(|e| EvalError::file(&arch_path, e))?;
    let arch: ArchSpec = serde_json::from_str(&text).map_err(|e| EvalError::file(&arch_path, e))?;
    let mut model = Model::with_norm(&arch, device, NormConfig::default())?;
    let weights = dir.join(WEIGHTS_FILE);
    if !weights.exists() {
        return Err(EvalError::file(&weights, "no such file"));
    }
    model.vs.load(&weights).map_err(|e| EvalError::file(&weights, e))?;
    Ok(model)
}
