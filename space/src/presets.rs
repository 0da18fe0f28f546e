//! Preset architectures, as tables: EfficientNet-B0 (paper Table 1) scaled to B1–B7 by the
//! official (width, depth, resolution, dropout) coefficients, MnasNet-A1 (MnasNet paper,
//! Figure 7), the MobileNetV2 base the MnasNet space is built around, and the other baselines
//! of EfficientNet's Table 3: ResNet-18/34/50 (He et al., 2016, Table 1, in torchvision's
//! layout) and MobileNetV1 (Howard et al., 2017, Table 1).

use crate::arch::{defaults, Activation, ArchSpec};
use crate::codec::parse_block_chain;
use crate::scaling::{scale, Multipliers};

/// EfficientNet-B0's seven stages in the official TF block strings.
#[rustfmt::skip]
pub const EFFICIENTNET_B0_BLOCKS: [&str; 7] = [
    "r1_k3_s11_e1_i32_o16_se0.25",
    "r2_k3_s22_e6_i16_o24_se0.25",
    "r2_k5_s22_e6_i24_o40_se0.25",
    "r3_k3_s22_e6_i40_o80_se0.25",
    "r3_k5_s11_e6_i80_o112_se0.25",
    "r4_k5_s22_e6_i112_o192_se0.25",
    "r1_k3_s11_e6_i192_o320_se0.25",
];

/// MnasNet-A1 in the TF block strings.
#[rustfmt::skip]
pub const MNASNET_A1_BLOCKS: [&str; 7] = [
    "r1_k3_s11_e1_i32_o16_noskip",
    "r2_k3_s22_e6_i16_o24",
    "r3_k5_s22_e3_i24_o40_se0.25",
    "r4_k3_s22_e6_i40_o80",
    "r2_k3_s11_e6_i80_o112_se0.25",
    "r3_k5_s22_e6_i112_o160_se0.25",
    "r1_k3_s11_e6_i160_o320",
];

/// The MobileNetV2 stages (SiLU instead of ReLU6 in our builder; the shapes are the paper's).
#[rustfmt::skip]
pub const MOBILENET_V2_BLOCKS: [&str; 7] = [
    "r1_k3_s11_e1_i32_o16",
    "r2_k3_s22_e6_i16_o24",
    "r3_k3_s22_e6_i24_o32",
    "r4_k3_s22_e6_i32_o64",
    "r3_k3_s11_e6_i64_o96",
    "r3_k3_s22_e6_i96_o160",
    "r1_k3_s11_e6_i160_o320",
];

/// ResNet-18's four stages (He et al., 2016, Table 1): basic blocks, stride 2 from the second.
#[rustfmt::skip]
pub const RESNET_18_BLOCKS: [&str; 4] = [
    "basic_r2_k3_s11_i64_o64",
    "basic_r2_k3_s22_i64_o128",
    "basic_r2_k3_s22_i128_o256",
    "basic_r2_k3_s22_i256_o512",
];

/// ResNet-34's four stages: ResNet-18's with 3, 4, 6, 3 layers.
#[rustfmt::skip]
pub const RESNET_34_BLOCKS: [&str; 4] = [
    "basic_r3_k3_s11_i64_o64",
    "basic_r4_k3_s22_i64_o128",
    "basic_r6_k3_s22_i128_o256",
    "basic_r3_k3_s22_i256_o512",
];

/// ResNet-50's four stages: bottlenecks of width 64…512 expanding ×4, 3, 4, 6, 3 layers. The
/// first layer of every stage changes the channels, so it has a projection shortcut.
#[rustfmt::skip]
pub const RESNET_50_BLOCKS: [&str; 4] = [
    "bottle_r3_k3_s11_e4_i64_o256",
    "bottle_r4_k3_s22_e4_i256_o512",
    "bottle_r6_k3_s22_e4_i512_o1024",
    "bottle_r3_k3_s22_e4_i1024_o2048",
];

/// MobileNetV1 (Howard et al., 2017, Table 1) at width 1.0: the 13 depthwise-separable layers
/// after the stem, grouped into stages whose first layer strides, without residuals. The
/// paper's table prints the 13th layer with stride 2 but its output stays 7×7: the reference
/// implementations (TF-slim `mobilenet_v1.py`) use stride 1 there, as here.
#[rustfmt::skip]
pub const MOBILENET_V1_BLOCKS: [&str; 5] = [
    "ds_r1_k3_s11_i32_o64_noskip",
    "ds_r2_k3_s22_i64_o128_noskip",
    "ds_r2_k3_s22_i128_o256_noskip",
    "ds_r6_k3_s22_i256_o512_noskip",
    "ds_r2_k3_s22_i512_o1024_noskip",
];

