//! The recurrent policy of NASNet/MnasNet (Zoph et al., 2018; Tan et al., 2019, §3): an LSTM
//! emits the space's decisions one token at a time, each from a softmax over that decision's
//! choices, the previous token fed back through an embedding. It is trained on batches of
//! rewards with PPO's clipped objective (as MnasNet) or with REINFORCE, against an exponential
//! moving-average baseline, with an entropy bonus.
//!
//! The policy runs in libtorch on the CPU, but all randomness (initial weights, sampling) comes
//! from a seeded ChaCha stream, not libtorch's global generator, so a run is deterministic even
//! while evaluator threads use libtorch at the same time. Adam is written out here so that its
//! moments are part of the checkpoint and a resumed run continues exactly.

use base64::engine::general_purpose::STANDARD as BASE64;
use base64::Engine as _;
use effnas_space::SearchSpace;
use rand::{Rng, SeedableRng};
use rand_chacha::ChaCha8Rng;
use serde::{Deserialize, Serialize};
use serde_json::Value;
use tch::{Kind, Tensor};

use super::{check_tokens, from_state, Controller, ControllerError, Observation, Result, RngState};

mod sampler;
use sampler::HostPolicy;

#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "snake_case")]
pub enum RlAlgorithm {
    Ppo,
    Reinforce,
}

#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct RlConfig {
    pub algorithm: RlAlgorithm,
    /// LSTM hidden units.
    pub hidden: i64,
    /// Token embedding width.
    pub embedding: i64,
    /// Adam learning rate.
    pub learning_rate: f64,
    /// Observations per policy update.
    pub batch_size: usize,
    /// Gradient steps per batch (PPO; REINFORCE takes one).
    pub epochs: usize,
    /// PPO clipping range ε.
    pub clip: f64,
    /// Weight of the entropy bonus.
    pub entropy_weight: f64,
    /// Decay of the moving-average reward baseline.
    pub baseline_decay: f64,
}

impl Default for RlConfig {
    fn default() -> Self {
        RlConfig {
            algorithm: RlAlgorithm::Ppo,
            hidden: 64,
            embedding: 32,
            learning_rate: 0.02,
            batch_size: 16,
            epochs: 4,
            clip: 0.2,
            entropy_weight: 0.005,
            baseline_decay: 0.9,
        }
    }
}

/// The policy's weights in a fixed order, with Adam's moments.
struct Policy {
    /// [start + every token of every position, E]
    embedding: Tensor,
    /// [4H, E]
    input_weight: Tensor,
    /// [4H, H]
    hidden_weight: Tensor,
    /// [4H]
    gate_bias: Tensor,
    /// [Σ choices, H]: the output layers of every position, stacked.
    head_weight: Tensor,
    /// [Σ choices]
    head_bias: Tensor,
}

impl Policy {
    fn parameters(&self) -> [&Tensor; 6] {
        [
            &self.embedding,
            &self.input_weight,
            &self.hidden_weight,
            &self.gate_bias,
            &self.head_weight,
            &self.head_bias,
        ]
    }
}

/// The checkpoint form: weights and moments as flat lists (written as [`RlStateOut`]).
#[derive(Deserialize)]
struct RlState {
    rng: RngState,
    weights: Vec<Floats>,
    first_moments: Vec<Floats>,
    second_moments: Vec<Floats>,
    adam_steps: i64,
    baseline: Option<f64>,
    /// The baselines of rungs 1, 2, … of a multi-fidelity search (absent before it existed).
    #[serde(default)]
    rung_baselines: Vec<Option<f64>>,
    buffer: Vec<Observation>,
    updates: usize,
}

/// [`RlState`] as written: the same fields, borrowed.
#[derive(Serialize)]
struct RlStateOut<'a> {
    rng: RngState,
    weights: &'a [Floats],
    first_moments: &'a [Floats],
    second_moments: &'a [Floats],
    adam_steps: i64,
    baseline: Option<f64>,
    rung_baselines: &'a [Option<f64>],
    buffer: &'a [Observation],
    updates: usize,
}

/// A tensor's values in a checkpoint: base64 of their little-endian f32 bytes (exact, and about a
/// fifth of the JSON list's size and far cheaper to write), or a JSON list of numbers, as
/// checkpoints written before stored them.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
#[serde(untagged)]
enum Floats {
    Encoded(String),
    Listed(Vec<f32>),
}

