//! `effnas` processes that a test starts, signals and waits for, on any database (a SQLite path
//! or a PostgreSQL URL, passed in `EFFNAS_DB` as a user keeps a password off the command line).
//!
//! Every wait has a deadline and every process is killed when its handle is dropped, so a
//! failing test (a worker that never comes, a search that waits forever) fails with what the
//! process printed instead of hanging the suite.
#![allow(dead_code, clippy::unwrap_used)]

use std::io::Read;
use std::process::{Child, Command, ExitStatus, Output, Stdio};
use std::sync::{Arc, Mutex};
use std::thread::JoinHandle;
use std::time::{Duration, Instant};

use serde_json::Value;

/// The longest a test waits for one process to end.
pub const PROCESS_LIMIT: Duration = Duration::from_secs(300);

/// A proxy a little longer than [`super::TINY_PROXY`] (three epochs): long enough that a
/// worker is still training a trial that a test has just seen running.
pub const SLOW_PROXY: &[&str] = &[
    "--width",
    "0.25",
    "--depth",
    "0.5",
    "--train-images",
    "256",
    "--validation-images",
    "64",
    "--epochs",
    "3",
    "--resolution",
    "16",
];

/// A running `effnas`, killed when dropped; its output is read as it comes (a full pipe would
/// block it).
pub struct Proc {
    child: Child,
    stdout: Collected,
    /// What it printed on stderr so far (a test may wait for a line, [`Proc::wait_for_stderr`]).
    stderr: Collected,
    what: String,
}

/// What a pipe gave so far, appended by a thread as it comes, until the pipe closes.
struct Collected {
    seen: Arc<Mutex<Vec<u8>>>,
    reader: Option<JoinHandle<()>>,
}

impl Collected {
    fn start(pipe: Option<impl Read + Send + 'static>) -> Collected {
        let seen = Arc::new(Mutex::new(Vec::new()));
        let shared = Arc::clone(&seen);
        let reader = pipe.map(|mut pipe| {
            std::thread::spawn(move || {
                let mut chunk = [0u8; 4096];
                while let Ok(n @ 1..) = pipe.read(&mut chunk) {
                    shared.lock().unwrap().extend_from_slice(&chunk[..n]);
                }
            })
        });
        Collected { seen, reader }
    }

    /// Everything, once the pipe has closed (the process has ended).
    fn take(&mut self) -> Vec<u8> {
        if let Some(reader) = self.reader.take() {
            let _ = reader.join();
        }
        std::mem::take(&mut *self.seen.lock().unwrap())
    }
}

impl Proc {
    /// Starts `command` with its output piped; `what` names it in failures.
    pub fn spawn(mut command: Command, what: String) -> Proc {
        command.stdout(Stdio::piped()).stderr(Stdio::piped());
        let mut child = command.spawn().expect("effnas starts");
        let (stdout, stderr) = (Collected::start(child.stdout.take()), Collected::start(child.stderr.take()));
        Proc { child, stdout, stderr, what }
    }

    /// What the process printed on stderr so far.
    pub fn stderr_text(&self) -> String {
        String::from_utf8_lossy(&self.stderr.seen.lock().unwrap()).into_owned()
    }

    /// Waits (at most 120 s) until the process has printed `text` on stderr, e.g. a worker's
    /// "waiting for trials" once it has opened the database and looks for work.
    pub fn wait_for_stderr(&self, text: &str) {
        let started = Instant::now();
        loop {
            let printed = self.stderr_text();
            if printed.contains(text) {
                return;
            }
            assert!(
                started.elapsed() < Duration::from_secs(120),
                "{} never printed {text:?}: {printed}",
                self.what
            );
            std::thread::sleep(Duration::from_millis(20));
        }
    }

    pub fn id(&self) -> u32 {
        self.child.id()
    }

    /// Sends a signal (`-STOP`, `-CONT`, `-INT`, `-TERM`) to this process alone.
    pub fn signal(&self, name: &str) {
        let status = Command::new("kill").args([name, &self.id().to_string()]).status().expect("kill");
        assert!(status.success(), "kill {name} {}", self.what);
    }

    /// `kill -9`, and waits for it to be gone.
    pub fn kill(&mut self) {
        let _ = self.child.kill();
        let _ = self.child.wait();
    }

    pub fn has_ended(&mut self) -> bool {
        self.child.try_wait().expect("the process").is_some()
    }

