//! One proxy training run in the order of the procedure: seed, prepare the data on the device,
//! build the network, train epoch by epoch, recalibrate batch norm, then score on the held-out
//! validation set (and the test set and latency when asked).

use std::sync::atomic::{AtomicBool, Ordering};
use std::time::Instant;

use effnas_space::{arch_hash, cost, ArchSpec};
use rand::seq::SliceRandom;
use rand::SeedableRng;
use rand_chacha::ChaCha8Rng;
use tch::{Device, Kind, Reduction, TchError, Tensor};
use tracing::{debug, info, info_span};

use super::data::{augment, prepare_set};
use super::{
    evaluate, measure_latency, EpochRecord, Normalizer, Progress, ProxyConfig, ProxyData, TrainResult,
};
use crate::data::ImageSet;
use crate::device::device_name;
use crate::error::EvalError;
use crate::model::checkpoint::{InputNorm, Meta};
use crate::model::{Model, NormConfig};
use crate::optim::per_tensor::PerTensorOptimizer;
use crate::optim::{Optimizer, Update};
use crate::transfer::Transfer;

/// Why a run ended early. Mapped to a [`super::Failure`] (or an `Err`) by the caller.
pub(super) enum RunFailure {
    Diverged(String),
    TimeLimit(String),
    /// Not one optimizer step could be taken: the network is untrained, its accuracy meaningless.
    NoSteps(String),
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

type Step<T = ()> = std::result::Result<T, RunFailure>;

/// The proxy's images on the training device, resized once to the architecture's resolution
/// and kept as uint8; batches are normalised as they are drawn.
struct DeviceData {
    train: ImageSet,
    validation: ImageSet,
    normalize: Normalizer,
}

/// The network being trained and its optimizer.
pub(super) struct Learner {
    pub(super) model: Model,
    optimizer: Box<dyn Update>,
}

/// How an epoch is cut into batches: `batch` images per step, a last batch of one image (which
/// batch norm cannot normalise) dropped.
#[derive(Debug, Clone, Copy)]
struct Batches {
    images: i64,
    batch: i64,
    steps_per_epoch: u64,
    total_steps: u64,
}

impl Batches {
    fn new(images: usize, batch: usize, epochs: u32) -> Self {
        let (n, b) = (images as i64, batch as i64);
        let steps_per_epoch = (n / b + i64::from(n % b > 1)).max(1) as u64;
        Batches { images: n, batch: b, steps_per_epoch, total_steps: steps_per_epoch * u64::from(epochs) }
    }

    /// `(start, size)` of step `step` within the epoch's order; `None` for a batch under two.
    fn range(&self, step: u64) -> Option<(i64, i64)> {
        let start = step as i64 * self.batch;
        let size = self.batch.min(self.images - start);
        (size >= 2).then_some((start, size))
    }
}

/// The state of one run, so that a failure half-way still reports what was measured.
pub(super) struct Run<'a> {
    arch: &'a ArchSpec,
    config: &'a ProxyConfig,
    device: Device,
    stop: &'a AtomicBool,
    started: Instant,
    /// When the first training step started (the start of the run until then).
    train_started: Instant,
    /// Shuffles, random crops and the recalibration sample, seeded by the config.
    rng: ChaCha8Rng,
    pub(super) result: TrainResult,
    /// The last loss read back from the device.
    last_loss: Option<f64>,
}

impl<'a> Run<'a> {
    pub(super) fn new(
        arch: &'a ArchSpec,
        config: &'a ProxyConfig,
        device: Device,
        stop: &'a AtomicBool,
    ) -> Self {
        let analytic = cost(arch);
        let result =
            TrainResult::blank(arch, device_name(device), arch_hash(arch), analytic.params, analytic.macs);
        let rng = ChaCha8Rng::seed_from_u64(config.seed);
        let started = Instant::now();
        Run { arch, config, device, stop, started, train_started: started, rng, result, last_loss: None }
    }

