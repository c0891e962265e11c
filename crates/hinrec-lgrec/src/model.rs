//! The LGRec model, its training loop and its batched scoring.

use std::collections::HashMap;
use std::time::Instant;

use candle_core::{DType, Device, Tensor, Var, D};
use hinrec_baselines::{BprConfig, BprMf};
use hinrec_data::{EvalNegatives, Interactions};
use hinrec_eval::{sampled, Metrics, ScoreError, Scorer};
use hinrec_graph::{MetaPath, PairLabeler, RowRule};
use hinrec_nn::checkpoint;
use hinrec_nn::copool::Slots;
use hinrec_nn::init::Rng;
use hinrec_nn::layers::{
    co_attention, masked_mean, translation_distance, CoAttentionTables, Linear, Mlp,
};
use hinrec_nn::loss::{bce_with_logits, hinge, l2};
use hinrec_nn::optim::{Adam, AdamConfig, EmbeddingTable};
use hinrec_nn::trainer::{train as train_epochs, TrainStep, TrainerConfig};
use hinrec_sample::{unseen_item, NeighborLists};
use hinrec_train::{FitContext, FitSummary, Validation};
use rand::seq::SliceRandom;
use rand_chacha::ChaCha8Rng;
use serde::{Deserialize, Serialize};

/// Errors of LGRec.
#[derive(Debug, thiserror::Error)]
pub enum LgrecError {
    /// A tensor operation failed.
    #[error(transparent)]
    Candle(#[from] candle_core::Error),
    /// A meta-path could not be resolved.
    #[error(transparent)]
    Graph(#[from] hinrec_graph::GraphError),
    /// Pretraining the neighbour-ranking BPR-MF failed.
    #[error(transparent)]
    Baseline(#[from] hinrec_baselines::BaselineError),
    /// A configuration value is unusable.
    #[error("invalid LGRec configuration: {0}")]
    Config(String),
    /// The data cannot serve the configuration (no meta-paths, no HIN).
    #[error("{0}")]
    Data(String),
    /// Validation scoring failed.
    #[error("validation: {0}")]
    Score(ScoreError),
}

type Result<T> = std::result::Result<T, LgrecError>;

/// The model and its ablations (lgrec.txt Table 2).
/// Serialised as the suffix of its registry name (`noatt` for
/// `lgrec-noatt`): one spelling per variant.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "lowercase")]
pub enum Variant {
    /// Co-attention and global relation.
    Full,
    /// Plain mean over neighbours instead of co-attention.
    NoAtt,
    /// No relation vector and no multi-label loss.
    NoGlo,
}

impl Variant {
    /// Table name.
    pub fn name(self) -> &'static str {
        match self {
            Variant::Full => "lgrec",
            Variant::NoAtt => "lgrec-noatt",
            Variant::NoGlo => "lgrec-noglo",
        }
    }
}

/// Hyper-parameters (defaults from lgrec.txt section 2.3).
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
#[serde(default, deny_unknown_fields)]
pub struct LgrecConfig {
    /// Embedding size d.
    pub dim: usize,
    /// Neighbours per user, K1.
    pub k_user: usize,
    /// Neighbours per item, K2.
    pub k_item: usize,
    /// Weight of the multi-label loss.
    pub alpha: f64,
    /// Weight of L2 on the embedding rows a batch uses (per triple).
    pub beta: f64,
    /// Hinge margin.
    pub margin: f64,
    /// Adam learning rate.
    pub lr: f64,
    /// Triples per batch.
    pub batch: usize,
    /// Maximum epochs.
    pub epochs: usize,
    /// Epochs without validation improvement before stopping.
    pub patience: usize,
    /// Meta-paths whose labels the relation predicts, by entity codes
    /// (`UMUM`); empty: the dataset's own (its manifest's `metapaths`).
    pub meta_paths: Vec<String>,
    /// Full model or ablation.
    pub variant: Variant,
    /// Pairs scored per candle call when evaluating.
    pub eval_batch: usize,
    /// Epochs of the BPR-MF that ranks neighbours.
    pub bpr_epochs: usize,
    /// Mask a pair's own edge out of its neighbour lists (see
    /// docs/lgrec.md; only training positives have one).
    pub hide_own_edge: bool,
    /// A ReLU after the relation MLP's output layer, as in the authors'
    /// released code (the paper's eq. 6 leaves the output linear).
    pub relation_relu: bool,
}

impl Default for LgrecConfig {
    fn default() -> Self {
        LgrecConfig {
            dim: 128,
            k_user: 100,
            k_item: 100,
            alpha: 0.1,
            beta: 0.001,
            margin: 1.0,
            lr: 0.001,
            batch: 256,
            epochs: 30,
            patience: 3,
            meta_paths: Vec::new(),
            variant: Variant::Full,
            eval_batch: 1024,
            bpr_epochs: 60,
            hide_own_edge: true,
            relation_relu: false,
        }
    }
}

/// A trained (or training) LGRec.
pub struct Lgrec {
    cfg: LgrecConfig,
    dev: Device,
    users: EmbeddingTable,
    items: EmbeddingTable,
    f: Mlp,
    g: Mlp,
    a: Var,
    rel: Mlp,
    out: Linear,
    user_nb: NeighborLists,
    item_nb: NeighborLists,
}

/// What [`Lgrec::explain_pair`] returns.
#[derive(Debug, Clone, PartialEq)]
pub struct Explanation {
    /// The user's neighbour items and their weights in `x_u`.
    pub items: Vec<(u32, f32)>,
    /// The item's neighbour users and their weights in `y_v`.
    pub users: Vec<(u32, f32)>,
    /// Each meta-path's label probability for the pair.
    pub labels: Vec<(String, f32)>,
}

/// Per-neighbour tensors a batch reads: the co-attention tables, or for
/// the no-attention ablation only the raw item and user rows.
enum Sides {
    Attention(CoAttentionTables),
    Mean { x: Tensor, y: Tensor },
}

impl Lgrec {
    /// A seeded, untrained model whose neighbour lists are ranked by a
    /// BPR-MF trained on `train`.
    pub fn init(
        train: &Interactions,
        n_paths: usize,
        cfg: &LgrecConfig,
        seed: u64,
    ) -> Result<Self> {
        cfg.check()?;
        if cfg.variant != Variant::NoGlo && n_paths == 0 {
            return Err(LgrecError::Data(format!(
                "{} needs at least one meta-path",
                cfg.variant.name()
            )));
        }
        let bpr_cfg = BprConfig {
            epochs: cfg.bpr_epochs,
            ..BprConfig::default()
        };
        let (bpr, _) = BprMf::fit(train, &bpr_cfg, &Validation::none(), seed, |_| {})?;
        let score = |u: u32, i: u32| {
            let mut s = [0f32];
            bpr.score_user(u, &[i], &mut s);
            s[0]
        };
        let user_nb = NeighborLists::of_users(train, cfg.k_user, score);
        let item_nb = NeighborLists::of_items(train, cfg.k_item, score);
        Self::build(cfg, n_paths, user_nb, item_nb, seed)
    }

    /// Seeded weights around given neighbour lists (one per user and one
    /// per item).
    fn build(
        cfg: &LgrecConfig,
        n_paths: usize,
        user_nb: NeighborLists,
        item_nb: NeighborLists,
        seed: u64,
    ) -> Result<Self> {
        let dev = Device::Cpu;
        let mut rng = Rng::new(seed);
        let d = cfg.dim;
        let (n_users, n_items) = (user_nb.len(), item_nb.len());
        let table = |rng: &mut Rng, n: usize| -> Result<EmbeddingTable> {
            let t = rng.xavier_normal(n, d, DType::F32, &dev)?;
            Ok(EmbeddingTable::new(n, d, t.flatten_all()?.to_vec1()?))
        };
        Ok(Lgrec {
            users: table(&mut rng, n_users)?,
            items: table(&mut rng, n_items)?,
            f: Mlp::new(&mut rng, &[d, d, d], DType::F32, &dev)?,
            g: Mlp::new(&mut rng, &[d, d, d], DType::F32, &dev)?,
            a: rng.xavier_var(d, d, DType::F32, &dev)?,
            rel: Mlp::new(&mut rng, &[2 * d, d, d, d], DType::F32, &dev)?,
            out: Linear::new(&mut rng, d, n_paths.max(1), DType::F32, &dev)?,
            user_nb,
            item_nb,
            cfg: cfg.clone(),
            dev,
        })
    }

    fn dense_vars(&self) -> Vec<Var> {
        let mut v = Vec::new();
        if self.cfg.variant != Variant::NoAtt {
            v.extend(self.f.vars());
            v.extend(self.g.vars());
            v.push(self.a.clone());
        }
        if self.cfg.variant != Variant::NoGlo {
            v.extend(self.rel.vars());
            v.extend(self.out.vars());
        }
        v
    }

    /// Distances and relation vectors of pairs `(users[k], items[k])`.
    fn forward(
        &self,
        s: &Sides,
        users: &[u32],
        items: &[u32],
        item_local: Option<&[u32]>,
        user_local: Option<&[u32]>,
    ) -> Result<(Tensor, Option<Tensor>)> {
        let (p, k1, k2) = (users.len(), self.cfg.k_user, self.cfg.k_item);
        let mut slots = Slots {
            idx_x: Vec::with_capacity(p * k1),
            idx_y: Vec::with_capacity(p * k2),
            mask_x: Vec::with_capacity(p * k1),
            mask_y: Vec::with_capacity(p * k2),
        };
        // A pair's own edge is never its neighbour: a training positive
        // (u, v) would otherwise find v among u's items and u among v's
        // users, which no test pair can.
        let hide = self.cfg.hide_own_edge;
        let fill = |lists: &NeighborLists,
                    nodes: &[u32],
                    others: &[u32],
                    local: Option<&[u32]>,
                    idx: &mut Vec<u32>,
                    mask: &mut Vec<bool>| {
            for (&n, &o) in nodes.iter().zip(others) {
                let nb = lists.neighbors(n);
                match local {
                    Some(l) => idx.extend(nb.iter().map(|&m| l[m as usize])),
                    None => idx.extend_from_slice(nb),
                }
                mask.extend(
                    nb.iter()
                        .zip(lists.mask(n))
                        .map(|(&m, &real)| real > 0.0 && !(hide && m == o)),
                );
            }
        };
        fill(
            &self.user_nb,
            users,
            items,
            item_local,
            &mut slots.idx_x,
            &mut slots.mask_x,
        );
        fill(
            &self.item_nb,
            items,
            users,
            user_local,
            &mut slots.idx_y,
            &mut slots.mask_y,
        );
        let (xu, yv) = match s {
            Sides::Attention(t) => co_attention(t, slots, k1, k2)?,
            Sides::Mean { x, y } => {
                let mask = |m: &[bool], k: usize| {
                    Tensor::from_vec(
                        m.iter()
                            .map(|&b| f32::from(u8::from(b)))
                            .collect::<Vec<_>>(),
                        (p, k),
                        &self.dev,
                    )
                };
                let (mx, my) = (mask(&slots.mask_x, k1)?, mask(&slots.mask_y, k2)?);
                (
                    masked_mean(x, slots.idx_x, &mx)?,
                    masked_mean(y, slots.idx_y, &my)?,
                )
            }
        };
        if self.cfg.variant == Variant::NoGlo {
            return Ok(((xu - yv)?.sqr()?.sum(D::Minus1)?, None));
        }
        let mut z = self.rel.forward(&Tensor::cat(&[&xu, &yv], 1)?)?;
        if self.cfg.relation_relu {
            z = z.relu()?;
        }
        Ok((translation_distance(&xu, &z, &yv)?, Some(z)))
    }

    /// Why `(user, item)` scores as it does: the weights of the user's
    /// neighbour items and of the item's neighbour users in `x_u` and `y_v`
    /// (co-attention, eq. 1-3, or the plain mean of noAtt), largest first,
    /// and the relation's meta-path label probabilities (eq. 7-8; none for
    /// noGlo).
    pub fn explain_pair(&self, user: u32, item: u32) -> Result<Explanation> {
        let (nu, ni) = (self.users.rows(), self.items.rows());
        if user as usize >= nu || item as usize >= ni {
            return Err(LgrecError::Config(format!(
                "({user}, {item}) is outside the model's {nu} users x {ni} items"
            )));
        }
        let real = |lists: &NeighborLists, n: u32, other: u32| -> Vec<u32> {
            lists
                .neighbors(n)
                .iter()
                .zip(lists.mask(n))
                .filter(|(&m, &r)| r > 0.0 && !(self.cfg.hide_own_edge && m == other))
                .map(|(&m, _)| m)
                .collect()
        };
        let (xs, ys) = (
            real(&self.user_nb, user, item),
            real(&self.item_nb, item, user),
        );
        let x = self
            .items
            .gather(&xs, DType::F32, &self.dev)?
            .as_tensor()
            .clone();
        let y = self
            .users
            .gather(&ys, DType::F32, &self.dev)?
            .as_tensor()
            .clone();
        let (wx, wy) = if xs.is_empty() || ys.is_empty() || self.cfg.variant == Variant::NoAtt {
            let mean = |n: usize| vec![1.0 / n.max(1) as f32; n];
            (mean(xs.len()), mean(ys.len()))
        } else {
            // M = F(X_u) A G(Y_v)^T; each side's importance is its max over
            // the other side, a softmax turns them into weights (eq. 1-3).
            let m = self
                .f
                .forward(&x)?
                .matmul(self.a.as_tensor())?
                .matmul(&self.g.forward(&y)?.t()?)?;
            let soft = |t: Tensor| -> Result<Vec<f32>> {
                Ok(candle_nn::ops::softmax(&t, D::Minus1)?.to_vec1()?)
            };
            (soft(m.max(1)?)?, soft(m.max(0)?)?)
        };
        let labels = if self.cfg.variant == Variant::NoGlo {
            Vec::new()
        } else {
            let pool = |t: &Tensor, w: &[f32]| -> Result<Tensor> {
                if w.is_empty() {
                    return Ok(Tensor::zeros((1, self.cfg.dim), DType::F32, &self.dev)?);
                }
                let w = Tensor::from_vec(w.to_vec(), (1, w.len()), &self.dev)?;
                Ok(w.matmul(t)?)
            };
            let (xu, yv) = (pool(&x, &wx)?, pool(&y, &wy)?);
            let mut z = self.rel.forward(&Tensor::cat(&[&xu, &yv], 1)?)?;
            if self.cfg.relation_relu {
                z = z.relu()?;
            }
            let p: Vec<f32> = candle_nn::ops::sigmoid(&self.out.forward(&z)?)?
                .flatten_all()?
                .to_vec1()?;
            let names = self.cfg.meta_paths.iter().cloned();
            names
                .chain((self.cfg.meta_paths.len()..).map(|k| format!("path {k}")))
                .zip(p)
                .collect()
        };
        let ranked = |ids: Vec<u32>, w: Vec<f32>| {
            let mut v: Vec<(u32, f32)> = ids.into_iter().zip(w).collect();
            v.sort_by(|a, b| b.1.total_cmp(&a.1).then(a.0.cmp(&b.0)));
            v
        };
        Ok(Explanation {
            items: ranked(xs, wx),
            users: ranked(ys, wy),
            labels,
        })
    }

    fn sides(&self, x: Tensor, y: Tensor) -> Result<Sides> {
        if self.cfg.variant == Variant::NoAtt {
            return Ok(Sides::Mean { x, y });
        }
        let fa = self.f.forward(&x)?.matmul(self.a.as_tensor())?;
        let g = self.g.forward(&y)?;
        Ok(Sides::Attention(CoAttentionTables::new(fa, g, x, y)?))
    }

    /// One optimisation step on a batch of triples. Returns the loss.
    fn step(&mut self, batch: &Batch<'_>, adam: &mut Adam, emb_cfg: &AdamConfig) -> Result<f64> {
        let Batch {
            users,
            pos,
            neg,
            labels,
            n_paths,
        } = *batch;
        let b = users.len();
        let (uniq_i, loc_i) = local_ids(
            users
                .iter()
                .flat_map(|&u| self.user_nb.neighbors(u).iter().copied()),
            self.items.rows(),
        );
        let both: Vec<u32> = pos.iter().chain(neg).copied().collect();
        let (uniq_u, loc_u) = local_ids(
            both.iter()
                .flat_map(|&v| self.item_nb.neighbors(v).iter().copied()),
            self.users.rows(),
        );
        let ei = self.items.gather(&uniq_i, DType::F32, &self.dev)?;
        let eu = self.users.gather(&uniq_u, DType::F32, &self.dev)?;
        let sides = self.sides(ei.as_tensor().clone(), eu.as_tensor().clone())?;
        let pair_users: Vec<u32> = users.iter().chain(users).copied().collect();
        let (dist, z) = self.forward(&sides, &pair_users, &both, Some(&loc_i), Some(&loc_u))?;
        let mut loss = hinge(
            &dist.narrow(0, 0, b)?,
            &dist.narrow(0, b, b)?,
            self.cfg.margin,
        )?;
        if let Some(z) = z {
            let logits = self.out.forward(&z)?;
            let y = Tensor::from_vec(labels.to_vec(), (2 * b, n_paths), &self.dev)?;
            // Eq. 11: alpha (l_mc(y+) + l_mc(y-)), each a sum over meta-paths.
            loss = (loss
                + (bce_with_logits(&logits, &y)? * (self.cfg.alpha * 2.0 * n_paths as f64))?)?;
        }
        let reg = (l2(&[ei.as_tensor(), eu.as_tensor()])? * (self.cfg.beta / b as f64))?;
        loss = (loss + reg)?;
        let grads = loss.backward()?;
        adam.step(&grads)?;
        if let Some(g) = grads.get(ei.as_tensor()) {
            self.items.apply(&uniq_i, g, emb_cfg)?;
        }
        if let Some(g) = grads.get(eu.as_tensor()) {
            self.users.apply(&uniq_u, g, emb_cfg)?;
        }
        Ok(loss.to_scalar::<f32>()? as f64)
    }

    /// Scores (negated distances: higher is better) of `pairs`, computed in
    /// batches of `eval_batch` pairs.
    pub fn score_pairs(&self, pairs: &[(u32, u32)]) -> Result<Vec<f32>> {
        let x = self.items.tensor(DType::F32, &self.dev)?;
        let y = self.users.tensor(DType::F32, &self.dev)?;
        // Every chunk reads the same tables: FA G^T once for all of them.
        let sides = match self.sides(x, y)? {
            Sides::Attention(t) => Sides::Attention(t.with_product()?),
            mean => mean,
        };
        let mut out = Vec::with_capacity(pairs.len());
        for chunk in pairs.chunks(self.cfg.eval_batch.max(1)) {
            let users: Vec<u32> = chunk.iter().map(|p| p.0).collect();
            let items: Vec<u32> = chunk.iter().map(|p| p.1).collect();
            let (dist, _) = self.forward(&sides, &users, &items, None, None)?;
            out.extend(dist.to_vec1::<f32>()?.into_iter().map(|d| -d));
        }
        Ok(out)
    }

    /// The meta-paths a fit on `ctx` uses: the configuration's, else the
    /// dataset's.
    pub fn meta_paths<'c>(cfg: &'c LgrecConfig, ctx: &'c FitContext<'_>) -> &'c [String] {
        if cfg.meta_paths.is_empty() {
            ctx.meta_paths
        } else {
            &cfg.meta_paths
        }
    }

