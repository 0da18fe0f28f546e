//! Every reader on real pixels: Fashion-MNIST images written as an image folder (PNG, JPEG),
//! as CIFAR-10 binary batches, and as plain or gzipped IDX files, read back and compared exactly.
#![allow(clippy::unwrap_used)]

mod data_support;

use std::io::Write;
use std::path::Path;

use data_support::{bytes, idx_bytes, longs, t10k, Raw};
use effnas_evaluator::data::{self, DataFormat, CIFAR10_CLASSES, FASHION_MNIST_CLASSES};
use image::{GrayImage, RgbImage};

/// Folder-safe class names: `0-T-shirt-top`, `1-Trouser`, … (sorted by name = label order).
fn class_folder(label: u8) -> String {
    format!("{label}-{}", FASHION_MNIST_CLASSES[label as usize].replace('/', "-"))
}

fn save_png(raw: &Raw, i: usize, path: &Path) {
    std::fs::create_dir_all(path.parent().unwrap()).unwrap();
    GrayImage::from_raw(28, 28, raw.image(i).to_vec()).unwrap().save(path).unwrap();
}

#[test]
fn image_folder_of_fashion_pngs_reads_back_exactly() {
    let raw = t10k();
    let dir = tempfile::tempdir().unwrap();
    let root = dir.path().join("fashion-pngs");
    let n = 300;
    for i in 0..n {
        save_png(&raw, i, &root.join(class_folder(raw.labels[i])).join(format!("{i:05}.png")));
    }
    let set = data::load(root.to_str().unwrap()).unwrap();
    assert_eq!(set.format, DataFormat::ImageFolder);
    assert_eq!(set.name, "fashion-pngs");
    assert!(set.test.is_none());
    let train = &set.train;
    assert_eq!(train.images.size(), vec![n as i64, 1, 28, 28]);
    assert_eq!(train.class_names, (0..10).map(class_folder).collect::<Vec<_>>());

    // The reader's order: classes by name, then files by name.
    let mut order: Vec<usize> = (0..n).collect();
    order.sort_by_key(|&i| (raw.labels[i], i));
    let expected_pixels: Vec<u8> = order.iter().flat_map(|&i| raw.image(i).to_vec()).collect();
    let expected_labels: Vec<i64> = order.iter().map(|&i| i64::from(raw.labels[i])).collect();
    assert_eq!(bytes(&train.images), expected_pixels);
    assert_eq!(longs(&train.labels), expected_labels);
}

#[test]
fn image_folder_with_train_and_test_maps_test_classes_to_training_labels() {
    let raw = t10k();
    let dir = tempfile::tempdir().unwrap();
    for i in 0..60 {
        save_png(&raw, i, &dir.path().join("train").join(format!("c{}", i % 3)).join(format!("{i}.png")));
    }
    // The test set lacks class c1: its c2 images must still get label 2.
    for i in 60..70 {
        let class = if i % 2 == 0 { "c0" } else { "c2" };
        save_png(&raw, i, &dir.path().join("test").join(class).join(format!("{i}.png")));
    }
    std::fs::write(dir.path().join("train/c0/README.txt"), "not an image").unwrap();
    let set = data::load(dir.path().to_str().unwrap()).unwrap();
    assert_eq!(set.train.len(), 60, "the text file is skipped");
    assert_eq!(set.train.class_counts().unwrap(), vec![20, 20, 20]);
    let test = set.test.unwrap();
    assert_eq!(test.class_names, vec!["c0", "c1", "c2"]);
    assert_eq!(longs(&test.labels), vec![0, 0, 0, 0, 0, 2, 2, 2, 2, 2]);
    assert_eq!(test.class_counts().unwrap(), vec![5, 0, 5]);
}

