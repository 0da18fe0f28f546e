//! `effnas search`: architecture search (MnasNet §3) into the experiment database.

use crate::output::outln;
use std::process::ExitCode;
use std::sync::atomic::AtomicBool;

use anyhow::{bail, Context, Result};
use clap::ValueEnum;
use effnas_evaluator::score::{Constraint, Objective};
use effnas_search::asha::{rung_images, Rungs};
use effnas_search::benchmarks::lookup::{Benchmark, LookupSettings};
use effnas_search::config::{EvaluatorKind, SearchConfig, CONFIG_VERSION};
use effnas_search::controller::{EvolutionConfig, RlAlgorithm, RlConfig, Strategy};
use effnas_search::evaluate::Evaluator;
use effnas_search::orchestrator::{Event, Search, SearchPlan, Summary};
use effnas_search::predictor::evaluate::PredictorSettings;
use effnas_search::predictor::screen::ScreenPlan;
use effnas_search::proxy::ProxySettings;
use effnas_search::recipe::Recipe;
use effnas_space::{ArchSpec, SearchSpace};
use effnas_store::{BlockingStore, NewRun, NewTrial, Run, RunId, RunKind, RunStatus, TrialState};
use indicatif::ProgressBar;
use serde_json::json;

use super::finalists::{self, FinalistArgs};
use super::proxy::ProxyArgs;
use crate::flags::{self, ThreadsArg};
use crate::workers::{self, WorkerArgs};

#[derive(Debug, Clone, Copy, PartialEq, Eq, ValueEnum)]
pub enum StrategyName {
    /// The MnasNet controller: an LSTM policy trained with PPO (or REINFORCE, see --rl-algorithm).
    Rl,
    /// Regularized (aging) evolution.
    Evolution,
    /// Uniform random sampling.
    Random,
}

/// How much training each candidate gets.
#[derive(Debug, Clone, Copy, PartialEq, Eq, ValueEnum)]
pub enum FidelityName {
    /// Every candidate trains once, at the proxy.
    One,
    /// Asynchronous successive halving: every candidate trains at the proxy (rung 0); the best
    /// 1/η of each rung train again on η times the images, up to --rungs rungs.
    Asha,
}

/// How candidates are evaluated (`--evaluator`).
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum EvaluatorName {
    /// Train every candidate as a proxy task with libtorch.
    Train,
    /// A synthetic objective computed from the architecture (microseconds; for dry runs and tests).
    Oracle,
    /// Look the accuracy up in the published benchmark of the space; search only.
    Benchmark,
    /// Score with the accuracy a fitted predictor (`effnas predictor fit`) gives; search only.
    Predictor(std::path::PathBuf),
}

impl std::fmt::Display for EvaluatorName {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        match self {
            EvaluatorName::Train => f.write_str("train"),
            EvaluatorName::Oracle => f.write_str("oracle"),
            EvaluatorName::Benchmark => f.write_str("benchmark"),
            EvaluatorName::Predictor(path) => write!(f, "predictor:{}", path.display()),
        }
    }
}

/// Parses `--evaluator`: train, oracle, benchmark or predictor:MODEL.
pub fn parse_evaluator(text: &str) -> std::result::Result<EvaluatorName, String> {
    match text {
        "train" => Ok(EvaluatorName::Train),
        "oracle" => Ok(EvaluatorName::Oracle),
        "benchmark" => Ok(EvaluatorName::Benchmark),
        _ => match text.strip_prefix("predictor:") {
            Some("") => Err("predictor: needs a model file (predictor:MODEL.json)".to_owned()),
            Some(path) => Ok(EvaluatorName::Predictor(path.into())),
            None => Err(format!("{text:?}: expected train, oracle, benchmark or predictor:MODEL")),
        },
    }
}

