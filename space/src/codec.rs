//! The block-string codec: the TF EfficientNet/MnasNet notation (`r2_k3_s22_e6_i16_o24_se0.25`)
//! with timm's operator prefixes (`ds_`, `cn_`, `ir_`) and channel token (`c24`), and ResNet's
//! blocks under the names timm's `byobnet` gives them (`basic_`, `bottle_`), and `proj_`, a
//! convolution and BN without activation (a skipped layer whose shape changes).
//!
//! Tokens, separated by `_`, in any order after the optional prefix:
//! `rN` repeats, `kN` kernel, `sN` or `sNN` stride, `eN` expansion, `iN` input channels,
//! `oN`/`cN` output channels, `seX` SE ratio, `noskip` (no residual), `poolskip` (pooling
//! shortcut). Printing always gives the canonical TF form: MBConv without prefix, stride as
//! `s22`, `e` only for MBConv and bottleneck (whose `e` defaults to ResNet's 4 when left out),
//! `se` only when non-zero. ResNet-50's first stage is `bottle_r3_k3_s11_e4_i64_o256`.

use std::path::Path;

use sha2::{Digest, Sha256};

use crate::arch::{Activation, ArchSpec, BlockSpec, Op, Skip};
use crate::error::{Result, SpaceError};

/// Prints a block in the canonical TF style.
pub fn format_block(block: &BlockSpec) -> String {
    let mut out = String::new();
    if block.op != Op::MBConv {
        out.push_str(block.op.prefix());
        out.push('_');
    }
    out.push_str(&format!("r{}_k{}_s{}{}", block.repeats, block.kernel, block.stride, block.stride));
    if block.op.has_expansion() {
        out.push_str(&format!("_e{}", block.expansion));
    }
    out.push_str(&format!("_i{}_o{}", block.in_channels, block.out_channels));
    if block.se_ratio != 0.0 {
        out.push_str(&format!("_se{}", block.se_ratio));
    }
    match block.skip {
        Skip::Identity => {}
        Skip::None => out.push_str("_noskip"),
        Skip::Pool => out.push_str("_poolskip"),
    }
    out
}

/// Parses one block string. `default_in` supplies the input channels when the string has no
/// `i` token (timm style); without either, it is an error.
///
/// The steps: the operator prefix, each field token, the defaults for missing fields, and the
/// field checks of [`BlockSpec::validate`]. Every error names the text as the user wrote it.
pub fn parse_block(text: &str, default_in: Option<u32>) -> Result<BlockSpec> {
    let err = |reason: String| SpaceError::BlockString { block: text.to_owned(), reason };
    let trimmed = text.trim();
    if trimmed.is_empty() {
        return Err(err("empty block string".to_owned()));
    }
    let mut tokens = trimmed.split('_').peekable();
    let op = read_prefix(&mut tokens).map_err(err)?;
    let mut fields = Fields::default();
    for token in tokens {
        fields.read(token).map_err(err)?;
    }
    let block = fields.into_block(op, default_in).map_err(err)?;
    // Report the text as the user wrote it, not as it would print.
    block.validate().map_err(|e| match e {
        SpaceError::BlockString { reason, .. } => SpaceError::BlockString { block: text.to_owned(), reason },
        other => other,
    })?;
    Ok(block)
}

/// Consumes the optional operator prefix (`ir`, `ds`, `cn`, `basic`, `bottle`); MBConv without
/// one. A leading all-letter token that is neither a prefix nor a skip token is an unknown prefix.
fn read_prefix<'a>(
    tokens: &mut std::iter::Peekable<impl Iterator<Item = &'a str>>,
) -> std::result::Result<Op, String> {
    let Some(&first) = tokens.peek() else { return Ok(Op::MBConv) };
    let op = match first {
        "ir" => Op::MBConv,
        "ds" => Op::DepthwiseSeparable,
        "cn" => Op::Conv,
        "basic" => Op::Basic,
        "bottle" => Op::Bottleneck,
        "proj" => Op::Projection,
        _ if first.chars().all(|c| c.is_ascii_alphabetic()) && !matches!(first, "noskip" | "poolskip") => {
            return Err(format!(
                "unknown operator prefix {first:?} (known: ir, ds, cn, basic, bottle, proj)"
            ));
        }
        _ => return Ok(Op::MBConv),
    };
    tokens.next();
    Ok(op)
}

