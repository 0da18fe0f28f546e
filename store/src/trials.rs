//! Trials: queue, claim, heartbeat, record, finish, requeue, reuse, query.

use std::time::Duration;

use sqlx::{QueryBuilder, Sqlite, SqliteConnection};
use tracing::instrument;

use crate::error::{Result, StoreError};
use crate::model::{
    ClaimedTrial, EpochMetrics, FailureKind, NewTrial, Requeued, RunId, Trial, TrialFilter, TrialId,
    TrialMetrics, TrialState,
};
use crate::{from_sql_int, time, to_sql_int, Store};

/// Every trial column, in the order of [`TrialRow`].
const TRIAL_COLUMNS: &str = "id, run_id, state, arch, arch_hash, blocks, resolution, proxy_key, step, worker, attempts, \
     created_at, started_at, heartbeat_at, finished_at, accuracy, loss, params, flops, reward, latency_ms, seconds, \
     images_per_second, extra, failure, error, reused_from";

#[derive(sqlx::FromRow)]
struct TrialRow {
    id: i64,
    run_id: i64,
    state: String,
    arch: String,
    arch_hash: String,
    blocks: String,
    resolution: i64,
    proxy_key: String,
    step: Option<i64>,
    worker: Option<String>,
    attempts: i64,
    created_at: String,
    started_at: Option<String>,
    heartbeat_at: Option<String>,
    finished_at: Option<String>,
    accuracy: Option<f64>,
    loss: Option<f64>,
    params: i64,
    flops: i64,
    reward: Option<f64>,
    latency_ms: Option<f64>,
    seconds: Option<f64>,
    images_per_second: Option<f64>,
    extra: Option<String>,
    failure: Option<String>,
    error: Option<String>,
    reused_from: Option<i64>,
}

impl TrialRow {
    fn into_trial(self) -> Result<Trial> {
        let what = |field: &str| format!("{field} of trial {}", self.id);
        Ok(Trial {
            id: TrialId(self.id),
            run_id: RunId(self.run_id),
            state: self.state.parse().map_err(|e| StoreError::corrupt(what("state"), e))?,
            blocks: split_blocks(&self.blocks),
            resolution: from_sql_int(&what("resolution"), self.resolution)?,
            attempts: from_sql_int(&what("attempts"), self.attempts)?,
            params: from_sql_int(&what("params"), self.params)?,
            flops: from_sql_int(&what("flops"), self.flops)?,
            extra: self
                .extra
                .as_deref()
                .map(serde_json::from_str)
                .transpose()
                .map_err(|e| StoreError::corrupt(what("extra"), e))?,
            failure: self
                .failure
                .as_deref()
                .map(str::parse)
                .transpose()
                .map_err(|e| StoreError::corrupt(what("failure"), e))?,
            arch_json: self.arch,
            arch_hash: self.arch_hash,
            proxy_key: self.proxy_key,
            step: self.step,
            worker: self.worker,
            created: self.created_at,
            started: self.started_at,
            heartbeat: self.heartbeat_at,
            finished: self.finished_at,
            accuracy: self.accuracy,
            loss: self.loss,
            reward: self.reward,
            latency_ms: self.latency_ms,
            seconds: self.seconds,
            images_per_second: self.images_per_second,
            error: self.error,
            reused_from: self.reused_from.map(TrialId),
        })
    }
}

#[derive(sqlx::FromRow)]
struct EpochRow {
    epoch: i64,
    train_loss: Option<f64>,
    train_accuracy: Option<f64>,
    val_loss: Option<f64>,
    val_accuracy: Option<f64>,
    learning_rate: Option<f64>,
    seconds: Option<f64>,
}

/// Block strings are stored comma-joined, the form `effnas arch` accepts.
fn split_blocks(joined: &str) -> Vec<String> {
    joined.split(',').filter(|b| !b.is_empty()).map(str::to_owned).collect()
}

/// What the store derives from a trial's architecture before inserting it.
struct PreparedTrial<'a> {
    trial: &'a NewTrial,
    arch_json: String,
    arch_hash: String,
    blocks: String,
    resolution: i64,
    params: i64,
    flops: i64,
}

