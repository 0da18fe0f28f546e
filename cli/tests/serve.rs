//! `effnas serve` over HTTP: every route's status and JSON shape, escaping of a hostile run
//! name, server-side sorting and paging, the live event stream, and safety for the run it
//! watches: the database file's bytes are unchanged after many requests, a writer working
//! meanwhile never meets a lock, and a missing database is an error, not a new file. On SQLite,
//! and on PostgreSQL (the server of `EFFNAS_TEST_POSTGRES`, as in `postgres.rs`).
#![cfg(unix)]
#![allow(clippy::unwrap_used)]

mod common;
#[path = "common/dashboard.rs"]
mod dashboard;

use std::time::Duration;

use dashboard::{block_on, seed, Events, Seed, Server, HOSTILE_NAME};
use effnas_store::{OpenOptions, Store};
use serde_json::Value;

/// A database with the hostile-named run (40 complete, 3 failed, 4 pending, 1 running) and a
/// second, smaller run.
fn seeded() -> (tempfile::TempDir, String) {
    let dir = tempfile::tempdir().unwrap();
    let path = dir.path().join("effnas.db").display().to_string();
    block_on(async {
        let store = Store::open(&path).await.unwrap();
        seed(&store, &Seed { name: HOSTILE_NAME, complete: 40, failed: 3, pending: 4 }).await;
        seed(&store, &Seed { name: "b0-search", complete: 5, failed: 0, pending: 0 }).await;
        store.close().await;
    });
    (dir, path)
}

/// Checkpoints the WAL into the main file and removes it (no connection left), so the file's
/// bytes are the whole database.
fn settle(path: &str) {
    block_on(async {
        use sqlx::Connection;
        let mut conn = sqlx::SqliteConnection::connect(&format!("sqlite://{path}")).await.unwrap();
        sqlx::query("PRAGMA wal_checkpoint(TRUNCATE)").execute(&mut conn).await.unwrap();
        conn.close().await.unwrap();
    });
}

