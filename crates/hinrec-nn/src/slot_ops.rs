//! Fused candle ops over neighbour slots that read rows of a per-batch table
//! through indices, so no `(pairs x slots x width)` tensor is ever built.
//!
//! - [`CoAttentionPool`]: LGRec needs only the row and column maxima of
//!   `M = FA G^T` (eq. 2). Each pair's `k1 x k2` scores are read from a
//!   product of the whole per-batch tables (`n_x x n_y`, one GEMM, when that
//!   is smaller than the pairs' `p k1 k2` dot products) or else computed as
//!   SIMD-friendly dot products; pairs run in parallel and keep the maxima
//!   and where they are. The backward sends each pooled gradient to the
//!   single (row, column) that won: `O(p (k1 + k2) h)` instead of the two
//!   `p k1 k2 h` products of autograd through a materialised `M`.
//! - [`WeightedRows`]: `out[p] = sum_i w[p, i] table[idx[p, i]]`, the
//!   attention-weighted neighbour sum (eq. 3), with its exact backward.

use std::ops::AddAssign;
use std::sync::Mutex;

use candle_core::{CpuStorage, CustomOp2, CustomOp3, Layout, Result, Shape, Tensor, WithDType};
use num_traits::Float;
use rayon::prelude::*;

/// Score of a slot with no real counterpart (all of the other side is
/// padding): low enough that a masked softmax ignores it.
const NONE: f64 = -1e9;

/// Neighbour slots of `p` pairs: table row indices and real-neighbour flags
/// for both sides, row-major `(p, k1)` and `(p, k2)`.
#[derive(Debug, Clone, PartialEq)]
pub struct Slots {
    /// Rows of the first table.
    pub idx_x: Vec<u32>,
    /// Rows of the second table.
    pub idx_y: Vec<u32>,
    /// Real first-side neighbours.
    pub mask_x: Vec<bool>,
    /// Real second-side neighbours.
    pub mask_y: Vec<bool>,
}

/// Row and column maxima of `FA[idx_x[p]] G[idx_y[p]]^T` over real slots,
/// for tables `FA` (`n_x x h`) and `G` (`n_y x h`); output `(p, k1 + k2)`:
/// the `k1` row maxima then the `k2` column maxima of each pair.
///
/// The third input is either `FA G^T` (`n_x x n_y`, detached: no gradient
/// flows into it), whose entries are then read instead of recomputed, or an empty
/// tensor, and then each score is a dot product. [`CoAttentionPool::prefers_product`]
/// says which is cheaper.
pub struct CoAttentionPool {
    slots: Slots,
    dims: (usize, usize, usize, usize),
    argmax: Mutex<Vec<u32>>,
}

/// Largest `FA G^T` (entries) worth materialising: 64 M floats, 256 MiB.
pub(crate) const MAX_PRODUCT: usize = 1 << 26;

impl CoAttentionPool {
    /// For `p` pairs with `k1` and `k2` slots of width `h`.
    pub fn new(slots: Slots, p: usize, k1: usize, k2: usize, h: usize) -> Self {
        CoAttentionPool {
            slots,
            dims: (p, k1, k2, h),
            argmax: Mutex::new(Vec::new()),
        }
    }

    /// Whether the whole `n_x x n_y` product costs less than the pairs' own
    /// dot products (and fits in memory).
    pub fn prefers_product(&self, n_x: usize, n_y: usize) -> bool {
        let (p, k1, k2, _) = self.dims;
        let product = n_x.saturating_mul(n_y);
        product <= MAX_PRODUCT && product <= p.saturating_mul(k1).saturating_mul(k2)
    }

