//! LGRec's co-attention on one training batch of lgrec-ml100k's shape
//! (512 pairs, K1 = K2 = 100, about 1,400 item and 900 user rows, d = 128,
//! about 65% of slots real): the pooled scores read from a stored `FA G^T`
//! against per-pair dot products, and the whole layer forward and backward.
#![allow(missing_docs)] // criterion_group! generates an undocumented function.

use candle_core::{DType, Device, Tensor, Var};
use criterion::{criterion_group, criterion_main, Criterion, Throughput};
use hinrec_nn::init::Rng;
use hinrec_nn::layers::{co_attention, CoAttentionTables};
use hinrec_nn::slot_ops::{CoAttentionPool, Slots};

const P: usize = 512;
const K: usize = 100;
const NX: usize = 1400;
const NY: usize = 900;
const D: usize = 128;

/// Random slots; pairs `2q` and `2q + 1` share their user side, as a
/// positive and a negative pair of one training triple do.
fn slots(rng: &mut Rng) -> Slots {
    let ids = |rng: &mut Rng, n: usize| -> Vec<u32> {
        rng.normal(P * K, 1.0)
            .iter()
            .map(|v| ((v.abs() * 1e6) as usize % n) as u32)
            .collect()
    };
    let mask = |rng: &mut Rng| -> Vec<bool> {
        let lens = rng.normal(P, 1.0);
        (0..P * K)
            .map(|s| (s % K) < (65.0 + 25.0 * lens[s / K]).clamp(1.0, K as f64) as usize)
            .collect()
    };
    let twice = |v: Vec<u32>| -> Vec<u32> {
        v.chunks(K)
            .step_by(2)
            .flat_map(|c| c.iter().chain(c).copied())
            .collect()
    };
    let mx: Vec<bool> = mask(rng)
        .chunks(K)
        .step_by(2)
        .flat_map(|c| c.iter().chain(c).copied())
        .collect();
    Slots {
        idx_x: twice(ids(rng, NX)),
        idx_y: ids(rng, NY),
        mask_x: mx,
        mask_y: mask(rng),
    }
}

fn table(rng: &mut Rng, n: usize) -> Tensor {
    let v: Vec<f32> = rng.normal(n * D, 0.1).iter().map(|&x| x as f32).collect();
    Tensor::from_vec(v, (n, D), &Device::Cpu).expect("table")
}

fn bench(c: &mut Criterion) {
    let mut rng = Rng::new(1);
    let sl = slots(&mut rng);
    let (fa, g) = (table(&mut rng, NX), table(&mut rng, NY));
    let product = fa.matmul(&g.t().expect("t")).expect("product");
    let none = Tensor::zeros(0, DType::F32, &Device::Cpu).expect("empty");
    let mut group = c.benchmark_group("coattention");
    group.throughput(Throughput::Elements(P as u64));
    group.sample_size(10);
    group.bench_function("pool_stored_product", |b| {
        b.iter(|| {
            let op = CoAttentionPool::new(sl.clone(), P, K, K, D);
            fa.apply_op3_no_bwd(&g, &product, &op).expect("pool")
        })
    });
    group.bench_function("pool_dot_products", |b| {
        b.iter(|| {
            let op = CoAttentionPool::new(sl.clone(), P, K, K, D);
            fa.apply_op3_no_bwd(&g, &none, &op).expect("pool")
        })
    });
    group.bench_function("product_gemm", |b| {
        b.iter(|| fa.matmul(&g.t().expect("t")).expect("product"))
    });
    let (x, y) = (
        Var::from_tensor(&table(&mut rng, NX)).expect("var"),
        Var::from_tensor(&table(&mut rng, NY)).expect("var"),
    );
    let (fav, gv) = (
        Var::from_tensor(&fa).expect("var"),
        Var::from_tensor(&g).expect("var"),
    );
    group.bench_function("layer_forward_backward", |b| {
        b.iter(|| {
            let tables = CoAttentionTables::new(
                fav.as_tensor().clone(),
                gv.as_tensor().clone(),
                x.as_tensor().clone(),
                y.as_tensor().clone(),
            )
            .expect("tables");
            let (xu, yv) = co_attention(&tables, sl.clone(), K, K).expect("forward");
            let loss = ((xu - yv).expect("sub").sqr().expect("sqr"))
                .sum_all()
                .expect("sum");
            loss.backward().expect("backward")
        })
    });
    group.finish();
}

criterion_group!(benches, bench);
criterion_main!(benches);
