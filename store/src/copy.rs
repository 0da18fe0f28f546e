//! Copying runs from one database to another, either backend to either: a search started on a
//! laptop's SQLite file continues on a cluster's PostgreSQL (`effnas db copy`), and back.
//!
//! Every row of a run goes along: the run, its trials, their curves and attempts, the controller's
//! checkpoints, the compound grid points and the scaled models, column for column (timestamps,
//! states, leases and attempts as they are), all in one transaction on the destination, so a
//! copy that fails leaves the destination as it was.
//!
//! **Ids.** Into a database without runs, ids are kept: run 3 is run 3 there too, so
//! `--resume 3` and `show 1234` mean the same on both. Into a database that already holds runs
//! (only when asked, [`CopyOptions::append`]), every copied row gets a new id and every
//! reference between copied rows (a trial's run, `reused_from`, `parent_id`, a grid point's
//! trial) is rewritten to the new ids. A reference to a trial that is not copied (it belongs to
//! a run left out with [`CopyOptions::runs`]) becomes NULL, as deleting that trial would make it.

use std::collections::HashMap;

use sqlx::{QueryBuilder, Row};

use crate::error::{Result, StoreError};
use crate::model::RunId;
use crate::{Backend, Conn, Store, Tx};

/// What to copy, and whether the destination may already hold runs.
#[derive(Debug, Clone, Default)]
pub struct CopyOptions {
    /// The runs to copy; every run when empty.
    pub runs: Vec<RunId>,
    /// Copy into a destination that already holds runs, renumbering every copied row.
    /// Without it such a destination is refused.
    pub append: bool,
}

/// One run as copied.
#[derive(Debug, Clone, PartialEq, Eq, serde::Serialize)]
pub struct CopiedRun {
    /// Its id in the source.
    pub from: RunId,
    /// Its id in the destination (equal to `from` unless renumbered).
    pub to: RunId,
    pub name: String,
    pub trials: u64,
    pub epochs: u64,
    /// Rows of `trial_attempts`.
    pub attempts: u64,
    pub checkpoints: u64,
    pub compound_points: u64,
    pub scaled_models: u64,
}

/// What a copy did.
#[derive(Debug, Clone, PartialEq, Eq, serde::Serialize)]
pub struct CopyReport {
    /// The source and the destination, as messages show them (passwords hidden).
    pub from: String,
    pub to: String,
    /// Whether ids were kept (an empty destination) or every copied row was renumbered.
    pub ids_kept: bool,
    pub runs: Vec<CopiedRun>,
    /// References to trials that were not copied, set to NULL (`reused_from`, `parent_id`,
    /// grid points' `trial_id`).
    pub dropped_references: u64,
}

/// How a column's values are read and bound.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
enum Kind {
    Int,
    Float,
    Text,
    Bytes,
}

/// What a column refers to, to be rewritten when ids change.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
enum Refers {
    Nothing,
    /// The table's own id.
    OwnId,
    Run,
    /// A trial, possibly one that is not copied (then NULL).
    Trial,
}

/// One column of a copied table.
#[derive(Debug, Clone, Copy)]
struct Column {
    name: &'static str,
    kind: Kind,
    refers: Refers,
}

const fn col(name: &'static str, kind: Kind) -> Column {
    Column { name, kind, refers: Refers::Nothing }
}

const fn reference(name: &'static str, refers: Refers) -> Column {
    Column { name, kind: Kind::Int, refers }
}

/// A copied table: its columns, the order rows are copied in, and whether it has an id of its
/// own (a PostgreSQL identity, to be moved past the copied ids).
struct Table {
    name: &'static str,
    columns: &'static [Column],
    /// Selects the rows of one run (`$1`).
    of_run: &'static str,
    order: &'static str,
}

use Kind::{Bytes, Float, Int, Text};

const RUNS: Table = Table {
    name: "runs",
    columns: &[
        reference("id", Refers::OwnId),
        col("name", Text),
        col("kind", Text),
        col("status", Text),
        col("config", Text),
        col("seed", Int),
        col("code_version", Text),
        col("created_at", Text),
        col("finished_at", Text),
        col("owner", Text),
        col("lease_until", Text),
    ],
    of_run: "id = $1",
    order: "id",
};

