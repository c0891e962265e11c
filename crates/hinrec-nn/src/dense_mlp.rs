//! An MLP over plain row-major `f32` rows, forward and backward fused,
//! outside candle.
//!
//! GLRS's representation towers are three 64-wide layers over a few
//! hundred rows a step. As candle ops, allocation, copies and the small
//! ops around the products took 57% of a step (`perf record`); here a
//! step is the products (matrixmultiply through ndarray, on our own
//! buffers) and one pass each for bias, ReLU and normalisation.
//!
//! Rows go through in fixed chunks of [`CHUNK`] over rayon and each
//! chunk's weight gradient is summed in chunk order, so the result is the
//! same whatever the thread count.
//!
//! ```
//! use hinrec_nn::dense_mlp::{DenseLayer, DenseMlp};
//!
//! let layer = DenseLayer { d_in: 2, d_out: 2, weight: vec![1.0, 0.0, 0.0, 1.0], bias: vec![0.0, 0.0] };
//! let mlp = DenseMlp { layers: vec![layer], normalize: true };
//! let tape = mlp.forward(&[3.0, 4.0], 1)?;
//! assert_eq!(tape.out, vec![0.6, 0.8]);
//! # Ok::<(), candle_core::Error>(())
//! ```

use candle_core::{Error, Result};
use hinrec_cluster::kmeans::dot;
use ndarray::linalg::general_mat_mul;
use ndarray::{ArrayView2, ArrayViewMut2, LinalgScalar};
use rayon::prelude::*;

/// Rows per parallel chunk (fixed: the chunking, not the threads, decides
/// the order of the weight-gradient sums).
pub const CHUNK: usize = 256;

/// Norms below this are treated as `EPS` (as [`crate::normalize`]).
const EPS: f64 = crate::normalize::EPS;

/// `y = x W + b`, `W` row-major `d_in x d_out`.
#[derive(Debug, Clone, PartialEq)]
pub struct DenseLayer {
    /// Input width.
    pub d_in: usize,
    /// Output width.
    pub d_out: usize,
    /// Row-major `d_in x d_out`.
    pub weight: Vec<f32>,
    /// `d_out`.
    pub bias: Vec<f32>,
}

impl DenseLayer {
    /// `x W + b` for `rows` rows of `x`, one product (where
    /// [`DenseMlp`] works in chunks of rows).
    pub fn forward_rows(&self, x: &[f32], rows: usize) -> Result<Vec<f32>> {
        let mut z = Vec::with_capacity(rows * self.d_out);
        for _ in 0..rows {
            z.extend_from_slice(&self.bias);
        }
        gemm(
            x,
            false,
            &self.weight,
            false,
            &mut z,
            (rows, self.d_in, self.d_out),
            1.0,
        )?;
        Ok(z)
    }

    /// [`DenseLayer::forward_rows`]'s gradients from its input `x` and
    /// the output's gradient `dz`: `[dW, db, dx]`.
    pub fn backward_rows(&self, x: &[f32], dz: &[f32], rows: usize) -> Result<[Vec<f32>; 3]> {
        let mut dw = vec![0f32; self.weight.len()];
        gemm(
            x,
            true,
            dz,
            false,
            &mut dw,
            (self.d_in, rows, self.d_out),
            0.0,
        )?;
        let mut dx = vec![0f32; rows * self.d_in];
        gemm(
            dz,
            false,
            &self.weight,
            true,
            &mut dx,
            (rows, self.d_out, self.d_in),
            0.0,
        )?;
        Ok([dw, column_sums(dz, self.d_out), dx])
    }
}

/// The sum of the rows of `x` (`d` wide), in row order.
pub fn column_sums(x: &[f32], d: usize) -> Vec<f32> {
    let mut out = vec![0f32; d];
    for row in x.chunks(d.max(1)) {
        out.iter_mut().zip(row).for_each(|(o, v)| *o += v);
    }
    out
}

/// Linear layers with ReLU between them (none after the last), optionally
/// followed by row-wise L2 normalisation: [`crate::layers::Mlp`] then
/// [`crate::normalize::l2_normalize`], as plain loops.
#[derive(Debug, Clone, PartialEq)]
pub struct DenseMlp {
    /// The layers, input first.
    pub layers: Vec<DenseLayer>,
    /// Whether the output rows are divided by their norms.
    pub normalize: bool,
}

