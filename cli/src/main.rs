//! `effnas`: search and scale convolutional networks as the EfficientNet paper did.

use std::process::ExitCode;

use clap::{Parser, Subcommand};

mod commands;
mod files;
mod flags;
mod output;
mod progress;
mod table;
mod workers;

/// Search and scale convolutional networks the EfficientNet way: MnasNet-style architecture
/// search with proxy training, then compound scaling.
#[derive(Debug, Parser)]
#[command(name = "effnas", version, about, long_about = None, propagate_version = true)]
struct Cli {
    /// More log output (-v: info, -vv: debug); RUST_LOG overrides.
    #[arg(short, long, action = clap::ArgAction::Count, global = true)]
    verbose: u8,

    #[command(subcommand)]
    command: Command,
}

#[derive(Debug, Subcommand)]
enum Command {
    /// Show an architecture: per-block table, parameters and multiply-adds.
    Arch(commands::arch::Args),
    /// Describe a search space: size, choices, samples, membership.
    Space(commands::space::Args),
    /// Compound-scale a base network by α, β, γ over φ, next to the official EfficientNet table.
    Scale(commands::scale::Args),
    /// Train one architecture as a proxy task: validation accuracy, cost, reward, speed.
    Train(commands::train::Args),
    /// Fine-tune a trained network on another data set: new classifier (and stem), frozen backbone or not.
    Finetune(commands::finetune::Args),
    /// Class activation maps of trained networks on images, as PNGs and one side-by-side grid.
    Cam(commands::cam::Args),
    /// Grid-search the compound coefficients α, β, γ (α·β²·γ² ≈ 2) around a base network.
    Compound(commands::compound::Args),
    /// Search a space for the best architecture under a FLOPS-aware reward (MnasNet/EfficientNet).
    Search(commands::search::Args),
    /// Fit an accuracy predictor on Accel-NASBench or a run's trials, or show a model file.
    Predictor(commands::predictor::Args),
    /// Measure how far a proxy can be trusted: seed noise and rank agreement with a longer training.
    Fidelity(commands::fidelity::Args),
    /// List the runs in a database: status, trial counts, best reward, duration.
    Runs(commands::runs::Args),
    /// List a run's trials, filtered and sorted.
    Trials(commands::trials::Args),
    /// Show one trial in full: architecture, cost, metrics, training curve, error.
    Show(commands::show::Args),
    /// List a run's Pareto-optimal trials (accuracy up, multiply-adds down).
    Pareto(commands::pareto::Args),
    /// Export every trial of a run as CSV or JSON.
    Export(commands::export::Args),
    /// Train queued trials from the database: a worker process, on this machine or another.
    Worker(commands::worker::Args),
    /// Plot a run: reward over trials with the best so far, accuracy vs multiply-adds with the Pareto front.
    Plot(commands::plot::Args),
    /// Manage databases: copy runs between SQLite and PostgreSQL.
    Db(commands::db::Args),
    /// Write a trained network for PyTorch: safetensors with torchvision's names, or TorchScript.
    ExportModel(commands::export_model::Args),
    /// Make a checkpoint from PyTorch weights (a safetensors state dict with torchvision's names).
    ImportModel(commands::import_model::Args),
    /// Inference speed: latency (median, p90) and throughput per batch size.
    BenchInfer(commands::bench_infer::Args),
    /// A live web dashboard over a database (read-only): runs, charts, trials, workers.
    Serve(commands::serve::Args),
}

fn init_logging(verbose: u8) {
    let default = match verbose {
        0 => "warn",
        1 => "info",
        _ => "debug",
    };
    let filter = tracing_subscriber::EnvFilter::try_from_default_env()
        .unwrap_or_else(|_| tracing_subscriber::EnvFilter::new(default));
    // Logs go to stderr so stdout stays clean for tables and JSON.
    tracing_subscriber::fmt().with_env_filter(filter).with_writer(std::io::stderr).init();
}

/// clap's own output for `--help` and `--version`, and everything else it refuses as one line on
/// stderr with exit status 2, as every other error: the culprit and the accepted values, without
/// the usage block (`--help` has it).
fn refused_by_parser(error: &clap::Error) -> ExitCode {
    use clap::error::ErrorKind;
    if matches!(
        error.kind(),
        ErrorKind::DisplayHelp
            | ErrorKind::DisplayVersion
            | ErrorKind::DisplayHelpOnMissingArgumentOrSubcommand
    ) {
        // Printing help can fail only on a closed or full stdout; the exit status says enough.
        let _ = error.print();
        return ExitCode::from(u8::try_from(error.exit_code()).unwrap_or(2));
    }
    let rendered = error.render().to_string();
    let line = rendered
        .lines()
        .map(str::trim)
        .take_while(|line| !line.starts_with("Usage:") && !line.starts_with("For more information"))
        .filter(|line| !line.is_empty())
        .collect::<Vec<_>>()
        .join(" ");
    eprintln!("{line}");
    ExitCode::from(2)
}

fn main() -> ExitCode {
    let cli = match Cli::try_parse() {
        Ok(cli) => cli,
        Err(error) => return refused_by_parser(&error),
    };
    init_logging(cli.verbose);
    let result = match cli.command {
        Command::Arch(args) => commands::arch::run(args),
        Command::Space(args) => commands::space::run(args),
        Command::Scale(args) => commands::scale::run(args),
        Command::Train(args) => commands::train::run(args),
        Command::Finetune(args) => commands::finetune::run(args),
        Command::Cam(args) => commands::cam::run(args),
        Command::Search(args) => commands::search::run(args),
        Command::Compound(args) => commands::compound::run(args),
        Command::Predictor(args) => commands::predictor::run(args),
        Command::Fidelity(args) => commands::fidelity::run(args),
        Command::Runs(args) => commands::runs::run(args),
        Command::Trials(args) => commands::trials::run(args),
        Command::Show(args) => commands::show::run(args),
        Command::Pareto(args) => commands::pareto::run(args),
        Command::Export(args) => commands::export::run(args),
        Command::Plot(args) => commands::plot::run(args),
        Command::Worker(args) => commands::worker::run(args),
        Command::Db(args) => commands::db::run(args),
        Command::ExportModel(args) => commands::export_model::run(args),
        Command::ImportModel(args) => commands::import_model::run(args),
        Command::BenchInfer(args) => commands::bench_infer::run(args),
        Command::Serve(args) => commands::serve::run(args),
    };
    match result {
        Ok(code) => code,
        // `effnas trials | head`: the reader stopped reading. End quietly with the status a process
        // killed by SIGPIPE reports, as other command-line tools do.
        Err(error) if error.is::<output::StdoutClosed>() => ExitCode::from(141),
        Err(error) => {
            eprintln!("error: {error:#}");
            ExitCode::from(2)
        }
    }
}
