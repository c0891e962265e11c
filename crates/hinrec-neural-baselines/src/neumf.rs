//! NeuMF (He et al., WWW 2017): a GMF tower `p_u ⊙ q_i` (eq. 9) and an MLP
//! tower over `[p_u; q_i]` with ReLU layers (eq. 10), fused by one output
//! layer `ŷ = σ(h^T [φ_GMF; φ_MLP])` (eq. 11), trained pointwise with
//! binary cross-entropy (eq. 7) on each training pair and `negatives`
//! sampled unseen items, Adam. Pretraining the towers apart is left out
//! (the paper's Table 2 shows it is optional). [`Towers::Gmf`] keeps the
//! GMF tower alone (`ŷ = σ(h^T φ_GMF)`, the paper's GMF and LGRec's "MF"
//! row: matrix factorisation under the cross-entropy loss).
//!
//! The four embedding tables are updated row-wise (lazy Adam over the
//! batch's rows); the MLP runs as hinrec-nn's fused dense MLP.

use std::collections::HashMap;
use std::ops::Range;
use std::path::Path;
use std::time::Instant;

use candle_core::{DType, Device, Tensor, Var};
use hinrec_data::Interactions;
use hinrec_eval::{ScoreError, Scorer};
use hinrec_nn::checkpoint;
use hinrec_nn::dense_mlp::{gemm, DenseMlp, Grads, Tape};
use hinrec_nn::embedding::EmbeddingTable;
use hinrec_nn::init::Rng;
use hinrec_nn::layers::{Linear, Mlp};
use hinrec_nn::loss::softplus_f32 as softplus;
use hinrec_nn::optim::{Adam, AdamConfig};
use hinrec_nn::trainer::{train as train_epochs, TrainStep, TrainerConfig};
use hinrec_sample::unseen_item;
use hinrec_train::{FitContext, FitSummary, Judge, ModelError};
use rand::seq::SliceRandom;
use rand_chacha::ChaCha8Rng;
use serde::{Deserialize, Serialize};

use crate::error::{NeuralError, Result};

/// Rows scored per forward pass.
const SCORE_ROWS: usize = 8192;

/// Which towers feed the output layer.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Default, Serialize, Deserialize)]
#[serde(rename_all = "lowercase")]
pub enum Towers {
    /// GMF and MLP (NeuMF, eq. 11).
    #[default]
    Both,
    /// GMF alone (the paper's GMF, eq. 9 under one output layer); the MLP
    /// settings are then unused.
    Gmf,
}

/// NeuMF's hyper-parameters (RecBole's defaults where the paper leaves a
/// choice; see each field).
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
#[serde(default, deny_unknown_fields)]
pub struct NeuMfConfig {
    /// Which towers the model has (`both`: NeuMF; `gmf`: GMF alone).
    pub towers: Towers,
    /// GMF embedding size (RecBole's 64).
    pub gmf_dim: usize,
    /// MLP embedding size (RecBole's 64; the MLP's input is twice this).
    pub mlp_dim: usize,
    /// Widths of the MLP's ReLU layers (RecBole's `[128, 64]`).
    pub hidden: Vec<usize>,
    /// Adam learning rate (0.001 in both).
    pub lr: f64,
    /// Sampled unseen items per training pair (the paper's 4).
    pub negatives: usize,
    /// L2 weight on the batch's embedding rows, over the batch (0: none,
    /// as the paper).
    pub reg: f64,
    /// Rows (positives and negatives) per step.
    pub batch: usize,
    /// Standard deviation of the embeddings' normal initialisation (the
    /// paper's 0.01).
    pub init_std: f64,
    /// Maximum epochs.
    pub epochs: usize,
    /// Epochs without validation improvement before stopping.
    pub patience: usize,
}

impl Default for NeuMfConfig {
    fn default() -> Self {
        NeuMfConfig {
            towers: Towers::Both,
            gmf_dim: 64,
            mlp_dim: 64,
            hidden: vec![128, 64],
            lr: 0.001,
            negatives: 4,
            reg: 0.0,
            batch: 2048,
            init_std: 0.01,
            epochs: 100,
            patience: 10,
        }
    }
}

