//! The finalist stage shared by `search` and `compound`: the best trials re-trained with several
//! seeds once the run's own trials are done (see `effnas_search::finalists`), and the run's
//! answer printed as mean ± standard deviation.

use std::sync::atomic::AtomicBool;

use anyhow::{bail, Result};
use effnas_evaluator::score::Objective;
use effnas_search::evaluate::Evaluator;
use effnas_search::finalists::{self, Finalist, FinalistPlan};
use effnas_search::orchestrator::{drain_queue, Event, Summary};
use effnas_search::proxy::ProxySettings;
use effnas_store::{BlockingStore, RunId, TrialFilter};

use crate::flags;
use crate::output::outln;
use crate::table::{human_count, Table};

/// Finalist flags.
#[derive(Debug, Clone, PartialEq, clap::Args)]
pub struct FinalistArgs {
    /// When the run's own trials are done, re-train its best K trials (distinct architectures;
    /// plus any --include) with several seeds; the answer is the best mean reward. 0: none.
    #[arg(long, value_name = "K", default_value_t = 5, value_parser = clap::value_parser!(u32).range(0..=1000))]
    pub finalists: u32,
    /// Seeds per finalist (1 to 16); fresh seeds, after the run's own.
    #[arg(long, value_name = "N", default_value_t = 3, value_parser = clap::value_parser!(u32).range(1..=16))]
    pub final_seeds: u32,
    /// Training epochs of a finalist [default: the proxy's; a multi-fidelity search's top rung's].
    #[arg(long, value_parser = flags::epochs)]
    pub final_epochs: Option<u32>,
    /// Training images of a finalist [default: the proxy's; a multi-fidelity search's top rung's].
    #[arg(long, value_parser = flags::train_images)]
    pub final_train_images: Option<usize>,
}

impl FinalistArgs {
    /// The plan a run stores: `None` with `--finalists 0`. `proxy` is the run's proxy (`None`
    /// for the oracle, which takes no final settings).
    /// `first_setting`: the run's own settings come first (1, or a multi-fidelity search's rungs).
    pub fn plan(
        &self,
        proxy: Option<&ProxySettings>,
        seed: u64,
        include: Vec<String>,
        first_setting: u32,
    ) -> Result<Option<FinalistPlan>> {
        if self.finalists == 0 {
            return Ok(None);
        }
        let proxy = match proxy {
            Some(proxy) => Some(ProxySettings {
                epochs: self.final_epochs.unwrap_or(proxy.epochs),
                train_images: self.final_train_images.unwrap_or(proxy.train_images),
                ..proxy.clone()
            }),
            None if self.final_epochs.is_some() || self.final_train_images.is_some() => {
                bail!("--final-epochs and --final-train-images set a final proxy; the oracle trains none")
            }
            None => None,
        };
        let seeds = (1..=u64::from(self.final_seeds)).map(|i| seed.wrapping_add(i)).collect();
        Ok(Some(FinalistPlan { count: self.finalists as usize, seeds, proxy, include, first_setting }))
    }
}

/// Trains the finalists of a run whose own trials are done: queues those not queued yet (a
/// resume queues nothing twice) and drains them. `key` gives a finalist setting's proxy key.
/// `None` when there was nothing to re-train (no complete trial).
#[allow(clippy::too_many_arguments)] // the run, its plan and the machinery; no natural grouping
pub fn train(
    store: &BlockingStore,
    run: RunId,
    command: &str,
    plan: &FinalistPlan,
    key: impl Fn(u32) -> String,
    evaluator: &mut dyn Evaluator,
    objective: &Objective,
    stop: &AtomicBool,
) -> Result<Option<Summary>> {
    let trials = store.trials(run, &TrialFilter::default())?;
    let chosen = finalists::choose(&trials, plan);
    if chosen.is_empty() {
        return Ok(None);
    }
    let queued = finalists::queue(store, run, plan, &trials, &chosen, key)?;
    let total = (chosen.len() * plan.seeds.len()) as u64;
    tracing::info!(finalists = chosen.len(), seeds = plan.seeds.len(), queued, "finalists");
    let done = total.saturating_sub(queued as u64);
    let bar = crate::progress::bar("finalists of run", "trainings", run, total, done);
    bar.set_message(format!("the best {} trials, {} fresh seeds each", chosen.len(), plan.seeds.len()));
    let summary = drain_queue(store, run, command, evaluator, objective, stop, |event| {
        if let Event::Finished { .. } = event {
            bar.inc(1);
        }
    })?;
    bar.finish_and_clear();
    Ok(Some(summary))
}

/// The finalists of a run as a table, the answer first.
pub fn print(store: &BlockingStore, run: RunId, first_setting: u32) -> Result<Option<Finalist>> {
    print_from(&store.trials(run, &TrialFilter::default())?, first_setting)
}

/// [`print()`] from a run's trials (all of them).
pub fn print_from(trials: &[effnas_store::Trial], first_setting: u32) -> Result<Option<Finalist>> {
    let all = finalists::finalists(trials, first_setting);
    let Some(answer) = all.first().filter(|f| f.reward.is_some()).cloned() else {
        return Ok(None);
    };
    let mut table = Table::new([
        "trial",
        "MACs",
        "params",
        "search reward",
        "final reward (mean ± std)",
        "final accuracy",
        "seeds",
    ]);
    for f in &all {
        table.row([
            f.trial.to_string(),
            human_count(f.flops),
            human_count(f.params),
            f.search_reward.map_or("-".into(), |r| format!("{r:.4}")),
            f.reward.map_or("-".into(), |r| mean_std(r.mean, r.std, 4)),
            f.accuracy.map_or("-".into(), |a| mean_std(a.mean * 100.0, a.std.map(|s| s * 100.0), 2) + "%"),
            format!("{}/{}", f.complete, f.complete + f.failed + f.pending),
        ]);
    }
    outln!("finalists, re-trained with fresh seeds:\n{}", table.render())?;
    outln!(
        "answer: trial {} ({} MACs), final reward {}",
        answer.trial,
        human_count(answer.flops),
        answer.reward.map_or("-".into(), |r| r.to_string()),
    )?;
    Ok(Some(answer))
}

/// `0.5123 ± 0.0081`, or the mean alone with one seed.
pub fn mean_std(mean: f64, std: Option<f64>, precision: usize) -> String {
    match std {
        Some(std) => format!("{mean:.precision$} ± {std:.precision$}"),
        None => format!("{mean:.precision$}"),
    }
}
