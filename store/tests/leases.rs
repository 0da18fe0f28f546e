//! Trials claimed by worker processes: leases, their extension and expiry, and writes fenced on
//! the attempt. Each test on a fresh SQLite file.
#![allow(clippy::unwrap_used)]

#[macro_use]
mod common;

use std::time::Duration;

use common::{metrics, search_run, trial, TempDb};
use effnas_store::{
    time, AttemptOutcome, BlockingStore, Claim, EpochMetrics, FailureKind, Fenced, RunStatus, Store, Trial,
    TrialId, TrialState,
};

const MINUTE: Duration = Duration::from_secs(60);

/// Makes the lease of `trial` end in the past, as if its worker had stopped extending it long
/// ago (another SQLite client's write: no clock games, no sleeping).
async fn expire(store: &Store, trial: TrialId) {
    let sql = format!("UPDATE trials SET lease_until = '2000-01-01T00:00:00.000Z' WHERE id = {}", trial.0);
    assert_eq!(store.execute_unchecked(&sql).await.unwrap(), 1);
}

/// A trial's row and curve, to compare before and after a write that must change nothing.
async fn snapshot(store: &Store, trial: TrialId) -> (Trial, Vec<EpochMetrics>) {
    (store.trial(trial).await.unwrap(), store.epochs(trial).await.unwrap())
}

fn epoch(epoch: u32, val_accuracy: f64) -> EpochMetrics {
    EpochMetrics { epoch, val_accuracy: Some(val_accuracy), train_loss: Some(1.0), ..Default::default() }
}

on_both_backends! {
    #[tokio::test]
    async fn claim_next_serves_only_running_runs_and_the_given_run(db) {
        let store = db.open().await;
        let stopped = search_run(&store, "stopped").await;
        let first = search_run(&store, "first").await;
        let second = search_run(&store, "second").await;
        // The stopped run's trial is the oldest of all.
        let stopped_trial = store.insert_trial(stopped, &trial(1)).await.unwrap();
        let first_trials = store.insert_trials(first, &[trial(2), trial(3)]).await.unwrap();
        let second_trial = store.insert_trial(second, &trial(4)).await.unwrap();
        store.set_run_status(stopped, RunStatus::Interrupted).await.unwrap();

        let before = time::now();
        let any = store.claim_next(None, "w1", MINUTE).await.unwrap().expect("a pending trial");
        assert_eq!((any.id, any.run_id, any.attempt), (first_trials[0], first, 1), "the oldest of a running run");
        let claimed = store.trial(any.id).await.unwrap();
        assert_eq!(
            (claimed.state, claimed.worker.as_deref(), claimed.attempts),
            (TrialState::Running, Some("w1"), 1)
        );
        let (started, heartbeat) = (claimed.started.unwrap(), claimed.heartbeat.unwrap());
        assert!(started >= before && heartbeat == started);
        let until = time::parse_millis(&claimed.lease_until.unwrap()).unwrap();
        let lease = until - time::parse_millis(&started).unwrap();
        assert_eq!(lease, 60_000, "the lease runs from the claim");

        let given = store.claim_next(Some(second), "w2", MINUTE).await.unwrap().expect("the second run's");
        assert_eq!(given.id, second_trial);
        assert!(store.claim_next(Some(second), "w2", MINUTE).await.unwrap().is_none(), "only from that run");
        assert!(store.claim_next(Some(stopped), "w3", MINUTE).await.unwrap().is_none(), "not from a stopped run");
        assert_eq!(store.claim_next(None, "w3", MINUTE).await.unwrap().map(|c| c.id), Some(first_trials[1]));
        assert!(store.claim_next(None, "w3", MINUTE).await.unwrap().is_none());

        // The in-process claim of a search is unchanged: it serves its run whatever its status.
        store.set_run_status(first, RunStatus::Interrupted).await.unwrap();
        let extra = store.insert_trial(first, &trial(5)).await.unwrap();
        let in_process = store.claim_trial(first, "search").await.unwrap().expect("in-process claim");
        assert_eq!(in_process.id, extra);
        assert_eq!(store.trial(extra).await.unwrap().lease_until, None, "no lease in-process");

        // Resumed, the stopped run is served again.
        store.set_run_status(stopped, RunStatus::Running).await.unwrap();
        assert_eq!(store.claim_next(None, "w4", MINUTE).await.unwrap().map(|c| c.id), Some(stopped_trial));
    }
}

