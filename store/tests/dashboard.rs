//! The watcher's queries (`effnas serve`): pages of trials sorted and filtered on whitelisted
//! columns, the change token, reclaimed counts, and the read-only opening that never writes.
#![allow(clippy::unwrap_used)]

#[macro_use]
mod common;

use common::{metrics, search_run, trial, TempDb};
use effnas_store::{
    ColumnRange, FailureKind, OpenOptions, Store, StoreError, TrialColumn, TrialQuery, TrialState,
};

/// A run of 30 trials: 20 complete (accuracy rising with the index, cost falling), 5 failed,
/// 5 pending.
async fn seeded(store: &Store) -> effnas_store::RunId {
    let run = search_run(store, "watched").await;
    for i in 0..20 {
        let m = metrics(0.5 + i as f64 / 100.0, 400_000_000 - i as u64 * 1_000_000);
        store.insert_completed_trial(run, &trial(i), &m, &[]).await.unwrap();
    }
    for i in 20..25 {
        store.insert_failed_trial(run, &trial(i), FailureKind::Rejected, "too big").await.unwrap();
    }
    for i in 25..30 {
        store.insert_trial(run, &trial(i)).await.unwrap();
    }
    run
}

on_both_backends! {
    #[tokio::test]
    async fn pages_sort_filter_and_count_on_the_server(db) {
        let store = db.open().await;
        let run = seeded(&store).await;

        let all = store.trial_page(run, &TrialQuery { limit: 7, ..TrialQuery::default() }).await.unwrap();
        assert_eq!(all.total, 30);
        assert_eq!(all.trials.len(), 7);
        let ids: Vec<i64> = all.trials.iter().map(|t| t.id.0).collect();
        assert!(ids.windows(2).all(|w| w[0] < w[1]), "{ids:?}");

        // Best accuracy first; trials without one (failed, pending) come last whatever the order.
        let query = TrialQuery { sort: TrialColumn::Accuracy, descending: true, limit: 30, ..TrialQuery::default() };
        let by_accuracy = store.trial_page(run, &query).await.unwrap();
        let accuracies: Vec<Option<f64>> = by_accuracy.trials.iter().map(|t| t.accuracy).collect();
        assert_eq!(accuracies[0], Some(0.69));
        assert!(accuracies[..20].windows(2).all(|w| w[0] >= w[1]), "{accuracies:?}");
        assert!(accuracies[20..].iter().all(Option::is_none));
        let ascending = TrialQuery { descending: false, ..query.clone() };
        let first = store.trial_page(run, &ascending).await.unwrap().trials[0].accuracy;
        assert_eq!(first, Some(0.5));

        // Paging: the second page of 10 by accuracy is trials 11..20 of the order.
        let second = TrialQuery { offset: 10, limit: 10, ..query.clone() };
        let page = store.trial_page(run, &second).await.unwrap();
        assert_eq!(page.total, 30);
        assert_eq!(page.trials.iter().map(|t| t.id).collect::<Vec<_>>(),
                   by_accuracy.trials[10..20].iter().map(|t| t.id).collect::<Vec<_>>());

        // State and range filters, on a real column and an integer one.
        let failed = TrialQuery { state: Some(TrialState::Failed), ..TrialQuery::default() };
        let failed = store.trial_page(run, &failed).await.unwrap();
        assert_eq!(failed.total, 5);
        assert!(failed.trials.iter().all(|t| t.failure == Some(FailureKind::Rejected)));
        let ranged = TrialQuery {
            ranges: vec![
                ColumnRange { column: TrialColumn::Accuracy, min: Some(0.6), max: None },
                ColumnRange { column: TrialColumn::Flops, min: None, max: Some(388_000_000.0) },
            ],
            ..TrialQuery::default()
        };
        let ranged = store.trial_page(run, &ranged).await.unwrap();
        // Accuracy ≥ 0.6: i ≥ 10; flops ≤ 388M: i ≥ 12.
        assert_eq!(ranged.total, 8);
        assert!(ranged.trials.iter().all(|t| t.accuracy.unwrap() >= 0.6 && t.flops <= 388_000_000));

        // Every whitelisted column sorts on both backends.
        for &column in TrialColumn::ALL {
            for descending in [false, true] {
                let q = TrialQuery { sort: column, descending, limit: 30, ..TrialQuery::default() };
                assert_eq!(store.trial_page(run, &q).await.unwrap().trials.len(), 30, "{column:?}");
            }
        }
    }
}

