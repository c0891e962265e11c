//! A masked (bi)directional LSTM over fixed-width groups whose hidden
//! states are averaged (HHFAN eq. 3, GraphSAGE's LSTM aggregator): one
//! fused op with its own backward, instead of candle's per-step loop of
//! small ops.
//!
//! Row `n` holds `lengths[n]` real steps first, padding after (the groups
//! of a random walk are filled from the first slot). Direction 0 reads
//! steps `0..len`, direction 1 reads them backwards; the output is the
//! mean over the real steps of each direction's hidden state,
//! `[nodes x dirs * h]`, zero for an empty row. Gates are `i, f, g, o`;
//! the weights of direction `r` are `w[r]`, `(d + h) x 4h` (input rows
//! then recurrent rows), and `b[r]`, `4h`.
//!
//! A step's input is a row of a table (a group holds node ids), so the
//! input half of the gates, `x W_in + b`, is one product over the table's
//! rows ([`lstm_mean_rows`]); the fused op gathers those rows per step and
//! adds `h_{t-1} W_hh`, and its backward scatters the gates' gradient back
//! onto the rows. With many groups over few nodes (HHFAN's attribute
//! types) that removes two thirds of the products.
//!
//! Nodes are cut into [`CHUNK`]-row chunks run in parallel; inside a chunk
//! the rows are ordered by length, so each step's live rows are a prefix
//! and one product serves them. Gradients are summed in a fixed order: any
//! thread count gives the same bits.

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
    /// Rows of the table.
    rows: usize,
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
    /// Per direction: activated gates, `4h` wide; the backward overwrites
    /// them with their pre-activation gradient.
    gates: Vec<Vec<T>>,
    /// Per direction: cell states, their tanh and the hidden states, `h`
    /// wide.
    c: Vec<Vec<T>>,
    tc: Vec<Vec<T>>,
    hs: Vec<Vec<T>>,
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
    #[inline(always)]
    fn tanh_all(x: &mut [Self]) {
        x.iter_mut().for_each(|v| *v = v.tanh());
    }
    /// The logistic function of every value.
    #[inline(always)]
    fn sigmoid_all(x: &mut [Self]) {
        x.iter_mut().for_each(|v| *v = sigmoid(*v));
    }
}

/// `tanh` as a rational function (the odd degree-13 / even degree-6
/// minimax fit Eigen uses for floats), within 5e-7 of the exact value and,
/// unlike libm's scalar call, vectorised over a slice. The LSTM's f32 path
/// spent 45 % of a step in `expm1f` and `tanhf` before.
#[inline(always)]
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
    #[inline(always)]
    fn tanh_all(x: &mut [f32]) {
        x.iter_mut().for_each(|v| *v = fast_tanh(*v));
    }
    #[inline(always)]
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

/// The op over a table `[rows, d]`, the weights `[dirs, d + h, 4h]` and the
/// bias `[dirs, 4h]`: the rows each step reads and the lengths fixed at
/// construction, the forward's tape kept for the backward.
struct LstmMean {
    /// Row of `p` read by node `n` at step `t`: `idx[n * steps + t]`.
    idx: Vec<u32>,
    steps: usize,
    lengths: Vec<u32>,
    tapes: Mutex<Tapes>,
}

impl LstmMean {
    fn dims(&self, table: &Shape, w: &Shape, b: &Shape) -> Result<Dims> {
        let (rows, d) = table.dims2()?;
        let (dirs, dh, h4) = w.dims3()?;
        let h = h4 / 4;
        if h == 0 || h4 != 4 * h || dh != d + h || !(1..=2).contains(&dirs) {
            candle_core::bail!(
                "lstm: weights {w:?} do not fit inputs of width {d} (want [1 or 2, d + h, 4h])"
            );
        }
        if b.dims() != [dirs, h4] {
            candle_core::bail!("lstm: bias {b:?} is not [{dirs}, {h4}]");
        }
        let (nodes, steps) = (self.lengths.len(), self.steps);
        if self.idx.len() != nodes * steps {
            candle_core::bail!(
                "lstm: {} row indices for {nodes} nodes x {steps} steps",
                self.idx.len()
            );
        }
        Ok(Dims {
            nodes,
            steps,
            rows,
            d,
            h,
            dirs,
        })
    }

