//! Evaluation hot paths: full ranking of every user and the sampled protocol.
#![allow(missing_docs)] // criterion_group! generates an undocumented function.

use criterion::{criterion_group, criterion_main, Criterion};
use hinrec::baselines::{BprConfig, BprMf};
use hinrec::eval::{full_ranking, sampled};
use hinrec::train::Validation;
use hinrec_benches::ml100k_sized;

fn bench(c: &mut Criterion) {
    let p = ml100k_sized();
    let cfg = BprConfig {
        epochs: 2,
        ..BprConfig::default()
    };
    let (model, _) =
        BprMf::fit(&p.split.train, &cfg, &Validation::none(), 1, |_| {}).expect("fits");
    let s = &p.split;
    let mut g = c.benchmark_group("evaluation");
    g.sample_size(20);
    g.bench_function("full_ranking_943_users", |b| {
        b.iter(|| full_ranking(&model, &s.test, &[&s.train, &s.valid], &[10, 20]).expect("scores"))
    });
    g.bench_function("sampled_943_pairs_x_100", |b| {
        b.iter(|| sampled(&model, &p.test_negatives, &[10]).expect("scores"))
    });
    g.finish();
}

criterion_group!(benches, bench);
criterion_main!(benches);