    /// Waits for the process to end (for at most [`PROCESS_LIMIT`]: past it the process is
    /// killed and the test fails with what it printed) and returns its output, which must not
    /// report a panic.
    pub fn finish(mut self) -> Output {
        let deadline = Instant::now() + PROCESS_LIMIT;
        let status = loop {
            if let Some(status) = self.child.try_wait().expect("the process") {
                break Some(status);
            }
            if Instant::now() >= deadline {
                self.kill();
                break None;
            }
            std::thread::sleep(Duration::from_millis(50));
        };
        let output = self.output(status.unwrap_or_default());
        let stderr = String::from_utf8_lossy(&output.stderr);
        assert!(status.is_some(), "{} did not end within {PROCESS_LIMIT:?}; it printed: {stderr}", self.what);
        assert!(!stderr.contains("panicked"), "{}: {stderr}", self.what);
        output
    }

    fn output(&mut self, status: ExitStatus) -> Output {
        Output { status, stdout: self.stdout.take(), stderr: self.stderr.take() }
    }
}

impl Drop for Proc {
    fn drop(&mut self) {
        self.kill();
    }
}

/// `effnas ARGS` on `db`.
pub fn command(db: &str, args: &[&str]) -> Command {
    let mut command = Command::new(env!("CARGO_BIN_EXE_effnas"));
    command.args(args).env("EFFNAS_DB", db).stdout(Stdio::piped()).stderr(Stdio::piped());
    command
}

pub fn start(db: &str, args: &[&str]) -> Proc {
    Proc::spawn(command(db, args), format!("effnas {args:?}"))
}

/// Runs `effnas ARGS` on `db` to its end (within [`PROCESS_LIMIT`]).
pub fn run(db: &str, args: &[&str]) -> Output {
    start(db, args).finish()
}

/// The JSON a command that succeeded printed.
pub fn ok(out: &Output) -> Value {
    assert!(out.status.success(), "{}", String::from_utf8_lossy(&out.stderr));
    serde_json::from_slice(&out.stdout).expect("JSON on stdout")
}

/// Run 1's trials.
pub fn trials(db: &str) -> Vec<Value> {
    ok(&run(db, &["trials", "--run", "1", "--json"])).as_array().cloned().unwrap_or_default()
}

/// Run 1's trials in `state`; none while they cannot be read (the database not made yet, a
/// server restarting).
pub fn trials_in_state(db: &str, state: &str) -> Vec<Value> {
    readable_trials(db, &["--state", state])
}

/// Run 1's trials selected by `filter`; none while they cannot be read.
fn readable_trials(db: &str, filter: &[&str]) -> Vec<Value> {
    let mut args = vec!["trials", "--run", "1", "--json"];
    args.extend(filter);
    let out = run(db, &args);
    serde_json::from_slice::<Value>(&out.stdout).ok().and_then(|v| v.as_array().cloned()).unwrap_or_default()
}

/// Waits (at most 120 s) until `ready()` holds, asking every 50 ms.
pub fn wait_until(what: &str, mut ready: impl FnMut() -> bool) {
    let started = Instant::now();
    while !ready() {
        assert!(started.elapsed() < Duration::from_secs(120), "{what} never happened");
        std::thread::sleep(Duration::from_millis(50));
    }
}

/// A search that only queues (`--external-workers`) run 1's trials on `db`; returned once it
/// has queued its first trial (a worker started earlier, between the run and its first trial,
/// could reach its idle exit on a busy machine).
pub fn external_search(db: &str, trials: &str, extra: &[&str]) -> Proc {
    let mut args = vec!["search", "--external-workers", "--trials", trials, "--finalists", "0", "--json"];
    args.extend(extra);
    let search = start(db, &args);
    // A query is not asked before the search has made a SQLite file.
    let made = || db.contains("://") || std::path::Path::new(db).exists();
    wait_until("the search queueing its trials", || made() && !readable_trials(db, &[]).is_empty());
    search
}

/// A worker for run 1 with a lease of `lease` seconds that ends after `idle_exit` seconds
/// without a trial to claim; it logs its claims ([`WORKER_CLAIMED`]) at info level.
pub fn worker(db: &str, lease: &str, idle_exit: &str) -> Proc {
    logging_worker(
        db,
        &["worker", "--run", "1", "--lease", lease, "--idle-exit", idle_exit, "--json", "--threads", "1"],
    )
}

/// A worker for run 1 that waits for work until it is stopped ([`stop_workers`]; after four
/// idle minutes it ends by itself, which only bounds a failing test).
pub fn worker_until_stopped(db: &str, lease: &str) -> Proc {
    worker(db, lease, "240")
}

/// A worker for any run, until it is stopped; it logs at info level (its claims, and
/// [`WORKER_READY`] once it looks for work).
pub fn worker_for_any_run(db: &str) -> Proc {
    // Looking for work every 10 ms at most: an oracle trial takes microseconds, so with the
    // default half-second pause one worker could drain a whole run while the others sleep.
    logging_worker(
        db,
        &["worker", "--lease", "30", "--idle-exit", "240", "--poll", "0.01", "--json", "--threads", "1"],
    )
}

