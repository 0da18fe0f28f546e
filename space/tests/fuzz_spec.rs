//! Fuzzing the readers of user-written architectures and spaces: block-string chains, JSON
//! architecture files and JSON/TOML space files. Whatever the input, reading it either fails
//! with one line that names the file, or yields an architecture that validates and whose cost
//! can be computed, and nothing panics.
//!
//! CI runs a few hundred cases of each; `scripts/fuzz` runs many more for a fixed time (it sets
//! `EFFNAS_FUZZ_CASES`). A failing case is shrunk and kept by proptest in `fuzz_spec.proptest-regressions` beside this file,
//! which is committed so that it is replayed first in every later run.

use std::path::Path;

use effnas_space::{checked_cost, parse_arch, presets, ArchSpec, SearchSpace};
use proptest::prelude::*;
use proptest::test_runner::FileFailurePersistence;

/// Mutations applied to a valid file's bytes: overwrite, insert, delete, truncate.
#[derive(Debug, Clone)]
enum Edit {
    Set(usize, u8),
    Insert(usize, Vec<u8>),
    Delete(usize, usize),
    Truncate(usize),
}

fn edit() -> impl Strategy<Value = Edit> {
    // Bytes that matter to JSON and TOML, plus digits and letters that form numbers and keys.
    let interesting = prop_oneof![
        Just(b'{'),
        Just(b'}'),
        Just(b'['),
        Just(b']'),
        Just(b'"'),
        Just(b','),
        Just(b':'),
        Just(b'-'),
        Just(b'.'),
        Just(b'e'),
        Just(b'9'),
        Just(b'0'),
        Just(b'\n'),
        Just(0u8),
        any::<u8>(),
    ];
    prop_oneof![
        (any::<usize>(), interesting.clone()).prop_map(|(at, b)| Edit::Set(at, b)),
        (any::<usize>(), prop::collection::vec(interesting, 1..8)).prop_map(|(at, b)| Edit::Insert(at, b)),
        (any::<usize>(), 1usize..16).prop_map(|(at, n)| Edit::Delete(at, n)),
        any::<usize>().prop_map(Edit::Truncate),
    ]
}

fn apply(mut bytes: Vec<u8>, edits: &[Edit]) -> Vec<u8> {
    for edit in edits {
        let len = bytes.len().max(1);
        match edit {
            Edit::Set(at, b) if !bytes.is_empty() => bytes[at % len] = *b,
            Edit::Insert(at, new) => {
                let at = at % (bytes.len() + 1);
                bytes.splice(at..at, new.iter().copied());
            }
            Edit::Delete(at, n) if !bytes.is_empty() => {
                let at = at % len;
                let end = (at + n).min(bytes.len());
                bytes.drain(at..end);
            }
            Edit::Truncate(at) => bytes.truncate(at % len),
            _ => {}
        }
    }
    bytes
}

/// A number token that is often at an edge: zero, huge, negative, fractional.
fn edge_number() -> impl Strategy<Value = String> {
    prop_oneof![
        Just("0".to_owned()),
        Just("-1".to_owned()),
        Just("4294967295".to_owned()),
        Just("4294967296".to_owned()),
        Just("18446744073709551616".to_owned()),
        Just("1e308".to_owned()),
        Just("0.5".to_owned()),
        (0u32..5000).prop_map(|n| n.to_string()),
    ]
}

/// Replaces one numeric value of a valid JSON text by an edge number.
fn with_edge_number(json: &str, which: usize, number: &str) -> String {
    let spans: Vec<(usize, usize)> = numeric_spans(json);
    if spans.is_empty() {
        return json.to_owned();
    }
    let (start, end) = spans[which % spans.len()];
    format!("{}{}{}", &json[..start], number, &json[end..])
}

fn numeric_spans(text: &str) -> Vec<(usize, usize)> {
    let bytes = text.as_bytes();
    let mut spans = Vec::new();
    let mut i = 0;
    while i < bytes.len() {
        if bytes[i].is_ascii_digit() && (i == 0 || !bytes[i - 1].is_ascii_alphanumeric()) {
            let start = i;
            while i < bytes.len() && (bytes[i].is_ascii_digit() || bytes[i] == b'.') {
                i += 1;
            }
            spans.push((start, i));
        }
        i += 1;
    }
    spans
}

