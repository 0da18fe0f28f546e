//! `ArchSpec` → libtorch network (the builder), and a `Model` that owns its `VarStore`.
//!
//! The builder is the only code that walks the architecture; the layers live in [`blocks`].
//! The network is EfficientNet's (Tan & Le, 2019, Table 1) generalised to the MnasNet search
//! space (Tan et al., 2019, §4.1): a 3×3 stride-2 stem, the blocks, a 1×1 head, global average
//! pooling, dropout and a linear classifier, with stochastic depth whose rate grows linearly
//! with the layer index (`drop_connect × index / layers`, as torchvision and the TF reference).
//!
//! # Variable names and PyTorch interchange
//! Variables follow torchvision's `efficientnet_b*` state dict: `features.0.0.weight` (stem
//! conv), `features.0.1.*` (stem BN), `features.{s}.{l}.block.{i}.…` for layer `l` of block
//! `s` (1-based), `features.{blocks+1}.*` (head), `classifier.1.weight`/`.bias`. SE convolutions
//! are `….block.{i}.fc1`/`fc2`. A pooling shortcut's projection (not in torchvision) is
//! `features.{s}.{l}.shortcut.0`/`.1`. For the EfficientNet presets the names, shapes and count
//! of every tensor equal torchvision's, so a B0 trained here loads into
//! `torchvision.models.efficientnet_b0(num_classes=…)` with `load_state_dict(..., strict=True)`
//! (see [`checkpoint`] and docs/BENCHMARKS.md for how to read the safetensors file in Python).
//! torchvision's BN defaults differ (eps 1e-5, momentum 0.1); ours follow the TF reference.
//!
//! A network made only of residual blocks (basic, bottleneck) takes torchvision's ResNet names
//! instead: `conv1`/`bn1` (stem), `layer{s}.{l}.conv1`/`bn1`/… with `layer{s}.{l}.downsample.0`/`.1`
//! for a projection shortcut, `fc.weight`/`.bias`, and `head.0`/`.1` for a head convolution,
//! which torchvision's ResNet lacks. The ResNet presets then load into
//! `torchvision.models.resnet18/34/50(num_classes=…)` with `strict=True` (ResNet's stem is the
//! 7×7 convolution and 3×3 max-pool of He et al., 2016, Table 1; the max-pool has no weights).

pub mod blocks;
pub mod checkpoint;

use effnas_space::ArchSpec;
use tch::{nn, nn::ModuleT, Device, Kind, TchError, Tensor};

pub use blocks::NormConfig;
use blocks::{Activation, ConvNormAct, ConvShape, Layer, LayerStyle};

use crate::error::Result;

/// The arithmetic a network computes in. Weights always stay fp32 (the master copy).
#[derive(Debug, Clone, Copy, PartialEq, Eq, Default, serde::Serialize, serde::Deserialize)]
#[serde(rename_all = "lowercase")]
pub enum Precision {
    #[default]
    Fp32,
    /// bf16 activations and convolutions with fp32 weights, batch-norm parameters and loss: what
    /// PyTorch's bf16 autocast does for this network. tch's `autocast` only offers fp16, so
    /// the cast is explicit (each convolution casts its weight to the input's kind).
    Bf16,
}

impl Precision {
    pub fn kind(self) -> Kind {
        match self {
            Precision::Fp32 => Kind::Float,
            Precision::Bf16 => Kind::BFloat16,
        }
    }
}

/// Which reference checkpoint's variable names a network takes (see the module docs).
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Naming {
    /// torchvision's EfficientNet and MobileNetV2: `features.{i}…`, `classifier.1`.
    EfficientNet,
    /// torchvision's ResNet: `conv1`, `bn1`, `layer{s}.{l}…`, `fc`.
    ResNet,
}

impl Naming {
    /// ResNet's names for a network whose blocks are all residual blocks, EfficientNet's otherwise.
    pub fn of(arch: &ArchSpec) -> Self {
        if arch.blocks.iter().all(|b| b.op.is_residual()) {
            Naming::ResNet
        } else {
            Naming::EfficientNet
        }
    }
}

/// The built network: layers holding tensors that live in a `VarStore`.
#[derive(Debug)]
pub struct Network {
    stem: ConvNormAct,
    /// ResNet's 3×3 stride-2 max-pool after the stem.
    stem_max_pool: bool,
    layers: Vec<Layer>,
    head: Option<ConvNormAct>,
    classifier_weight: Tensor,
    classifier_bias: Tensor,
    dropout: f64,
    precision: Precision,
    /// Inputs are re-laid channels-last (NHWC strides) before the stem; see
    /// [`Model::to_channels_last`].
    channels_last: bool,
    /// Parts that run as in evaluation even while training (see [`Frozen`]).
    frozen: Frozen,
}

