//! `effnas scale --only` (one dimension over φ) and `--flops` (the multiplier or φ that lands
//! closest to a multiply-add target), as a user runs them.

mod common;

use common::{fails_naming, json, stdout_of};
use serde_json::Value;

fn number(row: &Value, key: &str) -> f64 {
    row[key].as_f64().unwrap_or_else(|| panic!("{key} in {row}"))
}

#[test]
fn width_only_to_twice_the_flops() {
    let rows = json(&["scale", "--only", "width", "--flops", "2x", "--json"]);
    let row = &rows.as_array().expect("list")[0];
    assert_eq!(row["only"], "width");
    assert_eq!(number(row, "target_ratio"), 2.0);
    let achieved = number(row, "flops_ratio");
    assert!((achieved - 2.0).abs() < 0.05, "{achieved}");
    assert_eq!(number(row, "depth"), 1.0);
    assert_eq!(number(row, "resolution_multiplier"), 1.0);
    assert_eq!(row["resolution"], 224);
    assert!(number(row, "width") > 1.3 && number(row, "width") < 1.6, "{row}");
    // The flops are those of the network, and the target is twice the base's.
    let base = json(&["scale", "--phi", "0", "--json"]);
    let base_flops = number(&base[0], "flops");
    assert_eq!(number(row, "target_flops"), (2.0 * base_flops).round());
    assert!((number(row, "flops") / base_flops - achieved).abs() < 1e-12);
}

#[test]
fn every_dimension_matches_an_absolute_count() {
    for only in ["width", "depth", "resolution"] {
        let rows = json(&["scale", "--only", only, "--flops", "600M", "--json"]);
        let row = &rows[0];
        assert_eq!(number(row, "target_flops"), 6e8);
        let miss = number(row, "flops") / 6e8;
        assert!((miss - 1.0).abs() < 0.1, "{only}: {miss}");
        let unchanged: Vec<&str> = ["width", "depth", "resolution_multiplier"]
            .into_iter()
            .filter(|k| !k.starts_with(only))
            .collect();
        for key in unchanged {
            assert_eq!(number(row, key), 1.0, "{only}: {key}");
        }
    }
}

#[test]
fn depth_only_over_phi_keeps_width_and_resolution() {
    let rows = json(&["scale", "--only", "depth", "--phi", "1,2", "--json"]);
    let rows = rows.as_array().expect("list");
    assert_eq!(rows.len(), 2);
    for (row, phi) in rows.iter().zip([1.0, 2.0]) {
        assert_eq!(number(row, "phi"), phi);
        assert!((number(row, "depth") - 1.2f64.powf(phi)).abs() < 1e-12);
        assert_eq!(number(row, "width"), 1.0);
        assert_eq!(number(row, "resolution_multiplier"), 1.0);
        assert_eq!(row["resolution"], 224);
        assert!((number(row, "constraint_ratio") - 1.2f64.powf(phi)).abs() < 1e-12);
        assert!(row["official"].is_null());
    }
    let text = stdout_of(&["scale", "--only", "depth", "--phi", "1,2"]);
    assert!(text.contains("depth only: α^φ with α = 1.2"), "{text}");
}

#[test]
fn compound_flops_target_follows_the_coefficients() {
    let rows = json(&["scale", "--flops", "2x", "--json"]);
    let row = &rows[0];
    let phi = number(row, "phi");
    assert!(phi > 0.0 && phi < 2.0, "{phi}");
    assert!((number(row, "depth") - 1.2f64.powf(phi)).abs() < 1e-9);
    assert!((number(row, "width") - 1.1f64.powf(phi)).abs() < 1e-9);
    assert!((number(row, "resolution_multiplier") - 1.15f64.powf(phi)).abs() < 1e-9);
    // The multipliers aim at (α·β²·γ²)^φ, and the achieved ratio lands near the target of 2.
    let (d, w, r) = (number(row, "depth"), number(row, "width"), number(row, "resolution_multiplier"));
    assert!((d * w * w * r * r - number(row, "constraint_ratio")).abs() < 1e-9);
    assert!((number(row, "flops_ratio") - 2.0).abs() < 0.05, "{row}");

    let text = stdout_of(&["scale", "--flops", "2x"]);
    assert!(text.contains("target × base") && text.contains("2.000"), "{text}");
}

#[test]
fn bad_values_name_their_flag() {
    fails_naming(&["scale", "--flops", "0"], "--flops");
    fails_naming(&["scale", "--flops", "-2x"], "--flops");
    fails_naming(&["scale", "--flops", "1e30"], "--flops");
    fails_naming(&["scale", "--flops", "lots"], "--flops");
    fails_naming(&["scale", "--only", "height"], "--only");
    // Reachable only past the size limits, or below what one-layer stages allow.
    fails_naming(&["scale", "--flops", "1e18"], "--flops");
    fails_naming(&["scale", "--only", "depth", "--flops", "0.1x"], "--flops");
    fails_naming(&["scale", "--flops", "2x", "--phi", "1"], "--flops");
}

/// `scale --base resnet-50 --only depth --flops 2x`: ResNet-50 made deeper, stage by stage,
/// to about twice its multiply-adds (a step is a whole layer in every stage, so it lands within
/// 10%), its width and resolution unchanged.
#[test]
fn resnet_50_by_depth_to_twice_the_flops() {
    let rows = json(&["scale", "--base", "resnet-50", "--only", "depth", "--flops", "2x", "--json"]);
    let row = &rows[0];
    assert_eq!(row["only"], "depth");
    let achieved = number(row, "flops_ratio");
    assert!((achieved - 2.0).abs() < 0.1, "{achieved}");
    assert_eq!((number(row, "width"), row["resolution"].as_u64()), (1.0, Some(224)));
    assert!(number(row, "depth") > 1.5, "{row}");
    for only in ["width", "resolution"] {
        let rows = json(&["scale", "--base", "mobilenet-v1", "--only", only, "--flops", "2x", "--json"]);
        let achieved = number(&rows[0], "flops_ratio");
        assert!((achieved - 2.0).abs() < 0.1, "mobilenet-v1 {only}: {achieved}");
    }
}
