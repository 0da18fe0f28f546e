//! Runs that do not lie about their state, with real `effnas` processes on the oracle evaluator:
//! a resume while the run's process lives is refused (the run lease), a trial that keeps killing
//! its process ends as lost, a search outlasts another process holding the database locked, a
//! run of nothing but failures ends failed, and run names are unique, never ids, and printed
//! escaped.

mod common;

use std::path::Path;
use std::process::{Child, Command, Output, Stdio};
use std::time::{Duration, Instant};

use common::{effnas, json, oracle_search, stdout_of};
use effnas_store::Store;
use serde_json::Value;

fn path(p: &Path) -> &str {
    p.to_str().expect("utf-8 path")
}

fn runtime() -> tokio::runtime::Runtime {
    tokio::runtime::Builder::new_current_thread().enable_all().build().expect("runtime")
}

/// Hand-edits the database as another SQLite client would.
fn sql(db: &str, statements: &str) {
    runtime().block_on(async {
        let store = Store::open(db).await.expect("the database opens");
        store.execute_unchecked(statements).await.expect("SQL runs");
        store.close().await;
    });
}

fn runs(db: &str) -> Vec<Value> {
    json(&["runs", "--db", db, "--json"]).as_array().cloned().expect("a list")
}

fn trials(db: &str, run: &str) -> Vec<Value> {
    json(&["trials", "--db", db, "--run", run, "--json"]).as_array().cloned().expect("a list")
}

/// An oracle search of `trials` trials, started in the background with `env` set.
fn spawn_search(db: &str, trials: usize, env: &[(&str, &str)]) -> Child {
    let trials = trials.to_string();
    Command::new(env!("CARGO_BIN_EXE_effnas"))
        .args([
            "search",
            "--db",
            db,
            "--evaluator",
            "oracle",
            "--finalists",
            "0",
            "--strategy",
            "random",
            "--workers",
            "1",
        ])
        .args(["--trials", &trials])
        .envs(env.iter().copied())
        .stdout(Stdio::piped())
        .stderr(Stdio::piped())
        .spawn()
        .expect("effnas starts")
}

/// Waits until run 1 has at least `done` finished trials.
fn wait_for_trials(db: &str, done: u64, child: &mut Child) {
    let deadline = Instant::now() + Duration::from_secs(120);
    loop {
        if let Some(status) = child.try_wait().expect("child status") {
            panic!("the search ended early: {status}");
        }
        let out = effnas(&["runs", "--db", db, "--json"]);
        if out.status.success() {
            let list: Value = serde_json::from_slice(&out.stdout).unwrap_or(Value::Null);
            if list[0]["trials_done"].as_u64().is_some_and(|n| n >= done) {
                return;
            }
        }
        assert!(Instant::now() < deadline, "no progress in time");
        std::thread::sleep(Duration::from_millis(50));
    }
}

fn finish(child: Child) -> Output {
    child.wait_with_output().expect("effnas ends")
}

/// Exit status 2, nothing on stdout, one line on stderr containing every `needle`, no panic.
fn one_line_failure(out: &Output, needles: &[&str]) {
    let stderr = String::from_utf8_lossy(&out.stderr);
    assert_eq!(out.status.code(), Some(2), "{stderr}");
    assert!(out.stdout.is_empty(), "stdout: {}", String::from_utf8_lossy(&out.stdout));
    assert_eq!(stderr.trim_end().lines().count(), 1, "{stderr}");
    for needle in needles {
        assert!(stderr.contains(needle), "{stderr:?} should contain {needle:?}");
    }
    assert!(!stderr.contains("panicked"), "{stderr}");
}

