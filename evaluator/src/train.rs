//! The proxy trainer: a short training of one candidate on a held-out split, as MnasNet (§4:
//! "5 epochs on ImageNet with 50K training images held out as the validation set") and the
//! EfficientNet search (§4) do, scaled down to what a workstation trains in minutes.
//!
//! Data stay on the training device as uint8, resized once to the architecture's resolution;
//! each batch is gathered, converted and normalised there (and optionally flipped and shifted).
//! A candidate that does not validate, diverges (NaN/inf loss), runs out of memory or exceeds its
//! time limit, and a run stopped from outside, give a [`TrainResult`] with `status: failed`, a
//! [`Failure`] kind and a one-line reason; only caller mistakes (a configuration, or data that
//! do not fit the architecture's channels and classes) are `Err`.

use std::fmt;
use std::sync::atomic::{AtomicBool, Ordering};
use std::time::Instant;

use effnas_space::{arch_hash, cost, ArchSpec};
use rand::seq::SliceRandom;
use rand::SeedableRng;
use rand_chacha::ChaCha8Rng;
use serde::{Deserialize, Serialize};
use tch::{Device, Kind, Reduction, TchError, Tensor};
use tracing::{debug, info, info_span, warn};

use crate::device::device_name;
use crate::error::{EvalError, Result};
use crate::model::{Model, NormConfig, Precision};
use crate::optim::{Optimizer, OptimizerKind};

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
    /// ([`TrainResult::latency_ms`]).
    pub measure_latency: bool,
    /// Re-estimate batch-norm statistics on up to this many training images before evaluating
    /// (0: keep the running averages). See `Network::recalibrate_batch_norm`.
    pub bn_recalibration_images: usize,
    /// Read the loss back to the host every this many steps to detect divergence (each read is
    /// a device synchronisation, which launch-bound GPU proxies should not pay every step).
    pub check_every: usize,
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

/// Images (uint8 `[N, C, H, W]`) and labels (int64 `[N]`) of one split.
#[derive(Debug)]
pub struct Split {
    pub images: Tensor,
    pub labels: Tensor,
}

impl Split {
    pub fn new(images: Tensor, labels: Tensor) -> Result<Self> {
        let size = images.size();
        if size.len() != 4 || images.kind() != Kind::Uint8 {
            return Err(EvalError::Data(format!(
                "images must be uint8 [N, C, H, W], found {:?} {size:?}",
                images.kind()
            )));
        }
        if labels.kind() != Kind::Int64 || labels.size() != [size[0]] {
            return Err(EvalError::Data(format!(
                "labels must be int64 [{}], found {:?} {:?}",
                size[0],
                labels.kind(),
                labels.size()
            )));
        }
        if size[0] == 0 {
            return Err(EvalError::Data("a split with no images".to_owned()));
        }
        Ok(Split { images, labels })
    }

    pub fn len(&self) -> usize {
        usize::try_from(self.images.size()[0]).unwrap_or(0)
    }

    pub fn is_empty(&self) -> bool {
        self.len() == 0
    }

    /// Another handle on the same storage (for handing to a worker thread).
    pub fn shallow_clone(&self) -> Split {
        Split { images: self.images.shallow_clone(), labels: self.labels.shallow_clone() }
    }

    fn to_device(&self, device: Device) -> Result<Split> {
        Ok(Split { images: self.images.f_to_device(device)?, labels: self.labels.f_to_device(device)? })
    }

    fn channels(&self) -> u32 {
        u32::try_from(self.images.size()[1]).unwrap_or(0)
    }
}

/// The proxy task's data: a training split, the held-out validation split (carved from the
/// training set, as MnasNet did) and optionally the test set, reported separately.
#[derive(Debug)]
pub struct ProxyData {
    pub train: Split,
    pub validation: Split,
    pub test: Option<Split>,
    pub num_classes: u32,
    /// Data-set name for reports.
    pub name: String,
}

