//! DURation's losses on the unified space (duration.txt section 4):
//! the distributional variance of the item kinds' mapped rows under an RBF
//! kernel (alignment, eq. 1-4) and the distance between the raw and the
//! mapped rows' centred covariances (topology, eq. 5-6).

use std::sync::Mutex;

use candle_core::{bail, CpuStorage, CustomOp2, DType, Layout, Result, Shape, Tensor, D};
use num_traits::Float;

use rayon::prelude::*;

use crate::dense_mlp::gemm;
use crate::slot_ops::{contiguous, flat};

/// `exp(-gamma ||a_k - b_l||^2)` for every row `a_k` of `a` `[n, d]` and
/// `b_l` of `b` `[m, d]`: `[n, m]`.
pub fn rbf_gram(a: &Tensor, b: &Tensor, gamma: f64) -> Result<Tensor> {
    (squared_distances(a, b)? * -gamma)?.exp()
}

/// `||a_k - b_l||^2` for every row of `a` `[n, d]` and `b` `[m, d]`:
/// `[n, m]`, never negative.
fn squared_distances(a: &Tensor, b: &Tensor) -> Result<Tensor> {
    let aa = a.sqr()?.sum_keepdim(1)?; // [n, 1]
    let bb = b.sqr()?.sum_keepdim(1)?.t()?; // [1, m]
    let ab = a.matmul(&b.t()?)?;
    // Rounding can make a distance slightly negative; a kernel value above
    // one would break the variance's sign.
    (aa.broadcast_add(&bb)? - (ab * 2.0)?)?.relu()
}

/// `sum over k, l of exp(-gamma ||x_k - y_l||^2)` for the rows of `x`
/// `[n, d]` and `y` `[m, d]`, as one op: the forward is one product
/// `X Y^T` and one pass, the backward two products,
/// `dX = -2 gamma g (diag(K 1) X - K Y)` and
/// `dY = -2 gamma g (diag(K^T 1) Y - K^T X)`, where the composed
/// [`rbf_gram`] and its sum make about ten `n x m` passes each way.
pub fn rbf_kernel_sum(x: &Tensor, y: &Tensor, gamma: f64) -> Result<Tensor> {
    let (_, d) = x.dims2()?;
    let (_, e) = y.dims2()?;
    if d != e {
        bail!("rbf kernel sum of {d}- and {e}-wide rows");
    }
    if !(gamma.is_finite() && gamma >= 0.0) {
        bail!("rbf kernel sum: gamma {gamma} is not a finite number >= 0");
    }
    x.contiguous()?.apply_op2(
        &y.contiguous()?,
        RbfKernelSum {
            gamma,
            kernel: Mutex::new(Kernel::F32(Vec::new())),
        },
    )
}

struct RbfKernelSum {
    gamma: f64,
    /// The forward's `n x m` kernel values, for the backward.
    kernel: Mutex<Kernel>,
}

/// Kernel values in the inputs' type.
enum Kernel {
    F32(Vec<f32>),
    F64(Vec<f64>),
}

fn kernel_lock() -> candle_core::Error {
    candle_core::Error::Msg("rbf kernel sum: a poisoned lock".into())
}

/// What the kernel op needs of an element type.
trait KernelFloat: Float + ndarray::LinalgScalar + Send + Sync {
    fn store(k: Vec<Self>) -> Kernel;
    fn stored(k: &Kernel) -> Option<&[Self]>;
}

impl KernelFloat for f32 {
    fn store(k: Vec<f32>) -> Kernel {
        Kernel::F32(k)
    }
    fn stored(k: &Kernel) -> Option<&[f32]> {
        match k {
            Kernel::F32(v) => Some(v),
            Kernel::F64(_) => None,
        }
    }
}

impl KernelFloat for f64 {
    fn store(k: Vec<f64>) -> Kernel {
        Kernel::F64(k)
    }
    fn stored(k: &Kernel) -> Option<&[f64]> {
        match k {
            Kernel::F64(v) => Some(v),
            Kernel::F32(_) => None,
        }
    }
}

