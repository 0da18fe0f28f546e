//! `effnas finetune CHECKPOINT --dataset D`: a trained network adapted to another data set (a
//! new classifier for its classes, a new stem for another number of input channels) and trained
//! there, with its pretrained part frozen or not (`effnas_evaluator::transfer`): the transfer
//! setting of the EfficientNet paper's Table 5. Saves and records like `train`.

use std::path::PathBuf;
use std::process::ExitCode;
use std::sync::atomic::AtomicBool;

use anyhow::{bail, Context, Result};
use effnas_evaluator::data;
use effnas_evaluator::model::checkpoint;
use effnas_evaluator::score::Objective;
use effnas_evaluator::train::{finetune_with_progress, ProxyConfig, ProxyData, Status, TrainResult};
use effnas_evaluator::transfer::{adapt, Freeze, Transfer};
use effnas_search::proxy::ProxyKey;
use effnas_search::scoring::score;
use effnas_search::train_evaluator::{epoch_metrics, failure_kind};
use effnas_space::{cost, ArchSpec};
use effnas_store::{BlockingStore, NewRun, NewTrial, RunId, RunKind, RunStatus, TrialId, TrialMetrics};
use serde::Serialize;
use sha2::{Digest, Sha256};

use super::train::{check_save_folder, choose_device, dataset_key};
use crate::flags::{self, ClassList, ThreadsArg};
use crate::output::{out, outln};
use crate::table::{human_count, Table};

#[derive(Debug, Clone, Copy, PartialEq, Eq, clap::ValueEnum)]
pub enum FreezeChoice {
    /// Only the new classifier (and a new stem) train; the pretrained part keeps its weights
    /// and batch-norm statistics and runs as in evaluation (no batch statistics, no
    /// stochastic depth).
    Backbone,
    /// Everything trains (the pretrained part at `--backbone-lr-scale` × the learning rate).
    None,
}

#[derive(Debug, clap::Args)]
pub struct Args {
    /// A checkpoint folder written by `train --save` (or `finetune --save`).
    pub checkpoint: PathBuf,
    /// `fashion-mnist` (Debian's files), or a folder: IDX files, CIFAR-10 batches, or one
    /// sub-folder of images per class.
    #[arg(long, default_value = "fashion-mnist")]
    pub dataset: String,
    /// Fine-tune on these classes of the data set only, relabelled 0, 1, … in order: `5-9` or
    /// `0,2,5-7`.
    #[arg(long, value_parser = flags::class_list, value_name = "LIST")]
    pub classes: Option<ClassList>,
    /// What keeps its pretrained weights.
    #[arg(long, value_enum, default_value_t = FreezeChoice::None)]
    pub freeze: FreezeChoice,
    /// With `--freeze none`: the pretrained part's learning rate as a multiple of the new
    /// classifier's (discriminative learning rates; above 0, at most 1000).
    #[arg(long, default_value_t = 1.0, value_parser = lr_scale)]
    pub backbone_lr_scale: f64,
    /// Training epochs (1 to 1000).
    #[arg(long, default_value_t = 5, value_parser = flags::epochs)]
    pub epochs: u32,
    /// Train on at most this many images (a seeded, class-stratified subset; 2 to 100000000);
    /// default: all.
    #[arg(long, value_parser = flags::train_images)]
    pub train_images: Option<usize>,
    /// Images held out of the training set for validation (1 to 100000000).
    #[arg(long, default_value_t = 5000, value_parser = flags::validation_images)]
    pub validation_images: usize,
    /// Resolution in pixels (8 to 1024; default: the checkpoint's).
    #[arg(long, value_parser = flags::resolution)]
    pub resolution: Option<u32>,
    /// Training batch size (2 to 4096).
    #[arg(long, default_value_t = 64, value_parser = flags::batch_size)]
    pub batch_size: usize,
    /// Peak learning rate of the new classifier after warm-up (SGD with momentum 0.9, cosine
    /// schedule; above 0).
    #[arg(long, default_value_t = 0.1, value_parser = flags::positive)]
    pub lr: f64,
    /// Linear warm-up, in epochs.
    #[arg(long, default_value_t = 0.5)]
    pub warmup_epochs: f64,
    /// Weight decay (L2 on kernels and weight matrices).
    #[arg(long, default_value_t = 1e-5)]
    pub weight_decay: f64,
    /// Label smoothing of the cross-entropy loss.
    #[arg(long, default_value_t = 0.1)]
    pub label_smoothing: f64,
    /// Seed of the new layers' initialisation, shuffling and augmentation (the validation
    /// split and the image budget use a fixed seed, as in `train`).
    #[arg(long, default_value_t = 0)]
    pub seed: u64,
    /// cpu, cuda or cuda:N (default: cuda when available, else cpu).
    #[arg(long)]
    pub device: Option<String>,
    #[command(flatten)]
    pub threads: ThreadsArg,
    /// Give up (status failed) after this many seconds (above 0).
    #[arg(long, value_parser = flags::positive)]
    pub time_limit: Option<f64>,
    /// Also report accuracy on the data set's test split.
    #[arg(long)]
    pub test: bool,
    /// Save the fine-tuned network (weights.safetensors, arch.json, result.json) into this
    /// folder.
    #[arg(long)]
    pub save: Option<PathBuf>,
    /// Record the result in this experiment database (an SQLite file, created if missing, or a
    /// postgres:// URL): a trial of a new run of kind `manual` named after this command line.
    #[arg(long)]
    pub db: Option<String>,
    /// Print the result as JSON on stdout.
    #[arg(long)]
    pub json: bool,
}

