//! `effnas compound`: the compound-scaling grid search (EfficientNet §3.3, step 1): with φ
//! fixed (1 by default), try α, β, γ ≥ 1 with α·β²·γ² ≈ 2 around a base network, train each
//! scaled network as a proxy, and rank the points by accuracy.

use crate::output::{out, outln};
use std::process::ExitCode;
use std::sync::atomic::AtomicBool;

use anyhow::{bail, Context, Result};
use effnas_evaluator::score::Objective;
use effnas_search::config::{read_stored, CompoundConfig, EvaluatorKind, CONFIG_VERSION};
use effnas_search::evaluate::Evaluator;
use effnas_search::orchestrator::{drain_queue, Event};
use effnas_search::recipe::Recipe;
use effnas_space::{compound_grid, cost, parse_arch, scale, ArchSpec, Compound, GridSpec, Multipliers};
use effnas_store::{
    BlockingStore, CompoundPoint, NewCompoundPoint, NewRun, NewTrial, RunId, RunKind, RunStatus, TrialId,
};
use serde_json::json;

use super::finalists::{self, FinalistArgs};
use super::proxy::ProxyArgs;
use super::search::EvaluatorName;
use crate::flags::{self, ThreadsArg};
use crate::table::{human_count, Table};
use crate::workers::{self, WorkerArgs};

#[derive(Debug, clap::Args)]
pub struct Args {
    /// The experiment database: an SQLite file (created if missing) or a postgres:// URL (the
    /// database must exist; its tables are created). EFFNAS_DB keeps a password off the command line.
    #[arg(long, env = "EFFNAS_DB", default_value = "effnas.db")]
    pub db: String,
    /// The base network: a preset, block strings, a JSON spec, or a trial id of this database
    /// (e.g. the best trial of a search).
    #[arg(long, default_value = "efficientnet-b0")]
    pub base: String,
    /// The compound coefficient φ at which the grid is searched.
    #[arg(long, default_value_t = 1.0)]
    pub phi: f64,
    /// Range of α (depth), LOW:HIGH.
    #[arg(long, default_value = "1.0:2.0", value_parser = parse_range)]
    pub alpha_range: (f64, f64),
    /// Range of β (width), LOW:HIGH.
    #[arg(long, default_value = "1.0:1.5", value_parser = parse_range)]
    pub beta_range: (f64, f64),
    /// Range of γ (resolution), LOW:HIGH.
    #[arg(long, default_value = "1.0:1.5", value_parser = parse_range)]
    pub gamma_range: (f64, f64),
    /// Grid step on every axis.
    #[arg(long, default_value_t = 0.05)]
    pub step: f64,
    /// Keep points with |α·β²·γ² − 2| at most this.
    #[arg(long, default_value_t = 0.1)]
    pub tolerance: f64,
    /// Train at most this many points: those with α·β²·γ² closest to 2.
    #[arg(long)]
    pub max_points: Option<usize>,
    /// Also train this point, on the grid or not (e.g. the paper's 1.2,1.1,1.15). Repeatable.
    #[arg(long, value_name = "ALPHA,BETA,GAMMA", value_parser = parse_point)]
    pub point: Vec<Compound>,
    /// Trials trained at once: worker processes started here, or with --external-workers the
    /// slots of the workers started elsewhere (1 to 256).
    #[arg(long, default_value_t = 2, value_parser = flags::workers)]
    pub workers: usize,
    /// Train proxies, or score with the synthetic compound oracle.
    #[arg(long, default_value_t = EvaluatorName::Train, value_parser = super::search::parse_evaluator, value_name = "EVALUATOR")]
    pub evaluator: EvaluatorName,
    /// Seed of the proxies.
    #[arg(long, default_value_t = 0)]
    pub seed: u64,
    /// A name for the run.
    #[arg(long)]
    pub name: Option<String>,
    /// Continue an interrupted compound run (id or name) with its stored configuration.
    #[arg(long, value_name = "RUN")]
    pub resume: Option<String>,
    #[command(flatten)]
    pub proxy: ProxyArgs,
    #[command(flatten)]
    pub finalists: FinalistArgs,
    #[command(flatten)]
    pub threads: ThreadsArg,
    #[command(flatten)]
    pub run_on: WorkerArgs,
    /// Print the ranked points as JSON.
    #[arg(long)]
    pub json: bool,
}

fn parse_range(text: &str) -> Result<(f64, f64), String> {
    let (low, high) = text.split_once(':').ok_or_else(|| format!("{text:?} is not LOW:HIGH"))?;
    let low: f64 = low.trim().parse().map_err(|_| format!("{low:?} is not a number"))?;
    let high: f64 = high.trim().parse().map_err(|_| format!("{high:?} is not a number"))?;
    Ok((low, high))
}

