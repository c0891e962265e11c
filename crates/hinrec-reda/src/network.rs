//! The REDA network: decomposed item embeddings, the pair-wise interaction
//! layer, dual attentions, relational user embeddings and scores.

use std::collections::HashMap;
use std::path::Path;

use candle_core::{DType, Device, Tensor, Var};
use hinrec_data::Interactions;
use hinrec_eval::{ScoreError, Scorer};
use hinrec_nn::attention::{softmax_pool, KeyValueMemory, WeightAttention};
use hinrec_nn::checkpoint;
use hinrec_nn::embedding::EmbeddingTable;
use hinrec_nn::init::Rng;
use hinrec_nn::interaction::pair_products;
use rand::seq::IndexedRandom;
use rand::{Rng as _, SeedableRng};
use rand_chacha::ChaCha8Rng;
use rayon::prelude::*;

use hinrec_train::{ModelError, Reason, TrainedModel};

use crate::params::{RedaConfig, RedaError, Result, Variant};
use crate::softmax::{softmax_dot, softmax_dots};

/// Candidates per GEMM in eq. 11: bounds the logits buffer (`256 k x nh k m`
/// floats, 8.7 MB at k = 3, m = 20 and 47 history items; chunks of 8,192
/// candidates in full ranking took 277 MB, in the same time).
const SCORE_CANDIDATES: usize = 256;

/// What eq. 11 needs of one user's scored history items (see
/// [`Reda::history_tables`]).
struct HistoryTables {
    hist: Vec<u32>,
    /// `(d, nh k m)`: the columns `p_j^l * k_t`, or `(d, nh k)`: `p_j^l * z_u`
    /// without memory.
    logits: Tensor,
    /// `M z_u` (empty without memory).
    mu: Vec<f32>,
    /// `(d, nh k s)`: the columns of `diag(p_j^l) W`, for k > 1.
    hidden: Option<Tensor>,
    /// The weight attention's `b` and `h`.
    b: Vec<f32>,
    h: Vec<f32>,
}

/// What [`Reda::explain_pair`] returns.
#[derive(Debug, Clone, Default, PartialEq)]
pub struct Explanation {
    /// Each scored training item j and its term in eq. 11, largest first.
    pub contributions: Vec<(u32, f32)>,
    /// Weight attention over the aspect pairs of the largest term's pair.
    pub aspects: Vec<(String, f32)>,
    /// Memory attention over the slots for that pair, largest first.
    pub slots: Vec<(String, f32)>,
}

/// A trained (or training) REDA.
pub struct Reda {
    pub(crate) cfg: RedaConfig,
    k: usize,
    pub(crate) dev: Device,
    /// Row `i` holds item i's k embeddings, `k * d` wide.
    pub(crate) items: EmbeddingTable,
    pub(crate) memory: KeyValueMemory,
    pub(crate) weight: WeightAttention,
    /// Each user's training items.
    history: Vec<Vec<u32>>,
    /// Seeds the pairs of z_u and the items a score averages over.
    scoring_seed: u64,
}

impl Reda {
    /// A seeded, untrained model whose users' histories are `train`.
    pub fn init(train: &Interactions, cfg: &RedaConfig, seed: u64) -> Result<Self> {
        cfg.check()?;
        let dev = Device::Cpu;
        let k = cfg.effective_aspects();
        let (n, d) = (train.n_items(), cfg.dim);
        let mut rng = Rng::new(seed);
        let values: Vec<f32> = rng
            .normal(n * k * d, cfg.init_std)
            .into_iter()
            .map(|x| x as f32)
            .collect();
        Ok(Reda {
            items: EmbeddingTable::new(n, k * d, values),
            memory: KeyValueMemory::new(&mut rng, cfg.memory_slots, d, DType::F32, &dev)?,
            weight: WeightAttention::new(&mut rng, d, cfg.hidden, DType::F32, &dev)?,
            history: (0..train.n_users() as u32)
                .map(|u| train.user_items(u).to_vec())
                .collect(),
            scoring_seed: seed ^ 0x5eda,
            k,
            cfg: cfg.clone(),
            dev,
        })
    }

    /// The configuration.
    pub fn config(&self) -> &RedaConfig {
        &self.cfg
    }