#[derive(Debug, clap::Args)]
pub struct Args {
    /// The experiment database: an SQLite file (created if missing) or a postgres:// URL (the
    /// database must exist; its tables are created). EFFNAS_DB keeps a password off the command line.
    #[arg(long, env = "EFFNAS_DB", default_value = "effnas.db")]
    pub db: String,
    /// The search space: default, mnasnet, nas-bench-macro, accel-nasbench, or a .json/.toml space file.
    #[arg(long, default_value = "default")]
    pub space: String,
    /// The controller.
    #[arg(long, value_enum, default_value_t = StrategyName::Evolution)]
    pub strategy: StrategyName,
    /// Trials the run ends with (complete or failed; 1 to 1000000).
    #[arg(long, default_value_t = 20, value_parser = flags::trials)]
    pub trials: usize,
    /// Trials trained at once: worker processes started here (each with its own libtorch
    /// context; on a CPU they share the cores), or with --external-workers the slots of the
    /// workers started elsewhere (1 to 256).
    #[arg(long, default_value_t = 2, value_parser = flags::workers)]
    pub workers: usize,
    /// How candidates are scored: `train` (proxy training with libtorch), `oracle` (a synthetic
    /// objective, for dry runs and tests), `benchmark` (the published trainings of --space
    /// nas-bench-macro, every member trained 3 times on CIFAR-10, or accel-nasbench, 5,125
    /// members trained on ImageNet; other members fail as `invalid`), or `predictor:MODEL` (the
    /// accuracy a model from `effnas predictor fit` predicts; the model must have been fitted on
    /// --space).
    #[arg(long, default_value_t = EvaluatorName::Train, value_parser = parse_evaluator, value_name = "EVALUATOR")]
    pub evaluator: EvaluatorName,
    /// T in the reward ACC × (FLOPS / T)^w, in multiply-adds of the searched (full-size) model
    /// (400M, 0.4G, 4e8; at least 1).
    #[arg(long, default_value = "400M", value_parser = flags::multiply_adds)]
    pub target_flops: u64,
    /// The exponent w of a soft constraint.
    #[arg(long, default_value_t = -0.07, allow_negative_numbers = true, conflicts_with = "hard")]
    pub w: f64,
    /// A hard constraint: w = 0 under T, −1 over it.
    #[arg(long)]
    pub hard: bool,
    /// Reject candidates over this many multiply-adds before training (they count as failed
    /// trials; 400M, 0.4G, 4e8; at least 1).
    #[arg(long, value_name = "F", value_parser = flags::multiply_adds)]
    pub max_flops: Option<u64>,
    /// Seed of the controller (the proxy's seed is --seed too).
    #[arg(long, default_value_t = 0)]
    pub seed: u64,
    /// A name for the run (default: the strategy and space).
    #[arg(long)]
    pub name: Option<String>,
    /// Also train this architecture (a member of the space: e.g. b0, mnasnet-a1) as one of the
    /// run's first trials, to see where a known network ranks under the same proxy. Repeatable.
    #[arg(long, value_name = "SPEC")]
    pub include: Vec<String>,
    /// Continue an interrupted run (id or name) with its stored configuration; other flags but
    /// --db and --threads are ignored.
    #[arg(long, value_name = "RUN")]
    pub resume: Option<String>,
    /// Evolution: population size (2 to 100,000).
    #[arg(long, default_value_t = EvolutionConfig::default().population, value_parser = flags::population)]
    pub population: usize,
    /// Evolution: tournament size (1 to the population).
    #[arg(long, default_value_t = EvolutionConfig::default().sample_size, value_parser = flags::tournament)]
    pub tournament: usize,
    /// RL: the policy-gradient algorithm.
    #[arg(long, value_enum, default_value_t = RlAlgorithmName::Ppo)]
    pub rl_algorithm: RlAlgorithmName,
    /// RL: results per policy update (1 to 10,000).
    #[arg(long, default_value_t = RlConfig::default().batch_size, value_parser = flags::rl_batch)]
    pub rl_batch: usize,
    /// RL: Adam's learning rate (above 0).
    #[arg(long, default_value_t = RlConfig::default().learning_rate, value_parser = flags::positive)]
    pub rl_lr: f64,
    /// RL: weight of the entropy bonus (at least 0; more keeps the policy closer to uniform).
    #[arg(long, default_value_t = RlConfig::default().entropy_weight, value_parser = flags::non_negative)]
    pub rl_entropy: f64,
    /// RL: decay of the moving-average reward baseline (at least 0, below 1; 0 uses each
    /// batch's own mean).
    #[arg(long, default_value_t = RlConfig::default().baseline_decay, value_parser = flags::decay)]
    pub rl_baseline_decay: f64,
    /// RL: PPO's gradient steps per batch (1 to 100; REINFORCE always takes one).
    #[arg(long, default_value_t = RlConfig::default().epochs, value_parser = flags::rl_epochs)]
    pub rl_epochs: usize,
    /// Benchmark look-ups: answer each trial with one of the member's recorded trainings,
    /// drawn by the run's seed and the trial, instead of their mean (search noise as a real
    /// search meets it).
    #[arg(long)]
    pub benchmark_noise: bool,
    /// Screen proposals with a predictor (`predictor:MODEL`, fitted on --space with `effnas
    /// predictor fit`): about 1/F candidates are proposed per free slot and only the fraction F
    /// with the highest predicted reward are trained; the others are recorded as failed trials
    /// of kind `rejected` that give their predicted reward (`effnas trials --failure
    /// rejected`). --trials counts both.
    #[arg(long, value_name = "predictor:MODEL")]
    pub screen: Option<String>,
    /// The fraction F of proposals that --screen trains (above 0, at most 1).
    #[arg(long, value_name = "F", requires = "screen")]
    pub screen_keep: Option<f64>,
    #[command(flatten)]
    pub proxy: ProxyArgs,
    /// Multi-fidelity: `asha` promotes the best candidates through rungs of longer training.
    #[arg(long, value_enum, default_value_t = FidelityName::One)]
    pub fidelity: FidelityName,
    /// ASHA: rungs, rung 0 included (2 to 6).
    #[arg(long, default_value_t = 3, value_parser = clap::value_parser!(u32).range(2..=6))]
    pub rungs: u32,
    /// ASHA: the best 1/η of a rung are promoted, and each rung trains on η times the images of
    /// the one below (2 to 8; a budget above the data set's size trains on all of it).
    #[arg(long, default_value_t = 3, value_parser = clap::value_parser!(u32).range(2..=8))]
    pub eta: u32,
    #[command(flatten)]
    pub finalists: FinalistArgs,
    #[command(flatten)]
    pub threads: ThreadsArg,
    #[command(flatten)]
    pub run_on: WorkerArgs,
    /// Print the summary as JSON.
    #[arg(long)]
    pub json: bool,
}