on_both_backends! {
    #[tokio::test]
    async fn bad_pages_are_refused(db) {
        let store = db.open().await;
        let run = seeded(&store).await;
        for query in [
            TrialQuery { limit: 0, ..TrialQuery::default() },
            TrialQuery { limit: TrialQuery::MAX_LIMIT + 1, ..TrialQuery::default() },
            TrialQuery {
                ranges: vec![ColumnRange { column: TrialColumn::State, min: Some(1.0), max: None }],
                ..TrialQuery::default()
            },
        ] {
            match store.trial_page(run, &query).await {
                Err(StoreError::InvalidValue { .. }) => {}
                other => panic!("{query:?}: expected InvalidValue, got {other:?}"),
            }
        }
    }
}

on_both_backends! {
    #[tokio::test]
    async fn the_change_token_moves_with_every_change_a_page_shows(db) {
        let store = db.open().await;
        let first = store.change_token().await.unwrap();
        assert_eq!(store.change_token().await.unwrap(), first, "nothing changed");
        let run = search_run(&store, "watched").await;
        let after_run = store.change_token().await.unwrap();
        assert_ne!(after_run, first);
        let id = store.insert_trial(run, &trial(1)).await.unwrap();
        let queued = store.change_token().await.unwrap();
        assert_ne!(queued, after_run);
        let claimed = store.claim_trial(run, "w").await.unwrap().unwrap();
        let running = store.change_token().await.unwrap();
        assert_ne!(running, queued);
        store.record_epoch(claimed.id, &effnas_store::EpochMetrics { epoch: 0, ..Default::default() }).await.unwrap();
        let epoch = store.change_token().await.unwrap();
        assert_ne!(epoch, running);
        store.complete_trial(id, &metrics(0.7, 300_000_000)).await.unwrap();
        let done = store.change_token().await.unwrap();
        assert_ne!(done, epoch);
        store.set_run_status(run, effnas_store::RunStatus::Complete).await.unwrap();
        assert_ne!(store.change_token().await.unwrap(), done);
    }
}

on_both_backends! {
    #[tokio::test]
    async fn trials_claimed_again_count_as_reclaimed(db) {
        let store = db.open().await;
        let run = search_run(&store, "watched").await;
        store.insert_trials(run, &[trial(1), trial(2)]).await.unwrap();
        store.claim_trial(run, "w").await.unwrap().unwrap();
        assert!(store.reclaimed_counts().await.unwrap().is_empty());
        // The process died with it: a resume takes it back, and the next claim is its second.
        store.recover_running(run, 3).await.unwrap();
        store.claim_trial(run, "w").await.unwrap().unwrap();
        assert_eq!(store.reclaimed_counts().await.unwrap(), vec![(run, 1)]);
    }
}

on_both_backends! {
    #[tokio::test]
    async fn a_read_only_store_reads_and_refuses_every_write(db) {
        let writer = db.open().await;
        let run = seeded(&writer).await;
        let reader = Store::open_with(&db.url(), &OpenOptions::read_only()).await.unwrap();
        assert!(reader.is_read_only());
        assert_eq!(reader.run(run).await.unwrap().trials_total, 30);
        assert!(reader.insert_trial(run, &trial(99)).await.is_err(), "a write through a read-only store");
        // The writer goes on while the reader is open.
        writer.insert_trial(run, &trial(100)).await.unwrap();
        assert_eq!(reader.run(run).await.unwrap().trials_total, 31);
    }
}

#[tokio::test]
async fn a_read_only_open_of_a_missing_file_is_an_error_and_creates_nothing() {
    let db = TempDb::new();
    match Store::open_with(&db.url(), &OpenOptions::read_only()).await {
        Err(StoreError::Missing { location }) => assert!(location.contains("effnas.db"), "{location}"),
        other => panic!("expected Missing, got {other:?}"),
    }
    assert!(!db.path.exists());
}

#[tokio::test]
async fn a_read_only_sqlite_store_leaves_the_file_as_it_was() {
    let db = TempDb::new();
    let writer = db.open().await;
    seeded(&writer).await;
    writer.close().await;
    // Everything into the main file first, so that only the reader could change it now.
    let mut raw = db.raw().await;
    sqlx::query("PRAGMA wal_checkpoint(TRUNCATE)").execute(&mut raw).await.unwrap();
    sqlx::Connection::close(raw).await.unwrap();
    let before = std::fs::read(&db.path).unwrap();
    let reader = Store::open_with(&db.url(), &OpenOptions::read_only()).await.unwrap();
    for _ in 0..20 {
        let run = reader.latest_run().await.unwrap().unwrap();
        reader.trial_page(run.id, &TrialQuery::default()).await.unwrap();
        reader.change_token().await.unwrap();
    }
    reader.close().await;
    assert!(std::fs::read(&db.path).unwrap() == before, "the database file changed");
}
