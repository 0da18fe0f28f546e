//! `effnas train` end to end on a tiny IDX data set written to a temporary folder.

use std::path::Path;
use std::process::{Command, Output};

type TestResult = Result<(), Box<dyn std::error::Error>>;

/// A 2-class, 12 × 12 IDX data set (plain, not gzip): class 0 has a bright top-left square,
/// class 1 a bright bottom-right one, on a fixed pseudo-random background.
fn write_idx(dir: &Path, prefix: &str, n: u32) -> std::io::Result<()> {
    let (rows, cols) = (12u32, 12u32);
    let mut images = Vec::new();
    images.extend_from_slice(&0x0000_0803u32.to_be_bytes());
    for d in [n, rows, cols] {
        images.extend_from_slice(&d.to_be_bytes());
    }
    let mut labels = Vec::new();
    labels.extend_from_slice(&0x0000_0801u32.to_be_bytes());
    labels.extend_from_slice(&n.to_be_bytes());
    let mut state = 12345u32;
    for i in 0..n {
        let label = (i % 2) as u8;
        labels.push(label);
        for y in 0..rows {
            for x in 0..cols {
                state = state.wrapping_mul(1_103_515_245).wrapping_add(12345);
                let noise = ((state >> 16) % 60) as u8;
                let in_square = if label == 0 { y < 6 && x < 6 } else { y >= 6 && x >= 6 };
                images.push(if in_square { 180 + noise } else { noise });
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

#[test]
fn train_prints_json_with_the_documented_fields_and_saves_a_checkpoint() -> TestResult {
    let data = tempfile::tempdir()?;
    write_idx(data.path(), "train", 240)?;
    write_idx(data.path(), "t10k", 40)?;
    let save = tempfile::tempdir()?;
    let dataset = data.path().to_string_lossy().into_owned();
    let save_dir = save.path().join("run");
    let save_arg = save_dir.to_string_lossy().into_owned();
    let out = effnas(&[
        "train",
        TINY,
        "--dataset",
        &dataset,
        "--epochs",
        "2",
        "--validation-images",
        "40",
        "--train-images",
        "160",
        "--resolution",
        "16",
        "--batch-size",
        "16",
        "--device",
        "cpu",
        "--seed",
        "3",
        "--test",
        "--save",
        &save_arg,
        "--json",
    ])?;
    assert!(out.status.success(), "stderr: {}", String::from_utf8_lossy(&out.stderr));
    let json: serde_json::Value = serde_json::from_slice(&out.stdout)?;
    for field in [
        "accuracy",
        "params",
        "flops",
        "reward",
        "seconds",
        "images_per_second",
        "status",
        "curve",
        "test_accuracy",
    ] {
        assert!(json.get(field).is_some(), "missing {field} in {json}");
    }
    assert_eq!(json["status"], "complete");
    assert_eq!(json["train_images"], 160);
    assert_eq!(json["validation_images"], 40);
    assert_eq!(json["resolution"], 16);
    assert_eq!(json["dataset_format"], "idx");
    assert_eq!(json["curve"].as_array().map(Vec::len), Some(2));
    let accuracy = json["accuracy"].as_f64().unwrap_or(-1.0);
    assert!((0.0..=1.0).contains(&accuracy), "{accuracy}");
    // The architecture was adapted to the data: one input channel, two classes.
    assert_eq!(json["arch"]["input_channels"], 1);
    assert_eq!(json["arch"]["num_classes"], 2);
    for file in ["arch.json", "weights.safetensors", "result.json"] {
        assert!(save_dir.join(file).exists(), "{file} not saved");
    }
    Ok(())
}

/// `--stem-stride 1`: the trained network's stem keeps the image size, and the proxy key says
/// so (a stride-2 training is never reused for it).
#[test]
fn a_stride_one_stem_is_trained_and_keyed() -> TestResult {
    let data = tempfile::tempdir()?;
    write_idx(data.path(), "train", 120)?;
    write_idx(data.path(), "t10k", 20)?;
    let dataset = data.path().to_string_lossy().into_owned();
    let mut keys = Vec::new();
    for stride in ["1", "2"] {
        let out = effnas(&[
            "train",
            "b0",
            "--width",
            "0.25",
            "--depth",
            "0.5",
            "--dataset",
            &dataset,
            "--epochs",
            "1",
            "--validation-images",
            "20",
            "--resolution",
            "16",
            "--batch-size",
            "16",
            "--stem-stride",
            stride,
            "--json",
        ])?;
        assert!(out.status.success(), "stderr: {}", String::from_utf8_lossy(&out.stderr));
        let json: serde_json::Value = serde_json::from_slice(&out.stdout)?;
        assert_eq!(json["status"], "complete", "{json}");
        // JSON omits the stride at its default of 2.
        let recorded = json["arch"]["stem_stride"].as_u64().unwrap_or(2);
        assert_eq!(recorded.to_string(), stride, "{}", json["arch"]);
        keys.push(json["proxy_key"].as_str().unwrap_or_default().to_owned());
    }
    assert!(keys[0].contains("-s1-") && keys[1].contains("-s2-"), "{keys:?}");
    Ok(())
}

#[test]
fn train_prints_a_summary_table() -> TestResult {
    let data = tempfile::tempdir()?;
    write_idx(data.path(), "train", 120)?;
    let dataset = data.path().to_string_lossy().into_owned();
    let out = effnas(&[
        "train",
        TINY,
        "--dataset",
        &dataset,
        "--epochs",
        "1",
        "--validation-images",
        "20",
        "--resolution",
        "12",
        "--batch-size",
        "20",
        "--width",
        "0.5",
        "--device",
        "cpu",
    ])?;
    assert!(out.status.success(), "stderr: {}", String::from_utf8_lossy(&out.stderr));
    let text = String::from_utf8(out.stdout)?;
    for row in ["validation accuracy", "params", "multiply-adds", "reward", "images/s", "status"] {
        assert!(text.contains(row), "no {row:?} row in:\n{text}");
    }
    Ok(())
}

#[test]
fn a_diverging_run_is_reported_as_failed_with_a_reason() -> TestResult {
    let data = tempfile::tempdir()?;
    write_idx(data.path(), "train", 120)?;
    let dataset = data.path().to_string_lossy().into_owned();
    let out = effnas(&[
        "train",
        TINY,
        "--dataset",
        &dataset,
        "--epochs",
        "1",
        "--validation-images",
        "20",
        "--resolution",
        "12",
        "--batch-size",
        "20",
        "--lr",
        "1e30",
        "--warmup-epochs",
        "0",
        "--device",
        "cpu",
        "--json",
    ])?;
    assert_eq!(out.status.code(), Some(1), "stderr: {}", String::from_utf8_lossy(&out.stderr));
    let json: serde_json::Value = serde_json::from_slice(&out.stdout)?;
    assert_eq!(json["status"], "failed");
    assert_eq!(json["failure"], "diverged");
    assert!(json["reason"].as_str().is_some_and(|r| r.contains("loss")), "{json}");
    Ok(())
}

#[test]
fn user_errors_are_one_line_with_exit_code_2() -> TestResult {
    let data = tempfile::tempdir()?;
    let dataset = data.path().to_string_lossy().into_owned();
    let cases: [(&[&str], &str); 5] = [
        (&["train", "b0", "--dataset", "/no/such/folder"], "/no/such/folder"),
        (&["train", "b0", "--dataset", &dataset, "--device", "cuda:99"], "cuda:99"),
        (&["train", "not-an-arch", "--dataset", &dataset], "not-an-arch"),
        (&["train", "b0", "--dataset", &dataset, "--batch-size", "1"], "--batch-size"),
        (&["train", "b0", "--dataset", &dataset, "--stem-stride", "3"], "--stem-stride"),
    ];
    for (args, needle) in cases {
        let out = effnas(args)?;
        let stderr = String::from_utf8_lossy(&out.stderr);
        assert_eq!(out.status.code(), Some(2), "{args:?}: {stderr}");
        assert!(stderr.starts_with("error: ") && stderr.contains(needle), "{args:?}: {stderr}");
        assert_eq!(stderr.trim_end().lines().count(), 1, "{args:?}: {stderr}");
    }
    Ok(())
}
