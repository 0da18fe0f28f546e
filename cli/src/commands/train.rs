//! `effnas train SPEC --dataset NAME_OR_PATH`: train one architecture as a proxy task and report
//! its validation accuracy, cost, reward and speed.

use crate::output::{out, outln};
use std::path::{Path, PathBuf};
use std::process::ExitCode;
use std::sync::atomic::AtomicBool;
use std::time::Duration;

use anyhow::{bail, Context, Result};
use effnas_evaluator::data;
use effnas_evaluator::device::{device_name, resolve_device};
use effnas_evaluator::model::{checkpoint, Precision};
use effnas_evaluator::optim::OptimizerKind;
use effnas_evaluator::score::{Constraint, Objective};
use effnas_evaluator::train::{
    train_with_progress, Augment, Progress, ProxyConfig, ProxyData, Schedule, Status, TrainResult, Trained,
};
use effnas_search::proxy::ProxyKey;
use effnas_search::scoring::score;
use effnas_search::train_evaluator::{epoch_metrics, failure_kind};
use effnas_space::error::Echo;
use effnas_space::{arch_hash, cost, scale, ArchSpec, Multipliers};
use effnas_store::{BlockingStore, NewRun, NewTrial, RunId, RunKind, RunStatus, TrialId, TrialMetrics};
use indicatif::{ProgressBar, ProgressStyle};
use serde::Serialize;
use tch::Device;

use crate::flags::{self, ThreadsArg};
use crate::table::{human_count, Table};

#[derive(Debug, Clone, Copy, PartialEq, Eq, clap::ValueEnum)]
pub enum OptimizerChoice {
    /// SGD with momentum 0.9.
    Sgd,
    /// RMSProp as the EfficientNet paper (decay 0.9, momentum 0.9, ε 1e-3).
    Rmsprop,
}

#[derive(Debug, Clone, Copy, PartialEq, Eq, clap::ValueEnum)]
pub enum PrecisionChoice {
    /// bf16 on CUDA, fp32 on CPU.
    Auto,
    Fp32,
    Bf16,
}

/// The memory layout of kernels and activations.
#[derive(Debug, Clone, Copy, PartialEq, Eq, clap::ValueEnum)]
pub enum LayoutChoice {
    /// Channels-last for bf16 on CUDA and for fp32 on the CPU (each measured faster there:
    /// docs/BENCHMARKS.md), contiguous otherwise.
    Auto,
    /// NHWC strides (`model.to(memory_format=torch.channels_last)` in PyTorch).
    ChannelsLast,
    /// NCHW strides.
    Contiguous,
}

/// What a run's devices are, for the defaults that depend on them.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum DeviceKinds {
    Cpu,
    Gpus,
    /// Some of each: the layout that was measured on neither mix, contiguous.
    Mixed,
}

impl LayoutChoice {
    /// Whether to train channels-last in `precision` on `devices`.
    pub fn channels_last(self, precision: Precision, devices: DeviceKinds) -> bool {
        match self {
            LayoutChoice::Auto => matches!(
                (devices, precision),
                (DeviceKinds::Gpus, Precision::Bf16) | (DeviceKinds::Cpu, Precision::Fp32)
            ),
            LayoutChoice::ChannelsLast => true,
            LayoutChoice::Contiguous => false,
        }
    }
}

