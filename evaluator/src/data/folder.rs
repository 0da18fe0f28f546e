//! An image folder: one sub-folder of PNG or JPEG files per class.
//!
//! The layout is torchvision's `ImageFolder` (`root/<class>/<image>.png`): classes are the
//! sub-folders sorted by name, and a class's label is its position in that order. When `root`
//! holds a `train/` folder that itself holds sub-folders, `root/train` is the training set and
//! `root/test` (or else `root/val`) the test set; every test class must also be a training class
//! and takes its label.
//!
//! Files are images when their extension is `png`, `jpg` or `jpeg` (any case); other files and
//! hidden entries (names starting with `.`) are skipped. Images are decoded by the `image` crate.
//!
//! Channels: when every image is grayscale the set has 1 channel; otherwise 3 (RGB), with the
//! grayscale images repeated over the three. Alpha is dropped. 16-bit images are scaled to 8 bits.
//!
//! Sizes: images of different sizes are resized (bilinear, aspect ratio not kept, like
//! torchvision's `Resize((h, w))`) to the most common size among all images of the data set,
//! ties going to the size met first. Images already at that size keep their exact pixels. The
//! trainer resizes to the proxy resolution afterwards in any case; this only gives the set one
//! storage size.

use std::collections::HashMap;
use std::path::{Path, PathBuf};

use image::imageops::FilterType;
use image::DynamicImage;
use tch::{Kind, Tensor};

use super::{DataError, ImageSet};

/// Whether a path names a file this reader decodes, by its extension.
fn is_image_file(path: &Path) -> bool {
    path.extension()
        .and_then(|e| e.to_str())
        .map(|e| matches!(e.to_ascii_lowercase().as_str(), "png" | "jpg" | "jpeg"))
        .unwrap_or(false)
}

fn is_hidden(path: &Path) -> bool {
    path.file_name().and_then(|n| n.to_str()).is_some_and(|n| n.starts_with('.'))
}

/// Entries of a folder, sorted by name, hidden ones left out.
fn sorted_entries(dir: &Path) -> Result<Vec<PathBuf>, DataError> {
    let mut paths = Vec::new();
    for entry in std::fs::read_dir(dir).map_err(|e| DataError::io(dir, e))? {
        let path = entry.map_err(|e| DataError::io(dir, e))?.path();
        if !is_hidden(&path) {
            paths.push(path);
        }
    }
    paths.sort();
    Ok(paths)
}

fn sub_folders(dir: &Path) -> Result<Vec<PathBuf>, DataError> {
    Ok(sorted_entries(dir)?.into_iter().filter(|p| p.is_dir()).collect())
}

/// Whether `dir` looks like an image folder: it holds at least one sub-folder.
pub(crate) fn detect(dir: &Path) -> bool {
    sub_folders(dir).map(|s| !s.is_empty()).unwrap_or(false)
}

/// The training root and the optional test root of a folder (see the module docs).
fn roots(root: &Path) -> Result<(PathBuf, Option<PathBuf>), DataError> {
    let train = root.join("train");
    if train.is_dir() && !sub_folders(&train)?.is_empty() {
        let test = ["test", "val"].iter().map(|n| root.join(n)).find(|p| p.is_dir());
        Ok((train, test))
    } else {
        Ok((root.to_path_buf(), None))
    }
}

/// A class's name and its image files.
struct Class {
    name: String,
    files: Vec<PathBuf>,
}

fn classes(root: &Path) -> Result<Vec<Class>, DataError> {
    let folders = sub_folders(root)?;
    if folders.is_empty() {
        return Err(DataError::EmptyFolder { path: root.into() });
    }
    folders
        .into_iter()
        .map(|folder| {
            let files: Vec<PathBuf> =
                sorted_entries(&folder)?.into_iter().filter(|p| p.is_file() && is_image_file(p)).collect();
            if files.is_empty() {
                return Err(DataError::NoImages { path: folder });
            }
            let name = folder.file_name().map(|n| n.to_string_lossy().into_owned()).unwrap_or_default();
            Ok(Class { name, files })
        })
        .collect()
}

fn decode(path: &Path) -> Result<DynamicImage, DataError> {
    let undecodable = |source| DataError::Undecodable { path: path.into(), source };
    image::ImageReader::open(path)
        .map_err(|e| DataError::io(path, e))?
        .with_guessed_format()
        .map_err(|e| DataError::io(path, e))?
        .decode()
        .map_err(undecodable)
}

/// Decodes files on all cores, keeping their order; the first failure in file order wins.
fn decode_all(files: &[&Path]) -> Result<Vec<DynamicImage>, DataError> {
    let threads = std::thread::available_parallelism().map(|n| n.get()).unwrap_or(1).min(files.len().max(1));
    let chunk = files.len().div_ceil(threads).max(1);
    let parts: Vec<Result<Vec<DynamicImage>, DataError>> = std::thread::scope(|scope| {
        let handles: Vec<_> = files
            .chunks(chunk)
            .map(|part| scope.spawn(move || part.iter().map(|f| decode(f)).collect::<Result<Vec<_>, _>>()))
            .collect();
        handles
            .into_iter()
            .map(|h| {
                h.join().unwrap_or_else(|_| {
                    Err(DataError::InvalidArgument("image decoder thread panicked".into()))
                })
            })
            .collect()
    });
    let mut images = Vec::with_capacity(files.len());
    for part in parts {
        images.extend(part?);
    }
    Ok(images)
}

