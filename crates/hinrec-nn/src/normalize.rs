//! Row-wise L2 normalisation `y = x / max(|x|, eps)` as one op.
//!
//! GLRS's representation networks end with it (glrs.txt Fig. 2). Composed
//! from candle ops it is five passes forward and more backward; here the
//! forward is one pass that also keeps the norms, and the backward one
//! pass: `dx = (g - y (y . g)) / |x|` (`g / eps` where the norm is below
//! `eps`, the op being `x / eps` there).

use std::sync::Mutex;

use candle_core::{CpuStorage, CustomOp1, Layout, Result, Shape, Tensor, WithDType};
use num_traits::Float;

use crate::slot_ops::{contiguous, flat};

/// Norms below this are treated as `EPS` (a zero row stays zero).
pub const EPS: f64 = 1e-12;

/// Each row of `x` `(n, d)` divided by its Euclidean norm.
pub fn l2_normalize(x: &Tensor) -> Result<Tensor> {
    x.contiguous()?.apply_op1(L2Normalize {
        norms: Mutex::new(Vec::new()),
    })
}

struct L2Normalize {
    /// Each row's norm from the forward pass (as f64), for the backward.
    norms: Mutex<Vec<f64>>,
}

fn poisoned<T>(_: T) -> candle_core::Error {
    candle_core::Error::Msg("l2-normalize: a poisoned lock".into())
}

impl L2Normalize {
    fn forward<T: Float>(&self, x: &[T], d: usize) -> (Vec<T>, Vec<f64>) {
        let mut out = Vec::with_capacity(x.len());
        let mut norms = Vec::with_capacity(x.len() / d.max(1));
        for row in x.chunks(d.max(1)) {
            let n = row
                .iter()
                .map(|v| v.to_f64().unwrap_or(0.0).powi(2))
                .sum::<f64>()
                .sqrt()
                .max(EPS);
            let nt = T::from(n).unwrap_or_else(T::one);
            out.extend(row.iter().map(|&v| v / nt));
            norms.push(n);
        }
        (out, norms)
    }

    fn backward<T: Float + WithDType>(&self, y: &[T], g: &[T], d: usize) -> Result<Vec<T>> {
        let norms = self.norms.lock().map_err(poisoned)?;
        let mut out = Vec::with_capacity(g.len());
        for ((yr, gr), &n) in y.chunks(d.max(1)).zip(g.chunks(d.max(1))).zip(norms.iter()) {
            let inv = T::from(1.0 / n).unwrap_or_else(T::zero);
            if n <= EPS {
                out.extend(gr.iter().map(|&v| v * inv));
                continue;
            }
            let dot = yr.iter().zip(gr).fold(T::zero(), |a, (&p, &q)| a + p * q);
            out.extend(yr.iter().zip(gr).map(|(&p, &q)| (q - p * dot) * inv));
        }
        Ok(out)
    }
}

impl CustomOp1 for L2Normalize {
    fn name(&self) -> &'static str {
        "l2-normalize"
    }

    fn cpu_fwd(&self, s: &CpuStorage, l: &Layout) -> Result<(CpuStorage, Shape)> {
        let (_, d) = l.shape().dims2()?;
        let (storage, norms) = match s {
            CpuStorage::F32(_) => {
                let (o, n) = self.forward(contiguous::<f32>(s, l)?, d);
                (CpuStorage::F32(o), n)
            }
            CpuStorage::F64(_) => {
                let (o, n) = self.forward(contiguous::<f64>(s, l)?, d);
                (CpuStorage::F64(o), n)
            }
            _ => candle_core::bail!("l2-normalize supports f32 and f64"),
        };
        *self.norms.lock().map_err(poisoned)? = norms;
        Ok((storage, l.shape().clone()))
    }

    fn bwd(&self, x: &Tensor, res: &Tensor, grad: &Tensor) -> Result<Option<Tensor>> {
        let d = x.dim(1)?;
        let dx = if x.dtype() == candle_core::DType::F64 {
            Tensor::from_vec(
                self.backward::<f64>(&flat(res)?, &flat(grad)?, d)?,
                x.shape(),
                x.device(),
            )?
        } else {
            Tensor::from_vec(
                self.backward::<f32>(&flat(res)?, &flat(grad)?, d)?,
                x.shape(),
                x.device(),
            )?
        };
        Ok(Some(dx.to_dtype(x.dtype())?))
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::gradcheck::max_gradient_error;
    use candle_core::Device;

    fn t(v: &[f64], shape: &[usize]) -> Tensor {
        Tensor::from_vec(v.to_vec(), shape, &Device::Cpu).unwrap()
    }

    #[test]
    fn forward_by_hand() {
        let y = l2_normalize(&t(&[3.0, 4.0, 0.0, 0.0, -2.0, 0.0], &[3, 2])).unwrap();
        assert_eq!(
            y.to_vec2::<f64>().unwrap(),
            [[0.6, 0.8], [0.0, 0.0], [-1.0, 0.0]]
        );
        let y32 = l2_normalize(
            &t(&[1.0, 1.0], &[1, 2])
                .to_dtype(candle_core::DType::F32)
                .unwrap(),
        )
        .unwrap();
        let v = y32.to_vec2::<f32>().unwrap();
        assert!((v[0][0] - std::f32::consts::FRAC_1_SQRT_2).abs() < 1e-7);
    }

    #[test]
    fn gradient_by_hand_is_orthogonal_to_the_row() {
        // d/dx (w . x/|x|) at x = (3, 4), w = (1, 0): (1 - 0.36, -0.48) / 5.
        let x = candle_core::Var::from_tensor(&t(&[3.0, 4.0], &[1, 2])).unwrap();
        let w = t(&[1.0, 0.0], &[1, 2]);
        let y = (l2_normalize(x.as_tensor()).unwrap() * &w)
            .unwrap()
            .sum_all()
            .unwrap();
        let g = y.backward().unwrap();
        let gx = g.get(x.as_tensor()).unwrap().to_vec2::<f64>().unwrap();
        assert!((gx[0][0] - 0.64 / 5.0).abs() < 1e-12 && (gx[0][1] + 0.48 / 5.0).abs() < 1e-12);
    }

    #[test]
    fn gradients_match_finite_differences() {
        let x = [
            0.3, -1.2, 0.7, 2.0, -0.4, 0.9, -1.5, 0.2, 1.1, 0.05, 0.02, -0.01,
        ];
        let w = t(
            &[
                1.0, -2.0, 0.5, 3.0, 1.5, -1.0, 0.7, 2.2, -0.6, 0.3, 0.3, 0.9,
            ],
            &[4, 3],
        );
        let err = max_gradient_error(&x, &[4, 3], |v| (l2_normalize(v)? * &w)?.sum_all()).unwrap();
        assert!(err < 1e-6, "{err}");
        // Through a square, so the gradient depends on the output too.
        let err =
            max_gradient_error(&x, &[4, 3], |v| (l2_normalize(v)? * &w)?.sqr()?.sum_all()).unwrap();
        assert!(err < 1e-6, "{err}");
    }
}
