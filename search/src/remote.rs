//! Trials evaluated by worker processes through the store (`effnas worker`, see
//! [`crate::worker`]): the search leaves its trials pending; workers on this machine or others
//! claim, train and record them; this evaluator watches the store for their results and sweeps
//! expired leases, so a killed worker's trial goes back to the queue.

use std::collections::{BTreeSet, VecDeque};
use std::time::{Duration, Instant};

use effnas_space::ArchSpec;
use effnas_store::{BlockingStore, Trial, TrialId, TrialState, MAX_ATTEMPTS};

use crate::evaluate::{Evaluation, Evaluator, Outcome, Recorded, TrialFailure};
use crate::orchestrator::{Result, SearchError};

const MIN_POLL: Duration = Duration::from_millis(2);
const MAX_POLL: Duration = Duration::from_millis(100);

/// Worker processes, seen through the store.
pub struct StoreWorkers {
    store: BlockingStore,
    /// How many trials the search keeps queued or running: the workers' slots and a few more,
    /// so that no worker waits for the controller.
    capacity: usize,
    watching: BTreeSet<TrialId>,
    ready: VecDeque<Evaluation>,
    /// Pause before the next look at the store: short while results keep coming, doubling up to
    /// [`MAX_POLL`] while none do, so a fast queue is watched closely and an idle one cheaply.
    poll: Duration,
    /// Expired leases are swept this often.
    sweep_every: Duration,
    next_sweep: Instant,
    /// Asked at every look: fails when the workers this search started can no longer work
    /// (they all exited), so that the search stops instead of waiting forever.
    health: Option<Box<dyn FnMut() -> Result<()>>>,
}

impl StoreWorkers {
    /// Watches for `workers` worker slots; `lease` is the workers' lease (sweeps run twice per
    /// lease).
    pub fn new(store: BlockingStore, workers: usize, lease: Duration) -> Self {
        StoreWorkers {
            store,
            capacity: workers + workers.div_ceil(2).max(2),
            watching: BTreeSet::new(),
            ready: VecDeque::new(),
            poll: MIN_POLL,
            sweep_every: lease / 2,
            next_sweep: Instant::now(),
            health: None,
        }
    }

    /// Checks `health` at every look at the store (see [`StoreWorkers`]' field).
    pub fn with_health_check(mut self, health: impl FnMut() -> Result<()> + 'static) -> Self {
        self.health = Some(Box::new(health));
        self
    }

    /// Looks at every watched trial once; the finished ones become evaluations.
    fn look(&mut self) -> Result<()> {
        if let Some(health) = &mut self.health {
            health()?;
        }
        if Instant::now() >= self.next_sweep {
            // Every worker sweeps too: a sweep that meets a locked database waits for the next.
            match self.store.requeue_expired(MAX_ATTEMPTS) {
                Ok(_) => {}
                Err(error) if error.is_unavailable() => tracing::warn!(%error, "sweep skipped"),
                Err(error) => return Err(error.into()),
            }
            self.next_sweep = Instant::now() + self.sweep_every;
        }
        let ids: Vec<TrialId> = self.watching.iter().copied().collect();
        let trials = self.store.trials_by_id(&ids)?;
        if let Some(&trial) = ids.iter().find(|id| !trials.iter().any(|t| t.id == **id)) {
            return Err(SearchError::TrialVanished { trial });
        }
        for trial in trials {
            if let Some(outcome) = recorded(&trial) {
                self.watching.remove(&trial.id);
                self.ready.push_back(Evaluation { trial: trial.id, outcome: Outcome::Recorded(outcome) });
            }
        }
        Ok(())
    }
}

/// What a finished trial's row says; `None` while it is pending or running.
fn recorded(trial: &Trial) -> Option<Recorded> {
    let failure = match trial.state {
        TrialState::Complete => None,
        TrialState::Failed => Some(TrialFailure::new(
            trial.failure.unwrap_or(effnas_store::FailureKind::Error),
            trial.error.clone().unwrap_or_default(),
        )),
        _ => return None,
    };
    Some(Recorded {
        reward: trial.reward,
        accuracy: trial.accuracy,
        images_per_second: trial.images_per_second,
        failure,
    })
}

impl Evaluator for StoreWorkers {
    fn capacity(&self) -> usize {
        self.capacity
    }

    fn submit(&mut self, trial: TrialId, _arch: &ArchSpec) -> Result<()> {
        self.watching.insert(trial);
        Ok(())
    }

    fn next(&mut self, timeout: Duration) -> Result<Option<Evaluation>> {
        let until = Instant::now() + timeout;
        loop {
            if let Some(evaluation) = self.ready.pop_front() {
                return Ok(Some(evaluation));
            }
            self.look()?;
            if !self.ready.is_empty() {
                self.poll = MIN_POLL;
                continue;
            }
            if Instant::now() >= until {
                return Ok(None);
            }
            std::thread::sleep(self.poll.min(until.saturating_duration_since(Instant::now())));
            self.poll = (self.poll * 2).min(MAX_POLL);
        }
    }

    fn claims_from_store(&self) -> bool {
        true
    }
}
