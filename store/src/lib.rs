//! The effnas experiment database: every run, trial, training curve, controller checkpoint,
//! compound-scaling grid point and scaled model, in one SQL database that outlives the run.
//!
//! One [`Store`] owns a sqlx connection pool. SQLite is the default (a file next to the
//! user's work, in WAL mode so that several worker processes share it); the queries use
//! only portable SQL (`$n` parameters, `RETURNING`, `ON CONFLICT`) so that a PostgreSQL
//! backend can be added behind the same methods. The schema is documented table by table in
//! `store/SCHEMA.md`.
//!
//! # Trial life cycle
//! A controller queues trials ([`Store::insert_trials`]); workers claim them one at a time
//! with a single `UPDATE … RETURNING` statement ([`Store::claim_trial`]: two workers never
//! get the same trial), send heartbeats while training ([`Store::heartbeat`], or
//! [`BlockingStore::keep_alive`]), record each epoch, and finish with
//! [`Store::complete_trial`] or [`Store::fail_trial`] (with a [`FailureKind`], the column
//! users group failures by). The orchestrator periodically calls [`Store::requeue_stale`]: a
//! running trial whose heartbeat is older than a limit — its worker died — goes back to
//! pending, or fails as [`FailureKind::Lost`] after its last attempt. Before training
//! anything, the orchestrator can look up an architecture already measured under the same
//! proxy settings ([`Store::find_measured`]) and record it with
//! [`Store::insert_reused_trial`].
//!
//! The store is async; worker threads outside an async runtime use [`BlockingStore`].

mod blocking;
mod error;
mod extras;
mod model;
mod open;
mod pareto;
mod retention;
mod runs;
pub mod time;
mod trials;

use std::sync::Arc;

use sqlx::SqlitePool;

pub use blocking::{BlockingStore, Heartbeat};
pub use error::{Result, StoreError};
pub use model::{
    Checkpoint, ClaimedTrial, CompoundPoint, EpochMetrics, FailureKind, NewCompoundPoint, NewRun,
    NewScaledModel, NewTrial, Requeued, Run, RunId, RunKind, RunStatus, ScaledModel, Trial, TrialFilter,
    TrialId, TrialMetrics, TrialSort, TrialState,
};
pub use open::{latest_version, OpenOptions};
pub use pareto::pareto_front;

/// The experiment database. Cheap to clone (clones share the pool).
#[derive(Debug, Clone)]
pub struct Store {
    pool: SqlitePool,
    /// The path or URL, for messages.
    location: Arc<str>,
    read_only: bool,
}

impl Store {
    /// The path or URL this store was opened from.
    pub fn location(&self) -> &str {
        &self.location
    }

    /// Whether the database was opened read-only (see [`OpenOptions::read_only_fallback`]).
    pub fn is_read_only(&self) -> bool {
        self.read_only
    }

    /// Closes every connection; in WAL mode this also checkpoints and removes the `-wal` and
    /// `-shm` files. Dropping a store without closing is safe too.
    pub async fn close(&self) {
        self.pool.close().await;
    }

    /// SQLite's own consistency check (`pragma integrity_check`): `["ok"]` for a sound database,
    /// otherwise one line per problem found.
    pub async fn integrity_check(&self) -> Result<Vec<String>> {
        sqlx::query_scalar("PRAGMA integrity_check").fetch_all(&self.pool).await.map_err(|e| self.db_error(e))
    }

    pub(crate) fn db_error(&self, error: sqlx::Error) -> StoreError {
        StoreError::from_sqlx(&self.location, error)
    }

    /// A transaction that takes the write lock at once. SQLite's default deferred transaction
    /// would fail with "database is locked", without waiting, when it reads first and another
    /// process writes before it upgrades.
    pub(crate) async fn begin_write(&self) -> Result<sqlx::Transaction<'static, sqlx::Sqlite>> {
        self.pool.begin_with("BEGIN IMMEDIATE").await.map_err(|e| self.db_error(e))
    }
}

/// Converts a count or cost to the signed 64-bit integer SQL stores.
pub(crate) fn to_sql_int(field: &'static str, value: u64) -> Result<i64> {
    i64::try_from(value).map_err(|_| StoreError::invalid(field, format!("{value} is too large to store")))
}

/// Converts a stored integer back; a negative value means a hand-edited or corrupt row.
pub(crate) fn from_sql_int<T: TryFrom<i64>>(what: &str, value: i64) -> Result<T> {
    T::try_from(value).map_err(|_| StoreError::corrupt(what, format!("{value} is out of range")))
}