fn prepare(trial: &NewTrial) -> Result<PreparedTrial<'_>> {
    if trial.proxy_key.trim().is_empty() {
        return Err(StoreError::invalid("proxy_key", "must not be empty"));
    }
    trial.arch.validate().map_err(|e| StoreError::invalid("architecture", e.to_string()))?;
    let arch_json =
        serde_json::to_string(&trial.arch).map_err(|e| StoreError::invalid("architecture", e.to_string()))?;
    let cost = effnas_space::cost(&trial.arch);
    Ok(PreparedTrial {
        trial,
        arch_json,
        arch_hash: effnas_space::arch_hash(&trial.arch),
        blocks: trial.arch.block_strings().join(","),
        resolution: i64::from(trial.arch.resolution),
        params: to_sql_int("params", cost.params)?,
        flops: to_sql_int("flops", cost.macs)?,
    })
}

/// Metrics checked and converted for SQL: a result that cannot be right is refused rather
/// than stored (a percentage given as accuracy would silently wreck every ranking).
struct CheckedMetrics {
    params: i64,
    flops: i64,
    extra: Option<String>,
}

fn check_metrics(metrics: &TrialMetrics) -> Result<CheckedMetrics> {
    let finite = |field: &'static str, value: f64| {
        if value.is_finite() {
            Ok(())
        } else {
            Err(StoreError::invalid(field, format!("{value} is not a finite number")))
        }
    };
    finite("accuracy", metrics.accuracy)?;
    if !(0.0..=1.0).contains(&metrics.accuracy) {
        return Err(StoreError::invalid(
            "accuracy",
            format!("{} is outside 0..1 (give a fraction, not a percentage)", metrics.accuracy),
        ));
    }
    finite("loss", metrics.loss)?;
    finite("reward", metrics.reward)?;
    finite("seconds", metrics.seconds)?;
    finite("images_per_second", metrics.images_per_second)?;
    if let Some(latency) = metrics.latency_ms {
        finite("latency_ms", latency)?;
    }
    let extra = metrics
        .extra
        .as_ref()
        .map(serde_json::to_string)
        .transpose()
        .map_err(|e| StoreError::invalid("extra", e.to_string()))?;
    Ok(CheckedMetrics {
        params: to_sql_int("params", metrics.params)?,
        flops: to_sql_int("flops", metrics.flops)?,
        extra,
    })
}

/// NaN and infinities become NULL: a diverged epoch is still worth a row.
fn finite_or_null(value: Option<f64>) -> Option<f64> {
    value.filter(|v| v.is_finite())
}

async fn insert_prepared(
    conn: &mut SqliteConnection,
    run: RunId,
    p: &PreparedTrial<'_>,
    state: TrialState,
    now: &str,
) -> sqlx::Result<i64> {
    sqlx::query_scalar(
        "INSERT INTO trials (run_id, arch, arch_hash, blocks, resolution, proxy_key, step, state, created_at, params, flops)
         VALUES ($1, $2, $3, $4, $5, $6, $7, $8, $9, $10, $11) RETURNING id",
    )
    .bind(run.0)
    .bind(&p.arch_json)
    .bind(&p.arch_hash)
    .bind(&p.blocks)
    .bind(p.resolution)
    .bind(&p.trial.proxy_key)
    .bind(p.trial.step)
    .bind(state.as_str())
    .bind(now)
    .bind(p.params)
    .bind(p.flops)
    .fetch_one(conn)
    .await
}

