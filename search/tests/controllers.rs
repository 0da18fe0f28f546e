//! Evidence that the controllers search: on the oracle objective, at equal budget and over
//! several seeds, RL and evolution find better architectures than random search, and the RL
//! policy's mean reward rises as it trains. Checkpoints resume exactly.

use effnas_evaluator::score::{Constraint, Objective};
use effnas_search::controller::{Controller, EvolutionConfig, Observation, RlConfig, Strategy};
use effnas_search::oracle::Oracle;
use effnas_space::{cost, SearchSpace};

const BUDGET: usize = 300;
const SEEDS: [u64; 5] = [1, 2, 3, 4, 5];

/// Runs a controller for `BUDGET` trials in rounds of 8 (as a worker pool would) and returns
/// every reward in order.
fn run(
    controller: &mut dyn Controller,
    space: &SearchSpace,
    oracle: &Oracle,
    objective: &Objective,
) -> Vec<f64> {
    let mut rewards = Vec::new();
    while rewards.len() < BUDGET {
        let proposals = controller.propose(8.min(BUDGET - rewards.len())).expect("propose");
        let observations: Vec<Observation> = proposals
            .into_iter()
            .map(|tokens| {
                let arch = space.decode(&tokens).expect("members decode");
                let reward = objective.reward(oracle.accuracy(&arch), cost(&arch).macs as f64);
                rewards.push(reward);
                Observation { tokens, reward: Some(reward), rung: 0 }
            })
            .collect();
        controller.observe(&observations).expect("observe");
    }
    rewards
}

/// The policy's tensors are tiny: one libtorch thread per test is fastest, and the tests run in
/// parallel.
fn single_threaded() {
    tch::set_num_threads(1);
}

fn best(rewards: &[f64]) -> f64 {
    rewards.iter().copied().fold(f64::MIN, f64::max)
}

fn mean(values: &[f64]) -> f64 {
    values.iter().sum::<f64>() / values.len() as f64
}

#[test]
fn rl_and_evolution_beat_random_and_rl_learns() {
    single_threaded();
    let space = SearchSpace::default_space();
    let oracle = Oracle::for_space(&space);
    // EfficientNet's soft objective: the oracle's accuracy traded against multiply-adds.
    let objective = Objective::default();
    let strategies = [
        Strategy::Random,
        Strategy::Evolution(EvolutionConfig::default()),
        Strategy::Rl(RlConfig::default()),
    ];
    let mut best_by_strategy = vec![Vec::new(); strategies.len()];
    let mut rl_first = Vec::new();
    let mut rl_last = Vec::new();
    for seed in SEEDS {
        for (index, strategy) in strategies.iter().enumerate() {
            let mut controller = strategy.build(&space, seed).expect("controller");
            let rewards = run(controller.as_mut(), &space, &oracle, &objective);
            best_by_strategy[index].push(best(&rewards));
            if matches!(strategy, Strategy::Rl(_)) {
                rl_first.push(mean(&rewards[..50]));
                rl_last.push(mean(&rewards[BUDGET - 50..]));
            }
        }
    }
    let [random, evolution, rl] = [0, 1, 2].map(|i| mean(&best_by_strategy[i]));
    eprintln!(
        "mean best reward over {} seeds: random {random:.4}, evolution {evolution:.4}, rl {rl:.4}",
        SEEDS.len()
    );
    eprintln!("rl mean reward: first 50 trials {:.4}, last 50 {:.4}", mean(&rl_first), mean(&rl_last));
    assert!(evolution > random, "evolution {evolution} vs random {random}");
    assert!(rl > random, "rl {rl} vs random {random}");
    assert!(mean(&rl_last) > mean(&rl_first) + 0.02, "the policy's mean reward should rise");
}

#[test]
fn under_a_hard_constraint_evolution_finds_b0() {
    single_threaded();
    let space = SearchSpace::default_space();
    let oracle = Oracle::for_space(&space);
    // B0 has 386M multiply-adds: under a hard 400M constraint it is the unique best reward.
    let objective = Objective { constraint: Constraint::Hard, ..Objective::default() };
    let target = objective.reward(oracle.accuracy(oracle.target()), cost(oracle.target()).macs as f64);
    let mut controller =
        Strategy::Evolution(EvolutionConfig::default()).build(&space, 7).expect("controller");
    let mut rewards = Vec::new();
    for _ in 0..4 {
        rewards.extend(run(controller.as_mut(), &space, &oracle, &objective));
    }
    assert!(best(&rewards) <= target + 1e-12);
    assert!(best(&rewards) > target - 0.05, "best {} after 1200 trials, target {target}", best(&rewards));
}

