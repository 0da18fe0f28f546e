//! Transfer learning: a trained network fine-tuned on another data set, as the EfficientNet
//! paper does for its Table 5 (ImageNet-trained models fine-tuned on CIFAR, Birdsnap, Stanford
//! Cars, Flowers, …, following Kornblith et al., 2019, "Do Better ImageNet Models Transfer
//! Better?").
//!
//! [`adapt`] builds the network for the new task from a trained one: every variable is copied
//! except the classifier, which is initialised afresh for the new classes (always, even when the
//! count is the same: the classes are not), and the stem (convolution and batch norm), which is
//! new when the number of input channels differs (grayscale ↔ RGB). [`Transfer`] says what
//! trains: with [`Freeze::Backbone`] only the new variables get gradients and the pretrained
//! part runs as in evaluation (batch norm on its running statistics, no stochastic depth; see
//! [`crate::model::Frozen`]), the usual "linear probe" of a frozen feature extractor; with
//! [`Freeze::None`] everything trains, the pretrained part optionally at a fraction of the
//! learning rate (discriminative learning rates, [`crate::optim::Scaled`]). The training itself
//! is the proxy trainer's ([`crate::train::finetune_with_progress`]).

use serde::{Deserialize, Serialize};
use tch::Tensor;

use crate::error::{EvalError, Result};
use crate::model::{Frozen, Model, Naming};
use crate::optim::{Optimizer, OptimizerKind, Scaled, Update};

/// Which part of a fine-tuned network keeps its pretrained weights.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "snake_case")]
pub enum Freeze {
    /// Everything pretrained is frozen: only the new classifier (and a new stem) train.
    Backbone,
    /// Everything trains.
    None,
}

impl Freeze {
    pub fn as_str(self) -> &'static str {
        match self {
            Freeze::Backbone => "backbone",
            Freeze::None => "none",
        }
    }
}

/// A pretrained network adapted to a new task, and how to train it.
#[derive(Debug)]
pub struct Transfer {
    /// The adapted network ([`adapt`]).
    pub model: Model,
    /// Names of the variables initialised afresh (the classifier, and the stem when replaced).
    pub new_variables: Vec<String>,
    pub freeze: Freeze,
    /// The pretrained part's learning rate as a multiple of the new part's (with
    /// [`Freeze::None`]; above 0).
    pub backbone_lr_scale: f64,
}

/// The variable-name prefixes of the classifier and of the stem under `naming`.
fn prefixes(naming: Naming) -> (&'static [&'static str], &'static [&'static str]) {
    match naming {
        Naming::EfficientNet => (&["classifier."], &["features.0."]),
        Naming::ResNet => (&["fc."], &["conv1.", "bn1."]),
    }
}

/// `source` rebuilt for `classes` classes, `input_channels` channels and `resolution` pixels,
/// with every pretrained variable copied except the classifier and, when the channel count
/// changes, the stem (initialised as a new network's are: seed libtorch first for a repeatable
/// initialisation). Returns the model and the names of the new variables, sorted.
pub fn adapt(
    source: &Model,
    classes: u32,
    input_channels: u32,
    resolution: u32,
) -> Result<(Model, Vec<String>)> {
    let mut arch = source.arch.clone();
    arch.num_classes = classes;
    arch.input_channels = input_channels;
    arch.resolution = resolution;
    let target = Model::new(&arch, source.device())?;
    let (classifier, stem) = prefixes(Naming::of(&arch));
    let new_stem = input_channels != source.arch.input_channels;
    let pretrained = source.vs.variables();
    let mut fresh = Vec::new();
    for (name, mut var) in target.vs.variables() {
        let starts = |prefixes: &[&str]| prefixes.iter().any(|p| name.starts_with(p));
        if starts(classifier) || (new_stem && starts(stem)) {
            fresh.push(name);
            continue;
        }
        let Some(value) = pretrained.get(&name) else {
            return Err(EvalError::Data(format!("the pretrained network has no variable {name}")));
        };
        if value.size() != var.size() {
            return Err(EvalError::Data(format!(
                "variable {name}: pretrained shape {:?}, adapted network {:?}",
                value.size(),
                var.size()
            )));
        }
        tch::no_grad(|| var.f_copy_(value))?;
    }
    fresh.sort();
    Ok((target, fresh))
}

impl Transfer {
    /// Freezes what [`Transfer::freeze`] says (gradients off, frozen parts in evaluation mode)
    /// and returns the model with the optimizer of what trains. Call after any change of the
    /// variables' layout (channels-last), as for [`Optimizer::new`].
    pub(crate) fn into_learner(
        self,
        kind: OptimizerKind,
        weight_decay: f64,
    ) -> Result<(Model, Box<dyn Update>)> {
        let Transfer { mut model, new_variables, freeze, backbone_lr_scale } = self;
        if !(backbone_lr_scale.is_finite() && backbone_lr_scale > 0.0) {
            return Err(EvalError::config(
                "backbone_lr_scale",
                format!("{backbone_lr_scale} is not above 0"),
            ));
        }
        let mut variables: Vec<(String, Tensor)> =
            model.vs.variables().into_iter().filter(|(_, t)| t.requires_grad()).collect();
        variables.sort_by(|a, b| a.0.cmp(&b.0));
        let (new, pretrained): (Vec<_>, Vec<_>) =
            variables.into_iter().partition(|(name, _)| new_variables.contains(name));
        let new: Vec<Tensor> = new.into_iter().map(|(_, t)| t).collect();
        let pretrained: Vec<Tensor> = pretrained.into_iter().map(|(_, t)| t).collect();
        let mut parts = vec![(Optimizer::over(new, kind, weight_decay)?, 1.0)];
        match freeze {
            Freeze::Backbone => {
                for var in &pretrained {
                    let _ = var.set_requires_grad(false);
                }
                let (_, stem) = prefixes(Naming::of(&model.arch));
                let stem_is_new = new_variables.iter().any(|n| stem.iter().any(|p| n.starts_with(p)));
                model.net.set_frozen(Frozen { stem: !stem_is_new, body: true });
            }
            Freeze::None => parts.push((Optimizer::over(pretrained, kind, weight_decay)?, backbone_lr_scale)),
        }
        Ok((model, Box::new(Scaled::new(parts))))
    }
}

#[cfg(test)]
mod tests;
