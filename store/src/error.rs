//! What can go wrong with the experiment database, in terms a user can act on.

use std::borrow::Cow;

// User input in a message goes through `Echo`: quoted and cut to 80 characters.
use effnas_space::error::Echo;

/// Every error the store returns. Messages are one line and name the database (its path or
/// URL) where the database itself is the problem.
#[derive(Debug, thiserror::Error)]
pub enum StoreError {
    #[error("{location}: not an SQLite database (is this the right file?)")]
    NotADatabase { location: String },

    #[error("{location}: no such database file (runs are recorded by `effnas search`, `effnas compound` and `effnas train --db`)")]
    Missing { location: String },

    #[error("{location}: cannot open the database: {reason}")]
    Open { location: String, reason: String },

    #[error("{location}: the database is read-only: {reason}")]
    ReadOnly { location: String, reason: String },

    #[error("{location}: the database has schema version {found}, newer than this effnas knows (up to {known}); use a newer effnas")]
    NewerSchema { location: String, found: i64, known: i64 },

    #[error("{location}: migrating the schema failed: {reason}")]
    Migration { location: String, reason: String },

    #[error("{location}: the database is locked by another process and stayed locked past the busy timeout")]
    Locked { location: String },

    /// [`StoreError::Locked`] on every retry of a write for `waited_secs` (see
    /// [`crate::RetryPolicy`]).
    #[error("{location}: the database stayed locked by another process for {waited_secs:.0} s of retries (set EFFNAS_DB_RETRY to wait longer)")]
    StillLocked { location: String, waited_secs: f64 },

    /// Another live process holds the run (see [`crate::RunOwner`]).
    #[error(
        "run {run} is in use by {holder} (lease until {until}); wait for it to end or stop it (Ctrl-C) first"
    )]
    RunHeld { run: i64, holder: String, until: String },

    /// The process lost its run to another one (its lease lapsed and the other took over).
    #[error("run {run} was taken over by {holder}; this process stops")]
    RunLost { run: i64, holder: String },

    #[error("a run named {} already exists (run {existing}); choose another name", Echo(name))]
    RunNameTaken { name: String, existing: i64 },

    #[error("runs {ids} are all named {name:?}; select one by its id")]
    RunNameAmbiguous { name: String, ids: String },

    #[error(
        "unsupported database {}: give a file path, an sqlite:// URL or a postgres:// URL",
        Echo(.0)
    )]
    UnsupportedUrl(String),

    /// The PostgreSQL server cannot be reached or dropped the connection: refused, reset, shut
    /// down, restarting, or out of connection slots. [`crate::RetryPolicy`] retries it.
    #[error("{location}: cannot reach the database server: {reason}")]
    Unreachable { location: String, reason: String },

    /// [`StoreError::Unreachable`] on every retry for `waited_secs` (see [`crate::RetryPolicy`]).
    #[error("{location}: the database server stayed unreachable for {waited_secs:.0} s of retries (set EFFNAS_DB_RETRY to wait longer): {reason}")]
    StillUnreachable { location: String, waited_secs: f64, reason: String },

    /// A batch key came back with a different number of trials than its first call queued:
    /// the key was reused for another batch (a caller's mistake; keys are made per call).
    #[error("trial batch {key} was queued with {queued} trials, and is asked again with {asked}; a batch key belongs to one call")]
    BatchMismatch { key: String, queued: usize, asked: usize },

    #[error("no run with id or name {} (list them with `effnas runs`)", Echo(.0))]
    RunNotFound(String),

    #[error("no trial with id {0}")]
    TrialNotFound(i64),

    /// A result arrived for a trial that already has one (for example, a worker that was
    /// presumed dead finished after another worker did). Callers may treat this as benign.
    #[error("trial {id} is already {state}")]
    TrialFinished { id: i64, state: String },

    #[error("{field}: {reason}")]
    InvalidValue { field: Cow<'static, str>, reason: String },

    #[error("stored {what} is unreadable: {reason}")]
    Corrupt { what: String, reason: String },

    /// The driver's error is spelled out in the message, not chained as a source: sqlx repeats
    /// its message in its own source, so a printed chain said the same thing three times.
    #[error("{location}: database error: {}", driver_message(cause))]
    Database { location: String, cause: sqlx::Error },
}

pub type Result<T, E = StoreError> = std::result::Result<T, E>;

impl StoreError {
    pub(crate) fn invalid(field: impl Into<Cow<'static, str>>, reason: impl Into<String>) -> Self {
        StoreError::InvalidValue { field: field.into(), reason: reason.into() }
    }

    pub(crate) fn corrupt(what: impl Into<String>, reason: impl ToString) -> Self {
        StoreError::Corrupt { what: what.into(), reason: reason.to_string() }
    }

