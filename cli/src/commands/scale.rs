//! `effnas scale`: compound scaling of a base network over φ (EfficientNet §3.3), next to the
//! official EfficientNet-B0…B7 table.

use crate::output::{out, outln};
use std::path::{Path, PathBuf};
use std::process::ExitCode;

use anyhow::{bail, Context, Result};
use effnas_space::error::Echo;
use effnas_space::presets::EFFICIENTNET;
use effnas_space::{cost, presets, scale, ArchSpec, Compound, Multipliers};
use effnas_store::{BlockingStore, NewScaledModel, OpenOptions, RunId, Store};
use plotters::coord::Shift;
use plotters::prelude::*;
use serde_json::json;

use crate::table::{human_count, Table};

#[derive(Debug, clap::Args)]
pub struct Args {
    /// Depth coefficient α (layers grow by α^φ).
    #[arg(long, default_value_t = Compound::EFFICIENTNET.alpha)]
    pub alpha: f64,
    /// Width coefficient β (channels grow by β^φ).
    #[arg(long, default_value_t = Compound::EFFICIENTNET.beta)]
    pub beta: f64,
    /// Resolution coefficient γ (resolution grows by γ^φ).
    #[arg(long, default_value_t = Compound::EFFICIENTNET.gamma)]
    pub gamma: f64,
    /// The φ values: a comma-separated list (1,2,3 or 0.5,1.5) and/or inclusive integer ranges
    /// (0..7), each from -8 up to where the scaled network reaches the size limits (64× depth,
    /// width or resolution; 64 repeats, 16384 channels, 4096 px): φ = 15.2 for B0 with the default
    /// coefficients.
    #[arg(long, default_value = "0..7")]
    pub phi: String,
    /// The base network (a preset, block strings or a JSON file).
    #[arg(long, default_value = "efficientnet-b0")]
    pub base: String,
    /// Write each scaled architecture as DIR/phi-<φ>.json (a SPEC for `effnas arch` and `effnas train`).
    #[arg(long, value_name = "DIR")]
    pub save: Option<PathBuf>,
    /// Also draw multiply-adds against φ (pure compound scaling, the official models, base × 2^φ)
    /// into FILE (.svg or .png).
    #[arg(long, value_name = "FILE")]
    pub plot: Option<PathBuf>,
    /// Take α, β, γ and the base from the winner of a compound run (id or name) in --db, and
    /// record the scaled family in that database.
    #[arg(long, value_name = "RUN", conflicts_with_all = ["alpha", "beta", "gamma", "base"])]
    pub from_run: Option<String>,
    /// The experiment database for --from-run.
    #[arg(long, default_value = "effnas.db")]
    pub db: String,
    /// Print JSON instead of a table.
    #[arg(long)]
    pub json: bool,
}

/// The φ values any list may hold; how far a given base really scales is checked when scaling.
const PHI_BOUNDS: std::ops::RangeInclusive<f64> = -8.0..=64.0;

/// Parses `0..7`, `1,2,3`, `0.5,1`, `-2..2` or a mix into a list of φ values.
pub fn parse_phi_list(text: &str) -> Result<Vec<f64>> {
    let mut values = Vec::new();
    for item in text.split(',').map(str::trim).filter(|s| !s.is_empty()) {
        let echo = Echo(item);
        if let Some((from, to)) = item.split_once("..") {
            let bound = |end: &str| end.trim().parse::<i32>().ok().map(f64::from);
            let (Some(from), Some(to)) = (bound(from), bound(to)) else {
                bail!("--phi: {echo} is not a range of whole numbers like 0..7");
            };
            if from > to || !PHI_BOUNDS.contains(&from) || !PHI_BOUNDS.contains(&to) {
                bail!("--phi: range {echo} must go upwards and stay within -8 to 64");
            }
            values.extend((from as i32..=to as i32).map(f64::from));
        } else {
            let Ok(value) = item.parse::<f64>() else { bail!("--phi: {echo} is not a number") };
            if !(value.is_finite() && PHI_BOUNDS.contains(&value)) {
                bail!("--phi: {echo} is out of range (-8 to 64)");
            }
            values.push(value);
        }
    }
    if values.is_empty() {
        bail!("--phi: no values given");
    }
    Ok(values)
}

