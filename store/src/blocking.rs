//! A blocking face of the store for worker threads that run outside an async runtime (the
//! libtorch trainers) and for the search loop: every call retries while another process holds
//! the database locked ([`RetryPolicy`]). Also the background tasks that keep a claim alive: a
//! trial's lease ([`Heartbeat`]) and a run's lease ([`RunHold`]).

use std::future::Future;
use std::sync::atomic::{AtomicBool, Ordering};
use std::sync::{Arc, Mutex};
use std::time::{Duration, Instant};

use crate::error::{Result, StoreError};
use crate::lease::{RunOwner, RUN_LEASE, RUN_LEASE_RENEW};
use crate::model::{
    BatchKey, Checkpoint, Claim, ClaimedTrial, EpochMetrics, FailureKind, Fenced, NewTrial, Requeued, Run,
    RunId, RunStatus, Trial, TrialFilter, TrialId, TrialMetrics,
};
use crate::open::OpenOptions;
use crate::Store;

/// How long [`BlockingStore`] calls keep retrying while the database cannot be used for a while:
/// locked by another process (a `sqlite3` shell in a transaction, a backup, another search's
/// long write; on PostgreSQL a deadlock or serialization failure, which rolled the transaction
/// back), or a PostgreSQL server that cannot be reached (restarting, a network cut, out of
/// connection slots).
///
/// Each attempt waits up to the connection's busy timeout inside SQLite (a PostgreSQL
/// connection attempt up to 5 s); on [`StoreError::Locked`] or [`StoreError::Unreachable`] the
/// whole call (one transaction or statement, which did not commit) is tried again after a pause
/// that doubles from `first_pause` up to `max_pause`, until `total` has passed since the first
/// attempt. Then the call fails with [`StoreError::StillLocked`] or
/// [`StoreError::StillUnreachable`]. A connection pool replaces the connections the server
/// dropped, so a restarted server is simply used again.
///
/// The one case where a retried call may repeat work: the server goes away after it committed
/// a transaction but before its answer arrived. The call is then run again; the queue's
/// writes are safe to repeat (a claim made twice leaves one trial under a lease that no one
/// extends, which expires and is requeued; a result or failure sent twice is fenced the second
/// time), but a batch of queued trials would be queued twice.
#[derive(Debug, Clone, Copy, PartialEq)]
pub struct RetryPolicy {
    pub total: Duration,
    pub first_pause: Duration,
    pub max_pause: Duration,
}

impl Default for RetryPolicy {
    /// Five minutes: a search should outlast any interactive session that holds the lock by
    /// accident, and a database server's restart, and still stop (marked interrupted) rather
    /// than hang forever.
    fn default() -> Self {
        RetryPolicy {
            total: Duration::from_secs(300),
            first_pause: Duration::from_millis(50),
            max_pause: Duration::from_secs(2),
        }
    }
}

/// Environment variable: seconds [`BlockingStore`] calls retry on a locked or unreachable
/// database (default 300).
pub const RETRY_ENV: &str = "EFFNAS_DB_RETRY";
/// Environment variable: seconds one SQLite statement waits for a lock before the retry
/// starts (default: [`OpenOptions`]' busy timeout, 10).
pub const BUSY_TIMEOUT_ENV: &str = "EFFNAS_DB_BUSY_TIMEOUT";

/// A duration in seconds from the environment variable `name`, if set.
fn seconds_from_env(name: &'static str) -> Result<Option<Duration>> {
    let Ok(text) = std::env::var(name) else { return Ok(None) };
    let seconds: f64 = text
        .trim()
        .parse()
        .map_err(|_| StoreError::invalid(name, format!("{text:?} is not a number of seconds")))?;
    if !(seconds.is_finite() && (0.0..=86_400.0 * 365.0).contains(&seconds)) {
        return Err(StoreError::invalid(name, format!("{text:?} is not between 0 and a year of seconds")));
    }
    Ok(Some(Duration::from_secs_f64(seconds)))
}

