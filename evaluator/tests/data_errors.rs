//! Every way a data set can be broken gives a typed, one-line error naming the file, never a panic.
#![allow(clippy::unwrap_used)]

mod data_support;

use std::path::{Path, PathBuf};

use data_support::{idx_bytes, t10k, write_idx, FASHION};
use effnas_evaluator::data::{self, DataError, ImageSet};
use tch::{Device, Kind, Tensor};

/// Loads `path`, expecting an error whose message names `names` and contains `says`.
fn load_err(path: &Path, names: &Path, says: &str) -> DataError {
    let err = data::load(path.to_str().unwrap()).expect_err("a broken data set must not load");
    let message = err.to_string();
    assert!(!message.contains('\n'), "one line: {message}");
    assert!(message.contains(&names.display().to_string()), "names {}: {message}", names.display());
    assert!(message.contains(says), "says '{says}': {message}");
    err
}

/// A small valid IDX folder (200 Fashion-MNIST test images) in `dir/name`.
fn idx_folder(dir: &Path, name: &str) -> PathBuf {
    let raw = t10k();
    let root = dir.join(name);
    write_idx(&root, "train", &raw.pixels[..200 * 784], &raw.labels[..200]);
    root
}

#[test]
fn missing_path_and_file_path_are_named() {
    let dir = tempfile::tempdir().unwrap();
    let missing = dir.path().join("nowhere");
    assert!(matches!(load_err(&missing, &missing, "no such file"), DataError::Missing { .. }));
    let file = dir.path().join("a-file.bin");
    std::fs::write(&file, b"x").unwrap();
    load_err(&file, &file, "expected a folder");
}

#[test]
fn empty_and_unrecognised_folders_are_named() {
    let dir = tempfile::tempdir().unwrap();
    assert!(matches!(load_err(dir.path(), dir.path(), "empty folder"), DataError::EmptyFolder { .. }));
    std::fs::write(dir.path().join("notes.txt"), "hello").unwrap();
    assert!(matches!(load_err(dir.path(), dir.path(), "no data set found"), DataError::UnknownFormat { .. }));
}

#[test]
fn idx_wrong_magic_names_the_file_and_both_numbers() {
    let dir = tempfile::tempdir().unwrap();
    let root = idx_folder(dir.path(), "swapped");
    // A labels file where the images file should be.
    let images = root.join("train-images-idx3-ubyte");
    std::fs::write(&images, idx_bytes(2049, &[200], &[0; 200])).unwrap();
    let err = load_err(&root, &images, "expected magic 2051, found 2049");
    assert!(matches!(err, DataError::BadMagic { expected: 2051, found: 2049, .. }));
    // Arbitrary bytes as a labels file.
    let root = idx_folder(dir.path(), "junk");
    let labels = root.join("train-labels-idx1-ubyte");
    std::fs::write(&labels, [0, 0, 0x04, 0xd2, 1, 2, 3]).unwrap();
    load_err(&root, &labels, "expected magic 2049, found 1234");
}

#[test]
fn idx_truncated_and_overlong_files_are_named() {
    let dir = tempfile::tempdir().unwrap();
    let root = idx_folder(dir.path(), "cut");
    let images = root.join("train-images-idx3-ubyte");
    let full = std::fs::read(&images).unwrap();
    std::fs::write(&images, &full[..full.len() - 100]).unwrap();
    let err = load_err(
        &root,
        &images,
        &format!("truncated: expected {} bytes, found {}", full.len(), full.len() - 100),
    );
    assert!(matches!(err, DataError::Truncated { .. }));
    // Cut inside the header.
    std::fs::write(&images, &full[..10]).unwrap();
    load_err(&root, &images, "truncated: expected 16 bytes, found 10");
    // Bytes beyond what the header declares.
    let mut long = full.clone();
    long.extend_from_slice(&[0; 5]);
    std::fs::write(&images, &long).unwrap();
    load_err(&root, &images, "5 bytes after");
}