fn parse_point(text: &str) -> Result<Compound, String> {
    let values: Vec<f64> = text
        .split(',')
        .map(|v| v.trim().parse::<f64>().map_err(|_| format!("{v:?} is not a number")))
        .collect::<Result<_, _>>()?;
    match values[..] {
        [alpha, beta, gamma]
            if [alpha, beta, gamma].iter().all(|v| v.is_finite() && (1.0..=4.0).contains(v)) =>
        {
            Ok(Compound { alpha, beta, gamma })
        }
        [_, _, _] => Err(format!("{text:?}: α, β and γ must lie between 1 and 4")),
        _ => Err(format!("{text:?} is not ALPHA,BETA,GAMMA")),
    }
}

/// The points to train: all of the grid, or the `max` closest to the constraint.
fn choose_points(mut grid: Vec<Compound>, max: Option<usize>) -> Vec<Compound> {
    if let Some(max) = max {
        grid.sort_by(|a, b| (a.flops_factor() - 2.0).abs().total_cmp(&(b.flops_factor() - 2.0).abs()));
        grid.truncate(max);
        grid.sort_by(|a, b| {
            (a.alpha, a.beta, a.gamma)
                .partial_cmp(&(b.alpha, b.beta, b.gamma))
                .unwrap_or(std::cmp::Ordering::Equal)
        });
    }
    grid
}

fn resolve_base(store: Option<&BlockingStore>, spec: &str) -> Result<ArchSpec> {
    if let Ok(id) = spec.trim().parse::<i64>() {
        let store = store.context("a trial id as --base needs the database")?;
        let trial =
            store.block_on(store.store().trial(TrialId(id))).with_context(|| format!("--base {spec}"))?;
        return trial.arch().with_context(|| format!("--base {spec}"));
    }
    parse_arch(spec).context("--base")
}

/// The devices of the run's proxy, to share out among its worker processes.
fn devices(config: &CompoundConfig) -> Option<&str> {
    config.proxy.as_ref().map(|p| p.device.as_str())
}

/// Grids with more candidate points than this (before the α·β²·γ² filter) are refused: the
/// grid is enumerated in memory, and a step of 0.0001 would ask for billions of points.
pub const MAX_GRID_CANDIDATES: u64 = 1_000_000;

pub fn run(args: Args) -> Result<ExitCode> {
    let needs_db_for_base = args.base.trim().parse::<i64>().is_ok();
    let store_early =
        if args.resume.is_some() || needs_db_for_base { Some(BlockingStore::open(&args.db)?) } else { None };
    let stop = super::resume::stop_on_signal()?;
    if let Some(selector) = &args.resume {
        let store = store_early.context("the database")?;
        let (run, config): (_, CompoundConfig) =
            super::resume::resumable(&store, selector, RunKind::Compound)?;
        Recipe::for_compound(&config)?.check()?;
        eprintln!("resuming compound run {}", run.id);
        let devices = devices(&config);
        return workers::with_workers(
            &store,
            run.id,
            config.workers,
            &args.run_on,
            args.threads.threads,
            devices,
            |evaluator| finish(&store, run.id, &config, evaluator, &stop, args.json),
        );
    }
    let config = plan_new_run(&args, store_early.as_ref())?;
    // Check the proxy (data, devices) before the database is written.
    Recipe::for_compound(&config)?.check()?;
    let store = match store_early {
        Some(store) => store,
        None => BlockingStore::open(&args.db)?,
    };
    let run_id = create_run(&store, &args, &config)?;
    let devices = devices(&config);
    workers::with_workers(
        &store,
        run_id,
        config.workers,
        &args.run_on,
        args.threads.threads,
        devices,
        |evaluator| finish(&store, run_id, &config, evaluator, &stop, args.json),
    )
}

