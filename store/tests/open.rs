//! Opening databases: schema upgrades, and clear errors for every wrong file.
#![allow(clippy::unwrap_used)]

mod common;

use std::time::Duration;

use common::{search_run, trial, TempDb};
use effnas_store::{
    latest_version, FailureKind, OpenOptions, RunId, Store, StoreError, TrialFilter, TrialId, TrialState,
};
use sqlx::Connection;

/// The first migration's version: the schema before the search-state tables.
const SCHEMA_1: i64 = 20251125000001;
/// The schema before failure kinds and the reward's single basis.
const SCHEMA_2: i64 = 20251125000002;
/// The schema before fidelity runs and per-trial settings (whose migration rebuilds `runs`).
const SCHEMA_5: i64 = 20261127000005;
/// The schema before the history of attempts (`trial_attempts`).
const SCHEMA_6: i64 = 20261127000006;

#[tokio::test]
async fn an_empty_file_and_a_missing_file_become_current_databases() {
    let db = TempDb::new();
    let store = db.open().await;
    assert_eq!(store.schema_version().await.unwrap(), latest_version());
    store.close().await;

    let empty = TempDb::new();
    std::fs::write(&empty.path, b"").unwrap();
    let store = empty.open().await;
    assert_eq!(store.schema_version().await.unwrap(), latest_version());
    // Opening again is a no-op.
    drop(store);
    assert_eq!(empty.open().await.schema_version().await.unwrap(), latest_version());
}

#[tokio::test]
async fn a_populated_schema_1_database_migrates_forward_keeping_its_rows() {
    let db = TempDb::new();
    let old = Store::open_at_schema_version(&db.url(), SCHEMA_1).await.unwrap();
    assert_eq!(old.schema_version().await.unwrap(), SCHEMA_1);
    old.close().await;
    // Rows written as a schema-1 build wrote them.
    let mut conn = db.raw().await;
    let arch = serde_json::to_string(&common::arch(1)).unwrap();
    sqlx::query("INSERT INTO runs (id, name, kind, status, config, seed, code_version, created_at) VALUES (1, 'old', 'search', 'complete', '{}', 3, '0.0.1', '2025-01-01T00:00:00.000Z')")
        .execute(&mut conn)
        .await
        .unwrap();
    for (id, state, accuracy) in [(1, "complete", Some(0.81)), (2, "failed", None), (3, "pending", None)] {
        sqlx::query(
            "INSERT INTO trials (id, run_id, arch, arch_hash, blocks, resolution, proxy_key, state, created_at, params, flops, accuracy, reward)
             VALUES ($1, 1, $2, 'abc', 'r1_k3_s11_e1_i32_o16', 32, 'p', $3, '2025-01-01T00:00:01.000Z', 10, 20, $4, $4)",
        )
        .bind(id)
        .bind(&arch)
        .bind(state)
        .bind(accuracy)
        .execute(&mut conn)
        .await
        .unwrap();
    }
    sqlx::query("INSERT INTO trial_epochs (trial_id, epoch, val_accuracy) VALUES (1, 0, 0.5)")
        .execute(&mut conn)
        .await
        .unwrap();
    conn.close().await.unwrap();

    let store = db.open().await;
    assert_eq!(store.schema_version().await.unwrap(), latest_version());
    let run = store.find_run("old").await.unwrap();
    assert_eq!(
        (run.trials_total, run.trials_done, run.trials_failed, run.best_reward, run.seed),
        (3, 1, 1, Some(0.81), Some(3))
    );
    let trials = store.trials(run.id, &TrialFilter::default()).await.unwrap();
    assert_eq!(
        trials.iter().map(|t| t.state).collect::<Vec<_>>(),
        vec![TrialState::Complete, TrialState::Failed, TrialState::Pending]
    );
    assert_eq!((trials[0].step, trials[0].extra.as_ref(), trials[0].reused_from), (None, None, None));
    assert_eq!(store.epochs(trials[0].id).await.unwrap().len(), 1);
    // The new tables work, and the old pending trial can be claimed.
    store.save_checkpoint(run.id, 1, &serde_json::json!({}), None).await.unwrap();
    assert_eq!(store.claim_trial(run.id, "w").await.unwrap().unwrap().id, trials[2].id);
    store.insert_trial(run.id, &trial(9).at_step(4)).await.unwrap();
}

