//! `effnas serve` in a real browser: Debian's Chromium, headless, driven through chromedriver
//! (WebDriver) with fantoccini. A seeded database is served on a free port; the runs page and
//! a run page must show the right counts and sort order, show a hostile run name as text, draw
//! their charts, and update by themselves within 2 s of a trial being added to the database.
//! Screenshots of both pages are saved under the target directory. Going back and forth between
//! pages must not leave their event streams open (Chromium's back/forward cache).
//!
//! `scripts/setup` installs `chromium` and `chromium-driver`; EFFNAS_CHROMIUM and
//! EFFNAS_CHROMEDRIVER name other binaries. Without them this test fails, saying so: it is
//! meant to run in CI, never to be skipped.
#![cfg(unix)]
#![allow(clippy::unwrap_used)]

mod common;
#[path = "common/dashboard.rs"]
mod dashboard;

use std::net::{TcpListener, TcpStream};
use std::path::{Path, PathBuf};
use std::process::{Child, Command, Stdio};
use std::time::{Duration, Instant};

use dashboard::{seed, Seed, Server, HOSTILE_NAME};
use effnas_store::{RunId, Store};
use fantoccini::{Client, ClientBuilder, Locator};

fn binary(env: &str, default: &str) -> PathBuf {
    let path = PathBuf::from(std::env::var(env).unwrap_or_else(|_| default.to_owned()));
    assert!(
        path.exists(),
        "{} is missing: run scripts/setup (it installs Debian's chromium and chromium-driver), or set {env}",
        path.display()
    );
    path
}

/// chromedriver on a free port, stopped when dropped.
struct Driver {
    child: Child,
    url: String,
}

impl Driver {
    fn start() -> Driver {
        let port = TcpListener::bind("127.0.0.1:0").unwrap().local_addr().unwrap().port();
        let child = Command::new(binary("EFFNAS_CHROMEDRIVER", "/usr/bin/chromedriver"))
            .arg(format!("--port={port}"))
            .stdout(Stdio::null())
            .stderr(Stdio::null())
            .spawn()
            .unwrap();
        let started = Instant::now();
        while TcpStream::connect(("127.0.0.1", port)).is_err() {
            assert!(started.elapsed() < Duration::from_secs(60), "chromedriver did not start listening");
            std::thread::sleep(Duration::from_millis(50));
        }
        Driver { child, url: format!("http://127.0.0.1:{port}") }
    }
}

impl Drop for Driver {
    fn drop(&mut self) {
        let _ = self.child.kill();
        let _ = self.child.wait();
    }
}

/// A headless Chromium session with a profile of its own that talks to nothing but the page.
async fn browser(driver: &Driver, profile: &Path, size: (u32, u32)) -> Client {
    let args = [
        "--headless".to_owned(),
        "--no-sandbox".to_owned(),
        "--disable-gpu".to_owned(),
        "--disable-dev-shm-usage".to_owned(),
        "--disable-quic".to_owned(),
        "--no-first-run".to_owned(),
        "--disable-background-networking".to_owned(),
        "--disable-component-update".to_owned(),
        "--disable-sync".to_owned(),
        format!("--window-size={},{}", size.0, size.1),
        format!("--user-data-dir={}", profile.display()),
    ];
    let chromium = binary("EFFNAS_CHROMIUM", "/usr/bin/chromium");
    let mut capabilities = serde_json::Map::new();
    capabilities.insert(
        "goog:chromeOptions".to_owned(),
        serde_json::json!({ "binary": chromium.display().to_string(), "args": args }),
    );
    let connector = hyper_util::client::legacy::connect::HttpConnector::new();
    ClientBuilder::new(connector).capabilities(capabilities).connect(&driver.url).await.unwrap()
}

/// The text of the element `css` selects. Read in one script, so that a live update swapping the
/// element meanwhile cannot leave a stale reference.
async fn text(client: &Client, css: &str) -> String {
    let script = "var e = document.querySelector(arguments[0]); return e ? e.textContent.trim() : null;";
    let value = client.execute(script, vec![serde_json::json!(css)]).await.unwrap();
    value.as_str().unwrap_or_else(|| panic!("nothing matches {css}")).to_owned()
}