impl RbfKernelSum {
    fn forward<T: KernelFloat>(&self, x: &[T], y: &[T], d: usize) -> Result<(T, Vec<T>)> {
        let d = d.max(1);
        let (n, m) = (x.len() / d, y.len() / d);
        let norms = |v: &[T]| -> Vec<T> {
            v.chunks(d)
                .map(|r| r.iter().fold(T::zero(), |a, &b| a + b * b))
                .collect()
        };
        let (xx, yy) = (norms(x), norms(y));
        let mut k = vec![T::zero(); n * m];
        gemm(x, false, y, true, &mut k, (n, d, m), T::zero())?;
        let two = T::one() + T::one();
        let g = T::from(-self.gamma).unwrap_or_else(T::zero);
        let sums: Vec<f64> = k
            .par_chunks_mut(m.max(1))
            .zip(xx.par_iter())
            .map(|(row, &a)| {
                let mut s = 0f64;
                for (v, &b) in row.iter_mut().zip(&yy) {
                    // Rounding can make a distance slightly negative.
                    let d2 = (a + b - two * *v).max(T::zero());
                    *v = (g * d2).exp();
                    s += v.to_f64().unwrap_or(0.0);
                }
                s
            })
            .collect();
        let sum = sums.iter().sum::<f64>();
        Ok((T::from(sum).unwrap_or_else(T::zero), k))
    }

    /// `scale (diag(K 1) A - K B)` for rows `a` `[n, d]` and `b` `[m, d]`,
    /// with the kernel `k` stored `n x m`, or `m x n` and read transposed
    /// when `t`.
    fn side<T: KernelFloat>(
        a: &[T],
        b: &[T],
        k: &[T],
        t: bool,
        (n, m, d): (usize, usize, usize),
        scale: f64,
    ) -> Result<Vec<T>> {
        let mut out = vec![T::zero(); n * d];
        gemm(k, t, b, false, &mut out, (n, m, d), T::zero())?;
        let sums: Vec<T> = if t {
            let mut s = vec![T::zero(); n];
            for row in k.chunks(n.max(1)) {
                for (acc, &v) in s.iter_mut().zip(row) {
                    *acc = *acc + v;
                }
            }
            s
        } else {
            k.chunks(m.max(1))
                .map(|row| row.iter().fold(T::zero(), |acc, &v| acc + v))
                .collect()
        };
        let s = T::from(scale).unwrap_or_else(T::zero);
        out.par_chunks_mut(d.max(1))
            .zip(a.par_chunks(d.max(1)))
            .zip(sums.par_iter())
            .for_each(|((o, a), &r)| {
                for (o, &a) in o.iter_mut().zip(a) {
                    *o = s * (r * a - *o);
                }
            });
        Ok(out)
    }

    fn grads<T: KernelFloat + candle_core::WithDType>(
        &self,
        x: &Tensor,
        y: &Tensor,
        scale: f64,
    ) -> Result<(Tensor, Tensor)> {
        let (n, d) = x.dims2()?;
        let (m, _) = y.dims2()?;
        let lock = self.kernel.lock().map_err(|_| kernel_lock())?;
        let k = T::stored(&lock).ok_or_else(|| {
            candle_core::Error::Msg("rbf kernel sum: kernel of another type".into())
        })?;
        let (xs, ys) = (flat::<T>(x)?, flat::<T>(y)?);
        Ok((
            Tensor::from_vec(
                Self::side(&xs, &ys, k, false, (n, m, d), scale)?,
                (n, d),
                x.device(),
            )?,
            Tensor::from_vec(
                Self::side(&ys, &xs, k, true, (m, n, d), scale)?,
                (m, d),
                y.device(),
            )?,
        ))
    }
}

