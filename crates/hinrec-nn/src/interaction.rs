//! The pair-wise interaction layer of REDA (reda.txt eq. 2) as one fused
//! op: the k² element-wise products of two rows' k sub-vectors.
//!
//! Autograd through `broadcast_mul` of `(p, k, 1, d)` by `(p, 1, k, d)`
//! reduces over broadcast axes in its backward, which candle does with a
//! slow strided reduction (0.3 s against a few ms forward on a REDA batch
//! of 6,000 pairs); here
//! each row's gradient is a direct sum over its k products.

use std::ops::AddAssign;

use candle_core::{CpuStorage, CustomOp2, Layout, Result, Shape, Tensor, WithDType};
use num_traits::Float;
use rayon::prelude::*;

use crate::slot_ops::{contiguous, flat, float_grads};

/// `out[(x k + n) k + l] = a[x, n] * b[x, l]` for rows `a[x]`, `b[x]` of
/// `k` sub-vectors of width `d`: `a`, `b` are `(p, k d)` and the result
/// is `(p k², d)`.
pub fn pair_products(a: &Tensor, b: &Tensor, k: usize) -> Result<Tensor> {
    a.contiguous()?
        .apply_op2(&b.contiguous()?, PairProducts { k })
}

/// The op behind [`pair_products`].
struct PairProducts {
    k: usize,
}

impl PairProducts {
    fn forward<T: WithDType + Float + Send + Sync>(&self, a: &[T], b: &[T], d: usize) -> Vec<T> {
        let k = self.k;
        let row = k * d;
        let mut out = vec![T::zero(); a.len() * k];
        out.par_chunks_mut(k * k * d)
            .enumerate()
            .for_each(|(x, o)| {
                let (ax, bx) = (&a[x * row..(x + 1) * row], &b[x * row..(x + 1) * row]);
                for n in 0..k {
                    for l in 0..k {
                        let dst = &mut o[(n * k + l) * d..(n * k + l + 1) * d];
                        let (an, bl) = (&ax[n * d..(n + 1) * d], &bx[l * d..(l + 1) * d]);
                        for ((o, &u), &v) in dst.iter_mut().zip(an).zip(bl) {
                            *o = u * v;
                        }
                    }
                }
            });
        out
    }

    fn backward<T: WithDType + Float + AddAssign + Send + Sync>(
        &self,
        a: &[T],
        b: &[T],
        g: &[T],
        d: usize,
    ) -> (Vec<T>, Vec<T>) {
        let k = self.k;
        let row = k * d;
        let mut da = vec![T::zero(); a.len()];
        let mut db = vec![T::zero(); b.len()];
        da.par_chunks_mut(row)
            .zip(db.par_chunks_mut(row))
            .enumerate()
            .for_each(|(x, (dax, dbx))| {
                let (ax, bx) = (&a[x * row..(x + 1) * row], &b[x * row..(x + 1) * row]);
                let gx = &g[x * k * row..(x + 1) * k * row];
                for n in 0..k {
                    for l in 0..k {
                        let gv = &gx[(n * k + l) * d..(n * k + l + 1) * d];
                        let (an, bl) = (&ax[n * d..(n + 1) * d], &bx[l * d..(l + 1) * d]);
                        for ((o, &gg), &v) in dax[n * d..(n + 1) * d].iter_mut().zip(gv).zip(bl) {
                            *o += gg * v;
                        }
                        for ((o, &gg), &u) in dbx[l * d..(l + 1) * d].iter_mut().zip(gv).zip(an) {
                            *o += gg * u;
                        }
                    }
                }
            });
        (da, db)
    }
}

