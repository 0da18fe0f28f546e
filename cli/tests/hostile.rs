//! The hostile-input suite: commands given full disks, closed pipes, damaged or foreign files and
//! absurd values must fail with exit status 2 and one line naming the culprit, never panic, and
//! leave the database exactly as it was (`pragma integrity_check`, row counts).

mod common;

use std::path::{Path, PathBuf};
use std::process::{Command, Output, Stdio};

use common::stdout_of;
use effnas_store::Store;

/// Trials in the fixture's oracle run.
const FIXTURE_TRIALS: usize = 6;

/// A database with one finished oracle search, in its own folder.
struct Fixture {
    dir: tempfile::TempDir,
    db: PathBuf,
}

impl Fixture {
    fn new() -> Self {
        let dir = tempfile::tempdir().expect("tempdir");
        let db = dir.path().join("runs.db");
        let trials = FIXTURE_TRIALS.to_string();
        stdout_of(&[
            "search",
            "--db",
            path(&db),
            "--evaluator",
            "oracle",
            "--trials",
            &trials,
            "--workers",
            "1",
            "--name",
            "hostile",
        ]);
        Fixture { dir, db }
    }

    fn db(&self) -> &str {
        path(&self.db)
    }

    /// Integrity check and every row of every run and trial, as JSON: what must not change when
    /// a command is refused.
    fn state(&self) -> (Vec<String>, String, String) {
        let runtime = tokio::runtime::Builder::new_current_thread().enable_all().build().expect("runtime");
        let check = runtime.block_on(async {
            let store = Store::open_existing(self.db()).await.expect("the database opens");
            let check = store.integrity_check().await.expect("integrity check runs");
            store.close().await;
            check
        });
        let runs = stdout_of(&["runs", "--db", self.db(), "--json"]);
        let trials = stdout_of(&["trials", "--db", self.db(), "--json"]);
        (check, runs, trials)
    }
}

fn path(p: &Path) -> &str {
    p.to_str().expect("utf-8 path")
}

/// Runs `effnas` with stdout on `/dev/full`.
fn to_full_disk(args: &[&str]) -> Output {
    let full = std::fs::OpenOptions::new().write(true).open("/dev/full").expect("/dev/full");
    Command::new(env!("CARGO_BIN_EXE_effnas"))
        .args(args)
        .stdout(Stdio::from(full))
        .output()
        .expect("effnas runs")
}

/// Exit status 2 and exactly one line on stderr containing `needle`, no panic.
fn one_line_failure(args: &[&str], out: &Output, needle: &str) {
    let stderr = String::from_utf8_lossy(&out.stderr);
    assert_eq!(out.status.code(), Some(2), "{args:?}: {stderr}");
    assert!(!stderr.contains("panicked"), "{args:?}: {stderr}");
    assert_eq!(stderr.trim_end().lines().count(), 1, "{args:?}: {stderr}");
    assert!(stderr.contains(needle), "{args:?}: {stderr:?} should say {needle:?}");
}

#[test]
fn a_full_stdout_is_a_one_line_error_for_every_command_that_prints() {
    let f = Fixture::new();
    let before = f.state();
    assert_eq!(before.0, ["ok"]);
    let fresh = f.dir.path().join("fresh.db");
    let cases: Vec<Vec<&str>> = vec![
        vec!["runs", "--db", f.db()],
        vec!["runs", "--db", f.db(), "--json"],
        vec!["trials", "--db", f.db()],
        vec!["trials", "--db", f.db(), "--json"],
        vec!["show", "1", "--db", f.db()],
        vec!["pareto", "--db", f.db()],
        vec!["arch", "b0"],
        vec!["arch", "b0", "--json"],
        vec!["space", "default"],
        vec!["scale"],
        vec!["scale", "--json"],
        vec!["search", "--db", path(&fresh), "--evaluator", "oracle", "--trials", "2", "--workers", "1"],
        common::with_tiny_proxy(&["train", "b0", "--json"]),
    ];
    for args in &cases {
        let out = to_full_disk(args);
        one_line_failure(args, &out, "No space left on device");
    }
    assert_eq!(f.state(), before, "the database is unchanged");
}

#[test]
fn a_closed_pipe_ends_quietly() {
    let f = Fixture::new();
    let mut child = Command::new(env!("CARGO_BIN_EXE_effnas"))
        .args(["trials", "--db", f.db()])
        .stdout(Stdio::piped())
        .stderr(Stdio::piped())
        .spawn()
        .expect("effnas runs");
    drop(child.stdout.take()); // the reader goes away before the first line
    let out = child.wait_with_output().expect("effnas ends");
    assert_eq!(out.status.code(), Some(141), "{}", String::from_utf8_lossy(&out.stderr));
    assert!(out.stderr.is_empty(), "{}", String::from_utf8_lossy(&out.stderr));
}

/// One refused command line: `{db}` stands for the fixture's database and `{dir}` for its
/// folder; the message must contain `needle` (the culprit).
struct Case {
    args: &'static [&'static str],
    needle: &'static str,
}

const fn case(args: &'static [&'static str], needle: &'static str) -> Case {
    Case { args, needle }
}

