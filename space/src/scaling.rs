//! Compound scaling (EfficientNet §3.3): depth `d = α^φ`, width `w = β^φ`, resolution
//! `r = γ^φ` with `α·β²·γ² ≈ 2`, and the rounding every reference builder (TF, torchvision,
//! timm) applies to channels and repeats; and [`scale_to_flops`], which finds the multiplier of
//! one dimension (or the φ of compound scaling) that lands closest to a multiply-add target,
//! for the single-dimension studies of §3.2 (Figure 3).

use serde::{Deserialize, Serialize};

use crate::arch::{ArchSpec, Op, MAX_CHANNELS, MAX_REPEATS, MAX_RESOLUTION};
use crate::cost::{cost, Cost};
use crate::error::{Result, SpaceError};

/// Rounds `channels × width` to a multiple of 8, never below 8 and never more than 10% under
/// the exact product (`_make_divisible` / `round_filters` in the reference builders).
pub fn round_channels(channels: u32, width: f64) -> u32 {
    let scaled = f64::from(channels) * width;
    let mut rounded = (((scaled + 4.0) as u64) / 8 * 8).max(8);
    if (rounded as f64) < 0.9 * scaled {
        rounded += 8;
    }
    rounded.min(u64::from(u32::MAX)) as u32
}

/// `ceil(depth × repeats)` (`round_repeats` in the reference builders).
pub fn round_repeats(repeats: u32, depth: f64) -> u32 {
    (depth * f64::from(repeats)).ceil().min(f64::from(u32::MAX)) as u32
}

/// Multipliers applied to a base network. `resolution` multiplies the base resolution; the
/// result is rounded to the nearest pixel.
#[derive(Debug, Clone, Copy, PartialEq, Serialize, Deserialize)]
pub struct Multipliers {
    pub width: f64,
    pub depth: f64,
    pub resolution: f64,
}

impl Multipliers {
    pub const IDENTITY: Multipliers = Multipliers { width: 1.0, depth: 1.0, resolution: 1.0 };

    /// Compound multipliers: depth α^φ, width β^φ, resolution γ^φ.
    pub fn compound(coefficients: Compound, phi: f64) -> Self {
        Multipliers {
            depth: coefficients.alpha.powf(phi),
            width: coefficients.beta.powf(phi),
            resolution: coefficients.gamma.powf(phi),
        }
    }
}

/// The compound coefficients α (depth), β (width), γ (resolution).
#[derive(Debug, Clone, Copy, PartialEq, Serialize, Deserialize)]
pub struct Compound {
    pub alpha: f64,
    pub beta: f64,
    pub gamma: f64,
}

impl Compound {
    /// The coefficients the EfficientNet grid search found around B0 (§4).
    pub const EFFICIENTNET: Compound = Compound { alpha: 1.2, beta: 1.1, gamma: 1.15 };

    /// α·β²·γ²: the FLOPS factor per unit of φ the constraint sets near 2.
    pub fn flops_factor(self) -> f64 {
        self.alpha * self.beta * self.beta * self.gamma * self.gamma
    }
}

