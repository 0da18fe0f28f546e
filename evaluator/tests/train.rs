//! The proxy trainer and the worker pool on synthetic data (CPU, a few hundred tiny images).

use std::sync::atomic::{AtomicBool, Ordering};
use std::sync::Arc;

use effnas_evaluator::data::ImageSet;
use effnas_evaluator::pool::{PoolConfig, WorkerPool};
use effnas_evaluator::train::{
    train, train_with_progress, Augment, Failure, ProxyConfig, ProxyData, Status, TrainResult,
};
use effnas_evaluator::EvalError;
use effnas_space::{parse_arch, ArchSpec};
use tch::{Device, Kind, Tensor};

type TestResult = Result<(), Box<dyn std::error::Error>>;

/// Trials seed libtorch's process-wide generator, so tests that train take turns (the test
/// harness runs tests on concurrent threads).
static SERIAL: std::sync::Mutex<()> = std::sync::Mutex::new(());

fn serial() -> std::sync::MutexGuard<'static, ()> {
    SERIAL.lock().unwrap_or_else(std::sync::PoisonError::into_inner)
}

/// Two classes a small network separates easily: a bright square top-left (class 0) or
/// bottom-right (class 1) on noise; 1 channel, 12 × 12, upsampled by the trainer to 16.
fn synthetic_split(n: i64, seed: i64) -> Result<ImageSet, Box<dyn std::error::Error>> {
    tch::manual_seed(seed);
    let labels = Tensor::f_randint(2, [n], (Kind::Int64, Device::Cpu))?;
    let noise = Tensor::f_rand([n, 1, 12, 12], (Kind::Float, Device::Cpu))?.f_mul_scalar(80.0)?;
    let top = Tensor::f_zeros([1, 1, 12, 12], (Kind::Float, Device::Cpu))?;
    let _ = top.f_narrow(2, 0, 6)?.f_narrow(3, 0, 6)?.f_fill_(170.0)?;
    let bottom = top.f_flip([2, 3])?;
    let is_one = labels.f_to_kind(Kind::Float)?.f_reshape([n, 1, 1, 1])?;
    let pattern = top.f_mul(&is_one.f_neg()?.f_add_scalar(1.0)?)?.f_add(&bottom.f_mul(&is_one)?)?;
    let images = noise.f_add(&pattern)?.f_clamp(0.0, 255.0)?.f_to_kind(Kind::Uint8)?;
    Ok(ImageSet::with_numbered_classes(images, labels, 2)?)
}

fn synthetic_data() -> Result<ProxyData, Box<dyn std::error::Error>> {
    synthetic_data_with(256)
}

/// `train` training images, 128 validation and 64 test images.
fn synthetic_data_with(train: i64) -> Result<ProxyData, Box<dyn std::error::Error>> {
    Ok(ProxyData::new(
        "synthetic",
        synthetic_split(train, 1)?,
        synthetic_split(128, 2)?,
        Some(synthetic_split(64, 3)?),
    )?)
}

fn tiny_arch(data: &ProxyData) -> Result<ArchSpec, Box<dyn std::error::Error>> {
    // parse_arch chains blocks from the default 32-channel stem.
    let mut arch = parse_arch("r1_k3_s11_e1_i32_o8_se0.25,r2_k3_s22_e3_i8_o16_se0.25")?;
    arch.head_channels = Some(32);
    arch.dropout = 0.1;
    Ok(data.adapt(&arch, Some(16))?)
}

fn quick_config() -> ProxyConfig {
    ProxyConfig {
        epochs: 4,
        batch_size: 32,
        lr: 0.5,
        warmup_epochs: 0.25,
        bn_momentum: 0.1,
        label_smoothing: 0.0,
        ..ProxyConfig::default()
    }
}

#[test]
fn a_tiny_network_learns_the_synthetic_task() -> TestResult {
    let _serial = serial();
    let data = synthetic_data()?;
    let arch = tiny_arch(&data)?;
    let trained = train(&arch, &data, &ProxyConfig { epochs: 8, ..quick_config() }, Device::Cpu)?;
    let r = &trained.result;
    assert_eq!(r.status, Status::Complete, "{:?}", r.reason);
    assert!(r.accuracy > 0.9, "validation accuracy {}, curve {:?}", r.accuracy, r.curve);
    assert!(r.test_accuracy.is_some_and(|a| a > 0.8), "test accuracy {:?}", r.test_accuracy);
    assert_eq!(r.curve.len(), 8);
    assert!(r.curve[7].train_loss < 0.5 * r.curve[0].train_loss, "loss did not fall: {:?}", r.curve);
    assert_eq!(r.params, effnas_space::cost(&arch).params);
    assert_eq!(r.flops, effnas_space::cost(&arch).macs);
    assert_eq!((r.train_images, r.validation_images, r.resolution), (256, 128, 16));
    assert_eq!(r.images_seen, 8 * 256);
    assert!(r.images_per_second > 0.0 && r.seconds >= r.train_seconds);
    assert_eq!(r.latency_ms, None, "latency is measured only when asked for");
    assert!(trained.model.is_some());
    Ok(())
}

