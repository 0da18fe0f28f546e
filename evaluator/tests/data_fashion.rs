//! Debian's Fashion-MNIST through `data::load`, checked against an independent reading of the
//! files, and the proxy split (validation and image budget) on it.
#![allow(clippy::unwrap_used)]

mod data_support;

use std::collections::HashSet;
use std::path::Path;
use std::sync::{Mutex, OnceLock};
use std::time::Instant;

use data_support::{bytes, longs, t10k, FASHION};
use effnas_evaluator::data::{self, DataFormat, Dataset, ImageSet, FASHION_MNIST_CLASSES};

/// The full data set, loaded once for the binary (a `Tensor` is not `Sync`, hence the mutex).
fn fashion() -> std::sync::MutexGuard<'static, Dataset> {
    static SET: OnceLock<Mutex<Dataset>> = OnceLock::new();
    SET.get_or_init(|| {
        let start = Instant::now();
        let set = data::load("fashion-mnist").unwrap();
        eprintln!("loaded {set} in {:.2} s", start.elapsed().as_secs_f64());
        Mutex::new(set)
    })
    .lock()
    .unwrap_or_else(|poisoned| poisoned.into_inner())
}

/// The t10k split as an `ImageSet`: its files copied into a folder as the training split.
fn t10k_set() -> ImageSet {
    let dir = tempfile::tempdir().unwrap();
    for (from, to) in [
        ("t10k-images-idx3-ubyte.gz", "train-images-idx3-ubyte.gz"),
        ("t10k-labels-idx1-ubyte.gz", "train-labels-idx1-ubyte.gz"),
    ] {
        std::fs::copy(Path::new(FASHION).join(from), dir.path().join(to)).unwrap();
    }
    data::load(dir.path().to_str().unwrap()).unwrap().train
}

#[test]
fn fashion_mnist_has_its_published_shape_classes_and_balance() {
    let set = fashion();
    assert_eq!(set.name, "fashion-mnist");
    assert_eq!(set.format, DataFormat::Idx);
    assert_eq!(set.source, Path::new(FASHION));
    let test = set.test.as_ref().unwrap();
    for (split, n, per_class) in [(&set.train, 60000, 6000), (test, 10000, 1000)] {
        assert_eq!(split.len(), n);
        assert_eq!(split.images.size(), vec![n as i64, 1, 28, 28]);
        assert_eq!(split.images.kind(), tch::Kind::Uint8);
        assert_eq!(split.labels.kind(), tch::Kind::Int64);
        assert_eq!((split.channels(), split.height(), split.width()), (1, 28, 28));
        assert_eq!(split.num_classes, 10);
        assert_eq!(split.class_names, FASHION_MNIST_CLASSES.map(String::from).to_vec());
        let labels = split.label_values().unwrap();
        assert!(labels.iter().all(|&l| (0..10).contains(&l)));
        assert_eq!(split.class_counts().unwrap(), vec![per_class; 10], "Fashion-MNIST is balanced");
    }
    assert_eq!(
        set.to_string(),
        "fashion-mnist (idx, /usr/share/datasets/fashion-mnist): 60000 train + 10000 test images, 1×28×28, 10 classes"
    );
}

#[test]
fn fashion_mnist_pixels_and_labels_match_the_files_byte_for_byte() {
    let raw = t10k();
    let set = fashion();
    let test = set.test.as_ref().unwrap();
    assert_eq!(bytes(&test.images), raw.pixels);
    assert_eq!(longs(&test.labels), raw.labels.iter().map(|&l| i64::from(l)).collect::<Vec<_>>());
    // The first training labels of Fashion-MNIST: ankle boot, T-shirt, T-shirt, dress, T-shirt.
    assert_eq!(longs(&set.train.labels.narrow(0, 0, 5)), vec![9, 0, 0, 3, 0]);
}

#[test]
fn fashion_mnist_channel_stats_are_the_well_known_ones() {
    let set = fashion();
    let (mean, std) = set.train.channel_stats().unwrap();
    // The figures quoted for Fashion-MNIST's training set: mean 0.2860, std 0.3530.
    assert_eq!(mean.len(), 1);
    assert!((mean[0] - 0.2860).abs() < 5e-4, "{mean:?}");
    assert!((std[0] - 0.3530).abs() < 5e-4, "{std:?}");
}

#[test]
fn channel_stats_equal_a_direct_computation() {
    let raw = t10k();
    let (mean, std) = t10k_set().channel_stats().unwrap();
    let n = raw.pixels.len() as f64;
    let direct_mean = raw.pixels.iter().map(|&p| f64::from(p) / 255.0).sum::<f64>() / n;
    let direct_var =
        raw.pixels.iter().map(|&p| (f64::from(p) / 255.0 - direct_mean).powi(2)).sum::<f64>() / n;
    // The direct sums of 7.8M floats carry rounding error of about 1e-10; the histogram is exact.
    assert!((mean[0] - direct_mean).abs() < 1e-9, "{mean:?} vs {direct_mean}");
    assert!((std[0] - direct_var.sqrt()).abs() < 1e-9, "{std:?} vs {}", direct_var.sqrt());
}

