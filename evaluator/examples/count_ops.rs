//! Operations libtorch dispatches in one training step of EfficientNet-B0, by phase (forward,
//! backward, optimizer: gradient zeroing and update), for the flat optimizer and the per-tensor
//! one: each operation is at least one kernel launch on a GPU, where small proxies are
//! launch-bound. Counted with `effnas-opcount` (a `RecordFunction` callback, the hook of
//! libtorch's profiler). Prints one JSON line per optimizer form.
//!
//! ```text
//! count_ops [--batch 64] [--resolution 32] [--channels-last]
//! ```

use effnas_evaluator::model::Model;
use effnas_evaluator::optim::per_tensor::PerTensorOptimizer;
use effnas_evaluator::optim::{Optimizer, OptimizerKind, Update};
use effnas_opcount::{count, Counts};
use tch::{Device, Kind, Reduction, Tensor};

type BoxResult<T> = Result<T, Box<dyn std::error::Error>>;

fn main() -> BoxResult<()> {
    let args: Vec<String> = std::env::args().skip(1).collect();
    let value = |name: &str, default: i64| -> BoxResult<i64> {
        match args.iter().position(|a| a == name) {
            Some(i) => Ok(args.get(i + 1).ok_or(format!("{name} needs a value"))?.parse()?),
            None => Ok(default),
        }
    };
    let (batch, resolution) = (value("--batch", 64)?, value("--resolution", 32)?);
    let channels_last = args.iter().any(|a| a == "--channels-last");
    for form in ["flat", "per-tensor"] {
        let mut arch = effnas_space::presets::efficientnet_b0();
        arch.num_classes = 10;
        arch.resolution = resolution as u32;
        let mut model = Model::new(&arch, Device::Cpu)?;
        if channels_last {
            model.to_channels_last()?;
        }
        let mut optimizer: Box<dyn Update> = match form {
            "flat" => Box::new(Optimizer::new(&model.vs, OptimizerKind::SGD, 1e-5)?),
            _ => Box::new(PerTensorOptimizer::new(&model.vs, OptimizerKind::SGD, 1e-5)),
        };
        let xs = Tensor::f_randn([batch, 3, resolution, resolution], (Kind::Float, Device::Cpu))?;
        let ys = Tensor::f_randint(10, [batch], (Kind::Int64, Device::Cpu))?;
        let mut phases: Vec<(&str, Counts)> = Vec::new();
        // The second step is counted: the first creates the momentum buffers.
        for step in 0..2 {
            let (loss, forward) = count(|| {
                model.forward(&xs, true).and_then(|logits| {
                    Ok(logits.f_cross_entropy_loss::<Tensor>(&ys, None, Reduction::Mean, -100, 0.1)?)
                })
            })?;
            let loss = loss?;
            let (zeroed, zero) = count(|| optimizer.zero_grad())?;
            zeroed?;
            let (done, backward) = count(|| loss.f_backward())?;
            done?;
            let (stepped, update) = count(|| optimizer.step(0.01))?;
            stepped?;
            if step == 1 {
                let optimizer_share =
                    Counts { top_level: zero.top_level + update.top_level, all: zero.all + update.all };
                phases = vec![("forward", forward), ("backward", backward), ("optimizer", optimizer_share)];
            }
        }
        let tensors = model.vs.trainable_variables().len();
        let fields: Vec<String> = phases
            .iter()
            .map(|(phase, c)| format!("\"{phase}\":{{\"top_level\":{},\"all\":{}}}", c.top_level, c.all))
            .collect();
        println!(
            "{{\"optimizer\":\"{form}\",\"batch\":{batch},\"resolution\":{resolution},\"channels_last\":{channels_last},\"parameter_tensors\":{tensors},{}}}",
            fields.join(",")
        );
    }
    Ok(())
}
