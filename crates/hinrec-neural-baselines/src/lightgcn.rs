//! LightGCN (He et al., SIGIR 2020): ID embeddings `E⁰` propagated over the
//! normalised user-item graph, `E^(k+1) = Â E^k` (eq. 7), each node's
//! representation the mean of its layers (eq. 4, `α_k = 1/(K+1)`), the
//! score a dot product (eq. 5), trained with BPR and L2 on the batch's
//! `E⁰` rows (eq. 15), Adam.
//!
//! Plain Rust over [`NormalizedGraph`] rather than candle: a step is `K - 1`
//! products with `Â` forward and `K - 1` back (the last layer forward and
//! the first back touch only the batch's rows and their neighbours), and
//! the gradient reaches only the batch's `K`-hop neighbourhood, whose rows
//! alone go through (lazy) Adam.

use std::collections::HashMap;
use std::ops::Range;
use std::time::Instant;

use candle_core::Tensor;
use hinrec_data::Interactions;
use hinrec_nn::embedding::EmbeddingTable;
use hinrec_nn::init::Rng;
use hinrec_nn::loss::softplus_f32 as softplus;
use hinrec_nn::optim::AdamConfig;
use hinrec_nn::trainer::{train as train_epochs, TrainStep, TrainerConfig};
use hinrec_sample::unseen_item;
use hinrec_train::{FitContext, FitSummary, Judge};
use rand::seq::SliceRandom;
use rand_chacha::ChaCha8Rng;
use serde::{Deserialize, Serialize};

use crate::error::{NeuralError, Result};
use crate::factors::Factors;
use crate::graph::NormalizedGraph;

/// The most propagation layers (each keeps a `nodes x dim` buffer; the
/// paper finds no gain past 3 or 4).
pub const MAX_LAYERS: usize = 10;

/// LightGCN's hyper-parameters (the paper's and RecBole's defaults, where
/// they agree; see each field).
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
#[serde(default, deny_unknown_fields)]
pub struct LightGcnConfig {
    /// Embedding size (64 in the paper and RecBole).
    pub dim: usize,
    /// Propagation layers K (the paper's 3; RecBole's default is 2).
    pub layers: usize,
    /// Adam learning rate. The paper's and RecBole's 0.001 stalls for
    /// ten epochs on lgrec-ml100k, so early stopping ends it there; 0.005
    /// is what validation chose there (docs/baselines.md).
    pub lr: f64,
    /// λ of eq. 15: `λ/2 (|e_u|² + |e_i|² + |e_j|²)` per triple over the
    /// batch's `E⁰` rows, divided by the batch size (the paper's 1e-4).
    pub reg: f64,
    /// Triples per step (RecBole's 2048).
    pub batch: usize,
    /// Maximum epochs.
    pub epochs: usize,
    /// Epochs without validation improvement before stopping (RecBole's
    /// 10).
    pub patience: usize,
}

impl Default for LightGcnConfig {
    fn default() -> Self {
        LightGcnConfig {
            dim: 64,
            layers: 3,
            lr: 0.005,
            reg: 1e-4,
            batch: 2048,
            epochs: 300,
            patience: 10,
        }
    }
}

impl LightGcnConfig {
    /// Checks every value.
    pub fn check(&self) -> Result<()> {
        let ok = self.dim > 0
            && self.layers <= MAX_LAYERS
            && self.batch > 0
            && self.patience > 0
            && self.lr.is_finite()
            && self.lr > 0.0
            && self.reg.is_finite()
            && self.reg >= 0.0;
        if !ok {
            return Err(NeuralError::Config(format!(
                "LightGCN needs dim, batch and patience > 0, at most {MAX_LAYERS} layers, lr > 0 and reg >= 0 (got {self:?})"
            )));
        }
        Ok(())
    }
}

/// LightGCN while it trains: the graph, the `E⁰` table (users then items)
/// with its Adam moments, and reusable buffers.
pub struct Network {
    cfg: LightGcnConfig,
    graph: NormalizedGraph,
    ego: EmbeddingTable,
    /// `E¹ .. E^(K-1)`, each `nodes x dim`.
    layers: Vec<Vec<f32>>,
    /// The backward's two `nodes x dim` buffers (kept: fresh table-sized
    /// buffers each step cost more in page faults than their work).
    back: [Vec<f32>; 2],
    /// Node -> its slot among the batch's rows (`u32::MAX`: none).
    slot: Vec<u32>,
    /// Nodes reached so far by [`Network::reached`].
    seen: Vec<bool>,
}