/// The configuration of a new compound run from the flags, checked: the grid, the points
/// chosen from it, the base network and the proxy settings.
fn plan_new_run(args: &Args, store: Option<&BlockingStore>) -> Result<CompoundConfig> {
    if args.evaluator == EvaluatorName::Benchmark {
        bail!(
            "--evaluator benchmark: look-ups answer members of a benchmark's search space; compound trains (train) or uses the oracle"
        );
    }
    if let EvaluatorName::Predictor(_) = args.evaluator {
        bail!(
            "--evaluator predictor: a predictor scores members of the space it was fitted on; compound trains (train) or uses the oracle"
        );
    }
    if !(args.phi.is_finite() && args.phi > 0.0 && args.phi <= 16.0) {
        bail!("--phi {} is out of range (above 0, at most 16)", args.phi);
    }
    if args.max_points == Some(0) {
        bail!("--max-points must be at least 1");
    }
    let grid = GridSpec {
        alpha: args.alpha_range,
        beta: args.beta_range,
        gamma: args.gamma_range,
        step: args.step,
        tolerance: args.tolerance,
    };
    check_grid_size(&grid)?;
    let all = compound_grid(&grid).context("the compound grid is empty")?;
    let mut points = choose_points(all.clone(), args.max_points);
    for extra in &args.point {
        if !points.contains(extra) {
            points.push(*extra);
        }
    }
    let given = if args.point.is_empty() {
        String::new()
    } else {
        format!(" ({} given with --point)", args.point.len())
    };
    eprintln!(
        "{} grid points have |α·β²·γ² − 2| ≤ {}; training {} at φ = {}{given}",
        all.len(),
        args.tolerance,
        points.len(),
        args.phi
    );
    let proxy = match args.evaluator {
        EvaluatorName::Train => {
            let settings = args.proxy.settings();
            settings.validate()?;
            Some(settings)
        }
        EvaluatorName::Oracle => None,
        EvaluatorName::Benchmark | EvaluatorName::Predictor(_) => unreachable!("refused by the flag checks"),
    };
    let finalists = args.finalists.plan(proxy.as_ref(), args.seed, Vec::new(), 1)?;
    Ok(CompoundConfig {
        version: CONFIG_VERSION,
        base: resolve_base(store, &args.base)?,
        base_spec: match args.base.trim().parse::<i64>() {
            Ok(id) => format!("trial {id}"),
            Err(_) => args.base.clone(),
        },
        grid,
        phi: args.phi,
        points,
        evaluator: if proxy.is_some() { EvaluatorKind::Train } else { EvaluatorKind::Oracle },
        proxy,
        workers: args.workers,
        seed: args.seed,
        finalists,
    })
}

/// Refuses a grid whose candidate count (every α, β, γ on the step, before the constraint
/// filter) is above [`MAX_GRID_CANDIDATES`], with the count, before anything is enumerated.
fn check_grid_size(grid: &GridSpec) -> Result<()> {
    if !(grid.step.is_finite() && grid.step > 0.0) {
        bail!("--step {} must be a positive number", grid.step);
    }
    let axis = |(low, high): (f64, f64)| -> f64 { ((high - low) / grid.step).floor().max(0.0) + 1.0 };
    let count = axis(grid.alpha) * axis(grid.beta) * axis(grid.gamma);
    if !count.is_finite() || count > MAX_GRID_CANDIDATES as f64 {
        bail!(
            "--step {}: the ranges give {count:.3e} candidate points, more than the limit of {MAX_GRID_CANDIDATES}; \
             use a larger --step or narrower ranges",
            grid.step
        );
    }
    Ok(())
}

/// Creates the run and queues one trial per point.
fn create_run(store: &BlockingStore, args: &Args, config: &CompoundConfig) -> Result<RunId> {
    let mut trials = Vec::with_capacity(config.points.len());
    for point in &config.points {
        let arch = scale(&config.base, Multipliers::compound(*point, config.phi)).with_context(|| {
            format!("scaling the base by α {}, β {}, γ {}", point.alpha, point.beta, point.gamma)
        })?;
        trials.push(NewTrial::new(arch, proxy_key(config)));
    }
    // A name the user chose is refused when taken; a derived one is numbered (`-2`).
    let mut new_run = match &args.name {
        Some(name) => NewRun::named(name.clone(), RunKind::Compound),
        None => NewRun::new(format!("compound-{}", config.base_spec.replace(' ', "-")), RunKind::Compound),
    };
    new_run.config = serde_json::to_value(config)?;
    new_run.seed = Some(config.seed);
    let run_id = store.block_on(store.store().create_run(&new_run)).context("creating the run")?;
    let ids = store.block_on(store.store().insert_trials(run_id, &trials))?;
    for (point, id) in config.points.iter().zip(ids) {
        let new_point = NewCompoundPoint {
            alpha: point.alpha,
            beta: point.beta,
            gamma: point.gamma,
            phi: config.phi,
            trial_id: Some(id),
        };
        store.block_on(store.store().add_compound_point(run_id, &new_point))?;
    }
    Ok(run_id)
}

