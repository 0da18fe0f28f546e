//! Hostile values of the flags that several commands share (issue 17): one parser and one range
//! per flag, so `train`, `search`, `compound` and `trials` accept and refuse the same values; a
//! training that could take no step is refused; a run whose every trial failed fails the command.

mod common;

use std::path::Path;

use common::{effnas, fails_naming, json, stdout_of};

/// A 2-class, 12 × 12 IDX data set of `n` images (plain, not gzip) under `prefix`.
fn write_idx(dir: &Path, prefix: &str, n: u32) {
    let mut images = 0x0000_0803u32.to_be_bytes().to_vec();
    for d in [n, 12, 12] {
        images.extend_from_slice(&d.to_be_bytes());
    }
    let mut labels = 0x0000_0801u32.to_be_bytes().to_vec();
    labels.extend_from_slice(&n.to_be_bytes());
    for i in 0..n {
        labels.push((i % 2) as u8);
        images.extend((0..144u32).map(|p| ((p * 7 + i * 13) % 200) as u8));
    }
    std::fs::write(dir.join(format!("{prefix}-images-idx3-ubyte")), images).expect("images");
    std::fs::write(dir.join(format!("{prefix}-labels-idx1-ubyte")), labels).expect("labels");
}

fn path(p: &Path) -> &str {
    p.to_str().expect("utf-8 path")
}

#[test]
fn train_search_and_compound_refuse_the_same_values_naming_the_flag() {
    let dir = tempfile::tempdir().expect("tempdir");
    let db = dir.path().join("x.db");
    let db = path(&db);
    let commands: [&[&str]; 3] =
        [&["train", "b0"], &["search", "--db", db, "--evaluator", "oracle"], &["compound", "--db", db]];
    let shared: [(&str, &str); 6] = [
        ("--resolution", "1"),
        ("--threads", "0"),
        ("--epochs", "0"),
        ("--train-images", "1"),
        ("--batch-size", "100000"),
        ("--width", "9"),
    ];
    for command in commands {
        for (flag, value) in shared {
            let mut args = command.to_vec();
            args.extend([flag, value]);
            fails_naming(&args, flag);
        }
    }
    for command in &commands[..2] {
        for value in ["0", "-1", "lots"] {
            let mut args = command.to_vec();
            let flag = format!("--target-flops={value}");
            args.push(&flag);
            fails_naming(&args, "--target-flops");
        }
    }
    fails_naming(&["train", "b0", "--crop-padding", "100000"], "--crop-padding");
    fails_naming(&["search", "--db", db, "--max-flops", "0"], "--max-flops");
    fails_naming(&["trials", "--db", db, "--max-flops", "0"], "--max-flops");
    // Durations past what the clock counts (1e300 s once panicked) or not above 0.
    for (args, flag) in [
        (&["worker", "--db", db][..], "--lease"),
        (&["worker", "--db", db][..], "--idle-exit"),
        (&["worker", "--db", db][..], "--poll"),
        (&["search", "--db", db, "--evaluator", "oracle"][..], "--lease"),
    ] {
        for value in ["1e300", "0", "inf"] {
            let mut args = args.to_vec();
            args.extend([flag, value]);
            fails_naming(&args, flag);
        }
    }
    assert!(!Path::new(db).exists(), "a refused command created the database");
}

#[test]
fn multiply_adds_take_the_same_units_everywhere() {
    let dir = tempfile::tempdir().expect("tempdir");
    let db = dir.path().join("x.db");
    let db = path(&db);
    let summary = json(&[
        "search",
        "--db",
        db,
        "--evaluator",
        "oracle",
        "--trials",
        "4",
        "--max-flops",
        "1G",
        "--target-flops",
        "0.4G",
        "--json",
    ]);
    assert_eq!(summary["status"], "complete", "{summary}");
    let trials = json(&["trials", "--db", db, "--max-flops", "1G", "--json"]);
    let under = trials.as_array().expect("a list");
    assert!(under.iter().all(|t| t["flops"].as_u64().is_some_and(|f| f <= 1_000_000_000)), "{trials}");
    let config = json(&["runs", "--db", db, "--json"]);
    assert!(config.to_string().contains("400000000"), "the target is stored as 400M: {config}");
}

#[test]
fn help_states_every_range() {
    // clap wraps the text: compare with the wrapping undone.
    let help =
        |command: &str| stdout_of(&[command, "--help"]).split_whitespace().collect::<Vec<_>>().join(" ");
    let train = help("train");
    for range in ["8 to 1024", "0 to 64", "1 to 1024", "2 to 4096", "1 to 1000", "at most 8", "at least 1"] {
        assert!(train.contains(range), "train --help lacks {range:?}");
    }
    let search = help("search");
    for range in ["8 to 1024", "1 to 1024", "1 to 256", "1 to 1000000", "400M, 0.4G"] {
        assert!(search.contains(range), "search --help lacks {range:?}");
    }
    let compound = help("compound");
    assert!(compound.contains("8 to 1024") && compound.contains("1 to 256"), "{compound}");
}

#[test]
fn a_training_left_with_one_image_is_refused_before_it_starts() {
    let data = tempfile::tempdir().expect("tempdir");
    write_idx(data.path(), "train", 3);
    write_idx(data.path(), "t10k", 4);
    let db = data.path().join("runs.db");
    let args = [
        "train",
        "r1_k3_s11_e1_i32_o8",
        "--dataset",
        path(data.path()),
        "--validation-images",
        "2",
        "--batch-size",
        "2",
        "--db",
        path(&db),
    ];
    fails_naming(&args, "--validation-images 2 leaves 1 training image(s)");
    let runs = stdout_of(&["runs", "--db", path(&db), "--json"]);
    assert!(!runs.contains("manual"), "no run is recorded: {runs}");
}

#[test]
fn a_compound_run_whose_every_point_failed_exits_1_and_says_so() {
    let dir = tempfile::tempdir().expect("tempdir");
    write_idx(dir.path(), "train", 40);
    write_idx(dir.path(), "t10k", 4);
    let db = dir.path().join("x.db");
    let args = [
        "compound",
        "--db",
        path(&db),
        "--base",
        "r1_k3_s11_e1_i32_o8",
        "--dataset",
        path(dir.path()),
        "--validation-images",
        "10",
        "--train-images",
        "20",
        "--resolution",
        "16",
        "--epochs",
        "1",
        "--max-points",
        "1",
        "--workers",
        "1",
        "--time-limit",
        "1e-9",
    ];
    let out = effnas(&args);
    let stdout = String::from_utf8_lossy(&out.stdout);
    assert_eq!(out.status.code(), Some(1), "{stdout} {}", String::from_utf8_lossy(&out.stderr));
    assert!(stdout.lines().next().is_some_and(|l| l.contains(": failed,")), "{stdout}");
}
