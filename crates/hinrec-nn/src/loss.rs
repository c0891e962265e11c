//! Losses: hinge, BPR, sigmoid cross-entropy with logits, L2.

use candle_core::{Result, Tensor};

/// `mean(max(0, margin + pos - neg))` over distances (lower is better):
/// LGRec eq. 10.
pub fn hinge(pos: &Tensor, neg: &Tensor, margin: f64) -> Result<Tensor> {
    ((pos - neg)? + margin)?.relu()?.mean_all()
}

/// `ln(1 + e^x)`, computed without overflow.
pub fn softplus(x: &Tensor) -> Result<Tensor> {
    x.relu()? + (x.abs()?.neg()?.exp()? + 1.0)?.log()?
}

/// [`softplus`] of one plain value (for losses computed outside candle):
/// `x` itself above 20, where `ln(1 + e^x)` equals it in `f32`.
pub fn softplus_f32(x: f32) -> f32 {
    if x > 20.0 {
        x
    } else {
        x.exp().ln_1p()
    }
}

/// `mean(-ln sigmoid(pos - neg))` over scores (higher is better).
pub fn bpr(pos: &Tensor, neg: &Tensor) -> Result<Tensor> {
    softplus(&(neg - pos)?)?.mean_all()
}

/// Sigmoid cross-entropy with logits (LGRec eq. 8), averaged over every
/// element: `max(x, 0) - x y + ln(1 + e^-|x|)`.
pub fn bce_with_logits(logits: &Tensor, targets: &Tensor) -> Result<Tensor> {
    let l =
        ((logits.relu()? - (logits * targets)?)? + (logits.abs()?.neg()?.exp()? + 1.0)?.log()?)?;
    l.mean_all()
}

/// Sum of squares of every tensor.
pub fn l2(tensors: &[&Tensor]) -> Result<Tensor> {
    let mut total: Option<Tensor> = None;
    for t in tensors {
        let s = t.sqr()?.sum_all()?;
        total = Some(match total {
            Some(acc) => (acc + s)?,
            None => s,
        });
    }
    match total {
        Some(t) => Ok(t),
        None => candle_core::bail!("l2 of no tensors"),
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::gradcheck::max_gradient_error;
    use candle_core::Device;

    fn t(v: &[f64]) -> Tensor {
        Tensor::from_vec(v.to_vec(), v.len(), &Device::Cpu).unwrap()
    }

    #[test]
    fn hand_computed_values() {
        let h = hinge(&t(&[1.0, 3.0]), &t(&[2.0, 1.0]), 0.5).unwrap();
        // max(0, 0.5 - 1) = 0, max(0, 0.5 + 2) = 2.5 -> mean 1.25
        assert!((h.to_scalar::<f64>().unwrap() - 1.25).abs() < 1e-12);
        let b = bpr(&t(&[2.0]), &t(&[0.0]))
            .unwrap()
            .to_scalar::<f64>()
            .unwrap();
        assert!((b - (1.0 + (-2f64).exp()).ln()).abs() < 1e-12);
        let c = bce_with_logits(&t(&[0.0, 2.0]), &t(&[1.0, 0.0]))
            .unwrap()
            .to_scalar::<f64>()
            .unwrap();
        let want = (2f64.ln() + (2.0 + (1.0 + (-2f64).exp()).ln())) / 2.0;
        assert!((c - want).abs() < 1e-12);
        let big = softplus(&t(&[1000.0, -1000.0]))
            .unwrap()
            .to_vec1::<f64>()
            .unwrap();
        assert_eq!(big, vec![1000.0, 0.0]);
        let r = l2(&[&t(&[1.0, 2.0]), &t(&[3.0])])
            .unwrap()
            .to_scalar::<f64>()
            .unwrap();
        assert_eq!(r, 14.0);
    }

    #[test]
    fn gradients_match_finite_differences() {
        let y = t(&[1.0, 0.0, 1.0]);
        let e = max_gradient_error(&[0.3, -1.2, 2.5], &[3], |x| bce_with_logits(x, &y)).unwrap();
        assert!(e < 1e-6, "{e}");
        let neg = t(&[0.1, 0.2, -0.3]);
        let e = max_gradient_error(&[0.3, -1.2, 2.5], &[3], |x| bpr(x, &neg)).unwrap();
        assert!(e < 1e-6, "{e}");
        let e = max_gradient_error(&[0.3, -1.2, 2.5], &[3], |x| hinge(x, &neg, 1.0)).unwrap();
        assert!(e < 1e-6, "{e}");
    }
}
