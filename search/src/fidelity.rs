//! Proxy fidelity: how far a search can trust its cheap proxy.
//!
//! MnasNet (§4) and EfficientNet (§4) rank candidates by a short proxy training, not by the
//! accuracy the network would reach when trained properly. Whether that ranking means anything is
//! measured the way the NAS literature does it: train the same architectures under the cheap proxy
//! with several seeds and under a reference setting (longer, more images, larger), then report
//!
//! - the noise floor: how much one architecture's cheap accuracy moves with the seed alone
//!   ([`NoiseFloor`]); a difference between two candidates smaller than that is a tie;
//! - the rank agreement between the cheap and the reference ranking: Kendall's τ and Spearman's ρ
//!   with percentile-bootstrap 95% intervals, and the overlap of the top k ([`crate::stats`]);
//! - the cost of each setting (seconds and images per trial).
//!
//! A fidelity run stores the list of [`TrainingSetting`]s in its configuration (the cheap proxy
//! once per seed, then the reference once per reference seed); each trial names the setting it
//! trains under (`trials.setting`), and worker processes train it under that setting
//! ([`crate::recipe::Recipe::for_trial`]). Measurements of the same architecture under the same
//! proxy key are reused, so several fidelity runs (one per cheap proxy) share one set of reference
//! trainings.

use std::collections::HashMap;

use effnas_evaluator::score::Objective;
use effnas_space::{arch_hash, cost, ArchSpec};
use effnas_store::{BlockingStore, NewTrial, RunId, Trial, TrialId, TrialState};
use serde::{Deserialize, Serialize};

use crate::config::{Versioned, CONFIG_VERSION};
use crate::orchestrator::Result;
use crate::proxy::ProxySettings;
use crate::stats::{
    bootstrap_interval, kendall_tau_b, spearman_rho, top_k_overlap, Interval, NoiseFloor, PairStatistic,
};

/// The resolution a fidelity run's proxies are relative to: the space's own (MnasNet's 224), as
/// for a search, so the same architecture under the same proxy has the same key in both.
pub const REFERENCE_RESOLUTION: u32 = effnas_space::arch::defaults::RESOLUTION;

/// Bootstrap resamples behind every interval of a report.
pub const BOOTSTRAP_RESAMPLES: usize = 2000;
/// The confidence level of the intervals.
pub const CONFIDENCE: f64 = 0.95;

/// What a training setting stands for in the comparison.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "lowercase")]
pub enum Role {
    /// The proxy a search would use.
    Cheap,
    /// The stand-in for the real thing: trained much longer.
    Reference,
}

impl Role {
    pub fn as_str(self) -> &'static str {
        match self {
            Role::Cheap => "cheap",
            Role::Reference => "reference",
        }
    }
}

/// One way a fidelity run trains its architectures: a proxy and a seed.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct TrainingSetting {
    pub role: Role,
    pub seed: u64,
    pub proxy: ProxySettings,
}

impl TrainingSetting {
    /// The proxy key its trials are stored under (and reused by).
    pub fn key(&self) -> String {
        self.proxy.key(self.seed, REFERENCE_RESOLUTION)
    }
}

/// An architecture a fidelity run measures: a member of its space, named when it was included by
/// name (`efficientnet-b0`, `mnasnet-a1`).
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct Candidate {
    pub arch: ArchSpec,
    pub label: Option<String>,
}

/// A fidelity run's stored configuration.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct FidelityConfig {
    pub version: u32,
    /// The space the architectures were sampled from, as given.
    pub space: String,
    /// Seed of the sampling.
    pub seed: u64,
    /// Every architecture measured, sampled ones and included ones, without duplicates.
    pub architectures: Vec<Candidate>,
    /// The cheap setting for each seed, then the reference for each reference seed.
    pub settings: Vec<TrainingSetting>,
    /// What turns an accuracy into a reward (computed on the searched network's own cost).
    pub objective: Objective,
    /// Worker slots.
    pub workers: usize,
}

impl Versioned for FidelityConfig {
    fn set_version(&mut self, version: u32) {
        self.version = version;
    }
}

