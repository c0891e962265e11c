//! GLRS's training (glrs.txt sections 3.1-3.3): global triplets (eq. 2),
//! local triplets (eq. 5-6) around each user's nearest GD clusters, the
//! product and distance losses (eq. 3-4), one fresh network per space,
//! then the attention network (eq. 7-9) over the frozen spaces; every
//! network's epochs driven by hinrec-nn's trainer, each stopped early on
//! the validation split.

use std::collections::HashMap;
use std::ops::Range;
use std::time::Instant;

use candle_core::Tensor;
use hinrec_cluster::index::{ClusterIndex, Metric};
use hinrec_cluster::kmeans::{sq_dist, KMeans, KMeansConfig};
use hinrec_data::Interactions;
use hinrec_eval::{Pruned, Scorer};
use hinrec_nn::checkpoint;
use hinrec_nn::dense_mlp::{Grads, Tape};
use hinrec_nn::optim::{Adam, AdamConfig};
use hinrec_nn::trainer::{train as train_epochs, TrainStep, TrainerConfig};
use hinrec_sample::unseen_item;
use hinrec_train::{CheckpointPolicy, FitContext, FitSummary, Judge};
use rand::seq::SliceRandom;
use rand::Rng as _;
use rand_chacha::ChaCha8Rng;

use crate::cache;
use crate::network::{Attention, Blend, Glrs, SpaceNet, SpaceScorer, Tables};
use crate::params::{GlrsConfig, GlrsError, LocalInit, Loss, Result, Space};

/// Triplets `(users[k], pos[k], neg[k])`.
#[derive(Debug, Clone, Default, PartialEq)]
pub struct Triplets {
    /// Users.
    pub users: Vec<u32>,
    /// Positive items.
    pub pos: Vec<u32>,
    /// Negative items.
    pub neg: Vec<u32>,
    /// With hard-negative mining: `h` candidate negatives per triplet
    /// (row-major, `neg[k]` among them); the step keeps the hardest.
    pub cands: Vec<u32>,
}

impl Triplets {
    fn push(&mut self, u: u32, p: u32, n: u32) {
        self.users.push(u);
        self.pos.push(p);
        self.neg.push(n);
    }

    /// Number of triplets.
    pub fn len(&self) -> usize {
        self.users.len()
    }

    /// Whether there is none.
    pub fn is_empty(&self) -> bool {
        self.users.is_empty()
    }

    fn shuffle(&mut self, rng: &mut ChaCha8Rng) {
        let mut order: Vec<usize> = (0..self.len()).collect();
        order.shuffle(rng);
        let pick = |v: &[u32]| order.iter().map(|&k| v[k]).collect::<Vec<u32>>();
        let h = self.cands.len() / self.len().max(1);
        let cands = order
            .iter()
            .flat_map(|&k| self.cands[k * h..(k + 1) * h].iter().copied())
            .collect();
        *self = Triplets {
            users: pick(&self.users),
            pos: pick(&self.pos),
            neg: pick(&self.neg),
            cands,
        };
    }

    fn extend(&mut self, other: Triplets) {
        self.users.extend(other.users);
        self.pos.extend(other.pos);
        self.neg.extend(other.neg);
        self.cands.extend(other.cands);
    }
}

/// Eq. 2: every training pair once, in a shuffled order, with one item
/// the user never had drawn uniformly; with `hard > 1`, that many drawn
/// as candidates of which the step keeps the hardest (section 3.1: "hard
/// examples of triplets that result in large loss can be selected
/// frequently").
pub fn global_triplets(train: &Interactions, hard: usize, rng: &mut ChaCha8Rng) -> Triplets {
    let n_items = train.n_items() as u32;
    let mut pairs: Vec<(u32, u32)> = train.pairs().collect();
    pairs.shuffle(rng);
    let mut out = Triplets::default();
    for (u, i) in pairs {
        if let Some(j) = unseen_item(train.user_items(u), n_items, rng) {
            out.push(u, i, j);
            if hard > 1 {
                out.cands.push(j);
                for _ in 1..hard {
                    let c = unseen_item(train.user_items(u), n_items, rng).unwrap_or(j);
                    out.cands.push(c);
                }
            }
        }
    }
    out
}

/// Each user's candidate clusters (the J nearest to û in GD, nearest
/// first) and the training positives inside them.
#[derive(Debug, Clone)]
struct UserLocal {
    clusters: Vec<u32>,
    /// `(item, slot)`: the positive and the position of its cluster in
    /// `clusters`.
    positives: Vec<(u32, usize)>,
}

/// Draws local triplets (section 3.2): for a positive i+ in the user's
/// candidate cluster C_j, a negative either from the same cluster and hard
/// in GD (T-dagger, eq. 5: |û - î+| > |û - î-|) or from a candidate cluster
/// C_k nearer to the user than C_j (T-double-dagger, eq. 6: |û - µ_j| >
/// |û - µ_k|). Nothing is enumerated: each positive gets a few draws.
#[derive(Debug, Clone)]
pub struct LocalSampler<'a> {
    train: &'a Interactions,
    gd: &'a Tables,
    lists: Vec<Vec<u32>>,
    users: Vec<UserLocal>,
    tries: usize,
}

