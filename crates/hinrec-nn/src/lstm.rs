//! A masked (bi)directional LSTM over fixed-width groups whose hidden
//! states are averaged (HHFAN eq. 3, GraphSAGE's LSTM aggregator): one
//! fused op over `[nodes x steps x d]` with its own backward, instead of
//! candle's per-step loop of small ops.
//!
//! Row `n` holds `lengths[n]` real steps first, padding after (the groups
//! of a random walk are filled from the first slot). Direction 0 reads
//! steps `0..len`, direction 1 reads them backwards; the output is the
//! mean over the real steps of each direction's hidden state,
//! `[nodes x dirs * h]`, zero for an empty row. Gates are `i, f, g, o`;
//! the weights of direction `r` are `w[r]`, `(d + h) x 4h` (input rows
//! then recurrent rows), and `b[r]`, `4h`.
//!
//! Nodes are cut into [`CHUNK`]-row chunks run in parallel; inside a chunk
//! the rows are ordered by length, so each step's live rows are a prefix
//! and one product serves them. Weight gradients are summed in chunk
//! order: any thread count gives the same bits.

use std::sync::Mutex;

use candle_core::{CpuStorage, CustomOp3, Layout, Result, Shape, Tensor, Var, WithDType};
use ndarray::LinalgScalar;
use num_traits::Float;
use rayon::prelude::*;

use crate::dense_mlp::gemm;
use crate::init::Rng;
use crate::slot_ops::{contiguous, flat};

/// Nodes per parallel chunk.
pub const CHUNK: usize = 256;

/// Sizes of one call.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
struct Dims {
    nodes: usize,
    steps: usize,
    d: usize,
    h: usize,
    dirs: usize,
}

/// What one chunk keeps for its backward.
#[derive(Debug, Clone)]
struct ChunkTape<T> {
    /// Chunk-local rows by length, longest first (ties by row).
    order: Vec<u32>,
    /// Live rows at each step (non-increasing).
    live: Vec<usize>,
    /// First tape row of each step.
    offs: Vec<usize>,
    /// Per direction: `[x_t, h_{t-1}]` rows, `(d + h)` wide.
    z: Vec<Vec<T>>,
    /// Per direction: activated gates, `4h` wide.
    gates: Vec<Vec<T>>,
    /// Per direction: cell states and their tanh, `h` wide.
    c: Vec<Vec<T>>,
    tc: Vec<Vec<T>>,
}

enum Tapes {
    None,
    F32(Vec<ChunkTape<f32>>),
    F64(Vec<ChunkTape<f64>>),
}

trait Element: WithDType + Float + LinalgScalar + Default + std::ops::AddAssign + Send + Sync {
    fn wrap(t: Vec<ChunkTape<Self>>) -> Tapes;
    fn unwrap(t: Tapes) -> Option<Vec<ChunkTape<Self>>>;
    /// `tanh` of every value.
    fn tanh_all(x: &mut [Self]) {
        x.iter_mut().for_each(|v| *v = v.tanh());
    }
    /// The logistic function of every value.
    fn sigmoid_all(x: &mut [Self]) {
        x.iter_mut().for_each(|v| *v = sigmoid(*v));
    }
}

/// `tanh` as a rational function (the odd degree-13 / even degree-6
/// minimax fit Eigen uses for floats), within 5e-7 of the exact value and,
/// unlike libm's scalar call, vectorised over a slice. The LSTM's f32 path
/// spent 45 % of a step in `expm1f` and `tanhf` before.
#[inline]
pub fn fast_tanh(x: f32) -> f32 {
    let x = x.clamp(-7.905_311, 7.905_311);
    let x2 = x * x;
    let p = -2.760_768_5e-16_f32;
    let p = p * x2 + 2.000_188e-13;
    let p = p * x2 - 8.604_672e-11;
    let p = p * x2 + 5.122_297e-8;
    let p = p * x2 + 1.485_722_4e-5;
    let p = p * x2 + 6.372_619e-4;
    let p = (p * x2 + 4.893_524_6e-3) * x;
    let q = 1.198_258_4e-6_f32;
    let q = q * x2 + 1.185_347e-4;
    let q = q * x2 + 2.268_434_7e-3;
    let q = q * x2 + 4.893_525e-3;
    p / q
}