impl Floats {
    fn of(tensor: &Tensor) -> Result<Floats> {
        let bytes: Vec<u8> = to_vec(tensor)?.iter().flat_map(|v| v.to_le_bytes()).collect();
        Ok(Floats::Encoded(BASE64.encode(bytes)))
    }

    fn values(&self) -> Result<Vec<f32>> {
        match self {
            Floats::Listed(values) => Ok(values.clone()),
            Floats::Encoded(text) => {
                let bytes = BASE64
                    .decode(text)
                    .map_err(|e| ControllerError::BadState(format!("policy values: {e}")))?;
                if bytes.len() % 4 != 0 {
                    return Err(ControllerError::BadState(format!(
                        "policy values: {} bytes is not a whole number of f32",
                        bytes.len()
                    )));
                }
                Ok(bytes.chunks_exact(4).map(|b| f32::from_le_bytes([b[0], b[1], b[2], b[3]])).collect())
            }
        }
    }
}

/// Weights, first and second moments, encoded, as of one Adam step.
type EncodedPolicy = (i64, [Vec<Floats>; 3]);

pub struct RlController {
    space: SearchSpace,
    config: RlConfig,
    seed: u64,
    rng: ChaCha8Rng,
    /// Choices at each position and where each position's tokens start in the stacked tables.
    counts: Vec<i64>,
    offsets: Vec<i64>,
    /// `[positions, 1, Σ choices]`: 0 at each position's own choices, −10⁹ elsewhere, added to
    /// the stacked output layers' logits so that each position's softmax covers its own.
    choice_mask: Tensor,
    /// `[4H]` zeros: the LSTM's hidden-side bias, which the policy does not have.
    zero_bias: Tensor,
    policy: Policy,
    first_moments: Vec<Tensor>,
    second_moments: Vec<Tensor>,
    adam_steps: i64,
    /// The moving-average reward of rung 0 (every candidate's first measurement).
    baseline: Option<f64>,
    /// The same for rungs 1, 2, … of a multi-fidelity search: a promoted candidate's reward is
    /// judged against other results of its own rung, whose proxy trains longer and scores higher.
    rung_baselines: Vec<Option<f64>>,
    buffer: Vec<Observation>,
    updates: usize,
    /// The policy's weights on the host for sampling, as of an Adam step.
    host: Option<HostPolicy>,
    /// The policy as the last checkpoint encoded it, and the Adam step it is of: the search
    /// checkpoints after every result, while the policy changes once a batch.
    encoded: std::sync::Mutex<Option<EncodedPolicy>>,
}

/// Runs `work` with libtorch's intra-op threads set to one, then restores the count.
///
/// The policy's tensors are tiny (16 sequences × 64 hidden units), so parallel regions save
/// nothing, and while the trainers keep every core busy each region's threads wait for a time
/// slice: an update stalled for tens of seconds (issue 17, item 15). libtorch's count is per
/// thread for threads already running (OpenMP) but its default for new ones is process-wide,
/// hence the restore; the trainers' threads are started before the first update.
fn on_one_thread<T>(work: impl FnOnce() -> T) -> T {
    let previous = tch::get_num_threads();
    if previous == 1 {
        return work();
    }
    tch::set_num_threads(1);
    let result = work();
    tch::set_num_threads(previous);
    result
}

fn to_vec(tensor: &Tensor) -> Result<Vec<f32>> {
    Ok(Vec::<f32>::try_from(tensor.f_flatten(0, -1)?.f_to_kind(Kind::Float)?)?)
}