async fn write_metrics(
    conn: &mut SqliteConnection,
    id: i64,
    metrics: &TrialMetrics,
    checked: &CheckedMetrics,
    now: &str,
) -> sqlx::Result<u64> {
    let done = sqlx::query(
        "UPDATE trials SET state = 'complete', finished_at = $1, accuracy = $2, loss = $3, params = $4, flops = $5,
                reward = $6, latency_ms = $7, seconds = $8, images_per_second = $9, extra = $10, failure = NULL,
                error = NULL
         WHERE id = $11 AND state IN ('pending', 'running')",
    )
    .bind(now)
    .bind(metrics.accuracy)
    .bind(metrics.loss)
    .bind(checked.params)
    .bind(checked.flops)
    .bind(metrics.reward)
    .bind(metrics.latency_ms)
    .bind(metrics.seconds)
    .bind(metrics.images_per_second)
    .bind(checked.extra.as_deref())
    .bind(id)
    .execute(conn)
    .await?;
    Ok(done.rows_affected())
}

async fn upsert_epoch(conn: &mut SqliteConnection, trial: i64, epoch: &EpochMetrics) -> sqlx::Result<()> {
    sqlx::query(
        "INSERT INTO trial_epochs (trial_id, epoch, train_loss, train_accuracy, val_loss, val_accuracy, learning_rate, seconds)
         VALUES ($1, $2, $3, $4, $5, $6, $7, $8)
         ON CONFLICT (trial_id, epoch) DO UPDATE SET
             train_loss = excluded.train_loss, train_accuracy = excluded.train_accuracy,
             val_loss = excluded.val_loss, val_accuracy = excluded.val_accuracy,
             learning_rate = excluded.learning_rate, seconds = excluded.seconds",
    )
    .bind(trial)
    .bind(i64::from(epoch.epoch))
    .bind(finite_or_null(epoch.train_loss))
    .bind(finite_or_null(epoch.train_accuracy))
    .bind(finite_or_null(epoch.val_loss))
    .bind(finite_or_null(epoch.val_accuracy))
    .bind(finite_or_null(epoch.learning_rate))
    .bind(finite_or_null(epoch.seconds))
    .execute(conn)
    .await?;
    Ok(())
}

fn is_foreign_key_violation(error: &sqlx::Error) -> bool {
    matches!(error, sqlx::Error::Database(db) if db.kind() == sqlx::error::ErrorKind::ForeignKeyViolation)
}

/// The row a claim returns.
#[derive(sqlx::FromRow)]
struct ClaimRow {
    id: i64,
    run_id: i64,
    arch: String,
    arch_hash: String,
    proxy_key: String,
    attempts: i64,
}

impl ClaimRow {
    fn into_claimed(self, arch: effnas_space::ArchSpec) -> Result<ClaimedTrial> {
        Ok(ClaimedTrial {
            id: TrialId(self.id),
            run_id: RunId(self.run_id),
            arch,
            arch_hash: self.arch_hash,
            proxy_key: self.proxy_key,
            attempt: from_sql_int("attempts", self.attempts)?,
        })
    }
}

/// Moves the oldest pending trial of `run` to running for `worker` and returns it. A retried
/// trial loses the curve its dead worker left, which would mix with the new one.
async fn take_pending(
    conn: &mut SqliteConnection,
    run: RunId,
    worker: &str,
    now: &str,
) -> sqlx::Result<Option<ClaimRow>> {
    // The inner SELECT picks, the outer `state = 'pending'` re-checks: on SQLite the statement
    // holds the write lock throughout; on PostgreSQL the inner SELECT will take
    // `FOR UPDATE SKIP LOCKED`.
    let row: Option<ClaimRow> = sqlx::query_as(
        "UPDATE trials
         SET state = 'running', worker = $1, attempts = attempts + 1, started_at = $2, heartbeat_at = $2,
             failure = NULL, error = NULL
         WHERE id = (SELECT id FROM trials WHERE run_id = $3 AND state = 'pending' ORDER BY id LIMIT 1)
           AND state = 'pending'
         RETURNING id, run_id, arch, arch_hash, proxy_key, attempts",
    )
    .bind(worker)
    .bind(now)
    .bind(run.0)
    .fetch_optional(&mut *conn)
    .await?;
    if let Some(row) = &row {
        if row.attempts > 1 {
            sqlx::query("DELETE FROM trial_epochs WHERE trial_id = $1").bind(row.id).execute(conn).await?;
        }
    }
    Ok(row)
}