#[derive(Debug, clap::Args)]
pub struct Args {
    /// A preset (efficientnet-b0 … b7, mnasnet-a1, mobilenet-v1, mobilenet-v2, resnet-18/34/50),
    /// block strings, or a JSON file.
    pub spec: String,
    /// `fashion-mnist` (Debian's files), or a folder: IDX files, CIFAR-10 batches, or one
    /// sub-folder of images per class.
    #[arg(long, default_value = "fashion-mnist")]
    pub dataset: String,
    /// Train on these classes of the data set only, relabelled 0, 1, … in order: `0-4` or
    /// `0,2,5-7` (the training, validation and test images of other classes are left out).
    #[arg(long, value_parser = flags::class_list, value_name = "LIST")]
    pub classes: Option<flags::ClassList>,
    /// Training epochs (1 to 1000).
    #[arg(long, default_value_t = 5, value_parser = flags::epochs)]
    pub epochs: u32,
    /// Train on at most this many images (a seeded, class-stratified subset; 2 to 100000000);
    /// default: all.
    #[arg(long, value_parser = flags::train_images)]
    pub train_images: Option<usize>,
    /// Images held out of the training set for validation (seeded, class-stratified; 1 to
    /// 100000000).
    #[arg(long, default_value_t = 5000, value_parser = flags::validation_images)]
    pub validation_images: usize,
    /// Proxy resolution in pixels (8 to 1024; default: the data set's image size).
    #[arg(long, value_parser = flags::resolution)]
    pub resolution: Option<u32>,
    /// Width multiplier applied to SPEC (channels rounded to multiples of 8, as EfficientNet;
    /// above 0, at most 8).
    #[arg(long, default_value_t = 1.0, value_parser = flags::multiplier)]
    pub width: f64,
    /// Depth multiplier applied to SPEC (repeats rounded up; above 0, at most 8).
    #[arg(long, default_value_t = 1.0, value_parser = flags::multiplier)]
    pub depth: f64,
    /// Stride of the stem (1 or 2) instead of SPEC's own: 1 keeps small images four times
    /// larger through the network, at about four times the multiply-adds.
    #[arg(long, value_parser = flags::stem_stride)]
    pub stem_stride: Option<u32>,
    /// Training batch size (2 to 4096: batch norm needs two images).
    #[arg(long, default_value_t = 64, value_parser = flags::batch_size)]
    pub batch_size: usize,
    /// Peak learning rate after warm-up (above 0; default: 0.1 for SGD, 0.01 for RMSProp).
    #[arg(long, value_parser = flags::positive)]
    pub lr: Option<f64>,
    /// Optimizer.
    #[arg(long, value_enum, default_value_t = OptimizerChoice::Sgd)]
    pub optimizer: OptimizerChoice,
    /// Linear warm-up, in epochs.
    #[arg(long, default_value_t = 0.5)]
    pub warmup_epochs: f64,
    /// Weight decay (L2 on kernels and weight matrices).
    #[arg(long, default_value_t = 1e-5)]
    pub weight_decay: f64,
    /// Label smoothing of the cross-entropy loss.
    #[arg(long, default_value_t = 0.1)]
    pub label_smoothing: f64,
    /// Learning-rate schedule after warm-up: cosine to zero, or constant.
    #[arg(long, default_value = "cosine", value_parser = ["cosine", "constant"])]
    pub schedule: String,
    /// Random horizontal flips of training images.
    #[arg(long)]
    pub flip: bool,
    /// Random crops after zero padding by this many pixels (0 to 64).
    #[arg(long, default_value_t = 0, value_parser = flags::crop_padding)]
    pub crop_padding: u32,
    /// Override the architecture's dropout before the classifier.
    #[arg(long)]
    pub dropout: Option<f64>,
    /// Override the architecture's stochastic-depth (drop-connect) base rate.
    #[arg(long)]
    pub drop_connect: Option<f64>,
    /// Seed of weight initialisation, shuffling and augmentation (the validation split and
    /// the image budget use a fixed seed so that runs are comparable).
    #[arg(long, default_value_t = 0)]
    pub seed: u64,
    /// cpu, cuda or cuda:N (default: cuda when available, else cpu).
    #[arg(long)]
    pub device: Option<String>,
    /// Arithmetic: bf16 (activations and convolutions, fp32 weights) or fp32.
    #[arg(long, value_enum, default_value_t = PrecisionChoice::Auto)]
    pub precision: PrecisionChoice,
    /// Memory layout: auto is channels-last for bf16 on CUDA and for fp32 on the CPU, contiguous
    /// otherwise.
    #[arg(long, value_enum, default_value_t = LayoutChoice::Auto)]
    pub layout: LayoutChoice,
    #[command(flatten)]
    pub threads: ThreadsArg,
    /// Give up (status failed) after this many seconds (above 0).
    #[arg(long, value_parser = flags::positive)]
    pub time_limit: Option<f64>,
    /// FLOPS target T of the reward ACC × (FLOPS / T)^w, in multiply-adds (400M, 0.4G, 4e8; at
    /// least 1).
    #[arg(long, default_value = "400M", value_parser = flags::multiply_adds)]
    pub target_flops: u64,
    /// Hard constraint (w = 0 under T, −1 over) instead of the soft w = −0.07.
    #[arg(long)]
    pub hard_constraint: bool,
    /// Also measure median batch-1 latency on the device.
    #[arg(long)]
    pub latency: bool,
    /// Also report accuracy on the data set's test split.
    #[arg(long)]
    pub test: bool,
    /// Save the trained weights (weights.safetensors, torchvision's names), the architecture
    /// (arch.json), the input normalisation, resolution and class names (meta.json) and the
    /// result (result.json) into this folder.
    #[arg(long)]
    pub save: Option<PathBuf>,
    /// Record the result in this experiment database (an SQLite file, created if missing, or a
    /// postgres:// URL): a trial
    /// of a new run of kind `manual` named after this command line.
    #[arg(long)]
    pub db: Option<String>,
    /// Print the result as JSON on stdout.
    #[arg(long)]
    pub json: bool,
}

