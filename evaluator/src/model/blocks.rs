//! Building blocks: convolution, batch norm, squeeze-and-excitation, the three layer kinds
//! of the MnasNet space (regular conv, depthwise-separable conv, MBConv) and ResNet's two
//! (basic and bottleneck, He et al., 2016, Figure 5), each with its shortcut.
//!
//! Layouts follow torchvision's `efficientnet.py` (`MBConv`, `Conv2dNormActivation`,
//! `SqueezeExcitation`, `StochasticDepth` in "row" mode) and `resnet.py` (`BasicBlock`,
//! `Bottleneck`: `conv1`/`bn1` …, the projection shortcut as `downsample.0`/`.1`, the stride on
//! the 3×3 convolution) so variable names match where the structure is the same;
//! initialisation follows torchvision's EfficientNet (convolutions Kaiming-normal in fan-out
//! mode, which torchvision's ResNet uses too, BN weight 1 and bias 0, linear uniform ±1/√out).
//! Every forward is fallible (`f_*` calls): an out-of-memory or shape error is a value.

use std::cell::{Cell, RefCell};

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

/// The shape of a 2-D convolution: channels, square kernel, stride and groups.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct ConvShape {
    pub c_in: u32,
    pub c_out: u32,
    pub kernel: u32,
    pub stride: u32,
    pub groups: u32,
}

impl ConvShape {
    /// `c_in → c_out` with a `kernel × kernel` kernel, stride 1, one group.
    pub fn new(c_in: u32, c_out: u32, kernel: u32) -> Self {
        ConvShape { c_in, c_out, kernel, stride: 1, groups: 1 }
    }

    /// A 1×1 (pointwise) convolution `c_in → c_out`.
    pub fn pointwise(c_in: u32, c_out: u32) -> Self {
        ConvShape::new(c_in, c_out, 1)
    }

    /// A depthwise `kernel × kernel` convolution over `channels` (one group per channel).
    pub fn depthwise(channels: u32, kernel: u32) -> Self {
        ConvShape { groups: channels, ..ConvShape::new(channels, channels, kernel) }
    }

    pub fn stride(self, stride: u32) -> Self {
        ConvShape { stride, ..self }
    }
}

/// Whether a convolution has a bias (the ones followed by batch norm do not).
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Bias {
    With,
    Without,
}

/// The activation after a convolution and its batch norm.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Activation {
    /// SiLU (swish), as EfficientNet.
    Silu,
    /// ReLU, as ResNet and MobileNetV1.
    Relu,
    /// None: the linear bottleneck (MBConv's projection, a shortcut's projection, the last
    /// convolution of a residual block, whose activation follows the addition).
    Linear,
}

impl Activation {
    pub fn forward(self, xs: Tensor) -> TResult<Tensor> {
        match self {
            Activation::Silu => xs.f_silu(),
            Activation::Relu => xs.f_relu(),
            Activation::Linear => Ok(xs),
        }
    }

    /// The same, computed in `xs`'s own memory: outside training (no gradient needs the input)
    /// this spares allocating and faulting in a fresh activation-sized buffer, which is what
    /// inference at large batches spends its time on (torchvision's layers are in-place too).
    pub fn forward_in_place(self, mut xs: Tensor) -> TResult<Tensor> {
        match self {
            Activation::Silu => drop(xs.f_silu_()?),
            Activation::Relu => drop(xs.f_relu_()?),
            Activation::Linear => {}
        }
        Ok(xs)
    }

    /// [`Activation::forward`] while training or while gradients flow through `xs` (a frozen
    /// body behind a stem that trains), [`Activation::forward_in_place`] otherwise.
    fn apply(self, xs: Tensor, train: bool) -> TResult<Tensor> {
        if train || xs.requires_grad() {
            self.forward(xs)
        } else {
            self.forward_in_place(xs)
        }
    }
}

