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
        let stem_shape = ConvShape::new(arch.input_channels, arch.stem_channels, arch.stem_kernel).stride(2);
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
        })
    }

    pub fn set_precision(&mut self, precision: Precision) {
        self.precision = precision;
    }

    pub fn precision(&self) -> Precision {
        self.precision
    }

    /// The forward pass, fallible: images `[N, C, H, W]` (float) → logits `[N, classes]` (fp32).
    /// `train` selects batch statistics, stochastic depth and dropout.
    pub fn try_forward(&self, xs: &Tensor, train: bool) -> Result<Tensor, TchError> {
        self.forward_mode(xs, train, train)
    }

    fn norms(&self) -> Vec<&blocks::BatchNorm> {
        let mut norms = vec![self.stem.norm()];
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

    fn forward_mode(&self, xs: &Tensor, train: bool, stochastic: bool) -> Result<Tensor, TchError> {
        let kind = self.precision.kind();
        let xs = if xs.kind() == kind { xs.shallow_clone() } else { xs.f_to_kind(kind)? };
        let mut ys = self.stem.forward(&xs, train)?;
        if self.stem_max_pool {
            // 3×3, stride 2, padding 1 (torchvision's ResNet).
            ys = ys.f_max_pool2d([3, 3], [2, 2], [1, 1], [1, 1], false)?;
        }
        for layer in &self.layers {
            ys = layer.forward(&ys, train, stochastic)?;
        }
        if let Some(head) = &self.head {
            ys = head.forward(&ys, train)?;
        }
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
}

impl Model {
    /// Builds `arch` on `device` with reference batch norm.
    pub fn new(arch: &ArchSpec, device: Device) -> Result<Self> {
        Model::with_norm(arch, device, NormConfig::default())
    }

    pub fn with_norm(arch: &ArchSpec, device: Device, norm: NormConfig) -> Result<Self> {
        let vs = nn::VarStore::new(device);
        let net = Network::with_norm(&vs.root(), arch, norm)?;
        Ok(Model { arch: arch.clone(), vs, net })
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
}
