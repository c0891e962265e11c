//! Adam for dense candle variables, with its moments in the open.

use std::collections::HashMap;

use candle_core::backprop::GradStore;
use candle_core::{DType, Device, Result, Tensor, Var, WithDType};
use num_traits::Float;

/// Adam hyper-parameters (no weight decay: L2 goes into the loss).
#[derive(Debug, Clone, Copy, PartialEq)]
pub struct AdamConfig {
    /// Learning rate.
    pub lr: f64,
    /// First-moment decay.
    pub beta1: f64,
    /// Second-moment decay.
    pub beta2: f64,
    /// Denominator guard.
    pub eps: f64,
}

impl Default for AdamConfig {
    fn default() -> Self {
        AdamConfig {
            lr: 1e-3,
            beta1: 0.9,
            beta2: 0.999,
            eps: 1e-8,
        }
    }
}

/// Adam over candle variables, with its moments in the open so a checkpoint
/// can hold them and a resumed run continues exactly.
pub struct Adam {
    cfg: AdamConfig,
    step: u64,
    vars: Vec<Var>,
    m: Vec<Tensor>,
    v: Vec<Tensor>,
}

impl Adam {
    /// Adam for `vars`, moments at zero.
    pub fn new(vars: Vec<Var>, cfg: AdamConfig) -> Result<Self> {
        let m = vars
            .iter()
            .map(|v| v.zeros_like())
            .collect::<Result<Vec<_>>>()?;
        let v = vars
            .iter()
            .map(|v| v.zeros_like())
            .collect::<Result<Vec<_>>>()?;
        Ok(Adam {
            cfg,
            step: 0,
            vars,
            m,
            v,
        })
    }

    /// Steps taken.
    pub fn step_count(&self) -> u64 {
        self.step
    }

    /// One update from `grads` (variables without a gradient keep theirs).
    ///
    /// Each variable is updated by one loop over its values rather than a
    /// dozen candle ops (their fixed cost dominated small layers' steps).
    pub fn step(&mut self, grads: &GradStore) -> Result<()> {
        self.step += 1;
        let k = AdamStep::new(&self.cfg, self.step);
        for ((var, m), v) in self.vars.iter().zip(&mut self.m).zip(&mut self.v) {
            let Some(g) = grads.get(var.as_tensor()) else {
                continue;
            };
            match var.dtype() {
                DType::F64 => update_var::<f64>(var, m, v, g, &k)?,
                _ => update_var::<f32>(var, m, v, g, &k)?,
            }
        }
        Ok(())
    }

    /// One update from gradients given as plain values, one per variable
    /// in the order of [`Adam::new`]'s `vars` (for steps computed outside
    /// candle, e.g. [`crate::dense_mlp`]).
    pub fn step_with(&mut self, grads: &[&[f32]]) -> Result<()> {
        let some: Vec<Option<&[f32]>> = grads.iter().map(|&g| Some(g)).collect();
        self.step_some(&some)
    }

    /// [`Adam::step_with`] where a variable without a gradient (`None`:
    /// the step did not reach it) keeps its values and moments, as in
    /// [`Adam::step`].
    pub fn step_some(&mut self, grads: &[Option<&[f32]>]) -> Result<()> {
        if grads.len() != self.vars.len() {
            candle_core::bail!(
                "adam: {} gradients for {} variables",
                grads.len(),
                self.vars.len()
            );
        }
        for (var, g) in self.vars.iter().zip(grads) {
            if let Some(g) = g.filter(|g| g.len() != var.elem_count()) {
                candle_core::bail!(
                    "adam: a gradient of {} values for a variable of {}",
                    g.len(),
                    var.elem_count()
                );
            }
        }
        self.step += 1;
        let k = AdamStep::new(&self.cfg, self.step);
        for (((var, m), v), g) in self
            .vars
            .iter()
            .zip(&mut self.m)
            .zip(&mut self.v)
            .zip(grads)
        {
            let Some(g) = g else {
                continue;
            };
            let g = Tensor::from_slice(g, var.shape(), var.device())?;
            match var.dtype() {
                DType::F64 => update_var::<f64>(var, m, v, &g, &k)?,
                _ => update_var::<f32>(var, m, v, &g, &k)?,
            }
        }
        Ok(())
    }

