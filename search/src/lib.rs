//! The search library of effnas: controllers that propose architectures (MnasNet §3), the
//! orchestrator that queues, evaluates and records them, the evaluators (proxy training and a
//! synthetic oracle), the proxy task and its reuse key, the reward, and the configurations
//! stored with each run. The `effnas` binary (crate `effnas-cli`) is built on it.

pub mod asha;
pub mod benchmarks;
pub mod config;
pub mod controller;
pub mod evaluate;
pub mod fidelity;
pub mod finalists;
pub mod oracle;
pub mod orchestrator;
pub mod predictor;
pub mod proxy;
pub mod recipe;
pub mod remote;
pub mod scoring;
pub mod stats;
pub mod train_evaluator;
pub mod worker;