/// A trial row as a schema-2 build wrote it.
#[derive(Default)]
struct OldTrial {
    id: i64,
    run: i64,
    state: &'static str,
    error: Option<String>,
    reward: Option<f64>,
    extra: Option<&'static str>,
    reused_from: Option<i64>,
}

impl OldTrial {
    fn failed(id: i64, error: Option<&str>) -> Self {
        OldTrial { id, run: 1, state: "failed", error: error.map(str::to_owned), ..OldTrial::default() }
    }

    fn complete(id: i64, run: i64, reward: Option<f64>) -> Self {
        OldTrial { id, run, state: "complete", reward, ..OldTrial::default() }
    }

    async fn insert(&self, conn: &mut sqlx::SqliteConnection) {
        let arch = serde_json::to_string(&common::arch(self.id as usize)).unwrap();
        sqlx::query(
            "INSERT INTO trials (id, run_id, arch, arch_hash, blocks, resolution, proxy_key, state, created_at,
                                 params, flops, accuracy, reward, error, extra, reused_from)
             VALUES ($1, $2, $3, 'abc', 'r1_k3_s11_e1_i32_o16', 32, 'p', $4, '2025-06-01T00:00:00.000Z',
                     10, 20, $5, $6, $7, $8, $9)",
        )
        .bind(self.id)
        .bind(self.run)
        .bind(arch)
        .bind(self.state)
        .bind(self.reward.map(|r| r.min(1.0)))
        .bind(self.reward)
        .bind(&self.error)
        .bind(self.extra)
        .bind(self.reused_from)
        .execute(conn)
        .await
        .unwrap();
    }
}

/// Failed trials with each message a schema-2 build wrote, and the kind the upgrade gives them.
fn old_failures() -> Vec<(OldTrial, Option<FailureKind>)> {
    use FailureKind::*;
    let messages: [(Option<&str>, FailureKind); 12] = [
        (Some("loss is NaN at step 12 (epoch 1)"), Diverged),
        (Some("mean loss of epoch 2 is inf"), Diverged),
        (Some("libtorch: CUDA out of memory. Tried to allocate 2.00 GiB"), OutOfMemory),
        (Some("DefaultCPUAllocator: not enough memory: you tried to allocate 8 GB"), OutOfMemory),
        (Some("[enforce fail at alloc_cpu.cpp:117] DefaultCPUAllocator: can't allocate memory"), OutOfMemory),
        (Some("time limit of 30 s exceeded after 7 steps"), TimeLimit),
        (Some("rejected before training: 500000000 multiply-adds over --max-flops 400000000"), Rejected),
        (Some("not a member of the run's space: block 3 has kernel 7"), Invalid),
        (Some("stored architecture is invalid: missing field `stem`"), Invalid),
        (Some("its worker stopped sending heartbeats on each of 3 attempts"), Lost),
        (Some("panic: index out of bounds"), Error),
        (None, Error),
    ];
    let mut trials: Vec<(OldTrial, Option<FailureKind>)> =
        (1..).zip(messages).map(|(id, (error, kind))| (OldTrial::failed(id, error), Some(kind))).collect();
    // Failed without training because an identical trial failed: that trial's kind, whatever
    // the rest of the message says, or `error` when the trial it names is gone.
    trials.push((
        OldTrial::failed(13, Some("same architecture as failed trial 6: time limit of 30 s")),
        Some(TimeLimit),
    ));
    trials.push((OldTrial::failed(14, Some("same architecture as failed trial 3: boom")), Some(OutOfMemory)));
    trials.push((
        OldTrial::failed(15, Some("same architecture as failed trial 999: out of memory")),
        Some(Error),
    ));
    trials.push((OldTrial::complete(16, 1, Some(0.8)), None));
    trials.push((OldTrial { id: 17, run: 1, state: "pending", ..OldTrial::default() }, None));
    trials
}

