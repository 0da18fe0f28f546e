//! Fidelity runs on the library level, with results written by hand (no training): how trials
//! are queued (order, settings, parents, reuse across runs), which worker recipe a trial gets,
//! and which numbers go into each line of the report. The statistics themselves are checked
//! against SciPy in `rank_stats.rs`; here the question is whether the right pairs reach them.
#![allow(clippy::unwrap_used)]

use effnas_evaluator::score::Objective;
use effnas_search::fidelity::{queue, Candidate, FidelityConfig, FidelityReport, Role};
use effnas_search::proxy::ProxySettings;
use effnas_search::recipe::{Recipe, RecipeError};
use effnas_search::stats::{kendall_tau_b, spearman_rho, NoiseFloor};
use effnas_space::{arch_hash, SearchSpace};
use effnas_store::{BlockingStore, NewRun, RunId, RunKind, TrialFilter, TrialMetrics};
use rand::SeedableRng;

const ARCHITECTURES: usize = 6;

fn candidates() -> Vec<Candidate> {
    let space = SearchSpace::default_space();
    let mut rng = rand_chacha::ChaCha8Rng::seed_from_u64(11);
    let mut out: Vec<Candidate> = Vec::new();
    while out.len() < ARCHITECTURES {
        let arch = space.decode(&space.sample_tokens(&mut rng)).expect("member");
        if out.iter().all(|c| arch_hash(&c.arch) != arch_hash(&arch)) {
            out.push(Candidate { arch, label: None });
        }
    }
    out[0].label = Some("named".to_owned());
    out
}

fn config(cheap_epochs: u32) -> FidelityConfig {
    let cheap = ProxySettings { epochs: cheap_epochs, ..ProxySettings::default() };
    let reference = ProxySettings { epochs: 9, train_images: 9000, ..ProxySettings::default() };
    FidelityConfig::new(
        "default".into(),
        0,
        candidates(),
        (cheap, &[0, 1]),
        (reference, &[0]),
        Objective::default(),
        2,
    )
    .expect("a valid configuration")
}

fn fidelity_run(store: &BlockingStore, name: &str, config: &FidelityConfig) -> RunId {
    let mut new = NewRun::named(name, RunKind::Fidelity);
    new.config = serde_json::to_value(config).expect("config");
    store.block_on(store.store().create_run(&new)).expect("run")
}

fn metrics(accuracy: f64) -> TrialMetrics {
    TrialMetrics {
        accuracy,
        loss: 1.0,
        params: 1,
        flops: 1,
        reward: accuracy * 0.9,
        seconds: 2.0,
        images_per_second: 100.0,
        extra: Some(serde_json::json!({"images_seen": 4000})),
        ..TrialMetrics::default()
    }
}

/// Cheap accuracies per seed and reference accuracy of each architecture, chosen so that the
/// three rankings differ: seed 0 and seed 1 disagree on two pairs, the reference on others.
const CHEAP_0: [f64; ARCHITECTURES] = [0.50, 0.55, 0.60, 0.52, 0.70, 0.40];
const CHEAP_1: [f64; ARCHITECTURES] = [0.53, 0.51, 0.62, 0.58, 0.66, 0.45];
const REFERENCE: [f64; ARCHITECTURES] = [0.80, 0.82, 0.81, 0.86, 0.88, 0.79];

