//! DURation's network (duration.txt section 3.2) and the trained model.
//!
//! - user tower: `u = MLP(Y_u* ⊕ u_attr)`: the history's first layer is
//!   an embedding bag (a weighted sum of rows of a table over items, one
//!   row per item the user rated in training), then ReLU, a linear layer
//!   and ReLU at the output;
//! - item tower: `x = MLP(Y_*x ⊕ f_p(r))`: a bag over the item's training
//!   users, then ReLU, concatenated with `f_p(r)`, the kind's mapping of
//!   its raw attribute row into the unified space, a linear layer, ReLU;
//! - readout `h(u, x) = <u, x>` plus one learned offset (with ReLU outputs
//!   the product is never negative, so without it the predicted
//!   probability could not fall below one half).

use std::collections::HashMap;
use std::sync::Arc;

use candle_core::{DType, Device, Tensor, Var};
use hinrec_eval::{check_len, check_pairs, check_users, ScoreError, Scorer};
use hinrec_nn::bag::{embedding_bag, BagIndex};
use hinrec_nn::checkpoint;
use hinrec_nn::embedding::EmbeddingTable;
use hinrec_nn::init::Rng;
use hinrec_nn::layers::{Linear, Mlp};
use hinrec_train::{ModelError, Reason, TrainedModel};
use rayon::prelude::*;

use crate::data::{History, Kind};
use crate::params::{DurationConfig, DurationError, Result};

/// Rows embedded per call when every user and item is embedded for scoring.
const EMBED_CHUNK: usize = 4096;

/// A trained DURation.
pub struct Duration {
    pub(crate) cfg: DurationConfig,
    pub(crate) dev: Device,
    /// The user tower's first layer: one row per item.
    pub(crate) user_bag: EmbeddingTable,
    /// The item tower's first layer: one row per user.
    pub(crate) item_bag: EmbeddingTable,
    /// The two first layers' biases.
    pub(crate) user_bias: Var,
    pub(crate) item_bias: Var,
    /// The towers' output layers.
    pub(crate) user_out: Linear,
    pub(crate) item_out: Linear,
    /// `f_p` per kind (none for the DMF variant).
    pub(crate) maps: Vec<Mlp>,
    /// The readout's offset.
    pub(crate) offset: Var,
    pub(crate) kinds: Vec<Kind>,
    pub(crate) user_history: History,
    pub(crate) item_history: History,
    /// Every user's and item's final vector (`n x dim`), after
    /// [`Duration::refresh`].
    pub(crate) users_final: Vec<f32>,
    pub(crate) items_final: Vec<f32>,
    pub(crate) offset_final: f32,
}

/// One side's bags for a batch: the table rows it read (a leaf that takes
/// the gradient) and each owner's bag.
pub(crate) struct Bags {
    /// The distinct table rows read, in leaf order (the candle reference
    /// step of `step.rs`'s tests updates them).
    #[cfg_attr(not(test), allow(dead_code))]
    pub ids: Vec<u32>,
    /// Their values.
    pub leaf: Var,
    /// Each owner's bag, `(owners, dim)`.
    pub bags: Tensor,
    /// Where each of `extra` (the ids asked for beside the histories) sits
    /// in the leaf.
    pub extra_at: Vec<u32>,
}

impl Duration {
    /// A fresh model with seeded weights for `kinds` and the histories.
    pub(crate) fn init(
        cfg: &DurationConfig,
        kinds: Vec<Kind>,
        user_history: History,
        item_history: History,
        seed: u64,
    ) -> Result<Self> {
        let dev = Device::Cpu;
        let d = cfg.dim;
        let mut rng = Rng::new(seed ^ 0xd0_4a71);
        let (n_users, n_items) = (user_history.owners(), item_history.owners());
        let normal = |rng: &mut Rng, n: usize| -> Vec<f32> {
            rng.normal(n, cfg.init_std)
                .into_iter()
                .map(|v| v as f32)
                .collect()
        };
        let user_bag = EmbeddingTable::new(n_items, d, normal(&mut rng, n_items * d));
        let item_bag = EmbeddingTable::new(n_users, d, normal(&mut rng, n_users * d));
        let maps = if cfg.maps_attributes() {
            kinds
                .iter()
                .map(|k| Mlp::new(&mut rng, &[k.raw_dim, d, d], DType::F32, &dev))
                .collect::<candle_core::Result<_>>()?
        } else {
            Vec::new()
        };
        let item_in = if cfg.maps_attributes() { 2 * d } else { d };
        Ok(Duration {
            user_out: Linear::new(&mut rng, d, d, DType::F32, &dev)?,
            item_out: Linear::new(&mut rng, item_in, d, DType::F32, &dev)?,
            user_bias: Var::zeros((1, d), DType::F32, &dev)?,
            item_bias: Var::zeros((1, d), DType::F32, &dev)?,
            offset: Var::zeros(1, DType::F32, &dev)?,
            cfg: cfg.clone(),
            dev,
            user_bag,
            item_bag,
            maps,
            kinds,
            user_history,
            item_history,
            users_final: Vec::new(),
            items_final: Vec::new(),
            offset_final: 0.0,
        })
    }

