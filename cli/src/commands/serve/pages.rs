//! The dashboard's HTML, rendered on the server. Every value that comes from the database (run
//! names, block strings, error messages, workers) goes through [`esc`]; nothing is ever placed
//! in a script or an event-handler attribute, so escaping for text and quoted attributes is
//! enough. Parts of a page that change while it is open carry `data-live` and an `id`: the
//! page's script swaps them for the same parts of a fresh copy when the database changes.

use std::fmt::Write as _;

use effnas_space::{cost_breakdown, ArchSpec};
use effnas_store::{
    AttemptOutcome, CompoundPoint, EpochMetrics, Run, RunStatus, Trial, TrialAttempt, TrialColumn, TrialPage,
    TrialState,
};

use super::query::TableParams;
use crate::commands::runs::{human_duration, short_time};
use crate::commands::trials::reference_model;
use crate::table::human_count;

/// Text made safe for HTML text and for quoted attribute values.
pub fn esc(text: &str) -> String {
    let mut out = String::with_capacity(text.len() + 8);
    for c in text.chars() {
        match c {
            '&' => out.push_str("&amp;"),
            '<' => out.push_str("&lt;"),
            '>' => out.push_str("&gt;"),
            '"' => out.push_str("&quot;"),
            '\'' => out.push_str("&#39;"),
            c => out.push(c),
        }
    }
    out
}

fn or_dash<T>(value: Option<T>, show: impl FnOnce(T) -> String) -> String {
    value.map_or_else(|| "–".to_owned(), show)
}

fn percent(value: Option<f64>) -> String {
    or_dash(value, |v| format!("{:.2}%", v * 100.0))
}

/// A whole page: the header, `main`, and the scripts. `page` and `data` (`data-*` attributes
/// of the body: the run, the trial, the change token the page was rendered at) tell the script
/// what to draw and when to refresh.
pub fn layout(title: &str, page: &str, data: &[(&str, String)], main: &str) -> String {
    let run: String = data.iter().map(|(k, v)| format!(" data-{k}=\"{}\"", esc(v))).collect();
    format!(
        "<!DOCTYPE html>\n<html lang=\"en\"><head><meta charset=\"utf-8\">\
<meta name=\"viewport\" content=\"width=device-width, initial-scale=1\">\
<title>{title} · effnas</title>\
<link rel=\"stylesheet\" href=\"/assets/uPlot.min.css\"><link rel=\"stylesheet\" href=\"/assets/style.css\">\
</head><body data-page=\"{page}\"{run}>\
<header><a class=\"brand\" href=\"/\">effnas</a> <span id=\"live-status\" class=\"live\" title=\"updates pushed by the server\">live</span></header>\
<main>{main}</main>\
<script src=\"/assets/uPlot.iife.min.js\"></script><script src=\"/assets/app.js\"></script>\
</body></html>\n",
        title = esc(title)
    )
}

/// What the runs page knows of one run beyond [`Run`].
pub struct RunLine<'a> {
    pub run: &'a Run,
    pub reclaimed: u64,
    /// The run's trial budget, when its configuration has one.
    pub budget: Option<u64>,
}

/// Trials finished per hour since the run started, and the time left at that pace for a
/// running run (the trials queued or running, plus those its budget has yet to queue).
pub fn pace(line: &RunLine<'_>, now: &str) -> (Option<f64>, Option<f64>) {
    let run = line.run;
    let end = run.finished.as_deref().unwrap_or(now);
    let hours = effnas_store::time::seconds_between(&run.started, end).map(|s| s / 3600.0);
    let finished = (run.trials_done + run.trials_failed) as f64;
    let rate = hours.filter(|h| *h > 0.0 && finished > 0.0).map(|h| finished / h);
    let left = (run.status == RunStatus::Running).then(|| {
        let unqueued = line.budget.map_or(0, |b| b.saturating_sub(run.trials_total));
        (run.trials_pending + run.trials_running + unqueued) as f64
    });
    let eta = match (left, rate) {
        (Some(left), Some(rate)) => Some(left / rate * 3600.0),
        _ => None,
    };
    (rate, eta)
}

/// A cell holding a count, marked for the browser test and for styling.
fn count_cell(name: &str, value: u64) -> String {
    format!("<td class=\"num\" data-count=\"{name}\">{value}</td>")
}

