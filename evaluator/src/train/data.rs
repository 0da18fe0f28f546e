//! The proxy task's data ([`ProxyData`]) and what the trainer does to images on its device:
//! resizing once ([`resize_uint8`]), normalising each batch ([`Normalizer`]) and augmenting it.

use effnas_space::ArchSpec;
use rand::Rng;
use rand_chacha::ChaCha8Rng;
use tch::{Kind, TchError, Tensor};

use super::Augment;
use crate::data::{channel_stats, DataError, Dataset, ImageSet};
use crate::error::{EvalError, Result};

/// The proxy task's data: a training set, the validation set held out of the training set (as
/// MnasNet did) and optionally the test set, reported separately. All share their classes.
#[derive(Debug)]
pub struct ProxyData {
    pub train: ImageSet,
    pub validation: ImageSet,
    pub test: Option<ImageSet>,
    /// Data-set name for reports.
    pub name: String,
}

impl ProxyData {
    /// Checks that every set has images, the same channels and the same classes (at least 2).
    pub fn new(
        name: impl Into<String>,
        train: ImageSet,
        validation: ImageSet,
        test: Option<ImageSet>,
    ) -> Result<Self> {
        for (what, set) in
            [("training", Some(&train)), ("validation", Some(&validation)), ("test", test.as_ref())]
        {
            let Some(set) = set else { continue };
            if set.is_empty() {
                return Err(EvalError::Data(format!("the {what} set has no images")));
            }
            if set.channels() != train.channels() {
                return Err(EvalError::Data(format!(
                    "{what} images have {} channels, training images {}",
                    set.channels(),
                    train.channels()
                )));
            }
            if set.class_names != train.class_names {
                return Err(EvalError::Data(format!(
                    "the {what} set's {} classes are not the training set's {}",
                    set.num_classes, train.num_classes
                )));
            }
        }
        if train.num_classes < 2 {
            return Err(EvalError::Data(format!(
                "{} classes: a classifier needs at least 2",
                train.num_classes
            )));
        }
        Ok(ProxyData { train, validation, test, name: name.into() })
    }

    /// Proxy data from a loaded data set, as MnasNet did it: `validation` images held out of the
    /// training set (stratified, chosen by `data_seed`), then a budget of at most `train_images`
    /// of the remaining ones (`None`: all), and the test set when `with_test`. This is the only
    /// place the image budget is applied. Keep `data_seed` fixed across a search so every
    /// candidate sees the same split.
    pub fn from_dataset(
        dataset: &Dataset,
        validation: usize,
        train_images: Option<usize>,
        with_test: bool,
        data_seed: u64,
    ) -> Result<Self> {
        let data_err = |e: DataError| EvalError::Data(e.to_string());
        if validation < 1 {
            return Err(EvalError::config(
                "validation_images",
                "the proxy needs at least one validation image",
            ));
        }
        let (train, held_out) = dataset.train.split_validation(validation, data_seed).map_err(data_err)?;
        let train = match train_images {
            Some(n) => train.take(n, data_seed).map_err(data_err)?,
            None => train,
        };
        let test = dataset.test.as_ref().filter(|_| with_test).map(ImageSet::shallow_clone);
        ProxyData::new(dataset.name.clone(), train, held_out, test)
    }

    /// Input channels of the images.
    pub fn channels(&self) -> u32 {
        u32::try_from(self.train.channels()).unwrap_or(0)
    }

    /// Number of classes (shared by every set).
    pub fn num_classes(&self) -> u32 {
        self.train.num_classes
    }

    /// Handles on the same storage, for another thread.
    pub fn shallow_clone(&self) -> ProxyData {
        ProxyData {
            train: self.train.shallow_clone(),
            validation: self.validation.shallow_clone(),
            test: self.test.as_ref().map(ImageSet::shallow_clone),
            name: self.name.clone(),
        }
    }

    /// `arch` with the data's input channels and classes and the proxy resolution `resolution`
    /// (the architecture's own when `None`): what a search hands the trainer.
    pub fn adapt(&self, arch: &ArchSpec, resolution: Option<u32>) -> Result<ArchSpec> {
        let mut arch = arch.clone();
        arch.input_channels = self.channels();
        arch.num_classes = self.num_classes();
        if let Some(r) = resolution {
            arch.resolution = r;
        }
        arch.validate()?;
        Ok(arch)
    }

    /// An error when `arch` does not take these images or predict these classes.
    pub(crate) fn check_fits(&self, arch: &ArchSpec) -> Result<()> {
        if arch.input_channels != self.channels() {
            return Err(EvalError::Data(format!(
                "the architecture takes {} input channels, the images have {}",
                arch.input_channels,
                self.channels()
            )));
        }
        if arch.num_classes != self.num_classes() {
            return Err(EvalError::Data(format!(
                "the architecture has {} classes, the data set {}",
                arch.num_classes,
                self.num_classes()
            )));
        }
        Ok(())
    }
}

