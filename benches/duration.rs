//! DURation's per-step hot paths at douban-dtcdr's shape (1,024 rows per
//! kind, two kinds, d = 64), forward and backward, each fused op beside the
//! candle ops it replaces:
//! - one block of eq. 4's RBF kernel sum, `1024 x 1024` pairs;
//! - eq. 4's whole alignment loss and gradient over both kinds (`2048 x
//!   2048` pairs): the symmetric tiles on plain rows against the candle
//!   loss over three fused blocks;
//! - the user tower's embedding bag over about 100,000 history entries of
//!   1,500 users into a gathered leaf of 10,000 item rows.
#![allow(missing_docs)] // criterion_group! generates an undocumented function.

use std::sync::Arc;

use candle_core::{DType, Device, Tensor, Var};
use criterion::{criterion_group, criterion_main, Criterion};
use hinrec_nn::alignment::{distributional_variance, rbf_gram, rbf_kernel_sum};
use hinrec_nn::alignment_rows::{distributional_variance_grad, AlignmentScratch};
use hinrec_nn::bag::{embedding_bag, BagIndex};
use hinrec_nn::init::Rng;

const ROWS: usize = 1024;
const DIM: usize = 64;
const BAGS: usize = 1500;
const PER_BAG: usize = 66;
const LEAF: usize = 10_000;

fn rows(rng: &mut Rng, n: usize) -> Tensor {
    Tensor::from_vec(rng.uniform_f32(n * DIM, 0.5), (n, DIM), &Device::Cpu).expect("rows")
}

fn bench(c: &mut Criterion) {
    let mut rng = Rng::new(1);
    let (x, y) = (rows(&mut rng, ROWS), rows(&mut rng, ROWS));
    let mut g = c.benchmark_group("duration");
    g.sample_size(10);
    g.bench_function("rbf_block_fused", |b| {
        b.iter(|| {
            let xv = Var::from_tensor(&x).expect("var");
            rbf_kernel_sum(xv.as_tensor(), &y, 0.1)
                .and_then(|t| t.backward())
                .expect("backward")
        })
    });
    g.bench_function("rbf_block_candle_ops", |b| {
        b.iter(|| {
            let xv = Var::from_tensor(&x).expect("var");
            rbf_gram(xv.as_tensor(), &y, 0.1)
                .and_then(|k| k.sum_all())
                .and_then(|t| t.backward())
                .expect("backward")
        })
    });
    let both = Tensor::cat(&[&x, &y], 0).expect("cat");
    let flat: Vec<f32> = both.flatten_all().and_then(|t| t.to_vec1()).expect("flat");
    let mut scratch = AlignmentScratch::default();
    let mut grad = vec![0f32; flat.len()];
    g.bench_function("alignment_tiles", |b| {
        b.iter(|| {
            distributional_variance_grad(
                &flat,
                DIM,
                &[ROWS, ROWS],
                0.1,
                1.0,
                &mut grad,
                &mut scratch,
            )
            .expect("alignment")
        })
    });
    g.bench_function("alignment_candle_blocks", |b| {
        b.iter(|| {
            let v = Var::from_tensor(&both).expect("var");
            let (a, b2) = (
                v.as_tensor().narrow(0, 0, ROWS).expect("a"),
                v.as_tensor().narrow(0, ROWS, ROWS).expect("b"),
            );
            distributional_variance(&[&a, &b2], 0.1)
                .and_then(|t| t.backward())
                .expect("backward")
        })
    });
    let table = rows(&mut rng, LEAF);
    let mut index = BagIndex::new();
    let (mut pos, mut seg, mut w) = (Vec::new(), Vec::new(), Vec::new());
    for bag in 0..BAGS {
        let entries: Vec<(u32, f32)> = (0..PER_BAG)
            .map(|k| (((bag * 7919 + k * 104_729) % LEAF) as u32, 0.1))
            .collect();
        for &(r, x) in &entries {
            pos.push(r);
            seg.push(bag as u32);
            w.push(x);
        }
        index.push(entries);
    }
    let index = Arc::new(index);
    let n = pos.len();
    let dev = Device::Cpu;
    let (pos, seg, w) = (
        Tensor::from_vec(pos, n, &dev).expect("pos"),
        Tensor::from_vec(seg, n, &dev).expect("seg"),
        Tensor::from_vec(w, (n, 1), &dev).expect("w"),
    );
    g.bench_function("bag_fused", |b| {
        b.iter(|| {
            let t = Var::from_tensor(&table).expect("var");
            embedding_bag(t.as_tensor(), index.clone())
                .and_then(|o| o.sum_all())
                .and_then(|s| s.backward())
                .expect("backward")
        })
    });
    g.bench_function("bag_candle_ops", |b| {
        b.iter(|| {
            let t = Var::from_tensor(&table).expect("var");
            let picked = t.as_tensor().index_select(&pos, 0).expect("select");
            Tensor::zeros((BAGS, DIM), DType::F32, &dev)
                .and_then(|z| z.index_add(&seg, &picked.broadcast_mul(&w)?, 0))
                .and_then(|o| o.sum_all())
                .and_then(|s| s.backward())
                .expect("backward")
        })
    });
    g.finish();
}

criterion_group!(benches, bench);
criterion_main!(benches);