impl Element for f32 {
    fn tanh_all(x: &mut [f32]) {
        x.iter_mut().for_each(|v| *v = fast_tanh(*v));
    }
    fn sigmoid_all(x: &mut [f32]) {
        // sigma(x) = (1 + tanh(x / 2)) / 2.
        x.iter_mut()
            .for_each(|v| *v = 0.5 + 0.5 * fast_tanh(0.5 * *v));
    }
    fn wrap(t: Vec<ChunkTape<f32>>) -> Tapes {
        Tapes::F32(t)
    }
    fn unwrap(t: Tapes) -> Option<Vec<ChunkTape<f32>>> {
        match t {
            Tapes::F32(v) => Some(v),
            _ => None,
        }
    }
}

impl Element for f64 {
    fn wrap(t: Vec<ChunkTape<f64>>) -> Tapes {
        Tapes::F64(t)
    }
    fn unwrap(t: Tapes) -> Option<Vec<ChunkTape<f64>>> {
        match t {
            Tapes::F64(v) => Some(v),
            _ => None,
        }
    }
}

fn sigmoid<T: Float>(x: T) -> T {
    T::one() / (T::one() + (-x).exp())
}

/// The op: lengths fixed at construction, the forward's tape kept for the
/// backward.
struct LstmMean {
    lengths: Vec<u32>,
    tapes: Mutex<Tapes>,
}

impl LstmMean {
    fn dims(&self, x: &Shape, w: &Shape, b: &Shape) -> Result<Dims> {
        let (nodes, steps, d) = x.dims3()?;
        let (dirs, dh, h4) = w.dims3()?;
        let h = h4 / 4;
        if h == 0 || h4 != 4 * h || dh != d + h || !(1..=2).contains(&dirs) {
            candle_core::bail!(
                "lstm: weights {w:?} do not fit inputs {x:?} (want [1 or 2, d + h, 4h])"
            );
        }
        if b.dims() != [dirs, h4] {
            candle_core::bail!("lstm: bias {b:?} is not [{dirs}, {h4}]");
        }
        if self.lengths.len() != nodes {
            candle_core::bail!("lstm: {} lengths for {nodes} rows", self.lengths.len());
        }
        if let Some(&l) = self.lengths.iter().find(|&&l| l as usize > steps) {
            candle_core::bail!("lstm: a length of {l} is over the {steps} steps");
        }
        Ok(Dims {
            nodes,
            steps,
            d,
            h,
            dirs,
        })
    }

    fn forward<T: Element>(
        &self,
        x: &[T],
        w: &[T],
        b: &[T],
        dm: Dims,
    ) -> (Vec<T>, Vec<ChunkTape<T>>) {
        let width = dm.dirs * dm.h;
        let mut out = vec![T::zero(); dm.nodes * width];
        let tapes: Vec<ChunkTape<T>> = out
            .par_chunks_mut((CHUNK * width).max(1))
            .enumerate()
            .map(|(c, o)| self.forward_chunk(x, w, b, dm, c * CHUNK, o))
            .collect();
        (out, tapes)
    }

