//! `effnas search` as a user runs it: on the oracle, on real Fashion-MNIST proxies, killed and
//! resumed, and refusing bad input before touching the database.

use std::path::Path;
use std::process::{Command, Stdio};
use std::time::{Duration, Instant};

use serde_json::Value;

mod common;
use common::{effnas, json, oracle_search};

fn trials(db: &str, run: &str) -> Vec<Value> {
    json(&["trials", "--db", db, "--run", run, "--json"]).as_array().cloned().expect("a list")
}

/// Tiny real proxies: a few hundred Fashion-MNIST images, one epoch, 16 px; no finalists (their
/// own tests are in `finalists_cli.rs`), so the run holds exactly `--trials` trials.
const TINY_PROXY: [&str; 12] = [
    "--finalists",
    "0",
    "--train-images",
    "256",
    "--validation-images",
    "128",
    "--epochs",
    "1",
    "--resolution",
    "16",
    "--batch-size",
    "64",
];

#[test]
fn oracle_search_ends_with_exactly_the_requested_trials() {
    let dir = tempfile::tempdir().expect("tempdir");
    let db = dir.path().join("oracle.db");
    let db = db.to_str().expect("path");
    for strategy in ["random", "evolution", "rl"] {
        let summary = oracle_search(
            db,
            &[
                "--strategy",
                strategy,
                "--trials",
                "60",
                "--workers",
                "4",
                "--seed",
                "2",
                "--name",
                strategy,
                "--json",
            ],
        );
        assert_eq!(summary["status"], "complete");
        // The search and its workers closed the database (before any query here opens it): the
        // file alone holds the run, since SQLite removes its write-ahead log when the last
        // connection closes after a checkpoint.
        assert!(!Path::new(&format!("{db}-wal")).exists(), "{strategy}: the write-ahead log was left behind");
        // Every result reached the controller, though the worker processes raced it.
        assert_eq!(summary["summary"]["completed"], 60, "{strategy}: {summary}");
        let run = summary["run"].to_string();
        let rows = trials(db, &run);
        assert_eq!(rows.len(), 60, "{strategy}");
        assert!(rows.iter().all(|t| t["state"] == "complete"), "{strategy}");
        assert!(summary["best_reward"].as_f64().is_some_and(|r| r > 0.5 && r <= 1.0));
    }
    let runs = json(&["runs", "--db", db, "--json"]);
    assert_eq!(runs.as_array().map(Vec::len), Some(3));
}

/// `--include b0` trains B0 among the first trials; on the oracle under a hard 400M constraint
/// it is the known best, so it ranks first.
#[test]
fn included_networks_are_trained_and_ranked() {
    let dir = tempfile::tempdir().expect("tempdir");
    let db = dir.path().join("include.db");
    let db = db.to_str().expect("path");
    let summary = oracle_search(
        db,
        &[
            "--strategy",
            "random",
            "--trials",
            "20",
            "--hard",
            "--include",
            "b0",
            "--include",
            "mnasnet-a1",
            "--json",
        ],
    );
    let run = summary["run"].to_string();
    let rows = trials(db, &run);
    assert_eq!(rows.len(), 20);
    let b0 = effnas_space::presets::efficientnet_b0().block_strings();
    let best = json(&["trials", "--db", db, "--run", &run, "--top", "1", "--json"]);
    assert_eq!(
        best[0]["blocks"]
            .as_array()
            .map(|b| b.iter().map(|s| s.as_str().unwrap_or("").to_owned()).collect::<Vec<_>>()),
        Some(b0)
    );
    let refused = effnas(&["search", "--db", db, "--evaluator", "oracle", "--include", "b1"]);
    assert_eq!(refused.status.code(), Some(2));
    assert!(String::from_utf8_lossy(&refused.stderr).contains("--include b1"));
}

#[test]
fn max_flops_rejects_before_training() {
    let dir = tempfile::tempdir().expect("tempdir");
    let db = dir.path().join("limit.db");
    let db = db.to_str().expect("path");
    let summary =
        oracle_search(db, &["--strategy", "random", "--trials", "40", "--max-flops", "300e6", "--json"]);
    let rows = trials(db, &summary["run"].to_string());
    assert_eq!(rows.len(), 40);
    for row in &rows {
        let over = row["flops"].as_f64().expect("flops") > 300e6;
        assert_eq!(over, row["state"] == "failed", "{row}");
    }
    assert!(rows.iter().any(|r| r["state"] == "failed") && rows.iter().any(|r| r["state"] == "complete"));
}

fn wait_for_complete(db: &str, at_least: usize, deadline: Duration) {
    let start = Instant::now();
    while start.elapsed() < deadline {
        if Path::new(db).exists() {
            let out = effnas(&["trials", "--db", db, "--run", "1", "--state", "complete", "--json"]);
            if out.status.success() {
                let rows: Value = serde_json::from_slice(&out.stdout).unwrap_or(Value::Null);
                if rows.as_array().is_some_and(|r| r.len() >= at_least) {
                    return;
                }
            }
        }
        std::thread::sleep(Duration::from_millis(200));
    }
    panic!("no {at_least} complete trials within {deadline:?}");
}

