//! `effnas predictor fit|show` and `effnas search --evaluator predictor:MODEL`: a model fitted
//! on Accel-NASBench ranks held-out trainings (τ as measured), a search scores its trials with
//! it, a model fitted on a run's trials works the same way, and bad model files or a model of
//! another space are one-line refusals.

mod common;
use common::{exported, fails_naming, json};

#[test]
fn a_model_fitted_on_accel_nasbench_scores_a_search() {
    let dir = tempfile::tempdir().expect("tempdir");
    let model = dir.path().join("anb.json");
    let model = model.to_str().expect("path");
    let fitted = json(&["predictor", "fit", "--from", "accel-nasbench", "--out", model, "--json"]);
    assert_eq!(fitted["samples"], 5125, "{fitted}");
    assert_eq!(fitted["holdout"]["n"], 1025, "{fitted}");
    // Measured: τ 0.894, ρ 0.984, RMSE 0.0056 (gradient-boosted trees of depth 5, seed 0).
    let tau = fitted["holdout"]["kendall_tau"].as_f64().expect("tau");
    assert!(tau > 0.88, "held-out Kendall τ {tau}");
    assert!(fitted["holdout"]["rmse"].as_f64().is_some_and(|r| r < 0.01), "{fitted}");
    assert_eq!(json(&["predictor", "show", model, "--json"])["holdout"], fitted["holdout"]);

    let db = dir.path().join("s.db");
    let db = db.to_str().expect("path");
    let evaluator = format!("predictor:{model}");
    let summary = json(&[
        "search",
        "--db",
        db,
        "--space",
        "accel-nasbench",
        "--evaluator",
        &evaluator,
        "--trials",
        "20",
        "--finalists",
        "0",
        "--include",
        "b0",
        "--json",
    ]);
    assert_eq!(summary["status"], "complete", "{summary}");
    assert_eq!(summary["trials_done"], 20, "{summary}");
    let trials = exported(db, "1");
    let key = trials[0]["proxy_key"].as_str().expect("key");
    assert!(key.starts_with("predictor:") && key.len() == "predictor:".len() + 12, "{key}");
    for trial in &trials {
        assert_eq!(trial["proxy_key"], key);
        let predicted = trial["extra"]["predicted"].as_f64().expect("the prediction is kept");
        assert!((trial["accuracy"].as_f64().expect("accuracy") - predicted).abs() < 1e-12, "{trial}");
        // Accel-NASBench's proxified trainings reach 40–70% top-1.
        assert!((0.3..0.8).contains(&predicted), "{trial}");
    }
}

/// Run 1 of `db`: 60 random members of the `default` space scored by the oracle, to fit on.
fn oracle_run(db: &str) {
    json(&[
        "search",
        "--db",
        db,
        "--evaluator",
        "oracle",
        "--strategy",
        "random",
        "--trials",
        "60",
        "--finalists",
        "0",
        "--json",
    ]);
}

#[test]
fn a_model_fitted_on_a_run_scores_its_own_space_only() {
    let dir = tempfile::tempdir().expect("tempdir");
    let db = dir.path().join("o.db");
    let db = db.to_str().expect("path");
    oracle_run(db);
    let model = dir.path().join("oracle.json");
    let model = model.to_str().expect("path");
    let fitted = json(&["predictor", "fit", "--from", db, "--run", "1", "--out", model, "--json"]);
    assert_eq!(fitted["space"], "default", "{fitted}");
    assert_eq!(fitted["holdout"]["n"], 12, "{fitted}");
    // The oracle's accuracy is a smooth function of the choices: the fit ranks it.
    assert!(fitted["holdout"]["kendall_tau"].as_f64().is_some_and(|t| t > 0.3), "{fitted}");
    let evaluator = format!("predictor:{model}");
    let other = dir.path().join("x.db");
    let other = other.to_str().expect("path");
    fails_naming(
        &["search", "--db", other, "--space", "accel-nasbench", "--evaluator", &evaluator, "--trials", "5"],
        "fitted on space \"default\", not on the searched space \"accel-nasbench\"",
    );
    assert!(!std::path::Path::new(other).exists(), "a refused search created its database");
    json(&[
        "search",
        "--db",
        other,
        "--evaluator",
        &evaluator,
        "--trials",
        "5",
        "--finalists",
        "0",
        "--json",
    ]);
}

