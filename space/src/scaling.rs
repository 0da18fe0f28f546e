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
    for (field, value) in [
        ("width", multipliers.width),
        ("depth", multipliers.depth),
        ("resolution", multipliers.resolution),
    ] {
        if !(value.is_finite() && value > 0.0 && value <= 64.0) {
            return Err(SpaceError::invalid(field, format!("multiplier {value} is out of range (above 0, at most 64)")));
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
                "width {}, depth {}, resolution {} scale the network past the limits ({MAX_CHANNELS} channels, {MAX_REPEATS} repeats, {MAX_RESOLUTION} px)",
                multipliers.width, multipliers.depth, multipliers.resolution
            ),
        ));
    }
    arch.validate()?;
    Ok(arch)
}

#[cfg(test)]
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

    #[test]
    fn efficientnet_coefficients_satisfy_the_constraint() {
        let factor = Compound::EFFICIENTNET.flops_factor();
        assert!((factor - 2.0).abs() < 0.1, "{factor}");
    }
}
