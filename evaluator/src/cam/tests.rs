use super::*;
use crate::data::ImageSet;
use crate::train::{train, Normalizer, ProxyConfig, ProxyData};
use effnas_space::ArchSpec;
use rand::{Rng, SeedableRng};
use rand_chacha::ChaCha8Rng;
use tch::Device;

type Boxed<T> = std::result::Result<T, Box<dyn std::error::Error>>;
type TestResult = Boxed<()>;

/// A small network for `classes` classes of 1-channel `resolution`² images: stem (stride 2), two
/// MBConv blocks (the second strided) and a 32-channel head, no dropout or stochastic depth.
fn small_net(classes: u32, resolution: u32) -> std::result::Result<ArchSpec, effnas_space::SpaceError> {
    let mut arch = effnas_space::parse_arch("r1_k3_s11_e1_i32_o16,r2_k3_s22_e3_i16_o24")?;
    arch.input_channels = 1;
    arch.num_classes = classes;
    arch.resolution = resolution;
    arch.head_channels = Some(32);
    arch.dropout = 0.0;
    arch.drop_connect = 0.0;
    arch.validate()?;
    Ok(arch)
}

fn values(t: &Tensor) -> std::result::Result<Vec<f32>, tch::TchError> {
    let t = t.f_to_kind(Kind::Float)?.f_contiguous()?.f_flatten(0, -1)?;
    let n = t.numel();
    let mut out = vec![0f32; n];
    t.f_copy_data(&mut out, n)?;
    Ok(out)
}

/// With a classifier set by hand, every value of M_c equals Σ_k w_ck f_k(y, x) computed by
/// loops over the network's feature map; its mean plus the bias is the network's own logit; and
/// the picture map is that map upsampled, ReLU'd and divided by its maximum.
#[test]
fn the_map_is_the_hand_computed_weighted_sum_of_the_last_features() -> TestResult {
    tch::manual_seed(1);
    let model = Model::new(&small_net(3, 16)?, Device::Cpu)?;
    // Class c weighs channel k by (k mod 5) − 2 + c, bias 0.5 · c.
    let (weight, bias) = model.net.classifier();
    let k_count = weight.size()[1];
    let hand_w: Vec<f32> =
        (0..3 * k_count).map(|i| ((i % k_count) % 5) as f32 - 2.0 + (i / k_count) as f32).collect();
    tch::no_grad(|| -> std::result::Result<(), tch::TchError> {
        weight.shallow_clone().f_copy_(&Tensor::f_from_slice(&hand_w)?.f_reshape([3, k_count])?)?;
        bias.shallow_clone().f_copy_(&Tensor::f_from_slice(&[0.0f32, 0.5, 1.0])?)?;
        Ok(())
    })?;
    let xs = Tensor::f_randn([2, 1, 16, 16], (Kind::Float, Device::Cpu))?;
    let features = tch::no_grad(|| model.net.try_features(&xs))?;
    let (h, w) = (features.size()[2], features.size()[3]);
    assert_eq!((h, w), (4, 4));
    let f = values(&features)?;
    let logits = values(&tch::no_grad(|| model.forward(&xs, false))?)?;
    for class in 0..3u32 {
        let maps = class_activation_maps(&model, &xs, Some(class), (16, 16))?;
        for (n, cam) in maps.iter().enumerate() {
            let raw = values(&cam.raw)?;
            let mut sum = 0.0f64;
            for y in 0..h {
                for x in 0..w {
                    let mut expected = 0.0f64;
                    for k in 0..k_count {
                        let fk = f[(((n as i64 * k_count + k) * h + y) * w + x) as usize];
                        expected +=
                            f64::from(hand_w[(i64::from(class) * k_count + k) as usize]) * f64::from(fk);
                    }
                    let got = f64::from(raw[(y * w + x) as usize]);
                    assert!(
                        (got - expected).abs() < 1e-3 * (1.0 + expected.abs()),
                        "M[{y},{x}] {got} vs {expected}"
                    );
                    sum += expected;
                }
            }
            let logit = sum / (h * w) as f64 + 0.5 * f64::from(class);
            let network_logit = f64::from(logits[n * 3 + class as usize]);
            assert!((logit - network_logit).abs() < 1e-3, "mean + bias {logit} vs logit {network_logit}");
            assert!((cam.logit - network_logit).abs() < 1e-4);
            let expected_map = normalised(&upsample(&cam.raw, (16, 16))?)?;
            let gap = (&cam.map - &expected_map).f_abs()?.f_max()?.f_double_value(&[])?;
            assert!(gap < 1e-6, "map differs by {gap}");
        }
    }
    Ok(())
}