    /// Maxima and their positions; `score(r, c)` is `FA[r] . G[c]`.
    fn pool<T, S>(&self, score: S) -> (Vec<T>, Vec<u32>)
    where
        T: WithDType + Float + Send + Sync,
        S: Fn(usize, usize) -> T + Sync,
    {
        let (p, k1, k2, _) = self.dims;
        let none = T::from(NONE).unwrap_or(T::neg_infinity());
        let sl = &self.slots;
        let per_pair: Vec<(Vec<T>, Vec<u32>)> = (0..p)
            .into_par_iter()
            .map(|q| {
                let (ix, iy) = (
                    &sl.idx_x[q * k1..(q + 1) * k1],
                    &sl.idx_y[q * k2..(q + 1) * k2],
                );
                let (mx, my) = (
                    &sl.mask_x[q * k1..(q + 1) * k1],
                    &sl.mask_y[q * k2..(q + 1) * k2],
                );
                // Padded slots keep NONE and no winner: the masked softmax
                // gives them no weight, so only real-by-real scores matter.
                let (cols, cs): (Vec<usize>, Vec<usize>) = (0..k2)
                    .filter(|&j| my[j])
                    .map(|j| (j, iy[j] as usize))
                    .unzip();
                let n = cs.len();
                // Row scores land in a contiguous buffer; the maxima are
                // then plain branch-free loops the compiler vectorises.
                let mut vals = vec![T::zero(); n];
                let mut col_max = vec![T::neg_infinity(); n];
                let mut col_arg = vec![u32::MAX; n];
                let mut out = vec![none; k1 + k2];
                let mut arg = vec![u32::MAX; k1 + k2];
                for i in (0..k1).filter(|&i| mx[i]) {
                    let r = ix[i] as usize;
                    for (v, &c) in vals.iter_mut().zip(&cs) {
                        *v = score(r, c);
                    }
                    for ((m, a), &v) in col_max.iter_mut().zip(col_arg.iter_mut()).zip(&vals) {
                        let gt = v > *m;
                        *m = if gt { v } else { *m };
                        *a = if gt { i as u32 } else { *a };
                    }
                    if let Some(at) = argmax(&vals) {
                        out[i] = vals[at];
                        arg[i] = cols[at] as u32;
                    }
                }
                for ((&j, &m), &a) in cols.iter().zip(&col_max).zip(&col_arg) {
                    if a != u32::MAX {
                        out[k1 + j] = m;
                        arg[k1 + j] = a;
                    }
                }
                (out, arg)
            })
            .collect();
        let mut out = Vec::with_capacity(p * (k1 + k2));
        let mut arg = Vec::with_capacity(p * (k1 + k2));
        for (o, a) in per_pair {
            out.extend(o);
            arg.extend(a);
        }
        (out, arg)
    }

    fn forward<T: WithDType + Float + Send + Sync>(
        &self,
        fa: &[T],
        g: &[T],
        product: &[T],
    ) -> (Vec<T>, Vec<u32>) {
        let h = self.dims.3;
        if product.is_empty() {
            self.pool(|r, c| dot(&fa[r * h..(r + 1) * h], &g[c * h..(c + 1) * h]))
        } else {
            let n_y = g.len() / h.max(1);
            self.pool(|r, c| product[r * n_y + c])
        }
    }

    fn backward<T: WithDType + Float + AddAssign + Send + Sync>(
        &self,
        fa: &[T],
        g: &[T],
        grad: &[T],
        argmax: &[u32],
    ) -> (Vec<T>, Vec<T>) {
        let (p, k1, k2, h) = self.dims;
        let sl = &self.slots;
        // Pairs split between threads, each with its own gradient buffers,
        // summed at the end (winners of different pairs share rows).
        let accumulate = |pairs: std::ops::Range<usize>| {
            let mut dfa = vec![T::zero(); fa.len()];
            let mut dg = vec![T::zero(); g.len()];
            let mut add = |i: usize, j: usize, gr: T| {
                let (a, b) = (i * h, j * h);
                for t in 0..h {
                    dfa[a + t] += gr * g[b + t];
                    dg[b + t] += gr * fa[a + t];
                }
            };
            for q in pairs {
                let base = q * (k1 + k2);
                for i in 0..k1 {
                    let j = argmax[base + i];
                    if j != u32::MAX {
                        let (r, c) = (sl.idx_x[q * k1 + i], sl.idx_y[q * k2 + j as usize]);
                        add(r as usize, c as usize, grad[base + i]);
                    }
                }
                for j in 0..k2 {
                    let i = argmax[base + k1 + j];
                    if i != u32::MAX {
                        let (r, c) = (sl.idx_x[q * k1 + i as usize], sl.idx_y[q * k2 + j]);
                        add(r as usize, c as usize, grad[base + k1 + j]);
                    }
                }
            }
            (dfa, dg)
        };
        reduce_split(p, accumulate)
    }
}

/// Ranges [`reduce_split`] cuts its work into. Fixed, not the thread
/// count, so the float sums, and with them a whole training run, are the
/// same on any number of threads; 2 is these machines' core count and
/// keeps the figures recorded with two threads exact.
const REDUCE_PARTS: usize = 2;