impl CustomOp2 for RbfKernelSum {
    fn name(&self) -> &'static str {
        "rbf-kernel-sum"
    }

    fn cpu_fwd(
        &self,
        s1: &CpuStorage,
        l1: &Layout,
        s2: &CpuStorage,
        l2: &Layout,
    ) -> Result<(CpuStorage, Shape)> {
        let (_, d) = l1.shape().dims2()?;
        let (storage, k) = match (s1, s2) {
            (CpuStorage::F32(_), CpuStorage::F32(_)) => {
                let (v, k) =
                    self.forward(contiguous::<f32>(s1, l1)?, contiguous::<f32>(s2, l2)?, d)?;
                (CpuStorage::F32(vec![v]), f32::store(k))
            }
            (CpuStorage::F64(_), CpuStorage::F64(_)) => {
                let (v, k) =
                    self.forward(contiguous::<f64>(s1, l1)?, contiguous::<f64>(s2, l2)?, d)?;
                (CpuStorage::F64(vec![v]), f64::store(k))
            }
            _ => bail!("rbf kernel sum supports f32 and f64, both the same"),
        };
        *self.kernel.lock().map_err(|_| kernel_lock())? = k;
        Ok((storage, Shape::from(())))
    }

    fn bwd(
        &self,
        x: &Tensor,
        y: &Tensor,
        _res: &Tensor,
        grad: &Tensor,
    ) -> Result<(Option<Tensor>, Option<Tensor>)> {
        let g = grad.to_dtype(DType::F64)?.to_scalar::<f64>()?;
        let scale = -2.0 * self.gamma * g;
        let (dx, dy) = if x.dtype() == DType::F64 {
            self.grads::<f64>(x, y, scale)?
        } else {
            self.grads::<f32>(x, y, scale)?
        };
        Ok((Some(dx), Some(dy)))
    }
}

/// The distributional variance of `P` sample sets (eq. 2 with eq. 3's
/// empirical Gram matrix), which eq. 4 writes as the alignment loss `A`:
/// `1/P sum_i G_ii - 1/P^2 sum_ij G_ij`, `G_ij` the mean RBF kernel value
/// between the rows of set `i` and set `j`. Zero when every set holds the
/// same rows; needs at least two sets, each with rows.
pub fn distributional_variance(sets: &[&Tensor], gamma: f64) -> Result<Tensor> {
    let p = sets.len();
    if p < 2 {
        bail!("distributional variance of {p} sets: needs two or more");
    }
    let sizes: Vec<usize> = sets.iter().map(|s| s.dim(0)).collect::<Result<_>>()?;
    if sizes.contains(&0) {
        bail!("distributional variance: a set with no rows ({sizes:?})");
    }
    // Eq. 4's A_ijkl factors are constant within a pair of sets: sum each
    // pair's kernel block once (the block (j, i) is the transpose of (i, j)).
    let pf = p as f64;
    let mut total: Option<Tensor> = None;
    for i in 0..p {
        for j in i..p {
            let c = if i == j {
                (pf - 1.0) / (pf * pf * (sizes[i] * sizes[i]) as f64)
            } else {
                -2.0 / (pf * pf * (sizes[i] * sizes[j]) as f64)
            };
            let block = (rbf_kernel_sum(sets[i], sets[j], gamma)? * c)?;
            total = Some(match total {
                Some(t) => (t + block)?,
                None => block,
            });
        }
    }
    total.ok_or_else(|| candle_core::Error::Msg("no sets".into()))
}

/// Eq. 5: the rows' covariance matrix over their features, `[N, N]`:
/// each row centred on its own mean, `1/(d-1) D_c D_c^T`.
pub fn row_covariance(rows: &Tensor) -> Result<Tensor> {
    let d = rows.dim(1)?;
    if d < 2 {
        bail!("row covariance of {d}-wide rows: needs two or more features");
    }
    let centred = rows.broadcast_sub(&rows.mean_keepdim(D::Minus1)?)?;
    centred.matmul(&centred.t()?)? / (d - 1) as f64
}

