//! The promotion rule of asynchronous successive halving on hand-made rungs: the best ⌊n/η⌋ of
//! each rung's finished trials go on, once; failures rank last; nothing waits for a rung to fill.
#![allow(clippy::unwrap_used)]

use effnas_search::asha::{promotable, rung_images, Rungs};
use effnas_space::SearchSpace;
use effnas_store::{
    BlockingStore, FailureKind, NewRun, NewTrial, RunId, RunKind, TrialFilter, TrialId, TrialMetrics,
};
use rand::SeedableRng;

fn run(store: &BlockingStore) -> RunId {
    store.block_on(store.store().create_run(&NewRun::new("asha", RunKind::Search))).unwrap()
}

/// A finished rung-`rung` trial with `reward` (`None`: failed), promoted from `parent`.
fn finished(
    store: &BlockingStore,
    run: RunId,
    rung: u32,
    reward: Option<f64>,
    parent: Option<TrialId>,
) -> TrialId {
    let space = SearchSpace::default_space();
    let mut rng =
        rand_chacha::ChaCha8Rng::seed_from_u64(rung as u64 * 100 + reward.map_or(99, |r| (r * 100.0) as u64));
    let arch = space.decode(&space.sample_tokens(&mut rng)).unwrap();
    let mut trial = NewTrial::new(arch, format!("rung{rung}")).under_setting(rung);
    if let Some(parent) = parent {
        trial = trial.with_parent(parent);
    }
    let id = store.insert_trial(run, &trial).unwrap();
    match reward {
        Some(reward) => {
            let metrics =
                TrialMetrics { accuracy: reward, reward, params: 1, flops: 1, ..TrialMetrics::default() };
            store.complete_trial(id, &metrics).unwrap();
        }
        None => store.fail_trial(id, FailureKind::Diverged, "nan").unwrap(),
    }
    id
}

#[test]
fn the_best_third_of_each_rung_is_promoted_once_and_failures_rank_last() {
    let store = BlockingStore::open(":memory:").unwrap();
    let run = run(&store);
    // Rung 0: two results, η = 3: ⌊2/3⌋ = 0, nobody goes on yet (and nobody waits either).
    let a = finished(&store, run, 0, Some(0.50), None);
    let b = finished(&store, run, 0, Some(0.70), None);
    let all = |s: &BlockingStore| s.trials(run, &TrialFilter::default()).unwrap();
    assert!(promotable(&all(&store), 3, 3).is_empty());
    // A third result (a failure, ranked last): ⌊3/3⌋ = 1, the best goes on.
    finished(&store, run, 0, None, None);
    assert_eq!(promotable(&all(&store), 3, 3), vec![(b, 1)]);
    // Once promoted (its rung-1 trial exists, even unfinished) it is not promoted again.
    let space = SearchSpace::default_space();
    let promoted = NewTrial::new(space.decode(&vec![0; space.num_tokens()]).unwrap(), "rung1")
        .under_setting(1)
        .with_parent(b);
    store.insert_trial(run, &promoted).unwrap();
    assert!(promotable(&all(&store), 3, 3).is_empty());
    // Three more at rung 0: ⌊6/3⌋ = 2, the new best (0.9) joins; a (0.5) stays behind.
    let c = finished(&store, run, 0, Some(0.90), None);
    finished(&store, run, 0, Some(0.40), None);
    finished(&store, run, 0, Some(0.45), None);
    assert_eq!(promotable(&all(&store), 3, 3), vec![(c, 1)]);
    assert!(!promotable(&all(&store), 3, 3).iter().any(|(t, _)| *t == a));
    // The top rung promotes nowhere; finalists (settings at or above the rungs) take no part.
    let top: Vec<TrialId> =
        (0..3).map(|i| finished(&store, run, 2, Some(0.8 + f64::from(i) / 100.0), None)).collect();
    finished(&store, run, 5, Some(0.99), Some(top[0]));
    let promotions = promotable(&all(&store), 3, 3);
    assert!(promotions.iter().all(|(_, rung)| *rung <= 2), "{promotions:?}");
}

#[test]
fn rungs_grow_the_image_budget_by_eta_and_name_their_keys() {
    assert_eq!(
        (rung_images(2000, 3, 0), rung_images(2000, 3, 1), rung_images(2000, 3, 2)),
        (2000, 6000, 18000)
    );
    assert_eq!(rung_images(usize::MAX / 2, 8, 6), usize::MAX, "saturates, never wraps");
    let rungs = Rungs { eta: 3, keys: vec!["one".into(), "two".into()] };
    assert_eq!(
        (rungs.count(), rungs.key(1), rungs.key(2), rungs.key(0), rungs.key(3)),
        (3, Some("one"), Some("two"), None, None)
    );
}
