//! Opening a database: where it is, connection settings, schema checks and migrations.

use std::future::Future;
use std::io::Read;
use std::path::{Path, PathBuf};
use std::pin::Pin;
use std::str::FromStr;
use std::sync::Arc;
use std::time::Duration;

use sqlx::migrate::{MigrateError, Migration, MigrationSource, Migrator};
use sqlx::postgres::{PgConnectOptions, PgPoolOptions};
use sqlx::sqlite::{SqliteConnectOptions, SqliteJournalMode, SqlitePoolOptions, SqliteSynchronous};

use crate::error::{Result, StoreError};
use crate::{Backend, Pool, Store};

/// The schema, one timestamped SQL file per version (see `store/SCHEMA.md`).
pub(crate) static MIGRATOR: Migrator = sqlx::migrate!("./migrations/sqlite");

/// The same schema for PostgreSQL. Its history starts at the version that introduced it (every
/// table of the SQLite schema of that version in one file); later versions come in pairs, one
/// file in each folder with the same version number, so that `schema_version` means the same
/// on both backends.
pub(crate) static MIGRATOR_POSTGRES: Migrator = sqlx::migrate!("./migrations/postgres");

/// How long taking a PostgreSQL connection may wait (connecting included) before the call fails
/// as [`StoreError::Unreachable`]; [`crate::RetryPolicy`] then decides whether to try again,
/// and logs that it does.
const POSTGRES_ACQUIRE_TIMEOUT: Duration = Duration::from_secs(5);

/// The first 16 bytes of every SQLite 3 database file.
const SQLITE_HEADER: &[u8; 16] = b"SQLite format 3\0";

/// How to open a store.
#[derive(Debug, Clone)]
pub struct OpenOptions {
    /// How long a write waits for another process's write to finish before failing with
    /// [`StoreError::Locked`].
    pub busy_timeout: Duration,
    /// Connections in the pool (an in-memory database always uses one).
    pub max_connections: u32,
    /// Create the file when it does not exist (otherwise [`StoreError::Missing`]).
    pub create: bool,
    /// When the file is not writable, open it read-only instead of failing; queries work as
    /// long as the schema is current.
    pub read_only_fallback: bool,
    /// Open for reading only, whatever the file's permissions: an SQLite file is opened
    /// read-only (`mode=ro`: it must exist, and nothing is ever written to it, not even a
    /// schema upgrade), a PostgreSQL session has `default_transaction_read_only` on, so the
    /// server refuses any write. For watchers such as `effnas serve`.
    pub read_only: bool,
}

impl Default for OpenOptions {
    fn default() -> Self {
        OpenOptions {
            busy_timeout: Duration::from_secs(10),
            max_connections: 4,
            create: true,
            read_only_fallback: false,
            read_only: false,
        }
    }
}

impl OpenOptions {
    /// For reading an existing database: never creates a file, and falls back to read-only.
    pub fn existing() -> Self {
        OpenOptions { create: false, read_only_fallback: true, ..OpenOptions::default() }
    }

    /// For watching a database another process writes: never creates, never writes (see
    /// [`OpenOptions::read_only`]).
    pub fn read_only() -> Self {
        OpenOptions { create: false, read_only_fallback: true, read_only: true, ..OpenOptions::default() }
    }
}

/// Where the database lives, as parsed from what the user gave.
enum Target {
    Memory,
    File(PathBuf, UrlMode),
    /// A `postgres://` or `postgresql://` URL.
    Postgres(String),
}

/// The `mode` parameter of an `sqlite://` URL, as SQLite itself defines it.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
enum UrlMode {
    /// `mode=ro`: read-only; the file must exist.
    ReadOnly,
    /// `mode=rw`: read and write; the file must exist.
    ReadWrite,
    /// `mode=rwc` or no parameter: as the caller's options say.
    Default,
}

