//! `effnas pareto`: the trials no other trial beats on both accuracy (higher) and
//! multiply-adds (lower) — the trade-off curve the search explores (MnasNet §3).

use crate::output::{out, outln};
use std::process::ExitCode;

use anyhow::Result;
use effnas_search::finalists::{finalists, first_setting_of};
use effnas_store::{pareto_front, Trial, TrialFilter, TrialState};

use super::runs::{block_on, RunSelector};
use super::trials::{trial_json, trial_table, BLOCKS_LEGEND};

#[derive(Debug, clap::Args)]
pub struct Args {
    #[command(flatten)]
    pub selector: RunSelector,
    /// Print JSON (a list of objects, cheapest first) instead of a table.
    #[arg(long)]
    pub json: bool,
}

/// The complete trials on the accuracy / multiply-adds front, cheapest first. Only the run's own
/// trials count (setting 0): a finalist's re-trainings repeat an architecture already there.
pub fn front(trials: &[Trial]) -> Vec<&Trial> {
    pareto_front(trials, |t| {
        (t.state == TrialState::Complete && t.setting == 0)
            .then_some(t.accuracy.map(|a| (a, t.flops)))
            .flatten()
    })
    .into_iter()
    .map(|i| &trials[i])
    .collect()
}

pub fn run(args: Args) -> Result<ExitCode> {
    let (run, trials) = block_on(async {
        let (store, run) = args.selector.open().await?;
        let filter = TrialFilter { state: Some(TrialState::Complete), ..TrialFilter::default() };
        let trials = store.trials(run.id, &filter).await?;
        store.close().await;
        Ok((run, trials))
    })?;
    let front: Vec<Trial> = front(&trials).into_iter().cloned().collect();
    let finals = finalists(&trials, first_setting_of(&run));
    let final_of = |t: &Trial| finals.iter().find(|f| f.trial == t.id);
    if args.json {
        let rows: Vec<_> = front
            .iter()
            .map(|t| {
                let mut row = trial_json(t, false);
                row["final"] = serde_json::json!(final_of(t));
                row
            })
            .collect();
        outln!("{}", serde_json::to_string_pretty(&rows)?)?;
    } else {
        outln!(
            "run {} ({}): {} of {} complete trials are Pareto-optimal (accuracy up, multiply-adds down)",
            run.id,
            run.display_name(),
            front.len(),
            trials.len()
        )?;
        if !front.is_empty() {
            out!("{}", trial_table(&front))?;
            outln!("{BLOCKS_LEGEND}")?;
        }
        for (t, f) in front.iter().filter_map(|t| Some((t, final_of(t)?))) {
            let reward = f.reward.map_or("-".to_owned(), |r| r.to_string());
            outln!("trial {} is a finalist: final reward {reward}", t.id)?;
        }
    }
    Ok(ExitCode::SUCCESS)
}