/// The fields of a block string as they are read, each at most once.
#[derive(Default)]
struct Fields {
    repeats: Option<u32>,
    kernel: Option<u32>,
    stride: Option<u32>,
    expansion: Option<u32>,
    in_channels: Option<u32>,
    out_channels: Option<u32>,
    se_ratio: Option<f64>,
    skip: Option<Skip>,
}

impl Fields {
    /// Reads one token into its field; the error names the token.
    fn read(&mut self, token: &str) -> std::result::Result<(), String> {
        if let Some(ratio) = token.strip_prefix("se") {
            let value = ratio.parse().map_err(|_| format!("token {token:?} needs a number after \"se\""))?;
            return fill(&mut self.se_ratio, value, token);
        }
        match token {
            "noskip" => return fill(&mut self.skip, Skip::None, token),
            "poolskip" => return fill(&mut self.skip, Skip::Pool, token),
            _ => {}
        }
        if let Some(digits) = token.strip_prefix('s') {
            return fill(&mut self.stride, parse_stride(token, digits)?, token);
        }
        let mut chars = token.chars();
        let letter = chars.next();
        let slot = match letter {
            Some('r') => &mut self.repeats,
            Some('k') => &mut self.kernel,
            Some('e') => &mut self.expansion,
            Some('i') => &mut self.in_channels,
            Some('o' | 'c') => &mut self.out_channels,
            _ => return Err(format!("unknown token {token:?}")),
        };
        fill(slot, whole_number(token, chars.as_str())?, token)
    }

    /// The block, with the defaults for optional fields (stride 1, expansion 1 or ResNet's 4
    /// for a bottleneck, no SE, identity skip) and `default_in` for missing input channels.
    fn into_block(self, op: Op, default_in: Option<u32>) -> std::result::Result<BlockSpec, String> {
        let need = |value: Option<u32>, what: &str| value.ok_or_else(|| format!("missing {what}"));
        Ok(BlockSpec {
            op,
            repeats: need(self.repeats, "repeat count (rN)")?,
            kernel: need(self.kernel, "kernel (kN)")?,
            stride: self.stride.unwrap_or(1),
            expansion: self.expansion.unwrap_or(if op == Op::Bottleneck { 4 } else { 1 }),
            in_channels: need(self.in_channels.or(default_in), "input channels (iN)")?,
            out_channels: need(self.out_channels, "output channels (oN or cN)")?,
            se_ratio: self.se_ratio.unwrap_or(0.0),
            skip: self.skip.unwrap_or(Skip::Identity),
        })
    }
}

/// Stores a field's value; a second value for the same field is an error.
fn fill<T>(slot: &mut Option<T>, value: T, token: &str) -> std::result::Result<(), String> {
    match slot.replace(value) {
        Some(_) => Err(format!("token {token:?} repeats a field given before")),
        None => Ok(()),
    }
}

/// The number after a token's letter.
fn whole_number(token: &str, digits: &str) -> std::result::Result<u32, String> {
    digits.parse().map_err(|_| format!("token {token:?} needs a whole number after its letter"))
}

/// The stride of an `s` token: TF writes it once per axis (`s22`); both must agree.
fn parse_stride(token: &str, digits: &str) -> std::result::Result<u32, String> {
    match digits.len() {
        1 => whole_number(token, digits),
        // Equal bytes are two equal ASCII characters (a two-byte character never repeats its
        // lead byte), so slicing at 1 stays on a character boundary.
        2 if digits.as_bytes()[0] == digits.as_bytes()[1] => whole_number(token, &digits[..1]),
        2 => Err(format!("token {token:?}: strides must be equal on both axes")),
        _ => Err(format!("token {token:?} is not a stride (s1, s2, s11 or s22)")),
    }
}

/// Parses a chain of block strings; a block without `i` takes the previous block's output
/// (the stem's for the first).
pub fn parse_block_chain<'a>(
    texts: impl IntoIterator<Item = &'a str>,
    stem_channels: u32,
) -> Result<Vec<BlockSpec>> {
    let mut channels = stem_channels;
    let mut blocks = Vec::new();
    for text in texts {
        let block = parse_block(text, Some(channels))?;
        channels = block.out_channels;
        blocks.push(block);
    }
    Ok(blocks)
}