impl NeuMfConfig {
    /// Checks every value.
    pub fn check(&self) -> Result<()> {
        let ok = self.gmf_dim > 0
            && self.mlp_dim > 0
            && !self.hidden.is_empty()
            && self.hidden.iter().all(|&h| h > 0)
            && self.negatives > 0
            && self.batch > 0
            && self.patience > 0
            && self.lr.is_finite()
            && self.lr > 0.0
            && self.reg.is_finite()
            && self.reg >= 0.0
            && self.init_std.is_finite()
            && self.init_std >= 0.0;
        if !ok {
            return Err(NeuralError::Config(format!(
                "NeuMF needs gmf_dim, mlp_dim, every hidden width, negatives, batch and patience > 0, lr > 0, reg >= 0 and init_std >= 0 (got {self:?})"
            )));
        }
        Ok(())
    }
}

/// A NeuMF model: its embedding tables, MLP and output layer.
pub struct NeuMf {
    cfg: NeuMfConfig,
    user_gmf: EmbeddingTable,
    item_gmf: EmbeddingTable,
    /// The MLP tower; `None` for GMF alone.
    mlp: Option<MlpTower>,
    out: Linear,
    /// The output layer as plain rows (GMF's weights, then the MLP's),
    /// refreshed after each step.
    out_w: Vec<f32>,
    out_b: f32,
}

/// Eq. 10's tower: its embedding tables and ReLU layers.
struct MlpTower {
    user: EmbeddingTable,
    item: EmbeddingTable,
    layers: Mlp,
    /// The layers as plain rows, refreshed after each step.
    dense: DenseMlp,
}

impl std::fmt::Debug for NeuMf {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("NeuMf").field("cfg", &self.cfg).finish()
    }
}

/// A forward pass over rows: what the backward needs.
struct Forward {
    /// The MLP tower's pass (`None` for GMF alone).
    tape: Option<Tape>,
    /// `p_u ⊙ q_i`, `rows x gmf_dim`.
    gmf: Vec<f32>,
    logits: Vec<f32>,
}

impl NeuMf {
    /// A seeded model for `n_users x n_items`.
    pub fn new(n_users: usize, n_items: usize, cfg: &NeuMfConfig, seed: u64) -> Result<Self> {
        cfg.check()?;
        let mut rng = Rng::new(seed);
        let mut table = |n: usize, d: usize| {
            let v = rng.normal(n * d, cfg.init_std);
            EmbeddingTable::new(n, d, v.into_iter().map(|x| x as f32).collect())
        };
        let (user_gmf, item_gmf) = (table(n_users, cfg.gmf_dim), table(n_items, cfg.gmf_dim));
        let dev = Device::Cpu;
        let (mlp, last) = match cfg.towers {
            Towers::Both => {
                let (user, item) = (table(n_users, cfg.mlp_dim), table(n_items, cfg.mlp_dim));
                let mut dims = vec![2 * cfg.mlp_dim];
                dims.extend(&cfg.hidden);
                let layers = Mlp::new(&mut rng, &dims, DType::F32, &dev)?;
                let tower = MlpTower {
                    user,
                    item,
                    layers,
                    dense: DenseMlp {
                        layers: Vec::new(),
                        normalize: false,
                    },
                };
                (Some(tower), dims[dims.len() - 1])
            }
            Towers::Gmf => (None, 0),
        };
        let out = Linear::new(&mut rng, cfg.gmf_dim + last, 1, DType::F32, &dev)?;
        let mut m = NeuMf {
            cfg: cfg.clone(),
            user_gmf,
            item_gmf,
            mlp,
            out,
            out_w: Vec::new(),
            out_b: 0.0,
        };
        m.refresh()?;
        Ok(m)
    }

    /// The parameters it was built with.
    pub fn config(&self) -> &NeuMfConfig {
        &self.cfg
    }

    /// Copies the dense layers' current values into their plain rows.
    fn refresh(&mut self) -> Result<()> {
        if let Some(t) = &mut self.mlp {
            t.dense = t.layers.to_dense(false)?;
        }
        self.out_w = self.out.weight.as_tensor().flatten_all()?.to_vec1()?;
        self.out_b = self.out.bias.as_tensor().flatten_all()?.to_vec1::<f32>()?[0];
        Ok(())
    }

