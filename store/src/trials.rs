//! Trials: queue, claim, record, finish, requeue, reuse, query. Worker processes' claims with a
//! lease and their fenced writes are in `claims.rs`, on the SQL shared from here.

use sqlx::QueryBuilder;
use tracing::instrument;

use crate::error::{Result, StoreError};
use crate::model::{
    BatchKey, ClaimedTrial, EpochMetrics, FailureKind, NewTrial, Requeued, RunId, Trial, TrialAttempt,
    TrialFilter, TrialId, TrialMetrics, TrialState,
};
use crate::{from_sql_int, time, to_sql_int, Backend, Conn, Store};

/// Every trial column, in the order of [`TrialRow`].
pub(crate) const TRIAL_COLUMNS: &str = "id, run_id, state, arch, arch_hash, blocks, resolution, proxy_key, step, worker, attempts, \
     created_at, started_at, heartbeat_at, lease_until, finished_at, accuracy, loss, params, flops, reward, latency_ms, seconds, \
     images_per_second, extra, failure, error, reused_from, setting, parent_id";

#[derive(sqlx::FromRow)]
pub(crate) struct TrialRow {
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
    lease_until: Option<String>,
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
    setting: i64,
    parent_id: Option<i64>,
}

impl TrialRow {
    pub(crate) fn into_trial(self) -> Result<Trial> {
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
            lease_until: self.lease_until,
            finished: self.finished_at,
            accuracy: self.accuracy,
            loss: self.loss,
            reward: self.reward,
            latency_ms: self.latency_ms,
            seconds: self.seconds,
            images_per_second: self.images_per_second,
            error: self.error,
            reused_from: self.reused_from.map(TrialId),
            setting: from_sql_int(&what("setting"), self.setting)?,
            parent: self.parent_id.map(TrialId),
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
pub(crate) struct CheckedMetrics {
    params: i64,
    flops: i64,
    extra: Option<String>,
}

pub(crate) fn check_metrics(metrics: &TrialMetrics) -> Result<CheckedMetrics> {
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

/// Inserts one trial; `batch` is the key of the call that queued it, if it was queued (see
/// [`Store::insert_trials_once`]).
async fn insert_prepared(
    conn: Conn<'_>,
    run: RunId,
    p: &PreparedTrial<'_>,
    state: TrialState,
    now: &str,
    batch: Option<&BatchKey>,
) -> sqlx::Result<i64> {
    on_conn!(conn, c => {
        sqlx::query_scalar(
            "INSERT INTO trials (run_id, arch, arch_hash, blocks, resolution, proxy_key, step, state, created_at, params, flops,
                                 setting, parent_id, queued_batch)
             VALUES ($1, $2, $3, $4, $5, $6, $7, $8, $9, $10, $11, $12, $13, $14) RETURNING id",
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
        .bind(i64::from(p.trial.setting))
        .bind(p.trial.parent.map(|t| t.0))
        .bind(batch.map(BatchKey::as_str))
        .fetch_one(c)
        .await
    })
}

/// Stores a trial's result and marks it complete; the number of rows changed (0 when it is
/// missing or already finished). With `attempt`, only while the trial is running under that
/// attempt (a write fenced on a [`crate::Claim`]); without, while it is pending or running.
pub(crate) async fn write_metrics(
    conn: Conn<'_>,
    id: i64,
    attempt: Option<u32>,
    metrics: &TrialMetrics,
    checked: &CheckedMetrics,
    now: &str,
) -> sqlx::Result<u64> {
    on_conn!(conn, c => {
        sqlx::query(
            "UPDATE trials SET state = 'complete', finished_at = $1, accuracy = $2, loss = $3, params = $4, flops = $5,
                    reward = $6, latency_ms = $7, seconds = $8, images_per_second = $9, extra = $10, failure = NULL,
                    error = NULL, lease_until = NULL
             WHERE id = $11 AND state IN ('pending', 'running')
               AND ($12 IS NULL OR (state = 'running' AND attempts = $12))",
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
        .bind(attempt.map(i64::from))
        .execute(c)
        .await
        .map(|done| done.rows_affected())
    })
}

/// Records (or replaces) one epoch of a trial's curve; the number of rows written. With
/// `attempt`, only while the trial is running under that attempt (0 rows otherwise).
pub(crate) async fn upsert_epoch(
    conn: Conn<'_>,
    trial: i64,
    attempt: Option<u32>,
    epoch: &EpochMetrics,
) -> sqlx::Result<u64> {
    // `WHERE` keeps SQLite from reading `ON CONFLICT` as a join's `ON`.
    on_conn!(conn, c => {
        sqlx::query(
            "INSERT INTO trial_epochs (trial_id, epoch, train_loss, train_accuracy, val_loss, val_accuracy, learning_rate, seconds)
             SELECT $1, $2, $3, $4, $5, $6, $7, $8
             WHERE $9 IS NULL OR EXISTS (SELECT 1 FROM trials WHERE id = $1 AND state = 'running' AND attempts = $9)
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
        .bind(attempt.map(i64::from))
        .execute(c)
        .await
        .map(|done| done.rows_affected())
    })
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
    setting: i64,
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
            setting: from_sql_int("setting", self.setting)?,
        })
    }
}

/// Moves the oldest pending trial of `run` (or of any run) to running for `worker` and returns
/// it. A retried trial loses the curve its dead worker left, which would mix with the new one.
///
/// With `lease_until` (a worker process's claim, [`Store::claim_next`]) the trial holds that
/// lease, and only runs whose status is `running` are served: a worker must not revive a run
/// that ended or was interrupted. Without (a search's in-process claim, [`Store::claim_trial`]),
/// the trial has no lease and the run's status is the caller's business.
async fn take_pending(
    conn: Conn<'_>,
    backend: Backend,
    run: Option<RunId>,
    worker: &str,
    now: &str,
    lease_until: Option<&str>,
) -> sqlx::Result<Option<ClaimRow>> {
    // The inner SELECT picks, the outer `state = 'pending'` re-checks. On SQLite the statement
    // holds the write lock throughout. On PostgreSQL the inner SELECT locks the row it picks
    // and skips rows other claims have locked (`FOR UPDATE SKIP LOCKED`), so concurrent
    // workers each take a different trial without waiting on one another; a row that another
    // claim changed after this statement's snapshot is re-checked once locked. The conditions
    // are fixed SQL (not `$n IS NULL OR …`) so that the planner can use `trials_by_run_state`.
    let skip_locked = match backend {
        Backend::Sqlite => "",
        Backend::Postgres => " FOR UPDATE SKIP LOCKED",
    };
    on_conn!(conn, c => {
        let mut query = QueryBuilder::new("UPDATE trials SET state = 'running', worker = ");
        query.push_bind(worker);
        query.push(", attempts = attempts + 1, started_at = ").push_bind(now);
        query.push(", heartbeat_at = ").push_bind(now);
        query.push(", lease_until = ").push_bind(lease_until);
        query.push(", failure = NULL, error = NULL WHERE id = (SELECT id FROM trials WHERE state = 'pending'");
        if let Some(run) = run {
            query.push(" AND run_id = ").push_bind(run.0);
        }
        if lease_until.is_some() {
            query.push(" AND run_id IN (SELECT id FROM runs WHERE status = 'running')");
        }
        query.push(" ORDER BY id LIMIT 1").push(skip_locked);
        query.push(") AND state = 'pending' RETURNING id, run_id, arch, arch_hash, proxy_key, attempts, setting");
        let row: Option<ClaimRow> = query.build_query_as().fetch_optional(&mut *c).await?;
        if let Some(row) = &row {
            if row.attempts > 1 {
                sqlx::query("DELETE FROM trial_epochs WHERE trial_id = $1").bind(row.id).execute(&mut *c).await?;
            }
        }
        Ok(row)
    })
}

/// Fails one trial; the number of rows changed (0 when it is missing or already finished).
/// With `attempt`, only while the trial is running under that attempt (a write fenced on a
/// [`crate::Claim`]); without, while it is pending or running.
pub(crate) async fn mark_failed(
    conn: Conn<'_>,
    id: i64,
    attempt: Option<u32>,
    kind: FailureKind,
    message: &str,
    now: &str,
) -> sqlx::Result<u64> {
    on_conn!(conn, c => {
        sqlx::query(
            "UPDATE trials SET state = 'failed', finished_at = $1, failure = $2, error = $3, lease_until = NULL
             WHERE id = $4 AND state IN ('pending', 'running')
               AND ($5 IS NULL OR (state = 'running' AND attempts = $5))",
        )
        .bind(now)
        .bind(kind.as_str())
        .bind(message)
        .bind(id)
        .bind(attempt.map(i64::from))
        .execute(c)
        .await
        .map(|done| done.rows_affected())
    })
}

/// Running trials whose worker is gone, to be taken back ([`take_back`]).
#[derive(Debug, Clone, Copy)]
pub(crate) enum Orphans<'a> {
    /// The running trials of a run that hold no lease, whose process is gone
    /// ([`Store::recover_running`]).
    OfRun(RunId),
    /// Running trials whose lease ended before this time ([`Store::requeue_expired`]); a trial
    /// without a lease never matches.
    LeaseEndedBefore(&'a str),
}

impl Orphans<'_> {
    /// The fixed SQL condition, its one parameter numbered `$n` (fixed text, so that the
    /// planner uses `trials_by_run_state` or `trials_by_lease`).
    fn condition(self, n: u32) -> String {
        match self {
            Orphans::OfRun(_) => format!("run_id = ${n} AND state = 'running' AND lease_until IS NULL"),
            Orphans::LeaseEndedBefore(_) => format!("state = 'running' AND lease_until < ${n}"),
        }
    }
}

/// Takes back the `orphans` in one go: those claimed `max_attempts` times are failed as
/// [`FailureKind::Lost`] with `message`, the others go back to pending (worker and lease
/// cleared; the attempt stays counted). Run it inside the caller's transaction.
pub(crate) async fn take_back(
    conn: Conn<'_>,
    orphans: Orphans<'_>,
    max_attempts: u32,
    message: &str,
    now: &str,
) -> sqlx::Result<Requeued> {
    let fail = format!(
        "UPDATE trials SET state = 'failed', finished_at = $1, failure = $2, error = $3, lease_until = NULL
         WHERE {} AND attempts >= $5 RETURNING id",
        orphans.condition(4)
    );
    let requeue = format!(
        "UPDATE trials SET state = 'pending', worker = NULL, lease_until = NULL WHERE {} RETURNING id",
        orphans.condition(1)
    );
    // The condition's one parameter, bound in its place ($4 of the first statement, $1 of the
    // second).
    macro_rules! bind_orphans {
        ($query:expr) => {
            match orphans {
                Orphans::OfRun(run) => $query.bind(run.0),
                Orphans::LeaseEndedBefore(cutoff) => $query.bind(cutoff),
            }
        };
    }
    let (failed, pending): (Vec<i64>, Vec<i64>) = on_conn!(conn, c => {
        let failed = bind_orphans!(sqlx::query_scalar(&fail).bind(now).bind(FailureKind::Lost.as_str()).bind(message))
            .bind(i64::from(max_attempts))
            .fetch_all(&mut *c)
            .await?;
        let pending = bind_orphans!(sqlx::query_scalar(&requeue)).fetch_all(&mut *c).await?;
        (failed, pending)
    });
    let mut taken = Requeued {
        pending: pending.into_iter().map(TrialId).collect(),
        failed: failed.into_iter().map(TrialId).collect(),
    };
    taken.pending.sort();
    taken.failed.sort();
    Ok(taken)
}

impl Store {
    /// Queues one trial (state `pending`); its parameters and multiply-adds come from the cost
    /// model until a result replaces them.
    #[instrument(skip_all, fields(run = %run), err(level = "debug"))]
    pub async fn insert_trial(&self, run: RunId, trial: &NewTrial) -> Result<TrialId> {
        let ids = self.insert_trials(run, std::slice::from_ref(trial)).await?;
        Ok(ids[0])
    }