impl From<effnas_space::Activation> for Activation {
    fn from(activation: effnas_space::Activation) -> Self {
        match activation {
            effnas_space::Activation::Silu => Activation::Silu,
            effnas_space::Activation::Relu => Activation::Relu,
        }
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
    /// A convolution of `shape` at `p` (`p.weight`, and `p.bias` with [`Bias::With`]).
    pub fn new(p: &Path, shape: ConvShape, bias: Bias) -> TResult<Self> {
        let (c_in, c_out) = (i64::from(shape.c_in), i64::from(shape.c_out));
        let (k, g) = (i64::from(shape.kernel), i64::from(shape.groups));
        // torchvision: kaiming_normal_(mode="fan_out"): std = √(2 / (c_out · k²)).
        let std = (2.0 / (c_out * k * k) as f64).sqrt();
        let weight = p.f_randn("weight", &[c_out, c_in / g, k, k], 0.0, std)?;
        let bias = match bias {
            Bias::With => Some(p.f_zeros("bias", &[c_out])?),
            Bias::Without => None,
        };
        Ok(Conv2d { weight, bias, stride: i64::from(shape.stride), padding: (k - 1) / 2, groups: g })
    }

    pub fn forward(&self, xs: &Tensor) -> TResult<Tensor> {
        self.forward_with(xs, &self.weight, self.bias.as_ref())
    }

    /// This convolution's geometry with other weights (a batch norm folded in).
    fn forward_with(&self, xs: &Tensor, weight: &Tensor, bias: Option<&Tensor>) -> TResult<Tensor> {
        let weight = weight_as(weight, xs.kind())?;
        let bias = match bias {
            Some(b) => Some(weight_as(b, xs.kind())?),
            None => None,
        };
        xs.f_conv2d(&weight, bias.as_ref(), [self.stride], [self.padding], [1], self.groups)
    }

    /// Weights and bias of this convolution followed by the per-channel affine map
    /// `y ↦ scale·y + shift`: the kernel of each output channel times its scale, the bias
    /// times it plus the shift.
    fn folded(&self, scale: &Tensor, shift: &Tensor) -> TResult<FoldedNorm> {
        let weight = self.weight.f_mul(&scale.f_view([-1, 1, 1, 1])?)?;
        let bias = match &self.bias {
            Some(b) => b.f_mul(scale)?.f_add(shift)?,
            None => shift.shallow_clone(),
        };
        Ok(FoldedNorm { weight, bias })
    }
}

/// A convolution with the batch norm after it folded in, for inference (see
/// [`ConvNormAct::fold_norm`]).
#[derive(Debug)]
struct FoldedNorm {
    weight: Tensor,
    bias: Tensor,
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