    /// Every length within the steps and every real step's row within the
    /// table: checked once, in [`lstm_mean_rows`], before the op runs.
    fn check_rows(&self, dm: Dims) -> Result<()> {
        let (steps, rows) = (dm.steps, dm.rows);
        for (n, &l) in self.lengths.iter().enumerate() {
            if l as usize > steps {
                candle_core::bail!("lstm: a length of {l} is over the {steps} steps");
            }
            let real = &self.idx[n * steps..n * steps + l as usize];
            if let Some(&i) = real.iter().find(|&&i| i as usize >= rows) {
                candle_core::bail!("lstm: row {i} of a table of {rows}");
            }
        }
        Ok(())
    }

    /// `w` split into its input rows `[dirs, d, 4h]` and its recurrent
    /// rows `[dirs, h, 4h]`.
    fn split_weights<T: Element>(w: &[T], dm: Dims) -> (Vec<T>, Vec<T>) {
        let (d, h4) = (dm.d, 4 * dm.h);
        let per_dir = (d + dm.h) * h4;
        let mut w_in = Vec::with_capacity(dm.dirs * d * h4);
        let mut w_hh = Vec::with_capacity(dm.dirs * dm.h * h4);
        for wr in w.chunks(per_dir.max(1)).take(dm.dirs) {
            w_in.extend_from_slice(&wr[..d * h4]);
            w_hh.extend_from_slice(&wr[d * h4..]);
        }
        (w_in, w_hh)
    }

    /// The input half of the gates for every table row, `[dirs, rows, 4h]`
    /// (`table W_in`), in parallel over row chunks.
    fn project<T: Element>(table: &[T], w_in: &[T], dm: Dims) -> Vec<T> {
        let (d, h4) = (dm.d, 4 * dm.h);
        let mut p = vec![T::zero(); dm.dirs * dm.rows * h4];
        for (r, pr) in p.chunks_mut((dm.rows * h4).max(1)).enumerate() {
            let wr = &w_in[r * d * h4..(r + 1) * d * h4];
            pr.par_chunks_mut(CHUNK * h4)
                .zip(table.par_chunks(CHUNK * d.max(1)))
                .for_each(|(pc, tc)| {
                    // gemm cannot fail on these shapes.
                    let _ = gemm(tc, false, wr, false, pc, (pc.len() / h4, d, h4), T::zero());
                });
        }
        p
    }

    /// The table's and the input weights' gradients from the rows' `dp`:
    /// `dp W_in^T` and `table^T dp` (the latter summed over row chunks in
    /// chunk order).
    fn project_back<T: Element>(table: &[T], w_in: &[T], dp: &[T], dm: Dims) -> (Vec<T>, Vec<T>) {
        let (d, h4, rows) = (dm.d, 4 * dm.h, dm.rows);
        let mut dtable = vec![T::zero(); rows * d];
        let parts: Vec<Vec<T>> = dtable
            .par_chunks_mut((CHUNK * d).max(1))
            .enumerate()
            .map(|(c, dt)| {
                let (r0, m) = (c * CHUNK, dt.len() / d.max(1));
                let tc = &table[r0 * d..(r0 + m) * d];
                let mut dw = vec![T::zero(); dm.dirs * d * h4];
                for r in 0..dm.dirs {
                    let dpc = &dp[(r * rows + r0) * h4..(r * rows + r0 + m) * h4];
                    let wr = &w_in[r * d * h4..(r + 1) * d * h4];
                    let _ = gemm(dpc, false, wr, true, dt, (m, h4, d), T::one());
                    let dwr = &mut dw[r * d * h4..(r + 1) * d * h4];
                    let _ = gemm(tc, true, dpc, false, dwr, (d, m, h4), T::zero());
                }
                dw
            })
            .collect();
        let mut dw_in = vec![T::zero(); dm.dirs * d * h4];
        for part in parts {
            for (s, v) in dw_in.iter_mut().zip(part) {
                *s += v;
            }
        }
        (dtable, dw_in)
    }

