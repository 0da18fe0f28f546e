//! The worker processes `search` and `compound` start on this machine: `--workers K` children
//! running `effnas worker` on the same database and run, each with its own libtorch context and
//! random generators, stopped when the run ends (and ended by the kernel if the parent dies).

use std::path::PathBuf;
use std::process::{Child, Command, Stdio};
use std::sync::{Arc, Mutex};
use std::time::{Duration, Instant};

use anyhow::{bail, Context, Result};
use effnas_search::evaluate::Evaluator;
use effnas_search::orchestrator::SearchError;
use effnas_search::remote::StoreWorkers;
use effnas_store::{BlockingStore, RunId};

/// Who trains a run's trials. Shared by `search` and `compound`.
#[derive(Debug, Clone, clap::Args)]
pub struct WorkerArgs {
    /// Start no worker processes here: queue the trials and wait for `effnas worker` processes
    /// started elsewhere (other machines, a scheduler; see deploy/). --workers then sets how many
    /// trials are kept queued.
    #[arg(long)]
    pub external_workers: bool,

    /// Seconds a worker's claim on a trial lasts without renewal; a worker that dies loses its
    /// trial to another after this long.
    #[arg(long, value_name = "SECONDS", default_value_t = 30.0, value_parser = crate::flags::seconds)]
    pub lease: f64,
}

/// The run's evaluator: worker processes seen through the store, `slots` of them started here
/// unless they are external. Keep the returned handle until the run ends: dropping it stops
/// the local workers.
pub fn evaluator(
    store: &BlockingStore,
    run: RunId,
    slots: usize,
    args: &WorkerArgs,
    threads: Option<usize>,
    devices: Option<&str>,
) -> Result<(Box<dyn Evaluator>, Option<SharedWorkers>)> {
    if store.store().is_in_memory() {
        bail!(
            "--db {:?}: an in-memory database cannot be shared with worker processes; give a file",
            store.store().location()
        );
    }
    let lease = Duration::from_secs_f64(args.lease);
    let watcher = StoreWorkers::new(store.clone(), slots, lease);
    if args.external_workers {
        let location = store.store().location();
        if store.store().backend() == effnas_store::Backend::Postgres {
            // The location hides the password: say where the real URL goes.
            eprintln!(
                "waiting for workers: start them with `effnas worker --run {run}`, EFFNAS_DB set to {location} (with its password)"
            );
        } else {
            eprintln!("waiting for workers: start them with `effnas worker --db {location} --run {run}`");
        }
        return Ok((Box::new(watcher), None));
    }
    let spawn = Spawn { db: store.store().target(), run, count: slots, threads, lease, devices };
    let local = LocalWorkers::start(&spawn)?;
    let watched = Arc::clone(&local);
    let watcher = watcher.with_health_check(move || {
        let mut workers =
            watched.lock().map_err(|_| SearchError::Evaluator("worker list poisoned".into()))?;
        workers.check().map_err(|e| SearchError::Evaluator(e.to_string()))
    });
    Ok((Box::new(watcher), Some(local)))
}

/// Runs `body` with the run's [`evaluator`], then stops the local workers and closes the store,
/// in that order: the last connection to close checkpoints SQLite's write-ahead log into the
/// database file, so the file alone holds the whole run (a copy of it loses nothing).
pub fn with_workers<T>(
    store: &BlockingStore,
    run: RunId,
    slots: usize,
    args: &WorkerArgs,
    threads: Option<usize>,
    devices: Option<&str>,
    body: impl FnOnce(Box<dyn Evaluator>) -> Result<T>,
) -> Result<T> {
    let (evaluator, workers) = evaluator(store, run, slots, args, threads, devices)?;
    let result = body(evaluator);
    let names = workers.as_ref().map(|w| w.lock().map(|w| w.claim_names()).unwrap_or_default());
    drop(workers);
    // A worker that did not stop within its grace was killed holding its trial: give such
    // trials back now rather than when their lease passes.
    if let Some(names) = names {
        match store.release_workers_claims(run, &names) {
            Ok(ids) if !ids.is_empty() => {
                tracing::info!(trials = ids.len(), "stopped workers' trials given back")
            }
            Ok(_) => {}
            Err(e) => tracing::warn!(error = %e, "could not give back the stopped workers' trials"),
        }
    }
    store.block_on(store.store().close());
    result
}

