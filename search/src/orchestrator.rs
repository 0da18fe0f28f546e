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

use std::collections::{HashMap, VecDeque};
use std::sync::atomic::{AtomicBool, Ordering};
use std::time::Duration;

use effnas_evaluator::score::Objective;
use effnas_space::{arch_hash, cost, ArchSpec, SearchSpace};
use effnas_store::{
    BlockingStore, EpochMetrics, NewTrial, RunId, RunStatus, StoreError, TrialFilter, TrialId, TrialMetrics,
    TrialState,
};
use serde::{Deserialize, Serialize};
use serde_json::{json, Value};

use crate::controller::{Controller, ControllerError, Observation, Strategy};
use crate::oracle::{CompoundOracle, Oracle};

/// Why a search stopped early.
#[derive(Debug, thiserror::Error)]
pub enum SearchError {
    #[error(transparent)]
    Store(#[from] StoreError),
    #[error(transparent)]
    Controller(#[from] ControllerError),
    #[error("evaluator: {0}")]
    Evaluator(String),
    #[error("architecture: {0}")]
    Space(#[from] effnas_space::SpaceError),
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
}

/// A finished evaluation.
#[derive(Debug, Clone)]
pub struct Evaluation {
    pub trial: TrialId,
    pub outcome: std::result::Result<Measured, String>,
}

/// What an evaluator measured for one trial.
#[derive(Debug, Clone, Default)]
pub struct Measured {
    pub accuracy: f64,
    pub loss: f64,
    pub seconds: f64,
    pub images_per_second: f64,
    pub latency_ms: Option<f64>,
    pub epochs: Vec<EpochMetrics>,
    /// Evaluator-specific facts kept with the trial (proxy cost, device, …).
    pub extra: Value,
}

/// Something that trains (or scores) queued architectures, several at a time.
pub trait Evaluator {
    /// Trials it can work on at once.
    fn capacity(&self) -> usize;
    /// Starts evaluating `arch` (a space member) as trial `trial`.
    fn submit(&mut self, trial: TrialId, arch: &ArchSpec) -> Result<()>;
    /// The next finished evaluation, waiting at most `timeout`.
    fn next(&mut self, timeout: Duration) -> Result<Option<Evaluation>>;
}

/// The oracle as an evaluator: instant, deterministic scores (see [`crate::oracle`]).
pub struct OracleEvaluator {
    scorer: OracleScorer,
    ready: VecDeque<Evaluation>,
    capacity: usize,
}

enum OracleScorer {
    /// Similarity to a target member of the searched space.
    Member(Oracle),
    /// How close a scaled network is to the compound optimum.
    Compound(CompoundOracle),
}

impl OracleEvaluator {
    /// For a search over `space`.
    pub fn new(space: &SearchSpace, capacity: usize) -> Self {
        OracleEvaluator {
            scorer: OracleScorer::Member(Oracle::for_space(space)),
            ready: VecDeque::new(),
            capacity: capacity.max(1),
        }
    }

    /// For the compound grid around `base`.
    pub fn for_compound(base: ArchSpec, capacity: usize) -> Self {
        OracleEvaluator {
            scorer: OracleScorer::Compound(CompoundOracle::new(base)),
            ready: VecDeque::new(),
            capacity: capacity.max(1),
        }
    }
}

impl Evaluator for OracleEvaluator {
    fn capacity(&self) -> usize {
        self.capacity
    }

    fn submit(&mut self, trial: TrialId, arch: &ArchSpec) -> Result<()> {
        let (accuracy, extra) = match &self.scorer {
            OracleScorer::Member(oracle) => {
                (oracle.accuracy(arch), json!({"evaluator": "oracle", "similarity": oracle.similarity(arch)}))
            }
            OracleScorer::Compound(oracle) => (oracle.accuracy(arch), json!({"evaluator": "oracle"})),
        };
        let measured = Measured { accuracy, loss: 1.0 - accuracy, extra, ..Measured::default() };
        self.ready.push_back(Evaluation { trial, outcome: Ok(measured) });
        Ok(())
    }

    fn next(&mut self, _timeout: Duration) -> Result<Option<Evaluation>> {
        Ok(self.ready.pop_front())
    }
}

/// Records a measured trial: the curve, then the metrics with the searched model's own cost
/// and the reward computed from it. Returns the reward.
pub fn complete_trial(
    store: &BlockingStore,
    trial: TrialId,
    arch: &ArchSpec,
    measured: &Measured,
    objective: &Objective,
) -> Result<f64> {
    let c = cost(arch);
    let reward = objective.reward(measured.accuracy, c.macs as f64);
    for epoch in &measured.epochs {
        store.block_on(store.store().record_epoch(trial, epoch))?;
    }
    let metrics = TrialMetrics {
        accuracy: measured.accuracy,
        loss: measured.loss,
        params: c.params,
        flops: c.macs,
        reward,
        latency_ms: measured.latency_ms,
        seconds: measured.seconds,
        images_per_second: measured.images_per_second,
        extra: Some(measured.extra.clone()),
    };
    store.block_on(store.store().complete_trial(trial, &metrics))?;
    Ok(reward)
}

/// Trains every queued trial of a run that needs no controller (a compound grid): claims
/// pending trials as the evaluator has room and records results until none is left, or until
/// `stop` is raised (then in-flight trials go back to pending and the run is interrupted).
pub fn drain_queue(
    store: &BlockingStore,
    run: RunId,
    evaluator: &mut dyn Evaluator,
    objective: &Objective,
    stop: &AtomicBool,
    mut on_event: impl FnMut(&Event),
) -> Result<Summary> {
    let mut summary = Summary::default();
    let requeued = store.block_on(store.store().requeue_running(run))?;
    if !requeued.is_empty() {
        tracing::info!(count = requeued.len(), "trials that were in flight go back to the queue");
    }
    store.block_on(store.store().set_run_status(run, RunStatus::Running))?;
    let mut in_flight: HashMap<TrialId, ArchSpec> = HashMap::new();
    loop {
        if stop.load(Ordering::SeqCst) {
            store.block_on(store.store().requeue_running(run))?;
            store.block_on(store.store().set_run_status(run, RunStatus::Interrupted))?;
            summary.interrupted = true;
            return Ok(summary);
        }
        while in_flight.len() < evaluator.capacity() {
            let Some(claimed) = store.block_on(store.store().claim_trial(run, "orchestrator"))? else {
                break;
            };
            evaluator.submit(claimed.id, &claimed.arch)?;
            in_flight.insert(claimed.id, claimed.arch);
        }
        if in_flight.is_empty() {
            break;
        }
        let Some(evaluation) = evaluator.next(Duration::from_millis(200))? else {
            continue;
        };
        let Some(arch) = in_flight.remove(&evaluation.trial) else {
            continue;
        };
        match evaluation.outcome {
            Ok(measured) => {
                let reward = complete_trial(store, evaluation.trial, &arch, &measured, objective)?;
                summary.completed += 1;
                summary.trained += 1;
                on_event(&Event::Finished {
                    trial: evaluation.trial,
                    reward: Some(reward),
                    accuracy: Some(measured.accuracy),
                    images_per_second: Some(measured.images_per_second),
                    note: String::new(),
                });
            }
            Err(reason) => {
                store.block_on(store.store().fail_trial(evaluation.trial, &reason))?;
                summary.failed += 1;
                on_event(&Event::Finished {
                    trial: evaluation.trial,
                    reward: None,
                    accuracy: None,
                    images_per_second: None,
                    note: reason,
                });
            }
        }
    }
    store.block_on(store.store().set_run_status(run, RunStatus::Complete))?;
    Ok(summary)
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
}

const CHECKPOINTS_KEPT: i64 = 3;

impl<'a> Search<'a> {
    /// Prepares a run: restores the controller from the run's latest checkpoint if there is one
    /// (a resume), and puts trials left running by a dead process back to pending.
    pub fn new(
        store: &'a BlockingStore,
        run: RunId,
        plan: &'a SearchPlan,
        evaluator: &'a mut dyn Evaluator,
    ) -> Result<Self> {
        let mut controller = plan.strategy.build(&plan.space, plan.seed)?;
        let mut observed = 0;
        if let Some(checkpoint) = store.block_on(store.store().latest_checkpoint(run))? {
            controller.restore(&checkpoint.state["controller"])?;
            observed = checkpoint.step.max(0) as u64;
        }
        let requeued = store.block_on(store.store().requeue_running(run))?;
        if !requeued.is_empty() {
            tracing::info!(count = requeued.len(), "trials that were in flight go back to the queue");
        }
        let best = store
            .block_on(store.store().trials(
                run,
                &TrialFilter { state: Some(TrialState::Complete), limit: Some(1), ..TrialFilter::default() },
            ))?
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
        })
    }

    fn checkpoint(&mut self) -> Result<()> {
        let state = json!({"controller": self.controller.state()?, "strategy": self.controller.name()});
        let step = self.observed as i64;
        self.store.block_on(self.store.store().save_checkpoint(self.run, step, &state, None))?;
        self.store.block_on(self.store.store().prune_checkpoints(self.run, CHECKPOINTS_KEPT))?;
        Ok(())
    }

    /// (committed, finished): trials of the run in the database in any state plus candidates
    /// waiting in memory, and trials complete or failed. One read of the run's counts.
    fn counts(&self) -> Result<(u64, u64)> {
        let run = self.store.block_on(self.store.store().run(self.run))?;
        let waiting: u64 = self.waiting.values().map(|w| w.len() as u64).sum();
        Ok((run.trials_total + waiting, run.trials_done + run.trials_failed))
    }

    /// Runs until the plan's number of trials has finished or `stop` is raised.
    pub fn run(mut self, stop: &AtomicBool, mut on_event: impl FnMut(&Event)) -> Result<Summary> {
        let target = self.plan.trials as u64;
        self.store.block_on(self.store.store().set_run_status(self.run, RunStatus::Running))?;
        loop {
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
                self.propose(wanted, &mut on_event)?;
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
        self.store.block_on(self.store.store().set_run_status(self.run, RunStatus::Complete))?;
        Ok(self.summary)
    }

    fn interrupt(mut self) -> Result<Summary> {
        let requeued = self.store.block_on(self.store.store().requeue_running(self.run))?;
        tracing::info!(requeued = requeued.len(), "interrupted: trials in flight go back to the queue");
        self.checkpoint()?;
        self.store.block_on(self.store.store().set_run_status(self.run, RunStatus::Interrupted))?;
        self.summary.interrupted = true;
        Ok(self.summary)
    }

    /// Claims this run's pending trials and starts them, as far as the evaluator has room.
    fn dispatch_pending(&mut self) -> Result<()> {
        while self.in_flight.len() < self.evaluator.capacity() {
            let Some(claimed) =
                self.store.block_on(self.store.store().claim_trial(self.run, "orchestrator"))?
            else {
                break;
            };
            let tokens = match self.plan.space.encode(&claimed.arch) {
                Ok(tokens) => tokens,
                Err(e) => {
                    self.store.block_on(
                        self.store
                            .store()
                            .fail_trial(claimed.id, &format!("not a member of the run's space: {e}")),
                    )?;
                    continue;
                }
            };
            self.evaluator.submit(claimed.id, &claimed.arch)?;
            self.in_flight_hashes.insert(claimed.arch_hash.clone(), claimed.id);
            self.in_flight.insert(claimed.id, (tokens, claimed.arch_hash));
        }
        Ok(())
    }

    fn propose(&mut self, wanted: usize, on_event: &mut impl FnMut(&Event)) -> Result<()> {
        let proposals = self.controller.propose(wanted)?;
        let mut queued = Vec::new();
        let mut immediate = Vec::new();
        for tokens in proposals {
            let arch = self.plan.space.decode(&tokens)?;
            let hash = arch_hash(&arch);
            let trial =
                NewTrial::new(arch.clone(), self.plan.proxy_key.clone()).at_step(self.observed as i64);
            let macs = cost(&arch).macs;
            if let Some(limit) = self.plan.max_flops.filter(|&limit| macs > limit) {
                let id = self.store.block_on(self.store.store().insert_trial(self.run, &trial))?;
                let reason =
                    format!("rejected before training: {macs} multiply-adds over --max-flops {limit}");
                self.store.block_on(self.store.store().fail_trial(id, &reason))?;
                self.summary.rejected += 1;
                on_event(&Event::Finished {
                    trial: id,
                    reward: None,
                    accuracy: None,
                    images_per_second: None,
                    note: reason,
                });
                immediate.push(Observation { tokens, reward: None });
            } else if let Some(source) =
                self.store.block_on(self.store.store().find_measured(&hash, &self.plan.proxy_key))?
            {
                let id = self
                    .store
                    .block_on(self.store.store().insert_reused_trial(self.run, &trial, source.id))?;
                self.summary.reused += 1;
                self.summary.completed += 1;
                self.note_best(id, source.reward, &arch, on_event);
                on_event(&Event::Finished {
                    trial: id,
                    reward: source.reward,
                    accuracy: source.accuracy,
                    images_per_second: None,
                    note: format!("reused the measurement of trial {}", source.id),
                });
                immediate.push(Observation { tokens, reward: source.reward });
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
            self.store.block_on(self.store.store().insert_trials(self.run, &trials))?;
        }
        if !immediate.is_empty() {
            self.observe(&immediate)?;
        } else {
            self.checkpoint()?;
        }
        Ok(())
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
        self.in_flight_hashes.remove(&hash);
        let trial = self.store.block_on(self.store.store().trial(evaluation.trial))?;
        let arch = trial.arch()?;
        let mut observations = Vec::new();
        match evaluation.outcome {
            Ok(measured) => {
                let reward = complete_trial(self.store, trial.id, &arch, &measured, &self.plan.objective)?;
                self.summary.completed += 1;
                self.summary.trained += 1;
                self.note_best(trial.id, Some(reward), &arch, on_event);
                on_event(&Event::Finished {
                    trial: trial.id,
                    reward: Some(reward),
                    accuracy: Some(measured.accuracy),
                    images_per_second: Some(measured.images_per_second),
                    note: String::new(),
                });
                observations.push(Observation { tokens, reward: Some(reward) });
                for waiter in self.waiting.remove(&hash).unwrap_or_default() {
                    let new =
                        NewTrial::new(waiter.arch, self.plan.proxy_key.clone()).at_step(self.observed as i64);
                    let id = self
                        .store
                        .block_on(self.store.store().insert_reused_trial(self.run, &new, trial.id))?;
                    self.summary.reused += 1;
                    self.summary.completed += 1;
                    on_event(&Event::Finished {
                        trial: id,
                        reward: Some(reward),
                        accuracy: Some(measured.accuracy),
                        images_per_second: None,
                        note: format!("reused the measurement of trial {}", trial.id),
                    });
                    observations.push(Observation { tokens: waiter.tokens, reward: Some(reward) });
                }
            }
            Err(reason) => {
                self.store.block_on(self.store.store().fail_trial(trial.id, &reason))?;
                self.summary.failed += 1;
                on_event(&Event::Finished {
                    trial: trial.id,
                    reward: None,
                    accuracy: None,
                    images_per_second: None,
                    note: reason.clone(),
                });
                observations.push(Observation { tokens, reward: None });
                // The same architecture would fail the same way: record the waiters as failed too.
                for waiter in self.waiting.remove(&hash).unwrap_or_default() {
                    let new =
                        NewTrial::new(waiter.arch, self.plan.proxy_key.clone()).at_step(self.observed as i64);
                    let id = self.store.block_on(self.store.store().insert_trial(self.run, &new))?;
                    self.store.block_on(self.store.store().fail_trial(
                        id,
                        &format!("same architecture as failed trial {}: {reason}", trial.id),
                    ))?;
                    self.summary.failed += 1;
                    observations.push(Observation { tokens: waiter.tokens, reward: None });
                }
            }
        }
        self.observe(&observations)
    }
}