    fn forward<T: Element>(
        &self,
        p: &[T],
        w: &[T],
        b: &[T],
        dm: Dims,
    ) -> (Vec<T>, Vec<ChunkTape<T>>) {
        let width = dm.dirs * dm.h;
        let mut out = vec![T::zero(); dm.nodes * width];
        let tapes: Vec<ChunkTape<T>> = out
            .par_chunks_mut((CHUNK * width).max(1))
            .enumerate()
            .map(|(c, out)| {
                pulp::Arch::new().dispatch(ForwardJob {
                    op: self,
                    p,
                    w,
                    b,
                    dm,
                    n0: c * CHUNK,
                    out,
                })
            })
            .collect();
        (out, tapes)
    }

    /// Step `s` of direction `r` reads this step of a row of length `l`.
    fn step_of(r: usize, s: usize, l: usize) -> usize {
        if r == 0 {
            s
        } else {
            l - 1 - s
        }
    }

    #[inline(always)]
    fn forward_chunk<T: Element>(
        &self,
        p: &[T],
        w: &[T],
        b: &[T],
        dm: Dims,
        n0: usize,
        out: &mut [T],
    ) -> ChunkTape<T> {
        let Dims {
            steps,
            rows: n_rows,
            h,
            dirs,
            ..
        } = dm;
        let (h4, width) = (4 * h, dirs * h);
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
            gates: Vec::new(),
            c: Vec::new(),
            tc: Vec::new(),
            hs: Vec::new(),
        };
        let mut sum = vec![T::zero(); rows * h];
        for r in 0..dirs {
            let whh = &w[r * h * h4..(r + 1) * h * h4];
            let pr = &p[r * n_rows * h4..(r + 1) * n_rows * h4];
            let br = &b[r * h4..(r + 1) * h4];
            // Filled row by row in step order (no zeroing first: it took 4 %
            // of an HHFAN step).
            let mut gates = Vec::with_capacity(total * h4);
            let mut c = Vec::with_capacity(total * h);
            let mut tc = Vec::with_capacity(total * h);
            let mut hs = Vec::with_capacity(total * h);
            let mut cell = vec![T::zero(); h];
            sum.iter_mut().for_each(|v| *v = T::zero());
            for s in 0..max_len {
                let (a, r0) = (tape.live[s], tape.offs[s]);
                for &j in &tape.order[..a] {
                    let n = n0 + j as usize;
                    let t = Self::step_of(r, s, len[j as usize] as usize);
                    let at = self.idx[n * steps + t] as usize * h4;
                    gates.extend(pr[at..at + h4].iter().zip(br).map(|(&x, &bv)| x + bv));
                }
                if s > 0 {
                    let prev = tape.offs[s - 1];
                    // gemm cannot fail on these shapes; a failure leaves
                    // the input half alone.
                    let _ = gemm(
                        &hs[prev * h..(prev + a) * h],
                        false,
                        whh,
                        false,
                        &mut gates[r0 * h4..(r0 + a) * h4],
                        (a, h, h4),
                        T::one(),
                    );
                }
                for k in 0..a {
                    let row = r0 + k;
                    let gr = &mut gates[row * h4..(row + 1) * h4];
                    T::sigmoid_all(&mut gr[..2 * h]);
                    T::tanh_all(&mut gr[2 * h..3 * h]);
                    T::sigmoid_all(&mut gr[3 * h..]);
                    if s == 0 {
                        for q in 0..h {
                            cell[q] = gr[q] * gr[2 * h + q];
                        }
                    } else {
                        let prev = (tape.offs[s - 1] + k) * h;
                        let cp = &c[prev..prev + h];
                        for q in 0..h {
                            cell[q] = gr[h + q] * cp[q] + gr[q] * gr[2 * h + q];
                        }
                    }
                    c.extend_from_slice(&cell);
                    T::tanh_all(&mut cell);
                    tc.extend_from_slice(&cell);
                    let j = tape.order[k] as usize;
                    for q in 0..h {
                        cell[q] = gr[3 * h + q] * cell[q];
                        sum[j * h + q] += cell[q];
                    }
                    hs.extend_from_slice(&cell);
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
            tape.gates.push(gates);
            tape.c.push(c);
            tape.tc.push(tc);
            tape.hs.push(hs);
        }
        tape
    }

    /// `(dp, dw)` from the output's gradient.
    fn backward<T: Element>(
        &self,
        tapes: &mut [ChunkTape<T>],
        w: &[T],
        dout: &[T],
        dm: Dims,
    ) -> (Vec<T>, Vec<T>, Vec<T>) {
        let Dims {
            steps,
            rows: n_rows,
            h,
            dirs,
            ..
        } = dm;
        let h4 = 4 * h;
        let parts: Vec<Vec<T>> = tapes
            .par_iter_mut()
            .enumerate()
            .map(|(c, tape)| {
                pulp::Arch::new().dispatch(BackwardJob {
                    op: self,
                    n0: c * CHUNK,
                    tape,
                    w,
                    dout,
                    dm,
                })
            })
            .collect();
        let mut dw = vec![T::zero(); dirs * h * h4];
        for pw in parts {
            for (s, v) in dw.iter_mut().zip(pw) {
                *s += v;
            }
        }
        // The gates' gradients onto the rows they read, one direction per
        // task, in chunk, step and row order.
        let mut dp = vec![T::zero(); dirs * n_rows * h4];
        let db: Vec<Vec<T>> = dp
            .par_chunks_mut((n_rows * h4).max(1))
            .enumerate()
            .map(|(r, dpr)| {
                for (c, tape) in tapes.iter().enumerate() {
                    let n0 = c * CHUNK;
                    let da = &tape.gates[r];
                    for s in 0..tape.live.len() {
                        let (a, r0) = (tape.live[s], tape.offs[s]);
                        for (k, &j) in tape.order[..a].iter().enumerate() {
                            let n = n0 + j as usize;
                            let t = Self::step_of(r, s, self.lengths[n] as usize);
                            let at = self.idx[n * steps + t] as usize * h4;
                            let src = &da[(r0 + k) * h4..(r0 + k + 1) * h4];
                            for (o, &v) in dpr[at..at + h4].iter_mut().zip(src) {
                                *o += v;
                            }
                        }
                    }
                }
                // The bias takes every row's gradient, in row order.
                let mut dbr = vec![T::zero(); h4];
                for row in dpr.chunks(h4) {
                    for (o, &v) in dbr.iter_mut().zip(row) {
                        *o += v;
                    }
                }
                dbr
            })
            .collect();
        let mut db: Vec<T> = db.into_iter().flatten().collect();
        db.resize(dirs * h4, T::zero());
        (dp, dw, db)
    }

    /// One chunk's backward: the gates' gradients in place of the gates,
    /// and the chunk's part of dW_hh.
    #[inline(always)]
    fn backward_chunk<T: Element>(
        &self,
        n0: usize,
        tape: &mut ChunkTape<T>,
        w: &[T],
        dout: &[T],
        dm: Dims,
    ) -> Vec<T> {
        let Dims { h, dirs, .. } = dm;
        let (h4, width) = (4 * h, dirs * h);
        let mut dw = vec![T::zero(); dirs * h * h4];
        let max_len = tape.live.len();
        let a0 = tape.live.first().copied().unwrap_or(0);
        let mut dh_rec = vec![T::zero(); a0 * h];
        let mut dc_rec = vec![T::zero(); a0 * h];
        for r in 0..dirs {
            let whh = &w[r * h * h4..(r + 1) * h * h4];
            let (cst, tc, hs) = (&tape.c[r], &tape.tc[r], &tape.hs[r]);
            let gates = &mut tape.gates[r];
            dh_rec
                .iter_mut()
                .chain(dc_rec.iter_mut())
                .for_each(|v| *v = T::zero());
            for s in (0..max_len).rev() {
                let (a, r0) = (tape.live[s], tape.offs[s]);
                for k in 0..a {
                    let j = tape.order[k] as usize;
                    let n = n0 + j;
                    let inv = T::one() / T::from(self.lengths[n]).unwrap_or(T::one());
                    let row = r0 + k;
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
                    // Row slices, so the loop over q vectorises.
                    let (gi, rest) = gates[row * h4..(row + 1) * h4].split_at_mut(h);
                    let (gf, rest) = rest.split_at_mut(h);
                    let (gg, go) = rest.split_at_mut(h);
                    for q in 0..h {
                        let (i, f, g, o, tq) = (gi[q], gf[q], gg[q], go[q], t[q]);
                        let dhv = dy[q] * inv + dhr[q];
                        let dc = dhv * o * (T::one() - tq * tq) + dcr[q];
                        gi[q] = dc * g * i * (T::one() - i);
                        gg[q] = dc * i * (T::one() - g * g);
                        go[q] = dhv * tq * o * (T::one() - o);
                        gf[q] = if cp.is_empty() {
                            T::zero()
                        } else {
                            dc * cp[q] * f * (T::one() - f)
                        };
                        dcr[q] = dc * f;
                    }
                }
                if s > 0 {
                    let prev = tape.offs[s - 1];
                    let das = &gates[r0 * h4..(r0 + a) * h4];
                    let _ = gemm(
                        &hs[prev * h..(prev + a) * h],
                        true,
                        das,
                        false,
                        &mut dw[r * h * h4..(r + 1) * h * h4],
                        (h, a, h4),
                        T::one(),
                    );
                    let _ = gemm(
                        das,
                        false,
                        whh,
                        true,
                        &mut dh_rec[..a * h],
                        (a, h4, h),
                        T::zero(),
                    );
                }
                // Rows live at step s - 1 but not at s keep the
                // zeros they started with (live counts never grow).
            }
        }
        dw
    }

    fn run<T: Element>(&self, table: &[T], w: &[T], b: &[T], dm: Dims) -> Result<Vec<T>> {
        let (w_in, w_hh) = Self::split_weights(w, dm);
        let p = Self::project(table, &w_in, dm);
        let (out, tapes) = self.forward(&p, &w_hh, b, dm);
        *self
            .tapes
            .lock()
            .map_err(|_| candle_core::Error::Msg("lstm tape lock poisoned".into()))? =
            T::wrap(tapes);
        Ok(out)
    }

    /// The table's, the weights' (`[dirs, d + h, 4h]`) and the bias's
    /// gradients from the output's gradient `dout` and the forward's tapes.
    fn backward_values<T: Element>(
        &self,
        tapes: &mut [ChunkTape<T>],
        table: &[T],
        w_in: &[T],
        w_hh: &[T],
        dout: &[T],
        dm: Dims,
    ) -> (Vec<T>, Vec<T>, Vec<T>) {
        let (dp, dw_hh, db) = self.backward(tapes, w_hh, dout, dm);
        let (dtable, dw_in) = Self::project_back(table, w_in, &dp, dm);
        let (d, h4) = (dm.d, 4 * dm.h);
        let mut dw = Vec::with_capacity(dm.dirs * (d + dm.h) * h4);
        for r in 0..dm.dirs {
            dw.extend_from_slice(&dw_in[r * d * h4..(r + 1) * d * h4]);
            dw.extend_from_slice(&dw_hh[r * dm.h * h4..(r + 1) * dm.h * h4]);
        }
        (dtable, dw, db)
    }

    fn grads<T: Element>(
        &self,
        table: &Tensor,
        w: &Tensor,
        b: &Tensor,
        grad: &Tensor,
    ) -> Result<(Option<Tensor>, Option<Tensor>, Option<Tensor>)> {
        let dm = self.dims(table.shape(), w.shape(), b.shape())?;
        let tv: Vec<T> = flat(table)?;
        let (w_in, w_hh) = Self::split_weights(&flat::<T>(w)?, dm);
        let saved = std::mem::replace(
            &mut *self
                .tapes
                .lock()
                .map_err(|_| candle_core::Error::Msg("lstm tape lock poisoned".into()))?,
            Tapes::None,
        );
        // A second backward over the same graph finds no tape: recompute.
        let mut tapes = match T::unwrap(saved) {
            Some(t) => t,
            None => {
                let p = Self::project(&tv, &w_in, dm);
                self.forward(&p, &w_hh, &flat::<T>(b)?, dm).1
            }
        };
        let (dtable, dw, db) =
            self.backward_values(&mut tapes, &tv, &w_in, &w_hh, &flat::<T>(grad)?, dm);
        let as_t = |v: Vec<T>, like: &Tensor| -> Result<Option<Tensor>> {
            Ok(Some(
                Tensor::from_vec(v, like.shape(), like.device())?.to_dtype(like.dtype())?,
            ))
        };
        Ok((as_t(dtable, table)?, as_t(dw, w)?, as_t(db, b)?))
    }
}

/// One chunk's forward as a `pulp` job: [`LstmMean::forward_chunk`] is
/// inlined into a function compiled for AVX2 + FMA, so the gates' loops
/// run 8 lanes wide where the CPU has them (a closure would not inline).
struct ForwardJob<'a, T> {
    op: &'a LstmMean,
    p: &'a [T],
    w: &'a [T],
    b: &'a [T],
    dm: Dims,
    n0: usize,
    out: &'a mut [T],
}