#[test]
fn image_folder_with_a_colour_jpeg_becomes_rgb() {
    let raw = t10k();
    let dir = tempfile::tempdir().unwrap();
    for i in 0..4 {
        save_png(&raw, i, &dir.path().join("gray").join(format!("{i}.png")));
    }
    // A colour JPEG from a Fashion-MNIST image: R = p, G = 255 - p, B = p / 2.
    let source = raw.image(10);
    let mut rgb = RgbImage::new(28, 28);
    for (k, pixel) in rgb.pixels_mut().enumerate() {
        let p = source[k];
        *pixel = image::Rgb([p, 255 - p, p / 2]);
    }
    let jpeg_path = dir.path().join("tinted").join("10.JPG");
    std::fs::create_dir_all(jpeg_path.parent().unwrap()).unwrap();
    let mut file = std::fs::File::create(&jpeg_path).unwrap();
    rgb.write_with_encoder(image::codecs::jpeg::JpegEncoder::new_with_quality(&mut file, 95)).unwrap();
    file.flush().unwrap();

    let set = data::load(dir.path().to_str().unwrap()).unwrap().train;
    assert_eq!(set.images.size(), vec![5, 3, 28, 28]);
    // Grayscale PNGs are repeated over the three channels, exactly.
    for i in 0..4i64 {
        for c in 0..3 {
            assert_eq!(bytes(&set.images.get(i).get(c)), raw.image(i as usize), "image {i} channel {c}");
        }
    }
    // The JPEG equals a direct decode, plane by plane, and is close to what was encoded.
    let decoded = image::open(&jpeg_path).unwrap().to_rgb8();
    let planes = bytes(&set.images.get(4));
    for c in 0..3 {
        let direct: Vec<u8> = decoded.pixels().map(|p| p.0[c]).collect();
        assert_eq!(&planes[c * 784..(c + 1) * 784], direct.as_slice(), "channel {c}");
        let original: Vec<u8> = rgb.pixels().map(|p| p.0[c]).collect();
        let error: f64 =
            direct.iter().zip(&original).map(|(&a, &b)| (f64::from(a) - f64::from(b)).abs()).sum::<f64>()
                / 784.0;
        assert!(error < 8.0, "JPEG quality 95 stays close: mean error {error} in channel {c}");
    }
}

#[test]
fn image_folder_of_mixed_sizes_is_resized_to_the_most_common_size() {
    let raw = t10k();
    let dir = tempfile::tempdir().unwrap();
    for i in 0..3 {
        save_png(&raw, i, &dir.path().join("a").join(format!("{i}.png")));
    }
    GrayImage::from_pixel(40, 30, image::Luma([77])).save(dir.path().join("a/wide.png")).unwrap();
    std::fs::create_dir_all(dir.path().join("b")).unwrap();
    GrayImage::from_pixel(20, 20, image::Luma([200])).save(dir.path().join("b/small.png")).unwrap();

    let set = data::load(dir.path().to_str().unwrap()).unwrap().train;
    assert_eq!(set.images.size(), vec![5, 1, 28, 28]);
    for i in 0..3 {
        assert_eq!(bytes(&set.images.get(i as i64)), raw.image(i), "28×28 images keep their pixels");
    }
    assert!(bytes(&set.images.get(3)).iter().all(|&p| p == 77), "a flat image stays flat when resized");
    assert!(bytes(&set.images.get(4)).iter().all(|&p| p == 200));
}

/// A CIFAR-10 record from a Fashion-MNIST image padded to 32 × 32: R = p, G = 255 - p, B = p / 2.
fn cifar_record(raw: &Raw, i: usize) -> Vec<u8> {
    let mut plane = vec![0u8; 1024];
    for y in 0..28 {
        plane[(y + 2) * 32 + 2..(y + 2) * 32 + 30].copy_from_slice(&raw.image(i)[y * 28..(y + 1) * 28]);
    }
    let mut record = vec![raw.labels[i]];
    record.extend(plane.iter().copied());
    record.extend(plane.iter().map(|&p| 255 - p));
    record.extend(plane.iter().map(|&p| p / 2));
    record
}

fn write_batch(raw: &Raw, range: std::ops::Range<usize>, path: &Path) -> Vec<u8> {
    let bytes: Vec<u8> = range.flat_map(|i| cifar_record(raw, i)).collect();
    std::fs::create_dir_all(path.parent().unwrap()).unwrap();
    std::fs::write(path, &bytes).unwrap();
    bytes
}