#[test]
fn truncated_gzip_is_named() {
    let dir = tempfile::tempdir().unwrap();
    let root = dir.path().join("fashion-cut");
    std::fs::create_dir_all(&root).unwrap();
    let gz = std::fs::read(Path::new(FASHION).join("t10k-images-idx3-ubyte.gz")).unwrap();
    let images = root.join("train-images-idx3-ubyte.gz");
    std::fs::write(&images, &gz[..gz.len() / 2]).unwrap();
    std::fs::copy(
        Path::new(FASHION).join("t10k-labels-idx1-ubyte.gz"),
        root.join("train-labels-idx1-ubyte.gz"),
    )
    .unwrap();
    assert!(matches!(load_err(&root, &images, "gzip"), DataError::Gzip { .. }));
    // Corrupt bytes in the middle of the stream.
    let mut corrupt = gz.clone();
    for b in &mut corrupt[100..400] {
        *b = 0xff;
    }
    std::fs::write(&images, &corrupt).unwrap();
    load_err(&root, &images, "gzip");
}

#[test]
fn idx_count_mismatch_names_both_files() {
    let dir = tempfile::tempdir().unwrap();
    let root = idx_folder(dir.path(), "uneven");
    let labels = root.join("train-labels-idx1-ubyte");
    std::fs::write(&labels, idx_bytes(2049, &[199], &[0; 199])).unwrap();
    let err = load_err(&root, &labels, "holds 200 images but");
    assert!(err.to_string().contains(&root.join("train-images-idx3-ubyte").display().to_string()));
    assert!(err.to_string().contains("holds 199 labels"));
}

#[test]
fn idx_labels_out_of_range_are_named() {
    let dir = tempfile::tempdir().unwrap();
    // A Fashion-MNIST folder (by its name) has 10 classes: label 12 is out of range.
    let root = idx_folder(dir.path(), "fashion-bad-label");
    let labels = root.join("train-labels-idx1-ubyte");
    let mut values = vec![1u8; 200];
    values[57] = 12;
    std::fs::write(&labels, idx_bytes(2049, &[200], &values)).unwrap();
    let err = load_err(&root, &labels, "label 12 of image 57 is out of range for 10 classes");
    assert!(matches!(err, DataError::LabelOutOfRange { index: 57, label: 12, num_classes: 10, .. }));
    // Other folders take their classes from the training labels; a test label beyond them is out of range.
    let root = idx_folder(dir.path(), "digits");
    let raw = t10k();
    let mut test_labels = raw.labels[..50].to_vec();
    test_labels[3] = 10;
    write_idx(&root, "t10k", &raw.pixels[..50 * 784], &test_labels);
    load_err(&root, &root.join("t10k-labels-idx1-ubyte"), "label 10 of image 3 is out of range");
}

#[test]
fn idx_images_without_labels_names_the_missing_file() {
    let dir = tempfile::tempdir().unwrap();
    let root = idx_folder(dir.path(), "no-labels");
    std::fs::remove_file(root.join("train-labels-idx1-ubyte")).unwrap();
    load_err(&root, &root.join("train-labels-idx1-ubyte"), "no such file");
}

#[test]
fn idx_test_images_of_another_size_are_named() {
    let dir = tempfile::tempdir().unwrap();
    let root = idx_folder(dir.path(), "sizes");
    let images = root.join("t10k-images-idx3-ubyte");
    std::fs::write(&images, idx_bytes(2051, &[2, 32, 32], &[0; 2 * 32 * 32])).unwrap();
    std::fs::write(root.join("t10k-labels-idx1-ubyte"), idx_bytes(2049, &[2], &[0, 1])).unwrap();
    load_err(&root, &images, "images are 32×32, but the training images are 28×28");
}

#[test]
fn cifar_truncated_batch_and_bad_label_are_named() {
    let dir = tempfile::tempdir().unwrap();
    let batch = dir.path().join("data_batch_1.bin");
    let mut records = vec![0u8; 3 * 3073];
    std::fs::write(&batch, &records[..3 * 3073 - 1000]).unwrap();
    let err = load_err(dir.path(), &batch, "truncated: expected 9219 bytes, found 8219");
    assert!(matches!(err, DataError::Truncated { .. }));
    records[2 * 3073] = 10; // the third record's label
    std::fs::write(&batch, &records).unwrap();
    load_err(dir.path(), &batch, "label 10 of image 2 is out of range for 10 classes");
    // With batches.meta.txt naming 3 classes, label 3 is out of range.
    records[2 * 3073] = 3;
    std::fs::write(&batch, &records).unwrap();
    std::fs::write(dir.path().join("batches.meta.txt"), "a\nb\nc\n\n").unwrap();
    load_err(dir.path(), &batch, "label 3 of image 2 is out of range for 3 classes");
    std::fs::write(&batch, b"").unwrap();
    load_err(dir.path(), &batch, "empty batch file");
}

