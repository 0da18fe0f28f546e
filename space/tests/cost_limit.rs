//! The cost model's limit: counts are exact up to `MAX_COUNT` (checked against the formula in
//! `u128`), and validation rejects anything above it, however it is loaded, instead of letting
//! a count wrap around.

use effnas_space::{
    checked_cost, cost, cost_breakdown, parse_arch, ArchSpec, BlockSpec, CostKind, Op, SearchSpace, Skip,
    SpaceError, MAX_COUNT,
};

const HUGE: u32 = effnas_space::arch::MAX_CHANNELS;
const RESOLUTION: u32 = effnas_space::arch::MAX_RESOLUTION;

/// `blocks` blocks of `repeats` plain 7×7 convolutions (no SE, stride 1) to `HUGE` channels at
/// `RESOLUTION` px, with the default stem, head and classifier. Not validated.
fn huge(blocks: usize, repeats: u32) -> ArchSpec {
    let block = |in_channels| BlockSpec {
        op: Op::Conv,
        repeats,
        kernel: 7,
        stride: 1,
        expansion: 1,
        in_channels,
        out_channels: HUGE,
        se_ratio: 0.0,
        skip: Skip::Identity,
    };
    let mut arch = parse_arch("b0").expect("preset");
    arch.resolution = RESOLUTION;
    arch.blocks = (0..blocks).map(|i| block(if i == 0 { arch.stem_channels } else { HUGE })).collect();
    arch
}

/// The counts of `huge(blocks, repeats)` by the formula, in `u128`: (parameters, multiply-adds).
fn reference(blocks: usize, repeats: u32) -> (u128, u128) {
    let arch = huge(blocks, repeats);
    let (input, stem, head) = (
        u128::from(arch.input_channels),
        u128::from(arch.stem_channels),
        u128::from(arch.classifier_channels()),
    );
    let (classes, c) = (u128::from(arch.num_classes), u128::from(HUGE));
    // The stem halves the resolution; every later layer keeps it.
    let hw = u128::from(RESOLUTION / 2).pow(2);
    let stem_weights = stem * input * 9;
    let (mut params, mut macs) = (stem_weights + 2 * stem, stem_weights * hw);
    let mut c_in = stem;
    for _ in 0..blocks * repeats as usize {
        let weights = c * c_in * 49;
        params += weights + 2 * c;
        macs += weights * hw;
        c_in = c;
    }
    let head_weights = head * c;
    params += head_weights + 2 * head + head * classes + classes;
    macs += head_weights * hw + head * classes;
    (params, macs)
}

#[test]
fn a_large_valid_architecture_counts_exactly() {
    for (blocks, repeats) in [(1, 1), (1, 4), (2, 2)] {
        let arch = huge(blocks, repeats);
        arch.validate().expect("within the limit");
        let (params, macs) = reference(blocks, repeats);
        assert!(macs > u128::from(u32::MAX) && macs <= u128::from(MAX_COUNT), "{macs}");
        let total = cost(&arch);
        assert_eq!((u128::from(total.params), u128::from(total.macs)), (params, macs), "{blocks}×r{repeats}");
        assert_eq!(cost_breakdown(&arch).total, total);
        assert_eq!(checked_cost(&arch).expect("within the limit"), total);
    }
}

#[test]
fn validation_rejects_counts_over_the_limit_with_a_typed_error() {
    // One block of 64 layers has about 3.5e18 multiply-adds: it fits in u64 and even in i64,
    // but is over the limit. Eight such blocks (about 2.8e19) do not fit in u64 at all; the
    // cost model once wrapped them around to a small number.
    for blocks in [1, 7, 8] {
        let arch = huge(blocks, 64);
        let (params, macs) = reference(blocks, 64);
        match arch.validate() {
            Err(SpaceError::CostOverflow { what: CostKind::Macs, count, limit }) => {
                assert_eq!((count, limit), (macs, MAX_COUNT), "{blocks} blocks");
            }
            other => panic!("{blocks} blocks: expected a multiply-add overflow, got {other:?}"),
        }
        assert!(matches!(checked_cost(&arch), Err(SpaceError::CostOverflow { .. })));
        // The infallible cost saturates where the count does not fit; it never wraps.
        let total = cost(&arch);
        assert_eq!(u128::from(total.params), params);
        assert_eq!(u128::from(total.macs), macs.min(u128::from(u64::MAX)), "{blocks} blocks");
    }
    let message = huge(8, 64).validate().expect_err("over the limit").to_string();
    assert!(message.contains("multiply-adds") && message.contains("1e18"), "{message}");
}

#[test]
fn every_way_of_loading_an_architecture_checks_the_limit() {
    let arch = huge(2, 64);
    let json = serde_json::to_value(&arch).expect("serialise");
    let message = serde_json::from_value::<ArchSpec>(json.clone()).expect_err("over the limit").to_string();
    assert!(message.contains("multiply-adds"), "{message}");

    let path = std::env::temp_dir().join(format!("effnas-cost-limit-{}.json", std::process::id()));
    std::fs::write(&path, json.to_string()).expect("write");
    let loaded = parse_arch(path.to_str().expect("utf-8 path"));
    std::fs::remove_file(&path).expect("remove");
    let message = loaded.expect_err("over the limit").to_string();
    assert!(message.contains("multiply-adds") && message.contains("above the limit"), "{message}");

    let mut blocks = arch.blocks.clone();
    blocks.truncate(1);
    assert!(ArchSpec::from_blocks(blocks).is_ok(), "224 px keeps one block within the limit");
}

#[test]
fn a_space_with_members_over_the_limit_is_rejected() {
    let mut space = SearchSpace::mnasnet();
    space.resolution = RESOLUTION;
    space.validate().expect("MobileNetV2-sized members stay within the limit at 4096 px");
    space.blocks[0].channels.push(HUGE);
    space.blocks[0].layers.push(64);
    space.blocks[1].channels.push(HUGE);
    let message = space.validate().expect_err("the largest members are over").to_string();
    assert!(message.contains("blocks") && message.contains("multiply-adds"), "{message}");
    // The skeleton (first choice everywhere) is small: only the search finds the large members.
    assert!(space.decode(&vec![0; space.num_tokens()]).is_ok());
}
