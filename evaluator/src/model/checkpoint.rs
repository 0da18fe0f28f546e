//! Trained weights saved with their architecture and everything needed to use them, and loaded
//! again, here or in PyTorch.
//!
//! A checkpoint is a folder:
//! - `arch.json`: the `ArchSpec` (the same JSON `effnas arch --json` reads back);
//! - `weights.safetensors`: every variable by its torchvision name (see [`super`]), with the
//!   architecture and `meta.json`'s content in the file's own metadata header (`effnas.arch`,
//!   `effnas.meta`), so that the weights file alone is enough to rebuild the network;
//! - `meta.json` ([`Meta`]): batch-norm eps, the input normalisation and resolution, the class
//!   names. Absent from checkpoints written before it existed: those load with the defaults
//!   they were trained with (eps 1e-3, no normalisation recorded);
//! - `result.json` (optional): the training result the caller chose to keep.
//!
//! Loading is strict, as PyTorch's `load_state_dict(strict=True)`: every variable of the network
//! must be in the file with its shape, and the file must hold nothing else.
//!
//! From Python: `scripts/effnas_torch.py` reads a checkpoint into torchvision's EfficientNet or
//! ResNet, or into a module it builds for any member of the search space.

use std::borrow::Cow;
use std::collections::{BTreeMap, HashMap};
use std::path::{Path, PathBuf};

use effnas_space::ArchSpec;
use safetensors::tensor::{Dtype, SafeTensors, View};
use serde::{Deserialize, Serialize};
use tch::{Device, Kind, Tensor};

use super::{Model, NormConfig};
use crate::error::{EvalError, Result};

pub const ARCH_FILE: &str = "arch.json";
pub const WEIGHTS_FILE: &str = "weights.safetensors";
pub const RESULT_FILE: &str = "result.json";
pub const META_FILE: &str = "meta.json";

/// The keys of a weights file's metadata header that carry the architecture and the [`Meta`].
pub const ARCH_KEY: &str = "effnas.arch";
pub const META_KEY: &str = "effnas.meta";

/// How images are fed to the network, in torchvision's convention: resize to `resolution` ×
/// `resolution` (bilinear), scale pixels to [0, 1], then `(x − mean) / std` per channel
/// (`transforms.Normalize(mean, std)`). effnas takes the statistics from the training images.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct InputNorm {
    pub resolution: u32,
    pub mean: Vec<f64>,
    pub std: Vec<f64>,
}

/// What a user of the network needs besides its architecture and weights (`meta.json`).
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct Meta {
    /// The batch-norm epsilon the network computes with: effnas trains with 1e-3 (the TF
    /// reference); torchvision's EfficientNet-B0…B7 and ResNets use PyTorch's 1e-5.
    pub batch_norm_eps: f64,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub input: Option<InputNorm>,
    /// Class names by output index, when the data set has names (not just numbers).
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub class_names: Option<Vec<String>>,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub dataset: Option<String>,
}

impl Default for Meta {
    /// What a checkpoint without `meta.json` was trained with.
    fn default() -> Self {
        Meta { batch_norm_eps: NormConfig::default().eps, input: None, class_names: None, dataset: None }
    }
}

impl Meta {
    fn norm(&self) -> NormConfig {
        NormConfig { eps: self.batch_norm_eps, ..NormConfig::default() }
    }
}

/// Writes `model`'s architecture, metadata and weights into `dir` (created if needed), and
/// `extra` as `result.json` when given. Each file is written whole or not at all.
pub fn save<T: serde::Serialize>(model: &Model, dir: &Path, extra: Option<&T>) -> Result<()> {
    std::fs::create_dir_all(dir).map_err(|e| EvalError::file(dir, e))?;
    write_json(&dir.join(ARCH_FILE), &model.arch)?;
    write_json(&dir.join(META_FILE), &model.meta)?;
    write_weights(model, &dir.join(WEIGHTS_FILE))?;
    if let Some(extra) = extra {
        write_json(&dir.join(RESULT_FILE), extra)?;
    }
    Ok(())
}

/// Reads a checkpoint folder written by [`save`] and rebuilds the model on `device`.
pub fn load(dir: &Path, device: Device) -> Result<Model> {
    let arch_path = dir.join(ARCH_FILE);
    let text = std::fs::read_to_string(&arch_path).map_err(|e| EvalError::file(&arch_path, e))?;
    let arch: ArchSpec = serde_json::from_str(&text).map_err(|e| EvalError::file(&arch_path, e))?;
    let meta = read_meta(dir)?;
    let weights = dir.join(WEIGHTS_FILE);
    build_and_load(&arch, meta, &weights, device)
}