/// Eq. 6's term for one item kind: `1/(4N) ||C_R - C_X||_F^2` between the
/// covariances of its raw rows `raw` `[N, d]` and its mapped rows `mapped`
/// `[N, d']` (the same items, in the same order). The raw rows are data:
/// no gradient flows into them.
///
/// Computed without any `N x N` matrix: with centred rows `R` and `X`,
/// `||C_R - C_X||^2 = ||R^T R||^2 / (d-1)^2 - 2 ||R^T X||^2 / ((d-1)(d'-1))
/// + ||X^T X||^2 / (d'-1)^2` (`||A A^T||_F = ||A^T A||_F`), so the cost is
/// `N d d'` instead of `N^2 (d + d')`.
pub fn topology(raw: &Tensor, mapped: &Tensor) -> Result<Tensor> {
    let (n, m) = (raw.dim(0)?, mapped.dim(0)?);
    if n != m || n == 0 {
        bail!("topology loss: {n} raw rows against {m} mapped rows");
    }
    let (dr, dx) = (raw.dim(1)?, mapped.dim(1)?);
    if dr < 2 || dx < 2 {
        bail!("topology loss of {dr}- and {dx}-wide rows: needs two or more features");
    }
    let centre = |t: &Tensor| t.broadcast_sub(&t.mean_keepdim(D::Minus1)?);
    let r = centre(&raw.detach().to_dtype(mapped.dtype())?)?;
    let x = centre(mapped)?;
    let (kr, kx) = ((dr - 1) as f64, (dx - 1) as f64);
    let rr = r.t()?.matmul(&r)?.sqr()?.sum_all()?.detach() / (kr * kr);
    let rx = (r.t()?.matmul(&x)?.sqr()?.sum_all()? * (2.0 / (kr * kx)))?;
    let xx = x.t()?.matmul(&x)?.sqr()?.sum_all()? / (kx * kx);
    ((rr? - rx)? + xx?)? / (4 * n) as f64
}

