//! `effnas serve`: a live web dashboard over an experiment database, as optuna-dashboard and
//! NNI's web UI are for their studies: the runs with their trial counts, a run's best-so-far
//! curves, its accuracy-cost front and its trials table, and one trial in full.
//!
//! Safe by construction: the database is opened read-only ([`OpenOptions::read_only`]: an
//! SQLite file with `mode=ro`, which must exist; PostgreSQL sessions that refuse writes), every
//! statement is a short read (SQLite's WAL mode lets the writer go on meanwhile), the browser
//! names columns from a fixed list and never sends SQL, every value from the database is
//! HTML-escaped, and the server listens on 127.0.0.1 unless told otherwise.
//!
//! Pages are rendered on the server (`pages.rs`); charts are drawn in the browser by uPlot
//! (MIT, vendored in `assets/uplot`, served from the binary) from compact JSON (`charts.rs`).
//! Open pages update themselves: the server polls a cheap change token
//! ([`effnas_store::Store::change_token`]) and pushes server-sent events (`live.rs`); the page
//! then refetches its live parts. Browsers without EventSource poll the token instead.

mod charts;
mod live;
mod pages;
mod query;
mod routes;

use std::net::SocketAddr;
use std::process::ExitCode;
use std::time::Duration;

use anyhow::{bail, Context, Result};
use effnas_store::{OpenOptions, Store};

use super::runs::DbArg;

#[derive(Debug, clap::Args)]
#[command(after_help = "\
Open the address it prints in a browser. Pages update by themselves within about a second of a \
change in the database, so `effnas serve --db effnas.db` can watch a search that another process \
(`effnas search`, `scripts/quickstart`, workers) is writing. The database is only read: a missing \
file is an error, and nothing is ever written to it.")]
pub struct Args {
    #[command(flatten)]
    pub db: DbArg,
    /// The address to listen on. The default, 127.0.0.1, lets only this machine connect; give
    /// 0.0.0.0:PORT to let others in (the dashboard has no login). Port 0 picks a free port.
    #[arg(long, value_name = "ADDR:PORT", default_value = "127.0.0.1:8080")]
    pub bind: SocketAddr,
    /// How often to look for changes in the database, in milliseconds.
    #[arg(long, value_name = "MS", default_value_t = 500, value_parser = clap::value_parser!(u64).range(50..=60_000))]
    pub poll_ms: u64,
}

/// What every request handler shares.
#[derive(Clone)]
pub(crate) struct App {
    pub store: Store,
    /// The latest change token, pushed by the poller.
    pub changes: tokio::sync::watch::Receiver<String>,
    /// The event streams open now.
    pub streams: live::OpenStreams,
}

pub fn run(args: Args) -> Result<ExitCode> {
    let runtime = tokio::runtime::Builder::new_multi_thread()
        .worker_threads(2)
        .enable_all()
        .build()
        .context("starting the async runtime")?;
    runtime.block_on(serve(args))
}

async fn serve(args: Args) -> Result<ExitCode> {
    let store = open(&args.db.db).await?;
    let token = store.change_token().await.context("reading the database")?;
    let (sender, changes) = tokio::sync::watch::channel(token);
    let poller = tokio::spawn(live::poll(store.clone(), sender, Duration::from_millis(args.poll_ms)));
    // Stopping the poller drops its sender, which ends every open event stream: a graceful
    // shutdown would otherwise wait for pages that never hang up.
    let stop_poller = poller.abort_handle();
    let listener = tokio::net::TcpListener::bind(args.bind)
        .await
        .with_context(|| format!("--bind {}: cannot listen there", args.bind))?;
    let address = listener.local_addr().context("reading the bound address")?;
    // The first line on stdout is the address, for people and for scripts (port 0 picks one).
    crate::output::outln!("http://{address}/")?;
    eprintln!(
        "effnas serve: {} ({}, read-only) at http://{address}/ — Ctrl-C stops",
        Store::redacted(&args.db.db),
        store.backend()
    );
    let app = routes::router(App { store: store.clone(), changes, streams: live::OpenStreams::default() });
    axum::serve(listener, app)
        .with_graceful_shutdown(async move {
            let _ = tokio::signal::ctrl_c().await;
            stop_poller.abort();
        })
        .await
        .context("serving")?;
    store.close().await;
    Ok(ExitCode::SUCCESS)
}

/// Opens the database read-only; an in-memory database (nothing to watch) is refused.
async fn open(target: &str) -> Result<Store> {
    let store = Store::open_with(target, &OpenOptions { max_connections: 4, ..OpenOptions::read_only() })
        .await
        .with_context(|| format!("--db {}", Store::redacted(target)))?;
    if store.is_in_memory() {
        bail!("--db {target}: an in-memory database has nothing to watch; give a file or a postgres:// URL");
    }
    Ok(store)
}
