//! Test support shared by the effnas crates' fuzz targets (`space/tests/fuzz_spec.rs`,
//! `evaluator/tests/fuzz_readers.rs`): damage to a valid file's bytes as proptest strategies, so
//! every reader of user files is fuzzed the same way and failures shrink to a few edits.

use proptest::prelude::*;

/// One change to a file's bytes. Positions are taken modulo the current length, so any edit
/// applies to any file and shrinking keeps it meaningful.
#[derive(Debug, Clone)]
pub enum Edit {
    /// Overwrite one byte.
    Set(usize, u8),
    /// Overwrite the `slot`-th big-endian u32 of the file (binary headers are u32 fields).
    SetWord(usize, u32),
    Insert(usize, Vec<u8>),
    Delete(usize, usize),
    Truncate(usize),
}

/// Edits made of `byte`s (choose bytes that matter to the format), with header words set to
/// edge values in the first `header_words` u32 slots (0 for text formats).
pub fn edit(byte: BoxedStrategy<u8>, header_words: usize) -> impl Strategy<Value = Edit> {
    let word = prop_oneof![Just(0u32), Just(1), Just(u32::MAX), Just(1 << 31), any::<u32>()];
    prop_oneof![
        (any::<usize>(), byte.clone()).prop_map(|(at, b)| Edit::Set(at, b)),
        (0..header_words.max(1), word).prop_map(|(slot, w)| Edit::SetWord(slot, w)),
        (any::<usize>(), prop::collection::vec(byte, 1..16)).prop_map(|(at, b)| Edit::Insert(at, b)),
        (any::<usize>(), 1usize..64).prop_map(|(at, n)| Edit::Delete(at, n)),
        any::<usize>().prop_map(Edit::Truncate),
    ]
}

/// `bytes` with `edits` applied in order.
pub fn apply(mut bytes: Vec<u8>, edits: &[Edit]) -> Vec<u8> {
    for edit in edits {
        let len = bytes.len().max(1);
        match edit {
            Edit::Set(at, b) if !bytes.is_empty() => bytes[at % len] = *b,
            Edit::SetWord(slot, word) if bytes.len() >= (slot + 1) * 4 => {
                bytes[slot * 4..slot * 4 + 4].copy_from_slice(&word.to_be_bytes());
            }
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

/// Cases per property: `EFFNAS_FUZZ_CASES` when set (by `scripts/fuzz`), else `ci`.
pub fn fuzz_cases(ci: u32) -> u32 {
    std::env::var("EFFNAS_FUZZ_CASES").ok().and_then(|n| n.parse().ok()).unwrap_or(ci)
}
