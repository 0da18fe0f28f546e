//! `effnas space`: describe a search space, sample from it, test membership, or write it out
//! as a file to start a custom space from.

use crate::output::{out, outln};
use std::fmt::Write as _;
use std::path::{Path, PathBuf};
use std::process::ExitCode;

use anyhow::{bail, Context, Result};
use effnas_space::{arch_hash, cost, ArchSpec, SearchSpace, SpaceError};
use rand::SeedableRng;
use rand_chacha::ChaCha8Rng;
use serde_json::json;

use crate::table::{human_count, Table};

#[derive(Debug, clap::Args)]
pub struct Args {
    /// A built-in space (default, mnasnet, nas-bench-macro, accel-nasbench) or a space file (.json or .toml).
    #[arg(default_value = "default")]
    pub space: String,
    /// Test whether this architecture (preset, block strings or JSON file) is in the space:
    /// exit 0 if it is, 1 if not.
    #[arg(long, value_name = "SPEC")]
    pub contains: Option<String>,
    /// Draw N architectures uniformly from the space.
    #[arg(long, value_name = "N")]
    pub sample: Option<usize>,
    /// Seed for --sample.
    #[arg(long, default_value_t = 0)]
    pub seed: u64,
    /// Write the space definition to FILE (.json or .toml), e.g. to edit into a custom space.
    #[arg(long, value_name = "FILE")]
    pub write: Option<PathBuf>,
    /// Print JSON instead of tables.
    #[arg(long)]
    pub json: bool,
}

fn join<T: ToString>(values: &[T]) -> String {
    values.iter().map(ToString::to_string).collect::<Vec<_>>().join(" ")
}

/// The answer to --contains: the SPEC as given, and its tokens or why it is not in the space.
struct Membership<'a> {
    spec: &'a str,
    tokens: Result<Vec<usize>, SpaceError>,
}

/// One architecture drawn by --sample.
struct Sample {
    tokens: Vec<usize>,
    arch: ArchSpec,
}

pub fn run(args: Args) -> Result<ExitCode> {
    // Its errors already name the space or its file.
    let space = SearchSpace::resolve(&args.space)?;
    if args.sample.is_some_and(|n| n > 100_000) {
        bail!("--sample: at most 100000 architectures at once");
    }
    if let Some(path) = &args.write {
        write_space(&space, path)?;
    }
    let membership = args.contains.as_deref().map(|spec| check_membership(&space, spec)).transpose()?;
    let samples = args.sample.map(|count| draw_samples(&space, count, args.seed)).transpose()?;
    if args.json {
        let out = space_json(&space, membership.as_ref(), samples.as_deref());
        outln!("{}", serde_json::to_string_pretty(&out)?)?;
    } else {
        out!("{}", render(&space, &args, membership.as_ref(), samples.as_deref().unwrap_or_default()))?;
    }
    Ok(match membership {
        Some(Membership { tokens: Err(_), .. }) => ExitCode::from(1),
        _ => ExitCode::SUCCESS,
    })
}

/// Writes the space definition to `path` as TOML or JSON, by its extension.
fn write_space(space: &SearchSpace, path: &Path) -> Result<()> {
    let text = match path.extension().and_then(|e| e.to_str()) {
        Some("toml") => toml::to_string(space).context("encoding the space as TOML")?,
        Some("json") => serde_json::to_string_pretty(space)?,
        _ => bail!("--write {}: the file name must end in .json or .toml", path.display()),
    };
    crate::files::write_atomically(path, |w| Ok(w.write_all(text.as_bytes())?))
}

/// Resolves SPEC (an error if it is not a valid architecture) and encodes it in the space.
fn check_membership<'a>(space: &SearchSpace, spec: &'a str) -> Result<Membership<'a>> {
    let arch = super::arch::resolve(spec, None, None, None)?;
    Ok(Membership { spec, tokens: space.encode(&arch) })
}

