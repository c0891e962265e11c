//! BPR-MF: matrix factorisation trained with the BPR pairwise loss by plain
//! SGD over uniformly sampled negatives (Rendle et al., 2009).
//!
//! Plain Rust SGD rather than candle: one BPR step touches three rows of
//! width `dim`, and a tensor framework's per-op overhead dwarfs that work
//! (see docs/performance.md for the measurement).

use std::path::Path;
use std::time::Instant;

use hinrec_data::Interactions;
use hinrec_eval::{score_pairs_by_user, score_users_by_user, ScoreError, Scorer};
use hinrec_sample::unseen_item;
use rand::seq::SliceRandom;
use rand::{Rng, SeedableRng};
use rand_chacha::ChaCha8Rng;
use rand_distr::{Distribution, Normal};
use serde::{Deserialize, Serialize};

use crate::error::{BaselineError, Result};
use crate::io::{self, Array, Loaded};
use hinrec_train::{EpochReport, EpochTracker, FitSummary, Validation};

/// Hyper-parameters of BPR-MF.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
#[serde(default, deny_unknown_fields)]
pub struct BprConfig {
    /// Embedding size.
    pub dim: usize,
    /// SGD learning rate.
    pub lr: f32,
    /// L2 weight on the rows a step touches.
    pub reg: f32,
    /// Maximum epochs (one epoch = one pass over the training pairs).
    pub epochs: usize,
    /// Epochs without validation improvement before stopping.
    pub patience: usize,
    /// Standard deviation of the normal initialisation.
    pub init_std: f32,
    /// Learn an item bias.
    pub item_bias: bool,
}

impl Default for BprConfig {
    fn default() -> Self {
        BprConfig {
            dim: 64,
            lr: 0.03,
            reg: 0.01,
            epochs: 200,
            patience: 20,
            init_std: 0.1,
            item_bias: true,
        }
    }
}

/// A trained BPR-MF model.
#[derive(Debug, Clone, PartialEq)]
pub struct BprMf {
    dim: usize,
    users: Vec<f32>,
    items: Vec<f32>,
    bias: Vec<f32>,
}

impl BprMf {
    /// A model with normally initialised factors.
    pub fn init(n_users: usize, n_items: usize, cfg: &BprConfig, seed: u64) -> Result<Self> {
        let valid = cfg.lr.is_finite() && cfg.lr > 0.0 && cfg.reg >= 0.0 && cfg.init_std >= 0.0;
        if cfg.dim == 0 || !valid {
            return Err(BaselineError::Config(format!(
                "BPR needs dim > 0, lr > 0, reg >= 0 and init_std >= 0 (got {cfg:?})"
            )));
        }
        let mut rng = ChaCha8Rng::seed_from_u64(seed);
        let normal =
            Normal::new(0.0, cfg.init_std).map_err(|e| BaselineError::Config(e.to_string()))?;
        let mut draw = |n: usize| -> Vec<f32> { (0..n).map(|_| normal.sample(&mut rng)).collect() };
        Ok(BprMf {
            dim: cfg.dim,
            users: draw(n_users * cfg.dim),
            items: draw(n_items * cfg.dim),
            bias: vec![0.0; n_items],
        })
    }

    /// Trains on `train`, evaluating `validation` after every epoch and
    /// keeping the best epoch's parameters. `on_epoch` sees every epoch.
    pub fn fit(
        train: &Interactions,
        cfg: &BprConfig,
        validation: &Validation<'_>,
        seed: u64,
        mut on_epoch: impl FnMut(&EpochReport),
    ) -> Result<(Self, FitSummary)> {
        let mut model = Self::init(train.n_users(), train.n_items(), cfg, seed)?;
        if train.is_empty() {
            return Err(BaselineError::Config("no training interactions".into()));
        }
        let mut rng = ChaCha8Rng::seed_from_u64(seed.wrapping_add(0x9e37_79b9));
        let mut order: Vec<(u32, u32)> = train.pairs().collect();
        let mut best = model.clone();
        let mut tracker = EpochTracker::new(cfg.patience, order.len());
        for epoch in 1..=cfg.epochs {
            let t = Instant::now();
            order.shuffle(&mut rng);
            let loss = model.epoch(train, &order, cfg, &mut rng);
            let dt = t.elapsed().as_secs_f64();
            let valid = validation
                .score(&model)
                .map_err(|e| BaselineError::Config(e.to_string()))?;
            let (report, keep) = tracker.record(epoch, loss, dt, valid);
            if keep {
                best.clone_from(&model);
            }
            on_epoch(&report);
            if tracker.should_stop() {
                break;
            }
        }
        let summary = tracker.summary();
        Ok((best, summary))
    }

