//! Fuzzing the data-set readers: IDX (MNIST/Fashion-MNIST), CIFAR-10 binary batches and image
//! folders, each built from real Fashion-MNIST bytes and then damaged (bytes overwritten,
//! inserted, deleted, files truncated, header fields set to edge values). Whatever the damage,
//! loading gives a consistent data set or one line naming a file of the data set, and never
//! panics or allocates without bound.
//!
//! CI runs a few dozen cases of each; `scripts/fuzz` runs many more for a fixed time (it sets
//! `EFFNAS_FUZZ_CASES`). A failing case is shrunk and kept in `fuzz_readers.proptest-regressions`
//! beside this file, which is committed so that it is replayed first in every later run.
#![allow(clippy::unwrap_used)]

mod data_support;

use std::path::Path;

use data_support::{idx_bytes, t10k, Raw};
use effnas_evaluator::data::{self, ImageSet};
use effnas_testkit::{apply, edit, fuzz_cases, Edit};
use image::GrayImage;
use proptest::prelude::*;
use proptest::test_runner::FileFailurePersistence;

/// Images in each damaged data set: enough for two classes, small enough to be fast.
const IMAGES: usize = 12;

/// Any byte: the formats are binary. The first eight u32s cover the IDX headers.
fn edits(max: usize) -> impl Strategy<Value = Vec<Edit>> {
    prop::collection::vec(edit(any::<u8>().boxed(), 8), 0..max)
}

/// Loading `dir` either works and is consistent, or fails in one line that names the data set.
fn check_load(dir: &Path) -> Result<(), TestCaseError> {
    match data::load(dir.to_str().unwrap()) {
        Ok(dataset) => {
            check_set(&dataset.train)?;
            if let Some(test) = &dataset.test {
                check_set(test)?;
            }
        }
        Err(error) => {
            let message = error.to_string();
            prop_assert!(!message.contains('\n'), "one line: {}", message);
            prop_assert!(message.contains(&dir.display().to_string()), "names the data set: {}", message);
        }
    }
    Ok(())
}

fn check_set(set: &ImageSet) -> Result<(), TestCaseError> {
    let classes = set.class_names.len() as i64;
    let labels = set.label_values().unwrap();
    prop_assert_eq!(labels.len(), set.len());
    prop_assert!(labels.iter().all(|&l| (0..classes).contains(&l)), "labels within the classes");
    Ok(())
}

fn idx_pair(raw: &Raw) -> (Vec<u8>, Vec<u8>) {
    let n = IMAGES as u32;
    (idx_bytes(2051, &[n, 28, 28], &raw.pixels[..IMAGES * 784]), idx_bytes(2049, &[n], &raw.labels[..IMAGES]))
}

fn cifar_batch(raw: &Raw) -> Vec<u8> {
    (0..IMAGES)
        .flat_map(|i| {
            let mut plane = vec![0u8; 1024];
            for y in 0..28 {
                plane[(y + 2) * 32 + 2..(y + 2) * 32 + 30]
                    .copy_from_slice(&raw.image(i)[y * 28..(y + 1) * 28]);
            }
            let mut record = vec![raw.labels[i]];
            (0..3).for_each(|_| record.extend_from_slice(&plane));
            record
        })
        .collect()
}

fn png(raw: &Raw, i: usize) -> Vec<u8> {
    let mut bytes = Vec::new();
    GrayImage::from_raw(28, 28, raw.image(i).to_vec())
        .unwrap()
        .write_to(&mut std::io::Cursor::new(&mut bytes), image::ImageFormat::Png)
        .unwrap();
    bytes
}

proptest! {
    #![proptest_config(ProptestConfig {
        cases: fuzz_cases(48),
        failure_persistence: Some(Box::new(FileFailurePersistence::WithSource("proptest-regressions"))),
        ..ProptestConfig::default()
    })]

    #[test]
    fn damaged_idx_files_load_consistently_or_fail_naming_the_data_set(
        image_edits in edits(4),
        label_edits in edits(4),
    ) {
        let (images, labels) = idx_pair(&t10k());
        let dir = tempfile::tempdir().unwrap();
        std::fs::write(dir.path().join("train-images-idx3-ubyte"), apply(images, &image_edits)).unwrap();
        std::fs::write(dir.path().join("train-labels-idx1-ubyte"), apply(labels, &label_edits)).unwrap();
        check_load(dir.path())?;
    }

    #[test]
    fn damaged_cifar_batches_load_consistently_or_fail_naming_the_data_set(
        edits in edits(5),
    ) {
        let dir = tempfile::tempdir().unwrap();
        let batches = dir.path().join("cifar-10-batches-bin");
        std::fs::create_dir_all(&batches).unwrap();
        std::fs::write(batches.join("data_batch_1.bin"), apply(cifar_batch(&t10k()), &edits)).unwrap();
        check_load(dir.path())?;
    }

    #[test]
    fn damaged_images_in_a_folder_load_consistently_or_fail_naming_the_data_set(
        victim in 0usize..4,
        edits in edits(5),
    ) {
        let raw = t10k();
        let dir = tempfile::tempdir().unwrap();
        for i in 0..4 {
            let class = dir.path().join(format!("class-{}", i % 2));
            std::fs::create_dir_all(&class).unwrap();
            let bytes = if i == victim { apply(png(&raw, i), &edits) } else { png(&raw, i) };
            std::fs::write(class.join(format!("{i}.png")), bytes).unwrap();
        }
        check_load(dir.path())?;
    }
}
