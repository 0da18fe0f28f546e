//! The search loop (MnasNet §3, Figure 1: sample → train proxy → reward → update): ask the
//! controller for candidates, skip what was already measured under the same proxy settings,
//! queue the rest in the store, hand them to an evaluator, feed results back to the controller
//! as they finish, and checkpoint the controller so that a killed run resumes.
//!
//! Trials store the searched architecture itself (the space member at the space's resolution
//! and classes): its parameters and multiply-adds are the ones the reward uses, as MnasNet
//! scores the real model while training a proxy. The evaluator adapts the member to the proxy
//! task (input channels, classes, resolution, width and depth multipliers) and keeps the
//! proxy's own cost in the trial's `extra`.

use std::collections::HashMap;
use std::sync::atomic::{AtomicBool, Ordering};
use std::time::Duration;

use effnas_evaluator::score::Objective;
use effnas_space::{arch_hash, cost, ArchSpec, SearchSpace};
use effnas_store::{
    BlockingStore, FailureKind, NewTrial, RunHold, RunId, RunStatus, StoreError, Trial, TrialFilter, TrialId,
    TrialMetrics, TrialState, MAX_ATTEMPTS,
};
use serde::{Deserialize, Serialize};
use serde_json::json;

use crate::asha::{promotable, Rungs};
use crate::controller::{Controller, ControllerError, Observation, Strategy};
pub use crate::evaluate::{Evaluation, Evaluator, Measured, Outcome, TrialFailure};
use crate::predictor::screen::{Screen, ScreenPlan};
use crate::scoring::{score, ScoreError};