#[derive(Debug, Clone, Copy, PartialEq, Eq, ValueEnum)]
pub enum RlAlgorithmName {
    Ppo,
    Reinforce,
}

fn strategy(args: &Args) -> Strategy {
    match args.strategy {
        StrategyName::Random => Strategy::Random,
        StrategyName::Evolution => {
            Strategy::Evolution(EvolutionConfig { population: args.population, sample_size: args.tournament })
        }
        StrategyName::Rl => Strategy::Rl(RlConfig {
            algorithm: match args.rl_algorithm {
                RlAlgorithmName::Ppo => RlAlgorithm::Ppo,
                RlAlgorithmName::Reinforce => RlAlgorithm::Reinforce,
            },
            batch_size: args.rl_batch,
            learning_rate: args.rl_lr,
            entropy_weight: args.rl_entropy,
            baseline_decay: args.rl_baseline_decay,
            epochs: args.rl_epochs,
            ..RlConfig::default()
        }),
    }
}

fn check_args(args: &Args) -> Result<()> {
    if !args.w.is_finite() {
        bail!("--w must be a number");
    }
    if args.tournament > args.population {
        bail!("--tournament {} is larger than --population {}", args.tournament, args.population);
    }
    Ok(())
}

pub fn run(args: Args) -> Result<ExitCode> {
    // Everything is checked before the database is touched.
    let new_run = match &args.resume {
        Some(_) => None,
        None => Some(plan_new_run(&args)?),
    };
    let stop = super::resume::stop_on_signal()?;
    // A new run is checked (data loaded, devices checked) before the database is touched.
    if let Some((config, _)) = &new_run {
        Recipe::for_search(config)?.check()?;
    }
    // The store's errors name the database.
    let store = BlockingStore::open(&args.db)?;
    let (run_id, config) = match (new_run, &args.resume) {
        (Some((config, included)), _) => (create_run(&store, &args, &config, included)?, config),
        (None, Some(selector)) => {
            let (run, config): (Run, SearchConfig) =
                super::resume::resumable(&store, selector, RunKind::Search)?;
            Recipe::for_search(&config)?.check()?;
            eprintln!("resuming run {} with its stored configuration", run.id);
            (run.id, config)
        }
        (None, None) => unreachable!("either a new run or a resume"),
    };
    let devices = config.proxy.as_ref().map(|p| p.device.as_str());
    workers::with_workers(
        &store,
        run_id,
        config.plan.workers,
        &args.run_on,
        args.threads.threads,
        devices,
        |evaluator| execute(&store, run_id, &config, evaluator, &stop, args.json),
    )
}