#[test]
fn every_route_answers_with_its_shape() {
    let (_dir, db) = seeded();
    let server = Server::start(&db);

    let runs = server.json("/api/runs");
    let runs = runs.as_array().unwrap();
    assert_eq!(runs.len(), 2);
    let first = &runs[0];
    assert_eq!(first["name"], HOSTILE_NAME);
    for (key, want) in [
        ("trials_done", 40),
        ("trials_failed", 3),
        ("trials_pending", 4),
        ("trials_running", 1),
        ("trials_total", 48),
        ("trials_reclaimed", 0),
    ] {
        assert_eq!(first[key], want, "{key}");
    }
    assert!(first["trials_per_hour"].is_number() && first["seconds_left"].is_number(), "{first}");
    assert_eq!(server.json("/api/runs/2")["trials_done"], 5);

    let page = server.json("/api/runs/1/trials?sort=accuracy&order=desc&per_page=10&page=2");
    assert_eq!(
        (page["total"].as_u64(), page["page"].as_u64(), page["per_page"].as_u64()),
        (Some(48), Some(2), Some(10))
    );
    let accuracies: Vec<f64> =
        page["trials"].as_array().unwrap().iter().map(|t| t["accuracy"].as_f64().unwrap()).collect();
    assert_eq!(accuracies.len(), 10);
    assert!(accuracies.windows(2).all(|w| w[0] >= w[1]), "{accuracies:?}");
    let failed = server.json("/api/runs/1/trials?state=failed");
    assert_eq!(failed["total"], 3);
    assert_eq!(failed["trials"][0]["failure"], "diverged");
    let ranged = server.json("/api/runs/1/trials?min_accuracy=0.845&max_accuracy=0.895");
    assert_eq!(ranged["total"], 5, "accuracies 0.85 … 0.89 of trials 36…40 and none other: {ranged}");

    let chart = server.json("/api/runs/1/chart");
    assert_eq!(chart["progress"]["reward"].as_array().unwrap().len(), 40);
    assert_eq!(chart["progress"]["failed"].as_array().unwrap().len(), 3);
    assert_eq!(chart["front"]["all"]["mflops"].as_array().unwrap().len(), 40);
    assert!(!chart["front"]["front"]["id"].as_array().unwrap().is_empty());
    assert_eq!(chart["target_mflops"], 400.0);
    assert_eq!(chart["references"][0]["name"], "EfficientNet-B0", "trial 1 is B0's structure");

    let trial = server.json("/api/trials/1");
    assert_eq!((trial["id"].as_i64(), trial["state"].as_str()), (Some(1), Some("complete")));
    assert!(trial["epochs"].is_array() && trial["arch"].is_object());
    assert!(server.json("/api/token")["token"].is_string());

    let csv = server.get("/api/runs/1/trials.csv?state=complete");
    assert_eq!(csv.status, 200);
    assert!(csv.header("content-type").starts_with("text/csv"));
    assert!(csv.header("content-disposition").contains("run-1-trials.csv"));
    assert_eq!(csv.body.lines().count(), 41, "a header and 40 rows");
    let download = server.get("/api/runs/1/trials.json?sort=reward&order=desc");
    let rows: Value = serde_json::from_str(&download.body).unwrap();
    assert_eq!(rows.as_array().unwrap().len(), 48);
    assert_eq!(rows[0]["run_name"], HOSTILE_NAME);

    for path in ["/", "/runs/1", "/runs/1?sort=flops&order=asc&page=2&per_page=5", "/trials/1", "/trials/44"]
    {
        let page = server.get(path);
        assert_eq!(page.status, 200, "{path}");
        assert!(page.header("content-type").starts_with("text/html"), "{path}");
        assert!(page.body.contains("</html>"), "{path}");
    }
    let jump = server.get("/trials?id=7");
    assert_eq!((jump.status, jump.header("location")), (303, "/trials/7"));
    for asset in ["uPlot.iife.min.js", "uPlot.min.css", "app.js", "style.css", "uPlot-LICENSE.txt"] {
        let response = server.get(&format!("/assets/{asset}"));
        assert_eq!(response.status, 200, "{asset}");
        assert!(response.body.len() > 100, "{asset}");
    }
}

/// A trial whose first worker was lost (claimed with a lease that then passed, and taken back)
/// and that a second worker finished, as happens when a worker is killed; the first worker's
/// name is hostile. Returns the database and the trial.
fn reclaimed_and_finished() -> (tempfile::TempDir, String, effnas_store::TrialId) {
    const LOST: &str = "<i>lost-worker</i>";
    let dir = tempfile::tempdir().unwrap();
    let path = dir.path().join("effnas.db").display().to_string();
    let trial = block_on(async {
        let store = Store::open(&path).await.unwrap();
        let run = seed(&store, &Seed { name: "reclaims", complete: 1, failed: 0, pending: 0 }).await;
        let id = store.insert_trial(run, &dashboard::trial(300)).await.unwrap();
        let first = store.claim_next(Some(run), LOST, Duration::from_millis(1)).await.unwrap().unwrap();
        assert_eq!((first.id, first.attempt), (id, 1));
        // Its lease passes (1 ms) without an extension: expiry takes it back.
        let deadline = std::time::Instant::now() + Duration::from_secs(60);
        while store.requeue_expired(effnas_store::MAX_ATTEMPTS).await.unwrap().pending != [id] {
            assert!(std::time::Instant::now() < deadline, "the 1 ms lease never expired");
            tokio::time::sleep(Duration::from_millis(5)).await;
        }
        let second =
            store.claim_next(Some(run), "host-b:42:0", Duration::from_secs(600)).await.unwrap().unwrap();
        assert_eq!((second.id, second.attempt), (id, 2));
        let epoch = effnas_store::EpochMetrics { epoch: 0, val_accuracy: Some(0.6), ..Default::default() };
        let written = store.complete_claim(second.claim(), &dashboard::metrics(7), &[epoch]).await.unwrap();
        assert!(written.is_written());
        store.close().await;
        id
    });
    (dir, path, trial)
}