impl RlController {
    pub fn new(space: SearchSpace, config: RlConfig, seed: u64) -> Result<Self> {
        let counts: Vec<i64> = space.choice_counts().iter().map(|&n| n as i64).collect();
        let offsets: Vec<i64> = counts
            .iter()
            .scan(0, |acc, &n| {
                let start = *acc;
                *acc += n;
                Some(start)
            })
            .collect();
        let total: i64 = counts.iter().sum();
        let (h, e) = (config.hidden.max(1), config.embedding.max(1));
        let mut rng = ChaCha8Rng::seed_from_u64(seed);
        // NASNet initialises the controller uniformly in [-0.1, 0.1].
        let mut uniform = |shape: &[i64]| -> Result<Tensor> {
            let n: i64 = shape.iter().product();
            let values: Vec<f32> = (0..n).map(|_| rng.random_range(-0.1f32..0.1)).collect();
            Ok(Tensor::from_slice(&values).f_view(shape)?.set_requires_grad(true))
        };
        let policy = Policy {
            embedding: uniform(&[total + 1, e])?,
            input_weight: uniform(&[4 * h, e])?,
            hidden_weight: uniform(&[4 * h, h])?,
            gate_bias: uniform(&[4 * h])?,
            head_weight: uniform(&[total, h])?,
            head_bias: uniform(&[total])?,
        };
        let mut mask = vec![-1e9f32; (counts.len() as i64 * total) as usize];
        for (position, (&start, &n)) in offsets.iter().zip(&counts).enumerate() {
            let row = position * total as usize;
            mask[row + start as usize..row + (start + n) as usize].fill(0.0);
        }
        let choice_mask = Tensor::from_slice(&mask).f_view([counts.len() as i64, 1, total])?;
        let zeros = |p: &Tensor| p.f_zeros_like().map_err(ControllerError::from);
        let first_moments = policy.parameters().into_iter().map(zeros).collect::<Result<Vec<_>>>()?;
        let second_moments = policy.parameters().into_iter().map(zeros).collect::<Result<Vec<_>>>()?;
        Ok(RlController {
            space,
            config,
            seed,
            rng,
            counts,
            offsets,
            choice_mask,
            zero_bias: Tensor::f_zeros([4 * h], (Kind::Float, tch::Device::Cpu))?,
            policy,
            first_moments,
            second_moments,
            adam_steps: 0,
            baseline: None,
            rung_baselines: Vec::new(),
            buffer: Vec::new(),
            updates: 0,
            host: None,
            encoded: std::sync::Mutex::new(None),
        })
    }

    /// `write` given the weights and moments, encoded, from the cache when no Adam step was
    /// taken since (lent, not copied: a checkpoint's lists are some 0.6 MB).
    fn with_encoded_policy<T>(&self, write: impl FnOnce(&[Vec<Floats>; 3]) -> T) -> Result<T> {
        let mut cache = self.encoded.lock().unwrap_or_else(std::sync::PoisonError::into_inner);
        if cache.as_ref().is_none_or(|(step, _)| *step != self.adam_steps) {
            let encode =
                |tensors: Vec<&Tensor>| tensors.into_iter().map(Floats::of).collect::<Result<Vec<_>>>();
            let lists = [
                encode(self.policy.parameters().to_vec())?,
                encode(self.first_moments.iter().collect())?,
                encode(self.second_moments.iter().collect())?,
            ];
            *cache = Some((self.adam_steps, lists));
        }
        let (_, lists) =
            cache.as_ref().ok_or_else(|| ControllerError::BadState("no encoded policy".into()))?;
        Ok(write(lists))
    }

    /// Policy updates done so far.
    pub fn updates(&self) -> usize {
        self.updates
    }

    /// The input half of an LSTM step's gates, `x·Wᵢᵀ + b`, for any leading shape of `x`.
    fn project(&self, x: &Tensor) -> Result<Tensor> {
        let p = &self.policy;
        Ok(x.f_matmul(&p.input_weight.f_tr()?)?.f_add(&p.gate_bias)?)
    }

    /// One LSTM step from the projected input (`project`): returns the new (h, c).
    fn step(&self, projected: &Tensor, h: &Tensor, c: &Tensor) -> Result<(Tensor, Tensor)> {
        let gates = projected.f_addmm(h, &self.policy.hidden_weight.f_tr()?)?;
        let chunks = gates.f_chunk(4, 1)?;
        let (i, f, g, o) =
            (chunks[0].f_sigmoid()?, chunks[1].f_sigmoid()?, chunks[2].f_tanh()?, chunks[3].f_sigmoid()?);
        let c = f.f_mul(c)?.f_add(&i.f_mul(&g)?)?;
        let h = o.f_mul(&c.f_tanh()?)?;
        Ok((h, c))
    }

    fn logits(&self, position: usize, h: &Tensor) -> Result<Tensor> {
        let (start, n) = (self.offsets[position], self.counts[position]);
        let weight = self.policy.head_weight.f_narrow(0, start, n)?;
        let bias = self.policy.head_bias.f_narrow(0, start, n)?;
        Ok(h.f_matmul(&weight.f_tr()?)?.f_add(&bias)?)
    }