    /// The whole procedure. The learner is left in `learner` as soon as it is built, so the
    /// caller gets the model even when a later step fails.
    pub(super) fn execute(
        &mut self,
        data: &ProxyData,
        progress: &mut dyn FnMut(Progress),
        learner: &mut Option<Learner>,
        transfer: Option<Transfer>,
    ) -> Step {
        self.seed_libtorch();
        self.check_stop()?;
        let prepared = self.prepare_data(data)?;
        self.check_stop()?;
        let built = match transfer {
            None => self.build()?,
            Some(transfer) => self.adopt(transfer)?,
        };
        let learner = learner.insert(built);
        describe_input(&mut learner.model.meta, &prepared, data, self.arch.resolution);
        self.check_stop()?;
        self.check_time()?;
        self.train_epochs(learner, &prepared, progress)?;
        self.check_stop()?;
        self.recalibrate_batch_norm(&learner.model, &prepared)?;
        self.score(&learner.model, &prepared, data)
    }

    /// The result with the wall-clock figures filled in.
    pub(super) fn finish(&self) -> TrainResult {
        let mut result = self.result.clone();
        result.seconds = self.started.elapsed().as_secs_f64();
        if result.train_seconds > 0.0 {
            result.images_per_second = result.images_seen as f64 / result.train_seconds;
        }
        result
    }

    /// Seeds libtorch's process-wide generators (weights, dropout, flips) with the config's seed.
    fn seed_libtorch(&self) {
        tch::manual_seed(self.config.seed as i64);
        if let Device::Cuda(_) = self.device {
            tch::Cuda::manual_seed_all(self.config.seed);
        }
    }

    /// Ends the run when the stop flag is raised.
    fn check_stop(&self) -> Step {
        if self.stop.load(Ordering::Relaxed) {
            Err(RunFailure::Interrupted)
        } else {
            Ok(())
        }
    }

    fn check_time(&self) -> Step {
        match self.config.time_limit {
            Some(limit) if self.started.elapsed().as_secs_f64() > limit => Err(RunFailure::TimeLimit(
                format!("time limit of {limit} s exceeded after {} steps", self.result.steps),
            )),
            _ => Ok(()),
        }
    }

    /// Training and validation images on the device at the architecture's resolution (the
    /// image budget was applied by `ProxyData::from_dataset`), and the normaliser from the
    /// training images.
    fn prepare_data(&mut self, data: &ProxyData) -> Step<DeviceData> {
        let resolution = i64::from(self.arch.resolution);
        let train = prepare_set(&data.train, self.device, resolution)?;
        let validation = prepare_set(&data.validation, self.device, resolution)?;
        let normalize = Normalizer::from_images(&train.images)?;
        self.result.train_images = train.len();
        self.result.validation_images = validation.len();
        debug!(train = train.len(), validation = validation.len(), resolution, "data ready");
        Ok(DeviceData { train, validation, normalize })
    }

    /// The network (with the config's batch norm and precision) and its optimizer.
    fn build(&mut self) -> Step<Learner> {
        let config = self.config;
        let norm = NormConfig { momentum: config.bn_momentum, eps: config.bn_eps };
        let mut model = Model::with_norm(self.arch, self.device, norm)?;
        model.net.set_precision(config.precision);
        if config.channels_last {
            model.to_channels_last()?;
        }
        if let Device::Cuda(_) = self.device {
            // Proxies train at fixed shapes: cuDNN's autotuning pays for itself within a few
            // steps. A process-wide setting, as in PyTorch.
            tch::Cuda::cudnn_set_benchmark(true);
        }
        self.result.params = model.num_parameters();
        let optimizer: Box<dyn Update> = if config.per_tensor_optimizer {
            Box::new(PerTensorOptimizer::new(&model.vs, config.optimizer, config.weight_decay))
        } else {
            Box::new(Optimizer::new(&model.vs, config.optimizer, config.weight_decay)?)
        };
        Ok(Learner { model, optimizer })
    }

    /// A pretrained network adapted to the task (`crate::transfer`), with the config's
    /// precision and layout, its frozen part frozen and the optimizer of what trains.
    fn adopt(&mut self, mut transfer: Transfer) -> Step<Learner> {
        let config = self.config;
        transfer.model.net.set_precision(config.precision);
        if config.channels_last {
            transfer.model.to_channels_last()?;
        }
        self.result.params = transfer.model.num_parameters();
        let (model, optimizer) = transfer.into_learner(config.optimizer, config.weight_decay)?;
        Ok(Learner { model, optimizer })
    }

