//! `effnas scale`: compound scaling of a base network over φ (EfficientNet §3.3), next to the
//! official EfficientNet-B0…B7 table; scaling of one dimension only (`--only`, the
//! single-dimension studies of §3.2, Figure 3); and the multiplier (or φ) that lands closest to
//! a multiply-add target (`--flops`).

use crate::output::{out, outln};
use std::path::{Path, PathBuf};
use std::process::ExitCode;

use anyhow::{bail, Context, Result};
use effnas_space::error::Echo;
use effnas_space::presets::EFFICIENTNET;
use effnas_space::{cost, presets, scale, scale_to_flops, ArchSpec, Compound, Dimension, Multipliers};
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
    /// Scale one dimension only, the others staying 1: width β^φ, depth α^φ or resolution γ^φ
    /// over the --phi values (the single-dimension studies of EfficientNet §3.2). Without it,
    /// all three scale together (compound scaling). Not with --from-run, whose recorded scaled
    /// models are compound.
    #[arg(long, value_enum, conflicts_with = "from_run")]
    pub only: Option<Only>,
    /// Instead of the --phi list, the one multiplier of the --only dimension (or the one φ of
    /// compound scaling) whose network, after rounding channels, layers and pixels, lands
    /// closest to this many multiply-adds: a factor of the base's (2x, 0.5x) or a count (400M,
    /// 1.5G, 4e8). The multiplier reported is the one with the fewest decimals that gives that
    /// network's cost.
    #[arg(
        long,
        value_name = "TARGET",
        value_parser = flops_target,
        allow_hyphen_values = true,
        conflicts_with_all = ["phi", "plot"]
    )]
    pub flops: Option<FlopsTarget>,
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
    #[arg(long, env = "EFFNAS_DB", default_value = "effnas.db")]
    pub db: String,
    /// Print JSON instead of a table.
    #[arg(long)]
    pub json: bool,
}

/// The one dimension `--only` scales.
#[derive(Debug, Clone, Copy, PartialEq, Eq, clap::ValueEnum)]
pub enum Only {
    Width,
    Depth,
    Resolution,
}

impl Only {
    fn name(self) -> &'static str {
        match self {
            Only::Width => "width",
            Only::Depth => "depth",
            Only::Resolution => "resolution",
        }
    }

    /// The multipliers at φ: this dimension's coefficient to the φ, the others 1.
    fn multipliers(self, c: Compound, phi: f64) -> Multipliers {
        match self {
            Only::Width => Multipliers { width: c.beta.powf(phi), ..Multipliers::IDENTITY },
            Only::Depth => Multipliers { depth: c.alpha.powf(phi), ..Multipliers::IDENTITY },
            Only::Resolution => Multipliers { resolution: c.gamma.powf(phi), ..Multipliers::IDENTITY },
        }
    }

    /// How this dimension's multiplier is written, for headings: "β^φ".
    fn formula(self) -> &'static str {
        match self {
            Only::Width => "β^φ",
            Only::Depth => "α^φ",
            Only::Resolution => "γ^φ",
        }
    }
}

/// The multipliers at φ: compound, or one dimension with `--only`.
fn multipliers_at(c: Compound, only: Option<Only>, phi: f64) -> Multipliers {
    only.map_or_else(|| Multipliers::compound(c, phi), |only| only.multipliers(c, phi))
}

/// The growth of multiply-adds the multipliers at φ aim at: (α·β²·γ²)^φ, or the one
/// dimension's share (width and resolution count twice, as they do in the constraint).
fn intended_ratio(c: Compound, only: Option<Only>, phi: f64) -> f64 {
    match only {
        None => c.flops_factor().powf(phi),
        Some(Only::Width) => c.beta.powf(2.0 * phi),
        Some(Only::Depth) => c.alpha.powf(phi),
        Some(Only::Resolution) => c.gamma.powf(2.0 * phi),
    }
}

/// `--flops`: a factor of the base's multiply-adds or a count of them.
#[derive(Debug, Clone, Copy, PartialEq)]
pub enum FlopsTarget {
    Times(f64),
    Count(u64),
}

