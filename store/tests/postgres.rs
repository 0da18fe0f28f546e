//! What only PostgreSQL has: its own migrations, which must build the same schema as SQLite's;
//! a server that can be away; passwords in URLs. (The store's behaviour is tested on both
//! backends by the other files' `on_both_backends!` tests.) Each test makes a database of its own
//! on the server of `EFFNAS_TEST_POSTGRES`.
#![allow(clippy::unwrap_used)]

#[macro_use]
mod common;

use std::collections::BTreeMap;

use common::{search_run, trial, TempDb};
use effnas_store::{latest_version, latest_versions, Backend, Store, StoreError};
use sqlx::Connection;

/// Every table's columns as (name, affinity, not null), in name order: what both schemas must
/// agree on.
type Columns = BTreeMap<String, Vec<(String, &'static str, bool)>>;

/// The affinity a declared type has (INTEGER and BIGINT are both 64-bit integers, REAL and
/// DOUBLE PRECISION both 8-byte floats, BLOB and BYTEA both bytes).
fn affinity(declared: &str) -> &'static str {
    let declared = declared.to_ascii_lowercase();
    if declared.contains("int") {
        "integer"
    } else if declared.contains("real") || declared.contains("double") {
        "float"
    } else if declared.contains("blob") || declared.contains("bytea") {
        "bytes"
    } else if declared.contains("text") {
        "text"
    } else {
        "other"
    }
}

async fn sqlite_columns(db: &TempDb) -> Columns {
    db.open().await.close().await;
    let mut conn = db.raw().await;
    let tables: Vec<String> = sqlx::query_scalar(
        "SELECT name FROM sqlite_master WHERE type = 'table' AND name NOT LIKE 'sqlite%' AND name <> '_sqlx_migrations'",
    )
    .fetch_all(&mut conn)
    .await
    .unwrap();
    let mut columns = Columns::new();
    for table in tables {
        let rows: Vec<(String, String, bool, i64)> =
            sqlx::query_as("SELECT name, type, \"notnull\", pk FROM pragma_table_info($1)")
                .bind(&table)
                .fetch_all(&mut conn)
                .await
                .unwrap();
        let mut list: Vec<_> = rows
            .into_iter()
            // SQLite lets an INTEGER PRIMARY KEY be NULL on paper (it is the rowid).
            .map(|(name, declared, not_null, pk)| (name, affinity(&declared), not_null || pk > 0))
            .collect();
        list.sort();
        columns.insert(table, list);
    }
    columns
}

async fn postgres_columns(db: &TempDb) -> Columns {
    db.open().await.close().await;
    let mut conn = sqlx::PgConnection::connect(&db.url()).await.unwrap();
    let rows: Vec<(String, String, String, String)> = sqlx::query_as(
        "SELECT table_name::text, column_name::text, data_type::text, is_nullable::text
         FROM information_schema.columns
         WHERE table_schema = current_schema() AND table_name <> '_sqlx_migrations'",
    )
    .fetch_all(&mut conn)
    .await
    .unwrap();
    let mut columns = Columns::new();
    for (table, name, declared, nullable) in rows {
        columns.entry(table).or_default().push((name, affinity(&declared), nullable == "NO"));
    }
    columns.values_mut().for_each(|list| list.sort());
    columns
}

/// The two migration folders build the same tables with the same columns, types and NOT NULLs,
/// and reach the same version: a migration added to one folder and not the other fails here.
#[tokio::test]
async fn both_migration_folders_build_the_same_schema_at_the_same_version() {
    let [(Backend::Sqlite, sqlite), (Backend::Postgres, postgres)] = latest_versions() else {
        panic!("latest_versions lists SQLite then PostgreSQL")
    };
    assert_eq!(sqlite, postgres, "the latest migration of each backend");
    assert_eq!(latest_version(), sqlite);

    let (file, server) = (TempDb::new(), TempDb::postgres().await);
    let (expected, got) = (sqlite_columns(&file).await, postgres_columns(&server).await);
    assert!(expected.len() >= 6, "{expected:?}");
    assert_eq!(got, expected);
    let store = server.open().await;
    assert_eq!(store.schema_version().await.unwrap(), latest_version());
    assert_eq!(store.backend(), Backend::Postgres);
}

#[tokio::test]
async fn a_postgres_database_from_a_newer_effnas_is_refused() {
    let db = TempDb::postgres().await;
    db.open().await.close().await;
    let mut conn = sqlx::PgConnection::connect(&db.url()).await.unwrap();
    sqlx::query("INSERT INTO _sqlx_migrations (version, description, success, checksum, execution_time) VALUES (29991231000000, 'from the future', TRUE, '\\x00', 0)")
        .execute(&mut conn)
        .await
        .unwrap();
    conn.close().await.unwrap();
    for result in [Store::open(&db.url()).await, Store::open_existing(&db.url()).await] {
        match result {
            Err(e @ StoreError::NewerSchema { found: 29991231000000, .. }) => {
                assert!(e.to_string().contains("newer"), "{e}")
            }
            other => panic!("expected NewerSchema, got {other:?}"),
        }
    }
}