on_both_backends! {
    #[tokio::test]
    async fn a_stored_architecture_that_does_not_parse_is_failed_and_the_next_claimed(db) {
        let store = db.open().await;
        let run = search_run(&store, "broken").await;
        let ids = store.insert_trials(run, &[trial(1), trial(2)]).await.unwrap();
        let sql = format!("UPDATE trials SET arch = '{{\"not\": \"an architecture\"}}' WHERE id = {}", ids[0].0);
        store.execute_unchecked(&sql).await.unwrap();
        let claimed = store.claim_next(None, "w", MINUTE).await.unwrap().expect("the next trial");
        assert_eq!(claimed.id, ids[1]);
        let broken = store.trial(ids[0]).await.unwrap();
        assert_eq!(
            (broken.state, broken.failure, broken.lease_until),
            (TrialState::Failed, Some(FailureKind::Invalid), None)
        );
    }
}

on_both_backends! {
    #[test]
    fn workers_racing_on_one_file_never_claim_the_same_trial(db) {
        const TRIALS: usize = 90;
        let runtime = tokio::runtime::Runtime::new().unwrap();
        let runs = runtime.block_on(async {
            let store = db.open().await;
            let mut runs = Vec::new();
            for (r, name) in ["race-a", "race-b", "race-c"].into_iter().enumerate() {
                let run = search_run(&store, name).await;
                let batch: Vec<_> = (0..TRIALS / 3).map(|i| trial(r * 100 + i)).collect();
                store.insert_trials(run, &batch).await.unwrap();
                runs.push(run);
            }
            runs
        });
        // Plain threads, each with its own store (pool and connections); half take from any run,
        // half from one run.
        let workers: Vec<_> = (0..6)
            .map(|w| {
                let (url, run) = (db.url(), (w % 2 == 1).then(|| runs[w / 2]));
                std::thread::spawn(move || {
                    let store = BlockingStore::open(&url).expect("open");
                    let name = format!("worker-{w}");
                    let mut mine = Vec::new();
                    while let Some(claimed) = store.claim_next(run, &name, MINUTE).expect("claim") {
                        let done =
                            store.complete_claim(claimed.claim(), &metrics(0.5, 7), &[]).expect("complete");
                        assert_eq!(done, Fenced::Written);
                        mine.push(claimed.id);
                    }
                    mine
                })
            })
            .collect();
        let claimed: Vec<Vec<TrialId>> = workers.into_iter().map(|w| w.join().expect("worker thread")).collect();
        common::assert_each_claimed_once(&claimed, TRIALS);
        runtime.block_on(async {
            let store = db.open().await;
            for run in runs {
                let trials = store.trials(run, &Default::default()).await.unwrap();
                assert!(trials.iter().all(|t| t.state == TrialState::Complete && t.attempts == 1));
                assert!(trials.iter().all(|t| t.lease_until.is_none()), "a finished trial holds no lease");
            }
        });
    }
}

on_both_backends! {
    #[tokio::test]
    async fn extending_a_lease_keeps_the_trial_until_it_is_reclaimed(db) {
        let store = db.open().await;
        let run = search_run(&store, "extend").await;
        let id = store.insert_trial(run, &trial(1)).await.unwrap();
        // Long against the extensions' spacing, so that a busy machine does not make it flaky.
        let lease = Duration::from_millis(400);
        let first = store.claim_next(Some(run), "w1", lease).await.unwrap().unwrap().claim();
        assert_eq!(first, Claim { trial: id, attempt: 1 });

        // Extended every 50 ms for two leases: it never expires.
        for _ in 0..16 {
            tokio::time::sleep(Duration::from_millis(50)).await;
            assert!(store.extend_lease(first, lease).await.unwrap());
            assert!(store.requeue_expired(3).await.unwrap().pending.is_empty(), "an extended lease holds");
        }
        let extended = store.trial(id).await.unwrap();
        assert!(extended.lease_until.unwrap() > extended.started.unwrap());
        assert_eq!(extended.state, TrialState::Running);

        // Not extended, it expires and is claimed again; the old claim cannot be extended.
        tokio::time::sleep(lease + Duration::from_millis(50)).await;
        assert_eq!(store.requeue_expired(3).await.unwrap().pending, vec![id]);
        assert!(!store.extend_lease(first, lease).await.unwrap(), "requeued: superseded");
        let second = store.claim_next(Some(run), "w2", MINUTE).await.unwrap().unwrap().claim();
        assert_eq!(second, Claim { trial: id, attempt: 2 });
        let before = snapshot(&store, id).await;
        assert!(!store.extend_lease(first, lease).await.unwrap(), "reclaimed: superseded");
        assert_eq!(snapshot(&store, id).await, before, "the old claim changed nothing");
        assert!(store.extend_lease(second, MINUTE).await.unwrap());
    }
}

