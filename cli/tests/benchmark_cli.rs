//! `effnas search --evaluator benchmark`: searches of the nas-bench-macro and accel-nasbench
//! spaces answered from the published trainings, through worker processes and the database like
//! trained searches; and the refusals.

use std::collections::BTreeMap;

use serde_json::Value;

mod common;
use common::{effnas, fails_naming, json};

/// The table's mean accuracy (fraction) of every code, read from the committed file.
fn macro_means() -> BTreeMap<String, f64> {
    let path =
        concat!(env!("CARGO_MANIFEST_DIR"), "/../benchmarks/nas-bench-macro/nas-bench-macro_cifar10.json");
    let text = std::fs::read_to_string(path).expect("the committed benchmark file");
    let table: BTreeMap<String, Value> = serde_json::from_str(&text).expect("JSON");
    table.into_iter().map(|(code, v)| (code, v["mean_acc"].as_f64().expect("mean_acc") / 100.0)).collect()
}

fn search(db: &str, extra: &[&str]) -> Value {
    let mut args = vec!["search", "--db", db, "--evaluator", "benchmark", "--w", "0", "--finalists", "0"];
    args.extend_from_slice(extra);
    args.push("--json");
    json(&args)
}

#[test]
fn a_nas_bench_macro_search_reads_the_table() {
    let dir = tempfile::tempdir().expect("tempdir");
    let db = dir.path().join("b.db");
    let db = db.to_str().expect("path");
    search(db, &["--space", "nas-bench-macro", "--strategy", "random", "--trials", "40", "--seed", "3"]);
    let trials = json(&["trials", "--db", db, "--run", "1", "--json"]);
    let trials = trials.as_array().expect("trials");
    assert_eq!(trials.len(), 40);
    let means = macro_means();
    for trial in trials {
        assert_eq!(trial["state"], "complete", "{trial}");
        assert_eq!(trial["proxy_key"], "benchmark:nas-bench-macro:mean");
        let shown = json(&["show", "--db", db, &trial["id"].to_string(), "--json"]);
        let code = shown["extra"]["member"].as_str();
        let code = code.unwrap_or_else(|| panic!("the member's code in {shown}"));
        let accuracy = trial["accuracy"].as_f64().expect("accuracy");
        assert!(
            (accuracy - means[code]).abs() < 1e-9,
            "trial {}: {accuracy} vs {}",
            trial["id"],
            means[code]
        );
        assert_eq!(trial["reward"], trial["accuracy"], "w 0: the reward is the accuracy");
    }

    // Drawn answers: one of the member's three runs, fixed by the seed.
    search(
        db,
        &[
            "--space",
            "nas-bench-macro",
            "--strategy",
            "random",
            "--trials",
            "10",
            "--seed",
            "3",
            "--benchmark-noise",
            "--name",
            "noisy",
        ],
    );
    let noisy = json(&["trials", "--db", db, "--run", "noisy", "--json"]);
    for trial in noisy.as_array().expect("trials") {
        assert_eq!(trial["proxy_key"], "benchmark:nas-bench-macro:draw:seed3");
    }
}

#[test]
fn accel_nasbench_answers_recorded_members_only() {
    let dir = tempfile::tempdir().expect("tempdir");
    let db = dir.path().join("a.db");
    let db = db.to_str().expect("path");
    // Random members of a space of 1e11 are almost never among its 5,125 recorded ones; a run
    // whose every trial failed ends `failed`, exit code 1.
    let out = effnas(&[
        "search",
        "--db",
        db,
        "--evaluator",
        "benchmark",
        "--w",
        "0",
        "--finalists",
        "0",
        "--space",
        "accel-nasbench",
        "--strategy",
        "random",
        "--trials",
        "4",
        "--json",
    ]);
    assert_eq!(out.status.code(), Some(1), "{}", String::from_utf8_lossy(&out.stderr));
    let summary: Value = serde_json::from_slice(&out.stdout).expect("JSON");
    assert_eq!((summary["status"].as_str(), summary["trials_failed"].as_u64()), (Some("failed"), Some(4)));
    let trials = json(&["trials", "--db", db, "--run", "1", "--json"]);
    for trial in trials.as_array().expect("trials") {
        assert_eq!(trial["state"], "failed", "{trial}");
        assert_eq!(trial["failure"], "invalid");
        assert!(trial["error"].as_str().is_some_and(|e| e.contains("not among the 5125")), "{trial}");
    }
}

#[test]
fn benchmark_flags_are_refused_where_they_do_not_apply() {
    let dir = tempfile::tempdir().expect("tempdir");
    let db = dir.path().join("r.db");
    let db = db.to_str().expect("path");
    fails_naming(
        &["search", "--db", db, "--evaluator", "benchmark", "--space", "default"],
        "has no benchmark",
    );
    fails_naming(&["search", "--db", db, "--evaluator", "oracle", "--benchmark-noise"], "--benchmark-noise");
    fails_naming(&["compound", "--db", db, "--evaluator", "benchmark"], "--evaluator benchmark");
    assert!(!dir.path().join("r.db").exists(), "nothing written for a refused command");
}
