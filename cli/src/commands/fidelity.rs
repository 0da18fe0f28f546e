//! `effnas fidelity`: how far a search can trust its proxy. Samples members of a space, trains
//! each under the cheap proxy with several seeds and under a reference setting, and reports the
//! seed noise and the rank agreement between the two (see `effnas_search::fidelity`).

use std::path::PathBuf;
use std::process::ExitCode;
use std::sync::atomic::AtomicBool;

use anyhow::{bail, Context, Result};
use effnas_evaluator::score::{Constraint, Objective};
use effnas_search::config::read_stored;
use effnas_search::evaluate::Evaluator;
use effnas_search::fidelity::{self, Candidate, FidelityConfig, FidelityReport};
use effnas_search::orchestrator::{drain_queue, Event};
use effnas_search::proxy::ProxySettings;
use effnas_search::recipe::Recipe;
use effnas_space::{arch_hash, SearchSpace};
use effnas_store::{BlockingStore, NewRun, Run, RunId, RunKind, RunStatus, TrialFilter};
use rand::SeedableRng;
use rand_chacha::ChaCha8Rng;

use super::proxy::ProxyArgs;
use crate::flags::{self, ThreadsArg};
use crate::output::outln;
use crate::workers::{self, WorkerArgs};

mod plot;
mod show;

/// The reference setting's defaults: 24 times the cheap proxy's images (6× the images, 2× the
/// epochs), the longer setting of the proxy measurement that motivated this command.
const REFERENCE_TRAIN_IMAGES: usize = 12_000;
const REFERENCE_EPOCHS: u32 = 4;

#[derive(Debug, clap::Args)]
#[command(after_help = "Example (about 25 CPU-minutes on 2 cores with the defaults):
  effnas fidelity --samples 12 --include b0 --include mnasnet-a1 --plot fidelity.svg
Each architecture trains once per cheap seed (--seeds) and once per reference seed; results
already in the database under the same settings are reused, so runs that differ only in the
cheap proxy share their reference trainings. --report RUN prints a run's report again (also
while it is still training).")]
pub struct Args {
    /// The experiment database: a SQLite file (created if missing).
    #[arg(long, env = "EFFNAS_DB", default_value = "effnas.db")]
    pub db: String,
    /// The search space to sample: default, mnasnet, nas-bench-macro, accel-nasbench, or a .json/.toml space file.
    #[arg(long, default_value = "default")]
    pub space: String,
    /// Architectures sampled uniformly from the space (1 to 10,000).
    #[arg(long, default_value_t = 12, value_parser = clap::value_parser!(u32).range(1..=10_000))]
    pub samples: u32,
    /// Also measure this architecture (a member of the space: b0, mnasnet-a1, …). Repeatable.
    #[arg(long, value_name = "SPEC")]
    pub include: Vec<String>,
    /// Seed of the sampling, and the first seed of the trainings.
    #[arg(long, default_value_t = 0)]
    pub seed: u64,
    /// Cheap-proxy trainings per architecture, with seeds --seed, --seed+1, … (2 to 16).
    #[arg(long, default_value_t = 2, value_parser = clap::value_parser!(u32).range(2..=16))]
    pub seeds: u32,
    /// Reference trainings per architecture, with seeds --seed, --seed+1, … (1 to 16).
    #[arg(long, default_value_t = 1, value_parser = clap::value_parser!(u32).range(1..=16))]
    pub reference_seeds: u32,
    #[command(flatten)]
    pub proxy: ProxyArgs,
    /// Reference: training epochs [default: 4].
    #[arg(long, value_parser = flags::epochs)]
    pub reference_epochs: Option<u32>,
    /// Reference: training images [default: 12000; more than the data set has means all of them].
    #[arg(long, value_parser = flags::train_images)]
    pub reference_train_images: Option<usize>,
    /// Reference: resolution in pixels [default: the cheap proxy's].
    #[arg(long, value_parser = flags::resolution)]
    pub reference_resolution: Option<u32>,
    /// Reference: width multiplier [default: the cheap proxy's].
    #[arg(long, value_parser = flags::multiplier)]
    pub reference_width: Option<f64>,
    /// Reference: depth multiplier [default: the cheap proxy's].
    #[arg(long, value_parser = flags::multiplier)]
    pub reference_depth: Option<f64>,
    /// Reference: batch size [default: the cheap proxy's].
    #[arg(long, value_parser = flags::batch_size)]
    pub reference_batch_size: Option<usize>,
    /// Reference: peak learning rate [default: the cheap proxy's].
    #[arg(long, value_parser = flags::positive)]
    pub reference_lr: Option<f64>,
    /// T in the reward ACC × (FLOPS / T)^w, in multiply-adds of the full-size network.
    #[arg(long, default_value = "400M", value_parser = flags::multiply_adds)]
    pub target_flops: u64,
    /// The exponent w of the reward's soft constraint.
    #[arg(long, default_value_t = -0.07, allow_negative_numbers = true)]
    pub w: f64,
    /// Trials trained at once: worker processes started here, or with --external-workers the
    /// slots of workers started elsewhere (1 to 256).
    #[arg(long, default_value_t = 2, value_parser = flags::workers)]
    pub workers: usize,
    /// A name for the run (default: fidelity-SPACE).
    #[arg(long)]
    pub name: Option<String>,
    /// Continue an interrupted fidelity run (id or name) with its stored configuration.
    #[arg(long, value_name = "RUN", conflicts_with = "report")]
    pub resume: Option<String>,
    /// Train nothing: print the report of fidelity run RUN (id or name) as it stands.
    #[arg(long, value_name = "RUN")]
    pub report: Option<String>,
    /// Architectures compared at the top of each ranking (1 to 1000).
    #[arg(long, default_value_t = 5, value_parser = clap::value_parser!(u32).range(1..=1000))]
    pub top_k: u32,
    /// Also draw cheap against reference accuracy into this .svg or .png.
    #[arg(long, value_name = "FILE")]
    pub plot: Option<PathBuf>,
    #[command(flatten)]
    pub threads: ThreadsArg,
    #[command(flatten)]
    pub run_on: WorkerArgs,
    /// Print the report as JSON.
    #[arg(long)]
    pub json: bool,
}

