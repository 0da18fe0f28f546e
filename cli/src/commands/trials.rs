//! `effnas trials`: the trials of a run as a table, filtered and sorted. Also the trial
//! rendering that `pareto` and `export` share: abbreviated blocks, reference-model matching,
//! the JSON form.

use crate::output::{out, outln};
use std::collections::HashMap;
use std::process::ExitCode;

use anyhow::Result;
use effnas_search::finalists::{finalists, first_setting_of, Finalist};
use effnas_space::{presets, ArchSpec, Op, Skip};
use effnas_store::{CompoundPoint, FailureKind, RunKind, Trial, TrialFilter, TrialId, TrialSort, TrialState};
use serde_json::json;

use super::runs::{block_on, RunSelector};
use crate::table::{human_count, Table};

#[derive(Debug, clap::Args)]
pub struct Args {
    #[command(flatten)]
    pub selector: RunSelector,
    /// Only trials in this state.
    #[arg(long, value_enum)]
    pub state: Option<StateArg>,
    /// Only failed trials of this kind: diverged, out_of_memory, time_limit, invalid, rejected,
    /// lost or error.
    #[arg(long, value_name = "KIND", value_parser = parse_failure)]
    pub failure: Option<FailureKind>,
    /// Only the best K trials (by --sort, which then defaults to reward).
    #[arg(long, value_name = "K")]
    pub top: Option<u64>,
    /// Order: best reward or accuracy first, fewest multiply-adds or parameters first, or
    /// shortest training first (default: the order they were queued).
    #[arg(long, value_enum)]
    pub sort: Option<SortArg>,
    /// Only trials with at most this many multiply-adds (400M, 0.4G, 4e8, 400000000; at least 1).
    #[arg(long, value_name = "F", value_parser = crate::flags::multiply_adds)]
    pub max_flops: Option<u64>,
    /// Only trials at least this accurate: a fraction (0.9) or a percentage (90%).
    #[arg(long, value_name = "A", value_parser = parse_accuracy)]
    pub min_accuracy: Option<f64>,
    /// Print JSON (a list of objects) instead of a table.
    #[arg(long)]
    pub json: bool,
}

fn parse_failure(text: &str) -> Result<FailureKind, String> {
    text.parse().map_err(|e: effnas_store::StoreError| e.to_string())
}

/// Trial states as the command line spells them.
#[derive(Debug, Clone, Copy, PartialEq, Eq, clap::ValueEnum)]
pub enum StateArg {
    Pending,
    Running,
    Complete,
    Failed,
}

impl From<StateArg> for TrialState {
    fn from(state: StateArg) -> Self {
        match state {
            StateArg::Pending => TrialState::Pending,
            StateArg::Running => TrialState::Running,
            StateArg::Complete => TrialState::Complete,
            StateArg::Failed => TrialState::Failed,
        }
    }
}

/// Trial orderings as the command line spells them.
#[derive(Debug, Clone, Copy, PartialEq, Eq, clap::ValueEnum)]
pub enum SortArg {
    Reward,
    Accuracy,
    Flops,
    Params,
    Time,
}

impl From<SortArg> for TrialSort {
    fn from(sort: SortArg) -> Self {
        match sort {
            SortArg::Reward => TrialSort::Reward,
            SortArg::Accuracy => TrialSort::Accuracy,
            SortArg::Flops => TrialSort::Flops,
            SortArg::Params => TrialSort::Params,
            SortArg::Time => TrialSort::Time,
        }
    }
}

pub fn run(args: Args) -> Result<ExitCode> {
    let filter = TrialFilter {
        state: args.state.map(Into::into),
        failure: args.failure,
        max_flops: args.max_flops,
        min_accuracy: args.min_accuracy,
        sort: match (args.sort, args.top) {
            (Some(sort), _) => sort.into(),
            (None, Some(_)) => TrialSort::Reward,
            (None, None) => TrialSort::Id,
        },
        limit: args.top,
    };
    let (run, trials, points, all) = block_on(async {
        let (store, run) = args.selector.open().await?;
        let trials = store.trials(run.id, &filter).await?;
        let points = compound_points_by_trial(&store, &run).await?;
        let all = store.trials(run.id, &TrialFilter::default()).await?;
        store.close().await;
        Ok((run, trials, points, all))
    })?;
    let finals: HashMap<TrialId, Finalist> =
        finalists(&all, first_setting_of(&run)).into_iter().map(|f| (f.trial, f)).collect();
    if args.json {
        let rows: Vec<_> = trials
            .iter()
            .map(|t| {
                let mut row = trial_json(t, false);
                add_compound_point(&mut row, points.get(&t.id).or_else(|| points.get(&t.parent?)));
                row["final"] = json!(finals.get(&t.id));
                row
            })
            .collect();
        outln!("{}", serde_json::to_string_pretty(&rows)?)?;
    } else {
        outln!("run {} ({}): {} of {} trials", run.id, run.display_name(), trials.len(), run.trials_total)?;
        if !trials.is_empty() && !points.is_empty() {
            out!("{}", compound_table(&trials, &points))?;
        } else if !trials.is_empty() {
            out!("{}", trial_table(&trials))?;
            outln!("{BLOCKS_LEGEND}")?;
        }
        if !finals.is_empty() {
            outln!()?;
            super::finalists::print_from(&all, first_setting_of(&run))?;
        }
    }
    Ok(ExitCode::SUCCESS)
}

