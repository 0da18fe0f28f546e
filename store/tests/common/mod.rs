//! Helpers shared by the store tests: a fresh database each, sample architectures, metrics.
#![allow(dead_code, clippy::unwrap_used)]

use std::collections::HashSet;
use std::path::PathBuf;

use effnas_space::{presets, ArchSpec};
use effnas_store::{NewRun, NewTrial, RunKind, Store, TrialId, TrialMetrics};

/// A temporary directory holding `effnas.db`; removed when dropped.
pub struct TempDb {
    pub dir: tempfile::TempDir,
    pub path: PathBuf,
}

impl TempDb {
    pub fn new() -> TempDb {
        let dir = tempfile::tempdir().expect("temp dir");
        let path = dir.path().join("effnas.db");
        TempDb { dir, path }
    }

    pub fn url(&self) -> String {
        self.path.display().to_string()
    }

    pub async fn open(&self) -> Store {
        Store::open(&self.url()).await.expect("open store")
    }

    /// A plain sqlx connection to the file, as another SQLite client would make: no
    /// migrations, no schema checks.
    pub async fn raw(&self) -> sqlx::SqliteConnection {
        use sqlx::Connection;
        sqlx::SqliteConnection::connect(&format!("sqlite://{}", self.url())).await.expect("raw connection")
    }
}

/// Distinct architectures for distinct `index`: B0 at 32 px, 10 classes, with the kernel of
/// each block, the repeats of one block and the class count varied by `index`.
pub fn arch(index: usize) -> ArchSpec {
    let mut arch = presets::preset("b0").expect("b0");
    arch.resolution = 32;
    arch.num_classes = 10;
    for (b, block) in arch.blocks.iter_mut().enumerate() {
        if (index >> b) & 1 == 1 {
            block.kernel = if block.kernel == 3 { 5 } else { 3 };
        }
    }
    arch.blocks[5].repeats = 1 + (index >> 7) as u32 % 4;
    // Beyond 512 variants, the classifier size keeps them apart.
    arch.num_classes = 10 + (index >> 9) as u32;
    arch
}

pub fn trial(index: usize) -> NewTrial {
    NewTrial::new(arch(index), "fashion-mnist/e1/n1000/r32/seed0")
}

pub fn metrics(accuracy: f64, flops: u64) -> TrialMetrics {
    TrialMetrics {
        accuracy,
        loss: 1.0 - accuracy,
        params: 1_000_000,
        flops,
        reward: accuracy * (flops as f64 / 4e8).powf(-0.07),
        latency_ms: None,
        seconds: 12.5,
        images_per_second: 800.0,
        extra: None,
    }
}

pub async fn search_run(store: &Store, name: &str) -> effnas_store::RunId {
    store.create_run(&NewRun::new(name, RunKind::Search)).await.expect("create run")
}

/// The trials racing workers claimed, one list each: together, every one of `total` trials
/// exactly once.
pub fn assert_each_claimed_once(claimed: &[Vec<TrialId>], total: usize) {
    let all: Vec<TrialId> = claimed.iter().flatten().copied().collect();
    let unique: HashSet<TrialId> = all.iter().copied().collect();
    assert_eq!(all.len(), total, "claims: {:?}", claimed.iter().map(Vec::len).collect::<Vec<_>>());
    assert_eq!(unique.len(), total, "a trial was claimed twice");
}