/// Scales a base network: every channel count (stem, blocks, head) by `width` with
/// `round_channels`, every block's repeats by `depth` with `round_repeats`, the resolution by
/// `resolution` rounded to the nearest pixel. Dropout and the rest are kept.
///
/// The same rules scale ResNet and MobileNetV1 (EfficientNet §3.3 and Table 3 scale them as
/// B0): depth multiplies the layers of every stage, width every channel count. A bottleneck
/// block's bottleneck width is what is rounded, and its output is that times the block's
/// expansion, so a scaled ResNet-50 keeps the 4:1 ratio exactly (rounding the output alone
/// would give widths that are not a quarter of it). Each block's input is the previous block's
/// output, so the chain stays consistent.
pub fn scale(base: &ArchSpec, multipliers: Multipliers) -> Result<ArchSpec> {
    for (field, value) in
        [("width", multipliers.width), ("depth", multipliers.depth), ("resolution", multipliers.resolution)]
    {
        if !(value.is_finite() && value > 0.0 && value <= 64.0) {
            return Err(SpaceError::invalid(
                field,
                format!("multiplier {value:.3} is out of range (above 0, at most 64)"),
            ));
        }
    }
    let width = |c: u32| round_channels(c, multipliers.width);
    let mut arch = base.clone();
    arch.stem_channels = width(base.stem_channels);
    arch.head_channels = base.head_channels.map(width);
    let mut channels = arch.stem_channels;
    for block in &mut arch.blocks {
        block.in_channels = channels;
        block.out_channels = match block.op {
            Op::Bottleneck if block.expansion > 0 => {
                width(block.out_channels / block.expansion).saturating_mul(block.expansion)
            }
            _ => width(block.out_channels),
        };
        // A projection stands for a skipped layer that changes shape: one, at any depth.
        if block.op != Op::Projection {
            block.repeats = round_repeats(block.repeats, multipliers.depth);
        }
        channels = block.out_channels;
    }
    arch.resolution = (f64::from(base.resolution) * multipliers.resolution).round().max(1.0) as u32;
    if arch.resolution > MAX_RESOLUTION
        || arch.blocks.iter().any(|b| b.repeats > MAX_REPEATS || b.out_channels > MAX_CHANNELS)
    {
        return Err(SpaceError::invalid(
            "multipliers",
            format!(
                "width {:.3}, depth {:.3}, resolution {:.3} scale the network past the limits ({MAX_CHANNELS} channels, {MAX_REPEATS} repeats, {MAX_RESOLUTION} px)",
                multipliers.width, multipliers.depth, multipliers.resolution
            ),
        ));
    }
    arch.validate()?;
    Ok(arch)
}

/// The grid of compound coefficients to try (EfficientNet §3.3, step 2): α, β, γ ≥ 1 on a
/// regular grid, kept where `|α·β²·γ² − 2| ≤ tolerance`.
#[derive(Debug, Clone, Copy, PartialEq, Serialize, Deserialize)]
pub struct GridSpec {
    pub alpha: (f64, f64),
    pub beta: (f64, f64),
    pub gamma: (f64, f64),
    pub step: f64,
    pub tolerance: f64,
}

impl Default for GridSpec {
    /// α in [1, 2], β and γ in [1, 1.5], step 0.05, tolerance 0.1.
    fn default() -> Self {
        GridSpec { alpha: (1.0, 2.0), beta: (1.0, 1.5), gamma: (1.0, 1.5), step: 0.05, tolerance: 0.1 }
    }
}

/// The grid values of one axis, computed from integer steps so that 1 + 3 × 0.1 is 1.3 and
/// not 1.3000000000000003.
fn axis(name: &str, (low, high): (f64, f64), step: f64) -> Result<Vec<f64>> {
    if !(low.is_finite() && high.is_finite() && low >= 1.0 && high >= low && high <= 4.0) {
        return Err(SpaceError::invalid(
            format!("{name} range"),
            format!(
                "{low}:{high} must satisfy 1 ≤ low ≤ high ≤ 4 (compound scaling never shrinks a dimension)"
            ),
        ));
    }
    let steps = ((high - low) / step + 1e-9).floor() as u64;
    if steps > 10_000 {
        return Err(SpaceError::invalid("step", format!("{step} makes {steps} values on the {name} axis")));
    }
    Ok((0..=steps).map(|i| ((low + i as f64 * step) * 1e9).round() / 1e9).collect())
}

/// Every grid point that satisfies the constraint, α fastest-growing last (sorted by α, β, γ).
/// An empty grid is an error that says why.
pub fn compound_grid(spec: &GridSpec) -> Result<Vec<Compound>> {
    if !(spec.step.is_finite() && spec.step > 0.0) {
        return Err(SpaceError::invalid("step", format!("{} must be a positive number", spec.step)));
    }
    if !(spec.tolerance.is_finite() && spec.tolerance >= 0.0) {
        return Err(SpaceError::invalid(
            "tolerance",
            format!("{} must be a non-negative number", spec.tolerance),
        ));
    }
    let (alphas, betas, gammas) = (
        axis("alpha", spec.alpha, spec.step)?,
        axis("beta", spec.beta, spec.step)?,
        axis("gamma", spec.gamma, spec.step)?,
    );
    let mut points = Vec::new();
    let (mut lowest, mut highest) = (f64::INFINITY, f64::NEG_INFINITY);
    for &alpha in &alphas {
        for &beta in &betas {
            for &gamma in &gammas {
                let point = Compound { alpha, beta, gamma };
                let factor = point.flops_factor();
                lowest = lowest.min(factor);
                highest = highest.max(factor);
                // A hair of slack so that points exactly on the boundary are kept despite rounding.
                if (factor - 2.0).abs() <= spec.tolerance + 1e-9 {
                    points.push(point);
                }
            }
        }
    }
    if points.is_empty() {
        return Err(SpaceError::invalid(
            "grid",
            format!(
                "no point has |α·β²·γ² − 2| ≤ {}: over these ranges α·β²·γ² runs from {lowest:.3} to {highest:.3}",
                spec.tolerance
            ),
        ));
    }
    Ok(points)
}

