//! Helpers for the `effnas serve` tests: a seeded database, the server as a child process on a
//! free port, and a minimal HTTP/1.0 client over a TCP socket (no client library needed).
#![allow(dead_code, clippy::unwrap_used)]

use std::io::{BufRead, BufReader, Read, Write};
use std::net::TcpStream;
use std::process::{Child, Command, Stdio};
use std::time::Duration;

use effnas_space::{presets, ArchSpec};
use effnas_store::{FailureKind, NewRun, NewTrial, RunId, RunKind, Store, TrialMetrics};

/// The run name every escaping test looks for.
pub const HOSTILE_NAME: &str = "<script>alert(1)</script>";

/// Distinct architectures for distinct `index` (B0 at 32 px with kernels and repeats varied);
/// index 0 is B0's own structure.
pub fn arch(index: usize) -> ArchSpec {
    let mut arch = presets::preset("b0").unwrap();
    arch.resolution = 32;
    arch.num_classes = 10;
    for (b, block) in arch.blocks.iter_mut().enumerate() {
        if (index >> b) & 1 == 1 {
            block.kernel = if block.kernel == 3 { 5 } else { 3 };
        }
    }
    if index >= 128 {
        arch.blocks[5].repeats = [1, 2, 3, 5][((index >> 7) - 1) % 4];
    }
    arch.num_classes = 10 + (index >> 9) as u32;
    arch
}

pub fn trial(index: usize) -> NewTrial {
    NewTrial::new(arch(index), "fashion-mnist/e1/n128/r16/seed0")
}

/// Metrics whose accuracy is a known function of the index: `0.5 + (index % 40) / 100`.
pub fn metrics(index: usize) -> TrialMetrics {
    let accuracy = 0.5 + (index % 40) as f64 / 100.0;
    let flops = 300_000_000 + (index as u64 * 7_919) % 200_000_000;
    TrialMetrics {
        accuracy,
        loss: 1.0 - accuracy,
        params: 1_000_000,
        flops,
        reward: accuracy * (flops as f64 / 4e8).powf(-0.07),
        latency_ms: None,
        seconds: 2.5,
        images_per_second: 800.0,
        extra: None,
    }
}

/// How a seeded run is made: `complete` trials, then `failed`, `pending`, and one running.
pub struct Seed {
    pub name: &'static str,
    pub complete: usize,
    pub failed: usize,
    pub pending: usize,
}

/// Creates a search run as `seed` says; returns its id. Trial `i` (1-based in queue order) of
/// the complete ones has accuracy `metrics(i - 1)`.
pub async fn seed(store: &Store, seed: &Seed) -> RunId {
    let mut new = NewRun::new(seed.name, RunKind::Search);
    new.config = serde_json::json!({"plan": {"trials": seed.complete + seed.failed + seed.pending + 1,
        "objective": {"metric": "flops", "target": 400e6}}});
    let run = store.create_run(&new).await.unwrap();
    for i in 0..seed.complete {
        store.insert_completed_trial(run, &trial(i), &metrics(i), &[]).await.unwrap();
    }
    for i in 0..seed.failed {
        let index = seed.complete + i;
        store
            .insert_failed_trial(run, &trial(index), FailureKind::Diverged, "loss <b>NaN</b>")
            .await
            .unwrap();
    }
    let queued: Vec<NewTrial> = (0..=seed.pending).map(|i| trial(seed.complete + seed.failed + i)).collect();
    store.insert_trials(run, &queued).await.unwrap();
    store.claim_trial(run, "worker-1").await.unwrap().unwrap();
    run
}

/// Runs `future` on a runtime of its own.
pub fn block_on<T>(future: impl std::future::Future<Output = T>) -> T {
    tokio::runtime::Builder::new_current_thread().enable_all().build().unwrap().block_on(future)
}

/// `effnas serve` on a free port of 127.0.0.1, stopped when dropped.
pub struct Server {
    child: Child,
    /// `http://127.0.0.1:PORT` (no trailing slash).
    pub base: String,
    pub port: u16,
}