impl ProxyData {
    pub fn new(
        name: impl Into<String>,
        train: Split,
        validation: Split,
        test: Option<Split>,
        num_classes: u32,
    ) -> Result<Self> {
        let channels = train.channels();
        for (what, split) in [("validation", Some(&validation)), ("test", test.as_ref())] {
            if let Some(split) = split {
                if split.channels() != channels {
                    return Err(EvalError::Data(format!(
                        "{what} images have {} channels, training images {channels}",
                        split.channels()
                    )));
                }
            }
        }
        if num_classes < 2 {
            return Err(EvalError::Data(format!("{num_classes} classes: a classifier needs at least 2")));
        }
        Ok(ProxyData { train, validation, test, num_classes, name: name.into() })
    }

    /// Proxy data from a loaded data set, as MnasNet did it: `validation` images held out of the
    /// training set (stratified, chosen by `data_seed`), then a budget of at most `train_images`
    /// of the remaining ones (`None`: all), and the test set when `with_test`. Keep `data_seed`
    /// fixed across a search so every candidate sees the same split.
    pub fn from_dataset(
        dataset: &crate::data::Dataset,
        validation: usize,
        train_images: Option<usize>,
        with_test: bool,
        data_seed: u64,
    ) -> Result<Self> {
        let data_err = |e: crate::data::DataError| EvalError::Data(e.to_string());
        if validation < 1 {
            return Err(EvalError::config(
                "validation_images",
                "the proxy needs at least one validation image",
            ));
        }
        let (train, held_out) = dataset.train.split_validation(validation, data_seed).map_err(data_err)?;
        let train = match train_images {
            Some(n) => train.take(n, data_seed).map_err(data_err)?,
            None => train,
        };
        let test = match (&dataset.test, with_test) {
            (Some(test), true) => Some(Split::new(test.images.shallow_clone(), test.labels.shallow_clone())?),
            _ => None,
        };
        ProxyData::new(
            dataset.name.clone(),
            Split::new(train.images, train.labels)?,
            Split::new(held_out.images, held_out.labels)?,
            test,
            dataset.train.num_classes,
        )
    }

    pub fn channels(&self) -> u32 {
        self.train.channels()
    }

    /// Handles on the same storage, for another thread.
    pub fn shallow_clone(&self) -> ProxyData {
        ProxyData {
            train: self.train.shallow_clone(),
            validation: self.validation.shallow_clone(),
            test: self.test.as_ref().map(Split::shallow_clone),
            num_classes: self.num_classes,
            name: self.name.clone(),
        }
    }

    /// `arch` with the data's input channels and classes and the proxy resolution `resolution`
    /// (the architecture's own when `None`): what a search hands the trainer.
    pub fn adapt(&self, arch: &ArchSpec, resolution: Option<u32>) -> Result<ArchSpec> {
        let mut arch = arch.clone();
        arch.input_channels = self.channels();
        arch.num_classes = self.num_classes;
        if let Some(r) = resolution {
            arch.resolution = r;
        }
        arch.validate()?;
        Ok(arch)
    }
}

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
    /// adaptation to the data and the proxy resolution, e.g. a feature map below one pixel).
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
/// `arch.resolution`.
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
    if arch.input_channels != data.channels() {
        return Err(EvalError::Data(format!(
            "the architecture takes {} input channels, the images have {}",
            arch.input_channels,
            data.channels()
        )));
    }
    if arch.num_classes != data.num_classes {
        return Err(EvalError::Data(format!(
            "the architecture has {} classes, the data set {}",
            arch.num_classes, data.num_classes
        )));
    }
    let hash = arch_hash(arch);
    let span = info_span!("trial", arch = %hash, device = %device_name(device));
    let _enter = span.enter();
    let started = Instant::now();
    let analytic = cost(arch);
    let mut run = Run::new(arch, config, device, stop, hash, analytic.params, analytic.macs);
    let outcome = run.execute(data, progress, started);
    let mut result = run.finish(started);
    let model = run.model.take();
    match outcome {
        Ok(()) => {
            info!(accuracy = result.accuracy, seconds = result.seconds, "trial complete");
        }
        Err(failure) => {
            let (kind, reason) = match failure {
                RunFailure::Diverged(reason) => (Failure::Diverged, reason),
                RunFailure::TimeLimit(reason) => (Failure::TimeLimit, reason),
                RunFailure::Interrupted => (Failure::Interrupted, "interrupted".to_owned()),
                RunFailure::Eval(EvalError::Config { field, reason }) => {
                    return Err(EvalError::Config { field, reason });
                }
                RunFailure::Eval(EvalError::Data(reason)) => return Err(EvalError::Data(reason)),
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
        }
    }
    Ok(Trained { result, model })
}

