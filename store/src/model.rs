//! The values that go into and come out of the store.

use std::fmt;
use std::str::FromStr;

use effnas_space::ArchSpec;
use serde::{Deserialize, Serialize};

use crate::error::{Result, StoreError};

/// The id of a run (`runs.id`).
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash, PartialOrd, Ord, Serialize, sqlx::Type)]
#[sqlx(transparent)]
#[serde(transparent)]
pub struct RunId(pub i64);

/// The id of a trial (`trials.id`), unique across runs.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash, PartialOrd, Ord, Serialize, sqlx::Type)]
#[sqlx(transparent)]
#[serde(transparent)]
pub struct TrialId(pub i64);

impl fmt::Display for RunId {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        self.0.fmt(f)
    }
}

impl fmt::Display for TrialId {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        self.0.fmt(f)
    }
}

/// Declares a text-valued enum stored as its lowercase name, with `as_str`, `Display` and
/// `FromStr`, so the database, the CLI and JSON spell it the same way.
macro_rules! text_enum {
    ($(#[$meta:meta])* $name:ident { $($(#[$vmeta:meta])* $variant:ident = $text:literal),+ $(,)? }) => {
        $(#[$meta])*
        #[derive(Debug, Clone, Copy, PartialEq, Eq, Hash, Serialize, Deserialize)]
        #[serde(rename_all = "snake_case")]
        pub enum $name { $($(#[$vmeta])* $variant),+ }

        impl $name {
            /// Every value, in declaration order.
            pub const ALL: &'static [$name] = &[$($name::$variant),+];

            /// The name stored in the database (and written by serde and the CLI).
            pub fn as_str(self) -> &'static str {
                match self { $($name::$variant => $text),+ }
            }
        }

        impl fmt::Display for $name {
            fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
                f.write_str(self.as_str())
            }
        }

        impl FromStr for $name {
            type Err = StoreError;

            fn from_str(text: &str) -> Result<Self> {
                match text {
                    $($text => Ok($name::$variant),)+
                    other => Err(StoreError::invalid(
                        stringify!($name),
                        format!("unknown value {other:?} (known: {})", [$($text),+].join(", ")),
                    )),
                }
            }
        }
    };
}

text_enum! {
    /// What produced a run.
    RunKind {
        /// An architecture search (`effnas search`).
        Search = "search",
        /// The compound-scaling grid search (`effnas compound`).
        Compound = "compound",
        /// Single trainings recorded by hand (`effnas train --db`).
        Manual = "manual",
        /// A measurement of proxy fidelity (`effnas fidelity`): sampled architectures trained
        /// under a cheap proxy with several seeds and under a reference setting.
        Fidelity = "fidelity",
    }
}

text_enum! {
    /// Where a run is in its life.
    RunStatus {
        Running = "running",
        Complete = "complete",
        Failed = "failed",
        /// Stopped before it finished (Ctrl-C, a crash noticed on resume); resumable.
        Interrupted = "interrupted",
    }
}

text_enum! {
    /// Where a trial is in its life: pending → running → complete or failed; a running trial
    /// whose worker's lease expires (or that a stopping worker releases) goes back to pending.
    TrialState {
        Pending = "pending",
        Running = "running",
        Complete = "complete",
        Failed = "failed",
    }
}

text_enum! {
    /// Why a trial failed: the `trials.failure` column, set exactly when the state is `failed`,
    /// so that `SELECT failure, count(*) FROM trials GROUP BY failure` counts failures by kind.
    /// The trial's `error` column keeps the one-line message.
    FailureKind {
        /// The loss became NaN or infinite.
        Diverged = "diverged",
        /// The device (GPU or host) ran out of memory while training it.
        OutOfMemory = "out_of_memory",
        /// Training took longer than the proxy's time limit.
        TimeLimit = "time_limit",
        /// The architecture cannot be trained on the proxy task, or is not a member of the
        /// run's search space (or its stored form no longer parses).
        Invalid = "invalid",
        /// Refused before training, e.g. over `--max-flops`.
        Rejected = "rejected",
        /// Its worker died on every attempt (its lease expired, or its process was gone on
        /// resume; attempts exhausted).
        Lost = "lost",
        /// Anything else.
        Error = "error",
    }
}

text_enum! {
    /// How one attempt at a trial ended (`trial_attempts.outcome`).
    AttemptOutcome {
        /// Still running under its worker.
        Running = "running",
        Complete = "complete",
        Failed = "failed",
        /// Taken back from a worker that died or hung (its lease passed, or its process was
        /// gone on `--resume`); the trial went back to pending for another attempt.
        Reclaimed = "reclaimed",
    }
}

impl RunStatus {
    /// Complete, failed and interrupted runs have an end time.
    pub fn is_finished(self) -> bool {
        !matches!(self, RunStatus::Running)
    }
}

/// What [`crate::Store::create_run`] does when a run of the same name exists. Names are unique,
/// so that `--run NAME` means one run.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Default)]
pub enum RunNaming {
    /// The name was derived from the command (`evolution-default`, `effnas train b0`): when it
    /// is taken, the first free `NAME-2`, `NAME-3`, … is used.
    #[default]
    Derived,
    /// The user chose the name (`--name`): refused when taken
    /// ([`StoreError::RunNameTaken`]), and it must not contain control characters.
    Chosen,
}

/// A run to create.
#[derive(Debug, Clone)]
pub struct NewRun {
    /// Unique among runs, and not all digits (an all-digit `--run` is an id); see [`RunNaming`].
    pub name: String,
    pub naming: RunNaming,
    pub kind: RunKind,
    /// The run's whole configuration (space, strategy, proxy settings…), kept for `--resume`
    /// and for people reading the database later.
    pub config: serde_json::Value,
    pub seed: Option<u64>,
    /// The effnas version (and commit, when known) that ran it.
    pub code_version: String,
}

impl NewRun {
    /// A run with a name derived from the command ([`RunNaming::Derived`]), an empty
    /// configuration, no seed and this crate's version.
    pub fn new(name: impl Into<String>, kind: RunKind) -> Self {
        NewRun {
            name: name.into(),
            naming: RunNaming::Derived,
            kind,
            config: serde_json::Value::Object(Default::default()),
            seed: None,
            code_version: env!("CARGO_PKG_VERSION").to_owned(),
        }
    }

    /// A run whose name the user chose ([`RunNaming::Chosen`]): refused when taken.
    pub fn named(name: impl Into<String>, kind: RunKind) -> Self {
        NewRun { naming: RunNaming::Chosen, ..NewRun::new(name, kind) }
    }
}

/// A run as stored, with counts of its trials.
#[derive(Debug, Clone, PartialEq, Serialize)]
pub struct Run {
    pub id: RunId,
    pub name: String,
    pub kind: RunKind,
    pub status: RunStatus,
    pub config: serde_json::Value,
    pub seed: Option<u64>,
    pub code_version: String,
    /// When the run was created (stored UTC text, see [`crate::time`]).
    pub started: String,
    pub finished: Option<String>,
    pub trials_pending: u64,
    pub trials_running: u64,
    pub trials_done: u64,
    pub trials_failed: u64,
    pub trials_total: u64,
    pub best_reward: Option<f64>,
    /// When the last trial finished, if any did.
    pub last_trial_finished: Option<String>,
    /// The process holding the run's lease (see [`crate::RunOwner`]), while one does.
    pub owner: Option<String>,
    /// Until when that lease holds unless renewed.
    pub lease_until: Option<String>,
}

impl Run {
    /// Wall-clock seconds from start to finish; for an unfinished run, to its last finished
    /// trial (so a run whose process died does not appear to run forever).
    pub fn duration_seconds(&self) -> Option<f64> {
        let end = self.finished.as_deref().or(self.last_trial_finished.as_deref())?;
        crate::time::seconds_between(&self.started, end)
    }

    /// The name as it may be printed to a terminal: control characters escaped (see
    /// [`crate::escape_control`]).
    pub fn display_name(&self) -> std::borrow::Cow<'_, str> {
        crate::escape_control(&self.name)
    }
}

/// The key of one call that queues trials ([`crate::Store::insert_trials_once`]), made once and
/// kept across the call's retries: a retry after a commit whose answer was lost (the server's
/// connection dropped just then) finds the trials the first try queued, instead of queuing the
/// batch again. Host, process, time and a counter make it unique among the store's writers.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct BatchKey(String);

impl BatchKey {
    pub fn new() -> Self {
        use std::sync::atomic::{AtomicU64, Ordering};
        static NEXT: AtomicU64 = AtomicU64::new(0);
        let nanos = std::time::SystemTime::now()
            .duration_since(std::time::UNIX_EPOCH)
            .map_or(0, |since| since.as_nanos());
        let count = NEXT.fetch_add(1, Ordering::Relaxed);
        BatchKey(format!("{}/{}/{nanos:x}/{count}", crate::host_name(), std::process::id()))
    }

    pub fn as_str(&self) -> &str {
        &self.0
    }
}

impl Default for BatchKey {
    fn default() -> Self {
        Self::new()
    }
}

/// A trial to queue: an architecture to train under one set of proxy settings.
#[derive(Debug, Clone)]
pub struct NewTrial {
    pub arch: ArchSpec,
    /// Identifies the proxy settings (data set, epochs, images, resolution, seed…). A result is
    /// reused for another trial only when arch hash and proxy key both match. The evaluator
    /// builds it; the store treats it as opaque text.
    pub proxy_key: String,
    /// The controller step (RL batch, evolution generation, grid index) that proposed it.
    pub step: Option<i64>,
    /// Which of its run's training settings it is trained under: an index into the list the
    /// run's configuration holds (a fidelity run's cheap proxy for each seed and its
    /// reference). 0 for runs with one setting.
    pub setting: u32,
    /// The trial it continues or repeats: the lower rung it was promoted from, or the trial
    /// whose architecture it re-trains under another setting or seed.
    pub parent: Option<TrialId>,
}

impl NewTrial {
    pub fn new(arch: ArchSpec, proxy_key: impl Into<String>) -> Self {
        NewTrial { arch, proxy_key: proxy_key.into(), step: None, setting: 0, parent: None }
    }

    pub fn at_step(mut self, step: i64) -> Self {
        self.step = Some(step);
        self
    }

    /// Trained under the run's setting `setting` (see [`NewTrial::setting`]).
    pub fn under_setting(mut self, setting: u32) -> Self {
        self.setting = setting;
        self
    }

    /// Continuing or repeating trial `parent`.
    pub fn with_parent(mut self, parent: TrialId) -> Self {
        self.parent = Some(parent);
        self
    }
}

/// The measured result of a trial.
#[derive(Debug, Clone, PartialEq, Default, Serialize)]
pub struct TrialMetrics {
    /// Validation accuracy, a fraction in [0, 1].
    pub accuracy: f64,
    /// Final validation loss.
    pub loss: f64,
    pub params: u64,
    /// Multiply-adds ("FLOPS" in the EfficientNet and MnasNet papers).
    pub flops: u64,
    /// `ACC × (FLOPS / T)^w` or the latency-based variant, always computed on the searched (or
    /// named) network's own cost at its own resolution and classes, never on the proxy's
    /// (whose cost belongs in `extra` as `proxy_params` / `proxy_flops`).
    pub reward: f64,
    /// Measured inference latency in milliseconds, when measured.
    pub latency_ms: Option<f64>,
    /// Training wall-clock seconds.
    pub seconds: f64,
    pub images_per_second: f64,
    /// Anything else worth keeping (compound α, β, γ, φ; device; data set size).
    pub extra: Option<serde_json::Value>,
}

/// One epoch of a trial's training curve.
#[derive(Debug, Clone, PartialEq, Default, Serialize)]
pub struct EpochMetrics {
    /// 0-based epoch number.
    pub epoch: u32,
    pub train_loss: Option<f64>,
    pub train_accuracy: Option<f64>,
    pub val_loss: Option<f64>,
    pub val_accuracy: Option<f64>,
    pub learning_rate: Option<f64>,
    /// Seconds this epoch took.
    pub seconds: Option<f64>,
}

/// A trial as stored.
#[derive(Debug, Clone, PartialEq, Serialize)]
pub struct Trial {
    pub id: TrialId,
    pub run_id: RunId,
    pub state: TrialState,
    /// The architecture as JSON (what `serde_json::to_string(&ArchSpec)` writes); see
    /// [`Trial::arch`].
    pub arch_json: String,
    /// `effnas_space::arch_hash` of the architecture.
    pub arch_hash: String,
    /// The block strings, one per block.
    pub blocks: Vec<String>,
    pub resolution: u32,
    pub proxy_key: String,
    pub step: Option<i64>,
    pub worker: Option<String>,
    /// How many times a worker has claimed it.
    pub attempts: u32,
    pub created: String,
    pub started: Option<String>,
    pub heartbeat: Option<String>,
    /// Until when its worker holds it unless the lease is extended; `None` unless it is running
    /// under a lease ([`crate::Store::claim_next`]).
    pub lease_until: Option<String>,
    pub finished: Option<String>,
    pub accuracy: Option<f64>,
    pub loss: Option<f64>,
    /// From the cost model when queued; as measured once complete.
    pub params: u64,
    pub flops: u64,
    pub reward: Option<f64>,
    pub latency_ms: Option<f64>,
    pub seconds: Option<f64>,
    pub images_per_second: Option<f64>,
    pub extra: Option<serde_json::Value>,
    /// Why it failed, by kind; `Some` exactly when `state` is [`TrialState::Failed`].
    pub failure: Option<FailureKind>,
    /// A failed trial's one-line message.
    pub error: Option<String>,
    /// The trial whose result this one copied, when the search reused a measurement.
    pub reused_from: Option<TrialId>,
    /// Which of the run's training settings it was trained under (see [`NewTrial::setting`]).
    pub setting: u32,
    /// The trial it continues or repeats (see [`NewTrial::parent`]).
    pub parent: Option<TrialId>,
}

impl Trial {
    /// The architecture, parsed and validated.
    pub fn arch(&self) -> Result<ArchSpec> {
        serde_json::from_str(&self.arch_json)
            .map_err(|e| StoreError::corrupt(format!("architecture of trial {}", self.id), e))
    }
}

/// One attempt at a trial: a claim by a worker and how it ended (`trial_attempts`, schema 7;
/// see `store/SCHEMA.md`). A claim given back on an orderly stop did not count and has none.
#[derive(Debug, Clone, PartialEq, Serialize)]
pub struct TrialAttempt {
    /// 1 for the first claim, 2 for the next, …
    pub attempt: u32,
    pub worker: Option<String>,
    pub started: Option<String>,
    /// `None` while it runs.
    pub ended: Option<String>,
    /// Its worker's last heartbeat, recorded when it ended.
    pub heartbeat: Option<String>,
    pub outcome: AttemptOutcome,
    /// The failure kind when this attempt failed the trial.
    pub failure: Option<FailureKind>,
}

/// A trial handed to a worker by [`crate::Store::claim_next`] or [`crate::Store::claim_trial`].
#[derive(Debug, Clone, PartialEq)]
pub struct ClaimedTrial {
    pub id: TrialId,
    pub run_id: RunId,
    pub arch: ArchSpec,
    pub arch_hash: String,
    pub proxy_key: String,
    /// 1 on the first claim, 2 after one requeue, …
    pub attempt: u32,
    /// Which of the run's training settings to train it under ([`NewTrial::setting`]).
    pub setting: u32,
}

impl ClaimedTrial {
    /// What this worker's writes name ([`crate::Store::complete_claim`] and the others).
    pub fn claim(&self) -> Claim {
        Claim { trial: self.id, attempt: self.attempt }
    }
}

/// One attempt at a trial: what every write of a worker names, so that a worker that was
/// presumed dead and comes back cannot overwrite a newer attempt's result.
///
/// A write fenced on a claim changes the trial only while it is running under that attempt
/// (`state = 'running' AND attempts = attempt`); once the lease expired and the trial was
/// requeued, or claimed again, or finished, the write is [`Fenced::Superseded`].
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash, Serialize)]
pub struct Claim {
    pub trial: TrialId,
    /// The trial's `attempts` when it was claimed.
    pub attempt: u32,
}

