//! `worker::serve` on the library level, with the oracle: it trains what is pending in running
//! runs, records rewards under the run's own objective, fails a trial it cannot score instead
//! of leaving it to be retried, and ends after its idle time. And the search's side of the
//! queue ([`StoreWorkers`]): it stops on a trial the database lost instead of waiting forever.

use std::sync::atomic::AtomicBool;
use std::sync::Arc;
use std::time::Duration;

use effnas_evaluator::score::{Metric, Objective};
use effnas_search::config::{EvaluatorKind, SearchConfig, CONFIG_VERSION};
use effnas_search::controller::Strategy;
use effnas_search::evaluate::Evaluator;
use effnas_search::orchestrator::{SearchError, SearchPlan};
use effnas_search::remote::StoreWorkers;
use effnas_search::worker::{serve, WorkerOptions};
use effnas_space::SearchSpace;
use effnas_store::{
    BlockingStore, FailureKind, NewRun, NewTrial, RunKind, RunStatus, TrialFilter, TrialState,
};
use rand::SeedableRng;

fn search_run(store: &BlockingStore, name: &str, objective: Objective, trials: usize) -> effnas_store::RunId {
    let space = SearchSpace::default_space();
    let config = SearchConfig {
        version: CONFIG_VERSION,
        plan: SearchPlan {
            space: space.clone(),
            strategy: Strategy::Random,
            trials,
            seed: 0,
            max_flops: None,
            objective,
            proxy_key: "oracle".to_owned(),
            workers: 1,
            rungs: None,
            screen: None,
        },
        evaluator: EvaluatorKind::Oracle,
        proxy: None,
        lookup: None,
        predictor: None,
        finalists: None,
        rungs: Vec::new(),
    };
    let mut new = NewRun::new(name, RunKind::Search);
    new.config = serde_json::to_value(&config).expect("config");
    let run = store.block_on(store.store().create_run(&new)).expect("run");
    store.set_run_status(run, RunStatus::Running).expect("running");
    let mut rng = rand_chacha::ChaCha8Rng::seed_from_u64(7);
    let queued: Vec<NewTrial> = (0..trials)
        .map(|_| NewTrial::new(space.decode(&space.sample_tokens(&mut rng)).expect("member"), "oracle"))
        .collect();
    store.insert_trials(run, &queued).expect("queued");
    run
}

#[test]
fn a_worker_trains_every_pending_trial_and_fails_what_it_cannot_score() {
    let dir = tempfile::tempdir().expect("tempdir");
    let store = BlockingStore::open(&dir.path().join("w.db").display().to_string()).expect("store");
    let scored = search_run(&store, "flops", Objective::default(), 5);
    // A latency objective: the oracle measures no latency, so no reward can be computed.
    let latency = Objective { metric: Metric::LatencyMs, target: 10.0, ..Objective::default() };
    let unscorable = search_run(&store, "latency", latency, 2);

    let mut options = WorkerOptions::new(0);
    options.idle_exit = Some(Duration::from_millis(300));
    let summary =
        serve(&store, &options, &Arc::new(AtomicBool::new(false)), |_| {}).expect("the worker ends");
    assert_eq!((summary.completed, summary.failed, summary.superseded), (5, 2, 0), "{summary:?}");

    let all = TrialFilter::default();
    for trial in store.trials(scored, &all).expect("trials") {
        assert_eq!((trial.state, trial.attempts), (TrialState::Complete, 1));
        assert!(trial.reward.is_some_and(|r| r > 0.0) && trial.lease_until.is_none(), "{trial:?}");
    }
    for trial in store.trials(unscorable, &all).expect("trials") {
        assert_eq!((trial.state, trial.failure), (TrialState::Failed, Some(FailureKind::Error)));
        assert!(trial.error.as_deref().is_some_and(|e| e.contains("latency")), "{trial:?}");
    }
}

/// Copies an SQLite database (its main file and any write-ahead log beside it).
fn copy_database(from: &std::path::Path, to: &std::path::Path) {
    for suffix in ["", "-wal", "-shm"] {
        let source = std::path::PathBuf::from(format!("{}{suffix}", from.display()));
        if source.exists() {
            std::fs::copy(&source, format!("{}{suffix}", to.display())).expect("copy");
        }
    }
}

/// A database restored from a copy older than the trials a search queued (or a server that
/// crashed and forgot commits it had confirmed): the search's watcher reports the lost trial
/// by id instead of waiting forever for a result that cannot come.
#[test]
fn the_search_stops_on_a_queued_trial_that_the_database_lost() {
    let dir = tempfile::tempdir().expect("tempdir");
    let (live, older) = (dir.path().join("live.db"), dir.path().join("older.db"));
    let store = BlockingStore::open(&live.display().to_string()).expect("store");
    let run = search_run(&store, "lost", Objective::default(), 1);
    drop(store);
    copy_database(&live, &older);
    let store = BlockingStore::open(&live.display().to_string()).expect("store");
    let arch = store.trials(run, &TrialFilter::default()).expect("trials")[0].arch().expect("arch");
    let lost = store.insert_trial(run, &NewTrial::new(arch.clone(), "oracle")).expect("queued");
    drop(store);

    let restored = BlockingStore::open(&older.display().to_string()).expect("the older copy");
    let mut watcher = StoreWorkers::new(restored, 1, Duration::from_secs(30));
    watcher.submit(lost, &arch).expect("watched");
    match watcher.next(Duration::from_millis(500)) {
        Err(SearchError::TrialVanished { trial }) => assert_eq!(trial, lost),
        other => panic!("expected the lost trial {lost} to be reported, got {other:?}"),
    }
}