/// Resolves what a user may pass as an architecture: a preset name, a JSON file, or a
/// comma-separated list of block strings (with the EfficientNet defaults around them).
pub fn parse_arch(spec: &str) -> Result<ArchSpec> {
    let spec = spec.trim();
    if let Some(arch) = crate::presets::preset(spec) {
        return Ok(arch);
    }
    let path = Path::new(spec);
    if path.is_dir() {
        return Err(SpaceError::File {
            path: path.to_owned(),
            reason: "is a directory; give a preset, block strings or a .json file".to_owned(),
        });
    }
    // A name with a directory in it can only be a file, so a missing one is "no such file",
    // not "unknown preset".
    let looks_like_path =
        spec.ends_with(".json") || spec.contains(std::path::MAIN_SEPARATOR) || path.is_file();
    if looks_like_path {
        return arch_from_file(Path::new(spec));
    }
    if spec.contains('_') {
        return ArchSpec::from_blocks(parse_block_chain(
            spec.split(','),
            crate::arch::defaults::STEM_CHANNELS,
        )?);
    }
    Err(SpaceError::UnknownPreset(spec.to_owned()))
}

/// Reads an architecture from a JSON file: a serialised `ArchSpec`, or the output of
/// `effnas arch --json` (which carries the spec under `"spec"`).
pub fn arch_from_file(path: &Path) -> Result<ArchSpec> {
    let file_err = |reason: String| SpaceError::File { path: path.to_owned(), reason };
    let text = std::fs::read_to_string(path).map_err(|e| file_err(e.to_string()))?;
    let value: serde_json::Value = serde_json::from_str(&text).map_err(|e| file_err(e.to_string()))?;
    let spec = match value.get("spec") {
        Some(spec) if value.get("blocks").is_some_and(|b| b.is_array()) && value.get("params").is_some() => {
            spec.clone()
        }
        _ => value,
    };
    serde_json::from_value(spec).map_err(|e| file_err(e.to_string()))
}

/// The canonical text of an architecture: every field that changes the network, in a fixed
/// order, blocks in canonical block strings. Two specs describe the same network exactly when
/// their canonical forms are equal.
///
/// The fields added for ResNet and MobileNetV1 appear only away from their defaults
/// (`_stemk7`, `_maxpool`, `headnone`, `_relu`), so every architecture that could be written
/// before them keeps its canonical form and its hash.
pub fn canonical(arch: &ArchSpec) -> String {
    let mut extras = String::new();
    if arch.stem_kernel != crate::arch::defaults::STEM_KERNEL {
        extras.push_str(&format!("_stemk{}", arch.stem_kernel));
    }
    if arch.stem_stride != crate::arch::defaults::STEM_STRIDE {
        extras.push_str(&format!("_stems{}", arch.stem_stride));
    }
    if arch.stem_max_pool {
        extras.push_str("_maxpool");
    }
    if arch.activation != Activation::default() {
        extras.push('_');
        extras.push_str(arch.activation.name());
    }
    let head = arch.head_channels.map_or_else(|| "none".to_owned(), |c| c.to_string());
    format!(
        "in{}_res{}_cls{}_stem{}_head{}_do{}_dc{}{}:{}",
        arch.input_channels,
        arch.resolution,
        arch.num_classes,
        arch.stem_channels,
        head,
        arch.dropout,
        arch.drop_connect,
        extras,
        arch.block_strings().join(",")
    )
}

/// A stable 16-hex-digit hash of the canonical form (the first 64 bits of its SHA-256).
pub fn arch_hash(arch: &ArchSpec) -> String {
    let digest = Sha256::digest(canonical(arch).as_bytes());
    digest[..8].iter().map(|b| format!("{b:02x}")).collect()
}

#[cfg(test)]
#[allow(clippy::unwrap_used)] // a failing unwrap is a failing test
mod tests {
    use super::*;

    #[test]
    fn tf_and_timm_spellings_agree() {
        let tf = parse_block("r2_k3_s22_e6_i16_o24_se0.25", None).unwrap();
        let timm = parse_block("ir_r2_k3_s2_e6_c24_se0.25", Some(16)).unwrap();
        assert_eq!(tf, timm);
        assert_eq!(format_block(&timm), "r2_k3_s22_e6_i16_o24_se0.25");
    }