/// The trial ids of the table's rows, top to bottom (read in one script, as [`text`]).
async fn trial_ids(client: &Client) -> Vec<i64> {
    let script =
        "return Array.from(document.querySelectorAll('#trials tbody tr')).map(r => Number(r.dataset.trial));";
    let value = client.execute(script, vec![]).await.unwrap();
    value.as_array().unwrap().iter().map(|v| v.as_i64().unwrap()).collect()
}

async fn screenshot(client: &Client, dir: &Path, name: &str) -> PathBuf {
    let png = client.screenshot().await.unwrap();
    assert!(png.starts_with(b"\x89PNG"), "a PNG screenshot");
    std::fs::create_dir_all(dir).unwrap();
    let path = dir.join(name);
    std::fs::write(&path, png).unwrap();
    path
}

/// Waits until the charts of the run page are drawn (uPlot makes a canvas in each).
async fn charts_drawn(client: &Client) {
    for chart in ["#chart-progress canvas", "#chart-time canvas", "#chart-front canvas"] {
        client.wait().at_most(Duration::from_secs(30)).for_element(Locator::Css(chart)).await.unwrap();
    }
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn pages_show_counts_sort_and_update_live_in_chromium() {
    let dir = tempfile::tempdir().unwrap();
    let db = dir.path().join("effnas.db").display().to_string();
    let store = Store::open(&db).await.unwrap();
    seed(&store, &Seed { name: HOSTILE_NAME, complete: 40, failed: 3, pending: 4 }).await;
    seed(&store, &Seed { name: "b0-search", complete: 5, failed: 0, pending: 0 }).await;
    let server = Server::start(&db);
    let driver = Driver::start();
    let client = browser(&driver, &dir.path().join("profile"), (1400, 1000)).await;
    let shots = PathBuf::from(env!("CARGO_TARGET_TMPDIR")).join("dashboard");

    // The runs page: one row per run, counts by state, the hostile name as plain text.
    client.goto(&format!("{}/", server.base)).await.unwrap();
    let rows =
        client.execute("return document.querySelectorAll('#runs tbody tr').length", vec![]).await.unwrap();
    assert_eq!(rows, 2);
    for (state, count) in
        [("pending", "4"), ("running", "1"), ("complete", "40"), ("failed", "3"), ("reclaimed", "0")]
    {
        assert_eq!(
            text(&client, &format!("tr[data-run='1'] td[data-count='{state}']")).await,
            count,
            "{state}"
        );
    }
    assert_eq!(text(&client, "tr[data-run='1'] td a").await, HOSTILE_NAME, "the name shows as text");
    let scripts = client.execute("return document.scripts.length", vec![]).await.unwrap();
    assert_eq!(scripts, 2, "only the page's own two scripts: the name added none");
    screenshot(&client, &shots, "runs.png").await;

    // A run page: charts drawn, every trial on one page, and sorting by a header click.
    client.goto(&format!("{}/runs/1", server.base)).await.unwrap();
    charts_drawn(&client).await;
    assert_eq!(trial_ids(&client).await.len(), 48);
    // Clicked in one script: a live update may swap the table between a find and a click.
    let click = "document.querySelector(\"a.sort[data-column='accuracy']\").click()";
    client.execute(click, vec![]).await.unwrap();
    let clicked = Instant::now();
    while !client.current_url().await.unwrap().as_str().contains("sort=accuracy&order=desc") {
        assert!(clicked.elapsed() < Duration::from_secs(30), "the header link did not sort");
        tokio::time::sleep(Duration::from_millis(50)).await;
    }
    // Accuracy rises with the trial number up to trial 40: the best are 40, 39, 38, …
    assert_eq!(trial_ids(&client).await[..5], [40, 39, 38, 37, 36]);
    charts_drawn(&client).await;

    // A trial added to the database shows on the open page, pushed, without a reload.
    let updates = client.execute("return window.effnasUpdates", vec![]).await.unwrap();
    assert_eq!(text(&client, "#run-summary [data-count='total']").await, "48");
    store.insert_trial(RunId(1), &dashboard::trial(900)).await.unwrap();
    let written = Instant::now();
    loop {
        if text(&client, "#run-summary [data-count='total']").await == "49" {
            break;
        }
        assert!(written.elapsed() < Duration::from_secs(2), "the page did not update within 2 s");
        tokio::time::sleep(Duration::from_millis(50)).await;
    }
    let after = client.execute("return window.effnasUpdates", vec![]).await.unwrap();
    assert!(
        after.as_u64() > updates.as_u64(),
        "updated by the page's script ({updates} → {after}), not reloaded"
    );
    assert_eq!(trial_ids(&client).await.len(), 49, "the table gained the trial");
    screenshot(&client, &shots, "run.png").await;
    eprintln!("screenshots in {}; page updated {:?} after the write", shots.display(), written.elapsed());

    client.close().await.unwrap();
    store.close().await;
}

/// Which page the browser shows (`data-page` of its body: runs, run, trial), once loaded.
async fn page_kind(client: &Client) -> String {
    let value =
        client.execute("return document.body ? document.body.dataset.page : null", vec![]).await.unwrap();
    value.as_str().unwrap_or_default().to_owned()
}

/// Waits (polling, up to 30 s) until the server holds one or two event streams: the page shown
/// has its stream, and a page just left may not have hung up yet, but no more.
async fn streams_settle(server: &Server, step: &str) {
    let deadline = Instant::now() + Duration::from_secs(30);
    loop {
        let port = server.port;
        let status = tokio::task::spawn_blocking(move || dashboard::get(port, "/api/status")).await.unwrap();
        let status: serde_json::Value = serde_json::from_str(&status.body).unwrap();
        let open = status["open_streams"].as_u64().unwrap();
        if (1..=2).contains(&open) {
            return;
        }
        assert!(
            Instant::now() < deadline,
            "{step}: the server holds {open} event streams (left pages kept theirs open: the page \
             script must close its stream on pagehide)"
        );
        tokio::time::sleep(Duration::from_millis(50)).await;
    }
}

/// A guard against the stall of left pages: Chromium keeps pages left for another whole in its
/// back/forward cache, and a cached page that kept its event stream open held one of the six
/// connections allowed per host, until a later page waited a minute for one. Back and forth
/// between pages, the server must never hold more than two streams, every navigation must
/// complete, and a page restored from the cache must be live again.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn left_pages_close_their_event_streams_in_chromium() {
    let dir = tempfile::tempdir().unwrap();
    let db = dir.path().join("effnas.db").display().to_string();
    let store = Store::open(&db).await.unwrap();
    seed(&store, &Seed { name: "first", complete: 12, failed: 0, pending: 0 }).await;
    seed(&store, &Seed { name: "second", complete: 3, failed: 0, pending: 0 }).await;
    let server = Server::start(&db);
    let driver = Driver::start();
    let client = browser(&driver, &dir.path().join("profile"), (1000, 700)).await;
    // A navigation that waits for a connection fails here instead of after five minutes.
    let timeouts = fantoccini::wd::TimeoutConfiguration::new(None, Some(Duration::from_secs(30)), None);
    client.update_timeouts(timeouts).await.unwrap();

    let mut restored = 0;
    for round in 0..8 {
        client.goto(&format!("{}/runs/1", server.base)).await.unwrap();
        assert_eq!(page_kind(&client).await, "run", "round {round}: the run page");
        // A mark that only survives if the page is kept whole and restored from the cache.
        client.execute("window.effnasKept = true", vec![]).await.unwrap();
        streams_settle(&server, &format!("round {round}, run page")).await;
        client.goto(&format!("{}/trials/{}", server.base, round + 1)).await.unwrap();
        assert_eq!(page_kind(&client).await, "trial", "round {round}: the trial page");
        streams_settle(&server, &format!("round {round}, trial page")).await;
        client.back().await.unwrap();
        assert_eq!(page_kind(&client).await, "run", "round {round}: back on the run page");
        let kept = client.execute("return window.effnasKept === true", vec![]).await.unwrap();
        restored += usize::from(kept.as_bool() == Some(true));
        streams_settle(&server, &format!("round {round}, back")).await;
        let other = if round % 2 == 0 { "/".to_owned() } else { "/runs/2".to_owned() };
        client.goto(&format!("{}{other}", server.base)).await.unwrap();
        assert!(["runs", "run"].contains(&page_kind(&client).await.as_str()), "round {round}: {other}");
        streams_settle(&server, &format!("round {round}, {other}")).await;
    }
    assert!(restored > 0, "no page came back from the back/forward cache: this test did not exercise it");

    // A page restored from the cache listens again: it shows a trial added after it came back.
    client.goto(&format!("{}/runs/1", server.base)).await.unwrap();
    client.goto(&format!("{}/trials/1", server.base)).await.unwrap();
    client.back().await.unwrap();
    streams_settle(&server, "back for the update").await;
    let before = text(&client, "#run-summary [data-count='total']").await;
    store.insert_trial(RunId(1), &dashboard::trial(950)).await.unwrap();
    let deadline = Instant::now() + Duration::from_secs(30);
    while text(&client, "#run-summary [data-count='total']").await == before {
        assert!(Instant::now() < deadline, "the restored page never updated: its stream was not reopened");
        tokio::time::sleep(Duration::from_millis(50)).await;
    }
    eprintln!("{restored} of 8 back navigations were restored from the back/forward cache");
    client.close().await.unwrap();
    store.close().await;
}

