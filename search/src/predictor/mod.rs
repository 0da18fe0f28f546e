//! An accuracy predictor fitted on measured architectures (issue 12, item 3): features from the
//! architecture, a regressor chosen among a few by Kendall's τ, a JSON model file, and an
//! evaluator that answers a search's trials with the prediction.
//!
//! The data are either Accel-NASBench's ImageNet trainings (A. Ahmad et al., 2024; the benchmark's
//! authors fit surrogates the same way, reporting Kendall's τ of their XGBoost and LightGBM
//! surrogates on held-out trainings) or the complete trials of any effnas run. Both go through
//! the same features ([`Features`]), which depend on the search space only:
//!
//! - per block and decision with more than one choice (operator/expansion, kernel, SE, layers,
//!   …): the choice index, and for decisions of three or more choices also one indicator per
//!   choice (ridge regression needs them; trees can use either);
//! - the network's parameters and multiply-adds in millions, from effnas's cost model.
//!
//! Fitting ([`fit`]): duplicates (same architecture hash) are averaged into one sample, a seeded
//! shuffle holds out a fraction (20% by default) that nothing is fitted or chosen on; of the
//! rest, 20% validate the candidates ([`CANDIDATES`]: ridge regression and gradient-boosted
//! trees), the candidate with the best validation τ is refitted on the whole training part, and
//! the held-out figures (τ, Spearman's ρ, RMSE, n) are those of that final model.

pub mod evaluate;
pub mod ridge;
pub mod screen;
pub mod trees;

use std::collections::BTreeMap;
use std::path::{Path, PathBuf};

use effnas_space::{arch_hash, ArchSpec, SearchSpace};
use rand::seq::SliceRandom;
use rand::SeedableRng;
use rand_chacha::ChaCha8Rng;
use serde::{Deserialize, Serialize};
use sha2::{Digest, Sha256};

use crate::stats::{kendall_tau_b, spearman_rho};
use ridge::Ridge;
use trees::{BoostParams, Boosted};

/// The `format` field of a model file.
pub const FORMAT: &str = "effnas-predictor";
/// The model file version this effnas writes and reads.
pub const VERSION: u32 = 1;

/// Why a predictor cannot be fitted, read or used. Every message is one line.
#[derive(Debug, thiserror::Error)]
pub enum PredictorError {
    #[error("{}: cannot read: {source}", path.display())]
    Read { path: PathBuf, source: std::io::Error },
    #[error("{}: not an effnas predictor model: {reason}", path.display())]
    Format { path: PathBuf, reason: String },
    #[error("{}: the model was fitted on space {fitted:?}, not on the searched space {searched:?}", path.display())]
    Space { path: PathBuf, fitted: String, searched: String },
    #[error("{}: the file changed since the run started (sha256 {found}, the run's {expected})", path.display())]
    Changed { path: PathBuf, expected: String, found: String },
    #[error("not a member of the {space} space the predictor was fitted on: {reason}")]
    NotMember { space: String, reason: String },
    #[error("cannot fit: {0}")]
    Fit(String),
}

/// The names of a block's six decisions, in token order (`effnas_space`'s token layout:
/// operator, kernel, SE ratio, skip, channels, layers).
const DECISIONS: [&str; 6] = ["ops", "kernels", "se_ratios", "skips", "channels", "layers"];

/// The features of the members of one search space.
#[derive(Debug, Clone, PartialEq)]
pub struct Features {
    space: SearchSpace,
    names: Vec<String>,
}

impl Features {
    pub fn new(space: SearchSpace) -> Self {
        let mut names = Vec::new();
        for (position, &count) in space.choice_counts().iter().enumerate() {
            let name = format!("b{}.{}", position / DECISIONS.len(), DECISIONS[position % DECISIONS.len()]);
            if count > 1 {
                names.push(name.clone());
            }
            if count > 2 {
                names.extend((0..count).map(|c| format!("{name}={c}")));
            }
        }
        names.extend(["params_m".to_owned(), "madds_m".to_owned()]);
        Features { space, names }
    }

    pub fn space(&self) -> &SearchSpace {
        &self.space
    }

    pub fn names(&self) -> &[String] {
        &self.names
    }

    /// The feature row of `arch`, or why it is not a member of the space.
    pub fn row(&self, arch: &ArchSpec) -> Result<Vec<f64>, PredictorError> {
        let not_member =
            |reason: String| PredictorError::NotMember { space: self.space.name.clone(), reason };
        let tokens = self.space.encode(arch).map_err(|e| not_member(e.to_string()))?;
        let mut row = Vec::with_capacity(self.names.len());
        for (&count, &token) in self.space.choice_counts().iter().zip(&tokens) {
            if count > 1 {
                row.push(token as f64);
            }
            if count > 2 {
                row.extend((0..count).map(|c| f64::from(u8::from(c == token))));
            }
        }
        let cost = effnas_space::checked_cost(arch).map_err(|e| not_member(e.to_string()))?;
        row.extend([cost.params as f64 / 1e6, cost.macs as f64 / 1e6]);
        Ok(row)
    }
}