    /// Outside training batch norm is the per-channel affine map `y ↦ scale·y + shift` with
    /// `scale = γ / √(running_var + eps)` and `shift = β − running_mean · scale`.
    fn scale_shift(&self) -> TResult<(Tensor, Tensor)> {
        let scale = self.weight.f_div(&self.running_var.f_add_scalar(self.config.eps)?.f_sqrt()?)?;
        let shift = self.bias.f_sub(&self.running_mean.f_mul(&scale)?)?;
        Ok((scale, shift))
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

/// Convolution (without bias), batch norm and an activation (torchvision's
/// `Conv2dNormActivation`: `p.0` is the convolution, `p.1` the norm).
#[derive(Debug)]
pub struct ConvNormAct {
    conv: Conv2d,
    norm: BatchNorm,
    activation: Activation,
    /// Set by [`ConvNormAct::fold_norm`]: evaluation-mode passes use it instead of the two.
    folded: RefCell<Option<FoldedNorm>>,
}

impl ConvNormAct {
    pub fn new(p: &Path, shape: ConvShape, activation: Activation, norm: NormConfig) -> TResult<Self> {
        ConvNormAct::named(&(p / "0"), &(p / "1"), shape, activation, norm)
    }

    /// The convolution at `conv` and the norm at `bn`, for layouts that name them apart
    /// (torchvision's ResNet: `conv1` and `bn1`).
    pub fn named(
        conv: &Path,
        bn: &Path,
        shape: ConvShape,
        activation: Activation,
        norm: NormConfig,
    ) -> TResult<Self> {
        Ok(ConvNormAct {
            conv: Conv2d::new(conv, shape, Bias::Without)?,
            norm: BatchNorm::new(bn, shape.c_out, norm)?,
            activation,
            folded: RefCell::new(None),
        })
    }

    pub fn norm(&self) -> &BatchNorm {
        &self.norm
    }

    pub fn forward(&self, xs: &Tensor, train: bool) -> TResult<Tensor> {
        if !train {
            if let Some(folded) = &*self.folded.borrow() {
                let ys = self.conv.forward_with(xs, &folded.weight, Some(&folded.bias))?;
                return self.activation.apply(ys, train);
            }
        }
        let ys = self.norm.forward(&self.conv.forward(xs)?, train)?;
        self.activation.apply(ys, train)
    }

    /// Folds the batch norm's current statistics and affine weights into a copy of the
    /// convolution's weights, which evaluation-mode passes then use: one convolution with a
    /// bias instead of a convolution and a pass of batch norm over its output (the usual
    /// deployment form). The model's own weights are untouched and training passes are
    /// unchanged; a later change to the weights is not seen until [`ConvNormAct::unfold_norm`]
    /// and a new fold.
    pub fn fold_norm(&self) -> TResult<()> {
        let folded = tch::no_grad(|| {
            let (scale, shift) = self.norm.scale_shift()?;
            self.conv.folded(&scale, &shift)
        })?;
        *self.folded.borrow_mut() = Some(folded);
        Ok(())
    }

    /// Drops the folded weights: evaluation-mode passes use the convolution and batch norm again.
    pub fn unfold_norm(&self) {
        self.folded.borrow_mut().take();
    }
}

/// Squeeze-and-excitation (Hu et al.; torchvision `SqueezeExcitation` with the network's
/// activation and sigmoid): global average pool, `fc1` 1×1 conv to `squeeze` channels, the
/// activation (SiLU in EfficientNet), `fc2` back, sigmoid, scale.
#[derive(Debug)]
pub struct SqueezeExcite {
    fc1: Conv2d,
    fc2: Conv2d,
    activation: Activation,
}

impl SqueezeExcite {
    pub fn new(p: &Path, channels: u32, squeeze: u32, activation: Activation) -> TResult<Self> {
        Ok(SqueezeExcite {
            fc1: Conv2d::new(&(p / "fc1"), ConvShape::pointwise(channels, squeeze), Bias::With)?,
            fc2: Conv2d::new(&(p / "fc2"), ConvShape::pointwise(squeeze, channels), Bias::With)?,
            activation,
        })
    }

    pub fn forward(&self, xs: &Tensor) -> TResult<Tensor> {
        // Pooled as torchvision pools (not `mean`): on channels-last input the pooled map keeps
        // channels-last strides, so the 1 × 1 convolutions after it run without reorders.
        let scale = xs.f_adaptive_avg_pool2d([1, 1])?;
        let scale = self.activation.forward(self.fc1.forward(&scale)?)?;
        let scale = self.fc2.forward(&scale)?.f_sigmoid()?;
        xs.f_mul(&scale)
    }
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
    /// A strided 1×1 conv + BN (ResNet's `downsample`).
    Projection(ConvNormAct),
}

/// A layer's main branch, its parts named as timm names them (`conv_pw`, `conv_dw`, `se`,
/// `conv_pwl`). Which parts a layer has depends on its op (the activation is the network's):
///
/// | op                  | `expand`     | `spatial`          | `squeeze_excite` | `project`          |
/// |---------------------|--------------|--------------------|------------------|--------------------|
/// | MBConv              | if e > 1     | depthwise k×k      | if se > 0        | 1×1, linear        |
/// | depthwise-separable | –            | depthwise k×k      | if se > 0        | 1×1, activation    |
/// | regular conv        | –            | full k×k           | if se > 0        | –                  |
/// | basic               | –            | full k×k (`conv1`) | –                | k×k, linear (`conv2`) |
/// | bottleneck          | 1×1 (`conv1`)| full k×k (`conv2`) | –                | 1×1, linear (`conv3`) |
///
/// Variable paths number the parts present in this order (`block.0`, `block.1`, …), as
/// torchvision's `nn.Sequential` does, so a B0 loads into torchvision's `efficientnet_b0`; the
/// residual blocks' parts are `conv1`/`bn1`, `conv2`/`bn2`, `conv3`/`bn3` directly under the
/// layer, as torchvision's `BasicBlock` and `Bottleneck` name them.
#[derive(Debug)]
struct Branch {
    /// 1×1 expansion to the hidden width (timm `conv_pw`).
    expand: Option<ConvNormAct>,
    /// The k×k convolution carrying the stride: depthwise (timm `conv_dw`), or a full
    /// convolution in a regular-conv layer.
    spatial: ConvNormAct,
    /// Squeeze-and-excitation on the spatial convolution's output (timm `se`).
    squeeze_excite: Option<SqueezeExcite>,
    /// 1×1 projection to the output channels (timm `conv_pwl`).
    project: Option<ConvNormAct>,
}

/// Paths of a branch's parts in order, numbered as torchvision's `nn.Sequential` numbers its
/// layers (`block.0`, `block.1`, …); a part that is absent takes no number.
struct PartPaths<'a> {
    body: Path<'a>,
    next: usize,
}

impl<'a> PartPaths<'a> {
    fn next(&mut self) -> Path<'a> {
        let path = &self.body / self.next;
        self.next += 1;
        path
    }