/// Parts of a network that stay as they are while the rest trains (a fine-tuning with a frozen
/// backbone, see [`crate::transfer`]): they run as in evaluation in every forward pass, batch
/// norm on its running statistics (which are neither used from the batch nor updated) and
/// without stochastic depth, as a frozen backbone in PyTorch is usually put in `eval()` mode;
/// batch-norm recalibration leaves them alone. The classifier, and the dropout before it, are
/// never frozen here.
#[derive(Debug, Clone, Copy, Default, PartialEq, Eq)]
pub struct Frozen {
    /// The stem convolution and its batch norm.
    pub stem: bool,
    /// Every block and the head.
    pub body: bool,
}

impl Network {
    /// Builds `arch` under `root` (usually `vs.root()`), with reference batch norm.
    pub fn new(root: &nn::Path, arch: &ArchSpec) -> Result<Self> {
        Network::with_norm(root, arch, NormConfig::default())
    }

    /// Builds `arch` with explicit batch-norm settings.
    pub fn with_norm(root: &nn::Path, arch: &ArchSpec, norm: NormConfig) -> Result<Self> {
        arch.validate()?;
        let naming = Naming::of(arch);
        let style = LayerStyle { norm, activation: Activation::from(arch.activation) };
        let features = root / "features";
        let stem_shape = ConvShape::new(arch.input_channels, arch.stem_channels, arch.stem_kernel)
            .stride(arch.stem_stride);
        let stem = match naming {
            Naming::EfficientNet => ConvNormAct::new(&(&features / 0), stem_shape, style.activation, norm)?,
            Naming::ResNet => {
                ConvNormAct::named(&(root / "conv1"), &(root / "bn1"), stem_shape, style.activation, norm)?
            }
        };
        let total = f64::from(arch.num_layers());
        let mut layers = Vec::with_capacity(arch.num_layers() as usize);
        let mut index = 0u32;
        for (b, block) in arch.blocks.iter().enumerate() {
            let stage = match naming {
                Naming::EfficientNet => &features / (b + 1),
                Naming::ResNet => root / format!("layer{}", b + 1),
            };
            for l in 0..block.repeats {
                let rate = arch.drop_connect * f64::from(index) / total;
                layers.push(Layer::new(&(&stage / l), block, l, rate, style)?);
                index += 1;
            }
        }
        let head = match arch.head_channels {
            Some(channels) => {
                let path = match naming {
                    Naming::EfficientNet => &features / (arch.blocks.len() + 1),
                    Naming::ResNet => root / "head",
                };
                let shape = ConvShape::pointwise(arch.last_block_channels(), channels);
                Some(ConvNormAct::new(&path, shape, style.activation, norm)?)
            }
            None => None,
        };
        let classifier = match naming {
            Naming::EfficientNet => root / "classifier" / 1,
            Naming::ResNet => root / "fc",
        };
        let (features_in, classes) = (i64::from(arch.classifier_channels()), i64::from(arch.num_classes));
        let range = 1.0 / (classes as f64).sqrt();
        let classifier_weight = classifier.f_uniform("weight", &[classes, features_in], -range, range)?;
        let classifier_bias = classifier.f_zeros("bias", &[classes])?;
        Ok(Network {
            stem,
            stem_max_pool: arch.stem_max_pool,
            layers,
            head,
            classifier_weight,
            classifier_bias,
            dropout: arch.dropout,
            precision: Precision::Fp32,
            channels_last: false,
            frozen: Frozen::default(),
        })
    }

    pub fn set_precision(&mut self, precision: Precision) {
        self.precision = precision;
    }

    pub fn precision(&self) -> Precision {
        self.precision
    }

    /// Which parts run as in evaluation even while training.
    pub fn set_frozen(&mut self, frozen: Frozen) {
        self.frozen = frozen;
    }

    pub fn frozen(&self) -> Frozen {
        self.frozen
    }

    /// The classifier's weight `[classes, channels]` and bias `[classes]`.
    pub fn classifier(&self) -> (&Tensor, &Tensor) {
        (&self.classifier_weight, &self.classifier_bias)
    }

