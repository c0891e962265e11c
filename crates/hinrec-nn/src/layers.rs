//! Layers: linear, MLP, masked co-attention, translation score.

use candle_core::{DType, Device, Result, Tensor, Var, D};

use crate::bias::{bias_act, Activation};
use crate::dense_mlp::{DenseLayer, DenseMlp};
use crate::init::Rng;
use crate::slot_ops::{
    flat, CoAttentionPool, Slots, SoftmaxWeightedRows, WeightedRows, MAX_PRODUCT,
};

/// `y = x W + b` with `W` of shape `(in, out)`.
#[derive(Debug, Clone)]
pub struct Linear {
    /// Weight, `(in, out)`, Xavier normal.
    pub weight: Var,
    /// Bias, `(1, out)`, zeros.
    pub bias: Var,
}

impl Linear {
    /// A seeded layer.
    pub fn new(
        rng: &mut Rng,
        d_in: usize,
        d_out: usize,
        dtype: DType,
        dev: &Device,
    ) -> Result<Self> {
        Ok(Linear {
            weight: rng.xavier_var(d_in, d_out, dtype, dev)?,
            bias: Var::zeros((1, d_out), dtype, dev)?,
        })
    }

    /// Applies the layer to `(n, in)` rows.
    pub fn forward(&self, x: &Tensor) -> Result<Tensor> {
        self.forward_act(x, Activation::Identity)
    }

    /// `act(x W + b)`, the bias and activation fused ([`bias_act`]).
    pub fn forward_act(&self, x: &Tensor, act: Activation) -> Result<Tensor> {
        bias_act(
            &x.matmul(self.weight.as_tensor())?,
            self.bias.as_tensor(),
            act,
        )
    }

    /// Its variables.
    pub fn vars(&self) -> Vec<Var> {
        vec![self.weight.clone(), self.bias.clone()]
    }

    /// Its current weight and bias as a [`DenseLayer`] (f32), for steps
    /// computed outside candle.
    pub fn to_dense(&self) -> Result<DenseLayer> {
        let (d_in, d_out) = self.weight.dims2()?;
        let flat =
            |t: &Tensor| -> Result<Vec<f32>> { t.to_dtype(DType::F32)?.flatten_all()?.to_vec1() };
        Ok(DenseLayer {
            d_in,
            d_out,
            weight: flat(self.weight.as_tensor())?,
            bias: flat(self.bias.as_tensor())?,
        })
    }

    /// Its variables named `{prefix}.weight` and `{prefix}.bias`.
    pub fn named_vars(&self, prefix: &str) -> Vec<(String, Var)> {
        vec![
            (format!("{prefix}.weight"), self.weight.clone()),
            (format!("{prefix}.bias"), self.bias.clone()),
        ]
    }
}

/// Linear layers with ReLU between them (none after the last).
#[derive(Debug, Clone)]
pub struct Mlp {
    /// The layers.
    pub layers: Vec<Linear>,
}

impl Mlp {
    /// An MLP with the given widths, e.g. `[256, 128, 128, 128]`.
    pub fn new(rng: &mut Rng, dims: &[usize], dtype: DType, dev: &Device) -> Result<Self> {
        let layers = dims
            .windows(2)
            .map(|w| Linear::new(rng, w[0], w[1], dtype, dev))
            .collect::<Result<_>>()?;
        Ok(Mlp { layers })
    }

    /// Applies it to `(n, in)` rows.
    pub fn forward(&self, x: &Tensor) -> Result<Tensor> {
        let mut h = x.clone();
        for (k, l) in self.layers.iter().enumerate() {
            let act = if k + 1 < self.layers.len() {
                Activation::Relu
            } else {
                Activation::Identity
            };
            h = l.forward_act(&h, act)?;
        }
        Ok(h)
    }

    /// Its variables.
    pub fn vars(&self) -> Vec<Var> {
        self.layers.iter().flat_map(Linear::vars).collect()
    }

    /// Its current weights as a [`DenseMlp`] (f32), optionally ending in
    /// row-wise L2 normalisation; its gradients come back in the order
    /// of [`Mlp::vars`].
    pub fn to_dense(&self, normalize: bool) -> Result<DenseMlp> {
        let layers = self
            .layers
            .iter()
            .map(Linear::to_dense)
            .collect::<Result<_>>()?;
        Ok(DenseMlp { layers, normalize })
    }