    /// Checks `cfg` against the data of `ctx` before any work: the HIN is
    /// there when the variant needs it, and it has every meta-path.
    pub fn check_data(cfg: &LgrecConfig, ctx: &FitContext<'_>) -> Result<()> {
        if cfg.variant == Variant::NoGlo {
            return Ok(());
        }
        let paths = Self::meta_paths(cfg, ctx);
        if paths.is_empty() {
            return Err(LgrecError::Data(format!(
                "{} needs meta-paths: name them in the dataset's manifest (metapaths = [\"UIUI\", ...]) or in [lgrec] meta_paths",
                cfg.variant.name()
            )));
        }
        let hin = ctx.hin.ok_or_else(|| {
            LgrecError::Data(format!("{} needs the dataset's HIN", cfg.variant.name()))
        })?;
        for p in paths {
            MetaPath::parse(hin, p)?;
        }
        Ok(())
    }

    /// Trains on `ctx.split.train` with early stopping on `ctx.validation`
    /// and keeps the best epoch. Given `ctx.audit`, also evaluates it
    /// (sampled, at the validation metric's cut-off) after every epoch into
    /// the summary's `audit`, one entry per epoch trained in this call:
    /// only reported, the epoch is still chosen on validation and the
    /// training path is the same. It measures how optimistic choosing the
    /// epoch on the test set (as the authors' released code does) would be.
    pub fn fit(cfg: &LgrecConfig, ctx: &mut FitContext<'_>) -> Result<(Self, FitSummary)> {
        cfg.check()?;
        Self::check_data(cfg, ctx)?;
        let train = &ctx.split.train;
        let paths: Vec<&str> = Self::meta_paths(cfg, ctx)
            .iter()
            .map(String::as_str)
            .collect();
        let labeler = match (cfg.variant, ctx.hin) {
            (Variant::NoGlo, _) | (_, None) => None,
            (_, Some(hin)) => Some(PairLabeler::new(hin, &paths, RowRule::AboveRowMean)?),
        };
        let started = Instant::now();
        let mut model = Self::init(train, paths.len(), cfg, ctx.seed)?;
        // The model knows the meta-paths its labels stand for.
        model.cfg.meta_paths = paths.iter().map(|p| p.to_string()).collect();
        let adam_cfg = AdamConfig {
            lr: cfg.lr,
            ..AdamConfig::default()
        };
        let adam = Adam::new(model.dense_vars(), adam_cfg)?;
        let k = hinrec_train::metric_cutoff(&ctx.validation.metric).map_err(LgrecError::Config)?;
        let mut run = Training {
            model,
            adam,
            adam_cfg,
            train,
            labeler,
            n_paths: paths.len().max(1),
            validation: ctx.validation.clone(),
            audit: ctx.audit,
            audited: Vec::new(),
            k,
            seed: ctx.seed,
        };
        let trainer = TrainerConfig {
            epochs: cfg.epochs,
            patience: cfg.patience,
            checkpoints: ctx.checkpoints.clone(),
        };
        let mut summary = train_epochs(&mut run, &trainer, &mut *ctx.progress)?;
        // The neighbour-ranking BPR-MF and the labeler count too.
        summary.total_s = started.elapsed().as_secs_f64();
        summary.audit = run.audited;
        Ok((run.model, summary))
    }

