//! `effnas plot`: a run in two pictures, side by side. Left, the reward of each trial in the
//! order they were queued, with the best so far (how the search progressed). Right, accuracy
//! against multiply-adds for every complete trial, the Pareto front, and the reference
//! networks (EfficientNet-B0, MnasNet-A1, MobileNetV2) marked where the run measured them.

use std::path::{Path, PathBuf};
use std::process::ExitCode;

use anyhow::{anyhow, bail, Result};
use effnas_store::{Run, Trial, TrialFilter, TrialState};
use plotters::coord::{CoordTranslate, Shift};
use plotters::prelude::*;

use super::pareto::front;
use super::runs::{block_on, RunSelector};
use super::trials::reference_model;

#[derive(Debug, clap::Args)]
pub struct Args {
    #[command(flatten)]
    pub selector: RunSelector,
    /// The image to write; its extension picks the format: .svg or .png.
    #[arg(long, value_name = "FILE")]
    pub out: PathBuf,
    /// Image width in pixels.
    #[arg(long, default_value_t = 1400, value_parser = clap::value_parser!(u32).range(400..=8000))]
    pub width: u32,
    /// Image height in pixels.
    #[arg(long, default_value_t = 600, value_parser = clap::value_parser!(u32).range(300..=8000))]
    pub height: u32,
}

/// What the two panels show, in plot coordinates.
struct PlotData {
    title: String,
    /// Trial number (1-based, queue order) and reward of each complete trial.
    rewards: Vec<(f64, f64)>,
    /// The best reward up to each complete trial.
    running_best: Vec<(f64, f64)>,
    /// Trial numbers of failed trials.
    failed: Vec<f64>,
    trial_count: usize,
    /// Multiply-adds in millions and accuracy in percent of each complete trial.
    points: Vec<(f64, f64)>,
    /// The same for the Pareto front, cheapest first.
    front: Vec<(f64, f64)>,
    /// Reference networks the run measured: name and point.
    references: Vec<(String, (f64, f64))>,
}

pub(crate) enum Format {
    Svg,
    Png,
}

pub(crate) fn format_of(path: &Path) -> Result<Format> {
    match path.extension().and_then(|e| e.to_str()).map(str::to_ascii_lowercase).as_deref() {
        Some("svg") => Ok(Format::Svg),
        Some("png") => Ok(Format::Png),
        _ => bail!(
            "{}: the plot is written as .svg or .png; give a file name ending in one of them",
            path.display()
        ),
    }
}

pub fn run(args: Args) -> Result<ExitCode> {
    let format = format_of(&args.out)?;
    crate::files::refuse_database("--out", &args.out, &args.selector.db.db)?;
    let (run, trials) = block_on(async {
        let (store, run) = args.selector.open().await?;
        let trials = store.trials(run.id, &TrialFilter::default()).await?;
        store.close().await;
        Ok((run, trials))
    })?;
    let data = plot_data(&run, &trials)?;
    let size = (args.width, args.height);
    crate::files::replace_file(&args.out, |temporary| match format {
        Format::Svg => draw(SVGBackend::new(temporary, size).into_drawing_area(), &data),
        Format::Png => draw(BitMapBackend::new(temporary, size).into_drawing_area(), &data),
    })?;
    eprintln!("wrote {} ({})", args.out.display(), summary(&data));
    Ok(ExitCode::SUCCESS)
}

/// What the picture shows, for the line printed after writing it.
fn summary(data: &PlotData) -> String {
    let marked = if data.references.is_empty() {
        String::new()
    } else {
        format!(", {} marked", data.references.iter().map(|r| r.0.as_str()).collect::<Vec<_>>().join(", "))
    };
    format!("{} complete trials, {} on the Pareto front{marked}", data.points.len(), data.front.len())
}

fn plot_data(run: &Run, trials: &[Trial]) -> Result<PlotData> {
    // The run's own trials: a finalist's re-trainings repeat architectures already plotted.
    let trials: Vec<Trial> = trials.iter().filter(|t| t.setting == 0).cloned().collect();
    let trials = trials.as_slice();
    let measured = |t: &Trial| t.state == TrialState::Complete && t.accuracy.is_some() && t.reward.is_some();
    let complete: Vec<&Trial> = trials.iter().filter(|t| measured(t)).collect();
    if complete.is_empty() {
        bail!(
            "run {} ({}) has no complete trials to plot yet ({} queued)",
            run.id,
            run.display_name(),
            trials.len()
        );
    }
    let Progress { rewards, running_best, failed } = progress(trials);
    let owned: Vec<Trial> = complete.iter().map(|t| (*t).clone()).collect();
    Ok(PlotData {
        title: format!(
            "run {} ({}, {}): {} trials, {} complete, {} failed",
            run.id,
            run.display_name(),
            run.kind,
            trials.len(),
            complete.len(),
            failed.len()
        ),
        rewards,
        running_best,
        failed,
        trial_count: trials.len(),
        points: complete.iter().map(|t| point(t)).collect(),
        front: front(&owned).into_iter().map(point).collect(),
        references: references(&complete),
    })
}