pub fn runs_page(lines: &[RunLine<'_>], location: &str, now: &str) -> String {
    let mut rows = String::new();
    for line in lines {
        let r = line.run;
        let (rate, eta) = pace(line, now);
        let _ = write!(
            rows,
            "<tr data-run=\"{id}\"><td class=\"num\">{id}</td><td><a href=\"/runs/{id}\">{name}</a></td>\
<td>{kind}</td><td><span class=\"status {status}\">{status}</span></td>{pending}{running}{done}{failed}{reclaimed}\
<td class=\"num\">{best}</td><td>{started}</td><td>{finished}</td><td class=\"num\">{rate}</td><td class=\"num\">{eta}</td></tr>",
            id = r.id,
            name = esc(&r.name),
            kind = r.kind,
            status = r.status,
            pending = count_cell("pending", r.trials_pending),
            running = count_cell("running", r.trials_running),
            done = count_cell("complete", r.trials_done),
            failed = count_cell("failed", r.trials_failed),
            reclaimed = count_cell("reclaimed", line.reclaimed),
            best = or_dash(r.best_reward, |v| format!("{v:.4}")),
            started = esc(&short_time(&r.started)),
            finished = or_dash(r.finished.as_deref(), |f| esc(&short_time(f))),
            rate = or_dash(rate, |v| format!("{v:.1}")),
            eta = or_dash(eta, human_duration),
        );
    }
    let body = if lines.is_empty() {
        "<p class=\"empty\">No runs yet. This page updates when one starts.</p>".to_owned()
    } else {
        format!(
            "<table class=\"grid\" id=\"runs\"><thead><tr><th>id</th><th>name</th><th>kind</th><th>status</th>\
<th title=\"queued, waiting for a worker\">pending</th><th>running</th><th>complete</th><th>failed</th>\
<th title=\"claimed again after a worker died or hung\">reclaimed</th><th>best reward</th>\
<th>started (UTC)</th><th>finished</th><th title=\"finished trials per hour\">trials/h</th>\
<th title=\"at the pace so far\">time left</th></tr></thead><tbody>{rows}</tbody></table>"
        )
    };
    format!(
        "<h1>Runs</h1><p class=\"sub\">{} · read-only</p><section data-live id=\"runs-live\">{body}</section>",
        esc(location)
    )
}

/// The run's header line: kind, status, counts, best reward.
fn run_summary(line: &RunLine<'_>, now: &str) -> String {
    let r = line.run;
    let (rate, eta) = pace(line, now);
    format!(
        "<p class=\"sub\">{kind} run · <span class=\"status {status}\">{status}</span> · started {started} UTC{finished} · \
<span data-count=\"total\">{total}</span> trials: {pending} pending, {running} running, {done} complete, {failed} failed, \
{reclaimed} reclaimed · best reward {best} · {rate} trials/h{eta}</p>",
        kind = r.kind,
        status = r.status,
        started = esc(&short_time(&r.started)),
        finished = r.finished.as_deref().map_or(String::new(), |f| format!(", finished {}", esc(&short_time(f)))),
        total = r.trials_total,
        pending = r.trials_pending,
        running = r.trials_running,
        done = r.trials_done,
        failed = r.trials_failed,
        reclaimed = line.reclaimed,
        best = or_dash(r.best_reward, |v| format!("{v:.4}")),
        rate = or_dash(rate, |v| format!("{v:.1}")),
        eta = eta.map_or(String::new(), |e| format!(", about {} left", human_duration(e))),
    )
}

/// Everything the run page shows.
pub struct RunView<'a> {
    pub line: RunLine<'a>,
    pub params: &'a TableParams,
    pub page: &'a TrialPage,
    /// The run's running trials, for the workers table.
    pub running: &'a [Trial],
    pub points: &'a [CompoundPoint],
    pub now: &'a str,
}

