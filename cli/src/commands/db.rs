//! `effnas db`: the database itself. `effnas db copy` moves runs between SQLite and PostgreSQL,
//! either way, so a search started on a laptop continues on a cluster's server (and its results
//! come back to a file): every row of each run (trials, curves, controller checkpoints, compound
//! grid points, scaled models), in one transaction on the destination. Ids are kept when the
//! destination holds no runs, so `--resume RUN` and `show TRIAL` mean the same on both; with
//! `--append` the copied rows get new ids in a database that already holds runs.

use std::process::ExitCode;

use anyhow::{bail, Context, Result};
use effnas_store::{CopyOptions, OpenOptions, RunId, Store};
use serde_json::json;

use super::runs::block_on;
use crate::output::{out, outln};

#[derive(Debug, clap::Args)]
pub struct Args {
    #[command(subcommand)]
    pub command: DbCommand,
}

#[derive(Debug, clap::Subcommand)]
pub enum DbCommand {
    /// Copy runs from one database to another (SQLite file ↔ PostgreSQL, or any two).
    Copy(CopyArgs),
}

#[derive(Debug, clap::Args)]
pub struct CopyArgs {
    /// The database to copy from: an SQLite file, an sqlite:// URL or a postgres:// URL. Read
    /// only; it must exist.
    #[arg(long, value_name = "DB")]
    pub from: String,
    /// The database to copy into: an SQLite file (created if missing) or a postgres:// URL (the
    /// database must exist; its tables are created). It must hold no runs, unless --append.
    /// EFFNAS_DB_TO keeps a password off the command line.
    #[arg(long, value_name = "DB", env = "EFFNAS_DB_TO")]
    pub to: String,
    /// Copy only these runs (ids, comma-separated; default: every run).
    #[arg(long, value_name = "IDS", value_delimiter = ',', value_parser = run_id)]
    pub runs: Vec<RunId>,
    /// Copy into a database that already holds runs: the copied runs, trials and other rows get
    /// new ids there (references between them are rewritten).
    #[arg(long)]
    pub append: bool,
    /// Print a JSON summary on stdout instead of lines.
    #[arg(long)]
    pub json: bool,
}

fn run_id(text: &str) -> Result<RunId, String> {
    let trimmed = text.trim();
    match trimmed.parse::<i64>() {
        Ok(id) if id > 0 => Ok(RunId(id)),
        _ => Err(format!("{trimmed:?} is not a run id (a positive number; see `effnas runs`)")),
    }
}

pub fn run(args: Args) -> Result<ExitCode> {
    match args.command {
        DbCommand::Copy(args) => copy(&args),
    }
}

fn copy(args: &CopyArgs) -> Result<ExitCode> {
    let (from_shown, to_shown) = (Store::redacted(&args.from), Store::redacted(&args.to));
    let report = block_on(async {
        // Never creates the source: a mistyped --from must not copy an empty new file.
        let source_options = OpenOptions { create: false, ..OpenOptions::default() };
        let source = Store::open_with(&args.from, &source_options)
            .await
            .with_context(|| format!("--from {from_shown}"))?;
        let destination = Store::open(&args.to).await.with_context(|| format!("--to {to_shown}"))?;
        if destination.is_in_memory() {
            bail!("--to {to_shown}: an in-memory database ends with this command; give a file or a postgres:// URL");
        }
        let options = CopyOptions { runs: args.runs.clone(), append: args.append };
        let json = args.json;
        let report = source
            .copy_runs(&destination, &options, |run| {
                if !json {
                    eprintln!(
                        "run {} ({}): {} trials, {} epochs, {} checkpoints, {} grid points, {} scaled models",
                        run.from,
                        effnas_store::escape_control(&run.name),
                        run.trials,
                        run.epochs,
                        run.checkpoints,
                        run.compound_points,
                        run.scaled_models
                    );
                }
            })
            .await
            .with_context(|| format!("copying {from_shown} to {to_shown}"))?;
        source.close().await;
        destination.close().await;
        Ok(report)
    })?;
    if args.json {
        outln!(
            "{}",
            serde_json::to_string_pretty(&json!({
                "from": report.from,
                "to": report.to,
                "ids": if report.ids_kept { "kept" } else { "renumbered" },
                "runs": report.runs,
                "trials": report.runs.iter().map(|r| r.trials).sum::<u64>(),
                "dropped_references": report.dropped_references,
            }))?
        )?;
        return Ok(ExitCode::SUCCESS);
    }
    let trials: u64 = report.runs.iter().map(|r| r.trials).sum();
    out!("copied {} run(s), {trials} trials, from {} to {}", report.runs.len(), report.from, report.to)?;
    if report.ids_kept {
        outln!(" (ids kept)")?;
    } else {
        let renumbered: Vec<String> = report.runs.iter().map(|r| format!("{} → {}", r.from, r.to)).collect();
        outln!(" (renumbered: run {})", renumbered.join(", "))?;
    }
    if report.dropped_references > 0 {
        outln!(
            "{} reference(s) to trials of runs not copied were cleared (reused_from, parent_id, grid points)",
            report.dropped_references
        )?;
    }
    Ok(ExitCode::SUCCESS)
}