    /// The dense variables, in the order Adam takes their gradients.
    fn dense_vars(&self) -> Vec<(String, Var)> {
        let mut v = match &self.mlp {
            Some(t) => t.layers.named_vars("mlp"),
            None => Vec::new(),
        };
        v.extend(self.out.named_vars("out"));
        v
    }

    /// The MLP tower's output width (0 for GMF alone).
    fn mlp_width(&self) -> usize {
        self.mlp.as_ref().map_or(0, |t| t.dense.d_out())
    }

    /// Eq. 11's logits for `(users[k], items[k])`.
    fn forward(&self, users: &[u32], items: &[u32]) -> Result<Forward> {
        let dg = self.cfg.gmf_dim;
        let n = users.len();
        let mut gmf = Vec::with_capacity(n * dg);
        for (&u, &i) in users.iter().zip(items) {
            let (p, q) = (self.user_gmf.row(u), self.item_gmf.row(i));
            gmf.extend(p.iter().zip(q).map(|(a, b)| a * b));
        }
        let tape = match &self.mlp {
            Some(t) => {
                let dm = self.cfg.mlp_dim;
                let mut x = Vec::with_capacity(n * 2 * dm);
                for (&u, &i) in users.iter().zip(items) {
                    x.extend_from_slice(t.user.row(u));
                    x.extend_from_slice(t.item.row(i));
                }
                Some(t.dense.forward(&x, n)?)
            }
            None => None,
        };
        let h = self.mlp_width();
        let mlp_out: &[f32] = tape.as_ref().map_or(&[], |t| &t.out);
        let (wg, wm) = self.out_w.split_at(dg);
        let logits = gmf
            .chunks_exact(dg)
            .enumerate()
            .map(|(r, g)| {
                let a: f32 = g.iter().zip(wg).map(|(x, w)| x * w).sum();
                let m = &mlp_out[r * h..(r + 1) * h];
                let b: f32 = m.iter().zip(wm).map(|(x, w)| x.max(0.0) * w).sum();
                a + b + self.out_b
            })
            .collect();
        Ok(Forward { tape, gmf, logits })
    }

    /// One step of eq. 7 on rows `(users[k], items[k])` with labels `y`;
    /// returns the mean loss.
    fn step(
        &mut self,
        users: &[u32],
        items: &[u32],
        y: &[f32],
        adam: &mut Adam,
        emb: &AdamConfig,
    ) -> Result<f64> {
        let dg = self.cfg.gmf_dim;
        let n = users.len();
        let mut f = self.forward(users, items)?;
        let h = self.mlp_width();
        let mlp_out: &[f32] = f.tape.as_ref().map_or(&[], |t| &t.out);
        let (wg, wm) = self.out_w.split_at(dg);
        let mut loss = 0f64;
        let mut d_out_w = vec![0f32; dg + h];
        let mut d_out_b = 0f32;
        let mut d_gmf = vec![0f32; n * dg];
        let mut d_h = vec![0f32; n * h];
        for r in 0..n {
            let (z, t) = (f.logits[r], y[r]);
            loss += f64::from(softplus(z) - t * z);
            let c = (sigmoid(z) - t) / n as f32;
            d_out_b += c;
            let (g, m) = (&f.gmf[r * dg..(r + 1) * dg], &mlp_out[r * h..(r + 1) * h]);
            for k in 0..dg {
                d_out_w[k] += c * g[k];
                d_gmf[r * dg + k] = c * wg[k];
            }
            for k in 0..h {
                d_out_w[dg + k] += c * m[k].max(0.0);
                d_h[r * h + k] = if m[k] > 0.0 { c * wm[k] } else { 0.0 };
            }
        }
        loss /= n.max(1) as f64;
        let mut grads = Grads::default();
        if let (Some(t), Some(tape)) = (&self.mlp, f.tape.as_mut()) {
            t.dense.backward_into(tape, &d_h, &mut grads)?;
        }
        // Per distinct user and item, the rows' gradients summed, in the
        // order of `tables()`.
        let (uu, us) = distinct(users);
        let (ui, is) = distinct(items);
        let dm = self.mlp.as_ref().map_or(0, |_| self.cfg.mlp_dim);
        let mut g = vec![vec![0f32; uu.len() * dg], vec![0f32; ui.len() * dg]];
        if dm > 0 {
            g.push(vec![0f32; uu.len() * dm]);
            g.push(vec![0f32; ui.len() * dm]);
        }
        for r in 0..n {
            let (su, si) = (us[r] as usize, is[r] as usize);
            let (p, q) = (self.user_gmf.row(users[r]), self.item_gmf.row(items[r]));
            let dgr = &d_gmf[r * dg..(r + 1) * dg];
            for k in 0..dg {
                g[0][su * dg + k] += dgr[k] * q[k];
                g[1][si * dg + k] += dgr[k] * p[k];
            }
            if dm > 0 {
                let dx = &grads.input[r * 2 * dm..(r + 1) * 2 * dm];
                for k in 0..dm {
                    g[2][su * dm + k] += dx[k];
                    g[3][si * dm + k] += dx[dm + k];
                }
            }
        }
        let tables = self.tables();
        if self.cfg.reg > 0.0 {
            let lam = (self.cfg.reg / n.max(1) as f64) as f32;
            for (((_, t), ids), gt) in tables.iter().zip([&uu, &ui, &uu, &ui]).zip(&mut g) {
                let d = t.dim();
                for (s, &id) in ids.iter().enumerate() {
                    let row = t.row(id);
                    loss += f64::from(0.5 * lam * row.iter().map(|x| x * x).sum::<f32>());
                    gt[s * d..(s + 1) * d]
                        .iter_mut()
                        .zip(row)
                        .for_each(|(g, &x)| *g += lam * x);
                }
            }
        }
        let mut dense: Vec<&[f32]> = grads
            .layers
            .iter()
            .flat_map(|l| [l.weight.as_slice(), l.bias.as_slice()])
            .collect();
        let d_b = [d_out_b];
        dense.push(&d_out_w);
        dense.push(&d_b);
        adam.step_with(&dense)?;
        self.user_gmf.apply_rows(&uu, &g[0], emb)?;
        self.item_gmf.apply_rows(&ui, &g[1], emb)?;
        if let Some(t) = &mut self.mlp {
            t.user.apply_rows(&uu, &g[2], emb)?;
            t.item.apply_rows(&ui, &g[3], emb)?;
        }
        self.refresh()?;
        Ok(loss)
    }

