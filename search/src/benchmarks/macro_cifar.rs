//! NAS-Bench-Macro: an exhaustive tabular benchmark on CIFAR-10 (X. Su et al., "Prioritized
//! Architecture Sampling with Monte-Carlo Tree Search", CVPR 2021; the file
//! `data/nas-bench-macro_cifar10.json` of github.com/xiusu/NAS-Bench-Macro, committed unchanged
//! as `benchmarks/nas-bench-macro/nas-bench-macro_cifar10.json`).
//!
//! The space has eight searchable layers in three stages of [2, 3, 3] layers (channels
//! 32→64→128→256, stride 2 on each stage's first layer). A code is one digit per layer:
//! `0` identity, `1` MBConv k3 e3, `2` MBConv k5 e6 ([`MacroOp`]). Each of the 6,561 codes maps
//! to `{"test_acc": [3 runs], "mean_acc", "std", "params", "flops"}` ([`MacroResult`]).
//!
//! Inside a stage, identities after the stage's first layer are no layer at all, so where they
//! sit does not matter: the benchmark's authors moved them to the stage's end before training,
//! and the 6,561 codes name 3,969 distinct networks. [`MacroCode::canonical`] applies the same
//! rule (an identity on a stage's first layer is a 1×1 stride-2 convolution and stays put), so
//! codes that name one network map to one key.

use std::collections::BTreeMap;
use std::fmt;
use std::path::{Path, PathBuf};
use std::str::FromStr;

use serde::Deserialize;

use super::BenchmarkError;

/// Where the data file lies, relative to the repository root.
pub const DATA_FILE: &str = "benchmarks/nas-bench-macro/nas-bench-macro_cifar10.json";

/// Searchable layers per stage.
pub const STAGES: [usize; 3] = [2, 3, 3];

/// Searchable layers in all (the length of a code).
pub const LAYERS: usize = 8;

/// The choice for one searchable layer.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash, PartialOrd, Ord)]
pub enum MacroOp {
    /// Digit `0`: no layer (or, on a stage's first layer, a 1×1 stride-2 convolution + BN).
    Identity,
    /// Digit `1`: MBConv, kernel 3, expansion 3, no SE.
    MbConvK3E3,
    /// Digit `2`: MBConv, kernel 5, expansion 6, no SE.
    MbConvK5E6,
}

impl MacroOp {
    /// The three choices, in digit order.
    pub const ALL: [MacroOp; 3] = [MacroOp::Identity, MacroOp::MbConvK3E3, MacroOp::MbConvK5E6];

    /// The digit that names this choice in a code.
    pub fn digit(self) -> char {
        match self {
            MacroOp::Identity => '0',
            MacroOp::MbConvK3E3 => '1',
            MacroOp::MbConvK5E6 => '2',
        }
    }

    fn from_digit(c: char) -> Option<Self> {
        match c {
            '0' => Some(MacroOp::Identity),
            '1' => Some(MacroOp::MbConvK3E3),
            '2' => Some(MacroOp::MbConvK5E6),
            _ => None,
        }
    }
}

/// An 8-digit NAS-Bench-Macro code, one [`MacroOp`] per searchable layer. Orders like its
/// string.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash, PartialOrd, Ord)]
pub struct MacroCode([MacroOp; LAYERS]);

/// Why a string is not a code.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
#[error("{code:?} is not a NAS-Bench-Macro code (8 digits, each 0, 1 or 2)")]
pub struct CodeError {
    pub code: String,
}

impl MacroCode {
    /// The code with these layer choices.
    pub fn new(ops: [MacroOp; LAYERS]) -> Self {
        MacroCode(ops)
    }

    /// The layer choices.
    pub fn ops(&self) -> &[MacroOp; LAYERS] {
        &self.0
    }

