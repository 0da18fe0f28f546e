//! Accel-NASBench: ImageNet proxy trainings in EfficientNet-B0's own search space (A. Ahmad et
//! al., "Accel-NASBench: Sustainable Benchmarking for Accelerator-Aware NAS", 2024; the file
//! `anb_dataset/anb_dataset_jsons.tar.gz` of github.com/afzalxo/Accel-NASBench, committed
//! unchanged as `benchmarks/accel-nasbench/anb_dataset_jsons.tar.gz`).
//!
//! The archive holds one `result_N.json` per training: the architecture as seven blocks of
//! EfficientNet-B0's skeleton, each with expansion e ∈ {1, 4, 6}, kernel k ∈ {3, 5}, layers
//! l ∈ {1, 2, 3} ({1, 2, 3, 4} for block 5) and squeeze-excitation on or off ([`AccelArch`]);
//! the top-1/top-5 validation accuracy and training time of one proxified ImageNet training; MACs
//! and parameters in millions; and throughput and latency measured on six accelerators
//! ([`Platform`]). The records are a sample of the space (about 1.04e11 members), not all of it:
//! the benchmark's authors fit a surrogate model on them to answer queries for any member; this
//! module reads the measured records only.

use std::collections::{BTreeMap, BTreeSet};
use std::fs::File;
use std::io::Read;
use std::path::{Path, PathBuf};

use flate2::read::GzDecoder;
use serde::Deserialize;

use super::BenchmarkError;

/// Where the data file lies, relative to the repository root.
pub const DATA_FILE: &str = "benchmarks/accel-nasbench/anb_dataset_jsons.tar.gz";

/// Blocks in EfficientNet-B0's skeleton.
pub const BLOCKS: usize = 7;

/// A block's expansion choices, in token order.
const EXPANSIONS: [u8; 3] = [1, 4, 6];
/// A block's kernel choices, in token order.
const KERNELS: [u8; 2] = [3, 5];

/// One block's choices.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash, PartialOrd, Ord)]
pub struct AccelBlock {
    /// Expansion ratio of the MBConv layers: 1, 4 or 6.
    pub expansion: u8,
    /// Depthwise kernel size: 3 or 5.
    pub kernel: u8,
    /// Number of layers: 1 to 3 (1 to 4 for block 5).
    pub layers: u8,
    /// Whether the layers have squeeze-excitation.
    pub se: bool,
}

/// An architecture of the space: one [`AccelBlock`] per block of EfficientNet-B0's skeleton
/// (strides `[1,2,2,2,1,2,1]`, output channels `[16,24,40,80,112,192,320]`).
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash, PartialOrd, Ord)]
pub struct AccelArch {
    pub blocks: [AccelBlock; BLOCKS],
}

impl AccelArch {
    /// EfficientNet-B0 itself (Tan & Le 2019, Table 1): e = `[1,6,6,6,6,6,6]`,
    /// k = `[3,3,5,3,5,5,3]`, l = `[1,2,2,3,3,4,1]`, SE everywhere.
    pub fn efficientnet_b0() -> Self {
        #[rustfmt::skip]
        const TABLE: [(u8, u8, u8); BLOCKS] = [
            // (e, k, l)
            (1, 3, 1),
            (6, 3, 2),
            (6, 5, 2),
            (6, 3, 3),
            (6, 5, 3),
            (6, 5, 4),
            (6, 3, 1),
        ];
        AccelArch {
            blocks: TABLE.map(|(expansion, kernel, layers)| AccelBlock {
                expansion,
                kernel,
                layers,
                se: true,
            }),
        }
    }

    /// The architecture's tokens in effnas's `accel-nasbench` space
    /// ([`effnas_space::SearchSpace::accel_nasbench`]): per block, the operator (expansion 1,
    /// 4, 6), kernel (3, 5), SE (off, on), skip and channels (one choice each) and layers
    /// (1 to 3 or 4) as choice indices.
    pub fn tokens(&self) -> Vec<usize> {
        let index = |list: &[u8], value: u8| list.iter().position(|&v| v == value).unwrap_or(0);
        self.blocks
            .iter()
            .flat_map(|b| {
                [
                    index(&EXPANSIONS, b.expansion),
                    index(&KERNELS, b.kernel),
                    usize::from(b.se),
                    0,
                    0,
                    usize::from(b.layers.saturating_sub(1)),
                ]
            })
            .collect()
    }