    /// Its variables named `{prefix}.{layer}.weight` and `.bias`.
    pub fn named_vars(&self, prefix: &str) -> Vec<(String, Var)> {
        self.layers
            .iter()
            .enumerate()
            .flat_map(|(k, l)| l.named_vars(&format!("{prefix}.{k}")))
            .collect()
    }
}

/// Large negative bias that removes masked slots from a max or a softmax.
const MASKED: f64 = 1e9;

/// The per-node tables co-attention reads through neighbour slots:
///
/// - `fa`: `(n_x, h)` rows of `F(X) A`, one per first-side node;
/// - `g`: `(n_y, h)` rows of `G(Y)`;
/// - `x`, `y`: `(n_x, d)` and `(n_y, d)` raw embeddings, the values the
///   attention weights average.
///
/// Scoring many batches against the same tables (evaluation) should call
/// [`CoAttentionTables::with_product`] once, so `FA G^T` is computed once.
pub struct CoAttentionTables {
    fa: Tensor,
    g: Tensor,
    x: Tensor,
    y: Tensor,
    product: Option<Tensor>,
}

impl CoAttentionTables {
    /// Tables for one batch (or one evaluation).
    pub fn new(fa: Tensor, g: Tensor, x: Tensor, y: Tensor) -> Result<Self> {
        Ok(CoAttentionTables {
            fa: fa.contiguous()?,
            g: g.contiguous()?,
            x: x.contiguous()?,
            y: y.contiguous()?,
            product: None,
        })
    }

    /// Stores `FA G^T` (detached) when it fits in memory, for reuse by
    /// every later [`co_attention`] call on these tables.
    pub fn with_product(mut self) -> Result<Self> {
        let (nx, ny) = (self.fa.dims2()?.0, self.g.dims2()?.0);
        if nx.saturating_mul(ny) <= MAX_PRODUCT {
            self.product = Some(self.product()?);
        }
        Ok(self)
    }

    fn product(&self) -> Result<Tensor> {
        self.fa.detach().matmul(&self.g.detach().t()?)
    }
}

/// Co-attention over two neighbour sets (LGRec eq. 1-3), for `p` pairs
/// whose neighbours are rows of `tables`; `slots` gives for each pair its
/// `k1` and `k2` neighbour rows and which are real (padding is masked).
///
/// `M = FA[slots] G[slots]^T`; a neighbour's importance is the max of its row
/// (column) over the other side's real neighbours ([`CoAttentionPool`]); a
/// softmax over real neighbours turns them into weights (a node without
/// neighbours gets the zero vector), and [`WeightedRows`] averages the raw
/// rows. Returns the two weighted sums, `(p, d)` each.
pub fn co_attention(
    tables: &CoAttentionTables,
    slots: Slots,
    k1: usize,
    k2: usize,
) -> Result<(Tensor, Tensor)> {
    let CoAttentionTables { fa, g, x, y, .. } = tables;
    let p = slots.mask_x.len() / k1.max(1);
    let h = fa.dims2()?.1;
    let (idx_x, idx_y) = (slots.idx_x.clone(), slots.idx_y.clone());
    let (real_x, real_y) = (slots.mask_x.clone(), slots.mask_y.clone());
    let pool = CoAttentionPool::new(slots, p, k1, k2, h);
    // All of FA G^T in one GEMM when that beats the pairs' own dot products.
    let product = match &tables.product {
        Some(m) => m.clone(),
        None if pool.prefers_product(fa.dims2()?.0, g.dims2()?.0) => tables.product()?,
        None => Tensor::zeros(0, fa.dtype(), fa.device())?,
    };
    let scores = fa.apply_op3(g, &product, pool)?;
    let xu = scores
        .narrow(1, 0, k1)?
        .contiguous()?
        .apply_op2(x, SoftmaxWeightedRows::new(idx_x, real_x))?;
    let yv = scores
        .narrow(1, k1, k2)?
        .contiguous()?
        .apply_op2(y, SoftmaxWeightedRows::new(idx_y, real_y))?;
    Ok((xu, yv))
}

/// Softmax over the last axis restricted to `mask == 1`; all-masked rows
/// give zeros.
pub fn masked_softmax(scores: &Tensor, mask: &Tensor) -> Result<Tensor> {
    let s = (scores + ((mask - 1.0)? * MASKED)?)?;
    candle_nn::ops::softmax(&s, D::Minus1)? * mask
}