    /// The variables the dense optimizer updates (the embedding table is
    /// updated row-wise).
    pub(crate) fn dense_vars(&self) -> Vec<Var> {
        let mut v = Vec::new();
        if self.cfg.variant != Variant::Nmal {
            v.extend(self.memory.vars());
        }
        if self.k > 1 {
            v.extend(self.weight.vars());
        }
        v
    }

    /// Relation embeddings `r_ij` (`(p, d)`) of the pairs
    /// `(left[x], right[x])`, whose k embeddings are rows of `table`
    /// (`(rows, k * d)`, indexed by `left` and `right`).
    pub(crate) fn relations(&self, table: &Tensor, left: &[u32], right: &[u32]) -> Result<Tensor> {
        let (p, k, d) = (left.len(), self.k, self.cfg.dim);
        let rows = |ids: &[u32]| -> Result<Tensor> {
            let ids = Tensor::from_vec(ids.to_vec(), ids.len(), &self.dev)?;
            Ok(table.index_select(&ids, 0)?)
        };
        // Eq. 2: the k^2 element-wise products p_i^n * p_j^l.
        let v = pair_products(&rows(left)?, &rows(right)?, k)?;
        let memory = self.cfg.variant != Variant::Nmal;
        if k == 1 {
            // Eq. 3-5 alone: the one interacted vector queries the memory.
            return Ok(if memory { self.memory.forward(&v)? } else { v });
        }
        // Eq. 6-8: weights from the interacted vectors pool the k^2
        // relations; with the memory, pooled as slot weights before the
        // one product with the values (the same sum, a ninth of the work).
        let kk = k * k;
        let scores = self.weight.scores(&v)?.reshape((p, kk))?;
        Ok(if memory {
            self.memory.pooled_read(&v, &scores)?
        } else {
            softmax_pool(&scores, &v.reshape((p, kk, d))?)?
        })
    }

    /// Runs `relations` over the whole table in chunks of `eval_pairs`,
    /// handing each chunk's `(pairs, d)` result to `sink` with the chunk's
    /// offset.
    fn relations_in_chunks(
        &self,
        table: &Tensor,
        pairs: &[(u32, u32)],
        mut sink: impl FnMut(usize, Tensor) -> Result<()>,
    ) -> Result<()> {
        for (c, chunk) in pairs.chunks(self.cfg.eval_pairs).enumerate() {
            let left: Vec<u32> = chunk.iter().map(|p| p.0).collect();
            let right: Vec<u32> = chunk.iter().map(|p| p.1).collect();
            sink(
                c * self.cfg.eval_pairs,
                self.relations(table, &left, &right)?,
            )?;
        }
        Ok(())
    }

    /// The pairs of `u`'s training items that z_u sums (eq. 9): all
    /// unordered pairs (r_ij = r_ji), or `user_pairs` of them sampled.
    fn user_pairs(&self, u: u32) -> Vec<(u32, u32)> {
        let h = &self.history[u as usize];
        let n = h.len();
        let total = n * n.saturating_sub(1) / 2;
        if total <= self.cfg.user_pairs {
            let mut out = Vec::with_capacity(total);
            for a in 0..n {
                for b in a + 1..n {
                    out.push((h[a], h[b]));
                }
            }
            return out;
        }
        let mut rng = ChaCha8Rng::seed_from_u64(self.scoring_seed);
        rng.set_stream(u as u64);
        let mut seen = std::collections::HashSet::with_capacity(self.cfg.user_pairs);
        while seen.len() < self.cfg.user_pairs {
            let a = rng.random_range(0..n);
            let b = rng.random_range(0..n);
            if a != b {
                seen.insert((a.min(b), a.max(b)));
            }
        }
        let mut idx: Vec<(usize, usize)> = seen.into_iter().collect();
        idx.sort_unstable();
        idx.into_iter().map(|(a, b)| (h[a], h[b])).collect()
    }

    /// The training items a score of `u` averages over (eq. 11).
    fn score_items(&self, u: u32) -> Vec<u32> {
        let h = &self.history[u as usize];
        let m = self.cfg.score_items;
        if m == 0 || h.len() <= m {
            return h.clone();
        }
        let mut rng = ChaCha8Rng::seed_from_u64(self.scoring_seed ^ 0x17e5);
        rng.set_stream(u as u64);
        let mut s: Vec<u32> = h.choose_multiple(&mut rng, m).copied().collect();
        s.sort_unstable();
        s
    }