    fn forward_chunk<T: Element>(
        &self,
        x: &[T],
        w: &[T],
        b: &[T],
        dm: Dims,
        n0: usize,
        out: &mut [T],
    ) -> ChunkTape<T> {
        let Dims {
            steps, d, h, dirs, ..
        } = dm;
        let (dh, h4, width) = (d + h, 4 * h, dirs * h);
        let rows = out.len() / width.max(1);
        let len = &self.lengths[n0..n0 + rows];
        let mut order: Vec<u32> = (0..rows as u32).collect();
        order.sort_by_key(|&j| std::cmp::Reverse(len[j as usize]));
        let max_len = order
            .first()
            .map_or(0, |&j| len[j as usize] as usize)
            .min(steps);
        let live: Vec<usize> = (0..max_len)
            .map(|s| order.partition_point(|&j| len[j as usize] as usize > s))
            .collect();
        let mut offs = Vec::with_capacity(max_len + 1);
        offs.push(0);
        for &a in &live {
            offs.push(offs.last().copied().unwrap_or(0) + a);
        }
        let total = offs[max_len];
        let mut tape = ChunkTape {
            order,
            live,
            offs,
            z: Vec::new(),
            gates: Vec::new(),
            c: Vec::new(),
            tc: Vec::new(),
        };
        let mut sum = vec![T::zero(); rows * h];
        for r in 0..dirs {
            let (wr, br) = (&w[r * dh * h4..(r + 1) * dh * h4], &b[r * h4..(r + 1) * h4]);
            let mut z = vec![T::zero(); total * dh];
            let mut gates = vec![T::zero(); total * h4];
            let mut c = vec![T::zero(); total * h];
            let mut tc = vec![T::zero(); total * h];
            sum.iter_mut().for_each(|v| *v = T::zero());
            for s in 0..max_len {
                let (a, r0) = (tape.live[s], tape.offs[s]);
                for (k, &j) in tape.order[..a].iter().enumerate() {
                    let n = n0 + j as usize;
                    let l = len[j as usize] as usize;
                    let t = if r == 0 { s } else { l - 1 - s };
                    let src = &x[(n * steps + t) * d..(n * steps + t + 1) * d];
                    z[(r0 + k) * dh..(r0 + k) * dh + d].copy_from_slice(src);
                }
                let g = &mut gates[r0 * h4..(r0 + a) * h4];
                for row in g.chunks_mut(h4) {
                    row.copy_from_slice(br);
                }
                // gemm cannot fail on these shapes; a failure leaves zeros.
                let _ = gemm(
                    &z[r0 * dh..(r0 + a) * dh],
                    false,
                    wr,
                    false,
                    g,
                    (a, dh, h4),
                    T::one(),
                );
                for k in 0..a {
                    let row = r0 + k;
                    let gr = &mut gates[row * h4..(row + 1) * h4];
                    T::sigmoid_all(&mut gr[..2 * h]);
                    T::tanh_all(&mut gr[2 * h..3 * h]);
                    T::sigmoid_all(&mut gr[3 * h..]);
                    let (cs, cp) = if s == 0 {
                        (&mut c[row * h..(row + 1) * h], None)
                    } else {
                        let prev = (tape.offs[s - 1] + k) * h;
                        let (lo, hi) = c.split_at_mut(row * h);
                        (&mut hi[..h], Some(&lo[prev..prev + h]))
                    };
                    for q in 0..h {
                        let carry = cp.map_or(T::zero(), |p| gr[h + q] * p[q]);
                        cs[q] = carry + gr[q] * gr[2 * h + q];
                    }
                    let tr = &mut tc[row * h..(row + 1) * h];
                    tr.copy_from_slice(cs);
                    T::tanh_all(tr);
                    let j = tape.order[k] as usize;
                    let next = (s + 1 < max_len && k < tape.live[s + 1])
                        .then(|| (tape.offs[s + 1] + k) * dh + d);
                    for q in 0..h {
                        let hv = gr[3 * h + q] * tr[q];
                        sum[j * h + q] += hv;
                        if let Some(at) = next {
                            z[at + q] = hv;
                        }
                    }
                }
            }
            for j in 0..rows {
                let l = len[j] as usize;
                if l > 0 {
                    let inv = T::one() / T::from(l).unwrap_or(T::one());
                    for q in 0..h {
                        out[j * width + r * h + q] = sum[j * h + q] * inv;
                    }
                }
            }
            tape.z.push(z);
            tape.gates.push(gates);
            tape.c.push(c);
            tape.tc.push(tc);
        }
        tape
    }