fn lr_scale(text: &str) -> Result<f64, String> {
    match text.parse::<f64>() {
        Ok(v) if v > 0.0 && v <= 1000.0 => Ok(v),
        _ => Err("not a number above 0 and at most 1000".into()),
    }
}

/// What `--json` prints and `--save` writes as result.json.
#[derive(Debug, Serialize)]
pub struct Report {
    /// The pretrained checkpoint.
    pub checkpoint: PathBuf,
    /// SHA-256 of its weights file (first 16 hex digits): which pretrained weights these are.
    pub pretrained_weights: String,
    pub dataset: String,
    pub dataset_format: String,
    #[serde(skip_serializing_if = "Option::is_none")]
    pub classes: Option<Vec<u32>>,
    pub class_names: Vec<String>,
    pub freeze: Freeze,
    pub backbone_lr_scale: f64,
    /// Variables initialised afresh: the classifier, and the stem when the channels changed.
    pub new_variables: Vec<String>,
    pub reward: f64,
    pub proxy_key: String,
    pub arch: ArchSpec,
    pub blocks: Vec<String>,
    pub config: ProxyConfig,
    #[serde(flatten)]
    pub result: TrainResult,
}

pub fn run(args: Args) -> Result<ExitCode> {
    let device = choose_device(args.device.as_deref())?;
    let config = proxy_config(&args);
    config.validate().context("training configuration")?;
    if args.freeze == FreezeChoice::Backbone && args.backbone_lr_scale != 1.0 {
        bail!("--backbone-lr-scale applies to --freeze none; a frozen backbone does not train");
    }
    if let Some(dir) = &args.save {
        check_save_folder(dir)?;
    }
    args.threads.apply();
    let store = args.db.as_deref().map(BlockingStore::open).transpose()?;
    let pretrained = checkpoint::load(&args.checkpoint, device)
        .with_context(|| format!("checkpoint {}", args.checkpoint.display()))?;
    let weights = std::fs::read(args.checkpoint.join(checkpoint::WEIGHTS_FILE))
        .with_context(|| format!("reading {}", args.checkpoint.join(checkpoint::WEIGHTS_FILE).display()))?;
    let digest: String = Sha256::digest(&weights)[..8].iter().map(|b| format!("{b:02x}")).collect();
    let dataset = data::load(&args.dataset).context("--dataset")?;
    let dataset = match &args.classes {
        Some(classes) => dataset.select_classes(&classes.0).context("--classes")?,
        None => dataset,
    };
    let data = ProxyData::from_dataset(&dataset, args.validation_images, args.train_images, args.test, 0)
        .with_context(|| format!("split of {}", dataset.name))?;
    let resolution = args.resolution.unwrap_or(pretrained.arch.resolution);
    // The new layers' initialisation is seeded as a training's is.
    tch::manual_seed(args.seed as i64);
    let (model, new_variables) = adapt(&pretrained, data.num_classes(), data.channels(), resolution)
        .with_context(|| format!("adapting {} to {}", args.checkpoint.display(), dataset.name))?;
    if !args.json {
        eprintln!("{dataset}");
    }
    let arch = model.arch.clone();
    let freeze = match args.freeze {
        FreezeChoice::Backbone => Freeze::Backbone,
        FreezeChoice::None => Freeze::None,
    };
    let transfer = Transfer {
        model,
        new_variables: new_variables.clone(),
        freeze,
        backbone_lr_scale: args.backbone_lr_scale,
    };
    let trained =
        finetune_with_progress(transfer, &data, &config, device, &mut |_| {}, &AtomicBool::new(false))
            .with_context(|| format!("fine-tuning {}", args.checkpoint.display()))?;
    let reward = match trained.result.status {
        Status::Complete => score(&Objective::default(), trained.result.accuracy, &arch, None)?.reward,
        Status::Failed => 0.0,
    };
    let keyed = format!(
        "{}+finetune {digest} freeze {} lr-scale {}",
        dataset_key(&args.dataset, args.classes.as_ref()),
        freeze.as_str(),
        args.backbone_lr_scale
    );
    let proxy_key = ProxyKey {
        dataset: &keyed,
        validation_images: args.validation_images,
        train_images: args.train_images,
        resolution,
        reference_resolution: resolution,
        width: 1.0,
        depth: 1.0,
        config: &config,
    }
    .to_string();
    let report = Report {
        checkpoint: args.checkpoint.clone(),
        pretrained_weights: digest,
        dataset: dataset.name.clone(),
        dataset_format: dataset.format.as_str().to_owned(),
        classes: args.classes.as_ref().map(|c| c.0.clone()),
        class_names: dataset.train.class_names.clone(),
        freeze,
        backbone_lr_scale: args.backbone_lr_scale,
        new_variables,
        reward,
        proxy_key,
        blocks: arch.block_strings(),
        arch,
        config,
        result: trained.result,
    };
    let recorded = match &store {
        Some(store) => Some(record(store, &report).context("recording the result")?),
        None => None,
    };
    if let (Some(dir), Some(model)) = (&args.save, &trained.model) {
        checkpoint::save(model, dir, Some(&report))
            .with_context(|| format!("saving to {}", dir.display()))?;
    }
    if args.json {
        outln!("{}", serde_json::to_string_pretty(&report)?)?;
    } else {
        out!("{}", render(&report))?;
        if let Some((run, trial)) = recorded {
            let db = effnas_store::Store::redacted(args.db.as_deref().unwrap_or_default());
            outln!("recorded as trial {trial} of run {run} in {db}")?;
        }
        if let Some(dir) = &args.save {
            outln!("saved to {}", dir.display())?;
        }
    }
    Ok(if report.result.status == Status::Complete { ExitCode::SUCCESS } else { ExitCode::from(1) })
}

