//! Property tests of the block-string codec: no input panics the parser, and every valid
//! block survives print → parse unchanged.

use effnas_space::{format_block, parse_block, BlockSpec, Op, Skip};
use proptest::prelude::*;

fn op() -> impl Strategy<Value = (Op, u32)> {
    prop_oneof![
        Just((Op::Conv, 1)),
        Just((Op::DepthwiseSeparable, 1)),
        (1u32..=16).prop_map(|e| (Op::MBConv, e)),
        Just((Op::Basic, 1)),
        (1u32..=16).prop_map(|e| (Op::Bottleneck, e)),
        Just((Op::Projection, 1)),
    ]
}

fn block() -> impl Strategy<Value = BlockSpec> {
    (
        op(),
        1u32..=64,
        prop_oneof![Just(1u32), Just(3), Just(5), Just(7)],
        1u32..=2,
        1u32..=16_384,
        1u32..=16_384,
        prop_oneof![Just(0.0), Just(0.25), Just(0.5), Just(1.0), (0.0f64..=1.0)],
        prop_oneof![Just(Skip::None), Just(Skip::Identity), Just(Skip::Pool)],
    )
        .prop_map(
            |((op, expansion), repeats, kernel, stride, in_channels, out_channels, se_ratio, skip)| {
                // What validation asks of residual blocks: no SE, and a bottleneck's output a
                // multiple of its expansion.
                // Projections take no SE either.
                let se_ratio = if op.is_residual() || op == Op::Projection { 0.0 } else { se_ratio };
                let out_channels = if op == Op::Bottleneck {
                    (out_channels / expansion).max(1) * expansion
                } else {
                    out_channels
                };
                BlockSpec {
                    op,
                    repeats,
                    kernel,
                    stride,
                    expansion,
                    in_channels,
                    out_channels,
                    se_ratio,
                    skip,
                }
            },
        )
}

proptest! {
    #[test]
    fn parser_never_panics_on_arbitrary_text(text in "\\PC{0,40}") {
        let _ = parse_block(&text, None);
        let _ = parse_block(&text, Some(16));
        let _ = effnas_space::parse_arch(&text);
    }

    #[test]
    fn parser_never_panics_on_block_like_text(text in "(ir_|ds_|cn_|basic_|bottle_|xx_)?(r[0-9]{0,3}|k[0-9]{0,2}|s[0-9]{0,3}|e[0-9]{0,2}|i[0-9]{0,6}|o[0-9]{0,6}|c[0-9]{0,6}|se[0-9.]{0,5}|noskip|poolskip)(_(r[0-9]{0,3}|k[0-9]{0,2}|s[0-9]{0,3}|e[0-9]{0,2}|i[0-9]{0,6}|o[0-9]{0,6}|se[0-9.e-]{0,5}|noskip|poolskip)){0,8}") {
        if let Ok(block) = parse_block(&text, None) {
            prop_assert!(block.validate().is_ok());
        }
    }

    #[test]
    fn print_then_parse_is_identity(block in block()) {
        let text = format_block(&block);
        let parsed = parse_block(&text, None).map_err(|e| TestCaseError::fail(e.to_string()))?;
        prop_assert_eq!(&parsed, &block);
        prop_assert_eq!(format_block(&parsed), text);
    }
}
