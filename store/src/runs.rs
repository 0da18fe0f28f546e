//! Runs: create (with unique names), change status, hold (the run lease), look up, list with
//! trial counts.

use std::time::Duration;

use tracing::instrument;

use crate::error::{Result, StoreError};
use crate::lease::RunOwner;
use crate::model::{NewRun, Run, RunId, RunKind, RunNaming, RunStatus};
use crate::{from_sql_int, time, to_sql_int, Conn, Store, Tx};

/// A run with its trial aggregates, as the query returns it.
#[derive(sqlx::FromRow)]
struct RunRow {
    id: i64,
    name: String,
    kind: String,
    status: String,
    config: String,
    seed: Option<i64>,
    code_version: String,
    created_at: String,
    finished_at: Option<String>,
    trials_total: i64,
    trials_pending: i64,
    trials_running: i64,
    trials_done: i64,
    trials_failed: i64,
    best_reward: Option<f64>,
    last_trial_finished: Option<String>,
    owner: Option<String>,
    lease_until: Option<String>,
}

/// Every run column and the trial aggregates; a `WHERE` on `r` goes between this and
/// [`RUN_GROUP`]. Grouped by every selected run column, as PostgreSQL requires.
const RUN_SELECT: &str = "
SELECT r.id, r.name, r.kind, r.status, r.config, r.seed, r.code_version, r.created_at, r.finished_at,
       r.owner, r.lease_until,
       COUNT(t.id) AS trials_total,
       COALESCE(SUM(CASE WHEN t.state = 'pending' THEN 1 ELSE 0 END), 0) AS trials_pending,
       COALESCE(SUM(CASE WHEN t.state = 'running' THEN 1 ELSE 0 END), 0) AS trials_running,
       COALESCE(SUM(CASE WHEN t.state = 'complete' THEN 1 ELSE 0 END), 0) AS trials_done,
       COALESCE(SUM(CASE WHEN t.state = 'failed' THEN 1 ELSE 0 END), 0) AS trials_failed,
       MAX(CASE WHEN t.state = 'complete' THEN t.reward END) AS best_reward,
       MAX(t.finished_at) AS last_trial_finished
FROM runs r LEFT JOIN trials t ON t.run_id = r.id";

const RUN_GROUP: &str =
    " GROUP BY r.id, r.name, r.kind, r.status, r.config, r.seed, r.code_version, r.created_at, r.finished_at, r.owner, r.lease_until";

impl RunRow {
    fn into_run(self) -> Result<Run> {
        let what = |field: &str| format!("{field} of run {}", self.id);
        Ok(Run {
            id: RunId(self.id),
            kind: self.kind.parse().map_err(|e| StoreError::corrupt(what("kind"), e))?,
            status: self.status.parse().map_err(|e| StoreError::corrupt(what("status"), e))?,
            config: serde_json::from_str(&self.config).map_err(|e| StoreError::corrupt(what("config"), e))?,
            seed: self.seed.map(|s| from_sql_int(&what("seed"), s)).transpose()?,
            trials_total: from_sql_int(&what("trial count"), self.trials_total)?,
            trials_pending: from_sql_int(&what("trial count"), self.trials_pending)?,
            trials_running: from_sql_int(&what("trial count"), self.trials_running)?,
            trials_done: from_sql_int(&what("trial count"), self.trials_done)?,
            trials_failed: from_sql_int(&what("trial count"), self.trials_failed)?,
            name: self.name,
            code_version: self.code_version,
            started: self.created_at,
            finished: self.finished_at,
            best_reward: self.best_reward,
            last_trial_finished: self.last_trial_finished,
            owner: self.owner,
            lease_until: self.lease_until,
        })
    }
}