/// What a FLOPS target scales: one dimension by its multiplier (the others stay 1), or all
/// three by compound coefficients raised to φ.
#[derive(Debug, Clone, Copy, PartialEq, Serialize, Deserialize)]
#[serde(rename_all = "snake_case")]
pub enum Dimension {
    Width,
    Depth,
    Resolution,
    /// depth α^φ, width β^φ, resolution γ^φ (every coefficient at least 1, one above).
    Compound(Compound),
}

impl Dimension {
    /// The multipliers at `parameter`: the multiplier itself for one dimension, φ for compound.
    pub fn multipliers(self, parameter: f64) -> Multipliers {
        match self {
            Dimension::Width => Multipliers { width: parameter, ..Multipliers::IDENTITY },
            Dimension::Depth => Multipliers { depth: parameter, ..Multipliers::IDENTITY },
            Dimension::Resolution => Multipliers { resolution: parameter, ..Multipliers::IDENTITY },
            Dimension::Compound(c) => Multipliers::compound(c, parameter),
        }
    }

    /// The parameter of the base network itself: multiplier 1, or φ = 0.
    fn identity(self) -> f64 {
        match self {
            Dimension::Compound(_) => 0.0,
            _ => 1.0,
        }
    }

    /// The search coordinate `u` of a parameter: ln(multiplier), or φ itself.
    fn to_parameter(self, u: f64) -> f64 {
        match self {
            Dimension::Compound(_) => u,
            _ => u.exp(),
        }
    }

    /// The range of `u` searched: multipliers from 1/64 to 64 (the range [`scale`] accepts on the
    /// top side), or the φ over which every compound multiplier stays within it.
    fn bounds(self) -> (f64, f64) {
        let ln64 = 64f64.ln();
        match self {
            Dimension::Compound(c) => {
                let largest = c.alpha.max(c.beta).max(c.gamma).ln();
                (-ln64 / largest, ln64 / largest)
            }
            _ => (-ln64, ln64),
        }
    }
}

impl std::fmt::Display for Dimension {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        match self {
            Dimension::Width => f.write_str("width"),
            Dimension::Depth => f.write_str("depth"),
            Dimension::Resolution => f.write_str("resolution"),
            Dimension::Compound(c) => {
                write!(f, "compound scaling (α = {}, β = {}, γ = {})", c.alpha, c.beta, c.gamma)
            }
        }
    }
}

/// Why no scaled network can be matched to a multiply-add target.
#[derive(Debug, thiserror::Error)]
pub enum FlopsTargetError {
    #[error("target {target} multiply-adds must be a finite number of at least 1")]
    InvalidTarget { target: f64 },
    #[error("compound coefficients α = {alpha}, β = {beta}, γ = {gamma} must be finite, at least 1, one of them above 1")]
    InvalidCoefficients { alpha: f64, beta: f64, gamma: f64 },
    #[error(
        "target {target:.4e} multiply-adds is below the smallest this base reaches by {dimension}: \
         {smallest} at {parameter_name} {parameter:.4}",
        parameter_name = parameter_name(*dimension)
    )]
    BelowSmallest { target: f64, dimension: Dimension, smallest: u64, parameter: f64 },
    #[error(
        "target {target:.4e} multiply-adds is above the largest this base reaches by {dimension} within \
         the limits ({MAX_CHANNELS} channels, {MAX_REPEATS} repeats, {MAX_RESOLUTION} px, multipliers up to 64, \
         10^18 multiply-adds): {largest} at {parameter_name} {parameter:.4}",
        parameter_name = parameter_name(*dimension)
    )]
    AboveLargest { target: f64, dimension: Dimension, largest: u64, parameter: f64 },
    /// The base network itself does not scale (it is invalid).
    #[error(transparent)]
    Base(#[from] SpaceError),
}