/// `effnas ARGS` on `db`, logging at info level.
fn logging_worker(db: &str, args: &[&str]) -> Proc {
    let mut worker = command(db, args);
    worker.env("RUST_LOG", "info");
    Proc::spawn(worker, format!("effnas {args:?}"))
}

/// `n` workers for any run, returned once every one has opened the database and looks for
/// work: on a busy machine a worker still starting could find the queue already drained by the
/// others (an oracle trial takes microseconds), and a test of shared work would see none.
pub fn ready_workers_for_any_run(db: &str, n: usize) -> Vec<Proc> {
    let workers: Vec<Proc> = (0..n).map(|_| worker_for_any_run(db)).collect();
    workers.iter().for_each(|w| w.wait_for_stderr(WORKER_READY));
    workers
}

/// What a worker logs once it looks for trials.
pub const WORKER_READY: &str = "waiting for trials";

/// Stops workers as a scheduler would (SIGTERM) and returns their summaries.
pub fn stop_workers(workers: Vec<Proc>) -> Vec<Value> {
    workers.iter().for_each(|w| w.signal("-TERM"));
    workers.into_iter().map(|w| ok(&w.finish())).collect()
}

/// What a worker logs once it has claimed a trial.
pub const WORKER_CLAIMED: &str = "claimed";

/// Waits until `worker` (started by [`worker`]) claims a trial of run 1, freezes it (SIGSTOP)
/// there and returns that trial as it stands, still running.
///
/// The worker is frozen as soon as it logs the claim, not once a query shows the trial
/// running: a tiny proxy can train in less time than a query process takes to start, and a
/// run of one trial would then never be seen running. A trial that has finished all the same
/// by the time the worker is frozen lets the worker go on to its next claim.
pub fn freeze_while_training(db: &str, worker: &Proc) -> Value {
    let started = Instant::now();
    let mut claims_seen = 0;
    loop {
        let printed = worker.stderr_text();
        assert!(started.elapsed() < Duration::from_secs(120), "the worker never trained a trial: {printed}");
        let claims = printed.matches(WORKER_CLAIMED).count();
        if claims == claims_seen {
            std::thread::sleep(Duration::from_millis(5));
            continue;
        }
        worker.signal("-STOP");
        if let Some(trial) = trials_in_state(db, "running").into_iter().next() {
            return trial;
        }
        claims_seen = claims;
        worker.signal("-CONT");
    }
}

/// The run ended with exactly `n` trials, each complete, each trained once (or reused, never
/// claimed).
pub fn assert_exactly_once(all: &[Value], n: usize) {
    assert_eq!(all.len(), n, "exactly N trials");
    assert!(all.iter().all(|t| t["state"] == "complete"), "{all:?}");
    let (reused, trained): (Vec<&Value>, Vec<&Value>) = all.iter().partition(|t| !t["reused_from"].is_null());
    assert!(reused.iter().all(|t| t["attempts"] == 0), "reused trials are never claimed");
    assert!(trained.iter().all(|t| t["attempts"] == 1), "each trained once");
}

/// Workers shared the run's trials exactly once: their own counts add up to the trained trials,
/// none superseded, more than one of them did some.
pub fn assert_shared_exactly_once(all: &[Value], n: usize, summaries: &[Value]) {
    assert_exactly_once(all, n);
    let trained = all.iter().filter(|t| t["reused_from"].is_null()).count() as u64;
    let completed: u64 = summaries.iter().map(|s| s["completed"].as_u64().expect("count")).sum();
    assert_eq!(completed, trained, "the workers' own counts add up: no trial finished twice");
    assert!(summaries.iter().all(|s| s["superseded"] == 0), "{summaries:?}");
    let names: std::collections::BTreeSet<&str> = all.iter().filter_map(|t| t["worker"].as_str()).collect();
    assert!(names.len() >= 2, "the work was shared: {names:?}");
}

/// After a worker was killed (or frozen) in `victim`: every trial complete, the victim trained
/// again (attempt 2) by another worker, and `rescuer_completed` is what the dead worker left.
pub fn assert_rescued(all: &[Value], n: usize, victim: &Value, rescuer_completed: Option<u64>) {
    assert_eq!(all.len(), n);
    assert!(all.iter().all(|t| t["state"] == "complete"), "{all:?}");
    let by_dead = all.iter().filter(|t| t["worker"] == victim["worker"]).count() as u64;
    assert_eq!(rescuer_completed, Some(n as u64 - by_dead), "the rescuer trains what the other left");
    let again = all.iter().find(|t| t["id"] == victim["id"]).expect("the stopped worker's trial");
    assert_eq!((&again["state"], again["attempts"].as_u64()), (&Value::from("complete"), Some(2)), "{again}");
    assert_ne!(again["worker"], victim["worker"], "another worker finished it");
}
