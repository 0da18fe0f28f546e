//! Worker processes sharing one database (SQLite here): every trial completed exactly once, a
//! killed worker's trial reclaimed after its lease, a paused worker fenced out when it comes
//! back, seeded results identical whichever process trains them, workers stopped with their
//! search, and readers never blocked by the writers.
#![cfg(unix)]

mod common;

use std::collections::{BTreeSet, HashMap};
use std::path::Path;
use std::process::{Child, Command, Output, Stdio};
use std::time::{Duration, Instant};

use common::{effnas, json, TINY_PROXY};
use serde_json::Value;

fn start(args: &[&str]) -> Child {
    Command::new(env!("CARGO_BIN_EXE_effnas"))
        .args(args)
        .stdout(Stdio::piped())
        .stderr(Stdio::piped())
        .spawn()
        .expect("effnas starts")
}

fn finish(child: Child) -> Output {
    let out = child.wait_with_output().expect("effnas ends");
    assert!(
        !String::from_utf8_lossy(&out.stderr).contains("panicked"),
        "{}",
        String::from_utf8_lossy(&out.stderr)
    );
    out
}

fn trials(db: &str) -> Vec<Value> {
    let value = json(&["trials", "--db", db, "--run", "1", "--json"]);
    value.as_array().cloned().unwrap_or_default()
}

/// A search that only queues: its trials are trained by workers started by the test.
fn external_search(db: &str, trials: &str, extra: &[&str]) -> Child {
    let mut args =
        vec!["search", "--db", db, "--external-workers", "--trials", trials, "--finalists", "0", "--json"];
    args.extend(extra);
    let child = start(&args);
    let started = Instant::now();
    while !Path::new(db).exists() || !effnas(&["trials", "--db", db, "--run", "1"]).status.success() {
        assert!(started.elapsed() < Duration::from_secs(60), "the search never queued a trial");
        std::thread::sleep(Duration::from_millis(100));
    }
    child
}

fn worker(db: &str, lease: &str, idle_exit: &str) -> Child {
    start(&[
        "worker",
        "--db",
        db,
        "--run",
        "1",
        "--lease",
        lease,
        "--idle-exit",
        idle_exit,
        "--json",
        "--threads",
        "1",
    ])
}

/// The worker's JSON summary.
fn summary(out: &Output) -> Value {
    assert!(out.status.success(), "{}", String::from_utf8_lossy(&out.stderr));
    serde_json::from_slice(&out.stdout).expect("the worker's JSON summary")
}

/// Waits until some trial of run 1 is running (the database may not exist yet) and returns it.
fn running_trial(db: &str) -> Value {
    let started = Instant::now();
    loop {
        let out = effnas(&["trials", "--db", db, "--run", "1", "--state", "running", "--json"]);
        let rows: Value = serde_json::from_slice(&out.stdout).unwrap_or(Value::Null);
        if let Some(t) = rows.as_array().and_then(|r| r.first()) {
            return t.clone();
        }
        assert!(started.elapsed() < Duration::from_secs(120), "no trial started");
        std::thread::sleep(Duration::from_millis(50));
    }
}

fn signal(child: &Child, name: &str) {
    let status = Command::new("kill").args([name, &child.id().to_string()]).status().expect("kill");
    assert!(status.success(), "kill {name}");
}

#[test]
fn worker_processes_complete_every_trial_exactly_once() {
    let dir = tempfile::tempdir().expect("tempdir");
    let db = dir.path().join("shared.db");
    let db = db.to_str().expect("path");
    // The workers first, serving any run, so all three are up when trials arrive (an oracle
    // trial takes microseconds: on a busy machine a worker that started late found the queue
    // already drained by the first). An empty file is a database to be created, which a worker
    // (that never creates one) may open.
    std::fs::write(db, b"").expect("empty database file");
    let workers: Vec<Child> = (0..3)
        .map(|_| {
            start(&["worker", "--db", db, "--lease", "30", "--idle-exit", "10", "--json", "--threads", "1"])
        })
        .collect();
    let search = external_search(db, "60", &["--evaluator", "oracle", "--workers", "3"]);
    let out = finish(search);
    assert!(out.status.success(), "{}", String::from_utf8_lossy(&out.stderr));
    let summaries: Vec<Value> = workers.into_iter().map(|w| summary(&finish(w))).collect();

    let all = trials(db);
    assert_eq!(all.len(), 60, "exactly N trials");
    assert!(all.iter().all(|t| t["state"] == "complete"));
    // A candidate the controller proposes twice reuses the first measurement (never claimed);
    // every other trial was trained exactly once.
    let (reused, trained): (Vec<&Value>, Vec<&Value>) = all.iter().partition(|t| !t["reused_from"].is_null());
    assert!(reused.iter().all(|t| t["attempts"] == 0), "reused trials are never claimed");
    assert!(trained.iter().all(|t| t["attempts"] == 1), "each trained once");
    let completed: u64 = summaries.iter().map(|s| s["completed"].as_u64().expect("count")).sum();
    assert_eq!(completed, trained.len() as u64, "the workers' own counts add up: no trial finished twice");
    assert!(summaries.iter().all(|s| s["superseded"] == 0));
    let names: BTreeSet<&str> = all.iter().filter_map(|t| t["worker"].as_str()).collect();
    assert!(names.len() >= 2, "the work was shared: {names:?}");
    assert_eq!(json(&["runs", "--db", db, "--json"])[0]["status"], "complete");
}

