//! `effnas scale`: compound scaling of a base network over φ (EfficientNet §3.3), next to the
//! official EfficientNet-B0…B7 table.

use std::path::PathBuf;
use std::process::ExitCode;

use anyhow::{bail, Context, Result};
use effnas_space::presets::EFFICIENTNET;
use effnas_space::{cost, presets, scale, ArchSpec, Compound, Multipliers};
use effnas_store::{BlockingStore, NewScaledModel};
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
    /// The φ values: a comma-separated list (1,2,3 or 0.5,1.5) and/or inclusive integer ranges (0..7).
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

/// Parses `0..7`, `1,2,3`, `0.5,1` or a mix into a list of φ values.
pub fn parse_phi_list(text: &str) -> Result<Vec<f64>> {
    let mut values = Vec::new();
    for item in text.split(',').map(str::trim).filter(|s| !s.is_empty()) {
        if let Some((from, to)) = item.split_once("..") {
            let from: u32 =
                from.trim().parse().with_context(|| format!("--phi: {item:?} is not a range like 0..7"))?;
            let to: u32 =
                to.trim().parse().with_context(|| format!("--phi: {item:?} is not a range like 0..7"))?;
            if from > to || to > 64 {
                bail!("--phi: range {item:?} must go upwards and stay at most 64");
            }
            values.extend((from..=to).map(f64::from));
        } else {
            let value: f64 = item.parse().with_context(|| format!("--phi: {item:?} is not a number"))?;
            if !(value.is_finite() && (-8.0..=64.0).contains(&value)) {
                bail!("--phi: {item:?} is out of range (-8 to 64)");
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

/// Scales `base` for every φ.
pub fn scale_family(base: &ArchSpec, coefficients: Compound, phis: &[f64]) -> Result<Vec<ScaledRow>> {
    let base_flops = cost(base).macs as f64;
    phis.iter()
        .map(|&phi| {
            let multipliers = Multipliers::compound(coefficients, phi);
            let arch = scale(base, multipliers).with_context(|| format!("scaling at φ = {phi}"))?;
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

fn official_row(phi: f64) -> Option<(usize, ArchSpec)> {
    if phi.fract() != 0.0 || phi < 0.0 {
        return None;
    }
    let index = phi as usize;
    presets::efficientnet(index).map(|arch| (index, arch))
}

pub fn run(args: Args) -> Result<ExitCode> {
    for (name, value) in [("--alpha", args.alpha), ("--beta", args.beta), ("--gamma", args.gamma)] {
        if !(value.is_finite() && value >= 1.0 && value <= 4.0) {
            bail!("{name} {value} is out of range (1 to 4: compound scaling never shrinks a dimension)");
        }
    }
    let phis = parse_phi_list(&args.phi)?;
    let (coefficients, base, base_name, source) = match &args.from_run {
        Some(selector) => {
            let store =
                BlockingStore::open(&args.db).with_context(|| format!("opening the database {}", args.db))?;
            let (coefficients, base, base_name, run) = super::compound::winner(&store, selector)?;
            (coefficients, base, base_name, Some((store, run)))
        }
        None => (
            Compound { alpha: args.alpha, beta: args.beta, gamma: args.gamma },
            super::arch::resolve(&args.base, None, None, None)?,
            args.base.clone(),
            None,
        ),
    };
    let rows = scale_family(&base, coefficients, &phis)?;
    if let Some((store, run)) = &source {
        for row in &rows {
            let model = NewScaledModel {
                name: format!("{base_name}-phi{}", row.phi),
                phi: row.phi,
                width: row.multipliers.width,
                depth: row.multipliers.depth,
                resolution_multiplier: row.multipliers.resolution,
                arch: row.arch.clone(),
            };
            store
                .block_on(store.store().add_scaled_model(*run, &model))
                .context("recording the scaled models")?;
        }
    }

    if let Some(dir) = &args.save {
        std::fs::create_dir_all(dir).with_context(|| format!("creating {}", dir.display()))?;
        for row in &rows {
            let path = dir.join(format!("phi-{}.json", row.phi));
            std::fs::write(&path, serde_json::to_string_pretty(&row.arch)?)
                .with_context(|| format!("writing {}", path.display()))?;
        }
    }

    if let Some(path) = &args.plot {
        let format = super::plot::format_of(path)?;
        let size = (900, 560);
        let drawn = match format {
            super::plot::Format::Svg => {
                draw(SVGBackend::new(path, size).into_drawing_area(), &rows, &base_name, coefficients)
            }
            super::plot::Format::Png => {
                draw(BitMapBackend::new(path, size).into_drawing_area(), &rows, &base_name, coefficients)
            }
        };
        drawn.with_context(|| format!("drawing {}", path.display()))?;
        eprintln!("wrote {}", path.display());
    }

    if args.json {
        let list: Vec<_> = rows
            .iter()
            .map(|row| {
                let official = official_row(row.phi).map(|(index, arch)| {
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
                });
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
                    "official": official,
                })
            })
            .collect();
        println!("{}", serde_json::to_string_pretty(&list)?);
        return Ok(ExitCode::SUCCESS);
    }

    println!(
        "compound scaling of {} with α = {}, β = {}, γ = {} (α·β²·γ² = {:.3}){}\n",
        base_name,
        coefficients.alpha,
        coefficients.beta,
        coefficients.gamma,
        coefficients.flops_factor(),
        source.as_ref().map_or(String::new(), |(_, run)| format!(
            ", the winner of compound run {run}; recorded as scaled models of that run"
        )),
    );
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
    for row in &rows {
        let official = official_row(row.phi);
        let (name, res, params, flops, paper) = match &official {
            Some((index, arch)) => {
                let c = cost(arch);
                let paper = &EFFICIENTNET[*index];
                (
                    format!("B{index}"),
                    arch.resolution.to_string(),
                    human_count(c.params),
                    human_count(c.macs),
                    format!("{}M/{}B", paper.paper_params / 1e6, paper.paper_flops / 1e9),
                )
            }
            None => ("-".into(), "-".into(), "-".into(), "-".into(), "-".into()),
        };
        table.row([
            format!("{}", row.phi),
            format!("{:.3}", row.multipliers.depth),
            format!("{:.3}", row.multipliers.width),
            row.arch.resolution.to_string(),
            human_count(row.params),
            human_count(row.flops),
            format!("{:.2}", row.flops_ratio),
            format!("{:.0}", 2f64.powf(row.phi)),
            name,
            res,
            params,
            flops,
            paper,
        ]);
    }
    print!("{}", table.render());
    println!(
        "\nLeft: pure compound scaling (channels rounded to multiples of 8, layers rounded up, resolution to the\n\
         nearest pixel). Right: the official EfficientNet coefficients, costed by the same model; \"paper\" is\n\
         Table 2 (params/FLOPS). The official models were tuned by hand, so they are not exactly α^φ, β^φ, γ^φ."
    );
    Ok(ExitCode::SUCCESS)
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
    let to_err = |e: DrawingAreaErrorKind<DB::ErrorType>| anyhow::anyhow!("{e:?}");
    root.fill(&WHITE).map_err(to_err)?;
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
    let (y_low, y_high) = all.fold((f64::INFINITY, f64::NEG_INFINITY), |(l, h), y| (l.min(y), h.max(y)));
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
mod tests {
    use super::*;

    #[test]
    fn phi_lists_and_ranges_parse() {
        assert_eq!(parse_phi_list("0..3").unwrap(), vec![0.0, 1.0, 2.0, 3.0]);
        assert_eq!(parse_phi_list("1, 2.5,4..5").unwrap(), vec![1.0, 2.5, 4.0, 5.0]);
        for bad in ["", "a", "3..1", "1..x", "nan", "100"] {
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