    /// The last feature map, before global pooling, in evaluation mode: `[N, K, h, w]` (fp32),
    /// where K is the classifier's input channels. The logits are
    /// `classifier(mean over h, w of this)`; class activation maps ([`crate::cam`]) weight it.
    pub fn try_features(&self, xs: &Tensor) -> Result<Tensor, TchError> {
        let ys = self.features_mode(xs, false, false)?;
        if ys.kind() == Kind::Float {
            Ok(ys)
        } else {
            ys.f_to_kind(Kind::Float)
        }
    }

    /// The forward pass, fallible: images `[N, C, H, W]` (float) → logits `[N, classes]` (fp32).
    /// `train` selects batch statistics, stochastic depth and dropout.
    pub fn try_forward(&self, xs: &Tensor, train: bool) -> Result<Tensor, TchError> {
        self.forward_mode(xs, train, train)
    }

    /// Runs `f` with every batch norm folded into the convolution before it
    /// ([`ConvNormAct::fold_norm`]): evaluation-mode passes inside `f` run one convolution
    /// with a bias where they ran a convolution and a batch norm, the same function up to
    /// rounding. For measuring inference as a deployed network runs it; the folding happens
    /// once, before `f`, and is undone after it (also when `f` panics), so training outside is
    /// unaffected. Training-mode passes inside `f` use the batch norms as usual.
    pub fn with_folded_norms<T>(&self, f: impl FnOnce() -> T) -> Result<T, TchError> {
        /// Unfolds what was folded, however the scope ends.
        struct Unfold<'a>(Vec<&'a ConvNormAct>);
        impl Drop for Unfold<'_> {
            fn drop(&mut self) {
                self.0.iter().for_each(|c| c.unfold_norm());
            }
        }
        let mut convs = vec![&self.stem];
        convs.extend(self.layers.iter().flat_map(Layer::conv_norm_acts));
        convs.extend(self.head.as_ref());
        let folded = Unfold(convs);
        for conv in &folded.0 {
            conv.fold_norm()?;
        }
        Ok(f())
    }

    /// The batch norms that train (those of frozen parts are left out).
    fn norms(&self) -> Vec<&blocks::BatchNorm> {
        let mut norms = Vec::new();
        if !self.frozen.stem {
            norms.push(self.stem.norm());
        }
        if self.frozen.body {
            return norms;
        }
        for layer in &self.layers {
            norms.extend(layer.norms());
        }
        if let Some(head) = &self.head {
            norms.push(head.norm());
        }
        norms
    }

    /// Re-estimates every batch norm's running statistics from `batches` (normalised float
    /// images) as an exact average over them, without stochastic depth or dropout, then
    /// restores the configured momentum. Short proxy trainings end with statistics that lag
    /// the last weights (an exponential average over a few hundred steps of fast-changing
    /// weights); recalibrating before evaluation removes that lag (the "BN calibration" of
    /// weight-sharing NAS, e.g. Once-for-All §3.2). Returns the number of batches used.
    pub fn recalibrate_batch_norm(
        &self,
        batches: impl IntoIterator<Item = Result<Tensor, TchError>>,
    ) -> Result<usize, TchError> {
        let norms = self.norms();
        for norm in &norms {
            norm.reset_running_stats()?;
        }
        let mut used = 0usize;
        let outcome = tch::no_grad(|| {
            for batch in batches {
                let batch = batch?;
                used += 1;
                // Cumulative average: the i-th batch gets weight 1 / i.
                for norm in &norms {
                    norm.set_momentum(Some(1.0 / used as f64));
                }
                let _ = self.forward_mode(&batch, true, false)?;
            }
            Ok(())
        });
        for norm in &norms {
            norm.set_momentum(None);
        }
        outcome.map(|()| used)
    }

    pub fn is_channels_last(&self) -> bool {
        self.channels_last
    }

    /// Stem, blocks and head: the feature map before pooling, in the network's precision.
    fn features_mode(&self, xs: &Tensor, train: bool, stochastic: bool) -> Result<Tensor, TchError> {
        let kind = self.precision.kind();
        let xs = if xs.kind() == kind { xs.shallow_clone() } else { xs.f_to_kind(kind)? };
        let xs = if self.channels_last { channels_last(&xs)? } else { xs };
        let mut ys = self.stem.forward(&xs, train && !self.frozen.stem)?;
        if self.stem_max_pool {
            // 3×3, stride 2, padding 1 (torchvision's ResNet).
            ys = ys.f_max_pool2d([3, 3], [2, 2], [1, 1], [1, 1], false)?;
        }
        let (train, stochastic) = (train && !self.frozen.body, stochastic && !self.frozen.body);
        for layer in &self.layers {
            ys = layer.forward(&ys, train, stochastic)?;
        }
        if let Some(head) = &self.head {
            ys = head.forward(&ys, train)?;
        }
        Ok(ys)
    }

    fn forward_mode(&self, xs: &Tensor, train: bool, stochastic: bool) -> Result<Tensor, TchError> {
        let kind = self.precision.kind();
        let ys = self.features_mode(xs, train, stochastic)?;
        let ys = ys.f_mean_dim(&[2i64, 3][..], false, None::<Kind>)?;
        let ys = if kind == Kind::Float { ys } else { ys.f_to_kind(Kind::Float)? };
        let ys = ys.f_dropout(self.dropout, stochastic)?;
        ys.f_linear(&self.classifier_weight, Some(&self.classifier_bias))
    }
}

