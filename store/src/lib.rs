//! The experiment database (filled in by the store issue).