/// Why a search stopped early.
#[derive(Debug, thiserror::Error)]
pub enum SearchError {
    #[error(transparent)]
    Store(#[from] StoreError),
    #[error(transparent)]
    Controller(#[from] ControllerError),
    #[error("evaluator: {0}")]
    Evaluator(String),
    #[error("--screen: {0}")]
    Screen(String),
    #[error("reward: {0}")]
    Score(#[from] ScoreError),
    #[error("architecture: {0}")]
    Space(#[from] effnas_space::SpaceError),
    /// A trial this search queued and was waiting for is gone from the database. effnas never
    /// deletes trials, so the database lost a write it had confirmed: it was restored from an
    /// older copy, or a server that acknowledges commits before they are safe
    /// (`synchronous_commit = off`) crashed. Waiting on would wait forever.
    #[error(
        "trial {trial} is no longer in the database, though this search queued it: the database \
         lost a write it had confirmed (restored from an older copy, or a PostgreSQL server with \
         synchronous_commit = off that crashed)"
    )]
    TrialVanished { trial: TrialId },
    /// The run could not go on (the database stayed locked, the evaluator failed…): the run was
    /// left resumable, and the message says how to resume it.
    #[error("{error}; {note}")]
    Stopped {
        run: RunId,
        /// What became of the run and the command that resumes it.
        note: String,
        /// Why the run stopped (in the message, so not also a `source` that would print twice).
        error: Box<SearchError>,
    },
}

pub type Result<T, E = SearchError> = std::result::Result<T, E>;

/// Everything that defines a search run; stored as the run's configuration and read back by
/// `--resume`.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct SearchPlan {
    pub space: SearchSpace,
    pub strategy: Strategy,
    /// Finished trials (complete or failed) the run ends with.
    pub trials: usize,
    pub seed: u64,
    /// Candidates over this many multiply-adds are rejected before training.
    pub max_flops: Option<u64>,
    pub objective: Objective,
    /// Identifies the proxy settings: results are reused only under the same key.
    pub proxy_key: String,
    /// How many trials the evaluator trains at once.
    pub workers: usize,
    /// Multi-fidelity search: the rungs candidates are promoted through ([`crate::asha`]);
    /// `None` trains every candidate once, at the proxy.
    #[serde(default)]
    pub rungs: Option<Rungs>,
    /// Proposals screened by a predictor before training ([`crate::predictor::screen`]).
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub screen: Option<ScreenPlan>,
}

/// The metrics stored for a measured trial: the searched model's own cost and the reward
/// computed from it ([`crate::scoring`]). The same for every process that records a result.
pub fn trial_metrics(arch: &ArchSpec, measured: &Measured, objective: &Objective) -> Result<TrialMetrics> {
    let c = cost(arch);
    let reward = score(objective, measured.accuracy, arch, measured.latency_ms)?.reward;
    Ok(TrialMetrics {
        accuracy: measured.accuracy,
        loss: measured.loss,
        params: c.params,
        flops: c.macs,
        reward,
        latency_ms: measured.latency_ms,
        seconds: measured.seconds,
        images_per_second: measured.images_per_second,
        extra: Some(measured.extra.clone()),
    })
}

/// Records a measured trial: the curve, then its [`trial_metrics`]. Returns the reward.
pub fn complete_trial(
    store: &BlockingStore,
    trial: TrialId,
    arch: &ArchSpec,
    measured: &Measured,
    objective: &Objective,
) -> Result<f64> {
    let metrics = trial_metrics(arch, measured, objective)?;
    for epoch in &measured.epochs {
        store.record_epoch(trial, epoch)?;
    }
    store.complete_trial(trial, &metrics)?;
    Ok(metrics.reward)
}

/// Trains every queued trial of a run that needs no controller (a compound grid): claims
/// pending trials as the evaluator has room and records results until none is left, or until
/// `stop` is raised (then in-flight trials go back to pending and the run is interrupted).
///
/// The run is held for this process while it drains ([`BlockingStore::hold_run`]): a run that
/// another live process is draining is refused with [`StoreError::RunHeld`] before anything is
/// touched. Trials a dead process left running are recovered first (back to pending, or failed as
/// lost after their last attempt). The run ends `complete` when a trial completed and `failed`
/// when all failed; when draining cannot go on, the run is left interrupted and the error says
/// how to resume (`effnas compound --resume`).
///
/// `command` is the effnas command that resumes the run (`compound`, `fidelity`).
pub fn drain_queue(
    store: &BlockingStore,
    run: RunId,
    command: &str,
    evaluator: &mut dyn Evaluator,
    objective: &Objective,
    stop: &AtomicBool,
    on_event: impl FnMut(&Event),
) -> Result<Summary> {
    let hold = store.hold_run(run)?;
    let result = recover(store, run)
        .and_then(|()| drain_held(store, run, &hold, evaluator, objective, stop, on_event));
    end_held_run(store, run, hold, command, result)
}

fn drain_held(
    store: &BlockingStore,
    run: RunId,
    hold: &RunHold,
    evaluator: &mut dyn Evaluator,
    objective: &Objective,
    stop: &AtomicBool,
    mut on_event: impl FnMut(&Event),
) -> Result<Summary> {
    let mut summary = Summary::default();
    store.set_run_status(run, RunStatus::Running)?;
    let mut in_flight: HashMap<TrialId, ArchSpec> = HashMap::new();
    loop {
        hold.check()?;
        if stop.load(Ordering::SeqCst) {
            give_back_in_flight(store, run)?;
            store.set_run_status(run, RunStatus::Interrupted)?;
            summary.interrupted = true;
            return Ok(summary);
        }
        let room = evaluator.capacity().saturating_sub(in_flight.len());
        for trial in next_trials(store, run, evaluator, room, &|id| in_flight.contains_key(&id))? {
            evaluator.submit(trial.id, &trial.arch)?;
            in_flight.insert(trial.id, trial.arch);
        }
        if in_flight.is_empty() {
            break;
        }
        let Some(evaluation) = evaluator.next(Duration::from_millis(200))? else {
            continue;
        };
        if let Some(arch) = in_flight.remove(&evaluation.trial) {
            let event = record_outcome(store, evaluation, &arch, objective, &mut summary)?;
            if let Some(event) = event {
                on_event(&event);
            }
        }
    }
    store.set_run_status(run, final_status(store, run)?)?;
    Ok(summary)
}

/// Takes back the trials a process that is gone left running in `run` (a resume after a crash
/// or `kill -9`): back to pending, or failed as lost after their last attempt
/// ([`MAX_ATTEMPTS`]), so that a trial that kills its process is not retried forever. Call only
/// while holding the run.
fn recover(store: &BlockingStore, run: RunId) -> Result<()> {
    // Claims made in this process by a holder now gone, then worker processes' claims whose
    // lease ran out; live workers' leased trials stay theirs.
    let mut recovered = store.recover_running(run, MAX_ATTEMPTS)?;
    let expired = store.requeue_expired(MAX_ATTEMPTS)?;
    recovered.pending.extend(expired.pending);
    recovered.failed.extend(expired.failed);
    if !recovered.pending.is_empty() {
        tracing::info!(count = recovered.pending.len(), "trials that were in flight go back to the queue");
    }
    if !recovered.failed.is_empty() {
        tracing::warn!(
            trials = ?recovered.failed,
            "trials whose process ended on each of their {MAX_ATTEMPTS} attempts failed as lost"
        );
    }
    Ok(())
}

/// On a stop, the trials this process trains go back to the queue (the attempt given back).
/// Worker processes keep their leased trials: they stop at their own signal and give them back,
/// or finish and record them.
fn give_back_in_flight(store: &BlockingStore, run: RunId) -> Result<()> {
    let requeued = store.requeue_running(run)?;
    tracing::info!(requeued = requeued.len(), "interrupted: trials in flight go back to the queue");
    Ok(())
}

/// A queued trial handed to the evaluator.
struct Dispatched {
    id: TrialId,
    arch: ArchSpec,
    arch_hash: String,
    /// A promotion to a higher rung (it repeats an architecture already measured).
    promoted: bool,
}

/// More of `run`'s trials for `evaluator`. An evaluator that trains in this process gets up to
/// `room` of them, claimed here. Worker processes claim for themselves: they get every pending
/// and running trial not yet `handed` over, to watch (running ones are in flight from before a
/// resume, and their results must still reach the controller). A search hands its new trials
/// over as it queues them.
fn next_trials(
    store: &BlockingStore,
    run: RunId,
    evaluator: &dyn Evaluator,
    room: usize,
    handed: &dyn Fn(TrialId) -> bool,
) -> Result<Vec<Dispatched>> {
    let mut next = Vec::new();
    if !evaluator.claims_from_store() {
        while next.len() < room {
            let Some(claimed) = store.claim_trial(run, "orchestrator")? else { break };
            if claimed.setting != 0 {
                // An in-process evaluator trains under one proxy; a trial under another setting
                // would be trained under the wrong one. Worker processes read each trial's.
                store.requeue_running(run)?;
                return Err(SearchError::Evaluator(format!(
                    "trial {} trains under setting {} of its run: runs with several training settings need worker processes",
                    claimed.id, claimed.setting
                )));
            }
            next.push(Dispatched {
                id: claimed.id,
                arch: claimed.arch,
                arch_hash: claimed.arch_hash,
                promoted: false,
            });
        }
        return Ok(next);
    }
    // All of them, whatever the room: the workers are already claiming them, and a trial that
    // finished before it was handed over would be missed.
    for state in [TrialState::Running, TrialState::Pending] {
        let filter = TrialFilter { state: Some(state), ..TrialFilter::default() };
        for trial in store.trials(run, &filter)? {
            if handed(trial.id) {
                continue;
            }
            match trial.arch() {
                Ok(arch) => next.push(Dispatched {
                    id: trial.id,
                    arch,
                    arch_hash: trial.arch_hash.clone(),
                    promoted: trial.setting > 0,
                }),
                Err(e) => {
                    let message = format!("stored architecture is invalid: {e}");
                    store.fail_trial(trial.id, FailureKind::Invalid, &message)?;
                }
            }
        }
    }
    Ok(next)
}

/// How a run whose loop ran out of work ends: `complete` when at least one trial is complete,
/// `failed` when every trial failed (a run of nothing but failures must not look successful).
fn final_status(store: &BlockingStore, run: RunId) -> Result<RunStatus> {
    let counts = store.run(run)?;
    Ok(if counts.trials_done > 0 { RunStatus::Complete } else { RunStatus::Failed })
}

/// Ends this process's hold on a run after its loop returned `result`. On an error the run is
/// left resumable, best effort: trials in flight back to pending, status `interrupted` (unless
/// the run was taken over by another process, which now owns it); the error then says what
/// became of the run and which command resumes it. The hold is released either way.
fn end_held_run(
    store: &BlockingStore,
    run: RunId,
    hold: RunHold,
    command: &str,
    result: Result<Summary>,
) -> Result<Summary> {
    let error = match result {
        Ok(summary) => {
            if let Err(error) = hold.release() {
                tracing::warn!(run = %run, %error, "could not release the run; its lease will lapse");
            }
            return Ok(summary);
        }
        Err(error @ SearchError::Store(StoreError::RunLost { .. })) => return Err(error),
        Err(error) => error,
    };
    // Retried like every write (a database locked past the retry may be free again soon), so
    // that the run does not stay `running` with no process behind it.
    let location = store.store().location().to_owned();
    // Only this process's own claims go back: worker processes keep their leased trials.
    let marked = store.requeue_running(run).and_then(|_| store.set_run_status(run, RunStatus::Interrupted));
    let _ = hold.release();
    let resume = format!("effnas {command} --db {location} --resume {run}");
    let note = match marked {
        Ok(()) => format!("run {run} is marked interrupted: continue with `{resume}`"),
        Err(mark_error) => format!(
            "run {run} could not be marked interrupted ({mark_error}); continue with `{resume}` once the database is free"
        ),
    };
    Err(SearchError::Stopped { run, note, error: Box::new(error) })
}

/// Records one evaluation of `arch` (complete with its reward, or failed with its kind) and
/// counts it; `None` for an interrupted one, which stays claimed until the stop requeues it.
fn record_outcome(
    store: &BlockingStore,
    evaluation: Evaluation,
    arch: &ArchSpec,
    objective: &Objective,
    summary: &mut Summary,
) -> Result<Option<Event>> {
    let trial = evaluation.trial;
    Ok(match evaluation.outcome {
        Outcome::Measured(measured) => {
            let reward = complete_trial(store, trial, arch, &measured, objective)?;
            summary.completed += 1;
            summary.trained += 1;
            Some(Event::Finished {
                trial,
                reward: Some(reward),
                accuracy: Some(measured.accuracy),
                images_per_second: Some(measured.images_per_second),
                note: String::new(),
            })
        }
        Outcome::Failed(failure) => {
            store.fail_trial(trial, failure.kind, &failure.message)?;
            summary.failed += 1;
            Some(Event::failed(trial, failure.message))
        }
        Outcome::Interrupted => None,
        Outcome::Recorded(recorded) => Some(match recorded.failure {
            None => {
                summary.completed += 1;
                summary.trained += 1;
                Event::Finished {
                    trial,
                    reward: recorded.reward,
                    accuracy: recorded.accuracy,
                    images_per_second: recorded.images_per_second,
                    note: String::new(),
                }
            }
            Some(failure) => {
                summary.failed += 1;
                Event::failed(trial, failure.message)
            }
        }),
    })
}

/// Progress events for a display.
#[derive(Debug, Clone)]
pub enum Event {
    /// A trial finished (or was reused or rejected).
    Finished {
        trial: TrialId,
        reward: Option<f64>,
        accuracy: Option<f64>,
        images_per_second: Option<f64>,
        note: String,
    },
    /// The best reward so far changed.
    NewBest { trial: TrialId, reward: f64, blocks: Vec<String> },
}

impl Event {
    fn failed(trial: TrialId, note: String) -> Self {
        Event::Finished { trial, reward: None, accuracy: None, images_per_second: None, note }
    }
}

/// Counts at the end of a search.
#[derive(Debug, Clone, Default, Serialize)]
pub struct Summary {
    pub completed: u64,
    pub failed: u64,
    pub reused: u64,
    pub rejected: u64,
    pub trained: u64,
    pub interrupted: bool,
}

/// A candidate waiting for an identical architecture that is still being trained.
struct Waiter {
    tokens: Vec<usize>,
    arch: ArchSpec,
}

/// One search run in progress.
pub struct Search<'a> {
    store: &'a BlockingStore,
    run: RunId,
    plan: &'a SearchPlan,
    controller: Box<dyn Controller>,
    evaluator: &'a mut dyn Evaluator,
    /// Trials handed to the evaluator and not yet back: id → (tokens, hash).
    in_flight: HashMap<TrialId, (Vec<usize>, String)>,
    in_flight_hashes: HashMap<String, TrialId>,
    waiting: HashMap<String, Vec<Waiter>>,
    observed: u64,
    best: Option<f64>,
    summary: Summary,
    /// Trials of the run at a rung above 0 (promotions), queued and finished: the budget
    /// (`plan.trials`) counts candidates, at rung 0.
    promoted: (u64, u64),
    /// This process's lease on the run, renewed in the background while the search runs.
    hold: RunHold,
    /// The predictor that screens proposals, if the plan has one.
    screen: Option<Screen>,
}