/// Draws `count` architectures uniformly from the space with a seeded generator.
fn draw_samples(space: &SearchSpace, count: usize, seed: u64) -> Result<Vec<Sample>, SpaceError> {
    let mut rng = ChaCha8Rng::seed_from_u64(seed);
    (0..count)
        .map(|_| {
            let tokens = space.sample_tokens(&mut rng);
            let arch = space.decode(&tokens)?;
            Ok(Sample { tokens, arch })
        })
        .collect()
}

/// The JSON form: the space and its size, then `contains` and `samples` when asked for.
fn space_json(
    space: &SearchSpace,
    membership: Option<&Membership<'_>>,
    samples: Option<&[Sample]>,
) -> serde_json::Value {
    let mut out = json!({
        "name": space.name,
        "size": space.size() as f64,
        "log10_size": space.log10_size(),
        "num_tokens": space.num_tokens(),
        "choice_counts": space.choice_counts(),
        "space": space,
    });
    if let Some(Membership { spec, tokens }) = membership {
        out["contains"] = json!({
            "spec": spec,
            "member": tokens.is_ok(),
            "tokens": tokens.as_ref().ok(),
            "reason": tokens.as_ref().err().map(ToString::to_string),
        });
    }
    if let Some(samples) = samples {
        out["samples"] = samples
            .iter()
            .map(|Sample { tokens, arch }| {
                let c = cost(arch);
                json!({
                    "hash": arch_hash(arch),
                    "tokens": tokens,
                    "blocks": arch.block_strings(),
                    "params": c.params,
                    "flops": c.macs,
                })
            })
            .collect();
    }
    out
}

/// The text form: a summary line, the choices of every block, the samples, the membership
/// answer and the file written.
fn render(
    space: &SearchSpace,
    args: &Args,
    membership: Option<&Membership<'_>>,
    samples: &[Sample],
) -> String {
    let mut out = String::new();
    let _ = writeln!(
        out,
        "search space {:?}: {} blocks, {} decisions, size {:.3e} (10^{:.1}); \
         skeleton: stem {}, head {}, {} px, {} classes",
        space.name,
        space.blocks.len(),
        space.num_tokens(),
        space.size() as f64,
        space.log10_size(),
        space.stem_channels,
        space.head_channels,
        space.resolution,
        space.num_classes,
    );
    let _ = writeln!(out, "\n{}", choices_table(space).render());
    if !samples.is_empty() {
        let _ = writeln!(
            out,
            "{} samples (seed {}) at {} px:\n{}",
            samples.len(),
            args.seed,
            space.resolution,
            samples_table(samples).render()
        );
    }
    match membership {
        Some(Membership { spec, tokens: Ok(tokens) }) => {
            let _ = writeln!(out, "{spec} is in {:?} (tokens {})", space.name, join(tokens));
        }
        Some(Membership { spec, tokens: Err(reason) }) => {
            let _ = writeln!(out, "{spec} is not in {:?}: {reason}", space.name);
        }
        None => {}
    }
    if let Some(path) = &args.write {
        let _ = writeln!(out, "wrote {}", path.display());
    }
    out
}

/// One row per block: its stride and the choices for each decision.
fn choices_table(space: &SearchSpace) -> Table {
    let mut table = Table::new(["block", "stride", "ops", "kernels", "se", "skips", "channels", "layers"]);
    for (index, block) in space.blocks.iter().enumerate() {
        table.row([
            (index + 1).to_string(),
            block.stride.to_string(),
            join(&block.ops),
            join(&block.kernels),
            join(&block.se_ratios),
            block.skips.iter().map(|s| format!("{s:?}").to_lowercase()).collect::<Vec<_>>().join(" "),
            join(&block.channels),
            join(&block.layers),
        ]);
    }
    table
}

/// One row per sample: its hash, cost and block strings.
fn samples_table(samples: &[Sample]) -> Table {
    let mut table = Table::new(["#", "hash", "params", "mult-adds", "blocks"]);
    for (index, Sample { arch, .. }) in samples.iter().enumerate() {
        let c = cost(arch);
        table.row([
            (index + 1).to_string(),
            arch_hash(arch),
            human_count(c.params),
            human_count(c.macs),
            arch.block_strings().join(","),
        ]);
    }
    table
}
