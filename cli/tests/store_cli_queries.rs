//! The query commands (`runs`, `trials`, `show`, `pareto`, `export`, `plot`) as a user runs
//! them: the built binary against a database filled through the store API.
#![allow(clippy::unwrap_used)]

use std::path::{Path, PathBuf};

use effnas_space::{presets, ArchSpec, SearchSpace};
use effnas_store::{EpochMetrics, NewRun, NewTrial, RunKind, RunStatus, Store, TrialMetrics};
use rand::SeedableRng;
use serde_json::Value;

mod common;
use common::{effnas, fails_naming, json, stdout_of};

const PROXY: &str = "fashion-mnist/e1/n2000/r32/seed0";

fn proxy_arch(mut arch: ArchSpec) -> ArchSpec {
    arch.resolution = 32;
    arch.num_classes = 10;
    arch.input_channels = 1;
    arch
}

/// A plausible accuracy for a proxy: larger networks do a little better, with noise.
fn accuracy_for(macs: u64, noise: f64) -> f64 {
    (0.80 + 0.035 * (macs as f64 / 1e6).log2() + noise).clamp(0.05, 0.99)
}

fn reward(accuracy: f64, macs: u64) -> f64 {
    accuracy * (macs as f64 / 8e6).powf(-0.07)
}

/// What the fixture holds, for the assertions.
struct Fixture {
    _dir: tempfile::TempDir,
    db: PathBuf,
    search_id: i64,
    b0_trial: i64,
    failed_trial: i64,
    complete: usize,
    total: usize,
}

impl Fixture {
    fn db(&self) -> &str {
        self.db.to_str().unwrap()
    }
}

/// An empty manual run, then a search run of 40 sampled architectures plus B0 and
/// MnasNet-A1: 36 complete (with curves), 3 failed, the rest pending.
fn fixture() -> Fixture {
    let dir = tempfile::tempdir().unwrap();
    let db = dir.path().join("effnas.db");
    let url = db.display().to_string();
    let runtime = tokio::runtime::Builder::new_current_thread().enable_all().build().unwrap();
    let (search_id, b0_trial, failed_trial, complete, total) = runtime.block_on(async {
        let store = Store::open(&url).await.unwrap();
        // The manual run comes first so that the search is the newest run, the default.
        store.create_run(&NewRun::new("effnas train b0", RunKind::Manual)).await.unwrap();
        let mut new = NewRun::new("fashion-search", RunKind::Search);
        new.seed = Some(1);
        new.config = serde_json::json!({"space": "default", "strategy": "rl"});
        let run = store.create_run(&new).await.unwrap();
        let space = SearchSpace::default_space();
        let mut rng = rand_chacha::ChaCha8Rng::seed_from_u64(7);
        let mut archs: Vec<ArchSpec> =
            (0..40).map(|_| proxy_arch(space.decode(&space.sample_tokens(&mut rng)).unwrap())).collect();
        archs.insert(5, proxy_arch(presets::preset("b0").unwrap()));
        archs.insert(20, proxy_arch(presets::preset("mnasnet-a1").unwrap()));
        let trials: Vec<NewTrial> = archs
            .iter()
            .enumerate()
            .map(|(i, a)| NewTrial::new(a.clone(), PROXY).at_step(i as i64 / 8))
            .collect();
        let ids = store.insert_trials(run, &trials).await.unwrap();
        let (mut complete, mut failed_trial) = (0, 0);
        for (i, (&id, arch)) in ids.iter().zip(&archs).enumerate().take(39) {
            let claimed = store.claim_trial(run, "host:1:0").await.unwrap().unwrap();
            assert_eq!(claimed.id, id);
            if i % 13 == 12 {
                store
                    .fail_trial(id, effnas_store::FailureKind::Diverged, "loss is NaN at step 3 (epoch 1)")
                    .await
                    .unwrap();
                failed_trial = id.0;
                continue;
            }
            let cost = effnas_space::cost(arch);
            let accuracy = accuracy_for(cost.macs, ((i * 37 % 11) as f64 - 5.0) / 250.0);
            for epoch in 0..3u32 {
                let e = EpochMetrics {
                    epoch,
                    train_loss: Some(1.5 / f64::from(epoch + 1)),
                    train_accuracy: Some(accuracy - 0.1 + 0.04 * f64::from(epoch)),
                    val_loss: Some(1.2 / f64::from(epoch + 1)),
                    val_accuracy: Some(accuracy - 0.08 + 0.04 * f64::from(epoch)),
                    learning_rate: Some(0.01 / f64::from(epoch + 1)),
                    seconds: Some(4.0),
                };
                store.record_epoch(id, &e).await.unwrap();
            }
            let metrics = TrialMetrics {
                accuracy,
                loss: 0.4,
                params: cost.params,
                flops: cost.macs,
                reward: reward(accuracy, cost.macs),
                latency_ms: None,
                seconds: 12.0 + i as f64,
                images_per_second: 500.0,
                extra: None,
            };
            store.complete_trial(id, &metrics).await.unwrap();
            complete += 1;
        }
        store.set_run_status(run, RunStatus::Interrupted).await.unwrap();
        store.close().await;
        (run.0, ids[5].0, failed_trial, complete, ids.len())
    });
    Fixture { _dir: dir, db, search_id, b0_trial, failed_trial, complete, total }
}

