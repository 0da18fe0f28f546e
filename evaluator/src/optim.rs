//! Optimizers over a `VarStore`, written with fallible libtorch calls so a failure (e.g. CUDA out
//! of memory) is an error value, not a panic inside tch's `nn::Optimizer`.
//!
//! - SGD with momentum, as `torch.optim.SGD` (dampening 0, no Nesterov):
//!   `b ← μ·b + g`, `x ← x − lr·b`.
//! - RMSProp as the TF reference EfficientNet/MnasNet recipe uses it, and as timm's `RMSpropTF`
//!   with its default `lr_in_momentum=True` (timm `optim/rmsprop_tf.py`): mean-square
//!   accumulator initialised to one, ε inside the square root, and the learning rate applied
//!   inside the momentum buffer, so a changing learning rate scales each step's contribution
//!   as it is accumulated:
//!   `s ← ρ·s + (1 − ρ)·g²`, `b ← μ·b + lr·g / √(s + ε)`, `x ← x − b`.
//!
//! Weight decay is L2 added to the gradient, on weight matrices and kernels only (tensors of
//! rank ≥ 2), not on biases or batch-norm parameters, as the TF reference does.

use serde::{Deserialize, Serialize};
use tch::{nn::VarStore, TchError, Tensor};

/// Which update rule.
#[derive(Debug, Clone, Copy, PartialEq, Serialize, Deserialize)]
#[serde(rename_all = "snake_case", tag = "kind")]
pub enum OptimizerKind {
    Sgd {
        momentum: f64,
    },
    /// `decay` is ρ of the mean-square accumulator (0.9 in the paper).
    RmsProp {
        decay: f64,
        momentum: f64,
        eps: f64,
    },
}

impl OptimizerKind {
    /// SGD with momentum 0.9.
    pub const SGD: OptimizerKind = OptimizerKind::Sgd { momentum: 0.9 };
    /// The paper's RMSProp: decay 0.9, momentum 0.9, ε 1e-3 (TF reference).
    pub const RMSPROP: OptimizerKind = OptimizerKind::RmsProp { decay: 0.9, momentum: 0.9, eps: 1e-3 };
}

#[derive(Debug)]
struct Param {
    var: Tensor,
    decay: bool,
    momentum: Option<Tensor>,
    square: Option<Tensor>,
}

/// An optimizer bound to the trainable variables of one `VarStore`.
#[derive(Debug)]
pub struct Optimizer {
    kind: OptimizerKind,
    weight_decay: f64,
    params: Vec<Param>,
}

