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
//!
//! # A constant number of launches per step
//! A small proxy on a GPU is bound by kernel launches, not arithmetic: updating each of B0's
//! ~213 parameter tensors with its own chain of operations costs over a thousand launches a
//! step. [`Optimizer`] therefore moves every parameter, and its gradient, into one flat buffer
//! per (dtype, device): each variable becomes a view of its slice (with its own strides, so a
//! channels-last kernel stays channels-last), autograd accumulates gradients in place into the
//! gradient views, and a step is a handful of operations on whole buffers, however many tensors
//! the network has. Tensors that take weight decay come first in each buffer, so decay applies
//! to one leading slice. The arithmetic is the per-tensor form's, operation for operation
//! ([`per_tensor::PerTensorOptimizer`], the reference it is tested against).

pub mod per_tensor;

use serde::{Deserialize, Serialize};
use tch::{nn::VarStore, Device, Kind, TchError, Tensor};

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

/// What a training loop needs of an optimizer; both forms implement it.
pub trait Update {
    /// Zeroes every gradient.
    fn zero_grad(&mut self) -> Result<(), TchError>;
    /// One update with learning rate `lr`.
    fn step(&mut self, lr: f64) -> Result<(), TchError>;
}

impl Update for Optimizer {
    fn zero_grad(&mut self) -> Result<(), TchError> {
        Optimizer::zero_grad(self)
    }
    fn step(&mut self, lr: f64) -> Result<(), TchError> {
        Optimizer::step(self, lr)
    }
}

impl Update for per_tensor::PerTensorOptimizer {
    fn zero_grad(&mut self) -> Result<(), TchError> {
        per_tensor::PerTensorOptimizer::zero_grad(self)
    }
    fn step(&mut self, lr: f64) -> Result<(), TchError> {
        per_tensor::PerTensorOptimizer::step(self, lr)
    }
}

/// Several optimizers stepped together, each at its own multiple of the learning rate:
/// discriminative learning rates for fine-tuning (a pretrained backbone at a fraction of the
/// new classifier's rate, as in Howard & Ruder, 2018, "Universal Language Model Fine-tuning").
#[derive(Debug)]
pub struct Scaled {
    parts: Vec<(Optimizer, f64)>,
}

impl Scaled {
    /// `parts`: each optimizer with the factor its learning rate is multiplied by.
    pub fn new(parts: Vec<(Optimizer, f64)>) -> Self {
        Scaled { parts }
    }
}

impl Update for Scaled {
    fn zero_grad(&mut self) -> Result<(), TchError> {
        self.parts.iter_mut().try_for_each(|(optimizer, _)| optimizer.zero_grad())
    }
    fn step(&mut self, lr: f64) -> Result<(), TchError> {
        self.parts.iter_mut().try_for_each(|(optimizer, scale)| optimizer.step(lr * *scale))
    }
}

/// The parameters of one dtype and device, and their gradients, as two flat buffers.
#[derive(Debug)]
struct FlatGroup {
    params: Tensor,
    grads: Tensor,
    /// The leading elements that take weight decay (tensors of rank ≥ 2).
    decayed: i64,
    state: RuleState,
}

/// An update rule's buffers for one set of values (one tensor, or a flat buffer of many).
#[derive(Debug, Default)]
struct RuleState {
    momentum: Option<Tensor>,
    square: Option<Tensor>,
}

impl RuleState {
    /// What to subtract from `values` for gradient `grad` (weight decay already added), the
    /// learning rate included.
    fn direction(
        &mut self,
        kind: OptimizerKind,
        grad: &Tensor,
        values: &Tensor,
        lr: f64,
    ) -> Result<Tensor, TchError> {
        match kind {
            OptimizerKind::Sgd { momentum } => self.sgd(grad, momentum)?.f_mul_scalar(lr),
            OptimizerKind::RmsProp { decay, momentum, eps } => {
                self.rmsprop(grad, values, lr, decay, momentum, eps)
            }
        }
    }

    /// `torch.optim.SGD`'s direction: `b ← μ·b + g` (b₁ = g); the caller scales it by lr.
    fn sgd(&mut self, grad: &Tensor, momentum: f64) -> Result<Tensor, TchError> {
        if momentum == 0.0 {
            return Ok(grad.shallow_clone());
        }
        match &mut self.momentum {
            Some(buf) => {
                let _ = buf.f_mul_scalar_(momentum)?.f_add_(grad)?;
                Ok(buf.shallow_clone())
            }
            None => Ok(self.momentum.insert(grad.f_detach_copy()?).shallow_clone()),
        }
    }

    /// timm's `RMSpropTF` step, learning rate included: `s ← ρ·s + (1 − ρ)·g²` (s₀ = 1),
    /// `b ← μ·b + lr·g / √(s + ε)` (b₀ = 0). Returns `b`.
    fn rmsprop(
        &mut self,
        grad: &Tensor,
        values: &Tensor,
        lr: f64,
        decay: f64,
        momentum: f64,
        eps: f64,
    ) -> Result<Tensor, TchError> {
        let square = match &self.square {
            Some(square) => square.shallow_clone(),
            None => self.square.insert(values.f_ones_like()?).shallow_clone(),
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
            None => Ok(self.momentum.insert(step).shallow_clone()),
        }
    }
}

/// An optimizer bound to the trainable variables of one `VarStore`, which it re-homes into flat
/// buffers (see the module docs). Build it after any change of the variables' layout
/// (e.g. [`crate::model::Model::to_channels_last`]): a later `set_data` on a variable would
/// take it out of the buffer.
#[derive(Debug)]
pub struct Optimizer {
    kind: OptimizerKind,
    weight_decay: f64,
    groups: Vec<FlatGroup>,
}