#[test]
fn trials_are_queued_setting_by_setting_with_parents_and_reuse_across_runs() {
    let store = BlockingStore::open(":memory:").expect("store");
    let first = config(2);
    let run = fidelity_run(&store, "first", &first);
    let queued = queue(&store, run, &first).expect("queued");
    assert_eq!((queued.to_train, queued.reused), (3 * ARCHITECTURES, 0));
    let trials = store.trials(run, &TrialFilter::default()).expect("trials");
    assert_eq!(trials.len(), 3 * ARCHITECTURES);
    for (i, trial) in trials.iter().enumerate() {
        let (setting, arch) = (i / ARCHITECTURES, i % ARCHITECTURES);
        assert_eq!(trial.setting as usize, setting, "trial {i}: queued in setting order");
        assert_eq!(trial.arch_hash, arch_hash(&first.architectures[arch].arch));
        assert_eq!(trial.proxy_key, first.settings[setting].key());
        let parent = (setting > 0).then_some(trials[arch].id);
        assert_eq!(trial.parent, parent, "trial {i}: parent is the architecture's first trial");
    }
    // The two cheap seeds and the reference are three distinct keys.
    let keys: std::collections::HashSet<String> = first.settings.iter().map(|s| s.key()).collect();
    assert_eq!(keys.len(), 3);

    // Complete the reference trials; a second run with another cheap proxy reuses them and
    // trains only its own cheap trials.
    for (arch, trial) in trials[2 * ARCHITECTURES..].iter().enumerate() {
        store.complete_trial(trial.id, &metrics(REFERENCE[arch])).expect("complete");
    }
    let second = config(3);
    assert_eq!(second.settings[2].key(), first.settings[2].key());
    assert_ne!(second.settings[0].key(), first.settings[0].key());
    let run2 = fidelity_run(&store, "second", &second);
    let queued = queue(&store, run2, &second).expect("queued");
    assert_eq!((queued.to_train, queued.reused), (2 * ARCHITECTURES, ARCHITECTURES));
    let reused = store.trials(run2, &TrialFilter::default()).expect("trials");
    for trial in &reused[2 * ARCHITECTURES..] {
        assert!(trial.reused_from.is_some(), "reference trial {} reused", trial.id);
        assert_eq!(trial.setting, 2);
    }
}

#[test]
fn each_trial_gets_the_recipe_of_its_own_setting() {
    let store = BlockingStore::open(":memory:").expect("store");
    let config = config(2);
    let run = fidelity_run(&store, "f", &config);
    let stored = store.run(run).expect("run");
    for setting in 0..3 {
        Recipe::for_trial(&stored, setting).expect("a setting of the run");
    }
    let missing = Recipe::for_trial(&stored, 3).expect_err("no fourth setting");
    assert!(matches!(missing, RecipeError::NoSetting { setting: 3, count: 3, .. }), "{missing}");
}

/// A run whose every trial is complete with the accuracies above.
fn completed_run(store: &BlockingStore, config: &FidelityConfig, skip_last_reference: bool) -> RunId {
    let run = fidelity_run(store, "report", config);
    queue(store, run, config).expect("queued");
    let trials = store.trials(run, &TrialFilter::default()).expect("trials");
    for (i, trial) in trials.iter().enumerate() {
        let (setting, arch) = (i / ARCHITECTURES, i % ARCHITECTURES);
        let accuracy = [CHEAP_0, CHEAP_1, REFERENCE][setting][arch];
        if skip_last_reference && setting == 2 && arch == ARCHITECTURES - 1 {
            continue;
        }
        store.complete_trial(trial.id, &metrics(accuracy)).expect("complete");
    }
    run
}