const TRIALS: Table = Table {
    name: "trials",
    columns: &[
        reference("id", Refers::OwnId),
        reference("run_id", Refers::Run),
        col("arch", Text),
        col("arch_hash", Text),
        col("blocks", Text),
        col("resolution", Int),
        col("proxy_key", Text),
        col("state", Text),
        col("worker", Text),
        col("attempts", Int),
        col("created_at", Text),
        col("started_at", Text),
        col("heartbeat_at", Text),
        col("finished_at", Text),
        col("accuracy", Float),
        col("loss", Float),
        col("params", Int),
        col("flops", Int),
        col("reward", Float),
        col("latency_ms", Float),
        col("seconds", Float),
        col("images_per_second", Float),
        col("error", Text),
        col("step", Int),
        col("extra", Text),
        reference("reused_from", Refers::Trial),
        col("failure", Text),
        col("lease_until", Text),
        col("setting", Int),
        reference("parent_id", Refers::Trial),
        col("queued_batch", Text),
    ],
    of_run: "run_id = $1",
    order: "id",
};

const EPOCHS: Table = Table {
    name: "trial_epochs",
    columns: &[
        reference("trial_id", Refers::Trial),
        col("epoch", Int),
        col("train_loss", Float),
        col("train_accuracy", Float),
        col("val_loss", Float),
        col("val_accuracy", Float),
        col("learning_rate", Float),
        col("seconds", Float),
    ],
    of_run: "trial_id IN (SELECT id FROM trials WHERE run_id = $1)",
    order: "trial_id, epoch",
};

const ATTEMPTS: Table = Table {
    name: "trial_attempts",
    columns: &[
        reference("trial_id", Refers::Trial),
        col("attempt", Int),
        col("worker", Text),
        col("started_at", Text),
        col("ended_at", Text),
        col("heartbeat_at", Text),
        col("outcome", Text),
        col("failure", Text),
    ],
    of_run: "trial_id IN (SELECT id FROM trials WHERE run_id = $1)",
    order: "trial_id, attempt",
};

const CHECKPOINTS: Table = Table {
    name: "controller_checkpoints",
    columns: &[
        reference("run_id", Refers::Run),
        col("step", Int),
        col("state", Text),
        col("blob", Bytes),
        col("created_at", Text),
    ],
    of_run: "run_id = $1",
    order: "step",
};

const COMPOUND_POINTS: Table = Table {
    name: "compound_points",
    columns: &[
        reference("id", Refers::OwnId),
        reference("run_id", Refers::Run),
        col("alpha", Float),
        col("beta", Float),
        col("gamma", Float),
        col("phi", Float),
        col("flops_factor", Float),
        reference("trial_id", Refers::Trial),
        col("created_at", Text),
    ],
    of_run: "run_id = $1",
    order: "id",
};

const SCALED_MODELS: Table = Table {
    name: "scaled_models",
    columns: &[
        reference("id", Refers::OwnId),
        reference("run_id", Refers::Run),
        col("name", Text),
        col("phi", Float),
        col("width", Float),
        col("depth", Float),
        col("resolution_multiplier", Float),
        col("resolution", Int),
        col("dropout", Float),
        col("arch", Text),
        col("arch_hash", Text),
        col("blocks", Text),
        col("params", Int),
        col("flops", Int),
        col("created_at", Text),
    ],
    of_run: "run_id = $1",
    order: "id",
};

/// Every table, in the order rows are inserted (referenced before referencing).
const TABLES: [&Table; 7] =
    [&RUNS, &TRIALS, &EPOCHS, &ATTEMPTS, &CHECKPOINTS, &COMPOUND_POINTS, &SCALED_MODELS];

/// The tables and columns a copy carries, for the test that holds them to the schema.
#[doc(hidden)]
pub fn copied_columns() -> Vec<(&'static str, Vec<&'static str>)> {
    TABLES.iter().map(|t| (t.name, t.columns.iter().map(|c| c.name).collect())).collect()
}

/// A value as read from one backend and bound into the other.
#[derive(Debug, Clone, PartialEq)]
enum Value {
    Int(Option<i64>),
    Float(Option<f64>),
    Text(Option<String>),
    Bytes(Option<Vec<u8>>),
}

type Rows = Vec<Vec<Value>>;

/// Reads the rows of `table` that belong to `run`, column by column as the table says.
async fn read_rows(store: &Store, table: &Table, run: RunId) -> Result<Rows> {
    let names: Vec<&str> = table.columns.iter().map(|c| c.name).collect();
    let sql = format!(
        "SELECT {} FROM {} WHERE {} ORDER BY {}",
        names.join(", "),
        table.name,
        table.of_run,
        table.order
    );
    on_pool!(store, pool => async {
        let rows = sqlx::query(&sql).bind(run.0).fetch_all(pool).await?;
        let mut out = Vec::with_capacity(rows.len());
        for row in &rows {
            let mut values = Vec::with_capacity(table.columns.len());
            for (i, column) in table.columns.iter().enumerate() {
                values.push(match column.kind {
                    Int => Value::Int(row.try_get(i)?),
                    Float => Value::Float(row.try_get(i)?),
                    Text => Value::Text(row.try_get(i)?),
                    Bytes => Value::Bytes(row.try_get(i)?),
                });
            }
            out.push(values);
        }
        Ok::<_, sqlx::Error>(out)
    }
    .await)
    .map_err(|e| store.db_error(e))
}