    fn embed(&self, position: Option<usize>, tokens: &Tensor) -> Result<Tensor> {
        // Row 0 is the start token; position p's token t is row offset[p] + t + 1.
        let rows = match position {
            None => tokens.f_zeros_like()?,
            Some(p) => tokens.f_add_scalar(self.offsets[p] + 1)?,
        };
        Ok(self.policy.embedding.f_index_select(0, &rows)?)
    }

    fn initial_state(&self, batch: i64) -> Result<(Tensor, Tensor)> {
        let h = Tensor::f_zeros([batch, self.config.hidden.max(1)], (Kind::Float, tch::Device::Cpu))?;
        Ok((h.f_zeros_like()?, h))
    }

    /// Log-probability and entropy of each sequence under the current policy. The inputs of
    /// every position are known (the sequences themselves), so they are embedded in one
    /// operation and the whole recurrence runs as libtorch's LSTM (`at::lstm`, one fused
    /// operation forward and one backward on the CPU, where the same cell written step by step
    /// was a dozen operations per position and dominated the update); then every position's
    /// output layer, softmax and choice are computed together, each position's softmax kept to
    /// its own choices by `choice_mask`.
    fn evaluate(&self, sequences: &[Vec<usize>]) -> Result<(Tensor, Tensor)> {
        let (positions, batch) = (self.counts.len() as i64, sequences.len() as i64);
        let (mut rows, mut chosen) = (Vec::new(), Vec::new());
        for position in 0..self.counts.len() {
            for sequence in sequences {
                // Row 0 is the start token; position p's token t is row offset[p] + t + 1.
                rows.push(match position.checked_sub(1) {
                    None => 0,
                    Some(previous) => self.offsets[previous] + sequence[previous] as i64 + 1,
                });
                chosen.push(self.offsets[position] + sequence[position] as i64);
            }
        }
        let p = &self.policy;
        let inputs =
            p.embedding.f_index_select(0, &Tensor::from_slice(&rows))?.f_view([positions, batch, -1])?;
        let start = Tensor::f_zeros([1, batch, self.config.hidden.max(1)], (Kind::Float, tch::Device::Cpu))?;
        // The gates are x·Wᵢᵀ + bᵢ + h·Wₕᵀ + bₕ in the order i, f, g, o, as in `step`; the policy
        // has one gate bias, so bₕ is zero.
        let weights = [&p.input_weight, &p.hidden_weight, &p.gate_bias, &self.zero_bias];
        let (outputs, _, _) = inputs.f_lstm(&[&start, &start], &weights, true, 1, 0.0, true, false, false)?;
        let logits =
            outputs.f_matmul(&p.head_weight.f_tr()?)?.f_add(&p.head_bias)?.f_add(&self.choice_mask)?;
        let log_p = logits.f_log_softmax(2, Kind::Float)?;
        let chosen = Tensor::from_slice(&chosen).f_view([positions, batch, 1])?;
        let log_prob =
            log_p.f_gather(2, &chosen, false)?.f_squeeze_dim(2)?.f_sum_dim_intlist(0, false, Kind::Float)?;
        // Other positions' choices have probability 0 (exactly, in f32) and a finite log: no NaN.
        let entropy =
            log_p.f_exp()?.f_mul(&log_p)?.f_sum_dim_intlist(&[0i64, 2][..], false, Kind::Float)?.f_neg()?;
        Ok((log_prob, entropy))
    }

    /// `n` sequences from the current policy, sampled on the host ([`sampler`]) from weights
    /// copied out after each update.
    fn sample(&mut self, n: usize) -> Result<Vec<Vec<usize>>> {
        if self.host.as_ref().is_none_or(|host| host.adam_steps != self.adam_steps) {
            let _no_grad = tch::no_grad_guard();
            let p = &self.policy;
            self.host = Some(HostPolicy::new(
                to_vec(&self.project(&p.embedding)?)?,
                to_vec(&p.hidden_weight)?,
                to_vec(&p.head_weight)?,
                to_vec(&p.head_bias)?,
                self.config.hidden.max(1) as usize,
                self.adam_steps,
            ));
        }
        let host = self.host.as_ref().ok_or_else(|| ControllerError::BadState("no host policy".into()))?;
        Ok(host.sample(&self.counts, &self.offsets, n, &mut self.rng))
    }

