//! Proxy training as an [`Evaluator`]: the evaluator's worker pool trains the proxy network of
//! each queued architecture ([`ResolvedProxy::proxy_arch`]); results come back as typed
//! outcomes with the proxy's own cost kept in `extra`.

use std::collections::{HashMap, VecDeque};
use std::sync::atomic::AtomicBool;
use std::sync::Arc;
use std::time::Duration;

use effnas_evaluator::model::Model;
use effnas_evaluator::pool::{JobResult, PoolConfig, WorkerPool};
use effnas_evaluator::score::Metric;
use effnas_evaluator::train::{measure_latency, Failure, Status, TrainResult};
use effnas_space::{arch_hash, ArchSpec};
use effnas_store::{EpochMetrics, FailureKind, TrialId};
use serde_json::json;

use crate::evaluate::{Evaluation, Evaluator, Measured, Outcome, TrialFailure};
use crate::orchestrator::{self, SearchError};
use crate::proxy::ResolvedProxy;

/// Whether the searched network's own latency is measured after each proxy (for a latency
/// objective: the reward's X is the real network's latency, not the proxy's).
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Latency {
    Skip,
    MeasureSearched,
}

impl Latency {
    /// What the objective's metric needs.
    pub fn for_metric(metric: Metric) -> Self {
        match metric {
            Metric::Flops => Latency::Skip,
            Metric::LatencyMs => Latency::MeasureSearched,
        }
    }
}

/// Trains search candidates in the evaluator's worker pool.
pub struct TrainEvaluator {
    proxy: ResolvedProxy,
    pool: WorkerPool,
    capacity: usize,
    latency: Latency,
    /// Architectures in flight by trial: (searched, proxy), for the record kept with each result.
    in_flight: HashMap<u64, (ArchSpec, ArchSpec)>,
    /// Outcomes known without training (no proxy network could be made).
    ready: VecDeque<Evaluation>,
}

impl TrainEvaluator {
    /// `workers` per device, each with its own model. Raising `stop` stops every trial in flight
    /// at its next training step (it comes back as [`Outcome::Interrupted`]).
    pub fn new(
        proxy: ResolvedProxy,
        workers: usize,
        latency: Latency,
        stop: Option<Arc<AtomicBool>>,
    ) -> Result<Self, SearchError> {
        let mut pool_config = PoolConfig::devices(proxy.devices.clone(), workers);
        pool_config.stop = stop;
        let pool = WorkerPool::new(&pool_config, &proxy.data)
            .map_err(|e| SearchError::Evaluator(format!("starting the workers: {e}")))?;
        let capacity = pool.workers();
        Ok(TrainEvaluator {
            proxy,
            pool,
            capacity,
            latency,
            in_flight: HashMap::new(),
            ready: VecDeque::new(),
        })
    }

    /// The searched network's batch-1 latency on the first device, in milliseconds.
    fn searched_latency(&self, searched: &ArchSpec) -> Result<f64, String> {
        let device = self.proxy.devices.first().copied().unwrap_or(tch::Device::Cpu);
        let model = Model::new(searched, device).map_err(|e| e.to_string())?;
        measure_latency(&model, 3, 20).map_err(|e| e.to_string())
    }

    fn outcome(&self, job: &JobResult, archs: Option<&(ArchSpec, ArchSpec)>) -> Outcome {
        let result = &job.result;
        if result.status == Status::Failed {
            return match result.failure {
                Some(Failure::Interrupted) => Outcome::Interrupted,
                failure => Outcome::Failed(TrialFailure::new(
                    failure_kind(failure),
                    result.reason.clone().unwrap_or_else(|| "failed".to_owned()),
                )),
            };
        }
        let latency_ms = match (self.latency, archs) {
            (Latency::MeasureSearched, Some((searched, _))) => match self.searched_latency(searched) {
                Ok(ms) => Some(ms),
                Err(e) => {
                    let message = format!("measuring the searched network's latency: {e}");
                    return Outcome::Failed(TrialFailure::new(FailureKind::Error, message));
                }
            },
            _ => None,
        };
        let proxy_hash = archs.map(|(_, proxy)| arch_hash(proxy));
        Outcome::Measured(measured(result, job.worker, latency_ms, proxy_hash))
    }
}

/// The store's failure kind for a trainer's failure.
pub fn failure_kind(failure: Option<Failure>) -> FailureKind {
    match failure {
        Some(Failure::Diverged) => FailureKind::Diverged,
        Some(Failure::OutOfMemory) => FailureKind::OutOfMemory,
        Some(Failure::TimeLimit) => FailureKind::TimeLimit,
        Some(Failure::Invalid) => FailureKind::Invalid,
        Some(Failure::Error | Failure::Interrupted) | None => FailureKind::Error,
    }
}

/// A complete training as the search records it; the proxy's own cost goes to `extra`.
fn measured(
    result: &TrainResult,
    worker: usize,
    latency_ms: Option<f64>,
    proxy_hash: Option<String>,
) -> Measured {
    Measured {
        accuracy: result.accuracy,
        loss: result.curve.last().map_or(f64::NAN, |e| e.train_loss),
        seconds: result.seconds,
        images_per_second: result.images_per_second,
        latency_ms,
        epochs: epoch_metrics(result),
        extra: json!({
            "evaluator": "train",
            "device": result.device,
            "worker": worker,
            "proxy_params": result.params,
            "proxy_flops": result.flops,
            "proxy_resolution": result.resolution,
            "proxy_hash": proxy_hash,
            "proxy_latency_ms": result.latency_ms,
            "train_images": result.train_images,
            "validation_images": result.validation_images,
            "images_seen": result.images_seen,
        }),
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

impl Evaluator for TrainEvaluator {
    fn capacity(&self) -> usize {
        self.capacity
    }

    fn submit(&mut self, trial: TrialId, arch: &ArchSpec) -> orchestrator::Result<()> {
        let id = trial.0 as u64;
        let proxy_arch = match self.proxy.proxy_arch(arch) {
            Ok(proxy_arch) => proxy_arch,
            Err(e) => {
                // The architecture cannot become a proxy (e.g. too small for the proxy
                // resolution): a failed trial, not a failed search.
                let failure = TrialFailure::new(FailureKind::Invalid, format!("no proxy network: {e}"));
                self.ready.push_back(Evaluation { trial, outcome: Outcome::Failed(failure) });
                return Ok(());
            }
        };
        self.pool
            .submit(id, proxy_arch.clone(), self.proxy.config.clone())
            .map_err(|e| SearchError::Evaluator(e.to_string()))?;
        self.in_flight.insert(id, (arch.clone(), proxy_arch));
        Ok(())
    }

    fn next(&mut self, timeout: Duration) -> orchestrator::Result<Option<Evaluation>> {
        if let Some(ready) = self.ready.pop_front() {
            return Ok(Some(ready));
        }
        let Some(job) = self.pool.recv_timeout(timeout) else {
            return Ok(None);
        };
        let archs = self.in_flight.remove(&job.trial);
        let outcome = self.outcome(&job, archs.as_ref());
        Ok(Some(Evaluation { trial: TrialId(job.trial as i64), outcome }))
    }
}