/// The JSON document `--json` prints (and `--save` writes as result.json): the training result
/// with the run's inputs, ready to hand to a store.
///
/// `arch`, `blocks`, `params`, `flops`, `latency_ms`, `curve` … describe the proxy network that
/// was trained; `network` is the named network itself (at its own resolution and classes), and
/// `reward` is computed on its multiply-adds, as a search scores its candidates.
#[derive(Debug, Serialize)]
pub struct Report {
    pub spec: String,
    pub dataset: String,
    pub dataset_format: String,
    /// The classes of the data set trained on (`--classes`), in label order; absent: all.
    #[serde(skip_serializing_if = "Option::is_none")]
    pub classes: Option<Vec<u32>>,
    pub network: NetworkCost,
    pub reward: f64,
    pub objective: Objective,
    pub proxy_key: String,
    pub arch: effnas_space::ArchSpec,
    pub blocks: Vec<String>,
    pub config: ProxyConfig,
    #[serde(flatten)]
    pub result: TrainResult,
}

/// The named network's own cost, the reward's basis.
#[derive(Debug, Serialize)]
pub struct NetworkCost {
    pub params: u64,
    pub flops: u64,
    pub resolution: u32,
    pub num_classes: u32,
    pub hash: String,
    #[serde(skip)]
    pub arch: ArchSpec,
}

impl NetworkCost {
    fn of(arch: &ArchSpec) -> Self {
        let c = cost(arch);
        NetworkCost {
            params: c.params,
            flops: c.macs,
            resolution: arch.resolution,
            num_classes: arch.num_classes,
            hash: arch_hash(arch),
            arch: arch.clone(),
        }
    }
}

pub(crate) fn choose_device(requested: Option<&str>) -> Result<Device> {
    match requested {
        Some(text) => resolve_device(text).with_context(|| format!("device {text:?}")),
        None => Ok(if tch::Cuda::is_available() { Device::Cuda(0) } else { Device::Cpu }),
    }
}

/// The proxy configuration the flags describe.
pub fn proxy_config(args: &Args, device: Device) -> ProxyConfig {
    let (optimizer, default_lr) = match args.optimizer {
        OptimizerChoice::Sgd => (OptimizerKind::SGD, 0.1),
        OptimizerChoice::Rmsprop => (OptimizerKind::RMSPROP, 0.01),
    };
    let precision = match (args.precision, device) {
        (PrecisionChoice::Fp32, _) | (PrecisionChoice::Auto, Device::Cpu) => Precision::Fp32,
        _ => Precision::Bf16,
    };
    ProxyConfig {
        epochs: args.epochs,
        batch_size: args.batch_size,
        optimizer,
        lr: args.lr.unwrap_or(default_lr),
        warmup_epochs: args.warmup_epochs,
        schedule: if args.schedule == "constant" { Schedule::Constant } else { Schedule::Cosine },
        weight_decay: args.weight_decay,
        label_smoothing: args.label_smoothing,
        precision,
        channels_last: args.layout.channels_last(
            precision,
            if matches!(device, Device::Cuda(_)) { DeviceKinds::Gpus } else { DeviceKinds::Cpu },
        ),
        augment: Augment { flip: args.flip, crop_padding: args.crop_padding },
        seed: args.seed,
        time_limit: args.time_limit,
        measure_latency: args.latency,
        ..ProxyConfig::default()
    }
}