on_both_backends! {
    #[tokio::test]
    async fn requeue_expired_returns_expired_trials_only_and_fails_them_after_the_last_attempt(db) {
        let store = db.open().await;
        let run = search_run(&store, "expiry").await;
        let other = search_run(&store, "other-run").await;
        let ids = store.insert_trials(run, &[trial(1), trial(2), trial(3), trial(4)]).await.unwrap();
        let elsewhere = store.insert_trial(other, &trial(5)).await.unwrap();

        let expiring = store.claim_next(Some(run), "dies", MINUTE).await.unwrap().unwrap();
        let alive = store.claim_next(Some(run), "lives", MINUTE).await.unwrap().unwrap();
        let in_process = store.claim_trial(run, "search").await.unwrap().unwrap();
        let other_run = store.claim_next(Some(other), "dies-too", MINUTE).await.unwrap().unwrap();
        assert_eq!([expiring.id, alive.id, in_process.id, other_run.id], [ids[0], ids[1], ids[2], elsewhere]);
        expire(&store, expiring.id).await;
        expire(&store, other_run.id).await;
        // An in-process claim has no lease; even an old heartbeat does not make it expire.
        store
            .execute_unchecked(&format!(
                "UPDATE trials SET heartbeat_at = '2000-01-01T00:00:00.000Z' WHERE id = {}",
                in_process.id.0
            ))
            .await
            .unwrap();

        let taken = store.requeue_expired(3).await.unwrap();
        assert_eq!((taken.pending, taken.failed), (vec![expiring.id, elsewhere], vec![]), "across runs");
        let requeued = store.trial(expiring.id).await.unwrap();
        assert_eq!(
            (requeued.state, requeued.worker.as_deref(), requeued.lease_until, requeued.attempts),
            (TrialState::Pending, None, None, 1),
            "pending again, the attempt still counted"
        );
        for (id, worker) in [(alive.id, "lives"), (in_process.id, "search")] {
            let t = store.trial(id).await.unwrap();
            assert_eq!(
                (t.state, t.worker.as_deref()),
                (TrialState::Running, Some(worker)),
                "trial {id} left alone"
            );
        }
        assert_eq!(store.trial(ids[3]).await.unwrap().state, TrialState::Pending);
        assert!(store.requeue_expired(3).await.unwrap() == Default::default(), "nothing more to take");

        // Claimed a second time and lost again, with two attempts allowed: failed as lost.
        let again = store.claim_next(Some(run), "dies-again", MINUTE).await.unwrap().unwrap();
        assert_eq!((again.id, again.attempt), (expiring.id, 2));
        expire(&store, again.id).await;
        let taken = store.requeue_expired(2).await.unwrap();
        assert_eq!((taken.pending, taken.failed), (vec![], vec![expiring.id]));
        let lost = store.trial(expiring.id).await.unwrap();
        assert_eq!(
            (lost.state, lost.failure, lost.lease_until),
            (TrialState::Failed, Some(FailureKind::Lost), None)
        );
        let message = lost.error.unwrap();
        assert!(message.contains("lease expired") && message.contains("2 attempts"), "{message}");
        assert!(lost.finished.is_some());
    }
}

