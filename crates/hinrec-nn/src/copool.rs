//! Fused candle ops over neighbour slots that read rows of a per-batch table
//! through indices, so no `(pairs x slots x width)` tensor is ever built.
//!
//! - [`CoAttentionPool`]: LGRec needs only the row and column maxima of
//!   `M = FA G^T` (eq. 2). The op computes each pair's `k1 x k2` dot products
//!   in SIMD-friendly loops (pairs in parallel) and keeps the maxima and
//!   where they are; its backward sends each pooled gradient to the single
//!   (row, column) that won: `O(p (k1 + k2) h)` instead of the two
//!   `p k1 k2 h` products of autograd through a materialised `M`.
//! - [`WeightedRows`]: `out[p] = sum_i w[p, i] table[idx[p, i]]`, the
//!   attention-weighted neighbour sum (eq. 3), with its exact backward.

use std::ops::AddAssign;
use std::sync::Mutex;

use candle_core::{CpuStorage, CustomOp2, DType, Layout, Result, Shape, Tensor, WithDType};
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
pub struct CoAttentionPool {
    slots: Slots,
    dims: (usize, usize, usize, usize),
    argmax: Mutex<Vec<u32>>,
}

impl CoAttentionPool {
    /// For `p` pairs with `k1` and `k2` slots of width `h`.
    pub fn new(slots: Slots, p: usize, k1: usize, k2: usize, h: usize) -> Self {
        CoAttentionPool {
            slots,
            dims: (p, k1, k2, h),
            argmax: Mutex::new(Vec::new()),
        }
    }