/// Screenshots of a real database for the README: `scripts/dashboard-screenshots` runs this
/// with EFFNAS_SCREENSHOT_DB (a copy of the database), EFFNAS_SCREENSHOT_RUN (the run to show)
/// and EFFNAS_SCREENSHOT_DIR (where the PNGs go).
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
#[ignore = "needs EFFNAS_SCREENSHOT_DB; run by scripts/dashboard-screenshots"]
async fn screenshots_of_a_database() {
    let db = std::env::var("EFFNAS_SCREENSHOT_DB").expect("EFFNAS_SCREENSHOT_DB");
    let run = std::env::var("EFFNAS_SCREENSHOT_RUN").unwrap_or_else(|_| "1".to_owned());
    let out = PathBuf::from(std::env::var("EFFNAS_SCREENSHOT_DIR").expect("EFFNAS_SCREENSHOT_DIR"));
    let dir = tempfile::tempdir().unwrap();
    let server = Server::start(&db);
    let driver = Driver::start();
    let client = browser(&driver, &dir.path().join("profile"), (1400, 480)).await;
    client.goto(&format!("{}/", server.base)).await.unwrap();
    println!("{}", screenshot(&client, &out, "dashboard-runs.png").await.display());
    client.set_window_size(1400, 1900).await.unwrap();
    client.goto(&format!("{}/runs/{run}?per_page=20", server.base)).await.unwrap();
    charts_drawn(&client).await;
    println!("{}", screenshot(&client, &out, "dashboard-run.png").await.display());
    client.close().await.unwrap();
}