/// Why a fidelity run cannot be planned.
#[derive(Debug, thiserror::Error)]
pub enum FidelityError {
    #[error("a fidelity run needs at least {needed} {what}, got {got}")]
    TooFew { what: &'static str, needed: usize, got: usize },
    // Boxed: proxy errors carry data-set and device errors, large next to the other variant.
    #[error("{0}")]
    Proxy(Box<crate::proxy::ProxyError>),
}

impl FidelityConfig {
    /// A configuration with the cheap proxy under each of `cheap_seeds` and the reference under
    /// each of `reference_seeds`, checked.
    pub fn new(
        space: String,
        seed: u64,
        architectures: Vec<Candidate>,
        (cheap, cheap_seeds): (ProxySettings, &[u64]),
        (reference, reference_seeds): (ProxySettings, &[u64]),
        objective: Objective,
        workers: usize,
    ) -> std::result::Result<Self, FidelityError> {
        let too_few = |what, needed, got: usize| Err(FidelityError::TooFew { what, needed, got });
        if architectures.len() < 3 {
            return too_few("architectures (rank correlations need three)", 3, architectures.len());
        }
        if cheap_seeds.len() < 2 {
            return too_few("cheap seeds (the noise floor needs two)", 2, cheap_seeds.len());
        }
        if reference_seeds.is_empty() {
            return too_few("reference seeds", 1, 0);
        }
        for proxy in [&cheap, &reference] {
            proxy.validate().map_err(|e| FidelityError::Proxy(Box::new(e)))?;
        }
        let setting =
            |role, proxy: &ProxySettings, seed| TrainingSetting { role, seed, proxy: proxy.clone() };
        let settings = cheap_seeds
            .iter()
            .map(|&s| setting(Role::Cheap, &cheap, s))
            .chain(reference_seeds.iter().map(|&s| setting(Role::Reference, &reference, s)))
            .collect();
        Ok(FidelityConfig {
            version: CONFIG_VERSION,
            space,
            seed,
            architectures,
            settings,
            objective,
            workers,
        })
    }

