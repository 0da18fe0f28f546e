//! `--screen predictor:MODEL --screen-keep F`: a search that asks its controller for about 1/F
//! candidates per free slot, trains the fraction F that a predictor ranks highest by predicted
//! reward, and records the others as failed trials of kind `rejected` whose message gives their
//! predicted reward and rank. So every proposal is in the database (`effnas trials --failure
//! rejected` lists the screened ones), `--trials` counts proposals (trained and screened alike,
//! as with `--max-flops`), and the controller learns nothing from a screened candidate, as from
//! any failed one.

use effnas_evaluator::score::Objective;
use effnas_space::ArchSpec;
use serde::{Deserialize, Serialize};

use super::evaluate::PredictorSettings;
use super::{Features, PredictorError, PredictorModel};
use crate::scoring::score;

/// The screen of a search: stored with its plan.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct ScreenPlan {
    pub predictor: PredictorSettings,
    /// The fraction of proposals trained (above 0, at most 1).
    pub keep: f64,
}

/// A loaded screen.
pub struct Screen {
    keep: f64,
    key: String,
    model: PredictorModel,
    features: Features,
}

impl Screen {
    /// Loads the plan's model (refused when the file changed since the run started).
    pub fn load(plan: &ScreenPlan) -> Result<Self, PredictorError> {
        let evaluator = super::evaluate::PredictorEvaluator::new(&plan.predictor, 1)?;
        let model = evaluator.into_model();
        let features = model.features();
        Ok(Screen { keep: plan.keep, key: plan.predictor.key(), model, features })
    }

    /// How many proposals to ask for when `wanted` candidates can start and `budget` trials
    /// are left: `wanted / keep`, within the budget.
    pub fn batch(&self, wanted: usize, budget: usize) -> usize {
        ((wanted as f64 / self.keep).ceil() as usize).min(budget).max(wanted.min(budget))
    }

    /// For each of `archs` (one batch of proposals), `None` to train it or the reason it was
    /// screened out: all but the best `keep × batch` (at least 1, at most `wanted`) by
    /// predicted reward under `objective`; ties keep the earlier proposal.
    pub fn screen(
        &self,
        archs: &[ArchSpec],
        wanted: usize,
        objective: &Objective,
    ) -> Result<Vec<Option<String>>, String> {
        let mut predicted = Vec::with_capacity(archs.len());
        for arch in archs {
            let accuracy =
                self.model.predict(&self.features, arch).map_err(|e| e.to_string())?.clamp(0.0, 1.0);
            let reward = score(objective, accuracy, arch, None).map_err(|e| e.to_string())?.reward;
            predicted.push((reward, accuracy));
        }
        let mut order: Vec<usize> = (0..archs.len()).collect();
        order.sort_by(|&a, &b| predicted[b].0.total_cmp(&predicted[a].0).then(a.cmp(&b)));
        let kept = ((self.keep * archs.len() as f64).round() as usize).clamp(1, wanted.max(1));
        let mut reasons = vec![None; archs.len()];
        for (rank, &i) in order.iter().enumerate().skip(kept) {
            let (reward, accuracy) = predicted[i];
            reasons[i] = Some(format!(
                "screened out by {}: predicted reward {reward:.4} (accuracy {accuracy:.4}), rank {} of {} in its batch; --screen-keep {} trains the best {kept}",
                self.key,
                rank + 1,
                archs.len(),
                self.keep
            ));
        }
        Ok(reasons)
    }
}