/// Runs `part` over [`REDUCE_PARTS`] contiguous ranges of `0..n` in
/// parallel and sums the pairs of buffers it returns, in range order.
fn reduce_split<T, F>(n: usize, part: F) -> (Vec<T>, Vec<T>)
where
    T: Float + AddAssign + Send,
    F: Fn(std::ops::Range<usize>) -> (Vec<T>, Vec<T>) + Sync,
{
    let parts = REDUCE_PARTS.clamp(1, n.max(1));
    let chunk = n.div_ceil(parts).max(1);
    let sums: Vec<(Vec<T>, Vec<T>)> = (0..parts)
        .into_par_iter()
        .map(|k| part(k * chunk..n.min((k + 1) * chunk)))
        .collect();
    let mut sums = sums.into_iter();
    let (mut a, mut b) = sums.next().unwrap_or_default();
    for (c, d) in sums {
        a.iter_mut().zip(c).for_each(|(x, y)| *x += y);
        b.iter_mut().zip(d).for_each(|(x, y)| *x += y);
    }
    (a, b)
}

/// Position of the first maximum of `v` (None if empty or all NaN): an
/// eight-lane max, then a scan for the first entry equal to it.
#[inline]
fn argmax<T: Float>(v: &[T]) -> Option<usize> {
    let mut acc = [T::neg_infinity(); 8];
    let chunks = v.chunks_exact(8);
    let rest = chunks.remainder();
    for c in chunks {
        for l in 0..8 {
            acc[l] = if c[l] > acc[l] { c[l] } else { acc[l] };
        }
    }
    let mut m = acc
        .iter()
        .fold(T::neg_infinity(), |m, &x| if x > m { x } else { m });
    for &x in rest {
        m = if x > m { x } else { m };
    }
    v.iter().position(|&x| x == m)
}

/// Dot product with eight independent accumulators, so the compiler can
/// keep them in SIMD lanes (a single running sum cannot be reordered).
#[inline]
fn dot<T: Float>(a: &[T], b: &[T]) -> T {
    let mut acc = [T::zero(); 8];
    let (ca, cb) = (a.chunks_exact(8), b.chunks_exact(8));
    let (ra, rb) = (ca.remainder(), cb.remainder());
    for (x, y) in ca.zip(cb) {
        for l in 0..8 {
            acc[l] = acc[l] + x[l] * y[l];
        }
    }
    let mut s = acc.iter().fold(T::zero(), |s, &v| s + v);
    for (&x, &y) in ra.iter().zip(rb) {
        s = s + x * y;
    }
    s
}

pub(crate) fn contiguous<'a, T: WithDType>(s: &'a CpuStorage, l: &Layout) -> Result<&'a [T]> {
    match l.contiguous_offsets() {
        Some((a, b)) => Ok(&s.as_slice::<T>()?[a..b]),
        None => candle_core::bail!("fused neighbour ops need contiguous inputs"),
    }
}

fn poisoned<E>(_: E) -> candle_core::Error {
    candle_core::Error::Msg("co-attention argmax lock poisoned".into())
}

impl CustomOp3 for CoAttentionPool {
    fn name(&self) -> &'static str {
        "co-attention-pool"
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
        let (p, k1, k2, h) = self.dims;
        let (nx, hx) = l1.shape().dims2()?;
        let (ny, hy) = l2.shape().dims2()?;
        let sl = &self.slots;
        if hx != h || hy != h || sl.idx_x.len() != p * k1 || sl.idx_y.len() != p * k2 {
            candle_core::bail!(
                "co-attention pooling: tables {:?} {:?} do not fit {:?}",
                l1.shape(),
                l2.shape(),
                self.dims
            );
        }
        let n3 = l3.shape().elem_count();
        if n3 != 0 && l3.shape().dims() != [nx, ny] {
            candle_core::bail!(
                "co-attention pooling: product {:?} is not {nx} x {ny}",
                l3.shape()
            );
        }
        if sl.idx_x.iter().any(|&i| i as usize >= nx) || sl.idx_y.iter().any(|&i| i as usize >= ny)
        {
            candle_core::bail!("co-attention pooling: an index is outside its table");
        }
        let (storage, arg) = match (s1, s2) {
            (CpuStorage::F32(_), CpuStorage::F32(_)) => {
                let m = if n3 == 0 {
                    &[][..]
                } else {
                    contiguous::<f32>(s3, l3)?
                };
                let (o, a) = self.forward(contiguous(s1, l1)?, contiguous(s2, l2)?, m);
                (CpuStorage::F32(o), a)
            }
            (CpuStorage::F64(_), CpuStorage::F64(_)) => {
                let m = if n3 == 0 {
                    &[][..]
                } else {
                    contiguous::<f64>(s3, l3)?
                };
                let (o, a) = self.forward(contiguous(s1, l1)?, contiguous(s2, l2)?, m);
                (CpuStorage::F64(o), a)
            }
            _ => candle_core::bail!("co-attention pooling supports f32 and f64 of one type"),
        };
        *self.argmax.lock().map_err(poisoned)? = arg;
        Ok((storage, Shape::from((p, k1 + k2))))
    }

    fn bwd(
        &self,
        fa: &Tensor,
        g: &Tensor,
        _product: &Tensor,
        _res: &Tensor,
        grad: &Tensor,
    ) -> Result<(Option<Tensor>, Option<Tensor>, Option<Tensor>)> {
        let arg = self.argmax.lock().map_err(poisoned)?;
        let (dfa, dg) = float_grads!(fa, fa, g, |T| self.backward::<T>(
            &flat(fa)?,
            &flat(g)?,
            &flat(grad)?,
            &arg
        ))?;
        Ok((dfa, dg, None))
    }
}

