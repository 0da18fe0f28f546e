//! The search half of effnas: controllers that propose architectures, the synthetic oracle
//! objective, and (in the binary) the `effnas` command-line tool.

pub mod controller;
pub mod oracle;
pub mod orchestrator;
