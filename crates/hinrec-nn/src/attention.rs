//! Set attention layers from REDA (reda.txt eq. 3-8): a key-value memory
//! read and a weight attention that pools a set of vectors.
//!
//! Each layer is a struct holding its variables plus a free function with
//! the math, so gradient checks can differentiate with respect to the
//! weights too.

use candle_core::{DType, Device, Result, Tensor, Var, D};

use crate::bias::{bias_act, Activation};
use crate::init::Rng;
use crate::layers::Linear;
use crate::slot_ops::SoftmaxWeightedRows;

/// `softmax(v K^T) M` row by row: `v` is `(n, d)`, `keys` and `values` are
/// `(m, d)`; returns `(n, d)` (reda.txt eq. 3-5).
pub fn memory_read(v: &Tensor, keys: &Tensor, values: &Tensor) -> Result<Tensor> {
    memory_weights(v, keys)?.matmul(values)
}

/// The memory attention weights `softmax_t(v . k_t)`, `(n, m)`.
pub fn memory_weights(v: &Tensor, keys: &Tensor) -> Result<Tensor> {
    candle_nn::ops::softmax(&v.matmul(&keys.t()?)?, D::Minus1)
}

/// [`KeyValueMemory::pooled_read`] as a free function: `v` is `(g c, d)`,
/// `scores` `(g, c)`, `keys` and `values` `(m, d)`; returns `(g, d)`.
pub fn pooled_memory_read(
    v: &Tensor,
    scores: &Tensor,
    keys: &Tensor,
    values: &Tensor,
) -> Result<Tensor> {
    let (g, c) = scores.dims2()?;
    let m = keys.dims2()?.0;
    let slots = memory_weights(v, keys)?.reshape((g, c, m))?;
    softmax_pool(scores, &slots)?.matmul(values)
}

/// A key-value memory of `m` slots: keys `K` and values `M`, both `(m, d)`.
#[derive(Debug, Clone)]
pub struct KeyValueMemory {
    /// Keys, `(m, d)`, Xavier normal.
    pub keys: Var,
    /// Values, `(m, d)`, Xavier normal.
    pub values: Var,
}

impl KeyValueMemory {
    /// A seeded memory of `slots` slots of width `dim`.
    pub fn new(
        rng: &mut Rng,
        slots: usize,
        dim: usize,
        dtype: DType,
        dev: &Device,
    ) -> Result<Self> {
        Ok(KeyValueMemory {
            keys: rng.xavier_var(slots, dim, dtype, dev)?,
            values: rng.xavier_var(slots, dim, dtype, dev)?,
        })
    }

    /// Reads the memory for each row of `v` (`(n, d)` in, `(n, d)` out).
    pub fn forward(&self, v: &Tensor) -> Result<Tensor> {
        memory_read(v, self.keys.as_tensor(), self.values.as_tensor())
    }

    /// The attention weights over the slots, `(n, m)`.
    pub fn weights(&self, v: &Tensor) -> Result<Tensor> {
        memory_weights(v, self.keys.as_tensor())
    }

    /// Reads the memory for each row of `v` (`(g c, d)`) and pools each
    /// group of `c` reads by the softmax of `scores` (`(g, c)`); returns
    /// `(g, d)`. Equal to [`softmax_pool`] of [`KeyValueMemory::forward`],
    /// but pools the `m`-wide slot weights before the one product with the
    /// values: `sum_c w_c (a_c M) = (sum_c w_c a_c) M`.
    pub fn pooled_read(&self, v: &Tensor, scores: &Tensor) -> Result<Tensor> {
        pooled_memory_read(v, scores, self.keys.as_tensor(), self.values.as_tensor())
    }

    /// Its variables.
    pub fn vars(&self) -> Vec<Var> {
        vec![self.keys.clone(), self.values.clone()]
    }

