//! One worker process's loop: claim a pending trial with a lease, evaluate it with its run's
//! [`Recipe`], keep the lease alive while it trains, and record the result fenced on (trial,
//! attempt), so that a worker that was presumed dead and comes back changes nothing.
//!
//! MnasNet (§4) trained its 8,000 candidates on many machines at once; here any number of
//! `effnas worker` processes, on one machine or many, share one database: the store is the
//! queue. Each process has its own device context and random generators, so a seeded trial
//! gives the same result whichever worker trains it. Expired leases (a worker killed, a machine
//! gone) are swept back to pending by every worker and by the search, or failed as lost after
//! [`MAX_ATTEMPTS`].

use std::sync::atomic::{AtomicBool, Ordering};
use std::sync::Arc;
use std::time::{Duration, Instant};

use effnas_space::ArchSpec;
use effnas_store::{BlockingStore, Claim, ClaimedTrial, FailureKind, Fenced, RunId, MAX_ATTEMPTS};

use crate::evaluate::{Evaluation, Evaluator, Outcome};
use crate::orchestrator::{trial_metrics, Result, SearchError};
use crate::recipe::Recipe;

const FIRST_IDLE_PAUSE: Duration = Duration::from_millis(2);

/// How a worker runs.
#[derive(Debug, Clone)]
pub struct WorkerOptions {
    /// Unique among live workers (host, process id, slot): kept with each claim.
    pub name: String,
    /// Only this run's trials; any running run's when `None`.
    pub run: Option<RunId>,
    /// How long a claim holds without renewal; renewed every third of it while training.
    pub lease: Duration,
    /// End after this long without a trial to claim; never when `None`.
    pub idle_exit: Option<Duration>,
    /// The longest pause between looks for work while the queue is empty (the pause starts
    /// short and doubles up to this, so a worker picks up a fresh trial within milliseconds).
    pub poll: Duration,
    /// Train on this device instead of the run's own ([`Recipe::on_device`]).
    pub device: Option<String>,
}

impl WorkerOptions {
    /// A worker named after this host and process, slot `slot`, with a 30 s lease.
    pub fn new(slot: usize) -> Self {
        WorkerOptions {
            name: format!("{}:{}:{slot}", effnas_store::host_name(), std::process::id()),
            run: None,
            lease: Duration::from_secs(30),
            idle_exit: None,
            poll: Duration::from_millis(500),
            device: None,
        }
    }
}

/// What a worker did, for its exit summary.
#[derive(Debug, Clone, Default, PartialEq, Eq, serde::Serialize)]
pub struct WorkerSummary {
    pub completed: u64,
    pub failed: u64,
    /// Results that arrived after the trial had been reclaimed: dropped, nothing changed.
    pub superseded: u64,
    /// Trials given back unfinished by an orderly stop.
    pub released: u64,
    /// Trials returned to the queue (or failed as lost) by this worker's sweeps of expired
    /// leases.
    pub swept: u64,
}

/// Progress, for a display or a log.
#[derive(Debug, Clone)]
pub enum WorkerEvent {
    Claimed { claim: Claim, run: RunId },
    Recorded { claim: Claim, outcome: Written, fenced: Fenced },
}

/// What a worker wrote about its trial.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Written {
    Complete,
    Failed,
    /// Given back unfinished (an orderly stop).
    Released,
}

/// The evaluator of the run and training setting whose trial was claimed last: loading a
/// proxy's data and starting its trainer costs seconds, so it is kept while trials of the same
/// run and setting keep coming (a fidelity run queues its settings one after another).
struct Current {
    run: RunId,
    setting: u32,
    recipe: Recipe,
    evaluator: Box<dyn Evaluator>,
}

