//! Seeded parameter initialisation.

use candle_core::{DType, Device, Result, Tensor, Var};
use rand::SeedableRng;
use rand_chacha::ChaCha8Rng;
use rand_distr::{Distribution, Normal};

/// The seeded random stream every initial value comes from.
pub struct Rng(ChaCha8Rng);

impl Rng {
    /// A stream for `seed`.
    pub fn new(seed: u64) -> Self {
        Rng(ChaCha8Rng::seed_from_u64(seed))
    }

    /// The underlying generator.
    pub fn inner(&mut self) -> &mut ChaCha8Rng {
        &mut self.0
    }

    /// `n` draws from N(0, std²).
    pub fn normal(&mut self, n: usize, std: f64) -> Vec<f64> {
        let d = Normal::new(0.0, std.max(0.0)).expect("std is non-negative");
        (0..n).map(|_| d.sample(&mut self.0)).collect()
    }

    /// `n` draws from U(-a, a).
    pub fn uniform(&mut self, n: usize, a: f64) -> Vec<f64> {
        use rand::Rng as _;
        let a = a.abs();
        (0..n).map(|_| self.0.random_range(-a..=a)).collect()
    }

    /// [`Rng::uniform`] as f32 (the same draws, rounded).
    pub fn uniform_f32(&mut self, n: usize, a: f64) -> Vec<f32> {
        self.uniform(n, a).into_iter().map(|v| v as f32).collect()
    }

    /// A `rows x cols` tensor with Xavier (Glorot) normal values:
    /// std = sqrt(2 / (fan_in + fan_out)), as LGRec's authors initialise.
    pub fn xavier_normal(
        &mut self,
        rows: usize,
        cols: usize,
        dtype: DType,
        dev: &Device,
    ) -> Result<Tensor> {
        let std = (2.0 / (rows + cols) as f64).sqrt();
        let values = self.normal(rows * cols, std);
        Tensor::from_vec(values, (rows, cols), dev)?.to_dtype(dtype)
    }

    /// A trainable variable with Xavier normal values.
    pub fn xavier_var(
        &mut self,
        rows: usize,
        cols: usize,
        dtype: DType,
        dev: &Device,
    ) -> Result<Var> {
        Var::from_tensor(&self.xavier_normal(rows, cols, dtype, dev)?)
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn seeded_and_scaled() {
        let dev = Device::Cpu;
        let a = Rng::new(3)
            .xavier_normal(200, 300, DType::F64, &dev)
            .unwrap();
        let b = Rng::new(3)
            .xavier_normal(200, 300, DType::F64, &dev)
            .unwrap();
        let a: Vec<f64> = a.flatten_all().unwrap().to_vec1().unwrap();
        let b: Vec<f64> = b.flatten_all().unwrap().to_vec1().unwrap();
        assert_eq!(a, b);
        let var = a.iter().map(|x| x * x).sum::<f64>() / a.len() as f64;
        let want = 2.0 / 500.0;
        assert!((var - want).abs() < 0.05 * want, "{var} vs {want}");
    }
}