pub fn run(args: Args) -> Result<ExitCode> {
    if !args.w.is_finite() {
        bail!("--w must be a number");
    }
    if let Some(path) = &args.plot {
        super::plot::format_of(path)?;
        crate::files::refuse_database("--plot", path, &args.db)?;
    }
    if let Some(selector) = &args.report {
        return report_only(&args, selector);
    }
    // A new run is planned and its data checked before the database is touched.
    let planned = match &args.resume {
        Some(_) => None,
        None => Some(plan(&args)?),
    };
    if let Some(config) = &planned {
        check(config)?;
    }
    let stop = super::resume::stop_on_signal()?;
    let store = BlockingStore::open(&args.db)?;
    let (run_id, config) = match planned {
        Some(config) => (create_run(&store, &args, &config)?, config),
        None => {
            let selector = args.resume.as_deref().unwrap_or_default();
            let (run, config): (Run, FidelityConfig) =
                super::resume::resumable(&store, selector, RunKind::Fidelity)?;
            check(&config)?;
            eprintln!("resuming run {} with its stored configuration", run.id);
            (run.id, config)
        }
    };
    let devices = config.settings.first().map(|s| s.proxy.device.clone());
    workers::with_workers(
        &store,
        run_id,
        config.workers,
        &args.run_on,
        args.threads.threads,
        devices.as_deref(),
        |evaluator| train(&store, run_id, &config, evaluator, &stop, &args),
    )
}

/// The run's configuration from the flags: the sampled and included architectures (each once)
/// and the settings.
fn plan(args: &Args) -> Result<FidelityConfig> {
    let space = SearchSpace::resolve(&args.space).context("--space")?;
    let mut architectures: Vec<Candidate> = Vec::new();
    let mut seen = std::collections::HashSet::new();
    for spec in &args.include {
        let arch = super::arch::resolve(spec, None, None, None)?;
        let tokens = space.encode(&arch).with_context(|| format!("--include {spec}"))?;
        let member = space.decode(&tokens)?;
        if seen.insert(arch_hash(&member)) {
            architectures.push(Candidate { arch: member, label: Some(spec.clone()) });
        }
    }
    let mut rng = ChaCha8Rng::seed_from_u64(args.seed);
    // A small space may hold fewer distinct members than asked for: stop trying after plenty.
    let wanted = architectures.len() + args.samples as usize;
    for _ in 0..(args.samples as usize * 50) {
        if architectures.len() >= wanted {
            break;
        }
        let member = space.decode(&space.sample_tokens(&mut rng))?;
        if seen.insert(arch_hash(&member)) {
            architectures.push(Candidate { arch: member, label: None });
        }
    }
    let cheap = args.proxy.settings();
    let reference = reference_settings(args, &cheap);
    if reference == cheap {
        bail!("the reference setting equals the cheap proxy: give it more epochs, images, width, depth or resolution");
    }
    let seeds = |n: u32| (0..u64::from(n)).map(|i| args.seed.wrapping_add(i)).collect::<Vec<u64>>();
    let objective = Objective {
        target: args.target_flops as f64,
        constraint: Constraint::Soft { w: args.w },
        ..Objective::default()
    };
    Ok(FidelityConfig::new(
        args.space.clone(),
        args.seed,
        architectures,
        (cheap, &seeds(args.seeds)),
        (reference, &seeds(args.reference_seeds)),
        objective,
        args.workers,
    )?)
}