/// Two gradient vectors as tensors shaped and typed like `x` and `y`.
pub(crate) fn grad_pair<T: WithDType>(
    (a, b): (Vec<T>, Vec<T>),
    x: &Tensor,
    y: &Tensor,
) -> Result<(Option<Tensor>, Option<Tensor>)> {
    Ok((
        Some(Tensor::from_vec(a, x.shape(), x.device())?.to_dtype(x.dtype())?),
        Some(Tensor::from_vec(b, y.shape(), y.device())?.to_dtype(y.dtype())?),
    ))
}

/// Runs a backward written once over a float type `$t`, as f64 when
/// `$like` is f64 and as f32 otherwise, and returns [`grad_pair`] of its
/// two vectors shaped like `$x` and `$y`.
macro_rules! float_grads {
    ($like:expr, $x:expr, $y:expr, |$t:ident| $body:expr) => {
        if $like.dtype() == candle_core::DType::F64 {
            type $t = f64;
            $crate::slot_ops::grad_pair::<f64>($body, $x, $y)
        } else {
            type $t = f32;
            $crate::slot_ops::grad_pair::<f32>($body, $x, $y)
        }
    };
}
pub(crate) use float_grads;

/// A tensor's values as a flat vector of `T`.
pub(crate) fn flat<T: WithDType>(t: &Tensor) -> Result<Vec<T>> {
    t.to_dtype(T::DTYPE)?.flatten_all()?.to_vec1()
}

/// `out[p] = sum_i w[p, i] table[idx[p * k + i]]` for weights `w` `(p, k)`
/// and a table `(n, d)`.
pub struct WeightedRows {
    idx: Vec<u32>,
}

impl WeightedRows {
    /// Row indices, row-major `(p, k)`.
    pub fn new(idx: Vec<u32>) -> Self {
        WeightedRows { idx }
    }

    fn forward<T: WithDType + Float + AddAssign + Send + Sync>(
        &self,
        w: &[T],
        table: &[T],
        k: usize,
        d: usize,
    ) -> Vec<T> {
        let mut out = vec![T::zero(); w.len() / k.max(1) * d];
        out.par_chunks_mut(d.max(1)).enumerate().for_each(|(q, o)| {
            for i in 0..k {
                let (wt, r) = (w[q * k + i], self.idx[q * k + i] as usize);
                if wt != T::zero() {
                    for (x, &t) in o.iter_mut().zip(&table[r * d..(r + 1) * d]) {
                        *x += wt * t;
                    }
                }
            }
        });
        out
    }

    fn backward<T: WithDType + Float + AddAssign + Send + Sync>(
        &self,
        w: &[T],
        table: &[T],
        grad: &[T],
        k: usize,
        d: usize,
    ) -> (Vec<T>, Vec<T>) {
        let p = w.len() / k.max(1);
        let dw: Vec<T> = (0..w.len())
            .into_par_iter()
            .map(|s| {
                let r = self.idx[s] as usize;
                let q = s / k.max(1);
                dot(&table[r * d..(r + 1) * d], &grad[q * d..(q + 1) * d])
            })
            .collect();
        let (dt, _) = reduce_split(p, |pairs| {
            let mut dt = vec![T::zero(); table.len()];
            for q in pairs {
                let go = &grad[q * d..(q + 1) * d];
                for i in 0..k {
                    let (wt, r) = (w[q * k + i], self.idx[q * k + i] as usize);
                    if wt != T::zero() {
                        for (x, &gv) in dt[r * d..(r + 1) * d].iter_mut().zip(go) {
                            *x += wt * gv;
                        }
                    }
                }
            }
            (dt, Vec::new())
        });
        (dw, dt)
    }
}