const CHECKPOINTS_KEPT: i64 = 3;

impl<'a> Search<'a> {
    /// Prepares a run: takes it for this process (refused with [`StoreError::RunHeld`] while
    /// another live process runs it, before anything is touched), restores the controller from
    /// the run's latest checkpoint if there is one (a resume), and takes back the trials a dead
    /// process left running (pending again, or failed as lost after their last attempt).
    pub fn new(
        store: &'a BlockingStore,
        run: RunId,
        plan: &'a SearchPlan,
        evaluator: &'a mut dyn Evaluator,
    ) -> Result<Self> {
        let screen = match &plan.screen {
            Some(screen) => Some(Screen::load(screen).map_err(|e| SearchError::Screen(e.to_string()))?),
            None => None,
        };
        let hold = store.hold_run(run)?;
        let mut controller = plan.strategy.build(&plan.space, plan.seed)?;
        let mut observed = 0;
        if let Some(checkpoint) = store.latest_checkpoint(run)? {
            controller.restore(&checkpoint.state["controller"])?;
            observed = checkpoint.step.max(0) as u64;
        }
        recover(store, run)?;
        let promotions: Vec<Trial> =
            store.trials(run, &TrialFilter::default())?.into_iter().filter(|t| t.setting > 0).collect();
        let finished =
            promotions.iter().filter(|t| matches!(t.state, TrialState::Complete | TrialState::Failed));
        let promoted = (promotions.len() as u64, finished.count() as u64);
        let best = store
            .trials(
                run,
                &TrialFilter { state: Some(TrialState::Complete), limit: Some(1), ..TrialFilter::default() },
            )?
            .first()
            .and_then(|t| t.reward);
        Ok(Search {
            store,
            run,
            plan,
            controller,
            evaluator,
            in_flight: HashMap::new(),
            in_flight_hashes: HashMap::new(),
            waiting: HashMap::new(),
            observed,
            best,
            summary: Summary::default(),
            promoted,
            hold,
            screen,
        })
    }