/// Per-channel normalisation folded into one multiply-add: `x · scale + shift` with
/// `scale = 1 / σ` and `shift = −μ / σ`, μ and σ in pixel units (0–255) from the training images.
#[derive(Debug)]
pub struct Normalizer {
    scale: Tensor,
    shift: Tensor,
    /// μ and σ of pixels scaled to [0, 1] (torchvision's convention), as a checkpoint keeps them.
    pub mean: Vec<f64>,
    pub std: Vec<f64>,
}

impl Normalizer {
    /// Statistics of uint8 images `[N, C, H, W]` ([`channel_stats`]), as tensors on their device.
    pub fn from_images(images: &Tensor) -> Result<Self, TchError> {
        let (means, stds) = channel_stats(images)?;
        Normalizer::from_stats(&means, &stds, images.device())
    }

    /// The normalisation by per-channel `means` and `stds` of pixels scaled to [0, 1] (a
    /// checkpoint's `meta.json`). σ is at least 10⁻³ pixel units, so a constant channel does
    /// not divide by zero.
    pub fn from_stats(means: &[f64], stds: &[f64], device: tch::Device) -> Result<Self, TchError> {
        let (mut scale, mut shift) = (Vec::new(), Vec::new());
        for (mean, std) in means.iter().zip(stds) {
            let (mean, std) = (mean * 255.0, (std * 255.0).max(1e-3));
            scale.push((1.0 / std) as f32);
            shift.push((-mean / std) as f32);
        }
        let shape = [1, scale.len() as i64, 1, 1];
        Ok(Normalizer {
            scale: Tensor::f_from_slice(&scale)?.f_reshape(shape)?.f_to_device(device)?,
            shift: Tensor::f_from_slice(&shift)?.f_reshape(shape)?.f_to_device(device)?,
            mean: means.to_vec(),
            std: stds.to_vec(),
        })
    }

    /// uint8 batch → normalised float batch (zero mean, unit variance per channel).
    pub fn apply(&self, images: &Tensor) -> Result<Tensor, TchError> {
        images.f_to_kind(Kind::Float)?.f_mul(&self.scale)?.f_add_(&self.shift)
    }
}

/// Resizes uint8 images to `resolution × resolution` (bilinear), in chunks, staying uint8.
pub fn resize_uint8(images: &Tensor, resolution: i64) -> Result<Tensor, TchError> {
    let size = images.size();
    if size[2] == resolution && size[3] == resolution {
        return Ok(images.shallow_clone());
    }
    let n = size[0];
    let chunk = 2048;
    let mut parts = Vec::new();
    let mut start = 0;
    while start < n {
        let len = chunk.min(n - start);
        let x = images.f_narrow(0, start, len)?.f_to_kind(Kind::Float)?;
        let y = x.f_upsample_bilinear2d([resolution, resolution], false, None, None)?;
        parts.push(y.f_round()?.f_clamp(0.0, 255.0)?.f_to_kind(Kind::Uint8)?);
        start += len;
    }
    Tensor::f_cat(&parts, 0)
}

/// `set` on `device`, resized to `resolution` (uint8 stays uint8).
pub(crate) fn prepare_set(
    set: &ImageSet,
    device: tch::Device,
    resolution: i64,
) -> Result<ImageSet, TchError> {
    let on_device = set.to_device(device)?;
    let images = resize_uint8(&on_device.images, resolution)?;
    Ok(on_device.with_images(images))
}

/// Random horizontal flips (per image) and one random crop of the zero-padded batch.
pub(crate) fn augment(xs: &Tensor, augment: Augment, rng: &mut ChaCha8Rng) -> Result<Tensor, TchError> {
    let mut xs = xs.shallow_clone();
    if augment.flip {
        let n = xs.size()[0];
        let flip = Tensor::f_rand([n, 1, 1, 1], (Kind::Float, xs.device()))?.f_lt(0.5)?;
        xs = xs.f_flip([3])?.f_where_self(&flip, &xs)?;
    }
    if augment.crop_padding > 0 {
        let p = i64::from(augment.crop_padding);
        let size = xs.size();
        let padded = xs.f_constant_pad_nd([p, p, p, p])?;
        let dy = rng.random_range(0..=2 * p);
        let dx = rng.random_range(0..=2 * p);
        xs = padded.f_narrow(2, dy, size[2])?.f_narrow(3, dx, size[3])?;
    }
    Ok(xs)
}