pub fn run_page(view: &RunView<'_>) -> String {
    let r = view.line.run;
    let mut out = format!(
        "<h1>Run {id}: {name}</h1><section data-live id=\"run-summary\">{summary}</section>",
        id = r.id,
        name = esc(&r.name),
        summary = run_summary(&view.line, view.now)
    );
    out.push_str(
        "<section class=\"charts\"><div class=\"chart\" id=\"chart-progress\"></div>\
<div class=\"chart\" id=\"chart-time\"></div><div class=\"chart\" id=\"chart-front\"></div>\
<div class=\"chart\" id=\"chart-extra\"></div></section>",
    );
    let _ = write!(out, "<section data-live id=\"workers\">{}</section>", workers(view.running, view.now));
    if !view.points.is_empty() {
        let _ = write!(out, "<section data-live id=\"compound\">{}</section>", compound_table(view.points));
    }
    out.push_str(&trials_controls(r.id.0, view.params));
    let _ = write!(
        out,
        "<section data-live id=\"trials-live\">{}</section>",
        trials_table(view.params, view.page)
    );
    out
}

/// The trials running now, with their worker, attempt and the age of their last heartbeat.
fn workers(running: &[Trial], now: &str) -> String {
    if running.is_empty() {
        return "<h2>Workers</h2><p class=\"empty\">No trial is running.</p>".to_owned();
    }
    let age = |at: Option<&str>| {
        at.and_then(|a| effnas_store::time::seconds_between(a, now)).map_or("–".to_owned(), human_duration)
    };
    let mut rows = String::new();
    for t in running {
        let lease =
            t.lease_until.as_deref().and_then(|until| effnas_store::time::seconds_between(now, until));
        let _ = write!(
            rows,
            "<tr><td>{worker}</td><td><a href=\"/trials/{id}\">{id}</a></td><td class=\"num\">{attempt}</td>\
<td>{started}</td><td>{beat}</td><td>{lease}</td></tr>",
            worker = esc(t.worker.as_deref().unwrap_or("–")),
            id = t.id,
            attempt = t.attempts,
            started = age(t.started.as_deref()),
            beat = age(t.heartbeat.as_deref().or(t.started.as_deref())),
            lease = or_dash(lease, |s| if s >= 0.0 {
                format!("{} left", human_duration(s))
            } else {
                "expired".to_owned()
            }),
        );
    }
    format!(
        "<h2>Workers</h2><table class=\"grid\"><thead><tr><th>worker</th><th>trial</th><th>attempt</th>\
<th>running for</th><th>last heartbeat</th><th>lease</th></tr></thead><tbody>{rows}</tbody></table>"
    )
}

/// A compound run's grid: α, β, γ, the constraint α·β²·γ² ≈ 2 and the accuracy reached.
fn compound_table(points: &[CompoundPoint]) -> String {
    let mut rows = String::new();
    for p in points {
        let trial = p.trial_id.map_or("–".to_owned(), |t| format!("<a href=\"/trials/{t}\">{t}</a>"));
        let _ = write!(
            rows,
            "<tr><td class=\"num\">{:.2}</td><td class=\"num\">{:.2}</td><td class=\"num\">{:.2}</td>\
<td class=\"num\">{:.3}</td><td>{trial}</td><td>{}</td><td class=\"num\">{}</td></tr>",
            p.alpha,
            p.beta,
            p.gamma,
            p.flops_factor,
            p.trial_state.map_or("–", |s| s.as_str()),
            percent(p.accuracy),
        );
    }
    format!(
        "<h2>Compound grid (α·β²·γ² ≈ 2)</h2><table class=\"grid\"><thead><tr><th>α</th><th>β</th><th>γ</th>\
<th>α·β²·γ²</th><th>trial</th><th>state</th><th>accuracy</th></tr></thead><tbody>{rows}</tbody></table>"
    )
}

