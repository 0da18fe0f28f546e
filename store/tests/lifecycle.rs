//! The trial life cycle and queries, each test on a fresh database.
#![allow(clippy::unwrap_used)]

#[macro_use]
mod common;

use std::time::Duration;

use common::{arch, metrics, search_run, trial, TempDb};
use effnas_store::{
    EpochMetrics, FailureKind, NewCompoundPoint, NewRun, NewScaledModel, RunKind, RunStatus, StoreError,
    TrialFilter, TrialId, TrialSort, TrialState,
};

on_both_backends! {
    #[tokio::test]
    async fn a_trial_goes_from_pending_to_complete_with_its_curve(db) {
        let store = db.open().await;
        let run = search_run(&store, "life").await;
        let id = store.insert_trial(run, &trial(1)).await.unwrap();

        let queued = store.trial(id).await.unwrap();
        assert_eq!(queued.state, TrialState::Pending);
        let cost = effnas_space::cost(&arch(1));
        assert_eq!((queued.params, queued.flops), (cost.params, cost.macs), "cost model fills cost at insert");
        assert_eq!(queued.blocks, arch(1).block_strings());
        assert_eq!(queued.arch().unwrap(), arch(1));

        let claimed = store.claim_trial(run, "w1").await.unwrap().expect("a pending trial");
        assert_eq!((claimed.id, claimed.attempt), (id, 1));
        assert_eq!(claimed.arch, arch(1));
        assert!(store.claim_trial(run, "w2").await.unwrap().is_none(), "nothing left to claim");
        let running = store.trial(id).await.unwrap();
        assert_eq!((running.worker.as_deref(), running.lease_until), (Some("w1"), None), "no lease in-process");

        record_a_curve_with_a_diverged_epoch(&store, id).await;
        let mut result = metrics(0.75, 123_456);
        result.extra = Some(serde_json::json!({"device": "cpu"}));
        store.complete_trial(id, &result).await.unwrap();

        let done = store.trial(id).await.unwrap();
        assert_eq!(done.state, TrialState::Complete);
        assert_eq!((done.accuracy, done.flops, done.reward), (Some(0.75), 123_456, Some(result.reward)));
        assert_eq!(done.extra, result.extra);
        assert!(done.finished.is_some());
        let curve = store.epochs(id).await.unwrap();
        assert_eq!(curve.len(), 3);
        assert_eq!(curve[2].train_loss, None);
        assert_eq!(curve[1].val_accuracy, Some(0.6));
    }
}

/// Three epochs, the last recorded again with a NaN loss.
async fn record_a_curve_with_a_diverged_epoch(store: &effnas_store::Store, id: TrialId) {
    for epoch in 0..3 {
        let e = EpochMetrics {
            epoch,
            train_loss: Some(2.0 - f64::from(epoch) * 0.5),
            val_accuracy: Some(0.5 + f64::from(epoch) * 0.1),
            ..Default::default()
        };
        store.record_epoch(id, &e).await.unwrap();
    }
    // A diverged value is kept as NULL, not refused.
    store
        .record_epoch(
            id,
            &EpochMetrics {
                epoch: 2,
                train_loss: Some(f64::NAN),
                val_accuracy: Some(0.7),
                ..Default::default()
            },
        )
        .await
        .unwrap();
}

on_both_backends! {
    #[tokio::test]
    async fn finishing_a_finished_or_missing_trial_is_a_typed_error(db) {
        let store = db.open().await;
        let run = search_run(&store, "twice").await;
        let id = store.insert_trial(run, &trial(1)).await.unwrap();
        let result = metrics(0.75, 123_456);
        store.complete_trial(id, &result).await.unwrap();
        match store.complete_trial(id, &result).await {
            Err(StoreError::TrialFinished { id: got, state }) => {
                assert_eq!((got, state.as_str()), (id.0, "complete"))
            }
            other => panic!("expected TrialFinished, got {other:?}"),
        }
        assert!(matches!(
            store.fail_trial(TrialId(999), FailureKind::Error, "x").await,
            Err(StoreError::TrialNotFound(999))
        ));
        assert!(matches!(
            store.record_epoch(TrialId(999), &EpochMetrics::default()).await,
            Err(StoreError::TrialNotFound(999))
        ));
    }
}