/// One step's batch: the rows it touches and the triples as slots.
struct Rows {
    /// Distinct nodes, in first-seen order.
    nodes: Vec<u32>,
    /// Per triple: the slots of `u`, `i`, `j`.
    triples: Vec<[u32; 3]>,
}

impl Network {
    /// A seeded network over `train`: `E⁰` Xavier uniform per table (users,
    /// items), as RecBole initialises it.
    pub fn new(train: &Interactions, cfg: &LightGcnConfig, seed: u64) -> Result<Self> {
        cfg.check()?;
        let graph = NormalizedGraph::new(train);
        let (nu, ni, d) = (train.n_users(), train.n_items(), cfg.dim);
        let mut rng = Rng::new(seed);
        let mut data = rng.uniform_f32(nu * d, (6.0 / (nu + d) as f64).sqrt());
        data.extend(rng.uniform_f32(ni * d, (6.0 / (ni + d) as f64).sqrt()));
        let n = graph.nodes();
        Ok(Network {
            cfg: cfg.clone(),
            ego: EmbeddingTable::new(n, d, data),
            layers: vec![vec![0.0; n * d]; cfg.layers.saturating_sub(1)],
            back: [Vec::new(), Vec::new()],
            slot: vec![u32::MAX; n],
            seen: vec![false; n],
            graph,
        })
    }

    /// Every node's layer mean (eq. 4), `nodes x dim`.
    pub fn layer_mean(&mut self) -> Vec<f32> {
        let (n, d, k) = (self.graph.nodes(), self.cfg.dim, self.cfg.layers);
        let mut sum = self.ego.values().to_vec();
        let mut prev = self.ego.values().to_vec();
        let mut next = vec![0f32; n * d];
        for _ in 0..k {
            self.graph.propagate(&prev, &mut next, d);
            sum.iter_mut().zip(&next).for_each(|(s, &x)| *s += x);
            std::mem::swap(&mut prev, &mut next);
        }
        let w = 1.0 / (k + 1) as f32;
        sum.iter_mut().for_each(|s| *s *= w);
        sum
    }

    /// The trained model: every user's and item's layer mean.
    pub fn factors(&mut self) -> Result<Factors> {
        let mean = self.layer_mean();
        let split = self.graph.n_users() * self.cfg.dim;
        let (users, items) = mean.split_at(split);
        Factors::new(self.cfg.dim, users.to_vec(), items.to_vec()).map_err(NeuralError::Config)
    }

    /// Forward for the batch's rows: each row's layer mean (`rows x dim`).
    /// `E¹ .. E^(K-1)` are computed for every node, `E^K` for the rows
    /// alone.
    fn forward(&mut self, rows: &[u32]) -> Vec<f32> {
        let (d, k) = (self.cfg.dim, self.cfg.layers);
        for l in 0..self.layers.len() {
            let (done, rest) = self.layers.split_at_mut(l);
            let src = if l == 0 {
                self.ego.values()
            } else {
                &done[l - 1]
            };
            self.graph.propagate(src, &mut rest[0], d);
        }
        let last = self.layers.last().map_or(self.ego.values(), Vec::as_slice);
        let mut out = vec![0f32; rows.len() * d];
        if k > 0 {
            self.graph.rows_product(rows, last, &mut out, d);
        }
        for (o, &r) in out.chunks_exact_mut(d).zip(rows) {
            let span = r as usize * d..(r as usize + 1) * d;
            o.iter_mut()
                .zip(&self.ego.values()[span.clone()])
                .for_each(|(o, &x)| *o += x);
            for layer in &self.layers {
                o.iter_mut()
                    .zip(&layer[span.clone()])
                    .for_each(|(o, &x)| *o += x);
            }
        }
        let w = 1.0 / (k + 1) as f32;
        out.iter_mut().for_each(|o| *o *= w);
        out
    }

