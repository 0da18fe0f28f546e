//! Running the built `effnas` binary from the CLI tests.
#![allow(dead_code)] // each test file uses its own part

pub mod procs;

use std::process::{Command, Output};

use serde_json::Value;

/// A proxy task small enough for a test to train in seconds on a CPU: B0's blocks at width 0.25
/// and depth 0.5, 128 training and 64 validation images at 16 px, one epoch.
pub const TINY_PROXY: &[&str] = &[
    "--width",
    "0.25",
    "--depth",
    "0.5",
    "--train-images",
    "128",
    "--validation-images",
    "64",
    "--epochs",
    "1",
    "--resolution",
    "16",
];

/// `command` followed by `args` and then [`TINY_PROXY`].
pub fn with_tiny_proxy<'a>(command: &[&'a str]) -> Vec<&'a str> {
    command.iter().copied().chain(TINY_PROXY.iter().copied()).collect()
}

/// Runs `effnas` with `args` and collects what it printed.
pub fn effnas(args: &[&str]) -> Output {
    Command::new(env!("CARGO_BIN_EXE_effnas")).args(args).output().expect("effnas runs")
}

/// Standard output of a command that must succeed.
pub fn stdout_of(args: &[&str]) -> String {
    let out = effnas(args);
    assert!(out.status.success(), "{args:?}: {}", String::from_utf8_lossy(&out.stderr));
    String::from_utf8(out.stdout).expect("utf-8")
}

/// The JSON a command that must succeed printed.
pub fn json(args: &[&str]) -> Value {
    serde_json::from_str(&stdout_of(args)).expect("valid JSON")
}

/// A failure: exit code 2, nothing on stdout, one line on stderr that contains `needle`.
pub fn fails_naming(args: &[&str], needle: &str) {
    let out = effnas(args);
    let stderr = String::from_utf8_lossy(&out.stderr);
    assert_eq!(out.status.code(), Some(2), "{args:?}: {stderr}");
    assert!(out.stdout.is_empty(), "{args:?} printed to stdout");
    assert_eq!(stderr.trim_end().lines().count(), 1, "{args:?}: {stderr}");
    assert!(stderr.contains(needle), "{args:?}: {stderr:?} should name {needle:?}");
    assert!(!stderr.contains("panicked"), "{stderr}");
}

/// Starts `effnas` with `args`, waits until `ready()` holds (asked every 200 ms, for at most 300
/// s), interrupts it as Ctrl-C would (SIGINT to the process alone) and returns what it printed.
pub fn interrupt_when(args: &[&str], mut ready: impl FnMut() -> bool) -> Output {
    let mut command = Command::new(env!("CARGO_BIN_EXE_effnas"));
    command.args(args);
    let child = procs::Proc::spawn(command, format!("effnas {args:?}"));
    let deadline = std::time::Instant::now() + std::time::Duration::from_secs(300);
    while !ready() {
        assert!(std::time::Instant::now() < deadline, "{args:?}: what the test waits for never happened");
        std::thread::sleep(std::time::Duration::from_millis(200));
    }
    child.signal("-INT");
    child.finish()
}

/// The trials of run 1 in `db` as `effnas trials --json` lists them; empty while it cannot (the
/// database not made yet).
pub fn run_one_trials(db: &str) -> Vec<Value> {
    let out = effnas(&["trials", "--db", db, "--run", "1", "--json"]);
    serde_json::from_slice::<Value>(&out.stdout).ok().and_then(|v| v.as_array().cloned()).unwrap_or_default()
}

/// `effnas search --db DB --evaluator oracle --finalists 0 REST…`, its JSON output: the oracle
/// search most of these tests start from.
pub fn oracle_search(db: &str, rest: &[&str]) -> Value {
    let mut args = vec!["search", "--db", db, "--evaluator", "oracle", "--finalists", "0"];
    args.extend_from_slice(rest);
    json(&args)
}

/// Every trial of `run` in `db`, in full, as `effnas export --format json` writes them.
pub fn exported(db: &str, run: &str) -> Vec<Value> {
    json(&["export", "--db", db, "--run", run, "--format", "json"]).as_array().cloned().expect("a list")
}
