//! The effnas experiment database: every run, trial, training curve, controller checkpoint,
//! compound-scaling grid point and scaled model, in one SQL database that outlives the run.
//!
//! One [`Store`] owns a sqlx connection pool of one of two backends ([`Backend`]): SQLite, the
//! default (a file next to the user's work, in WAL mode so that several worker processes on one
//! machine share it), or PostgreSQL (`postgres://…`, for workers on many machines). There is one
//! query layer: every statement is written once, in the SQL both understand (`$n` parameters,
//! `RETURNING`, `ON CONFLICT`), and compiled for each driver (the `on_pool!` dispatch of `lib.rs`), so
//! the backends cannot drift apart. What differs is isolated in few places: connecting and the
//! schema checks (`open.rs`), the migrations (`migrations/sqlite`, `migrations/postgres`, the
//! same versions), the claim's `FOR UPDATE SKIP LOCKED` and row locks (PostgreSQL only: SQLite
//! serializes writers), and errors (`error.rs`). The schema is documented table by table in
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
//! calls retry for minutes while another process holds the database locked, or while the
//! PostgreSQL server cannot be reached (restarting, a network cut) ([`RetryPolicy`]), so that a
//! long `sqlite3` session, a backup or a server restart does not kill a search.

/// Runs `$body` once per backend with `$db` bound to that backend's pool: the statement and its
/// binds are written once and compiled for each driver.
macro_rules! on_pool {
    ($store:expr, $db:ident => $body:expr) => {
        match &$store.pool {
            $crate::Pool::Sqlite($db) => $body,
            $crate::Pool::Postgres($db) => $body,
        }
    };
}

/// [`on_pool!`] for a connection ([`Conn`]): `$c` is the backend's `&mut` connection.
macro_rules! on_conn {
    ($conn:expr, $c:ident => $body:expr) => {
        match $conn {
            $crate::Conn::Sqlite($c) => $body,
            $crate::Conn::Postgres($c) => $body,
        }
    };
}

mod blocking;
mod claims;
mod copy;
mod dashboard;
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

use sqlx::pool::PoolConnection;
use sqlx::postgres::{PgConnection, PgPool, Postgres};
use sqlx::sqlite::{Sqlite, SqliteConnection, SqlitePool};

pub use blocking::{BlockingStore, Heartbeat, RetryPolicy, RunHold, BUSY_TIMEOUT_ENV, RETRY_ENV};
pub use copy::{copied_columns, CopiedRun, CopyOptions, CopyReport};
pub use dashboard::{ColumnRange, TrialColumn, TrialPage, TrialQuery};
pub use error::{Result, StoreError};
pub use lease::{host_name, RunOwner, RUN_LEASE, RUN_LEASE_RENEW};
pub use model::{
    AttemptOutcome, BatchKey, Checkpoint, Claim, ClaimedTrial, CompoundPoint, EpochMetrics, FailureKind,
    Fenced, NewCompoundPoint, NewRun, NewScaledModel, NewTrial, Requeued, Run, RunId, RunKind, RunNaming,
    RunStatus, ScaledModel, Trial, TrialAttempt, TrialFilter, TrialId, TrialMetrics, TrialSort, TrialState,
};
pub use open::{latest_version, latest_versions, OpenOptions};
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

/// The database behind a [`Store`].
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash)]
pub enum Backend {
    /// A file (or memory), through SQLite: one machine.
    Sqlite,
    /// A PostgreSQL server (`postgres://…`): workers on many machines.
    Postgres,
}

impl Backend {
    /// `sqlite` or `postgres`, as `effnas db` and JSON output name it.
    pub fn as_str(self) -> &'static str {
        match self {
            Backend::Sqlite => "sqlite",
            Backend::Postgres => "postgres",
        }
    }
}

impl std::fmt::Display for Backend {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.write_str(self.as_str())
    }
}

/// A pool of either backend; the query layer dispatches on it with [`on_pool!`].
#[derive(Debug, Clone)]
pub(crate) enum Pool {
    Sqlite(SqlitePool),
    Postgres(PgPool),
}

