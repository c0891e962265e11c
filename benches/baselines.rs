//! Training hot paths: one BPR-MF epoch and an ItemKNN fit.
#![allow(missing_docs)] // criterion_group! generates an undocumented function.

use criterion::{criterion_group, criterion_main, Criterion, Throughput};
use hinrec::baselines::{BprConfig, BprMf, ItemKnn, ItemKnnConfig};
use hinrec::train::Validation;
use hinrec_benches::ml100k_sized;

fn bench(c: &mut Criterion) {
    let p = ml100k_sized();
    let train = &p.split.train;
    let mut g = c.benchmark_group("baselines");
    g.sample_size(20);
    g.throughput(Throughput::Elements(train.nnz() as u64));
    for dim in [64, 128] {
        let cfg = BprConfig {
            dim,
            epochs: 1,
            ..BprConfig::default()
        };
        g.bench_function(format!("bpr_epoch_d{dim}"), |b| {
            b.iter(|| BprMf::fit(train, &cfg, &Validation::none(), 1, |_| {}).expect("fits"))
        });
    }
    g.bench_function("itemknn_fit_k50", |b| {
        b.iter(|| {
            ItemKnn::fit(
                train,
                &ItemKnnConfig {
                    k: 50,
                    ..Default::default()
                },
            )
            .expect("fits")
        })
    });
    g.finish();
}

criterion_group!(benches, bench);
criterion_main!(benches);