    /// Every weight and the tables' Adam state, named after the layers.
    pub fn state(&self) -> Result<HashMap<String, Tensor>> {
        let mut s = checkpoint::vars_state(&self.dense_vars())?;
        for (name, t) in self.tables() {
            s.extend(t.state(name)?);
        }
        Ok(s)
    }

    /// The embedding tables with their names: GMF's user and item, then
    /// the MLP tower's.
    fn tables(&self) -> Vec<(&'static str, &EmbeddingTable)> {
        let mut v = vec![("user_gmf", &self.user_gmf), ("item_gmf", &self.item_gmf)];
        if let Some(t) = &self.mlp {
            v.push(("user_mlp", &t.user));
            v.push(("item_mlp", &t.item));
        }
        v
    }

    /// Restores what [`NeuMf::state`] returned.
    pub fn load_state(&mut self, s: &HashMap<String, Tensor>) -> Result<()> {
        checkpoint::load_vars(&self.dense_vars(), s)?;
        let load = |name: &str, t: &EmbeddingTable| -> Result<EmbeddingTable> {
            let new = EmbeddingTable::from_state(name, s)?;
            if (new.rows(), new.dim()) != (t.rows(), t.dim()) {
                return Err(NeuralError::Config(format!(
                    "{name} is {} x {} in the file, {} x {} in the model",
                    new.rows(),
                    new.dim(),
                    t.rows(),
                    t.dim()
                )));
            }
            Ok(new)
        };
        self.user_gmf = load("user_gmf", &self.user_gmf)?;
        self.item_gmf = load("item_gmf", &self.item_gmf)?;
        if let Some(t) = &mut self.mlp {
            t.user = load("user_mlp", &t.user)?;
            t.item = load("item_mlp", &t.item)?;
        }
        self.refresh()
    }

    /// Saves the whole model (weights and the tables' Adam state).
    pub fn save(&self, path: &Path) -> std::result::Result<(), ModelError> {
        let s = self.state().map_err(|e| ModelError::file(path, e))?;
        checkpoint::save_model(path, &s)
    }

