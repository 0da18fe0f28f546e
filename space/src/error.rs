use std::fmt;
use std::path::PathBuf;

/// Everything that can be wrong with an architecture or a search space given by a user.
///
/// Messages are one line and name the offending token, field or file.
#[derive(Debug, thiserror::Error)]
pub enum SpaceError {
    #[error("block string {}: {}", Echo(block), clip(reason, REASON_LIMIT))]
    BlockString { block: String, reason: String },
    #[error("{field}: {reason}")]
    Invalid { field: String, reason: String },
    #[error(
        "unknown preset {} (known: {known}; or block strings, or a .json file)",
        Echo(.0),
        known = crate::presets::PRESET_NAMES.join(", ")
    )]
    UnknownPreset(String),
    #[error(
        "unknown search space {} (built in: {}; or a .json/.toml file)",
        Echo(.0),
        crate::search_space::BUILT_IN.join(", ")
    )]
    UnknownSpace(String),
    /// A file that cannot be read or parsed. The reason may quote the file's content (serde does),
    /// so it is cut short too.
    #[error("{}: {}", path.display(), clip(reason, REASON_LIMIT))]
    File { path: PathBuf, reason: String },
    #[error("architecture is not a member of search space {}: {reason}", Echo(space))]
    NotInSpace { space: String, reason: String },
    /// A count of the cost model is above [`crate::cost::MAX_COUNT`] (or does not even fit in
    /// 64 bits); `count` is the exact count, saturated at `u128::MAX`.
    #[error(
        "the architecture has {count} {what} (about {approx:.1e}), above the limit of {limit:e}: \
         counts must fit the signed 64-bit columns that store them",
        approx = *count as f64
    )]
    CostOverflow { what: crate::cost::CostKind, count: u128, limit: u64 },
}

impl SpaceError {
    pub(crate) fn invalid(field: impl Into<String>, reason: impl Into<String>) -> Self {
        SpaceError::Invalid { field: field.into(), reason: reason.into() }
    }
}

/// The most characters of user input a message echoes.
pub const ECHO_LIMIT: usize = 80;

/// The most characters of a parser's reason a message shows (parsers quote the input).
const REASON_LIMIT: usize = 240;

/// User input as a one-line message echoes it: quoted like `{:?}`, and cut to [`ECHO_LIMIT`]
/// characters with "…", so a 100 KB spec or a binary file name never floods the terminal.
/// Every message that repeats what the user typed goes through here.
#[derive(Debug, Clone, Copy)]
pub struct Echo<'a>(pub &'a str);

impl fmt::Display for Echo<'_> {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        write!(f, "{:?}", clip(self.0, ECHO_LIMIT).as_ref())
    }
}

/// `text` cut to at most `limit` characters, ending in "…" when it was cut.
pub fn clip(text: &str, limit: usize) -> std::borrow::Cow<'_, str> {
    match text.char_indices().nth(limit) {
        None => text.into(),
        Some(_) => {
            let end = text.char_indices().nth(limit.saturating_sub(1)).map_or(text.len(), |(i, _)| i);
            format!("{}…", &text[..end]).into()
        }
    }
}

pub type Result<T, E = SpaceError> = std::result::Result<T, E>;

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn echoes_are_cut_at_the_limit_on_a_character_boundary() {
        assert_eq!(Echo("b0").to_string(), "\"b0\"");
        let long = "é".repeat(1000);
        let echoed = Echo(&long).to_string();
        assert_eq!(echoed.chars().count(), ECHO_LIMIT + 2, "{echoed}");
        assert!(echoed.ends_with("…\""));
        assert_eq!(clip(&"x".repeat(ECHO_LIMIT), ECHO_LIMIT).len(), ECHO_LIMIT);
    }
}
