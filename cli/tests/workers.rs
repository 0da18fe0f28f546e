//! Worker processes sharing one database (SQLite here): every trial completed exactly once, a
//! killed worker's trial reclaimed after its lease, a paused worker fenced out when it comes
//! back, seeded results identical whichever process trains them, workers stopped with their
//! search, and readers never blocked by the writers.
#![cfg(unix)]

mod common;

use std::path::Path;

use common::procs::{
    assert_rescued, assert_shared_exactly_once, external_search, freeze_while_training, ok,
    ready_workers_for_any_run, start, stop_workers, trials, trials_in_state, wait_until, worker,
    worker_until_stopped, Proc, SLOW_PROXY,
};
use common::{effnas, json, TINY_PROXY};
use serde_json::Value;

#[test]
fn worker_processes_complete_every_trial_exactly_once() {
    let dir = tempfile::tempdir().expect("tempdir");
    let db = dir.path().join("shared.db");
    let db = db.to_str().expect("path");
    // The workers first, serving any run, all three looking for work before trials arrive;
    // stopped once the search has ended. An empty file is a database to be created, which a
    // worker (that never creates one) may open.
    std::fs::write(db, b"").expect("empty database file");
    let workers = ready_workers_for_any_run(db, 3);
    let search = external_search(db, "60", &["--evaluator", "oracle", "--workers", "3"]);
    let out = search.finish();
    assert!(out.status.success(), "{}", String::from_utf8_lossy(&out.stderr));
    let summaries = stop_workers(workers);
    // A candidate the controller proposes twice reuses the first measurement (never claimed);
    // every other trial was trained exactly once.
    assert_shared_exactly_once(&trials(db), 60, &summaries);
    assert_eq!(json(&["runs", "--db", db, "--json"])[0]["status"], "complete");
}

#[test]
fn a_killed_workers_trial_is_reclaimed_after_its_lease() {
    let dir = tempfile::tempdir().expect("tempdir");
    let db = dir.path().join("killed.db");
    let db = db.to_str().expect("path");
    let mut extra = vec!["--strategy", "random", "--workers", "1"];
    extra.extend(SLOW_PROXY);
    let search = external_search(db, "2", &extra);
    let mut doomed = worker_until_stopped(db, "3");
    let victim = freeze_while_training(db, &doomed);
    doomed.kill();
    let rescuer = worker_until_stopped(db, "3");
    assert!(search.finish().status.success());
    let rescued = stop_workers(vec![rescuer])[0]["completed"].as_u64();
    assert_rescued(&trials(db), 2, &victim, rescued);
}

#[test]
fn a_paused_worker_that_comes_back_changes_nothing() {
    let dir = tempfile::tempdir().expect("tempdir");
    let db = dir.path().join("paused.db");
    let db = db.to_str().expect("path");
    let mut extra = vec!["--strategy", "random", "--workers", "1"];
    extra.extend(SLOW_PROXY);
    let search = external_search(db, "1", &extra);
    // Once back, it finds nothing more to do and ends after 5 idle seconds.
    let sleeper = worker(db, "1", "5");
    let first = freeze_while_training(db, &sleeper);
    // Past the sleeper's lease: the second worker's sweep takes the trial back and trains it.
    let second = worker_until_stopped(db, "1");
    assert!(search.finish().status.success());
    let rescued = stop_workers(vec![second])[0]["completed"].as_u64();
    let stored = trials(db);
    assert_rescued(&stored, 1, &first, rescued);

    sleeper.signal("-CONT");
    let late = ok(&sleeper.finish());
    assert_eq!((late["superseded"].as_u64(), late["completed"].as_u64()), (Some(1), Some(0)), "{late}");
    assert_eq!(trials(db), stored, "the late result changed nothing");
    let shown = json(&["show", &stored[0]["id"].to_string(), "--db", db, "--json"]);
    assert!(
        shown["epochs"].as_array().is_some_and(|e| e.len() == 3),
        "one curve, the second attempt's: {shown}"
    );
}