#[test]
fn seeded_cpu_runs_are_reproducible() -> TestResult {
    let _serial = serial();
    let data = synthetic_data_with(200)?;
    let arch = tiny_arch(&data)?;
    let config =
        ProxyConfig { epochs: 2, augment: Augment { flip: true, crop_padding: 2 }, ..quick_config() };
    let a = train(&arch, &data, &config, Device::Cpu)?.result;
    let b = train(&arch, &data, &config, Device::Cpu)?.result;
    assert_eq!(a.accuracy, b.accuracy);
    let losses = |r: &TrainResult| r.curve.iter().map(|e| e.train_loss).collect::<Vec<_>>();
    assert_eq!(losses(&a), losses(&b));
    assert_eq!(a.train_images, 200);
    let c = train(&arch, &data, &ProxyConfig { seed: 7, ..config }, Device::Cpu)?.result;
    assert_ne!(losses(&a), losses(&c), "another seed gives another run");
    Ok(())
}

#[test]
fn rmsprop_bf16_and_latency_run() -> TestResult {
    let _serial = serial();
    let data = synthetic_data_with(64)?;
    let arch = tiny_arch(&data)?;
    let config = ProxyConfig {
        epochs: 1,
        optimizer: effnas_evaluator::optim::OptimizerKind::RMSPROP,
        lr: 0.01,
        precision: effnas_evaluator::model::Precision::Bf16,
        measure_latency: true,
        ..quick_config()
    };
    let r = train(&arch, &data, &config, Device::Cpu)?.result;
    assert_eq!(r.status, Status::Complete, "{:?}", r.reason);
    assert_eq!(r.train_images, 64);
    assert!(r.latency_ms.is_some_and(|ms| ms > 0.0));
    Ok(())
}

/// The flat optimizer against the per-tensor one inside the trainer: a seeded training with
/// each ends at the same losses and accuracy (the same operations on the same numbers). A
/// channels-last training completes, learns, and its checkpoint (contiguous copies) reloads
/// into a network with the same outputs.
#[test]
fn optimizer_forms_agree_and_channels_last_trains_and_saves() -> TestResult {
    let _serial = serial();
    let data = synthetic_data_with(128)?;
    let arch = tiny_arch(&data)?;
    let config = ProxyConfig { epochs: 3, weight_decay: 1e-3, ..quick_config() };
    let flat = train(&arch, &data, &config, Device::Cpu)?.result;
    let per_tensor = ProxyConfig { per_tensor_optimizer: true, ..config.clone() };
    let reference = train(&arch, &data, &per_tensor, Device::Cpu)?.result;
    assert_eq!(flat.status, Status::Complete, "{:?}", flat.reason);
    for (a, b) in flat.curve.iter().zip(&reference.curve) {
        assert!((a.train_loss - b.train_loss).abs() <= 1e-5 * b.train_loss.abs(), "{a:?} vs {b:?}");
    }
    assert_eq!(flat.curve.len(), reference.curve.len());
    assert!((flat.accuracy - reference.accuracy).abs() < 1e-9, "{} vs {}", flat.accuracy, reference.accuracy);

    let channels_last = ProxyConfig { channels_last: true, ..config };
    let trained = train(&arch, &data, &channels_last, Device::Cpu)?;
    assert_eq!(trained.result.status, Status::Complete, "{:?}", trained.result.reason);
    let curve = &trained.result.curve;
    assert!(curve[2].train_loss < curve[0].train_loss, "channels-last did not learn: {curve:?}");
    let model = trained.model.ok_or("no model")?;
    assert!(model.net.is_channels_last());
    let dir = tempfile::tempdir()?;
    effnas_evaluator::model::checkpoint::save(&model, dir.path(), None::<&()>)?;
    let loaded = effnas_evaluator::model::checkpoint::load(dir.path(), Device::Cpu)?;
    let xs = Tensor::f_randn([4, 1, 16, 16], (Kind::Float, Device::Cpu))?;
    let gap =
        (model.forward(&xs, false)? - loaded.forward(&xs, false)?).f_abs()?.f_max()?.f_double_value(&[])?;
    assert!(gap < 1e-4, "reloaded outputs differ by {gap}");
    Ok(())
}