/// What the page's own clock says: navigation timing, and the long tasks (main-thread work
/// over 50 ms, which is what freezing means) and long animation frames Chromium recorded since
/// the navigation, delivered to observers made with `buffered: true` (`watch_long_tasks`).
const PAGE_TIMING: &str = r#"
    var nav = performance.getEntriesByType('navigation')[0];
    return {
        now_ms: performance.now(),
        response_end_ms: nav ? nav.responseEnd : null,
        dom_content_loaded_ms: nav ? nav.domContentLoadedEventEnd : null,
        load_ms: nav ? nav.loadEventEnd : null,
        long_tasks_ms: window.effnasLong ? window.effnasLong['longtask'] : null,
        long_frames_ms: window.effnasLong ? window.effnasLong['long-animation-frame'] : null,
        supported: PerformanceObserver.supportedEntryTypes,
    };
"#;

/// Asks for the page's long tasks and long animation frames, buffered since it was opened.
async fn watch_long_tasks(client: &Client) {
    let script = "window.effnasLong = {}; ['longtask', 'long-animation-frame'].forEach(function (type) { \
                  window.effnasLong[type] = []; try { new PerformanceObserver(l => l.getEntries().forEach(e => \
                  window.effnasLong[type].push(e.duration))).observe({type: type, buffered: true}); } \
                  catch (e) { window.effnasLong[type] = null; } });";
    client.execute(script, vec![]).await.unwrap();
    // Observers are called back asynchronously.
    tokio::time::sleep(Duration::from_millis(300)).await;
}