/// Everything of a preset except its blocks.
#[derive(Debug, Clone, Copy, PartialEq)]
pub struct Skeleton {
    pub stem_channels: u32,
    pub stem_kernel: u32,
    pub stem_max_pool: bool,
    pub head_channels: Option<u32>,
    pub activation: Activation,
    pub dropout: f64,
    pub drop_connect: f64,
}

/// EfficientNet's: 3×3 stem of 32, 1×1 head of 1280, SiLU, dropout and drop-connect 0.2.
pub const EFFICIENTNET_SKELETON: Skeleton = Skeleton {
    stem_channels: defaults::STEM_CHANNELS,
    stem_kernel: defaults::STEM_KERNEL,
    stem_max_pool: false,
    head_channels: Some(defaults::HEAD_CHANNELS),
    activation: Activation::Silu,
    dropout: defaults::DROPOUT,
    drop_connect: defaults::DROP_CONNECT,
};

/// ResNet's (torchvision `ResNet`): 7×7 stride-2 stem of 64, 3×3 stride-2 max-pool, no head,
/// ReLU, neither dropout nor stochastic depth.
pub const RESNET_SKELETON: Skeleton = Skeleton {
    stem_channels: 64,
    stem_kernel: 7,
    stem_max_pool: true,
    head_channels: None,
    activation: Activation::Relu,
    dropout: 0.0,
    drop_connect: 0.0,
};

/// MobileNetV1's: 3×3 stride-2 stem of 32, no head (the last layer's 1024 channels go to the
/// pool and classifier), ReLU, no dropout (the paper names none) and no stochastic depth.
pub const MOBILENET_V1_SKELETON: Skeleton = Skeleton {
    stem_channels: 32,
    stem_kernel: 3,
    stem_max_pool: false,
    head_channels: None,
    activation: Activation::Relu,
    dropout: 0.0,
    drop_connect: 0.0,
};

/// One row of the official EfficientNet coefficient table.
#[derive(Debug, Clone, Copy, PartialEq)]
pub struct Coefficients {
    pub name: &'static str,
    pub width: f64,
    pub depth: f64,
    pub resolution: u32,
    pub dropout: f64,
    /// The paper's Table 2 figures, for side-by-side display only.
    pub paper_params: f64,
    pub paper_flops: f64,
    pub paper_top1: f64,
}

/// The official (width, depth, resolution, dropout) table with the paper's Table 2 figures.
#[rustfmt::skip]
pub const EFFICIENTNET: [Coefficients; 8] = [
    Coefficients { name: "efficientnet-b0", width: 1.0, depth: 1.0, resolution: 224, dropout: 0.2, paper_params: 5.3e6, paper_flops: 0.39e9, paper_top1: 77.1 },
    Coefficients { name: "efficientnet-b1", width: 1.0, depth: 1.1, resolution: 240, dropout: 0.2, paper_params: 7.8e6, paper_flops: 0.70e9, paper_top1: 79.1 },
    Coefficients { name: "efficientnet-b2", width: 1.1, depth: 1.2, resolution: 260, dropout: 0.3, paper_params: 9.2e6, paper_flops: 1.0e9,  paper_top1: 80.1 },
    Coefficients { name: "efficientnet-b3", width: 1.2, depth: 1.4, resolution: 300, dropout: 0.3, paper_params: 12e6,  paper_flops: 1.8e9,  paper_top1: 81.6 },
    Coefficients { name: "efficientnet-b4", width: 1.4, depth: 1.8, resolution: 380, dropout: 0.4, paper_params: 19e6,  paper_flops: 4.2e9,  paper_top1: 82.9 },
    Coefficients { name: "efficientnet-b5", width: 1.6, depth: 2.2, resolution: 456, dropout: 0.4, paper_params: 30e6,  paper_flops: 9.9e9,  paper_top1: 83.6 },
    Coefficients { name: "efficientnet-b6", width: 1.8, depth: 2.6, resolution: 528, dropout: 0.5, paper_params: 43e6,  paper_flops: 19e9,   paper_top1: 84.0 },
    Coefficients { name: "efficientnet-b7", width: 2.0, depth: 3.1, resolution: 600, dropout: 0.5, paper_params: 66e6,  paper_flops: 37e9,   paper_top1: 84.3 },
];

