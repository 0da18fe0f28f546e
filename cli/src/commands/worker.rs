//! `effnas worker`: a process that trains queued trials from the database, on this machine or
//! another (the store is the queue; see `store/SCHEMA.md` for claims, leases and fencing).
//! `effnas search` and `effnas compound` start their own local workers; start more with this
//! command, on other machines with a shared database, or from a scheduler (`deploy/`).

use std::process::ExitCode;
use std::sync::atomic::Ordering;
use std::time::Duration;

use anyhow::{bail, Context, Result};
use effnas_search::worker::{serve, WorkerEvent, WorkerOptions};
use effnas_store::{BlockingStore, OpenOptions, RetryPolicy};

use crate::flags::{self, ThreadsArg};
use crate::output::outln;

#[derive(Debug, clap::Args)]
pub struct Args {
    /// The experiment database the search writes (it must exist).
    #[arg(long, env = "EFFNAS_DB", default_value = "effnas.db")]
    pub db: String,

    /// Train on this device (cpu, cuda, cuda:N) instead of the one the run was configured with.
    #[arg(long)]
    pub device: Option<String>,

    /// Worker processes to run here, each claiming and training its own trials (1 to 64). On one
    /// GPU, small proxies leave it mostly idle: several slots overlap their work.
    #[arg(long, default_value_t = 1, value_parser = flags::slots)]
    pub slots: usize,

    /// Only this run's trials (an id, or =NAME for a name); default: any running run's.
    #[arg(long)]
    pub run: Option<String>,

    /// Exit after this many seconds without a trial to claim (default: keep waiting).
    #[arg(long, value_name = "SECONDS", value_parser = flags::seconds)]
    pub idle_exit: Option<f64>,

    /// The longest pause between looks for work while the queue is empty: the pause starts at
    /// 2 ms after a trial and doubles up to this. Shorter picks up new trials sooner when
    /// trials take milliseconds (the oracle, a benchmark's table), at the cost of more queries.
    #[arg(long, value_name = "SECONDS", default_value_t = 0.5, value_parser = flags::seconds)]
    pub poll: f64,

    /// Seconds a claimed trial stays this worker's without renewal (renewed every third of it
    /// while training); after that another worker may take it.
    #[arg(long, value_name = "SECONDS", default_value_t = 30.0, value_parser = flags::seconds)]
    pub lease: f64,

    #[command(flatten)]
    pub threads: ThreadsArg,

    /// Print a JSON summary when the worker ends.
    #[arg(long)]
    pub json: bool,

    /// Which slot this is (set by the parent process; names the worker in the database).
    #[arg(long, hide = true, default_value_t = 0)]
    pub slot: usize,

    /// The process id of the `search` or `compound` that started this worker: exit when it is gone.
    #[arg(long, hide = true)]
    pub parent: Option<u32>,
}

pub fn run(args: Args) -> Result<ExitCode> {
    if let Some(parent) = args.parent {
        exit_with_parent(parent)?;
    }
    if args.slots > 1 {
        return run_slots(&args);
    }
    args.threads.apply();
    let stop = super::resume::stop_on_signal_saying(args.parent.is_none())?;
    // Never creates a database: a worker pointed at a typo would wait forever on an empty one.
    let open = OpenOptions { create: false, ..OpenOptions::default() };
    let store = BlockingStore::open_with(&args.db, &open, RetryPolicy::from_env()?)?;
    let run = match &args.run {
        Some(selector) => Some(
            store
                .call(|| store.store().find_run(selector))
                .with_context(|| format!("--run {selector:?}"))?
                .id,
        ),
        None => None,
    };
    let mut options = WorkerOptions::new(args.slot);
    options.run = run;
    options.lease = Duration::from_secs_f64(args.lease);
    options.idle_exit = args.idle_exit.map(Duration::from_secs_f64);
    options.poll = Duration::from_secs_f64(args.poll);
    options.device = args.device.clone();
    let served = serve(&store, &options, &stop, log);
    // Closed before exit: the last connection out checkpoints the write-ahead log into the file.
    store.block_on(store.store().close());
    let summary = served?;
    if args.json {
        outln!("{}", serde_json::to_string_pretty(&summary)?)?;
    } else {
        outln!(
            "worker {}: {} complete, {} failed, {} superseded (a newer attempt won), {} given back",
            options.name,
            summary.completed,
            summary.failed,
            summary.superseded,
            summary.released
        )?;
    }
    Ok(ExitCode::SUCCESS)
}

fn log(event: &WorkerEvent) {
    match event {
        WorkerEvent::Claimed { claim, run } => {
            tracing::info!(trial = %claim.trial, attempt = claim.attempt, run = %run, "claimed")
        }
        WorkerEvent::Recorded { claim, outcome, fenced } => {
            tracing::info!(trial = %claim.trial, attempt = claim.attempt, ?outcome, ?fenced, "recorded")
        }
    }
}

/// The kernel sends SIGTERM (a clean stop) to this worker when its parent dies, even by
/// `kill -9`; a parent already gone by now means exit at once.
fn exit_with_parent(parent: u32) -> Result<()> {
    rustix::process::set_parent_process_death_signal(Some(rustix::process::Signal::TERM))
        .context("asking to be stopped with the parent process")?;
    if std::os::unix::process::parent_id() != parent {
        bail!("the process that started this worker ({parent}) has already ended");
    }
    Ok(())
}

/// `--slots K`: K worker processes of this binary, each one slot, until all have ended.
fn run_slots(args: &Args) -> Result<ExitCode> {
    let exe = std::env::current_exe().context("finding the effnas binary to start the slots")?;
    let stop = super::resume::stop_on_signal()?;
    let own: Vec<String> = std::env::args().skip(1).collect();
    let mut children = Vec::with_capacity(args.slots);
    for slot in 0..args.slots {
        let mut forwarded = strip_slots(&own);
        forwarded.extend(["--slots", "1", "--slot"].map(str::to_owned));
        forwarded.push(slot.to_string());
        forwarded.extend(["--parent".to_owned(), std::process::id().to_string()]);
        let child = std::process::Command::new(&exe)
            .args(&forwarded)
            .spawn()
            .with_context(|| format!("starting slot {slot}"))?;
        children.push(child);
    }
    // Ctrl-C reaches the slots through the terminal's process group; SIGTERM (a scheduler
    // ending the job) is passed on to them here. Each gives its trial back and exits.
    let mut asked = false;
    let mut failed = 0;
    while !children.is_empty() {
        if stop.load(Ordering::SeqCst) && !asked {
            asked = true;
            children.iter().for_each(crate::workers::terminate);
        }
        let mut running = Vec::with_capacity(children.len());
        for mut child in children {
            match child.try_wait().context("waiting for a slot")? {
                Some(status) => failed += usize::from(!status.success()),
                None => running.push(child),
            }
        }
        children = running;
        std::thread::sleep(Duration::from_millis(100));
    }
    Ok(if failed == 0 { ExitCode::SUCCESS } else { ExitCode::from(1) })
}

/// The arguments without `--slots N` / `--slots=N`.
fn strip_slots(args: &[String]) -> Vec<String> {
    let mut out = Vec::with_capacity(args.len());
    let mut skip_next = false;
    for arg in args {
        if skip_next {
            skip_next = false;
        } else if arg == "--slots" {
            skip_next = true;
        } else if !arg.starts_with("--slots=") {
            out.push(arg.clone());
        }
    }
    out
}
