//! The per-tensor form of the optimizers: each parameter tensor is updated by its own chain of
//! libtorch operations (6–8 per tensor for SGD with weight decay, plus one zeroing per gradient).
//! Kept as the reference the flat [`super::Optimizer`] is tested against, and as the "before"
//! of the optimizer benchmark (`examples/bench_train.rs --optimizer per-tensor`).
//!
//! The update rules are those of [`super::OptimizerKind`].

use tch::{nn::VarStore, TchError, Tensor};

use super::OptimizerKind;

#[derive(Debug)]
struct Param {
    var: Tensor,
    decay: bool,
    momentum: Option<Tensor>,
    square: Option<Tensor>,
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
            .map(|var| Param { decay: var.dim() >= 2, var, momentum: None, square: None })
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
                let update = match kind {
                    OptimizerKind::Sgd { momentum } => p.sgd(&grad, momentum)?.f_mul_scalar(lr)?,
                    OptimizerKind::RmsProp { decay, momentum, eps } => {
                        p.rmsprop(&grad, lr, decay, momentum, eps)?
                    }
                };
                let _ = p.var.f_sub_(&update)?;
            }
            Ok(())
        })
    }
}

impl Param {
    /// `torch.optim.SGD`'s direction: `b ← μ·b + g` (b₁ = g₁); the caller scales it by lr.
    fn sgd(&mut self, grad: &Tensor, momentum: f64) -> Result<Tensor, TchError> {
        if momentum == 0.0 {
            return Ok(grad.shallow_clone());
        }
        match &mut self.momentum {
            Some(buf) => {
                let _ = buf.f_mul_scalar_(momentum)?.f_add_(grad)?;
                Ok(buf.shallow_clone())
            }
            None => {
                let buf = grad.f_detach_copy()?;
                self.momentum = Some(buf.shallow_clone());
                Ok(buf)
            }
        }
    }

    /// timm's `RMSpropTF` step, learning rate included: `s ← ρ·s + (1 − ρ)·g²` (s₀ = 1),
    /// `b ← μ·b + lr·g / √(s + ε)` (b₀ = 0). Returns `b`, to be subtracted from the variable.
    fn rmsprop(
        &mut self,
        grad: &Tensor,
        lr: f64,
        decay: f64,
        momentum: f64,
        eps: f64,
    ) -> Result<Tensor, TchError> {
        let square = match &self.square {
            Some(square) => square.shallow_clone(),
            None => {
                let square = self.var.f_ones_like()?;
                self.square = Some(square.shallow_clone());
                square
            }
        };
        let _ = square
            .shallow_clone()
            .f_mul_scalar_(decay)?
            .f_add_(&grad.f_square()?.f_mul_scalar(1.0 - decay)?)?;
        let step = grad.f_div(&square.f_add_scalar(eps)?.f_sqrt()?)?.f_mul_scalar(lr)?;
        match &mut self.momentum {
            Some(buf) => {
                let _ = buf.f_mul_scalar_(momentum)?.f_add_(&step)?;
                Ok(buf.shallow_clone())
            }
            // b₁ = μ·0 + step.
            None => {
                self.momentum = Some(step.shallow_clone());
                Ok(step)
            }
        }
    }
}