    /// Number of users.
    pub fn n_users(&self) -> usize {
        self.user_history.owners()
    }

    /// The item kinds.
    pub fn kinds(&self) -> &[Kind] {
        &self.kinds
    }

    /// The dense variables, named after their layers.
    pub(crate) fn named_vars(&self) -> Vec<(String, Var)> {
        let mut out = vec![
            ("user.bias".to_string(), self.user_bias.clone()),
            ("item.bias".to_string(), self.item_bias.clone()),
            ("readout.offset".to_string(), self.offset.clone()),
        ];
        out.extend(self.user_out.named_vars("user.out"));
        out.extend(self.item_out.named_vars("item.out"));
        for (k, m) in self.maps.iter().enumerate() {
            out.extend(m.named_vars(&format!("map.{k}")));
        }
        out
    }

    /// The bags of `owners` over `table` through `history` (section 3.2's
    /// `Y_u* W`, a weighted sum of table rows), reading `extra` ids too.
    pub(crate) fn bags(
        &self,
        table: &EmbeddingTable,
        history: &History,
        owners: &[u32],
        extra: &[u32],
    ) -> Result<Bags> {
        // A dense slot per table row: the histories touch most rows.
        let mut slot = vec![u32::MAX; table.rows()];
        let mut ids: Vec<u32> = Vec::new();
        let mut at = |id: u32, ids: &mut Vec<u32>| {
            let s = &mut slot[id as usize];
            if *s == u32::MAX {
                *s = ids.len() as u32;
                ids.push(id);
            }
            *s
        };
        let mut index = BagIndex::new();
        for &o in owners {
            let (hist, weights) = history.of(o);
            index.push(
                hist.iter()
                    .zip(weights)
                    .map(|(&id, &w)| (at(id, &mut ids), w))
                    .collect::<Vec<_>>(),
            );
        }
        let extra_at = extra.iter().map(|&id| at(id, &mut ids)).collect();
        let leaf = table.gather(&ids, DType::F32, &self.dev)?;
        let bags = embedding_bag(leaf.as_tensor(), Arc::new(index))?;
        Ok(Bags {
            ids,
            leaf,
            bags,
            extra_at,
        })
    }

    /// The user tower on history rows `h` `(n, dim)`: ReLU, the output
    /// layer, ReLU.
    pub(crate) fn user_tower(&self, h: &Tensor) -> Result<Tensor> {
        let h = h.broadcast_add(self.user_bias.as_tensor())?.relu()?;
        Ok(self.user_out.forward(&h)?.relu()?)
    }

    /// The item tower on history rows `h` and, for the full model, mapped
    /// attribute rows `mapped` (both `(n, dim)`).
    pub(crate) fn item_tower(&self, h: &Tensor, mapped: Option<&Tensor>) -> Result<Tensor> {
        let h = h.broadcast_add(self.item_bias.as_tensor())?.relu()?;
        let input = match mapped {
            Some(m) => Tensor::cat(&[&h, m], 1)?,
            None => h,
        };
        Ok(self.item_out.forward(&input)?.relu()?)
    }

    /// `f_p(r)` for `items`, all of kind `kind` (section 3.2's mapping into
    /// the unified space), with their raw rows.
    pub(crate) fn map_items(&self, kind: usize, items: &[u32]) -> Result<(Tensor, Tensor)> {
        let k = &self.kinds[kind];
        let raw = Tensor::from_vec(
            k.raw_rows(items.iter().copied()),
            (items.len(), k.raw_dim),
            &self.dev,
        )?;
        let mapped = self.maps[kind].forward(&raw)?;
        Ok((raw, mapped))
    }

