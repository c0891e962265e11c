//! Finite-difference gradient checks (in f64).

use candle_core::{Device, Result, Tensor, Var};

/// The largest relative difference between candle's gradient of the scalar
/// `f` at `x` (shape `shape`, f64) and central finite differences with step
/// 1e-6. Relative to `max(1, |g|)`.
pub fn max_gradient_error(
    x: &[f64],
    shape: &[usize],
    f: impl Fn(&Tensor) -> Result<Tensor>,
) -> Result<f64> {
    let dev = Device::Cpu;
    let var = Var::from_tensor(&Tensor::from_vec(x.to_vec(), shape, &dev)?)?;
    let y = f(var.as_tensor())?;
    let grads = y.backward()?;
    let g: Vec<f64> = match grads.get(var.as_tensor()) {
        Some(g) => g.flatten_all()?.to_vec1()?,
        None => vec![0.0; x.len()],
    };
    let eps = 1e-6;
    let eval =
        |v: Vec<f64>| -> Result<f64> { f(&Tensor::from_vec(v, shape, &dev)?)?.to_scalar::<f64>() };
    let mut worst = 0f64;
    for k in 0..x.len() {
        let mut hi = x.to_vec();
        hi[k] += eps;
        let mut lo = x.to_vec();
        lo[k] -= eps;
        let numeric = (eval(hi)? - eval(lo)?) / (2.0 * eps);
        worst = worst.max((numeric - g[k]).abs() / g[k].abs().max(1.0));
    }
    Ok(worst)
}