impl fmt::Display for Claim {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        write!(f, "trial {} attempt {}", self.trial, self.attempt)
    }
}

/// What a fenced write did.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Fenced {
    /// The write was stored.
    Written,
    /// The attempt was reclaimed or the trial finished since: nothing changed.
    Superseded,
}

impl Fenced {
    /// True for [`Fenced::Written`].
    pub fn is_written(self) -> bool {
        self == Fenced::Written
    }
}

/// Which trials [`crate::Store::trials`] returns, and in what order.
#[derive(Debug, Clone, Default)]
pub struct TrialFilter {
    pub state: Option<TrialState>,
    /// Only failed trials of this kind.
    pub failure: Option<FailureKind>,
    pub max_flops: Option<u64>,
    pub min_accuracy: Option<f64>,
    pub sort: TrialSort,
    /// At most this many (after sorting).
    pub limit: Option<u64>,
}

/// Trial orderings. Best first for reward and accuracy, smallest first for cost and time.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Default)]
pub enum TrialSort {
    /// In the order they were queued.
    #[default]
    Id,
    Reward,
    Accuracy,
    Flops,
    Params,
    /// Training seconds.
    Time,
}

impl TrialSort {
    /// The fixed SQL for each ordering: sort keys are never taken from user text.
    pub(crate) fn order_by(self) -> &'static str {
        // `x IS NULL` first keeps unmeasured trials last on every backend.
        match self {
            TrialSort::Id => "id ASC",
            TrialSort::Reward => "reward IS NULL, reward DESC, id ASC",
            TrialSort::Accuracy => "accuracy IS NULL, accuracy DESC, id ASC",
            TrialSort::Flops => "flops ASC, id ASC",
            TrialSort::Params => "params ASC, id ASC",
            TrialSort::Time => "seconds IS NULL, seconds ASC, id ASC",
        }
    }
}