#[test]
fn divergence_is_a_failed_result_with_a_reason() -> TestResult {
    let _serial = serial();
    let data = synthetic_data()?;
    let arch = tiny_arch(&data)?;
    let config = ProxyConfig { lr: 1e30, warmup_epochs: 0.0, check_every: 1, ..quick_config() };
    let r = train(&arch, &data, &config, Device::Cpu)?.result;
    assert_eq!(r.status, Status::Failed);
    assert_eq!(r.failure, Some(Failure::Diverged));
    assert!(r.reason.as_deref().is_some_and(|s| s.contains("loss is")), "{:?}", r.reason);
    assert_eq!(r.accuracy, 0.0);
    Ok(())
}

#[test]
fn the_time_limit_is_a_failed_result() -> TestResult {
    let _serial = serial();
    let data = synthetic_data()?;
    let arch = tiny_arch(&data)?;
    let r =
        train(&arch, &data, &ProxyConfig { time_limit: Some(1e-6), ..quick_config() }, Device::Cpu)?.result;
    assert_eq!(r.failure, Some(Failure::TimeLimit), "{:?}", r.reason);
    assert!(r.reason.as_deref().is_some_and(|s| s.contains("time limit")));
    Ok(())
}

#[test]
fn caller_mistakes_are_errors() -> TestResult {
    let _serial = serial();
    let data = synthetic_data()?;
    let arch = tiny_arch(&data)?;
    let bad = train(&arch, &data, &ProxyConfig { batch_size: 1, ..quick_config() }, Device::Cpu);
    assert!(matches!(bad, Err(EvalError::Config { field: "batch_size", .. })), "{bad:?}");
    let mut rgb = arch.clone();
    rgb.input_channels = 3;
    assert!(matches!(train(&rgb, &data, &quick_config(), Device::Cpu), Err(EvalError::Data(_))));
    Ok(())
}

#[test]
fn the_pool_returns_every_trial_including_failures() -> TestResult {
    let _serial = serial();
    let data = synthetic_data_with(64)?;
    let arch = tiny_arch(&data)?;
    let pool = WorkerPool::new(&PoolConfig::cpu(2), &data)?;
    assert_eq!(pool.workers(), 2);
    let ok = ProxyConfig { epochs: 1, ..quick_config() };
    let diverging = ProxyConfig { lr: 1e30, warmup_epochs: 0.0, check_every: 1, ..ok.clone() };
    let mut wrong = arch.clone();
    wrong.num_classes = 5;
    let mut invalid = arch.clone();
    invalid.resolution = 0;
    pool.submit(1, arch.clone(), ok.clone())?;
    pool.submit(2, arch.clone(), diverging)?;
    pool.submit(3, wrong, ok.clone())?;
    pool.submit(4, invalid, ok)?;
    let mut results = Vec::new();
    while let Some(done) = pool.recv() {
        results.push(done);
    }
    results.sort_by_key(|r| r.trial);
    let trials: Vec<_> = results.iter().map(|r| (r.trial, r.result.status)).collect();
    assert_eq!(
        trials,
        vec![(1, Status::Complete), (2, Status::Failed), (3, Status::Failed), (4, Status::Failed)]
    );
    assert_eq!(results[1].result.failure, Some(Failure::Diverged));
    assert_eq!(results[2].result.failure, Some(Failure::Error));
    assert!(results[2].result.reason.as_deref().is_some_and(|s| s.contains("classes")));
    assert_eq!(results[3].result.failure, Some(Failure::Invalid), "{:?}", results[3].result.reason);
    assert_eq!(pool.in_flight(), 0);
    assert!(pool.shutdown().is_empty());
    Ok(())
}

#[test]
fn normalised_training_images_have_zero_mean_and_unit_variance() -> TestResult {
    let _serial = serial();
    let images =
        (Tensor::f_rand([64, 3, 8, 8], (Kind::Float, Device::Cpu))? * 200.0 + 20.0).f_to_kind(Kind::Uint8)?;
    let norm = effnas_evaluator::train::Normalizer::from_images(&images)?;
    let xs = norm.apply(&images)?;
    for c in 0..3 {
        let channel = xs.f_select(1, c)?;
        let mean = channel.f_mean(Kind::Float)?.f_double_value(&[])?;
        let std = channel.f_std(false)?.f_double_value(&[])?;
        assert!(mean.abs() < 1e-4, "channel {c}: mean {mean}");
        assert!((std - 1.0).abs() < 1e-3, "channel {c}: std {std}");
    }
    Ok(())
}

