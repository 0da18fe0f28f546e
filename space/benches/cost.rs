//! Cost of the analytic cost model on a B0-sized architecture (target: under 10 µs).

use criterion::{black_box, criterion_group, criterion_main, Criterion};
use effnas_space::{cost, presets, SearchSpace};
use rand::SeedableRng;

fn bench_cost(c: &mut Criterion) {
    let b0 = presets::efficientnet_b0();
    c.bench_function("cost/efficientnet-b0", |b| b.iter(|| cost(black_box(&b0))));
    let b7 = presets::preset("b7").expect("preset");
    c.bench_function("cost/efficientnet-b7", |b| b.iter(|| cost(black_box(&b7))));
    let space = SearchSpace::default_space();
    let mut rng = rand_chacha::ChaCha8Rng::seed_from_u64(0);
    c.bench_function("sample+decode+cost/default-space", |b| {
        b.iter(|| {
            let tokens = space.sample_tokens(&mut rng);
            cost(&space.decode(&tokens).expect("sampled tokens decode"))
        })
    });
}

criterion_group!(benches, bench_cost);
criterion_main!(benches);