    fn checkpoint(&mut self) -> Result<()> {
        let state = json!({"controller": self.controller.state()?, "strategy": self.controller.name()});
        let step = self.observed as i64;
        self.store.save_checkpoint(self.run, step, &state, CHECKPOINTS_KEPT)?;
        Ok(())
    }

    /// (committed, finished) candidates: rung-0 trials of the run in the database in any state
    /// plus candidates waiting in memory, and rung-0 trials complete or failed. One read of the
    /// run's counts, less the promotions.
    fn counts(&self) -> Result<(u64, u64)> {
        let run = self.store.run(self.run)?;
        let waiting: u64 = self.waiting.values().map(|w| w.len() as u64).sum();
        let (queued, finished) = self.promoted;
        let total = run.trials_total.saturating_sub(queued);
        Ok((total + waiting, (run.trials_done + run.trials_failed).saturating_sub(finished)))
    }

    /// Runs until the plan's number of trials has finished or `stop` is raised. The run ends
    /// `complete` when a trial completed and `failed` when every trial failed. When the search
    /// cannot go on (the database stayed locked, the evaluator failed), the run is left
    /// interrupted and the error ([`SearchError::Stopped`]) says how to resume it.
    pub fn run(mut self, stop: &AtomicBool, on_event: impl FnMut(&Event)) -> Result<Summary> {
        let result = self.run_held(stop, on_event);
        let Search { store, run, hold, .. } = self;
        end_held_run(store, run, hold, "search", result)
    }

