//! LightGCN's hot paths: one product with the normalised graph over every
//! node, and one training step (batch 2048, K = 2 and 3), on the
//! MovieLens-100K-sized synthetic data.
#![allow(missing_docs)] // criterion_group! generates an undocumented function.

use criterion::{criterion_group, criterion_main, Criterion, Throughput};
use hinrec::neural_baselines::lightgcn::Network;
use hinrec::neural_baselines::{LightGcnConfig, NormalizedGraph};
use hinrec_benches::ml100k_sized;
use hinrec_nn::optim::AdamConfig;

fn bench(c: &mut Criterion) {
    let p = ml100k_sized();
    let train = &p.split.train;
    let mut g = c.benchmark_group("lightgcn");
    g.sample_size(20);
    let graph = NormalizedGraph::new(train);
    let dim = 64;
    let x: Vec<f32> = (0..graph.nodes() * dim)
        .map(|k| (k % 13) as f32 * 0.01)
        .collect();
    let mut out = vec![0f32; x.len()];
    g.throughput(Throughput::Elements(graph.nnz() as u64));
    g.bench_function("propagate_d64", |b| {
        b.iter(|| graph.propagate(&x, &mut out, dim))
    });
    let pairs: Vec<(u32, u32)> = train.pairs().take(2048).collect();
    let users: Vec<u32> = pairs.iter().map(|p| p.0).collect();
    let pos: Vec<u32> = pairs.iter().map(|p| p.1).collect();
    let neg: Vec<u32> = pos
        .iter()
        .map(|&i| (i + 7) % train.n_items() as u32)
        .collect();
    g.throughput(Throughput::Elements(pairs.len() as u64));
    for layers in [2, 3] {
        let cfg = LightGcnConfig {
            layers,
            ..LightGcnConfig::default()
        };
        let mut net = Network::new(train, &cfg, 1).expect("builds");
        let adam = AdamConfig::default();
        g.bench_function(format!("step_batch2048_k{layers}"), |b| {
            b.iter(|| net.step(&users, &pos, &neg, &adam).expect("steps"))
        });
    }
    g.finish();
}

criterion_group!(benches, bench);
criterion_main!(benches);
