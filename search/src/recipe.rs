//! How a run's trials are evaluated, read from the run's stored configuration alone.
//!
//! A worker process (issue: workers as processes) is given a trial id and nothing else: the
//! evaluator, the proxy task with its seed and reference resolution, the latency measurement and
//! the objective that turns a measurement into a reward all come from the run's stored
//! configuration ([`crate::config`]). `effnas search` and `effnas compound` build their own
//! evaluators the same way, so a trial gives the same result whichever process trains it.

use std::sync::atomic::AtomicBool;
use std::sync::Arc;

use effnas_evaluator::score::Objective;
use effnas_space::{ArchSpec, SearchSpace};
use effnas_store::{Run, RunKind};

use crate::asha::Rungs;
use crate::benchmarks::lookup::{LookupEvaluator, LookupSettings};
use crate::config::{read_stored, CompoundConfig, ConfigError, EvaluatorKind, SearchConfig};
use crate::evaluate::{Evaluator, OracleEvaluator};
use crate::fidelity::{FidelityConfig, TrainingSetting, REFERENCE_RESOLUTION};
use crate::finalists::FinalistPlan;
use crate::orchestrator::SearchError;
use crate::predictor::evaluate::{PredictorEvaluator, PredictorSettings};
use crate::proxy::{ProxyError, ProxySettings};
use crate::train_evaluator::{Latency, TrainEvaluator};

/// Why a run's trials cannot be evaluated from its stored configuration.
#[derive(Debug, thiserror::Error)]
pub enum RecipeError {
    #[error("run {run}: {source}")]
    Config { run: i64, source: ConfigError },
    #[error("run {run}: {kind} runs have no evaluator (their trials are recorded by hand)")]
    NotEvaluable { run: i64, kind: RunKind },
    #[error("run {run} has no training setting {setting} (it has {count})")]
    NoSetting { run: i64, setting: u32, count: usize },
    #[error("the run's configuration has no proxy settings")]
    NoProxy,
    #[error("the run's configuration names no benchmark to look trials up in")]
    NoBenchmark,
    #[error("benchmark look-ups answer members of a search space; a compound run trains or uses the oracle")]
    BenchmarkCompound,
    #[error("benchmark: {0}")]
    Benchmark(String),
    #[error("the run's configuration names no predictor model")]
    NoPredictor,
    #[error(
        "a predictor scores members of the space it was fitted on; a compound run trains or uses the oracle"
    )]
    PredictorCompound,
    #[error("predictor: {0}")]
    Predictor(Box<crate::predictor::PredictorError>),
    // Boxed: these carry data-set and device errors, large next to the other variants.
    #[error("proxy task: {0}")]
    Proxy(Box<ProxyError>),
    #[error(transparent)]
    Start(Box<SearchError>),
}

/// What evaluates a run's trials.
#[derive(Debug, Clone)]
enum Method {
    /// The synthetic oracle for a search: similarity to a target member of the space.
    SearchOracle(SearchSpace),
    /// The synthetic oracle for a compound grid: closeness to the compound optimum.
    CompoundOracle(ArchSpec),
    /// Look-ups in a published benchmark, with the run's seed for drawn answers.
    Lookup { settings: LookupSettings, seed: u64 },
    /// A fitted predictor's accuracy.
    Predictor(PredictorSettings),
    /// Proxy training: the settings, the seed and the resolution the proxy's is relative to.
    Train { settings: ProxySettings, seed: u64, reference_resolution: u32, latency: Latency },
}

/// Everything needed to evaluate and score one run's trials.
#[derive(Debug, Clone)]
pub struct Recipe {
    method: Method,
    objective: Objective,
}

