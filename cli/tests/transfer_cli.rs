//! `effnas train --classes`, `effnas finetune` and `effnas cam` end to end on a tiny 4-class IDX
//! data set: train on classes 0 and 1, fine-tune on 2 and 3 with the backbone frozen, then draw
//! the class activation maps of both networks.

use std::path::Path;
use std::process::{Command, Output};

type TestResult = Result<(), Box<dyn std::error::Error>>;

/// A 4-class, 12 × 12 IDX data set: class c has a bright 5 × 5 square in quadrant c, on noise.
fn write_idx(dir: &Path, prefix: &str, n: u32) -> std::io::Result<()> {
    let side = 12u32;
    let mut images = 0x0000_0803u32.to_be_bytes().to_vec();
    for d in [n, side, side] {
        images.extend_from_slice(&d.to_be_bytes());
    }
    let mut labels = 0x0000_0801u32.to_be_bytes().to_vec();
    labels.extend_from_slice(&n.to_be_bytes());
    let mut state = 99u32;
    for i in 0..n {
        let label = i % 4;
        labels.push(label as u8);
        let (top, left) = ((label / 2) * 6, (label % 2) * 6);
        for y in 0..side {
            for x in 0..side {
                state = state.wrapping_mul(1_103_515_245).wrapping_add(12345);
                let noise = ((state >> 16) % 60) as u8;
                let inside = (top..top + 5).contains(&y) && (left..left + 5).contains(&x);
                images.push(if inside { 190 + noise } else { noise });
            }
        }
    }
    std::fs::write(dir.join(format!("{prefix}-images-idx3-ubyte")), images)?;
    std::fs::write(dir.join(format!("{prefix}-labels-idx1-ubyte")), labels)
}

fn effnas(args: &[&str]) -> std::io::Result<Output> {
    Command::new(env!("CARGO_BIN_EXE_effnas")).args(args).env("RUST_LOG", "warn").output()
}

const TINY: &str = "r1_k3_s11_e1_i32_o16_se0.25,r1_k3_s22_e3_i16_o24_se0.25";

fn json(out: &Output) -> Result<serde_json::Value, Box<dyn std::error::Error>> {
    assert!(out.status.success(), "stderr: {}", String::from_utf8_lossy(&out.stderr));
    Ok(serde_json::from_slice(&out.stdout)?)
}

fn tensors(checkpoint: &Path) -> Result<Vec<(String, tch::Tensor)>, tch::TchError> {
    tch::Tensor::read_safetensors(checkpoint.join("weights.safetensors"))
}

fn tensor<'a>(all: &'a [(String, tch::Tensor)], name: &str) -> Result<&'a tch::Tensor, String> {
    all.iter().find(|(n, _)| n == name).map(|(_, t)| t).ok_or(format!("no {name}"))
}

