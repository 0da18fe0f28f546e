//! Benchmark look-ups as an evaluator (issue 12, item 2): a search over the `nas-bench-macro`
//! or `accel-nasbench` space whose trials are answered from the published trainings instead of
//! trained, so that search strategies can be compared over thousands of queries.
//!
//! - NAS-Bench-Macro (every member of its space trained 3 times): the mean of the three runs'
//!   test accuracy, or with `noise` one of the three runs, drawn per trial. A draw depends on
//!   the run's seed and the trial's id only, so the same search on a fresh database draws the
//!   same runs.
//! - Accel-NASBench (5,138 trainings of 5,125 members out of about 1e11): the record's top-1
//!   validation accuracy (the mean over a member's records, or one drawn with `noise`). A member
//!   without a record is a failed trial of kind `invalid` that says so: searching that space
//!   needs an accuracy predictor fitted on the records.
//!
//! Both data files are compiled into the binary (about 2.4 MB), so a worker anywhere answers
//! the same look-ups without the repository at hand.

use std::collections::{BTreeMap, VecDeque};
use std::path::Path;
use std::sync::OnceLock;
use std::time::Duration;

use effnas_space::{ArchSpec, SearchSpace};
use effnas_store::{FailureKind, TrialId};
use serde::{Deserialize, Serialize};
use serde_json::json;

use super::accel::{AccelArch, AccelDataset};
use super::macro_cifar::{MacroCifarTable, MacroCode};
use crate::evaluate::{Evaluation, Evaluator, Measured, Outcome, TrialFailure};
use crate::orchestrator::Result;

const MACRO_BYTES: &[u8] = include_bytes!("../../../benchmarks/nas-bench-macro/nas-bench-macro_cifar10.json");
const ACCEL_BYTES: &[u8] = include_bytes!("../../../benchmarks/accel-nasbench/anb_dataset_jsons.tar.gz");

/// A benchmark whose trainings answer queries, named like its space.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "kebab-case")]
pub enum Benchmark {
    NasBenchMacro,
    AccelNasbench,
}

impl Benchmark {
    /// The benchmark whose space is `space` (by name and content), if any.
    pub fn for_space(space: &SearchSpace) -> Option<Self> {
        [Benchmark::NasBenchMacro, Benchmark::AccelNasbench].into_iter().find(|b| b.space() == *space)
    }

    /// The benchmark's search space.
    pub fn space(self) -> SearchSpace {
        match self {
            Benchmark::NasBenchMacro => SearchSpace::nas_bench_macro(),
            Benchmark::AccelNasbench => SearchSpace::accel_nasbench(),
        }
    }

    pub fn name(self) -> &'static str {
        match self {
            Benchmark::NasBenchMacro => "nas-bench-macro",
            Benchmark::AccelNasbench => "accel-nasbench",
        }
    }
}

/// How a run looks its trials up: stored with the run.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct LookupSettings {
    pub benchmark: Benchmark,
    /// One training drawn per trial instead of the mean over the member's trainings.
    pub noise: bool,
}

impl LookupSettings {
    /// The proxy key of the run's trials: the benchmark, the mode and, for draws, the seed
    /// (a drawn answer is a different measurement from the mean).
    pub fn key(&self, seed: u64) -> String {
        match self.noise {
            false => format!("benchmark:{}:mean", self.benchmark.name()),
            true => format!("benchmark:{}:draw:seed{seed}", self.benchmark.name()),
        }
    }
}

/// The answers of one benchmark: the accuracies (fractions) of each member's trainings.
enum Answers {
    Macro(&'static MacroCifarTable),
    Accel(&'static BTreeMap<AccelArch, Vec<f64>>),
}

fn macro_table() -> std::result::Result<&'static MacroCifarTable, String> {
    static TABLE: OnceLock<std::result::Result<MacroCifarTable, String>> = OnceLock::new();
    let parsed = TABLE.get_or_init(|| {
        let text = std::str::from_utf8(MACRO_BYTES).map_err(|e| e.to_string())?;
        MacroCifarTable::parse(text, Path::new(super::macro_cifar::DATA_FILE)).map_err(|e| e.to_string())
    });
    parsed.as_ref().map_err(Clone::clone)
}

/// Accel-NASBench's recorded members with the top-1 accuracies (fractions) of their trainings.
pub fn accel_index() -> std::result::Result<&'static BTreeMap<AccelArch, Vec<f64>>, String> {
    static INDEX: OnceLock<std::result::Result<BTreeMap<AccelArch, Vec<f64>>, String>> = OnceLock::new();
    let parsed = INDEX.get_or_init(|| {
        let dataset = AccelDataset::from_reader(ACCEL_BYTES, Path::new(super::accel::DATA_FILE))
            .map_err(|e| e.to_string())?;
        let mut index: BTreeMap<AccelArch, Vec<f64>> = BTreeMap::new();
        for record in dataset.records() {
            index.entry(record.arch).or_default().push(record.val_top1 / 100.0);
        }
        Ok(index)
    });
    parsed.as_ref().map_err(Clone::clone)
}