#[test]
fn image_folder_problems_are_named() {
    let dir = tempfile::tempdir().unwrap();
    let root = dir.path();
    std::fs::create_dir_all(root.join("cats")).unwrap();
    image::GrayImage::from_pixel(8, 8, image::Luma([3])).save(root.join("cats/one.png")).unwrap();
    // A class folder holding no image.
    std::fs::create_dir_all(root.join("dogs")).unwrap();
    std::fs::write(root.join("dogs/notes.txt"), "no images here").unwrap();
    assert!(matches!(load_err(root, &root.join("dogs"), "holds no PNG or JPEG"), DataError::NoImages { .. }));
    // An image that does not decode.
    let bad = root.join("dogs/broken.png");
    std::fs::write(&bad, b"\x89PNG\r\n\x1a\nthis is not a png").unwrap();
    assert!(matches!(load_err(root, &bad, "cannot decode image"), DataError::Undecodable { .. }));
    let bad_jpeg = root.join("dogs/broken.jpg");
    std::fs::remove_file(&bad).unwrap();
    std::fs::write(&bad_jpeg, b"\xff\xd8\xff\xe0 truncated").unwrap();
    load_err(root, &bad_jpeg, "cannot decode image");
}

#[test]
fn image_folder_test_class_unknown_to_training_is_named() {
    let dir = tempfile::tempdir().unwrap();
    for split_class in ["train/a", "train/b", "test/a", "test/z"] {
        let folder = dir.path().join(split_class);
        std::fs::create_dir_all(&folder).unwrap();
        image::GrayImage::from_pixel(4, 4, image::Luma([9])).save(folder.join("x.png")).unwrap();
    }
    let err =
        load_err(dir.path(), &dir.path().join("test/z"), "test class 'z' is not among the training classes");
    assert!(matches!(err, DataError::Inconsistent { .. }));
    // An empty train/ folder side: a train/ with class folders but an empty test/ one.
    std::fs::remove_dir_all(dir.path().join("test")).unwrap();
    std::fs::create_dir_all(dir.path().join("test")).unwrap();
    load_err(dir.path(), &dir.path().join("test"), "empty folder");
}

fn message<T>(result: Result<T, DataError>) -> String {
    match result {
        Ok(_) => panic!("expected an error"),
        Err(err) => err.to_string(),
    }
}

#[test]
fn bad_splits_budgets_and_sets_are_errors() {
    let set = ImageSet::new(
        Tensor::zeros([10, 1, 4, 4], (Kind::Uint8, Device::Cpu)),
        Tensor::from_slice(&[0i64, 1, 0, 1, 0, 1, 0, 1, 0, 1]),
        vec!["a".into(), "b".into()],
    )
    .unwrap();
    assert!(message(set.split_validation(10, 0)).contains("leaves none of the 10 for training"));
    assert!(message(set.take(0, 0)).contains("at least 1"));
    assert!(message(set.subset(&[3, 10])).contains("index 10 out of range"));
    assert!(message(set.subset(&[-1])).contains("index -1 out of range"));
    let (train, validation) = set.split_validation(0, 0).unwrap();
    assert_eq!((train.len(), validation.len()), (10, 0));
    assert_eq!(validation.channel_stats().unwrap(), (vec![0.0], vec![1.0]));

    let floats = ImageSet::new(
        Tensor::zeros([2, 1, 4, 4], (Kind::Float, Device::Cpu)),
        Tensor::from_slice(&[0i64, 1]),
        vec!["a".into(), "b".into()],
    );
    assert!(message(floats).contains("images must be uint8"));
    let uneven = ImageSet::new(
        Tensor::zeros([2, 1, 4, 4], (Kind::Uint8, Device::Cpu)),
        Tensor::from_slice(&[0i64]),
        vec!["a".into()],
    );
    assert!(message(uneven).contains("2 images but 1 labels"));
    let out_of_range = ImageSet::new(
        Tensor::zeros([2, 1, 4, 4], (Kind::Uint8, Device::Cpu)),
        Tensor::from_slice(&[0i64, 2]),
        vec!["a".into(), "b".into()],
    );
    assert!(message(out_of_range).contains("label 2 of image 1 is out of range"));
}