    /// The architecture of a token sequence of the `accel-nasbench` space, or `None` when the
    /// sequence is not one.
    pub fn from_tokens(tokens: &[usize]) -> Option<Self> {
        if tokens.len() != BLOCKS * 6 {
            return None;
        }
        let mut blocks = [AccelBlock { expansion: 1, kernel: 3, layers: 1, se: false }; BLOCKS];
        for (i, (block, t)) in blocks.iter_mut().zip(tokens.chunks(6)).enumerate() {
            let max_layers = if i == 5 { 4 } else { 3 };
            if t[2] > 1 || t[3] != 0 || t[4] != 0 || t[5] >= max_layers {
                return None;
            }
            *block = AccelBlock {
                expansion: *EXPANSIONS.get(t[0])?,
                kernel: *KERNELS.get(t[1])?,
                layers: u8::try_from(t[5] + 1).ok()?,
                se: t[2] == 1,
            };
        }
        Some(AccelArch { blocks })
    }

    fn from_json(fields: &BTreeMap<String, serde_json::Value>) -> Result<Self, String> {
        if fields.len() != 4 * BLOCKS {
            return Err(format!(
                "architecture has {} fields, expected {} (block0..block6 × e, k, l, se)",
                fields.len(),
                4 * BLOCKS
            ));
        }
        let small = |name: String, allowed: &[u8]| -> Result<u8, String> {
            let value = fields.get(&name).ok_or_else(|| format!("architecture lacks {name}"))?;
            value
                .as_u64()
                .and_then(|v| u8::try_from(v).ok())
                .filter(|v| allowed.contains(v))
                .ok_or_else(|| format!("architecture {name} is {value}, expected one of {allowed:?}"))
        };
        let mut blocks = [AccelBlock { expansion: 1, kernel: 3, layers: 1, se: false }; BLOCKS];
        for (i, block) in blocks.iter_mut().enumerate() {
            let layers: &[u8] = if i == 5 { &[1, 2, 3, 4] } else { &[1, 2, 3] };
            let se_name = format!("block{i}_se");
            let se = fields.get(&se_name).ok_or_else(|| format!("architecture lacks {se_name}"))?;
            *block = AccelBlock {
                expansion: small(format!("block{i}_e"), &[1, 4, 6])?,
                kernel: small(format!("block{i}_k"), &[3, 5])?,
                layers: small(format!("block{i}_l"), layers)?,
                se: se
                    .as_bool()
                    .ok_or_else(|| format!("architecture {se_name} is {se}, expected true or false"))?,
            };
        }
        Ok(AccelArch { blocks })
    }
}

/// An accelerator on which the benchmark measured every record.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash, PartialOrd, Ord)]
pub enum Platform {
    /// NVIDIA A100 GPU.
    A100,
    /// NVIDIA RTX 3090 GPU.
    Rtx3090,
    /// Google TPU v2.
    TpuV2,
    /// Google TPU v3.
    TpuV3,
    /// AMD/Xilinx ZCU102 FPGA board.
    Zcu102,
    /// AMD/Xilinx VCK190 board.
    Vck190,
}

impl Platform {
    /// Every platform.
    pub const ALL: [Platform; 6] = [
        Platform::A100,
        Platform::Rtx3090,
        Platform::TpuV2,
        Platform::TpuV3,
        Platform::Zcu102,
        Platform::Vck190,
    ];

    /// The platform's name in the file's keys (`throughput_<key>`, `latency_<key>`).
    pub fn key(self) -> &'static str {
        match self {
            Platform::A100 => "a100",
            Platform::Rtx3090 => "3090",
            Platform::TpuV2 => "tpuv2",
            Platform::TpuV3 => "tpuv3",
            Platform::Zcu102 => "zcu102",
            Platform::Vck190 => "vck190",
        }
    }

    fn from_key(key: &str) -> Option<Self> {
        Platform::ALL.into_iter().find(|p| p.key() == key)
    }
}

/// One measurement on one platform: the mean and, where the file gives one, the standard
/// deviation over repetitions, in the file's unit.
#[derive(Debug, Clone, Copy, PartialEq)]
pub struct Measurement {
    pub mean: f64,
    pub std: Option<f64>,
}