    /// The gradient of `E⁰` from `g`, the gradient of the rows' layer
    /// means already divided by `K + 1`: `Σ_k Â^k g`, by Horner's rule
    /// (`g + Â(g + Â(...))`), into `self.back[0]` (table-shaped). Returns
    /// the nodes it reaches (ascending): its only nonzero rows.
    fn backward(&mut self, rows: &[u32], g: &[f32]) -> Vec<u32> {
        let (n, d, k) = (self.graph.nodes(), self.cfg.dim, self.cfg.layers);
        let reached = self.reached(rows, k);
        let [acc, tmp] = &mut self.back;
        acc.clear();
        acc.resize(n * d, 0.0);
        let add_g = |x: &mut [f32]| {
            for (&r, gr) in rows.iter().zip(g.chunks_exact(d)) {
                let dst = &mut x[r as usize * d..(r as usize + 1) * d];
                dst.iter_mut().zip(gr).for_each(|(o, &v)| *o += v);
            }
        };
        if k > 0 {
            self.graph.scatter_add(rows, g, acc, d);
        }
        for _ in 1..k {
            add_g(acc);
            tmp.resize(n * d, 0.0);
            self.graph.propagate(acc, tmp, d);
            std::mem::swap(acc, tmp);
        }
        add_g(acc);
        reached
    }

    /// The nodes within `hops` of `rows`, ascending.
    fn reached(&mut self, rows: &[u32], hops: usize) -> Vec<u32> {
        let seen = &mut self.seen;
        let mut frontier: Vec<u32> = rows.to_vec();
        for &r in rows {
            seen[r as usize] = true;
        }
        let mut all = frontier.clone();
        for _ in 0..hops {
            let mut next = Vec::new();
            for &r in &frontier {
                for &c in self.graph.row(r as usize).0 {
                    if !seen[c as usize] {
                        seen[c as usize] = true;
                        next.push(c);
                    }
                }
            }
            all.extend_from_slice(&next);
            frontier = next;
        }
        for &r in &all {
            seen[r as usize] = false;
        }
        all.sort_unstable();
        all
    }

    /// The batch's distinct rows and each triple's slots.
    fn rows(&mut self, users: &[u32], pos: &[u32], neg: &[u32]) -> Rows {
        let nu = self.graph.n_users() as u32;
        let mut nodes = Vec::new();
        let slot = &mut self.slot;
        let mut at = |node: u32| -> u32 {
            let s = &mut slot[node as usize];
            if *s == u32::MAX {
                *s = nodes.len() as u32;
                nodes.push(node);
            }
            *s
        };
        let triples = users
            .iter()
            .zip(pos)
            .zip(neg)
            .map(|((&u, &i), &j)| [at(u), at(nu + i), at(nu + j)])
            .collect();
        for &r in &nodes {
            self.slot[r as usize] = u32::MAX;
        }
        Rows { nodes, triples }
    }

    /// One BPR step on triples `(users[k], pos[k], neg[k])`; returns the
    /// loss (BPR mean plus the L2 term).
    pub fn step(
        &mut self,
        users: &[u32],
        pos: &[u32],
        neg: &[u32],
        adam: &AdamConfig,
    ) -> Result<f64> {
        let d = self.cfg.dim;
        let rows = self.rows(users, pos, neg);
        let mean = self.forward(&rows.nodes);
        let b = rows.triples.len().max(1) as f32;
        let w_mean = 1.0 / (self.cfg.layers + 1) as f32;
        let mut g = vec![0f32; mean.len()];
        let mut loss = 0f64;
        let row = |s: u32| s as usize * d..(s as usize + 1) * d;
        for &[u, i, j] in &rows.triples {
            let (eu, ei, ej) = (&mean[row(u)], &mean[row(i)], &mean[row(j)]);
            let x: f32 = eu
                .iter()
                .zip(ei)
                .zip(ej)
                .map(|((a, p), n)| a * (p - n))
                .sum();
            loss += f64::from(softplus(-x));
            // d/dx of softplus(-x) = -sigmoid(-x), over the batch mean;
            // with eq. 4's 1/(K+1), which the backward then leaves out.
            let c = -1.0 / (1.0 + x.exp()) / b * w_mean;
            for k in 0..d {
                let (a, p, n) = (eu[k], ei[k], ej[k]);
                g[u as usize * d + k] += c * (p - n);
                g[i as usize * d + k] += c * a;
                g[j as usize * d + k] -= c * a;
            }
        }
        loss /= f64::from(b);
        let ids = self.backward(&rows.nodes, &g);
        if self.cfg.reg > 0.0 {
            // Eq. 15's L2 on each triple's E⁰ rows, over the batch.
            let mut count = vec![0u32; rows.nodes.len()];
            for t in &rows.triples {
                t.iter().for_each(|&s| count[s as usize] += 1);
            }
            let lam = self.cfg.reg as f32 / b;
            for (s, &node) in rows.nodes.iter().enumerate() {
                let e0 = self.ego.row(node);
                let c = count[s] as f32;
                loss += f64::from(0.5 * lam * c * e0.iter().map(|x| x * x).sum::<f32>());
                let at = node as usize * d;
                let gr = &mut self.back[0][at..at + d];
                gr.iter_mut().zip(e0).for_each(|(g, &x)| *g += lam * c * x);
            }
        }
        self.ego.apply_table_rows(&ids, &self.back[0], adam)?;
        Ok(loss)
    }

