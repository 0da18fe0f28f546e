//! Read-only queries for watchers (the web dashboard, `effnas serve`): a cheap token that changes
//! whenever anything a page shows changes, one page of a run's trials sorted and filtered on a
//! fixed list of columns, and per-run counts that [`Store::runs`] does not give.
//!
//! Every statement here only reads, and each is one short statement (its own implicit
//! transaction), so a watcher never holds a snapshot open while a search writes: in SQLite's WAL
//! mode readers and the writer do not wait on each other, and PostgreSQL readers never block.

use sqlx::QueryBuilder;

use crate::error::{Result, StoreError};
use crate::model::{FailureKind, RunId, Trial, TrialState};
use crate::trials::{TrialRow, TRIAL_COLUMNS};
use crate::{from_sql_int, to_sql_int, Store};

/// A column of `trials` that a watcher may sort or filter on. The SQL for each is fixed here:
/// the browser names a column, it never sends SQL.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash, Default)]
pub enum TrialColumn {
    #[default]
    Id,
    State,
    Step,
    Setting,
    Attempts,
    Accuracy,
    Loss,
    Params,
    Flops,
    Reward,
    LatencyMs,
    Seconds,
    ImagesPerSecond,
    Worker,
    Created,
    Finished,
}

impl TrialColumn {
    /// Every column, in table order.
    pub const ALL: &'static [TrialColumn] = &[
        TrialColumn::Id,
        TrialColumn::State,
        TrialColumn::Step,
        TrialColumn::Setting,
        TrialColumn::Attempts,
        TrialColumn::Accuracy,
        TrialColumn::Loss,
        TrialColumn::Params,
        TrialColumn::Flops,
        TrialColumn::Reward,
        TrialColumn::LatencyMs,
        TrialColumn::Seconds,
        TrialColumn::ImagesPerSecond,
        TrialColumn::Worker,
        TrialColumn::Created,
        TrialColumn::Finished,
    ];

    /// The column's name in `trials`, which is also its name in URLs and JSON.
    pub fn as_str(self) -> &'static str {
        match self {
            TrialColumn::Id => "id",
            TrialColumn::State => "state",
            TrialColumn::Step => "step",
            TrialColumn::Setting => "setting",
            TrialColumn::Attempts => "attempts",
            TrialColumn::Accuracy => "accuracy",
            TrialColumn::Loss => "loss",
            TrialColumn::Params => "params",
            TrialColumn::Flops => "flops",
            TrialColumn::Reward => "reward",
            TrialColumn::LatencyMs => "latency_ms",
            TrialColumn::Seconds => "seconds",
            TrialColumn::ImagesPerSecond => "images_per_second",
            TrialColumn::Worker => "worker",
            TrialColumn::Created => "created_at",
            TrialColumn::Finished => "finished_at",
        }
    }

    /// The column named `name` (as [`TrialColumn::as_str`] spells it).
    pub fn parse(name: &str) -> Option<TrialColumn> {
        TrialColumn::ALL.iter().copied().find(|c| c.as_str() == name)
    }

    /// Whether the column holds numbers, so that a range filter applies to it.
    pub fn is_numeric(self) -> bool {
        !matches!(
            self,
            TrialColumn::State | TrialColumn::Worker | TrialColumn::Created | TrialColumn::Finished
        )
    }
}

/// A range filter on a numeric column: both bounds inclusive, either may be open.
#[derive(Debug, Clone, Copy, PartialEq)]
pub struct ColumnRange {
    pub column: TrialColumn,
    pub min: Option<f64>,
    pub max: Option<f64>,
}

/// One page of a run's trials: which, in what order, and where the page starts.
#[derive(Debug, Clone, PartialEq)]
pub struct TrialQuery {
    pub state: Option<TrialState>,
    pub failure: Option<FailureKind>,
    pub ranges: Vec<ColumnRange>,
    pub sort: TrialColumn,
    pub descending: bool,
    pub offset: u64,
    /// At most this many trials (1 to [`TrialQuery::MAX_LIMIT`]).
    pub limit: u64,
}

impl Default for TrialQuery {
    fn default() -> Self {
        TrialQuery {
            state: None,
            failure: None,
            ranges: Vec::new(),
            sort: TrialColumn::Id,
            descending: false,
            offset: 0,
            limit: 50,
        }
    }
}

impl TrialQuery {
    /// The largest page: a download of every trial goes through [`Store::trials`] instead.
    pub const MAX_LIMIT: u64 = 1000;
}

/// A page of trials and how many trials pass the filter in all.
#[derive(Debug, Clone, PartialEq)]
pub struct TrialPage {
    pub trials: Vec<Trial>,
    pub total: u64,
}

/// Appends the `WHERE` of a [`TrialQuery`] to a query builder of either backend: the column
/// names come from [`TrialColumn::as_str`], every value is a bind.
macro_rules! push_trial_filter {
    ($query:expr, $run:expr, $filter:expr) => {{
        $query.push(" WHERE run_id = ").push_bind($run);
        if let Some(state) = $filter.state {
            $query.push(" AND state = ").push_bind(state.as_str());
        }
        if let Some(failure) = $filter.failure {
            $query.push(" AND failure = ").push_bind(failure.as_str());
        }
        for range in &$filter.ranges {
            // The cast lets integer and real columns compare with one real bind on PostgreSQL.
            let column = format!(" AND CAST({} AS DOUBLE PRECISION)", range.column.as_str());
            if let Some(min) = range.min {
                $query.push(&column).push(" >= ").push_bind(min);
            }
            if let Some(max) = range.max {
                $query.push(&column).push(" <= ").push_bind(max);
            }
        }
    }};
}

