//! The facts `benchmarks/README.md` states about the two committed benchmark files, computed
//! from the files themselves, and the errors a damaged copy of each gives.

use std::collections::BTreeSet;
use std::io::Write;
use std::path::{Path, PathBuf};

use effnas_search::benchmarks::accel::{self, AccelArch, AccelDataset, Platform};
use effnas_search::benchmarks::macro_cifar::{self, MacroCifarTable, MacroCode};
use effnas_search::benchmarks::{expected_best_of_random, BenchmarkError};

fn repo_file(relative: &str) -> PathBuf {
    Path::new(env!("CARGO_MANIFEST_DIR")).join("..").join(relative)
}

fn macro_table() -> MacroCifarTable {
    let path = repo_file(macro_cifar::DATA_FILE);
    MacroCifarTable::load(&path).unwrap_or_else(|e| panic!("{e}"))
}

fn accel_dataset() -> AccelDataset {
    let path = repo_file(accel::DATA_FILE);
    AccelDataset::load(&path).unwrap_or_else(|e| panic!("{e}"))
}

/// Rounds to `places` decimals, as the README prints figures.
fn round(x: f64, places: i32) -> f64 {
    let scale = 10f64.powi(places);
    (x * scale).round() / scale
}

fn sorted(mut values: Vec<f64>) -> Vec<f64> {
    values.sort_by(f64::total_cmp);
    values
}

/// The median: the middle value, or the mean of the two middle values.
fn median(sorted: &[f64]) -> f64 {
    let n = sorted.len();
    if n % 2 == 1 {
        sorted[n / 2]
    } else {
        (sorted[n / 2 - 1] + sorted[n / 2]) / 2.0
    }
}

/// The lowest value among the best 1% (rounded up: the best ⌈N/100⌉ values).
fn top_percent_start(sorted: &[f64]) -> f64 {
    let k = sorted.len().div_ceil(100);
    sorted[sorted.len() - k]
}

#[test]
fn committed_files_match_their_sources() {
    use sha2::{Digest, Sha256};
    for data in [macro_cifar::DATA_FILE, accel::DATA_FILE] {
        let path = repo_file(data);
        let bytes = std::fs::read(&path).unwrap_or_else(|e| panic!("{}: {e}", path.display()));
        let digest: String = Sha256::digest(&bytes).iter().map(|b| format!("{b:02x}")).collect();
        let source = path.with_file_name("SOURCE.md");
        let source = std::fs::read_to_string(&source).unwrap_or_else(|e| panic!("{}: {e}", source.display()));
        assert!(
            source.contains(&format!("sha256 {digest}")),
            "{data}: sha256 {digest} is not the one in SOURCE.md"
        );
    }
}

fn code(s: &str) -> MacroCode {
    s.parse().unwrap_or_else(|e| panic!("{e}"))
}

#[test]
fn nas_bench_macro_counts_codes_and_networks() {
    let table = macro_table();
    assert_eq!(table.len(), 6561);
    let codes: BTreeSet<MacroCode> = table.iter().map(|(c, _)| *c).collect();
    assert_eq!(codes, MacroCode::all().collect(), "every code of the space, once");
    let networks = table.networks();
    assert_eq!(networks.len(), 3969);
    // The authors trained one network per group: every code of a group has its results.
    for (canonical, members) in &networks {
        let first = table.get(canonical).expect("a canonical code is in the table");
        for member in members {
            assert_eq!(table.get(member), Some(first), "{member} vs {canonical}");
        }
    }
}

#[test]
fn nas_bench_macro_best_median_worst_and_top_percent() {
    let table = macro_table();
    let accs = sorted(table.iter().map(|(_, r)| r.mean_acc).collect());
    let best = accs[accs.len() - 1];
    assert_eq!(round(best, 3), 93.127);
    let best_codes: Vec<String> =
        table.iter().filter(|(_, r)| r.mean_acc == best).map(|(c, _)| c.to_string()).collect();
    assert_eq!(best_codes, ["22212202", "22212220"]);
    assert_eq!(code("22212202").canonical(), code("22212220").canonical());
    assert_eq!(round(median(&accs), 2), 90.99);
    assert_eq!(round(accs[0], 2), 45.36);
    assert_eq!(round(top_percent_start(&accs), 3), 92.810);
}