fn parse_target(text: &str) -> Result<Target> {
    let trimmed = text.trim();
    if trimmed.is_empty() {
        return Err(StoreError::invalid("database", "empty path"));
    }
    if trimmed == ":memory:" || trimmed == "sqlite::memory:" || trimmed == "sqlite://:memory:" {
        return Ok(Target::Memory);
    }
    if let Some(rest) = trimmed.strip_prefix("sqlite:") {
        // `sqlite://path`, `sqlite:path`, with at most a `mode` parameter (the other connection
        // settings are ours).
        let rest = rest.strip_prefix("//").unwrap_or(rest);
        let (path, query) = rest.split_once('?').unwrap_or((rest, ""));
        if path.is_empty() {
            return Err(StoreError::invalid("database", format!("{}: the URL names no file", clip(text))));
        }
        return Ok(Target::File(PathBuf::from(path), url_mode(query)?));
    }
    if trimmed.starts_with("postgres://") || trimmed.starts_with("postgresql://") {
        return Ok(Target::Postgres(trimmed.to_owned()));
    }
    if trimmed.contains("://") {
        return Err(StoreError::UnsupportedUrl(redact(text)));
    }
    Ok(Target::File(PathBuf::from(text), UrlMode::Default))
}

/// Reads the query of an `sqlite://` URL: nothing, or `mode=ro`, `mode=rw` or `mode=rwc`.
fn url_mode(query: &str) -> Result<UrlMode> {
    match query {
        "" | "mode=rwc" => Ok(UrlMode::Default),
        "mode=ro" => Ok(UrlMode::ReadOnly),
        "mode=rw" => Ok(UrlMode::ReadWrite),
        other => Err(StoreError::invalid(
            "database URL",
            format!("parameter {} is not supported (only mode=ro, mode=rw or mode=rwc)", clip(other)),
        )),
    }
}

/// A database URL as messages show it: the password of `user:password@host` and a `password=`
/// parameter replaced by `***`. Anything else is shown as given.
pub(crate) fn redact(url: &str) -> String {
    let Some((scheme, rest)) = url.split_once("://") else { return url.to_owned() };
    let authority_end = rest.find(['/', '?']).unwrap_or(rest.len());
    let (authority, tail) = rest.split_at(authority_end);
    let authority = match authority.rsplit_once('@') {
        Some((userinfo, host)) => match userinfo.split_once(':') {
            Some((user, _password)) => format!("{user}:***@{host}"),
            None => format!("{userinfo}@{host}"),
        },
        None => authority.to_owned(),
    };
    let tail = match tail.split_once('?') {
        Some((path, query)) => {
            let query: Vec<String> = query
                .split('&')
                .map(|pair| match pair.split_once('=') {
                    Some((key, _)) if key.eq_ignore_ascii_case("password") => format!("{key}=***"),
                    _ => pair.to_owned(),
                })
                .collect();
            format!("{path}?{}", query.join("&"))
        }
        None => tail.to_owned(),
    };
    format!("{scheme}://{authority}{tail}")
}

/// A URL as the store's messages name it: redacted, and cut at 120 characters (a hostile
/// 100,000-character URL must not make every message that long).
fn shown_url(url: &str) -> String {
    let redacted = redact(url);
    match redacted.char_indices().nth(120) {
        Some((cut, _)) => format!("{}…", &redacted[..cut]),
        None => redacted,
    }
}

/// User input as a message echoes it: quoted, and cut at 80 characters.
fn clip(text: &str) -> String {
    effnas_space::error::Echo(text).to_string()
}

/// The options for a file opened with a URL `mode`: `ro` and `rw` never create a file.
fn with_mode(options: &OpenOptions, mode: UrlMode) -> OpenOptions {
    if options.read_only {
        return OpenOptions { create: false, ..options.clone() };
    }
    match mode {
        UrlMode::Default => options.clone(),
        UrlMode::ReadOnly | UrlMode::ReadWrite => OpenOptions { create: false, ..options.clone() },
    }
}

/// How SQLite must open a file that passed [`check_file`].
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
enum Access {
    Writable,
    ReadOnly,
    /// Read-only in a directory where SQLite cannot create the `-shm` file that a WAL database
    /// needs even for reading: opened as immutable, which is safe because no writer can run
    /// there either (it would need to create the `-wal` file).
    Immutable,
}