impl FlopsTarget {
    /// The target in multiply-adds for a base of `base_macs`.
    fn macs(self, base_macs: f64) -> f64 {
        match self {
            FlopsTarget::Times(factor) => factor * base_macs,
            FlopsTarget::Count(count) => count as f64,
        }
    }
}

impl std::fmt::Display for FlopsTarget {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        match self {
            FlopsTarget::Times(factor) => write!(f, "{factor}x"),
            FlopsTarget::Count(count) => write!(f, "{count}"),
        }
    }
}

/// Parses `2x`, `0.5X` (a factor above 0, at most 10^6) or a multiply-add count (`400M`).
pub fn flops_target(text: &str) -> std::result::Result<FlopsTarget, String> {
    let trimmed = text.trim();
    if let Some(factor) = trimmed.strip_suffix(['x', 'X']) {
        return match factor.trim().parse::<f64>() {
            Ok(value) if value.is_finite() && value > 0.0 && value <= 1e6 => Ok(FlopsTarget::Times(value)),
            Ok(_) => Err("a factor must be above 0 and at most 1e6 (e.g. 2x)".to_owned()),
            Err(_) => Err("not a factor like 2x or a count like 400M".to_owned()),
        };
    }
    crate::flags::multiply_adds(trimmed).map(FlopsTarget::Count)
}

/// The target of --flops as the output shows it.
#[derive(Debug, Clone, Copy)]
struct Target {
    macs: f64,
    /// The target over the base's multiply-adds.
    ratio: f64,
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
    /// φ; none for a --only row matched to --flops, which has a multiplier only.
    pub phi: Option<f64>,
    /// The one dimension scaled, or none for compound scaling.
    pub only: Option<Only>,
    pub multipliers: Multipliers,
    pub arch: ArchSpec,
    pub params: u64,
    pub flops: u64,
    pub flops_ratio: f64,
    /// Whether the base is EfficientNet-B0, whose official family the rows are shown beside.
    pub from_b0: bool,
}

impl ScaledRow {
    /// The official EfficientNet at this row's φ: compound rows of B0 at whole φ from 0 to 7
    /// (beside another base's family it would compare unrelated networks).
    fn official(&self) -> Option<(usize, ArchSpec)> {
        match self.only {
            Some(_) => None,
            None if self.from_b0 => self.phi.and_then(official_row),
            None => None,
        }
    }
}

/// Whether `base` is EfficientNet-B0 as the preset defines it.
fn is_b0(base: &ArchSpec) -> bool {
    presets::efficientnet(0).is_some_and(|b0| *base == b0)
}

/// Scales `base` for every φ (all dimensions, or the `only` one); a φ past the size limits is
/// an error that gives the usable range.
pub fn scale_family(
    base: &ArchSpec,
    coefficients: Compound,
    only: Option<Only>,
    phis: &[f64],
) -> Result<Vec<ScaledRow>> {
    let base_flops = cost(base).macs as f64;
    phis.iter()
        .map(|&phi| {
            let multipliers = multipliers_at(coefficients, only, phi);
            let arch = scale(base, multipliers).map_err(|error| {
                let limit = |bound| phi_limit(base, |phi| multipliers_at(coefficients, only, phi), bound);
                let (low, high) = (limit(-8.0), limit(64.0));
                anyhow::anyhow!(
                    "--phi {phi} is out of range: with α = {}, β = {}, γ = {} this base scales for φ from {low} to {high} ({error})",
                    coefficients.alpha,
                    coefficients.beta,
                    coefficients.gamma,
                )
            })?;
            let c = cost(&arch);
            Ok(ScaledRow {
                phi: Some(phi),
                only,
                multipliers,
                params: c.params,
                flops: c.macs,
                flops_ratio: c.macs as f64 / base_flops,
                from_b0: is_b0(base),
                arch,
            })
        })
        .collect()
}

