//! What defines a proxy training run besides the architecture and the data: [`ProxyConfig`],
//! its learning-rate [`Schedule`] and the [`Augment`]ation of training batches.

use serde::{Deserialize, Serialize};

use crate::error::{EvalError, Result};
use crate::model::{NormConfig, Precision};
use crate::optim::OptimizerKind;

/// Learning-rate schedule after the linear warm-up.
#[derive(Debug, Clone, Copy, PartialEq, Serialize, Deserialize, Default)]
#[serde(rename_all = "snake_case", tag = "kind")]
pub enum Schedule {
    /// Cosine decay to zero at the end of training.
    #[default]
    Cosine,
    /// `lr × decay^(epoch / every)` in steps of `every` epochs (the paper: 0.97 every 2.4).
    Exponential {
        decay: f64,
        every_epochs: f64,
    },
    Constant,
}

/// Data augmentation applied to training batches on the device.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize, Deserialize, Default)]
pub struct Augment {
    /// Random horizontal flip, per image.
    pub flip: bool,
    /// Random crop after zero padding by this many pixels (one random offset per batch).
    pub crop_padding: u32,
}

/// Everything that defines a proxy training run except the architecture and the data.
///
/// Stored as JSON with trials: `#[serde(default)]` fills fields an older record lacks, and keys
/// it has that are gone (`train_images`, now applied once by [`super::ProxyData::from_dataset`];
/// `objective`, now scored by the caller) are ignored.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
#[serde(default)]
pub struct ProxyConfig {
    pub epochs: u32,
    pub batch_size: usize,
    pub optimizer: OptimizerKind,
    /// Peak learning rate (after warm-up).
    pub lr: f64,
    /// Linear warm-up from 0, in epochs (may be fractional).
    pub warmup_epochs: f64,
    pub schedule: Schedule,
    pub weight_decay: f64,
    pub label_smoothing: f64,
    pub precision: Precision,
    pub augment: Augment,
    pub seed: u64,
    /// Wall-clock limit for the whole trial, in seconds.
    pub time_limit: Option<f64>,
    pub eval_batch_size: usize,
    /// Batch-norm running-statistics momentum (PyTorch convention).
    pub bn_momentum: f64,
    pub bn_eps: f64,
    /// Measure the trained network's median batch-1 latency on the device
    /// ([`super::TrainResult::latency_ms`]).
    pub measure_latency: bool,
    /// Re-estimate batch-norm statistics on up to this many training images before evaluating
    /// (0: keep the running averages). See `Network::recalibrate_batch_norm`.
    pub bn_recalibration_images: usize,
    /// Read the loss back to the host every this many steps to detect divergence (each read is
    /// a device synchronisation, which launch-bound GPU proxies should not pay every step).
    pub check_every: usize,
    /// Lay kernels and activations out channels-last (`Model::to_channels_last`). Changes
    /// speed, not what is computed: absent from the stored form while false, and outside the
    /// proxy key.
    #[serde(skip_serializing_if = "is_false")]
    pub channels_last: bool,
    /// Train with the per-tensor optimizer instead of the flat one: the "before" of the
    /// optimizer benchmark. Never stored.
    #[serde(skip)]
    pub per_tensor_optimizer: bool,
}

fn is_false(b: &bool) -> bool {
    !*b
}

impl Default for ProxyConfig {
    fn default() -> Self {
        ProxyConfig {
            epochs: 5,
            batch_size: 64,
            optimizer: OptimizerKind::SGD,
            lr: 0.1,
            warmup_epochs: 0.5,
            schedule: Schedule::Cosine,
            weight_decay: 1e-5,
            label_smoothing: 0.1,
            precision: Precision::Fp32,
            augment: Augment::default(),
            seed: 0,
            time_limit: None,
            eval_batch_size: 256,
            bn_momentum: NormConfig::default().momentum,
            bn_eps: NormConfig::default().eps,
            measure_latency: false,
            bn_recalibration_images: 2048,
            check_every: 20,
            channels_last: false,
            per_tensor_optimizer: false,
        }
    }
}

impl ProxyConfig {
    /// Checks every field that could make training meaningless or crash.
    pub fn validate(&self) -> Result<()> {
        if self.epochs == 0 {
            return Err(EvalError::config("epochs", "must be at least 1"));
        }
        if self.batch_size < 2 {
            return Err(EvalError::config("batch_size", "must be at least 2 (batch norm needs two images)"));
        }
        if self.eval_batch_size == 0 {
            return Err(EvalError::config("eval_batch_size", "must be at least 1"));
        }
        if !(self.lr.is_finite() && self.lr > 0.0) {
            return Err(EvalError::config("lr", format!("{} is not a positive number", self.lr)));
        }
        if !(self.warmup_epochs.is_finite() && self.warmup_epochs >= 0.0) {
            return Err(EvalError::config("warmup_epochs", format!("{} is negative", self.warmup_epochs)));
        }
        if !(self.weight_decay.is_finite() && self.weight_decay >= 0.0) {
            return Err(EvalError::config("weight_decay", format!("{} is negative", self.weight_decay)));
        }
        if !(0.0..1.0).contains(&self.label_smoothing) {
            return Err(EvalError::config(
                "label_smoothing",
                format!("{} is outside [0, 1)", self.label_smoothing),
            ));
        }
        if !(self.bn_momentum > 0.0 && self.bn_momentum <= 1.0) {
            return Err(EvalError::config("bn_momentum", format!("{} is outside (0, 1]", self.bn_momentum)));
        }
        if let Some(limit) = self.time_limit {
            if !(limit.is_finite() && limit > 0.0) {
                return Err(EvalError::config(
                    "time_limit",
                    format!("{limit} is not a positive number of seconds"),
                ));
            }
        }
        if let Schedule::Exponential { decay, every_epochs } = self.schedule {
            if !(decay > 0.0 && every_epochs > 0.0) {
                return Err(EvalError::config("schedule", "exponential decay and period must be positive"));
            }
        }
        if self.check_every == 0 {
            return Err(EvalError::config("check_every", "must be at least 1"));
        }
        Ok(())
    }

    /// Learning rate at fractional epoch `t` of `total` epochs.
    pub fn learning_rate(&self, t: f64, total: f64) -> f64 {
        if t < self.warmup_epochs {
            return self.lr * (t / self.warmup_epochs).max(1e-3);
        }
        match self.schedule {
            Schedule::Constant => self.lr,
            Schedule::Cosine => {
                let span = (total - self.warmup_epochs).max(f64::EPSILON);
                let progress = ((t - self.warmup_epochs) / span).clamp(0.0, 1.0);
                self.lr * 0.5 * (1.0 + (std::f64::consts::PI * progress).cos())
            }
            Schedule::Exponential { decay, every_epochs } => self.lr * decay.powf((t / every_epochs).floor()),
        }
    }
}