/// One training of the benchmark.
#[derive(Debug, Clone, PartialEq)]
pub struct AccelRecord {
    /// The entry's path inside the archive (`anb_dataset_jsons/result_N.json`).
    pub entry: String,
    /// `N` of `result_N.json`.
    pub index: u32,
    pub arch: AccelArch,
    /// ImageNet validation top-1 accuracy (%) of the proxified training.
    pub val_top1: f64,
    /// ImageNet validation top-5 accuracy (%).
    pub val_top5: f64,
    /// Training time of the proxified training, as the file gives it (seconds).
    pub train_time: f64,
    /// Multiply-accumulates in millions, thop-style (convolutions and linear layers plus 4 per
    /// batch-norm output element plus every average pool's input and output elements).
    pub macs_m: f64,
    /// Parameters in millions, every parameter counted.
    pub params_m: f64,
    /// Throughput (images per second) per platform; a platform the file has no value for
    /// (`null`) is absent.
    pub throughput: BTreeMap<Platform, Measurement>,
    /// Latency per platform (only the FPGA boards have one); absent where the file has `null`.
    pub latency: BTreeMap<Platform, Measurement>,
}

#[derive(Deserialize)]
struct RawRecord {
    architecture: BTreeMap<String, serde_json::Value>,
    metrics: RawMetrics,
    model_info: RawModelInfo,
    platform_perf: BTreeMap<String, BTreeMap<String, Option<f64>>>,
}

#[derive(Deserialize)]
struct RawMetrics {
    val_top1: f64,
    val_top5: f64,
    train_time: f64,
}

#[derive(Deserialize)]
struct RawModelInfo {
    macs: f64,
    params: f64,
}

impl AccelRecord {
    fn parse(entry: &str, index: u32, text: &str) -> Result<Self, String> {
        let raw: RawRecord = serde_json::from_str(text).map_err(|e| e.to_string())?;
        let arch = AccelArch::from_json(&raw.architecture)?;
        for (name, v) in [("val_top1", raw.metrics.val_top1), ("val_top5", raw.metrics.val_top5)] {
            if !(0.0..=100.0).contains(&v) {
                return Err(format!("metrics {name} is {v}, outside 0..=100"));
            }
        }
        let positive = [
            ("metrics train_time", raw.metrics.train_time),
            ("model_info macs", raw.model_info.macs),
            ("model_info params", raw.model_info.params),
        ];
        for (name, v) in positive {
            if !(v.is_finite() && v > 0.0) {
                return Err(format!("{name} is {v}, expected a positive number"));
            }
        }
        let mut throughput = BTreeMap::new();
        let mut latency = BTreeMap::new();
        for (key, values) in &raw.platform_perf {
            let unknown = || format!("platform_perf has an unknown key {key:?}");
            let (kind, platform) = key.split_once('_').ok_or_else(unknown)?;
            let platform = Platform::from_key(platform).ok_or_else(unknown)?;
            let table = match kind {
                "throughput" => &mut throughput,
                "latency" => &mut latency,
                _ => return Err(unknown()),
            };
            // A null mean is a measurement the benchmark does not have (92 of them, in 49
            // records): the platform is left out of the map rather than given a made-up value.
            let mean = match values.get(&format!("{kind}_mean")) {
                Some(Some(mean)) if mean.is_finite() => *mean,
                Some(None) => continue,
                _ => return Err(format!("platform_perf {key} lacks a number {kind}_mean")),
            };
            let std = values.get(&format!("{kind}_std")).copied().flatten();
            table.insert(platform, Measurement { mean, std });
        }
        Ok(AccelRecord {
            entry: entry.to_owned(),
            index,
            arch,
            val_top1: raw.metrics.val_top1,
            val_top5: raw.metrics.val_top5,
            train_time: raw.metrics.train_time,
            macs_m: raw.model_info.macs,
            params_m: raw.model_info.params,
            throughput,
            latency,
        })
    }
}

/// Every record of the archive, in the order of `N`.
#[derive(Debug, Clone)]
pub struct AccelDataset {
    path: PathBuf,
    records: Vec<AccelRecord>,
}

impl AccelDataset {
    /// Reads and checks the `.tar.gz` archive at `path`.
    pub fn load(path: impl AsRef<Path>) -> Result<Self, BenchmarkError> {
        let path = path.as_ref();
        let file =
            File::open(path).map_err(|source| BenchmarkError::Read { path: path.to_owned(), source })?;
        Self::from_reader(file, path)
    }

