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

#[test]
fn resnet_18_34_50_match_torchvision_exactly() {
    let golden = torchvision();
    let rows = golden["resnet"].as_array().expect("list");
    assert_eq!(rows.len(), 3);
    for (row, name) in rows.iter().zip(["resnet-18", "resnet-34", "resnet-50"]) {
        assert_eq!(row["model"].as_str().expect("model"), name.replace('-', ""));
        let arch = presets::preset(name).expect("preset");
        assert_eq!(u64::from(arch.resolution), row["resolution"].as_u64().expect("resolution"));
        let cost = cost(&arch);
        assert_eq!(cost.params, row["params"].as_u64().expect("params"), "{name} params");
        assert_eq!(cost.macs, row["macs"].as_u64().expect("macs"), "{name} multiply-adds");
    }
}

/// MobileNetV1 has no torchvision model; the reference is its paper (Howard et al., 2017,
/// "MobileNets", Table 8: "1.0 MobileNet-224", 569 million mult-adds and 4.2 million
/// parameters; Table 2 gives the same totals as 100% of 569M and 4.2M). The paper rounds to two
/// significant figures for parameters and three for multiply-adds, so agreement means landing
/// inside the rounding interval: [4.15M, 4.25M) and [568.5M, 569.5M). Our count includes batch
/// norm's two parameters a channel (21,888 over 10,944 channels); the paper does not say whether
/// its count does, and the weights alone (4,210,088) are inside the interval as well.
#[test]
fn mobilenet_v1_is_within_the_rounding_of_the_paper() {
    let cost = cost(&presets::preset("mobilenet-v1").expect("preset"));
    assert!((4_150_000..4_250_000).contains(&cost.params), "params {}", cost.params);
    assert!((568_500_000..569_500_000).contains(&cost.macs), "multiply-adds {}", cost.macs);
    // The exact figures, pinned so that a change to the preset or the cost model shows here.
    assert_eq!((cost.params, cost.macs), (4_231_976, 568_740_352));
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

/// The stem kernel, max-pool, optional head and activation came after architectures were
/// stored in databases: the presets that existed before them keep their hashes (computed with
/// the commit before these fields) and their JSON, and JSON written before them still reads as
/// the same network.
#[test]
fn hashes_and_json_from_before_the_resnet_fields_are_unchanged() {
    #[rustfmt::skip]
    let pinned = [
        ("efficientnet-b0", "3f952f076c846bb0"),
        ("efficientnet-b7", "1526f69aa3b1ce6e"),
        ("mnasnet-a1", "c45f2d4448c8c733"),
        ("mobilenet-v2", "4dcfcf397fb53166"),
    ];
    for (name, hash) in pinned {
        let arch = presets::preset(name).expect("preset");
        assert_eq!(effnas_space::arch_hash(&arch), hash, "{name}");
        let json = serde_json::to_value(&arch).expect("serialises");
        // serde_json's map sorts its keys.
        let keys: Vec<&str> = json.as_object().expect("object").keys().map(String::as_str).collect();
        assert_eq!(
            keys,
            [
                "blocks",
                "drop_connect",
                "dropout",
                "head_channels",
                "input_channels",
                "num_classes",
                "resolution",
                "stem_channels"
            ],
            "{name}: the JSON has exactly the fields it had"
        );
    }
    // B0's JSON as the previous version wrote it.
    let old = r#"{"input_channels":3,"resolution":224,"num_classes":1000,"stem_channels":32,
        "blocks":["r1_k3_s11_e1_i32_o16_se0.25","r2_k3_s22_e6_i16_o24_se0.25","r2_k5_s22_e6_i24_o40_se0.25",
        "r3_k3_s22_e6_i40_o80_se0.25","r3_k5_s11_e6_i80_o112_se0.25","r4_k5_s22_e6_i112_o192_se0.25",
        "r1_k3_s11_e6_i192_o320_se0.25"],"head_channels":1280,"dropout":0.2,"drop_connect":0.2}"#;
    let read: effnas_space::ArchSpec = serde_json::from_str(old).expect("old JSON reads");
    assert_eq!(read, presets::efficientnet_b0());
    assert_eq!(serde_json::to_string(&read).expect("serialises"), old.replace(['\n', ' '], ""));
}

/// A ResNet's JSON names what differs from EfficientNet, reads back as the same network, and a
/// `null` head is no head.
#[test]
fn resnet_json_round_trips() {
    let resnet = presets::preset("resnet-50").expect("preset");
    let json = serde_json::to_value(&resnet).expect("serialises");
    assert_eq!(json["stem_kernel"], 7);
    assert_eq!(json["stem_max_pool"], true);
    assert!(json["head_channels"].is_null());
    assert_eq!(json["activation"], "relu");
    let back: effnas_space::ArchSpec = serde_json::from_value(json).expect("reads back");
    assert_eq!(back, resnet);
    assert_ne!(
        effnas_space::arch_hash(&resnet),
        effnas_space::arch_hash(&presets::preset("resnet-34").expect("preset"))
    );
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