/// The reward's objective the flags describe.
fn objective(args: &Args) -> Objective {
    Objective {
        target: args.target_flops as f64,
        constraint: if args.hard_constraint { Constraint::Hard } else { Constraint::default() },
        ..Objective::default()
    }
}

/// The named network (at its own resolution and classes) with the `--dropout` and
/// `--drop-connect` overrides: what the trial records and the reward scores.
fn named_network(args: &Args) -> Result<ArchSpec> {
    let mut network = effnas_space::parse_arch(&args.spec).context("architecture")?;
    if let Some(dropout) = args.dropout {
        network.dropout = dropout;
    }
    if let Some(rate) = args.drop_connect {
        network.drop_connect = rate;
    }
    network.validate().context("architecture")?;
    Ok(network)
}

/// What a training needs, checked and loaded before it starts.
struct Prepared {
    device: Device,
    config: ProxyConfig,
    /// The named network: what the trial records and the reward scores.
    network: ArchSpec,
    /// The proxy network that trains.
    proxy_arch: ArchSpec,
    data: ProxyData,
    dataset: data::Dataset,
    proxy_key: String,
    store: Option<BlockingStore>,
}

pub fn run(args: Args) -> Result<ExitCode> {
    let prepared = prepare(&args)?;
    let trained = train_with_bar(&args, &prepared)?;
    let report = report(&args, &prepared, trained.result)?;
    // Recorded first: the result is kept even if saving the weights fails afterwards.
    let recorded = match &prepared.store {
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
        out!("{}", render(&report, prepared.device))?;
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

/// Checks everything that can be checked cheaply (flags, architecture, output paths, the
/// database) before the data are read, then loads the data and adapts the network to them.
fn prepare(args: &Args) -> Result<Prepared> {
    let device = choose_device(args.device.as_deref())?;
    let config = proxy_config(args, device);
    config.validate().context("proxy configuration")?;
    let network = named_network(args)?;
    let scaled = scale(&network, Multipliers { width: args.width, depth: args.depth, resolution: 1.0 })
        .with_context(|| {
            format!("scaling {} by width {} depth {}", Echo(&args.spec), args.width, args.depth)
        })?;
    if let Some(dir) = &args.save {
        check_save_folder(dir)?;
    }
    args.threads.apply();
    // The database is opened before training so that an unwritable path fails at once.
    let store = args.db.as_deref().map(BlockingStore::open).transpose()?;
    let dataset = data::load(&args.dataset).context("--dataset")?;
    let dataset = match &args.classes {
        Some(classes) => dataset.select_classes(&classes.0).context("--classes")?,
        None => dataset,
    };
    let resolution = args.resolution.unwrap_or_else(|| u32::try_from(dataset.train.height()).unwrap_or(32));
    let data = ProxyData::from_dataset(&dataset, args.validation_images, args.train_images, args.test, 0)
        .with_context(|| format!("proxy split of {}", dataset.name))?;
    check_training_images(&data, args)?;
    let mut proxy_arch = data.adapt(&scaled, Some(resolution)).context("architecture for this data set")?;
    if let Some(stride) = args.stem_stride {
        proxy_arch.stem_stride = stride;
    }
    // Described once it is known to fit, so that a refusal is the only line on stderr.
    if !args.json {
        eprintln!("{dataset}");
    }
    let keyed_dataset = dataset_key(&args.dataset, args.classes.as_ref());
    let proxy_key = ProxyKey {
        dataset: &keyed_dataset,
        validation_images: args.validation_images,
        train_images: args.train_images,
        resolution,
        reference_resolution: network.resolution,
        width: args.width,
        depth: args.depth,
        stem_stride: args.stem_stride,
        config: &config,
    }
    .to_string();
    Ok(Prepared { device, config, network, proxy_arch, data, dataset, proxy_key, store })
}

/// The data set as the proxy key names it: with `--classes`, the canonical class list too, so
/// that a training on some classes is never taken for one on all of them.
pub fn dataset_key(dataset: &str, classes: Option<&flags::ClassList>) -> String {
    match classes {
        Some(classes) => format!("{dataset}[classes {}]", classes.canonical()),
        None => dataset.to_owned(),
    }
}

/// A training needs at least one optimizer step, and a step two images (batch norm): a split
/// that leaves fewer is refused before training instead of reporting an untrained network as
/// complete (the trainer would fail it as `invalid` too).
fn check_training_images(data: &ProxyData, args: &Args) -> Result<()> {
    let left = data.train.len();
    if left < 2 {
        bail!(
            "--validation-images {} leaves {left} training image(s) in {:?}: a training step needs 2 (batch norm)",
            args.validation_images,
            args.dataset
        );
    }
    Ok(())
}

/// `--save DIR` must be a folder that holds no checkpoint yet (or not exist): checked before
/// training, so that a long training is never lost to a path that cannot be written.
pub(crate) fn check_save_folder(dir: &Path) -> Result<()> {
    if dir.exists() && !dir.is_dir() {
        bail!("--save {}: exists and is not a folder", dir.display());
    }
    for file in
        [checkpoint::ARCH_FILE, checkpoint::WEIGHTS_FILE, checkpoint::META_FILE, checkpoint::RESULT_FILE]
    {
        if dir.join(file).exists() {
            bail!("--save {}: already holds a checkpoint ({file}); choose another folder", dir.display());
        }
    }
    Ok(())
}

fn train_with_bar(args: &Args, prepared: &Prepared) -> Result<Trained> {
    let bar = if args.json { ProgressBar::hidden() } else { ProgressBar::new(1) };
    bar.set_style(
        ProgressStyle::with_template(
            "{spinner} epoch {msg} [{bar:30}] {pos}/{len} steps, {per_sec}, eta {eta}",
        )
        .unwrap_or_else(|_| ProgressStyle::default_bar())
        .progress_chars("=> "),
    );
    bar.enable_steady_tick(Duration::from_millis(200));
    // A single training is not interrupted between steps: Ctrl-C ends the process.
    let never = AtomicBool::new(false);
    let mut show = |p: Progress| {
        bar.set_length(p.total_steps);
        bar.set_position(p.step);
        let loss = p.loss.map_or(String::new(), |l| format!(", loss {l:.3}"));
        bar.set_message(format!("{}/{}{loss}", p.epoch, p.epochs));
    };
    let trained = train_with_progress(
        &prepared.proxy_arch,
        &prepared.data,
        &prepared.config,
        prepared.device,
        &mut show,
        &never,
    )
    .with_context(|| format!("training {}", Echo(&args.spec)))?;
    bar.finish_and_clear();
    Ok(trained)
}

/// The report of a finished training, with the reward on the named network's own cost.
fn report(args: &Args, prepared: &Prepared, result: TrainResult) -> Result<Report> {
    let objective = objective(args);
    let reward = match result.status {
        Status::Complete => score(&objective, result.accuracy, &prepared.network, None)?.reward,
        Status::Failed => 0.0,
    };
    Ok(Report {
        spec: args.spec.clone(),
        dataset: prepared.dataset.name.clone(),
        dataset_format: prepared.dataset.format.as_str().to_owned(),
        classes: args.classes.as_ref().map(|c| c.0.clone()),
        network: NetworkCost::of(&prepared.network),
        reward,
        objective,
        proxy_key: prepared.proxy_key.clone(),
        blocks: prepared.proxy_arch.block_strings(),
        arch: prepared.proxy_arch.clone(),
        config: prepared.config.clone(),
        result,
    })
}

/// Stores a manual training as a run of kind `manual` named after the command line, with one
/// trial of the named network (complete with its curve, or failed with its kind and reason),
/// under the same proxy key a search of the same settings uses.
fn record(store: &BlockingStore, report: &Report) -> Result<(RunId, TrialId)> {
    let command: Vec<String> = std::env::args().skip(1).collect();
    let mut run = NewRun::new(format!("effnas {}", command.join(" ")), RunKind::Manual);
    run.config = serde_json::json!({"command": command, "dataset": report.dataset, "proxy": report.config,
        "objective": report.objective});
    run.seed = Some(report.config.seed);
    let run_id = store.block_on(store.store().create_run(&run))?;
    let trial = NewTrial::new(report.network.arch.clone(), report.proxy_key.clone());
    let r = &report.result;
    let trial_id = match r.status {
        Status::Complete => {
            let metrics = TrialMetrics {
                accuracy: r.accuracy,
                loss: r.curve.last().map_or(f64::NAN, |e| e.train_loss),
                params: report.network.params,
                flops: report.network.flops,
                reward: report.reward,
                latency_ms: None,
                seconds: r.seconds,
                images_per_second: r.images_per_second,
                extra: Some(serde_json::json!({
                    "evaluator": "train",
                    "device": r.device,
                    "proxy_params": r.params,
                    "proxy_flops": r.flops,
                    "proxy_resolution": r.resolution,
                    "proxy_hash": r.arch_hash,
                    "proxy_latency_ms": r.latency_ms,
                    "train_images": r.train_images,
                    "validation_images": r.validation_images,
                    "images_seen": r.images_seen,
                    "test_accuracy": r.test_accuracy,
                })),
            };
            let epochs = epoch_metrics(r);
            store.block_on(store.store().insert_completed_trial(run_id, &trial, &metrics, &epochs))?
        }
        Status::Failed => {
            let kind = failure_kind(r.failure);
            let reason = r.reason.as_deref().unwrap_or("failed");
            store.block_on(store.store().insert_failed_trial(run_id, &trial, kind, reason))?
        }
    };
    let status = if r.status == Status::Complete { RunStatus::Complete } else { RunStatus::Failed };
    store.block_on(store.store().set_run_status(run_id, status))?;
    Ok((run_id, trial_id))
}

fn render(report: &Report, device: Device) -> String {
    let r = &report.result;
    let mut table = Table::new(["", "value"]);
    let percent = |a: f64| format!("{:.2}%", 100.0 * a);
    table.row([
        "data set".to_owned(),
        format!("{} ({} train, {} validation)", report.dataset, r.train_images, r.validation_images),
    ]);
    table.row([
        "architecture".to_owned(),
        format!("{} ({} blocks, {} px)", report.spec, report.blocks.len(), r.resolution),
    ]);
    table.row(["device".to_owned(), device_name(device)]);
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
    table.row(["proxy params".to_owned(), human_count(r.params)]);
    table.row(["proxy multiply-adds".to_owned(), human_count(r.flops)]);
    if let Some(ms) = r.latency_ms {
        table.row(["latency (batch 1)".to_owned(), format!("{ms:.2} ms")]);
    }
    let network = &report.network;
    table.row([
        "network".to_owned(),
        format!(
            "{} params, {} multiply-adds at {} px, {} classes",
            human_count(network.params),
            human_count(network.flops),
            network.resolution,
            network.num_classes
        ),
    ]);
    table.row(["reward (on the network)".to_owned(), format!("{:.4}", report.reward)]);
    table.row(["seconds".to_owned(), format!("{:.1}", r.seconds)]);
    table.row(["images/s".to_owned(), format!("{:.1}", r.images_per_second)]);
    let curve: Vec<String> = r.curve.iter().map(|e| format!("{:.3}", e.train_loss)).collect();
    table.row(["loss by epoch".to_owned(), curve.join(" ")]);
    table.render()
}