    /// A trained model from what [`Lgrec::state`] saved (its neighbour
    /// lists included: nothing is retrained).
    pub fn from_state(cfg: &LgrecConfig, state: &HashMap<String, Tensor>) -> Result<Self> {
        cfg.check()?;
        let lists = |prefix: &str, k: usize| -> Result<NeighborLists> {
            let get = |name: &str| {
                state
                    .get(&format!("{prefix}.{name}"))
                    .ok_or_else(|| LgrecError::Config(format!("the state lacks {prefix}.{name}")))
            };
            let ids: Vec<u32> = get("ids")?.flatten_all()?.to_vec1()?;
            let counts: Vec<u32> = get("counts")?.flatten_all()?.to_vec1()?;
            NeighborLists::from_parts(k, ids, counts.into_iter().map(|c| c as usize).collect())
                .map_err(|e| LgrecError::Config(format!("{prefix}: {e}")))
        };
        let user_nb = lists("user_neighbors", cfg.k_user)?;
        let item_nb = lists("item_neighbors", cfg.k_item)?;
        let n_paths = state
            .get("out.weight")
            .and_then(|w| w.dims().get(1).copied())
            .ok_or_else(|| LgrecError::Config("the state lacks a 2-d out.weight".into()))?;
        let mut model = Self::build(cfg, n_paths, user_nb, item_nb, 0)?;
        model.load_state(state)?;
        Ok(model)
    }

