//! Controllers: what proposes the next architectures from what has been measured.
//!
//! All controllers work on a [`SearchSpace`]'s token sequences (six decisions per block) and
//! share one interface: `propose` candidates, `observe` their rewards as they come back (in any
//! order, failed ones as `None`), and `state`/`restore` a JSON checkpoint from which a resumed
//! run continues exactly. Every controller is seeded and deterministic given the same
//! observations.
//!
//! - [`random::RandomController`]: uniform sampling, the baseline every other must beat.
//! - [`evolution::EvolutionController`]: regularized (aging) evolution (Real et al., 2019).
//! - [`rl::RlController`]: the NASNet/MnasNet recurrent policy trained with PPO or REINFORCE
//!   (MnasNet §3).

use effnas_space::SearchSpace;
use rand_chacha::ChaCha8Rng;
use serde::{Deserialize, Serialize};
use serde_json::Value;

pub mod evolution;
pub mod random;
pub mod rl;

pub use evolution::{EvolutionConfig, EvolutionController};
pub use random::RandomController;
pub use rl::{RlAlgorithm, RlConfig, RlController};

/// What can go wrong inside a controller.
#[derive(Debug, thiserror::Error)]
pub enum ControllerError {
    #[error("controller checkpoint does not fit this controller: {0}")]
    BadState(String),
    #[error("libtorch in the RL controller: {0}")]
    Torch(#[from] tch::TchError),
}

pub type Result<T, E = ControllerError> = std::result::Result<T, E>;

/// A measured candidate: its tokens and its reward (`None` when training failed).
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct Observation {
    pub tokens: Vec<usize>,
    pub reward: Option<f64>,
    /// The fidelity rung it was measured at (0: the proxy every candidate trains at; higher:
    /// a promotion of a multi-fidelity search, [`crate::asha`], whose candidate was observed
    /// before at the rungs below).
    #[serde(default)]
    pub rung: u32,
}

/// The interface every search strategy implements.
pub trait Controller: Send {
    /// The strategy's name as the CLI spells it (`random`, `evolution`, `rl`).
    fn name(&self) -> &'static str;
    /// Up to `n` new candidates. They may repeat earlier ones; the orchestrator reuses
    /// measured results rather than training twice.
    fn propose(&mut self, n: usize) -> Result<Vec<Vec<usize>>>;
    /// Results of earlier proposals, in any order.
    fn observe(&mut self, observations: &[Observation]) -> Result<()>;
    /// A checkpoint of everything the controller's future depends on.
    fn state(&self) -> Result<Value>;
    /// Continues from a checkpoint written by `state` of the same strategy and space.
    fn restore(&mut self, state: &Value) -> Result<()>;
}

/// Which strategy, with its settings.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
#[serde(tag = "strategy", rename_all = "snake_case")]
pub enum Strategy {
    Random,
    Evolution(EvolutionConfig),
    Rl(RlConfig),
}

impl Strategy {
    pub fn name(&self) -> &'static str {
        match self {
            Strategy::Random => "random",
            Strategy::Evolution(_) => "evolution",
            Strategy::Rl(_) => "rl",
        }
    }

    /// A fresh controller for this strategy over `space`.
    pub fn build(&self, space: &SearchSpace, seed: u64) -> Result<Box<dyn Controller>> {
        Ok(match self {
            Strategy::Random => Box::new(RandomController::new(space.clone(), seed)),
            Strategy::Evolution(config) => {
                Box::new(EvolutionController::new(space.clone(), config.clone(), seed))
            }
            Strategy::Rl(config) => Box::new(RlController::new(space.clone(), config.clone(), seed)?),
        })
    }
}

/// The position of a seeded ChaCha stream, enough to continue it exactly.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct RngState {
    pub seed: u64,
    /// The word position as a decimal string: JSON numbers cannot hold a u128.
    pub word_pos: String,
}

impl RngState {
    pub fn capture(seed: u64, rng: &ChaCha8Rng) -> Self {
        RngState { seed, word_pos: rng.get_word_pos().to_string() }
    }

    pub fn rebuild(&self) -> Result<ChaCha8Rng> {
        use rand::SeedableRng;
        let position: u128 = self
            .word_pos
            .parse()
            .map_err(|_| ControllerError::BadState(format!("rng position {:?}", self.word_pos)))?;
        let mut rng = ChaCha8Rng::seed_from_u64(self.seed);
        rng.set_word_pos(position);
        Ok(rng)
    }
}

fn from_state<T: serde::de::DeserializeOwned>(state: &Value) -> Result<T> {
    serde_json::from_value(state.clone()).map_err(|e| ControllerError::BadState(e.to_string()))
}

fn check_tokens(space: &SearchSpace, tokens: &[usize]) -> Result<()> {
    let counts = space.choice_counts();
    if tokens.len() != counts.len() || tokens.iter().zip(&counts).any(|(t, n)| t >= n) {
        return Err(ControllerError::BadState(format!(
            "tokens {tokens:?} are not a member of space {:?}",
            space.name
        )));
    }
    Ok(())
}
