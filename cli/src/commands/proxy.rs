//! The proxy-task flags shared by `search` and `compound`, and their conversion into the
//! stored [`ProxySettings`] (the flags are the command line's; the settings are what a run
//! stores, so a renamed flag never breaks `--resume`).

use effnas_search::proxy::{PrecisionSetting, ProxySettings};

use super::train::{DeviceKinds, LayoutChoice, PrecisionChoice};

use crate::flags;

/// Proxy-task flags. Defaults are sized so that one trial takes well under a minute on a
/// 2-core CPU (see the README's measured figures).
#[derive(Debug, Clone, PartialEq, clap::Args)]
pub struct ProxyArgs {
    /// Data set: fashion-mnist (Debian's files), or a folder of IDX files, CIFAR-10 batches or class sub-folders.
    #[arg(long, default_value_t = ProxySettings::default().dataset)]
    pub dataset: String,
    /// Training epochs of each proxy (1 to 1000).
    #[arg(long, default_value_t = ProxySettings::default().epochs, value_parser = flags::epochs)]
    pub epochs: u32,
    /// Training images of each proxy (a fixed, seeded, class-balanced subset; 2 to 100000000).
    #[arg(long, default_value_t = ProxySettings::default().train_images, value_parser = flags::train_images)]
    pub train_images: usize,
    /// Images held out of the training set for validation (fixed for the whole run; 1 to 100000000).
    #[arg(long, default_value_t = ProxySettings::default().validation_images, value_parser = flags::validation_images)]
    pub validation_images: usize,
    /// Proxy resolution in pixels (of a network at 224 px; others train in proportion; 8 to 1024).
    #[arg(long, default_value_t = ProxySettings::default().resolution, value_parser = flags::resolution)]
    pub resolution: u32,
    /// Width multiplier applied to every candidate for the proxy (above 0, at most 8).
    #[arg(long, default_value_t = ProxySettings::default().width, value_parser = flags::multiplier)]
    pub width: f64,
    /// Depth multiplier applied to every candidate for the proxy (above 0, at most 8).
    #[arg(long, default_value_t = ProxySettings::default().depth, value_parser = flags::multiplier)]
    pub depth: f64,
    /// Batch size (2 to 4096: batch norm needs two images).
    #[arg(long, default_value_t = ProxySettings::default().batch_size, value_parser = flags::batch_size)]
    pub batch_size: usize,
    /// Peak learning rate (SGD with momentum 0.9, cosine schedule, short warm-up; above 0).
    #[arg(long, default_value_t = ProxySettings::default().lr, value_parser = flags::positive)]
    pub lr: f64,
    /// Devices: cpu, cuda, cuda:N, or a comma-separated list (workers run on each).
    #[arg(long, default_value_t = ProxySettings::default().device)]
    pub device: String,
    /// Seconds a proxy may train before it is stopped and counted as failed (above 0).
    #[arg(long, value_parser = flags::positive)]
    pub time_limit: Option<f64>,
    /// Arithmetic of the proxies: auto is bf16 (fp32 weights and optimizer state) when every
    /// device is a GPU, fp32 on the CPU. Part of the proxy key: results of another precision
    /// are not reused.
    #[arg(long, value_enum, default_value_t = PrecisionChoice::Auto)]
    pub precision: PrecisionChoice,
    /// Memory layout of kernels and activations: auto is channels-last (NHWC) for bf16 on GPUs
    /// and for fp32 on the CPU, contiguous otherwise. Speed only, not part of the proxy key.
    #[arg(long, value_enum, default_value_t = LayoutChoice::Auto)]
    pub layout: LayoutChoice,
    /// Stride of every proxy network's stem (1 or 2), instead of the architecture's own: 1
    /// keeps small images four times larger through the network (at 32 px EfficientNet's total
    /// stride of 32 leaves a 1 × 1 map), at about four times the multiply-adds. Part of the
    /// proxy key.
    #[arg(long, value_parser = flags::stem_stride)]
    pub stem_stride: Option<u32>,
}

impl ProxyArgs {
    /// The settings a run stores.
    pub fn settings(&self) -> ProxySettings {
        let mut settings = ProxySettings {
            dataset: self.dataset.clone(),
            epochs: self.epochs,
            train_images: self.train_images,
            validation_images: self.validation_images,
            resolution: self.resolution,
            width: self.width,
            depth: self.depth,
            batch_size: self.batch_size,
            lr: self.lr,
            device: self.device.clone(),
            time_limit: self.time_limit,
            precision: match self.precision {
                PrecisionChoice::Auto => PrecisionSetting::Auto,
                PrecisionChoice::Fp32 => PrecisionSetting::Fp32,
                PrecisionChoice::Bf16 => PrecisionSetting::Bf16,
            },
            channels_last: false,
            stem_stride: self.stem_stride,
        };
        let devices = if settings.on_gpus_only() {
            DeviceKinds::Gpus
        } else if settings.on_cpu_only() {
            DeviceKinds::Cpu
        } else {
            DeviceKinds::Mixed
        };
        settings.channels_last = self.layout.channels_last(settings.precision(), devices);
        settings
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use clap::Parser;
    use effnas_evaluator::model::Precision;

    #[derive(Parser)]
    struct Command {
        #[command(flatten)]
        proxy: ProxyArgs,
    }

    fn settings(args: &[&str]) -> ProxySettings {
        let parsed = Command::try_parse_from(std::iter::once("effnas").chain(args.iter().copied()));
        parsed.expect("flags parse").proxy.settings()
    }

    /// The defaults: bf16 and channels-last on GPUs, fp32 and channels-last on the CPU,
    /// contiguous for fp32 on GPUs, bf16 on the CPU and a mix of devices; each can be forced
    /// either way.
    #[test]
    fn precision_and_layout_follow_the_devices_unless_told() {
        let cpu = settings(&[]);
        assert_eq!((cpu.precision(), cpu.channels_last), (Precision::Fp32, true));
        let bf16_cpu = settings(&["--precision", "bf16"]);
        assert_eq!((bf16_cpu.precision(), bf16_cpu.channels_last), (Precision::Bf16, false));
        let mixed = settings(&["--device", "cuda,cpu"]);
        assert_eq!((mixed.precision(), mixed.channels_last), (Precision::Fp32, false));
        let contiguous_cpu = settings(&["--layout", "contiguous"]);
        assert_eq!((contiguous_cpu.precision(), contiguous_cpu.channels_last), (Precision::Fp32, false));
        let gpu = settings(&["--device", "cuda"]);
        assert_eq!((gpu.precision(), gpu.channels_last), (Precision::Bf16, true));
        let fp32_gpu = settings(&["--device", "cuda", "--precision", "fp32"]);
        assert_eq!((fp32_gpu.precision(), fp32_gpu.channels_last), (Precision::Fp32, false));
        let contiguous = settings(&["--device", "cuda:1", "--layout", "contiguous"]);
        assert_eq!((contiguous.precision(), contiguous.channels_last), (Precision::Bf16, false));
        let forced = settings(&["--layout", "channels-last", "--precision", "bf16"]);
        assert_eq!((forced.precision(), forced.channels_last), (Precision::Bf16, true));
        assert_eq!(settings(&["--device", "cuda,cpu"]).precision(), Precision::Fp32);
    }
}