fn parameter_name(dimension: Dimension) -> &'static str {
    match dimension {
        Dimension::Compound(_) => "φ",
        _ => "multiplier",
    }
}

/// The scaled network whose multiply-adds land closest to a target.
#[derive(Debug, Clone, PartialEq)]
pub struct FlopsMatch {
    /// The multiplier of the dimension, or φ for compound scaling.
    pub parameter: f64,
    pub multipliers: Multipliers,
    pub arch: ArchSpec,
    /// Its cost; `cost.macs` is the multiply-add count compared with the target.
    pub cost: Cost,
}

/// Bisection steps: each halves a bracket of `u` at most ~16 wide, so 64 steps reach the
/// spacing of neighbouring `f64`s.
const BISECTION_STEPS: u32 = 64;

/// Finds the multiplier of `dimension` (or φ for compound scaling) whose *rounded* scaled
/// network has multiply-adds closest to `target` (ties go to the smaller network).
///
/// How: with every multiplier non-decreasing in the parameter, channels (`round_channels`),
/// repeats (`round_repeats`), resolution and hence the cost are non-decreasing too, but
/// stepwise. The search works on `u` = ln(multiplier) (φ for compound) over multipliers from
/// 1/64 to 64. (1) Bisection from the base (always valid) finds the edges where [`scale`]
/// stops accepting the network (size limits, the 10^18 cost limit); the costs there are the
/// smallest and largest reachable, and a target outside them is an error. (2) Bisection
/// brackets the rounding step that crosses the target: the last `u` whose network costs less
/// than the target and the first that costs at least as much, 2^-64 of the bracket apart.
/// (3) These two neighbouring rounding steps are the only candidates (every network below the
/// first costs less, every one above the second costs more); the closer one wins. (4) Its
/// cost is produced by a whole interval of parameters: bisection finds its ends, and the
/// reported parameter is 1 (φ = 0) when the base lies in it, else the value with the fewest
/// decimals in it, nearest its middle, so that printing it and scaling again gives the same
/// cost. The returned network is the one that parameter scales to.
pub fn scale_to_flops(
    base: &ArchSpec,
    dimension: Dimension,
    target: f64,
) -> std::result::Result<FlopsMatch, FlopsTargetError> {
    if !(target.is_finite() && target >= 1.0) {
        return Err(FlopsTargetError::InvalidTarget { target });
    }
    if let Dimension::Compound(c) = dimension {
        let ok = |x: f64| x.is_finite() && x >= 1.0;
        if !(ok(c.alpha) && ok(c.beta) && ok(c.gamma) && c.alpha.max(c.beta).max(c.gamma) > 1.0) {
            return Err(FlopsTargetError::InvalidCoefficients {
                alpha: c.alpha,
                beta: c.beta,
                gamma: c.gamma,
            });
        }
    }
    let at = |u: f64| scale(base, dimension.multipliers(dimension.to_parameter(u)));
    let macs = |u: f64| at(u).ok().map(|arch| cost(&arch).macs);
    // The base must scale (it is u = 0); its error says what is wrong with it.
    at(0.0)?;
    let (low_bound, high_bound) = dimension.bounds();
    // (1) The edges of the valid interval, which contains 0.
    let low =
        if macs(low_bound).is_some() { low_bound } else { bisect(0.0, low_bound, |u| macs(u).is_some()) };
    let high =
        if macs(high_bound).is_some() { high_bound } else { bisect(0.0, high_bound, |u| macs(u).is_some()) };
    let (smallest, largest) = (macs(low).unwrap_or(0), macs(high).unwrap_or(u64::MAX));
    if target < smallest as f64 {
        let parameter = dimension.to_parameter(low);
        return Err(FlopsTargetError::BelowSmallest { target, dimension, smallest, parameter });
    }
    if target > largest as f64 {
        let parameter = dimension.to_parameter(high);
        return Err(FlopsTargetError::AboveLargest { target, dimension, largest, parameter });
    }
    // (2) The step that crosses the target: `below` costs less (or is `low` itself, which
    // does not), `above` costs at least the target.
    let reaches = |u: f64| macs(u).is_some_and(|m| m as f64 >= target);
    let above = if reaches(low) { low } else { bisect(high, low, reaches) };
    let below = if reaches(low) { low } else { bisect(low, high, |u| !reaches(u)) };
    // (3) The closer of the two neighbouring steps; ties go to the smaller network.
    let distance = |u: f64| macs(u).map_or(f64::INFINITY, |m| (m as f64 - target).abs());
    let chosen = if distance(below) <= distance(above) { below } else { above };
    let chosen_macs = macs(chosen);
    // (4) The interval of parameters giving this cost (networks that differ only where the cost
    // model does not see it, such as 223 and 224 px after a stride-2 stem, count as one), and a
    // readable value in it.
    let same = |u: f64| macs(u) == chosen_macs;
    let start = bisect(chosen, low, same);
    let end = bisect(chosen, high, same);
    let parameter = if start <= 0.0 && 0.0 <= end {
        dimension.identity()
    } else {
        let (from, to) = (dimension.to_parameter(start), dimension.to_parameter(end));
        let readable = fewest_decimals(from, to);
        let readable_macs = scale(base, dimension.multipliers(readable)).ok().map(|a| cost(&a).macs);
        if readable_macs == chosen_macs {
            readable
        } else {
            dimension.to_parameter(chosen)
        }
    };
    let multipliers = dimension.multipliers(parameter);
    let arch = scale(base, multipliers)?;
    let cost = cost(&arch);
    Ok(FlopsMatch { parameter, multipliers, arch, cost })
}