enum RunFailure {
    Diverged(String),
    TimeLimit(String),
    /// The stop flag was raised.
    Interrupted,
    Eval(EvalError),
}

impl From<TchError> for RunFailure {
    fn from(e: TchError) -> Self {
        RunFailure::Eval(EvalError::Torch(e))
    }
}

impl From<EvalError> for RunFailure {
    fn from(e: EvalError) -> Self {
        RunFailure::Eval(e)
    }
}

/// The state of one run, so that a failure half-way still reports what was measured.
struct Run<'a> {
    arch: &'a ArchSpec,
    config: &'a ProxyConfig,
    device: Device,
    stop: &'a AtomicBool,
    model: Option<Model>,
    result: TrainResult,
}

impl<'a> Run<'a> {
    fn new(
        arch: &'a ArchSpec,
        config: &'a ProxyConfig,
        device: Device,
        stop: &'a AtomicBool,
        arch_hash: String,
        params: u64,
        flops: u64,
    ) -> Self {
        let result = TrainResult::blank(arch, device_name(device), arch_hash, params, flops);
        Run { arch, config, device, stop, model: None, result }
    }

    fn finish(&mut self, started: Instant) -> TrainResult {
        let mut result = self.result.clone();
        result.seconds = started.elapsed().as_secs_f64();
        if result.train_seconds > 0.0 {
            result.images_per_second = result.images_seen as f64 / result.train_seconds;
        }
        result
    }

    /// Ends the run when the stop flag is raised.
    fn check_stop(&self) -> Result<(), RunFailure> {
        if self.stop.load(Ordering::Relaxed) {
            Err(RunFailure::Interrupted)
        } else {
            Ok(())
        }
    }

    fn check_time(&self, started: Instant) -> Result<(), RunFailure> {
        match self.config.time_limit {
            Some(limit) if started.elapsed().as_secs_f64() > limit => Err(RunFailure::TimeLimit(format!(
                "time limit of {limit} s exceeded after {} steps",
                self.result.steps
            ))),
            _ => Ok(()),
        }
    }

