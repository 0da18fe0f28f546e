//! The fidelity report as text: the settings and their cost, the noise floor, the agreements,
//! and every architecture ranked by its reference accuracy.

use anyhow::Result;
use effnas_search::fidelity::{
    Agreement, ArchitectureRow, Correlation, FidelityReport, MeasureReport, Noise,
};
use effnas_store::Run;

use crate::output::outln;
use crate::table::Table;

pub fn print(db: &str, run: &Run, report: &FidelityReport) -> Result<()> {
    outln!("run {} ({}): {}", run.id, run.display_name(), run.status.as_str())?;
    settings(report)?;
    outln!()?;
    noise("cheap proxy", report.cheap_noise.as_ref())?;
    if report.reference_noise.is_some() {
        noise("reference", report.reference_noise.as_ref())?;
    }
    outln!()?;
    agreements(&report.accuracy, &report.reward)?;
    outln!()?;
    architectures(report)?;
    if run.status.as_str() == "running" || run.status.as_str() == "interrupted" {
        outln!("\nthe run is not finished: figures cover the trials complete so far")?;
    }
    outln!(
        "trials: `effnas trials --db {db} --run {}`; again: `effnas fidelity --db {db} --report {}`",
        run.id,
        run.id
    )?;
    Ok(())
}

fn settings(report: &FidelityReport) -> Result<()> {
    let mut table = Table::new([
        "setting",
        "role",
        "seed",
        "epochs",
        "images",
        "res",
        "width",
        "depth",
        "done",
        "failed",
        "left",
        "s/trial",
        "images/trial",
    ]);
    for s in &report.settings {
        table.row([
            s.setting.to_string(),
            s.role.as_str().to_owned(),
            s.seed.to_string(),
            s.epochs.to_string(),
            s.train_images.to_string(),
            s.resolution.to_string(),
            s.width.to_string(),
            s.depth.to_string(),
            s.complete.to_string(),
            s.failed.to_string(),
            s.pending.to_string(),
            s.mean_seconds.map_or("-".into(), |v| format!("{v:.1}")),
            s.mean_images_seen.map_or("-".into(), |v| format!("{v:.0}")),
        ]);
    }
    outln!("{}", table.render())?;
    if let Some(ratio) = report.reference_cost_ratio {
        outln!("a reference training sees {ratio:.1}× the images of a cheap one")?;
    }
    Ok(())
}

fn noise(what: &str, noise: Option<&Noise>) -> Result<()> {
    match noise {
        Some(n) => outln!(
            "noise floor, {what} ({} architectures): std across seeds {:.2} points on average (max {:.2}); \
             two seeds differ by {:.2} points on average",
            n.architectures,
            n.mean_std * 100.0,
            n.max_std * 100.0,
            n.mean_abs_pair_diff * 100.0
        ),
        None => outln!("noise floor, {what}: not yet (needs an architecture with every seed complete)"),
    }
}

fn agreements(accuracy: &MeasureReport, reward: &MeasureReport) -> Result<()> {
    let mut table = Table::new(["comparison", "n", "Kendall τ", "95% CI", "Spearman ρ", "95% CI", "top-k"]);
    for agreement in [
        &accuracy.one_seed,
        &accuracy.seed_mean,
        &accuracy.seed_vs_seed,
        &reward.one_seed,
        &reward.seed_mean,
        &reward.seed_vs_seed,
    ] {
        row(&mut table, agreement);
    }
    outln!("{}", table.render())?;
    outln!("intervals: percentile bootstrap over architectures; a τ whose interval holds 0 says nothing")
}

fn row(table: &mut Table, a: &Agreement) {
    let estimate = |c: &Correlation| c.estimate.map_or("-".into(), |v| format!("{v:.3}"));
    let interval = |c: &Correlation| match (c.low, c.high) {
        (Some(low), Some(high)) => format!("[{low:.2}, {high:.2}]"),
        _ => "-".into(),
    };
    let top = a.top_k_overlap.map_or("-".into(), |o| format!("{o}/{}", a.top_k));
    table.row([
        a.comparison.clone(),
        a.architectures.to_string(),
        estimate(&a.kendall_tau),
        interval(&a.kendall_tau),
        estimate(&a.spearman_rho),
        interval(&a.spearman_rho),
        top,
    ]);
}

fn percent(values: &[Option<f64>]) -> String {
    values
        .iter()
        .map(|v| v.map_or("-".into(), |a| format!("{:.1}", a * 100.0)))
        .collect::<Vec<_>>()
        .join(" / ")
}

fn architectures(report: &FidelityReport) -> Result<()> {
    let mut rows: Vec<&ArchitectureRow> = report.architectures.iter().collect();
    rows.sort_by(|a, b| b.reference_mean().unwrap_or(-1.0).total_cmp(&a.reference_mean().unwrap_or(-1.0)));
    let mut table = Table::new(["#", "arch", "name", "MMACs", "cheap acc % (per seed)", "reference acc %"]);
    for (rank, row) in rows.iter().enumerate() {
        table.row([
            (rank + 1).to_string(),
            row.arch_hash.clone(),
            row.label.clone().unwrap_or_default(),
            format!("{:.1}", row.flops as f64 / 1e6),
            percent(&row.cheap_accuracy),
            percent(&row.reference_accuracy),
        ]);
    }
    outln!("architectures by reference accuracy:\n{}", table.render())
}