impl Store {
    /// One page of `run`'s trials that pass `query`, sorted by its column (trials without a
    /// value last, ties by id), and how many pass in all.
    pub async fn trial_page(&self, run: RunId, query: &TrialQuery) -> Result<TrialPage> {
        if !(1..=TrialQuery::MAX_LIMIT).contains(&query.limit) {
            return Err(StoreError::invalid(
                "limit",
                format!("{} is not between 1 and {}", query.limit, TrialQuery::MAX_LIMIT),
            ));
        }
        if let Some(range) = query.ranges.iter().find(|r| !r.column.is_numeric()) {
            return Err(StoreError::invalid(
                "range",
                format!("column {} does not hold numbers", range.column.as_str()),
            ));
        }
        let (limit, offset) = (to_sql_int("limit", query.limit)?, to_sql_int("offset", query.offset)?);
        let column = query.sort.as_str();
        let direction = if query.descending { "DESC" } else { "ASC" };
        let order = format!(" ORDER BY {column} IS NULL, {column} {direction}, id ASC LIMIT ");
        let (total, rows): (i64, Vec<TrialRow>) = on_pool!(self, pool => {
            let mut count = QueryBuilder::new("SELECT COUNT(*) FROM trials");
            push_trial_filter!(count, run.0, query);
            let total = count.build_query_scalar().fetch_one(pool).await;
            let mut page = QueryBuilder::new(format!("SELECT {TRIAL_COLUMNS} FROM trials"));
            push_trial_filter!(page, run.0, query);
            page.push(&order).push_bind(limit).push(" OFFSET ").push_bind(offset);
            match total {
                Ok(total) => page.build_query_as().fetch_all(pool).await.map(|rows| (total, rows)),
                Err(e) => Err(e),
            }
        })
        .map_err(|e| self.db_error(e))?;
        let trials = rows.into_iter().map(TrialRow::into_trial).collect::<Result<_>>()?;
        Ok(TrialPage { trials, total: from_sql_int("trial count", total)? })
    }

    /// A short text that changes whenever a run or trial is added, a trial changes state, is
    /// claimed again, finishes, beats its heart or records an epoch, or a run changes status:
    /// what a watcher polls (one statement over the trials' columns) to know when to reload.
    pub async fn change_token(&self) -> Result<String> {
        const SQL: &str = "
SELECT (SELECT COUNT(*) FROM runs),
       (SELECT COUNT(*) FROM runs WHERE status = 'running'),
       (SELECT MAX(finished_at) FROM runs),
       t.n, t.last_id, t.running, t.done, t.attempts, t.finished, t.heartbeat,
       (SELECT COUNT(*) FROM trial_epochs)
FROM (SELECT COUNT(*) AS n, COALESCE(MAX(id), 0) AS last_id,
             CAST(COALESCE(SUM(CASE WHEN state = 'running' THEN 1 ELSE 0 END), 0) AS BIGINT) AS running,
             CAST(COALESCE(SUM(CASE WHEN state IN ('complete', 'failed') THEN 1 ELSE 0 END), 0) AS BIGINT) AS done,
             CAST(COALESCE(SUM(attempts), 0) AS BIGINT) AS attempts,
             MAX(finished_at) AS finished, MAX(heartbeat_at) AS heartbeat
      FROM trials) t";
        type Row = (i64, i64, Option<String>, i64, i64, i64, i64, i64, Option<String>, Option<String>, i64);
        let row: Row = on_pool!(self, pool => sqlx::query_as(SQL).fetch_one(pool).await)
            .map_err(|e| self.db_error(e))?;
        let (runs, running_runs, run_end, n, last, running, done, attempts, finished, heartbeat, epochs) =
            row;
        Ok(format!(
            "{runs}.{running_runs}.{}.{n}.{last}.{running}.{done}.{attempts}.{}.{}.{epochs}",
            run_end.unwrap_or_default(),
            finished.unwrap_or_default(),
            heartbeat.unwrap_or_default()
        ))
    }

    /// For each run, how many of its trials were claimed more than once: taken back from a
    /// worker that died or hung (its lease passed, or its process was gone on `--resume`) and
    /// claimed again. A release on an orderly stop gives its attempt back, so it does not count.
    /// Runs without such trials are left out.
    pub async fn reclaimed_counts(&self) -> Result<Vec<(RunId, u64)>> {
        const SQL: &str =
            "SELECT run_id, COUNT(*) FROM trials WHERE attempts > 1 GROUP BY run_id ORDER BY run_id";
        let rows: Vec<(i64, i64)> = on_pool!(self, pool => sqlx::query_as(SQL).fetch_all(pool).await)
            .map_err(|e| self.db_error(e))?;
        rows.into_iter().map(|(run, n)| Ok((RunId(run), from_sql_int("reclaimed count", n)?))).collect()
    }
}