/// Trials put back or given up by [`crate::Store::requeue_expired`] or
/// [`crate::Store::recover_running`].
#[derive(Debug, Clone, Default, PartialEq, Eq)]
pub struct Requeued {
    /// Back to pending, for another worker to claim.
    pub pending: Vec<TrialId>,
    /// Failed as [`FailureKind::Lost`], because they had already used up their attempts (likely
    /// the trial itself kills its worker, e.g. by running the machine out of memory).
    pub failed: Vec<TrialId>,
}

/// A controller checkpoint: everything needed to resume the controller exactly.
#[derive(Debug, Clone, PartialEq)]
pub struct Checkpoint {
    pub run_id: RunId,
    pub step: i64,
    /// The controller's own state, opaque to the store.
    pub state: serde_json::Value,
    /// Large binary state (policy weights), when the controller has any.
    pub blob: Option<Vec<u8>>,
    pub created: String,
}

/// A point of the compound-scaling grid (EfficientNet §3.3) to record.
#[derive(Debug, Clone, Copy, PartialEq)]
pub struct NewCompoundPoint {
    /// Depth multiplier base α.
    pub alpha: f64,
    /// Width multiplier base β.
    pub beta: f64,
    /// Resolution multiplier base γ.
    pub gamma: f64,
    pub phi: f64,
    /// The trial that trains the scaled network, once queued.
    pub trial_id: Option<TrialId>,
}