impl ModuleT for Network {
    /// The infallible form for tch's APIs. Like tch's own modules it panics when libtorch fails;
    /// the trainer uses [`Network::try_forward`] so that out-of-memory is an error value.
    #[allow(clippy::panic)]
    fn forward_t(&self, xs: &Tensor, train: bool) -> Tensor {
        match self.try_forward(xs, train) {
            Ok(ys) => ys,
            Err(e) => panic!("network forward failed: {e}"),
        }
    }
}

/// A network with the `VarStore` that owns its weights and the architecture it was built from.
#[derive(Debug)]
pub struct Model {
    pub arch: ArchSpec,
    pub vs: nn::VarStore,
    pub net: Network,
    /// What a user of the network needs besides its weights (batch-norm eps, input
    /// normalisation, class names); saved by [`checkpoint::save`] as `meta.json`. The trainer
    /// fills in the normalisation and class names of the data it trained on.
    pub meta: checkpoint::Meta,
}

impl Model {
    /// Builds `arch` on `device` with reference batch norm.
    pub fn new(arch: &ArchSpec, device: Device) -> Result<Self> {
        Model::with_norm(arch, device, NormConfig::default())
    }

    pub fn with_norm(arch: &ArchSpec, device: Device, norm: NormConfig) -> Result<Self> {
        let vs = nn::VarStore::new(device);
        let net = Network::with_norm(&vs.root(), arch, norm)?;
        let meta = checkpoint::Meta { batch_norm_eps: norm.eps, ..checkpoint::Meta::default() };
        Ok(Model { arch: arch.clone(), vs, net, meta })
    }

    /// Trainable parameters (running statistics are buffers, not parameters): equals
    /// `effnas_space::cost(&arch).params`.
    pub fn num_parameters(&self) -> u64 {
        self.vs.trainable_variables().iter().map(|t| t.numel() as u64).sum()
    }

    pub fn device(&self) -> Device {
        self.vs.device()
    }

    /// Logits for a float batch.
    pub fn forward(&self, xs: &Tensor, train: bool) -> Result<Tensor> {
        Ok(self.net.try_forward(xs, train)?)
    }

    /// Lays every convolution kernel out channels-last (NHWC strides, NCHW sizes) and makes the
    /// network do the same to its inputs, so that convolutions, batch norms and element-wise
    /// operations all run on NHWC data: what PyTorch's `model.to(memory_format=channels_last)`
    /// does, which cuDNN's fastest bf16 kernels expect. Values, names and shapes are unchanged;
    /// a checkpoint saves contiguous copies. Do this before building an
    /// [`crate::optim::Optimizer`], which keeps each variable's layout.
    pub fn to_channels_last(&mut self) -> Result<()> {
        for mut var in self.vs.variables().into_values() {
            if var.dim() == 4 && !is_channels_last(&var) {
                let relaid = channels_last(&var)?;
                tch::no_grad(|| var.f_set_data(&relaid))?;
            }
        }
        self.net.channels_last = true;
        Ok(())
    }
}

/// `xs` (`[N, C, H, W]`) with exactly the NHWC strides of [`is_channels_last`]: permuted to
/// NHWC and made contiguous (no copy when the memory already has that order), then given the
/// strides PyTorch's `to(memory_format=torch.channels_last)` writes, dimensions of size one
/// included.
pub fn channels_last(xs: &Tensor) -> Result<Tensor, TchError> {
    if xs.dim() != 4 || is_channels_last(xs) {
        return Ok(xs.shallow_clone());
    }
    let nhwc = xs.f_permute([0, 2, 3, 1])?.f_contiguous()?.f_permute([0, 3, 1, 2])?;
    if is_channels_last(&nhwc) {
        return Ok(nhwc);
    }
    // Only the strides of dimensions of size one differ: the same memory, restrided (no
    // offset given: the tensor's own).
    nhwc.f_as_strided(nhwc.size(), nhwc_strides(&nhwc.size()), None::<i64>)
}