    /// The configuration.
    pub fn config(&self) -> &LgrecConfig {
        &self.cfg
    }

    /// Restores what [`Lgrec::state`] saved.
    pub fn load_state(&mut self, state: &HashMap<String, Tensor>) -> Result<()> {
        let (users, items) = (
            EmbeddingTable::from_state("users", state)?,
            EmbeddingTable::from_state("items", state)?,
        );
        let want = (self.users.rows(), self.items.rows(), self.cfg.dim);
        if (users.rows(), items.rows(), users.dim()) != want || items.dim() != want.2 {
            return Err(LgrecError::Config(format!(
                "the state's tables are {} x {} and {} x {}, this model's {} x {d} and {} x {d}",
                users.rows(),
                users.dim(),
                items.rows(),
                items.dim(),
                want.0,
                want.1,
                d = want.2
            )));
        }
        self.users = users;
        self.items = items;
        checkpoint::load_vars(&self.named_vars(), state)?;
        Ok(())
    }

    /// Every dense weight, named after its layer (`f.0.weight`, `a`,
    /// `rel.2.bias`, `out.weight`).
    fn named_vars(&self) -> Vec<(String, Var)> {
        let mut v = self.f.named_vars("f");
        v.extend(self.g.named_vars("g"));
        v.push(("a".into(), self.a.clone()));
        v.extend(self.rel.named_vars("rel"));
        v.extend(self.out.named_vars("out"));
        v
    }

