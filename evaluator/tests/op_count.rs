//! The optimizer's share of a training step in libtorch operations (each at least one kernel
//! launch on a GPU), counted through libtorch's dispatcher: a constant handful for the flat
//! optimizer, whatever the number of parameter tensors; several per tensor for the per-tensor
//! form. Alone in its test binary, because counting is process-wide.

use effnas_evaluator::model::Model;
use effnas_evaluator::optim::per_tensor::PerTensorOptimizer;
use effnas_evaluator::optim::{Optimizer, OptimizerKind, Update};
use tch::{Device, Kind, Reduction, Tensor};

/// Operations of `zero_grad` + `step` in the second training step of `model` (the first creates
/// the optimizer's buffers).
fn optimizer_operations(
    model: &Model,
    optimizer: &mut dyn Update,
) -> Result<u64, Box<dyn std::error::Error>> {
    let xs = Tensor::f_randn([2, 3, 32, 32], (Kind::Float, Device::Cpu))?;
    let ys = Tensor::f_randint(10, [2], (Kind::Int64, Device::Cpu))?;
    let mut counted = 0;
    for _ in 0..2 {
        let loss = model.forward(&xs, true)?.f_cross_entropy_loss::<Tensor>(
            &ys,
            None,
            Reduction::Mean,
            -100,
            0.0,
        )?;
        let (zeroed, zero) = effnas_opcount::count(|| optimizer.zero_grad())?;
        zeroed?;
        loss.f_backward()?;
        let (stepped, step) = effnas_opcount::count(|| optimizer.step(0.01))?;
        stepped?;
        counted = zero.top_level + step.top_level;
    }
    Ok(counted)
}

#[test]
fn the_flat_optimizer_launches_a_constant_handful_per_step() -> Result<(), Box<dyn std::error::Error>> {
    let quarter = effnas_space::Multipliers { width: 0.25, depth: 1.0, resolution: 1.0 };
    for depth in [0.5, 1.0, 2.0] {
        let multipliers = effnas_space::Multipliers { depth, ..quarter };
        let mut arch = effnas_space::scale(&effnas_space::presets::efficientnet_b0(), multipliers)?;
        arch.num_classes = 10;
        arch.resolution = 32;
        let model = Model::new(&arch, Device::Cpu)?;
        let tensors = model.vs.trainable_variables().len() as u64;
        for (kind, limit) in [(OptimizerKind::SGD, 10), (OptimizerKind::RMSPROP, 16)] {
            let flat = optimizer_operations(&model, &mut Optimizer::new(&model.vs, kind, 1e-5)?)?;
            assert!(flat <= limit, "{kind:?}, {tensors} tensors: {flat} operations per step");
            let per_tensor =
                optimizer_operations(&model, &mut PerTensorOptimizer::new(&model.vs, kind, 1e-5))?;
            assert!(per_tensor >= 3 * tensors, "{kind:?}, {tensors} tensors: per-tensor form {per_tensor}");
        }
    }
    Ok(())
}
