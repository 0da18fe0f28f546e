//! Finalists: the best candidates of a search (or of a compound grid) re-trained with several
//! seeds before anyone names a winner.
//!
//! One proxy training is one draw from a noisy distribution: on the main job's proxy two seeds of
//! the same network differ by several points (see `experiments/proxy-fidelity/`), more than the
//! gaps between a search's top trials. So the top `count` trials by reward (distinct
//! architectures), plus the architectures the user included by name, are trained again under a
//! final setting with `seeds.len()` fresh seeds, and the run's answer is the finalist with the
//! best mean reward over those seeds, reported as mean ± standard deviation.
//!
//! Finalist trials belong to their run with `trials.setting` 1, 2, … (one per seed) and
//! `trials.parent_id` naming the trial whose architecture they repeat; workers train them under
//! that setting ([`crate::recipe::Recipe::for_trial`]).

use std::collections::{HashMap, HashSet};

use effnas_store::{BlockingStore, NewTrial, RunId, Trial, TrialId, TrialState};
use serde::{Deserialize, Serialize};

use crate::orchestrator::Result;
use crate::proxy::ProxySettings;
use crate::stats::Summary;

/// How a run's finalists are chosen and trained; stored in the run's configuration.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct FinalistPlan {
    /// The best trials by reward (distinct architectures) that become finalists.
    pub count: usize,
    /// One finalist training per seed; setting `i + 1` trains with `seeds[i]`.
    pub seeds: Vec<u64>,
    /// The final setting (the proxy's when not given); `None` for the oracle.
    pub proxy: Option<ProxySettings>,
    /// Architectures that are finalists whatever their reward (`--include`), by hash.
    #[serde(default)]
    pub include: Vec<String>,
    /// The setting of the first finalist seed: the settings below are the run's own (1 for a
    /// search or grid that trains once per candidate; the number of rungs for a multi-fidelity
    /// search).
    #[serde(default = "after_the_proxy")]
    pub first_setting: u32,
}

fn after_the_proxy() -> u32 {
    1
}

impl FinalistPlan {
    /// The seed of finalist setting `setting`; `None` for a setting of the run's own trials or
    /// one past the seeds.
    pub fn seed_of(&self, setting: u32) -> Option<u64> {
        let index = usize::try_from(setting.checked_sub(self.first_setting)?).ok()?;
        self.seeds.get(index).copied()
    }

    /// Settings of the run: its own and one per finalist seed.
    pub fn settings(&self) -> usize {
        self.first_setting as usize + self.seeds.len()
    }
}

/// The first finalist setting of a stored run (from its configuration's `finalists`); runs
/// without finalists have none (`u32::MAX`: no trial is a finalist training).
pub fn first_setting_of(run: &effnas_store::Run) -> u32 {
    match run.config.get("finalists").filter(|p| !p.is_null()) {
        Some(plan) => plan.get("first_setting").and_then(serde_json::Value::as_u64).map_or(1, |s| s as u32),
        None => u32::MAX,
    }
}

/// The trials that become finalists: complete trials of the run itself (settings below the
/// finalists'), one per architecture, ranked by the highest rung they reached and then by reward
/// there (a search without rungs has only rung 0), the best `count`, then any included
/// architecture not among them.
pub fn choose<'a>(trials: &'a [Trial], plan: &FinalistPlan) -> Vec<&'a Trial> {
    let mut measured: Vec<&Trial> = trials
        .iter()
        .filter(|t| t.setting < plan.first_setting && t.state == TrialState::Complete && t.reward.is_some())
        .collect();
    let reward = |t: &Trial| t.reward.unwrap_or(f64::MIN);
    measured.sort_by(|a, b| {
        b.setting.cmp(&a.setting).then(reward(b).total_cmp(&reward(a))).then(a.id.cmp(&b.id))
    });
    let mut seen = HashSet::new();
    let mut chosen: Vec<&Trial> = Vec::new();
    for trial in &measured {
        if chosen.len() >= plan.count {
            break;
        }
        if seen.insert(trial.arch_hash.as_str()) {
            chosen.push(trial);
        }
    }
    for hash in &plan.include {
        if let Some(&trial) = measured.iter().find(|t| &t.arch_hash == hash) {
            if seen.insert(trial.arch_hash.as_str()) {
                chosen.push(trial);
            }
        }
    }
    chosen
}