/// Moves from `inside` (where `holds` is true) towards `outside` and returns the last point
/// where `holds` is still true, for a `holds` true on an interval: `outside` itself when it holds.
fn bisect(inside: f64, outside: f64, holds: impl Fn(f64) -> bool) -> f64 {
    if holds(outside) {
        return outside;
    }
    let (mut good, mut bad) = (inside, outside);
    for _ in 0..BISECTION_STEPS {
        let middle = 0.5 * (good + bad);
        if middle == good || middle == bad {
            break;
        }
        if holds(middle) {
            good = middle;
        } else {
            bad = middle;
        }
    }
    good
}

/// The number in `[from, to]` with the fewest decimals (up to 12), nearest the middle. The
/// grid point nearest the middle is inside the interval if any grid point of that spacing is.
fn fewest_decimals(from: f64, to: f64) -> f64 {
    let middle = 0.5 * (from + to);
    for decimals in 0..=12 {
        let scale = 10f64.powi(decimals);
        let candidate = (middle * scale).round() / scale;
        if from <= candidate && candidate <= to {
            return candidate;
        }
    }
    middle
}

#[cfg(test)]
#[allow(clippy::unwrap_used)] // a failing unwrap is a failing test
mod tests {
    use super::*;

    #[test]
    fn channel_rounding_matches_the_reference_rule() {
        // Worked by hand from `max(8, int(c + 4) // 8 * 8)`, plus 8 when under 90%.
        assert_eq!(round_channels(32, 1.0), 32);
        assert_eq!(round_channels(16, 1.1), 16); // 17.6 -> 16, 16 >= 15.84
        assert_eq!(round_channels(24, 1.1), 24); // 26.4 -> 24, 24 >= 23.76
        assert_eq!(round_channels(40, 1.1), 48); // 44.0 -> 48
        assert_eq!(round_channels(32, 1.8), 56); // 57.6 -> 56, 56 >= 51.84
        assert_eq!(round_channels(3, 1.0), 8); // never below 8
        assert_eq!(round_channels(18, 0.75), 16); // 13.5 -> 16
        assert_eq!(round_channels(20, 1.0), 24); // 20 -> int(24)//8*8 = 24
    }

    #[test]
    fn repeat_rounding_is_a_ceiling() {
        assert_eq!(round_repeats(2, 1.1), 3);
        assert_eq!(round_repeats(3, 1.2), 4);
        assert_eq!(round_repeats(1, 3.1), 4);
        assert_eq!(round_repeats(4, 1.0), 4);
    }