    /// One pass of SGD over `order`; returns the mean BPR loss.
    fn epoch(
        &mut self,
        train: &Interactions,
        order: &[(u32, u32)],
        cfg: &BprConfig,
        rng: &mut impl Rng,
    ) -> f64 {
        let d = self.dim;
        let n_items = train.n_items() as u32;
        let (lr, reg) = (cfg.lr, cfg.reg);
        let mut loss = 0.0f64;
        let mut pu = vec![0f32; d];
        for &(u, i) in order {
            let Some(j) = unseen_item(train.user_items(u), n_items, rng) else {
                continue;
            };
            let (u, i, j) = (u as usize, i as usize, j as usize);
            pu.copy_from_slice(&self.users[u * d..(u + 1) * d]);
            let (qi, qj) = two_rows(&mut self.items, i, j, d);
            let mut x = dot_difference(&pu, qi, qj);
            if cfg.item_bias {
                x += self.bias[i] - self.bias[j];
            }
            // d/dx of -ln sigmoid(x) is -sigmoid(-x).
            let g = 1.0 / (1.0 + x.exp());
            loss += f64::from(softplus(-x));
            let p = &mut self.users[u * d..(u + 1) * d];
            // Zipped, so the loop has no bounds checks and vectorises.
            for (((p, &a), b), c) in p.iter_mut().zip(&pu).zip(qi.iter_mut()).zip(qj.iter_mut()) {
                let (bv, cv) = (*b, *c);
                *p += lr * (g * (bv - cv) - reg * a);
                *b += lr * (g * a - reg * bv);
                *c += lr * (-g * a - reg * cv);
            }
            if cfg.item_bias {
                self.bias[i] += lr * (g - reg * self.bias[i]);
                self.bias[j] += lr * (-g - reg * self.bias[j]);
            }
        }
        loss / order.len().max(1) as f64
    }

    /// Embedding size.
    pub fn dim(&self) -> usize {
        self.dim
    }

    /// The user factors, row-major `n_users x dim`.
    pub fn user_factors(&self) -> &[f32] {
        &self.users
    }

    /// The item factors, row-major `n_items x dim`.
    pub fn item_factors(&self) -> &[f32] {
        &self.items
    }

    /// Saves to safetensors.
    pub fn save(&self, path: &Path) -> Result<()> {
        let (nu, ni, d) = (self.users.len() / self.dim, self.bias.len(), self.dim);
        io::save(
            path,
            vec![
                ("user_factors", Array::F32(&self.users, vec![nu, d])),
                ("item_factors", Array::F32(&self.items, vec![ni, d])),
                ("item_bias", Array::F32(&self.bias, vec![ni])),
            ],
            "bpr",
        )
    }

    /// Loads from safetensors.
    pub fn load(path: &Path) -> Result<Self> {
        let l = Loaded::read(path)?;
        let (users, us) = l.f32("user_factors")?;
        let (items, is) = l.f32("item_factors")?;
        let (bias, _) = l.f32("item_bias")?;
        if us.len() != 2 || is.len() != 2 || us[1] != is[1] || bias.len() != is[0] {
            return Err(BaselineError::Format {
                path: path.to_path_buf(),
                message: format!("inconsistent shapes {us:?} {is:?} [{}]", bias.len()),
            });
        }
        Ok(BprMf {
            dim: us[1],
            users,
            items,
            bias,
        })
    }
}

fn softplus(x: f32) -> f32 {
    if x > 20.0 {
        x
    } else {
        x.exp().ln_1p()
    }
}

/// Mutable rows `i` and `j` (distinct) of a row-major matrix.
fn two_rows(m: &mut [f32], i: usize, j: usize, d: usize) -> (&mut [f32], &mut [f32]) {
    debug_assert_ne!(i, j);
    if i < j {
        let (a, b) = m.split_at_mut(j * d);
        (&mut a[i * d..(i + 1) * d], &mut b[..d])
    } else {
        let (a, b) = m.split_at_mut(i * d);
        (&mut b[..d], &mut a[j * d..(j + 1) * d])
    }
}

impl BprMf {
    /// Writes the score of each of `items` for `user` into `out` (ids must
    /// be in range).
    pub fn score_user(&self, user: u32, items: &[u32], out: &mut [f32]) {
        let d = self.dim;
        let p = &self.users[user as usize * d..(user as usize + 1) * d];
        for (o, &i) in out.iter_mut().zip(items) {
            let q = &self.items[i as usize * d..(i as usize + 1) * d];
            *o = dot(p, q) + self.bias[i as usize];
        }
    }