    /// `(dx, dw, db)` from the output's gradient.
    fn backward<T: Element>(
        &self,
        tapes: &[ChunkTape<T>],
        w: &[T],
        dout: &[T],
        dm: Dims,
    ) -> (Vec<T>, Vec<T>, Vec<T>) {
        let Dims {
            steps, d, h, dirs, ..
        } = dm;
        let (dh, h4, width) = (d + h, 4 * h, dirs * h);
        let mut dx = vec![T::zero(); dm.nodes * steps * d];
        let parts: Vec<(Vec<T>, Vec<T>)> = dx
            .par_chunks_mut((CHUNK * steps * d).max(1))
            .zip(tapes.par_iter())
            .enumerate()
            .map(|(c, (dxc, tape))| {
                let n0 = c * CHUNK;
                let rows = dxc.len() / (steps * d).max(1);
                let len = &self.lengths[n0..n0 + rows];
                let mut dw = vec![T::zero(); dirs * dh * h4];
                let mut db = vec![T::zero(); dirs * h4];
                let max_len = tape.live.len();
                let a0 = tape.live.first().copied().unwrap_or(0);
                let mut dh_rec = vec![T::zero(); a0 * h];
                let mut dc_rec = vec![T::zero(); a0 * h];
                let mut da = vec![T::zero(); a0 * h4];
                let mut dz = vec![T::zero(); a0 * dh];
                for r in 0..dirs {
                    let wr = &w[r * dh * h4..(r + 1) * dh * h4];
                    let (z, gates, cst, tc) = (&tape.z[r], &tape.gates[r], &tape.c[r], &tape.tc[r]);
                    dh_rec
                        .iter_mut()
                        .chain(dc_rec.iter_mut())
                        .for_each(|v| *v = T::zero());
                    for s in (0..max_len).rev() {
                        let (a, r0) = (tape.live[s], tape.offs[s]);
                        for k in 0..a {
                            let j = tape.order[k] as usize;
                            let n = n0 + j;
                            let inv = T::one() / T::from(len[j]).unwrap_or(T::one());
                            let row = r0 + k;
                            // Row slices, so the loop over q vectorises.
                            let gr = &gates[row * h4..(row + 1) * h4];
                            let (gi, gf) = (&gr[..h], &gr[h..2 * h]);
                            let (gg, go) = (&gr[2 * h..3 * h], &gr[3 * h..]);
                            let t = &tc[row * h..(row + 1) * h];
                            let cp: &[T] = if s == 0 {
                                &[]
                            } else {
                                let at = (tape.offs[s - 1] + k) * h;
                                &cst[at..at + h]
                            };
                            let dy = &dout[n * width + r * h..n * width + (r + 1) * h];
                            let dhr = &dh_rec[k * h..(k + 1) * h];
                            let dcr = &mut dc_rec[k * h..(k + 1) * h];
                            let (dai, rest) = da[k * h4..(k + 1) * h4].split_at_mut(h);
                            let (daf, rest) = rest.split_at_mut(h);
                            let (dag, dao) = rest.split_at_mut(h);
                            for q in 0..h {
                                let (i, f, g, o, tq) = (gi[q], gf[q], gg[q], go[q], t[q]);
                                let dhv = dy[q] * inv + dhr[q];
                                let dc = dhv * o * (T::one() - tq * tq) + dcr[q];
                                dai[q] = dc * g * i * (T::one() - i);
                                dag[q] = dc * i * (T::one() - g * g);
                                dao[q] = dhv * tq * o * (T::one() - o);
                                daf[q] = if cp.is_empty() {
                                    T::zero()
                                } else {
                                    dc * cp[q] * f * (T::one() - f)
                                };
                                dcr[q] = dc * f;
                            }
                        }
                        let das = &da[..a * h4];
                        let dwr = &mut dw[r * dh * h4..(r + 1) * dh * h4];
                        let _ = gemm(
                            &z[r0 * dh..(r0 + a) * dh],
                            true,
                            das,
                            false,
                            dwr,
                            (dh, a, h4),
                            T::one(),
                        );
                        let dbr = &mut db[r * h4..(r + 1) * h4];
                        for row in das.chunks(h4) {
                            for (s, &v) in dbr.iter_mut().zip(row) {
                                *s += v;
                            }
                        }
                        let dzs = &mut dz[..a * dh];
                        let _ = gemm(das, false, wr, true, dzs, (a, h4, dh), T::zero());
                        for k in 0..a {
                            let j = tape.order[k] as usize;
                            let l = len[j] as usize;
                            let t = if r == 0 { s } else { l - 1 - s };
                            let dst = &mut dxc[(j * steps + t) * d..(j * steps + t + 1) * d];
                            for (o, &v) in dst.iter_mut().zip(&dzs[k * dh..k * dh + d]) {
                                *o += v;
                            }
                            dh_rec[k * h..(k + 1) * h]
                                .copy_from_slice(&dzs[k * dh + d..(k + 1) * dh]);
                        }
                        // Rows live at step s but not at s - 1 cannot exist
                        // (live counts never grow), so nothing to clear.
                    }
                }
                (dw, db)
            })
            .collect();
        let mut dw = vec![T::zero(); dirs * dh * h4];
        let mut db = vec![T::zero(); dirs * h4];
        for (pw, pb) in parts {
            for (s, v) in dw.iter_mut().zip(pw) {
                *s += v;
            }
            for (s, v) in db.iter_mut().zip(pb) {
                *s += v;
            }
        }
        (dx, dw, db)
    }

