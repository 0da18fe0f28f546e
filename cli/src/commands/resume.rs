//! What the long-running commands (`search`, `compound`) share: stopping cleanly on Ctrl-C,
//! SIGTERM or SIGHUP, and finding the run that `--resume` continues.

use std::sync::atomic::{AtomicBool, Ordering};
use std::sync::Arc;

use anyhow::{bail, Context, Result};
use effnas_search::config::{read_stored, Versioned};
use effnas_store::{BlockingStore, Run, RunKind, RunOwner, RunStatus};
use serde::de::DeserializeOwned;

/// A flag raised by the first Ctrl-C (or SIGTERM, SIGHUP). Trainers stop at their next step,
/// the run is marked interrupted and the trials in flight go back to the queue. A second signal
/// only repeats that the run is stopping: ending the process from the handler thread while
/// libtorch threads run could leave the database mid-write.
pub fn stop_on_signal() -> Result<Arc<AtomicBool>> {
    stop_on_signal_saying(true)
}

/// [`stop_on_signal`], silent when `announce` is false: a worker started by a search is stopped
/// by it at every run's end, which is no news to the user.
pub fn stop_on_signal_saying(announce: bool) -> Result<Arc<AtomicBool>> {
    let stop = Arc::new(AtomicBool::new(false));
    let flag = Arc::clone(&stop);
    ctrlc::set_handler(move || {
        if !announce {
            flag.store(true, Ordering::SeqCst);
        } else if flag.swap(true, Ordering::SeqCst) {
            eprintln!("\nstill stopping: the trainers end at their next step");
        } else {
            eprintln!("\nstopping: the trials in flight go back to the queue");
        }
    })
    .context("installing the Ctrl-C handler")?;
    Ok(stop)
}

/// The run `--resume SELECTOR` names (an all-digit selector is an id, `=NAME` a name), checked
/// to be of `kind`, unfinished and not held by another live process, with its stored
/// configuration. All before the evaluator loads anything; the orchestrator then takes the run
/// for good (a lease, see `store/SCHEMA.md`).
pub fn resumable<T: DeserializeOwned + Versioned>(
    store: &BlockingStore,
    selector: &str,
    kind: RunKind,
) -> Result<(Run, T)> {
    let run =
        store.call(|| store.store().find_run(selector)).with_context(|| format!("--resume {selector:?}"))?;
    if run.kind != kind {
        bail!(
            "--resume {selector:?}: run {} is a {} run, not a {} run",
            run.id,
            run.kind.as_str(),
            kind.as_str()
        );
    }
    if run.status == RunStatus::Complete {
        bail!(
            "--resume {selector:?}: run {} has finished ({} trials); nothing to resume",
            run.id,
            run.trials_done + run.trials_failed
        );
    }
    // A run whose process still lives would be trained twice: refuse, naming that process.
    let me = RunOwner::this_process();
    store
        .call(|| store.store().check_run_free(run.id, &me))
        .with_context(|| format!("--resume {selector:?}"))?;
    let config =
        read_stored(&run.config).with_context(|| format!("the stored configuration of run {}", run.id))?;
    Ok((run, config))
}