#[test]
fn bad_model_files_and_flags_are_refused_in_one_line() {
    let dir = tempfile::tempdir().expect("tempdir");
    let db = dir.path().join("b.db");
    let db = db.to_str().expect("path");
    let write = |name: &str, text: &str| {
        let path = dir.path().join(name);
        std::fs::write(&path, text).expect("write");
        path.to_str().expect("path").to_owned()
    };
    let truncated = write("truncated.json", "{\"format\": \"effnas-predictor\", \"version\": 1, \"sou");
    let foreign = write("foreign.json", "{\"weights\": [1, 2]}");
    let newer = write("newer.json", "{\"format\": \"effnas-predictor\", \"version\": 9}");
    let fields =
        write("fields.json", "{\"format\": \"effnas-predictor\", \"version\": 1, \"source\": \"x\"}");
    let cases = [
        (dir.path().join("missing.json").to_str().expect("path").to_owned(), "missing.json: cannot read"),
        (truncated.clone(), "truncated.json: not an effnas predictor model"),
        (foreign, "no \"format\": \"effnas-predictor\" field"),
        (newer, "version Some(9), this effnas reads 1"),
        (fields, "fields.json: not an effnas predictor model: missing field"),
    ];
    for (path, needle) in &cases {
        let evaluator = format!("predictor:{path}");
        fails_naming(&["search", "--db", db, "--space", "accel-nasbench", "--evaluator", &evaluator], needle);
        fails_naming(&["predictor", "show", path], needle);
    }
    assert!(!std::path::Path::new(db).exists(), "a refused search created its database");
    fails_naming(&["search", "--db", db, "--evaluator", "predictor:"], "needs a model file");
    fails_naming(
        &["search", "--db", db, "--evaluator", "magic"],
        "expected train, oracle, benchmark or predictor:MODEL",
    );
    fails_naming(
        &["compound", "--db", db, "--evaluator", &format!("predictor:{truncated}")],
        "compound trains",
    );
    let out = dir.path().join("m.json");
    let out = out.to_str().expect("path");
    fails_naming(
        &["predictor", "fit", "--from", "accel-nasbench", "--out", out, "--holdout", "1"],
        "--holdout",
    );
    fails_naming(&["predictor", "fit", "--from", db, "--out", out], "needs --run");
    assert!(!std::path::Path::new(out).exists());
}

#[test]
fn a_screen_trains_the_fraction_the_predictor_ranks_highest() {
    let dir = tempfile::tempdir().expect("tempdir");
    let db = dir.path().join("s.db");
    let db = db.to_str().expect("path");
    oracle_run(db);
    let model = dir.path().join("m.json");
    let model = model.to_str().expect("path");
    json(&["predictor", "fit", "--from", db, "--run", "1", "--out", model, "--json"]);
    let screen = format!("predictor:{model}");
    let summary = json(&[
        "search",
        "--db",
        db,
        "--evaluator",
        "oracle",
        "--strategy",
        "random",
        "--seed",
        "7",
        "--trials",
        "40",
        "--finalists",
        "0",
        "--screen",
        &screen,
        "--screen-keep",
        "0.25",
        "--name",
        "screened",
        "--json",
    ]);
    assert_eq!(summary["trials_done"], 10, "a quarter trained: {summary}");
    assert_eq!(summary["trials_failed"], 30, "{summary}");
    let trials = json(&["trials", "--db", db, "--run", "screened", "--json"]);
    let trials = trials.as_array().expect("trials");
    // Within each batch (trials proposed at the same step), every trained candidate has a
    // predicted reward at least that of every screened one.
    let specs: Vec<String> = trials
        .iter()
        .map(|t| {
            t["blocks"]
                .as_array()
                .expect("blocks")
                .iter()
                .map(|b| b.as_str().expect("block"))
                .collect::<Vec<_>>()
                .join(",")
        })
        .collect();
    let mut args = vec!["predictor", "predict", model];
    args.extend(specs.iter().map(String::as_str));
    args.push("--json");
    let predicted = json(&args);
    let reward = |i: usize| {
        let p = &predicted[i];
        p["predicted"].as_f64().expect("p").clamp(0.0, 1.0)
            * (p["flops"].as_f64().expect("f") / 400e6).powf(-0.07)
    };
    let mut batches = std::collections::BTreeMap::<i64, (f64, f64)>::new();
    for (i, t) in trials.iter().enumerate() {
        let entry =
            batches.entry(t["step"].as_i64().expect("step")).or_insert((f64::INFINITY, f64::NEG_INFINITY));
        match t["state"].as_str() {
            Some("complete") => entry.0 = entry.0.min(reward(i)),
            _ => {
                assert_eq!(t["failure"], "rejected", "{t}");
                assert!(
                    t["error"].as_str().is_some_and(|e| e.starts_with("screened out by predictor:")),
                    "{t}"
                );
                entry.1 = entry.1.max(reward(i));
            }
        }
    }
    assert!(batches.len() >= 5, "{batches:?}");
    for (step, (lowest_kept, highest_screened)) in &batches {
        assert!(lowest_kept + 1e-9 >= *highest_screened, "step {step}: {lowest_kept} < {highest_screened}");
    }

    fails_naming(&["search", "--db", db, "--screen", "magic.json"], "expected predictor:MODEL");
    fails_naming(
        &["search", "--db", db, "--screen", &screen, "--screen-keep", "0"],
        "--screen-keep 0 is out of range",
    );
    fails_naming(
        &["search", "--db", db, "--space", "accel-nasbench", "--screen", &screen],
        "not on the searched space",
    );
}