    /// Every weight (and the embedding tables' Adam moments) as named
    /// tensors, for a safetensors checkpoint.
    pub fn state(&self) -> Result<HashMap<String, Tensor>> {
        let mut out = self.users.state("users")?;
        out.extend(self.items.state("items")?);
        out.extend(checkpoint::vars_state(&self.named_vars())?);
        for (prefix, nb) in [
            ("user_neighbors", &self.user_nb),
            ("item_neighbors", &self.item_nb),
        ] {
            let n = nb.len();
            let counts: Vec<u32> = (0..n as u32).map(|v| nb.count(v) as u32).collect();
            out.insert(
                format!("{prefix}.ids"),
                Tensor::from_vec(nb.ids().to_vec(), (n, nb.k()), &Device::Cpu)?,
            );
            out.insert(
                format!("{prefix}.counts"),
                Tensor::from_vec(counts, n, &Device::Cpu)?,
            );
        }
        Ok(out)
    }
}

/// Triples `(users[k], pos[k], neg[k])` with the meta-path labels of the
/// positive then the negative pairs (`n_paths` per pair, row-major).
#[derive(Clone, Copy)]
struct Batch<'a> {
    users: &'a [u32],
    pos: &'a [u32],
    neg: &'a [u32],
    labels: &'a [f32],
    n_paths: usize,
}