/// The checkpoint's `meta.json`, or the defaults of a checkpoint written before it existed.
pub fn read_meta(dir: &Path) -> Result<Meta> {
    let path = dir.join(META_FILE);
    if !path.exists() {
        return Ok(Meta::default());
    }
    let text = std::fs::read_to_string(&path).map_err(|e| EvalError::file(&path, e))?;
    serde_json::from_str(&text).map_err(|e| EvalError::file(&path, e))
}

/// Reads a lone safetensors file: effnas's own (`export-model`, or a checkpoint's
/// `weights.safetensors`), whose header carries the architecture and metadata, or a PyTorch
/// state dict with torchvision's names, for which `arch` must be given (and `meta`'s eps should
/// be PyTorch's 1e-5). A given `arch` or `meta` replaces the file's.
pub fn import(path: &Path, arch: Option<&ArchSpec>, meta: Option<Meta>, device: Device) -> Result<Model> {
    let header = read_header(path)?;
    let arch = match arch {
        Some(arch) => arch.clone(),
        None => {
            let text = header.get(ARCH_KEY).ok_or_else(|| {
                EvalError::file(
                    path,
                    format!("no architecture in the file's metadata ({ARCH_KEY}): name one"),
                )
            })?;
            serde_json::from_str(text).map_err(|e| EvalError::file(path, format!("{ARCH_KEY}: {e}")))?
        }
    };
    let meta = match (meta, header.get(META_KEY)) {
        (Some(meta), _) => meta,
        (None, Some(text)) => {
            serde_json::from_str(text).map_err(|e| EvalError::file(path, format!("{META_KEY}: {e}")))?
        }
        (None, None) => Meta::default(),
    };
    build_and_load(&arch, meta, path, device)
}

/// The [`Meta`] in a safetensors file's header, or the defaults when it has none.
pub fn import_meta(path: &Path) -> Result<Meta> {
    match read_header(path)?.get(META_KEY) {
        Some(text) => {
            serde_json::from_str(text).map_err(|e| EvalError::file(path, format!("{META_KEY}: {e}")))
        }
        None => Ok(Meta::default()),
    }
}

/// The metadata header of a safetensors file (empty when it has none).
pub fn read_header(path: &Path) -> Result<HashMap<String, String>> {
    let bytes = std::fs::read(path).map_err(|e| EvalError::file(path, e))?;
    let (_, metadata) = SafeTensors::read_metadata(&bytes)
        .map_err(|e| EvalError::file(path, format!("not a safetensors file: {e:?}")))?;
    Ok(metadata.metadata().clone().unwrap_or_default())
}

fn build_and_load(arch: &ArchSpec, meta: Meta, weights: &Path, device: Device) -> Result<Model> {
    let mut model = Model::with_norm(arch, device, meta.norm())?;
    load_strict(&model, weights)?;
    model.meta = meta;
    Ok(model)
}

/// Copies every tensor of `path` into the variable of the same name, refusing a file that lacks
/// one of the network's variables, holds one it does not have, or has another shape.
fn load_strict(model: &Model, path: &Path) -> Result<()> {
    if !path.exists() {
        return Err(EvalError::file(path, "no such file"));
    }
    let tensors = Tensor::read_safetensors(path).map_err(|e| EvalError::file(path, e))?;
    let mut file: BTreeMap<String, Tensor> = tensors.into_iter().collect();
    let variables = model.vs.variables();
    let mut names: Vec<&String> = variables.keys().collect();
    names.sort();
    let missing: Vec<&str> = names.iter().filter(|n| !file.contains_key(**n)).map(|n| n.as_str()).collect();
    if !missing.is_empty() {
        return Err(EvalError::file(path, format!("lacks tensors of the network, {}", listed(&missing))));
    }
    let unexpected: Vec<&str> =
        file.keys().filter(|n| !variables.contains_key(*n)).map(String::as_str).collect();
    if !unexpected.is_empty() {
        return Err(EvalError::file(
            path,
            format!("has tensors the network does not have, {}", listed(&unexpected)),
        ));
    }
    tch::no_grad(|| {
        for name in names {
            let (Some(source), Some(target)) = (file.remove(name), variables.get(name)) else { continue };
            if source.size() != target.size() {
                return Err(EvalError::file(
                    path,
                    format!(
                        "{name}: shape {:?} in the file, {:?} in the network",
                        source.size(),
                        target.size()
                    ),
                ));
            }
            let source = source.f_to_device(target.device())?.f_to_kind(target.kind())?;
            target.shallow_clone().f_copy_(&source)?;
        }
        Ok(())
    })
}