#[test]
fn a_reclaimed_trial_shows_both_attempts_on_its_page_and_in_json() {
    let (_dir, db, trial) = reclaimed_and_finished();
    let server = Server::start(&db);
    let json = server.json(&format!("/api/trials/{trial}"));
    assert_eq!((json["attempts"].as_u64(), json["state"].as_str()), (Some(2), Some("complete")));
    let history = json["attempt_history"].as_array().unwrap();
    let summary: Vec<(u64, &str, &str)> = history
        .iter()
        .map(|a| {
            (a["attempt"].as_u64().unwrap(), a["worker"].as_str().unwrap(), a["outcome"].as_str().unwrap())
        })
        .collect();
    assert_eq!(summary, [(1, "<i>lost-worker</i>", "reclaimed"), (2, "host-b:42:0", "complete")]);
    for a in history {
        assert!(a["started"].is_string() && a["ended"].is_string() && a["failure"].is_null(), "{a}");
    }
    assert_eq!(history[1]["ended"], json["finished"], "the last attempt ended when the trial did");

    let page = server.text(&format!("/trials/{trial}"));
    assert!(page.contains("<h2>Attempts (2)</h2>"), "{page}");
    let rows: Vec<&str> =
        page.split("<tr data-attempt=\"").skip(1).map(|r| r.split("</tr>").next().unwrap()).collect();
    assert_eq!(rows.len(), 2, "one row per attempt");
    assert!(rows[0].starts_with("1\"") && rows[0].contains(">reclaimed<"), "{}", rows[0]);
    assert!(rows[0].contains("&lt;i&gt;lost-worker&lt;/i&gt;"), "the worker's name as text: {}", rows[0]);
    assert!(rows[1].starts_with("2\"") && rows[1].contains(">complete<") && rows[1].contains("host-b:42:0"));
    assert!(!page.contains("<i>lost-worker</i>"), "no worker name unescaped");

    // A trial recorded whole (never claimed) says so; the one claimed in-process has its one
    // attempt, running.
    let queued = server.text("/trials/1");
    assert!(queued.contains("<h2>Attempts (0)</h2>") && queued.contains("Not claimed by any worker"));
    let running = server.json("/api/trials/2");
    assert_eq!(running["attempt_history"][0]["outcome"], "running");
    assert_eq!(running["attempt_history"][0]["worker"], "worker-1");
}

#[test]
fn bad_requests_get_their_status_and_a_reason() {
    let (_dir, db) = seeded();
    let server = Server::start(&db);
    for (path, status, needle) in [
        ("/runs/99", 404, "99"),
        ("/api/runs/99", 404, "99"),
        ("/trials/999", 404, "999"),
        ("/api/trials/999", 404, "999"),
        ("/runs/1?sort=arch%3B%20DROP%20TABLE%20trials", 400, "unknown column"),
        ("/api/runs/1/trials?order=up", 400, "asc or desc"),
        ("/api/runs/1/trials?min_worker=3", 400, "does not hold numbers"),
        ("/api/runs/1/trials?per_page=100000", 400, "per_page"),
        ("/trials?id=abc", 400, "trial id"),
        ("/assets/..%2F..%2Fmain.rs", 404, "no asset"),
        ("/nowhere", 404, "no such page"),
    ] {
        let response = server.get(path);
        assert_eq!(response.status, status, "{path}: {}", response.body);
        assert!(response.body.contains(needle), "{path}: {}", response.body);
    }
    // The server still answers after all that.
    assert_eq!(server.json("/api/runs").as_array().unwrap().len(), 2);
}

