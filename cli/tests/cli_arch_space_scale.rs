//! The `arch`, `space` and `scale` commands as a user runs them.

mod common;
use common::{effnas, fails_naming, json};

#[test]
fn arch_json_has_the_contract_fields_and_matches_the_cost_model() {
    let value = json(&["arch", "efficientnet-b0", "--json"]);
    // torchvision 0.26 efficientnet_b0: 5,288,548 parameters, 385,814,752 multiply-adds at 224 px.
    assert_eq!(value["params"], 5_288_548);
    assert_eq!(value["flops"], 385_814_752);
    assert_eq!(value["resolution"], 224);
    assert_eq!(value["blocks"][1], "r2_k3_s22_e6_i16_o24_se0.25");
    assert_eq!(value["blocks"].as_array().map(Vec::len), Some(7));
}

#[test]
fn arch_overrides_and_block_strings_and_json_files() {
    let small =
        json(&["arch", "b0", "--resolution", "32", "--num-classes", "10", "--input-channels", "1", "--json"]);
    assert_eq!(small["resolution"], 32);
    let b0 = json(&["arch", "b0", "--json"]);
    assert!(small["params"].as_u64() < b0["params"].as_u64());

    let blocks = effnas_space::presets::EFFICIENTNET_B0_BLOCKS.join(",");
    let from_strings = json(&["arch", &blocks, "--json"]);
    assert_eq!(from_strings["params"], b0["params"]);
    assert_eq!(from_strings["hash"], b0["hash"]);

    // The JSON output is itself a SPEC file.
    let dir = tempfile::tempdir().expect("tempdir");
    let path = dir.path().join("small.json");
    std::fs::write(&path, serde_json::to_string(&small).expect("json")).expect("write");
    let again = json(&["arch", path.to_str().expect("utf-8 path"), "--json"]);
    assert_eq!(again["hash"], small["hash"]);
    assert_eq!(again["flops"], small["flops"]);
}

#[test]
fn arch_human_output_has_a_row_per_block_and_totals() {
    let out = effnas(&["arch", "mnasnet-a1"]);
    assert!(out.status.success());
    let text = String::from_utf8_lossy(&out.stdout);
    for needle in ["stem", "MBConv3", "head", "total: 3887038 parameters"] {
        assert!(text.contains(needle), "{needle} missing in\n{text}");
    }
}

