//! One module per `effnas` command, each with its clap `Args` and a `run`.

pub mod arch;
pub mod scale;
pub mod space;
