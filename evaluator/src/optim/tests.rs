//! The update rules checked by hand on both forms of the optimizer, and the flat form checked
//! against the per-tensor form on a real network.

use super::per_tensor::PerTensorOptimizer;
use super::*;
use crate::model::Model;
use tch::{Device, Reduction};

/// Both forms over `vs`.
fn both(vs: &VarStore, kind: OptimizerKind, weight_decay: f64) -> Result<Vec<Box<dyn Update>>, TchError> {
    Ok(vec![
        Box::new(PerTensorOptimizer::new(vs, kind, weight_decay)),
        Box::new(Optimizer::new(vs, kind, weight_decay)?),
    ])
}

/// Minimising ‖x‖² from x = 1: SGD with lr 0.1, momentum 0.9 after two steps, by hand:
/// g₁ = 2, b₁ = 2, x₁ = 0.8; g₂ = 1.6, b₂ = 0.9·2 + 1.6 = 3.4, x₂ = 0.8 − 0.34 = 0.46.
#[test]
fn sgd_momentum_matches_hand_computation() -> Result<(), TchError> {
    for form in 0..2 {
        let vs = VarStore::new(Device::Cpu);
        let x = vs.root().f_ones("x", &[1])?;
        let mut opt = both(&vs, OptimizerKind::SGD, 0.0)?.remove(form);
        for _ in 0..2 {
            opt.zero_grad()?;
            x.f_square()?.f_sum(Kind::Float)?.f_backward()?;
            opt.step(0.1)?;
        }
        let value = x.f_double_value(&[0])?;
        assert!((value - 0.46).abs() < 1e-6, "form {form}: {value}");
    }
    Ok(())
}

/// timm's `RMSpropTF` (ρ 0.9, μ 0.9, ε 1e-3) minimising x² from x = 1 over three steps
/// with learning rates 0.1, 0.05, 0.2, computed by hand from the formula
/// `s ← ρ·s + (1 − ρ)·g²` (s₀ = 1), `b ← μ·b + lr·g / √(s + ε)` (b₀ = 0), `x ← x − b`:
///
/// 1. g = 2, s = 0.9 + 0.4 = 1.3, b = 0.1·2/√1.301 = 0.175344…, x = 0.824656…
/// 2. g = 1.649312…, s = 1.17 + 0.272023… = 1.442023…, b = 0.9·b₁ + 0.05·g/√1.443023…
///    = 0.157810… + 0.068649… = 0.226459…, x = 0.598197…
/// 3. g = 1.196393…, s = 1.297821… + 0.143136… = 1.440957…, b = 0.203813… + 0.2·g/√1.441957…
///    = 0.203813… + 0.199264… = 0.403077…, x = 0.195120…
///
/// Applying lr outside the momentum buffer instead (`b ← μ·b + g / √(s + ε)`, `x ← x − lr·b`)
/// would give x₃ = −0.076557…
#[test]
fn rmsprop_matches_timm_rmsproptf_with_a_changing_learning_rate() -> Result<(), TchError> {
    let (rho, mu, eps) = (0.9, 0.9, 1e-3);
    let lrs = [0.1, 0.05, 0.2];
    let (mut x, mut s, mut b) = (1.0f64, 1.0f64, 0.0f64);
    let mut expected = Vec::new();
    for lr in lrs {
        let g = 2.0 * x;
        s = rho * s + (1.0 - rho) * g * g;
        b = mu * b + lr * g / (s + eps).sqrt();
        x -= b;
        expected.push(x);
    }
    // The hand computation above, to six places.
    for (got, want) in expected.iter().zip([0.824656, 0.598197, 0.195120]) {
        assert!((got - want).abs() < 1e-6, "formula {got} vs hand {want}");
    }
    for form in 0..2 {
        let vs = VarStore::new(Device::Cpu);
        let var = vs.root().f_var_copy("x", &Tensor::from_slice(&[1.0f32]))?;
        let kind = OptimizerKind::RmsProp { decay: rho, momentum: mu, eps };
        let mut opt = both(&vs, kind, 0.0)?.remove(form);
        for (lr, want) in lrs.into_iter().zip(expected.iter()) {
            opt.zero_grad()?;
            var.f_square()?.f_sum(Kind::Float)?.f_backward()?;
            opt.step(lr)?;
            let got = var.f_double_value(&[0])?;
            // The variable is fp32 (the VarStore's kind): agreement to fp32 precision.
            assert!((got - want).abs() < 1e-6, "form {form}, lr {lr}: {got} vs {want}");
        }
    }
    Ok(())
}