impl<T: Element> pulp::WithSimd for ForwardJob<'_, T> {
    type Output = ChunkTape<T>;

    #[inline(always)]
    fn with_simd<S: pulp::Simd>(self, _: S) -> ChunkTape<T> {
        self.op
            .forward_chunk(self.p, self.w, self.b, self.dm, self.n0, self.out)
    }
}

/// One chunk's backward as a `pulp` job (see [`ForwardJob`]).
struct BackwardJob<'a, T> {
    op: &'a LstmMean,
    n0: usize,
    tape: &'a mut ChunkTape<T>,
    w: &'a [T],
    dout: &'a [T],
    dm: Dims,
}

impl<T: Element> pulp::WithSimd for BackwardJob<'_, T> {
    type Output = Vec<T>;

    #[inline(always)]
    fn with_simd<S: pulp::Simd>(self, _: S) -> Vec<T> {
        self.op
            .backward_chunk(self.n0, self.tape, self.w, self.dout, self.dm)
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
        table: &Tensor,
        w: &Tensor,
        b: &Tensor,
        _res: &Tensor,
        grad: &Tensor,
    ) -> Result<(Option<Tensor>, Option<Tensor>, Option<Tensor>)> {
        if table.dtype() == candle_core::DType::F64 {
            self.grads::<f64>(table, w, b, grad)
        } else {
            self.grads::<f32>(table, w, b, grad)
        }
    }
}