/// Every name `preset` accepts.
pub const PRESET_NAMES: [&str; 14] = [
    "efficientnet-b0",
    "efficientnet-b1",
    "efficientnet-b2",
    "efficientnet-b3",
    "efficientnet-b4",
    "efficientnet-b5",
    "efficientnet-b6",
    "efficientnet-b7",
    "mnasnet-a1",
    "mobilenet-v1",
    "mobilenet-v2",
    "resnet-18",
    "resnet-34",
    "resnet-50",
];

/// A preset from its skeleton and block table, at 224 px and 1000 classes.
fn from_table(skeleton: Skeleton, blocks: &[&str]) -> ArchSpec {
    let blocks = parse_block_chain(blocks.iter().copied(), skeleton.stem_channels)
        .expect("preset block strings are valid (checked by the preset tests)");
    let arch = ArchSpec {
        input_channels: defaults::INPUT_CHANNELS,
        resolution: defaults::RESOLUTION,
        num_classes: defaults::NUM_CLASSES,
        stem_channels: skeleton.stem_channels,
        stem_kernel: skeleton.stem_kernel,
        stem_stride: defaults::STEM_STRIDE,
        stem_max_pool: skeleton.stem_max_pool,
        blocks,
        head_channels: skeleton.head_channels,
        activation: skeleton.activation,
        dropout: skeleton.dropout,
        drop_connect: skeleton.drop_connect,
    };
    arch.validate().expect("preset architectures are valid (checked by the preset tests)");
    arch
}

/// EfficientNet-B0 at 224 px, 1000 classes.
pub fn efficientnet_b0() -> ArchSpec {
    from_table(EFFICIENTNET_SKELETON, &EFFICIENTNET_B0_BLOCKS)
}

/// EfficientNet-B`index` from the official coefficient table; `None` past B7.
pub fn efficientnet(index: usize) -> Option<ArchSpec> {
    let row = EFFICIENTNET.get(index)?;
    let multipliers = Multipliers { width: row.width, depth: row.depth, resolution: 1.0 };
    let mut arch =
        scale(&efficientnet_b0(), multipliers).expect("the official coefficients are within limits");
    arch.resolution = row.resolution;
    arch.dropout = row.dropout;
    Some(arch)
}

/// A preset by name: `efficientnet-b0`…`-b7` (or `b0`…`b7`), `mnasnet-a1`, `mobilenet-v1`,
/// `mobilenet-v2`, `resnet-18`, `resnet-34`, `resnet-50` (`_` for `-` accepted too).
pub fn preset(name: &str) -> Option<ArchSpec> {
    let name = name.trim().to_ascii_lowercase();
    let short = name.strip_prefix("efficientnet-").unwrap_or(&name);
    if let Some(digit) = short.strip_prefix('b') {
        if digit.len() == 1 {
            return digit.parse::<usize>().ok().and_then(efficientnet);
        }
    }
    match short {
        "mnasnet-a1" | "mnasnet_a1" => Some(from_table(EFFICIENTNET_SKELETON, &MNASNET_A1_BLOCKS)),
        "mobilenet-v2" | "mobilenet_v2" | "mobilenetv2" => {
            Some(from_table(EFFICIENTNET_SKELETON, &MOBILENET_V2_BLOCKS))
        }
        "mobilenet-v1" | "mobilenet_v1" | "mobilenetv1" => {
            Some(from_table(MOBILENET_V1_SKELETON, &MOBILENET_V1_BLOCKS))
        }
        "resnet-18" | "resnet_18" | "resnet18" => Some(from_table(RESNET_SKELETON, &RESNET_18_BLOCKS)),
        "resnet-34" | "resnet_34" | "resnet34" => Some(from_table(RESNET_SKELETON, &RESNET_34_BLOCKS)),
        "resnet-50" | "resnet_50" | "resnet50" => Some(from_table(RESNET_SKELETON, &RESNET_50_BLOCKS)),
        _ => None,
    }
}

#[cfg(test)]
#[allow(clippy::unwrap_used)] // a failing unwrap is a failing test
mod tests {
    use super::*;