    /// The state to checkpoint: `prefix.m.k`, `prefix.v.k` and the step.
    pub fn state(&self, prefix: &str) -> Result<HashMap<String, Tensor>> {
        let mut out = HashMap::new();
        for (k, (m, v)) in self.m.iter().zip(&self.v).enumerate() {
            out.insert(format!("{prefix}.m.{k}"), m.clone());
            out.insert(format!("{prefix}.v.{k}"), v.clone());
        }
        out.insert(
            format!("{prefix}.step"),
            Tensor::new(&[self.step as f64], &Device::Cpu)?,
        );
        Ok(out)
    }

    /// Restores what [`Adam::state`] saved.
    pub fn load_state(&mut self, prefix: &str, t: &HashMap<String, Tensor>) -> Result<()> {
        let get = |k: String| {
            t.get(&k)
                .cloned()
                .ok_or_else(|| candle_core::Error::Msg(format!("checkpoint lacks {k}")))
        };
        for k in 0..self.m.len() {
            self.m[k] = get(format!("{prefix}.m.{k}"))?.to_dtype(self.m[k].dtype())?;
            self.v[k] = get(format!("{prefix}.v.{k}"))?.to_dtype(self.v[k].dtype())?;
        }
        self.step = get(format!("{prefix}.step"))?.to_vec1::<f64>()?[0] as u64;
        Ok(())
    }
}

fn bias_corrections(c: &AdamConfig, step: u64) -> (f64, f64) {
    (
        1.0 - c.beta1.powi(step as i32),
        1.0 - c.beta2.powi(step as i32),
    )
}

/// The constants of one Adam step.
pub(crate) struct AdamStep {
    cfg: AdamConfig,
    bc1: f64,
    bc2: f64,
}

impl AdamStep {
    pub(crate) fn new(cfg: &AdamConfig, step: u64) -> Self {
        let (bc1, bc2) = bias_corrections(cfg, step);
        AdamStep {
            cfg: *cfg,
            bc1,
            bc2,
        }
    }

    /// Adam on values `w` with moments `m`, `v` and gradient `g`.
    pub(crate) fn apply<T: Float>(&self, w: &mut [T], m: &mut [T], v: &mut [T], g: &[T]) {
        let c = |x: f64| T::from(x).unwrap_or_else(T::zero);
        let (b1, b2, lr, eps) = (
            c(self.cfg.beta1),
            c(self.cfg.beta2),
            c(self.cfg.lr),
            c(self.cfg.eps),
        );
        let (bc1, bc2, one) = (c(self.bc1), c(self.bc2), T::one());
        for (((w, m), v), &g) in w.iter_mut().zip(m).zip(v).zip(g) {
            *m = b1 * *m + (one - b1) * g;
            *v = b2 * *v + (one - b2) * g * g;
            *w = *w - lr * (*m / bc1) / ((*v / bc2).sqrt() + eps);
        }
    }
}