/// `names` counted, the first five listed: "3: a, b, c".
fn listed(names: &[&str]) -> String {
    let shown = names.iter().take(5).copied().collect::<Vec<_>>().join(", ");
    let more = if names.len() > 5 { format!(" and {} more", names.len() - 5) } else { String::new() };
    format!("{}: {shown}{more}", names.len())
}

/// Writes `model`'s weights as safetensors at `path` with torchvision's names, the
/// architecture and [`Meta`] in the metadata header (and `format: pt`, what PyTorch-side
/// tools expect). Written to a temporary file first, then renamed.
pub fn write_weights(model: &Model, path: &Path) -> Result<()> {
    let mut named = Vec::new();
    for (name, tensor) in model.vs.variables() {
        named.push((name, RawTensor::of(&tensor)?));
    }
    named.sort_by(|a, b| a.0.cmp(&b.0));
    let arch = serde_json::to_string(&model.arch).map_err(|e| EvalError::file(path, e))?;
    let meta = serde_json::to_string(&model.meta).map_err(|e| EvalError::file(path, e))?;
    let header = HashMap::from([
        ("format".to_owned(), "pt".to_owned()),
        (ARCH_KEY.to_owned(), arch),
        (META_KEY.to_owned(), meta),
    ]);
    let bytes = safetensors::tensor::serialize(named, &Some(header))
        .map_err(|e| EvalError::file(path, format!("{e:?}")))?;
    write_whole(path, &bytes)
}

/// A tensor's bytes on the CPU, row-major little-endian, for the safetensors writer. Channels-last
/// kernels (`Model::to_channels_last`) are copied contiguous first.
struct RawTensor {
    dtype: Dtype,
    shape: Vec<usize>,
    bytes: Vec<u8>,
}

impl RawTensor {
    fn of(tensor: &Tensor) -> Result<Self> {
        let t = tensor.f_detach()?.f_to_device(Device::Cpu)?.f_contiguous()?;
        let shape = t.size().iter().map(|&d| d as usize).collect();
        let n = t.numel();
        let (dtype, bytes) = match t.kind() {
            Kind::Int64 => {
                let mut values = vec![0i64; n];
                t.f_copy_data(&mut values, n)?;
                (Dtype::I64, values.iter().flat_map(|v| v.to_le_bytes()).collect())
            }
            _ => {
                let mut values = vec![0f32; n];
                t.f_to_kind(Kind::Float)?.f_copy_data(&mut values, n)?;
                (Dtype::F32, values.iter().flat_map(|v| v.to_le_bytes()).collect())
            }
        };
        Ok(RawTensor { dtype, shape, bytes })
    }
}

impl View for RawTensor {
    fn dtype(&self) -> Dtype {
        self.dtype
    }
    fn shape(&self) -> &[usize] {
        &self.shape
    }
    fn data(&self) -> Cow<'_, [u8]> {
        Cow::Borrowed(&self.bytes)
    }
    fn data_len(&self) -> usize {
        self.bytes.len()
    }
}

fn write_json<T: Serialize + ?Sized>(path: &Path, value: &T) -> Result<()> {
    let json = serde_json::to_string_pretty(value).map_err(|e| EvalError::file(path, e))?;
    write_whole(path, (json + "\n").as_bytes())
}