/// The one network of `base` whose multiply-adds land closest to `target`: the --only
/// dimension's multiplier, or compound scaling's φ. An unreachable target names --flops.
fn match_target(
    base: &ArchSpec,
    coefficients: Compound,
    only: Option<Only>,
    flag: FlopsTarget,
    target: f64,
) -> Result<ScaledRow> {
    let dimension = match only {
        None => Dimension::Compound(coefficients),
        Some(Only::Width) => Dimension::Width,
        Some(Only::Depth) => Dimension::Depth,
        Some(Only::Resolution) => Dimension::Resolution,
    };
    let found = scale_to_flops(base, dimension, target)
        .map_err(|error| anyhow::anyhow!("--flops {flag}: {error}"))?;
    Ok(ScaledRow {
        phi: only.is_none().then_some(found.parameter),
        only,
        multipliers: found.multipliers,
        params: found.cost.params,
        flops: found.cost.macs,
        flops_ratio: found.cost.macs as f64 / cost(base).macs as f64,
        from_b0: is_b0(base),
        arch: found.arch,
    })
}

/// The φ nearest `bound` (in hundredths, towards 0) at which `base` still scales: φ = 0 always
/// does, and with every coefficient at least 1 the network only grows with φ, so bisection finds
/// the edge.
fn phi_limit(base: &ArchSpec, multipliers: impl Fn(f64) -> Multipliers, bound: f64) -> f64 {
    let scales = |hundredths: i64| scale(base, multipliers(hundredths as f64 / 100.0)).is_ok();
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
    // With --flops the one φ is found, not listed.
    let phis = if args.flops.is_some() { Vec::new() } else { parse_phi_list(&args.phi)? };
    // The database is only read (and written) with --from-run.
    let db = args.from_run.as_ref().map(|_| args.db.as_str());
    if let Some(db) = db {
        refuse_to_overwrite(&args, phis.iter().map(|&phi| phi_path_name(phi)), db)?;
    }
    let source = resolve_source(&args)?;
    let (rows, target) = match args.flops {
        Some(flag) => {
            let base_macs = cost(&source.base).macs as f64;
            let macs = flag.macs(base_macs);
            let row = match_target(&source.base, source.coefficients, args.only, flag, macs)?;
            if let Some(db) = db {
                refuse_to_overwrite(&args, std::iter::once(row.file_name()), db)?;
            }
            (vec![row], Some(Target { macs, ratio: macs / base_macs }))
        }
        None => (scale_family(&source.base, source.coefficients, args.only, &phis)?, None),
    };
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
        outln!("{}", serde_json::to_string_pretty(&rows_json(&rows, source.coefficients, target))?)?;
    } else {
        out!("{}", render(&source, &rows, args.only, target))?;
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
        // --only (whose rows may have no φ) conflicts with --from-run.
        let Some(phi) = row.phi else { bail!("a network without φ cannot be recorded as a scaled model") };
        let model = NewScaledModel {
            name: format!("{base_name}-phi{phi}"),
            phi,
            width: row.multipliers.width,
            depth: row.multipliers.depth,
            resolution_multiplier: row.multipliers.resolution,
            arch: row.arch.clone(),
        };
        store.block_on(store.store().add_scaled_model(run, &model)).context("recording the scaled models")?;
    }
    Ok(())
}

/// Refuses, before any file is written, a --save file (one of `names` in the directory) or
/// --plot image that is the database `db`.
fn refuse_to_overwrite(args: &Args, names: impl Iterator<Item = String>, db: &str) -> Result<()> {
    if let Some(dir) = &args.save {
        for name in names {
            crate::files::refuse_database("--save", &dir.join(name), db)?;
        }
    }
    if let Some(path) = &args.plot {
        crate::files::refuse_database("--plot", path, db)?;
    }
    Ok(())
}

/// The file --save writes the architecture at φ to.
fn phi_path_name(phi: f64) -> String {
    format!("phi-{phi}.json")
}

impl ScaledRow {
    /// The file --save writes this row to: `phi-<φ>.json`, or `<dimension>-<multiplier>.json`
    /// for a --only row matched to --flops.
    fn file_name(&self) -> String {
        match self.phi {
            Some(phi) => phi_path_name(phi),
            None => format!("{}-{}.json", self.only.map_or("width", Only::name), self.multiplier()),
        }
    }

