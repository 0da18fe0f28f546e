//! Training throughput of the effnas proxy trainer on synthetic data, for `scripts/bench-train`
//! and `scripts/gpu-bench`. Prints one JSON line.
//!
//! ```text
//! bench_train [--arch b0] [--width 1.0] [--batch 32] [--resolution 32] [--classes 10]
//!             [--steps 50] [--warmup 10] [--device cpu|cuda] [--precision fp32|bf16]
//!             [--threads N] [--workers K] [--optimizer flat|per-tensor] [--channels-last]
//! ```
//! `--optimizer per-tensor` trains with the per-tensor optimizer (the "before" of the flat one);
//! `--channels-last` lays kernels and activations out NHWC.
//! With one worker, the same model trains two epochs of `--steps` batches and the second is
//! timed (`--warmup` applies to the pool only). With `--workers K` (K > 1) the worker pool
//! trains K identical proxies at once on the device, after a warm-up pool of `--warmup`
//! batches per worker, and the figure is the aggregate images/s over the pool's wall time.

use std::time::Instant;

use effnas_evaluator::data::ImageSet;
use effnas_evaluator::device::resolve_device;
use effnas_evaluator::model::Precision;
use effnas_evaluator::pool::{PoolConfig, WorkerPool};
use effnas_evaluator::train::{train, ProxyConfig, ProxyData, Status};
use effnas_space::{parse_arch, scale, ArchSpec, Multipliers};
use tch::{Device, Kind, Tensor};

struct Options {
    arch: String,
    width: f64,
    batch: usize,
    resolution: u32,
    classes: u32,
    steps: usize,
    warmup: usize,
    device: String,
    precision: Precision,
    threads: Option<i32>,
    workers: usize,
    per_tensor_optimizer: bool,
    channels_last: bool,
}

fn parse() -> Result<Options, String> {
    let mut o = Options {
        arch: "efficientnet-b0".into(),
        width: 1.0,
        batch: 32,
        resolution: 32,
        classes: 10,
        steps: 50,
        warmup: 10,
        device: "cpu".into(),
        precision: Precision::Fp32,
        threads: None,
        workers: 1,
        per_tensor_optimizer: false,
        channels_last: false,
    };
    let args: Vec<String> = std::env::args().skip(1).collect();
    let mut i = 0;
    while i < args.len() {
        if args[i] == "--channels-last" {
            o.channels_last = true;
            i += 1;
            continue;
        }
        let value = args.get(i + 1).cloned().ok_or_else(|| format!("{} needs a value", args[i]))?;
        let bad = |e: &dyn std::fmt::Display| format!("{} {value}: {e}", args[i]);
        match args[i].as_str() {
            "--arch" => o.arch = value,
            "--width" => o.width = value.parse().map_err(|e| bad(&e))?,
            "--batch" => o.batch = value.parse().map_err(|e| bad(&e))?,
            "--resolution" => o.resolution = value.parse().map_err(|e| bad(&e))?,
            "--classes" => o.classes = value.parse().map_err(|e| bad(&e))?,
            "--steps" => o.steps = value.parse().map_err(|e| bad(&e))?,
            "--warmup" => o.warmup = value.parse().map_err(|e| bad(&e))?,
            "--device" => o.device = value,
            "--precision" => {
                o.precision = match value.as_str() {
                    "fp32" => Precision::Fp32,
                    "bf16" => Precision::Bf16,
                    _ => return Err(bad(&"fp32 or bf16")),
                }
            }
            "--threads" => o.threads = Some(value.parse().map_err(|e| bad(&e))?),
            "--workers" => o.workers = value.parse().map_err(|e| bad(&e))?,
            "--optimizer" => {
                o.per_tensor_optimizer = match value.as_str() {
                    "flat" => false,
                    "per-tensor" => true,
                    _ => return Err(bad(&"flat or per-tensor")),
                }
            }
            other => return Err(format!("unknown option {other}")),
        }
        i += 2;
    }
    Ok(o)
}

fn synthetic(n: usize, classes: u32, resolution: u32) -> BoxResult<ImageSet> {
    let r = i64::from(resolution);
    let images = Tensor::f_randint(256, [n as i64, 3, r, r], (Kind::Uint8, tch::Device::Cpu))?;
    let labels = Tensor::f_randint(i64::from(classes), [n as i64], (Kind::Int64, tch::Device::Cpu))?;
    Ok(ImageSet::with_numbered_classes(images, labels, classes)?)
}