on_both_backends! {
    #[tokio::test]
    async fn a_superseded_attempt_writes_nothing_and_the_current_one_is_stored_with_its_curve(db) {
        let store = db.open().await;
        let run = search_run(&store, "fenced").await;
        let id = store.insert_trial(run, &trial(1)).await.unwrap();
        let stale = store.claim_next(Some(run), "presumed-dead", MINUTE).await.unwrap().unwrap().claim();
        expire(&store, id).await;
        store.requeue_expired(3).await.unwrap();
        let current = store.claim_next(Some(run), "current", MINUTE).await.unwrap().unwrap().claim();
        assert_eq!((stale.attempt, current.attempt), (1, 2));
        assert_eq!(store.record_claim_epoch(current, &epoch(0, 0.4)).await.unwrap(), Fenced::Written);
        assert_eq!(store.record_claim_epoch(current, &epoch(2, 0.45)).await.unwrap(), Fenced::Written);

        // The presumed-dead worker comes back: every write of its attempt is refused, no row changes.
        let before = snapshot(&store, id).await;
        assert_eq!(
            store.complete_claim(stale, &metrics(0.99, 1), &[epoch(0, 0.99)]).await.unwrap(),
            Fenced::Superseded
        );
        assert_eq!(store.fail_claim(stale, FailureKind::Error, "late").await.unwrap(), Fenced::Superseded);
        assert_eq!(store.release_claim(stale).await.unwrap(), Fenced::Superseded);
        assert!(!store.extend_lease(stale, MINUTE).await.unwrap());
        assert_eq!(store.record_claim_epoch(stale, &epoch(0, 0.99)).await.unwrap(), Fenced::Superseded);
        assert_eq!(store.record_claim_epoch(stale, &epoch(7, 0.99)).await.unwrap(), Fenced::Superseded);
        assert_eq!(snapshot(&store, id).await, before, "the superseded attempt changed nothing");
        assert_eq!(before.1, [epoch(0, 0.4), epoch(2, 0.45)]);

        // The current attempt's result is stored, with its curve (replacing recorded epochs by number).
        let curve = [epoch(0, 0.5), epoch(1, 0.7)];
        assert_eq!(store.complete_claim(current, &metrics(0.7, 1234), &curve).await.unwrap(), Fenced::Written);
        let done = store.trial(id).await.unwrap();
        assert_eq!(
            (done.state, done.accuracy, done.flops, done.attempts),
            (TrialState::Complete, Some(0.7), 1234, 2)
        );
        assert_eq!((done.lease_until, done.worker.as_deref()), (None, Some("current")));
        assert_eq!(store.epochs(id).await.unwrap(), [epoch(0, 0.5), epoch(1, 0.7), epoch(2, 0.45)]);

        // Finished: the same attempt's further writes are refused too.
        let finished = snapshot(&store, id).await;
        assert_eq!(store.fail_claim(current, FailureKind::Error, "again").await.unwrap(), Fenced::Superseded);
        assert_eq!(store.release_claim(current).await.unwrap(), Fenced::Superseded);
        assert_eq!(
            store.complete_claim(current, &metrics(0.1, 1), &[epoch(5, 0.1)]).await.unwrap(),
            Fenced::Superseded
        );
        assert_eq!(store.record_claim_epoch(current, &epoch(6, 0.1)).await.unwrap(), Fenced::Superseded);
        assert_eq!(snapshot(&store, id).await, finished);

        // A claim of a trial that does not exist (its run deleted) is superseded too.
        let gone = Claim { trial: TrialId(999), attempt: 1 };
        assert_eq!(store.fail_claim(gone, FailureKind::Error, "x").await.unwrap(), Fenced::Superseded);
        assert_eq!(store.complete_claim(gone, &metrics(0.5, 1), &[]).await.unwrap(), Fenced::Superseded);
        assert_eq!(store.record_claim_epoch(gone, &epoch(0, 0.5)).await.unwrap(), Fenced::Superseded);

        // A current attempt may fail, with its kind and message.
        let other = store.insert_trial(run, &trial(2)).await.unwrap();
        let claim = store.claim_next(Some(run), "w", MINUTE).await.unwrap().unwrap().claim();
        assert_eq!(claim.trial, other);
        assert_eq!(
            store.fail_claim(claim, FailureKind::OutOfMemory, "CUDA out of memory").await.unwrap(),
            Fenced::Written
        );
        let failed = store.trial(other).await.unwrap();
        assert_eq!(
            (failed.state, failed.failure, failed.lease_until),
            (TrialState::Failed, Some(FailureKind::OutOfMemory), None)
        );
        assert_eq!(failed.error.as_deref(), Some("CUDA out of memory"));
    }
}

