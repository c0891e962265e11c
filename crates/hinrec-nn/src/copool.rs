//! The max-pooled co-attention scores as one fused candle op.
//!
//! LGRec needs only the row and column maxima of `M = FA G^T` (eq. 2). The
//! fused op computes each pair's `k1 x k2` dot products in a tight loop
//! (pairs in parallel) and keeps only the maxima and where they are; its
//! backward sends each pooled gradient to the single (row, column) that won,
//! so it costs `O(p (k1 + k2) h)` instead of the two `p k1 k2 h` products
//! that autograd through a materialised `M` would take.

use std::sync::Mutex;

use candle_core::{CpuStorage, CustomOp2, Layout, Result, Shape, Tensor, WithDType};
use num_traits::Float;
use rayon::prelude::*;

/// Score of a slot with no real counterpart (all of the other side is
/// padding): low enough that a masked softmax ignores it.
const NONE: f64 = -1e9;

/// Row and column maxima of `fa[p] g[p]^T` over real slots.
pub struct CoAttentionPool {
    mask_x: Vec<bool>,
    mask_y: Vec<bool>,
    dims: (usize, usize, usize, usize),
    argmax: Mutex<Vec<u32>>,
}

impl CoAttentionPool {
    /// For `p` pairs with `k1` and `k2` slots of width `h`; masks are
    /// row-major `(p, k1)` and `(p, k2)`, true for real neighbours.
    pub fn new(
        mask_x: Vec<bool>,
        mask_y: Vec<bool>,
        p: usize,
        k1: usize,
        k2: usize,
        h: usize,
    ) -> Self {
        CoAttentionPool {
            mask_x,
            mask_y,
            dims: (p, k1, k2, h),
            argmax: Mutex::new(Vec::new()),
        }
    }

    fn forward<T: WithDType + Float + Send + Sync>(&self, fa: &[T], g: &[T]) -> (Vec<T>, Vec<u32>) {
        let (p, k1, k2, h) = self.dims;
        let none = T::from(NONE).unwrap_or(T::neg_infinity());
        let per_pair: Vec<(Vec<T>, Vec<u32>)> = (0..p)
            .into_par_iter()
            .map(|q| {
                let (fa, g) = (
                    &fa[q * k1 * h..(q + 1) * k1 * h],
                    &g[q * k2 * h..(q + 1) * k2 * h],
                );
                let (mx, my) = (
                    &self.mask_x[q * k1..(q + 1) * k1],
                    &self.mask_y[q * k2..(q + 1) * k2],
                );
                let mut out = vec![none; k1 + k2];
                let mut arg = vec![u32::MAX; k1 + k2];
                for i in 0..k1 {
                    let a = &fa[i * h..(i + 1) * h];
                    for j in 0..k2 {
                        let b = &g[j * h..(j + 1) * h];
                        let s = dot(a, b);
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

    fn backward<T: WithDType + Float + std::ops::AddAssign>(
        &self,
        fa: &[T],
        g: &[T],
        grad: &[T],
        argmax: &[u32],
    ) -> (Vec<T>, Vec<T>) {
        let (p, k1, k2, h) = self.dims;
        let mut dfa = vec![T::zero(); fa.len()];
        let mut dg = vec![T::zero(); g.len()];
        for q in 0..p {
            let base = q * (k1 + k2);
            for i in 0..k1 {
                let j = argmax[base + i];
                if j == u32::MAX {
                    continue;
                }
                let gr = grad[base + i];
                let (a, b) = ((q * k1 + i) * h, (q * k2 + j as usize) * h);
                for t in 0..h {
                    dfa[a + t] += gr * g[b + t];
                    dg[b + t] += gr * fa[a + t];
                }
            }
            for j in 0..k2 {
                let i = argmax[base + k1 + j];
                if i == u32::MAX {
                    continue;
                }
                let gr = grad[base + k1 + j];
                let (a, b) = ((q * k1 + i as usize) * h, (q * k2 + j) * h);
                for t in 0..h {
                    dfa[a + t] += gr * g[b + t];
                    dg[b + t] += gr * fa[a + t];
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
        None => candle_core::bail!("co-attention pooling needs contiguous inputs"),
    }
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
        if l1.shape().dims() != [p, k1, h] || l2.shape().dims() != [p, k2, h] {
            candle_core::bail!(
                "co-attention pooling: shapes {:?} {:?} do not match {:?}",
                l1.shape(),
                l2.shape(),
                self.dims
            );
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
        *self
            .argmax
            .lock()
            .map_err(|_| candle_core::Error::Msg("poisoned argmax".into()))? = arg;
        Ok((storage, Shape::from((p, k1 + k2))))
    }

    fn bwd(
        &self,
        fa: &Tensor,
        g: &Tensor,
        _res: &Tensor,
        grad: &Tensor,
    ) -> Result<(Option<Tensor>, Option<Tensor>)> {
        let arg = self
            .argmax
            .lock()
            .map_err(|_| candle_core::Error::Msg("poisoned argmax".into()))?;
        let flat = |t: &Tensor| t.flatten_all();
        let (dfa, dg) = match fa.dtype() {
            candle_core::DType::F64 => {
                let (a, b) = self.backward::<f64>(
                    &flat(fa)?.to_vec1()?,
                    &flat(g)?.to_vec1()?,
                    &flat(grad)?.to_vec1()?,
                    &arg,
                );
                (
                    Tensor::from_vec(a, fa.shape(), fa.device())?,
                    Tensor::from_vec(b, g.shape(), g.device())?,
                )
            }
            _ => {
                let (a, b) = self.backward::<f32>(
                    &flat(&fa.to_dtype(candle_core::DType::F32)?)?.to_vec1()?,
                    &flat(&g.to_dtype(candle_core::DType::F32)?)?.to_vec1()?,
                    &flat(&grad.to_dtype(candle_core::DType::F32)?)?.to_vec1()?,
                    &arg,
                );
                (
                    Tensor::from_vec(a, fa.shape(), fa.device())?,
                    Tensor::from_vec(b, g.shape(), g.device())?,
                )
            }
        };
        Ok((Some(dfa), Some(dg)))
    }
}