    /// Squeeze-and-excitation over `channels` down to `squeeze` when the block has it.
    fn squeeze_excite(
        &mut self,
        squeeze: Option<u32>,
        channels: u32,
        activation: Activation,
    ) -> TResult<Option<SqueezeExcite>> {
        match squeeze {
            Some(squeeze) => Ok(Some(SqueezeExcite::new(&self.next(), channels, squeeze, activation)?)),
            None => Ok(None),
        }
    }

    fn conv(&mut self, shape: ConvShape, activation: Activation, norm: NormConfig) -> TResult<ConvNormAct> {
        ConvNormAct::new(&self.next(), shape, activation, norm)
    }
}

/// What every layer of a network shares: batch-norm settings and the activation.
#[derive(Debug, Clone, Copy, PartialEq)]
pub struct LayerStyle {
    pub norm: NormConfig,
    pub activation: Activation,
}

impl Branch {
    /// The branch of layer `layer` of `block` at `p` (the layer's path: the MnasNet operators'
    /// parts go under `p.block`, the residual blocks' directly under `p`).
    fn new(p: &Path<'_>, block: &BlockSpec, layer: u32, style: LayerStyle) -> TResult<Self> {
        let mut parts = PartPaths { body: p / "block", next: 0 };
        let LayerStyle { norm, activation: act } = style;
        let (c_in, c_out) = block.layer_channels(layer);
        let (k, stride) = (block.kernel, block.layer_stride(layer));
        // The squeeze width comes from the layer's input channels (MnasNet, torchvision).
        let squeeze = block.se_channels(c_in);
        // torchvision's ResNet names: `conv{i}` and `bn{i}` side by side.
        let resnet_conv = |i: u32, shape: ConvShape, activation: Activation| {
            ConvNormAct::named(&(p / format!("conv{i}")), &(p / format!("bn{i}")), shape, activation, norm)
        };
        match block.op {
            Op::MBConv => {
                let hidden = block.hidden_channels(c_in);
                let expand = if hidden != c_in {
                    Some(parts.conv(ConvShape::pointwise(c_in, hidden), act, norm)?)
                } else {
                    None
                };
                let spatial = parts.conv(ConvShape::depthwise(hidden, k).stride(stride), act, norm)?;
                let squeeze_excite = parts.squeeze_excite(squeeze, hidden, act)?;
                let project = parts.conv(ConvShape::pointwise(hidden, c_out), Activation::Linear, norm)?;
                Ok(Branch { expand, spatial, squeeze_excite, project: Some(project) })
            }
            Op::DepthwiseSeparable => {
                let spatial = parts.conv(ConvShape::depthwise(c_in, k).stride(stride), act, norm)?;
                let squeeze_excite = parts.squeeze_excite(squeeze, c_in, act)?;
                let project = parts.conv(ConvShape::pointwise(c_in, c_out), act, norm)?;
                Ok(Branch { expand: None, spatial, squeeze_excite, project: Some(project) })
            }
            Op::Conv => {
                let spatial = parts.conv(ConvShape::new(c_in, c_out, k).stride(stride), act, norm)?;
                let squeeze_excite = parts.squeeze_excite(squeeze, c_out, act)?;
                Ok(Branch { expand: None, spatial, squeeze_excite, project: None })
            }
            Op::Projection => {
                let shape = ConvShape::new(c_in, c_out, k).stride(stride);
                let spatial = parts.conv(shape, Activation::Linear, norm)?;
                Ok(Branch { expand: None, spatial, squeeze_excite: None, project: None })
            }
            Op::Basic => {
                let spatial = resnet_conv(1, ConvShape::new(c_in, c_out, k).stride(stride), act)?;
                let project = resnet_conv(2, ConvShape::new(c_out, c_out, k), Activation::Linear)?;
                Ok(Branch { expand: None, spatial, squeeze_excite: None, project: Some(project) })
            }
            Op::Bottleneck => {
                let width = block.hidden_channels(c_in);
                let expand = resnet_conv(1, ConvShape::pointwise(c_in, width), act)?;
                let spatial = resnet_conv(2, ConvShape::new(width, width, k).stride(stride), act)?;
                let project = resnet_conv(3, ConvShape::pointwise(width, c_out), Activation::Linear)?;
                Ok(Branch { expand: Some(expand), spatial, squeeze_excite: None, project: Some(project) })
            }
        }
    }

