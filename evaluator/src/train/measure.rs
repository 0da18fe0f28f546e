//! Measurements of a trained model: top-1 accuracy and batch-1 latency.

use std::time::Instant;

use tch::{Device, Kind, Tensor};

use super::Normalizer;
use crate::error::Result;
use crate::model::Model;

/// Top-1 accuracy of `model` on uint8 images, without gradients, in eval mode.
pub fn evaluate(
    model: &Model,
    images: &Tensor,
    labels: &Tensor,
    normalize: &Normalizer,
    batch: usize,
) -> Result<f64> {
    let n = images.size()[0];
    let batch = batch as i64;
    tch::no_grad(|| {
        let mut correct = Tensor::f_zeros([] as [i64; 0], (Kind::Int64, images.device()))?;
        let mut start = 0;
        while start < n {
            let len = batch.min(n - start);
            let xs = normalize.apply(&images.f_narrow(0, start, len)?)?;
            let logits = model.net.try_forward(&xs, false)?;
            let predicted = logits.f_argmax(-1, false)?;
            correct = correct
                .f_add(&predicted.f_eq_tensor(&labels.f_narrow(0, start, len)?)?.f_sum(Kind::Int64)?)?;
            start += len;
        }
        Ok(correct.f_double_value(&[])? / n.max(1) as f64)
    })
}

/// Median batch-1 inference latency in milliseconds at the model's resolution (MnasNet measured
/// on a phone; this measures on the model's device), after `warmup` untimed runs.
pub fn measure_latency(model: &Model, warmup: usize, runs: usize) -> Result<f64> {
    let r = i64::from(model.arch.resolution);
    let c = i64::from(model.arch.input_channels);
    let device = model.device();
    let xs = Tensor::f_zeros([1, c, r, r], (Kind::Float, device))?;
    let sync = || {
        if let Device::Cuda(i) = device {
            tch::Cuda::synchronize(i as i64);
        }
    };
    tch::no_grad(|| {
        for _ in 0..warmup {
            let _ = model.net.try_forward(&xs, false)?;
        }
        sync();
        let mut times = Vec::with_capacity(runs.max(1));
        for _ in 0..runs.max(1) {
            let t = Instant::now();
            let _ = model.net.try_forward(&xs, false)?;
            sync();
            times.push(t.elapsed().as_secs_f64() * 1e3);
        }
        times.sort_by(f64::total_cmp);
        Ok(times[times.len() / 2])
    })
}