/// The filter form, jump to a trial, and the downloads: not live, so typing is never undone.
fn trials_controls(run: i64, params: &TableParams) -> String {
    let q = &params.query;
    let mut states = String::from("<option value=\"\">any state</option>");
    for s in TrialState::ALL {
        let selected = if q.state == Some(*s) { " selected" } else { "" };
        let _ = write!(states, "<option{selected}>{s}</option>");
    }
    let bound =
        |column: TrialColumn, max: bool| params.bound(column, max).map_or(String::new(), |v| v.to_string());
    let mut ranges = String::new();
    for (column, label) in [
        (TrialColumn::Accuracy, "accuracy (0–1)"),
        (TrialColumn::Flops, "mult-adds"),
        (TrialColumn::Reward, "reward"),
    ] {
        let name = column.as_str();
        let _ = write!(
            ranges,
            "<label>{label} <input name=\"min_{name}\" size=\"7\" placeholder=\"min\" value=\"{}\"> – \
<input name=\"max_{name}\" size=\"7\" placeholder=\"max\" value=\"{}\"></label> ",
            esc(&bound(column, false)),
            esc(&bound(column, true))
        );
    }
    let keep = |key: &str, value: String| {
        format!("<input type=\"hidden\" name=\"{key}\" value=\"{}\">", esc(&value))
    };
    let sort = keep("sort", q.sort.as_str().to_owned())
        + &keep("order", if q.descending { "desc" } else { "asc" }.to_owned());
    let download = esc(&params.href(q.sort, q.descending, 1));
    format!(
        "<h2>Trials</h2><div class=\"controls\"><form method=\"get\" id=\"filter\">{sort}<select name=\"state\">{states}</select> {ranges}\
<button>filter</button> <a href=\"/runs/{run}\">clear</a></form>\
<form method=\"get\" action=\"/trials\" id=\"jump\"><input name=\"id\" size=\"7\" placeholder=\"trial id\" inputmode=\"numeric\"> <button>go to trial</button></form>\
<span class=\"downloads\">download: <a href=\"/api/runs/{run}/trials.csv{download}\">CSV</a> · \
<a href=\"/api/runs/{run}/trials.json{download}\">JSON</a></span></div>"
    )
}

/// The table's columns: (column, header).
const TABLE_COLUMNS: [(TrialColumn, &str); 12] = [
    (TrialColumn::Id, "id"),
    (TrialColumn::State, "state"),
    (TrialColumn::Step, "step"),
    (TrialColumn::Setting, "setting"),
    (TrialColumn::Accuracy, "accuracy"),
    (TrialColumn::Reward, "reward"),
    (TrialColumn::Flops, "mult-adds"),
    (TrialColumn::Params, "params"),
    (TrialColumn::LatencyMs, "latency"),
    (TrialColumn::Seconds, "time"),
    (TrialColumn::Attempts, "attempts"),
    (TrialColumn::Finished, "finished"),
];

fn trials_table(params: &TableParams, page: &TrialPage) -> String {
    let q = &params.query;
    let mut head = String::new();
    for (column, label) in TABLE_COLUMNS {
        let (descending, arrow) = if q.sort == column {
            (!q.descending, if q.descending { " ▼" } else { " ▲" })
        } else {
            (super::query::default_descending(column), "")
        };
        let _ = write!(
            head,
            "<th><a class=\"sort\" data-column=\"{name}\" href=\"{href}\">{label}{arrow}</a></th>",
            name = column.as_str(),
            href = esc(&params.href(column, descending, 1))
        );
    }
    head.push_str("<th>blocks / error</th>");
    let mut rows = String::new();
    for t in &page.trials {
        rows.push_str(&trial_row(t));
    }
    let pages = page.total.div_ceil(q.limit).max(1);
    let first = if page.total == 0 { 0 } else { q.offset + 1 };
    let last = q.offset + page.trials.len() as u64;
    let link = |to: u64, text: &str, rel: &str| {
        if to == params.page || to == 0 || to > pages {
            format!("<span class=\"off\">{text}</span>")
        } else {
            format!("<a rel=\"{rel}\" href=\"{}\">{text}</a>", esc(&params.href(q.sort, q.descending, to)))
        }
    };
    format!(
        "<p class=\"pager\"><span id=\"trial-range\">{first}–{last} of <span data-count=\"matching\">{total}</span></span> · \
page {page_no} of {pages} · {firstp} {prev} {next} {lastp}</p>\
<table class=\"grid\" id=\"trials\"><thead><tr>{head}</tr></thead><tbody>{rows}</tbody></table>",
        total = page.total,
        page_no = params.page,
        firstp = link(1, "« first", "first"),
        prev = link(params.page.saturating_sub(1), "‹ previous", "prev"),
        next = link(params.page + 1, "next ›", "next"),
        lastp = link(pages, "last »", "last"),
    )
}

