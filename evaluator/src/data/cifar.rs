//! CIFAR-10 in its binary version (`cifar-10-binary.tar.gz`).
//!
//! The layout is the one given under "Binary version" at
//! <https://www.cs.toronto.edu/~kriz/cifar.html>: each batch file is a sequence of records of
//! 3073 bytes, one byte of label (0–9) followed by the 3072 pixel bytes of a 32 × 32 colour image,
//! first the 1024 red values, then the 1024 green, then the 1024 blue, each plane in row-major
//! order. The official files hold 10000 records each: `data_batch_1.bin` … `data_batch_5.bin`
//! for training and `test_batch.bin` for testing; `batches.meta.txt` names the classes, one per
//! line in label order.
//!
//! A record's pixels are thus already in channel-first order, so the batches are copied into the
//! `[N, 3, 32, 32]` tensor as they are. A folder is read when it holds `data_batch_N.bin` files
//! (any number of them, in the order of N) or holds the tarball's `cifar-10-batches-bin` folder.
//! CIFAR-100's binary version (two label bytes per record) is not read.

use std::path::{Path, PathBuf};

use tch::{Kind, Tensor};

use super::idx::read_maybe_gzip;
use super::{DataError, ImageSet};

/// Bytes of one image's pixels: 3 planes of 32 × 32.
pub const IMAGE_BYTES: usize = 3 * 32 * 32;
/// Bytes of one record: the label byte, then the pixels.
pub const RECORD_BYTES: usize = 1 + IMAGE_BYTES;

/// CIFAR-10's class names in label order, as in the official `batches.meta.txt`.
pub const CIFAR10_CLASSES: [&str; 10] =
    ["airplane", "automobile", "bird", "cat", "deer", "dog", "frog", "horse", "ship", "truck"];

/// The folder holding the batches: `dir` itself, or the tarball's `cifar-10-batches-bin` in it.
pub(crate) fn batches_dir(dir: &Path) -> Option<PathBuf> {
    [dir.to_path_buf(), dir.join("cifar-10-batches-bin")]
        .into_iter()
        .find(|d| !train_batches(d).unwrap_or_default().is_empty())
}

/// `data_batch_N.bin` files of a folder, sorted by N.
fn train_batches(dir: &Path) -> Result<Vec<PathBuf>, DataError> {
    let entries = std::fs::read_dir(dir).map_err(|e| DataError::io(dir, e))?;
    let mut numbered = Vec::new();
    for entry in entries {
        let entry = entry.map_err(|e| DataError::io(dir, e))?;
        let name = entry.file_name();
        let Some(name) = name.to_str() else { continue };
        let number = name.strip_prefix("data_batch_").and_then(|rest| rest.strip_suffix(".bin"));
        if let Some(n) = number.and_then(|n| n.parse::<u32>().ok()) {
            numbered.push((n, entry.path()));
        }
    }
    numbered.sort();
    Ok(numbered.into_iter().map(|(_, path)| path).collect())
}

/// Class names from `batches.meta.txt` (blank lines dropped), or CIFAR-10's when absent.
fn class_names(dir: &Path) -> Result<Vec<String>, DataError> {
    let path = dir.join("batches.meta.txt");
    if !path.exists() {
        return Ok(CIFAR10_CLASSES.iter().map(|s| s.to_string()).collect());
    }
    let text = std::fs::read_to_string(&path).map_err(|e| DataError::io(&path, e))?;
    let names: Vec<String> =
        text.lines().map(str::trim).filter(|l| !l.is_empty()).map(String::from).collect();
    if names.is_empty() || names.len() > 256 {
        return Err(DataError::Malformed {
            path,
            reason: format!("names {} classes; expected 1 to 256 (one per line)", names.len()),
        });
    }
    Ok(names)
}

/// Appends one batch file's pixels and labels, checking its length and its labels.
fn read_batch(
    path: &Path,
    num_classes: u32,
    pixels: &mut Vec<u8>,
    labels: &mut Vec<i64>,
) -> Result<(), DataError> {
    let bytes = read_maybe_gzip(path)?;
    if bytes.is_empty() {
        return Err(DataError::Malformed { path: path.into(), reason: "empty batch file".into() });
    }
    if bytes.len() % RECORD_BYTES != 0 {
        let records = bytes.len().div_ceil(RECORD_BYTES);
        return Err(DataError::Truncated {
            path: path.into(),
            expected: (records * RECORD_BYTES) as u64,
            found: bytes.len() as u64,
        });
    }
    pixels.reserve(bytes.len() / RECORD_BYTES * IMAGE_BYTES);
    for (index, record) in bytes.chunks_exact(RECORD_BYTES).enumerate() {
        let label = record[0];
        if u32::from(label) >= num_classes {
            return Err(DataError::LabelOutOfRange {
                path: path.into(),
                index,
                label: i64::from(label),
                num_classes,
            });
        }
        labels.push(i64::from(label));
        pixels.extend_from_slice(&record[1..]);
    }
    Ok(())
}

fn read_batches(files: &[PathBuf], class_names: Vec<String>) -> Result<ImageSet, DataError> {
    let num_classes = class_names.len() as u32;
    let (mut pixels, mut labels) = (Vec::new(), Vec::new());
    for file in files {
        read_batch(file, num_classes, &mut pixels, &mut labels)?;
    }
    let shape = [labels.len() as i64, 3, 32, 32];
    let images = Tensor::f_from_data_size(&pixels, &shape, Kind::Uint8)
        .map_err(DataError::torch(format!("{}: copying images", files[0].display())))?;
    ImageSet::from_parts(images, labels, class_names)
}

/// Reads a folder of CIFAR-10 binary batches (`dir` as returned by [`batches_dir`]).
pub(crate) fn load_dir(dir: &Path) -> Result<(ImageSet, Option<ImageSet>), DataError> {
    let train_files = train_batches(dir)?;
    if train_files.is_empty() {
        return Err(DataError::Missing { path: dir.join("data_batch_1.bin") });
    }
    let names = class_names(dir)?;
    let train = read_batches(&train_files, names.clone())?;
    let test_file = dir.join("test_batch.bin");
    let test = if test_file.exists() { Some(read_batches(&[test_file], names)?) } else { None };
    Ok((train, test))
}