/// One row of the scaling table.
pub struct ScaledRow {
    pub phi: f64,
    pub multipliers: Multipliers,
    pub arch: ArchSpec,
    pub params: u64,
    pub flops: u64,
    pub flops_ratio: f64,
}

/// Scales `base` for every φ; a φ past the size limits is an error that gives the usable range.
pub fn scale_family(base: &ArchSpec, coefficients: Compound, phis: &[f64]) -> Result<Vec<ScaledRow>> {
    let base_flops = cost(base).macs as f64;
    phis.iter()
        .map(|&phi| {
            let multipliers = Multipliers::compound(coefficients, phi);
            let arch = scale(base, multipliers).map_err(|error| {
                let (low, high) = (phi_limit(base, coefficients, -8.0), phi_limit(base, coefficients, 64.0));
                anyhow::anyhow!(
                    "--phi {phi} is out of range: with α = {}, β = {}, γ = {} this base scales for φ from {low} to {high} ({error})",
                    coefficients.alpha,
                    coefficients.beta,
                    coefficients.gamma,
                )
            })?;
            let c = cost(&arch);
            Ok(ScaledRow {
                phi,
                multipliers,
                params: c.params,
                flops: c.macs,
                flops_ratio: c.macs as f64 / base_flops,
                arch,
            })
        })
        .collect()
}

/// The φ nearest `bound` (in hundredths, towards 0) at which `base` still scales: φ = 0 always
/// does, and with every coefficient at least 1 the network only grows with φ, so bisection finds
/// the edge.
fn phi_limit(base: &ArchSpec, coefficients: Compound, bound: f64) -> f64 {
    let scales =
        |hundredths: i64| scale(base, Multipliers::compound(coefficients, hundredths as f64 / 100.0)).is_ok();
    let (mut good, mut bad) = (0_i64, (bound * 100.0) as i64);
    if scales(bad) {
        return bound;
    }
    while (bad - good).abs() > 1 {
        let middle = (good + bad) / 2;
        if scales(middle) {
            good = middle;
        } else {
            bad = middle;
        }
    }
    good as f64 / 100.0
}

fn official_row(phi: f64) -> Option<(usize, ArchSpec)> {
    if phi.fract() != 0.0 || phi < 0.0 {
        return None;
    }
    let index = phi as usize;
    presets::efficientnet(index).map(|arch| (index, arch))
}

/// Where the base network and the coefficients come from: the flags, or the winner of a
/// compound run that the scaled family is then recorded in.
struct Source {
    coefficients: Compound,
    base: ArchSpec,
    base_name: String,
    /// The database and compound run that supplied the winner, when --from-run is given.
    recorded_in: Option<(BlockingStore, RunId)>,
}

pub fn run(args: Args) -> Result<ExitCode> {
    check_coefficients(&args)?;
    let phis = parse_phi_list(&args.phi)?;
    // The database is only read (and written) with --from-run.
    let db = args.from_run.as_ref().map(|_| args.db.as_str());
    if let Some(db) = db {
        refuse_to_overwrite(&args, &phis, db)?;
    }
    let source = resolve_source(&args)?;
    let rows = scale_family(&source.base, source.coefficients, &phis)?;
    if let Some((store, run)) = &source.recorded_in {
        record_scaled_models(store, *run, &source.base_name, &rows)?;
    }
    if let Some(dir) = &args.save {
        save_specs(dir, &rows)?;
    }
    if let Some(path) = &args.plot {
        write_plot(path, &rows, &source.base_name, source.coefficients)?;
    }
    if args.json {
        outln!("{}", serde_json::to_string_pretty(&rows_json(&rows, source.coefficients))?)?;
    } else {
        out!("{}", render(&source, &rows))?;
    }
    Ok(ExitCode::SUCCESS)
}

