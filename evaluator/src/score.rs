//! The search reward: `ACC(m) × [X(m) / T]^w` (MnasNet §3, Eq. 2; EfficientNet §4), where X is
//! multiply-adds (EfficientNet: T = 400M, w = −0.07) or measured latency (MnasNet: T = 75 ms).
//!
//! Soft constraint: w = α = β = −0.07 on both sides of T. Hard constraint: w = α = 0 at or under
//! T and w = β = −1 over it (MnasNet §3).

use serde::{Deserialize, Serialize};

/// What the constraint is on.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize, Deserialize, Default)]
#[serde(rename_all = "snake_case")]
pub enum Metric {
    /// Multiply-adds at the proxy's architecture resolution (the papers' "FLOPS").
    #[default]
    Flops,
    /// Median batch-1 latency in milliseconds, measured on the training device.
    LatencyMs,
}

/// Soft or hard constraint (MnasNet §3).
#[derive(Debug, Clone, Copy, PartialEq, Serialize, Deserialize)]
#[serde(rename_all = "snake_case", tag = "kind")]
pub enum Constraint {
    /// `w` on both sides of the target (MnasNet/EfficientNet use −0.07).
    Soft { w: f64 },
    /// 0 at or under the target, −1 over it.
    Hard,
}

impl Default for Constraint {
    fn default() -> Self {
        Constraint::Soft { w: -0.07 }
    }
}

/// The objective a search maximises.
#[derive(Debug, Clone, Copy, PartialEq, Serialize, Deserialize)]
pub struct Objective {
    pub metric: Metric,
    /// T, in multiply-adds or milliseconds according to `metric`.
    pub target: f64,
    pub constraint: Constraint,
}

impl Default for Objective {
    /// EfficientNet's: multiply-adds, T = 400M, soft w = −0.07.
    fn default() -> Self {
        Objective { metric: Metric::Flops, target: 400e6, constraint: Constraint::default() }
    }
}

impl Objective {
    /// The exponent that applies to a model whose metric is `value`.
    pub fn exponent(&self, value: f64) -> f64 {
        match self.constraint {
            Constraint::Soft { w } => w,
            Constraint::Hard if value <= self.target => 0.0,
            Constraint::Hard => -1.0,
        }
    }

    /// `accuracy × (value / target)^w`; 0 when the inputs are not meaningful (non-positive or
    /// non-finite), so a broken measurement never ranks first.
    pub fn reward(&self, accuracy: f64, value: f64) -> f64 {
        if !(accuracy.is_finite() && value.is_finite() && value > 0.0 && self.target > 0.0) {
            return 0.0;
        }
        accuracy * (value / self.target).powf(self.exponent(value))
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn soft_reward_matches_the_formula() {
        let objective = Objective::default();
        // At the target the factor is 1.
        assert!((objective.reward(0.8, 400e6) - 0.8).abs() < 1e-12);
        // Twice the FLOPS costs 2^-0.07 ≈ 0.9526 of the accuracy (MnasNet §3: a 2× cost
        // needs about 5% more accuracy to break even).
        let r = objective.reward(0.8, 800e6);
        assert!((r - 0.8 * 2f64.powf(-0.07)).abs() < 1e-12, "{r}");
        assert!((2f64.powf(-0.07) - 0.952_638).abs() < 1e-6);
        // Smaller models are rewarded under a soft constraint.
        assert!(objective.reward(0.8, 200e6) > 0.8);
    }

    #[test]
    fn hard_reward_is_flat_under_and_steep_over() {
        let objective = Objective { constraint: Constraint::Hard, ..Objective::default() };
        assert_eq!(objective.reward(0.7, 100e6), 0.7);
        assert_eq!(objective.reward(0.7, 400e6), 0.7);
        assert!((objective.reward(0.7, 800e6) - 0.35).abs() < 1e-12);
    }

    #[test]
    fn latency_objective_uses_the_same_formula() {
        let objective =
            Objective { metric: Metric::LatencyMs, target: 75.0, constraint: Constraint::default() };
        assert!((objective.reward(0.75, 75.0) - 0.75).abs() < 1e-12);
        assert!(objective.reward(0.75, 150.0) < 0.75);
    }

    #[test]
    fn meaningless_inputs_give_zero() {
        let objective = Objective::default();
        assert_eq!(objective.reward(f64::NAN, 1e6), 0.0);
        assert_eq!(objective.reward(0.9, 0.0), 0.0);
        assert_eq!(objective.reward(0.9, f64::INFINITY), 0.0);
    }
}
