//! What the long-running commands (`search`, `compound`) share: stopping cleanly on Ctrl-C,
//! and finding the run that `--resume` continues.

use std::sync::atomic::{AtomicBool, Ordering};
use std::sync::Arc;

use anyhow::{bail, Context, Result};
use effnas_store::{BlockingStore, Run, RunKind, RunStatus};
use serde::de::DeserializeOwned;

/// A flag raised by the first Ctrl-C; a second Ctrl-C while the first is being handled ends the
/// process at once.
pub fn stop_on_ctrl_c() -> Arc<AtomicBool> {
    let stop = Arc::new(AtomicBool::new(false));
    let flag = Arc::clone(&stop);
    let _ = ctrlc::set_handler(move || {
        if flag.swap(true, Ordering::SeqCst) {
            std::process::exit(130);
        }
    });
    stop
}

/// The run `--resume SELECTOR` names, checked to be of `kind` and unfinished, with its stored
/// configuration.
pub fn resumable<T: DeserializeOwned>(
    store: &BlockingStore,
    selector: &str,
    kind: RunKind,
) -> Result<(Run, T)> {
    let run =
        store.block_on(store.store().find_run(selector)).with_context(|| format!("--resume {selector:?}"))?;
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
    let config = serde_json::from_value(run.config.clone())
        .with_context(|| format!("the stored configuration of run {}", run.id))?;
    Ok((run, config))
}
