//! REDA's hot paths at reda-lastfm's shape (d = 128, k = 3, m = 20, s = 10):
//! the relations of one training batch (2,000 triples = 6,000 item pairs)
//! forward and backward, split into the pair-wise interaction op, the
//! memory read and the weight-attention pooling, and whole with the
//! memory's slot weights pooled before the values; and eq. 11 scoring of
//! 20 users x 101 candidates against 47 training items each.
#![allow(missing_docs)] // criterion_group! generates an undocumented function.

use candle_core::{DType, Device, Tensor, Var};
use criterion::{criterion_group, criterion_main, Criterion, Throughput};
use hinrec::data::Interactions;
use hinrec_nn::attention::{KeyValueMemory, WeightAttention};
use hinrec_nn::init::Rng;
use hinrec_nn::interaction::pair_products;
use hinrec_reda::{Reda, RedaConfig};

const PAIRS: usize = 6000;
const K: usize = 3;
const D: usize = 128;

fn var(rng: &mut Rng, rows: usize, cols: usize) -> Var {
    let v: Vec<f32> = rng
        .normal(rows * cols, 0.1)
        .iter()
        .map(|&x| x as f32)
        .collect();
    Var::from_tensor(&Tensor::from_vec(v, (rows, cols), &Device::Cpu).expect("tensor"))
        .expect("var")
}

fn bench(c: &mut Criterion) {
    let dev = Device::Cpu;
    let mut rng = Rng::new(1);
    let a = var(&mut rng, PAIRS, K * D);
    let b = var(&mut rng, PAIRS, K * D);
    let memory = KeyValueMemory::new(&mut rng, 20, D, DType::F32, &dev).expect("memory");
    let weight = WeightAttention::new(&mut rng, D, 10, DType::F32, &dev).expect("weight");
    let mut g = c.benchmark_group("reda_batch");
    g.sample_size(10);
    g.throughput(Throughput::Elements(PAIRS as u64));
    let v = pair_products(a.as_tensor(), b.as_tensor(), K).expect("v");
    g.bench_function("pair_products_fwd_bwd", |bch| {
        bch.iter(|| {
            let v = pair_products(a.as_tensor(), b.as_tensor(), K).expect("v");
            v.sum_all().expect("sum").backward().expect("grads")
        })
    });
    // The same products through candle's broadcasting, for comparison.
    g.bench_function("broadcast_mul_fwd_bwd", |bch| {
        bch.iter(|| {
            let v = a
                .as_tensor()
                .reshape((PAIRS, K, 1, D))
                .expect("a")
                .broadcast_mul(&b.as_tensor().reshape((PAIRS, 1, K, D)).expect("b"))
                .expect("v");
            v.sum_all().expect("sum").backward().expect("grads")
        })
    });
    g.bench_function("memory_read_fwd_bwd", |bch| {
        let v = Var::from_tensor(&v).expect("var");
        bch.iter(|| {
            let r = memory.forward(v.as_tensor()).expect("read");
            r.sum_all().expect("sum").backward().expect("grads")
        })
    });
    g.bench_function("weight_pool_fwd_bwd", |bch| {
        let v = Var::from_tensor(&v.reshape((PAIRS, K * K, D)).expect("3d")).expect("var");
        bch.iter(|| {
            let r = weight.pool(v.as_tensor(), v.as_tensor()).expect("pool");
            r.sum_all().expect("sum").backward().expect("grads")
        })
    });
    g.bench_function("relations_fwd_bwd", |bch| {
        bch.iter(|| {
            let v = pair_products(a.as_tensor(), b.as_tensor(), K).expect("v");
            let r = memory.forward(&v).expect("read");
            let kk = K * K;
            let p = weight
                .pool(
                    &v.reshape((PAIRS, kk, D)).expect("3d"),
                    &r.reshape((PAIRS, kk, D)).expect("3d"),
                )
                .expect("pool");
            p.sum_all().expect("sum").backward().expect("grads")
        })
    });
    // The same relations with the memory's slot weights pooled before the
    // product with the values, as the model computes them.
    g.bench_function("relations_pooled_read_fwd_bwd", |bch| {
        bch.iter(|| {
            let v = pair_products(a.as_tensor(), b.as_tensor(), K).expect("v");
            let s = weight
                .scores(&v)
                .expect("scores")
                .reshape((PAIRS, K * K))
                .expect("2d");
            let p = memory.pooled_read(&v, &s).expect("read");
            p.sum_all().expect("sum").backward().expect("grads")
        })
    });
    g.finish();

    // 20 users with 47 training items each among 2,000 items.
    let (users, items, per_user) = (20u32, 2000u32, 47u32);
    let pairs: Vec<(u32, u32)> = (0..users)
        .flat_map(|u| (0..per_user).map(move |j| (u, (u * 97 + j * 31) % items)))
        .collect();
    let train = Interactions::from_pairs(users as usize, items as usize, &pairs);
    let model = Reda::init(&train, &RedaConfig::default(), 1).expect("model");
    let cands: Vec<(u32, u32)> = (0..users)
        .flat_map(|u| (0..101).map(move |c| (u, (u * 13 + c * 17 + 1000) % items)))
        .collect();
    let mut g = c.benchmark_group("reda_scoring");
    g.sample_size(10);
    g.throughput(Throughput::Elements(cands.len() as u64));
    g.bench_function("score_20_users_x_101", |bch| {
        bch.iter(|| model.score_pairs(&cands).expect("scores"))
    });
    g.bench_function("user_embeddings_20_users", |bch| {
        let u: Vec<u32> = (0..users).collect();
        bch.iter(|| model.user_embeddings(&u).expect("z"))
    });
    g.finish();
}

criterion_group!(benches, bench);
criterion_main!(benches);
