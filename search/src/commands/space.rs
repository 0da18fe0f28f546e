//! `effnas space`: describe a search space, sample from it, test membership, or write it out
//! as a file to start a custom space from.

use std::path::PathBuf;
use std::process::ExitCode;

use anyhow::{bail, Context, Result};
use effnas_space::{arch_hash, cost, SearchSpace};
use rand::SeedableRng;
use rand_chacha::ChaCha8Rng;
use serde_json::json;

use crate::table::{human_count, Table};

#[derive(Debug, clap::Args)]
pub struct Args {
    /// A built-in space (default, mnasnet) or a space file (.json or .toml).
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

pub fn run(args: Args) -> Result<ExitCode> {
    let space =
        SearchSpace::resolve(&args.space).with_context(|| format!("search space {:?}", args.space))?;
    if args.sample.is_some_and(|n| n > 100_000) {
        bail!("--sample: at most 100000 architectures at once");
    }

    if let Some(path) = &args.write {
        let text = match path.extension().and_then(|e| e.to_str()) {
            Some("toml") => toml::to_string(&space).context("encoding the space as TOML")?,
            Some("json") => serde_json::to_string_pretty(&space)?,
            _ => bail!("--write {}: the file name must end in .json or .toml", path.display()),
        };
        std::fs::write(path, text).with_context(|| format!("writing {}", path.display()))?;
    }

    let membership = args
        .contains
        .as_deref()
        .map(|spec| -> Result<_> {
            let arch = super::arch::resolve(spec, None, None, None)?;
            Ok((spec, space.encode(&arch)))
        })
        .transpose()?;

    let mut rng = ChaCha8Rng::seed_from_u64(args.seed);
    let samples = (0..args.sample.unwrap_or(0))
        .map(|_| {
            let tokens = space.sample_tokens(&mut rng);
            let arch = space.decode(&tokens)?;
            Ok((tokens, arch))
        })
        .collect::<Result<Vec<_>, effnas_space::SpaceError>>()?;

    if args.json {
        let mut out = json!({
            "name": space.name,
            "size": space.size() as f64,
            "log10_size": space.log10_size(),
            "num_tokens": space.num_tokens(),
            "choice_counts": space.choice_counts(),
            "space": space,
        });
        if let Some((spec, result)) = &membership {
            out["contains"] = json!({
                "spec": spec,
                "member": result.is_ok(),
                "tokens": result.as_ref().ok(),
                "reason": result.as_ref().err().map(ToString::to_string),
            });
        }
        if args.sample.is_some() {
            out["samples"] = samples
                .iter()
                .map(|(tokens, arch)| {
                    let c = cost(arch);
                    json!({"hash": arch_hash(arch), "tokens": tokens, "blocks": arch.block_strings(), "params": c.params, "flops": c.macs})
                })
                .collect();
        }
        println!("{}", serde_json::to_string_pretty(&out)?);
    } else {
        println!(
            "search space {:?}: {} blocks, {} decisions, size {:.3e} (10^{:.1}); skeleton: stem {}, head {}, {} px, {} classes",
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
        let mut table =
            Table::new(["block", "stride", "ops", "kernels", "se", "skips", "channels", "layers"]);
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
        println!("\n{}", table.render());
        if !samples.is_empty() {
            let mut table = Table::new(["#", "hash", "params", "mult-adds", "blocks"]);
            for (index, (_, arch)) in samples.iter().enumerate() {
                let c = cost(arch);
                table.row([
                    (index + 1).to_string(),
                    arch_hash(arch),
                    human_count(c.params),
                    human_count(c.macs),
                    arch.block_strings().join(","),
                ]);
            }
            println!(
                "{} samples (seed {}) at {} px:\n{}",
                samples.len(),
                args.seed,
                space.resolution,
                table.render()
            );
        }
        if let Some((spec, result)) = &membership {
            match result {
                Ok(tokens) => println!("{spec} is in {:?} (tokens {})", space.name, join(tokens)),
                Err(reason) => println!("{spec} is not in {:?}: {reason}", space.name),
            }
        }
        if let Some(path) = &args.write {
            println!("wrote {}", path.display());
        }
    }
    Ok(match membership {
        Some((_, Err(_))) => ExitCode::from(1),
        _ => ExitCode::SUCCESS,
    })
}
