//! `effnas fidelity` as a user runs it, on tiny real Fashion-MNIST proxies with worker processes:
//! every architecture trained under every setting (and each trial under its own setting), the
//! report, the plot, reuse of the reference by a second run, Ctrl-C and `--resume`, and the
//! refusals. No test asserts a correlation's value: on proxies this small it is noise.

use serde_json::Value;

mod common;
use common::{exported, fails_naming, interrupt_when, json, run_one_trials, TINY_PROXY};

/// The tiny proxy as the cheap setting (128 images, 1 epoch at 16 px); the reference trains on
/// 256 images.
fn fidelity<'a>(db: &'a str, extra: &[&'a str]) -> Vec<&'a str> {
    let mut args = vec!["fidelity", "--db", db, "--reference-epochs", "1", "--reference-train-images", "256"];
    args.extend(TINY_PROXY);
    args.extend(extra);
    args
}

#[test]
fn a_tiny_fidelity_run_trains_every_setting_reports_and_shares_its_reference() {
    let dir = tempfile::tempdir().expect("tempdir");
    let db = dir.path().join("f.db");
    let db = db.to_str().expect("path");
    let plot = dir.path().join("fidelity.svg");
    let plot = plot.to_str().expect("path");
    let args = fidelity(
        db,
        &["--samples", "3", "--include", "b0", "--name", "first", "--workers", "2", "--plot", plot, "--json"],
    );
    let out = json(&args);
    assert_eq!(out["status"], "complete");
    let report = &out["report"];
    let settings = report["settings"].as_array().expect("settings");
    let roles: Vec<&str> = settings.iter().map(|s| s["role"].as_str().expect("role")).collect();
    assert_eq!(roles, ["cheap", "cheap", "reference"]);
    for setting in settings {
        assert_eq!(
            (setting["complete"].as_u64(), setting["failed"].as_u64()),
            (Some(4), Some(0)),
            "{setting}"
        );
    }
    // Each trial was trained under its own setting's image budget, by whichever worker took it.
    let budget = |s: u64| if s == 2 { 256.0 } else { 128.0 };
    let all = exported(db, "first");
    assert_eq!(all.len(), 12);
    for trial in &all {
        let setting = trial["setting"].as_u64().expect("setting");
        assert_eq!(trial["extra"]["images_seen"].as_f64(), Some(budget(setting)), "{trial}");
        assert_eq!(trial["parent"].is_null(), setting == 0, "{trial}");
    }
    assert_eq!(report["architectures"].as_array().map(Vec::len), Some(4));
    assert_eq!(report["architectures"][0]["label"], "b0");
    assert_eq!(report["accuracy"]["one_seed"]["architectures"], 4);
    assert!(report["cheap_noise"]["mean_std"].as_f64().is_some_and(|v| (0.0..=1.0).contains(&v)));
    let svg = std::fs::read_to_string(plot).expect("the plot was written");
    assert!(svg.contains("<svg") && svg.contains("b0"), "the plot marks B0");

    // Another cheap proxy on the same architectures: the reference trainings are reused.
    // (Only the cheap image budget differs; every reference flag is the same.)
    let second: Vec<&str> =
        fidelity(db, &["--samples", "3", "--include", "b0", "--name", "second", "--json"])
            .into_iter()
            .map(|arg| if arg == "128" { "96" } else { arg })
            .collect();
    let out = json(&second);
    assert_eq!(out["status"], "complete");
    let reused: Vec<Value> =
        exported(db, "second").into_iter().filter(|t| !t["reused_from"].is_null()).collect();
    assert_eq!(reused.len(), 4, "the four reference trials");
    assert!(reused.iter().all(|t| t["setting"] == 2));

    // The report again, as text, training nothing.
    let text = common::stdout_of(&["fidelity", "--db", db, "--report", "first"]);
    assert!(text.contains("noise floor, cheap proxy (4 architectures)"), "{text}");
    assert!(text.contains("cheap accuracy (first seed) vs reference"), "{text}");
}

#[test]
fn ctrl_c_interrupts_a_fidelity_run_and_resume_finishes_it_with_every_trial_once() {
    let dir = tempfile::tempdir().expect("tempdir");
    let db = dir.path().join("r.db");
    let db = db.to_str().expect("path");
    let args = fidelity(db, &["--samples", "4", "--workers", "1"]);
    let complete = || run_one_trials(db).iter().filter(|t| t["state"] == "complete").count();
    let out = interrupt_when(&args, || complete() >= 2);
    let stdout = String::from_utf8_lossy(&out.stdout);
    assert_eq!(out.status.code(), Some(130), "{stdout}\n{}", String::from_utf8_lossy(&out.stderr));
    assert!(stdout.contains("--resume 1"), "{stdout}");
    let runs = json(&["runs", "--db", db, "--json"]);
    assert_eq!(runs[0]["status"], "interrupted");

    let out = json(&["fidelity", "--db", db, "--resume", "1", "--json"]);
    assert_eq!(out["status"], "complete");
    let all = exported(db, "1");
    assert_eq!(all.len(), 12, "4 architectures × 3 settings, none queued twice");
    assert!(all.iter().all(|t| t["state"] == "complete"), "every trial complete");
}

#[test]
fn bad_fidelity_requests_are_refused_before_anything_is_trained() {
    let dir = tempfile::tempdir().expect("tempdir");
    let db = dir.path().join("bad.db");
    let db = db.to_str().expect("path");
    fails_naming(&["fidelity", "--db", db, "--seeds", "1"], "--seeds");
    fails_naming(
        &[
            "fidelity",
            "--db",
            db,
            "--epochs",
            "2",
            "--train-images",
            "2000",
            "--reference-epochs",
            "2",
            "--reference-train-images",
            "2000",
        ],
        "reference setting equals the cheap proxy",
    );
    fails_naming(&["fidelity", "--db", db, "--include", "b3"], "--include b3");
    fails_naming(&["fidelity", "--db", db, "--plot", "out.txt"], ".svg or .png");
    fails_naming(&["fidelity", "--db", db, "--samples", "0"], "--samples");
    assert!(!std::path::Path::new(db).exists(), "no database was made for a refused request");
    // --report of a run of another kind.
    json(&["search", "--db", db, "--evaluator", "oracle", "--trials", "3", "--json"]);
    fails_naming(&["fidelity", "--db", db, "--report", "1"], "not a fidelity run");
}