/// The reference: the cheap proxy with every `--reference-*` flag applied.
fn reference_settings(args: &Args, cheap: &ProxySettings) -> ProxySettings {
    ProxySettings {
        epochs: args.reference_epochs.unwrap_or(REFERENCE_EPOCHS),
        train_images: args.reference_train_images.unwrap_or(REFERENCE_TRAIN_IMAGES),
        resolution: args.reference_resolution.unwrap_or(cheap.resolution),
        width: args.reference_width.unwrap_or(cheap.width),
        depth: args.reference_depth.unwrap_or(cheap.depth),
        batch_size: args.reference_batch_size.unwrap_or(cheap.batch_size),
        lr: args.reference_lr.unwrap_or(cheap.lr),
        ..cheap.clone()
    }
}

/// Checks that this machine can train every distinct setting (data and devices).
fn check(config: &FidelityConfig) -> Result<()> {
    let mut checked: Vec<&ProxySettings> = Vec::new();
    for setting in &config.settings {
        if !checked.contains(&&setting.proxy) {
            Recipe::for_fidelity(setting, config.objective)
                .check()
                .with_context(|| format!("the {} setting", setting.role.as_str()))?;
            checked.push(&setting.proxy);
        }
    }
    Ok(())
}

fn create_run(store: &BlockingStore, args: &Args, config: &FidelityConfig) -> Result<RunId> {
    let name = args.name.clone().unwrap_or_else(|| format!("fidelity-{}", space_label(&config.space)));
    let mut new_run = match args.name {
        Some(_) => NewRun::named(name, RunKind::Fidelity),
        None => NewRun::new(name, RunKind::Fidelity),
    };
    new_run.config = serde_json::to_value(config)?;
    new_run.seed = Some(config.seed);
    let run_id = store.block_on(store.store().create_run(&new_run)).context("creating the run")?;
    let queued = fidelity::queue(store, run_id, config).context("queueing the trials")?;
    eprintln!(
        "run {run_id}: {} architectures × {} settings: {} trials to train, {} reused from earlier runs",
        config.architectures.len(),
        config.settings.len(),
        queued.to_train,
        queued.reused
    );
    Ok(run_id)
}

/// A space's name for a run name: the file stem of a space file.
fn space_label(space: &str) -> String {
    std::path::Path::new(space).file_stem().map_or(space.to_owned(), |s| s.to_string_lossy().into_owned())
}

fn train(
    store: &BlockingStore,
    run_id: RunId,
    config: &FidelityConfig,
    mut evaluator: Box<dyn Evaluator>,
    stop: &AtomicBool,
    args: &Args,
) -> Result<ExitCode> {
    let run = store.block_on(store.store().run(run_id))?;
    let done = run.trials_done + run.trials_failed;
    let bar = crate::progress::bar("fidelity run", "trials", run_id, run.trials_total, done);
    let mut failed = 0;
    let summary =
        drain_queue(store, run_id, "fidelity", evaluator.as_mut(), &config.objective, stop, |event| {
            if let Event::Finished { accuracy, .. } = event {
                bar.inc(1);
                failed += u64::from(accuracy.is_none());
                let last = accuracy.map_or("last failed".to_owned(), |a| format!("last {:.2}%", a * 100.0));
                bar.set_message(format!("failed {failed} | {last}"));
            }
        })?;
    bar.finish_and_clear();
    if summary.interrupted {
        outln!(
            "interrupted: continue with `effnas fidelity --db {} --resume {run_id}`",
            store.store().location()
        )?;
        return Ok(ExitCode::from(130));
    }
    let run = store.block_on(store.store().run(run_id))?;
    print_report(store, &run, config, args)?;
    Ok(if run.status == RunStatus::Failed { ExitCode::from(1) } else { ExitCode::SUCCESS })
}

/// `--report RUN`: the report of a stored run, training nothing.
fn report_only(args: &Args, selector: &str) -> Result<ExitCode> {
    let store = BlockingStore::open(&args.db)?;
    let run =
        store.call(|| store.store().find_run(selector)).with_context(|| format!("--report {selector:?}"))?;
    if run.kind != RunKind::Fidelity {
        bail!("--report {selector:?}: run {} is a {} run, not a fidelity run", run.id, run.kind.as_str());
    }
    let config: FidelityConfig =
        read_stored(&run.config).with_context(|| format!("the stored configuration of run {}", run.id))?;
    print_report(&store, &run, &config, args)?;
    store.block_on(store.store().close());
    Ok(ExitCode::SUCCESS)
}

fn print_report(store: &BlockingStore, run: &Run, config: &FidelityConfig, args: &Args) -> Result<()> {
    let trials = store.block_on(store.store().trials(run.id, &TrialFilter::default()))?;
    let report = FidelityReport::new(config, &trials, args.top_k as usize);
    if let Some(path) = &args.plot {
        plot::write(path, run, &report)?;
    }
    if args.json {
        let value = serde_json::json!({
            "run": run.id.0,
            "name": run.name,
            "status": run.status.as_str(),
            "space": config.space,
            "report": report,
        });
        outln!("{}", serde_json::to_string_pretty(&value)?)?;
    } else {
        show::print(store.store().location(), run, &report)?;
    }
    Ok(())
}
