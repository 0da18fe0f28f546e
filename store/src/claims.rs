//! Trials claimed by worker processes: leases, their extension, expiry, and writes fenced on
//! the attempt.
//!
//! The life cycle (see also `store/SCHEMA.md`, "Trial life cycle"):
//!
//! 1. **Claim with a lease.** A worker takes the oldest pending trial of a run, or of any run
//!    whose status is `running` ([`Store::claim_next`]), in one `UPDATE … RETURNING` statement:
//!    the trial becomes `running`, `attempts` counts one more, and `lease_until` is set to now +
//!    the lease. The returned [`ClaimedTrial::claim`] — trial and attempt — is the worker's
//!    token for every later write.
//! 2. **Extend it every lease/3.** While it trains, the worker extends the lease
//!    ([`Store::extend_lease`], or in the background [`crate::BlockingStore::keep_lease`]), so a
//!    lease is missed only when two extensions in a row fail or the worker is gone.
//! 3. **Anyone returns expired trials.** Any process (the search that queued the trials, another
//!    worker, `effnas` by hand) may call [`Store::requeue_expired`]: a running trial whose lease
//!    has passed goes back to pending for another worker, or — once it has been claimed
//!    `max_attempts` times ([`crate::MAX_ATTEMPTS`]) — is failed as [`FailureKind::Lost`]. A trial
//!    claimed without a lease (a search's in-process [`Store::claim_trial`]) is never touched.
//! 4. **Fencing on (trial, attempt).** The worker records its curve as it goes
//!    ([`Store::record_claim_epoch`], or all at once with the result) and finishes with [`Store::complete_claim`] or
//!    [`Store::fail_claim`], or on an orderly stop (Ctrl-C) gives the trial back with
//!    [`Store::release_claim`]. Each changes the trial only while it is still running under the
//!    claim's attempt; a worker that was presumed dead and comes back after its trial was
//!    requeued, claimed again or finished gets [`Fenced::Superseded`], and nothing changes. A
//!    lease that passed but was not yet acted on does not fence anything out: the trial is the
//!    worker's until someone requeues it.
//!
//! Leases compare the clocks of the machines involved: a lease should be long against their
//! clock difference (seconds to minutes, not milliseconds).

use std::time::Duration;

use sqlx::QueryBuilder;
use tracing::instrument;

use crate::model::{
    Claim, ClaimedTrial, EpochMetrics, FailureKind, Fenced, Requeued, RunId, Trial, TrialId, TrialMetrics,
};
use crate::trials::{
    check_metrics, mark_failed, take_back, upsert_epoch, write_metrics, Orphans, TrialRow, TRIAL_COLUMNS,
};
use crate::{time, Result, Store};

/// At most this many ids in one `IN (…)` list (SQLite's parameter limit was 999 before 3.32;
/// PostgreSQL's is 65,535).
const IDS_PER_QUERY: usize = 500;

/// Logs a write that the fence refused.
fn superseded(claim: Claim, what: &str) -> Fenced {
    tracing::info!(
        trial = %claim.trial,
        attempt = claim.attempt,
        "{what} of a superseded attempt ignored: the trial was requeued, claimed again or finished since"
    );
    Fenced::Superseded
}

/// Whether an `UPDATE` fenced on a claim changed its row.
fn fenced(rows: u64, claim: Claim, what: &str) -> Fenced {
    if rows == 0 {
        superseded(claim, what)
    } else {
        Fenced::Written
    }
}

impl Store {
    /// Hands `worker` the oldest pending trial of `run`, or of any run when `run` is `None`,
    /// but only from runs whose status is `running`, with a lease of `lease` from now (see the
    /// module documentation of `claims.rs` for the life cycle). One `UPDATE … RETURNING`
    /// statement, so two workers (threads, processes or machines) never claim the same trial.
    /// `None` when nothing is pending.
    ///
    /// A retried trial loses the curve of its previous attempt. A trial whose stored
    /// architecture does not parse is failed as [`FailureKind::Invalid`] and the next one is
    /// claimed.
    #[instrument(skip_all, fields(run = ?run, worker = worker), err(level = "debug"))]
    pub async fn claim_next(
        &self,
        run: Option<RunId>,
        worker: &str,
        lease: Duration,
    ) -> Result<Option<ClaimedTrial>> {
        self.claim(run, worker, Some(lease)).await
    }

