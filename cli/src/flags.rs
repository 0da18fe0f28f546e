//! One parser and one range for each flag that several commands share (`train`, `search`,
//! `compound`, `trials`), so that a value one command accepts another does not refuse, and an
//! absurd value is refused by clap (exit status 2, naming the flag and the value) before any
//! work starts. The ranges are the ones the flags' `--help` text states; the proxy's bounds
//! are those `ProxySettings::validate` applies to a stored run.

use std::fmt::Display;
use std::ops::RangeInclusive;
use std::str::FromStr;

// The proxy's bounds are the ones a stored run is validated against.
pub use effnas_search::proxy::{MAX_MULTIPLIER, RESOLUTION, TRAIN_IMAGES, VALIDATION_IMAGES};
/// Training epochs: time grows linearly with them.
pub const EPOCHS: RangeInclusive<u32> = 1..=1000;
/// Batch size: batch norm needs two images; memory grows linearly.
pub const BATCH_SIZE: RangeInclusive<usize> = 2..=4096;
/// Zero padding before a random crop: every image grows by twice this on each side, so the
/// augmented batch's memory grows with its square. 64 px already pads a 224 px image by half.
pub const CROP_PADDING: RangeInclusive<u32> = 0..=64;
/// libtorch CPU threads.
pub const THREADS: RangeInclusive<usize> = 1..=1024;
/// Trials trained at once (threads, each with its own network in memory).
pub const WORKERS: RangeInclusive<usize> = 1..=256;
/// Worker processes on one device (`effnas worker --slots`): each holds its own context.
pub const SLOTS: RangeInclusive<usize> = 1..=64;
/// Evolution's population: kept in memory, one architecture each.
pub const POPULATION: RangeInclusive<usize> = 2..=100_000;
/// RL results per policy update: one update's batch of sampled token sequences.
pub const RL_BATCH: RangeInclusive<usize> = 1..=10_000;
/// Trials of a search: each is a training (or, with the oracle, a row in the database).
pub const TRIALS: RangeInclusive<usize> = 1..=1_000_000;
/// PPO gradient steps per batch: each re-evaluates the batch's sequences.
pub const RL_EPOCHS: RangeInclusive<usize> = 1..=100;

/// A whole number within `range`; the message states the range (clap adds flag and value).
fn whole_in<T>(text: &str, range: RangeInclusive<T>) -> Result<T, String>
where
    T: FromStr + PartialOrd + Display,
{
    let (low, high) = (range.start(), range.end());
    let value: T = text.trim().parse().map_err(|_| format!("not a whole number (from {low} to {high})"))?;
    if !range.contains(&value) {
        return Err(format!("out of range (from {low} to {high})"));
    }
    Ok(value)
}

pub fn resolution(text: &str) -> Result<u32, String> {
    whole_in(text, RESOLUTION)
}

/// A stem stride: 1 or 2.
pub fn stem_stride(text: &str) -> Result<u32, String> {
    match text.trim() {
        "1" => Ok(1),
        "2" => Ok(2),
        _ => Err("must be 1 or 2".to_owned()),
    }
}

pub fn epochs(text: &str) -> Result<u32, String> {
    whole_in(text, EPOCHS)
}

pub fn batch_size(text: &str) -> Result<usize, String> {
    whole_in(text, BATCH_SIZE)
}

pub fn train_images(text: &str) -> Result<usize, String> {
    whole_in(text, TRAIN_IMAGES)
}

pub fn validation_images(text: &str) -> Result<usize, String> {
    whole_in(text, VALIDATION_IMAGES)
}

pub fn crop_padding(text: &str) -> Result<u32, String> {
    whole_in(text, CROP_PADDING)
}

pub fn threads(text: &str) -> Result<usize, String> {
    whole_in(text, THREADS)
}

pub fn slots(text: &str) -> Result<usize, String> {
    whole_in(text, SLOTS)
}

pub fn population(text: &str) -> Result<usize, String> {
    whole_in(text, POPULATION)
}

/// A tournament size: its upper bound is the population, checked with both flags known.
pub fn tournament(text: &str) -> Result<usize, String> {
    whole_in(text, 1..=*POPULATION.end())
}

pub fn rl_batch(text: &str) -> Result<usize, String> {
    whole_in(text, RL_BATCH)
}

pub fn rl_epochs(text: &str) -> Result<usize, String> {
    whole_in(text, RL_EPOCHS)
}

/// A finite number of at least 0 (an entropy weight).
pub fn non_negative(text: &str) -> Result<f64, String> {
    match text.trim().parse::<f64>() {
        Ok(value) if value.is_finite() && value >= 0.0 => Ok(value),
        Ok(_) => Err("must be a number of at least 0".to_owned()),
        Err(_) => Err("not a number".to_owned()),
    }
}

/// A moving average's decay: at least 0 (the baseline is the last batch's mean), below 1 (a
/// baseline that never moves).
pub fn decay(text: &str) -> Result<f64, String> {
    match text.trim().parse::<f64>() {
        Ok(value) if (0.0..1.0).contains(&value) => Ok(value),
        Ok(_) => Err("must be at least 0 and below 1".to_owned()),
        Err(_) => Err("not a number".to_owned()),
    }
}

pub fn workers(text: &str) -> Result<usize, String> {
    whole_in(text, WORKERS)
}

pub fn trials(text: &str) -> Result<usize, String> {
    whole_in(text, TRIALS)
}