/// Checks a database path before SQLite sees it, so common mistakes get a message that says
/// what is wrong, and says how the file must be opened.
fn check_file(path: &Path, options: &OpenOptions) -> Result<Access> {
    let location = path.display().to_string();
    let open_err = |reason: String| StoreError::Open { location: location.clone(), reason };
    let directory = match path.parent() {
        Some(parent) if !parent.as_os_str().is_empty() => parent,
        _ => Path::new("."),
    };
    match std::fs::metadata(path) {
        Ok(meta) if meta.is_dir() => Err(open_err("it is a directory".to_owned())),
        Ok(meta) => {
            check_header(path, &location)?;
            let file_read_only = meta.permissions().readonly();
            let directory_read_only = is_read_only_directory(directory);
            if !file_read_only && !directory_read_only {
                return Ok(Access::Writable);
            }
            if !options.read_only_fallback {
                let reason = if file_read_only {
                    "the file is not writable".to_owned()
                } else {
                    unwritable_directory(directory, path)
                };
                return Err(StoreError::ReadOnly { location, reason });
            }
            Ok(if directory_read_only && !companion(path, "-wal").exists() {
                Access::Immutable
            } else {
                Access::ReadOnly
            })
        }
        Err(e) if matches!(e.kind(), std::io::ErrorKind::NotFound | std::io::ErrorKind::NotADirectory) => {
            if !options.create {
                return Err(StoreError::Missing { location });
            }
            match std::fs::metadata(directory) {
                Ok(meta) if meta.is_dir() && is_read_only_directory(directory) => Err(open_err(format!(
                    "cannot create it: the directory {} is not writable",
                    directory.display()
                ))),
                Ok(meta) if meta.is_dir() => Ok(Access::Writable),
                Ok(_) => Err(open_err(format!("{} is not a directory", directory.display()))),
                Err(_) => Err(open_err(format!("directory {} does not exist", directory.display()))),
            }
        }
        Err(e) => Err(open_err(e.to_string())),
    }
}

/// Refuses a file that is neither empty (SQLite treats that as an empty database) nor starts
/// with the SQLite header.
fn check_header(path: &Path, location: &str) -> Result<()> {
    let mut header = Vec::with_capacity(16);
    std::fs::File::open(path)
        .and_then(|file| file.take(16).read_to_end(&mut header))
        .map_err(|e| StoreError::Open { location: location.to_owned(), reason: e.to_string() })?;
    if !header.is_empty() && header.as_slice() != SQLITE_HEADER {
        return Err(StoreError::NotADatabase { location: location.to_owned() });
    }
    Ok(())
}

/// Whether this process cannot create files in `directory`. SQLite writes its `-wal` and `-shm`
/// files beside the database, so a read-only directory makes the database read-only.
///
/// The permission bits say so for everyone (and are honoured even for root, as for the file
/// itself); otherwise access(2) asks the kernel, which also knows about a directory owned by
/// someone else, an access list or a read-only mount, without writing anything there.
fn is_read_only_directory(directory: &Path) -> bool {
    if std::fs::metadata(directory).is_ok_and(|meta| meta.permissions().readonly()) {
        return true;
    }
    rustix::fs::access(directory, rustix::fs::Access::WRITE_OK).is_err()
}

fn unwritable_directory(directory: &Path, path: &Path) -> String {
    let name = path.file_name().unwrap_or(path.as_os_str()).to_string_lossy();
    format!(
        "the directory {} is not writable, and SQLite must create {name}-wal and {name}-shm beside the database",
        directory.display()
    )
}

/// A file SQLite keeps beside the database (`-wal`, `-shm`).
fn companion(path: &Path, suffix: &str) -> PathBuf {
    let mut name = path.as_os_str().to_owned();
    name.push(suffix);
    PathBuf::from(name)
}

impl Store {
    /// Whether this is a private in-memory database, which no other process can open (so no
    /// worker process can share it).
    pub fn is_in_memory(&self) -> bool {
        matches!(parse_target(self.target()), Ok(Target::Memory))
    }

    /// The backend a target names, without opening it: a PostgreSQL URL, or SQLite for a path
    /// or an `sqlite:` URL. [`StoreError::UnsupportedUrl`] (or an invalid value) otherwise.
    pub fn backend_of(target: &str) -> Result<Backend> {
        Ok(match parse_target(target)? {
            Target::Postgres(_) => Backend::Postgres,
            Target::Memory | Target::File(..) => Backend::Sqlite,
        })
    }

    /// A target as messages may show it: a password in a URL replaced by `***`, and a URL cut
    /// at 120 characters.
    pub fn redacted(target: &str) -> String {
        if target.contains("://") {
            shown_url(target)
        } else {
            target.to_owned()
        }
    }