impl<'a> LocalSampler<'a> {
    /// Candidate clusters of every user: the `j` centroids of `km` nearest
    /// to the user's GD vector.
    pub fn new(
        train: &'a Interactions,
        gd: &'a Tables,
        km: &'a KMeans,
        j: usize,
        tries: usize,
    ) -> Self {
        let mut lists = vec![Vec::new(); km.k()];
        for (i, &c) in km.assignment.iter().enumerate() {
            lists[c as usize].push(i as u32);
        }
        let users = (0..train.n_users() as u32)
            .map(|u| {
                let mut by_dist: Vec<(f32, u32)> = (0..km.k() as u32)
                    .map(|c| (sq_dist(gd.user(u), km.centroid(c)), c))
                    .collect();
                by_dist.sort_by(|a, b| a.0.total_cmp(&b.0).then(a.1.cmp(&b.1)));
                let clusters: Vec<u32> = by_dist.iter().take(j).map(|x| x.1).collect();
                let positives = train
                    .user_items(u)
                    .iter()
                    .filter_map(|&i| {
                        let c = km.assignment[i as usize];
                        clusters.iter().position(|&x| x == c).map(|slot| (i, slot))
                    })
                    .collect();
                UserLocal {
                    clusters,
                    positives,
                }
            })
            .collect();
        LocalSampler {
            train,
            gd,
            lists,
            users,
            tries,
        }
    }

    /// Training positives that lie in their user's candidate clusters.
    pub fn positives(&self) -> usize {
        self.users.iter().map(|u| u.positives.len()).sum()
    }

    /// One epoch's local triplets, shuffled.
    pub fn epoch(&self, rng: &mut ChaCha8Rng) -> Triplets {
        let mut out = Triplets::default();
        for (u, ul) in self.users.iter().enumerate() {
            let u = u as u32;
            let uv = self.gd.user(u);
            for &(p, slot) in &ul.positives {
                let d_pos = sq_dist(uv, self.gd.item(p));
                for _ in 0..self.tries {
                    // Candidate clusters nearer to u than i+'s: T-double-dagger.
                    let inter = slot > 0 && rng.random_bool(0.5);
                    let c = if inter {
                        ul.clusters[rng.random_range(0..slot)]
                    } else {
                        ul.clusters[slot]
                    };
                    let list = &self.lists[c as usize];
                    if list.is_empty() {
                        continue;
                    }
                    let n = list[rng.random_range(0..list.len())];
                    if n == p || self.train.contains(u, n) {
                        continue;
                    }
                    // T-dagger's hardness test; the inter case is hard by
                    // its choice of cluster.
                    if inter || d_pos > sq_dist(uv, self.gd.item(n)) {
                        out.push(u, p, n);
                        break;
                    }
                }
            }
        }
        out.shuffle(rng);
        out
    }
}

/// Unique ids (sorted) and each input's position among them, through
/// `slots` (one per id, `u32::MAX` when free; left free): linear in the
/// batch, where sorting every id and searching each was 5% of a step.
fn local_ids(ids: &[u32], slots: &mut Vec<u32>) -> (Vec<u32>, Vec<u32>) {
    let top = ids.iter().max().map_or(0, |&i| i as usize + 1);
    if slots.len() < top {
        slots.resize(top, u32::MAX);
    }
    let mut uniq = Vec::with_capacity(ids.len());
    for &i in ids {
        if slots[i as usize] == u32::MAX {
            slots[i as usize] = 0;
            uniq.push(i);
        }
    }
    uniq.sort_unstable();
    for (k, &i) in uniq.iter().enumerate() {
        slots[i as usize] = k as u32;
    }
    let pos = ids.iter().map(|&i| slots[i as usize]).collect();
    for &i in &uniq {
        slots[i as usize] = u32::MAX;
    }
    (uniq, pos)
}

/// For each triplet, the position (in `ri`) of its hardest of `h`
/// candidate negatives: the nearest to the user (distance loss) or the
/// highest dot product (product loss), by the current representations
/// (rows of `d`).
fn hardest(
    loss: Loss,
    ru: &[f32],
    ri: &[f32],
    d: usize,
    lu: &[u32],
    cands: &[u32],
    h: usize,
) -> Vec<u32> {
    fn row(t: &[f32], k: u32, d: usize) -> &[f32] {
        &t[k as usize * d..(k as usize + 1) * d]
    }
    lu.iter()
        .enumerate()
        .map(|(k, &u)| {
            let uv = row(ru, u, d);
            let cs = &cands[k * h..(k + 1) * h];
            let score = |c: u32| -> f32 {
                let iv = row(ri, c, d);
                match loss {
                    Loss::Distance => -sq_dist(uv, iv),
                    Loss::Product => crate::network::dot(uv, iv),
                }
            };
            cs.iter()
                .copied()
                .fold((cs[0], f32::NEG_INFINITY), |best, c| {
                    let s = score(c);
                    if s > best.1 {
                        (c, s)
                    } else {
                        best
                    }
                })
                .0
        })
        .collect()
}