/// A finite number above 0 (a learning rate, seconds).
pub fn positive(text: &str) -> Result<f64, String> {
    match text.trim().parse::<f64>() {
        Ok(value) if value.is_finite() && value > 0.0 => Ok(value),
        Ok(_) => Err("must be a number above 0".to_owned()),
        Err(_) => Err("not a number".to_owned()),
    }
}

/// The longest duration a flag takes: a year of seconds. Longer is no use, and a duration past
/// what the clock can count would end the program instead of being refused.
pub const MAX_SECONDS: f64 = 365.0 * 86_400.0;

/// A duration in seconds (a lease, an idle time, a poll): above 0, at most [`MAX_SECONDS`].
pub fn seconds(text: &str) -> Result<f64, String> {
    let value = positive(text)?;
    if value > MAX_SECONDS {
        return Err(format!("out of range (above 0, at most {MAX_SECONDS} seconds: a year)"));
    }
    Ok(value)
}

/// A width or depth multiplier: above 0, at most [`MAX_MULTIPLIER`].
pub fn multiplier(text: &str) -> Result<f64, String> {
    let value = positive(text)?;
    if value > MAX_MULTIPLIER {
        return Err(format!("out of range (above 0, at most {MAX_MULTIPLIER})"));
    }
    Ok(value)
}

/// A count of multiply-adds (or any count) with an optional unit: `400M`, `0.4G`, `1.5K`,
/// `4e8`, `400000000`. At least 1: every bound and target in multiply-adds is positive.
pub fn multiply_adds(text: &str) -> Result<u64, String> {
    let trimmed = text.trim();
    let (number, scale) = match trimmed.char_indices().last() {
        Some((i, 'k' | 'K')) => (&trimmed[..i], 1e3),
        Some((i, 'm' | 'M')) => (&trimmed[..i], 1e6),
        Some((i, 'g' | 'G' | 'b' | 'B')) => (&trimmed[..i], 1e9),
        _ => (trimmed, 1.0),
    };
    let value: f64 =
        number.trim().parse().map_err(|_| format!("{text:?} is not a count (examples: 400M, 0.4G, 4e8)"))?;
    let count = (value * scale).round();
    if !(count.is_finite() && count >= 1.0 && count <= u64::MAX as f64) {
        return Err(format!("{text:?} is out of range (at least 1, e.g. 400M)"));
    }
    Ok(count as u64)
}

/// `--threads N`: libtorch's CPU threads for the trainers (default: libtorch's choice, all
/// cores). Shared by every command that trains.
#[derive(Debug, Clone, PartialEq, Eq, clap::Args)]
pub struct ThreadsArg {
    /// libtorch CPU threads of the training, per process (1 to 1024; default: all cores, shared
    /// out evenly among the worker processes a search or compound starts).
    #[arg(long, value_parser = threads)]
    pub threads: Option<usize>,
}

impl ThreadsArg {
    /// Sets libtorch's thread count before any worker starts: threads started afterwards take
    /// it as their own.
    pub fn apply(&self) {
        if let Some(threads) = self.threads {
            tch::set_num_threads(i32::try_from(threads).unwrap_or(i32::MAX));
        }
    }
}

/// A list of class indices, `--classes 0-4` or `0,2,5-7` (ascending, distinct).
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct ClassList(pub Vec<u32>);

impl ClassList {
    /// The canonical spelling (`0-4`), for proxy keys and reports.
    pub fn canonical(&self) -> String {
        effnas_evaluator::data::format_class_list(&self.0)
    }
}

pub fn class_list(text: &str) -> Result<ClassList, String> {
    effnas_evaluator::data::parse_class_list(text).map(ClassList).map_err(|e| e.to_string())
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn counts_parse_with_units_and_must_be_positive() {
        assert_eq!(multiply_adds("400M"), Ok(400_000_000));
        assert_eq!(multiply_adds("0.4G"), Ok(400_000_000));
        assert_eq!(multiply_adds("1G"), Ok(1_000_000_000));
        assert_eq!(multiply_adds("4e8"), Ok(400_000_000));
        assert_eq!(multiply_adds("1.5k"), Ok(1500));
        for bad in ["lots", "-1M", "0", "0.1", "inf", "1e30G", ""] {
            assert!(multiply_adds(bad).is_err(), "{bad}");
        }
    }

    #[test]
    fn whole_numbers_are_checked_against_their_range() {
        assert_eq!(resolution("8"), Ok(8));
        assert_eq!(resolution("1024"), Ok(1024));
        assert_eq!(resolution("1"), Err("out of range (from 8 to 1024)".to_owned()));
        assert!(resolution("1025").is_err());
        assert!(threads("0").is_err());
        assert_eq!(threads("1"), Ok(1));
        assert!(crop_padding("100000").is_err());
        assert_eq!(crop_padding("4"), Ok(4));
        assert!(train_images("1").is_err());
        assert!(batch_size("1").is_err());
        assert!(epochs("0").is_err());
        assert!(epochs("-1").is_err_and(|e| e.contains("not a whole number")));
    }

    #[test]
    fn real_numbers_must_be_finite_and_in_range() {
        assert_eq!(positive("0.1"), Ok(0.1));
        for bad in ["0", "-1", "nan", "inf", "x"] {
            assert!(positive(bad).is_err(), "{bad}");
        }
        assert_eq!(multiplier("8"), Ok(8.0));
        assert!(multiplier("8.5").is_err());
    }
}
