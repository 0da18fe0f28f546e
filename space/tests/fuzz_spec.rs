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
use effnas_testkit::{apply, edit, fuzz_cases, Edit};
use proptest::prelude::*;
use proptest::test_runner::FileFailurePersistence;

/// Bytes that matter to JSON and TOML, plus digits and letters that form numbers and keys.
fn text_byte() -> BoxedStrategy<u8> {
    prop_oneof![prop::sample::select(b"{}[]\",:-.e90\n".to_vec()), Just(0u8), any::<u8>(),].boxed()
}

fn edits() -> impl Strategy<Value = Vec<Edit>> {
    prop::collection::vec(edit(text_byte(), 0), 1..6)
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

proptest! {
    #![proptest_config(ProptestConfig {
        cases: fuzz_cases(256),
        failure_persistence: Some(Box::new(FileFailurePersistence::WithSource("proptest-regressions"))),
        ..ProptestConfig::default()
    })]

    #[test]
    fn mutated_architecture_files_load_or_fail_naming_the_file(
        edits in edits(),
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
        edits in edits(),
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

/// The case the fuzz target found first (kept as a plain test, since a proptest seed replays a
/// different case once the strategies change): TOML's message for a broken string spans two
/// lines, and the error must still be one.
#[test]
fn a_toml_space_file_with_a_broken_string_fails_in_one_line() {
    let text = toml::to_string(&SearchSpace::default_space()).expect("the space serialises");
    let quote = text.find('"').expect("the TOML has a string");
    let broken = format!("{}{}", &text[..quote], &text[quote + 3..]);
    let dir = tempfile::tempdir().expect("tempdir");
    let file = write(dir.path(), "space.toml", broken.as_bytes());
    let message = SearchSpace::from_file(&file).expect_err("a broken string").to_string();
    assert!(!message.contains('\n'), "one line: {message}");
    assert!(message.contains("space.toml"), "names the file: {message}");
}