/// Claims, trains and records trials until `stop` is raised or the worker has been idle for
/// `options.idle_exit`.
pub fn serve(
    store: &BlockingStore,
    options: &WorkerOptions,
    stop: &Arc<AtomicBool>,
    mut on_event: impl FnMut(&WorkerEvent),
) -> Result<WorkerSummary> {
    let mut summary = WorkerSummary::default();
    let mut current: Option<Current> = None;
    let mut idle_since = Instant::now();
    let mut idle_pause = FIRST_IDLE_PAUSE;
    let mut next_sweep = Instant::now();
    let runs = options.run.map_or_else(|| "any running run".to_owned(), |run| format!("run {run}"));
    tracing::info!(worker = %options.name, "waiting for trials of {runs}");
    while !stop.load(Ordering::SeqCst) {
        if Instant::now() >= next_sweep {
            if let Some(swept) = patiently(stop, || store.requeue_expired(MAX_ATTEMPTS))? {
                summary.swept += (swept.pending.len() + swept.failed.len()) as u64;
            }
            next_sweep = Instant::now() + options.lease / 2;
        }
        let Some(claimed) =
            patiently(stop, || store.claim_next(options.run, &options.name, options.lease))?.flatten()
        else {
            if options.idle_exit.is_some_and(|limit| idle_since.elapsed() >= limit) {
                break;
            }
            pause(idle_pause, stop);
            idle_pause = (idle_pause * 2).min(options.poll);
            continue;
        };
        idle_pause = FIRST_IDLE_PAUSE;
        let claim = claimed.claim();
        on_event(&WorkerEvent::Claimed { claim, run: claimed.run_id });
        let (outcome, fenced) = work_on(store, options, &claimed, &mut current, stop)?;
        count(&mut summary, outcome, fenced);
        on_event(&WorkerEvent::Recorded { claim, outcome, fenced });
        idle_since = Instant::now();
    }
    Ok(summary)
}

fn count(summary: &mut WorkerSummary, outcome: Written, fenced: Fenced) {
    match (fenced, outcome) {
        (Fenced::Superseded, _) => summary.superseded += 1,
        (Fenced::Written, Written::Complete) => summary.completed += 1,
        (Fenced::Written, Written::Failed) => summary.failed += 1,
        (Fenced::Written, Written::Released) => summary.released += 1,
    }
}

/// Runs a store call, waiting out a database that stays locked or unreachable past the store's
/// own retry (a long backup, a `sqlite3` shell left in a transaction, a PostgreSQL server down
/// for maintenance): a worker has nothing better to do, and
/// its lease only lapses, which fencing makes harmless. `None` when `stop` was raised meanwhile.
fn patiently<T>(stop: &AtomicBool, mut call: impl FnMut() -> effnas_store::Result<T>) -> Result<Option<T>> {
    let mut wait = Duration::from_millis(200);
    loop {
        match call() {
            Ok(value) => return Ok(Some(value)),
            Err(error) if error.is_unavailable() => {
                tracing::warn!(%error, "the database stays locked or unreachable; the worker waits");
                pause(wait, stop);
                if stop.load(Ordering::SeqCst) {
                    return Ok(None);
                }
                wait = (wait * 2).min(Duration::from_secs(5));
            }
            Err(error) => return Err(error.into()),
        }
    }
}

/// Sleeps `pause`, waking early when `stop` is raised.
fn pause(pause: Duration, stop: &AtomicBool) {
    let until = Instant::now() + pause;
    while !stop.load(Ordering::SeqCst) && Instant::now() < until {
        std::thread::sleep(Duration::from_millis(20).min(pause));
    }
}