/// Looks trials up in a benchmark; answers are ready at once.
pub struct LookupEvaluator {
    settings: LookupSettings,
    space: SearchSpace,
    answers: Answers,
    seed: u64,
    capacity: usize,
    ready: VecDeque<Evaluation>,
}

impl LookupEvaluator {
    /// Loads the benchmark's data (once per process). An error names the embedded file.
    pub fn new(settings: LookupSettings, seed: u64, capacity: usize) -> std::result::Result<Self, String> {
        let answers = match settings.benchmark {
            Benchmark::NasBenchMacro => Answers::Macro(macro_table()?),
            Benchmark::AccelNasbench => Answers::Accel(accel_index()?),
        };
        let space = settings.benchmark.space();
        Ok(LookupEvaluator {
            settings,
            space,
            answers,
            seed,
            capacity: capacity.max(1),
            ready: VecDeque::new(),
        })
    }

    /// The trial's answer: accuracy and what to keep with it, or why there is none.
    fn answer(&self, trial: TrialId, arch: &ArchSpec) -> std::result::Result<Measured, TrialFailure> {
        let name = self.settings.benchmark.name();
        let invalid = |message: String| TrialFailure::new(FailureKind::Invalid, message);
        let tokens =
            self.space.encode(arch).map_err(|e| invalid(format!("not a member of the {name} space: {e}")))?;
        let (member, runs): (String, Vec<f64>) = match self.answers {
            Answers::Macro(table) => {
                let code = MacroCode::from_tokens(&tokens)
                    .ok_or_else(|| invalid(format!("tokens are not a {name} code")))?;
                let result =
                    table.get(&code).ok_or_else(|| invalid(format!("code {code} is not in the table")))?;
                (code.to_string(), result.test_acc.iter().map(|a| a / 100.0).collect())
            }
            Answers::Accel(index) => {
                let member = AccelArch::from_tokens(&tokens)
                    .ok_or_else(|| invalid(format!("tokens are not an {name} architecture")))?;
                let runs = index.get(&member).ok_or_else(|| {
                    invalid(format!(
                        "not among the {} architectures {name} trained (look-ups answer recorded members only)",
                        index.len()
                    ))
                })?;
                (format!("{:?}", member.tokens()), runs.clone())
            }
        };
        let (accuracy, drawn) = if self.settings.noise {
            let index = draw(self.seed, trial.0, runs.len());
            (runs[index], Some(index))
        } else {
            (runs.iter().sum::<f64>() / runs.len() as f64, None)
        };
        let extra = json!({"evaluator": "benchmark", "benchmark": name, "member": member, "runs": runs, "drawn": drawn});
        Ok(Measured { accuracy, loss: 1.0 - accuracy, extra, ..Measured::default() })
    }
}

/// Which of `count` trainings answers trial `trial` of a run seeded `seed`: SplitMix64 of the
/// two, so that draws are independent across trials and fixed by the seed.
fn draw(seed: u64, trial: i64, count: usize) -> usize {
    let mut z = seed ^ (trial as u64).wrapping_mul(0x9E37_79B9_7F4A_7C15);
    z = (z ^ (z >> 30)).wrapping_mul(0xBF58_476D_1CE4_E5B9);
    z = (z ^ (z >> 27)).wrapping_mul(0x94D0_49BB_1331_11EB);
    z ^= z >> 31;
    (z % count.max(1) as u64) as usize
}

impl Evaluator for LookupEvaluator {
    fn capacity(&self) -> usize {
        self.capacity
    }

    fn submit(&mut self, trial: TrialId, arch: &ArchSpec) -> Result<()> {
        let outcome = match self.answer(trial, arch) {
            Ok(measured) => Outcome::Measured(measured),
            Err(failure) => Outcome::Failed(failure),
        };
        self.ready.push_back(Evaluation { trial, outcome });
        Ok(())
    }

    fn next(&mut self, _timeout: Duration) -> Result<Option<Evaluation>> {
        Ok(self.ready.pop_front())
    }
}