    /// Its variables named `{prefix}.keys` and `{prefix}.values`.
    pub fn named_vars(&self, prefix: &str) -> Vec<(String, Var)> {
        vec![
            (format!("{prefix}.keys"), self.keys.clone()),
            (format!("{prefix}.values"), self.values.clone()),
        ]
    }
}

/// Scores `h^T ReLU(x W + b)` of the rows of `x` (`(n, d)` in, `(n,)` out;
/// `w` is `(d, s)`, `b` is `(1, s)`, `h` is `(s, 1)`): reda.txt eq. 6.
pub fn attention_scores(x: &Tensor, w: &Tensor, b: &Tensor, h: &Tensor) -> Result<Tensor> {
    bias_act(&x.matmul(w)?, b, Activation::Relu)?
        .matmul(h)?
        .squeeze(1)
}

/// Pools each group of vectors by softmax-normalised scores: `scores` is
/// `(g, c)`, `values` is `(g, c, d)`; returns `(g, d)` with row `k` equal to
/// `sum_c softmax(scores[k])_c values[k, c]` (reda.txt eq. 7-8).
pub fn softmax_pool(scores: &Tensor, values: &Tensor) -> Result<Tensor> {
    let (g, c, d) = values.dims3()?;
    // One fused op: autograd through broadcast_mul and sum(1) reduces over
    // a middle axis, which candle does slowly.
    let n = (g * c) as u32;
    scores.contiguous()?.apply_op2(
        &values.reshape((g * c, d))?.contiguous()?,
        SoftmaxWeightedRows::new((0..n).collect(), vec![true; g * c]),
    )
}

/// Weight attention with hidden size `s`: scores each vector with a
/// one-hidden-layer perceptron and pools a set by the softmax of the scores.
#[derive(Debug, Clone)]
pub struct WeightAttention {
    /// `W` and `b`, `(d, s)` and `(1, s)`.
    pub hidden: Linear,
    /// `h`, `(s, 1)`, Xavier normal.
    pub h: Var,
}

impl WeightAttention {
    /// A seeded layer for vectors of width `dim`.
    pub fn new(
        rng: &mut Rng,
        dim: usize,
        hidden: usize,
        dtype: DType,
        dev: &Device,
    ) -> Result<Self> {
        Ok(WeightAttention {
            hidden: Linear::new(rng, dim, hidden, dtype, dev)?,
            h: rng.xavier_var(hidden, 1, dtype, dev)?,
        })
    }

    /// Unnormalised scores of the rows of `x`, `(n,)`.
    pub fn scores(&self, x: &Tensor) -> Result<Tensor> {
        attention_scores(
            x,
            self.hidden.weight.as_tensor(),
            self.hidden.bias.as_tensor(),
            self.h.as_tensor(),
        )
    }

    /// Pools `values` (`(g, c, d)`) over `c`, weighting each by the softmax
    /// over its group of the scores of `keys` (`(g, c, d_in)`).
    pub fn pool(&self, keys: &Tensor, values: &Tensor) -> Result<Tensor> {
        let (g, c, d_in) = keys.dims3()?;
        let s = self.scores(&keys.reshape((g * c, d_in))?)?;
        softmax_pool(&s.reshape((g, c))?, values)
    }

    /// Its variables.
    pub fn vars(&self) -> Vec<Var> {
        let mut v = self.hidden.vars();
        v.push(self.h.clone());
        v
    }