#[test]
fn validation_split_is_stratified_disjoint_and_deterministic() {
    let set = fashion();
    let start = Instant::now();
    let (train, validation) = set.train.split_validation(10000, 7).unwrap();
    eprintln!("split 60000 into 50000 + 10000 in {:.3} s", start.elapsed().as_secs_f64());
    assert_eq!((train.len(), validation.len()), (50000, 10000));
    assert_eq!(validation.class_counts().unwrap(), vec![1000; 10], "stratified on a balanced set");
    assert_eq!(train.class_counts().unwrap(), vec![5000; 10]);

    let (kept, held_out) = set.train.split_indices(10000, 7).unwrap();
    let held: HashSet<i64> = held_out.iter().copied().collect();
    assert!(kept.iter().all(|i| !held.contains(i)), "disjoint");
    assert_eq!(kept.len() + held.len(), 60000, "together they are the whole set");
    // The split sets hold exactly the images at those indices.
    assert_eq!(
        bytes(&validation.images),
        bytes(&set.train.images.index_select(0, &tch::Tensor::from_slice(&held_out)))
    );

    assert_eq!(set.train.split_indices(10000, 7).unwrap().1, held_out, "same seed, same split");
    let other = set.train.split_indices(10000, 8).unwrap().1;
    let overlap = other.iter().filter(|i| held.contains(i)).count();
    assert!(
        overlap < 2500,
        "another seed gives a mostly different split ({overlap} shared; about 1667 by chance)"
    );
}

#[test]
fn split_is_pinned_across_machines_and_versions() {
    // Golden indices: a change here changes every recorded proxy's validation set.
    let set = t10k_set();
    let (_, validation) = set.split_indices(100, 0).unwrap();
    assert_eq!(&validation[..10], &[29, 160, 215, 433, 491, 612, 703, 881, 940, 1024]);
    let budget = set.take_indices(10, 0).unwrap();
    assert_eq!(budget, vec![1708, 2650, 4114, 4657, 5551, 6103, 7039, 7281, 7651, 7792]);
    // Ten images of a ten-class balanced set: one of each class.
    let labels = longs(&set.labels);
    let classes: HashSet<i64> = budget.iter().map(|&i| labels[i as usize]).collect();
    assert_eq!(classes.len(), 10);
}

#[test]
fn budgets_are_stratified_nested_and_leave_validation_alone() {
    let set = t10k_set();
    let (train_idx, validation_idx) = set.split_indices(1000, 3).unwrap();
    let (train, validation) = set.split_validation(1000, 3).unwrap();
    assert_eq!(
        longs(&validation.labels),
        validation_idx.iter().map(|&i| longs(&set.labels)[i as usize]).collect::<Vec<_>>()
    );

    let small = train.take_indices(500, 11).unwrap();
    let large = train.take_indices(2000, 11).unwrap();
    assert_eq!((small.len(), large.len()), (500, 2000));
    let large_set: HashSet<i64> = large.iter().copied().collect();
    assert!(small.iter().all(|i| large_set.contains(i)), "a smaller budget is a subset of a larger one");

    let budget = train.take(500, 11).unwrap();
    assert_eq!(budget.len(), 500);
    let counts = budget.class_counts().unwrap();
    let expected = train
        .class_counts()
        .unwrap()
        .iter()
        .map(|&c| c as f64 * 500.0 / train.len() as f64)
        .collect::<Vec<_>>();
    for (count, ideal) in counts.iter().zip(&expected) {
        assert!((*count as f64 - ideal).abs() <= 1.0, "{counts:?} vs {expected:?}");
    }
    // Budget images come from the training part: mapped back to the full set, none is held out.
    let held: HashSet<i64> = validation_idx.iter().copied().collect();
    assert!(large.iter().all(|&i| !held.contains(&train_idx[i as usize])));
    assert_eq!(bytes(&budget.images), bytes(&train.images.index_select(0, &tch::Tensor::from_slice(&small))));
    assert_eq!(train_idx.len(), 9000);

    // The validation split is the same whatever budget is drawn afterwards (it is drawn first).
    let (_, again) = set.split_validation(1000, 3).unwrap();
    assert_eq!(bytes(&again.images), bytes(&validation.images));
    // A budget above the set's size is the whole set.
    assert_eq!(train.take(1_000_000, 11).unwrap().len(), 9000);
}

#[test]
fn proxy_data_applies_the_image_budget_once_and_the_trainer_uses_all_of_it() {
    use effnas_evaluator::train::{train, ProxyConfig, ProxyData, Status};
    let set = fashion();
    let data = ProxyData::from_dataset(&set, 500, Some(300), true, 0).unwrap();
    assert_eq!((data.train.len(), data.validation.len()), (300, 500));
    assert_eq!(data.test.as_ref().map(ImageSet::len), Some(10000));
    assert_eq!(data.train.class_counts().unwrap(), vec![30; 10], "the budget is stratified");
    assert_eq!((data.channels(), data.num_classes()), (1, 10));
    // The budget is a subset of what is left after the validation split, with the same seed.
    let (rest, _) = set.train.split_validation(500, 0).unwrap();
    assert_eq!(longs(&data.train.labels), longs(&rest.take(300, 0).unwrap().labels));

    let mut arch = effnas_space::parse_arch("r1_k3_s22_e1_i32_o8").unwrap();
    arch.head_channels = Some(16);
    let arch = data.adapt(&arch, Some(16)).unwrap();
    let no_test =
        ProxyData::new("budget", data.train.shallow_clone(), data.validation.shallow_clone(), None).unwrap();
    let config =
        ProxyConfig { epochs: 1, batch_size: 100, bn_recalibration_images: 0, ..ProxyConfig::default() };
    let r = train(&arch, &no_test, &config, tch::Device::Cpu).unwrap().result;
    assert_eq!(r.status, Status::Complete, "{:?}", r.reason);
    assert_eq!((r.train_images, r.validation_images, r.images_seen), (300, 500, 300));
}