/// The configuration of a new run and the architectures `--include` queues first, from the
/// flags, checked.
fn plan_new_run(args: &Args) -> Result<(SearchConfig, Vec<ArchSpec>)> {
    check_args(args)?;
    let space = SearchSpace::resolve(&args.space).context("--space")?;
    let mut included = Vec::new();
    for spec in &args.include {
        let arch = super::arch::resolve(spec, None, None, None)?;
        let tokens = space.encode(&arch).with_context(|| format!("--include {spec}"))?;
        // The member as the space builds it (the space's resolution and classes).
        included.push(space.decode(&tokens)?);
    }
    if included.len() > args.trials {
        bail!("--include names {} architectures but --trials is {}", included.len(), args.trials);
    }
    let objective = Objective {
        target: args.target_flops as f64,
        constraint: if args.hard { Constraint::Hard } else { Constraint::Soft { w: args.w } },
        ..Objective::default()
    };
    let (evaluator, proxy) = match args.evaluator {
        EvaluatorName::Oracle | EvaluatorName::Benchmark | EvaluatorName::Predictor(_) => {
            (EvaluatorKind::Oracle, None)
        }
        EvaluatorName::Train => {
            let settings = args.proxy.settings();
            settings.validate()?;
            (EvaluatorKind::Train, Some(settings))
        }
    };
    let lookup = lookup_settings(args, &space)?;
    let predictor = match &args.evaluator {
        EvaluatorName::Predictor(path) => {
            Some(PredictorSettings::new(path, &space).context("--evaluator predictor")?)
        }
        _ => None,
    };
    let evaluator = match (&lookup, &predictor) {
        (Some(_), _) => EvaluatorKind::Benchmark,
        (None, Some(_)) => EvaluatorKind::Predictor,
        (None, None) => evaluator,
    };
    let proxy_key = match (&proxy, &lookup, &predictor) {
        (Some(settings), _, _) => settings.key(args.seed, effnas_space::arch::defaults::RESOLUTION),
        (None, Some(lookup), _) => lookup.key(args.seed),
        (None, None, Some(predictor)) => predictor.key(),
        (None, None, None) => format!("oracle-v1:{}", space.name),
    };
    let (rungs, rung_proxies) = rungs(args, proxy.as_ref(), &proxy_key);
    let screen = screen_plan(args, &space)?;
    let plan = SearchPlan {
        space,
        strategy: strategy(args),
        trials: args.trials,
        seed: args.seed,
        max_flops: args.max_flops,
        objective,
        proxy_key,
        workers: args.workers,
        rungs,
        screen,
    };
    let include = included.iter().map(effnas_space::arch_hash).collect();
    // Finalists of a multi-fidelity search train at its top rung unless told otherwise.
    let final_proxy = rung_proxies.last().or(proxy.as_ref());
    let first_setting = plan.rungs.as_ref().map_or(1, Rungs::count);
    let finalists = args.finalists.plan(final_proxy, args.seed, include, first_setting)?;
    let config = SearchConfig {
        version: CONFIG_VERSION,
        plan,
        evaluator,
        proxy,
        lookup,
        predictor,
        finalists,
        rungs: rung_proxies,
    };
    Ok((config, included))
}

/// The screen of `--screen predictor:MODEL --screen-keep F`, checked.
fn screen_plan(args: &Args, space: &SearchSpace) -> Result<Option<ScreenPlan>> {
    let Some(screen) = &args.screen else { return Ok(None) };
    let Some(path) = screen.strip_prefix("predictor:").filter(|p| !p.is_empty()) else {
        bail!("--screen {screen:?}: expected predictor:MODEL (a model file of `effnas predictor fit`)");
    };
    let keep = args.screen_keep.unwrap_or(0.5);
    if !(keep > 0.0 && keep <= 1.0) {
        bail!("--screen-keep {keep} is out of range (above 0, at most 1)");
    }
    let predictor = PredictorSettings::new(std::path::Path::new(path), space).context("--screen")?;
    Ok(Some(ScreenPlan { predictor, keep }))
}

