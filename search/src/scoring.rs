//! The reward of a trial, on one basis everywhere (MnasNet §3, Eq. 2; EfficientNet §4):
//! `ACC(m) × [X(m) / T]^w`, where `m` is the **searched or named network itself** (at its own
//! resolution and number of classes) and ACC is the accuracy its proxy reached. MnasNet trains a
//! proxy but scores the real model's cost; so do `search`, `compound` and `train`, and the
//! proxy network's own cost is kept beside the result (the trial's `extra`).
//!
//! X is multiply-adds ([`Metric::Flops`], from the exact cost model) or the measured batch-1
//! latency of that same network ([`Metric::LatencyMs`]), as the run's objective says.

use effnas_evaluator::score::{Metric, Objective};
use effnas_space::{cost, ArchSpec};

/// Why a reward cannot be computed.
#[derive(Debug, Clone, PartialEq, thiserror::Error)]
pub enum ScoreError {
    /// A latency objective needs the network's latency, and none was measured.
    #[error("the objective is on latency and the network's latency was not measured")]
    MissingLatency,
}

/// What the reward's X was for one network.
#[derive(Debug, Clone, Copy, PartialEq)]
pub struct Score {
    pub reward: f64,
    /// The value of the objective's metric (multiply-adds or milliseconds).
    pub value: f64,
}

/// The reward of `network` (the searched or named network, not the proxy) at `accuracy`;
/// `latency_ms` is that network's measured latency, needed for a latency objective.
pub fn score(
    objective: &Objective,
    accuracy: f64,
    network: &ArchSpec,
    latency_ms: Option<f64>,
) -> Result<Score, ScoreError> {
    let value = match objective.metric {
        Metric::Flops => cost(network).macs as f64,
        Metric::LatencyMs => latency_ms.ok_or(ScoreError::MissingLatency)?,
    };
    Ok(Score { reward: objective.reward(accuracy, value), value })
}

#[cfg(test)]
mod tests {
    use effnas_evaluator::score::Constraint;
    use effnas_space::presets;

    use super::*;

    #[test]
    fn flops_reward_uses_the_network_s_own_multiply_adds() {
        let b0 = presets::efficientnet(0).expect("b0");
        let macs = cost(&b0).macs as f64;
        assert!((macs - 385.8e6).abs() < 0.1e6, "{macs}");
        let got = score(&Objective::default(), 0.88, &b0, None).expect("scored");
        assert_eq!(got.value, macs);
        assert!((got.reward - 0.88 * (macs / 400e6).powf(-0.07)).abs() < 1e-12);
    }

    #[test]
    fn latency_reward_needs_a_latency() {
        let b0 = presets::efficientnet(0).expect("b0");
        let objective = Objective { metric: Metric::LatencyMs, target: 75.0, constraint: Constraint::Hard };
        assert_eq!(score(&objective, 0.8, &b0, None), Err(ScoreError::MissingLatency));
        let got = score(&objective, 0.8, &b0, Some(150.0)).expect("scored");
        assert_eq!(got.value, 150.0);
        assert!((got.reward - 0.4).abs() < 1e-12, "{}", got.reward);
    }
}