/// A search run (1) with failures of every form, a manual run (2) whose rewards were computed
/// on the proxy network, and a search run (3) that reused the manual measurements.
async fn populate_schema_2(db: &TempDb) -> Vec<(OldTrial, Option<FailureKind>)> {
    let mut conn = db.raw().await;
    for (id, kind) in [(1, "search"), (2, "manual"), (3, "search")] {
        sqlx::query("INSERT INTO runs (id, name, kind, status, config, code_version, created_at) VALUES ($1, $2, $3, 'complete', '{}', '0.1.0', '2025-06-01T00:00:00.000Z')")
            .bind(id)
            .bind(format!("run-{id}"))
            .bind(kind)
            .execute(&mut conn)
            .await
            .unwrap();
    }
    let failures = old_failures();
    let manual = [
        OldTrial::complete(20, 2, Some(1.34)),
        OldTrial { extra: Some(r#"{"device":"cpu"}"#), ..OldTrial::complete(21, 2, Some(1.2)) },
        OldTrial::complete(22, 2, None),
        OldTrial { reused_from: Some(20), ..OldTrial::complete(30, 3, Some(1.34)) },
        OldTrial { reused_from: Some(30), ..OldTrial::complete(31, 3, Some(1.34)) },
        OldTrial::complete(32, 3, Some(0.5)),
    ];
    for trial in failures.iter().map(|(t, _)| t).chain(&manual) {
        trial.insert(&mut conn).await;
    }
    conn.close().await.unwrap();
    failures
}

#[tokio::test]
async fn a_schema_2_database_gets_failure_kinds_from_its_messages() {
    let db = TempDb::new();
    Store::open_at_schema_version(&db.url(), SCHEMA_2).await.unwrap().close().await;
    let failures = populate_schema_2(&db).await;
    let store = db.open().await;
    assert_eq!(store.schema_version().await.unwrap(), latest_version());
    for (old, kind) in &failures {
        let trial = store.trial(TrialId(old.id)).await.unwrap();
        assert_eq!(trial.failure, *kind, "trial {}: {:?}", old.id, old.error);
        assert_eq!(trial.error, old.error, "the message is kept");
    }
    let counted: Vec<(Option<String>, i64)> = sqlx::query_as(
        "SELECT failure, count(*) FROM trials WHERE run_id = 1 GROUP BY failure ORDER BY failure",
    )
    .fetch_all(&mut db.raw().await)
    .await
    .unwrap();
    let expected =
        [(None, 2), (Some("diverged"), 2), (Some("error"), 3), (Some("invalid"), 2), (Some("lost"), 1)]
            .into_iter()
            .chain([(Some("out_of_memory"), 4), (Some("rejected"), 1), (Some("time_limit"), 2)])
            .map(|(kind, n)| (kind.map(str::to_owned), n))
            .collect::<Vec<_>>();
    assert_eq!(counted, expected);
    let lost = TrialFilter { failure: Some(FailureKind::Lost), ..TrialFilter::default() };
    assert_eq!(
        store.trials(RunId(1), &lost).await.unwrap().iter().map(|t| t.id).collect::<Vec<_>>(),
        [TrialId(10)]
    );
}

#[tokio::test]
async fn a_schema_2_database_sets_aside_rewards_computed_on_the_proxy_network() {
    let db = TempDb::new();
    Store::open_at_schema_version(&db.url(), SCHEMA_2).await.unwrap().close().await;
    populate_schema_2(&db).await;
    let store = db.open().await;
    let note = "computed on the proxy network before schema 3; not comparable with search rewards";
    for (id, proxy_reward, extra) in [
        (20, 1.34, serde_json::json!({})),
        (21, 1.2, serde_json::json!({"device": "cpu"})),
        (30, 1.34, serde_json::json!({})),
        (31, 1.34, serde_json::json!({})),
    ] {
        let trial = store.trial(TrialId(id)).await.unwrap();
        let mut expected = extra;
        expected["proxy_reward"] = proxy_reward.into();
        expected["reward_note"] = note.into();
        assert_eq!((trial.reward, trial.extra), (None, Some(expected)), "trial {id}");
        assert_eq!(trial.accuracy, Some(1.0), "trial {id}: the measurement is kept");
    }
    let untouched = store.trial(TrialId(22)).await.unwrap();
    assert_eq!((untouched.reward, untouched.extra), (None, None));
    let searched = store.trial(TrialId(32)).await.unwrap();
    assert_eq!((searched.reward, searched.extra), (Some(0.5), None));
    let best: Vec<Option<f64>> = store.runs().await.unwrap().iter().map(|r| r.best_reward).collect();
    assert_eq!(best, [Some(0.8), None, Some(0.5)], "best rewards follow the trials");
}

#[tokio::test]
async fn the_failure_column_is_checked_and_an_unknown_kind_is_a_typed_error() {
    let db = TempDb::new();
    let store = db.open().await;
    let run = search_run(&store, "checked").await;
    let id = store.insert_trial(run, &trial(1)).await.unwrap();
    let mut conn = db.raw().await;
    for (state, failure) in [("pending", "diverged"), ("complete", "error"), ("failed", "melted")] {
        let result = sqlx::query("UPDATE trials SET state = $1, failure = $2 WHERE id = $3")
            .bind(state)
            .bind(failure)
            .bind(id.0)
            .execute(&mut conn)
            .await;
        assert!(result.is_err(), "{state} with failure {failure} must be refused");
    }
    // A row edited past the check (or by a future effnas) reads as an error, not a panic.
    sqlx::query("PRAGMA ignore_check_constraints = ON").execute(&mut conn).await.unwrap();
    sqlx::query("UPDATE trials SET state = 'failed', failure = 'melted' WHERE id = $1")
        .bind(id.0)
        .execute(&mut conn)
        .await
        .unwrap();
    match store.trial(id).await {
        Err(e @ StoreError::Corrupt { .. }) => assert!(e.to_string().contains("failure of trial"), "{e}"),
        other => panic!("expected Corrupt, got {other:?}"),
    }
}

#[tokio::test]
async fn a_file_that_is_not_a_database_is_named_in_the_error() {
    let db = TempDb::new();
    std::fs::write(&db.path, "epoch,accuracy\n1,0.5\n").unwrap();
    for result in [Store::open(&db.url()).await, Store::open_existing(&db.url()).await] {
        match result {
            Err(e @ StoreError::NotADatabase { .. }) => assert!(e.to_string().contains(&db.url()), "{e}"),
            other => panic!("expected NotADatabase, got {other:?}"),
        }
    }
    assert_eq!(
        std::fs::read_to_string(&db.path).unwrap(),
        "epoch,accuracy\n1,0.5\n",
        "the file is untouched"
    );
}

#[tokio::test]
async fn another_programs_sqlite_database_is_refused_and_left_alone() {
    let db = TempDb::new();
    let mut conn = sqlx::SqliteConnection::connect(&format!("sqlite://{}?mode=rwc", db.url())).await.unwrap();
    sqlx::query("CREATE TABLE users (name TEXT)").execute(&mut conn).await.unwrap();
    conn.close().await.unwrap();
    let error = Store::open(&db.url()).await.unwrap_err();
    assert!(
        error.to_string().contains("not an effnas database") && error.to_string().contains("users"),
        "{error}"
    );
    let mut conn = db.raw().await;
    let tables: Vec<String> = sqlx::query_scalar("SELECT name FROM sqlite_master WHERE type = 'table'")
        .fetch_all(&mut conn)
        .await
        .unwrap();
    assert_eq!(tables, vec!["users".to_owned()]);
}

#[tokio::test]
async fn a_database_from_a_newer_effnas_is_refused() {
    let db = TempDb::new();
    db.open().await.close().await;
    let mut conn = db.raw().await;
    sqlx::query("INSERT INTO _sqlx_migrations (version, description, success, checksum, execution_time) VALUES (29991231000000, 'from the future', TRUE, x'00', 0)")
        .execute(&mut conn)
        .await
        .unwrap();
    conn.close().await.unwrap();
    for result in [Store::open(&db.url()).await, Store::open_existing(&db.url()).await] {
        match result {
            Err(e @ StoreError::NewerSchema { found: 29991231000000, .. }) => {
                let text = e.to_string();
                assert!(text.contains("newer") && text.contains(&db.url()), "{text}");
            }
            other => panic!("expected NewerSchema, got {other:?}"),
        }
    }
}

#[tokio::test]
async fn missing_files_and_directories_are_clear_errors_and_create_nothing() {
    let db = TempDb::new();
    match Store::open_existing(&db.url()).await {
        Err(e @ StoreError::Missing { .. }) => assert!(e.to_string().contains("no such database"), "{e}"),
        other => panic!("expected Missing, got {other:?}"),
    }
    assert!(!db.path.exists(), "a query never creates a database");

    let nested = db.dir.path().join("no/such/dir/effnas.db");
    let error = Store::open(&nested.display().to_string()).await.unwrap_err();
    assert!(error.to_string().contains("does not exist"), "{error}");

    let error = Store::open(&db.dir.path().display().to_string()).await.unwrap_err();
    assert!(error.to_string().contains("is a directory"), "{error}");

    let file_as_dir = db.dir.path().join("plain.txt");
    std::fs::write(&file_as_dir, "x").unwrap();
    let error = Store::open(&file_as_dir.join("effnas.db").display().to_string()).await.unwrap_err();
    assert!(error.to_string().to_lowercase().contains("not a directory"), "{error}");

    for url in ["mysql://x", "http://localhost/effnas"] {
        assert!(matches!(Store::open(url).await, Err(StoreError::UnsupportedUrl(_))), "{url}");
    }
    // SQLite's own `mode` parameter is understood; `ro` and `rw` never create the file.
    let read_only = format!("sqlite://{}?mode=ro", db.path.display());
    assert!(matches!(Store::open(&read_only).await, Err(StoreError::Missing { .. })), "{read_only}");
    assert!(!db.path.exists(), "mode=ro never creates a database");
    let error = Store::open("sqlite://x.db?cache=shared").await.unwrap_err();
    assert!(error.to_string().contains("only mode=ro, mode=rw or mode=rwc"), "{error}");
}

#[tokio::test]
async fn a_read_only_file_is_refused_for_writing_and_readable_for_queries() {
    let db = TempDb::new();
    {
        let store = db.open().await;
        let run = search_run(&store, "frozen").await;
        store.insert_trial(run, &trial(1)).await.unwrap();
        store.close().await;
    }
    let mut permissions = std::fs::metadata(&db.path).unwrap().permissions();
    permissions.set_readonly(true);
    std::fs::set_permissions(&db.path, permissions.clone()).unwrap();

    match Store::open(&db.url()).await {
        Err(e @ StoreError::ReadOnly { .. }) => assert!(e.to_string().contains(&db.url()), "{e}"),
        other => panic!("expected ReadOnly, got {other:?}"),
    }
    let store = Store::open_existing(&db.url()).await.expect("queries work on a read-only file");
    assert!(store.is_read_only());
    let run = store.find_run("frozen").await.unwrap();
    assert_eq!(run.trials_total, 1);
    assert!(matches!(search_run_result(&store).await, Err(StoreError::ReadOnly { .. })));
    store.close().await;

    #[allow(clippy::permissions_set_readonly_false)]
    permissions.set_readonly(false);
    std::fs::set_permissions(&db.path, permissions).unwrap();
}

async fn search_run_result(store: &Store) -> effnas_store::Result<effnas_store::RunId> {
    store.create_run(&effnas_store::NewRun::new("nope", effnas_store::RunKind::Search)).await
}

#[tokio::test]
async fn a_write_blocked_past_the_busy_timeout_reports_a_locked_database() {
    let db = TempDb::new();
    db.open().await.close().await;
    let mut holder = db.raw().await;
    sqlx::query("BEGIN IMMEDIATE").execute(&mut holder).await.unwrap();

    let options = OpenOptions { busy_timeout: Duration::from_millis(100), ..OpenOptions::default() };
    let store = Store::open_with(&db.url(), &options).await.unwrap();
    match search_run_result(&store).await {
        Err(e @ StoreError::Locked { .. }) => assert!(e.to_string().contains("locked"), "{e}"),
        other => panic!("expected Locked, got {other:?}"),
    }
    sqlx::query("ROLLBACK").execute(&mut holder).await.unwrap();
    search_run_result(&store).await.expect("writes once the lock is gone");
}

/// Every table and column of the schema is documented in SCHEMA.md, under its table.
#[tokio::test]
async fn schema_md_documents_every_table_and_column() {
    let doc = std::fs::read_to_string(concat!(env!("CARGO_MANIFEST_DIR"), "/SCHEMA.md")).unwrap();
    let db = TempDb::new();
    db.open().await.close().await;
    let mut conn = db.raw().await;
    let tables: Vec<String> =
        sqlx::query_scalar("SELECT name FROM sqlite_master WHERE type = 'table' AND name NOT LIKE 'sqlite%' AND name NOT LIKE '\\_sqlx%' ESCAPE '\\' ORDER BY name")
            .fetch_all(&mut conn)
            .await
            .unwrap();
    assert!(tables.len() >= 6, "{tables:?}");
    for table in tables {
        let heading = format!("### `{table}`");
        let start = doc.find(&heading).unwrap_or_else(|| panic!("SCHEMA.md has no section {heading}"));
        let section = &doc[start + heading.len()..];
        let section = &section[..section.find("\n### ").unwrap_or(section.len())];
        let columns: Vec<String> = sqlx::query_scalar("SELECT name FROM pragma_table_info($1)")
            .bind(&table)
            .fetch_all(&mut conn)
            .await
            .unwrap();
        for column in columns {
            assert!(
                section.contains(&format!("| `{column}` |")),
                "SCHEMA.md, table {table}: column {column} is not documented"
            );
        }
    }
}

/// Pending trials (id, run) written with the columns every schema has, as an old build queued
/// them: this build's own insert names columns an older schema lacks.
async fn queue_as_an_old_build(db: &TempDb, trials: &[(i64, RunId)]) {
    let mut conn = db.raw().await;
    let arch = serde_json::to_string(&common::arch(1)).unwrap();
    for &(id, run) in trials {
        sqlx::query(
            "INSERT INTO trials (id, run_id, arch, arch_hash, blocks, resolution, proxy_key, state, created_at, params, flops)
             VALUES ($1, $2, $3, 'abc', 'r1_k3_s11_e1_i32_o16', 32, 'p', 'pending', '2025-01-01T00:00:01.000Z', 10, 20)",
        )
        .bind(id)
        .bind(run.0)
        .bind(&arch)
        .execute(&mut conn)
        .await
        .unwrap();
    }
    conn.close().await.unwrap();
}

#[tokio::test]
async fn schema_6_admits_fidelity_runs_and_keeps_every_row_and_foreign_key() {
    let db = TempDb::new();
    let old = Store::open_at_schema_version(&db.url(), SCHEMA_5).await.unwrap();
    let run = search_run(&old, "before").await;
    let other = search_run(&old, "other").await;
    old.save_checkpoint(run, 1, &serde_json::json!({"step": 1}), None).await.unwrap();
    old.close().await;
    // Trials as a schema-5 build wrote them (no setting, no parent).
    queue_as_an_old_build(&db, &[(1, run), (2, run), (3, other)]).await;

    let store = db.open().await;
    assert_eq!(store.schema_version().await.unwrap(), latest_version());
    let kept = store.find_run("before").await.unwrap();
    assert_eq!((kept.id, kept.trials_total), (run, 2));
    let trials = store.trials(run, &TrialFilter::default()).await.unwrap();
    let first = trials[0].id;
    assert_eq!((first, trials[0].setting, trials[0].parent), (TrialId(1), 0, None));
    assert!(store.latest_checkpoint(run).await.unwrap().is_some());
    // The new kind is accepted; the old CHECK refused it. Other kinds are still refused.
    let fidelity =
        store.create_run(&effnas_store::NewRun::new("f", effnas_store::RunKind::Fidelity)).await.unwrap();
    let child = store.insert_trial(fidelity, &trial(1).under_setting(2).with_parent(first)).await.unwrap();
    let child = store.trial(child).await.unwrap();
    assert_eq!((child.setting, child.parent), (2, Some(first)));
    let claimed = store.claim_trial(fidelity, "w").await.unwrap().unwrap();
    assert_eq!((claimed.id, claimed.setting), (child.id, 2));
    let mut conn = db.raw().await;
    let refused = sqlx::query(
        "INSERT INTO runs (name, kind, status, config, code_version, created_at) VALUES ('x', 'other', 'running', '{}', '0', '2025')",
    )
    .execute(&mut conn)
    .await;
    assert!(refused.is_err(), "the CHECK still refuses unknown kinds");
    // Foreign keys still hold: deleting a run cascades to its trials and clears links into them.
    sqlx::query("PRAGMA foreign_keys = ON").execute(&mut conn).await.unwrap();
    sqlx::query("DELETE FROM runs WHERE id = $1").bind(run.0).execute(&mut conn).await.unwrap();
    let left: i64 = sqlx::query_scalar("SELECT COUNT(*) FROM trials WHERE run_id = $1")
        .bind(run.0)
        .fetch_one(&mut conn)
        .await
        .unwrap();
    assert_eq!(left, 0);
    let integrity: String = sqlx::query_scalar("PRAGMA integrity_check").fetch_one(&mut conn).await.unwrap();
    assert_eq!(integrity, "ok");
    conn.close().await.unwrap();
    assert_eq!(store.trial(child.id).await.unwrap().parent, None);
    assert_eq!(store.trials(other, &TrialFilter::default()).await.unwrap().len(), 1);
}

#[tokio::test]
async fn schema_7_keeps_the_latest_attempt_of_every_trial_that_ran() {
    let db = TempDb::new();
    let old = Store::open_at_schema_version(&db.url(), SCHEMA_6).await.unwrap();
    let run = search_run(&old, "before").await;
    // Queued as a schema-6 build queued them (this build's insert names a schema-8 column).
    queue_as_an_old_build(&db, &[(1, run), (2, run), (3, run)]).await;
    let ids = [TrialId(1), TrialId(2), TrialId(3)];
    let done = old.claim_trial(run, "w1").await.unwrap().unwrap();
    old.complete_trial(done.id, &common::metrics(0.7, 1_000)).await.unwrap();
    old.claim_next(Some(run), "w2", Duration::from_secs(60)).await.unwrap().unwrap();
    old.close().await;

    let store = db.open().await;
    assert_eq!(store.schema_version().await.unwrap(), latest_version());
    let latest = |a: &effnas_store::TrialAttempt| (a.attempt, a.worker.clone(), a.outcome, a.ended.is_some());
    let complete: Vec<_> = store.attempts(ids[0]).await.unwrap().iter().map(latest).collect();
    assert_eq!(complete, [(1, Some("w1".to_owned()), effnas_store::AttemptOutcome::Complete, true)]);
    let running: Vec<_> = store.attempts(ids[1]).await.unwrap().iter().map(latest).collect();
    assert_eq!(running, [(1, Some("w2".to_owned()), effnas_store::AttemptOutcome::Running, false)]);
    assert!(store.attempts(ids[2]).await.unwrap().is_empty(), "never claimed");
}
