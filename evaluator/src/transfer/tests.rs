use super::*;
use crate::data::ImageSet;
use crate::train::{finetune_with_progress, ProxyConfig, ProxyData};
use effnas_space::ArchSpec;
use std::collections::HashMap;
use std::sync::atomic::AtomicBool;
use tch::{Device, Kind};

type Boxed<T> = std::result::Result<T, Box<dyn std::error::Error>>;
type TestResult = Boxed<()>;

fn small_net(channels: u32, classes: u32) -> std::result::Result<ArchSpec, effnas_space::SpaceError> {
    let mut arch = effnas_space::parse_arch("r1_k3_s11_e1_i32_o16,r1_k3_s22_e3_i16_o24_se0.25")?;
    arch.input_channels = channels;
    arch.num_classes = classes;
    arch.resolution = 12;
    arch.head_channels = Some(32);
    arch.validate()?;
    Ok(arch)
}

/// `n` noise images of `channels` channels, 12 × 12, labelled 0, 1, …, classes − 1, 0, …
fn images(n: i64, channels: i64, classes: u32) -> std::result::Result<ImageSet, Box<dyn std::error::Error>> {
    let pixels = Tensor::f_randint(256, [n, channels, 12, 12], (Kind::Uint8, Device::Cpu))?;
    let labels = Tensor::f_arange(n, (Kind::Int64, Device::Cpu))?.f_remainder(i64::from(classes))?;
    Ok(ImageSet::with_numbered_classes(pixels, labels, classes)?)
}

/// Deep copies of every variable, by name.
fn snapshot(model: &Model) -> std::result::Result<HashMap<String, Tensor>, tch::TchError> {
    model.vs.variables().into_iter().map(|(name, t)| Ok((name, t.f_detach_copy()?))).collect()
}

fn same(a: &Tensor, b: &Tensor) -> std::result::Result<bool, tch::TchError> {
    Ok(a.size() == b.size() && a.f_sub(b)?.f_abs()?.f_max()?.f_double_value(&[])? == 0.0)
}

/// Fine-tunes a network pretrained on 3 classes of 1-channel images for 4 classes of `channels`
/// channels; returns the pretrained snapshot, the adapted snapshot, the new variables and the
/// fine-tuned model.
fn finetune(channels: i64, freeze: Freeze) -> Boxed<(HashMap<String, Tensor>, Vec<String>, Model)> {
    tch::manual_seed(0);
    let pretrained = Model::new(&small_net(1, 3)?, Device::Cpu)?;
    let before = snapshot(&pretrained)?;
    let (model, new_variables) = adapt(&pretrained, 4, channels as u32, 12)?;
    assert_eq!(model.arch.num_classes, 4);
    let data = ProxyData::new("noise", images(64, channels, 4)?, images(16, channels, 4)?, None)?;
    let config = ProxyConfig { epochs: 2, batch_size: 16, ..ProxyConfig::default() };
    let transfer = Transfer { model, new_variables: new_variables.clone(), freeze, backbone_lr_scale: 0.1 };
    let trained =
        finetune_with_progress(transfer, &data, &config, Device::Cpu, &mut |_| {}, &AtomicBool::new(false))?;
    assert!(trained.result.steps > 0, "{:?}", trained.result.reason);
    Ok((before, new_variables, trained.model.ok_or("no model")?))
}

#[test]
fn a_frozen_backbone_is_unchanged_and_the_new_classifier_trains() -> TestResult {
    let (before, new_variables, model) = finetune(1, Freeze::Backbone)?;
    assert_eq!(new_variables, ["classifier.1.bias", "classifier.1.weight"]);
    let (weight, bias) = model.net.classifier();
    assert_eq!((weight.size(), bias.size()), (vec![4, 32], vec![4]));
    let after = snapshot(&model)?;
    let mut frozen = 0;
    for (name, value) in &after {
        if new_variables.contains(name) {
            continue;
        }
        // Weights and batch-norm running statistics alike.
        assert!(same(value, &before[name])?, "{name} changed under a frozen backbone");
        frozen += 1;
    }
    assert!(frozen > 30, "{frozen} frozen variables");
    // The classifier moved away from its fresh initialisation: compare with a second adaptation
    // under the same seed (the initial values).
    tch::manual_seed(0);
    let pretrained = Model::new(&small_net(1, 3)?, Device::Cpu)?;
    let (initial, _) = adapt(&pretrained, 4, 1, 12)?;
    assert!(!same(model.net.classifier().0, initial.net.classifier().0)?, "the classifier did not train");
    Ok(())
}

#[test]
fn with_nothing_frozen_the_backbone_trains_too() -> TestResult {
    let (before, new_variables, model) = finetune(1, Freeze::None)?;
    let after = snapshot(&model)?;
    let changed = after
        .iter()
        .filter(|(name, _)| !new_variables.contains(name))
        .map(|(name, value)| same(value, &before[name]).map(|s| !s))
        .collect::<std::result::Result<Vec<bool>, _>>()?
        .into_iter()
        .filter(|&c| c)
        .count();
    assert!(changed > after.len() / 2, "only {changed} of {} pretrained variables changed", after.len());
    assert!(!same(&after["features.0.0.weight"], &before["features.0.0.weight"])?);
    Ok(())
}

#[test]
fn another_channel_count_replaces_the_stem_and_keeps_the_rest() -> TestResult {
    let (before, new_variables, model) = finetune(3, Freeze::Backbone)?;
    assert!(new_variables.iter().any(|n| n == "features.0.0.weight"), "{new_variables:?}");
    assert!(new_variables.iter().all(|n| n.starts_with("features.0.") || n.starts_with("classifier.")));
    let after = snapshot(&model)?;
    assert_eq!(after["features.0.0.weight"].size(), vec![32, 3, 3, 3]);
    assert_eq!(before["features.0.0.weight"].size(), vec![32, 1, 3, 3]);
    // The new stem trained (gradients flow through the frozen body), the body did not.
    assert!(!same(&after["features.0.1.weight"], &Tensor::f_ones([32], (Kind::Float, Device::Cpu))?)?);
    for (name, value) in &after {
        if !new_variables.contains(name) {
            assert!(same(value, &before[name])?, "{name} changed");
        }
    }
    Ok(())
}