#[tokio::test]
async fn another_programs_postgres_database_is_refused_and_left_alone() {
    let db = TempDb::postgres().await;
    let mut conn = sqlx::PgConnection::connect(&db.url()).await.unwrap();
    sqlx::query("CREATE TABLE users (name TEXT)").execute(&mut conn).await.unwrap();
    let error = Store::open(&db.url()).await.unwrap_err();
    assert!(
        error.to_string().contains("not an effnas database") && error.to_string().contains("users"),
        "{error}"
    );
    let tables: Vec<String> = sqlx::query_scalar(
        "SELECT tablename::text FROM pg_catalog.pg_tables WHERE schemaname = current_schema()",
    )
    .fetch_all(&mut conn)
    .await
    .unwrap();
    assert_eq!(tables, vec!["users".to_owned()]);
}

/// A server that does not answer is `Unreachable` (which the retry waits out), a wrong password
/// or database is a plain `Open` error; no message shows the password.
#[tokio::test]
async fn an_unreachable_server_and_a_wrong_password_are_typed_errors_without_the_password() {
    // A port nothing listens on: bind one, then let it go.
    let port = std::net::TcpListener::bind("127.0.0.1:0").unwrap().local_addr().unwrap().port();
    let url = format!("postgres://effnas:hunter2@127.0.0.1:{port}/effnas");
    match Store::open(&url).await {
        Err(e @ StoreError::Unreachable { .. }) => {
            let text = e.to_string();
            assert!(!text.contains("hunter2") && text.contains("effnas:***@127.0.0.1"), "{text}");
            assert!(e.is_transient());
        }
        other => panic!("expected Unreachable, got {other:?}"),
    }

    let server = common::postgres_server();
    let wrong = match server.split_once('@') {
        Some((userinfo, rest)) => {
            let user = userinfo.rsplit_once(':').map_or(userinfo, |(user, _)| user);
            format!("{user}:not-the-password@{rest}")
        }
        None => panic!("{} names no user", common::POSTGRES_ENV),
    };
    match Store::open(&wrong).await {
        Err(e @ StoreError::Open { .. }) => {
            let text = e.to_string();
            assert!(!text.contains("not-the-password") && text.contains("password"), "{text}");
            assert!(!e.is_transient());
        }
        other => panic!("expected Open, got {other:?}"),
    }

    let missing = common::with_database(&server, "effnas_no_such_database");
    match Store::open(&missing).await {
        Err(e @ StoreError::Open { .. }) => assert!(e.to_string().contains("does not exist"), "{e}"),
        other => panic!("expected Open, got {other:?}"),
    }
}

/// The store keeps the URL it was given (a worker opens it) but shows it without the password.
#[tokio::test]
async fn the_location_hides_the_password_and_the_target_keeps_it() {
    let db = TempDb::postgres().await;
    let store = db.open().await;
    assert_eq!(store.target(), db.url());
    assert!(!store.location().contains(&password_of(&db.url())), "{}", store.location());
    assert_eq!(Store::backend_of(&db.url()).unwrap(), Backend::Postgres);
    assert_eq!(Store::backend_of("runs.db").unwrap(), Backend::Sqlite);
    assert_eq!(Store::path_of(&db.url()), None, "a URL names no file");
    let run = search_run(&store, "shown").await;
    store.insert_trial(run, &trial(1)).await.unwrap();
    assert_eq!(store.integrity_check().await.unwrap(), vec!["ok".to_owned()]);
}

fn password_of(url: &str) -> String {
    let userinfo = url.split_once("://").unwrap().1.split_once('@').unwrap().0;
    userinfo.split_once(':').map(|(_, p)| p.to_owned()).unwrap_or_default()
}

/// A claim skips the rows other transactions hold locked (`FOR UPDATE SKIP LOCKED`) instead of
/// waiting for them: with the oldest pending trial locked by another client, a claim gets the
/// next one, and the locked one is still there to claim once it is let go.
#[tokio::test]
async fn a_claim_skips_a_trial_another_transaction_holds_locked() {
    let db = TempDb::postgres().await;
    let store = db.open().await;
    let run = search_run(&store, "skip").await;
    let ids = store.insert_trials(run, &[trial(1), trial(2)]).await.unwrap();
    let mut other = sqlx::PgConnection::connect(&db.url()).await.unwrap();
    let mut locked = other.begin().await.unwrap();
    sqlx::query("SELECT id FROM trials WHERE id = $1 FOR UPDATE")
        .bind(ids[0].0)
        .execute(&mut *locked)
        .await
        .unwrap();
    // Bounded so that a claim that waits on the lock fails the test rather than hanging it.
    let lease = std::time::Duration::from_secs(60);
    let claimed =
        tokio::time::timeout(std::time::Duration::from_secs(60), store.claim_next(Some(run), "w", lease))
            .await
            .expect("the claim waited on the locked row")
            .unwrap()
            .expect("the next trial");
    assert_eq!(claimed.id, ids[1]);
    locked.rollback().await.unwrap();
    let next = store.claim_next(Some(run), "w", lease).await.unwrap().expect("the first trial, now free");
    assert_eq!(next.id, ids[0]);
}
