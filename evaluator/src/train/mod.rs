//! The proxy trainer: a short training of one candidate on a held-out split, as MnasNet (§4:
//! "5 epochs on ImageNet with 50K training images held out as the validation set") and the
//! EfficientNet search (§4) do, scaled down to what a workstation trains in minutes.
//!
//! Each trial copies the proxy's images to its device as uint8, resized once to the
//! architecture's resolution; each batch is gathered, converted and normalised there (and
//! optionally flipped and shifted). The steps of a run are in `run.rs`, in the order of the
//! procedure: data preparation, the epoch loop, batch-norm recalibration, scoring.
//!
//! A candidate that does not validate, takes no optimizer step (one training image), diverges (NaN/inf loss), runs out of memory or exceeds its
//! time limit, and a run stopped from outside, give a [`TrainResult`] with `status: failed`, a
//! [`Failure`] kind and a one-line reason; only caller mistakes (a configuration, or data that
//! do not fit the architecture's channels and classes) are `Err`.

mod config;
mod data;
mod measure;
mod run;

use std::fmt;
use std::sync::atomic::AtomicBool;

use effnas_space::{arch_hash, cost, ArchSpec};
use serde::{Deserialize, Serialize};
use tch::Device;
use tracing::{debug, info, info_span, warn};

pub use config::{Augment, ProxyConfig, Schedule};
pub use data::{resize_uint8, Normalizer, ProxyData};
pub use measure::{
    evaluate, measure_latency, time_inference, time_inference_with, BatchNorms, InferenceTiming,
};

use crate::device::device_name;
use crate::error::{EvalError, Result};
use crate::model::Model;
use crate::transfer::Transfer;
use run::{Run, RunFailure};

/// Whether a trial finished.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "snake_case")]
pub enum Status {
    Complete,
    Failed,
}

/// Why a trial failed.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash, Serialize, Deserialize)]
#[serde(rename_all = "snake_case")]
pub enum Failure {
    /// The loss became NaN or infinite.
    Diverged,
    /// libtorch ran out of memory (see [`EvalError::is_out_of_memory`]).
    OutOfMemory,
    /// The trial ran past [`ProxyConfig::time_limit`].
    TimeLimit,
    /// The architecture cannot be trained on this proxy task: it does not validate (after
    /// adaptation to the data and the proxy resolution, e.g. a feature map below one pixel), or
    /// the task allows no optimizer step (fewer than two training images).
    Invalid,
    /// Any other libtorch or worker error.
    Error,
    /// Training was stopped from outside (the stop flag of [`train_with_progress`] or
    /// [`crate::pool::PoolConfig::stop`]). Not a property of the architecture: callers re-queue
    /// the trial.
    Interrupted,
}

impl Failure {
    /// The snake_case name, as serialised: `diverged`, `out_of_memory`, `time_limit`, `invalid`,
    /// `error`, `interrupted`.
    pub fn as_str(self) -> &'static str {
        match self {
            Failure::Diverged => "diverged",
            Failure::OutOfMemory => "out_of_memory",
            Failure::TimeLimit => "time_limit",
            Failure::Invalid => "invalid",
            Failure::Error => "error",
            Failure::Interrupted => "interrupted",
        }
    }

    /// The failure an error stands for: out of memory, an invalid architecture, or an error.
    pub fn of(error: &EvalError) -> Failure {
        match error {
            EvalError::Arch(_) => Failure::Invalid,
            e if e.is_out_of_memory() => Failure::OutOfMemory,
            _ => Failure::Error,
        }
    }
}

impl fmt::Display for Failure {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(self.as_str())
    }
}

/// One epoch of the loss curve.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct EpochRecord {
    /// 1-based.
    pub epoch: u32,
    /// Mean training loss over the epoch's batches (with label smoothing).
    pub train_loss: f64,
    /// Learning rate at the end of the epoch.
    pub lr: f64,
    /// Seconds since the trial started.
    pub seconds: f64,
}