on_both_backends! {
    #[tokio::test]
    async fn invalid_metrics_are_refused_before_the_fence(db) {
        let store = db.open().await;
        let run = search_run(&store, "invalid").await;
        let id = store.insert_trial(run, &trial(1)).await.unwrap();
        let claim = store.claim_next(Some(run), "w", MINUTE).await.unwrap().unwrap().claim();
        let before = snapshot(&store, id).await;
        let result = store.complete_claim(claim, &metrics(75.0, 1), &[]).await;
        assert!(matches!(result, Err(effnas_store::StoreError::InvalidValue { .. })), "{result:?}");
        assert_eq!(snapshot(&store, id).await, before);
    }
}

on_both_backends! {
    /// A search that had to kill its own workers gives back their trials by name: only those
    /// workers' running trials of that run, and `_` or `%` in a name match only themselves.
    #[tokio::test]
    async fn releasing_the_claims_of_gone_workers_leaves_everyone_else_alone(db) {
        let store = db.open().await;
        let run = search_run(&store, "gone").await;
        let other_run = search_run(&store, "other").await;
        for n in 0..4 {
            store.insert_trial(run, &trial(n)).await.unwrap();
        }
        let other = store.insert_trial(other_run, &trial(9)).await.unwrap();
        let gone = store.claim_next(Some(run), "host:41:0", MINUTE).await.unwrap().unwrap();
        let also_gone = store.claim_next(Some(run), "host:41:1", MINUTE).await.unwrap().unwrap();
        let alive = store.claim_next(Some(run), "host:411:0", MINUTE).await.unwrap().unwrap();
        let lookalike = store.claim_next(Some(run), "hostX41:0", MINUTE).await.unwrap().unwrap();
        store.claim_next(Some(other_run), "host:41:0", MINUTE).await.unwrap().unwrap();

        let released = store.release_workers_claims(run, &["host:41:*".to_owned(), "host_41:0".to_owned()]).await.unwrap();
        assert_eq!(released, vec![gone.id, also_gone.id]);
        for id in [gone.id, also_gone.id] {
            let t = store.trial(id).await.unwrap();
            assert_eq!((t.state, t.worker.as_deref(), t.attempts), (TrialState::Pending, None, 0));
        }
        for id in [alive.id, lookalike.id, other] {
            assert_eq!(store.trial(id).await.unwrap().state, TrialState::Running, "trial {id:?} kept");
        }
        assert_eq!(store.release_claim(gone.claim()).await.unwrap(), Fenced::Superseded, "already given back");
    }
}

on_both_backends! {
    #[tokio::test]
    async fn releasing_a_claim_gives_the_attempt_back(db) {
        let store = db.open().await;
        let run = search_run(&store, "release").await;
        let id = store.insert_trial(run, &trial(1)).await.unwrap();
        let first = store.claim_next(Some(run), "w1", MINUTE).await.unwrap().unwrap().claim();
        expire(&store, id).await;
        store.requeue_expired(3).await.unwrap();
        let second = store.claim_next(Some(run), "w2", MINUTE).await.unwrap().unwrap().claim();
        assert_eq!((first.attempt, second.attempt), (1, 2));

        assert_eq!(store.release_claim(second).await.unwrap(), Fenced::Written);
        let released = store.trial(id).await.unwrap();
        assert_eq!(
            (released.state, released.worker.as_deref(), released.lease_until, released.attempts),
            (TrialState::Pending, None, None, 1),
            "pending, the stopped attempt not counted"
        );
        assert_eq!(store.release_claim(second).await.unwrap(), Fenced::Superseded, "released once");
        let third = store.claim_next(Some(run), "w3", MINUTE).await.unwrap().unwrap();
        assert_eq!((third.id, third.attempt), (id, 2));
    }
}

