//! Data sets for proxy training: in-memory image sets and the readers that fill them.
//!
//! An [`ImageSet`] is a uint8 tensor `[N, C, H, W]` with int64 labels `[N]`, read to the CPU and
//! small enough to be moved to the training device and batched there; it is the one image-set
//! type of the crate (the proxy's training, validation and test sets are `ImageSet`s too).
//! [`channel_stats`] is the one place that computes per-channel pixel statistics. [`load`] reads:
//!
//! - `fashion-mnist` (the default, [`DEFAULT_DATASET`]): Debian's `dataset-fashion-mnist` files in
//!   [`FASHION_MNIST_DIR`], IDX format ([`DataFormat::Idx`]).
//! - any other argument is a folder path whose format is detected, in this order:
//!   1. IDX in the MNIST layout when it holds `train-images-idx3-ubyte[.gz]` (see `idx.rs`);
//!   2. CIFAR-10 binary batches when it holds `data_batch_N.bin`, or holds the tarball's
//!      `cifar-10-batches-bin/` with them (see `cifar.rs`);
//!   3. an image folder when it holds sub-folders: one per class, or `train/` and `test/`
//!      (or `val/`) with one per class inside (see `folder.rs`).
//!
//!   To read a local folder that happens to be called `fashion-mnist`, write `./fashion-mnist`.
//!
//! The proxy split (a seeded, stratified validation set held out of the training set, and the
//! image budget drawn from the rest) is in `split.rs`: [`ImageSet::split_validation`] and
//! [`ImageSet::take`]. [`ImageSet::select_classes`] keeps some classes, relabelled (`classes.rs`).

mod cifar;
mod classes;
mod error;
mod folder;
mod idx;
mod split;

use std::fmt;
use std::path::{Path, PathBuf};

use tch::{Kind, Tensor};

pub use cifar::CIFAR10_CLASSES;
pub use classes::{format_class_list, parse_class_list};
pub use error::DataError;
pub use idx::{FASHION_MNIST_CLASSES, IMAGES_MAGIC, LABELS_MAGIC};

/// The data set `effnas train` uses when none is named.
pub const DEFAULT_DATASET: &str = "fashion-mnist";
/// Where Debian's `dataset-fashion-mnist` package installs Fashion-MNIST.
pub const FASHION_MNIST_DIR: &str = "/usr/share/datasets/fashion-mnist";

/// The on-disk format a data set was read from.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash)]
pub enum DataFormat {
    /// IDX files in the MNIST layout (MNIST, Fashion-MNIST).
    Idx,
    /// CIFAR-10 binary batches.
    Cifar10,
    /// One sub-folder of PNG/JPEG images per class.
    ImageFolder,
}

impl DataFormat {
    /// The name users see: `idx`, `cifar-10`, `image-folder`.
    pub fn as_str(self) -> &'static str {
        match self {
            DataFormat::Idx => "idx",
            DataFormat::Cifar10 => "cifar-10",
            DataFormat::ImageFolder => "image-folder",
        }
    }
}

impl fmt::Display for DataFormat {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(self.as_str())
    }
}

/// Images with their labels, in memory.
///
/// Invariants (checked by [`ImageSet::new`] and kept by every reader, split and copy): `images`
/// is uint8 `[N, C, H, W]`, `labels` is int64 `[N]` on the same device with values in
/// `0..num_classes`, and `num_classes == class_names.len()`. Readers and splits give sets on the
/// CPU; the trainer works on copies on its device ([`ImageSet::to_device`]).
#[derive(Debug)]
pub struct ImageSet {
    /// uint8 `[N, C, H, W]`, channel-first; C = 1 (grayscale) or 3 (RGB).
    pub images: Tensor,
    /// int64 `[N]`, class indices into `class_names`.
    pub labels: Tensor,
    pub num_classes: u32,
    /// Class names in label order.
    pub class_names: Vec<String>,
}

