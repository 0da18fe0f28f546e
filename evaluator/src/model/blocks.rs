//! Building blocks: convolution, batch norm, squeeze-and-excitation, and the three layer kinds
//! of the MnasNet space (regular conv, depthwise-separable conv, MBConv), each with its shortcut.
//!
//! Layouts follow torchvision's `efficientnet.py` (`MBConv`, `Conv2dNormActivation`,
//! `SqueezeExcitation`, `StochasticDepth` in "row" mode) so variable names match where the
//! structure is the same; initialisation follows torchvision's EfficientNet too (convolutions
//! Kaiming-normal in fan-out mode, BN weight 1 and bias 0, linear uniform ±1/√out).
//! Every forward is fallible (`f_*` calls): an out-of-memory or shape error is a value.

use std::cell::Cell;

use effnas_space::{BlockSpec, Op, Shortcut};
use tch::{nn::Path, Kind, TchError, Tensor};

type TResult<T> = Result<T, TchError>;

/// Batch-norm hyper-parameters, in PyTorch terms.
#[derive(Debug, Clone, Copy, PartialEq)]
pub struct NormConfig {
    /// Running-statistics momentum (PyTorch convention: new = (1 − m)·old + m·batch).
    pub momentum: f64,
    pub eps: f64,
}

impl Default for NormConfig {
    /// The reference values (REFERENCE.md): TF momentum 0.99, i.e. 0.01 in PyTorch terms; eps 1e-3.
    fn default() -> Self {
        NormConfig { momentum: 0.01, eps: 1e-3 }
    }
}

/// A weight used in `kind`: the fp32 master itself, or a cast copy that autograd tracks back to it
/// (how the bf16 path keeps fp32 weights and computes in bf16).
fn weight_as(weight: &Tensor, kind: Kind) -> TResult<Tensor> {
    if weight.kind() == kind {
        Ok(weight.shallow_clone())
    } else {
        weight.f_to_kind(kind)
    }
}

/// A 2-D convolution with symmetric `(k − 1) / 2` padding, as torchvision's.
#[derive(Debug)]
pub struct Conv2d {
    weight: Tensor,
    bias: Option<Tensor>,
    stride: i64,
    padding: i64,
    groups: i64,
}

impl Conv2d {
    /// `c_in → c_out`, `k × k`, at `p` (`p.weight`, `p.bias`).
    pub fn new(
        p: &Path,
        c_in: u32,
        c_out: u32,
        kernel: u32,
        stride: u32,
        groups: u32,
        bias: bool,
    ) -> TResult<Self> {
        let (c_in, c_out, k, g) = (i64::from(c_in), i64::from(c_out), i64::from(kernel), i64::from(groups));
        // torchvision: kaiming_normal_(mode="fan_out"): std = √(2 / (c_out · k²)).
        let std = (2.0 / (c_out * k * k) as f64).sqrt();
        let weight = p.f_randn("weight", &[c_out, c_in / g, k, k], 0.0, std)?;
        let bias = if bias { Some(p.f_zeros("bias", &[c_out])?) } else { None };
        Ok(Conv2d { weight, bias, stride: i64::from(stride), padding: (k - 1) / 2, groups: g })
    }

    pub fn forward(&self, xs: &Tensor) -> TResult<Tensor> {
        let weight = weight_as(&self.weight, xs.kind())?;
        let bias = match &self.bias {
            Some(b) => Some(weight_as(b, xs.kind())?),
            None => None,
        };
        xs.f_conv2d(&weight, bias.as_ref(), [self.stride], [self.padding], [1], self.groups)
    }
}

/// Batch norm over channels with its running statistics and torchvision's
/// `num_batches_tracked` buffer (kept so a state dict loads strictly).
#[derive(Debug)]
pub struct BatchNorm {
    weight: Tensor,
    bias: Tensor,
    running_mean: Tensor,
    running_var: Tensor,
    config: NormConfig,
    /// Momentum in use; differs from `config.momentum` only while statistics are recalibrated.
    momentum: Cell<f64>,
}

impl BatchNorm {
    pub fn new(p: &Path, channels: u32, config: NormConfig) -> TResult<Self> {
        let c = i64::from(channels);
        let weight = p.f_ones("weight", &[c])?;
        let bias = p.f_zeros("bias", &[c])?;
        let running_mean = p.f_zeros_no_train("running_mean", &[c])?;
        let running_var = p.f_ones_no_train("running_var", &[c])?;
        let tracked = Tensor::f_zeros([] as [i64; 0], (Kind::Int64, p.device()))?;
        let _ = p.add("num_batches_tracked", tracked, false);
        Ok(BatchNorm {
            weight,
            bias,
            running_mean,
            running_var,
            config,
            momentum: Cell::new(config.momentum),
        })
    }