/// The mean hidden state of an LSTM (two directions when `w` is
/// `[2, d + h, 4h]`) over each row's first `lengths[n]` steps of
/// `x` `[nodes, steps, d]`: `[nodes, dirs * h]`.
pub fn lstm_mean(x: &Tensor, w: &Tensor, b: &Tensor, lengths: Vec<u32>) -> Result<Tensor> {
    let (nodes, steps, d) = x.dims3()?;
    let idx = (0..(nodes * steps) as u32).collect();
    lstm_mean_rows(&x.reshape((nodes * steps, d))?, idx, steps, w, b, lengths)
}

/// [`lstm_mean`] where node `n`'s step `t` is row `idx[n * steps + t]` of
/// `table` `[rows, d]` (padding steps may hold any index): the input
/// product runs once per table row, not once per step.
pub fn lstm_mean_rows(
    table: &Tensor,
    idx: Vec<u32>,
    steps: usize,
    w: &Tensor,
    b: &Tensor,
    lengths: Vec<u32>,
) -> Result<Tensor> {
    let op = LstmMean {
        idx,
        steps,
        lengths,
        tapes: Mutex::new(Tapes::None),
    };
    op.check_rows(op.dims(table.shape(), w.shape(), b.shape())?)?;
    table.contiguous()?.apply_op3_arc(
        &w.contiguous()?,
        &b.contiguous()?,
        std::sync::Arc::new(Box::new(op)),
    )
}