    fn execute(
        &mut self,
        data: &ProxyData,
        progress: &mut dyn FnMut(Progress),
        started: Instant,
    ) -> Result<(), RunFailure> {
        let config = self.config;
        let device = self.device;
        let resolution = i64::from(self.arch.resolution);
        tch::manual_seed(config.seed as i64);
        if let Device::Cuda(_) = device {
            tch::Cuda::manual_seed_all(config.seed);
        }
        let mut rng = ChaCha8Rng::seed_from_u64(config.seed);
        self.check_stop()?;

        // Data: the training images (the budget was applied by `ProxyData::from_dataset`),
        // resized once, kept as uint8 on the device.
        let train_split = data.train.to_device(device)?;
        let train_count = train_split.len();
        let train_images = resize_uint8(&train_split.images, resolution)?;
        let train_labels = train_split.labels;
        let validation = data.validation.to_device(device)?;
        let validation_images = resize_uint8(&validation.images, resolution)?;
        self.result.train_images = train_count;
        self.result.validation_images = validation.len();
        let normalize = Normalizer::from_images(&train_images)?;
        debug!(train = train_count, validation = validation.len(), resolution, "data ready");

        // Model and optimizer.
        let norm = NormConfig { momentum: config.bn_momentum, eps: config.bn_eps };
        let mut model = Model::with_norm(self.arch, device, norm)?;
        model.net.set_precision(config.precision);
        self.result.params = model.num_parameters();
        let mut optimizer = Optimizer::new(&model.vs, config.optimizer, config.weight_decay);
        self.model = Some(model);
        self.check_stop()?;
        self.check_time(started)?;

        let batch = config.batch_size as i64;
        let n = train_count as i64;
        // A last batch of one image cannot be batch-normalised: it is dropped.
        let steps_per_epoch = (n / batch + i64::from(n % batch > 1)).max(1) as u64;
        let total_steps = steps_per_epoch * u64::from(config.epochs);
        let epochs = f64::from(config.epochs);
        let train_started = Instant::now();
        let mut last_loss = None;
        for epoch in 0..config.epochs {
            let epoch_span = info_span!("epoch", epoch = epoch + 1);
            let _enter = epoch_span.enter();
            let mut order: Vec<i64> = (0..n).collect();
            order.shuffle(&mut rng);
            let order = Tensor::f_from_slice(&order)?.f_to_device(device)?;
            let mut loss_sum = Tensor::f_zeros([] as [i64; 0], (Kind::Float, device))?;
            let mut lr = config.lr;
            let mut batches = 0u64;
            for step in 0..steps_per_epoch {
                self.check_stop()?;
                let start = step as i64 * batch;
                let size = batch.min(n - start);
                if size < 2 {
                    break;
                }
                let t = f64::from(epoch) + step as f64 / steps_per_epoch as f64;
                lr = config.learning_rate(t, epochs);
                let index = order.f_narrow(0, start, size)?;
                let xs = normalize.apply(&train_images.f_index_select(0, &index)?)?;
                let xs = augment(&xs, config.augment, &mut rng)?;
                let ys = train_labels.f_index_select(0, &index)?;
                let model = self
                    .model
                    .as_ref()
                    .ok_or_else(|| RunFailure::Eval(EvalError::Pool("model missing".into())))?;
                let logits = model.net.try_forward(&xs, true)?;
                let loss = logits.f_cross_entropy_loss::<Tensor>(
                    &ys,
                    None,
                    Reduction::Mean,
                    -100,
                    config.label_smoothing,
                )?;
                optimizer.zero_grad()?;
                loss.f_backward()?;
                optimizer.step(lr)?;
                let _ = loss_sum.f_add_(&loss.f_detach()?)?;
                batches += 1;
                self.result.steps += 1;
                self.result.images_seen += size as u64;
                if self.result.steps % config.check_every as u64 == 0 || step + 1 == steps_per_epoch {
                    let value = loss.f_double_value(&[])?;
                    if !value.is_finite() {
                        return Err(RunFailure::Diverged(format!(
                            "loss is {value} at step {} (epoch {})",
                            self.result.steps,
                            epoch + 1
                        )));
                    }
                    last_loss = Some(value);
                }
                self.result.train_seconds = train_started.elapsed().as_secs_f64();
                progress(Progress {
                    epoch: epoch + 1,
                    epochs: config.epochs,
                    step: self.result.steps,
                    total_steps,
                    loss: last_loss,
                });
                self.check_time(started)?;
            }
            let mean_loss = loss_sum.f_double_value(&[])? / batches.max(1) as f64;
            if !mean_loss.is_finite() {
                return Err(RunFailure::Diverged(format!("mean loss of epoch {} is {mean_loss}", epoch + 1)));
            }
            self.result.curve.push(EpochRecord {
                epoch: epoch + 1,
                train_loss: mean_loss,
                lr,
                seconds: started.elapsed().as_secs_f64(),
            });
            info!(loss = mean_loss, lr, "epoch done");
        }
        self.result.train_seconds = train_started.elapsed().as_secs_f64();

        self.check_stop()?;
        let model =
            self.model.as_ref().ok_or_else(|| RunFailure::Eval(EvalError::Pool("model missing".into())))?;
        if config.bn_recalibration_images > 0 {
            let count = (config.bn_recalibration_images as i64).min(n);
            let calibration_batch = batch.max(config.eval_batch_size as i64);
            // A seeded random sample, so class-sorted data still give mixed batches.
            let mut order: Vec<i64> = (0..n).collect();
            order.shuffle(&mut rng);
            order.truncate(count as usize);
            let order = Tensor::f_from_slice(&order)?.f_to_device(device)?;
            let batches = (0..count).step_by(calibration_batch as usize).filter_map(|start| {
                let len = calibration_batch.min(count - start);
                // A batch of one cannot give a variance.
                (len >= 2).then(|| {
                    order
                        .f_narrow(0, start, len)
                        .and_then(|index| train_images.f_index_select(0, &index))
                        .and_then(|x| normalize.apply(&x))
                })
            });
            let used = model.net.recalibrate_batch_norm(batches)?;
            debug!(images = count, batches = used, "batch-norm statistics recalibrated");
        }
        self.check_stop()?;
        let accuracy =
            evaluate(model, &validation_images, &validation.labels, &normalize, config.eval_batch_size)?;
        self.result.accuracy = accuracy;
        if let Some(test) = &data.test {
            self.check_stop()?;
            let test = test.to_device(device)?;
            let test_images = resize_uint8(&test.images, resolution)?;
            self.result.test_accuracy =
                Some(evaluate(model, &test_images, &test.labels, &normalize, config.eval_batch_size)?);
        }
        if config.measure_latency {
            self.check_stop()?;
            self.result.latency_ms = Some(measure_latency(model, 3, 20)?);
        }
        Ok(())
    }
}

