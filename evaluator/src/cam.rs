//! Class activation maps (CAM): where in an image a network finds the evidence for a class.
//!
//! Zhou et al., 2016, "Learning Deep Features for Discriminative Localization" (CVPR), §2: for a
//! network that ends in global average pooling and a linear classifier, as EfficientNet does,
//! the logit of class c is `S_c = Σ_k w_k^c · mean_{x,y} f_k(x, y) + b_c`, where `f_k` is the
//! k-th channel of the last feature map and `w^c` the classifier's row for c. Exchanging the sums
//! gives the class activation map `M_c(x, y) = Σ_k w_k^c f_k(x, y)`, whose mean over the feature
//! grid plus `b_c` is exactly `S_c`: each position's share of the evidence. The paper upsamples
//! `M_c` to the input's size to read it against the image; so does [`class_activation_maps`]
//! (bilinearly), and for a picture it keeps the positive evidence (ReLU) divided by its maximum,
//! so that 1 marks the strongest position. The EfficientNet paper's Figure 7 shows such maps
//! for B0 scaled by width, depth, resolution and compound scaling.
//!
//! [`viridis`] colours a map, [`overlay`] blends it over the image, [`write_png`] writes the
//! result.

use std::path::Path;

use tch::{Kind, Tensor};

use crate::error::{EvalError, Result};
use crate::model::Model;

/// The class activation map of one image.
#[derive(Debug)]
pub struct ClassMap {
    /// The class the map is for: the predicted one unless another was asked for.
    pub class: u32,
    /// The class with the highest logit.
    pub predicted: u32,
    /// Softmax probability of `class`.
    pub probability: f64,
    /// Logit of `class`: equals the mean of `raw` plus the class's bias.
    pub logit: f64,
    /// `M_c` on the feature grid, `[h, w]` fp32, as the paper defines it (unnormalised).
    pub raw: Tensor,
    /// `M_c` upsampled bilinearly to the requested size `[H, W]`, negative values set to 0 and
    /// divided by the maximum (all zeros when no position is positive): values in [0, 1].
    pub map: Tensor,
}

/// Class activation maps of a batch of normalised float images `[N, C, H, W]` (as the network
/// was trained on), in evaluation mode, for `class` or, when `None`, each image's predicted
/// class; `size` is the (height, width) of [`ClassMap::map`], usually the input's.
pub fn class_activation_maps(
    model: &Model,
    images: &Tensor,
    class: Option<u32>,
    size: (i64, i64),
) -> Result<Vec<ClassMap>> {
    let classes = model.arch.num_classes;
    if let Some(c) = class.filter(|&c| c >= classes) {
        return Err(EvalError::config(
            "class",
            format!("{c} is not a class of this network (0 to {})", classes - 1),
        ));
    }
    tch::no_grad(|| {
        let features = model.net.try_features(images)?;
        let (weight, bias) = model.net.classifier();
        let logits =
            features.f_mean_dim(&[2i64, 3][..], false, None::<Kind>)?.f_linear(weight, Some(bias))?;
        let probabilities = logits.f_softmax(-1, Kind::Float)?;
        // M[n, c, y, x] = Σ_k w[c, k] · f[n, k, y, x] for every class at once.
        let maps = Tensor::f_einsum("ck,nkyx->ncyx", &[weight, &features], None::<&[i64]>)?;
        let n = images.size()[0];
        let mut out = Vec::with_capacity(n as usize);
        for i in 0..n {
            let predicted = logits.f_get(i)?.f_argmax(0, false)?.f_int64_value(&[])? as u32;
            let c = class.unwrap_or(predicted);
            let raw = maps.f_get(i)?.f_get(i64::from(c))?;
            out.push(ClassMap {
                class: c,
                predicted,
                probability: probabilities.f_double_value(&[i, i64::from(c)])?,
                logit: logits.f_double_value(&[i, i64::from(c)])?,
                map: normalised(&upsample(&raw, size)?)?,
                raw,
            });
        }
        Ok(out)
    })
}

/// A `[h, w]` map resized bilinearly to `size` (pixel centres aligned as PyTorch's default,
/// `align_corners=False`).
fn upsample(map: &Tensor, (height, width): (i64, i64)) -> Result<Tensor, tch::TchError> {
    let size = map.size();
    map.f_reshape([1, 1, size[0], size[1]])?
        .f_upsample_bilinear2d([height, width], false, None, None)?
        .f_reshape([height, width])
}