/// The look-up settings of `--evaluator benchmark`: the benchmark is the one of the space.
fn lookup_settings(args: &Args, space: &SearchSpace) -> Result<Option<LookupSettings>> {
    if args.evaluator != EvaluatorName::Benchmark {
        if args.benchmark_noise {
            bail!("--benchmark-noise needs --evaluator benchmark");
        }
        return Ok(None);
    }
    let Some(benchmark) = Benchmark::for_space(space) else {
        bail!(
            "--evaluator benchmark: space {:?} has no benchmark; give --space nas-bench-macro or --space accel-nasbench",
            space.name
        );
    };
    Ok(Some(LookupSettings { benchmark, noise: args.benchmark_noise }))
}

/// The rungs of a multi-fidelity search: their keys for the plan and their proxies (rung 1 and
/// up; none for the oracle, which scores every rung alike).
fn rungs(args: &Args, proxy: Option<&ProxySettings>, proxy_key: &str) -> (Option<Rungs>, Vec<ProxySettings>) {
    if args.fidelity == FidelityName::One {
        return (None, Vec::new());
    }
    let proxies: Vec<ProxySettings> = match proxy {
        Some(base) => (1..args.rungs)
            .map(|rung| ProxySettings {
                train_images: rung_images(base.train_images, args.eta, rung),
                ..base.clone()
            })
            .collect(),
        None => Vec::new(),
    };
    let keys = match proxy {
        Some(_) => {
            proxies.iter().map(|p| p.key(args.seed, effnas_space::arch::defaults::RESOLUTION)).collect()
        }
        None => (1..args.rungs).map(|rung| format!("{proxy_key}:rung{rung}")).collect(),
    };
    (Some(Rungs { eta: args.eta, keys }), proxies)
}

/// Creates the run with its configuration and queues the `--include` architectures.
fn create_run(
    store: &BlockingStore,
    args: &Args,
    config: &SearchConfig,
    included: Vec<ArchSpec>,
) -> Result<RunId> {
    let name = args
        .name
        .clone()
        .unwrap_or_else(|| format!("{}-{}", config.plan.strategy.name(), config.plan.space.name));
    // A name the user chose is refused when taken; a derived one is numbered (`-2`).
    let mut new_run = match args.name {
        Some(_) => NewRun::named(name, RunKind::Search),
        None => NewRun::new(name, RunKind::Search),
    };
    new_run.config = serde_json::to_value(config)?;
    new_run.seed = Some(config.plan.seed);
    let run_id = store.block_on(store.store().create_run(&new_run)).context("creating the run")?;
    let first: Vec<NewTrial> = included
        .into_iter()
        .map(|arch| NewTrial::new(arch, config.plan.proxy_key.clone()).at_step(0))
        .collect();
    store.block_on(store.store().insert_trials(run_id, &first)).context("queueing --include")?;
    Ok(run_id)
}

fn execute(
    store: &BlockingStore,
    run_id: RunId,
    config: &SearchConfig,
    mut evaluator: Box<dyn Evaluator>,
    stop: &AtomicBool,
    json: bool,
) -> Result<ExitCode> {
    let already = {
        let run = store.block_on(store.store().run(run_id))?;
        run.trials_done + run.trials_failed
    };
    let summary = if searched_all(store, run_id, config)? {
        Summary::default() // a resume in the finalist stage
    } else {
        let bar = crate::progress::bar("run", "trials", run_id, config.plan.trials as u64, already);
        let mut display = SearchDisplay::default();
        let search = Search::new(store, run_id, &config.plan, evaluator.as_mut())?;
        let summary: Summary = search.run(stop, |event| display.show(&bar, event))?;
        bar.finish_and_clear();
        summary
    };
    let mut summary = summary;
    if let (false, Some(plan)) = (summary.interrupted, &config.finalists) {
        let key = |setting| finalist_key(config, plan, setting);
        let objective = &config.plan.objective;
        if let Some(finals) =
            finalists::train(store, run_id, "search", plan, key, evaluator.as_mut(), objective, stop)?
        {
            summary.interrupted = finals.interrupted;
        }
    }
    let run = store.block_on(store.store().run(run_id))?;
    if json {
        let value = json!({
            "run": run.id.0,
            "name": run.name,
            "status": run.status.as_str(),
            "trials_done": run.trials_done,
            "trials_failed": run.trials_failed,
            "best_reward": run.best_reward,
            "summary": summary,
        });
        let mut value = value;
        let trials = store.trials(run_id, &effnas_store::TrialFilter::default())?;
        let first = config.finalists.as_ref().map_or(u32::MAX, |p| p.first_setting);
        let finals = effnas_search::finalists::finalists(&trials, first);
        value["answer"] = serde_json::to_value(finals.first().filter(|f| f.reward.is_some()))?;
        value["finalists"] = serde_json::to_value(&finals)?;
        outln!("{}", serde_json::to_string_pretty(&value)?)?;
    } else {
        print_summary(store, &run, &summary)?;
        if !summary.interrupted {
            finalists::print(store, run_id, config.finalists.as_ref().map_or(u32::MAX, |p| p.first_setting))?;
        }
    }
    Ok(exit_code(&run, &summary))
}

