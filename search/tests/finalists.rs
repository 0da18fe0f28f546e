//! Finalists on the library level, with results written by hand: who becomes a finalist, how
//! their trainings are queued (once, under their own settings, linked to the trial they repeat),
//! which recipe a worker gets for them, and how the answer is computed.
#![allow(clippy::unwrap_used)]

use effnas_evaluator::score::Objective;
use effnas_search::config::{EvaluatorKind, SearchConfig, CONFIG_VERSION};
use effnas_search::controller::Strategy;
use effnas_search::finalists::{choose, finalists, queue, FinalistPlan};
use effnas_search::orchestrator::SearchPlan;
use effnas_search::proxy::ProxySettings;
use effnas_search::recipe::{Recipe, RecipeError};
use effnas_space::{arch_hash, ArchSpec, SearchSpace};
use effnas_store::{BlockingStore, NewRun, NewTrial, RunId, RunKind, TrialFilter, TrialId, TrialMetrics};
use rand::SeedableRng;

fn members(n: usize) -> Vec<ArchSpec> {
    let space = SearchSpace::default_space();
    let mut rng = rand_chacha::ChaCha8Rng::seed_from_u64(3);
    let mut out: Vec<ArchSpec> = Vec::new();
    while out.len() < n {
        let arch = space.decode(&space.sample_tokens(&mut rng)).unwrap();
        if out.iter().all(|a| arch_hash(a) != arch_hash(&arch)) {
            out.push(arch);
        }
    }
    out
}

fn plan(count: usize, include: Vec<String>) -> FinalistPlan {
    FinalistPlan {
        count,
        seeds: vec![11, 12, 13],
        proxy: Some(ProxySettings::default()),
        include,
        first_setting: 1,
    }
}

fn search_run(store: &BlockingStore, finalists: Option<FinalistPlan>) -> RunId {
    let config = SearchConfig {
        version: CONFIG_VERSION,
        plan: SearchPlan {
            space: SearchSpace::default_space(),
            strategy: Strategy::Random,
            trials: 6,
            seed: 10,
            max_flops: None,
            objective: Objective::default(),
            proxy_key: "k".into(),
            workers: 1,
            rungs: None,
            screen: None,
        },
        evaluator: EvaluatorKind::Train,
        proxy: Some(ProxySettings::default()),
        lookup: None,
        predictor: None,
        finalists,
        rungs: Vec::new(),
    };
    let mut new = NewRun::new("s", RunKind::Search);
    new.config = serde_json::to_value(&config).unwrap();
    store.block_on(store.store().create_run(&new)).unwrap()
}

fn metrics(reward: f64) -> TrialMetrics {
    TrialMetrics { accuracy: reward, reward, params: 1, flops: 1, ..TrialMetrics::default() }
}

/// Six search trials with rewards 0.1…0.6, except that trial 6 repeats trial 5's architecture
/// with the best reward and trial 3 failed.
fn searched(store: &BlockingStore, run: RunId) -> (Vec<ArchSpec>, Vec<TrialId>) {
    let archs = members(5);
    let mut ids = Vec::new();
    for (i, arch) in archs.iter().chain([&archs[4]]).enumerate() {
        let id = store.insert_trial(run, &NewTrial::new(arch.clone(), "k")).unwrap();
        if i == 2 {
            store.fail_trial(id, effnas_store::FailureKind::Diverged, "nan").unwrap();
        } else {
            store.complete_trial(id, &metrics(0.1 * (i + 1) as f64)).unwrap();
        }
        ids.push(id);
    }
    (archs, ids)
}

#[test]
fn the_best_distinct_architectures_and_the_included_ones_become_finalists() {
    let store = BlockingStore::open(":memory:").unwrap();
    let run = search_run(&store, None);
    let (archs, ids) = searched(&store, run);
    let trials = store.trials(run, &TrialFilter::default()).unwrap();
    let chosen: Vec<TrialId> = choose(&trials, &plan(2, vec![])).iter().map(|t| t.id).collect();
    // Trial 6 (0.6) and trial 5 share an architecture: one of them; then trial 4 (0.4).
    assert_eq!(chosen, vec![ids[5], ids[3]]);
    // An included architecture joins whatever its reward; a failed one cannot.
    let include = vec![arch_hash(&archs[0]), arch_hash(&archs[2])];
    let chosen: Vec<TrialId> = choose(&trials, &plan(2, include)).iter().map(|t| t.id).collect();
    assert_eq!(chosen, vec![ids[5], ids[3], ids[0]]);
}

#[test]
fn finalists_are_queued_once_under_their_settings_and_the_answer_is_the_best_mean() {
    let store = BlockingStore::open(":memory:").unwrap();
    let plan = plan(2, vec![]);
    let run = search_run(&store, Some(plan.clone()));
    let (_, ids) = searched(&store, run);
    let trials = store.trials(run, &TrialFilter::default()).unwrap();
    let chosen = choose(&trials, &plan);
    let key = |setting: u32| format!("final-{setting}");
    assert_eq!(queue(&store, run, &plan, &trials, &chosen, key).unwrap(), 6);
    let after = store.trials(run, &TrialFilter::default()).unwrap();
    assert_eq!(queue(&store, run, &plan, &after, &chosen, key).unwrap(), 0, "a resume queues nothing twice");
    let all = store.trials(run, &TrialFilter::default()).unwrap();
    let finals: Vec<_> = all.iter().filter(|t| t.setting > 0).collect();
    assert_eq!(finals.len(), 6);
    for t in &finals {
        assert!(t.parent == Some(ids[5]) || t.parent == Some(ids[3]), "{:?}", t.parent);
        assert_eq!(t.proxy_key, key(t.setting));
    }
    // The search's best (0.6 once) does worse over fresh seeds than the runner-up.
    let rewards = [(ids[5], [0.50, 0.52, 0.48]), (ids[3], [0.55, 0.56, 0.57])];
    for (parent, values) in rewards {
        for (t, r) in finals.iter().filter(|t| t.parent == Some(parent)).zip(values) {
            store.complete_trial(t.id, &metrics(r)).unwrap();
        }
    }
    let result = finalists(&store.trials(run, &TrialFilter::default()).unwrap(), 1);
    assert_eq!(result.len(), 2);
    let answer = &result[0];
    assert_eq!(answer.trial, ids[3]);
    let reward = answer.reward.unwrap();
    assert!((reward.mean - 0.56).abs() < 1e-12);
    assert!((reward.std.unwrap() - 0.01).abs() < 1e-12);
    assert_eq!((reward.seeds, answer.complete, answer.pending), (3, 3, 0));
    assert!((answer.search_reward.unwrap() - 0.4).abs() < 1e-12);
}

#[test]
fn a_finalist_trains_under_its_own_seed_and_the_run_has_no_other_settings() {
    let store = BlockingStore::open(":memory:").unwrap();
    let run = search_run(&store, Some(plan(2, vec![])));
    let stored = store.run(run).unwrap();
    for setting in 0..=3 {
        Recipe::for_trial(&stored, setting).unwrap();
    }
    let error = Recipe::for_trial(&stored, 4).unwrap_err();
    assert!(matches!(error, RecipeError::NoSetting { setting: 4, count: 4, .. }), "{error}");
    let without = search_run(&store, None);
    let error = Recipe::for_trial(&store.run(without).unwrap(), 1).unwrap_err();
    assert!(matches!(error, RecipeError::NoSetting { count: 1, .. }), "{error}");
    assert_eq!(plan(2, vec![]).seed_of(1), Some(11));
    assert_eq!(plan(2, vec![]).seed_of(0), None);
}