#[test]
fn the_report_compares_the_right_rankings() {
    let store = BlockingStore::open(":memory:").expect("store");
    let config = config(2);
    let run = completed_run(&store, &config, false);
    let trials = store.trials(run, &TrialFilter::default()).expect("trials");
    let report = FidelityReport::new(&config, &trials, 2);

    let mean: Vec<f64> = CHEAP_0.iter().zip(CHEAP_1).map(|(a, b)| (a + b) / 2.0).collect();
    let close = |a: Option<f64>, b: f64| a.is_some_and(|a| (a - b).abs() < 1e-12);
    let accuracy = &report.accuracy;
    assert!(close(accuracy.one_seed.kendall_tau.estimate, kendall_tau_b(&CHEAP_0, &REFERENCE).unwrap()));
    assert!(close(accuracy.one_seed.spearman_rho.estimate, spearman_rho(&CHEAP_0, &REFERENCE).unwrap()));
    assert!(close(accuracy.seed_mean.kendall_tau.estimate, kendall_tau_b(&mean, &REFERENCE).unwrap()));
    assert!(close(accuracy.seed_vs_seed.kendall_tau.estimate, kendall_tau_b(&CHEAP_0, &CHEAP_1).unwrap()));
    // Rewards are 0.9 × accuracy here: the same ranking.
    assert!(close(report.reward.one_seed.kendall_tau.estimate, kendall_tau_b(&CHEAP_0, &REFERENCE).unwrap()));
    for agreement in [&accuracy.one_seed, &accuracy.seed_mean, &accuracy.seed_vs_seed] {
        assert_eq!(agreement.architectures, ARCHITECTURES);
        let tau = &agreement.kendall_tau;
        let (low, high, estimate) = (tau.low.unwrap(), tau.high.unwrap(), tau.estimate.unwrap());
        assert!(low <= estimate && estimate <= high, "{low} ≤ {estimate} ≤ {high}");
        assert!(tau.resamples > 1000, "{}", tau.resamples);
    }
    // Top 2: by seed 0 architectures 4 and 2; by the reference 4 and 3.
    assert_eq!(accuracy.one_seed.top_k_overlap, Some(1));

    let seeds: Vec<Vec<f64>> = CHEAP_0.iter().zip(CHEAP_1).map(|(a, b)| vec![*a, b]).collect();
    let floor = NoiseFloor::from_seeds(&seeds).unwrap();
    let noise = report.cheap_noise.expect("cheap noise");
    assert_eq!(noise.architectures, ARCHITECTURES);
    assert!((noise.mean_std - floor.mean_std).abs() < 1e-12);
    assert!((noise.mean_abs_pair_diff - floor.mean_abs_pair_diff).abs() < 1e-12);
    assert!(report.reference_noise.is_none(), "one reference seed has no spread");

    let costs = &report.settings;
    assert_eq!(costs.iter().map(|s| s.role).collect::<Vec<_>>(), [Role::Cheap, Role::Cheap, Role::Reference]);
    assert!(costs.iter().all(|s| s.complete == ARCHITECTURES && s.failed == 0 && s.pending == 0));
    assert_eq!(costs[0].mean_seconds, Some(2.0));
    assert_eq!(report.reference_cost_ratio, Some(9.0 * 9000.0 / (2.0 * 2000.0)));
    assert_eq!(report.architectures[0].label.as_deref(), Some("named"));
}

#[test]
fn an_architecture_without_its_reference_is_left_out_of_the_comparison_not_guessed() {
    let store = BlockingStore::open(":memory:").expect("store");
    let config = config(2);
    let run = completed_run(&store, &config, true);
    let trials = store.trials(run, &TrialFilter::default()).expect("trials");
    let report = FidelityReport::new(&config, &trials, 3);
    let n = ARCHITECTURES - 1;
    assert_eq!(report.accuracy.one_seed.architectures, n);
    assert_eq!(report.accuracy.seed_vs_seed.architectures, ARCHITECTURES, "both seeds are there");
    let expected = kendall_tau_b(&CHEAP_0[..n], &REFERENCE[..n]).unwrap();
    assert_eq!(report.accuracy.one_seed.kendall_tau.estimate, Some(expected));
    assert_eq!(report.settings[2].pending, 1);
    assert_eq!(report.architectures[n].reference_accuracy, vec![None]);
    assert_eq!(report.architectures[n].reference_mean(), None);
}

#[test]
fn too_few_architectures_or_seeds_are_refused_when_planned() {
    let few = candidates().into_iter().take(2).collect();
    let error = FidelityConfig::new(
        "default".into(),
        0,
        few,
        (ProxySettings::default(), &[0, 1]),
        (ProxySettings::default(), &[0]),
        Objective::default(),
        1,
    )
    .expect_err("two architectures");
    assert!(error.to_string().contains("architectures"), "{error}");
    let error = FidelityConfig::new(
        "default".into(),
        0,
        candidates(),
        (ProxySettings::default(), &[0]),
        (ProxySettings::default(), &[0]),
        Objective::default(),
        1,
    )
    .expect_err("one seed");
    assert!(error.to_string().contains("seeds"), "{error}");
}
