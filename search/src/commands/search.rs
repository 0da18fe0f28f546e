//! `effnas search`: architecture search (MnasNet §3) into the experiment database.

use std::process::ExitCode;

use anyhow::{bail, Context, Result};
use clap::ValueEnum;
use effnas_evaluator::score::{Constraint, Objective};
use effnas_search::controller::{EvolutionConfig, RlAlgorithm, RlConfig, Strategy};
use effnas_search::orchestrator::{Evaluator, Event, OracleEvaluator, Search, SearchPlan, Summary};
use effnas_space::SearchSpace;
use effnas_store::{BlockingStore, NewRun, NewTrial, Run, RunId, RunKind};
use indicatif::{ProgressBar, ProgressStyle};
use serde_json::json;

use super::proxy::{ProxyArgs, ResolvedProxy, TrainEvaluator};

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
    /// The experiment database: a SQLite file (created if missing).
    #[arg(long, default_value = "effnas.db")]
    pub db: String,
    /// The search space: default, mnasnet, or a .json/.toml space file.
    #[arg(long, default_value = "default")]
    pub space: String,
    /// The controller.
    #[arg(long, value_enum, default_value_t = StrategyName::Evolution)]
    pub strategy: StrategyName,
    /// Trials the run ends with (complete or failed).
    #[arg(long, default_value_t = 20)]
    pub trials: usize,
    /// Trials trained at once (worker threads per device; on a CPU they share the cores).
    #[arg(long, default_value_t = 2)]
    pub workers: usize,
    /// Train proxies, or score with the synthetic oracle.
    #[arg(long, value_enum, default_value_t = EvaluatorName::Train)]
    pub evaluator: EvaluatorName,
    /// T in the reward ACC × (FLOPS / T)^w, in multiply-adds of the searched (full-size) model.
    #[arg(long, default_value_t = 400e6)]
    pub target_flops: f64,
    /// The exponent w of a soft constraint.
    #[arg(long, default_value_t = -0.07, allow_negative_numbers = true, conflicts_with = "hard")]
    pub w: f64,
    /// A hard constraint: w = 0 under T, −1 over it.
    #[arg(long)]
    pub hard: bool,
    /// Reject candidates over this many multiply-adds before training (they count as failed trials).
    #[arg(long)]
    pub max_flops: Option<f64>,
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
    /// Continue an interrupted run (id or name) with its stored configuration; other flags are ignored.
    #[arg(long, value_name = "RUN")]
    pub resume: Option<String>,
    /// Evolution: population size.
    #[arg(long, default_value_t = EvolutionConfig::default().population)]
    pub population: usize,
    /// Evolution: tournament size.
    #[arg(long, default_value_t = EvolutionConfig::default().sample_size)]
    pub tournament: usize,
    /// RL: the policy-gradient algorithm.
    #[arg(long, value_enum, default_value_t = RlAlgorithmName::Ppo)]
    pub rl_algorithm: RlAlgorithmName,
    /// RL: results per policy update.
    #[arg(long, default_value_t = RlConfig::default().batch_size)]
    pub rl_batch: usize,
    #[command(flatten)]
    pub proxy: ProxyArgs,
    /// Print the summary as JSON.
    #[arg(long)]
    pub json: bool,
}

#[derive(Debug, Clone, Copy, PartialEq, Eq, ValueEnum)]
pub enum RlAlgorithmName {
    Ppo,
    Reinforce,
}

