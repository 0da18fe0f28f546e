//! Opening databases: schema upgrades, and clear errors for every wrong file.
#![allow(clippy::unwrap_used)]

mod common;

use std::time::Duration;

use common::{search_run, trial, TempDb};
use effnas_store::{latest_version, OpenOptions, Store, StoreError, TrialFilter, TrialState};
use sqlx::Connection;

/// The first migration's version: the schema before the search-state tables.
const SCHEMA_1: i64 = 20251125000001;

async fn raw(db: &TempDb) -> sqlx::SqliteConnection {
    sqlx::SqliteConnection::connect(&format!("sqlite://{}", db.url())).await.expect("raw connection")
}

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
    let mut conn = raw(&db).await;
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
    let mut conn = raw(&db).await;
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
    let mut conn = raw(&db).await;
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

    for url in ["postgres://localhost/effnas", "mysql://x", "sqlite://x.db?mode=ro"] {
        assert!(matches!(Store::open(url).await, Err(StoreError::UnsupportedUrl(_))), "{url}");
    }
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
    let mut holder = raw(&db).await;
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
    let mut conn = raw(&db).await;
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
