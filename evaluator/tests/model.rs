//! The builder against the analytic cost model, torchvision's names, shapes, precision and
//! checkpoints. CPU only, small inputs.

use std::collections::BTreeMap;

use effnas_evaluator::model::{checkpoint, Model, Precision};
use effnas_space::{cost, parse_arch, presets, ArchSpec, SearchSpace};
use rand::SeedableRng;
use rand_chacha::ChaCha8Rng;
use tch::{Device, Kind, Tensor};

type TestResult = Result<(), Box<dyn std::error::Error>>;

fn all_presets() -> Vec<(&'static str, ArchSpec)> {
    presets::PRESET_NAMES
        .iter()
        .map(|name| (*name, presets::preset(name).expect("every listed preset resolves")))
        .collect()
}

fn small(mut arch: ArchSpec, channels: u32, classes: u32, resolution: u32) -> ArchSpec {
    arch.input_channels = channels;
    arch.num_classes = classes;
    arch.resolution = resolution;
    arch
}

#[test]
fn built_parameters_equal_the_analytic_count_for_every_preset() -> TestResult {
    tch::manual_seed(0);
    for (name, arch) in all_presets() {
        let model = Model::new(&arch, Device::Cpu)?;
        assert_eq!(model.num_parameters(), cost(&arch).params, "{name}");
    }
    Ok(())
}

#[test]
fn built_parameters_equal_the_analytic_count_for_sampled_space_members() -> TestResult {
    tch::manual_seed(0);
    for space in [SearchSpace::default_space(), SearchSpace::mnasnet()] {
        for seed in 0..12u64 {
            let tokens = space.sample_tokens(&mut ChaCha8Rng::seed_from_u64(seed));
            // Grayscale input and 10 classes, as Fashion-MNIST: exercises the stem and classifier.
            let arch = small(space.decode(&tokens)?, 1, 10, 32);
            let model = Model::new(&arch, Device::Cpu)?;
            assert_eq!(
                model.num_parameters(),
                cost(&arch).params,
                "{} seed {seed}: {:?}",
                space.name,
                arch.block_strings()
            );
        }
    }
    Ok(())
}

#[test]
fn every_preset_maps_a_batch_to_finite_logits() -> TestResult {
    tch::manual_seed(0);
    for (name, arch) in all_presets() {
        let arch = small(arch, 3, 7, 32);
        let model = Model::new(&arch, Device::Cpu)?;
        let xs = Tensor::f_randn([2, 3, 32, 32], (Kind::Float, Device::Cpu))?;
        for train in [true, false] {
            let ys = model.forward(&xs, train)?;
            assert_eq!(ys.size(), vec![2, 7], "{name}");
            assert!(bool::try_from(ys.f_isfinite()?.f_all()?)?, "{name}: non-finite logits");
        }
    }
    Ok(())
}

#[test]
fn sampled_members_with_pool_shortcuts_run_at_odd_resolutions() -> TestResult {
    tch::manual_seed(1);
    // Every layer kind, pool shortcuts with and without projection, odd sizes (29 → 15 → 8 → 4).
    let arch = parse_arch("cn_r1_k3_s11_e1_i32_o16_se0.25_poolskip,ds_r2_k5_s22_e1_i16_o24_poolskip,r2_k3_s22_e3_i24_o24_se0.25_poolskip,r1_k5_s22_e6_i24_o40_noskip")?;
    let arch = small(arch, 1, 10, 29);
    let model = Model::new(&arch, Device::Cpu)?;
    assert_eq!(model.num_parameters(), cost(&arch).params);
    let ys = model.forward(&Tensor::f_randn([3, 1, 29, 29], (Kind::Float, Device::Cpu))?, true)?;
    assert_eq!(ys.size(), vec![3, 10]);
    let names = model.vs.variables();
    assert!(
        names.contains_key("features.1.0.shortcut.0.weight"),
        "projection where channels change at stride 1"
    );
    assert!(names.contains_key("features.2.0.shortcut.1.running_var"), "projection at stride 2");
    assert!(
        !names.contains_key("features.3.0.shortcut.0.weight"),
        "pool without projection when channels agree"
    );
    assert!(!names.contains_key("features.2.1.shortcut.0.weight"), "identity in later layers");
    Ok(())
}

