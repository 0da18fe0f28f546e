//! `Store::copy_runs`: runs moved between SQLite and PostgreSQL, every row of every table, ids
//! kept into an empty database or renumbered (references rewritten) when appending.
#![allow(clippy::unwrap_used)]

#[macro_use]
mod common;

use std::time::Duration;

use common::{metrics, search_run, trial, TempDb};
use effnas_store::{
    CopyOptions, EpochMetrics, FailureKind, NewCompoundPoint, NewRun, NewScaledModel, RunId, RunKind, Store,
    StoreError,
};

/// A search run with a trial in every state (a curve, a lease, a failure, a reused result, a
/// parent), checkpoints with a blob; and a compound run with grid points and scaled models.
async fn populate(store: &Store) -> (RunId, RunId) {
    let search = search_run(store, "search").await;
    let ids = store.insert_trials(search, &(0..6).map(trial).collect::<Vec<_>>()).await.unwrap();
    let done = store.claim_next(Some(search), "w1", Duration::from_secs(60)).await.unwrap().unwrap();
    let curve: Vec<EpochMetrics> = (0..3)
        .map(|e| EpochMetrics {
            epoch: e,
            val_accuracy: Some(0.5 + f64::from(e) / 10.0),
            train_loss: Some(1.0 / 3.0),
            ..Default::default()
        })
        .collect();
    store.complete_claim(done.claim(), &metrics(0.71, 300_000_000), &curve).await.unwrap();
    let failed = store.claim_next(Some(search), "w2", Duration::from_secs(60)).await.unwrap().unwrap();
    store.fail_claim(failed.claim(), FailureKind::Diverged, "loss is NaN").await.unwrap();
    let running = store.claim_next(Some(search), "w3", Duration::from_secs(60)).await.unwrap().unwrap();
    store.record_claim_epoch(running.claim(), &curve[0]).await.unwrap();
    store.insert_reused_trial(search, &trial(0), ids[0]).await.unwrap();
    store.insert_trial(search, &trial(9).with_parent(ids[1]).under_setting(2)).await.unwrap();
    store
        .save_checkpoint(search, 1, &serde_json::json!({"population": [1, 2]}), Some(&[0, 1, 2, 255]))
        .await
        .unwrap();
    store.save_checkpoint(search, 2, &serde_json::json!({"population": [3]}), None).await.unwrap();

    let compound = store.create_run(&NewRun::new("grid", RunKind::Compound)).await.unwrap();
    let point_trial = store.insert_trial(compound, &trial(20)).await.unwrap();
    let point =
        NewCompoundPoint { alpha: 1.2, beta: 1.1, gamma: 1.15, phi: 1.0, trial_id: Some(point_trial) };
    store.add_compound_point(compound, &point).await.unwrap();
    store.add_compound_point(compound, &NewCompoundPoint { trial_id: None, ..point }).await.unwrap();
    let scaled = NewScaledModel {
        name: "b1".into(),
        phi: 1.0,
        width: 1.0,
        depth: 1.1,
        resolution_multiplier: 1.15,
        arch: common::arch(3),
    };
    store.add_scaled_model(compound, &scaled).await.unwrap();
    store.set_run_status(compound, effnas_store::RunStatus::Complete).await.unwrap();
    (search, compound)
}

/// SQLite → PostgreSQL → SQLite: every row of both runs is the same in all three, ids
/// included; and the copies go on working (new rows get fresh ids).
#[tokio::test]
async fn runs_copied_to_postgres_and_back_keep_every_row_and_id() {
    let (first, server, back) = (TempDb::new(), TempDb::postgres().await, TempDb::new());
    let (source, pg, last) = (first.open().await, server.open().await, back.open().await);
    let (search, compound) = populate(&source).await;

    let mut seen = Vec::new();
    let report = source.copy_runs(&pg, &CopyOptions::default(), |run| seen.push(run.from)).await.unwrap();
    assert!(report.ids_kept);
    assert_eq!(seen, vec![search, compound]);
    assert_eq!((report.runs[0].trials, report.runs[0].epochs, report.runs[0].checkpoints), (6 + 2, 4, 2));
    assert_eq!((report.runs[1].compound_points, report.runs[1].scaled_models), (2, 1));
    assert_eq!(report.dropped_references, 0);
    let report = pg.copy_runs(&last, &CopyOptions::default(), |_| {}).await.unwrap();
    assert_eq!(
        report.runs.iter().map(|r| (r.from, r.to)).collect::<Vec<_>>(),
        vec![(search, search), (compound, compound)]
    );

    for run in [search, compound] {
        let original = source.dump_run(run).await.unwrap();
        assert!(original.len() >= 5, "{original:?}");
        assert_eq!(pg.dump_run(run).await.unwrap(), original, "run {run} on PostgreSQL");
        assert_eq!(last.dump_run(run).await.unwrap(), original, "run {run} back on SQLite");
    }
    // The copied queue still works: the pending trials are claimed, and new rows get ids past
    // the copied ones on both backends.
    for store in [&pg, &last] {
        let max_trial =
            store.trials(search, &Default::default()).await.unwrap().iter().map(|t| t.id).max().unwrap();
        let claimed = store.claim_next(Some(search), "w", Duration::from_secs(60)).await.unwrap().unwrap();
        assert_eq!(claimed.attempt, 1);
        let new_run = store.create_run(&NewRun::new("after", RunKind::Search)).await.unwrap();
        assert!(new_run > compound);
        assert!(store.insert_trial(new_run, &trial(40)).await.unwrap() > max_trial);
    }
}

