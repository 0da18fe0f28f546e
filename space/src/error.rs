use std::path::PathBuf;

/// Everything that can be wrong with an architecture or a search space given by a user.
///
/// Messages are one line and name the offending token, field or file.
#[derive(Debug, thiserror::Error)]
pub enum SpaceError {
    #[error("block string {block:?}: {reason}")]
    BlockString { block: String, reason: String },
    #[error("{field}: {reason}")]
    Invalid { field: String, reason: String },
    #[error("unknown preset {0:?} (known: {known})", known = crate::presets::PRESET_NAMES.join(", "))]
    UnknownPreset(String),
    #[error("unknown search space {0:?} (built in: default, mnasnet; or a .json/.toml file)")]
    UnknownSpace(String),
    #[error("{path}: {reason}")]
    File { path: PathBuf, reason: String },
    #[error("architecture is not a member of search space {space:?}: {reason}")]
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

pub type Result<T, E = SpaceError> = std::result::Result<T, E>;