/// α, β and γ must each lie in 1..=4 (checked even with --from-run, where they keep their defaults).
fn check_coefficients(args: &Args) -> Result<()> {
    for (name, value) in [("--alpha", args.alpha), ("--beta", args.beta), ("--gamma", args.gamma)] {
        if !(value.is_finite() && (1.0..=4.0).contains(&value)) {
            bail!("{name} {value} is out of range (1 to 4: compound scaling never shrinks a dimension)");
        }
    }
    Ok(())
}

/// The coefficients and base from --from-run's winner, or else from --alpha/--beta/--gamma/--base.
fn resolve_source(args: &Args) -> Result<Source> {
    match &args.from_run {
        Some(selector) => {
            let store = open_existing(&args.db)?;
            let (coefficients, base, base_name, run) = super::compound::winner(&store, selector)?;
            Ok(Source { coefficients, base, base_name, recorded_in: Some((store, run)) })
        }
        None => Ok(Source {
            coefficients: Compound { alpha: args.alpha, beta: args.beta, gamma: args.gamma },
            base: super::arch::resolve(&args.base, None, None, None)?,
            base_name: args.base.clone(),
            recorded_in: None,
        }),
    }
}

/// Opens the database of --from-run, which must exist: a mistyped name is an error, never a new
/// empty database. The store's errors name the database.
fn open_existing(db: &str) -> Result<BlockingStore> {
    let must_exist = OpenOptions { create: false, ..OpenOptions::default() };
    super::runs::block_on(async {
        Store::open_with(db, &must_exist).await?.close().await;
        Ok(())
    })?;
    // The file exists and is writable, so this opens it rather than creating one.
    Ok(BlockingStore::open(db)?)
}

/// Records every row as a scaled model of the compound run `run`, named `<base>-phi<φ>`.
fn record_scaled_models(
    store: &BlockingStore,
    run: RunId,
    base_name: &str,
    rows: &[ScaledRow],
) -> Result<()> {
    for row in rows {
        let model = NewScaledModel {
            name: format!("{base_name}-phi{}", row.phi),
            phi: row.phi,
            width: row.multipliers.width,
            depth: row.multipliers.depth,
            resolution_multiplier: row.multipliers.resolution,
            arch: row.arch.clone(),
        };
        store.block_on(store.store().add_scaled_model(run, &model)).context("recording the scaled models")?;
    }
    Ok(())
}

/// Refuses, before any work, a --save file or --plot image that is the database `db`.
fn refuse_to_overwrite(args: &Args, phis: &[f64], db: &str) -> Result<()> {
    if let Some(dir) = &args.save {
        for &phi in phis {
            crate::files::refuse_database("--save", &spec_path(dir, phi), db)?;
        }
    }
    if let Some(path) = &args.plot {
        crate::files::refuse_database("--plot", path, db)?;
    }
    Ok(())
}

/// Where --save writes the architecture at φ.
fn spec_path(dir: &Path, phi: f64) -> PathBuf {
    dir.join(format!("phi-{phi}.json"))
}

/// Writes each scaled architecture as `dir/phi-<φ>.json`.
fn save_specs(dir: &Path, rows: &[ScaledRow]) -> Result<()> {
    if dir.exists() && !dir.is_dir() {
        bail!("--save {}: is a file, not a directory", dir.display());
    }
    std::fs::create_dir_all(dir)
        .with_context(|| format!("--save {}: cannot create the directory", dir.display()))?;
    for row in rows {
        let text = serde_json::to_string_pretty(&row.arch)?;
        crate::files::write_atomically(&spec_path(dir, row.phi), |w| Ok(w.write_all(text.as_bytes())?))?;
    }
    Ok(())
}