    fn run_held(&mut self, stop: &AtomicBool, mut on_event: impl FnMut(&Event)) -> Result<Summary> {
        let target = self.plan.trials as u64;
        self.store.set_run_status(self.run, RunStatus::Running)?;
        loop {
            self.hold.check()?;
            if stop.load(Ordering::SeqCst) {
                return self.interrupt();
            }
            // Queued trials first (from a resume, or queued by an earlier round).
            self.dispatch_pending()?;
            // New candidates while there is room in the evaluator and in the budget.
            let room = self.evaluator.capacity().saturating_sub(self.in_flight.len());
            let budget = target.saturating_sub(self.counts()?.0);
            let wanted = (room as u64).min(budget) as usize;
            if wanted > 0 {
                self.propose(wanted, budget as usize, &mut on_event)?;
                self.dispatch_pending()?;
            }
            if self.in_flight.is_empty() && self.waiting.is_empty() {
                let (committed, finished) = self.counts()?;
                if finished >= target {
                    break;
                }
                if wanted == 0 && committed >= target {
                    // Trials of this run are queued but none could be dispatched (claimed by
                    // another process); wait for them rather than spin.
                    std::thread::sleep(Duration::from_millis(200));
                }
                continue;
            }
            if let Some(evaluation) = self.evaluator.next(Duration::from_millis(200))? {
                self.record(evaluation, &mut on_event)?;
            }
        }
        self.checkpoint()?;
        let status = final_status(self.store, self.run)?;
        self.store.set_run_status(self.run, status)?;
        Ok(std::mem::take(&mut self.summary))
    }

