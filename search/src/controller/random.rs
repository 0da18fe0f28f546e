//! Uniform random search.

use effnas_space::SearchSpace;
use rand::SeedableRng;
use rand_chacha::ChaCha8Rng;
use serde_json::Value;

use super::{from_state, Controller, Observation, Result, RngState};

/// Draws every candidate uniformly from the space; ignores rewards.
pub struct RandomController {
    space: SearchSpace,
    seed: u64,
    rng: ChaCha8Rng,
}

impl RandomController {
    pub fn new(space: SearchSpace, seed: u64) -> Self {
        RandomController { space, seed, rng: ChaCha8Rng::seed_from_u64(seed) }
    }
}

impl Controller for RandomController {
    fn name(&self) -> &'static str {
        "random"
    }

    fn propose(&mut self, n: usize) -> Result<Vec<Vec<usize>>> {
        Ok((0..n).map(|_| self.space.sample_tokens(&mut self.rng)).collect())
    }

    fn observe(&mut self, _observations: &[Observation]) -> Result<()> {
        Ok(())
    }

    fn state(&self) -> Result<Value> {
        serde_json::to_value(RngState::capture(self.seed, &self.rng))
            .map_err(|e| super::ControllerError::BadState(e.to_string()))
    }

    fn restore(&mut self, state: &Value) -> Result<()> {
        let state: RngState = from_state(state)?;
        self.seed = state.seed;
        self.rng = state.rebuild()?;
        Ok(())
    }
}
