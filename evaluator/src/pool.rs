//! The worker pool: K workers per device over one or more devices, training proxies at once.
//!
//! Why several per device: a small proxy leaves a GPU mostly idle between kernel launches, and
//! concurrent trials can fill that time. How much this thread pool gains on a GPU has not been
//! measured (no figure is claimed here; `examples/bench_train.rs --workers K` measures it). On
//! CPU, K workers each get `cores / K` libtorch threads so that together they never
//! oversubscribe the cores.
//!
//! Each worker is a thread holding handles on the host copy of the data (no pixels are copied
//! when the pool starts); every trial then copies the images it trains on to the worker's
//! device and resizes them to the trial's resolution ([`crate::train`]). Each trial builds its
//! model in its own `VarStore`; only plain data crosses threads: a [`Job`] (trial id,
//! `ArchSpec`, `ProxyConfig`) in, a [`JobResult`] out. A trial that fails (an invalid
//! architecture, NaN, out of memory, time limit, even a panic inside libtorch bindings) comes
//! back as a failed result; the pool goes on. Raising [`PoolConfig::stop`] ends every trial at
//! its next step, and every queued one before it starts, as [`Failure::Interrupted`].
//!
//! ```no_run
//! # use effnas_evaluator::{pool::{WorkerPool, PoolConfig}, train::{ProxyConfig, ProxyData}};
//! # fn demo(data: ProxyData, archs: Vec<effnas_space::ArchSpec>) -> Result<(), effnas_evaluator::EvalError> {
//! let pool = WorkerPool::new(&PoolConfig::cpu(2), &data)?;
//! for (id, arch) in archs.into_iter().enumerate() {
//!     pool.submit(id as u64, data.adapt(&arch, Some(32))?, ProxyConfig::default())?;
//! }
//! while let Some(done) = pool.recv() {
//!     println!("trial {} on {}: {:?}", done.trial, done.device, done.result.status);
//! }
//! # Ok(()) }
//! ```
//!
//! Seeds: each trial seeds libtorch's global generator with its config's seed; with more than
//! one worker in a process, weight initialisation and dropout masks of concurrent trials draw
//! from that shared generator, so runs are reproducible with one worker only.

use std::panic::{catch_unwind, AssertUnwindSafe};
use std::sync::atomic::AtomicBool;
use std::sync::mpsc::{channel, Receiver, RecvTimeoutError, Sender};
use std::sync::{Arc, Mutex};
use std::thread::JoinHandle;
use std::time::Duration;

use effnas_space::ArchSpec;
use serde::{Deserialize, Serialize};
use tch::Device;
use tracing::{debug, info_span, warn};

use crate::device::{check, device_name, threads_per_worker};
use crate::error::first_line;
use crate::error::{EvalError, Result};
use crate::train::{train_with_progress, Failure, ProxyConfig, ProxyData, TrainResult};

/// Where workers run and how many.
#[derive(Debug, Clone)]
pub struct PoolConfig {
    pub devices: Vec<Device>,
    pub workers_per_device: usize,
    /// libtorch intra-op threads per CPU worker; `None`: cores / CPU workers (at least 1).
    pub cpu_threads: Option<usize>,
    /// Raising this flag stops every trial in flight at its next training step, and every
    /// queued trial before it starts: each comes back failed with [`Failure::Interrupted`].
    pub stop: Option<Arc<AtomicBool>>,
}

impl PoolConfig {
    /// `workers` CPU workers sharing the cores.
    pub fn cpu(workers: usize) -> Self {
        PoolConfig::devices(vec![Device::Cpu], workers)
    }

    /// `workers_per_device` workers on each device.
    pub fn devices(devices: Vec<Device>, workers_per_device: usize) -> Self {
        PoolConfig { devices, workers_per_device: workers_per_device.max(1), cpu_threads: None, stop: None }
    }
}

/// A trial to train.
#[derive(Debug, Clone)]
pub struct Job {
    pub trial: u64,
    pub arch: ArchSpec,
    pub config: ProxyConfig,
}

/// A finished trial.
#[derive(Debug, Clone, Serialize, Deserialize)]
pub struct JobResult {
    pub trial: u64,
    /// Index of the worker that trained it.
    pub worker: usize,
    pub device: String,
    pub result: TrainResult,
}

/// K workers per device, fed from one queue.
#[derive(Debug)]
pub struct WorkerPool {
    jobs: Option<Sender<Job>>,
    results: Receiver<JobResult>,
    handles: Vec<JoinHandle<()>>,
    in_flight: Mutex<usize>,
    workers: usize,
}