/// Draws the multiply-adds plot into `path` (.svg or .png).
fn write_plot(path: &Path, rows: &[ScaledRow], base_name: &str, coefficients: Compound) -> Result<()> {
    let format = super::plot::format_of(path)?;
    let size = (900, 560);
    crate::files::replace_file(path, |temporary| match format {
        super::plot::Format::Svg => {
            draw(SVGBackend::new(temporary, size).into_drawing_area(), rows, base_name, coefficients)
        }
        super::plot::Format::Png => {
            draw(BitMapBackend::new(temporary, size).into_drawing_area(), rows, base_name, coefficients)
        }
    })?;
    eprintln!("wrote {}", path.display());
    Ok(())
}

/// The JSON form: one object per φ, with the official model at that φ (or null).
fn rows_json(rows: &[ScaledRow], coefficients: Compound) -> Vec<serde_json::Value> {
    rows.iter()
        .map(|row| {
            json!({
                "phi": row.phi,
                "depth": row.multipliers.depth,
                "width": row.multipliers.width,
                "resolution_multiplier": row.multipliers.resolution,
                "resolution": row.arch.resolution,
                "params": row.params,
                "flops": row.flops,
                "flops_ratio": row.flops_ratio,
                "constraint_ratio": coefficients.flops_factor().powf(row.phi),
                "two_to_phi": 2f64.powf(row.phi),
                "blocks": row.arch.block_strings(),
                "official": official_json(row.phi),
            })
        })
        .collect()
}

/// The official EfficientNet at φ, costed by our model next to the paper's figures.
fn official_json(phi: f64) -> Option<serde_json::Value> {
    official_row(phi).map(|(index, arch)| {
        let c = cost(&arch);
        let paper = &EFFICIENTNET[index];
        json!({
            "name": paper.name,
            "width": paper.width,
            "depth": paper.depth,
            "resolution": paper.resolution,
            "params": c.params,
            "flops": c.macs,
            "paper_params": paper.paper_params,
            "paper_flops": paper.paper_flops,
            "paper_top1": paper.paper_top1,
        })
    })
}

/// How to read the table, printed under it.
const READING_NOTE: &str = concat!(
    "Left: pure compound scaling (channels rounded to multiples of 8, layers rounded up, resolution to the\n",
    "nearest pixel). Right: the official EfficientNet coefficients, costed by the same model; \"paper\" is\n",
    "Table 2 (params/FLOPS). The official models were tuned by hand, so they are not exactly α^φ, β^φ, γ^φ.",
);

/// The text form: a heading, the table and a note on how to read it.
fn render(source: &Source, rows: &[ScaledRow]) -> String {
    let c = source.coefficients;
    let recorded = source.recorded_in.as_ref().map_or(String::new(), |(_, run)| {
        format!(", the winner of compound run {run}; recorded as scaled models of that run")
    });
    format!(
        "compound scaling of {} with α = {}, β = {}, γ = {} (α·β²·γ² = {:.3}){recorded}\n\n{}\n{}\n",
        source.base_name,
        c.alpha,
        c.beta,
        c.gamma,
        c.flops_factor(),
        scaling_table(rows).render(),
        READING_NOTE,
    )
}

/// Each φ's scaled network (left) next to the official model at that φ (right).
fn scaling_table(rows: &[ScaledRow]) -> Table {
    let mut table = Table::new([
        "φ",
        "depth",
        "width",
        "res",
        "params",
        "mult-adds",
        "× base",
        "2^φ",
        "official",
        "res",
        "params",
        "mult-adds",
        "paper",
    ]);
    for row in rows {
        let [name, res, params, flops, paper] = official_cells(row.phi);
        table.row([
            format!("{}", row.phi),
            format!("{:.3}", row.multipliers.depth),
            format!("{:.3}", row.multipliers.width),
            row.arch.resolution.to_string(),
            human_count(row.params),
            human_count(row.flops),
            format!("{:.2}", row.flops_ratio),
            power_of_two(row.phi),
            name,
            res,
            params,
            flops,
            paper,
        ]);
    }
    table
}