#[test]
fn a_hostile_run_name_shows_as_text_everywhere() {
    let (_dir, db) = seeded();
    let server = Server::start(&db);
    for path in ["/", "/runs/1", "/trials/1", "/trials/42"] {
        let body = server.text(path);
        assert!(!body.contains(HOSTILE_NAME), "{path} holds the name unescaped");
        assert!(!body.contains("<b>NaN</b>"), "{path} holds an error message unescaped");
        if path != "/trials/42" {
            assert!(body.contains("&lt;script&gt;alert(1)&lt;/script&gt;"), "{path} does not show the name");
        }
    }
    assert!(server.text("/trials/42").contains("loss &lt;b&gt;NaN&lt;/b&gt;"), "the failure message as text");
}

#[test]
fn the_page_sorts_and_pages_on_the_server() {
    let (_dir, db) = seeded();
    let server = Server::start(&db);
    let body = server.text("/runs/1?sort=accuracy&order=desc&per_page=5");
    let ids: Vec<i64> = body
        .split("<tr data-trial=\"")
        .skip(1)
        .map(|rest| rest.split('"').next().unwrap().parse().unwrap())
        .collect();
    // Accuracy 0.5 + (i % 40) / 100 for trial i + 1: the best five are trials 40, 39, …, 36.
    assert_eq!(ids, [40, 39, 38, 37, 36]);
    assert!(body.contains("1–5 of <span data-count=\"matching\">48</span>"), "the pager counts every trial");
    assert!(body.contains("page 1 of 10"));
}

#[test]
fn the_event_stream_sends_a_change_when_the_database_changes() {
    let (_dir, db) = seeded();
    let server = Server::start(&db);
    let mut events = Events::open(server.port);
    let first = events.next_change();
    block_on(async {
        let store = Store::open(&db).await.unwrap();
        store.insert_trial(effnas_store::RunId(2), &dashboard::trial(500)).await.unwrap();
        store.close().await;
    });
    let second = events.next_change();
    assert_ne!(first, second);
    assert_eq!(
        server.json("/api/runs/2")["trials_total"],
        7,
        "a page fetched after the event sees the trial"
    );
}

/// Waits (up to a minute, polling) until `/api/status` counts `want` open event streams.
fn wait_for_streams(server: &Server, want: u64) {
    let deadline = std::time::Instant::now() + Duration::from_secs(60);
    loop {
        let open = server.json("/api/status")["open_streams"].as_u64().unwrap();
        if open == want {
            return;
        }
        assert!(std::time::Instant::now() < deadline, "{open} open event streams, not {want}");
        std::thread::sleep(Duration::from_millis(20));
    }
}

#[test]
fn open_event_streams_are_counted_until_their_client_goes() {
    let (_dir, db) = seeded();
    let server = Server::start(&db);
    let status = server.json("/api/status");
    assert_eq!((status["open_streams"].as_u64(), status["read_only"].as_bool()), (Some(0), Some(true)));
    assert_eq!(status["backend"], "sqlite");
    let mut first = Events::open(server.port);
    let mut second = Events::open(server.port);
    first.next_change();
    second.next_change();
    wait_for_streams(&server, 2);
    drop(first);
    wait_for_streams(&server, 1);
    drop(second);
    wait_for_streams(&server, 0);
}

#[test]
fn serving_leaves_the_database_file_as_it_was() {
    let (_dir, db) = seeded();
    settle(&db);
    let before = std::fs::read(&db).unwrap();
    {
        let server = Server::start(&db);
        for _ in 0..10 {
            for path in [
                "/",
                "/runs/1",
                "/runs/2?sort=reward",
                "/trials/3",
                "/api/runs/1/chart",
                "/api/runs/1/trials.csv",
                "/api/token",
            ] {
                server.text(path);
            }
        }
    }
    assert!(std::fs::read(&db).unwrap() == before, "the database file changed");
}