#[test]
fn checkpoints_resume_exactly() {
    single_threaded();
    let space = SearchSpace::default_space();
    let oracle = Oracle::for_space(&space);
    let objective = Objective::default();
    for strategy in
        [Strategy::Random, Strategy::Evolution(EvolutionConfig::default()), Strategy::Rl(RlConfig::default())]
    {
        let mut original = strategy.build(&space, 9).expect("controller");
        let _ = run(original.as_mut(), &space, &oracle, &objective);
        let state = original.state().expect("state");
        let mut resumed = strategy.build(&space, 1234).expect("controller");
        resumed.restore(&state).expect("restore");
        // Same proposals, and the same after the same observations.
        for _ in 0..3 {
            let a = original.propose(5).expect("propose");
            assert_eq!(a, resumed.propose(5).expect("propose"), "{}", strategy.name());
            let observations: Vec<Observation> = a
                .into_iter()
                .map(|tokens| {
                    let arch = space.decode(&tokens).expect("decode");
                    Observation { tokens, reward: Some(oracle.accuracy(&arch)), rung: 0 }
                })
                .collect();
            original.observe(&observations).expect("observe");
            resumed.observe(&observations).expect("observe");
        }
        // JSON round trip (as stored in the database) keeps it exact too.
        let text = serde_json::to_string(&original.state().expect("state")).expect("json");
        let mut reloaded = strategy.build(&space, 0).expect("controller");
        reloaded.restore(&serde_json::from_str(&text).expect("json")).expect("restore");
        assert_eq!(
            original.propose(4).expect("propose"),
            reloaded.propose(4).expect("propose"),
            "{}",
            strategy.name()
        );
    }
}

#[test]
fn a_checkpoint_from_another_space_is_refused() {
    single_threaded();
    let rl = Strategy::Rl(RlConfig::default());
    let state = rl.build(&SearchSpace::default_space(), 1).expect("controller").state().expect("state");
    let mut other = rl.build(&SearchSpace::mnasnet(), 1).expect("controller");
    assert!(other.restore(&state).is_err());
    let mut evolution = Strategy::Evolution(EvolutionConfig::default())
        .build(&SearchSpace::mnasnet(), 1)
        .expect("controller");
    assert!(evolution.restore(&serde_json::json!({"nonsense": true})).is_err());
}

/// A promotion of a multi-fidelity search (`rung` > 0) is not a new proposal: evolution gives the
/// member it repeats the higher rung's reward and grows by nothing; the RL controller keeps one
/// baseline per rung, so a promoted result is judged against results of its own rung.
#[test]
fn promoted_results_update_what_they_repeat() {
    single_threaded();
    let space = SearchSpace::default_space();
    let config = EvolutionConfig { population: 8, sample_size: 2 };
    let mut evolution = Strategy::Evolution(config).build(&space, 1).expect("evolution");
    let proposals = evolution.propose(3).expect("propose");
    let observe = |tokens: &Vec<usize>, reward, rung| Observation {
        tokens: tokens.clone(),
        reward: Some(reward),
        rung,
    };
    let first: Vec<Observation> = proposals.iter().map(|t| observe(t, 0.5, 0)).collect();
    evolution.observe(&first).expect("observe");
    evolution.observe(&[observe(&proposals[1], 0.9, 1)]).expect("observe a promotion");
    let state = evolution.state().expect("state");
    let population = state["population"].as_array().expect("population");
    assert_eq!(population.len(), 3, "a promotion adds no member");
    let promoted = population.iter().find(|m| m[0] == serde_json::json!(proposals[1])).expect("member");
    assert_eq!(promoted[1], 0.9);

    let rl_config = RlConfig { batch_size: 4, ..RlConfig::default() };
    let mut rl = Strategy::Rl(rl_config).build(&space, 1).expect("rl");
    let proposals = rl.propose(2).expect("propose");
    let batch = vec![
        observe(&proposals[0], 0.4, 0),
        observe(&proposals[1], 0.5, 0),
        observe(&proposals[0], 0.8, 1),
        observe(&proposals[1], 0.9, 1),
    ];
    rl.observe(&batch).expect("an update with two rungs");
    let state = rl.state().expect("state");
    assert!(
        (state["baseline"].as_f64().expect("rung-0 baseline") - 0.45).abs() < 1e-12,
        "{}",
        state["baseline"]
    );
    let higher = state["rung_baselines"][0].as_f64().expect("rung-1 baseline");
    assert!((higher - 0.85).abs() < 1e-12, "{higher}");
}
