//! A blocking face of the store for worker threads that run outside an async runtime (the
//! libtorch trainers), and a heartbeat that runs beside a training.

use std::future::Future;
use std::sync::atomic::{AtomicBool, Ordering};
use std::sync::Arc;
use std::time::Duration;

use crate::error::{Result, StoreError};
use crate::model::{ClaimedTrial, EpochMetrics, FailureKind, RunId, TrialId, TrialMetrics};
use crate::Store;

/// A [`Store`] with its own small tokio runtime, callable from plain threads. Cheap to clone;
/// clones share the runtime and the pool. Do not call it from inside an async runtime (tokio
/// panics on nested `block_on`); use the [`Store`] there.
#[derive(Debug, Clone)]
pub struct BlockingStore {
    store: Store,
    runtime: Arc<tokio::runtime::Runtime>,
}

impl BlockingStore {
    /// Opens (creating if missing) and migrates, like [`Store::open`].
    pub fn open(target: &str) -> Result<BlockingStore> {
        let runtime = tokio::runtime::Builder::new_multi_thread()
            .worker_threads(1)
            .thread_name("effnas-store")
            .enable_all()
            .build()
            .map_err(|e| StoreError::Open {
                location: target.to_owned(),
                reason: format!("cannot start the database runtime: {e}"),
            })?;
        let store = runtime.block_on(Store::open(target))?;
        Ok(BlockingStore { store, runtime: Arc::new(runtime) })
    }

    /// The async store, for calls not wrapped here (run them with [`BlockingStore::block_on`]).
    pub fn store(&self) -> &Store {
        &self.store
    }

    /// Runs any store future to completion on this store's runtime:
    /// `db.block_on(db.store().trials(run, &filter))`.
    pub fn block_on<F: Future>(&self, future: F) -> F::Output {
        self.runtime.block_on(future)
    }

    /// [`Store::claim_trial`].
    pub fn claim_trial(&self, run: RunId, worker: &str) -> Result<Option<ClaimedTrial>> {
        self.block_on(self.store.claim_trial(run, worker))
    }

    /// [`Store::heartbeat`].
    pub fn heartbeat(&self, trial: TrialId, worker: &str) -> Result<bool> {
        self.block_on(self.store.heartbeat(trial, worker))
    }

    /// [`Store::record_epoch`].
    pub fn record_epoch(&self, trial: TrialId, epoch: &EpochMetrics) -> Result<()> {
        self.block_on(self.store.record_epoch(trial, epoch))
    }

    /// [`Store::complete_trial`].
    pub fn complete_trial(&self, trial: TrialId, metrics: &TrialMetrics) -> Result<()> {
        self.block_on(self.store.complete_trial(trial, metrics))
    }

    /// [`Store::fail_trial`].
    pub fn fail_trial(&self, trial: TrialId, kind: FailureKind, message: &str) -> Result<()> {
        self.block_on(self.store.fail_trial(trial, kind, message))
    }

    /// Sends a heartbeat for `trial` every `every` until the returned guard is dropped, so a
    /// worker needs no heartbeat calls inside its training loop. If the process dies, the
    /// heartbeats stop and [`Store::requeue_stale`] gives the trial to another worker.
    pub fn keep_alive(&self, trial: TrialId, worker: &str, every: Duration) -> Heartbeat {
        Heartbeat::start(&self.store, self.runtime.handle(), trial, worker, every)
    }
}

/// Heartbeats sent in the background for one trial; stops when dropped.
#[derive(Debug)]
pub struct Heartbeat {
    task: tokio::task::JoinHandle<()>,
    lost: Arc<AtomicBool>,
}

impl Heartbeat {
    /// Starts sending heartbeats on `runtime` (from async code: `tokio::runtime::Handle::current()`).
    pub fn start(
        store: &Store,
        runtime: &tokio::runtime::Handle,
        trial: TrialId,
        worker: &str,
        every: Duration,
    ) -> Heartbeat {
        let lost = Arc::new(AtomicBool::new(false));
        let (store, worker, flag) = (store.clone(), worker.to_owned(), Arc::clone(&lost));
        let every = every.max(Duration::from_millis(10));
        let task = runtime.spawn(async move {
            let mut ticks = tokio::time::interval(every);
            loop {
                ticks.tick().await;
                match store.heartbeat(trial, &worker).await {
                    Ok(true) => {}
                    Ok(false) => {
                        flag.store(true, Ordering::Relaxed);
                        return;
                    }
                    // A busy database skips one beat; the limit is many beats long.
                    Err(error) => tracing::warn!(trial = %trial, %error, "heartbeat failed"),
                }
            }
        });
        Heartbeat { task, lost }
    }

    /// True once the store said the trial is no longer this worker's (it was requeued or
    /// finished elsewhere); the worker may stop training it.
    pub fn is_lost(&self) -> bool {
        self.lost.load(Ordering::Relaxed)
    }
}

impl Drop for Heartbeat {
    fn drop(&mut self) {
        self.task.abort();
    }
}