/// The original process keeps its run: a resume while it lives is refused, naming it; the
/// original finishes undisturbed, no trial trained twice. Once the original is killed, a resume
/// takes over at once (same machine, its process is gone) and completes the run.
#[cfg(unix)]
#[test]
fn a_run_whose_process_lives_is_not_resumed_twice() {
    let dir = tempfile::tempdir().expect("tempdir");
    let db = dir.path().join("live.db");
    let db = path(&db);
    const N: usize = 3000;
    let mut original = spawn_search(db, N, &[]);
    wait_for_trials(db, 20, &mut original);

    let refused = effnas(&["search", "--db", db, "--resume", "1"]);
    one_line_failure(&refused, &["--resume \"1\"", "run 1 is in use by process", &original.id().to_string()]);
    // The refused resume touched nothing: the original still runs its trials.
    assert!(original.try_wait().expect("status").is_none(), "the original must be undisturbed");

    // kill -9: the lease still names the dead process, but a resume on this machine sees it gone.
    original.kill().expect("kill -9");
    let _ = original.wait();
    let before = runs(db);
    assert_eq!(before[0]["status"], "running");
    let resumed = effnas(&["search", "--db", db, "--resume", "1", "--json"]);
    assert!(resumed.status.success(), "{}", String::from_utf8_lossy(&resumed.stderr));
    let after = trials(db, "1");
    assert_eq!(after.len(), N);
    assert!(after.iter().all(|t| t["state"] == "complete"), "every trial complete");
    // Only the trial in flight at the kill was claimed twice.
    let retried = after.iter().filter(|t| t["attempts"].as_u64() != Some(1)).count();
    assert!(retried <= 1, "{retried} trials trained more than once");
    let run = &runs(db)[0];
    assert_eq!(run["status"], "complete");
    assert_eq!(run["owner"], Value::Null, "the lease is released at the end");
}

/// A run held by a live process on another machine (its lease runs) is refused by `search` and
/// `compound` alike (they share `--resume`), naming the holder and the lease's end, and nothing
/// changes.
#[test]
fn resume_of_a_run_leased_elsewhere_is_refused_for_search_and_compound() {
    let dir = tempfile::tempdir().expect("tempdir");
    let db = dir.path().join("leased.db");
    let db = path(&db);
    oracle_search(db, &["--trials", "4", "--workers", "1", "--json"]);
    stdout_of(&[
        "compound",
        "--db",
        db,
        "--evaluator",
        "oracle",
        "--finalists",
        "0",
        "--max-points",
        "2",
        "--workers",
        "1",
        "--json",
    ]);
    sql(
        db,
        "UPDATE runs SET status = 'interrupted', owner = 'gpu-node-7:4026531836:4242:99',
                         lease_until = '9999-01-01T00:00:00.000Z'",
    );
    let before = (runs(db), trials(db, "1"), trials(db, "2"));
    let search = effnas(&["search", "--db", db, "--resume", "1"]);
    one_line_failure(&search, &["run 1 is in use by process 4242 on gpu-node-7", "lease until 9999-01-01"]);
    let compound = effnas(&["compound", "--db", db, "--resume", "2"]);
    one_line_failure(&compound, &["run 2 is in use by process 4242 on gpu-node-7"]);
    assert_eq!(before, (runs(db), trials(db, "1"), trials(db, "2")), "nothing changed");

    // The lease lapses (the holder stopped renewing): the run is taken over and finished.
    sql(db, "UPDATE runs SET lease_until = '2001-01-01T00:00:00.000Z'");
    let resumed = effnas(&["compound", "--db", db, "--resume", "2", "--json"]);
    assert!(resumed.status.success(), "{}", String::from_utf8_lossy(&resumed.stderr));
    assert_eq!(runs(db)[1]["owner"], Value::Null);
}

/// A trial whose process died on each of its attempts (the OOM killer) is failed as lost on
/// the next resume instead of going back to the queue forever; a trial with attempts left is
/// trained again.
#[test]
fn a_trial_that_keeps_killing_its_process_ends_as_lost() {
    let dir = tempfile::tempdir().expect("tempdir");
    let db = dir.path().join("oom.db");
    let db = path(&db);
    oracle_search(db, &["--trials", "6", "--workers", "1", "--json"]);
    let ids: Vec<i64> = trials(db, "1").iter().map(|t| t["id"].as_i64().expect("id")).collect();
    // As a process killed mid-trial leaves them: the run running, two trials in flight, one
    // of them on its third attempt.
    sql(
        db,
        &format!(
            "UPDATE runs SET status = 'running', finished_at = NULL;
             UPDATE trials SET state = 'running', attempts = 3, reward = NULL, finished_at = NULL WHERE id = {};
             UPDATE trials SET state = 'running', attempts = 1, reward = NULL, finished_at = NULL WHERE id = {};",
            ids[1], ids[2]
        ),
    );
    let resumed = effnas(&["search", "--db", db, "--resume", "1", "--json"]);
    assert!(resumed.status.success(), "{}", String::from_utf8_lossy(&resumed.stderr));
    let after = trials(db, "1");
    let lost = after.iter().find(|t| t["id"].as_i64() == Some(ids[1])).expect("trial");
    assert_eq!((&lost["state"], &lost["failure"]), (&Value::from("failed"), &Value::from("lost")), "{lost}");
    assert!(lost["error"].as_str().is_some_and(|e| e.contains("each of its 3 attempts")), "{lost}");
    let retried = after.iter().find(|t| t["id"].as_i64() == Some(ids[2])).expect("trial");
    assert_eq!((&retried["state"], retried["attempts"].as_u64()), (&Value::from("complete"), Some(2)));
    assert_eq!(after.len(), 6);
    assert_eq!(runs(db)[0]["status"], "complete");
}

