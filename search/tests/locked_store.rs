//! A search whose own write meets a database locked past the whole retry time stops, marks its
//! run interrupted (that write retried until the lock is gone) and says how to resume; nothing is
//! left running. Deterministic here because the evaluator runs in the search's own process, so
//! every result is a write of the search itself (with worker processes, the CLI test
//! `a_lock_held_past_the_retry_loses_nothing` covers either outcome).

use std::sync::atomic::AtomicBool;
use std::time::Duration;

use effnas_evaluator::score::Objective;
use effnas_search::controller::Strategy;
use effnas_search::evaluate::OracleEvaluator;
use effnas_search::orchestrator::{Search, SearchError, SearchPlan};
use effnas_space::SearchSpace;
use effnas_store::{
    BlockingStore, NewRun, OpenOptions, RetryPolicy, RunKind, RunStatus, TrialFilter, TrialState,
};

const TRIALS: usize = 20_000;

fn open(path: &str, retry: Duration) -> BlockingStore {
    let options = OpenOptions { busy_timeout: Duration::from_millis(50), ..OpenOptions::default() };
    let policy = RetryPolicy {
        total: retry,
        first_pause: Duration::from_millis(20),
        max_pause: Duration::from_millis(200),
    };
    BlockingStore::open_with(path, &options, policy).expect("the database opens")
}

#[test]
fn a_search_stopped_by_a_lock_marks_its_run_interrupted_and_says_how_to_resume() {
    let dir = tempfile::tempdir().expect("tempdir");
    let path = dir.path().join("locked.db").display().to_string();
    let store = open(&path, Duration::from_secs(1));
    let run = store.block_on(store.store().create_run(&NewRun::new("locked", RunKind::Search))).expect("run");
    let space = SearchSpace::default_space();
    let plan = SearchPlan {
        space: space.clone(),
        strategy: Strategy::Random,
        trials: TRIALS,
        seed: 1,
        max_flops: None,
        objective: Objective::default(),
        proxy_key: "oracle".to_owned(),
        workers: 1,
        rungs: None,
        screen: None,
    };

    let searcher = std::thread::spawn(move || {
        let mut evaluator = OracleEvaluator::new(&space, 1);
        let search = Search::new(&store, run, &plan, &mut evaluator).expect("the search starts");
        search.run(&AtomicBool::new(false), |_| {})
    });
    let locker = open(&path, Duration::from_secs(60));
    while locker.run(run).expect("counts").trials_done < 20 {
        std::thread::sleep(Duration::from_millis(20));
    }
    // Longer than the search's retry (1 s): its write gives up; the marking, retried as long
    // again, lands once the lock is gone.
    locker.block_on(locker.store().hold_write_lock(Duration::from_millis(1600), || {})).expect("the lock");
    let error = searcher.join().expect("no panic").expect_err("the lock stops the search");

    let SearchError::Stopped { note, .. } = &error else { panic!("not a stop: {error}") };
    assert!(note.contains("is marked interrupted") && note.contains("--resume"), "{note}");
    assert!(error.to_string().contains("stayed locked"), "{error}");
    let stored = locker.run(run).expect("the run");
    assert_eq!(stored.status, RunStatus::Interrupted);
    assert!(stored.trials_done < TRIALS as u64, "stopped early");
    let running = TrialFilter { state: Some(TrialState::Running), ..TrialFilter::default() };
    assert!(locker.trials(run, &running).expect("trials").is_empty(), "nothing left running");
}