    /// Opens (creating if missing) the database at `target`, a file path or an `sqlite://`
    /// URL, and brings its schema up to date. SQLite runs in WAL mode with foreign keys on and
    /// a 10 s busy timeout, so several processes can share one file.
    pub async fn open(target: &str) -> Result<Store> {
        Store::open_with(target, &OpenOptions::default()).await
    }

    /// Opens a database that must already exist (for queries): a mistyped path is an error,
    /// not a new empty file, and a read-only file is opened read-only.
    pub async fn open_existing(target: &str) -> Result<Store> {
        Store::open_with(target, &OpenOptions::existing()).await
    }

    /// The file a database target (a path or an `sqlite://` URL) names; `None` for an
    /// in-memory database, a PostgreSQL URL, or a target that is not a valid database at all.
    pub fn path_of(target: &str) -> Option<PathBuf> {
        match parse_target(target) {
            Ok(Target::File(path, _)) => Some(path),
            _ => None,
        }
    }

    /// A private in-memory database, for tests and dry runs.
    pub async fn open_in_memory() -> Result<Store> {
        Store::open_with(":memory:", &OpenOptions::default()).await
    }

    /// Opens with explicit options.
    pub async fn open_with(target: &str, options: &OpenOptions) -> Result<Store> {
        let store = Store::connect(target, options).await?;
        store.check_schema_owner().await?;
        if store.read_only {
            let (found, known) = (store.schema_version().await?, latest_version());
            if found > known {
                return Err(StoreError::NewerSchema { location: store.location.to_string(), found, known });
            }
            if found < known {
                return Err(StoreError::ReadOnly {
                    location: store.location.to_string(),
                    reason: format!(
                        "its schema (version {found}) needs upgrading to {known}; copy it somewhere writable"
                    ),
                });
            }
            return Ok(store);
        }
        store.migrate(store.migrator()).await?;
        Ok(store)
    }

