//! `effnas predictor`: fit an accuracy predictor on Accel-NASBench's trainings or on a run's
//! trials, and show what a model file holds (issue 12, item 3; see `effnas_search::predictor`).

use std::path::{Path, PathBuf};
use std::process::ExitCode;

use anyhow::{bail, Context, Result};
use effnas_search::config::{read_stored, SearchConfig};
use effnas_search::predictor::{self, FitData, PredictorModel};
use effnas_store::{RunKind, Store, TrialFilter, TrialState};
use serde_json::json;

use super::runs::{block_on, select_run};
use crate::output::outln;

#[derive(Debug, clap::Args)]
pub struct Args {
    #[command(subcommand)]
    pub command: PredictorCommand,
}

#[derive(Debug, clap::Subcommand)]
pub enum PredictorCommand {
    /// Fit a predictor and write it to a model file: held-out Kendall τ, Spearman ρ and RMSE
    /// of the candidate (ridge regression, gradient-boosted trees) chosen by validation τ.
    Fit(FitArgs),
    /// Print what a model file holds: its source, space, model and held-out figures.
    Show(ShowArgs),
    /// Predict the accuracy of architectures (members of the model's space).
    Predict(PredictArgs),
}

#[derive(Debug, clap::Args)]
pub struct PredictArgs {
    /// The model file.
    pub model: PathBuf,
    /// Architectures: presets (b0), comma-separated block strings or JSON files, as `effnas arch`
    /// takes them; each must be a member of the model's space.
    #[arg(required = true, value_name = "SPEC")]
    pub specs: Vec<String>,
    /// Print JSON (a list of objects).
    #[arg(long)]
    pub json: bool,
}

#[derive(Debug, clap::Args)]
pub struct FitArgs {
    /// What to fit on: `accel-nasbench` (the 5,125 members Accel-NASBench trained on ImageNet;
    /// target: top-1 accuracy) or an experiment database (a path or URL) with --run (that
    /// search run's complete trials; target: their accuracy).
    #[arg(long, value_name = "SOURCE")]
    pub from: String,
    /// The search run whose trials to fit on (id or name), with a database as --from.
    #[arg(long, value_name = "RUN")]
    pub run: Option<String>,
    /// The model file to write (JSON; written whole or not at all).
    #[arg(long, value_name = "MODEL")]
    pub out: PathBuf,
    /// The fraction of architectures held out to report on (above 0, below 1).
    #[arg(long, default_value_t = 0.2)]
    pub holdout: f64,
    /// Seed of the held-out split and of the trees' row sampling.
    #[arg(long, default_value_t = 0)]
    pub seed: u64,
    /// Print the figures as JSON.
    #[arg(long)]
    pub json: bool,
}

#[derive(Debug, clap::Args)]
pub struct ShowArgs {
    /// The model file.
    pub model: PathBuf,
    /// Print as JSON (the model's description and figures, without its weights or trees).
    #[arg(long)]
    pub json: bool,
}

pub fn run(args: Args) -> Result<ExitCode> {
    match args.command {
        PredictorCommand::Fit(args) => fit(args),
        PredictorCommand::Show(args) => show(args),
        PredictorCommand::Predict(args) => predict(args),
    }
}

fn fit(args: FitArgs) -> Result<ExitCode> {
    if !(args.holdout > 0.0 && args.holdout < 1.0) {
        bail!("--holdout {} is out of range (above 0, below 1)", args.holdout);
    }
    let data = match (args.from.as_str(), &args.run) {
        ("accel-nasbench", None) => predictor::accel_nasbench_data()?,
        ("accel-nasbench", Some(_)) => bail!("--run: --from accel-nasbench is not a database"),
        (_, None) => bail!("--from {}: a database needs --run RUN (the search run to fit on)", args.from),
        (db, Some(run)) => block_on(run_data(db, run))?,
    };
    let model = predictor::fit(data, args.holdout, args.seed)?;
    crate::files::write_atomically(&args.out, |out| {
        serde_json::to_writer(&mut *out, &model)?;
        Ok(())
    })
    .with_context(|| format!("writing {}", args.out.display()))?;
    print(&model, &args.out, args.json)?;
    Ok(ExitCode::SUCCESS)
}