/// Fails one pending or running trial; the number of rows changed (0 when it is missing or
/// already finished).
async fn mark_failed(
    conn: &mut SqliteConnection,
    id: i64,
    kind: FailureKind,
    message: &str,
    now: &str,
) -> sqlx::Result<u64> {
    let done = sqlx::query(
        "UPDATE trials SET state = 'failed', finished_at = $1, failure = $2, error = $3
         WHERE id = $4 AND state IN ('pending', 'running')",
    )
    .bind(now)
    .bind(kind.as_str())
    .bind(message)
    .bind(id)
    .execute(conn)
    .await?;
    Ok(done.rows_affected())
}

/// Fails, as lost, the running trials silent since `cutoff` that have used up their attempts.
async fn fail_lost(
    conn: &mut SqliteConnection,
    cutoff: &str,
    max_attempts: u32,
    now: &str,
) -> sqlx::Result<Vec<i64>> {
    sqlx::query_scalar(
        "UPDATE trials SET state = 'failed', finished_at = $1, failure = $2, error = $3
         WHERE state = 'running' AND COALESCE(heartbeat_at, created_at) < $4 AND attempts >= $5 RETURNING id",
    )
    .bind(now)
    .bind(FailureKind::Lost.as_str())
    .bind(format!("its worker stopped sending heartbeats on each of {max_attempts} attempts"))
    .bind(cutoff)
    .bind(i64::from(max_attempts))
    .fetch_all(conn)
    .await
}

/// Puts the running trials silent since `cutoff` back to pending.
async fn requeue_silent(conn: &mut SqliteConnection, cutoff: &str) -> sqlx::Result<Vec<i64>> {
    sqlx::query_scalar(
        "UPDATE trials SET state = 'pending', worker = NULL
         WHERE state = 'running' AND COALESCE(heartbeat_at, created_at) < $1 RETURNING id",
    )
    .bind(cutoff)
    .fetch_all(conn)
    .await
}

impl Store {
    /// Queues one trial (state `pending`); its parameters and multiply-adds come from the cost
    /// model until a result replaces them.
    #[instrument(skip_all, fields(run = %run), err(level = "debug"))]
    pub async fn insert_trial(&self, run: RunId, trial: &NewTrial) -> Result<TrialId> {
        let ids = self.insert_trials(run, std::slice::from_ref(trial)).await?;
        Ok(ids[0])
    }

    /// Queues trials in one transaction (all or none), in order; returns their ids.
    #[instrument(skip_all, fields(run = %run, count = trials.len()), err(level = "debug"))]
    pub async fn insert_trials(&self, run: RunId, trials: &[NewTrial]) -> Result<Vec<TrialId>> {
        let prepared = trials.iter().map(prepare).collect::<Result<Vec<_>>>()?;
        let now = time::now();
        let mut tx = self.begin_write().await?;
        let mut ids = Vec::with_capacity(prepared.len());
        for p in &prepared {
            let id = insert_prepared(&mut tx, run, p, TrialState::Pending, &now)
                .await
                .map_err(|e| self.run_error(run, e))?;
            ids.push(TrialId(id));
        }
        tx.commit().await.map_err(|e| self.db_error(e))?;
        Ok(ids)
    }

    /// Records a trial that was trained outside the queue (`effnas train --db`): inserted
    /// complete, with its metrics and curve, in one transaction.
    #[instrument(skip_all, fields(run = %run), err(level = "debug"))]
    pub async fn insert_completed_trial(
        &self,
        run: RunId,
        trial: &NewTrial,
        metrics: &TrialMetrics,
        epochs: &[EpochMetrics],
    ) -> Result<TrialId> {
        let prepared = prepare(trial)?;
        let checked = check_metrics(metrics)?;
        let now = time::now();
        let mut tx = self.begin_write().await?;
        let id = insert_prepared(&mut tx, run, &prepared, TrialState::Running, &now)
            .await
            .map_err(|e| self.run_error(run, e))?;
        for epoch in epochs {
            upsert_epoch(&mut tx, id, epoch).await.map_err(|e| self.db_error(e))?;
        }
        write_metrics(&mut tx, id, metrics, &checked, &now).await.map_err(|e| self.db_error(e))?;
        tx.commit().await.map_err(|e| self.db_error(e))?;
        Ok(TrialId(id))
    }