    /// Every code of the space (3^8 = 6,561), in ascending order.
    pub fn all() -> impl Iterator<Item = MacroCode> {
        (0..3usize.pow(LAYERS as u32)).map(|mut n| {
            let mut ops = [MacroOp::Identity; LAYERS];
            for op in ops.iter_mut().rev() {
                *op = MacroOp::ALL[n % 3];
                n /= 3;
            }
            MacroCode(ops)
        })
    }

    /// The representative of the network this code names: in each stage, the first layer stays
    /// and the identities after it move to the stage's end, the other layers keeping their
    /// order. Two codes name the same network exactly when their canonical forms are equal.
    pub fn canonical(&self) -> MacroCode {
        let mut out = [MacroOp::Identity; LAYERS];
        let mut start = 0;
        for len in STAGES {
            let stage = &self.0[start..start + len];
            let layers = out[start..start + len].iter_mut();
            let kept = stage[1..].iter().filter(|&&op| op != MacroOp::Identity);
            // The first layer, then the other layers in order; the rest stay identities.
            for (slot, &op) in layers.zip(stage[..1].iter().chain(kept)) {
                *slot = op;
            }
            start += len;
        }
        MacroCode(out)
    }

    /// Whether this code is its own canonical form.
    pub fn is_canonical(&self) -> bool {
        self.canonical() == *self
    }

    /// The code's tokens in effnas's `nas-bench-macro` space
    /// ([`effnas_space::SearchSpace::nas_bench_macro`]): one block per layer, whose operator
    /// token is the layer's digit and whose other tokens have one choice.
    pub fn tokens(&self) -> Vec<usize> {
        let per_block = effnas_space::search_space::Decision::PER_BLOCK;
        let mut tokens = vec![0; LAYERS * per_block];
        for (layer, op) in self.0.iter().enumerate() {
            tokens[layer * per_block] = MacroOp::ALL.iter().position(|o| o == op).unwrap_or(0);
        }
        tokens
    }

    /// The code of a token sequence of the `nas-bench-macro` space, or `None` when the
    /// sequence has the wrong length or a choice the space does not have.
    pub fn from_tokens(tokens: &[usize]) -> Option<Self> {
        let per_block = effnas_space::search_space::Decision::PER_BLOCK;
        if tokens.len() != LAYERS * per_block {
            return None;
        }
        let mut ops = [MacroOp::Identity; LAYERS];
        for (op, block) in ops.iter_mut().zip(tokens.chunks(per_block)) {
            if block[1..].iter().any(|&t| t != 0) {
                return None;
            }
            *op = *MacroOp::ALL.get(block[0])?;
        }
        Some(MacroCode(ops))
    }
}

impl FromStr for MacroCode {
    type Err = CodeError;

    fn from_str(s: &str) -> Result<Self, Self::Err> {
        let error = || CodeError { code: s.to_owned() };
        if s.chars().count() != LAYERS {
            return Err(error());
        }
        let mut ops = [MacroOp::Identity; LAYERS];
        for (op, c) in ops.iter_mut().zip(s.chars()) {
            *op = MacroOp::from_digit(c).ok_or_else(error)?;
        }
        Ok(MacroCode(ops))
    }
}

impl fmt::Display for MacroCode {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        self.0.iter().try_for_each(|op| write!(f, "{}", op.digit()))
    }
}

/// One code's results, as the file gives them.
#[derive(Debug, Clone, Copy, PartialEq, Deserialize)]
pub struct MacroResult {
    /// Per run, the best CIFAR-10 test accuracy (%) over 50 epochs; three runs.
    pub test_acc: [f64; 3],
    /// The mean of `test_acc` (%).
    pub mean_acc: f64,
    /// The standard deviation of `test_acc` (population, percentage points).
    pub std: f64,
    /// Every parameter, BN and classifier bias included.
    pub params: u64,
    /// Multiply-adds of the convolutions and the linear layer.
    pub flops: u64,
}

impl MacroResult {
    fn check(&self) -> Result<(), String> {
        let values = self.test_acc.iter().chain([&self.mean_acc, &self.std]);
        for v in values {
            if !v.is_finite() || !(0.0..=100.0).contains(v) {
                return Err(format!("accuracy or std {v} is outside 0..=100"));
            }
        }
        Ok(())
    }
}

