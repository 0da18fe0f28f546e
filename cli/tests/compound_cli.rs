//! `effnas compound` and `effnas scale --from-run` as a user runs them.

use effnas_search::oracle::CompoundOracle;
use effnas_space::{compound_grid, presets, scale, GridSpec, Multipliers};
use effnas_store::{BlockingStore, RunId};

mod common;
use common::{effnas, json};

#[test]
fn oracle_grid_run_ranks_every_point_and_feeds_scale() {
    let dir = tempfile::tempdir().expect("tempdir");
    let db = dir.path().join("compound.db");
    let db = db.to_str().expect("path");
    let result = json(&[
        "compound",
        "--db",
        db,
        "--evaluator",
        "oracle",
        "--step",
        "0.1",
        "--tolerance",
        "0.1",
        "--json",
    ]);
    let points = result["points"].as_array().expect("points");
    // The reference grid at step 0.1 has 21 points with |α·β²·γ² − 2| ≤ 0.1.
    assert_eq!(points.len(), 21);
    for pair in points.windows(2) {
        assert!(pair[0]["accuracy"].as_f64() >= pair[1]["accuracy"].as_f64(), "ranked by accuracy");
    }
    for point in points {
        let factor = point["flops_factor"].as_f64().expect("factor");
        assert!((factor - 2.0).abs() <= 0.1 + 1e-9);
        assert_eq!(point["state"], "complete");
        assert_eq!(point["intended_ratio"], 2.0);
    }

    // The winner is the grid point the compound oracle scores highest, computed here directly.
    let base = presets::efficientnet_b0();
    let oracle = CompoundOracle::new(base.clone());
    let grid = compound_grid(&GridSpec { step: 0.1, tolerance: 0.1, ..GridSpec::default() }).expect("grid");
    let best = grid
        .iter()
        .map(|&p| (p, oracle.accuracy(&scale(&base, Multipliers::compound(p, 1.0)).expect("scale"))))
        .max_by(|a, b| a.1.total_cmp(&b.1))
        .expect("a point");
    assert_eq!(points[0]["alpha"].as_f64(), Some(best.0.alpha));
    assert_eq!(points[0]["beta"].as_f64(), Some(best.0.beta));
    assert_eq!(points[0]["gamma"].as_f64(), Some(best.0.gamma));
    assert!((points[0]["accuracy"].as_f64().expect("accuracy") - best.1).abs() < 1e-9);

    // Trials and exports of a compound run carry the grid point.
    let run = result["run"].as_i64().expect("run id");
    let rows = json(&["trials", "--db", db, "--run", &run.to_string(), "--json"]);
    for row in rows.as_array().expect("rows") {
        let (a, b, g) = (
            row["alpha"].as_f64().expect("alpha"),
            row["beta"].as_f64().expect("beta"),
            row["gamma"].as_f64().expect("gamma"),
        );
        assert_eq!(row["phi"], 1.0);
        assert!((row["flops_factor"].as_f64().expect("factor") - a * b * b * g * g).abs() < 1e-9);
    }
    let csv = effnas(&["export", "--db", db, "--run", &run.to_string(), "--format", "csv"]);
    let header = String::from_utf8_lossy(&csv.stdout).lines().next().unwrap_or_default().to_owned();
    assert!(header.contains("alpha,beta,gamma,phi,flops_factor"), "{header}");

    // Scaling from the run uses the winner and records the family in the database.
    let family = json(&["scale", "--db", db, "--from-run", &run.to_string(), "--phi", "1..3", "--json"]);
    assert_eq!(family.as_array().map(Vec::len), Some(3));
    let store = BlockingStore::open(db).expect("open");
    let models = store.block_on(store.store().scaled_models(RunId(run))).expect("scaled models");
    assert_eq!(models.len(), 3);
    assert!((models[0].depth - best.0.alpha).abs() < 1e-12 && (models[0].width - best.0.beta).abs() < 1e-12);
    assert_eq!(models[2].flops, family[2]["flops"].as_u64().expect("flops"));
}

#[test]
fn a_tiny_real_grid_on_fashion_mnist() {
    let dir = tempfile::tempdir().expect("tempdir");
    let db = dir.path().join("real.db");
    let db = db.to_str().expect("path");
    let result = json(&[
        "compound",
        "--db",
        db,
        "--step",
        "0.1",
        "--max-points",
        "2",
        "--train-images",
        "256",
        "--validation-images",
        "128",
        "--epochs",
        "1",
        "--resolution",
        "16",
        "--finalists",
        "0",
        "--json",
    ]);
    let points = result["points"].as_array().expect("points");
    assert_eq!(points.len(), 2);
    for point in points {
        assert_eq!(point["state"], "complete", "{point}");
        assert!(point["accuracy"].as_f64().is_some_and(|a| (0.0..=1.0).contains(&a)));
        // The two points closest to the constraint on the 0.1 grid are within 2% of 2.
        assert!((point["flops_factor"].as_f64().expect("factor") - 2.0).abs() <= 0.04 + 1e-9);
    }
}

#[test]
fn empty_grids_and_bad_bases_fail_before_training() {
    let dir = tempfile::tempdir().expect("tempdir");
    let db = dir.path().join("none.db");
    let db = db.to_str().expect("path");
    let out = effnas(&[
        "compound",
        "--db",
        db,
        "--evaluator",
        "oracle",
        "--alpha-range",
        "1:1.1",
        "--beta-range",
        "1:1.1",
        "--gamma-range",
        "1:1.1",
    ]);
    assert_eq!(out.status.code(), Some(2));
    let stderr = String::from_utf8_lossy(&out.stderr);
    assert!(stderr.contains("runs from 1.000 to 1.611"), "{stderr}");
    let out = effnas(&["compound", "--db", db, "--evaluator", "oracle", "--alpha-range", "2:1"]);
    assert_eq!(out.status.code(), Some(2));
    assert!(String::from_utf8_lossy(&out.stderr).contains("alpha"));
    let out = effnas(&["compound", "--db", db, "--base", "r1_k4_s11_e1_i32_o16", "--evaluator", "oracle"]);
    assert!(String::from_utf8_lossy(&out.stderr).contains("k4"));
    assert!(!std::path::Path::new(db).exists(), "nothing was written");
}

#[test]
fn a_grid_too_large_to_enumerate_is_refused_with_its_count_before_any_work() {
    let dir = tempfile::tempdir().expect("tempdir");
    let db = dir.path().join("grid.db");
    let db = db.to_str().expect("path");
    common::fails_naming(&["compound", "--db", db, "--evaluator", "oracle", "--step", "0.0001"], "--step");
    let out = effnas(&["compound", "--db", db, "--evaluator", "oracle", "--step", "0.0001"]);
    assert!(String::from_utf8_lossy(&out.stderr).contains("candidate points"), "the count is named");
    assert!(!std::path::Path::new(db).exists(), "no database was created");
}
