//! Runs under hostile conditions: a second process resuming a live run (the run lease), trials
//! that kill their process (the attempt limit), another process holding the database locked
//! (the retry), a batch of trials queued again by a retried call, and names that are duplicates,
//! all digits or full of control characters.
#![allow(clippy::unwrap_used)]

#[macro_use]
mod common;

use std::time::{Duration, Instant};

use common::{search_run, trial, TempDb};
use effnas_store::{
    escape_control, BatchKey, BlockingStore, FailureKind, NewRun, OpenOptions, RetryPolicy, RunKind,
    RunOwner, RunStatus, StoreError, TrialFilter, TrialState, MAX_ATTEMPTS,
};
use sqlx::Connection;

/// A holder on another machine: its liveness cannot be judged from here, only its lease.
fn elsewhere() -> RunOwner {
    RunOwner::parse("another-host:4026531836:4242:12345").unwrap()
}

on_both_backends! {
    #[tokio::test]
    async fn a_run_held_by_a_live_process_is_refused_until_its_lease_lapses(db) {
        let store = db.open().await;
        let run = search_run(&store, "held").await;
        let me = RunOwner::this_process();

        store.acquire_run(run, &elsewhere(), Duration::from_secs(60)).await.unwrap();
        let refused = store.acquire_run(run, &me, Duration::from_secs(60)).await.unwrap_err();
        let message = refused.to_string();
        assert!(matches!(refused, StoreError::RunHeld { .. }), "{refused:?}");
        assert!(
            message.contains("process 4242 on another-host") && message.contains("lease until 20"),
            "{message}"
        );
        assert!(!message.contains('\n'));
        assert!(matches!(store.check_run_free(run, &me).await, Err(StoreError::RunHeld { .. })));
        let held = store.run(run).await.unwrap();
        assert_eq!(held.owner.as_deref(), Some(elsewhere().as_text().as_str()));

        // The holder renews; its own second acquire is a renewal too.
        store.renew_run(run, &elsewhere(), Duration::from_secs(60)).await.unwrap();
        store.acquire_run(run, &elsewhere(), Duration::from_secs(60)).await.unwrap();

        // Its lease lapses (it stopped renewing): the run can be taken over, and the old holder
        // learns it lost the run when it next renews.
        store.acquire_run(run, &elsewhere(), Duration::ZERO).await.unwrap();
        store.acquire_run(run, &me, Duration::from_secs(60)).await.unwrap();
        match store.renew_run(run, &elsewhere(), Duration::from_secs(60)).await {
            Err(e @ StoreError::RunLost { .. }) => {
                assert!(e.to_string().contains(&std::process::id().to_string()), "{e}")
            }
            other => panic!("expected RunLost, got {other:?}"),
        }

        // Released, anyone may take it.
        store.release_run(run, &me).await.unwrap();
        assert_eq!(store.run(run).await.unwrap().owner, None);
        store.acquire_run(run, &elsewhere(), Duration::from_secs(60)).await.unwrap();
        assert!(matches!(
            store.acquire_run(effnas_store::RunId(999), &me, Duration::from_secs(1)).await,
            Err(StoreError::RunNotFound(_))
        ));
    }
}

#[cfg(target_os = "linux")]
on_both_backends! {
    #[tokio::test]
    async fn a_run_whose_holder_process_ended_on_this_machine_is_taken_over_at_once(db) {
        let store = db.open().await;
        let run = search_run(&store, "orphan").await;
        let mut child = std::process::Command::new("true").spawn().unwrap();
        let pid = child.id();
        child.wait().unwrap();
        // This machine and namespace, the ended child's process id.
        let mine = RunOwner::this_process().as_text();
        let mut parts: Vec<&str> = mine.rsplitn(4, ':').collect();
        parts.reverse();
        let dead = RunOwner::parse(&format!("{}:{}:{pid}:{}", parts[0], parts[1], parts[3])).unwrap();
        store.acquire_run(run, &dead, Duration::from_secs(3600)).await.unwrap();
        store.acquire_run(run, &RunOwner::this_process(), Duration::from_secs(60)).await.unwrap();
    }
}

on_both_backends! {
    #[tokio::test]
    async fn a_trial_left_running_by_a_dead_process_fails_as_lost_after_its_last_attempt(db) {
        let store = db.open().await;
        let run = search_run(&store, "oom").await;
        let ids = store.insert_trials(run, &[trial(1), trial(2)]).await.unwrap();
        // The first trial kills its process every time: claimed, process gone, resumed.
        for attempt in 1..=MAX_ATTEMPTS {
            let claimed = store.claim_trial(run, "orchestrator").await.unwrap().unwrap();
            assert_eq!((claimed.id, claimed.attempt), (ids[0], attempt));
            let recovered = store.recover_running(run, MAX_ATTEMPTS).await.unwrap();
            if attempt < MAX_ATTEMPTS {
                assert_eq!((recovered.pending, recovered.failed), (vec![ids[0]], vec![]));
            } else {
                assert_eq!((recovered.pending, recovered.failed), (vec![], vec![ids[0]]));
            }
        }
        let lost = store.trial(ids[0]).await.unwrap();
        assert_eq!((lost.state, lost.failure), (TrialState::Failed, Some(FailureKind::Lost)));
        let message = lost.error.unwrap();
        assert!(message.contains("each of its 3 attempts"), "{message}");
        // The other trial is next, untouched by the recoveries.
        assert_eq!(store.claim_trial(run, "orchestrator").await.unwrap().unwrap().id, ids[1]);
    }
}