/// What [`lstm_mean_values`]'s forward keeps for its backward.
pub struct LstmMeanTape {
    op: LstmMean,
    dm: Dims,
    tapes: Vec<ChunkTape<f32>>,
}

/// [`lstm_mean_rows`] on plain row-major values, for steps computed
/// outside candle: `table` `[rows, d]`, `w` `[dirs, d + h, 4h]`, `b`
/// `[dirs, 4h]`. The output `[nodes, dirs * h]` and the tape
/// [`LstmMeanTape::backward`] reads; the same values as the candle op.
#[allow(clippy::too_many_arguments)]
pub fn lstm_mean_values(
    table: &[f32],
    d: usize,
    idx: Vec<u32>,
    steps: usize,
    w: &[f32],
    b: &[f32],
    dirs: usize,
    lengths: Vec<u32>,
) -> Result<(Vec<f32>, LstmMeanTape)> {
    let h4 = b.len() / dirs.max(1);
    if d == 0 || !table.len().is_multiple_of(d) || dirs == 0 || w.len() != dirs * (d + h4 / 4) * h4
    {
        candle_core::bail!(
            "lstm: a table of {} values of width {d}, weights of {} and a bias of {} for {dirs} directions",
            table.len(),
            w.len(),
            b.len()
        );
    }
    let op = LstmMean {
        idx,
        steps,
        lengths,
        tapes: Mutex::new(Tapes::None),
    };
    let dm = op.dims(
        &Shape::from((table.len() / d, d)),
        &Shape::from((dirs, d + h4 / 4, h4)),
        &Shape::from((dirs, h4)),
    )?;
    op.check_rows(dm)?;
    let (w_in, w_hh) = LstmMean::split_weights(w, dm);
    let p = LstmMean::project(table, &w_in, dm);
    let (out, tapes) = op.forward(&p, &w_hh, b, dm);
    Ok((out, LstmMeanTape { op, dm, tapes }))
}