    fn interrupt(&mut self) -> Result<Summary> {
        give_back_in_flight(self.store, self.run)?;
        self.checkpoint()?;
        self.store.set_run_status(self.run, RunStatus::Interrupted)?;
        self.summary.interrupted = true;
        Ok(std::mem::take(&mut self.summary))
    }

    /// Hands this run's queued trials to the evaluator, as far as it has room.
    fn dispatch_pending(&mut self) -> Result<()> {
        let room = self.evaluator.capacity().saturating_sub(self.in_flight.len());
        let in_flight = &self.in_flight;
        let next =
            next_trials(self.store, self.run, &*self.evaluator, room, &|id| in_flight.contains_key(&id))?;
        for trial in next {
            let tokens = match self.plan.space.encode(&trial.arch) {
                Ok(tokens) => tokens,
                Err(e) => {
                    let message = format!("not a member of the run's space: {e}");
                    self.store.fail_trial(trial.id, FailureKind::Invalid, &message)?;
                    continue;
                }
            };
            self.evaluator.submit(trial.id, &trial.arch)?;
            if !trial.promoted {
                self.in_flight_hashes.insert(trial.arch_hash.clone(), trial.id);
            }
            self.in_flight.insert(trial.id, (tokens, trial.arch_hash));
        }
        Ok(())
    }

