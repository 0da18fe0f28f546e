//! The proxy trainer and the worker pool on synthetic data (CPU, a few hundred tiny images).

use effnas_evaluator::pool::{PoolConfig, WorkerPool};
use effnas_evaluator::score::Constraint;
use effnas_evaluator::train::{train, Augment, Failure, ProxyConfig, ProxyData, Split, Status};
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
fn synthetic_split(n: i64, seed: i64) -> Result<Split, Box<dyn std::error::Error>> {
    tch::manual_seed(seed);
    let labels = Tensor::f_randint(2, [n], (Kind::Int64, Device::Cpu))?;
    let noise = Tensor::f_rand([n, 1, 12, 12], (Kind::Float, Device::Cpu))?.f_mul_scalar(80.0)?;
    let top = Tensor::f_zeros([1, 1, 12, 12], (Kind::Float, Device::Cpu))?;
    let _ = top.f_narrow(2, 0, 6)?.f_narrow(3, 0, 6)?.f_fill_(170.0)?;
    let bottom = top.f_flip([2, 3])?;
    let is_one = labels.f_to_kind(Kind::Float)?.f_reshape([n, 1, 1, 1])?;
    let pattern = top.f_mul(&is_one.f_neg()?.f_add_scalar(1.0)?)?.f_add(&bottom.f_mul(&is_one)?)?;
    let images = noise.f_add(&pattern)?.f_clamp(0.0, 255.0)?.f_to_kind(Kind::Uint8)?;
    Ok(Split::new(images, labels)?)
}

fn synthetic_data() -> Result<ProxyData, Box<dyn std::error::Error>> {
    Ok(ProxyData::new(
        "synthetic",
        synthetic_split(256, 1)?,
        synthetic_split(128, 2)?,
        Some(synthetic_split(64, 3)?),
        2,
    )?)
}

fn tiny_arch(data: &ProxyData) -> Result<ArchSpec, Box<dyn std::error::Error>> {
    // parse_arch chains blocks from the default 32-channel stem.
    let mut arch = parse_arch("r1_k3_s11_e1_i32_o8_se0.25,r2_k3_s22_e3_i8_o16_se0.25")?;
    arch.head_channels = 32;
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
    // Tiny network, far under 400M multiply-adds: the soft constraint rewards it above ACC.
    assert!(r.reward > r.accuracy);
    assert!(trained.model.is_some());
    Ok(())
}

#[test]
fn seeded_cpu_runs_are_reproducible() -> TestResult {
    let _serial = serial();
    let data = synthetic_data()?;
    let arch = tiny_arch(&data)?;
    let config = ProxyConfig {
        epochs: 2,
        train_images: Some(200),
        augment: Augment { flip: true, crop_padding: 2 },
        ..quick_config()
    };
    let a = train(&arch, &data, &config, Device::Cpu)?.result;
    let b = train(&arch, &data, &config, Device::Cpu)?.result;
    assert_eq!(a.accuracy, b.accuracy);
    let losses =
        |r: &effnas_evaluator::train::TrainResult| r.curve.iter().map(|e| e.train_loss).collect::<Vec<_>>();
    assert_eq!(losses(&a), losses(&b));
    assert_eq!(a.train_images, 200);
    let c = train(&arch, &data, &ProxyConfig { seed: 7, ..config }, Device::Cpu)?.result;
    assert_ne!(losses(&a), losses(&c), "another seed gives another run");
    Ok(())
}

#[test]
fn rmsprop_bf16_and_hard_constraint_run() -> TestResult {
    let _serial = serial();
    let data = synthetic_data()?;
    let arch = tiny_arch(&data)?;
    let config = ProxyConfig {
        epochs: 1,
        train_images: Some(64),
        optimizer: effnas_evaluator::optim::OptimizerKind::RMSPROP,
        lr: 0.01,
        precision: effnas_evaluator::model::Precision::Bf16,
        objective: effnas_evaluator::score::Objective {
            target: 1.0,
            constraint: Constraint::Hard,
            ..Default::default()
        },
        measure_latency: true,
        ..quick_config()
    };
    let r = train(&arch, &data, &config, Device::Cpu)?.result;
    assert_eq!(r.status, Status::Complete, "{:?}", r.reason);
    // Far over a target of one multiply-add: the hard constraint divides by FLOPS / T.
    assert!((r.reward - r.accuracy / r.flops as f64).abs() < 1e-12);
    assert!(r.latency_ms.is_some_and(|ms| ms > 0.0));
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
    assert_eq!((r.accuracy, r.reward), (0.0, 0.0));
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
    let data = synthetic_data()?;
    let arch = tiny_arch(&data)?;
    let pool = WorkerPool::new(&PoolConfig::cpu(2), &data)?;
    assert_eq!(pool.workers(), 2);
    let ok = ProxyConfig { epochs: 1, train_images: Some(64), ..quick_config() };
    let diverging = ProxyConfig { lr: 1e30, warmup_epochs: 0.0, check_every: 1, ..ok.clone() };
    let mut wrong = arch.clone();
    wrong.num_classes = 5;
    pool.submit(1, arch.clone(), ok.clone())?;
    pool.submit(2, arch.clone(), diverging)?;
    pool.submit(3, wrong, ok)?;
    let mut results = Vec::new();
    while let Some(done) = pool.recv() {
        results.push(done);
    }
    results.sort_by_key(|r| r.trial);
    let trials: Vec<_> = results.iter().map(|r| (r.trial, r.result.status)).collect();
    assert_eq!(trials, vec![(1, Status::Complete), (2, Status::Failed), (3, Status::Failed)]);
    assert_eq!(results[1].result.failure, Some(Failure::Diverged));
    assert!(results[2].result.reason.as_deref().is_some_and(|s| s.contains("classes")));
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