/// What every reader must give: a valid architecture, or one line naming the file.
fn check_arch_result(result: Result<ArchSpec, effnas_space::SpaceError>, file: &Path) {
    match result {
        Ok(arch) => {
            arch.validate().expect("an architecture that loads is valid");
            let _ = checked_cost(&arch);
        }
        Err(error) => {
            let message = error.to_string();
            assert!(!message.contains('\n'), "one line: {message}");
            assert!(message.contains(&file.display().to_string()), "names the file: {message}");
        }
    }
}

fn b0_json() -> String {
    serde_json::to_string_pretty(&presets::efficientnet_b0()).expect("B0 serialises")
}

fn write(dir: &Path, name: &str, bytes: &[u8]) -> std::path::PathBuf {
    let path = dir.join(name);
    std::fs::write(&path, bytes).expect("write the case");
    path
}

/// Cases per property: `EFFNAS_FUZZ_CASES` when set (by `scripts/fuzz`), else a CI-sized count.
fn fuzz_cases(ci: u32) -> u32 {
    std::env::var("EFFNAS_FUZZ_CASES").ok().and_then(|n| n.parse().ok()).unwrap_or(ci)
}

proptest! {
    #![proptest_config(ProptestConfig {
        cases: fuzz_cases(256),
        failure_persistence: Some(Box::new(FileFailurePersistence::WithSource("proptest-regressions"))),
        ..ProptestConfig::default()
    })]

    #[test]
    fn mutated_architecture_files_load_or_fail_naming_the_file(
        edits in prop::collection::vec(edit(), 1..6),
    ) {
        let dir = tempfile::tempdir().expect("tempdir");
        let file = write(dir.path(), "arch.json", &apply(b0_json().into_bytes(), &edits));
        check_arch_result(parse_arch(file.to_str().expect("utf-8")), &file);
    }

    #[test]
    fn architecture_files_with_edge_numbers_load_or_fail_naming_the_file(
        which in any::<usize>(),
        number in edge_number(),
    ) {
        let dir = tempfile::tempdir().expect("tempdir");
        let text = with_edge_number(&b0_json(), which, &number);
        let file = write(dir.path(), "arch.json", text.as_bytes());
        check_arch_result(parse_arch(file.to_str().expect("utf-8")), &file);
    }

    #[test]
    fn mutated_space_files_load_or_fail_naming_the_file(
        edits in prop::collection::vec(edit(), 1..6),
        toml in any::<bool>(),
    ) {
        let space = SearchSpace::default_space();
        let (name, text) = if toml {
            ("space.toml", toml::to_string(&space).expect("the space serialises"))
        } else {
            ("space.json", serde_json::to_string_pretty(&space).expect("the space serialises"))
        };
        let dir = tempfile::tempdir().expect("tempdir");
        let file = write(dir.path(), name, &apply(text.into_bytes(), &edits));
        match SearchSpace::from_file(&file) {
            Ok(space) => {
                space.validate().expect("a space that loads is valid");
                let _ = space.size();
            }
            Err(error) => {
                let message = error.to_string();
                prop_assert!(!message.contains('\n'), "one line: {}", message);
                prop_assert!(message.contains(&file.display().to_string()), "names the file: {}", message);
            }
        }
    }

    #[test]
    fn block_chains_of_mangled_tokens_parse_or_fail_in_one_line(
        tokens in prop::collection::vec(
            prop_oneof![
                Just("r1_k3_s11_e1_i32_o16_se0.25".to_owned()),
                Just("r2_k3_s22_e6_i16_o24_se0.25".to_owned()),
                "[rksieo]{1,2}[0-9]{0,12}",
                "se[0-9.e-]{0,8}",
                "\\PC{0,6}",
            ],
            1..6,
        ),
        joiner in prop_oneof![Just("_"), Just(","), Just("")],
    ) {
        let spec = format!("{}_x", tokens.join(joiner));
        match parse_arch(&spec) {
            Ok(arch) => {
                arch.validate().expect("parsed architectures are valid");
                let _ = checked_cost(&arch);
            }
            Err(error) => prop_assert!(!error.to_string().contains('\n'), "one line: {}", error),
        }
    }
}
