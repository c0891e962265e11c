//! The same BPR-MF epoch written with candle (mini-batches of 2048, autograd,
//! SGD), to compare with the plain-Rust SGD of `hinrec-baselines`. This is
//! the measurement behind choosing plain Rust for BPR-MF
//! (docs/performance.md).
#![allow(missing_docs)] // criterion_group! generates an undocumented function.

use candle_core::{DType, Device, Tensor, Var};
use candle_nn::{Optimizer, SGD};
use criterion::{criterion_group, criterion_main, Criterion, Throughput};
use hinrec::baselines::{BprConfig, BprMf};
use hinrec::train::Validation;
use hinrec_benches::ml100k_sized;

/// One epoch of candle BPR over `triples` in batches; returns the last loss.
fn candle_epoch(users: &Var, items: &Var, triples: &[(u32, u32, u32)], opt: &mut SGD) -> f32 {
    let dev = Device::Cpu;
    let mut last = 0.0;
    for batch in triples.chunks(2048) {
        let ids = |f: fn(&(u32, u32, u32)) -> u32| {
            Tensor::from_vec(batch.iter().map(f).collect::<Vec<u32>>(), batch.len(), &dev)
                .expect("ids")
        };
        let (u, i, j) = (ids(|t| t.0), ids(|t| t.1), ids(|t| t.2));
        let pu = users.as_tensor().index_select(&u, 0).expect("gather");
        let qi = items.as_tensor().index_select(&i, 0).expect("gather");
        let qj = items.as_tensor().index_select(&j, 0).expect("gather");
        let x = (pu * (qi - qj).expect("sub"))
            .expect("mul")
            .sum(1)
            .expect("sum");
        // -ln sigmoid(x) = softplus(-x) = ln(1 + exp(-x))
        let loss = x.neg().expect("neg").exp().expect("exp");
        let loss = (loss + 1.0)
            .expect("add")
            .log()
            .expect("log")
            .mean_all()
            .expect("mean");
        opt.backward_step(&loss).expect("step");
        last = loss.to_scalar::<f32>().expect("scalar");
    }
    last
}

fn bench(c: &mut Criterion) {
    let p = ml100k_sized();
    let train = &p.split.train;
    let (nu, ni, d) = (train.n_users(), train.n_items(), 64);
    // Negatives drawn once; sampling is not what is compared here.
    let triples: Vec<(u32, u32, u32)> = train
        .pairs()
        .enumerate()
        .map(|(k, (u, i))| {
            let mut j = (k as u32 * 7919) % ni as u32;
            while train.contains(u, j) {
                j = (j + 1) % ni as u32;
            }
            (u, i, j)
        })
        .collect();
    let users = Var::from_tensor(&Tensor::zeros((nu, d), DType::F32, &Device::Cpu).expect("zeros"))
        .expect("var");
    let items = Var::from_tensor(&Tensor::ones((ni, d), DType::F32, &Device::Cpu).expect("ones"))
        .expect("var");
    let mut opt = SGD::new(vec![users.clone(), items.clone()], 0.05).expect("sgd");

    let mut g = c.benchmark_group("bpr_epoch_plain_vs_candle");
    g.sample_size(10);
    g.throughput(Throughput::Elements(train.nnz() as u64));
    let cfg = BprConfig {
        dim: d,
        epochs: 1,
        ..BprConfig::default()
    };
    g.bench_function("plain_rust_sgd_d64", |b| {
        b.iter(|| BprMf::fit(train, &cfg, &Validation::none(), 1, |_| {}).expect("fits"))
    });
    g.bench_function("candle_batch2048_d64", |b| {
        b.iter(|| candle_epoch(&users, &items, &triples, &mut opt))
    });
    g.finish();
}

criterion_group!(benches, bench);
criterion_main!(benches);