#[test]
fn weight_decay_skips_vectors() -> Result<(), TchError> {
    for form in 0..2 {
        let vs = VarStore::new(Device::Cpu);
        // The bias is registered first: the flat form must still find the matrix's slice.
        let bias = vs.root().f_ones("b", &[2])?;
        let matrix = vs.root().f_ones("w", &[2, 2])?;
        let mut opt = both(&vs, OptimizerKind::Sgd { momentum: 0.0 }, 0.5)?.remove(form);
        // A zero loss gradient: only decay moves the matrix; the bias keeps its value.
        opt.zero_grad()?;
        (matrix.f_sum(Kind::Float)? * 0.0 + bias.f_sum(Kind::Float)? * 0.0).f_backward()?;
        opt.step(0.1)?;
        assert!((matrix.f_double_value(&[1, 1])? - 0.95).abs() < 1e-6, "form {form}");
        assert!((bias.f_double_value(&[1])? - 1.0).abs() < 1e-6, "form {form}");
    }
    Ok(())
}

/// A small EfficientNet-B0 twice, with the same weights. Copied, not built twice from one seed:
/// tests run in parallel and share libtorch's random generator.
fn twin_models() -> Result<(Model, Model), Box<dyn std::error::Error>> {
    let arch = crate::model::quarter_b0(8, 32)?;
    let a = Model::new(&arch, Device::Cpu)?;
    let mut b = Model::new(&arch, Device::Cpu)?;
    b.vs.copy(&a.vs)?;
    Ok((a, b))
}

/// Five training steps of B0 with each form, weight decay on, from the same weights on the same
/// batches: the parameters agree to floating-point tolerance (the operations are the same, so
/// they agree exactly in practice), for SGD and for RMSProp with a changing learning rate.
#[test]
fn the_flat_form_trains_a_network_as_the_per_tensor_form_does() -> Result<(), Box<dyn std::error::Error>> {
    for kind in [OptimizerKind::SGD, OptimizerKind::RMSPROP] {
        let (reference, flat) = twin_models()?;
        let first = "features.0.0.weight";
        let initial = flat.vs.variables()[first].f_detach_copy()?;
        let mut per_tensor = PerTensorOptimizer::new(&reference.vs, kind, 1e-3);
        let mut optimizer = Optimizer::new(&flat.vs, kind, 1e-3)?;
        for step in 0..5 {
            let xs = Tensor::f_randn([8, 3, 32, 32], (Kind::Float, Device::Cpu))?;
            let ys = Tensor::f_randint(8, [8], (Kind::Int64, Device::Cpu))?;
            // A changing learning rate, small enough that training does not diverge (a diverging
            // network would amplify any rounding difference).
            let lr = 0.01 * (1.0 + step as f64);
            for (model, opt) in [(&reference, &mut per_tensor as &mut dyn Update), (&flat, &mut optimizer)] {
                let loss = model.forward(&xs, true)?.f_cross_entropy_loss::<Tensor>(
                    &ys,
                    None,
                    Reduction::Mean,
                    -100,
                    0.1,
                )?;
                opt.zero_grad()?;
                loss.f_backward()?;
                opt.step(lr)?;
            }
        }
        let flat_vars = flat.vs.variables();
        let mut compared = 0;
        for (name, want) in reference.vs.variables() {
            let got = &flat_vars[&name];
            let gap = (got - &want).f_abs()?.f_max()?.f_double_value(&[])?;
            let scale = want.f_abs()?.f_max()?.f_double_value(&[])?.max(1e-3);
            assert!(gap <= 1e-5 * scale, "{kind:?}: {name} differs by {gap} (scale {scale})");
            compared += 1;
        }
        assert!(compared > 200, "only {compared} variables compared");
        // The flat form really moved the weights (a step that did nothing would also agree with
        // nothing): the first kernel differs from its initial value.
        let moved = (&flat_vars[first] - &initial).f_abs()?.f_max()?.f_double_value(&[])?;
        assert!(moved > 0.0, "{kind:?}: {first} did not move");
    }
    Ok(())
}