impl CustomOp2 for WeightedRows {
    fn name(&self) -> &'static str {
        "weighted-rows"
    }

    fn cpu_fwd(
        &self,
        s1: &CpuStorage,
        l1: &Layout,
        s2: &CpuStorage,
        l2: &Layout,
    ) -> Result<(CpuStorage, Shape)> {
        let (p, k) = l1.shape().dims2()?;
        let (n, d) = l2.shape().dims2()?;
        if self.idx.len() != p * k || self.idx.iter().any(|&i| i as usize >= n) {
            candle_core::bail!(
                "weighted rows: {} indices for ({p}, {k}) weights over {n} rows",
                self.idx.len()
            );
        }
        let storage = match (s1, s2) {
            (CpuStorage::F32(_), CpuStorage::F32(_)) => CpuStorage::F32(self.forward(
                contiguous::<f32>(s1, l1)?,
                contiguous::<f32>(s2, l2)?,
                k,
                d,
            )),
            (CpuStorage::F64(_), CpuStorage::F64(_)) => CpuStorage::F64(self.forward(
                contiguous::<f64>(s1, l1)?,
                contiguous::<f64>(s2, l2)?,
                k,
                d,
            )),
            _ => candle_core::bail!("weighted rows supports f32 and f64 of one type"),
        };
        Ok((storage, Shape::from((p, d))))
    }

    fn bwd(
        &self,
        w: &Tensor,
        table: &Tensor,
        _res: &Tensor,
        grad: &Tensor,
    ) -> Result<(Option<Tensor>, Option<Tensor>)> {
        let (_, k) = w.dims2()?;
        let (_, d) = table.dims2()?;
        float_grads!(w, w, table, |T| self.backward::<T>(
            &flat(w)?,
            &flat(table)?,
            &flat(grad)?,
            k,
            d
        ))
    }
}

/// `out[p] = sum_i softmax_real(s[p])_i table[idx[p, i]]`: a softmax of
/// each row of scores `s` (`(p, k)`) over its real slots only (padding gets
/// weight 0; a row without real slots gives the zero vector), then the
/// weighted sum of table rows, as one op (LGRec eq. 3). Fusing saves the
/// dozen small tensors and passes a masked softmax and [`WeightedRows`]
/// would make per batch.
pub struct SoftmaxWeightedRows {
    rows: WeightedRows,
    real: Vec<bool>,
    weights: Mutex<Vec<f64>>,
}

impl SoftmaxWeightedRows {
    /// Row indices and real-slot flags, row-major `(p, k)`.
    pub fn new(idx: Vec<u32>, real: Vec<bool>) -> Self {
        SoftmaxWeightedRows {
            rows: WeightedRows::new(idx),
            real,
            weights: Mutex::new(Vec::new()),
        }
    }

    /// The softmax weights of each row (f64, kept for the backward).
    fn weights<T: WithDType + Float + Sync>(&self, s: &[T], k: usize) -> Vec<f64> {
        let k = k.max(1);
        let mut w = vec![0.0; s.len()];
        // Rows in parallel: a batch's thousand rows of libm exps were a
        // tenth of an LGRec step at d = 64.
        w.par_chunks_mut(k)
            .zip(s.par_chunks(k))
            .zip(self.real.par_chunks(k))
            .with_min_len(64)
            .for_each(|((row, sc), real)| {
                let m = sc
                    .iter()
                    .zip(real)
                    .filter(|(_, &r)| r)
                    .map(|(&v, _)| WithDType::to_f64(v))
                    .fold(f64::NEG_INFINITY, f64::max);
                let mut z = 0.0;
                for ((x, v), &r) in row.iter_mut().zip(sc).zip(real) {
                    if r {
                        *x = (WithDType::to_f64(*v) - m).exp();
                        z += *x;
                    }
                }
                if z > 0.0 {
                    row.iter_mut().for_each(|x| *x /= z);
                }
            });
        w
    }

    /// [`WeightedRows`] with the softmax weights.
    fn forward<T: WithDType + Float + AddAssign + Send + Sync>(
        &self,
        w: &[f64],
        table: &[T],
        k: usize,
        d: usize,
    ) -> Vec<T> {
        self.rows.forward(&as_t::<T>(w), table, k, d)
    }