/// Mean of the rows `table[idx[p, i]]` over real neighbours (`mask`
/// `(p, k)`, 1 for real): the no-attention ablation.
pub fn masked_mean(table: &Tensor, idx: Vec<u32>, mask: &Tensor) -> Result<Tensor> {
    let count = mask.sum_keepdim(D::Minus1)?.clamp(1.0, f64::INFINITY)?;
    let w = mask.broadcast_div(&count)?;
    w.contiguous()?
        .apply_op2(&table.contiguous()?, WeightedRows::new(idx))
}

/// `x` `(n, k, d)` summed over its middle axis, `(n, d)`. candle reduces a
/// middle axis element by element with two divisions each; this is a loop
/// over contiguous rows (HHFAN's eq. 5 and 7 sums were 4 % of a step).
pub fn sum_middle(x: &Tensor) -> Result<Tensor> {
    x.dims3()?;
    x.contiguous()?.apply_op1(MiddleSum)
}

/// `y[n] = sum_a w[n, a] x[n, a, :]` for `w` `(n, k)` and `x` `(n, k, d)`:
/// [`sum_middle`] of `x` weighted, without the `(n, k, d)` product
/// candle's broadcast would build forward and backward.
pub fn weighted_sum_middle(w: &Tensor, x: &Tensor) -> Result<Tensor> {
    let (n, k, _) = x.dims3()?;
    if w.dims() != [n, k] {
        candle_core::bail!(
            "weighted_sum_middle: weights {:?} for rows {:?}",
            w.shape(),
            x.shape()
        );
    }
    w.contiguous()?.apply_op2(&x.contiguous()?, MiddleSum)
}

/// [`sum_middle`] as a one-input op, [`weighted_sum_middle`] as a
/// two-input one.
struct MiddleSum;

impl MiddleSum {
    /// `sum_a w[n, a] x[n, a, :]`, every weight 1 without `w`.
    fn sum<T: candle_core::WithDType + std::ops::AddAssign>(
        w: Option<&[T]>,
        x: &[T],
        (n, k, d): (usize, usize, usize),
    ) -> Vec<T> {
        let mut out = vec![T::zero(); n * d];
        for (r, (o, row)) in out.chunks_mut(d).zip(x.chunks(k * d)).enumerate() {
            for (a, part) in row.chunks(d).enumerate() {
                match w {
                    Some(w) => {
                        let wv = w[r * k + a];
                        o.iter_mut().zip(part).for_each(|(s, &v)| *s += wv * v);
                    }
                    None => o.iter_mut().zip(part).for_each(|(s, &v)| *s += v),
                }
            }
        }
        out
    }

    /// The op's output from contiguous storages, `w` optional.
    fn run(
        w: Option<(&candle_core::CpuStorage, &candle_core::Layout)>,
        (xs, xl): (&candle_core::CpuStorage, &candle_core::Layout),
    ) -> Result<(candle_core::CpuStorage, candle_core::Shape)> {
        use candle_core::CpuStorage;
        let dims = xl.shape().dims3()?;
        let range = |l: &candle_core::Layout| {
            l.contiguous_offsets().ok_or_else(|| {
                candle_core::Error::Msg("middle-axis sums need contiguous inputs".into())
            })
        };
        let (a, b) = range(xl)?;
        let wr = w.map(|(ws, wl)| range(wl).map(|r| (ws, r))).transpose()?;
        let out = match (xs, wr) {
            (CpuStorage::F32(x), None) => CpuStorage::F32(Self::sum(None, &x[a..b], dims)),
            (CpuStorage::F64(x), None) => CpuStorage::F64(Self::sum(None, &x[a..b], dims)),
            (CpuStorage::F32(x), Some((CpuStorage::F32(w), (c, e)))) => {
                CpuStorage::F32(Self::sum(Some(&w[c..e]), &x[a..b], dims))
            }
            (CpuStorage::F64(x), Some((CpuStorage::F64(w), (c, e)))) => {
                CpuStorage::F64(Self::sum(Some(&w[c..e]), &x[a..b], dims))
            }
            _ => candle_core::bail!("middle-axis sums support f32 and f64 of one type"),
        };
        Ok((out, candle_core::Shape::from((dims.0, dims.2))))
    }