    /// Counts computed independently with exact rational arithmetic (Python `fractions`) over
    /// the reference grid: α in [1, 2], β and γ in [1, 1.5], step 0.1. The public example
    /// kept `|α·β²·γ² − 2| < 0.1` (20 points); one more point lies exactly on 0.1.
    #[test]
    fn reference_grid_counts() {
        let reference = GridSpec { step: 0.1, tolerance: 0.1, ..GridSpec::default() };
        assert_eq!(compound_grid(&reference).unwrap().len(), 21);
        assert_eq!(compound_grid(&GridSpec { tolerance: 0.0999, ..reference }).unwrap().len(), 20);
        assert_eq!(compound_grid(&GridSpec::default()).unwrap().len(), 109);
        let first = compound_grid(&reference).unwrap()[0];
        assert_eq!((first.alpha, first.beta, first.gamma), (1.0, 1.0, 1.4));
    }

    #[test]
    fn every_grid_point_satisfies_the_constraint() {
        let spec = GridSpec { step: 0.01, tolerance: 0.05, ..GridSpec::default() };
        let points = compound_grid(&spec).unwrap();
        assert!(points.len() > 100);
        for p in points {
            assert!(p.alpha >= 1.0 && p.beta >= 1.0 && p.gamma >= 1.0);
            assert!((p.flops_factor() - 2.0).abs() <= 0.05 + 1e-9, "{p:?}");
        }
    }

    #[test]
    fn empty_grids_say_why() {
        let message = compound_grid(&GridSpec {
            alpha: (1.0, 1.1),
            beta: (1.0, 1.1),
            gamma: (1.0, 1.1),
            ..GridSpec::default()
        })
        .unwrap_err()
        .to_string();
        assert!(message.contains("runs from 1.000 to 1.611"), "{message}");
        assert!(compound_grid(&GridSpec { alpha: (0.5, 2.0), ..GridSpec::default() })
            .unwrap_err()
            .to_string()
            .contains("alpha"));
        assert!(compound_grid(&GridSpec { step: 0.0, ..GridSpec::default() }).is_err());
    }

    #[test]
    fn efficientnet_coefficients_satisfy_the_constraint() {
        let factor = Compound::EFFICIENTNET.flops_factor();
        assert!((factor - 2.0).abs() < 0.1, "{factor}");
    }

    fn b0() -> ArchSpec {
        crate::presets::efficientnet_b0()
    }

    const DIMENSIONS: [Dimension; 4] = [
        Dimension::Width,
        Dimension::Depth,
        Dimension::Resolution,
        Dimension::Compound(Compound::EFFICIENTNET),
    ];

    /// The found network is at least as close to the target as the networks at the found
    /// parameter moved by ±1% and ±5% (in the multiplier; in φ by ±0.01 and ±0.05 for compound).
    #[test]
    fn the_match_is_at_least_as_close_as_its_neighbours() {
        let base = b0();
        let base_macs = cost(&base).macs as f64;
        for dimension in DIMENSIONS {
            for ratio in [0.6, 1.3, 2.0, 3.7, 8.0] {
                if dimension == Dimension::Depth && ratio < 1.0 {
                    continue; // B0 has one-layer stages: depth cannot shrink it to 0.6×.
                }
                let target = base_macs * ratio;
                let found = scale_to_flops(&base, dimension, target).unwrap();
                assert_eq!(found.cost, cost(&found.arch));
                assert_eq!(scale(&base, dimension.multipliers(found.parameter)).unwrap(), found.arch);
                let miss = (found.cost.macs as f64 - target).abs();
                for step in [-0.05, -0.01, 0.01, 0.05] {
                    let moved = match dimension {
                        Dimension::Compound(_) => found.parameter + step,
                        _ => found.parameter * (1.0 + step),
                    };
                    if let Ok(arch) = scale(&base, dimension.multipliers(moved)) {
                        let other = (cost(&arch).macs as f64 - target).abs();
                        assert!(
                            miss <= other,
                            "{dimension} ×{ratio}: {} misses by {miss}, {moved} by {other}",
                            found.parameter
                        );
                    }
                }
                // Two times the base lands within a few percent for every dimension.
                if ratio == 2.0 {
                    let achieved = found.cost.macs as f64 / base_macs;
                    assert!((achieved - 2.0).abs() < 0.1, "{dimension}: {achieved}");
                }
            }
        }
    }