    /// Relational user embeddings z_u (eq. 9) of `users`, `(users, d)`;
    /// zero for a user with fewer than two training items.
    pub fn user_embeddings(&self, users: &[u32]) -> Result<Tensor> {
        let table = self.items.tensor(DType::F32, &self.dev)?;
        self.user_embeddings_with(&table, users)
    }

    fn user_embeddings_with(&self, table: &Tensor, users: &[u32]) -> Result<Tensor> {
        let d = self.cfg.dim;
        let mut owner = Vec::new();
        let mut pairs = Vec::new();
        for (k, &u) in users.iter().enumerate() {
            let p = self.user_pairs(u);
            owner.extend(std::iter::repeat_n(k as u32, p.len()));
            pairs.extend(p);
        }
        let mut z = vec![0f32; users.len() * d];
        self.relations_in_chunks(table, &pairs, |offset, r| {
            let r: Vec<f32> = r.flatten_all()?.to_vec1()?;
            for (x, row) in r.chunks(d).enumerate() {
                let o = owner[offset + x] as usize * d;
                for (acc, v) in z[o..o + d].iter_mut().zip(row) {
                    *acc += v;
                }
            }
            Ok(())
        })?;
        Ok(Tensor::from_vec(z, (users.len(), d), &self.dev)?)
    }

    /// Why `item` scores as it does for `user` (eq. 11): each of the
    /// user's training items j with its term `z_u . r_ij / |R_u|`, largest
    /// first; for the item whose term is largest, the weight attention over
    /// its k² aspect pairs (eq. 6-7) and the memory attention over the
    /// slots (eq. 3-4) pooled by it.
    pub fn explain_pair(&self, user: u32, item: u32) -> Result<Explanation> {
        let (nu, ni) = (self.history.len(), self.items.rows());
        if user as usize >= nu || item as usize >= ni {
            return Err(RedaError::Config(format!(
                "({user}, {item}) is outside the model's {nu} users x {ni} items"
            )));
        }
        let hist: Vec<u32> = self
            .score_items(user)
            .into_iter()
            .filter(|&j| j != item)
            .collect();
        let mut out = Explanation::default();
        if hist.is_empty() {
            return Ok(out);
        }
        let table = self.items.tensor(DType::F32, &self.dev)?;
        let z = self.user_embeddings_with(&table, &[user])?;
        let left = vec![item; hist.len()];
        let r = self.relations(&table, &left, &hist)?;
        let terms: Vec<f32> = r
            .matmul(&z.t()?)?
            .flatten_all()?
            .to_vec1::<f32>()?
            .into_iter()
            .map(|t| t / hist.len() as f32)
            .collect();
        let mut contributions: Vec<(u32, f32)> = hist.iter().copied().zip(terms).collect();
        contributions.sort_by(|a, b| b.1.total_cmp(&a.1).then(a.0.cmp(&b.0)));
        let top = contributions[0].0;
        out.contributions = contributions;
        let ids = |i: u32| Tensor::from_vec(vec![i], 1, &self.dev);
        let v = pair_products(
            &table.index_select(&ids(item)?, 0)?,
            &table.index_select(&ids(top)?, 0)?,
            self.k,
        )?;
        let kk = self.k * self.k;
        let aspect = if self.k > 1 {
            candle_nn::ops::softmax(&self.weight.scores(&v)?.reshape((1, kk))?, 1)?
        } else {
            Tensor::ones((1, 1), DType::F32, &self.dev)?
        };
        if self.k > 1 {
            let w: Vec<f32> = aspect.flatten_all()?.to_vec1()?;
            out.aspects = (0..kk)
                .map(|x| {
                    (
                        format!("p_i^{} * p_j^{}", x / self.k + 1, x % self.k + 1),
                        w[x],
                    )
                })
                .collect();
        }
        if self.cfg.variant != Variant::Nmal {
            let slots: Vec<f32> = aspect
                .matmul(&self.memory.weights(&v)?)?
                .flatten_all()?
                .to_vec1()?;
            let mut s: Vec<(String, f32)> = slots
                .into_iter()
                .enumerate()
                .map(|(t, w)| (format!("slot {t}"), w))
                .collect();
            s.sort_by(|a, b| b.1.total_cmp(&a.1));
            out.slots = s;
        }
        Ok(out)
    }

