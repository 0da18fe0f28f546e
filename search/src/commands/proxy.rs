//! The proxy task shared by `search` (and the commands built on it): which data, how many
//! images and epochs, at what resolution and width, on which devices; and the evaluator that
//! trains search candidates through the evaluator's worker pool.

use std::collections::HashMap;
use std::time::Duration;

use anyhow::{bail, Context, Result};
use effnas_evaluator::data;
use effnas_evaluator::device::resolve_device;
use effnas_evaluator::optim::OptimizerKind;
use effnas_evaluator::pool::{PoolConfig, WorkerPool};
use effnas_evaluator::score::Objective;
use effnas_evaluator::train::{ProxyConfig, ProxyData, Status, TrainResult};
use effnas_search::orchestrator::{self, Evaluation, Evaluator, Measured};
use effnas_space::{arch_hash, scale, ArchSpec, Multipliers};
use effnas_store::{EpochMetrics, TrialId};
use serde::{Deserialize, Serialize};
use serde_json::json;
use sha2::{Digest, Sha256};

/// Proxy-task flags. Defaults are sized so that one trial takes well under a minute on a
/// 2-core CPU (see the README's measured figures).
#[derive(Debug, Clone, PartialEq, clap::Args, Serialize, Deserialize)]
pub struct ProxyArgs {
    /// Data set: fashion-mnist (Debian's files), or a folder of IDX files, CIFAR-10 batches or class sub-folders.
    #[arg(long, default_value = data::DEFAULT_DATASET)]
    pub dataset: String,
    /// Training epochs of each proxy.
    #[arg(long, default_value_t = 2)]
    pub epochs: u32,
    /// Training images of each proxy (a fixed, seeded, class-balanced subset).
    #[arg(long, default_value_t = 2000)]
    pub train_images: usize,
    /// Images held out of the training set for validation (fixed for the whole run).
    #[arg(long, default_value_t = 1000)]
    pub validation_images: usize,
    /// Proxy resolution in pixels.
    #[arg(long, default_value_t = 32)]
    pub resolution: u32,
    /// Width multiplier applied to every candidate for the proxy.
    #[arg(long, default_value_t = 0.25)]
    pub width: f64,
    /// Depth multiplier applied to every candidate for the proxy.
    #[arg(long, default_value_t = 0.5)]
    pub depth: f64,
    /// Batch size.
    #[arg(long, default_value_t = 64)]
    pub batch_size: usize,
    /// Peak learning rate (SGD with momentum 0.9, cosine schedule, short warm-up).
    #[arg(long, default_value_t = 0.1)]
    pub lr: f64,
    /// Devices: cpu, cuda, cuda:N, or a comma-separated list (workers run on each).
    #[arg(long, default_value = "cpu")]
    pub device: String,
    /// Seconds a proxy may train before it is stopped and counted as failed.
    #[arg(long)]
    pub time_limit: Option<f64>,
}

/// Proxy settings with the data loaded and the devices checked.
pub struct ResolvedProxy {
    pub args: ProxyArgs,
    /// The model resolution that trains at `--resolution`; other resolutions scale in
    /// proportion (a compound point at γ = 1.15 trains at 1.15 × the proxy resolution).
    pub reference_resolution: u32,
    pub data: ProxyData,
    pub config: ProxyConfig,
    pub devices: Vec<tch::Device>,
}

impl ProxyArgs {
    fn check(&self) -> Result<()> {
        if self.epochs == 0 {
            bail!("--epochs must be at least 1");
        }
        if self.train_images == 0 || self.validation_images == 0 {
            bail!("--train-images and --validation-images must be at least 1");
        }
        if !(8..=1024).contains(&self.resolution) {
            bail!("--resolution {} is out of range (8 to 1024)", self.resolution);
        }
        for (flag, value) in [("--width", self.width), ("--depth", self.depth)] {
            if !(value.is_finite() && value > 0.0 && value <= 8.0) {
                bail!("{flag} {value} is out of range (above 0, at most 8)");
            }
        }
        if self.batch_size == 0 {
            bail!("--batch-size must be at least 1");
        }
        if !(self.lr.is_finite() && self.lr > 0.0) {
            bail!("--lr must be a positive number");
        }
        if self.time_limit.is_some_and(|t| !(t.is_finite() && t > 0.0)) {
            bail!("--time-limit must be a positive number of seconds");
        }
        Ok(())
    }

    /// Checks the flags and the devices, then loads the data and makes the fixed split.
    pub fn resolve(&self, seed: u64) -> Result<ResolvedProxy> {
        self.check()?;
        let devices = self
            .device
            .split(',')
            .map(|d| resolve_device(d.trim()).with_context(|| format!("--device {:?}", self.device)))
            .collect::<Result<Vec<_>>>()?;
        let dataset = data::load(&self.dataset).with_context(|| format!("--dataset {:?}", self.dataset))?;
        // The split seed is fixed, not --seed: every run on this data validates on the same images.
        let data =
            ProxyData::from_dataset(&dataset, self.validation_images, Some(self.train_images), false, 0)
                .with_context(|| format!("preparing the proxy data from {}", self.dataset))?;
        let config = ProxyConfig {
            epochs: self.epochs,
            train_images: Some(self.train_images),
            batch_size: self.batch_size,
            optimizer: OptimizerKind::SGD,
            lr: self.lr,
            seed,
            time_limit: self.time_limit,
            ..ProxyConfig::default()
        };
        config.validate().context("proxy settings")?;
        Ok(ResolvedProxy {
            args: self.clone(),
            reference_resolution: effnas_space::arch::defaults::RESOLUTION,
            data,
            config,
            devices,
        })
    }
}