/// New ids of copied rows, by table; identity when ids are kept.
#[derive(Default)]
struct IdMap {
    keep: bool,
    runs: HashMap<i64, i64>,
    trials: HashMap<i64, i64>,
    dropped: u64,
}

impl IdMap {
    /// The destination's value of a referencing column; `None` (NULL) for a trial that was not
    /// copied.
    fn map(&mut self, refers: Refers, id: Option<i64>) -> Option<i64> {
        let id = id?;
        let known = match refers {
            Refers::Run => self.runs.get(&id),
            Refers::Trial => self.trials.get(&id),
            Refers::Nothing | Refers::OwnId => return Some(id),
        };
        match known {
            Some(&mapped) => Some(mapped),
            None => {
                self.dropped += 1;
                None
            }
        }
    }
}

/// Inserts `rows` into `table`, mapping references, and returns each row's id in the
/// destination (its own `id` column, when it has one). Trial references are left NULL here
/// and set by [`link_trials`] once every trial exists; own ids are left out when renumbering.
async fn insert_rows(conn: Conn<'_>, table: &Table, rows: &Rows, ids: &mut IdMap) -> sqlx::Result<Vec<i64>> {
    let own = table.columns.iter().position(|c| c.refers == Refers::OwnId);
    let inserted: Vec<usize> = (0..table.columns.len()).filter(|&i| Some(i) != own || ids.keep).collect();
    let names: Vec<&str> = inserted.iter().map(|&i| table.columns[i].name).collect();
    let mut new_ids = Vec::with_capacity(rows.len());
    on_conn!(conn, c => {
        for row in rows {
            let mut query = QueryBuilder::new(format!("INSERT INTO {} ({}) VALUES (", table.name, names.join(", ")));
            let mut values = query.separated(", ");
            for &i in &inserted {
                let column = table.columns[i];
                match (&row[i], column.refers) {
                    // Set afterwards: the trial it names may come later, or not at all.
                    (Value::Int(_), Refers::Trial) if table.name == "trials" => values.push_bind(None::<i64>),
                    (Value::Int(v), refers) => values.push_bind(ids.map(refers, *v)),
                    (Value::Float(v), _) => values.push_bind(*v),
                    (Value::Text(v), _) => values.push_bind(v.clone()),
                    (Value::Bytes(v), _) => values.push_bind(v.clone()),
                };
            }
            query.push(")");
            if own.is_some() {
                query.push(" RETURNING id");
                let id: i64 = query.build_query_scalar().fetch_one(&mut *c).await?;
                new_ids.push(id);
            } else {
                query.build().execute(&mut *c).await?;
            }
        }
        Ok::<_, sqlx::Error>(())
    })?;
    Ok(new_ids)
}

/// Sets the copied trials' references to other trials (`reused_from`, `parent_id`), mapped to
/// the destination's ids.
async fn link_trials(conn: Conn<'_>, trials: &Rows, ids: &mut IdMap) -> sqlx::Result<()> {
    let position = |name: &str| TRIALS.columns.iter().position(|c| c.name == name).unwrap_or(usize::MAX);
    let (id_at, reused_at, parent_at) = (position("id"), position("reused_from"), position("parent_id"));
    on_conn!(conn, c => {
        for row in trials {
            let (Some(Value::Int(Some(id))), Some(Value::Int(reused)), Some(Value::Int(parent))) =
                (row.get(id_at), row.get(reused_at), row.get(parent_at))
            else {
                continue;
            };
            if reused.is_none() && parent.is_none() {
                continue;
            }
            let id = ids.trials.get(id).copied();
            let (reused, parent) = (ids.map(Refers::Trial, *reused), ids.map(Refers::Trial, *parent));
            sqlx::query("UPDATE trials SET reused_from = $1, parent_id = $2 WHERE id = $3")
                .bind(reused)
                .bind(parent)
                .bind(id)
                .execute(&mut *c)
                .await?;
        }
        Ok::<_, sqlx::Error>(())
    })
}

impl Store {
    /// Every row of every table that belongs to `run`, each column formatted with its type, in
    /// the copy's order: to compare a run across databases in tests. Not for normal use.
    #[doc(hidden)]
    pub async fn dump_run(&self, run: RunId) -> Result<Vec<(&'static str, Vec<String>)>> {
        let mut dump = Vec::new();
        for table in TABLES {
            for row in read_rows(self, table, run).await? {
                dump.push((table.name, row.iter().map(|v| format!("{v:?}")).collect()));
            }
        }
        Ok(dump)
    }

