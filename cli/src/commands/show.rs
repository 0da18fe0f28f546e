//! `effnas show TRIAL`: one trial in full: architecture table, cost, metrics, curve, error.

use crate::output::{out, outln};
use std::fmt::{Display, Write as _};
use std::process::ExitCode;

use anyhow::Result;
use effnas_search::finalists::{finalists, first_setting_of};
use effnas_space::{cost_breakdown, ArchSpec};
use effnas_store::{EpochMetrics, Run, Trial, TrialFilter, TrialId};
use serde_json::json;

use super::runs::{block_on, open, short_time, DbArg};
use super::trials::{reference_model, trial_json};
use crate::table::{human_count, Table};

#[derive(Debug, clap::Args)]
pub struct Args {
    #[command(flatten)]
    pub db: DbArg,
    /// The trial id (from `effnas trials`).
    pub trial: i64,
    /// Print JSON (one object, with the curve under `epochs`) instead of text.
    #[arg(long)]
    pub json: bool,
}

pub fn run(args: Args) -> Result<ExitCode> {
    let (trial, run, epochs, siblings) = block_on(async {
        let store = open(&args.db).await?;
        let trial = store.trial(TrialId(args.trial)).await?;
        let run = store.run(trial.run_id).await?;
        let epochs = store.epochs(trial.id).await?;
        let siblings = store.trials(run.id, &TrialFilter::default()).await?;
        store.close().await;
        Ok((trial, run, epochs, siblings))
    })?;
    // The trial as a finalist: what its re-trainings with fresh seeds measured.
    let finalist = finalists(&siblings, first_setting_of(&run)).into_iter().find(|f| f.trial == trial.id);
    if args.json {
        let mut value = trial_json(&trial, true);
        value["run_name"] = json!(run.name);
        value["epochs"] = serde_json::to_value(&epochs)?;
        value["final"] = json!(finalist);
        outln!("{}", serde_json::to_string_pretty(&value)?)?;
    } else {
        out!("{}", render(&trial, &run, &epochs))?;
        if let Some(f) = finalist {
            let reward = f.reward.map_or("-".to_owned(), |r| r.to_string());
            let accuracy = f.accuracy.map_or("-".to_owned(), |a| {
                super::finalists::mean_std(a.mean * 100.0, a.std.map(|s| s * 100.0), 2) + "%"
            });
            outln!(
                "\nfinalist: re-trained {} times with fresh seeds ({} complete, {} failed, {} to come): \
                 reward {reward}, accuracy {accuracy}",
                f.complete + f.failed + f.pending,
                f.complete,
                f.failed,
                f.pending
            )?;
        }
    }
    Ok(ExitCode::SUCCESS)
}

fn or_dash<T>(value: Option<T>, show: impl FnOnce(T) -> String) -> String {
    value.map_or_else(|| "-".to_owned(), show)
}

/// The text form: what was trained and when, the architecture, the result, the curve and
/// the failure.
fn render(t: &Trial, run: &Run, epochs: &[EpochMetrics]) -> String {
    let mut out = String::new();
    let _ = writeln!(out, "trial {} of run {} ({}): {}", t.id, run.id, run.display_name(), t.state);
    let arch = t.arch();
    out.push_str(&architecture_line(t, arch.as_ref()));
    out.push_str(&provenance(t));
    if let Ok(arch) = &arch {
        out.push('\n');
        out.push_str(&architecture_table(arch));
    }
    out.push_str(&results(t));
    if !epochs.is_empty() {
        let _ = write!(out, "\ncurve:\n{}", curve_table(epochs).render());
    }
    if let Some(error) = &t.error {
        let kind = t.failure.map_or("failed", |f| f.as_str());
        let _ = writeln!(out, "\nfailure ({kind}): {error}");
    }
    out
}

/// The architecture's hash and skeleton (naming the reference network it is), or why the
/// stored architecture could not be read.
fn architecture_line(t: &Trial, arch: Result<&ArchSpec, &impl Display>) -> String {
    match arch {
        Ok(arch) => {
            let reference = reference_model(arch).map_or(String::new(), |name| format!(" = {name}"));
            format!(
                "architecture {}{reference}: {res}×{res}×{ch} input, {} classes, \
                 dropout {}, drop-connect {}\n",
                t.arch_hash,
                arch.num_classes,
                arch.dropout,
                arch.drop_connect,
                res = arch.resolution,
                ch = arch.input_channels,
            )
        }
        Err(error) => format!("architecture {}: {error}\n", t.arch_hash),
    }
}

