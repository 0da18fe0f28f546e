//! `effnas runs`: every run in the database, one line each. Also the helpers the other query
//! commands (`trials`, `show`, `pareto`, `export`, `plot`) share: opening the database and
//! picking a run.

use crate::output::{out, outln};
use std::future::Future;
use std::process::ExitCode;

use anyhow::{Context, Result};
use effnas_search::finalists::{finalists, first_setting_of, Finalist};
use effnas_store::{Run, RunKind, Store, TrialFilter};
use serde_json::json;

use crate::table::Table;

#[derive(Debug, clap::Args)]
pub struct Args {
    #[command(flatten)]
    pub db: DbArg,
    /// Print JSON (a list of objects) instead of a table.
    #[arg(long)]
    pub json: bool,
}

/// The database flag every query command takes.
#[derive(Debug, Clone, clap::Args)]
pub struct DbArg {
    /// The experiment database: an SQLite file path, an sqlite:// URL or a postgres:// URL.
    #[arg(long, value_name = "DB", env = "EFFNAS_DB", default_value = "effnas.db")]
    pub db: String,
}

/// The database and one of its runs, as every per-run query takes them.
#[derive(Debug, clap::Args)]
pub struct RunSelector {
    #[command(flatten)]
    pub db: DbArg,
    /// The run: its id (all digits, e.g. `--run 12`) or its name; `=NAME` is always a name
    /// (e.g. `--run =2024`, for a name of digits from an older database). Default: the newest run.
    #[arg(long, value_name = "RUN")]
    pub run: Option<String>,
}

impl RunSelector {
    /// Opens the database for queries and finds the run.
    pub async fn open(&self) -> Result<(Store, Run)> {
        let store = open(&self.db).await?;
        let run = select_run(&store, self.run.as_deref()).await?;
        Ok((store, run))
    }
}

/// Runs an async query on a small runtime of its own: the commands are short and sequential.
pub fn block_on<T>(future: impl Future<Output = Result<T>>) -> Result<T> {
    let runtime = tokio::runtime::Builder::new_current_thread()
        .enable_all()
        .build()
        .context("starting the async runtime")?;
    runtime.block_on(future)
}

/// Opens an existing database for queries (never creates one; read-only files work).
pub async fn open(db: &DbArg) -> Result<Store> {
    Ok(Store::open_existing(&db.db).await?)
}

/// The run a user named by id or name (see [`effnas_store::Store::find_run`]), or the newest run
/// when they named none.
pub async fn select_run(store: &Store, selector: Option<&str>) -> Result<Run> {
    match selector {
        Some(selector) => Ok(store.find_run(selector).await?),
        None => store.latest_run().await?.with_context(|| format!("{} holds no runs yet", store.location())),
    }
}

pub fn run(args: Args) -> Result<ExitCode> {
    let (runs, answers) = block_on(async {
        let store = open(&args.db).await?;
        let runs = store.runs().await?;
        let mut answers = Vec::with_capacity(runs.len());
        for run in &runs {
            answers.push(answer(&store, run).await?);
        }
        store.close().await;
        Ok((runs, answers))
    })?;
    if args.json {
        let rows: Vec<_> = runs
            .iter()
            .zip(&answers)
            .map(|(r, answer)| {
                let mut row = run_json(r);
                row["answer"] = json!(answer);
                row
            })
            .collect();
        outln!("{}", serde_json::to_string_pretty(&rows)?)?;
    } else if runs.is_empty() {
        outln!("no runs in {}", effnas_store::Store::redacted(&args.db.db))?;
    } else {
        let mut table = Table::new([
            "id",
            "name",
            "kind",
            "status",
            "done",
            "failed",
            "total",
            "best reward",
            "answer (final reward)",
            "started",
            "duration",
        ]);
        for (r, answer) in runs.iter().zip(&answers) {
            // The table escapes control characters in every cell (a hostile name stays one line).
            table.row([
                r.id.to_string(),
                r.name.clone(),
                r.kind.to_string(),
                r.status.to_string(),
                r.trials_done.to_string(),
                r.trials_failed.to_string(),
                r.trials_total.to_string(),
                r.best_reward.map_or("-".to_owned(), |v| format!("{v:.4}")),
                answer.as_ref().map_or("-".to_owned(), |a| {
                    let reward =
                        a.reward.map_or("-".to_owned(), |r| super::finalists::mean_std(r.mean, r.std, 4));
                    format!("trial {}: {reward}", a.trial)
                }),
                short_time(&r.started),
                r.duration_seconds().map_or("-".to_owned(), human_duration),
            ]);
        }
        out!("{}", table.render())?;
    }
    Ok(ExitCode::SUCCESS)
}

/// One run as JSON: the table's columns in snake_case, plus the rest of the row.
/// A run's answer: its finalist with the best mean reward over fresh seeds (search and compound
/// runs with finalists); `None` before any finalist has completed.
async fn answer(store: &Store, run: &Run) -> Result<Option<Finalist>> {
    if !matches!(run.kind, RunKind::Search | RunKind::Compound) {
        return Ok(None);
    }
    let trials = store.trials(run.id, &TrialFilter::default()).await?;
    Ok(finalists(&trials, first_setting_of(run)).into_iter().find(|f| f.reward.is_some()))
}

pub fn run_json(r: &Run) -> serde_json::Value {
    json!({
        "id": r.id,
        "name": r.name,
        "kind": r.kind,
        "status": r.status,
        "trials_done": r.trials_done,
        "trials_failed": r.trials_failed,
        "trials_pending": r.trials_pending,
        "trials_running": r.trials_running,
        "trials_total": r.trials_total,
        "best_reward": r.best_reward,
        "started": r.started,
        "finished": r.finished,
        "owner": r.owner,
        "lease_until": r.lease_until,
        "duration_seconds": r.duration_seconds(),
        "seed": r.seed,
        "code_version": r.code_version,
        "config": r.config,
    })
}

/// `2025-11-25T18:33:07.125Z` → `2025-11-25 18:33` (UTC).
pub fn short_time(stored: &str) -> String {
    match (stored.get(..10), stored.get(11..16)) {
        (Some(day), Some(minute)) => format!("{day} {minute}"),
        _ => stored.to_owned(),
    }
}

/// `42.0` → `42s`, `250.0` → `4m10s`, `7384.0` → `2h03m`.
pub fn human_duration(seconds: f64) -> String {
    let total = seconds.max(0.0).round() as u64;
    let (hours, minutes, secs) = (total / 3600, total / 60 % 60, total % 60);
    if hours > 0 {
        format!("{hours}h{minutes:02}m")
    } else if minutes > 0 {
        format!("{minutes}m{secs:02}s")
    } else if seconds < 10.0 {
        format!("{:.1}s", seconds.max(0.0))
    } else {
        format!("{secs}s")
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn durations_and_times_read_well() {
        assert_eq!(human_duration(4.31), "4.3s");
        assert_eq!(human_duration(42.0), "42s");
        assert_eq!(human_duration(250.0), "4m10s");
        assert_eq!(human_duration(7384.0), "2h03m");
        assert_eq!(short_time("2025-11-25T18:33:07.125Z"), "2025-11-25 18:33");
    }
}