    fn convolutions(&self) -> impl Iterator<Item = &ConvNormAct> {
        self.expand.iter().chain(Some(&self.spatial)).chain(self.project.iter())
    }

    fn forward(&self, xs: &Tensor, train: bool) -> TResult<Tensor> {
        let mut ys = match &self.expand {
            Some(expand) => expand.forward(xs, train)?,
            None => xs.shallow_clone(),
        };
        ys = self.spatial.forward(&ys, train)?;
        if let Some(se) = &self.squeeze_excite {
            ys = se.forward(&ys)?;
        }
        match &self.project {
            Some(project) => project.forward(&ys, train),
            None => Ok(ys),
        }
    }
}

/// One layer of a block: the main branch (`p.block.N`, or `p.conv1` … for residual blocks)
/// and its shortcut (`p.shortcut` for a pooling one with parameters, `p.downsample` for ResNet's
/// projection). With a shortcut, the branch is dropped per sample with probability
/// `drop_rate` while training (stochastic depth, "row" mode, scaled by 1 / (1 − p)). Residual
/// blocks apply the activation after the addition (`after_add`).
#[derive(Debug)]
pub struct Layer {
    branch: Branch,
    shortcut: LayerShortcut,
    drop_rate: f64,
    after_add: Activation,
}

impl Layer {
    /// Layer `layer` (0-based) of `block` at `p`, with its stochastic-depth rate.
    pub fn new(p: &Path, block: &BlockSpec, layer: u32, drop_rate: f64, style: LayerStyle) -> TResult<Self> {
        let branch = Branch::new(p, block, layer, style)?;
        let (c_in, c_out) = block.layer_channels(layer);
        let stride = block.layer_stride(layer);
        let shortcut = match block.layer_shortcut(layer) {
            Shortcut::None => LayerShortcut::None,
            Shortcut::Identity => LayerShortcut::Identity,
            Shortcut::Pool { project } => LayerShortcut::Pool {
                stride: i64::from(stride),
                project: if project {
                    let shape = ConvShape::pointwise(c_in, c_out);
                    Some(ConvNormAct::new(&(p / "shortcut"), shape, Activation::Linear, style.norm)?)
                } else {
                    None
                },
            },
            Shortcut::Projection => {
                let shape = ConvShape::pointwise(c_in, c_out).stride(stride);
                LayerShortcut::Projection(ConvNormAct::new(
                    &(p / "downsample"),
                    shape,
                    Activation::Linear,
                    style.norm,
                )?)
            }
        };
        let after_add = if block.op.is_residual() { style.activation } else { Activation::Linear };
        Ok(Layer { branch, shortcut, drop_rate, after_add })
    }

    /// Every convolution of the layer with its batch norm (the branch's, then the shortcut's).
    pub fn conv_norm_acts(&self) -> Vec<&ConvNormAct> {
        let mut convs: Vec<&ConvNormAct> = self.branch.convolutions().collect();
        match &self.shortcut {
            LayerShortcut::Pool { project: Some(c), .. } | LayerShortcut::Projection(c) => convs.push(c),
            LayerShortcut::Pool { project: None, .. } | LayerShortcut::Identity | LayerShortcut::None => {}
        }
        convs
    }

    /// Every batch norm of the layer.
    pub fn norms(&self) -> Vec<&BatchNorm> {
        self.conv_norm_acts().into_iter().map(ConvNormAct::norm).collect()
    }

    /// `train` selects batch statistics; `stochastic` enables stochastic depth.
    pub fn forward(&self, xs: &Tensor, train: bool, stochastic: bool) -> TResult<Tensor> {
        let ys = self.branch.forward(xs, train)?;
        let shortcut = match &self.shortcut {
            LayerShortcut::None => return self.after_add.apply(ys, train),
            LayerShortcut::Identity => xs.shallow_clone(),
            LayerShortcut::Projection(conv) => conv.forward(xs, train)?,
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
        let mut ys = if stochastic && self.drop_rate > 0.0 { drop_path(&ys, self.drop_rate)? } else { ys };
        // The branch's output is this layer's own (never the input), so outside training the
        // shortcut is added into it.
        if train || ys.requires_grad() {
            ys = ys.f_add(&shortcut)?;
        } else {
            let _ = ys.f_add_(&shortcut)?;
        }
        self.after_add.apply(ys, train)
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