on_both_backends! {
    #[tokio::test]
    async fn a_failed_trial_keeps_its_reason(db) {
        let store = db.open().await;
        let run = search_run(&store, "fail").await;
        let id = store.insert_trial(run, &trial(2)).await.unwrap();
        store.claim_trial(run, "w").await.unwrap().unwrap();
        store.fail_trial(id, FailureKind::Diverged, "loss became NaN at epoch 2").await.unwrap();
        let failed = store.trial(id).await.unwrap();
        assert_eq!(failed.state, TrialState::Failed);
        assert_eq!(failed.failure, Some(FailureKind::Diverged));
        assert_eq!(failed.error.as_deref(), Some("loss became NaN at epoch 2"));
        let summary = store.run(run).await.unwrap();
        assert_eq!((summary.trials_failed, summary.trials_done, summary.trials_total), (1, 0, 1));
    }
}

#[tokio::test]
async fn every_failure_kind_round_trips_filters_and_groups_in_plain_sql() {
    let db = TempDb::new();
    let store = db.open().await;
    let run = search_run(&store, "kinds").await;
    let count = FailureKind::ALL.len();
    let ids = store.insert_trials(run, &(0..=count).map(trial).collect::<Vec<_>>()).await.unwrap();
    for (&id, &kind) in ids.iter().zip(FailureKind::ALL) {
        store.fail_trial(id, kind, &format!("failed as {kind}")).await.unwrap();
        let failed = store.trial(id).await.unwrap();
        assert_eq!((failed.state, failed.failure), (TrialState::Failed, Some(kind)));
        assert_eq!(failed.error, Some(format!("failed as {kind}")));
        // A finished trial keeps its first outcome.
        assert!(matches!(
            store.fail_trial(id, FailureKind::Error, "again").await,
            Err(StoreError::TrialFinished { .. })
        ));
        assert_eq!(store.trial(id).await.unwrap().failure, Some(kind));
    }
    store.complete_trial(ids[count], &metrics(0.5, 1000)).await.unwrap();
    assert_eq!(store.trial(ids[count]).await.unwrap().failure, None, "only failed trials have a kind");

    for (&id, &kind) in ids.iter().zip(FailureKind::ALL) {
        let filter = TrialFilter { failure: Some(kind), ..TrialFilter::default() };
        let found: Vec<_> = store.trials(run, &filter).await.unwrap().iter().map(|t| t.id).collect();
        assert_eq!(found, vec![id], "{kind}");
    }
    let mut conn = db.raw().await;
    let grouped: Vec<(Option<String>, i64)> =
        sqlx::query_as("SELECT failure, count(*) FROM trials GROUP BY failure ORDER BY failure")
            .fetch_all(&mut conn)
            .await
            .unwrap();
    let mut expected: Vec<(Option<String>, i64)> =
        FailureKind::ALL.iter().map(|k| (Some(k.as_str().to_owned()), 1)).collect();
    expected.push((None, 1));
    expected.sort();
    assert_eq!(grouped, expected);
}

on_both_backends! {
    #[test]
    fn the_blocking_store_fails_trials_with_their_kind(db) {
        let store = effnas_store::BlockingStore::open(&db.url()).unwrap();
        let run = store.block_on(search_run(store.store(), "blocking"));
        let id = store.block_on(store.store().insert_trial(run, &trial(1))).unwrap();
        store.fail_trial(id, FailureKind::TimeLimit, "time limit of 1 s exceeded").unwrap();
        let failed = store.block_on(store.store().trial(id)).unwrap();
        assert_eq!(failed.failure, Some(FailureKind::TimeLimit));
    }
}