/// Eq. 3 (product: `mean ln(1 + e^(u.n - u.p))`) or eq. 4 (distance:
/// `mean max(0, margin + |u - p|^2 - |u - n|^2)`) over the triplets
/// `(users[lu[k]], items[lp[k]], items[ln[k]])` (rows of `d`); its
/// gradient for every user and item row goes into `du` and `di` (a row in
/// several triplets sums theirs).
#[allow(clippy::too_many_arguments)]
fn triplet_loss(
    loss: Loss,
    users: &[f32],
    items: &[f32],
    d: usize,
    lu: &[u32],
    lp: &[u32],
    ln: &[u32],
    margin: f64,
    (du, di): (&mut Vec<f32>, &mut Vec<f32>),
) -> f64 {
    let b = lu.len().max(1) as f32;
    du.clear();
    du.resize(users.len(), 0.0);
    di.clear();
    di.resize(items.len(), 0.0);
    let mut total = 0f64;
    let at = |k: u32| k as usize * d..(k as usize + 1) * d;
    for ((&u, &p), &n) in lu.iter().zip(lp).zip(ln) {
        let (uv, pv, nv) = (&users[at(u)], &items[at(p)], &items[at(n)]);
        // Per row: (gradient of u, of p, of n) as coefficients below.
        match loss {
            Loss::Product => {
                let x = crate::network::dot(uv, nv) - crate::network::dot(uv, pv);
                // softplus(x) without overflow; its slope is sigmoid(x).
                total += (x.max(0.0) + (-x.abs()).exp().ln_1p()) as f64;
                let g = 1.0 / (1.0 + (-x).exp()) / b;
                for j in 0..d {
                    du[u as usize * d + j] += g * (nv[j] - pv[j]);
                    di[p as usize * d + j] -= g * uv[j];
                    di[n as usize * d + j] += g * uv[j];
                }
            }
            Loss::Distance => {
                let x = margin as f32 + sq_dist(uv, pv) - sq_dist(uv, nv);
                if x > 0.0 {
                    total += x as f64;
                    let g = 2.0 / b;
                    for j in 0..d {
                        du[u as usize * d + j] += g * (nv[j] - pv[j]);
                        di[p as usize * d + j] -= g * (uv[j] - pv[j]);
                        di[n as usize * d + j] += g * (uv[j] - nv[j]);
                    }
                }
            }
        }
    }
    total / b as f64
}

/// One representation network as the trainer drives it.
struct SpaceTraining<'a> {
    net: SpaceNet,
    adam: Adam,
    emb_cfg: AdamConfig,
    space: Space,
    cfg: &'a GlrsConfig,
    train: &'a Interactions,
    local: Option<&'a LocalSampler<'a>>,
    /// The GD space and its index, once they exist: validation then ranks
    /// within the probed clusters.
    index: Option<Probe<'a>>,
    judge: Judge<'a>,
    seed: u64,
    samples: usize,
    /// Buffers reused from step to step.
    scratch: Scratch,
}

/// A tower step's buffers, kept across steps (fresh ones each step cost
/// more in page faults than the products).
#[derive(Default)]
struct Scratch {
    /// Embedding rows of the batch's unique users and items.
    rows: [Vec<f32>; 2],
    /// The towers' tapes and gradients.
    tapes: [Tape; 2],
    grads: [Grads; 2],
    /// The loss's gradient of the output rows.
    out_grads: [Vec<f32>; 2],
    /// [`local_ids`]'s slots for users and items.
    slots: [Vec<u32>; 2],
}

/// Algorithm 1's retrieval stage: the GD user rows and the index.
#[derive(Clone, Copy)]
pub struct Probe<'a> {
    /// The GD space.
    pub gd: &'a Tables,
    /// The cluster index of its items.
    pub index: &'a ClusterIndex,
    /// Clusters probed.
    pub probe: usize,
}

impl Probe<'_> {
    /// The candidates of `user`.
    pub fn candidates(&self, user: u32) -> Option<Vec<u32>> {
        ((user as usize) < self.gd.n_users())
            .then(|| self.index.candidates(self.gd.user(user), self.probe))
    }
}

/// The judge's verdict on `scorer`, within `probe`'s candidates when given.
fn judged<S: Scorer>(
    judge: &mut Judge<'_>,
    scorer: &S,
    probe: Option<Probe<'_>>,
) -> Result<Option<f64>> {
    match probe {
        None => judge.score(scorer),
        Some(p) => {
            let candidates = |u: u32| p.candidates(u);
            judge.score(&Pruned {
                scorer,
                candidates: &candidates,
            })
        }
    }
    .map_err(GlrsError::Score)
}

/// One step of a representation network: the parts of [`SpaceTraining`]
/// it changes, so it can run on a pool thread.
struct TowerStep<'s> {
    net: &'s mut SpaceNet,
    adam: &'s mut Adam,
    scratch: &'s mut Scratch,
    cfg: &'s GlrsConfig,
    emb_cfg: &'s AdamConfig,
    loss: Loss,
}