#[test]
fn a_writer_never_meets_a_lock_while_pages_are_served() {
    let (_dir, db) = seeded();
    let server = Server::start(&db);
    let stop = std::sync::Arc::new(std::sync::atomic::AtomicBool::new(false));
    let readers: Vec<_> = (0..2)
        .map(|_| {
            let (port, stop) = (server.port, stop.clone());
            std::thread::spawn(move || {
                let mut served = 0;
                while !stop.load(std::sync::atomic::Ordering::Relaxed) {
                    for path in ["/", "/runs/1?sort=accuracy", "/api/runs/1/chart", "/api/runs/1/trials.json"]
                    {
                        assert_eq!(dashboard::get(port, path).status, 200, "{path}");
                        served += 1;
                    }
                }
                served
            })
        })
        .collect();
    // A writer with a short busy timeout: any lock a reader held would fail its writes.
    let written = block_on(async {
        let options = OpenOptions { busy_timeout: Duration::from_millis(50), ..OpenOptions::default() };
        let store = Store::open_with(&db, &options).await.unwrap();
        let run = effnas_store::RunId(2);
        for i in 0..150 {
            let id = store
                .insert_trial(run, &dashboard::trial(1000 + i))
                .await
                .unwrap_or_else(|e| panic!("insert {i}: {e}"));
            store.claim_trial(run, "writer").await.unwrap_or_else(|e| panic!("claim {i}: {e}"));
            store
                .complete_trial(id, &dashboard::metrics(i))
                .await
                .unwrap_or_else(|e| panic!("complete {i}: {e}"));
        }
        store.close().await;
        150
    });
    stop.store(true, std::sync::atomic::Ordering::Relaxed);
    let served: usize = readers.into_iter().map(|r| r.join().unwrap()).sum();
    assert!(served > 0);
    assert_eq!(server.json("/api/runs/2")["trials_done"], 5 + written);
}

#[test]
fn a_missing_database_is_an_error_and_no_file_is_made() {
    let dir = tempfile::tempdir().unwrap();
    let path = dir.path().join("typo.db");
    let path_text = path.display().to_string();
    common::fails_naming(&["serve", "--db", &path_text, "--bind", "127.0.0.1:0"], "typo.db");
    assert!(!path.exists(), "effnas serve created the database");
    common::fails_naming(&["serve", "--db", ":memory:", "--bind", "127.0.0.1:0"], "in-memory");
}

#[test]
fn serve_listens_on_the_loopback_address_by_default() {
    let help = common::stdout_of(&["serve", "--help"]);
    assert!(help.contains("[default: 127.0.0.1:8080]"), "{help}");
}

/// The same pages over PostgreSQL, with sessions that refuse writes.
#[test]
fn postgres_runs_are_served_and_update_live() {
    let pg = PgDb::new();
    block_on(async {
        let store = Store::open(&pg.url).await.unwrap();
        seed(&store, &Seed { name: HOSTILE_NAME, complete: 12, failed: 1, pending: 2 }).await;
        store.close().await;
    });
    let server = Server::start(&pg.url);
    let runs = server.json("/api/runs");
    assert_eq!(runs[0]["trials_done"], 12);
    let page = server.json("/api/runs/1/trials?sort=accuracy&order=desc&per_page=3");
    let ids: Vec<i64> =
        page["trials"].as_array().unwrap().iter().map(|t| t["id"].as_i64().unwrap()).collect();
    assert_eq!(ids, [12, 11, 10]);
    assert!(server.text("/").contains("&lt;script&gt;alert(1)&lt;/script&gt;"));
    assert_eq!(server.get("/runs/1").status, 200);
    assert_eq!(server.get("/trials/13").status, 200);
    let claimed = server.json("/api/trials/14");
    assert_eq!(
        claimed["attempt_history"][0]["outcome"], "running",
        "the trigger recorded the claim: {claimed}"
    );
    let mut events = Events::open(server.port);
    let first = events.next_change();
    block_on(async {
        let store = Store::open(&pg.url).await.unwrap();
        store.insert_trial(effnas_store::RunId(1), &dashboard::trial(700)).await.unwrap();
        store.close().await;
    });
    assert_ne!(events.next_change(), first);
    assert_eq!(server.json("/api/runs/1")["trials_total"], 17);
}