on_both_backends! {
    #[tokio::test]
    async fn an_expired_lease_returns_the_trial_to_pending_and_repeated_deaths_fail_it(db) {
        let store = db.open().await;
        let run = search_run(&store, "expired").await;
        let id = store.insert_trial(run, &trial(3)).await.unwrap();
        let lease = Duration::from_millis(20);
        let dead = store.claim_next(Some(run), "dead-worker", Duration::from_secs(60)).await.unwrap().unwrap();

        let fresh = store.requeue_expired(3).await.unwrap();
        assert!(fresh.pending.is_empty() && fresh.failed.is_empty(), "a running lease is left alone");
        assert!(store.extend_lease(dead.claim(), lease).await.unwrap());

        tokio::time::sleep(Duration::from_millis(40)).await;
        let expired = store.requeue_expired(3).await.unwrap();
        assert_eq!(expired.pending, vec![id]);
        let requeued = store.trial(id).await.unwrap();
        assert_eq!(
            (requeued.state, requeued.worker.as_deref(), requeued.lease_until),
            (TrialState::Pending, None, None)
        );
        assert!(!store.extend_lease(dead.claim(), lease).await.unwrap(), "the dead worker lost the trial");

        // Claimed again by someone else: attempt 2; its earlier curve is gone.
        store
            .record_epoch(id, &EpochMetrics { epoch: 0, train_loss: Some(1.0), ..Default::default() })
            .await
            .unwrap();
        let again = store.claim_next(Some(run), "w2", lease).await.unwrap().unwrap();
        assert_eq!((again.id, again.attempt), (id, 2));
        assert!(store.epochs(id).await.unwrap().is_empty());

        // Dies again, and again: after the third attempt it is failed, not requeued.
        tokio::time::sleep(Duration::from_millis(40)).await;
        assert_eq!(store.requeue_expired(3).await.unwrap().pending, vec![id]);
        store.claim_next(Some(run), "w3", lease).await.unwrap().unwrap();
        tokio::time::sleep(Duration::from_millis(40)).await;
        let gave_up = store.requeue_expired(3).await.unwrap();
        assert_eq!((gave_up.pending.len(), gave_up.failed.clone()), (0, vec![id]));
        let failed = store.trial(id).await.unwrap();
        assert_eq!(
            (failed.state, failed.failure, failed.lease_until),
            (TrialState::Failed, Some(FailureKind::Lost), None)
        );
        assert!(failed.error.unwrap().contains("lease expired"));
    }
}

on_both_backends! {
    #[tokio::test]
    async fn requeue_running_releases_a_runs_trials_for_resume(db) {
        let store = db.open().await;
        let run = search_run(&store, "resume").await;
        let other = search_run(&store, "other").await;
        let ids = store.insert_trials(run, &[trial(1), trial(2), trial(3)]).await.unwrap();
        let other_id = store.insert_trial(other, &trial(4)).await.unwrap();
        store.claim_trial(run, "a").await.unwrap();
        store.claim_trial(run, "b").await.unwrap();
        store.claim_trial(other, "c").await.unwrap();
        assert_eq!(store.requeue_running(run).await.unwrap(), vec![ids[0], ids[1]]);
        assert_eq!(store.trial(other_id).await.unwrap().state, TrialState::Running);
        assert_eq!(store.run(run).await.unwrap().trials_pending, 3);
    }
}

on_both_backends! {
    #[tokio::test]
    async fn a_measured_architecture_is_found_only_under_the_same_proxy_settings_and_can_be_reused(db) {
        let store = db.open().await;
        let first = search_run(&store, "first").await;
        let id = store.insert_trial(first, &trial(5)).await.unwrap();
        let hash = effnas_space::arch_hash(&arch(5));
        assert!(
            store.find_measured(&hash, &trial(5).proxy_key).await.unwrap().is_none(),
            "pending is not measured"
        );
        store.claim_trial(first, "w").await.unwrap();
        store.complete_trial(id, &metrics(0.8, 1000)).await.unwrap();

        let found = store.find_measured(&hash, &trial(5).proxy_key).await.unwrap().expect("measured");
        assert_eq!(found.id, id);
        assert!(store.find_measured(&hash, "cifar10/e5").await.unwrap().is_none());
        assert!(store
            .find_measured(&effnas_space::arch_hash(&arch(6)), &trial(5).proxy_key)
            .await
            .unwrap()
            .is_none());

        let second = search_run(&store, "second").await;
        let copy = store.insert_reused_trial(second, &trial(5), id).await.unwrap();
        let copied = store.trial(copy).await.unwrap();
        assert_eq!(
            (copied.state, copied.accuracy, copied.reused_from, copied.run_id),
            (TrialState::Complete, Some(0.8), Some(id), second)
        );
        // Reuse is refused across architectures or proxy settings.
        assert!(store.insert_reused_trial(second, &trial(6), id).await.is_err());
        let mut other_proxy = trial(5);
        other_proxy.proxy_key = "cifar10/e5".into();
        assert!(store.insert_reused_trial(second, &other_proxy, id).await.is_err());
    }
}