fn proxy_config(args: &Args) -> ProxyConfig {
    ProxyConfig {
        epochs: args.epochs,
        batch_size: args.batch_size,
        lr: args.lr,
        warmup_epochs: args.warmup_epochs,
        weight_decay: args.weight_decay,
        label_smoothing: args.label_smoothing,
        seed: args.seed,
        time_limit: args.time_limit,
        ..ProxyConfig::default()
    }
}

/// A fine-tuning stored as a run of kind `manual` named after the command line, with one trial
/// of the adapted network (complete with its curve, or failed).
fn record(store: &BlockingStore, report: &Report) -> Result<(RunId, TrialId)> {
    let command: Vec<String> = std::env::args().skip(1).collect();
    let mut run = NewRun::new(format!("effnas {}", command.join(" ")), RunKind::Manual);
    run.config = serde_json::json!({"command": command, "dataset": report.dataset, "proxy": report.config,
        "finetune": {"checkpoint": report.checkpoint, "pretrained_weights": report.pretrained_weights,
        "freeze": report.freeze, "backbone_lr_scale": report.backbone_lr_scale}});
    run.seed = Some(report.config.seed);
    let run_id = store.block_on(store.store().create_run(&run))?;
    let trial = NewTrial::new(report.arch.clone(), report.proxy_key.clone());
    let r = &report.result;
    let trial_id = match r.status {
        Status::Complete => {
            let analytic = cost(&report.arch);
            let metrics = TrialMetrics {
                accuracy: r.accuracy,
                loss: r.curve.last().map_or(f64::NAN, |e| e.train_loss),
                params: analytic.params,
                flops: analytic.macs,
                reward: report.reward,
                latency_ms: None,
                seconds: r.seconds,
                images_per_second: r.images_per_second,
                extra: Some(serde_json::json!({
                    "evaluator": "finetune",
                    "device": r.device,
                    "train_images": r.train_images,
                    "validation_images": r.validation_images,
                    "images_seen": r.images_seen,
                    "test_accuracy": r.test_accuracy,
                    "pretrained_weights": report.pretrained_weights,
                    "freeze": report.freeze,
                })),
            };
            store.block_on(store.store().insert_completed_trial(
                run_id,
                &trial,
                &metrics,
                &epoch_metrics(r),
            ))?
        }
        Status::Failed => {
            let reason = r.reason.as_deref().unwrap_or("failed");
            store.block_on(store.store().insert_failed_trial(
                run_id,
                &trial,
                failure_kind(r.failure),
                reason,
            ))?
        }
    };
    let status = if r.status == Status::Complete { RunStatus::Complete } else { RunStatus::Failed };
    store.block_on(store.store().set_run_status(run_id, status))?;
    Ok((run_id, trial_id))
}