/// What a proxy training run produced: plain data, ready for a store or JSON.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct TrainResult {
    pub status: Status,
    #[serde(skip_serializing_if = "Option::is_none")]
    pub failure: Option<Failure>,
    #[serde(skip_serializing_if = "Option::is_none")]
    pub reason: Option<String>,
    /// Validation accuracy in [0, 1] (0 when failed).
    pub accuracy: f64,
    #[serde(skip_serializing_if = "Option::is_none")]
    pub test_accuracy: Option<f64>,
    /// Trainable parameters of the built network (equal to the analytic count).
    pub params: u64,
    /// Multiply-adds at the trained resolution.
    pub flops: u64,
    #[serde(skip_serializing_if = "Option::is_none")]
    pub latency_ms: Option<f64>,
    /// Wall-clock seconds of the whole trial (data preparation, build, training, evaluation).
    pub seconds: f64,
    /// Seconds spent in training steps.
    pub train_seconds: f64,
    /// Training images per second (images seen / train_seconds).
    pub images_per_second: f64,
    pub images_seen: u64,
    pub steps: u64,
    pub train_images: usize,
    pub validation_images: usize,
    pub resolution: u32,
    pub curve: Vec<EpochRecord>,
    pub device: String,
    pub arch_hash: String,
}

impl TrainResult {
    /// A result with nothing measured yet: complete, zero accuracy and time, no curve.
    pub fn blank(arch: &ArchSpec, device: String, arch_hash: String, params: u64, flops: u64) -> Self {
        TrainResult {
            status: Status::Complete,
            failure: None,
            reason: None,
            accuracy: 0.0,
            test_accuracy: None,
            params,
            flops,
            latency_ms: None,
            seconds: 0.0,
            train_seconds: 0.0,
            images_per_second: 0.0,
            images_seen: 0,
            steps: 0,
            train_images: 0,
            validation_images: 0,
            resolution: arch.resolution,
            curve: Vec::new(),
            device,
            arch_hash,
        }
    }

    /// A failed result with nothing measured: the analytic cost of `arch`, `failure` and
    /// `reason` (one line).
    pub fn failed(arch: &ArchSpec, device: String, failure: Failure, reason: String) -> Self {
        let analytic = cost(arch);
        let mut result = TrainResult::blank(arch, device, arch_hash(arch), analytic.params, analytic.macs);
        result.status = Status::Failed;
        result.failure = Some(failure);
        result.reason = Some(reason);
        result
    }
}

/// Progress reported to a callback while training.
#[derive(Debug, Clone, Copy, PartialEq)]
pub struct Progress {
    pub epoch: u32,
    pub epochs: u32,
    pub step: u64,
    pub total_steps: u64,
    /// The last loss read back from the device, if any.
    pub loss: Option<f64>,
}

/// A finished run: the result and, when the network could be built, the trained model.
#[derive(Debug)]
pub struct Trained {
    pub result: TrainResult,
    pub model: Option<Model>,
}

/// Trains `arch` on `data` with `config` on `device`, never interrupted. See
/// [`train_with_progress`].
pub fn train(arch: &ArchSpec, data: &ProxyData, config: &ProxyConfig, device: Device) -> Result<Trained> {
    train_with_progress(arch, data, config, device, &mut |_| {}, &AtomicBool::new(false))
}

/// Trains `arch` and calls `progress` after every step. `arch.input_channels` and
/// `arch.num_classes` must match the data ([`ProxyData::adapt`]); the images are resized to
/// `arch.resolution`. An architecture that does not validate is a failed result
/// ([`Failure::Invalid`]), not an error.
///
/// `stop` is read before every step and between the phases (data preparation, building,
/// recalibration, evaluation); once it is raised the run ends there with a failed result,
/// [`Failure::Interrupted`] and the reason `interrupted`.
pub fn train_with_progress(
    arch: &ArchSpec,
    data: &ProxyData,
    config: &ProxyConfig,
    device: Device,
    progress: &mut dyn FnMut(Progress),
    stop: &AtomicBool,
) -> Result<Trained> {
    config.validate()?;
    if let Err(e) = arch.validate() {
        let reason = EvalError::from(e).first_line();
        warn!(failure = %Failure::Invalid, %reason, "trial failed");
        let result = TrainResult::failed(arch, device_name(device), Failure::Invalid, reason);
        return Ok(Trained { result, model: None });
    }
    data.check_fits(arch)?;
    let mut run = Run::new(arch, config, device, stop);
    let span = info_span!("trial", arch = %run.result.arch_hash, device = %run.result.device);
    let _enter = span.enter();
    let mut learner = None;
    let outcome = run.execute(data, progress, &mut learner, None);
    let result = conclude(run.finish(), outcome)?;
    Ok(Trained { result, model: learner.map(|l| l.model) })
}

