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

/// Inference timing at one batch size: eval mode, no gradients, after untimed warm-up runs.
#[derive(Debug, Clone, PartialEq, serde::Serialize)]
pub struct InferenceTiming {
    pub batch: usize,
    pub resolution: u32,
    /// Timed forward passes.
    pub runs: usize,
    pub median_ms: f64,
    /// The 90th percentile (nearest rank) of the forward passes' times.
    pub p90_ms: f64,
    /// Images per second at the median: `batch / median`.
    pub images_per_second: f64,
}

/// Times `runs` forward passes of a batch of `batch` random images at `resolution` (the model's
/// own when `None`) on the model's device, after `warmup` untimed ones, each pass synchronised
/// on a GPU, with every batch norm folded into the convolution before it
/// ([`crate::model::Network::with_folded_norms`]; a deployed network is folded, torchvision's
/// eager modules are not). The one inference measurement of effnas: the latency of a search's
/// and `train`'s results ([`measure_latency`]) and `effnas bench-infer` both come from it.
pub fn time_inference(
    model: &Model,
    batch: usize,
    resolution: Option<u32>,
    warmup: usize,
    runs: usize,
) -> Result<InferenceTiming> {
    time_inference_with(model, batch, resolution, warmup, runs, BatchNorms::Folded)
}

/// How inference runs the batch norms after convolutions.
#[derive(Debug, Clone, Copy, PartialEq, Eq, serde::Serialize)]
#[serde(rename_all = "snake_case")]
pub enum BatchNorms {
    /// Folded into the convolution's weights and bias once, before timing: the deployed form.
    Folded,
    /// A pass of batch norm over each convolution's output, as evaluation during training
    /// runs them (and as PyTorch's eager modules do).
    Separate,
}

/// [`time_inference`] with the batch norms run as `norms` says.
pub fn time_inference_with(
    model: &Model,
    batch: usize,
    resolution: Option<u32>,
    warmup: usize,
    runs: usize,
    norms: BatchNorms,
) -> Result<InferenceTiming> {
    match norms {
        BatchNorms::Folded => {
            model.net.with_folded_norms(|| timed_passes(model, batch, resolution, warmup, runs))?
        }
        BatchNorms::Separate => timed_passes(model, batch, resolution, warmup, runs),
    }
}

fn timed_passes(
    model: &Model,
    batch: usize,
    resolution: Option<u32>,
    warmup: usize,
    runs: usize,
) -> Result<InferenceTiming> {
    let resolution = resolution.unwrap_or(model.arch.resolution);
    let (r, c) = (i64::from(resolution), i64::from(model.arch.input_channels));
    let device = model.device();
    let xs = Tensor::f_randn([batch.max(1) as i64, c, r, r], (Kind::Float, device))?;
    let sync = || {
        if let Device::Cuda(i) = device {
            tch::Cuda::synchronize(i as i64);
        }
    };
    let mut times = tch::no_grad(|| -> Result<Vec<f64>> {
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
        Ok(times)
    })?;
    times.sort_by(f64::total_cmp);
    let median_ms = times[times.len() / 2];
    let p90_ms = times[(times.len() * 9).div_ceil(10).saturating_sub(1)];
    Ok(InferenceTiming {
        batch: batch.max(1),
        resolution,
        runs: times.len(),
        median_ms,
        p90_ms,
        images_per_second: batch.max(1) as f64 / (median_ms / 1e3),
    })
}

/// Median batch-1 inference latency in milliseconds at the model's resolution (MnasNet measured
/// on a phone; this measures on the model's device), after `warmup` untimed runs: the latency
/// objective's figure, from [`time_inference`].
pub fn measure_latency(model: &Model, warmup: usize, runs: usize) -> Result<f64> {
    Ok(time_inference(model, 1, None, warmup, runs)?.median_ms)
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::model::quarter_b0;

    #[test]
    fn inference_timing_counts_its_runs_and_orders_its_percentiles(
    ) -> std::result::Result<(), Box<dyn std::error::Error>> {
        let model = Model::new(&quarter_b0(10, 32)?, Device::Cpu)?;
        let timing = time_inference(&model, 4, Some(48), 1, 7)?;
        assert_eq!((timing.batch, timing.resolution, timing.runs), (4, 48, 7));
        assert!(timing.median_ms > 0.0 && timing.p90_ms >= timing.median_ms, "{timing:?}");
        let expected = 4.0 / (timing.median_ms / 1e3);
        assert!((timing.images_per_second - expected).abs() < 1e-9 * expected);
        Ok(())
    }
}