    /// The migrations of this store's backend.
    fn migrator(&self) -> &'static Migrator {
        match self.backend() {
            Backend::Sqlite => &MIGRATOR,
            Backend::Postgres => &MIGRATOR_POSTGRES,
        }
    }

    /// Creates or opens a database migrated only up to `version` (inclusive). For tests of
    /// schema upgrades; not for normal use. (PostgreSQL's history starts at the version that
    /// introduced it: below that, nothing is created.)
    #[doc(hidden)]
    pub async fn open_at_schema_version(target: &str, version: i64) -> Result<Store> {
        let store = Store::connect(target, &OpenOptions::default()).await?;
        let migrations: Vec<Migration> =
            store.migrator().iter().filter(|m| m.version <= version).cloned().collect();
        let migrator = Migrator::new(Prefix(migrations)).await.map_err(|e| StoreError::Migration {
            location: store.location.to_string(),
            reason: e.to_string(),
        })?;
        store.migrate(&migrator).await?;
        Ok(store)
    }

    async fn connect(target: &str, options: &OpenOptions) -> Result<Store> {
        let (connect, location, read_only, max_connections) = match parse_target(target)? {
            Target::Postgres(url) => return Store::connect_postgres(target, &url, options).await,
            Target::Memory => {
                (SqliteConnectOptions::from_str("sqlite::memory:"), ":memory:".to_owned(), false, 1)
            }
            Target::File(path, mode) => {
                let options = with_mode(options, mode);
                let access = match check_file(&path, &options)? {
                    Access::Writable if mode == UrlMode::ReadOnly || options.read_only => Access::ReadOnly,
                    access => access,
                };
                let read_only = access != Access::Writable;
                let connect = SqliteConnectOptions::new()
                    .filename(&path)
                    .create_if_missing(options.create)
                    .read_only(read_only)
                    .immutable(access == Access::Immutable);
                (Ok(connect), path.display().to_string(), read_only, options.max_connections.max(1))
            }
        };
        let location: Arc<str> = location.into();
        let sqlite_error = |e| StoreError::from_sqlx(Backend::Sqlite, &location, e);
        let mut connect = connect
            .map_err(sqlite_error)?
            .foreign_keys(true)
            .busy_timeout(options.busy_timeout)
            .synchronous(SqliteSynchronous::Normal);
        if !read_only {
            // WAL lets readers run while one process writes; a read-only handle cannot switch it.
            connect = connect.journal_mode(SqliteJournalMode::Wal);
        }
        let pool = SqlitePoolOptions::new()
            .max_connections(max_connections)
            // An in-memory database lives only as long as its one connection.
            .min_connections(u32::from(max_connections == 1 && &*location == ":memory:"))
            .idle_timeout((&*location != ":memory:").then_some(Duration::from_secs(600)))
            .max_lifetime(None)
            .connect_with(connect)
            .await
            .map_err(sqlite_error)?;
        Ok(Store { pool: Pool::Sqlite(pool), location, target: target.into(), read_only })
    }

    /// Connects to a PostgreSQL server. The database must exist (`createdb`); the schema is
    /// then created or upgraded like an SQLite file's. A server that is down fails here as
    /// [`StoreError::Unreachable`], which [`crate::BlockingStore::open`] retries.
    async fn connect_postgres(target: &str, url: &str, options: &OpenOptions) -> Result<Store> {
        let location: Arc<str> = shown_url(url).into();
        let connect = PgConnectOptions::from_str(url)
            .map_err(|e| StoreError::invalid("database URL", format!("{location}: {e}")))?
            .application_name("effnas");
        // A watcher's sessions refuse every write on the server's side, whatever the code does.
        let connect = if options.read_only {
            connect.options([("default_transaction_read_only", "on")])
        } else {
            connect
        };
        let pg_error = |e| StoreError::from_sqlx(Backend::Postgres, &location, e);
        // One connection first, outside the pool: the pool retries a refused connection until
        // its timeout and then says only that it timed out, where this says why (refused, no
        // such database, wrong password) at once.
        let probe = sqlx::ConnectOptions::connect(&connect).await.map_err(pg_error)?;
        sqlx::Connection::close(probe).await.map_err(pg_error)?;
        let pool = PgPoolOptions::new()
            .max_connections(options.max_connections.max(1))
            .acquire_timeout(POSTGRES_ACQUIRE_TIMEOUT)
            .idle_timeout(Some(Duration::from_secs(600)))
            // A connection that the server dropped (a restart) is found out before it is used.
            .test_before_acquire(true)
            .connect_lazy_with(connect);
        Ok(Store {
            pool: Pool::Postgres(pool),
            location,
            target: target.into(),
            read_only: options.read_only,
        })
    }

    /// Refuses an SQLite file that holds some other program's tables, so that opening the
    /// wrong file never adds effnas tables to it.
    async fn check_schema_owner(&self) -> Result<()> {
        let sql = match self.backend() {
            Backend::Sqlite => {
                "SELECT name FROM sqlite_master WHERE type = 'table' AND name NOT LIKE 'sqlite%' ORDER BY name"
            }
            // The schema that unqualified names resolve to (`public` unless the URL's
            // `options=-csearch_path=…` says otherwise).
            Backend::Postgres => {
                "SELECT tablename::text FROM pg_catalog.pg_tables WHERE schemaname = current_schema() ORDER BY tablename"
            }
        };
        let tables: Vec<String> = on_pool!(self, pool => sqlx::query_scalar(sql).fetch_all(pool).await)
            .map_err(|e| self.db_error(e))?;
        let ours = tables.iter().any(|t| t == "_sqlx_migrations");
        if !ours && !tables.is_empty() {
            return Err(StoreError::Open {
                location: self.location.to_string(),
                reason: format!("not an effnas database (it holds tables {})", tables.join(", ")),
            });
        }
        Ok(())
    }

    /// The highest schema version applied to this database (0 for a new one).
    pub async fn schema_version(&self) -> Result<i64> {
        let sql = match self.backend() {
            Backend::Sqlite => "SELECT COUNT(*) FROM sqlite_master WHERE type = 'table' AND name = '_sqlx_migrations'",
            Backend::Postgres => {
                "SELECT COUNT(*) FROM pg_catalog.pg_tables WHERE schemaname = current_schema() AND tablename = '_sqlx_migrations'"
            }
        };
        let exists: i64 = on_pool!(self, pool => sqlx::query_scalar(sql).fetch_one(pool).await)
            .map_err(|e| self.db_error(e))?;
        if exists == 0 {
            return Ok(0);
        }
        let version: Option<i64> = on_pool!(self, pool => {
            sqlx::query_scalar("SELECT MAX(version) FROM _sqlx_migrations WHERE success").fetch_one(pool).await
        })
        .map_err(|e| self.db_error(e))?;
        Ok(version.unwrap_or(0))
    }

    async fn migrate(&self, migrator: &Migrator) -> Result<()> {
        let found = self.schema_version().await?;
        let known = latest_version();
        if found > known {
            return Err(StoreError::NewerSchema { location: self.location.to_string(), found, known });
        }
        // Several processes may open a new file at once; one applies each migration and the
        // others fail on it, then find it applied when they look again.
        let mut attempt = 0;
        loop {
            // PostgreSQL: sqlx holds an advisory lock while it migrates, so there the others
            // simply wait for the first.
            match on_pool!(self, pool => migrator.run(pool).await) {
                Ok(()) => return Ok(()),
                Err(error) if attempt < 3 && is_retryable(&error) => {
                    attempt += 1;
                    tracing::debug!(attempt, %error, "migration failed, likely raced by another process; looking again");
                    tokio::time::sleep(Duration::from_millis(50 * attempt)).await;
                }
                Err(error) => return Err(self.migration_error(error, known)),
            }
        }
    }

    /// What a failed migration means for the user.
    fn migration_error(&self, error: MigrateError, known: i64) -> StoreError {
        let location = self.location.to_string();
        match error {
            MigrateError::VersionMissing(found) => StoreError::NewerSchema { location, found, known },
            MigrateError::VersionMismatch(version) => StoreError::Migration {
                location,
                reason: format!(
                    "schema version {version} in the database differs from this build's; it was written by a different effnas"
                ),
            },
            MigrateError::Execute(e) => self.db_error(e),
            MigrateError::ExecuteMigration(e, version) => match self.db_error(e) {
                StoreError::Database { cause, .. } => StoreError::Migration {
                    location,
                    reason: format!("version {version}: {}", crate::error::driver_message(&cause)),
                },
                specific => specific,
            },
            other => StoreError::Migration { location, reason: other.to_string() },
        }
    }
}