type BoxResult<T> = Result<T, Box<dyn std::error::Error>>;

fn main() -> BoxResult<()> {
    let o = parse()?;
    if let Some(t) = o.threads {
        tch::set_num_threads(t);
    }
    let device = resolve_device(&o.device)?;
    tch::manual_seed(0);
    let data = synthetic_data(&o, o.steps)?;
    let base = parse_arch(&o.arch)?;
    let arch = scale(&base, Multipliers { width: o.width, depth: 1.0, resolution: 1.0 })?;
    let arch = data.adapt(&arch, Some(o.resolution))?;
    let config = ProxyConfig {
        epochs: 1,
        batch_size: o.batch,
        eval_batch_size: o.batch,
        precision: o.precision,
        bn_recalibration_images: 0,
        check_every: 1_000_000,
        per_tensor_optimizer: o.per_tensor_optimizer,
        channels_last: o.channels_last,
        ..ProxyConfig::default()
    };
    if o.workers <= 1 {
        one_model(&o, &arch, &data, config, device)
    } else {
        pool(&o, &arch, &data, config, device)
    }
}

/// `batches` batches of training images and one of validation images.
fn synthetic_data(o: &Options, batches: usize) -> BoxResult<ProxyData> {
    Ok(ProxyData::new(
        "synthetic",
        synthetic(o.batch * batches, o.classes, o.resolution)?,
        synthetic(o.batch, o.classes, o.resolution)?,
        None,
    )?)
}

/// Two epochs over `steps` batches on one model: the first warms up (allocator, oneDNN
/// primitives, cuDNN autotuning), the second is timed from the epoch boundaries.
fn one_model(
    o: &Options,
    arch: &ArchSpec,
    data: &ProxyData,
    config: ProxyConfig,
    device: Device,
) -> BoxResult<()> {
    let r = train(arch, data, &ProxyConfig { epochs: 2, ..config }, device)?.result;
    let seconds = match r.curve.as_slice() {
        [first, second] => second.seconds - first.seconds,
        _ => f64::NAN,
    };
    let (images, params) = (o.batch * o.steps, effnas_space::cost(arch).params);
    println!(
        "{{\"tool\":\"effnas\",\"workers\":1,\"batch\":{},\"resolution\":{},\"steps\":{},\"params\":{params},\"optimizer\":\"{}\",\"channels_last\":{},\"images_per_second\":{:.2},\"status\":\"{:?}\"}}",
        o.batch, o.resolution, o.steps, if o.per_tensor_optimizer {"per-tensor"} else {"flat"}, o.channels_last, images as f64 / seconds, r.status
    );
    Ok(())
}

/// K identical proxies at once in the worker pool, after a warm-up of `--warmup` batches per
/// worker in a pool of its own (allocator, oneDNN primitives and cuDNN autotuning are per
/// process); the figure is the aggregate images/s over the pool's wall time.
fn pool(
    o: &Options,
    arch: &ArchSpec,
    data: &ProxyData,
    config: ProxyConfig,
    device: Device,
) -> BoxResult<()> {
    let pool_config = PoolConfig::devices(vec![device], o.workers);
    let warmup_data = synthetic_data(o, o.warmup.max(1))?;
    let warmup_pool = WorkerPool::new(&pool_config, &warmup_data)?;
    for w in 0..o.workers {
        warmup_pool.submit(w as u64, arch.clone(), config.clone())?;
    }
    while warmup_pool.recv().is_some() {}
    drop(warmup_pool);
    let pool = WorkerPool::new(&pool_config, data)?;
    let started = Instant::now();
    for w in 0..o.workers {
        pool.submit(w as u64, arch.clone(), config.clone())?;
    }
    let (mut seen, mut failed) = (0u64, 0usize);
    while let Some(done) = pool.recv() {
        seen += done.result.images_seen;
        failed += usize::from(done.result.status != Status::Complete);
    }
    let seconds = started.elapsed().as_secs_f64();
    let params = effnas_space::cost(arch).params;
    println!(
        "{{\"tool\":\"effnas-pool\",\"workers\":{},\"batch\":{},\"resolution\":{},\"steps\":{},\"params\":{params},\"images_per_second\":{:.2},\"failed\":{failed}}}",
        o.workers,
        o.batch,
        o.resolution,
        o.steps,
        seen as f64 / seconds
    );
    Ok(())
}