/// Real training on Fashion-MNIST, killed with SIGKILL mid-run, then resumed: the run ends
/// with exactly the requested number of finished trials, each architecture trained once.
#[test]
fn a_killed_search_resumes_to_exactly_n_trials() {
    let dir = tempfile::tempdir().expect("tempdir");
    let db = dir.path().join("killed.db");
    let db = db.to_str().expect("path");
    let mut args = vec![
        "search",
        "--db",
        db,
        "--strategy",
        "evolution",
        // Enough trials that the kill lands before the run could end on its own.
        "--trials",
        "24",
        "--seed",
        "4",
        "--workers",
        "2",
    ];
    args.extend(TINY_PROXY);
    let mut child = Command::new(env!("CARGO_BIN_EXE_effnas"))
        .args(&args)
        .stdout(Stdio::null())
        .stderr(Stdio::null())
        .spawn()
        .expect("effnas starts");
    wait_for_complete(db, 2, Duration::from_secs(120));
    child.kill().expect("kill -9");
    let _ = child.wait();

    let before = trials(db, "1");
    let done_before: Vec<i64> =
        before.iter().filter(|t| t["state"] == "complete").map(|t| t["id"].as_i64().expect("id")).collect();
    assert!(done_before.len() >= 2 && done_before.len() < 24, "{}", done_before.len());

    let resumed = effnas(&["search", "--db", db, "--resume", "1", "--json"]);
    assert!(resumed.status.success(), "{}", String::from_utf8_lossy(&resumed.stderr));
    let after = trials(db, "1");
    assert_eq!(after.len(), 24, "exactly N trials");
    assert!(after.iter().all(|t| t["state"] == "complete" || t["state"] == "failed"));
    // Completed trials were kept as they were.
    for id in done_before {
        assert!(after.iter().any(|t| t["id"].as_i64() == Some(id) && t["state"] == "complete"));
    }
    // Every result is a real measurement: an accuracy, a training time and a throughput.
    for trial in after.iter().filter(|t| t["state"] == "complete") {
        assert!(trial["accuracy"].as_f64().is_some_and(|a| (0.0..=1.0).contains(&a)), "{trial}");
    }

    let finished = effnas(&["search", "--db", db, "--resume", "1"]);
    assert_eq!(finished.status.code(), Some(2));
    assert!(String::from_utf8_lossy(&finished.stderr).contains("finished"));
}

#[cfg(unix)]
#[test]
fn sigterm_and_sighup_stop_a_search_as_ctrl_c_does() {
    for signal in ["-TERM", "-HUP"] {
        let dir = tempfile::tempdir().expect("tempdir");
        let db = dir.path().join("terminated.db");
        let db = db.to_str().expect("path");
        let mut args = vec!["search", "--db", db, "--strategy", "random", "--trials", "16", "--seed", "6"];
        args.extend(TINY_PROXY);
        let child = Command::new(env!("CARGO_BIN_EXE_effnas"))
            .args(&args)
            .stdout(Stdio::piped())
            .stderr(Stdio::null())
            .spawn()
            .expect("effnas starts");
        wait_for_complete(db, 1, Duration::from_secs(120));
        let status = Command::new("kill").args([signal, &child.id().to_string()]).status().expect("kill");
        assert!(status.success());
        let out = child.wait_with_output().expect("effnas ends");
        assert_eq!(out.status.code(), Some(130), "{signal}: {}", String::from_utf8_lossy(&out.stdout));
        let runs = json(&["runs", "--db", db, "--json"]);
        assert_eq!(runs[0]["status"], "interrupted", "{signal}");
        assert!(trials(db, "1").iter().all(|t| t["state"] != "running"), "{signal}: nothing left running");
    }
}

#[cfg(unix)]
#[test]
fn ctrl_c_leaves_a_resumable_run() {
    let dir = tempfile::tempdir().expect("tempdir");
    let db = dir.path().join("interrupted.db");
    let db = db.to_str().expect("path");
    // Enough trials that the signal lands before the run could end on its own.
    let mut args = vec!["search", "--db", db, "--strategy", "random", "--trials", "16", "--seed", "5"];
    args.extend(TINY_PROXY);
    let child = Command::new(env!("CARGO_BIN_EXE_effnas"))
        .args(&args)
        .stdout(Stdio::piped())
        .stderr(Stdio::null())
        .spawn()
        .expect("effnas starts");
    wait_for_complete(db, 1, Duration::from_secs(120));
    let status = Command::new("kill").args(["-INT", &child.id().to_string()]).status().expect("kill -INT");
    assert!(status.success());
    let out = child.wait_with_output().expect("effnas ends");
    assert_eq!(out.status.code(), Some(130), "{}", String::from_utf8_lossy(&out.stdout));
    assert!(String::from_utf8_lossy(&out.stdout).contains("--resume 1"));
    let runs = json(&["runs", "--db", db, "--json"]);
    assert_eq!(runs[0]["status"], "interrupted");
    assert!(trials(db, "1").iter().all(|t| t["state"] != "running"), "nothing left running");

    assert!(effnas(&["search", "--db", db, "--resume", "1"]).status.success());
    assert_eq!(trials(db, "1").len(), 16);
}

