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
        "unsupported database {}: give a file path or an sqlite:// URL (PostgreSQL is not supported yet)",
        Echo(.0)
    )]
    UnsupportedUrl(String),

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

    /// Turns a driver error into the most specific variant, by SQLite's primary result code.
    pub(crate) fn from_sqlx(location: &str, source: sqlx::Error) -> Self {
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

/// A driver error in one line: SQLite's own message and result code, or sqlx's text.
pub(crate) fn driver_message(error: &sqlx::Error) -> String {
    match error {
        sqlx::Error::Database(db) => match db.code() {
            Some(code) => format!("{} (SQLite code {code})", db.message()),
            None => db.message().to_owned(),
        },
        other => other.to_string(),
    }
}