    #[test]
    fn every_preset_name_resolves() {
        for name in PRESET_NAMES {
            assert!(preset(name).is_some(), "{name}");
        }
        assert_eq!(preset("B3"), preset("efficientnet-b3"));
        assert!(preset("b8").is_none());
        assert!(preset("b10").is_none());
    }

    /// The layouts of He et al., 2016, Table 1 and Howard et al., 2017, Table 1: stages,
    /// channels, layers and the skeleton around them.
    #[test]
    fn resnet_and_mobilenet_v1_have_the_papers_layout() {
        #[rustfmt::skip]
        let expected: [(&str, [u32; 4], [u32; 4]); 3] = [
            ("resnet-18", [64, 128, 256, 512], [2, 2, 2, 2]),
            ("resnet-34", [64, 128, 256, 512], [3, 4, 6, 3]),
            ("resnet-50", [256, 512, 1024, 2048], [3, 4, 6, 3]),
        ];
        for (name, channels, repeats) in expected {
            let arch = preset(name).unwrap();
            assert_eq!(arch.blocks.iter().map(|b| b.out_channels).collect::<Vec<_>>(), channels, "{name}");
            assert_eq!(arch.blocks.iter().map(|b| b.repeats).collect::<Vec<_>>(), repeats, "{name}");
            assert_eq!(arch.blocks.iter().map(|b| b.stride).collect::<Vec<_>>(), [1, 2, 2, 2], "{name}");
            assert_eq!((arch.stem_channels, arch.stem_kernel, arch.stem_max_pool), (64, 7, true));
            assert_eq!((arch.head_channels, arch.activation), (None, Activation::Relu));
            assert_eq!(arch.stem_output_size(), 56, "224 → 112 → 56 before the first stage");
        }
        let v1 = preset("mobilenet-v1").unwrap();
        assert_eq!(v1.num_layers(), 13, "13 depthwise-separable layers after the stem");
        assert_eq!(v1.last_block_channels(), 1024);
        assert_eq!(v1.classifier_channels(), 1024);
        assert!(v1.blocks.iter().all(|b| b.skip == crate::Skip::None), "no residuals");
        assert_eq!(crate::cost::cost_breakdown(&v1).final_resolution, 7);
    }

    /// Channels and repeats of B0–B7 as read from torchvision 0.26 `efficientnet_bN().features`.
    /// Pins every preset (a wrong depth coefficient, as once shipped for B3 elsewhere, fails here).
    #[test]
    fn scaled_presets_have_the_reference_channels_and_repeats() {
        #[rustfmt::skip]
        let expected: [(u32, [u32; 7], [u32; 7], u32); 8] = [
            (32, [16, 24, 40, 80, 112, 192, 320], [1, 2, 2, 3, 3, 4, 1], 1280),
            (32, [16, 24, 40, 80, 112, 192, 320], [2, 3, 3, 4, 4, 5, 2], 1280),
            (32, [16, 24, 48, 88, 120, 208, 352], [2, 3, 3, 4, 4, 5, 2], 1408),
            (40, [24, 32, 48, 96, 136, 232, 384], [2, 3, 3, 5, 5, 6, 2], 1536),
            (48, [24, 32, 56, 112, 160, 272, 448], [2, 4, 4, 6, 6, 8, 2], 1792),
            (48, [24, 40, 64, 128, 176, 304, 512], [3, 5, 5, 7, 7, 9, 3], 2048),
            (56, [32, 40, 72, 144, 200, 344, 576], [3, 6, 6, 8, 8, 11, 3], 2304),
            (64, [32, 48, 80, 160, 224, 384, 640], [4, 7, 7, 10, 10, 13, 4], 2560),
        ];
        for (index, (stem, channels, repeats, head)) in expected.into_iter().enumerate() {
            let arch = efficientnet(index).unwrap();
            assert_eq!(arch.stem_channels, stem, "b{index} stem");
            assert_eq!(
                arch.blocks.iter().map(|b| b.out_channels).collect::<Vec<_>>(),
                channels,
                "b{index} channels"
            );
            assert_eq!(
                arch.blocks.iter().map(|b| b.repeats).collect::<Vec<_>>(),
                repeats,
                "b{index} repeats"
            );
            assert_eq!(arch.head_channels, Some(head), "b{index} head");
            assert_eq!(arch.resolution, EFFICIENTNET[index].resolution);
        }
    }
}