/// Unique ids (sorted) and a dense map from id to its position.
fn local_ids(ids: impl Iterator<Item = u32>, n: usize) -> (Vec<u32>, Vec<u32>) {
    let mut seen = vec![u32::MAX; n];
    let mut uniq: Vec<u32> = Vec::new();
    for i in ids {
        if seen[i as usize] == u32::MAX {
            seen[i as usize] = 0;
            uniq.push(i);
        }
    }
    uniq.sort_unstable();
    for (k, &i) in uniq.iter().enumerate() {
        seen[i as usize] = k as u32;
    }
    (uniq, seen)
}

/// LGRec with its optimizer and data, as the trainer drives it.
struct Training<'a> {
    model: Lgrec,
    adam: Adam,
    adam_cfg: AdamConfig,
    train: &'a Interactions,
    labeler: Option<PairLabeler<'a>>,
    n_paths: usize,
    validation: Validation<'a>,
    /// Scored after every epoch and only reported ([`Lgrec::fit`]).
    audit: Option<&'a EvalNegatives>,
    audited: Vec<Metrics>,
    k: usize,
    seed: u64,
}

/// One epoch of LGRec's triples: the training pairs shuffled, a negative
/// item per pair, and (with the global part) the meta-path labels of the
/// positive then the negative pairs, `n_paths` per pair.
struct Epoch {
    order: Vec<(u32, u32)>,
    negs: Vec<u32>,
    labels: Vec<f32>,
}