fn trial_row(t: &Trial) -> String {
    let detail = match (&t.error, t.failure) {
        (Some(error), kind) => format!(
            "<span class=\"error\">{}: {}</span>",
            kind.map_or("failed", |k| k.as_str()),
            esc(&clip(error, 120))
        ),
        _ => esc(&clip(&t.blocks.join(" "), 120)),
    };
    format!(
        "<tr data-trial=\"{id}\"><td class=\"num\"><a href=\"/trials/{id}\">{id}</a></td><td><span class=\"state {state}\">{state}</span></td>\
<td class=\"num\">{step}</td><td class=\"num\">{setting}</td><td class=\"num\" data-value=\"{acc_raw}\">{acc}</td>\
<td class=\"num\" data-value=\"{reward_raw}\">{reward}</td><td class=\"num\" data-value=\"{flops_raw}\">{flops}</td><td class=\"num\">{params}</td>\
<td class=\"num\">{latency}</td><td class=\"num\">{time}</td><td class=\"num\">{attempts}</td><td>{finished}</td><td class=\"blocks\">{detail}</td></tr>",
        id = t.id,
        state = t.state,
        step = or_dash(t.step, |s| s.to_string()),
        setting = t.setting,
        acc_raw = t.accuracy.map_or(String::new(), |a| a.to_string()),
        acc = percent(t.accuracy),
        reward_raw = t.reward.map_or(String::new(), |r| r.to_string()),
        reward = or_dash(t.reward, |r| format!("{r:.4}")),
        flops_raw = t.flops,
        flops = human_count(t.flops),
        params = human_count(t.params),
        latency = or_dash(t.latency_ms, |l| format!("{l:.2} ms")),
        time = or_dash(t.seconds, human_duration),
        attempts = t.attempts,
        finished = or_dash(t.finished.as_deref(), |f| esc(&short_time(f))),
    )
}

/// At most `max` characters, with an ellipsis when cut.
fn clip(text: &str, max: usize) -> String {
    match text.char_indices().nth(max) {
        Some((cut, _)) => format!("{}…", &text[..cut]),
        None => text.to_owned(),
    }
}

/// Everything the trial page shows.
pub struct TrialView<'a> {
    pub trial: &'a Trial,
    pub run: &'a Run,
    pub epochs: &'a [EpochMetrics],
    pub attempts: &'a [TrialAttempt],
    pub now: &'a str,
}

/// One trial in full, as `effnas show`: what was trained and how, the blocks with their cost,
/// the result, its attempts, the curve by epoch (table and chart) and the failure.
pub fn trial_page(view: &TrialView<'_>) -> String {
    let (t, run, epochs) = (view.trial, view.run, view.epochs);
    let arch = t.arch();
    let reference = arch.as_ref().ok().and_then(reference_model).map_or(String::new(), |n| format!(" = {n}"));
    let mut out = format!(
        "<h1>Trial {id} <span class=\"state {state}\">{state}</span></h1>\
<p class=\"sub\">of run <a href=\"/runs/{run_id}\">{run_id}: {run_name}</a> · architecture {hash}{reference}</p>",
        id = t.id,
        state = t.state,
        run_id = run.id,
        run_name = esc(&run.name),
        hash = esc(&t.arch_hash),
    );
    out.push_str("<section data-live id=\"trial-live\">");
    out.push_str(&trial_facts(t));
    if let Some(error) = &t.error {
        let _ = write!(
            out,
            "<h2>Failure</h2><p class=\"error\" id=\"failure\"><b>{}</b>: {}</p>",
            t.failure.map_or("failed", |f| f.as_str()),
            esc(error)
        );
    }
    out.push_str(&attempts_table(t, view.attempts, view.now));
    out.push_str("<div class=\"chart\" id=\"chart-curve\"></div>");
    out.push_str(&curve_table(epochs));
    out.push_str("</section>");
    match &arch {
        Ok(arch) => out.push_str(&block_table(arch)),
        Err(error) => {
            let _ = write!(
                out,
                "<p class=\"error\">the stored architecture does not parse: {}</p>",
                esc(&error.to_string())
            );
        }
    }
    out
}