    fn run<T: Element>(&self, x: &[T], w: &[T], b: &[T], dm: Dims) -> Result<Vec<T>> {
        let (out, tapes) = self.forward(x, w, b, dm);
        *self
            .tapes
            .lock()
            .map_err(|_| candle_core::Error::Msg("lstm tape lock poisoned".into()))? =
            T::wrap(tapes);
        Ok(out)
    }

    fn grads<T: Element>(
        &self,
        x: &Tensor,
        w: &Tensor,
        b: &Tensor,
        grad: &Tensor,
    ) -> Result<(Option<Tensor>, Option<Tensor>, Option<Tensor>)> {
        let dm = self.dims(x.shape(), w.shape(), b.shape())?;
        let wv: Vec<T> = flat(w)?;
        let saved = std::mem::replace(
            &mut *self
                .tapes
                .lock()
                .map_err(|_| candle_core::Error::Msg("lstm tape lock poisoned".into()))?,
            Tapes::None,
        );
        // A second backward over the same graph finds no tape: recompute.
        let tapes = match T::unwrap(saved) {
            Some(t) => t,
            None => self.forward(&flat::<T>(x)?, &wv, &flat::<T>(b)?, dm).1,
        };
        let (dx, dw, db) = self.backward(&tapes, &wv, &flat::<T>(grad)?, dm);
        let as_t = |v: Vec<T>, like: &Tensor| -> Result<Option<Tensor>> {
            Ok(Some(
                Tensor::from_vec(v, like.shape(), like.device())?.to_dtype(like.dtype())?,
            ))
        };
        Ok((as_t(dx, x)?, as_t(dw, w)?, as_t(db, b)?))
    }
}

impl CustomOp3 for LstmMean {
    fn name(&self) -> &'static str {
        "lstm-mean"
    }

    fn cpu_fwd(
        &self,
        s1: &CpuStorage,
        l1: &Layout,
        s2: &CpuStorage,
        l2: &Layout,
        s3: &CpuStorage,
        l3: &Layout,
    ) -> Result<(CpuStorage, Shape)> {
        let dm = self.dims(l1.shape(), l2.shape(), l3.shape())?;
        let storage = match (s1, s2, s3) {
            (CpuStorage::F32(_), CpuStorage::F32(_), CpuStorage::F32(_)) => {
                CpuStorage::F32(self.run(
                    contiguous::<f32>(s1, l1)?,
                    contiguous::<f32>(s2, l2)?,
                    contiguous::<f32>(s3, l3)?,
                    dm,
                )?)
            }
            (CpuStorage::F64(_), CpuStorage::F64(_), CpuStorage::F64(_)) => {
                CpuStorage::F64(self.run(
                    contiguous::<f64>(s1, l1)?,
                    contiguous::<f64>(s2, l2)?,
                    contiguous::<f64>(s3, l3)?,
                    dm,
                )?)
            }
            _ => candle_core::bail!("lstm supports f32 and f64 of one type"),
        };
        Ok((storage, Shape::from((dm.nodes, dm.dirs * dm.h))))
    }

    fn bwd(
        &self,
        x: &Tensor,
        w: &Tensor,
        b: &Tensor,
        _res: &Tensor,
        grad: &Tensor,
    ) -> Result<(Option<Tensor>, Option<Tensor>, Option<Tensor>)> {
        if x.dtype() == candle_core::DType::F64 {
            self.grads::<f64>(x, w, b, grad)
        } else {
            self.grads::<f32>(x, w, b, grad)
        }
    }
}