impl RetryPolicy {
    /// The default, with `total` from [`RETRY_ENV`] when set.
    pub fn from_env() -> Result<RetryPolicy> {
        let mut policy = RetryPolicy::default();
        if let Some(total) = seconds_from_env(RETRY_ENV)? {
            policy.total = total;
        }
        Ok(policy)
    }

    /// Runs `op` until it does not fail with [`StoreError::Locked`] or
    /// [`StoreError::Unreachable`] ([`StoreError::is_transient`]), pausing between attempts, for
    /// at most `total`.
    pub async fn run<T, Fut>(&self, location: &str, mut op: impl FnMut() -> Fut) -> Result<T>
    where
        Fut: Future<Output = Result<T>>,
    {
        let started = Instant::now();
        let mut pause = self.first_pause;
        loop {
            match op().await {
                Err(error) if error.is_transient() => {
                    let waited = started.elapsed();
                    if waited >= self.total {
                        let (location, waited_secs) = (location.to_owned(), waited.as_secs_f64());
                        return Err(match error {
                            StoreError::Unreachable { reason, .. } => {
                                StoreError::StillUnreachable { location, waited_secs, reason }
                            }
                            _ => StoreError::StillLocked { location, waited_secs },
                        });
                    }
                    // Once per call at warn level: minutes of retries should not flood the log.
                    if pause == self.first_pause {
                        tracing::warn!(retry_s = self.total.as_secs_f64(), %error, "retrying");
                    } else {
                        tracing::debug!(waited_s = waited.as_secs_f64(), %error, "still unavailable; retrying");
                    }
                    tokio::time::sleep(pause.min(self.total - waited)).await;
                    pause = (pause * 2).min(self.max_pause);
                }
                other => return other,
            }
        }
    }
}

/// A [`Store`] with its own small tokio runtime, callable from plain threads. Cheap to clone;
/// clones share the runtime and the pool. Every method retries while the database is locked
/// ([`RetryPolicy`]); [`BlockingStore::block_on`] runs a future once, as it is. Do not call it
/// from inside an async runtime (tokio panics on nested `block_on`); use the [`Store`] there.
#[derive(Debug, Clone)]
pub struct BlockingStore {
    store: Store,
    runtime: Arc<tokio::runtime::Runtime>,
    retry: RetryPolicy,
}

impl BlockingStore {
    /// Opens (creating if missing) and migrates, like [`Store::open`]. The busy timeout comes
    /// from [`BUSY_TIMEOUT_ENV`] and the retry time from [`RETRY_ENV`] when they are set.
    pub fn open(target: &str) -> Result<BlockingStore> {
        let retry = RetryPolicy::from_env()?;
        let mut options = OpenOptions::default();
        if let Some(busy) = seconds_from_env(BUSY_TIMEOUT_ENV)? {
            options.busy_timeout = busy;
        }
        BlockingStore::open_with(target, &options, retry)
    }

    /// Opens with explicit options and retry policy.
    pub fn open_with(target: &str, options: &OpenOptions, retry: RetryPolicy) -> Result<BlockingStore> {
        let runtime = tokio::runtime::Builder::new_multi_thread()
            .worker_threads(1)
            .thread_name("effnas-store")
            .enable_all()
            .build()
            .map_err(|e| StoreError::Open {
                location: target.to_owned(),
                reason: format!("cannot start the database runtime: {e}"),
            })?;
        // Opening migrates, which writes: it retries on a locked database like every call.
        let store = runtime.block_on(retry.run(target, || Store::open_with(target, options)))?;
        Ok(BlockingStore { store, runtime: Arc::new(runtime), retry })
    }

    /// The async store, for calls not wrapped here (run them with [`BlockingStore::call`]).
    pub fn store(&self) -> &Store {
        &self.store
    }

    /// The retry policy of this store's calls.
    pub fn retry_policy(&self) -> RetryPolicy {
        self.retry
    }

    /// Runs any store future to completion on this store's runtime, once, without retrying:
    /// `db.block_on(db.store().trials(run, &filter))`. Prefer [`BlockingStore::call`].
    pub fn block_on<F: Future>(&self, future: F) -> F::Output {
        self.runtime.block_on(future)
    }