#[test]
fn a_seeded_trial_gives_the_same_result_whichever_worker_process_trains_it() {
    let dir = tempfile::tempdir().expect("tempdir");
    let mut results: Vec<std::collections::HashMap<String, (Value, Value)>> = Vec::new();
    for (name, workers) in [("one.db", "1"), ("two.db", "2")] {
        let db = dir.path().join(name);
        let db = db.to_str().expect("path");
        let mut args = vec![
            "search",
            "--db",
            db,
            "--strategy",
            "random",
            "--seed",
            "3",
            "--trials",
            "3",
            "--finalists",
            "0",
        ];
        // One libtorch thread per worker either way: a different thread count may sum in
        // another order.
        args.extend(["--workers", workers, "--threads", "1"]);
        args.extend(TINY_PROXY);
        let out = effnas(&args);
        assert!(out.status.success(), "{}", String::from_utf8_lossy(&out.stderr));
        let by_arch = trials(db)
            .into_iter()
            .map(|t| {
                (
                    t["arch_hash"].as_str().expect("hash").to_owned(),
                    (t["accuracy"].clone(), t["loss"].clone()),
                )
            })
            .collect();
        results.push(by_arch);
    }
    assert_eq!(results[0].len(), 3);
    assert_eq!(results[0], results[1], "bit-identical accuracy and loss, one worker or two");
}

/// Ctrl-C on `search` (the signal sent to the search alone, not its process group): the run
/// is interrupted and its worker processes are gone when it exits.
#[test]
fn ctrl_c_on_a_search_stops_its_worker_processes() {
    let dir = tempfile::tempdir().expect("tempdir");
    let db = dir.path().join("stopped.db");
    let db = db.to_str().expect("path");
    let mut args = vec![
        "search",
        "--db",
        db,
        "--strategy",
        "random",
        "--trials",
        "16",
        "--workers",
        "2",
        "--finalists",
        "0",
    ];
    args.extend(TINY_PROXY);
    let search = start(db, &args);
    wait_until("a trial running", || !trials_in_state(db, "running").is_empty());
    let children =
        std::fs::read_to_string(format!("/proc/{0}/task/{0}/children", search.id())).unwrap_or_default();
    let children: Vec<String> = children.split_whitespace().map(str::to_owned).collect();
    assert_eq!(children.len(), 2, "two worker processes");
    search.signal("-INT");
    let out = search.finish();
    assert_eq!(out.status.code(), Some(130), "{}", String::from_utf8_lossy(&out.stderr));
    for pid in &children {
        assert!(!Path::new(&format!("/proc/{pid}")).exists(), "worker {pid} outlived its search");
    }
    assert_eq!(json(&["runs", "--db", db, "--json"])[0]["status"], "interrupted");
    assert!(trials(db).iter().all(|t| t["state"] != "running"), "nothing left running");
}

/// Queries (`trials`, `pareto`, `plot`) while four workers write: never "database is locked",
/// never an error.
#[test]
fn readers_are_never_blocked_by_four_writing_workers() {
    let dir = tempfile::tempdir().expect("tempdir");
    let db = dir.path().join("busy.db");
    let db = db.to_str().expect("path");
    let mut search = external_search(db, "300", &["--evaluator", "oracle", "--workers", "4"]);
    let workers: Vec<Proc> = (0..4).map(|_| worker_until_stopped(db, "30")).collect();
    let plot = dir.path().join("busy.svg");
    let plot = plot.to_str().expect("path");
    let mut reads = 0;
    while !search.has_ended() {
        // `plot` needs a complete trial; before the first one it is not asked.
        let some_complete = trials(db).iter().any(|t| t["state"] == "complete");
        let queries = [
            vec!["trials", "--db", db, "--run", "1", "--json"],
            vec!["pareto", "--db", db, "--run", "1"],
            vec!["plot", "--db", db, "--run", "1", "--out", plot],
        ];
        for args in queries.iter().take(if some_complete { 3 } else { 2 }) {
            let out = effnas(args);
            let stderr = String::from_utf8_lossy(&out.stderr);
            assert!(out.status.success() && !stderr.contains("locked"), "{args:?}: {stderr}");
            reads += 1;
        }
    }
    assert!(reads >= 2, "the queries ran while the workers wrote");
    assert!(search.finish().status.success());
    stop_workers(workers);
    assert_eq!(trials(db).len(), 300);
}