/// Writes `bytes` to a temporary file beside `path`, then renames it over `path`.
pub fn write_whole(path: &Path, bytes: &[u8]) -> Result<()> {
    let name = path.file_name().map(|n| n.to_string_lossy().into_owned()).unwrap_or_default();
    let temporary: PathBuf = path.with_file_name(format!(".{name}.{}.tmp", std::process::id()));
    let written = std::fs::write(&temporary, bytes).and_then(|()| std::fs::rename(&temporary, path));
    if let Err(e) = written {
        let _ = std::fs::remove_file(&temporary);
        return Err(EvalError::file(path, e));
    }
    Ok(())
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::model::{quarter_b0, randomise_batch_norm};

    /// save → load gives the same logits, the metadata back, and eps 1e-5 is honoured.
    #[test]
    fn a_checkpoint_round_trips_with_its_metadata() -> std::result::Result<(), Box<dyn std::error::Error>> {
        tch::manual_seed(3);
        let arch = quarter_b0(10, 32)?;
        let norm = NormConfig { eps: 1e-5, ..NormConfig::default() };
        let mut model = Model::with_norm(&arch, Device::Cpu, norm)?;
        randomise_batch_norm(&model)?;
        model.meta.input = Some(InputNorm { resolution: 32, mean: vec![0.1, 0.2, 0.3], std: vec![0.5; 3] });
        model.meta.class_names = Some((0..10).map(|c| format!("class {c}")).collect());
        let dir = tempfile::tempdir()?;
        save::<()>(&model, dir.path(), None)?;
        let loaded = load(dir.path(), Device::Cpu)?;
        assert_eq!(loaded.meta, model.meta);
        assert_eq!(loaded.meta.batch_norm_eps, 1e-5);
        let xs = Tensor::f_randn([2, 3, 32, 32], (Kind::Float, Device::Cpu))?;
        let gap = (model.forward(&xs, false)? - loaded.forward(&xs, false)?).f_abs()?.f_max()?;
        assert_eq!(gap.f_double_value(&[])?, 0.0);
        // The weights file alone carries the architecture and the metadata.
        let imported = import(&dir.path().join(WEIGHTS_FILE), None, None, Device::Cpu)?;
        assert_eq!((imported.arch.clone(), imported.meta.clone()), (arch, model.meta.clone()));
        Ok(())
    }

    /// A checkpoint from before `meta.json` loads with the defaults it was trained with.
    #[test]
    fn a_checkpoint_without_meta_loads_with_the_old_defaults(
    ) -> std::result::Result<(), Box<dyn std::error::Error>> {
        let model = Model::new(&quarter_b0(10, 32)?, Device::Cpu)?;
        let dir = tempfile::tempdir()?;
        save::<()>(&model, dir.path(), None)?;
        std::fs::remove_file(dir.path().join(META_FILE))?;
        // As the old writer did: no metadata header.
        let named: Vec<(String, Tensor)> = model.vs.variables().into_iter().collect();
        Tensor::write_safetensors(&named, dir.path().join(WEIGHTS_FILE))?;
        let loaded = load(dir.path(), Device::Cpu)?;
        assert_eq!(loaded.meta, Meta::default());
        assert_eq!(loaded.meta.batch_norm_eps, 1e-3);
        Ok(())
    }

    /// A file lacking a tensor, with one too many, or with a wrong shape is refused by name.
    #[test]
    fn loading_is_strict() -> std::result::Result<(), Box<dyn std::error::Error>> {
        let arch = quarter_b0(10, 32)?;
        let model = Model::new(&arch, Device::Cpu)?;
        let dir = tempfile::tempdir()?;
        let path = dir.path().join("w.safetensors");
        let mut named: Vec<(String, Tensor)> = model.vs.variables().into_iter().collect();
        named.sort_by(|a, b| a.0.cmp(&b.0));
        let write = |named: &[(String, Tensor)]| Tensor::write_safetensors(named, &path);
        let without_head: Vec<_> = named
            .iter()
            .filter(|(n, _)| n != "classifier.1.bias")
            .map(|(n, t)| (n.clone(), t.shallow_clone()))
            .collect();
        write(&without_head)?;
        let error =
            import(&path, Some(&arch), None, Device::Cpu).err().map(|e| e.to_string()).unwrap_or_default();
        assert!(error.contains("lacks tensors of the network, 1: classifier.1.bias"), "{error}");
        let mut extra: Vec<_> = named.iter().map(|(n, t)| (n.clone(), t.shallow_clone())).collect();
        extra.push(("aux.weight".to_owned(), Tensor::f_zeros([2], (Kind::Float, Device::Cpu))?));
        write(&extra)?;
        let error =
            import(&path, Some(&arch), None, Device::Cpu).err().map(|e| e.to_string()).unwrap_or_default();
        assert!(error.contains("aux.weight"), "{error}");
        let other = Model::new(&quarter_b0(7, 32)?, Device::Cpu)?;
        let named: Vec<(String, Tensor)> = other.vs.variables().into_iter().collect();
        write(&named)?;
        let error =
            import(&path, Some(&arch), None, Device::Cpu).err().map(|e| e.to_string()).unwrap_or_default();
        assert!(error.contains("classifier.1.") && error.contains("shape"), "{error}");
        // Without an architecture in the header nor given: refused, naming what to do.
        let error = import(&path, None, None, Device::Cpu).err().map(|e| e.to_string()).unwrap_or_default();
        assert!(error.contains("no architecture"), "{error}");
        Ok(())
    }
}