    /// Runs a store call on this store's runtime, retrying while the database is locked
    /// ([`RetryPolicy`]): `db.call(|| db.store().trials(run, &filter))`. Every store method is
    /// one transaction or statement, so a call that failed locked changed nothing and is
    /// safely repeated.
    pub fn call<T, Fut>(&self, op: impl FnMut() -> Fut) -> Result<T>
    where
        Fut: Future<Output = Result<T>>,
    {
        self.runtime.block_on(self.retry.run(self.store.location(), op))
    }

    /// [`Store::claim_trial`].
    pub fn claim_trial(&self, run: RunId, worker: &str) -> Result<Option<ClaimedTrial>> {
        self.call(|| self.store.claim_trial(run, worker))
    }

    /// [`Store::claim_next`].
    pub fn claim_next(
        &self,
        run: Option<RunId>,
        worker: &str,
        lease: Duration,
    ) -> Result<Option<ClaimedTrial>> {
        self.call(|| self.store.claim_next(run, worker, lease))
    }

    /// [`Store::extend_lease`].
    pub fn extend_lease(&self, claim: Claim, lease: Duration) -> Result<bool> {
        self.call(|| self.store.extend_lease(claim, lease))
    }

    /// [`Store::record_claim_epoch`].
    pub fn record_claim_epoch(&self, claim: Claim, epoch: &EpochMetrics) -> Result<Fenced> {
        self.call(|| self.store.record_claim_epoch(claim, epoch))
    }

    /// [`Store::complete_claim`].
    pub fn complete_claim(
        &self,
        claim: Claim,
        metrics: &TrialMetrics,
        epochs: &[EpochMetrics],
    ) -> Result<Fenced> {
        self.call(|| self.store.complete_claim(claim, metrics, epochs))
    }

    /// [`Store::fail_claim`].
    pub fn fail_claim(&self, claim: Claim, kind: FailureKind, message: &str) -> Result<Fenced> {
        self.call(|| self.store.fail_claim(claim, kind, message))
    }

    /// [`Store::release_claim`].
    pub fn release_claim(&self, claim: Claim) -> Result<Fenced> {
        self.call(|| self.store.release_claim(claim))
    }

    /// [`Store::requeue_expired`].
    pub fn requeue_expired(&self, max_attempts: u32) -> Result<Requeued> {
        self.call(|| self.store.requeue_expired(max_attempts))
    }

    /// [`Store::trials_by_id`].
    pub fn trials_by_id(&self, ids: &[TrialId]) -> Result<Vec<Trial>> {
        self.call(|| self.store.trials_by_id(ids))
    }

    /// [`Store::record_epoch`].
    pub fn record_epoch(&self, trial: TrialId, epoch: &EpochMetrics) -> Result<()> {
        self.call(|| self.store.record_epoch(trial, epoch))
    }

    /// [`Store::complete_trial`].
    pub fn complete_trial(&self, trial: TrialId, metrics: &TrialMetrics) -> Result<()> {
        self.call(|| self.store.complete_trial(trial, metrics))
    }

    /// [`Store::fail_trial`].
    pub fn fail_trial(&self, trial: TrialId, kind: FailureKind, message: &str) -> Result<()> {
        self.call(|| self.store.fail_trial(trial, kind, message))
    }

    /// [`Store::insert_trial`], at most once across its retries (see
    /// [`BlockingStore::insert_trials`]).
    pub fn insert_trial(&self, run: RunId, trial: &NewTrial) -> Result<TrialId> {
        let ids = self.insert_trials(run, std::slice::from_ref(trial))?;
        Ok(ids[0])
    }

    /// [`Store::insert_trials`]. Its retries share one [`BatchKey`], so a retry after a commit
    /// whose answer was lost returns the trials already queued instead of queuing them again.
    pub fn insert_trials(&self, run: RunId, trials: &[NewTrial]) -> Result<Vec<TrialId>> {
        let key = BatchKey::new();
        self.call(|| self.store.insert_trials_once(run, trials, &key))
    }