/// A database of its own on the server of `EFFNAS_TEST_POSTGRES`, dropped at the end.
struct PgDb {
    name: String,
    url: String,
}

impl PgDb {
    fn new() -> PgDb {
        let server = match std::env::var("EFFNAS_TEST_POSTGRES") {
            Ok(url) if !url.trim().is_empty() => url,
            _ => panic!(
                "EFFNAS_TEST_POSTGRES is not set: start a throwaway server with \
                 `export EFFNAS_TEST_POSTGRES=$(scripts/postgres | tail -n 1)` (scripts/test does this by itself)"
            ),
        };
        let name = format!("effnas_serve_{}", std::process::id());
        admin(&server, &format!("DROP DATABASE IF EXISTS {name} WITH (FORCE)"));
        admin(&server, &format!("CREATE DATABASE {name}"));
        let (scheme, rest) = server.split_once("://").unwrap();
        let (authority, query) = match rest.split_once('?') {
            Some((path, query)) => (path.split('/').next().unwrap_or(path), format!("?{query}")),
            None => (rest.split('/').next().unwrap_or(rest), String::new()),
        };
        PgDb { url: format!("{scheme}://{authority}/{name}{query}"), name }
    }
}

impl Drop for PgDb {
    fn drop(&mut self) {
        if let Ok(server) = std::env::var("EFFNAS_TEST_POSTGRES") {
            admin(&server, &format!("DROP DATABASE IF EXISTS {} WITH (FORCE)", self.name));
        }
    }
}

fn admin(server: &str, sql: &str) {
    use sqlx::Connection;
    block_on(async {
        let mut conn = sqlx::PgConnection::connect(server).await?;
        sqlx::raw_sql(sql).execute(&mut conn).await?;
        conn.close().await
    })
    .unwrap_or_else(|e| panic!("{sql}: {e}"));
}

/// The figure in docs/BENCHMARKS.md: how long the pages and JSON of a run with 10,000 trials
/// take to serve (`scripts/bench-serve` runs this and keeps its output).
#[test]
#[ignore = "a measurement, not a check: run by scripts/bench-serve"]
fn ten_thousand_trials_serve_in_time() {
    let dir = tempfile::tempdir().unwrap();
    let db = dir.path().join("effnas.db").display().to_string();
    block_on(async {
        let store = Store::open(&db).await.unwrap();
        seed(&store, &Seed { name: "ten-thousand", complete: 9_900, failed: 50, pending: 49 }).await;
        store.close().await;
    });
    let server = Server::start(&db);
    println!("{:<52} {:>9} {:>9} {:>9} {:>10}", "request", "min ms", "median ms", "max ms", "bytes");
    for path in [
        "/",
        "/api/runs",
        "/runs/1",
        "/runs/1?sort=reward&order=desc&page=100",
        "/api/runs/1/trials?sort=accuracy&order=desc&per_page=50",
        "/api/runs/1/chart",
        "/api/runs/1/trials.csv",
        "/trials/5000",
        "/api/token",
    ] {
        let mut times = Vec::new();
        let mut bytes = 0;
        for _ in 0..7 {
            let started = std::time::Instant::now();
            let response = server.get(path);
            times.push(started.elapsed().as_secs_f64() * 1000.0);
            assert_eq!(response.status, 200, "{path}");
            bytes = response.body.len();
        }
        times.sort_by(f64::total_cmp);
        println!("{path:<52} {:>9.1} {:>9.1} {:>9.1} {bytes:>10}", times[0], times[3], times[6]);
    }
}