#[test]
fn train_on_two_classes_finetune_on_two_others_and_draw_their_maps() -> TestResult {
    let data = tempfile::tempdir()?;
    write_idx(data.path(), "train", 320)?;
    write_idx(data.path(), "t10k", 40)?;
    let dataset = data.path().to_string_lossy().into_owned();
    let work = tempfile::tempdir()?;
    let (source, target) = (work.path().join("source"), work.path().join("target"));
    let db = work.path().join("runs.db");
    let small = [
        "--validation-images",
        "20",
        "--resolution",
        "16",
        "--batch-size",
        "16",
        "--device",
        "cpu",
        "--test",
        "--json",
    ];

    let mut train = vec!["train", TINY, "--dataset", &dataset, "--classes", "0-1", "--epochs", "2"];
    let source_arg = source.to_string_lossy().into_owned();
    train.extend(small);
    train.extend(["--save", &source_arg]);
    let trained = json(&effnas(&train)?)?;
    assert_eq!(trained["classes"], serde_json::json!([0, 1]));
    assert_eq!(trained["arch"]["num_classes"], 2);
    assert_eq!(trained["train_images"], 140, "160 images of classes 0-1, 20 held out");

    let target_arg = target.to_string_lossy().into_owned();
    let db_arg = db.to_string_lossy().into_owned();
    let mut finetune =
        vec!["finetune", &source_arg, "--dataset", &dataset, "--classes", "1-3", "--epochs", "2"];
    finetune.extend(small);
    finetune.extend(["--freeze", "backbone", "--save", &target_arg, "--db", &db_arg]);
    let tuned = json(&effnas(&finetune)?)?;
    assert_eq!(tuned["status"], "complete");
    assert_eq!(tuned["arch"]["num_classes"], 3);
    assert_eq!(tuned["class_names"], serde_json::json!(["1", "2", "3"]));
    assert_eq!(tuned["new_variables"], serde_json::json!(["classifier.1.bias", "classifier.1.weight"]));
    assert_eq!(tuned["freeze"], "backbone");
    assert!(tuned["test_accuracy"].as_f64().is_some());

    // The saved network: a 3-class classifier, the backbone exactly the pretrained one.
    let (before, after) = (tensors(&source)?, tensors(&target)?);
    assert_eq!(tensor(&after, "classifier.1.weight")?.size()[0], 3);
    for (name, value) in &before {
        if !name.starts_with("classifier.") {
            let gap = (value - tensor(&after, name)?).abs().max().double_value(&[]);
            assert!(gap == 0.0, "{name} changed by {gap} under a frozen backbone");
        }
    }
    let runs = json(&effnas(&["runs", "--db", &db_arg, "--json"])?)?;
    assert_eq!(runs.as_array().map(Vec::len), Some(1), "{runs}");

    // CAM of both networks on 3 test images of classes 1-3 (the fine-tuned network's classes).
    let pictures = work.path().join("cam");
    let pictures_arg = pictures.to_string_lossy().into_owned();
    let cam = json(&effnas(&[
        "cam",
        &target_arg,
        &target_arg,
        "--labels",
        "a,b",
        "--dataset",
        &dataset,
        "--classes",
        "1-3",
        "--count",
        "3",
        "--size",
        "48",
        "--out",
        &pictures_arg,
        "--device",
        "cpu",
        "--json",
    ])?)?;
    let maps = cam["maps"].as_array().ok_or("no maps")?;
    assert_eq!(maps.len(), 6);
    for map in maps {
        let file = map["file"].as_str().ok_or("no file")?;
        let picture = image::open(file)?;
        assert_eq!((picture.width(), picture.height()), (48, 48), "{file}");
        assert!(map["probability"].as_f64().is_some_and(|p| (0.0..=1.0).contains(&p)));
        assert!(map["predicted"].as_u64().is_some_and(|c| c < 3));
    }
    let grid = image::open(pictures.join("grid.png"))?;
    // 3 columns (the image and two networks) of 48 px with 6 px gaps; a header of 22 px and 3
    // rows of 48 px, an 18-px caption and a 6-px gap each.
    assert_eq!((grid.width(), grid.height()), (3 * 54 + 6, 22 + 3 * 72));

    // The source network (2 classes) cannot take a class it does not have.
    let bad_class = effnas(&[
        "cam",
        &source_arg,
        "--dataset",
        &dataset,
        "--classes",
        "0-1",
        "--class",
        "5",
        "--out",
        &pictures_arg,
    ])?;
    assert_eq!(bad_class.status.code(), Some(2));
    Ok(())
}

#[test]
fn cam_refuses_a_missing_image_in_one_line() -> TestResult {
    let data = tempfile::tempdir()?;
    write_idx(data.path(), "train", 80)?;
    let dataset = data.path().to_string_lossy().into_owned();
    let work = tempfile::tempdir()?;
    let source = work.path().join("net");
    let source_arg = source.to_string_lossy().into_owned();
    json(&effnas(&[
        "train",
        TINY,
        "--dataset",
        &dataset,
        "--epochs",
        "1",
        "--validation-images",
        "8",
        "--resolution",
        "12",
        "--batch-size",
        "16",
        "--device",
        "cpu",
        "--save",
        &source_arg,
        "--json",
    ])?)?;
    let missing = work.path().join("no-such-image.png");
    let out = work.path().join("out").to_string_lossy().into_owned();
    for (path, expected) in [(missing.clone(), "no such"), (work.path().join("nope"), "no such")] {
        let path_arg = path.to_string_lossy().into_owned();
        let refused = effnas(&["cam", &source_arg, &path_arg, "--dataset", &dataset, "--out", &out])?;
        let stderr = String::from_utf8_lossy(&refused.stderr);
        assert_eq!(refused.status.code(), Some(2), "{stderr}");
        assert_eq!(stderr.trim_end().lines().count(), 1, "{stderr}");
        assert!(stderr.contains(&path_arg) && stderr.contains(expected), "{stderr}");
    }
    // A file that is not an image: named, one line.
    let text = work.path().join("notes.png");
    std::fs::write(&text, "not a picture")?;
    let text_arg = text.to_string_lossy().into_owned();
    let refused = effnas(&["cam", &source_arg, &text_arg, "--dataset", &dataset, "--out", &out])?;
    let stderr = String::from_utf8_lossy(&refused.stderr);
    assert_eq!(refused.status.code(), Some(2), "{stderr}");
    assert_eq!(stderr.trim_end().lines().count(), 1, "{stderr}");
    assert!(stderr.contains("notes.png"), "{stderr}");
    Ok(())
}
