//! Golden numbers: the cost model against torchvision and the MnasNet paper.

use effnas_space::{cost, presets, SearchSpace};
use serde_json::Value;

fn torchvision() -> Value {
    serde_json::from_str(include_str!("data/torchvision.json")).expect("golden file parses")
}

#[test]
fn efficientnet_b0_to_b7_match_torchvision_exactly() {
    let golden = torchvision();
    let rows = golden["efficientnet"].as_array().expect("list");
    assert_eq!(rows.len(), 8);
    for (index, row) in rows.iter().enumerate() {
        let arch = presets::efficientnet(index).expect("preset");
        assert_eq!(u64::from(arch.resolution), row["resolution"].as_u64().expect("resolution"));
        let cost = cost(&arch);
        assert_eq!(cost.params, row["params"].as_u64().expect("params"), "b{index} params");
        assert_eq!(cost.macs, row["macs"].as_u64().expect("macs"), "b{index} multiply-adds");
    }
}

#[test]
fn mobilenet_v2_matches_torchvision_exactly() {
    let golden = torchvision();
    let arch = presets::preset("mobilenet-v2").expect("preset");
    let cost = cost(&arch);
    assert_eq!(cost.params, golden["mobilenet_v2"]["params"].as_u64().expect("params"));
    assert_eq!(cost.macs, golden["mobilenet_v2"]["macs"].as_u64().expect("macs"));
}

/// MnasNet paper, Table 1: MnasNet-A1 has 3.9M parameters and 312M multiply-adds at 224 px.
#[test]
fn mnasnet_a1_is_within_three_percent_of_the_paper() {
    let cost = cost(&presets::preset("mnasnet-a1").expect("preset"));
    let params_error = (cost.params as f64 / 3.9e6 - 1.0).abs();
    let macs_error = (cost.macs as f64 / 312e6 - 1.0).abs();
    assert!(params_error < 0.03, "params {} ({:.1}% off)", cost.params, params_error * 100.0);
    assert!(macs_error < 0.03, "multiply-adds {} ({:.1}% off)", cost.macs, macs_error * 100.0);
}

/// Changing the number of classes or the resolution changes exactly the parts it should.
#[test]
fn classes_and_resolution_enter_where_they_should() {
    let b0 = presets::efficientnet_b0();
    let mut ten = b0.clone();
    ten.num_classes = 10;
    let (a, b) = (cost(&b0), cost(&ten));
    assert_eq!(a.params - b.params, 1280 * 990 + 990);
    assert_eq!(a.macs - b.macs, 1280 * 990);
    let mut small = b0.clone();
    small.resolution = 112;
    assert_eq!(cost(&small).params, a.params);
    assert!(cost(&small).macs < a.macs / 3);
}

/// The hash is stored in databases and must not change between versions; this value is our own
/// (SHA-256 of the canonical form), pinned when the format was introduced.
#[test]
fn b0_hash_is_pinned() {
    assert_eq!(effnas_space::arch_hash(&presets::efficientnet_b0()), "3f952f076c846bb0");
}

#[test]
fn every_member_of_the_default_space_has_a_finite_positive_cost() {
    use rand::SeedableRng;
    let space = SearchSpace::default_space();
    let mut rng = rand_chacha::ChaCha8Rng::seed_from_u64(11);
    for _ in 0..1000 {
        let arch = space.decode(&space.sample_tokens(&mut rng)).expect("decode");
        let c = cost(&arch);
        assert!(c.params > 0 && c.macs > c.params / 10);
    }
}