    /// Extends the lease of `claim` to `lease` from now (and records the time as its
    /// heartbeat). `false` when the claim is superseded — its trial was requeued, claimed again
    /// or finished — and the worker should drop the trial.
    #[instrument(skip_all, fields(trial = %claim.trial, attempt = claim.attempt), err(level = "debug"))]
    pub async fn extend_lease(&self, claim: Claim, lease: Duration) -> Result<bool> {
        let now = time::now_millis();
        let lease = i64::try_from(lease.as_millis()).unwrap_or(i64::MAX);
        let (heartbeat, until) = (time::format_millis(now), time::format_millis(now.saturating_add(lease)));
        let rows = on_pool!(self, pool => {
            sqlx::query(
                "UPDATE trials SET heartbeat_at = $1, lease_until = $2
                 WHERE id = $3 AND attempts = $4 AND state = 'running'",
            )
            .bind(&heartbeat)
            .bind(&until)
            .bind(claim.trial.0)
            .bind(i64::from(claim.attempt))
            .execute(pool)
            .await
            .map(|done| done.rows_affected())
        })
        .map_err(|e| self.db_error(e))?;
        Ok(fenced(rows, claim, "lease extension").is_written())
    }

    /// Records (or replaces) one epoch of the curve of `claim` as it trains (non-finite values
    /// as NULL, as [`Store::record_epoch`] does). [`Fenced::Superseded`] when the trial is no
    /// longer running under this attempt: then nothing is written, so a worker presumed dead
    /// cannot mix its epochs into a newer attempt's curve.
    #[instrument(skip_all, fields(trial = %claim.trial, attempt = claim.attempt, epoch = epoch.epoch), err(level = "debug"))]
    pub async fn record_claim_epoch(&self, claim: Claim, epoch: &EpochMetrics) -> Result<Fenced> {
        let mut conn = self.acquire().await?;
        let written = upsert_epoch(conn.conn(), claim.trial.0, Some(claim.attempt), epoch)
            .await
            .map_err(|e| self.db_error(e))?;
        Ok(fenced(written, claim, "epoch"))
    }

    /// Stores the result of `claim` and marks its trial complete, with its curve `epochs`
    /// (added to, or replacing by epoch, what [`Store::record_claim_epoch`] stored), in one
    /// transaction. [`Fenced::Superseded`] when the trial is no longer running under this
    /// attempt (or is gone with its run): then nothing is written. Metrics that cannot be right
    /// are refused ([`crate::StoreError::InvalidValue`]) as by [`Store::complete_trial`].
    #[instrument(skip_all, fields(trial = %claim.trial, attempt = claim.attempt), err(level = "debug"))]
    pub async fn complete_claim(
        &self,
        claim: Claim,
        metrics: &TrialMetrics,
        epochs: &[EpochMetrics],
    ) -> Result<Fenced> {
        let checked = check_metrics(metrics)?;
        let now = time::now();
        let mut tx = self.begin_write().await?;
        let updated = write_metrics(tx.conn(), claim.trial.0, Some(claim.attempt), metrics, &checked, &now)
            .await
            .map_err(|e| self.db_error(e))?;
        if updated == 0 {
            tx.rollback().await.map_err(|e| self.db_error(e))?;
            return Ok(superseded(claim, "result"));
        }
        for epoch in epochs {
            upsert_epoch(tx.conn(), claim.trial.0, None, epoch).await.map_err(|e| self.db_error(e))?;
        }
        tx.commit().await.map_err(|e| self.db_error(e))?;
        Ok(Fenced::Written)
    }

    /// Fails the trial of `claim` (`kind` and a one-line `message`, as [`Store::fail_trial`]
    /// records them). [`Fenced::Superseded`] when the trial is no longer running under this
    /// attempt: then nothing is written.
    #[instrument(skip_all, fields(trial = %claim.trial, attempt = claim.attempt, kind = %kind), err(level = "debug"))]
    pub async fn fail_claim(&self, claim: Claim, kind: FailureKind, message: &str) -> Result<Fenced> {
        let mut conn = self.acquire().await?;
        let updated =
            mark_failed(conn.conn(), claim.trial.0, Some(claim.attempt), kind, message, &time::now())
                .await
                .map_err(|e| self.db_error(e))?;
        Ok(fenced(updated, claim, "failure"))
    }

    /// Gives the trial of `claim` back on an orderly stop (Ctrl-C, SIGTERM): it goes back to
    /// pending with worker and lease cleared, and the attempt is given back (`attempts - 1`), so
    /// the stop does not count towards [`crate::MAX_ATTEMPTS`]. [`Fenced::Superseded`] when the
    /// trial is no longer running under this attempt.
    ///
    /// Since the attempt is given back, the next claim of the trial gets the same attempt
    /// number: a worker must not use `claim` for anything after releasing it.
    #[instrument(skip_all, fields(trial = %claim.trial, attempt = claim.attempt), err(level = "debug"))]
    pub async fn release_claim(&self, claim: Claim) -> Result<Fenced> {
        let rows = on_pool!(self, pool => {
            sqlx::query(
                "UPDATE trials SET state = 'pending', worker = NULL, lease_until = NULL,
                        attempts = CASE WHEN attempts > 0 THEN attempts - 1 ELSE 0 END
                 WHERE id = $1 AND attempts = $2 AND state = 'running'",
            )
            .bind(claim.trial.0)
            .bind(i64::from(claim.attempt))
            .execute(pool)
            .await
            .map(|done| done.rows_affected())
        })
        .map_err(|e| self.db_error(e))?;
        Ok(fenced(rows, claim, "release"))
    }