    /// Scores `y_ui = 1/|R_u| sum_j z_u . r_ij` (eq. 11; higher is better)
    /// of `pairs`, with j over the user's training items other than i.
    pub fn score_pairs(&self, pairs: &[(u32, u32)]) -> Result<Vec<f32>> {
        let table = self.items.tensor(DType::F32, &self.dev)?;
        let mut by_user: HashMap<u32, Vec<usize>> = HashMap::new();
        for (x, &(u, _)) in pairs.iter().enumerate() {
            by_user.entry(u).or_default().push(x);
        }
        let mut users: Vec<u32> = by_user.keys().copied().collect();
        users.sort_unstable();
        let z = self.user_embeddings_with(&table, &users)?;
        let z: Vec<f32> = z.flatten_all()?.to_vec1()?;
        let d = self.cfg.dim;
        let mut out = vec![0f32; pairs.len()];
        for (k, &u) in users.iter().enumerate() {
            let idx = &by_user[&u];
            let cands: Vec<u32> = idx.iter().map(|&x| pairs[x].1).collect();
            let Some(tables) =
                self.history_tables(&table, &z[k * d..(k + 1) * d], self.score_items(u))?
            else {
                continue;
            };
            for (chunk_idx, chunk) in idx
                .chunks(SCORE_CANDIDATES)
                .zip(cands.chunks(SCORE_CANDIDATES))
            {
                let s = self.score_candidates(&table, &tables, chunk)?;
                for (&x, v) in chunk_idx.iter().zip(s) {
                    out[x] = v;
                }
            }
        }
        Ok(out)
    }

    /// The per-history tables of eq. 11 for one user, built once per user:
    /// with `mu = M z_u`, `z_u . r_cj = sum_nl w_nl softmax(a_nl) . mu`,
    /// and the memory logits `a_nl,t = p_c^n . (p_j^l * k_t)` and the weight
    /// attention's hidden layer `(p_c^n * p_j^l) W = p_c^n (diag(p_j^l) W)`
    /// are two GEMMs of the candidates' embeddings against these tables.
    /// Without memory, `z_u . v_nl = p_c^n . (p_j^l * z_u)`. `None` for an
    /// empty history.
    fn history_tables(
        &self,
        table: &Tensor,
        z: &[f32],
        hist: Vec<u32>,
    ) -> Result<Option<HistoryTables>> {
        let (k, d, nh) = (self.k, self.cfg.dim, hist.len());
        if nh == 0 {
            return Ok(None);
        }
        let ids = Tensor::from_vec(hist.clone(), nh, &self.dev)?;
        let ph = table.index_select(&ids, 0)?.reshape((nh * k, d))?;
        let zt = Tensor::from_vec(z.to_vec(), (1, d), &self.dev)?;
        let (logits, mu) = if self.cfg.variant != Variant::Nmal {
            let keys = self.memory.keys.as_tensor();
            let m = keys.dims2()?.0;
            let q = ph
                .unsqueeze(1)?
                .broadcast_mul(&keys.unsqueeze(0)?)?
                .reshape((nh * k * m, d))?;
            let mu: Vec<f32> = self
                .memory
                .values
                .as_tensor()
                .matmul(&zt.t()?)?
                .flatten_all()?
                .to_vec1()?;
            (q, mu)
        } else {
            (ph.broadcast_mul(&zt)?, Vec::new())
        };
        let (hidden, b, h) = if k > 1 {
            let w = self.weight.hidden.weight.as_tensor();
            let s = w.dims2()?.1;
            let q = ph
                .unsqueeze(2)?
                .broadcast_mul(&w.unsqueeze(0)?)?
                .transpose(1, 2)?
                .contiguous()?
                .reshape((nh * k * s, d))?;
            let b: Vec<f32> = self
                .weight
                .hidden
                .bias
                .as_tensor()
                .flatten_all()?
                .to_vec1()?;
            let h: Vec<f32> = self.weight.h.as_tensor().flatten_all()?.to_vec1()?;
            (Some(q.t()?.contiguous()?), b, h)
        } else {
            (None, Vec::new(), Vec::new())
        };
        Ok(Some(HistoryTables {
            hist,
            logits: logits.t()?.contiguous()?,
            mu,
            hidden,
            b,
            h,
        }))
    }