/// The stored configuration of a search run: the plan plus how to evaluate.
#[derive(Debug, Clone, serde::Serialize, serde::Deserialize)]
struct RunConfig {
    plan: SearchPlan,
    evaluator: String,
    proxy: Option<serde_json::Value>,
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
    if args.trials == 0 {
        bail!("--trials must be at least 1");
    }
    if args.workers == 0 {
        bail!("--workers must be at least 1");
    }
    if !(args.target_flops.is_finite() && args.target_flops > 0.0) {
        bail!("--target-flops must be a positive number");
    }
    if !args.w.is_finite() {
        bail!("--w must be a number");
    }
    if args.max_flops.is_some_and(|f| !(f.is_finite() && f > 0.0)) {
        bail!("--max-flops must be a positive number");
    }
    if args.population < 2 || args.tournament == 0 || args.tournament > args.population {
        bail!("--population must be at least 2 and --tournament between 1 and the population");
    }
    if args.rl_batch == 0 {
        bail!("--rl-batch must be at least 1");
    }
    Ok(())
}

pub fn run(args: Args) -> Result<ExitCode> {
    // Everything is checked before the database is touched.
    let (run_config, resume_selector) = match &args.resume {
        Some(selector) => (None, Some(selector.clone())),
        None => {
            check_args(&args)?;
            let space =
                SearchSpace::resolve(&args.space).with_context(|| format!("--space {:?}", args.space))?;
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
                target: args.target_flops,
                constraint: if args.hard { Constraint::Hard } else { Constraint::Soft { w: args.w } },
                ..Objective::default()
            };
            let resolved = match args.evaluator {
                EvaluatorName::Oracle => None,
                EvaluatorName::Train => Some(args.proxy.resolve(args.seed)?),
            };
            let proxy_key =
                resolved.as_ref().map_or_else(|| format!("oracle-v1:{}", space.name), ResolvedProxy::key);
            let plan = SearchPlan {
                space,
                strategy: strategy(&args),
                trials: args.trials,
                seed: args.seed,
                max_flops: args.max_flops.map(|f| f as u64),
                objective,
                proxy_key,
                workers: args.workers,
            };
            // The evaluator is built (data loaded, devices checked, workers started) before the
            // database is touched.
            let evaluator: Box<dyn Evaluator> = match resolved {
                Some(proxy) => Box::new(TrainEvaluator::new(proxy, plan.workers, plan.objective)?),
                None => Box::new(OracleEvaluator::new(&plan.space, plan.workers)),
            };
            let config = RunConfig {
                plan,
                evaluator: if args.evaluator == EvaluatorName::Train { "train" } else { "oracle" }.to_owned(),
                proxy: (args.evaluator == EvaluatorName::Train)
                    .then(|| serde_json::to_value(&args.proxy))
                    .transpose()?,
            };
            (Some((config, evaluator, included)), None)
        }
    };

    let store = BlockingStore::open(&args.db).with_context(|| format!("opening the database {}", args.db))?;
    let (run_id, config) = match (run_config, resume_selector) {
        (Some((config, evaluator, included)), _) => {
            let name = args
                .name
                .clone()
                .unwrap_or_else(|| format!("{}-{}", config.plan.strategy.name(), config.plan.space.name));
            let mut new_run = NewRun::new(name, RunKind::Search);
            new_run.config = serde_json::to_value(&config)?;
            new_run.seed = Some(config.plan.seed);
            let run_id = store.block_on(store.store().create_run(&new_run)).context("creating the run")?;
            let first: Vec<NewTrial> = included
                .into_iter()
                .map(|arch| NewTrial::new(arch, config.plan.proxy_key.clone()).at_step(0))
                .collect();
            store.block_on(store.store().insert_trials(run_id, &first)).context("queueing --include")?;
            return execute(&store, run_id, &config, evaluator, args.json);
        }
        (None, Some(selector)) => {
            let (run, config): (Run, RunConfig) =
                super::resume::resumable(&store, &selector, RunKind::Search)?;
            (run.id, config)
        }
        (None, None) => unreachable!("either a new run or a resume"),
    };
    let evaluator = build_evaluator(&config)?;
    eprintln!("resuming run {run_id} with its stored configuration");
    execute(&store, run_id, &config, evaluator, args.json)
}