impl Recipe {
    /// A search run's recipe: its space or proxy, and its objective.
    pub fn for_search(config: &SearchConfig) -> Result<Self, RecipeError> {
        let plan = &config.plan;
        let method = match config.evaluator {
            EvaluatorKind::Oracle => Method::SearchOracle(plan.space.clone()),
            EvaluatorKind::Benchmark => Method::Lookup {
                settings: config.lookup.clone().ok_or(RecipeError::NoBenchmark)?,
                seed: plan.seed,
            },
            EvaluatorKind::Predictor => {
                Method::Predictor(config.predictor.clone().ok_or(RecipeError::NoPredictor)?)
            }
            EvaluatorKind::Train => Method::Train {
                settings: config.proxy.clone().ok_or(RecipeError::NoProxy)?,
                seed: plan.seed,
                // Search proxies scale resolution relative to the space's own (MnasNet's 224).
                reference_resolution: effnas_space::arch::defaults::RESOLUTION,
                latency: Latency::for_metric(plan.objective.metric),
            },
        };
        Ok(Recipe { method, objective: plan.objective })
    }

    /// A compound run's recipe: every point is scored by accuracy alone (the default
    /// objective's FLOPS term is the same for every point of a constrained grid).
    pub fn for_compound(config: &CompoundConfig) -> Result<Self, RecipeError> {
        let method = match config.evaluator {
            EvaluatorKind::Oracle => Method::CompoundOracle(config.base.clone()),
            EvaluatorKind::Benchmark => return Err(RecipeError::BenchmarkCompound),
            EvaluatorKind::Predictor => return Err(RecipeError::PredictorCompound),
            EvaluatorKind::Train => Method::Train {
                settings: config.proxy.clone().ok_or(RecipeError::NoProxy)?,
                seed: config.seed,
                reference_resolution: config.base.resolution,
                latency: Latency::Skip,
            },
        };
        Ok(Recipe { method, objective: Objective::default() })
    }

    /// The recipe of one training setting of a fidelity run (see [`crate::fidelity`]): that
    /// setting's proxy and seed, the run's objective.
    pub fn for_fidelity(setting: &TrainingSetting, objective: Objective) -> Self {
        let method = Method::Train {
            settings: setting.proxy.clone(),
            seed: setting.seed,
            reference_resolution: REFERENCE_RESOLUTION,
            latency: Latency::for_metric(objective.metric),
        };
        Recipe { method, objective }
    }

    /// The recipe stored with `run` for its first (or only) training setting, whatever its kind.
    pub fn for_run(run: &Run) -> Result<Self, RecipeError> {
        Self::for_trial(run, 0)
    }

    /// The recipe stored with `run` for trials under training setting `setting`
    /// (`trials.setting`): a search or compound run has its own (0) and one per finalist seed, a
    /// fidelity run one per proxy and seed.
    pub fn for_trial(run: &Run, setting: u32) -> Result<Self, RecipeError> {
        let config_error = |source| RecipeError::Config { run: run.id.0, source };
        let no_setting = |count| RecipeError::NoSetting { run: run.id.0, setting, count };
        match run.kind {
            RunKind::Search => {
                let config: SearchConfig = read_stored(&run.config).map_err(config_error)?;
                let plan = config.finalists.as_ref();
                let rungs = config.plan.rungs.as_ref().map_or(1, Rungs::count);
                let count = plan.map_or(rungs as usize, FinalistPlan::settings);
                let recipe = Self::for_search(&config)?;
                if (1..rungs).contains(&setting) {
                    return recipe.at_rung(config.rungs.get(setting as usize - 1)).ok_or(no_setting(count));
                }
                recipe.finalist(plan, setting).ok_or(no_setting(count))
            }
            RunKind::Compound => {
                let config: CompoundConfig = read_stored(&run.config).map_err(config_error)?;
                let plan = config.finalists.as_ref();
                Self::for_compound(&config)?.finalist(plan, setting).ok_or(no_setting(settings_of(plan)))
            }
            RunKind::Fidelity => {
                let config: FidelityConfig = read_stored(&run.config).map_err(config_error)?;
                let chosen =
                    config.settings.get(setting as usize).ok_or(no_setting(config.settings.len()))?;
                Ok(Self::for_fidelity(chosen, config.objective))
            }
            kind => Err(RecipeError::NotEvaluable { run: run.id.0, kind }),
        }
    }

