//! The `nas-bench-macro` and `accel-nasbench` spaces against every record of their benchmarks:
//! effnas's cost model gives the parameters and multiply-adds the benchmarks recorded, codes
//! that name one network get one hash, and the token mappings round-trip (issue 12, item 1).

use std::collections::{BTreeMap, BTreeSet};
use std::path::{Path, PathBuf};

use effnas_search::benchmarks::accel::{self, AccelArch, AccelDataset};
use effnas_search::benchmarks::macro_cifar::{self, MacroCifarTable, MacroCode};
use effnas_space::{arch_hash, cost, ArchSpec, Op, SearchSpace};

fn repo_file(relative: &str) -> PathBuf {
    Path::new(env!("CARGO_MANIFEST_DIR")).join("..").join(relative)
}

/// Every one of the 6,561 codes: params and multiply-adds as recorded, to the unit.
#[test]
fn nas_bench_macro_counts_equal_the_records() {
    let table = MacroCifarTable::load(repo_file(macro_cifar::DATA_FILE)).unwrap_or_else(|e| panic!("{e}"));
    let space = SearchSpace::nas_bench_macro();
    let mut checked = 0;
    for (code, result) in table.iter() {
        let arch = space.decode(&code.tokens()).unwrap_or_else(|e| panic!("{code}: {e}"));
        let counted = cost(&arch);
        assert_eq!((counted.params, counted.macs), (result.params, result.flops), "code {code}");
        checked += 1;
    }
    assert_eq!(checked, 6561);
}

/// The 6,561 codes are 3,969 networks: codes with one canonical form share a hash, the others
/// do not; and a network's tokens are its canonical code's.
#[test]
fn nas_bench_macro_networks_share_hashes() {
    let space = SearchSpace::nas_bench_macro();
    let mut hashes: BTreeMap<String, BTreeSet<MacroCode>> = BTreeMap::new();
    for code in MacroCode::all() {
        let arch = space.decode(&code.tokens()).unwrap_or_else(|e| panic!("{code}: {e}"));
        let canonical =
            MacroCode::from_tokens(&space.encode(&arch).unwrap_or_else(|e| panic!("{code}: {e}")));
        assert_eq!(canonical, Some(code.canonical()), "code {code}");
        hashes.entry(arch_hash(&arch)).or_default().insert(code.canonical());
    }
    assert_eq!(hashes.len(), 3969);
    assert!(hashes.values().all(|canonicals| canonicals.len() == 1), "one canonical code per hash");
}

/// A `nas-bench-macro` code's network, written out: what the benchmark's README describes.
#[test]
fn a_nas_bench_macro_network_is_the_described_skeleton() {
    let space = SearchSpace::nas_bench_macro();
    let code: MacroCode = "01202210".parse().unwrap_or_else(|e| panic!("{e}"));
    let arch = space.decode(&code.tokens()).unwrap_or_else(|e| panic!("{e}"));
    assert_eq!(
        arch.block_strings(),
        [
            "proj_r1_k1_s22_i32_o64_noskip",
            "r1_k3_s11_e3_i64_o64",
            "r1_k5_s22_e6_i64_o128",
            "r1_k5_s11_e6_i128_o128",
            "r1_k5_s22_e6_i128_o256",
            "r1_k3_s11_e3_i256_o256",
        ]
    );
    assert_eq!((arch.resolution, arch.num_classes, arch.stem_stride), (32, 10, 1));
}

/// The thop-style count Accel-NASBench records: convolution and linear multiply-adds (effnas's
/// count), plus 4 per batch-norm output element, plus the input and output elements of every
/// average pool (SE's squeeze and the final pooling). Computed here from the layer shapes,
/// independently of the cost model's walk.
fn thop_extras(arch: &ArchSpec) -> u64 {
    let elements = |channels: u32, size: u32| u64::from(channels) * u64::from(size) * u64::from(size);
    let pool = |channels: u32, size: u32| elements(channels, size) + u64::from(channels);
    let mut size = arch.stem_conv_output_size();
    let mut extra = 4 * elements(arch.stem_channels, size);
    for block in &arch.blocks {
        assert_eq!(block.op, Op::MBConv, "the space has only MBConv blocks");
        for layer in 0..block.repeats {
            let (c_in, c_out) = block.layer_channels(layer);
            let hidden = block.hidden_channels(c_in);
            let out = (size - 1) / block.layer_stride(layer) + 1;
            if hidden != c_in {
                extra += 4 * elements(hidden, size);
            }
            extra += 4 * elements(hidden, out);
            if block.se_channels(c_in).is_some() {
                extra += pool(hidden, out);
            }
            extra += 4 * elements(c_out, out);
            size = out;
        }
    }
    let head = arch.classifier_channels();
    extra + 4 * elements(head, size) + pool(head, size)
}

/// Every one of the 5,138 records: params (recorded in millions, 5 decimals) and thop-style
/// multiply-adds (in millions, 6 decimals) as recorded, to the record's precision.
#[test]
fn accel_nasbench_counts_equal_the_records() {
    let dataset = AccelDataset::load(repo_file(accel::DATA_FILE)).unwrap_or_else(|e| panic!("{e}"));
    let space = SearchSpace::accel_nasbench();
    assert_eq!(dataset.records().len(), 5138);
    for record in dataset.records() {
        let tokens = record.arch.tokens();
        assert_eq!(AccelArch::from_tokens(&tokens), Some(record.arch), "{}", record.entry);
        let arch = space.decode(&tokens).unwrap_or_else(|e| panic!("{}: {e}", record.entry));
        assert_eq!(space.encode(&arch).ok(), Some(tokens), "{}", record.entry);
        let counted = cost(&arch);
        let params = counted.params as f64 / 1e6;
        assert!(
            (params - record.params_m).abs() <= 0.5e-5 + 1e-12,
            "{}: params {params} vs {}",
            record.entry,
            record.params_m
        );
        let macs = (counted.macs + thop_extras(&arch)) as f64 / 1e6;
        assert!(
            (macs - record.macs_m).abs() <= 0.5e-6 + 1e-12,
            "{}: macs {macs} vs {}",
            record.entry,
            record.macs_m
        );
    }
}

/// B0 is the member whose tokens are `AccelArch::efficientnet_b0`'s.
#[test]
fn b0_is_an_accel_nasbench_member() {
    let space = SearchSpace::accel_nasbench();
    let b0 = effnas_space::presets::efficientnet_b0();
    assert_eq!(space.encode(&b0).ok(), Some(AccelArch::efficientnet_b0().tokens()));
}
