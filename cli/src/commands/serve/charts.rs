//! The run page's chart data, as compact column-wise JSON for uPlot (one array per series, as
//! uPlot takes them): the best reward so far against trial number and wall time over every
//! trial's reward (the `effnas plot` progress panel, live), accuracy against multiply-adds with
//! the Pareto front (MnasNet's figure), the FLOPS target and the reference networks, and for
//! fidelity runs each architecture's cheap against reference accuracy.
//!
//! Ten thousand trials are ten thousand numbers per series (a few hundred kilobytes); numbers
//! are rounded to what a chart can show, so the page draws them without freezing.

use effnas_search::config::read_stored;
use effnas_search::fidelity::{FidelityConfig, FidelityReport};
use effnas_store::{pareto_front, CompoundPoint, Run, RunKind, Trial, TrialState};
use serde_json::{json, Value};

use super::super::trials::{reference_model, REFERENCE_MODELS};

/// A number rounded to `digits` significant decimals (JSON `null` for none).
fn round(value: Option<f64>, digits: i32) -> Value {
    match value.filter(|v| v.is_finite()) {
        Some(v) => {
            let scale = 10f64.powi(digits);
            json!((v * scale).round() / scale)
        }
        None => Value::Null,
    }
}

/// The trials a run's charts plot: its own (setting 0 for searches; a finalist's re-trainings
/// repeat architectures already plotted), every one for a fidelity run.
fn plotted<'a>(run: &Run, trials: &'a [Trial]) -> Vec<&'a Trial> {
    match run.kind {
        RunKind::Fidelity => trials.iter().collect(),
        _ => trials.iter().filter(|t| t.setting == 0).collect(),
    }
}

/// The whole chart payload of a run.
pub fn chart_data(run: &Run, trials: &[Trial], points: &[CompoundPoint]) -> Value {
    let plotted = plotted(run, trials);
    json!({
        "progress": progress(run, &plotted),
        "front": front(&plotted),
        "target_mflops": target_flops(run).map(|f| f / 1e6),
        "references": references(&plotted),
        "fidelity": (run.kind == RunKind::Fidelity).then(|| fidelity(run, trials)).flatten(),
        "compound": (run.kind == RunKind::Compound).then(|| compound(points)),
    })
}

/// Per trial, in queue order: number, hours since the run started at its end, reward (complete
/// ones), and the best reward so far (a staircase).
fn progress(run: &Run, trials: &[&Trial]) -> Value {
    let mut n = Vec::new();
    let mut hours = Vec::new();
    let mut reward = Vec::new();
    let mut best = Vec::new();
    let mut failed = Vec::new();
    let mut top = f64::NEG_INFINITY;
    for (index, t) in trials.iter().enumerate() {
        match (t.state, t.reward) {
            (TrialState::Complete, Some(r)) if r.is_finite() => {
                top = top.max(r);
                n.push(index + 1);
                let end = t.finished.as_deref().unwrap_or(&t.created);
                hours.push(round(
                    effnas_store::time::seconds_between(&run.started, end).map(|s| s / 3600.0),
                    4,
                ));
                reward.push(round(Some(r), 5));
                best.push(round(Some(top), 5));
            }
            (TrialState::Failed, _) => failed.push(index + 1),
            _ => {}
        }
    }
    json!({ "n": n, "hours": hours, "reward": reward, "best": best, "failed": failed, "total": trials.len() })
}

/// Complete trials' multiply-adds (millions) and accuracy (percent), and the Pareto front
/// among them (accuracy up, cost down), sorted by cost.
fn front(trials: &[&Trial]) -> Value {
    let complete: Vec<&Trial> =
        trials.iter().copied().filter(|t| t.state == TrialState::Complete && t.accuracy.is_some()).collect();
    let point = |t: &Trial| t.accuracy.map(|a| (a, t.flops));
    let mut on_front: Vec<&Trial> =
        pareto_front(&complete, |t| point(t)).into_iter().map(|i| complete[i]).collect();
    on_front.sort_by_key(|t| t.flops);
    let columns = |list: &[&Trial]| {
        json!({
            "id": list.iter().map(|t| t.id.0).collect::<Vec<_>>(),
            "mflops": list.iter().map(|t| round(Some(t.flops as f64 / 1e6), 3)).collect::<Vec<_>>(),
            "accuracy": list.iter().map(|t| round(t.accuracy.map(|a| a * 100.0), 3)).collect::<Vec<_>>(),
        })
    };
    json!({ "all": columns(&complete), "front": columns(&on_front) })
}

