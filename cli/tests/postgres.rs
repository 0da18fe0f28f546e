//! The CLI on PostgreSQL (`--db postgres://…`), with real worker processes, real kills and a
//! server stopped abruptly mid-run: every trial completed exactly once and exactly N trials, as
//! on SQLite (`workers.rs`); runs moved between SQLite and PostgreSQL with `effnas db copy` and
//! resumed there. Each test makes a database of its own on the server of `EFFNAS_TEST_POSTGRES`
//! (`scripts/test` starts one with `scripts/postgres`); without it these tests fail, saying how
//! to start one.
#![cfg(unix)]
#![allow(clippy::unwrap_used)]

mod common;

use std::process::Command;
use std::time::Duration;

use common::procs::{
    assert_exactly_once, assert_rescued, assert_shared_exactly_once, external_search, freeze_while_training,
    ok, ready_workers_for_any_run, run, start, stop_workers, trials, trials_in_state, wait_until, worker,
    worker_until_stopped, SLOW_PROXY,
};
use common::TINY_PROXY;

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

/// Runs `work` on a connection to the test server's own database, in a runtime of its own;
/// panics naming `what` if it fails.
fn on_server<T>(what: &str, work: impl AsyncFnOnce(&mut sqlx::PgConnection) -> sqlx::Result<T>) -> T {
    use sqlx::Connection;
    let runtime = tokio::runtime::Builder::new_current_thread().enable_all().build().unwrap();
    runtime
        .block_on(async {
            let mut conn = sqlx::PgConnection::connect(&server()).await?;
            let value = work(&mut conn).await?;
            conn.close().await?;
            Ok::<_, sqlx::Error>(value)
        })
        .unwrap_or_else(|e| panic!("{what}: {e}"))
}

/// Runs one statement on the test server's own database.
fn admin(sql: &str) {
    on_server(sql, async |conn| sqlx::raw_sql(sql).execute(conn).await.map(drop));
}

/// A setting of the test's server (`SHOW name`).
fn setting(name: &str) -> String {
    let show = format!("SHOW {name}");
    on_server(&show, async |conn| sqlx::query_scalar(&show).fetch_one(conn).await)
}

/// The password of a `postgres://user:password@host/db` URL ("" when it has none).
fn password(url: &str) -> String {
    let userinfo = url.split_once("://").and_then(|(_, rest)| rest.split_once('@')).map_or("", |(u, _)| u);
    userinfo.split_once(':').map_or("", |(_, p)| p).to_owned()
}

#[test]
fn worker_processes_on_postgres_complete_every_trial_exactly_once() {
    let db = PgDb::new();
    // The workers first, serving any run, all three looking for work before trials arrive;
    // they are stopped once the search has ended.
    let workers = ready_workers_for_any_run(&db.url, 3);
    let search = external_search(&db.url, "60", &["--evaluator", "oracle", "--workers", "3"]);
    let out = search.finish();
    assert!(out.status.success(), "{}", String::from_utf8_lossy(&out.stderr));
    let summaries = stop_workers(workers);
    assert_shared_exactly_once(&trials(&db.url), 60, &summaries);
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
    extra.extend(SLOW_PROXY);
    let search = external_search(&db.url, "2", &extra);
    let mut doomed = worker_until_stopped(&db.url, "3");
    let victim = freeze_while_training(&db.url, &doomed);
    doomed.kill();
    let rescuer = worker_until_stopped(&db.url, "3");
    assert!(search.finish().status.success());
    let rescued = stop_workers(vec![rescuer])[0]["completed"].as_u64();
    assert_rescued(&trials(&db.url), 2, &victim, rescued);
}

#[test]
fn a_paused_worker_on_postgres_that_comes_back_changes_nothing() {
    let db = PgDb::new();
    let mut extra = vec!["--strategy", "random", "--workers", "1"];
    extra.extend(SLOW_PROXY);
    let search = external_search(&db.url, "1", &extra);
    // Once back, it finds nothing more to do and ends after 5 idle seconds.
    let sleeper = worker(&db.url, "1", "5");
    let first = freeze_while_training(&db.url, &sleeper);
    // Past the sleeper's lease: the second worker's sweep takes the trial back and trains it.
    let second = worker_until_stopped(&db.url, "1");
    assert!(search.finish().status.success());
    let rescued = stop_workers(vec![second])[0]["completed"].as_u64();
    let stored = trials(&db.url);
    assert_rescued(&stored, 1, &first, rescued);
    sleeper.signal("-CONT");
    let late = ok(&sleeper.finish());
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
    // A crash must not lose what the server confirmed; with synchronous_commit off it does
    // (a search then waited forever for queued trials the restarted server no longer had).
    assert_eq!(setting("synchronous_commit"), "on", "scripts/postgres must keep synchronous_commit on");
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
    // Three epochs: the server goes down while a worker trains, the case this test is about.
    args.extend(SLOW_PROXY);
    let search = start(&db.url, &args);
    wait_until("a trial running", || !trials_in_state(&db.url, "running").is_empty());
    scripts_postgres("kill");
    // Long enough that every process has failed a call and is retrying; short against the
    // leases (30 s) and the retry time (300 s).
    std::thread::sleep(Duration::from_secs(3));
    scripts_postgres("start");
    let out = search.finish();
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
    // The file is named on the command line; EFFNAS_DB (the PostgreSQL URL) is overridden.
    let search = start(&db.url, &args);
    // Interrupted once the first trial is complete (the file may not exist yet).
    wait_until("a trial complete", || !trials_in_state(&file, "complete").is_empty());
    search.signal("-INT");
    assert_eq!(search.finish().status.code(), Some(130));
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