/// The RBF bandwidth that makes `gamma ||x - y||^2` one at the median
/// squared distance between the rows of `x` (the median heuristic), a
/// value, not a tensor on the tape.
pub fn median_gamma(x: &Tensor) -> Result<f64> {
    let x = x.detach().to_dtype(DType::F64)?;
    let d2 = squared_distances(&x, &x)?;
    let n = x.dim(0)?;
    let rows: Vec<Vec<f64>> = d2.to_vec2()?;
    let mut off: Vec<f64> = (0..n)
        .flat_map(|k| ((k + 1)..n).map(move |l| (k, l)))
        .map(|(k, l)| rows[k][l])
        .collect();
    if off.is_empty() {
        bail!("median bandwidth of {n} rows: needs two or more");
    }
    let mid = off.len() / 2;
    let (_, median, _) = off.select_nth_unstable_by(mid, f64::total_cmp);
    Ok(if *median > 0.0 { 1.0 / *median } else { 1.0 })
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::gradcheck::max_gradient_error;
    use candle_core::Device;

    fn m(rows: &[&[f64]]) -> Tensor {
        let d = rows[0].len();
        let flat: Vec<f64> = rows.iter().flat_map(|r| r.iter().copied()).collect();
        Tensor::from_vec(flat, (rows.len(), d), &Device::Cpu).unwrap()
    }

    fn scalar(t: Tensor) -> f64 {
        t.to_scalar::<f64>().unwrap()
    }

    #[test]
    fn two_single_points_by_hand() {
        // G_11 = G_22 = 1, G_12 = e^{-gamma |x-y|^2}:
        // V = (1 + 1)/2 - (1 + 1 + 2 G_12)/4 = (1 - G_12)/2.
        let (x, y) = (m(&[&[0.0, 1.0]]), m(&[&[2.0, 1.0]]));
        let v = scalar(distributional_variance(&[&x, &y], 0.25).unwrap());
        assert!((v - (1.0 - (-1f64).exp()) / 2.0).abs() < 1e-12, "{v}");
    }

    #[test]
    fn equation_4_is_equation_2() {
        // Three sets of different sizes: eq. 4's weighted sum against the
        // Gram matrix of set means written out.
        let sets = [
            m(&[&[0.0, 1.0], &[1.0, 0.5]]),
            m(&[&[2.0, -1.0]]),
            m(&[&[0.3, 0.3], &[-1.0, 2.0], &[0.5, 0.0]]),
        ];
        let refs: Vec<&Tensor> = sets.iter().collect();
        let gamma = 0.7;
        let got = scalar(distributional_variance(&refs, gamma).unwrap());
        let g = |i: usize, j: usize| {
            scalar(
                rbf_gram(&sets[i], &sets[j], gamma)
                    .unwrap()
                    .mean_all()
                    .unwrap(),
            )
        };
        let p = 3.0;
        let mut trace = 0.0;
        let mut all = 0.0;
        for i in 0..3 {
            trace += g(i, i);
            for j in 0..3 {
                all += g(i, j);
            }
        }
        let want = trace / p - all / (p * p);
        assert!((got - want).abs() < 1e-12, "{got} {want}");
        // One kernel value by hand.
        let k = rbf_gram(&sets[0], &sets[1], gamma)
            .unwrap()
            .to_vec2::<f64>()
            .unwrap();
        assert!((k[0][0] - (-gamma * 8.0).exp()).abs() < 1e-12);
    }

    #[test]
    fn variance_is_zero_for_identical_sets_and_grows_apart() {
        let a = m(&[&[0.0, 1.0], &[1.0, 0.5], &[0.2, 0.2]]);
        let v = scalar(distributional_variance(&[&a, &a], 1.0).unwrap());
        assert!(v.abs() < 1e-12, "{v}");
        let near = (&a + 0.1).unwrap();
        let far = (&a + 3.0).unwrap();
        let vn = scalar(distributional_variance(&[&a, &near], 1.0).unwrap());
        let vf = scalar(distributional_variance(&[&a, &far], 1.0).unwrap());
        assert!(0.0 < vn && vn < vf, "{vn} {vf}");
    }

    #[test]
    fn bad_inputs_are_errors() {
        let a = m(&[&[0.0, 1.0]]);
        assert!(distributional_variance(&[&a], 1.0).is_err());
        let empty = Tensor::zeros((0, 2), DType::F64, &Device::Cpu).unwrap();
        assert!(distributional_variance(&[&a, &empty], 1.0).is_err());
        let two = m(&[&[0.0, 1.0], &[1.0, 1.0]]);
        assert!(topology(&a, &two).is_err());
        assert!(row_covariance(&m(&[&[1.0], &[2.0]])).is_err());
        assert!(median_gamma(&a).is_err());
    }

    #[test]
    fn topology_by_hand() {
        // Raw rows [1,2,3] and [0,0,3]: centred [-1,0,1] and [-1,-1,2],
        // C_R = 1/2 [[2, 3], [3, 6]]. Mapped rows [1,0] and [0,1]: centred
        // [.5,-.5] and [-.5,.5], C_X = [[.5,-.5],[-.5,.5]].
        let raw = m(&[&[1.0, 2.0, 3.0], &[0.0, 0.0, 3.0]]);
        let mapped = m(&[&[1.0, 0.0], &[0.0, 1.0]]);
        let c = row_covariance(&raw).unwrap().to_vec2::<f64>().unwrap();
        assert_eq!(c, vec![vec![1.0, 1.5], vec![1.5, 3.0]]);
        // C_R - C_X = [[.5, 2], [2, 2.5]]: squares 0.25 + 4 + 4 + 6.25.
        let t = scalar(topology(&raw, &mapped).unwrap());
        assert!((t - 14.5 / 8.0).abs() < 1e-12, "{t}");
        // The product form against the printed one on wider rows.
        let raw = m(&[
            &[1.0, 2.0, 3.0, 0.5],
            &[0.0, 0.0, 3.0, 1.0],
            &[2.0, -1.0, 0.0, 0.0],
        ]);
        let mapped = m(&[&[0.3, -0.2], &[1.1, 0.4], &[-0.6, 0.9]]);
        let direct = (row_covariance(&raw).unwrap() - row_covariance(&mapped).unwrap())
            .unwrap()
            .sqr()
            .unwrap()
            .sum_all()
            .unwrap()
            .to_scalar::<f64>()
            .unwrap()
            / 12.0;
        let t = scalar(topology(&raw, &mapped).unwrap());
        assert!((t - direct).abs() < 1e-12, "{t} {direct}");
        // The same rows give zero whatever their width, once centred alike.
        let shifted = (&raw + 5.0).unwrap();
        assert!(scalar(topology(&raw, &shifted).unwrap()).abs() < 1e-12);
    }

    #[test]
    fn gradients_match_finite_differences() {
        let other = m(&[&[0.5, -0.2, 0.1], &[1.0, 0.3, -0.7]]);
        let x = [0.1, 0.4, -0.3, 0.9, -0.5, 0.2, 0.0, 0.6, 0.8];
        let e = max_gradient_error(&x, &[3, 3], |x| distributional_variance(&[x, &other], 0.8))
            .unwrap();
        assert!(e < 1e-6, "{e}");
        let raw = m(&[
            &[1.0, 2.0, 3.0, 0.5],
            &[0.0, 0.0, 3.0, 1.0],
            &[2.0, -1.0, 0.0, 0.0],
        ]);
        let e = max_gradient_error(&x, &[3, 3], |x| topology(&raw, x)).unwrap();
        assert!(e < 1e-6, "{e}");
        // The raw rows are data: nothing flows back into them.
        let var = candle_core::Var::from_tensor(&raw).unwrap();
        let mapped = m(&[&[1.0, 0.0], &[0.0, 1.0], &[0.5, 0.5]]);
        let grads = topology(var.as_tensor(), &mapped)
            .unwrap()
            .backward()
            .unwrap();
        assert!(grads.get(var.as_tensor()).is_none());
    }

    #[test]
    fn the_fused_kernel_sum_is_the_composed_one() {
        let x = m(&[&[0.1, 0.4, -0.3], &[0.9, -0.5, 0.2], &[0.0, 0.6, 0.8]]);
        let y = m(&[&[0.5, -0.2, 0.1], &[1.0, 0.3, -0.7]]);
        let fused = scalar(rbf_kernel_sum(&x, &y, 0.8).unwrap());
        let composed = scalar(rbf_gram(&x, &y, 0.8).unwrap().sum_all().unwrap());
        assert!((fused - composed).abs() < 1e-12, "{fused} {composed}");
        let xs = [0.1, 0.4, -0.3, 0.9, -0.5, 0.2, 0.0, 0.6, 0.8];
        // Against y, and against itself (both arguments the same tensor).
        let e = max_gradient_error(&xs, &[3, 3], |t| rbf_kernel_sum(t, &y, 0.8)).unwrap();
        assert!(e < 1e-6, "{e}");
        let e = max_gradient_error(&xs, &[3, 3], |t| rbf_kernel_sum(t, t, 0.8)).unwrap();
        assert!(e < 1e-6, "{e}");
        let ys = [0.5, -0.2, 0.1, 1.0, 0.3, -0.7];
        let e = max_gradient_error(&ys, &[2, 3], |t| rbf_kernel_sum(&x, t, 0.8)).unwrap();
        assert!(e < 1e-6, "{e}");
        let x32 = x.to_dtype(DType::F32).unwrap();
        let y32 = y.to_dtype(DType::F32).unwrap();
        let f32v = rbf_kernel_sum(&x32, &y32, 0.8)
            .unwrap()
            .to_scalar::<f32>()
            .unwrap();
        assert!((f32v as f64 - composed).abs() < 1e-5);
        assert!(rbf_kernel_sum(&x, &m(&[&[1.0, 2.0]]), 0.8).is_err());
        assert!(rbf_kernel_sum(&x, &y, f64::NAN).is_err());
    }

    #[test]
    fn median_bandwidth() {
        // Squared distances 1, 4, 9 (the median 4).
        let x = m(&[&[0.0], &[1.0], &[3.0]]);
        assert!((median_gamma(&x).unwrap() - 0.25).abs() < 1e-12);
    }
}
