//! `effnas train --db` records its result so the store is useful before any search.

mod common;
use common::json;

#[test]
fn a_manual_training_becomes_a_run_with_one_trial() {
    let dir = tempfile::tempdir().expect("tempdir");
    let db = dir.path().join("manual.db");
    let db = db.to_str().expect("path");
    let report = json(&[
        "train",
        "b0",
        "--width",
        "0.25",
        "--depth",
        "0.5",
        "--train-images",
        "128",
        "--validation-images",
        "64",
        "--epochs",
        "1",
        "--resolution",
        "16",
        "--db",
        db,
        "--json",
    ]);
    let runs = json(&["runs", "--db", db, "--json"]);
    assert_eq!(runs.as_array().map(Vec::len), Some(1));
    assert_eq!(runs[0]["kind"], "manual");
    assert!(runs[0]["name"].as_str().is_some_and(|n| n.starts_with("effnas train b0")));
    let trials = json(&["trials", "--db", db, "--json"]);
    assert_eq!(trials.as_array().map(Vec::len), Some(1));
    assert_eq!(trials[0]["state"], "complete");
    assert_eq!(trials[0]["accuracy"], report["accuracy"]);
    assert_eq!(trials[0]["params"], report["params"]);
    let shown = json(&["show", &trials[0]["id"].to_string(), "--db", db, "--json"]);
    assert!(shown.to_string().contains("train_loss"), "the curve is stored: {shown}");
}
