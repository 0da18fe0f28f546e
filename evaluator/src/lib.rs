//! libtorch evaluator.
//!
//! - [`model`]: `ArchSpec` → tch network with torchvision-compatible names; checkpoints.
//! - [`train`]: the proxy trainer (MnasNet §4: short training on a held-out split).
//! - [`cam`]: class activation maps (Zhou et al., 2016) and their pictures.
//! - [`transfer`]: a trained network adapted to another data set, and what of it trains.
//! - [`score`]: the reward `ACC × (X / T)^w` with soft or hard constraint.
//! - [`pool`]: K workers per device training proxies concurrently.
//! - [`device`]: device parsing, availability and CPU thread budgets.

pub mod cam;
pub mod data;
pub mod device;
pub mod error;
pub mod model;
pub mod optim;
pub mod pool;
pub mod score;
pub mod train;
pub mod transfer;

pub use error::EvalError;

#[cfg(test)]
mod tests {
    use tch::{nn, nn::Module, Device, Kind, Tensor};

    #[test]
    fn libtorch_runs_a_convolution_on_cpu() {
        tch::manual_seed(0);
        let vs = nn::VarStore::new(Device::Cpu);
        let conv =
            nn::conv2d(vs.root(), 3, 8, 3, nn::ConvConfig { stride: 2, padding: 1, ..Default::default() });
        let out = conv.forward(&Tensor::zeros([2, 3, 32, 32], (Kind::Float, Device::Cpu)));
        assert_eq!(out.size(), vec![2, 8, 16, 16]);
    }
}