    /// Every user's and item's final vector, for scoring.
    pub(crate) fn refresh(&mut self) -> Result<()> {
        let users: Vec<u32> = (0..self.n_users() as u32).collect();
        let mut out = Vec::with_capacity(users.len() * self.cfg.dim);
        for chunk in users.chunks(EMBED_CHUNK) {
            let b = self.bags(&self.user_bag, &self.user_history, chunk, &[])?;
            out.extend(self.user_tower(&b.bags)?.flatten_all()?.to_vec1::<f32>()?);
        }
        self.users_final = out;
        let mut out = Vec::with_capacity(self.n_items() * self.cfg.dim);
        for (k, kind) in self.kinds.iter().enumerate() {
            let items: Vec<u32> = kind.items.clone().collect();
            for chunk in items.chunks(EMBED_CHUNK) {
                let b = self.bags(&self.item_bag, &self.item_history, chunk, &[])?;
                let mapped = if self.cfg.maps_attributes() {
                    Some(self.map_items(k, chunk)?.1)
                } else {
                    None
                };
                let x = self.item_tower(&b.bags, mapped.as_ref())?;
                out.extend(x.flatten_all()?.to_vec1::<f32>()?);
            }
        }
        self.items_final = out;
        self.offset_final = self.offset.as_tensor().to_vec1::<f32>()?[0];
        Ok(())
    }

    /// The weights and tables, as checkpoints hold them.
    pub(crate) fn state(&self) -> Result<HashMap<String, Tensor>> {
        let mut out = checkpoint::vars_state(&self.named_vars())?;
        out.extend(self.user_bag.state("user.bag")?);
        out.extend(self.item_bag.state("item.bag")?);
        Ok(out)
    }

    /// Loads what [`Duration::state`] wrote.
    pub(crate) fn load_state(&mut self, state: &HashMap<String, Tensor>) -> Result<()> {
        checkpoint::load_vars(&self.named_vars(), state)?;
        for (name, table) in [
            ("user.bag", &mut self.user_bag),
            ("item.bag", &mut self.item_bag),
        ] {
            let loaded = EmbeddingTable::from_state(name, state)?;
            if (loaded.rows(), loaded.dim()) != (table.rows(), table.dim()) {
                return Err(DurationError::Data(format!(
                    "{name} is {} x {}, the model's {} x {}",
                    loaded.rows(),
                    loaded.dim(),
                    table.rows(),
                    table.dim()
                )));
            }
            *table = loaded;
        }
        Ok(())
    }

    /// The state, the histories and the kinds: all a load needs.
    pub(crate) fn saved(&self) -> Result<HashMap<String, Tensor>> {
        let dev = &self.dev;
        let mut out = self.state()?;
        for (name, h) in [("user", &self.user_history), ("item", &self.item_history)] {
            let offsets: Vec<u32> = h.offsets.iter().map(|&o| o as u32).collect();
            out.insert(
                format!("{name}.history.offsets"),
                Tensor::from_vec(offsets.clone(), offsets.len(), dev)?,
            );
            out.insert(
                format!("{name}.history.ids"),
                Tensor::from_vec(h.ids.clone(), h.ids.len(), dev)?,
            );
            out.insert(
                format!("{name}.history.weights"),
                Tensor::from_vec(h.weights.clone(), h.weights.len(), dev)?,
            );
        }
        let names = self
            .kinds
            .iter()
            .map(|k| k.name.as_str())
            .collect::<Vec<_>>()
            .join("\n")
            .into_bytes();
        out.insert(
            "kinds.names".into(),
            Tensor::from_vec(names.clone(), names.len(), dev)?,
        );
        let meta: Vec<u32> = self
            .kinds
            .iter()
            .flat_map(|k| [k.items.start, k.items.end, k.raw_dim as u32])
            .collect();
        out.insert(
            "kinds.meta".into(),
            Tensor::from_vec(meta, (self.kinds.len(), 3), dev)?,
        );
        for (k, kind) in self.kinds.iter().enumerate() {
            out.insert(
                format!("kinds.{k}.raw"),
                Tensor::from_vec(kind.raw.clone(), (kind.len(), kind.raw_dim), dev)?,
            );
        }
        Ok(out)
    }

