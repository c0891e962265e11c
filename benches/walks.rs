//! HHFAN's neighbour sampling (hinrec-sample `walk`) on a generated graph
//! of ml1m's shape: 6,040 users, 3,260 items, 1M user-item edges drawn
//! with a seeded generator, and four attribute types (2, 7, 21 and 18
//! nodes; one edge per user or item per type, genres two per item).
//! Restart 0.5, 100 nodes collected and 10 kept per type, from every node.
#![allow(missing_docs)] // criterion_group! generates an undocumented function.

use criterion::{criterion_group, criterion_main, Criterion, Throughput};
use hinrec_nn::init::Rng;
use hinrec_sample::walk::{NeighborGroups, TypedGraph, WalkConfig};

fn graph() -> TypedGraph {
    let counts = [6040usize, 3260, 2, 7, 21, 18];
    let mut offsets = vec![0u32];
    for c in counts {
        offsets.push(offsets[offsets.len() - 1] + c as u32);
    }
    let mut rng = Rng::new(1);
    // Uniform draws in (-1, 1) mapped to ids: deterministic for the seed.
    let mut pick = |n: usize, k: usize| -> Vec<u32> {
        rng.uniform(k, 1.0)
            .iter()
            .map(|&v| (((v + 1.0) / 2.0 * n as f64) as usize).min(n - 1) as u32)
            .collect()
    };
    let users = pick(counts[0], 1_000_000);
    let items = pick(counts[1], 1_000_000);
    let mut edges: Vec<(u32, u32)> = users
        .iter()
        .zip(&items)
        .map(|(&u, &i)| (offsets[0] + u, offsets[1] + i))
        .collect();
    for (t, &c) in counts.iter().enumerate().skip(2) {
        let owner = if t == 5 { 1 } else { 0 };
        let per = if t == 5 { 2 } else { 1 };
        let n = counts[owner];
        for (k, a) in pick(c, n * per).into_iter().enumerate() {
            edges.push((offsets[owner] + (k / per) as u32, offsets[t] + a));
        }
    }
    TypedGraph::new(&counts, &edges).expect("graph")
}

fn bench(c: &mut Criterion) {
    let g = graph();
    let cfg = WalkConfig {
        restart: 0.5,
        collect: 100,
        quotas: vec![100; 6],
        keep: vec![10; 6],
        max_steps_per_node: 20,
        seed: 1,
    };
    let mut group = c.benchmark_group("walks");
    group.sample_size(10);
    group.throughput(Throughput::Elements(g.n_nodes() as u64));
    group.bench_function("rwss_every_node", |b| {
        b.iter(|| NeighborGroups::sample(&g, &cfg).expect("walks"))
    });
    group.finish();
}

criterion_group!(benches, bench);
criterion_main!(benches);