/// The best point of a finished compound run: its coefficients, the base network and how the
/// base was given.
pub fn winner(store: &BlockingStore, selector: &str) -> Result<(Compound, ArchSpec, String, RunId)> {
    let run = store
        .block_on(store.store().find_run(selector))
        .with_context(|| format!("--from-run {selector:?}"))?;
    if run.kind != RunKind::Compound {
        bail!("--from-run {selector:?}: run {} is a {} run, not a compound run", run.id, run.kind.as_str());
    }
    let config: CompoundConfig =
        read_stored(&run.config).with_context(|| format!("the configuration of run {}", run.id))?;
    let points = store.block_on(store.store().compound_points(run.id))?;
    // The finalists' answer when the run has one; else the best single measurement.
    let trials = store.trials(run.id, &effnas_store::TrialFilter::default())?;
    let first = effnas_search::finalists::first_setting_of(&run);
    let answer = effnas_search::finalists::finalists(&trials, first).into_iter().find(|f| f.reward.is_some());
    let best = match answer {
        Some(answer) => points.iter().find(|p| p.trial_id == Some(answer.trial)),
        None => points
            .iter()
            .filter(|p| p.accuracy.is_some())
            .max_by(|a, b| a.accuracy.unwrap_or(0.0).total_cmp(&b.accuracy.unwrap_or(0.0))),
    }
    .with_context(|| format!("--from-run {selector:?}: run {} has no measured point yet", run.id))?;
    Ok((
        Compound { alpha: best.alpha, beta: best.beta, gamma: best.gamma },
        config.base,
        config.base_spec,
        run.id,
    ))
}

/// The same key as every other training of these settings ([`effnas_search::proxy::ProxyKey`]),
/// with the base's resolution as the reference.
fn proxy_key(config: &CompoundConfig) -> String {
    match (&config.proxy, config.evaluator) {
        (Some(settings), EvaluatorKind::Train) => settings.key(config.seed, config.base.resolution),
        _ => "oracle-compound-v1".to_owned(),
    }
}

/// The proxy key of finalist setting `setting`: the final proxy with that setting's seed, the
/// base's resolution as the reference (the oracle's key with the seed, for oracle runs).
fn finalist_key(
    config: &CompoundConfig,
    plan: &effnas_search::finalists::FinalistPlan,
    setting: u32,
) -> String {
    let seed = plan.seed_of(setting).unwrap_or(config.seed);
    match plan.proxy.as_ref().or(config.proxy.as_ref()) {
        Some(proxy) => proxy.key(seed, config.base.resolution),
        None => format!("oracle-compound-v1:seed{seed}"),
    }
}

fn finish(
    store: &BlockingStore,
    run_id: RunId,
    config: &CompoundConfig,
    mut evaluator: Box<dyn Evaluator>,
    stop: &AtomicBool,
    json: bool,
) -> Result<ExitCode> {
    let points = store.block_on(store.store().compound_points(run_id))?;
    let done = points
        .iter()
        .filter(|p| p.trial_state.is_some_and(|s| s.as_str() == "complete" || s.as_str() == "failed"))
        .count();
    let bar = crate::progress::bar("compound run", "points", run_id, points.len() as u64, done as u64);
    let mut best: Option<f64> = None;
    let summary =
        drain_queue(store, run_id, "compound", evaluator.as_mut(), &Objective::default(), stop, |event| {
            if let Event::Finished { accuracy, .. } = event {
                bar.inc(1);
                if let Some(a) = accuracy {
                    best = Some(best.map_or(*a, |b: f64| b.max(*a)));
                }
                bar.set_message(format!(
                    "best accuracy {}",
                    best.map_or("-".to_owned(), |b| format!("{:.2}%", b * 100.0))
                ));
            }
        })?;
    bar.finish_and_clear();
    let mut interrupted = summary.interrupted;
    if let (false, Some(plan)) = (interrupted, &config.finalists) {
        let key = |setting| finalist_key(config, plan, setting);
        let objective = &Objective::default();
        if let Some(finals) =
            finalists::train(store, run_id, "compound", plan, key, evaluator.as_mut(), objective, stop)?
        {
            interrupted = finals.interrupted;
        }
    }
    if interrupted {
        outln!(
            "interrupted: continue with `effnas compound --db {} --resume {run_id}`",
            store.store().location()
        )?;
        return Ok(ExitCode::from(130));
    }
    let status = store.block_on(store.store().run(run_id))?.status;
    report(store, run_id, config, status, json)?;
    // Every point failed: the run is failed (the orchestrator sets it) and so is the command.
    Ok(if status == RunStatus::Failed { ExitCode::from(1) } else { ExitCode::SUCCESS })
}