/// The most common (width, height), ties going to the size met first.
fn modal_size(images: &[&DynamicImage]) -> (u32, u32) {
    let mut counts: HashMap<(u32, u32), (usize, usize)> = HashMap::new();
    for (order, image) in images.iter().enumerate() {
        counts.entry((image.width(), image.height())).or_insert((0, order)).0 += 1;
    }
    counts
        .into_iter()
        .max_by(|(_, (count_a, first_a)), (_, (count_b, first_b))| {
            count_a.cmp(count_b).then(first_b.cmp(first_a))
        })
        .map(|(size, _)| size)
        .unwrap_or((0, 0))
}

/// Packs decoded images into a `[N, C, H, W]` uint8 tensor, converting and resizing as the module
/// docs say.
fn pack(
    images: &[DynamicImage],
    channels: usize,
    (width, height): (u32, u32),
    context: &Path,
) -> Result<Tensor, DataError> {
    let per_image = channels * width as usize * height as usize;
    let mut pixels = Vec::with_capacity(images.len() * per_image);
    for image in images {
        let resized;
        let image = if (image.width(), image.height()) == (width, height) {
            image
        } else {
            resized = image.resize_exact(width, height, FilterType::Triangle);
            &resized
        };
        // Interleaved H × W × C here; transposed to channel-first by libtorch below.
        if channels == 1 {
            pixels.extend_from_slice(image.to_luma8().as_raw());
        } else {
            pixels.extend_from_slice(image.to_rgb8().as_raw());
        }
    }
    let shape = [images.len() as i64, i64::from(height), i64::from(width), channels as i64];
    Tensor::f_from_data_size(&pixels, &shape, Kind::Uint8)
        .and_then(|t| t.f_permute([0, 3, 1, 2]))
        .and_then(|t| t.f_contiguous())
        .map_err(DataError::torch(format!("{}: packing images", context.display())))
}

/// One split's folder and its class folders.
struct SplitDir {
    root: PathBuf,
    classes: Vec<Class>,
}

/// Reads an image folder: the training set, and the test set when the folder has one.
pub(crate) fn load_dir(root: &Path) -> Result<(ImageSet, Option<ImageSet>), DataError> {
    let (class_names, splits) = class_folders(root)?;

    // Decode everything first: the channel count and the common size depend on all images.
    let mut decoded = Vec::new();
    let mut labeled = Vec::new();
    for split in &splits {
        let mut labels = Vec::new();
        let mut files = Vec::new();
        for class in &split.classes {
            let label = class_names.iter().position(|n| *n == class.name).unwrap_or(0) as i64;
            labels.extend(std::iter::repeat_n(label, class.files.len()));
            files.extend(class.files.iter().map(PathBuf::as_path));
        }
        decoded.push(decode_all(&files)?);
        labeled.push(labels);
    }
    let all: Vec<&DynamicImage> = decoded.iter().flatten().collect();
    let channels = if all.iter().any(|i| i.color().has_color()) { 3 } else { 1 };
    let size = modal_size(&all);

    let mut sets = Vec::new();
    for ((split, images), labels) in splits.iter().zip(&decoded).zip(labeled) {
        let tensor = pack(images, channels, size, &split.root)?;
        sets.push(ImageSet::from_parts(tensor, labels, class_names.clone())?);
    }
    let test = if sets.len() > 1 { sets.pop() } else { None };
    let train = sets.pop().ok_or_else(|| DataError::EmptyFolder { path: root.into() })?;
    Ok((train, test))
}

/// The class names (the training classes' folders) and the class folders of the training split
/// and, when there is one, the test split. Every test class must be a training class.
fn class_folders(root: &Path) -> Result<(Vec<String>, Vec<SplitDir>), DataError> {
    let (train_root, test_root) = roots(root)?;
    let train_classes = classes(&train_root)?;
    let class_names: Vec<String> = train_classes.iter().map(|c| c.name.clone()).collect();
    if class_names.len() > u32::MAX as usize {
        return Err(DataError::Malformed { path: train_root, reason: "too many classes".into() });
    }
    let mut splits = vec![SplitDir { root: train_root.clone(), classes: train_classes }];
    if let Some(test_root) = test_root {
        let test_classes = classes(&test_root)?;
        if let Some(stray) = test_classes.iter().find(|c| !class_names.contains(&c.name)) {
            return Err(DataError::Inconsistent {
                path: test_root.join(&stray.name),
                reason: format!(
                    "test class '{}' is not among the training classes in {}",
                    stray.name,
                    train_root.display()
                ),
            });
        }
        splits.push(SplitDir { root: test_root, classes: test_classes });
    }
    Ok((class_names, splits))
}

/// One image file as uint8 `[1, C, H, W]` at its own size, converted to `channels` (1: luma,
/// 3: RGB) as the folder reader converts them.
pub(crate) fn read_image(path: &Path, channels: usize) -> Result<Tensor, DataError> {
    let image = decode(path)?;
    let size = (image.width(), image.height());
    pack(&[image], channels, size, path)
}