    /// `dw[n, a] = x[n, a] . g[n]` and `dx[n, a] = w[n, a] g[n]`, one pass.
    fn grads<T: candle_core::WithDType + std::ops::AddAssign>(
        w: &Tensor,
        x: &Tensor,
        grad: &Tensor,
    ) -> Result<(Tensor, Tensor)> {
        let (n, k, d) = x.dims3()?;
        let (w, xv, g) = (flat::<T>(w)?, flat::<T>(x)?, flat::<T>(grad)?);
        let mut dw = vec![T::zero(); n * k];
        let mut dx = vec![T::zero(); n * k * d];
        for r in 0..n {
            let gr = &g[r * d..(r + 1) * d];
            for a in 0..k {
                let at = (r * k + a) * d;
                let mut dot = T::zero();
                for ((o, &v), &gv) in dx[at..at + d].iter_mut().zip(&xv[at..at + d]).zip(gr) {
                    dot += v * gv;
                    *o = w[r * k + a] * gv;
                }
                dw[r * k + a] = dot;
            }
        }
        Ok((
            Tensor::from_vec(dw, (n, k), x.device())?,
            Tensor::from_vec(dx, (n, k, d), x.device())?,
        ))
    }
}

impl candle_core::CustomOp1 for MiddleSum {
    fn name(&self) -> &'static str {
        "sum-middle"
    }

    fn cpu_fwd(
        &self,
        s: &candle_core::CpuStorage,
        l: &candle_core::Layout,
    ) -> Result<(candle_core::CpuStorage, candle_core::Shape)> {
        Self::run(None, (s, l))
    }

    fn bwd(&self, x: &Tensor, _res: &Tensor, grad: &Tensor) -> Result<Option<Tensor>> {
        Ok(Some(
            grad.unsqueeze(1)?.broadcast_as(x.shape())?.contiguous()?,
        ))
    }
}

impl candle_core::CustomOp2 for MiddleSum {
    fn name(&self) -> &'static str {
        "weighted-sum-middle"
    }

    fn cpu_fwd(
        &self,
        s1: &candle_core::CpuStorage,
        l1: &candle_core::Layout,
        s2: &candle_core::CpuStorage,
        l2: &candle_core::Layout,
    ) -> Result<(candle_core::CpuStorage, candle_core::Shape)> {
        Self::run(Some((s1, l1)), (s2, l2))
    }

    fn bwd(
        &self,
        w: &Tensor,
        x: &Tensor,
        _res: &Tensor,
        grad: &Tensor,
    ) -> Result<(Option<Tensor>, Option<Tensor>)> {
        let (dw, dx) = if x.dtype() == DType::F64 {
            Self::grads::<f64>(w, x, grad)?
        } else {
            Self::grads::<f32>(w, x, grad)?
        };
        Ok((Some(dw), Some(dx)))
    }
}

