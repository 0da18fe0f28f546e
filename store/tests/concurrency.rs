//! Several processes and threads on one SQLite file: nothing lost, nothing claimed twice,
//! and a worker killed mid-trial gives its trial back.
//!
//! The child processes are this test binary run again on one `#[ignore]`d test (`child`),
//! steered by environment variables, so no helper binary is needed.
#![allow(clippy::unwrap_used)]

#[macro_use]
mod common;

use std::collections::HashSet;
use std::process::{Command, Stdio};
use std::time::Duration;

use common::{metrics, search_run, trial, TempDb};
use effnas_store::{NewRun, RunKind, Store, TrialFilter, TrialId, TrialState};

const ROLE: &str = "EFFNAS_STORE_TEST_ROLE";
const DB: &str = "EFFNAS_STORE_TEST_DB";
const INDEX: &str = "EFFNAS_STORE_TEST_INDEX";
const TRIALS_PER_WRITER: usize = 40;
/// The lease of the worker that is killed: long enough to outlast its start-up.
const DOOMED_LEASE: Duration = Duration::from_secs(2);

/// Runs this test binary as a child in `role`.
fn spawn_child(role: &str, db: &TempDb, index: usize) -> std::process::Child {
    Command::new(std::env::current_exe().expect("test binary"))
        .args(["--exact", "child", "--ignored", "--nocapture", "--test-threads=1"])
        .env(ROLE, role)
        .env(DB, db.url())
        .env(INDEX, index.to_string())
        .stdout(Stdio::null())
        .stderr(Stdio::piped())
        .spawn()
        .expect("spawn child")
}

/// The child side; does nothing when run directly.
#[test]
#[ignore = "run by the other tests as a child process"]
fn child() {
    let Ok(role) = std::env::var(ROLE) else { return };
    let db = std::env::var(DB).expect("db path");
    let index: usize = std::env::var(INDEX).expect("index").parse().expect("number");
    let runtime = tokio::runtime::Runtime::new().expect("runtime");
    runtime.block_on(async {
        // Every writer opens the brand-new file at the same moment: creation and migration race.
        let store = Store::open(&db).await.expect("child opens");
        match role.as_str() {
            "writer" => {
                let run = store
                    .create_run(&NewRun::new(format!("writer-{index}"), RunKind::Search))
                    .await
                    .expect("run");
                for i in 0..TRIALS_PER_WRITER {
                    // One transaction per trial, so the writers interleave.
                    let id = store.insert_trial(run, &trial(index * 1000 + i)).await.expect("insert");
                    if i % 2 == 0 {
                        store.complete_trial(id, &metrics(0.5, 1000 + i as u64)).await.expect("complete");
                    }
                }
            }
            "doomed" => {
                let run = store.find_run("doomed-run").await.expect("run");
                let claimed = store
                    .claim_next(Some(run.id), "doomed-worker", DOOMED_LEASE)
                    .await
                    .expect("claim")
                    .expect("pending trial");
                assert!(store.extend_lease(claimed.claim(), DOOMED_LEASE).await.expect("extend"));
                // Killed between claim and result: no destructors, no goodbye.
                std::process::abort();
            }
            other => panic!("unknown role {other}"),
        }
    });
}

on_both_backends! {
    #[test]
    fn four_processes_writing_at_once_lose_nothing(db) {
        let children: Vec<_> = (0..4).map(|i| spawn_child("writer", &db, i)).collect();
        for (i, child) in children.into_iter().enumerate() {
            let output = child.wait_with_output().expect("wait");
            assert!(output.status.success(), "writer {i} failed: {}", String::from_utf8_lossy(&output.stderr));
        }
        let runtime = tokio::runtime::Runtime::new().unwrap();
        runtime.block_on(async {
            let store = db.open().await;
            let runs = store.runs().await.unwrap();
            assert_eq!(runs.len(), 4);
            let mut hashes = HashSet::new();
            for run in &runs {
                assert_eq!(
                    (run.trials_total, run.trials_done, run.trials_pending),
                    (TRIALS_PER_WRITER as u64, 20, 20),
                    "{}",
                    run.name
                );
                for t in store.trials(run.id, &TrialFilter::default()).await.unwrap() {
                    assert!(hashes.insert(t.arch_hash.clone()), "every architecture once");
                }
            }
            assert_eq!(hashes.len(), 4 * TRIALS_PER_WRITER);
        });
    }
}

on_both_backends! {
    #[test]
    fn a_worker_killed_between_claim_and_result_gives_the_trial_back_when_its_lease_expires(db) {
        let runtime = tokio::runtime::Runtime::new().unwrap();
        let (store, run, id) = runtime.block_on(async {
            let store = db.open().await;
            let run = store.create_run(&NewRun::new("doomed-run", RunKind::Search)).await.unwrap();
            let id = store.insert_trial(run, &trial(1)).await.unwrap();
            (store, run, id)
        });
        let output = spawn_child("doomed", &db, 0).wait_with_output().unwrap();
        assert!(!output.status.success(), "the child was meant to die");

        runtime.block_on(async {
            let orphan = store.trial(id).await.unwrap();
            assert_eq!((orphan.state, orphan.worker.as_deref()), (TrialState::Running, Some("doomed-worker")));
            let until =
                orphan.lease_until.as_deref().and_then(effnas_store::time::parse_millis).expect("a lease");
            // (Unless the child took most of its lease to start, on a machine that busy.)
            if until - effnas_store::time::now_millis() > 500 {
                assert!(store.requeue_expired(3).await.unwrap().pending.is_empty(), "not expired yet");
            }
            let left = until - effnas_store::time::now_millis() + 50;
            tokio::time::sleep(Duration::from_millis(left.max(0) as u64)).await;
            assert_eq!(store.requeue_expired(3).await.unwrap().pending, vec![id]);
            let again = store.claim_trial(run, "survivor").await.unwrap().expect("claimable again");
            assert_eq!((again.id, again.attempt), (id, 2));
            store.complete_trial(id, &metrics(0.9, 10)).await.unwrap();
            assert_eq!(store.run(run).await.unwrap().trials_done, 1);
        });
    }
}

on_both_backends! {
    #[test]
    fn four_workers_with_their_own_connections_never_claim_the_same_trial(db) {
        const TRIALS: usize = 120;
        let runtime = tokio::runtime::Runtime::new().unwrap();
        let run = runtime.block_on(async {
            let store = db.open().await;
            let run = search_run(&store, "claims").await;
            store.insert_trials(run, &(0..TRIALS).map(trial).collect::<Vec<_>>()).await.unwrap();
            run
        });
        // Plain threads, as the trainers are, each with its own store (pool and connections).
        let workers: Vec<_> = (0..4)
            .map(|w| {
                let url = db.url();
                std::thread::spawn(move || {
                    let store = effnas_store::BlockingStore::open(&url).expect("open");
                    let name = format!("worker-{w}");
                    let mut mine = Vec::new();
                    while let Some(claimed) = store.claim_trial(run, &name).expect("claim") {
                        store.complete_trial(claimed.id, &metrics(0.5, claimed.id.0 as u64)).expect("complete");
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
            let trials = store.trials(run, &TrialFilter::default()).await.unwrap();
            assert!(trials.iter().all(|t| t.state == TrialState::Complete && t.attempts == 1));
        });
    }
}