impl CustomOp2 for PairProducts {
    fn name(&self) -> &'static str {
        "pair-products"
    }

    fn cpu_fwd(
        &self,
        s1: &CpuStorage,
        l1: &Layout,
        s2: &CpuStorage,
        l2: &Layout,
    ) -> Result<(CpuStorage, Shape)> {
        let (p, w) = l1.shape().dims2()?;
        let k = self.k;
        if l2.shape().dims2()? != (p, w) || k == 0 || w % k != 0 {
            candle_core::bail!(
                "pair products: shapes {:?} and {:?} with k = {k}",
                l1.shape(),
                l2.shape()
            );
        }
        let d = w / k;
        let storage = match (s1, s2) {
            (CpuStorage::F32(_), CpuStorage::F32(_)) => CpuStorage::F32(self.forward(
                contiguous::<f32>(s1, l1)?,
                contiguous::<f32>(s2, l2)?,
                d,
            )),
            (CpuStorage::F64(_), CpuStorage::F64(_)) => CpuStorage::F64(self.forward(
                contiguous::<f64>(s1, l1)?,
                contiguous::<f64>(s2, l2)?,
                d,
            )),
            _ => candle_core::bail!("pair products support f32 and f64 of one type"),
        };
        Ok((storage, Shape::from((p * k * k, d))))
    }

    fn bwd(
        &self,
        a: &Tensor,
        b: &Tensor,
        _res: &Tensor,
        grad: &Tensor,
    ) -> Result<(Option<Tensor>, Option<Tensor>)> {
        let d = a.dims2()?.1 / self.k;
        float_grads!(a, a, b, |T| self.backward::<T>(
            &flat(a)?,
            &flat(b)?,
            &flat(grad)?,
            d
        ))
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::gradcheck::max_gradient_error;
    use crate::init::Rng;
    use candle_core::Device;

    fn t(v: &[f64], shape: &[usize]) -> Tensor {
        Tensor::from_vec(v.to_vec(), shape, &Device::Cpu).unwrap()
    }

    #[test]
    fn products_by_hand() {
        // One row, k = 2, d = 1: a = (2, 3), b = (5, 7).
        let v = pair_products(&t(&[2.0, 3.0], &[1, 2]), &t(&[5.0, 7.0], &[1, 2]), 2).unwrap();
        assert_eq!(v.dims(), &[4, 1]);
        assert_eq!(
            v.flatten_all().unwrap().to_vec1::<f64>().unwrap(),
            vec![10.0, 14.0, 15.0, 21.0]
        );
    }

    #[test]
    fn matches_broadcasting_and_its_gradients() {
        let mut rng = Rng::new(4);
        let (p, k, d) = (3, 3, 4);
        let a = t(&rng.normal(p * k * d, 1.0), &[p, k * d]);
        let b = t(&rng.normal(p * k * d, 1.0), &[p, k * d]);
        let fused = pair_products(&a, &b, k).unwrap();
        let plain = a
            .reshape((p, k, 1, d))
            .unwrap()
            .broadcast_mul(&b.reshape((p, 1, k, d)).unwrap())
            .unwrap()
            .reshape((p * k * k, d))
            .unwrap();
        let diff = (fused - plain).unwrap().abs().unwrap().max_all().unwrap();
        assert!(diff.to_scalar::<f64>().unwrap() < 1e-12);
        let w = t(&rng.normal(p * k * k * d, 1.0), &[p * k * k, d]);
        let err = max_gradient_error(&rng.normal(p * k * d, 1.0), &[p, k * d], |x| {
            (pair_products(x, &b, k)? * &w)?.sum_all()?.sqr()
        })
        .unwrap();
        assert!(err < 1e-5, "w.r.t. a: {err}");
        let err = max_gradient_error(&rng.normal(p * k * d, 1.0), &[p, k * d], |x| {
            (pair_products(&a, x, k)? * &w)?.sum_all()?.sqr()
        })
        .unwrap();
        assert!(err < 1e-5, "w.r.t. b: {err}");
        // The same tensor on both sides (a pair of an item with itself).
        let err = max_gradient_error(&rng.normal(p * k * d, 1.0), &[p, k * d], |x| {
            (pair_products(x, x, k)? * &w)?.sum_all()?.sqr()
        })
        .unwrap();
        assert!(err < 1e-5, "w.r.t. both: {err}");
    }

    #[test]
    fn bad_shapes_are_errors() {
        let a = t(&[1.0; 6], &[1, 6]);
        assert!(pair_products(&a, &t(&[1.0; 4], &[1, 4]), 2).is_err());
        assert!(pair_products(&a, &a, 4).is_err());
    }
}