/// Names and shapes of every tensor of torchvision's `efficientnet_b0(num_classes=10)` state
/// dict (tests/data/torchvision_b0_state_dict.json, generated once with torchvision 0.26.0).
#[test]
fn b0_variables_match_torchvision_state_dict() -> TestResult {
    #[derive(serde::Deserialize)]
    struct Golden {
        tensors: BTreeMap<String, Vec<i64>>,
        params: u64,
    }
    let golden: Golden = serde_json::from_str(include_str!("data/torchvision_b0_state_dict.json"))?;
    let arch = small(presets::efficientnet_b0(), 3, 10, 224);
    let model = Model::new(&arch, Device::Cpu)?;
    let ours: BTreeMap<String, Vec<i64>> =
        model.vs.variables().into_iter().map(|(k, v)| (k, v.size())).collect();
    let missing: Vec<_> = golden.tensors.keys().filter(|k| !ours.contains_key(*k)).collect();
    let extra: Vec<_> = ours.keys().filter(|k| !golden.tensors.contains_key(*k)).collect();
    assert!(missing.is_empty() && extra.is_empty(), "missing {missing:?}, extra {extra:?}");
    for (name, shape) in &golden.tensors {
        assert_eq!(&ours[name], shape, "{name}");
    }
    assert_eq!(golden.tensors.len(), 360);
    assert_eq!(model.num_parameters(), golden.params);
    Ok(())
}

/// Names and shapes of every tensor of torchvision's `resnet18/34/50(num_classes=10)` state
/// dicts (tests/data/torchvision_resnet_state_dicts.json, from
/// scripts/golden/resnet_state_dicts.py): the ResNet presets load into torchvision strictly.
#[test]
fn resnet_variables_match_torchvision_state_dicts() -> TestResult {
    #[derive(serde::Deserialize)]
    struct Golden {
        models: BTreeMap<String, Reference>,
    }
    #[derive(serde::Deserialize)]
    struct Reference {
        tensors: BTreeMap<String, Vec<i64>>,
        params: u64,
    }
    let golden: Golden = serde_json::from_str(include_str!("data/torchvision_resnet_state_dicts.json"))?;
    let expected_counts =
        [("resnet-18", "resnet18", 122), ("resnet-34", "resnet34", 218), ("resnet-50", "resnet50", 320)];
    for (preset, reference, count) in expected_counts {
        let golden = &golden.models[reference];
        let arch = small(presets::preset(preset).ok_or("preset")?, 3, 10, 224);
        let model = Model::new(&arch, Device::Cpu)?;
        let ours: BTreeMap<String, Vec<i64>> =
            model.vs.variables().into_iter().map(|(k, v)| (k, v.size())).collect();
        let missing: Vec<_> = golden.tensors.keys().filter(|k| !ours.contains_key(*k)).collect();
        let extra: Vec<_> = ours.keys().filter(|k| !golden.tensors.contains_key(*k)).collect();
        assert!(missing.is_empty() && extra.is_empty(), "{preset}: missing {missing:?}, extra {extra:?}");
        for (name, shape) in &golden.tensors {
            assert_eq!(&ours[name], shape, "{preset}: {name}");
        }
        assert_eq!(golden.tensors.len(), count, "{preset}");
        assert_eq!(model.num_parameters(), golden.params, "{preset}");
        assert_eq!(cost(&arch).params, golden.params, "{preset}: the cost model agrees");
    }
    Ok(())
}

/// MobileNetV1 and a mixed network keep EfficientNet's names; the max-pool and the missing head
/// change the output size and the classifier's input as the cost model says.
#[test]
fn baselines_without_a_head_classify_the_last_block() -> TestResult {
    tch::manual_seed(4);
    let v1 = small(presets::preset("mobilenet-v1").ok_or("preset")?, 1, 10, 64);
    let model = Model::new(&v1, Device::Cpu)?;
    let names = model.vs.variables();
    assert_eq!(names["classifier.1.weight"].size(), vec![10, 1024]);
    assert!(names.contains_key("features.5.1.block.1.0.weight"), "13th separable layer's pointwise conv");
    assert!(!names.contains_key("features.6.0.weight"), "no head convolution");
    // A basic block after an MBConv: EfficientNet's names around ResNet's parts.
    let mixed = small(parse_arch("r1_k3_s11_e1_i32_o16,basic_r2_k3_s22_i16_o24")?, 3, 5, 32);
    let model = Model::new(&mixed, Device::Cpu)?;
    assert_eq!(model.num_parameters(), cost(&mixed).params);
    let names = model.vs.variables();
    for name in ["features.2.0.conv1.weight", "features.2.0.downsample.0.weight", "features.2.1.bn2.bias"] {
        assert!(names.contains_key(name), "{name}");
    }
    assert!(!names.contains_key("features.2.1.downsample.0.weight"), "identity when shapes agree");
    let ys = model.forward(&Tensor::f_randn([2, 3, 32, 32], (Kind::Float, Device::Cpu))?, true)?;
    assert_eq!(ys.size(), vec![2, 5]);
    Ok(())
}

