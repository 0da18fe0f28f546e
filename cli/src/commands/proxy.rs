//! The proxy-task flags shared by `search` and `compound`, and their conversion into the
//! stored [`ProxySettings`] (the flags are the command line's; the settings are what a run
//! stores, so a renamed flag never breaks `--resume`).

use effnas_search::proxy::ProxySettings;

/// Proxy-task flags. Defaults are sized so that one trial takes well under a minute on a
/// 2-core CPU (see the README's measured figures).
#[derive(Debug, Clone, PartialEq, clap::Args)]
pub struct ProxyArgs {
    /// Data set: fashion-mnist (Debian's files), or a folder of IDX files, CIFAR-10 batches or class sub-folders.
    #[arg(long, default_value_t = ProxySettings::default().dataset)]
    pub dataset: String,
    /// Training epochs of each proxy.
    #[arg(long, default_value_t = ProxySettings::default().epochs)]
    pub epochs: u32,
    /// Training images of each proxy (a fixed, seeded, class-balanced subset).
    #[arg(long, default_value_t = ProxySettings::default().train_images)]
    pub train_images: usize,
    /// Images held out of the training set for validation (fixed for the whole run).
    #[arg(long, default_value_t = ProxySettings::default().validation_images)]
    pub validation_images: usize,
    /// Proxy resolution in pixels (of a network at 224 px; others train in proportion).
    #[arg(long, default_value_t = ProxySettings::default().resolution)]
    pub resolution: u32,
    /// Width multiplier applied to every candidate for the proxy.
    #[arg(long, default_value_t = ProxySettings::default().width)]
    pub width: f64,
    /// Depth multiplier applied to every candidate for the proxy.
    #[arg(long, default_value_t = ProxySettings::default().depth)]
    pub depth: f64,
    /// Batch size (at least 2: batch norm needs two images).
    #[arg(long, default_value_t = ProxySettings::default().batch_size)]
    pub batch_size: usize,
    /// Peak learning rate (SGD with momentum 0.9, cosine schedule, short warm-up).
    #[arg(long, default_value_t = ProxySettings::default().lr)]
    pub lr: f64,
    /// Devices: cpu, cuda, cuda:N, or a comma-separated list (workers run on each).
    #[arg(long, default_value_t = ProxySettings::default().device)]
    pub device: String,
    /// Seconds a proxy may train before it is stopped and counted as failed.
    #[arg(long)]
    pub time_limit: Option<f64>,
}

impl ProxyArgs {
    /// The settings a run stores.
    pub fn settings(&self) -> ProxySettings {
        ProxySettings {
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
        }
    }
}