impl TowerStep<'_> {
    fn run(self, data: &Triplets, range: Range<usize>) -> Result<f64> {
        let users = &data.users[range.clone()];
        let b = users.len();
        let h = data.cands.len() / data.len().max(1);
        let negs: &[u32] = if h > 1 {
            &data.cands[range.start * h..range.end * h]
        } else {
            &data.neg[range.clone()]
        };
        let items: Vec<u32> = data.pos[range].iter().chain(negs).copied().collect();
        let (uu, lu) = local_ids(users, &mut self.scratch.slots[0]);
        let (ui, li) = local_ids(&items, &mut self.scratch.slots[1]);
        let Scratch {
            rows: [eu, ei],
            tapes: [tu, ti],
            grads: [gu, gi],
            out_grads: [du, di],
            ..
        } = self.scratch;
        let (users, items) = (&self.net.users.embedding, &self.net.items.embedding);
        rayon::join(
            || users.gather_rows_into(&uu, eu),
            || items.gather_rows_into(&ui, ei),
        );
        let (mu, mi) = (self.net.users.dense()?, self.net.items.dense()?);
        // Each unique user and item goes through its tower once.
        let (a, b2) = rayon::join(
            || mu.forward_into(eu, uu.len(), tu),
            || mi.forward_into(ei, ui.len(), ti),
        );
        a?;
        b2?;
        let d = mu.d_out();
        let chosen: Vec<u32> = if h > 1 {
            hardest(self.loss, &tu.out, &ti.out, d, &lu, &li[b..], h)
        } else {
            li[b..].to_vec()
        };
        let mut loss = triplet_loss(
            self.loss,
            &tu.out,
            &ti.out,
            d,
            &lu,
            &li[..b],
            &chosen,
            self.cfg.margin,
            (du, di),
        );
        let (a, b2) = rayon::join(
            || mu.backward_into(tu, du, gu),
            || mi.backward_into(ti, di, gi),
        );
        a?;
        b2?;
        if self.cfg.reg > 0.0 {
            // L2 on the embedding rows the batch used, per triplet.
            let w = self.cfg.reg / b as f64;
            let sq = |x: &[f32]| x.iter().map(|&v| (v as f64) * (v as f64)).sum::<f64>();
            loss += w * (sq(eu) + sq(ei));
            let w = (2.0 * w) as f32;
            for (g, x) in [(&mut gu.input, &*eu), (&mut gi.input, &*ei)] {
                g.iter_mut().zip(x.iter()).for_each(|(g, &v)| *g += w * v);
            }
        }
        let dense: Vec<&[f32]> = gu
            .layers
            .iter()
            .chain(&gi.layers)
            .flat_map(|l| [l.weight.as_slice(), l.bias.as_slice()])
            .collect();
        self.adam.step_with(&dense)?;
        // The two tables' row updates are independent.
        let (users, items, cfg) = (
            &mut self.net.users.embedding,
            &mut self.net.items.embedding,
            self.emb_cfg,
        );
        let (a, b2) = rayon::join(
            || users.apply_rows(&uu, &gu.input, cfg),
            || items.apply_rows(&ui, &gi.input, cfg),
        );
        a?;
        b2?;
        Ok(loss)
    }
}

impl TrainStep for SpaceTraining<'_> {
    type Error = GlrsError;
    type Epoch = Triplets;

    fn epoch_seed(&self) -> u64 {
        self.seed ^ 0x9_1a5
    }

    fn epoch(&mut self, _epoch: usize, rng: &mut ChaCha8Rng) -> Result<Triplets> {
        Ok(match self.local {
            Some(l) => l.epoch(rng),
            None => global_triplets(self.train, self.cfg.hard_negatives, rng),
        })
    }

    fn examples(&self, data: &Triplets) -> usize {
        data.len()
    }

    fn batch_size(&self) -> usize {
        self.cfg.batch
    }

    fn step(&mut self, data: &Triplets, range: Range<usize>) -> Result<f64> {
        let step = TowerStep {
            net: &mut self.net,
            adam: &mut self.adam,
            scratch: &mut self.scratch,
            cfg: self.cfg,
            emb_cfg: &self.emb_cfg,
            loss: self.space.loss(),
        };
        // On a pool thread, so the step's joins are not each handed over
        // from this thread (a wake-up each).
        rayon::scope(|_| step.run(data, range))
    }

    fn validate(&mut self) -> Result<Option<f64>> {
        let tables = self.net.tables()?;
        judged(
            &mut self.judge,
            &SpaceScorer { tables: &tables },
            self.index,
        )
    }

    fn state(&self) -> Result<HashMap<String, Tensor>> {
        let mut s = checkpoint::vars_state(&self.net.named_vars())?;
        s.extend(self.net.users.embedding.state("user.embedding")?);
        s.extend(self.net.items.embedding.state("item.embedding")?);
        s.extend(self.adam.state("adam")?);
        Ok(s)
    }

    fn load_state(&mut self, state: &HashMap<String, Tensor>) -> Result<()> {
        checkpoint::load_vars(&self.net.named_vars(), state)?;
        self.net.users.embedding =
            hinrec_nn::embedding::EmbeddingTable::from_state("user.embedding", state)?;
        self.net.items.embedding =
            hinrec_nn::embedding::EmbeddingTable::from_state("item.embedding", state)?;
        self.adam.load_state("adam", state)?;
        Ok(())
    }

    fn samples_per_epoch(&self) -> usize {
        self.samples
    }
}

