//! Evaluators: what turns a queued architecture into a measurement (MnasNet Figure 1's
//! "trainer"). The search and the compound grid talk to them through one trait, so training
//! proxies ([`crate::train_evaluator::TrainEvaluator`]) and the synthetic oracle
//! ([`OracleEvaluator`]) are interchangeable.

use std::collections::VecDeque;
use std::time::Duration;

use effnas_space::{ArchSpec, SearchSpace};
use effnas_store::{EpochMetrics, FailureKind, TrialId};
use serde_json::{json, Value};

use crate::oracle::{CompoundOracle, Oracle};
use crate::orchestrator::Result;

/// A finished evaluation.
#[derive(Debug, Clone)]
pub struct Evaluation {
    pub trial: TrialId,
    pub outcome: Outcome,
}

/// How an evaluation ended.
#[derive(Debug, Clone)]
pub enum Outcome {
    Measured(Measured),
    Failed(TrialFailure),
    /// Stopped from outside (Ctrl-C) before it finished: not a result; the trial goes back to
    /// the queue.
    Interrupted,
    /// Already recorded in the store by the worker process that trained it
    /// ([`crate::remote::StoreWorkers`]): what the search needs to know of it.
    Recorded(Recorded),
}

/// A result a worker process wrote: the reward (`None` for a failure) and what a display shows.
#[derive(Debug, Clone, PartialEq)]
pub struct Recorded {
    pub reward: Option<f64>,
    pub accuracy: Option<f64>,
    pub images_per_second: Option<f64>,
    pub failure: Option<TrialFailure>,
}

/// A failed trial: its kind (what a user groups by) and a one-line message.
#[derive(Debug, Clone, PartialEq)]
pub struct TrialFailure {
    pub kind: FailureKind,
    pub message: String,
}

impl TrialFailure {
    pub fn new(kind: FailureKind, message: impl Into<String>) -> Self {
        TrialFailure { kind, message: message.into() }
    }
}

/// What an evaluator measured for one trial.
#[derive(Debug, Clone, Default)]
pub struct Measured {
    pub accuracy: f64,
    pub loss: f64,
    pub seconds: f64,
    pub images_per_second: f64,
    /// Batch-1 latency of the searched network itself, when measured.
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
    /// Whether worker processes claim the trials from the store themselves. The orchestrator
    /// then leaves queued trials pending, hands their ids to [`Evaluator::submit`] only to be
    /// watched, and never takes back a running trial from a live worker (expired leases are
    /// swept instead).
    fn claims_from_store(&self) -> bool {
        false
    }
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
        let scorer = OracleScorer::Member(Oracle::for_space(space));
        OracleEvaluator { scorer, ready: VecDeque::new(), capacity: capacity.max(1) }
    }

    /// For the compound grid around `base`.
    pub fn for_compound(base: ArchSpec, capacity: usize) -> Self {
        let scorer = OracleScorer::Compound(CompoundOracle::new(base));
        OracleEvaluator { scorer, ready: VecDeque::new(), capacity: capacity.max(1) }
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
        self.ready.push_back(Evaluation { trial, outcome: Outcome::Measured(measured) });
        Ok(())
    }

    fn next(&mut self, _timeout: Duration) -> Result<Option<Evaluation>> {
        Ok(self.ready.pop_front())
    }
}