/// Evaluates one claimed trial under a kept lease and records the outcome.
fn work_on(
    store: &BlockingStore,
    options: &WorkerOptions,
    claimed: &ClaimedTrial,
    current: &mut Option<Current>,
    stop: &Arc<AtomicBool>,
) -> Result<(Written, Fenced)> {
    let claim = claimed.claim();
    let _lease = store.keep_lease(claim, options.lease);
    let current = match evaluator_for(store, claimed, options.device.as_deref(), current, stop) {
        Ok(current) => current,
        Err(error) => {
            // The run's configuration cannot be evaluated here (a data set missing on this
            // machine, a device it lacks): give the trial back for a worker that can, and stop.
            store.release_claim(claim)?;
            return Err(error);
        }
    };
    current.evaluator.submit(claimed.id, &claimed.arch)?;
    let evaluation = wait_for(current.evaluator.as_mut(), claimed)?;
    record(store, claim, &claimed.arch, evaluation, &current.recipe)
}

fn evaluator_for<'a>(
    store: &BlockingStore,
    claimed: &ClaimedTrial,
    device: Option<&str>,
    current: &'a mut Option<Current>,
    stop: &Arc<AtomicBool>,
) -> Result<&'a mut Current> {
    let (run, setting) = (claimed.run_id, claimed.setting);
    if current.as_ref().is_none_or(|c| (c.run, c.setting) != (run, setting)) {
        *current = None; // free the previous run's data and trainer first
        let stored = store.run(run)?;
        let mut recipe =
            Recipe::for_trial(&stored, setting).map_err(|e| SearchError::Evaluator(e.to_string()))?;
        if let Some(device) = device {
            recipe = recipe.on_device(device);
        }
        let evaluator = recipe
            .evaluator(1, Some(Arc::clone(stop)))
            .map_err(|e| SearchError::Evaluator(format!("run {run}: {e}")))?;
        return Ok(current.insert(Current { run, setting, recipe, evaluator }));
    }
    current.as_mut().ok_or_else(|| SearchError::Evaluator(format!("run {run}: no evaluator")))
}

/// The evaluation of `claimed`; an evaluator with capacity one returns only that trial's.
fn wait_for(evaluator: &mut dyn Evaluator, claimed: &ClaimedTrial) -> Result<Evaluation> {
    loop {
        if let Some(evaluation) = evaluator.next(Duration::from_millis(200))? {
            if evaluation.trial == claimed.id {
                return Ok(evaluation);
            }
            tracing::warn!(trial = %evaluation.trial, "an evaluation for another trial; dropped");
        }
    }
}

/// Writes the outcome, fenced on the claim: (what it was, whether it was written).
fn record(
    store: &BlockingStore,
    claim: Claim,
    arch: &ArchSpec,
    evaluation: Evaluation,
    recipe: &Recipe,
) -> Result<(Written, Fenced)> {
    // A result is worth waiting for; a stop during the wait leaves the lease to lapse.
    let never = AtomicBool::new(false);
    let write = |call: &dyn Fn() -> effnas_store::Result<Fenced>| {
        patiently(&never, call).map(|fenced| fenced.unwrap_or(Fenced::Superseded))
    };
    Ok(match evaluation.outcome {
        Outcome::Measured(measured) => match trial_metrics(arch, &measured, recipe.objective()) {
            Ok(metrics) => {
                (Written::Complete, write(&|| store.complete_claim(claim, &metrics, &measured.epochs))?)
            }
            // No reward from this measurement (a latency objective without a latency, say): the
            // trial fails here rather than being retried by three workers in turn.
            Err(error) => {
                let message = format!("no reward: {error}");
                (Written::Failed, write(&|| store.fail_claim(claim, FailureKind::Error, &message))?)
            }
        },
        Outcome::Failed(failure) => {
            (Written::Failed, write(&|| store.fail_claim(claim, failure.kind, &failure.message))?)
        }
        Outcome::Interrupted => (Written::Released, write(&|| store.release_claim(claim))?),
        // A worker's own evaluator trains in this process; only the search's watcher
        // ([`crate::remote::StoreWorkers`]) reports results recorded elsewhere.
        Outcome::Recorded(_) => {
            store.release_claim(claim)?;
            return Err(SearchError::Evaluator(
                "a worker's evaluator reported a result recorded elsewhere".into(),
            ));
        }
    })
}