impl ImageSet {
    /// Wraps tensors as an image set after checking kinds, shapes and the label range.
    pub fn new(images: Tensor, labels: Tensor, class_names: Vec<String>) -> Result<ImageSet, DataError> {
        let bad = |reason: String| Err(DataError::InvalidArgument(format!("ImageSet::new: {reason}")));
        let (image_kind, label_kind) = (images.f_kind(), labels.f_kind());
        if !matches!(image_kind, Ok(Kind::Uint8)) || images.dim() != 4 {
            return bad(format!(
                "images must be uint8 [N, C, H, W], found {image_kind:?} {:?}",
                images.size()
            ));
        }
        if !matches!(label_kind, Ok(Kind::Int64)) || labels.dim() != 1 {
            return bad(format!("labels must be int64 [N], found {label_kind:?} {:?}", labels.size()));
        }
        if images.size()[0] != labels.size()[0] {
            return bad(format!("{} images but {} labels", images.size()[0], labels.size()[0]));
        }
        if class_names.is_empty() || class_names.len() > u32::MAX as usize {
            return bad(format!("{} class names", class_names.len()));
        }
        let set = ImageSet { images, labels, num_classes: class_names.len() as u32, class_names };
        let values = set.label_values()?;
        if let Some((index, &label)) =
            values.iter().enumerate().find(|(_, &l)| l < 0 || l >= i64::from(set.num_classes))
        {
            return bad(format!(
                "label {label} of image {index} is out of range for {} classes",
                set.num_classes
            ));
        }
        Ok(set)
    }

    /// [`ImageSet::new`] with the classes named by number, `0` to `num_classes − 1` (synthetic
    /// data, or a set whose class names are unknown).
    pub fn with_numbered_classes(
        images: Tensor,
        labels: Tensor,
        num_classes: u32,
    ) -> Result<ImageSet, DataError> {
        ImageSet::new(images, labels, numbered_classes(num_classes))
    }

    /// Builds a set from a reader's output (labels already checked against the classes).
    pub(crate) fn from_parts(
        images: Tensor,
        labels: Vec<i64>,
        class_names: Vec<String>,
    ) -> Result<ImageSet, DataError> {
        let labels = Tensor::f_from_slice(&labels).map_err(DataError::torch("copying labels"))?;
        Ok(ImageSet { images, labels, num_classes: class_names.len() as u32, class_names })
    }

    /// A second handle on the same tensors (no pixels are copied).
    pub fn shallow_clone(&self) -> ImageSet {
        ImageSet {
            images: self.images.shallow_clone(),
            labels: self.labels.shallow_clone(),
            num_classes: self.num_classes,
            class_names: self.class_names.clone(),
        }
    }

    /// The same set on `device` (the same tensors when already there).
    pub fn to_device(&self, device: tch::Device) -> Result<ImageSet, tch::TchError> {
        Ok(ImageSet {
            images: self.images.f_to_device(device)?,
            labels: self.labels.f_to_device(device)?,
            num_classes: self.num_classes,
            class_names: self.class_names.clone(),
        })
    }

    /// The same labels with other images of the same count (e.g. resized ones).
    pub(crate) fn with_images(&self, images: Tensor) -> ImageSet {
        ImageSet {
            images,
            labels: self.labels.shallow_clone(),
            num_classes: self.num_classes,
            class_names: self.class_names.clone(),
        }
    }

    /// Number of images.
    pub fn len(&self) -> usize {
        self.labels.size().first().copied().unwrap_or(0) as usize
    }

    pub fn is_empty(&self) -> bool {
        self.len() == 0
    }

    pub fn channels(&self) -> i64 {
        self.images.size()[1]
    }

    pub fn height(&self) -> i64 {
        self.images.size()[2]
    }

    pub fn width(&self) -> i64 {
        self.images.size()[3]
    }

    /// The labels as a vector.
    pub fn label_values(&self) -> Result<Vec<i64>, DataError> {
        let len = self.len();
        let mut values = vec![0i64; len];
        self.labels.f_copy_data(&mut values, len).map_err(DataError::torch("reading labels"))?;
        Ok(values)
    }

