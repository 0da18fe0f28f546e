//! Finalists as a user meets them: a search (and a compound grid) ends by re-training its best
//! trials with fresh seeds and names the best mean as its answer; `runs`, `trials`, `show`,
//! `pareto` and `export` show it; an interrupted finalist stage resumes without training anything
//! twice.

use serde_json::Value;

mod common;
use common::{exported, interrupt_when, json, run_one_trials, stdout_of, with_tiny_proxy};

#[test]
fn an_oracle_search_ends_with_finalists_and_an_answer_every_query_shows() {
    let dir = tempfile::tempdir().expect("tempdir");
    let db = dir.path().join("f.db");
    let db = db.to_str().expect("path");
    let out = json(&[
        "search",
        "--db",
        db,
        "--evaluator",
        "oracle",
        "--trials",
        "20",
        "--finalists",
        "3",
        "--final-seeds",
        "3",
        "--include",
        "mnasnet-a1",
        "--name",
        "with",
        "--json",
    ]);
    assert_eq!(out["status"], "complete");
    let finalists = out["finalists"].as_array().expect("finalists");
    // The best three distinct architectures, and MnasNet-A1 (included) unless it is one of them.
    assert!((3..=4).contains(&finalists.len()), "{}", finalists.len());
    for f in finalists {
        assert_eq!((f["complete"].as_u64(), f["pending"].as_u64()), (Some(3), Some(0)), "{f}");
        assert!(f["reward"]["std"].is_number(), "three seeds have a spread: {f}");
    }
    let answer = &out["answer"];
    let best_mean = finalists.iter().filter_map(|f| f["reward"]["mean"].as_f64()).fold(f64::MIN, f64::max);
    assert_eq!(answer["reward"]["mean"].as_f64(), Some(best_mean));

    let trials = exported(db, "with");
    let own = trials.iter().filter(|t| t["setting"] == 0).count();
    let repeats: Vec<&Value> = trials.iter().filter(|t| t["setting"] != 0).collect();
    assert_eq!(own, 20, "the search's own trials");
    assert_eq!(repeats.len(), finalists.len() * 3);
    for t in &repeats {
        let parent = t["parent"].as_i64().expect("a finalist names its trial");
        let source = trials.iter().find(|s| s["id"].as_i64() == Some(parent)).expect("parent in the run");
        assert_eq!(source["arch_hash"], t["arch_hash"]);
    }
    let answer_trial = answer["trial"].as_i64().expect("trial");
    let row = trials.iter().find(|t| t["id"].as_i64() == Some(answer_trial)).expect("answer row");
    assert_eq!(row["final_seeds"], 3);

    let runs = json(&["runs", "--db", db, "--json"]);
    assert_eq!(runs[0]["answer"]["trial"].as_i64(), Some(answer_trial));
    let listed = stdout_of(&["trials", "--db", db, "--run", "with"]);
    assert!(listed.contains("finalists, re-trained with fresh seeds"), "{listed}");
    let shown = stdout_of(&["show", &answer_trial.to_string(), "--db", db]);
    assert!(shown.contains("finalist: re-trained 3 times"), "{shown}");
    let csv = stdout_of(&["export", "--db", db, "--run", "with"]);
    assert!(csv.lines().next().is_some_and(|h| h.contains("final_reward_mean")), "{csv}");
    let front = json(&["pareto", "--db", db, "--run", "with", "--json"]);
    assert!(
        front.as_array().expect("list").iter().all(|t| t["setting"] == 0),
        "repeats are not on the front"
    );

    // --finalists 0: the search's trials only, no answer.
    let out =
        json(&["search", "--db", db, "--evaluator", "oracle", "--trials", "5", "--finalists", "0", "--json"]);
    assert!(out["answer"].is_null() && out["finalists"].as_array().is_some_and(Vec::is_empty), "{out}");
}

#[test]
fn a_compound_grid_re_trains_its_best_points_and_scale_uses_the_answer() {
    let dir = tempfile::tempdir().expect("tempdir");
    let db = dir.path().join("c.db");
    let db = db.to_str().expect("path");
    let out = json(&[
        "compound",
        "--db",
        db,
        "--evaluator",
        "oracle",
        "--step",
        "0.1",
        "--finalists",
        "2",
        "--final-seeds",
        "2",
        "--name",
        "grid",
        "--json",
    ]);
    let finalists = out["finalists"].as_array().expect("finalists");
    assert_eq!(finalists.len(), 2);
    let answer = out["answer"]["trial"].as_i64().expect("answer");
    let point = out["points"]
        .as_array()
        .expect("points")
        .iter()
        .find(|p| p["trial"].as_i64() == Some(answer))
        .cloned();
    let point = point.expect("the answer is a grid point");
    // At φ = 1 the depth and width multipliers are the answer's α and β.
    let scaled = json(&["scale", "--db", db, "--from-run", "grid", "--phi", "1", "--json"]);
    assert_eq!(scaled[0]["depth"], point["alpha"], "{scaled}");
    assert_eq!(scaled[0]["width"], point["beta"], "{scaled}");
}

#[test]
fn ctrl_c_in_the_finalist_stage_resumes_into_it_and_trains_nothing_twice() {
    let dir = tempfile::tempdir().expect("tempdir");
    let db = dir.path().join("r.db");
    let db = db.to_str().expect("path");
    let args = with_tiny_proxy(&[
        "search",
        "--db",
        db,
        "--trials",
        "3",
        "--workers",
        "1",
        "--finalists",
        "2",
        "--final-seeds",
        "2",
        "--strategy",
        "random",
    ]);
    // Interrupted as soon as the first finalist training is queued.
    let out = interrupt_when(&args, || run_one_trials(db).iter().any(|t| t["setting"] != 0));
    assert_eq!(out.status.code(), Some(130), "{}", String::from_utf8_lossy(&out.stderr));

    let resumed = json(&["search", "--db", db, "--resume", "1", "--json"]);
    assert_eq!(resumed["status"], "complete");
    let trials = exported(db, "1");
    assert_eq!(trials.iter().filter(|t| t["setting"] == 0).count(), 3, "no new search trials");
    let repeats: Vec<&Value> = trials.iter().filter(|t| t["setting"] != 0).collect();
    let finalists = resumed["finalists"].as_array().expect("finalists").len();
    assert_eq!(repeats.len(), finalists * 2, "each finalist seed once");
    assert!(repeats.iter().all(|t| t["state"] == "complete"));
}