impl Optimizer {
    pub fn new(vs: &VarStore, kind: OptimizerKind, weight_decay: f64) -> Self {
        let params = vs
            .trainable_variables()
            .into_iter()
            .map(|var| Param { decay: var.dim() >= 2, var, momentum: None, square: None })
            .collect();
        Optimizer { kind, weight_decay, params }
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

#[cfg(test)]
mod tests {
    use super::*;
    use tch::{Device, Kind};

    /// Minimising ‖x‖² from x = 1: SGD with lr 0.1, momentum 0.9 after two steps, by hand:
    /// g₁ = 2, b₁ = 2, x₁ = 0.8; g₂ = 1.6, b₂ = 0.9·2 + 1.6 = 3.4, x₂ = 0.8 − 0.34 = 0.46.
    #[test]
    fn sgd_momentum_matches_hand_computation() -> Result<(), TchError> {
        let vs = VarStore::new(Device::Cpu);
        let x = vs.root().f_ones("x", &[1])?;
        let mut opt = Optimizer::new(&vs, OptimizerKind::SGD, 0.0);
        for _ in 0..2 {
            opt.zero_grad()?;
            x.f_square()?.f_sum(Kind::Float)?.f_backward()?;
            opt.step(0.1)?;
        }
        let value = x.f_double_value(&[0])?;
        assert!((value - 0.46).abs() < 1e-6, "{value}");
        Ok(())
    }

    #[test]
    fn rmsprop_decreases_a_quadratic() -> Result<(), TchError> {
        let vs = VarStore::new(Device::Cpu);
        let x = vs.root().f_var_copy("x", &Tensor::from_slice(&[3.0f32, -2.0]))?;
        let mut opt = Optimizer::new(&vs, OptimizerKind::RMSPROP, 0.0);
        for _ in 0..50 {
            opt.zero_grad()?;
            x.f_square()?.f_sum(Kind::Float)?.f_backward()?;
            opt.step(0.01)?;
        }
        let norm = x.f_square()?.f_sum(Kind::Float)?.f_double_value(&[])?;
        assert!(norm < 13.0 * 0.5, "‖x‖² = {norm}");
        Ok(())
    }

    /// timm's `RMSpropTF` (ρ 0.9, μ 0.9, ε 1e-3) minimising x² from x = 1 over three steps
    /// with learning rates 0.1, 0.05, 0.2, computed by hand from the formula
    /// `s ← ρ·s + (1 − ρ)·g²` (s₀ = 1), `b ← μ·b + lr·g / √(s + ε)` (b₀ = 0), `x ← x − b`:
    ///
    /// 1. g = 2, s = 0.9 + 0.4 = 1.3, b = 0.1·2/√1.301 = 0.175344…, x = 0.824656…
    /// 2. g = 1.649312…, s = 1.17 + 0.272023… = 1.442023…, b = 0.9·b₁ + 0.05·g/√1.443023…
    ///    = 0.157810… + 0.068649… = 0.226459…, x = 0.598197…
    /// 3. g = 1.196393…, s = 1.297821… + 0.143136… = 1.440957…, b = 0.203813… + 0.2·g/√1.441957…
    ///    = 0.203813… + 0.199264… = 0.403077…, x = 0.195120…
    ///
    /// Applying lr outside the momentum buffer instead (`b ← μ·b + g / √(s + ε)`, `x ← x − lr·b`)
    /// would give x₃ = −0.076557…
    #[test]
    fn rmsprop_matches_timm_rmsproptf_with_a_changing_learning_rate() -> Result<(), TchError> {
        let (rho, mu, eps) = (0.9, 0.9, 1e-3);
        let lrs = [0.1, 0.05, 0.2];
        let (mut x, mut s, mut b) = (1.0f64, 1.0f64, 0.0f64);
        let mut expected = Vec::new();
        for lr in lrs {
            let g = 2.0 * x;
            s = rho * s + (1.0 - rho) * g * g;
            b = mu * b + lr * g / (s + eps).sqrt();
            x -= b;
            expected.push(x);
        }
        // The hand computation above, to six places.
        for (got, want) in expected.iter().zip([0.824656, 0.598197, 0.195120]) {
            assert!((got - want).abs() < 1e-6, "formula {got} vs hand {want}");
        }
        let vs = VarStore::new(Device::Cpu);
        let var = vs.root().f_var_copy("x", &Tensor::from_slice(&[1.0f32]))?;
        let mut opt = Optimizer::new(&vs, OptimizerKind::RmsProp { decay: rho, momentum: mu, eps }, 0.0);
        for (lr, want) in lrs.into_iter().zip(expected) {
            opt.zero_grad()?;
            var.f_square()?.f_sum(Kind::Float)?.f_backward()?;
            opt.step(lr)?;
            let got = var.f_double_value(&[0])?;
            // The variable is fp32 (the VarStore's kind): agreement to fp32 precision.
            assert!((got - want).abs() < 1e-6, "lr {lr}: {got} vs {want}");
        }
        Ok(())
    }

    #[test]
    fn weight_decay_skips_vectors() -> Result<(), TchError> {
        let vs = VarStore::new(Device::Cpu);
        let matrix = vs.root().f_ones("w", &[2, 2])?;
        let bias = vs.root().f_ones("b", &[2])?;
        let mut opt = Optimizer::new(&vs, OptimizerKind::Sgd { momentum: 0.0 }, 0.5);
        // A zero loss gradient: only decay moves the matrix; the bias keeps its value.
        opt.zero_grad()?;
        (matrix.f_sum(Kind::Float)? * 0.0 + bias.f_sum(Kind::Float)? * 0.0).f_backward()?;
        opt.step(0.1)?;
        assert!((matrix.f_double_value(&[0, 0])? - 0.95).abs() < 1e-6);
        assert!((bias.f_double_value(&[0])? - 1.0).abs() < 1e-6);
        Ok(())
    }
}