    /// Number of images of each class, in label order.
    pub fn class_counts(&self) -> Result<Vec<usize>, DataError> {
        let mut counts = vec![0usize; self.num_classes as usize];
        for label in self.label_values()? {
            if let Some(count) = usize::try_from(label).ok().and_then(|l| counts.get_mut(l)) {
                *count += 1;
            }
        }
        Ok(counts)
    }

    /// The images at `indices`, in that order (repeats allowed).
    pub fn subset(&self, indices: &[i64]) -> Result<ImageSet, DataError> {
        let len = self.len() as i64;
        if let Some(&bad) = indices.iter().find(|&&i| i < 0 || i >= len) {
            return Err(DataError::InvalidArgument(format!(
                "index {bad} out of range for a set of {len} images"
            )));
        }
        let index = Tensor::f_from_slice(indices).map_err(DataError::torch("subset indices"))?;
        let images = self.images.f_index_select(0, &index).map_err(DataError::torch("subset images"))?;
        let labels = self.labels.f_index_select(0, &index).map_err(DataError::torch("subset labels"))?;
        Ok(ImageSet { images, labels, num_classes: self.num_classes, class_names: self.class_names.clone() })
    }

    /// Per-channel mean and standard deviation of the pixels scaled to `[0, 1]`: see
    /// [`channel_stats`].
    pub fn channel_stats(&self) -> Result<(Vec<f64>, Vec<f64>), DataError> {
        channel_stats(&self.images).map_err(DataError::torch("pixel statistics"))
    }
}

/// Class names `0` to `n − 1`.
pub fn numbered_classes(n: u32) -> Vec<String> {
    (0..n).map(|c| c.to_string()).collect()
}

/// Per-channel mean and standard deviation of uint8 images `[N, C, H, W]` (on any device), of
/// the pixels scaled to `[0, 1]`, for normalisation. Exact: computed from a 256-bin histogram per
/// channel. The standard deviation is the population one (divided by the pixel count). No
/// pixels give mean 0 and std 1 (normalising by them changes nothing). The one computation of
/// channel statistics in the crate: [`ImageSet::channel_stats`] and the trainer's
/// normalisation (`train::Normalizer`) both use it.
pub fn channel_stats(images: &Tensor) -> Result<(Vec<f64>, Vec<f64>), tch::TchError> {
    let channels = images.size().get(1).copied().unwrap_or(0);
    let (mut means, mut stds) = (Vec::new(), Vec::new());
    for c in 0..channels {
        let histogram = images.f_select(1, c)?.f_flatten(0, -1)?.f_bincount::<Tensor>(None, 256)?;
        let mut counts = vec![0i64; 256];
        histogram.f_to_device(tch::Device::Cpu)?.f_copy_data(&mut counts, 256)?;
        let (mean, std) = histogram_stats(&counts);
        means.push(mean);
        stds.push(std);
    }
    Ok((means, stds))
}

/// Mean and population standard deviation, scaled to `[0, 1]`, of the pixels counted by a
/// 256-bin histogram; (0, 1) for an empty one.
fn histogram_stats(counts: &[i64]) -> (f64, f64) {
    let total: i64 = counts.iter().sum();
    if total == 0 {
        return (0.0, 1.0);
    }
    // Integer sums are exact: at most 2^31 pixels × 255² fits in i128 with room to spare.
    let (mut sum, mut sum_sq) = (0i128, 0i128);
    for (value, &count) in counts.iter().enumerate() {
        sum += value as i128 * i128::from(count);
        sum_sq += (value * value) as i128 * i128::from(count);
    }
    let n = total as f64;
    // Var = (n·Σx² − (Σx)²) / n², computed in integers to avoid cancellation.
    let variance = (i128::from(total) * sum_sq - sum * sum) as f64 / (n * n);
    (sum as f64 / n / 255.0, variance.max(0.0).sqrt() / 255.0)
}

/// A data set as read from disk: its training set and, when the source has one, its test set.
#[derive(Debug)]
pub struct Dataset {
    /// `fashion-mnist` for the named set, otherwise the folder's name.
    pub name: String,
    pub format: DataFormat,
    /// The folder it was read from.
    pub source: PathBuf,
    pub train: ImageSet,
    pub test: Option<ImageSet>,
}