    /// Resets the running statistics (mean 0, variance 1).
    pub fn reset_running_stats(&self) -> TResult<()> {
        tch::no_grad(|| {
            let _ = self.running_mean.shallow_clone().f_zero_()?;
            let _ = self.running_var.shallow_clone().f_fill_(1.0)?;
            Ok(())
        })
    }

    /// Sets the momentum of the next updates; `None` restores the configured one.
    pub fn set_momentum(&self, momentum: Option<f64>) {
        self.momentum.set(momentum.unwrap_or(self.config.momentum));
    }

    pub fn forward(&self, xs: &Tensor, train: bool) -> TResult<Tensor> {
        xs.f_batch_norm(
            Some(&self.weight),
            Some(&self.bias),
            Some(&self.running_mean),
            Some(&self.running_var),
            train,
            self.momentum.get(),
            self.config.eps,
            true,
        )
    }
}

/// Convolution, batch norm and optionally SiLU (torchvision's `Conv2dNormActivation`:
/// `p.0` is the convolution, `p.1` the norm).
#[derive(Debug)]
pub struct ConvNormAct {
    conv: Conv2d,
    norm: BatchNorm,
    activation: bool,
}

impl ConvNormAct {
    #[allow(clippy::too_many_arguments)]
    pub fn new(
        p: &Path,
        c_in: u32,
        c_out: u32,
        kernel: u32,
        stride: u32,
        groups: u32,
        activation: bool,
        norm: NormConfig,
    ) -> TResult<Self> {
        Ok(ConvNormAct {
            conv: Conv2d::new(&(p / "0"), c_in, c_out, kernel, stride, groups, false)?,
            norm: BatchNorm::new(&(p / "1"), c_out, norm)?,
            activation,
        })
    }

    pub fn norm(&self) -> &BatchNorm {
        &self.norm
    }

    pub fn forward(&self, xs: &Tensor, train: bool) -> TResult<Tensor> {
        let ys = self.norm.forward(&self.conv.forward(xs)?, train)?;
        if self.activation {
            ys.f_silu()
        } else {
            Ok(ys)
        }
    }
}

/// Squeeze-and-excitation (Hu et al.; torchvision `SqueezeExcitation` with SiLU and sigmoid):
/// global average pool, `fc1` 1×1 conv to `squeeze` channels, SiLU, `fc2` back, sigmoid, scale.
#[derive(Debug)]
pub struct SqueezeExcite {
    fc1: Conv2d,
    fc2: Conv2d,
}

impl SqueezeExcite {
    pub fn new(p: &Path, channels: u32, squeeze: u32) -> TResult<Self> {
        Ok(SqueezeExcite {
            fc1: Conv2d::new(&(p / "fc1"), channels, squeeze, 1, 1, 1, true)?,
            fc2: Conv2d::new(&(p / "fc2"), squeeze, channels, 1, 1, 1, true)?,
        })
    }

    pub fn forward(&self, xs: &Tensor) -> TResult<Tensor> {
        let scale = xs.f_mean_dim(&[2i64, 3][..], true, None::<Kind>)?;
        let scale = self.fc1.forward(&scale)?.f_silu()?;
        let scale = self.fc2.forward(&scale)?.f_sigmoid()?;
        xs.f_mul(&scale)
    }
}

/// One element of a layer's main branch.
#[derive(Debug)]
enum Part {
    Conv(ConvNormAct),
    Se(SqueezeExcite),
}

/// The shortcut of one layer.
#[derive(Debug)]
enum LayerShortcut {
    None,
    Identity,
    /// Average pool with kernel = stride (ceil mode, so the size matches the padded strided
    /// convolution on odd inputs) and an optional 1×1 conv + BN when channels change.
    Pool {
        stride: i64,
        project: Option<ConvNormAct>,
    },
}

/// One layer of a block: the main branch (`p.block.N`) and its shortcut (`p.shortcut` when it
/// has parameters). With a shortcut, the branch is dropped per sample with probability
/// `drop_rate` while training (stochastic depth, "row" mode, scaled by 1 / (1 − p)).
#[derive(Debug)]
pub struct Layer {
    parts: Vec<Part>,
    shortcut: LayerShortcut,
    drop_rate: f64,
}

