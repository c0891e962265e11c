//! Layers: linear, MLP, masked co-attention, translation score.

use candle_core::{DType, Device, Result, Tensor, Var, D};

use crate::copool::CoAttentionPool;
use crate::init::Rng;

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
        x.matmul(self.weight.as_tensor())?
            .broadcast_add(self.bias.as_tensor())
    }

    /// Its variables.
    pub fn vars(&self) -> Vec<Var> {
        vec![self.weight.clone(), self.bias.clone()]
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
            h = l.forward(&h)?;
            if k + 1 < self.layers.len() {
                h = h.relu()?;
            }
        }
        Ok(h)
    }

    /// Its variables.
    pub fn vars(&self) -> Vec<Var> {
        self.layers.iter().flat_map(Linear::vars).collect()
    }
}

/// Large negative bias that removes masked slots from a max or a softmax.
const MASKED: f64 = 1e9;

/// Co-attention over two neighbour sets (LGRec eq. 1-3), for `p` pairs.
///
/// - `fa`: `(p, k1, h)` rows of `F(X) A` for the first side's neighbours;
/// - `g`: `(p, k2, h)` rows of `G(Y)` for the second side's;
/// - `x`, `y`: `(p, k1, d)` and `(p, k2, d)` raw neighbour embeddings, the
///   values the attention weights average;
/// - `mask_x`, `mask_y`: `(p, k1)` and `(p, k2)`, 1 for a real neighbour,
///   0 for padding.
///
/// `M = fa g^T` (`p x k1 x k2`); the importance of each neighbour is the max
/// of its row (column) over the other side's real neighbours, computed by the
/// fused [`CoAttentionPool`] op; a softmax over real neighbours only turns
/// them into weights (a node without neighbours gets the zero vector).
/// Returns the two weighted sums, `(p, d)` each.
pub fn co_attention(
    fa: &Tensor,
    g: &Tensor,
    x: &Tensor,
    y: &Tensor,
    mask_x: &Tensor,
    mask_y: &Tensor,
) -> Result<(Tensor, Tensor)> {
    let (p, k1, h) = fa.dims3()?;
    let k2 = g.dims3()?.1;
    let flags = |m: &Tensor| -> Result<Vec<bool>> {
        Ok(m.to_dtype(DType::F64)?
            .flatten_all()?
            .to_vec1::<f64>()?
            .into_iter()
            .map(|v| v > 0.5)
            .collect())
    };
    let pool = CoAttentionPool::new(flags(mask_x)?, flags(mask_y)?, p, k1, k2, h);
    let scores = fa.contiguous()?.apply_op2(&g.contiguous()?, pool)?;
    let row_score = scores.narrow(1, 0, k1)?;
    let col_score = scores.narrow(1, k1, k2)?;
    let wx = masked_softmax(&row_score, mask_x)?;
    let wy = masked_softmax(&col_score, mask_y)?;
    let xu = wx.reshape((p, 1, k1))?.matmul(x)?.squeeze(1)?;
    let yv = wy.reshape((p, 1, k2))?.matmul(y)?.squeeze(1)?;
    Ok((xu, yv))
}

/// Softmax over the last axis restricted to `mask == 1`; all-masked rows
/// give zeros.
pub fn masked_softmax(scores: &Tensor, mask: &Tensor) -> Result<Tensor> {
    let s = (scores + ((mask - 1.0)? * MASKED)?)?;
    candle_nn::ops::softmax(&s, D::Minus1)? * mask
}

/// Mean of `x` over the real neighbours (`mask == 1`): the no-attention
/// ablation. `x` is `(p, k, d)`, `mask` `(p, k)`.
pub fn masked_mean(x: &Tensor, mask: &Tensor) -> Result<Tensor> {
    let (p, k, _) = x.dims3()?;
    let count = mask.sum_keepdim(D::Minus1)?.clamp(1.0, f64::INFINITY)?;
    let w = mask.broadcast_div(&count)?;
    w.reshape((p, 1, k))?.matmul(x)?.squeeze(1)
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

    #[test]
    fn co_attention_by_hand() {
        // One pair, k1 = 2, k2 = 2, h = d = 1. fa = [1, 2], g = [3, -1]
        // M = [[3, -1], [6, -2]]; row max = [3, 6]; col max = [6, -1].
        // The second y slot is padding: col scores only over slot 0, and
        // row max ignores column 1: row max = [3, 6] still.
        let fa = t(&[1.0, 2.0], &[1, 2, 1]);
        let g = t(&[3.0, -1.0], &[1, 2, 1]);
        let x = t(&[10.0, 20.0], &[1, 2, 1]);
        let y = t(&[5.0, 7.0], &[1, 2, 1]);
        let mx = t(&[1.0, 1.0], &[1, 2]);
        let my = t(&[1.0, 0.0], &[1, 2]);
        let (xu, yv) = co_attention(&fa, &g, &x, &y, &mx, &my).unwrap();
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
        let x = t(&[1.0, 2.0, 3.0, 4.0], &[1, 2, 2]);
        let m = t(&[0.0, 0.0], &[1, 2]);
        let w = masked_softmax(&t(&[0.3, 0.1], &[1, 2]), &m).unwrap();
        assert_eq!(
            w.flatten_all().unwrap().to_vec1::<f64>().unwrap(),
            vec![0.0, 0.0]
        );
        let mean = masked_mean(&x, &t(&[1.0, 0.0], &[1, 2])).unwrap();
        assert_eq!(
            mean.flatten_all().unwrap().to_vec1::<f64>().unwrap(),
            vec![1.0, 2.0]
        );
    }

    #[test]
    fn co_attention_gradients_match_finite_differences() {
        let mut rng = Rng::new(1);
        let (p, k1, k2, d) = (2, 3, 4, 3);
        let fa = rng.normal(p * k1 * d, 1.0);
        let g = t(&rng.normal(p * k2 * d, 1.0), &[p, k2, d]);
        let x = t(&rng.normal(p * k1 * d, 1.0), &[p, k1, d]);
        let y = t(&rng.normal(p * k2 * d, 1.0), &[p, k2, d]);
        let mx = t(&[1.0, 1.0, 0.0, 1.0, 1.0, 1.0], &[p, k1]);
        let my = t(&[1.0, 1.0, 1.0, 0.0, 1.0, 0.0, 1.0, 1.0], &[p, k2]);
        let err = max_gradient_error(&fa, &[p, k1, d], |fa| {
            let (xu, yv) = co_attention(fa, &g, &x, &y, &mx, &my)?;
            (xu.sqr()?.sum_all()? + (yv * 0.5)?.sum_all()?)?.sqr()
        })
        .unwrap();
        assert!(err < 1e-5, "relative error {err}");
        let err = max_gradient_error(&rng.normal(p * k1 * d, 1.0), &[p, k1, d], |x| {
            let (xu, _) = co_attention(&x.clone(), &g, x, &y, &mx, &my)?;
            xu.sqr()?.sum_all()
        })
        .unwrap();
        assert!(err < 1e-5, "relative error {err}");
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
