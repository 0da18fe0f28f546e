//! Multi-fidelity search by asynchronous successive halving (ASHA: L. Li et al., "A System for
//! Massively Parallel Hyperparameter Tuning", MLSys 2020; successive halving: Jamieson &
//! Talwalkar, AISTATS 2016).
//!
//! Every candidate the controller proposes trains at rung 0, the cheapest proxy. Rung `r + 1`
//! trains on η times the images of rung `r`. Whenever a result comes in, every trial that is
//! among the best ⌊n/η⌋ of the `n` finished trials of its rung, and has not been promoted yet,
//! is promoted: its architecture is queued again at the next rung, as a trial of the same run
//! under setting `r + 1` whose `parent_id` is the trial it came from. Nobody waits for a rung to
//! fill (the asynchronous part): a rung's top set is re-read as results arrive, so the budget goes
//! to the promising candidates while the controller keeps proposing new ones. A failed trial
//! ranks below every complete one.
//!
//! The controller observes each result with the rung it was measured at
//! ([`crate::controller::Observation::rung`]): a promoted candidate is observed again, with its
//! higher rung's reward.

use std::collections::HashSet;

use effnas_store::{Trial, TrialId, TrialState};
use serde::{Deserialize, Serialize};

/// The rungs of a multi-fidelity search, stored with its plan.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct Rungs {
    /// The promotion ratio: the best 1/η of a rung go on, and each rung trains on η times the
    /// images of the one below.
    pub eta: u32,
    /// The proxy keys of rungs 1, 2, … (rung 0's is the plan's own).
    pub keys: Vec<String>,
}

impl Rungs {
    /// How many rungs there are, rung 0 included.
    pub fn count(&self) -> u32 {
        1 + self.keys.len() as u32
    }

    /// The proxy key of rung `rung` ≥ 1.
    pub fn key(&self, rung: u32) -> Option<&str> {
        self.keys.get(usize::try_from(rung).ok()?.checked_sub(1)?).map(String::as_str)
    }
}

/// The trials to promote now, each with the rung it goes to: for every rung below the top, the
/// trials of that rung among its best ⌊n/η⌋ finished ones (`n` counts failures, which rank last)
/// that have no trial at the next rung yet. Trials under settings at or above `rungs` (finalists)
/// take no part.
pub fn promotable(trials: &[Trial], rungs: u32, eta: u32) -> Vec<(TrialId, u32)> {
    let promoted: HashSet<(TrialId, u32)> = trials
        .iter()
        .filter(|t| t.setting > 0 && t.setting < rungs)
        .filter_map(|t| Some((t.parent?, t.setting)))
        .collect();
    let mut out = Vec::new();
    for rung in 0..rungs.saturating_sub(1) {
        let mut finished: Vec<&Trial> = trials
            .iter()
            .filter(|t| t.setting == rung && matches!(t.state, TrialState::Complete | TrialState::Failed))
            .collect();
        let keep = finished.len() / eta.max(2) as usize;
        let score =
            |t: &Trial| if t.state == TrialState::Complete { t.reward.unwrap_or(f64::MIN) } else { f64::MIN };
        finished.sort_by(|a, b| score(b).total_cmp(&score(a)).then(a.id.cmp(&b.id)));
        for trial in finished.into_iter().take(keep) {
            if trial.state == TrialState::Complete && !promoted.contains(&(trial.id, rung + 1)) {
                out.push((trial.id, rung + 1));
            }
        }
    }
    out
}

/// Train images at each rung: rung 0's times ηʳ.
pub fn rung_images(base: usize, eta: u32, rung: u32) -> usize {
    let factor = u64::from(eta).saturating_pow(rung);
    usize::try_from((base as u64).saturating_mul(factor)).unwrap_or(usize::MAX)
}
