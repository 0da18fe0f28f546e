//! Runs: create, change status, look up, list with trial counts.

use tracing::instrument;

use crate::error::{Result, StoreError};
use crate::model::{NewRun, Run, RunId, RunKind, RunStatus};
use crate::{from_sql_int, time, to_sql_int, Store};

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
}

/// Every run column and the trial aggregates; a `WHERE` on `r` goes between this and
/// [`RUN_GROUP`]. Grouped by every selected run column, as PostgreSQL requires.
const RUN_SELECT: &str = "
SELECT r.id, r.name, r.kind, r.status, r.config, r.seed, r.code_version, r.created_at, r.finished_at,
       COUNT(t.id) AS trials_total,
       COALESCE(SUM(CASE WHEN t.state = 'pending' THEN 1 ELSE 0 END), 0) AS trials_pending,
       COALESCE(SUM(CASE WHEN t.state = 'running' THEN 1 ELSE 0 END), 0) AS trials_running,
       COALESCE(SUM(CASE WHEN t.state = 'complete' THEN 1 ELSE 0 END), 0) AS trials_done,
       COALESCE(SUM(CASE WHEN t.state = 'failed' THEN 1 ELSE 0 END), 0) AS trials_failed,
       MAX(CASE WHEN t.state = 'complete' THEN t.reward END) AS best_reward,
       MAX(t.finished_at) AS last_trial_finished
FROM runs r LEFT JOIN trials t ON t.run_id = r.id";

const RUN_GROUP: &str =
    " GROUP BY r.id, r.name, r.kind, r.status, r.config, r.seed, r.code_version, r.created_at, r.finished_at";

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
        })
    }
}

impl Store {
    /// Creates a run in status `running` and returns its id.
    #[instrument(skip_all, fields(name = %run.name, kind = %run.kind), err(level = "debug"))]
    pub async fn create_run(&self, run: &NewRun) -> Result<RunId> {
        if run.name.trim().is_empty() {
            return Err(StoreError::invalid("run name", "must not be empty"));
        }
        let seed = run.seed.map(|s| to_sql_int("seed", s)).transpose()?;
        let config = serde_json::to_string(&run.config)
            .map_err(|e| StoreError::invalid("run config", e.to_string()))?;
        let id: i64 = sqlx::query_scalar(
            "INSERT INTO runs (name, kind, status, config, seed, code_version, created_at)
             VALUES ($1, $2, 'running', $3, $4, $5, $6) RETURNING id",
        )
        .bind(&run.name)
        .bind(run.kind.as_str())
        .bind(config)
        .bind(seed)
        .bind(&run.code_version)
        .bind(time::now())
        .fetch_one(&self.pool)
        .await
        .map_err(|e| self.db_error(e))?;
        tracing::debug!(run = id, "created run");
        Ok(RunId(id))
    }

    /// Sets a run's status. A finished status (complete, failed, interrupted) records the end
    /// time; `running` (a resumed run) clears it.
    #[instrument(skip_all, fields(run = %run, status = %status), err(level = "debug"))]
    pub async fn set_run_status(&self, run: RunId, status: RunStatus) -> Result<()> {
        let finished = status.is_finished().then(time::now);
        let updated = sqlx::query("UPDATE runs SET status = $1, finished_at = $2 WHERE id = $3")
            .bind(status.as_str())
            .bind(finished)
            .bind(run.0)
            .execute(&self.pool)
            .await
            .map_err(|e| self.db_error(e))?;
        if updated.rows_affected() == 0 {
            return Err(StoreError::RunNotFound(run.to_string()));
        }
        Ok(())
    }

    /// One run with its trial counts.
    pub async fn run(&self, id: RunId) -> Result<Run> {
        let sql = format!("{RUN_SELECT} WHERE r.id = $1{RUN_GROUP}");
        let row: Option<RunRow> =
            sqlx::query_as(&sql).bind(id.0).fetch_optional(&self.pool).await.map_err(|e| self.db_error(e))?;
        row.ok_or_else(|| StoreError::RunNotFound(id.to_string()))?.into_run()
    }

    /// A run by what a user typed: its id, or else its name (the newest run of that name).
    pub async fn find_run(&self, selector: &str) -> Result<Run> {
        let selector = selector.trim();
        if let Ok(id) = selector.parse::<i64>() {
            match self.run(RunId(id)).await {
                Err(StoreError::RunNotFound(_)) => {}
                other => return other,
            }
        }
        let sql = format!("{RUN_SELECT} WHERE r.id = (SELECT MAX(id) FROM runs WHERE name = $1){RUN_GROUP}");
        let row: Option<RunRow> = sqlx::query_as(&sql)
            .bind(selector)
            .fetch_optional(&self.pool)
            .await
            .map_err(|e| self.db_error(e))?;
        row.ok_or_else(|| StoreError::RunNotFound(selector.to_owned()))?.into_run()
    }

    /// The most recently created run, if any.
    pub async fn latest_run(&self) -> Result<Option<Run>> {
        let sql = format!("{RUN_SELECT} WHERE r.id = (SELECT MAX(id) FROM runs){RUN_GROUP}");
        let row: Option<RunRow> =
            sqlx::query_as(&sql).fetch_optional(&self.pool).await.map_err(|e| self.db_error(e))?;
        row.map(RunRow::into_run).transpose()
    }

    /// Every run, oldest first, with trial counts.
    pub async fn runs(&self) -> Result<Vec<Run>> {
        let sql = format!("{RUN_SELECT}{RUN_GROUP} ORDER BY r.id");
        let rows: Vec<RunRow> =
            sqlx::query_as(&sql).fetch_all(&self.pool).await.map_err(|e| self.db_error(e))?;
        rows.into_iter().map(RunRow::into_run).collect()
    }

    /// Runs of one kind, oldest first.
    pub async fn runs_of_kind(&self, kind: RunKind) -> Result<Vec<Run>> {
        let sql = format!("{RUN_SELECT} WHERE r.kind = $1{RUN_GROUP} ORDER BY r.id");
        let rows: Vec<RunRow> = sqlx::query_as(&sql)
            .bind(kind.as_str())
            .fetch_all(&self.pool)
            .await
            .map_err(|e| self.db_error(e))?;
        rows.into_iter().map(RunRow::into_run).collect()
    }
}