impl Server {
    pub fn start(db: &str) -> Server {
        let mut child = Command::new(env!("CARGO_BIN_EXE_effnas"))
            .args(["serve", "--bind", "127.0.0.1:0", "--poll-ms", "200"])
            .env("EFFNAS_DB", db)
            .stdout(Stdio::piped())
            .stderr(Stdio::inherit())
            .spawn()
            .unwrap();
        let mut line = String::new();
        BufReader::new(child.stdout.take().unwrap()).read_line(&mut line).unwrap();
        let base = line.trim().trim_end_matches('/').to_owned();
        assert!(base.starts_with("http://127.0.0.1:"), "effnas serve printed {line:?}");
        let port = base.rsplit(':').next().unwrap().parse().unwrap();
        Server { child, base, port }
    }

    /// `GET path`: the status, the headers (lowercased names) and the body.
    pub fn get(&self, path: &str) -> Response {
        get(self.port, path)
    }

    /// `GET path`, which must answer 200; the body as text.
    pub fn text(&self, path: &str) -> String {
        let response = self.get(path);
        assert_eq!(response.status, 200, "{path}: {}", response.body);
        response.body
    }

    pub fn json(&self, path: &str) -> serde_json::Value {
        let response = self.get(path);
        assert_eq!(response.status, 200, "{path}: {}", response.body);
        assert!(response.header("content-type").contains("application/json"), "{path}");
        serde_json::from_str(&response.body).unwrap()
    }
}

impl Drop for Server {
    fn drop(&mut self) {
        let _ = self.child.kill();
        let _ = self.child.wait();
    }
}

pub struct Response {
    pub status: u16,
    pub headers: Vec<(String, String)>,
    pub body: String,
}

impl Response {
    pub fn header(&self, name: &str) -> &str {
        self.headers.iter().find(|(k, _)| k == name).map_or("", |(_, v)| v.as_str())
    }
}

/// One HTTP/1.0 request (the server answers with the whole body and closes).
pub fn get(port: u16, path: &str) -> Response {
    let mut stream = TcpStream::connect(("127.0.0.1", port)).unwrap();
    stream.set_read_timeout(Some(Duration::from_secs(60))).unwrap();
    write!(stream, "GET {path} HTTP/1.0\r\nHost: 127.0.0.1\r\n\r\n").unwrap();
    let mut raw = Vec::new();
    stream.read_to_end(&mut raw).unwrap();
    let text = String::from_utf8(raw).unwrap();
    let (head, body) = text.split_once("\r\n\r\n").unwrap();
    let mut lines = head.lines();
    let status = lines.next().unwrap().split(' ').nth(1).unwrap().parse().unwrap();
    let headers = lines
        .filter_map(|l| l.split_once(':'))
        .map(|(k, v)| (k.trim().to_ascii_lowercase(), v.trim().to_owned()))
        .collect();
    Response { status, headers, body: body.to_owned() }
}

/// An open `GET /events` stream, read event by event.
pub struct Events {
    reader: BufReader<TcpStream>,
}

impl Events {
    pub fn open(port: u16) -> Events {
        let mut stream = TcpStream::connect(("127.0.0.1", port)).unwrap();
        stream.set_read_timeout(Some(Duration::from_secs(60))).unwrap();
        write!(stream, "GET /events HTTP/1.0\r\nHost: 127.0.0.1\r\n\r\n").unwrap();
        let mut reader = BufReader::new(stream);
        let mut line = String::new();
        reader.read_line(&mut line).unwrap();
        assert!(line.contains(" 200 "), "{line}");
        Events { reader }
    }

    /// The data of the next `change` event.
    pub fn next_change(&mut self) -> String {
        let mut event = None;
        loop {
            let mut line = String::new();
            assert!(self.reader.read_line(&mut line).unwrap() > 0, "the event stream ended");
            let line = line.trim_end();
            if let Some(name) = line.strip_prefix("event:") {
                event = Some(name.trim().to_owned());
            } else if let Some(data) = line.strip_prefix("data:") {
                if event.as_deref() == Some("change") {
                    return data.trim().to_owned();
                }
            }
        }
    }
}