/// The mean hidden state of an LSTM (two directions when `w` is
/// `[2, d + h, 4h]`) over each row's first `lengths[n]` steps of
/// `x` `[nodes, steps, d]`: `[nodes, dirs * h]`.
pub fn lstm_mean(x: &Tensor, w: &Tensor, b: &Tensor, lengths: Vec<u32>) -> Result<Tensor> {
    let op = LstmMean {
        lengths,
        tapes: Mutex::new(Tapes::None),
    };
    op.dims(x.shape(), w.shape(), b.shape())?;
    x.contiguous()?.apply_op3_arc(
        &w.contiguous()?,
        &b.contiguous()?,
        std::sync::Arc::new(Box::new(op)),
    )
}

/// A bidirectional LSTM aggregator's weights: `d` in, `d / 2` hidden per
/// direction, so the mean of the concatenated states is `d` wide
/// (HetGNN's Bi-LSTM).
#[derive(Debug, Clone)]
pub struct BiLstm {
    /// `[2, d + d/2, 2d]`.
    pub w: Var,
    /// `[2, 2d]`.
    pub b: Var,
}

impl BiLstm {
    /// Weights drawn from N(0, `std`); `d` must be even.
    pub fn new(rng: &mut Rng, d: usize, std: f64) -> Result<Self> {
        if d == 0 || !d.is_multiple_of(2) {
            candle_core::bail!("a bidirectional LSTM needs an even, positive width (got {d})");
        }
        let h = d / 2;
        let dev = candle_core::Device::Cpu;
        let w: Vec<f32> = rng
            .normal(2 * (d + h) * 4 * h, std)
            .into_iter()
            .map(|v| v as f32)
            .collect();
        let b: Vec<f32> = rng
            .normal(2 * 4 * h, std)
            .into_iter()
            .map(|v| v as f32)
            .collect();
        Ok(BiLstm {
            w: Var::from_tensor(&Tensor::from_vec(w, (2, d + h, 4 * h), &dev)?)?,
            b: Var::from_tensor(&Tensor::from_vec(b, (2, 4 * h), &dev)?)?,
        })
    }

    /// The mean hidden state of each row, `[nodes, d]`.
    pub fn forward(&self, x: &Tensor, lengths: Vec<u32>) -> Result<Tensor> {
        lstm_mean(x, self.w.as_tensor(), self.b.as_tensor(), lengths)
    }