fn render(report: &Report) -> String {
    let r = &report.result;
    let percent = |a: f64| format!("{:.2}%", 100.0 * a);
    let mut table = Table::new(["", "value"]);
    table.row([
        "pretrained".to_owned(),
        format!("{} ({})", report.checkpoint.display(), report.pretrained_weights),
    ]);
    let classes = report
        .classes
        .as_ref()
        .map_or(String::new(), |c| format!(", classes {}", data::format_class_list(c)));
    table.row([
        "data set".to_owned(),
        format!("{}{classes} ({} train, {} validation)", report.dataset, r.train_images, r.validation_images),
    ]);
    table.row(["frozen".to_owned(), report.freeze.as_str().to_owned()]);
    if report.freeze == Freeze::None {
        table.row(["backbone lr scale".to_owned(), report.backbone_lr_scale.to_string()]);
    }
    table.row(["new variables".to_owned(), report.new_variables.join(" ")]);
    table.row(["device".to_owned(), r.device.clone()]);
    table.row([
        "status".to_owned(),
        match r.status {
            Status::Complete => "complete".to_owned(),
            Status::Failed => format!("failed: {}", r.reason.as_deref().unwrap_or("unknown")),
        },
    ]);
    table.row(["validation accuracy".to_owned(), percent(r.accuracy)]);
    if let Some(test) = r.test_accuracy {
        table.row(["test accuracy".to_owned(), percent(test)]);
    }
    table.row(["params".to_owned(), human_count(r.params)]);
    table.row(["seconds".to_owned(), format!("{:.1}", r.seconds)]);
    let curve: Vec<String> = r.curve.iter().map(|e| format!("{:.3}", e.train_loss)).collect();
    table.row(["loss by epoch".to_owned(), curve.join(" ")]);
    table.render()
}
