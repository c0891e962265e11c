//! GLRS's representation tower at Madison's batch shape (about 470 unique
//! users or 800 unique items a step; 64 wide, two hidden layers, output
//! L2-normalised): forward and backward through hinrec-nn's fused dense
//! MLP, beside the same tower as candle ops (`Mlp` + `l2_normalize` and
//! autograd), which GLRS used before.
#![allow(missing_docs)] // criterion_group! generates an undocumented function.

use candle_core::{DType, Device, Tensor, Var};
use criterion::{criterion_group, criterion_main, Criterion, Throughput};
use hinrec_nn::dense_mlp::{Grads, Tape};
use hinrec_nn::init::Rng;
use hinrec_nn::layers::Mlp;
use hinrec_nn::normalize::l2_normalize;

const ROWS: usize = 800;
const D: usize = 64;

fn bench(c: &mut Criterion) {
    let dev = Device::Cpu;
    let mut rng = Rng::new(1);
    let mlp = Mlp::new(&mut rng, &[D, D, D, D], DType::F32, &dev).expect("mlp");
    let x: Vec<f32> = rng.uniform_f32(ROWS * D, 0.05);
    let dy: Vec<f32> = rng.uniform_f32(ROWS * D, 1.0);
    let mut g = c.benchmark_group("glrs_tower");
    g.throughput(Throughput::Elements(ROWS as u64));
    let dense = mlp.to_dense(true).expect("dense");
    let (mut tape, mut grads) = (Tape::default(), Grads::default());
    g.bench_function("dense_mlp_forward_backward", |b| {
        b.iter(|| {
            dense.forward_into(&x, ROWS, &mut tape).expect("forward");
            dense
                .backward_into(&mut tape, &dy, &mut grads)
                .expect("backward");
        })
    });
    let dyt = Tensor::from_vec(dy.clone(), (ROWS, D), &dev).expect("dy");
    g.bench_function("candle_ops_forward_backward", |b| {
        b.iter(|| {
            let xv = Var::from_tensor(&Tensor::from_vec(x.clone(), (ROWS, D), &dev).expect("x"))
                .expect("var");
            let y = l2_normalize(&mlp.forward(xv.as_tensor()).expect("mlp")).expect("norm");
            (y * &dyt)
                .and_then(|t| t.sum_all())
                .and_then(|t| t.backward())
                .expect("backward")
        })
    });
    g.finish();
}

criterion_group!(benches, bench);
criterion_main!(benches);