on_both_backends! {
    /// A call that queues trials and is retried after its commit went through (the connection
    /// dropped before the answer came) carries the same key: it gets the trials the first try
    /// queued, and the run does not train a second copy of the batch.
    #[tokio::test]
    async fn a_batch_queued_again_under_its_key_is_not_queued_twice(db) {
        let store = db.open().await;
        let run = search_run(&store, "retried").await;
        let count = |store: &effnas_store::Store| {
            let store = store.clone();
            async move { store.trials(run, &TrialFilter::default()).await.unwrap().len() }
        };
        let key = BatchKey::new();
        let first = store.insert_trials_once(run, &[trial(1), trial(2)], &key).await.unwrap();
        let again = store.insert_trials_once(run, &[trial(1), trial(2)], &key).await.unwrap();
        assert_eq!(again, first);
        assert_eq!(count(&store).await, 2);
        // Another call has another key: the same architectures are queued again, as asked.
        let other = store.insert_trials(run, &[trial(1), trial(2)]).await.unwrap();
        assert!(other.iter().all(|id| !first.contains(id)), "{other:?} {first:?}");
        assert_eq!(count(&store).await, 4);
        // A key used again for a different batch is a caller's mistake: refused, nothing added.
        let refused = store.insert_trials_once(run, &[trial(3)], &key).await.unwrap_err();
        assert!(matches!(refused, StoreError::BatchMismatch { queued: 2, asked: 1, .. }), "{refused:?}");
        assert!(refused.to_string().contains(key.as_str()), "{refused}");
        assert_eq!(count(&store).await, 4);
        // Keys are not shared between runs.
        let elsewhere = search_run(&store, "another").await;
        let there = store.insert_trials_once(elsewhere, &[trial(1), trial(2)], &key).await.unwrap();
        assert!(there.iter().all(|id| !first.contains(id)));
    }
}

on_both_backends! {
    #[tokio::test]
    async fn an_orderly_stop_gives_the_attempt_back(db) {
        let store = db.open().await;
        let run = search_run(&store, "ctrl-c").await;
        let id = store.insert_trial(run, &trial(1)).await.unwrap();
        // Stopped by Ctrl-C more often than the attempt limit: never failed for it.
        for _ in 0..=MAX_ATTEMPTS {
            assert_eq!(store.claim_trial(run, "orchestrator").await.unwrap().unwrap().attempt, 1);
            assert_eq!(store.requeue_running(run).await.unwrap(), vec![id]);
            assert!(store.recover_running(run, MAX_ATTEMPTS).await.unwrap().failed.is_empty());
        }
        assert_eq!(store.trial(id).await.unwrap().state, TrialState::Pending);
    }
}

/// Holds `BEGIN EXCLUSIVE` on the database from another connection for `hold`, as a `sqlite3`
/// shell in a transaction would. Returns once the lock is taken.
fn lock_for(db: &TempDb, hold: Duration) -> std::thread::JoinHandle<()> {
    let url = format!("sqlite://{}", db.url());
    let (taken, wait) = std::sync::mpsc::channel();
    let handle = std::thread::spawn(move || {
        let runtime = tokio::runtime::Builder::new_current_thread().enable_all().build().unwrap();
        runtime.block_on(async move {
            let mut conn = sqlx::SqliteConnection::connect(&url).await.unwrap();
            sqlx::query("BEGIN EXCLUSIVE").execute(&mut conn).await.unwrap();
            sqlx::query(
                "INSERT INTO runs (name, kind, status, config, code_version, created_at)
                         VALUES ('locker', 'manual', 'complete', '{}', 'x', '2025-01-01T00:00:00.000Z')",
            )
            .execute(&mut conn)
            .await
            .unwrap();
            taken.send(()).unwrap();
            tokio::time::sleep(hold).await;
            sqlx::query("COMMIT").execute(&mut conn).await.unwrap();
        });
    });
    wait.recv().unwrap();
    handle
}

fn short_busy_timeout() -> OpenOptions {
    OpenOptions { busy_timeout: Duration::from_millis(100), ..OpenOptions::default() }
}

#[test]
fn writes_wait_out_a_lock_held_longer_than_the_busy_timeout() {
    let db = TempDb::new();
    let retry = RetryPolicy { total: Duration::from_secs(60), ..RetryPolicy::default() };
    let store = BlockingStore::open_with(&db.url(), &short_busy_timeout(), retry).unwrap();
    let new_run = NewRun::new("patient", RunKind::Search);
    let run = store.call(|| store.store().create_run(&new_run)).unwrap();

    let started = Instant::now();
    let locker = lock_for(&db, Duration::from_millis(1500));
    // Fifteen busy timeouts' worth of lock: every write still lands.
    let id = store.insert_trial(run, &trial(1)).unwrap();
    store.set_run_status(run, RunStatus::Complete).unwrap();
    assert!(started.elapsed() >= Duration::from_millis(1000), "{:?}", started.elapsed());
    locker.join().unwrap();
    assert_eq!(store.trial(id).unwrap().state, TrialState::Pending);
    assert_eq!(store.run(run).unwrap().status, RunStatus::Complete);
}

