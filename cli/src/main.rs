//! `effnas`: search and scale convolutional networks as the EfficientNet paper did.

use std::process::ExitCode;

use clap::{Parser, Subcommand};

mod commands;
mod output;
mod progress;
mod table;

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
    /// Grid-search the compound coefficients α, β, γ (α·β²·γ² ≈ 2) around a base network.
    Compound(commands::compound::Args),
    /// Search a space for the best architecture under a FLOPS-aware reward (MnasNet/EfficientNet).
    Search(commands::search::Args),
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
    /// Plot a run: reward over trials with the best so far, accuracy vs multiply-adds with the Pareto front.
    Plot(commands::plot::Args),
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

fn main() -> ExitCode {
    let cli = Cli::parse();
    init_logging(cli.verbose);
    let result = match cli.command {
        Command::Arch(args) => commands::arch::run(args),
        Command::Space(args) => commands::space::run(args),
        Command::Scale(args) => commands::scale::run(args),
        Command::Train(args) => commands::train::run(args),
        Command::Search(args) => commands::search::run(args),
        Command::Compound(args) => commands::compound::run(args),
        Command::Runs(args) => commands::runs::run(args),
        Command::Trials(args) => commands::trials::run(args),
        Command::Show(args) => commands::show::run(args),
        Command::Pareto(args) => commands::pareto::run(args),
        Command::Export(args) => commands::export::run(args),
        Command::Plot(args) => commands::plot::run(args),
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
