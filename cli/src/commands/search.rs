//! `effnas search`: architecture search (MnasNet §3) into the experiment database.

use crate::output::outln;
use std::process::ExitCode;
use std::sync::atomic::AtomicBool;

use anyhow::{bail, Context, Result};
use clap::ValueEnum;
use effnas_evaluator::score::{Constraint, Objective};
use effnas_search::config::{EvaluatorKind, SearchConfig, CONFIG_VERSION};
use effnas_search::controller::{EvolutionConfig, RlAlgorithm, RlConfig, Strategy};
use effnas_search::evaluate::Evaluator;
use effnas_search::orchestrator::{Event, Search, SearchPlan, Summary};
use effnas_search::recipe::Recipe;
use effnas_space::{ArchSpec, SearchSpace};
use effnas_store::{BlockingStore, NewRun, NewTrial, Run, RunId, RunKind, RunStatus};
use indicatif::ProgressBar;
use serde_json::json;

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

#[derive(Debug, Clone, Copy, PartialEq, Eq, ValueEnum)]
pub enum EvaluatorName {
    /// Train every candidate as a proxy task with libtorch.
    Train,
    /// A synthetic objective computed from the architecture (microseconds; for dry runs and tests).
    Oracle,
}

#[derive(Debug, clap::Args)]
pub struct Args {
    /// The experiment database: an SQLite file (created if missing) or a postgres:// URL (the
    /// database must exist; its tables are created). EFFNAS_DB keeps a password off the command line.
    #[arg(long, env = "EFFNAS_DB", default_value = "effnas.db")]
    pub db: String,
    /// The search space: default, mnasnet, or a .json/.toml space file.
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
    /// Train proxies, or score with the synthetic oracle.
    #[arg(long, value_enum, default_value_t = EvaluatorName::Train)]
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
    #[command(flatten)]
    pub proxy: ProxyArgs,
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
        EvaluatorName::Oracle => (EvaluatorKind::Oracle, None),
        EvaluatorName::Train => {
            let settings = args.proxy.settings();
            settings.validate()?;
            (EvaluatorKind::Train, Some(settings))
        }
    };
    let proxy_key = match &proxy {
        Some(settings) => settings.key(args.seed, effnas_space::arch::defaults::RESOLUTION),
        None => format!("oracle-v1:{}", space.name),
    };
    let plan = SearchPlan {
        space,
        strategy: strategy(args),
        trials: args.trials,
        seed: args.seed,
        max_flops: args.max_flops,
        objective,
        proxy_key,
        workers: args.workers,
    };
    Ok((SearchConfig { version: CONFIG_VERSION, plan, evaluator, proxy }, included))
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
    let bar = crate::progress::bar("run", "trials", run_id, config.plan.trials as u64, already);
    let mut display = SearchDisplay::default();
    let search = Search::new(store, run_id, &config.plan, evaluator.as_mut())?;
    let summary: Summary = search.run(stop, |event| display.show(&bar, event))?;
    bar.finish_and_clear();
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
        outln!("{}", serde_json::to_string_pretty(&value)?)?;
    } else {
        print_summary(store, &run, &summary)?;
    }
    Ok(exit_code(&run, &summary))
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