/// A failure: exit code 2, one line naming the culprit, and the database untouched.
fn refused(db: &str, args: &[&str], needle: &str) {
    let mut full = vec!["search", "--db", db];
    full.extend(args);
    let out = effnas(&full);
    let stderr = String::from_utf8_lossy(&out.stderr);
    assert_eq!(out.status.code(), Some(2), "{args:?}: {stderr}");
    assert_eq!(stderr.trim_end().lines().count(), 1, "{args:?}: {stderr}");
    assert!(stderr.contains(needle), "{args:?}: {stderr:?} should name {needle:?}");
}

#[test]
fn bad_input_is_refused_before_any_work() {
    let dir = tempfile::tempdir().expect("tempdir");
    let db = dir.path().join("untouched.db");
    let db = db.to_str().expect("path");
    refused(db, &["--trials", "0"], "--trials");
    refused(db, &["--workers", "0"], "--workers");
    refused(db, &["--space", "nowhere"], "nowhere");
    let bad_space = dir.path().join("bad-space.json");
    std::fs::write(&bad_space, "{ not json").expect("write");
    refused(db, &["--space", bad_space.to_str().expect("path")], "bad-space.json");
    refused(db, &["--device", "cuda:7"], "cuda:7");
    refused(db, &["--dataset", "/no/such/data"], "/no/such/data");
    assert!(!Path::new(db).exists(), "no database was created by refused runs");

    // An existing database stays as it was.
    json(&["search", "--db", db, "--evaluator", "oracle", "--trials", "3", "--finalists", "0", "--json"]);
    refused(db, &["--resume", "7"], "7");
    refused(db, &["--resume", "1; DROP TABLE trials"], "DROP");
    assert_eq!(json(&["runs", "--db", db, "--json"]).as_array().map(Vec::len), Some(1));
    assert_eq!(trials(db, "1").len(), 3);

    // A database path that cannot be created (its parent is a file).
    let file = dir.path().join("a-file");
    std::fs::write(&file, b"not a folder").expect("write");
    let below_file = file.join("x.db");
    refused(below_file.to_str().expect("path"), &["--evaluator", "oracle", "--trials", "2"], "x.db");

    let read_only = dir.path().join("ro");
    std::fs::create_dir(&read_only).expect("mkdir");
    let unwritable = read_only.join("x.db");
    let mut permissions = std::fs::metadata(&read_only).expect("metadata").permissions();
    std::os::unix::fs::PermissionsExt::set_mode(&mut permissions, 0o500);
    std::fs::set_permissions(&read_only, permissions).expect("chmod");
    // Root ignores directory permissions, so only check where they apply.
    if std::fs::write(read_only.join("probe"), b"x").is_err() {
        refused(unwritable.to_str().expect("path"), &["--evaluator", "oracle", "--trials", "2"], "x.db");
    }
}

/// The `--rl-*` knobs reach the controller's configuration, which the run stores (so that
/// `--resume` continues with them).
#[test]
fn rl_flags_are_stored_in_the_run() {
    let dir = tempfile::tempdir().expect("tempdir");
    let db = dir.path().join("rl.db");
    let db = db.to_str().expect("path");
    let summary = oracle_search(
        db,
        &[
            "--strategy",
            "rl",
            "--trials",
            "12",
            "--workers",
            "1",
            "--rl-batch",
            "4",
            "--rl-lr",
            "0.05",
            "--rl-entropy",
            "0.02",
            "--rl-baseline-decay",
            "0.5",
            "--rl-epochs",
            "2",
            "--rl-algorithm",
            "reinforce",
            "--name",
            "tuned",
            "--json",
        ],
    );
    assert_eq!(summary["status"], "complete", "{summary}");
    let runs = json(&["runs", "--db", db, "--json"]);
    let rl = &runs[0]["config"]["plan"]["strategy"];
    assert_eq!(rl["strategy"], "rl", "{rl}");
    assert_eq!(rl["batch_size"], 4, "{rl}");
    assert_eq!(rl["learning_rate"], 0.05, "{rl}");
    assert_eq!(rl["entropy_weight"], 0.02, "{rl}");
    assert_eq!(rl["baseline_decay"], 0.5, "{rl}");
    assert_eq!(rl["epochs"], 2, "{rl}");
    assert_eq!(rl["algorithm"], "reinforce", "{rl}");
}
