//! `effnas cam CHECKPOINT... [IMAGE...] --out DIR`: class activation maps (Zhou et al., 2016;
//! the math is in `effnas_evaluator::cam`) of one or more trained networks on the same images,
//! one PNG per image and network, and a grid that puts the networks side by side, as the
//! EfficientNet paper's Figure 7 does for B0 scaled by width, depth, resolution and compound.

use std::path::{Path, PathBuf};
use std::process::ExitCode;

use anyhow::{anyhow, bail, Context, Result};
use effnas_evaluator::cam::{class_activation_maps, overlay, peak, write_png, ClassMap};
use effnas_evaluator::data::{self, Dataset, ImageSet};
use effnas_evaluator::model::{checkpoint, Model};
use effnas_evaluator::train::{resize_uint8, Normalizer};
use plotters::prelude::*;
use serde::Serialize;
use tch::{Device, Kind, Tensor};

use super::train::choose_device;
use crate::flags::{self, ClassList};
use crate::output::{out, outln};
use crate::table::Table;

#[derive(Debug, clap::Args)]
pub struct Args {
    /// Checkpoint folders (written by `train --save` or `finetune --save`: arch.json and
    /// weights.safetensors), then PNG or JPEG images. A folder holding arch.json is a
    /// checkpoint; any other path is an image.
    #[arg(required = true, value_name = "CHECKPOINT|IMAGE")]
    pub paths: Vec<PathBuf>,
    /// Write the PNGs into this folder (created if needed): grid.png, and one picture per
    /// network and image in a sub-folder named after the network's column label.
    #[arg(long, value_name = "DIR")]
    pub out: PathBuf,
    /// The data set the networks were trained on: its class names label the pictures, its
    /// training images give the input normalisation of checkpoints that do not record their
    /// own (older than `meta.json`), and
    /// `--count` takes images from it. Default: the data set the first checkpoint's
    /// result.json names.
    #[arg(long)]
    pub dataset: Option<String>,
    /// The classes the networks were trained on (`train --classes`), relabelled 0, 1, … as
    /// there. Default: those the first checkpoint's result.json names, else all.
    #[arg(long, value_parser = flags::class_list, value_name = "LIST")]
    pub classes: Option<ClassList>,
    /// Take this many images from the data set's test split (its training split when it has
    /// none), spread evenly over it (1 to 256; default 8 when no image files are given).
    #[arg(long, value_parser = clap::value_parser!(u32).range(1..=256))]
    pub count: Option<u32>,
    /// The class whose map to draw (default: each network's predicted class for each image).
    #[arg(long)]
    pub class: Option<u32>,
    /// Side of each picture in pixels (16 to 1024): images and maps are resized to it.
    #[arg(long, default_value_t = 128, value_parser = clap::value_parser!(u32).range(16..=1024))]
    pub size: u32,
    /// Opacity of the colour map over the image (0 to 1).
    #[arg(long, default_value_t = 0.5, value_parser = opacity)]
    pub alpha: f64,
    /// Column labels of the networks, comma-separated (default: the checkpoint folders' names).
    #[arg(long, value_delimiter = ',')]
    pub labels: Option<Vec<String>>,
    /// cpu, cuda or cuda:N (default: cuda when available, else cpu).
    #[arg(long)]
    pub device: Option<String>,
    /// Print what was written as JSON on stdout.
    #[arg(long)]
    pub json: bool,
}

fn opacity(text: &str) -> Result<f64, String> {
    match text.parse::<f64>() {
        Ok(v) if (0.0..=1.0).contains(&v) => Ok(v),
        _ => Err("not a number from 0 to 1".into()),
    }
}

/// A trained network and how its column is labelled.
struct Network {
    path: PathBuf,
    label: String,
    model: Model,
    /// The normalisation its checkpoint records (`meta.json`); older checkpoints have none and
    /// take the data set's.
    normalize: Option<Normalizer>,
}

/// An input image at its own size, uint8 `[C, H, W]`.
struct Input {
    /// File stem, or `test-INDEX` for a data-set image.
    name: String,
    source: String,
    /// The true class, for data-set images.
    label: Option<u32>,
    pixels: Tensor,
}