    /// [`WeightedRows`]' gradients through the softmax Jacobian:
    /// `d s_i = w_i (dw_i - sum_j w_j dw_j)`.
    fn backward<T: WithDType + Float + AddAssign + Send + Sync>(
        &self,
        w: &[f64],
        table: &[T],
        grad: &[T],
        k: usize,
        d: usize,
    ) -> (Vec<T>, Vec<T>) {
        let (dw, dt) = self.rows.backward(&as_t::<T>(w), table, grad, k, d);
        let mut ds = vec![T::zero(); w.len()];
        for ((row, w), dw) in ds
            .chunks_mut(k.max(1))
            .zip(w.chunks(k.max(1)))
            .zip(dw.chunks(k.max(1)))
        {
            let dw: Vec<f64> = dw.iter().map(|&x| WithDType::to_f64(x)).collect();
            let mean: f64 = w.iter().zip(&dw).map(|(a, b)| a * b).sum();
            for ((x, &wi), &dwi) in row.iter_mut().zip(w).zip(&dw) {
                *x = T::from_f64(wi * (dwi - mean));
            }
        }
        (ds, dt)
    }
}

/// `w` as `T`.
fn as_t<T: WithDType>(w: &[f64]) -> Vec<T> {
    w.iter().map(|&x| T::from_f64(x)).collect()
}