    fn adam_step(&mut self) -> Result<()> {
        let _no_grad = tch::no_grad_guard();
        let (beta1, beta2, eps) = (0.9, 0.999, 1e-8);
        self.adam_steps += 1;
        let correction1 = 1.0 - f64::powi(beta1, self.adam_steps as i32);
        let correction2 = 1.0 - f64::powi(beta2, self.adam_steps as i32);
        let parameters = self.policy.parameters();
        for (index, parameter) in parameters.into_iter().enumerate() {
            let grad = parameter.grad();
            if !grad.defined() {
                continue;
            }
            let m = self.first_moments[index].f_mul_scalar(beta1)?.f_add(&grad.f_mul_scalar(1.0 - beta1)?)?;
            let v = self.second_moments[index]
                .f_mul_scalar(beta2)?
                .f_add(&grad.f_square()?.f_mul_scalar(1.0 - beta2)?)?;
            let update = m
                .f_div_scalar(correction1)?
                .f_div(&v.f_div_scalar(correction2)?.f_sqrt()?.f_add_scalar(eps)?)?
                .f_mul_scalar(self.config.learning_rate)?;
            let mut parameter = parameter.shallow_clone();
            let _ = parameter.f_sub_(&update)?;
            let mut grad = grad;
            let _ = grad.f_zero_()?;
            self.first_moments[index] = m;
            self.second_moments[index] = v;
        }
        Ok(())
    }

    /// The moving-average baseline of `rung`.
    fn baseline_of(&mut self, rung: u32) -> &mut Option<f64> {
        match rung.checked_sub(1) {
            None => &mut self.baseline,
            Some(index) => {
                let index = index as usize;
                if self.rung_baselines.len() <= index {
                    self.rung_baselines.resize(index + 1, None);
                }
                &mut self.rung_baselines[index]
            }
        }
    }

    /// Each observation's reward less its rung's baseline; the baselines move towards the
    /// batch's mean reward at each rung.
    fn raw_advantages(&mut self, batch: &[Observation]) -> Vec<f64> {
        let reward = |o: &Observation| o.reward.unwrap_or(0.0);
        let mut rungs: Vec<u32> = batch.iter().map(|o| o.rung).collect();
        rungs.sort_unstable();
        rungs.dedup();
        let mut advantages = vec![0.0; batch.len()];
        let decay = self.config.baseline_decay;
        for rung in rungs {
            let members: Vec<usize> = (0..batch.len()).filter(|&i| batch[i].rung == rung).collect();
            let mean = members.iter().map(|&i| reward(&batch[i])).sum::<f64>() / members.len() as f64;
            let stored = self.baseline_of(rung);
            let baseline = stored.unwrap_or(mean);
            *stored = Some(decay * baseline + (1.0 - decay) * mean);
            for i in members {
                advantages[i] = reward(&batch[i]) - baseline;
            }
        }
        advantages
    }

    fn update(&mut self, batch: Vec<Observation>) -> Result<()> {
        let mut advantages = self.raw_advantages(&batch);
        // Rewards of proxies differ in the third decimal; scaling advantages to unit spread keeps
        // the step size independent of the reward's scale.
        let spread = (advantages.iter().map(|a| a * a).sum::<f64>() / advantages.len() as f64).sqrt();
        if spread > 1e-12 {
            advantages.iter_mut().for_each(|a| *a /= spread);
        }
        let advantages = Tensor::from_slice(&advantages.iter().map(|&a| a as f32).collect::<Vec<_>>());
        let sequences: Vec<Vec<usize>> = batch.into_iter().map(|o| o.tokens).collect();

        let epochs = match self.config.algorithm {
            RlAlgorithm::Ppo => self.config.epochs.max(1),
            RlAlgorithm::Reinforce => 1,
        };
        // PPO's old policy is the policy before this batch's first step: the first epoch's
        // log-probabilities, detached (the same values a separate pass would compute, without it).
        let mut old_log_prob: Option<Tensor> = None;
        for _ in 0..epochs {
            let (log_prob, entropy) = self.evaluate(&sequences)?;
            let old_log_prob = old_log_prob.get_or_insert_with(|| log_prob.detach());
            let objective = match self.config.algorithm {
                RlAlgorithm::Reinforce => log_prob.f_mul(&advantages)?,
                RlAlgorithm::Ppo => {
                    let ratio = log_prob.f_sub(old_log_prob)?.f_exp()?;
                    let clipped = ratio.f_clamp(1.0 - self.config.clip, 1.0 + self.config.clip)?;
                    ratio.f_mul(&advantages)?.f_minimum(&clipped.f_mul(&advantages)?)?
                }
            };
            let loss = objective
                .f_add(&entropy.f_mul_scalar(self.config.entropy_weight)?)?
                .f_mean(Kind::Float)?
                .f_neg()?;
            loss.f_backward()?;
            self.adam_step()?;
        }
        self.updates += 1;
        Ok(())
    }