/// A fitted regressor.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
#[serde(tag = "kind", rename_all = "kebab-case")]
pub enum Regressor {
    Ridge(Ridge),
    Boosted(Boosted),
}

impl Regressor {
    pub fn predict(&self, row: &[f64]) -> f64 {
        match self {
            Regressor::Ridge(m) => m.predict(row),
            Regressor::Boosted(m) => m.predict(row),
        }
    }

    fn check(&self, features: usize) -> Result<(), String> {
        match self {
            Regressor::Ridge(m) => m.check(features),
            Regressor::Boosted(m) => m.check(features),
        }
    }
}

/// A candidate regressor, fitted by [`Candidate::fit`].
#[derive(Debug, Clone, Copy)]
pub enum Candidate {
    Ridge { lambda: f64 },
    Boosted(BoostParams),
}

/// The candidates [`fit`] chooses among.
pub const CANDIDATES: [(&str, Candidate); 3] = [
    ("ridge", Candidate::Ridge { lambda: 1.0 }),
    (
        "gbrt-depth3",
        Candidate::Boosted(BoostParams {
            trees: 300,
            depth: 3,
            learning_rate: 0.05,
            subsample: 0.8,
            min_leaf: 5,
        }),
    ),
    (
        "gbrt-depth5",
        Candidate::Boosted(BoostParams {
            trees: 200,
            depth: 5,
            learning_rate: 0.05,
            subsample: 0.8,
            min_leaf: 5,
        }),
    ),
];

impl Candidate {
    pub fn fit(self, x: &[Vec<f64>], y: &[f64], seed: u64) -> Regressor {
        match self {
            Candidate::Ridge { lambda } => Regressor::Ridge(Ridge::fit(x, y, lambda)),
            Candidate::Boosted(params) => Regressor::Boosted(Boosted::fit(x, y, params, seed)),
        }
    }
}

/// How well predictions rank and match measured values.
#[derive(Debug, Clone, Copy, PartialEq, Serialize, Deserialize)]
pub struct Figures {
    pub n: usize,
    pub kendall_tau: f64,
    pub spearman_rho: f64,
    pub rmse: f64,
}

impl Figures {
    /// The figures of `predicted` against `measured`; τ and ρ are 0 where undefined (a constant
    /// prediction ranks nothing).
    pub fn of(predicted: &[f64], measured: &[f64]) -> Self {
        let n = measured.len();
        let rmse = (predicted.iter().zip(measured).map(|(p, m)| (p - m).powi(2)).sum::<f64>()
            / n.max(1) as f64)
            .sqrt();
        Figures {
            n,
            kendall_tau: kendall_tau_b(predicted, measured).unwrap_or(0.0),
            spearman_rho: spearman_rho(predicted, measured).unwrap_or(0.0),
            rmse,
        }
    }
}

/// One candidate's validation figures (on part of the training data).
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct CandidateReport {
    pub name: String,
    pub validation: Figures,
}

/// A model file: the chosen regressor, its features, the space and how well it predicted.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct PredictorModel {
    pub format: String,
    pub version: u32,
    /// What the model was fitted on (`accel-nasbench`, or a database's run).
    pub source: String,
    /// What it predicts.
    pub target: String,
    pub space: SearchSpace,
    /// The feature names, in row order (checked against the space's on load).
    pub features: Vec<String>,
    /// The chosen candidate's name.
    pub chosen: String,
    pub model: Regressor,
    /// Distinct architectures fitted on (the training part), and in the data.
    pub trained_on: usize,
    pub samples: usize,
    pub holdout_fraction: f64,
    pub seed: u64,
    /// The chosen model on the held-out part.
    pub holdout: Figures,
    pub candidates: Vec<CandidateReport>,
}

/// What to fit a predictor on.
pub struct FitData {
    pub source: String,
    pub target: String,
    pub space: SearchSpace,
    /// Architectures with their measured value (duplicates are averaged).
    pub samples: Vec<(ArchSpec, f64)>,
}

