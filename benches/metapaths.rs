//! Meta-path hot paths on MovieLens-100K-sized synthetic data: full
//! commuting matrices (count and row-mean rule) and per-pair labels for every
//! training pair plus one negative.
#![allow(missing_docs)] // criterion_group! generates an undocumented function.

use criterion::{criterion_group, criterion_main, Criterion, Throughput};
use hinrec::graph::product::commuting_matrix;
use hinrec::graph::{Hin, MetaPath, PairLabeler, RowRule};
use hinrec_benches::{ml100k_sized, ml100k_sized_dataset};

fn bench(c: &mut Criterion) {
    let ds = ml100k_sized_dataset();
    let p = ml100k_sized();
    let hin = Hin::from_dataset(&ds, &p.split.train);
    let mut g = c.benchmark_group("metapaths");
    g.sample_size(10);
    for path in ["UIUI", "UAUI", "UIGI"] {
        let mp = MetaPath::parse(&hin, path).expect("path");
        for (name, rule) in [
            ("count", RowRule::Count),
            ("above_mean", RowRule::AboveRowMean),
        ] {
            g.bench_function(format!("full_{path}_{name}"), |b| {
                b.iter(|| commuting_matrix(&mp.factors, rule))
            });
        }
    }
    let mut pairs: Vec<(u32, u32)> = p.split.train.pairs().collect();
    let n = pairs.len();
    let items = p.split.train.n_items() as u32;
    let negatives: Vec<(u32, u32)> = (0..n)
        .map(|k| (pairs[k].0, (k as u32 * 7919) % items))
        .collect();
    pairs.extend(negatives);
    let labeler = PairLabeler::new(
        &hin,
        &["UIUI", "UAUI", "UIGI", "UUI"],
        RowRule::AboveRowMean,
    )
    .expect("paths");
    g.throughput(Throughput::Elements(pairs.len() as u64));
    g.bench_function("pair_labels_4_paths", |b| {
        b.iter(|| labeler.labels(&pairs).expect("labels"))
    });
    g.finish();
}

criterion_group!(benches, bench);
criterion_main!(benches);