impl Layer {
    /// Layer `layer` (0-based) of `block` at `p`, with its stochastic-depth rate.
    pub fn new(p: &Path, block: &BlockSpec, layer: u32, drop_rate: f64, norm: NormConfig) -> TResult<Self> {
        let (c_in, c_out) = block.layer_channels(layer);
        let stride = block.layer_stride(layer);
        let k = block.kernel;
        let se = block.se_channels(c_in);
        let body = p / "block";
        let mut parts = Vec::with_capacity(4);
        // Parts are numbered in order, as torchvision's `nn.Sequential` numbers its layers.
        let next = |parts: &Vec<Part>| &body / parts.len();
        match block.op {
            Op::MBConv => {
                let hidden = block.hidden_channels(c_in);
                if hidden != c_in {
                    parts.push(Part::Conv(ConvNormAct::new(
                        &next(&parts),
                        c_in,
                        hidden,
                        1,
                        1,
                        1,
                        true,
                        norm,
                    )?));
                }
                parts.push(Part::Conv(ConvNormAct::new(
                    &next(&parts),
                    hidden,
                    hidden,
                    k,
                    stride,
                    hidden,
                    true,
                    norm,
                )?));
                if let Some(squeeze) = se {
                    parts.push(Part::Se(SqueezeExcite::new(&next(&parts), hidden, squeeze)?));
                }
                parts.push(Part::Conv(ConvNormAct::new(&next(&parts), hidden, c_out, 1, 1, 1, false, norm)?));
            }
            Op::DepthwiseSeparable => {
                parts.push(Part::Conv(ConvNormAct::new(
                    &next(&parts),
                    c_in,
                    c_in,
                    k,
                    stride,
                    c_in,
                    true,
                    norm,
                )?));
                if let Some(squeeze) = se {
                    parts.push(Part::Se(SqueezeExcite::new(&next(&parts), c_in, squeeze)?));
                }
                parts.push(Part::Conv(ConvNormAct::new(&next(&parts), c_in, c_out, 1, 1, 1, true, norm)?));
            }
            Op::Conv => {
                parts.push(Part::Conv(ConvNormAct::new(
                    &next(&parts),
                    c_in,
                    c_out,
                    k,
                    stride,
                    1,
                    true,
                    norm,
                )?));
                if let Some(squeeze) = se {
                    parts.push(Part::Se(SqueezeExcite::new(&next(&parts), c_out, squeeze)?));
                }
            }
        }
        let shortcut = match block.layer_shortcut(layer) {
            Shortcut::None => LayerShortcut::None,
            Shortcut::Identity => LayerShortcut::Identity,
            Shortcut::Pool { project } => LayerShortcut::Pool {
                stride: i64::from(stride),
                project: if project {
                    Some(ConvNormAct::new(&(p / "shortcut"), c_in, c_out, 1, 1, 1, false, norm)?)
                } else {
                    None
                },
            },
        };
        Ok(Layer { parts, shortcut, drop_rate })
    }

    /// Every batch norm of the layer.
    pub fn norms(&self) -> Vec<&BatchNorm> {
        let mut norms: Vec<&BatchNorm> = self
            .parts
            .iter()
            .filter_map(|p| match p {
                Part::Conv(c) => Some(c.norm()),
                Part::Se(_) => None,
            })
            .collect();
        if let LayerShortcut::Pool { project: Some(c), .. } = &self.shortcut {
            norms.push(c.norm());
        }
        norms
    }

    /// `train` selects batch statistics; `stochastic` enables stochastic depth.
    pub fn forward(&self, xs: &Tensor, train: bool, stochastic: bool) -> TResult<Tensor> {
        let mut ys = xs.shallow_clone();
        for part in &self.parts {
            ys = match part {
                Part::Conv(c) => c.forward(&ys, train)?,
                Part::Se(se) => se.forward(&ys)?,
            };
        }
        let shortcut = match &self.shortcut {
            LayerShortcut::None => return Ok(ys),
            LayerShortcut::Identity => xs.shallow_clone(),
            LayerShortcut::Pool { stride, project } => {
                let pooled = if *stride > 1 {
                    xs.f_avg_pool2d([*stride], [*stride], [0], true, true, None::<i64>)?
                } else {
                    xs.shallow_clone()
                };
                match project {
                    Some(conv) => conv.forward(&pooled, train)?,
                    None => pooled,
                }
            }
        };
        let ys = if stochastic && self.drop_rate > 0.0 { drop_path(&ys, self.drop_rate)? } else { ys };
        ys.f_add(&shortcut)
    }
}

/// Stochastic depth in "row" mode: zero each sample's branch with probability `rate` and scale
/// the survivors by 1 / (1 − rate).
fn drop_path(xs: &Tensor, rate: f64) -> TResult<Tensor> {
    let keep = 1.0 - rate;
    let n = xs.size().first().copied().unwrap_or(1);
    let mask = Tensor::f_rand([n, 1, 1, 1], (xs.kind(), xs.device()))?
        .f_add_scalar(keep)?
        .f_floor()?
        .f_div_scalar(keep)?;
    xs.f_mul(&mask)
}