impl TrainStep for Training<'_> {
    type Error = LgrecError;
    type Epoch = Epoch;

    fn epoch_seed(&self) -> u64 {
        self.seed ^ 0x1_6ec0
    }

    fn epoch(&mut self, _epoch: usize, rng: &mut ChaCha8Rng) -> Result<Epoch> {
        let n_items = self.train.n_items() as u32;
        let mut order: Vec<(u32, u32)> = self.train.pairs().collect();
        order.shuffle(rng);
        let negs: Vec<u32> = order
            .iter()
            .map(|&(u, _)| unseen_item(self.train.user_items(u), n_items, rng).unwrap_or(0))
            .collect();
        // Labels of the whole epoch at once: each user's path prefix is
        // then computed once per epoch instead of once per batch.
        let labels = match &self.labeler {
            Some(l) => {
                let pairs: Vec<(u32, u32)> = order
                    .iter()
                    .copied()
                    .chain(order.iter().zip(&negs).map(|(&(u, _), &j)| (u, j)))
                    .collect();
                l.labels(&pairs)?
            }
            None => Vec::new(),
        };
        Ok(Epoch {
            order,
            negs,
            labels,
        })
    }

    fn examples(&self, data: &Epoch) -> usize {
        data.order.len()
    }

    fn batch_size(&self) -> usize {
        self.model.cfg.batch
    }

    fn step(&mut self, data: &Epoch, range: std::ops::Range<usize>) -> Result<f64> {
        let n_paths = self.n_paths;
        let chunk = &data.order[range.clone()];
        let users: Vec<u32> = chunk.iter().map(|p| p.0).collect();
        let pos: Vec<u32> = chunk.iter().map(|p| p.1).collect();
        let labels = if data.labels.is_empty() {
            Vec::new()
        } else {
            let half = data.order.len() * n_paths;
            let (lo, hi) = (range.start * n_paths, range.end * n_paths);
            let mut v = data.labels[lo..hi].to_vec();
            v.extend_from_slice(&data.labels[half + lo..half + hi]);
            v
        };
        let batch = Batch {
            users: &users,
            pos: &pos,
            neg: &data.negs[range],
            labels: &labels,
            n_paths,
        };
        self.model.step(&batch, &mut self.adam, &self.adam_cfg)
    }

    fn validate(&mut self) -> Result<Option<f64>> {
        // The trainer validates once after each epoch: the audit's place.
        if let Some(audit) = self.audit {
            let m = sampled(&self.model, audit, &[self.k]).map_err(LgrecError::Score)?;
            self.audited.push(m);
        }
        self.validation
            .score(&self.model)
            .map_err(LgrecError::Score)
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
        self.train.nnz()
    }
}