/// Whether a 4-D tensor has the channels-last strides `[H·W·C, 1, W·C, C]`, every dimension
/// included. A dimension of size one could take any stride without moving a byte, but
/// libtorch's kernels choose their layout from the strides: a 1 × 1 kernel or a `[N, C, 1, 1]`
/// activation strided `[C, 1, 1, 1]` is read as contiguous, and on the CPU each convolution
/// that meets one reorders its data to a blocked layout and back (measured with oneDNN's
/// verbose log; docs/BENCHMARKS.md).
pub fn is_channels_last(xs: &Tensor) -> bool {
    let size = xs.size();
    size.len() == 4 && xs.stride() == nhwc_strides(&size)
}

fn nhwc_strides(size: &[i64]) -> Vec<i64> {
    let (c, h, w) = (size[1], size[2], size[3]);
    vec![h * w * c, 1, w * c, c]
}

/// EfficientNet-B0 at width 0.25 (all 213 of its tensors, little arithmetic) for `classes` and
/// `resolution`, without stochastic depth or dropout (so two forward passes see one network).
#[cfg(test)]
pub(crate) fn quarter_b0(
    classes: u32,
    resolution: u32,
) -> std::result::Result<ArchSpec, effnas_space::SpaceError> {
    let quarter = effnas_space::Multipliers { width: 0.25, depth: 1.0, resolution: 1.0 };
    let mut arch = effnas_space::scale(&effnas_space::presets::efficientnet_b0(), quarter)?;
    arch.num_classes = classes;
    arch.resolution = resolution;
    arch.dropout = 0.0;
    arch.drop_connect = 0.0;
    Ok(arch)
}

/// Gives every batch norm random running statistics and bias (a fresh network's are 0 and 1,
/// which hide mistakes in code that uses them).
#[cfg(test)]
pub(crate) fn randomise_batch_norm(model: &Model) -> std::result::Result<(), TchError> {
    tch::no_grad(|| {
        for (name, var) in model.vs.variables() {
            if name.ends_with("running_mean") || name.ends_with(".bias") {
                var.shallow_clone().f_copy_(&var.f_randn_like()?.f_mul_scalar(0.1)?)?;
            } else if name.ends_with("running_var") {
                var.shallow_clone().f_copy_(&var.f_rand_like()?.f_add_scalar(0.5)?)?;
            }
        }
        Ok(())
    })
}

#[cfg(test)]
mod tests {
    use super::*;

    fn largest_gap(a: &Tensor, b: &Tensor) -> std::result::Result<f64, TchError> {
        (a - b).f_abs()?.f_max()?.f_double_value(&[])
    }

    /// Inside `with_folded_norms` evaluation passes give the logits of the unfolded network (B0
    /// with SiLU and squeeze-and-excitation, ResNet-18 with ReLU and projection shortcuts); they
    /// really run the folded weights (a change to the running statistics made inside the scope
    /// is not seen there, and is seen after it); and training passes are unchanged.
    #[test]
    fn folded_batch_norms_give_the_same_logits() -> std::result::Result<(), Box<dyn std::error::Error>> {
        tch::manual_seed(11);
        let quarter = effnas_space::Multipliers { width: 0.25, depth: 1.0, resolution: 1.0 };
        let mut resnet =
            effnas_space::scale(&effnas_space::presets::preset("resnet-18").ok_or("preset")?, quarter)?;
        resnet.num_classes = 10;
        for (name, arch) in [("b0", quarter_b0(10, 64)?), ("resnet-18", resnet)] {
            let model = Model::new(&arch, Device::Cpu)?;
            randomise_batch_norm(&model)?;
            let xs = Tensor::f_randn([4, 3, 64, 64], (Kind::Float, Device::Cpu))?;
            // A training pass first: it moves the running statistics, which the plain pass reads.
            let trained = model.forward(&xs, true)?;
            let plain = tch::no_grad(|| model.forward(&xs, false))?;
            let variances: Vec<Tensor> = model
                .vs
                .variables()
                .into_iter()
                .filter(|(name, _)| name.ends_with("running_var"))
                .map(|(_, v)| v)
                .collect();
            let (folded, stale, in_training) = model.net.with_folded_norms(|| {
                let folded = tch::no_grad(|| model.forward(&xs, false))?;
                tch::no_grad(|| {
                    variances.iter().try_for_each(|v| v.shallow_clone().f_mul_scalar_(4.0).map(drop))
                })?;
                let stale = tch::no_grad(|| model.forward(&xs, false))?;
                let in_training = model.forward(&xs, true)?;
                Ok::<_, Box<dyn std::error::Error>>((folded, stale, in_training))
            })??;
            let scale = plain.f_abs()?.f_max()?.f_double_value(&[])?;
            let gap = largest_gap(&folded, &plain)?;
            assert!(gap < 1e-4 * scale.max(1.0), "{}: folded logits differ by {gap} (scale {scale})", name);
            assert_eq!(largest_gap(&stale, &folded)?, 0.0, "{}: the fold was not used", name);
            let after = tch::no_grad(|| model.forward(&xs, false))?;
            assert!(
                largest_gap(&after, &plain)? > 1e-3,
                "{}: the statistics changed in the scope are not seen after it",
                name
            );
            assert!(
                largest_gap(&in_training, &trained)? < 1e-4 * scale.max(1.0),
                "{}: a training pass changed",
                name
            );
        }
        Ok(())
    }

