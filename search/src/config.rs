//! The configurations stored with each run (`runs.config`) and read back by `--resume`.
//!
//! These are their own serde types, not the command line's flag structs: renaming a flag never
//! breaks an old run. Each carries a `version`; a configuration stored before versions existed
//! reads as version 1 (same fields, no `version` key), and one written by a newer effnas is
//! refused rather than misread.

use effnas_space::{ArchSpec, Compound, GridSpec};
use serde::de::DeserializeOwned;
use serde::{Deserialize, Serialize};
use serde_json::Value;

use crate::finalists::FinalistPlan;
use crate::orchestrator::SearchPlan;
use crate::proxy::ProxySettings;

/// The version this effnas writes.
pub const CONFIG_VERSION: u32 = 2;

/// Why a stored configuration cannot be read.
#[derive(Debug, thiserror::Error)]
pub enum ConfigError {
    #[error("stored configuration version {found} is newer than this effnas reads ({CONFIG_VERSION}): upgrade effnas")]
    Newer { found: u32 },
    #[error("stored configuration: {0}")]
    Format(#[from] serde_json::Error),
}

/// How a run's trials are evaluated.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "lowercase")]
pub enum EvaluatorKind {
    /// Proxy training with libtorch.
    Train,
    /// The synthetic oracle (`crate::oracle`).
    Oracle,
    /// Look-ups in a published benchmark (`crate::benchmarks::lookup`); searches only.
    Benchmark,
    /// A fitted accuracy predictor (`crate::predictor`); searches only.
    Predictor,
}

fn before_versions() -> u32 {
    1
}

/// A search run's stored configuration: the plan and how to evaluate.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct SearchConfig {
    #[serde(default = "before_versions")]
    pub version: u32,
    pub plan: SearchPlan,
    pub evaluator: EvaluatorKind,
    /// The proxy task, for the `train` evaluator.
    pub proxy: Option<ProxySettings>,
    /// The benchmark and its mode, for the `benchmark` evaluator.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub lookup: Option<crate::benchmarks::lookup::LookupSettings>,
    /// The model file, for the `predictor` evaluator.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub predictor: Option<crate::predictor::evaluate::PredictorSettings>,
    /// The best trials re-trained with several seeds once the search is done; `None` for runs
    /// stored before finalists existed, or started with `--finalists 0`.
    #[serde(default)]
    pub finalists: Option<FinalistPlan>,
    /// The proxies of rungs 1, 2, … of a multi-fidelity search ([`crate::asha`]; rung 0 is
    /// `proxy`); empty for a search that trains every candidate once.
    #[serde(default)]
    pub rungs: Vec<ProxySettings>,
}

/// A compound run's stored configuration.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct CompoundConfig {
    #[serde(default = "before_versions")]
    pub version: u32,
    /// The base network scaled at every point.
    pub base: ArchSpec,
    /// How the base was given (a preset, a spec, `trial N`).
    pub base_spec: String,
    pub grid: GridSpec,
    pub phi: f64,
    /// The points trained (the chosen grid points and any given with `--point`).
    pub points: Vec<Compound>,
    pub evaluator: EvaluatorKind,
    pub proxy: Option<ProxySettings>,
    pub workers: usize,
    pub seed: u64,
    /// The best points re-trained with several seeds once the grid is done (see
    /// [`SearchConfig::finalists`]).
    #[serde(default)]
    pub finalists: Option<FinalistPlan>,
}

/// Reads a stored configuration of any version this effnas knows.
pub fn read_stored<T: DeserializeOwned + Versioned>(stored: &Value) -> Result<T, ConfigError> {
    let found = stored.get("version").and_then(Value::as_u64).unwrap_or(1);
    if found > u64::from(CONFIG_VERSION) {
        return Err(ConfigError::Newer { found: u32::try_from(found).unwrap_or(u32::MAX) });
    }
    // Versions 1 and 2 have the same fields; a later format change converts here.
    let mut config: T = serde_json::from_value(stored.clone())?;
    config.set_version(CONFIG_VERSION);
    Ok(config)
}

/// A stored configuration with a version field.
pub trait Versioned {
    fn set_version(&mut self, version: u32);
}

impl Versioned for SearchConfig {
    fn set_version(&mut self, version: u32) {
        self.version = version;
    }
}

impl Versioned for CompoundConfig {
    fn set_version(&mut self, version: u32) {
        self.version = version;
    }
}

#[cfg(test)]
mod tests {
    use serde_json::json;

    use super::*;

    /// A search configuration as effnas stored it before versions (flag-shaped proxy fields).
    fn version_1() -> Value {
        json!({
            "plan": {
                "space": effnas_space::SearchSpace::resolve("default").expect("space"),
                "strategy": {"strategy": "random"},
                "trials": 3, "seed": 0, "max_flops": null,
                "objective": {"metric": "flops", "target": 400e6, "constraint": {"kind": "soft", "w": -0.07}},
                "proxy_key": "fashion-mnist-e2-n2000-r32-w0.25-d0.5-0123456789ab",
                "workers": 2
            },
            "evaluator": "train",
            "proxy": {"dataset": "fashion-mnist", "epochs": 2, "train_images": 2000, "validation_images": 1000,
                      "resolution": 32, "width": 0.25, "depth": 0.5, "batch_size": 64, "lr": 0.1,
                      "device": "cpu", "time_limit": null}
        })
    }

    #[test]
    fn a_configuration_stored_before_versions_reads_as_the_current_one() {
        let config: SearchConfig = read_stored(&version_1()).expect("version 1 reads");
        assert_eq!(config.version, CONFIG_VERSION);
        assert_eq!(config.evaluator, EvaluatorKind::Train);
        // Stored before the precision setting: those runs trained in fp32.
        let fp32 = crate::proxy::PrecisionSetting::Fp32;
        let stored = ProxySettings { precision: fp32, epochs: 2, ..ProxySettings::default() };
        assert_eq!(config.proxy, Some(stored));
        let again: SearchConfig =
            read_stored(&serde_json::to_value(&config).expect("writes")).expect("reads back");
        assert_eq!(again, config);
    }

    #[test]
    fn a_newer_configuration_is_refused() {
        let mut stored = version_1();
        stored["version"] = json!(CONFIG_VERSION + 1);
        let error = read_stored::<SearchConfig>(&stored).expect_err("newer");
        assert!(matches!(error, ConfigError::Newer { .. }), "{error}");
    }
}