    #[test]
    fn the_base_cost_gives_the_identity() {
        let base = b0();
        let macs = cost(&base).macs as f64;
        for dimension in DIMENSIONS {
            let found = scale_to_flops(&base, dimension, macs).unwrap();
            assert_eq!(found.parameter, dimension.identity(), "{dimension}");
            assert_eq!(found.multipliers, Multipliers::IDENTITY);
            assert_eq!(found.arch, base);
        }
    }

    #[test]
    fn one_dimension_moves_alone() {
        let base = b0();
        let target = cost(&base).macs as f64 * 2.0;
        let width = scale_to_flops(&base, Dimension::Width, target).unwrap();
        assert_eq!((width.multipliers.depth, width.multipliers.resolution), (1.0, 1.0));
        assert_eq!(width.arch.resolution, base.resolution);
        let resolution = scale_to_flops(&base, Dimension::Resolution, target).unwrap();
        assert_eq!(resolution.arch.blocks, base.blocks);
        // Multiply-adds grow about with the square of the resolution (√2 × 224 ≈ 317 px), a
        // little faster after the stride-2 layers round their outputs up: 309 px for B0.
        assert!((300..=325).contains(&resolution.arch.resolution), "{}", resolution.arch.resolution);
        let compound = scale_to_flops(&base, Dimension::Compound(Compound::EFFICIENTNET), target).unwrap();
        let m = compound.multipliers;
        let c = Compound::EFFICIENTNET;
        assert!((m.depth.ln() / c.alpha.ln() - compound.parameter).abs() < 1e-9);
        assert!((m.width.ln() / c.beta.ln() - compound.parameter).abs() < 1e-9);
    }

    #[test]
    fn unreachable_targets_are_typed_errors() {
        let base = b0();
        for dimension in DIMENSIONS {
            assert!(
                matches!(scale_to_flops(&base, dimension, 1e18), Err(FlopsTargetError::AboveLargest { .. })),
                "{dimension}"
            );
            assert!(
                matches!(
                    scale_to_flops(&base, dimension, 1000.0),
                    Err(FlopsTargetError::BelowSmallest { .. })
                ),
                "{dimension}"
            );
        }
        // Depth cannot go below one layer a stage, which B0 already has in two stages.
        let half = cost(&base).macs as f64 / 10.0;
        let error = scale_to_flops(&base, Dimension::Depth, half).unwrap_err().to_string();
        assert!(error.contains("below the smallest this base reaches by depth"), "{error}");
        for bad in [f64::NAN, f64::INFINITY, 0.0, -5.0] {
            assert!(matches!(
                scale_to_flops(&base, Dimension::Width, bad),
                Err(FlopsTargetError::InvalidTarget { .. })
            ));
        }
        for c in [
            Compound { alpha: 1.0, beta: 1.0, gamma: 1.0 },
            Compound { alpha: 0.9, beta: 1.1, gamma: 1.1 },
            Compound { alpha: f64::NAN, beta: 1.1, gamma: 1.1 },
        ] {
            assert!(matches!(
                scale_to_flops(&base, Dimension::Compound(c), 1e9),
                Err(FlopsTargetError::InvalidCoefficients { .. })
            ));
        }
    }

    fn preset(name: &str) -> ArchSpec {
        crate::presets::preset(name).unwrap()
    }

