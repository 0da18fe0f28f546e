//! IDX files in the MNIST layout (MNIST, Fashion-MNIST and their kin).
//!
//! The format is the one Yann LeCun describes at the bottom of <http://yann.lecun.com/exdb/mnist/>
//! ("THE IDX FILE FORMAT"): a 4-byte magic number whose first two bytes are zero, whose third byte
//! is the element type (`0x08`: unsigned byte) and whose fourth is the number of dimensions; then
//! one big-endian `u32` per dimension; then the elements in row-major order. Images files have the
//! magic 2051 (`00 00 08 03`, dimensions N × rows × columns) and labels files 2049
//! (`00 00 08 01`, dimension N). Files may be gzip-compressed (as distributed) or plain; the gzip
//! magic bytes decide, not the extension.
//!
//! A folder in the MNIST layout holds `train-images-idx3-ubyte`, `train-labels-idx1-ubyte` and
//! optionally `t10k-images-idx3-ubyte`, `t10k-labels-idx1-ubyte` (each possibly with `.gz`;
//! `test-` is accepted for `t10k-`, and `.idx3-ubyte` for `-idx3-ubyte`, as some mirrors name them).

use std::io::Read;
use std::path::{Path, PathBuf};

use tch::{Kind, Tensor};

use super::{DataError, ImageSet};

/// Magic number of an IDX file of unsigned bytes with three dimensions (images).
pub const IMAGES_MAGIC: u32 = 0x0000_0803;
/// Magic number of an IDX file of unsigned bytes with one dimension (labels).
pub const LABELS_MAGIC: u32 = 0x0000_0801;

/// Fashion-MNIST's class names, in label order (Xiao, Rasul and Vollgraf, 2017, table 1).
pub const FASHION_MNIST_CLASSES: [&str; 10] = [
    "T-shirt/top",
    "Trouser",
    "Pullover",
    "Dress",
    "Coat",
    "Sandal",
    "Shirt",
    "Sneaker",
    "Bag",
    "Ankle boot",
];

const TRAIN_PREFIXES: &[&str] = &["train"];
const TEST_PREFIXES: &[&str] = &["t10k", "test"];

/// Reads a whole file, inflating it when it starts with the gzip magic bytes `1f 8b`.
pub(crate) fn read_maybe_gzip(path: &Path) -> Result<Vec<u8>, DataError> {
    let raw = std::fs::read(path).map_err(|e| DataError::io(path, e))?;
    if raw.starts_with(&[0x1f, 0x8b]) {
        let mut inflated = Vec::with_capacity(raw.len() * 4);
        flate2::read::MultiGzDecoder::new(raw.as_slice())
            .read_to_end(&mut inflated)
            .map_err(|source| DataError::Gzip { path: path.to_path_buf(), source })?;
        Ok(inflated)
    } else {
        Ok(raw)
    }
}

/// An IDX file split into its dimensions and its elements.
struct Idx {
    dims: Vec<usize>,
    bytes: Vec<u8>,
    offset: usize,
}

impl Idx {
    fn data(&self) -> &[u8] {
        &self.bytes[self.offset..]
    }
}

fn be_u32(bytes: &[u8], at: usize) -> u32 {
    u32::from_be_bytes([bytes[at], bytes[at + 1], bytes[at + 2], bytes[at + 3]])
}

/// Reads an IDX file and checks its magic number and that its length matches its header exactly.
fn read_idx(path: &Path, expected_magic: u32, what: &'static str) -> Result<Idx, DataError> {
    let bytes = read_maybe_gzip(path)?;
    let found_len = bytes.len() as u64;
    if bytes.len() < 4 {
        return Err(DataError::Truncated { path: path.into(), expected: 4, found: found_len });
    }
    let magic = be_u32(&bytes, 0);
    if magic != expected_magic {
        return Err(DataError::BadMagic { path: path.into(), expected: expected_magic, found: magic, what });
    }
    let ndims = (magic & 0xff) as usize;
    let header = 4 + 4 * ndims;
    if bytes.len() < header {
        return Err(DataError::Truncated { path: path.into(), expected: header as u64, found: found_len });
    }
    let dims: Vec<usize> = (0..ndims).map(|d| be_u32(&bytes, 4 + 4 * d) as usize).collect();
    let elements = dims.iter().try_fold(1usize, |acc, &d| acc.checked_mul(d)).ok_or_else(|| {
        DataError::Malformed { path: path.into(), reason: format!("header dimensions {dims:?} overflow") }
    })?;
    let expected = (header + elements) as u64;
    if found_len < expected {
        return Err(DataError::Truncated { path: path.into(), expected, found: found_len });
    }
    if found_len > expected {
        return Err(DataError::Malformed {
            path: path.into(),
            reason: format!(
                "{} bytes after the {elements} elements its header declares (dimensions {dims:?})",
                found_len - expected
            ),
        });
    }
    if dims[0] == 0 {
        return Err(DataError::Malformed { path: path.into(), reason: "holds no items".into() });
    }
    Ok(Idx { dims, bytes, offset: header })
}