impl ResolvedProxy {
    /// Identifies everything that changes a proxy's result (data, split, budget, training
    /// settings, multipliers, seed), but not where it runs: results are reused across runs only
    /// under the same key.
    pub fn key(&self) -> String {
        let settings = json!({
            "dataset": self.args.dataset,
            "validation_images": self.args.validation_images,
            "resolution": self.args.resolution,
            "width": self.args.width,
            "depth": self.args.depth,
            "config": self.config,
        });
        let digest = Sha256::digest(settings.to_string().as_bytes());
        let hex: String = digest[..6].iter().map(|b| format!("{b:02x}")).collect();
        format!(
            "{}-e{}-n{}-r{}-w{}-d{}-{hex}",
            self.args.dataset,
            self.args.epochs,
            self.args.train_images,
            self.args.resolution,
            self.args.width,
            self.args.depth
        )
    }

    /// The network a proxy trains for a searched architecture: the data's input channels and
    /// classes, the width and depth multipliers, and the proxy resolution scaled by the
    /// architecture's resolution over the reference.
    pub fn proxy_arch(&self, arch: &ArchSpec) -> Result<ArchSpec> {
        let scaled =
            scale(arch, Multipliers { width: self.args.width, depth: self.args.depth, resolution: 1.0 })?;
        let ratio = f64::from(arch.resolution) / f64::from(self.reference_resolution.max(1));
        let resolution = (f64::from(self.args.resolution) * ratio).round().max(1.0) as u32;
        Ok(self.data.adapt(&scaled, Some(resolution))?)
    }
}

/// A training curve as the store keeps it (0-based epochs).
pub fn epoch_metrics(result: &TrainResult) -> Vec<EpochMetrics> {
    result
        .curve
        .iter()
        .map(|e| EpochMetrics {
            epoch: e.epoch.saturating_sub(1),
            train_loss: Some(e.train_loss),
            learning_rate: Some(e.lr),
            seconds: Some(e.seconds),
            ..EpochMetrics::default()
        })
        .collect()
}

/// Trains search candidates in the evaluator's worker pool.
pub struct TrainEvaluator {
    proxy: ResolvedProxy,
    pool: WorkerPool,
    capacity: usize,
    /// Proxy architectures in flight, by trial, for the record kept with each result.
    in_flight: HashMap<u64, ArchSpec>,
}

impl TrainEvaluator {
    /// `workers` per device, each with its own model; the proxy's objective is the search's.
    pub fn new(proxy: ResolvedProxy, workers: usize, objective: Objective) -> Result<Self> {
        let mut proxy = proxy;
        proxy.config.objective = objective;
        let pool = WorkerPool::new(&PoolConfig::devices(proxy.devices.clone(), workers), &proxy.data)
            .context("starting the workers")?;
        let capacity = pool.workers();
        Ok(TrainEvaluator { proxy, pool, capacity, in_flight: HashMap::new() })
    }
}

fn evaluator_error(error: impl std::fmt::Display) -> orchestrator::SearchError {
    orchestrator::SearchError::Evaluator(error.to_string())
}

impl Evaluator for TrainEvaluator {
    fn capacity(&self) -> usize {
        self.capacity
    }

    fn submit(&mut self, trial: TrialId, arch: &ArchSpec) -> orchestrator::Result<()> {
        let proxy_arch = self.proxy.proxy_arch(arch).map_err(evaluator_error)?;
        let id = trial.0 as u64;
        self.pool.submit(id, proxy_arch.clone(), self.proxy.config.clone()).map_err(evaluator_error)?;
        self.in_flight.insert(id, proxy_arch);
        Ok(())
    }

    fn next(&mut self, timeout: Duration) -> orchestrator::Result<Option<Evaluation>> {
        let Some(job) = self.pool.recv_timeout(timeout) else {
            return Ok(None);
        };
        let proxy_arch = self.in_flight.remove(&job.trial);
        let result = job.result;
        let trial = TrialId(job.trial as i64);
        let outcome = match result.status {
            Status::Complete => Ok(Measured {
                accuracy: result.accuracy,
                loss: result.curve.last().map_or(f64::NAN, |e| e.train_loss),
                seconds: result.seconds,
                images_per_second: result.images_per_second,
                latency_ms: result.latency_ms,
                epochs: epoch_metrics(&result),
                extra: json!({
                    "evaluator": "train",
                    "device": result.device,
                    "worker": job.worker,
                    "proxy_params": result.params,
                    "proxy_flops": result.flops,
                    "proxy_resolution": result.resolution,
                    "proxy_hash": proxy_arch.as_ref().map(arch_hash),
                    "train_images": result.train_images,
                    "validation_images": result.validation_images,
                    "images_seen": result.images_seen,
                }),
            }),
            Status::Failed => Err(result.reason.unwrap_or_else(|| format!("failed ({:?})", result.failure))),
        };
        Ok(Some(Evaluation { trial, outcome }))
    }
}