    /// Eq. 11 for candidates `cands` of the user whose tables are `t`.
    fn score_candidates(
        &self,
        table: &Tensor,
        t: &HistoryTables,
        cands: &[u32],
    ) -> Result<Vec<f32>> {
        let (k, d) = (self.k, self.cfg.dim);
        let (nc, nh, hist, mu) = (cands.len(), t.hist.len(), &t.hist, &t.mu);
        let ids = Tensor::from_vec(cands.to_vec(), nc, &self.dev)?;
        let pc = table.index_select(&ids, 0)?.reshape((nc * k, d))?;
        let memory = !mu.is_empty();
        // Logits per (candidate aspect, history aspect): m, or one value.
        let m = mu.len().max(1);
        // (nc k, nh k m) memory logits, or (nc k, nh k) values z . v.
        let g1: Vec<f32> = pc.matmul(&t.logits)?.flatten_all()?.to_vec1()?;
        // (nc k, nh k s) pre-activations of the weight attention.
        let (g2, s) = match &t.hidden {
            Some(q) => (pc.matmul(q)?.flatten_all()?.to_vec1::<f32>()?, t.b.len()),
            None => (Vec::new(), 0),
        };
        let (b, h) = (t.b.as_slice(), t.h.as_slice());
        let kk = k * k;
        let scores = (0..nc)
            .into_par_iter()
            .map_init(
                // Scratch per thread: exponentials, relations, one row's
                // relations, weight-attention logits.
                || {
                    (
                        Vec::new(),
                        vec![0f32; nh * kk],
                        vec![0f32; nh * k],
                        vec![0f32; kk],
                    )
                },
                |(buf, rel, row_rel, logit), c| {
                    // rel[j k² + n k + l] = z . r over the pair's aspects (n, l).
                    for n in 0..k {
                        let row = (c * k + n) * nh * k;
                        if memory {
                            softmax_dots(&g1[row * m..(row + nh * k) * m], mu, buf, row_rel);
                        } else {
                            row_rel.copy_from_slice(&g1[row..row + nh * k]);
                        }
                        for (col, &r) in row_rel.iter().enumerate() {
                            rel[(col / k) * kk + n * k + col % k] = r;
                        }
                    }
                    let mut total = 0f32;
                    let mut count = 0usize;
                    for (j, &item) in hist.iter().enumerate() {
                        if item == cands[c] {
                            continue;
                        }
                        let rel = &rel[j * kk..(j + 1) * kk];
                        total += if s > 0 {
                            for n in 0..k {
                                let row = (c * k + n) * nh * k;
                                for l in 0..k {
                                    let at = row + j * k + l;
                                    let pre = &g2[at * s..(at + 1) * s];
                                    logit[n * k + l] = pre
                                        .iter()
                                        .zip(b)
                                        .zip(h)
                                        .map(|((&p, &b), &h)| h * (p + b).max(0.0))
                                        .sum();
                                }
                            }
                            softmax_dot(logit, rel)
                        } else {
                            rel[0]
                        };
                        count += 1;
                    }
                    total / count.max(1) as f32
                },
            )
            .collect();
        Ok(scores)
    }

    /// The memory's and the weight attention's variables, named after
    /// their layers.
    fn named_vars(&self) -> Vec<(String, Var)> {
        let mut v = self.memory.named_vars("memory");
        v.extend(self.weight.named_vars("weight"));
        v
    }

    /// Every weight (and the embedding table's Adam moments) as named
    /// tensors, for a safetensors checkpoint.
    pub fn state(&self) -> Result<HashMap<String, Tensor>> {
        let mut out = self.items.state("items")?;
        out.extend(checkpoint::vars_state(&self.named_vars())?);
        // Each user's training items (CSR) and the scoring seed: a saved
        // model scores without its training data.
        let mut offsets = Vec::with_capacity(self.history.len() + 1);
        offsets.push(0u32);
        let mut items = Vec::new();
        for h in &self.history {
            items.extend_from_slice(h);
            offsets.push(items.len() as u32);
        }
        let dev = &self.dev;
        let n = offsets.len();
        out.insert("history.offsets".into(), Tensor::from_vec(offsets, n, dev)?);
        let n = items.len();
        out.insert("history.items".into(), Tensor::from_vec(items, n, dev)?);
        let seed = [self.scoring_seed as u32, (self.scoring_seed >> 32) as u32];
        out.insert("scoring_seed".into(), Tensor::new(&seed, dev)?);
        Ok(out)
    }