    /// Records in `run` a trial whose result is copied from `source`, an earlier trial of the
    /// same architecture under the same proxy settings (see [`Store::find_measured`]). The copy
    /// is complete at once, points back with `reused_from`, and carries over no curve.
    #[instrument(skip_all, fields(run = %run, source = %source), err(level = "debug"))]
    pub async fn insert_reused_trial(
        &self,
        run: RunId,
        trial: &NewTrial,
        source: TrialId,
    ) -> Result<TrialId> {
        let prepared = prepare(trial)?;
        let now = time::now();
        let mut tx = self.begin_write().await?;
        let id: Option<i64> = sqlx::query_scalar(
            "INSERT INTO trials (run_id, arch, arch_hash, blocks, resolution, proxy_key, step, state, worker, attempts,
                                 created_at, started_at, finished_at, accuracy, loss, params, flops, reward, latency_ms,
                                 seconds, images_per_second, extra, reused_from)
             SELECT $1, $2, $3, $4, $5, $6, $7, 'complete', NULL, 0,
                    $8, $8, $8, accuracy, loss, params, flops, reward, latency_ms,
                    seconds, images_per_second, extra, id
             FROM trials WHERE id = $9 AND state = 'complete' AND arch_hash = $3 AND proxy_key = $6
             RETURNING id",
        )
        .bind(run.0)
        .bind(&prepared.arch_json)
        .bind(&prepared.arch_hash)
        .bind(&prepared.blocks)
        .bind(prepared.resolution)
        .bind(&trial.proxy_key)
        .bind(trial.step)
        .bind(&now)
        .bind(source.0)
        .fetch_optional(&mut *tx)
        .await
        .map_err(|e| self.run_error(run, e))?;
        let Some(id) = id else {
            return Err(StoreError::invalid(
                "reused trial",
                format!("trial {source} is not a complete measurement of this architecture under proxy settings {:?}", trial.proxy_key),
            ));
        };
        tx.commit().await.map_err(|e| self.db_error(e))?;
        Ok(TrialId(id))
    }

    /// Hands the oldest pending trial of `run` to `worker`: one `UPDATE … RETURNING` statement,
    /// so two workers (threads, processes or machines) never claim the same trial. `None`
    /// when nothing is pending. `worker` should be unique per live worker (host, process id and
    /// slot), since heartbeats are matched on it.
    ///
    /// A trial whose stored architecture no longer parses is failed as
    /// [`FailureKind::Invalid`] with the parse error, and the next one is claimed.
    #[instrument(skip_all, fields(run = %run, worker = worker), err(level = "debug"))]
    pub async fn claim_trial(&self, run: RunId, worker: &str) -> Result<Option<ClaimedTrial>> {
        loop {
            let now = time::now();
            let mut tx = self.begin_write().await?;
            let row = take_pending(&mut tx, run, worker, &now).await.map_err(|e| self.db_error(e))?;
            let Some(row) = row else {
                tx.commit().await.map_err(|e| self.db_error(e))?;
                return Ok(None);
            };
            match serde_json::from_str(&row.arch) {
                Ok(arch) => {
                    tx.commit().await.map_err(|e| self.db_error(e))?;
                    tracing::debug!(trial = row.id, attempt = row.attempts, "claimed trial");
                    return row.into_claimed(arch).map(Some);
                }
                Err(parse_error) => {
                    let message = format!("stored architecture is invalid: {parse_error}");
                    mark_failed(&mut tx, row.id, FailureKind::Invalid, &message, &now)
                        .await
                        .map_err(|e| self.db_error(e))?;
                    tx.commit().await.map_err(|e| self.db_error(e))?;
                    tracing::warn!(trial = row.id, error = %parse_error, "failed a trial whose architecture does not parse");
                }
            }
        }
    }

    /// Tells the store that `worker` is still training `trial`. Returns `false` when the trial
    /// is no longer this worker's (it was requeued after a missed heartbeat, or finished):
    /// the worker should then drop it.
    #[instrument(skip_all, fields(trial = %trial), err(level = "debug"))]
    pub async fn heartbeat(&self, trial: TrialId, worker: &str) -> Result<bool> {
        let updated = sqlx::query(
            "UPDATE trials SET heartbeat_at = $1 WHERE id = $2 AND state = 'running' AND worker = $3",
        )
        .bind(time::now())
        .bind(trial.0)
        .bind(worker)
        .execute(&self.pool)
        .await
        .map_err(|e| self.db_error(e))?;
        Ok(updated.rows_affected() == 1)
    }

    /// Records (or replaces) one epoch of a trial's curve. Non-finite values are stored as NULL.
    #[instrument(skip_all, fields(trial = %trial, epoch = epoch.epoch), err(level = "debug"))]
    pub async fn record_epoch(&self, trial: TrialId, epoch: &EpochMetrics) -> Result<()> {
        let mut conn = self.pool.acquire().await.map_err(|e| self.db_error(e))?;
        upsert_epoch(&mut conn, trial.0, epoch).await.map_err(|e| {
            if is_foreign_key_violation(&e) {
                StoreError::TrialNotFound(trial.0)
            } else {
                self.db_error(e)
            }
        })
    }

    /// Stores a trial's result and marks it complete. Accepted from any worker while the trial
    /// is pending or running (a result is a result, even from a worker presumed dead);
    /// [`StoreError::TrialFinished`] when it already has one.
    #[instrument(skip_all, fields(trial = %trial), err(level = "debug"))]
    pub async fn complete_trial(&self, trial: TrialId, metrics: &TrialMetrics) -> Result<()> {
        let checked = check_metrics(metrics)?;
        let mut conn = self.pool.acquire().await.map_err(|e| self.db_error(e))?;
        let updated = write_metrics(&mut conn, trial.0, metrics, &checked, &time::now())
            .await
            .map_err(|e| self.db_error(e))?;
        drop(conn);
        if updated == 0 {
            return Err(self.why_not_open(trial).await);
        }
        Ok(())
    }

    /// Marks a trial failed: `kind` goes to the `failure` column (what users group by),
    /// `message` (one line: the loss value, the allocator's words, the limit exceeded…) to
    /// `error`. Accepted while the trial is pending or running; [`StoreError::TrialFinished`]
    /// when it already has a result.
    #[instrument(skip_all, fields(trial = %trial, kind = %kind), err(level = "debug"))]
    pub async fn fail_trial(&self, trial: TrialId, kind: FailureKind, message: &str) -> Result<()> {
        let mut conn = self.pool.acquire().await.map_err(|e| self.db_error(e))?;
        let updated = mark_failed(&mut conn, trial.0, kind, message, &time::now())
            .await
            .map_err(|e| self.db_error(e))?;
        drop(conn);
        if updated == 0 {
            return Err(self.why_not_open(trial).await);
        }
        Ok(())
    }

    /// Puts running trials whose last heartbeat is older than `heartbeat_limit` back to
    /// pending (their worker died), across all runs. A trial already claimed `max_attempts`
    /// times is failed instead, as [`FailureKind::Lost`]: it probably kills its worker. Both in
    /// one transaction.
    #[instrument(skip_all, fields(limit_ms = heartbeat_limit.as_millis() as u64, max_attempts), err(level = "debug"))]
    pub async fn requeue_stale(&self, heartbeat_limit: Duration, max_attempts: u32) -> Result<Requeued> {
        let now = time::now();
        let cutoff = time::before_now(heartbeat_limit);
        let mut tx = self.begin_write().await?;
        let failed = fail_lost(&mut tx, &cutoff, max_attempts, &now).await.map_err(|e| self.db_error(e))?;
        let pending = requeue_silent(&mut tx, &cutoff).await.map_err(|e| self.db_error(e))?;
        tx.commit().await.map_err(|e| self.db_error(e))?;
        if !pending.is_empty() || !failed.is_empty() {
            tracing::info!(requeued = pending.len(), failed = failed.len(), "trials with stale heartbeats");
        }
        let mut requeued = Requeued {
            pending: pending.into_iter().map(TrialId).collect(),
            failed: failed.into_iter().map(TrialId).collect(),
        };
        requeued.pending.sort();
        requeued.failed.sort();
        Ok(requeued)
    }

    /// Puts every running trial of `run` back to pending at once, giving back the claim: for a
    /// process that stops its own trials in order (Ctrl-C, SIGTERM), which did not fail them, so
    /// the stop does not count towards [`crate::MAX_ATTEMPTS`]. A process recovering trials
    /// from one that died uses [`Store::recover_running`].
    #[instrument(skip_all, fields(run = %run), err(level = "debug"))]
    pub async fn requeue_running(&self, run: RunId) -> Result<Vec<TrialId>> {
        let mut ids: Vec<i64> = sqlx::query_scalar(
            "UPDATE trials SET state = 'pending', worker = NULL, attempts = MAX(attempts - 1, 0)
             WHERE run_id = $1 AND state = 'running' RETURNING id",
        )
        .bind(run.0)
        .fetch_all(&self.pool)
        .await
        .map_err(|e| self.db_error(e))?;
        ids.sort_unstable();
        Ok(ids.into_iter().map(TrialId).collect())
    }

    /// Takes back the trials of `run` that a process which is gone left running (a `--resume`
    /// after a crash or a kill): each such attempt ended without a result. A trial that has been
    /// claimed `max_attempts` times is failed as [`FailureKind::Lost`] (it likely kills its
    /// process, e.g. by running the machine out of memory); the others go back to pending. Both
    /// in one transaction. Only for a run this process holds ([`Store::acquire_run`]): a live
    /// worker would lose its trial.
    #[instrument(skip_all, fields(run = %run, max_attempts), err(level = "debug"))]
    pub async fn recover_running(&self, run: RunId, max_attempts: u32) -> Result<Requeued> {
        let now = time::now();
        let message = format!(
            "its process ended without a result on each of its {max_attempts} attempts (the limit); \
             it may be killing its process, e.g. by running out of memory"
        );
        let mut tx = self.begin_write().await?;
        let failed: Vec<i64> = sqlx::query_scalar(
            "UPDATE trials SET state = 'failed', finished_at = $1, failure = $2, error = $3
             WHERE run_id = $4 AND state = 'running' AND attempts >= $5 RETURNING id",
        )
        .bind(&now)
        .bind(FailureKind::Lost.as_str())
        .bind(&message)
        .bind(run.0)
        .bind(i64::from(max_attempts))
        .fetch_all(&mut *tx)
        .await
        .map_err(|e| self.db_error(e))?;
        let pending: Vec<i64> = sqlx::query_scalar(
            "UPDATE trials SET state = 'pending', worker = NULL WHERE run_id = $1 AND state = 'running' RETURNING id",
        )
        .bind(run.0)
        .fetch_all(&mut *tx)
        .await
        .map_err(|e| self.db_error(e))?;
        tx.commit().await.map_err(|e| self.db_error(e))?;
        if !pending.is_empty() || !failed.is_empty() {
            tracing::info!(
                requeued = pending.len(),
                failed = failed.len(),
                "trials left running by a process that is gone"
            );
        }
        let mut recovered = Requeued {
            pending: pending.into_iter().map(TrialId).collect(),
            failed: failed.into_iter().map(TrialId).collect(),
        };
        recovered.pending.sort();
        recovered.failed.sort();
        Ok(recovered)
    }

    /// The newest complete trial, in any run, of the architecture with hash `arch_hash`
    /// trained under `proxy_key`.
    pub async fn find_measured(&self, arch_hash: &str, proxy_key: &str) -> Result<Option<Trial>> {
        let sql = format!(
            "SELECT {TRIAL_COLUMNS} FROM trials WHERE arch_hash = $1 AND proxy_key = $2 AND state = 'complete' ORDER BY id DESC LIMIT 1"
        );
        let row: Option<TrialRow> = sqlx::query_as(&sql)
            .bind(arch_hash)
            .bind(proxy_key)
            .fetch_optional(&self.pool)
            .await
            .map_err(|e| self.db_error(e))?;
        row.map(TrialRow::into_trial).transpose()
    }

    /// One trial.
    pub async fn trial(&self, id: TrialId) -> Result<Trial> {
        let sql = format!("SELECT {TRIAL_COLUMNS} FROM trials WHERE id = $1");
        let row: Option<TrialRow> =
            sqlx::query_as(&sql).bind(id.0).fetch_optional(&self.pool).await.map_err(|e| self.db_error(e))?;
        row.ok_or(StoreError::TrialNotFound(id.0))?.into_trial()
    }

    /// The trials of a run that pass `filter`, in its order.
    pub async fn trials(&self, run: RunId, filter: &TrialFilter) -> Result<Vec<Trial>> {
        let mut query: QueryBuilder<Sqlite> =
            QueryBuilder::new(format!("SELECT {TRIAL_COLUMNS} FROM trials WHERE run_id = "));
        query.push_bind(run.0);
        if let Some(state) = filter.state {
            query.push(" AND state = ").push_bind(state.as_str());
        }
        if let Some(failure) = filter.failure {
            query.push(" AND failure = ").push_bind(failure.as_str());
        }
        if let Some(max_flops) = filter.max_flops {
            query.push(" AND flops <= ").push_bind(to_sql_int("max_flops", max_flops)?);
        }
        if let Some(min_accuracy) = filter.min_accuracy {
            query.push(" AND accuracy >= ").push_bind(min_accuracy);
        }
        query.push(" ORDER BY ").push(filter.sort.order_by());
        if let Some(limit) = filter.limit {
            query.push(" LIMIT ").push_bind(to_sql_int("limit", limit)?);
        }
        let rows: Vec<TrialRow> =
            query.build_query_as().fetch_all(&self.pool).await.map_err(|e| self.db_error(e))?;
        rows.into_iter().map(TrialRow::into_trial).collect()
    }

    /// A trial's training curve, by epoch.
    pub async fn epochs(&self, trial: TrialId) -> Result<Vec<EpochMetrics>> {
        let rows: Vec<EpochRow> = sqlx::query_as(
            "SELECT epoch, train_loss, train_accuracy, val_loss, val_accuracy, learning_rate, seconds
             FROM trial_epochs WHERE trial_id = $1 ORDER BY epoch",
        )
        .bind(trial.0)
        .fetch_all(&self.pool)
        .await
        .map_err(|e| self.db_error(e))?;
        rows.into_iter()
            .map(|r| {
                Ok(EpochMetrics {
                    epoch: from_sql_int(&format!("epoch of trial {trial}"), r.epoch)?,
                    train_loss: r.train_loss,
                    train_accuracy: r.train_accuracy,
                    val_loss: r.val_loss,
                    val_accuracy: r.val_accuracy,
                    learning_rate: r.learning_rate,
                    seconds: r.seconds,
                })
            })
            .collect()
    }

    /// Why a finishing update touched no row: the trial is missing or already finished.
    async fn why_not_open(&self, trial: TrialId) -> StoreError {
        let state: std::result::Result<Option<String>, _> =
            sqlx::query_scalar("SELECT state FROM trials WHERE id = $1")
                .bind(trial.0)
                .fetch_optional(&self.pool)
                .await;
        match state {
            Ok(Some(state)) => StoreError::TrialFinished { id: trial.0, state },
            Ok(None) => StoreError::TrialNotFound(trial.0),
            Err(e) => self.db_error(e),
        }
    }

    /// A foreign-key failure on insert means the run (or a trial it names) does not exist.
    pub(crate) fn run_error(&self, run: RunId, error: sqlx::Error) -> StoreError {
        if is_foreign_key_violation(&error) {
            StoreError::RunNotFound(run.to_string())
        } else {
            self.db_error(error)
        }
    }
}