    /// Reads a `.tar.gz` stream; `path` names it in errors.
    pub fn from_reader(reader: impl Read, path: &Path) -> Result<Self, BenchmarkError> {
        let damaged = |at: String, source: std::io::Error| BenchmarkError::Archive {
            path: path.to_owned(),
            at,
            source,
        };
        let record_error = |record: &str, reason: String| BenchmarkError::Record {
            path: path.to_owned(),
            record: record.to_owned(),
            reason,
        };
        let mut archive = tar::Archive::new(GzDecoder::new(reader));
        let mut records = Vec::new();
        let mut last = String::from("the first entry");
        let entries = archive.entries().map_err(|e| damaged(last.clone(), e))?;
        for entry in entries {
            let mut entry = entry.map_err(|e| damaged(format!("after {last}"), e))?;
            let name = entry
                .path()
                .map_err(|e| damaged(format!("after {last}"), e))?
                .to_string_lossy()
                .trim_start_matches("./")
                .to_owned();
            if entry.header().entry_type().is_dir() {
                last = name;
                continue;
            }
            let index = record_index(&name)
                .ok_or_else(|| record_error(&name, "expected an entry named result_N.json".to_owned()))?;
            let mut text = String::new();
            entry.read_to_string(&mut text).map_err(|e| damaged(format!("in {name}"), e))?;
            records.push(AccelRecord::parse(&name, index, &text).map_err(|r| record_error(&name, r))?);
            last = name;
        }
        // The tar reader stops at the end-of-archive marker; reading the rest makes the gzip
        // layer check its length and CRC, so a truncated or altered stream is an error here.
        std::io::copy(&mut archive.into_inner(), &mut std::io::sink())
            .map_err(|e| damaged(format!("after {last}"), e))?;
        if records.is_empty() {
            return Err(BenchmarkError::Empty { path: path.to_owned() });
        }
        records.sort_by_key(|r| r.index);
        let mut seen = BTreeSet::new();
        for r in &records {
            if !seen.insert(r.index) {
                return Err(record_error(&r.entry, "a second record with this N".to_owned()));
            }
        }
        Ok(AccelDataset { path: path.to_owned(), records })
    }

    /// The file the records were read from.
    pub fn path(&self) -> &Path {
        &self.path
    }

    /// Every record, in the order of `N`.
    pub fn records(&self) -> &[AccelRecord] {
        &self.records
    }

    /// The records of one architecture (some architectures were trained more than once).
    pub fn find(&self, arch: &AccelArch) -> impl Iterator<Item = &AccelRecord> {
        let arch = *arch;
        self.records.iter().filter(move |r| r.arch == arch)
    }

    /// The number of distinct architectures.
    pub fn distinct_architectures(&self) -> usize {
        self.records.iter().map(|r| r.arch).collect::<BTreeSet<_>>().len()
    }
}

/// `N` of an entry named `…/result_N.json`.
fn record_index(name: &str) -> Option<u32> {
    let file = name.rsplit('/').next()?;
    file.strip_prefix("result_")?.strip_suffix(".json")?.parse().ok()
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn record_names_give_their_index() {
        assert_eq!(record_index("anb_dataset_jsons/result_12.json"), Some(12));
        assert_eq!(record_index("result_0.json"), Some(0));
        assert_eq!(record_index("anb_dataset_jsons/result_x.json"), None);
        assert_eq!(record_index("anb_dataset_jsons/README"), None);
    }

    #[test]
    fn efficientnet_b0_is_in_the_space() {
        let b0 = AccelArch::efficientnet_b0();
        let mut fields = BTreeMap::new();
        for (i, b) in b0.blocks.iter().enumerate() {
            fields.insert(format!("block{i}_e"), serde_json::json!(b.expansion));
            fields.insert(format!("block{i}_k"), serde_json::json!(b.kernel));
            fields.insert(format!("block{i}_l"), serde_json::json!(b.layers));
            fields.insert(format!("block{i}_se"), serde_json::json!(b.se));
        }
        assert_eq!(AccelArch::from_json(&fields), Ok(b0));
        fields.insert("block1_k".into(), serde_json::json!(7));
        assert!(AccelArch::from_json(&fields).is_err());
    }
}