/// The multiply-add target of the run's objective, when it has one (search and fidelity runs
/// store it under `objective`, searches of older versions under `plan.objective`).
pub fn target_flops(run: &Run) -> Option<f64> {
    let objective = run.config.get("objective").or_else(|| run.config.pointer("/plan/objective"))?;
    (objective.get("metric")?.as_str()? == "flops").then(|| objective.get("target")?.as_f64()).flatten()
}

/// The reference networks (EfficientNet-B0, MnasNet-A1, MobileNetV2) among the complete trials,
/// each at its best accuracy. Only a trial whose block strings are a reference's is parsed
/// (ten thousand architectures parsed per refresh took seconds).
fn references(trials: &[&Trial]) -> Value {
    let candidates: Vec<Vec<String>> = REFERENCE_MODELS
        .iter()
        .filter_map(|(preset, _)| effnas_space::presets::preset(preset).map(|a| a.block_strings()))
        .collect();
    let mut best: Vec<(&'static str, f64, f64)> = Vec::new();
    for t in trials.iter().filter(|t| t.state == TrialState::Complete && candidates.contains(&t.blocks)) {
        let name = t.arch().ok().as_ref().and_then(reference_model);
        let (Some(name), Some(accuracy)) = (name, t.accuracy) else { continue };
        let point = (name, t.flops as f64 / 1e6, accuracy * 100.0);
        match best.iter_mut().find(|(n, ..)| *n == name) {
            Some(existing) if existing.2 < point.2 => *existing = point,
            Some(_) => {}
            None => best.push(point),
        }
    }
    best.into_iter()
        .map(|(name, mflops, accuracy)| {
            json!({"name": name, "mflops": round(Some(mflops), 3), "accuracy": round(Some(accuracy), 3)})
        })
        .collect()
}

/// Each architecture of a fidelity run with its mean cheap and mean reference accuracy (over the
/// seeds complete so far), in percent.
fn fidelity(run: &Run, trials: &[Trial]) -> Option<Value> {
    let config: FidelityConfig = read_stored(&run.config).ok()?;
    let report = FidelityReport::new(&config, trials, 5);
    let mean = |values: &[Option<f64>]| {
        let done: Vec<f64> = values.iter().flatten().copied().collect();
        (!done.is_empty()).then(|| done.iter().sum::<f64>() / done.len() as f64 * 100.0)
    };
    let rows: Vec<(f64, f64, Option<String>)> = report
        .architectures
        .iter()
        .filter_map(|a| Some((mean(&a.cheap_accuracy)?, mean(&a.reference_accuracy)?, a.label.clone())))
        .collect();
    Some(json!({
        "cheap": rows.iter().map(|r| round(Some(r.0), 3)).collect::<Vec<_>>(),
        "reference": rows.iter().map(|r| round(Some(r.1), 3)).collect::<Vec<_>>(),
        "label": rows.iter().map(|r| r.2.clone()).collect::<Vec<_>>(),
        "kendall_tau": report.accuracy.seed_mean.kendall_tau.estimate,
    }))
}

/// A compound run's grid points: α, β, γ, the constraint's α·β²·γ² and the accuracy reached.
fn compound(points: &[CompoundPoint]) -> Value {
    points
        .iter()
        .map(|p| {
            json!({
                "alpha": p.alpha, "beta": p.beta, "gamma": p.gamma, "phi": p.phi,
                "flops_factor": round(Some(p.flops_factor), 4),
                "trial": p.trial_id, "state": p.trial_state,
                "accuracy": round(p.accuracy.map(|a| a * 100.0), 3),
            })
        })
        .collect()
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn numbers_round_and_non_finite_ones_become_null() {
        assert_eq!(round(Some(1.234_567), 3), json!(1.235));
        assert_eq!(round(Some(f64::NAN), 3), Value::Null);
        assert_eq!(round(None, 3), Value::Null);
    }
}