/// Per-channel normalisation folded into one multiply-add: `x · scale + shift` with
/// `scale = 1 / σ` and `shift = −μ / σ`, μ and σ in pixel units (0–255) from the training images.
#[derive(Debug)]
pub struct Normalizer {
    scale: Tensor,
    shift: Tensor,
}

impl Normalizer {
    /// Statistics of uint8 images `[N, C, H, W]`, computed in chunks on their device.
    pub fn from_images(images: &Tensor) -> Result<Self, TchError> {
        let size = images.size();
        let (n, c) = (size[0], size[1]);
        let device = images.device();
        let mut sum = Tensor::f_zeros([c], (Kind::Double, device))?;
        let mut sum_sq = Tensor::f_zeros([c], (Kind::Double, device))?;
        let chunk = 4096;
        let mut start = 0;
        while start < n {
            let len = chunk.min(n - start);
            let x = images.f_narrow(0, start, len)?.f_to_kind(Kind::Double)?;
            sum = sum.f_add(&x.f_sum_dim_intlist(&[0i64, 2, 3][..], false, None::<Kind>)?)?;
            sum_sq =
                sum_sq.f_add(&x.f_square()?.f_sum_dim_intlist(&[0i64, 2, 3][..], false, None::<Kind>)?)?;
            start += len;
        }
        let count = (n * size[2] * size[3]) as f64;
        let mean = sum.f_div_scalar(count)?;
        let var = sum_sq.f_div_scalar(count)?.f_sub(&mean.f_square()?)?;
        let std = var.f_clamp_min(1e-6)?.f_sqrt()?;
        let scale = std.f_reciprocal()?;
        let shift = mean.f_div(&std)?.f_neg()?;
        let shape = [1, c, 1, 1];
        Ok(Normalizer {
            scale: scale.f_to_kind(Kind::Float)?.f_reshape(shape)?,
            shift: shift.f_to_kind(Kind::Float)?.f_reshape(shape)?,
        })
    }

    /// uint8 batch → normalised float batch (zero mean, unit variance per channel).
    pub fn apply(&self, images: &Tensor) -> Result<Tensor, TchError> {
        images.f_to_kind(Kind::Float)?.f_mul(&self.scale)?.f_add_(&self.shift)
    }
}