fn trial_facts(t: &Trial) -> String {
    let row = |k: &str, v: String| format!("<tr><th>{k}</th><td>{v}</td></tr>");
    let when = |v: &Option<String>| or_dash(v.as_deref(), esc);
    let mut rows = String::new();
    rows.push_str(&row("accuracy", percent(t.accuracy)));
    rows.push_str(&row("reward", or_dash(t.reward, |r| format!("{r:.4}"))));
    rows.push_str(&row("loss", or_dash(t.loss, |l| format!("{l:.4}"))));
    rows.push_str(&row("mult-adds", format!("{} ({})", t.flops, human_count(t.flops))));
    rows.push_str(&row("params", format!("{} ({})", t.params, human_count(t.params))));
    rows.push_str(&row("latency", or_dash(t.latency_ms, |l| format!("{l:.2} ms"))));
    rows.push_str(&row("training time", or_dash(t.seconds, human_duration)));
    rows.push_str(&row("images/s", or_dash(t.images_per_second, |i| format!("{i:.0}"))));
    rows.push_str(&row("proxy settings", esc(&t.proxy_key)));
    rows.push_str(&row("setting", t.setting.to_string()));
    rows.push_str(&row("repeats trial", or_dash(t.parent, |p| format!("<a href=\"/trials/{p}\">{p}</a>"))));
    rows.push_str(&row(
        "result reused from",
        or_dash(t.reused_from, |p| format!("<a href=\"/trials/{p}\">{p}</a>")),
    ));
    rows.push_str(&row("step", or_dash(t.step, |s| s.to_string())));
    rows.push_str(&row("attempts", t.attempts.to_string()));
    rows.push_str(&row("worker", or_dash(t.worker.as_deref(), esc)));
    rows.push_str(&row("queued", esc(&t.created)));
    rows.push_str(&row("started", when(&t.started)));
    rows.push_str(&row("last heartbeat", when(&t.heartbeat)));
    rows.push_str(&row("lease until", when(&t.lease_until)));
    rows.push_str(&row("finished", when(&t.finished)));
    if let Some(extra) = &t.extra {
        rows.push_str(&row("extra", format!("<code>{}</code>", esc(&extra.to_string()))));
    }
    format!("<table class=\"facts\">{rows}</table>")
}

/// The trial's attempts: who claimed it, when, how long it ran and how each ended. A trial
/// that a worker lost (its lease passed) and another finished has two rows. The history is
/// kept from schema 7 on; for attempts from before, only the count is known, and it is said so.
fn attempts_table(t: &Trial, attempts: &[TrialAttempt], now: &str) -> String {
    let mut rows = String::new();
    for a in attempts {
        let end = a.ended.as_deref().unwrap_or(now);
        let took = a.started.as_deref().and_then(|s| effnas_store::time::seconds_between(s, end));
        let outcome = match (a.outcome, &t.lease_until) {
            (AttemptOutcome::Running, Some(until)) => {
                format!("running, lease until {}", esc(&short_time(until)))
            }
            (outcome, _) => outcome.as_str().to_owned(),
        };
        let _ = write!(
            rows,
            "<tr data-attempt=\"{n}\"><td class=\"num\">{n}</td><td>{worker}</td><td>{started}</td><td>{ended}</td>\
<td class=\"num\">{took}</td><td><span class=\"state {class}\">{outcome}</span></td><td>{failure}</td><td>{beat}</td></tr>",
            n = a.attempt,
            worker = or_dash(a.worker.as_deref(), esc),
            started = or_dash(a.started.as_deref(), |s| esc(&short_time(s))),
            ended = or_dash(a.ended.as_deref(), |s| esc(&short_time(s))),
            took = or_dash(took, human_duration),
            class = a.outcome.as_str(),
            failure = or_dash(a.failure, |f| f.as_str().to_owned()),
            beat = or_dash(a.heartbeat.as_deref(), |s| esc(&short_time(s))),
        );
    }
    let recorded = attempts.len() as u64;
    let note = if t.attempts == 0 && attempts.is_empty() {
        "<p class=\"empty\">Not claimed by any worker: queued, or its result was recorded without one.</p>"
            .to_owned()
    } else if recorded < u64::from(t.attempts) {
        format!(
            "<p class=\"empty\">{} of its {} attempts were not recorded: the database kept only the latest attempt \
before schema 7.</p>",
            u64::from(t.attempts) - recorded,
            t.attempts
        )
    } else {
        String::new()
    };
    let table = if attempts.is_empty() {
        String::new()
    } else {
        format!(
            "<table class=\"grid\" id=\"attempts\"><thead><tr><th>attempt</th><th>worker</th><th>claimed (UTC)</th>\
<th>ended</th><th>ran for</th><th>outcome</th><th>failure</th><th title=\"the worker's last sign of life in this attempt\">\
last heartbeat</th></tr></thead><tbody>{rows}</tbody></table>"
        )
    };
    format!("<h2>Attempts ({})</h2>{table}{note}", t.attempts)
}