    /// Reads what [`NeuMf::save`] wrote with parameters `cfg`.
    pub fn load(path: &Path, cfg: &NeuMfConfig) -> std::result::Result<Self, ModelError> {
        checkpoint::load_model(path, |s| -> Result<NeuMf> {
            let rows = |k: &str| -> Result<usize> {
                let t = s
                    .get(k)
                    .ok_or_else(|| NeuralError::Config(format!("the file lacks {k}")))?;
                Ok(t.dims2()?.0)
            };
            let mut m = NeuMf::new(rows("user_gmf.rows")?, rows("item_gmf.rows")?, cfg, 0)?;
            m.load_state(s)?;
            Ok(m)
        })
    }

    fn scores(&self, users: &[u32], items: &[u32], out: &mut [f32]) -> Result<(), ScoreError> {
        for ((u, i), o) in users
            .chunks(SCORE_ROWS)
            .zip(items.chunks(SCORE_ROWS))
            .zip(out.chunks_mut(SCORE_ROWS))
        {
            let f = self
                .forward(u, i)
                .map_err(|e| -> ScoreError { Box::new(e) })?;
            o.copy_from_slice(&f.logits);
        }
        Ok(())
    }
}

/// Distinct ids ascending, and each input's position among them.
fn distinct(ids: &[u32]) -> (Vec<u32>, Vec<u32>) {
    let mut uniq = ids.to_vec();
    uniq.sort_unstable();
    uniq.dedup();
    let at = ids
        .iter()
        .map(|i| uniq.binary_search(i).unwrap_or_default() as u32)
        .collect();
    (uniq, at)
}

fn sigmoid(x: f32) -> f32 {
    1.0 / (1.0 + (-x).exp())
}

impl Scorer for NeuMf {
    fn n_items(&self) -> usize {
        self.item_gmf.rows()
    }

    fn score_pairs(&self, pairs: &[(u32, u32)], out: &mut [f32]) -> Result<(), ScoreError> {
        hinrec_eval::check_pairs(pairs, out, self.user_gmf.rows(), self.n_items())?;
        let users: Vec<u32> = pairs.iter().map(|p| p.0).collect();
        let items: Vec<u32> = pairs.iter().map(|p| p.1).collect();
        self.scores(&users, &items, out)
    }

    fn score_users(&self, users: &[u32], out: &mut [f32]) -> Result<(), ScoreError> {
        let n = self.n_items();
        hinrec_eval::check_len("score_users", out.len(), users.len() * n)?;
        hinrec_eval::check_users(users.iter().copied(), self.user_gmf.rows())?;
        if n == 0 {
            return Ok(());
        }
        let boxed = |e: NeuralError| -> ScoreError { Box::new(e) };
        let mlp = match &self.mlp {
            Some(t) => Some((t, self.item_first_layer(t).map_err(boxed)?)),
            None => None,
        };
        for (&u, o) in users.iter().zip(out.chunks_mut(n)) {
            let mlp = mlp.as_ref().map(|(t, shares)| (*t, shares.as_slice()));
            self.score_all_items(u, mlp, o).map_err(boxed)?;
        }
        Ok(())
    }
}

impl NeuMf {
    /// Every item's share of the MLP's first layer, `q_i W1[items]`
    /// (`n_items x h1`): the first layer is linear in `[p_u; q_i]`, so a
    /// user's full ranking adds its own share to these once computed.
    fn item_first_layer(&self, tower: &MlpTower) -> Result<Vec<f32>> {
        let (dm, first) = (self.cfg.mlp_dim, &tower.dense.layers[0]);
        let n = tower.item.rows();
        let mut out = vec![0f32; n * first.d_out];
        gemm(
            tower.item.values(),
            false,
            &first.weight[dm * first.d_out..],
            false,
            &mut out,
            (n, dm, first.d_out),
            0.0,
        )?;
        Ok(out)
    }