/// What the forward pass keeps for the backward one, and the backward's
/// scratch. Kept by a training loop and passed back in, its buffers are
/// reused from step to step: allocating them afresh each step cost more
/// in page faults than the products (`perf record`).
#[derive(Debug, Clone, Default)]
pub struct Tape {
    rows: usize,
    /// Chunk tapes; the first `active` hold this batch (the rest are kept
    /// for larger batches).
    chunks: Vec<ChunkTape>,
    active: usize,
    /// The output rows, row-major `rows x d_out`.
    pub out: Vec<f32>,
}

#[derive(Debug, Clone, Default)]
struct ChunkTape {
    rows: usize,
    /// The chunk's input, then each layer's output (after its ReLU; the
    /// last layer's before normalisation).
    acts: Vec<Vec<f32>>,
    /// Output norms (normalised MLPs).
    norms: Vec<f64>,
    /// Normalised output.
    out: Vec<f32>,
    /// Backward scratch: the running gradient and the next one.
    g: Vec<f32>,
    dh: Vec<f32>,
    /// This chunk's share of each layer's gradients.
    grads: Vec<LayerGrad>,
}

/// Gradients of one layer.
#[derive(Debug, Clone, Default, PartialEq)]
pub struct LayerGrad {
    /// `d_in x d_out`.
    pub weight: Vec<f32>,
    /// `d_out`.
    pub bias: Vec<f32>,
}

/// What the backward pass returns (reusable like [`Tape`]).
#[derive(Debug, Clone, Default, PartialEq)]
pub struct Grads {
    /// Per layer, input first.
    pub layers: Vec<LayerGrad>,
    /// The input rows' gradient, `rows x d_in`.
    pub input: Vec<f32>,
}

/// `sum x^2` in f64 over 8 running sums added in a fixed order (one
/// running sum is a chain of dependent adds that cannot be vectorised).
fn sum_of_squares(x: &[f32]) -> f64 {
    let mut acc = [0f64; 8];
    let chunks = x.chunks_exact(8);
    let tail: f64 = chunks
        .remainder()
        .iter()
        .map(|&v| (v as f64) * (v as f64))
        .sum();
    for c in chunks {
        for j in 0..8 {
            acc[j] += (c[j] as f64) * (c[j] as f64);
        }
    }
    acc.iter().sum::<f64>() + tail
}

/// Sets `v` to `n` zeros, keeping its allocation.
fn zeroed(v: &mut Vec<f32>, n: usize) {
    v.clear();
    v.resize(n, 0.0);
}

fn shape_error(e: ndarray::ShapeError) -> Error {
    Error::Msg(format!("dense mlp: {e}"))
}

/// `x` as a `rows x cols` matrix, stored transposed (`cols x rows`) when
/// `transposed`.
fn view<T>(x: &[T], (rows, cols): (usize, usize), transposed: bool) -> Result<ArrayView2<'_, T>> {
    Ok(if transposed {
        ArrayView2::from_shape((cols, rows), x)
            .map_err(shape_error)?
            .reversed_axes()
    } else {
        ArrayView2::from_shape((rows, cols), x).map_err(shape_error)?
    })
}

/// `c = a b + beta c` with `a` `m x k` (stored `k x m` when `a_t`) and
/// `b` `k x n` (stored `n x k` when `b_t`), all row-major slices; the
/// transposes are strides, never copies.
pub fn gemm<T: LinalgScalar>(
    a: &[T],
    a_t: bool,
    b: &[T],
    b_t: bool,
    c: &mut [T],
    (m, k, n): (usize, usize, usize),
    beta: T,
) -> Result<()> {
    let av = view(a, (m, k), a_t)?;
    let bv = view(b, (k, n), b_t)?;
    let mut cv = ArrayViewMut2::from_shape((m, n), c).map_err(shape_error)?;
    general_mat_mul(T::one(), &av, &bv, beta, &mut cv);
    Ok(())
}

impl DenseMlp {
    /// Input width.
    pub fn d_in(&self) -> usize {
        self.layers.first().map_or(0, |l| l.d_in)
    }

    /// Output width.
    pub fn d_out(&self) -> usize {
        self.layers.last().map_or(0, |l| l.d_out)
    }

    fn check(&self) -> Result<()> {
        let mut width = self.d_in();
        for (k, l) in self.layers.iter().enumerate() {
            if l.d_in != width || l.weight.len() != l.d_in * l.d_out || l.bias.len() != l.d_out {
                return Err(Error::Msg(format!(
                    "dense mlp: layer {k} is {} x {} with {} weights and {} biases after a width of {width}",
                    l.d_in,
                    l.d_out,
                    l.weight.len(),
                    l.bias.len()
                )));
            }
            width = l.d_out;
        }
        if self.layers.is_empty() {
            return Err(Error::Msg("dense mlp: no layer".into()));
        }
        Ok(())
    }

