//! `act(x + b)` for a row-broadcast bias as one op.
//!
//! candle's `broadcast_add` backward reduces the gradient to the bias's
//! shape with a generic strided sum, and `relu`'s backward builds a mask,
//! converts it and multiplies (each result then zero-filled and added into
//! the gradient store). On the small dense layers of our models those
//! passes were a fifth of a training step (LGRec, d = 64: docs/lgrec.md).
//! Here the forward is one pass and the backward one pass that also sums
//! the columns.

use candle_core::{CpuStorage, CustomOp2, Layout, Result, Shape, Tensor};
use num_traits::Float;

use crate::slot_ops::{contiguous, flat, float_grads};

/// The activation applied after the bias.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Activation {
    /// None: `x + b`.
    Identity,
    /// `max(0, x + b)`.
    Relu,
}

/// `act(x + b)` for `x` `(n, d)` and `b` `(1, d)`.
pub fn bias_act(x: &Tensor, b: &Tensor, act: Activation) -> Result<Tensor> {
    x.contiguous()?.apply_op2(&b.contiguous()?, BiasAct(act))
}

struct BiasAct(Activation);

impl BiasAct {
    fn forward<T: Float>(&self, x: &[T], b: &[T]) -> Vec<T> {
        let d = b.len().max(1);
        let mut out = Vec::with_capacity(x.len());
        for row in x.chunks(d) {
            match self.0 {
                Activation::Identity => out.extend(row.iter().zip(b).map(|(&v, &c)| v + c)),
                Activation::Relu => out.extend(row.iter().zip(b).map(|(&v, &c)| {
                    let s = v + c;
                    if s > T::zero() {
                        s
                    } else {
                        T::zero()
                    }
                })),
            }
        }
        out
    }

    /// The gradient for `x` (the activation's mask applied) and the column
    /// sums of it for `b`.
    fn backward<T: Float>(&self, res: &[T], grad: &[T], d: usize) -> (Vec<T>, Vec<T>) {
        let dx: Vec<T> = match self.0 {
            Activation::Identity => grad.to_vec(),
            Activation::Relu => res
                .iter()
                .zip(grad)
                .map(|(&r, &g)| if r > T::zero() { g } else { T::zero() })
                .collect(),
        };
        let mut db = vec![T::zero(); d];
        for row in dx.chunks(d.max(1)) {
            for (s, &g) in db.iter_mut().zip(row) {
                *s = *s + g;
            }
        }
        (dx, db)
    }
}

impl CustomOp2 for BiasAct {
    fn name(&self) -> &'static str {
        "bias-act"
    }

    fn cpu_fwd(
        &self,
        s1: &CpuStorage,
        l1: &Layout,
        s2: &CpuStorage,
        l2: &Layout,
    ) -> Result<(CpuStorage, Shape)> {
        let (_, d) = l1.shape().dims2()?;
        if l2.shape().dims() != [1, d] {
            candle_core::bail!(
                "bias-act: bias {:?} does not fit rows {:?}",
                l2.shape(),
                l1.shape()
            );
        }
        let storage = match (s1, s2) {
            (CpuStorage::F32(_), CpuStorage::F32(_)) => CpuStorage::F32(
                self.forward(contiguous::<f32>(s1, l1)?, contiguous::<f32>(s2, l2)?),
            ),
            (CpuStorage::F64(_), CpuStorage::F64(_)) => CpuStorage::F64(
                self.forward(contiguous::<f64>(s1, l1)?, contiguous::<f64>(s2, l2)?),
            ),
            _ => candle_core::bail!("bias-act supports f32 and f64 of one type"),
        };
        Ok((storage, l1.shape().clone()))
    }

    fn bwd(
        &self,
        x: &Tensor,
        b: &Tensor,
        res: &Tensor,
        grad: &Tensor,
    ) -> Result<(Option<Tensor>, Option<Tensor>)> {
        let d = b.elem_count();
        float_grads!(x, x, b, |T| self.backward::<T>(
            &flat(res)?,
            &flat(grad)?,
            d
        ))
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
        let x = t(&[1.0, -2.0, -0.5, 3.0], &[2, 2]);
        let b = t(&[0.25, 1.0], &[1, 2]);
        let id = bias_act(&x, &b, Activation::Identity).unwrap();
        assert_eq!(id.to_vec2::<f64>().unwrap(), [[1.25, -1.0], [-0.25, 4.0]]);
        let relu = bias_act(&x, &b, Activation::Relu).unwrap();
        assert_eq!(relu.to_vec2::<f64>().unwrap(), [[1.25, 0.0], [0.0, 4.0]]);
    }

    #[test]
    fn bias_gradient_is_the_column_sum_of_the_passed_gradient() {
        // d/db sum(w * relu(x + b)): column sums of w where x + b > 0.
        let x = t(&[1.0, -2.0, -0.5, 3.0, 2.0, 0.5], &[3, 2]);
        let w = t(&[1.0, 2.0, 3.0, 4.0, 5.0, 6.0], &[3, 2]);
        let b = candle_core::Var::from_tensor(&t(&[0.25, 1.0], &[1, 2])).unwrap();
        let y = (bias_act(&x, b.as_tensor(), Activation::Relu).unwrap() * &w)
            .unwrap()
            .sum_all()
            .unwrap();
        let g = y.backward().unwrap();
        // Column 0: rows 0 and 2 are positive (1.25, 2.25): 1 + 5.
        // Column 1: rows 1 and 2 (4, 1.5): 4 + 6; row 0 is -1.
        assert_eq!(
            g.get(b.as_tensor()).unwrap().to_vec2::<f64>().unwrap(),
            [[6.0, 10.0]]
        );
    }

    #[test]
    fn gradients_match_finite_differences() {
        let x = [0.3, -1.2, 0.7, 2.0, -0.4, 0.9, -1.5, 0.2, 1.1];
        let b = [0.1, -0.3, 0.25];
        let w = t(&[1.0, -2.0, 0.5, 3.0, 1.5, -1.0, 0.7, 2.2, -0.6], &[3, 3]);
        for act in [Activation::Identity, Activation::Relu] {
            let via_x = max_gradient_error(&x, &[3, 3], |v| {
                (bias_act(v, &t(&b, &[1, 3]), act)? * &w)?.sum_all()
            })
            .unwrap();
            let via_b = max_gradient_error(&b, &[1, 3], |v| {
                (bias_act(&t(&x, &[3, 3]), v, act)? * &w)?.sum_all()
            })
            .unwrap();
            assert!(via_x < 1e-6 && via_b < 1e-6, "{act:?}: {via_x} {via_b}");
        }
    }
}