    /// Indices of the settings with `role`, in order.
    pub fn settings_of(&self, role: Role) -> Vec<u32> {
        (0..self.settings.len() as u32).filter(|&i| self.settings[i as usize].role == role).collect()
    }
}

/// How a fidelity run's trials were queued.
#[derive(Debug, Clone, Copy, Default, PartialEq, Eq, Serialize)]
pub struct Queued {
    /// Trials left for the workers.
    pub to_train: usize,
    /// Trials whose result was copied from an earlier identical measurement.
    pub reused: usize,
}

/// Queues one trial per architecture and setting, setting by setting (every cheap trial before
/// any reference trial, so the noise floor is known first). A measurement of the same
/// architecture under the same key is reused instead of trained again. Every trial after the
/// first setting names the architecture's first-setting trial as its parent.
pub fn queue(store: &BlockingStore, run: RunId, config: &FidelityConfig) -> Result<Queued> {
    let mut queued = Queued::default();
    let mut first: Vec<Option<TrialId>> = vec![None; config.architectures.len()];
    for (setting, training) in config.settings.iter().enumerate() {
        let key = training.key();
        for (index, candidate) in config.architectures.iter().enumerate() {
            let mut trial = NewTrial::new(candidate.arch.clone(), key.clone()).under_setting(setting as u32);
            if let Some(parent) = first[index] {
                trial = trial.with_parent(parent);
            }
            let id = match store.find_measured(&arch_hash(&candidate.arch), &key)? {
                Some(source) => {
                    queued.reused += 1;
                    store.insert_reused_trial(run, &trial, source.id)?
                }
                None => {
                    queued.to_train += 1;
                    store.insert_trial(run, &trial)?
                }
            };
            first[index].get_or_insert(id);
        }
    }
    Ok(queued)
}

/// A correlation with its bootstrap interval, or why it has none.
#[derive(Debug, Clone, PartialEq, Serialize)]
pub struct Correlation {
    pub estimate: Option<f64>,
    pub low: Option<f64>,
    pub high: Option<f64>,
    /// Bootstrap replicates the interval rests on (a resample with a constant side is skipped).
    pub resamples: usize,
    /// Why there is no value (too few architectures, a constant ranking).
    pub undefined: Option<String>,
}

impl Correlation {
    fn of(x: &[f64], y: &[f64], statistic: PairStatistic, seed: u64) -> Self {
        match bootstrap_interval(x, y, statistic, BOOTSTRAP_RESAMPLES, CONFIDENCE, seed) {
            Ok(Interval { low, high, estimate, resamples_used }) => Correlation {
                estimate: Some(estimate),
                low: Some(low),
                high: Some(high),
                resamples: resamples_used,
                undefined: None,
            },
            Err(error) => Correlation {
                // The point estimate may exist where the interval does not.
                estimate: statistic(x, y).ok(),
                low: None,
                high: None,
                resamples: 0,
                undefined: Some(error.to_string()),
            },
        }
    }
}

/// How well one ranking of the architectures agrees with another.
#[derive(Debug, Clone, PartialEq, Serialize)]
pub struct Agreement {
    /// What is compared with what, in words.
    pub comparison: String,
    /// Architectures with both values.
    pub architectures: usize,
    pub kendall_tau: Correlation,
    pub spearman_rho: Correlation,
    /// How many of the top k under the first ranking are in the top k under the second.
    pub top_k_overlap: Option<usize>,
    pub top_k: usize,
}

impl Agreement {
    fn of(comparison: String, pairs: &[(f64, f64)], top_k: usize) -> Self {
        let (x, y): (Vec<f64>, Vec<f64>) = pairs.iter().copied().unzip();
        Agreement {
            comparison,
            architectures: pairs.len(),
            kendall_tau: Correlation::of(&x, &y, kendall_tau_b, 1),
            spearman_rho: Correlation::of(&x, &y, spearman_rho, 2),
            top_k_overlap: top_k_overlap(&x, &y, top_k).ok().filter(|_| !pairs.is_empty()),
            top_k: top_k.min(pairs.len()),
        }
    }
}

/// The cost of one setting's trainings.
#[derive(Debug, Clone, PartialEq, Serialize)]
pub struct SettingCost {
    pub setting: u32,
    pub role: Role,
    pub seed: u64,
    pub proxy_key: String,
    pub epochs: u32,
    pub train_images: usize,
    pub resolution: u32,
    pub width: f64,
    pub depth: f64,
    pub complete: usize,
    pub failed: usize,
    pub pending: usize,
    /// Mean training seconds of the trials trained here (reused ones excluded: their time was
    /// spent elsewhere).
    pub mean_seconds: Option<f64>,
    /// Mean images a trial trained on (epochs × images).
    pub mean_images_seen: Option<f64>,
}

/// One architecture's measurements.
#[derive(Debug, Clone, PartialEq, Serialize)]
pub struct ArchitectureRow {
    pub arch_hash: String,
    pub label: Option<String>,
    pub blocks: Vec<String>,
    pub params: u64,
    pub flops: u64,
    /// Accuracy under each cheap seed, in setting order (`None`: not complete).
    pub cheap_accuracy: Vec<Option<f64>>,
    pub reference_accuracy: Vec<Option<f64>>,
    pub cheap_reward: Vec<Option<f64>>,
    pub reference_reward: Vec<Option<f64>>,
}

impl ArchitectureRow {
    fn mean(values: &[Option<f64>]) -> Option<f64> {
        let all: Option<Vec<f64>> = values.iter().copied().collect();
        all.filter(|v| !v.is_empty()).map(|v| v.iter().sum::<f64>() / v.len() as f64)
    }

    /// Mean cheap accuracy over the seeds, when every seed completed.
    pub fn cheap_mean(&self) -> Option<f64> {
        Self::mean(&self.cheap_accuracy)
    }