/// A compound grid point as stored, with its trial's result when there is one.
#[derive(Debug, Clone, PartialEq, Serialize)]
pub struct CompoundPoint {
    pub id: i64,
    pub run_id: RunId,
    pub alpha: f64,
    pub beta: f64,
    pub gamma: f64,
    pub phi: f64,
    /// α·β²·γ², the FLOPS growth per unit of φ (≈ 2 on the paper's grid).
    pub flops_factor: f64,
    pub trial_id: Option<TrialId>,
    pub trial_state: Option<TrialState>,
    pub accuracy: Option<f64>,
    pub reward: Option<f64>,
    pub params: Option<u64>,
    pub flops: Option<u64>,
    pub created: String,
}

/// A scaled model (B1…B7 or any φ) to record.
#[derive(Debug, Clone)]
pub struct NewScaledModel {
    pub name: String,
    pub phi: f64,
    pub width: f64,
    pub depth: f64,
    pub resolution_multiplier: f64,
    /// The scaled architecture (its resolution and dropout are stored in their own columns too).
    pub arch: ArchSpec,
}

/// A scaled model as stored.
#[derive(Debug, Clone, PartialEq, Serialize)]
pub struct ScaledModel {
    pub id: i64,
    pub run_id: RunId,
    pub name: String,
    pub phi: f64,
    pub width: f64,
    pub depth: f64,
    pub resolution_multiplier: f64,
    pub resolution: u32,
    pub dropout: f64,
    pub arch_json: String,
    pub arch_hash: String,
    pub blocks: Vec<String>,
    pub params: u64,
    pub flops: u64,
    pub created: String,
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn failure_kinds_have_one_name_in_sql_serde_and_text() {
        let names: Vec<&str> = FailureKind::ALL.iter().map(|k| k.as_str()).collect();
        assert_eq!(
            names,
            ["diverged", "out_of_memory", "time_limit", "invalid", "rejected", "lost", "error"]
        );
        for &kind in FailureKind::ALL {
            assert_eq!(kind.as_str().parse::<FailureKind>().ok(), Some(kind));
            assert_eq!(kind.to_string(), kind.as_str());
            let json = serde_json::to_string(&kind).ok();
            assert_eq!(json, Some(format!("\"{}\"", kind.as_str())));
            let back: Option<FailureKind> = json.and_then(|j| serde_json::from_str(&j).ok());
            assert_eq!(back, Some(kind));
        }
    }

    #[test]
    fn an_unknown_failure_kind_is_an_error_that_lists_the_known_ones() {
        for text in ["", "OOM", "Diverged", "out-of-memory"] {
            match text.parse::<FailureKind>() {
                Err(StoreError::InvalidValue { reason, .. }) => {
                    assert!(reason.contains("out_of_memory") && reason.contains("lost"), "{reason}")
                }
                other => panic!("{text:?}: expected InvalidValue, got {other:?}"),
            }
        }
    }
}
