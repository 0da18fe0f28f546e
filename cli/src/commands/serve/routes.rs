//! The routes: HTML pages, their JSON, downloads, the live stream and the vendored assets.
//!
//! | route | what |
//! |---|---|
//! | `GET /` | the runs page |
//! | `GET /runs/{id}` | a run: charts, workers, trials table (parameters: `query.rs`) |
//! | `GET /trials/{id}` | a trial in full |
//! | `GET /trials?id=N` | jump to trial N |
//! | `GET /api/runs` | every run as JSON, with counts and pace |
//! | `GET /api/runs/{id}` | one run as JSON |
//! | `GET /api/runs/{id}/trials` | one page of the trials table as JSON |
//! | `GET /api/runs/{id}/trials.csv`, `.json` | every trial that passes the table's filters |
//! | `GET /api/runs/{id}/chart` | the run page's chart data |
//! | `GET /api/trials/{id}` | a trial with its curve, lease and attempts |
//! | `GET /api/token` | the change token (for polling) |
//! | `GET /api/status` | the database, its backend, and the event streams open now |
//! | `GET /events` | server-sent events: `change` whenever the token moves |
//! | `GET /assets/{file}` | uPlot, the stylesheet, the page script |

use std::collections::HashMap;

use axum::extract::{Path, Query, State};
use axum::http::{header, HeaderValue, StatusCode};
use axum::response::{Html, IntoResponse, Redirect, Response};
use axum::routing::get;
use axum::{Json, Router};
use effnas_store::{Run, RunId, RunKind, StoreError, Trial, TrialFilter, TrialId, TrialQuery, TrialState};
use serde_json::{json, Value};

use super::pages::{self, RunLine, RunView, TrialView};
use super::query::{self, TableParams};
use super::{charts, live, App};
use crate::commands::runs::run_json;
use crate::commands::trials::trial_json;

pub fn router(app: App) -> Router {
    Router::new()
        .route("/", get(runs_page))
        .route("/runs/{id}", get(run_page))
        .route("/trials", get(jump))
        .route("/trials/{id}", get(trial_page))
        .route("/api/runs", get(runs_api))
        .route("/api/runs/{id}", get(run_api))
        .route("/api/runs/{id}/trials", get(trials_api))
        .route("/api/runs/{id}/trials.csv", get(trials_csv))
        .route("/api/runs/{id}/trials.json", get(trials_download))
        .route("/api/runs/{id}/chart", get(chart_api))
        .route("/api/trials/{id}", get(trial_api))
        .route("/api/token", get(live::token))
        .route("/api/status", get(live::status))
        .route("/events", get(live::events))
        .route("/assets/{file}", get(asset))
        .fallback(|| async { WebError::new(StatusCode::NOT_FOUND, "no such page") })
        .with_state(app)
}

/// A failed request: its status and a one-line reason, as an HTML page (JSON under `/api`
/// is answered the same way; a browser shows it, a script reads the status).
pub struct WebError {
    status: StatusCode,
    message: String,
}

impl WebError {
    fn new(status: StatusCode, message: impl Into<String>) -> Self {
        WebError { status, message: message.into() }
    }
}

impl From<StoreError> for WebError {
    fn from(error: StoreError) -> Self {
        let status = match error {
            StoreError::RunNotFound(_) | StoreError::TrialNotFound(_) => StatusCode::NOT_FOUND,
            StoreError::InvalidValue { .. } => StatusCode::BAD_REQUEST,
            _ => StatusCode::INTERNAL_SERVER_ERROR,
        };
        if status == StatusCode::INTERNAL_SERVER_ERROR {
            tracing::warn!(%error, "request failed");
        }
        WebError::new(status, error.to_string())
    }
}

impl IntoResponse for WebError {
    fn into_response(self) -> Response {
        let title = self.status.canonical_reason().unwrap_or("error");
        (self.status, Html(pages::error_page(title, &self.message))).into_response()
    }
}

type Answer<T> = Result<T, WebError>;
type Pairs = Query<Vec<(String, String)>>;

/// The run's trial budget, when its configuration has one (a search's `plan.trials`).
fn budget(run: &Run) -> Option<u64> {
    run.config.pointer("/plan/trials").and_then(Value::as_u64)
}

/// The change token as the poller last saw it: a page rendered now shows at least this.
fn token(app: &App) -> String {
    app.changes.borrow().clone()
}

async fn reclaimed(app: &App) -> Answer<HashMap<RunId, u64>> {
    Ok(app.store.reclaimed_counts().await?.into_iter().collect())
}

fn line<'a>(run: &'a Run, reclaimed: &HashMap<RunId, u64>) -> RunLine<'a> {
    RunLine { run, reclaimed: reclaimed.get(&run.id).copied().unwrap_or(0), budget: budget(run) }
}