impl WorkerPool {
    /// Starts the workers. Every device is checked first; each worker keeps handles on `data`
    /// (no copy) and each trial copies what it trains on to the worker's device.
    pub fn new(config: &PoolConfig, data: &ProxyData) -> Result<Self> {
        if config.devices.is_empty() {
            return Err(EvalError::Pool("no devices given".to_owned()));
        }
        for &device in &config.devices {
            check(device)?;
        }
        let cpu_workers =
            config.devices.iter().filter(|d| **d == Device::Cpu).count() * config.workers_per_device;
        let cpu_threads = config.cpu_threads.unwrap_or_else(|| threads_per_worker(cpu_workers));
        let (job_tx, job_rx) = channel::<Job>();
        let job_rx = Arc::new(Mutex::new(job_rx));
        let (result_tx, result_rx) = channel::<JobResult>();
        let stop = config.stop.clone().unwrap_or_default();
        let mut handles = Vec::new();
        let mut worker = 0;
        for &device in &config.devices {
            for _ in 0..config.workers_per_device {
                let jobs = Arc::clone(&job_rx);
                let results = result_tx.clone();
                let data = data.shallow_clone();
                let threads = (device == Device::Cpu).then_some(cpu_threads);
                let stop = Arc::clone(&stop);
                let handle = std::thread::Builder::new()
                    .name(format!("effnas-worker-{worker}"))
                    .spawn(move || worker_loop(worker, device, threads, data, &stop, &jobs, &results))
                    .map_err(|e| EvalError::Pool(format!("cannot start worker thread: {e}")))?;
                handles.push(handle);
                worker += 1;
            }
        }
        Ok(WorkerPool {
            jobs: Some(job_tx),
            results: result_rx,
            handles,
            in_flight: Mutex::new(0),
            workers: worker,
        })
    }

    /// Number of worker threads.
    pub fn workers(&self) -> usize {
        self.workers
    }

    /// Queues a trial; it starts as soon as a worker is free.
    pub fn submit(&self, trial: u64, arch: ArchSpec, config: ProxyConfig) -> Result<()> {
        let jobs = self.jobs.as_ref().ok_or_else(|| EvalError::Pool("the pool is shut down".to_owned()))?;
        jobs.send(Job { trial, arch, config })
            .map_err(|_| EvalError::Pool("every worker has stopped".to_owned()))?;
        *self.in_flight.lock().map_err(|_| EvalError::Pool("poisoned counter".to_owned()))? += 1;
        Ok(())
    }

    /// Trials submitted and not yet received.
    pub fn in_flight(&self) -> usize {
        self.in_flight.lock().map_or(0, |n| *n)
    }

    fn received(&self) {
        if let Ok(mut n) = self.in_flight.lock() {
            *n = n.saturating_sub(1);
        }
    }

    /// Blocks until the next trial finishes; `None` when nothing is in flight (or every worker
    /// died).
    pub fn recv(&self) -> Option<JobResult> {
        if self.in_flight() == 0 {
            return None;
        }
        let result = self.results.recv().ok();
        if result.is_some() {
            self.received();
        }
        result
    }

    /// Waits at most `timeout` for a finished trial.
    pub fn recv_timeout(&self, timeout: Duration) -> Option<JobResult> {
        match self.results.recv_timeout(timeout) {
            Ok(result) => {
                self.received();
                Some(result)
            }
            Err(RecvTimeoutError::Timeout | RecvTimeoutError::Disconnected) => None,
        }
    }

    /// A finished trial if one is ready.
    pub fn try_recv(&self) -> Option<JobResult> {
        let result = self.results.try_recv().ok();
        if result.is_some() {
            self.received();
        }
        result
    }

    /// Stops accepting jobs, lets the workers finish the queued ones, and waits for them.
    /// Results not yet received are returned.
    pub fn shutdown(mut self) -> Vec<JobResult> {
        self.jobs = None;
        for handle in self.handles.drain(..) {
            if handle.join().is_err() {
                warn!("a worker thread panicked outside a trial");
            }
        }
        self.results.try_iter().collect()
    }
}

impl Drop for WorkerPool {
    fn drop(&mut self) {
        self.jobs = None;
        for handle in self.handles.drain(..) {
            let _ = handle.join();
        }
    }
}

fn worker_loop(
    worker: usize,
    device: Device,
    threads: Option<usize>,
    data: ProxyData,
    stop: &AtomicBool,
    jobs: &Mutex<Receiver<Job>>,
    results: &Sender<JobResult>,
) {
    if let Some(threads) = threads {
        // Per thread under OpenMP: sets this worker's intra-op parallelism.
        tch::set_num_threads(i32::try_from(threads).unwrap_or(1));
    }
    let device_label = device_name(device);
    loop {
        let job = {
            let Ok(queue) = jobs.lock() else { return };
            match queue.recv() {
                Ok(job) => job,
                Err(_) => return,
            }
        };
        let span = info_span!("worker", worker, trial = job.trial, device = %device_label);
        let _enter = span.enter();
        let result = run_job(&job, &data, device, &device_label, stop);
        if results.send(JobResult { trial: job.trial, worker, device: device_label.clone(), result }).is_err()
        {
            return;
        }
    }
}

/// Trains one job; an error or a panic becomes a failed result.
fn run_job(
    job: &Job,
    data: &ProxyData,
    device: Device,
    device_label: &str,
    stop: &AtomicBool,
) -> TrainResult {
    let outcome = catch_unwind(AssertUnwindSafe(|| {
        train_with_progress(&job.arch, data, &job.config, device, &mut |_| {}, stop)
    }));
    match outcome {
        Ok(Ok(trained)) => trained.result,
        Ok(Err(e)) => {
            debug!(error = %e, "trial error, in full");
            TrainResult::failed(&job.arch, device_label.to_owned(), Failure::of(&e), e.first_line())
        }
        Err(panic) => {
            let message = panic
                .downcast_ref::<String>()
                .cloned()
                .or_else(|| panic.downcast_ref::<&str>().map(|s| (*s).to_owned()))
                .unwrap_or_else(|| "unknown panic".to_owned());
            debug!(%message, "trial panicked, in full");
            let reason = format!("panic: {}", first_line(&message));
            TrainResult::failed(&job.arch, device_label.to_owned(), Failure::Error, reason)
        }
    }
}
