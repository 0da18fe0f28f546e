//! Helpers shared by the store tests: a fresh database each (an SQLite file, or a database of
//! its own on the PostgreSQL server of `EFFNAS_TEST_POSTGRES`), sample architectures, metrics.
//!
//! `on_both_backends!` defines a test twice from one body, as `NAME::sqlite` and
//! `NAME::postgres`, so the two backends are held to the same assertions.
#![allow(dead_code, clippy::unwrap_used)]

/// Defines the test `$name` once per backend, in a module of that name: `$name::sqlite` runs the
/// body on a fresh SQLite file, `$name::postgres` on a fresh PostgreSQL database. The body sees
/// its database as `$db` (a [`TempDb`]).
#[allow(unused_macros)]
macro_rules! on_both_backends {
    ($(#[$attr:meta])* fn $name:ident($db:ident) $body:block) => {
        mod $name {
            #[allow(unused_imports)]
            use super::*;

            fn body($db: crate::common::TempDb) $body

            $(#[$attr])*
            fn sqlite() {
                body(crate::common::TempDb::new())
            }

            $(#[$attr])*
            fn postgres() {
                body(crate::common::TempDb::postgres_blocking())
            }
        }
    };
    ($(#[$attr:meta])* async fn $name:ident($db:ident) $body:block) => {
        mod $name {
            #[allow(unused_imports)]
            use super::*;

            async fn body($db: crate::common::TempDb) $body

            $(#[$attr])*
            async fn sqlite() {
                body(crate::common::TempDb::new()).await
            }

            $(#[$attr])*
            async fn postgres() {
                body(crate::common::TempDb::postgres().await).await
            }
        }
    };
}

use std::collections::HashSet;
use std::path::PathBuf;

use effnas_space::{presets, ArchSpec};
use effnas_store::{NewRun, NewTrial, RunKind, Store, TrialId, TrialMetrics};

/// The environment variable naming the PostgreSQL server the tests use (a URL whose user may
/// create databases).
pub const POSTGRES_ENV: &str = "EFFNAS_TEST_POSTGRES";

/// A fresh database, removed when dropped: `effnas.db` in a temporary directory, or (made with
/// [`TempDb::postgres`]) a database of its own on the test server.
pub struct TempDb {
    pub dir: tempfile::TempDir,
    pub path: PathBuf,
    postgres: Option<PgDatabase>,
}

/// A database this test made on the server, dropped with the [`TempDb`].
struct PgDatabase {
    /// `EFFNAS_TEST_POSTGRES`, for the `DROP DATABASE`.
    admin: String,
    name: String,
    url: String,
}

/// `EFFNAS_TEST_POSTGRES`, or a failure that says how to get one: the PostgreSQL tests must
/// run in CI, so a missing server is an error, never a skip.
pub fn postgres_server() -> String {
    match std::env::var(POSTGRES_ENV) {
        Ok(url) if !url.trim().is_empty() => url,
        _ => panic!(
            "{POSTGRES_ENV} is not set: the PostgreSQL variants of these tests need a server. \
             Start a throwaway one with `export {POSTGRES_ENV}=$(scripts/postgres | tail -n 1)` \
             (scripts/test does this by itself), or point it at a server where the user may CREATE DATABASE"
        ),
    }
}

/// `server` with its database name replaced by `name`.
pub fn with_database(server: &str, name: &str) -> String {
    let (scheme, rest) = server.split_once("://").expect("a postgres:// URL");
    let (before_query, query) = match rest.split_once('?') {
        Some((path, query)) => (path, format!("?{query}")),
        None => (rest, String::new()),
    };
    let authority = before_query.split('/').next().unwrap_or(before_query);
    format!("{scheme}://{authority}/{name}{query}")
}

impl TempDb {
    pub fn new() -> TempDb {
        let dir = tempfile::tempdir().expect("temp dir");
        let path = dir.path().join("effnas.db");
        TempDb { dir, path, postgres: None }
    }

    /// A new, empty database on the server of `EFFNAS_TEST_POSTGRES` (panics, saying how to
    /// start one, when it is not set).
    pub async fn postgres() -> TempDb {
        use sqlx::Connection;
        static COUNTER: std::sync::atomic::AtomicU32 = std::sync::atomic::AtomicU32::new(0);
        let admin = postgres_server();
        let nanos = std::time::SystemTime::now()
            .duration_since(std::time::UNIX_EPOCH)
            .map_or(0, |d| d.subsec_nanos());
        let count = COUNTER.fetch_add(1, std::sync::atomic::Ordering::Relaxed);
        let name = format!("effnas_test_{}_{count}_{nanos}", std::process::id());
        let mut conn = sqlx::PgConnection::connect(&admin)
            .await
            .unwrap_or_else(|e| panic!("connecting to {POSTGRES_ENV} (is the server running?): {e}"));
        sqlx::raw_sql(&format!("CREATE DATABASE {name}")).execute(&mut conn).await.expect("CREATE DATABASE");
        conn.close().await.ok();
        let url = with_database(&admin, &name);
        let mut db = TempDb::new();
        db.postgres = Some(PgDatabase { admin, name, url });
        db
    }

    /// [`TempDb::postgres`] outside an async runtime.
    pub fn postgres_blocking() -> TempDb {
        tokio::runtime::Runtime::new().expect("runtime").block_on(TempDb::postgres())
    }

    pub fn is_postgres(&self) -> bool {
        self.postgres.is_some()
    }

    /// What `Store::open` takes: the file's path, or the database's URL.
    pub fn url(&self) -> String {
        match &self.postgres {
            Some(pg) => pg.url.clone(),
            None => self.path.display().to_string(),
        }
    }

    pub async fn open(&self) -> Store {
        Store::open(&self.url()).await.expect("open store")
    }

    /// A plain sqlx connection to the file, as another SQLite client would make: no
    /// migrations, no schema checks. SQLite only.
    pub async fn raw(&self) -> sqlx::SqliteConnection {
        assert!(self.postgres.is_none(), "raw() is an SQLite connection");
        use sqlx::Connection;
        sqlx::SqliteConnection::connect(&format!("sqlite://{}", self.url())).await.expect("raw connection")
    }
}

impl Drop for TempDb {
    fn drop(&mut self) {
        let Some(pg) = self.postgres.take() else { return };
        // A thread of its own: this may run inside a test's runtime, which cannot block on
        // another. FORCE ends the connections the test's stores still hold.
        let dropped = std::thread::spawn(move || {
            use sqlx::Connection;
            let runtime = tokio::runtime::Runtime::new().expect("runtime");
            runtime.block_on(async {
                let mut conn = sqlx::PgConnection::connect(&pg.admin).await?;
                sqlx::raw_sql(&format!("DROP DATABASE IF EXISTS {} WITH (FORCE)", pg.name))
                    .execute(&mut conn)
                    .await?;
                conn.close().await
            })
        })
        .join();
        if let Ok(Err(error)) = dropped {
            eprintln!("dropping the test database: {error}");
        }
    }
}

/// Distinct architectures for distinct `index`: B0 at 32 px, 10 classes, with the kernel of
/// each block, the repeats of one block and the class count varied by `index`.
pub fn arch(index: usize) -> ArchSpec {
    let mut arch = presets::preset("b0").expect("b0");
    arch.resolution = 32;
    arch.num_classes = 10;
    for (b, block) in arch.blocks.iter_mut().enumerate() {
        if (index >> b) & 1 == 1 {
            block.kernel = if block.kernel == 3 { 5 } else { 3 };
        }
    }
    arch.blocks[5].repeats = 1 + (index >> 7) as u32 % 4;
    // Beyond 512 variants, the classifier size keeps them apart.
    arch.num_classes = 10 + (index >> 9) as u32;
    arch
}

pub fn trial(index: usize) -> NewTrial {
    NewTrial::new(arch(index), "fashion-mnist/e1/n1000/r32/seed0")
}

pub fn metrics(accuracy: f64, flops: u64) -> TrialMetrics {
    TrialMetrics {
        accuracy,
        loss: 1.0 - accuracy,
        params: 1_000_000,
        flops,
        reward: accuracy * (flops as f64 / 4e8).powf(-0.07),
        latency_ms: None,
        seconds: 12.5,
        images_per_second: 800.0,
        extra: None,
    }
}

pub async fn search_run(store: &Store, name: &str) -> effnas_store::RunId {
    store.create_run(&NewRun::new(name, RunKind::Search)).await.expect("create run")
}

/// The trials racing workers claimed, one list each: together, every one of `total` trials
/// exactly once.
pub fn assert_each_claimed_once(claimed: &[Vec<TrialId>], total: usize) {
    let all: Vec<TrialId> = claimed.iter().flatten().copied().collect();
    let unique: HashSet<TrialId> = all.iter().copied().collect();
    assert_eq!(all.len(), total, "claims: {:?}", claimed.iter().map(Vec::len).collect::<Vec<_>>());
    assert_eq!(unique.len(), total, "a trial was claimed twice");
}