    /// A model from what [`TrainedModel::save`] wrote.
    pub fn from_state(cfg: &DurationConfig, state: &HashMap<String, Tensor>) -> Result<Self> {
        let get = |k: &str| {
            state
                .get(k)
                .ok_or_else(|| DurationError::Data(format!("the saved model lacks {k}")))
        };
        let names = String::from_utf8(get("kinds.names")?.to_vec1::<u8>()?)
            .map_err(|_| DurationError::Data("kinds.names is not UTF-8".into()))?;
        let meta: Vec<Vec<u32>> = get("kinds.meta")?.to_vec2()?;
        let names: Vec<&str> = names.split('\n').collect();
        if names.len() != meta.len() || meta.is_empty() {
            return Err(DurationError::Data(format!(
                "kinds.names has {} kinds, kinds.meta {}",
                names.len(),
                meta.len()
            )));
        }
        let mut kinds = Vec::new();
        for (k, (name, m)) in names.iter().zip(&meta).enumerate() {
            let raw: Vec<f32> = get(&format!("kinds.{k}.raw"))?.flatten_all()?.to_vec1()?;
            let (start, end, raw_dim) = (m[0], m[1], m[2] as usize);
            if end < start || raw.len() != (end - start) as usize * raw_dim {
                return Err(DurationError::Data(format!(
                    "kind {name}: items {start}..{end} with {} raw values of width {raw_dim}",
                    raw.len()
                )));
            }
            kinds.push(Kind {
                name: name.to_string(),
                items: start..end,
                raw_dim,
                raw,
            });
        }
        let history = |name: &str, ids_below: usize| -> Result<History> {
            let offsets: Vec<u32> = get(&format!("{name}.history.offsets"))?.to_vec1()?;
            let ids: Vec<u32> = get(&format!("{name}.history.ids"))?.to_vec1()?;
            let weights: Vec<f32> = get(&format!("{name}.history.weights"))?.to_vec1()?;
            let offsets: Vec<usize> = offsets.into_iter().map(|o| o as usize).collect();
            let ok = offsets.first() == Some(&0)
                && offsets.windows(2).all(|w| w[0] <= w[1])
                && offsets.last() == Some(&ids.len())
                && weights.len() == ids.len()
                && ids.iter().all(|&i| (i as usize) < ids_below);
            if !ok {
                return Err(DurationError::Data(format!(
                    "{name}.history is not a valid history over {ids_below} ids"
                )));
            }
            Ok(History {
                offsets,
                ids,
                weights,
            })
        };
        let n_items = kinds.last().map_or(0, |k| k.items.end as usize);
        let n_users = get("user.history.offsets")?.dim(0)?.saturating_sub(1);
        let user_history = history("user", n_items)?;
        let item_history = history("item", n_users)?;
        if user_history.owners() != n_users || item_history.owners() != n_items {
            return Err(DurationError::Data(format!(
                "histories of {} users and {} items, the kinds cover {n_items} items and the item histories {n_users} users",
                user_history.owners(),
                item_history.owners()
            )));
        }
        let mut model = Duration::init(cfg, kinds, user_history, item_history, 0)?;
        model.load_state(state)?;
        model.refresh()?;
        Ok(model)
    }
}

impl Scorer for Duration {
    fn n_items(&self) -> usize {
        self.item_history.owners()
    }

    /// The readout `<u, x>` plus its offset, before the sigmoid.
    fn score_pairs(
        &self,
        pairs: &[(u32, u32)],
        out: &mut [f32],
    ) -> std::result::Result<(), ScoreError> {
        if self.users_final.is_empty() && self.n_users() > 0 {
            return Err("the model has no final embeddings (refresh not run)".into());
        }
        check_pairs(pairs, out, self.n_users(), self.n_items())?;
        let d = self.cfg.dim;
        out.par_iter_mut()
            .zip(pairs.par_iter())
            .for_each(|(o, &(u, i))| {
                let a = &self.users_final[u as usize * d..(u as usize + 1) * d];
                let b = &self.items_final[i as usize * d..(i as usize + 1) * d];
                *o = a.iter().zip(b).map(|(x, y)| x * y).sum::<f32>() + self.offset_final;
            });
        Ok(())
    }

