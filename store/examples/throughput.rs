//! How fast the store queues, claims and finishes trials on an SQLite file, with several
//! workers (threads with their own connections) at once. A search's proxy trainings take
//! seconds to minutes each, so the store needs to sustain far less than this.
//!
//! `cargo run --release -p effnas-store --example throughput [TRIALS] [WORKERS]`

use std::time::Instant;

use effnas_space::presets;
use effnas_store::{BlockingStore, NewRun, NewTrial, RunKind, TrialFilter, TrialMetrics};

fn main() -> Result<(), Box<dyn std::error::Error>> {
    let mut args = std::env::args().skip(1);
    let trials: usize = args.next().map_or(Ok(2000), |a| a.parse())?;
    let workers: usize = args.next().map_or(Ok(4), |a| a.parse())?;
    let dir = tempfile::tempdir()?;
    let url = dir.path().join("throughput.db").display().to_string();
    let store = BlockingStore::open(&url)?;

    let mut arch = presets::preset("b0").ok_or("no b0 preset")?;
    arch.resolution = 32;
    let batch: Vec<NewTrial> = (0..trials)
        .map(|i| {
            let mut a = arch.clone();
            a.num_classes = 10 + i as u32; // distinct architectures
            NewTrial::new(a, "throughput")
        })
        .collect();

    let run = store.block_on(store.store().create_run(&NewRun::new("batch", RunKind::Search)))?;
    let started = Instant::now();
    store.block_on(store.store().insert_trials(run, &batch))?;
    report("queue in one transaction", trials, started);

    let single = store.block_on(store.store().create_run(&NewRun::new("single", RunKind::Search)))?;
    let started = Instant::now();
    for trial in batch.iter().take(trials / 4) {
        store.block_on(store.store().insert_trial(single, trial))?;
    }
    report("queue one transaction each", trials / 4, started);

    let started = Instant::now();
    let handles: Vec<_> = (0..workers)
        .map(|w| {
            let url = url.clone();
            std::thread::spawn(move || -> Result<usize, effnas_store::StoreError> {
                let store = BlockingStore::open(&url)?;
                let worker = format!("worker-{w}");
                let mut done = 0;
                while let Some(claimed) = store.claim_trial(run, &worker)? {
                    store.heartbeat(claimed.id, &worker)?;
                    let metrics = TrialMetrics {
                        accuracy: 0.5,
                        loss: 1.0,
                        params: 1,
                        flops: 1,
                        reward: 0.5,
                        ..Default::default()
                    };
                    store.complete_trial(claimed.id, &metrics)?;
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
    report(&format!("claim + heartbeat + complete, {workers} workers"), done, started);

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