/// Bilinear upsampling (align_corners false) of a 2 × 2 map to 4 × 4, then ReLU and ÷ max, by
/// hand: along each axis [a, b] → [a, ¾a + ¼b, ¼a + ¾b, b].
#[test]
fn upsampling_and_normalising_a_two_by_two_map_matches_the_hand_values() -> TestResult {
    let raw = Tensor::f_from_slice(&[-2.0f32, 2.0, 2.0, 6.0])?.f_reshape([2, 2])?;
    let map = values(&normalised(&upsample(&raw, (4, 4))?)?)?;
    let axis = |a: f64, b: f64| [a, 0.75 * a + 0.25 * b, 0.25 * a + 0.75 * b, b];
    let (top, bottom) = (axis(-2.0, 2.0), axis(2.0, 6.0));
    for x in 0..4 {
        let column = axis(top[x], bottom[x]);
        for y in 0..4 {
            let expected = column[y].max(0.0) / 6.0;
            assert!(
                (f64::from(map[y * 4 + x]) - expected).abs() < 1e-6,
                "({y}, {x}): {} vs {expected}",
                map[y * 4 + x]
            );
        }
    }
    assert_eq!(peak(&Tensor::f_from_slice(&[0.0f32, 0.2, 0.9, 0.1])?.f_reshape([2, 2])?)?, (1, 0));
    assert_eq!(viridis(0.0), [68, 1, 84]);
    assert_eq!(viridis(1.0), [253, 231, 37]);
    assert_eq!(viridis(0.5), [33, 144, 141]);
    Ok(())
}

const SIDE: i64 = 32;
const PATCH: i64 = 8;

/// `n` images of noise (0–127) in which one 8 × 8 patch at a random position decides the class:
/// solid white (class 0) or a white-and-black checkerboard of 2-pixel cells (class 1). Returns
/// the set and each patch's top-left corner.
fn patch_images(n: usize, rng: &mut ChaCha8Rng) -> Boxed<(ImageSet, Vec<(i64, i64)>)> {
    let mut pixels = vec![0u8; n * (SIDE * SIDE) as usize];
    let (mut labels, mut corners) = (Vec::new(), Vec::new());
    for (i, image) in pixels.chunks_exact_mut((SIDE * SIDE) as usize).enumerate() {
        for p in image.iter_mut() {
            *p = rng.random_range(0..128);
        }
        let label = (i % 2) as i64;
        let (top, left) = (rng.random_range(0..=SIDE - PATCH), rng.random_range(0..=SIDE - PATCH));
        for y in 0..PATCH {
            for x in 0..PATCH {
                let white = label == 0 || ((y / 2) + (x / 2)) % 2 == 0;
                image[((top + y) * SIDE + left + x) as usize] = if white { 255 } else { 0 };
            }
        }
        labels.push(label);
        corners.push((top, left));
    }
    let images = Tensor::f_from_slice(&pixels)?.f_reshape([n as i64, 1, SIDE, SIDE])?;
    let labels = Tensor::f_from_slice(&labels)?;
    Ok((ImageSet::with_numbered_classes(images, labels, 2)?, corners))
}

/// A network trained on images whose class only a small patch at a random position decides puts
/// the peak of its class activation map on (or within 2 pixels of) the patch for most held-out
/// images. Measured: see the assertion message; the threshold is set well below it.
#[test]
fn the_map_of_a_network_trained_on_patches_peaks_on_the_patch() -> TestResult {
    tch::manual_seed(0);
    let mut rng = ChaCha8Rng::seed_from_u64(7);
    let (train_set, _) = patch_images(800, &mut rng)?;
    let (validation, _) = patch_images(100, &mut rng)?;
    let (held_out, corners) = patch_images(100, &mut rng)?;
    let data = ProxyData::new("patches", train_set, validation, None)?;
    let config = ProxyConfig {
        epochs: 3,
        batch_size: 32,
        lr: 0.1,
        bn_recalibration_images: 256,
        ..ProxyConfig::default()
    };
    let trained = train(&small_net(2, SIDE as u32)?, &data, &config, Device::Cpu)?;
    let model = trained.model.ok_or("no model")?;
    assert!(trained.result.accuracy > 0.9, "validation accuracy {}", trained.result.accuracy);
    let normalize = Normalizer::from_images(&data.train.images)?;
    let maps = class_activation_maps(&model, &normalize.apply(&held_out.images)?, None, (SIDE, SIDE))?;
    let margin = 2;
    let on_patch = maps
        .iter()
        .zip(&corners)
        .map(|(cam, &(top, left))| {
            let (y, x) = peak(&cam.map)?;
            Ok((top - margin..top + PATCH + margin).contains(&y)
                && (left - margin..left + PATCH + margin).contains(&x))
        })
        .collect::<Result<Vec<bool>>>()?
        .into_iter()
        .filter(|&hit| hit)
        .count();
    let fraction = on_patch as f64 / maps.len() as f64;
    eprintln!("CAM peak on the patch for {on_patch} of {} held-out images", maps.len());
    assert!(fraction >= 0.6, "CAM peak on the patch for only {on_patch} of {} images", maps.len());
    Ok(())
}