/// Takes the database's write lock from this process and holds it for `hold` in a thread;
/// returns once the lock is held.
fn lock_database(db: &str, hold: Duration) -> std::thread::JoinHandle<()> {
    let db = db.to_owned();
    let (taken, wait) = std::sync::mpsc::channel();
    let locker = std::thread::spawn(move || {
        runtime().block_on(async {
            let store = Store::open(&db).await.expect("the database opens");
            store.hold_write_lock(hold, || taken.send(()).expect("signal")).await.expect("lock");
            store.close().await;
        });
    });
    wait.recv().expect("the lock is taken");
    locker
}

/// Another process holds the database locked for 20 busy timeouts: the search waits it out and
/// completes every trial.
#[test]
fn a_search_outlasts_a_lock_held_past_the_busy_timeout() {
    let dir = tempfile::tempdir().expect("tempdir");
    let db = dir.path().join("locked.db");
    let db = path(&db);
    const N: usize = 400;
    let mut search = spawn_search(db, N, &[("EFFNAS_DB_BUSY_TIMEOUT", "0.1")]);
    wait_for_trials(db, 10, &mut search);
    let locker = lock_database(db, Duration::from_secs(2));
    locker.join().expect("locker");
    let out = finish(search);
    assert!(out.status.success(), "{}", String::from_utf8_lossy(&out.stderr));
    assert_eq!(runs(db)[0]["status"], "complete");
    assert_eq!(trials(db, "1").len(), N);
}

/// A lock held past the whole retry time: the worker processes wait it out (a worker has nothing
/// better to do, and fencing makes a lapsed lease harmless). The search itself writes only when
/// results arrive; if one of its writes meets the lock, it stops with one line that says the run
/// is interrupted and how to resume it. Which of the two happens depends on timing; either way
/// nothing is lost, nothing is left running, and the run ends with exactly N trials.
#[test]
fn a_lock_held_past_the_retry_loses_nothing() {
    let dir = tempfile::tempdir().expect("tempdir");
    let db = dir.path().join("stuck.db");
    let db = path(&db);
    const N: usize = 400;
    let mut search = spawn_search(db, N, &[("EFFNAS_DB_BUSY_TIMEOUT", "0.1"), ("EFFNAS_DB_RETRY", "1")]);
    wait_for_trials(db, 10, &mut search);
    let locker = lock_database(db, Duration::from_millis(1600));
    let out = finish(search);
    locker.join().expect("locker");
    let stderr = String::from_utf8_lossy(&out.stderr);
    match out.status.code() {
        Some(0) => assert_eq!(runs(db)[0]["status"], "complete", "{stderr}"),
        Some(2) => {
            let last = stderr.trim_end().lines().last().unwrap_or_default();
            assert!(last.contains("stayed locked"), "{stderr}");
            assert!(last.contains("run 1 is marked interrupted") && last.contains("--resume 1"), "{stderr}");
            assert_eq!(runs(db)[0]["status"], "interrupted");
            let resumed = effnas(&["search", "--db", db, "--resume", "1", "--json"]);
            assert!(resumed.status.success(), "{}", String::from_utf8_lossy(&resumed.stderr));
        }
        other => panic!("exit status {other:?}: {stderr}"),
    }
    assert!(!stderr.contains("panicked"), "{stderr}");
    let all = trials(db, "1");
    assert_eq!(all.len(), N);
    assert!(all.iter().all(|t| t["state"] == "complete"), "nothing lost, nothing left running");
}