    /// Gives back the trials of `run` still held by the worker processes named `workers` (each
    /// name as the worker claimed with, or a prefix of it followed by `*`), as
    /// [`Store::release_claim`] does for one claim: for workers known to be gone, such as a
    /// search's own children after it has stopped them, so that none of their trials waits for
    /// its lease to pass. Returns the trials given back.
    #[instrument(skip_all, fields(run = %run, workers = workers.len()), err(level = "debug"))]
    pub async fn release_workers_claims(&self, run: RunId, workers: &[String]) -> Result<Vec<TrialId>> {
        let mut released = Vec::new();
        for worker in workers {
            let pattern = match worker.strip_suffix('*') {
                Some(prefix) => format!("{}%", like_literal(prefix)),
                None => like_literal(worker),
            };
            let ids: Vec<i64> = on_pool!(self, pool => {
                sqlx::query_scalar(
                    "UPDATE trials SET state = 'pending', worker = NULL, lease_until = NULL,
                            attempts = CASE WHEN attempts > 0 THEN attempts - 1 ELSE 0 END
                     WHERE run_id = $1 AND state = 'running' AND worker LIKE $2 ESCAPE '\\' RETURNING id",
                )
                .bind(run.0)
                .bind(&pattern)
                .fetch_all(pool)
                .await
            })
            .map_err(|e| self.db_error(e))?;
            released.extend(ids.into_iter().map(TrialId));
        }
        released.sort_unstable();
        Ok(released)
    }

    /// Takes back, across all runs, the running trials whose lease has passed (their worker
    /// died, hangs, or lost its connection to the database): each goes back to pending with
    /// worker and lease cleared, or — once claimed `max_attempts` times — is failed as
    /// [`FailureKind::Lost`]. Both in one transaction. Trials claimed without a lease
    /// ([`Store::claim_trial`]) are never touched. Their workers' later writes are
    /// [`Fenced::Superseded`].
    #[instrument(skip_all, fields(max_attempts), err(level = "debug"))]
    pub async fn requeue_expired(&self, max_attempts: u32) -> Result<Requeued> {
        let now = time::now();
        let message = format!(
            "its worker's lease expired without a result on each of its {max_attempts} attempts (the limit); \
             it may be killing its worker, e.g. by running out of memory"
        );
        let mut tx = self.begin_write().await?;
        let taken = take_back(tx.conn(), Orphans::LeaseEndedBefore(&now), max_attempts, &message, &now)
            .await
            .map_err(|e| self.db_error(e))?;
        tx.commit().await.map_err(|e| self.db_error(e))?;
        if !taken.pending.is_empty() || !taken.failed.is_empty() {
            tracing::info!(
                requeued = taken.pending.len(),
                failed = taken.failed.len(),
                "trials whose worker's lease expired"
            );
        }
        Ok(taken)
    }

    /// The trials with these ids, in id order, each once; ids of no trial are left out. For a
    /// process watching the trials it queued.
    pub async fn trials_by_id(&self, ids: &[TrialId]) -> Result<Vec<Trial>> {
        let mut ids: Vec<i64> = ids.iter().map(|id| id.0).collect();
        ids.sort_unstable();
        ids.dedup();
        let mut trials = Vec::with_capacity(ids.len());
        for chunk in ids.chunks(IDS_PER_QUERY) {
            let rows: Vec<TrialRow> = on_pool!(self, pool => {
                let mut query = QueryBuilder::new(format!("SELECT {TRIAL_COLUMNS} FROM trials WHERE id IN ("));
                let mut list = query.separated(", ");
                for id in chunk {
                    list.push_bind(*id);
                }
                query.push(") ORDER BY id");
                query.build_query_as().fetch_all(pool).await
            })
            .map_err(|e| self.db_error(e))?;
            for row in rows {
                trials.push(row.into_trial()?);
            }
        }
        Ok(trials)
    }
}

/// `text` as a LIKE pattern that matches only itself (with `ESCAPE '\\'`).
fn like_literal(text: &str) -> String {
    text.replace('\\', "\\\\").replace('%', "\\%").replace('_', "\\_")
}