    /// The policy's most likely architecture, decision by decision (what it has converged to).
    pub fn greedy(&self) -> Result<Vec<usize>> {
        let _no_grad = tch::no_grad_guard();
        let (mut h, mut c) = self.initial_state(1)?;
        let mut x = self.embed(None, &Tensor::f_zeros([1], (Kind::Int64, tch::Device::Cpu))?)?;
        let mut tokens = Vec::new();
        for position in 0..self.counts.len() {
            (h, c) = self.step(&self.project(&x)?, &h, &c)?;
            let choice = self.logits(position, &h)?.f_argmax(1, false)?.f_int64_value(&[0])?;
            tokens.push(choice as usize);
            x = self.embed(Some(position), &Tensor::from_slice(&[choice]))?;
        }
        Ok(tokens)
    }
}

impl Controller for RlController {
    fn name(&self) -> &'static str {
        "rl"
    }

    fn propose(&mut self, n: usize) -> Result<Vec<Vec<usize>>> {
        if n == 0 {
            return Ok(Vec::new());
        }
        on_one_thread(|| self.sample(n))
    }

    fn observe(&mut self, observations: &[Observation]) -> Result<()> {
        for observation in observations {
            check_tokens(&self.space, &observation.tokens)?;
            self.buffer.push(observation.clone());
            if self.buffer.len() >= self.config.batch_size.max(1) {
                let batch = std::mem::take(&mut self.buffer);
                on_one_thread(|| self.update(batch))?;
            }
        }
        Ok(())
    }

    fn state(&self) -> Result<Value> {
        self.with_encoded_policy(|[weights, first_moments, second_moments]| {
            serde_json::to_value(RlStateOut {
                rng: RngState::capture(self.seed, &self.rng),
                weights,
                first_moments,
                second_moments,
                adam_steps: self.adam_steps,
                baseline: self.baseline,
                rung_baselines: &self.rung_baselines,
                buffer: &self.buffer,
                updates: self.updates,
            })
        })?
        .map_err(|e| ControllerError::BadState(e.to_string()))
    }

    fn restore(&mut self, state: &Value) -> Result<()> {
        let state: RlState = from_state(state)?;
        let decode = |lists: &[Floats]| lists.iter().map(Floats::values).collect::<Result<Vec<_>>>();
        let (weights, first_moments, second_moments) =
            (decode(&state.weights)?, decode(&state.first_moments)?, decode(&state.second_moments)?);
        let sizes: Vec<i64> = self.policy.parameters().iter().map(|p| p.numel() as i64).collect();
        let fits = |lists: &[Vec<f32>]| {
            lists.len() == sizes.len() && lists.iter().zip(&sizes).all(|(l, &n)| l.len() as i64 == n)
        };
        if !(fits(&weights) && fits(&first_moments) && fits(&second_moments)) {
            return Err(ControllerError::BadState(
                "policy sizes differ (another space or RL configuration)".into(),
            ));
        }
        for observation in &state.buffer {
            check_tokens(&self.space, &observation.tokens)?;
        }
        {
            let _no_grad = tch::no_grad_guard();
            for (parameter, values) in self.policy.parameters().into_iter().zip(&weights) {
                let mut parameter = parameter.shallow_clone();
                parameter.f_copy_(&Tensor::from_slice(values).f_view_as(&parameter)?)?;
            }
        }
        let load = |lists: &[Vec<f32>]| -> Result<Vec<Tensor>> {
            lists
                .iter()
                .zip(self.policy.parameters())
                .map(|(values, p)| Ok(Tensor::from_slice(values).f_view_as(p)?))
                .collect()
        };
        self.first_moments = load(&first_moments)?;
        self.second_moments = load(&second_moments)?;
        *self.encoded.lock().unwrap_or_else(std::sync::PoisonError::into_inner) = None;
        self.host = None;
        self.seed = state.rng.seed;
        self.rng = state.rng.rebuild()?;
        self.adam_steps = state.adam_steps;
        self.baseline = state.baseline;
        self.rung_baselines = state.rung_baselines;
        self.buffer = state.buffer;
        self.updates = state.updates;
        Ok(())
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    /// libtorch's thread count is process-wide: tests that sample or update a policy take turns.
    static THREADS: std::sync::Mutex<()> = std::sync::Mutex::new(());

    fn alone() -> std::sync::MutexGuard<'static, ()> {
        THREADS.lock().unwrap_or_else(std::sync::PoisonError::into_inner)
    }

    /// Rung-0 observations of `sequences` with these rewards.
    fn rewarded(sequences: Vec<Vec<usize>>, rewards: &[f64]) -> Vec<Observation> {
        sequences
            .into_iter()
            .zip(rewards)
            .map(|(tokens, &r)| Observation { tokens, reward: Some(r), rung: 0 })
            .collect()
    }

    #[test]
    fn policy_work_runs_on_one_thread_and_the_count_is_restored() -> Result<(), Box<dyn std::error::Error>> {
        let _alone = alone();
        tch::set_num_threads(2);
        assert_eq!(on_one_thread(tch::get_num_threads), 1);
        assert_eq!(tch::get_num_threads(), 2);
        let space = SearchSpace::resolve("default")?;
        let mut controller = RlController::new(space, RlConfig { batch_size: 2, ..RlConfig::default() }, 0)?;
        let sampled = controller.propose(2)?;
        let observations = rewarded(sampled, &[0.5, 0.7]);
        controller.observe(&observations)?;
        assert_eq!(controller.updates(), 1);
        assert_eq!(tch::get_num_threads(), 2, "the trainers' count is back after an update");
        Ok(())
    }

    /// Values survive the checkpoint encoding bit for bit (signed zero, subnormals, extremes);
    /// checkpoints written before it (JSON lists) still restore; damaged text is an error.
    #[test]
    fn checkpoint_values_are_exact_and_old_checkpoints_restore() -> Result<(), Box<dyn std::error::Error>> {
        let _alone = alone();
        let values = [0.0f32, -0.0, 1.5e-45, f32::MIN_POSITIVE, f32::MAX, -3.25, 0.1];
        let encoded = Floats::of(&Tensor::from_slice(&values))?;
        let decoded = encoded.values()?;
        assert_eq!(
            decoded.iter().map(|v| v.to_bits()).collect::<Vec<_>>(),
            values.map(f32::to_bits).to_vec()
        );
        let listed: Floats = serde_json::from_value(serde_json::json!([0.5, -2.0]))?;
        assert_eq!(listed.values()?, vec![0.5, -2.0]);
        assert!(Floats::Encoded("not base64!".into()).values().is_err());
        assert!(Floats::Encoded(BASE64.encode([1u8, 2, 3])).values().is_err(), "3 bytes are no f32");

        // A controller restored from its state in the old form (lists) continues as the original.
        let space = SearchSpace::resolve("default")?;
        let config = RlConfig { batch_size: 2, ..RlConfig::default() };
        let mut original = RlController::new(space.clone(), config.clone(), 3)?;
        let first = original.propose(2)?;
        let observations = rewarded(first, &[0.4, 0.6]);
        original.observe(&observations)?;
        let mut state = original.state()?;
        for key in ["weights", "first_moments", "second_moments"] {
            let lists: Vec<Floats> = serde_json::from_value(state[key].clone())?;
            let old_form: Vec<Vec<f32>> = lists.iter().map(Floats::values).collect::<Result<_>>()?;
            state[key] = serde_json::to_value(old_form)?;
        }
        let mut restored = RlController::new(space, config, 99)?;
        restored.restore(&state)?;
        assert_eq!(restored.propose(4)?, original.propose(4)?);
        assert_eq!(restored.state()?, original.state()?);
        Ok(())
    }

    /// Log-probability and entropy of `sequence` by the cell written out step by step (`step`,
    /// as `greedy` runs it), with gradients.
    fn stepwise(controller: &RlController, sequence: &[usize]) -> Result<(Tensor, Tensor)> {
        let (mut h, mut c) = controller.initial_state(1)?;
        let mut x = controller.embed(None, &Tensor::from_slice(&[0i64]))?;
        let (mut log_prob, mut entropy) = (Tensor::from(0f32), Tensor::from(0f32));
        for (position, &choice) in sequence.iter().enumerate() {
            (h, c) = controller.step(&controller.project(&x)?, &h, &c)?;
            let log_p = controller.logits(position, &h)?.f_log_softmax(1, Kind::Float)?.f_squeeze_dim(0)?;
            log_prob = log_prob.f_add(&log_p.f_select(0, choice as i64)?)?;
            entropy = entropy.f_sub(&log_p.f_exp()?.f_mul(&log_p)?.f_sum(Kind::Float)?)?;
            x = controller.embed(Some(position), &Tensor::from_slice(&[choice as i64]))?;
        }
        Ok((log_prob, entropy))
    }

    /// The gradients of `loss` for every policy weight, flattened; the gradients are cleared.
    fn gradients(controller: &RlController, loss: Tensor) -> Result<Vec<Vec<f32>>> {
        loss.f_backward()?;
        let mut all = Vec::new();
        for parameter in controller.policy.parameters() {
            let mut grad = parameter.grad();
            all.push(to_vec(&grad)?);
            let _ = grad.f_zero_()?;
        }
        Ok(all)
    }

    /// `evaluate` runs the recurrence as libtorch's fused LSTM; it computes the cell that `step`
    /// writes out (and the host sampler copies): the same log-probabilities, entropies and
    /// gradients for every weight, to float precision, after an update as before it.
    #[test]
    fn the_fused_recurrence_is_the_stepwise_cell() -> Result<(), Box<dyn std::error::Error>> {
        let _alone = alone();
        let space = SearchSpace::resolve("default")?;
        let mut controller = RlController::new(space, RlConfig { batch_size: 4, ..RlConfig::default() }, 7)?;
        let first = controller.propose(4)?;
        controller.observe(&rewarded(first, &[0.2, 0.8, 0.5, 0.3]))?;
        assert_eq!(controller.updates(), 1);
        let sequences = controller.propose(3)?;

        let (log_prob, entropy) = controller.evaluate(&sequences)?;
        let (fused_log_prob, fused_entropy) = (to_vec(&log_prob)?, to_vec(&entropy)?);
        let fused =
            gradients(&controller, log_prob.f_sum(Kind::Float)?.f_add(&entropy.f_sum(Kind::Float)?)?)?;
        let mut loss = Tensor::from(0f32);
        for (index, sequence) in sequences.iter().enumerate() {
            let (log_prob, entropy) = stepwise(&controller, sequence)?;
            let (want_log_prob, want_entropy) = (log_prob.f_double_value(&[])?, entropy.f_double_value(&[])?);
            assert!(
                (f64::from(fused_log_prob[index]) - want_log_prob).abs() < 1e-4,
                "log-probability {index}"
            );
            assert!((f64::from(fused_entropy[index]) - want_entropy).abs() < 1e-4, "entropy {index}");
            loss = loss.f_add(&log_prob.f_add(&entropy)?)?;
        }
        let stepwise = gradients(&controller, loss)?;
        for (weight, (got, want)) in fused.iter().zip(&stepwise).enumerate() {
            let scale = want.iter().fold(1f32, |m, v| m.max(v.abs()));
            let worst = got.iter().zip(want).fold(0f32, |m, (a, b)| m.max((a - b).abs()));
            assert!(worst < 1e-4 * scale, "weight {weight}: gradients differ by {worst} (scale {scale})");
            assert!(want.iter().any(|&v| v != 0.0), "weight {weight} has a gradient");
        }
        Ok(())
    }

    /// The host sampler computes the policy libtorch trains: the log-probability of sampled
    /// sequences agrees with `evaluate`'s to float precision, before and after an update.
    #[test]
    fn the_host_sampler_follows_the_trained_policy() -> Result<(), Box<dyn std::error::Error>> {
        let _alone = alone();
        let space = SearchSpace::resolve("default")?;
        let mut controller = RlController::new(space, RlConfig { batch_size: 4, ..RlConfig::default() }, 5)?;
        for round in 0..2 {
            let sequences = controller.propose(4)?;
            let host = controller.host.as_ref().ok_or("no host policy")?;
            let (log_prob, _) = tch::no_grad(|| controller.evaluate(&sequences))?;
            let libtorch = Vec::<f32>::try_from(&log_prob)?;
            for (sequence, want) in sequences.iter().zip(libtorch) {
                let got = host.log_prob(&controller.counts, &controller.offsets, sequence);
                assert!((got - f64::from(want)).abs() < 1e-3, "round {round}: host {got} vs libtorch {want}");
            }
            let observations = rewarded(sequences, &[0.1, 0.9, 0.4, 0.6]);
            controller.observe(&observations)?;
        }
        assert_eq!(controller.updates(), 2);
        Ok(())
    }
}