/// The points ranked by accuracy, with how far each FLOPS ratio is from 2^φ.
fn report(
    store: &BlockingStore,
    run_id: RunId,
    config: &CompoundConfig,
    status: RunStatus,
    json: bool,
) -> Result<()> {
    let mut points: Vec<CompoundPoint> = store.block_on(store.store().compound_points(run_id))?;
    points.sort_by(|a, b| b.accuracy.unwrap_or(-1.0).total_cmp(&a.accuracy.unwrap_or(-1.0)));
    let ranking = Ranking { base_flops: cost(&config.base).macs as f64, intended: 2f64.powf(config.phi) };
    let trials = store.trials(run_id, &effnas_store::TrialFilter::default())?;
    let first = config.finalists.as_ref().map_or(u32::MAX, |p| p.first_setting);
    let finals = effnas_search::finalists::finalists(&trials, first);
    let answer = finals.first().filter(|f| f.reward.is_some());
    if json {
        let list: Vec<_> = points.iter().enumerate().map(|(rank, p)| ranking.json(rank, p)).collect();
        let value = json!({"run": run_id.0, "status": status.as_str(), "phi": config.phi, "points": list,
                           "finalists": finals, "answer": answer});
        outln!("{}", serde_json::to_string_pretty(&value)?)?;
        return Ok(());
    }
    outln!(
        "compound run {run_id}: {}, {} points around {} at φ = {} (2^φ = {:.2})\n",
        status.as_str(),
        points.len(),
        config.base_spec,
        config.phi,
        ranking.intended
    )?;
    out!("{}", ranking.table(&points).render())?;
    if answer.is_some() {
        outln!()?;
        finalists::print(store, run_id, first)?;
    }
    let winner = match answer {
        Some(answer) => points.iter().find(|p| p.trial_id == Some(answer.trial)),
        None => points.first().filter(|p| p.accuracy.is_some()),
    };
    let caution = if answer.is_some() {
        "the winner is the finalist with the best mean over fresh seeds; a gap smaller than the stds is a tie."
    } else {
        "A single proxy training per point is noisy: re-train close points with other seeds (--finalists) before trusting the order."
    };
    if let Some(winner) = winner {
        outln!(
            "\nwinner: α = {:.2}, β = {:.2}, γ = {:.2} (trial {}); the paper found α = 1.2, β = 1.1, γ = 1.15 on ImageNet.\n\
             {caution}\n\
             next: `effnas scale --from-run {run_id} --phi 1..7`",
            winner.alpha,
            winner.beta,
            winner.gamma,
            winner.trial_id.map_or("-".to_owned(), |t| t.to_string()),
        )?;
    }
    Ok(())
}

/// How each point's FLOPS compare with the base's and with the intended 2^φ.
struct Ranking {
    base_flops: f64,
    intended: f64,
}

impl Ranking {
    fn ratio(&self, p: &CompoundPoint) -> Option<f64> {
        p.flops.map(|f| f as f64 / self.base_flops)
    }

    fn json(&self, rank: usize, p: &CompoundPoint) -> serde_json::Value {
        json!({
            "rank": rank + 1,
            "alpha": p.alpha,
            "beta": p.beta,
            "gamma": p.gamma,
            "phi": p.phi,
            "flops_factor": p.flops_factor,
            "trial": p.trial_id.map(|t| t.0),
            "state": p.trial_state.map(|s| s.as_str()),
            "accuracy": p.accuracy,
            "params": p.params,
            "flops": p.flops,
            "flops_ratio": self.ratio(p),
            "intended_ratio": self.intended,
        })
    }

    fn table(&self, points: &[CompoundPoint]) -> Table {
        let mut table = Table::new([
            "rank",
            "α",
            "β",
            "γ",
            "α·β²·γ²",
            "trial",
            "accuracy",
            "params",
            "mult-adds",
            "× base",
            "vs 2^φ",
        ]);
        for (rank, p) in points.iter().enumerate() {
            let ratio = self.ratio(p);
            table.row([
                (rank + 1).to_string(),
                format!("{:.2}", p.alpha),
                format!("{:.2}", p.beta),
                format!("{:.2}", p.gamma),
                format!("{:.3}", p.flops_factor),
                p.trial_id.map_or("-".to_owned(), |t| t.to_string()),
                p.accuracy.map_or_else(
                    || p.trial_state.map_or("-", |s| s.as_str()).to_owned(),
                    |a| format!("{:.2}%", a * 100.0),
                ),
                p.params.map_or("-".to_owned(), human_count),
                p.flops.map_or("-".to_owned(), human_count),
                ratio.map_or("-".to_owned(), |r| format!("{r:.2}")),
                ratio.map_or("-".to_owned(), |r| format!("{:+.1}%", (r / self.intended - 1.0) * 100.0)),
            ]);
        }
        table
    }
}
