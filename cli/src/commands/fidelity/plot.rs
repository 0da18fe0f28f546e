//! The fidelity picture: each architecture's reference accuracy against its cheap accuracy (the
//! mean of the seeds, with a bar from the lowest to the highest seed), the identity line, and the
//! named architectures (EfficientNet-B0, MnasNet-A1) marked. A cloud along a rising line is a
//! proxy that ranks; a flat or round cloud, one that does not.

use std::path::Path;

use anyhow::{bail, Result};
use effnas_search::fidelity::FidelityReport;
use effnas_store::Run;
use plotters::coord::Shift;
use plotters::prelude::*;

use crate::commands::plot::{draw_legend, format_of, padded, plot_error, Format, BEST, POINT, REFERENCE};

const SIZE: (u32, u32) = (900, 700);

/// One architecture in plot coordinates (percent).
struct Point {
    cheap: f64,
    low: f64,
    high: f64,
    reference: f64,
    label: Option<String>,
}

pub fn write(path: &Path, run: &Run, report: &FidelityReport) -> Result<()> {
    let points: Vec<Point> = report
        .architectures
        .iter()
        .filter_map(|row| {
            let seeds: Option<Vec<f64>> = row.cheap_accuracy.iter().copied().collect();
            let seeds = seeds?;
            let low = seeds.iter().copied().fold(f64::INFINITY, f64::min);
            let high = seeds.iter().copied().fold(f64::NEG_INFINITY, f64::max);
            Some(Point {
                cheap: row.cheap_mean()? * 100.0,
                low: low * 100.0,
                high: high * 100.0,
                reference: row.reference_mean()? * 100.0,
                label: row.label.clone(),
            })
        })
        .collect();
    if points.is_empty() {
        bail!(
            "--plot {}: no architecture has every cheap and reference training complete yet",
            path.display()
        );
    }
    let tau = report.accuracy.seed_mean.kendall_tau.estimate.map_or("-".to_owned(), |t| format!("{t:.2}"));
    let title =
        format!("run {} ({}): cheap vs reference accuracy, Kendall τ {tau}", run.id, run.display_name());
    crate::files::replace_file(path, |temporary| match format_of(path)? {
        Format::Svg => draw(SVGBackend::new(temporary, SIZE).into_drawing_area(), &title, &points),
        Format::Png => draw(BitMapBackend::new(temporary, SIZE).into_drawing_area(), &title, &points),
    })?;
    eprintln!("wrote {} ({} architectures)", path.display(), points.len());
    Ok(())
}

fn draw<DB: DrawingBackend>(root: DrawingArea<DB, Shift>, title: &str, points: &[Point]) -> Result<()>
where
    DB::ErrorType: 'static,
{
    let fail = plot_error::<DB::ErrorType>;
    root.fill(&WHITE).map_err(fail)?;
    let x = padded(points.iter().flat_map(|p| [p.low, p.high]));
    let y = padded(points.iter().map(|p| p.reference));
    let mut chart = ChartBuilder::on(&root)
        .caption(title, ("sans-serif", 20))
        .margin(18)
        .x_label_area_size(44)
        .y_label_area_size(64)
        .build_cartesian_2d(x.clone(), y.clone())
        .map_err(fail)?;
    chart
        .configure_mesh()
        .x_desc("cheap proxy accuracy (%), mean of seeds; bar: lowest to highest seed")
        .y_desc("reference accuracy (%)")
        .x_label_formatter(&|v| format!("{v:.0}"))
        .y_label_formatter(&|v| format!("{v:.0}"))
        .light_line_style(WHITE.mix(0.0))
        .draw()
        .map_err(fail)?;
    // The identity line, where it crosses the plotted window.
    let (from, to) = (x.start.max(y.start), x.end.min(y.end));
    if from < to {
        chart
            .draw_series(LineSeries::new([(from, from), (to, to)], BLACK.mix(0.35).stroke_width(1)))
            .map_err(fail)?
            .label("cheap = reference")
            .legend(|(x, y)| PathElement::new(vec![(x, y), (x + 20, y)], BLACK.mix(0.35)));
    }
    chart
        .draw_series(
            points
                .iter()
                .map(|p| PathElement::new(vec![(p.low, p.reference), (p.high, p.reference)], POINT.mix(0.5))),
        )
        .map_err(fail)?;
    chart
        .draw_series(points.iter().map(|p| Circle::new((p.cheap, p.reference), 4, POINT.filled())))
        .map_err(fail)?
        .label("architecture")
        .legend(|(x, y)| Circle::new((x + 10, y), 4, POINT.filled()));
    let named: Vec<&Point> = points.iter().filter(|p| p.label.is_some()).collect();
    if !named.is_empty() {
        chart
            .draw_series(
                named.iter().map(|p| TriangleMarker::new((p.cheap, p.reference), 8, REFERENCE.filled())),
            )
            .map_err(fail)?
            .label("named network")
            .legend(|(x, y)| TriangleMarker::new((x + 10, y), 6, REFERENCE.filled()));
        chart
            .draw_series(named.iter().map(|p| {
                EmptyElement::at((p.cheap, p.reference))
                    + Text::new(
                        p.label.clone().unwrap_or_default(),
                        (10, -8),
                        ("sans-serif", 15).into_font().color(&BEST),
                    )
            }))
            .map_err(fail)?;
    }
    draw_legend(&mut chart, SeriesLabelPosition::LowerRight)?;
    root.present().map_err(fail)?;
    Ok(())
}