    /// Asks the controller for candidates to fill `wanted` slots (more with a screen, within
    /// `budget`), and queues, reuses, rejects or screens out each.
    fn propose(&mut self, wanted: usize, budget: usize, on_event: &mut impl FnMut(&Event)) -> Result<()> {
        let batch = self.screen.as_ref().map_or(wanted, |s| s.batch(wanted, budget));
        let proposals = self.controller.propose(batch)?;
        let archs = proposals.iter().map(|t| self.plan.space.decode(t)).collect::<Result<Vec<_>, _>>()?;
        let screened = match &self.screen {
            Some(screen) => {
                screen.screen(&archs, wanted, &self.plan.objective).map_err(SearchError::Screen)?
            }
            None => vec![None; archs.len()],
        };
        let mut queued = Vec::new();
        let mut immediate = Vec::new();
        for ((tokens, arch), screened) in proposals.into_iter().zip(archs).zip(screened) {
            let hash = arch_hash(&arch);
            let trial =
                NewTrial::new(arch.clone(), self.plan.proxy_key.clone()).at_step(self.observed as i64);
            let macs = cost(&arch).macs;
            let over = self.plan.max_flops.filter(|&limit| macs > limit).map(|limit| {
                format!("rejected before training: {macs} multiply-adds over --max-flops {limit}")
            });
            if let Some(reason) = over.or(screened) {
                // Inserted failed at once: a worker process must never see it pending.
                let id = self.store.insert_failed_trial(self.run, &trial, FailureKind::Rejected, &reason)?;
                self.summary.rejected += 1;
                on_event(&Event::Finished {
                    trial: id,
                    reward: None,
                    accuracy: None,
                    images_per_second: None,
                    note: reason,
                });
                immediate.push(Observation { tokens, reward: None, rung: 0 });
            } else if let Some(source) = self.store.find_measured(&hash, &self.plan.proxy_key)? {
                let reward = self.reused_reward(&source, &arch)?;
                let id = self.store.insert_reused_trial(self.run, &trial, source.id)?;
                self.summary.reused += 1;
                self.summary.completed += 1;
                self.note_best(id, reward, &arch, on_event);
                on_event(&Event::Finished {
                    trial: id,
                    reward,
                    accuracy: source.accuracy,
                    images_per_second: None,
                    note: format!("reused the measurement of trial {}", source.id),
                });
                immediate.push(Observation { tokens, reward, rung: 0 });
            } else if self.in_flight_hashes.contains_key(&hash)
                || queued.iter().any(|(_, h, _): &(NewTrial, String, Vec<usize>)| *h == hash)
            {
                self.waiting.entry(hash).or_default().push(Waiter { tokens, arch });
            } else {
                queued.push((trial, hash, tokens));
            }
        }
        if !queued.is_empty() {
            let trials: Vec<NewTrial> = queued.iter().map(|(t, _, _)| t.clone()).collect();
            let ids = self.store.insert_trials(self.run, &trials)?;
            if self.evaluator.claims_from_store() {
                // Worker processes may claim and finish these at once: watched from now on, so
                // that no result escapes the controller.
                for (id, (trial, hash, tokens)) in ids.into_iter().zip(queued) {
                    self.evaluator.submit(id, &trial.arch)?;
                    self.in_flight_hashes.insert(hash.clone(), id);
                    self.in_flight.insert(id, (tokens, hash));
                }
            }
        }
        if !immediate.is_empty() {
            self.observe(&immediate)?;
            // Reused results rank in their rung like trained ones: a multi-fidelity run whose
            // candidates were all measured before must still promote.
            self.promote()?;
        } else {
            self.checkpoint()?;
        }
        Ok(())
    }

    /// The reward of a reused measurement under this run's objective (the source may have been
    /// scored under another one).
    fn reused_reward(&self, source: &Trial, arch: &ArchSpec) -> Result<Option<f64>> {
        let Some(accuracy) = source.accuracy else { return Ok(None) };
        Ok(Some(score(&self.plan.objective, accuracy, arch, source.latency_ms)?.reward))
    }

    fn observe(&mut self, observations: &[Observation]) -> Result<()> {
        self.controller.observe(observations)?;
        self.observed += observations.len() as u64;
        self.checkpoint()
    }

    fn note_best(
        &mut self,
        trial: TrialId,
        reward: Option<f64>,
        arch: &ArchSpec,
        on_event: &mut impl FnMut(&Event),
    ) {
        if let Some(reward) = reward {
            if self.best.is_none_or(|best| reward > best) {
                self.best = Some(reward);
                on_event(&Event::NewBest { trial, reward, blocks: arch.block_strings() });
            }
        }
    }