    /// Mean reference accuracy over the reference seeds, when every one completed.
    pub fn reference_mean(&self) -> Option<f64> {
        Self::mean(&self.reference_accuracy)
    }
}

/// Noise and rank agreement for one measure (accuracy or reward).
#[derive(Debug, Clone, PartialEq, Serialize)]
pub struct MeasureReport {
    /// The cheap proxy trained once (what a search sees) against the reference.
    pub one_seed: Agreement,
    /// The mean of the cheap seeds against the reference.
    pub seed_mean: Agreement,
    /// The first cheap seed against the second: the ceiling any proxy ranking has.
    pub seed_vs_seed: Agreement,
}

/// Spread across seeds, as fractions of accuracy.
#[derive(Debug, Clone, Copy, PartialEq, Serialize)]
pub struct Noise {
    /// Architectures with every seed complete.
    pub architectures: usize,
    /// Mean over architectures of the standard deviation across seeds.
    pub mean_std: f64,
    pub max_std: f64,
    /// Mean absolute difference between the first two seeds.
    pub mean_abs_pair_diff: f64,
}

impl Noise {
    fn of(rows: &[Vec<Option<f64>>]) -> Option<Noise> {
        let complete: Vec<Vec<f64>> =
            rows.iter().filter_map(|seeds| seeds.iter().copied().collect()).collect();
        let floor = NoiseFloor::from_seeds(&complete).ok()?;
        Some(Noise {
            architectures: complete.len(),
            mean_std: floor.mean_std,
            max_std: floor.max_std,
            mean_abs_pair_diff: floor.mean_abs_pair_diff,
        })
    }
}

/// Everything `effnas fidelity` reports about a run.
#[derive(Debug, Clone, PartialEq, Serialize)]
pub struct FidelityReport {
    pub settings: Vec<SettingCost>,
    pub architectures: Vec<ArchitectureRow>,
    /// Seed noise of the cheap proxy's accuracy.
    pub cheap_noise: Option<Noise>,
    /// Seed noise of the reference's accuracy (with two or more reference seeds).
    pub reference_noise: Option<Noise>,
    pub accuracy: MeasureReport,
    pub reward: MeasureReport,
    /// How many times more images a reference trial trains on than a cheap one.
    pub reference_cost_ratio: Option<f64>,
}

impl FidelityReport {
    /// The report over a fidelity run's trials (complete ones count; others are listed as
    /// missing), with the top `top_k` compared.
    pub fn new(config: &FidelityConfig, trials: &[Trial], top_k: usize) -> Self {
        let by_arch: HashMap<String, usize> =
            config.architectures.iter().enumerate().map(|(i, c)| (arch_hash(&c.arch), i)).collect();
        let cheap = config.settings_of(Role::Cheap);
        let reference = config.settings_of(Role::Reference);
        let mut table: HashMap<(usize, u32), &Trial> = HashMap::new();
        for trial in trials.iter().filter(|t| t.state == TrialState::Complete) {
            if let Some(&index) = by_arch.get(&trial.arch_hash) {
                table.insert((index, trial.setting), trial);
            }
        }
        let value = |index, setting, pick: fn(&Trial) -> Option<f64>| {
            table.get(&(index, setting)).and_then(|t| pick(t))
        };
        let architectures: Vec<ArchitectureRow> = config
            .architectures
            .iter()
            .enumerate()
            .map(|(index, candidate)| {
                let c = cost(&candidate.arch);
                let column =
                    |settings: &[u32], pick| settings.iter().map(|&s| value(index, s, pick)).collect();
                ArchitectureRow {
                    arch_hash: arch_hash(&candidate.arch),
                    label: candidate.label.clone(),
                    blocks: candidate.arch.blocks.iter().map(ToString::to_string).collect(),
                    params: c.params,
                    flops: c.macs,
                    cheap_accuracy: column(&cheap, |t| t.accuracy),
                    reference_accuracy: column(&reference, |t| t.accuracy),
                    cheap_reward: column(&cheap, |t| t.reward),
                    reference_reward: column(&reference, |t| t.reward),
                }
            })
            .collect();
        let settings = setting_costs(config, trials);
        let ratio = match (
            settings.iter().find(|s| s.role == Role::Cheap),
            settings.iter().find(|s| s.role == Role::Reference),
        ) {
            (Some(c), Some(r)) => {
                let images = |s: &SettingCost| f64::from(s.epochs) * s.train_images as f64;
                Some(images(r) / images(c))
            }
            _ => None,
        };
        FidelityReport {
            cheap_noise: Noise::of(
                &architectures.iter().map(|a| a.cheap_accuracy.clone()).collect::<Vec<_>>(),
            ),
            reference_noise: Noise::of(
                &architectures.iter().map(|a| a.reference_accuracy.clone()).collect::<Vec<_>>(),
            ),
            accuracy: measure(
                &architectures,
                |a| (&a.cheap_accuracy, &a.reference_accuracy),
                top_k,
                "accuracy",
            ),
            reward: measure(&architectures, |a| (&a.cheap_reward, &a.reference_reward), top_k, "reward"),
            architectures,
            settings,
            reference_cost_ratio: ratio,
        }
    }
}

type Columns<'a> = (&'a Vec<Option<f64>>, &'a Vec<Option<f64>>);

/// The three agreements for one measure.
fn measure(
    rows: &[ArchitectureRow],
    columns: fn(&ArchitectureRow) -> Columns<'_>,
    top_k: usize,
    what: &str,
) -> MeasureReport {
    let reference = |r: &ArchitectureRow| ArchitectureRow::mean(columns(r).1);
    let pairs = |x: &dyn Fn(&ArchitectureRow) -> Option<f64>,
                 y: &dyn Fn(&ArchitectureRow) -> Option<f64>|
     -> Vec<(f64, f64)> { rows.iter().filter_map(|r| Some((x(r)?, y(r)?))).collect() };
    let first = |r: &ArchitectureRow| columns(r).0.first().copied().flatten();
    let second = |r: &ArchitectureRow| columns(r).0.get(1).copied().flatten();
    let mean = |r: &ArchitectureRow| ArchitectureRow::mean(columns(r).0);
    MeasureReport {
        one_seed: Agreement::of(
            format!("cheap {what} (first seed) vs reference"),
            &pairs(&first, &reference),
            top_k,
        ),
        seed_mean: Agreement::of(
            format!("cheap {what} (mean of seeds) vs reference"),
            &pairs(&mean, &reference),
            top_k,
        ),
        seed_vs_seed: Agreement::of(
            format!("cheap {what}: first seed vs second seed"),
            &pairs(&first, &second),
            top_k,
        ),
    }
}

/// Counts and mean cost of each setting's trials.
fn setting_costs(config: &FidelityConfig, trials: &[Trial]) -> Vec<SettingCost> {
    config
        .settings
        .iter()
        .enumerate()
        .map(|(index, setting)| {
            let index = index as u32;
            let mine: Vec<&Trial> = trials.iter().filter(|t| t.setting == index).collect();
            let count = |state| mine.iter().filter(|t| t.state == state).count();
            let trained: Vec<&Trial> = mine
                .iter()
                .copied()
                .filter(|t| t.state == TrialState::Complete && t.reused_from.is_none())
                .collect();
            let mean = |values: Vec<f64>| {
                (!values.is_empty()).then(|| values.iter().sum::<f64>() / values.len() as f64)
            };
            let images = |t: &Trial| t.extra.as_ref()?.get("images_seen")?.as_f64();
            SettingCost {
                setting: index,
                role: setting.role,
                seed: setting.seed,
                proxy_key: setting.key(),
                epochs: setting.proxy.epochs,
                train_images: setting.proxy.train_images,
                resolution: setting.proxy.resolution,
                width: setting.proxy.width,
                depth: setting.proxy.depth,
                complete: count(TrialState::Complete),
                failed: count(TrialState::Failed),
                pending: count(TrialState::Pending) + count(TrialState::Running),
                mean_seconds: mean(trained.iter().filter_map(|t| t.seconds).collect()),
                mean_images_seen: mean(trained.iter().filter_map(|t| images(t)).collect()),
            }
        })
        .collect()
}