async fn runs_page(State(app): State<App>) -> Answer<Html<String>> {
    let runs = app.store.runs().await?;
    let counts = reclaimed(&app).await?;
    let now = effnas_store::time::now();
    let lines: Vec<RunLine<'_>> = runs.iter().map(|r| line(r, &counts)).collect();
    let main = pages::runs_page(&lines, app.store.location(), &now);
    Ok(Html(pages::layout("Runs", "runs", &[("token", token(&app))], &main)))
}

/// A run as the JSON answers give it: `effnas runs --json`'s object, plus the reclaimed count
/// and the pace.
fn run_value(line: &RunLine<'_>, now: &str) -> Value {
    let (rate, eta) = pages::pace(line, now);
    let mut value = run_json(line.run);
    value["trials_reclaimed"] = json!(line.reclaimed);
    value["trials_per_hour"] = json!(rate);
    value["seconds_left"] = json!(eta);
    value
}

async fn runs_api(State(app): State<App>) -> Answer<Json<Value>> {
    let runs = app.store.runs().await?;
    let counts = reclaimed(&app).await?;
    let now = effnas_store::time::now();
    Ok(Json(runs.iter().map(|r| run_value(&line(r, &counts), &now)).collect()))
}

async fn run_api(State(app): State<App>, Path(id): Path<i64>) -> Answer<Json<Value>> {
    let run = app.store.run(RunId(id)).await?;
    let counts = reclaimed(&app).await?;
    Ok(Json(run_value(&line(&run, &counts), &effnas_store::time::now())))
}

fn table_params(pairs: &[(String, String)]) -> Answer<TableParams> {
    query::parse(pairs).map_err(|e| WebError::new(StatusCode::BAD_REQUEST, e))
}

async fn run_page(State(app): State<App>, Path(id): Path<i64>, Query(pairs): Pairs) -> Answer<Html<String>> {
    let params = table_params(&pairs)?;
    let run = app.store.run(RunId(id)).await?;
    let counts = reclaimed(&app).await?;
    let page = app.store.trial_page(run.id, &params.query).await?;
    let running_filter = TrialFilter { state: Some(TrialState::Running), ..TrialFilter::default() };
    let running = app.store.trials(run.id, &running_filter).await?;
    let points = match run.kind {
        RunKind::Compound => app.store.compound_points(run.id).await?,
        _ => Vec::new(),
    };
    let now = effnas_store::time::now();
    let view = RunView {
        line: line(&run, &counts),
        params: &params,
        page: &page,
        running: &running,
        points: &points,
        now: &now,
    };
    let title = format!("Run {}: {}", run.id, run.name);
    let data = [("run", run.id.to_string()), ("token", token(&app))];
    Ok(Html(pages::layout(&title, "run", &data, &pages::run_page(&view))))
}

async fn trials_api(State(app): State<App>, Path(id): Path<i64>, Query(pairs): Pairs) -> Answer<Json<Value>> {
    let params = table_params(&pairs)?;
    let run = app.store.run(RunId(id)).await?;
    let page = app.store.trial_page(run.id, &params.query).await?;
    Ok(Json(json!({
        "run": run.id,
        "total": page.total,
        "page": params.page,
        "per_page": params.query.limit,
        "sort": params.query.sort.as_str(),
        "order": if params.query.descending { "desc" } else { "asc" },
        "trials": page.trials.iter().map(|t| trial_json(t, false)).collect::<Vec<_>>(),
    })))
}

/// Every trial of the run that passes the table's filters, in its order, a page at a time
/// (each page one short read).
async fn all_matching(app: &App, id: i64, pairs: &[(String, String)]) -> Answer<(Run, Vec<Trial>)> {
    let params = table_params(pairs)?;
    let run = app.store.run(RunId(id)).await?;
    let mut query = TrialQuery { limit: TrialQuery::MAX_LIMIT, offset: 0, ..params.query };
    let mut trials = Vec::new();
    loop {
        let page = app.store.trial_page(run.id, &query).await?;
        let count = page.trials.len() as u64;
        trials.extend(page.trials);
        if count < query.limit {
            return Ok((run, trials));
        }
        query.offset += count;
    }
}

fn download_rows(run: &Run, trials: &[Trial]) -> Vec<Value> {
    trials
        .iter()
        .map(|t| {
            let mut row = trial_json(t, true);
            row["run_name"] = json!(run.name);
            row
        })
        .collect()
}