    /// Whether waiting and trying the same call again may succeed: another process holds the
    /// lock, or the server is away for a while. Every store call is one transaction, which did
    /// not commit when it failed so (see [`crate::RetryPolicy`] for the one exception).
    pub fn is_transient(&self) -> bool {
        matches!(self, StoreError::Locked { .. } | StoreError::Unreachable { .. })
    }

    /// Transient, or the end of retrying something transient ([`StoreError::StillLocked`],
    /// [`StoreError::StillUnreachable`]): the database is there but not usable now, as opposed
    /// to an error in what was asked. A worker keeps waiting on these.
    pub fn is_unavailable(&self) -> bool {
        self.is_transient()
            || matches!(self, StoreError::StillLocked { .. } | StoreError::StillUnreachable { .. })
    }

    /// Turns a driver error into the most specific variant.
    pub(crate) fn from_sqlx(backend: crate::Backend, location: &str, source: sqlx::Error) -> Self {
        match backend {
            crate::Backend::Sqlite => StoreError::from_sqlite(location, source),
            crate::Backend::Postgres => StoreError::from_postgres(location, source),
        }
    }

    /// By PostgreSQL's SQLSTATE (its class, the first two characters, where the class says
    /// enough), or by the kind of a failure below the protocol (a refused or reset connection).
    fn from_postgres(location: &str, source: sqlx::Error) -> Self {
        let location = location.to_owned();
        let unreachable = |reason: String| StoreError::Unreachable { location: location.clone(), reason };
        match &source {
            sqlx::Error::Database(db) => {
                let code = db.code().map(|c| c.into_owned()).unwrap_or_default();
                let message = db.message().to_owned();
                match code.as_str() {
                    // serialization_failure, deadlock_detected, lock_not_available: the
                    // transaction was rolled back and may simply be run again.
                    "40001" | "40P01" | "55P03" => StoreError::Locked { location },
                    // too_many_connections, admin_shutdown, crash_shutdown, cannot_connect_now
                    // (starting up or shutting down), and class 08 (connection exceptions).
                    "53300" | "57P01" | "57P02" | "57P03" => unreachable(message),
                    c if c.starts_with("08") => unreachable(message),
                    // invalid_authorization_specification, invalid_password,
                    // invalid_catalog_name (no such database), insufficient_privilege
                    "28000" | "28P01" | "3D000" | "42501" => StoreError::Open { location, reason: message },
                    // read_only_sql_transaction (a hot standby)
                    "25006" => StoreError::ReadOnly { location, reason: message },
                    _ => StoreError::Database { location, cause: source },
                }
            }
            sqlx::Error::Io(error) => unreachable(error.to_string()),
            sqlx::Error::PoolTimedOut => {
                unreachable("no connection could be made before the pool's timeout".to_owned())
            }
            sqlx::Error::PoolClosed | sqlx::Error::WorkerCrashed => unreachable(source.to_string()),
            sqlx::Error::Tls(error) => StoreError::Open { location, reason: format!("TLS: {error}") },
            sqlx::Error::Configuration(error) => {
                StoreError::InvalidValue { field: "database URL".into(), reason: error.to_string() }
            }
            // A connection cut in the middle of a message reads as a protocol error.
            sqlx::Error::Protocol(message) => unreachable(message.clone()),
            _ => StoreError::Database { location, cause: source },
        }
    }

    /// By SQLite's primary result code.
    fn from_sqlite(location: &str, source: sqlx::Error) -> Self {
        let location = location.to_owned();
        let primary_code = match &source {
            sqlx::Error::Database(db) => db.code().and_then(|c| c.parse::<i64>().ok()).map(|c| c & 0xff),
            _ => None,
        };
        let message = match &source {
            sqlx::Error::Database(db) => db.message().to_owned(),
            other => other.to_string(),
        };
        match primary_code {
            // SQLITE_BUSY, SQLITE_LOCKED
            Some(5 | 6) => StoreError::Locked { location },
            // SQLITE_READONLY
            Some(8) => StoreError::ReadOnly { location, reason: message },
            // SQLITE_CANTOPEN, SQLITE_PERM, SQLITE_AUTH
            Some(14 | 3 | 23) => StoreError::Open { location, reason: message },
            // SQLITE_NOTADB
            Some(26) => StoreError::NotADatabase { location },
            _ => StoreError::Database { location, cause: source },
        }
    }
}

/// A driver error in one line: the database's own message and code (SQLite's result code,
/// PostgreSQL's SQLSTATE), or sqlx's text.
pub(crate) fn driver_message(error: &sqlx::Error) -> String {
    match error {
        sqlx::Error::Database(db) => {
            let system = if db.try_downcast_ref::<sqlx::postgres::PgDatabaseError>().is_some() {
                "SQLSTATE"
            } else {
                "SQLite code"
            };
            match db.code() {
                Some(code) => format!("{} ({system} {code})", db.message()),
                None => db.message().to_owned(),
            }
        }
        other => other.to_string(),
    }
}