/// The attention network over frozen spaces as the trainer drives it.
struct AttentionTraining<'a> {
    attention: Attention,
    adam: Adam,
    loss: Loss,
    cfg: &'a GlrsConfig,
    spaces: &'a [(Space, Tables)],
    gd: &'a Tables,
    clusters: &'a KMeans,
    train: &'a Interactions,
    local: &'a LocalSampler<'a>,
    judge: Judge<'a>,
    seed: u64,
    scratch: AttentionScratch,
}

/// An attention step's buffers, kept across steps.
#[derive(Default)]
struct AttentionScratch {
    blend: Blend,
    /// ī+ then ī-.
    items: Vec<f32>,
    /// Triplet k's rows: ū k, item rows k and b + k.
    ids: Vec<u32>,
    negs: Vec<u32>,
    du: Vec<f32>,
    di: Vec<f32>,
}

impl AttentionTraining<'_> {
    fn names(&self) -> Vec<Space> {
        self.spaces.iter().map(|s| s.0).collect()
    }
}

/// One step of the attention network: the parts of
/// [`AttentionTraining`] it uses, so it can run on a pool thread.
struct BlendStep<'s> {
    attention: &'s Attention,
    adam: &'s mut Adam,
    scratch: &'s mut AttentionScratch,
    spaces: &'s [(Space, Tables)],
    cfg: &'s GlrsConfig,
    loss: Loss,
}

impl BlendStep<'_> {
    fn run(self, data: &Triplets, range: Range<usize>) -> Result<f64> {
        let d = self.cfg.dim;
        let b = range.len();
        let spaces: Vec<&Tables> = self.spaces.iter().map(|(_, t)| t).collect();
        let ids = (
            &data.users[range.clone()],
            &data.pos[range.clone()],
            &data.neg[range],
        );
        let AttentionScratch {
            blend: t,
            items,
            ids: local,
            negs,
            du,
            di,
        } = self.scratch;
        self.attention.blend(&spaces, ids, t)?;
        // ī+ and ī- side by side as the loss's item rows.
        items.clear();
        items.extend_from_slice(&t.p);
        items.extend_from_slice(&t.n);
        local.clear();
        local.extend(0..b as u32);
        negs.clear();
        negs.extend(b as u32..2 * b as u32);
        let loss = triplet_loss(
            self.loss,
            &t.u,
            items,
            d,
            local,
            local,
            negs,
            self.cfg.margin,
            (du, di),
        );
        self.attention
            .blend_backward(t, du, &di[..b * d], &di[b * d..])?;
        let grads: Vec<&[f32]> = t.grads.iter().map(Vec::as_slice).collect();
        self.adam.step_with(&grads)?;
        Ok(loss)
    }
}

impl TrainStep for AttentionTraining<'_> {
    type Error = GlrsError;
    type Epoch = Triplets;

    fn epoch_seed(&self) -> u64 {
        self.seed ^ 0xa77e
    }

    /// Section 3.3: triplets drawn from T, T-dagger and T-double-dagger.
    fn epoch(&mut self, _epoch: usize, rng: &mut ChaCha8Rng) -> Result<Triplets> {
        let mut t = global_triplets(self.train, 1, rng);
        t.extend(self.local.epoch(rng));
        t.shuffle(rng);
        Ok(t)
    }

    fn examples(&self, data: &Triplets) -> usize {
        data.len()
    }

    fn batch_size(&self) -> usize {
        self.cfg.batch
    }

    fn step(&mut self, data: &Triplets, range: Range<usize>) -> Result<f64> {
        let step = BlendStep {
            attention: &self.attention,
            adam: &mut self.adam,
            scratch: &mut self.scratch,
            spaces: self.spaces,
            cfg: self.cfg,
            loss: self.loss,
        };
        // On a pool thread, as a tower step.
        rayon::scope(|_| step.run(data, range))
    }

    fn validate(&mut self) -> Result<Option<f64>> {
        let model = Glrs::assemble(
            self.cfg,
            self.spaces.to_vec(),
            self.gd.clone(),
            Some(self.attention.clone()),
            self.clusters.clone(),
        )?;
        let index = model.index().clone();
        let probe = self.cfg.pruned_validation.then_some(Probe {
            gd: self.gd,
            index: &index,
            probe: self.cfg.probe,
        });
        judged(&mut self.judge, &model, probe)
    }

    fn state(&self) -> Result<HashMap<String, Tensor>> {
        let mut s = checkpoint::vars_state(&self.attention.named_vars(&self.names()))?;
        s.extend(self.adam.state("adam")?);
        Ok(s)
    }

    fn load_state(&mut self, state: &HashMap<String, Tensor>) -> Result<()> {
        checkpoint::load_vars(&self.attention.named_vars(&self.names()), state)?;
        self.adam.load_state("adam", state)?;
        Ok(())
    }

    fn samples_per_epoch(&self) -> usize {
        self.train.nnz() + self.local.positives()
    }
}

