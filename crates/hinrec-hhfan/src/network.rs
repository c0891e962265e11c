//! HHFAN's network (hhfan.md III.E-F): per-type feature transform (eq.
//! 1), intra-type aggregation of each neighbour group by a masked
//! Bi-LSTM averaged over its states (eq. 2-3), attribute self-attention
//! with a residual (eq. 4-5), neighbour-type attention (eq. 6-7) and the
//! inner-product score (eq. 8).
//!
//! A node's embedding depends only on the parameters and its fixed
//! neighbour groups, so a batch embeds its unique users and items once
//! and gathers; a trained model keeps every user's and item's final
//! embedding and scores with a dot product.

use std::collections::HashMap;

use candle_core::{Device, Tensor, Var};
use hinrec_eval::{ScoreError, Scorer};
use hinrec_nn::checkpoint;
use hinrec_nn::embedding::EmbeddingTable;
use hinrec_nn::init::Rng;
use hinrec_nn::layers::Linear;
use hinrec_nn::lstm::BiLstm;
use hinrec_sample::walk::NeighborGroups;
use hinrec_train::{ModelError, Reason, TrainedModel};

use crate::graph::{NodeKind, Role};
use crate::params::{HhfanConfig, HhfanError, Result, Variant};

/// Slope of every LeakyReLU (eq. 1's transform, eq. 7's attention).
pub(crate) const LEAKY: f64 = 0.2;

/// A trained or training HHFAN.
pub struct Hhfan {
    pub(crate) cfg: HhfanConfig,
    /// Node types: users, items, attributes.
    pub(crate) kinds: Vec<NodeKind>,
    /// First global id of each type.
    pub(crate) offsets: Vec<u32>,
    /// Every node's neighbour groups (RWSS, III.D), ids within each type.
    pub(crate) groups: NeighborGroups,
    /// ID embeddings of the types without content features.
    pub(crate) tables: Vec<Option<EmbeddingTable>>,
    /// Eq. 1's transform of the types with content features.
    pub(crate) content: Vec<Option<Linear>>,
    /// Eq. 3's aggregator of each neighbour type.
    pub(crate) lstms: Vec<BiLstm>,
    /// Eq. 4's `W^Q`, `W^K`, `W^V`.
    pub(crate) wq: Var,
    pub(crate) wk: Var,
    pub(crate) wv: Var,
    /// Eq. 7's `u`, `(2, d)`: the node's own row, then the group's.
    pub(crate) att: Var,
    /// Final embeddings `E` of every user and item (eq. 8's inputs).
    pub(crate) users_final: Vec<f32>,
    pub(crate) items_final: Vec<f32>,
    pub(crate) dev: Device,
}

impl Hhfan {
    /// A fresh model over `kinds` and `groups`, every weight drawn from
    /// N(0, `init_std`) (IV.C).
    pub(crate) fn init(
        cfg: &HhfanConfig,
        kinds: Vec<NodeKind>,
        groups: NeighborGroups,
        seed: u64,
    ) -> Result<Self> {
        let d = cfg.dim;
        let dev = Device::Cpu;
        let mut rng = Rng::new(seed ^ 0x44fa);
        let std = cfg.init_std;
        let normal = |rng: &mut Rng, n: usize| -> Vec<f32> {
            rng.normal(n, std).into_iter().map(|v| v as f32).collect()
        };
        let var = |rng: &mut Rng, shape: (usize, usize)| -> Result<Var> {
            Ok(Var::from_tensor(&Tensor::from_vec(
                normal(rng, shape.0 * shape.1),
                shape,
                &dev,
            )?)?)
        };
        let mut tables = Vec::new();
        let mut content = Vec::new();
        for k in &kinds {
            if k.feature_dim == 0 {
                tables.push(Some(EmbeddingTable::new(
                    k.count,
                    d,
                    normal(&mut rng, k.count * d),
                )));
                content.push(None);
            } else {
                tables.push(None);
                let lin = Linear {
                    weight: var(&mut rng, (k.feature_dim, d))?,
                    bias: var(&mut rng, (1, d))?,
                };
                content.push(Some(lin));
            }
        }
        let lstms = kinds
            .iter()
            .map(|_| BiLstm::new(&mut rng, d, std))
            .collect::<candle_core::Result<Vec<_>>>()?;
        let mut offsets = vec![0u32];
        for k in &kinds {
            offsets.push(offsets.last().copied().unwrap_or(0) + k.count as u32);
        }
        Ok(Hhfan {
            cfg: cfg.clone(),
            wq: var(&mut rng, (d, d))?,
            wk: var(&mut rng, (d, d))?,
            wv: var(&mut rng, (d, d))?,
            att: var(&mut rng, (2, d))?,
            kinds,
            offsets,
            groups,
            tables,
            content,
            lstms,
            users_final: Vec::new(),
            items_final: Vec::new(),
            dev,
        })
    }