    /// The MLP tower's last layer (before its ReLU) for user `u` and each
    /// of the `n` items, from the items' first-layer shares.
    fn mlp_all_items(
        &self,
        tower: &MlpTower,
        u: u32,
        shares: &[f32],
        n: usize,
    ) -> Result<Vec<f32>> {
        let dm = self.cfg.mlp_dim;
        let first = &tower.dense.layers[0];
        let h1 = first.d_out;
        let mut own = first.bias.clone();
        let p = tower.user.row(u);
        for (k, &x) in p.iter().enumerate().take(dm) {
            let w = &first.weight[k * h1..(k + 1) * h1];
            own.iter_mut().zip(w).for_each(|(o, &w)| *o += x * w);
        }
        let mut h: Vec<f32> = shares
            .chunks_exact(h1)
            .flat_map(|s| s.iter().zip(&own).map(|(a, b)| a + b))
            .collect();
        if tower.dense.layers.len() > 1 {
            h.iter_mut().for_each(|x| *x = x.max(0.0));
            let rest = DenseMlp {
                layers: tower.dense.layers[1..].to_vec(),
                normalize: false,
            };
            h = rest.forward(&h, n)?.out;
        }
        Ok(h)
    }

    /// Eq. 11's logit of every item for user `u` into `out`: GMF's term,
    /// then the MLP tower's from the items' first-layer shares (`None` for
    /// GMF alone), then the bias, the order of [`NeuMf::forward`]'s sum.
    fn score_all_items(
        &self,
        u: u32,
        mlp: Option<(&MlpTower, &[f32])>,
        out: &mut [f32],
    ) -> Result<()> {
        let dg = self.cfg.gmf_dim;
        let (wg, wm) = self.out_w.split_at(dg);
        let pg = self.user_gmf.row(u);
        let gw: Vec<f32> = pg.iter().zip(wg).map(|(a, b)| a * b).collect();
        for (o, q) in out.iter_mut().zip(self.item_gmf.values().chunks_exact(dg)) {
            *o = q.iter().zip(&gw).map(|(x, w)| x * w).sum();
        }
        if let Some((tower, shares)) = mlp {
            let h = self.mlp_all_items(tower, u, shares, out.len())?;
            for (o, m) in out.iter_mut().zip(h.chunks_exact(tower.dense.d_out())) {
                *o += m.iter().zip(wm).map(|(x, w)| x.max(0.0) * w).sum::<f32>();
            }
        }
        out.iter_mut().for_each(|o| *o += self.out_b);
        Ok(())
    }
}

/// Trains NeuMF on `ctx.split.train` with early stopping on
/// `ctx.validation`, keeping the best epoch.
pub fn fit(cfg: &NeuMfConfig, ctx: &mut FitContext<'_>) -> Result<(NeuMf, FitSummary)> {
    cfg.check()?;
    let started = Instant::now();
    let train = &ctx.split.train;
    if train.is_empty() {
        return Err(NeuralError::Config("no training interactions".into()));
    }
    let model = NeuMf::new(train.n_users(), train.n_items(), cfg, ctx.seed)?;
    let adam_cfg = AdamConfig {
        lr: cfg.lr,
        ..AdamConfig::default()
    };
    let adam = Adam::new(
        model.dense_vars().into_iter().map(|v| v.1).collect(),
        adam_cfg,
    )?;
    let mut run = Training {
        model,
        adam,
        adam_cfg,
        train,
        judge: ctx.judge().map_err(NeuralError::Config)?,
        seed: ctx.seed,
    };
    let trainer = TrainerConfig {
        epochs: cfg.epochs,
        patience: cfg.patience,
        checkpoints: ctx.checkpoints.clone(),
    };
    let mut summary = train_epochs(&mut run, &trainer, &mut *ctx.progress)?;
    summary.total_s = started.elapsed().as_secs_f64();
    summary.audit = run.judge.into_audit();
    Ok((run.model, summary))
}

/// NeuMF as the trainer drives it.
struct Training<'a> {
    model: NeuMf,
    adam: Adam,
    adam_cfg: AdamConfig,
    train: &'a Interactions,
    judge: Judge<'a>,
    seed: u64,
}

/// One epoch's labelled rows in training order.
struct Rows {
    users: Vec<u32>,
    items: Vec<u32>,
    labels: Vec<f32>,
}