    /// Whether two stores name the same database: the same file (however spelled) or the same
    /// URL.
    fn is_same_database(&self, other: &Store) -> bool {
        if self.backend() != other.backend() {
            return false;
        }
        match (Store::path_of(self.target()), Store::path_of(other.target())) {
            (Some(a), Some(b)) => match (std::fs::canonicalize(&a), std::fs::canonicalize(&b)) {
                (Ok(a), Ok(b)) => a == b,
                _ => a == b,
            },
            _ => self.target() == other.target() && self.backend() == Backend::Postgres,
        }
    }

    /// Copies runs of this database into `to` (see the module documentation of `copy.rs`:
    /// every row of each run, in one transaction on `to`; ids kept into an empty destination,
    /// renumbered with [`CopyOptions::append`]). `progress` is called after each run is read.
    /// A destination that holds runs is refused without `append`
    /// ([`StoreError::InvalidValue`] naming it), and so is copying a database into itself.
    pub async fn copy_runs(
        &self,
        to: &Store,
        options: &CopyOptions,
        mut progress: impl FnMut(&CopiedRun),
    ) -> Result<CopyReport> {
        if self.is_same_database(to) {
            return Err(StoreError::invalid(
                "--to",
                format!("{} is the source database itself", to.location()),
            ));
        }
        let runs = if options.runs.is_empty() {
            self.runs().await?.into_iter().map(|r| r.id).collect()
        } else {
            for &run in &options.runs {
                self.run(run).await?;
            }
            options.runs.clone()
        };
        let existing = to.runs().await?.len();
        if existing > 0 && !options.append {
            return Err(StoreError::invalid(
                "--to",
                format!(
                    "{} already holds {existing} run(s); copy into an empty database to keep the ids, or pass --append to add the runs under new ids",
                    to.location()
                ),
            ));
        }
        let mut ids = IdMap { keep: existing == 0, ..IdMap::default() };
        let mut report = CopyReport {
            from: self.location().to_owned(),
            to: to.location().to_owned(),
            ids_kept: ids.keep,
            runs: Vec::with_capacity(runs.len()),
            dropped_references: 0,
        };
        let mut tx = to.begin_write().await?;
        let mut all_trials: Rows = Vec::new();
        for run in runs {
            let mut rows = Vec::with_capacity(TABLES.len());
            for table in TABLES {
                rows.push(read_rows(self, table, run).await?);
            }
            // Runs first, then trials (whose ids the later tables refer to).
            let mut counts = [0u64; 7];
            for (t, (table, table_rows)) in TABLES.iter().zip(&rows).enumerate() {
                let new_ids =
                    insert_rows(tx.conn(), table, table_rows, &mut ids).await.map_err(|e| to.db_error(e))?;
                counts[t] = table_rows.len() as u64;
                let own_ids = table_rows.iter().filter_map(|row| match row.first() {
                    Some(Value::Int(Some(id))) => Some(*id),
                    _ => None,
                });
                let map = match table.name {
                    "runs" => &mut ids.runs,
                    "trials" => &mut ids.trials,
                    _ => continue,
                };
                for (old, new) in own_ids.zip(new_ids) {
                    map.insert(old, new);
                }
            }
            let copied = CopiedRun {
                from: run,
                to: RunId(ids.runs.get(&run.0).copied().unwrap_or(run.0)),
                name: match rows[0].first().and_then(|row| row.get(1)) {
                    Some(Value::Text(Some(name))) => name.clone(),
                    _ => String::new(),
                },
                trials: counts[1],
                epochs: counts[2],
                attempts: counts[3],
                checkpoints: counts[4],
                compound_points: counts[5],
                scaled_models: counts[6],
            };
            progress(&copied);
            report.runs.push(copied);
            all_trials.extend(rows.swap_remove(1));
        }
        link_trials(tx.conn(), &all_trials, &mut ids).await.map_err(|e| to.db_error(e))?;
        if let Tx::Postgres(pg) = &mut tx {
            // Ids given explicitly do not advance an identity: move each past the highest id,
            // so the next row inserted normally does not collide with a copied one.
            for table in ["runs", "trials", "compound_points", "scaled_models"] {
                sqlx::query(&format!(
                    "SELECT setval(pg_get_serial_sequence('{table}', 'id'), GREATEST((SELECT MAX(id) FROM {table}), 1))"
                ))
                .execute(&mut **pg)
                .await
                .map_err(|e| to.db_error(e))?;
            }
        }
        tx.commit().await.map_err(|e| to.db_error(e))?;
        report.dropped_references = ids.dropped;
        Ok(report)
    }
}