    /// Queues trials in one transaction (all or none), in order; returns their ids. A caller
    /// that retries the call on a dropped connection uses [`Store::insert_trials_once`].
    pub async fn insert_trials(&self, run: RunId, trials: &[NewTrial]) -> Result<Vec<TrialId>> {
        self.insert_trials_once(run, trials, &BatchKey::new()).await
    }

    /// [`Store::insert_trials`], at most once per `key`: when trials of `run` were already
    /// queued under it (a retry of a call whose commit went through though its answer was
    /// lost), returns their ids and queues nothing.
    #[instrument(skip_all, fields(run = %run, count = trials.len()), err(level = "debug"))]
    pub async fn insert_trials_once(
        &self,
        run: RunId,
        trials: &[NewTrial],
        key: &BatchKey,
    ) -> Result<Vec<TrialId>> {
        let prepared = trials.iter().map(prepare).collect::<Result<Vec<_>>>()?;
        let now = time::now();
        let mut tx = self.begin_write().await?;
        let queued: Vec<i64> = on_conn!(tx.conn(), c => {
            sqlx::query_scalar("SELECT id FROM trials WHERE run_id = $1 AND queued_batch = $2 ORDER BY id")
                .bind(run.0)
                .bind(key.as_str())
                .fetch_all(c)
                .await
        })
        .map_err(|e| self.db_error(e))?;
        if !queued.is_empty() {
            if queued.len() != prepared.len() {
                return Err(StoreError::BatchMismatch {
                    key: key.as_str().to_owned(),
                    queued: queued.len(),
                    asked: prepared.len(),
                });
            }
            return Ok(queued.into_iter().map(TrialId).collect());
        }
        let mut ids = Vec::with_capacity(prepared.len());
        for p in &prepared {
            let id = insert_prepared(tx.conn(), run, p, TrialState::Pending, &now, Some(key))
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
        let id = insert_prepared(tx.conn(), run, &prepared, TrialState::Running, &now, None)
            .await
            .map_err(|e| self.run_error(run, e))?;
        for epoch in epochs {
            upsert_epoch(tx.conn(), id, None, epoch).await.map_err(|e| self.db_error(e))?;
        }
        write_metrics(tx.conn(), id, None, metrics, &checked, &now).await.map_err(|e| self.db_error(e))?;
        tx.commit().await.map_err(|e| self.db_error(e))?;
        Ok(TrialId(id))
    }

    /// Records in `run` a trial that fails before anyone may claim it (a candidate rejected
    /// for its cost): inserted and failed in one transaction, so no worker ever sees it pending.
    #[instrument(skip_all, fields(run = %run, kind = %kind), err(level = "debug"))]
    pub async fn insert_failed_trial(
        &self,
        run: RunId,
        trial: &NewTrial,
        kind: FailureKind,
        message: &str,
    ) -> Result<TrialId> {
        let prepared = prepare(trial)?;
        let now = time::now();
        let mut tx = self.begin_write().await?;
        let id = insert_prepared(tx.conn(), run, &prepared, TrialState::Running, &now, None)
            .await
            .map_err(|e| self.run_error(run, e))?;
        mark_failed(tx.conn(), id, None, kind, message, &now).await.map_err(|e| self.db_error(e))?;
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
        let id: Option<i64> = on_conn!(tx.conn(), c => {
            sqlx::query_scalar(
                "INSERT INTO trials (run_id, arch, arch_hash, blocks, resolution, proxy_key, step, state, worker, attempts,
                                     created_at, started_at, finished_at, accuracy, loss, params, flops, reward, latency_ms,
                                     seconds, images_per_second, extra, reused_from, setting, parent_id)
                 SELECT $1, $2, $3, $4, $5, $6, $7, 'complete', NULL, 0,
                        $8, $8, $8, accuracy, loss, params, flops, reward, latency_ms,
                        seconds, images_per_second, extra, id, $10, $11
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
            .bind(i64::from(trial.setting))
            .bind(trial.parent.map(|t| t.0))
            .fetch_optional(c)
            .await
        })
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

    /// Hands the oldest pending trial of `run` to `worker`, without a lease: the claim of a
    /// search's own in-process workers, whose trials the search takes back itself on resume
    /// ([`Store::recover_running`]) and which [`Store::requeue_expired`] never touches. Worker
    /// processes use [`Store::claim_next`]. One `UPDATE … RETURNING` statement, so two workers
    /// (threads, processes or machines) never claim the same trial. `None` when nothing is
    /// pending. `worker` names the worker in the `worker` column (host, process id and slot).
    ///
    /// A trial whose stored architecture no longer parses is failed as
    /// [`FailureKind::Invalid`] with the parse error, and the next one is claimed.
    #[instrument(skip_all, fields(run = %run, worker = worker), err(level = "debug"))]
    pub async fn claim_trial(&self, run: RunId, worker: &str) -> Result<Option<ClaimedTrial>> {
        self.claim(Some(run), worker, None).await
    }

    /// [`Store::claim_trial`] and [`Store::claim_next`]: claims with [`take_pending`] until a
    /// trial's architecture parses.
    pub(crate) async fn claim(
        &self,
        run: Option<RunId>,
        worker: &str,
        lease: Option<std::time::Duration>,
    ) -> Result<Option<ClaimedTrial>> {
        loop {
            let now_millis = time::now_millis();
            let now = time::format_millis(now_millis);
            let lease_until = lease.map(|lease| {
                let lease = i64::try_from(lease.as_millis()).unwrap_or(i64::MAX);
                time::format_millis(now_millis.saturating_add(lease))
            });
            let mut tx = self.begin_write().await?;
            let row = take_pending(tx.conn(), self.backend(), run, worker, &now, lease_until.as_deref())
                .await
                .map_err(|e| self.db_error(e))?;
            let Some(row) = row else {
                tx.commit().await.map_err(|e| self.db_error(e))?;
                return Ok(None);
            };
            match serde_json::from_str(&row.arch) {
                Ok(arch) => {
                    tx.commit().await.map_err(|e| self.db_error(e))?;
                    tracing::debug!(trial = row.id, attempt = row.attempts, lease_until, "claimed trial");
                    return row.into_claimed(arch).map(Some);
                }
                Err(parse_error) => {
                    let message = format!("stored architecture is invalid: {parse_error}");
                    mark_failed(tx.conn(), row.id, None, FailureKind::Invalid, &message, &now)
                        .await
                        .map_err(|e| self.db_error(e))?;
                    tx.commit().await.map_err(|e| self.db_error(e))?;
                    tracing::warn!(trial = row.id, error = %parse_error, "failed a trial whose architecture does not parse");
                }
            }
        }
    }

    /// Records (or replaces) one epoch of a trial's curve. Non-finite values are stored as NULL.
    #[instrument(skip_all, fields(trial = %trial, epoch = epoch.epoch), err(level = "debug"))]
    pub async fn record_epoch(&self, trial: TrialId, epoch: &EpochMetrics) -> Result<()> {
        let mut conn = self.acquire().await?;
        upsert_epoch(conn.conn(), trial.0, None, epoch).await.map(drop).map_err(|e| {
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
        let mut conn = self.acquire().await?;
        let updated = write_metrics(conn.conn(), trial.0, None, metrics, &checked, &time::now())
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
        let mut conn = self.acquire().await?;
        let updated = mark_failed(conn.conn(), trial.0, None, kind, message, &time::now())
            .await
            .map_err(|e| self.db_error(e))?;
        drop(conn);
        if updated == 0 {
            return Err(self.why_not_open(trial).await);
        }
        Ok(())
    }

    /// Puts every running trial of `run` claimed in-process ([`Store::claim_trial`]) back to
    /// pending at once, giving back the claim: for a process that stops its own trials in order
    /// (Ctrl-C, SIGTERM), which did not fail them, so the stop does not count towards
    /// [`crate::MAX_ATTEMPTS`]. A process recovering trials from one that died uses
    /// [`Store::recover_running`].
    ///
    /// Trials that worker processes hold under a lease ([`Store::claim_next`]) are theirs, not
    /// this process's: they are left to their workers, who release them on their own orderly
    /// stop ([`Store::release_claim`]), and to [`Store::requeue_expired`]. (Giving back their
    /// attempt here would also hand the next claimer the attempt number a live worker's writes
    /// are fenced on.)
    #[instrument(skip_all, fields(run = %run), err(level = "debug"))]
    pub async fn requeue_running(&self, run: RunId) -> Result<Vec<TrialId>> {
        let mut ids: Vec<i64> = on_pool!(self, pool => {
            sqlx::query_scalar(
                "UPDATE trials SET state = 'pending', worker = NULL,
                        attempts = CASE WHEN attempts > 0 THEN attempts - 1 ELSE 0 END
                 WHERE run_id = $1 AND state = 'running' AND lease_until IS NULL RETURNING id",
            )
            .bind(run.0)
            .fetch_all(pool)
            .await
        })
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
    ///
    /// Trials that worker processes hold under a lease ([`Store::claim_next`]) are left alone:
    /// their workers may well be alive, and [`Store::requeue_expired`] takes them back once their
    /// lease has passed.
    #[instrument(skip_all, fields(run = %run, max_attempts), err(level = "debug"))]
    pub async fn recover_running(&self, run: RunId, max_attempts: u32) -> Result<Requeued> {
        let now = time::now();
        let message = format!(
            "its process ended without a result on each of its {max_attempts} attempts (the limit); \
             it may be killing its process, e.g. by running out of memory"
        );
        let mut tx = self.begin_write().await?;
        let recovered = take_back(tx.conn(), Orphans::OfRun(run), max_attempts, &message, &now)
            .await
            .map_err(|e| self.db_error(e))?;
        tx.commit().await.map_err(|e| self.db_error(e))?;
        if !recovered.pending.is_empty() || !recovered.failed.is_empty() {
            tracing::info!(
                requeued = recovered.pending.len(),
                failed = recovered.failed.len(),
                "trials left running by a process that is gone"
            );
        }
        Ok(recovered)
    }

    /// The newest complete trial, in any run, of the architecture with hash `arch_hash`
    /// trained under `proxy_key`.
    pub async fn find_measured(&self, arch_hash: &str, proxy_key: &str) -> Result<Option<Trial>> {
        let sql = format!(
            "SELECT {TRIAL_COLUMNS} FROM trials WHERE arch_hash = $1 AND proxy_key = $2 AND state = 'complete' ORDER BY id DESC LIMIT 1"
        );
        let row: Option<TrialRow> = on_pool!(self, pool => {
            sqlx::query_as(&sql).bind(arch_hash).bind(proxy_key).fetch_optional(pool).await
        })
        .map_err(|e| self.db_error(e))?;
        row.map(TrialRow::into_trial).transpose()
    }

    /// One trial.
    pub async fn trial(&self, id: TrialId) -> Result<Trial> {
        let sql = format!("SELECT {TRIAL_COLUMNS} FROM trials WHERE id = $1");
        let row: Option<TrialRow> =
            on_pool!(self, pool => sqlx::query_as(&sql).bind(id.0).fetch_optional(pool).await)
                .map_err(|e| self.db_error(e))?;
        row.ok_or(StoreError::TrialNotFound(id.0))?.into_trial()
    }

    /// The trials of a run that pass `filter`, in its order.
    pub async fn trials(&self, run: RunId, filter: &TrialFilter) -> Result<Vec<Trial>> {
        let max_flops = filter.max_flops.map(|v| to_sql_int("max_flops", v)).transpose()?;
        let limit = filter.limit.map(|v| to_sql_int("limit", v)).transpose()?;
        let rows: Vec<TrialRow> = on_pool!(self, pool => {
            let mut query = QueryBuilder::new(format!("SELECT {TRIAL_COLUMNS} FROM trials WHERE run_id = "));
            query.push_bind(run.0);
            if let Some(state) = filter.state {
                query.push(" AND state = ").push_bind(state.as_str());
            }
            if let Some(failure) = filter.failure {
                query.push(" AND failure = ").push_bind(failure.as_str());
            }
            if let Some(max_flops) = max_flops {
                query.push(" AND flops <= ").push_bind(max_flops);
            }
            if let Some(min_accuracy) = filter.min_accuracy {
                query.push(" AND accuracy >= ").push_bind(min_accuracy);
            }
            query.push(" ORDER BY ").push(filter.sort.order_by());
            if let Some(limit) = limit {
                query.push(" LIMIT ").push_bind(limit);
            }
            query.build_query_as().fetch_all(pool).await
        })
        .map_err(|e| self.db_error(e))?;
        rows.into_iter().map(TrialRow::into_trial).collect()
    }

    /// A trial's training curve, by epoch.
    pub async fn epochs(&self, trial: TrialId) -> Result<Vec<EpochMetrics>> {
        let rows: Vec<EpochRow> = on_pool!(self, pool => {
            sqlx::query_as(
                "SELECT epoch, train_loss, train_accuracy, val_loss, val_accuracy, learning_rate, seconds
                 FROM trial_epochs WHERE trial_id = $1 ORDER BY epoch",
            )
            .bind(trial.0)
            .fetch_all(pool)
            .await
        })
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

    /// A trial's attempts, first to last (`trial_attempts`): each claim that counted, with its
    /// worker, times and outcome. Empty for a trial never claimed (queued, or recorded whole
    /// without a worker); an upgraded database holds only the latest attempt of trials that
    /// ran before schema 7.
    pub async fn attempts(&self, trial: TrialId) -> Result<Vec<TrialAttempt>> {
        type Row =
            (i64, Option<String>, Option<String>, Option<String>, Option<String>, String, Option<String>);
        let rows: Vec<Row> = on_pool!(self, pool => {
            sqlx::query_as(
                "SELECT attempt, worker, started_at, ended_at, heartbeat_at, outcome, failure
                 FROM trial_attempts WHERE trial_id = $1 ORDER BY attempt",
            )
            .bind(trial.0)
            .fetch_all(pool)
            .await
        })
        .map_err(|e| self.db_error(e))?;
        let what = |column: &str| format!("{column} of an attempt of trial {trial}");
        rows.into_iter()
            .map(|(attempt, worker, started, ended, heartbeat, outcome, failure)| {
                Ok(TrialAttempt {
                    attempt: from_sql_int(&what("attempt"), attempt)?,
                    worker,
                    started,
                    ended,
                    heartbeat,
                    outcome: outcome.parse().map_err(|e| StoreError::corrupt(what("outcome"), e))?,
                    failure: failure
                        .as_deref()
                        .map(str::parse)
                        .transpose()
                        .map_err(|e| StoreError::corrupt(what("failure"), e))?,
                })
            })
            .collect()
    }

    /// Why a finishing update touched no row: the trial is missing or already finished.
    pub(crate) async fn why_not_open(&self, trial: TrialId) -> StoreError {
        let state: std::result::Result<Option<String>, _> = on_pool!(self, pool => {
            sqlx::query_scalar("SELECT state FROM trials WHERE id = $1").bind(trial.0).fetch_optional(pool).await
        });
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