    /// A trained model from what [`Reda::state`] saved.
    pub fn from_state(cfg: &RedaConfig, state: &HashMap<String, Tensor>) -> Result<Self> {
        let get = |name: &str| -> Result<Vec<u32>> {
            let t = state
                .get(name)
                .ok_or_else(|| RedaError::Config(format!("the state lacks {name}")))?;
            Ok(t.flatten_all()?.to_vec1()?)
        };
        let (offsets, items) = (get("history.offsets")?, get("history.items")?);
        let seed = get("scoring_seed")?;
        let ok = offsets.first() == Some(&0)
            && offsets.windows(2).all(|w| w[0] <= w[1])
            && offsets.last().map(|&l| l as usize) == Some(items.len())
            && seed.len() == 2;
        if !ok {
            return Err(RedaError::Config(
                "the saved histories are inconsistent".into(),
            ));
        }
        let n_users = offsets.len() - 1;
        let table = EmbeddingTable::from_state("items", state)?;
        if let Some(&i) = items.iter().find(|&&i| i as usize >= table.rows()) {
            return Err(RedaError::Config(format!(
                "a saved history names item {i} of {}",
                table.rows()
            )));
        }
        let pairs: Vec<(u32, u32)> = (0..n_users)
            .flat_map(|u| {
                items[offsets[u] as usize..offsets[u + 1] as usize]
                    .iter()
                    .map(move |&i| (u as u32, i))
            })
            .collect();
        let train = Interactions::from_pairs(n_users, table.rows(), &pairs);
        let mut model = Reda::init(&train, cfg, 0)?;
        model.scoring_seed = u64::from(seed[0]) | (u64::from(seed[1]) << 32);
        model.load_state(state)?;
        Ok(model)
    }

    /// Restores what [`Reda::state`] saved.
    pub fn load_state(&mut self, state: &HashMap<String, Tensor>) -> Result<()> {
        let items = EmbeddingTable::from_state("items", state)?;
        if (items.rows(), items.dim()) != (self.items.rows(), self.items.dim()) {
            return Err(RedaError::Config(format!(
                "the checkpoint's item table is {} x {}, this model's {} x {}",
                items.rows(),
                items.dim(),
                self.items.rows(),
                self.items.dim()
            )));
        }
        self.items = items;
        checkpoint::load_vars(&self.named_vars(), state)?;
        Ok(())
    }
}

impl Scorer for Reda {
    fn n_items(&self) -> usize {
        self.items.rows()
    }

    fn score_pairs(
        &self,
        pairs: &[(u32, u32)],
        out: &mut [f32],
    ) -> std::result::Result<(), ScoreError> {
        hinrec_eval::check_pairs(pairs, out, self.history.len(), self.items.rows())?;
        out.copy_from_slice(&Reda::score_pairs(self, pairs)?);
        Ok(())
    }
}

impl TrainedModel for Reda {
    fn save(&self, path: &Path) -> Result<(), ModelError> {
        checkpoint::save_model(path, &self.state()?)
    }