/// The left panel's series, by trial number in queue order.
struct Progress {
    rewards: Vec<(f64, f64)>,
    running_best: Vec<(f64, f64)>,
    failed: Vec<f64>,
}

fn progress(trials: &[Trial]) -> Progress {
    let mut progress = Progress { rewards: Vec::new(), running_best: Vec::new(), failed: Vec::new() };
    let mut best = f64::NEG_INFINITY;
    for (index, t) in trials.iter().enumerate() {
        let number = (index + 1) as f64;
        match (t.state, t.reward) {
            (TrialState::Complete, Some(reward)) => {
                best = best.max(reward);
                progress.rewards.push((number, reward));
                progress.running_best.push((number, best));
            }
            (TrialState::Failed, _) => progress.failed.push(number),
            _ => {}
        }
    }
    progress
}

/// A trial's place in the right panel: multiply-adds in millions, accuracy in percent.
fn point(t: &Trial) -> (f64, f64) {
    (t.flops as f64 / 1e6, t.accuracy.unwrap_or(0.0) * 100.0)
}

/// The reference networks among the complete trials, each once, at its first trial.
fn references(complete: &[&Trial]) -> Vec<(String, (f64, f64))> {
    let mut references: Vec<(String, (f64, f64))> = Vec::new();
    for t in complete {
        if let Some(name) = t.arch().ok().as_ref().and_then(reference_model) {
            if !references.iter().any(|(n, _)| n == name) {
                references.push((name.to_owned(), point(t)));
            }
        }
    }
    references
}

/// A value range around `values` with some room, never empty.
pub(crate) fn padded(values: impl Iterator<Item = f64>) -> std::ops::Range<f64> {
    let (low, high) = values.fold((f64::INFINITY, f64::NEG_INFINITY), |(lo, hi), v| (lo.min(v), hi.max(v)));
    let span = if high > low { high - low } else { low.abs().max(1.0) * 0.1 };
    (low - span * 0.08)..(high + span * 0.08)
}

pub(crate) const POINT: RGBColor = RGBColor(31, 119, 180);
pub(crate) const BEST: RGBColor = RGBColor(214, 39, 40);
const FRONT: RGBColor = RGBColor(255, 127, 14);
pub(crate) const REFERENCE: RGBColor = RGBColor(44, 160, 44);
const FAILED: RGBColor = RGBColor(127, 127, 127);

fn draw<DB: DrawingBackend>(root: DrawingArea<DB, Shift>, data: &PlotData) -> Result<()>
where
    DB::ErrorType: 'static,
{
    root.fill(&WHITE).map_err(plot_error)?;
    let root = root.titled(&data.title, ("sans-serif", 22)).map_err(plot_error)?;
    let (width, _) = root.dim_in_pixel();
    let (left, right) = root.split_horizontally(width / 2);
    draw_progress(&left, data)?;
    draw_front(&right, data)?;
    root.present().map_err(plot_error)?;
    Ok(())
}

/// A drawing error as an `anyhow` error.
pub(crate) fn plot_error<E: std::error::Error + Send + Sync>(e: DrawingAreaErrorKind<E>) -> anyhow::Error {
    anyhow!("{e}")
}

/// Left panel: reward over trials with the running best, and where trials failed.
fn draw_progress<DB: DrawingBackend>(area: &DrawingArea<DB, Shift>, data: &PlotData) -> Result<()>
where
    DB::ErrorType: 'static,
{
    let fail = plot_error::<DB::ErrorType>;
    let rewards = padded(data.rewards.iter().map(|p| p.1));
    let reward_floor = rewards.start;
    let mut chart = ChartBuilder::on(area)
        .caption("reward by trial, best so far", ("sans-serif", 18))
        .margin(16)
        .x_label_area_size(40)
        .y_label_area_size(64)
        .build_cartesian_2d(0.0..(data.trial_count as f64 + 1.0), rewards)
        .map_err(fail)?;
    chart
        .configure_mesh()
        .x_desc("trial (queue order)")
        .y_desc("reward")
        .y_label_formatter(&|v| format!("{v:.3}"))
        .x_label_formatter(&|v| format!("{v:.0}"))
        .light_line_style(WHITE.mix(0.0))
        .draw()
        .map_err(fail)?;
    chart
        .draw_series(data.rewards.iter().map(|&p| Circle::new(p, 3, POINT.mix(0.6).filled())))
        .map_err(fail)?
        .label("trial")
        .legend(|(x, y)| Circle::new((x + 10, y), 3, POINT.filled()));
    chart
        .draw_series(LineSeries::new(staircase(&data.running_best), BEST.stroke_width(2)))
        .map_err(fail)?
        .label("best so far")
        .legend(|(x, y)| PathElement::new(vec![(x, y), (x + 20, y)], BEST.stroke_width(2)));
    if !data.failed.is_empty() {
        chart
            .draw_series(
                data.failed.iter().map(|&x| Cross::new((x, reward_floor), 4, FAILED.stroke_width(1))),
            )
            .map_err(fail)?
            .label("failed")
            .legend(|(x, y)| Cross::new((x + 10, y), 4, FAILED.stroke_width(1)));
    }
    draw_legend(&mut chart, SeriesLabelPosition::UpperLeft)
}