/// 2^φ as the table shows it: whole numbers as they are, others to three decimals without
/// trailing zeros (φ = −1 is 0.5, φ = 0.5 is 1.414, φ = −8 is 0.004).
fn power_of_two(phi: f64) -> String {
    let value = 2f64.powf(phi);
    if value.fract() == 0.0 {
        return format!("{value:.0}");
    }
    let text = format!("{value:.3}");
    text.trim_end_matches('0').trim_end_matches('.').to_owned()
}

/// The official columns at φ: name, resolution, params, multiply-adds and the paper's figures,
/// or dashes where φ has no official model.
fn official_cells(phi: f64) -> [String; 5] {
    match official_row(phi) {
        Some((index, arch)) => {
            let c = cost(&arch);
            let paper = &EFFICIENTNET[index];
            [
                format!("B{index}"),
                arch.resolution.to_string(),
                human_count(c.params),
                human_count(c.macs),
                format!("{}M/{}B", paper.paper_params / 1e6, paper.paper_flops / 1e9),
            ]
        }
        None => ["-".into(), "-".into(), "-".into(), "-".into(), "-".into()],
    }
}

/// The plot's three series in (φ, millions of multiply-adds), and the axis ranges around them.
struct PlotSeries {
    scaled: Vec<(f64, f64)>,
    official: Vec<(f64, f64)>,
    /// The base's multiply-adds × 2^φ, sampled finely across the φ range.
    target: Vec<(f64, f64)>,
    phi_range: (f64, f64),
    flops_range: (f64, f64),
}

fn plot_series(rows: &[ScaledRow]) -> PlotSeries {
    let base_flops = rows
        .iter()
        .find(|r| r.phi == 0.0)
        .map_or_else(|| rows[0].flops as f64 / rows[0].flops_ratio, |r| r.flops as f64)
        / 1e6;
    let official: Vec<(f64, f64)> = rows
        .iter()
        .filter_map(|r| official_row(r.phi).map(|(_, arch)| (r.phi, cost(&arch).macs as f64 / 1e6)))
        .collect();
    let scaled: Vec<(f64, f64)> = rows.iter().map(|r| (r.phi, r.flops as f64 / 1e6)).collect();
    let (low, high) =
        rows.iter().fold((f64::INFINITY, f64::NEG_INFINITY), |(l, h), r| (l.min(r.phi), h.max(r.phi)));
    let (low, high) = if high > low { (low, high) } else { (low - 0.5, high + 0.5) };
    let target: Vec<(f64, f64)> = (0..=100)
        .map(|i| low + (high - low) * f64::from(i) / 100.0)
        .map(|phi| (phi, base_flops * 2f64.powf(phi)))
        .collect();
    let all = scaled.iter().chain(&official).chain(&target).map(|p| p.1);
    let flops_range = all.fold((f64::INFINITY, f64::NEG_INFINITY), |(l, h), y| (l.min(y), h.max(y)));
    PlotSeries { scaled, official, target, phi_range: (low, high), flops_range }
}