/// One Adam step on a dense variable and its moment tensors.
fn update_var<T: Float + WithDType>(
    var: &Var,
    m: &mut Tensor,
    v: &mut Tensor,
    g: &Tensor,
    k: &AdamStep,
) -> Result<()> {
    let values = |t: &Tensor| -> Result<Vec<T>> { t.to_dtype(T::DTYPE)?.flatten_all()?.to_vec1() };
    let (mut wv, mut mv, mut vv) = (values(var.as_tensor())?, values(m)?, values(v)?);
    k.apply(&mut wv, &mut mv, &mut vv, &values(g)?);
    let shape = var.shape();
    *m = Tensor::from_vec(mv, shape, m.device())?.to_dtype(m.dtype())?;
    *v = Tensor::from_vec(vv, shape, v.device())?.to_dtype(v.dtype())?;
    var.set(&Tensor::from_vec(wv, shape, var.device())?.to_dtype(var.dtype())?)
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::embedding::EmbeddingTable;

    #[test]
    fn adam_first_step_moves_by_lr_against_the_gradient_sign() {
        let dev = Device::Cpu;
        let w = Var::from_tensor(&Tensor::new(&[1.0f64, -2.0], &dev).unwrap()).unwrap();
        let mut opt = Adam::new(
            vec![w.clone()],
            AdamConfig {
                lr: 0.1,
                ..Default::default()
            },
        )
        .unwrap();
        // loss = 3 w0 - 0.5 w1: gradient (3, -0.5); first Adam step = lr * sign.
        let loss = (w.as_tensor() * &Tensor::new(&[3.0f64, -0.5], &dev).unwrap())
            .unwrap()
            .sum_all()
            .unwrap();
        opt.step(&loss.backward().unwrap()).unwrap();
        let got: Vec<f64> = w.as_tensor().to_vec1().unwrap();
        assert!(
            (got[0] - 0.9).abs() < 1e-6 && (got[1] + 1.9).abs() < 1e-6,
            "{got:?}"
        );
    }

    #[test]
    fn table_updates_only_gathered_rows_like_dense_adam() {
        let dev = Device::Cpu;
        let mut t = EmbeddingTable::new(3, 2, vec![1.0, 2.0, 3.0, 4.0, 5.0, 6.0]);
        let cfg = AdamConfig {
            lr: 0.1,
            ..Default::default()
        };
        let leaf = t.gather(&[2, 0], DType::F32, &dev).unwrap();
        let loss = leaf.as_tensor().sum_all().unwrap();
        let g = loss.backward().unwrap();
        t.apply(&[2, 0], g.get(leaf.as_tensor()).unwrap(), &cfg)
            .unwrap();
        assert_eq!(t.row(1), &[3.0, 4.0]);
        for (a, b) in t.row(0).iter().zip([0.9, 1.9]) {
            assert!((a - b).abs() < 1e-6);
        }
        assert!((t.row(2)[0] - 4.9).abs() < 1e-6);
        let s = t.state("emb").unwrap();
        assert_eq!(EmbeddingTable::from_state("emb", &s).unwrap(), t);
    }

    /// Ascending ids take the parallel path, others the sequential one:
    /// the same rows get the same updates either way.
    #[test]
    fn row_updates_in_parallel_equal_the_sequential_ones() {
        let (rows, dim) = (700, 3);
        let data: Vec<f32> = (0..rows * dim).map(|k| (k % 17) as f32 * 0.1).collect();
        let (mut a, mut b) = (
            EmbeddingTable::new(rows, dim, data.clone()),
            EmbeddingTable::new(rows, dim, data),
        );
        let cfg = AdamConfig::default();
        let up: Vec<u32> = (0..rows as u32).filter(|r| r % 3 != 1).collect();
        let down: Vec<u32> = up.iter().rev().copied().collect();
        let g: Vec<f32> = (0..up.len() * dim).map(|k| (k % 7) as f32 - 3.0).collect();
        let g_down: Vec<f32> = g
            .chunks(dim)
            .rev()
            .flat_map(|c| c.iter().copied())
            .collect();
        let untouched = a.row(1).to_vec();
        for _ in 0..3 {
            a.apply_rows(&up, &g, &cfg).unwrap();
            b.apply_rows(&down, &g_down, &cfg).unwrap();
        }
        assert_eq!(a, b);
        assert_eq!(a.row(1), untouched.as_slice());
        assert_ne!(a.row(0), b.row(1));
        // The same rows' gradient read from a table-shaped buffer.
        let mut c = EmbeddingTable::new(
            rows,
            dim,
            (0..rows * dim).map(|k| (k % 17) as f32 * 0.1).collect(),
        );
        let mut full = vec![0f32; rows * dim];
        for (n, &r) in up.iter().enumerate() {
            full[r as usize * dim..(r as usize + 1) * dim]
                .copy_from_slice(&g[n * dim..(n + 1) * dim]);
        }
        for _ in 0..3 {
            c.apply_table_rows(&up, &full, &cfg).unwrap();
        }
        assert_eq!(c, a);
        assert!(c.apply_table_rows(&down, &full, &cfg).is_err());
        assert!(c.apply_table_rows(&up, &g, &cfg).is_err());
        assert!(a.apply_rows(&[700], &[0.0; 3], &cfg).is_err());
        assert!(a.apply_rows(&[1], &[0.0; 2], &cfg).is_err());
    }

    #[test]
    fn adam_state_round_trips_and_resumes_exactly() {
        let dev = Device::Cpu;
        let run = |resume: bool| -> Vec<f64> {
            let w = Var::from_tensor(&Tensor::new(&[0.5f64, -1.0, 2.0], &dev).unwrap()).unwrap();
            let mut opt = Adam::new(vec![w.clone()], AdamConfig::default()).unwrap();
            let step = |opt: &mut Adam| {
                let loss = w.as_tensor().sqr().unwrap().sum_all().unwrap();
                opt.step(&loss.backward().unwrap()).unwrap();
            };
            step(&mut opt);
            if resume {
                let state = opt.state("opt").unwrap();
                let saved = w.as_tensor().copy().unwrap();
                let mut fresh = Adam::new(vec![w.clone()], AdamConfig::default()).unwrap();
                fresh.load_state("opt", &state).unwrap();
                w.set(&saved).unwrap();
                opt = fresh;
            }
            step(&mut opt);
            w.as_tensor().to_vec1().unwrap()
        };
        assert_eq!(run(false), run(true));
    }
}