    fn forward<T: WithDType + Float + Send + Sync>(&self, fa: &[T], g: &[T]) -> (Vec<T>, Vec<u32>) {
        let (p, k1, k2, h) = self.dims;
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
                let mut out = vec![none; k1 + k2];
                let mut arg = vec![u32::MAX; k1 + k2];
                for i in 0..k1 {
                    let r = ix[i] as usize;
                    let a = &fa[r * h..(r + 1) * h];
                    for j in 0..k2 {
                        let c = iy[j] as usize;
                        let s = dot(a, &g[c * h..(c + 1) * h]);
                        if my[j] && (arg[i] == u32::MAX || s > out[i]) {
                            out[i] = s;
                            arg[i] = j as u32;
                        }
                        if mx[i] && (arg[k1 + j] == u32::MAX || s > out[k1 + j]) {
                            out[k1 + j] = s;
                            arg[k1 + j] = i as u32;
                        }
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

    fn backward<T: WithDType + Float + AddAssign>(
        &self,
        fa: &[T],
        g: &[T],
        grad: &[T],
        argmax: &[u32],
    ) -> (Vec<T>, Vec<T>) {
        let (p, k1, k2, h) = self.dims;
        let sl = &self.slots;
        let mut dfa = vec![T::zero(); fa.len()];
        let mut dg = vec![T::zero(); g.len()];
        let mut add = |i: usize, j: usize, gr: T| {
            let (a, b) = (i * h, j * h);
            for t in 0..h {
                dfa[a + t] += gr * g[b + t];
                dg[b + t] += gr * fa[a + t];
            }
        };
        for q in 0..p {
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
    }
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

fn contiguous<'a, T: WithDType>(s: &'a CpuStorage, l: &Layout) -> Result<&'a [T]> {
    match l.contiguous_offsets() {
        Some((a, b)) => Ok(&s.as_slice::<T>()?[a..b]),
        None => candle_core::bail!("fused neighbour ops need contiguous inputs"),
    }
}

fn poisoned<E>(_: E) -> candle_core::Error {
    candle_core::Error::Msg("co-attention argmax lock poisoned".into())
}

impl CustomOp2 for CoAttentionPool {
    fn name(&self) -> &'static str {
        "co-attention-pool"
    }

    fn cpu_fwd(
        &self,
        s1: &CpuStorage,
        l1: &Layout,
        s2: &CpuStorage,
        l2: &Layout,
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
        if sl.idx_x.iter().any(|&i| i as usize >= nx) || sl.idx_y.iter().any(|&i| i as usize >= ny)
        {
            candle_core::bail!("co-attention pooling: an index is outside its table");
        }
        let (storage, arg) = match (s1, s2) {
            (CpuStorage::F32(_), CpuStorage::F32(_)) => {
                let (o, a) = self.forward(contiguous::<f32>(s1, l1)?, contiguous::<f32>(s2, l2)?);
                (CpuStorage::F32(o), a)
            }
            (CpuStorage::F64(_), CpuStorage::F64(_)) => {
                let (o, a) = self.forward(contiguous::<f64>(s1, l1)?, contiguous::<f64>(s2, l2)?);
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
        _res: &Tensor,
        grad: &Tensor,
    ) -> Result<(Option<Tensor>, Option<Tensor>)> {
        let arg = self.argmax.lock().map_err(poisoned)?;
        let (dfa, dg) = if fa.dtype() == DType::F64 {
            let (a, b) = self.backward::<f64>(&flat(fa)?, &flat(g)?, &flat(grad)?, &arg);
            (
                Tensor::from_vec(a, fa.shape(), fa.device())?,
                Tensor::from_vec(b, g.shape(), g.device())?,
            )
        } else {
            let (a, b) = self.backward::<f32>(&flat(fa)?, &flat(g)?, &flat(grad)?, &arg);
            (
                Tensor::from_vec(a, fa.shape(), fa.device())?,
                Tensor::from_vec(b, g.shape(), g.device())?,
            )
        };
        Ok((
            Some(dfa.to_dtype(fa.dtype())?),
            Some(dg.to_dtype(g.dtype())?),
        ))
    }
}

/// A tensor's values as a flat vector of `T`.
fn flat<T: WithDType>(t: &Tensor) -> Result<Vec<T>> {
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

    fn forward<T: WithDType + Float + AddAssign>(
        &self,
        w: &[T],
        table: &[T],
        k: usize,
        d: usize,
    ) -> Vec<T> {
        let p = w.len() / k.max(1);
        let mut out = vec![T::zero(); p * d];
        for q in 0..p {
            let o = &mut out[q * d..(q + 1) * d];
            for i in 0..k {
                let (wt, r) = (w[q * k + i], self.idx[q * k + i] as usize);
                if wt != T::zero() {
                    for (x, &t) in o.iter_mut().zip(&table[r * d..(r + 1) * d]) {
                        *x += wt * t;
                    }
                }
            }
        }
        out
    }

    fn backward<T: WithDType + Float + AddAssign>(
        &self,
        w: &[T],
        table: &[T],
        grad: &[T],
        k: usize,
        d: usize,
    ) -> (Vec<T>, Vec<T>) {
        let p = w.len() / k.max(1);
        let mut dw = vec![T::zero(); w.len()];
        let mut dt = vec![T::zero(); table.len()];
        for q in 0..p {
            let go = &grad[q * d..(q + 1) * d];
            for i in 0..k {
                let r = self.idx[q * k + i] as usize;
                dw[q * k + i] = dot(&table[r * d..(r + 1) * d], go);
                let wt = w[q * k + i];
                if wt != T::zero() {
                    for (x, &gv) in dt[r * d..(r + 1) * d].iter_mut().zip(go) {
                        *x += wt * gv;
                    }
                }
            }
        }
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
        let (dw, dt) = if w.dtype() == DType::F64 {
            let (a, b) = self.backward::<f64>(&flat(w)?, &flat(table)?, &flat(grad)?, k, d);
            (
                Tensor::from_vec(a, w.shape(), w.device())?,
                Tensor::from_vec(b, table.shape(), table.device())?,
            )
        } else {
            let (a, b) = self.backward::<f32>(&flat(w)?, &flat(table)?, &flat(grad)?, k, d);
            (
                Tensor::from_vec(a, w.shape(), w.device())?,
                Tensor::from_vec(b, table.shape(), table.device())?,
            )
        };
        Ok((
            Some(dw.to_dtype(w.dtype())?),
            Some(dt.to_dtype(table.dtype())?),
        ))
    }
}