    /// The multiplier of the --only dimension (the width one for compound rows).
    fn multiplier(&self) -> f64 {
        match self.only {
            Some(Only::Depth) => self.multipliers.depth,
            Some(Only::Resolution) => self.multipliers.resolution,
            Some(Only::Width) | None => self.multipliers.width,
        }
    }
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
        crate::files::write_atomically(&dir.join(row.file_name()), |w| Ok(w.write_all(text.as_bytes())?))?;
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

/// The JSON form: one object per φ, with the official model at that φ (or null); with
/// --flops, the one network found, its target and the target over the base's multiply-adds.
fn rows_json(rows: &[ScaledRow], coefficients: Compound, target: Option<Target>) -> Vec<serde_json::Value> {
    rows.iter()
        .map(|row| {
            let mut value = json!({
                "phi": row.phi,
                "only": row.only.map(Only::name),
                "depth": row.multipliers.depth,
                "width": row.multipliers.width,
                "resolution_multiplier": row.multipliers.resolution,
                "resolution": row.arch.resolution,
                "params": row.params,
                "flops": row.flops,
                "flops_ratio": row.flops_ratio,
                "constraint_ratio": row.phi.map(|phi| intended_ratio(coefficients, row.only, phi)),
                "two_to_phi": row.phi.map(|phi| 2f64.powf(phi)),
                "blocks": row.arch.block_strings(),
                "official": official_json(row.official()),
            });
            if let (Some(target), Some(object)) = (target, value.as_object_mut()) {
                object.insert("target_flops".into(), json!(target.macs.round() as u64));
                object.insert("target_ratio".into(), json!(target.ratio));
            }
            value
        })
        .collect()
}

/// The official EfficientNet at φ, costed by our model next to the paper's figures.
fn official_json(official: Option<(usize, ArchSpec)>) -> Option<serde_json::Value> {
    official.map(|(index, arch)| {
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

/// How to read the table of one dimension or of a --flops match.
const ROUNDING_NOTE: &str =
    "Channels rounded to multiples of 8, layers rounded up, resolution to the nearest pixel.";

/// The text form: a heading, the table and a note on how to read it.
fn render(source: &Source, rows: &[ScaledRow], only: Option<Only>, target: Option<Target>) -> String {
    let c = source.coefficients;
    let recorded = source.recorded_in.as_ref().map_or(String::new(), |(_, run)| {
        format!(", the winner of compound run {run}; recorded as scaled models of that run")
    });
    if let Some(target) = target {
        let how = match only {
            Some(only) => format!("{} only", only.name()),
            None => format!("compound scaling with α = {}, β = {}, γ = {}", c.alpha, c.beta, c.gamma),
        };
        return format!(
            "{} scaled by {how} to {} multiply-adds ({:.3}× the base){recorded}: the closest after rounding\n\n{}\n{ROUNDING_NOTE}\n",
            source.base_name,
            human_count(target.macs.round() as u64),
            target.ratio,
            target_table(rows, target).render(),
        );
    }
    if let Some(only) = only {
        let coefficient = match only {
            Only::Width => format!("β = {}", c.beta),
            Only::Depth => format!("α = {}", c.alpha),
            Only::Resolution => format!("γ = {}", c.gamma),
        };
        return format!(
            "{} scaled by {} only: {} with {coefficient}, the other dimensions 1\n\n{}\n{ROUNDING_NOTE}\n",
            source.base_name,
            only.name(),
            only.formula(),
            single_table(rows, c, only).render(),
        );
    }
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

/// The multipliers, resolution, parameters and multiply-adds of a row, as the tables show them.
fn network_cells(row: &ScaledRow) -> [String; 5] {
    [
        format!("{:.3}", row.multipliers.depth),
        format!("{:.3}", row.multipliers.width),
        row.arch.resolution.to_string(),
        human_count(row.params),
        human_count(row.flops),
    ]
}

/// One dimension over φ: the growth of multiply-adds next to the one its multiplier aims at.
fn single_table(rows: &[ScaledRow], c: Compound, only: Only) -> Table {
    let intended = match only {
        Only::Width => "β^2φ",
        Only::Depth => "α^φ",
        Only::Resolution => "γ^2φ",
    };
    let mut table = Table::new(["φ", "depth", "width", "res", "params", "mult-adds", "× base", intended]);
    for row in rows {
        let phi = row.phi.unwrap_or(0.0);
        let mut cells = vec![format!("{phi}")];
        cells.extend(network_cells(row));
        cells.push(format!("{:.2}", row.flops_ratio));
        cells.push(format!("{:.2}", intended_ratio(c, row.only, phi)));
        table.row(cells);
    }
    table
}

/// The network matched to --flops: the achieved ratio next to the target's.
fn target_table(rows: &[ScaledRow], target: Target) -> Table {
    let mut table = Table::new([
        "φ",
        "depth",
        "width",
        "res",
        "params",
        "mult-adds",
        "× base",
        "target",
        "target × base",
    ]);
    for row in rows {
        let mut cells = vec![row.phi.map_or_else(|| "-".to_owned(), |phi| format!("{phi}"))];
        cells.extend(network_cells(row));
        cells.push(format!("{:.3}", row.flops_ratio));
        cells.push(human_count(target.macs.round() as u64));
        cells.push(format!("{:.3}", target.ratio));
        table.row(cells);
    }
    table
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
        let phi = row.phi.unwrap_or(0.0);
        let [name, res, params, flops, paper] = official_cells(row.official());
        table.row([
            format!("{phi}"),
            format!("{:.3}", row.multipliers.depth),
            format!("{:.3}", row.multipliers.width),
            row.arch.resolution.to_string(),
            human_count(row.params),
            human_count(row.flops),
            format!("{:.2}", row.flops_ratio),
            power_of_two(phi),
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
fn official_cells(official: Option<(usize, ArchSpec)>) -> [String; 5] {
    match official {
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

/// φ of a plotted row: every row has one, since clap refuses --plot with --flops.
fn plotted_phi(row: &ScaledRow) -> f64 {
    row.phi.unwrap_or(0.0)
}

fn plot_series(rows: &[ScaledRow]) -> PlotSeries {
    let base_flops = rows
        .iter()
        .find(|r| plotted_phi(r) == 0.0)
        .map_or_else(|| rows[0].flops as f64 / rows[0].flops_ratio, |r| r.flops as f64)
        / 1e6;
    let official: Vec<(f64, f64)> = rows
        .iter()
        .filter_map(|r| r.official().map(|(_, arch)| (plotted_phi(r), cost(&arch).macs as f64 / 1e6)))
        .collect();
    let scaled: Vec<(f64, f64)> = rows.iter().map(|r| (plotted_phi(r), r.flops as f64 / 1e6)).collect();
    let (low, high) = rows
        .iter()
        .fold((f64::INFINITY, f64::NEG_INFINITY), |(l, h), r| (l.min(plotted_phi(r)), h.max(plotted_phi(r))));
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
        .label(
            rows.first()
                .and_then(|r| r.only)
                .map_or("compound scaling".to_owned(), |only| format!("{} only", only.name())),
        )
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
    fn flops_targets_parse_as_factors_or_counts() {
        assert_eq!(flops_target("2x"), Ok(FlopsTarget::Times(2.0)));
        assert_eq!(flops_target(" 0.5X"), Ok(FlopsTarget::Times(0.5)));
        assert_eq!(flops_target("400M"), Ok(FlopsTarget::Count(400_000_000)));
        for bad in ["0", "-2x", "0x", "x", "nanx", "infx", "1e30", "2y", ""] {
            assert!(flops_target(bad).is_err(), "{bad}");
        }
    }

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
        let rows = scale_family(&base, Compound::EFFICIENTNET, None, &phis).unwrap();
        assert_eq!(rows[0].flops_ratio, 1.0);
        for pair in rows.windows(2) {
            assert!(pair[1].flops > pair[0].flops);
        }
        for row in &rows[1..] {
            // Layers round up (B0's one-layer stages become two at α = 1.2), so the realised
            // growth is above (α·β²·γ²)^φ; the excess is largest at φ = 1 (+34% for B0) and
            // shrinks as the multipliers grow.
            let intended = Compound::EFFICIENTNET.flops_factor().powf(row.phi.unwrap());
            let excess = row.flops_ratio / intended;
            assert!((1.0..1.4).contains(&excess), "φ {:?}: {} vs {intended}", row.phi, row.flops_ratio);
        }
        let excess =
            |row: &ScaledRow| row.flops_ratio / Compound::EFFICIENTNET.flops_factor().powf(row.phi.unwrap());
        assert!(excess(&rows[7]) < excess(&rows[1]));
    }
}