on_both_backends! {
    #[tokio::test]
    async fn runs_list_with_counts_best_reward_and_status(db) {
        let store = db.open().await;
        let mut new = NewRun::new("b0-search", RunKind::Search);
        new.seed = Some(7);
        new.config = serde_json::json!({"strategy": "rl", "trials": 3});
        let run = store.create_run(&new).await.unwrap();
        let empty = store.create_run(&NewRun::new("manual", RunKind::Manual)).await.unwrap();
        let ids = store.insert_trials(run, &[trial(1), trial(2), trial(3), trial(4)]).await.unwrap();
        for (id, acc) in ids.iter().take(2).zip([0.7, 0.9]) {
            store.claim_trial(run, "w").await.unwrap();
            store.complete_trial(*id, &metrics(acc, 4e8 as u64)).await.unwrap();
        }
        store.claim_trial(run, "w").await.unwrap();
        store.fail_trial(ids[2], FailureKind::OutOfMemory, "out of memory").await.unwrap();
        store.set_run_status(run, RunStatus::Complete).await.unwrap();

        let runs = store.runs().await.unwrap();
        assert_eq!(runs.len(), 2);
        let r = &runs[0];
        assert_eq!(
            (r.id, r.name.as_str(), r.kind, r.status, r.seed),
            (run, "b0-search", RunKind::Search, RunStatus::Complete, Some(7))
        );
        assert_eq!((r.trials_done, r.trials_failed, r.trials_pending, r.trials_total), (2, 1, 1, 4));
        assert_eq!(r.best_reward, Some(0.9));
        assert_eq!(r.config["strategy"], "rl");
        assert!(r.finished.is_some() && r.duration_seconds().unwrap() >= 0.0);
        assert_eq!((runs[1].id, runs[1].trials_total, runs[1].best_reward), (empty, 0, None));

        assert_eq!(store.find_run("b0-search").await.unwrap().id, run);
        assert_eq!(store.find_run(&run.to_string()).await.unwrap().id, run);
        assert_eq!(store.latest_run().await.unwrap().unwrap().id, empty);
        assert_eq!(store.runs_of_kind(RunKind::Manual).await.unwrap().len(), 1);
        store.set_run_status(run, RunStatus::Running).await.unwrap();
        assert_eq!(store.run(run).await.unwrap().finished, None, "resuming clears the end time");
    }
}

on_both_backends! {
    #[tokio::test]
    async fn user_text_is_always_a_bound_parameter(db) {
        let store = db.open().await;
        let run = search_run(&store, "safe").await;
        store.insert_trial(run, &trial(1)).await.unwrap();
        for hostile in ["1; DROP TABLE trials", "x' OR '1'='1", "1 OR 1=1", "'; DELETE FROM runs; --"] {
            match store.find_run(hostile).await {
                Err(StoreError::RunNotFound(text)) => assert_eq!(text, hostile),
                other => panic!("{hostile}: expected RunNotFound, got {other:?}"),
            }
        }
        // A hostile name is stored verbatim and found again.
        let odd = store.create_run(&NewRun::new("'; DROP TABLE runs; --", RunKind::Manual)).await.unwrap();
        assert_eq!(store.find_run("'; DROP TABLE runs; --").await.unwrap().id, odd);
        assert_eq!(store.trials(run, &TrialFilter::default()).await.unwrap().len(), 1, "trials table survives");
        assert_eq!(store.runs().await.unwrap().len(), 2);
    }
}

