//! Errors of the data-set readers: one line each, naming the file or folder at fault.

use std::path::PathBuf;

/// Why a data set could not be read, or a split could not be made.
///
/// Every variant that concerns a file names it, so a message on its own tells the user which file
/// to fix (`…/train-labels-idx1-ubyte.gz: expected magic 2049, found 2051`).
#[derive(Debug, thiserror::Error)]
pub enum DataError {
    /// A path the user gave, or a file a format needs, does not exist.
    #[error("{path}: no such file or folder")]
    Missing { path: PathBuf },

    /// A named data set (such as `fashion-mnist`) is not installed where it is expected.
    #[error("data set '{name}' not found at {path}: {hint}")]
    NamedMissing { name: String, path: PathBuf, hint: &'static str },

    /// A folder that holds none of the formats effnas reads.
    #[error(
        "{path}: no data set found (expected IDX files such as train-images-idx3-ubyte[.gz], \
         CIFAR-10 batches data_batch_N.bin, or one sub-folder of PNG/JPEG images per class)"
    )]
    UnknownFormat { path: PathBuf },

    /// Reading a file or listing a folder failed.
    #[error("{path}: {}", one_line(.source))]
    Io { path: PathBuf, source: std::io::Error },

    /// A gzip-compressed file whose stream is corrupt or cut short.
    #[error("{path}: corrupt or truncated gzip stream: {}", one_line(.source))]
    Gzip { path: PathBuf, source: std::io::Error },

    /// An IDX file whose first four bytes are not the magic number its role requires.
    #[error("{path}: expected magic {expected}, found {found} ({what})")]
    BadMagic { path: PathBuf, expected: u32, found: u32, what: &'static str },

    /// A file shorter than its header (or its record size) says it must be.
    #[error("{path}: truncated: expected {expected} bytes, found {found}")]
    Truncated { path: PathBuf, expected: u64, found: u64 },

    /// A file whose content is structurally wrong in some other way (trailing bytes, zero images, …).
    #[error("{path}: {reason}")]
    Malformed { path: PathBuf, reason: String },

    /// A label not below the number of classes.
    #[error("{path}: label {label} of image {index} is out of range for {num_classes} classes")]
    LabelOutOfRange { path: PathBuf, index: usize, label: i64, num_classes: u32 },

    /// An images file and its labels file that disagree on the number of items.
    #[error("{images_path} holds {images} images but {labels_path} holds {labels} labels")]
    CountMismatch { images_path: PathBuf, images: usize, labels_path: PathBuf, labels: usize },

    /// Parts of one data set that do not fit together (image sizes of train and test, class folders).
    #[error("{path}: {reason}")]
    Inconsistent { path: PathBuf, reason: String },

    /// An image folder without any class sub-folder.
    #[error("{path}: empty folder (expected one sub-folder of PNG/JPEG images per class)")]
    EmptyFolder { path: PathBuf },

    /// A class sub-folder without any PNG or JPEG file.
    #[error("{path}: class folder holds no PNG or JPEG images")]
    NoImages { path: PathBuf },

    /// An image file that the decoder rejects.
    #[error("{path}: cannot decode image: {}", one_line(.source))]
    Undecodable { path: PathBuf, source: image::ImageError },

    /// A split, budget or subset that cannot be made from the set it is asked of.
    #[error("{0}")]
    InvalidArgument(String),

    /// A libtorch operation failed (out of memory, or a tensor that breaks `ImageSet`'s invariants).
    #[error("{context}: {}", one_line(.source))]
    Torch { context: String, source: tch::TchError },
}

impl DataError {
    pub(crate) fn io(path: impl Into<PathBuf>, source: std::io::Error) -> Self {
        let path = path.into();
        if source.kind() == std::io::ErrorKind::NotFound {
            DataError::Missing { path }
        } else {
            DataError::Io { path, source }
        }
    }

    pub(crate) fn torch(context: impl Into<String>) -> impl FnOnce(tch::TchError) -> Self {
        let context = context.into();
        move |source| DataError::Torch { context, source }
    }
}

/// A message on one line: its first line ([`crate::error::first_line`]); some decoders and
/// libtorch end theirs with newlines or a C++ backtrace.
fn one_line(error: &dyn std::fmt::Display) -> String {
    crate::error::first_line(&error.to_string())
}