    /// Width 2 doubles every channel count of ResNet-50, bottleneck widths and outputs alike;
    /// convolutions between doubled channels cost four times as much, so parameters and
    /// multiply-adds land a little under 4× (the 3-channel stem and the classifier's classes do
    /// not double).
    #[test]
    fn resnet_50_at_width_2_doubles_every_channel() {
        let base = preset("resnet-50");
        let wide = scale(&base, Multipliers { width: 2.0, ..Multipliers::IDENTITY }).unwrap();
        assert_eq!(wide.stem_channels, 128);
        assert_eq!(wide.head_channels, None);
        let outs: Vec<u32> = wide.blocks.iter().map(|b| b.out_channels).collect();
        assert_eq!(outs, [512, 1024, 2048, 4096]);
        let widths: Vec<u32> = wide.blocks.iter().map(|b| b.hidden_channels(b.in_channels)).collect();
        assert_eq!(widths, [128, 256, 512, 1024]);
        let (c0, c1) = (cost(&base), cost(&wide));
        let params = c1.params as f64 / c0.params as f64;
        let macs = c1.macs as f64 / c0.macs as f64;
        assert!((3.8..4.0).contains(&params), "params ×{params}");
        assert!((3.8..4.0).contains(&macs), "multiply-adds ×{macs}");
    }

    /// At a width where rounding the output alone would break the 4:1 ratio (1.1: 64 → 72,
    /// but 256 → 280, not 288), the bottleneck width is rounded and the output follows it.
    #[test]
    fn bottleneck_outputs_stay_four_times_their_width() {
        let wide = scale(&preset("resnet-50"), Multipliers { width: 1.1, ..Multipliers::IDENTITY }).unwrap();
        let outs: Vec<u32> = wide.blocks.iter().map(|b| b.out_channels).collect();
        assert_eq!(outs, [288, 576, 1120, 2240]); // 4 × round(1.1 × [64, 128, 256, 512])
        for pair in wide.blocks.windows(2) {
            assert_eq!(pair[1].in_channels, pair[0].out_channels, "the chain holds");
        }
        for block in &wide.blocks {
            assert_eq!(block.hidden_channels(block.in_channels) * 4, block.out_channels);
            assert_eq!(block.hidden_channels(block.in_channels) % 8, 0);
        }
    }

    /// Depth multiplies the layers of every stage and rounds up, as for EfficientNet.
    #[test]
    fn resnet_depth_scales_the_layers_of_every_stage() {
        let deep = scale(&preset("resnet-50"), Multipliers { depth: 1.5, ..Multipliers::IDENTITY }).unwrap();
        let repeats: Vec<u32> = deep.blocks.iter().map(|b| b.repeats).collect();
        assert_eq!(repeats, [5, 6, 9, 5]); // ceil(1.5 × [3, 4, 6, 3])
        let deep18 =
            scale(&preset("resnet-18"), Multipliers { depth: 2.0, ..Multipliers::IDENTITY }).unwrap();
        assert_eq!(deep18.blocks.iter().map(|b| b.repeats).collect::<Vec<_>>(), [4, 4, 4, 4]);
        // ResNet-18 at depth 2 has as many layers as ResNet-34 (16), spread evenly; each
        // basic block costs about the same in every stage (channels double as the size halves),
        // so the two cost about the same.
        let resnet34 = preset("resnet-34");
        assert_eq!(deep18.num_layers(), resnet34.num_layers());
        let ratio = cost(&deep18).macs as f64 / cost(&resnet34).macs as f64;
        assert!((0.95..1.05).contains(&ratio), "{ratio}");
    }

    /// `scale --base resnet-50 --only depth --flops 2x`: the depth multiplier whose network lands
    /// closest to twice ResNet-50's multiply-adds, within a few percent (a layer of the last
    /// stage is the coarsest step).
    #[test]
    fn resnet_and_mobilenet_v1_match_flops_targets() {
        for name in ["resnet-50", "resnet-18", "mobilenet-v1"] {
            let base = preset(name);
            let base_macs = cost(&base).macs as f64;
            for dimension in DIMENSIONS {
                let found = scale_to_flops(&base, dimension, 2.0 * base_macs).unwrap();
                let achieved = found.cost.macs as f64 / base_macs;
                assert!((achieved - 2.0).abs() < 0.15, "{name} {dimension}: ×{achieved}");
                assert_eq!(found.arch.head_channels, None, "{name}: scaling adds no head");
            }
        }
    }

    #[test]
    fn readable_values_have_few_decimals() {
        assert_eq!(fewest_decimals(1.3, 1.9), 1.6);
        assert_eq!(fewest_decimals(0.5, 2.5), 2.0);
        assert_eq!(fewest_decimals(1.4141, 1.4149), 1.4145);
        assert_eq!(fewest_decimals(1.41, 1.419), 1.41);
    }
}