#[test]
fn an_architecture_that_does_not_validate_is_an_invalid_result() -> TestResult {
    let _serial = serial();
    let data = synthetic_data_with(64)?;
    let mut arch = tiny_arch(&data)?;
    arch.resolution = 0;
    let trained = train(&arch, &data, &quick_config(), Device::Cpu)?;
    let r = &trained.result;
    assert_eq!((r.status, r.failure), (Status::Failed, Some(Failure::Invalid)));
    assert!(r.reason.as_deref().is_some_and(|s| s.contains("resolution")), "{:?}", r.reason);
    assert_eq!(r.steps, 0);
    assert!(trained.model.is_none());
    Ok(())
}

#[test]
fn a_stop_raised_before_training_interrupts_at_once() -> TestResult {
    let _serial = serial();
    let data = synthetic_data_with(64)?;
    let arch = tiny_arch(&data)?;
    let stop = AtomicBool::new(true);
    let mut calls = 0;
    let trained =
        train_with_progress(&arch, &data, &quick_config(), Device::Cpu, &mut |_| calls += 1, &stop)?;
    let r = &trained.result;
    assert_eq!((r.status, r.failure), (Status::Failed, Some(Failure::Interrupted)));
    assert_eq!(r.reason.as_deref(), Some("interrupted"));
    assert_eq!((r.steps, r.images_seen, calls), (0, 0, 0));
    assert_eq!(r.accuracy, 0.0);
    Ok(())
}

#[test]
fn a_stop_raised_during_training_ends_it_at_the_next_step() -> TestResult {
    let _serial = serial();
    let data = synthetic_data()?;
    let arch = tiny_arch(&data)?;
    let stop = AtomicBool::new(false);
    let mut steps_seen = Vec::new();
    let mut progress = |p: effnas_evaluator::train::Progress| {
        steps_seen.push(p.step);
        if p.step == 3 {
            stop.store(true, Ordering::Relaxed);
        }
    };
    // 4 epochs of 8 steps: far more than the 3 before the stop.
    let r = train_with_progress(&arch, &data, &quick_config(), Device::Cpu, &mut progress, &stop)?.result;
    assert_eq!(r.failure, Some(Failure::Interrupted), "{:?}", r.reason);
    assert_eq!(r.steps, 3);
    assert_eq!(steps_seen, vec![1, 2, 3]);
    assert!(r.curve.is_empty(), "no epoch finished: {:?}", r.curve);
    Ok(())
}

#[test]
fn the_pool_stop_flag_interrupts_queued_trials() -> TestResult {
    let _serial = serial();
    let data = synthetic_data_with(64)?;
    let arch = tiny_arch(&data)?;
    let stop = Arc::new(AtomicBool::new(true));
    let pool = WorkerPool::new(&PoolConfig { stop: Some(Arc::clone(&stop)), ..PoolConfig::cpu(1) }, &data)?;
    pool.submit(1, arch.clone(), quick_config())?;
    pool.submit(2, arch, quick_config())?;
    let mut failures = Vec::new();
    while let Some(done) = pool.recv() {
        assert_eq!(done.result.steps, 0);
        failures.push(done.result.failure);
    }
    assert_eq!(failures, vec![Some(Failure::Interrupted); 2]);
    Ok(())
}

#[test]
fn failures_have_snake_case_names_as_serialised() -> TestResult {
    let all = [
        (Failure::Diverged, "diverged"),
        (Failure::OutOfMemory, "out_of_memory"),
        (Failure::TimeLimit, "time_limit"),
        (Failure::Invalid, "invalid"),
        (Failure::Error, "error"),
        (Failure::Interrupted, "interrupted"),
    ];
    for (failure, name) in all {
        assert_eq!(failure.as_str(), name);
        assert_eq!(failure.to_string(), name);
        assert_eq!(serde_json::to_string(&failure)?, format!("\"{name}\""));
        assert_eq!(serde_json::from_str::<Failure>(&format!("\"{name}\""))?, failure);
    }
    Ok(())
}