/// A destination that holds runs is refused unless appending; appended runs get new ids, with
/// every reference between copied rows rewritten, and leave the runs there alone.
#[tokio::test]
async fn appending_renumbers_and_rewrites_references() {
    let (first, server) = (TempDb::new(), TempDb::postgres().await);
    let (source, pg) = (first.open().await, server.open().await);
    let (search, _) = populate(&source).await;
    let resident = search_run(&pg, "already-here").await;
    pg.insert_trials(resident, &[trial(30), trial(31), trial(32)]).await.unwrap();

    match source.copy_runs(&pg, &CopyOptions::default(), |_| {}).await {
        Err(e @ StoreError::InvalidValue { .. }) => assert!(e.to_string().contains("--append"), "{e}"),
        other => panic!("expected a refusal, got {other:?}"),
    }
    assert_eq!(pg.runs().await.unwrap().len(), 1, "nothing copied");

    let options = CopyOptions { runs: vec![search], append: true };
    let report = source.copy_runs(&pg, &options, |_| {}).await.unwrap();
    assert!(!report.ids_kept);
    let copied = report.runs[0].to;
    assert_ne!(copied, search);
    let (old, new) = (
        source.trials(search, &Default::default()).await.unwrap(),
        pg.trials(copied, &Default::default()).await.unwrap(),
    );
    assert_eq!(old.len(), new.len());
    let renumbered = |id| new[old.iter().position(|t| t.id == id).unwrap()].id;
    for (o, n) in old.iter().zip(&new) {
        assert_eq!(
            (n.run_id, &n.arch_hash, n.state, n.attempts, &n.worker),
            (copied, &o.arch_hash, o.state, o.attempts, &o.worker)
        );
        assert_eq!(
            (&n.created, &n.finished, n.accuracy, n.failure, &n.error),
            (&o.created, &o.finished, o.accuracy, o.failure, &o.error)
        );
        assert_eq!(n.reused_from, o.reused_from.map(renumbered), "reused_from follows the copy");
        assert_eq!(n.parent, o.parent.map(renumbered), "parent_id follows the copy");
        assert_eq!(pg.epochs(n.id).await.unwrap(), source.epochs(o.id).await.unwrap());
    }
    assert_eq!(pg.trials(resident, &Default::default()).await.unwrap().len(), 3);
}

/// Copying only some runs: a reference into a run left behind becomes NULL, and is counted.
#[tokio::test]
async fn a_reference_to_a_run_left_behind_becomes_null() {
    let (first, second) = (TempDb::new(), TempDb::new());
    let (source, to) = (first.open().await, second.open().await);
    let a = search_run(&source, "a").await;
    let measured = store_complete(&source, a).await;
    let b = search_run(&source, "b").await;
    let copy = source.insert_reused_trial(b, &trial(0), measured).await.unwrap();
    let report = source.copy_runs(&to, &CopyOptions { runs: vec![b], append: false }, |_| {}).await.unwrap();
    assert_eq!(report.dropped_references, 1);
    assert_eq!(to.trial(copy).await.unwrap().reused_from, None);
    assert_eq!(to.runs().await.unwrap().iter().map(|r| r.id).collect::<Vec<_>>(), vec![b]);
    let missing = source
        .copy_runs(&TempDb::new().open().await, &CopyOptions { runs: vec![RunId(99)], append: false }, |_| {})
        .await;
    assert!(matches!(missing, Err(StoreError::RunNotFound(_))), "{missing:?}");
    assert!(source.copy_runs(&source, &CopyOptions::default(), |_| {}).await.is_err(), "into itself");
}

async fn store_complete(store: &Store, run: RunId) -> effnas_store::TrialId {
    let id = store.insert_trial(run, &trial(0)).await.unwrap();
    store.complete_trial(id, &metrics(0.6, 1_000)).await.unwrap();
    id
}

/// The copy carries every column of every table of the schema (a column added by a migration
/// must be added to the copy too).
#[tokio::test]
async fn the_copy_carries_every_column_of_the_schema() {
    use sqlx::Connection;
    let db = TempDb::new();
    db.open().await.close().await;
    let mut conn = sqlx::SqliteConnection::connect(&format!("sqlite://{}", db.url())).await.unwrap();
    let tables: Vec<String> = sqlx::query_scalar(
        "SELECT name FROM sqlite_master WHERE type = 'table' AND name NOT LIKE 'sqlite%' AND name <> '_sqlx_migrations' ORDER BY name",
    )
    .fetch_all(&mut conn)
    .await
    .unwrap();
    let mut copied = effnas_store::copied_columns();
    copied.sort();
    assert_eq!(copied.iter().map(|(t, _)| t.to_string()).collect::<Vec<_>>(), tables);
    for (table, columns) in copied {
        let mut schema: Vec<String> = sqlx::query_scalar("SELECT name FROM pragma_table_info($1)")
            .bind(table)
            .fetch_all(&mut conn)
            .await
            .unwrap();
        let mut columns: Vec<String> = columns.into_iter().map(str::to_owned).collect();
        schema.sort();
        columns.sort();
        assert_eq!(columns, schema, "table {table}");
    }
}