fn keys(value: &Value) -> Vec<&str> {
    value.as_object().unwrap().keys().map(String::as_str).collect()
}

#[test]
fn runs_lists_every_run_with_counts_in_json_and_as_a_table() {
    let f = fixture();
    let runs = json(&["runs", "--db", f.db(), "--json"]);
    let runs = runs.as_array().unwrap();
    assert_eq!(runs.len(), 2);
    for key in [
        "id",
        "name",
        "kind",
        "status",
        "trials_done",
        "trials_failed",
        "trials_total",
        "best_reward",
        "started",
        "duration_seconds",
    ] {
        assert!(keys(&runs[0]).contains(&key), "runs --json lacks {key}: {:?}", keys(&runs[0]));
    }
    let search = &runs[1];
    assert_eq!(search["id"], f.search_id);
    assert_eq!(
        (search["name"].as_str(), search["kind"].as_str(), search["status"].as_str()),
        (Some("fashion-search"), Some("search"), Some("interrupted"))
    );
    assert_eq!(
        (search["trials_done"].as_u64(), search["trials_failed"].as_u64(), search["trials_total"].as_u64()),
        (Some(f.complete as u64), Some(3), Some(f.total as u64))
    );
    assert!(search["best_reward"].as_f64().unwrap() > 0.5);
    assert!(search["duration_seconds"].as_f64().unwrap() >= 0.0);
    assert_eq!((runs[0]["kind"].as_str(), &runs[0]["best_reward"]), (Some("manual"), &Value::Null));

    let table = stdout_of(&["runs", "--db", f.db()]);
    let lines: Vec<&str> = table.lines().collect();
    assert_eq!(lines.len(), 4, "{table}");
    assert!(lines[0].starts_with("id") && lines[0].contains("best reward") && lines[0].contains("duration"));
    assert!(lines[2].contains("effnas train b0") && lines[2].contains("manual"));
    assert!(
        lines[3].contains("fashion-search")
            && lines[3].contains("interrupted")
            && lines[3].contains(&f.complete.to_string())
    );
}