fn curve_table(epochs: &[EpochMetrics]) -> String {
    if epochs.is_empty() {
        return "<p class=\"empty\">No epoch recorded yet.</p>".to_owned();
    }
    let number = |v: Option<f64>, digits: usize| or_dash(v, |v| format!("{v:.digits$}"));
    let mut rows = String::new();
    for e in epochs {
        let _ = write!(
            rows,
            "<tr><td class=\"num\">{}</td><td class=\"num\">{}</td><td class=\"num\">{}</td><td class=\"num\">{}</td>\
<td class=\"num\">{}</td><td class=\"num\">{}</td><td class=\"num\">{}</td></tr>",
            e.epoch,
            number(e.train_loss, 4),
            percent(e.train_accuracy),
            number(e.val_loss, 4),
            percent(e.val_accuracy),
            or_dash(e.learning_rate, |v| format!("{v:.3e}")),
            number(e.seconds, 1),
        );
    }
    format!(
        "<h2>Training curve</h2><table class=\"grid\" id=\"curve\"><thead><tr><th>epoch</th><th>train loss</th><th>train acc</th>\
<th>val loss</th><th>val acc</th><th>lr</th><th>seconds</th></tr></thead><tbody>{rows}</tbody></table>"
    )
}

/// The blocks with their full strings and cost at the trial's resolution (as `effnas show`).
fn block_table(arch: &ArchSpec) -> String {
    let breakdown = cost_breakdown(arch);
    let row = |a: &str, b: String, res: String, p: u64, m: u64| {
        format!(
            "<tr><td>{}</td><td><code>{}</code></td><td class=\"num\">{}</td><td class=\"num\">{}</td><td class=\"num\">{}</td></tr>",
            esc(a),
            esc(&b),
            esc(&res),
            human_count(p),
            human_count(m)
        )
    };
    let k = arch.stem_kernel;
    let pool = if arch.stem_max_pool { ", maxpool3x3 s2" } else { "" };
    let mut rows = row(
        "stem",
        format!("conv{k}x{k} s2 {}→{}{pool}", arch.input_channels, arch.stem_channels),
        arch.stem_output_size().to_string(),
        breakdown.stem.params,
        breakdown.stem.macs,
    );
    for (index, (block, cost)) in arch.blocks.iter().zip(&breakdown.blocks).enumerate() {
        rows.push_str(&row(
            &(index + 1).to_string(),
            block.to_string(),
            cost.output_resolution.to_string(),
            cost.cost.params,
            cost.cost.macs,
        ));
    }
    if let Some(head) = arch.head_channels {
        rows.push_str(&row(
            "head",
            format!("conv1x1 {}→{head}", arch.last_block_channels()),
            breakdown.final_resolution.to_string(),
            breakdown.head.params,
            breakdown.head.macs,
        ));
    }
    rows.push_str(&row(
        "fc",
        format!("pool, linear {}→{}", arch.classifier_channels(), arch.num_classes),
        "1".to_owned(),
        breakdown.classifier.params,
        breakdown.classifier.macs,
    ));
    format!(
        "<h2>Architecture ({res}×{res}×{ch} input, {classes} classes)</h2><table class=\"grid\" id=\"blocks\"><thead><tr>\
<th>#</th><th>block</th><th>out res</th><th>params</th><th>mult-adds</th></tr></thead><tbody>{rows}</tbody></table>",
        res = arch.resolution,
        ch = arch.input_channels,
        classes = arch.num_classes,
    )
}

/// An error page: the status and one line saying what was wrong.
pub fn error_page(title: &str, message: &str) -> String {
    layout(
        title,
        "error",
        &[],
        &format!(
            "<h1>{}</h1><p class=\"error\">{}</p><p><a href=\"/\">all runs</a></p>",
            esc(title),
            esc(message)
        ),
    )
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn markup_characters_are_escaped() {
        assert_eq!(esc("<script>alert(1)</script>"), "&lt;script&gt;alert(1)&lt;/script&gt;");
        assert_eq!(esc("a\"b'c&d"), "a&quot;b&#39;c&amp;d");
        assert_eq!(esc("φ=1 α·β²"), "φ=1 α·β²");
    }

    #[test]
    fn long_text_is_clipped_on_a_character_boundary() {
        assert_eq!(clip("ααααα", 3), "ααα…");
        assert_eq!(clip("abc", 3), "abc");
    }
}