impl fmt::Display for Dataset {
    /// One line for progress output, e.g.
    /// `fashion-mnist (idx, /usr/share/datasets/fashion-mnist): 60000 train + 10000 test images, 1×28×28, 10 classes`.
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        let t = &self.train;
        write!(f, "{} ({}, {}): {} train", self.name, self.format, self.source.display(), t.len())?;
        if let Some(test) = &self.test {
            write!(f, " + {} test", test.len())?;
        }
        write!(f, " images, {}×{}×{}, {} classes", t.channels(), t.height(), t.width(), t.num_classes)
    }
}

/// Loads a named data set (`fashion-mnist`, case-insensitive) or the data set in a folder,
/// detecting its format as the module docs describe.
pub fn load(name_or_path: &str) -> Result<Dataset, DataError> {
    if name_or_path.eq_ignore_ascii_case(DEFAULT_DATASET) {
        let dir = Path::new(FASHION_MNIST_DIR);
        if !dir.is_dir() {
            return Err(DataError::NamedMissing {
                name: DEFAULT_DATASET.into(),
                path: dir.into(),
                hint: "install Debian's dataset-fashion-mnist package, or pass the path of a folder holding the IDX files",
            });
        }
        let (train, test) = idx::load_dir(dir, Some(fashion_names()))?;
        return Ok(Dataset {
            name: DEFAULT_DATASET.into(),
            format: DataFormat::Idx,
            source: dir.into(),
            train,
            test,
        });
    }
    load_path(Path::new(name_or_path))
}

/// Loads the data set in a folder, detecting its format.
///
/// An IDX folder whose name contains `fashion` (any case) gets Fashion-MNIST's class names (and
/// its labels must be below 10); other IDX folders name their classes by number.
pub fn load_path(path: &Path) -> Result<Dataset, DataError> {
    if !path.exists() {
        return Err(DataError::Missing { path: path.into() });
    }
    if !path.is_dir() {
        return Err(DataError::Malformed {
            path: path.into(),
            reason: "is a file; expected a folder holding a data set".into(),
        });
    }
    let canonical = path.canonicalize().map_err(|e| DataError::io(path, e))?;
    let name = canonical
        .file_name()
        .map(|n| n.to_string_lossy().into_owned())
        .unwrap_or_else(|| path.display().to_string());
    let dataset = |format, source: &Path, (train, test)| Dataset {
        name: name.clone(),
        format,
        source: source.into(),
        train,
        test,
    };

    if idx::detect(path) {
        let names = name.to_ascii_lowercase().contains("fashion").then(fashion_names);
        return Ok(dataset(DataFormat::Idx, path, idx::load_dir(path, names)?));
    }
    if let Some(batches) = cifar::batches_dir(path) {
        return Ok(dataset(DataFormat::Cifar10, &batches, cifar::load_dir(&batches)?));
    }
    if folder::detect(path) {
        return Ok(dataset(DataFormat::ImageFolder, path, folder::load_dir(path)?));
    }
    let empty = std::fs::read_dir(path).map_err(|e| DataError::io(path, e))?.next().is_none();
    if empty {
        Err(DataError::EmptyFolder { path: path.into() })
    } else {
        Err(DataError::UnknownFormat { path: path.into() })
    }
}

/// One PNG or JPEG file as uint8 `[1, C, H, W]` at its own size, with `channels` channels (1:
/// luma, 3: RGB; other counts are refused).
pub fn read_image(path: &Path, channels: u32) -> Result<Tensor, DataError> {
    if channels != 1 && channels != 3 {
        return Err(DataError::InvalidArgument(format!("images have 1 or 3 channels, not {channels}")));
    }
    if !path.exists() {
        return Err(DataError::Missing { path: path.into() });
    }
    if path.is_dir() {
        return Err(DataError::Malformed {
            path: path.into(),
            reason: "is a folder; expected an image file".into(),
        });
    }
    folder::read_image(path, channels as usize)
}

fn fashion_names() -> Vec<String> {
    FASHION_MNIST_CLASSES.iter().map(|s| s.to_string()).collect()
}