/// Specs, flags, files and databases a hostile user might give, each refused before any work.
const REFUSED: &[Case] = &[
    // Block strings and specs.
    case(&["arch", "r1_k4_s11_e1_i32_o16"], "k4"),
    case(&["arch", "r0_k3_s11_e1_i32_o16"], "r0"),
    case(&["arch", "r1_k3_s11_e1_i32_o16_se7"], "se7"),
    case(&["arch", "r1_k3_s11_e1_i99999999999_o16"], "i99999999999"),
    case(&["arch", "nonsense"], "nonsense"),
    case(&["arch", "{dir}/missing.json"], "missing.json"),
    case(&["arch", "{dir}/garbage.json"], "garbage.json"),
    case(&["space", "nope"], "nope"),
    case(&["space", "{dir}/garbage.toml"], "garbage.toml"),
    case(&["train", "{dir}/garbage.json", "--db", "{db}"], "garbage.json"),
    // Numeric flags.
    case(&["scale", "--phi", "x"], "--phi"),
    case(&["scale", "--alpha", "nan"], "--alpha"),
    case(&["scale", "--alpha", "-1"], "-1"),
    case(&["train", "b0", "--epochs", "0", "--db", "{db}"], "epochs"),
    case(&["train", "b0", "--resolution", "100000", "--db", "{db}"], "100000"),
    case(&["search", "--db", "{db}", "--evaluator", "oracle", "--trials", "0"], "--trials"),
    case(&["search", "--db", "{db}", "--evaluator", "oracle", "--w", "nan"], "--w"),
    case(&["search", "--db", "{db}", "--evaluator", "oracle", "--trials", "-3"], "-3"),
    case(&["compound", "--db", "{db}", "--evaluator", "oracle", "--step", "0"], "--step"),
    case(&["search", "--db", "{db}", "--evaluator", "oracle", "--population", "1000000000"], "--population"),
    case(&["search", "--db", "{db}", "--evaluator", "oracle", "--rl-batch", "0"], "--rl-batch"),
    case(&["search", "--db", "{db}", "--evaluator", "oracle", "--rl-lr", "0"], "--rl-lr"),
    case(&["search", "--db", "{db}", "--evaluator", "oracle", "--rl-entropy", "nan"], "--rl-entropy"),
    case(
        &["search", "--db", "{db}", "--evaluator", "oracle", "--rl-baseline-decay", "1"],
        "--rl-baseline-decay",
    ),
    case(&["search", "--db", "{db}", "--evaluator", "oracle", "--rl-epochs", "0"], "--rl-epochs"),
    case(
        &["search", "--db", "{db}", "--evaluator", "oracle", "--population", "4", "--tournament", "9"],
        "--tournament 9",
    ),
    case(&["trials", "--db", "{db}", "--sort", "nope"], "nope"),
    case(&["trials", "--db", "{db}", "--min-accuracy", "90"], "percentage"),
    case(&["export", "--db", "{db}", "--format", "xml"], "xml"),
    case(&["bogus"], "bogus"),
    // Runs and trials that do not exist, and injection in selectors.
    case(&["trials", "--db", "{db}", "--run", "99"], "99"),
    case(&["trials", "--db", "{db}", "--run", "1; DROP TABLE trials"], "DROP TABLE"),
    case(&["show", "999", "--db", "{db}"], "999"),
    case(&["show", "-1", "--db", "{db}"], "-1"),
    case(&["pareto", "--db", "{db}", "--run", "' OR '1'='1"], "OR"),
    case(&["search", "--db", "{db}", "--resume", "42"], "42"),
    // Files and databases that are not what they claim.
    case(&["runs", "--db", "{dir}"], "directory"),
    case(&["runs", "--db", "{dir}/garbage.json"], "not an SQLite database"),
    case(&["trials", "--db", "{dir}/missing.db"], "missing.db"),
    case(&["search", "--db", ":memory:", "--evaluator", "oracle", "--trials", "2"], "in-memory"),
    case(&["worker", "--db", "{dir}/missing.db"], "missing.db"),
    case(&["worker", "--db", "{db}", "--run", "99"], "99"),
    case(&["worker", "--db", "{db}", "--slots", "0"], "--slots"),
    case(&["worker", "--db", "{db}", "--lease", "-1"], "-1"),
    case(&["train", "b0", "--dataset", "{dir}/nowhere"], "nowhere"),
    case(&["train", "b0", "--dataset", "{dir}/garbage.json"], "garbage.json"),
];

#[test]
fn hostile_command_lines_are_refused_in_one_line_and_the_database_survives() {
    let f = Fixture::new();
    std::fs::write(f.dir.path().join("garbage.json"), "{\"blocks\": [1, 2, \u{0}").expect("write");
    std::fs::write(f.dir.path().join("garbage.toml"), "blocks = [[[").expect("write");
    let before = f.state();
    assert_eq!(before.0, ["ok"]);
    let dir = path(f.dir.path()).to_owned();
    for case in REFUSED {
        let args: Vec<String> =
            case.args.iter().map(|a| a.replace("{db}", f.db()).replace("{dir}", &dir)).collect();
        let args: Vec<&str> = args.iter().map(String::as_str).collect();
        let out = common::effnas(&args);
        one_line_failure(&args, &out, case.needle);
        assert!(out.stdout.is_empty(), "{args:?} printed to stdout");
    }
    assert_eq!(f.state(), before, "no refused command changed the database");
    assert!(!f.dir.path().join("missing.db").exists(), "a query created a database");
}