/// Fine-tunes a pretrained network adapted to `data` ([`crate::transfer::adapt`], on `device`)
/// as [`train_with_progress`] trains a new one: the same data preparation, schedule, batch-norm
/// recalibration (of the parts that train) and scoring, with only what `transfer` leaves
/// unfrozen updated, each part at its learning rate.
pub fn finetune_with_progress(
    transfer: Transfer,
    data: &ProxyData,
    config: &ProxyConfig,
    device: Device,
    progress: &mut dyn FnMut(Progress),
    stop: &AtomicBool,
) -> Result<Trained> {
    config.validate()?;
    let arch = transfer.model.arch.clone();
    arch.validate()?;
    data.check_fits(&arch)?;
    if transfer.model.device() != device {
        return Err(EvalError::config(
            "device",
            "the pretrained network is on another device than the training",
        ));
    }
    let mut run = Run::new(&arch, config, device, stop);
    let span = info_span!("finetune", arch = %run.result.arch_hash, device = %run.result.device);
    let _enter = span.enter();
    let mut learner = None;
    let outcome = run.execute(data, progress, &mut learner, Some(transfer));
    let result = conclude(run.finish(), outcome)?;
    Ok(Trained { result, model: learner.map(|l| l.model) })
}

/// The result of a run that ended with `outcome`: complete, or failed with its kind and a
/// one-line reason (the full error text goes to `debug!`). Caller mistakes met on the way (a
/// configuration or data error) are returned as errors.
fn conclude(mut result: TrainResult, outcome: std::result::Result<(), RunFailure>) -> Result<TrainResult> {
    let failure = match outcome {
        Ok(()) => {
            info!(accuracy = result.accuracy, seconds = result.seconds, "trial complete");
            return Ok(result);
        }
        Err(failure) => failure,
    };
    let (kind, reason) = match failure {
        RunFailure::Diverged(reason) => (Failure::Diverged, reason),
        RunFailure::TimeLimit(reason) => (Failure::TimeLimit, reason),
        RunFailure::NoSteps(reason) => (Failure::Invalid, reason),
        RunFailure::Interrupted => (Failure::Interrupted, "interrupted".to_owned()),
        RunFailure::Eval(e @ (EvalError::Config { .. } | EvalError::Data(_))) => return Err(e),
        RunFailure::Eval(e) => {
            debug!(error = %e, "trial error, in full");
            (Failure::of(&e), e.first_line())
        }
    };
    warn!(failure = %kind, %reason, "trial failed");
    result.status = Status::Failed;
    result.failure = Some(kind);
    result.reason = Some(reason);
    result.accuracy = 0.0;
    result.test_accuracy = None;
    Ok(result)
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::data::ImageSet;
    use tch::{Kind, Tensor};

    /// `n` noise images of 1 channel, 12 × 12, labelled 0, 1, 0, …
    fn images(n: i64) -> std::result::Result<ImageSet, Box<dyn std::error::Error>> {
        let pixels = Tensor::f_randint(256, [n, 1, 12, 12], (Kind::Uint8, Device::Cpu))?;
        let labels = Tensor::f_arange(n, (Kind::Int64, Device::Cpu))?.f_remainder(2)?;
        Ok(ImageSet::with_numbered_classes(pixels, labels, 2)?)
    }

    #[test]
    fn a_training_without_a_single_step_is_an_invalid_failure(
    ) -> std::result::Result<(), Box<dyn std::error::Error>> {
        let data = ProxyData::new("one image", images(1)?, images(4)?, None)?;
        let arch = data.adapt(&effnas_space::parse_arch("r1_k3_s11_e1_i32_o8")?, Some(16))?;
        let config = ProxyConfig { epochs: 2, batch_size: 2, ..ProxyConfig::default() };
        let result = train(&arch, &data, &config, Device::Cpu)?.result;
        assert_eq!(
            (result.status, result.failure, result.steps),
            (Status::Failed, Some(Failure::Invalid), 0)
        );
        let reason = result.reason.unwrap_or_default();
        assert!(reason.contains("no training step") && reason.contains("1 training image"), "{reason}");
        Ok(())
    }
}