/// What to start.
pub struct Spawn<'a> {
    /// The database as given (a PostgreSQL URL with its password): passed to the workers in
    /// `EFFNAS_DB`, so that it is not on their command lines for every user to read.
    pub db: &'a str,
    pub run: RunId,
    pub count: usize,
    /// libtorch CPU threads of each worker; default: the cores shared out among the workers.
    pub threads: Option<usize>,
    pub lease: Duration,
    /// The run's devices (`cuda:0,cuda:1`): with more than one, worker i trains on device
    /// i mod n, so each process holds one device's context.
    pub devices: Option<&'a str>,
}

/// Asks a child worker to stop as Ctrl-C would (SIGTERM: its trial goes back to the queue). A
/// child that already exited is no error.
pub fn terminate(child: &Child) {
    if let Some(pid) = rustix::process::Pid::from_raw(child.id() as i32) {
        let _ = rustix::process::kill_process(pid, rustix::process::Signal::TERM);
    }
}

/// The local workers, shared with the watcher's health check.
pub type SharedWorkers = Arc<Mutex<LocalWorkers>>;

/// Running worker children.
pub struct LocalWorkers {
    children: Vec<Child>,
}

impl LocalWorkers {
    /// Starts `spawn.count` workers of this same binary.
    pub fn start(spawn: &Spawn<'_>) -> Result<SharedWorkers> {
        let exe: PathBuf = std::env::current_exe().context("finding the effnas binary to start workers")?;
        let cores = std::thread::available_parallelism().map_or(1, |n| n.get());
        let threads = spawn.threads.unwrap_or_else(|| (cores / spawn.count).max(1));
        let mut workers = LocalWorkers { children: Vec::with_capacity(spawn.count) };
        let devices: Vec<&str> =
            spawn.devices.map(|d| d.split(',').map(str::trim).collect()).unwrap_or_default();
        for slot in 0..spawn.count {
            let mut command = Command::new(&exe);
            command.args(["worker", "--run", &spawn.run.to_string()]).env("EFFNAS_DB", spawn.db);
            if devices.len() > 1 {
                command.args(["--device", devices[slot % devices.len()]]);
            }
            let child = command
                .args(["--lease", &spawn.lease.as_secs_f64().to_string(), "--threads", &threads.to_string()])
                .args(["--slot", &slot.to_string(), "--parent", &std::process::id().to_string()])
                .stdin(Stdio::null())
                .stdout(Stdio::null())
                .spawn()
                .with_context(|| format!("starting worker process {slot} ({})", exe.display()))?;
            workers.children.push(child);
        }
        tracing::info!(count = spawn.count, threads, "started worker processes");
        Ok(Arc::new(Mutex::new(workers)))
    }

    /// Fails once every worker has exited: nothing would train the queued trials. (A worker
    /// exits on its own only when it cannot evaluate the run; it says why on stderr.)
    pub fn check(&mut self) -> Result<()> {
        let mut statuses = Vec::new();
        for child in &mut self.children {
            match child.try_wait().context("checking a worker process")? {
                Some(status) => statuses.push(status),
                None => return Ok(()),
            }
        }
        let shown: Vec<String> = statuses.iter().map(ToString::to_string).collect();
        bail!("every worker process has exited ({}); see their errors above", shown.join(", "))
    }

    /// Asks every worker to stop (SIGTERM: trials in flight stop at their next step and go back
    /// to the queue), waits up to `grace`, then kills what is left.
    /// The names the children claim trials under (`host:pid:slot`, see `effnas worker`), as
    /// patterns for [`effnas_store::Store::release_workers_claims`].
    pub fn claim_names(&self) -> Vec<String> {
        let host = effnas_store::host_name();
        self.children.iter().map(|child| format!("{host}:{}:*", child.id())).collect()
    }

    pub fn stop(&mut self, grace: Duration) {
        self.children.iter().for_each(terminate);
        let until = Instant::now() + grace;
        for child in &mut self.children {
            while matches!(child.try_wait(), Ok(None)) && Instant::now() < until {
                std::thread::sleep(Duration::from_millis(20));
            }
            if matches!(child.try_wait(), Ok(None)) {
                tracing::warn!(pid = child.id(), "a worker did not stop in time; killed");
                let _ = child.kill();
                let _ = child.wait();
            }
        }
        self.children.clear();
    }
}

impl Drop for LocalWorkers {
    fn drop(&mut self) {
        self.stop(Duration::from_secs(10));
    }
}