/// What `--json` prints.
#[derive(Debug, Serialize)]
struct Report {
    grid: PathBuf,
    dataset: String,
    class_names: Vec<String>,
    checkpoints: Vec<CheckpointJson>,
    images: Vec<ImageJson>,
    maps: Vec<MapJson>,
}

#[derive(Debug, Serialize)]
struct CheckpointJson {
    path: PathBuf,
    label: String,
    resolution: u32,
}

#[derive(Debug, Serialize)]
struct ImageJson {
    name: String,
    source: String,
    #[serde(skip_serializing_if = "Option::is_none")]
    label: Option<u32>,
}

#[derive(Debug, Serialize)]
struct MapJson {
    image: usize,
    checkpoint: usize,
    file: PathBuf,
    class: u32,
    class_name: String,
    predicted: u32,
    predicted_name: String,
    probability: f64,
    /// Row and column of the map's maximum, in pixels of the network's input.
    peak: [i64; 2],
}

pub fn run(args: Args) -> Result<ExitCode> {
    let device = choose_device(args.device.as_deref())?;
    let (checkpoints, files) = split_paths(&args.paths)?;
    let networks = load_networks(&checkpoints, args.labels.as_deref(), device)?;
    let dataset = load_dataset(&args, &networks[0].path)?;
    check_channels(&networks, &dataset.train)?;
    let normalize = Normalizer::from_images(&dataset.train.images).context("normalisation statistics")?;
    warn_single_cell(&networks, device)?;
    let inputs = inputs(&args, &files, &dataset)?;
    if let Some(class) = args.class {
        for network in &networks {
            if class >= network.model.arch.num_classes {
                bail!(
                    "--class {class}: {} has classes 0 to {}",
                    network.path.display(),
                    network.model.arch.num_classes - 1
                );
            }
        }
    }
    std::fs::create_dir_all(&args.out).with_context(|| format!("--out {}", args.out.display()))?;
    let names = &dataset.train.class_names;
    let mut maps = Vec::new();
    let mut grid = Grid::new(inputs.len(), networks.len(), args.size);
    for (i, input) in inputs.iter().enumerate() {
        grid.put_image(i, input, names)?;
        for (j, network) in networks.iter().enumerate() {
            let (cam, rgb) = one_map(network, input, &normalize, &args, device)?;
            let file = write_tile(&args.out, network, input, args.size, &rgb)?;
            grid.put_map(i, j, &rgb, &caption(&cam, names));
            let (y, x) = peak(&low_res_map(network, input, &normalize, &args, device)?)?;
            maps.push(MapJson {
                image: i,
                checkpoint: j,
                file,
                class: cam.class,
                class_name: class_name(names, cam.class),
                predicted: cam.predicted,
                predicted_name: class_name(names, cam.predicted),
                probability: cam.probability,
                peak: [y, x],
            });
        }
    }
    let grid_path = args.out.join("grid.png");
    grid.write(&grid_path, &networks)?;
    let report = Report {
        grid: grid_path,
        dataset: dataset.name.clone(),
        class_names: names.clone(),
        checkpoints: networks
            .iter()
            .map(|n| CheckpointJson {
                path: n.path.clone(),
                label: n.label.clone(),
                resolution: n.model.arch.resolution,
            })
            .collect(),
        images: inputs
            .iter()
            .map(|i| ImageJson { name: i.name.clone(), source: i.source.clone(), label: i.label })
            .collect(),
        maps,
    };
    if args.json {
        outln!("{}", serde_json::to_string_pretty(&report)?)?;
    } else {
        out!("{}", render(&report, &networks))?;
        outln!(
            "wrote {} and {} pictures under {}",
            report.grid.display(),
            report.maps.len(),
            args.out.display()
        )?;
    }
    Ok(ExitCode::SUCCESS)
}