on_both_backends! {
    #[tokio::test]
    async fn filters_sorts_and_limits(db) {
        let store = db.open().await;
        let run = search_run(&store, "filters").await;
        let ids = store.insert_trials(run, &(0..6).map(trial).collect::<Vec<_>>()).await.unwrap();
        let results = [(0.60, 300), (0.90, 500), (0.80, 100), (0.70, 900)];
        for (id, (acc, flops)) in ids.iter().zip(results) {
            store.claim_trial(run, "w").await.unwrap();
            store.complete_trial(*id, &metrics(acc, flops)).await.unwrap();
        }
        store.claim_trial(run, "w").await.unwrap();
        store.fail_trial(ids[4], FailureKind::Error, "boom").await.unwrap();

        let all = store.trials(run, &TrialFilter::default()).await.unwrap();
        assert_eq!(all.iter().map(|t| t.id).collect::<Vec<_>>(), ids);

        let by_accuracy =
            store.trials(run, &TrialFilter { sort: TrialSort::Accuracy, ..Default::default() }).await.unwrap();
        let accuracies: Vec<Option<f64>> = by_accuracy.iter().map(|t| t.accuracy).collect();
        assert_eq!(&accuracies[..4], &[Some(0.9), Some(0.8), Some(0.7), Some(0.6)]);
        assert_eq!(&accuracies[4..], &[None, None], "unmeasured last");

        let top2 = store
            .trials(run, &TrialFilter { sort: TrialSort::Reward, limit: Some(2), ..Default::default() })
            .await
            .unwrap();
        assert_eq!(top2.len(), 2);
        assert!(top2[0].reward >= top2[1].reward);

        let cheap_good = TrialFilter {
            max_flops: Some(500),
            min_accuracy: Some(0.65),
            sort: TrialSort::Flops,
            ..Default::default()
        };
        let got: Vec<u64> = store.trials(run, &cheap_good).await.unwrap().iter().map(|t| t.flops).collect();
        assert_eq!(got, vec![100, 500]);

        let failed = store
            .trials(run, &TrialFilter { state: Some(TrialState::Failed), ..Default::default() })
            .await
            .unwrap();
        assert_eq!(failed.iter().map(|t| t.id).collect::<Vec<_>>(), vec![ids[4]]);
        let pending = store
            .trials(run, &TrialFilter { state: Some(TrialState::Pending), ..Default::default() })
            .await
            .unwrap();
        assert_eq!(pending.len(), 1);
    }
}

on_both_backends! {
    #[tokio::test]
    async fn impossible_values_are_refused_with_the_field_named(db) {
        let store = db.open().await;
        let run = search_run(&store, "values").await;
        let id = store.insert_trial(run, &trial(1)).await.unwrap();
        for (bad, field) in [
            (metrics(93.1, 1), "accuracy"),
            (metrics(f64::NAN, 1), "accuracy"),
            (metrics(0.5, 1).with_loss(f64::INFINITY), "loss"),
        ] {
            match store.complete_trial(id, &bad).await {
                Err(StoreError::InvalidValue { field: got, .. }) => assert_eq!(got, field),
                other => panic!("expected InvalidValue for {field}, got {other:?}"),
            }
        }
        assert_eq!(store.trial(id).await.unwrap().state, TrialState::Pending, "nothing was written");
        let mut empty_key = trial(1);
        empty_key.proxy_key = " ".into();
        assert!(matches!(store.insert_trial(run, &empty_key).await, Err(StoreError::InvalidValue { .. })));
        assert!(matches!(
            store.insert_trial(effnas_store::RunId(42), &trial(1)).await,
            Err(StoreError::RunNotFound(_))
        ));
        assert!(matches!(
            store.create_run(&NewRun::new("  ", RunKind::Search)).await,
            Err(StoreError::InvalidValue { .. })
        ));
        let mut huge_seed = NewRun::new("seed", RunKind::Search);
        huge_seed.seed = Some(u64::MAX);
        assert!(matches!(store.create_run(&huge_seed).await, Err(StoreError::InvalidValue { .. })));
    }
}

trait WithLoss {
    fn with_loss(self, loss: f64) -> Self;
}

impl WithLoss for effnas_store::TrialMetrics {
    fn with_loss(mut self, loss: f64) -> Self {
        self.loss = loss;
        self
    }
}

on_both_backends! {
    #[tokio::test]
    async fn a_manual_training_is_recorded_complete_in_one_call(db) {
        let store = db.open().await;
        let run = store.create_run(&NewRun::new("effnas train b0", RunKind::Manual)).await.unwrap();
        let curve = [
            EpochMetrics { epoch: 0, val_accuracy: Some(0.5), ..Default::default() },
            EpochMetrics { epoch: 1, val_accuracy: Some(0.6), ..Default::default() },
        ];
        let id = store.insert_completed_trial(run, &trial(0), &metrics(0.6, 1000), &curve).await.unwrap();
        let t = store.trial(id).await.unwrap();
        assert_eq!((t.state, t.accuracy), (TrialState::Complete, Some(0.6)));
        assert_eq!(store.epochs(id).await.unwrap().len(), 2);
        // A bad metric leaves no half-written trial behind.
        assert!(store.insert_completed_trial(run, &trial(1), &metrics(2.0, 1), &curve).await.is_err());
        assert_eq!(store.run(run).await.unwrap().trials_total, 1);
    }
}

