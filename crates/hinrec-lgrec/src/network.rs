//! The LGRec network: neighbour lists ranked by a BPR-MF (section 2.1),
//! co-attention over them (eq. 1-3), the relation MLP and its meta-path
//! labels (eq. 5-8), the translation score (eq. 9), and its state.

use std::collections::HashMap;
use std::path::Path;

use candle_core::{DType, Device, Tensor, Var, D};
use hinrec_baselines::{BprConfig, BprMf};
use hinrec_data::Interactions;
use hinrec_eval::{ScoreError, Scorer};
use hinrec_nn::checkpoint;
use hinrec_nn::embedding::EmbeddingTable;
use hinrec_nn::init::Rng;
use hinrec_nn::layers::{
    co_attention, masked_mean, translation_distance, CoAttentionTables, Linear, Mlp,
};
use hinrec_nn::slot_ops::Slots;
use hinrec_sample::NeighborLists;
use hinrec_train::{ModelError, Reason, TrainedModel, Validation};

use crate::params::{LgrecConfig, LgrecError, Result, Variant};

/// A trained (or training) LGRec.
pub struct Lgrec {
    pub(crate) cfg: LgrecConfig,
    pub(crate) dev: Device,
    pub(crate) users: EmbeddingTable,
    pub(crate) items: EmbeddingTable,
    pub(crate) f: Mlp,
    pub(crate) g: Mlp,
    pub(crate) a: Var,
    pub(crate) rel: Mlp,
    pub(crate) out: Linear,
    pub(crate) user_nb: NeighborLists,
    pub(crate) item_nb: NeighborLists,
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
pub(crate) enum Sides {
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
    pub(crate) fn build(
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

    pub(crate) fn dense_vars(&self) -> Vec<Var> {
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
    pub(crate) fn forward(
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

    pub(crate) fn sides(&self, x: Tensor, y: Tensor) -> Result<Sides> {
        if self.cfg.variant == Variant::NoAtt {
            return Ok(Sides::Mean { x, y });
        }
        let fa = self.f.forward(&x)?.matmul(self.a.as_tensor())?;
        let g = self.g.forward(&y)?;
        Ok(Sides::Attention(CoAttentionTables::new(fa, g, x, y)?))
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
    pub(crate) fn named_vars(&self) -> Vec<(String, Var)> {
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

impl TrainedModel for Lgrec {
    fn save(&self, path: &Path) -> Result<(), ModelError> {
        checkpoint::save_model(path, &self.state()?)
    }

    fn explain(&self, user: u32, item: u32) -> Result<Vec<Reason>, ModelError> {
        let e = self.explain_pair(user, item)?;
        let how = match self.config().variant {
            Variant::NoAtt => "mean",
            _ => "co-attention",
        };
        let mut out = vec![
            Reason::Items {
                what: format!("the user's neighbour items, {how} weight in x_u"),
                weights: e.items.into_iter().take(5).collect(),
            },
            Reason::Users {
                what: format!("the item's neighbour users, {how} weight in y_v"),
                weights: e.users.into_iter().take(5).collect(),
            },
        ];
        if !e.labels.is_empty() {
            out.push(Reason::Values {
                what: "meta-path label probability of the pair's relation".into(),
                values: e.labels,
            });
        }
        Ok(out)
    }
}
