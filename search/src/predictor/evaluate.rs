//! `--evaluator predictor:MODEL`: a search's trials answered with a fitted predictor's
//! accuracy instead of a training. The run stores the model file's path and sha256; every
//! process that answers the run's trials loads the file and refuses it if it changed, so all
//! the run's trials come from one model, whose digest is in their proxy key.

use std::collections::VecDeque;
use std::path::{Path, PathBuf};
use std::time::Duration;

use effnas_space::{ArchSpec, SearchSpace};
use effnas_store::{FailureKind, TrialId};
use serde::{Deserialize, Serialize};
use serde_json::json;

use super::{Features, PredictorError, PredictorModel};
use crate::evaluate::{Evaluation, Evaluator, Measured, Outcome, TrialFailure};
use crate::orchestrator::Result;

/// The model a run's trials are scored with: stored with the run.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct PredictorSettings {
    /// The model file, as given (made absolute when the run was created).
    pub path: PathBuf,
    /// Its sha256 when the run was created.
    pub sha256: String,
}

impl PredictorSettings {
    /// The settings of the model at `path` for a search of `space`: the file is read, checked
    /// and must have been fitted on `space`.
    pub fn new(path: &Path, space: &SearchSpace) -> std::result::Result<Self, PredictorError> {
        let (model, sha256) = PredictorModel::load(path)?;
        check_space(&model, path, space)?;
        let path = std::path::absolute(path).unwrap_or_else(|_| path.to_owned());
        Ok(PredictorSettings { path, sha256 })
    }

    /// The proxy key of the run's trials: the model's digest (its first 12 hex digits).
    pub fn key(&self) -> String {
        format!("predictor:{}", &self.sha256[..self.sha256.len().min(12)])
    }
}

fn check_space(
    model: &PredictorModel,
    path: &Path,
    space: &SearchSpace,
) -> std::result::Result<(), PredictorError> {
    if model.space != *space {
        return Err(PredictorError::Space {
            path: path.to_owned(),
            fitted: model.space.name.clone(),
            searched: space.name.clone(),
        });
    }
    Ok(())
}

/// Scores trials with a predictor; answers are ready at once.
pub struct PredictorEvaluator {
    model: PredictorModel,
    features: Features,
    key: String,
    capacity: usize,
    ready: VecDeque<Evaluation>,
}

impl PredictorEvaluator {
    /// Loads the run's model; an error when the file is gone, damaged or changed.
    pub fn new(settings: &PredictorSettings, capacity: usize) -> std::result::Result<Self, PredictorError> {
        let (model, found) = PredictorModel::load(&settings.path)?;
        if found != settings.sha256 {
            return Err(PredictorError::Changed {
                path: settings.path.clone(),
                expected: settings.sha256.clone(),
                found,
            });
        }
        let features = model.features();
        Ok(PredictorEvaluator {
            model,
            features,
            key: settings.key(),
            capacity: capacity.max(1),
            ready: VecDeque::new(),
        })
    }

    /// The loaded model.
    pub fn into_model(self) -> PredictorModel {
        self.model
    }

    fn answer(&self, arch: &ArchSpec) -> std::result::Result<Measured, TrialFailure> {
        let predicted = self
            .model
            .predict(&self.features, arch)
            .map_err(|e| TrialFailure::new(FailureKind::Invalid, e.to_string()))?;
        // Clamped to a fraction: a regressor can step a little outside the data's range.
        let accuracy = predicted.clamp(0.0, 1.0);
        let extra = json!({"evaluator": "predictor", "predictor": self.key, "model": self.model.chosen, "predicted": predicted});
        Ok(Measured { accuracy, loss: 1.0 - accuracy, extra, ..Measured::default() })
    }
}

impl Evaluator for PredictorEvaluator {
    fn capacity(&self) -> usize {
        self.capacity
    }

    fn submit(&mut self, trial: TrialId, arch: &ArchSpec) -> Result<()> {
        let outcome = match self.answer(arch) {
            Ok(measured) => Outcome::Measured(measured),
            Err(failure) => Outcome::Failed(failure),
        };
        self.ready.push_back(Evaluation { trial, outcome });
        Ok(())
    }

    fn next(&mut self, _timeout: Duration) -> Result<Option<Evaluation>> {
        Ok(self.ready.pop_front())
    }
}