/// A connection of either backend, borrowed from a [`Tx`] or a [`PoolConn`]; helpers that run
/// inside a caller's transaction take it and dispatch with [`on_conn!`].
pub(crate) enum Conn<'c> {
    Sqlite(&'c mut SqliteConnection),
    Postgres(&'c mut PgConnection),
}

/// A write transaction of either backend ([`Store::begin_write`]).
pub(crate) enum Tx {
    Sqlite(sqlx::Transaction<'static, Sqlite>),
    Postgres(sqlx::Transaction<'static, Postgres>),
}

impl Tx {
    pub(crate) fn conn(&mut self) -> Conn<'_> {
        match self {
            Tx::Sqlite(tx) => Conn::Sqlite(tx),
            Tx::Postgres(tx) => Conn::Postgres(tx),
        }
    }

    pub(crate) async fn commit(self) -> sqlx::Result<()> {
        match self {
            Tx::Sqlite(tx) => tx.commit().await,
            Tx::Postgres(tx) => tx.commit().await,
        }
    }

    pub(crate) async fn rollback(self) -> sqlx::Result<()> {
        match self {
            Tx::Sqlite(tx) => tx.rollback().await,
            Tx::Postgres(tx) => tx.rollback().await,
        }
    }
}

/// A connection taken from the pool for a few statements outside a transaction.
pub(crate) enum PoolConn {
    Sqlite(PoolConnection<Sqlite>),
    Postgres(PoolConnection<Postgres>),
}

impl PoolConn {
    pub(crate) fn conn(&mut self) -> Conn<'_> {
        match self {
            PoolConn::Sqlite(conn) => Conn::Sqlite(conn),
            PoolConn::Postgres(conn) => Conn::Postgres(conn),
        }
    }
}

/// The experiment database. Cheap to clone (clones share the pool).
#[derive(Debug, Clone)]
pub struct Store {
    pool: Pool,
    /// The path or URL, for messages: a password in a URL is replaced by `***`.
    location: Arc<str>,
    /// What the user gave, password included: for other processes to open the same database.
    target: Arc<str>,
    read_only: bool,
}

impl Store {
    /// The path or URL this store was opened from, for messages: a password in a PostgreSQL URL
    /// is shown as `***` (see [`Store::target`] for the whole URL).
    pub fn location(&self) -> &str {
        &self.location
    }

    /// What this store was opened from, as given, password included: what another process
    /// (a worker) opens to reach the same database. Pass it through the environment
    /// (`EFFNAS_DB`), not a command line, where every user of the machine can read it.
    pub fn target(&self) -> &str {
        &self.target
    }

    /// Which database this store talks to.
    pub fn backend(&self) -> Backend {
        match self.pool {
            Pool::Sqlite(_) => Backend::Sqlite,
            Pool::Postgres(_) => Backend::Postgres,
        }
    }

    /// Whether the database was opened read-only (see [`OpenOptions::read_only_fallback`]).
    pub fn is_read_only(&self) -> bool {
        self.read_only
    }

    /// Closes every connection; in WAL mode this also checkpoints and removes the `-wal` and
    /// `-shm` files. Dropping a store without closing is safe too.
    pub async fn close(&self) {
        on_pool!(self, pool => pool.close().await);
    }

    /// SQLite's own consistency check (`pragma integrity_check`): `["ok"]` for a sound database,
    /// otherwise one line per problem found. PostgreSQL checks its own pages as it reads them and
    /// has no such statement without extensions: there this only asks the server to answer, and
    /// gives `["ok"]` when it does.
    pub async fn integrity_check(&self) -> Result<Vec<String>> {
        let sql = match self.backend() {
            Backend::Sqlite => "PRAGMA integrity_check",
            Backend::Postgres => "SELECT 'ok'::text",
        };
        on_pool!(self, pool => sqlx::query_scalar(sql).fetch_all(pool).await).map_err(|e| self.db_error(e))
    }

    /// Runs SQL as another client (`sqlite3`, `psql`) would, outside every check of the store:
    /// for tests that damage or hand-edit a database. Not for normal use.
    #[doc(hidden)]
    pub async fn execute_unchecked(&self, sql: &str) -> Result<u64> {
        let done = on_pool!(self, pool => sqlx::raw_sql(sql).execute(pool).await.map(|d| d.rows_affected()));
        done.map_err(|e| self.db_error(e))
    }

    /// Takes the database's write lock, calls `locked` once it is held, keeps it for `hold`,
    /// then lets go: another process's long transaction, for tests of the retry. On SQLite
    /// `BEGIN IMMEDIATE`, which in WAL mode shuts out every other writer as `BEGIN EXCLUSIVE`
    /// does; on PostgreSQL the tables written by claims and results are locked in `EXCLUSIVE`
    /// mode (readers go on). Not for normal use.
    #[doc(hidden)]
    pub async fn hold_write_lock(&self, hold: std::time::Duration, locked: impl FnOnce()) -> Result<()> {
        let mut tx = self.begin_write().await?;
        if let Tx::Postgres(tx) = &mut tx {
            sqlx::query("LOCK TABLE runs, trials, trial_epochs IN EXCLUSIVE MODE")
                .execute(&mut **tx)
                .await
                .map_err(|e| self.db_error(e))?;
        }
        locked();
        tokio::time::sleep(hold).await;
        tx.rollback().await.map_err(|e| self.db_error(e))
    }

    pub(crate) fn db_error(&self, error: sqlx::Error) -> StoreError {
        StoreError::from_sqlx(self.backend(), &self.location, error)
    }

    /// A transaction that takes the write lock at once on SQLite: its default deferred
    /// transaction would fail with "database is locked", without waiting, when it reads first
    /// and another process writes before it upgrades. PostgreSQL locks rows as statements touch
    /// them; the few statements that read before they write lock what they read (`FOR UPDATE`).
    pub(crate) async fn begin_write(&self) -> Result<Tx> {
        match &self.pool {
            Pool::Sqlite(pool) => pool.begin_with("BEGIN IMMEDIATE").await.map(Tx::Sqlite),
            Pool::Postgres(pool) => pool.begin().await.map(Tx::Postgres),
        }
        .map_err(|e| self.db_error(e))
    }

    /// A connection from the pool, for statements that need no transaction.
    pub(crate) async fn acquire(&self) -> Result<PoolConn> {
        match &self.pool {
            Pool::Sqlite(pool) => pool.acquire().await.map(PoolConn::Sqlite),
            Pool::Postgres(pool) => pool.acquire().await.map(PoolConn::Postgres),
        }
        .map_err(|e| self.db_error(e))
    }

    /// `" FOR UPDATE"` on PostgreSQL, to lock the rows a transaction reads before it writes
    /// them; nothing on SQLite, whose write transaction already excludes every other writer.
    pub(crate) fn for_update(&self) -> &'static str {
        match self.backend() {
            Backend::Sqlite => "",
            Backend::Postgres => " FOR UPDATE",
        }
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