/// Explains the abbreviated blocks under every table that shows them.
pub const BLOCKS_LEGEND: &str =
    "blocks: one per stage, e=expansion (cn/ds: regular/separable conv) k=kernel r=repeats c=channels, + SE, ! no skip, ^ pooling skip; in full: effnas show ID";

/// The human table of trials: what `trials` and `pareto` print.
pub fn trial_table(trials: &[Trial]) -> String {
    let mut table = Table::new(["id", "state", "accuracy", "flops", "params", "reward", "time", "blocks"]);
    for t in trials {
        let arch = t.arch().ok();
        let blocks = match arch.as_ref().and_then(reference_model) {
            Some(name) => format!("= {name}"),
            None => arch.as_ref().map_or_else(|| t.blocks.join(","), abbreviate_blocks),
        };
        table.row([
            t.id.to_string(),
            t.state.to_string(),
            t.accuracy.map_or("-".to_owned(), |a| format!("{:.2}%", a * 100.0)),
            human_count(t.flops),
            human_count(t.params),
            t.reward.map_or("-".to_owned(), |r| format!("{r:.4}")),
            t.seconds.map_or("-".to_owned(), super::runs::human_duration),
            blocks,
        ]);
    }
    table.render()
}

/// The grid point behind each trial of a compound run (empty for other runs).
pub async fn compound_points_by_trial(
    store: &effnas_store::Store,
    run: &effnas_store::Run,
) -> Result<HashMap<TrialId, CompoundPoint>> {
    if run.kind != RunKind::Compound {
        return Ok(HashMap::new());
    }
    let points = store.compound_points(run.id).await?;
    Ok(points.into_iter().filter_map(|p| p.trial_id.map(|id| (id, p))).collect())
}

/// Adds `alpha`, `beta`, `gamma`, `phi` and `flops_factor` (α·β²·γ²) to a trial's JSON; null
/// outside compound runs, so every row has the same keys.
pub fn add_compound_point(row: &mut serde_json::Value, point: Option<&CompoundPoint>) {
    row["alpha"] = json!(point.map(|p| p.alpha));
    row["beta"] = json!(point.map(|p| p.beta));
    row["gamma"] = json!(point.map(|p| p.gamma));
    row["phi"] = json!(point.map(|p| p.phi));
    row["flops_factor"] = json!(point.map(|p| p.flops_factor));
}

/// The table of a compound run's trials: the grid point in place of the blocks.
fn compound_table(trials: &[Trial], points: &HashMap<TrialId, CompoundPoint>) -> String {
    let mut table =
        Table::new(["id", "state", "α", "β", "γ", "φ", "α·β²·γ²", "accuracy", "flops", "params", "time"]);
    for t in trials {
        let point = points.get(&t.id).or_else(|| points.get(&t.parent?));
        let coefficient = |f: fn(&CompoundPoint) -> f64, digits: usize| {
            point.map_or("-".to_owned(), |p| format!("{:.digits$}", f(p)))
        };
        table.row([
            t.id.to_string(),
            t.state.to_string(),
            coefficient(|p| p.alpha, 2),
            coefficient(|p| p.beta, 2),
            coefficient(|p| p.gamma, 2),
            coefficient(|p| p.phi, 2),
            coefficient(|p| p.flops_factor, 3),
            t.accuracy.map_or("-".to_owned(), |a| format!("{:.2}%", a * 100.0)),
            human_count(t.flops),
            human_count(t.params),
            t.seconds.map_or("-".to_owned(), super::runs::human_duration),
        ]);
    }
    table.render()
}

