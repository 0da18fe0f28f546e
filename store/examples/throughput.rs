//! How fast the store queues, claims and finishes trials, with several workers (threads with
//! their own connections) at once: on a new SQLite file, or on the PostgreSQL database given as
//! the third argument (it must hold no runs, or the read-back counts them too). A search's proxy
//! trainings take seconds to minutes each, so the store needs to sustain far less than this.
//!
//! `cargo run --release -p effnas-store --example throughput [TRIALS] [WORKERS] [postgres://…]`

use std::time::{Duration, Instant};

use effnas_space::presets;
use effnas_store::{BlockingStore, NewRun, NewTrial, RunId, RunKind, StoreError, TrialFilter, TrialMetrics};

fn main() -> Result<(), Box<dyn std::error::Error>> {
    let mut args = std::env::args().skip(1);
    let trials: usize = args.next().map_or(Ok(2000), |a| a.parse())?;
    let workers: usize = args.next().map_or(Ok(4), |a| a.parse())?;
    let dir = tempfile::tempdir()?;
    let url = match args.next() {
        Some(url) => url,
        None => dir.path().join("throughput.db").display().to_string(),
    };
    let store = BlockingStore::open(&url)?;
    println!("{} ({})", store.store().location(), store.store().backend());

    let run = queue(&store, &distinct_trials(trials)?)?;
    let started = Instant::now();
    let done = work(&url, run, workers)?;
    report(&format!("claim + extend lease + complete, {workers} workers"), done, started);
    read_back(&store, run)
}

/// `count` distinct architectures (B0 at 32 px with different class counts).
fn distinct_trials(count: usize) -> Result<Vec<NewTrial>, Box<dyn std::error::Error>> {
    let mut arch = presets::preset("b0").ok_or("no b0 preset")?;
    arch.resolution = 32;
    Ok((0..count)
        .map(|i| {
            let mut a = arch.clone();
            a.num_classes = 10 + i as u32;
            NewTrial::new(a, "throughput")
        })
        .collect())
}

/// Queues `batch` in one transaction into a new run (returned), and a quarter of it one
/// transaction each into another.
fn queue(store: &BlockingStore, batch: &[NewTrial]) -> Result<RunId, StoreError> {
    let run = store.block_on(store.store().create_run(&NewRun::new("batch", RunKind::Search)))?;
    let started = Instant::now();
    store.block_on(store.store().insert_trials(run, batch))?;
    report("queue in one transaction", batch.len(), started);

    let single = store.block_on(store.store().create_run(&NewRun::new("single", RunKind::Search)))?;
    let started = Instant::now();
    for trial in batch.iter().take(batch.len() / 4) {
        store.block_on(store.store().insert_trial(single, trial))?;
    }
    report("queue one transaction each", batch.len() / 4, started);
    Ok(run)
}

/// Drains `run` with `workers` threads, each with its own store; the number of trials done.
fn work(url: &str, run: RunId, workers: usize) -> Result<usize, Box<dyn std::error::Error>> {
    let handles: Vec<_> = (0..workers)
        .map(|w| {
            let url = url.to_owned();
            std::thread::spawn(move || -> Result<usize, StoreError> {
                let store = BlockingStore::open(&url)?;
                let worker = format!("worker-{w}");
                let metrics = TrialMetrics {
                    accuracy: 0.5,
                    loss: 1.0,
                    params: 1,
                    flops: 1,
                    reward: 0.5,
                    ..Default::default()
                };
                let mut done = 0;
                let lease = Duration::from_secs(60);
                while let Some(claimed) = store.claim_next(Some(run), &worker, lease)? {
                    store.extend_lease(claimed.claim(), lease)?;
                    store.complete_claim(claimed.claim(), &metrics, &[])?;
                    done += 1;
                }
                Ok(done)
            })
        })
        .collect();
    let mut done = 0;
    for handle in handles {
        done += handle.join().map_err(|_| "worker panicked")??;
    }
    Ok(done)
}

/// Times reading the run's trials and listing runs with their counts.
fn read_back(store: &BlockingStore, run: RunId) -> Result<(), Box<dyn std::error::Error>> {
    let started = Instant::now();
    let rows = store.block_on(store.store().trials(run, &TrialFilter::default()))?;
    report("read back", rows.len(), started);
    let started = Instant::now();
    let runs = store.block_on(store.store().runs())?;
    println!(
        "{:<44} {:>8.2} ms for {} runs",
        "list runs with counts",
        started.elapsed().as_secs_f64() * 1e3,
        runs.len()
    );
    Ok(())
}

fn report(what: &str, count: usize, started: Instant) {
    let seconds = started.elapsed().as_secs_f64();
    println!("{what:<44} {count:>6} trials in {:>7.3} s = {:>8.0} /s", seconds, count as f64 / seconds);
}