#[test]
fn stored_configs_with_removed_fields_still_load() -> TestResult {
    let _serial = serial();
    // A configuration stored before `train_images` and `objective` left `ProxyConfig`.
    let old = r#"{"epochs": 3, "train_images": 500, "batch_size": 32,
        "objective": {"metric": "flops", "target": 400000000.0, "constraint": {"kind": "soft", "w": -0.07}},
        "measure_latency": true}"#;
    let config: ProxyConfig = serde_json::from_str(old)?;
    assert_eq!(
        config,
        ProxyConfig { epochs: 3, batch_size: 32, measure_latency: true, ..ProxyConfig::default() }
    );
    // And a result stored with its `reward`.
    let data = synthetic_data_with(64)?;
    let arch = tiny_arch(&data)?;
    let result = TrainResult::failed(&arch, "cpu".into(), Failure::Error, "x".into());
    let mut json = serde_json::to_value(&result)?;
    json["reward"] = serde_json::json!(0.5);
    assert_eq!(serde_json::from_value::<TrainResult>(json)?, result);
    Ok(())
}

#[test]
fn proxy_data_checks_that_its_sets_fit_together() -> TestResult {
    let _serial = serial();
    let train = synthetic_split(32, 1)?;
    let validation = synthetic_split(16, 2)?;
    let relabelled = ImageSet::with_numbered_classes(
        validation.images.shallow_clone(),
        validation.labels.shallow_clone(),
        3,
    )?;
    let other_classes = ProxyData::new("x", train.shallow_clone(), relabelled, None);
    assert!(matches!(other_classes, Err(EvalError::Data(_))), "{other_classes:?}");
    let empty = ProxyData::new("x", train.shallow_clone(), validation.subset(&[])?, None);
    assert!(matches!(empty, Err(EvalError::Data(ref m)) if m.contains("no images")), "{empty:?}");
    let rgb = ImageSet::with_numbered_classes(
        validation.images.f_repeat([1, 3, 1, 1])?,
        validation.labels.shallow_clone(),
        2,
    )?;
    let channels = ProxyData::new("x", train.shallow_clone(), rgb, None);
    assert!(matches!(channels, Err(EvalError::Data(ref m)) if m.contains("channels")), "{channels:?}");
    fn one_class(set: &ImageSet) -> Result<ImageSet, Box<dyn std::error::Error>> {
        Ok(ImageSet::with_numbered_classes(set.images.shallow_clone(), set.labels.f_zeros_like()?, 1)?)
    }
    let single = ProxyData::new("x", one_class(&train)?, one_class(&validation)?, None);
    assert!(matches!(single, Err(EvalError::Data(ref m)) if m.contains("at least 2")), "{single:?}");
    let data = ProxyData::new("x", train, validation, None)?;
    assert_eq!((data.channels(), data.num_classes()), (1, 2));
    Ok(())
}

/// One of the baselines of EfficientNet's Table 3 trained as a proxy: at a quarter of its width
/// (depth and layout as they are: ResNet's 7×7 stem and max-pool take 16 px to 4 before the
/// first stage), 4 epochs of 128 synthetic images. It completes, its loss falls, it beats
/// chance clearly, and the parameters and multiply-adds it reports are the cost model's.
fn baseline_trains_as_a_proxy(name: &str) -> TestResult {
    let _serial = serial();
    let data = synthetic_data_with(128)?;
    let quarter = effnas_space::Multipliers { width: 0.25, ..effnas_space::Multipliers::IDENTITY };
    let base = effnas_space::presets::preset(name).ok_or("preset")?;
    let arch = data.adapt(&effnas_space::scale(&base, quarter)?, Some(16))?;
    let config = ProxyConfig { epochs: 4, lr: 0.1, ..quick_config() };
    let r = train(&arch, &data, &config, Device::Cpu)?.result;
    assert_eq!(r.status, Status::Complete, "{name}: {:?}", r.reason);
    assert_eq!(r.params, effnas_space::cost(&arch).params, "{name}");
    assert_eq!(r.flops, effnas_space::cost(&arch).macs, "{name}");
    assert_eq!((r.curve.len(), r.train_images, r.resolution), (4, 128, 16));
    let (first, last) = (r.curve[0].train_loss, r.curve[3].train_loss);
    assert!(last < 0.7 * first, "{name}: loss {first} → {last}");
    assert!(r.accuracy > 0.8, "{name}: validation accuracy {}, curve {:?}", r.accuracy, r.curve);
    Ok(())
}

#[test]
fn resnet_18_trains_as_a_proxy() -> TestResult {
    baseline_trains_as_a_proxy("resnet-18")
}

#[test]
fn resnet_34_trains_as_a_proxy() -> TestResult {
    baseline_trains_as_a_proxy("resnet-34")
}

#[test]
fn resnet_50_trains_as_a_proxy() -> TestResult {
    baseline_trains_as_a_proxy("resnet-50")
}

#[test]
fn mobilenet_v1_trains_as_a_proxy() -> TestResult {
    baseline_trains_as_a_proxy("mobilenet-v1")
}