impl LgrecConfig {
    /// Checks every value before any work.
    pub fn check(&self) -> Result<()> {
        let positive = [
            ("dim", self.dim),
            ("k_user", self.k_user),
            ("k_item", self.k_item),
            ("batch", self.batch),
            ("eval_batch", self.eval_batch),
            ("patience", self.patience),
        ];
        if let Some((name, _)) = positive.iter().find(|p| p.1 == 0) {
            return Err(LgrecError::Config(format!("{name} must be positive")));
        }
        let finite = [
            ("alpha", self.alpha),
            ("beta", self.beta),
            ("margin", self.margin),
        ];
        if let Some((name, v)) = finite.iter().find(|p| !(p.1.is_finite() && p.1 >= 0.0)) {
            return Err(LgrecError::Config(format!(
                "{name} must be a finite number >= 0 (got {v})"
            )));
        }
        if !(self.lr.is_finite() && self.lr > 0.0) {
            return Err(LgrecError::Config(format!(
                "lr must be positive (got {})",
                self.lr
            )));
        }
        Ok(())
    }
}

impl Scorer for Lgrec {
    fn n_items(&self) -> usize {
        self.items.rows()
    }

    fn score_pairs(
        &self,
        pairs: &[(u32, u32)],
        out: &mut [f32],
    ) -> std::result::Result<(), ScoreError> {
        hinrec_eval::check_pairs(pairs, out, self.users.rows(), self.items.rows())?;
        out.copy_from_slice(&Lgrec::score_pairs(self, pairs)?);
        Ok(())
    }
}
