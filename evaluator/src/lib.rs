//! libtorch evaluator.

#[cfg(test)]
mod tests {
    use tch::{nn, nn::Module, Device, Kind, Tensor};

    #[test]
    fn libtorch_runs_a_convolution_on_cpu() {
        tch::manual_seed(0);
        let vs = nn::VarStore::new(Device::Cpu);
        let conv = nn::conv2d(vs.root(), 3, 8, 3, nn::ConvConfig { stride: 2, padding: 1, ..Default::default() });
        let out = conv.forward(&Tensor::zeros([2, 3, 32, 32], (Kind::Float, Device::Cpu)));
        assert_eq!(out.size(), vec![2, 8, 16, 16]);
    }
}