/// Right panel: accuracy against multiply-adds, the Pareto front and the reference networks.
fn draw_front<DB: DrawingBackend>(area: &DrawingArea<DB, Shift>, data: &PlotData) -> Result<()>
where
    DB::ErrorType: 'static,
{
    let fail = plot_error::<DB::ErrorType>;
    let macs = padded(data.points.iter().map(|p| p.0));
    let accuracy = padded(data.points.iter().map(|p| p.1));
    let mut chart = ChartBuilder::on(area)
        .caption("accuracy vs multiply-adds, Pareto front", ("sans-serif", 18))
        .margin(16)
        .x_label_area_size(40)
        .y_label_area_size(64)
        .build_cartesian_2d(macs, accuracy)
        .map_err(fail)?;
    chart
        .configure_mesh()
        .x_desc("multiply-adds (millions)")
        .y_desc("accuracy (%)")
        .x_label_formatter(&|v| format!("{v:.1}"))
        .y_label_formatter(&|v| format!("{v:.1}"))
        .light_line_style(WHITE.mix(0.0))
        .draw()
        .map_err(fail)?;
    chart
        .draw_series(data.points.iter().map(|&p| Circle::new(p, 3, POINT.mix(0.5).filled())))
        .map_err(fail)?
        .label("trial")
        .legend(|(x, y)| Circle::new((x + 10, y), 3, POINT.filled()));
    chart
        .draw_series(LineSeries::new(staircase(&data.front), FRONT.stroke_width(2)))
        .map_err(fail)?
        .label("Pareto front")
        .legend(|(x, y)| PathElement::new(vec![(x, y), (x + 20, y)], FRONT.stroke_width(2)));
    chart.draw_series(data.front.iter().map(|&p| Circle::new(p, 4, FRONT.filled()))).map_err(fail)?;
    if !data.references.is_empty() {
        chart
            .draw_series(data.references.iter().map(|(_, p)| TriangleMarker::new(*p, 8, REFERENCE.filled())))
            .map_err(fail)?
            .label("reference network")
            .legend(|(x, y)| TriangleMarker::new((x + 10, y), 6, REFERENCE.filled()));
        chart
            .draw_series(data.references.iter().map(|(name, p)| {
                EmptyElement::at(*p)
                    + Text::new(name.clone(), (10, -6), ("sans-serif", 15).into_font().color(&REFERENCE))
            }))
            .map_err(fail)?;
    }
    draw_legend(&mut chart, SeriesLabelPosition::LowerRight)
}

/// A panel's legend box, placed at `position`.
pub(crate) fn draw_legend<'a, DB: DrawingBackend + 'a, CT: CoordTranslate>(
    chart: &mut ChartContext<'a, DB, CT>,
    position: SeriesLabelPosition,
) -> Result<()> {
    chart
        .configure_series_labels()
        .position(position)
        .background_style(WHITE.mix(0.85))
        .border_style(BLACK.mix(0.4))
        .draw()
        .map_err(plot_error)
}

/// A staircase through points sorted by x: each value holds until the next point changes it
/// (the best reward so far; the best accuracy at a cost along the Pareto front).
fn staircase(points: &[(f64, f64)]) -> Vec<(f64, f64)> {
    let mut line = Vec::with_capacity(points.len() * 2);
    for (i, &(x, y)) in points.iter().enumerate() {
        if i > 0 {
            line.push((x, points[i - 1].1));
        }
        line.push((x, y));
    }
    line
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn ranges_are_never_empty_and_staircases_hold_values() {
        let one = padded([5.0].into_iter());
        assert!(one.start < 5.0 && one.end > 5.0);
        assert_eq!(staircase(&[(1.0, 0.5), (3.0, 0.7)]), vec![(1.0, 0.5), (3.0, 0.5), (3.0, 0.7)]);
        assert!(format_of(Path::new("x.svg")).is_ok() && format_of(Path::new("x.PNG")).is_ok());
        assert!(format_of(Path::new("x.pdf")).is_err());
    }
}