/// The whole table, keyed by code.
#[derive(Debug, Clone)]
pub struct MacroCifarTable {
    path: PathBuf,
    results: BTreeMap<MacroCode, MacroResult>,
}

impl MacroCifarTable {
    /// Reads and checks the JSON file at `path`.
    pub fn load(path: impl AsRef<Path>) -> Result<Self, BenchmarkError> {
        let path = path.as_ref();
        let text = std::fs::read_to_string(path)
            .map_err(|source| BenchmarkError::Read { path: path.to_owned(), source })?;
        Self::parse(&text, path)
    }

    /// Parses the file's text; `path` names the file in errors.
    pub fn parse(text: &str, path: &Path) -> Result<Self, BenchmarkError> {
        let raw: serde_json::Map<String, serde_json::Value> = serde_json::from_str(text)
            .map_err(|source| BenchmarkError::Json { path: path.to_owned(), source })?;
        let record_error = |record: &str, reason: String| BenchmarkError::Record {
            path: path.to_owned(),
            record: record.to_owned(),
            reason,
        };
        let mut results = BTreeMap::new();
        for (key, value) in raw {
            let code: MacroCode = key.parse().map_err(|e: CodeError| record_error(&key, e.to_string()))?;
            let result = MacroResult::deserialize(value).map_err(|e| record_error(&key, e.to_string()))?;
            result.check().map_err(|reason| record_error(&key, reason))?;
            results.insert(code, result);
        }
        if results.is_empty() {
            return Err(BenchmarkError::Empty { path: path.to_owned() });
        }
        Ok(MacroCifarTable { path: path.to_owned(), results })
    }

    /// The file this table was read from.
    pub fn path(&self) -> &Path {
        &self.path
    }

    /// The number of codes.
    pub fn len(&self) -> usize {
        self.results.len()
    }

    /// Whether the table has no codes (never true for a loaded table).
    pub fn is_empty(&self) -> bool {
        self.results.is_empty()
    }

    /// The results of one code.
    pub fn get(&self, code: &MacroCode) -> Option<&MacroResult> {
        self.results.get(code)
    }

    /// Every code with its results, in code order.
    pub fn iter(&self) -> impl Iterator<Item = (&MacroCode, &MacroResult)> {
        self.results.iter()
    }

    /// The distinct networks: each canonical code with the codes that name it, in code order.
    pub fn networks(&self) -> BTreeMap<MacroCode, Vec<MacroCode>> {
        let mut networks: BTreeMap<MacroCode, Vec<MacroCode>> = BTreeMap::new();
        for code in self.results.keys() {
            networks.entry(code.canonical()).or_default().push(*code);
        }
        networks
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn code(s: &str) -> MacroCode {
        s.parse().expect("a valid code")
    }

    #[test]
    fn canonical_moves_identities_to_the_stage_end_but_keeps_the_first_layer() {
        assert_eq!(code("22212202").canonical(), code("22212220"));
        assert_eq!(code("02012100").canonical(), code("02012100"));
        assert_eq!(code("00001002").canonical(), code("00010020"));
        assert_eq!(code("10200201").canonical(), code("10200210"));
        assert!(code("22212220").is_canonical());
    }

    #[test]
    fn codes_round_trip_and_bad_codes_are_refused() {
        assert_eq!(code("01201220").to_string(), "01201220");
        for bad in ["0120122", "012012201", "01201230", "0120122x", ""] {
            assert!(bad.parse::<MacroCode>().is_err(), "{bad}");
        }
        let all: Vec<MacroCode> = MacroCode::all().collect();
        assert_eq!(all.len(), 6561);
        assert_eq!(all[0].to_string(), "00000000");
        assert_eq!(all[6560].to_string(), "22222222");
        assert!(all.windows(2).all(|w| w[0] < w[1]));
    }
}