impl Store {
    /// Creates a run in status `running` and returns its id. Names are unique: a name the user
    /// chose that is taken is refused ([`StoreError::RunNameTaken`]), a derived one gets the
    /// first free `-2`, `-3`, … suffix ([`RunNaming`]). All-digit names are refused, since
    /// `--run 12` means run id 12.
    #[instrument(skip_all, fields(name = %crate::escape_control(&run.name), kind = %run.kind), err(level = "debug"))]
    pub async fn create_run(&self, run: &NewRun) -> Result<RunId> {
        check_name(&run.name, run.naming)?;
        let seed = run.seed.map(|s| to_sql_int("seed", s)).transpose()?;
        let config = serde_json::to_string(&run.config)
            .map_err(|e| StoreError::invalid("run config", e.to_string()))?;
        // The name check and the insert in one write transaction: two processes creating runs
        // of one name at once cannot both pass the check. SQLite's write transaction excludes
        // other writers; on PostgreSQL a lock on `runs` that only run inserts and updates
        // conflict with does the same (readers go on).
        let mut tx = self.begin_write().await?;
        if let Tx::Postgres(pg) = &mut tx {
            sqlx::query("LOCK TABLE runs IN SHARE ROW EXCLUSIVE MODE")
                .execute(&mut **pg)
                .await
                .map_err(|e| self.db_error(e))?;
        }
        let name = free_name(tx.conn(), &run.name, run.naming).await.map_err(|e| match e {
            NameError::Sql(e) => self.db_error(e),
            NameError::Store(e) => e,
        })?;
        let now = time::now();
        let id: i64 = on_conn!(tx.conn(), c => {
            sqlx::query_scalar(
                "INSERT INTO runs (name, kind, status, config, seed, code_version, created_at)
                 VALUES ($1, $2, 'running', $3, $4, $5, $6) RETURNING id",
            )
            .bind(&name)
            .bind(run.kind.as_str())
            .bind(&config)
            .bind(seed)
            .bind(&run.code_version)
            .bind(&now)
            .fetch_one(c)
            .await
        })
        .map_err(|e| self.db_error(e))?;
        tx.commit().await.map_err(|e| self.db_error(e))?;
        tracing::debug!(run = id, "created run");
        Ok(RunId(id))
    }

    /// Makes `owner` the holder of `run` for `lease` from now. Refused with
    /// [`StoreError::RunHeld`] while another holder's lease runs and that holder is not known to
    /// be gone (see [`RunOwner::is_gone`]); taking the run again as its own holder renews it.
    #[instrument(skip_all, fields(run = %run), err(level = "debug"))]
    pub async fn acquire_run(&self, run: RunId, owner: &RunOwner, lease: Duration) -> Result<()> {
        let mut tx = self.begin_write().await?;
        let holder = current_holder(tx.conn(), run, self.for_update())
            .await
            .map_err(|e| self.db_error(e))?
            .ok_or_else(|| StoreError::RunNotFound(run.to_string()))?;
        if let Some(held) = holder.blocking(run, owner) {
            return Err(held);
        }
        let (text, until) = (owner.as_text(), lease_end(lease));
        on_conn!(tx.conn(), c => {
            sqlx::query("UPDATE runs SET owner = $1, lease_until = $2 WHERE id = $3")
                .bind(&text)
                .bind(&until)
                .bind(run.0)
                .execute(c)
                .await
                .map(drop)
        })
        .map_err(|e| self.db_error(e))?;
        tx.commit().await.map_err(|e| self.db_error(e))?;
        tracing::debug!(run = %run, "holding the run");
        Ok(())
    }

    /// [`StoreError::RunHeld`] when another live holder has `run`, without taking it: for a
    /// command to refuse before it loads data. [`Store::acquire_run`] decides for good.
    pub async fn check_run_free(&self, run: RunId, owner: &RunOwner) -> Result<()> {
        let mut conn = self.acquire().await?;
        let holder = current_holder(conn.conn(), run, "").await.map_err(|e| self.db_error(e))?;
        match holder.and_then(|h| h.blocking(run, owner)) {
            Some(held) => Err(held),
            None => Ok(()),
        }
    }

    /// Extends `owner`'s lease on `run` to `lease` from now. [`StoreError::RunLost`] when the
    /// run is no longer `owner`'s (another process took it over after the lease lapsed).
    #[instrument(skip_all, fields(run = %run), err(level = "debug"))]
    pub async fn renew_run(&self, run: RunId, owner: &RunOwner, lease: Duration) -> Result<()> {
        let (until, text) = (lease_end(lease), owner.as_text());
        let updated = on_pool!(self, pool => {
            sqlx::query("UPDATE runs SET lease_until = $1 WHERE id = $2 AND owner = $3")
                .bind(&until)
                .bind(run.0)
                .bind(&text)
                .execute(pool)
                .await
                .map(|done| done.rows_affected())
        })
        .map_err(|e| self.db_error(e))?;
        if updated == 1 {
            return Ok(());
        }
        let holder: Option<Option<String>> = on_pool!(self, pool => {
            sqlx::query_scalar("SELECT owner FROM runs WHERE id = $1").bind(run.0).fetch_optional(pool).await
        })
        .map_err(|e| self.db_error(e))?;
        match holder {
            None => Err(StoreError::RunNotFound(run.to_string())),
            Some(holder) => Err(StoreError::RunLost {
                run: run.0,
                holder: holder
                    .map_or_else(|| "nobody (it was released)".to_owned(), |h| RunOwner::describe(&h)),
            }),
        }
    }