impl Optimizer {
    pub fn new(vs: &VarStore, kind: OptimizerKind, weight_decay: f64) -> Result<Self, TchError> {
        Optimizer::over(vs.trainable_variables(), kind, weight_decay)
    }

    /// An optimizer of some variables only (each requiring gradients), e.g. one part of a
    /// network that trains at its own learning rate ([`Scaled`]).
    pub fn over(variables: Vec<Tensor>, kind: OptimizerKind, weight_decay: f64) -> Result<Self, TchError> {
        define_gradients(&variables)?;
        let mut by_place: Vec<((Kind, Device), Vec<Tensor>)> = Vec::new();
        for var in variables {
            let place = (var.f_kind()?, var.device());
            match by_place.iter_mut().find(|(p, _)| *p == place) {
                Some((_, vars)) => vars.push(var),
                None => by_place.push((place, vec![var])),
            }
        }
        let groups = by_place
            .into_iter()
            .map(|((kind, device), vars)| FlatGroup::new(vars, kind, device))
            .collect::<Result<_, _>>()?;
        Ok(Optimizer { kind, weight_decay, groups })
    }

    /// Zeroes every gradient in place: one operation per buffer.
    pub fn zero_grad(&mut self) -> Result<(), TchError> {
        for group in &mut self.groups {
            let _ = group.grads.f_zero_()?;
        }
        Ok(())
    }

    /// One update with learning rate `lr`.
    pub fn step(&mut self, lr: f64) -> Result<(), TchError> {
        let (weight_decay, kind) = (self.weight_decay, self.kind);
        tch::no_grad(|| {
            for group in &mut self.groups {
                group.step(kind, weight_decay, lr)?;
            }
            Ok(())
        })
    }
}

/// Gives every variable a (zero) gradient tensor, so that all of them can be re-homed before the
/// first backward pass: a backward pass through `Σ 0·sum(v)`. Gradients already there keep their
/// values (zero is added).
fn define_gradients(variables: &[Tensor]) -> Result<(), TchError> {
    let mut total: Option<Tensor> = None;
    for var in variables {
        let sum = var.f_sum(Kind::Float)?;
        total = Some(match total {
            Some(t) => t.f_add(&sum)?,
            None => sum,
        });
    }
    match total {
        Some(total) => total.f_mul_scalar(0.0)?.f_backward(),
        None => Ok(()),
    }
}

/// `tensor`'s slice of `flat` starting at `offset`, with `tensor`'s sizes and strides.
fn view_of(flat: &Tensor, tensor: &Tensor, offset: i64) -> Result<Tensor, TchError> {
    flat.f_as_strided(tensor.size(), tensor.stride(), Some(offset))
}

impl FlatGroup {
    /// Moves `vars` (all of `kind` on `device`, each with a defined gradient) into two flat
    /// buffers, decayed tensors first. Every variable and gradient keeps its sizes and strides
    /// and its values; only its storage changes.
    fn new(mut vars: Vec<Tensor>, kind: Kind, device: Device) -> Result<Self, TchError> {
        // Stable: within each part the VarStore's order is kept.
        vars.sort_by_key(|v| v.dim() < 2);
        let total: i64 = vars.iter().map(Tensor::numel).sum::<usize>() as i64;
        let params = Tensor::f_empty([total], (kind, device))?;
        let grads = Tensor::f_zeros([total], (kind, device))?;
        let (mut offset, mut decayed) = (0i64, 0i64);
        for var in &mut vars {
            if !is_dense(var) {
                return Err(TchError::Kind(format!(
                    "a parameter of sizes {:?} and strides {:?} overlaps itself or has gaps",
                    var.size(),
                    var.stride()
                )));
            }
            let mut grad = var.grad();
            let mut param_view = view_of(&params, var, offset)?;
            let mut grad_view = view_of(&grads, var, offset)?;
            tch::no_grad(|| -> Result<(), TchError> {
                param_view.f_copy_(var)?;
                grad_view.f_copy_(&grad)?;
                var.f_set_data(&param_view)?;
                grad.f_set_data(&grad_view)
            })?;
            offset += var.numel() as i64;
            if var.dim() >= 2 {
                decayed = offset;
            }
        }
        Ok(FlatGroup { params, grads, decayed, state: RuleState::default() })
    }

    fn step(&mut self, kind: OptimizerKind, weight_decay: f64, lr: f64) -> Result<(), TchError> {
        if weight_decay > 0.0 && self.decayed > 0 {
            let params = self.params.f_narrow(0, 0, self.decayed)?;
            let _ = self.grads.f_narrow(0, 0, self.decayed)?.f_add_(&params.f_mul_scalar(weight_decay)?)?;
        }
        let update = self.state.direction(kind, &self.grads, &self.params, lr)?;
        let _ = self.params.f_sub_(&update)?;
        Ok(())
    }
}

/// Whether `t`'s elements fill exactly `numel` consecutive places under some order of its
/// dimensions (contiguous, channels-last, or any permutation of a contiguous tensor).
fn is_dense(t: &Tensor) -> bool {
    let mut dims: Vec<(i64, i64)> =
        t.size().into_iter().zip(t.stride()).filter(|(size, _)| *size != 1).collect();
    dims.sort_by_key(|&(_, stride)| stride);
    let mut expected = 1i64;
    for (size, stride) in dims {
        if stride != expected {
            return false;
        }
        expected *= size;
    }
    true
}

#[cfg(test)]
mod tests;