#[test]
fn nas_bench_macro_expected_best_of_random_search() {
    let table = macro_table();
    let accs: Vec<f64> = table.iter().map(|(_, r)| r.mean_acc).collect();
    let expected = [(10, 92.43), (50, 92.77), (100, 92.87), (200, 92.94), (500, 93.02)];
    for (n, want) in expected {
        let got = expected_best_of_random(&accs, n).expect("n within the table");
        assert_eq!(round(got, 2), want, "n = {n}: {got}");
    }
}

#[test]
fn accel_nasbench_counts_ranges_and_efficientnet_b0() {
    let data = accel_dataset();
    assert_eq!(data.records().len(), 5138);
    assert_eq!(data.distinct_architectures(), 5125);
    let top1 = sorted(data.records().iter().map(|r| r.val_top1).collect());
    assert_eq!(round(top1[0], 2), 42.85);
    assert_eq!(round(top1[top1.len() - 1], 2), 67.05);
    assert_eq!(round(median(&top1), 2), 60.71);
    assert_eq!(round(top_percent_start(&top1), 2), 65.59);
    // Every platform is measured except where the file has null: 92 measurements in 49 records.
    let mut missing = 0;
    let mut incomplete = 0;
    for r in data.records() {
        let absent = (6 - r.throughput.len()) + (2 - r.latency.len());
        assert!(r.latency.keys().all(|p| [Platform::Zcu102, Platform::Vck190].contains(p)));
        missing += absent;
        incomplete += usize::from(absent > 0);
    }
    assert_eq!((missing, incomplete), (92, 49));
    // EfficientNet-B0 is a member of the space but was not among the trained records, with SE
    // or without.
    let b0 = AccelArch::efficientnet_b0();
    assert_eq!(data.find(&b0).count(), 0);
    let same_blocks = data.records().iter().filter(|r| {
        r.arch
            .blocks
            .iter()
            .zip(b0.blocks)
            .all(|(a, b)| (a.expansion, a.kernel, a.layers) == (b.expansion, b.kernel, b.layers))
    });
    assert_eq!(same_blocks.count(), 0);
}

/// Asserts that `error` is one line, names `path` and, if given, the record.
fn assert_names(error: &BenchmarkError, path: &Path, record: Option<&str>) {
    let message = error.to_string();
    assert!(!message.contains('\n'), "one line: {message}");
    assert!(message.contains(&path.display().to_string()), "names the file: {message}");
    if let Some(record) = record {
        assert!(message.contains(record), "names {record}: {message}");
    }
}

#[test]
fn damaged_nas_bench_macro_files_give_typed_errors() {
    let dir = tempfile::tempdir().expect("a temporary directory");
    let text = std::fs::read_to_string(repo_file(macro_cifar::DATA_FILE)).expect("the data file");

    let truncated = dir.path().join("truncated.json");
    std::fs::write(&truncated, &text[..text.len() / 2]).expect("write");
    let error = MacroCifarTable::load(&truncated).expect_err("a truncated file");
    assert!(matches!(error, BenchmarkError::Json { .. }), "{error:?}");
    assert_names(&error, &truncated, None);

    // The first record is 02012100; make its mean_acc a string.
    let first_mean = "\"mean_acc\": 89.19666544596355";
    assert!(text.starts_with("{\"02012100\"") && text.contains(first_mean));
    let wrong_type = dir.path().join("wrong-type.json");
    std::fs::write(&wrong_type, text.replacen(first_mean, "\"mean_acc\": \"high\"", 1)).expect("write");
    let error = MacroCifarTable::load(&wrong_type).expect_err("a string accuracy");
    assert!(matches!(error, BenchmarkError::Record { .. }), "{error:?}");
    assert_names(&error, &wrong_type, Some("02012100"));

    let bad_code = dir.path().join("bad-code.json");
    std::fs::write(&bad_code, text.replacen("\"02012100\"", "\"02012103\"", 1)).expect("write");
    let error = MacroCifarTable::load(&bad_code).expect_err("a code with a 3");
    assert_names(&error, &bad_code, Some("02012103"));

    let missing = dir.path().join("missing.json");
    let error = MacroCifarTable::load(&missing).expect_err("no file");
    assert!(matches!(error, BenchmarkError::Read { .. }), "{error:?}");
    assert_names(&error, &missing, None);
}