/// ResNet applies ReLU after the addition, so the features it pools are never negative. With
/// the classifier set to the identity (as many classes as features, no bias) the logits are
/// those features; the same network with SiLU, whose minimum is about −0.28, gives negative ones.
#[test]
fn residual_blocks_end_in_the_activation() -> TestResult {
    tch::manual_seed(5);
    let base = presets::preset("resnet-18").ok_or("preset")?;
    let narrow = effnas_space::scale(
        &base,
        effnas_space::Multipliers { width: 0.25, ..effnas_space::Multipliers::IDENTITY },
    )?;
    let features = narrow.classifier_channels();
    let relu = small(narrow, 3, features, 32);
    let mut silu = relu.clone();
    silu.activation = effnas_space::Activation::Silu;
    let xs = Tensor::f_randn([4, 3, 32, 32], (Kind::Float, Device::Cpu))?;
    let mut minima = Vec::new();
    for arch in [&relu, &silu] {
        let model = Model::new(arch, Device::Cpu)?;
        let names = model.vs.variables();
        tch::no_grad(|| -> Result<(), tch::TchError> {
            names["fc.weight"]
                .shallow_clone()
                .f_copy_(&Tensor::f_eye(i64::from(features), (Kind::Float, Device::Cpu))?)?;
            let _ = names["fc.bias"].shallow_clone().f_zero_()?;
            Ok(())
        })?;
        let ys = model.forward(&xs, true)?;
        minima.push(ys.f_min()?.f_double_value(&[])?);
    }
    assert!(minima[0] >= 0.0, "ReLU after the addition: {}", minima[0]);
    assert!(minima[1] < 0.0, "SiLU lets negative features through: {}", minima[1]);
    Ok(())
}

#[test]
fn bf16_forward_gives_fp32_logits_close_to_fp32() -> TestResult {
    tch::manual_seed(2);
    let arch = small(parse_arch("r1_k3_s11_e1_i32_o16_se0.25,r2_k3_s22_e6_i16_o24_se0.25")?, 3, 5, 16);
    let mut model = Model::new(&arch, Device::Cpu)?;
    let xs = Tensor::f_randn([4, 3, 16, 16], (Kind::Float, Device::Cpu))?;
    let fp32 = model.forward(&xs, false)?;
    model.net.set_precision(Precision::Bf16);
    let bf16 = model.forward(&xs, false)?;
    assert_eq!(bf16.kind(), Kind::Float);
    let diff = (&fp32 - &bf16).f_abs()?.f_max()?.f_double_value(&[])?;
    let scale = fp32.f_abs()?.f_max()?.f_double_value(&[])?;
    assert!(diff <= 0.1 * scale + 1e-3, "bf16 differs by {diff} (scale {scale})");
    // And it trains: gradients reach the fp32 master weights.
    model.forward(&xs, true)?.f_sum(Kind::Float)?.f_backward()?;
    let grads = model.vs.trainable_variables().iter().filter(|v| v.grad().defined()).count();
    assert_eq!(grads, model.vs.trainable_variables().len());
    Ok(())
}

#[test]
fn checkpoint_round_trip_reproduces_outputs() -> TestResult {
    tch::manual_seed(3);
    let dir = tempfile::tempdir()?;
    let arch = small(parse_arch("r1_k3_s11_e1_i32_o16_se0.25,r1_k5_s22_e6_i16_o24")?, 1, 4, 16);
    let model = Model::new(&arch, Device::Cpu)?;
    // Move the running statistics away from their initial values.
    let xs = Tensor::f_randn([8, 1, 16, 16], (Kind::Float, Device::Cpu))?;
    let _ = tch::no_grad(|| model.forward(&xs, true))?;
    let before = model.forward(&xs, false)?;
    checkpoint::save(&model, dir.path(), Some(&serde_json::json!({"note": "test"})))?;
    tch::manual_seed(99);
    let loaded = checkpoint::load(dir.path(), Device::Cpu)?;
    assert_eq!(loaded.arch, arch);
    let after = loaded.forward(&xs, false)?;
    assert!(before.f_allclose(&after, 1e-6, 1e-6, false)?);
    assert!(dir.path().join(checkpoint::RESULT_FILE).exists());
    Ok(())
}

#[test]
fn loading_a_missing_checkpoint_is_an_error_naming_the_file() {
    let dir = tempfile::tempdir().expect("temp dir");
    let err = checkpoint::load(dir.path(), Device::Cpu).expect_err("nothing there");
    assert!(err.to_string().contains("arch.json"), "{err}");
}