    fn record(&mut self, evaluation: Evaluation, on_event: &mut impl FnMut(&Event)) -> Result<()> {
        let Some((tokens, hash)) = self.in_flight.remove(&evaluation.trial) else {
            tracing::warn!(trial = %evaluation.trial, "a result for a trial that is not in flight; ignored");
            return Ok(());
        };
        if self.in_flight_hashes.get(&hash) == Some(&evaluation.trial) {
            self.in_flight_hashes.remove(&hash);
        }
        let trial = self.store.trial(evaluation.trial)?;
        let arch = trial.arch()?;
        let failure = match &evaluation.outcome {
            Outcome::Failed(failure) => Some(failure.clone()),
            _ => None,
        };
        let Some(event) =
            record_outcome(self.store, evaluation, &arch, &self.plan.objective, &mut self.summary)?
        else {
            return Ok(()); // interrupted: requeued by the stop
        };
        let Event::Finished { reward, accuracy, .. } = event else { return Ok(()) };
        on_event(&event);
        let mut observations = vec![Observation { tokens, reward, rung: trial.setting }];
        if trial.setting > 0 {
            // A promotion: rewards of higher rungs are not comparable with the best at rung 0.
            self.promoted.1 += 1;
        } else {
            self.note_best(trial.id, reward, &arch, on_event);
            for waiter in self.waiting.remove(&hash).unwrap_or_default() {
                let settled = Settled { source: trial.id, reward, accuracy, failure: failure.as_ref() };
                observations.push(self.settle_waiter(waiter, &settled, on_event)?);
            }
        }
        self.observe(&observations)?;
        self.promote()
    }

    /// Multi-fidelity search: queues the promotions the latest results allow ([`promotable`]),
    /// each watched from the moment it is queued.
    fn promote(&mut self) -> Result<()> {
        let Some(rungs) = &self.plan.rungs else { return Ok(()) };
        let trials = self.store.trials(self.run, &TrialFilter::default())?;
        for (parent, rung) in promotable(&trials, rungs.count(), rungs.eta) {
            let (Some(source), Some(key)) = (trials.iter().find(|t| t.id == parent), rungs.key(rung)) else {
                continue;
            };
            let arch = source.arch()?;
            let tokens = self.plan.space.encode(&arch)?;
            let new = NewTrial::new(arch.clone(), key)
                .under_setting(rung)
                .with_parent(parent)
                .at_step(self.observed as i64);
            let id = self.store.insert_trial(self.run, &new)?;
            self.promoted.0 += 1;
            if self.evaluator.claims_from_store() {
                self.evaluator.submit(id, &arch)?;
                self.in_flight.insert(id, (tokens, source.arch_hash.clone()));
            }
        }
        Ok(())
    }

    /// Records a candidate that waited for an identical architecture: it reuses the
    /// measurement, or fails the same way (the same network would fail again).
    fn settle_waiter(
        &mut self,
        waiter: Waiter,
        settled: &Settled,
        on_event: &mut impl FnMut(&Event),
    ) -> Result<Observation> {
        let new = NewTrial::new(waiter.arch, self.plan.proxy_key.clone()).at_step(self.observed as i64);
        let store = self.store;
        let event = match settled.failure {
            None => {
                let id = store.insert_reused_trial(self.run, &new, settled.source)?;
                self.summary.reused += 1;
                self.summary.completed += 1;
                Event::Finished {
                    trial: id,
                    reward: settled.reward,
                    accuracy: settled.accuracy,
                    images_per_second: None,
                    note: format!("reused the measurement of trial {}", settled.source),
                }
            }
            Some(failure) => {
                let message =
                    format!("same architecture as failed trial {}: {}", settled.source, failure.message);
                let id = store.insert_failed_trial(self.run, &new, failure.kind, &message)?;
                self.summary.failed += 1;
                Event::failed(id, message)
            }
        };
        on_event(&event);
        Ok(Observation { tokens: waiter.tokens, reward: settled.reward, rung: 0 })
    }
}

/// How a trial that others waited for ended.
struct Settled<'a> {
    source: TrialId,
    reward: Option<f64>,
    accuracy: Option<f64>,
    failure: Option<&'a TrialFailure>,
}