/// A short form of the blocks for tables: `e6k5r3c40+` per stage (MBConv with expansion 6,
/// kernel 5, 3 layers, 40 output channels, `+` for squeeze-and-excitation); `cn`/`ds` for
/// regular and depthwise-separable convolutions, `bb`/`bt` for ResNet's basic and bottleneck
/// blocks; `!` for no skip, `^` for a pooling skip.
/// Strides are left out: in the MnasNet space they are fixed per stage.
pub fn abbreviate_blocks(arch: &ArchSpec) -> String {
    arch.blocks
        .iter()
        .map(|b| {
            let op = match b.op {
                Op::MBConv => format!("e{}", b.expansion),
                Op::Conv => "cn".to_owned(),
                Op::DepthwiseSeparable => "ds".to_owned(),
                Op::Basic => "bb".to_owned(),
                Op::Bottleneck => format!("bt{}", b.expansion),
                Op::Projection => "pj".to_owned(),
            };
            let se = if b.se_ratio > 0.0 { "+" } else { "" };
            let skip = match b.skip {
                Skip::Identity => "",
                Skip::None => "!",
                Skip::Pool => "^",
            };
            format!("{op}k{}r{}c{}{se}{skip}", b.kernel, b.repeats, b.out_channels)
        })
        .collect::<Vec<_>>()
        .join(" ")
}

/// Reference networks worth recognising in a search: the paper's B0 and MnasNet-A1, and the
/// MobileNetV2 base of the space.
pub const REFERENCE_MODELS: [(&str, &str); 3] =
    [("efficientnet-b0", "EfficientNet-B0"), ("mnasnet-a1", "MnasNet-A1"), ("mobilenet-v2", "MobileNetV2")];

/// The reference network this architecture is, if any. A proxy trains at its own resolution,
/// class count and input channels, so those (and dropout, a training setting) are ignored:
/// the structure — stem, blocks, head — must match exactly.
pub fn reference_model(arch: &ArchSpec) -> Option<&'static str> {
    REFERENCE_MODELS.iter().find_map(|&(preset, label)| {
        let reference = presets::preset(preset)?;
        let same = reference.stem_channels == arch.stem_channels
            && reference.head_channels == arch.head_channels
            && reference.blocks == arch.blocks;
        same.then_some(label)
    })
}

/// One trial as JSON. Keys are the table's columns in snake_case (`blocks` in full), plus
/// the rest of the row; `full` adds the architecture and extras (for `export`).
pub fn trial_json(t: &Trial, full: bool) -> serde_json::Value {
    let arch = t.arch().ok();
    let mut value = json!({
        "id": t.id,
        "run_id": t.run_id,
        "state": t.state,
        "accuracy": t.accuracy,
        "flops": t.flops,
        "params": t.params,
        "reward": t.reward,
        "seconds": t.seconds,
        "blocks": t.blocks,
        "reference": arch.as_ref().and_then(reference_model),
        "loss": t.loss,
        "latency_ms": t.latency_ms,
        "images_per_second": t.images_per_second,
        "resolution": t.resolution,
        "arch_hash": t.arch_hash,
        "proxy_key": t.proxy_key,
        "step": t.step,
        "worker": t.worker,
        "attempts": t.attempts,
        "created": t.created,
        "started": t.started,
        "finished": t.finished,
        "failure": t.failure.map(|f| f.as_str()),
        "error": t.error,
        "reused_from": t.reused_from,
        "setting": t.setting,
        "parent": t.parent,
    });
    if full {
        value["extra"] = t.extra.clone().unwrap_or(serde_json::Value::Null);
        value["arch"] = serde_json::from_str(&t.arch_json).unwrap_or(serde_json::Value::Null);
    }
    value
}

/// `0.9` or `90%` → 0.9.
pub fn parse_accuracy(text: &str) -> Result<f64, String> {
    let trimmed = text.trim();
    let value = match trimmed.strip_suffix('%') {
        Some(percent) => percent.trim().parse::<f64>().map(|p| p / 100.0),
        None => trimmed.parse::<f64>(),
    }
    .map_err(|_| format!("{text:?} is not an accuracy (a fraction such as 0.9, or 90%)"))?;
    if !(0.0..=1.0).contains(&value) {
        return Err(format!("{text:?} is outside 0..1: give a fraction (0.9) or a percentage (90%)"));
    }
    Ok(value)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn accuracies_parse_as_fractions_or_percentages() {
        assert_eq!(parse_accuracy("0.9"), Ok(0.9));
        assert_eq!(parse_accuracy("90%"), Ok(0.9));
        assert!(parse_accuracy("90").is_err());
    }

    #[test]
    fn blocks_abbreviate_and_references_are_recognised_at_any_resolution() {
        let mut b0 = presets::preset("b0").expect("b0");
        assert!(abbreviate_blocks(&b0).starts_with("e1k3r1c16+ e6k3r2c24+ e6k5r2c40+"));
        b0.resolution = 32;
        b0.num_classes = 10;
        b0.input_channels = 1;
        assert_eq!(reference_model(&b0), Some("EfficientNet-B0"));
        let a1 = presets::preset("mnasnet-a1").expect("a1");
        assert_eq!(reference_model(&a1), Some("MnasNet-A1"));
        assert!(abbreviate_blocks(&a1).starts_with("e1k3r1c16! "));
        b0.blocks[2].kernel = 3;
        assert_eq!(reference_model(&b0), None);
    }
}