    /// The parameters as trained.
    pub fn config(&self) -> &HhfanConfig {
        &self.cfg
    }

    /// Users.
    pub fn n_users(&self) -> usize {
        self.kinds[0].count
    }

    /// Node types (users, items, attributes) and their sizes.
    pub fn kinds(&self) -> &[NodeKind] {
        &self.kinds
    }

    /// Global id of user `u`.
    pub(crate) fn user_node(&self, u: u32) -> u32 {
        self.offsets[0] + u
    }

    /// Global id of item `i`.
    pub(crate) fn item_node(&self, i: u32) -> u32 {
        self.offsets[1] + i
    }

    /// Type and local id of global node `v`.
    pub(crate) fn local(&self, v: u32) -> (usize, u32) {
        let t = self.offsets.partition_point(|&o| o <= v) - 1;
        (t, v - self.offsets[t])
    }

    /// Recomputes every user's and item's final embedding.
    pub(crate) fn refresh(&mut self) -> Result<()> {
        let (nu, ni) = (self.kinds[0].count as u32, self.kinds[1].count as u32);
        let users: Vec<u32> = (0..nu).map(|u| self.user_node(u)).collect();
        let items: Vec<u32> = (0..ni).map(|i| self.item_node(i)).collect();
        self.users_final = self.embed_all(&users)?;
        self.items_final = self.embed_all(&items)?;
        Ok(())
    }

    fn embed_all(&self, nodes: &[u32]) -> Result<Vec<f32>> {
        let mut out = Vec::with_capacity(nodes.len() * self.cfg.dim);
        for chunk in nodes.chunks(self.cfg.eval_batch.max(1)) {
            out.extend(self.forward(chunk)?.e);
        }
        Ok(out)
    }

    /// The dense variables the variant uses, named.
    pub(crate) fn named_vars(&self) -> Vec<(String, Var)> {
        let mut v = Vec::new();
        for (t, lin) in self.content.iter().enumerate() {
            if let Some(l) = lin {
                v.extend(l.named_vars(&format!("content.{t}")));
            }
        }
        if self.cfg.variant != Variant::L {
            for (t, l) in self.lstms.iter().enumerate() {
                v.extend(l.named_vars(&format!("lstm.{t}")));
            }
        }
        if self.cfg.variant != Variant::A {
            v.push(("attr.wq".into(), self.wq.clone()));
            v.push(("attr.wk".into(), self.wk.clone()));
            v.push(("attr.wv".into(), self.wv.clone()));
        }
        if self.cfg.variant != Variant::N {
            v.push(("neighbor.u".into(), self.att.clone()));
        }
        v
    }

    /// Weights, embedding tables with their Adam moments, and the groups.
    pub(crate) fn state(&self) -> Result<HashMap<String, Tensor>> {
        let mut out = checkpoint::vars_state(&self.named_vars())?;
        for (t, table) in self.tables.iter().enumerate() {
            if let Some(tb) = table {
                out.extend(tb.state(&format!("nodes.{t}"))?);
            }
        }
        Ok(out)
    }