    fn explain(&self, user: u32, item: u32) -> Result<Vec<Reason>, ModelError> {
        let e = self.explain_pair(user, item)?;
        let top = e.contributions.first().map(|c| c.0);
        let mut out = vec![Reason::Items {
            what: "the user's items j, each with its term z_u . r_ij / |R_u| of the score".into(),
            weights: e.contributions.into_iter().take(5).collect(),
        }];
        if top.is_some() {
            if !e.aspects.is_empty() {
                out.push(Reason::Values {
                    what: "weight attention over the aspect pairs of this item and the first item above".into(),
                    values: e.aspects,
                });
            }
            if !e.slots.is_empty() {
                out.push(Reason::Values {
                    what: "memory attention over the slots for this item and the first item above"
                        .into(),
                    values: e.slots.into_iter().take(3).collect(),
                });
            }
        }
        Ok(out)
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn train() -> Interactions {
        let pairs: Vec<(u32, u32)> = (0..5u32)
            .flat_map(|u| (0..4 + u).map(move |i| (u, (3 * u + i) % 12)))
            .collect();
        Interactions::from_pairs(5, 12, &pairs)
    }

    /// The GEMM scoring path equals eq. 11 computed from relation
    /// embeddings, for every variant.
    #[test]
    fn fast_scores_equal_relation_sums() {
        let train = train();
        for variant in [Variant::Full, Variant::Npil, Variant::Nmal] {
            let cfg = RedaConfig {
                dim: 6,
                aspects: 3,
                memory_slots: 4,
                hidden: 5,
                user_pairs: 4,
                init_std: 0.8,
                variant,
                ..RedaConfig::default()
            };
            let model = Reda::init(&train, &cfg, 3).unwrap();
            // Non-zero biases, so the ReLU's offset is exercised.
            let b = Tensor::new(&[[0.3f32, -0.2, 0.1, 0.0, 0.5]], &Device::Cpu).unwrap();
            model.weight.hidden.bias.set(&b).unwrap();
            let table = model.items.tensor(DType::F32, &Device::Cpu).unwrap();
            let pairs = [(0u32, 5u32), (0, 0), (2, 1), (4, 11), (4, 3)];
            let fast = model.score_pairs(&pairs).unwrap();
            for (&(u, i), got) in pairs.iter().zip(fast) {
                let z: Vec<f32> = model
                    .user_embeddings(&[u])
                    .unwrap()
                    .flatten_all()
                    .unwrap()
                    .to_vec1()
                    .unwrap();
                let js: Vec<u32> = train
                    .user_items(u)
                    .iter()
                    .copied()
                    .filter(|&j| j != i)
                    .collect();
                let r = model.relations(&table, &vec![i; js.len()], &js).unwrap();
                let r: Vec<f32> = r.flatten_all().unwrap().to_vec1().unwrap();
                let want: f32 = r
                    .chunks(cfg.dim)
                    .map(|row| row.iter().zip(&z).map(|(a, b)| a * b).sum::<f32>())
                    .sum::<f32>()
                    / js.len() as f32;
                assert!(
                    (got - want).abs() < 1e-4 * want.abs().max(1.0),
                    "{variant:?} ({u}, {i}): {got} vs {want}"
                );
            }
        }
    }

    /// Scores do not depend on how candidates are chunked.
    #[test]
    fn chunked_scores_equal_single_scores() {
        let n = SCORE_CANDIDATES as u32 + 45;
        let pairs: Vec<(u32, u32)> = (0..6).map(|i| (0, i * 7)).collect();
        let train = Interactions::from_pairs(1, n as usize, &pairs);
        let cfg = RedaConfig {
            dim: 4,
            memory_slots: 3,
            hidden: 2,
            init_std: 0.8,
            ..RedaConfig::default()
        };
        let model = Reda::init(&train, &cfg, 2).unwrap();
        let all: Vec<(u32, u32)> = (0..n).map(|i| (0, i)).collect();
        let together = model.score_pairs(&all).unwrap();
        for i in [
            0,
            1,
            SCORE_CANDIDATES as u32 - 1,
            SCORE_CANDIDATES as u32,
            n - 1,
        ] {
            let alone = model.score_pairs(&[(0, i)]).unwrap()[0];
            assert!((together[i as usize] - alone).abs() < 1e-5, "item {i}");
        }
    }

    #[test]
    fn user_pairs_are_bounded_seeded_and_distinct() {
        let train = train();
        let cfg = RedaConfig {
            dim: 4,
            user_pairs: 5,
            ..RedaConfig::default()
        };
        let model = Reda::init(&train, &cfg, 1).unwrap();
        // User 0 has 4 items: all 6 pairs are more than 5, so 5 sampled.
        let p = model.user_pairs(0);
        assert_eq!(p.len(), 5);
        let mut keys: Vec<_> = p.iter().map(|&(a, b)| (a.min(b), a.max(b))).collect();
        keys.dedup();
        assert_eq!(keys.len(), 5);
        assert!(p
            .iter()
            .all(|&(a, b)| a != b && train.contains(0, a) && train.contains(0, b)));
        assert_eq!(Reda::init(&train, &cfg, 1).unwrap().user_pairs(0), p);
        let all = Reda::init(
            &train,
            &RedaConfig {
                user_pairs: 6,
                ..cfg
            },
            1,
        )
        .unwrap();
        assert_eq!(all.user_pairs(0).len(), 6, "every pair when they fit");
    }

    #[test]
    fn bad_configurations_are_errors() {
        let train = train();
        for cfg in [
            RedaConfig {
                aspects: 0,
                ..RedaConfig::default()
            },
            RedaConfig {
                memory_slots: 0,
                ..RedaConfig::default()
            },
            RedaConfig {
                lr: 0.0,
                ..RedaConfig::default()
            },
            RedaConfig {
                batch: 0,
                ..RedaConfig::default()
            },
        ] {
            assert!(Reda::init(&train, &cfg, 1).is_err(), "{cfg:?}");
        }
    }
}
