//! Regularized evolution (Real et al., 2019, "Regularized Evolution for Image Classifier
//! Architecture Search"): a population of the `population` most recent models; each child is a
//! one-decision mutation of the best of `sample_size` members drawn at random; the oldest member
//! dies when a child is added (aging), whatever its reward.

use std::collections::VecDeque;

use effnas_space::SearchSpace;
use rand::seq::IndexedRandom;
use rand::SeedableRng;
use rand_chacha::ChaCha8Rng;
use serde::{Deserialize, Serialize};
use serde_json::Value;

use super::{check_tokens, from_state, Controller, ControllerError, Observation, Result, RngState};

#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct EvolutionConfig {
    /// Models kept alive (P).
    pub population: usize,
    /// Tournament size (S).
    pub sample_size: usize,
}

impl Default for EvolutionConfig {
    fn default() -> Self {
        // Real et al. use P = 100, S = 25 for 20k models; a few hundred trials want a smaller
        // population so that selection starts early.
        EvolutionConfig { population: 32, sample_size: 8 }
    }
}

#[derive(Debug, Clone, Serialize, Deserialize)]
struct EvolutionState {
    rng: RngState,
    /// Oldest first: (tokens, reward); a failed model carries reward 0.
    population: VecDeque<(Vec<usize>, f64)>,
    /// Proposals not yet observed while the population was still filling up.
    warmup_proposed: usize,
}

pub struct EvolutionController {
    space: SearchSpace,
    config: EvolutionConfig,
    seed: u64,
    rng: ChaCha8Rng,
    population: VecDeque<(Vec<usize>, f64)>,
    warmup_proposed: usize,
}

impl EvolutionController {
    pub fn new(space: SearchSpace, config: EvolutionConfig, seed: u64) -> Self {
        let config =
            EvolutionConfig { population: config.population.max(2), sample_size: config.sample_size.max(1) };
        EvolutionController {
            space,
            config,
            seed,
            rng: ChaCha8Rng::seed_from_u64(seed),
            population: VecDeque::new(),
            warmup_proposed: 0,
        }
    }

    fn child(&mut self) -> Vec<usize> {
        let members: Vec<&(Vec<usize>, f64)> = self.population.iter().collect();
        let sample_size = self.config.sample_size.min(members.len());
        let parent = members
            .choose_multiple(&mut self.rng, sample_size)
            .max_by(|a, b| a.1.total_cmp(&b.1))
            .map(|member| member.0.clone());
        match parent {
            Some(parent) => self.space.mutate(&parent, &mut self.rng),
            None => self.space.sample_tokens(&mut self.rng),
        }
    }
}

impl Controller for EvolutionController {
    fn name(&self) -> &'static str {
        "evolution"
    }

    fn propose(&mut self, n: usize) -> Result<Vec<Vec<usize>>> {
        let mut proposals = Vec::with_capacity(n);
        for _ in 0..n {
            // The initial population is random, as in the paper; children come from tournaments
            // once it is full or on its way (`child` falls back to random while it is empty).
            if self.population.len() + self.warmup_proposed < self.config.population {
                self.warmup_proposed += 1;
                proposals.push(self.space.sample_tokens(&mut self.rng));
            } else {
                proposals.push(self.child());
            }
        }
        Ok(proposals)
    }

    fn observe(&mut self, observations: &[Observation]) -> Result<()> {
        for observation in observations {
            check_tokens(&self.space, &observation.tokens)?;
            if observation.rung > 0 {
                // A promoted candidate measured at a higher rung: the member it was, if it is still
                // in the population, takes the better-informed reward; nothing was proposed.
                if let Some(member) =
                    self.population.iter_mut().find(|(tokens, _)| *tokens == observation.tokens)
                {
                    member.1 = observation.reward.unwrap_or(0.0);
                }
                continue;
            }
            self.warmup_proposed = self.warmup_proposed.saturating_sub(1);
            self.population.push_back((observation.tokens.clone(), observation.reward.unwrap_or(0.0)));
            if self.population.len() > self.config.population {
                self.population.pop_front();
            }
        }
        Ok(())
    }

    fn state(&self) -> Result<Value> {
        serde_json::to_value(EvolutionState {
            rng: RngState::capture(self.seed, &self.rng),
            population: self.population.clone(),
            warmup_proposed: self.warmup_proposed,
        })
        .map_err(|e| ControllerError::BadState(e.to_string()))
    }

    fn restore(&mut self, state: &Value) -> Result<()> {
        let state: EvolutionState = from_state(state)?;
        for (tokens, _) in &state.population {
            check_tokens(&self.space, tokens)?;
        }
        self.seed = state.rng.seed;
        self.rng = state.rng.rebuild()?;
        self.population = state.population;
        self.warmup_proposed = state.warmup_proposed;
        Ok(())
    }
}