#[test]
fn trials_filter_sort_and_limit_with_the_promised_json_keys() {
    let f = fixture();
    let all = json(&["trials", "--db", f.db(), "--run", "fashion-search", "--json"]);
    let all = all.as_array().unwrap();
    assert_eq!(all.len(), f.total);
    for key in ["id", "state", "accuracy", "flops", "params", "reward", "seconds", "blocks"] {
        assert!(keys(&all[0]).contains(&key), "trials --json lacks {key}");
    }
    assert_eq!(all[0]["blocks"].as_array().unwrap().len(), 7, "blocks are full strings in JSON");
    assert!(all[0]["blocks"][0].as_str().unwrap().contains("_k"));
    let b0 = all.iter().find(|t| t["id"] == f.b0_trial).unwrap();
    assert_eq!(b0["reference"], "EfficientNet-B0");

    let top = json(&["trials", "--db", f.db(), "--run", &f.search_id.to_string(), "--top", "5", "--json"]);
    let rewards: Vec<f64> = top.as_array().unwrap().iter().map(|t| t["reward"].as_f64().unwrap()).collect();
    assert_eq!(rewards.len(), 5);
    assert!(rewards.windows(2).all(|w| w[0] >= w[1]), "--top sorts by reward: {rewards:?}");
    let best = all.iter().filter_map(|t| t["reward"].as_f64()).fold(f64::MIN, f64::max);
    assert_eq!(rewards[0], best);

    let failed = json(&["trials", "--db", f.db(), "--state", "failed", "--json"]);
    assert_eq!(failed.as_array().unwrap().len(), 3);
    assert!(failed
        .as_array()
        .unwrap()
        .iter()
        .all(|t| t["state"] == "failed" && t["error"].as_str().unwrap().contains("NaN")));

    let run = f.search_id.to_string();
    let cheap = json(&[
        "trials",
        "--db",
        f.db(),
        "--run",
        &run,
        "--max-flops",
        "5M",
        "--min-accuracy",
        "85%",
        "--sort",
        "flops",
        "--json",
    ]);
    let cheap = cheap.as_array().unwrap();
    assert!(!cheap.is_empty());
    let flops: Vec<u64> = cheap.iter().map(|t| t["flops"].as_u64().unwrap()).collect();
    assert!(flops.iter().all(|&f| f <= 5_000_000) && flops.windows(2).all(|w| w[0] <= w[1]), "{flops:?}");
    assert!(cheap.iter().all(|t| t["accuracy"].as_f64().unwrap() >= 0.85));
    let expected = all
        .iter()
        .filter(|t| {
            t["flops"].as_u64().unwrap() <= 5_000_000 && t["accuracy"].as_f64().is_some_and(|a| a >= 0.85)
        })
        .count();
    assert_eq!(cheap.len(), expected);
}

#[test]
fn trials_table_abbreviates_blocks_and_names_reference_networks() {
    let f = fixture();
    let text = stdout_of(&["trials", "--db", f.db(), "--sort", "accuracy"]);
    assert!(
        text.starts_with(&format!("run {} (fashion-search): {} of {} trials", f.search_id, f.total, f.total)),
        "{text}"
    );
    assert!(text.contains("= EfficientNet-B0") && text.contains("= MnasNet-A1"), "{text}");
    assert!(!text.contains("_s22_"), "full block strings in the table:\n{text}");
    assert!(text.contains("blocks: one per stage"));
    let header = text.lines().nth(1).unwrap();
    for column in ["id", "state", "accuracy", "flops", "params", "reward", "blocks"] {
        assert!(header.contains(column), "{header}");
    }
    assert!(text.lines().all(|l| l.chars().count() < 160), "lines stay readable:\n{text}");
}

#[test]
fn show_gives_one_trial_in_full() {
    let f = fixture();
    let text = stdout_of(&["show", "--db", f.db(), &f.b0_trial.to_string()]);
    for needle in [
        "= EfficientNet-B0",
        "r2_k3_s22_e6_i16_o24_se0.25",
        "32×32×1 input",
        "cost:",
        "accuracy",
        "curve:",
        "val acc",
        PROXY,
    ] {
        assert!(text.contains(needle), "{needle:?} missing in\n{text}");
    }
    let value = json(&["show", "--db", f.db(), &f.b0_trial.to_string(), "--json"]);
    assert_eq!(value["id"], f.b0_trial);
    assert_eq!(value["epochs"].as_array().unwrap().len(), 3);
    assert_eq!(value["arch"]["resolution"], 32);
    assert_eq!(
        value["flops"].as_u64(),
        Some(effnas_space::cost(&proxy_arch(presets::preset("b0").unwrap())).macs)
    );

    let failed = stdout_of(&["show", "--db", f.db(), &f.failed_trial.to_string()]);
    assert!(
        failed.contains("failed") && failed.contains("failure (diverged): loss is NaN at step 3 (epoch 1)"),
        "{failed}"
    );
    fails_naming(&["show", "--db", f.db(), "999999"], "999999");
}