    fn train_epochs(
        &mut self,
        learner: &mut Learner,
        data: &DeviceData,
        progress: &mut dyn FnMut(Progress),
    ) -> Step {
        let batches = Batches::new(data.train.len(), self.config.batch_size, self.config.epochs);
        self.train_started = Instant::now();
        for epoch in 0..self.config.epochs {
            let span = info_span!("epoch", epoch = epoch + 1);
            let _enter = span.enter();
            self.train_epoch(epoch, batches, learner, data, progress)?;
        }
        self.result.train_seconds = self.train_started.elapsed().as_secs_f64();
        if self.result.steps == 0 {
            return Err(RunFailure::NoSteps(format!(
                "no training step taken: {} training image(s) cannot make a batch of 2 (batch norm needs two)",
                batches.images
            )));
        }
        Ok(())
    }

    /// One pass over the training images in a fresh random order. Between steps: the stop
    /// flag, the loss (every `check_every` steps and at the end of the epoch), progress, and
    /// the time limit.
    fn train_epoch(
        &mut self,
        epoch: u32,
        batches: Batches,
        learner: &mut Learner,
        data: &DeviceData,
        progress: &mut dyn FnMut(Progress),
    ) -> Step {
        let config = self.config;
        let order = self.shuffled(batches.images, batches.images)?;
        let mut loss_sum = Tensor::f_zeros([] as [i64; 0], (Kind::Float, self.device))?;
        let (mut lr, mut steps) = (config.lr, 0u64);
        for step in 0..batches.steps_per_epoch {
            self.check_stop()?;
            let Some((start, size)) = batches.range(step) else { break };
            let t = f64::from(epoch) + step as f64 / batches.steps_per_epoch as f64;
            lr = config.learning_rate(t, f64::from(config.epochs));
            let loss = self.train_step(learner, data, &order.f_narrow(0, start, size)?, lr)?;
            let _ = loss_sum.f_add_(&loss.f_detach()?)?;
            steps += 1;
            self.result.steps += 1;
            self.result.images_seen += size as u64;
            if self.result.steps % config.check_every as u64 == 0 || step + 1 == batches.steps_per_epoch {
                self.check_loss(&loss, epoch)?;
            }
            self.result.train_seconds = self.train_started.elapsed().as_secs_f64();
            let (step, total_steps, loss) = (self.result.steps, batches.total_steps, self.last_loss);
            progress(Progress { epoch: epoch + 1, epochs: config.epochs, step, total_steps, loss });
            self.check_time()?;
        }
        self.end_epoch(epoch, &loss_sum, steps, lr)
    }

    /// Forward, backward and update on the training images at `index`; returns the loss.
    fn train_step(
        &mut self,
        learner: &mut Learner,
        data: &DeviceData,
        index: &Tensor,
        lr: f64,
    ) -> Step<Tensor> {
        let xs = data.normalize.apply(&data.train.images.f_index_select(0, index)?)?;
        let xs = augment(&xs, self.config.augment, &mut self.rng)?;
        let ys = data.train.labels.f_index_select(0, index)?;
        let logits = learner.model.net.try_forward(&xs, true)?;
        let smoothing = self.config.label_smoothing;
        let loss = logits.f_cross_entropy_loss::<Tensor>(&ys, None, Reduction::Mean, -100, smoothing)?;
        learner.optimizer.zero_grad()?;
        loss.f_backward()?;
        learner.optimizer.step(lr)?;
        Ok(loss)
    }

    /// Reads the loss back (a device synchronisation): divergence when it is not finite.
    fn check_loss(&mut self, loss: &Tensor, epoch: u32) -> Step {
        let value = loss.f_double_value(&[])?;
        if !value.is_finite() {
            let steps = self.result.steps;
            return Err(RunFailure::Diverged(format!(
                "loss is {value} at step {steps} (epoch {})",
                epoch + 1
            )));
        }
        self.last_loss = Some(value);
        Ok(())
    }

    /// Records the epoch's mean loss on the curve; divergence when it is not finite.
    fn end_epoch(&mut self, epoch: u32, loss_sum: &Tensor, steps: u64, lr: f64) -> Step {
        let mean_loss = loss_sum.f_double_value(&[])? / steps.max(1) as f64;
        if !mean_loss.is_finite() {
            return Err(RunFailure::Diverged(format!("mean loss of epoch {} is {mean_loss}", epoch + 1)));
        }
        let seconds = self.started.elapsed().as_secs_f64();
        self.result.curve.push(EpochRecord { epoch: epoch + 1, train_loss: mean_loss, lr, seconds });
        info!(loss = mean_loss, lr, "epoch done");
        Ok(())
    }