/// Checkpoint folders (those holding arch.json) and image files, in the order given.
fn split_paths(paths: &[PathBuf]) -> Result<(Vec<PathBuf>, Vec<PathBuf>)> {
    let (mut checkpoints, mut files) = (Vec::new(), Vec::new());
    for path in paths {
        if path.join(checkpoint::ARCH_FILE).is_file() {
            checkpoints.push(path.clone());
        } else if path.is_dir() {
            bail!(
                "{}: a folder that holds no checkpoint ({} missing)",
                path.display(),
                checkpoint::ARCH_FILE
            );
        } else if !path.exists() {
            bail!("{}: no such checkpoint folder or image file", path.display());
        } else {
            files.push(path.clone());
        }
    }
    if checkpoints.is_empty() {
        bail!("no checkpoint given: pass at least one folder written by `effnas train --save`");
    }
    Ok((checkpoints, files))
}

fn load_networks(paths: &[PathBuf], labels: Option<&[String]>, device: Device) -> Result<Vec<Network>> {
    if let Some(labels) = labels.filter(|l| l.len() != paths.len()) {
        bail!("--labels: {} labels for {} checkpoints", labels.len(), paths.len());
    }
    let mut networks: Vec<Network> = Vec::new();
    for (j, path) in paths.iter().enumerate() {
        let model =
            checkpoint::load(path, device).with_context(|| format!("checkpoint {}", path.display()))?;
        let mut label = match labels {
            Some(labels) => labels[j].clone(),
            None => path.file_name().map_or_else(|| format!("net{j}"), |n| n.to_string_lossy().into_owned()),
        };
        if networks.iter().any(|n| n.label == label) {
            label = format!("{label}-{j}");
        }
        let recorded =
            checkpoint::read_meta(path).with_context(|| format!("checkpoint {}", path.display()))?;
        let normalize = match recorded.input {
            Some(input) => Some(
                Normalizer::from_stats(&input.mean, &input.std, device)
                    .with_context(|| format!("{}: meta.json's normalisation", path.display()))?,
            ),
            None => None,
        };
        networks.push(Network { path: path.clone(), label, model, normalize });
    }
    Ok(networks)
}

/// The data set `--dataset` names, or the first checkpoint's result.json does, restricted to
/// `--classes` (or the recorded ones).
fn load_dataset(args: &Args, first: &Path) -> Result<Dataset> {
    let recorded: Option<serde_json::Value> = std::fs::read_to_string(first.join(checkpoint::RESULT_FILE))
        .ok()
        .and_then(|text| serde_json::from_str(&text).ok());
    let name = match (&args.dataset, recorded.as_ref().and_then(|r| r["dataset"].as_str())) {
        (Some(name), _) => name.clone(),
        (None, Some(name)) => name.to_owned(),
        (None, None) => bail!(
            "{}: no result.json names the data set it was trained on; pass --dataset (its images give the input normalisation)",
            first.display()
        ),
    };
    let dataset = data::load(&name).with_context(|| format!("data set {name:?} (--dataset)"))?;
    let recorded_classes =
        recorded.as_ref().and_then(|r| serde_json::from_value::<Vec<u32>>(r["classes"].clone()).ok());
    let classes = args.classes.as_ref().map(|c| c.0.clone()).or(if args.dataset.is_none() {
        recorded_classes
    } else {
        None
    });
    match classes {
        Some(classes) => dataset.select_classes(&classes).context("--classes"),
        None => Ok(dataset),
    }
}

fn check_channels(networks: &[Network], images: &ImageSet) -> Result<()> {
    for network in networks {
        let channels = network.model.arch.input_channels;
        if i64::from(channels) != images.channels() {
            bail!(
                "{} takes {channels}-channel images, the data set has {}",
                network.path.display(),
                images.channels()
            );
        }
    }
    Ok(())
}

/// The image files, then `--count` images of the data set (8 when no file is given).
fn inputs(args: &Args, files: &[PathBuf], dataset: &Dataset) -> Result<Vec<Input>> {
    let channels = dataset.train.channels() as u32;
    let mut inputs = Vec::new();
    for file in files {
        let pixels = data::read_image(file, channels).with_context(|| format!("image {}", file.display()))?;
        let name = file.file_stem().map_or_else(|| "image".into(), |s| s.to_string_lossy().into_owned());
        inputs.push(Input {
            name,
            source: file.display().to_string(),
            label: None,
            pixels: pixels.f_get(0)?,
        });
    }
    let count = args.count.unwrap_or(if files.is_empty() { 8 } else { 0 }) as usize;
    let (split, set) = match &dataset.test {
        Some(test) => ("test", test),
        None => ("train", &dataset.train),
    };
    // Evenly spread over the split; none when `count` is 0.
    if let Some(step) = set.len().checked_div(count) {
        let labels = set.label_values()?;
        let step = step.max(1);
        for index in (0..set.len()).step_by(step).take(count) {
            inputs.push(Input {
                name: format!("{split}-{index}"),
                source: format!("{} {split} image {index}", dataset.name),
                label: Some(labels[index] as u32),
                pixels: set.images.f_get(index as i64)?,
            });
        }
    }
    Ok(inputs)
}