    fn score_user_all(&self, user: u32, out: &mut [f32]) {
        let d = self.dim;
        let p = &self.users[user as usize * d..(user as usize + 1) * d];
        for ((o, q), b) in out
            .iter_mut()
            .zip(self.items.chunks_exact(d))
            .zip(&self.bias)
        {
            *o = dot(p, q) + b;
        }
    }

    fn n_users(&self) -> usize {
        self.users.len() / self.dim.max(1)
    }
}

impl Scorer for BprMf {
    fn n_items(&self) -> usize {
        self.bias.len()
    }

    fn score_pairs(&self, pairs: &[(u32, u32)], out: &mut [f32]) -> Result<(), ScoreError> {
        score_pairs_by_user(self.n_users(), self.n_items(), pairs, out, |u, items, o| {
            self.score_user(u, items, o)
        })
    }

    fn score_users(&self, users: &[u32], out: &mut [f32]) -> Result<(), ScoreError> {
        score_users_by_user(self.n_users(), self.n_items(), users, out, |u, o| {
            self.score_user_all(u, o)
        })
    }
}

/// Lanes of [`dot_difference`]'s partial sums.
const LANES: usize = 8;

/// `p . (a - b)` with [`LANES`] partial sums, which the compiler keeps in
/// one SIMD register (a single running sum is a chain of dependent adds
/// that cannot be vectorised).
fn dot_difference(p: &[f32], a: &[f32], b: &[f32]) -> f32 {
    let mut acc = [0f32; LANES];
    let (pc, ac, bc) = (
        p.chunks_exact(LANES),
        a.chunks_exact(LANES),
        b.chunks_exact(LANES),
    );
    let tail: f32 = pc
        .remainder()
        .iter()
        .zip(ac.remainder())
        .zip(bc.remainder())
        .map(|((p, a), b)| p * (a - b))
        .sum();
    for ((p, a), b) in pc.zip(ac).zip(bc) {
        for l in 0..LANES {
            acc[l] += p[l] * (a[l] - b[l]);
        }
    }
    acc.iter().sum::<f32>() + tail
}

fn dot(a: &[f32], b: &[f32]) -> f32 {
    a.iter().zip(b).map(|(x, y)| x * y).sum()
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn one_step_matches_the_hand_computed_gradient() {
        // One user, two items, dim 1: p = 0.5, q_i = 0.2, q_j = -0.4.
        let mut m = BprMf {
            dim: 1,
            users: vec![0.5],
            items: vec![0.2, -0.4],
            bias: vec![0.0, 0.0],
        };
        let train = Interactions::from_pairs(1, 2, &[(0, 0)]);
        let cfg = BprConfig {
            dim: 1,
            lr: 0.1,
            reg: 0.0,
            item_bias: false,
            ..BprConfig::default()
        };
        let mut rng = ChaCha8Rng::seed_from_u64(0);
        let loss = m.epoch(&train, &[(0, 0)], &cfg, &mut rng);
        let x = 0.5f32 * (0.2 + 0.4);
        let g = 1.0 / (1.0 + x.exp());
        assert!((loss - f64::from((1.0 + (-x).exp()).ln())).abs() < 1e-6);
        assert!((m.users[0] - (0.5 + 0.1 * g * 0.6)).abs() < 1e-6);
        assert!((m.items[0] - (0.2 + 0.1 * g * 0.5)).abs() < 1e-6);
        assert!((m.items[1] - (-0.4 - 0.1 * g * 0.5)).abs() < 1e-6);
    }

    #[test]
    fn fit_is_deterministic_and_round_trips() {
        let train = Interactions::from_pairs(3, 5, &[(0, 0), (0, 1), (1, 1), (2, 3)]);
        let cfg = BprConfig {
            epochs: 3,
            dim: 4,
            ..BprConfig::default()
        };
        let (a, s) = BprMf::fit(&train, &cfg, &Validation::none(), 5, |_| {}).unwrap();
        let (b, _) = BprMf::fit(&train, &cfg, &Validation::none(), 5, |_| {}).unwrap();
        assert_eq!(a, b);
        assert_eq!(s.epochs, 3);
        let dir = tempfile::tempdir().unwrap();
        let p = dir.path().join("bpr.safetensors");
        a.save(&p).unwrap();
        assert_eq!(BprMf::load(&p).unwrap(), a);
        assert!(BprMf::init(1, 1, &BprConfig { lr: -1.0, ..cfg }, 0).is_err());
    }
}