    /// `E⁰` and its Adam state, for checkpoints.
    pub fn state(&self) -> Result<HashMap<String, Tensor>> {
        Ok(self.ego.state("ego")?)
    }

    /// Restores what [`Network::state`] returned.
    pub fn load_state(&mut self, state: &HashMap<String, Tensor>) -> Result<()> {
        let ego = EmbeddingTable::from_state("ego", state)?;
        if (ego.rows(), ego.dim()) != (self.ego.rows(), self.ego.dim()) {
            return Err(NeuralError::Config(format!(
                "the checkpoint's E⁰ is {} x {}, the model's {} x {}",
                ego.rows(),
                ego.dim(),
                self.ego.rows(),
                self.ego.dim()
            )));
        }
        self.ego = ego;
        Ok(())
    }
}

/// Trains LightGCN on `ctx.split.train` with early stopping on
/// `ctx.validation`; returns the best epoch's layer means.
pub fn fit(cfg: &LightGcnConfig, ctx: &mut FitContext<'_>) -> Result<(Factors, FitSummary)> {
    cfg.check()?;
    let started = Instant::now();
    let train = &ctx.split.train;
    if train.is_empty() {
        return Err(NeuralError::Config("no training interactions".into()));
    }
    let mut run = Training {
        net: Network::new(train, cfg, ctx.seed)?,
        adam: AdamConfig {
            lr: cfg.lr,
            ..AdamConfig::default()
        },
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
    let model = run.net.factors()?;
    summary.total_s = started.elapsed().as_secs_f64();
    summary.audit = run.judge.into_audit();
    Ok((model, summary))
}

/// LightGCN as the trainer drives it.
struct Training<'a> {
    net: Network,
    adam: AdamConfig,
    train: &'a Interactions,
    judge: Judge<'a>,
    seed: u64,
}

/// One epoch: the training pairs shuffled, one unseen item per pair.
struct Triples {
    users: Vec<u32>,
    pos: Vec<u32>,
    neg: Vec<u32>,
}

/// The training pairs in a seeded order, each with an item the user has
/// no training pair with (pairs of a user who has every item are dropped).
fn triples(train: &Interactions, rng: &mut ChaCha8Rng) -> Triples {
    let mut order: Vec<(u32, u32)> = train.pairs().collect();
    order.shuffle(rng);
    let n_items = train.n_items() as u32;
    let mut t = Triples {
        users: Vec::with_capacity(order.len()),
        pos: Vec::with_capacity(order.len()),
        neg: Vec::with_capacity(order.len()),
    };
    for (u, i) in order {
        if let Some(j) = unseen_item(train.user_items(u), n_items, rng) {
            t.users.push(u);
            t.pos.push(i);
            t.neg.push(j);
        }
    }
    t
}