/// One image normalised as the network's training batches were, at its resolution.
fn network_input(network: &Network, input: &Input, normalize: &Normalizer, device: Device) -> Result<Tensor> {
    let resolution = i64::from(network.model.arch.resolution);
    let resized = resize_uint8(&input.pixels.f_unsqueeze(0)?, resolution)?;
    let normalize = network.normalize.as_ref().unwrap_or(normalize);
    Ok(normalize.apply(&resized.f_to_device(device)?)?)
}

/// The map at the picture's size and the picture: the colour map over the image.
fn one_map(
    network: &Network,
    input: &Input,
    normalize: &Normalizer,
    args: &Args,
    device: Device,
) -> Result<(ClassMap, Vec<u8>)> {
    let xs = network_input(network, input, normalize, device)?;
    let size = i64::from(args.size);
    let cam = class_activation_maps(&network.model, &xs, args.class, (size, size))?
        .pop()
        .ok_or_else(|| anyhow!("no map computed"))?;
    let rgb = overlay(&input.pixels, &cam.map, args.alpha)?;
    Ok((cam, rgb))
}

/// The map at the network's own input resolution (for its peak, in input pixels).
fn low_res_map(
    network: &Network,
    input: &Input,
    normalize: &Normalizer,
    args: &Args,
    device: Device,
) -> Result<Tensor> {
    let xs = network_input(network, input, normalize, device)?;
    let r = i64::from(network.model.arch.resolution);
    let cam = class_activation_maps(&network.model, &xs, args.class, (r, r))?
        .pop()
        .ok_or_else(|| anyhow!("no map computed"))?;
    Ok(cam.map)
}

/// A network whose last feature map is a single cell (B0 at 32 px: 32 ÷ 32) has a constant
/// map, which says nothing about where it looked: say so on stderr.
fn warn_single_cell(networks: &[Network], device: Device) -> Result<()> {
    for network in networks {
        let arch = &network.model.arch;
        let (c, r) = (i64::from(arch.input_channels), i64::from(arch.resolution));
        let probe = Tensor::f_zeros([1, c, r, r], (Kind::Float, device))?;
        let size = tch::no_grad(|| network.model.net.try_features(&probe))?.size();
        if size[2] * size[3] == 1 {
            eprintln!(
                "note: {} ends in a 1 × 1 feature map at {r} px, so its class activation map is constant; \
                 train it at a higher resolution to see where it looks",
                network.path.display()
            );
        }
    }
    Ok(())
}

fn class_name(names: &[String], class: u32) -> String {
    names.get(class as usize).cloned().unwrap_or_else(|| class.to_string())
}

fn caption(cam: &ClassMap, names: &[String]) -> String {
    format!("{} {:.2}", class_name(names, cam.class), cam.probability)
}

/// A name safe as a file or folder name: letters, digits, `.`, `_` and `-` kept, anything else `_`.
fn file_name(text: &str) -> String {
    let name: String =
        text.chars().map(|c| if c.is_ascii_alphanumeric() || "._-".contains(c) { c } else { '_' }).collect();
    if name.is_empty() || name.starts_with('.') {
        format!("_{name}")
    } else {
        name
    }
}

fn write_tile(out: &Path, network: &Network, input: &Input, size: u32, rgb: &[u8]) -> Result<PathBuf> {
    let dir = out.join(file_name(&network.label));
    std::fs::create_dir_all(&dir).with_context(|| format!("creating {}", dir.display()))?;
    let path = dir.join(format!("{}.png", file_name(&input.name)));
    crate::files::replace_file(&path, |temporary| Ok(write_png(temporary, size, size, rgb)?))?;
    Ok(path)
}

