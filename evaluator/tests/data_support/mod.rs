//! Helpers shared by the `data_*` integration tests: an independent reader of Debian's
//! Fashion-MNIST files (so tests compare the library against bytes it did not produce) and
//! writers of small IDX folders.
#![allow(dead_code, clippy::unwrap_used)]

use std::io::Read;
use std::path::Path;

use tch::Tensor;

pub const FASHION: &str = "/usr/share/datasets/fashion-mnist";

/// Raw Fashion-MNIST split: `n` images of 28 × 28 bytes and their labels.
pub struct Raw {
    pub n: usize,
    pub pixels: Vec<u8>,
    pub labels: Vec<u8>,
}

impl Raw {
    pub fn image(&self, i: usize) -> &[u8] {
        &self.pixels[i * 784..(i + 1) * 784]
    }
}

pub fn gunzip(path: &Path) -> Vec<u8> {
    let mut out = Vec::new();
    flate2::read::GzDecoder::new(std::fs::File::open(path).unwrap()).read_to_end(&mut out).unwrap();
    out
}

/// The t10k split read by hand: 16-byte images header, 8-byte labels header (LeCun's layout).
pub fn t10k() -> Raw {
    let images = gunzip(&Path::new(FASHION).join("t10k-images-idx3-ubyte.gz"));
    let labels = gunzip(&Path::new(FASHION).join("t10k-labels-idx1-ubyte.gz"));
    Raw { n: 10000, pixels: images[16..].to_vec(), labels: labels[8..].to_vec() }
}

/// IDX bytes: magic, big-endian dimensions, data.
pub fn idx_bytes(magic: u32, dims: &[u32], data: &[u8]) -> Vec<u8> {
    let mut out = magic.to_be_bytes().to_vec();
    for d in dims {
        out.extend_from_slice(&d.to_be_bytes());
    }
    out.extend_from_slice(data);
    out
}

/// Writes plain (uncompressed) `{prefix}-images-idx3-ubyte` and `{prefix}-labels-idx1-ubyte`.
pub fn write_idx(dir: &Path, prefix: &str, pixels: &[u8], labels: &[u8]) {
    std::fs::create_dir_all(dir).unwrap();
    let n = labels.len() as u32;
    std::fs::write(dir.join(format!("{prefix}-images-idx3-ubyte")), idx_bytes(2051, &[n, 28, 28], pixels))
        .unwrap();
    std::fs::write(dir.join(format!("{prefix}-labels-idx1-ubyte")), idx_bytes(2049, &[n], labels)).unwrap();
}

/// All bytes of a uint8 tensor, in row-major order.
pub fn bytes(t: &Tensor) -> Vec<u8> {
    let n = t.numel();
    let mut out = vec![0u8; n];
    t.contiguous().view([-1]).copy_data_u8(&mut out, n);
    out
}

pub fn longs(t: &Tensor) -> Vec<i64> {
    let n = t.numel();
    let mut out = vec![0i64; n];
    t.copy_data(&mut out, n);
    out
}