    /// The first `keep` of a seeded random order of `0..n`, as an index tensor on the device.
    fn shuffled(&mut self, n: i64, keep: i64) -> Result<Tensor, TchError> {
        let mut order: Vec<i64> = (0..n).collect();
        order.shuffle(&mut self.rng);
        order.truncate(keep.max(0) as usize);
        Tensor::f_from_slice(&order)?.f_to_device(self.device)
    }

    /// Re-estimates the batch-norm statistics on a seeded random sample of up to
    /// `bn_recalibration_images` training images (`Network::recalibrate_batch_norm`); random, so
    /// that class-sorted data still give mixed batches.
    fn recalibrate_batch_norm(&mut self, model: &Model, data: &DeviceData) -> Step {
        let config = self.config;
        if config.bn_recalibration_images == 0 {
            return Ok(());
        }
        let n = data.train.len() as i64;
        let count = (config.bn_recalibration_images as i64).min(n);
        let batch = config.batch_size.max(config.eval_batch_size) as i64;
        let order = self.shuffled(n, count)?;
        let batches = (0..count).step_by(batch as usize).filter_map(|start| {
            let len = batch.min(count - start);
            // A batch of one cannot give a variance.
            (len >= 2).then(|| {
                order
                    .f_narrow(0, start, len)
                    .and_then(|index| data.train.images.f_index_select(0, &index))
                    .and_then(|x| data.normalize.apply(&x))
            })
        });
        let used = model.net.recalibrate_batch_norm(batches)?;
        debug!(images = count, batches = used, "batch-norm statistics recalibrated");
        Ok(())
    }

    /// Validation accuracy; test accuracy when the data have a test set; latency when asked.
    fn score(&mut self, model: &Model, data: &DeviceData, proxy: &ProxyData) -> Step {
        let batch = self.config.eval_batch_size;
        self.check_stop()?;
        let validation = &data.validation;
        self.result.accuracy =
            evaluate(model, &validation.images, &validation.labels, &data.normalize, batch)?;
        if let Some(test) = &proxy.test {
            self.check_stop()?;
            let test = prepare_set(test, self.device, i64::from(self.arch.resolution))?;
            self.result.test_accuracy =
                Some(evaluate(model, &test.images, &test.labels, &data.normalize, batch)?);
        }
        if self.config.measure_latency {
            self.check_stop()?;
            self.result.latency_ms = Some(measure_latency(model, 3, 20)?);
        }
        Ok(())
    }
}

/// What a checkpoint of this training tells its users: the normalisation of the training
/// images, the resolution, and the class names when the data set has more than numbers.
fn describe_input(meta: &mut Meta, prepared: &DeviceData, data: &ProxyData, resolution: u32) {
    let normalize = &prepared.normalize;
    meta.input = Some(InputNorm { resolution, mean: normalize.mean.clone(), std: normalize.std.clone() });
    let names = &data.train.class_names;
    let numbered = names.iter().enumerate().all(|(i, n)| *n == i.to_string());
    meta.class_names = (!numbered).then(|| names.clone());
    meta.dataset = Some(data.name.clone());
}

#[cfg(test)]
mod tests {
    use super::Batches;

    #[test]
    fn a_last_batch_of_one_image_is_dropped() {
        let even = Batches::new(256, 32, 4);
        assert_eq!((even.steps_per_epoch, even.total_steps), (8, 32));
        assert_eq!(even.range(7), Some((224, 32)));
        let one_over = Batches::new(65, 32, 1);
        assert_eq!(one_over.steps_per_epoch, 2);
        assert_eq!(one_over.range(1), Some((32, 32)));
        let two_over = Batches::new(66, 32, 1);
        assert_eq!(two_over.steps_per_epoch, 3);
        assert_eq!(two_over.range(2), Some((64, 2)));
        let small = Batches::new(1, 32, 3);
        assert_eq!((small.steps_per_epoch, small.range(0)), (1, None));
    }
}