    /// Gives up `owner`'s lease on `run` (a no-op when it is not `owner`'s), so that a resume
    /// need not wait.
    #[instrument(skip_all, fields(run = %run), err(level = "debug"))]
    pub async fn release_run(&self, run: RunId, owner: &RunOwner) -> Result<()> {
        let text = owner.as_text();
        on_pool!(self, pool => {
            sqlx::query("UPDATE runs SET owner = NULL, lease_until = NULL WHERE id = $1 AND owner = $2")
                .bind(run.0)
                .bind(&text)
                .execute(pool)
                .await
                .map(drop)
        })
        .map_err(|e| self.db_error(e))?;
        Ok(())
    }

    /// Sets a run's status. A finished status (complete, failed, interrupted) records the end
    /// time; `running` (a resumed run) clears it.
    #[instrument(skip_all, fields(run = %run, status = %status), err(level = "debug"))]
    pub async fn set_run_status(&self, run: RunId, status: RunStatus) -> Result<()> {
        let finished = status.is_finished().then(time::now);
        let updated = on_pool!(self, pool => {
            sqlx::query("UPDATE runs SET status = $1, finished_at = $2 WHERE id = $3")
                .bind(status.as_str())
                .bind(&finished)
                .bind(run.0)
                .execute(pool)
                .await
                .map(|done| done.rows_affected())
        })
        .map_err(|e| self.db_error(e))?;
        if updated == 0 {
            return Err(StoreError::RunNotFound(run.to_string()));
        }
        Ok(())
    }

    /// One run with its trial counts.
    pub async fn run(&self, id: RunId) -> Result<Run> {
        let sql = format!("{RUN_SELECT} WHERE r.id = $1{RUN_GROUP}");
        let row: Option<RunRow> =
            on_pool!(self, pool => sqlx::query_as(&sql).bind(id.0).fetch_optional(pool).await)
                .map_err(|e| self.db_error(e))?;
        row.ok_or_else(|| StoreError::RunNotFound(id.to_string()))?.into_run()
    }

    /// A run by what a user typed. All digits: the run with that id (names are never all
    /// digits). `=NAME`: the run named exactly `NAME` (also reaches an all-digit name from a
    /// database written before names were checked). Anything else: the run of that name
    /// (surrounding spaces ignored). Several runs of one name (possible in databases written
    /// before names were unique) are refused with [`StoreError::RunNameAmbiguous`].
    pub async fn find_run(&self, selector: &str) -> Result<Run> {
        let trimmed = selector.trim();
        if !trimmed.is_empty() && trimmed.bytes().all(|b| b.is_ascii_digit()) {
            let id = trimmed.parse::<i64>().map_err(|_| StoreError::RunNotFound(trimmed.to_owned()))?;
            return self.run(RunId(id)).await;
        }
        let name = selector.strip_prefix('=').unwrap_or(trimmed);
        let ids: Vec<i64> = on_pool!(self, pool => {
            sqlx::query_scalar("SELECT id FROM runs WHERE name = $1 ORDER BY id").bind(name).fetch_all(pool).await
        })
        .map_err(|e| self.db_error(e))?;
        match ids[..] {
            [] => Err(StoreError::RunNotFound(name.to_owned())),
            [id] => self.run(RunId(id)).await,
            _ => Err(StoreError::RunNameAmbiguous {
                name: name.to_owned(),
                ids: ids.iter().map(i64::to_string).collect::<Vec<_>>().join(", "),
            }),
        }
    }

    /// The most recently created run, if any.
    pub async fn latest_run(&self) -> Result<Option<Run>> {
        let sql = format!("{RUN_SELECT} WHERE r.id = (SELECT MAX(id) FROM runs){RUN_GROUP}");
        let row: Option<RunRow> = on_pool!(self, pool => sqlx::query_as(&sql).fetch_optional(pool).await)
            .map_err(|e| self.db_error(e))?;
        row.map(RunRow::into_run).transpose()
    }

    /// Every run, oldest first, with trial counts.
    pub async fn runs(&self) -> Result<Vec<Run>> {
        let sql = format!("{RUN_SELECT}{RUN_GROUP} ORDER BY r.id");
        let rows: Vec<RunRow> = on_pool!(self, pool => sqlx::query_as(&sql).fetch_all(pool).await)
            .map_err(|e| self.db_error(e))?;
        rows.into_iter().map(RunRow::into_run).collect()
    }