    #[test]
    fn prefixes_and_skips_round_trip() {
        for text in [
            "ds_r1_k3_s11_i32_o16_se0.25",
            "cn_r2_k5_s22_i16_o24_noskip",
            "r3_k5_s22_e3_i24_o40_poolskip",
            "basic_r2_k3_s22_i64_o128",
            "basic_r1_k3_s11_i64_o64_noskip",
            "bottle_r3_k3_s11_e4_i64_o256",
            "bottle_r2_k5_s22_e2_i256_o512_poolskip",
        ] {
            let block = parse_block(text, None).unwrap();
            assert_eq!(format_block(&block), text);
        }
    }

    #[test]
    fn errors_name_the_token() {
        let cases = [
            ("r2_k4_s22_e6_i16_o24", "k4"),
            ("r2_k3_s33_e6_i16_o24", "s3"),
            ("r2_k3_s22_e6_i16_o0", "o0"),
            ("r2_k3_s22_e6_i16_o24_se1.5", "se1.5"),
            ("r2_k3_s22_e6_i16_o24_zz9", "zz9"),
            ("xx_r2_k3_s22_e6_i16_o24", "xx"),
            ("r2_k3_s21_e6_i16_o24", "s21"),
            ("r2_kx_s22_e6_i16_o24", "kx"),
            ("cn_r2_k3_s22_e6_i16_o24", "e6"),
            ("basic_r2_k3_s22_e4_i64_o128", "e4"),
            ("bottle_r3_k3_s11_e3_i64_o256", "e3"),
            ("bottle_r3_k3_s11_i64_o256_se0.25", "se0.25"),
            ("resnet_r3_k3_s11_i64_o256", "resnet"),
        ];
        for (text, token) in cases {
            match parse_block(text, None) {
                Err(SpaceError::BlockString { block, reason }) => {
                    assert_eq!(block, text);
                    assert!(reason.contains(token), "{text}: {reason}");
                }
                other => panic!("{text}: expected a block-string error, got {other:?}"),
            }
        }
        assert!(parse_block("r2_k3_s22_e6_o24", None).unwrap_err().to_string().contains("input channels"));
    }

    #[test]
    fn residual_blocks_read_as_resnet_writes_them() {
        let bottleneck = parse_block("bottle_r3_k3_s1_c256", Some(64)).unwrap();
        assert_eq!(bottleneck.op, Op::Bottleneck);
        assert_eq!(bottleneck.expansion, 4, "ResNet's expansion when e is left out");
        assert_eq!(bottleneck.hidden_channels(64), 64);
        assert_eq!(format_block(&bottleneck), "bottle_r3_k3_s11_e4_i64_o256");
        let basic = parse_block("basic_r2_k3_s2_c128", Some(64)).unwrap();
        assert_eq!((basic.op, basic.expansion), (Op::Basic, 1));
        assert_eq!(format_block(&basic), "basic_r2_k3_s22_i64_o128");
    }

    /// The canonical form names a ResNet's stem, head and activation, and a change of any of
    /// them changes the hash.
    #[test]
    fn stem_head_and_activation_enter_the_canonical_form() {
        let b0 = crate::presets::efficientnet_b0();
        let mut variants = vec![b0.clone(); 4];
        variants[0].stem_kernel = 7;
        variants[1].stem_max_pool = true;
        variants[2].head_channels = None;
        variants[3].activation = Activation::Relu;
        let mut hashes: Vec<String> = variants.iter().map(arch_hash).collect();
        hashes.push(arch_hash(&b0));
        hashes.sort();
        hashes.dedup();
        assert_eq!(hashes.len(), 5, "every variant hashes differently");
        let resnet = crate::presets::preset("resnet-50").unwrap();
        assert!(
            canonical(&resnet).starts_with("in3_res224_cls1000_stem64_headnone_do0_dc0_stemk7_maxpool_relu:")
        );
    }

    #[test]
    fn a_two_byte_character_after_s_is_an_error_not_a_panic() {
        let error = parse_block("r1_k3_s\u{e9}_i8_o8", None).expect_err("not a stride");
        assert!(error.to_string().contains("strides must be equal"), "{error}");
    }

    #[test]
    fn hash_is_stable_and_distinguishes() {
        let b0 = crate::presets::preset("b0").unwrap();
        let mut other = b0.clone();
        other.blocks[3].kernel = 5;
        assert_eq!(arch_hash(&b0), arch_hash(&b0.clone()));
        assert_ne!(arch_hash(&b0), arch_hash(&other));
        assert_eq!(arch_hash(&b0).len(), 16);
    }
}
