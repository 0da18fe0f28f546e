//! One module per `effnas` command, each with its clap `Args` and a `run`.

pub mod arch;
pub mod bench_infer;
pub mod cam;
pub mod compound;
pub mod db;
pub mod export;
pub mod export_model;
pub mod fidelity;
pub mod finalists;
pub mod finetune;
pub mod import_model;
pub mod pareto;
pub mod plot;
pub mod predictor;
pub mod proxy;
pub mod resume;
pub mod runs;
pub mod scale;
pub mod search;
pub mod serve;
pub mod show;
pub mod space;
pub mod train;
pub mod trials;
pub mod worker;