    /// The outputs of `rows` input rows `x` (row-major `rows x d_in`),
    /// with what [`DenseMlp::backward`] needs.
    pub fn forward(&self, x: &[f32], rows: usize) -> Result<Tape> {
        let mut tape = Tape::default();
        self.forward_into(x, rows, &mut tape)?;
        Ok(tape)
    }

    /// [`DenseMlp::forward`] into `tape`, reusing its buffers.
    pub fn forward_into(&self, x: &[f32], rows: usize, tape: &mut Tape) -> Result<()> {
        self.check()?;
        let d_in = self.d_in();
        if x.len() != rows * d_in {
            return Err(Error::Msg(format!(
                "dense mlp: {} inputs for {rows} rows of {d_in}",
                x.len()
            )));
        }
        tape.rows = rows;
        tape.active = rows.div_ceil(CHUNK);
        if tape.chunks.len() < tape.active {
            tape.chunks.resize_with(tape.active, ChunkTape::default);
        }
        tape.chunks[..tape.active]
            .par_iter_mut()
            .zip(x.par_chunks(CHUNK * d_in.max(1)))
            .try_for_each(|(c, xc)| self.forward_chunk(xc, c))?;
        tape.out.clear();
        for c in &tape.chunks[..tape.active] {
            tape.out.extend_from_slice(&c.out);
        }
        Ok(())
    }

    fn forward_chunk(&self, x: &[f32], c: &mut ChunkTape) -> Result<()> {
        let n = x.len() / self.d_in().max(1);
        c.rows = n;
        c.acts.resize_with(self.layers.len() + 1, Vec::new);
        c.acts[0].clear();
        c.acts[0].extend_from_slice(x);
        let last = self.layers.len() - 1;
        for (k, l) in self.layers.iter().enumerate() {
            let (done, rest) = c.acts.split_at_mut(k + 1);
            let z = &mut rest[0];
            z.clear();
            for _ in 0..n {
                z.extend_from_slice(&l.bias);
            }
            gemm(
                &done[k],
                false,
                &l.weight,
                false,
                z,
                (n, l.d_in, l.d_out),
                1.0,
            )?;
            if k < last {
                z.iter_mut().for_each(|v| *v = v.max(0.0));
            }
        }
        let d = self.d_out();
        let z = &c.acts[self.layers.len()];
        c.out.clear();
        c.norms.clear();
        if self.normalize {
            for row in z.chunks(d.max(1)) {
                let norm = sum_of_squares(row).sqrt().max(EPS);
                let nt = norm as f32;
                c.out.extend(row.iter().map(|&v| v / nt));
                c.norms.push(norm);
            }
        } else {
            c.out.extend_from_slice(z);
        }
        Ok(())
    }

    /// Gradients of the weights and of the input given `dy`, the
    /// gradient of the output rows of `tape`.
    pub fn backward(&self, tape: &mut Tape, dy: &[f32]) -> Result<Grads> {
        let mut grads = Grads::default();
        self.backward_into(tape, dy, &mut grads)?;
        Ok(grads)
    }

    /// [`DenseMlp::backward`] into `grads`, reusing its buffers and the
    /// tape's scratch.
    pub fn backward_into(&self, tape: &mut Tape, dy: &[f32], grads: &mut Grads) -> Result<()> {
        self.check()?;
        let d = self.d_out();
        if dy.len() != tape.rows * d {
            return Err(Error::Msg(format!(
                "dense mlp: {} output gradients for {} rows of {d}",
                dy.len(),
                tape.rows
            )));
        }
        let chunks = &mut tape.chunks[..tape.active];
        let sizes: Vec<usize> = chunks.iter().map(|c| c.rows * d).collect();
        let mut parts = Vec::with_capacity(sizes.len());
        let mut rest = dy;
        for s in sizes {
            let (head, tail) = rest.split_at(s);
            parts.push(head);
            rest = tail;
        }
        chunks
            .par_iter_mut()
            .zip(parts.into_par_iter())
            .try_for_each(|(c, dyc)| self.backward_chunk(c, dyc))?;
        grads
            .layers
            .resize_with(self.layers.len(), LayerGrad::default);
        for (acc, l) in grads.layers.iter_mut().zip(&self.layers) {
            zeroed(&mut acc.weight, l.weight.len());
            zeroed(&mut acc.bias, l.bias.len());
        }
        grads.input.clear();
        for c in chunks.iter() {
            for (acc, g) in grads.layers.iter_mut().zip(&c.grads) {
                acc.weight
                    .iter_mut()
                    .zip(&g.weight)
                    .for_each(|(a, b)| *a += b);
                acc.bias.iter_mut().zip(&g.bias).for_each(|(a, b)| *a += b);
            }
            grads.input.extend_from_slice(&c.g);
        }
        Ok(())
    }