/// The variables live in the optimizer's buffers: the buffer's elements are theirs, the update
/// reaches them, and a variable's layout (here a channels-last kernel) is kept.
#[test]
fn variables_become_views_of_one_buffer_and_keep_their_strides() -> Result<(), TchError> {
    let vs = VarStore::new(Device::Cpu);
    let contiguous = vs.root().f_randn_standard("k", &[4, 3, 3, 3])?;
    let channels_last = vs.root().f_randn_standard("c", &[4, 3, 3, 3])?;
    let relaid = channels_last.f_permute([0, 2, 3, 1])?.f_contiguous()?.f_permute([0, 3, 1, 2])?;
    let mut target = channels_last.shallow_clone();
    tch::no_grad(|| target.f_set_data(&relaid))?;
    let strides = channels_last.stride();
    assert_eq!(strides, vec![27, 1, 9, 3]);
    let before = channels_last.f_detach_copy()?;
    let mut opt = Optimizer::new(&vs, OptimizerKind::Sgd { momentum: 0.0 }, 0.0)?;
    assert_eq!(channels_last.stride(), strides, "the layout is kept");
    assert!((&channels_last - &before).f_abs()?.f_max()?.f_double_value(&[])? == 0.0, "values kept");
    assert_eq!(opt.groups.len(), 1);
    assert_eq!(opt.groups[0].params.numel(), 2 * 108);
    // Loss Σ c·w over the channels-last kernel: its gradient is w, so one step at lr 1 subtracts
    // w from each element; the contiguous kernel has no gradient and stays.
    let weights = Tensor::f_arange(108, (Kind::Float, Device::Cpu))?.f_view([4, 3, 3, 3])?;
    opt.zero_grad()?;
    (&channels_last * &weights).f_sum(Kind::Float)?.f_backward()?;
    assert_eq!(channels_last.grad().stride(), strides, "the gradient is laid out like its variable");
    let kept = contiguous.f_detach_copy()?;
    opt.step(1.0)?;
    let gap = (&channels_last - (&before - &weights)).f_abs()?.f_max()?.f_double_value(&[])?;
    assert!(gap < 1e-4, "step through the buffer: off by {gap}");
    assert!((&contiguous - &kept).f_abs()?.f_max()?.f_double_value(&[])? == 0.0);
    // Zeroing is one operation on the buffer, and the variables' gradients see it.
    opt.zero_grad()?;
    assert_eq!(channels_last.grad().f_abs()?.f_max()?.f_double_value(&[])?, 0.0);
    Ok(())
}

#[test]
fn density_of_layouts() -> Result<(), TchError> {
    let t = Tensor::f_zeros([2, 3, 4, 5], (Kind::Float, Device::Cpu))?;
    assert!(is_dense(&t));
    assert!(is_dense(&t.f_permute([0, 2, 3, 1])?.f_contiguous()?.f_permute([0, 3, 1, 2])?));
    assert!(!is_dense(&t.f_narrow(1, 0, 2)?), "a slice has gaps");
    assert!(!is_dense(&t.f_expand([2, 2, 3, 4, 5], false)?), "a broadcast overlaps itself");
    Ok(())
}
