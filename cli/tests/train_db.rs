//! `effnas train --db` records its result so the store is useful before any search.

mod common;
use common::{json, with_tiny_proxy};

#[test]
fn a_manual_training_becomes_a_run_with_one_trial() {
    let dir = tempfile::tempdir().expect("tempdir");
    let db = dir.path().join("manual.db");
    let db = db.to_str().expect("path");
    let report = json(&with_tiny_proxy(&["train", "b0", "--db", db, "--json"]));
    let runs = json(&["runs", "--db", db, "--json"]);
    assert_eq!(runs.as_array().map(Vec::len), Some(1));
    assert_eq!(runs[0]["kind"], "manual");
    assert!(runs[0]["name"].as_str().is_some_and(|n| n.starts_with("effnas train b0")));
    let trials = json(&["trials", "--db", db, "--json"]);
    assert_eq!(trials.as_array().map(Vec::len), Some(1));
    assert_eq!(trials[0]["state"], "complete");
    assert_eq!(trials[0]["accuracy"], report["accuracy"]);
    // The trial is the named network (B0 at 224 px, 1000 classes), not the proxy.
    assert_eq!(trials[0]["params"], report["network"]["params"]);
    assert_eq!(trials[0]["flops"], report["network"]["flops"]);
    let b0 = json(&["arch", "b0", "--json"]);
    assert_eq!(report["network"]["flops"], b0["flops"], "{report}");
    assert_ne!(report["network"]["flops"], report["flops"], "the proxy's own cost differs");
    // The reward is on the named network's multiply-adds: ACC × (385.8M / 400M)^−0.07.
    let accuracy = report["accuracy"].as_f64().expect("accuracy");
    let flops = report["network"]["flops"].as_f64().expect("flops");
    let expected = accuracy * (flops / 400e6).powf(-0.07);
    let reward = report["reward"].as_f64().expect("reward");
    assert!((reward - expected).abs() < 1e-9, "reward {reward}, expected {expected}");
    assert_eq!(trials[0]["reward"], report["reward"]);
    let shown = json(&["show", &trials[0]["id"].to_string(), "--db", db, "--json"]);
    assert!(shown.to_string().contains("train_loss"), "the curve is stored: {shown}");
    assert_eq!(shown["extra"]["proxy_flops"], report["flops"], "the proxy's cost is kept in extra");

    // A search that includes the same network under the same settings records it under the same
    // hash and proxy key, with the same cost, and (one worker, same seed: a deterministic CPU
    // training) the same accuracy and reward.
    let search = json(&with_tiny_proxy(&[
        "search",
        "--db",
        db,
        "--strategy",
        "random",
        "--trials",
        "1",
        "--include",
        "b0",
        "--finalists",
        "0",
        "--json",
    ]));
    let searched = json(&["trials", "--db", db, "--run", &search["run"].to_string(), "--json"]);
    assert_eq!(searched[0]["arch_hash"], trials[0]["arch_hash"]);
    assert_eq!(searched[0]["proxy_key"], trials[0]["proxy_key"]);
    assert_eq!(searched[0]["flops"], trials[0]["flops"]);
    assert_eq!(searched[0]["accuracy"], trials[0]["accuracy"]);
    assert_eq!(searched[0]["reward"], trials[0]["reward"]);
}

#[test]
fn a_save_path_that_cannot_hold_a_checkpoint_is_refused_before_training() {
    let dir = tempfile::tempdir().expect("tempdir");
    let file = dir.path().join("not-a-folder");
    std::fs::write(&file, "keep me").expect("write");
    let db = dir.path().join("manual.db");
    let args = [
        "train",
        "b0",
        "--width",
        "0.25",
        "--train-images",
        "64",
        "--epochs",
        "1",
        "--resolution",
        "16",
        "--save",
        file.to_str().expect("path"),
        "--db",
        db.to_str().expect("path"),
    ];
    common::fails_naming(&args, "--save");
    assert_eq!(std::fs::read_to_string(&file).expect("still there"), "keep me");
    assert!(!db.exists(), "refused before the database was created");
}