on_both_backends! {
    #[tokio::test]
    async fn checkpoints_round_trip_and_the_highest_step_is_the_latest(db) {
        let store = db.open().await;
        let run = store.create_run(&NewRun::new("compound", RunKind::Compound)).await.unwrap();
        assert!(store.latest_checkpoint(run).await.unwrap().is_none());
        store.save_checkpoint(run, 1, &serde_json::json!({"step": 1}), None).await.unwrap();
        store
            .save_checkpoint(run, 3, &serde_json::json!({"step": 3, "baseline": 0.5}), Some(&[1, 2, 3]))
            .await
            .unwrap();
        store.save_checkpoint(run, 2, &serde_json::json!({"step": 2}), None).await.unwrap();
        let latest = store.latest_checkpoint(run).await.unwrap().unwrap();
        assert_eq!(
            (latest.step, latest.state["baseline"].as_f64(), latest.blob),
            (3, Some(0.5), Some(vec![1, 2, 3]))
        );
        store.save_checkpoint(run, 3, &serde_json::json!({"step": 3, "baseline": 0.6}), None).await.unwrap();
        assert_eq!(store.latest_checkpoint(run).await.unwrap().unwrap().state["baseline"].as_f64(), Some(0.6));
    }
}

on_both_backends! {
    #[tokio::test]
    async fn compound_points_and_scaled_models_round_trip(db) {
        let store = db.open().await;
        let run = store.create_run(&NewRun::new("compound", RunKind::Compound)).await.unwrap();
        let trial_id = store.insert_trial(run, &trial(0)).await.unwrap();
        store.claim_trial(run, "w").await.unwrap();
        store.complete_trial(trial_id, &metrics(0.7, 800)).await.unwrap();
        store
            .add_compound_point(
                run,
                &NewCompoundPoint { alpha: 1.2, beta: 1.1, gamma: 1.15, phi: 1.0, trial_id: Some(trial_id) },
            )
            .await
            .unwrap();
        store
            .add_compound_point(
                run,
                &NewCompoundPoint { alpha: 1.4, beta: 1.0, gamma: 1.2, phi: 1.0, trial_id: None },
            )
            .await
            .unwrap();
        let grid = store.compound_points(run).await.unwrap();
        assert_eq!(grid.len(), 2);
        assert!((grid[0].flops_factor - 1.2 * 1.21 * 1.3225).abs() < 1e-12);
        assert_eq!((grid[0].accuracy, grid[0].trial_state), (Some(0.7), Some(TrialState::Complete)));
        assert_eq!((grid[1].trial_id, grid[1].accuracy), (None, None));

        let missing = effnas_store::RunId(999);
        assert!(matches!(
            store.save_checkpoint(missing, 1, &serde_json::json!({}), None).await,
            Err(StoreError::RunNotFound(_))
        ));
        let point = NewCompoundPoint { alpha: 1.0, beta: 1.0, gamma: 1.0, phi: 1.0, trial_id: None };
        assert!(matches!(store.add_compound_point(missing, &point).await, Err(StoreError::RunNotFound(_))));

        let b1 = effnas_space::presets::preset("b1").unwrap();
        let cost = effnas_space::cost(&b1);
        let model = NewScaledModel {
            name: "b1".into(),
            phi: 1.0,
            width: 1.0,
            depth: 1.1,
            resolution_multiplier: 240.0 / 224.0,
            arch: b1.clone(),
        };
        store.add_scaled_model(run, &model).await.unwrap();
        let scaled = store.scaled_models(run).await.unwrap();
        assert_eq!((scaled[0].params, scaled[0].flops, scaled[0].resolution), (cost.params, cost.macs, 240));
        assert_eq!(scaled[0].blocks, b1.block_strings());
    }
}

#[tokio::test]
async fn the_in_memory_store_works_for_dry_runs() {
    let store = effnas_store::Store::open_in_memory().await.unwrap();
    let run = search_run(&store, "mem").await;
    store.insert_trials(run, &[trial(1), trial(2)]).await.unwrap();
    assert_eq!(store.run(run).await.unwrap().trials_total, 2);
}
