//! The per-tensor form of the optimizers: each parameter tensor is updated by its own chain of
//! libtorch operations (6–8 per tensor for SGD with weight decay, plus one zeroing per gradient).
//! Kept as the reference the flat [`super::Optimizer`] is tested against, and as the "before"
//! of the optimizer benchmark (`examples/bench_train.rs --optimizer per-tensor`).
//!
//! The update rules are those of [`super::OptimizerKind`].

use tch::{nn::VarStore, TchError, Tensor};

use super::{OptimizerKind, RuleState};

#[derive(Debug)]
struct Param {
    var: Tensor,
    decay: bool,
    state: RuleState,
}

/// A per-tensor optimizer bound to the trainable variables of one `VarStore`.
#[derive(Debug)]
pub struct PerTensorOptimizer {
    kind: OptimizerKind,
    weight_decay: f64,
    params: Vec<Param>,
}

impl PerTensorOptimizer {
    pub fn new(vs: &VarStore, kind: OptimizerKind, weight_decay: f64) -> Self {
        let params = vs
            .trainable_variables()
            .into_iter()
            .map(|var| Param { decay: var.dim() >= 2, var, state: RuleState::default() })
            .collect();
        PerTensorOptimizer { kind, weight_decay, params }
    }

    /// Zeroes every gradient in place.
    pub fn zero_grad(&mut self) -> Result<(), TchError> {
        for p in &self.params {
            let mut grad = p.var.grad();
            if grad.defined() {
                let _ = grad.f_zero_()?;
            }
        }
        Ok(())
    }

    /// One update with learning rate `lr`.
    pub fn step(&mut self, lr: f64) -> Result<(), TchError> {
        let weight_decay = self.weight_decay;
        let kind = self.kind;
        tch::no_grad(|| {
            for p in &mut self.params {
                let grad = p.var.grad();
                if !grad.defined() {
                    continue;
                }
                let grad = if p.decay && weight_decay > 0.0 {
                    grad.f_add(&p.var.f_mul_scalar(weight_decay)?)?
                } else {
                    grad
                };
                let update = p.state.direction(kind, &grad, &p.var, lr)?;
                let _ = p.var.f_sub_(&update)?;
            }
            Ok(())
        })
    }
}
