//! HHFAN's intra-type aggregator at ml1m's batch shape (about 6,000 unique
//! users and items a step, a group of 10 neighbours, d = 64, 32 per
//! direction): forward and backward of hinrec-nn's fused masked Bi-LSTM
//! mean, beside the same Bi-LSTM as candle ops (a loop over the steps of
//! batched products and gates, autograd), which is what candle-nn's `LSTM`
//! does step by step.
#![allow(missing_docs)] // criterion_group! generates an undocumented function.

use candle_core::{Device, Tensor, Var, D};
use criterion::{criterion_group, criterion_main, Criterion, Throughput};
use hinrec_nn::init::Rng;
use hinrec_nn::lstm::{composed_step, BiLstm};

const NODES: usize = 6000;
const STEPS: usize = 10;
const DIM: usize = 64;

/// Both directions over full-length rows as candle ops.
fn composed(x: &Tensor, lstm: &BiLstm) -> candle_core::Result<Tensor> {
    let h = DIM / 2;
    let (w, b) = (lstm.w.as_tensor(), lstm.b.as_tensor());
    let mut parts = Vec::new();
    for dir in 0..2 {
        let (wd, bd) = (w.get(dir)?, b.get(dir)?.unsqueeze(0)?);
        let mut hs = Tensor::zeros((NODES, h), x.dtype(), x.device())?;
        let mut cs = hs.clone();
        let mut acc = hs.clone();
        for s in 0..STEPS {
            let t = if dir == 0 { s } else { STEPS - 1 - s };
            (hs, cs) = composed_step(&x.narrow(1, t, 1)?.squeeze(1)?, &hs, &cs, &wd, &bd)?;
            acc = (acc + &hs)?;
        }
        parts.push((acc / STEPS as f64)?);
    }
    Tensor::cat(&parts, D::Minus1)
}

fn bench(c: &mut Criterion) {
    let dev = Device::Cpu;
    let mut rng = Rng::new(1);
    let lstm = BiLstm::new(&mut rng, DIM, 0.1).expect("lstm");
    let x = Tensor::from_vec(
        rng.uniform_f32(NODES * STEPS * DIM, 0.1),
        (NODES, STEPS, DIM),
        &dev,
    )
    .expect("x");
    let mut g = c.benchmark_group("lstm");
    g.sample_size(10);
    g.throughput(Throughput::Elements(NODES as u64));
    g.bench_function("fused_forward_backward", |b| {
        b.iter(|| {
            let xv = Var::from_tensor(&x).expect("var");
            let y = lstm
                .forward(xv.as_tensor(), vec![STEPS as u32; NODES])
                .expect("lstm");
            y.sum_all().and_then(|t| t.backward()).expect("backward")
        })
    });
    g.bench_function("candle_ops_forward_backward", |b| {
        b.iter(|| {
            let xv = Var::from_tensor(&x).expect("var");
            let y = composed(xv.as_tensor(), &lstm).expect("composed");
            y.sum_all().and_then(|t| t.backward()).expect("backward")
        })
    });
    g.finish();
}

criterion_group!(benches, bench);
criterion_main!(benches);