on_both_backends! {
    #[test]
    fn keep_lease_extends_in_the_background_and_reports_a_reclaim(db) {
        let store = BlockingStore::open(&db.url()).unwrap();
        let run = store.block_on(search_run(store.store(), "beats"));
        let id = store.insert_trial(run, &trial(1)).unwrap();
        // Extended every 150 ms: a busy machine may delay one extension without losing the lease.
        let lease = Duration::from_millis(450);
        let claim = store.claim_next(Some(run), "w", lease).unwrap().unwrap().claim();
        {
            let beat = store.keep_lease(claim, lease);
            std::thread::sleep(Duration::from_millis(1000));
            assert!(store.requeue_expired(3).unwrap().pending.is_empty(), "the extensions kept it");
            assert!(!beat.is_lost());
        }
        // Dropped: the extensions stop and the lease runs out.
        std::thread::sleep(lease + Duration::from_millis(100));
        assert_eq!(store.requeue_expired(3).unwrap().pending, vec![id]);
        let second = store.claim_next(Some(run), "w2", lease).unwrap().unwrap().claim();
        let stale = store.keep_lease(claim, lease);
        std::thread::sleep(Duration::from_millis(400));
        assert!(stale.is_lost(), "the first worker's claim was taken");

        // A worker whose trial is taken while it keeps the lease (its extensions stalled past the
        // lease, say) is told so at its next extension. The reclaim is one statement here (what
        // requeue_expired and claim_next do, in one go), so no extension can slip in between.
        let beat = store.keep_lease(second, lease);
        std::thread::sleep(Duration::from_millis(200));
        assert!(!beat.is_lost());
        let reclaim = format!(
            "UPDATE trials SET worker = 'w3', attempts = attempts + 1, lease_until = '9999-01-01T00:00:00.000Z' WHERE id = {}",
            id.0
        );
        assert_eq!(store.block_on(store.store().execute_unchecked(&reclaim)).unwrap(), 1);
        std::thread::sleep(Duration::from_millis(400));
        assert!(beat.is_lost(), "the reclaim was noticed");
        let t = store.trial(id).unwrap();
        assert_eq!((t.worker.as_deref(), t.attempts), (Some("w3"), 3));
        assert_eq!(
            t.lease_until.as_deref(),
            Some("9999-01-01T00:00:00.000Z"),
            "the old worker did not extend it"
        );
    }
}

on_both_backends! {
    #[tokio::test]
    async fn trials_by_id_returns_each_known_trial_once_in_id_order(db) {
        let store = db.open().await;
        let run = search_run(&store, "watch").await;
        let ids = store.insert_trials(run, &(0..700).map(trial).collect::<Vec<_>>()).await.unwrap();
        let mut asked: Vec<TrialId> = ids.iter().rev().copied().collect();
        asked.push(ids[3]);
        asked.push(TrialId(-1));
        asked.push(TrialId(1_000_000));
        let got = store.trials_by_id(&asked).await.unwrap();
        assert_eq!(got.iter().map(|t| t.id).collect::<Vec<_>>(), ids, "in id order, once, unknown ids left out");
        assert!(store.trials_by_id(&[]).await.unwrap().is_empty());
    }
}

#[tokio::test]
async fn the_expiry_scan_uses_its_index() {
    let db = TempDb::new();
    db.open().await.close().await;
    let mut conn = db.raw().await;
    let plan: Vec<(i64, i64, i64, String)> = sqlx::query_as(
        "EXPLAIN QUERY PLAN UPDATE trials SET state = 'pending' WHERE state = 'running' AND lease_until < $1",
    )
    .bind(time::now())
    .fetch_all(&mut conn)
    .await
    .unwrap();
    assert!(plan.iter().any(|row| row.3.contains("trials_by_lease")), "{plan:?}");
}