    /// Runs of one kind, oldest first.
    pub async fn runs_of_kind(&self, kind: RunKind) -> Result<Vec<Run>> {
        let sql = format!("{RUN_SELECT} WHERE r.kind = $1{RUN_GROUP} ORDER BY r.id");
        let rows: Vec<RunRow> =
            on_pool!(self, pool => sqlx::query_as(&sql).bind(kind.as_str()).fetch_all(pool).await)
                .map_err(|e| self.db_error(e))?;
        rows.into_iter().map(RunRow::into_run).collect()
    }
}

/// Refuses names that `--run` could not tell apart from an id, and, for names the user chose,
/// control characters (a name is printed in tables and messages).
fn check_name(name: &str, naming: RunNaming) -> Result<()> {
    if name.trim().is_empty() {
        return Err(StoreError::invalid("run name", "must not be empty"));
    }
    if name.trim().bytes().all(|b| b.is_ascii_digit()) {
        return Err(StoreError::invalid(
            "run name",
            format!("{name:?} is all digits, which `--run` reads as a run id; add a letter"),
        ));
    }
    if naming == RunNaming::Chosen && name.chars().any(char::is_control) {
        return Err(StoreError::invalid("run name", format!("{:?} holds control characters", name)));
    }
    Ok(())
}

enum NameError {
    Sql(sqlx::Error),
    Store(StoreError),
}

impl From<sqlx::Error> for NameError {
    fn from(e: sqlx::Error) -> Self {
        NameError::Sql(e)
    }
}

/// The name a new run gets: `wanted` when free; when taken, refused for a chosen name, and the
/// first free `wanted-N` (N ≥ 2) for a derived one.
async fn free_name(
    conn: Conn<'_>,
    wanted: &str,
    naming: RunNaming,
) -> std::result::Result<String, NameError> {
    on_conn!(conn, c => {
        let mut existing: Option<i64> =
            sqlx::query_scalar("SELECT id FROM runs WHERE name = $1 ORDER BY id LIMIT 1")
                .bind(wanted)
                .fetch_optional(&mut *c)
                .await?;
        let Some(first) = existing else { return Ok(wanted.to_owned()) };
        if naming == RunNaming::Chosen {
            return Err(NameError::Store(StoreError::RunNameTaken { name: wanted.to_owned(), existing: first }));
        }
        let mut n = 2u64;
        loop {
            let candidate = format!("{wanted}-{n}");
            existing = sqlx::query_scalar("SELECT id FROM runs WHERE name = $1 LIMIT 1")
                .bind(&candidate)
                .fetch_optional(&mut *c)
                .await?;
            if existing.is_none() {
                return Ok(candidate);
            }
            n += 1;
        }
    })
}

/// The stored holder of a run.
struct Holder {
    owner: Option<String>,
    lease_until: Option<String>,
}

impl Holder {
    /// The refusal when this holder keeps `owner` from taking `run`: another process, whose
    /// lease has not lapsed and which is not known to be gone.
    fn blocking(self, run: RunId, owner: &RunOwner) -> Option<StoreError> {
        let held_by = self.owner?;
        if held_by == owner.as_text() {
            return None;
        }
        let until = self.lease_until.unwrap_or_default();
        // Stored timestamps compare as text; an unreadable one counts as lapsed.
        let lapsed = time::parse_millis(&until).is_none_or(|end| end <= time::now_millis());
        if lapsed || RunOwner::parse(&held_by).is_some_and(|h| h.is_gone()) {
            return None;
        }
        Some(StoreError::RunHeld { run: run.0, holder: RunOwner::describe(&held_by), until })
    }
}

/// The holder of `run`; `lock` is [`Store::for_update`] inside a transaction that then writes
/// the run (two processes must not both see a lapsed lease and take the run), or empty.
async fn current_holder(conn: Conn<'_>, run: RunId, lock: &str) -> sqlx::Result<Option<Holder>> {
    let sql = format!("SELECT owner, lease_until FROM runs WHERE id = $1{lock}");
    let row: Option<(Option<String>, Option<String>)> =
        on_conn!(conn, c => sqlx::query_as(&sql).bind(run.0).fetch_optional(c).await)?;
    Ok(row.map(|(owner, lease_until)| Holder { owner, lease_until }))
}

fn lease_end(lease: Duration) -> String {
    let lease = i64::try_from(lease.as_millis()).unwrap_or(i64::MAX);
    time::format_millis(time::now_millis().saturating_add(lease))
}