    /// Loads what [`Hhfan::state`] wrote (weights and tables).
    pub(crate) fn load_state(&mut self, state: &HashMap<String, Tensor>) -> Result<()> {
        checkpoint::load_vars(&self.named_vars(), state)?;
        for (t, table) in self.tables.iter_mut().enumerate() {
            if table.is_some() {
                let loaded = EmbeddingTable::from_state(&format!("nodes.{t}"), state)?;
                let want = (self.kinds[t].count, self.cfg.dim);
                if (loaded.rows(), loaded.dim()) != want {
                    return Err(HhfanError::Data(format!(
                        "nodes.{t} is {} x {}, the model's {} x {}",
                        loaded.rows(),
                        loaded.dim(),
                        want.0,
                        want.1
                    )));
                }
                *table = Some(loaded);
            }
        }
        Ok(())
    }

    /// Everything a saved model holds: [`Hhfan::state`], the node types,
    /// the groups and the final embeddings.
    fn saved(&self) -> Result<HashMap<String, Tensor>> {
        let dev = &self.dev;
        let mut out = self.state()?;
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
        let nk = self.kinds.len();
        let meta: Vec<u32> = self
            .kinds
            .iter()
            .flat_map(|k| {
                let role = match k.role {
                    Role::User => 0,
                    Role::Item => 1,
                    Role::Attribute => 2,
                };
                [role, k.count as u32, k.feature_dim as u32]
            })
            .collect();
        out.insert("kinds.meta".into(), Tensor::from_vec(meta, (nk, 3), dev)?);
        for (t, k) in self.kinds.iter().enumerate() {
            if k.feature_dim > 0 {
                out.insert(
                    format!("kinds.{t}.features"),
                    Tensor::from_vec(k.features.clone(), (k.count, k.feature_dim), dev)?,
                );
            }
        }
        let (ids, mask) = self.groups.parts();
        let keep: Vec<u32> = self.groups.keep().iter().map(|&k| k as u32).collect();
        out.insert("groups.keep".into(), Tensor::from_vec(keep, nk, dev)?);
        out.insert(
            "groups.ids".into(),
            Tensor::from_vec(ids.to_vec(), ids.len(), dev)?,
        );
        out.insert(
            "groups.mask".into(),
            Tensor::from_vec(mask.to_vec(), mask.len(), dev)?,
        );
        let d = self.cfg.dim;
        out.insert(
            "final.users".into(),
            Tensor::from_vec(self.users_final.clone(), (self.kinds[0].count, d), dev)?,
        );
        out.insert(
            "final.items".into(),
            Tensor::from_vec(self.items_final.clone(), (self.kinds[1].count, d), dev)?,
        );
        Ok(out)
    }