    fn backward_chunk(&self, c: &mut ChunkTape, dy: &[f32]) -> Result<()> {
        let n = c.rows;
        let d = self.d_out();
        // The gradient of the last layer's output (before normalisation):
        // `(g - y (y . g)) / |z|`, or `g / EPS` below EPS.
        c.g.clear();
        if self.normalize {
            for ((yr, gr), &norm) in c.out.chunks(d).zip(dy.chunks(d)).zip(&c.norms) {
                let inv = (1.0 / norm) as f32;
                if norm <= EPS {
                    c.g.extend(gr.iter().map(|&v| v * inv));
                    continue;
                }
                let dot = dot(yr, gr);
                c.g.extend(yr.iter().zip(gr).map(|(&p, &q)| (q - p * dot) * inv));
            }
        } else {
            c.g.extend_from_slice(dy);
        }
        c.grads.resize_with(self.layers.len(), LayerGrad::default);
        for (k, l) in self.layers.iter().enumerate().rev() {
            let h = &c.acts[k];
            let lg = &mut c.grads[k];
            zeroed(&mut lg.weight, l.weight.len());
            gemm(
                h,
                true,
                &c.g,
                false,
                &mut lg.weight,
                (l.d_in, n, l.d_out),
                0.0,
            )?;
            zeroed(&mut lg.bias, l.d_out);
            for row in c.g.chunks(l.d_out) {
                lg.bias.iter_mut().zip(row).for_each(|(a, b)| *a += b);
            }
            zeroed(&mut c.dh, n * l.d_in);
            gemm(
                &c.g,
                false,
                &l.weight,
                true,
                &mut c.dh,
                (n, l.d_out, l.d_in),
                0.0,
            )?;
            if k > 0 {
                // Through the ReLU that made h.
                // Branch-free, so it vectorises.
                c.dh.iter_mut()
                    .zip(h)
                    .for_each(|(v, &x)| *v = if x > 0.0 { *v } else { 0.0 });
            }
            std::mem::swap(&mut c.g, &mut c.dh);
        }
        Ok(())
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::init::Rng;
    use crate::layers::Mlp;
    use crate::normalize::l2_normalize;
    use candle_core::{DType, Device, Tensor, Var};

    fn close(a: &[f32], b: &[f32], tol: f32) {
        assert_eq!(a.len(), b.len());
        for (k, (x, y)) in a.iter().zip(b).enumerate() {
            assert!(
                (x - y).abs() <= tol * (1.0 + y.abs()),
                "element {k}: {x} against {y}"
            );
        }
    }

    /// The forward and every gradient against candle's autograd through
    /// `Mlp` and `l2_normalize` (each gradient-checked on its own), over
    /// more rows than a chunk so the chunk sums are exercised.
    #[test]
    fn matches_candle_autograd_over_several_chunks() {
        let dev = Device::Cpu;
        let mut rng = Rng::new(3);
        let mlp = Mlp::new(&mut rng, &[5, 7, 6, 4], DType::F32, &dev).unwrap();
        let rows = CHUNK * 2 + 37;
        let x: Vec<f32> = rng.uniform_f32(rows * 5, 1.0);
        let dy: Vec<f32> = rng.uniform_f32(rows * 4, 1.0);
        for normalize in [true, false] {
            let dense = mlp.to_dense(normalize).unwrap();
            let mut tape = dense.forward(&x, rows).unwrap();
            let grads = dense.backward(&mut tape, &dy).unwrap();
            let xv =
                Var::from_tensor(&Tensor::from_vec(x.clone(), (rows, 5), &dev).unwrap()).unwrap();
            let mut y = mlp.forward(xv.as_tensor()).unwrap();
            if normalize {
                y = l2_normalize(&y).unwrap();
            }
            close(
                &tape.out,
                &y.flatten_all().unwrap().to_vec1().unwrap(),
                1e-5,
            );
            let g = Tensor::from_vec(dy.clone(), (rows, 4), &dev).unwrap();
            let store = (y * g).unwrap().sum_all().unwrap().backward().unwrap();
            let flat = |t: &Tensor| -> Vec<f32> {
                store
                    .get(t)
                    .unwrap()
                    .flatten_all()
                    .unwrap()
                    .to_vec1()
                    .unwrap()
            };
            close(&grads.input, &flat(xv.as_tensor()), 1e-4);
            for (l, lg) in mlp.layers.iter().zip(&grads.layers) {
                close(&lg.weight, &flat(l.weight.as_tensor()), 1e-4);
                close(&lg.bias, &flat(l.bias.as_tensor()), 1e-4);
            }
        }
    }

    /// Central finite differences of `sum(dy * y)` against the backward,
    /// in f32 with a loose tolerance (the tight check is the one above).
    #[test]
    fn gradient_check_by_finite_differences() {
        let mut rng = Rng::new(11);
        let mut dense = Mlp::new(&mut rng, &[3, 4, 2], DType::F32, &Device::Cpu)
            .unwrap()
            .to_dense(true)
            .unwrap();
        let rows = 5;
        let x: Vec<f32> = rng.uniform_f32(rows * 3, 1.0);
        let dy: Vec<f32> = rng.uniform_f32(rows * 2, 1.0);
        let f = |m: &DenseMlp, x: &[f32]| -> f64 {
            let t = m.forward(x, rows).unwrap();
            t.out.iter().zip(&dy).map(|(a, b)| (a * b) as f64).sum()
        };
        let grads = dense
            .backward(&mut dense.forward(&x, rows).unwrap(), &dy)
            .unwrap();
        let eps = 1e-3f32;
        let near =
            |num: f64, got: f32| (num - got as f64).abs() < 5e-3 * (got.abs() as f64).max(1.0);
        for k in 0..x.len() {
            let (mut hi, mut lo) = (x.clone(), x.clone());
            hi[k] += eps;
            lo[k] -= eps;
            let num = (f(&dense, &hi) - f(&dense, &lo)) / (2.0 * eps as f64);
            let got = grads.input[k];
            assert!(near(num, got), "input {k}: {num} against {got}");
        }
        for k in 0..dense.layers[0].weight.len() {
            let w = dense.layers[0].weight[k];
            dense.layers[0].weight[k] = w + eps;
            let hi = f(&dense, &x);
            dense.layers[0].weight[k] = w - eps;
            let lo = f(&dense, &x);
            dense.layers[0].weight[k] = w;
            let num = (hi - lo) / (2.0 * eps as f64);
            let got = grads.layers[0].weight[k];
            assert!(near(num, got), "weight {k}: {num} against {got}");
        }
    }

    /// A tape and gradients reused for batches of other sizes give what
    /// fresh ones give.
    #[test]
    fn reused_buffers_give_fresh_results() {
        let mut rng = Rng::new(4);
        let mlp = Mlp::new(&mut rng, &[3, 5, 2], DType::F32, &Device::Cpu)
            .unwrap()
            .to_dense(true)
            .unwrap();
        let (mut tape, mut grads) = (Tape::default(), Grads::default());
        for rows in [CHUNK + 9, 4, 2 * CHUNK + 1, 1] {
            let x: Vec<f32> = rng.uniform_f32(rows * 3, 1.0);
            let dy: Vec<f32> = rng.uniform_f32(rows * 2, 1.0);
            mlp.forward_into(&x, rows, &mut tape).unwrap();
            mlp.backward_into(&mut tape, &dy, &mut grads).unwrap();
            let mut fresh = mlp.forward(&x, rows).unwrap();
            assert_eq!(tape.out, fresh.out);
            assert_eq!(grads, mlp.backward(&mut fresh, &dy).unwrap());
        }
    }

    #[test]
    fn bad_shapes_are_errors() {
        let layer = DenseLayer {
            d_in: 2,
            d_out: 2,
            weight: vec![1.0; 3],
            bias: vec![0.0; 2],
        };
        let mlp = DenseMlp {
            layers: vec![layer],
            normalize: false,
        };
        assert!(mlp.forward(&[1.0, 2.0], 1).is_err());
        let ok = DenseMlp {
            layers: vec![DenseLayer {
                d_in: 2,
                d_out: 2,
                weight: vec![1.0; 4],
                bias: vec![0.0; 2],
            }],
            normalize: false,
        };
        assert!(ok.forward(&[1.0, 2.0, 3.0], 1).is_err());
        let mut tape = ok.forward(&[1.0, 2.0], 1).unwrap();
        assert!(ok.backward(&mut tape, &[1.0]).is_err());
        assert!(DenseMlp {
            layers: vec![],
            normalize: true
        }
        .forward(&[], 0)
        .is_err());
    }
}