/// Multiply-adds (log scale) against φ: the scaled family, the official models at integer φ,
/// and the base's multiply-adds × 2^φ that the constraint aims at.
fn draw<DB: DrawingBackend>(
    root: DrawingArea<DB, Shift>,
    rows: &[ScaledRow],
    base_name: &str,
    c: Compound,
) -> Result<()>
where
    DB::ErrorType: 'static,
{
    let to_err = |e: DrawingAreaErrorKind<DB::ErrorType>| anyhow::anyhow!("{e}");
    root.fill(&WHITE).map_err(to_err)?;
    let PlotSeries { scaled, official, target, phi_range: (low, high), flops_range: (y_low, y_high) } =
        plot_series(rows);
    let mut chart = ChartBuilder::on(&root)
        .caption(
            format!("{base_name} scaled by α = {}, β = {}, γ = {}", c.alpha, c.beta, c.gamma),
            ("sans-serif", 20),
        )
        .margin(15)
        .x_label_area_size(40)
        .y_label_area_size(70)
        .build_cartesian_2d(low..high, (y_low * 0.8..y_high * 1.25).log_scale())
        .map_err(to_err)?;
    chart
        .configure_mesh()
        .x_desc("φ")
        .y_desc("multiply-adds (millions, log scale)")
        .draw()
        .map_err(to_err)?;
    chart
        .draw_series(LineSeries::new(target, BLACK.mix(0.4).stroke_width(1)))
        .map_err(to_err)?
        .label("base × 2^φ")
        .legend(|(x, y)| PathElement::new(vec![(x, y), (x + 20, y)], BLACK.mix(0.4)));
    chart
        .draw_series(LineSeries::new(scaled.clone(), BLUE.stroke_width(2)))
        .map_err(to_err)?
        .label("compound scaling")
        .legend(|(x, y)| PathElement::new(vec![(x, y), (x + 20, y)], BLUE.stroke_width(2)));
    chart.draw_series(scaled.iter().map(|&p| Circle::new(p, 4, BLUE.filled()))).map_err(to_err)?;
    chart
        .draw_series(official.iter().map(|&p| TriangleMarker::new(p, 7, RED.filled())))
        .map_err(to_err)?
        .label("official B0–B7")
        .legend(|(x, y)| TriangleMarker::new((x + 10, y), 6, RED.filled()));
    chart
        .configure_series_labels()
        .background_style(WHITE.mix(0.9))
        .border_style(BLACK)
        .draw()
        .map_err(to_err)?;
    root.present().map_err(to_err)?;
    Ok(())
}

#[cfg(test)]
#[allow(clippy::unwrap_used)] // a failing unwrap is a failing test
mod tests {
    use super::*;

    #[test]
    fn phi_lists_and_ranges_parse() {
        assert_eq!(parse_phi_list("0..3").unwrap(), vec![0.0, 1.0, 2.0, 3.0]);
        assert_eq!(parse_phi_list("1, 2.5,4..5").unwrap(), vec![1.0, 2.5, 4.0, 5.0]);
        assert_eq!(parse_phi_list("-2..0").unwrap(), vec![-2.0, -1.0, 0.0]);
        for bad in ["", "a", "3..1", "1..x", "nan", "100", "-9..0", "0..65", "0.5..2"] {
            assert!(parse_phi_list(bad).is_err(), "{bad}");
        }
    }

    #[test]
    fn flops_grow_at_least_as_the_constraint_intends() {
        let base = presets::efficientnet_b0();
        let phis: Vec<f64> = (0..=7).map(f64::from).collect();
        let rows = scale_family(&base, Compound::EFFICIENTNET, &phis).unwrap();
        assert_eq!(rows[0].flops_ratio, 1.0);
        for pair in rows.windows(2) {
            assert!(pair[1].flops > pair[0].flops);
        }
        for row in &rows[1..] {
            // Layers round up (B0's one-layer stages become two at α = 1.2), so the realised
            // growth is above (α·β²·γ²)^φ; the excess is largest at φ = 1 (+34% for B0) and
            // shrinks as the multipliers grow.
            let intended = Compound::EFFICIENTNET.flops_factor().powf(row.phi);
            let excess = row.flops_ratio / intended;
            assert!((1.0..1.4).contains(&excess), "φ {}: {} vs {intended}", row.phi, row.flops_ratio);
        }
        let excess = |row: &ScaledRow| row.flops_ratio / Compound::EFFICIENTNET.flops_factor().powf(row.phi);
        assert!(excess(&rows[7]) < excess(&rows[1]));
    }
}