#[test]
fn cifar10_batches_read_back_exactly() {
    let raw = t10k();
    let dir = tempfile::tempdir().unwrap();
    // The layout of the official tarball: the batches sit in cifar-10-batches-bin/.
    let batches = dir.path().join("cifar-10-batches-bin");
    let mut train_bytes = write_batch(&raw, 0..100, &batches.join("data_batch_1.bin"));
    train_bytes.extend(write_batch(&raw, 100..150, &batches.join("data_batch_2.bin")));
    let test_bytes = write_batch(&raw, 150..180, &batches.join("test_batch.bin"));
    let meta: String = FASHION_MNIST_CLASSES.iter().map(|n| format!("{n}\n")).collect::<String>() + "\n\n";
    std::fs::write(batches.join("batches.meta.txt"), meta).unwrap();

    let set = data::load(dir.path().to_str().unwrap()).unwrap();
    assert_eq!(set.format, DataFormat::Cifar10);
    assert_eq!(set.source, batches);
    assert_eq!(set.train.images.size(), vec![150, 3, 32, 32]);
    assert_eq!(set.train.class_names, FASHION_MNIST_CLASSES.map(String::from).to_vec());
    for (split, bytes_on_disk) in [(&set.train, &train_bytes), (set.test.as_ref().unwrap(), &test_bytes)] {
        let records: Vec<&[u8]> = bytes_on_disk.chunks(3073).collect();
        let pixels: Vec<u8> = records.iter().flat_map(|r| r[1..].to_vec()).collect();
        let labels: Vec<i64> = records.iter().map(|r| i64::from(r[0])).collect();
        assert_eq!(bytes(&split.images), pixels);
        assert_eq!(longs(&split.labels), labels);
    }
    // Channel order: R plane holds the padded Fashion-MNIST image itself.
    let first = bytes(&set.train.images.get(0).get(0));
    assert_eq!(&first[2 * 32 + 2..2 * 32 + 30], &raw.image(0)[..28]);
    assert_eq!(bytes(&set.train.images.get(0).get(1))[0], 255, "G = 255 - p on the zero border");
}

#[test]
fn cifar10_without_meta_uses_the_cifar10_class_names() {
    let raw = t10k();
    let dir = tempfile::tempdir().unwrap();
    write_batch(&raw, 0..20, &dir.path().join("data_batch_1.bin"));
    let set = data::load(dir.path().to_str().unwrap()).unwrap();
    assert_eq!(set.train.class_names, CIFAR10_CLASSES.map(String::from).to_vec());
    assert_eq!(set.train.len(), 20);
    assert!(set.test.is_none());
}

#[test]
fn idx_folder_plain_and_gzipped_with_mirror_names() {
    let raw = t10k();
    let dir = tempfile::tempdir().unwrap();
    let root = dir.path().join("digits");
    std::fs::create_dir_all(&root).unwrap();
    // Training split plain, with the `.idx3-ubyte` spelling some mirrors use.
    std::fs::write(
        root.join("train-images.idx3-ubyte"),
        idx_bytes(2051, &[1000, 28, 28], &raw.pixels[..1000 * 784]),
    )
    .unwrap();
    std::fs::write(root.join("train-labels.idx1-ubyte"), idx_bytes(2049, &[1000], &raw.labels[..1000]))
        .unwrap();
    // Test split gzipped.
    let gz = |data: Vec<u8>| {
        let mut encoder = flate2::write::GzEncoder::new(Vec::new(), flate2::Compression::fast());
        encoder.write_all(&data).unwrap();
        encoder.finish().unwrap()
    };
    std::fs::write(
        root.join("t10k-images-idx3-ubyte.gz"),
        gz(idx_bytes(2051, &[200, 28, 28], &raw.pixels[1000 * 784..1200 * 784])),
    )
    .unwrap();
    std::fs::write(
        root.join("t10k-labels-idx1-ubyte.gz"),
        gz(idx_bytes(2049, &[200], &raw.labels[1000..1200])),
    )
    .unwrap();

    let set = data::load(root.to_str().unwrap()).unwrap();
    assert_eq!(set.format, DataFormat::Idx);
    assert_eq!(set.name, "digits");
    assert_eq!(
        set.train.class_names,
        (0..10).map(|l| l.to_string()).collect::<Vec<_>>(),
        "not a fashion folder: numbered classes"
    );
    assert_eq!(bytes(&set.train.images), raw.pixels[..1000 * 784]);
    let test = set.test.unwrap();
    assert_eq!(bytes(&test.images), raw.pixels[1000 * 784..1200 * 784]);
    assert_eq!(longs(&test.labels), raw.labels[1000..1200].iter().map(|&l| i64::from(l)).collect::<Vec<_>>());
}