/// A stage's own checkpoint folder and tag.
fn stage_checkpoints(ctx: &FitContext<'_>, stage: &str) -> CheckpointPolicy {
    CheckpointPolicy {
        dir: ctx.checkpoints.dir.as_ref().map(|d| d.join(stage)),
        resume: ctx.checkpoints.resume,
        tag: format!("{}\nstage {stage}", ctx.checkpoints.tag),
    }
}

/// A stage's seed: the model seed mixed with the stage's name.
fn stage_seed(seed: u64, stage: &str) -> u64 {
    stage.bytes().fold(seed ^ 0x61c8_8646_80b5_83eb, |h, b| {
        (h ^ u64::from(b)).wrapping_mul(0x0000_0100_0000_01b3)
    })
}

impl Glrs {
    /// Trains one space's network on `ctx` (local triplets from `local`
    /// when the space is local) and returns its rows, from the process's
    /// cache when an identical fit already ran.
    fn fit_space(
        cfg: &GlrsConfig,
        ctx: &mut FitContext<'_>,
        space: Space,
        local: Option<&LocalSampler<'_>>,
        index: Option<Probe<'_>>,
        init: Option<&SpaceNet>,
    ) -> Result<(Tables, Option<FitSummary>, SpaceNet)> {
        let key = cache::key(cfg, ctx, space);
        if let Some(e) = cache::get(&key) {
            return Ok((e.0.tables()?, e.1.clone(), e.0.deep_copy()?));
        }
        let train = &ctx.split.train;
        let seed = stage_seed(ctx.seed, space.name());
        let net = match init {
            Some(n) => n.deep_copy()?,
            None => SpaceNet::new(train.n_users(), train.n_items(), cfg, seed)?,
        };
        let vars = net.named_vars().into_iter().map(|(_, v)| v).collect();
        let emb_cfg = AdamConfig {
            lr: cfg.lr,
            ..AdamConfig::default()
        };
        let adam = Adam::new(vars, emb_cfg)?;
        let samples = match local {
            Some(l) => l.positives(),
            None => train.nnz(),
        };
        let mut run = SpaceTraining {
            net,
            adam,
            emb_cfg,
            space,
            cfg,
            train,
            local,
            index: index.filter(|_| cfg.pruned_validation),
            judge: ctx.judge().map_err(GlrsError::Config)?,
            seed,
            samples,
            scratch: Default::default(),
        };
        let trainer = TrainerConfig {
            epochs: cfg.epochs,
            patience: cfg.patience,
            checkpoints: stage_checkpoints(ctx, space.name()),
        };
        let summary = train_epochs(&mut run, &trainer, &mut *ctx.progress)?;
        let tables = run.net.tables()?;
        cache::put(key, run.net.deep_copy()?, Some(summary.clone()));
        Ok((tables, Some(summary), run.net))
    }

    /// The k-means of the GD item space (M = `cfg.clusters`).
    pub fn cluster(cfg: &GlrsConfig, gd: &Tables, seed: u64) -> Result<KMeans> {
        let km = KMeans::fit(
            &gd.items,
            gd.dim,
            &KMeansConfig {
                k: cfg.clusters.min(gd.n_items()),
                max_iter: cfg.kmeans_iters,
                seed: stage_seed(seed, "kmeans"),
            },
        )?;
        Ok(km)
    }

