//! Optimizers over a `VarStore`, written with fallible libtorch calls so a failure (e.g. CUDA out
//! of memory) is an error value, not a panic inside tch's `nn::Optimizer`.
//!
//! - SGD with momentum, as `torch.optim.SGD` (dampening 0, no Nesterov).
//! - RMSProp as the TF reference EfficientNet/MnasNet recipe uses it (decay ρ, momentum,
//!   ε inside the square root, mean-square accumulator initialised to one; timm's `RMSpropTF`).
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
                    OptimizerKind::Sgd { momentum } => {
                        if momentum == 0.0 {
                            grad
                        } else {
                            match &mut p.momentum {
                                Some(buf) => {
                                    let _ = buf.f_mul_scalar_(momentum)?.f_add_(&grad)?;
                                    buf.shallow_clone()
                                }
                                None => {
                                    let buf = grad.f_detach_copy()?;
                                    p.momentum = Some(buf.shallow_clone());
                                    buf
                                }
                            }
                        }
                    }
                    OptimizerKind::RmsProp { decay, momentum, eps } => {
                        let mut square = match &mut p.square {
                            Some(sq) => sq.shallow_clone(),
                            None => {
                                let sq = p.var.f_ones_like()?;
                                p.square = Some(sq.shallow_clone());
                                sq
                            }
                        };
                        // ms ← ρ·ms + (1 − ρ)·g²
                        let _ = square
                            .f_mul_scalar_(decay)?
                            .f_add_(&grad.f_square()?.f_mul_scalar(1.0 - decay)?)?;
                        let step = grad.f_div(&square.f_add_scalar(eps)?.f_sqrt()?)?;
                        match &mut p.momentum {
                            Some(buf) => {
                                let _ = buf.f_mul_scalar_(momentum)?.f_add_(&step)?;
                                buf.shallow_clone()
                            }
                            None => {
                                p.momentum = Some(step.shallow_clone());
                                step
                            }
                        }
                    }
                };
                let _ = p.var.f_sub_(&update.f_mul_scalar(lr)?)?;
            }
            Ok(())
        })
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