    /// A model from what [`TrainedModel::save`] wrote.
    pub fn from_state(cfg: &HhfanConfig, state: &HashMap<String, Tensor>) -> Result<Self> {
        let get = |k: &str| {
            state
                .get(k)
                .ok_or_else(|| HhfanError::Data(format!("the saved model lacks {k}")))
        };
        let names_bytes: Vec<u8> = get("kinds.names")?.to_vec1()?;
        let names = String::from_utf8(names_bytes)
            .map_err(|_| HhfanError::Data("kinds.names is not UTF-8".into()))?;
        let meta: Vec<Vec<u32>> = get("kinds.meta")?.to_vec2()?;
        let names: Vec<&str> = names.split('\n').collect();
        if names.len() != meta.len() || meta.len() < 2 {
            return Err(HhfanError::Data(
                "kinds.names and kinds.meta disagree".into(),
            ));
        }
        let mut kinds = Vec::new();
        for (t, (name, m)) in names.iter().zip(&meta).enumerate() {
            let role = match m[0] {
                0 => Role::User,
                1 => Role::Item,
                _ => Role::Attribute,
            };
            let features = if m[2] > 0 {
                get(&format!("kinds.{t}.features"))?
                    .flatten_all()?
                    .to_vec1()?
            } else {
                Vec::new()
            };
            kinds.push(NodeKind {
                name: name.to_string(),
                role,
                count: m[1] as usize,
                feature_dim: m[2] as usize,
                features,
            });
        }
        let keep: Vec<usize> = get("groups.keep")?
            .to_vec1::<u32>()?
            .into_iter()
            .map(|k| k as usize)
            .collect();
        let groups = NeighborGroups::from_parts(
            keep,
            get("groups.ids")?.to_vec1()?,
            get("groups.mask")?.to_vec1()?,
        )
        .map_err(|e| HhfanError::Data(e.to_string()))?;
        check_saved(&kinds, &groups)?;
        let mut m = Hhfan::init(cfg, kinds, groups, 0)?;
        m.load_state(state)?;
        m.users_final = get("final.users")?.flatten_all()?.to_vec1()?;
        m.items_final = get("final.items")?.flatten_all()?.to_vec1()?;
        let d = cfg.dim;
        if m.users_final.len() != m.kinds[0].count * d
            || m.items_final.len() != m.kinds[1].count * d
        {
            return Err(HhfanError::Data(
                "final embeddings of the wrong size".into(),
            ));
        }
        Ok(m)
    }

    fn dot(&self, u: u32, i: u32) -> f32 {
        let d = self.cfg.dim;
        hinrec_cluster::kmeans::dot(
            &self.users_final[u as usize * d..(u as usize + 1) * d],
            &self.items_final[i as usize * d..(i as usize + 1) * d],
        )
    }
}

/// A saved model's node types and groups agree with each other (a file
/// with hostile values is an error, never a panic or a huge allocation).
fn check_saved(kinds: &[NodeKind], groups: &NeighborGroups) -> Result<()> {
    let bad = |m: String| Err(HhfanError::Data(format!("saved model: {m}")));
    if kinds.len() < 2 || kinds[0].role != Role::User || kinds[1].role != Role::Item {
        return bad("the first two node types must be the users and the items".into());
    }
    if let Some(k) = kinds.iter().skip(2).find(|k| k.role != Role::Attribute) {
        return bad(format!("node type {} has a user or item role", k.name));
    }
    if let Some(k) = kinds
        .iter()
        .find(|k| k.features.len() != k.count * k.feature_dim)
    {
        return bad(format!(
            "node type {}: features do not fit its count",
            k.name
        ));
    }
    if groups.keep().len() != kinds.len() {
        return bad(format!(
            "{} group sizes for {} node types",
            groups.keep().len(),
            kinds.len()
        ));
    }
    let total = kinds.iter().try_fold(0usize, |s, k| s.checked_add(k.count));
    if total != Some(groups.n_nodes()) {
        return bad(format!(
            "groups cover {} nodes, the types {total:?}",
            groups.n_nodes()
        ));
    }
    for v in 0..groups.n_nodes() as u32 {
        for (t, k) in kinds.iter().enumerate() {
            let l = groups.len(v, t);
            if let Some(&id) = groups.ids(v, t)[..l]
                .iter()
                .find(|&&id| id as usize >= k.count)
            {
                return bad(format!("node {v}'s group of {} holds id {id}", k.name));
            }
        }
    }
    Ok(())
}

impl Scorer for Hhfan {
    fn n_items(&self) -> usize {
        self.kinds[1].count
    }

    /// Eq. 8 before the sigmoid (monotone; the raw product keeps ties
    /// apart where the sigmoid would round them to 1).
    fn score_pairs(
        &self,
        pairs: &[(u32, u32)],
        out: &mut [f32],
    ) -> std::result::Result<(), ScoreError> {
        if self.users_final.is_empty() {
            return Err("HHFAN's final embeddings are not computed".into());
        }
        hinrec_eval::score_pairs_by_user(
            self.n_users(),
            self.n_items(),
            pairs,
            out,
            |u, items, o| {
                for (s, &i) in o.iter_mut().zip(items) {
                    *s = self.dot(u, i);
                }
            },
        )
    }

