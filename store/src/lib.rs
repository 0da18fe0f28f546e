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
//! A controller queues trials ([`Store::insert_trials`]). Worker processes claim them one at a
//! time with a lease ([`Store::claim_next`]: a single `UPDATE … RETURNING` statement, so two
//! workers never get the same trial), extend the lease every lease/3 while training
//! ([`Store::extend_lease`], or [`BlockingStore::keep_lease`] in the background), record each
//! epoch, and finish with [`Store::complete_claim`] or [`Store::fail_claim`] (with a
//! [`FailureKind`], the column users group failures by), or give the trial back on an orderly
//! stop ([`Store::release_claim`]). Any process may call [`Store::requeue_expired`]: a running
//! trial whose lease has passed — its worker died — goes back to pending, or fails as
//! [`FailureKind::Lost`] after its last attempt. Every write of a worker names its [`Claim`]
//! (trial and attempt) and is fenced on it: a worker presumed dead that comes back after its
//! trial was requeued gets [`Fenced::Superseded`] and overwrites nothing. The life cycle is
//! described in `claims.rs` and `store/SCHEMA.md`.
//!
//! A search's own in-process workers claim without a lease ([`Store::claim_trial`]) and finish
//! with the unfenced [`Store::complete_trial`] and [`Store::fail_trial`]; the search takes their
//! trials back itself ([`Store::requeue_running`] on an orderly stop, [`Store::recover_running`]
//! on resume after a crash). Before training anything, the orchestrator can look up an
//! architecture already measured under the same proxy settings ([`Store::find_measured`]) and
//! record it with [`Store::insert_reused_trial`].
//!
//! A trial is claimed at most [`MAX_ATTEMPTS`] times: one whose process died with it that often
//! (the OOM killer, a segfault in a kernel) is failed as [`FailureKind::Lost`] rather than
//! retried forever, whether an expired lease ([`Store::requeue_expired`]) or a resume after a
//! crash ([`Store::recover_running`]) finds it.
//!
//! # Runs and their holder
//! A process that runs a run holds a lease on it ([`Store::acquire_run`], renewed by
//! [`BlockingStore::hold_run`]), so that `--resume` of a run whose process still lives is refused
//! ([`StoreError::RunHeld`]) instead of training its trials a second time. Run names are unique
//! ([`RunNaming`]) and never all digits: `--run 12` is run id 12, `--run =12` the run named `12`
//! (see [`Store::find_run`]).
//!
//! # A busy database
//! The store is async; worker threads outside an async runtime use [`BlockingStore`], whose
//! calls retry for minutes while another process holds the database locked ([`RetryPolicy`]),
//! so that a long `sqlite3` session or backup does not kill a search.

mod blocking;
mod claims;
mod error;
mod extras;
mod lease;
mod model;
mod open;
mod pareto;
mod retention;
mod runs;
pub mod time;
mod trials;

use std::sync::Arc;

use sqlx::SqlitePool;

pub use blocking::{BlockingStore, Heartbeat, RetryPolicy, RunHold, BUSY_TIMEOUT_ENV, RETRY_ENV};
pub use error::{Result, StoreError};
pub use lease::{host_name, RunOwner, RUN_LEASE, RUN_LEASE_RENEW};
pub use model::{
    Checkpoint, Claim, ClaimedTrial, CompoundPoint, EpochMetrics, FailureKind, Fenced, NewCompoundPoint,
    NewRun, NewScaledModel, NewTrial, Requeued, Run, RunId, RunKind, RunNaming, RunStatus, ScaledModel,
    Trial, TrialFilter, TrialId, TrialMetrics, TrialSort, TrialState,
};
pub use open::{latest_version, OpenOptions};
pub use pareto::pareto_front;

/// How many times a trial may be claimed before a worker that vanishes with it fails it as
/// [`FailureKind::Lost`] (see `store/SCHEMA.md`, "Trial life cycle").
pub const MAX_ATTEMPTS: u32 = 3;

/// Text from the database (a run name, an error message) as it may be printed to a terminal:
/// control characters (ESC, BEL, newline, …) and the Unicode controls that reorder or hide text
/// are written as escapes (`\u{1b}`, `\n`), so that a hostile name cannot clear the screen,
/// fake a line of output or recolour what follows. Everything else is left as it is.
pub fn escape_control(text: &str) -> std::borrow::Cow<'_, str> {
    fn hostile(c: char) -> bool {
        c.is_control()
            || matches!(c, '\u{200e}' | '\u{200f}' | '\u{202a}'..='\u{202e}' | '\u{2066}'..='\u{2069}')
    }
    if !text.chars().any(hostile) {
        return std::borrow::Cow::Borrowed(text);
    }
    let mut escaped = String::with_capacity(text.len() + 8);
    for c in text.chars() {
        if hostile(c) {
            escaped.extend(c.escape_default());
        } else {
            escaped.push(c);
        }
    }
    std::borrow::Cow::Owned(escaped)
}

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

    /// Runs SQL as another SQLite client (`sqlite3`) would, outside every check of the store:
    /// for tests that damage or hand-edit a database. Not for normal use.
    #[doc(hidden)]
    pub async fn execute_unchecked(&self, sql: &str) -> Result<u64> {
        let done = sqlx::raw_sql(sql).execute(&self.pool).await.map_err(|e| self.db_error(e))?;
        Ok(done.rows_affected())
    }

    /// Takes the database's write lock (`BEGIN IMMEDIATE`, which in WAL mode shuts out every
    /// other writer as `BEGIN EXCLUSIVE` does), calls `locked` once it is held, keeps it for
    /// `hold`, then lets go: another process's long transaction, for tests of the retry. Not
    /// for normal use.
    #[doc(hidden)]
    pub async fn hold_write_lock(&self, hold: std::time::Duration, locked: impl FnOnce()) -> Result<()> {
        let tx = self.begin_write().await?;
        locked();
        tokio::time::sleep(hold).await;
        tx.rollback().await.map_err(|e| self.db_error(e))
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

#[cfg(test)]
mod tests {
    #[test]
    fn control_characters_are_escaped_and_the_rest_left_alone() {
        assert_eq!(super::escape_control("b0-search φ=1"), "b0-search φ=1");
        assert_eq!(super::escape_control("a\u{1b}[2Jb\u{7}\nc\td"), "a\\u{1b}[2Jb\\u{7}\\nc\\td");
        assert_eq!(super::escape_control("x\u{202e}y"), "x\\u{202e}y");
    }
}