impl TrainStep for Training<'_> {
    type Error = NeuralError;
    type Epoch = Rows;

    fn epoch_seed(&self) -> u64 {
        self.seed ^ 0x4e_03f
    }

    /// Every training pair (label 1) and `negatives` unseen items per pair
    /// (label 0), shuffled together.
    fn epoch(&mut self, _epoch: usize, rng: &mut ChaCha8Rng) -> Result<Rows> {
        let n_items = self.train.n_items() as u32;
        let k = self.model.cfg.negatives;
        let mut rows: Vec<(u32, u32, f32)> = Vec::with_capacity(self.train.nnz() * (k + 1));
        for (u, i) in self.train.pairs() {
            rows.push((u, i, 1.0));
            for _ in 0..k {
                if let Some(j) = unseen_item(self.train.user_items(u), n_items, rng) {
                    rows.push((u, j, 0.0));
                }
            }
        }
        rows.shuffle(rng);
        Ok(Rows {
            users: rows.iter().map(|r| r.0).collect(),
            items: rows.iter().map(|r| r.1).collect(),
            labels: rows.iter().map(|r| r.2).collect(),
        })
    }

    fn examples(&self, data: &Rows) -> usize {
        data.users.len()
    }

    fn batch_size(&self) -> usize {
        self.model.cfg.batch
    }

    fn step(&mut self, data: &Rows, r: Range<usize>) -> Result<f64> {
        self.model.step(
            &data.users[r.clone()],
            &data.items[r.clone()],
            &data.labels[r],
            &mut self.adam,
            &self.adam_cfg,
        )
    }

    fn validate(&mut self) -> Result<Option<f64>> {
        self.judge.score(&self.model).map_err(NeuralError::Score)
    }

    fn state(&self) -> Result<HashMap<String, Tensor>> {
        let mut s = self.model.state()?;
        s.extend(self.adam.state("adam")?);
        Ok(s)
    }

    fn load_state(&mut self, state: &HashMap<String, Tensor>) -> Result<()> {
        self.model.load_state(state)?;
        self.adam.load_state("adam", state)?;
        Ok(())
    }

    fn samples_per_epoch(&self) -> usize {
        self.train.nnz() * (self.model.cfg.negatives + 1)
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn small_cfg() -> NeuMfConfig {
        NeuMfConfig {
            gmf_dim: 2,
            mlp_dim: 2,
            hidden: vec![3, 2],
            init_std: 0.5,
            ..NeuMfConfig::default()
        }
    }

    /// Eq. 7's mean loss plus the L2 term on the batch's distinct rows.
    fn mean_loss(m: &NeuMf, users: &[u32], items: &[u32], y: &[f32]) -> f64 {
        let f = m.forward(users, items).unwrap();
        let n = y.len() as f64;
        let lam = m.cfg.reg / n;
        let l2: f64 = m
            .tables()
            .iter()
            .map(|(name, t)| {
                let ids = distinct(if name.starts_with("user") {
                    users
                } else {
                    items
                })
                .0;
                ids.iter()
                    .flat_map(|&i| t.row(i))
                    .map(|&x| 0.5 * lam * f64::from(x) * f64::from(x))
                    .sum::<f64>()
            })
            .sum();
        f.logits
            .iter()
            .zip(y)
            .map(|(&z, &t)| f64::from(softplus(z) - t * z))
            .sum::<f64>()
            / n
            + l2
    }

    fn gmf_cfg() -> NeuMfConfig {
        NeuMfConfig {
            towers: Towers::Gmf,
            ..small_cfg()
        }
    }

    /// The embedding rows' gradients (Adam's first moment after one step,
    /// (1 - β1) g) match central differences of the loss, with both towers
    /// and with GMF alone.
    #[test]
    fn table_gradients_match_finite_differences() {
        table_gradients_of(&small_cfg(), 4);
        table_gradients_of(
            &NeuMfConfig {
                reg: 0.3,
                ..gmf_cfg()
            },
            2,
        );
    }

    fn table_gradients_of(cfg: &NeuMfConfig, n_tables: usize) {
        let cfg = cfg.clone();
        let (users, items, y) = ([0u32, 1, 0], [1u32, 2, 2], [1.0f32, 0.0, 0.0]);
        let base = NeuMf::new(2, 3, &cfg, 3).unwrap();
        let mut stepped = NeuMf::new(2, 3, &cfg, 3).unwrap();
        let mut adam = Adam::new(
            stepped.dense_vars().into_iter().map(|v| v.1).collect(),
            AdamConfig::default(),
        )
        .unwrap();
        stepped
            .step(&users, &items, &y, &mut adam, &AdamConfig::default())
            .unwrap();
        let s = stepped.state().unwrap();
        let h = 1e-3;
        let names: Vec<&str> = base.tables().iter().map(|t| t.0).collect();
        assert_eq!(names.len(), n_tables);
        for name in names {
            let m: Vec<f32> = s[&format!("{name}.adam.m")]
                .flatten_all()
                .unwrap()
                .to_vec1()
                .unwrap();
            let rows = base.state().unwrap();
            let values: Vec<f32> = rows[&format!("{name}.rows")]
                .flatten_all()
                .unwrap()
                .to_vec1()
                .unwrap();
            for k in 0..values.len() {
                let at = |v: f32| {
                    let mut st = base.state().unwrap();
                    let mut e = values.clone();
                    e[k] = v;
                    let shape = st[&format!("{name}.rows")].dims().to_vec();
                    st.insert(
                        format!("{name}.rows"),
                        Tensor::from_vec(e, shape, &Device::Cpu).unwrap(),
                    );
                    let mut m2 = NeuMf::new(2, 3, &cfg, 3).unwrap();
                    m2.load_state(&st).unwrap();
                    mean_loss(&m2, &users, &items, &y)
                };
                let fd = (at(values[k] + h) - at(values[k] - h)) / (2.0 * f64::from(h));
                let got = f64::from(m[k]) / 0.1;
                assert!((fd - got).abs() < 1e-3, "{name}[{k}]: {fd} vs {got}");
            }
        }
    }

    /// A full ranking (the items' first-layer shares) gives each pair's
    /// score, with both towers and with GMF alone.
    #[test]
    fn full_ranking_scores_every_pair_alike() {
        for cfg in [small_cfg(), gmf_cfg()] {
            let m = NeuMf::new(3, 4, &cfg, 5).unwrap();
            let mut all = [0f32; 12];
            m.score_users(&[0, 1, 2], &mut all).unwrap();
            let pairs: Vec<(u32, u32)> = (0..3).flat_map(|u| (0..4).map(move |i| (u, i))).collect();
            let mut each = [0f32; 12];
            m.score_pairs(&pairs, &mut each).unwrap();
            for (a, b) in all.iter().zip(&each) {
                assert!((a - b).abs() < 1e-6, "{cfg:?}: {a} vs {b}");
            }
        }
    }

    /// GMF alone has two tables and an output layer over GMF's width; a
    /// NeuMF file does not load as GMF.
    #[test]
    fn gmf_alone_saves_and_is_not_neumf() {
        let m = NeuMf::new(2, 3, &gmf_cfg(), 1).unwrap();
        assert_eq!(m.tables().len(), 2);
        assert_eq!(m.out_w.len(), gmf_cfg().gmf_dim);
        let dir = tempfile::tempdir().unwrap();
        let p = dir.path().join("g.safetensors");
        m.save(&p).unwrap();
        let back = NeuMf::load(&p, &gmf_cfg()).unwrap();
        let (mut a, mut b) = ([0f32; 6], [0f32; 6]);
        m.score_users(&[0, 1], &mut a).unwrap();
        back.score_users(&[0, 1], &mut b).unwrap();
        assert_eq!(a, b);
        let q = dir.path().join("n.safetensors");
        NeuMf::new(2, 3, &small_cfg(), 1).unwrap().save(&q).unwrap();
        assert!(NeuMf::load(&q, &gmf_cfg()).is_err());
        assert!(NeuMf::load(&p, &small_cfg()).is_err());
    }

    #[test]
    fn saves_whole_and_checks_its_config() {
        let cfg = small_cfg();
        let m = NeuMf::new(2, 3, &cfg, 1).unwrap();
        let dir = tempfile::tempdir().unwrap();
        let p = dir.path().join("n.safetensors");
        m.save(&p).unwrap();
        let back = NeuMf::load(&p, &cfg).unwrap();
        let mut a = [0f32; 6];
        let mut b = [0f32; 6];
        m.score_users(&[0, 1], &mut a).unwrap();
        back.score_users(&[0, 1], &mut b).unwrap();
        assert_eq!(a, b);
        assert!(NeuMf::load(
            &p,
            &NeuMfConfig {
                hidden: vec![4, 2],
                ..cfg.clone()
            }
        )
        .is_err());
        assert!(NeuMfConfig {
            negatives: 0,
            ..cfg
        }
        .check()
        .is_err());
    }
}