#[tokio::test]
async fn trials_running_when_a_schema_4_database_is_upgraded_hold_no_lease_and_are_not_expired() {
    const SCHEMA_4: i64 = 20261127000004;
    let db = TempDb::new();
    let old = Store::open_at_schema_version(&db.url(), SCHEMA_4).await.unwrap();
    let run = search_run(&old, "old").await;
    old.close().await;
    let mut conn = db.raw().await;
    let arch = serde_json::to_string(&common::arch(1)).unwrap();
    sqlx::query(
        "INSERT INTO trials (id, run_id, arch, arch_hash, blocks, resolution, proxy_key, state, worker, attempts,
                             created_at, started_at, heartbeat_at, params, flops)
         VALUES (1, $1, $2, 'abc', 'r1_k3_s11_e1_i32_o16', 32, 'p', 'running', 'old-worker', 1,
                 '2025-01-01T00:00:00.000Z', '2025-01-01T00:00:01.000Z', '2025-01-01T00:00:01.000Z', 10, 20)",
    )
    .bind(run.0)
    .bind(&arch)
    .execute(&mut conn)
    .await
    .unwrap();
    drop(conn);

    let store = db.open().await;
    assert_eq!(store.schema_version().await.unwrap(), effnas_store::latest_version());
    assert_eq!(store.trial(TrialId(1)).await.unwrap().lease_until, None);
    assert!(store.requeue_expired(3).await.unwrap().pending.is_empty(), "no lease, no expiry");
    assert_eq!(
        store.recover_running(run, 3).await.unwrap().pending,
        vec![TrialId(1)],
        "taken back on resume"
    );
}

on_both_backends! {
    #[tokio::test]
    async fn a_searchs_stop_or_resume_leaves_leased_trials_to_their_workers(db) {
        let store = db.open().await;
        let run = search_run(&store, "mixed").await;
        let ids = store.insert_trials(run, &[trial(1), trial(2), trial(3), trial(4)]).await.unwrap();
        let leased = store.claim_next(Some(run), "remote", MINUTE).await.unwrap().unwrap().claim();
        let in_process = store.claim_trial(run, "search").await.unwrap().unwrap();
        assert_eq!((leased.trial, in_process.id), (ids[0], ids[1]));

        // An orderly stop of the search gives back its own trial only.
        assert_eq!(store.requeue_running(run).await.unwrap(), vec![in_process.id]);
        let held = snapshot(&store, leased.trial).await;
        assert_eq!((held.0.state, held.0.attempts), (TrialState::Running, 1));

        // A resume after a crash takes back the in-process trial, not the leased one.
        let again = store.claim_trial(run, "search").await.unwrap().unwrap();
        assert_eq!(again.id, in_process.id);
        let recovered = store.recover_running(run, 3).await.unwrap();
        assert_eq!((recovered.pending, recovered.failed), (vec![in_process.id], vec![]));
        assert_eq!(snapshot(&store, leased.trial).await, held, "the worker's trial is untouched");
        assert_eq!(store.complete_claim(leased, &metrics(0.6, 5), &[]).await.unwrap(), Fenced::Written);
    }
}

on_both_backends! {
    /// A candidate rejected before training is inserted failed in one transaction: no worker can
    /// claim it between its insertion and its failure (the race that made a search fail with
    /// "trial N is already complete" when a worker trained a rejected candidate first).
    #[tokio::test]
    async fn a_trial_inserted_failed_is_never_claimable(db) {
        let store = db.open().await;
        let run = search_run(&store, "rejects").await;
        let id =
            store.insert_failed_trial(run, &trial(1), FailureKind::Rejected, "over --max-flops").await.unwrap();
        assert!(store.claim_next(Some(run), "w", MINUTE).await.unwrap().is_none(), "nothing pending");
        let stored = store.trial(id).await.unwrap();
        assert_eq!((stored.state, stored.failure), (TrialState::Failed, Some(FailureKind::Rejected)));
        assert_eq!((stored.attempts, stored.worker.as_deref()), (0, None), "never claimed");
        assert_eq!(stored.error.as_deref(), Some("over --max-flops"));
    }
}

/// `(attempt, worker, outcome, failure, ended)` of each attempt of `trial`, in order.
async fn attempt_rows(
    store: &Store,
    trial: TrialId,
) -> Vec<(u32, Option<String>, AttemptOutcome, Option<FailureKind>, bool)> {
    let attempts = store.attempts(trial).await.unwrap();
    attempts.into_iter().map(|a| (a.attempt, a.worker, a.outcome, a.failure, a.ended.is_some())).collect()
}

