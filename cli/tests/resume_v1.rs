//! Runs stored by effnas before run configurations carried a version (and before schema 3)
//! resume with the current effnas: see `data/README.md` for how the fixture was made.

mod common;

use common::{effnas, json};

fn fixture_copy() -> (tempfile::TempDir, String) {
    let dir = tempfile::tempdir().expect("temp dir");
    let db = dir.path().join("v1.db");
    std::fs::copy(concat!(env!("CARGO_MANIFEST_DIR"), "/tests/data/config-v1.db"), &db).expect("copy");
    let db = db.to_str().expect("utf-8 path").to_owned();
    (dir, db)
}

#[test]
fn a_search_and_a_compound_run_stored_by_the_previous_format_resume() {
    let (_dir, db) = fixture_copy();
    let before = json(&["runs", "--db", &db, "--json"]);
    let statuses: Vec<&str> =
        before.as_array().expect("runs").iter().filter_map(|r| r["status"].as_str()).collect();
    assert_eq!(statuses.iter().filter(|s| **s == "interrupted").count(), 2, "{before}");

    let out = effnas(&["search", "--db", &db, "--resume", "1", "--json"]);
    let stderr = String::from_utf8_lossy(&out.stderr);
    assert!(out.status.success(), "search --resume 1: {stderr}");
    let summary: serde_json::Value = serde_json::from_slice(&out.stdout).expect("JSON summary");
    assert_eq!(summary["status"], "complete", "{summary}");
    assert_eq!(
        summary["trials_done"].as_u64().unwrap_or(0) + summary["trials_failed"].as_u64().unwrap_or(0),
        4
    );

    let out = effnas(&["compound", "--db", &db, "--resume", "2", "--json"]);
    let stderr = String::from_utf8_lossy(&out.stderr);
    assert!(out.status.success(), "compound --resume 2: {stderr}");
    let ranked: serde_json::Value = serde_json::from_slice(&out.stdout).expect("JSON ranking");
    let points = ranked["points"].as_array().expect("points");
    assert_eq!(points.len(), 3, "{ranked}");
    assert!(points.iter().all(|p| p["state"] == "complete"), "{ranked}");
}

#[test]
fn a_manual_reward_on_the_proxy_s_cost_is_marked_not_compared() {
    let (_dir, db) = fixture_copy();
    // The manual trial's reward was computed on the proxy network's multiply-adds: the migration
    // keeps it aside in `extra` and clears the column.
    let trial = json(&["show", "7", "--db", &db, "--json"]);
    assert!(trial["reward"].is_null(), "{trial}");
    let extra = &trial["extra"];
    assert!(extra["proxy_reward"].as_f64().is_some_and(|r| r > 0.0), "{trial}");
}