    /// After `to_channels_last`, every kernel has NHWC strides and so does every activation
    /// between the stem and the pooling (strides behave on the CPU as on a GPU), and the logits
    /// are those of the contiguous network.
    #[test]
    fn channels_last_is_kept_through_the_network() -> std::result::Result<(), Box<dyn std::error::Error>> {
        // At 64 px B0's last stage is still 2 × 2 (a 1 × 1 activation's strides are ambiguous,
        // and libtorch's element-wise operations give them contiguous ones, in PyTorch too).
        let mut model = Model::new(&quarter_b0(10, 64)?, Device::Cpu)?;
        let xs = Tensor::f_randn([4, 3, 64, 64], (Kind::Float, Device::Cpu))?;
        let contiguous = model.forward(&xs, false)?;
        model.to_channels_last()?;
        let kernels: Vec<_> = model.vs.variables().into_iter().filter(|(_, v)| v.dim() == 4).collect();
        assert!(kernels.len() > 50, "{} kernels", kernels.len());
        for (name, kernel) in &kernels {
            assert!(is_channels_last(kernel), "{name}: strides {:?}", kernel.stride());
        }
        let net = &model.net;
        let mut ys = net.stem.forward(&channels_last(&xs)?, false)?;
        assert!(is_channels_last(&ys) && !ys.is_contiguous(), "stem: strides {:?}", ys.stride());
        for (i, layer) in net.layers.iter().enumerate() {
            ys = layer.forward(&ys, false, false)?;
            assert!(is_channels_last(&ys), "layer {i} of size {:?}: strides {:?}", ys.size(), ys.stride());
        }
        if let Some(head) = &net.head {
            ys = head.forward(&ys, false)?;
        }
        assert_eq!(ys.size()[2..], [2, 2]);
        assert!(is_channels_last(&ys) && !ys.is_contiguous(), "head: strides {:?}", ys.stride());
        let relaid = model.forward(&xs, false)?;
        let gap = (&relaid - &contiguous).f_abs()?.f_max()?.f_double_value(&[])?;
        assert!(gap < 1e-4, "logits differ by {gap}");
        Ok(())
    }

    #[test]
    fn channels_last_strides_are_recognised() -> std::result::Result<(), TchError> {
        let t = Tensor::f_zeros([2, 3, 4, 5], (Kind::Float, Device::Cpu))?;
        assert!(!is_channels_last(&t));
        let relaid = channels_last(&t)?;
        assert_eq!(relaid.stride(), vec![60, 1, 15, 3]);
        assert!(is_channels_last(&relaid));
        assert_eq!(relaid.size(), t.size());
        // Dimensions of size one get the strides libtorch reads as channels-last too: a 1 × 1
        // kernel, a pooled activation, one channel.
        for size in [[16, 8, 1, 1], [2, 8, 1, 1], [2, 1, 4, 5]] {
            let t = Tensor::f_randn(size, (Kind::Float, Device::Cpu))?;
            assert!(!is_channels_last(&t), "{size:?}: {:?}", t.stride());
            let relaid = channels_last(&t)?;
            assert!(is_channels_last(&relaid), "{size:?}: {:?}", relaid.stride());
            assert!(relaid.f_equal(&t)?, "{size:?}: values changed");
        }
        Ok(())
    }
}