impl LstmMeanTape {
    /// The gradients of the table, the weights and the bias (the shapes
    /// of [`lstm_mean_values`]'s arguments) from the output's gradient
    /// `dout`; `table` and `w` are the forward's.
    pub fn backward(
        mut self,
        table: &[f32],
        w: &[f32],
        dout: &[f32],
    ) -> Result<(Vec<f32>, Vec<f32>, Vec<f32>)> {
        let dm = self.dm;
        if dout.len() != dm.nodes * dm.dirs * dm.h || table.len() != dm.rows * dm.d {
            candle_core::bail!(
                "lstm: an output gradient of {} values for {} nodes x {}",
                dout.len(),
                dm.nodes,
                dm.dirs * dm.h
            );
        }
        let (w_in, w_hh) = LstmMean::split_weights(w, dm);
        Ok(self
            .op
            .backward_values(&mut self.tapes, table, &w_in, &w_hh, dout, dm))
    }
}

/// One LSTM step as candle ops, one op per gate (gates `i, f, g, o`):
/// `(h, c)` after input rows `x_t` `(rows, d)` from `(h, c)` `(rows, h)`,
/// with one direction's weights `w` `(d + h, 4h)` and bias `b` `(1, 4h)`.
/// The composition the fused op is tested and benchmarked against.
pub fn composed_step(
    x_t: &Tensor,
    h: &Tensor,
    c: &Tensor,
    w: &Tensor,
    b: &Tensor,
) -> Result<(Tensor, Tensor)> {
    let hd = h.dim(1)?;
    let z = Tensor::cat(&[x_t, h], 1)?;
    let g = z.matmul(w)?.broadcast_add(b)?;
    let i = candle_nn::ops::sigmoid(&g.narrow(1, 0, hd)?)?;
    let f = candle_nn::ops::sigmoid(&g.narrow(1, hd, hd)?)?;
    let gg = g.narrow(1, 2 * hd, hd)?.tanh()?;
    let o = candle_nn::ops::sigmoid(&g.narrow(1, 3 * hd, hd)?)?;
    let c = ((f * c)? + (i * gg)?)?;
    let h = (o * c.tanh()?)?;
    Ok((h, c))
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

    /// The mean hidden state of each group, `[nodes, d]`, where node `n`'s
    /// step `t` is row `idx[n * steps + t]` of `table` (see
    /// [`lstm_mean_rows`]).
    pub fn forward_rows(
        &self,
        table: &Tensor,
        idx: Vec<u32>,
        steps: usize,
        lengths: Vec<u32>,
    ) -> Result<Tensor> {
        lstm_mean_rows(
            table,
            idx,
            steps,
            self.w.as_tensor(),
            self.b.as_tensor(),
            lengths,
        )
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
                    (hs, cs) = composed_step(&xt, &hs, &cs, &wd, &bd)?;
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
    fn rows_of_a_table_match_the_gathered_steps_and_their_gradient() {
        // Five nodes read three table rows with repeats; padding indices
        // point anywhere in the table.
        let (n, steps, d, h, rows) = (5, 4, 3, 2, 3);
        let table = values(rows * d, 11);
        let idx: Vec<u32> = vec![0, 2, 2, 1, 1, 0, 0, 0, 2, 2, 1, 0, 0, 1, 1, 1, 2, 0, 1, 2];
        let lengths = vec![4, 0, 2, 1, 3];
        let w = t(&values(2 * (d + h) * 4 * h, 12), &[2, d + h, 4 * h]);
        let b = t(&values(2 * 4 * h, 13), &[2, 4 * h]);
        let tb = t(&table, &[rows, d]);
        let ours = lstm_mean_rows(&tb, idx.clone(), steps, &w, &b, lengths.clone()).unwrap();
        let it = Tensor::from_vec(idx.clone(), n * steps, &Device::Cpu).unwrap();
        let x = tb
            .index_select(&it, 0)
            .unwrap()
            .reshape((n, steps, d))
            .unwrap();
        let want = reference(&x, &w, &b, &lengths).unwrap();
        let diff = (ours - want).unwrap().abs().unwrap().max_all().unwrap();
        assert!(diff.to_scalar::<f64>().unwrap() < 1e-12);
        let proj = t(&values(n * 2 * h, 14), &[n, 2 * h]);
        let err = max_gradient_error(&table, &[rows, d], |tb| {
            (lstm_mean_rows(tb, idx.clone(), steps, &w, &b, lengths.clone())? * &proj)?.sum_all()
        })
        .unwrap();
        assert!(err < 1e-7, "{err}");
        // A real step past the table is an error, a padding one is not.
        let mut bad = idx.clone();
        bad[1] = 3;
        assert!(lstm_mean_rows(&tb, bad, steps, &w, &b, lengths.clone()).is_err());
        let mut pad = idx;
        pad[4 + 1] = 99;
        assert!(lstm_mean_rows(&tb, pad, steps, &w, &b, lengths).is_ok());
    }

    #[test]
    fn plain_values_give_the_candle_op_and_its_gradients() {
        let (n, steps, d, h, rows) = (5, 4, 3, 2, 3);
        let f = |v: Vec<f64>| v.into_iter().map(|x| x as f32).collect::<Vec<f32>>();
        let table = f(values(rows * d, 21));
        let idx: Vec<u32> = vec![0, 2, 2, 1, 1, 0, 0, 0, 2, 2, 1, 0, 0, 1, 1, 1, 2, 0, 1, 2];
        let lengths = vec![4, 0, 2, 1, 3];
        let w = f(values(2 * (d + h) * 4 * h, 22));
        let b = f(values(2 * 4 * h, 23));
        let dout = f(values(n * 2 * h, 24));
        let dev = Device::Cpu;
        let tv = Var::from_vec(table.clone(), (rows, d), &dev).unwrap();
        let wv = Var::from_vec(w.clone(), (2, d + h, 4 * h), &dev).unwrap();
        let bv = Var::from_vec(b.clone(), (2, 4 * h), &dev).unwrap();
        let out = lstm_mean_rows(&tv, idx.clone(), steps, &wv, &bv, lengths.clone()).unwrap();
        let proj = Tensor::from_vec(dout.clone(), (n, 2 * h), &dev).unwrap();
        let grads = (&out * &proj)
            .unwrap()
            .sum_all()
            .unwrap()
            .backward()
            .unwrap();
        let (ours, tape) = lstm_mean_values(&table, d, idx, steps, &w, &b, 2, lengths).unwrap();
        let flat32 = |t: &Tensor| t.flatten_all().unwrap().to_vec1::<f32>().unwrap();
        assert_eq!(ours, flat32(&out));
        let (dt, dw, db) = tape.backward(&table, &w, &dout).unwrap();
        assert_eq!(dt, flat32(grads.get(&tv).unwrap()));
        assert_eq!(dw, flat32(grads.get(&wv).unwrap()));
        assert_eq!(db, flat32(grads.get(&bv).unwrap()));
        // Shapes that do not fit are errors.
        assert!(lstm_mean_values(&table, 2, vec![0; 20], steps, &w, &b, 2, vec![0; 5]).is_err());
        assert!(lstm_mean_values(&table, d, vec![0; 20], steps, &w, &b, 1, vec![0; 5]).is_err());
        let (_, tape) =
            lstm_mean_values(&table, d, vec![0; 20], steps, &w, &b, 2, vec![1; 5]).unwrap();
        assert!(tape.backward(&table, &w, &dout[1..]).is_err());
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