#[test]
fn a_lock_held_past_the_retry_time_is_a_one_line_error_naming_the_database() {
    let db = TempDb::new();
    let retry = RetryPolicy { total: Duration::from_millis(400), ..RetryPolicy::default() };
    let store = BlockingStore::open_with(&db.url(), &short_busy_timeout(), retry).unwrap();
    let new_run = NewRun::new("impatient", RunKind::Search);
    let run = store.call(|| store.store().create_run(&new_run)).unwrap();
    let locker = lock_for(&db, Duration::from_secs(3));
    let error = store.insert_trial(run, &trial(1)).unwrap_err();
    locker.join().unwrap();
    let message = error.to_string();
    assert!(matches!(error, StoreError::StillLocked { .. }), "{error:?}");
    assert!(message.contains(&db.url()) && message.contains("EFFNAS_DB_RETRY"), "{message}");
}

on_both_backends! {
    #[tokio::test]
    async fn names_are_unique_never_all_digits_and_selected_unambiguously(db) {
        let store = db.open().await;
        let chosen = store.create_run(&NewRun::named("fashion", RunKind::Search)).await.unwrap();
        match store.create_run(&NewRun::named("fashion", RunKind::Search)).await {
            Err(e @ StoreError::RunNameTaken { .. }) => {
                assert_eq!(
                    e.to_string(),
                    format!("a run named \"fashion\" already exists (run {chosen}); choose another name")
                )
            }
            other => panic!("expected RunNameTaken, got {other:?}"),
        }
        // Derived names are numbered instead.
        let second = store.create_run(&NewRun::new("fashion", RunKind::Search)).await.unwrap();
        let third = store.create_run(&NewRun::new("fashion", RunKind::Search)).await.unwrap();
        assert_eq!(store.run(second).await.unwrap().name, "fashion-2");
        assert_eq!(store.run(third).await.unwrap().name, "fashion-3");
        assert_eq!(store.find_run("fashion").await.unwrap().id, chosen);

        for digits in ["1", "007", " 42 "] {
            match store.create_run(&NewRun::named(digits, RunKind::Search)).await {
                Err(e @ StoreError::InvalidValue { .. }) => assert!(e.to_string().contains("all digits"), "{e}"),
                other => panic!("{digits:?}: expected InvalidValue, got {other:?}"),
            }
        }
        assert!(matches!(
            store.create_run(&NewRun::named("evil\u{1b}[2J", RunKind::Search)).await,
            Err(StoreError::InvalidValue { .. })
        ));

        // An all-digit selector is an id, even when no run has it; `=NAME` is a name.
        assert!(matches!(store.find_run("99").await, Err(StoreError::RunNotFound(_))));
        assert_eq!(store.find_run(&chosen.to_string()).await.unwrap().id, chosen);
        assert_eq!(store.find_run("=fashion-2").await.unwrap().id, second);
    }
}

#[tokio::test]
async fn old_databases_with_duplicate_or_all_digit_names_stay_reachable() {
    let db = TempDb::new();
    let store = db.open().await;
    let first = search_run(&store, "placeholder").await;
    // Written before names were checked.
    let mut raw = db.raw().await;
    for name in ["7", "twin", "twin"] {
        sqlx::query(
            "INSERT INTO runs (name, kind, status, config, code_version, created_at)
             VALUES ($1, 'search', 'complete', '{}', 'old', '2025-01-01T00:00:00.000Z')",
        )
        .bind(name)
        .execute(&mut raw)
        .await
        .unwrap();
    }
    raw.close().await.unwrap();
    let digits = store.find_run("=7").await.unwrap();
    assert_eq!(digits.name, "7");
    assert_eq!(store.find_run("1").await.unwrap().id, first, "`1` is the id, not a name");
    match store.find_run("twin").await {
        Err(e @ StoreError::RunNameAmbiguous { .. }) => {
            assert!(e.to_string().contains("runs 3, 4 are all named \"twin\""), "{e}")
        }
        other => panic!("expected RunNameAmbiguous, got {other:?}"),
    }
}

on_both_backends! {
    #[tokio::test]
    async fn names_with_control_characters_are_printed_escaped(db) {
        let store = db.open().await;
        // A derived name (the command line of `effnas train`) is kept as typed...
        let run = store.create_run(&NewRun::new("x\u{1b}]0;pwned\u{7}\ny", RunKind::Manual)).await.unwrap();
        let stored = store.run(run).await.unwrap();
        assert_eq!(stored.name, "x\u{1b}]0;pwned\u{7}\ny");
        // ...and printed escaped.
        assert_eq!(stored.display_name(), "x\\u{1b}]0;pwned\\u{7}\\ny");
        assert_eq!(escape_control("plain φ"), "plain φ");
    }
}