/// Squared translation distance `||x + z - y||^2` per row (LGRec eq. 9;
/// lower is better).
pub fn translation_distance(x: &Tensor, z: &Tensor, y: &Tensor) -> Result<Tensor> {
    ((x + z)? - y)?.sqr()?.sum(D::Minus1)
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::gradcheck::max_gradient_error;

    fn t(v: &[f64], shape: &[usize]) -> Tensor {
        Tensor::from_vec(v.to_vec(), shape, &Device::Cpu).unwrap()
    }

    fn tables(fa: &Tensor, g: &Tensor, x: &Tensor, y: &Tensor) -> CoAttentionTables {
        CoAttentionTables::new(fa.clone(), g.clone(), x.clone(), y.clone()).unwrap()
    }

    fn slots(ix: &[u32], iy: &[u32], mx: &[bool], my: &[bool]) -> Slots {
        Slots {
            idx_x: ix.to_vec(),
            idx_y: iy.to_vec(),
            mask_x: mx.to_vec(),
            mask_y: my.to_vec(),
        }
    }

    #[test]
    fn weighted_sum_middle_by_hand_and_its_gradients() {
        let x = t(
            &[1., 2., 3., 4., 5., 6., -1., 0., 0., 1., 2., 2.],
            &[2, 3, 2],
        );
        let w = t(&[1., 0., 2., 0.5, 0.5, -1.], &[2, 3]);
        let y = weighted_sum_middle(&w, &x)
            .unwrap()
            .to_vec2::<f64>()
            .unwrap();
        assert_eq!(y, vec![vec![11., 14.], vec![-2.5, -1.5]]);
        let proj = t(&[0.5, -1.0, 2.0, 0.25], &[2, 2]);
        let xs: Vec<f64> = (0..12).map(|v| v as f64 * 0.3 - 1.0).collect();
        let ws: Vec<f64> = (0..6).map(|v| v as f64 * 0.7 - 2.0).collect();
        let ex = max_gradient_error(&xs, &[2, 3, 2], |x| {
            (weighted_sum_middle(&w, x)? * &proj)?.sum_all()
        })
        .unwrap();
        let ew = max_gradient_error(&ws, &[2, 3], |w| {
            (weighted_sum_middle(w, &x)? * &proj)?.sum_all()
        })
        .unwrap();
        assert!(ex < 1e-8 && ew < 1e-8, "{ex} {ew}");
        assert!(weighted_sum_middle(&t(&[1.0; 4], &[2, 2]), &x).is_err());
    }

    #[test]
    fn sum_middle_by_hand_and_its_gradient() {
        // (2, 3, 2): each output row is the sum of its three rows.
        let x = t(
            &[1., 2., 3., 4., 5., 6., -1., 0., 0., 1., 2., 2.],
            &[2, 3, 2],
        );
        let y = sum_middle(&x).unwrap().to_vec2::<f64>().unwrap();
        assert_eq!(y, vec![vec![9., 12.], vec![1., 3.]]);
        let want = x.sum(1).unwrap().to_vec2::<f64>().unwrap();
        assert_eq!(y, want);
        let proj = t(&[0.5, -1.0, 2.0, 0.25], &[2, 2]);
        let vals: Vec<f64> = (0..12).map(|v| v as f64 * 0.3 - 1.0).collect();
        let err =
            max_gradient_error(&vals, &[2, 3, 2], |x| (sum_middle(x)? * &proj)?.sum_all()).unwrap();
        assert!(err < 1e-8, "{err}");
        assert!(sum_middle(&t(&[1.0, 2.0], &[2])).is_err());
    }

    #[test]
    fn co_attention_by_hand() {
        // One pair, k1 = 2, k2 = 2, h = d = 1. fa = [1, 2], g = [3, -1]
        // M = [[3, -1], [6, -2]]. The second y slot is padding: row max =
        // [3, 6] over column 0; column 0's max is 6.
        let fa = t(&[1.0, 2.0], &[2, 1]);
        let g = t(&[3.0, -1.0], &[2, 1]);
        let x = t(&[10.0, 20.0], &[2, 1]);
        let y = t(&[5.0, 7.0], &[2, 1]);
        let s = slots(&[0, 1], &[0, 1], &[true, true], &[true, false]);
        let (xu, yv) = co_attention(&tables(&fa, &g, &x, &y), s, 2, 2).unwrap();
        let w1 = 1.0 / (1.0 + (3.0f64).exp()); // softmax([3, 6])[0]
        let want = 10.0 * w1 + 20.0 * (1.0 - w1);
        let xu: Vec<f64> = xu.flatten_all().unwrap().to_vec1().unwrap();
        assert!((xu[0] - want).abs() < 1e-9, "{xu:?} vs {want}");
        let yv: Vec<f64> = yv.flatten_all().unwrap().to_vec1().unwrap();
        assert!(
            (yv[0] - 5.0).abs() < 1e-9,
            "padding must get no weight: {yv:?}"
        );
    }

    #[test]
    fn node_without_neighbours_gets_zero() {
        let table = t(&[1.0, 2.0, 3.0, 4.0], &[2, 2]);
        let m = t(&[0.0, 0.0], &[1, 2]);
        let w = masked_softmax(&t(&[0.3, 0.1], &[1, 2]), &m).unwrap();
        assert_eq!(
            w.flatten_all().unwrap().to_vec1::<f64>().unwrap(),
            vec![0.0, 0.0]
        );
        let mean = masked_mean(&table, vec![1, 0], &t(&[1.0, 0.0], &[1, 2])).unwrap();
        assert_eq!(
            mean.flatten_all().unwrap().to_vec1::<f64>().unwrap(),
            vec![3.0, 4.0]
        );
    }

    #[test]
    fn co_attention_gradients_match_finite_differences() {
        let mut rng = Rng::new(1);
        let (p, k1, k2, d, nx, ny) = (2, 3, 4, 3, 5, 6);
        let ix = [0u32, 4, 2, 1, 1, 3];
        let iy = [5u32, 0, 2, 1, 3, 3, 4, 0];
        let mx = [true, true, false, true, true, true];
        let my = [true, true, true, false, true, false, true, true];
        let g = t(&rng.normal(ny * d, 1.0), &[ny, d]);
        let x = t(&rng.normal(nx * d, 1.0), &[nx, d]);
        let y = t(&rng.normal(ny * d, 1.0), &[ny, d]);
        let _ = p;
        let err = max_gradient_error(&rng.normal(nx * d, 1.0), &[nx, d], |fa| {
            let (xu, yv) =
                co_attention(&tables(fa, &g, &x, &y), slots(&ix, &iy, &mx, &my), k1, k2)?;
            (xu.sqr()?.sum_all()? + (yv * 0.5)?.sum_all()?)?.sqr()
        })
        .unwrap();
        assert!(err < 1e-5, "relative error w.r.t. FA: {err}");
        // The same through a stored FA G^T.
        let err = max_gradient_error(&rng.normal(nx * d, 1.0), &[nx, d], |fa| {
            let tab = tables(fa, &g, &x, &y).with_product()?;
            let (xu, yv) = co_attention(&tab, slots(&ix, &iy, &mx, &my), k1, k2)?;
            (xu.sqr()?.sum_all()? + (yv * 0.5)?.sum_all()?)?.sqr()
        })
        .unwrap();
        assert!(
            err < 1e-5,
            "relative error w.r.t. FA, stored product: {err}"
        );
        let fa = t(&rng.normal(nx * d, 1.0), &[nx, d]);
        let err = max_gradient_error(&rng.normal(nx * d, 1.0), &[nx, d], |x| {
            let (xu, _) = co_attention(&tables(&fa, &g, x, &y), slots(&ix, &iy, &mx, &my), k1, k2)?;
            xu.sqr()?.sum_all()
        })
        .unwrap();
        assert!(err < 1e-5, "relative error w.r.t. X: {err}");
        let x2 = t(&rng.normal(nx * d, 1.0), &[nx, d]);
        let err = max_gradient_error(&rng.normal(ny * d, 1.0), &[ny, d], |g| {
            let (_, yv) = co_attention(&tables(&fa, g, &x2, g), slots(&ix, &iy, &mx, &my), k1, k2)?;
            yv.sqr()?.sum_all()
        })
        .unwrap();
        assert!(err < 1e-5, "relative error w.r.t. G and Y: {err}");
        let w = t(&[0.2, 0.5, 0.3, 1.0, 0.0, 0.0], &[2, 3]);
        let err = max_gradient_error(&rng.normal(nx * d, 1.0), &[nx, d], |table| {
            w.apply_op2(table, WeightedRows::new(ix.to_vec()))?
                .sqr()?
                .sum_all()
        })
        .unwrap();
        assert!(err < 1e-6, "weighted rows w.r.t. the table: {err}");
        let table = t(&rng.normal(nx * d, 1.0), &[nx, d]);
        let err = max_gradient_error(&[0.2, 0.5, 0.3, 1.0, 0.1, 0.4], &[2, 3], |w| {
            w.apply_op2(&table, WeightedRows::new(ix.to_vec()))?
                .sqr()?
                .sum_all()
        })
        .unwrap();
        assert!(err < 1e-6, "weighted rows w.r.t. the weights: {err}");
    }

    #[test]
    fn mlp_and_translation_gradients() {
        let mut rng = Rng::new(2);
        let mlp = Mlp::new(&mut rng, &[3, 4, 2], DType::F64, &Device::Cpu).unwrap();
        let err = max_gradient_error(&rng.normal(6, 1.0), &[2, 3], |x| {
            mlp.forward(x)?.sqr()?.sum_all()
        })
        .unwrap();
        assert!(err < 1e-5, "relative error {err}");
        let z = t(&[0.5, -0.5], &[1, 2]);
        let y = t(&[1.0, 2.0], &[1, 2]);
        let d = translation_distance(&t(&[1.0, 1.0], &[1, 2]), &z, &y).unwrap();
        assert_eq!(d.to_vec1::<f64>().unwrap(), vec![0.25 + 2.25]);
        let err = max_gradient_error(&[0.3, -0.2], &[1, 2], |x| {
            translation_distance(x, &z, &y)?.sum_all()
        })
        .unwrap();
        assert!(err < 1e-6, "relative error {err}");
    }
}