#[test]
fn pareto_lists_exactly_the_non_dominated_trials() {
    let f = fixture();
    let all = json(&["trials", "--db", f.db(), "--state", "complete", "--json"]);
    let points: Vec<(i64, f64, u64)> = all
        .as_array()
        .unwrap()
        .iter()
        .map(|t| (t["id"].as_i64().unwrap(), t["accuracy"].as_f64().unwrap(), t["flops"].as_u64().unwrap()))
        .collect();
    let mut expected: Vec<i64> = points
        .iter()
        .filter(|(_, acc, flops)| {
            !points.iter().any(|(_, a, f)| a >= acc && f <= flops && (a > acc || f < flops))
        })
        .map(|p| p.0)
        .collect();
    let front = json(&["pareto", "--db", f.db(), "--run", "fashion-search", "--json"]);
    let front = front.as_array().unwrap();
    let flops: Vec<u64> = front.iter().map(|t| t["flops"].as_u64().unwrap()).collect();
    assert!(flops.windows(2).all(|w| w[0] <= w[1]), "cheapest first");
    let mut got: Vec<i64> = front.iter().map(|t| t["id"].as_i64().unwrap()).collect();
    expected.sort_unstable();
    got.sort_unstable();
    assert!(got.len() >= 2 && got.len() < points.len());
    assert_eq!(got, expected);

    let text = stdout_of(&["pareto", "--db", f.db()]);
    assert!(
        text.contains(&format!("{} of {} complete trials are Pareto-optimal", expected.len(), f.complete)),
        "{text}"
    );
}

/// Splits RFC 4180 CSV into records of fields.
fn parse_csv(text: &str) -> Vec<Vec<String>> {
    let (mut records, mut record, mut field) = (Vec::new(), Vec::new(), String::new());
    let (mut quoted, mut chars) = (false, text.chars().peekable());
    while let Some(c) = chars.next() {
        match (quoted, c) {
            (true, '"') if chars.peek() == Some(&'"') => {
                field.push('"');
                chars.next();
            }
            (true, '"') => quoted = false,
            (true, c) => field.push(c),
            (false, '"') => quoted = true,
            (false, ',') => record.push(std::mem::take(&mut field)),
            (false, '\r') => {}
            (false, '\n') => {
                record.push(std::mem::take(&mut field));
                records.push(std::mem::take(&mut record));
            }
            (false, c) => field.push(c),
        }
    }
    records
}

#[test]
fn export_writes_every_trial_as_csv_or_json() {
    let f = fixture();
    let csv = stdout_of(&["export", "--db", f.db(), "--run", "fashion-search", "--format", "csv"]);
    let records = parse_csv(&csv);
    assert_eq!(records.len(), f.total + 1);
    let header = &records[0];
    assert!(records.iter().all(|r| r.len() == header.len()), "every row has every column");
    let column =
        |name: &str| header.iter().position(|h| h == name).unwrap_or_else(|| panic!("no column {name}"));
    for name in ["id", "state", "accuracy", "flops", "params", "reward", "blocks", "arch", "error"] {
        column(name);
    }
    let b0 = records.iter().find(|r| r[column("id")] == f.b0_trial.to_string()).unwrap();
    assert_eq!(b0[column("blocks")], presets::EFFICIENTNET_B0_BLOCKS.join(","));
    let arch: Value = serde_json::from_str(&b0[column("arch")]).unwrap();
    assert_eq!(arch["num_classes"], 10);
    assert_eq!(records.iter().skip(1).filter(|r| r[column("state")] == "complete").count(), f.complete);

    let out = f.db.with_file_name("trials.json");
    let done = effnas(&["export", "--db", f.db(), "--format", "json", "--out", out.to_str().unwrap()]);
    assert!(done.status.success() && done.stdout.is_empty());
    let rows: Value = serde_json::from_str(&std::fs::read_to_string(&out).unwrap()).unwrap();
    assert_eq!(rows.as_array().unwrap().len(), f.total);
    assert_eq!(rows[0]["run_name"], "fashion-search");
}

fn png_size(path: &Path) -> (u32, u32) {
    let bytes = std::fs::read(path).unwrap();
    assert_eq!(&bytes[..8], b"\x89PNG\r\n\x1a\n", "{} is a PNG", path.display());
    assert_eq!(&bytes[12..16], b"IHDR");
    let be = |at: usize| u32::from_be_bytes(bytes[at..at + 4].try_into().unwrap());
    (be(16), be(20))
}