/// Positive part divided by its maximum; zeros when nothing is positive.
fn normalised(map: &Tensor) -> Result<Tensor, tch::TchError> {
    let positive = map.f_relu()?;
    let max = positive.f_max()?.f_double_value(&[])?;
    if max > 0.0 {
        positive.f_div_scalar(max)
    } else {
        Ok(positive)
    }
}

/// (row, column) of a map's largest value (the first in row-major order on ties).
pub fn peak(map: &Tensor) -> Result<(i64, i64)> {
    let width = map.size()[1];
    let index = map.f_flatten(0, -1)?.f_argmax(0, false)?.f_int64_value(&[])?;
    Ok((index / width, index % width))
}

/// Samples of matplotlib's viridis colour map at 0, 1/8, …, 1 (perceptually uniform, readable
/// in grey and by colour-blind readers), between which [`viridis`] interpolates linearly.
const VIRIDIS: [[f64; 3]; 9] = [
    [68.0, 1.0, 84.0],
    [71.0, 44.0, 122.0],
    [59.0, 81.0, 139.0],
    [44.0, 113.0, 142.0],
    [33.0, 144.0, 141.0],
    [39.0, 173.0, 129.0],
    [92.0, 200.0, 99.0],
    [170.0, 220.0, 50.0],
    [253.0, 231.0, 37.0],
];

/// The viridis colour of `value` in [0, 1] (clamped; NaN counts as 0): dark blue-violet at 0,
/// green in the middle, yellow at 1.
pub fn viridis(value: f64) -> [u8; 3] {
    let v = if value.is_nan() { 0.0 } else { value.clamp(0.0, 1.0) } * (VIRIDIS.len() - 1) as f64;
    let low = (v.floor() as usize).min(VIRIDIS.len() - 2);
    let t = v - low as f64;
    let (a, b) = (VIRIDIS[low], VIRIDIS[low + 1]);
    [0, 1, 2].map(|i| (a[i] + (b[i] - a[i]) * t).round() as u8)
}

/// An RGB picture (`[H, W, 3]` row-major bytes) of `image` (uint8 `[C, h, w]`, 1 or 3
/// channels, resized bilinearly to the map's size) with `map` (`[H, W]` in [0, 1]) coloured by
/// [`viridis`] blended over it: `(1 − alpha) · image + alpha · colour`.
pub fn overlay(image: &Tensor, map: &Tensor, alpha: f64) -> Result<Vec<u8>> {
    let (height, width) = (map.size()[0], map.size()[1]);
    let image = image
        .f_to_device(tch::Device::Cpu)?
        .f_unsqueeze(0)?
        .f_to_kind(Kind::Float)?
        .f_upsample_bilinear2d([height, width], false, None, None)?
        .f_round()?
        .f_clamp(0.0, 255.0)?
        .f_to_kind(Kind::Uint8)?
        .f_squeeze_dim(0)?;
    let image = if image.size()[0] == 1 { image.f_expand([3, height, width], false)? } else { image };
    let pixels = image.f_permute([1, 2, 0])?.f_contiguous()?;
    let count = (height * width) as usize;
    let mut rgb = vec![0u8; count * 3];
    pixels.f_copy_data(&mut rgb, count * 3)?;
    let mut values = vec![0f32; count];
    map.f_to_device(tch::Device::Cpu)?
        .f_to_kind(Kind::Float)?
        .f_contiguous()?
        .f_copy_data(&mut values, count)?;
    for (pixel, &value) in rgb.chunks_exact_mut(3).zip(&values) {
        let colour = viridis(f64::from(value));
        for (channel, c) in pixel.iter_mut().zip(colour) {
            *channel = ((1.0 - alpha) * f64::from(*channel) + alpha * f64::from(c)).round() as u8;
        }
    }
    Ok(rgb)
}

/// Writes RGB bytes (`[height, width, 3]` row-major) as a PNG file.
pub fn write_png(path: &Path, width: u32, height: u32, rgb: &[u8]) -> Result<()> {
    image::save_buffer_with_format(path, rgb, width, height, image::ColorType::Rgb8, image::ImageFormat::Png)
        .map_err(|e| EvalError::file(path, e))
}

#[cfg(test)]
mod tests;
