//! Compound scaling (EfficientNet §3.3): depth `d = α^φ`, width `w = β^φ`, resolution
//! `r = γ^φ` with `α·β²·γ² ≈ 2`, and the rounding every reference builder (TF, torchvision,
//! timm) applies to channels and repeats.

use serde::{Deserialize, Serialize};

use crate::arch::{ArchSpec, MAX_CHANNELS, MAX_REPEATS, MAX_RESOLUTION};
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
    arch.head_channels = width(base.head_channels);
    for block in &mut arch.blocks {
        block.in_channels = width(block.in_channels);
        block.out_channels = width(block.out_channels);
        block.repeats = round_repeats(block.repeats, multipliers.depth);
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
}
