//! Times forward, backward and optimizer step of B0 separately (investigation aid).
use effnas_evaluator::model::Model;
use effnas_evaluator::optim::{Optimizer, OptimizerKind};
use std::time::Instant;
use tch::{Device, Kind, Reduction, Tensor};
fn main() -> Result<(), Box<dyn std::error::Error>> {
    let mut arch = effnas_space::presets::efficientnet_b0();
    arch.num_classes = 10;
    arch.resolution = 32;
    if std::env::var("NODROP").is_ok() {
        arch.drop_connect = 0.0;
        arch.dropout = 0.0;
    }
    let model = Model::new(&arch, Device::Cpu)?;
    let mut opt = Optimizer::new(&model.vs, OptimizerKind::SGD, 1e-5)?;
    let xs = Tensor::f_randn([32, 3, 32, 32], (Kind::Float, Device::Cpu))?;
    let ys = Tensor::f_randint(10, [32], (Kind::Int64, Device::Cpu))?;
    for i in 0..8 {
        let t0 = Instant::now();
        let loss = model.forward(&xs, true)?.f_cross_entropy_loss::<Tensor>(
            &ys,
            None,
            Reduction::Mean,
            -100,
            0.1,
        )?;
        let t1 = Instant::now();
        opt.zero_grad()?;
        loss.f_backward()?;
        let t2 = Instant::now();
        opt.step(0.01)?;
        let t3 = Instant::now();
        println!("{i}: fwd {:?} bwd {:?} opt {:?}", t1 - t0, t2 - t1, t3 - t2);
    }
    Ok(())
}