    fn score_users(&self, users: &[u32], out: &mut [f32]) -> std::result::Result<(), ScoreError> {
        let (d, n) = (self.cfg.dim, self.n_items());
        check_len("score_users", out.len(), users.len() * n)?;
        check_users(users.iter().copied(), self.n_users())?;
        if self.users_final.is_empty() && self.n_users() > 0 {
            return Err("the model has no final embeddings (refresh not run)".into());
        }
        out.par_chunks_mut(n)
            .zip(users.par_iter())
            .for_each(|(row, &u)| {
                let a = &self.users_final[u as usize * d..(u as usize + 1) * d];
                for (i, o) in row.iter_mut().enumerate() {
                    let b = &self.items_final[i * d..(i + 1) * d];
                    *o = a.iter().zip(b).map(|(x, y)| x * y).sum::<f32>() + self.offset_final;
                }
            });
        Ok(())
    }
}

/// [`Duration::occlusion`]'s answer: `(item, score drop)` largest first,
/// then `<u, x>` and the readout's offset.
pub type Occlusion = (Vec<(u32, f32)>, f32, f32);

impl Duration {
    /// Each training item of `user` with how much the score of `item`
    /// drops when that item alone leaves the user's history (occlusion,
    /// the way training leaves a row's own item out), largest first; and
    /// the readout's two parts.
    pub fn occlusion(&self, user: u32, item: u32) -> Result<Occlusion> {
        if user as usize >= self.n_users() || item as usize >= self.n_items() {
            return Err(DurationError::Data(format!(
                "({user}, {item}) is outside the model's {} users x {} items",
                self.n_users(),
                self.n_items()
            )));
        }
        if self.items_final.is_empty() {
            return Err(DurationError::Data("refresh not run".into()));
        }
        let d = self.cfg.dim;
        let dot = |a: &[f32], b: &[f32]| a.iter().zip(b).map(|(x, y)| x * y).sum::<f32>();
        let x = &self.items_final[item as usize * d..(item as usize + 1) * d];
        let u = &self.users_final[user as usize * d..(user as usize + 1) * d];
        let full = dot(u, x);
        let (hist, weights) = self.user_history.of(user);
        if hist.is_empty() {
            return Ok((Vec::new(), full, self.offset_final));
        }
        let n = hist.len();
        let b = self.bags(&self.user_bag, &self.user_history, &[user], hist)?;
        let w = Tensor::from_vec(weights.to_vec(), (n, 1), &self.dev)?;
        let own = b
            .leaf
            .as_tensor()
            .index_select(&Tensor::from_vec(b.extra_at.clone(), n, &self.dev)?, 0)?
            .broadcast_mul(&w)?;
        let without = self.user_tower(&b.bags.broadcast_sub(&own)?)?;
        let rows: Vec<Vec<f32>> = without.to_vec2()?;
        let mut out: Vec<(u32, f32)> = hist
            .iter()
            .zip(&rows)
            .map(|(&j, r)| (j, full - dot(r, x)))
            .collect();
        out.sort_by(|a, b| b.1.total_cmp(&a.1).then(a.0.cmp(&b.0)));
        Ok((out, full, self.offset_final))
    }
}

/// Training items of the user an explanation lists at most.
const EXPLAIN_ITEMS: usize = 10;

impl TrainedModel for Duration {
    fn save(&self, path: &std::path::Path) -> std::result::Result<(), ModelError> {
        checkpoint::save_model(path, &self.saved()?)
    }

    /// The user's training items whose removal from its history lowers
    /// the score most ([`Duration::occlusion`]), and the readout's parts.
    fn explain(&self, user: u32, item: u32) -> std::result::Result<Vec<Reason>, ModelError> {
        let (mut items, dot, offset) = self.occlusion(user, item)?;
        items.truncate(EXPLAIN_ITEMS);
        let kind = self
            .kinds
            .iter()
            .find(|k| k.items.contains(&item))
            .map_or("item", |k| k.name.as_str());
        Ok(vec![
            Reason::Items {
                what: "score drop without this training item in the user's history".into(),
                weights: items,
            },
            Reason::Values {
                what: format!("readout of a {kind}"),
                values: vec![("<u, x>".into(), dot), ("offset".into(), offset)],
            },
        ])
    }
}