    /// [`Store::insert_failed_trial`].
    pub fn insert_failed_trial(
        &self,
        run: RunId,
        trial: &NewTrial,
        kind: FailureKind,
        message: &str,
    ) -> Result<TrialId> {
        self.call(|| self.store.insert_failed_trial(run, trial, kind, message))
    }

    /// [`Store::insert_reused_trial`].
    pub fn insert_reused_trial(&self, run: RunId, trial: &NewTrial, source: TrialId) -> Result<TrialId> {
        self.call(|| self.store.insert_reused_trial(run, trial, source))
    }

    /// [`Store::find_measured`].
    pub fn find_measured(&self, arch_hash: &str, proxy_key: &str) -> Result<Option<Trial>> {
        self.call(|| self.store.find_measured(arch_hash, proxy_key))
    }

    /// [`Store::trial`].
    pub fn trial(&self, id: TrialId) -> Result<Trial> {
        self.call(|| self.store.trial(id))
    }

    /// [`Store::trials`].
    pub fn trials(&self, run: RunId, filter: &TrialFilter) -> Result<Vec<Trial>> {
        self.call(|| self.store.trials(run, filter))
    }

    /// [`Store::run`].
    pub fn run(&self, id: RunId) -> Result<Run> {
        self.call(|| self.store.run(id))
    }

    /// [`Store::set_run_status`].
    pub fn set_run_status(&self, run: RunId, status: RunStatus) -> Result<()> {
        self.call(|| self.store.set_run_status(run, status))
    }

    /// [`Store::requeue_running`].
    pub fn requeue_running(&self, run: RunId) -> Result<Vec<TrialId>> {
        self.call(|| self.store.requeue_running(run))
    }

    /// [`Store::release_workers_claims`].
    pub fn release_workers_claims(&self, run: RunId, workers: &[String]) -> Result<Vec<TrialId>> {
        self.call(|| self.store.release_workers_claims(run, workers))
    }

    /// [`Store::recover_running`].
    pub fn recover_running(&self, run: RunId, max_attempts: u32) -> Result<Requeued> {
        self.call(|| self.store.recover_running(run, max_attempts))
    }

    /// [`Store::latest_checkpoint`].
    pub fn latest_checkpoint(&self, run: RunId) -> Result<Option<Checkpoint>> {
        self.call(|| self.store.latest_checkpoint(run))
    }

    /// [`Store::save_checkpoint`] then [`Store::prune_checkpoints`], keeping the newest `keep`.
    pub fn save_checkpoint(&self, run: RunId, step: i64, state: &serde_json::Value, keep: i64) -> Result<()> {
        self.call(|| self.store.save_checkpoint(run, step, state, None))?;
        self.call(|| self.store.prune_checkpoints(run, keep))?;
        Ok(())
    }

    /// Extends the lease of `claim` to `lease` from now every lease/3 ([`Store::extend_lease`])
    /// until the returned guard is dropped, so a worker needs no calls inside its training
    /// loop. If the process dies, the extensions stop and [`Store::requeue_expired`] gives the
    /// trial to another worker once the lease has passed; [`Heartbeat::is_lost`] tells the
    /// worker when that happened while it still lives.
    pub fn keep_lease(&self, claim: Claim, lease: Duration) -> Heartbeat {
        Heartbeat::start(&self.store, self.runtime.handle(), claim, lease)
    }