/// A search run's complete trials at its own proxy (setting 0: not its finalists' or higher
/// rungs' trainings), as architectures with their accuracy.
async fn run_data(db: &str, selector: &str) -> Result<FitData> {
    let store = Store::open_existing(db).await?;
    let run = select_run(&store, Some(selector)).await?;
    if run.kind != RunKind::Search {
        bail!(
            "--run {selector}: run {} is a {} run; a predictor is fitted on a search run's trials",
            run.id,
            run.kind
        );
    }
    let config: SearchConfig = read_stored(&run.config).with_context(|| format!("run {}", run.id))?;
    let filter = TrialFilter { state: Some(TrialState::Complete), ..TrialFilter::default() };
    let mut samples = Vec::new();
    for trial in store.trials(run.id, &filter).await? {
        if let (0, Some(accuracy)) = (trial.setting, trial.accuracy) {
            samples.push((trial.arch()?, accuracy));
        }
    }
    Ok(FitData {
        source: format!("run {} ({}) of {}", run.id, run.display_name(), store.location()),
        target: format!("accuracy at the run's proxy ({})", config.plan.proxy_key),
        space: config.plan.space,
        samples,
    })
}

fn show(args: ShowArgs) -> Result<ExitCode> {
    let (model, _) = PredictorModel::load(&args.model)?;
    print(&model, &args.model, args.json)?;
    Ok(ExitCode::SUCCESS)
}

fn predict(args: PredictArgs) -> Result<ExitCode> {
    let (model, _) = PredictorModel::load(&args.model)?;
    let features = model.features();
    let mut rows = Vec::new();
    for spec in &args.specs {
        let arch = super::arch::resolve(spec, None, None, None)?;
        // The member as the space builds it (its resolution and classes), as `search --include`.
        let tokens =
            model.space.encode(&arch).with_context(|| format!("{spec}: in space {}", model.space.name))?;
        let arch = model.space.decode(&tokens)?;
        let predicted = model.predict(&features, &arch).with_context(|| spec.clone())?;
        let cost = effnas_space::checked_cost(&arch)?;
        rows.push(json!({"spec": spec, "predicted": predicted, "flops": cost.macs, "params": cost.params, "tokens": tokens}));
    }
    if args.json {
        outln!("{}", serde_json::to_string_pretty(&rows)?)?;
    } else {
        for row in &rows {
            outln!(
                "{:.4}  {:>7.1}M multiply-adds  {:>5.2}M params  {}",
                row["predicted"].as_f64().unwrap_or(f64::NAN),
                row["flops"].as_f64().unwrap_or(f64::NAN) / 1e6,
                row["params"].as_f64().unwrap_or(f64::NAN) / 1e6,
                row["spec"].as_str().unwrap_or_default()
            )?;
        }
    }
    Ok(ExitCode::SUCCESS)
}

/// The model's description: everything but its weights or trees.
fn print(model: &PredictorModel, path: &Path, as_json: bool) -> Result<()> {
    let h = &model.holdout;
    if as_json {
        let value = json!({
            "model": path,
            "source": model.source,
            "target": model.target,
            "space": model.space.name,
            "features": model.features.len(),
            "chosen": model.chosen,
            "samples": model.samples,
            "trained_on": model.trained_on,
            "holdout_fraction": model.holdout_fraction,
            "seed": model.seed,
            "holdout": model.holdout,
            "candidates": model.candidates,
        });
        outln!("{}", serde_json::to_string_pretty(&value)?)?;
        return Ok(());
    }
    outln!("{}: predictor of {} in space {}", path.display(), model.target, model.space.name)?;
    outln!(
        "fitted on {} ({} distinct architectures, {} fitted on)",
        model.source,
        model.samples,
        model.trained_on
    )?;
    outln!("features: {} (per-decision choices, params, multiply-adds)", model.features.len())?;
    outln!("candidates (validation on a fifth of the fitted part):")?;
    for c in &model.candidates {
        let v = &c.validation;
        let mark = if c.name == model.chosen { "  <- chosen" } else { "" };
        outln!(
            "  {:<12} τ {:.3}  ρ {:.3}  RMSE {:.4}  n {}{mark}",
            c.name,
            v.kendall_tau,
            v.spearman_rho,
            v.rmse,
            v.n
        )?;
    }
    outln!(
        "held out ({:.0}%, seed {}): Kendall τ {:.3}, Spearman ρ {:.3}, RMSE {:.4}, n {}",
        model.holdout_fraction * 100.0,
        model.seed,
        h.kendall_tau,
        h.spearman_rho,
        h.rmse,
        h.n
    )?;
    Ok(())
}