impl CustomOp2 for SoftmaxWeightedRows {
    fn name(&self) -> &'static str {
        "softmax-weighted-rows"
    }

    fn cpu_fwd(
        &self,
        s1: &CpuStorage,
        l1: &Layout,
        s2: &CpuStorage,
        l2: &Layout,
    ) -> Result<(CpuStorage, Shape)> {
        let (p, k) = l1.shape().dims2()?;
        let (n, d) = l2.shape().dims2()?;
        let idx = &self.rows.idx;
        if idx.len() != p * k || self.real.len() != p * k || idx.iter().any(|&i| i as usize >= n) {
            candle_core::bail!(
                "softmax weighted rows: {} indices for ({p}, {k}) scores over {n} rows",
                idx.len()
            );
        }
        let (storage, w) = match (s1, s2) {
            (CpuStorage::F32(_), CpuStorage::F32(_)) => {
                let w = self.weights(contiguous::<f32>(s1, l1)?, k);
                let o = self.forward(&w, contiguous::<f32>(s2, l2)?, k, d);
                (CpuStorage::F32(o), w)
            }
            (CpuStorage::F64(_), CpuStorage::F64(_)) => {
                let w = self.weights(contiguous::<f64>(s1, l1)?, k);
                let o = self.forward(&w, contiguous::<f64>(s2, l2)?, k, d);
                (CpuStorage::F64(o), w)
            }
            _ => candle_core::bail!("softmax weighted rows supports f32 and f64 of one type"),
        };
        *self.weights.lock().map_err(poisoned)? = w;
        Ok((storage, Shape::from((p, d))))
    }

    fn bwd(
        &self,
        s: &Tensor,
        table: &Tensor,
        _res: &Tensor,
        grad: &Tensor,
    ) -> Result<(Option<Tensor>, Option<Tensor>)> {
        let (_, k) = s.dims2()?;
        let (_, d) = table.dims2()?;
        let w = self.weights.lock().map_err(poisoned)?;
        float_grads!(s, s, table, |T| self.backward::<T>(
            &w,
            &flat(table)?,
            &flat(grad)?,
            k,
            d
        ))
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::gradcheck::max_gradient_error;
    use crate::init::Rng;
    use candle_core::{Device, Var};

    fn t(v: &[f64], shape: &[usize]) -> Tensor {
        Tensor::from_vec(v.to_vec(), shape, &Device::Cpu).unwrap()
    }

    fn slots() -> Slots {
        Slots {
            idx_x: vec![0, 4, 2, 1, 1, 3],
            idx_y: vec![5, 0, 2, 1, 3, 3, 4, 0],
            mask_x: vec![true, true, false, true, true, true],
            mask_y: vec![true, true, true, false, true, false, true, true],
        }
    }

    /// Pooled scores through the stored product, or by dot products.
    fn pooled(fa: &Tensor, g: &Tensor, with_product: bool) -> Result<Tensor> {
        let product = if with_product {
            fa.detach().matmul(&g.detach().t()?)?
        } else {
            Tensor::zeros(0, fa.dtype(), fa.device())?
        };
        fa.apply_op3(g, &product, CoAttentionPool::new(slots(), 2, 3, 4, 3))
    }

    #[test]
    fn product_and_dot_paths_agree_by_hand() {
        // Pair 0: rows fa[0], fa[4], fa[2] (the last is padding) against
        // g[5], g[0], g[2], g[1] (the last is padding).
        let fa: Vec<f64> = (0..15).map(|v| v as f64 * 0.1).collect();
        let g: Vec<f64> = (0..18).map(|v| 1.0 - v as f64 * 0.05).collect();
        let (fa, g) = (t(&fa, &[5, 3]), t(&g, &[6, 3]));
        let a = pooled(&fa, &g, true).unwrap().to_vec2::<f64>().unwrap();
        let b = pooled(&fa, &g, false).unwrap().to_vec2::<f64>().unwrap();
        for (x, y) in a.iter().flatten().zip(b.iter().flatten()) {
            assert!((x - y).abs() < 1e-12, "{a:?} vs {b:?}");
        }
        // Row max of fa[0] = [0, .1, .2] over g[5], g[0], g[2].
        let dot = |r: [f64; 3], c: usize| {
            let gc: Vec<f64> = (0..3).map(|k| 1.0 - (c * 3 + k) as f64 * 0.05).collect();
            r.iter().zip(&gc).map(|(x, y)| x * y).sum::<f64>()
        };
        let want = [5, 0, 2]
            .iter()
            .map(|&c| dot([0.0, 0.1, 0.2], c))
            .fold(f64::MIN, f64::max);
        assert!((a[0][0] - want).abs() < 1e-12);
    }

    /// The pooled scores of real slots only (padding holds a huge
    /// negative constant), squared and summed.
    fn real_loss(pooled: Tensor) -> Result<Tensor> {
        let sl = slots();
        let real: Vec<f64> = (0..2)
            .flat_map(|q| {
                let x = sl.mask_x[q * 3..(q + 1) * 3].to_vec();
                let y = sl.mask_y[q * 4..(q + 1) * 4].to_vec();
                x.into_iter().chain(y)
            })
            .map(|b| f64::from(u8::from(b)))
            .collect();
        let real = t(&real, &[2, 7]);
        (pooled * real)?.sqr()?.sum_all()
    }

    #[test]
    fn padded_slots_get_no_score_and_no_winner() {
        let fa = t(&[1.0; 15], &[5, 3]);
        let g = t(&[1.0; 18], &[6, 3]);
        let out = pooled(&fa, &g, false).unwrap().to_vec2::<f64>().unwrap();
        // Pair 0: x slot 2 and y slot 3 are padding.
        assert_eq!(out[0][2], NONE);
        assert_eq!(out[0][3 + 3], NONE);
        assert_eq!(out[0][0], 3.0);
    }

    #[test]
    fn product_path_gradients_match_finite_differences() {
        let mut rng = Rng::new(7);
        let g = t(&rng.normal(18, 1.0), &[6, 3]);
        let err = max_gradient_error(&rng.normal(15, 1.0), &[5, 3], |fa| {
            real_loss(pooled(fa, &g, true)?)
        })
        .unwrap();
        assert!(err < 1e-5, "w.r.t. FA: {err}");
        let fa = t(&rng.normal(15, 1.0), &[5, 3]);
        let err = max_gradient_error(&rng.normal(18, 1.0), &[6, 3], |g| {
            real_loss(pooled(&fa, g, true)?)
        })
        .unwrap();
        assert!(err < 1e-5, "w.r.t. G: {err}");
    }

    #[test]
    fn stored_product_matches_dot_products_on_random_slots() {
        let mut rng = Rng::new(11);
        let (p, k1, k2, h, nx, ny) = (9, 5, 6, 4, 8, 7);
        let pick = |v: f64, n: usize| ((v.abs() * 1e6) as usize % n) as u32;
        let sl = Slots {
            idx_x: rng
                .normal(p * k1, 1.0)
                .iter()
                .map(|&v| pick(v, nx))
                .collect(),
            idx_y: rng
                .normal(p * k2, 1.0)
                .iter()
                .map(|&v| pick(v, ny))
                .collect(),
            mask_x: rng.normal(p * k1, 1.0).iter().map(|&v| v > -0.5).collect(),
            mask_y: rng.normal(p * k2, 1.0).iter().map(|&v| v > -0.5).collect(),
        };
        let fa = Var::from_tensor(&t(&rng.normal(nx * h, 1.0), &[nx, h])).unwrap();
        let g = t(&rng.normal(ny * h, 1.0), &[ny, h]);
        let run = |stored: bool| {
            let product = if stored {
                fa.as_tensor().detach().matmul(&g.t().unwrap()).unwrap()
            } else {
                Tensor::zeros(0, candle_core::DType::F64, &Device::Cpu).unwrap()
            };
            let out = fa
                .as_tensor()
                .apply_op3(&g, &product, CoAttentionPool::new(sl.clone(), p, k1, k2, h))
                .unwrap();
            let w = t(&rng_weights(p * (k1 + k2)), &[p, k1 + k2]);
            let loss = (out.clamp(-50.0, 50.0).unwrap() * w)
                .unwrap()
                .sum_all()
                .unwrap();
            let grad = loss
                .backward()
                .unwrap()
                .get(fa.as_tensor())
                .unwrap()
                .clone();
            (
                out.flatten_all().unwrap().to_vec1::<f64>().unwrap(),
                grad.flatten_all().unwrap().to_vec1::<f64>().unwrap(),
            )
        };
        let ((a, ga), (b, gb)) = (run(true), run(false));
        for (x, y) in a.iter().zip(&b).chain(ga.iter().zip(&gb)) {
            assert!((x - y).abs() < 1e-9, "{x} vs {y}");
        }
    }

    fn rng_weights(n: usize) -> Vec<f64> {
        (0..n).map(|k| 1.0 + (k % 5) as f64 * 0.25).collect()
    }

    #[test]
    fn softmax_weighted_rows_by_hand_and_gradients() {
        // Row 0: slots 0, 1 real with scores ln 1, ln 3 -> weights 1/4, 3/4;
        // slot 2 padding. Row 1: no real slot -> zero vector.
        let idx = vec![0, 1, 2, 2, 1, 0];
        let real = vec![true, true, false, false, false, false];
        let table = t(&[1.0, 2.0, 5.0, 6.0, 9.0, 9.0], &[3, 2]);
        let s = t(&[0.0, 3f64.ln(), 7.0, 1.0, 2.0, 3.0], &[2, 3]);
        let out = s
            .apply_op2(&table, SoftmaxWeightedRows::new(idx.clone(), real.clone()))
            .unwrap()
            .to_vec2::<f64>()
            .unwrap();
        let want = [
            [0.25 * 1.0 + 0.75 * 5.0, 0.25 * 2.0 + 0.75 * 6.0],
            [0.0, 0.0],
        ];
        for (a, b) in out.iter().flatten().zip(want.iter().flatten()) {
            assert!((a - b).abs() < 1e-12, "{out:?}");
        }
        let mut rng = Rng::new(5);
        let real = vec![true, true, false, true, false, true];
        let op = |idx: &[u32], real: &[bool]| SoftmaxWeightedRows::new(idx.to_vec(), real.to_vec());
        let err = max_gradient_error(&rng.normal(6, 1.0), &[2, 3], |s| {
            s.apply_op2(&table, op(&idx, &real))?.sqr()?.sum_all()
        })
        .unwrap();
        assert!(err < 1e-6, "w.r.t. scores: {err}");
        let s = t(&rng.normal(6, 1.0), &[2, 3]);
        let err = max_gradient_error(&rng.normal(6, 1.0), &[3, 2], |tb| {
            s.apply_op2(tb, op(&idx, &real))?.sqr()?.sum_all()
        })
        .unwrap();
        assert!(err < 1e-6, "w.r.t. the table: {err}");
    }

    #[test]
    fn reduce_split_is_the_same_on_any_thread_count() {
        // f32 sums of values of mixed magnitude: any other grouping of the
        // terms rounds differently.
        let part = |r: std::ops::Range<usize>| {
            let mut a = vec![0f32; 3];
            for i in r {
                a[i % 3] += (i as f32 * 0.37).sin() * 1e3 + 1.0 / (i as f32 + 0.7);
            }
            (a, Vec::new())
        };
        let on = |threads| {
            rayon::ThreadPoolBuilder::new()
                .num_threads(threads)
                .build()
                .unwrap()
                .install(|| reduce_split(10_001, part).0)
        };
        let one = on(1);
        assert_eq!(one, on(3));
        assert_eq!(one, on(8));
        let (lo, hi) = (part(0..5_001).0, part(5_001..10_001).0);
        let by_hand: Vec<f32> = lo.iter().zip(&hi).map(|(a, b)| a + b).collect();
        assert_eq!(one, by_hand, "two ranges, summed in order");
    }

    #[test]
    fn cost_rule_picks_the_cheaper_path() {
        let pool = CoAttentionPool::new(slots(), 512, 100, 100, 128);
        assert!(pool.prefers_product(1682, 943));
        assert!(!pool.prefers_product(14_000, 16_000));
    }
}