/// The grid picture: a header row of column labels, then one row per image: the image itself
/// (captioned with its true class when known), then each network's map (captioned with the
/// class and its probability).
struct Grid {
    rows: usize,
    columns: usize,
    tile: usize,
    pixels: Vec<u8>,
    texts: Vec<(String, i32, i32)>,
}

const HEADER: usize = 22;
const CAPTION: usize = 18;
const GAP: usize = 6;

impl Grid {
    fn new(rows: usize, networks: usize, tile: u32) -> Self {
        let tile = tile as usize;
        let columns = networks + 1;
        let (width, height) = (columns * (tile + GAP) + GAP, HEADER + rows * (tile + CAPTION + GAP));
        Grid { rows, columns, tile, pixels: vec![255; width * height * 3], texts: Vec::new() }
    }

    fn size(&self) -> (usize, usize) {
        (self.columns * (self.tile + GAP) + GAP, HEADER + self.rows * (self.tile + CAPTION + GAP))
    }

    fn origin(&self, row: usize, column: usize) -> (usize, usize) {
        (GAP + column * (self.tile + GAP), HEADER + row * (self.tile + CAPTION + GAP))
    }

    fn blit(&mut self, row: usize, column: usize, rgb: &[u8]) {
        let (x0, y0) = self.origin(row, column);
        let width = self.size().0;
        for y in 0..self.tile {
            let from = &rgb[y * self.tile * 3..(y + 1) * self.tile * 3];
            let start = ((y0 + y) * width + x0) * 3;
            self.pixels[start..start + self.tile * 3].copy_from_slice(from);
        }
    }

    fn caption(&mut self, row: usize, column: usize, text: String) {
        let (x, y) = self.origin(row, column);
        self.texts.push((text, x as i32, (y + self.tile + 2) as i32));
    }

    fn put_image(&mut self, row: usize, input: &Input, names: &[String]) -> Result<()> {
        let size = self.tile as i64;
        let blank = Tensor::f_zeros([size, size], (Kind::Float, Device::Cpu))?;
        let rgb = overlay(&input.pixels, &blank, 0.0)?;
        self.blit(row, 0, &rgb);
        let text = input.label.map_or_else(|| input.name.clone(), |l| class_name(names, l));
        self.caption(row, 0, text);
        Ok(())
    }

    fn put_map(&mut self, row: usize, network: usize, rgb: &[u8], caption: &str) {
        self.blit(row, network + 1, rgb);
        self.caption(row, network + 1, caption.to_owned());
    }

    /// Draws the labels over the pixels and writes the PNG (whole or not at all).
    fn write(mut self, path: &Path, networks: &[Network]) -> Result<()> {
        let (width, height) = self.size();
        let mut texts = std::mem::take(&mut self.texts);
        texts.push(("image".into(), GAP as i32, 4));
        for (j, network) in networks.iter().enumerate() {
            texts.push((network.label.clone(), self.origin(0, j + 1).0 as i32, 4));
        }
        {
            let root = BitMapBackend::with_buffer(&mut self.pixels, (width as u32, height as u32))
                .into_drawing_area();
            let font = ("sans-serif", 13).into_font().color(&BLACK);
            for (text, x, y) in texts {
                root.draw(&Text::new(text, (x, y), font.clone()))
                    .map_err(|e| anyhow!("drawing labels: {e}"))?;
            }
            root.present().map_err(|e| anyhow!("drawing labels: {e}"))?;
        }
        crate::files::replace_file(path, |temporary| {
            Ok(write_png(temporary, width as u32, height as u32, &self.pixels)?)
        })
    }
}

fn render(report: &Report, networks: &[Network]) -> String {
    let mut table = Table::new(["image", "network", "class", "probability", "peak (y, x)", "file"]);
    for map in &report.maps {
        table.row([
            report.images[map.image].name.clone(),
            networks[map.checkpoint].label.clone(),
            map.class_name.clone(),
            format!("{:.3}", map.probability),
            format!("{}, {}", map.peak[0], map.peak[1]),
            map.file.display().to_string(),
        ]);
    }
    table.render()
}