fn attachment(body: String, content_type: &'static str, name: String) -> Response {
    let disposition = HeaderValue::from_str(&format!("attachment; filename=\"{name}\""))
        .unwrap_or_else(|_| HeaderValue::from_static("attachment"));
    (
        [
            (header::CONTENT_TYPE, HeaderValue::from_static(content_type)),
            (header::CONTENT_DISPOSITION, disposition),
        ],
        body,
    )
        .into_response()
}

async fn trials_csv(State(app): State<App>, Path(id): Path<i64>, Query(pairs): Pairs) -> Answer<Response> {
    let (run, trials) = all_matching(&app, id, &pairs).await?;
    let text = crate::commands::export::to_csv(&download_rows(&run, &trials));
    Ok(attachment(text, "text/csv; charset=utf-8", format!("run-{}-trials.csv", run.id)))
}

async fn trials_download(
    State(app): State<App>,
    Path(id): Path<i64>,
    Query(pairs): Pairs,
) -> Answer<Response> {
    let (run, trials) = all_matching(&app, id, &pairs).await?;
    let text = serde_json::to_string(&download_rows(&run, &trials)).unwrap_or_default();
    Ok(attachment(text, "application/json", format!("run-{}-trials.json", run.id)))
}

async fn chart_api(State(app): State<App>, Path(id): Path<i64>) -> Answer<Json<Value>> {
    let run = app.store.run(RunId(id)).await?;
    let trials = app.store.trials(run.id, &TrialFilter::default()).await?;
    let points = match run.kind {
        RunKind::Compound => app.store.compound_points(run.id).await?,
        _ => Vec::new(),
    };
    Ok(Json(charts::chart_data(&run, &trials, &points)))
}

async fn trial_page(State(app): State<App>, Path(id): Path<i64>) -> Answer<Html<String>> {
    let trial = app.store.trial(TrialId(id)).await?;
    let run = app.store.run(trial.run_id).await?;
    let epochs = app.store.epochs(trial.id).await?;
    let attempts = app.store.attempts(trial.id).await?;
    let now = effnas_store::time::now();
    let view = TrialView { trial: &trial, run: &run, epochs: &epochs, attempts: &attempts, now: &now };
    let title = format!("Trial {}", trial.id);
    let data = [("run", run.id.to_string()), ("trial", trial.id.to_string()), ("token", token(&app))];
    Ok(Html(pages::layout(&title, "trial", &data, &pages::trial_page(&view))))
}

/// A trial as `effnas trials --json` gives it, with its curve (`epochs`), its current lease
/// and the history of its attempts (`attempt_history`: one object per attempt, first to last).
async fn trial_api(State(app): State<App>, Path(id): Path<i64>) -> Answer<Json<Value>> {
    let trial = app.store.trial(TrialId(id)).await?;
    let epochs = app.store.epochs(trial.id).await?;
    let attempts = app.store.attempts(trial.id).await?;
    let mut value = trial_json(&trial, true);
    value["epochs"] = serde_json::to_value(&epochs).unwrap_or_default();
    value["lease_until"] = json!(trial.lease_until);
    value["attempt_history"] = serde_json::to_value(&attempts).unwrap_or_default();
    Ok(Json(value))
}

/// `GET /trials?id=N`: the jump box of the run page.
async fn jump(Query(pairs): Pairs) -> Answer<Redirect> {
    let text = pairs.iter().find(|(k, _)| k == "id").map(|(_, v)| v.trim()).unwrap_or_default();
    let id: i64 = text.trim_start_matches('#').parse().map_err(|_| {
        WebError::new(StatusCode::BAD_REQUEST, format!("id={text:?}: give a trial id (a whole number)"))
    })?;
    Ok(Redirect::to(&format!("/trials/{id}")))
}

/// The vendored chart library (uPlot 1.6.32, MIT: `assets/uplot/LICENSE`), the stylesheet and
/// the page script, all compiled into the binary.
async fn asset(Path(file): Path<String>) -> Response {
    let (body, content_type): (&'static str, &'static str) = match file.as_str() {
        "uPlot.iife.min.js" => {
            (include_str!("assets/uplot/uPlot.iife.min.js"), "text/javascript; charset=utf-8")
        }
        "uPlot.min.css" => (include_str!("assets/uplot/uPlot.min.css"), "text/css; charset=utf-8"),
        "uPlot-LICENSE.txt" => (include_str!("assets/uplot/LICENSE"), "text/plain; charset=utf-8"),
        "app.js" => (include_str!("assets/app.js"), "text/javascript; charset=utf-8"),
        "style.css" => (include_str!("assets/style.css"), "text/css; charset=utf-8"),
        _ => return WebError::new(StatusCode::NOT_FOUND, format!("no asset {file:?}")).into_response(),
    };
    ([(header::CONTENT_TYPE, content_type), (header::CACHE_CONTROL, "max-age=3600")], body).into_response()
}