/// Fits a predictor (see the module doc). Errors: too few distinct architectures, a sample
/// outside the space, a non-finite value.
pub fn fit(data: FitData, holdout: f64, seed: u64) -> Result<PredictorModel, PredictorError> {
    if !(holdout > 0.0 && holdout < 1.0) {
        return Err(PredictorError::Fit(format!("the held-out fraction {holdout} is not between 0 and 1")));
    }
    let features = Features::new(data.space.clone());
    let (x, y) = distinct_rows(&features, &data.samples)?;
    let held = ((x.len() as f64) * holdout).round() as usize;
    if held < 3 || x.len() - held < 10 {
        return Err(PredictorError::Fit(format!(
            "{} distinct architectures are too few: at least 3 held out and 10 to fit on",
            x.len()
        )));
    }
    let mut order: Vec<usize> = (0..x.len()).collect();
    order.shuffle(&mut ChaCha8Rng::seed_from_u64(seed));
    let (test, train) = order.split_at(held);
    let pick = |rows: &[usize]| -> (Vec<Vec<f64>>, Vec<f64>) {
        (rows.iter().map(|&r| x[r].clone()).collect(), rows.iter().map(|&r| y[r]).collect())
    };
    let (train_x, train_y) = pick(train);
    let (test_x, test_y) = pick(test);
    // Validation: the first fifth of the (shuffled) training part.
    let validation = (train.len() / 5).max(2);
    let (val_x, fit_x) = train_x.split_at(validation);
    let (val_y, fit_y) = train_y.split_at(validation);
    let candidates: Vec<CandidateReport> = CANDIDATES
        .iter()
        .map(|(name, candidate)| {
            let model = candidate.fit(fit_x, fit_y, seed);
            let predicted: Vec<f64> = val_x.iter().map(|r| model.predict(r)).collect();
            CandidateReport { name: (*name).to_owned(), validation: Figures::of(&predicted, val_y) }
        })
        .collect();
    let best = (0..candidates.len())
        .max_by(|&a, &b| {
            candidates[a].validation.kendall_tau.total_cmp(&candidates[b].validation.kendall_tau)
        })
        .unwrap_or(0);
    let model = CANDIDATES[best].1.fit(&train_x, &train_y, seed);
    let predicted: Vec<f64> = test_x.iter().map(|r| model.predict(r)).collect();
    Ok(PredictorModel {
        format: FORMAT.to_owned(),
        version: VERSION,
        source: data.source,
        target: data.target,
        space: data.space,
        features: features.names().to_vec(),
        chosen: CANDIDATES[best].0.to_owned(),
        model,
        trained_on: train.len(),
        samples: x.len(),
        holdout_fraction: holdout,
        seed,
        holdout: Figures::of(&predicted, &test_y),
        candidates,
    })
}

/// The feature rows and targets of the distinct architectures among `samples` (the mean
/// value of an architecture measured more than once), in hash order.
fn distinct_rows(
    features: &Features,
    samples: &[(ArchSpec, f64)],
) -> Result<(Vec<Vec<f64>>, Vec<f64>), PredictorError> {
    let mut by_hash: BTreeMap<String, (Vec<f64>, f64, usize)> = BTreeMap::new();
    for (arch, value) in samples {
        if !value.is_finite() {
            return Err(PredictorError::Fit(format!(
                "architecture {} has the value {value}",
                arch_hash(arch)
            )));
        }
        let hash = arch_hash(arch);
        if let Some(entry) = by_hash.get_mut(&hash) {
            entry.1 += value;
            entry.2 += 1;
        } else {
            by_hash.insert(hash, (features.row(arch)?, *value, 1));
        }
    }
    Ok(by_hash.into_values().map(|(row, sum, count)| (row, sum / count as f64)).unzip())
}

/// Accel-NASBench's trainings as data: each recorded member of the `accel-nasbench` space
/// with its top-1 validation accuracy (a fraction; the mean of a member trained more than once).
pub fn accel_nasbench_data() -> Result<FitData, PredictorError> {
    let space = SearchSpace::accel_nasbench();
    let index = crate::benchmarks::lookup::accel_index().map_err(PredictorError::Fit)?;
    let mut samples = Vec::with_capacity(index.len());
    for (member, runs) in index {
        let arch = space.decode(&member.tokens()).map_err(|e| PredictorError::Fit(e.to_string()))?;
        samples.push((arch, runs.iter().sum::<f64>() / runs.len() as f64));
    }
    Ok(FitData {
        source: "accel-nasbench".to_owned(),
        target: "ImageNet top-1 validation accuracy (fraction) of Accel-NASBench's proxified training"
            .to_owned(),
        space,
        samples,
    })
}

