//! `effnas export`: every trial of a run, one row each, as CSV or JSON, for spreadsheets,
//! pandas or another tool.

use std::path::PathBuf;
use std::process::ExitCode;

use anyhow::Result;
use effnas_store::TrialFilter;

use super::runs::{block_on, RunSelector};
use super::trials::trial_json;
use crate::output::out;

#[derive(Debug, clap::Args)]
pub struct Args {
    #[command(flatten)]
    pub selector: RunSelector,
    /// Output format.
    #[arg(long, value_enum, default_value_t = Format::Csv)]
    pub format: Format,
    /// Write to this file instead of standard output.
    #[arg(long, value_name = "FILE")]
    pub out: Option<PathBuf>,
}

#[derive(Debug, Clone, Copy, PartialEq, Eq, clap::ValueEnum)]
pub enum Format {
    /// One header line, then one line per trial; `blocks` is comma-separated, `arch` and
    /// `extra` are JSON text.
    Csv,
    /// A list of objects, the same keys as `effnas trials --json` plus `arch` and `extra`.
    Json,
}

/// The CSV columns, in order: the keys of the JSON form.
const COLUMNS: [&str; 37] = [
    "id",
    "run_id",
    "state",
    "accuracy",
    "flops",
    "params",
    "reward",
    "seconds",
    "blocks",
    "reference",
    "loss",
    "latency_ms",
    "images_per_second",
    "resolution",
    "arch_hash",
    "proxy_key",
    "step",
    "worker",
    "attempts",
    "created",
    "started",
    "finished",
    "error",
    "reused_from",
    "setting",
    "parent",
    "final_reward_mean",
    "final_reward_std",
    "final_seeds",
    "alpha",
    "beta",
    "gamma",
    "phi",
    "flops_factor",
    "extra",
    "arch",
    "run_name",
];

pub fn run(args: Args) -> Result<ExitCode> {
    if let Some(path) = &args.out {
        crate::files::refuse_database("--out", path, &args.selector.db.db)?;
    }
    let (run, trials, points) = block_on(async {
        let (store, run) = args.selector.open().await?;
        let trials = store.trials(run.id, &TrialFilter::default()).await?;
        let points = super::trials::compound_points_by_trial(&store, &run).await?;
        store.close().await;
        Ok((run, trials, points))
    })?;
    let finals =
        effnas_search::finalists::finalists(&trials, effnas_search::finalists::first_setting_of(&run));
    let rows: Vec<serde_json::Value> = trials
        .iter()
        .map(|t| {
            let mut row = trial_json(t, true);
            super::trials::add_compound_point(&mut row, points.get(&t.id).or_else(|| points.get(&t.parent?)));
            row["run_name"] = serde_json::Value::String(run.name.clone());
            // A finalist's mean and spread over its re-trainings with fresh seeds.
            let reward = finals.iter().find(|f| f.trial == t.id).and_then(|f| f.reward);
            row["final_reward_mean"] = serde_json::json!(reward.map(|r| r.mean));
            row["final_reward_std"] = serde_json::json!(reward.and_then(|r| r.std));
            row["final_seeds"] = serde_json::json!(reward.map(|r| r.seeds));
            row
        })
        .collect();
    let text = match args.format {
        Format::Json => serde_json::to_string_pretty(&rows)? + "\n",
        Format::Csv => to_csv(&rows),
    };
    match &args.out {
        Some(path) => {
            crate::files::write_atomically(path, |w| Ok(w.write_all(text.as_bytes())?))?;
            eprintln!("wrote {} trials of run {} to {}", rows.len(), run.id, path.display());
        }
        None => out!("{text}")?,
    }
    Ok(ExitCode::SUCCESS)
}

/// RFC 4180 CSV: fields with commas, quotes or line breaks are quoted, quotes doubled.
pub(crate) fn to_csv(rows: &[serde_json::Value]) -> String {
    let mut out = COLUMNS.join(",");
    out.push_str("\r\n");
    for row in rows {
        let fields: Vec<String> =
            COLUMNS.iter().map(|column| csv_field(&cell(&row[*column], column))).collect();
        out.push_str(&fields.join(","));
        out.push_str("\r\n");
    }
    out
}

/// A JSON value as CSV text: nothing for null, strings as they are, `blocks` comma-joined,
/// other structures as JSON.
fn cell(value: &serde_json::Value, column: &str) -> String {
    match value {
        serde_json::Value::Null => String::new(),
        serde_json::Value::String(text) => text.clone(),
        serde_json::Value::Array(items) if column == "blocks" => {
            items.iter().map(|b| b.as_str().unwrap_or_default().to_owned()).collect::<Vec<_>>().join(",")
        }
        other => other.to_string(),
    }
}

fn csv_field(text: &str) -> String {
    if text.contains([',', '"', '\n', '\r']) {
        format!("\"{}\"", text.replace('"', "\"\""))
    } else {
        text.to_owned()
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn csv_quotes_only_what_needs_it() {
        assert_eq!(csv_field("plain"), "plain");
        assert_eq!(csv_field("a,b"), "\"a,b\"");
        assert_eq!(csv_field("say \"hi\""), "\"say \"\"hi\"\"\"");
        assert_eq!(csv_field("two\nlines"), "\"two\nlines\"");
    }
}
