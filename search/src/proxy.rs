//! The proxy task (MnasNet §4, EfficientNet §4: candidates are trained briefly on a held-out
//! split instead of to convergence): which data, how many images and epochs, at what resolution
//! and multipliers, on which devices.
//!
//! [`ProxySettings`] is the serde form stored with a run (and read back by `--resume`); it is
//! not the command line's flag struct, so renaming a flag never breaks an old run.
//! [`ResolvedProxy`] is the same settings with the data loaded and the devices checked.
//! [`ProxyKey`] is the one function that says which stored results may be reused.

use effnas_evaluator::data;
use effnas_evaluator::device::resolve_device;
use effnas_evaluator::model::Precision;
use effnas_evaluator::optim::OptimizerKind;
use effnas_evaluator::train::{ProxyConfig, ProxyData};
use effnas_space::{scale, ArchSpec, Multipliers};
use serde::{Deserialize, Serialize};
use serde_json::{json, Value};
use sha2::{Digest, Sha256};
use std::ops::RangeInclusive;

/// Why proxy settings cannot be used.
#[derive(Debug, thiserror::Error)]
pub enum ProxyError {
    /// A setting out of its range; `setting` is the stored field's name.
    #[error("{setting}: {reason}")]
    Invalid { setting: &'static str, reason: String },
    #[error("device {device:?}: {source}")]
    Device { device: String, source: effnas_evaluator::EvalError },
    #[error("data set {dataset:?}: {source}")]
    Data { dataset: String, source: effnas_evaluator::data::DataError },
    #[error("preparing the proxy data from {dataset}: {source}")]
    Split { dataset: String, source: effnas_evaluator::EvalError },
    #[error("proxy architecture: {0}")]
    Arch(#[from] effnas_evaluator::EvalError),
    #[error("proxy architecture: {0}")]
    Space(#[from] effnas_space::SpaceError),
}

fn invalid(setting: &'static str, reason: impl Into<String>) -> ProxyError {
    ProxyError::Invalid { setting, reason: reason.into() }
}

/// Proxy resolution in pixels: below 8 the stem and the first strided blocks leave nothing;
/// above 1024 one proxy outgrows memory.
pub const RESOLUTION: RangeInclusive<u32> = 8..=1024;
/// Width and depth multipliers of the proxy: above 0, at most this.
pub const MAX_MULTIPLIER: f64 = 8.0;
/// Training images of a proxy: a step needs two (batch norm), so fewer train nothing.
pub const TRAIN_IMAGES: RangeInclusive<usize> = 2..=100_000_000;
/// Validation images held out of the training set.
pub const VALIDATION_IMAGES: RangeInclusive<usize> = 1..=100_000_000;

/// The proxy task of a search or compound run, as stored with the run. Field names are part of
/// the stored format: rename none of them without a version bump in [`crate::config`].
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct ProxySettings {
    /// `fashion-mnist` or a folder (IDX, CIFAR-10 batches, class sub-folders).
    pub dataset: String,
    pub epochs: u32,
    /// Training images of each proxy (a fixed, seeded, class-balanced subset).
    pub train_images: usize,
    /// Images held out of the training set for validation.
    pub validation_images: usize,
    /// Proxy resolution in pixels of a network whose own resolution is the reference.
    pub resolution: u32,
    pub width: f64,
    pub depth: f64,
    pub batch_size: usize,
    /// Peak learning rate (SGD with momentum 0.9, cosine schedule, short warm-up).
    pub lr: f64,
    /// cpu, cuda, cuda:N, or a comma-separated list.
    pub device: String,
    /// Seconds a proxy may train before it counts as failed.
    pub time_limit: Option<f64>,
    /// The arithmetic of training. Runs stored before this setting existed trained in fp32.
    #[serde(default)]
    pub precision: PrecisionSetting,
    /// Kernels and activations laid out channels-last (speed only: outside the proxy key).
    #[serde(default)]
    pub channels_last: bool,
    /// The stem's stride in every proxy network, replacing the architecture's own: 1 keeps a
    /// small image four times larger through the network (at 32 px, EfficientNet's total
    /// stride of 32 ends in a 1 × 1 map; CIFAR-style adaptations use a stride-1 stem).
    /// Absent (the architecture's own) from runs stored before it existed and from their keys.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub stem_stride: Option<u32>,
}

/// A proxy's precision as stored with its run: `auto` is bf16 (autocast-style: bf16 arithmetic,
/// fp32 weights and optimizer state) when every device of the run is a GPU, fp32 otherwise.
/// Resolved from the run's `device` setting, not from the device a worker ends up on, so that
/// a run's proxy key (which records the precision) is the same on every worker.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Default, Serialize, Deserialize)]
#[serde(rename_all = "lowercase")]
pub enum PrecisionSetting {
    Auto,
    #[default]
    Fp32,
    Bf16,
}

impl Default for ProxySettings {
    /// The main job's proxy: 2,000 images for one epoch at width 0.25, depth 0.5 and 32 px. The
    /// proxy-fidelity study (experiments/proxy-fidelity) chose it: of the cheap proxies it
    /// measured against a 24× longer reference, it has the highest rank agreement (Kendall τ) per
    /// CPU-minute; two epochs, the default before, agreed no better at 1.5× the CPU.
    fn default() -> Self {
        ProxySettings {
            dataset: data::DEFAULT_DATASET.to_owned(),
            epochs: 1,
            train_images: 2000,
            validation_images: 1000,
            resolution: 32,
            width: 0.25,
            depth: 0.5,
            batch_size: 64,
            lr: 0.1,
            device: "cpu".to_owned(),
            time_limit: None,
            precision: PrecisionSetting::Auto,
            channels_last: false,
            stem_stride: None,
        }
    }
}

/// Proxy settings with the data loaded and the devices checked.
pub struct ResolvedProxy {
    pub settings: ProxySettings,
    /// The model resolution that trains at `settings.resolution`; other resolutions scale in
    /// proportion (a compound point at γ = 1.15 trains at 1.15 × the proxy resolution).
    pub reference_resolution: u32,
    pub data: ProxyData,
    pub config: ProxyConfig,
    pub devices: Vec<tch::Device>,
}

impl ProxySettings {
    /// Checks every setting against the ranges the trainer accepts (the same checks as
    /// [`ProxyConfig::validate`] for what they share, through the config itself).
    pub fn validate(&self) -> Result<(), ProxyError> {
        let counts = [
            ("train_images", self.train_images, TRAIN_IMAGES),
            ("validation_images", self.validation_images, VALIDATION_IMAGES),
        ];
        for (setting, value, range) in counts {
            if !range.contains(&value) {
                let (low, high) = range.into_inner();
                return Err(invalid(setting, format!("{value} is out of range ({low} to {high})")));
            }
        }
        if !RESOLUTION.contains(&self.resolution) {
            let (low, high) = RESOLUTION.into_inner();
            return Err(invalid(
                "resolution",
                format!("{} is out of range ({low} to {high})", self.resolution),
            ));
        }
        for (setting, value) in [("width", self.width), ("depth", self.depth)] {
            if !(value.is_finite() && value > 0.0 && value <= MAX_MULTIPLIER) {
                return Err(invalid(
                    setting,
                    format!("{value} is out of range (above 0, at most {MAX_MULTIPLIER})"),
                ));
            }
        }
        self.training_config(0)
            .validate()
            .map_err(|e| ProxyError::Invalid { setting: "training", reason: e.to_string() })
    }

    /// The trainer's configuration for these settings and `seed`.
    pub fn training_config(&self, seed: u64) -> ProxyConfig {
        ProxyConfig {
            epochs: self.epochs,
            batch_size: self.batch_size,
            optimizer: OptimizerKind::SGD,
            lr: self.lr,
            seed,
            time_limit: self.time_limit,
            precision: self.precision(),
            channels_last: self.channels_last,
            ..ProxyConfig::default()
        }
    }

    /// The precision the proxies train in: `auto` is bf16 when every device is a GPU.
    pub fn precision(&self) -> Precision {
        match self.precision {
            PrecisionSetting::Fp32 => Precision::Fp32,
            PrecisionSetting::Bf16 => Precision::Bf16,
            PrecisionSetting::Auto if self.on_gpus_only() => Precision::Bf16,
            PrecisionSetting::Auto => Precision::Fp32,
        }
    }

    /// Whether every device of the run is the CPU.
    pub fn on_cpu_only(&self) -> bool {
        self.device.split(',').all(|d| d.trim() == "cpu")
    }

    /// Whether every device of the run is a GPU.
    pub fn on_gpus_only(&self) -> bool {
        self.device.split(',').all(|d| d.trim().starts_with("cuda"))
    }

    /// Checks the settings and the devices, then loads the data and makes the fixed split.
    /// `reference_resolution` is the resolution of a network that trains at `resolution`.
    pub fn resolve(&self, seed: u64, reference_resolution: u32) -> Result<ResolvedProxy, ProxyError> {
        self.validate()?;
        let devices = self
            .device
            .split(',')
            .map(|d| {
                resolve_device(d.trim()).map_err(|source| ProxyError::Device { device: d.to_owned(), source })
            })
            .collect::<Result<Vec<_>, _>>()?;
        let dataset = data::load(&self.dataset)
            .map_err(|source| ProxyError::Data { dataset: self.dataset.clone(), source })?;
        // The split seed is fixed, not the run's seed: every run on this data validates on the
        // same images.
        let data =
            ProxyData::from_dataset(&dataset, self.validation_images, Some(self.train_images), false, 0)
                .map_err(|source| ProxyError::Split { dataset: self.dataset.clone(), source })?;
        Ok(ResolvedProxy {
            settings: self.clone(),
            reference_resolution,
            data,
            config: self.training_config(seed),
            devices,
        })
    }
}

impl ProxySettings {
    /// The key under which results of these settings trained with `seed` are stored and
    /// reused; `reference_resolution` as in [`ProxySettings::resolve`].
    pub fn key(&self, seed: u64, reference_resolution: u32) -> String {
        let config = self.training_config(seed);
        ProxyKey {
            dataset: &self.dataset,
            validation_images: self.validation_images,
            train_images: Some(self.train_images),
            resolution: self.resolution,
            reference_resolution,
            width: self.width,
            depth: self.depth,
            stem_stride: self.stem_stride,
            config: &config,
        }
        .to_string()
    }
}

impl ResolvedProxy {
    /// The key under which this proxy's results are stored and reused.
    pub fn key(&self) -> String {
        self.settings.key(self.config.seed, self.reference_resolution)
    }

    /// The network a proxy trains for a searched architecture: the data's input channels and
    /// classes, the width and depth multipliers, and the proxy resolution scaled by the
    /// architecture's resolution over the reference.
    pub fn proxy_arch(&self, arch: &ArchSpec) -> Result<ArchSpec, ProxyError> {
        let multipliers =
            Multipliers { width: self.settings.width, depth: self.settings.depth, resolution: 1.0 };
        let scaled = scale(arch, multipliers)?;
        let resolution =
            proxy_resolution(arch.resolution, self.settings.resolution, self.reference_resolution);
        let mut adapted = self.data.adapt(&scaled, Some(resolution))?;
        if let Some(stride) = self.settings.stem_stride {
            adapted.stem_stride = stride;
        }
        Ok(adapted)
    }
}

/// The pixels a network of `own` resolution trains at when one of `reference` trains at `proxy`.
pub fn proxy_resolution(own: u32, proxy: u32, reference: u32) -> u32 {
    let ratio = f64::from(own) / f64::from(reference.max(1));
    (f64::from(proxy) * ratio).round().max(1.0) as u32
}

/// Everything that changes a proxy's result, and nothing that does not (where it runs, how
/// often the loss is checked, the evaluation batch, the time limit, the reward): the one
/// definition of which stored results `search`, `compound` and `train --db` may reuse.
#[derive(Debug, Clone, Copy)]
pub struct ProxyKey<'a> {
    pub dataset: &'a str,
    pub validation_images: usize,
    /// The training-image budget; `None`: every image left after the validation split.
    pub train_images: Option<usize>,
    /// Proxy resolution of a network whose own resolution is `reference_resolution`.
    pub resolution: u32,
    pub reference_resolution: u32,
    pub width: f64,
    pub depth: f64,
    /// The stem stride imposed on every network ([`ProxySettings::stem_stride`]); `None`, the
    /// architecture's own, leaves the key as it was before the setting existed.
    pub stem_stride: Option<u32>,
    pub config: &'a ProxyConfig,
}

/// Fields of [`ProxyConfig`] that do not change what a training measures.
const NOT_IN_KEY: [&str; 6] =
    ["time_limit", "check_every", "eval_batch_size", "measure_latency", "objective", "channels_last"];

impl ProxyKey<'_> {
    fn settings(&self) -> Value {
        let mut config = serde_json::to_value(self.config).unwrap_or(Value::Null);
        if let Value::Object(fields) = &mut config {
            for field in NOT_IN_KEY {
                fields.remove(field);
            }
        }
        let mut settings = json!({
            "dataset": self.dataset,
            "validation_images": self.validation_images,
            "train_images": self.train_images,
            "resolution": self.resolution,
            "reference_resolution": self.reference_resolution,
            "width": self.width,
            "depth": self.depth,
            "config": config,
        });
        if let (Some(stride), Value::Object(fields)) = (self.stem_stride, &mut settings) {
            fields.insert("stem_stride".to_owned(), json!(stride));
        }
        settings
    }
}

impl std::fmt::Display for ProxyKey<'_> {
    /// A readable prefix (data, epochs, images, resolution, multipliers) and a digest of every
    /// setting in the key.
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        let digest = Sha256::digest(self.settings().to_string().as_bytes());
        let hex: String = digest[..6].iter().map(|b| format!("{b:02x}")).collect();
        let images = self.train_images.map_or("all".to_owned(), |n| n.to_string());
        let stem = self.stem_stride.map_or(String::new(), |s| format!("-s{s}"));
        write!(
            f,
            "{}-e{}-n{images}-r{}-w{}-d{}{stem}-{hex}",
            self.dataset, self.config.epochs, self.resolution, self.width, self.depth
        )
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn key(config: &ProxyConfig) -> ProxyKey<'_> {
        ProxyKey {
            dataset: "fashion-mnist",
            validation_images: 1000,
            train_images: Some(2000),
            resolution: 32,
            reference_resolution: 224,
            width: 0.25,
            depth: 0.5,
            stem_stride: None,
            config,
        }
    }

    #[test]
    fn every_setting_that_changes_a_result_changes_the_key() {
        let base_config = ProxyConfig::default();
        let base = key(&base_config).to_string();
        let mut variants: Vec<(&str, String)> = Vec::new();
        let mut k = key(&base_config);
        k.dataset = "./cifar";
        variants.push(("dataset", k.to_string()));
        for (name, change) in [
            ("validation_images", (|k: &mut ProxyKey| k.validation_images = 999) as fn(&mut ProxyKey)),
            ("train_images", |k| k.train_images = Some(1999)),
            ("train_images all", |k| k.train_images = None),
            ("resolution", |k| k.resolution = 33),
            ("reference_resolution", |k| k.reference_resolution = 240),
            ("width", |k| k.width = 0.5),
            ("depth", |k| k.depth = 1.0),
            ("stem_stride", |k| k.stem_stride = Some(1)),
        ] {
            let mut k = key(&base_config);
            change(&mut k);
            variants.push((name, k.to_string()));
        }
        // Every field of the trainer's configuration except the listed exceptions.
        let fields = serde_json::to_value(&base_config).expect("config serialises");
        let fields = fields.as_object().expect("an object");
        for (field, value) in fields {
            if NOT_IN_KEY.contains(&field.as_str()) {
                continue;
            }
            let mut changed = fields.clone();
            let new_value = match field.as_str() {
                "optimizer" => serde_json::to_value(OptimizerKind::RMSPROP).expect("serialises"),
                "schedule" => json!({"kind": "constant"}),
                _ => different(value),
            };
            changed.insert(field.clone(), new_value);
            let config: ProxyConfig =
                serde_json::from_value(Value::Object(changed)).expect("a changed config deserialises");
            assert_ne!(config, base_config, "{field} did not change");
            variants.push((field.as_str(), key(&config).to_string()));
        }
        assert!(variants.len() >= 20, "{} variants", variants.len());
        for (name, variant) in &variants {
            assert_ne!(variant, &base, "changing {name} left the key unchanged");
        }
    }

    /// Keys stored before the stem-stride setting existed stay the same: the setting is absent
    /// from them, and from stored settings, unless it is given.
    #[test]
    fn the_stem_stride_leaves_old_keys_and_settings_alone() {
        let config = ProxyConfig::default();
        let digest = Sha256::digest(key(&config).settings().to_string().as_bytes());
        assert!(!key(&config).settings().to_string().contains("stem_stride"), "{digest:?}");
        let stored = serde_json::to_value(ProxySettings::default()).expect("settings serialise");
        assert!(stored.get("stem_stride").is_none(), "{stored}");
        let mut one = key(&config);
        one.stem_stride = Some(1);
        assert!(one.to_string().starts_with("fashion-mnist-e5-n2000-r32-w0.25-d0.5-s1-"), "{one}");
        let back: ProxySettings = serde_json::from_value(stored).expect("old settings load");
        assert_eq!(back.stem_stride, None);
    }

    /// A value of the same shape as `value` that differs from it.
    fn different(value: &Value) -> Value {
        match value {
            Value::Number(n) if n.is_u64() => json!(n.as_u64().unwrap_or(0) + 3),
            Value::Number(n) => json!(n.as_f64().unwrap_or(0.0) * 0.5 + 0.013),
            Value::Bool(b) => json!(!b),
            Value::String(s) if s == "sgd" => json!("rmsprop"),
            Value::String(s) if s == "fp32" => json!("bf16"),
            Value::Object(fields) => {
                let mut fields = fields.clone();
                if let Some((name, first)) = fields.iter().next().map(|(k, v)| (k.clone(), v.clone())) {
                    fields.insert(name, different(&first));
                }
                Value::Object(fields)
            }
            other => other.clone(),
        }
    }

    #[test]
    fn where_it_runs_and_how_long_it_may_take_do_not_change_the_key() {
        let base_config = ProxyConfig::default();
        let base = key(&base_config).to_string();
        let config = ProxyConfig {
            time_limit: Some(5.0),
            check_every: 1,
            eval_batch_size: 7,
            measure_latency: true,
            channels_last: true,
            per_tensor_optimizer: true,
            ..ProxyConfig::default()
        };
        assert_eq!(key(&config).to_string(), base);
    }

    /// The digest of the main job's proxy key (seed 0, reference 224 px) as fidelity.db stores it.
    const MAIN_JOB_DIGEST: &str = "c897d29f3985";

    /// `auto` precision resolves from the run's devices (bf16 only when all are GPUs), and the
    /// precision is in the key; a CPU run's key is the one it had before precision was a setting.
    #[test]
    fn precision_resolves_from_the_run_devices_and_is_in_the_key() {
        let on = |device: &str, precision| ProxySettings {
            device: device.to_owned(),
            precision,
            ..ProxySettings::default()
        };
        let auto = PrecisionSetting::Auto;
        assert_eq!(on("cpu", auto).precision(), Precision::Fp32);
        assert_eq!(on("cuda", auto).precision(), Precision::Bf16);
        assert_eq!(on("cuda:0, cuda:1", auto).precision(), Precision::Bf16);
        assert_eq!(on("cuda,cpu", auto).precision(), Precision::Fp32);
        assert_eq!(on("cpu", PrecisionSetting::Bf16).precision(), Precision::Bf16);
        assert_eq!(on("cuda", PrecisionSetting::Fp32).precision(), Precision::Fp32);
        let key = |settings: ProxySettings| settings.key(0, 224);
        assert_eq!(key(on("cpu", auto)), key(on("cuda", PrecisionSetting::Fp32)));
        assert_ne!(key(on("cpu", auto)), key(on("cuda", auto)));
        assert_eq!(key(on("cuda", auto)), key(on("cpu", PrecisionSetting::Bf16)));
        // Channels-last changes speed only.
        let channels_last = ProxySettings { channels_last: true, ..on("cpu", auto) };
        assert_eq!(key(channels_last), key(on("cpu", auto)));
        // The key of the main job's proxy on the CPU before the study chose one epoch, as stored
        // by runs before this setting (experiments/proxy-fidelity/fidelity.db, run 2, setting 0).
        let two_epochs = ProxySettings { epochs: 2, ..ProxySettings::default() };
        assert_eq!(key(two_epochs).split('-').next_back(), Some(MAIN_JOB_DIGEST));
    }

    #[test]
    fn proxy_resolution_scales_with_the_network() {
        assert_eq!(proxy_resolution(224, 32, 224), 32);
        assert_eq!(proxy_resolution(258, 32, 224), 37);
        assert_eq!(proxy_resolution(1, 32, 224), 1);
    }

    #[test]
    fn settings_checks_name_the_setting() {
        let bad = ProxySettings { batch_size: 1, ..ProxySettings::default() };
        let message = bad.validate().expect_err("batch 1 is refused").to_string();
        assert!(message.contains("batch_size"), "{message}");
        let bad = ProxySettings { width: 0.0, ..ProxySettings::default() };
        assert!(bad.validate().expect_err("width 0").to_string().starts_with("width"));
        assert!(ProxySettings::default().validate().is_ok());
    }
}