/// Queues the finalist trials of `chosen` that are not among the run's `trials` yet (so that a
/// resumed run queues nothing twice): one per seed, under the finalist settings, with the chosen
/// trial as parent, keyed by `key(setting)`. A measurement of the same architecture under the
/// same key is reused. Returns how many were queued.
pub fn queue(
    store: &BlockingStore,
    run: RunId,
    plan: &FinalistPlan,
    trials: &[Trial],
    chosen: &[&Trial],
    key: impl Fn(u32) -> String,
) -> Result<usize> {
    let existing: HashSet<(TrialId, u32)> =
        trials.iter().filter_map(|t| Some((t.parent?, t.setting))).collect();
    let mut queued = 0;
    for parent in chosen {
        let arch = parent.arch()?;
        for setting in plan.first_setting..plan.settings() as u32 {
            if existing.contains(&(parent.id, setting)) {
                continue;
            }
            let key = key(setting);
            let trial =
                NewTrial::new(arch.clone(), key.clone()).under_setting(setting).with_parent(parent.id);
            match store.find_measured(&parent.arch_hash, &key)? {
                Some(source) => store.insert_reused_trial(run, &trial, source.id)?,
                None => store.insert_trial(run, &trial)?,
            };
            queued += 1;
        }
    }
    Ok(queued)
}

/// One finalist: the trial it repeats and what its seeds measured.
#[derive(Debug, Clone, PartialEq, Serialize)]
pub struct Finalist {
    /// The search's trial whose architecture the finalist re-trains.
    pub trial: TrialId,
    pub arch_hash: String,
    pub blocks: Vec<String>,
    pub params: u64,
    pub flops: u64,
    /// The reward the search measured (one seed).
    pub search_reward: Option<f64>,
    /// Over the finalist seeds that completed; `None` until one has.
    pub reward: Option<SummaryView>,
    pub accuracy: Option<SummaryView>,
    /// Finalist trainings that completed, failed, and are still to come.
    pub complete: usize,
    pub failed: usize,
    pub pending: usize,
}

/// A [`Summary`] as reports show it.
#[derive(Debug, Clone, Copy, PartialEq, Serialize)]
pub struct SummaryView {
    pub mean: f64,
    /// Sample standard deviation; `None` with one seed.
    pub std: Option<f64>,
    pub seeds: usize,
}

impl From<Summary> for SummaryView {
    fn from(s: Summary) -> Self {
        SummaryView { mean: s.mean, std: s.std, seeds: s.seeds }
    }
}

impl std::fmt::Display for SummaryView {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        Summary { mean: self.mean, std: self.std, seeds: self.seeds }.fmt(f)
    }
}

/// The finalists of a run from its trials, best mean reward first: the first is the run's
/// answer (once its seeds have completed). Empty when the run has no finalist trials.
///
/// `first_setting` is the run's first finalist setting ([`first_setting_of`]): the trials under
/// it and above are finalist trainings.
pub fn finalists(trials: &[Trial], first_setting: u32) -> Vec<Finalist> {
    let by_id: HashMap<TrialId, &Trial> = trials.iter().map(|t| (t.id, t)).collect();
    let mut children: HashMap<TrialId, Vec<&Trial>> = HashMap::new();
    for trial in trials.iter().filter(|t| t.setting >= first_setting.max(1)) {
        if let Some(parent) = trial.parent {
            children.entry(parent).or_default().push(trial);
        }
    }
    let mut out: Vec<Finalist> = children
        .into_iter()
        .filter_map(|(parent, seeds)| {
            let parent = by_id.get(&parent)?;
            let values = |pick: fn(&Trial) -> Option<f64>| -> Option<SummaryView> {
                let values: Vec<f64> = seeds.iter().filter_map(|t| pick(t)).collect();
                Summary::of(&values).ok().map(SummaryView::from)
            };
            let count = |state| seeds.iter().filter(|t| t.state == state).count();
            Some(Finalist {
                trial: parent.id,
                arch_hash: parent.arch_hash.clone(),
                blocks: parent.blocks.clone(),
                params: parent.params,
                flops: parent.flops,
                search_reward: parent.reward,
                reward: values(|t| t.reward.filter(|_| t.state == TrialState::Complete)),
                accuracy: values(|t| t.accuracy.filter(|_| t.state == TrialState::Complete)),
                complete: count(TrialState::Complete),
                failed: count(TrialState::Failed),
                pending: count(TrialState::Pending) + count(TrialState::Running),
            })
        })
        .collect();
    let mean = |f: &Finalist| f.reward.map_or(f64::MIN, |r| r.mean);
    out.sort_by(|a, b| mean(b).total_cmp(&mean(a)).then(a.trial.cmp(&b.trial)));
    out
}