impl PredictorModel {
    /// Reads and checks a model file; also returns the file's sha256 (hex), which names the
    /// model in proxy keys.
    pub fn load(path: &Path) -> Result<(Self, String), PredictorError> {
        let bytes =
            std::fs::read(path).map_err(|source| PredictorError::Read { path: path.to_owned(), source })?;
        let digest: String = Sha256::digest(&bytes).iter().map(|b| format!("{b:02x}")).collect();
        let format = |reason: String| PredictorError::Format { path: path.to_owned(), reason };
        let value: serde_json::Value = serde_json::from_slice(&bytes).map_err(|e| format(e.to_string()))?;
        if value.get("format").and_then(|f| f.as_str()) != Some(FORMAT) {
            return Err(format(format!("no \"format\": \"{FORMAT}\" field")));
        }
        match value.get("version").and_then(|v| v.as_u64()) {
            Some(v) if v == u64::from(VERSION) => {}
            other => return Err(format(format!("version {other:?}, this effnas reads {VERSION}"))),
        }
        let model: PredictorModel = serde_json::from_value(value).map_err(|e| format(e.to_string()))?;
        model.space.validate().map_err(|e| format(format!("space: {e}")))?;
        if Features::new(model.space.clone()).names() != model.features {
            return Err(format("its features are not those of its space".to_owned()));
        }
        model.model.check(model.features.len()).map_err(|e| format(format!("model: {e}")))?;
        Ok((model, digest))
    }

    /// The model's features, to predict with.
    pub fn features(&self) -> Features {
        Features::new(self.space.clone())
    }

    /// The predicted value of `arch`, or why it has none.
    pub fn predict(&self, features: &Features, arch: &ArchSpec) -> Result<f64, PredictorError> {
        Ok(self.model.predict(&features.row(arch)?))
    }
}

#[cfg(test)]
#[allow(clippy::unwrap_used)] // a failing unwrap is a failing test
mod tests {
    use super::*;

    #[test]
    fn a_known_function_of_the_features_is_ranked_correctly() {
        // Accuracy grows with every block's kernel token and its layers: each candidate can
        // learn that; the fitted model must rank held-out members by it.
        let space = SearchSpace::accel_nasbench();
        let mut rng = ChaCha8Rng::seed_from_u64(5);
        let truth = |tokens: &[usize]| -> f64 {
            tokens.chunks(6).map(|c| 0.01 * c[1] as f64 + 0.004 * c[5] as f64).sum::<f64>() + 0.5
        };
        let samples: Vec<(ArchSpec, f64)> = (0..300)
            .map(|_| {
                let tokens = space.sample_tokens(&mut rng);
                (space.decode(&tokens).unwrap(), truth(&tokens))
            })
            .collect();
        let data = FitData { source: "synthetic".into(), target: "t".into(), space: space.clone(), samples };
        let model = fit(data, 0.2, 1).unwrap();
        assert_eq!(model.samples, 300);
        assert_eq!(model.holdout.n, 60);
        assert!(model.holdout.kendall_tau > 0.9, "{:?}", model.holdout);
        let features = model.features();
        let low = space.decode(&vec![0; space.num_tokens()]).unwrap();
        let high: Vec<usize> = (0..space.num_tokens()).map(|i| if i % 6 == 1 { 1 } else { 0 }).collect();
        let high = space.decode(&high).unwrap();
        assert!(model.predict(&features, &high).unwrap() > model.predict(&features, &low).unwrap() + 0.03);
        let other = effnas_space::presets::preset("mnasnet-a1").unwrap();
        assert!(matches!(model.predict(&features, &other), Err(PredictorError::NotMember { .. })));

        // Saved, loaded and used by a run; a changed file is refused.
        let dir = tempfile::tempdir().unwrap();
        let path = dir.path().join("m.json");
        std::fs::write(&path, serde_json::to_string(&model).unwrap()).unwrap();
        // JSON numbers read back to within an ulp or so (serde_json's default float parsing).
        let loaded = PredictorModel::load(&path).unwrap().0;
        let (a, b) = (loaded.predict(&features, &high).unwrap(), model.predict(&features, &high).unwrap());
        assert!((a - b).abs() < 1e-12 && loaded.chosen == model.chosen, "{a} vs {b}");
        let settings = evaluate::PredictorSettings::new(&path, &space).unwrap();
        assert!(evaluate::PredictorEvaluator::new(&settings, 1).is_ok());
        let other_space = evaluate::PredictorSettings::new(&path, &SearchSpace::default_space());
        assert!(matches!(other_space, Err(PredictorError::Space { .. })));
        std::fs::write(&path, serde_json::to_string(&PredictorModel { seed: 9, ..model }).unwrap()).unwrap();
        let changed = evaluate::PredictorEvaluator::new(&settings, 1).err().unwrap();
        assert!(changed.to_string().contains("the file changed since the run started"), "{changed}");
    }

    #[test]
    fn too_few_architectures_are_refused() {
        let space = SearchSpace::accel_nasbench();
        let arch = space.decode(&vec![0; space.num_tokens()]).unwrap();
        let samples = vec![(arch, 0.5); 40];
        let data = FitData { source: "s".into(), target: "t".into(), space, samples };
        let error = fit(data, 0.2, 0).unwrap_err();
        assert!(error.to_string().contains("1 distinct architectures are too few"), "{error}");
    }
}