impl TrainStep for Training<'_> {
    type Error = NeuralError;
    type Epoch = Triples;

    fn epoch_seed(&self) -> u64 {
        self.seed ^ 0x11_6c_c0
    }

    fn epoch(&mut self, _epoch: usize, rng: &mut ChaCha8Rng) -> Result<Triples> {
        Ok(triples(self.train, rng))
    }

    fn examples(&self, data: &Triples) -> usize {
        data.users.len()
    }

    fn batch_size(&self) -> usize {
        self.net.cfg.batch
    }

    fn step(&mut self, data: &Triples, r: Range<usize>) -> Result<f64> {
        self.net.step(
            &data.users[r.clone()],
            &data.pos[r.clone()],
            &data.neg[r],
            &self.adam,
        )
    }

    fn validate(&mut self) -> Result<Option<f64>> {
        let f = self.net.factors()?;
        self.judge.score(&f).map_err(NeuralError::Score)
    }

    fn state(&self) -> Result<HashMap<String, Tensor>> {
        self.net.state()
    }

    fn load_state(&mut self, state: &HashMap<String, Tensor>) -> Result<()> {
        self.net.load_state(state)
    }

    fn samples_per_epoch(&self) -> usize {
        self.train.nnz()
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn toy() -> Interactions {
        Interactions::from_pairs(3, 4, &[(0, 0), (0, 1), (1, 1), (1, 2), (2, 3), (2, 0)])
    }

    /// The loss of the batch as a function of `E⁰`, by the layer means.
    fn loss_at(net: &mut Network, t: &[(u32, u32, u32)]) -> f64 {
        let mean = net.layer_mean();
        let (d, nu) = (net.cfg.dim, net.graph.n_users() as u32);
        let row = |r: u32| &mean[r as usize * d..(r as usize + 1) * d];
        let mut loss = 0.0;
        for &(u, i, j) in t {
            let x: f32 = row(u)
                .iter()
                .zip(row(nu + i))
                .zip(row(nu + j))
                .map(|((a, p), n)| a * (p - n))
                .sum();
            loss += f64::from(softplus(-x));
        }
        loss / t.len() as f64
    }

    /// The step's gradient (read back from Adam's first moment, which
    /// after one step is (1 - β1) g) matches central differences of the
    /// loss through the whole propagation, for K = 0..3.
    #[test]
    fn gradient_matches_finite_differences() {
        for layers in 0..4 {
            let cfg = LightGcnConfig {
                dim: 3,
                layers,
                reg: 0.0,
                ..LightGcnConfig::default()
            };
            let t = [(0u32, 1u32, 3u32), (2, 3, 1), (0, 0, 2)];
            let mut net = Network::new(&toy(), &cfg, 7).unwrap();
            let base = net.ego.values().to_vec();
            let (users, pos, neg): (Vec<u32>, Vec<u32>, Vec<u32>) = (
                t.iter().map(|x| x.0).collect(),
                t.iter().map(|x| x.1).collect(),
                t.iter().map(|x| x.2).collect(),
            );
            let mut stepped = Network::new(&toy(), &cfg, 7).unwrap();
            stepped
                .step(&users, &pos, &neg, &AdamConfig::default())
                .unwrap();
            let m = stepped.state().unwrap()["ego.adam.m"]
                .flatten_all()
                .unwrap()
                .to_vec1::<f32>()
                .unwrap();
            let h = 1e-3f32;
            for k in 0..base.len() {
                let mut at = |v: f32| {
                    let mut e = base.clone();
                    e[k] = v;
                    net.ego = EmbeddingTable::new(net.ego.rows(), 3, e);
                    loss_at(&mut net, &t)
                };
                let fd = (at(base[k] + h) - at(base[k] - h)) / (2.0 * f64::from(h));
                let got = f64::from(m[k]) / 0.1;
                assert!(
                    (fd - got).abs() < 2e-3,
                    "K={layers} entry {k}: {fd} vs {got}"
                );
            }
        }
    }

    #[test]
    fn the_batch_reaches_its_k_hop_neighbourhood_only() {
        // Two components: u0-i0 and u1-i1.
        let train = Interactions::from_pairs(2, 2, &[(0, 0), (1, 1)]);
        let cfg = LightGcnConfig {
            dim: 2,
            layers: 2,
            ..LightGcnConfig::default()
        };
        let mut net = Network::new(&train, &cfg, 1).unwrap();
        assert_eq!(net.reached(&[0], 2), vec![0, 2]);
        assert_eq!(net.reached(&[0, 3], 0), vec![0, 3]);
        assert!(LightGcnConfig {
            lr: 0.0,
            ..cfg.clone()
        }
        .check()
        .is_err());
        assert!(LightGcnConfig { layers: 11, ..cfg }.check().is_err());
    }
}