/// Resizes uint8 images to `resolution × resolution` (bilinear), in chunks, staying uint8.
pub fn resize_uint8(images: &Tensor, resolution: i64) -> Result<Tensor, TchError> {
    let size = images.size();
    if size[2] == resolution && size[3] == resolution {
        return Ok(images.shallow_clone());
    }
    let n = size[0];
    let chunk = 2048;
    let mut parts = Vec::new();
    let mut start = 0;
    while start < n {
        let len = chunk.min(n - start);
        let x = images.f_narrow(0, start, len)?.f_to_kind(Kind::Float)?;
        let y = x.f_upsample_bilinear2d([resolution, resolution], false, None, None)?;
        parts.push(y.f_round()?.f_clamp(0.0, 255.0)?.f_to_kind(Kind::Uint8)?);
        start += len;
    }
    Tensor::f_cat(&parts, 0)
}

fn augment(xs: &Tensor, augment: Augment, rng: &mut ChaCha8Rng) -> Result<Tensor, TchError> {
    use rand::Rng;
    let mut xs = xs.shallow_clone();
    if augment.flip {
        let n = xs.size()[0];
        let flip = Tensor::f_rand([n, 1, 1, 1], (Kind::Float, xs.device()))?.f_lt(0.5)?;
        xs = xs.f_flip([3])?.f_where_self(&flip, &xs)?;
    }
    if augment.crop_padding > 0 {
        let p = i64::from(augment.crop_padding);
        let size = xs.size();
        let padded = xs.f_constant_pad_nd([p, p, p, p])?;
        let dy = rng.random_range(0..=2 * p);
        let dx = rng.random_range(0..=2 * p);
        xs = padded.f_narrow(2, dy, size[2])?.f_narrow(3, dx, size[3])?;
    }
    Ok(xs)
}

/// Top-1 accuracy of `model` on uint8 images, without gradients, in eval mode.
pub fn evaluate(
    model: &Model,
    images: &Tensor,
    labels: &Tensor,
    normalize: &Normalizer,
    batch: usize,
) -> Result<f64> {
    let n = images.size()[0];
    let batch = batch as i64;
    tch::no_grad(|| {
        let mut correct = Tensor::f_zeros([] as [i64; 0], (Kind::Int64, images.device()))?;
        let mut start = 0;
        while start < n {
            let len = batch.min(n - start);
            let xs = normalize.apply(&images.f_narrow(0, start, len)?)?;
            let logits = model.net.try_forward(&xs, false)?;
            let predicted = logits.f_argmax(-1, false)?;
            correct = correct
                .f_add(&predicted.f_eq_tensor(&labels.f_narrow(0, start, len)?)?.f_sum(Kind::Int64)?)?;
            start += len;
        }
        Ok(correct.f_double_value(&[])? / n.max(1) as f64)
    })
}

/// Median batch-1 inference latency in milliseconds at the model's resolution (MnasNet measured
/// on a phone; this measures on the model's device), after `warmup` untimed runs.
pub fn measure_latency(model: &Model, warmup: usize, runs: usize) -> Result<f64> {
    let r = i64::from(model.arch.resolution);
    let c = i64::from(model.arch.input_channels);
    let device = model.device();
    let xs = Tensor::f_zeros([1, c, r, r], (Kind::Float, device))?;
    let sync = || {
        if let Device::Cuda(i) = device {
            tch::Cuda::synchronize(i as i64);
        }
    };
    tch::no_grad(|| {
        for _ in 0..warmup {
            let _ = model.net.try_forward(&xs, false)?;
        }
        sync();
        let mut times = Vec::with_capacity(runs.max(1));
        for _ in 0..runs.max(1) {
            let t = Instant::now();
            let _ = model.net.try_forward(&xs, false)?;
            sync();
            times.push(t.elapsed().as_secs_f64() * 1e3);
        }
        times.sort_by(f64::total_cmp);
        Ok(times[times.len() / 2])
    })
}