/// How the trial was trained: its proxy settings, when, how often, by whom, and whether its
/// result was reused from an earlier trial.
fn provenance(t: &Trial) -> String {
    let mut out = String::new();
    let _ = writeln!(out, "proxy settings: {}", t.proxy_key);
    let mut when = vec![format!("queued {}", short_time(&t.created))];
    if let Some(started) = &t.started {
        when.push(format!("started {}", short_time(started)));
    }
    if let Some(finished) = &t.finished {
        when.push(format!("finished {}", short_time(finished)));
    }
    let worker = t.worker.as_deref().map_or(String::new(), |w| format!(", worker {w}"));
    let _ = writeln!(out, "{} (UTC), attempts {}{worker}", when.join(", "), t.attempts);
    if let Some(source) = t.reused_from {
        let _ = writeln!(out, "result reused from trial {source} (same architecture and proxy settings)");
    }
    if t.setting != 0 || t.parent.is_some() {
        let parent = t.parent.map_or(String::new(), |p| format!(", repeating trial {p}"));
        let _ = writeln!(out, "trained under setting {} of its run{parent}", t.setting);
    }
    out
}

/// The cost and the measured result, with any extra data the trainer stored.
fn results(t: &Trial) -> String {
    let mut out = String::new();
    let _ = writeln!(
        out,
        "\ncost: {} parameters ({}), {} multiply-adds ({})",
        t.params,
        human_count(t.params),
        t.flops,
        human_count(t.flops)
    );
    let _ = writeln!(
        out,
        "result: accuracy {}, loss {}, reward {}, latency {}, training {}, {} images/s",
        or_dash(t.accuracy, |a| format!("{:.2}%", a * 100.0)),
        or_dash(t.loss, |l| format!("{l:.4}")),
        or_dash(t.reward, |r| format!("{r:.4}")),
        or_dash(t.latency_ms, |l| format!("{l:.2} ms")),
        or_dash(t.seconds, super::runs::human_duration),
        or_dash(t.images_per_second, |i| format!("{i:.0}")),
    );
    if let Some(extra) = &t.extra {
        let _ = writeln!(out, "extra: {extra}");
    }
    out
}

/// The training curve, one row per epoch.
fn curve_table(epochs: &[EpochMetrics]) -> Table {
    let mut curve = Table::new(["epoch", "train loss", "train acc", "val loss", "val acc", "lr", "seconds"]);
    let number = |v: Option<f64>, digits: usize| or_dash(v, |v| format!("{v:.digits$}"));
    let percent = |v: Option<f64>| or_dash(v, |v| format!("{:.2}%", v * 100.0));
    for e in epochs {
        curve.row([
            e.epoch.to_string(),
            number(e.train_loss, 4),
            percent(e.train_accuracy),
            number(e.val_loss, 4),
            percent(e.val_accuracy),
            or_dash(e.learning_rate, |v| format!("{v:.3e}")),
            number(e.seconds, 1),
        ]);
    }
    curve
}

/// The blocks with their full strings and cost at the trial's resolution.
fn architecture_table(arch: &ArchSpec) -> String {
    let breakdown = cost_breakdown(arch);
    let mut table = Table::new(["#", "block", "out res", "params", "mult-adds"]);
    let k = arch.stem_kernel;
    let pool = if arch.stem_max_pool { ", maxpool3x3 s2" } else { "" };
    table.row([
        "stem".to_owned(),
        format!("conv{k}x{k} s{} {}→{}{pool}", arch.stem_stride, arch.input_channels, arch.stem_channels),
        arch.stem_output_size().to_string(),
        human_count(breakdown.stem.params),
        human_count(breakdown.stem.macs),
    ]);
    for (index, (block, cost)) in arch.blocks.iter().zip(&breakdown.blocks).enumerate() {
        table.row([
            (index + 1).to_string(),
            block.to_string(),
            cost.output_resolution.to_string(),
            human_count(cost.cost.params),
            human_count(cost.cost.macs),
        ]);
    }
    if let Some(head) = arch.head_channels {
        table.row([
            "head".to_owned(),
            format!("conv1x1 {}→{head}", arch.last_block_channels()),
            breakdown.final_resolution.to_string(),
            human_count(breakdown.head.params),
            human_count(breakdown.head.macs),
        ]);
    }
    table.row([
        "fc".to_owned(),
        format!("pool, linear {}→{}", arch.classifier_channels(), arch.num_classes),
        "1".to_owned(),
        human_count(breakdown.classifier.params),
        human_count(breakdown.classifier.macs),
    ]);
    table.render()
}