/// The images file and the labels file of one split.
#[derive(Debug, Clone)]
pub(crate) struct IdxPair {
    pub images: PathBuf,
    pub labels: PathBuf,
}

fn find_file(dir: &Path, prefixes: &[&str], kind: &str, idx: &str) -> Option<PathBuf> {
    for prefix in prefixes {
        for sep in ["-", "."] {
            for ext in ["", ".gz"] {
                let candidate = dir.join(format!("{prefix}-{kind}{sep}{idx}-ubyte{ext}"));
                if candidate.is_file() {
                    return Some(candidate);
                }
            }
        }
    }
    None
}

/// Finds one split's pair of files; `Ok(None)` when neither exists, an error when only one does.
fn find_pair(dir: &Path, prefixes: &[&str]) -> Result<Option<IdxPair>, DataError> {
    let images = find_file(dir, prefixes, "images", "idx3");
    let labels = find_file(dir, prefixes, "labels", "idx1");
    match (images, labels) {
        (Some(images), Some(labels)) => Ok(Some(IdxPair { images, labels })),
        (None, None) => Ok(None),
        (Some(_), None) => {
            Err(DataError::Missing { path: dir.join(format!("{}-labels-idx1-ubyte[.gz]", prefixes[0])) })
        }
        (None, Some(_)) => {
            Err(DataError::Missing { path: dir.join(format!("{}-images-idx3-ubyte[.gz]", prefixes[0])) })
        }
    }
}

/// Whether `dir` holds the training images of an MNIST-layout folder.
pub(crate) fn detect(dir: &Path) -> bool {
    find_file(dir, TRAIN_PREFIXES, "images", "idx3").is_some()
}

/// Images `[N, 1, rows, cols]` and raw labels of one split, checked against each other.
fn read_split(pair: &IdxPair) -> Result<(Tensor, Vec<u8>), DataError> {
    let images = read_idx(&pair.images, IMAGES_MAGIC, "not an IDX images file")?;
    let labels = read_idx(&pair.labels, LABELS_MAGIC, "not an IDX labels file")?;
    if images.dims[0] != labels.dims[0] {
        return Err(DataError::CountMismatch {
            images_path: pair.images.clone(),
            images: images.dims[0],
            labels_path: pair.labels.clone(),
            labels: labels.dims[0],
        });
    }
    let shape = [images.dims[0] as i64, 1, images.dims[1] as i64, images.dims[2] as i64];
    let tensor = Tensor::f_from_data_size(images.data(), &shape, Kind::Uint8)
        .map_err(DataError::torch(format!("{}: copying images", pair.images.display())))?;
    Ok((tensor, labels.data().to_vec()))
}

fn check_labels(path: &Path, labels: &[u8], num_classes: u32) -> Result<(), DataError> {
    match labels.iter().position(|&l| u32::from(l) >= num_classes) {
        Some(index) => Err(DataError::LabelOutOfRange {
            path: path.into(),
            index,
            label: i64::from(labels[index]),
            num_classes,
        }),
        None => Ok(()),
    }
}

fn widen(labels: &[u8]) -> Vec<i64> {
    labels.iter().map(|&l| i64::from(l)).collect()
}

/// Reads an MNIST-layout folder: the training split, and the test split when present.
///
/// With `class_names` given (Fashion-MNIST), labels must be below their count. Without, the
/// classes are `0…K-1` with K one more than the largest training label, and test labels must be
/// below K.
pub(crate) fn load_dir(
    dir: &Path,
    class_names: Option<Vec<String>>,
) -> Result<(ImageSet, Option<ImageSet>), DataError> {
    let train_pair = find_pair(dir, TRAIN_PREFIXES)?
        .ok_or_else(|| DataError::Missing { path: dir.join("train-images-idx3-ubyte[.gz]") })?;
    let test_pair = find_pair(dir, TEST_PREFIXES)?;

    let (train_images, train_labels) = read_split(&train_pair)?;
    let class_names = match class_names {
        Some(names) => names,
        None => {
            let max = train_labels.iter().copied().max().unwrap_or(0);
            super::numbered_classes(u32::from(max) + 1)
        }
    };
    let num_classes = class_names.len() as u32;
    check_labels(&train_pair.labels, &train_labels, num_classes)?;
    let train = ImageSet::from_parts(train_images, widen(&train_labels), class_names.clone())?;

    let test = match test_pair {
        None => None,
        Some(pair) => {
            let (images, labels) = read_split(&pair)?;
            let (train_hw, test_hw) = (&train.images.size()[2..], &images.size()[2..]);
            if train_hw != test_hw {
                return Err(DataError::Inconsistent {
                    path: pair.images.clone(),
                    reason: format!(
                        "images are {}×{}, but the training images are {}×{}",
                        test_hw[0], test_hw[1], train_hw[0], train_hw[1]
                    ),
                });
            }
            check_labels(&pair.labels, &labels, num_classes)?;
            Some(ImageSet::from_parts(images, widen(&labels), class_names)?)
        }
    };
    Ok((train, test))
}