fn row(
    attempt: u32,
    worker: &str,
    outcome: AttemptOutcome,
    failure: Option<FailureKind>,
) -> (u32, Option<String>, AttemptOutcome, Option<FailureKind>, bool) {
    (attempt, Some(worker.to_owned()), outcome, failure, outcome != AttemptOutcome::Running)
}

on_both_backends! {
    #[tokio::test]
    async fn every_attempt_is_kept_with_its_worker_and_outcome(db) {
        use AttemptOutcome::{Complete, Failed, Reclaimed, Running};
        let store = db.open().await;
        // Lost by one worker, given back by a stopping one, finished by a third.
        let run = search_run(&store, "reclaimed-then-finished").await;
        let id = store.insert_trial(run, &trial(1)).await.unwrap();
        let first = store.claim_next(Some(run), "dies", MINUTE).await.unwrap().unwrap();
        assert_eq!(attempt_rows(&store, id).await, [row(1, "dies", Running, None)]);
        expire(&store, id).await;
        assert_eq!(store.requeue_expired(3).await.unwrap().pending, [id]);
        let stopping = store.claim_next(Some(run), "stops", MINUTE).await.unwrap().unwrap();
        assert_eq!(stopping.attempt, 2);
        assert!(store.release_claim(stopping.claim()).await.unwrap().is_written());
        assert_eq!(
            attempt_rows(&store, id).await,
            [row(1, "dies", Reclaimed, None)],
            "a claim given back on an orderly stop did not count"
        );
        let last = store.claim_next(Some(run), "finishes", MINUTE).await.unwrap().unwrap();
        assert_eq!(last.attempt, 2);
        assert!(store.complete_claim(last.claim(), &metrics(0.8, 1_000), &[]).await.unwrap().is_written());
        assert_eq!(
            attempt_rows(&store, id).await,
            [row(1, "dies", Reclaimed, None), row(2, "finishes", Complete, None)]
        );
        let attempts = store.attempts(id).await.unwrap();
        let trial_row = store.trial(id).await.unwrap();
        assert_eq!(attempts[1].ended, trial_row.finished, "ended when the trial finished");
        assert!(attempts[0].heartbeat.is_some() && attempts[0].started.is_some());
        // The superseded first claim changes nothing now.
        assert!(!store.complete_claim(first.claim(), &metrics(0.1, 1_000), &[]).await.unwrap().is_written());
        assert_eq!(store.attempts(id).await.unwrap(), attempts);

        // Lost on both of two attempts: reclaimed, then failed as lost.
        let run = search_run(&store, "lost").await;
        let id = store.insert_trial(run, &trial(2)).await.unwrap();
        for worker in ["a", "b"] {
            store.claim_next(Some(run), worker, MINUTE).await.unwrap().unwrap();
            expire(&store, id).await;
            store.requeue_expired(2).await.unwrap();
        }
        assert_eq!(
            attempt_rows(&store, id).await,
            [row(1, "a", Reclaimed, None), row(2, "b", Failed, Some(FailureKind::Lost))]
        );

        // In-process: a failure is recorded; a stop's give-back leaves nothing; a trial recorded
        // whole was never claimed.
        let run = search_run(&store, "in-process").await;
        let failing = store.insert_trial(run, &trial(3)).await.unwrap();
        store.claim_trial(run, "search").await.unwrap().unwrap();
        store.fail_trial(failing, FailureKind::Diverged, "loss NaN").await.unwrap();
        assert_eq!(attempt_rows(&store, failing).await, [row(1, "search", Failed, Some(FailureKind::Diverged))]);
        let stopped = store.insert_trial(run, &trial(4)).await.unwrap();
        store.claim_trial(run, "search").await.unwrap().unwrap();
        assert_eq!(store.requeue_running(run).await.unwrap(), [stopped]);
        assert_eq!(attempt_rows(&store, stopped).await, []);
        let whole = store.insert_completed_trial(run, &trial(5), &metrics(0.7, 1_000), &[]).await.unwrap();
        assert_eq!(attempt_rows(&store, whole).await, []);
    }
}