    /// `{prefix}.w`, `{prefix}.b`.
    pub fn named_vars(&self, prefix: &str) -> Vec<(String, Var)> {
        vec![
            (format!("{prefix}.w"), self.w.clone()),
            (format!("{prefix}.b"), self.b.clone()),
        ]
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::gradcheck::max_gradient_error;
    use candle_core::{DType, Device, D};

    fn t(v: &[f64], shape: &[usize]) -> Tensor {
        Tensor::from_vec(v.to_vec(), shape, &Device::Cpu).unwrap()
    }

    fn values(n: usize, seed: u64) -> Vec<f64> {
        Rng::new(seed).normal(n, 0.5)
    }

    /// The same LSTM as a candle composition, one row at a time.
    fn reference(x: &Tensor, w: &Tensor, b: &Tensor, lengths: &[u32]) -> Result<Tensor> {
        let (n, _, _) = x.dims3()?;
        let (dirs, _, h4) = w.dims3()?;
        let h = h4 / 4;
        let mut rows = Vec::new();
        for (r, &l) in lengths.iter().enumerate().take(n) {
            let l = l as usize;
            let mut parts = Vec::new();
            for dir in 0..dirs {
                let (wd, bd) = (w.get(dir)?, b.get(dir)?.unsqueeze(0)?);
                let mut hs = Tensor::zeros((1, h), x.dtype(), x.device())?;
                let mut cs = hs.clone();
                let mut acc = hs.clone();
                for s in 0..l {
                    let t = if dir == 0 { s } else { l - 1 - s };
                    let xt = x.get(r)?.get(t)?.unsqueeze(0)?;
                    let z = Tensor::cat(&[&xt, &hs], 1)?;
                    let g = (z.matmul(&wd)? + &bd)?;
                    let i = candle_nn::ops::sigmoid(&g.narrow(1, 0, h)?)?;
                    let f = candle_nn::ops::sigmoid(&g.narrow(1, h, h)?)?;
                    let gg = g.narrow(1, 2 * h, h)?.tanh()?;
                    let o = candle_nn::ops::sigmoid(&g.narrow(1, 3 * h, h)?)?;
                    cs = ((f * &cs)? + (i * gg)?)?;
                    hs = (o * cs.tanh()?)?;
                    acc = (acc + &hs)?;
                }
                parts.push((acc / l.max(1) as f64)?);
            }
            rows.push(Tensor::cat(&parts, D::Minus1)?);
        }
        Tensor::cat(&rows, 0)
    }

    #[test]
    fn one_step_by_hand() {
        // d = h = 1, one direction, one step: the gates' inputs are x times
        // the input row (1, 0, -2, 0), so c = s(1) tanh(-2), h = s(0) tanh(c).
        let x = t(&[2.0], &[1, 1, 1]);
        let w = t(&[0.5, 0.0, -1.0, 0.0, 1.0, 0.0, 0.25, 0.0], &[1, 2, 4]);
        let b = t(&[0.0; 4], &[1, 4]);
        let y = lstm_mean(&x, &w, &b, vec![1])
            .unwrap()
            .to_vec2::<f64>()
            .unwrap();
        let s = |v: f64| 1.0 / (1.0 + (-v).exp());
        let c = s(1.0) * (-2f64).tanh();
        assert!((y[0][0] - s(0.0) * c.tanh()).abs() < 1e-12);
    }

    #[test]
    fn matches_the_composition_on_ragged_rows() {
        let (n, steps, d, h) = (5, 4, 3, 2);
        let x = t(&values(n * steps * d, 1), &[n, steps, d]);
        let w = t(&values(2 * (d + h) * 4 * h, 2), &[2, d + h, 4 * h]);
        let b = t(&values(2 * 4 * h, 3), &[2, 4 * h]);
        let lengths = vec![4, 0, 2, 1, 3];
        let ours = lstm_mean(&x, &w, &b, lengths.clone()).unwrap();
        let want = reference(&x, &w, &b, &lengths).unwrap();
        let diff = (ours - want).unwrap().abs().unwrap().max_all().unwrap();
        assert!(diff.to_scalar::<f64>().unwrap() < 1e-12);
    }

    #[test]
    fn gradient_check_of_inputs_weights_and_bias() {
        let (n, steps, d, h) = (4, 3, 2, 2);
        let xs = values(n * steps * d, 4);
        let ws = values(2 * (d + h) * 4 * h, 5);
        let bs = values(2 * 4 * h, 6);
        let lengths = vec![3, 1, 0, 2];
        let proj = t(&values(n * 2 * h, 7), &[n, 2 * h]);
        let loss = |y: Tensor| (y * &proj)?.sum_all();
        let (wt, bt, xt) = (
            t(&ws, &[2, d + h, 4 * h]),
            t(&bs, &[2, 4 * h]),
            t(&xs, &[n, steps, d]),
        );
        let ex = max_gradient_error(&xs, &[n, steps, d], |x| {
            loss(lstm_mean(x, &wt, &bt, lengths.clone())?)
        })
        .unwrap();
        let ew = max_gradient_error(&ws, &[2, d + h, 4 * h], |w| {
            loss(lstm_mean(&xt, w, &bt, lengths.clone())?)
        })
        .unwrap();
        let eb = max_gradient_error(&bs, &[2, 4 * h], |b| {
            loss(lstm_mean(&xt, &wt, b, lengths.clone())?)
        })
        .unwrap();
        assert!(ex < 1e-7 && ew < 1e-7 && eb < 1e-7, "{ex} {ew} {eb}");
    }

    #[test]
    fn several_chunks_and_thread_counts_give_the_same_bits() {
        let (n, steps, d) = (2 * CHUNK + 37, 5, 4);
        let mut rng = Rng::new(9);
        let lengths: Vec<u32> = (0..n).map(|k| (k * 7 % (steps + 1)) as u32).collect();
        let x = Tensor::from_vec(
            rng.uniform_f32(n * steps * d, 1.0),
            (n, steps, d),
            &Device::Cpu,
        )
        .unwrap();
        let lstm = BiLstm::new(&mut rng, d, 0.3).unwrap();
        let run = |threads: usize| {
            rayon::ThreadPoolBuilder::new()
                .num_threads(threads)
                .build()
                .unwrap()
                .install(|| {
                    let xv = Var::from_tensor(&x).unwrap();
                    let y = lstm.forward(xv.as_tensor(), lengths.clone()).unwrap();
                    let g = y.sqr().unwrap().sum_all().unwrap().backward().unwrap();
                    let flat = |t: &Tensor| t.flatten_all().unwrap().to_vec1::<f32>().unwrap();
                    (
                        flat(&y),
                        flat(g.get(xv.as_tensor()).unwrap()),
                        flat(g.get(lstm.w.as_tensor()).unwrap()),
                    )
                })
        };
        assert_eq!(run(1), run(3));
        // An empty row has a zero output and no input gradient.
        let (y, dx, _) = run(2);
        let empty = lengths.iter().position(|&l| l == 0).unwrap();
        assert!(y[empty * d..(empty + 1) * d].iter().all(|&v| v == 0.0));
        assert!(dx[empty * steps * d..(empty + 1) * steps * d]
            .iter()
            .all(|&v| v == 0.0));
        // f32 agrees with the f64 op.
        let y64 = lstm_mean(
            &x.to_dtype(DType::F64).unwrap(),
            &lstm.w.as_tensor().to_dtype(DType::F64).unwrap(),
            &lstm.b.as_tensor().to_dtype(DType::F64).unwrap(),
            lengths.clone(),
        )
        .unwrap()
        .flatten_all()
        .unwrap()
        .to_vec1::<f64>()
        .unwrap();
        let worst = y
            .iter()
            .zip(&y64)
            .map(|(&a, &b)| (a as f64 - b).abs())
            .fold(0.0, f64::max);
        assert!(worst < 1e-5, "{worst}");
    }

    #[test]
    fn fast_tanh_is_within_5e7_of_tanh() {
        let worst = (-2000..=2000)
            .map(|k| k as f32 / 100.0)
            .map(|x| (fast_tanh(x) as f64 - (x as f64).tanh()).abs())
            .fold(0.0, f64::max);
        assert!(worst < 5e-7, "{worst}");
        assert_eq!(fast_tanh(0.0), 0.0);
        assert!(fast_tanh(f32::INFINITY) <= 1.0 && fast_tanh(-1e9) >= -1.0);
    }

    #[test]
    fn bad_shapes_are_errors() {
        let x = t(&[0.0; 6], &[1, 3, 2]);
        let w = t(&[0.0; 2 * 3 * 4], &[2, 3, 4]);
        let b = t(&[0.0; 8], &[2, 4]);
        assert!(lstm_mean(&x, &w, &b, vec![4]).is_err());
        assert!(lstm_mean(&x, &w, &b, vec![1, 1]).is_err());
        assert!(lstm_mean(&x, &w, &t(&[0.0; 4], &[1, 4]), vec![1]).is_err());
        assert!(lstm_mean(&x, &w, &b, vec![3]).is_ok());
        assert!(BiLstm::new(&mut Rng::new(1), 3, 0.1).is_err());
    }
}