fn build_evaluator(config: &RunConfig) -> Result<Box<dyn Evaluator>> {
    Ok(match config.evaluator.as_str() {
        "oracle" => Box::new(OracleEvaluator::new(&config.plan.space, config.plan.workers)),
        "train" => {
            let proxy: ProxyArgs = serde_json::from_value(config.proxy.clone().unwrap_or_default())
                .context("the run's proxy settings")?;
            Box::new(TrainEvaluator::new(
                proxy.resolve(config.plan.seed)?,
                config.plan.workers,
                config.plan.objective,
            )?)
        }
        other => bail!("unknown evaluator {other:?} in the run's configuration"),
    })
}

fn execute(
    store: &BlockingStore,
    run_id: RunId,
    config: &RunConfig,
    mut evaluator: Box<dyn Evaluator>,
    json: bool,
) -> Result<ExitCode> {
    let stop = super::resume::stop_on_ctrl_c();
    let total = config.plan.trials as u64;
    let already = {
        let run = store.block_on(store.store().run(run_id))?;
        run.trials_done + run.trials_failed
    };
    let bar = ProgressBar::new(total).with_position(already);
    bar.set_style(
        ProgressStyle::with_template(
            "{spinner} run {prefix} [{bar:30}] {pos}/{len} trials, {elapsed} elapsed, ETA {eta} | {msg}",
        )
        .unwrap_or_else(|_| ProgressStyle::default_bar())
        .progress_chars("=> "),
    );
    bar.set_prefix(run_id.to_string());
    let (mut failed, mut best, mut images_per_second) = (0u64, None::<(f64, String)>, None::<f64>);
    let search = Search::new(store, run_id, &config.plan, evaluator.as_mut())?;
    let summary: Summary = search.run(&stop, |event| match event {
        Event::Finished { reward, images_per_second: ips, .. } => {
            bar.inc(1);
            if reward.is_none() {
                failed += 1;
            }
            if let Some(ips) = ips {
                images_per_second = Some(*ips);
            }
            let best_text = best.as_ref().map_or("-".to_owned(), |(r, b)| format!("{r:.4} {b}"));
            let ips = images_per_second.map_or(String::new(), |v| format!(" | {v:.0} img/s"));
            bar.set_message(format!("failed {failed}{ips} | best {best_text}"));
        }
        Event::NewBest { trial, reward, blocks } => {
            let short: Vec<String> =
                blocks.iter().map(|b| b.split("_i").next().unwrap_or(b).to_owned()).collect();
            best = Some((*reward, format!("(trial {trial}: {})", short.join(","))));
        }
    })?;
    bar.finish_and_clear();

    let run = store.block_on(store.store().run(run_id))?;
    if json {
        println!(
            "{}",
            serde_json::to_string_pretty(&json!({
                "run": run.id.0,
                "name": run.name,
                "status": run.status.as_str(),
                "trials_done": run.trials_done,
                "trials_failed": run.trials_failed,
                "best_reward": run.best_reward,
                "summary": summary,
            }))?
        );
    } else {
        println!(
            "run {} ({}): {}, {} trials complete ({} trained, {} reused), {} failed ({} rejected), best reward {}",
            run.id,
            run.name,
            run.status.as_str(),
            run.trials_done,
            summary.trained,
            summary.reused,
            run.trials_failed,
            summary.rejected,
            run.best_reward.map_or("-".to_owned(), |r| format!("{r:.4}")),
        );
        if summary.interrupted {
            println!(
                "interrupted: continue with `effnas search --db {} --resume {}`",
                store.store().location(),
                run.id
            );
        } else {
            println!(
                "next: `effnas trials --db {db} --run {id} --top 10`, `effnas pareto --db {db} --run {id}`, `effnas plot --db {db} --run {id} --out search.svg`",
                db = store.store().location(),
                id = run.id
            );
        }
    }
    Ok(if summary.interrupted { ExitCode::from(130) } else { ExitCode::SUCCESS })
}