    /// Its variables named `{prefix}.hidden.weight`, `.hidden.bias` and
    /// `{prefix}.h`.
    pub fn named_vars(&self, prefix: &str) -> Vec<(String, Var)> {
        let mut v = self.hidden.named_vars(&format!("{prefix}.hidden"));
        v.push((format!("{prefix}.h"), self.h.clone()));
        v
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::gradcheck::max_gradient_error;

    fn t(v: &[f64], shape: &[usize]) -> Tensor {
        Tensor::from_vec(v.to_vec(), shape, &Device::Cpu).unwrap()
    }

    fn flat(x: &Tensor) -> Vec<f64> {
        x.flatten_all().unwrap().to_vec1().unwrap()
    }

    #[test]
    fn memory_read_by_hand() {
        // Keys e1, e2; v = (ln 3, 0): logits (ln 3, 0), weights (3/4, 1/4).
        let keys = t(&[1.0, 0.0, 0.0, 1.0], &[2, 2]);
        let values = t(&[4.0, 8.0, -4.0, 0.0], &[2, 2]);
        let v = t(&[3f64.ln(), 0.0], &[1, 2]);
        let w = flat(&memory_weights(&v, &keys).unwrap());
        assert!((w[0] - 0.75).abs() < 1e-12 && (w[1] - 0.25).abs() < 1e-12);
        let r = flat(&memory_read(&v, &keys, &values).unwrap());
        // 0.75 (4, 8) + 0.25 (-4, 0) = (2, 6)
        assert!(
            (r[0] - 2.0).abs() < 1e-12 && (r[1] - 6.0).abs() < 1e-12,
            "{r:?}"
        );
    }

    #[test]
    fn pooled_read_equals_pooling_the_reads() {
        let mut rng = Rng::new(4);
        let (g, c, m, d) = (3, 4, 5, 6);
        let memory = KeyValueMemory::new(&mut rng, m, d, DType::F64, &Device::Cpu).unwrap();
        let v = t(&rng.normal(g * c * d, 1.0), &[g * c, d]);
        let s = t(&rng.normal(g * c, 1.0), &[g, c]);
        let want = softmax_pool(&s, &memory.forward(&v).unwrap().reshape((g, c, d)).unwrap());
        let got = flat(&memory.pooled_read(&v, &s).unwrap());
        for (a, b) in got.iter().zip(flat(&want.unwrap())) {
            assert!((a - b).abs() < 1e-12, "{a} vs {b}");
        }
    }

    #[test]
    fn pooled_read_gradients_match_finite_differences() {
        let mut rng = Rng::new(8);
        let (g, c, m, d) = (2, 3, 4, 5);
        let keys = t(&rng.normal(m * d, 1.0), &[m, d]);
        let values = t(&rng.normal(m * d, 1.0), &[m, d]);
        let v = t(&rng.normal(g * c * d, 1.0), &[g * c, d]);
        let s = t(&rng.normal(g * c, 1.0), &[g, c]);
        let target = t(&rng.normal(g * d, 1.0), &[g, d]);
        let loss = |r: Tensor| (r * &target)?.sum_all()?.sqr();
        let checks: [(&str, Vec<usize>); 4] = [
            ("v", vec![g * c, d]),
            ("scores", vec![g, c]),
            ("keys", vec![m, d]),
            ("values", vec![m, d]),
        ];
        for (name, shape) in checks {
            let n: usize = shape.iter().product();
            let err = max_gradient_error(&rng.normal(n, 1.0), &shape, |p| {
                loss(match name {
                    "v" => pooled_memory_read(p, &s, &keys, &values)?,
                    "scores" => pooled_memory_read(&v, p, &keys, &values)?,
                    "keys" => pooled_memory_read(&v, &s, p, &values)?,
                    _ => pooled_memory_read(&v, &s, &keys, p)?,
                })
            })
            .unwrap();
            assert!(err < 1e-5, "w.r.t. {name}: {err}");
        }
    }

    #[test]
    fn weight_pool_by_hand() {
        // d = 1, s = 1, W = 1, b = 0, h = 1: scores are ReLU(x).
        let (w, b, h) = (t(&[1.0], &[1, 1]), t(&[0.0], &[1, 1]), t(&[1.0], &[1, 1]));
        let x = t(&[2f64.ln(), -5.0], &[2, 1]);
        let s = attention_scores(&x, &w, &b, &h).unwrap();
        assert_eq!(flat(&s), vec![2f64.ln(), 0.0]);
        // Softmax (ln 2, 0) = (2/3, 1/3) over values 3 and 6: 4.
        let pooled =
            softmax_pool(&s.reshape((1, 2)).unwrap(), &t(&[3.0, 6.0], &[1, 2, 1])).unwrap();
        assert!((flat(&pooled)[0] - 4.0).abs() < 1e-12);
        // The layer gives the same through its own variables.
        let mut rng = Rng::new(3);
        let layer = WeightAttention::new(&mut rng, 1, 1, DType::F64, &Device::Cpu).unwrap();
        layer.hidden.weight.set(&w).unwrap();
        layer.h.set(&h).unwrap();
        let p = layer
            .pool(&x.reshape((1, 2, 1)).unwrap(), &t(&[3.0, 6.0], &[1, 2, 1]))
            .unwrap();
        assert!((flat(&p)[0] - 4.0).abs() < 1e-12);
    }

    #[test]
    fn memory_gradients_match_finite_differences() {
        let mut rng = Rng::new(5);
        let (n, m, d) = (3, 4, 5);
        let keys = t(&rng.normal(m * d, 1.0), &[m, d]);
        let values = t(&rng.normal(m * d, 1.0), &[m, d]);
        let v = t(&rng.normal(n * d, 1.0), &[n, d]);
        let target = t(&rng.normal(n * d, 1.0), &[n, d]);
        let loss = |r: Tensor| (r * &target)?.sum_all()?.sqr();
        let err = max_gradient_error(&rng.normal(n * d, 1.0), &[n, d], |x| {
            loss(memory_read(x, &keys, &values)?)
        })
        .unwrap();
        assert!(err < 1e-5, "w.r.t. the query: {err}");
        let err = max_gradient_error(&rng.normal(m * d, 1.0), &[m, d], |k| {
            loss(memory_read(&v, k, &values)?)
        })
        .unwrap();
        assert!(err < 1e-5, "w.r.t. the keys: {err}");
        let err = max_gradient_error(&rng.normal(m * d, 1.0), &[m, d], |mv| {
            loss(memory_read(&v, &keys, mv)?)
        })
        .unwrap();
        assert!(err < 1e-5, "w.r.t. the values: {err}");
    }

    #[test]
    fn weight_attention_gradients_match_finite_differences() {
        let mut rng = Rng::new(6);
        let (g, c, d, s) = (2, 3, 4, 5);
        let x = t(&rng.normal(g * c * d, 1.0), &[g * c, d]);
        let w = t(&rng.normal(d * s, 1.0), &[d, s]);
        let b = t(&rng.normal(s, 0.5), &[1, s]);
        let h = t(&rng.normal(s, 1.0), &[s, 1]);
        let values = t(&rng.normal(g * c * d, 1.0), &[g, c, d]);
        let pool = |x: &Tensor, w: &Tensor, b: &Tensor, h: &Tensor, vals: &Tensor| {
            let sc = attention_scores(x, w, b, h)?.reshape((g, c))?;
            softmax_pool(&sc, vals)?.sqr()?.sum_all()
        };
        let checks: [(&str, Vec<usize>); 5] = [
            ("x", vec![g * c, d]),
            ("W", vec![d, s]),
            ("b", vec![1, s]),
            ("h", vec![s, 1]),
            ("values", vec![g, c, d]),
        ];
        for (name, shape) in checks {
            let n: usize = shape.iter().product();
            let err = max_gradient_error(&rng.normal(n, 1.0), &shape, |p| match name {
                "x" => pool(p, &w, &b, &h, &values),
                "W" => pool(&x, p, &b, &h, &values),
                "b" => pool(&x, &w, p, &h, &values),
                "h" => pool(&x, &w, &b, p, &values),
                _ => pool(&x, &w, &b, &h, p),
            })
            .unwrap();
            assert!(err < 1e-5, "w.r.t. {name}: {err}");
        }
    }
}
