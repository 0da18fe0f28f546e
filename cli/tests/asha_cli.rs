//! `effnas search --fidelity asha`: candidates promoted through rungs of longer training, linked
//! to the trial they came from; the budget counts candidates; finalists come from the highest
//! rung; Ctrl-C and `--resume` promote nothing twice.

use std::collections::HashSet;

use serde_json::Value;

mod common;
use common::{exported, interrupt_when, json, run_one_trials, with_tiny_proxy};

fn by_id(trials: &[Value], id: &Value) -> Value {
    trials.iter().find(|t| t["id"] == *id).cloned().expect("a trial of the run")
}

#[test]
fn an_oracle_asha_search_promotes_the_best_through_its_rungs() {
    let dir = tempfile::tempdir().expect("tempdir");
    let db = dir.path().join("a.db");
    let db = db.to_str().expect("path");
    let out = json(&[
        "search",
        "--db",
        db,
        "--evaluator",
        "oracle",
        "--fidelity",
        "asha",
        "--rungs",
        "3",
        "--eta",
        "3",
        "--trials",
        "27",
        "--finalists",
        "2",
        "--final-seeds",
        "2",
        "--workers",
        "2",
        "--json",
    ]);
    assert_eq!(out["status"], "complete");
    let trials = exported(db, "1");
    let at = |rung: u64| trials.iter().filter(|t| t["setting"] == rung).collect::<Vec<_>>();
    assert_eq!(at(0).len(), 27, "the budget counts candidates at rung 0");
    assert!(!at(1).is_empty() && !at(2).is_empty(), "promotions reach the top rung");
    for rung in [1, 2] {
        for t in at(rung) {
            let parent = by_id(&trials, &t["parent"]);
            assert_eq!(parent["setting"], rung - 1, "promoted from the rung below");
            assert_eq!(parent["state"], "complete");
            assert_eq!(parent["arch_hash"], t["arch_hash"]);
            assert_ne!(parent["proxy_key"], t["proxy_key"], "a rung has its own proxy");
        }
        // At most one promotion per trial and rung.
        let parents: HashSet<String> = at(rung).iter().map(|t| t["parent"].to_string()).collect();
        assert_eq!(parents.len(), at(rung).len());
    }
    // The best candidate at rung 0 is always among the promoted (it is in every top third).
    let reward = |t: &&Value| t["reward"].as_f64().unwrap_or(f64::MIN);
    let best = at(0).into_iter().max_by(|a, b| reward(a).total_cmp(&reward(b))).expect("best");
    assert!(at(1).iter().any(|t| t["parent"] == best["id"]), "the best rung-0 trial was promoted");
    // Finalists (settings 3 and 4) repeat trials of the highest rung reached.
    let finals: Vec<&Value> =
        trials.iter().filter(|t| t["setting"].as_u64().is_some_and(|s| s >= 3)).collect();
    assert_eq!(finals.len(), 2 * 2);
    assert!(
        finals.iter().all(|t| by_id(&trials, &t["parent"])["setting"] == 2),
        "finalists come from rung 2"
    );
    assert!(out["answer"]["trial"].is_number());
}

#[test]
fn a_second_asha_search_of_measured_candidates_still_promotes() {
    let dir = tempfile::tempdir().expect("tempdir");
    let db = dir.path().join("a.db");
    let db = db.to_str().expect("path");
    let search = |name: &str| {
        json(&[
            "search",
            "--db",
            db,
            "--name",
            name,
            "--evaluator",
            "oracle",
            "--fidelity",
            "asha",
            "--rungs",
            "2",
            "--eta",
            "3",
            "--trials",
            "9",
            "--finalists",
            "0",
            "--seed",
            "4",
            "--workers",
            "1",
            "--json",
        ])
    };
    search("first");
    let out = search("second");
    assert_eq!(out["status"], "complete");
    let trials = exported(db, "second");
    let at = |rung: u64| trials.iter().filter(|t| t["setting"] == rung).collect::<Vec<_>>();
    assert_eq!(at(0).len(), 9);
    assert!(at(0).iter().all(|t| !t["reused_from"].is_null()), "the same seed proposes the same candidates");
    // At least ⌊9/3⌋ = 3 promoted (more when an early leader is overtaken), although no rung-0
    // result was trained in this run.
    assert!(at(1).len() >= 3, "{} promoted", at(1).len());
}

#[test]
fn ctrl_c_and_resume_of_an_asha_search_promote_nothing_twice() {
    let dir = tempfile::tempdir().expect("tempdir");
    let db = dir.path().join("r.db");
    let db = db.to_str().expect("path");
    let args = with_tiny_proxy(&[
        "search",
        "--db",
        db,
        "--fidelity",
        "asha",
        "--rungs",
        "2",
        "--eta",
        "2",
        "--trials",
        "6",
        "--workers",
        "1",
        "--finalists",
        "0",
        "--strategy",
        "random",
    ]);
    let out =
        interrupt_when(&args, || run_one_trials(db).iter().filter(|t| t["state"] == "complete").count() >= 3);
    assert_eq!(out.status.code(), Some(130), "{}", String::from_utf8_lossy(&out.stderr));

    let resumed = json(&["search", "--db", db, "--resume", "1", "--json"]);
    assert_eq!(resumed["status"], "complete");
    let trials = exported(db, "1");
    assert_eq!(trials.iter().filter(|t| t["setting"] == 0).count(), 6);
    let promotions: Vec<&Value> = trials.iter().filter(|t| t["setting"] == 1).collect();
    let parents: HashSet<String> = promotions.iter().map(|t| t["parent"].to_string()).collect();
    assert_eq!(parents.len(), promotions.len(), "no trial promoted twice");
    assert!(!promotions.is_empty(), "⌊6/2⌋ = 3 go on");
    assert!(trials.iter().all(|t| t["state"] == "complete" || t["state"] == "failed"));
    // Rung 1 trains on η = 2 times the images.
    for t in &promotions {
        assert_eq!(t["extra"]["train_images"].as_u64(), Some(256), "{t}");
    }
}
