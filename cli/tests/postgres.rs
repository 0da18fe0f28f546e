//! The CLI on PostgreSQL (`--db postgres://…`), with real worker processes, real kills and a
//! server stopped abruptly mid-run: every trial completed exactly once and exactly N trials, as
//! on SQLite (`workers.rs`); runs moved between SQLite and PostgreSQL with `effnas db copy` and
//! resumed there. Each test makes a database of its own on the server of `EFFNAS_TEST_POSTGRES`
//! (`scripts/test` starts one with `scripts/postgres`); without it these tests fail, saying how
//! to start one.
#![cfg(unix)]
#![allow(clippy::unwrap_used)]

mod common;

use std::collections::BTreeSet;
use std::process::{Child, Command, Output, Stdio};
use std::time::{Duration, Instant};

use common::TINY_PROXY;
use serde_json::Value;

const POSTGRES_ENV: &str = "EFFNAS_TEST_POSTGRES";

fn server() -> String {
    match std::env::var(POSTGRES_ENV) {
        Ok(url) if !url.trim().is_empty() => url,
        _ => panic!(
            "{POSTGRES_ENV} is not set: these tests need a PostgreSQL server. Start a throwaway one with \
             `export {POSTGRES_ENV}=$(scripts/postgres | tail -n 1)` (scripts/test does this by itself)"
        ),
    }
}

/// The test server, shared by every test here: one test stops and restarts it, and holds it
/// alone meanwhile (the others, which run in parallel threads, would find it gone).
static SERVER: std::sync::RwLock<()> = std::sync::RwLock::new(());

type Shared = std::sync::RwLockReadGuard<'static, ()>;

/// A database of its own on the test server, dropped at the end. Holds the server shared until
/// then.
struct PgDb {
    name: String,
    url: String,
    _server: Option<Shared>,
}

impl PgDb {
    fn new() -> PgDb {
        let shared = SERVER.read().unwrap_or_else(std::sync::PoisonError::into_inner);
        PgDb::make(Some(shared))
    }

    /// A database for the test that holds the server alone.
    fn while_held_alone() -> PgDb {
        PgDb::make(None)
    }

    fn make(server_held: Option<Shared>) -> PgDb {
        static COUNTER: std::sync::atomic::AtomicU32 = std::sync::atomic::AtomicU32::new(0);
        let count = COUNTER.fetch_add(1, std::sync::atomic::Ordering::Relaxed);
        let name = format!("effnas_cli_{}_{count}", std::process::id());
        admin(&format!("DROP DATABASE IF EXISTS {name} WITH (FORCE)"));
        admin(&format!("CREATE DATABASE {name}"));
        let server = server();
        let (scheme, rest) = server.split_once("://").expect("a postgres:// URL");
        let (authority, query) = match rest.split_once('?') {
            Some((path, query)) => (path.split('/').next().unwrap_or(path), format!("?{query}")),
            None => (rest.split('/').next().unwrap_or(rest), String::new()),
        };
        PgDb { url: format!("{scheme}://{authority}/{name}{query}"), name, _server: server_held }
    }
}

impl Drop for PgDb {
    fn drop(&mut self) {
        admin(&format!("DROP DATABASE IF EXISTS {} WITH (FORCE)", self.name));
    }
}

/// Runs one statement on the test server's own database.
fn admin(sql: &str) {
    use sqlx::Connection;
    let runtime = tokio::runtime::Builder::new_current_thread().enable_all().build().unwrap();
    runtime
        .block_on(async {
            let mut conn = sqlx::PgConnection::connect(&server()).await?;
            sqlx::raw_sql(sql).execute(&mut conn).await?;
            conn.close().await
        })
        .unwrap_or_else(|e| panic!("{sql}: {e}"));
}

/// `effnas` with the database in `EFFNAS_DB` (as a user keeps a password off the command line).
fn command(db: &str, args: &[&str]) -> Command {
    let mut command = Command::new(env!("CARGO_BIN_EXE_effnas"));
    command.args(args).env("EFFNAS_DB", db).stdout(Stdio::piped()).stderr(Stdio::piped());
    command
}