    fn score_users(&self, users: &[u32], out: &mut [f32]) -> std::result::Result<(), ScoreError> {
        if self.users_final.is_empty() {
            return Err("HHFAN's final embeddings are not computed".into());
        }
        let n = self.n_items();
        hinrec_eval::score_users_by_user(self.n_users(), n, users, out, |u, row| {
            for (i, s) in row.iter_mut().enumerate() {
                *s = self.dot(u, i as u32);
            }
        })
    }
}

impl TrainedModel for Hhfan {
    fn save(&self, path: &std::path::Path) -> std::result::Result<(), ModelError> {
        checkpoint::save_model(path, &self.saved()?)
    }

    /// For the item: eq. 7's weight of each group (users, items,
    /// attributes), eq. 4's attention each attribute group receives, and
    /// the most visited users and items of its walks (the group the LSTM
    /// read); for the user, its group weights.
    fn explain(&self, user: u32, item: u32) -> std::result::Result<Vec<Reason>, ModelError> {
        if user as usize >= self.n_users() || item as usize >= self.n_items() {
            return Err(ModelError::Data(format!(
                "({user}, {item}) is outside the model's {} users x {} items",
                self.n_users(),
                self.n_items()
            )));
        }
        let (u, v) = (self.user_node(user), self.item_node(item));
        let emb = self.forward(&[u, v])?;
        let mut out = Vec::new();
        // Eq. 7's groups, then the node itself with `include_self`.
        let has_attrs = self
            .kinds
            .iter()
            .enumerate()
            .any(|(t, k)| k.role == Role::Attribute && self.groups.keep()[t] > 0);
        let mut group_names = vec!["user group".to_string(), "item group".to_string()];
        if has_attrs {
            group_names.push("attributes".into());
        }
        group_names.push("the node itself".into());
        if !emb.alpha.is_empty() {
            let g = emb.alpha.len() / 2;
            let (user, item) = emb.alpha.split_at(g);
            for (who, row) in ["the item", "the user"].iter().zip([item, user]) {
                out.push(Reason::Values {
                    what: format!("{who}'s neighbour-type attention (eq. 7)"),
                    values: group_names
                        .iter()
                        .cloned()
                        .zip(row.iter().copied())
                        .collect(),
                });
            }
        }
        let attention = emb.attr_attention();
        if !attention.is_empty() {
            // Column means of the item's attention: how much each
            // attribute group is attended to.
            let a2 = attention.len() / 2;
            let a = (a2 as f64).sqrt().round() as usize;
            let rows = &attention[a2..];
            let attr_names: Vec<String> = self
                .kinds
                .iter()
                .enumerate()
                .filter(|(t, k)| k.role == Role::Attribute && self.groups.keep()[*t] > 0)
                .map(|(_, k)| k.name.clone())
                .collect();
            let values = (0..a)
                .map(|j| {
                    let w = (0..a).map(|i| rows[i * a + j]).sum::<f32>() / a as f32;
                    (attr_names.get(j).cloned().unwrap_or_default(), w)
                })
                .collect();
            out.push(Reason::Values {
                what: "the item's attribute self-attention, mean weight each type receives (eq. 4)"
                    .into(),
                values,
            });
        }
        let top = |t: usize| -> Vec<(u32, f32)> {
            let l = self.groups.len(v, t);
            let ids = &self.groups.ids(v, t)[..l];
            ids.iter()
                .enumerate()
                .map(|(r, &id)| (id, 1.0 / (r + 1) as f32))
                .take(5)
                .collect()
        };
        out.push(Reason::Users {
            what: "the item's user group, most visited first (weight 1 / rank)".into(),
            weights: top(0),
        });
        out.push(Reason::RelatedItems {
            what: "the item's item group, most visited first (weight 1 / rank)".into(),
            weights: top(1),
        });
        Ok(out)
    }
}