/// The figure in docs/BENCHMARKS.md: a run page of 10,000 trials in Chromium, from the click
/// that opens it to its three charts drawn, and how long the main thread was blocked meanwhile;
/// then a sort by a column header. `scripts/bench-serve --browser` runs this and keeps its output.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
#[ignore = "a measurement, not a check: run by scripts/bench-serve --browser"]
async fn ten_thousand_trials_render_in_chromium() {
    let dir = tempfile::tempdir().unwrap();
    let db = dir.path().join("effnas.db").display().to_string();
    let store = Store::open(&db).await.unwrap();
    seed(&store, &Seed { name: "ten-thousand", complete: 9_900, failed: 50, pending: 49 }).await;
    store.close().await;
    let server = Server::start(&db);
    let driver = Driver::start();
    let client = browser(&driver, &dir.path().join("profile"), (1400, 1000)).await;
    println!(
        "{:<6} {:>11} {:>11} {:>9} {:>10} {:>8} {:>6} {:>10} {:>7} {:>10}",
        "round",
        "response ms",
        "DOM ready",
        "load ms",
        "charts ms",
        "sort ms",
        "tasks",
        "longest ms",
        "frames",
        "longest ms"
    );
    for round in 1..=5 {
        client.goto(&format!("{}/", server.base)).await.unwrap();
        let started = Instant::now();
        client.goto(&format!("{}/runs/1", server.base)).await.unwrap();
        charts_drawn(&client).await;
        let charts = started.elapsed().as_secs_f64() * 1000.0;
        watch_long_tasks(&client).await;
        let timing = client.execute(PAGE_TIMING, vec![]).await.unwrap();
        let click = "document.querySelector(\"a.sort[data-column='accuracy']\").click()";
        let clicked = Instant::now();
        client.execute(click, vec![]).await.unwrap();
        while !client.current_url().await.unwrap().as_str().contains("sort=accuracy") {
            assert!(clicked.elapsed() < Duration::from_secs(60), "the header link did not sort");
            tokio::time::sleep(Duration::from_millis(10)).await;
        }
        charts_drawn(&client).await;
        let sort = clicked.elapsed().as_secs_f64() * 1000.0;
        assert_eq!(trial_ids(&client).await.len(), 50, "one page of the table");
        let durations = |key: &str| -> Vec<f64> {
            timing[key]
                .as_array()
                .map(|a| a.iter().filter_map(serde_json::Value::as_f64).collect())
                .unwrap_or_default()
        };
        let (tasks, frames) = (durations("long_tasks_ms"), durations("long_frames_ms"));
        let longest = |d: &[f64]| d.iter().copied().fold(0.0, f64::max);
        let ms = |key: &str| timing[key].as_f64().unwrap_or(f64::NAN);
        println!(
            "{round:<6} {:>11.1} {:>11.1} {:>9.1} {charts:>10.1} {sort:>8.1} {:>6} {:>10.1} {:>7} {:>10.1}",
            ms("response_end_ms"),
            ms("dom_content_loaded_ms"),
            ms("load_ms"),
            tasks.len(),
            longest(&tasks),
            frames.len(),
            longest(&frames),
        );
        println!("  page clock: {timing}");
    }
    client.close().await.unwrap();
}