/// Every candidate rejected: the run ends failed, not complete, and `search` exits 1 with a
/// summary that says so.
#[test]
fn a_search_whose_trials_all_fail_ends_failed() {
    let dir = tempfile::tempdir().expect("tempdir");
    let db = dir.path().join("failed.db");
    let db = path(&db);
    let out = effnas(&[
        "search",
        "--db",
        db,
        "--evaluator",
        "oracle",
        "--finalists",
        "0",
        "--trials",
        "4",
        "--workers",
        "1",
        "--max-flops",
        "1",
        "--name",
        "none",
    ]);
    let stdout = String::from_utf8_lossy(&out.stdout);
    assert_eq!(out.status.code(), Some(1), "{stdout} {}", String::from_utf8_lossy(&out.stderr));
    assert!(stdout.lines().next().is_some_and(|l| l.contains("(none): failed")), "{stdout}");
    let run = &runs(db)[0];
    assert_eq!((&run["status"], run["trials_failed"].as_u64()), (&Value::from("failed"), Some(4)), "{run}");
    // One complete trial is enough for a complete run.
    oracle_search(db, &["--trials", "2", "--workers", "1", "--json"]);
    assert_eq!(runs(db)[1]["status"], "complete");
}

/// Names are unique and never all digits; `--run 1` is id 1 and `--run =NAME` a name; names are
/// printed with control characters escaped by `runs`, `trials` and the search summary.
#[test]
fn run_names_are_unique_distinct_from_ids_and_printed_escaped() {
    let dir = tempfile::tempdir().expect("tempdir");
    let db = dir.path().join("names.db");
    let db = path(&db);
    let search = |extra: &[&str]| {
        let mut args = vec![
            "search",
            "--db",
            db,
            "--evaluator",
            "oracle",
            "--finalists",
            "0",
            "--trials",
            "2",
            "--workers",
            "1",
        ];
        args.extend_from_slice(extra);
        effnas(&args)
    };
    assert!(search(&["--name", "mine"]).status.success());
    let before = runs(db);
    one_line_failure(&search(&["--name", "mine"]), &["a run named \"mine\" already exists (run 1)"]);
    one_line_failure(&search(&["--name", "2"]), &["\"2\" is all digits"]);
    one_line_failure(&search(&["--name", "bad\u{1b}[2J"]), &["control characters"]);
    assert_eq!(runs(db), before, "refused runs leave no row");
    // Derived names are numbered instead of refused.
    assert!(search(&[]).status.success());
    assert!(search(&[]).status.success());
    let names: Vec<Value> = runs(db).iter().map(|r| r["name"].clone()).collect();
    assert_eq!(names, ["mine", "evolution-default", "evolution-default-2"].map(Value::from).to_vec());

    // An older database may hold an all-digit name and a hostile one.
    sql(
        db,
        "UPDATE runs SET name = '3' WHERE id = 2;
         UPDATE runs SET name = 'evil' || char(27) || '[2J' || char(7) || char(10) || 'line', status = 'interrupted' WHERE id = 1",
    );
    let by_id = json(&["trials", "--db", db, "--run", "3", "--json"]);
    assert_eq!(by_id[0]["run_id"], 3, "`--run 3` is the id");
    let by_name = json(&["trials", "--db", db, "--run", "=3", "--json"]);
    assert_eq!(by_name[0]["run_id"], 2, "`--run =3` is the name");

    let table = stdout_of(&["runs", "--db", db]);
    assert!(!table.contains(['\u{1b}', '\u{7}']), "{table:?}");
    assert!(table.contains("evil\\u{1b}[2J\\u{7}\\nline"), "{table}");
    assert_eq!(table.lines().count(), 2 + 3, "one line per run: {table}");
    let listing = stdout_of(&["trials", "--db", db, "--run", "1"]);
    assert!(!listing.contains(['\u{1b}', '\u{7}']) && listing.contains("evil\\u{1b}"), "{listing}");
    let summary = stdout_of(&["search", "--db", db, "--resume", "1"]);
    assert!(!summary.contains(['\u{1b}', '\u{7}']) && summary.contains("evil\\u{1b}"), "{summary}");
}