/// Whether the search itself is done: its candidates (rung 0) have all finished and no
/// promotion to a higher rung is left to train. A resume then goes straight to the finalists.
fn searched_all(store: &BlockingStore, run: RunId, config: &SearchConfig) -> Result<bool> {
    let trials = store.trials(run, &effnas_store::TrialFilter::default())?;
    let rungs = config.plan.rungs.as_ref().map_or(1, Rungs::count);
    let finished = |t: &&effnas_store::Trial| matches!(t.state, TrialState::Complete | TrialState::Failed);
    let candidates = trials.iter().filter(|t| t.setting == 0).filter(finished).count();
    let promotions_left = trials.iter().any(|t| (1..rungs).contains(&t.setting) && !finished(&t));
    Ok(candidates >= config.plan.trials && !promotions_left)
}

/// The proxy key of finalist setting `setting`: the final proxy with that setting's seed (the
/// oracle's own key with the seed, for oracle runs).
fn finalist_key(
    config: &SearchConfig,
    plan: &effnas_search::finalists::FinalistPlan,
    setting: u32,
) -> String {
    let seed = plan.seed_of(setting).unwrap_or(config.plan.seed);
    match plan.proxy.as_ref().or(config.proxy.as_ref()) {
        Some(proxy) => proxy.key(seed, effnas_space::arch::defaults::RESOLUTION),
        None => format!("{}:seed{seed}", config.plan.proxy_key),
    }
}

/// 130 for an interrupted run (it can be resumed), 1 for a run that ended failed (every trial
/// failed: its summary line says `failed`), else success.
fn exit_code(run: &Run, summary: &Summary) -> ExitCode {
    if summary.interrupted {
        ExitCode::from(130)
    } else if run.status == RunStatus::Failed {
        ExitCode::from(1)
    } else {
        ExitCode::SUCCESS
    }
}

/// The progress line of a search: failures, throughput and the best trial so far.
#[derive(Default)]
struct SearchDisplay {
    failed: u64,
    best: Option<(f64, String)>,
    images_per_second: Option<f64>,
}

impl SearchDisplay {
    fn show(&mut self, bar: &ProgressBar, event: &Event) {
        match event {
            Event::Finished { reward, images_per_second, .. } => {
                bar.inc(1);
                if reward.is_none() {
                    self.failed += 1;
                }
                if let Some(ips) = images_per_second {
                    self.images_per_second = Some(*ips);
                }
                let best = self.best.as_ref().map_or("-".to_owned(), |(r, b)| format!("{r:.4} {b}"));
                let ips = self.images_per_second.map_or(String::new(), |v| format!(" | {v:.0} img/s"));
                bar.set_message(format!("failed {}{ips} | best {best}", self.failed));
            }
            Event::NewBest { trial, reward, blocks } => {
                let short: Vec<&str> = blocks.iter().map(|b| b.split("_i").next().unwrap_or(b)).collect();
                self.best = Some((*reward, format!("(trial {trial}: {})", short.join(","))));
            }
        }
    }
}

fn print_summary(store: &BlockingStore, run: &Run, summary: &Summary) -> Result<()> {
    outln!(
        "run {} ({}): {}, {} trials complete ({} trained, {} reused), {} failed ({} rejected), best reward {}",
        run.id,
        run.display_name(),
        run.status.as_str(),
        run.trials_done,
        summary.trained,
        summary.reused,
        run.trials_failed,
        summary.rejected,
        run.best_reward.map_or("-".to_owned(), |r| format!("{r:.4}")),
    )?;
    let db = store.store().location();
    let id = run.id;
    if summary.interrupted {
        outln!("interrupted: continue with `effnas search --db {db} --resume {id}`")?;
    } else {
        outln!(
            "next: `effnas trials --db {db} --run {id} --top 10`, `effnas pareto --db {db} --run {id}`, \
             `effnas plot --db {db} --run {id} --out search.svg`"
        )?;
    }
    Ok(())
}