/// Whether a migration error may come from another process applying the same migration at
/// the same moment (so looking again can succeed); a version missing from or different in this
/// build never heals.
fn is_retryable(error: &MigrateError) -> bool {
    !matches!(error, MigrateError::VersionMissing(_) | MigrateError::VersionMismatch(_))
}

/// The newest schema version this build knows (the same on both backends: a test holds the
/// migration folders to it).
pub fn latest_version() -> i64 {
    MIGRATOR.iter().map(|m| m.version).max().unwrap_or(0)
}

/// The newest schema version of each backend's migrations, for the test that keeps them equal.
#[doc(hidden)]
pub fn latest_versions() -> [(Backend, i64); 2] {
    let latest = |m: &Migrator| m.iter().map(|m| m.version).max().unwrap_or(0);
    [(Backend::Sqlite, latest(&MIGRATOR)), (Backend::Postgres, latest(&MIGRATOR_POSTGRES))]
}

#[cfg(test)]
mod tests {
    #[test]
    fn passwords_in_urls_are_redacted_and_the_rest_kept() {
        let cases = [
            (
                "postgres://effnas:s3cret@db.example:5432/effnas",
                "postgres://effnas:***@db.example:5432/effnas",
            ),
            ("postgres://effnas@db/effnas", "postgres://effnas@db/effnas"),
            (
                "postgresql://u:p%40ss@h/d?password=x&sslmode=require",
                "postgresql://u:***@h/d?password=***&sslmode=require",
            ),
            ("postgres://h", "postgres://h"),
            ("runs.db", "runs.db"),
        ];
        for (url, shown) in cases {
            assert_eq!(super::redact(url), shown);
        }
    }
}

/// A fixed list of migrations as a migration source.
#[derive(Debug)]
struct Prefix(Vec<Migration>);

impl MigrationSource<'static> for Prefix {
    fn resolve(
        self,
    ) -> Pin<Box<dyn Future<Output = Result<Vec<Migration>, sqlx::error::BoxDynError>> + Send + 'static>>
    {
        Box::pin(async move { Ok(self.0) })
    }
}