fn start(db: &str, args: &[&str]) -> Child {
    command(db, args).spawn().expect("effnas starts")
}

fn run(db: &str, args: &[&str]) -> Output {
    command(db, args).output().expect("effnas runs")
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

fn ok(out: &Output) -> Value {
    assert!(out.status.success(), "{}", String::from_utf8_lossy(&out.stderr));
    serde_json::from_slice(&out.stdout).expect("JSON on stdout")
}

fn trials(db: &str) -> Vec<Value> {
    ok(&run(db, &["trials", "--run", "1", "--json"])).as_array().cloned().unwrap_or_default()
}

/// A search that only queues, on `db`; returns once it has queued.
fn external_search(db: &str, trials: &str, extra: &[&str]) -> Child {
    let mut args = vec!["search", "--external-workers", "--trials", trials, "--finalists", "0", "--json"];
    args.extend(extra);
    let child = start(db, &args);
    let started = Instant::now();
    while !run(db, &["trials", "--run", "1"]).status.success() {
        assert!(started.elapsed() < Duration::from_secs(60), "the search never queued a trial");
        std::thread::sleep(Duration::from_millis(100));
    }
    child
}

fn worker(db: &str, lease: &str, idle_exit: &str) -> Child {
    start(
        db,
        &["worker", "--run", "1", "--lease", lease, "--idle-exit", idle_exit, "--json", "--threads", "1"],
    )
}

/// Waits until some trial of run 1 is running (queries may fail meanwhile: the server may be
/// restarting) and returns it.
fn running_trial(db: &str) -> Value {
    let started = Instant::now();
    loop {
        let out = run(db, &["trials", "--run", "1", "--state", "running", "--json"]);
        let rows: Value = serde_json::from_slice(&out.stdout).unwrap_or(Value::Null);
        if let Some(t) = rows.as_array().and_then(|r| r.first()) {
            return t.clone();
        }
        assert!(started.elapsed() < Duration::from_secs(120), "no trial started");
        std::thread::sleep(Duration::from_millis(50));
    }
}

/// The password of a `postgres://user:password@host/db` URL ("" when it has none).
fn password(url: &str) -> String {
    let userinfo = url.split_once("://").and_then(|(_, rest)| rest.split_once('@')).map_or("", |(u, _)| u);
    userinfo.split_once(':').map_or("", |(_, p)| p).to_owned()
}

fn signal(child: &Child, name: &str) {
    let status = Command::new("kill").args([name, &child.id().to_string()]).status().expect("kill");
    assert!(status.success(), "kill {name}");
}

/// The run ended with exactly `n` trials, each complete, each trained once (or reused, never
/// claimed).
fn assert_exactly_once(all: &[Value], n: usize) {
    assert_eq!(all.len(), n, "exactly N trials");
    assert!(all.iter().all(|t| t["state"] == "complete"), "{all:?}");
    let (reused, trained): (Vec<&Value>, Vec<&Value>) = all.iter().partition(|t| !t["reused_from"].is_null());
    assert!(reused.iter().all(|t| t["attempts"] == 0), "reused trials are never claimed");
    assert!(trained.iter().all(|t| t["attempts"] == 1), "each trained once");
}

#[test]
fn worker_processes_on_postgres_complete_every_trial_exactly_once() {
    let db = PgDb::new();
    // The workers first, serving any run, so all three are up when trials arrive (an oracle
    // trial takes microseconds: a worker that started late could find the queue empty).
    let workers: Vec<Child> = (0..3)
        .map(|_| {
            start(&db.url, &["worker", "--lease", "30", "--idle-exit", "10", "--json", "--threads", "1"])
        })
        .collect();
    let search = external_search(&db.url, "60", &["--evaluator", "oracle", "--workers", "3"]);
    let out = finish(search);
    assert!(out.status.success(), "{}", String::from_utf8_lossy(&out.stderr));
    let summaries: Vec<Value> = workers.into_iter().map(|w| ok(&finish(w))).collect();
    let all = trials(&db.url);
    assert_exactly_once(&all, 60);
    let trained = all.iter().filter(|t| t["reused_from"].is_null()).count() as u64;
    let completed: u64 = summaries.iter().map(|s| s["completed"].as_u64().expect("count")).sum();
    assert_eq!(completed, trained, "the workers' own counts add up: no trial finished twice");
    assert!(summaries.iter().all(|s| s["superseded"] == 0));
    let names: BTreeSet<&str> = all.iter().filter_map(|t| t["worker"].as_str()).collect();
    assert!(names.len() >= 2, "the work was shared: {names:?}");
    assert_eq!(ok(&run(&db.url, &["runs", "--json"]))[0]["status"], "complete");
}

/// The search's own worker processes (the default): they get the URL from the search, password
/// included, through the environment.
#[test]
fn a_search_with_local_workers_runs_on_postgres_and_every_query_reads_it() {
    let db = PgDb::new();
    let out = run(
        &db.url,
        &[
            "search",
            "--evaluator",
            "oracle",
            "--trials",
            "40",
            "--workers",
            "2",
            "--finalists",
            "0",
            "--json",
        ],
    );
    assert!(out.status.success(), "{}", String::from_utf8_lossy(&out.stderr));
    let all = trials(&db.url);
    assert_exactly_once(&all, 40);
    let password = password(&db.url);
    for args in [
        vec!["runs"],
        vec!["trials", "--run", "1", "--top", "3"],
        vec!["show", &all[0]["id"].to_string()],
        vec!["pareto", "--run", "1"],
        vec!["export", "--run", "1"],
    ] {
        let out = run(&db.url, &args);
        let text = String::from_utf8_lossy(&out.stdout);
        assert!(
            out.status.success() && !text.is_empty(),
            "{args:?}: {}",
            String::from_utf8_lossy(&out.stderr)
        );
        assert!(password.is_empty() || !text.contains(&password), "{args:?} printed the password");
    }
    let dir = tempfile::tempdir().unwrap();
    let plot = dir.path().join("run.svg");
    let out = run(&db.url, &["plot", "--run", "1", "--out", plot.to_str().unwrap()]);
    assert!(out.status.success() && plot.exists(), "{}", String::from_utf8_lossy(&out.stderr));
    // `--db` on the command line works as well as EFFNAS_DB.
    let out = Command::new(env!("CARGO_BIN_EXE_effnas"))
        .args(["runs", "--json", "--db", &db.url])
        .output()
        .unwrap();
    assert_eq!(ok(&out)[0]["trials_done"], 40);
}

#[test]
fn a_killed_workers_trial_on_postgres_is_reclaimed_after_its_lease() {
    let db = PgDb::new();
    let mut extra = vec!["--strategy", "random", "--workers", "1"];
    extra.extend(TINY_PROXY);
    let search = external_search(&db.url, "2", &extra);
    let mut doomed = worker(&db.url, "2", "60");
    let victim = running_trial(&db.url);
    doomed.kill().expect("kill -9 the worker");
    let _ = doomed.wait();
    let rescuer = worker(&db.url, "2", "3");
    assert!(finish(search).status.success());
    let rescued = ok(&finish(rescuer))["completed"].as_u64();
    let all = trials(&db.url);
    assert_eq!(all.len(), 2);
    // The doomed worker may have finished the other trial before the one it was killed in.
    let by_doomed = all.iter().filter(|t| t["worker"] == victim["worker"]).count() as u64;
    assert_eq!(rescued, Some(2 - by_doomed), "the rescuer trains what the doomed worker left");
    let again = all.iter().find(|t| t["id"] == victim["id"]).expect("the killed worker's trial");
    assert_eq!((&again["state"], again["attempts"].as_u64()), (&Value::from("complete"), Some(2)), "{again}");
    assert_ne!(again["worker"], victim["worker"], "another worker finished it");
}

#[test]
fn a_paused_worker_on_postgres_that_comes_back_changes_nothing() {
    let db = PgDb::new();
    let mut extra = vec!["--strategy", "random", "--workers", "1"];
    extra.extend(TINY_PROXY);
    let search = external_search(&db.url, "1", &extra);
    let sleeper = worker(&db.url, "1", "2");
    let first = running_trial(&db.url);
    signal(&sleeper, "-STOP");
    let second = worker(&db.url, "1", "5");
    assert!(finish(search).status.success());
    assert_eq!(ok(&finish(second))["completed"], 1);
    let stored = trials(&db.url);
    assert_eq!((stored[0]["attempts"].as_u64(), &stored[0]["state"]), (Some(2), &Value::from("complete")));
    assert_ne!(stored[0]["worker"], first["worker"]);
    signal(&sleeper, "-CONT");
    let late = ok(&finish(sleeper));
    assert_eq!((late["superseded"].as_u64(), late["completed"].as_u64()), (Some(1), Some(0)), "{late}");
    assert_eq!(trials(&db.url), stored, "the late result changed nothing");
}

/// `scripts/postgres` on the test's server: only the throwaway cluster it started can be killed
/// and started again.
fn scripts_postgres(command: &str) {
    let script = concat!(env!("CARGO_MANIFEST_DIR"), "/../scripts/postgres");
    let out = Command::new(script).arg(command).env_remove(POSTGRES_ENV).output().expect("scripts/postgres");
    assert!(out.status.success(), "scripts/postgres {command}: {}", String::from_utf8_lossy(&out.stderr));
}

/// The server is stopped abruptly (`pg_ctl stop -m immediate`: every connection cut) while
/// workers train, and started again a few seconds later: the search and the workers reconnect
/// with backoff and the run ends with exactly N trials, each trained once.
#[test]
fn the_run_survives_the_server_stopping_abruptly_and_coming_back() {
    let ours = Command::new(concat!(env!("CARGO_MANIFEST_DIR"), "/../scripts/postgres"))
        .arg("url")
        .env_remove(POSTGRES_ENV)
        .output()
        .expect("scripts/postgres url");
    assert_eq!(
        String::from_utf8_lossy(&ours.stdout).trim(),
        server().trim(),
        "this test stops and restarts the server, so {POSTGRES_ENV} must be the throwaway cluster of \
         scripts/postgres (scripts/test starts one; set EFFNAS_POSTGRES_DIR as it was started with)"
    );
    let _alone = SERVER.write().unwrap_or_else(std::sync::PoisonError::into_inner);
    let db = PgDb::while_held_alone();
    let mut args = vec![
        "search",
        "--strategy",
        "random",
        "--seed",
        "5",
        "--trials",
        "6",
        "--workers",
        "2",
        "--finalists",
        "0",
    ];
    args.extend(["--threads", "1", "--json"]);
    args.extend(TINY_PROXY);
    let search = start(&db.url, &args);
    running_trial(&db.url);
    scripts_postgres("kill");
    // Long enough that every process has failed a call and is retrying; short against the
    // leases (30 s) and the retry time (300 s).
    std::thread::sleep(Duration::from_secs(3));
    scripts_postgres("start");
    let out = finish(search);
    assert!(out.status.success(), "{}", String::from_utf8_lossy(&out.stderr));
    let all = trials(&db.url);
    assert_eq!(all.len(), 6, "exactly N trials");
    assert!(all.iter().all(|t| t["state"] == "complete"), "{all:?}");
    // A trial whose result was in flight may have been retried (attempt 2), never lost.
    assert!(all.iter().all(|t| t["attempts"].as_u64().is_some_and(|a| a <= 2)), "{all:?}");
    assert_eq!(ok(&run(&db.url, &["runs", "--json"]))[0]["status"], "complete");
}

/// A search started on SQLite and interrupted is copied to PostgreSQL (ids kept, every trial
/// the same), resumed there to its end, and copied back to a new SQLite file: the same rows.
#[test]
fn a_run_started_on_sqlite_is_copied_to_postgres_resumed_there_and_copied_back() {
    let dir = tempfile::tempdir().unwrap();
    let file = dir.path().join("laptop.db").display().to_string();
    let db = PgDb::new();
    let mut args = vec![
        "search",
        "--db",
        &file,
        "--strategy",
        "random",
        "--seed",
        "2",
        "--trials",
        // Enough that a fast machine cannot finish them all between the first completion and
        // the Ctrl-C (with 4, an idle machine sometimes did).
        "12",
        "--finalists",
        "0",
    ];
    args.extend(["--workers", "1", "--threads", "1"]);
    args.extend(TINY_PROXY);
    let search = Command::new(env!("CARGO_BIN_EXE_effnas"))
        .args(&args)
        .stdout(Stdio::piped())
        .stderr(Stdio::piped())
        .spawn()
        .unwrap();
    // Interrupted once the first trial is complete (the file may not exist yet).
    let started = Instant::now();
    let complete = || {
        let out = run(&file, &["trials", "--run", "1", "--state", "complete", "--json"]);
        serde_json::from_slice::<Value>(&out.stdout)
            .ok()
            .and_then(|v| v.as_array().map(|a| !a.is_empty()))
            .unwrap_or(false)
    };
    while !complete() {
        assert!(started.elapsed() < Duration::from_secs(120), "no trial completed");
        std::thread::sleep(Duration::from_millis(100));
    }
    signal(&search, "-INT");
    assert_eq!(finish(search).status.code(), Some(130));
    let before = trials(&file);
    assert!(before.len() < 12 || before.iter().any(|t| t["state"] != "complete"), "interrupted early");

    let copied = Command::new(env!("CARGO_BIN_EXE_effnas"))
        .args(["db", "copy", "--from", &file, "--json"])
        .env("EFFNAS_DB_TO", &db.url)
        .output()
        .unwrap();
    let report = ok(&copied);
    assert_eq!(
        (report["ids"].as_str(), report["runs"][0]["to"].as_i64()),
        (Some("kept"), Some(1)),
        "{report}"
    );
    let secret = password(&db.url);
    assert!(secret.is_empty() || !report.to_string().contains(&secret), "no password in {report}");
    assert_eq!(trials(&db.url), before, "every trial as it was");
    // Copying again into the now non-empty database is refused in one line.
    let again = Command::new(env!("CARGO_BIN_EXE_effnas"))
        .args(["db", "copy", "--from", &file, "--to", &db.url])
        .output()
        .unwrap();
    assert_eq!(again.status.code(), Some(2));
    assert!(
        String::from_utf8_lossy(&again.stderr).contains("--append"),
        "{}",
        String::from_utf8_lossy(&again.stderr)
    );

    let mut resume = vec!["search", "--resume", "1", "--workers", "1", "--threads", "1", "--json"];
    resume.extend(TINY_PROXY);
    let out = run(&db.url, &resume);
    assert!(out.status.success(), "{}", String::from_utf8_lossy(&out.stderr));
    let after = trials(&db.url);
    assert_eq!(after.len(), 12, "exactly N trials");
    assert!(after.iter().all(|t| t["state"] == "complete"));
    for old in before.iter().filter(|t| t["state"] == "complete") {
        assert!(after.contains(old), "a trial completed on SQLite is kept as it was: {old}");
    }

    let back = dir.path().join("back.db").display().to_string();
    let out = Command::new(env!("CARGO_BIN_EXE_effnas"))
        .args(["db", "copy", "--from", &db.url, "--to", &back])
        .output()
        .unwrap();
    assert!(out.status.success(), "{}", String::from_utf8_lossy(&out.stderr));
    assert_eq!(trials(&back), after);
    assert_eq!(ok(&run(&back, &["runs", "--json"])), ok(&run(&db.url, &["runs", "--json"])));
}