    /// This recipe at a higher rung of a multi-fidelity search, whose proxy is `proxy` (the
    /// oracle scores every rung alike). `None` when a training run has no proxy for the rung.
    fn at_rung(mut self, proxy: Option<&ProxySettings>) -> Option<Self> {
        if let Method::Train { settings, .. } = &mut self.method {
            *settings = proxy?.clone();
        }
        Some(self)
    }

    /// This recipe for training setting `setting` of a run whose finalists follow `plan`:
    /// itself for setting 0, the final proxy with that setting's seed for a finalist (the oracle
    /// scores finalists as it scored the search). `None` for a setting the run does not have.
    fn finalist(mut self, plan: Option<&FinalistPlan>, setting: u32) -> Option<Self> {
        if setting == 0 {
            return Some(self);
        }
        let plan = plan?;
        let finalist_seed = plan.seed_of(setting)?;
        if let Method::Train { settings, seed, .. } = &mut self.method {
            if let Some(proxy) = &plan.proxy {
                *settings = proxy.clone();
            }
            *seed = finalist_seed;
        }
        Some(self)
    }

    /// The same recipe training on `device` (cpu, cuda, cuda:N) instead of the run's own: a
    /// worker trains on the device it was given. The device does not enter the proxy key.
    pub fn on_device(mut self, device: &str) -> Self {
        if let Method::Train { settings, .. } = &mut self.method {
            settings.device = device.to_owned();
        }
        self
    }

    /// Checks that this machine can evaluate the run: loads the proxy's data and checks its
    /// devices, then lets them go. A search runs it before it creates a run whose workers could
    /// only fail.
    pub fn check(&self) -> Result<(), RecipeError> {
        match &self.method {
            Method::Train { settings, seed, reference_resolution, .. } => {
                settings
                    .resolve(*seed, *reference_resolution)
                    .map_err(|e| RecipeError::Proxy(Box::new(e)))?;
            }
            Method::Lookup { settings, seed } => {
                LookupEvaluator::new(settings.clone(), *seed, 1).map_err(RecipeError::Benchmark)?;
            }
            Method::Predictor(settings) => {
                PredictorEvaluator::new(settings, 1).map_err(|e| RecipeError::Predictor(Box::new(e)))?;
            }
            Method::SearchOracle(_) | Method::CompoundOracle(_) => {}
        }
        Ok(())
    }

    /// What turns a measurement into the trial's reward.
    pub fn objective(&self) -> &Objective {
        &self.objective
    }

    /// An evaluator that works on `workers` trials at once. Loads the proxy's data and starts
    /// its workers; raising `stop` ends the trials in flight at their next step.
    pub fn evaluator(
        &self,
        workers: usize,
        stop: Option<Arc<AtomicBool>>,
    ) -> Result<Box<dyn Evaluator>, RecipeError> {
        Ok(match &self.method {
            Method::SearchOracle(space) => Box::new(OracleEvaluator::new(space, workers)),
            Method::CompoundOracle(base) => Box::new(OracleEvaluator::for_compound(base.clone(), workers)),
            Method::Lookup { settings, seed } => Box::new(
                LookupEvaluator::new(settings.clone(), *seed, workers).map_err(RecipeError::Benchmark)?,
            ),
            Method::Predictor(settings) => Box::new(
                PredictorEvaluator::new(settings, workers)
                    .map_err(|e| RecipeError::Predictor(Box::new(e)))?,
            ),
            Method::Train { settings, seed, reference_resolution, latency } => {
                let proxy = settings
                    .resolve(*seed, *reference_resolution)
                    .map_err(|e| RecipeError::Proxy(Box::new(e)))?;
                let evaluator = TrainEvaluator::new(proxy, workers, *latency, stop)
                    .map_err(|e| RecipeError::Start(Box::new(e)))?;
                Box::new(evaluator)
            }
        })
    }
}

/// How many training settings a search or compound run has.
fn settings_of(plan: Option<&FinalistPlan>) -> usize {
    plan.map_or(1, FinalistPlan::settings)
}