#[cfg(test)]
#[allow(clippy::unwrap_used)] // a failing unwrap is a failing test
mod tests {
    use super::*;

    fn measured(evaluator: &mut LookupEvaluator, trial: i64, arch: &ArchSpec) -> Outcome {
        evaluator.submit(TrialId(trial), arch).unwrap();
        evaluator.next(Duration::ZERO).unwrap().unwrap().outcome
    }

    #[test]
    fn nas_bench_macro_answers_the_mean_or_a_drawn_run() {
        let space = SearchSpace::nas_bench_macro();
        let code: MacroCode = "22212220".parse().unwrap();
        let arch = space.decode(&code.tokens()).unwrap();
        let result = *macro_table().unwrap().get(&code).unwrap();
        let settings = LookupSettings { benchmark: Benchmark::NasBenchMacro, noise: false };
        let mut mean = LookupEvaluator::new(settings.clone(), 0, 1).unwrap();
        let Outcome::Measured(m) = measured(&mut mean, 1, &arch) else { panic!("measured") };
        assert!((m.accuracy - result.mean_acc / 100.0).abs() < 1e-4, "{} vs {}", m.accuracy, result.mean_acc);
        assert_eq!(m.extra["member"], "22212220");

        let noisy = LookupSettings { noise: true, ..settings };
        let mut drawn = LookupEvaluator::new(noisy.clone(), 7, 1).unwrap();
        let mut again = LookupEvaluator::new(noisy, 7, 1).unwrap();
        let mut seen = std::collections::BTreeSet::new();
        for trial in 0..30 {
            let (Outcome::Measured(a), Outcome::Measured(b)) =
                (measured(&mut drawn, trial, &arch), measured(&mut again, trial, &arch))
            else {
                panic!("measured")
            };
            assert_eq!(a.accuracy, b.accuracy, "fixed by seed and trial");
            assert!(result.test_acc.iter().any(|r| (r / 100.0 - a.accuracy).abs() < 1e-12));
            seen.insert(a.extra["drawn"].as_u64().unwrap());
        }
        assert_eq!(seen.len(), 3, "every run gets drawn");
        assert_ne!(
            LookupSettings { benchmark: Benchmark::NasBenchMacro, noise: true }.key(1),
            mean.settings.key(1)
        );
    }

    #[test]
    fn accel_nasbench_answers_recorded_members_and_refuses_others() {
        let space = SearchSpace::accel_nasbench();
        let settings = LookupSettings { benchmark: Benchmark::AccelNasbench, noise: false };
        let mut evaluator = LookupEvaluator::new(settings, 0, 1).unwrap();
        let (&member, runs) = accel_index().unwrap().iter().next().unwrap();
        let arch = space.decode(&member.tokens()).unwrap();
        let Outcome::Measured(m) = measured(&mut evaluator, 1, &arch) else { panic!("measured") };
        assert!((m.accuracy - runs.iter().sum::<f64>() / runs.len() as f64).abs() < 1e-12);
        // A member without a record, and a network outside the space.
        let unrecorded = (0..)
            .map(|i: usize| {
                let mut tokens = member.tokens();
                let position = i % tokens.len();
                tokens[position] = 0;
                tokens[5] = i % 3;
                tokens[11] = (i / 3) % 3;
                tokens
            })
            .find(|tokens| !accel_index().unwrap().contains_key(&AccelArch::from_tokens(tokens).unwrap()))
            .unwrap();
        let Outcome::Failed(failure) = measured(&mut evaluator, 2, &space.decode(&unrecorded).unwrap())
        else {
            panic!("failed")
        };
        assert_eq!(failure.kind, FailureKind::Invalid);
        assert!(failure.message.contains("not among the 5125 architectures"), "{}", failure.message);
        let other = effnas_space::presets::preset("mnasnet-a1").unwrap();
        let Outcome::Failed(failure) = measured(&mut evaluator, 3, &other) else { panic!("failed") };
        assert!(failure.message.contains("not a member of the accel-nasbench space"), "{}", failure.message);
    }

    #[test]
    fn spaces_name_their_benchmarks() {
        assert_eq!(Benchmark::for_space(&SearchSpace::nas_bench_macro()), Some(Benchmark::NasBenchMacro));
        assert_eq!(Benchmark::for_space(&SearchSpace::accel_nasbench()), Some(Benchmark::AccelNasbench));
        assert_eq!(Benchmark::for_space(&SearchSpace::default_space()), None);
    }
}