    /// Takes `run` for this process ([`Store::acquire_run`], retried while the database is
    /// locked) and renews its lease in the background every [`RUN_LEASE_RENEW`] until the
    /// returned [`RunHold`] is released or dropped. Fails with [`StoreError::RunHeld`] when
    /// another live process holds the run.
    pub fn hold_run(&self, run: RunId) -> Result<RunHold> {
        let owner = RunOwner::this_process();
        self.call(|| self.store.acquire_run(run, &owner, RUN_LEASE))?;
        let lost: Arc<Mutex<Option<StoreError>>> = Arc::new(Mutex::new(None));
        let (store, flag, renewer) = (self.store.clone(), Arc::clone(&lost), owner.clone());
        let task = self.runtime.spawn(async move {
            let mut ticks = tokio::time::interval(RUN_LEASE_RENEW);
            ticks.tick().await; // the first tick is immediate; the lease is fresh
            loop {
                ticks.tick().await;
                match store.renew_run(run, &renewer, RUN_LEASE).await {
                    Ok(()) => {}
                    Err(error @ (StoreError::RunLost { .. } | StoreError::RunNotFound(_))) => {
                        tracing::error!(run = %run, %error, "lost the run");
                        if let Ok(mut slot) = flag.lock() {
                            *slot = Some(error);
                        }
                        return;
                    }
                    // A locked database skips one renewal; the lease is several renewals long.
                    Err(error) => tracing::warn!(run = %run, %error, "renewing the run lease failed"),
                }
            }
        });
        Ok(RunHold { store: self.clone(), run, owner, task, lost })
    }
}

/// This process's hold on a run: the lease renewed in the background. Dropping it stops the
/// renewals (the lease then lapses); [`RunHold::release`] also gives the run up at once.
#[derive(Debug)]
pub struct RunHold {
    store: BlockingStore,
    run: RunId,
    owner: RunOwner,
    task: tokio::task::JoinHandle<()>,
    lost: Arc<Mutex<Option<StoreError>>>,
}

impl RunHold {
    /// [`StoreError::RunLost`] once a renewal found that another process took the run over:
    /// this process must stop writing to it.
    pub fn check(&self) -> Result<()> {
        match self.lost.lock().ok().and_then(|mut slot| slot.take()) {
            Some(error) => Err(error),
            None => Ok(()),
        }
    }

    /// Stops renewing and gives the run up, once, without the long retry (for the end of a run,
    /// where a locked database should not delay the exit: the lease lapses on its own).
    pub fn release(self) -> Result<()> {
        self.task.abort();
        self.store.block_on(self.store.store.release_run(self.run, &self.owner))
    }
}

impl Drop for RunHold {
    fn drop(&mut self) {
        self.task.abort();
    }
}

/// A claim's lease, extended in the background every lease/3; the extensions stop when this is
/// dropped.
#[derive(Debug)]
pub struct Heartbeat {
    task: tokio::task::JoinHandle<()>,
    lost: Arc<AtomicBool>,
}

impl Heartbeat {
    /// Starts extending the lease of `claim` to `lease` from now, every lease/3, on `runtime`
    /// (from async code: `tokio::runtime::Handle::current()`). A failed extension (a locked
    /// database) is logged and tried again at the next tick; the lease outlasts two of them.
    pub fn start(
        store: &Store,
        runtime: &tokio::runtime::Handle,
        claim: Claim,
        lease: Duration,
    ) -> Heartbeat {
        let lost = Arc::new(AtomicBool::new(false));
        let (store, flag) = (store.clone(), Arc::clone(&lost));
        let every = (lease / 3).max(Duration::from_millis(10));
        let task = runtime.spawn(async move {
            let mut ticks = tokio::time::interval(every);
            ticks.set_missed_tick_behavior(tokio::time::MissedTickBehavior::Delay);
            ticks.tick().await; // the first tick is immediate; the lease is fresh
            loop {
                ticks.tick().await;
                match store.extend_lease(claim, lease).await {
                    Ok(true) => {}
                    Ok(false) => {
                        flag.store(true, Ordering::Relaxed);
                        return;
                    }
                    Err(error) => tracing::warn!(trial = %claim.trial, attempt = claim.attempt, %error, "extending the trial lease failed"),
                }
            }
        });
        Heartbeat { task, lost }
    }

    /// True once an extension found the claim superseded (the trial was requeued after its
    /// lease passed, claimed again, or finished elsewhere): the worker should stop training it;
    /// its writes would be [`Fenced::Superseded`] anyway.
    pub fn is_lost(&self) -> bool {
        self.lost.load(Ordering::Relaxed)
    }
}

impl Drop for Heartbeat {
    fn drop(&mut self) {
        self.task.abort();
    }
}