/// The archive's entries, in archive order, as (path, bytes).
fn archive_entries(path: &Path) -> Vec<(String, Vec<u8>)> {
    use std::io::Read;
    let file = std::fs::File::open(path).expect("the data file");
    let mut archive = tar::Archive::new(flate2::read::GzDecoder::new(file));
    let mut out = Vec::new();
    for entry in archive.entries().expect("entries") {
        let mut entry = entry.expect("an entry");
        if entry.header().entry_type().is_dir() {
            continue;
        }
        let name = entry.path().expect("a path").to_string_lossy().into_owned();
        let mut bytes = Vec::new();
        entry.read_to_end(&mut bytes).expect("read");
        out.push((name, bytes));
    }
    out
}

fn write_archive(path: &Path, entries: &[(String, Vec<u8>)]) {
    let file = std::fs::File::create(path).expect("create");
    let gz = flate2::write::GzEncoder::new(file, flate2::Compression::fast());
    let mut builder = tar::Builder::new(gz);
    for (name, bytes) in entries {
        let mut header = tar::Header::new_gnu();
        header.set_size(bytes.len() as u64);
        header.set_mode(0o644);
        header.set_cksum();
        builder.append_data(&mut header, name, bytes.as_slice()).expect("append");
    }
    let mut gz = builder.into_inner().expect("finish tar");
    gz.flush().expect("flush");
    gz.finish().expect("finish gzip");
}

#[test]
fn damaged_accel_nasbench_archives_give_typed_errors() {
    let dir = tempfile::tempdir().expect("a temporary directory");
    let original = repo_file(accel::DATA_FILE);
    let bytes = std::fs::read(&original).expect("the data file");

    let truncated = dir.path().join("truncated.tar.gz");
    std::fs::write(&truncated, &bytes[..bytes.len() / 2]).expect("write");
    let error = AccelDataset::load(&truncated).expect_err("a truncated archive");
    assert!(matches!(error, BenchmarkError::Archive { .. }), "{error:?}");
    assert_names(&error, &truncated, None);

    // Only the gzip trailer cut off: the tar layer is whole, the gzip check is not.
    let no_trailer = dir.path().join("no-trailer.tar.gz");
    std::fs::write(&no_trailer, &bytes[..bytes.len() - 4]).expect("write");
    let error = AccelDataset::load(&no_trailer).expect_err("an archive without its trailer");
    assert!(matches!(error, BenchmarkError::Archive { .. }), "{error:?}");
    assert_names(&error, &no_trailer, None);

    let mut entries = archive_entries(&original);
    let (name, record) = &mut entries[3];
    let damaged_name = name.trim_start_matches("./").to_owned();
    let text = String::from_utf8(record.clone()).expect("UTF-8");
    let field = text.find("\"val_top1\": ").expect("a val_top1 field") + "\"val_top1\": ".len();
    let end = field + text[field..].find(',').expect("a comma after val_top1");
    *record = format!("{}\"high\"{}", &text[..field], &text[end..]).into_bytes();
    let wrong_type = dir.path().join("wrong-type.tar.gz");
    write_archive(&wrong_type, &entries);
    let error = AccelDataset::load(&wrong_type).expect_err("a string accuracy");
    assert!(matches!(error, BenchmarkError::Record { .. }), "{error:?}");
    assert_names(&error, &wrong_type, Some(&damaged_name));
    assert!(error.to_string().contains("invalid type"), "{error}");
}
