//! DURation's losses on the unified space (duration.txt section 4):
//! the distributional variance of the item kinds' mapped rows under an RBF
//! kernel (alignment, eq. 1-4) and the distance between the raw and the
//! mapped rows' centred covariances (topology, eq. 5-6).

use candle_core::{bail, DType, Result, Tensor, D};

/// `exp(-gamma ||a_k - b_l||^2)` for every row `a_k` of `a` `[n, d]` and
/// `b_l` of `b` `[m, d]`: `[n, m]`.
pub fn rbf_gram(a: &Tensor, b: &Tensor, gamma: f64) -> Result<Tensor> {
    let aa = a.sqr()?.sum_keepdim(1)?; // [n, 1]
    let bb = b.sqr()?.sum_keepdim(1)?.t()?; // [1, m]
    let ab = a.matmul(&b.t()?)?;
    // Rounding can make a distance slightly negative; a kernel value above
    // one would break the variance's sign.
    let d2 = (aa.broadcast_add(&bb)? - (ab * 2.0)?)?.relu()?;
    (d2 * -gamma)?.exp()
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
            let block = (rbf_gram(sets[i], sets[j], gamma)?.sum_all()? * c)?;
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
    let aa = x.sqr()?.sum_keepdim(1)?;
    let d2 = (aa.broadcast_add(&aa.t()?)? - (x.matmul(&x.t()?)? * 2.0)?)?.relu()?;
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
    fn median_bandwidth() {
        // Squared distances 1, 4, 9 (the median 4).
        let x = m(&[&[0.0], &[1.0], &[3.0]]);
        assert!((median_gamma(&x).unwrap() - 0.25).abs() < 1e-12);
    }
}