#[test]
fn bad_architectures_get_one_line_errors_naming_the_culprit() {
    fails_naming(&["arch", "r2_k4_s22_e6_i32_o24"], "k4");
    fails_naming(&["arch", "r2_k3_s33_e6_i32_o24"], "s3");
    fails_naming(&["arch", "r2_k3_s22_e6_i32_o0"], "o0");
    fails_naming(&["arch", "r2_k3_s22_e6_i32_o24_se1.5"], "se1.5");
    fails_naming(&["arch", "r2_k3_s22_e6_i32_o24_bogus"], "bogus");
    fails_naming(&["arch", "efficientnet-b9"], "efficientnet-b9");
    fails_naming(&["arch", "/no/such/file.json"], "/no/such/file.json");
    fails_naming(&["arch", "b0", "--resolution", "0"], "resolution");

    let dir = tempfile::tempdir().expect("tempdir");
    let unknown = dir.path().join("unknown.json");
    std::fs::write(&unknown, r#"{"blocks": ["r1_k3_s11_e1_i32_o16"], "colour": 1}"#).expect("write");
    fails_naming(&["arch", unknown.to_str().expect("path")], "colour");
    let missing = dir.path().join("missing.json");
    std::fs::write(&missing, r#"{"resolution": 224}"#).expect("write");
    fails_naming(&["arch", missing.to_str().expect("path")], "blocks");
    let chain = dir.path().join("chain.json");
    std::fs::write(&chain, r#"{"blocks": ["r1_k3_s11_e1_i32_o16", "r1_k3_s11_e1_i24_o16"]}"#).expect("write");
    fails_naming(&["arch", chain.to_str().expect("path")], "blocks[1]");
}

#[test]
fn space_membership_sets_the_exit_code() {
    assert_eq!(effnas(&["space", "default", "--contains", "b0"]).status.code(), Some(0));
    assert_eq!(effnas(&["space", "default", "--contains", "mnasnet-a1"]).status.code(), Some(0));
    assert_eq!(effnas(&["space", "mnasnet", "--contains", "b0"]).status.code(), Some(1));
    assert_eq!(effnas(&["space", "default", "--contains", "b1"]).status.code(), Some(1));
    fails_naming(&["space", "nowhere"], "nowhere");
}

#[test]
fn space_json_samples_and_files() {
    let value = json(&["space", "default", "--sample", "3", "--seed", "5", "--json"]);
    assert!(value["size"].as_f64().is_some_and(|s| s > 1e13));
    assert_eq!(value["samples"].as_array().map(Vec::len), Some(3));
    assert_eq!(value, json(&["space", "default", "--sample", "3", "--seed", "5", "--json"]), "seeded");

    let dir = tempfile::tempdir().expect("tempdir");
    let file = dir.path().join("mine.toml");
    let file = file.to_str().expect("path");
    assert!(effnas(&["space", "mnasnet", "--write", file]).status.success());
    let reread = json(&["space", file, "--json"]);
    assert_eq!(reread["size"], json(&["space", "mnasnet", "--json"])["size"]);

    std::fs::write(file, "name = \"broken\"\nblocks = [{ stride = 3 }]\n").expect("write");
    fails_naming(&["space", file], "mine.toml");
}

#[test]
fn scale_lists_every_phi_next_to_the_official_table() {
    let rows =
        json(&["scale", "--alpha", "1.2", "--beta", "1.1", "--gamma", "1.15", "--phi", "0..7", "--json"]);
    let rows = rows.as_array().expect("list");
    assert_eq!(rows.len(), 8);
    assert_eq!(rows[0]["params"], 5_288_548);
    assert_eq!(rows[0]["official"]["name"], "efficientnet-b0");
    // torchvision 0.26 efficientnet_b7: 66,347,960 parameters.
    assert_eq!(rows[7]["official"]["params"], 66_347_960);
    for pair in rows.windows(2) {
        assert!(pair[1]["flops"].as_u64() > pair[0]["flops"].as_u64());
        assert!(pair[1]["phi"].as_f64() > pair[0]["phi"].as_f64());
    }
    // φ = 1: depth 1.2, width 1.1, resolution 224 × 1.15 = 257.6 → 258 px.
    assert_eq!(rows[1]["resolution"], 258);

    fails_naming(&["scale", "--alpha", "0.5", "--phi", "1"], "--alpha");
    fails_naming(&["scale", "--phi", "x"], "--phi");
}

/// The baselines of EfficientNet's Table 3: exact against torchvision 0.26 (resnet18/34/50 at
/// 224 px, space/tests/data/torchvision.json) and MobileNetV1 within its paper's rounding
/// (4.2M parameters, 569M multiply-adds: Howard et al., 2017, Table 8).
#[test]
fn arch_shows_resnets_and_mobilenet_v1() {
    for (name, params, flops) in [
        ("resnet-18", 11_689_512u64, 1_814_073_344u64),
        ("resnet-34", 21_797_672, 3_663_761_408),
        ("resnet-50", 25_557_032, 4_089_184_256),
        ("mobilenet-v1", 4_231_976, 568_740_352),
    ] {
        let value = json(&["arch", name, "--json"]);
        assert_eq!(
            (value["params"].as_u64(), value["flops"].as_u64()),
            (Some(params), Some(flops)),
            "{name}"
        );
        assert!(value["spec"]["head_channels"].is_null(), "{name}: no head");
        assert_eq!(value["spec"]["activation"], "relu", "{name}");
    }
    let out = effnas(&["arch", "resnet-50"]);
    assert!(out.status.success());
    let text = String::from_utf8_lossy(&out.stdout);
    for needle in ["Conv7x7", "MaxPool3x3", "Bottleneck", "2048→1000", "total: 25557032 parameters"] {
        assert!(text.contains(needle), "{needle} missing in\n{text}");
    }
    assert!(!text.contains("head"), "ResNet has no head convolution:\n{text}");
}