#[test]
fn plot_writes_real_svg_and_png_images() {
    let f = fixture();
    let svg = f.db.with_file_name("run.svg");
    let out = effnas(&["plot", "--db", f.db(), "--run", "fashion-search", "--out", svg.to_str().unwrap()]);
    assert!(out.status.success(), "{}", String::from_utf8_lossy(&out.stderr));
    let text = std::fs::read_to_string(&svg).unwrap();
    assert!(text.starts_with("<svg") && text.trim_end().ends_with("</svg>"));
    for needle in ["best so far", "Pareto front", "EfficientNet-B0", "MnasNet-A1", "multiply-adds"] {
        assert!(text.contains(needle), "{needle} missing from the SVG");
    }
    assert!(text.matches("<circle").count() >= 2 * f.complete, "a point per trial in each panel");

    let png = f.db.with_file_name("run.png");
    let out = effnas(&[
        "plot",
        "--db",
        f.db(),
        "--out",
        png.to_str().unwrap(),
        "--width",
        "1200",
        "--height",
        "500",
    ]);
    assert!(out.status.success(), "{}", String::from_utf8_lossy(&out.stderr));
    assert_eq!(png_size(&png), (1200, 500));
    assert!(std::fs::metadata(&png).unwrap().len() > 20_000, "a real picture, not a blank");
    if let Ok(keep) = std::env::var("EFFNAS_KEEP_PLOT") {
        std::fs::copy(&png, keep).unwrap();
    }

    fails_naming(
        &["plot", "--db", f.db(), "--out", f.db.with_file_name("run.pdf").to_str().unwrap()],
        ".svg or .png",
    );
    fails_naming(
        &["plot", "--db", f.db(), "--run", "effnas train b0", "--out", png.to_str().unwrap()],
        "no complete trials",
    );
}

#[test]
fn hostile_run_ids_are_errors_and_the_tables_survive() {
    let f = fixture();
    fails_naming(&["trials", "--db", f.db(), "--run", "1; DROP TABLE trials"], "1; DROP TABLE trials");
    fails_naming(&["export", "--db", f.db(), "--run", "1' OR '1'='1"], "no run");
    fails_naming(&["show", "--db", f.db(), "1; DROP TABLE trials"], "1; DROP TABLE trials");
    let all = json(&["trials", "--db", f.db(), "--run", &f.search_id.to_string(), "--json"]);
    assert_eq!(all.as_array().unwrap().len(), f.total, "the trials table is intact");
}

#[test]
fn wrong_databases_get_one_line_errors_and_nothing_is_created() {
    let dir = tempfile::tempdir().unwrap();
    let missing = dir.path().join("typo.db");
    fails_naming(&["runs", "--db", missing.to_str().unwrap()], "no such database");
    assert!(!missing.exists(), "a query must not create a database");

    let text = dir.path().join("notes.txt");
    std::fs::write(&text, "not a database at all\n").unwrap();
    fails_naming(&["trials", "--db", text.to_str().unwrap()], "not an SQLite database");

    // A PostgreSQL server that is not there (nothing listens on port 1): one line, no password.
    fails_naming(
        &["runs", "--db", "postgres://effnas:hunter2@127.0.0.1:1/effnas"],
        "effnas:***@127.0.0.1:1/effnas: cannot reach the database server",
    );
    fails_naming(&["trials", "--db", "x.db", "--min-accuracy", "90"], "percentage");
    fails_naming(&["trials", "--db", "x.db", "--max-flops", "lots"], "lots");

    // An empty database: friendly output, not an error, for `runs`; an error naming the
    // problem for commands that need a run.
    let empty = dir.path().join("empty.db");
    let runtime = tokio::runtime::Builder::new_current_thread().enable_all().build().unwrap();
    runtime.block_on(async { Store::open(empty.to_str().unwrap()).await.unwrap().close().await });
    assert_eq!(json(&["runs", "--db", empty.to_str().unwrap(), "--json"]), Value::Array(vec![]));
    fails_naming(&["trials", "--db", empty.to_str().unwrap()], "no runs yet");
}

/// `EFFNAS_DB` stands for `--db` (so a database URL with a password need not be on a command
/// line that `ps` shows); an explicit `--db` wins.
#[test]
fn the_database_may_come_from_effnas_db() {
    let f = fixture();
    let with_env = |args: &[&str], db: &str| {
        let out = std::process::Command::new(env!("CARGO_BIN_EXE_effnas"))
            .args(args)
            .env("EFFNAS_DB", db)
            .output()
            .expect("effnas runs");
        assert!(out.status.success(), "{}", String::from_utf8_lossy(&out.stderr));
        serde_json::from_slice::<Value>(&out.stdout).expect("JSON")
    };
    let direct = json(&["runs", "--db", f.db(), "--json"]);
    assert_eq!(with_env(&["runs", "--json"], f.db()), direct);
    assert_eq!(with_env(&["runs", "--db", f.db(), "--json"], "/nowhere/else.db"), direct);
}