    /// Trains every network the variant needs on `ctx.split.train`, each
    /// stopped early on `ctx.validation`: GD, its k-means, the other
    /// spaces, then (for an attentive variant) the attention network.
    /// The summary is the last network's, with the whole fit's time.
    pub fn fit(cfg: &GlrsConfig, ctx: &mut FitContext<'_>) -> Result<(Self, FitSummary)> {
        cfg.check()?;
        let started = Instant::now();
        let mut timings: Vec<(String, f64)> = Vec::new();
        let mut clock = Instant::now();
        let mut lap = |what: &str, clock: &mut Instant| {
            timings.push((what.to_string(), clock.elapsed().as_secs_f64()));
            *clock = Instant::now();
        };
        let (gd, mut last, gd_net) = Self::fit_space(cfg, ctx, Space::Gd, None, None, None)?;
        lap("space gd", &mut clock);
        let clusters = Self::cluster(cfg, &gd, ctx.seed)?;
        let index = ClusterIndex::new(&clusters, Metric::L2);
        let probe = Probe {
            gd: &gd,
            index: &index,
            probe: cfg.probe,
        };
        let train = ctx.split.train.clone();
        let local = LocalSampler::new(&train, &gd, &clusters, cfg.local_clusters, cfg.local_tries);
        lap("k-means and local candidates", &mut clock);
        let mut spaces = Vec::new();
        for &s in cfg.variant.spaces() {
            let tables = if s == Space::Gd {
                gd.clone()
            } else {
                let local = s.local().then_some(&local);
                // Local networks start from GD's, or fresh.
                let init = (s.local() && cfg.local_init == LocalInit::Global).then_some(&gd_net);
                let (t, summary, _) = Self::fit_space(cfg, ctx, s, local, Some(probe), init)?;
                lap(&format!("space {}", s.name()), &mut clock);
                last = summary.or(last);
                t
            };
            spaces.push((s, tables));
        }
        let attention = match cfg.variant.attention_loss() {
            None => None,
            Some(loss) => {
                let seed = stage_seed(ctx.seed, "attention");
                let attention = Attention::new(spaces.len(), cfg.dim)?;
                let names: Vec<Space> = spaces.iter().map(|s| s.0).collect();
                let vars = attention
                    .named_vars(&names)
                    .into_iter()
                    .map(|(_, v)| v)
                    .collect();
                let adam = Adam::new(
                    vars,
                    AdamConfig {
                        lr: cfg.attention_lr.unwrap_or(cfg.lr),
                        ..AdamConfig::default()
                    },
                )?;
                let mut run = AttentionTraining {
                    attention,
                    adam,
                    loss,
                    cfg,
                    spaces: &spaces,
                    gd: &gd,
                    clusters: &clusters,
                    train: &train,
                    local: &local,
                    judge: ctx.judge().map_err(GlrsError::Config)?,
                    seed,
                    scratch: AttentionScratch::default(),
                };
                let trainer = TrainerConfig {
                    epochs: cfg.epochs,
                    patience: cfg.patience,
                    checkpoints: stage_checkpoints(ctx, "attention"),
                };
                last = Some(train_epochs(&mut run, &trainer, &mut *ctx.progress)?);
                lap("attention", &mut clock);
                Some(run.attention)
            }
        };
        let mut model = Glrs::assemble(cfg, spaces, gd, attention, clusters)?;
        lap("precomputing the channels", &mut clock);
        model.timings = timings;
        let mut summary = match last {
            Some(s) => s,
            // Every space came from the cache: report the fit as instant.
            None => FitSummary {
                epochs: 0,
                best_epoch: 0,
                best_valid: None,
                train_s: 0.0,
                time_to_best_s: 0.0,
                total_s: 0.0,
                samples_per_s: 0.0,
                audit: Vec::new(),
            },
        };
        summary.total_s = started.elapsed().as_secs_f64();
        Ok((model, summary))
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use rand::SeedableRng;

    #[test]
    fn global_triplets_pair_every_positive_with_an_unseen_item() {
        let train = Interactions::from_pairs(3, 20, &[(0, 1), (0, 2), (1, 3), (2, 4), (2, 5)]);
        let mut rng = ChaCha8Rng::seed_from_u64(1);
        let t = global_triplets(&train, 4, &mut rng);
        assert_eq!(t.len(), 5);
        assert_eq!(t.cands.len(), 20);
        for k in 0..t.len() {
            assert!(train.contains(t.users[k], t.pos[k]));
            assert!(!train.contains(t.users[k], t.neg[k]));
            assert_eq!(t.cands[k * 4], t.neg[k]);
            for &c in &t.cands[k * 4..(k + 1) * 4] {
                assert!(!train.contains(t.users[k], c));
            }
        }
        let mut again = ChaCha8Rng::seed_from_u64(1);
        assert_eq!(t, global_triplets(&train, 4, &mut again), "seeded");
    }

    #[test]
    fn local_triplets_follow_eq_5_and_6() {
        // 1-d GD space: user 0 at 0.0; items on a line; clusters
        // {0,1,2} around 0 (centroid 0.1), {3,4,5} around 1 (1.0) and
        // {6,7} far away (5.0). User 0 has items 2 and 4.
        let gd = Tables {
            dim: 1,
            users: vec![0.0],
            items: vec![0.3, -0.1, 0.2, 0.9, 1.2, 1.0, 5.0, 5.1],
        };
        let km = KMeans {
            dim: 1,
            centroids: vec![0.1, 1.0, 5.0],
            assignment: vec![0, 0, 0, 1, 1, 1, 2, 2],
            inertia: 0.0,
            iterations: 1,
        };
        let train = Interactions::from_pairs(1, 8, &[(0, 2), (0, 4)]);
        let s = LocalSampler::new(&train, &gd, &km, 2, 50);
        assert_eq!(
            s.positives(),
            2,
            "both positives lie in the two nearest clusters"
        );
        let mut rng = ChaCha8Rng::seed_from_u64(3);
        let mut seen = std::collections::BTreeSet::new();
        for _ in 0..200 {
            let t = s.epoch(&mut rng);
            for k in 0..t.len() {
                let (p, n) = (t.pos[k], t.neg[k]);
                seen.insert((p, n));
                assert!(!train.contains(0, n));
                let (cp, cn) = (km.assignment[p as usize], km.assignment[n as usize]);
                if cp == cn {
                    // Eq. 5: the negative is nearer to the user.
                    assert!(
                        gd.items[n as usize].abs() < gd.items[p as usize].abs(),
                        "{p} {n}"
                    );
                } else {
                    // Eq. 6: the negative's cluster is nearer.
                    assert!(km.centroids[cn as usize].abs() < km.centroids[cp as usize].abs());
                }
                assert_ne!(cn, 2, "never the far cluster");
            }
        }
        // Item 2 (0.2): only item 1 (-0.1) is nearer in its cluster (0 is
        // farther at 0.3). Item 4 (1.2): 3 (0.9) and 5 (1.0) in its
        // cluster, and 0 and 1 from the nearer cluster.
        let want: std::collections::BTreeSet<(u32, u32)> = [(2, 1), (4, 3), (4, 5), (4, 0), (4, 1)]
            .into_iter()
            .collect();
        assert_eq!(seen, want);
    }

    #[test]
    fn local_ids_are_the_sorted_unique_ids_and_leave_the_slots_free() {
        let mut slots = Vec::new();
        for ids in [vec![7u32, 2, 7, 0, 2], vec![], vec![3, 3, 1]] {
            let (uniq, pos) = local_ids(&ids, &mut slots);
            let mut want = ids.clone();
            want.sort_unstable();
            want.dedup();
            assert_eq!(uniq, want);
            let back: Vec<u32> = pos.iter().map(|&p| uniq[p as usize]).collect();
            assert_eq!(back, ids);
            assert!(slots.iter().all(|&s| s == u32::MAX));
        }
    }

    #[test]
    fn hardest_negative_is_the_nearest_or_the_highest_product() {
        let ru = [1f32, 0.0];
        let ri = [0.0f32, 1.0, 0.8, 0.6, -1.0, 0.0];
        let pick = hardest(Loss::Distance, &ru, &ri, 2, &[0], &[0, 1, 2], 3);
        assert_eq!(pick, vec![1]);
        let pick = hardest(Loss::Product, &ru, &ri, 2, &[0], &[2, 0], 2);
        assert_eq!(pick, vec![0]);
    }

    #[test]
    fn losses_by_hand() {
        let (u, items) = ([1f32, 0.0], [0.0f32, 1.0, 1.0, 0.0]);
        let (mut du, mut di) = (Vec::new(), Vec::new());
        let mut loss = |kind: Loss| {
            triplet_loss(
                kind,
                &u,
                &items,
                2,
                &[0],
                &[0],
                &[1],
                0.5,
                (&mut du, &mut di),
            )
        };
        // Distance: |u-p|^2 = 2, |u-n|^2 = 0: max(0, 2 - 0 + 0.5) = 2.5.
        assert!((loss(Loss::Distance) - 2.5).abs() < 1e-6);
        // Product: -ln sigmoid(0 - 1) = ln(1 + e).
        let p = loss(Loss::Product);
        assert!((p - (1.0 + std::f64::consts::E).ln()).abs() < 1e-6);
        // Slope sigmoid(1) on u.n - u.p: du = s (n - p), dp = -s u, dn = s u.
        let s = 1.0 / (1.0 + (-1f32).exp());
        assert!((du[0] - s).abs() < 1e-6 && (du[1] + s).abs() < 1e-6);
        assert!((di[0] + s).abs() < 1e-6 && (di[2] - s).abs() < 1e-6);
        assert!(di[1] == 0.0 && di[3] == 0.0);
        // A hinge below zero has no gradient.
        let far = [0.0f32, 1.0, -1.0, 0.0];
        let z = triplet_loss(
            Loss::Distance,
            &u,
            &far,
            2,
            &[0],
            &[0],
            &[1],
            0.5,
            (&mut du, &mut di),
        );
        assert_eq!(z, 0.0);
        assert!(du.iter().all(|&g| g == 0.0));
    }

    /// Both losses' gradients against central differences, with shared
    /// rows (a user in two triplets, an item both positive and negative).
    #[test]
    fn loss_gradients_match_finite_differences() {
        let mut rng = hinrec_nn::init::Rng::new(9);
        let d = 3;
        let users: Vec<f32> = rng.uniform_f32(2 * d, 1.0);
        let items: Vec<f32> = rng.uniform_f32(3 * d, 1.0);
        let (lu, lp, ln) = ([0u32, 1, 0], [0u32, 1, 2], [1u32, 2, 0]);
        for loss in [Loss::Product, Loss::Distance] {
            let f = |u: &[f32], i: &[f32]| {
                let (mut a, mut b) = (Vec::new(), Vec::new());
                triplet_loss(loss, u, i, d, &lu, &lp, &ln, 2.0, (&mut a, &mut b))
            };
            let (mut du, mut di) = (Vec::new(), Vec::new());
            triplet_loss(
                loss,
                &users,
                &items,
                d,
                &lu,
                &lp,
                &ln,
                2.0,
                (&mut du, &mut di),
            );
            let eps = 1e-3f32;
            // Perturb value k of the users (side 0) or the items (side 1).
            let numeric = |side: usize, k: usize| -> f64 {
                let at = |delta: f32| {
                    let (mut u, mut i) = (users.clone(), items.clone());
                    [&mut u, &mut i][side][k] += delta;
                    f(&u, &i)
                };
                (at(eps) - at(-eps)) / (2.0 * eps as f64)
            };
            for (side, got) in [(0, &du), (1, &di)] {
                for (k, &g) in got.iter().enumerate() {
                    let num = numeric(side, k);
                    assert!(
                        (num - g as f64).abs() < 2e-3,
                        "{loss:?} side {side} value {k}: {num} {g}"
                    );
                }
            }
        }
    }
}