#[test]
fn a_killed_workers_trial_is_reclaimed_after_its_lease() {
    let dir = tempfile::tempdir().expect("tempdir");
    let db = dir.path().join("killed.db");
    let db = db.to_str().expect("path");
    let mut extra = vec!["--strategy", "random", "--workers", "1"];
    extra.extend(TINY_PROXY);
    let search = external_search(db, "2", &extra);
    let mut doomed = worker(db, "2", "60");
    let victim = running_trial(db);
    doomed.kill().expect("kill -9 the worker");
    let _ = doomed.wait();
    let rescuer = worker(db, "2", "3");
    assert!(finish(search).status.success());
    assert_eq!(summary(&finish(rescuer))["completed"], 2);

    let all = trials(db);
    assert_eq!(all.len(), 2);
    let again = all.iter().find(|t| t["id"] == victim["id"]).expect("the killed worker's trial");
    assert_eq!((&again["state"], again["attempts"].as_u64()), (&Value::from("complete"), Some(2)), "{again}");
    assert_ne!(again["worker"], victim["worker"], "another worker finished it");
}

#[test]
fn a_paused_worker_that_comes_back_changes_nothing() {
    let dir = tempfile::tempdir().expect("tempdir");
    let db = dir.path().join("paused.db");
    let db = db.to_str().expect("path");
    let mut extra = vec!["--strategy", "random", "--workers", "1"];
    extra.extend(TINY_PROXY);
    let search = external_search(db, "1", &extra);
    let sleeper = worker(db, "1", "2");
    let first = running_trial(db);
    signal(&sleeper, "-STOP");
    // Past the sleeper's lease: the second worker's sweep takes the trial back and trains it.
    let second = worker(db, "1", "5");
    assert!(finish(search).status.success());
    assert_eq!(summary(&finish(second))["completed"], 1);
    let stored = trials(db);
    assert_eq!((stored[0]["attempts"].as_u64(), &stored[0]["state"]), (Some(2), &Value::from("complete")));
    assert_ne!(stored[0]["worker"], first["worker"]);

    signal(&sleeper, "-CONT");
    let late = summary(&finish(sleeper));
    assert_eq!((late["superseded"].as_u64(), late["completed"].as_u64()), (Some(1), Some(0)), "{late}");
    assert_eq!(trials(db), stored, "the late result changed nothing");
    let shown = json(&["show", &stored[0]["id"].to_string(), "--db", db, "--json"]);
    assert!(
        shown["epochs"].as_array().is_some_and(|e| e.len() == 1),
        "one curve, the second attempt's: {shown}"
    );
}

#[test]
fn a_seeded_trial_gives_the_same_result_whichever_worker_process_trains_it() {
    let dir = tempfile::tempdir().expect("tempdir");
    let mut results: Vec<HashMap<String, (Value, Value)>> = Vec::new();
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
    let search = start(&args);
    running_trial(db);
    let children =
        std::fs::read_to_string(format!("/proc/{0}/task/{0}/children", search.id())).unwrap_or_default();
    let children: Vec<String> = children.split_whitespace().map(str::to_owned).collect();
    assert_eq!(children.len(), 2, "two worker processes");
    signal(&search, "-INT");
    let out = finish(search);
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
    let workers: Vec<Child> = (0..4).map(|_| worker(db, "30", "3")).collect();
    let plot = dir.path().join("busy.svg");
    let plot = plot.to_str().expect("path");
    let mut reads = 0;
    while search.try_wait().expect("the search").is_none() {
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
    assert!(finish(search).status.success());
    for w in workers {
        summary(&finish(w));
    }
    assert_eq!(trials(db).len(), 300);
}
